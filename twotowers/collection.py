"""Retrieval sets as files: a passage collection, queries and qrels, read with errors naming file and line.

A collection is `pid<TAB>text` lines (.tsv / .txt, MS MARCO's collection.tsv), `.jsonl` objects or
`.parquet` rows with an id and a text column, or a Hugging Face dataset (a `save_to_disk` directory
or a Hub id); it is read as a stream, and an id that repeats an earlier one is refused (line named).
Queries are `qid<TAB>text`; qrels are TREC's `qid 0 pid relevance` (or `qid pid [relevance]`).

`passage_rows` is the one reader of a passage file's lines (`id<TAB>text`, JSON objects, or plain
lines): collections here and the app's uploads (webapp/inputs.py) split and check them alike.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from .checks import BLANK, is_blank
from .ids import IdSet
from .optional import import_optional
from .textfiles import DataFormatError, iter_records, text_lines

_CHUNK = 10_000  # ids checked for repeats a chunk at a time


def iter_collection(source: str | Path, *, id_column: str = "id", text_column: str = "text",
                    split: str = "train") -> Iterator[tuple[str, str]]:
    """(id, text) pairs of a collection file or dataset, streamed; a repeated id is a DataFormatError."""
    path = Path(source)
    if path.is_file() and path.suffix in (".tsv", ".txt", ""):
        rows = passage_rows(text_lines(path), "tsv", lambda n: f"{path}:{n}")
    elif path.is_file() and path.suffix in (".jsonl", ".json", ".parquet"):
        rows = ((n, *record_id_text(row, f"{path}:{n}", id_column, text_column, _COLUMN_HINT))
                for n, row in iter_records(path))
    elif path.is_file():
        raise DataFormatError(f"{path}: unknown collection format {path.suffix!r}: use .tsv (pid<TAB>text), .jsonl or .parquet")
    else:
        rows = _dataset_rows(str(source), id_column, text_column, split)
    seen = IdSet()
    while chunk := list(itertools.islice(rows, _CHUNK)):
        where = [w for w, _, _ in chunk]
        ids = [pid for _, pid, _ in chunk]
        if (rep := seen.first_repeat(ids, where)) is not None:
            line, first = rep
            pid = ids[where.index(line)]
            raise DataFormatError(f"{_at(source, line)}: id {pid!r} repeats {_at(None, first)}: passage ids must be unique")
        for line, pid, text in chunk:  # the whole chunk is checked before any of it is used
            if is_blank(text):
                raise DataFormatError(f"{_at(source, line)}: passage {pid!r} {BLANK}: remove it or give it text")
        seen.add(ids, where)
        yield from ((pid, text) for _, pid, text in chunk)


def collection_size(source: str | Path, *, split: str = "train") -> int | None:
    """About how many passages a collection holds, cheaply (a progress bar's total and ETA): the lines of a
    .tsv or .jsonl file (blank ones too), a parquet file's rows, a saved dataset's length; None where that
    is unknown (a JSON array, a dataset streamed from the Hub)."""
    path = Path(source)
    if path.is_file() and path.suffix in (".tsv", ".txt", "", ".jsonl"):
        lines, last = 0, b"\n"
        with open(path, "rb") as f:
            while block := f.read(1 << 24):
                lines += block.count(b"\n")
                last = block[-1:]
        return lines + (last != b"\n")
    if path.is_file() and path.suffix == ".parquet":
        pq = import_optional("pyarrow.parquet", f"reading {path.name}")
        return pq.ParquetFile(path).metadata.num_rows
    if path.is_dir() and ((path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()):
        datasets = import_optional("datasets", "reading a Hugging Face dataset collection")
        ds = datasets.load_from_disk(str(path))
        return len(ds[split] if isinstance(ds, datasets.DatasetDict) else ds)
    return None


def read_collection(source: str | Path, **kwargs) -> tuple[list[str], list[str]]:
    """(ids, texts) of a whole collection, in file order (see `iter_collection`)."""
    ids, texts = [], []
    for pid, text in iter_collection(source, **kwargs):
        ids.append(pid)
        texts.append(text)
    return ids, texts


def _at(source, where: int) -> str:
    """'file:LINE' (or 'line N' without a file); parquet and datasets number rows, not lines."""
    return f"{source}:{where}" if source is not None else f"line {where}"


def passage_rows(lines: Iterable[tuple[int, str]], kind: str, where: Callable[[int], str],
                 ids: bool = True) -> Iterator[tuple[int, str | None, str]]:
    """(line number, id, text) of a passage file's non-blank lines: `kind` "tsv" (`id<TAB>text`), "jsonl"
    (one `{"id": ..., "text": ...}` object a line) or "txt" (one passage a line, no ids). With `ids=False`
    a JSON object may leave its id out (None). A malformed line is a DataFormatError at `where(line)`."""
    for n, line in lines:
        if not line.strip():
            continue
        if kind == "txt":
            yield n, None, line
        elif kind == "tsv":
            pid, sep, text = line.partition("\t")
            if not sep:
                raise DataFormatError(f"{where(n)}: expected id<TAB>text, found no tab")
            yield n, pid, text
        else:
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataFormatError(f"{where(n)}: invalid JSON: {e.msg} (column {e.colno})") from None
            yield n, *record_id_text(row, where(n), ids=ids)


def _dataset_rows(name: str, id_col: str, text_col: str, split: str) -> Iterator[tuple[int, str, str]]:
    datasets = import_optional("datasets", "reading a Hugging Face dataset collection")
    path = Path(name)
    if path.is_dir() and ((path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()):
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            ds = ds[split]
    elif path.exists():
        raise DataFormatError(f"{name}: not a collection file (.tsv, .jsonl, .parquet) nor a saved Hugging Face dataset")
    else:
        try:
            ds = datasets.load_dataset(name, split=split, streaming=True)
        except Exception as e:  # noqa: BLE001 - offline, no such dataset: one line
            raise OSError(f"collection {name!r}: no such file, and loading it as a Hugging Face dataset failed "
                          f"({type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''})") from e
    for n, row in enumerate(ds, 1):
        yield n, *record_id_text(row, f"{name} row {n}", id_col, text_col, _COLUMN_HINT)


_COLUMN_HINT = " (set --id-column / --text-column)"


def record_id_text(row, where: str, id_col: str = "id", text_col: str = "text", hint: str = "",
                   ids: bool = True) -> tuple[str | None, str]:
    """A record's (id, text): the text a string, the id a string or number (None where `ids=False` lets it
    be left out); else a DataFormatError at `where`, `hint` appended where a field is missing."""
    need = (id_col, text_col) if ids else (text_col,)
    if not isinstance(row, dict) or any(c not in row for c in need):
        cols = sorted(row) if isinstance(row, dict) else type(row).__name__
        raise DataFormatError(f"{where}: expected {' and '.join(map(repr, need))} field{'s' * ids}, found {cols}{hint}")
    pid = row.get(id_col)
    if not isinstance(row[text_col], str) or (pid is not None or ids) and (
            isinstance(pid, bool) or not isinstance(pid, (str, int, float))):
        raise DataFormatError(f"{where}: {text_col!r} must be a string and {id_col!r} a string or number")
    return (None if pid is None else str(pid)), row[text_col]


def read_queries(path: str | Path) -> dict[str, str]:
    """`qid<TAB>text` -> {qid: text}; a repeated qid is a DataFormatError naming both lines."""
    out: dict[str, str] = {}
    line_of: dict[str, int] = {}
    for lineno, line in _lines(path):
        qid, sep, text = line.partition("\t")
        if not sep:
            raise DataFormatError(f"{path}:{lineno}: expected qid<TAB>text, found no tab")
        if qid in out:
            raise DataFormatError(f"{path}:{lineno}: query id {qid!r} repeats line {line_of[qid]}")
        if is_blank(text):
            raise DataFormatError(f"{path}:{lineno}: query {qid!r} {BLANK}: remove it or give it words")
        out[qid], line_of[qid] = text, lineno
    return out


MAX_RELEVANCE = 100  # TREC grades are small (MS MARCO: 0-3); a larger "grade" is a passage id in the wrong column


def read_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """TREC qrels (`qid 0 pid rel`, tab or space separated; or `qid pid [rel]`) -> {qid: {pid: rel}}.

    `qid 0 pid` (TREC's layout with the relevance column left out) is refused, naming the line: its
    third column would otherwise be read as a relevance grade."""
    out: dict[str, dict[str, int]] = {}
    for lineno, line in _lines(path):
        cols = line.split()
        if len(cols) == 3 and cols[1] in ("0", "Q0") and not _is_grade(cols[2]):
            raise DataFormatError(f"{path}:{lineno}: {line.strip()!r} has no relevance column: qrels lines are "
                                  "'qid 0 pid relevance' (or 'qid pid relevance'); add the grade, e.g. 'qid 0 pid 1'")
        try:
            if len(cols) == 4:
                qid, pid, rel = cols[0], cols[2], int(cols[3])
            elif len(cols) in (2, 3):
                qid, pid, rel = cols[0], cols[1], int(cols[2]) if len(cols) == 3 else 1
            else:
                raise ValueError(f"{len(cols)} columns")
        except ValueError as e:
            raise DataFormatError(f"{path}:{lineno}: expected 'qid 0 pid relevance' ({e})") from None
        if abs(rel) > MAX_RELEVANCE:
            raise DataFormatError(f"{path}:{lineno}: relevance {rel} is not a grade (-{MAX_RELEVANCE}..{MAX_RELEVANCE}): "
                                  "expected 'qid 0 pid relevance'")
        out.setdefault(qid, {})[pid] = rel
    return out


def _is_grade(text: str) -> bool:
    try:
        return abs(int(text)) <= MAX_RELEVANCE
    except ValueError:
        return False


def _lines(path: str | Path) -> Iterator[tuple[int, str]]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"file not found: {path}")
    return ((n, line) for n, line in text_lines(path) if line.strip())


__all__ = ["iter_collection", "passage_rows", "read_collection", "read_queries", "read_qrels", "record_id_text"]
