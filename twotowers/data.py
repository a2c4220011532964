"""MS MARCO in its common forms -> training examples and evaluation sets; a collator pads batches.

Training examples (`Example(query, positive, negatives)`, plain strings) come from:
- HF `microsoft/ms_marco` v1.1 rows (the Hub via `load_hub_rows`, or local JSONL / parquet in the
  same schema): one example per selected passage; the row's unselected passages are its hard
  negatives, never positives. Rows with no selected passage are skipped and counted.
- the same rows with `passages` as a list of `{"text", "is_selected"}` objects;
- `{"query", "pos": [...], "neg": [...]}` JSONL (FlagEmbedding style);
- `query<TAB>positive<TAB>negative[<TAB>negative ...]` triples (`.tsv`), e.g. from a negative miner.
A malformed row (missing field, empty passage list, wrong type) is skipped and counted in
`LoadStats`; a file that does not parse raises `DataFormatError` naming the file and line.

Unlabelled text (distillation): queries and passages from any of these files (`read_unlabelled`), and
query-like word windows of passages (`word_windows`).

Evaluation sets from v1.1 rows: re-rank lists (`load_rerank_queries`) and their pooled corpus
(`pooled_corpus`); TREC files (collection, queries, qrels) are read by `twotowers.collection`.

Token ids are computed once per unique text (`TokenizedExamples`); `Collator` pads each batch.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .checks import is_blank
from .optional import import_optional
from .textfiles import DataFormatError, iter_records, text_lines
from .tokenizer import pad_ids


@dataclass(frozen=True)
class Example:
    """One training example: a query, a relevant passage and (maybe) hard negatives."""

    query: str
    positive: str
    negatives: tuple[str, ...] = ()


@dataclass
class LoadStats:
    """What a load kept and skipped, for the log."""

    rows: int = 0
    examples: int = 0
    no_selected: int = 0
    malformed: Counter = field(default_factory=Counter)  # reason -> count

    def summary(self) -> str:
        bad = sum(self.malformed.values())
        reasons = ", ".join(f"{r}: {c}" for r, c in self.malformed.most_common())
        return (f"{self.rows} rows -> {self.examples} examples; skipped {self.no_selected} rows with no selected "
                f"passage and {bad} malformed rows" + (f" ({reasons})" if bad else ""))


@dataclass(frozen=True)
class RerankQuery:
    """A query with its own candidate passages and 0/1 labels (a v1.1 row, for re-ranking)."""

    query: str
    candidates: tuple[str, ...]
    labels: tuple[int, ...]
    query_id: str = ""


class _Malformed(Exception):
    pass


def _text(value, what: str) -> str:
    if not isinstance(value, str):
        raise _Malformed(f"{what} not a string")
    return value


def _words(value, what: str) -> str:
    """A text that must say something: not blank (no letters or digits: `twotowers.checks.is_blank`)."""
    if is_blank(_text(value, what)):
        raise _Malformed(f"{what} with no letters or digits")
    return value


def _candidates(row: dict) -> tuple[list[str], list[int]]:
    """(passage texts, 0/1 labels) of a v1.1 row in either passages layout."""
    if "passages" not in row:
        raise _Malformed("missing passages")
    passages = row["passages"]
    if isinstance(passages, dict):  # HF layout: {"is_selected": [...], "passage_text": [...], ...}
        texts, labels = passages.get("passage_text"), passages.get("is_selected")
        if texts is None or labels is None:
            raise _Malformed("missing passage_text/is_selected")
        if not isinstance(texts, list) or not isinstance(labels, list) or len(texts) != len(labels):
            raise _Malformed("passage_text/is_selected not lists of one length")
    elif isinstance(passages, list):  # [{"text", "is_selected"}, ...]
        if not all(isinstance(p, dict) for p in passages):
            raise _Malformed("passage not an object")
        texts = [p.get("text", p.get("passage_text")) for p in passages]
        labels = [p.get("is_selected") for p in passages]
    else:
        raise _Malformed("passages wrong type")
    if not texts:
        raise _Malformed("empty passage list")
    for t, s in zip(texts, labels):
        _text(t, "passage text")
        if isinstance(s, bool) or not isinstance(s, int):
            raise _Malformed("is_selected not an int")
    return texts, [int(s > 0) for s in labels]


def row_to_examples(row, stats: LoadStats) -> list[Example]:
    """Examples of one JSON row (v1.1 or query/pos/neg); a bad row is counted in `stats` and gives []."""
    stats.rows += 1
    try:
        if not isinstance(row, dict):
            raise _Malformed("row not an object")
        if "query" not in row:
            raise _Malformed("missing query")
        query = _words(row["query"], "query")
        if "pos" in row:  # {"query", "pos": [...], "neg": [...]}
            pos, neg = row["pos"], row.get("neg", [])
            if not isinstance(pos, list) or not isinstance(neg, list):
                raise _Malformed("pos/neg not lists")
            if not pos:
                raise _Malformed("empty passage list")
            pos = [_text(p, "pos") for p in pos]
            neg = tuple(_text(p, "neg") for p in neg)
        else:
            texts, labels = _candidates(row)
            pos = [t for t, s in zip(texts, labels) if s]
            neg = tuple(t for t, s in zip(texts, labels) if not s)
            if not pos:
                stats.no_selected += 1
                return []
        # Blank passages (no letters or digits) teach nothing: dropped; a row left with no positive is malformed.
        pos, neg = [p for p in pos if not is_blank(p)], tuple(n for n in neg if not is_blank(n))
        if not pos:
            raise _Malformed("positive passage with no letters or digits")
    except _Malformed as e:
        stats.malformed[str(e)] += 1
        return []
    out = [Example(query, p, neg) for p in pos]
    stats.examples += len(out)
    return out


def read_triples(path: str | Path, stats: LoadStats) -> list[Example]:
    """`query<TAB>positive<TAB>negative...` lines -> examples (short lines are counted malformed)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    out = []
    for _, line in text_lines(path):
        if not line:
            continue
        stats.rows += 1
        cols = line.split("\t")
        if len(cols) < 2 or not cols[0] or not cols[1]:
            stats.malformed["triple with fewer than 2 fields"] += 1
            continue
        if is_blank(cols[0]) or is_blank(cols[1]):
            stats.malformed[f"{'query' if is_blank(cols[0]) else 'positive passage'} with no letters or digits"] += 1
            continue
        out.append(Example(cols[0], cols[1], tuple(c for c in cols[2:] if not is_blank(c))))
        stats.examples += 1
    return out


