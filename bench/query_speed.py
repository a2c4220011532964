"""Query-side cost of each model, measured in one run: queries/s in batches, and one query at a time.

    python bench/query_speed.py runs/bge/mean-q runs/bge/tf-q --base BAAI/bge-small-en-v1.5

Zero-shot all-MiniLM-L6-v2 is always measured (the reference), and each `--base` as a zero-shot model.
Queries: the 600 dev600 queries. Batched: all 600 in batches of 256, the median of 3 passes. One at a
time (how the app and the API get them): every model takes turns query by query (interleaved, so a
load drift on this shared machine hits all alike), p50 / p99 over `--passes` passes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from common import MSMARCO, interleaved_times, print_table

import torch  # noqa: E402

from twotowers import TwoTowers  # noqa: E402
from twotowers.collection import read_queries  # noqa: E402


def queries_per_s(model, texts: list[str], repeats: int = 3) -> float:
    """Median throughput of encoding `texts` in batches of 256."""
    model.encode_queries(texts[:32])  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.encode_queries(texts, batch_size=256)
        times.append(time.perf_counter() - t0)
    return len(texts) / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", help="saved TwoTowers dirs")
    ap.add_argument("--base", nargs="*", default=[], help="base models measured zero-shot too (Hub ids or dirs)")
    ap.add_argument("--passes", type=int, default=3)
    args = ap.parse_args()
    texts = list(read_queries(MSMARCO / "dev-small" / "queries.dev600.tsv").values())
    models = {"zero-shot all-MiniLM-L6-v2": TwoTowers.zero_shot()}
    models.update({f"zero-shot {b}": TwoTowers.zero_shot(b) for b in args.base})
    models.update({m: TwoTowers.from_pretrained(m) for m in args.models})
    for model in models.values():
        model.encode_queries(texts[:1])  # a mean tower builds its table on the first single query
    single = interleaved_times({name: (lambda m: lambda i: m.encode_queries([texts[int(i[0])]]))(model)
                                for name, model in models.items()}, np.arange(len(texts)), passes=args.passes)
    rows = []
    reference = statistics.median(single["zero-shot all-MiniLM-L6-v2"])
    for name, model in models.items():
        p50, p99 = np.percentile(np.array(single[name]) * 1e3, [50, 99])
        rows.append([name, model.tower_name, f"{queries_per_s(model, texts):,.0f}", f"{p50:.3f} / {p99:.3f}",
                     f"{reference / statistics.median(single[name]):.1f}x"])
    print(f"{len(texts)} dev600 queries; one at a time: {args.passes} interleaved passes; "
          f"{torch.get_num_threads()} threads\n", file=sys.stderr)
    print_table(["model", "towers", "queries/s (batches of 256)", "one query p50 / p99 ms",
                 "one query vs MiniLM (p50)"], rows)


if __name__ == "__main__":
    main()
