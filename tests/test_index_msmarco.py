"""PassageIndex on real MS MARCO text (dev600): recall against exact search at the chosen ef, hybrid hits."""

import numpy as np
import pytest
import torch

from twotowers import PassageIndex, TwoTowers
from twotowers.topk import exact_top_k

from conftest import read_collection


def _recall(index: PassageIndex, q: np.ndarray, k: int = 10) -> float:
    exact, _ = exact_top_k(q, index.vectors(range(len(index))), k)
    hits = index.search(q, k=k)
    return float(np.mean([len({int(h.id) for h in row} & set(e.tolist())) / k for row, e in zip(hits, exact)]))


def _dev600(msmarco, limit):
    ids, texts = read_collection(msmarco / "dev-small" / "collection.bm25top20_sample600.tsv", limit)
    queries = read_collection(msmarco / "dev-small" / "queries.dev600.tsv")[1]
    return [str(i) for i in range(len(ids))], texts, queries  # row numbers as ids: recall compares rows


@pytest.fixture(scope="module")
def mean_model():
    torch.manual_seed(0)
    return TwoTowers()  # the untrained mean tower: its anisotropic vectors are a hard case for HNSW


def test_recall_at_chosen_ef_on_dev600_subset(msmarco, mean_model):
    ids, texts, queries = _dev600(msmarco, 4000)
    index = PassageIndex.build(mean_model, ids, texts, keyword=True)
    assert index.meta["ef_tuning"]["reached"]
    assert _recall(index, mean_model.encode_queries(queries)) >= 0.99  # real queries, not the tuning ones
    hits = index.search(queries[:5], k=10, mode="hybrid")
    assert all(len(row) == 10 and all(h.keyword_score is not None and h.dense_score is not None for h in row)
               for row in hits)


@pytest.mark.slow
def test_recall_at_chosen_ef_on_the_whole_dev600_collection(msmarco, mean_model):
    ids, texts, queries = _dev600(msmarco, None)
    index = PassageIndex.build(mean_model, ids, texts, keyword=False)
    assert _recall(index, mean_model.encode_queries(queries)) >= 0.99
