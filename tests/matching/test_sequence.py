"""Sequence matching: SeqSLAM (vectorised vs loop reference), HMM, classic SeqSLAM, helpers."""

from __future__ import annotations

import numpy as np
import pytest

from panoplace.errors import InputError
from panoplace.matching.seqslam_classic import patch_normalise, sad_matrix, seqslam_classic, seqslam_preprocess
from panoplace.matching.sequence import (
    METHODS,
    MODES,
    enhance_bound,
    enhance_contrast,
    match_sequence,
    seqslam_reference,
    single_frame_match,
    window_offsets,
)


def synthetic_route(rng: np.random.Generator, q: int = 150, n: int = 260, v: float = 1.15,
                    start: int = 40, signal: float = 0.6, noise: float = 0.3, swing: float = 0.0,
                    period: int = 40):
    """Difference matrix whose queries follow database frames ``start + round(sum of speeds)``
    (speed ``v``, or ``1 + swing * sin(2 pi i / period)`` when ``swing`` is given): Gaussian
    noise everywhere, lowered by ``signal`` on the path (and half that on its neighbours, as
    consecutive frames look alike)."""
    speed = np.full(q, v) if swing == 0 else 1.0 + swing * np.sin(2 * np.pi * np.arange(q) / period)
    path = start + np.floor(np.concatenate([[0.0], np.cumsum(speed[1:])]) + 0.5).astype(np.int64)
    if path.max() >= n:
        raise ValueError("route runs off the database")
    D = rng.normal(1.0, noise, size=(q, n)).astype(np.float32)
    rows = np.arange(q)
    D[rows, path] -= signal
    D[rows, np.minimum(path + 1, n - 1)] -= signal / 2
    D[rows, np.maximum(path - 1, 0)] -= signal / 2
    return D, path


def hit_rate(best: np.ndarray, path: np.ndarray, tol: int = 2) -> float:
    return float((np.abs(best - path) <= tol).mean())


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mode", MODES)
def test_recovers_path_with_velocity_and_beats_single_frame(rng, method, mode):
    D, path = synthetic_route(rng)
    single = hit_rate(single_frame_match(D).best, path)
    m = match_sequence(D, method, ds=12, mode=mode)
    seq = hit_rate(m.best, path)
    assert single < 0.45, "the synthetic case must be hard for a single frame"
    assert seq >= 0.9
    assert seq > single + 0.3
    # confident matches are the right ones: the 50 most confident are all on the path
    top = np.argsort(-m.confidence)[:50]
    assert hit_rate(m.best[top], path[top]) == 1.0
    assert m.scores.shape == D.shape and m.best.dtype == np.int64


def test_hmm_follows_changing_speed_where_straight_lines_fail(rng):
    D, path = synthetic_route(rng, q=150, n=200, start=20, swing=0.5)
    single = hit_rate(single_frame_match(D).best, path)
    hmm = hit_rate(match_sequence(D, "hmm", ds=12).best, path)
    seqslam = hit_rate(match_sequence(D, "seqslam", ds=12).best, path)
    assert hmm >= 0.77 and hmm > single + 0.4
    assert hmm > seqslam


@pytest.mark.parametrize("method", METHODS)
def test_online_mode_uses_no_future_frames(rng, method):
    D, _ = synthetic_route(rng, q=80, n=140)
    cut = 50
    D2 = D.copy()
    D2[cut:] = rng.normal(1.0, 0.3, size=D2[cut:].shape)
    a = match_sequence(D, method, ds=10, mode="online", chunk_bytes=20_000)
    b = match_sequence(D2, method, ds=10, mode="online", chunk_bytes=20_000)
    np.testing.assert_array_equal(a.best[:cut], b.best[:cut])
    np.testing.assert_array_equal(a.confidence[:cut], b.confidence[:cut])
    np.testing.assert_array_equal(a.scores[:cut], b.scores[:cut])
    # offline mode does look ahead: the queries just before the cut change
    c = match_sequence(D, method, ds=10, mode="offline")
    d = match_sequence(D2, method, ds=10, mode="offline")
    assert not np.array_equal(c.scores[cut - 3:cut], d.scores[cut - 3:cut])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("ds", [1, 4, 7])
