"""`python -m twotowers.index`: build a PassageIndex from a model and a collection, or search one.

    python -m twotowers.index build --model DIR_OR_REPO --collection collection.tsv --out my-index
    python -m twotowers.index build --model DIR --collection DATASET_DIR_OR_ID --split train \\
        --id-column pid --text-column text --out my-index
    python -m twotowers.index search my-index "what is the rba" -k 10 [--mode dense|keyword|hybrid --alpha 0.5]

    torchrun --nproc-per-node 8 -m twotowers.index build ...   # each rank (GPU) encodes its shard; rank 0 builds

A collection is a `pid<TAB>text` file (MS MARCO's collection.tsv), a .jsonl/.parquet file, or a
Hugging Face dataset (a `save_to_disk` directory or a Hub id), read as a stream, encoded and indexed
a chunk at a time (memory: the graph plus a constant), with a progress bar (passages/s, ETA). A
killed build resumes from its last checkpoint when the same command runs again. Bad input (a
malformed line, a repeated id, an index that fails its checks) is one `error:` line.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ..checks import BLANK, is_blank
from ..textfiles import read_json
from ..cli import ArgumentParser, add_dataclass_arguments, dataclass_from_args, run_main
from ..writing import writer_lock
from .files import META_NAME, check_replaceable, saved_dir
from .fusion import DEFAULT_ALPHA, DEFAULT_FUSION, DEFAULT_K, FUSIONS, MODES, describe_fusions
from .tuning import RecallWarning

log = logging.getLogger(__name__)


@dataclass
class BuildConfig:
    model: str = field(metadata={"help": "TwoTowers directory or Hub id that encodes the passages"})
    collection: str = field(metadata={"help": "pid<TAB>text file, .jsonl/.parquet file, or HF dataset dir/id"})
    out: str = field(metadata={"help": "directory to write the index into"})
    overwrite: bool = field(default=False, metadata={"help": "replace an index already in --out"})
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
    threads: int = field(default=0, metadata={"help": "graph insertion threads (0: every core)"})
    checkpoint_minutes: float = field(default=10.0, metadata={
        "help": "save a checkpoint after the chunk that ends this long after the last: a killed build, run again with "
                "the same command, resumes from it"})
    restart: bool = field(default=False, metadata={"help": "discard an unfinished build of --out instead of resuming it"})

    def __post_init__(self):
        if self.threads < 0 or self.checkpoint_minutes < 0:
            raise ValueError(f"--threads and --checkpoint-minutes must be >= 0, got {self.threads} and {self.checkpoint_minutes}")
        for name in ("M", "ef_construction", "chunk_size", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {self.limit}")
        if not 0 < self.target_recall <= 1:
            raise ValueError(f"--target-recall must be in (0, 1], got {self.target_recall}")


def build(cfg: BuildConfig, show_progress: bool = True) -> dict | None:
    """Build the index `cfg` describes into `cfg.out` (resuming an unfinished build of it) -> its index.json.

    Under torchrun every rank encodes its shard of each chunk and rank 0 builds; the others return None."""
    from .distributed import join

    world = join()
    if not world.leader:
        return _follow(cfg, world)
    out, started = Path(cfg.out), []

    def on_start(done: int) -> None:
        started.append(done)
        world.broadcast(done)  # the other ranks skip what an earlier run did

    try:
        # One writer: the lock is taken before any work (a second build into --out is refused at once, not
        # after hours of encoding) and held until the new index is swapped in.
        with writer_lock(out, "the index"):
            if (saved_dir(out) / META_NAME).exists() and not cfg.overwrite:
                raise FileExistsError(f"{out} already holds an index: pass --overwrite to replace it, or choose another --out")
            check_replaceable(out, overwrite=True)  # a directory of other files is refused now, not after the build
            return _build(cfg, out, world, show_progress, on_start)
    except BaseException:
        if not started:
            world.broadcast(None)  # the other ranks stop too, instead of waiting for chunks
        raise  # no barrier: this process exits, and torchrun stops the others (they may be mid-collective)


def _build(cfg: BuildConfig, out: Path, world, show_progress: bool, on_start) -> dict:
    from ..collection import collection_size
    from .build import BuildSettings, build_directory

    model = _model(cfg, world)
    pairs = _pairs(cfg)
    first = next(pairs, None)
    if first is None:
        raise ValueError(f"{cfg.collection} holds no passages: nothing to index")
    total = collection_size(cfg.collection, split=cfg.split)
    total = min(total, cfg.limit) if total is not None and cfg.limit is not None else total or cfg.limit
    settings = BuildSettings(M=cfg.M, ef_construction=cfg.ef_construction, target_recall=cfg.target_recall,
                             chunk_size=cfg.chunk_size, keyword=cfg.keyword,
                             stemmer=None if cfg.stemmer.lower() == "none" else cfg.stemmer)
    # what it holds, by name (a file's name, or a dataset id and split), and where `search` finds the model
    # again: a local directory made absolute, a Hub id as given
    source = Path(cfg.collection)
    corpus = source.name if source.is_file() else f"{source.name if source.exists() else cfg.collection} ({cfg.split})"
    encode = world.sharded(lambda texts: model.encode_passages(texts, batch_size=cfg.batch_size), int(model.dim))
    return build_directory(out, model, itertools.chain([first], pairs), settings=settings, total=total, encode=encode,
                           threads=cfg.threads or -1, checkpoint_seconds=60 * cfg.checkpoint_minutes,
                           overwrite=cfg.overwrite, restart=cfg.restart, corpus=corpus,
                           model_source=str(Path(cfg.model).resolve()) if Path(cfg.model).is_dir() else cfg.model,
                           source_bytes=source.stat().st_size if source.is_file() else None,
                           show_progress=show_progress, on_start=on_start, on_encoded=world.leave)


def _follow(cfg: BuildConfig, world) -> None:
    """A rank other than 0: encode its shard of every chunk rank 0 indexes, then leave."""
    model = _model(cfg, world)
    done = world.broadcast(None)  # where rank 0 starts; None: it could not start (it says why)
    if done is None:
        raise SystemExit(1)
    encode = world.sharded(lambda texts: model.encode_passages(texts, batch_size=cfg.batch_size), int(model.dim))
    if done >= 0:
        pairs = itertools.islice(_pairs(cfg), done, None)
        while chunk := list(itertools.islice(pairs, cfg.chunk_size)):
            encode([text for _, text in chunk])
    world.leave()
    return None


def _model(cfg: BuildConfig, world):
    from ..model import TwoTowers

    model = TwoTowers.from_pretrained(cfg.model)
    return model.to(world.device) if world.device is not None else model


def _pairs(cfg: BuildConfig):
    from ..collection import iter_collection

    pairs = iter_collection(cfg.collection, id_column=cfg.id_column, text_column=cfg.text_column, split=cfg.split)
    return itertools.islice(pairs, cfg.limit) if cfg.limit is not None else pairs


def find_index_and_model(index: str, model: str | None, need_model: bool, verify: bool = True):
    """(PassageIndex, model) for `search`: the index dir, or a Hub repo (model at its root, index
    under index/); the model from --model, else beside (or above) the index, else index.json's source."""
    from ..download import local_or_download
    from ..layout import INDEX_SUBFOLDER, MODEL_FILES, find_index, find_model
    from ..model import TwoTowers
    from .passage_index import PassageIndex

    root = local_or_download(index, what="index", allow_patterns=[*MODEL_FILES, f"{INDEX_SUBFOLDER}/*"])
    index_dir = find_index(root) or root  # not an index at all: `load` says what is missing
    if model is None and need_model:
        beside = find_model(index_dir)
        if beside is not None:
            model = str(beside)
        else:
            meta_path = saved_dir(index_dir) / META_NAME
            meta = read_json(meta_path, "a saved index's description") if meta_path.is_file() else {}
            source = meta.get("model", {}).get("source") if isinstance(meta, dict) and isinstance(meta.get("model"), dict) else None
            if not source:
                raise FileNotFoundError(f"no model found beside {index}: pass --model DIR_OR_REPO (the model that "
                                        "built the index), or use --mode keyword")
            model = source
    loaded = TwoTowers.from_pretrained(model) if model is not None else None
    return PassageIndex.load(index_dir, model=loaded, verify=verify), loaded


