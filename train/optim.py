"""One optimizer setup and one learning-rate schedule for every objective.

Dense parameters: AdamW (no weight decay on biases and norms; the fused kernel where available).
Word-embedding tables (the 30,522 x 384 tables of the small towers, and the transformer's): sparse
gradients and SparseAdam when `--sparse-embeddings` (the default), so a step touches only the rows
of its batch's tokens, not 12M parameters per table. Schedule: linear warm-up over `--warmup-ratio`
of the planned steps, then cosine decay to 0; the plan may shrink mid-run (`--max-seconds`), and
the schedule follows it, so a time-capped run still anneals.
"""

from __future__ import annotations

import math

import torch
from torch import nn

_SPARSE_MIN = 1_000_000  # parameters: only the big embedding tables go sparse


def lr_factor(step: int, total: int, warmup_ratio: float) -> float:
    """The learning rate at optimizer step `step` of `total`, as a fraction of the peak."""
    warmup = max(1, int(warmup_ratio * total)) if warmup_ratio > 0 else 0
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


class Optimizers:
    """AdamW over the dense parameters and SparseAdam over the sparse tables, scheduled and stepped together."""

    def __init__(self, model: nn.Module, extra: list[nn.Parameter], *, lr: float, embedding_lr: float | None,
                 weight_decay: float, warmup_ratio: float, total_steps: int, sparse: bool):
        self.plan = {"total": max(int(total_steps), 1)}  # mutable: `--max-seconds` may shrink it
        self.sparse_tables = [m for m in model.modules() if sparse and isinstance(m, nn.Embedding)
                              and m.weight.requires_grad and m.weight.numel() >= _SPARSE_MIN]
        for m in self.sparse_tables:
            m.sparse = True
        sparse_ids = {id(m.weight) for m in self.sparse_tables}
        decay, no_decay = [], []
        for p in [*model.parameters(), *extra]:
            if p.requires_grad and id(p) not in sparse_ids:
                (no_decay if p.ndim < 2 else decay).append(p)
        self.dense_params = decay + no_decay
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        try:  # the fused kernel: several times faster than foreach on a CPU
            dense = torch.optim.AdamW(groups, lr=lr, fused=True)
        except (RuntimeError, ValueError):  # a device or dtype the fused kernel does not support
            dense = torch.optim.AdamW(groups, lr=lr)
        self.optimizers = [dense]
        if self.sparse_tables:
            self.optimizers.append(torch.optim.SparseAdam([m.weight for m in self.sparse_tables], lr=embedding_lr or lr))
        factor = lambda step: lr_factor(step, self.plan["total"], warmup_ratio)  # noqa: E731
        self.schedulers = [torch.optim.lr_scheduler.LambdaLR(o, factor) for o in self.optimizers]

    def zero_grad(self) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=True)

    def step(self, max_grad_norm: float, scaler: torch.amp.GradScaler | None = None) -> None:
        """Clip the dense gradients (sparse ones are per-row already), step every optimizer, advance the schedule."""
        if scaler is not None:
            for o in self.optimizers:
                scaler.unscale_(o)
        if max_grad_norm > 0 and self.dense_params:
            torch.nn.utils.clip_grad_norm_(self.dense_params, max_grad_norm)
        for o in self.optimizers:
            if scaler is not None:
                scaler.step(o)
            else:
                o.step()
        if scaler is not None:
            scaler.update()
        for s in self.schedulers:
            s.step()

    def lr(self) -> float:
        return self.schedulers[0].get_last_lr()[0]

    def release(self) -> None:
        """Dense gradients again (a saved model, and later training elsewhere, expect them)."""
        for m in self.sparse_tables:
            m.sparse = False

    def state_dict(self) -> dict:
        return {"optimizers": [o.state_dict() for o in self.optimizers],
                "schedulers": [s.state_dict() for s in self.schedulers], "plan": dict(self.plan)}

    def load_state_dict(self, state: dict) -> None:
        if len(state["optimizers"]) != len(self.optimizers):
            raise ValueError(f"the checkpoint has {len(state['optimizers'])} optimizers, this run {len(self.optimizers)} "
                             "(--sparse-embeddings or the trainable parameters differ)")
        for o, s in zip(self.optimizers, state["optimizers"]):
            o.load_state_dict(s)
        for sch, s in zip(self.schedulers, state["schedulers"]):
            sch.load_state_dict(s)
        self.plan.update(state["plan"])
