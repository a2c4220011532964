"""TwoTowers: base resolution, encoding contract, save/load round-trips, bad input."""

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from twotowers import MINILM_ID, TOWER_TYPES, TwoTowers, resolve_base_model
from twotowers.base import MINILM_SAFETENSORS_SHA256, sha256_file

QUERIES = ["what is the reserve bank of australia", "how tall is the eiffel tower", "symptoms of flu"]
PASSAGES = [
    "The Reserve Bank of Australia (RBA) is Australia's central bank.",
    "The Eiffel Tower is 330 metres tall.",
    "Flu symptoms include fever, cough and sore throat.",
    "",
]


@pytest.fixture(scope="module", params=TOWER_TYPES)
def model(request):
    torch.manual_seed(0)
    return TwoTowers(tower=request.param, projection_dim=32 if request.param != "transformer" else None)


def test_base_model_resolves_to_packaged_minilm():
    path = resolve_base_model(MINILM_ID)
    assert sha256_file(path / "model.safetensors") == MINILM_SAFETENSORS_SHA256
    assert resolve_base_model(str(path)) == path  # a local dir works too


def test_missing_base_model_dir_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        resolve_base_model(str(tmp_path))


def test_default_is_the_seed_model():
    model = TwoTowers()
    assert model.tower_config.tower == "mean" and model.dim == 256
    with safe_open(str(resolve_base_model(MINILM_ID) / "model.safetensors"), "pt") as f:
        minilm = f.get_tensor("embeddings.word_embeddings.weight")
    # Both towers start from all-MiniLM-L6-v2's word embeddings, as separate parameters.
    assert torch.equal(model.query_tower.embeddings.weight.cpu(), minilm)
    assert torch.equal(model.passage_tower.embeddings.weight.cpu(), minilm)
    assert model.query_tower.embeddings.weight.data_ptr() != model.passage_tower.embeddings.weight.data_ptr()


def test_encode_contract(model):
    q, p = model.encode_queries(QUERIES), model.encode_passages(PASSAGES)
    assert q.dtype == np.float32 and q.shape == (3, model.dim) and p.shape == (4, model.dim)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-5)
    assert np.isfinite(p).all()


def test_batching_and_padding_do_not_change_vectors(model):
    texts = PASSAGES[:3] + [" ".join(QUERIES * 5)]
    together = model.encode_passages(texts, batch_size=4)
    one_by_one = np.concatenate([model.encode_passages([t]) for t in texts])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)


def test_bad_input_is_refused_with_a_clear_message(model):
    with pytest.raises(TypeError, match="list of strings.*wrap a single text"):
        model.encode_queries("just one string")
    with pytest.raises(TypeError, match="item 1 is int"):
        model.encode_passages(["ok", 3])
    with pytest.raises(TypeError, match="list of strings"):
        model.encode_queries(None)
    with pytest.raises(ValueError, match="batch_size"):
        model.encode_queries(["x"], batch_size=0)
    assert model.encode_queries([]).shape == (0, model.dim)


def test_a_one_megabyte_string_is_truncated_not_a_crash(model):
    huge = "retrieval " * 100_000  # 1 MB
    vec = model.encode_passages([huge])
    assert vec.shape == (1, model.dim) and np.isfinite(vec).all()
    assert len(model.tokenize_passages([huge])[0]) == model.max_passage_length


def _encode_in_fresh_process(model_dir: Path, out: Path) -> np.ndarray:
    code = (
        "import sys, pickle, numpy as np, torch\n"
        # The same thread count as this process: a float sum split over other threads may round apart.
        f"torch.set_num_threads({torch.get_num_threads()})\n"
        "def _no_pickle(*a, **k): raise AssertionError('pickle load attempted')\n"
        "torch.load = pickle.load = pickle.loads = _no_pickle\n"
        "from twotowers import TwoTowers\n"
        "m = TwoTowers.from_pretrained(sys.argv[1])\n"
        "assert not m.training\n"
        f"q = m.encode_queries({QUERIES!r}); p = m.encode_passages({PASSAGES!r})\n"
        "np.save(sys.argv[2], np.concatenate([q, p]))\n"
    )
    subprocess.run([sys.executable, "-c", code, str(model_dir), str(out)], check=True)
    return np.load(out)


