"""A training run's progress display (the run's other lines are logging's: twotowers/cli.py).

On a terminal (stderr a tty), a tqdm bar over the planned optimizer steps, with the rate and ETA, and
loss / lr / texts per second from the last `--log-steps` steps:

    train:  28%|███▏       | 120/434 [00:57<02:29, 2.10step/s, epoch=1.28/4, loss=0.4211, lr=1.83e-03, texts/s=5,212]

Otherwise (a log file, CI), one log line per `--log-steps` steps and at the last step:

    step 120/434 (epoch 1.28/4): loss 0.4211, lr 1.83e-03, 5,212 texts/s, 2.10 steps/s, 0:57 elapsed, ETA 2:29

The same figures go to W&B (train/tracking.py) as `train/loss`, `train/lr`, `train/texts_per_s`.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from tqdm import tqdm

log = logging.getLogger(__name__).info


class Progress:
    """Loss and throughput over the last `every` optimizer steps -> a bar (or log lines) and a metrics dict.

    `bar`: show a tqdm bar on `stream` (default: stderr); None = where `stream` is a terminal."""

    def __init__(self, every: int, batches_per_epoch: int, world_size: int = 1, *, epochs: int = 1, total: int = 0,
                 start: int = 0, stream=None, bar: bool | None = None):
        self.every, self.batches, self.world, self.epochs = every, batches_per_epoch, world_size, epochs
        self.losses: list[float] = []
        self.t0 = self.t_last = time.perf_counter()
        self.texts, self.start = 0, start
        stream = stream or sys.stderr
        main = int(os.environ.get("RANK", "0")) == 0
        if bar is None:
            bar = main and hasattr(stream, "isatty") and stream.isatty()
        self.bar = tqdm(total=total, initial=start, unit="step", desc="train", file=stream, dynamic_ncols=True,
                        smoothing=0.1) if bar and main else None

    def micro_batch(self, loss: float, texts: int) -> None:
        self.losses.append(loss)
        self.texts += texts

    def step(self, state, lr: float, planned: int) -> dict | None:
        """After an optimizer step: every `every` steps (and at the last), the metrics to log (and shown)."""
        if self.bar is not None:
            if self.bar.total != planned:  # --max-seconds re-planned the run
                self.bar.total = planned
            self.bar.update(state.global_step - self.bar.n)
        if state.global_step % self.every and state.global_step < planned:
            return None
        now = time.perf_counter()
        metrics = {"train/loss": sum(self.losses) / max(len(self.losses), 1), "train/lr": lr,
                   "train/texts_per_s": self.texts * self.world / max(now - self.t_last, 1e-9),
                   "train/epoch": state.epoch + state.batch_in_epoch / max(self.batches, 1)}
        epoch = f"{metrics['train/epoch']:.2f}/{self.epochs}"
        if self.bar is not None:
            self.bar.set_postfix_str(f"epoch={epoch}, loss={metrics['train/loss']:.4f}, lr={lr:.2e}, "
                                     f"texts/s={metrics['train/texts_per_s']:,.0f}")
        else:
            elapsed = now - self.t0
            rate = (state.global_step - self.start) / max(elapsed, 1e-9)
            eta = tqdm.format_interval((planned - state.global_step) / rate) if rate > 0 else "?"
            log(f"step {state.global_step}/{planned} (epoch {epoch}): loss {metrics['train/loss']:.4f}, lr {lr:.2e}, "
                f"{metrics['train/texts_per_s']:,.0f} texts/s, {rate:.2f} steps/s, "
                f"{tqdm.format_interval(elapsed)} elapsed, ETA {eta}")
        self.losses, self.texts, self.t_last = [], 0, now
        return metrics

    def close(self) -> None:
        """Leave the bar where it ended (the next log line goes below it)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
