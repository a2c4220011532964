"""Publish a trained model, its passage index and a model card to the Hub, in one commit.

    python -m hub push --model runs/mean --index runs/mean-index --repo-id OWNER/NAME \
        --metrics runs/mean/eval-retrieve.json [--private] [--revision BRANCH] [--dry-run --out DIR]

The repo tree is staged first (model files at the root, the index under `index/`, `README.md`);
`--dry-run` stops there and leaves that exact tree in `--out`, otherwise every staged file goes up
through `HfApi.upload_folder`: with hf_xet (huggingface_hub 2.4's default) the large-folder path,
chunked, deduplicated and resumable by running the same push again (one commit for a tree of our
few dozen files; it batches commits only past hundreds of files); without it one `create_commit`.
Training calls `push_from_training` at the end of a run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

from twotowers.layout import (CONFIG_NAME, EXAMPLES_NAME, INDEX_SUBFOLDER, MODEL_FILES, REQUIRED_MODEL_FILES,
                               TRAIN_CONFIG_NAME, find_index)
from twotowers.textfiles import read_json
from twotowers.writing import make_readable

from .card import build_card
from .connect import PublishError, check_file_sizes, explain, hub_api, upload_tree
from .metrics import MetricSet, read_metrics, training_metric_sets
from .tree import check_empty, check_repo_id, describe, files_under, place

_log = logging.getLogger(__name__).info  # the default `log` of the functions below


def stage_model_repo(model_dir, index_dir, out, *, repo_id: str, metric_sets: list[MetricSet] = (),
                     train_config: dict | None = None, space_id: str | None = None, check_index: bool = True,
                     link: bool = False, example_queries: list[str] | None = None) -> list[str]:
    """Write the model repo's tree into `out` (which must be empty or absent) -> its relative paths.

    Model files are the ones `TwoTowers.from_pretrained` reads (checkpoints and optimizer state are
    left out), plus the sentence-transformers files where the towers have an equivalent; every file
    of the index goes under `index/`. With `check_index`, the index is loaded with the model first
    (checksums included), so an index built by another model is refused before anything is written.
    Files are copies unless `link` (a temporary tree that is uploaded, then deleted).
    `example_queries` become `examples.json`, the examples the Space shows.
    """
    model_dir, out = Path(model_dir), Path(out)
    missing = [f for f in REQUIRED_MODEL_FILES if not (model_dir / f).is_file()]
    if missing:
        raise PublishError(f"{model_dir} is not a saved TwoTowers model: missing {', '.join(missing)}")
    check_empty(out, "repo")
    model_config = read_json(model_dir / CONFIG_NAME, "a saved TwoTowers model's config")
    index_info = _check_index(model_dir, Path(index_dir)) if index_dir is not None and check_index else None
    if index_dir is not None and index_info is None:
        index_info = {}

    out.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        if (model_dir / name).is_file():
            place(model_dir / name, out / name, link=link)
    if index_dir is not None:
        for src in files_under(Path(index_dir)):
            place(src, out / INDEX_SUBFOLDER / src.relative_to(index_dir), link=link)
    if example_queries:
        (out / EXAMPLES_NAME).write_text(json.dumps({"queries": list(example_queries)}, indent=2, ensure_ascii=False))
    sentence_transformers = _stage_sentence_transformers(model_dir, out)
    card = build_card(repo_id, model_config, list(metric_sets), train_config=train_config,
                      index_info=index_info if index_dir is not None else None, space_id=space_id,
                      sentence_transformers=sentence_transformers)
    (out / "README.md").write_text(str(card), encoding="utf-8")
    for p in files_under(out):  # safetensors writes 0600: a tree served by another user must be readable
        if p.stat().st_nlink == 1:  # a copy or a file written here, never a hard link to the user's own file
            make_readable(p)
    return sorted(p.relative_to(out).as_posix() for p in files_under(out))


def _stage_sentence_transformers(model_dir: Path, out: Path) -> bool:
    """The sentence-transformers files beside the model's (mean/transformer towers only) -> written?"""
    from twotowers import TwoTowers
    from twotowers.st_export import supports_sentence_transformers, write_sentence_transformers

    model = TwoTowers.from_pretrained(str(model_dir), map_location="cpu")
    if not supports_sentence_transformers(model):
        return False
    write_sentence_transformers(model, out)
    return True


