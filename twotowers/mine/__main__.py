"""`python -m twotowers.mine`: write mined hard-negative triples for training.

    python -m twotowers.mine --model minilm --data-files train_positives.hf.jsonl --out triples.tsv
    python -m twotowers.mine --model minilm --queries q.tsv --qrels qrels.tsv --collection c.tsv --out triples.tsv
    python -m train --data-files triples.tsv ...      # the loader reads query<TAB>pos<TAB>neg1<TAB>neg2...

`--data-files`: MS MARCO v1.1 rows (JSONL/parquet); each row's selected passages are its positives
and all its passages join the pool. `--collection` files (pid<TAB>text, JSONL, parquet) add passages
to the pool. Or TREC files: `--queries` and `--qrels` (a query's relevant passages are its positives)
over the `--collection` pool.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ..cli import ArgumentParser, run_main
from ..writing import check_writable, replacing
from . import log, mine_texts


def _parser() -> ArgumentParser:
    ap = ArgumentParser(prog="python -m twotowers.mine", description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="TwoTowers dir / Hub id, 'minilm' (zero-shot teacher) or a sentence-transformers dir")
    ap.add_argument("--data-files", nargs="+", default=[], help="MS MARCO v1.1 rows (queries + labelled passages)")
    ap.add_argument("--queries", help="qid<TAB>query file: with --qrels and --collection, instead of --data-files")
    ap.add_argument("--qrels", help="TREC qrels (qid 0 pid relevance): a query's relevant passages are its positives")
    ap.add_argument("--collection", nargs="*", default=[], help="passages for the pool (pid<TAB>text, JSONL, parquet)")
    ap.add_argument("--out", required=True, help="triples TSV to write")
    ap.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    ap.add_argument("--k", type=int, default=30, help="candidates per query")
    ap.add_argument("--per-query", type=int, default=4, help="negatives kept per query")
    ap.add_argument("--max-ratio", type=float, default=0.95, help="drop candidates scoring >= this x the positive's score")
    ap.add_argument("--margin", type=float, default=0.0, help="and those within this of the positive's score")
    ap.add_argument("--skip-top", type=int, default=0, help="ignore the best N ranks as well")
    ap.add_argument("--max-queries", type=int, default=-1)
    ap.add_argument("--cache-dir", default=None, help="reuse/store vectors in this teacher cache (twotowers.teacher)")
    return ap


def main(argv=None) -> None:
    a = _parser().parse_args(argv)
    for name in ("k", "per_query"):
        if getattr(a, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(a, name)}")
    out = Path(a.out)
    if out.exists() and not a.overwrite:
        raise FileExistsError(f"{out} exists: pass --overwrite to replace it, or choose another --out")
    check_writable(out.parent, "--out's directory")  # now, not after the mining
    from ..collection import read_collection, read_qrels, read_queries
    from ..data import load_rerank_queries
    from ..teacher import TeacherCache, load_teacher

    if bool(a.data_files) == bool(a.queries or a.qrels) or (a.queries or a.qrels) and not (a.queries and a.qrels
                                                                                           and a.collection):
        raise ValueError("give --data-files (v1.1 rows), or --queries, --qrels and --collection (TREC files)")
    t0 = time.perf_counter()
    queries, positives, pool = [], [], []
    if a.data_files:
        rows = load_rerank_queries(a.data_files, strict=True)
        queries = [r.query for r in rows]
        positives = [[t for t, s in zip(r.candidates, r.labels) if s] for r in rows]
        pool = [t for r in rows for t in r.candidates]
    by_id = {}
    for path in a.collection:
        ids, texts = read_collection(path)
        by_id.update(zip(ids, texts))
        pool += texts
    if a.queries:
        qtexts, qrels = read_queries(a.queries), read_qrels(a.qrels)
        judged = [q for q in qrels if q in qtexts]
        if not judged:
            raise ValueError(f"--qrels {a.qrels} judges none of the queries in --queries {a.queries}: check the ids")
        queries = [qtexts[q] for q in judged]
        positives = [[by_id[p] for p, rel in qrels[q].items() if rel > 0 and p in by_id] for q in judged]
    if a.max_queries > 0:
        queries, positives = queries[: a.max_queries], positives[: a.max_queries]
    log(f"{len(queries):,} queries ({sum(1 for p in positives if not p):,} without a positive, skipped), "
        f"pool {len(set(pool)):,} passages")
    model = load_teacher(a.model)
    cache = TeacherCache(a.cache_dir) if a.cache_dir else None
    triples, stats = mine_texts(model, queries, positives, pool, a.k, a.per_query, a.max_ratio, a.margin, a.skip_top, cache)
    # One line per (query, positive) with all its negatives: the loader draws `--num-negatives` of them
    # per epoch, and an in-batch-negatives batch never holds the same query twice (its positive would
    # count as a negative of its own copy).
    grouped: dict[tuple[str, str], list[str]] = {}
    for q, p, neg in triples:
        grouped.setdefault((q, p), []).append(neg)
    with replacing(out, overwrite=a.overwrite) as f:  # whole or not at all; a full disk is one line naming the file
        for (q, p), negs in grouped.items():
            f.write("\t".join(" ".join(x.split()) for x in (q, p, *negs)) + "\n")
    log(f"wrote {len(triples):,} triples as {len(grouped):,} lines (query, positive, its negatives) to {out} "
        f"({out.stat().st_size / 2**20:.1f} MiB) in {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    sys.exit(run_main(main))
