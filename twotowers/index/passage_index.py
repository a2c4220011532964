"""`PassageIndex`: hnswlib over passage vectors + the passages themselves + BM25, saved whole, verified on load."""

from __future__ import annotations

import copy
import errno
import itertools
import os
import shutil
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import hnswlib
import numpy as np

from ..checks import BLANK, check_positive_int, check_texts, is_blank
from . import files
from ..writing import WriteError, free_bytes, human_size, staging_dir, swap_in, sync_tree, writer_lock, writing
from .files import HNSW_NAME, META_NAME, STORE_FILES, IndexFileError, load_array
from .fusion import DEFAULT_ALPHA, DEFAULT_FUSION, DEFAULT_K, check_mode, fuse
from .hits import SearchHit, array_hits, dense_hits
from ..ids import IdSet
from ..layout import INDEX_SUBFOLDER, find_index
from .keyword import KeywordIndex
from .store import TextStore, VectorStore
from .tuning import RecallWarning, tune, unreached

_FLOAT32 = np.dtype(np.float32)  # dtypes of builtin types are singletons: `is` compares
RETUNE_GROWTH = 1.1  # `add` re-tunes ef once the index has grown by 10% since ef was chosen


class PassageIndex:
    """Passages searchable by dense vectors (hnswlib), by BM25 keywords, or by both fused."""

    def __init__(self, hnsw: hnswlib.Index, vectors: VectorStore, ids: TextStore, passages: TextStore, meta: dict,
                 keyword: KeywordIndex | None = None, model=None):
        self.hnsw, self.ids, self.passages, self.keyword = hnsw, ids, passages, keyword
        self._vectors = vectors
        self._meta = meta
        self._id_set: IdSet | None = None  # built on the first `add` (a build keeps its own)
        self._loaded_count = len(ids)  # where ef was tuned, for a record that does not say
        self.model = model

    # -- properties ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self._meta["dim"])

    @property
    def ef(self) -> int:
        """hnswlib's search breadth (ef), chosen at build time for the target recall."""
        return int(self._meta["ef"])

    @property
    def meta(self) -> dict:
        """What index.json holds (the files' sizes and checksums are added by `save`)."""
        m = dict(self._meta)
        m["format_version"] = files.FORMAT_VERSION  # a loaded older index is saved in today's format
        m["count"] = len(self)
        m["keyword"] = {**self.keyword.meta, "present": True} if self.keyword is not None else None
        return m

    @property
    def default_mode(self) -> str:
        """What `search` does without `mode=`: "hybrid" (dense + BM25, the best measured in
        docs/results.md) where the index has a keyword side, else "dense"."""
        return "hybrid" if self.keyword is not None else "dense"

    def set_corpus(self, name: str) -> None:
        """Record which collection the index holds, by name (saved in index.json; a model card shows it)."""
        self._meta["corpus"] = name

    def set_model_source(self, source: str) -> None:
        """Record where `python -m twotowers.index search` finds the model again (saved in index.json)."""
        self._meta["model"]["source"] = source

    def __repr__(self) -> str:
        return (f"PassageIndex({len(self)} passages, dim={self.dim}, M={self._meta['M']}, ef={self.ef}, "
                f"keyword={self.keyword is not None})")

    # -- building ------------------------------------------------------------------------------------
    @classmethod
    def build(cls, model, ids, texts: Sequence[str] | None = None, *, M: int = 32, ef_construction: int = 200,
              target_recall: float = 0.99, chunk_size: int = 10_000, keyword: bool = True,
              show_progress: bool = False, tune_queries: Sequence[str] | np.ndarray | None = None,
              tune_samples: int = 200, tune_k: int = DEFAULT_K, batch_size: int = 64, stemmer: str | None = "english",
              k1: float = 0.9, b: float = 0.4, seed: int = 0, vectors: np.ndarray | None = None) -> "PassageIndex":
        """Encode passages with `model` in chunks and index them (dense and, by default, BM25).

        `ids, texts` are two sequences, or `ids` alone is an iterable of `(id, text)` pairs (read as a
        stream: memory is bounded by `chunk_size`, not the corpus). Ids must be unique; an empty
        collection is refused. `ef` is then set to the smallest value whose recall@`tune_k` against
        exact search reaches `target_recall` on `tune_samples` queries (see `tune_ef`).
        """
        if texts is not None:
            ids, texts = list(ids), list(texts)
            if len(ids) != len(texts):
                raise ValueError(f"{len(ids)} ids but {len(texts)} texts")
            total, pairs = len(ids), zip(ids, texts)
        else:
            total, pairs = (len(ids) if hasattr(ids, "__len__") else None), iter(ids)
        if not 0 < target_recall <= 1:
            raise ValueError(f"target_recall must be in (0, 1], got {target_recall}")
        index = cls._empty(model, M=M, ef_construction=ef_construction, capacity=max(total or chunk_size, 1),
                           keyword=KeywordIndex(k1=k1, b=b, stemmer=stemmer) if keyword else None, seed=seed)
        index._id_set = IdSet(index.ids.__getitem__)
        bar = None
        if show_progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, desc="indexing passages", unit="passage", smoothing=0.05)
        t0 = time.perf_counter()
        while chunk := list(itertools.islice(pairs, chunk_size)):
            chunk_ids, chunk_texts = split_pairs(chunk, start=len(index))
            given = None if vectors is None else vectors[len(index) : len(index) + len(chunk)]
            index._append(chunk_ids, chunk_texts, batch_size=batch_size, rescore=False, vectors=given)
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()
        if not len(index):
            raise ValueError("no passages to index: the collection is empty")
        if index.keyword is not None:
            index.keyword.rescore()
        index._meta["build_seconds"] = round(time.perf_counter() - t0, 2)
        index.tune_ef(target_recall, queries=tune_queries, samples=tune_samples, k=tune_k, seed=seed)
        return index

    @classmethod
    def _empty(cls, model, *, M: int, ef_construction: int, capacity: int, keyword: KeywordIndex | None,
               seed: int = 0) -> "PassageIndex":
        hnsw = new_graph(int(model.dim), M=M, ef_construction=ef_construction, capacity=capacity, seed=seed)
        return cls(hnsw, VectorStore(model.dim), TextStore(), TextStore(), new_meta(model, M, ef_construction),
                   keyword=keyword, model=model)

    def add(self, ids: Sequence[str], texts: Sequence[str], *, batch_size: int = 64) -> dict | None:
        """Encode and append passages (dense and keyword sides). Not thread-safe.

        An id already in the index, or repeated in `ids`, or a text with no letters or digits, is
        refused (ValueError naming it) and nothing is added. ef stays as chosen until the index has
        grown by RETUNE_GROWTH (10%) since it was tuned: then it is tuned again for the same target
        recall (a RecallWarning if it cannot be reached), and that record is returned; else None."""
        self._require_model("add")
        ids, texts = check_texts(ids, "ids"), check_texts(texts, "texts")
        if len(ids) != len(texts):
            raise ValueError(f"{len(ids)} ids but {len(texts)} texts")
        for i, text in enumerate(texts):
            if is_blank(text):
                raise ValueError(f"texts[{i}] (id {ids[i]!r}) {BLANK}: nothing to index; nothing was added")
        if texts:
            self._append(ids, texts, batch_size=batch_size, rescore=True)
        tuning = self._meta.get("ef_tuning")
        if tuning and len(self) >= RETUNE_GROWTH * tuning.get("count", self._loaded_count):
            # Recall at a fixed ef falls as the graph grows: dev600's collection, untrained mean tower, ef 60
            # tuned on its first 300 passages gave recall@10 0.89 once all 11,809 were added (re-tuned: ef 736, 0.99).
            return self.tune_ef(tuning["target_recall"], k=max(tuning["k"], 10), samples=max(tuning["queries"], 200))
        return None

    def _append(self, ids: list[str], texts: list[str], *, batch_size: int, rescore: bool,
                vectors: np.ndarray | None = None) -> None:
        start = len(self)
        if self._id_set is None:  # a loaded index: hash its ids once (8 bytes + a row each)
            self._id_set = IdSet(self.ids.__getitem__)
            for a in range(0, start, 100_000):
                self._id_set.add(self.ids.get(range(a, min(a + 100_000, start))), a)
        if (rep := self._id_set.first_repeat(ids, start)) is not None:
            row, first = rep
            if rescore:  # add(): name positions in the caller's list
                where = f"passage {first} of the index" if first < start else f"ids[{first - start}]"
                raise ValueError(f"ids[{row - start}] is {ids[row - start]!r}, which {where} already has: "
                                 "passage ids must be unique")
            raise ValueError(f"passage {row} has the id {ids[row - start]!r}, which passage {first} already has: "
                             "passage ids must be unique")
        if vectors is None:
            vectors = self.model.encode_passages(texts, batch_size=batch_size)  # [n, dim] unit vectors
        elif vectors.shape != (len(texts), self.dim):
            raise ValueError(f"vectors for passages {start}..{start + len(texts) - 1} have shape "
                             f"{vectors.shape}, expected ({len(texts)}, {self.dim})")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        need = start + len(texts)
        if need > self.hnsw.get_max_elements():
            self.hnsw.resize_index(max(need, 2 * self.hnsw.get_max_elements()))
        self.hnsw.add_items(vectors, np.arange(start, need, dtype=np.int64))
        self._vectors.extend(vectors)
        self.ids.extend(ids)
        self.passages.extend(texts)
        self._id_set.add(ids, start)
        if self.keyword is not None:
            self.keyword.add(texts, rescore=rescore)

    def copy(self) -> "PassageIndex":
        """An independent copy to `add` to and `save` while this one goes on serving unchanged: the graph is
        copied in memory; texts and vectors on disk are shared until the copy adds its own."""
        hnsw = copy.deepcopy(self.hnsw)  # hnswlib pickles its whole graph: transient memory of its size
        hnsw.set_ef(self.ef)
        out = PassageIndex(hnsw, self._vectors.copy(), self.ids.copy(), self.passages.copy(), copy.deepcopy(self._meta),
                           keyword=self.keyword.copy() if self.keyword is not None else None, model=self.model)
        out._loaded_count = self._loaded_count
        if self._id_set is not None:
            out._id_set = self._id_set.copy(out.ids.__getitem__)
        return out

    def tune_ef(self, target_recall: float = 0.99, *, queries=None, samples: int = 200, k: int = DEFAULT_K,
                seed: int = 0) -> dict:
        """Set `ef` to the smallest value reaching recall@k >= target against exact search; returns the record.

        Queries: `queries` (texts or query vectors) when given; else the query tower's vectors of
        1-6-word windows cut from sampled passages (twotowers/data.py `word_windows`); else, without a
        model, sampled passage vectors, each excluding itself from both result lists.
        """
        n = len(self)
        if n == 0:
            return {}
        if queries is not None and not isinstance(queries, np.ndarray):
            queries = self._require_model("tune_ef").encode_queries(list(queries))
        ef, record = tune(self.hnsw, self._vectors, self.passages.get, self.model, target_recall, queries=queries,
                          samples=samples, k=k, seed=seed)
        if record:
            self._meta["ef"] = ef
            self._meta["ef_tuning"] = record
            if not record["reached"]:
                warnings.warn(RecallWarning(unreached(record, ef)), stacklevel=2)
        return record

    def vectors(self, rows) -> np.ndarray:
        """The stored passage vectors at `rows` -> `[len(rows), dim]` float32."""
        return self._vectors[np.asarray(rows, dtype=np.int64)]

    # -- search --------------------------------------------------------------------------------------
    def search(self, queries: Sequence[str] | np.ndarray, k: int = DEFAULT_K, *, mode: str | None = None,
               alpha: float = DEFAULT_ALPHA, fusion: str = DEFAULT_FUSION, depth: int | None = None) -> list[list[SearchHit]]:
        """Top-k passages per query, best first (fewer when the index holds fewer).

        mode: "dense" (the towers; queries may be texts or `[n, dim]` query vectors), "keyword" (BM25)
              or "hybrid" (both; texts only). A text query with no words is refused. Default:
              `default_mode` ("hybrid" where the index has a keyword side) for texts, "dense" for vectors.
        alpha: hybrid weight of the dense side (1 = dense only, 0 = keyword only).
        fusion: a name in twotowers/index/fusion.py's `FUSIONS` (the default: `DEFAULT_FUSION`; what each
              does: `describe_fusions()`).
        depth: hybrid candidates = the union of each side's top-`depth` (default max(k, 100)); every
              candidate gets its exact dense and BM25 scores before fusing.
        """
        k = check_positive_int(k, "k")
        if mode is None:
            mode = "dense" if isinstance(queries, np.ndarray) else self.default_mode
        if mode == "dense":  # the hot path: a few list operations per query, no numpy beyond hnswlib's call
            q = self._query_vectors(queries)
            kk = min(k, len(self.ids))
            if not kk or not len(q):
                return [[] for _ in range(len(q))]
            labels, dist = self.hnsw.knn_query(q, k=kk, num_threads=1 if len(q) == 1 else -1)
            return [dense_hits(self.ids, self.passages, rows, d) for rows, d in zip(labels.tolist(), dist.tolist())]
        check_mode(mode, alpha, fusion)
        if isinstance(queries, np.ndarray) or self.keyword is None:
            raise ValueError(f"mode={mode!r} needs text queries and an index built with keyword=True"
                             + ("" if self.keyword is not None else " (this index has no keyword part)"))
        queries = _check_queries(queries)
        k = min(k, max(len(self), 1))  # never allocate for more than the corpus
        if mode == "keyword":
            rows, scores = self.keyword.search(queries, k)
            return [array_hits(self.ids, self.passages, r, s, keyword=s) for r, s in zip(rows, scores)]
        q = self._query_vectors(queries)
        depth = min(max(k, depth or 100), max(len(self), 1))
        d_rows, d_sims = self._dense(q, depth)
        kw, out = self.keyword, []
        for qi, text in enumerate(queries):
            n_dense = int(np.count_nonzero(d_rows[qi] >= 0))
            rows, dense = d_rows[qi, :n_dense], d_sims[qi, :n_dense]
            terms = kw.term_ids(text)
            if terms:
                bm25 = kw.scores(terms)                                   # [N] BM25 of every passage
                k_rows, _ = kw.top(bm25, depth)
                extra = np.setdiff1d(k_rows, rows, assume_unique=True)    # keyword-only candidates
                rows = np.concatenate([rows, extra])
                dense = np.concatenate([dense, self._vectors[extra] @ q[qi]])  # their exact cosines
                keyword = bm25[rows]                                      # exact BM25 (0 = no shared term)
            else:
                keyword = np.zeros(len(rows), dtype=np.float32)
            fused = fuse(dense, keyword, alpha, fusion)
            top = np.lexsort((rows, -fused))[:k]
            out.append(array_hits(self.ids, self.passages, rows[top], fused[top], dense=dense[top], keyword=keyword[top]))
        return out

    def _query_vectors(self, queries) -> np.ndarray:
        """`[n, dim]` float32 query vectors: given, or the model's encoding of texts."""
        if isinstance(queries, np.ndarray):
            if queries.ndim != 2 or queries.shape[1] != self._vectors.dim:
                raise ValueError(f"query vectors must be [n, {self.dim}], got shape {queries.shape}")
            return queries if queries.dtype is _FLOAT32 else queries.astype(np.float32)
        return self._require_model("text search").encode_queries(_check_queries(queries))

    def _dense(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """hnswlib top-k -> (`[n, k]` int64 rows, -1 pad; `[n, k]` float32 cosine)."""
        kk = min(k, len(self))
        if kk == k and len(q):  # the common case: no padding, no copies beyond hnswlib's arrays
            labels, dist = self.hnsw.knn_query(q, k=k, num_threads=1 if len(q) == 1 else -1)
            return labels.astype(np.int64), 1.0 - dist  # hnswlib "ip" distance is 1 - dot
        rows = np.full((len(q), k), -1, dtype=np.int64)
        sims = np.zeros((len(q), k), dtype=np.float32)
        if kk and len(q):
            labels, dist = self.hnsw.knn_query(q, k=kk, num_threads=1 if len(q) == 1 else -1)
            rows[:, :kk], sims[:, :kk] = labels, 1.0 - dist
        return rows, sims

    def _require_model(self, what: str):
        if self.model is None:
            raise ValueError(f"{what} needs the model that encoded the index: "
                             "PassageIndex.load(directory, model=TwoTowers.from_pretrained(...)), "
                             "or search with query vectors")
        return self.model

    # -- persistence ---------------------------------------------------------------------------------
    def save(self, directory, *, overwrite: bool = True) -> None:
        """Write the whole index into `directory`, atomically: written beside it (`.NAME.new`), checked
        (hnswlib's file by its size; a full disk is one OSError "disk full: <file>"), then swapped in
        by renames, so a reader, or a run killed at any moment, finds the old index or the new one,
        never a mix. One writer at a time (a lock beside it, `.NAME.lock`; another process's save is
        refused). The directory is the index's own: one holding other files is refused, and with
        `overwrite=False` so is one that already holds an index."""
        d = Path(directory)
        d = d.resolve() if d.is_symlink() else d  # swap the directory the link points to, not the link
        with writer_lock(d, "the index"):
            files.check_replaceable(d, overwrite)
            need = self._bytes_estimate()
            free = free_bytes(d.parent)
            if free is not None and free < need:  # the old index stays until the new one is whole: room for both
                err = WriteError(f"disk full: saving the index into {d} needs about {human_size(need)}, and its disk "
                                 f"has {human_size(free)} free: free some space or save elsewhere; nothing was written")
                err.errno = errno.ENOSPC
                raise err
            tmp = staging_dir(d)
            try:
                with writing(tmp / HNSW_NAME):
                    save_graph(self.hnsw, tmp / HNSW_NAME)
                for key, (blob, offsets) in STORE_FILES.items():
                    with writing(tmp / blob):
                        getattr(self, key).save(tmp / blob, tmp / offsets)
                if self.keyword is not None:
                    with writing(tmp / "keyword.json"):
                        self.keyword.save(tmp)
                meta = self.meta
                meta["files"] = files.describe_files(tmp)  # sizes and checksums of what is on disk now
                meta["versions"] = versions()
                with writing(tmp / META_NAME):
                    files.write_json(tmp / META_NAME, meta)
                sync_tree(tmp)
                swap_in(tmp, d)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)  # gone already after a swap; a failed save's half

    def _bytes_estimate(self) -> int:
        """About what `save` writes: the graph (with the vectors), texts and the BM25 arrays (+5% and 1 MB of slack)."""
        n = len(self)
        total = self.hnsw.index_file_size() + self.ids.nbytes() + self.passages.nbytes() + 16 * (n + 1)
        if self.keyword is not None:
            total += self.keyword.nbytes()
        return int(total * 1.05) + (1 << 20)

    @classmethod
    def load(cls, directory, model=None, *, mmap: bool = True, verify: bool = True,
             check_memory: bool = True) -> "PassageIndex":
        """Read a saved index, checking every part; `model`, if given, must be the one that built it.

        `verify=False` skips the content checksums (sizes, headers, the model and the graph's links are
        still checked, so a corrupt graph is refused rather than crash hnswlib): only for an index you
        have just verified or built yourself. An index that needs more memory than the machine has
        available is refused first (twotowers/index/memory.py), unless `check_memory=False`.
        """
        d = files.saved_dir(Path(directory))  # or the previous index, while a save's swap was killed halfway
        meta = cls.check(d, model, verify=verify, check_memory=check_memory)
        count, dim = meta["count"], meta["dim"]
        hnsw = hnswlib.Index(space=meta["space"], dim=dim)
        try:
            hnsw.load_index(str(d / HNSW_NAME), max_elements=max(count, 1))
        except Exception as e:
            raise IndexFileError(f"{d / HNSW_NAME} could not be read by hnswlib: {e}") from e
        hnsw.set_ef(meta["ef"])  # hnswlib does not save ef
        vectors = VectorStore.from_graph(d / HNSW_NAME, count, dim)  # the graph's own vectors (format 2's vectors.npy unread)
        stores = {key: TextStore.load(d / blob, load_array(d / offsets, np.int64, (count + 1,), mmap=mmap))
                  for key, (blob, offsets) in STORE_FILES.items()}
        kw = None
        if meta.get("keyword"):
            if not (d / "keyword.json").is_file():
                raise FileNotFoundError(f"{d / 'keyword.json'} is missing: {META_NAME} says this index has a "
                                        "keyword (BM25) part")
            kw = KeywordIndex.load(d, mmap=mmap)
            if len(kw) != count or kw.corpus_hash != meta["keyword"].get("corpus_hash"):
                raise IndexFileError(f"{d / 'keyword.json'}: the keyword part ({len(kw)} passages, corpus "
                                     f"{kw.corpus_hash[:12]}) belongs to another corpus than {META_NAME} "
                                     f"({count} passages, corpus {str(meta['keyword'].get('corpus_hash'))[:12]})")
        for key in ("files", "versions", "keyword"):
            meta.pop(key, None)
        return cls(hnsw, vectors, stores["ids"], stores["passages"], meta, keyword=kw, model=model)

    @classmethod
    def check(cls, directory, model=None, *, verify: bool = True, check_memory: bool = False) -> dict:
        """Every check `load` makes, without loading the graph -> index.json (e.g. before publishing an index
        too large for this machine's memory). See `load` for `verify` and `check_memory`."""
        d = files.saved_dir(Path(directory))
        meta = files.read_meta(d)
        count, dim, M = meta["count"], meta["dim"], meta["M"]
        if model is not None:
            _check_model(model, meta, d / META_NAME)
        if check_memory and isinstance(meta["files"].get(HNSW_NAME), dict):
            from .memory import check_fits

            check_fits(meta, d)  # before gigabytes are read and the kernel kills the process halfway
        files.verify_files(d, meta["files"], files.expected_files(meta), checksums=verify)
        if verify:
            files.check_hnsw_header(d / HNSW_NAME, count=count, dim=dim, M=M)
        else:  # no checksum vouches for the graph: check its links, or hnswlib may crash on them
            files.check_hnsw_graph(d / HNSW_NAME, count=count, dim=dim, M=M)
        return meta

    @classmethod
    def from_pretrained(cls, repo_id_or_dir: str, revision: str | None = None, subfolder: str = INDEX_SUBFOLDER,
                        model=None, *, verify: bool = True) -> "PassageIndex":
        """Load an index from a local directory or a Hub repo's `subfolder` (JSON/numpy/hnswlib files only).

        `model` may be a TwoTowers, a directory or Hub id to load one from (checked against the
        index's fingerprint), or None for vector-only and keyword search.
        """
        from ..download import local_or_download

        if isinstance(model, (str, os.PathLike)):
            from ..model import TwoTowers

            model = TwoTowers.from_pretrained(str(model), revision=revision)
        root = local_or_download(repo_id_or_dir, revision=revision, what="index",
                                 allow_patterns=[f"{subfolder}/*" if subfolder else "*"])
        return cls.load(find_index(root, subfolder) or root, model=model, verify=verify)