def search(args: argparse.Namespace) -> None:
    """Print the top-k hits of each query (text, or JSON lines with --json)."""
    for i, q in enumerate(args.query, 1):
        if is_blank(q):
            raise ValueError(f"query {i} {BLANK}: give some words to search for")
    index, _ = find_index_and_model(args.index, args.model, need_model=args.mode != "keyword", verify=args.verify)
    mode = args.mode or index.default_mode
    results = index.search(args.query, k=args.k, mode=mode, alpha=args.alpha, fusion=args.fusion)
    for query, hits in zip(args.query, results):
        if args.json:
            for rank, h in enumerate(hits, 1):
                print(json.dumps({"query": query, "rank": rank, **h.to_dict()}, ensure_ascii=False))
            continue
        print(f"# {query}")
        for rank, h in enumerate(hits, 1):
            extra = "" if mode != "hybrid" else f"  (dense {h.dense_score:.4f}, bm25 {h.keyword_score:.3f})"
            print(f"{rank:3d}. {h.score:.4f}  [{h.id}]  {h.text[:200]}{extra}")


def _k(value: str) -> int:
    try:
        k = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"-k must be a whole number >= 1, got {value!r}") from None
    if k < 1:
        raise argparse.ArgumentTypeError(f"-k must be >= 1, got {k}")
    return k


