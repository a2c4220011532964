"""IdSet: a repeated passage id is found (and named by its rows) among many batches, and nothing else is."""

import numpy as np
import pytest

import twotowers.ids as ids_module
from twotowers.ids import IdSet


def test_a_repeat_within_a_batch_names_both_rows():
    seen = IdSet()
    assert seen.first_repeat(["a", "b", "c"], 1) is None
    assert seen.first_repeat(["a", "b", "a", "b"], 10) == (12, 10)  # the first repeat: rows 12 and 10
    assert seen.first_repeat(["x", "y", "x"], [5, 9, 40]) == (40, 5)  # rows given one by one (lines)


def test_a_repeat_of_an_earlier_batch_is_found_after_many_merges():
    seen = IdSet()
    for b in range(20):  # 20 batches: the sorted runs merge like a binary counter
        batch = [f"p{b}-{i}" for i in range(500)]
        assert seen.first_repeat(batch, b * 500) is None
        seen.add(batch, b * 500)
    assert len(seen) == 10_000 and len(seen._runs) <= 5  # few runs, whatever the number of batches
    assert seen.first_repeat(["new", "p3-7", "p0-0"], 10_000) == (10_000 + 1, 3 * 500 + 7)
    assert seen.first_repeat(["new", "newer"], 10_000) is None


def test_first_repeat_does_not_add():
    seen = IdSet()
    seen.first_repeat(["a"], 0)
    assert len(seen) == 0 and seen.first_repeat(["a"], 1) is None


def test_a_hash_collision_is_not_a_repeat_when_the_ids_can_be_read_back(monkeypatch):
    real = ids_module.hash_ids
    monkeypatch.setattr(ids_module, "hash_ids", lambda ids: np.where(  # "cat" and "dog" share a hash
        np.isin(np.array(ids, dtype=object), ["cat", "dog"]), np.uint64(7), real(ids)))
    texts = ["cat"]
    confirmed = IdSet(id_of=lambda row: texts[row])
    confirmed.add(["cat"], 0)
    assert confirmed.first_repeat(["dog"], 1) is None and confirmed.first_repeat(["cat"], 1) == (1, 0)
    blind = IdSet()  # a stream whose earlier ids are gone: equal hashes count (odds ~n^2 / 2^65)
    blind.add(["cat"], 0)
    assert blind.first_repeat(["dog"], 1) == (1, 0)
    assert confirmed.first_repeat(["cat", "dog"], 5) == (5, 0)  # within the batch the strings decide


def test_a_copy_shares_what_was_seen_and_grows_on_its_own():
    original = IdSet()
    original.add(["a", "b"], 0)
    copy = original.copy(id_of=None)
    copy.add(["c"], 2)
    assert copy.first_repeat(["a"], 3) == (3, 0) and copy.first_repeat(["c"], 3) == (3, 2)
    assert original.first_repeat(["c"], 3) is None and len(original) == 2


@pytest.mark.parametrize("text", ["passage-1", "pässage-1", "passage 1\t", ""])
def test_hashes_are_of_the_exact_utf8_string(text):
    h = ids_module.hash_ids([text, text + " "])
    assert h.dtype == np.uint64 and h[0] != h[1]
