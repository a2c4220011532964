"""`python -m twotowers.evaluate`: a model (and baselines) on a retrieval or re-rank set -> a table.

    python -m twotowers.evaluate --model runs/mean --mode retrieve \\
        --queries queries.tsv --qrels qrels.tsv --collection collection.tsv --baseline bm25 untrained
    python -m twotowers.evaluate --model runs/mean --mode rerank --data-files dev.jsonl --json out.json
    python -m twotowers.evaluate --tower transformer ...        # an untrained tower (zero-shot MiniLM)
    python -m twotowers.evaluate --model DIR --index INDEX_DIR --search-mode hybrid ...

Bad input (a file that does not parse, a repeated passage id, qrels that match nothing) is one
`error:` line; what a figure leaves out (unreachable queries, qrels naming absent passages) is
printed under the table.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ..base import MINILM_ID
from ..cli import ArgumentParser, run_main
from ..metrics import display_name
from ..writing import check_writable, replacing
from ..index.fusion import DEFAULT_FUSION, FUSIONS, MODES, describe_fusions
from ..towers import TOWERS
from . import (PRIMARY, RERANK_METRICS, RETRIEVAL_METRICS, bm25_rerank_scores, bm25_retriever, dense_retriever,
               evaluate_rerank, evaluate_rerank_scores, evaluate_retrieval, index_retriever, untrained_like)


def _parser() -> ArgumentParser:
    ap = ArgumentParser(prog="python -m twotowers.evaluate", description=__doc__.splitlines()[0])
    who = ap.add_argument_group("what to evaluate")
    who.add_argument("--model", help="saved TwoTowers directory or Hub repo id")
    who.add_argument("--tower", choices=tuple(TOWERS), help="evaluate an untrained tower of this type instead of --model")
    who.add_argument("--baseline", nargs="+", default=[], choices=("bm25", "untrained"),
                     help="baselines to print beside it (untrained = same config, fresh weights)")
    who.add_argument("--zero-shot", nargs="+", default=[], metavar="BASE",
                     help="encoders measured zero-shot beside it: minilm (all-MiniLM-L6-v2) or a Hub id / directory "
                          "in sentence-transformers layout (e.g. BAAI/bge-small-en-v1.5), pooled and prompted as "
                          "their files say")
    data = ap.add_argument_group("data (TREC files or v1.1 rows)")
    data.add_argument("--queries", help="qid<TAB>query file")
    data.add_argument("--qrels", help="TREC qrels: qid 0 pid relevance")
    data.add_argument("--collection", help="pid<TAB>passage file (the retrieval corpus; ids must be unique)")
    data.add_argument("--data-files", nargs="+", help="v1.1-schema JSONL/parquet rows (their pooled candidates form the corpus)")
    ap.add_argument("--mode", choices=("rerank", "retrieve"), default="retrieve")
    ap.add_argument("--k", type=int, default=100, help="passages retrieved per query")
    ap.add_argument("--batch-size", type=int, default=64, help="passage encoding batch size")
    ap.add_argument("--json", help="write the results here as JSON")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    idx = ap.add_argument_group("search a saved PassageIndex instead of exact search")
    idx.add_argument("--index", help="PassageIndex directory built over the same collection")
    idx.add_argument("--search-mode", choices=MODES, default=None,
                     help="default: the index's (hybrid where it has a BM25 side, else dense)")
    idx.add_argument("--alpha", type=float, help="hybrid weight of the dense side (index default if unset)")
    idx.add_argument("--fusion", choices=tuple(FUSIONS), default=None,
                     help=f"hybrid fusion (default {DEFAULT_FUSION}): {describe_fusions()}")
    return ap


def _load_retrieval_set(args) -> tuple[dict, dict, list[str], list[str]]:
    from ..collection import read_collection, read_qrels, read_queries
    from ..data import load_rerank_queries, pooled_corpus

    if args.data_files:
        return pooled_corpus(load_rerank_queries(args.data_files))
    if not (args.queries and args.qrels and args.collection):
        raise ValueError("retrieve mode needs --queries, --qrels and --collection (or --data-files)")
    pids, texts = read_collection(args.collection)
    return read_queries(args.queries), read_qrels(args.qrels), pids, texts


def _name(path: str) -> str:
    """A file's name without its directory (what the JSON and a model card may show), or a Hub id as given."""
    return Path(path).name if Path(path).exists() else path


