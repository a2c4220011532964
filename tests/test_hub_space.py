"""The Space tree (hub/space.py): computed from app.py's imports, complete, with Spaces' front matter."""

from __future__ import annotations

import importlib.metadata as md
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from hub.connect import PublishError
from hub.space import REPO_ROOT, import_graph, space_files, stage_space



def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))


def test_import_graph_follows_lazy_relative_and_submodule_imports(tmp_path):
    _write(tmp_path, {
        "app.py": """
            import json
            import numpy as np
            from pkg import api
            ROOT = "assets"
            def later():
                import pkg.lazy
        """,
        "pkg/__init__.py": "from .core import thing\n",
        "pkg/core.py": "thing = 1\n",
        "pkg/api.py": "from . import helpers\nfrom .sub.deep import x\n",
        "pkg/helpers.py": "",
        "pkg/lazy.py": "def f():\n    from .core import thing\n    import torch\nif __name__ == '__main__':\n    from .cli import main\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/deep.py": "x = 2\n",
        "pkg/unused.py": "import wandb\n",
        "pkg/data.json": "{}",
        "assets/corpus.jsonl": "{}\n",
        "notes/todo.md": "not named by the code\n",
    })
    modules, external = import_graph(tmp_path / "app.py", tmp_path)
    rel = sorted(p.relative_to(tmp_path.resolve()).as_posix() for p in modules)
    assert rel == ["app.py", "pkg/__init__.py", "pkg/api.py", "pkg/core.py", "pkg/helpers.py", "pkg/lazy.py",
                   "pkg/sub/__init__.py", "pkg/sub/deep.py"]
    assert external == {"numpy", "torch"}  # stdlib left out; wandb only in a module nobody imports
    files, _ = space_files(tmp_path)
    rel = {p.relative_to(tmp_path.resolve()).as_posix() for p in files}
    assert {"assets/corpus.jsonl", "pkg/data.json"} <= rel  # a data dir the code names, package data
    assert "pkg/unused.py" not in rel and "notes/todo.md" not in rel


def test_missing_local_module_is_a_clear_error(tmp_path):
    _write(tmp_path, {"app.py": "from pkg.gone import x\n", "pkg/__init__.py": ""})
    with pytest.raises(PublishError, match=r"app.py:1: imports pkg.gone"):
        import_graph(tmp_path / "app.py", tmp_path)


def test_git_ignored_files_stay_out(tmp_path):
    _write(tmp_path, {"app.py": "D = 'demo'\n", "demo/passages.jsonl": "{}\n", "demo/cache/index.bin": "x",
                      ".gitignore": "demo/cache/\n"})
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    files, _ = space_files(tmp_path)
    assert sorted(p.relative_to(tmp_path.resolve()).as_posix() for p in files) == ["app.py", "demo/passages.jsonl"]


def test_space_tree_has_front_matter_requirements_and_the_app(tmp_path, capsys):
    from hub.__main__ import main

    out = tmp_path / "space"
    assert main(["deploy-space", "--space-id", "me/space", "--model-repo", "me/model", "--dry-run", "--out", str(out)]) == 0
    printed = capsys.readouterr().err  # the plan is logged
    assert "would set Space variable TWOTOWERS_MODEL_REPO=me/model" in printed and "nothing was sent" in printed
    front = yaml.safe_load((out / "README.md").read_text().split("---\n")[1])
    assert front["sdk"] == "gradio" and front["sdk_version"] == md.version("gradio") and front["app_file"] == "app.py"
    assert front["models"] == ["me/model"] and front["pinned"] is False
    assert {"title", "emoji", "colorFrom", "colorTo"} <= set(front)
    assert front["preload_from_hub"] == ["me/model"]  # a dry run cannot resolve the commit: unpinned, and it says so
    assert "pass --model-revision COMMIT to pin" in printed
    lines = [line for line in (out / "requirements.txt").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[0] == "--extra-index-url https://download.pytorch.org/whl/cpu"  # a CPU Space gets a CPU torch
    reqs = lines[1:]
    names = {line.split("==")[0].lower() for line in reqs}
    assert all("==" in line for line in reqs) and {"torch", "huggingface_hub", "hnswlib"} <= names
    assert any(line.startswith("torch==") and line.endswith("+cpu") for line in reqs)
    # pinned, a dry run must be shown the repo's files (tests/test_hub.py: --model-tree); it never guesses them
    assert main(["deploy-space", "--space-id", "me/space", "--model-repo", "me/model", "--model-revision", "0" * 40,
                 "--dry-run", "--out", str(tmp_path / "pinned")]) == 1
    assert "pass --model-tree DIR" in capsys.readouterr().err
    assert "gradio" not in names and "wandb" not in names  # gradio comes from sdk_version; W&B is training only
    assert (out / "app.py").read_bytes() == (REPO_ROOT / "app.py").read_bytes()


SPACE_CHECK = r"""
import json, sys
space, repo, model_dir, index_dir = sys.argv[1:5]
sys.path.insert(0, space)
import app
engine = app.load_engine(model_dir=model_dir, index_dir=index_dir, log=lambda *a: None)
app.set_engine(engine)
result = app.search("how tall is the eiffel tower", 3)
import site, sysconfig
installed = tuple({sysconfig.get_paths()[k] + "/" for k in ("purelib", "platlib", "stdlib", "platstdlib")})
local = sorted(m.__file__ for m in list(sys.modules.values())
               if getattr(m, "__file__", None) and not m.__file__.startswith(installed)
               and (m.__file__.startswith(repo + "/") or m.__file__.startswith(space + "/")))
print(json.dumps({"files": local, "result": str(result)[:2000]}))
"""


@pytest.mark.slow  # a fresh process
def test_space_tree_runs_the_app_with_nothing_from_the_checkout(tmp_path):
    """Import app.py from the staged Space (not the checkout), load a model + index, search: every
    repo-local module that got imported must come from the Space tree."""
    import torch

    from twotowers.index import PassageIndex

    from twotowers import TwoTowers

    torch.manual_seed(0)
    model = TwoTowers(projection_dim=8)
    model.save_pretrained(tmp_path / "model")
    texts = ["The Eiffel Tower is about 330 metres tall.", "Honey bees dance to show where flowers are.",
             "Espresso is brewed by forcing hot water through coffee."]
    PassageIndex.build(model, ["a", "b", "c"], texts).save(tmp_path / "index")
    space = tmp_path / "space"
    stage_space(space, "me/space", "me/model")
    # -I: no PYTHONPATH, no user site, no current directory: only the Space tree and site-packages.
    proc = subprocess.run([sys.executable, "-I", "-c", SPACE_CHECK, str(space.resolve()), str(REPO_ROOT),
                           str(tmp_path / "model"), str(tmp_path / "index")], capture_output=True, text=True,
                          cwd=space, timeout=300, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin",
                                                       "TWOTOWERS_CACHE": str(tmp_path / "cache"), "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    from_checkout = [f for f in report["files"] if not f.startswith(str(space.resolve()) + "/")]
    assert from_checkout == [], f"imported from the checkout, missing in the Space tree: {from_checkout[:20]}"
    assert any(f.endswith("twotowers/index/passage_index.py") for f in report["files"])  # the lazy import did run
    assert "Eiffel" in report["result"]
