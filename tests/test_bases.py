"""Any sentence-transformers bi-encoder as a teacher and as a tower, pooled and prompted as its own files
say (bge-small-en-v1.5: CLS pooling, a query prompt), and a model whose two towers have different bases."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_asymmetric import _files
from test_distill import toy_texts
from tinymodel import QUERY_PROMPT, make_tiny_base, make_tiny_st_base

from twotowers import TwoTowers
from twotowers.teacher import SentenceTransformerTeacher, TeacherCache, load_teacher

ROOT = Path(__file__).resolve().parents[1]
FETCH_BGE = ROOT.parent / "shared" / "models" / "fetch_bge_small.py"
TEXTS = ["piano keys", "a river with fish and a boat", "what is the reserve bank of australia"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return str(make_tiny_base(tmp_path_factory.mktemp("tiny-base")))  # mean pooling, no prompts


@pytest.fixture(scope="module")
def st_base(tmp_path_factory):
    return str(make_tiny_st_base(tmp_path_factory.mktemp("tiny-st-base")))  # CLS pooling, a query prompt


def _cls_vectors(directory: str, texts: list[str]) -> np.ndarray:
    """The [CLS] state of the raw encoder, normalised: what CLS pooling must give (by transformers alone)."""
    from transformers import AutoModel, AutoTokenizer

    tok, enc = AutoTokenizer.from_pretrained(directory), AutoModel.from_pretrained(directory).eval()
    with torch.no_grad():
        batch = tok(texts, padding=True, return_tensors="pt")
        cls = enc(**batch).last_hidden_state[:, 0]
    return torch.nn.functional.normalize(cls, dim=-1).numpy()


def test_a_sentence_transformers_teacher_pools_and_prompts_as_its_files_say(st_base):
    teacher = load_teacher(st_base)
    assert isinstance(teacher, SentenceTransformerTeacher) and teacher.prompts["query"] == QUERY_PROMPT
    q, p = teacher.encode_queries(TEXTS), teacher.encode_passages(TEXTS)
    np.testing.assert_allclose(p, _cls_vectors(st_base, TEXTS), atol=1e-5)  # CLS, no document prompt
    np.testing.assert_allclose(q, _cls_vectors(st_base, [QUERY_PROMPT + t for t in TEXTS]), atol=1e-5)
    # the transformer tower on that base reads the same files: the same vectors, side by side
    tower = TwoTowers(tower="transformer", projection_dim=None, base_model=st_base).to("cpu")
    assert tower.tower_config.pooling == "cls" and tower.query_prompt == QUERY_PROMPT
    np.testing.assert_allclose(tower.encode_queries(TEXTS), q, atol=1e-5)
    np.testing.assert_allclose(tower.encode_passages(TEXTS), p, atol=1e-5)


def test_a_hub_id_teacher_is_fetched_as_safetensors_and_json_only(st_base, monkeypatch):
    import huggingface_hub

    asked = {}

    def fake_snapshot(repo_id, allow_patterns=None, **kwargs):
        asked.update(repo_id=repo_id, allow_patterns=allow_patterns)
        return st_base

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    teacher = load_teacher("BAAI/bge-small-en-v1.5")
    assert isinstance(teacher, SentenceTransformerTeacher) and asked["repo_id"] == "BAAI/bge-small-en-v1.5"
    assert not any(p.endswith((".bin", ".pt", ".pkl", ".py")) or p == "*" for p in asked["allow_patterns"])


def test_the_teacher_cache_key_covers_every_file_and_the_prompts(st_base, tmp_path):
    copies = {}
    for name in ("a", "b", "c", "d"):
        copies[name] = tmp_path / name
        shutil.copytree(st_base, copies[name])
    (copies["b"] / "pytorch_model.bin").write_bytes(b"other weights beside the safetensors")  # any weight file
    from safetensors.torch import load_file, save_file

    weights = load_file(str(copies["c"] / "model.safetensors"))
    first = next(iter(weights))
    weights[first] = weights[first] + 1e-3
    save_file(weights, str(copies["c"] / "model.safetensors"))
    st = copies["d"] / "config_sentence_transformers.json"
    st.write_text(st.read_text().replace(QUERY_PROMPT, "search: "))
    fingerprints = {name: SentenceTransformerTeacher(path).fingerprint() for name, path in copies.items()}
    assert len(set(fingerprints.values())) == 4, fingerprints
    assert SentenceTransformerTeacher(copies["a"]).fingerprint() == fingerprints["a"]  # stable
    # the cache keeps each teacher's vectors apart: the prompted query vectors of d are its own
    cache, d = TeacherCache(tmp_path / "cache"), SentenceTransformerTeacher(copies["d"])
    cache.encode(SentenceTransformerTeacher(copies["a"]), TEXTS, "query", show_progress=False)
    qd = cache.encode(d, TEXTS, "query", show_progress=False)
    assert cache.computed == 2 * len(TEXTS)  # nothing of a's reused for d
    np.testing.assert_allclose(qd, d.encode_queries(TEXTS), atol=2e-3)  # float16 storage


@pytest.mark.slow  # a fresh process (python -m train)
def test_a_teacher_with_pickled_weights_only_is_refused_in_one_line(st_base, tmp_path):
    pickled = tmp_path / "pickled"
    shutil.copytree(st_base, pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    with pytest.raises(OSError, match="only as a pickle"):
        load_teacher(str(pickled))
    queries, collection = _files(tmp_path, toy_texts(10, 5, 1), toy_texts(10, 3, 2))
    proc = subprocess.run([sys.executable, "-m", "train", "--distill-from", str(pickled), "--distill-data", queries,
                           collection, "--no-wandb", "--no-save", "--device", "cpu"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    from conftest import one_error_line

    assert proc.returncode == 1 and "pickle" in one_error_line(proc.stderr)


def test_a_mixed_base_model_trains_saves_loads_exports_and_indexes(base, st_base, tmp_path):
    """A mean query tower (the plain base) over a frozen CLS-pooled, prompted passage tower (the
    sentence-transformers base) that is also the teacher: the headline recipe's shape in miniature."""
    from train.config import parse_config
    from train.loop import run
    from twotowers import PassageIndex
    from twotowers.st_export import write_sentence_transformers

    passages, queries = toy_texts(120, 8, 1), toy_texts(120, 3, 2)
    torch.manual_seed(0)
    run(parse_config(["--distill-from", st_base, "--distill-data", *_files(tmp_path, passages, queries),
                      "--tower", "mean", "--base-model", base, "--passage-tower", "transformer",
                      "--passage-base-model", st_base, "--freeze-passage-tower", "--epochs", "2", "--batch-size", "32",
                      "--learning-rate", "3e-2", "--distill-mine-k", "5", "--distill-cache-dir", str(tmp_path / "cache"),
                      "--num-workers", "0", "--no-wandb", "--device", "cpu", "--output-dir", str(tmp_path / "out")]))
    model = TwoTowers.from_pretrained(tmp_path / "out")
    assert model.tower_name == "mean/transformer" and model.passage_tower_config.pooling == "cls"
    assert model.max_passage_length == 64  # the passage base's own max_seq_length, not the query base's
    assert (tmp_path / "out" / "passage" / "base_config.json").is_file()
    teacher = SentenceTransformerTeacher(st_base)
    np.testing.assert_allclose(model.encode_passages(TEXTS), teacher.encode_passages(TEXTS), atol=1e-5)

    # sentence-transformers: each route with its own base, pooling and (no) prompt
    from sentence_transformers import SentenceTransformer

    write_sentence_transformers(model, tmp_path / "out")
    st = SentenceTransformer(str(tmp_path / "out"), device="cpu")
    np.testing.assert_allclose(st.encode_query(TEXTS), model.encode_queries(TEXTS), atol=1e-5)
    np.testing.assert_allclose(st.encode_document(TEXTS), model.encode_passages(TEXTS), atol=1e-5)

    # an index built by it records a fingerprint that knows the passage base: another base is refused
    index = PassageIndex.build(model, [str(i) for i in range(len(passages))], passages, tune_samples=20)
    index.save(tmp_path / "idx")
    assert PassageIndex.load(tmp_path / "idx", model).search([queries[0]], k=3)[0]
    torch.manual_seed(0)
    same_shape = TwoTowers(tower="mean", projection_dim=32, base_model=base, passage_tower="transformer",
                           passage_base_model=base).to("cpu")
    same_shape.query_tower.load_state_dict(model.query_tower.state_dict())
    same_shape.passage_tower.load_state_dict(model.passage_tower.state_dict())  # equal weights, other base named
    with pytest.raises(ValueError, match="another model"):
        PassageIndex.load(tmp_path / "idx", same_shape)

    # published: the repo tree carries the passage side's base files, and loads back with equal vectors
    import sys

    sys.path.insert(0, str(ROOT))
    from hub.push import stage_model_repo
    from twotowers.pretrained import load_pretrained

    files = stage_model_repo(tmp_path / "out", tmp_path / "idx", tmp_path / "repo", repo_id="me/mixed")
    assert {"passage/base_config.json", "passage/tokenizer.json", "index/index.json"} <= set(files)
    loaded, loaded_index = load_pretrained(tmp_path / "repo")
    np.testing.assert_array_equal(loaded.encode_passages(TEXTS), model.encode_passages(TEXTS))
    assert loaded_index.search([queries[0]], k=3)[0][0].id == index.search([queries[0]], k=3)[0][0].id

    # served: the app loads the repo and answers through its search function
    import app

    engine = app.load_engine(model_dir=str(tmp_path / "repo"), index_dir=str(tmp_path / "repo" / "index"),
                             cache=tmp_path / "app-cache", log=lambda *_: None)
    assert engine.model.passage_tower_config.pooling == "cls" and len(engine.index) == len(passages)
    assert engine.index.search([queries[0]], k=3)[0]


