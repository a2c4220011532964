"""Argument checks shared by the public API: one message style for every caller."""

from __future__ import annotations

import inspect
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


# Widths and sizes no real model has: a config saying more is corrupt or edited, and building it would try to
# allocate terabytes (a crash, not an error). Vocabularies reach ~256k tokens; widths a few thousand.
MAX_WIDTH = 1 << 16
MAX_VOCAB = 1 << 23
BASE_CONFIG_LIMITS = {"vocab_size": MAX_VOCAB, "hidden_size": MAX_WIDTH, "intermediate_size": 1 << 18,
                "num_hidden_layers": 1024, "num_attention_heads": 1024, "max_position_embeddings": 1 << 20}


def check_sizes(values: dict, limits: dict, where: str) -> None:
    """Each of `limits` that `values` sets is a whole number from 1 to its limit, else ValueError naming it."""
    for key, limit in limits.items():
        v = values.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= limit):
            raise ValueError(f"{where}: {key} {v!r} is not a plausible size (a whole number from 1 to {limit:,}): "
                             "the file is corrupt or was edited; restore it or save the model again")


_JSON_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "None": (type(None),)}


def check_config_types(config: dict, cls, where) -> None:
    """Each constructor option in a saved config.json has a type its annotation allows (`int | None`, ...),
    else ValueError naming it: a string where a number belongs failed deep inside, as a TypeError."""
    params = inspect.signature(cls.__init__).parameters
    for key, value in config.items():
        if key not in params or not isinstance(params[key].annotation, str):
            continue
        names = [t.strip() for t in params[key].annotation.split("|")]
        allowed = tuple(t for n in names for t in _JSON_TYPES.get(n, ()))
        if len(allowed) and (not isinstance(value, allowed) or (isinstance(value, bool) and "bool" not in names)):
            raise ValueError(f"{where}: {key} is {value!r}, expected {params[key].annotation}: the file is corrupt "
                             "or was edited; restore it or save the model again")


def check_positive_int(value, what: str) -> int:
    """`value` as an int >= 1, or ValueError naming `what`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be a positive int, got {value!r}")
    return int(value)
