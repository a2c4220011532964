"""Where PassageIndex.search spends its time beyond hnswlib's call: reading ids, building hits.

    python bench/search_overhead.py --index /tmp/tt-keep/mean-infonce-100000-256 \
        --queries /tmp/twotowers-bench-index/mean-infonce-256-queries.npy

For each query: hnswlib's `knn_query` (k=10, one thread, the index's ef), then each part of the
wrapper's work on its labels, timed twice: "cold" right after hnswlib's walk (as in a search) and
"warm" straight after that (the same call again). Parts: the whole hit list (`dense_hits`: ids +
SearchHits) and the ids alone (`ids.get_unchecked`); building the SearchHits is the difference. Then
`search` vs raw `knn_query` interleaved query by query (common.interleaved_times). Medians in µs.
`--index`: a saved PassageIndex (e.g. from `bench/index.py --keep DIR`); `--queries`: `[n, dim]`
float32 query vectors (.npy; bench/index.py caches the dev600 queries' vectors under --cache).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from common import interleaved_times, print_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from twotowers import PassageIndex  # noqa: E402
from twotowers.index.hits import dense_hits  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", required=True, help="a saved PassageIndex directory")
    ap.add_argument("--queries", required=True, help="[n, dim] float32 query vectors (.npy)")
    ap.add_argument("--n", type=int, default=300, help="queries used")
    ap.add_argument("--passes", type=int, default=4)
    ap.add_argument("-k", type=int, default=10)
    args = ap.parse_args()

    index = PassageIndex.load(args.index)
    q = np.ascontiguousarray(np.load(args.queries)[: args.n], dtype=np.float32)
    hnsw, k = index.hnsw, args.k

    parts = {"ids + hits (dense_hits)": lambda r, d: dense_hits(index.ids, index.passages, r, d),
             "ids only": lambda r, d: index.ids.get_unchecked(r)}
    rows_out = []
    for name, fn in parts.items():
        cold, warm = [], []
        for _ in range(args.passes):
            for i in range(len(q)):
                labels, dist = hnsw.knn_query(q[i : i + 1], k=k, num_threads=1)
                r, d = labels.tolist()[0], dist.tolist()[0]
                t0 = time.perf_counter(); fn(r, d); t1 = time.perf_counter(); fn(r, d); t2 = time.perf_counter()
                cold.append(t1 - t0); warm.append(t2 - t1)
        rows_out.append([name, float(np.median(cold) * 1e6), float(np.median(warm) * 1e6)])
    rows_out.append(["hits (the difference)", rows_out[0][1] - rows_out[1][1], rows_out[0][2] - rows_out[1][2]])

    times = interleaved_times({"search": lambda x: index.search(x, k=k),
                               "raw": lambda x: hnsw.knn_query(x, k=k, num_threads=1)}, q, passes=args.passes)
    s, r = (float(np.median(times[m]) * 1e6) for m in ("search", "raw"))
    print(f"\n{args.index}: {len(index):,} passages, ef={index.ef}, k={k}, {len(q)} queries x {args.passes} passes\n")
    print_table(["part", "cold µs (after hnswlib)", "warm µs (repeated)"], rows_out)
    print()
    print_table(["search p50 µs", "raw hnswlib p50 µs", "difference µs", "search / raw"],
                [[s, r, s - r, f"{s / r:.3f}x"]])


if __name__ == "__main__":
    main()
