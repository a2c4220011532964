"""What a training run needs before its first step: processes and device, the model, the data, the output
directory, the autocast dtype. Every file is read (and must parse) before the model is built or anything
trains; the output directory is checked before any file is read.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from twotowers import TwoTowers, resolve_base_model
from twotowers.base import encoder_settings
from twotowers.collection import read_collection, read_qrels, read_queries
from twotowers.data import LoadStats, examples_from_rows, load_examples, load_hub_rows, pooled_corpus
from twotowers.layout import CONFIG_NAME, WEIGHTS_NAME

from .checkpoint import find_checkpoint, remove_checkpoints
from .config import TrainConfig

log = logging.getLogger(__name__).info


@dataclass
class Dist:
    """This process's place among torchrun's (one process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every process (nothing to wait for alone)."""
        if self.world_size > 1:
            dist.barrier()


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
        hidden = json.loads((passage_base / CONFIG_NAME).read_text())["hidden_size"]  # the base's HF config
        projection, passage_projection = cfg.widths(hidden)
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
    saved_model = any((out / name).is_file() for name in (WEIGHTS_NAME, CONFIG_NAME))  # all or part of one
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
