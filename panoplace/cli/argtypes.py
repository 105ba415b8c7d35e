"""Option values checked when the command line is parsed: argparse ``type=`` callables.

Each callable turns the option's text into its value or raises
:class:`argparse.ArgumentTypeError` with a message that says what was expected and what was
given; argparse prints it as one line ``panoplace VERB: error: argument --OPT: MESSAGE`` and
exits 2 before anything is computed. A type is applied to every value of an option with
``nargs`` and to string defaults.

Rules (``docs/CONTRACTS.md``, "Option values"):

- integers are integers (``1.5`` and ``1e3`` are refused), floats are finite (``nan``/``inf``
  refused) and both are range-checked (:func:`positive_int`, :func:`non_negative_int`,
  :func:`int_between`, :func:`positive_float`, :func:`non_negative_float`, :func:`float_between`,
  :func:`probability`);
- booleans are parsed, not cast: :func:`boolean` takes true/false, yes/no, on/off, 1/0 (any
  case) and refuses anything else (``bool("false")`` is True);
- an input that must exist is checked to exist and to be a file (:func:`existing_file`), a
  folder (:func:`existing_dir`) or either (:func:`existing_path`) right after parsing
  (:func:`check_paths`, called by the CLI's ``main``): ``index file not found: PATH``;
- options that only apply to another mode are refused by the verb with
  :func:`refuse_unless`, naming the option and what it needs.

>>> positive_int("3"), probability("0.25"), boolean("No")
(3, 0.25, False)
"""

from __future__ import annotations

import argparse
import math
import os
from typing import Callable, Iterable, List, Optional

from panoplace.booleans import BOOLEAN_FALSE, BOOLEAN_TRUE, parse_bool
from panoplace.errors import InputError

__all__ = [
    "BOOLEAN_FALSE",
    "BOOLEAN_TRUE",
    "PathArg",
    "ValueRefusal",
    "boolean",
    "check_paths",
    "device",
    "existing_dir",
    "existing_file",
    "existing_path",
    "finite_float",
    "float_between",
    "given",
    "int_between",
    "non_negative_float",
    "non_negative_int",
    "parse_bool",
    "port",
    "positive_float",
    "positive_int",
    "probability",
    "refuse_unless",
    "seed",
    "weights",
]



class ValueRefusal(argparse.ArgumentTypeError):
    """An option value these types refuse (argparse prints ``argument --OPT: MESSAGE``)."""


_Error = ValueRefusal


def _integer(text: str) -> int:
    s = str(text).strip()
    try:
        return int(s, 10)
    except ValueError:
        raise _Error(f"must be an integer, got {text!r}") from None


