"""Saving an index loses nothing: a kill at any rename leaves the old or the new index, a full disk is one
line naming the file and replaces nothing, a second writer is refused, and `load` reads only its own
files (whatever index.json lists)."""

import errno
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import hnswlib
import pytest
import torch

from conftest import one_error_line, run_cli
from test_index import synthetic_corpus
from twotowers import PassageIndex, TwoTowers
from twotowers import writing
from twotowers.index import passage_index
from twotowers.index.store import TextStore

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return TwoTowers()


@pytest.fixture(scope="module")
def old_and_new(model):
    """An index of 120 passages (the one on disk) and the same grown to 121 (the one being saved)."""
    ids, texts = synthetic_corpus(120)
    old = PassageIndex.build(model, ids, texts, M=16, ef_construction=50, tune_samples=20)
    new = PassageIndex.build(model, ids, texts, M=16, ef_construction=50, tune_samples=20)
    new.add(["quokka"], ["A quokka is a small marsupial from Rottnest Island."])
    return old, new


@pytest.fixture
def on_disk(old_and_new, tmp_path):
    d = tmp_path / "idx"
    old_and_new[0].save(d)
    return d


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs (the test also stops cleanup from running)."""


STEPS = (os, "rename"), (os, "replace"), (shutil, "rmtree")  # what moves or removes a saved file


def patch_steps(m, on_step) -> None:
    for module, name in STEPS:
        real = getattr(module, name)
        m.setattr(module, name, lambda *a, _real=real, **k: on_step() or _real(*a, **k))


def test_a_kill_at_every_rename_of_a_save_leaves_the_old_or_the_new_index(old_and_new, model, tmp_path, monkeypatch):
    old, new = old_and_new
    old.save(tmp_path / "probe")
    calls = []
    with monkeypatch.context() as m:
        patch_steps(m, lambda: calls.append(1))
        new.save(tmp_path / "probe")
    steps = len(calls)
    assert steps >= 4  # index.json's rename, the two of the directory swap, the old version's removal
    seen = set()
    for n in range(1, steps + 1):
        d = tmp_path / f"idx{n}"
        old.save(d)
        state = {"calls": 0, "dead": False}

        def step():
            if state["dead"]:  # a killed process runs no cleanup
                raise Killed("already dead")
            state["calls"] += 1
            if state["calls"] == n:
                state["dead"] = True
                raise Killed(f"killed at step {n}")

        with monkeypatch.context() as m:
            patch_steps(m, step)
            with pytest.raises(Killed):
                new.save(d)
        loaded = PassageIndex.load(d, model)  # every checksum verified: no mix of the two
        assert len(loaded) in (120, 121)
        assert ("quokka" in set(loaded.ids)) == (len(loaded) == 121)
        seen.add(len(loaded))
        new.save(d)  # the next save after a kill completes and cleans up
        assert len(PassageIndex.load(d, model)) == 121
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(f".idx{n}.")] == []  # nothing left over
    assert seen == {120, 121}  # the kill points cover both sides of the swap


def test_a_full_disk_is_one_line_naming_the_file_and_replaces_nothing(old_and_new, model, on_disk, monkeypatch):
    _, new = old_and_new

    def full(self, blob, offsets):
        Path(blob).write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(TextStore, "save", full)
    with pytest.raises(OSError, match=r"^disk full: could not write .*\.idx\.new/ids\.bin \(.* free on its disk\)"):
        new.save(on_disk)
    monkeypatch.undo()
    assert len(PassageIndex.load(on_disk, model)) == 120  # the index on disk is untouched, its checksums hold
    assert not (on_disk.parent / ".idx.new").exists()


def test_a_short_hnswlib_file_is_caught_not_saved(old_and_new, model, on_disk, monkeypatch):
    """hnswlib's C++ stream ignores a full disk: the file is short and no exception comes."""
    _, new = old_and_new
    real = hnswlib.Index.save_index

    def short(self, path):
        real(self, path)
        os.truncate(path, os.path.getsize(path) // 2)

    monkeypatch.setattr(hnswlib.Index, "save_index", short)
    with pytest.raises(OSError, match=r"could not write .*hnsw\.bin: hnswlib wrote [\d,]+ of its [\d,]+ bytes"):
        new.save(on_disk)
    monkeypatch.setattr(writing, "free_bytes", lambda path: 4096)  # what a full disk looks like
    with pytest.raises(OSError, match=r"^disk full: could not write .*hnsw\.bin \(4.0 KB free"):
        new.save(on_disk)
    monkeypatch.undo()
    assert len(PassageIndex.load(on_disk, model)) == 120


def test_too_little_space_is_refused_before_writing(old_and_new, on_disk, monkeypatch):
    monkeypatch.setattr(passage_index, "free_bytes", lambda path: 1000)
    with pytest.raises(OSError, match=r"^disk full: saving the index into .*idx needs about .*, and its disk has 1000 bytes free"):
        old_and_new[1].save(on_disk)
    assert not (on_disk.parent / ".idx.new").exists()


def hold_lock(target: Path):
    """Another process holding the writer lock of `target` (as a running build does)."""
    code = ("import sys, time; from twotowers.writing import writer_lock\n"
            "with writer_lock(sys.argv[1], 'the index'):\n    print('held', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(target)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.slow  # a second process holds the lock
def test_a_second_writer_is_refused_at_once(old_and_new, model, on_disk, tmp_path, capsys):
    from twotowers.index.__main__ import main

    model.save_pretrained(tmp_path / "model")
    (tmp_path / "c.tsv").write_text("p1\tpiano keys\np2\triver boat\n")
    holder = hold_lock(on_disk)
    try:
        with pytest.raises(OSError, match=rf"another process \(pid {holder.pid}\) is writing the index .*idx"):
            old_and_new[1].save(on_disk)
        t0 = time.perf_counter()
        status, _, err = run_cli(main, ["build", "--model", str(tmp_path / "model"), "--collection",
                                        str(tmp_path / "c.tsv"), "--out", str(on_disk), "--overwrite"], capsys)
        assert status == 1 and f"another process (pid {holder.pid}) is writing the index" in one_error_line(err)
        assert time.perf_counter() - t0 < 5  # refused before the model is loaded or anything encoded
    finally:
        holder.kill()
        holder.wait()
    assert len(PassageIndex.load(on_disk, model)) == 120
    old_and_new[1].save(on_disk)  # the lock died with its process
    assert len(PassageIndex.load(on_disk, model)) == 121


def test_the_swap_refuses_an_index_that_appeared_meanwhile_without_overwrite(old_and_new, on_disk, tmp_path):
    with pytest.raises(FileExistsError, match=r"idx already holds an index: pass overwrite=True"):
        old_and_new[1].save(on_disk, overwrite=False)
    old_and_new[1].save(tmp_path / "fresh", overwrite=False)  # nothing there: fine


def test_a_directory_of_other_files_is_never_replaced(old_and_new, tmp_path):
    d = tmp_path / "model-dir"
    d.mkdir()
    (d / "model.safetensors").write_bytes(b"weights")
    with pytest.raises(FileExistsError, match=r"holds files that are not part of a saved index \(model.safetensors\)"):
        old_and_new[0].save(d)
    assert (d / "model.safetensors").read_bytes() == b"weights"


@pytest.mark.parametrize("listed", ["../other/hnsw.bin", "/tmp/hnsw.bin", "sub/hnsw.bin", "notes.txt"])
def test_index_json_naming_files_outside_the_index_is_refused(on_disk, tmp_path, listed):
    (tmp_path / "other").mkdir()
    shutil.copyfile(on_disk / "hnsw.bin", tmp_path / "other" / "hnsw.bin")
    meta = json.loads((on_disk / "index.json").read_text())
    meta["files"][listed] = meta["files"]["hnsw.bin"]
    (on_disk / "index.json").write_text(json.dumps(meta))
    what = "a file of this index" if listed == "notes.txt" else "a plain file inside the index directory"
    with pytest.raises(ValueError, match=rf"index.json lists '{listed}', which is not {what}"):
        PassageIndex.load(on_disk)
    del meta["files"]["hnsw.bin"]  # renamed rather than added: the real hnsw.bin would go unchecked
    (on_disk / "index.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"index.json lists"):
        PassageIndex.load(on_disk, verify=False)


@pytest.mark.parametrize("left_out", ["passages.bin", "hnsw.bin", "keyword_vocab.json"])
def test_a_file_left_out_of_index_json_is_still_verified(on_disk, left_out):
    meta = json.loads((on_disk / "index.json").read_text())
    del meta["files"][left_out]
    (on_disk / "index.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=rf"index.json records no size or checksum for {left_out}: it would be read unchecked"):
        PassageIndex.load(on_disk)


@pytest.mark.parametrize("key,value", [("ef", 2**40), ("M", 0), ("dim", -1), ("count", -5)])
def test_index_json_values_out_of_range_are_refused(on_disk, key, value):
    """index.json carries no checksum of its own: an edited ef could make every search hang."""
    meta = json.loads((on_disk / "index.json").read_text())
    meta[key] = value
    (on_disk / "index.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=rf"index.json lacks or garbles a required field .*{key} {value} is out of range"):
        PassageIndex.load(on_disk)
