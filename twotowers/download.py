"""A model, index or repo given as a local directory or a Hugging Face Hub id -> a local directory.

The one place that calls `huggingface_hub.snapshot_download`: only the named file patterns are
fetched (safetensors, JSON, numpy, text; never pickles or code), through the Hub's cache, and any
failure is one line that says whether a local directory of that name was looked for.

Large files resume: huggingface_hub 2.4 downloads each file into a temporary file unique to the
process and deletes it on failure, so a 16 GB graph interrupted at 15 GB starts again from zero. Files
of RESUMABLE_BYTES or more are therefore fetched first into the cache's own blob (`blobs/<etag>`, where
`hf_hub_download` finds and links it) through `<etag>.part`, a name the next call finds and continues
with an HTTP Range request (huggingface_hub's `http_get`); once whole, its sha256 is checked.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")  # NAME or OWNER/NAME


def looks_like_repo_id(name: str) -> bool:
    """Whether `name` could be a Hub repo id (a local path such as ./x, /x, a/b/c or x/ cannot)."""
    return bool(_REPO_ID.match(name)) and ".." not in name and not name.endswith((".", "-"))


def local_or_download(name_or_dir: str | os.PathLike, *, what: str, revision: str | None = None,
                      allow_patterns: list[str] | None = None, **kwargs) -> Path:
    """`name_or_dir` if it is a directory, else a snapshot of that Hub repo (pinned to `revision`).

    Raises FileNotFoundError for a path that is neither a directory nor a repo id, and OSError when
    the download fails (offline, not found, gated), each naming `what` and the name given.
    """
    name = str(name_or_dir)
    if Path(name).expanduser().is_dir():
        return Path(name).expanduser()
    if not looks_like_repo_id(name):
        raise FileNotFoundError(f"{what} {name!r}: no such directory (and not a Hub repo id OWNER/NAME)")
    from huggingface_hub import constants, snapshot_download

    try:
        if not (constants.is_offline_mode() or kwargs.get("local_files_only")):
            resume_large_files(name, revision=revision, allow_patterns=allow_patterns, cache_dir=kwargs.get("cache_dir"),
                               token=kwargs.get("token"))
        return Path(snapshot_download(name, revision=revision, allow_patterns=allow_patterns, **kwargs))
    except Exception as e:  # noqa: BLE001 - offline, not found, gated: one clear line
        at = f" at revision {revision!r}" if revision else ""
        from huggingface_hub import constants

        if constants.is_offline_mode() or kwargs.get("local_files_only"):
            raise OSError(f"{what} {name!r}: no such local directory, and not in the Hugging Face cache{at} (offline: "
                          "HF_HUB_OFFLINE is set, so nothing is downloaded): give a local directory, or fetch it once "
                          "online") from e
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise OSError(f"{what} {name!r}: no such local directory, and downloading it from the Hugging Face Hub"
                      f"{at} failed ({type(e).__name__}: {first})") from e


RESUMABLE_BYTES = 64 << 20  # files this large are fetched so that an interrupted download resumes
PART_SUFFIX = ".part"


def resume_large_files(repo_id: str, *, revision: str | None = None, allow_patterns: list[str] | None = None,
                       cache_dir=None, token=None) -> list[str]:
    """Fetch the repo's large files (`allow_patterns`, RESUMABLE_BYTES or more) that huggingface_hub's cache
    lacks into it, resuming any a previous call left partial -> their paths in the repo."""
    import hashlib

    from huggingface_hub import HfApi, constants, get_hf_file_metadata, hf_hub_url, try_to_load_from_cache
    from huggingface_hub.file_download import http_get, repo_folder_name
    from huggingface_hub.hf_api import RepoFile
    from huggingface_hub.utils import WeakFileLock, build_hf_headers, filter_repo_objects

    tree = HfApi(token=token).list_repo_tree(repo_id, recursive=True, revision=revision)
    large = [f for f in filter_repo_objects((f for f in tree if isinstance(f, RepoFile)), allow_patterns=allow_patterns,
                                            key=lambda f: f.path) if f.size >= RESUMABLE_BYTES]
    root = Path(cache_dir or constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type="model")
    fetched = []
    for f in large:
        if isinstance(try_to_load_from_cache(repo_id, f.path, cache_dir=cache_dir, revision=revision), str):
            continue
        meta = get_hf_file_metadata(hf_hub_url(repo_id, f.path, revision=revision), token=token)
        blob = root / "blobs" / meta.etag
        if blob.exists():
            continue
        blob.parent.mkdir(parents=True, exist_ok=True)
        lock = Path(cache_dir or constants.HF_HUB_CACHE) / ".locks" / root.name / f"{meta.etag}.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        part = blob.with_name(blob.name + PART_SUFFIX)
        with WeakFileLock(lock):  # the lock hf_hub_download takes for this blob
            with open(part, "r+b" if part.exists() else "wb") as out:
                done = out.seek(0, os.SEEK_END)
                http_get(meta.location, out, resume_size=done, headers=build_hf_headers(token=token),
                         expected_size=meta.size, displayed_filename=f.path)
            if len(meta.etag) == 64:  # an LFS/Xet file's etag is its sha256: check what the pieces add up to
                h = hashlib.sha256()
                with open(part, "rb") as data:
                    while block := data.read(1 << 24):
                        h.update(block)
                if h.hexdigest() != meta.etag:
                    part.unlink()
                    raise OSError(f"{f.path} downloaded does not match its sha256 (a partial download from another "
                                  "version?): it was deleted; run again")
            os.replace(part, blob)  # hf_hub_download links it into the snapshot
        fetched.append(f.path)
    return fetched


def cache_dir() -> Path:
    """Where twotowers caches what it computes (teacher vectors, the demo index): `$TWOTOWERS_CACHE`,
    else `$XDG_CACHE_HOME/twotowers`, else `~/.cache/twotowers`."""
    if os.environ.get("TWOTOWERS_CACHE"):
        return Path(os.environ["TWOTOWERS_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "twotowers"
