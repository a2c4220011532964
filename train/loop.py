"""The training loop: one for every objective (train/objectives.py), in three parts.

    run(cfg, tracker)          # what `python -m train` calls: Training(cfg) (setup), .epoch() until .done, .finish()

One code path for one process and for `torchrun` (DistributedDataParallel): the world size comes
from the environment torchrun sets, and with one process nothing is wrapped. The loop owns the
optimizers and schedule (train/optim.py), mixed precision, gradient accumulation, the NaN stop,
checkpoints and exact `--resume` (train/checkpoint.py), the time budget, progress lines and W&B
(train/progress.py, train/tracking.py), per-epoch validation and the final retrieval test. What is
optimised, what data it reads and what it needs of DDP come from the objective; the loop names none.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from twotowers import TwoTowers
from twotowers.data import load_rerank_queries
from twotowers.evaluate import dense_retriever, evaluate_rerank, evaluate_retrieval
from twotowers.layout import METRICS_NAME, TRAIN_CONFIG_NAME
from twotowers.writing import HeldLock, check_writable, writing

from .checkpoint import TrainState, check_resumable, find_checkpoint, load_checkpoint, remove_checkpoints, save_checkpoint
from .config import TrainConfig
from .objectives import Objective, build_objective, evaluating, objective_class
from .optim import Optimizers
from .progress import Progress
from .setup import (autocast_dtype, build_model, load_labelled_examples, load_test_set, prepare_output_dir,
                    set_seed, setup_distributed)

log = logging.getLogger(__name__).info
__all__ = ["NonFiniteLoss", "Training", "autocast_dtype", "build_model", "forward_backward", "run", "to_device"]


class NonFiniteLoss(ValueError):
    """The loss became NaN or infinite: the run stops rather than train on garbage."""


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


# -- the run ---------------------------------------------------------------------------------------
class Training:
    """One run. Built: the setup (output directory, data, model, objective, optimizers, a resumed
    checkpoint). `epoch()`: the current epoch from where it stands. `finish()`: the trained model's
    objective step, test, save and push -> the final metrics."""

    def __init__(self, cfg: TrainConfig, tracker=None):
        self.cfg, self.tracker = cfg, tracker
        self.d, self.device = d, device = setup_distributed(cfg)
        set_seed(cfg.seed)
        # One run writes into --output-dir, and it can: both found now, before hours of training, not at the end.
        self.out_lock = None if cfg.no_save or not d.main else HeldLock(Path(cfg.out_dir), "the training run's --output-dir")
        self.out = out = prepare_output_dir(cfg)
        if not cfg.no_save and d.main:
            check_writable(out, "--output-dir")
        # Every file is read (and must parse) before the model is built or anything trains.
        kind = objective_class(cfg)
        labelled = load_labelled_examples(cfg) if kind.reads_labelled_examples(cfg) else []
        self.rerank_queries = load_rerank_queries(cfg.validation_files) if cfg.validation_files else []
        self.test_set = None if cfg.no_comprehensive_test else load_test_set(cfg, self.rerank_queries)
        self.model = model = build_model(cfg, device)
        self.objective = objective = build_objective(cfg, model, labelled, d.rank, d.world_size,
                                                     dist.barrier if d.world_size > 1 else None).to(device)
        self.batches = objective.batches_per_epoch()
        self.steps_per_epoch = math.ceil(self.batches / cfg.accumulation_steps)
        self.natural_end = self.steps_per_epoch * cfg.epochs
        self.optimizers = Optimizers(model, list(objective.parameters()), lr=cfg.lr,
                                     embedding_lr=cfg.embedding_learning_rate, weight_decay=cfg.weight_decay,
                                     warmup_ratio=cfg.warmup_ratio, total_steps=self.natural_end,
                                     sparse=cfg.sparse_embeddings and d.world_size == 1)  # DDP reduces dense gradients only
        self.amp = autocast_dtype(cfg, device)
        self.scaler = torch.amp.GradScaler(device.type) if self.amp == torch.float16 else None
        self.state = TrainState(planned_steps=self.natural_end, world_size=d.world_size)
        self.config = cfg.to_dict()
        self._resume()
        log(f"{model.tower_name} towers, {sum(p.numel() for p in model.parameters() if p.requires_grad):,} trainable "
            f"parameters, {device}{f', autocast {self.amp}' if self.amp else ''}, {d.world_size} process(es); "
            f"{objective.describe()}: {self.batches} batches of {cfg.batch_size} = {self.steps_per_epoch} optimizer "
            f"steps/epoch x {cfg.epochs} epochs, lr {cfg.lr:g}"
            + (", sparse embedding updates" if self.optimizers.sparse_tables else ""))
        self.ddp = (DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                            find_unused_parameters=objective.find_unused_parameters)
                    if d.world_size > 1 else model)
        if tracker is not None:
            tracker.watch(model)
        self.progress = Progress(cfg.log_steps, self.batches, d.world_size, epochs=cfg.epochs,
                                 total=self.state.planned_steps, start=self.state.global_step)
        self.t_start, self.t_first, self.steps_here, self.stopped = time.perf_counter(), None, 0, False
        self.metrics: dict = {}  # the last epoch's validation figures
        model.train()

    def _resume(self) -> None:
        cfg, out = self.cfg, self.out
        if cfg.resume and (ckpt := find_checkpoint(out)) is not None:
            check_resumable(ckpt, self.config)
            self.state = load_checkpoint(ckpt, self.model, self.objective, self.optimizers, self.scaler)
            if self.state.world_size != self.d.world_size:
                raise ValueError(f"{ckpt} was written by {self.state.world_size} process(es), this run has "
                                 f"{self.d.world_size}: resume with the same number")
            log(f"resumed from {ckpt}: epoch {self.state.epoch + 1}, batch {self.state.batch_in_epoch}, "
                f"step {self.state.global_step}")
        elif cfg.resume:
            log(f"--resume: no checkpoint in {out}, starting from scratch")

    @property
    def done(self) -> bool:
        return self.stopped or self.state.epoch >= self.cfg.epochs

    def elapsed(self) -> float:
        return self.state.train_seconds + time.perf_counter() - self.t_start

    def checkpoint(self) -> None:
        if not self.cfg.no_save and self.d.main:
            state = self.state
            saved = state.train_seconds
            state.train_seconds = round(self.elapsed(), 2)
            save_checkpoint(self.out, self.model, self.objective, self.optimizers, state, self.config, self.scaler)
            state.train_seconds = saved

    # -- one epoch -----------------------------------------------------------------------------------
    def epoch(self) -> None:
        """Train the current epoch from where it stands (a resumed run: mid-epoch), then validate and checkpoint;
        a time budget that runs out stops the run (`done`) with a checkpoint to resume from."""
        cfg, state, batches = self.cfg, self.state, self.batches
        for batch in self.objective.batches(state.epoch, state.batch_in_epoch):
            i = state.batch_in_epoch
            step_now = (i + 1) % cfg.accumulation_steps == 0 or i + 1 == batches
            self._micro_batch(to_device(batch, self.device), step_now)
            if step_now and self._optimizer_step():
                break
        if self.stopped:
            self.checkpoint()
            return
        self.metrics = {"epoch": state.epoch + 1}
        if self.rerank_queries and self.d.main:
            self.metrics.update(validate(cfg, self.model, self.rerank_queries))
            log(f"epoch {state.epoch + 1}/{cfg.epochs}: "
                + ", ".join(f"{k} {v:.4f}" for k, v in self.metrics.items() if k != "epoch"))
            if self.tracker is not None:
                self.tracker.log(self.metrics, state.global_step)
        state.epoch, state.batch_in_epoch = state.epoch + 1, 0
        self.checkpoint()
        self.d.barrier()

    def _micro_batch(self, batch: dict, step_now: bool) -> None:
        """Forward and backward on one micro-batch (DDP syncs gradients only on the one that steps)."""
        state = self.state
        ddp = self.ddp
        sync = ddp.no_sync() if ddp is not self.model and not step_now else contextlib.nullcontext()
        with sync:
            value = forward_backward(self.objective, ddp, batch, self.amp, self.scaler, self.cfg.accumulation_steps)
        if not math.isfinite(value):
            raise NonFiniteLoss(
                f"loss is {value} at epoch {state.epoch + 1}, batch {state.batch_in_epoch + 1}, optimizer step "
                f"{state.global_step}: stopping (try a lower --learning-rate, --mixed-precision no, or check the data)")
        count = self.objective.count(batch)
        self.progress.micro_batch(value, count)
        state.batch_in_epoch, state.examples_seen = state.batch_in_epoch + 1, state.examples_seen + count

    def _optimizer_step(self) -> bool:
        """Step, log, plan the time budget, checkpoint on schedule -> whether the epoch stops here."""
        cfg, state, optimizers = self.cfg, self.state, self.optimizers
        optimizers.step(cfg.max_grad_norm, self.scaler)
        optimizers.zero_grad()
        state.global_step, self.steps_here = state.global_step + 1, self.steps_here + 1
        self.t_first = self.t_first or time.perf_counter()
        if cfg.max_seconds and self.steps_here == 20:  # plan the steps that fit the budget; the schedule follows
            per_step = (time.perf_counter() - self.t_first) / 19
            fit = state.global_step + int((cfg.max_seconds - self.elapsed()) / max(per_step, 1e-9))
            if fit < optimizers.plan["total"]:
                optimizers.plan["total"] = max(fit, state.global_step + 1)
                log(f"--max-seconds {cfg.max_seconds:g}: planning {optimizers.plan['total']} of {self.natural_end} steps")
        state.planned_steps = optimizers.plan["total"]
        m = self.progress.step(state, optimizers.lr(), state.planned_steps)
        if m and self.tracker is not None and self.d.main:
            self.tracker.log(m, state.global_step)
        if state.global_step >= state.planned_steps < self.natural_end or (cfg.max_seconds and self.elapsed() > cfg.max_seconds):
            self.stopped = state.global_step < self.natural_end
            log(f"stopping at step {state.global_step} of {self.natural_end} after {self.elapsed():.0f} s (--max-seconds)")
            return True
        if cfg.save_steps and state.global_step % cfg.save_steps == 0 and state.batch_in_epoch < self.batches:
            self.checkpoint()
        return False

    # -- the end -------------------------------------------------------------------------------------
    def finish(self) -> dict:
        """The objective's last step, the final test, the saved model and its push -> the final metrics."""
        cfg, d, model, state, out = self.cfg, self.d, self.model, self.state, self.out
        self.progress.close()
        self.optimizers.release()
        model.eval()  # trained: what is saved, tested and pushed from here on is the inference model
        finished = self.objective.finish(model) if d.main else {}
        final = {"objective": self.objective.describe(), "global_step": state.global_step,
                 "planned_steps": self.natural_end, "stopped_early": self.stopped,
                 "texts_seen": state.examples_seen * d.world_size, "train_seconds": round(self.elapsed(), 1), **finished,
                 **{k: v for k, v in self.metrics.items() if k.startswith("val/")}}
        if d.main:
            if self.test_set is not None:
                final.update(comprehensive_test(cfg, model, self.test_set, self.objective))
            if not cfg.no_save:
                self._save(final)
            log("final: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in final.items()))
            if self.tracker is not None:
                self.tracker.summary(final)
            if cfg.push_to_hub:
                self._push(final)
        if d.world_size > 1:
            dist.barrier()
            dist.destroy_process_group()
        if self.out_lock is not None:
            self.out_lock.release()
        return final

    def _save(self, final: dict) -> None:
        """The model, its final figures and the run's flags in --output-dir; a finished run's checkpoint removed
        (one stopped early keeps it, to resume)."""
        out = self.out
        self.model.save_pretrained(out)
        for name, data in ((METRICS_NAME, final), (TRAIN_CONFIG_NAME, self.config)):
            with writing(out / name):
                (out / name).write_text(json.dumps(data, indent=2))
        if not self.cfg.keep_checkpoint and not self.stopped and find_checkpoint(out) is not None:
            remove_checkpoints(out)  # the run is over: the model above is its result
            log(f"removed {out / 'checkpoint'} (the model is saved; --keep-checkpoint keeps it)")

    def _push(self, final: dict) -> None:
        from hub.connect import PublishError
        from hub.push import push_from_training

        try:
            push_from_training(self.cfg, self.out, final, raise_errors=True)
        except PublishError as e:  # the run's status says so: exit 1, the model on disk named
            raise OSError(f"{e}; the trained model is saved in {self.out}: push it with `python -m hub push --model "
                          f"{self.out} --repo-id {self.cfg.push_to_hub}`") from None


def run(cfg: TrainConfig, tracker=None) -> dict:
    """Train (and evaluate) as configured -> final metrics. `tracker`: a train.tracking.Tracker or None."""
    training = Training(cfg, tracker)
    while not training.done:
        training.epoch()
    return training.finish()
