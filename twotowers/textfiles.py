"""Reading data files with errors that name the file and line: UTF-8 lines, and JSONL / JSON / parquet records."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from .optional import import_optional


class DataFormatError(ValueError):
    """A data file that cannot be read; the message names the file and line."""


def iter_records(path: str | Path) -> Iterator[tuple[int, object]]:
    """(line number, parsed object) for each record of a JSONL/JSON or parquet file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    if path.suffix == ".parquet":
        pq = import_optional("pyarrow.parquet", f"reading {path.name}")

        try:
            table = pq.ParquetFile(path)
            row = 0
            for batch in table.iter_batches(batch_size=4096):
                for record in batch.to_pylist():
                    row += 1
                    yield row, record
        except Exception as e:  # pyarrow errors carry no row; name the file
            raise DataFormatError(f"{path}: not a readable parquet file: {e}") from e
        return
    with open(path, "rb") as f:
        first = f.read(1)
    if first == b"[":  # a JSON array file
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            raise DataFormatError(f"{path}: not UTF-8 text: {e.reason}") from e
        except json.JSONDecodeError as e:
            raise DataFormatError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from e
        yield from enumerate(records, start=1)
        return
    for lineno, line in text_lines(path):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as e:
            raise DataFormatError(f"{path}:{lineno}: invalid JSON: {e.msg} (column {e.colno})") from e


def text_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number, text without the newline) of a UTF-8 file; bad bytes name the line."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                yield lineno, raw.decode("utf-8").rstrip("\n\r")
            except UnicodeDecodeError as e:
                raise DataFormatError(f"{path}:{lineno}: not UTF-8 text: {e.reason}") from e
