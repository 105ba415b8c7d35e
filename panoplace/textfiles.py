"""Reading a text file a user passes (CSV, JSON, lists, tracks) with one clear error line.

A binary file given where text is expected (an image as a CSV, an HDF5 store as a
calibration JSON, ...) would otherwise end in a ``UnicodeDecodeError`` or ``JSONDecodeError``
traceback. Every reader of user text goes through :func:`read_text` / :func:`read_json`.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "a.csv"
>>> _ = p.write_bytes(b"\\x89PNG\\r\\n\\x1a\\n\\0\\0")
>>> read_text(p, "dataset CSV")
Traceback (most recent call last):
panoplace.errors.InputError: cannot read dataset CSV ...: not a text file (it holds binary data)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Union

from panoplace.errors import InputError

__all__ = ["read_json", "read_text"]

PathLike = Union[str, "os.PathLike[str]"]


def read_text(path: PathLike, what: str = "text file", encoding: str = "utf-8") -> str:
    """The text of ``path``.

    Raises:
        InputError: ``{what} not found: PATH``, a folder, unreadable, or not text (NUL bytes or
            not ``encoding``), naming ``what`` and the path.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{what} not found: {p}")
    if p.is_dir():
        raise InputError(f"{what} {p} is a folder; a file is needed")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputError(f"{what} {p} cannot be read: {exc.strerror or exc}") from None
    if b"\0" in data:
        raise InputError(f"cannot read {what} {p}: not a text file (it holds binary data)")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise InputError(f"cannot read {what} {p}: not a text file ({encoding}): undecodable byte at offset "
                         f"{exc.start}") from None
    return text[1:] if text.startswith("\ufeff") else text  # a UTF-8 byte-order mark is not content


def read_json(path: PathLike, what: str = "JSON file") -> Any:
    """The parsed JSON of ``path``; :class:`InputError` for anything :func:`read_text` refuses or
    text that is not JSON (with the line and column)."""
    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"cannot read {what} {path}: not valid JSON: {exc.msg} (line {exc.lineno}, column "
                         f"{exc.colno})") from None
