"""Training losses for the towers. Each is a small module whose math is a pure function of embeddings
(`compute_loss_from_embeddings`), tested on hand-made tensors.

Labelled losses (a query, its positive, hard negatives); `python -m train --loss NAME` picks one of
`LOSSES` (to add one: a module here and an entry in `LOSSES`; its constructor's arguments are named
after the training flags that set them, e.g. `margin` <- `--margin`, so a new one is a field of
train/config.py's TrainConfig). Inputs (all L2-normalised, as `TwoTowers.forward` returns them):
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

Distillation losses (a student's vectors against a teacher's, `python -m train --distill-from`):
- `CosineToTeacherLoss`: 1 - cos(student, teacher), per text.
- `ScoreDistillLoss`: the student's query x passage score matrix against the teacher's (KL over each
  query's candidates at a temperature, and/or MSE).
"""

from __future__ import annotations

import inspect

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

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


class CosineToTeacherLoss(nn.Module):
    """mean(1 - cos(student, teacher)). When widths differ, pass `student_dim`: a learned linear map
    takes student vectors into the teacher's space (it is trained with the student, used only here)."""

    def __init__(self, student_dim: int | None = None, teacher_dim: int | None = None):
        super().__init__()
        self.projection = (nn.Linear(student_dim, teacher_dim, bias=False)
                           if student_dim and teacher_dim and student_dim != teacher_dim else None)

    @staticmethod
    def compute_loss_from_embeddings(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """`student [n, d]`, `teacher [n, d]` (any norm) -> scalar."""
        return (1.0 - F.cosine_similarity(student, teacher, dim=-1)).mean()

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        if self.projection is not None:
            student = self.projection(student)
        if student.shape[-1] != teacher.shape[-1]:
            raise ValueError(f"student dim {student.shape[-1]} != teacher dim {teacher.shape[-1]}: "
                             "pass student_dim/teacher_dim to add a projection, or use ScoreDistillLoss")
        return self.compute_loss_from_embeddings(student, teacher)


class ScoreDistillLoss(nn.Module):
    """Match the student's query·passage score matrix to the teacher's (widths may differ).

    `kl`: KL(teacher || student) over each query's candidates, softmax at `temperature` (both sides),
    the listwise signal that matters for ranking. `mse`: mean squared error of the raw cosine matrices.
    `weight_kl`/`weight_mse` mix them. The teacher's scores are `tq @ tp.T`, or `teacher_scores` when
    given (e.g. the teacher's cosines fused with BM25). `student_scale` multiplies the student's cosines
    first: where the two score in different spaces (bge-small's cosines span ~0.4-0.7, MiniLM's ~0-0.5),
    the scale that best matches them (`fit_student_scale`) spares the student distorting its vectors
    to match a spread it need not have."""

    def __init__(self, temperature: float = 0.05, weight_kl: float = 1.0, weight_mse: float = 0.0,
                 student_scale: float = 1.0):
        super().__init__()
        self.temperature, self.weight_kl, self.weight_mse = temperature, weight_kl, weight_mse
        self.student_scale = student_scale

    @staticmethod
    def compute_loss_from_embeddings(sq: torch.Tensor, sp: torch.Tensor, tq: torch.Tensor, tp: torch.Tensor,
                                     temperature: float = 0.05, weight_kl: float = 1.0, weight_mse: float = 0.0,
                                     teacher_scores: torch.Tensor | None = None,
                                     student_scale: float = 1.0) -> torch.Tensor:
        """Student `sq [B, d]`, `sp [N, d]`, teacher `tq [B, D]`, `tp [N, D]`, all unit vectors (or the
        teacher's `teacher_scores [B, N]`) -> scalar."""
        s = student_scale * (sq @ sp.T)  # [B, N] student cosines, on the teacher's scale
        t = tq @ tp.T if teacher_scores is None else teacher_scores  # [B, N] teacher scores
        loss = s.new_zeros(())
        if weight_kl:
            log_p_s = F.log_softmax(s / temperature, dim=-1)
            log_p_t = F.log_softmax(t / temperature, dim=-1)
            loss = loss + weight_kl * F.kl_div(log_p_s, log_p_t, log_target=True, reduction="batchmean")
        if weight_mse:
            loss = loss + weight_mse * F.mse_loss(s, t)
        return loss

    def forward(self, sq, sp, tq, tp, teacher_scores=None):
        return self.compute_loss_from_embeddings(sq, sp, tq, tp, self.temperature, self.weight_kl, self.weight_mse,
                                                 teacher_scores, self.student_scale)


def fit_student_scale(student_scores: torch.Tensor, teacher_scores: torch.Tensor, temperature: float = 0.05,
                      low: float = 0.05, high: float = 4.0, steps: int = 40) -> float:
    """The multiplier of the student's scores `[B, N]` that minimises KL(teacher || student) against the
    teacher's `[B, N]` at `temperature` (golden-section search on log scale over [low, high])."""
    log_p_t = F.log_softmax(teacher_scores / temperature, dim=-1)

    def kl(log_scale: float) -> float:
        log_p_s = F.log_softmax(student_scores * float(np.exp(log_scale)) / temperature, dim=-1)
        return float(F.kl_div(log_p_s, log_p_t, log_target=True, reduction="batchmean"))

    a, b = np.log(low), np.log(high)
    g = (np.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = kl(c), kl(d)
    for _ in range(steps):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = kl(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = kl(d)
    return float(np.exp((a + b) / 2))


LOSSES: dict[str, type[nn.Module]] = {"infonce": InBatchNegativesLoss, "triplet": TripletLoss}  # by --loss name


def build_loss(name: str, **settings) -> nn.Module:
    """The labelled loss `name` of `LOSSES`, built with the `settings` its constructor names (e.g. every
    training flag: `build_loss(cfg.loss, **cfg.to_dict())`); the others are ignored."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}: use one of {', '.join(LOSSES)}")
    cls = LOSSES[name]
    wanted = inspect.signature(cls).parameters
    return cls(**{k: v for k, v in settings.items() if k in wanted})
