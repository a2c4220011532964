"""`python -m train --distill-from ...`: the config reaches run_distillation, alone or mixed with labels."""

import json

import numpy as np
import pytest

from test_distill import ToyTeacher, toy_texts
from twotowers import TwoTowers

train_config = pytest.importorskip("train.config")
import train.distill as train_distill  # noqa: E402


@pytest.fixture
def toy_files(tmp_path, monkeypatch):
    teacher = ToyTeacher()
    monkeypatch.setattr(train_distill, "load_teacher", lambda name: teacher)
    queries, passages = toy_texts(40, 3, 5), toy_texts(60, 8, 6)
    (tmp_path / "queries.tsv").write_text("".join(f"{i}\t{q}\n" for i, q in enumerate(queries)))
    (tmp_path / "collection.tsv").write_text("".join(f"{i}\t{p}\n" for i, p in enumerate(passages)))
    (tmp_path / "triples.tsv").write_text("".join(f"{q}\t{p}\t{n}\n" for q, p, n in zip(queries, passages, passages[1:])))
    return tmp_path, teacher


def test_train_cli_distils_saves_and_reuses_the_cache(toy_files):
    tmp, teacher = toy_files
    argv = ["--distill-from", "toy", "--distill-data", str(tmp / "queries.tsv"), str(tmp / "collection.tsv"),
            "--tower", "mean", "--projection-dim", "32", "--epochs", "1", "--batch-size", "16",
            "--output-dir", str(tmp / "out"), "--distill-cache-dir", str(tmp / "cache"), "--no-wandb",
            "--device", "cpu"]
    cfg = train_config.parse_config(argv)
    summary = train_distill.run_distillation(cfg)
    assert summary["queries"] == 40 and summary["passages"] == 60 and summary["steps"] > 0
    model = TwoTowers.from_pretrained(tmp / "out")
    assert model.dim == 32 and json.loads((tmp / "out" / "distill_summary.json").read_text())["steps"] == summary["steps"]
    texts = teacher.texts
    cfg = train_config.parse_config(argv + ["--data-files", str(tmp / "triples.tsv"), "--distill-weight", "0.5", "--no-save"])
    mixed = train_distill.run_distillation(cfg)  # labelled in-batch loss mixed in
    assert teacher.texts == texts  # the second run re-encoded nothing
    assert np.isfinite(mixed["final_loss"])
