"""The model card (README.md of the model repo): Hub metadata, what the model is, how it was trained,
the measured metrics beside their baselines, and how to use it.

Every figure comes from evaluation JSON files or the training run's own results (`hub.metrics`), the architecture from
the saved `config.json`, and the training recipe from the run's config; nothing is typed by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from twotowers.metrics import display_name as pretty_metric
from twotowers.project import INSTALL, INSTALL_CPU, PROJECT_URL

from .metrics import MetricSet, metric_type

BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DATASET = "microsoft/ms_marco"
LICENSE = "apache-2.0"
TAGS = ["twotowers", "sentence-similarity", "dense-retrieval", "two-tower", "ms-marco", "hnswlib"]
_TASKS = {"retrieve": ("Retrieval", "Passage retrieval from the pooled corpus"),
          "rerank": ("Reranking", "Re-ranking each query's candidate passages")}
# What an evaluation file says about its data (hub.metrics context keys), told in a sentence, not listed.
_DATA_KEYS = {"mode", "queries", "qrels", "corpus", "corpus_passages", "dataset_config", "source"}
# Context that differs per system, shown as a column or not at all.
_PER_RUN = {"n_queries", "n_unreachable", "n_qrels_not_in_corpus", "seconds"}
_BASELINE_NOTES = {"bm25": "`bm25` is BM25 (bm25s) over the same corpus",
                   "untrained": "`untrained` is the same architecture before training",
                   "random": "`random` is a random ordering of each query's candidates"}
# Config keys never copied into a public card.
_SECRET_WORDS = ("token", "secret", "password", "api_key", "apikey")
# Run bookkeeping (where files went, how it logged), not how the model was trained: left out of the card.
_BOOKKEEPING = {"output_dir", "resume", "overwrite", "no_save", "save_steps", "keep_checkpoint", "distill_cache_dir",
                "no_wandb", "wandb_project", "wandb_entity", "log_steps", "num_workers", "device", "eval_batch_size",
                "sweep", "sweep_count", "push_to_hub"}
# Flags only labelled training reads, and only distillation reads: a run of the other kind shows none of them.
_LABELLED_ONLY = {"dataset", "dataset_config", "data_files", "max_samples", "loss", "margin", "scale", "num_negatives"}
# Flags naming local files: the card shows the file names only.
_FILE_KEYS = {"data_files", "validation_files", "test_queries", "test_qrels", "test_collection", "distill_data"}
# Flags naming a model: a Hub id as given, a local directory by its name only.
_MODEL_KEYS = {"base_model", "passage_base_model", "init_from", "distill_from"}


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
        _training(train_config, model_config),
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
        queries = s.context.get("queries")
        name = s.context.get("dataset") or (f"MS MARCO ({queries})" if queries else "MS MARCO")
        config = s.context.get("dataset_config")  # "v1.1" only where the data were v1.1 rows
        for key, value in s.metrics.items():
            ident = (task_type, split, key)
            if ident in seen:  # the same metric from two files: keep both, told apart by the file
                split = f"{split or 'eval'} ({Path(s.source).stem})"
                ident = (task_type, split, key)
            seen.add(ident)
            results.append(EvalResult(
                task_type=task_type, task_name=task_name, dataset_type=DATASET, dataset_name=str(name),
                dataset_config=str(config) if config else None, dataset_split=split,
                metric_type=metric_type(key), metric_name=pretty_metric(key), metric_value=value,
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


def _local_name(value: str) -> str:
    """A model reference for a public card: a Hub id or a short name as given, a local directory by its name."""
    p = Path(value).expanduser()
    if p.exists() or value.startswith((".", "/", "~")) or value.count("/") > 1:
        return f"{p.name} (a local directory)"
    return value


def public_config(train_config: dict, model_config: dict | None = None) -> dict:
    """The run's flags as a public card shows them: the hyperparameters actually used (defaults that
    depend on the tower resolved: learning rates, widths), file names instead of paths, no secrets, no
    run bookkeeping (output directory, logging, devices)."""
    from twotowers.towers import TOWERS

    cfg = {k: v for k, v in train_config.items()
           if k not in _BOOKKEEPING and not any(w in k.lower() for w in _SECRET_WORDS)}
    if "distill_from" in cfg:  # a config of `python -m train`: leave out what this run's objective never read
        unread = {k for k in cfg if k.startswith("distill_")} if not cfg["distill_from"] else \
            _LABELLED_ONLY if cfg.get("distill_weight", 1.0) >= 1.0 else set()
        cfg = {k: v for k, v in cfg.items() if k not in unread}
    for key in _FILE_KEYS & set(cfg):
        value = cfg[key]
        cfg[key] = [Path(v).name for v in value] if isinstance(value, list) else Path(value).name if value else value
    for key in _MODEL_KEYS & set(cfg):
        if isinstance(cfg[key], str):
            cfg[key] = _local_name(cfg[key])
    if cfg.get("learning_rate") is None and cfg.get("tower") in TOWERS:
        cfg["learning_rate"] = TOWERS[cfg["tower"]].learning_rate  # the tower's default, as the run used it
    if "embedding_learning_rate" in cfg and cfg["embedding_learning_rate"] is None:
        cfg["embedding_learning_rate"] = cfg.get("learning_rate")
    for key in ("projection_dim", "max_passage_length", "max_query_length"):
        if cfg.get(key) is None and (model_config or {}).get(key) is not None:
            cfg[key] = model_config[key]  # what the saved model was built with
    return cfg


def _training(train_config: dict | None, model_config: dict | None = None) -> str:
    head = "## How it was trained\n"
    if not train_config:
        return head + "\nThe training run's configuration was not recorded with this upload.\n"
    return (head + "\nThe run's settings (`python -m train` flags of the same names; defaults resolved to the "
            "values used, data files by name):\n\n```json\n"
            + json.dumps(public_config(train_config, model_config), indent=2, sort_keys=True, default=str) + "\n```\n")


def _measured(ctx: dict, model: MetricSet | None) -> str:
    """What one evaluation file measured, in a sentence: the queries, the corpus and the counts."""
    n = (model.context if model else ctx).get("n_queries")
    queries = f" (`{ctx['queries']}`" + (f", judgments `{ctx['qrels']}`" if ctx.get("qrels") else "") + ")" \
        if ctx.get("queries") else ""
    count = f"{n:,} queries" if isinstance(n, int) else "the queries"
    if str(ctx.get("mode", "retrieve")) == "rerank":
        return f"Re-ranking: each of {count}{queries} orders its own candidate passages."
    corpus = ctx.get("corpus")
    size = ctx.get("corpus_passages")
    where = (f"all {size:,} passages" if isinstance(size, int) else "the whole corpus") + \
        (f" of `{corpus}`" if corpus and " " not in corpus else f" ({corpus})" if corpus else "")
    unreachable = (model.context if model else ctx).get("n_unreachable")
    left_out = (f"; {unreachable:,} judged queries whose relevant passages are not in that corpus are left out"
                if isinstance(unreachable, int) and unreachable else "")
    return f"Retrieval: {count}{queries}, each searching {where}{left_out}."


def _system_name(s: MetricSet) -> str:
    """A row's name: the model as **this model** (never a local path an older evaluation file recorded)."""
    if not s.is_model:
        return s.name
    rest = s.name[len("model"):] if s.name.startswith("model") else ""
    rest = rest.split(")", 1)[1] if rest.startswith(" (") and ")" in rest else rest  # "model (runs/x) index ..."
    return "**this model**" + (f",{rest}" if rest.strip() else "")


