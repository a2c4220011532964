"""The embedded demo: its corpus and queries (demo/), the zero-shot model, and its index, built once and cached."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from pathlib import Path

from twotowers.download import cache_dir

from .inputs import parse_passages

ROOT = Path(__file__).resolve().parents[1]
DEMO_PASSAGES = ROOT / "demo" / "passages.jsonl"
DEMO_QUERIES = ROOT / "demo" / "queries.json"

_log = logging.getLogger(__name__).info  # the default `log` of the functions below


def read_demo_corpus(path: Path = DEMO_PASSAGES) -> tuple[list[str], list[str], str]:
    """demo/passages.jsonl -> (ids, texts, sha256 of the file)."""
    data = path.read_bytes()
    ids, texts = parse_passages(path.name, data)
    if None in ids:
        raise ValueError(f"{path}: every demo passage needs an id")
    return ids, texts, hashlib.sha256(data).hexdigest()


def demo_queries(path: Path = DEMO_QUERIES) -> list[dict]:
    """[{"query": ..., "expected": passage id}, ...] shipped with the demo corpus."""
    return json.loads(path.read_text(encoding="utf-8"))


def demo_model():
    """The zero-shot default: an untrained transformer tower is all-MiniLM-L6-v2 as it ships."""
    from twotowers import TwoTowers

    return TwoTowers.zero_shot()


def load_demo_index(model, cache: Path | None = None, corpus: Path = DEMO_PASSAGES, log=_log):
    """The demo corpus indexed by `model`: loaded from the cache, or built and cached.

    The cache dir is named by the model fingerprint and the corpus hash, so a stale index is never
    loaded; one that fails to load (half-written, old format) is rebuilt.
    """
    from twotowers import PassageIndex

    ids, texts, corpus_hash = read_demo_corpus(corpus)
    parent = (cache or cache_dir()) / "demo-index"
    target = parent / f"{model.fingerprint()[:16]}-{corpus_hash[:16]}"
    if target.is_dir():
        try:
            index = PassageIndex.load(target, model=model)
            if len(index) == len(ids):
                return index, target
            log(f"cached demo index {target} holds {len(index)} passages, expected {len(ids)}: rebuilding")
        except Exception as e:  # noqa: BLE001 - any broken cache is rebuilt, never fatal
            log(f"cached demo index {target} did not load ({type(e).__name__}: {e}): rebuilding")
    t0 = time.perf_counter()
    log(f"building the demo index: {len(ids)} passages (first start only) ...")
    index = PassageIndex.build(model, ids, texts, keyword=True, show_progress=False)
    try:
        index.save(target)  # atomic: a crash never leaves a half-written cache entry
    except OSError as e:
        log(f"could not cache the demo index in {parent} ({e}); it will be rebuilt next start")
    for old in parent.iterdir():
        # Another model's entry for this corpus stays (switching models back needs no rebuild); an
        # entry for an older corpus, or a save that crashed over an hour ago (.NAME.new), is dead weight.
        crashed = old.name.startswith(".") and time.time() - old.stat().st_mtime > 3600
        stale = not old.name.startswith(".") and not old.name.endswith(corpus_hash[:16])
        if old.is_dir() and old != target and (crashed or stale):
            shutil.rmtree(old, ignore_errors=True)
    log(f"demo index built in {time.perf_counter() - t0:.1f} s, cached in {target}")
    return index, target
