"""One query at a time, as the app and the API get them: query-encoding latency now vs the code of
2026-11-30 (which switched every module to eval mode and back around each call, and ran the mean
tower's projection as a matrix product), interleaved query by query in one process.

    python bench/single_query.py runs/towers/mean-q      # a small query tower; zero-shot MiniLM is always timed too

Queries: the 600 dev600 queries. Prints p50 / p99 in ms and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from common import MSMARCO, interleaved_times, print_table

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from twotowers import TwoTowers  # noqa: E402
from twotowers.collection import read_queries  # noqa: E402


def before(model, text: str) -> np.ndarray:
    """The single-query path as it was: flip every module to eval, a padded batch of one, flip back."""
    was = model.training
    model.eval()
    try:
        with torch.inference_mode():
            ids, mask = model.tokenizer.pad(model.tokenize_queries([text]))
            return F.normalize(model.query_tower(ids, mask).float(), dim=-1).numpy()
    finally:
        model.train(was)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", help="saved TwoTowers dirs (zero-shot MiniLM is added)")
    ap.add_argument("--passes", type=int, default=4)
    args = ap.parse_args()
    texts = list(read_queries(MSMARCO / "dev-small" / "queries.dev600.tsv").values())
    rows = []
    for name, model in [("zero-shot MiniLM (transformer)", TwoTowers.zero_shot()),
                        *((m, TwoTowers.from_pretrained(m)) for m in args.models)]:
        model.encode_queries(texts[:1])  # the mean tower's table is built on the first single query
        worst = max(float(np.abs(model.encode_queries([t]) - before(model, t)).max()) for t in texts[:100])
        times = interleaved_times({"now": lambda i: model.encode_queries([texts[int(i[0])]]),
                                   "before": lambda i: before(model, texts[int(i[0])])},
                                  np.arange(len(texts)), passes=args.passes)
        now, old = (np.percentile(np.array(times[k]) * 1e3, [50, 99]) for k in ("now", "before"))
        rows.append([name, model.tower_name, f"{now[0]:.3f} / {now[1]:.3f}", f"{old[0]:.3f} / {old[1]:.3f}",
                     f"{old[0] / now[0]:.1f}x", f"{worst:.1e}"])
    print(f"{len(texts)} dev600 queries x {args.passes} passes, one at a time, {torch.get_num_threads()} threads\n",
          file=sys.stderr)
    print_table(["model", "query tower", "now p50 / p99 ms", "before p50 / p99 ms", "before / now (p50)",
                 "max |now - before|"], rows)


if __name__ == "__main__":
    main()
