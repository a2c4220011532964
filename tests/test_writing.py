"""twotowers/writing.py: outputs replaced whole or not at all, failures in one line naming the file,
permissions another user can read, one writer per target."""

import errno
import os

import pytest

from twotowers import writing
from twotowers.writing import WriteError, check_writable, make_readable, replacing, write_error, writer_lock


def test_a_replaced_file_is_whole_or_untouched(tmp_path, monkeypatch):
    out = tmp_path / "results.json"
    out.write_text("what the user had")
    with pytest.raises(WriteError, match=rf"^disk full: could not write {out} \("):
        with replacing(out) as f:
            f.write("half of the new ")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert out.read_text() == "what the user had" and [p.name for p in tmp_path.iterdir()] == ["results.json"]
    with replacing(out) as f:
        f.write("the new version")
    assert out.read_text() == "the new version"


def test_without_overwrite_a_file_that_appeared_meanwhile_is_kept(tmp_path):
    out = tmp_path / "triples.tsv"
    with pytest.raises(FileExistsError, match=r"triples.tsv appeared while this ran \(another writer\?\)"):
        with replacing(out, overwrite=False) as f:
            f.write("ours")
            out.write_text("the other writer's")
    assert out.read_text() == "the other writer's"


@pytest.mark.parametrize("err", [OSError(errno.ENOSPC, "No space left on device"),
                                 OSError(errno.EDQUOT, "Disk quota exceeded"),
                                 RuntimeError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })")])
def test_a_full_disk_is_named_whatever_library_raised_it(tmp_path, err):
    e = write_error(err, tmp_path / "model.safetensors")
    assert isinstance(e, OSError) and str(e).startswith(f"disk full: could not write {tmp_path / 'model.safetensors'} (")
    assert e.errno == errno.ENOSPC


def test_other_write_failures_name_the_file_and_the_reason(tmp_path):
    e = write_error(PermissionError(errno.EACCES, "Permission denied"), tmp_path / "x.npy")
    assert str(e) == f"could not write {tmp_path / 'x.npy'}: Permission denied"


def test_saved_files_get_the_umasks_permissions(tmp_path):
    p = tmp_path / "weights"
    p.write_bytes(b"w")
    os.chmod(p, 0o600)  # what safetensors writes
    old = os.umask(0o022)
    try:
        make_readable(p)
    finally:
        os.umask(old)
    assert p.stat().st_mode & 0o777 == 0o644


def test_check_writable_creates_nothing_and_names_the_output(tmp_path):
    assert check_writable(tmp_path / "new" / "run", "--output-dir") == tmp_path / "new" / "run"
    assert not (tmp_path / "new").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(WriteError, match=r"--output-dir .*file/run is not writable"):
        check_writable(tmp_path / "file" / "run", "--output-dir")


@pytest.mark.slow  # a second process holds the lock
def test_the_writer_lock_is_reentrant_here_and_exclusive_across_processes(tmp_path):
    from test_index_save import hold_lock

    target = tmp_path / "idx"
    with writer_lock(target, "the index"):
        with writer_lock(target, "the index"):  # the same process: a save inside a build
            pass
    holder = hold_lock(target)
    try:
        with pytest.raises(WriteError, match=rf"another process \(pid {holder.pid}\) is writing the index"):
            with writer_lock(target, "the index"):
                pass
    finally:
        holder.kill()
        holder.wait()
    with writer_lock(target, "the index"):  # released when its process died
        pass
    assert writing._HELD == {}
