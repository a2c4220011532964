"""BM25 built on disk while a streaming build reads the collection: what `KeywordIndex.save` writes, in bounded memory.

    kw = KeywordWriter(directory, k1=0.9, b=0.4, stemmer="english")   # or resume=kw.state() of a checkpoint
    kw.add(texts); kw.sync(); state = kw.state()                      # each chunk; a checkpoint
    meta = kw.finish()                                                # keyword*.json + keyword_*.npy

Each chunk's (term, tf) pairs are appended to `keyword_pair_*.npy` and new terms to a build-only
vocabulary file, one JSON string a line, so memory holds only the vocabulary. `finish` computes the
BM25 weights and the term-major matrix out of core: document frequencies in one pass, then a
counting sort by term in blocks of passages, scattered into memory-mapped output files. The arrays
are the ones `KeywordIndex` computes in memory (a test compares them).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from .appending import NpyColumn
from .keyword import (VOCAB_NAME, Analyzer, analyze_chunk, array_file, idf_and_norm, keyword_meta, pair_weights,
                      write_meta)

VOCAB_BUILD_NAME = "keyword_vocab.build"  # build-only: the terms so far, one JSON string a line
_BLOCK_PAIRS = 1 << 22  # pairs weighed and scattered at once by `finish`


class KeywordWriter:
    """A keyword side being written into `directory`, chunk by chunk; `finish` makes it loadable."""

    def __init__(self, directory, *, k1: float, b: float, stemmer: str | None, resume: dict | None = None):
        d = self.directory = Path(directory)
        self.k1, self.b, self.stemmer = float(k1), float(b), stemmer
        self.analyzer = Analyzer(stemmer)
        r = resume or {}
        count, pairs = (r["count"], r["pairs"]) if resume else (None, None)
        self.doc_lengths = NpyColumn(d / array_file("doc_lengths"), np.int32, keep=count)
        self.doc_offsets = NpyColumn(d / array_file("doc_offsets"), np.int64, keep=None if resume is None else count + 1)
        self.pair_terms = NpyColumn(d / array_file("pair_terms"), np.int32, keep=pairs)
        self.pair_tf = NpyColumn(d / array_file("pair_tf"), np.int32, keep=pairs)
        if resume is None:
            self.doc_offsets.append(np.zeros(1, dtype=np.int64))
        self.corpus_hash = r.get("corpus_hash") or hashlib.sha256(b"twotowers-keyword").hexdigest()
        self.vocab: dict[str, int] = {}
        vocab_path = d / VOCAB_BUILD_NAME
        if resume is None:
            vocab_path.write_bytes(b"")
        else:
            os.truncate(vocab_path, r["vocab_bytes"])
            with open(vocab_path, encoding="utf-8") as f:
                for i, line in enumerate(f):
                    self.vocab[json.loads(line)] = i
            if len(self.vocab) != r["vocab_size"]:
                raise ValueError(f"{vocab_path} holds {len(self.vocab):,} terms, its checkpoint {r['vocab_size']:,}")
        self._vocab_file = open(vocab_path, "a", encoding="utf-8")
        self._vocab_bytes = r.get("vocab_bytes", 0)

    def __len__(self) -> int:
        return self.doc_lengths.length

    def add(self, texts: list[str]) -> None:
        """Tokenize a chunk of passages and append its pairs (and any new terms)."""
        before = len(self.vocab)
        self.corpus_hash, lengths, per_doc, terms, tf = analyze_chunk(texts, self.analyzer, self.vocab, self.corpus_hash)
        new = [w for w, _ in zip(reversed(self.vocab), range(len(self.vocab) - before))][::-1]  # in id order
        if new:
            text = "".join(json.dumps(w, ensure_ascii=False) + "\n" for w in new)
            self._vocab_file.write(text)
            self._vocab_bytes += len(text.encode("utf-8"))
        last = self.pair_terms.length
        self.doc_offsets.append(last + np.cumsum(per_doc))
        self.doc_lengths.append(lengths)
        self.pair_terms.append(terms)
        self.pair_tf.append(tf)

    def state(self) -> dict:
        """What a checkpoint records to resume from here (after `sync`)."""
        return {"count": len(self), "pairs": self.pair_terms.length, "vocab_size": len(self.vocab),
                "vocab_bytes": self._vocab_bytes, "corpus_hash": self.corpus_hash}

    def sync(self) -> None:
        self._vocab_file.flush()
        os.fsync(self._vocab_file.fileno())
        for col in (self.doc_lengths, self.doc_offsets, self.pair_terms, self.pair_tf):
            col.sync()

    def finish(self) -> dict:
        """Weigh every pair, write the term-major matrix, the vocabulary and keyword.json -> that meta."""
        self.sync()
        for col in (self.doc_lengths, self.doc_offsets):
            col.close()
        self._vocab_file.close()
        d, n, n_vocab, pairs = self.directory, len(self), len(self.vocab), self.pair_terms.length
        offsets = np.load(d / array_file("doc_offsets"))  # [n + 1], 8 bytes a passage
        terms, tf = self.pair_terms, self.pair_tf  # [pairs] each, read by ranges with plain reads (not a map)
        df = np.zeros(n_vocab, dtype=np.int64)
        for a in range(0, pairs, _BLOCK_PAIRS):
            df += np.bincount(terms.read(a, min(a + _BLOCK_PAIRS, pairs)), minlength=n_vocab)
        idf, norm = idf_and_norm(df, np.load(d / array_file("doc_lengths")), self.k1, self.b)
        indptr = np.concatenate([[0], np.cumsum(df)]).astype(np.int64)  # [V + 1]
        for name, dtype in (("csc_data", np.float32), ("csc_indices", np.int32)):
            out = np.lib.format.open_memmap(d / array_file(name), mode="w+", dtype=dtype, shape=(pairs,))
            del out  # the header and the file's length; each block maps it again
        fill = indptr[:-1].copy()  # [V] the next free slot of each term's run
        a = 0
        while a < n:  # blocks of whole passages, in order: inside each term, passages stay ascending
            b = max(a + 1, min(n, int(np.searchsorted(offsets, offsets[a] + _BLOCK_PAIRS, side="right")) - 1))
            p0, p1 = int(offsets[a]), int(offsets[b])
            t = terms.read(p0, p1)
            doc = np.repeat(np.arange(a, b, dtype=np.int32), np.diff(offsets[a : b + 1]))
            w = pair_weights(idf, norm, t, tf.read(p0, p1), doc)
            order = np.argsort(t, kind="stable")
            ts = t[order]
            pos = fill[ts] + (np.arange(len(ts)) - np.searchsorted(ts, ts, side="left"))  # slot + rank in its run
            # Scattered writes through a map opened for this block only: unmapping it takes the written pages
            # out of this process's resident memory (they stay in the page cache, dirty, until fsynced), so
            # weighing holds the pages one block writes, not every page written so far (4M passages: 228 MB
            # file-backed at its peak, against 1 GB of output; bench/full_index.py's phase table).
            data = np.load(d / array_file("csc_data"), mmap_mode="r+")
            data[pos] = w[order]
            del data
            rows = np.load(d / array_file("csc_indices"), mmap_mode="r+")
            rows[pos] = doc[order]
            del rows
            fill += np.bincount(t, minlength=n_vocab)
            a = b
        terms.close()
        tf.close()
        np.save(d / array_file("csc_indptr"), indptr, allow_pickle=False)
        with open(d / VOCAB_NAME, "w", encoding="utf-8") as out, open(d / VOCAB_BUILD_NAME, encoding="utf-8") as f:
            out.write("[")  # streamed: what json.dumps(terms, ensure_ascii=False) writes
            for i, line in enumerate(f):
                out.write((", " if i else "") + line.rstrip("\n"))
            out.write("]")
        meta = keyword_meta(self.k1, self.b, self.stemmer, count=n, vocab_size=n_vocab, pairs=pairs,
                            corpus_hash=self.corpus_hash)
        write_meta(d, meta)
        return meta
