"""Thin command-line interface: one sub-command per pipeline step.

Each verb lives in its own module ``panoplace/cli/<verb>.py`` exposing
``register(subparsers) -> None``; the parser it adds sets ``func`` to a callable taking the
parsed ``argparse.Namespace`` and returning an exit code. The verbs call library functions
only; no pipeline logic lives here.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import NoReturn, Optional, Sequence, TextIO

from panoplace import __version__
from panoplace.atomic import write_errno, write_error
from panoplace.cli.argtypes import ValueRefusal, check_paths
from panoplace.errors import PanoplaceError
from panoplace.outputs import set_command

# Order is the order shown in --help. A verb whose module is missing is simply not offered.
VERBS = [
    "demo",
    "synth",
    "ingest",
    "unwrap",
    "extract",
    "cluster",
    "train",
    "pca",
    "index",
    "localize",
    "evaluate",
    "scene",
    "map",
    "serve",
    "export",
]

log = logging.getLogger("panoplace")


class OptionValueRefused(Exception):
    """An option value refused by a type of :mod:`panoplace.cli.argtypes`; ``str()`` is the one
    error line ``panoplace VERB: error: argument --OPT: ...`` that :func:`main` prints."""


class _Parser(argparse.ArgumentParser):
    """argparse's parser whose errors for a refused option value (a :mod:`panoplace.cli.argtypes`
    type) are one line and exit 2 from :func:`main` (no usage block); other errors (unknown
    options, bad choices, missing arguments) stay argparse's usage + error and ``SystemExit``.
    Sub-parsers are of the same class."""

    def error(self, message: str) -> NoReturn:
        exc = sys.exc_info()[1]
        if isinstance(exc, argparse.ArgumentError) and isinstance(exc.__context__, ValueRefusal):
            raise OptionValueRefused(f"{self.prog}: error: {message}")
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every available verb registered."""
    parser = _Parser(
        prog="panoplace",
        description="Visual place recognition on panoramic images.",
    )
    parser.add_argument("--version", action="version", version=f"panoplace {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND")
    for verb in VERBS:
        try:
            module = importlib.import_module(f"panoplace.cli.{verb}")
        except ModuleNotFoundError as exc:
            if exc.name == f"panoplace.cli.{verb}":
                continue
            raise
        module.register(sub)
    return parser


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time (so captured/redirected streams work)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> TextIO:  # noqa: D401
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:  # StreamHandler.__init__ assigns it; ignore
        pass


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    """Configure the root panoplace logger for terminal use (CLI only)."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    root = logging.getLogger("panoplace")
    root.handlers[:] = [handler]
    root.setLevel(level)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``panoplace`` console script."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except OptionValueRefused as exc:
        print(exc, file=sys.stderr)
        return 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    setup_logging(args.verbose, args.quiet)
    set_command(" ".join(["panoplace", *(sys.argv[1:] if argv is None else [str(a) for a in argv])]))
    try:
        check_paths(args)  # inputs that must exist: one error line before anything runs
        return int(args.func(args) or 0)
    except PanoplaceError as exc:
        print(f"panoplace {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a write the library did not name (disk full, read-only, permission)
        code = write_errno(exc)
        if code is None:
            raise
        print(f"panoplace {args.verb}: error: {write_error(exc.filename or 'an output', code)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"panoplace {args.verb}: interrupted", file=sys.stderr)
        return 130
    finally:
        set_command(None)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
