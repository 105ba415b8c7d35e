"""Dense SeqSLAM on a ``(Q, N)`` difference matrix (see :mod:`panoplace.matching.sequence`)."""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np

from panoplace.matching.sequence.core import (
    SequenceMatch,
    cap_short_windows,
    check_matrix,
    enhance_bound,
    enhance_contrast,
    trajectory_shifts,
    uniqueness_ratio,
    velocities,
    window_lengths,
    window_offsets,
)
from panoplace.matching.sequence.kernels import seqslam_rows
from panoplace.matching.sequence.params import SeqSLAMParams

log = logging.getLogger(__name__)

__all__ = ["calibrate_ratio", "seqslam", "seqslam_reference"]


def calibrate_ratio(ratio: np.ndarray, lengths: np.ndarray, ds: int, mode: str) -> np.ndarray:
    """SeqSLAM's calibrated confidence: the uniqueness ratio with short windows pushed below
    full ones (:func:`cap_short_windows`; online: below 1, the lowest ratio a full window can
    have, so the rule is causal)."""
    if mode == "online":
        return cap_short_windows(ratio, lengths, full=ds, floor=1.0)
    return cap_short_windows(ratio, lengths)


def seqslam(D: np.ndarray, params: SeqSLAMParams = SeqSLAMParams(), return_scores: bool = True) -> SequenceMatch:
    """SeqSLAM: the mean contrast-enhanced difference along the best straight trajectory.

    Confidence: the uniqueness ratio (best cost outside ``±uniqueness_radius`` over the best),
    with ``params.calibrate`` calibrated so that short windows never outrank full ones
    (:func:`calibrate_ratio`).

    Shape:
        D: ``(Q, N)``; result arrays ``(Q,)``, ``scores`` float32 ``(Q, N)`` when requested.
    """
    D = check_matrix(D)
    q, n = D.shape
    z = enhance_contrast(D, params.enhance_window)
    offsets = window_offsets(params.ds, params.mode)
    shifts = trajectory_shifts(offsets, velocities(params.vmin, params.vmax, params.n_velocities))
    best = np.empty(q, np.int64)
    score = np.empty(q, np.float32)
    conf = np.empty(q, np.float32)
    scores = np.empty((q, n), np.float32) if return_scores else np.empty((1, 1), np.float32)
    seqslam_rows(z, offsets, shifts, enhance_bound(params.enhance_window), int(params.uniqueness_radius),
                 best, score, conf, scores, return_scores)
    if params.calibrate:
        conf = calibrate_ratio(conf, window_lengths(q, offsets), params.ds, params.mode)
    return SequenceMatch(best, score, conf, scores if return_scores else None, "seqslam", params.as_dict())


def seqslam_reference(D: np.ndarray, ds: int = 10, mode: str = "offline", vmin: float = 0.8,
                      vmax: float = 1.2, n_velocities: int = 5, enhance_window: int = 10,
                      uniqueness_radius: int = 10, calibrate: Optional[bool] = None) -> SequenceMatch:
    """Straightforward loop implementation of :func:`seqslam`.

    Loops over queries, database frames, velocities and window steps in Python; only for
    checking the compiled version and for the speed benchmark (hopelessly slow beyond a few
    hundred frames). Same result (with ``scores``) as :func:`seqslam`.
    """
    D = check_matrix(D)
    q, n = D.shape
    z = enhance_contrast(D, enhance_window).astype(np.float64)
    bound = enhance_bound(enhance_window)
    offsets = window_offsets(ds, mode)
    vel = velocities(vmin, vmax, n_velocities)
    scores = np.empty((q, n), dtype=np.float64)
    for i in range(q):
        steps = [t for t in offsets.tolist() if 0 <= i + t < q]
        for j in range(n):
            best = np.inf
            for v in vel.tolist():
                total = 0.0
                for t in steps:
                    x = v * t
                    s = int(np.sign(x) * np.floor(abs(x) + 0.5 + 1e-9))
                    if 0 <= j + s < n:
                        total += z[i + t, j + s]
                best = min(best, total)
            scores[i, j] = best / len(steps) + bound
    scores = scores.astype(np.float32)
    b = np.argmin(scores, axis=1)
    conf = uniqueness_ratio(scores, b, uniqueness_radius)
    if SeqSLAMParams(ds=ds, mode=mode, calibrate=calibrate).calibrate:
        conf = calibrate_ratio(conf, window_lengths(q, offsets), ds, mode)
    return SequenceMatch(b.astype(np.int64), scores[np.arange(q), b], conf, scores, "seqslam",
                         {"ds": int(ds), "mode": mode, "reference": True})
