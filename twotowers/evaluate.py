"""Evaluation: re-rank each query's own candidates, or retrieve from the whole pooled corpus.

    python -m twotowers.evaluate --model runs/mean --mode retrieve \\
        --queries queries.tsv --qrels qrels.tsv --collection collection.tsv --baseline bm25 untrained
    python -m twotowers.evaluate --model runs/mean --mode rerank --data-files dev.jsonl --json out.json
    python -m twotowers.evaluate --tower transformer ...        # an untrained tower (zero-shot MiniLM)

Functions return metric dicts with a `primary_metric` key and never log; the CLI prints a table.
- re-rank (the seed's in-epoch validation): NDCG@10 / MRR@10 over each v1.1 row's candidates, beside
  the expected figure of a random order.
- retrieve (the seed's "comprehensive test"): every query searches the whole corpus of the split
  (exact inner-product search, or a saved `PassageIndex` with `--index`); NDCG@10, MRR@10, Recall@100
  over the queries that have judgments (trec_eval's convention).
Baselines: BM25 (`KeywordIndex`, bm25s) and the untrained towers of the same configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from .collection import read_collection, read_qrels, read_queries
from .data import RerankQuery, load_rerank_queries, pooled_corpus
from .metrics import mean_metrics

RETRIEVAL_METRICS = ("ndcg@10", "mrr@10", "recall@100")
RERANK_METRICS = ("ndcg@10", "mrr@10")
PRIMARY = "ndcg@10"

# A retriever maps queries and k to, per query, a ranked list of passage ids.
Retriever = Callable[[list[str], int], list[list[str]]]


# -- retrievers ------------------------------------------------------------------------------------
def dense_retriever(model, pids: Sequence[str], texts: Sequence[str], batch_size: int = 64) -> Retriever:
    """Exact inner-product search over `model.encode_passages(texts)` (the corpus is encoded once)."""
    passages = torch.from_numpy(model.encode_passages(list(texts), batch_size=batch_size))  # [N, D]
    pids = list(pids)

    def search(queries: list[str], k: int) -> list[list[str]]:
        q = torch.from_numpy(model.encode_queries(queries))  # [Q, D]
        out = []
        for start in range(0, len(queries), 1024):  # [1024, N] score blocks bound the memory
            scores = q[start : start + 1024] @ passages.T
            top = scores.topk(min(k, len(pids)), dim=1).indices.tolist()
            out.extend([pids[i] for i in row] for row in top)
        return out

    return search


def bm25_retriever(pids: Sequence[str], texts: Sequence[str]) -> Retriever:
    """BM25 (`twotowers.keyword.KeywordIndex`, bm25s scoring) over the corpus."""
    from .index.keyword import KeywordIndex

    index = KeywordIndex.build(list(texts))
    pids = list(pids)

    def search(queries: list[str], k: int) -> list[list[str]]:
        rows, _ = index.search(list(queries), k)
        return [[pids[r] for r in row if r >= 0] for row in rows]

    return search


def index_retriever(index_dir: str | Path, model, mode: str = "dense", alpha: float | None = None,
                    fusion: str = "score") -> Retriever:
    """Search a saved `PassageIndex` (dense, keyword or hybrid); hit ids are the corpus pids."""
    from . import PassageIndex

    index = PassageIndex.load(index_dir, model)

    def search(queries: list[str], k: int) -> list[list[str]]:
        kwargs = {"mode": mode, "fusion": fusion}
        if alpha is not None:
            kwargs["alpha"] = alpha
        return [[str(h.id) for h in hits] for hits in index.search(list(queries), k, **kwargs)]

    return search


# -- evaluations -----------------------------------------------------------------------------------
def evaluate_retrieval(retriever: Retriever, queries: dict[str, str], qrels: dict[str, dict[str, int]],
                       k: int = 100, metrics: Sequence[str] = RETRIEVAL_METRICS, corpus_ids: Sequence[str] | None = None) -> dict:
    """Retrieve the top k for every judged query -> {metric: mean, ..., "n_queries", "primary_metric"}.

    With `corpus_ids`, queries none of whose relevant passages is in the corpus are left out (no
    system could find them; a sampled corpus like dev600's has 60) and counted as `n_unreachable`.
    """
    judged = {qid: rel for qid, rel in qrels.items() if qid in queries and any(g > 0 for g in rel.values())}
    unreachable = 0
    if corpus_ids is not None:
        present = set(corpus_ids)
        reachable = {q: r for q, r in judged.items() if any(g > 0 and p in present for p, g in r.items())}
        unreachable, judged = len(judged) - len(reachable), reachable
    if not judged:
        raise ValueError("no query has a relevant passage: check that the qrels and queries ids match")
    qids = list(judged)
    start = time.perf_counter()
    ranked = retriever([queries[q] for q in qids], k)
    result = mean_metrics(dict(zip(qids, ranked)), judged, metrics)
    result.update(n_queries=len(qids), n_unreachable=unreachable, seconds=round(time.perf_counter() - start, 2), primary_metric=PRIMARY)
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
    from .index.keyword import KeywordIndex

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


# -- CLI -------------------------------------------------------------------------------------------
def untrained_like(model=None, tower: str | None = None, seed: int = 0):
    """A freshly initialised TwoTowers with `model`'s configuration (or the default one of `tower`).

    Untrained transformer = zero-shot all-MiniLM-L6-v2 (no projection); mean/RNN towers keep the
    pretrained word embeddings with a seeded random projection.
    """
    from .model import TwoTowers

    torch.manual_seed(seed)
    if model is not None:
        return TwoTowers(**dict(model._hub_mixin_config)).eval()
    return TwoTowers(tower=tower, projection_dim=None if tower == "transformer" else 256).eval()


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m twotowers.evaluate", description=__doc__.splitlines()[0])
    who = ap.add_argument_group("what to evaluate")
    who.add_argument("--model", help="saved TwoTowers directory or Hub repo id")
    who.add_argument("--tower", choices=("mean", "gru", "lstm", "transformer"),
                     help="evaluate an untrained tower of this type instead of --model")
    who.add_argument("--baseline", nargs="+", default=[], choices=("bm25", "untrained"),
                     help="baselines to print beside it (untrained = same config, fresh weights)")
    data = ap.add_argument_group("data (TREC files or v1.1 rows)")
    data.add_argument("--queries", help="qid<TAB>query file")
    data.add_argument("--qrels", help="TREC qrels: qid 0 pid relevance")
    data.add_argument("--collection", help="pid<TAB>passage file (the retrieval corpus)")
    data.add_argument("--data-files", nargs="+", help="v1.1-schema JSONL/parquet rows (their pooled candidates form the corpus)")
    ap.add_argument("--mode", choices=("rerank", "retrieve"), default="retrieve")
    ap.add_argument("--k", type=int, default=100, help="passages retrieved per query")
    ap.add_argument("--batch-size", type=int, default=64, help="passage encoding batch size")
    ap.add_argument("--json", help="write the results here as JSON")
    idx = ap.add_argument_group("search a saved PassageIndex instead of exact search")
    idx.add_argument("--index", help="PassageIndex directory built over the same collection")
    idx.add_argument("--search-mode", choices=("dense", "keyword", "hybrid"), default="dense")
    idx.add_argument("--alpha", type=float, help="hybrid weight of the dense side (index default if unset)")
    idx.add_argument("--fusion", choices=("score", "rrf"), default="score")
    return ap


def _load_retrieval_set(args) -> tuple[dict, dict, list[str], list[str]]:
    if args.data_files:
        return pooled_corpus(load_rerank_queries(args.data_files))
    if not (args.queries and args.qrels and args.collection):
        raise SystemExit("retrieve mode needs --queries, --qrels and --collection (or --data-files)")
    pids, texts = read_collection(args.collection)
    return read_queries(args.queries), read_qrels(args.qrels), pids, texts


def _print_table(results: dict[str, dict], mode: str) -> None:
    metrics = RETRIEVAL_METRICS if mode == "retrieve" else RERANK_METRICS
    names = {"ndcg": "NDCG", "mrr": "MRR", "recall": "Recall"}
    print("| system | " + " | ".join(names[m.split("@")[0]] + "@" + m.split("@")[1] for m in metrics) + " | queries |")
    print("|---" * (len(metrics) + 2) + "|")
    for name, r in results.items():
        print(f"| {name} | " + " | ".join(f"{r[m]:.4f}" for m in metrics) + f" | {r['n_queries']} |")
    if mode == "rerank":
        r = next(iter(results.values()))
        print(f"| random order (expected) | " + " | ".join(f"{r['random_' + m]:.4f}" for m in metrics) + f" | {r['n_queries']} |")


def main(argv: Sequence[str] | None = None) -> dict:
    args = _parser().parse_args(argv)
    if args.model is None and args.tower is None and not args.baseline:
        raise SystemExit("give --model DIR_OR_REPO, --tower TYPE, or --baseline bm25")
    if args.index and args.mode != "retrieve":
        raise SystemExit("--index works in --mode retrieve only")
    from .model import TwoTowers

    models = {}
    model = None
    if args.model:
        model = TwoTowers.from_pretrained(args.model)
        models[f"model ({args.model})"] = model
    elif args.tower:
        model = untrained_like(tower=args.tower)
        models[f"untrained {args.tower}"] = model
    if "untrained" in args.baseline:
        if model is None:
            raise SystemExit("--baseline untrained needs --model or --tower")
        if args.model:
            models["untrained (same config)"] = untrained_like(model)

    results: dict[str, dict] = {}
    if args.mode == "rerank":
        if not args.data_files:
            raise SystemExit("rerank mode needs --data-files (v1.1 rows with is_selected)")
        rqs = load_rerank_queries(args.data_files)
        for name, m in models.items():
            results[name] = evaluate_rerank(m, rqs, args.batch_size)
        if "bm25" in args.baseline:
            results["bm25"] = evaluate_rerank_scores(rqs, bm25_rerank_scores(rqs))
    else:
        queries, qrels, pids, texts = _load_retrieval_set(args)
        for name, m in models.items():
            if args.index and m is model:
                retr = index_retriever(args.index, m, args.search_mode, args.alpha, args.fusion)
                name = f"{name} index {args.search_mode}" + (f" {args.fusion} alpha={args.alpha}" if args.search_mode == "hybrid" else "")
            else:
                retr = dense_retriever(m, pids, texts, args.batch_size)
            results[name] = evaluate_retrieval(retr, queries, qrels, args.k, corpus_ids=pids)
        if "bm25" in args.baseline:
            results["bm25"] = evaluate_retrieval(bm25_retriever(pids, texts), queries, qrels, args.k, corpus_ids=pids)
    _print_table(results, args.mode)
    if args.json:
        Path(args.json).write_text(json.dumps({"mode": args.mode, "primary_metric": PRIMARY, "results": results}, indent=2))
    return results


if __name__ == "__main__":
    try:
        main()
    except (OSError, ValueError) as e:  # bad files, offline Hub: one clear line
        sys.exit(f"error: {e}")
