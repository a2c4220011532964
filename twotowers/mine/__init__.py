"""Hard-negative mining: each query's best-scoring passages that are not labelled relevant.

    negatives, stats = mine_hard_negatives(query_vecs, positive_vecs, passage_vecs, positives_of, k=30)
    triples, stats = mine_texts(model, queries, positives, pool)     # the same on texts

Encode the training corpus with a model (a trained tower or the teacher), take each query's top-k
passages, drop the labelled positives and the likely false negatives (a passage scoring at least
`max_ratio` x the positive's score is probably relevant but unlabelled: the "positive-aware"
filter of NV-Retriever), and keep `per_query` of what remains. `python -m twotowers.mine` writes
them as `query<TAB>positive<TAB>negative...` lines (its `__main__`), which the training data loader
reads as triples.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..topk import exact_top_k


@dataclass
class MinedStats:
    queries: int = 0
    triples: int = 0
    no_negative: int = 0  # queries left with no negative after filtering
    dropped_positive: int = 0  # labelled positives found in the top k
    dropped_false_negative: int = 0  # near-positive passages dropped as likely relevant


def mine_hard_negatives(query_vecs: np.ndarray, positive_vecs: np.ndarray, passage_vecs: np.ndarray,
                        positives_of: Sequence[set[int]], k: int = 30, per_query: int = 4,
                        max_ratio: float = 0.95, margin: float = 0.0, skip_top: int = 0,
                        chunk: int = 2048) -> tuple[list[list[int]], MinedStats]:
    """Negatives for each query, as passage indices, hardest first.

    `query_vecs [nq, d]`; `positive_vecs [nq, d]`: each query's (first) positive, unit vectors;
    `passage_vecs [np, d]`: the pool; `positives_of[i]`: pool indices labelled relevant for query i.
    A candidate is kept when it is not a positive, its score < `max_ratio` x the positive's score and
    < positive's score - `margin`. `skip_top` ignores the best few ranks too (a stricter filter)."""
    if not (len(query_vecs) == len(positive_vecs) == len(positives_of)):
        raise ValueError("query_vecs, positive_vecs and positives_of must have one entry per query")
    stats = MinedStats(queries=len(query_vecs))
    pos_scores = np.einsum("ij,ij->i", query_vecs, positive_vecs)  # [nq]
    out: list[list[int]] = []
    for a in range(0, len(query_vecs), chunk):  # memory bounded by the chunk of queries
        idx, top = exact_top_k(query_vecs[a : a + chunk], passage_vecs, k)  # [c, k], best first
        for r in range(len(idx)):
            qi = a + r
            limit = min(max_ratio * pos_scores[qi], pos_scores[qi] - margin)
            negs = []
            for rank, (j, score) in enumerate(zip(idx[r], top[r])):
                if int(j) in positives_of[qi]:
                    stats.dropped_positive += 1
                elif rank < skip_top or score >= limit:
                    stats.dropped_false_negative += 1
                elif len(negs) < per_query:
                    negs.append(int(j))
            stats.triples += len(negs)
            stats.no_negative += not negs
            out.append(negs)
    return out, stats


log = logging.getLogger(__name__).info


def mine_texts(model, queries: Sequence[str], positives: Sequence[Sequence[str]], pool: Sequence[str],
               k: int = 30, per_query: int = 4, max_ratio: float = 0.95, margin: float = 0.0, skip_top: int = 0,
               cache=None) -> tuple[list[tuple[str, str, str]], MinedStats]:
    """Text-level mining: `queries[i]` with its relevant passage texts `positives[i]` (non-empty),
    negatives from `pool` (positives are added to it). `model`: anything with encode_queries /
    encode_passages; with a `TeacherCache`, vectors come from (and go to) the cache."""
    t0 = time.perf_counter()
    keep = [i for i, p in enumerate(positives) if p]
    pool = list(dict.fromkeys([*pool, *(t for i in keep for t in positives[i])]))
    where = {t: j for j, t in enumerate(pool)}
    qs = [queries[i] for i in keep]
    if cache is not None:
        qv, pv = cache.encode(model, qs, "query"), cache.encode(model, pool, "passage")
    else:
        qv, pv = model.encode_queries(qs), model.encode_passages(pool, show_progress=True)
    log(f"encoded {len(qs):,} queries and {len(pool):,} passages in {time.perf_counter() - t0:.1f}s")
    pos_sets = [{where[t] for t in positives[i]} for i in keep]
    first_pos = np.stack([pv[where[positives[i][0]]] for i in keep]) if keep else np.zeros((0, pv.shape[1]), np.float32)
    negs, stats = mine_hard_negatives(qv, first_pos, pv, pos_sets, k, per_query, max_ratio, margin, skip_top)
    triples = [(queries[i], positives[i][0], pool[j]) for i, ns in zip(keep, negs) for j in ns]
    log(f"{stats.triples:,} triples for {stats.queries:,} queries in {time.perf_counter() - t0:.1f}s "
        f"(dropped {stats.dropped_positive:,} positives and {stats.dropped_false_negative:,} likely false negatives; "
        f"{stats.no_negative:,} queries with none)")
    return triples, stats
