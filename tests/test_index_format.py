"""The saved index's format: one copy of each vector (read back from hnsw.bin), format 2 still loading,
others refused in one line."""

import json
import shutil
from pathlib import Path

import hnswlib
import numpy as np
import pytest
import torch

from test_index import QUERIES, all_modes, synthetic_corpus
from twotowers import PassageIndex, TwoTowers
from twotowers.index import files
from twotowers.index.store import VectorStore


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return TwoTowers()


@pytest.fixture(scope="module")
def saved(model, tmp_path_factory):
    ids, texts = synthetic_corpus(150)
    d = tmp_path_factory.mktemp("fmt") / "idx"
    PassageIndex.build(model, ids, texts, M=16, ef_construction=50, tune_samples=20).save(d)
    return d


def test_a_saved_index_holds_each_vector_once_and_reads_it_back_from_the_graph(saved, model):
    names = {p.name for p in saved.iterdir()}
    assert "vectors.npy" not in names and json.loads((saved / "index.json").read_text())["format_version"] == 3
    index = PassageIndex.load(saved, model)
    _, texts = synthetic_corpus(150)
    np.testing.assert_allclose(index.vectors(range(150)), model.encode_passages(texts), atol=1e-6)
    # exact hybrid scores come from those vectors: a hit's dense score is its cosine
    q = model.encode_queries(QUERIES[:1])[0]
    for h in index.search(QUERIES[:1], k=5, mode="hybrid")[0]:
        assert h.dense_score == pytest.approx(float(model.encode_passages([h.text])[0] @ q), abs=1e-5)


def test_rows_are_found_whatever_order_hnswlib_stored_them_in(tmp_path):
    """Threads insert in any order: record i of hnsw.bin need not be row i; its label says which it is."""
    x = np.random.default_rng(0).standard_normal((500, 24)).astype(np.float32)
    g = hnswlib.Index(space="ip", dim=24)
    g.init_index(max_elements=500, M=8, ef_construction=20)
    order = np.random.default_rng(1).permutation(500)
    g.add_items(x[order], order, num_threads=1)  # record i holds row order[i]
    g.save_index(str(tmp_path / "hnsw.bin"))
    store = VectorStore.from_graph(tmp_path / "hnsw.bin", 500, 24)
    rows = np.array([0, 499, 7, 7, 250])
    np.testing.assert_array_equal(store[rows], x[rows])
    np.testing.assert_array_equal(store[10:20], x[10:20])
    store.extend(x[:3] * 2)  # rows appended since: from the spool
    np.testing.assert_array_equal(store[np.array([499, 500, 502])], np.stack([x[499], 2 * x[0], 2 * x[2]]))
    assert len(store) == 503
    rows, vectors = map(np.concatenate, zip(*store.blocks(rows=64)))  # a scan: every row once, file order
    assert sorted(rows.tolist()) == list(range(503))
    np.testing.assert_array_equal(vectors, np.concatenate([x, 2 * x[:3]])[rows])
    from twotowers.topk import exact_top_k, exact_top_k_blocks

    q = x[:7] + 0.1
    np.testing.assert_array_equal(exact_top_k_blocks(q, store.blocks(rows=64), 10)[0], exact_top_k(q, store, 10)[0])



def _resident_file_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssFile:")) / 1024


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads Linux's /proc/self/status")
def test_reading_scattered_vectors_does_not_make_the_graph_file_resident(tmp_path):
    """Exact scores read a few vectors each: they must not map the graph file into this process's memory
    (a memory map did: the kernel maps a whole page-cache folio a fault, so a few hundred scattered rows
    counted the whole graph file as resident, a second copy beside hnswlib's)."""
    x = np.random.default_rng(0).standard_normal((40_000, 64)).astype(np.float32)  # a 29 MB graph file
    g = hnswlib.Index(space="ip", dim=64)
    g.init_index(max_elements=len(x), M=8, ef_construction=10)
    g.add_items(x, np.arange(len(x)), num_threads=1)
    g.save_index(str(tmp_path / "hnsw.bin"))
    del g
    store = VectorStore.from_graph(tmp_path / "hnsw.bin", len(x), 64)
    (tmp_path / "hnsw.bin").read_bytes()  # the whole file in the page cache, as after a checksum
    before = _resident_file_mb()
    rows = np.random.default_rng(1).choice(len(x), 2_000, replace=False)
    np.testing.assert_array_equal(store[rows], x[rows])
    assert _resident_file_mb() - before < 5

def as_format_2(d, model):
    """Turn a saved index into what twotowers wrote before format 3: the vectors again in vectors.npy."""
    index = PassageIndex.load(d, model)
    np.save(d / "vectors.npy", index.vectors(range(len(index))), allow_pickle=False)
    meta = json.loads((d / "index.json").read_text())
    meta["format_version"] = 2
    meta["files"]["vectors.npy"] = files.describe_files(d)["vectors.npy"]
    (d / "index.json").write_text(json.dumps(meta))


def test_a_format_2_index_still_loads_and_is_saved_again_without_its_second_copy(saved, model, tmp_path):
    d = tmp_path / "old"
    shutil.copytree(saved, d)
    as_format_2(d, model)
    old = PassageIndex.load(d, model)
    assert all_modes(old) == all_modes(PassageIndex.load(saved, model))
    (d / "vectors.npy").write_bytes(b"x" * (d / "vectors.npy").stat().st_size)  # still checked, though unread
    with pytest.raises(ValueError, match=r"vectors.npy does not match the checksum"):
        PassageIndex.load(d, model)
    shutil.rmtree(d)
    shutil.copytree(saved, d)
    as_format_2(d, model)
    old = PassageIndex.load(d, model)
    old.save(d)  # in place: the directory's vectors.npy is the index's own file, not the user's
    assert "vectors.npy" not in {p.name for p in d.iterdir()}
    assert json.loads((d / "index.json").read_text())["format_version"] == 3
    assert all_modes(PassageIndex.load(d, model)) == all_modes(PassageIndex.load(saved, model))


@pytest.mark.parametrize("version", [1, 4])
def test_other_format_versions_are_refused_in_one_line(saved, tmp_path, version):
    d = tmp_path / "idx"
    shutil.copytree(saved, d)
    meta = json.loads((d / "index.json").read_text())
    meta["format_version"] = version
    (d / "index.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=rf"index.json: format_version {version} cannot be read by this twotowers "
                                         r"\(it reads 2 and 3, .*\): rebuild the index$"):
        PassageIndex.load(d)


def test_a_repeated_label_is_refused_even_unverified(saved, model, tmp_path):
    d = tmp_path / "idx"
    shutil.copytree(saved, d)
    count, per_element, _, label_offset = files.hnsw_layout(d / "hnsw.bin")
    data = bytearray((d / "hnsw.bin").read_bytes())
    first = files.LEVEL0_START + label_offset
    data[first + per_element : first + per_element + 8] = data[first : first + 8]  # record 1 claims record 0's row
    (d / "hnsw.bin").write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"hnsw.bin: two records carry the same label"):
        PassageIndex.load(d, model, verify=False)
