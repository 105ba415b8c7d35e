"""ruff and mypy pass on the repository (configured in pyproject.toml; `.ci/run` runs them too).

They run inside the suite as well so that the landing routine (the whole suite) checks new code.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=900)


def test_ruff_passes() -> None:
    proc = _run("ruff", "check", "--no-cache", "--output-format", "concise", ".")
    assert proc.returncode == 0, f"ruff check failed:\n{proc.stdout}{proc.stderr}"


@pytest.mark.slow
def test_mypy_passes() -> None:
    # no arguments: the files and the per-module exclusions come from [tool.mypy] in pyproject.toml
    proc = _run("mypy")
    assert proc.returncode == 0, f"mypy failed:\n{proc.stdout}{proc.stderr}"
