"""Distillation: the teacher cache, the loss math, and students moving towards the teacher (toy data)."""

import hashlib
import math

import numpy as np
import pytest
import torch

from twotowers import TwoTowers
from twotowers.distill import (CosineToTeacherLoss, DistillConfig, ScoreDistillLoss, TeacherCache, adapt_to_corpus,
                               agreement, distill, read_texts, top_k)

WORDS = ("river bank money loan water fish boat coin stock market tree leaf green forest rain cloud storm "
         "engine car road wheel fuel train rail station music song guitar piano drum voice").split()


class ToyTeacher:
    """Bag of words with fixed random word vectors; counts the texts it encodes."""

    def __init__(self, dim: int = 32, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.vectors = {w: rng.standard_normal(dim).astype(np.float32) for w in WORDS}
        self.dim, self.seed, self.calls, self.texts = dim, seed, 0, 0

    def fingerprint(self) -> str:
        return hashlib.sha256(f"toy-{self.dim}-{self.seed}".encode()).hexdigest()

    def _enc(self, texts):
        self.calls += 1
        self.texts += len(texts)
        out = np.stack([sum(self.vectors[w] for w in t.split()) for t in texts])
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def encode_queries(self, texts, batch_size=256, show_progress=False):
        return self._enc(texts)

    def encode_passages(self, texts, batch_size=64, show_progress=False):
        return self._enc(texts)


def toy_texts(n: int, length: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=length)) for _ in range(n)]


@pytest.fixture(scope="module")
def corpus():
    return toy_texts(300, 8, 1), toy_texts(200, 3, 2)  # passages, queries


def test_cache_encodes_each_text_once_and_reuses_it_across_runs(tmp_path):
    teacher, texts = ToyTeacher(), toy_texts(50, 5, 0)
    cache = TeacherCache(tmp_path)
    a = cache.encode(teacher, texts, "passage", show_progress=False)
    assert teacher.calls == 1 and teacher.texts == len(set(texts))
    b = cache.encode(teacher, texts, "passage", show_progress=False)
    fresh = TeacherCache(tmp_path).encode(teacher, texts[::-1], "passage", show_progress=False)  # a new run
    assert teacher.calls == 1  # nothing recomputed, in this object or a fresh one
    np.testing.assert_allclose(a, b)
    np.testing.assert_allclose(fresh, a[::-1], atol=1e-6)
    np.testing.assert_allclose(a, teacher._enc(texts), atol=2e-3)  # float16 on disk, renormalised
    teacher.calls = teacher.texts = 0
    more = texts + ["river boat fish"]
    TeacherCache(tmp_path).encode(teacher, more, "passage", show_progress=False)
    assert teacher.texts == 1  # only the new text
    TeacherCache(tmp_path).encode(teacher, texts[:3], "query", show_progress=False)
    assert teacher.texts == 4  # queries are keyed apart from passages
    other = ToyTeacher(seed=1)  # another fingerprint: its own entries
    TeacherCache(tmp_path).encode(other, texts[:5], "passage", show_progress=False)
    assert other.texts == 5
    assert not list(tmp_path.rglob("*.pkl")) and list(tmp_path.rglob("*.safetensors"))


def test_corrupt_cache_shard_is_a_clear_error(tmp_path):
    teacher = ToyTeacher()
    TeacherCache(tmp_path).encode(teacher, ["river bank"], "passage", show_progress=False)
    shard = next(tmp_path.rglob("*.safetensors"))
    shard.write_bytes(shard.read_bytes()[:20])
    with pytest.raises(OSError, match=shard.name):
        TeacherCache(tmp_path).encode(teacher, ["river bank"], "passage", show_progress=False)


def test_cosine_to_teacher_loss_by_hand():
    s = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    t = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    assert CosineToTeacherLoss.compute_loss_from_embeddings(s, t).item() == pytest.approx(0.5)  # (1 + 0) / 2
    assert CosineToTeacherLoss.compute_loss_from_embeddings(t, t).item() == pytest.approx(0.0)
    loss = CosineToTeacherLoss(student_dim=2, teacher_dim=3)  # different widths: learned projection
    assert loss(s, torch.randn(2, 3)).shape == ()
    with pytest.raises(ValueError, match="dim"):
        CosineToTeacherLoss()(s, torch.randn(2, 3))


def test_score_distill_loss_by_hand_and_good_below_bad():
    tq = torch.tensor([[1.0, 0.0]])
    tp = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # teacher scores [1, 0]
    sp = torch.tensor([[0.0, 1.0], [1.0, 0.0]])  # student scores [0, 1]: the order reversed
    # KL(p_t || p_s) at temperature 1: p_t = softmax([1, 0]), p_s = softmax([0, 1])
    pt = torch.softmax(torch.tensor([1.0, 0.0]), 0)
    ps = torch.softmax(torch.tensor([0.0, 1.0]), 0)
    kl = float((pt * (pt.log() - ps.log())).sum())
    got = ScoreDistillLoss.compute_loss_from_embeddings(tq, sp, tq, tp, temperature=1.0)
    assert got.item() == pytest.approx(kl, rel=1e-5)
    mse = ScoreDistillLoss.compute_loss_from_embeddings(tq, sp, tq, tp, weight_kl=0.0, weight_mse=1.0)
    assert mse.item() == pytest.approx(1.0)  # ((0-1)^2 + (1-0)^2) / 2
    good = ScoreDistillLoss()(tq, tp, tq, tp)
    assert good.item() == pytest.approx(0.0, abs=1e-6) and good < got


