"""Choosing hnswlib's search breadth `ef`: the smallest that reaches a target recall@k against exact search.

Why pseudo-queries: passage vectors sit on the graph and overstate recall (untrained mean tower, dev600
collection, M=32: recall@10 0.99 at ef=32 for passages, but ef=384 for the real dev600 queries); the
query tower's vectors of 1-6-word windows cut from sampled passages (`twotowers.data.word_windows`) are
a little harder than those queries (ef=512), 3-12-word ones a little easier.
"""

from __future__ import annotations

import numpy as np

from ..topk import exact_top_k, exact_top_k_blocks

EF_CANDIDATES = (10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)


class RecallWarning(UserWarning):
    """ef tuning could not reach its target recall: searches miss more true neighbours than asked for."""


def _drop_self(labels: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Remove each query's own row from its result list, keeping the first k of the rest."""
    out = np.empty((len(labels), k), dtype=np.int64)
    for i, (lab, r) in enumerate(zip(labels, rows)):
        out[i] = lab[lab != r][:k]
    return out


def choose_ef(hnsw, vectors: np.ndarray, q: np.ndarray, target_recall: float, k: int,
              self_rows: np.ndarray | None = None) -> tuple[int, dict]:
    """The smallest ef whose recall@k on queries `q [n, dim]` reaches target + one standard error.

    `vectors`: the indexed vectors (ground truth by exact search); `self_rows`: when the queries are
    indexed vectors themselves, their rows, excluded from both result lists. Leaves hnsw at that ef.
    Returns (ef, record) where the record says how it was chosen.
    """
    n = hnsw.get_current_count()
    extra = 0 if self_rows is None else 1
    kk = min(k, n - extra)
    if kk < 1 or not len(q):
        return int(hnsw.ef), {}
    # ground truth: a scan of every vector (a VectorStore reads its graph file block by block)
    exact, _ = exact_top_k_blocks(q, vectors.blocks(), kk + extra) if hasattr(vectors, "blocks") else \
        exact_top_k(q, vectors, kk + extra)
    if self_rows is not None:
        exact = _drop_self(exact, self_rows, kk)
    # The k-th best exact score of each query: a hit scoring at least that is a true neighbour, whichever of
    # several passages tied at the cut the two searches happened to keep (identical vectors are common in
    # small or repetitive corpora, and set overlap would count each such tie as a miss).
    kth = np.einsum("ij,ij->i", vectors[exact[:, -1]], q) - 1e-6

    def recall_at(ef: int) -> float:
        hnsw.set_ef(ef)
        labels, _ = hnsw.knn_query(q, k=kk + extra)
        approx = _drop_self(labels.astype(np.int64), self_rows, kk) if self_rows is not None else labels.astype(np.int64)
        scores = np.einsum("ijd,id->ij", vectors[approx.ravel()].reshape(*approx.shape, -1), q)  # [n, kk]
        return float(np.mean(np.minimum((scores >= kth[:, None]).sum(axis=1), kk) / kk))

    # A sample of n queries estimates recall with a standard error of ~sqrt(t(1-t)/(n k)) (0.0022 for
    # t=0.99, 200 queries, k=10): ask for one standard error more, so that the ef chosen reaches the
    # target on queries it was not tuned on (without it, 0.9897 on dev600's real queries was seen).
    margin = float(np.sqrt(target_recall * (1 - target_recall) / (len(q) * kk)))
    need = min(target_recall + margin, 1.0)
    chosen, recall, below = None, 0.0, None  # below: the largest ef seen to miss `need`
    for ef in (e for e in EF_CANDIDATES if e >= kk + extra):
        chosen, recall = ef, recall_at(ef)
        if recall >= need:
            break
        below = ef
    # The grid steps by 1.33-1.5x and search time grows with ef: bisect between the last miss and
    # the first hit, to within 1/16 of ef (recall rises with ef, near enough to monotone).
    while recall >= need and below is not None and chosen - below > max(2, below // 16):
        mid = (below + chosen) // 2
        r = recall_at(mid)
        if r >= need:
            chosen, recall = mid, r
        else:
            below = mid
    hnsw.set_ef(chosen)
    return chosen, {"target_recall": target_recall, "k": kk, "queries": len(q), "margin": round(margin, 4),
                    "recall": round(recall, 4), "reached": recall >= target_recall,
                    "ef_missed": below}  # the largest ef tried that missed target + margin (None: none did)


def tune(hnsw, vectors, texts_at, model, target_recall: float, *, queries: np.ndarray | None = None,
         samples: int = 200, k: int = 10, seed: int = 0) -> tuple[int, dict]:
    """Choose ef for a graph -> (ef, the record index.json keeps, with where the queries came from).

    Queries: `queries` (query vectors) when given; else the query tower's vectors of 1-6-word windows
    cut from `samples` sampled passages (`texts_at(rows)` -> their texts); else, without a model,
    sampled passage vectors, each excluding itself from both result lists. `vectors`: the indexed
    vectors by row (ground truth by exact search).
    """
    n = len(vectors)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=min(samples, n), replace=False))
    self_rows = None
    if queries is not None:
        q, source = queries[:samples], "given queries"
    elif model is not None:
        from ..data import word_windows  # a model is here, so torch is loaded already

        q = model.encode_queries(word_windows(texts_at(rows), rng))
        source = "query-tower vectors of 1-6-word windows of sampled passages"
    else:
        q, source, self_rows = vectors[rows], "sampled passage vectors (self excluded)", rows
    ef, record = choose_ef(hnsw, vectors, np.ascontiguousarray(q, dtype=np.float32), target_recall, k, self_rows)
    return ef, ({**record, "source": source, "count": n} if record else {})


def unreached(record: dict, ef: int) -> str:
    """The warning for a tuning that could not reach its target recall."""
    return (f"ef tuning could not reach recall@{record['k']} {record['target_recall']}: {record['recall']:.4f} at "
            f"ef={ef}, the largest tried, on {record['queries']} queries ({record['source']}); searches will miss "
            "more true neighbours than asked: rebuild with a larger M or ef_construction, or a lower target recall")
