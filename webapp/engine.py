"""What the app serves: a model, its passage index, and a lock; loaded once, from the Hub, local dirs or the demo."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from .demo import DEMO_PASSAGES, ROOT, demo_model, demo_queries, load_demo_index


class _RWLock:
    """Many searches at once, or one writer (adding passages) alone."""

    def __init__(self):
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False

    def read(self):
        return _Held(self, write=False)

    def write(self):
        return _Held(self, write=True)

    def _acquire(self, write: bool):
        with self._cond:
            if write:
                self._cond.wait_for(lambda: not self._writing and self._readers == 0)
                self._writing = True
            else:
                self._cond.wait_for(lambda: not self._writing)
                self._readers += 1

    def _release(self, write: bool):
        with self._cond:
            if write:
                self._writing = False
            else:
                self._readers -= 1
            self._cond.notify_all()


class _Held:
    def __init__(self, lock: _RWLock, write: bool):
        self.lock, self.write = lock, write

    def __enter__(self):
        self.lock._acquire(self.write)

    def __exit__(self, *exc):
        self.lock._release(self.write)


@dataclass
class Engine:
    """What the app serves: a model, its passage index, and where to save added passages."""

    model: object                 # twotowers.TwoTowers
    index: object                 # twotowers.PassageIndex
    model_name: str               # where the model came from, for the info line
    index_name: str
    save_dir: Path | None = None  # where `add_passages` saves the grown index
    examples: list[str] = field(default_factory=list)  # example queries the page shows
    lock: _RWLock = field(default_factory=_RWLock)

    @property
    def has_keyword(self) -> bool:
        """Whether the index has a BM25 side, i.e. keyword and hybrid modes work."""
        return getattr(self.index, "keyword", None) is not None

    @property
    def default_mode(self) -> str:
        """The search mode used when none is given: hybrid where the index has a BM25 side, else dense
        (`PassageIndex.default_mode`'s rule)."""
        return "hybrid" if self.has_keyword else "dense"

    def info(self) -> dict:
        """What the info line and the start-up log show: model, tower, dim, index, passages, keyword, default mode."""
        return {"model": self.model_name, "tower": self.model.tower_name, "dim": self.model.dim, "index": self.index_name,
                "passages": len(self.index), "keyword": self.has_keyword, "default_mode": self.default_mode}


def load_engine(model_repo: str | None = None, revision: str | None = None, model_dir: str | None = None,
                index_dir: str | None = None, cache: Path | None = None, model=None, log=print,
                verify: bool = True) -> Engine:
    """Load what the app serves, once: a Hub repo, local dirs, or the embedded demo.

    `model` (a TwoTowers) overrides the demo's zero-shot model, e.g. a small one in tests. The index's
    files are checked against their checksums unless `verify=False`. Example queries come with the
    model repo (`examples.json`, see `hub push --example-queries`) or the demo.
    """
    engine = _load(model_repo, revision, model_dir, index_dir, cache, model, log, verify)
    engine.model.encode_queries(["warm up"])  # the first query pays no one-off cost (the mean tower's table)
    return engine


def _load(model_repo, revision, model_dir, index_dir, cache, model, log, verify) -> Engine:
    from twotowers import PassageIndex, TwoTowers
    from twotowers.download import cache_dir, local_or_download
    from twotowers.pretrained import EXAMPLES_NAME, INDEX_SUBFOLDER, example_queries, load_pretrained

    if model_repo:
        # One snapshot of one revision holds both, so the index always matches the model.
        log(f"loading model and index from the Hub repo {model_repo}{'@' + revision if revision else ''} ...")
        model, index = load_pretrained(model_repo, revision=revision, verify=verify)
        examples = example_queries(local_or_download(model_repo, what="model repo", revision=revision,
                                                     allow_patterns=[EXAMPLES_NAME]))
        name = f"{model_repo}@{revision[:12]}" if revision else model_repo
        return Engine(model, index, name, f"{model_repo} (prebuilt)", cache_dir() / "my-index", examples)
    if index_dir and not model_dir:
        raise ValueError("--index needs --model (the model whose passage tower built it)")
    for flag, d in (("--model", model_dir), ("--index", index_dir)):
        if d and not Path(d).is_dir():
            raise FileNotFoundError(f"{flag} {d}: no such directory" + (" (for a Hub repo use --model-repo)" if flag == "--model" else ""))
    if model_dir and not index_dir and (Path(model_dir) / INDEX_SUBFOLDER).is_dir():
        index_dir = str(Path(model_dir) / INDEX_SUBFOLDER)  # a `hub push --dry-run` tree: model + index/
    if model_dir:
        model = TwoTowers.from_pretrained(model_dir)
        name = str(model_dir)
    elif model is None:
        log("loading the zero-shot transformer tower (all-MiniLM-L6-v2) ...")
        model = demo_model()
        name = "all-MiniLM-L6-v2, zero-shot (untrained transformer tower)"
    else:
        name = f"{model.tower_name} tower (given)"
    if index_dir:
        index = PassageIndex.load(index_dir, model=model, verify=verify)
        return Engine(model, index, name, str(index_dir), Path(index_dir), example_queries(model_dir))
    index, where = load_demo_index(model, cache, log=log)
    return Engine(model, index, name, f"demo corpus ({DEMO_PASSAGES.relative_to(ROOT)})",
                  (cache or cache_dir()) / "my-index", [q["query"] for q in demo_queries()])


_ENGINE: Engine | None = None
_ENGINE_LOCK = threading.Lock()


def set_engine(engine: Engine | None) -> None:
    """Make `engine` the one `search` and the UI use."""
    global _ENGINE
    _ENGINE = engine


def get_engine() -> Engine:
    """The loaded engine; the embedded demo is loaded on first use if nothing was set."""
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            _ENGINE = load_engine()
        return _ENGINE
