"""Train two-tower retrieval models.

    python -m train --tower mean --data-files rows.jsonl --validation-files dev.jsonl --epochs 2
    torchrun --nproc-per-node 4 -m train --tower transformer ...      # DistributedDataParallel
    python -m train --sweep quick ...                                  # Bayesian W&B sweep

`python -m train --help` lists every flag (they are the fields of train/config.py's TrainConfig).
"""

import os
import sys

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # DataLoader workers fork after tokenising

from twotowers.textfiles import DataFormatError  # noqa: E402

from .config import parse_config  # noqa: E402
from .loop import main  # noqa: E402

if __name__ == "__main__":
    cfg = parse_config()
    try:
        main(cfg)
    except (DataFormatError, FileNotFoundError, OSError, ValueError) as e:  # bad files, offline Hub: one line
        sys.exit(f"error: {e}")
