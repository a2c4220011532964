"""The whole-collection index at scale: build a synthetic collection with the real command line, measure it
as the app serves it, and say what 8.8M MS MARCO passages need at each dim and which Space holds them.

    python bench/full_index.py --passages 4000000 --dims 256,128 --data /work/bench-data   # ~1 h a dim on 2 cores
    python bench/full_index.py --table /work/bench-data/full-index.json                    # the 8.8M table again

Passages: the dev600 collection's 11,809 real ones, then new ones spliced from the first half of one
real passage's words and the second half of another's (real vocabulary and lengths), written to a
TSV under --data (never into the repository). Model: the mean tower, untrained (seed 0), projected to
each dim. Build: `python -m twotowers.index build` in a child process, all cores, BM25 included, its
wall time and peak RSS (the child's own, from wait4). Then, in a fresh process: the load, with every
checksum verified and without; resident memory before and after it against `twotowers.index.memory`'s
estimate; the 600 dev600 queries (the query tower's vectors) one at a time through `index.search` and
raw `hnswlib.knn_query` on the very same graph, interleaved; recall@10 against exact search over the
graph's own vectors; one text query end to end. Writes JSON and prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from build_memory import phase_table, sampled_build
from common import DEV_COLLECTION, MSMARCO, interleaved_times, print_table, read_passages

MSMARCO_PASSAGES = 8_841_823  # collection.tsv of MS MARCO passage v1
# Pyserini's prebuilt Lucene index of it (castorini/pyserini, pyserini/prebuilt_index_info.py, msmarco-v1-passage):
# 352,316,036 terms after stopwords, 2,660,824 distinct (Porter-stemmed; ours is Snowball: close).
MSMARCO_TERMS, MSMARCO_VOCAB = 352_316_036, 2_660_824
MSMARCO_TEXT_BYTES = 3_000_000_000  # "3 GB of text" (collection.tsv), ids included
# Hugging Face Space hardware, memory (https://huggingface.co/docs/hub/spaces-gpus, "Hardware Specs", 2026-12-02);
# the CPU tiers, then the smallest GPU tier of each size of memory above them.
SPACES = [("cpu-basic (free)", 16e9), ("cpu-upgrade", 32e9), ("l40sx1", 62e9), ("a100-large", 142e9)]
QUERIES = MSMARCO / "dev-small" / "queries.dev600.tsv"


def write_collection(path: Path, n: int, seed: int = 0) -> None:
    """n passages: the real ones, then splices of two real ones, streamed to `path` (pid<TAB>text)."""
    if path.is_file():
        return
    _, texts = read_passages()
    words = [t.split() for t in texts]
    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".part")
    with open(tmp, "w", encoding="utf-8") as f:
        for i, t in enumerate(texts[:n]):
            f.write(f"d{i}\t{t}\n")
        for start in range(len(texts[:n]), n, 100_000):
            m = min(100_000, n - start)
            pairs = zip(rng.integers(0, len(texts), m), rng.integers(0, len(texts), m))
            f.write("".join(f"s{start + j}\t{' '.join(words[a][: len(words[a]) // 2] + words[b][len(words[b]) // 2 :])}\n"
                            for j, (a, b) in enumerate(pairs)))
    tmp.rename(path)


def model_dir(data: Path, dim: int) -> Path:
    d = data / f"mean-{dim}"
    if not (d / "model.safetensors").is_file():
        import torch

        from twotowers import TwoTowers

        torch.manual_seed(0)
        TwoTowers(tower="mean", projection_dim=dim).save_pretrained(d)
    return d


def build(collection: Path, model: Path, out: Path, log: Path) -> dict:
    """`python -m twotowers.index build` in a child -> wall seconds, the child's peak RSS (wait4) and its
    resident memory by phase (`build_memory.sampled_build`); its output goes to `log`."""
    args = ["--model", str(model), "--collection", str(collection), "--out", str(out), "--overwrite"]
    t0 = time.perf_counter()
    with open(log, "w") as err:
        status, peak, phases = sampled_build(args, err)
    seconds = time.perf_counter() - t0
    if status:
        sys.exit(f"the build failed (status {status}): see {log}")
    return {"command": "-m twotowers.index build " + " ".join(args), "build_s": seconds, "build_peak_rss": peak,
            "build_phases": phases}


def rss() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def serve(index_dir: Path, model: Path, queries: int, k: int) -> dict:
    """What serving the index costs: load, memory, latency beside raw hnswlib, recall. Run in a fresh process."""
    import gradio  # noqa: F401 - the app's baseline memory includes it

    from twotowers import PassageIndex, TwoTowers
    from twotowers.index.memory import serving_bytes
    from twotowers.topk import exact_top_k_blocks

    m = TwoTowers.from_pretrained(str(model))
    qtexts = [line.rstrip("\n").split("\t", 1)[1] for line in open(QUERIES, encoding="utf-8")][:queries]
    q = m.encode_queries(qtexts)
    m.encode_queries(qtexts[:1])  # the mean tower's one-query table, built once
    before = rss()
    t0 = time.perf_counter()
    index = PassageIndex.load(index_dir, m)  # what the app does: every checksum verified (page cache warm)
    load_s = time.perf_counter() - t0
    after = rss()  # resident once loaded, before any search touches the memory-mapped files
    t0 = time.perf_counter()
    PassageIndex.load(index_dir, m, verify=False)  # a second copy, timed, then dropped
    load_unverified_s = time.perf_counter() - t0
    meta = json.loads((index_dir / "index.json").read_text())
    estimate, parts = serving_bytes(meta)

    exact, _ = exact_top_k_blocks(q, index._vectors.blocks(), k)  # ground truth: the graph file, read through
    hits = index.search(q, k=k)
    rows = [index.ids.get(e) for e in exact]
    recall = float(np.mean([len({h.id for h in row} & set(r)) / k for row, r in zip(hits, rows)]))
    hnsw = index.hnsw
    methods = {"index": lambda i: index.search(q[i], k=k), "raw": lambda i: hnsw.knn_query(q[i], k=k, num_threads=1),
               "text query": lambda i: [h.text for h in index.search([qtexts[int(i[0])]], k=k, mode="dense")[0]]}
    times = interleaved_times(methods, np.arange(len(q)), passes=2 * len(methods))
    hybrid = []
    for text in qtexts[:100]:
        t0 = time.perf_counter()
        index.search([text], k=k, mode="hybrid")
        hybrid.append(time.perf_counter() - t0)
    ms = lambda t: [float(np.percentile(np.array(t) * 1e3, 50)), float(np.percentile(np.array(t) * 1e3, 99))]  # noqa: E731
    return {"ef": index.ef, "recall": recall, "search_ms": ms(times["index"]), "raw_ms": ms(times["raw"]),
            "text_query_ms": ms(times["text query"]), "hybrid_text_query_ms": ms(hybrid), "load_s": load_s,
            "load_unverified_s": load_unverified_s, "rss_before": before, "rss_after": after,
            "estimate": estimate, "estimate_parts": parts}


def measure(n: int, dim: int, args) -> dict:
    data = Path(args.data)
    collection = data / f"synthetic-{n}.tsv"
    write_collection(collection, n)
    model = model_dir(data, dim)
    out = data / f"index-{n}-{dim}"
    r = {"n": n, "dim": dim, **build(collection, model, out, data / f"build-{n}-{dim}.log")}
    meta = json.loads((out / "index.json").read_text())
    r["files"] = {name: rec["bytes"] for name, rec in meta["files"].items()}
    r["tuning"] = meta["ef_tuning"]
    r["build_seconds_inside"] = meta["build_seconds"]
    child = subprocess.run([sys.executable, __file__, "--serve", str(out), "--model", str(model), "--queries",
                            str(args.queries)], capture_output=True, text=True)
    if child.returncode:
        sys.exit(child.stderr[-3000:])
    r.update(json.loads(child.stdout.strip().splitlines()[-1]))
    return r


def real_pairs_per_term() -> float:
    """(passage, term) pairs per term kept by BM25's analyzer on the real dev600 passages."""
    from twotowers.index.keyword import Analyzer, analyze_chunk

    _, texts = read_passages()
    _, lengths, per_doc, _, _ = analyze_chunk(texts, Analyzer("english"), {}, "")
    return float(per_doc.sum() / lengths.sum())