def load_examples(files: Sequence[str | Path], max_samples: int = -1, stats: LoadStats | None = None) -> list[Example]:
    """Training examples from local files (`.tsv` = triples, else JSONL/JSON/parquet rows).

    Every file is read (and must parse) before any example is returned, so a broken file stops a
    run before training starts. `max_samples` > 0 keeps the first N examples.
    """
    stats = stats if stats is not None else LoadStats()
    out: list[Example] = []
    for path in files:
        if Path(path).suffix in (".tsv", ".txt"):
            out.extend(read_triples(path, stats))
        else:
            for _, row in iter_records(path):
                out.extend(row_to_examples(row, stats))
    return out[:max_samples] if max_samples > 0 else out


def load_hub_rows(name: str = "microsoft/ms_marco", config: str = "v1.1", split: str = "train") -> Iterable[dict]:
    """Rows of an MS MARCO split from the Hugging Face Hub (needs the network the first time)."""
    datasets = import_optional("datasets", "loading MS MARCO from the Hub")

    try:
        return datasets.load_dataset(name, config, split=split)
    except Exception as e:  # offline, unknown split: one line, not a traceback
        raise OSError(f"could not load {name} ({config}, {split}) from the Hugging Face Hub: "
                      f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} "
                      "(offline? pass local files with --data-files)") from e


