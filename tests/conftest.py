"""Shared fixtures. Tests never touch the network: the Hub and W&B are switched to offline."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Real MS MARCO files live beside the checkout (../shared), never inside it.
MSMARCO = Path(os.environ.get("TWOTOWERS_MSMARCO_DIR", Path(__file__).resolve().parents[2] / "shared" / "data" / "msmarco"))


@pytest.fixture(scope="session")
def msmarco() -> Path:
    """The shared MS MARCO data dir; tests that need it skip where it is absent."""
    if not MSMARCO.is_dir():
        pytest.skip(f"MS MARCO data not found at {MSMARCO}")
    return MSMARCO


def read_collection(path: Path, limit: int | None = None) -> tuple[list[str], list[str]]:
    """pid<TAB>text file -> (ids, texts), the first `limit` rows."""
    from twotowers.collection import read_collection as read_all

    ids, texts = read_all(path)
    return ids[:limit], texts[:limit]


@pytest.fixture(scope="session")
def dev_passages(msmarco) -> list[str]:
    """500 real passages from the dev600 collection."""
    return read_collection(msmarco / "dev-small" / "collection.bm25top20_sample600.tsv", 500)[1]


def run_cli(main, argv: list[str], capsys) -> tuple[int, str, str]:
    """Run a command line's `main(argv)` as `python -m` would (one-line errors) -> (status, stdout, stderr)."""
    from twotowers.cli import run_main

    try:
        status = run_main(lambda: main(argv))
    except SystemExit as e:  # argparse and `sys.exit` in main
        status = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return status, out, err


def one_error_line(err: str) -> str:
    """The single `error: ...` line a refused command prints: its last line on stderr, no traceback (the log
    lines of what it did before may stand above it)."""
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0] and "Traceback" not in err, err[-2000:]
    return errors[0]


from twotowers.cli import configure_logging  # noqa: E402

configure_logging()  # log lines on stderr, as every command line shows them (run_main does the same)
