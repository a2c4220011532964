"""An index the machine cannot hold is refused at start, in one line naming both sizes, before it is read."""

import json
import sys
from pathlib import Path

import pytest
import torch

from conftest import one_error_line, run_cli
from test_index import synthetic_corpus
from twotowers import PassageIndex, TwoTowers
from twotowers.index import memory

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import app  # noqa: E402 - after the path


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    model = TwoTowers(projection_dim=32)
    d = tmp_path_factory.mktemp("mem")
    model.save_pretrained(d / "model")
    PassageIndex.build(model, *synthetic_corpus(200), M=16, ef_construction=40, tune_samples=20).save(d / "model" / "index")
    return d


def test_the_app_refuses_an_index_larger_than_the_memory_available(saved, capsys, monkeypatch):
    need, parts = memory.serving_bytes(json.loads((saved / "model" / "index" / "index.json").read_text()))
    assert need > (saved / "model" / "index" / "hnsw.bin").stat().st_size and set(parts) == {"graph", "BM25 vocabulary"}
    monkeypatch.setattr(memory, "available_bytes", lambda: (need - 1, "under the container's limit of 16.0 GB"))
    monkeypatch.setattr(app, "serve", lambda *a, **k: pytest.fail("an index that cannot fit was served"))
    for argv in (["--model", str(saved / "model"), "--index", str(saved / "model" / "index")],
                 ["--model-repo", str(saved / "model")]):  # local dirs, and a repo (a directory of the same files)
        status, _, err = run_cli(app.main, argv, capsys)
        line = one_error_line(err)
        assert status == 1 and line.startswith("error: could not load the model or index: the index ")
        assert f"needs about {memory.human_size(need)} of memory to serve (graph " in line
        assert f"and this machine has {memory.human_size(need - 1)} available (under the container's limit of 16.0 GB)" in line
    monkeypatch.setattr(memory, "available_bytes", lambda: (need, "MemAvailable"))  # just enough: served
    engine = app.load_engine(model_dir=str(saved / "model"), index_dir=str(saved / "model" / "index"), log=lambda *_: None)
    assert len(engine.index) == 200


def test_what_the_container_allows_counts_over_what_the_host_has(tmp_path, monkeypatch):
    cg = tmp_path / "cgroup"
    cg.mkdir()
    (cg / "memory.max").write_text(f"{16 << 30}\n")
    (cg / "memory.current").write_text(f"{10 << 30}\n")
    (cg / "memory.stat").write_text(f"anon {8 << 30}\nfile {2 << 30}\n")  # page cache: reclaimable
    monkeypatch.setattr(memory, "CGROUP_ROOTS", ((cg, "memory.max", "memory.current", "file"),))
    have, where = memory.available_bytes()
    assert have == 8 << 30 and where == "under the container's limit of 16.0 GB"
    (cg / "memory.max").write_text("max\n")  # no limit: the host's MemAvailable
    have, where = memory.available_bytes()
    assert where == "MemAvailable" and have > 0
