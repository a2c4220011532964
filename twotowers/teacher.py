"""Teachers for distillation, and their vectors cached on disk.

A teacher (zero-shot all-MiniLM-L6-v2 = "minilm", a saved `TwoTowers`, or any sentence-transformers
bi-encoder such as `BAAI/bge-small-en-v1.5`, as a directory or a Hub id) encodes every text once; `TeacherCache` keeps its vectors on disk keyed by the
teacher's fingerprint and a hash of each text (safetensors shards, never pickles), so later epochs
and later runs only look them up:

    teacher = load_teacher("minilm")
    cache = TeacherCache()                                  # $TWOTOWERS_CACHE/teacher
    t_q = cache.encode(teacher, queries, "query")           # [n, 384], computed once
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from .base import sha256_file
from .download import cache_dir

ZERO_SHOT_NAMES = ("minilm", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")


_log = logging.getLogger(__name__).info


class SentenceTransformerTeacher:
    """A sentence-transformers bi-encoder as a teacher (a local directory in its layout).

    Pooling, normalisation, max length and the query/document prompts are the model's own: its files
    are read by sentence-transformers, and queries go through `encode_query`, passages through
    `encode_document` (bge-small-en-v1.5 puts "Represent this sentence for searching relevant
    passages: " before every query). Weights load from safetensors only; no remote code.
    """

    def __init__(self, path: str | Path, name: str | None = None):
        from sentence_transformers import SentenceTransformer

        from .towers import _quiet_transformers

        self.path, self.name = Path(path), name or str(path)
        _refuse_pickled_weights(self.path, self.name)
        with _quiet_transformers():  # its load report lists the unused pooler weights
            self.model = SentenceTransformer(str(self.path), trust_remote_code=False,
                                             model_kwargs={"use_safetensors": True})
        self.prompts = {k: v for k, v in (self.model.prompts or {}).items() if k in ("query", "document")}
        self.dim = (getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension)()

    def fingerprint(self) -> str:
        """sha256 over every file of the model (weights in any format, configs, tokenizer) and the prompts
        it encodes with: the key of its vectors in the cache."""
        h = hashlib.sha256(b"sentence-transformers\0")
        h.update(json.dumps(self.prompts, sort_keys=True).encode())
        for f in sorted(self.path.rglob("*")):
            rel = f.relative_to(self.path)
            if f.is_file() and not any(part.startswith(".") for part in rel.parts):  # not .cache/ bookkeeping
                h.update(rel.as_posix().encode() + b"\0")
                h.update(sha256_file(f).encode())
        return h.hexdigest()

    def encode_queries(self, texts, batch_size=256, show_progress=False):
        return self.model.encode_query(list(texts), batch_size=batch_size, normalize_embeddings=True,
                                       convert_to_numpy=True, show_progress_bar=show_progress).astype(np.float32)

    def encode_passages(self, texts, batch_size=64, show_progress=False):
        return self.model.encode_document(list(texts), batch_size=batch_size, normalize_embeddings=True,
                                          convert_to_numpy=True, show_progress_bar=show_progress).astype(np.float32)


def _refuse_pickled_weights(root: Path, name: str) -> None:
    """A module folder whose weights exist only as a pickle (pytorch_model.bin, *.pt) is refused in one line."""
    pickled = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
    for folder in [root, *(d for d in root.iterdir() if d.is_dir())]:
        files = [f.name for f in folder.iterdir() if f.is_file()]
        if any(f.endswith(pickled) for f in files) and not any(f.endswith(".safetensors") for f in files):
            raise OSError(f"teacher {name}: {folder} holds its weights only as a pickle "
                          f"({', '.join(f for f in files if f.endswith(pickled))}); twotowers never loads pickles: "
                          "convert them to model.safetensors")


# What a teacher download fetches from the Hub: configs, tokenizers and safetensors weights, nothing
# executable or pickled.
TEACHER_FILES = ["*.json", "*.safetensors", "*.txt"]


def load_teacher(name: str):
    """A teacher by name: `"minilm"` = zero-shot all-MiniLM-L6-v2 (a TwoTowers transformer tower); a
    saved TwoTowers model; or a sentence-transformers bi-encoder (`BAAI/bge-small-en-v1.5`), each as a
    local directory or a Hub id."""
    from .download import local_or_download
    from .model import BASE_CONFIG_NAME, TwoTowers

    if name in ZERO_SHOT_NAMES:
        return TwoTowers.zero_shot()
    local = local_or_download(name, what="teacher", allow_patterns=TEACHER_FILES)
    if (local / BASE_CONFIG_NAME).is_file():  # a saved TwoTowers (its sentence-transformers export too)
        return TwoTowers.from_pretrained(str(local))
    if (local / "modules.json").is_file():
        return SentenceTransformerTeacher(local, name)
    raise FileNotFoundError(f"teacher {name!r}: {local} is neither a sentence-transformers model (no modules.json) "
                            "nor a saved TwoTowers model (no base_config.json)")


def text_hash(kind: str, text: str) -> bytes:
    """16-byte key of one text as a query or a passage (the two towers differ)."""
    return hashlib.blake2b(f"{kind}\0{text}".encode("utf-8"), digest_size=16).digest()


class TeacherCache:
    """Teacher vectors on disk: `DIR/<fingerprint[:16]>/<kind>-<n>.safetensors` shards, each holding
    `keys [n, 16] uint8` (text hashes) and `vectors [n, dim] float16`. Lookups are by text hash, so any
    text set reuses what any earlier run computed; only missing texts are encoded (one new shard)."""

    def __init__(self, directory: str | Path | None = None, shard_size: int = 20_000):
        self.directory = Path(directory).expanduser() if directory is not None else cache_dir() / "teacher"
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


def passage_agreement(model, passages: Sequence[str], teacher_p: np.ndarray, n: int = 8) -> float:
    """Lowest cosine between `model`'s passage vectors and the teacher's on `n` spread-out passages
    (-1 when the widths differ): 1.0 means its passage tower encodes as the teacher does."""
    rows = np.unique(np.linspace(0, len(passages) - 1, min(n, len(passages))).astype(int))
    got = model.encode_passages([passages[i] for i in rows])
    want = np.asarray(teacher_p[rows], dtype=np.float32)
    if got.shape != want.shape:
        return -1.0
    return float(((got * want).sum(1) / np.maximum(np.linalg.norm(want, axis=1), 1e-12)).min())
