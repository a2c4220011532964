"""What a training run shows: one line per event on the main process, and a step line every `--log-steps`.

    step 120/434 (epoch 1.28/4): loss 0.4211, lr 1.83e-03, 5,212 texts/s, 23 s

The same figures go to W&B (train/tracking.py) as `train/loss`, `train/lr`, `train/texts_per_s`.
"""

from __future__ import annotations

import os
import time


def log(msg: str) -> None:
    """Print on rank 0 only."""
    if int(os.environ.get("RANK", "0")) == 0:
        print(msg, flush=True)


class Progress:
    """Loss and throughput over the last `every` optimizer steps -> a log line and a metrics dict."""

    def __init__(self, every: int, batches_per_epoch: int, world_size: int = 1):
        self.every, self.batches, self.world = every, batches_per_epoch, world_size
        self.losses: list[float] = []
        self.t0 = self.t_last = time.perf_counter()
        self.texts = 0

    def micro_batch(self, loss: float, texts: int) -> None:
        self.losses.append(loss)
        self.texts += texts

    def step(self, state, lr: float, planned: int) -> dict | None:
        """After an optimizer step: every `every` steps, the metrics to log (and the line printed)."""
        if state.global_step % self.every:
            return None
        now = time.perf_counter()
        metrics = {"train/loss": sum(self.losses) / max(len(self.losses), 1), "train/lr": lr,
                   "train/texts_per_s": self.texts * self.world / max(now - self.t_last, 1e-9),
                   "train/epoch": state.epoch + state.batch_in_epoch / max(self.batches, 1)}
        log(f"step {state.global_step}/{planned} (epoch {metrics['train/epoch']:.2f}): loss {metrics['train/loss']:.4f}, "
            f"lr {lr:.2e}, {metrics['train/texts_per_s']:,.0f} texts/s, {now - self.t0:.0f} s")
        self.losses, self.texts, self.t_last = [], 0, now
        return metrics
