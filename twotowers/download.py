"""A model, index or repo given as a local directory or a Hugging Face Hub id -> a local directory.

The one place that calls `huggingface_hub.snapshot_download`: only the named file patterns are
fetched (safetensors, JSON, numpy, text; never pickles or code), through the Hub's cache, and any
failure is one line that says whether a local directory of that name was looked for.
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
    from huggingface_hub import snapshot_download

    try:
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


def cache_dir() -> Path:
    """Where twotowers caches what it computes (teacher vectors, the demo index): `$TWOTOWERS_CACHE`,
    else `$XDG_CACHE_HOME/twotowers`, else `~/.cache/twotowers`."""
    if os.environ.get("TWOTOWERS_CACHE"):
        return Path(os.environ["TWOTOWERS_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "twotowers"
