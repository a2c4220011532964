"""Search and add passages: plain functions over the engine; the UI and the API endpoints go through them."""

from __future__ import annotations

import time
import warnings
from typing import TypedDict

from twotowers.index.tuning import RecallWarning

from .engine import Engine, get_engine
from .inputs import DEFAULT_ALPHA, DEFAULT_FUSION, DEFAULT_K, MAX_BATCH, InputError, assign_ids, clean_k, clean_mode, clean_query, parse_passages


class SaveError(RuntimeError):
    """Added passages could not be saved: nothing was added (the message is the disk's reason)."""


class Hit(TypedDict):
    """One search result, as `search` returns it and the APIs send it (JSON object)."""

    rank: int                     # 1 = best
    id: str                       # the passage id
    score: float                  # what the ranking used: cosine (dense), BM25 (keyword) or the fused score (hybrid)
    text: str                     # the passage
    dense_score: float | None     # the towers' cosine, where the mode computed it
    keyword_score: float | None   # the BM25 score, where the mode computed it


def _hit_dict(rank: int, hit) -> Hit:
    def num(x):
        return None if x is None else round(float(x), 6)

    return {"rank": rank, "id": str(hit.id), "score": num(hit.score), "text": hit.text,
            "dense_score": num(getattr(hit, "dense_score", None)),
            "keyword_score": num(getattr(hit, "keyword_score", None))}


def _search_texts(texts: list[str], k, mode, alpha, fusion, engine: Engine) -> list[list[Hit]]:
    """Cleaned query texts -> per query, the ranked hits (k, mode, alpha and fusion are checked here)."""
    k = clean_k(k)
    mode, alpha, fusion = clean_mode(mode, alpha, fusion, engine)
    with engine.lock.read():
        hits = engine.index.search(texts, k=k, mode=mode, alpha=alpha, fusion=fusion)
    return [[_hit_dict(r + 1, h) for r, h in enumerate(row)] for row in hits]


def search_many(queries: list, k=DEFAULT_K, mode=None, alpha=DEFAULT_ALPHA, fusion=DEFAULT_FUSION, engine: Engine | None = None) -> list[list[Hit]]:
    """Several queries in one encode -> per query, a ranked list of result dicts (see `search`).

    A bad query's message names it: "query 2: Enter a query: it is empty."
    """
    engine = engine or get_engine()
    if not isinstance(queries, (list, tuple)):
        raise InputError(f"queries must be a list of strings, got {type(queries).__name__}.")
    if not queries:
        raise InputError("queries is empty: give at least one query.")
    if len(queries) > MAX_BATCH:
        raise InputError(f"too many queries: {len(queries)}; the limit is {MAX_BATCH} per call.")
    texts = []
    for i, q in enumerate(queries):
        try:
            texts.append(clean_query(q))
        except InputError as e:
            raise InputError(f"query {i + 1}: {e}") from None
    return _search_texts(texts, k, mode, alpha, fusion, engine)


def search(query: str, k=DEFAULT_K, mode=None, alpha=DEFAULT_ALPHA, fusion=DEFAULT_FUSION, engine: Engine | None = None) -> list[Hit]:
    """One query -> ranked results: [{rank, id, score, text, dense_score, keyword_score}, ...].

    `mode` is "dense" (the towers), "keyword" (BM25) or "hybrid"; None (the default) is the engine's
    default: hybrid where the index has a BM25 side, else dense. `alpha` is the semantic weight of
    hybrid (0 = keyword only, 1 = towers only). Bad input raises `InputError` with a message
    meant for the user (about the query itself, with no "query 1:" prefix).
    """
    text = clean_query(query)
    return _search_texts([text], k, mode, alpha, fusion, engine or get_engine())[0]


def _ids_in_index(index, wanted: set[str], prefix: str) -> set[str]:
    """Which of `wanted`, and which `{prefix}-*` ids, the index already holds (one pass, little memory)."""
    start = prefix + "-"
    return {p for p in map(str, getattr(index, "ids", ())) if p in wanted or p.startswith(start)}


def add_passages(name: str, data: bytes | str, engine: Engine | None = None) -> str:
    """Parse, check against the index, encode, add and save. Returns a summary line.

    The passages are added to a copy of the index, which is saved (when the engine has a `save_dir`)
    before it replaces the one being served: disk and memory change together or not at all. A bad
    file raises `InputError`, a failed save `SaveError` (the disk's reason, e.g. "disk full: ..."),
    and either leaves the index as it was, in memory and on disk.
    """
    engine = engine or get_engine()
    with engine.lock.write():
        ids, texts = parse_passages(name, data)
        existing = _ids_in_index(engine.index, {i for i in ids if i is not None}, "mine")
        dup = [p for p in ids if p is not None and p in existing]
        if dup:
            raise InputError(f"{name}: id {dup[0]!r} is already in the index ({len(dup)} such ids); use new ids.")
        ids = assign_ids(ids, existing)
        t0 = time.perf_counter()
        grown = engine.index.copy()  # searches go on against the old index meanwhile
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RecallWarning)
            retuned = grown.add(ids, texts)
        if engine.save_dir is not None:
            try:
                grown.save(engine.save_dir)
            except OSError as e:
                raise SaveError(f"Could not save the index to {engine.save_dir}: {e}") from None
            where = f" Saved to `{engine.save_dir}`."
        else:
            where = " They are kept in memory for this session only (start the app with --save-uploads DIR to keep them)."
        engine.index = grown
        note = f" The index grew by a tenth since its search breadth was chosen: ef re-tuned to {grown.ef}." if retuned else ""
        note += "".join(f" Warning: {w.message}." for w in caught)
        return (f"Added {len(texts):,} passages from {name} in {time.perf_counter() - t0:.1f} s; "
                f"the index now holds {len(engine.index):,}.{where}{note}")
