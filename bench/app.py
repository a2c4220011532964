"""Load on the running app, path by path, beside the same searches called in-process: one table.

    python bench/app.py                        # starts `python app.py` (the default demo) on a free port
    python bench/app.py --users 1 8 --seconds 10 --rounds 2
    python bench/app.py --url http://127.0.0.1:7860/   # an app that is already running (same engine!)

Rows, each at every --users count (concurrent clients, one thread each, calling back to back):

  in-process `app.search`       the search itself: threads calling `app.search` on the same engine (the
                                default: zero-shot MiniLM over the demo corpus, from the cache the app built)
  HTTP JSON `GET /v1/search`    the plain JSON route (webapp/http.py), one keep-alive connection per client
  `/search` via gradio_client   Gradio's API: the queue, server-sent events and the client
  floor: no-op Gradio endpoint  the same Gradio queue and client around a function that does nothing
                                (a separate app, the same concurrency): what the protocol costs by itself

The rows take turns in --rounds rounds (each row's --seconds split between them), so a drift in the
machine's load falls on every row alike; both apps run throughout (idle, each costs a few % of a core:
Gradio's queue polls every millisecond). "req/s vs in-process" divides by the in-process row with the
same number of clients. The lines below the table check the HTTP JSON route's targets (1 client: p50
<= 1.3 x in-process + 5 ms; 8 clients: >= 70 % of the in-process throughput) and split the
gradio_client path's p50 into floor + search + the rest. Exits 1 if any request fails.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
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
demo.queue(default_concurrency_limit=int(sys.argv[2])).launch(server_name="127.0.0.1", server_port=int(sys.argv[1]), quiet=True)
"""


