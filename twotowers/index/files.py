"""The saved index on disk: file names, `index.json`, per-file checksums, and the checks `load` runs.

Every file's size and xxh3-128 checksum (streamed, the files in parallel threads) is recorded in
`index.json` at save time; `verify_files` refuses a missing, truncated or altered file in one message that names it,
before hnswlib or numpy ever read it. Arrays are `.npy` read without pickles.
"""

from __future__ import annotations

import json
import os
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import xxhash

FORMAT = "twotowers-passage-index"
# 3: one copy of each vector (hnsw.bin's own; exact scores are read from it); 2: the vectors again in
# vectors.npy (still loaded: that file is checked and left unread; the next save drops it); 1 (sizes only,
# no checksums) is refused with a rebuild hint.
FORMAT_VERSION = 3
READABLE_VERSIONS = (2, 3)
META_NAME = "index.json"
HNSW_NAME = "hnsw.bin"
LEGACY_VECTORS_NAME = "vectors.npy"  # format 2's second copy of the vectors
# The BM25 side's files (twotowers/index/keyword.py writes and reads them): named here, with the rest of the format.
KEYWORD_META_NAME = "keyword.json"
KEYWORD_VOCAB_NAME = "keyword_vocab.json"
# name -> dtype of each array file; shapes are checked against keyword.json on load.
KEYWORD_ARRAYS = {
    "doc_offsets": np.int64,   # [count + 1] start of each passage's (term, tf) pairs
    "doc_lengths": np.int32,   # [count] tokens per passage (after stopwords)
    "pair_terms": np.int32,    # [pairs] term id, grouped by passage
    "pair_tf": np.int32,       # [pairs] term frequency
    "csc_data": np.float32,    # [pairs] BM25 weight, grouped by term (bm25s' score matrix)
    "csc_indices": np.int32,   # [pairs] passage row
    "csc_indptr": np.int64,    # [vocab + 1]
}


def keyword_array_file(name: str) -> str:
    return f"keyword_{name}.npy"


KEYWORD_FILES = (KEYWORD_META_NAME, KEYWORD_VOCAB_NAME, *(keyword_array_file(name) for name in KEYWORD_ARRAYS))
STORE_FILES = {"ids": ("ids.bin", "ids_offsets.npy"), "passages": ("passages.bin", "passages_offsets.npy")}
CORE_FILES = (HNSW_NAME, *(name for pair in STORE_FILES.values() for name in pair))
CHECKSUM = "xxh3_128"
_CHUNK = 1 << 24  # 16 MiB reads


class IndexFileError(ValueError):
    """A saved index that cannot be trusted: the message names the file and what is wrong."""


def checksum(path: Path) -> str:
    """xxh3-128 hex digest of a file, streamed in 16 MiB reads into one reused buffer."""
    h, buf = xxhash.xxh3_128(), bytearray(_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])  # xxhash releases the GIL: files hash in parallel threads
    return h.hexdigest()


def file_checksums(paths: list[Path]) -> list[str]:
    """`checksum` of each path, the files spread over threads (one a core, largest first)."""
    workers = min(len(paths), os.cpu_count() or 1)
    if workers <= 1:
        return [checksum(p) for p in paths]
    largest_first = sorted(paths, key=lambda p: -Path(p).stat().st_size)
    with ThreadPoolExecutor(workers) as pool:
        digests = dict(zip(largest_first, pool.map(checksum, largest_first)))
    return [digests[p] for p in paths]


def describe_files(directory: Path, names=None) -> dict:
    """{name: {"bytes": size, CHECKSUM: digest}} for every file in `directory` (what index.json records),
    or only those of `names` that are there."""
    paths = [p for p in sorted(Path(directory).iterdir()) if p.is_file() and (names is None or p.name in names)]
    return {p.name: {"bytes": p.stat().st_size, CHECKSUM: digest} for p, digest in zip(paths, file_checksums(paths))}


