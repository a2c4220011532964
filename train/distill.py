"""Distil a small student (mean / GRU / LSTM towers) from a teacher on unlabelled text.

    python -m train --distill-from minilm --distill-data queries.tsv collection.tsv --tower mean ...
    python -m train.distill --distill-from minilm --distill-data FILES --tower gru --output-dir runs/gru-kd \
        --eval-queries queries.dev600.tsv --eval-qrels qrels.dev600.tsv --eval-collection collection.tsv

`run_distillation(cfg)` is what `python -m train` calls when `--distill-from` is set: teacher vectors
of every text come from the on-disk cache (computed once), the student learns cosine-to-teacher plus
KL over each query's teacher-mined candidates, optionally mixed with the labelled in-batch loss on
`--data-files` (`--distill-weight` < 1). The model is saved with `save_pretrained`.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from twotowers.distill import DistillConfig, TeacherCache, distill, load_teacher, read_texts

DEFAULTS = dict(
    distill_from=None, distill_data=[], distill_weight=1.0, tower="mean", projection_dim=384, epochs=4,
    learning_rate=2e-3, batch_size=128, seed=0, output_dir="", no_save=False, data_files=[],
    distill_cache_dir=None, distill_init=None, distill_temperature=0.05, distill_candidates=1,
    distill_weight_cosine=1.0, distill_weight_kl=0.2, distill_weight_mse=0.0, distill_embedding_lr=None,
    distill_max_seconds=None, passage_tower=None, freeze_passage_tower=False, rnn_hidden_size=256, max_passage_length=256, device=None,
    eval_queries=None, eval_qrels=None, eval_collection=None,
)


# train's TrainConfig names for the same settings (its defaults suit labelled training, not these)
ALIASES = {"distill_init": "init_from", "eval_queries": "test_queries", "eval_qrels": "test_qrels",
           "eval_collection": "test_collection"}


def _get(cfg, name):
    v = getattr(cfg, name, None)
    if v is None and name in ALIASES:
        v = getattr(cfg, ALIASES[name], None)
    if name == "device" and v == "auto":
        v = None
    return DEFAULTS[name] if v is None else v


def _log(msg: str) -> None:
    print(f"[train.distill] {msg}", file=sys.stderr, flush=True)


def read_labelled(paths) -> list[tuple[str, str, str | None]]:
    """(query, positive, first hard negative or None) via the training data loader (any of its formats)."""
    from twotowers.data import LoadStats, load_examples

    stats = LoadStats()
    examples = load_examples(paths, stats=stats)
    _log("labelled data: " + stats.summary())
    return [(e.query, e.positive, e.negatives[0] if e.negatives else None) for e in examples]


def labelled_loss_fn(student, examples, batch_size: int, weight: float, seed: int = 0):
    """`extra_loss(step)` for `distill`: in-batch negatives loss on labelled (q, pos, neg) examples."""
    from twotowers.losses import InBatchNegativesLoss

    rng = random.Random(seed)
    loss = InBatchNegativesLoss()
    q_ids = student.tokenize_queries([e[0] for e in examples])
    p_ids = student.tokenize_passages([e[1] for e in examples])
    negs = [e[2] for e in examples]
    n_ids = student.tokenize_passages([n or "" for n in negs])
    device = student.device

    def extra(step):
        idx = rng.sample(range(len(examples)), min(batch_size, len(examples)))
        have = [i for i in idx if negs[i] is not None]
        q = student.embed_queries(*student.tokenizer.pad([q_ids[i] for i in idx], device))
        p = student.embed_passages(*student.tokenizer.pad([p_ids[i] for i in idx], device))
        n = student.embed_passages(*student.tokenizer.pad([n_ids[i] for i in have], device)) if have else None
        return weight * loss(q, p, n)

    return extra


def evaluate_retrieval(model, queries_tsv, qrels_tsv, collection_tsv, passage_vectors=None, repeats: int = 3) -> dict:
    """Exact-search retrieval on a TREC-style split: NDCG@10 / MRR@10 / Recall@100, and query encoding
    speed (queries/s, median of `repeats` passes over all the queries, batch 256).
    `passage_vectors`: the collection's vectors if known (e.g. a teacher's, from the cache)."""
    from twotowers.metrics import mean_metrics

    def pairs(path):
        with open(path, encoding="utf-8") as f:
            return [line.rstrip("\n").split("\t", 1) for line in f if line.strip()]

    qs, ps = pairs(queries_tsv), pairs(collection_tsv)
    qrels: dict[str, dict[str, int]] = {}
    with open(qrels_tsv, encoding="utf-8") as f:
        for line in f:
            qid, _, pid, rel = line.split()
            qrels.setdefault(qid, {})[pid] = int(rel)
    pv = model.encode_passages([p[1] for p in ps]) if passage_vectors is None else passage_vectors
    qtexts = [q[1] for q in qs]
    model.encode_queries(qtexts[:32])  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        qv = model.encode_queries(qtexts)
        times.append(time.perf_counter() - t0)
    scores = qv @ pv.T
    top = np.argsort(-scores, axis=1)[:, :100]
    run = {qs[i][0]: [ps[j][0] for j in top[i]] for i in range(len(qs))}
    # As twotowers.evaluate: only queries with a relevant passage inside the collection count
    # (dev600 has 60 whose relevant passages are not in it: no model can find them).
    in_collection = {p[0] for p in ps}
    all_rel = {q for q, r in qrels.items() if any(v > 0 for v in r.values())}
    qrels = {q: r for q, r in qrels.items() if any(v > 0 and p in in_collection for p, v in r.items())}
    m = mean_metrics(run, qrels, ["ndcg@10", "mrr@10", "recall@100"])
    m["n_queries"], m["n_unreachable"] = len(qrels), len(all_rel - set(qrels))
    m["queries_per_s"] = len(qtexts) / float(np.median(times))
    return m


def run_distillation(cfg) -> dict:
    """Distil per `cfg` (train's config or any object with the DEFAULTS' names); returns a summary."""
    from twotowers import TwoTowers

    t0 = time.perf_counter()
    if not _get(cfg, "distill_from") or not _get(cfg, "distill_data"):
        raise ValueError("distillation needs --distill-from MODEL and --distill-data FILE [FILE ...]")
    seed = _get(cfg, "seed")
    torch.manual_seed(seed)
    queries, passages = read_texts(_get(cfg, "distill_data"))
    _log(f"{len(queries):,} unlabelled queries, {len(passages):,} passages from {len(_get(cfg, 'distill_data'))} files")
    teacher = load_teacher(_get(cfg, "distill_from"))
    cache = TeacherCache(_get(cfg, "distill_cache_dir")) if _get(cfg, "distill_cache_dir") else TeacherCache()
    tq = cache.encode(teacher, queries, "query") if queries else None
    tp = cache.encode(teacher, passages, "passage")
    if tq is None:
        tq = np.zeros((0, tp.shape[1]), np.float32)
    del teacher
    t_teacher = time.perf_counter() - t0

    if _get(cfg, "distill_init"):
        student = TwoTowers.from_pretrained(_get(cfg, "distill_init"))
    else:
        proj = _get(cfg, "projection_dim")
        student = TwoTowers(tower=_get(cfg, "tower"), projection_dim=None if proj in (0, -1) else proj,
                            rnn_hidden_size=_get(cfg, "rnn_hidden_size"), max_passage_length=_get(cfg, "max_passage_length"),
                            passage_tower=_get(cfg, "passage_tower"))
    if _get(cfg, "freeze_passage_tower"):
        student.passage_tower.requires_grad_(False)
    if _get(cfg, "device"):
        student.to(_get(cfg, "device"))
    dcfg = DistillConfig(
        epochs=_get(cfg, "epochs"), batch_size=_get(cfg, "batch_size"), learning_rate=_get(cfg, "learning_rate"),
        embedding_learning_rate=_get(cfg, "distill_embedding_lr"), weight_cosine=_get(cfg, "distill_weight_cosine"),
        weight_kl=_get(cfg, "distill_weight_kl"), weight_mse=_get(cfg, "distill_weight_mse"),
        temperature=_get(cfg, "distill_temperature"), candidates=_get(cfg, "distill_candidates"), seed=seed,
        max_seconds=_get(cfg, "distill_max_seconds"))
    extra = None
    w = float(_get(cfg, "distill_weight"))
    if _get(cfg, "data_files") and w < 1.0:
        examples = read_labelled(_get(cfg, "data_files"))
        _log(f"mixing the labelled in-batch loss on {len(examples):,} examples (weight {1 - w:g}) with distillation ({w:g})")
        extra = labelled_loss_fn(student, examples, _get(cfg, "batch_size"), (1 - w) / max(w, 1e-6), seed)
    summary = distill(student, queries, passages, tq, tp, dcfg, extra_loss=extra)
    summary.update(teacher_seconds=round(t_teacher, 1), cache_mib=round(cache.size_bytes() / 2**20, 1),
                   teacher=str(_get(cfg, "distill_from")), tower=student.tower_name)
    out = Path(_get(cfg, "output_dir") or f"runs/distill-{student.tower_name.replace('/', '-')}")
    if not _get(cfg, "no_save"):
        student.save_pretrained(out)
        (out / "distill_summary.json").write_text(json.dumps(summary, indent=2))
        _log(f"saved {out}")
    if _get(cfg, "eval_queries"):
        m = evaluate_retrieval(student, _get(cfg, "eval_queries"), _get(cfg, "eval_qrels"), _get(cfg, "eval_collection"))
        summary["eval"] = m
        _log("eval: " + json.dumps({k: round(v, 4) for k, v in m.items()}))
        if not _get(cfg, "no_save"):
            (out / "distill_summary.json").write_text(json.dumps(summary, indent=2))
    _log(f"total {time.perf_counter() - t0:.0f}s")
    return summary


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m train.distill", description=__doc__.split("\n")[0])
    for name, default in DEFAULTS.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(default, bool):
            ap.add_argument(flag, action="store_true")
        elif isinstance(default, list):
            ap.add_argument(flag, nargs="+", default=[])
        else:
            typ = type(default) if default is not None else str
            if name in ("distill_embedding_lr", "distill_max_seconds"):
                typ = float
            ap.add_argument(flag, type=typ, default=default)
    return run_distillation(ap.parse_args(argv))


if __name__ == "__main__":
    main()
