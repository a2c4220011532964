"""A whole collection indexed straight into its directory: bounded memory, all cores, resumable (`index build`).

    meta = build_directory("my-index", model, pairs, settings=BuildSettings(M=32), total=8_841_823)

The collection is read `chunk_size` passages at a time. Each chunk is encoded (`encode`: this process,
or each torchrun rank its shard: twotowers/index/distributed.py), inserted into the graph on a worker
thread with every core (hnswlib releases the GIL, so the next chunk is encoded meanwhile), and its ids,
texts and BM25 pairs are appended to their files. Memory: the graph, one chunk in flight, ~16 bytes a
passage (the id check) and the BM25 vocabulary.

Everything is written into `.OUT.build/` beside OUT. A checkpoint (at the end of a chunk, once
`checkpoint_seconds` have passed since the last) saves the graph as `hnsw-N.bin`, syncs the appended
files, then records in `build.json` how long each was; killed at any moment, the same command resumes
from the last checkpoint: files are cut back to it and the collection's first N passages skipped,
checked by their hash to be the ones indexed. Only once every passage is in, BM25 weighed, ef tuned
and `index.json` written with every file's checksum is the directory swapped in as OUT
(twotowers/writing.py): OUT never holds a half-built index, and a finished build replaces it whole.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import hnswlib
import numpy as np
import xxhash

from ..ids import IdSet
from ..writing import WriteError, free_bytes, human_size, swap_in, sync_tree, writer_lock, writing
from . import files
from .appending import Blob
from .files import HNSW_NAME, META_NAME, STORE_FILES
from .passage_index import new_graph, new_meta, save_graph, split_pairs, versions
from .progress import Progress, duration
from .store import VectorStore
from .tuning import RecallWarning, tune, unreached

STATE_NAME = "build.json"  # build-only: settings and the last checkpoint


@dataclass(frozen=True)
class BuildSettings:
    """What decides the index a build makes (a resumed build must be given the same)."""

    M: int = 32
    ef_construction: int = 200
    target_recall: float = 0.99
    chunk_size: int = 10_000
    keyword: bool = True
    stemmer: str | None = "english"
    k1: float = 0.9
    b: float = 0.4
    seed: int = 0
    tune_samples: int = 200


def work_dir(out: Path) -> Path:
    """`.NAME.build` beside OUT: where an unfinished build lives."""
    return Path(out).parent / f".{Path(out).name}.build"


def graph_bytes(count: int, dim: int, M: int) -> int:
    """About what hnswlib's graph of `count` vectors takes, on disk and in memory: each level-0 record
    (link count + 2M links, the vector, the label), its upper-level list size, and on average
    1/(M-1) upper-level lists of M links (levels are drawn with P(level >= l) = M^-l)."""
    per = (4 + 8 * M) + 4 * dim + 8 + 4 + (4 + 4 * M) / (M - 1)
    return int(96 + count * per)


def build_directory(out, model, pairs: Iterable[tuple[str, str]], *, settings: BuildSettings = BuildSettings(),
                    total: int | None = None, encode: Callable[[list[str]], np.ndarray] | None = None,
                    batch_size: int = 64, threads: int = -1, checkpoint_seconds: float = 600.0,
                    overwrite: bool = False, restart: bool = False, corpus: str | None = None,
                    model_source: str | None = None, source_bytes: int | None = None, show_progress: bool = True,
                    on_start: Callable[[int], None] | None = None, on_encoded: Callable[[], None] | None = None) -> dict:
    """Index `pairs` ((id, text), streamed) into the directory `out` -> its index.json.

    Resumes an unfinished build of `out` made with the same `settings` and model (`restart` discards it
    instead). `total`: how many passages to expect (the progress bar's ETA, and the graph's capacity, so
    it never grows by copying). `encode(texts) -> [n, dim]` unit vectors (default: `model`, here).
    `threads`: graph insertion threads (-1: every core). `on_start(n)` is told how many passages an
    earlier run did (torchrun's other ranks skip them too; -1: all, only the swap is left), and
    `on_encoded()` is called once nothing more is encoded. An index already in `out` is replaced only
    with `overwrite`; the swap checks again that none appeared meanwhile.
    """
    out = Path(out)
    encode = encode or (lambda texts: model.encode_passages(texts, batch_size=batch_size))
    with writer_lock(out, "the index"):
        if (files.saved_dir(out) / META_NAME).exists() and not overwrite:
            raise FileExistsError(f"{out} already holds an index: pass --overwrite to replace it, or choose another --out")
        files.check_replaceable(out, overwrite=True)  # a directory of other files is refused before hours of work
        job = _Job(work_dir(out), settings, model, restart=restart, total=total)
        if on_start is not None:
            on_start(job.count)
        if not job.finished:
            _check_space(job, total, model.dim, source_bytes)
            job.run(pairs, encode, threads=threads, checkpoint_seconds=checkpoint_seconds, show_progress=show_progress)
        if on_encoded is not None:
            on_encoded()
        if not job.finished:
            job.finish(corpus=corpus, model_source=model_source, note=_note if show_progress else lambda _: None)
        meta = files.read_meta(job.dir)
        clean(job.dir, meta)  # a build killed while cleaning up
        files.check_replaceable(out, overwrite)  # nothing appeared in `out` meanwhile (without --overwrite)
        swap_in(job.dir, out)
    return meta


class _Job:
    """The unfinished build in its work directory: its state, its open files, its graph."""

    def __init__(self, directory: Path, settings: BuildSettings, model, *, restart: bool, total: int | None):
        self.dir, self.settings, self.model, self.total = directory, settings, model, total
        self.finished = (directory / META_NAME).is_file()  # killed during the swap: only the swap is left
        state_path = directory / STATE_NAME
        if restart:
            shutil.rmtree(directory, ignore_errors=True)
            self.finished = False
        if self.finished:
            self.state = None
            return
        wanted = {"settings": asdict(settings), "model": model.fingerprint(), "dim": int(model.dim)}
        if state_path.is_file():
            self.state = files.read_json(state_path, "an unfinished index build")
            _check_same(self.state, wanted, directory)
        else:
            shutil.rmtree(directory, ignore_errors=True)  # a build killed before its first checkpoint
            with writing(directory):
                directory.mkdir(parents=True)
            self.state = {"format": "twotowers-index-build", **wanted, "count": 0, "graph": None, "seconds": 0.0,
                          "stream_hash": "", "ids_bytes": 0, "passages_bytes": 0, "keyword": None}
        s, resume = self.state, self.state["count"] > 0
        keep = s["count"] if resume else None
        self.ids = Blob(directory / STORE_FILES["ids"][0], directory / STORE_FILES["ids"][1], keep=keep,
                        keep_bytes=s["ids_bytes"])
        self.passages = Blob(directory / STORE_FILES["passages"][0], directory / STORE_FILES["passages"][1],
                             keep=keep, keep_bytes=s["passages_bytes"])
        self.keyword = None
        if settings.keyword:
            from .keyword_writer import KeywordWriter

            self.keyword = KeywordWriter(directory, k1=settings.k1, b=settings.b, stemmer=settings.stemmer,
                                         resume=s["keyword"] if resume else None)
        capacity = max(total or 0, s["count"], settings.chunk_size, 1)
        if resume:
            self.graph = hnswlib.Index(space="ip", dim=int(model.dim))
            self.graph.load_index(str(directory / s["graph"]), max_elements=capacity)
            if self.graph.get_current_count() != s["count"]:
                raise files.IndexFileError(f"{directory / s['graph']} holds {self.graph.get_current_count():,} "
                                           f"passages, its checkpoint {s['count']:,}: pass --restart")
        else:
            self.graph = new_graph(int(model.dim), M=settings.M, ef_construction=settings.ef_construction,
                                   capacity=capacity, seed=settings.seed)
        for p in directory.glob("hnsw-*.bin*"):  # checkpoints older or newer than the one recorded
            if p.name != s["graph"]:
                p.unlink()

    @property
    def count(self) -> int:
        return int(self.state["count"]) if self.state else -1

    # -- the chunk loop ----------------------------------------------------------------------------
    def run(self, pairs, encode, *, threads: int, checkpoint_seconds: float, show_progress: bool) -> None:
        size, count = self.settings.chunk_size, self.count
        chunks = _chunks(iter(pairs), size)
        stream_hash = _skip(chunks, count, size, self.state["stream_hash"], self.dir)
        ids_seen = IdSet(self.ids.get)  # ~16 bytes an id; a hash match is confirmed on the ids themselves
        for a, ids in enumerate(_batched(self.ids.strings(), 100_000)):
            ids_seen.add(ids, a * 100_000)
        bar = Progress(self.total, start=count, enabled=show_progress)
        if count:
            bar.note(f"resuming the unfinished build in {self.dir}: {count:,} passages were done")
        inserter = _Inserter(self.graph, threads)
        t0, last = time.perf_counter(), time.perf_counter()
        save_seconds = 0.0
        try:
            for chunk in chunks:
                ids, texts = split_pairs(chunk, start=count)
                if (rep := ids_seen.first_repeat(ids, count)) is not None:
                    row, first = rep
                    raise ValueError(f"passage {row} has the id {ids[row - count]!r}, which passage {first} already "
                                     "has: passage ids must be unique")
                vectors = np.ascontiguousarray(encode(texts), dtype=np.float32)  # [n, dim] unit vectors
                if vectors.shape != (len(texts), int(self.model.dim)):
                    raise ValueError(f"the encoder gave vectors of shape {vectors.shape} for {len(texts)} passages")
                inserter.submit(vectors, count)  # the graph grows on a worker thread while the next chunk encodes
                ids_seen.add(ids, count)
                self.ids.extend(ids)
                self.passages.extend(texts)
                if self.keyword is not None:
                    self.keyword.add(texts)
                count += len(ids)
                stream_hash = _chain(stream_hash, chunk)
                bar.update(len(ids))
                now = time.perf_counter()
                # every `checkpoint_seconds` (0: every chunk), and never so often that saving takes over 10%
                if now - last >= checkpoint_seconds and (not checkpoint_seconds or now - last >= 10 * save_seconds):
                    inserter.wait()
                    save_seconds = self.checkpoint(count, stream_hash, now - t0)
                    bar.note(f"checkpoint: {count:,} passages ({duration(save_seconds)} to save); a killed build "
                             "resumes from here")
                    t0, last = time.perf_counter(), time.perf_counter()
            inserter.wait()
        finally:
            inserter.close()
            bar.close()
        if count == 0:
            raise ValueError("no passages to index: the collection is empty")
        if count != self.count or self.state["graph"] is None:
            self.checkpoint(count, stream_hash, time.perf_counter() - t0)

    def checkpoint(self, count: int, stream_hash: str, seconds: float) -> float:
        """Save the graph and sync the files, then record them: a kill between the two keeps the last
        checkpoint (its graph file is removed only after the new record is written). -> seconds taken."""
        t0 = time.perf_counter()
        for part in (self.ids, self.passages, self.keyword):
            if part is not None:
                with writing(getattr(part, "path", None) or part.directory):
                    part.sync()
        name = f"hnsw-{count:012d}.bin"
        tmp = self.dir / f"{name}.tmp"
        with writing(tmp):
            save_graph(self.graph, tmp)
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, self.dir / name)
        old = self.state["graph"]
        self.state.update(count=count, graph=name, stream_hash=stream_hash, seconds=self.state["seconds"] + seconds,
                          ids_bytes=self.ids.nbytes, passages_bytes=self.passages.nbytes,
                          keyword=self.keyword.state() if self.keyword is not None else None)
        with writing(self.dir / STATE_NAME):
            files.write_json(self.dir / STATE_NAME, self.state)
        if old and old != name:
            (self.dir / old).unlink(missing_ok=True)
        return time.perf_counter() - t0

    # -- the end -------------------------------------------------------------------------------------
    def finish(self, *, corpus: str | None, model_source: str | None, note: Callable[[str], None]) -> None:
        """Tune ef, weigh BM25, write index.json with every file's checksum: the directory is an index now.
        `note(line)` says which step is running (each reads whole files: long at scale)."""
        s, count, dim = self.state, self.count, int(self.model.dim)
        vectors = VectorStore.from_graph(self.dir / s["graph"], count, dim)  # the graph's own vectors
        passages = self.passages
        note(f"tuning ef: exact search of {count:,} passages for {min(self.settings.tune_samples, count)} queries, "
             "then the graph's at each ef")
        ef, record = tune(self.graph, vectors, lambda rows: [passages.get(int(r)) for r in rows], self.model,
                          self.settings.target_recall, samples=self.settings.tune_samples, seed=self.settings.seed)
        if record and not record["reached"]:
            warnings.warn(RecallWarning(unreached(record, ef)), stacklevel=3)
        self.graph = None  # saved already: its memory goes before BM25's weighing maps its files
        keyword = None
        if self.keyword is not None:
            note(f"weighing BM25: {self.keyword.pair_terms.length:,} (term, passage) pairs")
            with writing(self.dir / "keyword.json"):
                keyword = {**self.keyword.finish(), "present": True}
        self.ids.close()
        self.passages.close()
        del vectors
        graph = self.dir / HNSW_NAME
        graph.unlink(missing_ok=True)
        try:  # the checkpoint stays until index.json is written: a kill before then resumes from it
            os.link(self.dir / s["graph"], graph)
        except OSError:
            shutil.copyfile(self.dir / s["graph"], graph)
        meta = new_meta(self.model, self.settings.M, self.settings.ef_construction)
        meta.update(ef=ef, count=count, ef_tuning=record or None, build_seconds=round(s["seconds"], 2),
                    keyword=keyword)
        if corpus is not None:
            meta["corpus"] = corpus
        if model_source is not None:
            meta["model"]["source"] = model_source
        own = files.expected_files(meta)
        note(f"checksums: the index's {len(own)} files "
             f"({human_size(sum((self.dir / name).stat().st_size for name in own))})")
        meta["files"] = files.describe_files(self.dir, own)
        meta["versions"] = versions()
        sync_tree(self.dir)
        with writing(self.dir / META_NAME):
            files.write_json(self.dir / META_NAME, meta)  # the directory is a whole index from here
        clean(self.dir, meta)


def _note(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def clean(directory: Path, meta: dict) -> None:
    """Remove what only the build needed (its state, checkpoints, the vocabulary spool) from a finished index."""
    own = {META_NAME, *files.expected_files(meta)}
    for p in directory.iterdir():
        if p.name not in own and p.name != STATE_NAME:
            p.unlink()
    (directory / STATE_NAME).unlink(missing_ok=True)  # last: until here a kill resumes the finishing


class _Inserter:
    """hnswlib's `add_items` on one worker thread (it releases the GIL): a chunk inserts while the next encodes."""

    def __init__(self, graph: hnswlib.Index, threads: int):
        self.graph, self.threads = graph, threads
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="hnswlib-insert")
        self._pending = None

    def submit(self, vectors: np.ndarray, start: int) -> None:
        self.wait()
        need = start + len(vectors)
        if need > self.graph.get_max_elements():  # only when the total was unknown or wrong
            self.graph.resize_index(max(need, 2 * self.graph.get_max_elements()))
        rows = np.arange(start, need, dtype=np.int64)
        self._pending = self._pool.submit(self.graph.add_items, vectors, rows, self.threads)

    def wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _chunks(pairs: Iterator, size: int) -> Iterator[list]:
    while chunk := list(itertools.islice(pairs, size)):
        yield chunk


