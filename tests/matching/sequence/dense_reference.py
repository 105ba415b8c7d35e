"""Test reference: the dense sequence matchers as they were before the compiled kernels
(panoplace 0.1's ``panoplace/matching/sequence.py``, numpy only, kept verbatim apart from this
paragraph and the classic dispatch). The compiled matchers must give the same results.

Sequence matching on a query-vs-database difference matrix.

A single frame is ambiguous under strong appearance change (summer vs winter), a sequence of
frames much less so: these matchers score each (query i, database frame j) pair by how well the
*sequence* of queries around i matches a sequence of database frames through j.

All methods take a difference (distance) matrix ``D`` of shape ``(Q, N)`` (lower = more
similar; query i is row i, frames in traversal order) and return a :class:`SequenceMatch`.

Methods (:data:`METHODS`):

``seqslam``
    SeqSLAM (Milford & Wyeth 2012). Local contrast enhancement (:func:`enhance_contrast`):
    every entry becomes a z-score over a window of database frames of the same query, shifted by
    the largest possible ``|z|`` so it is non-negative. Then straight trajectories of ``ds``
    query frames over ``n_velocities`` velocities from ``vmin`` to ``vmax`` (database frames per
    query frame); a trajectory through (i, j) visits database frame ``j + round(v * t)`` at query
    ``i + t``. The score of (i, j) is the minimum over velocities of the mean enhanced difference
    along the trajectory (the sum divided by the number of query frames in the window; steps
    that fall off the database count as the neutral value ``z = 0``). Confidence is the
    uniqueness ratio: the best score outside ``±uniqueness_radius`` frames of the best match
    divided by the best score (>= 1; higher = more unique).

``hmm``
    A hidden Markov model over database frames, run over the same window of ``ds`` query
    frames. The transition prior allows database jumps of ``floor(vmin) - 1 .. ceil(vmax) + 1``
    frames per query frame with a Gaussian weight around the mean velocity
    ``(vmin + vmax) / 2`` (std ``jump_std``) plus a small uniform "teleport" probability;
    unlike SeqSLAM's straight lines, the path may speed up and slow down inside the window.
    The emission likelihood is ``exp(-z / sigma)`` of the enhanced differences. Offline mode
    combines the forward pass over the past half-window with the backward pass over the
    future half-window (forward-backward: the posterior of the database frame at query i);
    online mode is forward filtering over the last ``ds`` frames. The score is
    ``-log posterior``; the confidence is the posterior mass within ``±uniqueness_radius``
    frames of the best match (a probability in [0, 1]).

    ``jump_std`` trades steadiness for flexibility. Measured (R@1, ds 20 on Nordland
    summer→winter, benchmarks/bench_sequence_nordland.py; ds 12 on a synthetic route whose
    speed swings ±30-50 %): 0.3 → Nordland 0.946, synthetic 0.70; the default 0.4 → 0.941
    and 0.88; 0.5 → 0.90 and 0.97. Use 0.3 for constant speed, 0.5 for stop-and-go.

Other matchers (:data:`MATCHERS`): ``single`` (no sequence) and ``seqslam_classic`` (the
OpenSeqSLAM port in :mod:`panoplace.matching.seqslam_classic`, the baseline). Helpers to build
better difference matrices: :func:`combine_differences` (sum of row-standardised matrices) and
:func:`standardise_columns` (removes "hub" database frames; offline only).

Modes (:data:`MODES`):

``offline``
    Centred window: query i uses query frames ``i - ds//2 .. i + (ds - 1) - ds//2``
    (``ds`` frames; for ``ds = 20``: ``i - 10 .. i + 9``). Needs frames after i.
``online``
    Causal window: query i uses only frames ``i - ds + 1 .. i``. Results for query i never
    depend on rows of ``D`` after i.

Near the start and end of the query sequence the window is cut to the frames that exist.

Everything is vectorised over database frames: the loops are over velocities and the ``ds``
window steps (each step adds or multiplies a shifted slice of ``D``), and over chunks of queries
that bound the working memory to ``chunk_rows x N`` values per temporary.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import numpy as np

from panoplace.errors import InputError

log = logging.getLogger(__name__)

METHODS = ("seqslam", "hmm")
MATCHERS = ("single", "seqslam", "hmm", "seqslam_classic")
MODES = ("offline", "online")

__all__ = [
    "MATCHERS",
    "METHODS",
    "MODES",
    "SequenceMatch",
    "combine_differences",
    "enhance_contrast",
    "match_sequence",
    "seqslam_reference",
    "single_frame_match",
    "standardise_columns",
    "standardise_rows",
    "uniqueness_ratio",
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
    """

    best: np.ndarray
    score: np.ndarray
    confidence: np.ndarray
    scores: Optional[np.ndarray] = None
    method: str = ""
    params: Dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(len(self.best))

    def ranked(self, k: int) -> np.ndarray:
        """The ``k`` best database indices per query, best first, int64 ``(Q, k)``.

        Uses :attr:`scores`; without them only the best match is known and the other columns
        are ``-1``. Rows of queries without a match (``best == -1``) are all ``-1``; entries
        whose cost is infinite are ``-1``.
        """
        q = len(self.best)
        if k < 1:
            raise InputError(f"k must be >= 1, got {k}")
        if self.scores is None:
            out = np.full((q, k), -1, dtype=np.int64)
            out[:, 0] = self.best
            return out
        return rank_costs(self.scores, k, self.best)


