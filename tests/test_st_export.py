"""The sentence-transformers export: `SentenceTransformer(dir)`, in a fresh process with only its own
modules, gives the same vectors as `TwoTowers.encode_queries` / `encode_passages` (same truncation)."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tinymodel import QUERY_PROMPT, make_tiny_base, make_tiny_st_base

from twotowers import TwoTowers
from twotowers.st_export import SUPPORTED_TOWERS, supports_sentence_transformers, write_sentence_transformers

MAX_QUERY, MAX_PASSAGE = 8, 16
LONG_QUERY = "What IS the Reserve Bank of Australia, and who decides its cash rate every month?"
LONG_PASSAGE = ("The Reserve Bank of Australia (RBA) is Australia's central bank and banknote issuing authority. "
                "It has had this role since 14 January 1960, when the Reserve Bank Act 1959 removed the central "
                "banking functions from the Commonwealth Bank.")
TEXTS = [LONG_QUERY, LONG_PASSAGE, "", "   ", "?!... ,;:", "MiXeD CaSe Piano KEYS", "Café déjà vu, naïve", "x"]

BASE, ST_BASE = "<tiny base>", "<tiny sentence-transformers base>"  # filled in by the fixture
CASES = {  # name -> TwoTowers options (the tiny bases are 32 wide)
    "mean": dict(tower="mean", projection_dim=16),
    "mean-unprojected": dict(tower="mean", projection_dim=None),
    "transformer": dict(tower="transformer", projection_dim=None),
    "transformer-projected": dict(tower="transformer", projection_dim=16),
    "mean/transformer": dict(tower="mean", projection_dim=32, passage_tower="transformer"),
    # bases in sentence-transformers layout pooled by CLS with a query prompt, as bge-small-en-v1.5 is
    "cls-prompted": dict(tower="transformer", projection_dim=None, base_model=ST_BASE),
    "mean/cls-prompted": dict(tower="mean", projection_dim=32, passage_tower="transformer", passage_base_model=ST_BASE),
    "transformer/cls-prompted": dict(tower="transformer", projection_dim=None, base_model=ST_BASE,
                                     passage_base_model=BASE),
}

# Runs in a fresh interpreter: sentence-transformers only, nothing imported from twotowers.
ST_SCRIPT = r"""
import json, sys, traceback
import numpy as np
from sentence_transformers import SentenceTransformer

jobs, texts = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for job in jobs:
    try:
        st = SentenceTransformer(job["dir"], device="cpu")
        q = st.encode_query(texts, normalize_embeddings=True, convert_to_numpy=True)
        p = st.encode_document(texts, normalize_embeddings=True, convert_to_numpy=True)
        np.save(job["out"] + "-q.npy", np.asarray(q, dtype=np.float32), allow_pickle=False)
        np.save(job["out"] + "-p.npy", np.asarray(p, dtype=np.float32), allow_pickle=False)
        routes = st[0].sub_modules
        lengths = {r: getattr(routes[r][0], "max_seq_length", None) for r in ("query", "document")}
        lengths = {r: (v if isinstance(v, int) else None) for r, v in lengths.items()}  # StaticEmbedding: inf
        info = {"modules": [type(m).__name__ for m in st], "max_seq_length": lengths,
                "routes": {r: [type(m).__name__ for m in routes[r]] for r in routes}}
    except Exception:
        info = {"error": traceback.format_exc()}
    with open(job["out"] + ".json", "w") as f:
        json.dump(info, f)
"""


def _perturb(module: torch.nn.Module, seed: int) -> None:
    """Noise on every weight, so matching vectors prove the export carries this model's weights."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)


