"""Small towers vs their teacher on dev600 retrieval: NDCG@10 and query-encoding speed, same run.

    python bench/small_towers.py runs/distill/mean-kd runs/distill/gru-kd [--cache-dir DIR] [--split test]

The teacher (zero-shot all-MiniLM-L6-v2) encodes the collection through the teacher cache (once; a
model whose passage tower reproduces the teacher's vectors on a sample uses them too); NDCG@10 etc.
over the queries with a relevant passage in the collection (540 of 600, as `python -m
twotowers.evaluate`; `--split validation|test` keeps one half of dev600, split by sha256(qid)
parity as bench/hybrid.py does); every model's queries/s is the median of 3 passes over the dev
queries (batch 256), measured in this run, so the ratios compare like with like.
"""

import argparse
import statistics
import sys
import time

from common import MSMARCO, ROOT, dev600_half, print_table

sys.path.insert(0, str(ROOT))

from twotowers import TwoTowers  # noqa: E402
from twotowers.collection import read_collection, read_qrels, read_queries  # noqa: E402
from twotowers.evaluate import dense_retriever, evaluate_retrieval  # noqa: E402
from twotowers.teacher import TeacherCache, passage_agreement  # noqa: E402


def queries_per_s(model, texts: list[str], repeats: int = 3) -> float:
    model.encode_queries(texts[:32])  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.encode_queries(texts)
        times.append(time.perf_counter() - t0)
    return len(texts) / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="saved TwoTowers dirs")
    ap.add_argument("--cache-dir", default=None, help="teacher-vector cache (default $TWOTOWERS_CACHE/teacher)")
    ap.add_argument("--split", choices=("all", "validation", "test"), default="all")
    a = ap.parse_args()
    d = MSMARCO / "dev-small"
    queries, qrels = read_queries(d / "queries.dev600.tsv"), read_qrels(d / "qrels.dev600.tsv")
    if a.split != "all":
        queries = {q: t for q, t in queries.items() if dev600_half(q) == a.split}
    pids, texts = read_collection(d / "collection.bm25top20_sample600.tsv")
    teacher = TwoTowers.zero_shot()
    tp = TeacherCache(a.cache_dir).encode(teacher, texts, "passage")
    qtexts = list(queries.values())

    def row(name, model, vectors):
        m = evaluate_retrieval(dense_retriever(model, pids, texts, passage_vectors=vectors), queries, qrels, corpus_ids=pids)
        return [name, f"{m['ndcg@10']:.4f}", f"{m['mrr@10']:.4f}", f"{m['recall@100']:.4f}", m["n_queries"],
                queries_per_s(model, qtexts)]

    rows = [row("zero-shot all-MiniLM-L6-v2 (teacher)", teacher, tp)]
    del teacher
    for path in a.models:
        model = TwoTowers.from_pretrained(path)
        # A passage tower that is the teacher (a small query tower over it) gives the teacher's vectors:
        # checked on a sample, then taken from the cache instead of encoding 11,809 passages again.
        same = passage_agreement(model, texts, tp) >= 0.999
        rows.append(row(path, model, tp if same else None))
    base = rows[0][-1]
    print(f"dev600 {a.split} ({rows[0][4]} judged queries), exact search; queries/s: batch 256, median of 3")
    print_table(["model", "NDCG@10", "MRR@10", "R@100", "queries", "queries/s", "vs teacher"],
                [r + [f"{r[-1] / base:.1f}x"] for r in rows])


if __name__ == "__main__":
    main()