@pytest.mark.slow  # fresh processes
def test_save_then_load_in_a_fresh_process_gives_identical_vectors(model, tmp_path):
    model.save_pretrained(tmp_path / "m")
    files = {p.name for p in (tmp_path / "m").iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "base_config.json"} <= files
    assert not any(f.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt")) for f in files)
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["tower"] == model.tower_config.tower and config["projection_dim"] == model.tower_config.projection_dim
    assert config["max_passage_length"] == model.max_passage_length
    expected = np.concatenate([model.encode_queries(QUERIES), model.encode_passages(PASSAGES)])
    np.testing.assert_array_equal(_encode_in_fresh_process(tmp_path / "m", tmp_path / "out.npy"), expected)


def test_loading_reads_no_pickle_and_matches_fingerprint(tmp_path, monkeypatch):
    model = TwoTowers(tower="gru", projection_dim=16, rnn_hidden_size=8)
    model.save_pretrained(tmp_path)

    def refuse(*a, **k):
        raise AssertionError("pickle load attempted")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    loaded = TwoTowers.from_pretrained(tmp_path)
    assert loaded.fingerprint() == model.fingerprint()
    assert loaded.tower_config == model.tower_config


def test_loading_a_bad_dir_says_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a saved TwoTowers model"):
        TwoTowers.from_pretrained(tmp_path)
    model = TwoTowers(projection_dim=8)
    model.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # truncated download
    with pytest.raises(OSError, match="model.safetensors"):
        TwoTowers.from_pretrained(tmp_path)


def test_a_broken_or_unreadable_saved_model_is_one_line_naming_the_file(tmp_path, monkeypatch):
    """Each was a traceback, a Hub message about repo ids, or "no such file" for a file that is there."""
    from twotowers import textfiles

    torch.manual_seed(0)
    TwoTowers(projection_dim=8).save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").stat().st_mode & 0o044 == 0o044  # not 0600 (safetensors' own)

    def broken(edit, name="config.json"):
        d = tmp_path / f"b{len(list(tmp_path.iterdir()))}"
        d.mkdir()
        for p in (tmp_path / "m").iterdir():
            (d / p.name).write_bytes(p.read_bytes())
        text = (d / name).read_text()
        (d / name).write_text(edit(text))
        return d

    with pytest.raises(ValueError, match=r"config.json is not valid JSON \(line \d+: .*\): cut short or corrupt"):
        TwoTowers.from_pretrained(broken(lambda t: t[:40]))
    with pytest.raises(ValueError, match=r"config.json: projection_dim 100000000000 is not a plausible size"):
        TwoTowers.from_pretrained(broken(lambda t: t.replace('"projection_dim": 8', '"projection_dim": 100000000000')))
    with pytest.raises(ValueError, match=r"base_config.json: vocab_size 300000000000 is not a plausible size"):
        TwoTowers.from_pretrained(broken(lambda t: t.replace('"vocab_size": 30522', '"vocab_size": 300000000000'),
                                         "base_config.json"))
    with pytest.raises(ValueError, match=r"base_config.json is not valid JSON"):
        TwoTowers.from_pretrained(broken(lambda t: t[:30], "base_config.json"))
    with pytest.raises(ValueError, match=r"base_config.json lacks hidden_size"):
        TwoTowers.from_pretrained(broken(lambda t: t.replace('"hidden_size"', '"width"'), "base_config.json"))
    with pytest.raises(ValueError, match=r"config.json: max_query_length is '64', expected int: the file is corrupt"):
        TwoTowers.from_pretrained(broken(lambda t: t.replace('"max_query_length": 64', '"max_query_length": "64"')))
    with pytest.raises(FileNotFoundError, match=r"model 'runs/no-such/model': no such directory \(and not a Hub repo id"):
        TwoTowers.from_pretrained("runs/no-such/model")
    with pytest.raises(OSError, match=r"model 'someone/not-cached': no such local directory, and not in the Hugging "
                                      r"Face cache \(offline: HF_HUB_OFFLINE is set"):
        TwoTowers.from_pretrained("someone/not-cached")
    real_open = open

    def private(path, *a, **k):  # what another user's 0600 file answers
        if str(path).endswith("model.safetensors"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr(textfiles, "open", private, raising=False)
    with pytest.raises(PermissionError, match=r"model.safetensors is not readable by this user \(mode 644, owner uid \d+\): "
                                              r"run `chmod a\+r "):
        TwoTowers.from_pretrained(tmp_path / "m")


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="tower must be one of"):
        TwoTowers(tower="cnn")
    with pytest.raises(ValueError, match="projection_dim"):
        TwoTowers(projection_dim=0)
    with pytest.raises(ValueError, match=r"TwoTowers: projection_dim 10000000 is not a plausible size"):
        TwoTowers(projection_dim=10**7)


def test_untrained_transformer_tower_reproduces_sentence_transformers(dev_passages):
    from sentence_transformers import SentenceTransformer

    ours = TwoTowers(tower="transformer", projection_dim=None).encode_passages(dev_passages)
    reference = SentenceTransformer(str(resolve_base_model(MINILM_ID)), device="cpu")
    theirs = reference.encode(dev_passages, normalize_embeddings=True, convert_to_numpy=True)
    cosine = (ours * theirs).sum(1)
    assert len(cosine) == 500 and cosine.min() >= 0.999


def _reference(model, texts, together: bool):
    """Today's query vectors, by hand: the tower's own layers on padded token ids, normalised; one text
    at a time (a search), or all in one batch, longest first (`encode_queries` of a list)."""
    import torch.nn.functional as F

    tower, ids = model.query_tower, model.tokenize_queries(texts)
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i])) if together else range(len(ids))
    groups = [list(order)] if together else [[i] for i in order]
    out = np.empty((len(texts), model.dim), dtype=np.float32)
    with torch.inference_mode():
        for rows in groups:
            i, mask = model.tokenizer.pad([ids[r] for r in rows])
            m = mask.unsqueeze(-1).float()  # [B, T, 1]
            pooled = (tower.embeddings(i) * m).sum(1) / m.sum(1).clamp(min=1.0)
            out[rows] = F.normalize(tower.projection(pooled).float(), dim=-1).numpy()
    return out