def gb(x: float) -> str:
    return f"{x / 1e9:.1f} GB"


def tables(results: list[dict]) -> None:
    print("\nMeasured (the mean tower, M=32, ef_construction=200; ef tuned by the build for recall@10 >= 0.99):\n")
    print_table(["passages", "dim", "build", "build peak RSS", "index on disk (graph / texts / BM25)", "ef",
                 "recall@10 (600 dev600 queries)", "search p50 / p99 ms", "raw hnswlib p50 / p99 ms", "search / raw p50",
                 "text query p50 ms", "hybrid text query p50 ms", "load s verified (not)", "RSS after load (estimate)"],
                [[f"{r['n']:,}", r["dim"], f"{r['build_s'] / 60:.0f} min", gb(r["build_peak_rss"]),
                  f"{gb(sum(r['files'].values()))} ({gb(r['files']['hnsw.bin'])} / "
                  f"{gb(sum(v for k, v in r['files'].items() if k.startswith(('ids', 'passages'))))} / "
                  f"{gb(sum(v for k, v in r['files'].items() if k.startswith('keyword')))})",
                  r["ef"], f"{r['recall']:.4f}", "{:.3f} / {:.3f}".format(*r["search_ms"]),
                  "{:.3f} / {:.3f}".format(*r["raw_ms"]), f"{r['search_ms'][0] / r['raw_ms'][0]:.2f}x",
                  f"{r['text_query_ms'][0]:.3f}", f"{r['hybrid_text_query_ms'][0]:.1f}",
                  f"{r['load_s']:.1f} ({r['load_unverified_s']:.1f})",
                  f"{gb(r['rss_after'])} ({gb(r['rss_before'] + r['estimate'])})"] for r in results])
    for r in results:
        if "build_phases" in r:  # runs before 2026-12-02's second session sampled only the peak
            print(f"\nThe build's resident memory by phase, {r['n']:,} x {r['dim']}-d (hnsw.bin {gb(r['files']['hnsw.bin'])}; "
                  f"peak {gb(r['build_peak_rss'])}):\n")
            phase_table(r["build_phases"])
    extrapolate(results)


