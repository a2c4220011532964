"""Publishing (hub/): the staged repo tree, the model card, the upload path, the one-line errors.

No test touches the network: the upload tests run huggingface_hub's real HfApi code against a small
fake Hub served on 127.0.0.1 (create repo, validate-yaml, preupload, LFS batch + upload + verify,
NDJSON commit, branch, Space variables, downloads with Range), built from how huggingface_hub 2.4 sends
each request.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import types
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

import numpy as np
import pytest
import torch
import yaml
from huggingface_hub import ModelCard, constants

from conftest import one_error_line
from hub.__main__ import main as hub_main
from hub.card import build_card
from hub.metrics import canonical_metric, read_metrics
from hub.push import push, push_from_training
from twotowers import PassageIndex, TwoTowers

# Written for these tests (not MS MARCO): 20 short passages on varied topics and queries for them.
PASSAGES = [
    "The Reserve Bank of Australia sets the cash rate and issues the Australian dollar.",
    "The Eiffel Tower in Paris is about 330 metres tall and was finished in 1889.",
    "Influenza symptoms include fever, cough, sore throat and tiredness.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
    "A marathon is a running race of 42.195 kilometres.",
    "Mount Everest is the highest mountain above sea level, at 8,849 metres.",
    "Python is a programming language known for readable code and many libraries.",
    "The Great Barrier Reef is the largest coral reef system in the world.",
    "Honey bees communicate the location of flowers with a waggle dance.",
    "Sourdough bread rises with wild yeast and lactic acid bacteria.",
    "The heart pumps blood through arteries, capillaries and veins.",
    "Jupiter is the largest planet in the solar system and has dozens of moons.",
    "A violin has four strings tuned in fifths: G, D, A and E.",
    "Chess openings such as the Sicilian Defence shape the middle game.",
    "Glaciers form where snow builds up faster than it melts over many years.",
    "The Amazon rainforest spans nine countries in South America.",
    "Vaccines train the immune system to recognise a pathogen.",
    "Espresso is coffee brewed by forcing hot water through fine grounds.",
    "Tides are caused mainly by the gravitational pull of the Moon.",
    "The printing press spread books across Europe in the fifteenth century.",
]
QUERIES = ["who sets the cash rate in australia", "how tall is the eiffel tower", "flu symptoms", "highest mountain"]
TOKEN = "hf_testTOKEN0123456789abcdefSECRET"


def build_index(model, ids, texts):
    return PassageIndex.build(model, ids, texts, tune_samples=10)


def hits(index, queries, k=5):
    """Search results as comparable plain data (ids, texts, rounded scores), whatever the result type."""
    return _plain(index.search(list(queries), k=k))


def _plain(x):
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if hasattr(x, "__dict__") and not isinstance(x, type):
        return _plain(vars(x))
    if isinstance(x, (float, np.floating)):
        return round(float(x), 5)
    if isinstance(x, np.ndarray):
        return _plain(x.tolist())
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


# -- fixtures ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny saved model, its index over PASSAGES, and a real evaluation JSON for it."""
    root = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    model = TwoTowers(projection_dim=8)
    model.save_pretrained(root / "model")
    ids = [f"p{i}" for i in range(len(PASSAGES))]
    index = build_index(model, ids, PASSAGES)
    index.save(root / "index")
    # A real evaluation file, written by the evaluation CLI on the same tiny set.
    (root / "queries.tsv").write_text("".join(f"q{i}\t{q}\n" for i, q in enumerate(QUERIES)))
    (root / "qrels.tsv").write_text("".join(f"q{i} 0 p{j} 1\n" for i, j in enumerate([0, 1, 2, 5])))
    (root / "collection.tsv").write_text("".join(f"{i}\t{t}\n" for i, t in zip(ids, PASSAGES)))
    from twotowers.evaluate.__main__ import main as evaluate

    evaluate(["--model", str(root / "model"), "--baseline", "bm25", "untrained", "--queries", str(root / "queries.tsv"),
              "--qrels", str(root / "qrels.tsv"), "--collection", str(root / "collection.tsv"), "--k", "10",
              "--json", str(root / "eval.json")])
    return types.SimpleNamespace(root=root, model=model, model_dir=root / "model", index_dir=root / "index",
                                 index=index, metrics=root / "eval.json")


@pytest.fixture
def no_token(monkeypatch, tmp_path):
    """No HF_TOKEN and an empty login cache."""
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-stored-tokens"))