def _results(metric_sets: list[MetricSet]) -> str:
    out = ["## Evaluation", ""]
    if not metric_sets:
        return "\n".join(out + ["No evaluation results were supplied with this upload.", ""])
    by_file: dict[str, list[MetricSet]] = {}
    for s in metric_sets:
        by_file.setdefault(s.source, []).append(s)
    for source, sets in by_file.items():
        shared = {k: v for k, v in sets[0].context.items() if k not in _PER_RUN and all(s.context.get(k) == v for s in sets)}
        desc = ", ".join(f"{k}: {v}" for k, v in shared.items() if k not in _DATA_KEYS)
        model = next((s for s in sets if s.is_model), None)
        where = f"`{Path(source).name}`" if source.endswith(".json") else source  # a file, or the training run
        out += [_measured(shared, model) + f" From {where}" + (f" ({desc})" if desc else "") + ":", ""]
        keys = list(dict.fromkeys(k for s in sets for k in s.metrics))
        primary = next((s.primary for s in sets if s.primary), None)
        counts = any("n_queries" in s.context for s in sets)
        out.append("| system | " + " | ".join(pretty_metric(k) + (" (primary)" if k == primary else "") for k in keys)
                   + (" | queries |" if counts else " |"))
        out.append("| --- |" + " ---: |" * (len(keys) + counts))
        for s in sets:
            name = _system_name(s)
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
# a machine without a GPU: the CPU build of torch (PyPI's Linux torch is the multi-GB CUDA one)
{INSTALL_CPU}
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
