"""Adding a tower, a loss, a fusion method, an objective or an app route is one registry entry in one file
(two with a new flag): a toy of each, registered here, shows up in the command lines, the app and the help
and docs they feed, with nothing else changed."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import app  # noqa: E402


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    import torch
    from twotowers import TwoTowers

    torch.manual_seed(0)
    os.environ["TWOTOWERS_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    engine = app.load_engine(model=TwoTowers(tower="mean"), log=lambda *_: None)
    app.set_engine(engine)
    return engine


# -- a fusion method: twotowers/index/fusion.py ----------------------------------------------------
def _keyword_only(dense: np.ndarray, keyword: np.ndarray, alpha: float) -> np.ndarray:
    return keyword.astype(np.float64)


@pytest.fixture
def toy_fusion(monkeypatch):
    from twotowers.index.fusion import FUSIONS, Fusion

    from webapp.ui import _read_registries

    monkeypatch.setitem(FUSIONS, "toy", Fusion(_keyword_only, "keyword scores only (toy)", "the BM25 scores alone"))
    yield "toy"
    monkeypatch.undo()
    _read_registries()  # the API functions' docs and hints without the toy again


def test_a_new_fusion_reaches_the_library_the_command_lines_and_the_app(toy_fusion, engine, tmp_path, capsys):
    from conftest import run_cli

    from twotowers.evaluate.__main__ import _parser as evaluate_parser
    from twotowers.index.__main__ import main as index_main
    from webapp.http import info
    from webapp.ui import api_help, api_search, build_demo

    # the library: search(fusion=NAME)
    hits = engine.index.search(["chocolate dogs"], k=3, mode="hybrid", fusion="toy")[0]
    assert [h.score for h in hits] == sorted((h.keyword_score for h in hits), reverse=True)
    # the command lines: a choice, described in --help, and searched with
    engine.index.save(tmp_path / "index")
    engine.model.save_pretrained(tmp_path / "model")
    status, out, err = run_cli(index_main, ["search", str(tmp_path / "index"), "chocolate dogs", "--model",
                                            str(tmp_path / "model"), "--fusion", "toy", "-k", "3", "--json"], capsys)
    assert status == 0, err
    status, out, _ = run_cli(index_main, ["search", "--help"], capsys)
    assert "toy" in out and "the BM25 scores alone" in out
    assert "the BM25 scores alone" in evaluate_parser().format_help()
    # the app: its page, its APIs and their help
    assert app.search("chocolate dogs", 3, "hybrid", 0.5, "toy") == app.search_many(["chocolate dogs"], 3, "hybrid", 0.5, "toy")[0]
    demo = build_demo(engine)
    (radio,) = [b for b in demo.blocks.values() if getattr(b, "label", None) == "Hybrid fusion"]
    assert "keyword scores only (toy)" in [c[0] for c in radio.choices]
    _, note = app.ui_search("chocolate dogs", 3, "hybrid", 0.5, "keyword scores only (toy)")
    assert "toy fusion" in note
    assert "toy" in info(engine)["fusions"]
    assert "toy = the BM25 scores alone" in api_help() and "toy = the BM25 scores alone" in api_search.__doc__
    assert "'toy'" in repr(api_search.__annotations__["fusion"])


# -- an app route: webapp/http.py ------------------------------------------------------------------
def test_a_new_route_is_served_listed_and_documented(engine, monkeypatch):
    import orjson
    from fastapi import FastAPI, Response
    from fastapi.testclient import TestClient

    from webapp import http
    from webapp.ui import api_help, build_demo

    async def passages(request, limiter):
        """How many passages the index holds."""
        return Response(orjson.dumps({"passages": len(engine.index)}), media_type="application/json")

    route = http.Route("GET", "/passages", passages, "{url}/v1/passages", "how many passages the index holds")
    monkeypatch.setattr(http, "ROUTES", [*http.ROUTES, route])
    api = FastAPI()
    api.include_router(http.router())
    with TestClient(api) as client:
        assert client.get("/v1/passages").json() == {"passages": len(engine.index)}
        assert "GET /v1/passages" in client.get("/v1/info").json()["routes"]
    assert "curl http://127.0.0.1:7860/v1/passages\n# -> how many passages the index holds" in api_help()
    demo = build_demo(engine)
    assert any("/v1/passages" in str(getattr(b, "value", "")) for b in demo.blocks.values())  # the API tab


# -- training: a tower (twotowers/towers.py), a loss (twotowers/losses.py), an objective (train/objectives.py)
@pytest.fixture(scope="module")
def data(tmp_path_factory):
    import json

    from tinymodel import make_tiny_base, synthetic_rows

    d = tmp_path_factory.mktemp("extending")
    rows = d / "train.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in synthetic_rows(4, seed=1)))
    return {"base": str(make_tiny_base(d / "base")), "rows": str(rows)}


def train_args(data, out, *extra) -> list[str]:
    return ["--base-model", data["base"], "--data-files", data["rows"], "--batch-size", "8", "--epochs", "1",
            "--no-wandb", "--no-comprehensive-test", "--output-dir", str(out), *extra]


def card_of(out: Path) -> str:
    """The model card `hub push` would write for the run in `out` (its training section from train_config.json)."""
    import json

    from hub.card import build_card

    config = json.loads((out / "config.json").read_text())
    return str(build_card("me/toy", config, [], train_config=json.loads((out / "train_config.json").read_text())))


def test_a_new_tower_trains_from_the_cli_and_is_served_and_described(data, tmp_path, monkeypatch, capsys):
    from train.__main__ import train
    from train.config import build_parser, parse_config
    from twotowers.evaluate.__main__ import _parser as evaluate_parser
    from twotowers.towers import TOWERS, MeanTower, TowerSpec

    class ToyTower(MeanTower):
        """The mean tower under another name."""

    monkeypatch.setitem(TOWERS, "toy", TowerSpec(ToyTower, 64, 1e-3))
    assert "tower type: mean, gru, lstm, transformer, toy" in " ".join(build_parser().format_help().split())
    assert "toy" in evaluate_parser().format_help()
    final = train(parse_config(train_args(data, tmp_path / "run", "--tower", "toy")))
    assert final["global_step"] > 0 and "toy towers" in capsys.readouterr().err
    engine = app.load_engine(model_dir=str(tmp_path / "run"), cache=tmp_path / "cache", log=lambda *_: None)
    assert engine.info()["tower"] == "toy" and engine.info()["dim"] == 64  # the tower's default width
    assert app.search("piano keys", 3, engine=engine)[0]["rank"] == 1
    assert "tower-toy" in card_of(tmp_path / "run")


def test_a_new_loss_is_a_flag_choice_that_trains_and_is_on_the_card(data, tmp_path, monkeypatch, capsys):
    import torch
    from torch import nn

    from train.__main__ import train
    from train.config import build_parser, parse_config
    from twotowers.losses import LOSSES

    class CosineGapLoss(nn.Module):
        """1 - cos(query, its positive), the margin (an existing flag) added: no negatives at all."""

        def __init__(self, margin: float = 0.2):
            super().__init__()
            self.margin = margin

        def forward(self, q, p, n=None, neg_owner=None) -> torch.Tensor:
            return (1.0 - (q * p).sum(-1)).mean() + self.margin

    monkeypatch.setitem(LOSSES, "gap", CosineGapLoss)
    assert "labelled loss: infonce, triplet, gap" in " ".join(build_parser().format_help().split())
    final = train(parse_config(train_args(data, tmp_path / "run", "--loss", "gap", "--margin", "0.5")))
    assert final["objective"] == "labelled (gap)" and final["global_step"] > 0
    assert "labelled (gap)" in capsys.readouterr().err
    assert '"loss": "gap"' in card_of(tmp_path / "run") and '"margin": 0.5' in card_of(tmp_path / "run")


def test_a_new_objective_is_picked_by_name_and_named_in_the_log_the_metrics_and_the_card(data, tmp_path, monkeypatch,
                                                                                        capsys):
    from train.__main__ import train
    from train.config import TrainConfig, build_parser, parse_config
    from train.objectives import OBJECTIVES, LabelledObjective

    class PositivesOnly(LabelledObjective):
        """Each query against its own positive only: no hard negatives in the batch."""

        name = "positives"

        def loss(self, model, batch):
            q, p = model(batch["query_ids"], batch["query_mask"], batch["passage_ids"], batch["passage_mask"])
            return (1.0 - (q * p[: q.shape[0]]).sum(-1)).mean()

        def describe(self) -> str:
            return "positives only"

    monkeypatch.setitem(OBJECTIVES, "positives", PositivesOnly)
    assert "what is optimised: labelled, distillation, positives" in " ".join(build_parser().format_help().split())
    assert TrainConfig(objective="positives").out_dir == "runs/mean-positives"
    final = train(parse_config(train_args(data, tmp_path / "run", "--objective", "positives")))
    assert final["objective"] == "positives only" and final["global_step"] > 0
    assert "; positives only: " in capsys.readouterr().err
    assert '"objective": "positives"' in card_of(tmp_path / "run")
