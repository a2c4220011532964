"""What the training loop optimises: an objective gives an epoch's batches and the loss on one batch.

- `LabelledObjective`: (query, positive, hard negatives) from labelled files; `--loss` infonce or triplet.
- `DistillObjective`: a teacher's vectors of unlabelled queries and passages (cached on disk) ->
  1 - cos(student, teacher) on every text plus KL(teacher || student) over each query's candidates
  (in-batch passages and passages from the teacher's own top-k); steps of passages alone cover the
  corpus. With a frozen passage tower only the query tower learns: where that tower is the teacher,
  against the teacher's cached passage vectors, the passages joining its training texts (corpus
  adaptation); where it is not (zero-shot MiniLM under a bge-small teacher), against its own passage
  vectors, encoded once, ranked as the teacher ranks its own (so an index it built stays valid).
  With `--data-files` and `--distill-weight` w < 1, each step adds (1 - w) x the labelled loss.

Every batch is a function of (seed, epoch, batch index) alone, so `--resume` after a kill sees the
exact batches the killed run would have. To add an objective: a subclass of `Objective` (its `name`,
`batches_per_epoch`, `batches(epoch, start_batch)`, `loss(model, batch)`, `count(batch)`; what it needs of
the loop: `reads_labelled_examples`, `find_unused_parameters`) and its `OBJECTIVES` entry; `--objective
NAME` picks it (and its flags, if new, are fields of train/config.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import time

import numpy as np
import torch
from torch import nn

from twotowers.data import Collator, TokenizedExamples, read_unlabelled, word_windows
from twotowers.index.fusion import minmax
from twotowers.losses import CosineToTeacherLoss, ScoreDistillLoss, build_loss, fit_student_scale
from twotowers.teacher import TeacherCache, load_teacher, passage_agreement
from twotowers.tokenizer import pad_ids
from twotowers.topk import exact_top_k

# `cfg: TrainConfig` below is train/config.py's, named in annotations only: config.py imports this module's
# registry (OBJECTIVES) for --objective, so this module does not import it back.
log = logging.getLogger(__name__).info


class Objective(nn.Module):
    """Batches of an epoch and the loss on a batch; its own parameters (if any) train with the model."""

    name = "objective"  # its `OBJECTIVES` key: `--objective NAME`
    find_unused_parameters = False  # DDP: a step may leave some trainable parameters without gradients

    @classmethod
    def reads_labelled_examples(cls, cfg: TrainConfig) -> bool:
        """Whether the loop reads --data-files (or the Hub dataset) into labelled examples for it."""
        return True

    def describe(self) -> str:
        """What the run's log line and its final metrics call it."""
        return self.name

    def batches_per_epoch(self) -> int:
        raise NotImplementedError

    def batches(self, epoch: int, start_batch: int):
        """The epoch's batches from `start_batch` on (an iterable of dicts of tensors)."""
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    def count(self, batch: dict) -> int:
        """Texts in the batch (for throughput)."""
        return sum(int(v.shape[0]) for k, v in batch.items() if k.endswith("_ids"))

    def passage_vectors(self, texts: list[str]) -> np.ndarray | None:
        """Passage vectors known without encoding (a frozen passage tower = the teacher), else None."""
        return None

    def finish(self, model: nn.Module) -> dict:
        """What the objective does once training ends (e.g. a closed-form fit) -> figures for the metrics."""
        return {}


@contextlib.contextmanager
def evaluating(model):
    """Eval mode for encoding mid-training (the model refuses to encode in training mode), then back."""
    was = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was)


@contextlib.contextmanager
def training_passage_length(model, length: int | None):
    """Tokenize training passages to `length` tokens; the model keeps its own limit."""
    saved = model.max_passage_length
    if length:
        model.max_passage_length = min(saved, length)
    try:
        yield
    finally:
        model.max_passage_length = saved


