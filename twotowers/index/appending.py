"""Files a streaming build grows by appending, each cut back to its last checkpoint when a build resumes.

    col = NpyColumn(path, np.int32)        # a 1-d .npy whose header is rewritten with its length on `sync`
    col.append(arr); col.sync()            # flushed, fsynced, loadable by np.load from then on
    NpyColumn(path, np.int32, keep=n)      # resume: the first n values kept, the rest cut off
    blob = Blob(directory, "ids")          # strings: ids.bin + ids_offsets.npy, the format TextStore.load reads

Appends are buffered by the OS; a kill loses what came after the last `sync`, and the caller's state
file (written after the sync) says how long each file was then.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

HEADER_BYTES = 128  # a version 1.0 .npy header, padded: room for any 1-d length, rewritten in place


def npy_header(dtype, length: int) -> bytes:
    """The .npy header of a 1-d array of `length` values of `dtype`, exactly HEADER_BYTES long."""
    text = "{'descr': %r, 'fortran_order': False, 'shape': (%d,), }" % (np.dtype(dtype).str, length)
    text = text.ljust(HEADER_BYTES - 10 - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + (HEADER_BYTES - 10).to_bytes(2, "little") + text.encode("latin1")


class NpyColumn:
    """A 1-d `.npy` file grown by `append`; `sync` makes it a valid array of everything appended so far."""

    def __init__(self, path, dtype, *, keep: int | None = None):
        self.path, self.dtype = Path(path), np.dtype(dtype)
        if keep is None or not self.path.exists():
            if keep:
                raise FileNotFoundError(f"{self.path} is missing: the unfinished build cannot resume")
            with open(self.path, "wb") as f:
                f.write(npy_header(self.dtype, 0))
            keep = 0
        elif self.path.stat().st_size < HEADER_BYTES + keep * self.dtype.itemsize:
            raise ValueError(f"{self.path} holds fewer than the {keep:,} values its checkpoint recorded")
        os.truncate(self.path, HEADER_BYTES + keep * self.dtype.itemsize)  # what came after the checkpoint goes
        self._f = open(self.path, "r+b")
        self._f.seek(0, os.SEEK_END)
        self.length = keep

    def append(self, values: np.ndarray) -> None:
        values = np.ascontiguousarray(values, dtype=self.dtype)
        self._f.write(values.tobytes())
        self.length += len(values)

    def sync(self) -> None:
        """Rewrite the header with the current length, then flush and fsync: the file is whole from here."""
        self._f.flush()
        os.pwrite(self._f.fileno(), npy_header(self.dtype, self.length), 0)
        os.fsync(self._f.fileno())

    def read(self, start: int, stop: int) -> np.ndarray:
        """Values [start, stop) (flushed first)."""
        self._f.flush()
        return np.fromfile(self.path, dtype=self.dtype, count=stop - start,
                           offset=HEADER_BYTES + start * self.dtype.itemsize)

    def close(self) -> None:
        self._f.close()


class Blob:
    """Strings appended to `NAME.bin` (UTF-8, back to back) + `NAME_offsets.npy` (int64, n + 1): a TextStore's files."""

    def __init__(self, blob_path, offsets_path, *, keep: int | None = None, keep_bytes: int | None = None):
        self.path = Path(blob_path)
        self.offsets = NpyColumn(offsets_path, np.int64, keep=None if keep is None else keep + 1)
        if keep is None:
            self.offsets.append(np.zeros(1, dtype=np.int64))
            self.path.write_bytes(b"")
            keep_bytes = 0
        elif not self.path.is_file() or self.path.stat().st_size < keep_bytes:
            raise ValueError(f"{self.path} holds fewer than the {keep_bytes:,} bytes its checkpoint recorded")
        os.truncate(self.path, keep_bytes)
        self._f = open(self.path, "ab")
        self.nbytes = keep_bytes

    def __len__(self) -> int:
        return self.offsets.length - 1

    def extend(self, strings: list[str]) -> None:
        data = [s.encode("utf-8") for s in strings]
        self._f.write(b"".join(data))
        ends = self.nbytes + np.cumsum(np.fromiter(map(len, data), dtype=np.int64, count=len(data)))
        self.offsets.append(ends)
        self.nbytes = int(ends[-1]) if len(ends) else self.nbytes

    def get(self, row: int) -> str:
        """The string at `row` (read back from disk: for the rare check that needs an earlier one)."""
        self._f.flush()
        a, b = self.offsets.read(row, row + 2)
        with open(self.path, "rb") as f:
            f.seek(int(a))
            return f.read(int(b - a)).decode("utf-8")

    def strings(self, start: int = 0, stop: int | None = None, step: int = 100_000):
        """Every string from `start` to `stop`, in order, read back `step` at a time."""
        self._f.flush()
        stop = len(self) if stop is None else stop
        with open(self.path, "rb") as f:
            for a in range(start, stop, step):
                offs = self.offsets.read(a, min(a + step, stop) + 1)
                f.seek(int(offs[0]))
                data = f.read(int(offs[-1] - offs[0]))
                rel = offs - offs[0]
                yield from (data[rel[i] : rel[i + 1]].decode("utf-8") for i in range(len(offs) - 1))

    def sync(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())
        self.offsets.sync()

    def close(self) -> None:
        self._f.close()
        self.offsets.close()