def describe_data(args, n_passages: int) -> dict:
    """What was measured, for the JSON (and so the model card): file names, never local paths, and the
    corpus size; the query counts are each system's `n_queries` / `n_unreachable`."""
    if args.data_files:
        d = {"queries": ", ".join(map(_name, args.data_files)), "dataset_config": "v1.1"}
        if args.mode == "retrieve":
            d.update(corpus="the pooled candidate passages of those rows", corpus_passages=n_passages)
        return d
    return {"queries": _name(args.queries), "qrels": _name(args.qrels), "corpus": _name(args.collection),
            "corpus_passages": n_passages}


def _print_table(results: dict[str, dict], mode: str) -> None:
    metrics = RETRIEVAL_METRICS if mode == "retrieve" else RERANK_METRICS
    print("| system | " + " | ".join(map(display_name, metrics)) + " | queries |")
    print("|---" * (len(metrics) + 2) + "|")
    for name, r in results.items():
        print(f"| {name} | " + " | ".join(f"{r[m]:.4f}" for m in metrics) + f" | {r['n_queries']} |")
    r = next(iter(results.values()))
    if mode == "rerank":
        print("| random order (expected) | " + " | ".join(f"{r['random_' + m]:.4f}" for m in metrics) + f" | {r['n_queries']} |")
        return
    notes = []
    if r.get("n_unreachable"):
        notes.append(f"{r['n_unreachable']} judged queries have no relevant passage in the collection and are left out")
    if r.get("n_qrels_not_in_corpus"):
        notes.append(f"{r['n_qrels_not_in_corpus']} relevant (query, passage) judgments of the counted queries name "
                     "passages absent from the collection: they lower recall and NDCG")
    for note in notes:
        print(f"note: {note}")


def main(argv: Sequence[str] | None = None) -> dict:
    args = _parser().parse_args(argv)
    if args.model is None and args.tower is None and not args.baseline and not args.zero_shot:
        raise ValueError("give --model DIR_OR_REPO, --tower TYPE, --zero-shot BASE or --baseline bm25")
    if args.index and args.mode != "retrieve":
        raise ValueError("--index works in --mode retrieve only")
    if args.k < 1:
        raise ValueError(f"--k must be >= 1, got {args.k}")
    if args.json and Path(args.json).exists() and not args.overwrite:
        raise FileExistsError(f"{args.json} exists: pass --overwrite to replace it, or choose another --json")
    if args.json:
        check_writable(Path(args.json).absolute().parent, "--json's directory")  # now, not after the evaluation
    if "untrained" in args.baseline and args.model is None and args.tower is None:
        raise ValueError("--baseline untrained needs --model or --tower")
    from ..data import load_rerank_queries
    from ..model import TwoTowers

    models, model = {}, None
    if args.model:
        model = TwoTowers.from_pretrained(args.model)
        models["model"] = model  # the JSON (and a model card) never shows a local path
        if "untrained" in args.baseline:
            models["untrained (same config)"] = untrained_like(model)
    elif args.tower:
        model = untrained_like(tower=args.tower)
        models[f"untrained {args.tower}"] = model
    for base in args.zero_shot:
        named = MINILM_ID if base in ("minilm", MINILM_ID) else base
        models[f"zero-shot {_name(named)}"] = TwoTowers.zero_shot(named)

    results: dict[str, dict] = {}
    pids = []
    if args.mode == "rerank":
        if not args.data_files:
            raise ValueError("rerank mode needs --data-files (v1.1 rows with is_selected)")
        rqs = load_rerank_queries(args.data_files)
        for name, m in models.items():
            results[name] = evaluate_rerank(m, rqs, args.batch_size)
        if "bm25" in args.baseline:
            results["bm25"] = evaluate_rerank_scores(rqs, bm25_rerank_scores(rqs))
    else:
        queries, qrels, pids, texts = _load_retrieval_set(args)
        for name, m in models.items():
            if args.index and m is model:
                retr = index_retriever(args.index, m, args.search_mode, args.alpha, args.fusion, corpus=(pids, texts))
                name = f"{name} index {retr.mode}" + (f" {args.fusion or 'default'} alpha={args.alpha}"
                                                      if retr.mode == "hybrid" else "")
            else:
                retr = dense_retriever(m, pids, texts, args.batch_size)
            results[name] = evaluate_retrieval(retr, queries, qrels, args.k, corpus_ids=pids)
        if "bm25" in args.baseline:
            results["bm25"] = evaluate_retrieval(bm25_retriever(pids, texts), queries, qrels, args.k, corpus_ids=pids)
    _print_table(results, args.mode)
    if args.json:
        with replacing(Path(args.json), overwrite=args.overwrite) as f:
            f.write(json.dumps({"mode": args.mode, "primary_metric": PRIMARY,
                                **describe_data(args, len(pids)), "results": results}, indent=2))
    return results


if __name__ == "__main__":
    sys.exit(run_main(main))