class EpochSampler(torch.utils.data.Sampler):
    """This process's share of a seeded per-epoch permutation, from micro-batch `start_batch` on.

    Every process gets the same number of items (the permutation is padded by wrapping around), so
    DDP processes take the same number of steps; skipping on resume reads no data.
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world_size
        self.epoch, self.start_batch = 0, 0
        self.per_rank = math.ceil(n / world_size)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def batches_per_epoch(self) -> int:
        return math.ceil(self.per_rank / self.batch_size)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        order += order[: self.per_rank * self.world - self.n]  # pad so every rank gets per_rank items
        mine = order[self.rank :: self.world]
        return iter(mine[self.start_batch * self.batch_size :])

    def __len__(self) -> int:
        return max(self.per_rank - self.start_batch * self.batch_size, 0)


def _loader(dataset, cfg: TrainConfig, model, **kwargs) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(dataset, num_workers=cfg.num_workers, pin_memory=model.device.type == "cuda",
                                       persistent_workers=False, prefetch_factor=4 if cfg.num_workers else None, **kwargs)


def labelled_loss(loss_fn: nn.Module, model: nn.Module, batch: dict, prefix: str = "") -> torch.Tensor:
    """The towers' loss on (query, positive, hard negatives) tokens under `prefix` keys."""
    q, p = model(batch[prefix + "query_ids"], batch[prefix + "query_mask"],
                 batch[prefix + "passage_ids"], batch[prefix + "passage_mask"])
    b = q.shape[0]  # passages: B positives, then M hard negatives
    return loss_fn(q, p[:b], p[b:], batch[prefix + "neg_owner"])


class LabelledObjective(Objective):
    """In-batch negatives (or triplet) loss on labelled examples, tokenised once, padded by workers."""

    name = "labelled"

    def __init__(self, cfg: TrainConfig, model, examples, rank: int = 0, world_size: int = 1, barrier=None):
        super().__init__()
        self.loss_name = cfg.loss
        start = time.perf_counter()
        with training_passage_length(model, cfg.train_passage_length):
            self.dataset = TokenizedExamples(examples, model, cfg.num_negatives, cfg.seed)
        log(f"tokenised {len(self.dataset)} examples in {time.perf_counter() - start:.1f}s")
        self.sampler = EpochSampler(len(self.dataset), cfg.batch_size, cfg.seed, rank, world_size)
        self.loader = _loader(self.dataset, cfg, model, batch_size=cfg.batch_size, sampler=self.sampler,
                              collate_fn=Collator(self.dataset.pad_id))
        self.loss_fn = build_loss(cfg.loss, **cfg.to_dict())

    def batches_per_epoch(self) -> int:
        return self.sampler.batches_per_epoch()

    def batches(self, epoch: int, start_batch: int):
        self.sampler.set_epoch(epoch, start_batch)
        self.dataset.set_epoch(epoch)
        return self.loader

    def loss(self, model, batch):
        return labelled_loss(self.loss_fn, model, batch)

    def count(self, batch):
        return int(batch["query_ids"].shape[0])

    def describe(self) -> str:
        return f"labelled ({self.loss_name})"