def _digests(directory: Path) -> dict[str, str]:
    return {p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in directory.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return str(make_tiny_base(tmp_path_factory.mktemp("tiny-base")))  # a 32-wide, 1-layer BERT


@pytest.fixture(scope="module")
def st_base(tmp_path_factory):
    return str(make_tiny_st_base(tmp_path_factory.mktemp("tiny-st-base")))  # the same, CLS-pooled, prompted


@pytest.fixture(scope="module")
def exported(base, st_base, tmp_path_factory):
    """Each case saved + exported, then ALL loaded by sentence-transformers in one fresh process."""
    root = tmp_path_factory.mktemp("st-export")
    cases, jobs = {}, []
    for i, (name, options) in enumerate(CASES.items()):
        torch.manual_seed(i)
        options = {k: {BASE: base, ST_BASE: st_base}.get(v, v) for k, v in {"base_model": BASE, **options}.items()}
        model = TwoTowers(max_query_length=MAX_QUERY, max_passage_length=MAX_PASSAGE, **options)
        model = model.to("cpu").eval()
        before = model.encode_queries(TEXTS), model.encode_passages(TEXTS)
        _perturb(model.query_tower, 100 + i)
        _perturb(model.passage_tower, 200 + i)
        directory = root / name.replace("/", "-")
        model.save_pretrained(directory)
        root_files = _digests(directory)
        written = write_sentence_transformers(model, directory)
        cases[name] = dict(model=model, dir=directory, before=before, written=written, root_files=root_files,
                           out=str(root / f"{name.replace('/', '-')}-st"))
        jobs.append({"dir": str(directory), "out": cases[name]["out"]})
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, "-c", ST_SCRIPT, json.dumps(jobs), json.dumps(TEXTS)],
                          cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for case in cases.values():
        case["stderr"] = proc.stderr
        case["info"] = json.loads(Path(case["out"] + ".json").read_text())
    return cases


def test_texts_exercise_truncation(base):
    model = TwoTowers(tower="transformer", projection_dim=None, base_model=base,
                      max_query_length=MAX_QUERY, max_passage_length=MAX_PASSAGE).to("cpu")
    full = model.tokenizer.encode([LONG_QUERY, LONG_PASSAGE], 10_000, add_special_tokens=False)
    assert len(full[0]) > MAX_QUERY and len(full[1]) > MAX_PASSAGE
    assert [len(ids) for ids in model.tokenize_queries([LONG_QUERY, LONG_PASSAGE])] == [MAX_QUERY, MAX_QUERY]
    assert [len(ids) for ids in model.tokenize_passages([LONG_PASSAGE])] == [MAX_PASSAGE]


@pytest.mark.slow  # a fresh process loads the exports in sentence-transformers
@pytest.mark.parametrize("name", list(CASES))
def test_sentence_transformers_gives_the_same_vectors(exported, name):
    case = exported[name]
    info, model = case["info"], case["model"]
    assert "error" not in info, info.get("error")
    assert info["modules"] == ["Router", "Normalize"]
    expected_route = {"mean": "StaticEmbedding", "transformer": "Transformer"}
    assert info["routes"]["query"][0] == expected_route[model.tower_config.tower]
    assert info["routes"]["document"][0] == expected_route[model.passage_tower_config.tower]
    for route, limit in (("query", MAX_QUERY), ("document", MAX_PASSAGE)):
        if info["routes"][route][0] == "Transformer":
            assert info["max_seq_length"][route] == limit
    assert "MISSING" not in case["stderr"] and "newly initialized" not in case["stderr"], case["stderr"][-2000:]

    q, p = model.encode_queries(TEXTS), model.encode_passages(TEXTS)
    st_q = np.load(case["out"] + "-q.npy", allow_pickle=False)
    st_p = np.load(case["out"] + "-p.npy", allow_pickle=False)
    assert st_q.shape == q.shape == p.shape == st_p.shape == (len(TEXTS), model.dim)
    diff_q, diff_p = float(np.abs(st_q - q).max()), float(np.abs(st_p - p).max())
    print(f"{name}: max |diff| query {diff_q:.2e}, passage {diff_p:.2e}")
    assert diff_q <= 1e-5 and diff_p <= 1e-5, (diff_q, diff_p)
    # The perturbation moved the vectors far more than the tolerance: the weights were carried over.
    assert np.abs(q - case["before"][0]).max() > 1e-2 and np.abs(p - case["before"][1]).max() > 1e-2


