"""Argument checks shared by the public API: one message style for every caller."""

from __future__ import annotations

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


def check_positive_int(value, what: str) -> int:
    """`value` as an int >= 1, or ValueError naming `what`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be a positive int, got {value!r}")
    return int(value)
