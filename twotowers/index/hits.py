"""`SearchHit`: one search result; its text is read from the index's store on first use."""

from __future__ import annotations

import itertools

import numpy as np


class SearchHit:
    """One result: the passage id, its text, the score it was ranked by, and each side's score where known.

    `score` is the cosine similarity (dense), the BM25 score (keyword) or the fused score (hybrid).
    `text` is read from the index's store when first used, so a search that needs only ids and
    scores (evaluation, re-ranking elsewhere) never touches the passage texts.
    """

    __slots__ = ("id", "score", "dense_score", "keyword_score", "_text", "_store", "_row")
    FIELDS = ("id", "text", "score", "dense_score", "keyword_score")

    def __init__(self, id: str, text: str | None, score: float, dense_score: float | None = None,
                 keyword_score: float | None = None, _store=None, _row: int = -1):
        self.id, self._text, self.score = id, text, score
        self.dense_score, self.keyword_score = dense_score, keyword_score
        self._store, self._row = _store, _row  # where `text` lives when not given

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = self._store.get_unchecked([self._row])[0]
            self._store = None
        return self._text

    def to_dict(self) -> dict:
        """The five fields as a dict (the text read if not yet)."""
        return {f: getattr(self, f) for f in self.FIELDS}

    def __eq__(self, other) -> bool:
        if not isinstance(other, SearchHit):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in self.FIELDS)

    __hash__ = None  # mutable, like the dataclass it replaces

    def __repr__(self) -> str:
        return "SearchHit(" + ", ".join(f"{f}={getattr(self, f)!r}" for f in self.FIELDS) + ")"


def make_hits(ids, passages, rows: list[int], scores: list, dense: list, keyword: list) -> list[SearchHit]:
    """SearchHits from Python lists; `rows` are in range of the `ids` and `passages` stores."""
    n = len(rows)
    return list(map(SearchHit, ids.get_unchecked(rows), [None] * n, scores, dense, keyword,
                    itertools.repeat(passages, n), rows))


def dense_hits(ids, passages, rows: list[int], dist: list[float]) -> list[SearchHit]:
    """SearchHits for one query's hnswlib labels (rows) and distances, as Python lists."""
    sims = [1.0 - d for d in dist]  # hnswlib "ip" distance is 1 - dot
    return make_hits(ids, passages, rows, sims, sims, [None] * len(rows))


def array_hits(ids, passages, rows: np.ndarray, scores: np.ndarray, dense=None, keyword=None) -> list[SearchHit]:
    """SearchHits for one query's `[k]` rows (-1 pads at the end) and scores, as numpy arrays."""
    rows = rows.tolist()  # Python ints
    n = len(rows)
    while n and rows[n - 1] < 0:
        n -= 1
    del rows[n:]
    py = scores[:n].tolist()  # Python floats
    none = [None] * n
    dense_py = none if dense is None else py if dense is scores else dense[:n].tolist()
    keyword_py = none if keyword is None else py if keyword is scores else keyword[:n].tolist()
    return make_hits(ids, passages, rows, py, dense_py, keyword_py)
