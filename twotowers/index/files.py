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
FORMAT_VERSION = 2  # 2: checksums of every file; 1 (sizes only) is refused with a rebuild hint
META_NAME = "index.json"
HNSW_NAME = "hnsw.bin"
VECTORS_NAME = "vectors.npy"
STORE_FILES = {"ids": ("ids.bin", "ids_offsets.npy"), "passages": ("passages.bin", "passages_offsets.npy")}
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


def describe_files(directory: Path) -> dict:
    """{name: {"bytes": size, CHECKSUM: digest}} for every file in `directory` (what index.json records)."""
    paths = [p for p in sorted(Path(directory).iterdir()) if p.is_file()]
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


def read_meta(directory: Path) -> dict:
    """index.json, checked for format, version and the fields `load` needs."""
    path = Path(directory) / META_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {directory} is not a saved PassageIndex")
    meta = read_json(path)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise IndexFileError(f"{path} does not describe a twotowers passage index")
    if meta.get("format_version") != FORMAT_VERSION:
        raise IndexFileError(f"{path}: format_version {meta.get('format_version')!r} cannot be read by this twotowers "
                             f"(it reads {FORMAT_VERSION}, whose files carry checksums): rebuild the index")
    try:
        for key in ("count", "dim", "M", "ef"):
            meta[key] = int(meta[key])
        files, _ = dict(meta["files"]), meta["model"]["fingerprint"]
        for name, rec in files.items():
            int(rec["bytes"]), str(rec[CHECKSUM])
    except (KeyError, TypeError, ValueError) as e:
        raise IndexFileError(f"{path} lacks or garbles a required field ({type(e).__name__}: {e}); rebuild the index") from None
    return meta


def verify_files(directory: Path, files: dict, *, checksums: bool = True) -> None:
    """Every recorded file present with its size and (when `checksums`) its content: else one error naming it."""
    d = Path(directory)
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
