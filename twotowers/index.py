"""`PassageIndex`: hnswlib over passage vectors + the passages themselves + BM25, saved whole, checked on load.

    index = PassageIndex.build(model, ids, texts)     # or PassageIndex.build(model, pairs) for a stream
    hits = index.search(["what is the rba"], k=10)[0]  # [SearchHit(id, text, score, ...), ...]
    hits = index.search(queries, k=10, mode="hybrid", alpha=0.5)   # dense + BM25, fused
    index.save("my-index"); index = PassageIndex.load("my-index", model)

A saved index is one directory, described by `index.json` (space, dim, M, ef_construction, the ef to
search with, count, the encoding model's fingerprint and config, the keyword part, each file's size):

    index.json         what it is (read first; written last)
    hnsw.bin           the hnswlib graph (inner product over unit vectors), labels = row positions
    vectors.npy        the same vectors, float32 [count, dim], memory-mapped: exact scores for hybrid
                       candidates and ef tuning (hnswlib's get_items is ~50 us a vector)
    ids.bin            passage ids, one UTF-8 blob ...  + ids_offsets.npy       int64 [count + 1]
    passages.bin       passage texts, one UTF-8 blob ... + passages_offsets.npy int64 [count + 1]
    keyword*.json/npy  the BM25 side (twotowers.keyword), when built with keyword=True

Texts and ids are memory-mapped, so 8.8M passages need no more RAM than the graph; a hit reads its
text when `hit.text` is first used, so a search costs hnswlib's call plus reading k ids (bench/index.py
times both). `load` checks that every file is there with its recorded size, that hnsw.bin's header
agrees with count/dim/M, that the keyword part covers the same corpus, and (given a model) that it is
the model which built the index.

Search is safe from several threads at once (hnswlib reads are thread-safe; nothing shared is
mutated); `add` is not, so do not call it while searching.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import struct
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import hnswlib
import numpy as np

from .keyword import KeywordIndex, load_array
from .store import TextStore, VectorStore

FORMAT = "twotowers-passage-index"
FORMAT_VERSION = 1
META_NAME = "index.json"
HNSW_NAME = "hnsw.bin"
VECTORS_NAME = "vectors.npy"
STORE_FILES = {"ids": ("ids.bin", "ids_offsets.npy"), "passages": ("passages.bin", "passages_offsets.npy")}
EF_CANDIDATES = (10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)
MODES = ("dense", "keyword", "hybrid")
FUSIONS = ("score", "rrf")
_FLOAT32 = np.dtype(np.float32)  # dtypes of builtin types are singletons: `is` compares
RRF_K = 60  # reciprocal rank fusion constant (Cormack et al. 2009)


class SearchHit:
    """One result: the passage id, its text, the score it was ranked by, and each side's score where known.

    `score` is the cosine similarity (dense), the BM25 score (keyword) or the fused score (hybrid).
    `text` is read from the index's store when first used, so a search that needs only ids and
    scores (evaluation, re-ranking elsewhere) never touches the passage texts.
    """

    __slots__ = ("id", "score", "dense_score", "keyword_score", "_text", "_store", "_row")
    FIELDS = ("id", "text", "score", "dense_score", "keyword_score")

    def __init__(self, id: str, text: str | None, score: float, dense_score: float | None = None,
                 keyword_score: float | None = None, _store=None, _row: int = -1):
        self.id, self._text, self.score = id, text, score
        self.dense_score, self.keyword_score = dense_score, keyword_score
        self._store, self._row = _store, _row  # where `text` lives when not given

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = self._store.get_unchecked([self._row])[0]
            self._store = None
        return self._text

    def to_dict(self) -> dict:
        """The five fields as a dict (the text read if not yet)."""
        return {f: getattr(self, f) for f in self.FIELDS}

    def __eq__(self, other) -> bool:
        if not isinstance(other, SearchHit):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in self.FIELDS)

    __hash__ = None  # mutable, like the dataclass it replaces

    def __repr__(self) -> str:
        return "SearchHit(" + ", ".join(f"{f}={getattr(self, f)!r}" for f in self.FIELDS) + ")"


class PassageIndex:
    """Passages searchable by dense vectors (hnswlib), by BM25 keywords, or by both fused."""

    def __init__(self, hnsw: hnswlib.Index, vectors: VectorStore, ids: TextStore, passages: TextStore, meta: dict,
                 keyword: KeywordIndex | None = None, model=None):
        self.hnsw, self.ids, self.passages, self.keyword = hnsw, ids, passages, keyword
        self._vectors = vectors
        self._meta = meta
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
        """What index.json holds (sizes of files are added by `save`)."""
        m = dict(self._meta)
        m["count"] = len(self)
        if self.keyword is not None:
            m["keyword"] = {**self.keyword.meta, "present": True}
        else:
            m["keyword"] = None
        return m

    def __repr__(self) -> str:
        return (f"PassageIndex({len(self)} passages, dim={self.dim}, M={self._meta['M']}, ef={self.ef}, "
                f"keyword={self.keyword is not None})")

    # -- building ------------------------------------------------------------------------------------
    @classmethod
    def build(cls, model, ids, texts: Sequence[str] | None = None, *, M: int = 32, ef_construction: int = 200,
              target_recall: float = 0.99, chunk_size: int = 10_000, keyword: bool = True,
              show_progress: bool = False, tune_queries: Sequence[str] | np.ndarray | None = None,
              tune_samples: int = 200, tune_k: int = 10, batch_size: int = 64, stemmer: str | None = "english",
              k1: float = 0.9, b: float = 0.4, seed: int = 0, vectors: np.ndarray | None = None) -> "PassageIndex":
        """Encode passages with `model` in chunks and index them (dense and, by default, BM25).

        `ids, texts` are two sequences, or `ids` alone is an iterable of `(id, text)` pairs (read as a
        stream: memory is bounded by `chunk_size`, not the corpus). `ef` is then set to the smallest
        value whose recall@`tune_k` against exact search reaches `target_recall` on `tune_samples`
        queries: `tune_queries` (texts or query vectors) when given, else held-out passages' own
        vectors, each excluding itself from both result lists.
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
        bar = None
        if show_progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, desc="indexing passages", unit="passage", smoothing=0.05)
        t0 = time.perf_counter()
        while True:
            chunk = list(itertools.islice(pairs, chunk_size))
            if not chunk:
                break
            chunk_ids, chunk_texts = _split_pairs(chunk, start=len(index))
            given = None if vectors is None else vectors[len(index) : len(index) + len(chunk)]
            index._append(chunk_ids, chunk_texts, batch_size=batch_size, rescore=False, vectors=given)
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()
        if index.keyword is not None:
            index.keyword._rescore()
        index._meta["build_seconds"] = round(time.perf_counter() - t0, 2)
        index.tune_ef(target_recall, queries=tune_queries, samples=tune_samples, k=tune_k, seed=seed)
        return index

    @classmethod
    def _empty(cls, model, *, M: int, ef_construction: int, capacity: int, keyword: KeywordIndex | None,
               seed: int = 0) -> "PassageIndex":
        dim = int(model.dim)
        hnsw = hnswlib.Index(space="ip", dim=dim)  # distance = 1 - dot: on unit vectors, 1 - cosine
        hnsw.init_index(max_elements=capacity, M=M, ef_construction=ef_construction, random_seed=seed + 100)
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "space": "ip", "dim": dim, "M": M,
                "ef_construction": ef_construction, "ef": 10, "count": 0,
                "model": {"class": type(model).__name__, "fingerprint": model.fingerprint(),
                          "config": getattr(model, "_hub_mixin_config", None)}}
        return cls(hnsw, VectorStore(dim), TextStore(), TextStore(), meta, keyword=keyword, model=model)

    def add(self, ids: Sequence[str], texts: Sequence[str], *, batch_size: int = 64) -> None:
        """Encode and append passages (dense and keyword sides); ef stays as chosen. Not thread-safe."""
        self._require_model("add")
        ids, texts = _check_strings(ids, "ids"), _check_strings(texts, "texts")
        if len(ids) != len(texts):
            raise ValueError(f"{len(ids)} ids but {len(texts)} texts")
        if texts:
            self._append(ids, texts, batch_size=batch_size, rescore=True)

    def _append(self, ids: list[str], texts: list[str], *, batch_size: int, rescore: bool,
                vectors: np.ndarray | None = None) -> None:
        if vectors is None:
            vectors = self.model.encode_passages(texts, batch_size=batch_size)  # [n, dim] unit vectors
        elif vectors.shape != (len(texts), self.dim):
            raise ValueError(f"vectors for passages {len(self)}..{len(self) + len(texts) - 1} have shape "
                             f"{vectors.shape}, expected ({len(texts)}, {self.dim})")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        start = len(self)
        need = start + len(texts)
        if need > self.hnsw.get_max_elements():
            self.hnsw.resize_index(max(need, 2 * self.hnsw.get_max_elements()))
        self.hnsw.add_items(vectors, np.arange(start, need, dtype=np.int64))
        self._vectors.extend(vectors)
        self.ids.extend(ids)
        self.passages.extend(texts)
        if self.keyword is not None:
            (self.keyword.add if rescore else self.keyword._append)(texts)

    def tune_ef(self, target_recall: float = 0.99, *, queries=None, samples: int = 200, k: int = 10,
                seed: int = 0) -> dict:
        """Set `ef` to the smallest candidate reaching recall@k >= target against exact search; returns the record.

        Queries: `queries` (texts or query vectors) when given; else query-like pseudo-queries, i.e. the
        query tower's vectors of 1-6-word windows cut from sampled passages; else, without a model,
        sampled passage vectors, each excluding itself from both result lists. Why windows: passage
        vectors sit on the graph and overstate recall (untrained mean tower, dev600 collection, M=32:
        recall@10 0.99 at ef=32 for passages, but ef=384 for the real dev600 queries); 1-6-word windows
        are a little harder than those queries (ef=512), 3-12-word ones a little easier.
        """
        n = len(self)
        if n == 0:
            return {}
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(n, size=min(samples, n), replace=False))
        exclude_self = False
        if queries is not None:
            q = queries if isinstance(queries, np.ndarray) else self._require_model("tune_ef").encode_queries(list(queries))
            q, source = q[:samples], "given queries"
        elif self.model is not None:
            windows = []
            for text in self.passages.get(rows):
                words = text.split() or [""]
                size = int(rng.integers(1, 7))
                start = int(rng.integers(0, max(len(words) - size, 0) + 1))
                windows.append(" ".join(words[start : start + size]))
            q, source = self.model.encode_queries(windows), "query-tower vectors of 1-6-word windows of sampled passages"
        else:
            q, source, exclude_self = self.vectors(rows), "sampled passage vectors (self excluded)", True
        q = np.ascontiguousarray(q, dtype=np.float32)
        kk = min(k, n - 1 if exclude_self else n)
        if kk < 1:
            return {}
        extra = 1 if exclude_self else 0
        exact = self._exact_top(q, kk + extra)
        if exclude_self:
            exact = _drop_self(exact, rows, kk)

        def recall_at(ef: int) -> float:
            self.hnsw.set_ef(ef)
            labels, _ = self.hnsw.knn_query(q, k=kk + extra)
            approx = _drop_self(labels.astype(np.int64), rows, kk) if exclude_self else labels
            return float(np.mean([len(set(a) & set(e)) / kk for a, e in zip(approx, exact)]))

        # A sample of n queries estimates recall with a standard error of ~sqrt(t(1-t)/(n k)) (0.0022 for
        # t=0.99, 200 queries, k=10): ask for one standard error more, so that the ef chosen reaches the
        # target on queries it was not tuned on (without it, 0.9897 on dev600's real queries was seen).
        margin = float(np.sqrt(target_recall * (1 - target_recall) / (len(q) * kk)))
        need = min(target_recall + margin, 1.0)
        chosen, recall, below = None, 0.0, None  # below: the largest ef seen to miss `need`
        for ef in (e for e in EF_CANDIDATES if e >= kk + extra):
            chosen, recall = ef, recall_at(ef)
            if recall >= need:
                break
            below = ef
        # The grid steps by 1.33-1.5x and search time grows with ef: bisect between the last miss and
        # the first hit, to within 1/16 of ef (recall rises with ef, near enough to monotone).
        while recall >= need and below is not None and chosen - below > max(2, below // 16):
            mid = (below + chosen) // 2
            r = recall_at(mid)
            if r >= need:
                chosen, recall = mid, r
            else:
                below = mid
        self.hnsw.set_ef(chosen)
        self._meta["ef"] = chosen
        record = {"target_recall": target_recall, "k": kk, "queries": len(q), "source": source,
                  "margin": round(margin, 4), "recall": round(recall, 4), "reached": recall >= target_recall,
                  "ef_missed": below}  # the largest ef tried that missed target + margin (None: none did)
        self._meta["ef_tuning"] = record
        return record

    def vectors(self, rows) -> np.ndarray:
        """The stored passage vectors at `rows` -> `[len(rows), dim]` float32."""
        return self._vectors[np.asarray(rows, dtype=np.int64)]

    def _exact_top(self, q: np.ndarray, k: int, block: int = 100_000) -> np.ndarray:
        """Exact top-k rows by inner product, scanning the stored vectors in blocks -> `[nq, k]`."""
        best_s = np.full((len(q), 0), -np.inf, dtype=np.float32)
        best_r = np.zeros((len(q), 0), dtype=np.int64)
        for start in range(0, len(self), block):
            s = q @ self._vectors[start : start + block].T  # [nq, block]
            kk = min(k, s.shape[1])
            part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
            s_all = np.concatenate([best_s, np.take_along_axis(s, part, 1)], axis=1)
            r_all = np.concatenate([best_r, part + start], axis=1)
            top = np.argsort(-s_all, axis=1, kind="stable")[:, :k]
            best_s, best_r = np.take_along_axis(s_all, top, 1), np.take_along_axis(r_all, top, 1)
        return best_r

    # -- search --------------------------------------------------------------------------------------
    def search(self, queries: Sequence[str] | np.ndarray, k: int = 10, *, mode: str = "dense",
               alpha: float = 0.5, fusion: str = "score", depth: int | None = None) -> list[list[SearchHit]]:
        """Top-k passages per query, best first.

        mode: "dense" (the towers; queries may be texts or `[n, dim]` query vectors), "keyword" (BM25)
              or "hybrid" (both; texts only).
        alpha: hybrid weight of the dense side (1 = dense only, 0 = keyword only).
        fusion: "score" (each side's scores min-max normalised over the candidates, then weighted) or
              "rrf" (weighted reciprocal rank fusion, constant 60).
        depth: hybrid candidates = the union of each side's top-`depth` (default max(k, 100)); every
              candidate gets its exact dense and BM25 scores before fusing.
        """
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        if mode == "dense":  # the hot path: a few list operations per query, no numpy beyond hnswlib's call
            q = self._query_vectors(queries)
            kk = min(k, len(self.ids))
            if not kk or not len(q):
                return [[] for _ in range(len(q))]
            labels, dist = self.hnsw.knn_query(q, k=kk, num_threads=1 if len(q) == 1 else -1)
            return [self._dense_hits(rows, d) for rows, d in zip(labels.tolist(), dist.tolist())]
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if isinstance(queries, np.ndarray) or self.keyword is None:
            raise ValueError(f"mode={mode!r} needs text queries and an index built with keyword=True"
                             + ("" if self.keyword is not None else " (this index has no keyword part)"))
        queries = _check_strings(queries, "search queries")
        if mode == "keyword":
            rows, scores = self.keyword.search(queries, k)
            return [self._hits(r, s, keyword=s) for r, s in zip(rows, scores)]
        q = self._query_vectors(queries)
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        if not 0 <= alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        depth = max(k, depth or 100)
        d_rows, d_sims = self._dense(q, depth)
        kw, out = self.keyword, []
        for qi, text in enumerate(queries):
            n_dense = int(np.count_nonzero(d_rows[qi] >= 0))
            rows, dense = d_rows[qi, :n_dense], d_sims[qi, :n_dense]
            terms = kw._term_ids(text)
            if terms:
                bm25 = kw.scores(terms)                                   # [N] BM25 of every passage
                k_rows, _ = kw.top(bm25, depth)
                extra = np.setdiff1d(k_rows, rows, assume_unique=True)    # keyword-only candidates
                rows = np.concatenate([rows, extra])
                dense = np.concatenate([dense, self._vectors[extra] @ q[qi]])  # their exact cosines
                keyword = bm25[rows]                                      # exact BM25 (0 = no shared term)
            else:
                keyword = np.zeros(len(rows), dtype=np.float32)
            fused = _fuse(dense, keyword, alpha, fusion)
            top = np.lexsort((rows, -fused))[:k]
            out.append(self._hits(rows[top], fused[top], dense=dense[top], keyword=keyword[top]))
        return out

    def _query_vectors(self, queries) -> np.ndarray:
        """`[n, dim]` float32 query vectors: given, or the model's encoding of texts."""
        if isinstance(queries, np.ndarray):
            if queries.ndim != 2 or queries.shape[1] != self._vectors.dim:
                raise ValueError(f"query vectors must be [n, {self.dim}], got shape {queries.shape}")
            return queries if queries.dtype is _FLOAT32 else queries.astype(np.float32)
        return self._require_model("text search").encode_queries(_check_strings(queries, "search queries"))

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

    def _dense_hits(self, rows: list[int], dist: list[float]) -> list[SearchHit]:
        """SearchHits for one query's hnswlib labels (rows) and distances, as Python lists."""
        sims = [1.0 - d for d in dist]  # hnswlib "ip" distance is 1 - dot
        return self._make_hits(rows, sims, sims, [None] * len(rows))

    def _hits(self, rows: np.ndarray, scores: np.ndarray, dense=None, keyword=None) -> list[SearchHit]:
        """SearchHits for one query's `[k]` rows (-1 pads at the end) and scores, as numpy arrays."""
        rows = rows.tolist()  # Python ints
        n = len(rows)
        while n and rows[n - 1] < 0:
            n -= 1
        del rows[n:]
        py = scores[:n].tolist()  # Python floats
        none = [None] * n
        dense_py = none if dense is None else py if dense is scores else dense[:n].tolist()
        keyword_py = none if keyword is None else py if keyword is scores else keyword[:n].tolist()
        return self._make_hits(rows, py, dense_py, keyword_py)

    def _make_hits(self, rows: list[int], scores: list, dense: list, keyword: list) -> list[SearchHit]:
        """SearchHits from Python lists; rows are in range. Texts are read on first use of hit.text."""
        n = len(rows)
        return list(map(SearchHit, self.ids.get_unchecked(rows), [None] * n, scores, dense, keyword,
                        itertools.repeat(self.passages, n), rows))

    def _require_model(self, what: str):
        if self.model is None:
            raise ValueError(f"{what} needs the model that encoded the index: "
                             "PassageIndex.load(directory, model=TwoTowers.from_pretrained(...)), "
                             "or search with query vectors")
        return self.model

    # -- persistence ---------------------------------------------------------------------------------
    def save(self, directory) -> None:
        """Write the whole index into `directory` (files replaced atomically; index.json last)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-save-", dir=d))
        try:
            self.hnsw.save_index(str(tmp / HNSW_NAME))
            self._vectors.save(tmp / VECTORS_NAME)
            self.ids.save(tmp / STORE_FILES["ids"][0], tmp / STORE_FILES["ids"][1])
            self.passages.save(tmp / STORE_FILES["passages"][0], tmp / STORE_FILES["passages"][1])
            if self.keyword is not None:
                self.keyword.save(tmp)
            meta = self.meta
            meta["files"] = {p.name: p.stat().st_size for p in sorted(tmp.iterdir())}
            meta["versions"] = _versions()
            # Replace file by file: a reader that mapped the old files keeps its inodes intact.
            if (d / META_NAME).exists():
                (d / META_NAME).unlink()
            for p in tmp.iterdir():
                os.replace(p, d / p.name)
            for stale in _stale_keyword_files(d, keep=self.keyword is not None):
                stale.unlink()
            (d / META_NAME).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @classmethod
    def load(cls, directory, model=None, *, mmap: bool = True) -> "PassageIndex":
        """Read a saved index, checking every part; `model`, if given, must be the one that built it."""
        d = Path(directory)
        meta_path = d / META_NAME
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path} not found: {d} is not a saved PassageIndex")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{meta_path} is not valid JSON (truncated or corrupt?): {e}") from e
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError(f"{meta_path} does not describe a twotowers passage index")
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{meta_path}: format_version {meta.get('format_version')!r} is not supported "
                             f"(this twotowers reads {FORMAT_VERSION})")
        try:
            count, dim, space, M = int(meta["count"]), int(meta["dim"]), meta["space"], int(meta["M"])
            files, fingerprint = meta["files"], meta["model"]["fingerprint"]
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{meta_path} lacks or garbles a required field: {e!r}") from e
        if model is not None:
            _check_model(model, meta, meta_path)
        # 1. every recorded file present, with its recorded size (catches truncation and swaps)
        for name, size in files.items():
            p = d / name
            if not p.is_file():
                what = "the keyword (BM25) part" if name.startswith("keyword") else "a part of the index"
                raise FileNotFoundError(f"{p} is missing: {what} listed in {META_NAME} is not there")
            if p.stat().st_size != size:
                raise ValueError(f"{p} is {p.stat().st_size} bytes but {META_NAME} records {size}: "
                                 "truncated, corrupt or from another index")
        # 2. the graph: header agrees with index.json, then hnswlib reads it
        hnsw_path = d / HNSW_NAME
        _check_hnsw_header(hnsw_path, count=count, dim=dim, M=M)
        hnsw = hnswlib.Index(space=space, dim=dim)
        try:
            hnsw.load_index(str(hnsw_path), max_elements=max(count, 1))
        except Exception as e:
            raise ValueError(f"{hnsw_path} could not be read by hnswlib: {e}") from e
        hnsw.set_ef(int(meta["ef"]))  # hnswlib does not save ef
        vectors = VectorStore.load(load_array(d / VECTORS_NAME, np.float32, (count, dim), mmap=mmap))
        # 3. ids and texts
        stores = {}
        for key, (blob, offsets) in STORE_FILES.items():
            off = load_array(d / offsets, np.int64, (count + 1,), mmap=mmap)
            stores[key] = TextStore.load(d / blob, off)
        # 4. the keyword side covers the same corpus
        kw = None
        if meta.get("keyword"):
            if not (d / "keyword.json").is_file():
                raise FileNotFoundError(f"{d / 'keyword.json'} is missing: {META_NAME} says this index has a "
                                        "keyword (BM25) part")
            kw = KeywordIndex.load(d, mmap=mmap)
            if len(kw) != count or kw.corpus_hash != meta["keyword"].get("corpus_hash"):
                raise ValueError(f"{d / 'keyword.json'}: the keyword part ({len(kw)} passages, corpus "
                                 f"{kw.corpus_hash[:12]}) belongs to another corpus than {META_NAME} "
                                 f"({count} passages, corpus {str(meta['keyword'].get('corpus_hash'))[:12]})")
        meta.pop("files", None)
        meta.pop("versions", None)
        meta.pop("keyword", None)
        return cls(hnsw, vectors, stores["ids"], stores["passages"], meta, keyword=kw, model=model)

    @classmethod
    def from_pretrained(cls, repo_id_or_dir: str, revision: str | None = None, subfolder: str = "index",
                        model=None) -> "PassageIndex":
        """Load an index from a local directory or a Hub repo's `subfolder` (safetensors/JSON/numpy only).

        `model` may be a TwoTowers, a directory or Hub id to load one from (checked against the
        index's fingerprint), or None for vector-only search.
        """
        if isinstance(model, (str, os.PathLike)):
            from .model import TwoTowers

            model = TwoTowers.from_pretrained(str(model), revision=revision)
        if os.path.isdir(repo_id_or_dir):
            root = Path(repo_id_or_dir)
        else:
            from huggingface_hub import snapshot_download

            pattern = f"{subfolder}/*" if subfolder else "*"
            try:
                root = Path(snapshot_download(repo_id_or_dir, revision=revision, allow_patterns=[pattern]))
            except Exception as e:
                raise OSError(f"could not download index {repo_id_or_dir!r}: {type(e).__name__}: {e}") from e
        d = root / subfolder if subfolder and (root / subfolder / META_NAME).is_file() else root
        return cls.load(d, model=model)


# -- helpers ---------------------------------------------------------------------------------------------
def _fuse(dense: np.ndarray, kw: np.ndarray, alpha: float, fusion: str) -> np.ndarray:
    """Fused scores of one query's candidates from their dense and keyword scores."""
    if fusion == "rrf":
        # ranks among the candidates, 1 = best; passages without a shared term get no keyword credit
        rd = np.empty(len(dense)); rd[np.argsort(-dense, kind="stable")] = np.arange(1, len(dense) + 1)
        rk = np.empty(len(kw)); rk[np.argsort(-kw, kind="stable")] = np.arange(1, len(kw) + 1)
        return alpha / (RRF_K + rd) + (1 - alpha) * np.where(kw > 0, 1.0 / (RRF_K + rk), 0.0)
    return alpha * _minmax(dense) + (1 - alpha) * _minmax(kw)


def _minmax(x: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] over the candidates (all zeros when they tie)."""
    lo, hi = (float(x.min()), float(x.max())) if len(x) else (0.0, 0.0)
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x, dtype=np.float64)


def _drop_self(labels: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Remove each query's own row from its result list, keeping the first k of the rest."""
    out = np.empty((len(labels), k), dtype=np.int64)
    for i, (lab, r) in enumerate(zip(labels, rows)):
        out[i] = lab[lab != r][:k]
    return out


def _split_pairs(chunk, start: int) -> tuple[list[str], list[str]]:
    ids, texts = [], []
    for j, pair in enumerate(chunk):
        try:
            pid, text = pair
        except (TypeError, ValueError):
            raise ValueError(f"passage {start + j}: expected an (id, text) pair, got {pair!r:.80}") from None
        if not isinstance(text, str):
            raise TypeError(f"passage {start + j} ({pid!r}): text is {type(text).__name__}, not str")
        ids.append(str(pid))
        texts.append(text)
    return ids, texts


def _check_strings(xs, what: str) -> list[str]:
    if isinstance(xs, (str, bytes)) or not isinstance(xs, (Sequence, np.ndarray)):
        raise TypeError(f"{what} must be a list of strings, got {type(xs).__name__}")
    xs = list(xs)
    for i, x in enumerate(xs):
        if not isinstance(x, str):
            raise TypeError(f"{what}: item {i} is {type(x).__name__}, not str")
    return xs


def _check_model(model, meta: dict, meta_path: Path) -> None:
    if int(model.dim) != int(meta["dim"]):
        raise ValueError(f"{meta_path}: the index holds {meta['dim']}-dim vectors but the given model "
                         f"encodes {model.dim}-dim ones: load it with the model that built it")
    got = model.fingerprint()
    if got != meta["model"]["fingerprint"]:
        raise ValueError(f"{meta_path}: the index was encoded by another model (fingerprint "
                         f"{meta['model']['fingerprint'][:12]}, config {meta['model'].get('config')}); the given "
                         f"model's fingerprint is {got[:12]}. Rebuild the index or load the model that built it")


_HNSW_HEADER = struct.Struct("<6QiI3QdQ")  # hnswalg.h saveIndex: offsetLevel0 .. ef_construction


def _check_hnsw_header(path: Path, *, count: int, dim: int, M: int) -> None:
    with open(path, "rb") as f:
        head = f.read(_HNSW_HEADER.size)
    if len(head) < _HNSW_HEADER.size:
        raise ValueError(f"{path} is truncated: {len(head)} bytes, shorter than an hnswlib header")
    (_, _, cur, _, label_offset, offset_data, _, _, _, _, m, _, _) = _HNSW_HEADER.unpack(head)
    if cur != count:
        raise ValueError(f"{path} holds {cur} vectors but {META_NAME} says {count}: the parts disagree")
    if label_offset - offset_data != 4 * dim:
        raise ValueError(f"{path} holds {(label_offset - offset_data) // 4}-dim vectors but {META_NAME} says "
                         f"dim={dim}: the parts disagree")
    if m != M:
        raise ValueError(f"{path} was built with M={m} but {META_NAME} says M={M}: the parts disagree")


def _stale_keyword_files(d: Path, keep: bool):
    return [] if keep else [p for p in d.glob("keyword*") if p.is_file()]


def _versions() -> dict:
    import bm25s

    from . import __version__

    return {"twotowers": __version__, "hnswlib": getattr(hnswlib, "__version__", "0.8.0"), "bm25s": bm25s.__version__}


if __name__ == "__main__":
    from .index_cli import main

    main()
