"""Search options, and hybrid search: how the dense and keyword (BM25) scores of one query's candidates
become one score.

To add a fusion method, write `f(dense, keyword, alpha) -> fused` here and give it a `FUSIONS` entry
(a `Fusion`: the function, the label the app shows, a one-line description); `PassageIndex.search(
mode="hybrid", fusion=name)`, the command lines, the app's page and APIs and their help pick it up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

MODES = ("dense", "keyword", "hybrid")
DEFAULT_K = 10  # passages a search returns unless told: the library, the command line, the app and its APIs
RRF_K = 60  # reciprocal rank fusion constant (Cormack et al. 2009)
# Chosen on dev600's validation half (docs/results.md, `python bench/hybrid.py --tower transformer`): the
# best fusion and weight there for zero-shot MiniLM (TM2C2 was also best for six of nine small query towers).
DEFAULT_ALPHA = 0.9  # weight of the dense side: 1 = dense only, 0 = keyword only
DEFAULT_FUSION = "tm2c2"


def minmax(x: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] along the last axis: over one query's candidates, or each row of `[B, N]` scores
    (all zeros where they tie). The dtype is kept: float32 scores stay float32."""
    if not x.shape[-1]:
        return np.zeros_like(x, dtype=np.float64)
    lo, hi = x.min(axis=-1, keepdims=True), x.max(axis=-1, keepdims=True)
    return np.where(hi > lo, (x - lo) / np.maximum(hi - lo, 1e-12), 0.0)


def score_fusion(dense: np.ndarray, keyword: np.ndarray, alpha: float) -> np.ndarray:
    """alpha * minmax(dense) + (1 - alpha) * minmax(bm25), over the candidates."""
    return alpha * minmax(dense) + (1 - alpha) * minmax(keyword)


def theoretical_fusion(dense: np.ndarray, keyword: np.ndarray, alpha: float) -> np.ndarray:
    """Convex combination over scores scaled from each side's theoretical minimum (cosine -1, BM25 0) to the
    candidates' maximum (TM2C2, Bruch et al. 2023): unlike min-max, a side whose candidates all score
    alike is not stretched to [0, 1]."""
    hi_d, hi_k = (float(dense.max()), float(keyword.max())) if len(dense) else (1.0, 0.0)
    d = (dense + 1.0) / (hi_d + 1.0) if hi_d > -1.0 else np.zeros_like(dense, dtype=np.float64)
    k = keyword / hi_k if hi_k > 0 else np.zeros_like(keyword, dtype=np.float64)
    return alpha * d + (1 - alpha) * k


def _ranks(x: np.ndarray) -> np.ndarray:
    """1 = best; ties keep candidate order."""
    r = np.empty(len(x))
    r[np.argsort(-x, kind="stable")] = np.arange(1, len(x) + 1)
    return r


def rrf_fusion(dense: np.ndarray, keyword: np.ndarray, alpha: float) -> np.ndarray:
    """alpha / (60 + dense rank) + (1 - alpha) / (60 + BM25 rank); no keyword credit without a shared term."""
    return alpha / (RRF_K + _ranks(dense)) + (1 - alpha) * np.where(keyword > 0, 1.0 / (RRF_K + _ranks(keyword)), 0.0)


class Fusion(NamedTuple):
    """A fusion method: the function, and how the app and the API help name and describe it."""

    fn: Callable[[np.ndarray, np.ndarray, float], np.ndarray]
    label: str        # the app's radio button
    description: str  # one line: the API docs and help


FUSIONS: dict[str, Fusion] = {  # by name (`fusion=NAME`, `--fusion NAME`); the default first
    "tm2c2": Fusion(theoretical_fusion, "scores from 0 (TM2C2)", "scores scaled from each side's theoretical minimum"),
    "score": Fusion(score_fusion, "scores", "min-max normalised scores"),
    "rrf": Fusion(rrf_fusion, "ranks (RRF)", "reciprocal rank fusion"),
}


def describe_fusions() -> str:
    """`tm2c2 = scores scaled from ..., score = ..., rrf = ...`: every fusion method in one line, the default first."""
    names = sorted(FUSIONS, key=lambda name: name != DEFAULT_FUSION)
    return ", ".join(f"{name} = {FUSIONS[name].description}" for name in names)


def check_mode(mode: str, alpha: float, fusion: str) -> None:
    """ValueError naming the allowed values when `mode`, `alpha` or `fusion` is not one of them."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating)) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")


def fuse(dense: np.ndarray, keyword: np.ndarray, alpha: float, fusion: str) -> np.ndarray:
    """Fused scores of one query's candidates from their dense and keyword scores."""
    return FUSIONS[fusion].fn(dense, keyword, alpha)
