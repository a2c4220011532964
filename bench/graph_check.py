"""What `--no-verify` still costs: the graph check (every link and label of hnsw.bin in range) beside the
xxh3 checksum of the same file, on a synthetic hnswlib graph.

    python bench/graph_check.py --n 200000 --dim 64 --M 16 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import hnswlib
import numpy as np

import common  # noqa: F401 - puts the repository on sys.path

from twotowers.index.files import check_hnsw_graph, checksum


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--M", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    x = np.random.default_rng(0).standard_normal((args.n, args.dim)).astype(np.float32)
    index = hnswlib.Index(space="ip", dim=args.dim)
    index.init_index(args.n, M=args.M, ef_construction=40)
    index.add_items(x, np.arange(args.n))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hnsw.bin"
        index.save_index(str(path))
        check_hnsw_graph(path, count=args.n, dim=args.dim, M=args.M)  # warm the page cache
        graph, digest = [], []
        for _ in range(args.rounds):  # alternating, so a busy machine slows both alike
            t = time.perf_counter()
            check_hnsw_graph(path, count=args.n, dim=args.dim, M=args.M)
            graph.append(time.perf_counter() - t)
            t = time.perf_counter()
            checksum(path)
            digest.append(time.perf_counter() - t)
        size = path.stat().st_size
    print(f"{args.n:,} x {args.dim}-d, M={args.M}, hnsw.bin {size / 1e6:.1f} MB: graph check median "
          f"{statistics.median(graph):.3f} s, xxh3 median {statistics.median(digest):.3f} s")


if __name__ == "__main__":
    main()