def test_top_k_matches_full_sort():
    rng = np.random.default_rng(0)
    q, p = rng.standard_normal((7, 5)).astype(np.float32), rng.standard_normal((40, 5)).astype(np.float32)
    expect = np.argsort(-(q @ p.T), axis=1)[:, :6]
    np.testing.assert_array_equal(top_k(q, p, 6, chunk=3), expect)


def _mean_cos(student, teacher_vecs, texts):
    return float(np.mean(np.sum(student.encode_passages(texts) * teacher_vecs, axis=1)))


def test_distillation_moves_the_student_towards_the_teacher(tmp_path, corpus):
    passages, queries = corpus
    teacher, cache = ToyTeacher(), TeacherCache(tmp_path)
    tp = cache.encode(teacher, passages, "passage", show_progress=False)
    tq = cache.encode(teacher, queries, "query", show_progress=False)
    torch.manual_seed(0)
    student = TwoTowers(tower="mean", projection_dim=teacher.dim).to("cpu")
    before = _mean_cos(student, tp, passages)
    summary = distill(student, queries, passages, tq, tp,
                      DistillConfig(epochs=3, batch_size=64, learning_rate=3e-2, weight_kl=0.1, mine_k=5))
    after = _mean_cos(student, tp, passages)
    assert summary["steps"] > 0 and summary["final_loss"] is not None
    assert after > before + 0.3 and after > 0.8, (before, after)


def test_adapt_to_corpus_improves_agreement_with_the_teacher(tmp_path, corpus):
    passages, queries = corpus
    teacher, cache = ToyTeacher(), TeacherCache(tmp_path)
    torch.manual_seed(0)
    student = TwoTowers(tower="mean", projection_dim=teacher.dim).to("cpu")
    tq = cache.encode(teacher, queries, "query", show_progress=False)
    tp = cache.encode(teacher, passages, "passage", show_progress=False)
    calls = teacher.calls
    before = agreement(student, tq, tp, queries, passages)
    summary = adapt_to_corpus(student, passages, teacher, epochs=3, queries=queries, cache=cache,
                              cfg=DistillConfig(batch_size=64, learning_rate=3e-2, weight_kl=0.1, mine_k=5))
    after = agreement(student, tq, tp, queries, passages)
    assert teacher.calls == calls  # teacher outputs came from the cache
    assert after > before + 0.1, (before, after)  # measured 0.39 -> 0.57
    assert {"total_seconds", "teacher_seconds", "cache_mib", "texts_seen"} <= summary.keys()


def test_read_texts_formats_and_errors(tmp_path):
    (tmp_path / "queries.tsv").write_text("1\triver bank\n2\tfish boat\n")
    (tmp_path / "collection.tsv").write_text("10\tmoney loan\n11\tfish boat\n")
    (tmp_path / "triples.tsv").write_text("q one\tpos one\tneg one\n")
    (tmp_path / "rows.jsonl").write_text('{"query": "q two", "passages": {"passage_text": ["a", "b"], "is_selected": [1, 0]}}\n'
                                         '{"query": "q three", "candidates": [{"text": "c"}]}\n')
    q, p = read_texts([tmp_path / n for n in ("queries.tsv", "collection.tsv", "triples.tsv", "rows.jsonl")])
    assert q == ["river bank", "fish boat", "q one", "q two", "q three"]
    assert p == ["money loan", "fish boat", "pos one", "neg one", "a", "b", "c"]
    (tmp_path / "bad.tsv").write_text("1\tok\nonly-one-column\n")
    with pytest.raises(ValueError, match=r"bad.tsv:2"):
        read_texts([tmp_path / "bad.tsv"])


def test_cache_writes_bounded_shards(tmp_path):
    teacher, texts = ToyTeacher(), toy_texts(25, 6, 3)
    a = TeacherCache(tmp_path, shard_size=10).encode(teacher, texts, "passage", show_progress=False)
    assert len(list(tmp_path.rglob("passage-*.safetensors"))) == 3 and teacher.calls == 3
    np.testing.assert_allclose(TeacherCache(tmp_path).encode(teacher, texts, "passage"), a)
    assert teacher.calls == 3


def test_max_seconds_bounds_a_run(corpus):
    passages, queries = corpus
    teacher = ToyTeacher()
    student = TwoTowers(tower="mean", projection_dim=teacher.dim).to("cpu")
    summary = distill(student, queries, passages, teacher._enc(queries), teacher._enc(passages),
                      DistillConfig(epochs=50, batch_size=8, max_seconds=0.5, mine_k=5))
    assert summary["stopped_early"] and summary["steps"] < 50 * 25


def test_a_run_that_fits_its_time_cap_is_not_reported_as_stopped(corpus):
    passages, queries = corpus
    teacher = ToyTeacher()
    student = TwoTowers(tower="mean", projection_dim=teacher.dim).to("cpu")
    full = distill(student, queries, passages, teacher._enc(queries), teacher._enc(passages),
                   DistillConfig(epochs=1, batch_size=8, mine_k=5))
    capped = distill(TwoTowers(tower="mean", projection_dim=teacher.dim).to("cpu"), queries, passages,
                     teacher._enc(queries), teacher._enc(passages),
                     DistillConfig(epochs=1, batch_size=8, mine_k=5, max_seconds=3600))
    assert capped["steps"] == full["steps"] and not capped["stopped_early"] and not full["stopped_early"]
