"""Towers of different architectures per side: a cheap query tower over a transformer passage tower."""

import numpy as np
import pytest
import torch
from test_distill import ToyTeacher, toy_texts
from tinymodel import make_tiny_base

from twotowers import TwoTowers


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return str(make_tiny_base(tmp_path_factory.mktemp("tiny-base")))  # a 32-wide, 1-layer BERT


def asymmetric(base: str) -> TwoTowers:
    torch.manual_seed(0)
    return TwoTowers(tower="mean", projection_dim=32, passage_tower="transformer", base_model=base).to("cpu")


def test_sides_keep_their_own_architecture_through_save_and_load(base, tmp_path):
    model = asymmetric(base)
    assert model.tower_name == "mean/transformer" and model.dim == 32
    assert TwoTowers(tower="mean", projection_dim=32, base_model=base).tower_name == "mean"
    texts = ["piano keys", "a river with fish and a boat"]
    model.save_pretrained(tmp_path)
    loaded = TwoTowers.from_pretrained(tmp_path)
    assert loaded.tower_name == "mean/transformer" and loaded.fingerprint() == model.fingerprint()
    np.testing.assert_array_equal(loaded.encode_queries(texts), model.encode_queries(texts))
    np.testing.assert_array_equal(loaded.encode_passages(texts), model.encode_passages(texts))
    # The passage side starts as the base encoder itself: the zero-shot transformer tower's vectors.
    zero_shot = TwoTowers(tower="transformer", projection_dim=None, base_model=base).to("cpu")
    np.testing.assert_allclose(model.encode_passages(texts), zero_shot.encode_passages(texts), atol=1e-6)


def test_sides_of_different_widths_are_refused(base):
    with pytest.raises(ValueError, match="query tower outputs 16 dims but the passage tower 32"):
        TwoTowers(tower="mean", projection_dim=16, passage_tower="transformer", base_model=base)


def _files(tmp_path, passages, queries):
    (tmp_path / "queries.tsv").write_text("".join(f"{i}\t{q}\n" for i, q in enumerate(queries)))
    (tmp_path / "collection.tsv").write_text("".join(f"{i}\t{p}\n" for i, p in enumerate(passages)))
    return [str(tmp_path / "queries.tsv"), str(tmp_path / "collection.tsv")]


def test_frozen_passage_tower_distils_the_query_side_only(base, tmp_path):
    from train.config import parse_config
    from train.loop import run

    teacher = TwoTowers(tower="transformer", projection_dim=None, base_model=base).to("cpu")
    teacher.save_pretrained(tmp_path / "teacher")
    passages, queries = toy_texts(120, 8, 1), toy_texts(120, 3, 2)
    tq = teacher.encode_queries(queries)
    torch.manual_seed(0)
    student = asymmetric(base)
    frozen = {k: v.clone() for k, v in student.passage_tower.state_dict().items()}
    before = float(np.mean(np.sum(student.encode_queries(queries) * tq, axis=1)))
    student.save_pretrained(tmp_path / "student")
    run(parse_config(["--init-from", str(tmp_path / "student"), "--freeze-passage-tower", "--distill-from",
                      str(tmp_path / "teacher"), "--distill-data", *_files(tmp_path, passages, queries),
                      "--distill-cache-dir", str(tmp_path / "cache"), "--epochs", "4", "--batch-size", "32",
                      "--learning-rate", "3e-2", "--distill-weight-kl", "0.1", "--distill-mine-k", "5",
                      "--num-workers", "0", "--no-wandb", "--device", "cpu", "--output-dir", str(tmp_path / "out")]))
    trained = TwoTowers.from_pretrained(tmp_path / "out")
    after = float(np.mean(np.sum(trained.encode_queries(queries) * tq, axis=1)))
    assert after > before + 0.2, (before, after)
    for k, v in trained.passage_tower.state_dict().items():
        assert torch.equal(v, frozen[k]), k  # the passage side (and so any index built with it) is unchanged


