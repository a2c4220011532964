"""What verifying a saved index's files costs: xxh3-128 of every file, one after another vs in parallel
threads (what `PassageIndex.load` does), rounds alternating, page cache warm.

    python bench/checksums.py --index DIR                  # the files of a saved index
    python bench/checksums.py --sizes-mb 1812,1536,300,64  # synthetic files of the sizes of a 1M x 384 index

Prints the median seconds of each way over `--rounds` and the GB/s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from common import print_table  # (common puts the repo on sys.path)

from twotowers.index.files import checksum, file_checksums  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", help="a saved index directory (its files are hashed)")
    ap.add_argument("--sizes-mb", default="1812,1536,300,64", help="synthetic file sizes when no --index")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.index:
            paths = sorted(p for p in Path(args.index).iterdir() if p.is_file())
        else:
            paths = []
            for i, mb in enumerate(int(x) for x in args.sizes_mb.split(",")):
                paths.append(Path(tmp) / f"file{i}.bin")
                with open(paths[-1], "wb") as f:
                    for _ in range(mb):
                        f.write(os.urandom(1 << 20))
        total = sum(p.stat().st_size for p in paths)
        ways = {"one after another": lambda: [checksum(p) for p in paths], "parallel threads": lambda: file_checksums(paths)}
        assert ways["one after another"]() == ways["parallel threads"]()  # also warms the page cache
        times = {w: [] for w in ways}
        for _ in range(args.rounds):
            for w, fn in ways.items():
                t0 = time.perf_counter()
                fn()
                times[w].append(time.perf_counter() - t0)
    print(f"{len(paths)} files, {total / 1e9:.2f} GB, {os.cpu_count()} CPUs, median of {args.rounds} rounds")
    print_table(["way", "seconds (median)", "GB/s"],
                [[w, f"{statistics.median(t):.3f}", f"{total / 1e9 / statistics.median(t):.1f}"] for w, t in times.items()])


if __name__ == "__main__":
    main()
