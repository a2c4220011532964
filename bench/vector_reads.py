"""Reading an index's vectors from its graph file: a memory map against `VectorStore`'s `pread`, and the exact
search's block size. What each costs in time and in this process's resident memory (Linux: /proc/self/status).

    python bench/vector_reads.py --index DIR     # DIR: a saved index (e.g. one `python -m twotowers.index build` wrote)

Scattered rows (ef tuning's 200, hybrid search's ~100 keyword-only candidates a query): through a numpy
memory map of hnsw.bin (what format 3 did at first) and through `VectorStore` (one pread a row), the page
cache warm, file-backed resident memory before and after. Then the exact search over every vector, as ef
tuning runs it, in blocks of 64k and 16k rows: seconds and the high-water mark of resident memory above
what the process held before it, each in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from common import print_table  # noqa: F401  (puts the repo on sys.path)


def resident_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024


def scattered(d: Path, count: int, dim: int, rows: int) -> list[list]:
    from twotowers.index.files import LEVEL0_START, hnsw_layout
    from twotowers.index.store import VectorStore

    store = VectorStore.from_graph(d / "hnsw.bin", count, dim)
    _, per, offset_data, _ = hnsw_layout(d / "hnsw.bin")
    with open(d / "hnsw.bin", "rb") as f:  # the page cache warm, as after the build's checksums
        while f.read(1 << 24):
            pass
    pick = np.random.default_rng(0).choice(count, rows, replace=False)
    mapped = np.ndarray((count, dim), np.float32, np.memmap(d / "hnsw.bin", np.uint8, "r"), LEVEL0_START + offset_data,
                        (per, 4))  # [count, dim] a view of the records' vectors, kept mapped while measured
    out = []
    for name, read in (("pread (VectorStore)", lambda r: store[r]), ("memory map", lambda r: mapped[store._record[r]])):
        before = resident_mb("RssFile")
        read(pick)
        added = resident_mb("RssFile") - before
        times = []
        for seed in range(1, 21):  # the median of 20 other draws, timed
            other = np.random.default_rng(seed).choice(count, rows, replace=False)
            t0 = time.perf_counter()
            read(other)
            times.append(time.perf_counter() - t0)
        out.append([name, rows, f"{np.median(times) / rows * 1e6:.1f}", f"{added:,.0f}"])
    return out


def exact(d: Path, count: int, dim: int, block: int) -> dict:
    import resource

    from twotowers.index.store import VectorStore
    from twotowers.topk import exact_top_k_blocks

    store = VectorStore.from_graph(d / "hnsw.bin", count, dim)
    q = np.random.default_rng(0).standard_normal((200, dim)).astype(np.float32)
    base = resident_mb("VmRSS")  # now, against the process's high-water mark after the search
    t0 = time.perf_counter()
    exact_top_k_blocks(q, store.blocks(rows=block), 11)
    return {"s": time.perf_counter() - t0, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", required=True)
    ap.add_argument("--rows", type=int, default=200)
    ap.add_argument("--exact-block", type=int, help=argparse.SUPPRESS)  # one exact search, in this process
    args = ap.parse_args()
    d = Path(args.index)
    meta = json.loads((d / "index.json").read_text())
    count, dim = meta["count"], meta["dim"]
    if args.exact_block:
        print(json.dumps(exact(d, count, dim, args.exact_block)))
        return
    rows = []
    for block in (1 << 16, 1 << 14):  # first: a child starts from this process's high-water mark of resident memory
        r = json.loads(subprocess.run([sys.executable, __file__, "--index", str(d), "--exact-block", str(block)],
                                      capture_output=True, text=True, check=True).stdout)
        rows.append([f"{block:,}", f"{r['s']:.2f}", f"{r['peak_mb']:,.0f}"])
    print(f"{count:,} x {dim}-d, hnsw.bin {(d / 'hnsw.bin').stat().st_size / 2**20:,.0f} MiB\n")
    print_table(["read", "rows", "us a row (median of 20 draws)", "file-backed resident MB added (first draw)"], scattered(d, count, dim, args.rows))
    print()
    print_table(["exact search block (rows)", "s for 200 queries", "peak resident MB added"], rows)

if __name__ == "__main__":
    main()