@pytest.fixture(scope="module")
def bge_small(tmp_path_factory):
    """The offline copy of BAAI/bge-small-en-v1.5 (../shared/models/fetch_bge_small.py), or a skip."""
    if not FETCH_BGE.is_file():
        pytest.skip(f"{FETCH_BGE} not found")
    proc = subprocess.run([sys.executable, str(FETCH_BGE)], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.skip(f"could not make the bge-small copy: {proc.stderr.strip()[-300:]}")
    return proc.stdout.strip().splitlines()[-1]


@pytest.mark.slow  # a fresh process fetches bge-small
def test_bge_small_as_a_tower_gives_its_own_vectors(bge_small, dev_passages):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(bge_small, device="cpu")
    model = TwoTowers(tower="mean", projection_dim=384, passage_tower="transformer", passage_base_model=bge_small,
                      max_passage_length=512).to("cpu")
    zero_shot = TwoTowers(tower="transformer", projection_dim=None, base_model=bge_small).to("cpu")
    assert zero_shot.query_prompt.startswith("Represent this sentence") and zero_shot.tower_config.pooling == "cls"
    passages, queries = dev_passages[:16], ["what is the reserve bank of australia", "how long to boil an egg"]
    np.testing.assert_allclose(model.encode_passages(passages), st.encode_document(passages), atol=1e-5)
    np.testing.assert_allclose(zero_shot.encode_queries(queries), st.encode_query(queries), atol=1e-5)