class DistillBatches(torch.utils.data.Dataset):
    """Batch j of an epoch for one process, built from (seed, epoch, j): query steps (queries, their
    teacher-mined and random candidates) and passage steps (passages alone), in a seeded order."""

    QUERY, PASSAGE = 0, 1

    def __init__(self, q_ids, p_ids, tq: np.ndarray, tp: np.ndarray, mined: np.ndarray | None, *, batch_size: int,
                 candidates: int, passage_steps: bool, frozen_passages: bool, seed: int, pad_id: int,
                 labelled: TokenizedExamples | None = None, rank: int = 0, world_size: int = 1,
                 bm25: tuple | None = None, student_passages: np.ndarray | None = None):
        self.q_ids, self.p_ids, self.tq, self.tp, self.mined = q_ids, p_ids, tq, tp, mined
        self.student_p = student_passages  # a frozen passage tower's own vectors (None: it is the teacher)
        self.bm25 = bm25  # (KeywordIndex over the passages, each query's term ids, BM25's weight) or None
        self.B, self.candidates, self.frozen, self.seed = batch_size, candidates, frozen_passages, seed
        self.pad_id, self.labelled, self.rank, self.world = pad_id, labelled, rank, world_size
        self.collate = Collator(pad_id)
        nq, npas = len(q_ids), len(p_ids)
        self.steps_q = math.ceil(nq / batch_size) if nq else 0
        self.passages_per_step = batch_size * max(1, 2 * candidates)
        self.steps_p = math.ceil(npas / self.passages_per_step) if (passage_steps or not nq) and not frozen_passages else 0
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        rng = np.random.default_rng([self.seed, epoch])
        self.epoch = epoch
        self.plan = [(self.QUERY, i) for i in range(self.steps_q)] + [(self.PASSAGE, i) for i in range(self.steps_p)]
        self.plan = [self.plan[i] for i in rng.permutation(len(self.plan))]
        self.q_perm, self.p_perm = rng.permutation(len(self.q_ids)), rng.permutation(len(self.p_ids))

    def __len__(self) -> int:
        return math.ceil(len(self.plan) / self.world)  # batches per process (the plan wraps for the last ones)

    def _pad(self, ids):
        return pad_ids(ids, self.pad_id)

    def __getitem__(self, j: int) -> dict:
        at = (j * self.world + self.rank) % len(self.plan)
        kind, i = self.plan[at]
        rng = np.random.default_rng([self.seed, self.epoch, at])
        out = {"kind": torch.tensor(kind)}
        if kind == self.QUERY:
            qi = self.q_perm[i * self.B : (i + 1) * self.B]
            picks = []
            if self.mined is not None:
                cols = rng.integers(0, self.mined.shape[1], size=(len(qi), self.candidates))
                picks.append(np.take_along_axis(self.mined[qi], cols, axis=1).ravel())
            picks.append(rng.integers(0, len(self.p_ids), size=len(qi) * max(1, self.candidates)))
            pi = np.unique(np.concatenate(picks))
            out["query_ids"], out["query_mask"] = self._pad([self.q_ids[r] for r in qi])
            out["teacher_q"] = torch.from_numpy(self.tq[qi])
            if self.bm25 is not None:  # the teacher's cosines fused with BM25 over this batch's candidates
                kw, terms, w = self.bm25
                dense = self.tq[qi] @ self.tp[pi].T  # [B, N]
                lexical = np.stack([kw.score_rows(terms[r], pi) for r in qi])  # [B, N]
                out["teacher_scores"] = torch.from_numpy(
                    ((1 - w) * minmax(dense) + w * minmax(lexical)).astype(np.float32))  # as hybrid search does
        else:
            pi = self.p_perm[i * self.passages_per_step : (i + 1) * self.passages_per_step]
        if not (kind == self.QUERY and self.frozen):  # a frozen passage tower is the teacher: no tokens needed
            out["passage_ids"], out["passage_mask"] = self._pad([self.p_ids[r] for r in pi])
        out["teacher_p"] = torch.from_numpy(self.tp[pi])
        if self.student_p is not None:
            out["student_p"] = torch.from_numpy(self.student_p[pi])
        if self.labelled is not None:  # the labelled loss's examples for this step
            rows = rng.choice(len(self.labelled), size=min(self.B, len(self.labelled)), replace=False)
            out.update({f"l_{k}": v for k, v in self.collate([self.labelled[int(r)] for r in rows]).items()})
        return out


