"""Small towers vs their teacher on dev600 retrieval: NDCG@10 and query-encoding speed, same run.

    python bench/small_towers.py runs/distill/mean-kd runs/distill/gru-kd [--cache-dir DIR]

The teacher (zero-shot all-MiniLM-L6-v2) encodes the collection through the teacher cache (once; a
model whose passage tower reproduces the teacher's vectors on a sample uses them too);
NDCG@10 etc. over the queries with a relevant passage in the collection (540 of 600, as
`python -m twotowers.evaluate`); every model's queries/s is the median of 3 passes over the 600 dev queries (batch 256), measured
in this run, so the ratios compare like with like.
"""

import argparse
import sys

from common import MSMARCO, ROOT, print_table

sys.path.insert(0, str(ROOT))

from train.distill import evaluate_retrieval  # noqa: E402
from twotowers import TwoTowers  # noqa: E402
from twotowers.distill import DEFAULT_CACHE_DIR, TeacherCache, load_teacher, passage_agreement  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+", help="saved TwoTowers dirs")
    ap.add_argument("--cache-dir", default=str(DEFAULT_CACHE_DIR))
    a = ap.parse_args()
    d = MSMARCO / "dev-small"
    files = (d / "queries.dev600.tsv", d / "qrels.dev600.tsv", d / "collection.bm25top20_sample600.tsv")
    teacher = load_teacher("minilm")
    with open(files[2], encoding="utf-8") as f:
        texts = [line.rstrip("\n").split("\t", 1)[1] for line in f]
    tp = TeacherCache(a.cache_dir).encode(teacher, texts, "passage")
    base = evaluate_retrieval(teacher, *files, passage_vectors=tp)
    rows = [["zero-shot all-MiniLM-L6-v2 (teacher)", f"{base['ndcg@10']:.3f}", f"{base['mrr@10']:.3f}",
             f"{base['recall@100']:.3f}", f"{base['queries_per_s']:,.0f}", "1.0x"]]
    del teacher
    for path in a.models:
        model = TwoTowers.from_pretrained(path)
        # A passage tower that is the teacher (a small query tower over it) gives the teacher's vectors:
        # checked on a sample, then taken from the cache instead of encoding 11,809 passages again.
        same = passage_agreement(model, texts, tp) >= 0.999
        m = evaluate_retrieval(model, *files, passage_vectors=tp if same else None)
        rows.append([path, f"{m['ndcg@10']:.3f}", f"{m['mrr@10']:.3f}", f"{m['recall@100']:.3f}",
                     f"{m['queries_per_s']:,.0f}", f"{m['queries_per_s'] / base['queries_per_s']:.1f}x"])
    print_table(["model", "NDCG@10", "MRR@10", "R@100", "queries/s", "vs teacher"], rows)


if __name__ == "__main__":
    main()
