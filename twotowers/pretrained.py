"""Load a published model together with its passage index.

    from twotowers.pretrained import load_pretrained
    model, index = load_pretrained("OWNER/NAME")                 # or a local dir, or revision="<commit>"
    hits = index.search(["what is the reserve bank of australia"], k=10)

A Hub repo written by `python -m hub push` holds the model files at its root and the index under
`index/` (twotowers/layout.py). Both come from ONE `snapshot_download` of one revision (so they always match), through
huggingface_hub's cache; offline (`HF_HUB_OFFLINE=1`) the cached copy is used.
"""

from __future__ import annotations

import os
from pathlib import Path

from .checks import is_blank
from .download import local_or_download
from .layout import EXAMPLES_NAME, INDEX_SUBFOLDER, REPO_FILES, find_index
from .model import TwoTowers
from .textfiles import read_json


def load_pretrained(repo_id_or_dir: str | os.PathLike, revision: str | None = None, *,
                    subfolder: str = INDEX_SUBFOLDER, cache_dir: str | None = None, token: str | bool | None = None,
                    local_files_only: bool = False, verify: bool = True):
    """-> `(TwoTowers, PassageIndex)` from a local directory or a Hub repo (pinned to `revision` if given).

    The index is loaded with the model, so an index built by another model is refused; its files'
    checksums are verified unless `verify=False`.
    """
    from .index import PassageIndex  # hnswlib only when an index is wanted

    root = local_or_download(repo_id_or_dir, what="model repo", revision=revision, cache_dir=cache_dir, token=token,
                             local_files_only=local_files_only, allow_patterns=[*REPO_FILES, f"{subfolder}/*"])
    index_dir = find_index(root, subfolder)
    if index_dir is None:
        raise FileNotFoundError(f"{repo_id_or_dir}: no passage index under '{subfolder}/' "
                                "(push one with `python -m hub push --index DIR`)")
    model = TwoTowers.from_pretrained(str(root))
    return model, PassageIndex.load(index_dir, model=model, verify=verify)


def example_queries(root: str | os.PathLike) -> list[str]:
    """The example queries a model repo (or directory) ships in `examples.json`, or [] when it has none."""
    path = Path(root) / EXAMPLES_NAME
    if not path.is_file():
        return []
    data = read_json(path, "the model's example queries")
    return [q for q in data.get("queries", []) if isinstance(q, str) and not is_blank(q)] if isinstance(data, dict) else []
