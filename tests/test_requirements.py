"""The app install (requirements.txt) leaves the training extras out: serving must not need them."""

import subprocess
import sys
from pathlib import Path

import pytest

from twotowers.optional import import_optional

ROOT = Path(__file__).resolve().parents[1]
TRAIN_ONLY = ("datasets", "pyarrow", "wandb")

pytestmark = pytest.mark.slow  # fresh processes


def test_app_library_and_hub_import_without_the_training_extras():
    # None in sys.modules makes `import x` raise ImportError, as if the package were not installed.
    code = (f"import sys\nfor m in {TRAIN_ONLY!r}: sys.modules[m] = None\n"
            "import app, twotowers, twotowers.index, twotowers.index.__main__, twotowers.evaluate, hub.push\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_training_extras_are_pinned_outside_the_app_requirements():
    app_reqs = (ROOT / "requirements.txt").read_text()
    train_reqs = (ROOT / "requirements-train.txt").read_text()
    for name in TRAIN_ONLY:
        assert f"\n{name}==" not in app_reqs and f"\n{name}==" in train_reqs
    assert "-r requirements.txt" in train_reqs
    assert "-r requirements-train.txt" in (ROOT / "requirements-dev.txt").read_text()


def test_a_missing_optional_package_names_the_install_command():
    with pytest.raises(ImportError, match=r"parquet rows needs the 'no_such_pkg' package.*requirements-train\.txt"):
        import_optional("no_such_pkg.sub", "parquet rows")
