"""Evaluation: the functions on hand-made rankings, and the CLI on tiny synthetic TREC data."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinymodel import TOPICS, make_tiny_base, synthetic_rows
from twotowers.data import RerankQuery
from twotowers.evaluate import evaluate_rerank_scores, evaluate_retrieval
from twotowers.evaluate.__main__ import main
from twotowers.metrics import mrr_at_k, ndcg_at_k, recall_at_k

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trec(tmp_path_factory):
    """Synthetic TREC files: 8 topics x 3 passages; each query's relevant passages are its topic's."""
    d = tmp_path_factory.mktemp("trec")
    collection, qrels, queries = [], [], []
    for ti, (topic, words) in enumerate(TOPICS.items()):
        w = words.split()
        for j in range(3):
            collection.append(f"d{ti}_{j}\t{' '.join(w[j:] + w[:j])}")
        queries.append(f"q{ti}\t{topic} {w[1]}")
        qrels += [f"q{ti} 0 d{ti}_0 1", f"q{ti} 0 d{ti}_1 2"]
    qrels.append("q99 0 missing_pid 1")  # its passage is not in the corpus: left out, counted
    (d / "c.tsv").write_text("\n".join(collection) + "\n")
    (d / "q.tsv").write_text("\n".join(queries) + "\nq99\tunreachable\n")
    (d / "qrels").write_text("\n".join(qrels) + "\n")
    rows = synthetic_rows()
    (d / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


def test_retrieval_with_perfect_and_empty_retrievers():
    queries = {"a": "x", "b": "y"}
    qrels = {"a": {"1": 1}, "b": {"2": 1, "3": 1}}
    perfect = evaluate_retrieval(lambda qs, k: [["1"], ["2", "3"]], queries, qrels)
    assert perfect["ndcg@10"] == perfect["mrr@10"] == perfect["recall@100"] == 1.0
    assert perfect["primary_metric"] == "ndcg@10" and perfect["n_queries"] == 2
    empty = evaluate_retrieval(lambda qs, k: [[] for _ in qs], queries, qrels)
    assert empty["ndcg@10"] == 0.0
    half = evaluate_retrieval(lambda qs, k: [["9", "1"], ["2"]], queries, qrels, corpus_ids=["1", "2", "9"])
    assert half["n_queries"] == 2 and half["recall@100"] == pytest.approx(0.75)
    assert half["mrr@10"] == pytest.approx(0.75)


def test_rerank_scores_and_random_baseline():
    rqs = [RerankQuery("q", ("a", "b", "c", "d"), (0, 0, 1, 0)), RerankQuery("r", ("a", "b"), (0, 0))]
    r = evaluate_rerank_scores(rqs, [np.array([0.1, 0.2, 0.9, 0.0]), np.array([1.0, 0.0])])
    assert r["ndcg@10"] == 1.0 and r["n_queries"] == 1  # the query with no positive is left out
    # Random order over 4 candidates with one relevant: E[MRR] = (1 + 1/2 + 1/3 + 1/4) / 4
    r = evaluate_rerank_scores(rqs[:1], [np.zeros(4)], random_repeats=4000)
    assert r["random_mrr@10"] == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4, abs=0.02)


def test_cli_retrieve_with_baselines_and_json(trec, tmp_path, capsys):
    from twotowers import TwoTowers

    model_dir = tmp_path / "model"
    TwoTowers(tower="mean", base_model=str(make_tiny_base(tmp_path / "base"))).save_pretrained(model_dir)
    out = tmp_path / "r.json"
    results = main(["--model", str(model_dir), "--baseline", "bm25", "untrained", "--mode", "retrieve",
                    "--queries", str(trec / "q.tsv"), "--qrels", str(trec / "qrels"), "--collection", str(trec / "c.tsv"),
                    "--json", str(out)])
    printed = capsys.readouterr().out
    assert "| bm25 |" in printed and "NDCG@10" in printed
    saved = json.loads(out.read_text())
    assert saved["primary_metric"] == "ndcg@10" and set(saved["results"]) == set(results)
    bm25 = results["bm25"]
    assert bm25["n_queries"] == 8 and bm25["n_unreachable"] == 1
    assert bm25["recall@100"] == 1.0 and bm25["ndcg@10"] > 0.8  # the words match exactly
    for r in results.values():
        assert 0.0 <= r["ndcg@10"] <= 1.0 and r["n_queries"] == 8


def test_cli_zero_shot_baselines_pool_and_prompt_as_their_files_say(trec, tmp_path, capsys):
    from tinymodel import make_tiny_st_base

    base = make_tiny_st_base(tmp_path / "tiny-st")  # CLS-pooled, a query prompt: bge-small's shape
    results = main(["--zero-shot", str(base), "--mode", "retrieve", "--queries", str(trec / "q.tsv"),
                    "--qrels", str(trec / "qrels"), "--collection", str(trec / "c.tsv")])
    assert list(results) == ["zero-shot tiny-st"]  # named by the directory's name, never its path
    assert "| zero-shot tiny-st |" in capsys.readouterr().out and results["zero-shot tiny-st"]["n_queries"] == 8


def test_cli_rerank_prints_random_baseline(trec, capsys):
    results = main(["--baseline", "bm25", "--mode", "rerank", "--data-files", str(trec / "rows.jsonl")])
    assert "random order (expected)" in capsys.readouterr().out
    assert results["bm25"]["ndcg@10"] > results["bm25"]["random_ndcg@10"]


@pytest.mark.slow  # fresh processes (python -m twotowers.evaluate)
def test_cli_errors_are_one_line(tmp_path):
    bad = tmp_path / "q.tsv"
    bad.write_text("no tab here\n")
    (tmp_path / "c.tsv").write_text("p1\tx\n")
    (tmp_path / "qrels").write_text("1 0 p1 1\n")
    proc = subprocess.run([sys.executable, "-m", "twotowers.evaluate", "--baseline", "bm25", "--queries", str(bad),
                           "--qrels", str(tmp_path / "qrels"), "--collection", str(tmp_path / "c.tsv")],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "q.tsv:1: expected qid<TAB>text" in proc.stderr and "Traceback" not in proc.stderr


def test_an_id_ranked_twice_counts_once_and_no_metric_exceeds_one():
    rel = {"p1": 1}
    for ranked in (["p1", "p1", "p1"], ["x", "p1", "p1"], ["p1"] * 20):
        assert ndcg_at_k(ranked, rel, 10) <= 1.0 and recall_at_k(ranked, rel, 10) <= 1.0
    assert ndcg_at_k(["x", "x", "p1"], rel, 10) == ndcg_at_k(["x", "p1"], rel, 10)  # the repeat is not a rank
    assert mrr_at_k(["x", "x", "p1"], rel, 10) == 0.5


def test_cli_answers_bad_input_in_one_line(trec, tmp_path, capsys):
    from conftest import one_error_line, run_cli

    def refused(argv, match):
        status, _, err = run_cli(main, argv, capsys)
        assert status != 0 and match in one_error_line(err), err

    files = ["--queries", str(trec / "q.tsv"), "--qrels", str(trec / "qrels")]
    lines = (trec / "c.tsv").read_text().splitlines()
    (tmp_path / "dup.tsv").write_text("\n".join(lines + [lines[0]]) + "\n")  # the relevant passage listed twice
    refused(["--baseline", "bm25", *files, "--collection", str(tmp_path / "dup.tsv")],
            f"dup.tsv:{len(lines) + 1}: id 'd0_0' repeats line 1: passage ids must be unique")
    (tmp_path / "other.tsv").write_text("x1\tpiano music\nx2\triver water\n")  # shares no id with the qrels
    refused(["--baseline", "bm25", *files, "--collection", str(tmp_path / "other.tsv")],
            "none of the 9 judged queries has a relevant passage in the collection (2 passages): check that the "
            "qrels' passage ids match the collection's ids")
    (tmp_path / "q2.tsv").write_text("z1\tpiano\n")
    refused(["--baseline", "bm25", "--queries", str(tmp_path / "q2.tsv"), "--qrels", str(trec / "qrels"),
             "--collection", str(trec / "c.tsv")], "check that the qrels' query ids match the queries file's")
    (tmp_path / "exists.json").write_text("{}")
    refused(["--baseline", "bm25", *files, "--collection", str(trec / "c.tsv"), "--json", str(tmp_path / "exists.json")],
            "exists.json exists: pass --overwrite")
    refused(["--baseline", "bm25"], "retrieve mode needs --queries, --qrels and --collection")
    refused(["--baseline", "untrained", *files, "--collection", str(trec / "c.tsv")], "--baseline untrained needs")


def test_an_index_of_another_collection_is_refused_not_scored_zero(trec, tmp_path, capsys):
    from conftest import one_error_line, run_cli

    from twotowers import PassageIndex, TwoTowers
    from twotowers.collection import read_collection

    model = TwoTowers(tower="mean", base_model=str(make_tiny_base(tmp_path / "base")))
    model.save_pretrained(tmp_path / "model")
    files = ["--model", str(tmp_path / "model"), "--queries", str(trec / "q.tsv"), "--qrels", str(trec / "qrels"),
             "--collection", str(trec / "c.tsv")]
    ids, texts = read_collection(trec / "c.tsv")
    PassageIndex.build(model, ids, texts, tune_samples=10).save(tmp_path / "same")
    results = main([*files, "--index", str(tmp_path / "same")])  # the same collection: evaluated
    assert next(iter(results.values()))["n_queries"] == 8
    capsys.readouterr()
    others = [(f"x{i}", t) for i, t in enumerate(texts)]  # the same texts under other ids
    PassageIndex.build(model, *zip(*others), tune_samples=10).save(tmp_path / "other-ids")
    status, _, err = run_cli(main, [*files, "--index", str(tmp_path / "other-ids")], capsys)
    assert status == 1 and "other-ids was built over another collection: it holds 24 passages, the collection 24; " \
        "e.g. 'x0' is indexed but not in the collection; e.g. 'd0_0' is in the collection but not indexed" in one_error_line(err)
    PassageIndex.build(model, ids, texts[::-1], tune_samples=10).save(tmp_path / "other-texts")
    status, _, err = run_cli(main, [*files, "--index", str(tmp_path / "other-texts")], capsys)
    assert status == 1 and "other-texts was built over another version of the collection: passage 'd0_0' has " \
        "another text there" in one_error_line(err)


def test_qrels_naming_absent_passages_are_counted_in_the_summary(trec, tmp_path, capsys):
    (tmp_path / "qrels").write_text((trec / "qrels").read_text() + "q0 0 not_in_collection 1\n")
    results = main(["--baseline", "bm25", "--queries", str(trec / "q.tsv"), "--qrels", str(tmp_path / "qrels"),
                    "--collection", str(trec / "c.tsv")])
    out = capsys.readouterr().out
    assert results["bm25"]["n_qrels_not_in_corpus"] == 1
    assert "note: 1 relevant (query, passage) judgments of the counted queries name passages absent" in out
    assert "note: 1 judged queries have no relevant passage in the collection" in out
