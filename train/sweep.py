"""`--sweep basic|extensive|quick`: Bayesian W&B sweeps over TrainConfig fields (train/sweeps/*.yaml).

The searched parameters come from the YAML; every other field is fixed to this command line's
value, so `python -m train --sweep quick --data-files ... --test-queries ...` sweeps on that data.
The metric is the retrieval test's NDCG@10 (`test/ndcg@10`), so give --test-* files or
--validation-files, and leave --no-comprehensive-test off. Sweeps need the W&B service (online).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from twotowers.optional import import_optional

from .config import TrainConfig

SWEEP_DIR = Path(__file__).parent / "sweeps"
FIXED_EXCLUDE = {"sweep", "sweep_count", "resume", "overwrite", "output_dir"}


def sweep_config(cfg: TrainConfig) -> dict:
    """The W&B sweep config: the YAML's search space + the command line's other fields as fixed values."""
    spec = yaml.safe_load((SWEEP_DIR / f"{cfg.sweep}.yaml").read_text())
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(spec["parameters"]) - names
    if unknown:
        raise ValueError(f"sweep {cfg.sweep}: parameters {sorted(unknown)} are not TrainConfig fields")
    if cfg.no_comprehensive_test:
        raise ValueError("a sweep optimises the retrieval test: drop --no-comprehensive-test")
    fixed = {k: {"value": v} for k, v in cfg.to_dict().items()
             if k not in spec["parameters"] and k not in FIXED_EXCLUDE and v is not None}
    return {**spec, "name": f"twotowers-{cfg.tower}-{cfg.sweep}", "parameters": {**fixed, **spec["parameters"]}}


def run_sweep(cfg: TrainConfig) -> dict:
    """Create the sweep and run `--sweep-count` trials in this process."""
    wandb = import_optional("wandb", "a W&B sweep")

    from .loop import run
    from .tracking import Tracker

    sweep_id = wandb.sweep(sweep_config(cfg), project=cfg.wandb_project, entity=cfg.wandb_entity)

    def trial() -> None:
        with wandb.init() as wrun:
            values = {k: v for k, v in dict(wrun.config).items() if k in {f.name for f in dataclasses.fields(TrainConfig)}}
            trial_cfg = dataclasses.replace(cfg, **values, sweep=None, output_dir=f"{cfg.out_dir}/sweep-{wrun.id}")
            run(trial_cfg, Tracker(trial_cfg))

    wandb.agent(sweep_id, function=trial, count=cfg.sweep_count)
    return {"sweep_id": sweep_id}
