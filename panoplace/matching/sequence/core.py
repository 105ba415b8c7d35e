"""Shared pieces of the sequence matchers: the result type, matrix checks and helpers, contrast
enhancement, windows, trajectories, the HMM jump prior, confidence calibration.

Everything here is used by the dense matchers (:mod:`.seqslam`, :mod:`.hmm`, :mod:`.classic`),
the sparse ones (:mod:`panoplace.matching.sparse`) and the online localiser; nothing here imports
them (no cycle).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from panoplace.errors import InputError
from panoplace.matching.sequence.kernels import enhance_rows
from panoplace.topk import top_k

log = logging.getLogger(__name__)

METHODS = ("seqslam", "hmm")
MATCHERS = ("single", "seqslam", "hmm", "seqslam_classic")
MODES = ("offline", "online")

__all__ = [
    "MATCHERS",
    "METHODS",
    "MODES",
    "SequenceMatch",
    "cap_short_windows",
    "check_matrix",
    "combine_differences",
    "enhance_bound",
    "enhance_contrast",
    "rank_costs",
    "standardise_columns",
    "standardise_rows",
    "trajectory_shifts",
    "transition_kernel",
    "uniqueness_ratio",
    "velocities",
    "window_lengths",
    "window_offsets",
]


@dataclass
class SequenceMatch:
    """Result of matching each query against the database.

    Attributes:
        best: int64 ``(Q,)`` database index of the best match (``-1``: no match).
        score: float32 ``(Q,)`` the method's cost of the best match (lower = better).
        confidence: float32 ``(Q,)`` how sure the match is (higher = more confident); see the
            method's description in :mod:`panoplace.matching.sequence`.
        scores: float32 ``(Q, N)`` cost of every database frame for every query (lower =
            better), or None when not requested.
        method: name of the method.
        params: the parameters used (JSON-serialisable).
        candidates: int64 ``(Q, k)`` database indices best first (``-1`` = none), for results
            without a full ``scores`` matrix (the sparse matchers); None otherwise.
        candidate_costs: float32 ``(Q, k)`` the costs of ``candidates`` (``inf`` for ``-1``).
    """

    best: np.ndarray
    score: np.ndarray
    confidence: np.ndarray
    scores: Optional[np.ndarray] = None
    method: str = ""
    params: Dict[str, Any] = field(default_factory=dict)
    candidates: Optional[np.ndarray] = None
    candidate_costs: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return int(len(self.best))

    def ranked(self, k: int) -> np.ndarray:
        """The ``k`` best database indices per query, best first, int64 ``(Q, k)``.

        Uses :attr:`scores` (or :attr:`candidates` of a sparse result); without them only the
        best match is known and the other columns are ``-1``. Rows of queries without a match
        (``best == -1``) are all ``-1``; entries whose cost is infinite are ``-1``.
        """
        q = len(self.best)
        if k < 1:
            raise InputError(f"k must be >= 1, got {k}")
        if self.scores is None and self.candidates is not None:
            out = np.full((q, k), -1, dtype=np.int64)
            m = min(k, self.candidates.shape[1])
            out[:, :m] = self.candidates[:, :m]
            out[np.asarray(self.best) < 0] = -1
            return out
        if self.scores is None:
            out = np.full((q, k), -1, dtype=np.int64)
            out[:, 0] = self.best
            return out
        return rank_costs(self.scores, k, self.best)


def rank_costs(costs: np.ndarray, k: int, best: Optional[np.ndarray] = None) -> np.ndarray:
    """Indices of the ``k`` lowest costs per row, best first (equal costs by the lower index,
    :func:`panoplace.topk.top_k`); ``-1`` for infinite costs.

    Shape:
        costs: ``(Q, N)``; best: optional ``(Q,)`` (rows with ``best == -1`` become all -1).
        returns: int64 ``(Q, min(k, N))``.
    """
    out = top_k(costs, k)
    out[~np.isfinite(np.take_along_axis(costs, out, axis=1))] = -1
    if best is not None:
        out[np.asarray(best) < 0] = -1
    return out


def check_matrix(D: np.ndarray) -> np.ndarray:
    """Validate a difference matrix: 2-D, non-empty, finite. Returns float32 ``(Q, N)``."""
    a = np.asarray(D)
    if a.ndim != 2:
        raise InputError(f"the difference matrix must have shape (Q, N), got {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise InputError(f"the difference matrix is empty (shape {a.shape})")
    a = a.astype(np.float32, copy=False)
    if not np.isfinite(a).all():
        raise InputError(f"the difference matrix holds {int((~np.isfinite(a)).sum())} NaN/inf value(s)")
    return a


def standardise_rows(D: np.ndarray) -> np.ndarray:
    """Z-score every query row over all database frames, then shift each row to minimum 0.

    Uses row i only, so it keeps online matching causal. Makes difference matrices of
    different descriptors comparable before they are added (:func:`combine_differences`).

    Shape:
        D: ``(Q, N)``; returns float32 ``(Q, N)``.
    """
    D = check_matrix(D).astype(np.float64)
    z = (D - D.mean(axis=1, keepdims=True)) / np.maximum(D.std(axis=1, keepdims=True), 1e-12)
    return (z - z.min(axis=1, keepdims=True)).astype(np.float32)


def standardise_columns(D: np.ndarray) -> np.ndarray:
    """Z-score every database column over all queries, then shift to minimum 0.

    Removes "hub" database frames that look alike to every query (a uniform stretch, a station
    where the train stood). Rows are centred first (each query row minus its mean) so that
    per-query offsets do not leak into the column statistics. It uses every query, including
    later ones, so use it for offline matching only.

    Shape:
        D: ``(Q, N)``; returns float32 ``(Q, N)``.
    """
    D = check_matrix(D).astype(np.float64)
    D = D - D.mean(axis=1, keepdims=True)
    z = (D - D.mean(axis=0, keepdims=True)) / np.maximum(D.std(axis=0, keepdims=True), 1e-12)
    return (z - z.min()).astype(np.float32)


def combine_differences(*matrices: np.ndarray, weights: Optional[Sequence[float]] = None) -> np.ndarray:
    """Sum of row-standardised difference matrices (:func:`standardise_rows`), e.g. of
    64x32 and 32x16 patch-normalised SAD. Causal (row by row).

    weights: one per matrix (finite, >= 0, not all 0; default all 1): the sum is weighted.

    Shape:
        each ``(Q, N)``; returns float32 ``(Q, N)``, minimum 0 per row.
    """
    if not matrices:
        raise InputError("combine_differences needs at least one matrix")
    shape = np.shape(matrices[0])
    if any(np.shape(m) != shape for m in matrices):
        raise InputError(f"difference matrices differ in shape: {[np.shape(m) for m in matrices]}")
    w = [1.0] * len(matrices) if weights is None else [float(x) for x in weights]
    if len(w) != len(matrices):
        raise InputError(f"{len(w)} weight(s) for {len(matrices)} difference matrices; give one per matrix")
    if not all(np.isfinite(x) and x >= 0 for x in w) or not any(w):
        raise InputError(f"weights must be finite, >= 0 and not all 0; got {w}")
    total = np.zeros(shape, dtype=np.float32)
    for m, x in zip(matrices, w):
        if x == 1.0:
            total += standardise_rows(m)
        elif x:
            total += np.float32(x) * standardise_rows(m)
    return total - total.min(axis=1, keepdims=True)


def enhance_contrast(D: np.ndarray, window: int = 10, chunk_bytes: int = 0) -> np.ndarray:
    """SeqSLAM's local contrast enhancement, as z-scores.

    Every entry ``D[i, j]`` becomes ``(D[i, j] - mean) / std`` with mean and (population) std
    over database frames ``j - window//2 .. j + window//2`` of the same query row (cut at the
    ends). Each row is enhanced on its own, so the result for query i depends on row i only.
    A window of ``n`` values bounds ``|z|`` by ``sqrt(n - 1)`` (:func:`enhance_bound`).
    ``chunk_bytes`` is accepted for compatibility and unused (rows are processed one by one).

    Shape:
        D: ``(Q, N)``; returns float32 ``(Q, N)``.
    """
    D = check_matrix(D)
    if window < 1:
        raise InputError(f"the contrast enhancement window must be >= 1, got {window}")
    out = np.empty(D.shape, dtype=np.float32)
    enhance_rows(np.ascontiguousarray(D), int(window) // 2, out)
    return out


def enhance_bound(window: int) -> float:
    """Largest possible ``|z|`` of :func:`enhance_contrast` (``sqrt(n - 1)``, n = window size)."""
    return float(np.sqrt(2 * (int(window) // 2)))


def window_offsets(ds: int, mode: str) -> np.ndarray:
    """Query offsets ``t`` of the window of query i (frames ``i + t``), int64 ``(ds,)``.

    offline: ``-ds//2 .. ds - 1 - ds//2``; online: ``-(ds - 1) .. 0``.
    """
    if mode not in MODES:
        raise InputError(f"unknown sequence mode {mode!r}; choose one of {', '.join(MODES)}")
    if int(ds) != ds or ds < 1:
        raise InputError(f"the sequence length ds must be a positive integer, got {ds}")
    ds = int(ds)
    t = np.arange(ds, dtype=np.int64)
    return t - ds // 2 if mode == "offline" else t - (ds - 1)


def velocities(vmin: float, vmax: float, n_velocities: int) -> np.ndarray:
    """``n_velocities`` evenly spaced velocities from ``vmin`` to ``vmax``, float64."""
    if n_velocities < 1:
        raise InputError(f"n_velocities must be >= 1, got {n_velocities}")
    if vmax < vmin:
        raise InputError(f"vmax ({vmax}) is smaller than vmin ({vmin})")
    if n_velocities == 1:
        return np.array([(vmin + vmax) / 2.0])
    return np.linspace(vmin, vmax, int(n_velocities))


def trajectory_shifts(offsets: np.ndarray, vel: np.ndarray) -> np.ndarray:
    """Database offsets ``round(v * t)`` (half away from zero), int64 ``(V, ds)``."""
    x = vel[:, None] * offsets[None, :].astype(np.float64)
    return (np.sign(x) * np.floor(np.abs(x) + 0.5 + 1e-9)).astype(np.int64)


def uniqueness_ratio(costs: np.ndarray, best: np.ndarray, radius: int) -> np.ndarray:
    """Best cost outside ``±radius`` frames of ``best`` divided by the best cost.

    Costs must be non-negative. A row with nothing outside the window gets 1.0.

    Shape:
        costs: ``(m, N)``; best: ``(m,)``; returns float32 ``(m,)``.
    """
    n = costs.shape[1]
    b1 = np.take_along_axis(costs, best[:, None], axis=1)[:, 0]
    near = np.abs(np.arange(n)[None, :] - best[:, None]) <= radius
    b2 = np.where(near, np.inf, costs).min(axis=1)
    ratio = b2 / np.maximum(b1, 1e-9)
    return np.where(np.isfinite(b2), ratio, 1.0).astype(np.float32)


def transition_kernel(vmin: float, vmax: float, jump_std: float) -> Tuple[np.ndarray, np.ndarray]:
    """Jump prior of the HMM: database jumps ``d`` per query frame and their probabilities.

    Jumps run from ``floor(vmin) - 1`` to ``ceil(vmax) + 1`` with weights
    ``exp(-(d - v)^2 / (2 jump_std^2))``, ``v = (vmin + vmax) / 2``; jumps weighing less than
    1e-4 of the largest are dropped (they cannot change a result but cost a pass over the
    data each), the rest normalised to sum 1.

    Returns:
        (jumps int64 ``(K,)``, probabilities float64 ``(K,)``).
    """
    if jump_std <= 0:
        raise InputError(f"jump_std must be > 0, got {jump_std}")
    jumps = np.arange(int(np.floor(vmin)) - 1, int(np.ceil(vmax)) + 2, dtype=np.int64)
    w = np.exp(-((jumps - (vmin + vmax) / 2.0) ** 2) / (2.0 * jump_std ** 2))
    keep = w >= 1e-4 * w.max()
    return jumps[keep], w[keep] / w[keep].sum()




def window_lengths(n_queries: int, offsets: np.ndarray) -> np.ndarray:
    """Query frames that exist in the window of each query (the window cut at the sequence's
    ends), int64 ``(Q,)``."""
    i = np.arange(int(n_queries))[:, None] + np.asarray(offsets)[None, :]
    return ((i >= 0) & (i < n_queries)).sum(axis=1).astype(np.int64)


def cap_short_windows(confidence: np.ndarray, lengths: np.ndarray, full: Optional[int] = None,
                      floor: Optional[float] = None) -> np.ndarray:
    """Calibrate confidences so that a short window never outranks a full one.

    A query whose window holds fewer frames than a full window (the start and end of a
    sequence, or frames after a gap) has less evidence, yet a matcher's confidence (a uniqueness
    ratio, a posterior mass) can be at its highest there: one frame that happens to look
    unique. Full windows keep their values; short ones are pushed below ``floor``:

    - ``floor`` given (online, causal): the lowest confidence a full window can have (1 for a
      uniqueness ratio, ``1 / N`` for a posterior mass over N frames); every short-window
      value ``x >= 0`` becomes ``floor * x / (1 + x)`` (below ``floor``, order kept).
    - ``floor`` None (offline, a whole run at hand): the largest float below the lowest
      full-window confidence of the run; when some short window reaches it, all short-window
      values are scaled down by one factor so that the largest lands there (order kept);
      otherwise nothing changes.

    Shape:
        confidence: float ``(Q,)``, >= 0; lengths: int ``(Q,)`` frames in each query's window;
        full: frames of a full window (default: the longest window of the run).
        returns: float32 ``(Q,)``.
    """
    conf = np.asarray(confidence, dtype=np.float32).copy()
    lengths = np.asarray(lengths)
    if len(conf) == 0:
        return conf
    short = lengths < (lengths.max() if full is None else int(full))
    if not short.any():
        return conf
    if floor is not None:
        x = np.maximum(conf[short].astype(np.float64), 0.0)
        conf[short] = (float(floor) * x / (1.0 + x)).astype(np.float32)
        conf[short] = np.minimum(conf[short], np.nextafter(np.float32(floor), np.float32(-np.inf)))
        return conf
    if short.all():
        return conf
    low = np.nextafter(np.float32(conf[~short].min()), np.float32(-np.inf))
    top = np.float32(conf[short].max())
    if top <= low:
        return conf
    if low > 0 and conf[short].min() >= 0:
        conf[short] = np.minimum(conf[short] * (low / top), low)
    else:
        conf[short] = np.minimum(conf[short], low)
    return conf
