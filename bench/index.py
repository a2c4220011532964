"""Index benchmark: build, size, memory, latency, throughput and recall of PassageIndex vs raw hnswlib and exact search.

    python bench/index.py                                  # 100k and 1M vectors, dims 256 and 384
    python bench/index.py --sizes 100000 --dims 256        # one configuration
    python bench/index.py --sizes 1000000 --dims 256 --hybrid   # + text latency dense vs hybrid (BM25 built too)

Passages are the dev600 collection's 11,809 real ones and, to reach each size, new ones spliced from
the first half of one real passage and the second half of another (`--grow mix`, the default), all
encoded by the mean tower (untrained unless --model; vectors cached under --cache); `--grow noise`
instead repeats the real vectors with Gaussian noise (--noise), re-normalised: at 1M that makes
near-random points, far harder for HNSW than any real corpus. Queries are the 600 dev600 queries
encoded by the same model's query tower; `--tune held-out` chooses ef on the ones not timed. Each configuration runs in its own
process, so "peak RSS" is that process's high-water mark (model + vectors + index). In the same run:
exact numpy search (`Q @ V.T`, top-k by argpartition) and raw `hnswlib.Index.knn_query` on the very
graph the PassageIndex wraps, at the same ef. The index is timed as a user gets it: saved, then loaded
back, with its files' checksums verified (the load is timed with and without that). "search" returns
ids and scores, each hit's text read on first use; "+ texts" also reads the k texts; "text query" is
what the app does for one question: tokenize, encode with the model's query tower, search, build the
hits (and read their texts). Prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import DEV_COLLECTION, MSMARCO, interleaved_times, print_table, read_passages

from twotowers.topk import exact_top_k  # noqa: E402  (common puts the repo on sys.path)

QUERIES = MSMARCO / "dev-small" / "queries.dev600.tsv"


def load_model(dim: int, model_dir: str | None):
    import torch

    from twotowers import TwoTowers

    if model_dir:
        return TwoTowers.from_pretrained(model_dir)
    torch.manual_seed(0)
    return TwoTowers(tower="mean", projection_dim=dim)


def base_vectors(model, dim: int, cache: Path, tag: str) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """(passage vectors [11809, dim], query vectors [600, dim], passage texts, query texts), cached per model."""
    _, texts = read_passages()
    queries = [line.rstrip("\n").split("\t", 1)[1] for line in open(QUERIES, encoding="utf-8")]
    p_file, q_file = cache / f"{tag}-{dim}-passages.npy", cache / f"{tag}-{dim}-queries.npy"
    if not p_file.is_file():
        np.save(p_file, model.encode_passages(texts, batch_size=128))
        np.save(q_file, model.encode_queries(queries))
    return np.load(p_file), np.load(q_file), texts, queries


def grow(base: np.ndarray, n: int, noise: float, seed: int = 0) -> np.ndarray:
    """[n, dim]: base rows repeated, each copy after the first moved by Gaussian noise, unit norm."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, base.shape[1]), dtype=np.float32)
    for start in range(0, n, 100_000):
        rows = np.arange(start, min(start + 100_000, n))
        v = base[rows % len(base)].copy()
        copy = rows >= len(base)
        v[copy] += rng.standard_normal((int(copy.sum()), base.shape[1]), dtype=np.float32) * (noise / np.sqrt(base.shape[1]))
        out[rows] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def mixed_texts(texts: list[str], n: int, seed: int = 0) -> list[str]:
    """n passages: the real ones, then new ones made of the first half of one real passage's words and
    the second half of another's (random pairs): text a model really encodes, with real vocabulary."""
    rng = np.random.default_rng(seed)
    words = [t.split() for t in texts]
    out = list(texts[:n])
    m = n - len(out)
    for i, j in zip(rng.integers(0, len(texts), m), rng.integers(0, len(texts), m)):
        a, b = words[i], words[j]
        out.append(" ".join(a[: len(a) // 2] + b[len(b) // 2 :]))
    return out


def mixed_vectors(model, passages: list[str], path: Path, chunk: int = 100_000) -> np.ndarray:
    """The model's vectors of `passages` `[n, dim]`, encoded in chunks into a cached `.npy` (memory-mapped)."""
    if not path.is_file():
        tmp = path.with_suffix(".part.npy")
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(passages), model.dim))
        t0 = time.perf_counter()
        for start in range(0, len(passages), chunk):
            out[start : start + chunk] = model.encode_passages(passages[start : start + chunk], batch_size=256)
            print(f"encoded {min(start + chunk, len(passages)):,} / {len(passages):,} passages "
                  f"({time.perf_counter() - t0:.0f}s)", file=sys.stderr, flush=True)
        out.flush()
        del out
        tmp.rename(path)
    return np.load(path, mmap_mode="r")


def ef_cell(r: dict) -> str:
    """"160 (152 missed)": the chosen ef and the largest one tried that missed the target recall."""
    missed = (r.get("ef_tuning") or {}).get("ef_missed")
    return f"{r['ef']}" + (f" ({missed} missed)" if missed is not None and missed != r["ef"] else "")


def percentiles_ms(times: list[float]) -> tuple[float, float]:
    t = np.array(times) * 1e3
    return float(np.percentile(t, 50)), float(np.percentile(t, 99))


def run_one(n: int, dim: int, args) -> dict:
    """One configuration, in this process: returns a dict of measurements."""
    from twotowers import PassageIndex

    model = load_model(dim, args.model)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    tag = Path(args.model).name if args.model else "untrained"
    base, q_all, texts, qtexts = base_vectors(model, dim, cache, tag)
    q = q_all[: args.queries]
    # ef tuning: the index's own pseudo-queries (passage windows), or real queries that are never timed
    tune = q_all[args.queries :] if args.tune == "held-out" else None
    if tune is not None and not len(tune):
        raise SystemExit("--tune held-out needs --queries below 600 (the rest tune ef)")
    if args.grow == "mix":
        passages = mixed_texts(texts, n)
        vectors = np.ascontiguousarray(mixed_vectors(model, passages, cache / f"{tag}-{dim}-mix-{n}.npy"))
    else:
        vectors = grow(base, n, args.noise)
        passages = [texts[i % len(texts)] for i in range(n)]
    ids = [str(i) for i in range(n)]

    t0 = time.perf_counter()
    index = PassageIndex.build(model, ids, passages, vectors=vectors, M=args.M, ef_construction=args.ef_construction,
                               target_recall=args.target_recall, keyword=args.hybrid, chunk_size=50_000,
                               tune_queries=tune, tune_samples=len(tune) if tune is not None else 200)
    build_s = time.perf_counter() - t0
    saved = tempfile.TemporaryDirectory(dir=args.cache)
    where = Path(args.keep) / f"{tag}-{n}-{dim}" if args.keep else Path(saved.name)
    t0 = time.perf_counter()
    index.save(where)
    save_s = time.perf_counter() - t0
    sizes = {p.name: p.stat().st_size for p in where.iterdir()}
    # what a user searches: the saved index loaded back (memory-mapped vectors, ids and texts)
    del index
    t0 = time.perf_counter()
    PassageIndex.load(where, model, verify=False)  # warms the page cache: both loads below read from it
    t0 = time.perf_counter()
    PassageIndex.load(where, model, verify=False)
    load_unverified_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    index = PassageIndex.load(where, model)  # the default: every file's checksum verified
    load_s = time.perf_counter() - t0
    dense_bytes = sizes["hnsw.bin"]
    total_bytes = sum(sizes.values())
    hnsw, k = index.hnsw, args.k

    # recall@k of the index's search against exact search, at the chosen ef
    t0 = time.perf_counter()
    exact, _ = exact_top_k(q, vectors, k)
    exact_batch_s = time.perf_counter() - t0
    hits = index.search(q, k=k)
    recall = float(np.mean([len({int(h.id) for h in row} & set(e.tolist())) / k for row, e in zip(hits, exact)]))

    # single-query latency, the methods interleaved query by query (common.interleaved_times)
    def with_texts(x):  # search, then read every hit's text (texts are read on first use)
        hits = index.search(x, k=k, mode="dense")  # the dense path, beside raw hnswlib
        for row in hits:
            for h in row:
                h.text
        return hits

    def text_query(i):  # one question as the app gets it: tokenize, encode, search, hits with their texts
        return with_texts([qtexts[int(i[0])]])

    methods = {"index": lambda i: index.search(q[i], k=k), "raw": lambda i: hnsw.knn_query(q[i], k=k, num_threads=1),
               "texts": lambda i: with_texts(q[i]), "text query": text_query}
    model.encode_queries(qtexts[:1])  # the mean tower's projected table is built on its first single query
    times = interleaved_times(methods, np.arange(len(q)), passes=2 * len(methods))
    t_exact = []
    for i in range(min(args.exact_single, len(q))):
        t0 = time.perf_counter(); s = vectors @ q[i]; np.argpartition(-s, k)[:k]; t_exact.append(time.perf_counter() - t0)

    # batched throughput (all cores), median of 3
    def qps(fn):
        times = []
        for _ in range(3):
            t0 = time.perf_counter(); fn(); times.append(time.perf_counter() - t0)
        return len(q) / float(np.median(times))

    out = {"n": n, "dim": dim, "M": args.M, "ef_construction": args.ef_construction, "ef": index.ef,
           "ef_tuning": index.meta.get("ef_tuning"), "build_s": build_s, "save_s": save_s, "load_s": load_s,
           "hnsw_bytes": dense_bytes, "total_bytes": total_bytes, "bytes_per_vector": dense_bytes / n,
           "recall": recall, "index_p50_p99": percentiles_ms(times["index"]), "raw_p50_p99": percentiles_ms(times["raw"]),
           "texts_p50_p99": percentiles_ms(times["texts"]), "text_query_p50_p99": percentiles_ms(times["text query"]),
           "load_unverified_s": load_unverified_s,
           "exact_p50_p99": percentiles_ms(t_exact),
           "index_qps": qps(lambda: index.search(q, k=k)), "raw_qps": qps(lambda: hnsw.knn_query(q, k=k)),
           "exact_qps": len(q) / exact_batch_s}
    if args.hybrid:
        lat = {m: [] for m in ("dense", "hybrid", "keyword")}
        for text in qtexts[: args.queries]:
            for m in lat:
                t0 = time.perf_counter(); index.search([text], k=k, mode=m); lat[m].append(time.perf_counter() - t0)
        out["text_p50_p99"] = {m: percentiles_ms(v) for m, v in lat.items()}
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    saved.cleanup()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100000,1000000", help="comma-separated vector counts")
    ap.add_argument("--dims", default="256,384", help="comma-separated dims (mean tower projection)")
    ap.add_argument("--model", help="a trained TwoTowers dir instead of the untrained mean tower (its dim is used)")
    ap.add_argument("--M", type=int, default=32)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--target-recall", type=float, default=0.99)
    ap.add_argument("--grow", choices=("mix", "noise"), default="mix",
                    help="reach the size with new passages spliced from two real ones and encoded by the model "
                         "(mix), or with noisy copies of the real vectors (noise; texts repeated)")
    ap.add_argument("--noise", type=float, default=0.5, help="--grow noise: norm of the noise added to each copy")
    ap.add_argument("--queries", type=int, default=600, help="dev600 queries used (single-query timings)")
    ap.add_argument("--tune", choices=("windows", "held-out"), default="windows",
                    help="choose ef on the index's pseudo-queries (passage windows, the default of PassageIndex.build) "
                         "or on the dev600 queries beyond --queries, which are never timed or scored")
    ap.add_argument("--exact-single", type=int, default=100, help="queries timed one by one for exact search")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--hybrid", action="store_true", help="also build BM25 and time text queries: dense vs hybrid")
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "twotowers-bench-index"))
    ap.add_argument("--keep", help="keep each saved index under this dir (MODEL-N-DIM) instead of deleting it")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # n,dim: run one configuration in this process
    args = ap.parse_args()
    if not DEV_COLLECTION.is_file():
        sys.exit(f"{DEV_COLLECTION} not found: set TWOTOWERS_MSMARCO_DIR to the shared MS MARCO data")

    if args.one:
        n, dim = map(int, args.one.split(","))
        print(json.dumps(run_one(n, dim, args)))
        return

    results = []
    for dim in map(int, args.dims.split(",")):
        for n in map(int, args.sizes.split(",")):
            cmd = [sys.executable, __file__, *sys.argv[1:], "--one", f"{n},{dim}"]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"n={n} dim={dim} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            results.append(r)
            print(json.dumps(r), file=sys.stderr, flush=True)

    tuned_on = "pseudo-queries (passage windows)" if args.tune == "windows" else f"the {600 - args.queries} held-out dev600 queries"
    print(f"\nhnswlib M={args.M}, ef_construction={args.ef_construction}; ef chosen for recall@10 >= "
          f"{args.target_recall} on {tuned_on}; recall below is on the first {args.queries} dev600 queries; k={args.k}; "
          f"{os.cpu_count()} CPUs\n")
    print_table(
        ["vectors", "dim", "ef", "build s", "index MB", "bytes/vector", "peak RSS MB", "recall@10",
         "search p50/p99 ms", "raw hnswlib p50/p99 ms", "search/raw p50", "+ texts p50 ms", "(+ texts)/raw",
         "exact p50 ms",
         "search QPS", "raw QPS", "exact QPS"],
        [[f"{r['n']:,}", r["dim"], ef_cell(r), r["build_s"], r["total_bytes"] / 1e6, f"{r['bytes_per_vector']:,.0f}",
          r["peak_rss_mb"], f"{r['recall']:.4f}", "{:.3f} / {:.3f}".format(*r["index_p50_p99"]),
          "{:.3f} / {:.3f}".format(*r["raw_p50_p99"]), f"{r['index_p50_p99'][0] / r['raw_p50_p99'][0]:.2f}x",
          f"{r['texts_p50_p99'][0]:.3f}", f"{r['texts_p50_p99'][0] / r['raw_p50_p99'][0]:.2f}x",
          f"{r['exact_p50_p99'][0]:.2f}", r["index_qps"], r["raw_qps"], r["exact_qps"]] for r in results])
    print("\nOne text query (tokenize, encode with the query tower, search, hits with texts) vs raw hnswlib on "
          "the query's vector, single query, interleaved; and loading the saved index (page cache warm):\n")
    print_table(["vectors", "dim", "text query p50 / p99 ms", "raw hnswlib p50 ms", "text query - raw p50 ms",
                 "load s (verified)", "load s (--no-verify)", "verification s"],
                [[f"{r['n']:,}", r["dim"], "{:.3f} / {:.3f}".format(*r["text_query_p50_p99"]), f"{r['raw_p50_p99'][0]:.3f}",
                  f"{r['text_query_p50_p99'][0] - r['raw_p50_p99'][0]:+.3f}", f"{r['load_s']:.2f}",
                  f"{r['load_unverified_s']:.2f}", f"{r['load_s'] - r['load_unverified_s']:.2f}"] for r in results])
    hybrid = [r for r in results if "text_p50_p99" in r]
    if hybrid:
        print("\nText queries (query encoding included), single query, k=10:\n")
        print_table(["vectors", "dim", "dense p50/p99 ms", "keyword p50/p99 ms", "hybrid p50/p99 ms", "hybrid/dense p50"],
                    [[f"{r['n']:,}", r["dim"]] + ["{:.2f} / {:.2f}".format(*r["text_p50_p99"][m]) for m in ("dense", "keyword", "hybrid")]
                     + [f"{r['text_p50_p99']['hybrid'][0] / r['text_p50_p99']['dense'][0]:.2f}x"] for r in hybrid])


if __name__ == "__main__":
    main()
