"""`python app.py` as a user runs it: the default zero-shot transformer tower over the demo corpus,
its index built at first start and cached, every example query answered by its expected passage,
through the API and in headless Chromium. Slow (a real MiniLM and a first-start build): `-m slow`."""

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import app  # noqa: E402
from test_app import CHROMIUM, _free_port, open_page, run_query  # noqa: E402

pytestmark = pytest.mark.slow


def start_app(cache: Path, port: int, *args: str) -> tuple[subprocess.Popen, float, str]:
    """Run `python app.py` and wait until it serves -> (process, seconds to serve, its log so far)."""
    env = {**os.environ, "TWOTOWERS_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    env.pop("TWOTOWERS_MODEL_REPO", None)
    log = cache / f"app-{port}.log"
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), *args], cwd=ROOT, env=env,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    while time.perf_counter() - t0 < 300:
        if proc.poll() is not None:
            raise AssertionError(f"app.py exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                if r.status == 200:
                    return proc, time.perf_counter() - t0, log.read_text()
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise AssertionError(f"app.py did not serve within 300 s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_default_app_serves_the_demo_and_caches_its_index(tmp_path):
    from gradio_client import Client

    port = _free_port()
    proc, first, log = start_app(tmp_path, port)
    try:
        print(f"first start (index build included): served after {first:.1f} s")
        assert "building the demo index" in log
        assert first < 120, f"first start took {first:.0f} s"
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        queries = app.demo_queries()
        rows = client.predict([q["query"] for q in queries], 3, api_name="/search_batch")
        assert [r[0]["id"] for r in rows] == [q["expected"] for q in queries]
        assert client.predict("why is the sky blue", 1, api_name="/search")[0]["id"] == "physics-04"
        if Path(CHROMIUM).exists():
            pw = pytest.importorskip("playwright.sync_api")
            with pw.sync_playwright() as p:
                browser, page = open_page(p, f"http://127.0.0.1:{port}/")
                assert "360 passages" in page.locator("#tt-info").inner_text()
                run_query(page, "how many keys does a piano have", 3)
                page.locator('#tt-results .tt-hit[data-id="music-01"]').wait_for(timeout=60_000)
                browser.close()
    finally:
        stop(proc)
    cached = list((tmp_path / "demo-index").iterdir())
    assert len(cached) == 1 and re.fullmatch(r"[0-9a-f]{16}-[0-9a-f]{16}", cached[0].name)

    proc, second, log = start_app(tmp_path, port)  # again: the cached index is loaded, not rebuilt
    try:
        print(f"second start (cached index): served after {second:.1f} s")
        assert "building the demo index" not in log
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        assert client.predict("what causes ocean tides", 1, api_name="/search")[0]["id"] == "oceans-01"
    finally:
        stop(proc)