def extrapolate(results: list[dict]) -> None:
    """8.8M passages x {384, 256, 128}: the per-passage costs measured above, scaled."""
    from twotowers.index.build import graph_bytes
    from twotowers.index.memory import serving_bytes

    r = results[0]
    n = r["n"]
    graph_check = {x["dim"]: x["files"]["hnsw.bin"] / graph_bytes(x["n"], x["dim"], 32) for x in results}
    text_per = sum(v for k, v in r["files"].items() if k.startswith(("ids", "passages"))) / n
    kw = r["files"]
    pairs = kw["keyword_pair_terms.npy"] / 4 / n  # (term, tf) pairs a passage, synthetic: splices repeat fewer words
    real = real_pairs_per_term()
    base = max(x["rss_before"] for x in results)  # python + torch + the model + gradio, before the index
    ratio = max((x["rss_after"] - x["rss_before"]) / x["estimate"] for x in results)  # each run against its own
    rows = []
    for dim in (384, 256, 128):
        g = graph_bytes(MSMARCO_PASSAGES, dim, 32)
        meta = {"count": MSMARCO_PASSAGES, "files": {"hnsw.bin": {"bytes": g}},
                "keyword": {"vocab_size": MSMARCO_VOCAB}}
        need, parts = serving_bytes(meta)
        resident = base + need
        texts = MSMARCO_TEXT_BYTES + 16 * MSMARCO_PASSAGES
        bm25 = MSMARCO_TERMS * real * 16 + MSMARCO_PASSAGES * 12  # 4 arrays of 4 bytes a pair; offsets + lengths
        fits = next((name for name, mem in SPACES if resident <= 0.9 * mem), "none listed")
        rows.append([f"{MSMARCO_PASSAGES:,}", dim, gb(g), gb(g + texts + bm25), gb(parts["graph"]),
                     gb(parts["BM25 vocabulary"]), gb(resident), fits])
    print(f"\n8.8M MS MARCO passages (graph bytes by hnswlib's layout, within {min(graph_check.values()):.3f}-"
          f"{max(graph_check.values()):.3f}x of the files measured; texts 3 GB; BM25 {real:.3f} (term, tf) "
          f"pairs a term as on the real dev600 passages ({pairs:.1f} a synthetic passage) times MS MARCO's 352M terms; "
          f"vocabulary 2,660,824 terms; process baseline "
          f"{gb(base)} measured; resident memory after load was {ratio:.2f}x the estimate at {n:,}):\n")
    print_table(["passages", "dim", "hnsw.bin", "index on disk", "graph in memory", "BM25 vocabulary in memory",
                 "resident to serve (+ baseline)", "smallest Space that holds it (<= 90% of its memory)"], rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--passages", type=int, default=4_000_000)
    ap.add_argument("--dims", default="256,128")
    ap.add_argument("--data", default="/work/bench-data", help="where the collection, models and indexes go (GBs)")
    ap.add_argument("--queries", type=int, default=600)
    ap.add_argument("--keep", action="store_true", help="keep each index (else deleted once measured)")
    ap.add_argument("--table", help="print the tables from this JSON (a previous run's) and stop")
    ap.add_argument("--serve", help=argparse.SUPPRESS)  # measure serving this index dir, in this process
    ap.add_argument("--model", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        print(json.dumps(serve(Path(args.serve), Path(args.model), args.queries, 10)))
        return
    if args.table:
        tables(json.loads(Path(args.table).read_text())["results"])
        return
    if not DEV_COLLECTION.is_file():
        sys.exit(f"{DEV_COLLECTION} not found: set TWOTOWERS_MSMARCO_DIR to the shared MS MARCO data")
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    results = []
    for dim in map(int, args.dims.split(",")):
        r = measure(args.passages, dim, args)
        results.append(r)
        print(json.dumps(r), file=sys.stderr, flush=True)
        if not args.keep:
            import shutil

            shutil.rmtree(data / f"index-{args.passages}-{dim}")
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.machine())
    report = {"machine": f"{cpu}, {os.cpu_count()} CPUs", "hnswlib": "portable build (HNSWLIB_NO_NATIVE=1)",
              "date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv), "results": results}
    (data / "full-index.json").write_text(json.dumps(report, indent=1))
    tables(results)


if __name__ == "__main__":
    main()
