"""`import panoplace` stays light; the steps API is reachable from it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_import_panoplace_loads_no_heavy_module() -> None:
    out = _python("import sys, panoplace; "
                  "print(sorted(m for m in ('torch', 'faiss', 'cv2', 'h5py') if m in sys.modules))")
    assert out == "[]"


def test_steps_reachable_from_the_package() -> None:
    out = _python("import panoplace; s = panoplace.steps; print(s.extract.__module__, callable(s.localize))")
    assert out == "panoplace.steps.extraction True"
    import panoplace

    assert panoplace.steps.evaluate.__name__ == "evaluate"
    with pytest.raises(AttributeError, match="no_such_thing"):
        panoplace.no_such_thing  # noqa: B018
