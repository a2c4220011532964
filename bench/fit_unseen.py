"""The closed-form passage fit (`--fit-passage-tower`) on passages it was not fitted to.

    python bench/fit_unseen.py runs/bge/mean-fit --teacher BAAI/bge-small-en-v1.5

A model trained with `--fit-passage-tower` has its passage table fitted to the teacher's vectors of
the whole dev600 corpus. Here its passage tower is re-fitted three ways from its own query tower, and
dev600 retrieval (all 11,809 passages searched, exact) is measured for each: no fit (the query
tower's table on both sides), the fit on every passage (as trained), and the fit on a random half
only (seed 0), with the queries split by whether their relevant passages were in the fitted half.
The teacher's passage vectors come from the teacher cache (encoded once).
"""

from __future__ import annotations

import argparse

import numpy as np

from common import MSMARCO, DEV_COLLECTION, dev600_half, print_table

from train.passage_fit import fit_mean_passage_tower  # noqa: E402
from twotowers import TwoTowers  # noqa: E402
from twotowers.collection import read_collection, read_qrels, read_queries  # noqa: E402
from twotowers.evaluate import dense_retriever, evaluate_retrieval  # noqa: E402
from twotowers.teacher import TeacherCache, load_teacher  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="a model trained with --fit-passage-tower (mean towers)")
    ap.add_argument("--teacher", required=True, help="the teacher it was distilled from (Hub id or directory)")
    ap.add_argument("--ridge", type=float, default=1e-3)
    ap.add_argument("--cache-dir", default=None)
    a = ap.parse_args()
    pids, texts = read_collection(DEV_COLLECTION)
    queries = read_queries(MSMARCO / "dev-small" / "queries.dev600.tsv")
    qrels = read_qrels(MSMARCO / "dev-small" / "qrels.dev600.tsv")
    tp = TeacherCache(a.cache_dir).encode(load_teacher(a.teacher), texts, "passage", show_progress=False)
    half = np.sort(np.random.default_rng(0).permutation(len(texts))[: len(texts) // 2])
    fitted_ids = {pids[i] for i in half}

    def variant(rows):
        model = TwoTowers.from_pretrained(a.model).to("cpu")  # a fresh copy each time
        if rows is None:  # the query tower's table and projection on the passage side
            model.passage_tower.load_state_dict(model.query_tower.state_dict())
        else:
            fit_mean_passage_tower(model, [texts[i] for i in rows], tp[rows], a.ridge)
        return model

    def score(model, qids):
        r = evaluate_retrieval(dense_retriever(model, pids, texts), {q: queries[q] for q in qids}, qrels,
                               corpus_ids=pids)
        return f"{r['ndcg@10']:.4f} ({r['n_queries']})"

    judged = [q for q in queries if any(p in set(pids) for p in qrels.get(q, {}))]
    test = [q for q in judged if dev600_half(q) == "test"]
    seen = [q for q in judged if all(p in fitted_ids for p, rel in qrels[q].items() if rel > 0)]
    unseen = [q for q in judged if not any(p in fitted_ids for p, rel in qrels[q].items() if rel > 0)]
    rows = []
    for name, model in (("no fit (the query tower's table on both sides)", variant(None)),
                        ("fitted to all 11,809 passages (as trained)", variant(np.arange(len(texts)))),
                        ("fitted to a random half (5,904 passages)", variant(half))):
        rows.append([name, score(model, judged), score(model, test), score(model, seen), score(model, unseen)])
    print_table(["passage tower", "all judged", "test half", "relevant passage fitted (in the half)",
                 "relevant passage not fitted"], rows)


if __name__ == "__main__":
    main()
