"""Ranking metrics as pure functions: NDCG@k, MRR@k, Recall@k, and their mean over queries.

    ndcg_at_k(["p3", "p1"], {"p1": 1}, k=10)      # one ranked list, graded relevance
    mean_metrics(run, qrels, ["ndcg@10", "mrr@10", "recall@100"])

Conventions are trec_eval's (as in `ir_measures`): linear gain `rel / log2(rank + 1)`, the ideal
DCG from *all* judged relevant passages (not only the retrieved ones), MRR = 1/rank of the first
relevant passage within k, Recall = relevant found in the top k / all relevant. Grades <= 0 count
as not relevant. A query without any relevant passage scores 0 (callers decide whether to keep it).
An id ranked twice counts once, where it first appears, so no metric can exceed 1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

# How tables and model cards name a metric (the keys are the lower-case names results use: `ndcg@10`).
METRIC_NAMES = {"ndcg": "NDCG", "mrr": "MRR", "recall": "Recall", "map": "MAP", "precision": "Precision", "p": "P",
                "r": "R", "acc": "Accuracy", "accuracy": "Accuracy", "hit": "Hit", "hits": "Hits", "success": "Success"}


def display_name(key: str) -> str:
    """`ndcg@10` -> `NDCG@10` (tables, the model card and its model-index)."""
    name, _, k = key.partition("@")
    return METRIC_NAMES.get(name, name) + (f"@{k}" if k else "")


def _check_k(k: int) -> None:
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")


def _once(ranked: Sequence) -> list:
    """The ranked ids with repeats dropped (each keeps its first rank)."""
    return list(dict.fromkeys(ranked))


def dcg_at_k(gains: Sequence[float], k: int) -> float:
    """Discounted cumulative gain of the first k gains (rank 1 has discount log2(2) = 1)."""
    _check_k(k)
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains[:k]) if g > 0)


def ndcg_at_k(ranked: Sequence, relevance: Mapping, k: int = 10) -> float:
    """NDCG@k of one ranked list of ids given `{id: grade}` judgments."""
    ideal = dcg_at_k(sorted((g for g in relevance.values() if g > 0), reverse=True), k)
    if ideal == 0:
        return 0.0
    return dcg_at_k([relevance.get(i, 0) for i in _once(ranked)], k) / ideal


def mrr_at_k(ranked: Sequence, relevance: Mapping, k: int = 10) -> float:
    """Reciprocal rank of the first relevant id within the top k (0 if none)."""
    _check_k(k)
    for rank, i in enumerate(_once(ranked)[:k], start=1):
        if relevance.get(i, 0) > 0:
            return 1.0 / rank
    return 0.0


def recall_at_k(ranked: Sequence, relevance: Mapping, k: int = 100) -> float:
    """Share of the relevant ids found in the top k (0 if the query has none)."""
    _check_k(k)
    relevant = {i for i, g in relevance.items() if g > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(_once(ranked)[:k])) / len(relevant)


METRICS = {"ndcg": ndcg_at_k, "mrr": mrr_at_k, "recall": recall_at_k}


def parse_metric(name: str) -> tuple[str, int]:
    """'ndcg@10' -> ('ndcg', 10)."""
    base, _, k = name.lower().partition("@")
    if base not in METRICS or not k.isdigit() or int(k) < 1:
        raise ValueError(f"unknown metric {name!r}: use ndcg@K, mrr@K or recall@K")
    return base, int(k)


def mean_metrics(run: Mapping[str, Sequence], qrels: Mapping[str, Mapping], metrics: Sequence[str]) -> dict[str, float]:
    """Mean of each metric over the queries of `qrels` (a query missing from `run` scores 0).

    `run`: {qid: ranked ids}; `qrels`: {qid: {id: grade}}. Returns {"ndcg@10": ..., ...}.
    """
    parsed = [(m, *parse_metric(m)) for m in metrics]
    totals = {m: 0.0 for m, _, _ in parsed}
    for qid, rel in qrels.items():
        ranked = list(run.get(qid, ()))
        for m, base, k in parsed:
            totals[m] += METRICS[base](ranked, rel, k)
    n = max(len(qrels), 1)
    return {m: t / n for m, t in totals.items()}
