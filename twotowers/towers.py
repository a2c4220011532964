"""The towers: text token ids -> one vector per text, and the registry that names them.

Every tower maps `input_ids [B, T]` and `attention_mask [B, T]` to `[B, dim]` (not normalised):
- `MeanTower`: token embeddings averaged over the mask, then a linear projection (the seed design).
- `RNNTower`: the same embeddings through a bidirectional GRU/LSTM, outputs averaged, projected.
- `TransformerTower`: a whole encoder (MiniLM, bge-small, ...), pooled as that encoder pools (mean or
  CLS), optional projection.

To add a tower: write its class here (`__init__(cfg, ...)`, `forward`, a `from_base` classmethod that
builds it from the base model, `add_special_tokens`, `dim`) and register it in `TOWERS` with its
defaults; `TwoTowers(tower=name)`, `python -m train --tower name` and the evaluation pick it up.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from torch import nn

from .base import POOLINGS


@dataclass(frozen=True)
class TowerConfig:
    """Architecture of one tower; both towers of a model share it unless the passage side is set apart."""

    tower: str = "mean"
    projection_dim: int | None = 256  # None = no projection: output the pooled width
    rnn_hidden_size: int = 256  # per direction
    rnn_layers: int = 1
    dropout: float = 0.0
    freeze_embeddings: bool = False
    pooling: str = "mean"  # transformer tower: "mean" over the mask or the first token's state ("cls")

    def __post_init__(self):
        if self.tower not in TOWERS:
            raise ValueError(f"tower must be one of {', '.join(TOWERS)}, got {self.tower!r}")
        if self.projection_dim is not None and (not isinstance(self.projection_dim, int) or self.projection_dim < 1):
            raise ValueError(f"projection_dim must be a positive int or None, got {self.projection_dim!r}")
        if self.rnn_hidden_size < 1 or self.rnn_layers < 1:
            raise ValueError("rnn_hidden_size and rnn_layers must be >= 1")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average `x [B, T, D]` over the positions where `mask [B, T]` is 1 -> `[B, D]`.

    A text with no tokens (an empty string in the small towers) gives a zero vector.
    """
    m = mask.unsqueeze(-1).to(x.dtype)  # [B, T, 1]
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


def _projection(in_dim: int, out_dim: int | None) -> nn.Module:
    if out_dim is None:
        return nn.Identity()
    proj = nn.Linear(in_dim, out_dim)
    # Orthogonal init: an untrained projection keeps cosine geometry roughly intact (a fair baseline).
    nn.init.orthogonal_(proj.weight)
    nn.init.zeros_(proj.bias)
    return proj


def word_embeddings(weights: Path) -> torch.Tensor:
    """The `[vocab, hidden]` word-embedding matrix from a BERT-style safetensors file."""
    with safe_open(str(weights), framework="pt") as f:
        keys = [k for k in f.keys() if k.endswith("word_embeddings.weight")]
        if len(keys) != 1:
            raise ValueError(f"{weights}: expected one *word_embeddings.weight tensor, found {keys}")
        return f.get_tensor(keys[0])


class _EmbeddingTower(nn.Module):
    """Shared by the towers that start from the base model's word-embedding table."""

    add_special_tokens = False  # [CLS]/[SEP] would be the same two tokens in every average

    @classmethod
    def from_base(cls, cfg: TowerConfig, source: Path, base_config: dict, load_weights: bool) -> nn.Module:
        tower = cls(cfg, base_config["vocab_size"], base_config["hidden_size"])
        if load_weights:
            with torch.no_grad():
                tower.embeddings.weight.copy_(word_embeddings(source / "model.safetensors"))
        return tower


