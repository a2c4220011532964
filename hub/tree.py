"""A repo tree on disk before it goes up: which files, copying them in, and saying what one commit adds.

A `--dry-run` tree is the user's to open and edit, so its files are copies, never links to the
model's or the index's own files; only a temporary tree that is uploaded and deleted may link.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .connect import PublishError


def files_under(root: Path) -> list[Path]:
    """Regular files under root, skipping hidden names and caches (`.lock`, `__pycache__`)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
        out += [Path(dirpath) / f for f in sorted(filenames) if not f.startswith(".")]
    return out


def place(src: Path, dst: Path, *, link: bool = False) -> None:
    """Put `src` at `dst`: a copy, or (`link`, for a temporary tree) a hard link where the disk allows."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copy2(src, dst)


def check_repo_id(repo_id: str) -> None:
    """PublishError unless `repo_id` is OWNER/NAME."""
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(parts):
        raise PublishError(f"repo id must be OWNER/NAME, got {repo_id!r}")


def check_empty(out: Path, what: str) -> None:
    """PublishError unless `out` is absent or empty: a tree is never written over the user's files."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PublishError(f"{out} is not empty: give an empty or new directory for the {what} tree")


def describe(log, action: str, repo_id: str, private: bool, revision: str | None, tree: Path, files: list[str]) -> None:
    """Print what the one commit will (or would) add: the repo, the branch, every file and its size."""
    total = sum((tree / f).stat().st_size for f in files)
    log(f"{action} {repo_id} ({'private' if private else 'public'}), branch {revision or 'main'}")
    log(f"one commit adding {len(files)} files, {total / 1e6:.1f} MB:")
    for f in files:
        log(f"  {f}  ({(tree / f).stat().st_size:,} bytes)")
