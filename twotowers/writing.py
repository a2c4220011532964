"""Writing outputs safely: one writer at a time, whole directories swapped in, failures said in one line.

    with writer_lock(out, "index"):                  # a second writer (any process) is refused at once
        tmp = staging_dir(out)                       # .NAME.new beside it, empty
        with writing(tmp / "hnsw.bin"):              # a full disk -> WriteError "disk full: <file> ..."
            ...
        swap_in(tmp, out)                            # renames: a kill at any point leaves old or new

`check_writable(out)` finds an unwritable output before hours of work; `make_readable(path)` gives a
file the permissions the umask allows (safetensors writes 0600, which another user cannot load).
The lock is an `flock` on `.NAME.lock` beside the target (inside it where only the target is writable),
removed on release; the system drops the lock when its process dies, so a killed writer never leaves a
stale one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import threading
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; writers are not locked there
    fcntl = None

_FULL = (errno.ENOSPC, errno.EDQUOT)
_FULL_WORDS = ("no space left", "storagefull", "os error 28", "quota exceeded")  # safetensors' Rust, torch's C++
LOW_SPACE = 16 << 20  # a write that fails with less free than this failed for want of space


class WriteError(OSError):
    """Writing an output failed (a full disk, a read-only directory); the message names the file."""


def is_disk_full(err: BaseException, path: Path | None = None) -> bool:
    """Whether `err` (or what caused it) is a full disk or quota; failing that, whether `path`'s disk is nearly full."""
    e: BaseException | None = err
    while e is not None:
        if isinstance(e, OSError) and e.errno in _FULL:
            return True
        if any(w in str(e).lower() for w in _FULL_WORDS):
            return True
        e = e.__cause__ or e.__context__
    free = free_bytes(path) if path is not None else None
    return free is not None and free < LOW_SPACE


def free_bytes(path: Path) -> int | None:
    """Free bytes on the disk holding `path` (or its nearest existing parent); None if unknown."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def human_size(n: int | None) -> str:
    """Bytes for a message: 4.0 KB, 1.2 GB."""
    if n is None:
        return "unknown"
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"


def write_error(err: BaseException, path: Path) -> WriteError:
    """`err`, raised while writing `path`, as one line: "disk full: ..." where it was, else what failed."""
    if isinstance(err, WriteError):
        return err
    if is_disk_full(err, path):
        out = WriteError(f"disk full: could not write {path} ({human_size(free_bytes(path))} free on its disk): "
                         "free some space or write elsewhere")
        out.errno = errno.ENOSPC
        return out
    reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    out = WriteError(f"could not write {path}: {reason}")
    out.errno = getattr(err, "errno", None) or errno.EIO
    return out


@contextlib.contextmanager
def writing(path: Path):
    """Turn any failure inside into a `WriteError` naming `path` (KeyboardInterrupt passes through)."""
    try:
        yield
    except Exception as e:  # noqa: BLE001 - safetensors and torch raise their own types for a full disk
        raise write_error(e, Path(path)) from e


@contextlib.contextmanager
def replacing(path: Path, *, overwrite: bool = True, encoding: str = "utf-8"):
    """A text file to write the new version of `path` into: written beside it (`.NAME.PID.tmp`) and renamed
    over it only once whole, so a failure (a WriteError naming it) or a kill leaves what was there. With
    `overwrite=False` the file is linked in only if `path` does not exist by then (FileExistsError: another
    writer got there first), never replacing it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with writing(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w", encoding=encoding) as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # atomic, and refuses an existing `path`
            except FileExistsError:
                raise FileExistsError(f"{path} appeared while this ran (another writer?): it was not replaced; "
                                      "pass --overwrite to replace it") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def check_writable(directory: Path, what: str) -> Path:
    """Write and remove a probe file in `directory` (or, while it does not exist, in the nearest parent that
    does, where it will be made), or raise WriteError naming it: call before hours of work whose output
    goes there. Creates nothing."""
    d = Path(directory)
    at = d.absolute()
    while not at.exists() and at != at.parent:
        at = at.parent
    try:
        if not at.is_dir():
            raise NotADirectoryError(f"{at} is a file")
        probe = at / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as e:
        raise WriteError(f"{what} {d} is not writable ({e.strerror or e}): choose another, or fix its "
                         "permissions, before anything runs") from None
    return d


def make_readable(path: Path) -> None:
    """Give `path` the read permissions the umask allows (0644 under the usual 022): safetensors writes 0600,
    which a copy served by another user (a Docker image, a Space) cannot read."""
    umask = os.umask(0)
    os.umask(umask)
    mode = os.stat(path).st_mode & 0o777
    want = mode | (0o444 & ~umask)
    if want != mode:
        os.chmod(path, want)


# -- one writer at a time ----------------------------------------------------------------------------
_HELD: dict[str, tuple[int, Path, int]] = {}  # key -> (fd, lock file, depth): flock is per open file, so
_HELD_GUARD = threading.Lock()                   # re-entry within this process is counted here


def lock_path(target: Path) -> Path:
    return Path(target).parent / f".{Path(target).name}.lock"


@contextlib.contextmanager
def writer_lock(target: Path, what: str):
    """Hold the one-writer lock of `target` for the block; another process's writer is refused at once
    with a WriteError. Re-entrant within this process (whose writers serialise themselves: `PassageIndex.add`
    and `save` are not thread-safe; the app takes its own write lock). The lock file is removed on release."""
    key = str(lock_path(target).absolute())
    with _HELD_GUARD:
        fd, lock, depth = _HELD.get(key) or (*_acquire(lock_path(target), target, what), 0)
        _HELD[key] = (fd, lock, depth + 1)
    try:
        yield
    finally:
        with _HELD_GUARD:
            fd, lock, depth = _HELD.pop(key)
            if depth > 1:
                _HELD[key] = (fd, lock, depth - 1)
            else:
                with contextlib.suppress(OSError):
                    lock.unlink()  # while still held: a writer that opened this file finds it gone and retries
                os.close(fd)  # releases the flock


def _acquire(lock: Path, target: Path, what: str) -> tuple[int, Path]:
    at = lock.parent.absolute()
    while not at.exists() and at != at.parent:
        at = at.parent
    if not at.is_dir():
        raise WriteError(f"cannot write {what} {target}: {at} is a file, not a directory")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(lock, os.O_RDWR | os.O_CREAT, 0o644))
    except OSError as e:
        if not Path(target).is_dir():
            raise WriteError(f"cannot write {what} {target}: {lock.parent} is not writable ({e.strerror or e})") from None
        lock = Path(target) / ".writer.lock"  # a directory the user may write in a parent they may not
    for _ in range(100):  # retried only if the file was removed between our open and our lock
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise WriteError(f"cannot write {what} {target}: {lock.parent} is not writable ({e.strerror or e})") from None
        if fcntl is None:
            return fd, lock
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            raise WriteError(f"another process{f' (pid {holder})' if holder.isdigit() else ''} is writing {what} "
                             f"{target} (it holds {lock}): wait for it to finish, or write elsewhere") from None
        try:
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:  # still the file at that path: ours
                os.ftruncate(fd, 0)
                os.write(fd, str(os.getpid()).encode())
                return fd, lock
        except FileNotFoundError:
            pass
        os.close(fd)
    raise WriteError(f"cannot take the lock {lock} of {what} {target}: it keeps being replaced")


