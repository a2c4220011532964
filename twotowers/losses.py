"""Training losses for the towers. Each is a small module whose math is a pure function of embeddings.

Inputs (all L2-normalised, as `TwoTowers.forward` returns them):
    q          [B, D]  queries
    p          [B, D]  each query's positive passage (row i belongs to query i)
    n          [M, D]  hard negatives (M >= 0), of any queries
    neg_owner  [M]     which query (0..B-1) each hard negative was mined for

- `TripletLoss`: the seed's loss. Cosine distance d = 1 - cos; per query
  max(0, d(q, p) - d(q, n) + margin), with the query's own hard negative, or where it has none,
  the next query's positive (an in-batch negative).
- `InBatchNegativesLoss` (InfoNCE / sentence-transformers' MultipleNegativesRankingLoss): softmax
  cross-entropy of each query over [all positives of the batch, all hard negatives], scaled
  cosine; the right passage is the query's own positive. Far stronger for MS MARCO.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LOSSES = ("triplet", "infonce")


class TripletLoss(nn.Module):
    """Cosine-distance triplet loss with a margin (the seed's loss)."""

    def __init__(self, margin: float = 0.2):
        super().__init__()
        self.margin = margin

    def forward(self, q, p, n=None, neg_owner=None):
        return self.compute_loss_from_embeddings(q, p, n, neg_owner, self.margin)

    @staticmethod
    def compute_loss_from_embeddings(q: torch.Tensor, p: torch.Tensor, n: torch.Tensor | None = None,
                                     neg_owner: torch.Tensor | None = None, margin: float = 0.2) -> torch.Tensor:
        """Mean over queries of max(0, d(q, p) - d(q, neg) + margin), d = 1 - cosine."""
        batch = q.shape[0]
        # Default negative: the next query's positive (needs B >= 2 to differ from the positive).
        neg = p.roll(-1, dims=0) if batch > 1 else torch.zeros_like(p)
        if n is not None and n.shape[0] > 0:
            # The first hard negative of each query replaces its in-batch one. Scatter in reverse so
            # that, for a query with several, the earliest wins (last write wins).
            neg = neg.clone()
            order = torch.arange(n.shape[0] - 1, -1, -1, device=n.device)
            neg[neg_owner[order]] = n[order]
        d_pos = 1.0 - (q * p).sum(-1)  # [B]
        d_neg = 1.0 - (q * neg).sum(-1)  # [B]
        return F.relu(d_pos - d_neg + margin).mean()


class InBatchNegativesLoss(nn.Module):
    """InfoNCE over in-batch and hard negatives (MultipleNegativesRankingLoss), scale = 1/temperature."""

    def __init__(self, scale: float = 20.0):
        super().__init__()
        self.scale = scale

    def forward(self, q, p, n=None, neg_owner=None):
        return self.compute_loss_from_embeddings(q, p, n, self.scale)

    @staticmethod
    def compute_loss_from_embeddings(q: torch.Tensor, p: torch.Tensor, n: torch.Tensor | None = None,
                                     scale: float = 20.0) -> torch.Tensor:
        """Cross-entropy of query i over scale * cos(q_i, [p; n]) with target i."""
        candidates = p if n is None or n.shape[0] == 0 else torch.cat([p, n])  # [B + M, D]
        scores = scale * q @ candidates.T  # [B, B + M]
        target = torch.arange(q.shape[0], device=q.device)
        return F.cross_entropy(scores, target)


def build_loss(name: str, margin: float = 0.2, scale: float = 20.0) -> nn.Module:
    """'triplet' -> TripletLoss(margin); 'infonce' -> InBatchNegativesLoss(scale)."""
    if name == "triplet":
        return TripletLoss(margin)
    if name in ("infonce", "mnrl"):
        return InBatchNegativesLoss(scale)
    raise ValueError(f"unknown loss {name!r}: use one of {LOSSES}")
