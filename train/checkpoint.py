"""Training checkpoints: the model (save_pretrained: safetensors + JSON), the optimizer, scheduler and
RNG state (`optimizer.pt`: tensors and numbers only, read back with `torch.load(weights_only=True)`)
and the loop position (`trainer_state.json`).

A checkpoint is written to `checkpoint.tmp/` and swapped in by renames, so a run killed at any
moment leaves either the previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_model

CHECKPOINT = "checkpoint"
STATE_NAME = "trainer_state.json"
OPTIMIZER_NAME = "optimizer.pt"


@dataclass
class TrainState:
    """Where the loop is: `batch_in_epoch` micro-batches of `epoch` are done (per process)."""

    epoch: int = 0
    batch_in_epoch: int = 0
    global_step: int = 0  # optimizer steps taken
    examples_seen: int = 0  # per process
    world_size: int = 1
    batch_size: int = 0
    accumulation_steps: int = 1


def save_checkpoint(output_dir: str | Path, model, optimizer, scheduler, state: TrainState, scaler=None) -> Path:
    """Write `output_dir/checkpoint/` atomically (call on rank 0 only)."""
    out = Path(output_dir)
    final, tmp, old = out / CHECKPOINT, out / f"{CHECKPOINT}.tmp", out / f"{CHECKPOINT}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    extra = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "torch_rng": torch.get_rng_state()}
    if torch.cuda.is_available():
        extra["cuda_rng"] = torch.cuda.get_rng_state_all()
    if scaler is not None:
        extra["scaler"] = scaler.state_dict()
    torch.save(extra, tmp / OPTIMIZER_NAME)
    (tmp / STATE_NAME).write_text(json.dumps(asdict(state), indent=2))
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def find_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint in `output_dir` (a kill between the two renames leaves `.old`)."""
    out = Path(output_dir)
    for name in (CHECKPOINT, f"{CHECKPOINT}.old"):
        if (out / name / STATE_NAME).is_file() and (out / name / OPTIMIZER_NAME).is_file():
            return out / name
    return None


def load_checkpoint(path: str | Path, model, optimizer, scheduler, scaler=None) -> TrainState:
    """Restore weights, optimizer, scheduler, RNG state in place -> the saved TrainState."""
    path = Path(path)
    try:
        load_model(model, str(path / "model.safetensors"), strict=True, device=str(model.device))
        extra = torch.load(path / OPTIMIZER_NAME, map_location="cpu", weights_only=True)
        state = TrainState(**json.loads((path / STATE_NAME).read_text()))
    except Exception as e:
        raise RuntimeError(f"could not resume from {path}: {type(e).__name__}: {e}") from e
    optimizer.load_state_dict(extra["optimizer"])
    scheduler.load_state_dict(extra["scheduler"])
    torch.set_rng_state(extra["torch_rng"])
    if "cuda_rng" in extra and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(extra["cuda_rng"])
    if scaler is not None and "scaler" in extra:
        scaler.load_state_dict(extra["scaler"])
    return state