class DistillObjective(Objective):
    """Distillation from cached teacher vectors (see the module docstring); w < 1 mixes in labelled loss."""

    name = "distillation"
    find_unused_parameters = True  # query steps leave the passage tower, passage steps the query tower, untouched

    @classmethod
    def reads_labelled_examples(cls, cfg: TrainConfig) -> bool:
        return bool(cfg.data_files)  # only to mix the labelled loss in

    def __init__(self, cfg: TrainConfig, model, labelled_examples=(), rank: int = 0, world_size: int = 1, barrier=None):
        super().__init__()
        queries, passages = read_unlabelled(cfg.distill_data)
        log(f"distillation data: {len(queries):,} unlabelled queries, {len(passages):,} passages "
            f"from {len(cfg.distill_data)} file(s)")
        if not passages:
            raise ValueError(f"--distill-data {' '.join(cfg.distill_data)} holds no passages: give a collection "
                             "(pid<TAB>passage) too, e.g. the corpus you will index")
        if cfg.distill_query_windows:  # query-like snippets of the corpus (seeded: the same every run)
            rng = np.random.default_rng(cfg.seed)
            windows = [w for _ in range(cfg.distill_query_windows) for w in word_windows(passages, rng)]
            queries = list(dict.fromkeys(queries + [w for w in windows if w.strip()]))
            log(f"+ {cfg.distill_query_windows} word window(s) a passage as queries: {len(queries):,} queries")
        cache = TeacherCache(cfg.distill_cache_dir)
        if rank != 0 and barrier:  # rank 0 fills the cache first; the others then read it
            barrier()
        teacher = load_teacher(cfg.distill_from)
        self.teacher_fingerprint = cache.fingerprint(teacher)
        tp = cache.encode(teacher, passages, "passage")
        tq = cache.encode(teacher, queries, "query") if queries else np.zeros((0, tp.shape[1]), np.float32)
        del teacher
        if rank == 0 and barrier:
            barrier()
        self.fit = (passages, tp, cfg.fit_ridge) if cfg.fit_passage_tower else None
        if self.fit:  # fitted when training ends; until then the teacher's vectors stand for it
            model.passage_tower.requires_grad_(False)
        self.frozen = not any(p.requires_grad for p in model.passage_tower.parameters())
        self.own_passages = None  # a frozen passage tower that is not the teacher: its vectors, encoded once
        self.cache = cache
        self.model_ref = [model]  # not a submodule: the objective's state is its own parameters only
        if self.frozen:
            if self.fit:
                cos = 1.0
            else:
                with evaluating(model):
                    cos = passage_agreement(model, passages, tp)
            if cos >= 0.999:
                if cfg.distill_passages_as_queries:  # the corpus's words reach the query tower before any query
                    queries, tq = queries + passages, np.concatenate([tq, tp])
                what = "to be fitted to the teacher when training ends" if self.fit else "frozen (= the teacher)"
                log(f"passage tower {what}: training the query tower only, on {len(queries):,} texts")
            else:
                # Its own vectors stay fixed (an index built with it never needs re-encoding); the query tower
                # learns to rank them as the teacher ranks its own (the KL; cosines to the teacher's vectors
                # would pull it into another space).
                self.own_passages = cache.encode(_FrozenPassageSide(model), passages, "passage")
                log(f"passage tower frozen (not the teacher: cosine {cos:.3f}): its {len(passages):,} passage "
                    f"vectors fixed, the query tower trained to rank them as the teacher does")
        start = time.perf_counter()
        q_ids = model.tokenize_queries(queries) if queries else []
        with training_passage_length(model, cfg.train_passage_length):
            p_ids = [[]] * len(passages) if self.frozen else model.tokenize_passages(passages)
        mined = exact_top_k(tq, tp, cfg.distill_mine_k)[0] if queries and cfg.distill_candidates else None
        labelled = None
        self.weight = cfg.distill_weight
        if self.weight < 1:
            with training_passage_length(model, cfg.train_passage_length):
                labelled = TokenizedExamples(labelled_examples, model, num_negatives=1, seed=cfg.seed)
            log(f"mixing the labelled loss on {len(labelled):,} examples (weight {1 - self.weight:g}) "
                f"with distillation ({self.weight:g})")
        bm25 = None
        if cfg.distill_fuse_bm25 > 0:
            from twotowers.index.keyword import KeywordIndex

            kw = KeywordIndex.build(passages)
            bm25 = (kw, [kw.term_ids(q) for q in queries], cfg.distill_fuse_bm25)
            log(f"teacher scores for the KL: cosines fused with BM25 (weight {cfg.distill_fuse_bm25:g}) over "
                f"{len(passages):,} passages")
        log(f"tokenised {len(q_ids):,} queries + {len(p_ids):,} passages"
            + (f", teacher top-{cfg.distill_mine_k} mined" if mined is not None else "")
            + f" in {time.perf_counter() - start:.1f}s")
        self.dataset = DistillBatches(q_ids, p_ids, tq, tp, mined, batch_size=cfg.batch_size,
                                      candidates=cfg.distill_candidates, passage_steps=cfg.distill_passage_steps,
                                      frozen_passages=self.frozen, seed=cfg.seed, pad_id=model.tokenizer.pad_id,
                                      labelled=labelled, rank=rank, world_size=world_size, bm25=bm25,
                                      student_passages=self.own_passages)
        self.cos_loss = CosineToTeacherLoss(model.dim, tp.shape[1])
        scale = 1.0
        if self.own_passages is not None and queries:  # two spaces: the student's scores put on the teacher's scale
            scale = self._student_scale(model, queries, tq, tp, mined, cfg)
        self.score_loss = ScoreDistillLoss(cfg.distill_temperature, cfg.distill_weight_kl, cfg.distill_weight_mse,
                                           student_scale=scale)
        self.weight_cosine = cfg.distill_weight_cosine
        self.labelled_loss = build_loss(cfg.loss, **cfg.to_dict()) if labelled is not None else None
        self.cfg = cfg

    def _student_scale(self, model, queries, tq, tp, mined, cfg, n: int = 1000) -> float:
        """The multiplier of the student's cosines that best matches the teacher's score distributions at the
        start, on up to `n` training queries (seeded) over their mined candidates and as many random ones."""
        rng = np.random.default_rng(cfg.seed)
        rows = np.sort(rng.choice(len(queries), size=min(n, len(queries)), replace=False))
        width = mined.shape[1] if mined is not None else cfg.distill_mine_k
        cand = rng.integers(0, len(tp), size=(len(rows), 2 * width))  # [n, c] passage rows
        if mined is not None:
            cand[:, :width] = mined[rows]
        with evaluating(model):
            sq = model.encode_queries([queries[r] for r in rows])
        student = torch.from_numpy(np.einsum("nd,ncd->nc", sq, self.own_passages[cand]))
        teacher = torch.from_numpy(np.einsum("nd,ncd->nc", tq[rows], tp[cand]))
        scale = fit_student_scale(student, teacher, cfg.distill_temperature)
        log(f"student cosines scaled by {scale:.3f} to the teacher's (fitted on {len(rows):,} queries)")
        return scale

    def batches_per_epoch(self) -> int:
        return len(self.dataset)

    def batches(self, epoch: int, start_batch: int):
        self.dataset.set_epoch(epoch)
        return _loader(self.dataset, self.cfg, self.model_ref[0], batch_size=None,
                       sampler=range(start_batch, len(self.dataset)))

    def loss(self, model, batch):
        wc, tp = self.weight_cosine, batch["teacher_p"]
        if int(batch["kind"]) == DistillBatches.QUERY:
            sq, sp = model(batch["query_ids"], batch["query_mask"], batch.get("passage_ids"), batch.get("passage_mask"))
            tq = batch["teacher_q"]
            if sp is None:  # a frozen passage tower: its own fixed vectors, or the teacher's when it is the teacher
                sp = batch.get("student_p", tp)
            loss = self.score_loss(sq, sp, tq, tp, batch.get("teacher_scores"))
            if wc and self.own_passages is None:  # in the teacher's space
                loss = loss + wc * (self.cos_loss(sq, tq) + (0 if self.frozen else self.cos_loss(sp, tp)))
        else:
            _, sp = model(passage_ids=batch["passage_ids"], passage_mask=batch["passage_mask"])
            b = self.cfg.batch_size  # passages against each other: the score structure the teacher has
            loss = wc * self.cos_loss(sp, tp) + 0.5 * self.score_loss(sp[:b], sp, tp[:b], tp)
        if self.labelled_loss is not None:
            loss = self.weight * loss + (1 - self.weight) * labelled_loss(self.labelled_loss, model, batch, "l_")
        return loss

    def count(self, batch):
        return int(batch["teacher_p"].shape[0]) + (int(batch["teacher_q"].shape[0]) if "teacher_q" in batch else 0)

    def describe(self) -> str:
        return self.name + (" + labelled" if self.labelled_loss is not None else "")

    def finish(self, model) -> dict:
        if not self.fit:
            return {}
        from .passage_fit import fit_mean_passage_tower

        passages, tp, ridge = self.fit
        info = fit_mean_passage_tower(model, passages, tp, ridge)
        return {"fit/mean_cosine": info["mean_cosine"], "fit/min_cosine": info["min_cosine"]}

    def passage_vectors(self, texts: list[str]) -> np.ndarray | None:
        if not self.frozen or self.fit:  # a fitted tower encodes its own passages
            return None
        model = self.model_ref[0]
        side = _FrozenPassageSide(model, None if self.own_passages is not None else self.teacher_fingerprint)
        return self.cache.encode(side, texts, "passage")


