"""Exact inner-product top-k over a matrix of vectors, in blocks (bounded memory, any corpus size).

The one brute-force search of the project: evaluation's exact retrieval, ef tuning's ground truth,
teacher-mined candidates for distillation and hard-negative mining all call `exact_top_k`.
"""

from __future__ import annotations

import numpy as np

_BLOCK_FLOATS = 1 << 25  # scores computed at once: 32M floats = 128 MiB


def exact_top_k(queries: np.ndarray, passages: np.ndarray, k: int, *, block: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Best `k` passages per query by inner product, best first, ties broken by row.

    `queries [nq, d]`, `passages [n, d]` (an array or a memory map, read `block` rows at a time) ->
    (rows `[nq, min(k, n)]` int64, scores `[nq, min(k, n)]` float32).
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    n, k = len(passages), min(int(k), len(passages))
    rows = np.zeros((len(queries), k), dtype=np.int64)
    scores = np.zeros((len(queries), k), dtype=np.float32)
    if k < 1 or not len(queries):
        return rows, scores
    q_step = min(len(queries), 1024)
    p_step = block or max(k, _BLOCK_FLOATS // q_step)
    for qa in range(0, len(queries), q_step):
        q = queries[qa : qa + q_step]
        best_r = np.zeros((len(q), 0), dtype=np.int64)
        best_s = np.zeros((len(q), 0), dtype=np.float32)
        for start in range(0, n, p_step):
            s = q @ np.asarray(passages[start : start + p_step], dtype=np.float32).T  # [q, block]
            kk = min(k, s.shape[1])
            part = np.argpartition(-s, kk - 1, axis=1)[:, :kk] if kk < s.shape[1] else np.broadcast_to(np.arange(s.shape[1]), s.shape)
            cand_r = np.concatenate([best_r, part + start], axis=1)
            cand_s = np.concatenate([best_s, np.take_along_axis(s, part, 1)], axis=1)
            order = np.lexsort((cand_r, -cand_s), axis=1)[:, :k]  # score descending, then row ascending
            best_r, best_s = np.take_along_axis(cand_r, order, 1), np.take_along_axis(cand_s, order, 1)
        rows[qa : qa + len(q)], scores[qa : qa + len(q)] = best_r, best_s
    return rows, scores


def exact_top_k_blocks(queries: np.ndarray, blocks, k: int) -> tuple[np.ndarray, np.ndarray]:
    """`exact_top_k` over passages given as `(rows [b], vectors [b, d])` blocks, in any order (a graph
    file read record by record): the same results, ties broken by row."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    best_r = np.zeros((len(queries), 0), dtype=np.int64)
    best_s = np.zeros((len(queries), 0), dtype=np.float32)
    for rows, vectors in blocks:
        s = queries @ np.asarray(vectors, dtype=np.float32).T  # [q, b]
        kk = min(k, s.shape[1])
        if not kk:
            continue
        part = np.argpartition(-s, kk - 1, axis=1)[:, :kk] if kk < s.shape[1] else np.broadcast_to(np.arange(s.shape[1]), s.shape)
        cand_r = np.concatenate([best_r, np.asarray(rows, dtype=np.int64)[part]], axis=1)
        cand_s = np.concatenate([best_s, np.take_along_axis(s, part, 1)], axis=1)
        order = np.lexsort((cand_r, -cand_s), axis=1)[:, :k]  # score descending, then row ascending
        best_r, best_s = np.take_along_axis(cand_r, order, 1), np.take_along_axis(cand_s, order, 1)
    return best_r, best_s
