"""The streaming build (`python -m twotowers.index build`): resumed from its last checkpoint after a kill at any
step, never half an index in OUT, and across two torchrun processes the same index as one."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from test_index import synthetic_corpus
from twotowers import PassageIndex, TwoTowers
from twotowers.index import build as build_module
from twotowers.index import keyword_writer
from twotowers.index.appending import Blob
from twotowers.index.build import STATE_NAME, BuildSettings, build_directory, work_dir
from twotowers.index.keyword import ARRAYS
from twotowers.index.keyword_writer import KeywordWriter

ROOT = Path(__file__).resolve().parents[1]
N = 160
SETTINGS = BuildSettings(M=16, ef_construction=40, chunk_size=40, tune_samples=30)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return TwoTowers(projection_dim=32)


@pytest.fixture(scope="module")
def corpus():
    return synthetic_corpus(N)


class Counter:
    """The model's passage encoder, counting what it encodes."""

    def __init__(self, model):
        self.model, self.passages = model, 0

    def __call__(self, texts):
        self.passages += len(texts)
        return self.model.encode_passages(texts)


def build(out, model, corpus, **kw):
    return build_directory(out, model, zip(*corpus), settings=SETTINGS, total=N, checkpoint_seconds=0,
                           show_progress=False, **kw)


def contents(d, model):
    """Everything a build decides but the graph's links: ids, texts, vectors, BM25."""
    index = PassageIndex.load(d, model)  # every checksum verified
    kw = {name: np.asarray(a).copy() for name, a in index.keyword._arrays.items()}
    return list(index.ids), list(index.passages), index.vectors(range(len(index))), kw, index.keyword.vocab


def assert_same(a, b):
    assert a[0] == b[0] and a[1] == b[1] and a[4] == b[4]
    np.testing.assert_allclose(a[2], b[2], atol=1e-6)
    for name in ARRAYS:
        np.testing.assert_array_equal(a[3][name], b[3][name])


@pytest.fixture(scope="module")
def reference(model, corpus, tmp_path_factory):
    d = tmp_path_factory.mktemp("ref") / "idx"
    meta = build(d, model, corpus)
    return d, meta


def test_the_build_writes_the_index_the_library_builds(reference, model, corpus):
    d, meta = reference
    assert meta["count"] == N and meta["format_version"] == 3 and meta["ef_tuning"]["reached"]
    assert sorted(p.name for p in d.iterdir()) == sorted(["index.json", *meta["files"]])  # nothing of the build's own
    assert not work_dir(d).exists()
    lib = PassageIndex.build(model, *corpus, M=16, ef_construction=40, chunk_size=40, tune_samples=30)
    got = contents(d, model)
    assert got[0] == corpus[0] and got[1] == corpus[1]
    np.testing.assert_allclose(got[2], lib.vectors(range(N)), atol=1e-6)
    for name in ARRAYS:  # BM25 weighed out of core = weighed in memory
        np.testing.assert_array_equal(got[3][name], lib.keyword._arrays[name])



def test_bm25_weighed_a_few_pairs_at_a_time_is_the_same(reference, model, corpus, tmp_path, monkeypatch):
    """The finish weighs BM25 in blocks of passages (4M pairs each at scale): many small blocks give the
    arrays one block gives."""
    monkeypatch.setattr(keyword_writer, "_BLOCK_PAIRS", 37)
    build(tmp_path / "idx", model, corpus)
    got, want = contents(tmp_path / "idx", model), contents(reference[0], model)
    for name in ARRAYS:
        np.testing.assert_array_equal(got[3][name], want[3][name])


def test_the_build_says_which_step_of_its_finish_runs(model, corpus, tmp_path, capsys):
    """Each step after the last passage reads whole files (long at scale): a user sees which one is running."""
    build_directory(tmp_path / "idx", model, zip(*corpus), settings=SETTINGS, total=N, show_progress=True)
    err = capsys.readouterr().err
    assert f"indexing passages: {N} / {N} (100.0%)" in err
    for step in (f"tuning ef: exact search of {N} passages for 30 queries", "weighing BM25: ",
                 "checksums: the index's 14 files"):
        assert step in err