@pytest.fixture
def online(monkeypatch, no_token):
    """huggingface_hub allowed to send requests (tests point it at 127.0.0.1 only), legacy LFS uploads."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # the fake Hub speaks LFS, not Xet's CAS protocol
    set_endpoint(monkeypatch, "http://127.0.0.1:9")  # never huggingface.co: port 9 refuses unless a test serves one


def set_endpoint(monkeypatch, endpoint: str) -> None:
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")


# -- the staged tree (dry run) -------------------------------------------------------------------------
def test_dry_run_tree_loads_back_and_searches_the_same(trained, tmp_path, capsys):
    out = tmp_path / "tree"
    rc = hub_main(["push", "--model", str(trained.model_dir), "--index", str(trained.index_dir), "--repo-id",
                   "me/tiny", "--metrics", str(trained.metrics), "--dry-run", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().err  # the plan is logged
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    # The printed plan lists exactly the files in the tree: one commit.
    assert re.findall(r"^  (\S+)  \(", printed, re.M) == files
    assert "nothing was sent" in printed and f"one commit adding {len(files)} files" in printed
    assert {"model.safetensors", "config.json", "base_config.json", "tokenizer.json", "README.md"} <= set(files)
    index_files = sorted(p.relative_to(trained.index_dir).as_posix() for p in trained.index_dir.rglob("*") if p.is_file())
    assert [f[len("index/"):] for f in files if f.startswith("index/")] == index_files

    model = TwoTowers.from_pretrained(str(out))
    assert model.fingerprint() == trained.model.fingerprint()
    index = PassageIndex.load(out / "index", model=model)
    assert hits(index, QUERIES) == hits(trained.index, QUERIES)

    from twotowers.pretrained import load_pretrained

    model2, index2 = load_pretrained(out)
    assert model2.fingerprint() == model.fingerprint() and hits(index2, QUERIES) == hits(trained.index, QUERIES)


def test_dry_run_tree_is_a_copy_and_loads_in_sentence_transformers(trained, tmp_path):
    out = tmp_path / "tree"
    push(trained.model_dir, trained.index_dir, "me/tiny", dry_run=True, out=out, log=lambda *_: None)
    before = {p: p.read_bytes() for p in [*trained.model_dir.iterdir(), *trained.index_dir.iterdir()] if p.is_file()}
    for p in out.rglob("*"):
        if p.is_file():
            assert p.stat().st_nlink == 1, p  # its own inode: not a link to the model's or the index's file
    with open(out / "config.json", "a") as f:  # a user editing the tree they were handed
        f.write("\n")
    (out / "index" / "hnsw.bin").write_bytes(b"edited")
    assert {p: p.read_bytes() for p in before} == before  # the sources are untouched
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(out), device="cpu")  # the pushed repo is a sentence-transformers model too
    q = st.encode_query(QUERIES, normalize_embeddings=True)
    np.testing.assert_allclose(q, trained.model.encode_queries(QUERIES), atol=1e-5)


def test_index_built_by_another_model_is_refused(trained, tmp_path, capsys):
    torch.manual_seed(1)
    other = TwoTowers(projection_dim=8)
    other.save_pretrained(tmp_path / "other")
    rc = hub_main(["push", "--model", str(tmp_path / "other"), "--index", str(trained.index_dir), "--repo-id", "me/x",
                   "--dry-run", "--out", str(tmp_path / "tree")])
    err = capsys.readouterr().err
    assert rc == 1 and one_error_line(err) and "does not load with the model" in err
    assert not (tmp_path / "tree").exists()  # nothing staged


def test_not_a_model_dir_is_one_line(tmp_path, capsys):
    rc = hub_main(["push", "--model", str(tmp_path), "--repo-id", "me/x", "--dry-run", "--out", str(tmp_path / "t")])
    err = capsys.readouterr().err
    assert rc == 1 and one_error_line(err) and "missing model.safetensors" in err


# -- the model card ------------------------------------------------------------------------------------
def test_card_yaml_parses_and_metrics_are_the_evaluation_json(trained, tmp_path):
    out = tmp_path / "tree"
    push(trained.model_dir, trained.index_dir, "me/tiny", metrics_files=[trained.metrics], dry_run=True, out=out,
         train_config={"epochs": 3, "learning_rate": 2e-5, "wandb_api_key": "do-not-show"}, log=lambda *_: None)
    text = (out / "README.md").read_text()
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["library_name"] == "twotowers" and front["pipeline_tag"] == "sentence-similarity"
    assert front["base_model"] == ["sentence-transformers/all-MiniLM-L6-v2"] and front["datasets"] == ["microsoft/ms_marco"]
    assert front["license"] and "twotowers" in front["tags"]
    # model-index == the model's metrics in the evaluation JSON, value for value.
    evaluation = json.loads(trained.metrics.read_text())
    (model_key,) = [k for k in evaluation["results"] if k.startswith("model")]
    expected = {canonical_metric(k): v for k, v in evaluation["results"][model_key].items() if canonical_metric(k)}
    (entry,) = front["model-index"]
    got = {m["type"].replace("_at_", "@"): m["value"] for r in entry["results"] for m in r["metrics"]}
    assert got == expected and set(got) == {"ndcg@10", "mrr@10", "recall@100"}
    # huggingface_hub reads the same metadata back into EvalResults.
    card = ModelCard(text)
    assert {(r.metric_type, r.metric_value) for r in card.data.eval_results} == {(k.replace("@", "_at_"), v) for k, v in expected.items()}
    # The body shows every system of the file (model and baselines) with its figures, and the recipe.
    for name, metrics in evaluation["results"].items():
        shown = "**this model**" if name == "model" else name
        row = next(line for line in text.splitlines() if line.startswith(f"| {shown} "))
        for k in ("ndcg@10", "mrr@10", "recall@100"):
            assert f"{metrics[k]:.4f}" in row
    assert '"learning_rate": 2e-05' in text and "do-not-show" not in text
    # what was measured, in words and counts; the data by file name, never a local path
    assert ("Retrieval: 4 queries (`queries.tsv`, judgments `qrels.tsv`), each searching all 20 passages of "
            "`collection.tsv`") in text
    assert "| index: passages | 20 (the corpus was not recorded) |" in text  # built in Python, not by the CLI
    assert str(trained.root) not in text and "/tmp" not in text
    assert all(r.get("dataset", {}).get("config") is None for r in entry["results"])  # TREC files, not v1.1 rows
    assert {r["dataset"]["name"] for r in entry["results"]} == {"MS MARCO (queries.tsv)"}
    assert "from_pretrained" in text and "python -m twotowers.index build" in text
    assert "gradio_client" not in text  # no Space given: no Space call to show


def test_card_tells_a_stranger_how_to_use_it(trained, tmp_path):
    from twotowers.project import INSTALL, PROJECT_URL

    out = tmp_path / "tree"
    push(trained.model_dir, trained.index_dir, "me/tiny", dry_run=True, out=out, space_id="me/tiny-search",
         log=lambda *_: None)
    text = (out / "README.md").read_text()
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["language"] == ["en"] and "sentence-transformers" in front["tags"]
    use = text[text.index("## Use it"):text.index("## How it was trained")]
    for needle in (INSTALL, 'TwoTowers.from_pretrained("me/tiny")', 'SentenceTransformer("me/tiny")',
                   'load_pretrained("me/tiny")', "index.search(", 'Client("me/tiny-search")', "/v1/search"):
        assert needle in use, needle
    limits = text[text.index("## Limitations"):]
    assert "pooled corpus" in limits and "8.8M-passage collection" in limits
    assert f"Code: [{PROJECT_URL}]" in text


def test_pyproject_urls_are_the_projects(tmp_path):
    import tomllib
    from pathlib import Path

    from twotowers.project import PROJECT_URL

    meta = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    assert set(meta["urls"].values()) >= {PROJECT_URL} and TwoTowers._hub_mixin_info.repo_url == PROJECT_URL


def test_metrics_parser_is_defensive(tmp_path):
    (tmp_path / "flat.json").write_text(json.dumps({"NDCG@10": 0.5, "mrr_at_10": 0.4, "bm25_ndcg@10": 0.3, "split": "dev",
                                                    "primary_metric": "ndcg@10", "note": "x", "bad": float("nan")}))
    (model, bm25) = read_metrics([tmp_path / "flat.json"])
    assert model.is_model and model.metrics == {"ndcg@10": 0.5, "mrr@10": 0.4} and model.primary == "ndcg@10"
    assert bm25.name == "bm25" and bm25.metrics == {"ndcg@10": 0.3} and not bm25.is_model
    (tmp_path / "broken.json").write_text('{"ndcg@10": ')
    with pytest.raises(ValueError, match="broken.json"):
        read_metrics([tmp_path / "broken.json"])
    (tmp_path / "empty.json").write_text('{"mode": "retrieve"}')
    with pytest.raises(ValueError, match="empty.json: no metrics"):
        read_metrics([tmp_path / "empty.json"])


def test_a_training_runs_figures_reach_the_card_as_they_are():
    """`python -m train --push-to-hub`: the run's final dict -> metric sets (no file, no parsing) -> the card."""
    from hub.metrics import training_metric_sets

    final = {"objective": "labelled (infonce)", "global_step": 10, "val/ndcg@10": 0.61, "val/random_ndcg@10": 0.3,
             "test/ndcg@10": 0.42, "test/recall@100": 0.9, "test/n_queries": 4, "test/corpus_passages": 100}
    test, val, random = training_metric_sets(final, {"validation_files": ["/home/me/dev.jsonl"]})
    assert (test.name, test.is_model, test.metrics) == ("model", True, {"ndcg@10": 0.42, "recall@100": 0.9})
    assert test.context["n_queries"] == 4 and test.context["queries"] == "dev.jsonl"  # a file name, never its path
    assert (val.metrics, random.name, random.is_model, random.metrics) == ({"ndcg@10": 0.61}, "random", False,
                                                                         {"ndcg@10": 0.3})
    card = str(build_card("me/x", {"tower": "mean"}, [test, val, random]))
    assert "From the training run's final retrieval test" in card and "| random | 0.3000 |" in card
    assert training_metric_sets({"global_step": 3}) == []  # no figures: the card says none were supplied


