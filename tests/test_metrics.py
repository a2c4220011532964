"""Ranking metrics: hand-computed values, and agreement with sklearn and ir_measures."""

import math
import random

import numpy as np
import pytest

from twotowers.metrics import mean_metrics, mrr_at_k, ndcg_at_k, parse_metric, recall_at_k


def test_hand_computed_values():
    rel = {"a": 1, "b": 1}
    ranked = ["x", "a", "y", "b"]
    # DCG = 1/log2(3) + 1/log2(5); IDCG = 1 + 1/log2(3)
    assert ndcg_at_k(ranked, rel, 10) == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3)))
    assert ndcg_at_k(ranked, rel, 2) == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert mrr_at_k(ranked, rel, 10) == 0.5
    assert mrr_at_k(ranked, rel, 1) == 0.0
    assert recall_at_k(ranked, rel, 2) == 0.5
    assert recall_at_k(ranked, rel, 4) == 1.0
    # Graded: linear gain; the ideal order puts grade 3 first.
    graded = {"a": 3, "b": 1}
    assert ndcg_at_k(["b", "a"], graded, 10) == pytest.approx((1 + 3 / math.log2(3)) / (3 + 1 / math.log2(3)))


def test_edge_cases():
    assert ndcg_at_k([], {"a": 1}) == 0.0
    assert ndcg_at_k(["a"], {}) == 0.0  # no relevant passage
    assert recall_at_k(["a"], {"a": 0}) == 0.0  # grade 0 = not relevant
    assert ndcg_at_k(["a", "b"], {"a": 1}) == 1.0
    with pytest.raises(ValueError):
        mrr_at_k(["a"], {"a": 1}, 0)
    with pytest.raises(ValueError):
        parse_metric("map@10")
    assert parse_metric("NDCG@10") == ("ndcg", 10)


def test_mean_over_queries_counts_missing_queries_as_zero():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    r = mean_metrics({"q1": ["a"]}, qrels, ["mrr@10", "recall@100"])
    assert r == {"mrr@10": 0.5, "recall@100": 0.5}


def test_ndcg_matches_sklearn():
    from sklearn.metrics import ndcg_score

    rng = np.random.default_rng(0)
    for _ in range(20):
        n = 12
        grades = rng.integers(0, 3, n)
        grades[rng.integers(n)] = 2  # at least one relevant
        scores = rng.permutation(n).astype(float)  # distinct: no tie handling differences
        ranked = list(np.argsort(-scores))
        ours = ndcg_at_k(ranked, {i: int(g) for i, g in enumerate(grades)}, 10)
        assert ours == pytest.approx(ndcg_score([grades], [scores], k=10), abs=1e-9)


def test_all_metrics_match_ir_measures():
    import ir_measures
    from ir_measures import MRR, R, nDCG

    rng = random.Random(1)
    qrels, run, ours_run = [], [], {}
    ours_qrels = {}
    for q in range(15):
        qid = f"q{q}"
        docs = [f"d{i}" for i in range(30)]
        rel = rng.sample(docs, rng.randint(1, 4))
        ours_qrels[qid] = {d: rng.randint(1, 2) for d in rel}
        qrels += [ir_measures.Qrel(qid, d, g) for d, g in ours_qrels[qid].items()]
        ranked = rng.sample(docs, 20)
        ours_run[qid] = ranked
        run += [ir_measures.ScoredDoc(qid, d, float(100 - i)) for i, d in enumerate(ranked)]
    ref = ir_measures.calc_aggregate([nDCG @ 10, MRR @ 10, R @ 10], qrels, run)
    ours = mean_metrics(ours_run, ours_qrels, ["ndcg@10", "mrr@10", "recall@10"])
    assert ours["ndcg@10"] == pytest.approx(ref[nDCG @ 10], abs=1e-6)
    assert ours["mrr@10"] == pytest.approx(ref[MRR @ 10], abs=1e-6)
    assert ours["recall@10"] == pytest.approx(ref[R @ 10], abs=1e-6)