def examples_from_rows(rows: Iterable, max_samples: int = -1, stats: LoadStats | None = None) -> list[Example]:
    """Examples of already-loaded rows (e.g. a `datasets.Dataset`)."""
    stats = stats if stats is not None else LoadStats()
    out: list[Example] = []
    for row in rows:
        out.extend(row_to_examples(row, stats))
        if 0 < max_samples <= len(out):
            return out[:max_samples]
    return out


# -- evaluation sets -------------------------------------------------------------------------------
def load_rerank_queries(files: Sequence[str | Path], stats: LoadStats | None = None, strict: bool = False) -> list[RerankQuery]:
    """v1.1 rows -> re-rank lists. Rows with no selected passage are kept (they score 0); bad rows are
    counted in `stats`, or with `strict` refused (DataFormatError naming the file and line)."""
    stats = stats if stats is not None else LoadStats()
    out = []
    for path in files:
        for n, row in iter_records(path):
            stats.rows += 1
            try:
                if not isinstance(row, dict) or not isinstance(row.get("query"), str):
                    raise _Malformed("missing query")
                texts, labels = _candidates(row)
            except _Malformed as e:
                if strict:
                    raise DataFormatError(f"{path}:{n}: not an MS MARCO v1.1 row ({e})") from None
                stats.malformed[str(e)] += 1
                continue
            if not any(labels):
                stats.no_selected += 1
            out.append(RerankQuery(row["query"], tuple(texts), tuple(labels), str(row.get("query_id", len(out)))))
    return out


def pooled_corpus(queries: Sequence[RerankQuery]) -> tuple[dict[str, str], dict[str, dict[str, int]], list[str], list[str]]:
    """Retrieval set from re-rank lists: every distinct candidate text of the split is one passage.

    Returns (queries {qid: text}, qrels {qid: {pid: 1}}, pids, texts); pids are "p0", "p1", ...
    """
    pid_of: dict[str, str] = {}
    qtexts, qrels = {}, {}
    for i, rq in enumerate(queries):
        qid = rq.query_id or str(i)
        if qid in qtexts:  # a repeated query id: keep both queries apart
            qid = f"{qid}#{i}"
        qtexts[qid] = rq.query
        for text, label in zip(rq.candidates, rq.labels):
            pid = pid_of.setdefault(text, f"p{len(pid_of)}")
            if label:
                qrels.setdefault(qid, {})[pid] = 1
    return qtexts, qrels, list(pid_of.values()), list(pid_of.keys())


# -- unlabelled text (distillation) ---------------------------------------------------------------
def read_unlabelled(paths: Sequence[str | Path]) -> tuple[list[str], list[str]]:
    """Unlabelled queries and passages from data files -> (queries, passages), each de-duplicated.

    `*.tsv`: `id<TAB>text` (queries if the file name contains "quer", else passages) or
    `query<TAB>pos<TAB>neg` triples; `*.jsonl`: MS MARCO v1.1 rows (`query`, `passages.passage_text`),
    rows with `query` and `candidates: [{"text": ...}]`, or a collection's `{"id", "text"}` rows (passages).
    A bad line is a DataFormatError naming file and line."""
    queries: dict[str, None] = {}
    passages: dict[str, None] = {}
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"unlabelled data file not found: {path}")
        is_queries = "quer" in path.name.lower()
        for n, line in text_lines(path):
            if not line.strip():
                continue
            try:
                if path.suffix == ".jsonl" or path.suffix == ".json":
                    row = json.loads(line)
                    if row.get("query"):
                        queries[str(row["query"])] = None
                    if "passages" in row:  # either v1.1 layout; labels are not used
                        texts = _candidates(row)[0]
                    elif isinstance(row.get("candidates"), list):
                        texts = [c["text"] for c in row["candidates"]]
                    elif "text" in row:  # a collection row, {"id", "text"} (e.g. demo/passages.jsonl)
                        texts = [row["text"]]
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
            except (ValueError, TypeError, KeyError, AttributeError, _Malformed) as e:
                raise DataFormatError(f"{path}:{n}: cannot read ({type(e).__name__}: {e})") from None
    # Blank texts (no letters or digits: `twotowers.checks.is_blank`) teach nothing: dropped.
    return [q for q in queries if not is_blank(q)], [p for p in passages if not is_blank(p)]


