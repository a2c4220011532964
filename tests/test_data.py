"""Data loading: MS MARCO forms -> examples, is_selected, malformed rows, unparsable files, batches."""

import json

import pytest

from twotowers.collection import read_collection, read_qrels, read_queries
from twotowers.data import (Collator, Example, LoadStats, TokenizedExamples, load_examples, load_rerank_queries,
                            pooled_corpus, row_to_examples)
from twotowers.textfiles import DataFormatError, iter_records


def hf_row(query, texts, selected):
    return {"query_id": 1, "query": query, "query_type": "description",
            "passages": {"is_selected": selected, "passage_text": texts, "url": [""] * len(texts)},
            "answers": [], "wellFormedAnswers": []}


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_v1_1_row_unselected_passages_are_hard_negatives_never_positives():
    stats = LoadStats()
    ex = row_to_examples(hf_row("blue sky", ["p0", "p1", "p2", "p3"], [0, 1, 0, 1]), stats)
    assert [e.positive for e in ex] == ["p1", "p3"]
    assert all(e.negatives == ("p0", "p2") for e in ex)
    assert stats.examples == 2 and stats.rows == 1


def test_list_layout_and_pos_neg_layout():
    stats = LoadStats()
    row = {"query": "q", "passages": [{"text": "a", "is_selected": 0}, {"text": "b", "is_selected": 1}]}
    assert row_to_examples(row, stats) == [Example("q", "b", ("a",))]
    assert row_to_examples({"query": "q", "pos": ["x"], "neg": ["y", "z"]}, stats) == [Example("q", "x", ("y", "z"))]


def test_rows_without_selected_passage_are_skipped_and_counted():
    stats = LoadStats()
    assert row_to_examples(hf_row("q", ["a", "b"], [0, 0]), stats) == []
    assert stats.no_selected == 1 and "1 rows with no selected" in stats.summary()


@pytest.mark.parametrize("row, reason", [
    ({"passages": {"is_selected": [1], "passage_text": ["a"]}}, "missing query"),
    ({"query": "q"}, "missing passages"),
    (hf_row("q", [], []), "empty passage list"),
    ({"query": 5, "passages": {"is_selected": [1], "passage_text": ["a"]}}, "query not a string"),
    (hf_row("q", ["a", 3], [1, 0]), "passage text not a string"),
    (hf_row("q", ["a"], ["yes"]), "is_selected not an int"),
    (hf_row("q", ["a", "b"], [1]), "passage_text/is_selected not lists of one length"),
    ({"query": "q", "passages": "abc"}, "passages wrong type"),
    (["not", "an", "object"], "row not an object"),
])
def test_malformed_rows_are_skipped_and_counted(row, reason):
    stats = LoadStats()
    assert row_to_examples(row, stats) == []
    assert stats.malformed == {reason: 1}
    assert "1 malformed rows" in stats.summary()


def test_load_examples_from_jsonl_and_triples(tmp_path):
    rows = write_jsonl(tmp_path / "rows.jsonl", [hf_row("q1", ["a", "b"], [1, 0]), hf_row("q2", ["c"], [0]),
                                                 {"query": "q3"}, hf_row("q4", ["d"], [1])])
    triples = tmp_path / "triples.tsv"
    triples.write_text("q5\tpos5\tneg5\nbroken line\nq6\tpos6\tneg6a\tneg6b\n")
    stats = LoadStats()
    ex = load_examples([rows, triples], stats=stats)
    assert [e.query for e in ex] == ["q1", "q4", "q5", "q6"]
    assert ex[3].negatives == ("neg6a", "neg6b")
    assert stats.no_selected == 1 and sum(stats.malformed.values()) == 2
    assert load_examples([rows, triples], max_samples=2) == ex[:2]


def test_parquet_rows(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [hf_row("q1", ["a", "b"], [0, 1]), hf_row("q2", ["c"], [1])]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "rows.parquet")
    ex = load_examples([tmp_path / "rows.parquet"])
    assert ex == [Example("q1", "b", ("a",)), Example("q2", "c", ())]


def test_unparsable_file_names_file_and_line(tmp_path):
    bad = write_jsonl(tmp_path / "bad.jsonl", [hf_row("q1", ["a"], [1]), hf_row("q2", ["b"], [1]), '{"query": "q3", '])
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:3: invalid JSON"):
        load_examples([bad])
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(json.dumps(hf_row("q", ["a"], [1])).encode() + b"\n\xff\xfe\n")
    with pytest.raises(DataFormatError, match=r"bin\.jsonl:2: not UTF-8"):
        list(iter_records(binary))
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        load_examples([tmp_path / "missing.jsonl"])


def test_trec_files(tmp_path):
    (tmp_path / "q.tsv").write_text("1\tfirst query\n2\tsecond\n")
    (tmp_path / "qrels").write_text("1 0 p1 1\n1\t0\tp2\t2\n2 Q0 p3 0\n")
    (tmp_path / "c.tsv").write_text("p1\ttext one\np2\ttext two\n")
    assert read_queries(tmp_path / "q.tsv") == {"1": "first query", "2": "second"}
    assert read_qrels(tmp_path / "qrels") == {"1": {"p1": 1, "p2": 2}, "2": {"p3": 0}}
    assert read_collection(tmp_path / "c.tsv") == (["p1", "p2"], ["text one", "text two"])
    (tmp_path / "bad_qrels").write_text("1 0 p1 1\n1 0 p2 high\n")
    with pytest.raises(DataFormatError, match=r"bad_qrels:2"):
        read_qrels(tmp_path / "bad_qrels")
    # TREC qrels with the relevance column left out: refused, not read as `qid pid relevance`
    for no_grade in ("1 0 D7067274\n", "1\t0\t7067274\n", "1 Q0 p3\n"):
        (tmp_path / "no_grade").write_text(no_grade)
        with pytest.raises(DataFormatError, match=r"no_grade:1: .* has no relevance column"):
            read_qrels(tmp_path / "no_grade")
    assert read_qrels(write_lines(tmp_path / "three", "1 p1 2\n1 0 1\n")) == {"1": {"p1": 2, "0": 1}}


