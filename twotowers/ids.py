"""Passage ids must be unique: `IdSet` finds a repeat among millions of ids in 16 bytes an id.

Each id is kept as its 64-bit xxh3 hash (with the row it came from) in a few sorted runs, merged
like a binary counter, so adding n ids costs O(n log n) and no Python object per id. A hash match
is confirmed on the strings themselves when `id_of(row)` is given, so a collision is never reported as
a repeat; without it (a stream whose earlier ids are gone), equal 64-bit hashes count as a repeat
(a false alarm has odds of about n^2 / 2^65: 2e-6 for 8.8M ids).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import xxhash


def hash_ids(ids: Sequence[str]) -> np.ndarray:
    """64-bit hashes of the ids' UTF-8 bytes -> `[n]` uint64."""
    return np.fromiter((xxhash.xxh3_64_intdigest(i.encode("utf-8")) for i in ids), dtype=np.uint64, count=len(ids))


class IdSet:
    """The ids seen so far (by hash and row); `first_repeat` checks a new batch against them and itself."""

    def __init__(self, id_of: Callable[[int], str] | None = None):
        self._id_of = id_of  # row -> id string, to confirm a hash match
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []  # (sorted hashes, their rows), largest first

    def first_repeat(self, ids: Sequence[str], rows: int | Sequence[int]) -> tuple[int, int] | None:
        """(row, earlier row) of the first id of `ids` already seen or repeated within `ids`; None if
        all are new. Does not add them. `rows`: each id's row (line), or the first of consecutive rows."""
        h = hash_ids(ids)
        at = _rows(rows, len(ids))
        found: list[tuple[int, int]] = []
        for hashes, rows in self._runs:
            pos = np.searchsorted(hashes, h)
            hit = np.flatnonzero((pos < len(hashes)) & (hashes[np.minimum(pos, len(hashes) - 1)] == h)) if len(hashes) else []
            for j in hit:
                for p in range(pos[j], len(hashes)):  # every earlier row with this hash
                    if hashes[p] != h[j]:
                        break
                    if self._id_of is None or self._id_of(int(rows[p])) == ids[j]:
                        found.append((int(at[j]), int(rows[p])))
                        break
        order = np.argsort(h, kind="stable")
        same = np.flatnonzero(h[order][1:] == h[order][:-1])
        for s in same:  # within the batch: the later of two equal hashes, if the strings agree
            a, b = int(order[s]), int(order[s + 1])
            if ids[a] == ids[b]:
                found.append((int(at[max(a, b)]), int(at[min(a, b)])))
        return min(found) if found else None

    def add(self, ids: Sequence[str], rows: int | Sequence[int]) -> None:
        """Remember `ids` at `rows` (as in `first_repeat`)."""
        h = hash_ids(ids)
        order = np.argsort(h, kind="stable")
        self._runs.append((h[order], _rows(rows, len(ids))[order]))
        while len(self._runs) > 1 and len(self._runs[-2][0]) <= 2 * len(self._runs[-1][0]):
            (h1, r1), (h2, r2) = self._runs.pop(), self._runs.pop()
            hashes, rows = np.concatenate([h2, h1]), np.concatenate([r2, r1])
            order = np.argsort(hashes, kind="stable")
            self._runs.append((hashes[order], rows[order]))

    def __len__(self) -> int:
        return sum(len(h) for h, _ in self._runs)

    def copy(self, id_of: Callable[[int], str] | None) -> "IdSet":
        """The same ids, confirmed by `id_of` from now on (runs are never changed in place: shared)."""
        out = IdSet(id_of)
        out._runs = list(self._runs)
        return out


def _rows(rows: int | Sequence[int], n: int) -> np.ndarray:
    return np.arange(rows, rows + n, dtype=np.int64) if isinstance(rows, (int, np.integer)) else np.asarray(rows, dtype=np.int64)
