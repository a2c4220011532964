"""The model card's figures as labelled metric sets: from evaluation JSON files (`python -m twotowers.evaluate
... --json OUT`, `read_metrics`), or from a training run's final figures as they are (`training_metric_sets`).

The model card never has a figure typed by hand: every number in it comes from here. The
evaluation CLI writes

    {"mode": "retrieve", "primary_metric": "ndcg@10", "queries": "queries.dev600.tsv", "qrels": "qrels.dev600.tsv",
     "corpus": "collection.bm25top20_sample600.tsv", "corpus_passages": 11809,
     "results": {"model": {"ndcg@10": 0.31, "mrr@10": 0.27, "recall@100": 0.82, "n_queries": 540, "n_unreachable": 60},
                 "untrained (same config)": {...}, "bm25": {...}}}

and the parser is defensive about that shape, since it only needs `metric@k -> number` pairs:
- a dict of metrics is one system, named by its key path without containers (`results`,
  `baselines`, ...); top-level metrics, or a system whose name starts with `model`/`trained`, are
  the model itself, every other system is a baseline;
- flat keys such as `random_ndcg@10` or `bm25/mrr@10` form a system named by their prefix;
- other scalars (`mode`, `split`, `n_queries`, ...) are kept as context.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

# `ndcg@10`, `NDCG@10`, `mrr@10`, `recall@100`, `map@100`, `map`, `precision@5`, `ndcg_at_10` ...
_METRIC = re.compile(r"^(ndcg|mrr|recall|map|precision|p|r|acc|accuracy|hit|hits|success)(?:(?:@|_at_)(\d+))?$", re.I)
_PREFIXED = re.compile(r"^(?P<prefix>.+?)[_/.:-](?P<metric>(?:ndcg|mrr|recall|map|precision|acc|accuracy|hit|hits|success)(?:(?:@|_at_)\d+)?)$", re.I)
# Containers that only group systems: left out of a system's display name.
_CONTAINERS = {"results", "baselines", "metrics", "scores", "systems"}


@dataclass
class MetricSet:
    """Metrics of one system (the model or a baseline) from one evaluation file."""

    name: str                                        # "model", "bm25", "untrained (same config)", ...
    metrics: dict[str, float]                        # canonical key ("ndcg@10") -> value, file order
    source: str                                      # the JSON file it came from
    context: dict[str, object] = field(default_factory=dict)  # mode, split, dataset, ... from that file
    primary: str | None = None                       # the file's primary metric, when it names one

    is_model: bool = False                           # the evaluated model itself, not a baseline


def canonical_metric(key: str) -> str | None:
    """`NDCG_at_10` -> `ndcg@10`; None when the key is not a metric name."""
    m = _METRIC.match(key.strip())
    if not m:
        return None
    name, k = m.group(1).lower(), m.group(2)
    return f"{name}@{k}" if k else name


def metric_type(key: str) -> str:
    """`ndcg@10` -> `ndcg_at_10` (the model-index `type`, as MTEB cards write it)."""
    return key.replace("@", "_at_")


def _number(v) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def read_metrics(paths) -> list[MetricSet]:
    """Parse evaluation JSON files -> metric sets (the model's first, in file order).

    Raises ValueError naming the file when a file is not JSON or holds no metric at all.
    """
    sets: list[MetricSet] = []
    for path in paths:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))  # a byte-order mark is not an error
        except FileNotFoundError:
            raise FileNotFoundError(f"metrics file not found: {path}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: not a JSON evaluation file ({e})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object of metrics, got {type(data).__name__}")
        found = _parse(data, str(path))
        if not found:
            raise ValueError(f"{path}: no metrics found (expected keys like 'ndcg@10', 'mrr@10', 'recall@100')")
        sets.extend(found)
    return sorted(sets, key=lambda s: not s.is_model)  # stable: model sets first, then baselines


def _parse(data: dict, source: str) -> list[MetricSet]:
    file_context = {k: v for k, v in data.items() if _scalar(v) and k != "primary_metric" and not _is_metric_entry(k, v)}
    primary = data.get("primary_metric")
    primary = canonical_metric(primary) if isinstance(primary, str) else None
    groups: dict[tuple, dict[str, float]] = {}   # path of dict keys (or (prefix,)) -> metrics
    contexts: dict[tuple, dict] = {}

    def walk(d: dict, path: tuple) -> None:
        for key, value in d.items():
            key = str(key)
            if isinstance(value, dict):
                walk(value, path + (key,))
                continue
            num = _number(value)
            metric = canonical_metric(key) if num is not None else None
            if metric is not None:
                groups.setdefault(path, {})[metric] = num
            elif num is not None and (m := _PREFIXED.match(key)):  # flat `bm25_ndcg@10`, `random_mrr@10`
                groups.setdefault((m.group("prefix"),), {})[canonical_metric(m.group("metric"))] = num
            elif path and _scalar(value) and key != "primary_metric":
                contexts.setdefault(path, {})[key] = value

    walk(data, ())
    sets = []
    for path, metrics in groups.items():
        shown = [p for p in path if p.lower() not in _CONTAINERS]
        name = "/".join(shown) or "model"
        is_model = not shown or shown[-1].lower().startswith(("model", "trained", "this model"))
        sets.append(MetricSet(name, metrics, source, {**file_context, **contexts.get(path, {})},
                              primary if is_model else None, is_model))
    return sets


def _scalar(v) -> bool:
    return isinstance(v, (str, int, float, bool))
def _is_metric_entry(key: str, value) -> bool:
    return _number(value) is not None and (canonical_metric(key) is not None or _PREFIXED.match(key) is not None)


def training_metric_sets(final: dict, train_config: dict | None = None) -> list[MetricSet]:
    """A training run's final figures (`test/ndcg@10`, `val/mrr@10`, `val/random_mrr@10`, `test/n_queries`, ...)
    -> the model's sets (the retrieval test, the re-rank validation) and the validation's random-order
    baseline, with what was measured taken from the run's flags (`train_config`: file names, never paths)."""
    measured = _measured_data(train_config or {})
    sets = []
    for mode, prefix, source in (("retrieve", "test/", "the training run's final retrieval test"),
                                 ("rerank", "val/", "the training run's final re-rank validation")):
        part = {k[len(prefix):]: v for k, v in final.items() if k.startswith(prefix) and _number(v) is not None}
        context = {"mode": mode, "source": "training run (final)", **measured[mode]}
        model = {canonical_metric(k): float(v) for k, v in part.items() if canonical_metric(k)}
        if not model:
            continue
        counts = {k: v for k, v in part.items() if not canonical_metric(k) and not k.startswith("random_")}
        sets.append(MetricSet("model", model, source, {**context, **counts}, is_model=True))
        random = {canonical_metric(k[len("random_"):]): float(v) for k, v in part.items()
                  if k.startswith("random_") and canonical_metric(k[len("random_"):])}
        if random:
            sets.append(MetricSet("random", random, source, context))
    return sets


def _names(files) -> str:
    return ", ".join(Path(f).name for f in files)


def _measured_data(train_config: dict) -> dict:
    """What the run's tests measured (hub.card tells it): file names from its flags, never their paths."""
    c = train_config
    if c.get("test_queries") and c.get("test_qrels") and c.get("test_collection"):
        test = {"queries": _names([c["test_queries"]]), "qrels": _names([c["test_qrels"]]),
                "corpus": _names([c["test_collection"]])}
    elif c.get("validation_files"):
        test = {"queries": _names(c["validation_files"]), "corpus": "the pooled candidate passages of those rows",
                "dataset_config": "v1.1"}
    else:
        test = {}
    val = {"queries": _names(c["validation_files"]), "dataset_config": "v1.1"} if c.get("validation_files") else {}
    return {"retrieve": test, "rerank": val}
