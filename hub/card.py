"""The model card (README.md of the model repo): Hub metadata, what the model is, how it was trained,
the measured metrics beside their baselines, and how to use it.

Every figure comes from evaluation JSON files (`hub.metrics.read_metrics`), the architecture from
the saved `config.json`, and the training recipe from the run's config; nothing is typed by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from twotowers.project import INSTALL, PROJECT_URL

from .metrics import MetricSet, metric_type, pretty_metric

BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DATASET = "microsoft/ms_marco"
LICENSE = "apache-2.0"
TAGS = ["twotowers", "sentence-similarity", "dense-retrieval", "two-tower", "ms-marco", "hnswlib"]
_TASKS = {"retrieve": ("Retrieval", "Passage retrieval from the pooled corpus"),
          "rerank": ("Reranking", "Re-ranking each query's candidate passages")}
# Context that differs per system, shown as a column or not at all.
_PER_RUN = {"n_queries", "n_unreachable", "seconds"}
_BASELINE_NOTES = {"bm25": "`bm25` is BM25 (bm25s) over the same corpus",
                   "untrained": "`untrained` is the same architecture before training",
                   "random": "`random` is a random ordering of each query's candidates"}
# Config keys never copied into a public card.
_SECRET_WORDS = ("token", "secret", "password", "api_key", "apikey")


def _base_rows(cfg: dict) -> list[str]:
    """The base model row(s): one, or one a side where the passage tower has a base of its own; with the
    pooling and prompt a transformer tower takes from its base."""
    link = lambda b: f"[`{b}`](https://huggingface.co/{b})"
    query_base, passage_base = cfg.get("base_model", BASE_MODEL), cfg.get("passage_base_model")
    rows = ([f"| base model | {link(query_base)} |"] if passage_base in (None, query_base) else
            [f"| base model (queries) | {link(query_base)} |", f"| base model (passages) | {link(passage_base)} |"])
    for side, pooling, prompt in (("queries", cfg.get("pooling"), cfg.get("query_prompt")),
                                  ("passages", cfg.get("passage_pooling"), cfg.get("passage_prompt"))):
        if pooling:
            rows.append(f"| pooling ({side}) | {pooling} |")
        if prompt:
            rows.append(f"| prompt ({side}) | `{prompt}` |")
    return rows


def build_card(repo_id: str, model_config: dict, metric_sets: list[MetricSet], *, train_config: dict | None = None,
               index_info: dict | None = None, space_id: str | None = None,
               sentence_transformers: bool = False) -> ModelCard:
    """Assemble the model card for `repo_id` (front matter + markdown body).

    `sentence_transformers`: the repo also holds the sentence-transformers files (twotowers.st_export)."""
    model_name = repo_id.split("/")[-1]
    data = ModelCardData(
        library_name="twotowers",
        language=["en"],
        tags=TAGS + [f"tower-{model_config.get('tower', 'mean')}"] + (["sentence-transformers"] if sentence_transformers else []),
        base_model=list(dict.fromkeys(b for b in (model_config.get("base_model") or BASE_MODEL,
                                                  model_config.get("passage_base_model")) if b)),
        datasets=[DATASET],
        pipeline_tag="sentence-similarity",
        license=LICENSE,
        model_name=model_name,
        eval_results=eval_results(metric_sets) or None,
    )
    body = "\n".join([
        f"# {model_name}",
        "",
        _about(repo_id, model_config, index_info, sentence_transformers),
        _usage(repo_id, space_id, index_info is not None, sentence_transformers, model_config),
        _training(train_config),
        _results(metric_sets),
        _limitations(),
    ])
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


def eval_results(metric_sets: list[MetricSet]) -> list[EvalResult]:
    """The model's own metrics (not the baselines') as model-index entries."""
    results, seen = [], set()
    for s in metric_sets:
        if not s.is_model:
            continue
        mode = str(s.context.get("mode", "retrieve")).lower()
        task_type, task_name = _TASKS.get(mode, (mode.capitalize(), mode))
        split = s.context.get("split")
        split = str(split) if split is not None else None
        for key, value in s.metrics.items():
            ident = (task_type, split, key)
            if ident in seen:  # the same metric from two files: keep both, told apart by the file
                split = f"{split or 'eval'} ({Path(s.source).stem})"
                ident = (task_type, split, key)
            seen.add(ident)
            results.append(EvalResult(
                task_type=task_type, task_name=task_name, dataset_type=DATASET,
                dataset_name=str(s.context.get("dataset", "MS MARCO")), dataset_config="v1.1",
                dataset_split=split, metric_type=metric_type(key), metric_name=pretty_metric(key), metric_value=value,
            ))
    return results


def _about(repo_id: str, cfg: dict, index_info: dict | None, sentence_transformers: bool) -> str:
    tower = f"`{cfg.get('tower', 'mean')}`"
    if cfg.get("passage_tower"):  # sides of different architectures: query / passage
        tower = f"{tower} (queries) / `{cfg['passage_tower']}` (passages)"
    proj = cfg.get("projection_dim")
    lines = [
        "A two-tower dense passage retrieval model trained on MS MARCO with the "
        "`twotowers` library: a **query tower** and a **passage tower** (separate weights) "
        "map text to L2-normalised vectors, and passages are found by nearest-neighbour search on the cosine "
        "similarity (hnswlib, inner product).",
        "",
        "| | |",
        "| --- | --- |",
        f"| tower | {tower} |",
        *_base_rows(cfg),
        f"| output dim | {proj if proj is not None else 'encoder width (no projection)'} |",
        f"| max query / passage tokens | {cfg.get('max_query_length', '?')} / {cfg.get('max_passage_length', '?')} |",
    ]
    if index_info:
        lines += [f"| index: {k} | {v} |" for k, v in index_info.items()]
    lines += [
        "",
        "Files: `model.safetensors` (weights), `config.json` (the constructor's arguments), `base_config.json` and "
        "the tokenizer files" + ("; `modules.json`, `config_sentence_transformers.json`, `0_Router/` and `1_Normalize/` "
                                 "let sentence-transformers load the same model" if sentence_transformers else "")
        + (", and `index/`, a prebuilt passage index encoded by this model (every file's checksum in `index/index.json`)."
           if index_info is not None else ". No passage index is included; build one with the command below."),
        "",
        f"Code: [{PROJECT_URL}]({PROJECT_URL})",
        "",
    ]
    return "\n".join(lines)


def _training(train_config: dict | None) -> str:
    head = "## How it was trained\n"
    if not train_config:
        return head + "\nThe training run's configuration was not recorded with this upload.\n"
    safe = {k: v for k, v in train_config.items() if not any(w in k.lower() for w in _SECRET_WORDS)}
    return (head + "\nThe run's configuration (`python -m train` flags of the same names):\n\n```json\n"
            + json.dumps(safe, indent=2, sort_keys=True, default=str) + "\n```\n")


def _results(metric_sets: list[MetricSet]) -> str:
    out = ["## Evaluation", ""]
    if not metric_sets:
        return "\n".join(out + ["No evaluation results were supplied with this upload.", ""])
    by_file: dict[str, list[MetricSet]] = {}
    for s in metric_sets:
        by_file.setdefault(s.source, []).append(s)
    for source, sets in by_file.items():
        shared = {k: v for k, v in sets[0].context.items() if k not in _PER_RUN and all(s.context.get(k) == v for s in sets)}
        desc = ", ".join(f"{k}: {v}" for k, v in shared.items())
        out += [f"From `{Path(source).name}`" + (f" ({desc})" if desc else "") + ":", ""]
        keys = list(dict.fromkeys(k for s in sets for k in s.metrics))
        primary = next((s.primary for s in sets if s.primary), None)
        counts = any("n_queries" in s.context for s in sets)
        out.append("| system | " + " | ".join(pretty_metric(k) + (" (primary)" if k == primary else "") for k in keys)
                   + (" | queries |" if counts else " |"))
        out.append("| --- |" + " ---: |" * (len(keys) + counts))
        for s in sets:
            name = f"**{s.name}** (this model)" if s.is_model else s.name
            row = [f"{s.metrics[k]:.4f}" if k in s.metrics else "–" for k in keys]
            row += [str(s.context.get("n_queries", "–"))] if counts else []
            out.append(f"| {name} | " + " | ".join(row) + " |")
        out.append("")
    names = " ".join(s.name.lower() for s in metric_sets if not s.is_model)
    notes = [text for word, text in _BASELINE_NOTES.items() if word in names]
    if notes:
        out += ["Baselines come from the same evaluation run: " + "; ".join(notes) + ".", ""]
    return "\n".join(out)


def _usage(repo_id: str, space_id: str | None, has_index: bool, sentence_transformers: bool, cfg: dict) -> str:
    out = [f"""## Use it