def _float(text: str) -> float:
    try:
        value = float(str(text).strip())
    except ValueError:
        raise _Error(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise _Error(f"must be a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (counts, sizes, batch sizes)."""
    value = _integer(text)
    if value < 1:
        raise _Error(f"must be an integer >= 1, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (worker counts, optional sizes where 0 means none)."""
    value = _integer(text)
    if value < 0:
        raise _Error(f"must be an integer >= 0, got {text!r}")
    return value


#: Random seeds are non-negative integers (numpy refuses negative seeds).
seed = non_negative_int


def int_between(lo: int, hi: int) -> Callable[[str], int]:
    """An integer in ``[lo, hi]``."""

    def parse(text: str) -> int:
        value = _integer(text)
        if not lo <= value <= hi:
            raise _Error(f"must be an integer from {lo} to {hi}, got {text!r}")
        return value

    parse.__name__ = f"int_between_{lo}_{hi}"
    return parse


def finite_float(text: str) -> float:
    """Any finite number."""
    return _float(text)


def positive_float(text: str) -> float:
    """A finite number > 0 (radii, rates, lengths)."""
    value = _float(text)
    if value <= 0:
        raise _Error(f"must be a number > 0, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0."""
    value = _float(text)
    if value < 0:
        raise _Error(f"must be a number >= 0, got {text!r}")
    return value


def float_between(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> Callable[[str], float]:
    """A finite number in ``[lo, hi]`` (``(`` / ``)`` where ``lo_open`` / ``hi_open``)."""
    interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"

    def parse(text: str) -> float:
        value = _float(text)
        if value < lo or value > hi or (lo_open and value == lo) or (hi_open and value == hi):
            raise _Error(f"must be a number in {interval}, got {text!r}")
        return value

    parse.__name__ = f"float_between_{lo:g}_{hi:g}"
    return parse


#: A probability or fraction in [0, 1].
probability = float_between(0.0, 1.0)


def boolean(text: str) -> bool:
    """A boolean word: true/false, yes/no, on/off, 1/0 (any case)."""
    try:
        return parse_bool(text)
    except InputError:
        raise _Error(f"must be true/false, yes/no, on/off or 1/0, got {text!r}") from None


class PathArg(str):
    """A path option's value whose existence :func:`check_paths` checks right after parsing (the
    CLI's ``main`` does, before the verb runs), so that a missing input is one error line
    ``WHAT not found: PATH`` with exit 2. ``kind``: ``file``, ``dir`` or ``path`` (either)."""

    kind: str = "path"
    what: str = "file or folder"
    missing: str = "{what} not found: {path}"


def _path_type(kind: str, what: str, missing: Optional[str]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if not text:
            raise _Error("must be a path, got an empty string")
        value = PathArg(text)
        value.kind, value.what = kind, what
        if missing is not None:
            value.missing = missing
        return value

    parse.__name__ = f"existing_{kind}"
    return parse


def existing_file(what: str = "file", missing: Optional[str] = None) -> Callable[[str], str]:
    """An input file that must exist (not a folder); ``what`` names it in the error
    (``existing_file("index file")`` -> ``index file not found: PATH``); ``missing``: another
    template of that message (``{what}``, ``{path}``)."""
    return _path_type("file", what, missing)


def existing_dir(what: str = "folder", missing: Optional[str] = None) -> Callable[[str], str]:
    """An input folder that must exist."""
    return _path_type("dir", what, missing)


def existing_path(what: str = "file or folder", missing: Optional[str] = None) -> Callable[[str], str]:
    """An input file or folder that must exist."""
    return _path_type("path", what, missing)


def _checked(value: PathArg) -> str:
    path = str(value)
    if not os.path.exists(path):
        raise InputError(value.missing.format(what=value.what, path=path))
    if value.kind == "file" and os.path.isdir(path):
        raise InputError(f"{value.what} {path} is a folder; a file is needed")
    if value.kind == "dir" and not os.path.isdir(path):
        raise InputError(f"{value.what} {path} is not a folder")
    return path


def check_paths(args: argparse.Namespace) -> None:
    """Check every :class:`PathArg` of the parsed options (single or in lists) and replace it by
    the plain string. Raises :class:`InputError` for the first input that is missing or of the
    wrong kind."""
    for dest, value in list(vars(args).items()):
        if isinstance(value, PathArg):
            setattr(args, dest, _checked(value))
        elif isinstance(value, list) and any(isinstance(v, PathArg) for v in value):
            setattr(args, dest, [_checked(v) if isinstance(v, PathArg) else v for v in value])


def weights(text: str) -> str:
    """Backbone weights: ``imagenet``, ``none`` or a weights file that must exist."""
    if text in ("imagenet", "none"):
        return text
    return existing_file("weights file (imagenet, none or a file)")(text)


def device(text: str) -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (whether a GPU is there is checked when it is used)."""
    s = str(text).strip()
    if s in ("auto", "cpu", "cuda"):
        return s
    if s.startswith("cuda:") and s[5:].isdigit():
        return s
    raise _Error(f"must be auto, cpu, cuda or cuda:N, got {text!r}")


#: A TCP port.
port = int_between(1, 65535)


def given(args: argparse.Namespace, *dests: str) -> List[str]:
    """The flags (``--shard-size``) of the options ``dests`` (``shard_size``) the user set: a value
    other than None, False (a ``store_true`` flag left out) or an empty list."""
    flags = []
    for dest in dests:
        value = getattr(args, dest, None)
        if value is None or value is False or (isinstance(value, list) and not value):
            continue
        flags.append("--" + dest.replace("_", "-"))
    return flags


def refuse_unless(condition: bool, args: argparse.Namespace, dests: Iterable[str], why: str) -> None:
    """Refuse options that would change nothing: when ``condition`` is False and any option of
    ``dests`` was set (:func:`given`), raise :class:`InputError` ``"--flag applies only WHY"``,
    which the CLI prints as its one error line.

    >>> refuse_unless(False, argparse.Namespace(nlist=None), ["nlist"], "to --kind ivfpq")
    """
    used = given(args, *dests)
    if not condition and used:
        verb = "applies" if len(used) == 1 else "apply"
        raise InputError(f"{'/'.join(used)} {verb} only {why}")
