"""Calibrated confidence: a short window (start of a sequence) never outranks a full one.

Before, online SeqSLAM gave the first query of a Nordland run, whose window holds one frame,
the highest confidence of the run, and it was wrong: recall at 100 % precision was 0.000."""

from __future__ import annotations

import numpy as np
import pytest

from panoplace.data.groundtruth import GroundTruth
from panoplace.evaluation.pipeline import evaluate_match
from panoplace.matching.sequence import (
    HMMParams,
    SeqSLAMParams,
    cap_short_windows,
    match,
    window_lengths,
    window_offsets,
)
from tests.matching.sequence import dense_reference as ref


def _lonely_first_query(rng: np.random.Generator, q: int = 120, n: int = 200) -> np.ndarray:
    """A route at speed 1 from frame 30 whose first query has one strikingly unique (wrong) frame."""
    D = rng.normal(1.0, 0.3, size=(q, n)).astype(np.float32)
    D[np.arange(q), 30 + np.arange(q)] -= 0.6
    D[0, 150] -= 5.0
    return D


@pytest.mark.parametrize("params", [SeqSLAMParams(ds=10, mode="online"), HMMParams(ds=10, mode="online"),
                                    SeqSLAMParams(ds=10, calibrate=True), HMMParams(ds=10, calibrate=True)])
def test_short_windows_rank_below_full_windows(rng, params):
    D = _lonely_first_query(rng)
    m = match(D, params)
    lengths = window_lengths(len(D), window_offsets(params.ds, params.mode))
    full = lengths == params.ds
    assert m.confidence[~full].max() < m.confidence[full].min()
    truth = 30 + np.arange(len(D))
    top = int(np.argmax(m.confidence))
    assert abs(int(m.best[top]) - truth[top]) <= 2


def test_todays_online_seqslam_trusts_the_one_frame_window(rng):
    """The failure this fixes, on the implementation before it (kept as the test reference)."""
    D = _lonely_first_query(rng)
    old = ref.match_sequence(D, "seqslam", ds=10, mode="online")
    assert int(np.argmax(old.confidence)) == 0 and old.best[0] == 150
    new = match(D, SeqSLAMParams(ds=10, mode="online"))
    assert int(np.argmax(new.confidence)) != 0


def test_cap_keeps_order_and_full_windows():
    conf = np.array([5.0, 1.2, 1.5, 3.0, 0.9], np.float32)
    lengths = np.array([1, 3, 3, 3, 2])
    out = cap_short_windows(conf, lengths)
    np.testing.assert_array_equal(out[1:4], conf[1:4])
    assert out[0] < 1.2 and out[4] < out[0]
    fixed = cap_short_windows(conf, lengths, full=3, floor=1.0)
    assert fixed[0] < 1.0 and fixed[4] < fixed[0]
    np.testing.assert_array_equal(cap_short_windows(conf, np.full(5, 2)), conf)


@pytest.mark.data
def test_nordland_online_seqslam_recall_at_full_precision(shared_data):
    """Real data: calibration changes no match and loses no recall at 100 % precision."""
    import cv2

    from panoplace.matching.seqslam_classic import sad_matrix, seqslam_preprocess

    root = shared_data / "nordland_thumbs"
    names = sorted(p.name for p in (root / "summer").glob("images-*.png"))[:600]
    if len(names) < 600:
        pytest.skip("nordland_thumbs is incomplete")
    db = seqslam_preprocess([cv2.imread(str(root / "summer" / n)) for n in names], (32, 16))
    qs = seqslam_preprocess([cv2.imread(str(root / "winter" / n)) for n in names], (32, 16))
    D = sad_matrix(qs, db)
    gt = GroundTruth.from_tolerance(len(D), len(D), tolerance=2)
    old = ref.match_sequence(D, "seqslam", ds=20, mode="online")
    new = match(D, SeqSLAMParams(ds=20, mode="online"))
    np.testing.assert_array_equal(new.best, old.best)
    r_old = evaluate_match(old, gt, ns=(1,)).recall_at_100p
    r_new = evaluate_match(new, gt, ns=(1,)).recall_at_100p
    lengths = window_lengths(len(D), window_offsets(20, "online"))
    assert lengths[int(np.argmax(new.confidence))] == 20
    assert r_new >= r_old and r_new >= 0.5