```bash
{INSTALL}
```

The model, to encode text (safetensors and JSON only; no remote code):

```python
from twotowers import TwoTowers

model = TwoTowers.from_pretrained("{repo_id}")                    # pin revision="<commit>" to reproduce
q = model.encode_queries(["what is the reserve bank of australia"])  # [1, dim] unit vectors
p = model.encode_passages(["The Reserve Bank of Australia is Australia's central bank."])
scores = p @ q[0]                                                  # cosine similarities
```
"""]
    if sentence_transformers:
        out.append(f"""With [sentence-transformers](https://sbert.net) (>= 5.0; its own modules, no `trust_remote_code`), the same vectors:

```python
from sentence_transformers import SentenceTransformer

model = SentenceTransformer("{repo_id}")
q = model.encode_query(["what is the reserve bank of australia"])   # the query tower
p = model.encode_document(["The Reserve Bank of Australia is Australia's central bank."])  # the passage tower
scores = model.similarity(q, p)                                      # cosine
```
""")
    else:
        kind = cfg.get("tower", "?") if cfg.get("tower") not in ("mean", "transformer") else cfg.get("passage_tower", "?")
        out.append(f"This model's `{kind}` towers have no sentence-transformers equivalent: it loads with `twotowers` "
                   f"only (`TwoTowers.from_pretrained(\"{repo_id}\")`, above).\n")
    if has_index:
        out.append(f"""Search the prebuilt index (model and index come from one download of one revision; the index's
files are checked against their checksums, and an index built by another model is refused):

```python
from twotowers.pretrained import load_pretrained

model, index = load_pretrained("{repo_id}")
hits = index.search(["what is the reserve bank of australia"], k=10)[0]   # hybrid (dense + BM25) where the index has BM25; mode="dense": the towers alone
print([(h.id, round(h.score, 3), h.text[:80]) for h in hits])
```
""")
    out.append(f"""Index your own passages with this model (`pid<TAB>text` lines, JSONL or parquet):

```bash
python -m twotowers.index build --model {repo_id} --collection collection.tsv --out my-index
python -m twotowers.index search my-index "what is the reserve bank of australia" -k 10
```
""")
    if space_id:
        out.append(f"""Query the demo Space from Python (or its plain JSON route, `GET /v1/search?q=...&k=10`):

```python
from gradio_client import Client

client = Client("{space_id}")
print(client.predict("what is the reserve bank of australia", 10, api_name="/search"))
```
""")
    return "\n".join(out)


def _limitations() -> str:
    return """## Limitations

- The retrieval figures above rank passages from a pooled corpus (the candidate passages of the evaluated
  queries, or a sampled collection), not MS MARCO's 8.8M-passage collection: they compare the systems in
  the same table, and are higher than full-collection figures would be.
- Trained and evaluated on English web questions (MS MARCO); other languages and domains are not measured.
- Query and passage texts are truncated to the token limits above.
- MS MARCO is released for non-commercial research; check its terms before any commercial use.
"""
