"""KeywordIndex: bm25s' BM25 scores, padding, incremental add, and save/load checked on load."""

import bm25s
import numpy as np
import pytest

from twotowers.index import KeywordIndex

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "A fox is a small omnivorous mammal; foxes live in dens.",
    "Dogs are loyal companions and popular pets.",
    "Paris is the capital and largest city of France.",
    "The capital of Australia is Canberra, not Sydney.",
    "Python is a programming language; pythons are snakes.",
    "Error code E1234 means the printer is out of paper.",
    "Running shoes help runners run faster.",
    "",
]
QUERIES = ["capital of France", "fox den", "what does E1234 mean", "zzzz unknown words", "running"]


def test_scores_equal_bm25s_on_the_same_tokens():
    kw = KeywordIndex.build(TEXTS, k1=0.9, b=0.4)
    tokens = [[kw.vocab[w] for w in kw.analyzer(t)] for t in TEXTS]
    ref = bm25s.BM25(k1=0.9, b=0.4, method="lucene")
    ref.index((tokens, dict(kw.vocab)), create_empty_token=False, show_progress=False)
    q = [kw.vocab[w] for w in kw.analyzer("capital of France") if w in kw.vocab]
    np.testing.assert_allclose(kw._bm25.get_scores_from_ids(q), ref.get_scores_from_ids(q), rtol=1e-6)
    np.testing.assert_allclose(kw.scores(q), ref.get_scores_from_ids(q), rtol=1e-6)
    rows = np.array([0, 3, 4, 8])
    np.testing.assert_allclose(kw.score_rows("capital of France", rows), ref.get_scores_from_ids(q)[rows], rtol=1e-6)


def test_search_best_first_pads_non_matches():
    kw = KeywordIndex.build(TEXTS)
    rows, scores = kw.search(QUERIES, k=4)
    assert rows.shape == scores.shape == (len(QUERIES), 4)
    assert rows.dtype == np.int64 and scores.dtype == np.float32
    assert rows[0, 0] == 3 and rows[2, 0] == 6              # the passage naming the rare term wins
    assert (rows[3] == -1).all() and (scores[3] == 0).all()  # no shared term: no hits
    assert (np.diff(scores, axis=1) <= 0).all()
    assert ((rows == -1) == (scores == 0)).all()
    # k larger than the corpus pads rather than failing
    rows, _ = kw.search(["fox"], k=50)
    assert set(rows[0][rows[0] >= 0]) == {0, 1}


def test_stemmer_matches_word_forms():
    pytest.importorskip("Stemmer")
    plain, stemmed = KeywordIndex.build(TEXTS, stemmer=None), KeywordIndex.build(TEXTS)  # English by default
    assert plain.search(["runs"], 3)[0][0, 0] == -1
    assert stemmed.search(["runs"], 3)[0][0, 0] == 7


def test_add_equals_build_and_save_load_round_trip(tmp_path):
    whole = KeywordIndex.build(TEXTS)
    grown = KeywordIndex.build(TEXTS[:4])
    grown.add(TEXTS[4:])
    assert len(grown) == len(TEXTS)
    r1, s1 = whole.search(QUERIES, 5)
    r2, s2 = grown.search(QUERIES, 5)
    np.testing.assert_array_equal(r1, r2)
    np.testing.assert_allclose(s1, s2, rtol=1e-6)

    whole.save(tmp_path / "kw")
    loaded = KeywordIndex.load(tmp_path / "kw")
    assert len(loaded) == len(TEXTS) and loaded.corpus_hash == whole.corpus_hash
    r3, s3 = loaded.search(QUERIES, 5)
    np.testing.assert_array_equal(r1, r3)
    np.testing.assert_array_equal(s1, s3)
    loaded.add(["a new passage about foxes"])  # add works after load (memory-mapped arrays are copied)
    assert loaded.search(["passage"], 1)[0][0, 0] == len(TEXTS)


def test_truncated_or_missing_files_are_named(tmp_path):
    KeywordIndex.build(TEXTS).save(tmp_path)
    f = tmp_path / "keyword_csc_data.npy"
    f.write_bytes(f.read_bytes()[:-8])
    with pytest.raises(ValueError, match="keyword_csc_data.npy"):
        KeywordIndex.load(tmp_path)
    (tmp_path / "keyword_vocab.json").unlink()
    with pytest.raises(FileNotFoundError, match="keyword_vocab.json"):
        KeywordIndex.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="keyword.json"):
        KeywordIndex.load(tmp_path / "nowhere")


def test_bad_input():
    kw = KeywordIndex.build(TEXTS)
    with pytest.raises(TypeError):
        kw.search("a single string", 3)
    with pytest.raises(ValueError):
        kw.search(["x"], 0)
