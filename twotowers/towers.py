"""The towers: text token ids -> one vector per text.

Every tower maps `input_ids [B, T]` and `attention_mask [B, T]` to `[B, dim]` (not normalised):
- `MeanTower`: token embeddings averaged over the mask, then a linear projection (the seed design).
- `RNNTower`: the same embeddings through a bidirectional GRU/LSTM, outputs averaged, projected.
- `TransformerTower`: the whole MiniLM encoder, mean pooling, optional projection.
Towers are built from a `TowerConfig` and an embedding shape; weights are loaded by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

TOWER_TYPES = ("mean", "gru", "lstm", "transformer")


@dataclass(frozen=True)
class TowerConfig:
    """Architecture of one tower; both towers of a model share it (but not their weights)."""

    tower: str = "mean"
    projection_dim: int | None = 256  # None = no projection: output the pooled width
    rnn_hidden_size: int = 256  # per direction
    rnn_layers: int = 1
    dropout: float = 0.0
    freeze_embeddings: bool = False

    def __post_init__(self):
        if self.tower not in TOWER_TYPES:
            raise ValueError(f"tower must be one of {TOWER_TYPES}, got {self.tower!r}")
        if self.projection_dim is not None and (not isinstance(self.projection_dim, int) or self.projection_dim < 1):
            raise ValueError(f"projection_dim must be a positive int or None, got {self.projection_dim!r}")
        if self.rnn_hidden_size < 1 or self.rnn_layers < 1:
            raise ValueError("rnn_hidden_size and rnn_layers must be >= 1")


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


class MeanTower(nn.Module):
    """Bag of token embeddings: average pooling over the attention mask, then a linear projection."""

    add_special_tokens = False  # [CLS]/[SEP] would be the same two tokens in every average

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


class RNNTower(nn.Module):
    """Token embeddings -> bidirectional GRU or LSTM -> mean over valid steps -> projection."""

    add_special_tokens = False

    def __init__(self, cfg: TowerConfig, vocab_size: int, embed_dim: int):
        super().__init__()
        self.embeddings = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.embeddings.weight.requires_grad_(not cfg.freeze_embeddings)
        rnn_cls = nn.GRU if cfg.tower == "gru" else nn.LSTM
        self.rnn = rnn_cls(embed_dim, cfg.rnn_hidden_size, num_layers=cfg.rnn_layers, batch_first=True,
                           bidirectional=True, dropout=cfg.dropout if cfg.rnn_layers > 1 else 0.0)
        self.dropout = nn.Dropout(cfg.dropout)
        self.projection = _projection(2 * cfg.rnn_hidden_size, cfg.projection_dim)
        self.dim = cfg.projection_dim or 2 * cfg.rnn_hidden_size

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        emb = self.dropout(self.embeddings(input_ids))  # [B, T, E]
        lengths = attention_mask.sum(1).clamp(min=1).cpu()  # packing needs CPU lengths; empty -> 1 pad step
        packed = pack_padded_sequence(emb, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=input_ids.shape[1])  # [B, T, 2H]
        pooled = masked_mean(out, attention_mask)  # [B, 2H]
        return self.projection(self.dropout(pooled))


class TransformerTower(nn.Module):
    """The full MiniLM (BERT) encoder fine-tuned, mean pooling as in sentence-transformers."""

    add_special_tokens = True

    def __init__(self, cfg: TowerConfig, encoder: nn.Module, hidden_size: int):
        super().__init__()
        self.encoder = encoder
        if cfg.freeze_embeddings:
            self.encoder.get_input_embeddings().weight.requires_grad_(False)
        self.dropout = nn.Dropout(cfg.dropout)
        self.projection = _projection(hidden_size, cfg.projection_dim)
        self.dim = cfg.projection_dim or hidden_size

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # [B, T, H]
        return self.projection(self.dropout(masked_mean(hidden, attention_mask)))
