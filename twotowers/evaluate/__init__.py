"""Evaluation: re-rank each query's own candidates, or retrieve from the whole pooled corpus.

    r = evaluate_retrieval(dense_retriever(model, pids, texts), queries, qrels, corpus_ids=pids)
    r = evaluate_rerank(model, load_rerank_queries(["dev.jsonl"]))

Functions return metric dicts with a `primary_metric` key and never log; `python -m twotowers.evaluate`
(its `__main__`) prints a table.
- re-rank (the seed's in-epoch validation): NDCG@10 / MRR@10 over each v1.1 row's candidates, beside
  the expected figure of a random order.
- retrieve (the seed's "comprehensive test"): every query searches the whole corpus of the split
  (exact inner-product search, or a saved `PassageIndex` with `--index`); NDCG@10, MRR@10, Recall@100
  over the queries that have judgments (trec_eval's convention).
Baselines: BM25 (`KeywordIndex`, bm25s) and the untrained towers of the same configuration.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..data import RerankQuery
from ..metrics import mean_metrics
from ..topk import exact_top_k

RETRIEVAL_METRICS = ("ndcg@10", "mrr@10", "recall@100")
RERANK_METRICS = ("ndcg@10", "mrr@10")
PRIMARY = "ndcg@10"

# A retriever maps queries and k to, per query, a ranked list of passage ids.
Retriever = Callable[[list[str], int], list[list[str]]]


# -- retrievers ------------------------------------------------------------------------------------
def dense_retriever(model, pids: Sequence[str], texts: Sequence[str], batch_size: int = 64,
                    passage_vectors: np.ndarray | None = None) -> Retriever:
    """Exact inner-product search over `model.encode_passages(texts)` (encoded once), or over
    `passage_vectors` when they are known (e.g. a frozen passage tower's, from the teacher cache)."""
    passages = model.encode_passages(list(texts), batch_size=batch_size) if passage_vectors is None else passage_vectors
    pids = list(pids)

    def search(queries: list[str], k: int) -> list[list[str]]:
        rows, _ = exact_top_k(model.encode_queries(queries), passages, k)
        return [[pids[i] for i in row] for row in rows.tolist()]

    return search


def bm25_retriever(pids: Sequence[str], texts: Sequence[str]) -> Retriever:
    """BM25 (`twotowers.index.keyword.KeywordIndex`, bm25s scoring) over the corpus."""
    from ..index.keyword import KeywordIndex

    index = KeywordIndex.build(list(texts))
    pids = list(pids)

    def search(queries: list[str], k: int) -> list[list[str]]:
        rows, _ = index.search(list(queries), k)
        return [[pids[r] for r in row if r >= 0] for row in rows]

    return search


def index_retriever(index_dir: str | Path, model, mode: str | None = None, alpha: float | None = None,
                    fusion: str | None = None, corpus: tuple[Sequence[str], Sequence[str]] | None = None) -> Retriever:
    """Search a saved `PassageIndex` (dense, keyword or hybrid; default: the index's `default_mode`, which
    the retriever's `mode` attribute names); hit ids are the corpus pids.

    `corpus` (pids, texts): the collection the queries are judged on; an index built over another one
    (other ids, or other texts under the same ids) is refused: its figures would be 0, not an error."""
    from ..index import PassageIndex

    index = PassageIndex.load(index_dir, model)
    if corpus is not None:
        check_index_corpus(index, *corpus, where=str(index_dir))
    mode = mode or index.default_mode

    def search(queries: list[str], k: int) -> list[list[str]]:
        kwargs = {"mode": mode}
        if alpha is not None:
            kwargs["alpha"] = alpha
        if fusion is not None:
            kwargs["fusion"] = fusion
        return [[str(h.id) for h in hits] for hits in index.search(list(queries), k, **kwargs)]

    search.mode = mode
    return search


def check_index_corpus(index, pids: Sequence[str], texts: Sequence[str], where: str = "the index",
                       samples: int = 1000) -> None:
    """ValueError unless `index` holds exactly the passages `pids` (any order), with the same texts on a
    sample of `samples` of them (reading every text of a large index would cost as much as the evaluation)."""
    indexed = list(index.ids)
    if len(indexed) != len(pids) or set(indexed) != set(pids):
        ours = set(pids)
        extra = next((i for i in indexed if i not in ours), None)
        theirs = set(indexed)
        lacking = next((p for p in pids if p not in theirs), None)
        raise ValueError(f"{where} was built over another collection: it holds {len(indexed):,} passages, the "
                         f"collection {len(pids):,}" + (f"; e.g. {extra!r} is indexed but not in the collection" if extra else "")
                         + (f"; e.g. {lacking!r} is in the collection but not indexed" if lacking else "")
                         + ": build the index from the same --collection")
    row_of = {pid: r for r, pid in enumerate(indexed)}
    for i in np.unique(np.linspace(0, len(pids) - 1, min(samples, len(pids))).astype(int)).tolist():
        if index.passages[row_of[pids[i]]] != texts[i]:
            raise ValueError(f"{where} was built over another version of the collection: passage {pids[i]!r} "
                             "has another text there: build the index from the same --collection")


# -- evaluations -----------------------------------------------------------------------------------
def evaluate_retrieval(retriever: Retriever, queries: dict[str, str], qrels: dict[str, dict[str, int]],
                       k: int = 100, metrics: Sequence[str] = RETRIEVAL_METRICS, corpus_ids: Sequence[str] | None = None) -> dict:
    """Retrieve the top k for every judged query -> {metric: mean, ..., "n_queries", "primary_metric"}.

    With `corpus_ids`, queries none of whose relevant passages is in the corpus are left out (no
    system could find them; a sampled corpus like dev600's has 60) and counted as `n_unreachable`;
    relevant judgments of the counted queries that name passages outside the corpus (they lower
    recall and NDCG) are counted as `n_qrels_not_in_corpus`.
    """
    relevant = {qid: rel for qid, rel in qrels.items() if any(g > 0 for g in rel.values())}
    judged = {qid: rel for qid, rel in relevant.items() if qid in queries}
    if not judged:
        raise ValueError(f"none of the {len(relevant)} queries with a relevant judgment in the qrels is among the "
                         f"{len(queries)} queries: check that the qrels' query ids match the queries file's")
    unreachable, missing = 0, 0
    if corpus_ids is not None:
        present = set(corpus_ids)
        reachable = {q: r for q, r in judged.items() if any(g > 0 and p in present for p, g in r.items())}
        if not reachable:
            raise ValueError(f"none of the {len(judged)} judged queries has a relevant passage in the collection "
                             f"({len(present)} passages): check that the qrels' passage ids match the collection's ids")
        unreachable, judged = len(judged) - len(reachable), reachable
        missing = sum(1 for r in judged.values() for p, g in r.items() if g > 0 and p not in present)
    qids = list(judged)
    start = time.perf_counter()
    ranked = retriever([queries[q] for q in qids], k)
    result = mean_metrics(dict(zip(qids, ranked)), judged, metrics)
    result.update(n_queries=len(qids), n_unreachable=unreachable, n_qrels_not_in_corpus=missing,
                  seconds=round(time.perf_counter() - start, 2), primary_metric=PRIMARY)
    return result


def _ranked_candidates(scores: Sequence[np.ndarray]) -> list[list[int]]:
    # Stable sort on -score: ties keep the given order.
    return [list(np.argsort(-np.asarray(s, dtype=np.float64), kind="stable")) for s in scores]


def evaluate_rerank_scores(rqs: Sequence[RerankQuery], scores: Sequence[np.ndarray],
                           metrics: Sequence[str] = RERANK_METRICS, random_repeats: int = 20, seed: int = 0) -> dict:
    """Metrics of re-ranking each query's candidates by `scores[i]`, beside the random-order baseline.

    Only queries with a selected candidate count (others cannot score). Keys: each metric,
    `random_<metric>`, `n_queries`, `primary_metric`.
    """
    keep = [i for i, rq in enumerate(rqs) if any(rq.labels)]
    if not keep:
        raise ValueError("no query has a selected candidate")
    qrels = {str(i): {j: 1 for j, label in enumerate(rqs[i].labels) if label} for i in keep}
    order = _ranked_candidates([scores[i] for i in keep])
    result = mean_metrics({str(i): o for i, o in zip(keep, order)}, qrels, metrics)
    rng = np.random.default_rng(seed)
    rand = {m: 0.0 for m in metrics}
    for _ in range(random_repeats):
        run = {str(i): list(rng.permutation(len(rqs[i].candidates))) for i in keep}
        for m, v in mean_metrics(run, qrels, metrics).items():
            rand[m] += v / random_repeats
    result.update({f"random_{m}": v for m, v in rand.items()})
    result.update(n_queries=len(keep), primary_metric=PRIMARY)
    return result


def dense_rerank_scores(model, rqs: Sequence[RerankQuery], batch_size: int = 64) -> list[np.ndarray]:
    """Cosine of each query to each of its candidates (every distinct text encoded once)."""
    texts = sorted({t for rq in rqs for t in rq.candidates})
    row = {t: i for i, t in enumerate(texts)}
    p = model.encode_passages(texts, batch_size=batch_size)  # [N, D]
    q = model.encode_queries([rq.query for rq in rqs])  # [Q, D]
    return [p[[row[t] for t in rq.candidates]] @ q[i] for i, rq in enumerate(rqs)]


def bm25_rerank_scores(rqs: Sequence[RerankQuery]) -> list[np.ndarray]:
    """BM25 score of each candidate, with idf over the pooled candidates of the whole split."""
    from ..index.keyword import KeywordIndex

    texts = sorted({t for rq in rqs for t in rq.candidates})
    row = {t: i for i, t in enumerate(texts)}
    index = KeywordIndex.build(texts)
    out = []
    for rq in rqs:
        rows, scores = index.search([rq.query], len(texts))
        full = np.zeros(len(texts), dtype=np.float32)
        hit = rows[0] >= 0
        full[rows[0][hit]] = scores[0][hit]
        out.append(full[[row[t] for t in rq.candidates]])
    return out


def evaluate_rerank(model, rqs: Sequence[RerankQuery], batch_size: int = 64) -> dict:
    """Re-rank metrics of a model (`encode_queries` / `encode_passages`) on v1.1-style rows."""
    return evaluate_rerank_scores(rqs, dense_rerank_scores(model, rqs, batch_size))


def untrained_like(model=None, tower: str | None = None, seed: int = 0):
    """A freshly initialised TwoTowers with `model`'s configuration (or the default one of `tower`).

    Untrained transformer = zero-shot all-MiniLM-L6-v2 (no projection); mean/RNN towers keep the
    pretrained word embeddings with a seeded random projection.
    """
    import torch

    from ..model import TwoTowers
    from ..towers import TOWERS

    torch.manual_seed(seed)
    if model is not None:
        return TwoTowers(**dict(model._hub_mixin_config)).eval()
    if tower == "transformer":
        return TwoTowers.zero_shot()
    return TwoTowers(tower=tower, projection_dim=TOWERS[tower].projection_dim).eval()