def test_card_shows_the_hyperparameters_used_and_no_local_path(trained, tmp_path):
    """A run's config as `python -m train` saved it (defaults unresolved, paths as typed) -> the card shows the
    learning rate and widths used, file names, no output directory; an index built by the CLI names its corpus."""
    from twotowers.index.__main__ import main as index_main

    (tmp_path / "corpus.tsv").write_text("".join(f"p{i}\t{t}\n" for i, t in enumerate(PASSAGES)))
    index_main(["build", "--model", str(trained.model_dir), "--collection", str(tmp_path / "corpus.tsv"),
                "--out", str(tmp_path / "index")])
    recipe = {"tower": "mean", "learning_rate": None, "embedding_learning_rate": None, "projection_dim": None,
              "output_dir": str(tmp_path / "runs" / "x"), "distill_data": [str(tmp_path / "queries.tsv")],
              "base_model": "sentence-transformers/all-MiniLM-L6-v2", "init_from": str(trained.model_dir),
              "distill_cache_dir": str(tmp_path / "cache"), "test_collection": str(tmp_path / "corpus.tsv")}
    push(trained.model_dir, tmp_path / "index", "me/tiny", dry_run=True, out=tmp_path / "tree", train_config=recipe,
         log=lambda *_: None)
    text = (tmp_path / "tree" / "README.md").read_text()
    shown = json.loads(text.split("```json\n", 1)[1].split("```", 1)[0])
    assert shown["learning_rate"] == 1e-3 == shown["embedding_learning_rate"]  # the mean tower's default, used
    assert shown["projection_dim"] == 8  # what the saved model was built with
    assert shown["distill_data"] == ["queries.tsv"] and shown["test_collection"] == "corpus.tsv"
    assert shown["base_model"] == "sentence-transformers/all-MiniLM-L6-v2" and shown["init_from"] == "model (a local directory)"
    assert "output_dir" not in shown and "distill_cache_dir" not in shown and str(tmp_path) not in text
    assert "| index: passages | 20 from `corpus.tsv` |" in text


