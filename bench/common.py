"""Helpers shared by the benchmark scripts: where the real MS MARCO data is, interleaved timing, a table printer."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as `python bench/x.py` from a clone, no install needed

MSMARCO = Path(os.environ.get("TWOTOWERS_MSMARCO_DIR", Path(__file__).resolve().parents[2] / "shared" / "data" / "msmarco"))
DEV_COLLECTION = MSMARCO / "dev-small" / "collection.bm25top20_sample600.tsv"


def read_passages(limit: int | None = None, path: Path = DEV_COLLECTION) -> tuple[list[str], list[str]]:
    """pid<TAB>text -> (ids, texts); exits with a clear message where the shared data is absent."""
    if not path.is_file():
        sys.exit(f"{path} not found: set TWOTOWERS_MSMARCO_DIR to the shared MS MARCO data")
    from twotowers.collection import read_collection

    ids, texts = read_collection(path)
    return ids[:limit], texts[:limit]


def dev600_half(qid: str) -> str:
    """dev600's two halves, fixed by the qid alone: "validation" (sha256 even) or "test" (odd)."""
    import hashlib

    return "test" if hashlib.sha256(qid.encode()).digest()[0] % 2 else "validation"


def interleaved_times(methods: dict[str, Callable], queries, passes: int) -> dict[str, list[float]]:
    """Seconds per single-query call of each method, the methods taking turns query by query.

    Query i goes to method (i + pass) mod len(methods), so over len(methods) passes every query meets
    every method, load drifts hit all alike, and no method runs on a graph neighbourhood the previous
    call just warmed (timing two methods back to back on one query favours the second).
    """
    names = list(methods)
    times = {m: [] for m in names}
    for p in range(passes):
        for i in range(len(queries)):
            m = names[(i + p) % len(names)]
            fn, x = methods[m], queries[i : i + 1]
            t0 = time.perf_counter()
            fn(x)
            times[m].append(time.perf_counter() - t0)
    return times


def print_table(header: list[str], rows: list[list]) -> None:
    """Markdown table, ready to paste into the README."""
    cells = [[str(c) for c in header]] + [[f"{c:,.1f}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"
    print(line(cells[0]))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in cells[1:]:
        print(line(r))
