"""The README's quick starts run as written, so they cannot drift: every code block is taken from README.md
and run in a fresh copy of the repository (its git files, as a clone has them), with `python` on PATH the
interpreter running the tests. Slow (they train, index and start the app): `-m slow`; CI runs them.

- the install block: the files it names exist (it is what .ci/run does; installing is not repeated here);
- the Python block, as one script;
- the command-line block, line by line in bash (`set -e`);
- the app block: `python app.py` in the background, then the curl lines and the gradio_client block;
- the Hub block, with OWNER/NAME the tree `hub push --dry-run` writes (the files a push uploads);
- the quick starts of docs/training.md and docs/index.md the same way, after the README's.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def code_blocks(path: Path) -> list[tuple[str, str]]:
    """(language, code) of every fenced block in a Markdown file, in order."""
    return re.findall(r"^```(\w*)\n(.*?)^```", path.read_text(encoding="utf-8"), flags=re.S | re.M)


def block(lang: str, needle: str, path: Path = ROOT / "README.md") -> str:
    """The one `lang` block of `path` that contains `needle`."""
    (code,) = [c for lang_, c in code_blocks(path) if lang_ == lang and needle in c]
    return code


def make_clone(tmp_path_factory) -> dict:
    """A copy of the repository's files (tracked and untracked, not ignored: what a clone holds) and the
    environment the blocks run in: `python` on PATH, offline Hub and W&B, a cache of its own."""
    where = tmp_path_factory.mktemp("clone")
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                            capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        if (ROOT / rel).is_file():
            (where / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, where / rel)
    bin_dir = tmp_path_factory.mktemp("bin")
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')  # not a link: a venv's python
    (bin_dir / "python").chmod(0o755)                                                # finds its venv by its own path
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "HF_HUB_OFFLINE": "1",
           "WANDB_MODE": "offline", "TOKENIZERS_PARALLELISM": "false",
           "TWOTOWERS_CACHE": str(tmp_path_factory.mktemp("cache"))}
    env.pop("PYTHONPATH", None)
    return {"dir": where, "env": env}


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> dict:
    return make_clone(tmp_path_factory)


def run(clone: dict, args: list[str], timeout: int = 1200) -> str:
    proc = subprocess.run(args, cwd=clone["dir"], env=clone["env"], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args[:3]} failed:\n{(proc.stdout + proc.stderr)[-4000:]}"
    return proc.stdout


def test_the_install_block_names_files_that_exist():
    first, second = [c for lang, c in code_blocks(ROOT / "README.md") if lang == "bash"][:2]
    assert "-r requirements.txt -e ." in first and "python app.py" in first
    for name in re.findall(r"-r (\S+)", first + second):
        assert (ROOT / name).is_file(), name
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pytest -q\n" in ci and "pytest -q -m slow" in ci  # what the README's second command runs


def test_python_quick_start(clone):
    out = run(clone, ["python", "-c", block("python", "PassageIndex.build")])
    assert out.split()[0] == "physics-04"  # "why is the sky blue" finds the demo's sky passage
    assert (clone["dir"] / "runs" / "my-index" / "index.json").is_file()
    assert (clone["dir"] / "runs" / "my-model" / "model.safetensors").is_file()


@pytest.fixture(scope="module")
def command_line(clone) -> str:
    """The command-line block, run line by line (continuations joined) in bash with `set -e`."""
    return run(clone, ["bash", "-e", "-c", block("bash", "python -m train")], timeout=3000)


def test_command_line_quick_start(clone, command_line):
    runs = clone["dir"] / "runs"
    assert (runs / "demo-q" / "model.safetensors").is_file() and not (runs / "demo-q" / "checkpoint").exists()
    assert json.loads((runs / "demo-q" / "metrics.json").read_text())["test/n_queries"] == 84
    assert "| bm25 |" in command_line and "# why is the sky blue" in command_line
    assert "(dense " in command_line  # the search was hybrid, the default with a BM25 side
    assert (runs / "demo-triples.tsv").stat().st_size > 0 and (runs / "demo-labelled" / "model.safetensors").is_file()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_app_quick_start(clone):
    shell = block("bash", "curl ")
    start, *calls = [line for line in shell.splitlines() if line.strip()]
    assert start.split("#")[0].split() == ["python", "app.py"]
    port = str(_free_port())
    env = {**clone["env"], "GRADIO_SERVER_PORT": port, "GRADIO_ANALYTICS_ENABLED": "False"}
    app = subprocess.Popen(["python", "app.py"], cwd=clone["dir"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 900
        while time.time() < deadline:
            assert app.poll() is None, app.stdout.read()[-4000:]
            try:
                info = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/info", timeout=5).read())
                break
            except OSError:
                time.sleep(2)
        else:
            pytest.fail("python app.py did not answer within 15 minutes")
        assert info["default_mode"] == "hybrid" and info["passages"] == 360
        for line in calls:  # the README's calls, on the port this test chose
            answer = json.loads(run(clone, ["bash", "-e", "-c", line.replace("7860", port)]))
            assert answer and not (isinstance(answer, dict) and "error" in answer), (line, answer)
        hits = json.loads(run(clone, ["bash", "-c", calls[0].replace("7860", port)]))
        assert hits[0]["id"] == "physics-04" and hits[0]["keyword_score"] is not None
        client = block("python", "gradio_client").replace("7860", port)
        out = run(clone, ["python", "-c", client.replace('Client("', 'print(Client("', 1).replace(
            'api_name="/search")', 'api_name="/search"))', 1)])
        assert "physics-04" in out
    finally:
        app.terminate()
        app.wait(timeout=60)


def test_hub_quick_start_on_a_pushed_tree(clone, command_line):
    text = (ROOT / "README.md").read_text()
    push = re.search(r"`(python -m hub push --model runs/demo-q [^`]+)`", text.replace("\n", " ")).group(1)
    run(clone, ["bash", "-e", "-c", push.replace("OWNER/NAME", "me/demo")])
    code = block("python", "load_pretrained").replace("OWNER/NAME", "runs/demo-repo")
    code += "\nprint(index.search(['why is the sky blue'], k=1)[0][0].id, st.encode_query(['x']).shape)\n"
    assert run(clone, ["python", "-c", code]).splitlines()[-1].split()[0] == "physics-04"


def test_docs_quick_starts(tmp_path_factory, clone, command_line):
    """docs/training.md and docs/index.md, in a fresh copy holding the README's trained runs/demo-q."""
    docs = make_clone(tmp_path_factory)
    shutil.copytree(clone["dir"] / "runs" / "demo-q", docs["dir"] / "runs" / "demo-q")
    training, index = ROOT / "docs" / "training.md", ROOT / "docs" / "index.md"
    run(docs, ["bash", "-e", "-c", block("bash", "python -m train --tower mean", training)], timeout=3000)
    run(docs, ["bash", "-e", "-c", block("bash", "--k 30", training)])
    assert (docs["dir"] / "runs" / "mean" / "model.safetensors").is_file()
    assert (docs["dir"] / "runs" / "mean-q" / "model.safetensors").is_file()
    run(docs, ["python", "-c", block("python", "PassageIndex.build", index)])
    out = run(docs, ["bash", "-e", "-c", block("bash", "python -m twotowers.index build", index)])
    assert "physics-04" in out