def _batched(items: Iterable, size: int) -> Iterator[list]:
    items = iter(items)
    while batch := list(itertools.islice(items, size)):
        yield batch


def _chain(digest: str, chunk: list) -> str:
    """The collection's hash so far, chained over one more chunk of (id, text) pairs."""
    h = xxhash.xxh3_128(digest.encode())
    for pid, text in chunk:
        h.update(str(pid).encode("utf-8", "surrogatepass") + b"\0" + str(text).encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()


def _skip(chunks: Iterator[list], count: int, size: int, expected: str, directory: Path) -> str:
    """Read past the `count` passages an earlier run indexed, checking they are the same ones."""
    digest, seen = "", 0
    while seen < count:
        chunk = next(chunks, None)
        if chunk is None:
            raise ValueError(f"the collection holds only {seen:,} passages, but the unfinished build in {directory} "
                             f"indexed {count:,} of it: it changed since; pass --restart to start over")
        digest, seen = _chain(digest, chunk), seen + len(chunk)
    if digest != expected:
        raise ValueError(f"the collection's first {count:,} passages are not those the unfinished build in {directory} "
                         "indexed (the file changed, or --limit/--chunk-size differ): pass --restart to start over")
    return digest


def _check_same(state: dict, wanted: dict, directory: Path) -> None:
    """A resumed build must be the one that was started: same settings, same model."""
    if not isinstance(state, dict) or state.get("format") != "twotowers-index-build":
        raise files.IndexFileError(f"{directory / STATE_NAME} is not an index build's state: remove {directory}")
    if state.get("model") != wanted["model"]:
        raise ValueError(f"{directory} holds an unfinished build by another model (fingerprint {str(state.get('model'))[:12]}, "
                         f"this one {wanted['model'][:12]}): give that model to resume it, or pass --restart to discard it")
    old, new = state.get("settings", {}), wanted["settings"]
    diff = [f"{k} {old.get(k)!r} (now {v!r})" for k, v in new.items() if old.get(k) != v]
    if diff:
        raise ValueError(f"{directory} holds an unfinished build with other settings: {', '.join(diff)}: rerun with "
                         "those to resume it, or pass --restart to discard it")


def _check_space(job: _Job, total: int | None, dim: int, source_bytes: int | None) -> None:
    """Refuse at once a build whose disk cannot take it: the graph twice (a checkpoint is written beside the
    last), the texts, and BM25's pairs (about as large as the texts)."""
    n = max(total or 0, job.count)
    need = 2 * graph_bytes(n, dim, job.settings.M) + 2 * (source_bytes or 0)
    have = sum(p.stat().st_size for p in job.dir.iterdir() if p.is_file())
    free = free_bytes(job.dir)
    if free is not None and free + have < need:
        err = WriteError(f"disk full: building {n:,} passages into {job.dir.parent} needs about {human_size(need)} "
                         f"(the graph twice while it is checkpointed, the texts, BM25), and its disk has "
                         f"{human_size(free)} free: free some space or build elsewhere; nothing was indexed")
        err.errno = 28
        raise err


def read_state(out) -> dict | None:
    """The unfinished build of `out` (build.json), or None."""
    path = work_dir(Path(out)) / STATE_NAME
    return json.loads(path.read_text()) if path.is_file() else None
