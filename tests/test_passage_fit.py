"""`--fit-passage-tower`: a mean passage tower fitted in closed form to the teacher's vectors of the corpus."""

import numpy as np
import pytest
import torch
from test_distill import distill_args, toy  # noqa: F401 - the fixture

from train.passage_fit import ridge_fit, token_frequencies


def test_token_frequencies_are_each_passages_average():
    A = token_frequencies([[3, 1, 3], [], [0]], vocab_size=5).to_dense().numpy()
    np.testing.assert_allclose(A, [[0, 1 / 3, 0, 2 / 3, 0], [0, 0, 0, 0, 0], [1, 0, 0, 0, 0]])


def test_ridge_fit_is_the_closed_form_least_change_solution():
    rng = np.random.default_rng(0)
    ids = [list(rng.integers(0, 40, size=rng.integers(3, 9))) for _ in range(25)]
    A = token_frequencies(ids, 40)
    start, targets = rng.standard_normal((40, 6)), rng.standard_normal((25, 6))
    table, info = ridge_fit(A, start, targets, ridge=1e-3, tol=1e-10)
    dense = A.to_dense().numpy()
    expected = start + dense.T @ np.linalg.solve(dense @ dense.T + 1e-3 * np.eye(25), targets - dense @ start)
    np.testing.assert_allclose(table, expected, atol=1e-6)
    assert np.abs(dense @ table - targets).max() < np.abs(dense @ start - targets).max() / 10
    assert info["residual"] < 1e-8
    untouched = sorted(set(range(40)) - {t for row in ids for t in row})
    np.testing.assert_array_equal(table[untouched], start[untouched])  # words of no passage keep their rows


def test_fit_passage_tower_gives_the_corpus_its_teacher_vectors(toy):  # noqa: F811
    from train.config import parse_config
    from train.loop import run
    from twotowers import TwoTowers

    tmp, teacher, queries, passages = toy
    summary = run(parse_config(distill_args(tmp, "--fit-passage-tower")))
    model = TwoTowers.from_pretrained(tmp / "out")
    cos = (model.encode_passages(passages) * teacher.encode_passages(passages)).sum(1)
    assert cos.min() > 0.98 and summary["fit/mean_cosine"] > 0.99, (cos.min(), summary)
    # the query tower learnt against the teacher's passage vectors: it ranks the fitted passages as the teacher
    tq, tp = teacher.encode_queries(queries), teacher.encode_passages(passages)
    agree = np.mean((model.encode_queries(queries) @ model.encode_passages(passages).T).argmax(1) == (tq @ tp.T).argmax(1))
    assert agree > 0.6, agree


@pytest.mark.parametrize("flags, message", [
    (["--tower", "transformer"], "mean passage tower"),
    (["--passage-tower", "transformer"], "mean passage tower"),
    (["--fit-ridge", "0"], "--fit-ridge must be > 0"),
])
def test_fit_passage_tower_refuses_what_it_cannot_fit(toy, flags, message):  # noqa: F811
    from train.config import parse_config

    tmp = toy[0]
    with pytest.raises(SystemExit), pytest.MonkeyPatch.context():
        parse_config(distill_args(tmp, "--fit-passage-tower", *flags))
