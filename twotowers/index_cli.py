"""`python -m twotowers.index`: build a PassageIndex from a model and a collection, or search one.

    python -m twotowers.index build --model DIR_OR_REPO --collection collection.tsv --out my-index
    python -m twotowers.index build --model DIR --collection DATASET_DIR_OR_ID --split train \\
        --id-column pid --text-column text --out my-index
    python -m twotowers.index search my-index "what is the rba" -k 10 [--mode hybrid --alpha 0.5]

A collection is a `pid<TAB>text` file (MS MARCO's collection.tsv), a .jsonl/.parquet file, or a
Hugging Face dataset (a `save_to_disk` directory or a Hub id), read as a stream.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

from .optional import import_optional


@dataclass
class BuildConfig:
    model: str = field(metadata={"help": "TwoTowers directory or Hub id that encodes the passages"})
    collection: str = field(metadata={"help": "pid<TAB>text file, .jsonl/.parquet file, or HF dataset dir/id"})
    out: str = field(metadata={"help": "directory to write the index into"})
    split: str = field(default="train", metadata={"help": "dataset split (HF datasets only)"})
    id_column: str = field(default="id", metadata={"help": "id column (jsonl/parquet/HF datasets)"})
    text_column: str = field(default="text", metadata={"help": "text column (jsonl/parquet/HF datasets)"})
    limit: int | None = field(default=None, metadata={"help": "index only the first N passages"})
    M: int = field(default=32, metadata={"help": "hnswlib M: graph links per node (memory vs recall)"})
    ef_construction: int = field(default=200, metadata={"help": "hnswlib ef_construction: build breadth"})
    target_recall: float = field(default=0.99, metadata={"help": "choose the smallest ef reaching this recall@10"})
    chunk_size: int = field(default=10_000, metadata={"help": "passages read and encoded per chunk"})
    batch_size: int = field(default=64, metadata={"help": "encoding batch size"})
    keyword: bool = field(default=True, metadata={"help": "also build the BM25 side (--no-keyword to skip)"})
    stemmer: str = field(default="english", metadata={"help": "BM25 stemmer language (PyStemmer); none for no stemming"})
    # -- corpus adaptation (twotowers/distill.py) ---------------------------------------------------
    adapt: bool = field(default=False, metadata={
        "help": "first distil the model on this collection from --adapt-teacher (no labels), save it beside the index"})
    adapt_teacher: str = field(default="minilm", metadata={
        "help": "adaptation teacher: 'minilm' (zero-shot all-MiniLM-L6-v2), a TwoTowers dir or a sentence-transformers dir"})
    adapt_epochs: int = field(default=4, metadata={"help": "adaptation epochs over the collection"})
    adapt_queries: str | None = field(default=None, metadata={
        "help": "unlabelled queries (qid<TAB>query) to adapt the query tower on too"})
    adapt_max_passages: int | None = field(default=None, metadata={"help": "adapt on at most the first N passages"})
    adapt_cache_dir: str | None = field(default=None, metadata={"help": "teacher-vector cache (default ~/.cache/twotowers/teacher)"})


def read_collection(cfg: BuildConfig) -> Iterator[tuple[str, str]]:
    """(id, text) pairs from a TSV, JSONL or parquet file or a Hugging Face dataset, streamed."""
    path = Path(cfg.collection)
    if path.is_file() and path.suffix in (".tsv", ".txt", ""):
        return _read_tsv(path)
    if path.is_file() and path.suffix == ".jsonl":
        return _read_jsonl(path, cfg.id_column, cfg.text_column)
    return _read_dataset(cfg)


def _read_tsv(path: Path) -> Iterator[tuple[str, str]]:
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            pid, sep, text = line.partition("\t")
            if not sep:
                raise ValueError(f"{path}:{n}: expected pid<TAB>text, found no tab")
            yield pid, text


def _read_jsonl(path: Path, id_col: str, text_col: str) -> Iterator[tuple[str, str]]:
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                yield str(row[id_col]), row[text_col]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ValueError(f"{path}:{n}: expected a JSON object with {id_col!r} and {text_col!r}: {e}") from e


def _read_dataset(cfg: BuildConfig) -> Iterator[tuple[str, str]]:
    datasets = import_optional("datasets", "reading a Hugging Face dataset collection")

    path = Path(cfg.collection)
    if path.is_dir() and ((path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()):
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            ds = ds[cfg.split]
    elif path.is_file() and path.suffix == ".parquet":
        ds = datasets.load_dataset("parquet", data_files=str(path), split="train", streaming=True)
    else:
        ds = datasets.load_dataset(cfg.collection, split=cfg.split, streaming=True)
    for n, row in enumerate(ds):
        try:
            yield str(row[cfg.id_column]), row[cfg.text_column]
        except KeyError as e:
            raise ValueError(f"{cfg.collection} row {n}: no column {e} (columns: {sorted(row)}); "
                             "set --id-column / --text-column") from None


def load_model(name: str):
    from .model import TwoTowers

    return TwoTowers.from_pretrained(name)


def build(cfg: BuildConfig, model=None, show_progress: bool = True):
    """Build and save an index for `cfg`; `model` (a TwoTowers, e.g. one adapted to the corpus) wins over cfg.model."""
    import itertools

    from .index import PassageIndex

    loaded = model is None and not cfg.adapt  # an adapted model is not the one at cfg.model: no source then
    model = load_model(cfg.model) if model is None else model
    if cfg.adapt:
        model = adapt(cfg, model)
    pairs = read_collection(cfg)
    if cfg.limit is not None:
        pairs = itertools.islice(pairs, cfg.limit)
    index = PassageIndex.build(model, pairs, M=cfg.M, ef_construction=cfg.ef_construction,
                               target_recall=cfg.target_recall, chunk_size=cfg.chunk_size, keyword=cfg.keyword,
                               show_progress=show_progress, batch_size=cfg.batch_size, stemmer=None if cfg.stemmer.lower() == "none" else cfg.stemmer)
    if loaded:  # where `search` finds the model again: a Hub id as given, a local directory made absolute
        index._meta["model"]["source"] = str(Path(cfg.model).resolve()) if Path(cfg.model).is_dir() else cfg.model
    index.save(cfg.out)
    return index


def adapt(cfg: BuildConfig, model):
    """Distil `model` on the collection (and `--adapt-queries`) from the teacher; save it into `cfg.out`."""
    import itertools

    from .distill import TeacherCache, adapt_to_corpus, read_texts

    pairs = read_collection(cfg)
    limit = min(x for x in (cfg.limit, cfg.adapt_max_passages) if x is not None) if (cfg.limit or cfg.adapt_max_passages) else None
    texts = [t for _, t in (itertools.islice(pairs, limit) if limit else pairs)]
    queries = read_texts([cfg.adapt_queries])[0] if cfg.adapt_queries else []
    cache = TeacherCache(cfg.adapt_cache_dir) if cfg.adapt_cache_dir else TeacherCache()
    summary = adapt_to_corpus(model, texts, cfg.adapt_teacher, epochs=cfg.adapt_epochs, queries=queries, cache=cache)
    model.save_pretrained(cfg.out)  # the index's own model: `search` finds it beside the index
    Path(cfg.out, "adapt_summary.json").write_text(json.dumps(summary, indent=2))
    print(f"adaptation cost: {summary['total_seconds']}s ({summary['teacher_seconds']}s teacher, "
          f"{summary['seconds']}s training) for {len(texts):,} passages + {len(queries):,} queries; "
          f"teacher cache {summary['cache_mib']} MiB", file=sys.stderr)
    return model


def _add_dataclass_args(p: argparse.ArgumentParser, cls) -> None:
    for f in fields(cls):
        name = "--" + f.name.replace("_", "-")
        required = f.default is MISSING and f.default_factory is MISSING
        if f.type == "bool":
            p.add_argument(name, dest=f.name, action=argparse.BooleanOptionalAction, default=f.default,
                           help=f.metadata.get("help"))
            continue
        typ = {"int": int, "float": float, "int | None": int, "str | None": str}.get(str(f.type), str)
        p.add_argument(name, dest=f.name, type=typ, required=required,
                       default=None if required else f.default, help=f.metadata.get("help"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m twotowers.index", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_build = sub.add_parser("build", help="encode a collection and save an index")
    _add_dataclass_args(p_build, BuildConfig)
    p_search = sub.add_parser("search", help="search a saved index")
    p_search.add_argument("index", help="index directory (or Hub repo id with an index/ folder)")
    p_search.add_argument("query", nargs="+", help="query text(s)")
    p_search.add_argument("-k", type=int, default=10, help="results per query")
    p_search.add_argument("--model", help="model dir/Hub id (default: the repo/dir holding the index, "
                                          "else the dir named in index.json)")
    p_search.add_argument("--mode", choices=("dense", "keyword", "hybrid"), default="dense")
    p_search.add_argument("--alpha", type=float, default=0.5, help="hybrid: weight of the dense side")
    p_search.add_argument("--fusion", choices=("score", "rrf"), default="score")
    p_search.add_argument("--json", action="store_true", help="print JSON lines instead of text")
    args = parser.parse_args(argv)

    if args.command == "build":
        cfg = BuildConfig(**{f.name: getattr(args, f.name) for f in fields(BuildConfig)})
        index = build(cfg)
        print(f"wrote {cfg.out}: {index!r}, ef tuning {index.meta.get('ef_tuning')}", file=sys.stderr)
        return

    from .index import PassageIndex

    model = None
    if args.mode != "keyword":
        model = _find_model(args.index, args.model)
    index = PassageIndex.from_pretrained(args.index, model=model)
    results = index.search(args.query, k=args.k, mode=args.mode, alpha=args.alpha, fusion=args.fusion)
    for query, hits in zip(args.query, results):
        if args.json:
            for rank, h in enumerate(hits, 1):
                print(json.dumps({"query": query, "rank": rank, **h.to_dict()}, ensure_ascii=False))
            continue
        print(f"# {query}")
        for rank, h in enumerate(hits, 1):
            extra = "" if args.mode != "hybrid" else f"  (dense {h.dense_score:.4f}, bm25 {h.keyword_score:.3f})"
            print(f"{rank:3d}. {h.score:.4f}  [{h.id}]  {h.text[:200]}{extra}")


def _find_model(index: str, model: str | None):
    """The model to encode queries: --model, else a TwoTowers saved beside (or above) the index, else
    the `model.source` that `build` recorded in index.json."""
    if model is not None:
        return load_model(model)
    p = Path(index)
    for cand in (p, p.parent):
        if (cand / "model.safetensors").is_file() and (cand / "config.json").is_file():
            return load_model(str(cand))
    meta_path = p / "index.json"
    if meta_path.is_file():
        source = json.loads(meta_path.read_text(encoding="utf-8")).get("model", {}).get("source")
        if source:
            return load_model(source)
    if not p.exists():  # a Hub repo: the model sits at its root
        return load_model(index)
    raise SystemExit(f"no model found beside {index}: pass --model DIR_OR_REPO (the model that built the index), "
                     "or use --mode keyword")


if __name__ == "__main__":
    main()