def test_a_frozen_passage_tower_that_is_not_the_teacher_keeps_its_vectors_and_learns_the_ranking(base, tmp_path,
                                                                                                 monkeypatch):
    import train.objectives
    from train.config import parse_config
    from train.loop import run

    teacher = ToyTeacher(dim=32)  # another space than the student's passage tower
    monkeypatch.setattr(train.objectives, "load_teacher", lambda name: teacher)
    passages, queries = toy_texts(120, 8, 1), toy_texts(120, 3, 2)
    torch.manual_seed(0)
    student = asymmetric(base)
    student.save_pretrained(tmp_path / "student")
    frozen_p = student.encode_passages(passages)
    tp, tq = teacher.encode_passages(passages), teacher.encode_queries(queries)

    def agreement(model) -> float:  # share of queries whose teacher top-1 passage is the model's top-1
        return float(np.mean((model.encode_queries(queries) @ frozen_p.T).argmax(1) == (tq @ tp.T).argmax(1)))

    before = agreement(student)
    run(parse_config(["--init-from", str(tmp_path / "student"), "--freeze-passage-tower", "--distill-from", "toy",
                      "--distill-data", *_files(tmp_path, passages, queries), "--distill-weight-kl", "1",
                      "--distill-cache-dir", str(tmp_path / "cache"), "--epochs", "6", "--batch-size", "32",
                      "--learning-rate", "3e-2", "--distill-mine-k", "5", "--num-workers", "0", "--no-wandb",
                      "--device", "cpu", "--output-dir", str(tmp_path / "out")]))
    trained = TwoTowers.from_pretrained(tmp_path / "out")
    np.testing.assert_array_equal(trained.encode_passages(passages), frozen_p)  # the index it built stays valid
    assert agreement(trained) > before + 0.2, (before, agreement(trained))


def test_models_of_one_architecture_keep_the_fingerprint_they_had_before_passage_tower_existed():
    # Indexes record their model's fingerprint; this is the value the formula gave before the option
    # was added, so indexes built then (the demo cache, published repos) still load with their model.
    # The weights are MiniLM's embedding table (fixed bytes) and a projection built from integers: a
    # seeded random init is computed by the CPU's float kernels and differs between CPU families.
    model = TwoTowers(tower="mean", projection_dim=16)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if "embeddings" not in name:
                ints = (torch.arange(p.numel(), dtype=torch.int64) * 7919) % 17 - 8
                p.copy_(ints.reshape(p.shape).to(p.dtype) / 16)  # exact in float32
    assert model.fingerprint() == "2d84818fe8bc5c1c58dbc03ed1fb4d5aff99afb82ba27dcaffca29808d95ff8c"


def test_model_card_names_each_side():
    from hub.card import build_card

    card = str(build_card("me/small-query", {"tower": "mean", "passage_tower": "transformer", "projection_dim": 384}, []))
    assert "`mean` (queries) / `transformer` (passages)" in card


def test_a_new_constructor_option_at_its_default_leaves_the_fingerprint_alone(monkeypatch):
    # A later release adds an option to TwoTowers.__init__: the mixin then records it (at its default)
    # in every model's config, old ones loaded included. Their fingerprints, and so the indexes saved
    # with them, must not change; a model that sets the option away from its default differs.
    import twotowers.model as model_module

    model = TwoTowers(tower="mean", projection_dim=16)
    before = model.fingerprint()
    defaults = model_module._option_defaults(TwoTowers)
    monkeypatch.setattr(model_module, "_option_defaults", lambda cls: {**defaults, "some_new_option": None})
    model._hub_mixin_config["some_new_option"] = None
    assert model.fingerprint() == before
    model._hub_mixin_config["some_new_option"] = "set"
    assert model.fingerprint() != before


def test_model_card_names_each_sides_base_pooling_and_prompt():
    from hub.card import build_card

    card = str(build_card("me/small-query", {"tower": "mean", "passage_tower": "transformer", "projection_dim": 384,
                                             "passage_base_model": "BAAI/bge-small-en-v1.5", "passage_pooling": "cls"},
                          []))
    assert "| tower | `mean` (queries) / `transformer` (passages) |" in card
    assert "| base model (passages) | [`BAAI/bge-small-en-v1.5`]" in card and "| pooling (passages) | cls |" in card
    assert "- BAAI/bge-small-en-v1.5" in card  # the front matter's base_model lists both
