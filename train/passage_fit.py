"""Fit a mean passage tower to a teacher's vectors of the corpus, in closed form (`--fit-passage-tower`).

A mean tower is linear in its word-embedding table: a passage's vector is `A E` (A: the passage's
token frequencies, one row `[vocab]` per passage, summing to 1; E: the table `[vocab, dim]`), then
normalised. So the table that gives every corpus passage its teacher's vector, changing the starting
table E0 least, is a ridge least-squares problem with a closed form:

    E = E0 + A^T X,   (A A^T + ridge I) X = T - A E0          # X: [passages, dim]

solved by conjugate gradients on all `dim` columns at once (A stays sparse: memory is a few copies of
`[passages, dim]`). Starting from the trained query tower's table (projected), the corpus's passages
get the teacher's vectors to within the ridge (cosine ~0.99 on dev600's 11,809 passages). The result
is a model of that corpus: passages outside it rank below where no fit would put them
(bench/fit_unseen.py), so it is refitted, by training again, when the corpus changes.
"""

from __future__ import annotations

import logging
import time
import warnings

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__).info


def token_frequencies(token_ids: list[list[int]], vocab_size: int) -> torch.Tensor:
    """`[passages, vocab]` sparse (CSR, float64): each row the passage's token counts over its length (a
    mean tower's average)."""
    lengths = torch.tensor([len(ids) for ids in token_ids])
    rows = torch.repeat_interleave(torch.arange(len(token_ids)), lengths)
    cols = torch.tensor([t for ids in token_ids for t in ids], dtype=torch.int64)
    vals = torch.repeat_interleave(1.0 / lengths.clamp(min=1).double(), lengths)
    coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (len(token_ids), vocab_size),
                                  check_invariants=False).coalesce()  # built here: valid by construction
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return coo.to_sparse_csr()  # repeated tokens summed


def ridge_fit(A: torch.Tensor, start: np.ndarray, targets: np.ndarray, ridge: float = 1e-3,
              tol: float = 1e-2, max_iter: int = 1000) -> tuple[np.ndarray, dict]:
    """The table closest to `start [vocab, dim]` whose averages `A @ table` match `targets [passages, dim]`
    up to `ridge` -> (table, {"iterations", "residual"}); block conjugate gradients in float64."""
    start64, targets64 = torch.from_numpy(start).double(), torch.from_numpy(targets).double()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        At = A.t().to_sparse_csr()
    b = targets64 - A @ start64  # [n, dim]

    def apply(x):  # (A A^T + ridge I) x, every column at once
        return A @ (At @ x) + ridge * x

    x, r = torch.zeros_like(b), b.clone()
    p, rr = r.clone(), (r * r).sum(0)  # rr: [dim]
    stop = tol ** 2 * (b * b).sum(0).clamp(min=1e-30)
    it = 0
    for it in range(1, max_iter + 1):
        ap = apply(p)
        alpha = rr / (p * ap).sum(0).clamp(min=1e-300)
        x += alpha * p
        r -= alpha * ap
        rr_new = (r * r).sum(0)
        if bool((rr_new <= stop).all()):
            rr = rr_new
            break
        p = r + (rr_new / rr.clamp(min=1e-300)) * p
        rr = rr_new
    residual = float((rr.sum() / (b * b).sum().clamp(min=1e-30)).sqrt())
    return (start64 + At @ x).numpy(), {"iterations": it, "residual": residual}


def fit_mean_passage_tower(model, passages: list[str], teacher_p: np.ndarray, ridge: float = 1e-3) -> dict:
    """Set `model`'s mean passage tower so that it encodes `passages` as the teacher did (`teacher_p`),
    starting from its query tower (table and projection) -> figures of the fit (logged)."""
    q, p = model.query_tower, model.passage_tower
    start_time = time.perf_counter()
    linear = isinstance(q.projection, nn.Linear)
    with torch.no_grad():
        E = q.embeddings.weight.double()  # [vocab, hidden]
        W = q.projection.weight.double() if linear else None  # [dim, hidden]
        start = (E @ W.T + q.projection.bias.double() if linear else E).cpu().numpy()  # [vocab, dim]: projected rows
    A = token_frequencies(model.tokenize_passages(passages), start.shape[0])
    fitted, info = ridge_fit(A, start, teacher_p, ridge)
    with torch.no_grad():
        change = torch.from_numpy(fitted - start)  # [vocab, dim], wanted after the projection
        if linear:  # the least change of the table whose projection is that: change (W W^T)^-1 W
            change = change @ torch.linalg.solve(W @ W.T, W)
        p.embeddings.weight.copy_((E + change).to(p.embeddings.weight.dtype))
        p.projection.load_state_dict(q.projection.state_dict())
    got = (A @ torch.from_numpy(fitted)).numpy()
    cos = (got * teacher_p).sum(1) / np.maximum(np.linalg.norm(got, axis=1) * np.linalg.norm(teacher_p, axis=1), 1e-12)
    info.update(passages=len(passages), ridge=ridge, mean_cosine=round(float(cos.mean()), 4),
                min_cosine=round(float(cos.min()), 4), seconds=round(time.perf_counter() - start_time, 1))
    log(f"passage tower fitted to the teacher's vectors of {len(passages):,} passages in {info['seconds']} s "
        f"({info['iterations']} CG iterations, residual {info['residual']:.1e}): cosine to the teacher mean "
        f"{info['mean_cosine']}, min {info['min_cosine']}")
    return info