# -- helpers ---------------------------------------------------------------------------------------------
def new_graph(dim: int, *, M: int, ef_construction: int, capacity: int, seed: int = 0) -> hnswlib.Index:
    """An empty hnswlib graph of inner products (on unit vectors, distance = 1 - cosine) for `capacity` vectors."""
    hnsw = hnswlib.Index(space="ip", dim=dim)
    hnsw.init_index(max_elements=capacity, M=M, ef_construction=ef_construction, random_seed=seed + 100)
    return hnsw


def new_meta(model, M: int, ef_construction: int) -> dict:
    """index.json of an empty index `model` encodes (count, ef and the rest are filled in as it grows)."""
    return {"format": files.FORMAT, "format_version": files.FORMAT_VERSION, "space": "ip", "dim": int(model.dim),
            "M": M, "ef_construction": ef_construction, "ef": 10, "count": 0,
            "model": {"class": type(model).__name__, "fingerprint": model.fingerprint(),
                      "config": getattr(model, "_hub_mixin_config", None)}}


def save_graph(hnsw: hnswlib.Index, path: Path) -> None:
    """hnswlib's `save_index`, checked: its C++ stream ignores write errors (a full disk leaves a short
    file and no exception), so the size on disk must be the one hnswlib computes."""
    hnsw.save_index(str(path))
    want, got = hnsw.index_file_size(), path.stat().st_size if path.exists() else 0
    if got != want:
        raise OSError(f"hnswlib wrote {got:,} of its {want:,} bytes")


