"""Argument checks shared by the public API: one message style for every caller."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import numpy as np


def check_texts(texts, what: str) -> list[str]:
    """`texts` as a list of strings, or TypeError naming `what` and the first offending item."""
    if isinstance(texts, (str, bytes)) or not isinstance(texts, (Sequence, np.ndarray)):
        raise TypeError(f"{what} expects a list of strings, got {type(texts).__name__}"
                        + (" (wrap a single text in a list)" if isinstance(texts, str) else ""))
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{what} expects a list of strings; item {i} is {type(t).__name__}")
    return texts


def is_blank(text: str) -> bool:
    """Whether `text` is empty for searching and indexing: no letter or digit left once Unicode-normalised
    (NFKC). Spaces, punctuation, emoji, control and zero-width characters (`\\u200b\\u200d`) alone are blank.

    The one test of emptiness: library search, the command lines, the app's page and JSON API, passages
    at build / add / upload, and training data all use it."""
    if any(map(str.isalnum, text)):  # the common case, decided at the first letter
        return False
    return not any(map(str.isalnum, unicodedata.normalize("NFKC", text)))


BLANK = "is empty (no letters or digits: only spaces, punctuation or invisible characters)"  # what is_blank says


def check_positive_int(value, what: str) -> int:
    """`value` as an int >= 1, or ValueError naming `what`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be a positive int, got {value!r}")
    return int(value)