class MeanTower(_EmbeddingTower):
    """Bag of token embeddings: average pooling over the attention mask, then a linear projection."""

    def __init__(self, cfg: TowerConfig, vocab_size: int, embed_dim: int):
        super().__init__()
        self.embeddings = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.embeddings.weight.requires_grad_(not cfg.freeze_embeddings)
        self.dropout = nn.Dropout(cfg.dropout)
        self.projection = _projection(embed_dim, cfg.projection_dim)
        self.dim = cfg.projection_dim or embed_dim

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        emb = self.embeddings(input_ids)  # [B, T, E]
        pooled = masked_mean(emb, attention_mask)  # [B, E]
        return self.projection(self.dropout(pooled))  # [B, dim]

    def encode_one(self, ids: list[int]) -> np.ndarray:
        """One text's vector at inference (not normalised) -> `[dim]` float32: the mean of its tokens' rows
        of the projected table `E W^T`, plus the bias.

        The tower is linear, so this is the projection of the mean (to float rounding, ~1e-7) with no
        matrix product and no torch dispatch: one query then costs microseconds and wakes no thread pool
        (which, on a busy CPU, costs milliseconds). The table (vocab x dim) is computed on first use and
        again whenever the weights change.
        """
        w, proj = self.embeddings.weight, self.projection
        key = (w._version, w.data_ptr()) + ((proj.weight._version, proj.bias._version, proj.weight.data_ptr())
                                            if isinstance(proj, nn.Linear) else ())
        if getattr(self, "_table_key", None) != key:
            with torch.no_grad():
                table = w if not isinstance(proj, nn.Linear) else w @ proj.weight.T  # [vocab, dim]
                self._table = table.detach().float().cpu().numpy()
                self._bias = proj.bias.detach().float().cpu().numpy() if isinstance(proj, nn.Linear) else 0.0
            self._table_key = key
        return self._table[ids].sum(0) / max(len(ids), 1) + self._bias