class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs."""


STEPS = [(os, "replace"), (os, "link"), (os, "rename"), (shutil, "rmtree"), (build_module, "save_graph"),
         (build_module, "tune"), (Blob, "extend"), (Blob, "sync"), (KeywordWriter, "add"), (KeywordWriter, "sync"),
         (KeywordWriter, "finish"), (build_module.files, "write_json"), (build_module, "clean")]


def patch_steps(m, on_step):
    for owner, name in STEPS:
        real = getattr(owner, name)
        if isinstance(owner, type):
            m.setattr(owner, name, lambda *a, _real=real, **k: on_step() or _real(*a, **k))
        else:
            m.setattr(owner, name, lambda *a, _real=real, **k: on_step() or _real(*a, **k))


def test_a_build_killed_at_any_step_resumes_from_its_last_checkpoint(reference, model, corpus, tmp_path, monkeypatch):
    calls = []
    with monkeypatch.context() as m:
        patch_steps(m, lambda: calls.append(1))
        build(tmp_path / "probe", model, corpus)
    steps = len(calls)
    assert steps > 40
    old = synthetic_corpus(30, seed=9)  # what OUT held before: it stays whole until the new index replaces it
    expected = contents(reference[0], model)
    for n in sorted({*np.linspace(1, steps, 12).astype(int)}):
        out = tmp_path / f"idx{n}"
        PassageIndex.build(model, *old, M=16, ef_construction=40, tune_samples=10).save(out)
        state = {"calls": 0}

        def step():
            state["calls"] += 1
            if state["calls"] >= n:  # the kill, and every step after it: a dead process runs no cleanup
                raise Killed(f"killed at step {n}")

        with monkeypatch.context() as m:
            patch_steps(m, step)
            with pytest.raises(Killed):
                build(out, model, corpus, overwrite=True)
        assert len(PassageIndex.load(out, model)) == 30  # OUT: the old index, whole (checksums verified)
        work = work_dir(out)
        done = (N if (work / "index.json").is_file()
                else json.loads((work / STATE_NAME).read_text())["count"] if (work / STATE_NAME).is_file() else 0)
        encoder = Counter(model)
        build(out, model, corpus, overwrite=True, encode=encoder)  # the same call again
        assert encoder.passages == N - done  # resumed from the last checkpoint, not from the start
        assert_same(contents(out, model), expected)
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(f".idx{n}.")] == []  # nothing left over


def test_a_resumed_build_must_be_the_same_build(model, corpus, tmp_path, monkeypatch):
    out = tmp_path / "idx"
    real = KeywordWriter.add

    def add(self, texts):  # killed while adding the fourth chunk, after the third one's checkpoint
        if len(self) == 120:
            raise Killed()
        real(self, texts)

    with monkeypatch.context() as m:
        m.setattr(KeywordWriter, "add", add)
        with pytest.raises(Killed):
            build(out, model, corpus)
    with pytest.raises(ValueError, match=r"holds an unfinished build with other settings: M 16 \(now 8\).*--restart"):
        build_directory(out, model, zip(*corpus), settings=BuildSettings(M=8, ef_construction=40, chunk_size=40),
                        show_progress=False)
    other = synthetic_corpus(N, seed=4)
    with pytest.raises(ValueError, match=r"first 120 passages are not those the unfinished build .* indexed"):
        build(out, model, other)
    torch.manual_seed(5)
    with pytest.raises(ValueError, match=r"unfinished build by another model"):
        build(out, TwoTowers(projection_dim=32), corpus)
    meta = build(out, model, other, restart=True)  # discarded on request
    assert meta["count"] == N and PassageIndex.load(out, model).passages[0] == other[1][0]


def write_model_and_collection(tmp_path, n):
    torch.manual_seed(0)
    TwoTowers(projection_dim=32).save_pretrained(tmp_path / "model")
    ids, texts = synthetic_corpus(n)
    (tmp_path / "c.tsv").write_text("".join(f"{i}\t{t}\n" for i, t in zip(ids, texts)), encoding="utf-8")
    return ids, texts


def cli(tmp_path, out, *extra):
    return ["-m", "twotowers.index", "build", "--model", str(tmp_path / "model"), "--collection",
            str(tmp_path / "c.tsv"), "--out", str(out), "--M", "16", "--ef-construction", "40", *extra]


@pytest.mark.slow  # 15 s; the kill at every step above is the fast version
def test_the_same_command_resumes_a_build_killed_with_sigkill(tmp_path):
    ids, texts = write_model_and_collection(tmp_path, 8000)
    cmd = [sys.executable, *cli(tmp_path, tmp_path / "idx", "--chunk-size", "400", "--checkpoint-minutes", "0")]
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if line.startswith("checkpoint: "):
            break
    proc.send_signal(signal.SIGKILL)  # mid-build, right after a checkpoint was recorded
    proc.wait()
    done = json.loads((work_dir(tmp_path / "idx") / STATE_NAME).read_text())["count"]
    assert 0 < done < 8000 and not (tmp_path / "idx").exists()  # no index at all, never half of one
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"resuming the unfinished build in {work_dir(tmp_path / 'idx')}: {done:,} passages were done" in again.stderr
    assert "8,000 / 8,000 (100.0%)" in again.stderr and "passages/s" in again.stderr
    index = PassageIndex.load(tmp_path / "idx", TwoTowers.from_pretrained(tmp_path / "model"))
    assert list(index.ids) == ids and list(index.passages) == texts


def test_two_torchrun_processes_build_what_one_process_builds(tmp_path):
    write_model_and_collection(tmp_path, 600)
    flags = ("--chunk-size", "100", "--threads", "1")  # one insertion thread: the graph is deterministic
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, *cli(tmp_path, tmp_path / "one", *flags)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          *cli(tmp_path, tmp_path / "two", *flags)], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stderr.count("wrote ") == 1  # rank 0 reports; rank 1 only encoded
    a, b = (json.loads((tmp_path / d / "index.json").read_text()) for d in ("one", "two"))
    assert a["files"] == b["files"]  # every file, graph included, byte for byte (their checksums)
    assert a["ef"] == b["ef"] and a["count"] == b["count"] == 600
