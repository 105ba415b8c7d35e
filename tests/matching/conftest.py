"""Fixtures of the matching tests: a small map of sequence-structured descriptors."""

from __future__ import annotations

from typing import Tuple

import numpy as np
import pytest


def route_descriptors(rng: np.random.Generator, n: int, dim: int = 32, smooth: int = 4) -> np.ndarray:
    """Unit descriptors of ``n`` consecutive places: neighbouring places look alike (random
    anchors every ``smooth`` frames, linearly interpolated). Shape: float32 ``(n, dim)``."""
    anchors = rng.normal(size=(n // smooth + 2, dim))
    u = np.arange(n) / smooth
    i = np.floor(u).astype(int)
    f = (u - i)[:, None]
    x = (1 - f) * anchors[i] + f * anchors[i + 1]
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def observe(rng: np.random.Generator, places: np.ndarray, noise: float) -> np.ndarray:
    """Places seen under another condition: Gaussian noise, renormalised. ``(m, dim)``."""
    x = places + rng.normal(scale=noise / np.sqrt(places.shape[1]), size=places.shape)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def route_map(rng) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(database ``(600, 32)``, queries ``(300, 32)`` driving frames 100..399 at speed 1 under
    strong appearance change, the true frame of each query ``(300,)``)."""
    db = route_descriptors(rng, 600)
    truth = np.arange(100, 400)
    return db, observe(rng, db[truth], 2.0), truth