def write_lines(path, text):
    path.write_text(text)
    return path


def test_a_byte_order_mark_is_dropped_by_the_one_reader_of_the_library_and_the_app(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from webapp.inputs import parse_passages

    bom = "\ufeff".encode()
    tsv = bom + "7067274\tThe Reserve Bank of Australia.\np2\tsecond\n".encode()
    (tmp_path / "c.tsv").write_bytes(tsv)
    assert read_collection(tmp_path / "c.tsv")[0] == ["7067274", "p2"]
    assert parse_passages("c.tsv", tsv)[0] == ["7067274", "p2"]
    (tmp_path / "q.tsv").write_bytes(bom + b"1\tfirst query\n")
    assert read_queries(tmp_path / "q.tsv") == {"1": "first query"}
    (tmp_path / "qrels").write_bytes(bom + b"1 0 p1 1\n")
    assert read_qrels(tmp_path / "qrels") == {"1": {"p1": 1}}
    rows = write_jsonl(tmp_path / "rows.jsonl", [hf_row("q1", ["a"], [1])])
    rows.write_bytes(bom + rows.read_bytes())
    assert load_examples([rows]) == [Example("q1", "a", ())]
    (tmp_path / "rows.json").write_bytes(bom + json.dumps([hf_row("q1", ["a"], [1])]).encode())
    assert load_examples([tmp_path / "rows.json"]) == [Example("q1", "a", ())]


def test_blank_training_text_is_skipped_and_all_blank_is_refused(tmp_path):
    from twotowers.data import read_unlabelled

    stats = LoadStats()
    rows = [hf_row("\u200b\u200d", ["a passage"], [1]), hf_row("q", ["\u200b", "other"], [1, 0]),
            hf_row("fine query", ["\ufeff", "good passage", " ... "], [0, 1, 0])]
    examples = [e for r in rows for e in row_to_examples(r, stats)]
    assert examples == [Example("fine query", "good passage", ())]
    assert stats.malformed == {"query with no letters or digits": 1, "positive passage with no letters or digits": 1}
    triples = write_lines(tmp_path / "t.tsv", "\u200b\tpos\tneg\nq\t\u2060\tneg\nq\tpos\t...\n")
    assert load_examples([triples]) == [Example("q", "pos", ())]
    q = write_lines(tmp_path / "queries.tsv", "1\t\u200b\u200d\n2\twhat is rba\n")
    c = write_lines(tmp_path / "c.tsv", "p1\t\u200b\np2\tthe reserve bank\n")
    assert read_unlabelled([q, c]) == (["what is rba"], ["the reserve bank"])
    with pytest.raises(DataFormatError, match=r"queries.tsv:1: query '1' is empty \(no letters or digits"):
        read_queries(q)


def test_rerank_queries_and_pooled_corpus(tmp_path):
    rows = write_jsonl(tmp_path / "dev.jsonl", [hf_row("q1", ["a", "b"], [0, 1]), hf_row("q2", ["b", "c"], [0, 0])])
    rqs = load_rerank_queries([rows])
    assert [rq.labels for rq in rqs] == [(0, 1), (0, 0)]  # rows with no positive stay (they are distractors)
    queries, qrels, pids, texts = pooled_corpus(rqs)
    assert texts == ["a", "b", "c"]  # "b" pooled once
    assert queries == {"1": "q1", "1#1": "q2"}  # both queries; a repeated id kept apart
    assert qrels == {"1": {"p1": 1}} and pids == ["p0", "p1", "p2"]


class FakeModel:
    """Stands in for TwoTowers: character codes as token ids."""

    class tokenizer:
        pad_id = 0

    def tokenize_queries(self, texts):
        return [[ord(c) for c in t][:8] for t in texts]

    def tokenize_passages(self, texts):
        return [[ord(c) for c in t][:16] for t in texts]


def test_tokenised_dataset_and_collator_shapes():
    examples = [Example("ab", "abcdef", ("x", "yz")), Example("c", "ghi"), Example("de", "jk", ("w",))]
    ds = TokenizedExamples(examples, FakeModel(), num_negatives=1, seed=0)
    batch = Collator(ds.pad_id)([ds[i] for i in range(3)])
    assert batch["query_ids"].shape == (3, 2)
    assert batch["passage_ids"].shape == (5, 6)  # 3 positives + 2 negatives, padded to the longest
    assert batch["neg_owner"].tolist() == [0, 2]
    assert batch["passage_mask"][1].tolist() == [1, 1, 1, 0, 0, 0]
    assert batch["passage_ids"][0].tolist() == [ord(c) for c in "abcdef"]
    # Negatives are drawn per epoch, reproducibly.
    draws = set()
    for epoch in range(8):
        ds.set_epoch(epoch)
        a, b = ds[0][2], ds[0][2]
        assert a == b
        draws.add(tuple(a[0]))
    assert len(draws) == 2
    # Example items are tokenised by the collator itself.
    direct = Collator(0, model=FakeModel(), num_negatives=1)(examples)
    assert direct["passage_ids"].shape == (5, 6) and direct["neg_owner"].tolist() == [0, 2]
