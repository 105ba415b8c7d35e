"""Dense windowed HMM on a ``(Q, N)`` difference matrix (see :mod:`panoplace.matching.sequence`)."""

from __future__ import annotations

import logging

import numpy as np

from panoplace.matching.sequence.core import (
    SequenceMatch,
    cap_short_windows,
    check_matrix,
    enhance_contrast,
    transition_kernel,
    window_lengths,
    window_offsets,
)
from panoplace.matching.sequence.kernels import hmm_rows
from panoplace.matching.sequence.params import HMMParams

log = logging.getLogger(__name__)

__all__ = ["calibrate_mass", "emissions", "hmm"]


def calibrate_mass(mass: np.ndarray, lengths: np.ndarray, ds: int, mode: str, n_frames: int) -> np.ndarray:
    """The HMM's calibrated confidence: the posterior mass near the best match with short
    windows pushed below full ones (:func:`cap_short_windows`; online: below ``1 / n_frames``,
    the least mass a full window's best match can hold, so the rule is causal)."""
    if mode == "online":
        return cap_short_windows(mass, lengths, full=ds, floor=1.0 / max(1, int(n_frames)))
    return cap_short_windows(mass, lengths)


def emissions(z: np.ndarray, sigma: float, chunk_rows: int = 256) -> np.ndarray:
    """Emission likelihoods ``exp(-(z - min_row z) / sigma)`` in place of ``z`` (row maximum 1).

    Shape:
        z: float32 ``(Q, N)`` enhanced differences (overwritten); returns the same array.
    """
    scale = np.float32(-1.0 / sigma)
    for i in range(0, len(z), chunk_rows):
        x = z[i:i + chunk_rows]
        x -= x.min(axis=1, keepdims=True)
        x *= scale
        np.exp(x, out=x)
    return z


def hmm(D: np.ndarray, params: HMMParams = HMMParams(), return_scores: bool = True) -> SequenceMatch:
    """Windowed HMM: forward filtering (online) or forward-backward (offline) over ``ds`` frames.

    Score ``-log`` posterior; confidence the posterior mass within ``±uniqueness_radius`` frames of
    the best match; with ``params.calibrate`` short windows never outrank full ones
    (:func:`calibrate_mass`).

    Shape:
        D: ``(Q, N)``; result arrays ``(Q,)``, ``scores`` float32 ``(Q, N)`` when requested.
    """
    D = check_matrix(D)
    q, n = D.shape
    E = emissions(enhance_contrast(D, params.enhance_window), params.sigma)
    offsets = window_offsets(params.ds, params.mode)
    past = np.ascontiguousarray(offsets[offsets <= 0])
    future = np.ascontiguousarray(offsets[offsets > 0])
    jumps, probs = transition_kernel(params.vmin, params.vmax, params.jump_std)
    weights = np.array([p * (1.0 - params.teleport) for p in probs.tolist()], np.float32)
    best = np.empty(q, np.int64)
    score = np.empty(q, np.float32)
    conf = np.empty(q, np.float32)
    scores = np.empty((q, n), np.float32) if return_scores else np.empty((1, 1), np.float32)
    hmm_rows(E, past, future, jumps, weights, float(params.teleport), int(params.uniqueness_radius),
             best, score, conf, scores, return_scores)
    if params.calibrate:
        conf = calibrate_mass(conf, window_lengths(q, offsets), params.ds, params.mode, n)
    return SequenceMatch(best, score, conf, scores if return_scores else None, "hmm", params.as_dict())