def test_space_dry_run_preloads_exactly_the_files_of_the_model_tree(trained, tmp_path, capsys):
    """`deploy-space --dry-run --model-tree DIR` lists what a deploy of that tree would preload: every file the
    app reads, the index's BM25 files and examples.json included (a deploy lists the repo's own files)."""
    from hub.space import model_files

    queries = tmp_path / "queries.tsv"
    queries.write_text("".join(f"q{i}\t{q}\n" for i, q in enumerate(QUERIES)))
    tree = tmp_path / "repo"
    assert hub_main(["push", "--model", str(trained.model_dir), "--index", str(trained.index_dir), "--repo-id",
                     "me/tiny", "--example-queries", str(queries), "--dry-run", "--out", str(tree)]) == 0
    assert hub_main(["deploy-space", "--space-id", "me/space", "--model-repo", "me/tiny", "--model-revision", "1" * 40,
                     "--dry-run", "--out", str(tmp_path / "space"), "--model-tree", str(tree)]) == 0
    front = yaml.safe_load((tmp_path / "space" / "README.md").read_text().split("---\n")[1])
    repo, files, revision = front["preload_from_hub"][0].split(" ")
    in_tree = sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file())
    assert repo == "me/tiny" and revision == "1" * 40 and sorted(files.split(",")) == sorted(model_files(in_tree))
    assert {"examples.json", "index/index.json", "index/hnsw.bin"} <= set(files.split(","))
    assert any(f.startswith("index/keyword") for f in files.split(","))  # the BM25 side the app's hybrid default needs
    assert set(in_tree) - set(files.split(",")) <= {"README.md", "modules.json", "config_sentence_transformers.json"} | {
        f for f in in_tree if f.startswith(("0_Router/", "1_Normalize/"))}
    assert "would preload" in capsys.readouterr().err


def test_card_without_metrics_or_index_says_so():
    card = build_card("me/tiny", {"tower": "gru", "projection_dim": 8}, [])
    assert "model-index" not in card.content and "No evaluation results" in card.content
    assert "No passage index is included" in card.content and "tower-gru" in card.data.tags


# -- errors without a Hub: no token, offline, no network -----------------------------------------------
def test_missing_token_is_one_line(trained, online, capsys):
    rc = hub_main(["push", "--model", str(trained.model_dir), "--repo-id", "me/tiny"])
    err = capsys.readouterr().err
    assert rc == 1 and one_error_line(err) and "no Hugging Face token" in err and "Traceback" not in err


def test_offline_mode_is_one_line(trained, monkeypatch, capsys):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    rc = hub_main(["deploy-space", "--space-id", "me/space", "--model-repo", "me/tiny"])
    err = capsys.readouterr().err
    assert rc == 1 and one_error_line(err) and "HF_HUB_OFFLINE" in err and TOKEN not in err