def rank_costs(costs: np.ndarray, k: int, best: Optional[np.ndarray] = None) -> np.ndarray:
    """Indices of the ``k`` lowest costs per row, best first; ``-1`` for infinite costs.

    Shape:
        costs: ``(Q, N)``; best: optional ``(Q,)`` (rows with ``best == -1`` become all -1).
        returns: int64 ``(Q, min(k, N))``.
    """
    q, n = costs.shape
    k = min(int(k), n)
    if k < n:
        part = np.argpartition(costs, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(n), (q, n)).copy()
    vals = np.take_along_axis(costs, part, axis=1)
    order = np.argsort(vals, axis=1, kind="stable")
    out = np.take_along_axis(part, order, axis=1).astype(np.int64)
    out[~np.isfinite(np.take_along_axis(vals, order, axis=1))] = -1
    if best is not None:
        out[np.asarray(best) < 0] = -1
    return out


def _check_matrix(D: np.ndarray) -> np.ndarray:
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


def _chunk_rows(n: int, chunk_bytes: int, arrays: int = 4, itemsize: int = 8) -> int:
    return max(1, int(chunk_bytes // max(1, n * arrays * itemsize)))


def standardise_rows(D: np.ndarray) -> np.ndarray:
    """Z-score every query row over all database frames, then shift each row to minimum 0.

    Uses row i only, so it keeps online matching causal. Makes difference matrices of
    different descriptors comparable before they are added (:func:`combine_differences`).

    Shape:
        D: ``(Q, N)``; returns float32 ``(Q, N)``.
    """
    D = _check_matrix(D).astype(np.float64)
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
    D = _check_matrix(D).astype(np.float64)
    D = D - D.mean(axis=1, keepdims=True)
    z = (D - D.mean(axis=0, keepdims=True)) / np.maximum(D.std(axis=0, keepdims=True), 1e-12)
    return (z - z.min()).astype(np.float32)


def combine_differences(*matrices: np.ndarray) -> np.ndarray:
    """Sum of row-standardised difference matrices (:func:`standardise_rows`), e.g. of
    64x32 and 32x16 patch-normalised SAD. Causal (row by row).

    Shape:
        each ``(Q, N)``; returns float32 ``(Q, N)``, minimum 0 per row.
    """
    if not matrices:
        raise InputError("combine_differences needs at least one matrix")
    shape = np.shape(matrices[0])
    if any(np.shape(m) != shape for m in matrices):
        raise InputError(f"difference matrices differ in shape: {[np.shape(m) for m in matrices]}")
    total = np.zeros(shape, dtype=np.float32)
    for m in matrices:
        total += standardise_rows(m)
    return total - total.min(axis=1, keepdims=True)


def enhance_contrast(D: np.ndarray, window: int = 10, chunk_bytes: int = 1 << 27) -> np.ndarray:
    """SeqSLAM's local contrast enhancement, as z-scores.

    Every entry ``D[i, j]`` becomes ``(D[i, j] - mean) / std`` with mean and (population) std
    over database frames ``j - window//2 .. j + window//2`` of the same query row (cut at the
    ends). Each row is enhanced on its own, so the result for query i depends on row i only.
    A window of ``n`` values bounds ``|z|`` by ``sqrt(n - 1)`` (:func:`enhance_bound`).

    Shape:
        D: ``(Q, N)``; returns float32 ``(Q, N)``.
    """
    D = _check_matrix(D)
    if window < 1:
        raise InputError(f"the contrast enhancement window must be >= 1, got {window}")
    q, n = D.shape
    half = int(window) // 2
    j = np.arange(n)
    a = np.maximum(0, j - half)
    b = np.minimum(n, j + half + 1)
    cnt = (b - a).astype(np.float64)
    out = np.empty((q, n), dtype=np.float32)
    step = _chunk_rows(n + 1, chunk_bytes, arrays=10)
    for i0 in range(0, q, step):
        x = D[i0:i0 + step].astype(np.float64)
        c1 = np.zeros((len(x), n + 1))
        c2 = np.zeros((len(x), n + 1))
        np.cumsum(x, axis=1, out=c1[:, 1:])
        np.cumsum(x * x, axis=1, out=c2[:, 1:])
        mean = (c1[:, b] - c1[:, a]) / cnt
        var = (c2[:, b] - c2[:, a]) / cnt - mean * mean
        out[i0:i0 + step] = (x - mean) / np.sqrt(np.maximum(var, 1e-12))
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


def _seqslam_chunk(z: np.ndarray, q0: int, q1: int, offsets: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Mean enhanced difference along the best straight trajectory, float32 ``(q1 - q0, N)``."""
    q, n = z.shape
    m = q1 - q0
    best = np.full((m, n), np.inf, dtype=np.float32)
    acc = np.empty((m, n), dtype=np.float32)
    rows = np.arange(q0, q1)
    qcount = ((rows[:, None] + offsets[None, :] >= 0) & (rows[:, None] + offsets[None, :] < q)).sum(axis=1)
    for vi in range(shifts.shape[0]):
        acc.fill(0.0)
        for t, s in zip(offsets.tolist(), shifts[vi].tolist()):
            r_lo, r_hi = max(0, -(q0 + t)), min(m, q - (q0 + t))
            j_lo, j_hi = max(0, -s), min(n, n - s)
            if r_lo >= r_hi or j_lo >= j_hi:
                continue
            acc[r_lo:r_hi, j_lo:j_hi] += z[q0 + t + r_lo:q0 + t + r_hi, j_lo + s:j_hi + s]
        np.minimum(best, acc, out=best)
    best /= qcount[:, None].astype(np.float32)
    return best


def _seqslam(D: np.ndarray, ds: int, mode: str, vmin: float, vmax: float, n_velocities: int,
             enhance_window: int, uniqueness_radius: int, return_scores: bool,
             chunk_bytes: int) -> SequenceMatch:
    q, n = D.shape
    z = enhance_contrast(D, enhance_window, chunk_bytes)
    bound = enhance_bound(enhance_window)
    offsets = window_offsets(ds, mode)
    vel = velocities(vmin, vmax, n_velocities)
    shifts = trajectory_shifts(offsets, vel)
    best = np.empty(q, dtype=np.int64)
    score = np.empty(q, dtype=np.float32)
    conf = np.empty(q, dtype=np.float32)
    scores = np.empty((q, n), dtype=np.float32) if return_scores else None
    step = _chunk_rows(n, chunk_bytes, arrays=3, itemsize=4)
    for q0 in range(0, q, step):
        q1 = min(q, q0 + step)
        cost = _seqslam_chunk(z, q0, q1, offsets, shifts)
        cost += bound  # non-negative, so the uniqueness ratio is defined
        b = np.argmin(cost, axis=1)
        best[q0:q1] = b
        score[q0:q1] = cost[np.arange(q1 - q0), b]
        conf[q0:q1] = uniqueness_ratio(cost, b, uniqueness_radius)
        if scores is not None:
            scores[q0:q1] = cost
    params = {"ds": int(ds), "mode": mode, "vmin": float(vmin), "vmax": float(vmax),
              "n_velocities": int(n_velocities), "enhance_window": int(enhance_window),
              "uniqueness_radius": int(uniqueness_radius)}
    return SequenceMatch(best, score, conf, scores, "seqslam", params)


def seqslam_reference(D: np.ndarray, ds: int = 10, mode: str = "offline", vmin: float = 0.8,
                      vmax: float = 1.2, n_velocities: int = 5, enhance_window: int = 10,
                      uniqueness_radius: int = 10) -> SequenceMatch:
    """Straightforward loop implementation of ``match_sequence(D, 'seqslam', ...)``.

    Loops over queries, database frames, velocities and window steps in Python; only for
    checking the vectorised version and for the speed benchmark (hopelessly slow beyond a few
    hundred frames). Same arguments and result (with ``scores``) as :func:`match_sequence`.
    """
    D = _check_matrix(D)
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
    return SequenceMatch(b.astype(np.int64), scores[np.arange(q), b], conf, scores, "seqslam",
                         {"ds": int(ds), "mode": mode, "reference": True})


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


def _propagate(x: np.ndarray, jumps: np.ndarray, probs: np.ndarray, teleport: float,
               backward: bool) -> np.ndarray:
    """One HMM transition of row distributions ``x`` ``(m, N)``.

    Forward: ``out[:, j] = sum_d p(d) x[:, j - d]``; backward: ``out[:, j] = sum_d p(d) x[:, j + d]``;
    both mixed with a uniform jump of weight ``teleport``.
    """
    n = x.shape[1]
    out = np.zeros_like(x)
    tmp = np.empty_like(x)
    for d, p in zip(jumps.tolist(), probs.tolist()):
        s = -d if backward else d  # out[:, j] += p * x[:, j - s]
        w = p * (1.0 - teleport)
        if 0 <= s < n:
            np.multiply(x[:, :n - s], w, out=tmp[:, :n - s])
            out[:, s:] += tmp[:, :n - s]
        elif 0 < -s < n:
            np.multiply(x[:, -s:], w, out=tmp[:, :n + s])
            out[:, :n + s] += tmp[:, :n + s]
    out += teleport * x.mean(axis=1, keepdims=True)
    return out


def _emission(z: np.ndarray, q0: int, m: int, t: int, sigma: float) -> np.ndarray:
    """Emission likelihoods of queries ``q0 + r + t`` (``r < m``) scaled to max 1; 1 where the
    query frame does not exist. float32 ``(m, N)``."""
    q, n = z.shape
    e = np.ones((m, n), dtype=np.float32)
    r_lo, r_hi = max(0, -(q0 + t)), min(m, q - (q0 + t))
    if r_lo < r_hi:
        x = z[q0 + t + r_lo:q0 + t + r_hi]
        x = x - x.min(axis=1, keepdims=True)
        x *= np.float32(-1.0 / sigma)
        np.exp(x, out=e[r_lo:r_hi])
    return e


def _hmm(D: np.ndarray, ds: int, mode: str, vmin: float, vmax: float, jump_std: float,
         teleport: float, sigma: float, enhance_window: int, uniqueness_radius: int,
         return_scores: bool, chunk_bytes: int) -> SequenceMatch:
    if sigma <= 0:
        raise InputError(f"sigma must be > 0, got {sigma}")
    if not 0.0 <= teleport < 1.0:
        raise InputError(f"teleport must be in [0, 1), got {teleport}")
    q, n = D.shape
    z = enhance_contrast(D, enhance_window, chunk_bytes)
    offsets = window_offsets(ds, mode)
    past = offsets[offsets <= 0]
    future = offsets[offsets > 0]
    jumps, probs = transition_kernel(vmin, vmax, jump_std)
    best = np.empty(q, dtype=np.int64)
    score = np.empty(q, dtype=np.float32)
    conf = np.empty(q, dtype=np.float32)
    scores = np.empty((q, n), dtype=np.float32) if return_scores else None
    step = _chunk_rows(n, chunk_bytes, arrays=6, itemsize=4)
    cols = np.arange(n)
    for q0 in range(0, q, step):
        m = min(q, q0 + step) - q0
        # Query frames before the first / after the last one do not exist: a row's chain
        # starts (forward) or ends (backward) at its first / last existing frame, so no
        # transition is applied across missing frames (that would drain the database ends).
        alpha = np.full((m, n), 1.0 / n, dtype=np.float32)
        prev = None
        for t in past.tolist():
            if prev is not None:
                r0 = min(m, max(0, -(q0 + prev)))  # rows whose previous frame exists
                if r0 < m:
                    alpha[r0:] = _propagate(alpha[r0:], jumps, probs, teleport, backward=False)
            alpha *= _emission(z, q0, m, t, sigma)
            alpha /= alpha.sum(axis=1, keepdims=True)
            prev = t
        beta = np.ones((m, n), dtype=np.float32)
        for t in future[::-1].tolist():
            r1 = max(0, min(m, q - q0 - t))  # rows whose frame i + t exists
            if r1 > 0:
                beta[:r1] = _propagate(beta[:r1] * _emission(z, q0, r1, t, sigma), jumps, probs, teleport,
                                       backward=True)
                beta[:r1] /= beta[:r1].sum(axis=1, keepdims=True)
        post = alpha * beta
        post /= post.sum(axis=1, keepdims=True)
        b = np.argmax(post, axis=1)
        best[q0:q0 + m] = b
        pb = post[np.arange(m), b]
        score[q0:q0 + m] = -np.log(np.maximum(pb, 1e-30))
        near = np.abs(cols[None, :] - b[:, None]) <= uniqueness_radius
        conf[q0:q0 + m] = np.where(near, post, 0.0).sum(axis=1)
        if scores is not None:
            scores[q0:q0 + m] = -np.log(np.maximum(post, np.float32(1e-30)))
    params = {"ds": int(ds), "mode": mode, "vmin": float(vmin), "vmax": float(vmax),
              "jump_std": float(jump_std), "teleport": float(teleport), "sigma": float(sigma),
              "enhance_window": int(enhance_window), "uniqueness_radius": int(uniqueness_radius)}
    return SequenceMatch(best, score, conf, scores, "hmm", params)


def single_frame_match(D: np.ndarray, uniqueness_radius: int = 0, return_scores: bool = True) -> SequenceMatch:
    """Best database frame per query without any sequence information.

    The confidence is the uniqueness ratio of the raw differences (second-best outside
    ``±uniqueness_radius`` frames divided by best; with radius 0, the classic nearest /
    second-nearest ratio). ``D`` must be non-negative for the ratio to mean anything.

    Shape:
        D: ``(Q, N)``; result arrays ``(Q,)`` and ``scores`` ``(Q, N)`` (= ``D``).
    """
    D = _check_matrix(D)
    b = np.argmin(D, axis=1)
    conf = uniqueness_ratio(D, b, uniqueness_radius)
    return SequenceMatch(b.astype(np.int64), D[np.arange(len(D)), b], conf,
                         D if return_scores else None, "single", {"uniqueness_radius": int(uniqueness_radius)})


def match_sequence(D: np.ndarray, method: str = "hmm", ds: int = 10, mode: str = "offline",
                   vmin: float = 0.8, vmax: float = 1.2, n_velocities: int = 5,
                   enhance_window: int = 10, uniqueness_radius: int = 10,
                   jump_std: float = 0.4, teleport: float = 1e-3, sigma: float = 1.0,
                   return_scores: bool = True, chunk_bytes: int = 1 << 27) -> SequenceMatch:
    """Match every query to a database frame using the sequence of frames around it.

    Args:
        D: difference matrix, lower = more similar; rows are queries in traversal order,
            columns database frames in traversal order.
        method: one of :data:`MATCHERS`: a sequence method of :data:`METHODS` (see the module
            docstring), ``single`` (:func:`single_frame_match`, no sequence; only
            ``uniqueness_radius`` applies) or ``seqslam_classic`` (the OpenSeqSLAM port
            :func:`~panoplace.matching.seqslam_classic.seqslam_classic`, offline only, velocities
            of whole frames per ``ds`` between ``vmin`` and ``vmax``).
        ds: sequence length in query frames.
        mode: ``offline`` (centred window, uses later frames) or ``online`` (causal: only
            frames ``i - ds + 1 .. i``).
        vmin, vmax: range of database frames per query frame.
        n_velocities: velocities tried between ``vmin`` and ``vmax`` (seqslam).
        enhance_window: database frames of the local contrast enhancement window.
        uniqueness_radius: frames around the best match that the confidence treats as "the
            same place".
        jump_std, teleport, sigma: HMM transition spread (see the module docstring), uniform
            jump probability and emission temperature (hmm).
        return_scores: keep the ``(Q, N)`` cost matrix (needed for Recall@N > 1).
        chunk_bytes: working-memory budget per temporary; queries are processed in chunks.

    Shape:
        D: ``(Q, N)`` float; result: ``best``/``score``/``confidence`` ``(Q,)``,
        ``scores`` ``(Q, N)`` float32.
    """
    D = _check_matrix(D)
    if method == "single":
        return single_frame_match(D, uniqueness_radius=uniqueness_radius, return_scores=return_scores)
    if method == "seqslam":
        return _seqslam(D, ds, mode, vmin, vmax, n_velocities, enhance_window, uniqueness_radius,
                        return_scores, chunk_bytes)
    if method == "hmm":
        window_offsets(ds, mode)
        return _hmm(D, ds, mode, vmin, vmax, jump_std, teleport, sigma, enhance_window,
                    uniqueness_radius, return_scores, chunk_bytes)
    raise InputError(f"unknown sequence matching method {method!r}; choose one of {', '.join(MATCHERS)}")
