"""What a command may write: never one of its inputs, never an earlier result unless asked,
checked writable before any compute starts, and one writer per output at a time.

Every verb that writes calls :func:`claim` with its outputs and inputs before it builds a model
or reads images; the library's steps call it too (with ``overwrite=True``: the Python API
replaces the files it is told to write, as ``numpy.save`` does, but it still never writes over
an input and still takes the lock). Claims nest within a process, so a CLI verb and the step it
calls take each lock once.

Checks, in order, each a one-line :class:`~panoplace.errors.OutputError`:

1. an output is an input (same resolved path, or the same file through a link), an output
   folder holds an input, or an output lies inside an input folder where the command reads it
   (a sharded store's folder, an image file of an image folder);
2. an output that must be a file is a folder, or one that must be a folder is a file;
3. the output cannot be written: the nearest existing folder of its path is a file, is
   read-only or not writable (a probe file is created and removed there);
4. another run holds the output's lock ``OUT.lock`` (:class:`OutputLock`, ``fcntl.flock``; it
   holds the pid, host and command of the run; a lock left by a run that ended, even by
   ``kill -9``, is taken over);
5. the output exists (an earlier result) and ``overwrite`` is false, unless the output is one the
   command updates (``existing="update"``: ``extract --append``, ``index --update``) or resumes
   into (``existing="resume"``).

Resumable jobs keep their own partial state beside the output (``OUT.part`` for stores, a
record file in an output folder) under the same lock; a finished output needs ``--overwrite``.
Temporary files of :func:`panoplace.atomic.atomic_path` left by a killed run
(``.OUT.<random>.tmp*``) are removed when the lock is taken.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Union

from panoplace.atomic import write_errno, write_error, writing
from panoplace.errors import OutputError
from panoplace.panorama.imagefiles import is_image_file

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
EXISTING = ("refuse", "update", "resume")
LOCK_SUFFIX = ".lock"
_MANIFEST = "manifest.json"  # a sharded store folder (panoplace.store.MANIFEST)

_command: Optional[str] = None
_held: Dict[str, "OutputLock"] = {}


def set_command(text: Optional[str]) -> None:
    """The command line recorded in the locks this process takes (the CLI sets it)."""
    global _command
    _command = text


def _command_line() -> str:
    return _command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])


@dataclass(frozen=True)
class Output:
    """One output of a command.

    path: the file or folder written. option: how the user named it (for messages, e.g.
    ``--out``). folder: a folder of results rather than one file. existing: what an existing
    output means: ``refuse`` (an earlier result: refused unless ``overwrite``), ``update`` (the
    command rewrites it with more entries) or ``resume`` (the command continues it by its own
    records). hint: what to pass instead, in the refusal (default ``--overwrite``). marker: for a
    folder written by a resumable job, the file that marks it finished (without it the folder is
    the job's partial state and ``refuse`` lets the job resume it).
    """

    path: Path
    option: str = "--out"
    folder: bool = False
    existing: str = "refuse"
    hint: str = "pass --overwrite to replace it"
    marker: Optional[str] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        if self.existing not in EXISTING:
            raise ValueError(f"existing must be one of {EXISTING}, got {self.existing!r}")

    @property
    def name(self) -> str:
        return f"{self.option} {self.path}" if self.option else str(self.path)


def given(*items: object) -> List[Path]:
    """The paths among ``items`` (``str`` or ``os.PathLike``); in-memory objects, open streams and
    None are left out. For the inputs of :func:`claim` in steps that take either."""
    return [Path(os.fspath(i)) for i in items if isinstance(i, (str, os.PathLike))]


def output_file(path: object, option: str, folder: bool = False) -> Optional[Output]:
    """:class:`Output` of an optional output argument: None when ``path`` is None or not a path
    (e.g. an open text stream)."""
    found = given(path)
    return Output(found[0], option, folder=folder) if found else None


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return path.absolute()


def _same_file(a: Path, b: Path) -> bool:
    if _resolved(a) == _resolved(b):
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _inside(child: Path, folder: Path) -> bool:
    return _resolved(folder) in _resolved(child).parents


def _check_not_input(out: Output, inputs: Sequence[Path]) -> None:
    for src in inputs:
        if _same_file(out.path, src):
            raise OutputError(f"{out.name} is also an input of this command; write to another path")
        if out.folder and _inside(src, out.path):
            raise OutputError(f"{out.name} holds the input {src}; choose another output folder")
        if src.is_dir() and out.path.is_file() and _inside(out.path, src) and (
                (src / _MANIFEST).is_file() or is_image_file(out.path)):
            raise OutputError(f"{out.name} is a file of the input {src}; write to another path")


def _check_kind(out: Output) -> None:
    if out.folder and out.path.exists() and not out.path.is_dir():
        raise OutputError(f"{out.name} is a file; give a folder")
    if not out.folder and out.path.is_dir():
        raise OutputError(f"{out.name} is a folder; give a file path")


def _nearest_existing(path: Path) -> Path:
    p = _resolved(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_writable(out: Output) -> None:
    """Raise :class:`OutputError` unless files can be created where ``out`` goes (its folder, or
    the nearest existing folder above it when folders are still to be made)."""
    start = out.path if (out.folder and out.path.is_dir()) else out.path.parent
    base = _nearest_existing(start)
    if not base.is_dir():
        raise OutputError(f"cannot write {out.name}: {base} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".panoplace-probe.", dir=str(base))
    except OSError as exc:
        code = write_errno(exc)
        if code is None:
            raise
        raise write_error(out.path, code) from None
    os.close(fd)
    os.unlink(probe)


def _is_result(out: Output) -> bool:
    if out.folder and out.marker:
        return (out.path / out.marker).exists()
    if out.folder:
        return out.path.is_dir() and any(True for _ in out.path.iterdir())
    return out.path.exists()


def check_outputs(outputs: Sequence[Output], inputs: Iterable[Optional[PathLike]] = ()) -> None:
    """Checks 1-3 of the module doc (no side effect): not an input, right kind, writable."""
    srcs = [Path(i) for i in inputs if i is not None and str(i) != ""]
    srcs = [s for s in srcs if s.exists()]
    for out in outputs:
        _check_not_input(out, srcs)
        _check_kind(out)
        check_writable(out)
    for i, a in enumerate(outputs):
        for b in outputs[i + 1:]:
            if _same_file(a.path, b.path):
                raise OutputError(f"{a.name} and {b.name} are the same path; give two different outputs")


def check_existing(out: Output, overwrite: bool) -> None:
    """Check 5: an earlier result is refused unless ``overwrite`` (or updated/resumed)."""
    if out.existing == "refuse" and not overwrite and _is_result(out):
        what = "holds an earlier result" if out.folder else "exists (an earlier result)"
        raise OutputError(f"{out.name} {what}; {out.hint}")


def lock_path(path: PathLike) -> Path:
    """The lock file of an output: ``OUT.lock`` beside it."""
    path = Path(path)
    return path.with_name(path.name + LOCK_SUFFIX)


class OutputLock:
    """An exclusive lock on one output (``fcntl.flock`` on ``OUT.lock``), for the writer's lifetime.

    The lock file holds ``{"pid", "host", "command", "started"}`` of its holder. A second writer
    raises :class:`OutputError` naming the first; the kernel drops a lock when its process ends
    (also by ``kill -9``), so a lock file left behind is taken over. The file is removed on release.
    """

    def __init__(self, output: PathLike, name: Optional[str] = None) -> None:
        self.output = Path(output)
        self.path = lock_path(self.output)
        self.name = name or str(self.output)
        self._fd: Optional[int] = None

    def _holder(self) -> str:
        try:
            info = json.loads(self.path.read_text(encoding="utf-8") or "{}")
            return f"pid {info.get('pid', '?')} on {info.get('host', '?')}: {info.get('command', '?')}"
        except (OSError, ValueError):
            return "holder unknown"

    def acquire(self) -> "OutputLock":
        with writing(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(50):
            with writing(self.path):
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                raise OutputError(f"{self.name} is being written by another run ({self._holder()}); "
                                  "wait for it to end or stop it") from None
            try:  # the file we locked may have been removed by the holder releasing it meanwhile
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            old = os.read(fd, 4096)
            if old.strip():
                log.info("taking over the lock of %s left by an ended run (%s)", self.output, self._holder())
            info = {"pid": os.getpid(), "host": socket.gethostname(), "command": _command_line(),
                    "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
            except OSError as exc:
                os.close(fd)
                code = write_errno(exc)
                if code is None:
                    raise
                raise write_error(self.path, code) from None
            self._fd = fd
            return self
        raise OutputError(f"cannot lock {self.name}: its lock file {self.path} keeps changing")

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink()
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def remove_stale_temporaries(path: PathLike) -> List[Path]:
    """Remove the temporary files ``.NAME.*.tmp*`` that :func:`panoplace.atomic.atomic_path` left
    beside ``path`` in a killed run (call with the output's lock held); returns them."""
    path = Path(path)
    removed = []
    if path.parent.is_dir():
        for tmp in path.parent.glob(f".{path.name}.*.tmp*"):
            try:
                tmp.unlink()
                removed.append(tmp)
            except OSError:
                pass
    if removed:
        log.info("removed %d temporary file(s) of an interrupted run beside %s", len(removed), path)
    return removed


@contextmanager
def claim(outputs: Sequence[Optional[Output]], inputs: Iterable[Optional[PathLike]] = (), *,
          overwrite: bool = False) -> Iterator[List[Output]]:
    """Check ``outputs`` against ``inputs``, lock them and check for earlier results (module doc);
    yields the outputs (``None`` entries, e.g. an optional output not given, are left out).

    Raises:
        OutputError: one of the checks failed; nothing was written (a lock taken is released).
    """
    outs = [o for o in outputs if o is not None]
    check_outputs(outs, list(inputs))
    with ExitStack() as stack:
        for out in outs:
            key = str(_resolved(lock_path(out.path)))
            if key in _held:
                continue
            lock = OutputLock(out.path, out.name)
            stack.enter_context(lock)
            _held[key] = lock
            stack.callback(_held.pop, key, None)
            if not out.folder:
                remove_stale_temporaries(out.path)
        for out in outs:
            check_existing(out, overwrite)
        yield outs
