"""Train two-tower retrieval models: labelled pairs, distillation from a teacher, or both mixed.

    python -m train --tower mean --data-files rows.jsonl --validation-files dev.jsonl --epochs 2
    python -m train --distill-from minilm --distill-data queries.tsv collection.tsv --tower mean ...
    torchrun --nproc-per-node 4 -m train --tower transformer ...      # DistributedDataParallel
    python -m train --sweep quick ...                                  # Bayesian W&B sweep

`python -m train --help` lists every flag (they are the fields of train/config.py's TrainConfig).
Bad input (a file that does not parse, a flag out of range, a checkpoint of other settings) is one
`error:` line and exit status 1.
"""

import os
import sys

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # DataLoader workers fork after tokenising

from twotowers.cli import run_main  # noqa: E402

from .config import TrainConfig, parse_config  # noqa: E402


def train(cfg: TrainConfig) -> dict:
    """One run (or a sweep of runs), with W&B when enabled: what `python -m train` does with `cfg`."""
    if cfg.sweep:
        from .sweep import run_sweep

        return run_sweep(cfg)
    from .loop import run

    tracker = None
    if not cfg.no_wandb and int(os.environ.get("RANK", "0")) == 0:
        from .tracking import Tracker

        tracker = Tracker(cfg)
    try:
        return run(cfg, tracker)
    finally:
        if tracker is not None:
            tracker.finish()


if __name__ == "__main__":
    sys.exit(run_main(lambda: train(parse_config())))
