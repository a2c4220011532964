"""Imports of packages that only some jobs need (training extras live in requirements-train.txt)."""

import importlib
from types import ModuleType


class MissingExtra(ImportError):
    """A package this job needs is not installed; the message says which and how to install it."""


def import_optional(module: str, purpose: str) -> ModuleType:
    """Import `module`, or raise MissingExtra saying which job needs it and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        package = module.split(".")[0]
        raise MissingExtra(f"{purpose} needs the {package!r} package, which the app install leaves out: "
                           f"pip install -r requirements-train.txt") from e
