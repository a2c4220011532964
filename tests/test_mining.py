"""Hard-negative mining: positives and near-positive false negatives never come back as negatives."""

import numpy as np

from twotowers.data import LoadStats, read_triples
from twotowers.mine import mine_hard_negatives, mine_texts
from twotowers.mine.__main__ import main as mine_main


def unit(*rows):
    a = np.array(rows, dtype=np.float32)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def test_mining_skips_positives_and_likely_false_negatives():
    q = unit([1, 0, 0])
    pool = unit([1, 0.05, 0],   # 0: the labelled positive (score ~1.0)
                [1, 0.1, 0],    # 1: scores above 0.95 x positive: a likely unlabelled positive
                [1, 0.8, 0],    # 2: hard negative (~0.78)
                [1, 1.5, 0],    # 3: easier negative (~0.55)
                [0, 1, 0])      # 4: unrelated (0)
    negs, stats = mine_hard_negatives(q, pool[[0]], pool, [{0}], k=5, per_query=2, max_ratio=0.95)
    assert negs == [[2, 3]]  # hardest first, at most per_query
    assert stats.dropped_positive == 1 and stats.dropped_false_negative == 1 and stats.triples == 2
    negs, _ = mine_hard_negatives(q, pool[[0]], pool, [{0}], k=5, per_query=5, max_ratio=1.0, margin=0.3)
    assert negs == [[3, 4]]  # a margin below the positive's score drops 1 and 2
    negs, stats = mine_hard_negatives(q, pool[[0]], pool, [{0}], k=2, per_query=2)
    assert negs == [[]] and stats.no_negative == 1  # nothing usable in the top 2


def test_mining_chunks_agree_with_one_pass():
    rng = np.random.default_rng(0)
    q, pool = unit(*rng.standard_normal((50, 8))), unit(*rng.standard_normal((300, 8)))
    pos = [{i} for i in range(50)]
    a, _ = mine_hard_negatives(q, pool[:50], pool, pos, k=20, per_query=3, max_ratio=2.0, chunk=7)
    b, _ = mine_hard_negatives(q, pool[:50], pool, pos, k=20, per_query=3, max_ratio=2.0, chunk=1000)
    assert a == b and all(i not in n for i, n in enumerate(a))


class WordModel:
    """Bag-of-words encoder: a query is near the passages that share its words."""

    def __init__(self):
        self.vocab = {}

    def _enc(self, texts):
        out = np.zeros((len(texts), 64), np.float32)
        for i, t in enumerate(texts):
            for w in t.split():
                out[i, self.vocab.setdefault(w, len(self.vocab) % 64)] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)

    encode_queries = encode_passages = lambda self, texts, **kw: self._enc(texts)

    def fingerprint(self):
        return "word-model"


def test_mine_texts_and_cli_write_triples_the_training_loader_reads(tmp_path, monkeypatch):
    queries = ["red apple pie", "blue whale song"]
    positives = [["red apple pie recipe"], ["blue whale song ocean"]]
    pool = ["red apple pie recipe", "red apple pie", "apple pie crust", "blue whale song ocean", "whale song", "car engine"]
    triples, stats = mine_texts(WordModel(), queries, positives, pool, k=6, per_query=2, max_ratio=0.99)
    assert stats.queries == 2 and len(triples) == 4
    for q, p, n in triples:
        assert n not in (p,) and p in positives[queries.index(q)][0]
    assert ("red apple pie", "red apple pie recipe", "red apple pie") not in triples  # too close: dropped

    rows = tmp_path / "rows.jsonl"
    import json
    rows.write_text("".join(json.dumps({"query": q, "passages": {"passage_text": p + ["car engine"], "is_selected": [1, 0]}}) + "\n"
                            for q, p in zip(queries, positives)))
    (tmp_path / "coll.tsv").write_text("".join(f"{i}\t{t}\n" for i, t in enumerate(pool)))
    import twotowers.teacher as teacher_mod
    monkeypatch.setattr(teacher_mod, "load_teacher", lambda name: WordModel())
    out = tmp_path / "triples.tsv"
    mine_main(["--model", "x", "--data-files", str(rows), "--collection", str(tmp_path / "coll.tsv"),
               "--out", str(out), "--k", "6", "--per-query", "2", "--max-ratio", "0.99"])
    stats = LoadStats()
    examples = read_triples(out, stats)
    assert len(examples) == 2 and not stats.malformed  # one example per query, both its negatives
    assert all(len(e.negatives) == 2 and e.positive not in e.negatives for e in examples)
    assert {e.query for e in examples} == set(queries)

    # the same from TREC files: judged queries, qrels naming their positives, the collection as the pool
    (tmp_path / "q.tsv").write_text("q1\tred apple pie\nq2\tblue whale song\nq3\tunjudged\n")
    (tmp_path / "qrels.tsv").write_text("q1 0 0 1\nq2 0 3 1\n")
    trec = tmp_path / "trec-triples.tsv"
    mine_main(["--model", "x", "--queries", str(tmp_path / "q.tsv"), "--qrels", str(tmp_path / "qrels.tsv"),
               "--collection", str(tmp_path / "coll.tsv"), "--out", str(trec), "--k", "6", "--per-query", "2",
               "--max-ratio", "0.99"])
    from_trec = read_triples(trec, LoadStats())
    assert {(e.query, e.positive) for e in from_trec} == {(e.query, e.positive) for e in examples}  # q3: unjudged
    assert all(len(e.negatives) == 2 and e.positive not in e.negatives for e in from_trec)


def test_cli_answers_bad_input_in_one_line(tmp_path, capsys):
    from conftest import one_error_line, run_cli

    bad = tmp_path / "rows.jsonl"
    bad.write_text('{"query": "q", "passages": {"passage_text": ["a"], "is_selected": [1]}}\n{"query": "q2"}\n')
    out = tmp_path / "t.tsv"
    status, _, err = run_cli(mine_main, ["--model", "x", "--data-files", str(bad), "--out", str(out)], capsys)
    assert status == 1 and "rows.jsonl:2: not an MS MARCO v1.1 row (missing passages)" in one_error_line(err)
    out.write_text("mine\n")
    status, _, err = run_cli(mine_main, ["--model", "x", "--data-files", str(bad), "--out", str(out)], capsys)
    assert status == 1 and "t.tsv exists: pass --overwrite" in one_error_line(err) and out.read_text() == "mine\n"
    status, _, err = run_cli(mine_main, ["--model", "x", "--data-files", str(bad), "--out", str(out), "--k", "0"], capsys)
    assert status == 1 and "--k must be >= 1" in one_error_line(err)
    status, _, err = run_cli(mine_main, ["--model", "x", "--queries", "q.tsv", "--out", str(tmp_path / "n.tsv")], capsys)
    assert status == 1 and "or --queries, --qrels and --collection" in one_error_line(err)