def test_vectorised_seqslam_equals_loop_reference(rng, mode, ds):
    D = rng.random((23, 31)).astype(np.float32)
    D[np.arange(23), np.minimum(np.arange(23) + 3, 30)] -= 0.4
    kw = dict(ds=ds, mode=mode, vmin=0.7, vmax=1.3, n_velocities=4, enhance_window=6, uniqueness_radius=3)
    fast = match_sequence(D, "seqslam", chunk_bytes=1000, **kw)  # forces many query chunks
    ref = seqslam_reference(D, **kw)
    np.testing.assert_allclose(fast.scores, ref.scores, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(fast.best, ref.best)
    np.testing.assert_allclose(fast.confidence, ref.confidence, rtol=1e-5)


def test_window_offsets_offline_centred_online_causal():
    np.testing.assert_array_equal(window_offsets(4, "offline"), [-2, -1, 0, 1])
    np.testing.assert_array_equal(window_offsets(5, "offline"), [-2, -1, 0, 1, 2])
    np.testing.assert_array_equal(window_offsets(3, "online"), [-2, -1, 0])
    with pytest.raises(InputError):
        window_offsets(0, "online")
    with pytest.raises(InputError):
        window_offsets(3, "sideways")


def test_enhance_contrast_is_local_zscore(rng):
    D = rng.random((3, 40)).astype(np.float32)
    z = enhance_contrast(D, window=6)
    i, j = 1, 20
    w = D[i, j - 3:j + 4].astype(np.float64)
    assert z[i, j] == pytest.approx((D[i, j] - w.mean()) / w.std(), rel=1e-4)
    w0 = D[i, 0:4].astype(np.float64)  # cut at the start
    assert z[i, 0] == pytest.approx((D[i, 0] - w0.mean()) / w0.std(), rel=1e-4)
    assert np.abs(z).max() <= enhance_bound(6) + 1e-5


def test_hmm_confidence_is_a_probability(rng):
    D, path = synthetic_route(rng, q=60, n=120)
    m = match_sequence(D, "hmm", ds=10)
    assert ((m.confidence >= 0) & (m.confidence <= 1 + 1e-6)).all()
    post = np.exp(-m.scores.astype(np.float64))
    np.testing.assert_allclose(post.sum(axis=1), 1.0, rtol=1e-4)


def test_ranked_follows_scores(rng):
    D, _ = synthetic_route(rng, q=30, n=80)
    m = match_sequence(D, "seqslam", ds=5)
    r = m.ranked(7)
    assert r.shape == (30, 7)
    np.testing.assert_array_equal(r[:, 0], m.best)
    s = np.take_along_axis(m.scores, r, axis=1)
    assert (np.diff(s, axis=1) >= 0).all()
    assert m.ranked(500).shape == (30, 80)


def test_bad_input_raises_one_line_errors():
    D = np.ones((5, 6), np.float32)
    D[2, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        match_sequence(D, "seqslam")
    with pytest.raises(InputError, match="unknown sequence matching method"):
        match_sequence(np.ones((5, 6)), "magic")
    with pytest.raises(InputError, match="offline only"):
        match_sequence(np.ones((5, 6)), "seqslam_classic", mode="online")
    with pytest.raises(InputError, match="shape"):
        match_sequence(np.ones(5), "hmm")
    with pytest.raises(InputError, match="vmax"):
        match_sequence(np.ones((5, 6)), "seqslam", vmin=1.2, vmax=0.8)


def test_classic_seqslam_recovers_path_and_skips_edges(rng):
    D, path = synthetic_route(rng, q=120, n=200, v=1.0)
    m = seqslam_classic(D, ds=10)
    edge = np.r_[0:5, 115:120]
    assert (m.best[edge] == -1).all() and (m.confidence[edge] == 0).all()
    inner = np.setdiff1d(np.arange(120), edge)
    assert hit_rate(m.best[inner], path[inner]) >= 0.95
    assert (m.confidence[inner] >= 1.0).all()
    via_dispatch = match_sequence(D, "seqslam_classic", ds=10)
    np.testing.assert_array_equal(via_dispatch.best, m.best)


def test_patch_normalise_per_patch_zero_mean_unit_std(rng):
    img = rng.integers(0, 255, size=(2, 16, 24)).astype(np.uint8)
    img[0, :8, :8] = 7  # a flat patch
    out = patch_normalise(img, patch=8)
    assert out.shape == img.shape and out.dtype == np.float32
    blocks = out.reshape(2, 2, 8, 3, 8)
    np.testing.assert_allclose(blocks.mean(axis=(2, 4)), 0.0, atol=1e-5)
    std = blocks.std(axis=(2, 4))
    assert std[0, 0, 0] == 0.0
    np.testing.assert_allclose(np.delete(std.reshape(-1), 0), 1.0, rtol=1e-4)
    with pytest.raises(InputError, match="multiple"):
        patch_normalise(np.zeros((10, 16)), patch=8)


def test_sad_matrix_matches_brute_force(rng):
    q = rng.random((7, 4, 8)).astype(np.float32)
    d = rng.random((9, 4, 8)).astype(np.float32)
    brute = np.array([[np.abs(a - b).mean() for b in d] for a in q])
    np.testing.assert_allclose(sad_matrix(q, d, chunk_elems=100), brute, rtol=1e-5)
    with pytest.raises(InputError):
        sad_matrix(q, d[:, :, :4])


def test_seqslam_preprocess_resizes_greys_and_normalises(rng):
    imgs = [rng.integers(0, 255, size=(64, 128, 3)).astype(np.uint8) for _ in range(3)]
    out = seqslam_preprocess(imgs, size=(32, 16), patch=8)
    assert out.shape == (3, 16, 32)
    np.testing.assert_allclose(out.reshape(3, 2, 8, 4, 8).mean(axis=(2, 4)), 0.0, atol=1e-5)


@pytest.mark.data
def test_nordland_excerpt_sequence_beats_single_frame(shared_data):
    import cv2

    root = shared_data / "nordland_thumbs"
    names = sorted(p.name for p in (root / "summer").glob("images-*.png"))[1200:1360]
    if len(names) < 160:
        pytest.skip("nordland_thumbs is incomplete")
    db = seqslam_preprocess([cv2.imread(str(root / "summer" / n)) for n in names], (32, 16))
    qs = seqslam_preprocess([cv2.imread(str(root / "winter" / n)) for n in names], (32, 16))
    D = sad_matrix(qs, db)
    truth = np.arange(len(names))
    single = hit_rate(single_frame_match(D).best, truth)
    hmm = hit_rate(match_sequence(D, "hmm", ds=10).best, truth)
    seq = hit_rate(match_sequence(D, "seqslam", ds=10).best, truth)
    assert hmm > single + 0.3 and seq > single + 0.3
    assert hmm >= 0.9 and seq >= 0.9