def _check_queries(queries) -> list[str]:
    queries = check_texts(queries, "search queries")
    for i, q in enumerate(queries):
        if is_blank(q):
            raise ValueError(f"query {i + 1} of {len(queries)} {BLANK}: give some words to search for")
    return queries


def split_pairs(chunk, start: int) -> tuple[list[str], list[str]]:
    ids, texts = [], []
    for j, pair in enumerate(chunk):
        try:
            pid, text = pair
        except (TypeError, ValueError):
            raise ValueError(f"passage {start + j}: expected an (id, text) pair, got {pair!r:.80}") from None
        if not isinstance(text, str):
            raise TypeError(f"passage {start + j} ({pid!r}): text is {type(text).__name__}, not str")
        if is_blank(text):
            raise ValueError(f"passage {start + j} ({pid!r}) {BLANK}: remove it or give it text")
        ids.append(str(pid))
        texts.append(text)
    return ids, texts


def _check_model(model, meta: dict, meta_path: Path) -> None:
    if int(model.dim) != int(meta["dim"]):
        raise IndexFileError(f"{meta_path}: the index holds {meta['dim']}-dim vectors but the given model "
                             f"encodes {model.dim}-dim ones: load it with the model that built it")
    got = model.fingerprint()
    if got != meta["model"]["fingerprint"]:
        raise IndexFileError(f"{meta_path}: the index was encoded by another model (fingerprint "
                             f"{meta['model']['fingerprint'][:12]}, config {meta['model'].get('config')}); the given "
                             f"model's fingerprint is {got[:12]}. Rebuild the index or load the model that built it")


def versions() -> dict:
    import bm25s

    from ..project import __version__

    return {"twotowers": __version__, "hnswlib": getattr(hnswlib, "__version__", "0.8.0"), "bm25s": bm25s.__version__}
