"""Atomic file writes: a killed run never leaves a truncated file under the final name.

Every writer in panoplace (stores, indexes, checkpoints, CSVs, reports, images) writes to a
temporary file in the target's folder and renames it over the target (``os.replace``, atomic
on one file system). :func:`atomic_path` is that pattern for writers that need a path (h5py,
``torch.save``, matplotlib); :func:`write_text_atomic` and :func:`write_bytes_atomic` cover
plain contents.

A write that fails because of the environment (disk full, read-only media, permission denied,
a folder where a file should go) raises :class:`~panoplace.errors.OutputError` naming the path
(:func:`writing`), not the library's own exception: the CLI prints it as one line. The
temporary file is removed and the target stays as it was.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Union

from panoplace.errors import OutputError

PathLike = Union[str, "os.PathLike[str]"]

#: errno values of writes that fail because of the disk or the file system, not of a bug.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG,
                          errno.EIO, errno.EISDIR, errno.ENOTDIR, errno.ENAMETOOLONG, errno.EEXIST})
_NAMED = {errno.ENOSPC: "no space left on the device (disk full)", errno.EDQUOT: "disk quota exceeded",
          errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
          errno.EPERM: "operation not permitted", errno.EISDIR: "it is a folder",
          errno.ENOTDIR: "a part of the path is a file, not a folder",
          errno.EEXIST: "a part of the path is a file, not a folder"}
# errno inside messages of libraries that do not set OSError.errno (HDF5, torch's zip writer)
_EMBEDDED = re.compile(r"errno\s*=\s*(\d+)|\[Errno (\d+)\]|No space left on device|file write failed|Read-only file system")


def write_errno(exc: BaseException) -> Optional[int]:
    """The errno of a write that failed because of the environment, else None.

    Reads ``OSError.errno`` and, for HDF5 and torch errors that carry it only in their message,
    the ``errno = N`` / ``[Errno N]`` text (a torch ``file write failed`` counts as ENOSPC).
    """
    if not isinstance(exc, (OSError, RuntimeError)):
        return None
    code = exc.errno if isinstance(exc, OSError) else None
    if code in WRITE_ERRNOS:
        return code
    text = str(exc)
    for m in _EMBEDDED.finditer(text):
        if m.group(1) or m.group(2):
            found = int(m.group(1) or m.group(2))
            if found in WRITE_ERRNOS:
                return found
        elif "Read-only" in m.group(0):
            return errno.EROFS
        else:
            return errno.ENOSPC
    return None


def write_error(path: PathLike, code: int) -> OutputError:
    """The one-line error of a failed write of ``path``."""
    return OutputError(f"cannot write {path}: {_NAMED.get(code) or os.strerror(code)}")


def disk_full(path: PathLike) -> bool:
    """True when the file system that holds ``path`` (or its nearest existing folder) has less
    than 64 KiB left: the cause of a failed write whose library did not say (no errno)."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        st = os.statvfs(p)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 65536


@contextmanager
def writing(path: PathLike) -> Iterator[None]:
    """Turn environment write failures inside the block into :class:`OutputError` naming ``path``
    (an ``OSError``/``RuntimeError`` with a write errno, or with none while the disk is full)."""
    try:
        yield
    except (OSError, RuntimeError) as exc:
        if isinstance(exc, OutputError):
            raise
        code = write_errno(exc)
        if code is None and disk_full(path):
            code = errno.ENOSPC
        if code is None:
            raise
        raise write_error(path, code) from None


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


@contextmanager
def atomic_path(path: PathLike, suffix: str = "") -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; it replaces ``path`` when the block ends
    without an error and is removed otherwise (``path`` then stays as it was).

    The folder is created. The temporary name is hidden and unique
    (``.<name>.<random>.tmp<suffix>``; ``suffix`` for writers that go by the extension). The
    final file is readable by everyone (0644), as datasets and models are meant to be shared.
    A disk full, read-only or not writable raises :class:`OutputError` naming ``path``.
    """
    path = Path(path)
    tmp: Optional[Path] = None
    try:
        with writing(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + suffix, dir=str(path.parent))
            os.close(fd)
            tmp = Path(name)
            yield tmp
            os.chmod(tmp, 0o644)  # mkstemp creates 0600
            os.replace(tmp, path)
    finally:
        if tmp is not None and tmp.exists():
            _unlink_quietly(tmp)


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
