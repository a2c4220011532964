"""Teacher distillation: cached teacher embeddings, distillation losses, `adapt_to_corpus`.

A teacher (a `TwoTowers`, e.g. zero-shot all-MiniLM-L6-v2, or a sentence-transformers model dir)
encodes every text once; its vectors are cached on disk keyed by the teacher's fingerprint and a
hash of each text (safetensors, never pickles), so later epochs and later experiments reuse them.
A small student (mean / GRU / LSTM tower) then learns to match them:

    teacher = load_teacher("minilm")
    cache = TeacherCache("~/.cache/twotowers/teacher")
    t_q = cache.encode(teacher, queries, "query")          # [n, 384], computed once
    adapt_to_corpus(student, passages, teacher, queries=queries, epochs=4, cache=cache)

Losses (pure math in `*_from_embeddings`): `CosineToTeacherLoss` (1 - cos(student, teacher); a
learned projection bridges different widths) and `ScoreDistillLoss` (student query·passage scores
against the teacher's, KL over each query's candidate distribution and/or MSE on the matrix).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file, save_file
from torch import nn

DEFAULT_CACHE_DIR = Path(os.environ.get("TWOTOWERS_CACHE", Path.home() / ".cache" / "twotowers")) / "teacher"
ZERO_SHOT_NAMES = ("minilm", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")


def _log(msg: str) -> None:
    print(f"[distill] {msg}", file=sys.stderr, flush=True)


# -- teachers -------------------------------------------------------------------------------------
class SentenceTransformerTeacher:
    """A sentence-transformers model dir used as a teacher (same vector for queries and passages)."""

    def __init__(self, path: str | Path):
        from sentence_transformers import SentenceTransformer

        self.path = Path(path)
        self.model = SentenceTransformer(str(path), trust_remote_code=False)
        self.dim = self.model.get_sentence_embedding_dimension()

    def fingerprint(self) -> str:
        h = hashlib.sha256(b"sentence-transformers")
        for f in sorted(self.path.rglob("*")):
            if f.is_file() and f.suffix in (".json", ".safetensors", ".txt"):
                h.update(str(f.relative_to(self.path)).encode())
                h.update(hashlib.sha256(f.read_bytes()).digest())
        return h.hexdigest()

    def _enc(self, texts, batch_size, show_progress):
        return self.model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=show_progress).astype(np.float32)

    def encode_queries(self, texts, batch_size=256, show_progress=False):
        return self._enc(texts, batch_size, show_progress)

    def encode_passages(self, texts, batch_size=64, show_progress=False):
        return self._enc(texts, batch_size, show_progress)


def load_teacher(name: str):
    """`"minilm"` = zero-shot all-MiniLM-L6-v2 as a TwoTowers transformer tower; a saved TwoTowers
    dir or Hub id; or a sentence-transformers model dir (has `modules.json`)."""
    from .model import TwoTowers

    if name in ZERO_SHOT_NAMES:
        return TwoTowers(tower="transformer", projection_dim=None).eval()
    path = Path(name).expanduser()
    if path.is_dir() and (path / "modules.json").is_file() and not (path / "base_config.json").is_file():
        return SentenceTransformerTeacher(path)
    return TwoTowers.from_pretrained(name)


def text_hash(kind: str, text: str) -> bytes:
    """16-byte key of one text as a query or a passage (the two towers differ)."""
    return hashlib.blake2b(f"{kind}\0{text}".encode("utf-8"), digest_size=16).digest()


# -- unlabelled text -------------------------------------------------------------------------------
def read_texts(paths: Sequence[str | Path]) -> tuple[list[str], list[str]]:
    """Unlabelled queries and passages from data files -> (queries, passages), each de-duplicated.

    `*.tsv`: `id<TAB>text` (queries if the file name contains "quer", else passages) or
    `query<TAB>pos<TAB>neg` triples; `*.jsonl`: MS MARCO v1.1 rows (`query`, `passages.passage_text`)
    or rows with `query` and `candidates: [{"text": ...}]`. A bad line is an error naming file and line."""
    queries: dict[str, None] = {}
    passages: dict[str, None] = {}
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"distillation data file {path} not found")
        is_queries = "quer" in path.name.lower()
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                line = line.rstrip("\n")
                if not line.strip():
                    continue
                try:
                    if path.suffix == ".jsonl" or path.suffix == ".json":
                        row = json.loads(line)
                        if row.get("query"):
                            queries[str(row["query"])] = None
                        if isinstance(row.get("passages"), dict):
                            texts = row["passages"]["passage_text"]
                        elif isinstance(row.get("candidates"), list):
                            texts = [c["text"] for c in row["candidates"]]
                        else:
                            texts = []
                        for t in texts:
                            if not isinstance(t, str):
                                raise TypeError("passage text is not a string")
                            passages[t] = None
                    else:
                        cols = line.split("\t")
                        if len(cols) == 2:
                            (queries if is_queries else passages)[cols[1]] = None
                        elif len(cols) == 3:
                            queries[cols[0]] = None
                            passages[cols[1]] = None
                            passages[cols[2]] = None
                        else:
                            raise ValueError(f"expected 2 or 3 tab-separated columns, got {len(cols)}")
                except (ValueError, TypeError, KeyError) as e:
                    raise ValueError(f"{path}:{n}: cannot read ({type(e).__name__}: {e})") from e
    queries.pop("", None)
    passages.pop("", None)
    return list(queries), list(passages)


# -- the cache ------------------------------------------------------------------------------------
class TeacherCache:
    """Teacher vectors on disk: `DIR/<fingerprint[:16]>/<kind>-<n>.safetensors` shards, each holding
    `keys [n, 16] uint8` (text hashes) and `vectors [n, dim] float16`. Lookups are by text hash, so any
    text set reuses what any earlier run computed; only missing texts are encoded (one new shard)."""

    def __init__(self, directory: str | Path = DEFAULT_CACHE_DIR, shard_size: int = 20_000):
        self.directory = Path(directory).expanduser()
        self.shard_size = shard_size
        self._fingerprints: dict[int, str] = {}
        self._index: dict[tuple[str, str], dict[bytes, tuple[int, int]]] = {}  # (fp, kind) -> key -> (shard, row)
        self._shards: dict[tuple[str, str], list[np.ndarray]] = {}
        self.computed = 0  # texts encoded by the teacher through this object (tests check reuse)

    def fingerprint(self, teacher) -> str:
        fp = self._fingerprints.get(id(teacher))
        if fp is None:
            fp = self._fingerprints[id(teacher)] = teacher.fingerprint()
        return fp

    def _load(self, fp: str, kind: str):
        key = (fp, kind)
        if key in self._index:
            return self._index[key], self._shards[key]
        index, shards = {}, []
        folder = self.directory / fp[:16]
        for path in sorted(folder.glob(f"{kind}-*.safetensors")):
            try:
                data = load_file(str(path))
                keys, vecs = data["keys"], data["vectors"]
            except Exception as e:
                raise OSError(f"teacher cache shard {path} is unreadable ({e}); delete it to recompute") from e
            if keys.shape[0] != vecs.shape[0]:
                raise OSError(f"teacher cache shard {path}: {keys.shape[0]} keys but {vecs.shape[0]} vectors")
            s = len(shards)
            shards.append(vecs)
            for row, k in enumerate(keys):
                index[k.tobytes()] = (s, row)
        self._index[key], self._shards[key] = index, shards
        return index, shards

    def size_bytes(self, teacher=None) -> int:
        folder = self.directory / self.fingerprint(teacher)[:16] if teacher is not None else self.directory
        return sum(f.stat().st_size for f in folder.rglob("*.safetensors")) if folder.is_dir() else 0

    def encode(self, teacher, texts: Sequence[str], kind: str, batch_size: int | None = None,
               show_progress: bool = True) -> np.ndarray:
        """Teacher vectors `[len(texts), dim]` float32 (unit norm) of `texts` as `kind` ("query" or
        "passage"), encoding only those not cached yet and saving them as a new shard."""
        if kind not in ("query", "passage"):
            raise ValueError(f"kind must be 'query' or 'passage', got {kind!r}")
        fp = self.fingerprint(teacher)
        index, shards = self._load(fp, kind)
        keys = [text_hash(kind, t) for t in texts]
        missing: dict[bytes, str] = {}
        for k, t in zip(keys, texts):
            if k not in index and k not in missing:
                missing[k] = t
        if missing:
            t0 = time.perf_counter()
            _log(f"teacher {fp[:12]}: encoding {len(missing):,} {kind} texts "
                 f"({len(texts) - sum(1 for k in keys if k in missing):,} of {len(texts):,} cached)")
            enc = teacher.encode_queries if kind == "query" else teacher.encode_passages
            kwargs = {} if batch_size is None else {"batch_size": batch_size}
            folder = self.directory / fp[:16]
            folder.mkdir(parents=True, exist_ok=True)
            items = list(missing.items())
            # One shard per `shard_size` texts: a killed run keeps what it finished, memory stays bounded.
            for a in range(0, len(items), self.shard_size):
                part = items[a : a + self.shard_size]
                vecs = enc([t for _, t in part], show_progress=show_progress, **kwargs).astype(np.float16)
                new_keys = np.frombuffer(b"".join(k for k, _ in part), dtype=np.uint8).reshape(len(part), 16)
                n = len(list(folder.glob(f"{kind}-*.safetensors")))
                path = folder / f"{kind}-{n:04d}.safetensors"
                tmp = path.with_suffix(".tmp")
                save_file({"keys": new_keys, "vectors": vecs}, str(tmp), metadata={"fingerprint": fp, "kind": kind})
                os.replace(tmp, path)  # never half a shard
                s = len(shards)
                shards.append(vecs)
                for row, (k, _) in enumerate(part):
                    index[k] = (s, row)
                self.computed += len(part)
                done = a + len(part)
                dt = time.perf_counter() - t0
                _log(f"teacher {fp[:12]}: {done:,}/{len(items):,} {kind} texts in {dt:.1f}s "
                     f"({done / max(dt, 1e-9):,.0f}/s); cache {self.size_bytes(teacher) / 2**20:.1f} MiB in {folder}")
        dim = shards[0].shape[1] if shards else 0
        out = np.empty((len(texts), dim), dtype=np.float32)
        for i, k in enumerate(keys):
            s, row = index[k]
            out[i] = shards[s][row]
        # float16 storage: renormalise so dot products are cosines again
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out


# -- losses (pure math in *_from_embeddings) ------------------------------------------------------
class CosineToTeacherLoss(nn.Module):
    """mean(1 - cos(student, teacher)). When widths differ, pass `student_dim`: a learned linear map
    takes student vectors into the teacher's space (it is trained with the student, used only here)."""

    def __init__(self, student_dim: int | None = None, teacher_dim: int | None = None):
        super().__init__()
        self.projection = (nn.Linear(student_dim, teacher_dim, bias=False)
                           if student_dim and teacher_dim and student_dim != teacher_dim else None)

    @staticmethod
    def compute_loss_from_embeddings(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """`student [n, d]`, `teacher [n, d]` (any norm) -> scalar."""
        return (1.0 - F.cosine_similarity(student, teacher, dim=-1)).mean()

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        if self.projection is not None:
            student = self.projection(student)
        if student.shape[-1] != teacher.shape[-1]:
            raise ValueError(f"student dim {student.shape[-1]} != teacher dim {teacher.shape[-1]}: "
                             "pass student_dim/teacher_dim to add a projection, or use ScoreDistillLoss")
        return self.compute_loss_from_embeddings(student, teacher)


class ScoreDistillLoss(nn.Module):
    """Match the student's query·passage score matrix to the teacher's (widths may differ).

    `kl`: KL(teacher || student) over each query's candidates, softmax at `temperature` (both sides),
    the listwise signal that matters for ranking. `mse`: mean squared error of the raw cosine matrices.
    `weight_kl`/`weight_mse` mix them."""

    def __init__(self, temperature: float = 0.05, weight_kl: float = 1.0, weight_mse: float = 0.0):
        super().__init__()
        self.temperature, self.weight_kl, self.weight_mse = temperature, weight_kl, weight_mse

    @staticmethod
    def compute_loss_from_embeddings(sq: torch.Tensor, sp: torch.Tensor, tq: torch.Tensor, tp: torch.Tensor,
                                     temperature: float = 0.05, weight_kl: float = 1.0,
                                     weight_mse: float = 0.0) -> torch.Tensor:
        """Student `sq [B, d]`, `sp [N, d]`, teacher `tq [B, D]`, `tp [N, D]`, all unit vectors -> scalar."""
        s = sq @ sp.T  # [B, N] student cosines
        t = tq @ tp.T  # [B, N] teacher cosines
        loss = s.new_zeros(())
        if weight_kl:
            log_p_s = F.log_softmax(s / temperature, dim=-1)
            log_p_t = F.log_softmax(t / temperature, dim=-1)
            loss = loss + weight_kl * F.kl_div(log_p_s, log_p_t, log_target=True, reduction="batchmean")
        if weight_mse:
            loss = loss + weight_mse * F.mse_loss(s, t)
        return loss

    def forward(self, sq, sp, tq, tp):
        return self.compute_loss_from_embeddings(sq, sp, tq, tp, self.temperature, self.weight_kl, self.weight_mse)


# -- teacher-mined candidates -----------------------------------------------------------------------
def top_k(queries: np.ndarray, passages: np.ndarray, k: int, chunk: int = 4096) -> np.ndarray:
    """Exact inner-product top-k: `[nq, d]`, `[np, d]` -> indices `[nq, k]`, best first (chunked,
    so memory is `chunk x np` floats, not `nq x np`)."""
    k = min(k, passages.shape[0])
    out = np.empty((queries.shape[0], k), dtype=np.int64)
    for a in range(0, queries.shape[0], chunk):
        s = queries[a : a + chunk] @ passages.T  # [c, np]
        idx = np.argpartition(-s, k - 1, axis=1)[:, :k] if k < s.shape[1] else np.tile(np.arange(s.shape[1]), (s.shape[0], 1))
        part = np.take_along_axis(s, idx, axis=1)
        order = np.argsort(-part, axis=1, kind="stable")
        out[a : a + chunk] = np.take_along_axis(idx, order, axis=1)
    return out


# -- the distillation loop --------------------------------------------------------------------------
@dataclass
class DistillConfig:
    """How a student learns from cached teacher vectors (see `distill`)."""

    epochs: int = 4
    batch_size: int = 128  # queries per step; each brings `candidates` passages
    learning_rate: float = 2e-3
    embedding_learning_rate: float | None = None  # None = learning_rate
    weight_cosine: float = 1.0  # 1 - cos(student, teacher) on queries and passages
    weight_kl: float = 0.2  # KL over each query's candidate scores
    weight_mse: float = 0.0  # MSE on the query x passage cosine matrix
    temperature: float = 0.05
    candidates: int = 1  # teacher-mined top-k passages sampled per query (from `mine_k`)
    mine_k: int = 20
    passage_only_steps: bool = True  # also distil passages no query mined (the corpus is what matters)
    # A student whose passage tower is frozen (it must then *be* the teacher, e.g. a mean query tower
    # over the transformer passage tower) learns its query side only, against the cached teacher
    # passage vectors; `passages_as_queries` then also feeds the corpus's passages to the query tower
    # (targets: their teacher vectors), so it learns the corpus's vocabulary before any query comes.
    passages_as_queries: bool = True
    seed: int = 0
    max_seconds: float | None = None  # stop early once this much time has passed (bounded runs)


def passage_agreement(model, passages: Sequence[str], teacher_p: np.ndarray, n: int = 8) -> float:
    """Lowest cosine between `model`'s passage vectors and the teacher's on `n` spread-out passages
    (-1 when the widths differ): 1.0 means its passage tower encodes as the teacher does."""
    rows = np.unique(np.linspace(0, len(passages) - 1, min(n, len(passages))).astype(int))
    got = model.encode_passages([passages[i] for i in rows])
    want = np.asarray(teacher_p[rows], dtype=np.float32)
    if got.shape != want.shape:
        return -1.0
    return float(((got * want).sum(1) / np.maximum(np.linalg.norm(want, axis=1), 1e-12)).min())


def _check_frozen_passage_tower(student, passages: Sequence[str], teacher_p: np.ndarray) -> None:
    """A frozen passage tower stands in for the teacher's passage vectors: check that it reproduces them."""
    cos = passage_agreement(student, passages, teacher_p)
    if cos < 0.999:
        raise ValueError("the student's passage tower is frozen, so it must encode passages as the teacher does "
                         f"(its {student.dim}-d vectors " + (f"reach cosine {cos:.3f} to the teacher's" if cos > -1 else
                         f"against the teacher's {teacher_p.shape[1]}-d") + "): make it the teacher, or unfreeze it")


def _embed(model, tower: str, ids: list[list[int]], device) -> torch.Tensor:
    input_ids, mask = model.tokenizer.pad(ids, device)
    return model.embed_queries(input_ids, mask) if tower == "query" else model.embed_passages(input_ids, mask)


def distill(student, queries: Sequence[str], passages: Sequence[str], teacher_q: np.ndarray,
            teacher_p: np.ndarray, cfg: DistillConfig = DistillConfig(), extra_loss=None) -> dict:
    """Train `student` (a TwoTowers) in place towards the teacher vectors.

    Each step takes `batch_size` queries, for each `candidates` passages drawn from the teacher's top
    `mine_k` for that query plus as many random passages, and minimises
    `weight_cosine * (cos loss on queries + passages) + ScoreDistillLoss(queries x all batch passages)`.
    `extra_loss(step) -> tensor | None` adds e.g. a labelled loss. Returns a summary dict."""
    if len(queries) != len(teacher_q) or len(passages) != len(teacher_p):
        raise ValueError("teacher vectors must match the texts one to one")
    if not len(passages):
        raise ValueError("distill needs at least one passage")
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    device = student.device
    frozen_p = not any(p.requires_grad for p in student.passage_tower.parameters())
    if frozen_p:  # the query side learns alone, against the teacher's (= the frozen tower's) passage vectors
        _check_frozen_passage_tower(student, passages, teacher_p)
        if cfg.passages_as_queries:
            queries = list(queries) + list(passages)
            teacher_q = np.concatenate([np.asarray(teacher_q, dtype=np.float32).reshape(-1, teacher_p.shape[1]), teacher_p])
        _log(f"passage tower frozen: training the query tower only, on {len(queries):,} texts"
             + (" (queries + the passages)" if cfg.passages_as_queries else ""))
    t_dim = teacher_q.shape[1] if len(teacher_q) else teacher_p.shape[1]
    cos_loss = CosineToTeacherLoss(student.dim, t_dim).to(device)
    score_loss = ScoreDistillLoss(cfg.temperature, cfg.weight_kl, cfg.weight_mse)

    t0 = time.perf_counter()
    q_ids = student.tokenize_queries(list(queries)) if len(queries) else []
    p_ids = [[]] * len(passages) if frozen_p else student.tokenize_passages(list(passages))
    tq = torch.from_numpy(np.ascontiguousarray(teacher_q, dtype=np.float32))
    tp = torch.from_numpy(np.ascontiguousarray(teacher_p, dtype=np.float32))
    mined = top_k(teacher_q, teacher_p, cfg.mine_k) if len(queries) and cfg.candidates else None
    _log(f"tokenised {len(q_ids):,} queries + {len(p_ids):,} passages"
         + (f", teacher top-{cfg.mine_k} mined" if mined is not None else "") + f" in {time.perf_counter() - t0:.1f}s")

    # Word-embedding tables (30k x 384 per tower) get sparse gradients and SparseAdam: a step then
    # touches only the rows of the batch's tokens, not 23M parameters (10-50x faster on a CPU).
    sparse_tables = [m for m in student.modules() if isinstance(m, nn.Embedding) and m.weight.requires_grad
                     and m.weight.numel() > 1_000_000]
    for m in sparse_tables:
        m.sparse = True
    emb_ids = {id(m.weight) for m in sparse_tables}
    emb_params = [m.weight for m in sparse_tables]
    other = [p for p in student.parameters() if p.requires_grad and id(p) not in emb_ids]
    other += list(cos_loss.parameters())
    lr_e = cfg.embedding_learning_rate or cfg.learning_rate
    opt = torch.optim.Adam(other, lr=cfg.learning_rate)
    opt_e = torch.optim.SparseAdam(emb_params, lr=lr_e) if emb_params else None

    nq, npas, B = len(q_ids), len(p_ids), cfg.batch_size
    steps_q = math.ceil(nq / B) if nq else 0
    # passage-only steps cover the passages that queries' candidates don't reach
    steps_p = (math.ceil(npas / (B * max(1, 2 * cfg.candidates)))
               if (cfg.passage_only_steps or not nq) and not frozen_p else 0)
    total = cfg.epochs * (steps_q + steps_p)
    # 5% linear warm-up then cosine decay to 0 over `budget["total"]` steps; with `max_seconds` the plan
    # shrinks to the steps that fit once the first steps are timed, so a capped run still anneals.
    budget = {"total": max(total, 1)}

    def lr_factor(i: int) -> float:
        warm = max(1, int(0.05 * budget["total"]))
        if i < warm:
            return (i + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (i - warm) / max(1, budget["total"] - warm))))

    scheds = [torch.optim.lr_scheduler.LambdaLR(o, lr_factor) for o in (opt, opt_e) if o is not None]
    student.train()
    step, seen, last, stopped = 0, 0, t0, False
    losses: list[float] = []
    for epoch in range(cfg.epochs):
        plan = [("q", i) for i in range(steps_q)] + [("p", i) for i in range(steps_p)]
        random.Random(cfg.seed + epoch).shuffle(plan)
        q_perm, p_perm = rng.permutation(nq), rng.permutation(npas)
        for kind, i in plan:
            if kind == "q":
                qi = q_perm[i * B : (i + 1) * B]
                picks = []
                if mined is not None:
                    cols = rng.integers(0, mined.shape[1], size=(len(qi), cfg.candidates))
                    picks.append(np.take_along_axis(mined[qi], cols, axis=1).ravel())
                picks.append(rng.integers(0, npas, size=len(qi) * max(1, cfg.candidates)))
                pi = np.unique(np.concatenate(picks))
                sq = _embed(student, "query", [q_ids[j] for j in qi], device)
                tqb, tpb = tq[qi].to(device), tp[pi].to(device)
                sp = tpb if frozen_p else _embed(student, "passage", [p_ids[j] for j in pi], device)
                loss = score_loss(sq, sp, tqb, tpb)
                if cfg.weight_cosine:
                    loss = loss + cfg.weight_cosine * (cos_loss(sq, tqb) + (0 if frozen_p else cos_loss(sp, tpb)))
                seen += len(qi) + len(pi)
            else:
                n_p = B * max(1, 2 * cfg.candidates)
                pi = p_perm[i * n_p : (i + 1) * n_p]
                sp = _embed(student, "passage", [p_ids[j] for j in pi], device)
                tpb = tp[pi].to(device)
                # passages against each other: the same score structure the teacher has
                loss = cfg.weight_cosine * cos_loss(sp, tpb) + score_loss(sp[: B], sp, tpb[: B], tpb) * 0.5
                seen += len(pi)
            if extra_loss is not None:
                extra = extra_loss(step)
                if extra is not None:
                    loss = loss + extra
            if not torch.isfinite(loss):
                raise FloatingPointError(f"distillation loss became {loss.item()} at step {step}; lower the learning rate")
            opt.zero_grad(set_to_none=True)
            if opt_e is not None:
                opt_e.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if opt_e is not None:
                opt_e.step()
            for sch in scheds:
                sch.step()
            step += 1
            losses.append(loss.item())
            now = time.perf_counter()
            if now - last > 15 or step == total:
                last = now
                _log(f"epoch {epoch + 1}/{cfg.epochs} step {step}/{total} loss {np.mean(losses[-50:]):.4f} "
                     f"{seen / (now - t0):,.0f} texts/s {now - t0:.0f}s")
            if cfg.max_seconds is not None and step == 20:
                fit = int(step + (cfg.max_seconds - (now - t0)) / ((now - t_first) / (step - 1)))
                if fit < budget["total"]:
                    budget["total"] = max(fit, step + 1)
                    _log(f"max_seconds={cfg.max_seconds:g}: planning {budget['total']} of {total} steps")
            if step == 1:
                t_first = now
            # the last planned step is the natural end, not an early stop
            if cfg.max_seconds is not None and step < total and (now - t0 > cfg.max_seconds or step >= budget["total"]):
                stopped = True
                break
        if stopped:
            _log(f"stopping at step {step} after {time.perf_counter() - t0:.0f}s (max_seconds={cfg.max_seconds:g})")
            break
    for m in sparse_tables:
        m.sparse = False
    student.eval()
    dt = time.perf_counter() - t0
    summary = {"steps": step, "epochs": cfg.epochs, "queries": nq, "passages": npas, "texts_seen": seen,
               "seconds": round(dt, 1), "final_loss": float(np.mean(losses[-50:])) if losses else None,
               "stopped_early": stopped}
    _log("done: " + json.dumps(summary))
    return summary