@pytest.mark.slow  # a fresh process loads the exports in sentence-transformers
@pytest.mark.parametrize("name", list(CASES))
def test_twotowers_files_are_untouched_and_still_load(exported, name):
    case = exported[name]
    directory, model = case["dir"], case["model"]
    assert _digests(directory).items() >= case["root_files"].items()  # same bytes for every save_pretrained file
    assert sorted(set(_digests(directory)) - set(case["root_files"])) == case["written"]
    loaded = TwoTowers.from_pretrained(str(directory)).to("cpu")
    assert loaded.fingerprint() == model.fingerprint()
    np.testing.assert_array_equal(loaded.encode_queries(TEXTS), model.encode_queries(TEXTS))
    np.testing.assert_array_equal(loaded.encode_passages(TEXTS), model.encode_passages(TEXTS))


@pytest.mark.slow  # a fresh process loads the exports in sentence-transformers
def test_export_again_replaces_the_previous_modules(exported, tmp_path):
    write_sentence_transformers(exported["transformer-projected"]["model"], tmp_path)
    written = write_sentence_transformers(exported["mean"]["model"], tmp_path)
    on_disk = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert on_disk == written and not any("Transformer" in f or "Pooling" in f for f in on_disk)


@pytest.mark.parametrize("options", [
    dict(tower="gru", projection_dim=16, rnn_hidden_size=8),
    dict(tower="mean", projection_dim=16, passage_tower="lstm", passage_projection_dim=16, rnn_hidden_size=8),
])
def test_rnn_towers_are_refused(base, tmp_path, options):
    model = TwoTowers(base_model=base, **options).to("cpu")
    assert not supports_sentence_transformers(model) and "gru" not in SUPPORTED_TOWERS
    with pytest.raises(ValueError, match=r"loads with twotowers only: TwoTowers\.from_pretrained\(\.\.\.\)"):
        write_sentence_transformers(model, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # a fresh process loads the exports in sentence-transformers
def test_owned_paths_cover_everything_written(exported):
    from twotowers.st_export import OWNED_PATHS

    for case in exported.values():
        assert all(f.startswith(OWNED_PATHS) for f in case["written"])


@pytest.mark.slow  # a fresh process loads the exports in sentence-transformers
def test_the_towers_pool_and_prompt_as_their_bases_say(exported):
    # CLS pooling and the query prompt come from the base's own files, per side, and are saved
    bge_like, mixed = exported["cls-prompted"]["model"], exported["mean/cls-prompted"]["model"]
    assert bge_like.tower_config.pooling == bge_like.passage_tower_config.pooling == "cls"
    assert (bge_like.query_prompt, bge_like.passage_prompt) == (QUERY_PROMPT, "")
    assert bge_like.tokenize_queries(["x"])[0][:3] == bge_like.tokenize_passages([QUERY_PROMPT + "x"])[0][:3]
    assert mixed.tower_config.tower == "mean" and mixed.passage_tower_config.pooling == "cls"
    assert mixed.query_prompt == "" and mixed.passage_tokenizer is not mixed.tokenizer  # a mean tower takes no prompt
    reverse = exported["transformer/cls-prompted"]["model"]  # the query side's base prompts and pools by CLS
    assert reverse.tower_config.pooling == "cls" and reverse.passage_tower_config.pooling == "mean"
    assert (reverse.query_prompt, reverse.passage_prompt) == (QUERY_PROMPT, "")
    for name in ("cls-prompted", "mean/cls-prompted"):
        config = json.loads((exported[name]["dir"] / "config.json").read_text())
        st_config = json.loads((exported[name]["dir"] / "config_sentence_transformers.json").read_text())
        assert config.get("query_prompt") == (exported[name]["model"].query_prompt or None)
        assert st_config["prompts"]["query"] == exported[name]["model"].query_prompt
    assert (exported["mean/cls-prompted"]["dir"] / "passage" / "base_config.json").is_file()
