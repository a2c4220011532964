"""The passage index: `PassageIndex` = hnswlib over passage vectors + the passages + a BM25 side.

    index = PassageIndex.build(model, ids, texts)     # or PassageIndex.build(model, pairs) for a stream
    hits = index.search(["what is the rba"], k=10)[0]  # [SearchHit(id, text, score, ...), ...]
    hits = index.search(queries, k=10, mode="hybrid", alpha=0.5)   # dense + BM25, fused
    index.save("my-index"); index = PassageIndex.load("my-index", model)

A saved index is one directory, described by `index.json` (space, dim, M, ef_construction, the ef to
search with, count, the encoding model's fingerprint and config, the keyword part, and every file's
size and xxh3-128 checksum, verified on load):

    index.json         what it is (read first); format 3
    hnsw.bin           the hnswlib graph (inner product over unit vectors), labels = row positions; the
                       only copy of the vectors: exact scores for hybrid candidates and ef tuning read
                       them from its records, memory-mapped (hnswlib's get_items is ~50 us a vector)
    ids.bin            passage ids, one UTF-8 blob ...  + ids_offsets.npy       int64 [count + 1]
    passages.bin       passage texts, one UTF-8 blob ... + passages_offsets.npy int64 [count + 1]
    keyword*.json/npy  the BM25 side, when built with keyword=True

One job a module: `passage_index` (build, add, search, save, load), `store` (texts on disk, vectors
read from the graph), `keyword` (BM25), `fusion` (hybrid scoring: add a fusion method there),
`tuning` (choosing ef), `hits` (results), `files` (the format and its checks), `memory` (will it fit).
`python -m twotowers.index build|search` is the command line (`__main__`); its build streams a
collection of any size into the directory, resumably, on several torchrun ranks if asked: `build`,
`appending`, `keyword_writer`, `distributed`, `progress`.

Search is safe from several threads at once (hnswlib reads are thread-safe; nothing shared is
mutated); `add` is not, so do not call it while searching.
"""

from .fusion import DEFAULT_ALPHA, DEFAULT_FUSION, FUSIONS, MODES

__all__ = ["DEFAULT_ALPHA", "DEFAULT_FUSION", "FUSIONS", "KeywordIndex", "MODES", "PassageIndex", "SearchHit"]


def __getattr__(name):  # hnswlib and bm25s load when the index is first asked for, not with its constants
    if name == "PassageIndex":
        from .passage_index import PassageIndex

        return PassageIndex
    if name == "KeywordIndex":
        from .keyword import KeywordIndex

        return KeywordIndex
    if name == "SearchHit":
        from .hits import SearchHit

        return SearchHit
    raise AttributeError(f"module 'twotowers.index' has no attribute {name!r}")
