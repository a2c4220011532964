"""Load on the running app: concurrent gradio_client users for a fixed time, beside the same searches
called in-process. Prints a markdown table (requests/s, p50/p99 latency); exits 1 if any request fails.

    python bench/app.py                       # starts `python app.py` (the default demo) on a free port
    python bench/app.py --users 1 4 8 --seconds 20
    python bench/app.py --url http://127.0.0.1:7860/   # an app that is already running (same engine!)

The in-process rows call `app.search` on the same engine (the default: zero-shot MiniLM over the demo
corpus, loaded from the cache the app built) with the same queries, k and mode, so the difference is
what the HTTP API, the queue and the client cost.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from common import ROOT, print_table

import app  # noqa: E402 - bench/common.py put the repo root on sys.path

QUERIES = [q["query"] for q in app.demo_queries()] + [
    "what is the tallest mountain", "how do vaccines work", "when did the berlin wall fall",
    "how to fix a dripping tap", "what is inflation", "why do leaves change colour in autumn",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The floor: the same Gradio queue and client around a function that does nothing.
NOOP_APP = """
import sys, gradio as gr
def search(query: str, k: int = 10, mode: str = "dense") -> list[dict]:
    return [{"rank": 1, "id": "x", "score": 1.0, "text": query}]
with gr.Blocks() as demo:
    gr.api(search, api_name="search")
demo.queue(default_concurrency_limit=4).launch(server_name="127.0.0.1", server_port=int(sys.argv[1]), quiet=True)
"""


def start_app(extra: list[str], noop: bool = False) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    cmd = [sys.executable, "-c", NOOP_APP, str(port)] if noop else [sys.executable, str(ROOT / "app.py"), "--port", str(port), *extra]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 300:
        if proc.poll() is not None:
            sys.exit(f"app.py exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    sys.exit("app.py did not serve within 300 s")


def run_load(call, users: int, seconds: float) -> tuple[list[float], int, float]:
    """`users` threads call `call(user, i)` in a loop until `seconds` pass -> (latencies s, failures, wall s)."""
    latencies, failures, lock = [], [0], threading.Lock()
    stop_at = time.perf_counter() + seconds

    def user(u: int):
        i = u
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            try:
                call(u, i)
                ok = True
            except Exception as e:  # noqa: BLE001 - counted and reported, never hidden
                ok = False
                print(f"request failed: {type(e).__name__}: {e}", file=sys.stderr)
            dt = time.perf_counter() - t0
            with lock:
                (latencies.append(dt) if ok else failures.__setitem__(0, failures[0] + 1))
            i += users
    t0 = time.perf_counter()
    with ThreadPoolExecutor(users) as pool:
        list(pool.map(user, range(users)))
    return latencies, failures[0], time.perf_counter() - t0


def row(name: str, users: int, lat: list[float], failed: int, wall: float, base_rps: float | None) -> list:
    ms = np.array(lat) * 1000
    rps = len(lat) / wall
    return [name, users, len(lat), rps, float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), failed,
            "1.00" if base_rps is None else f"{rps / base_rps:.2f}"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="an app already running (default: start `python app.py` here)")
    p.add_argument("--users", type=int, nargs="+", default=[1, 4], help="concurrent API users (default 1 4)")
    p.add_argument("--seconds", type=float, default=15, help="duration of each load (default 15)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--mode", default="dense", choices=app.MODES)
    p.add_argument("--app-args", default="", help="extra arguments for app.py, e.g. '--concurrency 8'")
    p.add_argument("--no-floor", action="store_true", help="skip the no-op Gradio endpoint row")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gradio_client import Client

    proc = None
    url = args.url
    if url is None:
        proc, url = start_app(args.app_args.split())
    try:
        engine = app.load_engine(log=lambda *_: None)  # the same default engine, from the same cache
        app.search(QUERIES[0], args.k, args.mode, engine=engine)  # warm-up
        rows = []
        lat, failed, wall = run_load(lambda u, i: app.search(QUERIES[i % len(QUERIES)], args.k, args.mode, engine=engine),
                                     1, args.seconds)
        base = len(lat) / wall
        rows.append(row("in-process `app.search`", 1, lat, failed, wall, None))
        for users in args.users:
            clients = [Client(url, verbose=False) for _ in range(users)]
            clients[0].predict(QUERIES[0], args.k, args.mode, api_name="/search")  # warm-up
            lat, failed_u, wall = run_load(
                lambda u, i: clients[u].predict(QUERIES[i % len(QUERIES)], args.k, args.mode, api_name="/search"),
                users, args.seconds)
            failed += failed_u
            rows.append(row("API `/search` via gradio_client", users, lat, failed_u, wall, base))
            if users > 1:
                lat, failed_u, wall = run_load(
                    lambda u, i: app.search(QUERIES[i % len(QUERIES)], args.k, args.mode, engine=engine), users, args.seconds)
                failed += failed_u
                rows.append(row("in-process `app.search`, threads", users, lat, failed_u, wall, base))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
    if not args.no_floor:
        proc, noop_url = start_app([], noop=True)
        try:
            client = Client(noop_url, verbose=False)
            client.predict(QUERIES[0], args.k, api_name="/search")
            lat, failed_u, wall = run_load(lambda u, i: client.predict(QUERIES[i % len(QUERIES)], args.k, api_name="/search"),
                                           1, args.seconds)
            failed += failed_u
            rows.append(row("API floor: a no-op Gradio endpoint", 1, lat, failed_u, wall, base))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(f"\n{engine.model_name} · {len(engine.index)} passages · mode {args.mode} · k={args.k} · "
          f"{args.seconds:.0f} s per row · {os.cpu_count()} CPU cores\n")
    print_table(["path", "users", "requests", "req/s", "p50 ms", "p99 ms", "failed", "req/s vs in-process"], rows)
    if failed:
        sys.exit(f"{failed} requests failed")


if __name__ == "__main__":
    main()
