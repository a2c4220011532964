"""PassageIndex: build/search/add, save/load in a fresh process, and every check `load` promises."""

import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from twotowers import PassageIndex, TwoTowers

ROOT = Path(__file__).resolve().parents[1]
WORDS = ("piano music keys melody concert river water fish boat bridge rocket space launch orbit moon bread "
         "flour oven bake yeast garden flower seed soil plant winter snow cold ice skate chess board king queen "
         "move train station rail ticket travel doctor hospital fever medicine nurse").split()


def synthetic_corpus(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    ids = [f"p{i}" for i in range(n)]
    texts = [" ".join(rng.sample(WORDS, 8)) + f" item {i}." for i in range(n)]
    # a rare code buried in common words: the mean of its word vectors hardly shows it, BM25 does
    texts[7] = " ".join(rng.sample(WORDS, 40)) + " code ZX-9981."
    return ids, texts


QUERIES = ["piano concert by the river", "how to bake bread", "code ZX-9981", "snow and ice"]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return TwoTowers()


@pytest.fixture(scope="module")
def corpus():
    return synthetic_corpus(400)


@pytest.fixture(scope="module")
def built(model, corpus):
    ids, texts = corpus
    return PassageIndex.build(model, ids, texts, M=16, ef_construction=100, tune_samples=50)


@pytest.fixture(scope="module")
def saved(built, model, tmp_path_factory):
    d = tmp_path_factory.mktemp("index")
    built.save(d / "idx")
    model.save_pretrained(d / "model")
    return d


def plain(results):
    return [[(h.id, h.text, round(h.score, 5), h.dense_score and round(h.dense_score, 5),
              h.keyword_score and round(h.keyword_score, 4)) for h in hits] for hits in results]


def all_modes(index):
    return {mode: plain(index.search(QUERIES, k=5, mode=mode)) for mode in ("dense", "keyword", "hybrid")} | {
        "rrf": plain(index.search(QUERIES, k=5, mode="hybrid", fusion="rrf", alpha=0.3))}


def copy_index(saved, tmp_path) -> Path:
    shutil.copytree(saved / "idx", tmp_path / "idx")
    return tmp_path / "idx"


def test_build_records_what_it_is(built, model):
    m = built.meta
    assert len(built) == 400 and built.dim == model.dim == m["dim"] == 256
    assert m["space"] == "ip" and m["M"] == 16 and m["ef_construction"] == 100 and m["count"] == 400
    assert m["ef"] == built.ef >= 10 and m["ef_tuning"]["recall"] >= 0.99
    assert m["model"]["fingerprint"] == model.fingerprint() and m["model"]["config"]["tower"] == "mean"
    assert m["keyword"]["count"] == 400 and m["format_version"] == 3


def test_dense_scores_are_cosines_and_vectors_equal_texts(built, model, corpus):
    hits = built.search(QUERIES, k=5, mode="dense")
    q = model.encode_queries(QUERIES)
    p = model.encode_passages(corpus[1])
    for qi, row in enumerate(hits):
        exact = p @ q[qi]
        assert [h.score for h in row] == sorted((h.score for h in row), reverse=True)
        for h in row:
            assert h.score == pytest.approx(exact[int(h.id[1:])], abs=1e-5) and h.dense_score == h.score
            assert h.text == corpus[1][int(h.id[1:])] and h.keyword_score is None
    assert plain(built.search(q, k=5)) == plain(hits)  # query vectors give the same results


def test_hits_read_texts_on_use_and_keep_them(saved, model, corpus, tmp_path):
    index = PassageIndex.load(copy_index(saved, tmp_path), model)
    q = model.encode_queries(QUERIES)
    hits = index.search(q, k=5)
    # float64 or strided query vectors give the same hits as float32
    assert plain(index.search(q.astype(np.float64), k=5)) == plain(hits)
    assert plain(index.search(np.asfortranarray(q), k=5)) == plain(hits)
    h = hits[0][0]
    assert h.to_dict() == {"id": h.id, "text": corpus[1][int(h.id[1:])], "score": h.score,
                           "dense_score": h.score, "keyword_score": None}
    assert repr(h).startswith(f"SearchHit(id={h.id!r}, text=") and h == index.search(q[:1], k=1)[0][0]
    # texts not yet read survive the index growing, being saved over, and being dropped
    later = hits[1]
    index.add(["new1"], ["A quokka is a small marsupial."])
    index.save(tmp_path / "idx")
    del index
    assert [x.text for x in later] == [corpus[1][int(x.id[1:])] for x in later]


def test_ef_is_the_smallest_reaching_the_target(model):
    # a deliberately poor graph over random vectors, so recall climbs slowly with ef
    rng = np.random.default_rng(0)
    v = rng.standard_normal((3000, model.dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    q = v[:200] + 0.5 * rng.standard_normal((200, model.dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    ids = [str(i) for i in range(len(v))]
    index = PassageIndex.build(model, ids, ids, vectors=v, M=16, ef_construction=50, keyword=False,
                               tune_queries=q, tune_samples=200)
    rec, ef = index.meta["ef_tuning"], index.ef
    exact = np.argsort(-(q @ v.T), axis=1)[:, :10]

    def recall(ef_):
        index.hnsw.set_ef(ef_)
        labels, _ = index.hnsw.knn_query(q, k=10)
        return np.mean([len(set(a) & set(e)) / 10 for a, e in zip(labels.tolist(), exact.tolist())])

    below = rec["ef_missed"]
    need = 0.99 + rec["margin"]  # one standard error of the estimate above the target
    assert rec["reached"] and recall(ef) >= need and below is not None and recall(below) < need
    assert ef - below <= max(2, below // 16)  # bisected between the grid's steps


@pytest.mark.slow  # a fresh process
def test_round_trip_in_a_fresh_process_is_identical(built, saved):
    code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); sys.path.insert(0, {str(ROOT)!r});"
            "from test_index import all_modes; from twotowers import PassageIndex, TwoTowers;"
            f"m = TwoTowers.from_pretrained({str(saved / 'model')!r});"
            f"print(json.dumps(all_modes(PassageIndex.load({str(saved / 'idx')!r}, m))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    fresh = json.loads(out.stdout.strip().splitlines()[-1])
    here = json.loads(json.dumps(all_modes(built)))
    assert fresh == here


def test_hybrid_fuses_both_sides(built, corpus):
    from twotowers.index.fusion import FUSIONS

    for fusion in FUSIONS:
        hits = built.search(["ZX-9981"], k=5, mode="hybrid", alpha=0.5, fusion=fusion)[0]
        assert hits[0].id == "p7"  # the rare code: BM25 is sure, so the fused list puts it first
        assert all(h.dense_score is not None and h.keyword_score is not None for h in hits)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # candidates = union of each side's top-depth; every candidate gets both sides' exact scores
    q = ["piano concert by the river"]
    dense = {h.id: h.score for h in built.search(q, k=400, mode="dense")[0]}  # all 400: exact cosines for every passage
    kw = {h.id: h.score for h in built.search(q, k=400, mode="keyword")[0]}
    dense_top, kw_top = list(dense)[:5], list(kw)[:5]
    assert set(dense_top) != set(kw_top)
    for alpha, expected in ((1.0, dense_top), (0.0, kw_top)):
        hits = built.search(q, k=5, mode="hybrid", alpha=alpha, depth=5)[0]
        assert [h.id for h in hits] == expected
    for fusion in FUSIONS:
        hits = built.search(q, k=5, mode="hybrid", alpha=0.5, fusion=fusion, depth=5)[0]
        ids = {h.id for h in hits}
        assert ids <= set(dense_top) | set(kw_top) and ids & set(dense_top) and ids & set(kw_top)
        for h in hits:
            assert h.dense_score == pytest.approx(dense[h.id], abs=1e-5)
            assert h.keyword_score == pytest.approx(kw.get(h.id, 0.0), rel=1e-5)


def test_default_mode_is_hybrid_where_the_index_has_bm25_else_dense(built, model, corpus):
    assert built.default_mode == "hybrid"
    hits = built.search(QUERIES, k=5)
    assert plain(hits) == plain(built.search(QUERIES, k=5, mode="hybrid"))
    assert all(h.keyword_score is not None for row in hits for h in row)
    vectors = model.encode_queries(QUERIES)  # vectors have no words: dense
    assert plain(built.search(vectors, k=5)) == plain(built.search(vectors, k=5, mode="dense"))
    ids, texts = corpus
    dense_only = PassageIndex.build(model, ids[:50], texts[:50], keyword=False, tune_samples=10)
    assert dense_only.default_mode == "dense"
    assert plain(dense_only.search(QUERIES, k=3)) == plain(dense_only.search(QUERIES, k=3, mode="dense"))


def test_fusion_functions_by_hand():
    from twotowers.index.fusion import rrf_fusion, score_fusion, theoretical_fusion

    dense, kw = np.array([0.8, 0.6, 0.2]), np.array([0.0, 10.0, 5.0])
    np.testing.assert_allclose(score_fusion(dense, kw, 0.5), [0.5 * 1 + 0, 0.5 * (0.4 / 0.6) + 0.5, 0 + 0.25])
    np.testing.assert_allclose(theoretical_fusion(dense, kw, 0.5), [0.5, 0.5 * 1.6 / 1.8 + 0.5, 0.5 * 1.2 / 1.8 + 0.25])
    np.testing.assert_allclose(rrf_fusion(dense, kw, 0.5), [0.5 / 61, 0.5 / 62 + 0.5 / 61, 0.5 / 63 + 0.5 / 62])


def test_bad_search_arguments(built, model):
    with pytest.raises(ValueError, match="mode"):
        built.search(QUERIES, mode="sparse")
    with pytest.raises(ValueError, match="text queries"):
        built.search(model.encode_queries(QUERIES), mode="hybrid")
    with pytest.raises(ValueError, match=r"\[n, 256\]"):
        built.search(np.zeros((2, 128), dtype=np.float32))
    with pytest.raises(TypeError):
        built.search("one string")
    assert len(built.search(QUERIES[:1], k=1000)[0]) == 400  # k beyond the corpus returns all of it


def test_text_search_without_model_is_a_clear_error(saved, model):
    index = PassageIndex.load(saved / "idx")
    with pytest.raises(ValueError, match="needs the model"):
        index.search(QUERIES)
    assert index.search(model.encode_queries(QUERIES), k=3)[0]  # vectors work
    assert index.search(QUERIES, k=3, mode="keyword")[0]        # so does BM25


def test_concurrent_searches_match_sequential(built):
    expected = {q: plain(built.search([q], k=5, mode="hybrid")) for q in QUERIES}
    errors = []

    def worker():
        try:
            for _ in range(5):
                for q in QUERIES:
                    assert plain(built.search([q], k=5, mode="hybrid")) == expected[q]
        except Exception as e:  # noqa: BLE001 - surfaced below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_add_after_load_and_streaming_build(saved, model, tmp_path):
    index = PassageIndex.load(copy_index(saved, tmp_path), model)
    index.add(["new1", "new2"], ["A quokka is a small marsupial from Rottnest Island.", "Quokkas smile."])
    assert len(index) == 402
    assert index.search(["quokka rottnest"], k=1, mode="keyword")[0][0].id == "new1"
    assert "new1" in {h.id for h in index.search(["quokka marsupial"], k=402)[0]}
    index.save(tmp_path / "idx")  # saving over the directory it was loaded from
    again = PassageIndex.load(tmp_path / "idx", model)
    assert len(again) == 402 and again.search(["quokka rottnest"], k=1, mode="hybrid")[0][0].id == "new1"
    # a stream of (id, text) pairs, read in chunks smaller than the corpus, without a keyword side
    ids, texts = synthetic_corpus(120, seed=1)
    streamed = PassageIndex.build(model, iter(zip(ids, texts)), chunk_size=50, keyword=False, tune_samples=20)
    assert len(streamed) == 120 and streamed.keyword is None and streamed.meta["keyword"] is None
    assert streamed.search(["snow"], k=3)[0][0].id in ids


def test_ef_is_tuned_again_once_the_index_grows_by_a_tenth(model):
    ids, texts = synthetic_corpus(300)
    index = PassageIndex.build(model, ids, texts, M=16, ef_construction=50, tune_samples=20)
    assert index.meta["ef_tuning"]["count"] == 300
    more_ids, more_texts = synthetic_corpus(40, seed=5)
    assert index.add([f"n{i}" for i in range(29)], more_texts[:29]) is None  # 329 < 330: ef stays
    record = index.add([f"n{i}" for i in range(29, 40)], more_texts[29:])    # 340: tuned again
    assert record and index.meta["ef_tuning"]["count"] == 340 and index.meta["ef_tuning"]["target_recall"] == 0.99
    assert record["recall"] >= 0.99 and index.ef == index.meta["ef"] >= 10


def test_a_build_that_cannot_reach_its_target_recall_says_so(model, saved, tmp_path, capsys, monkeypatch):
    from conftest import run_cli

    from twotowers.index import tuning
    from twotowers.index.__main__ import main
    from twotowers.index.tuning import RecallWarning

    monkeypatch.setattr(tuning, "EF_CANDIDATES", (10,))  # a tiny search breadth cannot reach recall 1.0
    ids, texts = synthetic_corpus(300)
    with pytest.warns(RecallWarning, match=r"ef tuning could not reach recall@10 1.0: 0\.\d+ at ef=10"):
        PassageIndex.build(model, ids, texts, M=2, ef_construction=10, target_recall=1.0, tune_samples=50)
    (tmp_path / "c.tsv").write_text("".join(f"{i}\t{t}\n" for i, t in zip(ids, texts)))
    status, _, err = run_cli(main, ["build", "--model", str(saved / "model"), "--collection", str(tmp_path / "c.tsv"),
                                    "--out", str(tmp_path / "x"), "--M", "2", "--ef-construction", "10",
                                    "--target-recall", "1.0"], capsys)
    lines = [line for line in err.splitlines() if line.startswith(("wrote", "warning"))]
    assert status == 0 and lines[0].startswith(f"wrote {tmp_path / 'x'}: 300 passages, dim 256, M 2, ef 10 (recall@10 0.")
    assert lines[1].startswith("warning: ef tuning could not reach recall@10 1.0: ") and len(lines) == 2


def test_load_refuses_another_model_or_dim(saved):
    torch.manual_seed(1)
    other = TwoTowers()  # same config, other random projection
    with pytest.raises(ValueError, match="another model"):
        PassageIndex.load(saved / "idx", other)
    with pytest.raises(ValueError, match="128-dim"):
        PassageIndex.load(saved / "idx", TwoTowers(projection_dim=128))


def test_load_refuses_wrong_dim_in_index_json(saved, tmp_path):
    d = copy_index(saved, tmp_path)
    meta = json.loads((d / "index.json").read_text())
    meta["dim"] = 128
    (d / "index.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"hnsw.bin holds 256-dim vectors but index.json says dim=128"):
        PassageIndex.load(d)


@pytest.mark.parametrize("name", ["hnsw.bin", "passages.bin", "ids_offsets.npy", "keyword_csc_data.npy"])
def test_load_names_a_truncated_file(saved, tmp_path, name):
    d = copy_index(saved, tmp_path)
    data = (d / name).read_bytes()
    (d / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=rf"{name} is \d+ bytes but index.json records \d+: truncated"):
        PassageIndex.load(d)


def test_load_refuses_missing_or_foreign_keyword_part(saved, model, tmp_path):
    d = copy_index(saved, tmp_path)
    kw_meta = json.loads((d / "keyword.json").read_text())
    # a keyword part from another corpus (same sizes, so only the corpus hash tells; checksums skipped)
    (d / "keyword.json").write_text((d / "keyword.json").read_text().replace(kw_meta["corpus_hash"], "0" * 64))
    with pytest.raises(ValueError, match="keyword.json does not match the checksum"):
        PassageIndex.load(d)
    with pytest.raises(ValueError, match="belongs to another corpus"):
        PassageIndex.load(d, verify=False)
    # a keyword part from another corpus of another size
    other = PassageIndex.build(model, *synthetic_corpus(50, seed=3), tune_samples=10)
    other.keyword.save(d)
    with pytest.raises(ValueError, match="keyword"):
        PassageIndex.load(d)
    for p in d.glob("keyword*"):
        p.unlink()
    with pytest.raises(FileNotFoundError, match="keyword.*missing.*keyword \\(BM25\\) part"):
        PassageIndex.load(d)


@pytest.mark.parametrize("name", ["hnsw.bin", "ids.bin", "passages.bin", "ids_offsets.npy",
                                  "keyword_csc_data.npy", "keyword_vocab.json"])
def test_load_refuses_a_file_altered_in_place(saved, tmp_path, name):
    """A few bytes changed in the middle (same size): served wrong scores, wrong ids or a crash before."""
    d = copy_index(saved, tmp_path)
    data = bytearray((d / name).read_bytes())
    mid = len(data) // 2
    data[mid : mid + 4] = bytes(b ^ 0xFF for b in data[mid : mid + 4])
    (d / name).write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"{name} does not match the checksum in index.json: the file was altered"):
        PassageIndex.load(d)


def test_load_refuses_the_graph_of_another_model(saved, tmp_path):
    torch.manual_seed(1)
    other_model = TwoTowers()  # same shapes, other weights: its index has files of the same sizes
    ids, texts = synthetic_corpus(400)
    other = PassageIndex.build(other_model, ids, texts, M=16, ef_construction=100, tune_samples=50)
    other.save(tmp_path / "other")
    d = copy_index(saved, tmp_path)
    shutil.copyfile(tmp_path / "other" / "hnsw.bin", d / "hnsw.bin")
    with pytest.raises(ValueError, match=r"hnsw.bin does not match the checksum"):
        PassageIndex.load(d)


def test_verification_can_be_skipped_explicitly(saved, model, tmp_path):
    d = copy_index(saved, tmp_path)
    data = bytearray((d / "passages.bin").read_bytes())
    data[10] ^= 0xFF
    (d / "passages.bin").write_bytes(bytes(data))
    index = PassageIndex.load(d, model, verify=False)  # the caller's choice: sizes and headers still checked
    assert len(index) == 400


def corrupt_links(path: Path, upper: bool = False) -> None:
    """Point some of hnsw.bin's links (level 0, or an upper level) far outside the graph."""
    from twotowers.index.files import _HNSW_HEADER

    data = bytearray(path.read_bytes())
    head = _HNSW_HEADER.unpack(data[: _HNSW_HEADER.size])
    cur, per_element = head[2], head[3]
    if not upper:
        for i in range(0, cur, 7):
            at = _HNSW_HEADER.size + i * per_element + 4  # past the count: the first link
            data[at : at + 4] = (0x0FFFFFF0).to_bytes(4, "little")
    else:  # the first element with upper levels: its first upper link
        words = np.frombuffer(bytes(data[_HNSW_HEADER.size + cur * per_element :]), dtype="<u4")
        at = _HNSW_HEADER.size + cur * per_element + 4 * (int(np.flatnonzero(words)[0]) + 2)
        data[at : at + 4] = (0x0FFFFFF0).to_bytes(4, "little")
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("upper", [False, True])
def test_no_verify_still_refuses_a_corrupt_graph_instead_of_crashing(saved, model, tmp_path, upper):
    """Links out of range made hnswlib read outside its memory: a segmentation fault under --no-verify."""
    d = copy_index(saved, tmp_path)
    corrupt_links(d / "hnsw.bin", upper)
    with pytest.raises(ValueError, match=r"hnsw.bin: the graph is corrupt .*its checksum was not verified"):
        PassageIndex.load(d, model, verify=False)
    with pytest.raises(ValueError, match=r"hnsw.bin does not match the checksum"):
        PassageIndex.load(d, model)


def test_load_names_a_cut_short_index_json(saved, tmp_path):
    d = copy_index(saved, tmp_path)
    text = (d / "index.json").read_text()
    (d / "index.json").write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match=r"index.json is not valid JSON \(cut short or corrupt"):
        PassageIndex.load(d)


def test_load_names_a_missing_index_json(tmp_path):
    with pytest.raises(FileNotFoundError, match="index.json not found"):
        PassageIndex.load(tmp_path)


def test_cli_build_and_search(saved, tmp_path, capsys):
    from twotowers.index.__main__ import main

    ids, texts = synthetic_corpus(60, seed=5)
    tsv = tmp_path / "collection.tsv"
    tsv.write_text("".join(f"{i}\t{t}\n" for i, t in zip(ids, texts)), encoding="utf-8")
    out = saved / "cli-index"  # beside model/, so `search` finds the model in the parent directory
    main(["build", "--model", str(saved / "model"), "--collection", str(tsv), "--out", str(out),
          "--M", "16", "--ef-construction", "50", "--chunk-size", "25"])
    meta = json.loads((out / "index.json").read_text())
    assert meta["count"] == 60 and meta["M"] == 16 and meta["keyword"]["stemmer"] == "english"
    main(["search", str(out), "code ZX-9981", "-k", "3", "--mode", "hybrid", "--json"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["rank"] for r in lines] == [1, 2, 3] and lines[0]["id"] == "p7"
    assert {"dense_score", "keyword_score", "text"} <= set(lines[0])
    main(["search", str(out), "code ZX-9981", "-k", "1"])  # no --mode: the index's default, hybrid
    assert "(dense " in capsys.readouterr().out
    main(["search", str(out), "code ZX-9981", "-k", "1", "--mode", "dense"])
    assert "(dense " not in capsys.readouterr().out
    bad = tmp_path / "bad.tsv"
    bad.write_text("p1\tfine\nno tab here\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.tsv:2: expected id<TAB>text"):
        main(["build", "--model", str(saved / "model"), "--collection", str(bad), "--out", str(tmp_path / "x")])


def test_repeated_ids_are_refused_at_build_and_add(model, saved, tmp_path):
    ids, texts = synthetic_corpus(30, seed=7)
    ids[20] = ids[4]
    with pytest.raises(ValueError, match=r"passage 20 has the id 'p4', which passage 4 already has"):
        PassageIndex.build(model, ids, texts, tune_samples=10)
    stream = iter(zip(ids, texts))  # the same in a stream read in chunks
    with pytest.raises(ValueError, match=r"passage 20 has the id 'p4', which passage 4 already has"):
        PassageIndex.build(model, stream, chunk_size=8, tune_samples=10)
    index = PassageIndex.load(copy_index(saved, tmp_path), model)
    with pytest.raises(ValueError, match=r"ids\[1\] is 'p7', which passage 7 of the index already has"):
        index.add(["new", "p7"], ["a text", "another"])
    with pytest.raises(ValueError, match=r"ids\[2\] is 'x', which ids\[0\] already has"):
        index.add(["x", "y", "x"], ["one", "two", "three"])
    assert len(index) == 400  # nothing was added
    index.add(["x"], ["one"])
    assert len(index) == 401 and index.search(["one"], k=1, mode="keyword")[0][0].id == "x"


def test_empty_queries_and_collections_are_refused_and_k_is_bounded(built, model):
    with pytest.raises(ValueError, match="query 2 of 2 is empty"):
        built.search(["piano", "  "], k=3)
    with pytest.raises(ValueError, match="query 1 of 1 is empty"):
        built.search([""], k=3, mode="keyword")
    with pytest.raises(ValueError, match="the collection is empty"):
        PassageIndex.build(model, [], [])
    for mode in ("keyword", "hybrid"):  # a huge k allocates for the corpus, not for k
        assert len(built.search(["piano"], k=10**9, mode=mode)[0]) <= 400


INVISIBLE = ["\u200b\u200d", "\ufeff", " \u2060 ", "...", "\x00\x07"]  # no letters or digits: empty


@pytest.mark.parametrize("query", INVISIBLE)
def test_invisible_queries_are_empty_in_every_mode(built, query):
    for mode in ("dense", "keyword", "hybrid"):
        with pytest.raises(ValueError, match=r"query 2 of 2 is empty \(no letters or digits"):
            built.search(["piano", query], k=3, mode=mode)


def test_invisible_passages_are_refused_at_build_and_add(model, built, saved, tmp_path, capsys):
    from conftest import one_error_line, run_cli

    from twotowers.index.__main__ import main

    with pytest.raises(ValueError, match=r"passage 1 \('b'\) is empty \(no letters or digits"):
        PassageIndex.build(model, ["a", "b"], ["piano keys", "\u200b\u200d"])
    before = len(built)
    with pytest.raises(ValueError, match=r"texts\[1\] \(id 'y'\) is empty .* nothing was added"):
        built.add(["x", "y"], ["one", " \u200b "])
    assert len(built) == before
    (tmp_path / "c.tsv").write_text("p1\tpiano keys\np2\t\u200b\u200d\n", encoding="utf-8")
    status, _, err = run_cli(main, ["build", "--model", str(saved / "model"), "--collection", str(tmp_path / "c.tsv"),
                                    "--out", str(tmp_path / "x")], capsys)
    assert status == 1 and "c.tsv:2: passage 'p2' is empty (no letters or digits" in one_error_line(err)


def test_cli_answers_bad_input_in_one_line(saved, tmp_path, capsys):
    from conftest import one_error_line, run_cli

    from twotowers.index.__main__ import main

    model = str(saved / "model")

    def refused(argv, match):
        status, _, err = run_cli(main, argv, capsys)
        assert status != 0 and re.search(match, one_error_line(err)), err

    def build(collection, out=None):
        return ["build", "--model", model, "--collection", str(collection), "--out", str(out or tmp_path / "x")]

    (tmp_path / "tab.tsv").write_text("p1\tfine\nno tab here\n")
    refused(build(tmp_path / "tab.tsv"), r"tab.tsv:2: expected id<TAB>text, found no tab")
    (tmp_path / "latin1.tsv").write_bytes("p1\tfine\np2\tcaf\xe9\n".encode("latin-1"))
    refused(build(tmp_path / "latin1.tsv"), r"latin1.tsv:2: not UTF-8 text")
    (tmp_path / "dup.tsv").write_text("p1\tone\np2\ttwo\n\np1\tthree\n")
    refused(build(tmp_path / "dup.tsv"), r"dup.tsv:4: id 'p1' repeats line 1: passage ids must be unique")
    (tmp_path / "empty.tsv").write_text("\n")
    refused(build(tmp_path / "empty.tsv"), r"empty.tsv holds no passages")
    refused(build(tmp_path / "tab.tsv", out=saved / "idx"), r"already holds an index: pass --overwrite")
    refused(build(tmp_path / "nope.tsv"), r"collection 'nope.tsv'|nope.tsv")
    refused(["build", "--model", model, "--collection", "c.tsv", "--out", "x", "--M", "0"], r"--M must be >= 1")

    d = copy_index(saved, tmp_path)
    shutil.copytree(saved / "model", tmp_path, dirs_exist_ok=True)  # above the index: `search` finds it there
    refused(["search", str(d), "piano", "-k", "0"], r"-k must be >= 1, got 0")
    refused(["search", str(d), "   "], r"query 1 is empty")
    for invisible in INVISIBLE:
        refused(["search", str(d), "piano", invisible], r"query 2 is empty \(no letters or digits")
    refused(["search", str(tmp_path / "no-such-index"), "piano"], r"no such directory|no such local directory")
    refused(["search", "runs/no-such-index", "piano"], r"index 'runs/no-such-index': no such local directory")
    status, out, _ = run_cli(main, ["search", str(d), "piano", "-k", "1000000000", "--mode", "hybrid", "--json"], capsys)
    assert status == 0 and len(out.splitlines()) == 400  # a huge k returns the corpus, allocating no more
    torch.manual_seed(1)
    TwoTowers().save_pretrained(tmp_path / "other-model")
    refused(["search", str(d), "piano", "--model", str(tmp_path / "other-model")], r"encoded by another model")
    meta = json.loads((d / "index.json").read_text())
    (d / "index.json").write_text(json.dumps({**meta, "dim": 128}))
    refused(["search", str(d), "piano"], r"the index holds 128-dim vectors but the given model encodes 256-dim")
    (d / "index.json").write_text(json.dumps({**meta, "count": 401}))
    refused(["search", str(d), "piano"], r"hnsw.bin holds 400 vectors but index.json says 401")
    (d / "index.json").write_text(json.dumps(meta)[:200])
    refused(["search", str(d), "piano"], r"index.json is not valid JSON")
    (d / "index.json").write_text(json.dumps(meta))
    (d / "passages.bin").write_bytes((d / "passages.bin").read_bytes()[:100])
    refused(["search", str(d), "piano"], r"passages.bin is 100 bytes but index.json records")
    (d / "passages.bin").unlink()
    refused(["search", str(d), "piano"], r"passages.bin is missing")


@pytest.mark.slow  # a fresh process (python -m twotowers.index)
def test_python_m_index_prints_one_line_and_exits_1(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "twotowers.index", "search", str(tmp_path / "nothing"), "q"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: index "), proc.stderr