def agreement(student, teacher_q: np.ndarray, teacher_p: np.ndarray, queries, passages, k: int = 10) -> float:
    """Mean overlap@k between the student's and the teacher's top-k passages for each query (0..1)."""
    sq, sp = student.encode_queries(list(queries)), student.encode_passages(list(passages))
    a, b = top_k(sq, sp, k), top_k(teacher_q, teacher_p, k)
    return float(np.mean([len(set(x) & set(y)) / a.shape[1] for x, y in zip(a, b)]))


def adapt_to_corpus(student, texts: Sequence[str], teacher, epochs: int = 4, queries: Sequence[str] = (),
                    cache: TeacherCache | None = None, cfg: DistillConfig | None = None) -> dict:
    """Distil `student` on the passages it is about to index (no labels needed).

    `texts`: the corpus passages; `teacher`: a TwoTowers / teacher or a name for `load_teacher`;
    `queries`: optional unlabelled queries (they teach the query tower and give score targets).
    Teacher vectors go through `cache` (default `DEFAULT_CACHE_DIR`). Prints progress and returns a
    summary dict with the cost (seconds, texts, cache size)."""
    t0 = time.perf_counter()
    if isinstance(teacher, str):
        teacher = load_teacher(teacher)
    cache = cache or TeacherCache()
    texts, queries = list(texts), list(queries)
    tp = cache.encode(teacher, texts, "passage")
    tq = cache.encode(teacher, queries, "query") if queries else np.zeros((0, tp.shape[1]), np.float32)
    t_teacher = time.perf_counter() - t0
    cfg = cfg or DistillConfig()
    cfg = DistillConfig(**{**cfg.__dict__, "epochs": epochs})
    summary = distill(student, queries, texts, tq, tp, cfg)
    summary.update(teacher_seconds=round(t_teacher, 1), total_seconds=round(time.perf_counter() - t0, 1),
                   cache_mib=round(cache.size_bytes(teacher) / 2**20, 1), teacher_computed=cache.computed)
    _log(f"adapted to {len(texts):,} passages (+{len(queries):,} queries) in {summary['total_seconds']}s "
         f"(teacher {t_teacher:.0f}s, training {summary['seconds']}s), cache {summary['cache_mib']} MiB")
    return summary