def word_windows(texts: list[str], rng) -> list[str]:
    """One random window of 1-6 words from each text (`rng`: a numpy Generator): query-like texts of a corpus,
    the unlabelled queries `--distill-query-windows` adds; ef tuning probes an index with them too."""
    windows = []
    for text in texts:
        words = text.split() or [""]
        size = int(rng.integers(1, 7))
        start = int(rng.integers(0, max(len(words) - size, 0) + 1))
        windows.append(" ".join(words[start : start + size]))
    return windows


# -- tokenised dataset and collator ----------------------------------------------------------------
class TokenizedExamples(torch.utils.data.Dataset):
    """Examples with token ids computed once per distinct text.

    Item i -> (query ids, positive ids, [negative ids]) with up to `num_negatives` of the example's
    hard negatives, drawn afresh each epoch (`set_epoch`) but reproducibly (seeded by epoch and i).
    """

    def __init__(self, examples: Sequence[Example], model, num_negatives: int = 1, seed: int = 0):
        self.examples = list(examples)
        self.num_negatives = num_negatives
        self.seed, self.epoch = seed, 0
        queries = sorted({e.query for e in self.examples})
        passages = sorted({t for e in self.examples for t in (e.positive, *e.negatives[: max(num_negatives * 8, 0)])})
        q_ids = model.tokenize_queries(queries)
        p_ids = model.tokenize_passages(passages)
        self._q = dict(zip(queries, q_ids))
        self._p = dict(zip(passages, p_ids))
        self.pad_id = model.tokenizer.pad_id

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int):
        e = self.examples[i]
        pool = [n for n in e.negatives[: max(self.num_negatives * 8, 0)]]
        if len(pool) > self.num_negatives:
            pool = random.Random(self.seed * 1_000_003 + self.epoch * 7919 + i).sample(pool, self.num_negatives)
        return self._q[e.query], self._p[e.positive], [self._p[n] for n in pool]


class Collator:
    """Items -> one padded batch; queries and passages padded separately (their lengths differ).

    Items are `TokenizedExamples` items, or `Example`s (then tokenised here with the model's
    `tokenize_queries` / `tokenize_passages`; pass `model`). Returns a dict:
        query_ids, query_mask        [B, Tq]
        passage_ids, passage_mask    [B + M, Tp]  positives first (row i = query i's), then negatives
        neg_owner                    [M]          query index of each negative
    """

    def __init__(self, pad_id: int = 0, model=None, num_negatives: int = 1):
        self.pad_id, self.model, self.num_negatives = pad_id, model, num_negatives

    def __call__(self, items) -> dict[str, torch.Tensor]:
        if items and isinstance(items[0], Example):
            if self.model is None:
                raise ValueError("Collator needs model= to tokenise Example items")
            queries = self.model.tokenize_queries([e.query for e in items])
            texts = [e.positive for e in items] + [n for e in items for n in e.negatives[: self.num_negatives]]
            passages = self.model.tokenize_passages(texts)
            negs, k = [], len(items)
            for e in items:
                m = len(e.negatives[: self.num_negatives])
                negs.append(passages[k : k + m])
                k += m
            items = [(q, p, n) for q, p, n in zip(queries, passages[: len(items)], negs)]
        queries = [q for q, _, _ in items]
        passages = [p for _, p, _ in items] + [n for _, _, negs in items for n in negs]
        owner = [i for i, (_, _, negs) in enumerate(items) for _ in negs]
        q_ids, q_mask = pad_ids(queries, self.pad_id)
        p_ids, p_mask = pad_ids(passages, self.pad_id)
        return {"query_ids": q_ids, "query_mask": q_mask, "passage_ids": p_ids, "passage_mask": p_mask,
                "neg_owner": torch.tensor(owner, dtype=torch.long)}