def push(model_dir, index_dir, repo_id: str, *, metrics_files=(), metric_sets: list[MetricSet] = (),
         private: bool = False, revision: str | None = None, dry_run: bool = False, out=None,
         train_config: dict | None = None, space_id: str | None = None, endpoint: str | None = None, log=_log,
         example_queries: list[str] | None = None) -> str:
    """Stage and upload (or, with `dry_run`, only stage into `out`) -> the commit URL or the out dir.

    The card's figures: `metrics_files` (evaluation JSON files) and `metric_sets` (figures already at hand)."""
    check_repo_id(repo_id)
    api = None if dry_run else hub_api(endpoint)  # fails fast (one line) with no token, before any work
    metric_sets = [*(read_metrics(metrics_files) if metrics_files else []), *metric_sets]
    if index_dir is None:
        log(f"note: no index given, so the repo gets no index/ (load_pretrained and the Space need one): build it with "
            f"`python -m twotowers.index build --model {model_dir} --collection FILE --out {model_dir}/index` and push again")
    recipe = Path(model_dir) / TRAIN_CONFIG_NAME  # written by `python -m train` beside the model
    if train_config is None and recipe.is_file():
        train_config = read_json(recipe, "the training run's settings")
    if dry_run:
        if out is None:
            raise PublishError("--dry-run needs --out DIR to write the repo tree into")
        files = stage_model_repo(model_dir, index_dir, out, repo_id=repo_id, metric_sets=metric_sets,
                                 train_config=train_config, space_id=space_id, example_queries=example_queries)
        check_file_sizes(Path(out), files)
        describe(log, "would create (exist_ok) model repo", repo_id, private, revision, Path(out), files)
        log(f"dry run: nothing was sent; the tree above is in {out}")
        return str(out)

    from twotowers.st_export import OWNED_PATHS  # the export's files: pruned on a new push, so a GRU model
    # pushed over a repo that once held a mean one keeps no stale modules.json

    # The temporary tree links the index's files (a multi-GB graph is not copied): beside the index, on its disk.
    with tempfile.TemporaryDirectory(prefix=".twotowers-push-", dir=_staging_parent(index_dir)) as tmp:
        files = stage_model_repo(model_dir, index_dir, tmp, repo_id=repo_id, metric_sets=metric_sets,
                                 train_config=train_config, space_id=space_id, link=True,
                                 example_queries=example_queries)
        check_file_sizes(Path(tmp), files)  # before anything is said or sent
        describe(log, "creating (exist_ok) model repo", repo_id, private, revision, Path(tmp), files)
        log("an interrupted upload resumes where it stopped: run the same command again")
        url = upload_tree(api, Path(tmp), files, repo_id, repo_type="model", private=private, revision=revision,
                          message=f"Upload twotowers model + index ({len(files)} files)",
                          prune=(f"{INDEX_SUBFOLDER}/", EXAMPLES_NAME, *OWNED_PATHS), large=True, log=log)
    log(f"pushed {len(files)} files: {url}")
    return url


def _staging_parent(index_dir) -> str | None:
    """Where the temporary tree goes: beside the index (hard links need its disk), else the system's tmp."""
    if index_dir is None:
        return None
    parent = Path(index_dir).resolve().parent
    return str(parent) if os.access(parent, os.W_OK) else None


def push_from_training(cfg, output_dir, metrics: dict | None = None, *, repo_id: str | None = None,
                       log=_log, raise_errors: bool = False) -> str | None:
    """Called by `python -m train --push-to-hub REPO` at the end of a run.

    Pushes `output_dir` (the final `save_pretrained`), `output_dir/index` when one was built, a card
    with `cfg` (a dataclass) as the recipe and `metrics` (the run's evaluation dict). Returns the
    commit URL; on failure, one line and None (the trained model stays on disk), or with
    `raise_errors` a PublishError of that line (training then exits 1). The metrics go to the card as
    they are (`hub.metrics.training_metric_sets`), never through a file.
    """
    train_config = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(vars(cfg))
    repo_id = repo_id or train_config.get("push_to_hub")
    output_dir = Path(output_dir)
    index_dir = find_index(output_dir)
    try:
        if not repo_id:
            raise PublishError("push_from_training needs a repo id (cfg.push_to_hub or repo_id=)")
        return push(output_dir, index_dir, repo_id, metric_sets=training_metric_sets(metrics or {}, train_config),
                    train_config=train_config, log=log)
    except (PublishError, ValueError, OSError) as e:
        if raise_errors:
            raise PublishError(f"push to the Hub failed: {explain(e)}") from None
        print(f"error: push to the Hub failed: {explain(e)}", file=sys.stderr)
        return None


# -- helpers -------------------------------------------------------------------------------------------
def _check_index(model_dir: Path, index_dir: Path) -> dict:
    """Load the index with the model (fingerprint, dim and count checks) -> facts for the card."""
    if not index_dir.is_dir():
        raise PublishError(f"index directory not found: {index_dir}")
    try:
        from twotowers import PassageIndex, TwoTowers

        model = TwoTowers.from_pretrained(str(model_dir))
        # every check `load` makes (checksums, the model's fingerprint), without loading a graph that may be
        # larger than this machine's memory
        meta = PassageIndex.check(index_dir, model=model)
    except PublishError:
        raise
    except Exception as e:  # noqa: BLE001 - the loader's message names the file; keep it
        raise PublishError(f"the index in {index_dir} does not load with the model in {model_dir}: {e}") from None
    corpus, count = meta.get("corpus"), meta["count"]  # corpus: recorded by `python -m twotowers.index build`
    info = {"passages": f"{count:,} from `{corpus}`" if corpus else f"{count:,} (the corpus was not recorded)"}
    for key in ("dim", "space", "M", "ef_construction", "ef"):
        if isinstance(meta.get(key), (int, float, str)):
            info[key] = meta[key]
    if "keyword" in meta:
        info["keyword (BM25) side"] = "yes" if meta["keyword"] else "no"
    return info
