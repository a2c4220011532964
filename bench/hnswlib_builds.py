"""hnswlib build flags vs query speed: the same saved index searched by differently compiled hnswlibs.

    python bench/hnswlib_builds.py --index /tmp/tt-keep/mean-infonce-1000000-256 \
        --queries /tmp/tt-bench/mean-infonce-256-queries.npy --rounds 8

Builds hnswlib 0.8.0 from source into --build-dir (once) three ways: `native` (hnswlib's default,
`-march=native`), `portable` (`HNSWLIB_NO_NATIVE=1`: baseline x86-64, SSE2 only) and `x86-64-v3`
(`HNSWLIB_NO_NATIVE=1` plus `-march=x86-64-v3` in CFLAGS/CXXFLAGS: AVX2 and FMA, which any x86-64
CPU since 2013-2015 has). Each round runs one fresh process per build, in turn, on the same graph at
the index's ef; each process times single-query `knn_query` and the index's `search` interleaved
(300 queries x 4 passes). Load drifts between processes, so the table gives medians over rounds and
each build's raw p50 relative to the native build's in the same round. Needs pip and the network
(PyPI) for the builds. `--index`: a saved PassageIndex (e.g. from `bench/index.py --keep DIR`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from common import print_table

BUILDS = {"native": {}, "portable": {"HNSWLIB_NO_NATIVE": "1"},
          "x86-64-v3": {"HNSWLIB_NO_NATIVE": "1", "CFLAGS": "-march=x86-64-v3", "CXXFLAGS": "-march=x86-64-v3"}}

CHILD = r"""
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[3])  # bench/: common.py, which also puts the repo root (twotowers) on sys.path
import hnswlib
from common import interleaved_times
from twotowers import PassageIndex
index = PassageIndex.load(sys.argv[1])
q = np.load(sys.argv[2])[:300]
h, k = index.hnsw, 10
methods = {"search": lambda x: index.search(x, k=k), "raw": lambda x: h.knn_query(x, k=k, num_threads=1)}
times = interleaved_times(methods, q, passes=4)
print(json.dumps({"so": hnswlib.__file__, "ef": index.ef, **{m: float(np.median(v)) * 1e3 for m, v in times.items()}}))
"""


def build(name: str, target: Path) -> None:
    """pip-install hnswlib 0.8.0 from source into `target` with the build's flags."""
    if any(target.glob("hnswlib*.so")):
        return
    env = {**os.environ, **BUILDS[name]}
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-cache-dir", "--no-deps", "--no-binary", "hnswlib",
           "--target", str(target), "hnswlib==0.8.0"]
    print(f"building {name}: {' '.join(f'{k}={v}' for k, v in BUILDS[name].items())} {' '.join(cmd[2:])}",
          file=sys.stderr, flush=True)
    subprocess.run(cmd, env=env, check=True)


def avx_counts(so: Path) -> str:
    """AVX instructions in the compiled module: "ymm / zmm" (lines of `objdump -d` naming a 256- / 512-bit register)."""
    try:
        lines = subprocess.run(["objdump", "-d", str(so)], capture_output=True, text=True, check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "?"
    return f"{sum('ymm' in x for x in lines)} / {sum('zmm' in x for x in lines)}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", required=True, help="a saved PassageIndex directory")
    ap.add_argument("--queries", required=True, help="[n, dim] float32 query vectors (.npy)")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--build-dir", default="/tmp/twotowers-hnswlib-builds")
    args = ap.parse_args()
    dirs = {name: Path(args.build_dir) / name for name in BUILDS}
    for name, d in dirs.items():
        build(name, d)
    runs = {name: [] for name in BUILDS}
    for r in range(args.rounds):
        for name, d in dirs.items():
            out = subprocess.run([sys.executable, "-c", CHILD, args.index, args.queries, str(Path(__file__).resolve().parent)],
                                 env={**os.environ, "PYTHONPATH": str(d)}, capture_output=True, text=True, check=True)
            res = json.loads(out.stdout.strip().splitlines()[-1])
            if not res["so"].startswith(str(d)):
                raise SystemExit(f"{name}: loaded {res['so']}, not the build in {d}")
            runs[name].append(res)
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{n} {runs[n][-1]['raw']:.3f}" for n in runs),
              file=sys.stderr, flush=True)
    native = np.array([x["raw"] for x in runs["native"]])
    rows = []
    for name, rs in runs.items():
        raw, search = np.array([x["raw"] for x in rs]), np.array([x["search"] for x in rs])
        rows.append([name, " ".join(f"{k}={v}" for k, v in BUILDS[name].items()) or "(hnswlib's default)",
                     avx_counts(next(dirs[name].glob("hnswlib*.so"))), f"{np.median(raw):.3f}",
                     f"{np.median(raw / native):.2f}x", f"{np.median(search):.3f}", f"{np.median(search / raw):.2f}x"])
    print(f"\n{args.index}, ef={runs['native'][0]['ef']}, {args.rounds} rounds, {os.cpu_count()} CPUs\n")
    print_table(["build", "flags", "AVX instructions (ymm / zmm)", "raw p50 ms (median)", "raw / native (same round)",
                 "search p50 ms", "search / raw"], rows)


if __name__ == "__main__":
    main()
