"""W&B sweeps over `python -m train` flags (train/sweeps/*.yaml), run either way:

    wandb sweep train/sweeps/quick.yaml && wandb agent ENTITY/twotowers/SWEEP_ID   # the W&B CLI: each run is
                                                    # the YAML's `command`, `python -m train --learning-rate=...`
    python -m train --sweep quick [data flags]      # here: the same search space, every other flag fixed to
                                                    # this command line's value (its data, its model)

A YAML's parameter names are the flags without `--` (`learning-rate`); its `command` holds the fixed
flags the CLI route runs with. The metric is the retrieval test's NDCG@10 (`test/ndcg@10`), so give
--test-* files or --validation-files, and leave --no-comprehensive-test off. Sweeps need the W&B
service (online).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from twotowers.optional import import_optional

from .config import TrainConfig

SWEEP_DIR = Path(__file__).parent / "sweeps"
FIXED_EXCLUDE = {"sweep", "sweep_count", "resume", "overwrite", "output_dir"}
FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def field_name(parameter: str) -> str:
    """A sweep parameter (a flag without `--`: `learning-rate`) -> its TrainConfig field (`learning_rate`)."""
    return parameter.replace("-", "_")


def flag_name(field: str) -> str:
    return field.replace("_", "-")


def load_sweep(name: str) -> dict:
    """train/sweeps/NAME.yaml, its parameter names checked against the flags."""
    spec = yaml.safe_load((SWEEP_DIR / f"{name}.yaml").read_text())
    unknown = sorted(p for p in spec["parameters"] if field_name(p) not in FIELDS or "_" in p)
    if unknown:
        raise ValueError(f"sweep {name}: parameters {unknown} are not `python -m train` flags (e.g. learning-rate)")
    return spec


def sweep_config(cfg: TrainConfig) -> dict:
    """The W&B sweep config for `python -m train --sweep`: the YAML's search space + the command line's other
    flags as fixed values (the YAML's own `command` and `program` are for the CLI route, not this one)."""
    spec = load_sweep(cfg.sweep)
    if cfg.no_comprehensive_test:
        raise ValueError("a sweep optimises the retrieval test: drop --no-comprehensive-test")
    searched = {field_name(p) for p in spec["parameters"]}
    fixed = {flag_name(k): {"value": v} for k, v in cfg.to_dict().items()
             if k not in searched and k not in FIXED_EXCLUDE and v is not None}
    spec = {k: v for k, v in spec.items() if k not in ("command", "program")}
    return {**spec, "name": f"twotowers-{cfg.tower}-{cfg.sweep}", "parameters": {**fixed, **spec["parameters"]}}


def run_sweep(cfg: TrainConfig) -> dict:
    """Create the sweep and run `--sweep-count` trials in this process."""
    wandb = import_optional("wandb", "a W&B sweep")

    from .loop import run
    from .tracking import Tracker

    base = cfg.out_dir
    sweep_id = wandb.sweep(sweep_config(cfg), project=cfg.wandb_project, entity=cfg.wandb_entity)

    def trial() -> None:
        with wandb.init() as wrun:
            values = {field_name(k): v for k, v in dict(wrun.config).items() if field_name(k) in FIELDS}
            trial_cfg = dataclasses.replace(cfg, **values, sweep=None, output_dir=f"{base}/sweep-{wrun.id}")
            run(trial_cfg, Tracker(trial_cfg))

    wandb.agent(sweep_id, function=trial, count=cfg.sweep_count)
    return {"sweep_id": sweep_id}