class HeldLock:
    """`writer_lock` held until `release()` (or until this object is dropped): for a lock that spans a long
    function (a training run) without indenting it."""

    def __init__(self, target: Path, what: str):
        self._cm = writer_lock(target, what)
        self._cm.__enter__()

    def release(self) -> None:
        if self._cm is not None:
            cm, self._cm = self._cm, None
            cm.__exit__(None, None, None)

    def __del__(self):
        with contextlib.suppress(Exception):
            self.release()


# -- whole directories swapped in ---------------------------------------------------------------------
def staging_dir(target: Path) -> Path:
    """`.NAME.new` beside `target`, empty (a crashed writer's leftovers removed): write the new version there."""
    tmp = Path(target).parent / f".{Path(target).name}.new"
    shutil.rmtree(tmp, ignore_errors=True)
    with writing(tmp):  # swapping a directory in needs its parent writable
        tmp.mkdir(parents=True)
    return tmp


def previous_dir(target: Path) -> Path:
    """`.NAME.old` beside `target`: the version being replaced, while the swap runs."""
    return Path(target).parent / f".{Path(target).name}.old"


def sync_tree(directory: Path) -> None:
    """fsync every file in `directory` and the directory itself: what the swap publishes is on disk (a
    network or delayed-allocation file system may report a full disk only here)."""
    d = Path(directory)
    for p in sorted(d.iterdir()):
        if p.is_file():
            with writing(p):
                fd = os.open(p, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
    _sync_dir(d)


def _sync_dir(d: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can fsync a directory
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def swap_in(tmp: Path, target: Path) -> None:
    """Replace `target` with the complete directory `tmp` by two renames (call under `writer_lock`).

    A kill before the first leaves `target` as it was; between them, `target` is absent and the old
    version is `.NAME.old` (readers look there: see `current_dir`); after the second, `target` is new.
    """
    tmp, target, old = Path(tmp), Path(target), previous_dir(target)
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)  # a crashed swap's leftover: `target` is complete
        os.rename(target, old)
    elif not old.exists():
        old = None
    os.rename(tmp, target)
    _sync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def current_dir(target: Path, marker: str) -> Path:
    """Where the latest complete version of `target` is: `target` itself, or `.NAME.old` when a swap was
    killed between its renames (`marker`: the file a complete version holds)."""
    target = Path(target)
    if not (target / marker).is_file() and (previous_dir(target) / marker).is_file():
        return previous_dir(target)
    return target
