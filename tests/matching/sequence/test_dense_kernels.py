"""The compiled dense matchers give today's results: compared with the numpy implementation
they replaced (``dense_reference.py``) on small matrices, every method, mode and window."""

from __future__ import annotations

import numpy as np
import pytest

from panoplace.matching.sequence import HMMParams, SeqSLAMParams, enhance_contrast, match, window_lengths, window_offsets
from panoplace.matching.sequence.kernels import pairwise_sum
from tests.matching.sequence import dense_reference as ref


def _route(rng: np.random.Generator, q: int, n: int) -> np.ndarray:
    D = rng.random((q, n)).astype(np.float32)
    path = (np.arange(q) * 1.1).astype(int) % n
    D[np.arange(q), path] -= 0.5
    return D


def _check_confidence(got: np.ndarray, raw: np.ndarray, ds: int, mode: str, calibrated: bool) -> None:
    """Full windows keep the old confidence; calibrated: short windows rank below every full one,
    else they keep it too."""
    if not calibrated:
        np.testing.assert_allclose(got, raw, rtol=1e-5, atol=1e-6)
        return
    lengths = window_lengths(len(got), window_offsets(ds, mode))
    full = lengths == (ds if mode == "online" else lengths.max())
    np.testing.assert_allclose(got[full], raw[full], rtol=1e-5, atol=1e-6)
    if full.any() and (~full).any():
        assert got[~full].max() < got[full].min()


@pytest.mark.parametrize("calibrate", [None, True])
@pytest.mark.parametrize("mode", ["offline", "online"])
@pytest.mark.parametrize("ds", [1, 4, 7, 10])
@pytest.mark.parametrize("shape", [(23, 31), (40, 17), (60, 90)])
def test_seqslam_matches_numpy_implementation(rng, mode, ds, shape, calibrate):
    D = _route(rng, *shape)
    kw = dict(ds=ds, mode=mode, vmin=0.7, vmax=1.3, n_velocities=4, enhance_window=6, uniqueness_radius=3)
    old = ref.match_sequence(D, "seqslam", chunk_bytes=2000, **kw)
    new = match(D, SeqSLAMParams(**kw, calibrate=calibrate))
    np.testing.assert_array_equal(new.best, old.best)
    np.testing.assert_allclose(new.scores, old.scores, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(new.score, old.score, rtol=1e-6, atol=1e-6)
    _check_confidence(new.confidence, old.confidence, ds, mode, calibrate or mode == "online")


@pytest.mark.parametrize("calibrate", [None, True])
@pytest.mark.parametrize("mode", ["offline", "online"])
@pytest.mark.parametrize("ds", [1, 4, 7, 10])
@pytest.mark.parametrize("shape", [(23, 31), (40, 17), (60, 90)])
def test_hmm_matches_numpy_implementation(rng, mode, ds, shape, calibrate):
    D = _route(rng, *shape)
    kw = dict(ds=ds, mode=mode, vmin=0.6, vmax=1.6, jump_std=0.5, teleport=0.01, sigma=0.7,
              enhance_window=6, uniqueness_radius=3)
    old = ref.match_sequence(D, "hmm", chunk_bytes=2000, **kw)
    new = match(D, HMMParams(**kw, calibrate=calibrate))
    np.testing.assert_array_equal(new.best, old.best)
    np.testing.assert_allclose(np.exp(-new.scores), np.exp(-old.scores), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(new.score, old.score, rtol=1e-4, atol=1e-5)
    _check_confidence(new.confidence, old.confidence, ds, mode, calibrate or mode == "online")


def test_enhance_contrast_matches_numpy_implementation(rng):
    D = rng.random((13, 57)).astype(np.float32) * 3
    for w in (1, 2, 6, 10, 200):
        np.testing.assert_allclose(enhance_contrast(D, w), ref.enhance_contrast(D, w), rtol=1e-5, atol=1e-5)


def test_default_parameters_match_on_a_planted_route(rng):
    D = _route(rng, 200, 260)
    for method in ("seqslam", "hmm"):
        for mode in ("offline", "online"):
            old = ref.match_sequence(D, method, mode=mode)
            new = match(D, (SeqSLAMParams if method == "seqslam" else HMMParams)(mode=mode))
            np.testing.assert_array_equal(new.best, old.best)


def test_pairwise_sum_is_numpys_float32_sum() -> None:
    """The compiled sum gives numpy's float32 pairwise sum bit for bit (every block length and
    remainder, the recursion's split points, values over ten orders of magnitude)."""
    rng = np.random.default_rng(5)
    for n in [*range(300), 1000, 4095, 4096, 4097, 10007, 65536]:
        x = (rng.random(n) * 10.0 ** rng.uniform(-5, 5, n)).astype(np.float32)
        assert pairwise_sum(x) == x.sum(), n