def test_a_single_query_is_fast_path_but_the_same_vector(monkeypatch):
    """One query (the app's and the API's case) takes the mean tower's projected-table path: no matrix
    product, no mode flips; its vector is today's to float rounding, and batches are unchanged."""
    torch.manual_seed(0)
    model = TwoTowers(tower="mean", projection_dim=64).eval()
    texts = ["what is the reserve bank of australia", "piano", "", "a b c " * 40]
    np.testing.assert_array_equal(model.encode_queries(texts), _reference(model, texts, together=True))
    visits = []
    monkeypatch.setattr(torch.nn.Module, "train", lambda self, mode=True: visits.append(mode) or self)
    singles = np.concatenate([model.encode_queries([t]) for t in texts])
    assert visits == []  # an eval-mode model is encoded without walking (or flipping) its modules
    np.testing.assert_allclose(singles, _reference(model, texts, together=False), atol=1e-6)
    model.query_tower.projection.weight.data.mul_(2.0)  # new weights: the cached table follows them
    np.testing.assert_allclose(model.encode_queries(texts[:1]), _reference(model, texts[:1], together=False), atol=1e-6)


@pytest.mark.parametrize("tower", ["gru", "lstm"])
def test_rnn_tower_equals_the_packed_bidirectional_rnn(tower):
    """The chunked, padded two-direction run gives what nn.GRU/nn.LSTM give over packed sequences."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    from twotowers.towers import masked_mean

    texts = ["a short one", "", "a much longer passage about rivers and boats " * 12, "mid length text"] * 20
    for layers in (1, 2):
        torch.manual_seed(0)
        model = TwoTowers(tower=tower, projection_dim=32, rnn_hidden_size=16, rnn_layers=layers).eval()
        tw = model.passage_tower
        ids, mask = model.tokenizer.pad(model.tokenize_passages(texts))
        with torch.no_grad():
            packed = pack_padded_sequence(tw.embeddings(ids), mask.sum(1).clamp(min=1), batch_first=True,
                                          enforce_sorted=False)
            out, _ = pad_packed_sequence(tw.rnn(packed)[0], batch_first=True, total_length=ids.shape[1])
            expected = tw.projection(masked_mean(out, mask))
            torch.testing.assert_close(tw(ids, mask), expected, atol=1e-6, rtol=0)


def test_encoding_is_stateless_a_new_model_is_in_eval_mode_and_never_flipped(monkeypatch):
    model = TwoTowers(tower="mean", projection_dim=8)
    assert not model.training  # ready to encode as built; training code calls .train() itself
    flips = []
    monkeypatch.setattr(torch.nn.Module, "train", lambda self, mode=True: flips.append(mode) or self)
    model.encode_queries(["one query"])
    model.encode_queries(["two", "queries"])
    model.encode_passages(["a passage"])
    assert flips == []
    monkeypatch.undo()
    model.train()
    with pytest.raises(RuntimeError, match="eval-mode model"):
        model.encode_queries(["dropout would make this random"])
