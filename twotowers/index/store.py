"""`TextStore`: an append-only list of strings as one UTF-8 blob + int64 offsets, memory-mapped.

8.8M MS MARCO passages are ~3 GB of text: the index keeps them on disk and reads only the hits.
While building, strings are appended to a spool file in a private temporary directory; `save` copies
it out. A loaded store maps the saved file read-only; the first `extend` after loading copies it to a
spool first, so a saved (or Hub-cached) index is never modified in place.
"""

from __future__ import annotations

import mmap
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
    """Append-only float32 matrix `[n, dim]` on disk (`.npy`), memory-mapped: exact scores without hnswlib.

    hnswlib keeps the vectors too, but its `get_items` copies each one through Python lists (~50 us a
    vector); hybrid fusion and ef tuning need hundreds to millions of them.
    """

    def __init__(self, dim: int):
        self.dim = int(dim)
        self._arr = np.zeros((0, self.dim), dtype=np.float32)
        self._path: Path | None = None  # raw float32 spool while building
        self._tmp: str | None = None

    @classmethod
    def load(cls, arr: np.ndarray) -> "VectorStore":
        """Wrap a loaded (memory-mapped, shape-checked) `[n, dim]` float32 array."""
        store = cls(arr.shape[1])
        store._arr = arr
        return store

    def extend(self, vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        if self._path is None:
            self._tmp = tempfile.mkdtemp(prefix="twotowers-vectors-")
            weakref.finalize(self, shutil.rmtree, self._tmp, True)
            self._path = Path(self._tmp) / "vectors.f32"
            with open(self._path, "wb") as f:
                for start in range(0, len(self._arr), 100_000):  # a loaded store: copy, never modify the saved file
                    f.write(np.ascontiguousarray(self._arr[start : start + 100_000]).tobytes())
        with open(self._path, "ab") as f:
            f.write(vectors.tobytes())
        n = len(self._arr) + len(vectors)
        self._arr = np.memmap(self._path, dtype=np.float32, mode="r", shape=(n, self.dim)).view(np.ndarray)

    def __len__(self) -> int:
        return len(self._arr)

    def copy(self) -> "VectorStore":
        """The same vectors, to grow apart: the first `extend` of the copy spools them to a file of its own."""
        return VectorStore.load(self._arr)  # the array keeps its memory map (and so this spool) alive

    def __getitem__(self, rows) -> np.ndarray:
        return self._arr[rows]

    def save(self, path) -> None:
        """Write `.npy` (no pickles), streaming the rows through in blocks."""
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
                  "shape": (len(self._arr), self.dim)}
        with open(path, "wb") as f:
            np.lib.format.write_array_header_1_0(f, header)
            for start in range(0, len(self._arr), 100_000):
                f.write(np.ascontiguousarray(self._arr[start : start + 100_000]).tobytes())