class _FrozenPassageSide:
    """A frozen passage tower as a cache key: under the teacher's name when it is the teacher (its vectors
    are the teacher's), else under a hash of its own weights and settings."""

    def __init__(self, model, fingerprint: str | None = None):
        self.model, self._fingerprint = model, fingerprint

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            m = self.model
            h = hashlib.sha256(json.dumps([m.passage_tower_config.__dict__, m.passage_base_model, m.max_passage_length,
                                           m.passage_prompt], sort_keys=True, default=str).encode())
            for name, tensor in sorted(m.passage_tower.state_dict().items()):
                h.update(name.encode())
                h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def encode_passages(self, texts, **kwargs):
        with evaluating(self.model):
            return self.model.encode_passages(texts, **kwargs)


OBJECTIVES: dict[str, type[Objective]] = {"labelled": LabelledObjective, "distillation": DistillObjective}


def objective_class(cfg: TrainConfig) -> type[Objective]:
    """The objective `cfg` asks for (`--objective`, else distillation where a teacher is named, else labelled)."""
    return OBJECTIVES[cfg.objective_name]


def build_objective(cfg: TrainConfig, model, labelled_examples, rank: int = 0, world_size: int = 1,
                    barrier=None) -> Objective:
    """The objective `cfg` asks for, built for `model` (this process's share of the data under torchrun)."""
    return objective_class(cfg)(cfg, model, labelled_examples, rank, world_size, barrier)
