"""Fixtures of the panorama tests (synthetic images live in :mod:`.synthetic`)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple

import logging
from typing import Iterator

import cv2
import numpy as np
import pytest

from .synthetic import textured_annulus


@pytest.fixture(autouse=True)
def _restore_panoplace_logger() -> Iterator[None]:
    """``panoplace.cli.main`` points the ``panoplace`` logger at the sys.stderr of its call
    (pytest's capture stream, closed after the test); put the logger back afterwards."""
    logger = logging.getLogger("panoplace")
    handlers, level, propagate = logger.handlers[:], logger.level, logger.propagate
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate


@pytest.fixture
def annular_folder(tmp_path: Path, rng: np.random.Generator) -> Tuple[Path, Dict[str, float]]:
    """A folder of three 240x260 synthetic annular PNGs with a known geometry.

    Returns ``(folder, truth)`` with truth = dict(cx, cy, r_inner, r_outer).
    """
    truth = dict(cx=131.4, cy=117.7, r_inner=30.3, r_outer=98.6)
    folder = tmp_path / "pal"
    folder.mkdir()
    for i in range(3):
        img = textured_annulus(240, 260, truth["cx"], truth["cy"], truth["r_inner"], truth["r_outer"], rng)
        cv2.imwrite(str(folder / f"frame_{i:03d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return folder, truth
