"""Rotation-aware matching: best circular crop shift and heading recovery."""

from __future__ import annotations

from typing import List, Tuple

import numpy as np
import pytest

from panoplace.errors import DescriptorMismatchError
from panoplace.matching.rotation import (
    heading_step,
    match_rotation,
    rerank,
    shift_similarities,
    wrap_degrees,
)

WIDTH = 720  # panorama columns: 0.5° per column


def feature_maps(rng: np.random.Generator, n: int, d: int = 32) -> np.ndarray:
    """``(n, WIDTH, d)`` smooth periodic "panorama feature maps" (low-pass filtered noise)."""
    spec = np.fft.rfft(rng.normal(size=(n, WIDTH, d)), axis=1)
    spec[:, 24:] = 0  # keep structure at >= 15° scale
    return np.fft.irfft(spec, n=WIDTH, axis=1).astype(np.float32)


def windows(n_crops: int = 8, window_deg: float = None, stride_deg: float = None) -> List[Tuple[int, int]]:
    """(start column, width) windows like panorama.crops.crop_windows."""
    if window_deg is None:
        w = WIDTH // n_crops
        return [(k * w, w) for k in range(n_crops)]
    stride = stride_deg or window_deg
    count = int(np.ceil(360 / stride))
    return [(int(round(k * stride * WIDTH / 360)), int(round(window_deg * WIDTH / 360))) for k in range(count)]


def crop_descriptors(maps: np.ndarray, wins: List[Tuple[int, int]]) -> np.ndarray:
    """Per-crop descriptors ``(n, K, d)``: mean feature over each window (wrapping), L2-normalised."""
    cols = np.stack([(s + np.arange(w)) % WIDTH for s, w in wins])  # (K, w)
    desc = maps[:, cols].mean(axis=2)
    return desc / np.linalg.norm(desc, axis=-1, keepdims=True)


def roll(maps: np.ndarray, heading_deg: float) -> np.ndarray:
    """The panoramas seen by a camera turned by ``heading_deg``: query column c = database
    column c + heading (azimuth grows with the column)."""
    return np.roll(maps, -int(round(heading_deg * WIDTH / 360)), axis=1)


def test_shift_similarities_convention() -> None:
    rng = np.random.default_rng(0)
    db = rng.normal(size=(1, 1, 6, 5)).astype(np.float32)
    q = np.roll(db[:, 0], -2, axis=1)  # query crop k = database crop k + 2
    sims = shift_similarities(q, db)
    brute = [np.mean([q[0, k] @ db[0, 0, (k + s) % 6] for k in range(6)]) for s in range(6)]
    np.testing.assert_allclose(sims[0, 0], brute, rtol=1e-5)
    assert int(np.argmax(sims[0, 0])) == 2


@pytest.mark.parametrize("heading", [0.0, 45.0, 100.0, 180.0, 251.5, 333.0])
def test_rolled_panorama_matches_itself_and_recovers_heading(heading: float) -> None:
    rng = np.random.default_rng(1)
    maps = feature_maps(rng, 40)
    wins = windows(8)
    db = crop_descriptors(maps, wins)
    noisy = roll(maps, heading)[:10] + 0.05 * rng.normal(size=(10, WIDTH, maps.shape[2])).astype(np.float32)
    q = crop_descriptors(noisy, wins)
    cands = np.broadcast_to(np.arange(40), (10, 40))
    step = heading_step(8)
    for refine in (False, True):
        m = rerank(q, db, cands, step_deg=step, refine=refine)
        assert m.db_indices[:, 0].tolist() == list(range(10))
        err = np.abs(wrap_degrees(m.headings[:, 0] - heading))
        assert err.max() <= step / 2 + 1e-6, (refine, m.headings[:, 0])
    # the best shift is the rounded rotation
    assert (m.shifts[:, 0] == int(np.round(heading / step)) % 8).all()


def test_sliding_windows_heading_step() -> None:
    rng = np.random.default_rng(2)
    maps = feature_maps(rng, 20)
    wins = windows(window_deg=60, stride_deg=30)  # 12 overlapping windows
    step = heading_step(12, {"window_deg": 60.0, "stride_deg": 30.0})
    assert step == 30.0 and heading_step(8) == 45.0 and heading_step(12, {"window_deg": 30.0}) == 30.0
    db = crop_descriptors(maps, wins)
    for heading in (-75.0, 120.0):
        q = crop_descriptors(roll(maps, heading), wins)
        m = match_rotation(q, db[:, None], step_deg=step)  # each query against its own panorama
        assert np.abs(wrap_degrees(m.headings[:, 0] - heading)).max() <= step / 2


def test_rerank_beats_fused_search_under_partial_rotation() -> None:
    # a sub-crop rotation changes the fused descriptor; best-shift scoring still picks the place
    rng = np.random.default_rng(3)
    maps = feature_maps(rng, 200)
    wins = windows(8)
    db = crop_descriptors(maps, wins)
    q = crop_descriptors(roll(maps[:50], 20.0), wins)
    cands = np.broadcast_to(np.arange(200), (50, 200))
    m = rerank(q, db, cands)
    assert (m.db_indices[:, 0] == np.arange(50)).all()
    assert np.all(np.diff(m.scores, axis=1) <= 1e-7), "scores must be sorted descending"


def test_rerank_handles_missing_candidates_and_checks_shapes() -> None:
    rng = np.random.default_rng(4)
    db = rng.normal(size=(5, 4, 8)).astype(np.float32)
    m = rerank(db[:2], db, np.array([[3, -1, 0], [-1, -1, 1]]))
    assert m.db_indices.tolist() == [[0, 3, -1], [1, -1, -1]]
    assert np.isneginf(m.scores[1, 1:]).all() and m.db_indices[1, 0] == 1
    with pytest.raises(DescriptorMismatchError, match="do not match"):
        rerank(db[:2, :3], db, np.zeros((2, 1), int))
    with pytest.raises(DescriptorMismatchError, match="per-crop"):
        rerank(db[:2, 0], db, np.zeros((2, 1), int))


def test_refinement_gives_sub_step_headings() -> None:
    rng = np.random.default_rng(5)
    maps = feature_maps(rng, 10)
    wins = windows(8)
    db = crop_descriptors(maps, wins)
    errs = {False: [], True: []}
    for heading in (10.0, 30.0, 100.0, 251.5, 333.0):  # not multiples of the 45° step
        q = crop_descriptors(roll(maps, heading), wins)
        for refine in errs:
            m = match_rotation(q, db[:, None], refine=refine)
            errs[refine].append(np.abs(wrap_degrees(m.headings[:, 0] - heading)).mean())
    assert np.mean(errs[True]) < 0.7 * np.mean(errs[False])
