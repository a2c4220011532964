"""Passage-encoding throughput of each tower vs sentence-transformers' `encode` of all-MiniLM-L6-v2.

    python bench/encode.py [--n 2000] [--repeats 3]

Real passages from the shared dev600 collection; every figure is the median of `--repeats` runs,
each engine measured in the same process, interleaved, so machine noise hits them alike.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from common import print_table, read_passages  # noqa: E402
from twotowers import MINILM_ID, TwoTowers, resolve_base_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    _, texts = read_passages(args.n)

    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(resolve_base_model(MINILM_ID)), device="cpu")
    engines = {f"twotowers {t}": TwoTowers(tower=t, projection_dim=None if t == "transformer" else 256)
               for t in ("mean", "gru", "lstm", "transformer")}
    runs = {name: [] for name in [*engines, "sentence-transformers encode"]}
    for _ in range(args.repeats):
        for name, model in engines.items():
            start = time.perf_counter()
            model.encode_passages(texts, batch_size=args.batch_size)
            runs[name].append(len(texts) / (time.perf_counter() - start))
        start = time.perf_counter()
        st.encode(texts, batch_size=32, normalize_embeddings=True)
        runs["sentence-transformers encode"].append(len(texts) / (time.perf_counter() - start))

    med = {k: statistics.median(v) for k, v in runs.items()}
    ref, tt = med["sentence-transformers encode"], med["twotowers transformer"]
    print(f"{len(texts)} passages, {args.repeats} repeats, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print_table(["engine", "passages/s (median)", "min", "max", "vs sentence-transformers", "vs transformer tower"],
                [[k, med[k], min(v), max(v), f"{med[k] / ref:.2f}x", f"{med[k] / tt:.1f}x"] for k, v in runs.items()])


if __name__ == "__main__":
    main()
