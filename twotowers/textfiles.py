"""Reading data files with errors that name the file and line: UTF-8 lines, and JSONL / JSON / parquet records.

`decode_lines` is the one reader of text lines: files here, and the app's uploads (webapp/inputs.py),
so both drop a byte-order mark and name a line that is not UTF-8 alike.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
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
        first = f.read(len(_BOM) + 1).removeprefix(_BOM)[:1]
    if first == b"[":  # a JSON array file
        try:
            records = json.loads(path.read_text(encoding="utf-8-sig"))
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


def check_readable(path: str | Path) -> Path:
    """`path`, or a PermissionError that says whose it is and how to share it (a file saved under umask 077,
    or by safetensors, is 0600: copied to another user, such as a Docker image's or a Space's, it cannot be read)."""
    path = Path(path)
    try:
        with open(path, "rb"):
            return path
    except PermissionError:
        st = path.stat()
        raise PermissionError(f"{path} is not readable by this user (mode {st.st_mode & 0o777:o}, owner uid "
                              f"{st.st_uid}): run `chmod a+r {path}` (or copy it with its owner's permissions)") from None


def read_json(path: str | Path, what: str) -> object:
    """A JSON file, or one error naming it: missing, unreadable, not UTF-8, cut short or corrupt (`what` it
    should be, e.g. "a saved model's config")."""
    path = check_readable(path)
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as e:
        raise DataFormatError(f"{path} is not UTF-8 text ({e.reason}): it should be {what}") from None
    except json.JSONDecodeError as e:
        raise DataFormatError(f"{path} is not valid JSON (line {e.lineno}: {e.msg}): cut short or corrupt; it "
                              f"should be {what}: restore it") from None


_BOM = b"\xef\xbb\xbf"  # U+FEFF in UTF-8: some editors start a file with it


def decode_lines(raw_lines: Iterable[bytes], where: Callable[[int], str]) -> Iterator[tuple[int, str]]:
    """(line number, text without the line ending) of UTF-8 byte lines, a byte-order mark at the start
    dropped (else it would become part of the first id); bad bytes are a DataFormatError at `where(line)`."""
    for lineno, raw in enumerate(raw_lines, start=1):
        if lineno == 1:
            raw = raw.removeprefix(_BOM)
        try:
            yield lineno, raw.decode("utf-8").rstrip("\n\r")
        except UnicodeDecodeError as e:
            raise DataFormatError(f"{where(lineno)}: not UTF-8 text ({e.reason} at byte {e.start})") from e


def text_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number, text without the newline) of a UTF-8 file (see `decode_lines`); bad bytes name the line."""
    with open(path, "rb") as f:
        yield from decode_lines(f, lambda lineno: f"{path}:{lineno}")
