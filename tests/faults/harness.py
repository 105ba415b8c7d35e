"""Fault-injection harness (issue 15): run a verb against a fault, check how it fails.

Every case of ``tests/faults`` asserts the same contract for a user mistake or an environment
fault:

- the exit code is non-zero (2 for a user mistake, the CLI's convention);
- stderr holds exactly one error line ``panoplace VERB: error: ...`` and no traceback (argparse's
  usage lines may come before it);
- every input of the command is unchanged byte for byte (:class:`Snapshot`);
- after a fault that interrupts a job, running it again gives the same result as a clean run.

Two ways to run the CLI: :func:`run_cli` calls :func:`panoplace.cli.main` in this process
(fast; an uncaught exception is turned into the traceback Python would print, so it is caught
by the checks) and :func:`run_cli_process` / :func:`start_cli_process` run ``python -m panoplace``
in a child process (for ``kill -9``, native crashes and locks held by another process).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from panoplace.cli import main
from panoplace.config import ModelConfig, PipelineConfig
from panoplace.store import DescriptorSet, save_descriptors

PathLike = Union[str, Path]

#: The smallest model the CLI builds quickly on a CPU (no weights file needed).
FAST_MODEL = ["--backbone", "resnet18", "--cut", "layer1", "--weights", "none", "--aggregator", "gem"]

ERROR_LINE = re.compile(r"^panoplace [a-z][a-z -]*: error: ")
#: A Python exception name followed by a colon, as a traceback's last line or a leaked repr.
EXCEPTION_NAME = re.compile(r"\b[A-Z]\w*(Error|Exception|Warning)\b: ")


@dataclass
class Outcome:
    """What a run of the CLI gave: exit code and the two streams."""

    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


def run_cli(argv: Sequence[PathLike]) -> Outcome:
    """Run ``panoplace ARGV`` in this process, capturing stdout/stderr and the exit code.

    ``SystemExit`` (argparse) gives its code; any other exception is written to the captured
    stderr as Python would (a traceback) with exit code 1, so checks see it.
    """
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # noqa: BLE001 - the point is to record what escaped
            traceback.print_exc(file=err)
            code = 1
    return Outcome(int(code), out.getvalue(), err.getvalue())


def _child_env(env: Optional[Dict[str, str]]) -> Dict[str, str]:
    full = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    full["PYTHONPATH"] = root + (os.pathsep + full["PYTHONPATH"] if full.get("PYTHONPATH") else "")
    if env:
        full.update(env)
    return full


def start_cli_process(argv: Sequence[PathLike], *, cwd: Optional[PathLike] = None,
                      env: Optional[Dict[str, str]] = None) -> "subprocess.Popen[str]":
    """Start ``python -m panoplace ARGV`` in a child process (text pipes for stdout/stderr)."""
    return subprocess.Popen([sys.executable, "-m", "panoplace", *[str(a) for a in argv]],
                            cwd=cwd, env=_child_env(env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def run_cli_process(argv: Sequence[PathLike], *, cwd: Optional[PathLike] = None,
                    env: Optional[Dict[str, str]] = None, timeout: float = 300) -> Outcome:
    """Run ``python -m panoplace ARGV`` in a child process to the end."""
    proc = start_cli_process(argv, cwd=cwd, env=env)
    out, err = proc.communicate(timeout=timeout)
    return Outcome(proc.returncode, out, err)


def kill_when(proc: "subprocess.Popen[str]", ready: Callable[[], bool], timeout: float = 300,
              poll: float = 0.02) -> bool:
    """``kill -9`` the child as soon as ``ready()`` holds; False if it ended first.

    Raises ``TimeoutError`` if neither happened within ``timeout`` seconds (the child is killed).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            proc.communicate()
            return False
        if ready():
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            return True
        time.sleep(poll)
    proc.kill()
    proc.communicate()
    raise TimeoutError(f"neither ready nor finished within {timeout} s")


def error_lines(err: str) -> List[str]:
    """The ``panoplace VERB: error: ...`` lines of a stderr text."""
    return [line for line in err.splitlines() if ERROR_LINE.match(line)]


def assert_clean_failure(outcome: Outcome, *, code: Optional[int] = 2,
                         contains: Iterable[str] = ()) -> str:
    """Assert the contract of a refused command; returns its one error line.

    ``code``: the expected exit code (None: any non-zero). ``contains``: substrings the error
    line must hold (case-insensitive), e.g. the offending path or option.
    """
    assert outcome.code != 0, f"expected a failure, got\n{outcome}"
    if code is not None:
        assert outcome.code == code, f"expected exit {code}\n{outcome}"
    assert "Traceback" not in outcome.err, f"traceback on stderr\n{outcome}"
    lines = error_lines(outcome.err)
    assert len(lines) == 1, f"expected exactly one error line\n{outcome}"
    others = [line for line in outcome.err.splitlines()
              if line not in lines and EXCEPTION_NAME.search(line)]
    assert not others, f"exception text besides the error line\n{outcome}"
    for text in contains:
        assert text.lower() in lines[0].lower(), f"{text!r} not in the error line\n{outcome}"
    return lines[0]


def assert_success(outcome: Outcome) -> None:
    """Assert a command succeeded with no traceback."""
    assert outcome.code == 0 and "Traceback" not in outcome.err, str(outcome)


class Snapshot:
    """Byte-for-byte record of files (recursively under folders) to check later.

    >>> snap = Snapshot([tmp_inputs]); run(...); snap.assert_unchanged()
    """

    def __init__(self, paths: Iterable[PathLike]) -> None:
        self.roots = [Path(p) for p in paths]
        self.before = self._take()

    def _take(self) -> Dict[str, Tuple[int, str]]:
        found: Dict[str, Tuple[int, str]] = {}
        for root in self.roots:
            files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
            if not root.exists():
                found[str(root)] = (-1, "missing")
            for f in files:
                data = f.read_bytes()
                found[str(f)] = (len(data), hashlib.sha256(data).hexdigest())
        return found

    def changes(self) -> List[str]:
        """Paths added, removed or changed since the snapshot."""
        now = self._take()
        return sorted(p for p in set(now) | set(self.before) if now.get(p) != self.before.get(p))

    def assert_unchanged(self) -> None:
        changed = self.changes()
        assert not changed, f"inputs changed: {changed}"


# ----------------------------------------------------------------------------- inputs
def fill_disk(disk: Path, keep: int = 0) -> Path:
    """Fill the file system of ``disk`` to the last byte, then give back ``keep`` bytes (e.g. room
    for a lock file but not for a result); returns the filler file."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    if keep:
        os.truncate(filler, max(filler.stat().st_size - keep, 0))
    return filler


def write_images(folder: Path, n: int = 3, size: Tuple[int, int] = (32, 64)) -> Path:
    """``n`` small distinct PNG images ``0000000.png ...`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n)
    for i in range(n):
        img = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"{i:07d}.png"), img)
    return folder


def write_store(path: Path, n: int = 3, dim: int = 64) -> Path:
    """A descriptor store of ``n`` L2-normalised rows named like :func:`write_images`."""
    cfg = PipelineConfig(model=ModelConfig(backbone="resnet18", cut="layer1", weights="none",
                                           aggregator="gem"))
    desc = np.eye(n, dim, dtype=np.float32)
    names = [f"{i:07d}.png" for i in range(n)]
    save_descriptors(DescriptorSet(desc, names, cfg.to_dict(), "0" * 16), path)
    return path