class RNNTower(_EmbeddingTower):
    """Token embeddings -> bidirectional GRU or LSTM -> mean over valid steps -> projection.

    The texts are run in chunks of similar length (`chunk` rows, longest first), padded, not packed:
    PyTorch's backward through packed sequences is ~10x slower on a CPU (a 256-passage batch: 20.6 s
    against 1.8 s). Padding at the end cannot reach a valid step of the forward direction; the
    reverse direction runs on each text reversed within its own length, so it starts at the text's
    last token, never at padding. The outputs are those of `nn.GRU`/`nn.LSTM` over packed sequences
    (to float rounding, ~1e-8), from the same parameters (`self.rnn`, whose names models are saved with).
    """

    chunk = 64  # rows a GRU/LSTM call: less padding than one call for the batch, fewer calls than one a length

    def __init__(self, cfg: TowerConfig, vocab_size: int, embed_dim: int):
        super().__init__()
        self.embeddings = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.embeddings.weight.requires_grad_(not cfg.freeze_embeddings)
        rnn_cls = {"gru": nn.GRU, "lstm": nn.LSTM}[cfg.tower]
        self.rnn = rnn_cls(embed_dim, cfg.rnn_hidden_size, num_layers=cfg.rnn_layers, batch_first=True,
                           bidirectional=True, dropout=cfg.dropout if cfg.rnn_layers > 1 else 0.0)
        self.dropout = nn.Dropout(cfg.dropout)
        self.projection = _projection(2 * cfg.rnn_hidden_size, cfg.projection_dim)
        self.dim = cfg.projection_dim or 2 * cfg.rnn_hidden_size

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        emb = self.dropout(self.embeddings(input_ids))  # [B, T, E]
        lengths = attention_mask.sum(1)  # [B]
        order = torch.argsort(lengths, descending=True)
        rows_done, pooled = [], []
        for start in range(0, len(order), self.chunk):
            rows = order[start : start + self.chunk]
            t = int(lengths[rows].max().clamp(min=1))  # this chunk's longest text; an empty one: one pad step
            out = self._bidirectional(emb[rows, :t], lengths[rows])  # [b, t, 2H]
            rows_done.append(rows)
            pooled.append(masked_mean(out, attention_mask[rows, :t]))  # [b, 2H]
        rows, pooled = torch.cat(rows_done), torch.cat(pooled)
        pooled = torch.empty_like(pooled).index_copy(0, rows, pooled)  # back to the input's order
        return self.projection(self.dropout(pooled))

    def _bidirectional(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """`x [b, t, E]` right-padded, `lengths [b]` -> `[b, t, 2H]`: every layer, both directions."""
        steps = torch.arange(x.shape[1], device=x.device).unsqueeze(0)  # [1, t]
        last = lengths.clamp(min=1).unsqueeze(1) - 1  # [b, 1]
        within = torch.where(steps <= last, last - steps, steps).unsqueeze(-1)  # [b, t, 1]: reversed in length
        rnn = self.rnn
        for layer in range(rnn.num_layers):
            if layer and self.training and rnn.dropout:
                x = nn.functional.dropout(x, rnn.dropout)
            fwd = self._direction(x, layer, "")
            flipped = torch.gather(x, 1, within.expand(-1, -1, x.shape[2]))
            rev = self._direction(flipped, layer, "_reverse")
            rev = torch.gather(rev, 1, within.expand(-1, -1, rev.shape[2]))  # the same permutation undoes it
            x = torch.cat([fwd, rev], dim=-1)
        return x

    def _direction(self, x: torch.Tensor, layer: int, suffix: str) -> torch.Tensor:
        """One direction of one layer, run forward over `x` -> `[b, t, H]` (the weights of `self.rnn`)."""
        rnn = self.rnn
        params = [getattr(rnn, f"{name}_l{layer}{suffix}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        h0 = x.new_zeros(1, x.shape[0], rnn.hidden_size)
        if isinstance(rnn, nn.GRU):
            return torch.gru(x, h0, params, True, 1, 0.0, self.training, False, True)[0]
        return torch.lstm(x, (h0, h0), params, True, 1, 0.0, self.training, False, True)[0]


class TransformerTower(nn.Module):
    """A whole encoder fine-tuned, pooled as its sentence-transformers model pools: the mean over the
    mask (all-MiniLM-L6-v2) or the [CLS] state (bge-small-en-v1.5)."""

    add_special_tokens = True

    def __init__(self, cfg: TowerConfig, encoder: nn.Module, hidden_size: int):
        super().__init__()
        self.encoder = encoder
        if cfg.freeze_embeddings:
            self.encoder.get_input_embeddings().weight.requires_grad_(False)
        self.dropout = nn.Dropout(cfg.dropout)
        self.projection = _projection(hidden_size, cfg.projection_dim)
        self.dim = cfg.projection_dim or hidden_size
        self.pooling = cfg.pooling

    @classmethod
    def from_base(cls, cfg: TowerConfig, source: Path, base_config: dict, load_weights: bool) -> nn.Module:
        from transformers import AutoConfig, AutoModel

        kwargs = {"add_pooling_layer": False} if base_config.get("model_type") == "bert" else {}
        if load_weights:
            with _quiet_transformers():  # its load report lists the unused pooler weights we drop
                encoder = AutoModel.from_pretrained(source, use_safetensors=True, **kwargs)
        else:
            encoder = AutoModel.from_config(AutoConfig.for_model(**base_config), **kwargs)
        return cls(cfg, encoder, base_config["hidden_size"])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # [B, T, H]
        pooled = hidden[:, 0] if self.pooling == "cls" else masked_mean(hidden, attention_mask)  # [B, H]
        return self.projection(self.dropout(pooled))


@contextlib.contextmanager
def _quiet_transformers():
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


@dataclass(frozen=True)
class TowerSpec:
    """A registered tower: its class and the defaults that suit it."""

    cls: type[nn.Module]
    projection_dim: int | None  # default output width (None: the encoder's own)
    learning_rate: float  # default learning rate when training it


TOWERS: dict[str, TowerSpec] = {
    "mean": TowerSpec(MeanTower, 256, 1e-3),
    "gru": TowerSpec(RNNTower, 256, 1e-3),
    "lstm": TowerSpec(RNNTower, 256, 1e-3),
    "transformer": TowerSpec(TransformerTower, None, 2e-5),
}
TOWER_TYPES = tuple(TOWERS)


def build_tower(cfg: TowerConfig, source: Path, base_config: dict, load_weights: bool) -> nn.Module:
    """The tower `cfg` names, from the base model at `source` (its weights loaded when `load_weights`)."""
    return TOWERS[cfg.tower].cls.from_base(cfg, source, base_config, load_weights)