def _alpha(value: str) -> float:
    try:
        a = float(value)
    except ValueError:
        a = -1.0
    if not 0 <= a <= 1:
        raise argparse.ArgumentTypeError(f"--alpha must be a number from 0 to 1, got {value!r}")
    return a


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m twotowers.index", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    p_build = sub.add_parser("build", help="encode a collection and save an index")
    add_dataclass_arguments(p_build, BuildConfig)
    p_search = sub.add_parser("search", help="search a saved index")
    p_search.add_argument("index", help="index directory (or Hub repo id with an index/ folder)")
    p_search.add_argument("query", nargs="+", help="query text(s)")
    p_search.add_argument("-k", type=_k, default=DEFAULT_K, help="results per query")
    p_search.add_argument("--model", help="model dir/Hub id (default: the repo/dir holding the index, "
                                          "else the dir named in index.json)")
    p_search.add_argument("--mode", choices=MODES, default=None,
                          help="default: hybrid (dense + BM25 fused) where the index has a BM25 side, else dense")
    p_search.add_argument("--alpha", type=_alpha, default=DEFAULT_ALPHA, help="hybrid: weight of the dense side")
    p_search.add_argument("--fusion", choices=tuple(FUSIONS), default=DEFAULT_FUSION,
                          help=f"hybrid: how the two sides' scores combine ({describe_fusions()})")
    p_search.add_argument("--json", action="store_true", help="print JSON lines instead of text")
    p_search.add_argument("--no-verify", dest="verify", action="store_false",
                          help="skip the files' checksums (an index you have just built or verified)")
    return p


def main(argv: list[str] | None = None) -> None:
    p = parser()
    args = p.parse_args(argv)
    if args.command == "build":
        cfg = dataclass_from_args(BuildConfig, args, p)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RecallWarning)
            meta = build(cfg)
        if meta is None:  # a torchrun rank other than 0: rank 0 reports
            return
        tuning = meta.get("ef_tuning") or {}
        log.info(f"wrote {cfg.out}: {meta['count']:,} passages, dim {meta['dim']}, M {meta['M']}, ef {meta['ef']}"
                 + (f" (recall@{tuning['k']} {tuning['recall']:.4f} on {tuning['queries']} queries, target "
                    f"{tuning['target_recall']})" if tuning else "")
                 + f", keyword {'yes' if meta.get('keyword') else 'no'}, {meta.get('build_seconds', 0):,.0f} s of building")
        for w in caught:  # the build could not reach its target recall: said on a line of its own
            log.warning(f"warning: {w.message}")
    else:
        search(args)


if __name__ == "__main__":
    sys.exit(run_main(main))
