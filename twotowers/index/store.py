"""What the index keeps on disk beside the graph, memory-mapped: `TextStore` (ids, texts) and `VectorStore`.

`TextStore`: an append-only list of strings as one UTF-8 blob + int64 offsets. 8.8M MS MARCO passages
are ~3 GB of text: the index keeps them on disk and reads only the hits. While building, strings are
appended to a spool file in a private temporary directory; `save` copies it out. A loaded store maps
the saved file read-only; the first `extend` after loading copies it to a spool first, so a saved (or
Hub-cached) index is never modified in place.

`VectorStore`: the passage vectors by row, read from the graph file itself (no second copy on disk or in memory).
"""

from __future__ import annotations

import mmap
import os
import shutil
import tempfile
import weakref
from collections.abc import Sequence
from pathlib import Path

import numpy as np


class TextStore:
    """Strings by position: `store[i]`, `store.get(rows)`, `len(store)`, `extend(strings)`, `save(blob, offsets)`."""

    def __init__(self):
        self._set_offsets(np.zeros(1, dtype=np.int64))  # [n + 1] byte offsets into the blob
        self._blob_path: Path | None = None           # file holding the blob (spool or saved file)
        self._writable = False
        self._mm: mmap.mmap | None = None
        self._tmp: str | None = None

    @classmethod
    def load(cls, blob_path, offsets: np.ndarray) -> "TextStore":
        """Map a saved blob read-only; `offsets` ([n + 1] int64, checked by the caller) index into it."""
        store = cls()
        store._blob_path = Path(blob_path)
        store._set_offsets(offsets)
        size = store._blob_path.stat().st_size
        if int(offsets[0]) != 0 or int(offsets[-1]) != size or (len(offsets) > 1 and np.any(np.diff(offsets) < 0)):
            raise ValueError(f"{store._blob_path}: {size} bytes, but its offsets end at {int(offsets[-1])} "
                             "(truncated, or from another index)")
        store._map()
        return store

    def copy(self) -> "TextStore":
        """The same strings, to grow apart: the blob is shared (mapped again) until the copy extends it."""
        out = TextStore()
        out._set_offsets(self._offsets)  # a memmap or a private array: `extend` makes a new one either way
        out._blob_path = self._blob_path
        out._keep = self  # this store's spool directory lives as long as the copy may read it
        out._map()
        return out

    def _set_offsets(self, offsets: np.ndarray) -> None:
        self._offsets = np.ascontiguousarray(offsets, dtype=np.int64)  # no copy if already so (a memmap stays one)
        self._at = memoryview(self._offsets)  # view[i] is a Python int, ~2x cheaper than ndarray.item(i)

    def _spool(self) -> None:
        """Make the blob a private, appendable file (copying a loaded one from its mapping: the saved file's
        path may hold a newer version by now, swapped in by a save)."""
        tmp = tempfile.mkdtemp(prefix="twotowers-store-")
        weakref.finalize(self, shutil.rmtree, tmp, True)
        spool = Path(tmp) / "blob"
        self._write_blob(spool)
        self._tmp = tmp
        self._close_map()
        self._blob_path, self._writable = spool, True
        self._set_offsets(np.array(self._offsets, dtype=np.int64))  # a private, growable copy

    def _map(self) -> None:
        self._close_map()
        if self._blob_path is not None and self._offsets[-1] > 0:
            with open(self._blob_path, "rb") as f:
                self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)

    def _close_map(self) -> None:
        if self._mm is not None:
            self._mm.close()
            self._mm = None

    def extend(self, strings: Sequence[str]) -> None:
        """Append strings (encoded UTF-8; a string may hold any character, newlines and tabs included)."""
        if not self._writable:
            self._spool()
        data = [s.encode("utf-8") for s in strings]
        with open(self._blob_path, "ab") as f:
            f.write(b"".join(data))
        lengths = np.fromiter((len(b) for b in data), dtype=np.int64, count=len(data))
        self._set_offsets(np.concatenate([self._offsets, self._offsets[-1] + np.cumsum(lengths)]))
        self._map()

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, i: int) -> str:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"row {i} out of range for {n} strings")
        return self.get_unchecked([i % n])[0]

    def get(self, rows) -> list[str]:
        """Strings at `rows` (an int array or list; rows must be in range)."""
        rows = rows.tolist() if isinstance(rows, np.ndarray) else [int(r) for r in rows]
        if rows and (min(rows) < 0 or max(rows) >= len(self)):
            raise IndexError(f"rows out of range for {len(self)} strings")
        return self.get_unchecked(rows)

    def get_unchecked(self, rows: list[int]) -> list[str]:
        """Strings at `rows`, a list of Python ints known to be in range (e.g. hnswlib's labels)."""
        # A search reads ~10 strings: per-row Python beats numpy's fixed costs at that size.
        at, mm = self._at, self._mm
        out = []
        for r in rows:
            a, b = at[r], at[r + 1]
            out.append(str(mm[a:b], "utf-8") if b > a else "")
        return out

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def save(self, blob_path, offsets_path) -> None:
        """Write the blob and its offsets (`.npy`, no pickles)."""
        self._write_blob(Path(blob_path))
        np.save(offsets_path, np.ascontiguousarray(self._offsets, dtype=np.int64), allow_pickle=False)

    def _write_blob(self, path: Path) -> None:
        """The blob's bytes into `path`, from the mapping (the file it maps may have been replaced since)."""
        size = int(self._offsets[-1])
        with open(path, "wb") as f:
            for start in range(0, size, 1 << 24):  # 16 MiB at a time
                f.write(self._mm[start : min(start + (1 << 24), size)])

    def nbytes(self) -> int:
        return int(self._offsets[-1])


