"""Training checkpoints: the model (save_pretrained: safetensors + JSON), the objective's own weights
(`objective.safetensors`, e.g. a projection into the teacher's space), the optimizers, schedule and
RNG state (`optimizer.pt`: tensors and numbers only, read back with `torch.load(weights_only=True)`),
the loop position (`trainer_state.json`) and the run's flags (`train_config.json`).

A checkpoint is written to `checkpoint.tmp/` and swapped in by renames, so a run killed at any
moment leaves either the previous checkpoint or the new one, never half of one. `--resume` refuses
a checkpoint written with other settings, naming the flags that differ.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, load_model, save_file

from twotowers.layout import TRAIN_CONFIG_NAME as CONFIG_NAME
from twotowers.layout import WEIGHTS_NAME
from twotowers.textfiles import read_json
from twotowers.writing import WriteError, make_readable, writing

CHECKPOINT = "checkpoint"
STATE_NAME = "trainer_state.json"
OPTIMIZER_NAME = "optimizer.pt"
OBJECTIVE_NAME = "objective.safetensors"
# Flags that may change between a run and its resumption (where output goes, how it is logged).
RESUME_FREE = {"resume", "overwrite", "output_dir", "no_wandb", "wandb_project", "wandb_entity", "log_steps",
               "save_steps", "num_workers", "eval_batch_size", "no_comprehensive_test", "push_to_hub", "device",
               "no_save", "distill_cache_dir", "sweep", "sweep_count", "test_queries", "test_qrels", "test_collection",
               "validation_files", "keep_checkpoint"}


@dataclass
class TrainState:
    """Where the loop is: `batch_in_epoch` micro-batches of `epoch` are done (per process)."""

    epoch: int = 0
    batch_in_epoch: int = 0
    global_step: int = 0  # optimizer steps taken
    planned_steps: int = 0  # optimizer steps the schedule runs over (shrunk by --max-seconds)
    examples_seen: int = 0  # texts, per process
    train_seconds: float = 0.0  # spent training before this process (a resumed run counts on)
    world_size: int = 1


def save_checkpoint(output_dir: str | Path, model, objective, optimizers, state: TrainState, config: dict,
                    scaler=None) -> Path:
    """Write `output_dir/checkpoint/` atomically (call on rank 0 only)."""
    out = Path(output_dir)
    final, tmp, old = out / CHECKPOINT, out / f"{CHECKPOINT}.tmp", out / f"{CHECKPOINT}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp)  # a full disk: WriteError naming the file (twotowers.writing)
        objective_state = {k: v.detach().cpu().contiguous() for k, v in objective.state_dict().items()}
        if objective_state:
            with writing(tmp / OBJECTIVE_NAME):
                save_file(objective_state, str(tmp / OBJECTIVE_NAME))
            make_readable(tmp / OBJECTIVE_NAME)
        extra = {"optimizers": optimizers.state_dict(), "torch_rng": torch.get_rng_state()}  # data order needs none:
        # every batch is drawn from (seed, epoch, batch index) alone
        if torch.cuda.is_available():
            extra["cuda_rng"] = torch.cuda.get_rng_state_all()
        if scaler is not None:
            extra["scaler"] = scaler.state_dict()
        for name, write in ((OPTIMIZER_NAME, lambda p: torch.save(extra, p)),
                            (STATE_NAME, lambda p: p.write_text(json.dumps(asdict(state), indent=2))),
                            (CONFIG_NAME, lambda p: p.write_text(json.dumps(config, indent=2)))):
            with writing(tmp / name):
                write(tmp / name)
    except WriteError as e:
        shutil.rmtree(tmp, ignore_errors=True)  # half a checkpoint would only hold the space the next one needs
        kept = f"; the last complete checkpoint ({final}) is kept: free space, then --resume" if final.exists() else ""
        raise WriteError(f"{e}{kept}") from e
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


def remove_checkpoints(output_dir: str | Path) -> None:
    """Delete every checkpoint of an earlier run in `output_dir` (`--overwrite`)."""
    for name in (CHECKPOINT, f"{CHECKPOINT}.old", f"{CHECKPOINT}.tmp"):
        shutil.rmtree(Path(output_dir) / name, ignore_errors=True)


def check_resumable(path: Path, config: dict) -> None:
    """ValueError naming the flags whose values differ from the checkpoint's run (or its missing record)."""
    saved_path = path / CONFIG_NAME
    if not saved_path.is_file():
        raise ValueError(f"{path} holds no {CONFIG_NAME} (written by an older twotowers): start afresh with --overwrite")
    saved = read_json(saved_path, "the settings of the run that wrote the checkpoint")
    differ = [k for k in sorted(set(saved) | set(config)) if k not in RESUME_FREE and saved.get(k) != config.get(k)]
    if differ:
        flags = ", ".join(f"--{k.replace('_', '-')} {saved.get(k)!r} (now {config.get(k)!r})" for k in differ[:4])
        raise ValueError(f"{path} was written by a run with other settings: {flags}"
                         + (f" and {len(differ) - 4} more" if len(differ) > 4 else "")
                         + ". Resume with the same flags, or start afresh with --overwrite")


def load_checkpoint(path: str | Path, model, objective, optimizers, scaler=None) -> TrainState:
    """Restore weights, the objective's weights, optimizers, schedule and RNG state in place -> the saved TrainState."""
    path = Path(path)
    try:
        load_model(model, str(path / WEIGHTS_NAME), strict=True, device=str(model.device))
        if (path / OBJECTIVE_NAME).is_file():
            objective.load_state_dict(load_file(str(path / OBJECTIVE_NAME)))
        extra = torch.load(path / OPTIMIZER_NAME, map_location="cpu", weights_only=True)
        state = TrainState(**json.loads((path / STATE_NAME).read_text()))
        optimizers.load_state_dict(extra["optimizers"])
    except Exception as e:
        raise ValueError(f"could not resume from {path}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                         " (start afresh with --overwrite)") from e
    torch.set_rng_state(extra["torch_rng"])
    if "cuda_rng" in extra and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(extra["cuda_rng"])
    if scaler is not None and "scaler" in extra:
        scaler.load_state_dict(extra["scaler"])
    return state
