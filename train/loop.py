"""The training loop: one for every objective (labelled pairs, distillation, both mixed).

    run(cfg, tracker)          # what `python -m train` calls: setup, epochs, checkpoints, evaluation

One code path for one process and for `torchrun` (DistributedDataParallel): the world size comes
from the environment torchrun sets, and with one process nothing is wrapped. The loop owns the
optimizers and schedule (train/optim.py), mixed precision, gradient accumulation, the NaN stop,
checkpoints and exact `--resume` (train/checkpoint.py), the time budget, progress lines and W&B
(train/progress.py, train/tracking.py), per-epoch validation and the final retrieval test. What is
optimised comes from an objective (train/objectives.py).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from twotowers import TwoTowers, resolve_base_model
from twotowers.base import encoder_settings
from twotowers.collection import read_collection, read_qrels, read_queries
from twotowers.data import LoadStats, examples_from_rows, load_examples, load_hub_rows, load_rerank_queries, pooled_corpus
from twotowers.evaluate import dense_retriever, evaluate_rerank, evaluate_retrieval
from twotowers.towers import TOWERS
from twotowers.writing import HeldLock, check_writable, writing

from .checkpoint import TrainState, check_resumable, find_checkpoint, load_checkpoint, remove_checkpoints, save_checkpoint
from .config import TrainConfig
from .objectives import Objective, build_objective, evaluating
from .optim import Optimizers
from .progress import Progress, log


class NonFiniteLoss(ValueError):
    """The loss became NaN or infinite: the run stops rather than train on garbage."""


# -- setup -----------------------------------------------------------------------------------------
@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(cfg: TrainConfig) -> tuple[Dist, torch.device]:
    """Read torchrun's environment (WORLD_SIZE/RANK/LOCAL_RANK), init the process group, pick the device."""
    d = Dist(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0)))
    if cfg.device == "auto":
        device = torch.device(f"cuda:{d.local_rank}" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(cfg.device)
        if device.type == "cuda" and device.index is None:
            device = torch.device(f"cuda:{d.local_rank}")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if d.world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return d, device


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_model(cfg: TrainConfig, device: torch.device) -> TwoTowers:
    """A fresh TwoTowers from the config, or the saved model of `--init-from`, on `device`."""
    if cfg.init_from:
        model = TwoTowers.from_pretrained(cfg.init_from)
    else:
        passage_base = resolve_base_model(cfg.passage_base_model or cfg.base_model)
        projection, passage_projection = cfg.projection, None
        if cfg.passage_tower is not None and cfg.passage_tower != cfg.tower:
            passage_projection = TOWERS[cfg.passage_tower].projection_dim
            if cfg.projection_dim is None:  # the query side matches the passage side's width
                hidden = json.loads((passage_base / "config.json").read_text())["hidden_size"]
                projection = passage_projection or hidden
        model = TwoTowers(tower=cfg.tower, base_model=cfg.base_model, projection_dim=projection,
                          max_query_length=cfg.max_query_length,
                          max_passage_length=cfg.max_passage_length or encoder_settings(passage_base).max_seq_length or 256,
                          rnn_hidden_size=cfg.rnn_hidden_size, dropout=cfg.dropout,
                          freeze_embeddings=cfg.freeze_embeddings, passage_tower=cfg.passage_tower,
                          passage_projection_dim=passage_projection, passage_base_model=cfg.passage_base_model)
    if cfg.freeze_passage_tower:
        model.passage_tower.requires_grad_(False)
    return model.to(device).train()


def load_labelled_examples(cfg: TrainConfig):
    """Labelled examples from --data-files (or the Hub dataset), with the load summary logged."""
    stats = LoadStats()
    start = time.perf_counter()
    if cfg.data_files:
        examples = load_examples(cfg.data_files, cfg.max_samples, stats)
    else:
        examples = examples_from_rows(load_hub_rows(cfg.dataset, cfg.dataset_config, "train"), cfg.max_samples, stats)
    log(f"training data: {stats.summary()} ({time.perf_counter() - start:.1f}s)")
    if not examples:
        where = " ".join(cfg.data_files) or cfg.dataset
        raise ValueError(f"no training examples in {where}: every row was skipped ({stats.summary()})")
    return examples


def load_test_set(cfg: TrainConfig, rerank_queries) -> tuple | None:
    """(queries, qrels, pids, texts) of the final retrieval test: --test-* files, else the validation rows' pool."""
    if cfg.test_queries and cfg.test_qrels and cfg.test_collection:
        pids, texts = read_collection(cfg.test_collection)
        return read_queries(cfg.test_queries), read_qrels(cfg.test_qrels), pids, texts
    if cfg.test_queries or cfg.test_qrels or cfg.test_collection:
        raise ValueError("the retrieval test needs all three of --test-queries, --test-qrels and --test-collection")
    return pooled_corpus(rerank_queries) if rerank_queries else None


def prepare_output_dir(cfg: TrainConfig) -> Path:
    """The output directory, refusing to replace what it holds unless --resume or --overwrite says so."""
    out = Path(cfg.out_dir)
    if cfg.no_save:
        return out
    checkpoint = find_checkpoint(out)
    saved_model = (out / "model.safetensors").is_file() or (out / "config.json").is_file()
    if cfg.overwrite:
        remove_checkpoints(out)
    elif cfg.resume:
        if checkpoint is None and saved_model:
            raise FileExistsError(f"{out} holds a saved model but no checkpoint to resume: pass --overwrite to "
                                  "replace it, or choose another --output-dir")
    elif checkpoint is not None:
        raise FileExistsError(f"{out} holds a checkpoint of an earlier run: pass --resume to continue it, "
                              "--overwrite to start again, or another --output-dir")
    elif saved_model:
        raise FileExistsError(f"{out} already holds a saved model: pass --overwrite to replace it, or choose "
                              "another --output-dir")
    return out


def autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: bf16 (or fp16 where bf16 is unsupported) on CUDA for 'auto'; None = fp32."""
    mp = cfg.mixed_precision
    if mp == "no" or (mp == "auto" and device.type != "cuda"):
        return None
    if mp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if mp == "bf16" else torch.float16


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def forward_backward(objective: Objective, model, batch: dict, amp: torch.dtype | None,
                     scaler: torch.amp.GradScaler | None, accumulation_steps: int = 1) -> float:
    """The objective's loss on one micro-batch, back-propagated (scaled for accumulation) -> its value."""
    device_type = next(iter(batch.values())).device.type
    with torch.autocast(device_type, dtype=amp, enabled=amp is not None):
        loss = objective.loss(model, batch)
    value = loss.item()
    if math.isfinite(value):
        scaled = loss / accumulation_steps
        (scaler.scale(scaled) if scaler else scaled).backward()
    return value


# -- evaluation during and after training ----------------------------------------------------------
def validate(cfg: TrainConfig, model: TwoTowers, rerank_queries) -> dict:
    """Re-rank metrics on the validation rows (the easy, in-epoch check)."""
    with evaluating(model):
        r = evaluate_rerank(model, rerank_queries, cfg.eval_batch_size)
    return {f"val/{k}": v for k, v in r.items() if isinstance(v, float)}


def comprehensive_test(cfg: TrainConfig, model: TwoTowers, test_set, objective: Objective) -> dict:
    """Retrieval over the whole test corpus (the hard test sweeps optimise): test/ndcg@10 etc."""
    queries, qrels, pids, texts = test_set
    with evaluating(model):
        retriever = dense_retriever(model, pids, texts, cfg.eval_batch_size,
                                    passage_vectors=objective.passage_vectors(texts))
        r = evaluate_retrieval(retriever, queries, qrels, corpus_ids=pids)
    return {**{f"test/{k}": v for k, v in r.items() if isinstance(v, (int, float))}, "test/corpus_passages": len(pids)}


# -- run -------------------------------------------------------------------------------------------
def run(cfg: TrainConfig, tracker=None) -> dict:
    """Train (and evaluate) as configured -> final metrics. `tracker`: a train.tracking.Tracker or None."""
    d, device = setup_distributed(cfg)
    set_seed(cfg.seed)
    # One run writes into --output-dir, and it can: both found now, before hours of training, not at the end.
    out_lock = None if cfg.no_save or not d.main else HeldLock(Path(cfg.out_dir), "the training run's --output-dir")
    out = prepare_output_dir(cfg)
    if not cfg.no_save and d.main:
        check_writable(out, "--output-dir")
    # Every file is read (and must parse) before the model is built or anything trains.
    labelled = load_labelled_examples(cfg) if cfg.data_files or not cfg.distilling else []
    rerank_queries = load_rerank_queries(cfg.validation_files) if cfg.validation_files else []
    test_set = None if cfg.no_comprehensive_test else load_test_set(cfg, rerank_queries)
    model = build_model(cfg, device)
    objective = build_objective(cfg, model, labelled, d.rank, d.world_size,
                                dist.barrier if d.world_size > 1 else None).to(device)
    batches = objective.batches_per_epoch()
    steps_per_epoch = math.ceil(batches / cfg.accumulation_steps)
    natural_end = steps_per_epoch * cfg.epochs
    optimizers = Optimizers(model, list(objective.parameters()), lr=cfg.lr, embedding_lr=cfg.embedding_learning_rate,
                            weight_decay=cfg.weight_decay, warmup_ratio=cfg.warmup_ratio, total_steps=natural_end,
                            sparse=cfg.sparse_embeddings and d.world_size == 1)  # DDP reduces dense gradients only
    amp = autocast_dtype(cfg, device)
    scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None
    state = TrainState(planned_steps=natural_end, world_size=d.world_size)
    config = cfg.to_dict()
    if cfg.resume and (ckpt := find_checkpoint(out)) is not None:
        check_resumable(ckpt, config)
        state = load_checkpoint(ckpt, model, objective, optimizers, scaler)
        if state.world_size != d.world_size:
            raise ValueError(f"{ckpt} was written by {state.world_size} process(es), this run has {d.world_size}: "
                             "resume with the same number")
        log(f"resumed from {ckpt}: epoch {state.epoch + 1}, batch {state.batch_in_epoch}, step {state.global_step}")
    elif cfg.resume:
        log(f"--resume: no checkpoint in {out}, starting from scratch")
    objective_name = "distillation" + (" + labelled" if cfg.distill_weight < 1 else "") if cfg.distilling else f"labelled ({cfg.loss})"
    log(f"{model.tower_name} towers, {sum(p.numel() for p in model.parameters() if p.requires_grad):,} trainable "
        f"parameters, {device}{f', autocast {amp}' if amp else ''}, {d.world_size} process(es); {objective_name}: "
        f"{batches} batches of {cfg.batch_size} = {steps_per_epoch} optimizer steps/epoch x {cfg.epochs} epochs, "
        f"lr {cfg.lr:g}" + (", sparse embedding updates" if optimizers.sparse_tables else ""))

    ddp = (DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=cfg.distilling) if d.world_size > 1 else model)
    if tracker is not None:
        tracker.watch(model)
    progress = Progress(cfg.log_steps, batches, d.world_size, epochs=cfg.epochs, total=state.planned_steps,
                        start=state.global_step)
    t_start, t_first, steps_here, stopped = time.perf_counter(), None, 0, False
    metrics: dict = {}

    def elapsed() -> float:
        return state.train_seconds + time.perf_counter() - t_start

    def checkpoint() -> None:
        if not cfg.no_save and d.main:
            saved = state.train_seconds
            state.train_seconds = round(elapsed(), 2)
            save_checkpoint(out, model, objective, optimizers, state, config, scaler)
            state.train_seconds = saved

    model.train()
    while state.epoch < cfg.epochs and not stopped:
        for batch in objective.batches(state.epoch, state.batch_in_epoch):
            i = state.batch_in_epoch
            step_now = (i + 1) % cfg.accumulation_steps == 0 or i + 1 == batches
            batch = to_device(batch, device)
            sync = ddp.no_sync() if ddp is not model and not step_now else contextlib.nullcontext()
            with sync:
                value = forward_backward(objective, ddp, batch, amp, scaler, cfg.accumulation_steps)
            if not math.isfinite(value):
                raise NonFiniteLoss(
                    f"loss is {value} at epoch {state.epoch + 1}, batch {i + 1}, optimizer step {state.global_step}: "
                    "stopping (try a lower --learning-rate, --mixed-precision no, or check the data)")
            count = objective.count(batch)
            progress.micro_batch(value, count)
            state.batch_in_epoch, state.examples_seen = i + 1, state.examples_seen + count
            if not step_now:
                continue
            optimizers.step(cfg.max_grad_norm, scaler)
            optimizers.zero_grad()
            state.global_step, steps_here = state.global_step + 1, steps_here + 1
            t_first = t_first or time.perf_counter()
            if cfg.max_seconds and steps_here == 20:  # plan the steps that fit the budget; the schedule follows
                per_step = (time.perf_counter() - t_first) / 19
                fit = state.global_step + int((cfg.max_seconds - elapsed()) / max(per_step, 1e-9))
                if fit < optimizers.plan["total"]:
                    optimizers.plan["total"] = max(fit, state.global_step + 1)
                    log(f"--max-seconds {cfg.max_seconds:g}: planning {optimizers.plan['total']} of {natural_end} steps")
            state.planned_steps = optimizers.plan["total"]
            if (m := progress.step(state, optimizers.lr(), state.planned_steps)) and tracker is not None and d.main:
                tracker.log(m, state.global_step)
            if state.global_step >= state.planned_steps < natural_end or (cfg.max_seconds and elapsed() > cfg.max_seconds):
                stopped = state.global_step < natural_end
                log(f"stopping at step {state.global_step} of {natural_end} after {elapsed():.0f} s (--max-seconds)")
                break
            if cfg.save_steps and state.global_step % cfg.save_steps == 0 and state.batch_in_epoch < batches:
                checkpoint()
        if stopped:
            checkpoint()
            break
        metrics = {"epoch": state.epoch + 1}
        if rerank_queries and d.main:
            metrics.update(validate(cfg, model, rerank_queries))
            log(f"epoch {state.epoch + 1}/{cfg.epochs}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "epoch"))
            if tracker is not None:
                tracker.log(metrics, state.global_step)
        state.epoch, state.batch_in_epoch = state.epoch + 1, 0
        checkpoint()
        if d.world_size > 1:
            dist.barrier()
    progress.close()
    optimizers.release()
    model.eval()  # trained: what is saved, tested and pushed from here on is the inference model
    finished = objective.finish(model) if d.main else {}

    final = {"objective": objective_name, "global_step": state.global_step, "planned_steps": natural_end,
             "stopped_early": stopped, "texts_seen": state.examples_seen * d.world_size,
             "train_seconds": round(elapsed(), 1), **finished,
             **{k: v for k, v in metrics.items() if k.startswith("val/")}}
    if d.main:
        if test_set is not None:
            final.update(comprehensive_test(cfg, model, test_set, objective))
        if not cfg.no_save:
            model.save_pretrained(out)
            for name, data in (("metrics.json", final), ("train_config.json", config)):
                with writing(out / name):
                    (out / name).write_text(json.dumps(data, indent=2))
            if not cfg.keep_checkpoint and not stopped and find_checkpoint(out) is not None:
                remove_checkpoints(out)  # the run is over: the model above is its result (a capped one resumes)
                log(f"removed {out / 'checkpoint'} (the model is saved; --keep-checkpoint keeps it)")
        log("final: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in final.items()))
        if tracker is not None:
            tracker.summary(final)
        if cfg.push_to_hub:
            from hub.connect import PublishError
            from hub.push import push_from_training

            try:
                push_from_training(cfg, out, final, raise_errors=True)
            except PublishError as e:  # the run's status says so: exit 1, the model on disk named
                raise OSError(f"{e}; the trained model is saved in {out}: push it with `python -m hub push --model "
                              f"{out} --repo-id {cfg.push_to_hub}`") from None
    if d.world_size > 1:
        dist.barrier()
        dist.destroy_process_group()
    if out_lock is not None:
        out_lock.release()
    return final
