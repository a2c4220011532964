"""Weights & Biases logging for training; the only module that imports wandb (lazily).

`WANDB_MODE=offline` writes the run under the output dir with no network; `--no-wandb` skips it.
"""

from __future__ import annotations

from pathlib import Path

from twotowers.optional import import_optional


class Tracker:
    """One W&B run: config at start, metrics per step, gradients via `wandb.watch`, final summary."""

    def __init__(self, cfg):
        wandb = import_optional("wandb", "W&B logging (use --no-wandb to train without it)")

        self.wandb = wandb
        if wandb.run is not None:  # inside a sweep agent: the agent made the run
            self.run = wandb.run
            self.run.config.update(cfg.to_dict(), allow_val_change=True)
        else:
            out = Path(cfg.out_dir)
            out.mkdir(parents=True, exist_ok=True)
            self.run = wandb.init(project=cfg.wandb_project, entity=cfg.wandb_entity, config=cfg.to_dict(),
                                  dir=str(out), name=out.name)
        self.log_freq = max(cfg.log_steps * 10, 1)

    def watch(self, model) -> None:
        self.wandb.watch(model, log="gradients", log_freq=self.log_freq)

    def log(self, metrics: dict, step: int) -> None:
        self.run.log(metrics, step=step)

    def summary(self, metrics: dict) -> None:
        for k, v in metrics.items():
            self.run.summary[k] = v

    def finish(self) -> None:
        self.run.finish()
