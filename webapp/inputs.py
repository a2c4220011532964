"""What a user may send, checked: queries, k, search mode, passages to add. Bad input is an `InputError`."""

from __future__ import annotations

import unicodedata
from pathlib import Path

from twotowers.checks import is_blank
from twotowers.collection import passage_rows
from twotowers.index.fusion import DEFAULT_ALPHA, DEFAULT_FUSION, DEFAULT_K, FUSIONS, MODES
from twotowers.textfiles import DataFormatError, decode_lines

MAX_QUERY_CHARS = 1000   # queries are truncated to 64 tokens anyway; longer input is a mistake
MAX_K = 100
MAX_BATCH = 64           # queries per /search_batch call
MAX_UPLOAD_PASSAGES = 20_000
MAX_PASSAGE_CHARS = 20_000


class InputError(ValueError):
    """Bad input from a user: the message says what to change."""


def _clean_text(text: str) -> str:
    """Control characters (Cc) and lone surrogates (Cs, which no encoder accepts) become spaces; runs of
    whitespace become one space; emoji and other text stay."""
    return " ".join("".join(" " if unicodedata.category(c) in ("Cc", "Cs") else c for c in text).split())


def clean_query(query) -> str:
    """Validate one query -> the text to search. Control characters become spaces; emoji stay."""
    if query is None:
        raise InputError("Enter a query: it is empty.")
    if not isinstance(query, str):
        raise InputError(f"The query must be text, got {type(query).__name__}.")
    if len(query) > MAX_QUERY_CHARS:
        raise InputError(f"The query is too long: {len(query):,} characters; the limit is {MAX_QUERY_CHARS:,}.")
    text = _clean_text(query)
    if is_blank(text):
        raise InputError("Enter a query: it is empty (no letters or digits, only spaces, punctuation or "
                         "invisible characters).")
    return text


def clean_k(k) -> int:
    """top-k: a whole number from 1 to MAX_K (floats like 5.0 and strings like "5" are accepted)."""
    value = k
    if isinstance(k, str):
        try:
            value = float(k.strip())
        except ValueError:
            raise InputError(f"k must be a whole number from 1 to {MAX_K}, got {k!r}.") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value in (float("inf"), float("-inf")):
        raise InputError(f"k must be a whole number from 1 to {MAX_K}, got {k!r}.")
    if value != int(value):
        raise InputError(f"k must be a whole number from 1 to {MAX_K}, got {k!r}.")
    value = int(value)
    if not 1 <= value <= MAX_K:
        raise InputError(f"k must be from 1 to {MAX_K}, got {value:,}.")
    return value


def clean_mode(mode, alpha, fusion, engine) -> tuple[str, float, str]:
    """Validate mode, hybrid weight and fusion for `engine` (keyword and hybrid need its BM25 side); no mode
    (None or "") is the engine's default: hybrid where the index has a BM25 side, else dense."""
    mode = (mode.strip().lower() or None) if isinstance(mode, str) else mode
    mode = engine.default_mode if mode is None else mode
    if mode not in MODES:
        raise InputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}.")
    if mode != "dense" and not engine.has_keyword:
        raise InputError(f"mode {mode!r} needs an index with a keyword (BM25) side; this one has none.")
    try:
        alpha = float(DEFAULT_ALPHA if alpha is None else alpha)
    except (TypeError, ValueError):
        raise InputError(f"alpha (the semantic weight) must be a number from 0 to 1, got {alpha!r}.") from None
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha (the semantic weight) must be from 0 to 1, got {alpha}.")
    fusion = fusion or DEFAULT_FUSION
    if fusion not in FUSIONS:
        raise InputError(f"fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}.")
    return mode, alpha, fusion


def _rows(name: str, data: bytes, kind: str):
    """The library's readers over an upload (a byte-order mark dropped, ids optional); a line they refuse is an
    InputError naming it."""
    where = lambda lineno: f"{name} line {lineno}"  # noqa: E731
    try:
        yield from passage_rows(decode_lines(data.split(b"\n"), where), kind, where, ids=False)
    except DataFormatError as e:
        raise InputError(f"{e}.") from None


def _check_passage(name: str, lineno: int, text) -> str:
    if not isinstance(text, str):
        raise InputError(f"{name} line {lineno}: the text must be a string, got {type(text).__name__}.")
    text = _clean_text(text)
    if is_blank(text):
        raise InputError(f"{name} line {lineno}: the passage text is empty (no letters or digits).")
    if len(text) > MAX_PASSAGE_CHARS:
        raise InputError(f"{name} line {lineno}: the passage is {len(text):,} characters; the limit is {MAX_PASSAGE_CHARS:,}.")
    return text


def parse_passages(name: str, data: bytes | str) -> tuple[list[str | None], list[str]]:
    """A .txt, .tsv or .jsonl file (or pasted text, name "pasted text") -> (ids, texts), all checked.

    .txt / pasted text: one passage per non-empty line, id None (see `assign_ids`). .tsv: `id<TAB>text` per
    line. .jsonl: one `{"id": ..., "text": ...}` object per line ("id" optional). The lines are read as the
    library reads a collection's (`twotowers.collection.passage_rows`). Any bad line raises `InputError`
    naming the file and line; nothing is returned.
    """
    if isinstance(data, str):
        data = data.encode("utf-8", errors="surrogatepass")
    suffix = Path(name).suffix.lower()
    if suffix not in (".txt", ".tsv", ".jsonl") and name != "pasted text":
        raise InputError(f"{name}: unsupported file type {suffix or '(none)'}; use .txt, .tsv or .jsonl.")
    ids, texts, seen = [], [], {}
    for lineno, pid, text in _rows(name, data, suffix.lstrip(".") or "txt"):
        pid = None if pid is None else pid.strip()
        if pid is not None:
            if not pid:
                raise InputError(f"{name} line {lineno}: the id is empty.")
            if pid in seen:
                raise InputError(f"{name} line {lineno}: id {pid!r} repeats line {seen[pid]}.")
            seen[pid] = lineno
        ids.append(pid)
        texts.append(_check_passage(name, lineno, text))
        if len(texts) > MAX_UPLOAD_PASSAGES:
            raise InputError(f"{name}: more than {MAX_UPLOAD_PASSAGES:,} passages; split the file.")
    if not texts:
        raise InputError(f"{name}: no passages found (the file is empty).")
    return ids, texts


def assign_ids(ids: list[str | None], taken: set[str], prefix: str = "mine") -> list[str]:
    """Fill the missing ids with `{prefix}-N`, skipping every id in `taken` or in `ids`."""
    used = set(taken) | {i for i in ids if i is not None}
    out, n = [], 0
    for pid in ids:
        if pid is None:
            n += 1
            while f"{prefix}-{n}" in used:
                n += 1
            pid = f"{prefix}-{n}"
            used.add(pid)
        out.append(pid)
    return out