def write_json(path: Path, obj) -> None:
    """Write JSON through a temporary file and a rename: a reader never sees half of it."""
    tmp = Path(path).with_name(f".{Path(path).name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path, what: str = "a saved index") -> object:
    """A JSON file, or one error naming it (missing, not UTF-8, cut short)."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} not found: {path.parent} is not {what} (or it is incomplete)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise IndexFileError(f"{path} is not valid JSON (cut short or corrupt: {e}); rebuild the index") from None


def saved_dir(directory: Path) -> Path:
    """Where the saved index of `directory` is: itself, or its previous version while a save's swap of
    directories was killed between its two renames (see twotowers/writing.py)."""
    from ..writing import current_dir

    return current_dir(Path(directory), META_NAME)


def check_replaceable(d: Path, overwrite: bool) -> None:
    """`d` may take a saved index: absent, empty, or an index (when `overwrite`). A save replaces the whole
    directory, so one holding anything else is refused (FileExistsError): nothing the user had is lost."""
    if not d.exists():
        if not overwrite and saved_dir(d) != d:
            raise FileExistsError(f"{d} already holds an index: pass overwrite=True (--overwrite) to replace it")
        return
    if not d.is_dir():
        raise FileExistsError(f"{d} is a file, not a directory: an index is saved as a directory of its own")
    own = {META_NAME, *CORE_FILES, LEGACY_VECTORS_NAME, *KEYWORD_FILES}
    foreign = sorted(p.name for p in d.iterdir() if p.name not in own and p.name != ".writer.lock"
                     and not p.name.startswith(".tmp-save-"))  # the lock, when the parent is read-only; the old save's leftovers
    if foreign:
        raise FileExistsError(f"{d} holds files that are not part of a saved index ({', '.join(foreign[:3])}"
                              f"{', ...' if len(foreign) > 3 else ''}): a save replaces the whole directory, so give "
                              "the index a directory of its own; nothing was written")
    if not overwrite and (d / META_NAME).exists():
        raise FileExistsError(f"{d} already holds an index: pass overwrite=True (--overwrite) to replace it")


def read_meta(directory: Path) -> dict:
    """index.json, checked for format, version and the fields `load` needs."""
    path = Path(directory) / META_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {directory} is not a saved PassageIndex")
    meta = read_json(path)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise IndexFileError(f"{path} does not describe a twotowers passage index")
    if meta.get("format_version") not in READABLE_VERSIONS:
        raise IndexFileError(f"{path}: format_version {meta.get('format_version')!r} cannot be read by this twotowers "
                             f"(it reads {' and '.join(map(str, READABLE_VERSIONS))}, whose files carry checksums): "
                             "rebuild the index")
    try:
        for key in ("count", "dim", "M", "ef"):
            meta[key] = int(meta[key])
        for key, low, high in (("count", 0, 1 << 40), ("dim", 1, 1 << 16), ("M", 2, 1 << 12), ("ef", 1, 1 << 16)):
            if not low <= meta[key] <= high:  # index.json has no checksum of its own: an edited ef could hang search
                raise ValueError(f"{key} {meta[key]} is out of range ({low} to {high:,})")
        files, _ = dict(meta["files"]), meta["model"]["fingerprint"]
        for name, rec in files.items():
            int(rec["bytes"]), str(rec[CHECKSUM])
    except (KeyError, TypeError, ValueError) as e:
        raise IndexFileError(f"{path} lacks or garbles a required field ({type(e).__name__}: {e}); rebuild the index") from None
    return meta


def expected_files(meta: dict) -> tuple[str, ...]:
    """The fixed set of files a saved index of `meta`'s format version and parts holds."""
    legacy = (LEGACY_VECTORS_NAME,) if meta["format_version"] == 2 else ()
    return CORE_FILES + legacy + (KEYWORD_FILES if meta.get("keyword") else ())


def verify_files(directory: Path, files: dict, expected: tuple[str, ...], *, checksums: bool = True) -> None:
    """The files `load` reads (`expected`: a fixed set, never taken from index.json's own list) are each
    recorded in index.json, present, of the recorded size and (when `checksums`) content; a listed name
    that is not one of them (another file, `../other/hnsw.bin`, an absolute path) is refused. Else one
    error naming the file."""
    d = Path(directory)
    for name in files:
        if name not in expected:
            inside = name == Path(name).name and name not in ("", ".", "..") and "\\" not in name
            raise IndexFileError(f"{d / META_NAME} lists {name!r}, which is not "
                                 + ("a file of this index" if inside else "a plain file inside the index directory")
                                 + ": index.json was altered; rebuild the index")
    for name in expected:
        if name not in files:
            raise IndexFileError(f"{d / META_NAME} records no size or checksum for {name}: it would be read "
                                 "unchecked; index.json was altered, rebuild the index")
    files = {name: files[name] for name in expected}
    for name, rec in files.items():
        p = d / name
        if not p.is_file():
            what = "the keyword (BM25) part" if name.startswith("keyword") else "a part of the index"
            raise FileNotFoundError(f"{p} is missing: {what} listed in {META_NAME} is not there")
        size = p.stat().st_size
        if size != rec["bytes"]:
            raise IndexFileError(f"{p} is {size} bytes but {META_NAME} records {rec['bytes']}: truncated, corrupt "
                                 "or from another index")
    if checksums:
        names = list(files)
        for name, digest in zip(names, file_checksums([d / n for n in names])):
            if digest != files[name][CHECKSUM]:
                raise IndexFileError(f"{d / name} does not match the checksum in {META_NAME}: the file was altered, "
                                     "corrupted or copied from another index; rebuild the index (or restore the file)")


_HNSW_HEADER = struct.Struct("<6QiI3QdQ")  # hnswalg.h saveIndex: offsetLevel0 .. ef_construction


def check_hnsw_header(path: Path, *, count: int, dim: int, M: int) -> None:
    """hnsw.bin's header agrees with index.json's count, dim and M."""
    with open(path, "rb") as f:
        head = f.read(_HNSW_HEADER.size)
    if len(head) < _HNSW_HEADER.size:
        raise IndexFileError(f"{path} is truncated: {len(head)} bytes, shorter than an hnswlib header")
    (_, _, cur, _, label_offset, offset_data, _, _, _, _, m, _, _) = _HNSW_HEADER.unpack(head)
    if cur != count:
        raise IndexFileError(f"{path} holds {cur} vectors but {META_NAME} says {count}: the parts disagree")
    if label_offset - offset_data != 4 * dim:
        raise IndexFileError(f"{path} holds {(label_offset - offset_data) // 4}-dim vectors but {META_NAME} says "
                             f"dim={dim}: the parts disagree")
    if m != M:
        raise IndexFileError(f"{path} was built with M={m} but {META_NAME} says M={M}: the parts disagree")


def hnsw_layout(path: Path) -> tuple[int, int, int, int]:
    """(element count, bytes per level-0 record, the vector's offset in it, the label's offset) of an
    hnsw.bin: its level-0 records start right after the header, in hnswlib's internal order."""
    with open(path, "rb") as f:
        head = _HNSW_HEADER.unpack(f.read(_HNSW_HEADER.size))
    (_, _, cur, per_element, label_offset, offset_data, *_) = head
    return cur, per_element, offset_data, label_offset


LEVEL0_START = _HNSW_HEADER.size


def check_hnsw_graph(path: Path, *, count: int, dim: int, M: int) -> None:
    """hnsw.bin's graph is whole: every link count and link, every label and the entry point in range.

    What `load(verify=False)` checks instead of the checksums: a graph with a link out of range makes
    hnswlib read outside its memory (a segmentation fault, not an error). Reads the file once with
    numpy: about twice its checksum's time, a fraction of all the files' (0.033 s against 0.014 s for a
    graph of 200,000 64-d vectors, M=16, 81 MB, on 2 busy vCPUs: `python bench/graph_check.py`)."""
    check_hnsw_header(path, count=count, dim=dim, M=M)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = _HNSW_HEADER.unpack(f.read(_HNSW_HEADER.size))
    (offset0, _, cur, per_element, label_offset, offset_data, max_level, entry, max_m, max_m0, _, _, _) = head

    def corrupt(what: str):
        return IndexFileError(f"{path}: the graph is corrupt ({what}); its checksum was not verified (verify=False, "
                              "--no-verify): rebuild the index, or restore the file")

    links0 = 4 + 4 * max_m0  # a level-0 list: its count (the low 16 bits of a uint32), then max_m0 links
    if offset0 != 0 or offset_data != links0 or per_element != links0 + 4 * dim + 8 or label_offset != offset_data + 4 * dim:
        raise corrupt("its header's record layout does not match M and dim")
    if cur and not (0 <= max_level < 64 and entry < cur):
        raise corrupt(f"entry point {entry} of {cur} elements at level {max_level}")
    level0_end = _HNSW_HEADER.size + cur * per_element
    if size < level0_end + 4 * cur:
        raise corrupt(f"{size} bytes, too few for {cur} elements")
    arr = np.memmap(path, dtype=np.uint8, mode="r")
    # Level 0 as [cur, per_element / 4] uint32 words (the header is 96 bytes, every field a multiple of 4):
    # word 0 the link count, then max_m0 links (unused slots are zeroed or stale earlier links: always in
    # range), ..., the last two words the uint64 label. A strided view: nothing is copied.
    records = np.asarray(arr[_HNSW_HEADER.size : level0_end]).view("<u4").reshape(cur, per_element // 4)
    for a in range(0, cur, 1 << 15):
        block = records[a : a + (1 << 15)]
        if (block[:, 0] & 0xFFFF).max() > max_m0:
            raise corrupt(f"an element near {a} has more than {max_m0} level-0 links")
        if (block[:, 1 : 1 + max_m0] >= cur).any():
            row = a + int(np.argmax((block[:, 1 : 1 + max_m0] >= cur).any(axis=1)))
            raise corrupt(f"element {row} links to an element beyond the {cur} there are")
        if block[:, -1].max() or block[:, -2].max() >= cur:
            raise corrupt(f"an element near {a} has a label beyond the {cur} rows")
    # Upper levels: per element a uint32 byte size (0 for most: they live on level 0 only), then that many
    # bytes of [count, max_m links] lists. From any element's size word on, the next nonzero word is the
    # next element that has upper levels: the walk jumps there, one step per such element (~1/M of them).
    tail = np.asarray(arr[level0_end : size - (size - level0_end) % 4]).view("<u4")
    nonzero, per_level = np.flatnonzero(tail), 1 + max_m
    p, elements, starts, lengths = 0, 0, [], []
    while elements < cur:
        q = int(nonzero[nonzero.searchsorted(p)]) if nonzero.size and nonzero[-1] >= p else len(tail)
        if elements + (q - p) >= cur:  # the rest are level-0 only
            p += cur - elements
            break
        elements += q - p + 1
        n = int(tail[q])
        if n % (4 * per_level) or n // (4 * per_level) > max_level or q + 1 + n // 4 > len(tail):
            raise corrupt(f"element {elements - 1}'s upper link lists are {n} bytes")
        starts.append(q + 1)
        lengths.append(n // 4)
        p = q + 1 + n // 4
    if level0_end + 4 * p != size:
        raise corrupt(f"{size} bytes, but its link lists end at byte {level0_end + 4 * p}")
    if starts:  # every upper-level list at once: [lists, 1 + max_m] words
        lengths = np.asarray(lengths)
        first = np.repeat(np.asarray(starts) - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
        lists = tail[first + np.arange(int(lengths.sum()))].reshape(-1, per_level)
        counts = lists[:, 0] & 0xFFFF
        if counts.max() > max_m or ((lists[:, 1:] >= cur) & (np.arange(max_m) < counts[:, None])).any():
            raise corrupt("an upper-level link out of range")


def load_array(path: Path, dtype, shape: tuple[int, ...], mmap: bool = True) -> np.ndarray:
    """np.load without pickles, checking dtype and shape; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the saved index is incomplete")
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except Exception as e:  # truncated header or data, or not an .npy file at all
        raise IndexFileError(f"{path} is truncated or corrupt: {type(e).__name__}: {e}") from e
    if arr.dtype != np.dtype(dtype) or arr.shape != tuple(shape):
        raise IndexFileError(f"{path}: expected {np.dtype(dtype).name} {tuple(shape)}, found {arr.dtype.name} "
                             f"{arr.shape} (truncated, or from another index)")
    return arr.view(np.ndarray)  # still memory-mapped; a plain ndarray indexes ~10x faster than np.memmap