def start_app(extra: list[str], noop: bool = False, concurrency: int = 4) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    cmd = ([sys.executable, "-c", NOOP_APP, str(port), str(concurrency)] if noop
           else [sys.executable, str(ROOT / "app.py"), "--port", str(port), *extra])
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 300:
        if proc.poll() is not None:
            sys.exit(f"{'the no-op app' if noop else 'app.py'} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    sys.exit("the app did not serve within 300 s")


def stop(proc: subprocess.Popen | None) -> None:
    if proc is not None:
        proc.terminate()
        proc.wait(timeout=30)


def run_load(call, users: int, seconds: float) -> tuple[list[float], int, float]:
    """`users` threads call `call(user, i)` in a loop until `seconds` pass -> (latencies s, failures, wall s)."""
    latencies, failures, lock = [], [0], threading.Lock()
    start = threading.Barrier(users + 1)
    stop_at = [0.0]

    def user(u: int):
        i = u
        start.wait()
        while time.perf_counter() < stop_at[0]:
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

    with ThreadPoolExecutor(users) as pool:
        futures = [pool.submit(user, u) for u in range(users)]
        stop_at[0] = time.perf_counter() + seconds
        t0 = time.perf_counter()
        start.wait()
        for f in futures:
            f.result()
    return latencies, failures[0], time.perf_counter() - t0


class JsonClient:
    """One HTTP/1.1 keep-alive connection (what `requests.Session` or `httpx.Client` keep), GET /v1/search."""

    def __init__(self, url: str):
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.conn = None

    def search(self, query: str, k: int, mode: str) -> list:
        path = "/v1/search?" + urllib.parse.urlencode({"q": query, "k": k, "mode": mode})
        for attempt in (0, 1):  # a connection the server closed while idle is reopened once
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
            try:
                self.conn.request("GET", path)
                resp = self.conn.getresponse()
                body = resp.read()
                break
            except (ConnectionError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {body[:200]!r}")
        hits = json.loads(body)
        if len(hits) != k:
            raise RuntimeError(f"{len(hits)} hits, expected {k}")
        return hits


def stats(lat: list[float], wall: float) -> tuple[float, float, float]:
    """-> (req/s, p50 ms, p99 ms)."""
    if not lat:
        return 0.0, float("nan"), float("nan")
    ms = np.array(lat) * 1000
    return len(lat) / wall, float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="an app already running (default: start `python app.py` here)")
    p.add_argument("--users", type=int, nargs="+", default=[1, 8], help="concurrent clients (default 1 8)")
    p.add_argument("--seconds", type=float, default=10, help="duration of each row, all rounds together (default 10)")
    p.add_argument("--rounds", type=int, default=2, help="rounds the rows take turns in (default 2)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--mode", default="dense", choices=app.MODES)
    p.add_argument("--concurrency", type=int, default=4,
                   help="app.py --concurrency, also the no-op app's queue concurrency (default 4)")
    p.add_argument("--app-args", default="", help="more arguments for app.py")
    p.add_argument("--no-floor", action="store_true", help="skip the no-op Gradio endpoint rows")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gradio_client import Client

    k, mode, n = args.k, args.mode, len(QUERIES)
    procs, url, noop_url = [], args.url, None
    try:
        if url is None:
            proc, url = start_app(["--concurrency", str(args.concurrency), *args.app_args.split()])
            procs.append(proc)
        if not args.no_floor:
            proc, noop_url = start_app([], noop=True, concurrency=args.concurrency)
            procs.append(proc)
        engine = app.load_engine(log=lambda *_: None)  # the same default engine, from the same cache

        def in_process(users):
            return lambda u, i: app.search(QUERIES[i % n], k, mode, engine=engine)

        def http_json(users):
            clients = [JsonClient(url) for _ in range(users)]
            return lambda u, i: clients[u].search(QUERIES[i % n], k, mode)

        def gradio(users, where=url, noop=False):
            clients = [Client(where, verbose=False) for _ in range(users)]
            if noop:
                return lambda u, i: clients[u].predict(QUERIES[i % n], k, api_name="/search")
            return lambda u, i: clients[u].predict(QUERIES[i % n], k, mode, api_name="/search")

        paths = [("in-process `app.search`", in_process), ("HTTP JSON `GET /v1/search`", http_json),
                 ("`/search` via gradio_client", gradio)]
        if noop_url:
            paths.append(("floor: no-op Gradio endpoint", lambda users: gradio(users, noop_url, noop=True)))
        plan = [(name, users, make(users)) for name, make in paths for users in args.users]
        results = {(name, users): ([], 0, 0.0) for name, users, _ in plan}
        for r in range(args.rounds):  # rounds take turns, so a drift in the machine's load hits every row alike
            for name, users, call in plan:
                for u in range(users):  # warm-up: connections, the client's first call
                    call(u, u)
                lat, failed_u, wall = run_load(call, users, args.seconds / args.rounds)
                old = results[name, users]
                results[name, users] = (old[0] + lat, old[1] + failed_u, old[2] + wall)
                rps, p50, _ = stats(lat, wall)
                print(f"  round {r + 1}/{args.rounds}: {name} x{users}: {rps:.1f} req/s, p50 {p50:.1f} ms",
                      file=sys.stderr, flush=True)
    finally:
        for proc in procs:
            stop(proc)

    rows, failed = [], 0
    for (name, users), (lat, failed_u, wall) in results.items():
        rps, p50, p99 = stats(lat, wall)
        base = stats(*results["in-process `app.search`", users][::2])[0]
        rows.append([name, users, len(lat), rps, p50, p99, failed_u, f"{rps / base:.2f}"])
        failed += failed_u
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    print(f"\n{engine.model_name} · {len(engine.index)} passages · mode {mode} · k={k} · {args.seconds:.0f} s per row · "
          f"app --concurrency {args.concurrency} · {cpu}, {os.cpu_count()} CPU cores · "
          f"{datetime.date.today().isoformat()}\n")
    print_table(["path", "clients", "requests", "req/s", "p50 ms", "p99 ms", "failed", "req/s vs in-process"], rows)

    def get(name, users):
        return stats(results[name, users][0], results[name, users][2]) if (name, users) in results else None

    print()
    inproc1, json1 = get("in-process `app.search`", 1), get("HTTP JSON `GET /v1/search`", 1)
    if inproc1 and json1:
        limit = 1.3 * inproc1[1] + 5
        print(f"target, HTTP JSON 1 client: p50 {json1[1]:.1f} ms <= 1.3 x {inproc1[1]:.1f} + 5 = {limit:.1f} ms: "
              f"{'met' if json1[1] <= limit else 'MISSED'}")
    top = max(args.users)
    inproc_n, json_n = get("in-process `app.search`", top), get("HTTP JSON `GET /v1/search`", top)
    if top > 1 and inproc_n and json_n:
        share = json_n[0] / inproc_n[0]
        print(f"target, HTTP JSON {top} clients: {json_n[0]:.1f} req/s = {share:.0%} of in-process {inproc_n[0]:.1f} "
              f"(>= 70 %): {'met' if share >= 0.7 else 'MISSED'}")
    for users in args.users:
        grad, floor, inproc = (get("`/search` via gradio_client", users), get("floor: no-op Gradio endpoint", users),
                               get("in-process `app.search`", users))
        if grad and floor and inproc:
            print(f"gradio_client, {users} client(s): p50 {grad[1]:.1f} ms = floor {floor[1]:.1f} + search "
                  f"{inproc[1]:.1f} + rest {grad[1] - floor[1] - inproc[1]:+.1f} ms")
    print(f"failures: {failed}")
    if failed:
        sys.exit(f"{failed} requests failed")


if __name__ == "__main__":
    main()