class VectorStore:
    """Passage vectors by row, `[n, dim]` float32: exact scores for hybrid candidates and ef tuning.

    One copy of each vector: a loaded index reads them from its graph file (`hnsw.bin` holds every
    vector in its level-0 records, in hnswlib's insertion order, each beside its label = row), through a
    `[n]` row -> record map, with one `pread` a vector (~1 us). Not through a memory map: on current
    kernels a page fault maps the whole (up to 2 MiB) page-cache folio around it, so 200 scattered rows
    of a 372 MiB graph made 220 MB of it this process's resident memory (`python bench/vector_reads.py`),
    a second copy of the graph beside hnswlib's. Vectors appended since (a build, `add`) go to a private spool file until a save
    writes them into a graph. hnswlib's own `get_items` would serve them too, but copies each through a
    std::vector (40-70 us a vector at 256-d).
    """

    def __init__(self, dim: int):
        self.dim = int(dim)
        self._n0 = 0                                            # rows in the graph file
        self._record = np.zeros(0, dtype=np.int64)              # [n0] row -> record in the graph file
        self._tail = np.zeros((0, self.dim), dtype=np.float32)  # [n - n0, dim] rows appended since
        self._path: Path | None = None  # raw float32 spool of the tail
        self._tmp: str | None = None
        self._file: _GraphFile | None = None  # the graph file's descriptor and record layout

    @classmethod
    def from_graph(cls, path, count: int, dim: int) -> "VectorStore":
        """The vectors of a saved graph (`hnsw.bin` of `count` `dim`-d vectors, its header checked by the
        caller), read in place; its labels must be the rows 0..count-1, each once."""
        from .files import LEVEL0_START, IndexFileError, hnsw_layout

        store = cls(dim)
        path = Path(path)
        cur, per_element, offset_data, label_offset = hnsw_layout(path)
        if cur != count or path.stat().st_size < LEVEL0_START + count * per_element:
            raise IndexFileError(f"{path} is too short for {count} elements of {per_element} bytes")
        if count:
            store._file = _GraphFile(path, per_element, offset_data, label_offset)
            labels = _read_labels(path, count, per_element, label_offset)
            if int(labels.max()) >= count:
                raise IndexFileError(f"{path}: a label is beyond the {count} rows: the graph is corrupt; rebuild the index")
            record = np.full(count, -1, dtype=np.int32 if count < 2**31 else np.int64)
            record[labels] = np.arange(count, dtype=record.dtype)
            if (record < 0).any():
                raise IndexFileError(f"{path}: two records carry the same label: the graph is corrupt; rebuild the index")
            store._record, store._n0 = record, count
        return store

    def extend(self, vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        if self._path is None:
            self._tmp = tempfile.mkdtemp(prefix="twotowers-vectors-")
            weakref.finalize(self, shutil.rmtree, self._tmp, True)
            self._path = Path(self._tmp) / "vectors.f32"
            with open(self._path, "wb") as f:  # a copy's tail (shared until now) starts its own spool
                for start in range(0, len(self._tail), 100_000):
                    f.write(np.ascontiguousarray(self._tail[start : start + 100_000]).tobytes())
        with open(self._path, "ab") as f:
            f.write(vectors.tobytes())
        n = len(self._tail) + len(vectors)
        self._tail = np.memmap(self._path, dtype=np.float32, mode="r", shape=(n, self.dim)).view(np.ndarray)

    def __len__(self) -> int:
        return self._n0 + len(self._tail)

    def copy(self) -> "VectorStore":
        """The same vectors, to grow apart: the first `extend` of the copy spools its tail to a file of its own."""
        out = VectorStore(self.dim)
        out._n0, out._record, out._tail, out._file = self._n0, self._record, self._tail, self._file  # shared, read-only
        return out

    def blocks(self, rows: int = 1 << 14):
        """Every vector once, as `(rows [b], vectors [b, dim])` blocks in storage order: the graph's read
        record by record, then those appended since. 16k rows a block: an exact search of 200 queries over
        300k 256-d vectors peaked 116 MB above where it started, in 0.37 s (64k rows: 383 MB, 1.40 s;
        `python bench/vector_reads.py`)."""
        if self._n0:
            g = self._file
            record = np.dtype({"names": ["vector", "label"], "formats": [("<f4", (self.dim,)), "<u8"],
                               "offsets": [g.offset_data, g.label_offset], "itemsize": g.per_element})
            from .files import LEVEL0_START

            with open(g.path, "rb") as f:
                f.seek(LEVEL0_START)
                for a in range(0, self._n0, rows):
                    block = np.fromfile(f, dtype=record, count=min(rows, self._n0 - a))
                    yield block["label"].astype(np.int64), block["vector"]
        for a in range(0, len(self._tail), rows):
            yield np.arange(self._n0 + a, self._n0 + min(a + rows, len(self._tail)), dtype=np.int64), self._tail[a : a + rows]

    def __getitem__(self, rows) -> np.ndarray:
        """Vectors at `rows` (an int, a slice or an int array) -> `[len(rows), dim]` float32 (a copy)."""
        if isinstance(rows, (int, np.integer)):
            return self[np.array([rows])][0]
        if isinstance(rows, slice):
            rows = np.arange(*rows.indices(len(self)))
        rows = np.asarray(rows, dtype=np.int64)
        n0 = self._n0
        if not len(self._tail):
            return self._file.read(self._record[rows], self.dim)
        if not n0:
            return self._tail[rows]
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        old = rows < n0
        out[old] = self._file.read(self._record[rows[old]], self.dim)
        out[~old] = self._tail[rows[~old] - n0]
        return out


class _GraphFile:
    """An hnsw.bin opened for reading vectors by record (the descriptor keeps the file a save may replace)."""

    def __init__(self, path: Path, per_element: int, offset_data: int, label_offset: int):
        from .files import LEVEL0_START

        self.path, self.per_element, self.offset_data, self.label_offset = path, per_element, offset_data, label_offset
        self._start = LEVEL0_START + offset_data
        self._fd = os.open(path, os.O_RDONLY)
        weakref.finalize(self, os.close, self._fd)

    def read(self, records: np.ndarray, dim: int) -> np.ndarray:
        """The vectors of `records` (`[b]`, in range) -> `[b, dim]` float32."""
        size, fd, start, per = 4 * dim, self._fd, self._start, self.per_element
        data = b"".join([os.pread(fd, size, start + r * per) for r in records.tolist()])
        if len(data) != size * len(records):
            raise OSError(f"{self.path} ends inside its records (cut short since it was loaded)")
        return np.frombuffer(data, dtype=np.float32).reshape(len(records), dim).copy()


def _read_labels(path: Path, count: int, per_element: int, label_offset: int) -> np.ndarray:
    """The uint64 label of each level-0 record of an hnsw.bin -> `[count]`, read in 8 MiB blocks (plain
    reads: a pass over the whole file through a memory map would count it all as resident)."""
    from .files import LEVEL0_START

    record = np.dtype({"names": ["label"], "formats": ["<u8"], "offsets": [label_offset], "itemsize": per_element})
    out = np.empty(count, dtype=np.uint64)
    step = max(1, (8 << 20) // per_element)
    with open(path, "rb") as f:
        f.seek(LEVEL0_START)
        for a in range(0, count, step):
            block = np.fromfile(f, dtype=record, count=min(step, count - a))
            if len(block) < min(step, count - a):
                raise ValueError(f"{path} ends inside its records")
            out[a : a + len(block)] = block["label"]
    return out
