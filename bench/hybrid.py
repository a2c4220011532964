"""Hybrid retrieval on dev600: dense, BM25 and fused, alpha chosen on a validation half, reported on the test half.

    python bench/hybrid.py --model runs/mean-infonce            # a trained tower
    python bench/hybrid.py --tower transformer                  # zero-shot all-MiniLM-L6-v2 (untrained tower)
    python bench/hybrid.py --tower mean                         # the untrained mean tower

The 600 dev600 queries are split in two by a hash of their qid (sha256, even/odd): alpha for each
fusion (score normalisation, RRF) is the grid value with the best validation NDCG@10 (Recall@100 breaks
ties); the test half never takes part in choosing. Also printed, on all 600 queries: the index's dense
search against exact search (numpy over the same stored vectors, as `twotowers.evaluate.dense_retriever`
computes it), the "within 0.005" check of the index issue. Metrics come from
`twotowers.evaluate.evaluate_retrieval` (NDCG@10, MRR@10, Recall@100; queries whose relevant passages
are not in the sampled corpus are left out, as the evaluation CLI does).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import DEV_COLLECTION, MSMARCO, print_table

from twotowers import PassageIndex, TwoTowers  # noqa: E402  (common puts the repo on sys.path)
from twotowers.collection import read_collection, read_qrels, read_queries
from twotowers.topk import exact_top_k
from twotowers.evaluate import evaluate_retrieval

QUERIES = MSMARCO / "dev-small" / "queries.dev600.tsv"
QRELS = MSMARCO / "dev-small" / "qrels.dev600.tsv"
ALPHAS = [round(a, 2) for a in np.linspace(0, 1, 11)]


def split(qids) -> tuple[list[str], list[str]]:
    """Deterministic halves: (validation, test) by sha256(qid) parity."""
    val = [q for q in qids if hashlib.sha256(q.encode()).digest()[0] % 2 == 0]
    test = [q for q in qids if hashlib.sha256(q.encode()).digest()[0] % 2 == 1]
    return val, test


def exact_retriever(index: PassageIndex, model, pids):
    """Exact inner-product search over the index's own stored vectors (what dense_retriever computes,
    without encoding the collection again)."""
    def search(queries, k):
        top, _ = exact_top_k(model.encode_queries(list(queries)), index.vectors(range(len(index))), k)
        return [[pids[r] for r in row] for row in top]

    return search


def retriever(index: PassageIndex, **kwargs):
    return lambda queries, k: [[h.id for h in hits] for hits in index.search(list(queries), k, **kwargs)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="a saved TwoTowers directory")
    ap.add_argument("--tower", choices=("mean", "transformer"), help="an untrained tower instead of --model")
    ap.add_argument("--index", help="reuse (or write) the index here; default: a temporary directory")
    ap.add_argument("--stemmer", default="english", help="BM25 stemmer (PyStemmer language), or none")
    ap.add_argument("-k", type=int, default=100)
    args = ap.parse_args()
    if not DEV_COLLECTION.is_file():
        sys.exit(f"{DEV_COLLECTION} not found: set TWOTOWERS_MSMARCO_DIR to the shared MS MARCO data")
    if args.model:
        model, name = TwoTowers.from_pretrained(args.model), args.model
    elif args.tower:
        import torch

        torch.manual_seed(0)
        model = TwoTowers(tower=args.tower, projection_dim=None if args.tower == "transformer" else 256).eval()
        name = "zero-shot all-MiniLM-L6-v2" if args.tower == "transformer" else "untrained mean tower"
    else:
        sys.exit("give --model DIR or --tower mean|transformer")

    pids, texts = read_collection(DEV_COLLECTION)
    queries, qrels = read_queries(QUERIES), read_qrels(QRELS)
    index_dir = Path(args.index or tempfile.mkdtemp(prefix="twotowers-hybrid-"))
    t0 = time.perf_counter()
    if (index_dir / "index.json").is_file():
        index = PassageIndex.load(index_dir, model)
    else:
        stemmer = None if args.stemmer.lower() == "none" else args.stemmer
        index = PassageIndex.build(model, pids, texts, stemmer=stemmer, show_progress=True)
        index.save(index_dir)
    print(f"{name}: {index!r} ({time.perf_counter() - t0:.0f} s); ef tuning {index.meta.get('ef_tuning')}",
          file=sys.stderr)

    def evaluate(r, qids):
        return evaluate_retrieval(r, {q: queries[q] for q in qids}, qrels, args.k, corpus_ids=pids)

    # 1. the index against exact search, all 600 queries
    all_q = list(queries)
    exact = evaluate(exact_retriever(index, model, pids), all_q)
    approx = evaluate(retriever(index, mode="dense"), all_q)
    print(f"\n{name}, all dev600 queries: exact vs index (ef={index.ef}) dense search\n")
    rows = [["exact (numpy)"] + [exact[m] for m in ("ndcg@10", "mrr@10", "recall@100")],
            [f"index (hnswlib, ef={index.ef})"] + [approx[m] for m in ("ndcg@10", "mrr@10", "recall@100")],
            ["difference"] + [approx[m] - exact[m] for m in ("ndcg@10", "mrr@10", "recall@100")]]
    print_table(["search", "NDCG@10", "MRR@10", "Recall@100"], [[r[0]] + [f"{x:+.4f}" if r[0] == "difference" else f"{x:.4f}" for x in r[1:]] for r in rows])

    # 2. alpha per fusion on the validation half
    val, test = split(all_q)
    chosen = {}
    for fusion in ("score", "rrf"):
        grid = {a: evaluate(retriever(index, mode="hybrid", alpha=a, fusion=fusion), val) for a in ALPHAS}
        best = max(ALPHAS, key=lambda a: (grid[a]["ndcg@10"], grid[a]["recall@100"]))
        chosen[fusion] = best
        print(f"\nvalidation ({grid[best]['n_queries']} queries), fusion={fusion}: NDCG@10 by alpha "
              + ", ".join(f"{a}: {grid[a]['ndcg@10']:.4f}" for a in ALPHAS) + f" -> alpha={best}", file=sys.stderr)

    # 3. the test half
    systems = {"dense (index)": retriever(index, mode="dense"), "BM25 (index keyword side)": retriever(index, mode="keyword")}
    for fusion, a in chosen.items():
        systems[f"hybrid {fusion}, alpha={a}"] = retriever(index, mode="hybrid", alpha=a, fusion=fusion)
    results = {s: evaluate(r, test) for s, r in systems.items()}
    n = next(iter(results.values()))["n_queries"]
    print(f"\n{name}, test half of dev600 ({n} judged queries; alpha chosen on the other half)\n")
    best_part = {m: max(results["dense (index)"][m], results["BM25 (index keyword side)"][m]) for m in ("ndcg@10", "recall@100")}
    print_table(["system", "NDCG@10", "MRR@10", "Recall@100", "vs best part NDCG@10", "vs best part Recall@100"],
                [[s, f"{r['ndcg@10']:.4f}", f"{r['mrr@10']:.4f}", f"{r['recall@100']:.4f}",
                  f"{r['ndcg@10'] - best_part['ndcg@10']:+.4f}" if s.startswith("hybrid") else "",
                  f"{r['recall@100'] - best_part['recall@100']:+.4f}" if s.startswith("hybrid") else ""]
                 for s, r in results.items()])


if __name__ == "__main__":
    main()
