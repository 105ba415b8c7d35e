"""Fixtures for the dataset tests: tiny image files written by the tests themselves."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, List

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO / ".." / "shared" / "data"


@pytest.fixture
def make_images() -> Callable[[Path, Iterable[str]], List[str]]:
    """Write a tiny valid PNG for each name under ``folder``; return the names."""
    import cv2

    def make(folder: Path, names: Iterable[str]) -> List[str]:
        folder.mkdir(parents=True, exist_ok=True)
        img = np.zeros((4, 8, 3), np.uint8)
        out = []
        for n in names:
            (folder / n).parent.mkdir(parents=True, exist_ok=True)
            ok, buf = cv2.imencode(Path(n).suffix or ".png", img)
            (folder / n).write_bytes(buf.tobytes())
            out.append(n)
        return out

    return make


@pytest.fixture
def real_data() -> Path:
    """``../shared/data`` beside the checkout (skipped when absent)."""
    if not SHARED.is_dir():
        pytest.skip(f"real data folder {SHARED.resolve()} is not present")
    return SHARED.resolve()
