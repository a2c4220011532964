"""What every command line shares: flags from a config dataclass, bad input as one `error:` line, and logging.

    parser = ArgumentParser(...)
    add_dataclass_arguments(parser, BuildConfig)     # --field-name for each field; help from metadata
    cfg = dataclass_from_args(BuildConfig, args, parser)
    sys.exit(run_main(main))                          # ValueError / OSError -> "error: ..." on stderr, exit 1

Every module logs through `logging.getLogger(__name__)`; `configure_logging` (which `run_main` calls)
shows this project's INFO lines on stderr, one line each, above a progress bar where one is drawn (a
bar is train/progress.py's own; it is not logging).

A failure the user can fix (a bad file, a wrong value, a missing download) is one line naming the
file, line or value; anything else is a bug and keeps its traceback. `TWOTOWERS_TRACEBACK=1` shows
the traceback of a one-line error too.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import typing
from collections.abc import Callable

from .optional import MissingExtra


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line too: `error: <what> (see --help)`, exit status 2."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see --help)\n")


def str2bool(v: str) -> bool:
    """'true'/'false' (and 1/0, yes/no), as W&B sweep agents pass booleans."""
    if v.lower() in ("1", "true", "yes", "y"):
        return True
    if v.lower() in ("0", "false", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {v!r}")


def _none_or(typ):
    def parse(v: str):
        return None if v.lower() in ("none", "null", "") else typ(v)

    parse.__name__ = typ.__name__
    return parse


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls, exclude: tuple[str, ...] = ()) -> None:
    """One `--field-name` flag per field of `cls`: type from the annotation, help from metadata["help"].

    bool: `--flag`, `--flag=false` and `--no-flag`; list[T]: `--flag A B ...`; `T | None`: 'none' -> None.
    A field without a default is a required flag. `--help` shows each default (unless the help text
    already says what it is). metadata["choices"], a registry (a dict by name), fills "{choices}" in the
    help with its names as they are when the parser is built (the field's own check refuses others).
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        typ, flag = hints[f.name], "--" + f.name.replace("_", "-")
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default = None if required else f.default if f.default is not dataclasses.MISSING else f.default_factory()
        help_text = f.metadata.get("help", "")
        if "choices" in f.metadata:
            help_text = help_text.replace("{choices}", ", ".join(f.metadata["choices"]))
        kwargs = {"help": _with_default(help_text, default, required), "dest": f.name}
        args = typing.get_args(typ)
        if typ is bool:
            parser.add_argument(flag, nargs="?", const=True, default=default, type=str2bool, **kwargs)
            if not f.name.startswith("no_"):
                parser.add_argument("--no-" + f.name.replace("_", "-"), dest=f.name, action="store_false",
                                    help=argparse.SUPPRESS)
            continue
        if typing.get_origin(typ) is list:
            kwargs.update(nargs="+", type=args[0])
        elif type(None) in args:  # X | None
            kwargs.update(type=_none_or(next(a for a in args if a is not type(None))))
        else:
            kwargs.update(type=typ)
        parser.add_argument(flag, required=required, default=default, **kwargs)


def _with_default(help_text: str, default, required: bool) -> str:
    """The help text with "(default: X)" appended, unless the text already names its default."""
    if required or "default" in help_text.lower():
        return help_text
    shown = ("true" if default else "false") if isinstance(default, bool) else \
        " ".join(map(str, default)) or "none" if isinstance(default, list) else "none" if default is None else default
    return f"{help_text} (default: {shown})".replace("%", "%%")


def dataclass_from_args(cls, args: argparse.Namespace, parser: argparse.ArgumentParser | None = None):
    """The config `cls` from parsed flags; a value its `__post_init__` refuses exits with the reason."""
    names = {f.name for f in dataclasses.fields(cls)}
    try:
        return cls(**{k: v for k, v in vars(args).items() if k in names})
    except ValueError as e:
        if parser is None:
            raise
        parser.error(str(e))


LOGGERS = ("twotowers", "train", "hub", "webapp", "app", "bench",  # this project's top-level packages and scripts,
           "__main__")  # and the module `python -m` runs, whose logger is named "__main__"


class _LineHandler(logging.Handler):
    """A record a line on stderr as it is when written (a redirect, a test's capture), through tqdm's writer
    so that a progress bar on the same terminal is redrawn below the line, not broken by it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging's own convention: a failed write is reported, never raised
            self.handleError(record)


def configure_logging(level: int = logging.INFO) -> None:
    """Show this project's log lines (`LOGGERS`) at `level` on stderr, the message alone; under torchrun, only
    rank 0's (the other processes' warnings and errors still show). Safe to call again."""
    rank = int(os.environ.get("RANK", "0"))
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(h, _LineHandler) for h in logger.handlers):
            logger.addHandler(_LineHandler())
        logger.setLevel(level if rank == 0 else max(level, logging.WARNING))


def run_main(main: Callable[[], object], *, also: tuple[type[BaseException], ...] = (),
             describe: Callable[[BaseException], str] = str) -> int:
    """Run a command line's `main` with logging configured; a user-fixable failure becomes one `error:`
    line and exit status 1.

    `also`: more exception types that mean bad input or an unreachable service; `describe` turns an
    error into its line (e.g. with a token redacted)."""
    configure_logging()
    try:
        main()
    except (ValueError, OSError, MissingExtra, *also) as e:
        if os.environ.get("TWOTOWERS_TRACEBACK"):
            raise
        message = " ".join(describe(e).split()) or type(e).__name__
        print(f"error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0