def test_no_network_is_one_line(trained, online, monkeypatch, capsys):
    import socket

    with socket.socket() as s:  # a port nothing listens on: connection refused, like no network
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    set_endpoint(monkeypatch, f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    rc = hub_main(["push", "--model", str(trained.model_dir), "--index", str(trained.index_dir), "--repo-id", "me/tiny"])
    out, err = capsys.readouterr()
    assert rc == 1 and one_error_line(err) and "cannot reach" in err and "Traceback" not in err
    assert TOKEN not in out + err


def test_push_from_training_failure_prints_one_line_and_keeps_going(trained, online, capsys):
    @dataclass
    class Cfg:
        epochs: int = 1
        push_to_hub: str = "me/tiny"
        tags: list = field(default_factory=list)

    assert push_from_training(Cfg(), trained.model_dir, {"ndcg@10": 0.1}) is None  # no token
    err = capsys.readouterr().err
    assert one_error_line(err) and "no Hugging Face token" in err


# -- the upload path against a local fake Hub ----------------------------------------------------------
class FakeHub(BaseHTTPRequestHandler):
    """Answers the requests HfApi sends, like the Hub does, and records them."""

    state: dict = {}

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _reply(self, status, body=None):
        data = json.dumps(body if body is not None else {}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def _authorised(self) -> bool:
        if self.headers.get("Authorization") != f"Bearer {self.state['token']}":
            self._reply(401, {"error": "Invalid credentials in Authorization header"})
            return False
        return True

    def _tree(self, repo: str, rev: str) -> tuple[str, dict] | None:
        oid = self.state["refs"].get((repo, rev), rev)
        return (oid, self.state["trees"][oid]) if oid in self.state["trees"] else None

    def do_GET(self, head: bool = False):  # downloads: repo info, tree listing, resolve/<rev>/<file>
        path = unquote(self.path.split("?")[0])
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path):
            found = self._tree(m.group(1), m.group(2) or "main")
            if found is None:
                return self._reply(404, {"error": "Revision Not Found"})
            return self._reply(200, {"id": m.group(1), "sha": found[0], "siblings": [{"rfilename": f} for f in found[1]]})
        if m := re.fullmatch(r"/api/(?:models|spaces)/([^/]+/[^/]+)/tree/([^/]+)", path):
            oid, files = self._tree(m.group(1), m.group(2)) or (None, {})  # a new repo: empty
            return self._reply(200, [{"type": "file", "path": f, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                                     for f, b in sorted(files.items())])
        if m := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
            oid, files = self._tree(m.group(1), m.group(2))
            name, data = m.group(3), files[m.group(3)]
            start = int(r.group(1)) if (r := re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))) else 0
            if not head:
                self.state["downloads"].append((name, self.headers.get("Range")))
                if name in self.state["down"]:  # the network went away
                    return self._reply(503, {"error": "Service Unavailable"})
            self.send_response(206 if start else 200)
            self.send_header("X-Repo-Commit", oid)
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("Content-Length", str(len(data) - start))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if not head:
                cut = self.state["cut"].pop(name, None)  # send this many bytes, then drop the connection
                self.wfile.write(data[start : start + cut] if cut is not None else data[start:])
                self.state["served"][name] = self.state["served"].get(name, 0) + len(data[start:][:cut])
                if cut is not None:
                    self.state["down"].add(name)
            return
        self._reply(404, {"error": f"fake hub: no route {path}"})

    def do_HEAD(self):
        self.do_GET(head=True)

    def do_PUT(self):  # LFS object upload (the "href" our batch answer gave)
        oid = self.path.rsplit("/", 1)[-1]
        data = self._body()
        assert hashlib.sha256(data).hexdigest() == oid
        self.state["lfs"][oid] = data
        self._reply(200)

    def do_POST(self):
        s, path, body = self.state, self.path.split("?")[0], self._body()
        s["requests"].append(("POST", path, dict(self.headers)))
        if not self._authorised():
            return
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        if path == "/api/repos/create":
            req = json.loads(body)
            repo = f"{req['organization']}/{req['name']}"
            s["repos"][repo] = req
            prefix = "spaces/" if req.get("type") == "space" else ""
            return self._reply(200, {"url": f"{base}/{prefix}{repo}"})
        if path == "/api/validate-yaml":
            return self._reply(200, {"errors": [], "warnings": []})
        if m := re.fullmatch(r"/api/(models|spaces)/([^/]+/[^/]+)/preupload/([^/]+)", path):
            files = json.loads(body)["files"]
            lfs = lambda f: f["size"] > 4096 or b"\0" in base64.b64decode(f["sample"])  # noqa: E731
            return self._reply(200, {"files": [{"path": f["path"], "uploadMode": "lfs" if lfs(f) else "regular",
                                                "shouldIgnore": False} for f in files]})
        if m := re.fullmatch(r"/(?:spaces/)?([^/]+/[^/]+)\.git/info/lfs/objects/batch", path):
            objs = json.loads(body)["objects"]
            return self._reply(200, {"transfer": "basic", "objects": [
                {"oid": o["oid"], "size": o["size"], "actions": {"upload": {"href": f"{base}/lfs-upload/{o['oid']}"},
                                                                 "verify": {"href": f"{base}/lfs-verify"}}}
                for o in objs]})
        if path == "/lfs-verify":
            assert json.loads(body)["oid"] in s["lfs"]
            return self._reply(200)
        if m := re.fullmatch(r"/api/(models|spaces)/([^/]+/[^/]+)/branch/([^/]+)", path):
            s["branches"].append(m.group(3))
            return self._reply(200)
        if m := re.fullmatch(r"/api/(models|spaces)/([^/]+/[^/]+)/commit/([^/]+)", path):
            assert self.headers["Content-Type"] == "application/x-ndjson"
            lines = [json.loads(line) for line in body.decode().splitlines() if line]
            files, deleted = {}, []
            for item in lines[1:]:
                v = item["value"]
                if item["key"] == "file":
                    files[v["path"]] = base64.b64decode(v["content"])
                elif item["key"] == "lfsFile":
                    files[v["path"]] = s["lfs"][v["oid"]]  # the Hub refuses a commit naming an unknown LFS object
                elif item["key"] == "deletedFile":
                    deleted.append(v["path"])
            s["commits"].append({"repo": m.group(2), "kind": m.group(1), "revision": m.group(3),
                                 "header": lines[0]["value"], "files": files, "deleted": deleted})
            oid = hashlib.sha1(body).hexdigest()
            ref = (m.group(2), m.group(3))  # the new tree = the branch's tree - deletions + this commit's files
            tree = {f: b for f, b in s["trees"].get(s["refs"].get(ref), {}).items() if f not in deleted}
            s["trees"][oid] = {**tree, **files}
            s["refs"][ref] = oid
            return self._reply(200, {"success": True, "commitOid": oid, "commitUrl": f"{base}/{m.group(2)}/commit/{oid}"})
        if m := re.fullmatch(r"/api/spaces/([^/]+/[^/]+)/hardware", path):
            s["hardware"] = json.loads(body)["flavor"]
            return self._reply(200, {"stage": "BUILDING", "hardware": {"current": None, "requested": s["hardware"]}})
        if m := re.fullmatch(r"/api/spaces/([^/]+/[^/]+)/variables", path):
            req = json.loads(body)
            s["variables"][req["key"]] = req["value"]
            return self._reply(200, {k: {"value": v} for k, v in s["variables"].items()})
        self._reply(404, {"error": f"fake hub: no route {path}"})


