"""Hybrid retrieval on dev600: dense, BM25 and fused, fusion settings chosen on the validation half,
reported on the test half, beside zero-shot all-MiniLM-L6-v2's dense search (the reference).

    python bench/hybrid.py --tower transformer                  # zero-shot all-MiniLM-L6-v2
    python bench/hybrid.py --tower transformer --base-model BAAI/bge-small-en-v1.5   # zero-shot bge-small
    python bench/hybrid.py --model runs/distill/mean-q-kd16     # a trained model
    python bench/hybrid.py --model DIR --teacher BAAI/bge-small-en-v1.5 --json out.json

The 600 dev600 queries are split in two by a hash of their qid (sha256, even/odd; bench/common.py):
for each fusion (score normalisation, RRF) the weight alpha is the grid value with the best
validation NDCG@10 (Recall@100 breaks ties); the test half never takes part in choosing. A model
whose passage tower is the `--teacher` (all-MiniLM-L6-v2 by default; checked on a sample) indexes
the teacher cache's vectors instead of encoding the 11,809 passages again. Also printed, on all 600
queries: the index's dense search against exact search over the same vectors. Metrics: `twotowers.evaluate.evaluate_retrieval`
(queries whose relevant passages are not in the sampled corpus are left out, as the CLI does).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from common import DEV_COLLECTION, MSMARCO, dev600_half, print_table

from twotowers import PassageIndex, TwoTowers  # noqa: E402  (common puts the repo on sys.path)
from twotowers.collection import read_collection, read_qrels, read_queries  # noqa: E402
from twotowers.evaluate import evaluate_retrieval  # noqa: E402
from twotowers.index.fusion import FUSIONS  # noqa: E402
from twotowers.teacher import TeacherCache, load_teacher, passage_agreement  # noqa: E402
from twotowers.topk import exact_top_k  # noqa: E402

QUERIES = MSMARCO / "dev-small" / "queries.dev600.tsv"
QRELS = MSMARCO / "dev-small" / "qrels.dev600.tsv"
ALPHAS = [round(a, 2) for a in np.linspace(0, 1, 21)]
METRICS = ("ndcg@10", "mrr@10", "recall@100")


def exact_retriever(vectors: np.ndarray, model, pids):
    """Exact inner-product search over the given passage vectors."""
    def search(queries, k):
        top, _ = exact_top_k(model.encode_queries(list(queries)), vectors, k)
        return [[pids[r] for r in row] for row in top]

    return search


def retriever(index: PassageIndex, **kwargs):
    return lambda queries, k: [[h.id for h in hits] for hits in index.search(list(queries), k, **kwargs)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="a saved TwoTowers directory")
    ap.add_argument("--tower", choices=("mean", "transformer"), help="an untrained tower instead of --model")
    ap.add_argument("--base-model", default=None, help="--tower's base (default all-MiniLM-L6-v2)")
    ap.add_argument("--teacher", default="minilm", help="whose cached passage vectors a frozen passage tower reuses "
                    "(minilm, or a sentence-transformers model: a Hub id or directory)")
    ap.add_argument("--stemmer", default="english", help="BM25 stemmer (PyStemmer language), or none")
    ap.add_argument("--k1", type=float, default=None, help="BM25 k1 (default: the index's)")
    ap.add_argument("--b", type=float, default=None, help="BM25 b (default: the index's)")
    ap.add_argument("--cache-dir", default=None, help="teacher-vector cache (default $TWOTOWERS_CACHE/teacher)")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("-k", type=int, default=100)
    args = ap.parse_args()
    if not DEV_COLLECTION.is_file():
        sys.exit(f"{DEV_COLLECTION} not found: set TWOTOWERS_MSMARCO_DIR to the shared MS MARCO data")
    minilm = TwoTowers.zero_shot()
    teacher = minilm if args.teacher == "minilm" else load_teacher(args.teacher)
    if args.model:
        model, name = TwoTowers.from_pretrained(args.model), args.model
    elif args.tower == "transformer" and args.base_model:
        model, name = TwoTowers.zero_shot(args.base_model), f"zero-shot {args.base_model}"
        if args.teacher == "minilm":  # the base's own passage vectors, cached as a teacher's
            teacher = load_teacher(args.base_model)
    elif args.tower == "transformer":
        model, name = minilm, "zero-shot all-MiniLM-L6-v2"
    elif args.tower:
        import torch

        torch.manual_seed(0)
        model, name = TwoTowers(tower=args.tower).eval(), f"untrained {args.tower} tower"
    else:
        sys.exit("give --model DIR or --tower mean|transformer")

    pids, texts = read_collection(DEV_COLLECTION)
    queries, qrels = read_queries(QUERIES), read_qrels(QRELS)
    cache = TeacherCache(args.cache_dir)
    teacher_p = cache.encode(teacher, texts, "passage", show_progress=False)
    minilm_p = teacher_p if teacher is minilm else cache.encode(minilm, texts, "passage", show_progress=False)
    t0 = time.perf_counter()
    vectors = teacher_p if passage_agreement(model, texts, teacher_p) >= 0.999 else None
    stemmer = None if args.stemmer.lower() == "none" else args.stemmer
    bm25 = {k: v for k, v in (("k1", args.k1), ("b", args.b)) if v is not None}
    index = PassageIndex.build(model, pids, texts, stemmer=stemmer, vectors=vectors, **bm25)
    vectors = index.vectors(range(len(index)))
    print(f"{name}: {index!r} ({time.perf_counter() - t0:.0f} s); ef tuning {index.meta.get('ef_tuning')}",
          file=sys.stderr)

    def evaluate(r, qids):
        return evaluate_retrieval(r, {q: queries[q] for q in qids}, qrels, args.k, corpus_ids=pids)

    # 1. the index against exact search, all 600 queries
    all_q = list(queries)
    exact = evaluate(exact_retriever(vectors, model, pids), all_q)
    approx = evaluate(retriever(index, mode="dense"), all_q)
    print(f"\n{name}, all dev600 queries: exact vs index (ef={index.ef}) dense search\n")
    print_table(["search"] + list(METRICS), [
        ["exact (numpy)"] + [f"{exact[m]:.4f}" for m in METRICS],
        [f"index (hnswlib, ef={index.ef})"] + [f"{approx[m]:.4f}" for m in METRICS],
        ["difference"] + [f"{approx[m] - exact[m]:+.4f}" for m in METRICS]])

    # 2. alpha per fusion on the validation half
    val = [q for q in all_q if dev600_half(q) == "validation"]
    test = [q for q in all_q if dev600_half(q) == "test"]
    chosen, grids = {}, {}
    for fusion in FUSIONS:
        grid = {a: evaluate(retriever(index, mode="hybrid", alpha=a, fusion=fusion), val) for a in ALPHAS}
        best = max(ALPHAS, key=lambda a: (grid[a]["ndcg@10"], grid[a]["recall@100"]))
        chosen[fusion], grids[fusion] = best, {a: round(grid[a]["ndcg@10"], 4) for a in ALPHAS}
        print(f"\nvalidation ({grid[best]['n_queries']} queries), fusion={fusion}: NDCG@10 by alpha "
              + ", ".join(f"{a}: {grid[a]['ndcg@10']:.4f}" for a in ALPHAS) + f" -> alpha={best}", file=sys.stderr)

    # 3. the test half, beside the reference
    systems = {"dense": retriever(index, mode="dense"), "BM25": retriever(index, mode="keyword")}
    for fusion, a in chosen.items():
        systems[f"hybrid {fusion}, alpha={a}"] = retriever(index, mode="hybrid", alpha=a, fusion=fusion)
    systems["hybrid at the index's defaults"] = retriever(index, mode="hybrid")
    results = {s: evaluate(r, test) for s, r in systems.items()}
    reference = evaluate(exact_retriever(minilm_p, minilm, pids), test)["ndcg@10"]
    n = results["dense"]["n_queries"]
    print(f"\n{name}, BM25 k1={index.keyword.k1:g} b={index.keyword.b:g}; test half of dev600 ({n} judged queries; "
          "alpha chosen on the other half); "
          f"zero-shot MiniLM dense = {reference:.4f} NDCG@10\n")
    print_table(["system", "NDCG@10", "MRR@10", "Recall@100", "vs MiniLM dense NDCG@10"],
                [[s, f"{r['ndcg@10']:.4f}", f"{r['mrr@10']:.4f}", f"{r['recall@100']:.4f}",
                  f"{r['ndcg@10'] - reference:+.4f} ({r['ndcg@10'] / reference:.1%})"] for s, r in results.items()])
    if args.json:
        Path(args.json).write_text(json.dumps({"model": name, "bm25": index.keyword.meta, "reference_ndcg@10": reference,
                                               "alpha": chosen,
                                               "validation_ndcg@10_by_alpha": grids,
                                               "test": {s: {m: r[m] for m in (*METRICS, "n_queries")}
                                                        for s, r in results.items()}}, indent=2))


if __name__ == "__main__":
    main()
