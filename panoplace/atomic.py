"""Atomic file writes: a killed run never leaves a truncated file under the final name.

Every writer in panoplace (stores, indexes, checkpoints, CSVs, reports, images) writes to a
temporary file in the target's folder and renames it over the target (``os.replace``, atomic
on one file system). :func:`atomic_path` is that pattern for writers that need a path (h5py,
``torch.save``, matplotlib); :func:`write_text_atomic` and :func:`write_bytes_atomic` cover
plain contents.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union

PathLike = Union[str, "os.PathLike[str]"]


@contextmanager
def atomic_path(path: PathLike, suffix: str = "") -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; it replaces ``path`` when the block ends
    without an error and is removed otherwise (``path`` then stays as it was).

    The folder is created. The temporary name is hidden and unique
    (``.<name>.<random>.tmp<suffix>``; ``suffix`` for writers that go by the extension). The
    final file is readable by everyone (0644), as datasets and models are meant to be shared.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + suffix, dir=str(path.parent))
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes_atomic(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    return Path(path)