@pytest.fixture
def fake_hub(online, monkeypatch):
    FakeHub.state = {"token": TOKEN, "requests": [], "repos": {}, "lfs": {}, "commits": [], "branches": [], "variables": {},
                     "trees": {}, "refs": {}, "downloads": [], "cut": {}, "down": set(), "served": {}}
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    set_endpoint(monkeypatch, endpoint)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    yield FakeHub.state
    server.shutdown()
    server.server_close()


def test_push_is_one_commit_holding_every_file(trained, fake_hub, tmp_path, capsys, caplog):
    caplog.set_level("DEBUG")
    hub_main(["push", "--model", str(trained.model_dir), "--index", str(trained.index_dir), "--repo-id", "me/tiny",
              "--metrics", str(trained.metrics), "--dry-run", "--out", str(tmp_path / "tree")])
    rc = hub_main(["push", "--model", str(trained.model_dir), "--index", str(trained.index_dir), "--repo-id", "me/tiny",
                   "--metrics", str(trained.metrics), "--private", "--revision", "v1"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert fake_hub["repos"]["me/tiny"]["visibility"] == "private" and fake_hub["branches"] == ["v1"]
    (commit,) = fake_hub["commits"]
    assert commit["repo"] == "me/tiny" and commit["revision"] == "v1"
    tree = tmp_path / "tree"
    expected = {p.relative_to(tree).as_posix(): p.read_bytes() for p in tree.rglob("*") if p.is_file()}
    assert commit["files"] == expected  # every file, byte for byte, in the one commit (weights via LFS)
    assert hashlib.sha256(expected["model.safetensors"]).hexdigest() in fake_hub["lfs"]  # the weights went as LFS
    assert "pushed" in err and commit["header"]["summary"].startswith("Upload twotowers")  # logged
    assert TOKEN not in out + err + caplog.text


def test_rejected_token_is_one_line(trained, fake_hub, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", "hf_wrongWRONGwrong")
    rc = hub_main(["push", "--model", str(trained.model_dir), "--repo-id", "me/tiny"])
    out, err = capsys.readouterr()
    assert rc == 1 and one_error_line(err) and "rejected the token (401" in err
    assert "hf_wrongWRONGwrong" not in out + err and not fake_hub["commits"]


def test_deploy_space_is_one_commit_pinned_to_the_model_commit(trained, fake_hub, tmp_path, capsys):
    from hub.space import deploy_space

    queries = tmp_path / "queries.tsv"
    queries.write_text("".join(f"q{i}\t{q}\n" for i, q in enumerate(QUERIES)))
    assert hub_main(["push", "--model", str(trained.model_dir), "--index", str(trained.index_dir), "--repo-id",
                     "me/tiny", "--example-queries", str(queries)]) == 0
    (model_commit,) = fake_hub["commits"]
    assert json.loads(model_commit["files"]["examples.json"]) == {"queries": QUERIES}  # examples travel with the model
    root = tmp_path / "repo"  # a small app with a local package and a data dir it names
    (root / "pkg").mkdir(parents=True)
    (root / "demo").mkdir()
    (root / "app.py").write_text("import os\nimport pkg\nDEMO = 'demo'\nREPO = os.environ.get('TWOTOWERS_MODEL_REPO')\n")
    (root / "pkg" / "__init__.py").write_text("import numpy\nimport torch\n")
    (root / "demo" / "passages.jsonl").write_text('{"id": "a", "text": "x"}\n')
    (root / "requirements.txt").write_text("numpy==2.4.6\ntorch==2.13.0\ngradio==6.31.0\n")
    url = deploy_space("me/space", "me/tiny", root=root, hardware="cpu-upgrade")
    commit = fake_hub["commits"][-1]
    assert commit["kind"] == "spaces" and commit["repo"] == "me/space" and url.endswith(commit["repo"] + "/commit/"
                                                                                           + url.rsplit("/", 1)[-1])
    assert sorted(commit["files"]) == ["README.md", "app.py", "demo/passages.jsonl", "pkg/__init__.py", "requirements.txt"]
    assert fake_hub["repos"]["me/space"]["sdk"] == "gradio" and fake_hub["repos"]["me/space"]["type"] == "space"
    sha = fake_hub["refs"][("me/tiny", "main")]
    assert fake_hub["variables"] == {"TWOTOWERS_MODEL_REPO": "me/tiny", "TWOTOWERS_MODEL_REVISION": sha}
    front = yaml.safe_load(commit["files"]["README.md"].decode().split("---\n")[1])
    assert front["suggested_hardware"] == fake_hub["hardware"] == "cpu-upgrade"  # the memory the index needs
    (preload,) = front["preload_from_hub"]
    repo, files, revision = preload.split(" ")
    assert repo == "me/tiny" and revision == sha  # built with, and serving, exactly that commit
    assert {"model.safetensors", "config.json", "examples.json", "index/index.json", "index/hnsw.bin"} <= set(files.split(","))
    assert "README.md" not in files and "0_Router" not in files
    reqs = commit["files"]["requirements.txt"].decode()
    assert "numpy==2.4.6" in reqs and "gradio==" not in reqs
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in reqs and "torch==2.13.0+cpu" in reqs
    out, err = capsys.readouterr()
    assert TOKEN not in out + err


def test_push_from_training_uploads_model_index_recipe_and_final_metrics(trained, fake_hub, tmp_path, capsys):
    import shutil

    from train.config import TrainConfig  # the real training config, as `python -m train` passes it

    def Cfg():  # noqa: N802
        return TrainConfig(tower="mean", learning_rate=2e-5, push_to_hub="me/trained")

    run = tmp_path / "run"
    shutil.copytree(trained.model_dir, run)
    shutil.copytree(trained.index_dir, run / "index")
    (run / "checkpoint").mkdir()
    (run / "checkpoint" / "optimizer.safetensors").write_bytes(b"not for the Hub")
    final = {"global_step": 10, "val/ndcg@10": 0.61, "val/mrr@10": 0.55, "val/random_ndcg@10": 0.3,
             "val/random_mrr@10": 0.2, "test/ndcg@10": 0.42, "test/mrr@10": 0.37, "test/recall@100": 0.9, "test/n_queries": 4}
    url = push_from_training(Cfg(), run, final)
    assert url is not None, capsys.readouterr().err
    (commit,) = fake_hub["commits"]
    files = commit["files"]
    assert not any(f.startswith("checkpoint/") for f in files) and any(f.startswith("index/") for f in files)
    card = ModelCard(files["README.md"].decode())
    got = {(r.task_type, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert got == {("Retrieval", "ndcg_at_10"): 0.42, ("Retrieval", "mrr_at_10"): 0.37, ("Retrieval", "recall_at_100"): 0.9,
                   ("Reranking", "ndcg_at_10"): 0.61, ("Reranking", "mrr_at_10"): 0.55}
    assert '"learning_rate": 2e-05' in card.content and '"output_dir"' not in card.content  # no run bookkeeping
    assert "| random | 0.3000 | 0.2000 |" in card.content and "| **this model** |" in card.content
    assert "Retrieval: 4 queries, each searching the whole corpus" in card.content


def test_load_pretrained_downloads_model_and_index_at_a_pinned_revision(trained, fake_hub, tmp_path, monkeypatch):
    from twotowers.pretrained import load_pretrained

    torch.manual_seed(7)  # a second model and its index, pushed later to the same repo
    model2 = TwoTowers(projection_dim=8)
    model2.save_pretrained(tmp_path / "model2")
    build_index(model2, [f"p{i}" for i in range(len(PASSAGES))], PASSAGES).save(tmp_path / "index2")
    log = lambda *_: None  # noqa: E731
    first = push(trained.model_dir, trained.index_dir, "me/tiny", log=log)
    push(tmp_path / "model2", tmp_path / "index2", "me/tiny", log=log)
    cache = tmp_path / "hf-cache"

    model, index = load_pretrained("me/tiny", revision=first.rsplit("/", 1)[-1], cache_dir=str(cache))
    assert model.fingerprint() == trained.model.fingerprint() and hits(index, QUERIES) == hits(trained.index, QUERIES)
    latest, latest_index = load_pretrained("me/tiny", cache_dir=str(cache))
    assert latest.fingerprint() == model2.fingerprint() and len(latest_index) == len(PASSAGES)
    # The download went through huggingface_hub's cache: offline, the pinned revision still loads.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    again, _ = load_pretrained("me/tiny", revision=first.rsplit("/", 1)[-1], cache_dir=str(cache))
    assert again.fingerprint() == trained.model.fingerprint()
    assert list(cache.glob("models--me--tiny/snapshots/*/index/index.json"))


def test_a_second_push_leaves_no_stale_index_files(trained, fake_hub, tmp_path):
    import shutil

    old_index = tmp_path / "old-index"
    shutil.copytree(trained.index_dir, old_index)
    (old_index / "extra-from-an-old-format.npy").write_bytes(b"\0stale")
    log = lambda *_: None  # noqa: E731
    push(trained.model_dir, old_index, "me/tiny", log=log)  # an older push whose index had one more file
    push(trained.model_dir, trained.index_dir, "me/tiny", log=log)
    first, second = fake_hub["commits"]
    assert "index/extra-from-an-old-format.npy" in first["files"]
    assert second["deleted"] == ["index/extra-from-an-old-format.npy"]  # removed in the same (one) commit
    latest = fake_hub["trees"][fake_hub["refs"][("me/tiny", "main")]]
    assert not [f for f in latest if f.startswith("index/") and f not in second["files"]]


def test_push_goes_the_large_upload_way_and_refuses_a_file_over_the_hubs_limit(trained, fake_hub, monkeypatch, capsys):
    from huggingface_hub import HfApi

    import hub.connect

    calls = []
    real = HfApi.upload_folder
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, **kw: calls.append(kw) or real(self, **kw))
    assert push(trained.model_dir, trained.index_dir, "me/tiny", log=lambda *_: None)
    (call,) = calls  # huggingface_hub's resumable path (with hf_xet; one create_commit without it, as here)
    assert call["repo_type"] == "model" and call["repo_id"] == "me/tiny" and len(fake_hub["commits"]) == 1
    monkeypatch.setattr(hub.connect, "HUB_FILE_LIMIT", 1000)  # as if the graph were over 50 GB
    capsys.readouterr()
    rc = hub_main(["push", "--model", str(trained.model_dir), "--index", str(trained.index_dir), "--repo-id", "me/tiny"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and re.search(r"error: \S+ is [\d.]+ [KM]B, over the Hub's limit of 50 GB", err)
    assert len(fake_hub["commits"]) == 1  # nothing more was sent


def test_an_interrupted_download_of_a_large_index_resumes(trained, fake_hub, tmp_path, monkeypatch):
    from twotowers import download
    from twotowers.pretrained import load_pretrained

    monkeypatch.setattr(download, "RESUMABLE_BYTES", 1000)  # the tiny graph counts as large
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 1024)  # written to disk a KB at a time (10 MB on the Hub)
    monkeypatch.setattr("time.sleep", lambda s: None)  # huggingface_hub's retry pause
    push(trained.model_dir, trained.index_dir, "me/tiny", log=lambda *_: None)
    size = (trained.index_dir / "hnsw.bin").stat().st_size
    fake_hub["cut"]["index/hnsw.bin"] = size // 2  # half of it arrives, then the connection drops for good
    cache = tmp_path / "hf-cache"
    with pytest.raises(OSError, match=r"model repo 'me/tiny': .*downloading it from the Hugging Face Hub failed"):
        load_pretrained("me/tiny", cache_dir=str(cache))
    (part,) = cache.glob("models--me--tiny/blobs/*.part")
    kept = part.stat().st_size
    assert kept == size // 2 // 1024 * 1024 > 0  # the whole chunks that arrived, kept for the next call
    fake_hub["down"].clear()  # the network is back
    fake_hub["served"].clear()
    model, index = load_pretrained("me/tiny", cache_dir=str(cache))
    assert ("index/hnsw.bin", f"bytes={kept}-") in fake_hub["downloads"]  # continued where it stopped
    assert fake_hub["served"]["index/hnsw.bin"] == size - kept  # only the rest was sent
    assert hits(index, QUERIES) == hits(trained.index, QUERIES) and not list(cache.glob("models--me--tiny/blobs/*.part"))


def test_an_unknown_hardware_flavor_is_one_line(capsys):
    rc = hub_main(["deploy-space", "--space-id", "me/s", "--model-repo", "me/m", "--hardware", "cpu-huge"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "--hardware 'cpu-huge' is not a Space hardware flavor: one of cpu-basic, cpu-upgrade" in err
