"""What the app serves: a model, its passage index, and a lock; loaded once, from the Hub, local dirs or the demo."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .demo import DEMO_PASSAGES, ROOT, demo_model, demo_queries, load_demo_index

_log = logging.getLogger(__name__).info  # the default `log` of the functions below


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
    save_dir: Path | None = None  # where `add_passages` saves the grown index (--save-uploads); None: memory only
    examples: list[str] = field(default_factory=list)  # example queries the page shows
    lock: _RWLock = field(default_factory=_RWLock)
    save_lock: object = None      # twotowers.writing.HeldLock on save_dir: no other process writes there meanwhile

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
                index_dir: str | None = None, cache: Path | None = None, model=None, log=_log,
                verify: bool = True, save_uploads: str | Path | None = None) -> Engine:
    """Load what the app serves, once: a Hub repo, local dirs, or the embedded demo.

    `model` (a TwoTowers) overrides the demo's zero-shot model, e.g. a small one in tests. The index's
    files are checked against their checksums unless `verify=False`. Example queries come with the
    model repo (`examples.json`, see `hub push --example-queries`) or the demo. `save_uploads`: the
    directory added passages are saved into (see `set_save_dir`); None keeps them in memory only.
    """
    engine = _load(model_repo, revision, model_dir, index_dir, cache, model, log, verify)
    if save_uploads is not None:
        set_save_dir(engine, save_uploads, index_dir)
    engine.model.encode_queries(["warm up"])  # the first query pays no one-off cost (the mean tower's table)
    return engine


def set_save_dir(engine: Engine, directory: str | Path, index_dir: str | Path | None = None) -> Path:
    """Save added passages into `directory` (the served index and every upload, swapped in whole).

    It must be empty, absent, or the `index_dir` being served (then that index is updated in place,
    which the user asked for by naming it twice); any other index there is refused, never replaced.
    The directory's writer lock is held from now on: another app or `index build` writing there is refused.
    """
    from twotowers.index.files import META_NAME, check_replaceable, saved_dir
    from twotowers.writing import HeldLock

    d = Path(directory).resolve()
    in_place = index_dir is not None and Path(index_dir).resolve() == d
    if (saved_dir(d) / META_NAME).exists() and not in_place:
        raise FileExistsError(f"--save-uploads {directory} already holds an index: serve it with --index {directory} "
                              "(and the same --save-uploads) to keep adding to it, or choose an empty directory")
    check_replaceable(d, overwrite=True)  # nothing but an index in there
    engine.save_lock = HeldLock(d, "the app's index")
    engine.save_dir = d
    return d


def _load(model_repo, revision, model_dir, index_dir, cache, model, log, verify) -> Engine:
    from twotowers import PassageIndex, TwoTowers
    from twotowers.download import local_or_download
    from twotowers.layout import EXAMPLES_NAME, find_index
    from twotowers.pretrained import example_queries, load_pretrained

    if model_repo:
        # One snapshot of one revision holds both, so the index always matches the model.
        log(f"loading model and index from the Hub repo {model_repo}{'@' + revision if revision else ''} ...")
        model, index = load_pretrained(model_repo, revision=revision, verify=verify)
        examples = example_queries(local_or_download(model_repo, what="model repo", revision=revision,
                                                     allow_patterns=[EXAMPLES_NAME]))
        name = f"{model_repo}@{revision[:12]}" if revision else model_repo
        return Engine(model, index, name, f"{model_repo} (prebuilt)", None, examples)
    if index_dir and not model_dir:
        raise ValueError("--index needs --model (the model whose passage tower built it)")
    for flag, d in (("--model", model_dir), ("--index", index_dir)):
        if d and not Path(d).is_dir():
            raise FileNotFoundError(f"{flag} {d}: no such directory" + (" (for a Hub repo use --model-repo)" if flag == "--model" else ""))
    if model_dir and not index_dir and (found := find_index(model_dir)) is not None:
        index_dir = str(found)  # a `hub push --dry-run` tree: model + index/
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
        return Engine(model, index, name, str(index_dir), None, example_queries(model_dir))
    index, where = load_demo_index(model, cache, log=log)
    return Engine(model, index, name, f"demo corpus ({DEMO_PASSAGES.relative_to(ROOT)})", None,
                  [q["query"] for q in demo_queries()])


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
