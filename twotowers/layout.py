"""Where things are on disk, one name each: the files of a saved model, of a model repo (`python -m hub
push`: the model at its root, its index under `index/`, example queries) and of a training run's output;
and finding an index and the model beside it. Imports nothing heavy (no torch, no hnswlib).

    model dir / repo root   model.safetensors, config.json, base_config.json, tokenizer files, passage/...
                            examples.json                      (a repo: the example queries the app shows)
                            index/index.json, index/...        (a repo, or `hub push --dry-run`'s tree)
                            train_config.json, metrics.json    (`python -m train`'s output directory)
"""

from __future__ import annotations

from pathlib import Path

from .index.files import META_NAME, saved_dir

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"  # a saved TwoTowers: its constructor's arguments; a base model: its HF config
BASE_CONFIG_NAME = "base_config.json"  # the base encoder's HF config: vocab and shapes, no weights
PASSAGE_BASE_DIR = "passage"  # a passage side on another base: its base config and tokenizer files
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
MODEL_FILES = [WEIGHTS_NAME, CONFIG_NAME, BASE_CONFIG_NAME, *TOKENIZER_FILES,
               *(f"{PASSAGE_BASE_DIR}/{name}" for name in (BASE_CONFIG_NAME, *TOKENIZER_FILES))]
REQUIRED_MODEL_FILES = [WEIGHTS_NAME, CONFIG_NAME, BASE_CONFIG_NAME, "tokenizer.json"]  # the rest are optional

INDEX_SUBFOLDER = "index"
EXAMPLES_NAME = "examples.json"  # example queries shipped with the model (`hub push --example-queries`)
REPO_FILES = [*MODEL_FILES, EXAMPLES_NAME]  # besides index/: what the app and load_pretrained read

TRAIN_CONFIG_NAME = "train_config.json"  # the run's flags: beside the model and in each checkpoint
METRICS_NAME = "metrics.json"  # the run's final figures, beside the model


def is_saved_model(directory: str | Path) -> bool:
    """Whether `directory` holds a saved TwoTowers (its weights and config)."""
    d = Path(directory)
    return (d / WEIGHTS_NAME).is_file() and (d / CONFIG_NAME).is_file()


def holds_index(directory: str | Path) -> bool:
    """Whether `directory` is a saved PassageIndex (or the earlier one a killed save left beside it)."""
    return (saved_dir(Path(directory)) / META_NAME).is_file()


def find_index(root: str | Path, subfolder: str = INDEX_SUBFOLDER) -> Path | None:
    """The index a directory holds: its `subfolder` (a model repo, a model directory with `index/`), or the
    directory itself; None where neither is an index."""
    root = Path(root)
    for d in (root / subfolder, root) if subfolder else (root,):
        if holds_index(d):
            return d
    return None


def find_model(index_dir: str | Path) -> Path | None:
    """The saved model beside an index: in its directory or the one above (a model repo's root); None if neither."""
    index_dir = Path(index_dir)
    return next((d for d in (index_dir, index_dir.parent) if is_saved_model(d)), None)
