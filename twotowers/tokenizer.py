"""Fast tokenisation for the towers: texts -> token ids (no padding), and per-batch padding.

Wraps a `tokenizers.Tokenizer` loaded from `tokenizer.json` (Rust, batched, thread-safe for
encoding). Truncation settings live on the Rust object, so one configured copy is kept per
(max_length, special tokens) pair instead of mutating a shared one from several threads.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from .layout import TOKENIZER_FILES

# A WordPiece token never spans more than 100 characters (longer words become [UNK]), so cutting a
# text at 100 chars per allowed token changes nothing but the cost of tokenising a 1 MB string.
_CHARS_PER_TOKEN_BOUND = 100


class TextTokenizer:
    """Texts -> lists of token ids, truncated to a max length; `pad` makes a batch of tensors."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        path = self.directory / "tokenizer.json"
        try:
            self._json = path.read_text(encoding="utf-8")
            base = Tokenizer.from_str(self._json)
        except Exception as e:
            raise OSError(f"could not read tokenizer {path}: {e}") from e
        self.pad_id = base.token_to_id("[PAD]") or 0
        self._configured: dict[tuple[int, bool], Tokenizer] = {}
        self._lock = threading.Lock()

    def _for(self, max_length: int, add_special_tokens: bool) -> Tokenizer:
        key = (max_length, add_special_tokens)
        tok = self._configured.get(key)
        if tok is None:
            with self._lock:
                tok = Tokenizer.from_str(self._json)
                tok.no_padding()
                tok.enable_truncation(max_length)
                self._configured[key] = tok
        return tok

    def encode(self, texts: list[str], max_length: int, add_special_tokens: bool) -> list[list[int]]:
        """Token ids of each text, at most `max_length` of them (special tokens included)."""
        cut = max_length * _CHARS_PER_TOKEN_BOUND
        texts = [t if len(t) <= cut else t[:cut] for t in texts]
        tok = self._for(max_length, add_special_tokens)
        if len(texts) == 1:  # encode_batch hands even one text to the Rust thread pool: waking it costs more
            return [tok.encode(texts[0], add_special_tokens=add_special_tokens).ids]
        return [e.ids for e in tok.encode_batch(texts, add_special_tokens=add_special_tokens)]

    def pad(self, batch: list[list[int]], device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """Right-pad to the longest in the batch -> `input_ids [B, T]`, `attention_mask [B, T]` on `device`."""
        input_ids, mask = pad_ids(batch, self.pad_id)
        return input_ids.to(device), mask.to(device)

    def save(self, directory: str | Path) -> None:
        """Copy the tokenizer files (those present) into `directory`."""
        directory = Path(directory)
        for name in TOKENIZER_FILES:
            src = self.directory / name
            if src.is_file() and src.resolve() != (directory / name).resolve():
                shutil.copyfile(src, directory / name)


def pad_ids(batch: list[list[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists to the longest -> `input_ids [B, T]`, `attention_mask [B, T]` (CPU, int64)."""
    width = max(1, max((len(ids) for ids in batch), default=1))
    input_ids = np.full((len(batch), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(batch), width), dtype=np.int64)
    for row, ids in enumerate(batch):
        input_ids[row, : len(ids)] = ids
        mask[row, : len(ids)] = 1
    return torch.from_numpy(input_ids), torch.from_numpy(mask)
