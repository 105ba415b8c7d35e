"""Rotation-aware matching of per-crop panoramic descriptors.

A panorama cut into K crops (equal crops, or sliding windows ``stride`` degrees apart that go
all the way round) turns into a circular shift of its crops when the camera turns. Comparing a
query with a database panorama under every shift ``s`` and keeping the best gives a
rotation-invariant match score and the relative heading.

Convention: the similarity under shift ``s`` is ``mean_k <query[k], database[(k + s) mod K]>``
(for L2-normalised crop descriptors it lies in [-1, 1]). If the query panorama equals the
database panorama rolled so that the query's column 0 looks where the database's column at
azimuth θ looked, the best shift is ``s = θ / step`` and the relative heading
``heading = query heading - database heading = s * step`` (wrapped to [-180, 180)), where
``step = 360 / K`` for equal crops or the window stride for sliding windows. With ``refine`` the
peak is refined by a parabola through the scores at ``s - 1, s, s + 1`` (sub-step headings).

Everything is batched with ``einsum`` over crops; there is no Python loop over candidates
(only over chunks of queries, to bound memory).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Dict, Optional

import numpy as np

from panoplace.errors import DescriptorMismatchError, InputError

log = logging.getLogger(__name__)

CHUNK_BYTES = 256 * 2 ** 20


def heading_step(n_crops: int, panorama: Optional[Dict[str, Any]] = None) -> float:
    """Degrees between neighbouring crops: the window stride for sliding windows (panorama
    config dict with ``window_deg`` set; stride defaults to the window), else ``360 / n_crops``."""
    if n_crops < 1:
        raise InputError(f"n_crops must be >= 1, got {n_crops}")
    if panorama and panorama.get("window_deg"):
        return float(panorama.get("stride_deg") or panorama["window_deg"])
    return 360.0 / n_crops


def wrap_degrees(a: np.ndarray) -> np.ndarray:
    """Angles wrapped to [-180, 180)."""
    return (np.asarray(a, dtype=np.float64) + 180.0) % 360.0 - 180.0


def shift_similarities(query: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Similarity of each query with each of its candidates under every circular crop shift.

    Shape:
        query ``(Q, K, D)``, candidates ``(Q, C, K, D)`` → ``(Q, C, K)``: entry ``[q, c, s]`` =
        ``mean_k <query[q, k], candidates[q, c, (k + s) mod K]>``.
    """
    q = np.asarray(query, dtype=np.float32)
    c = np.asarray(candidates, dtype=np.float32)
    if q.ndim != 3 or c.ndim != 4 or c.shape[0] != q.shape[0] or c.shape[2:] != q.shape[1:]:
        raise DescriptorMismatchError(
            f"per-crop shapes do not match: query {q.shape} (Q, K, D), candidates {c.shape} (Q, C, K, D)"
        )
    k = q.shape[1]
    pair = np.einsum("qkd,qcld->qckl", q, c, optimize=True)  # (Q, C, K, K) crop-to-crop
    rows = np.arange(k)[None, :]  # query crop k
    cols = (rows + np.arange(k)[:, None]) % k  # (S, K): database crop (k + s) mod K
    return pair[:, :, rows, cols].mean(axis=-1)  # (Q, C, S)


@dataclass
class RotationMatch:
    """Best-shift matches.

    scores: ``(Q, C)`` float32 best-shift similarity. shifts: ``(Q, C)`` int64 best shift.
    headings: ``(Q, C)`` float64 relative heading in degrees, [-180, 180).
    db_indices: ``(Q, C)`` int64 database rows (set by :func:`rerank`, else None).
    """

    scores: np.ndarray
    shifts: np.ndarray
    headings: np.ndarray
    db_indices: Optional[np.ndarray] = None


def best_shift(sims: np.ndarray, step_deg: float, refine: bool = True) -> RotationMatch:
    """Best shift of ``(Q, C, K)`` shift similarities (see :func:`shift_similarities`)."""
    k = sims.shape[-1]
    s = sims.argmax(axis=-1)
    score = np.take_along_axis(sims, s[..., None], axis=-1)[..., 0]
    offset = np.zeros(s.shape, dtype=np.float64)
    if refine and k >= 3:
        left = np.take_along_axis(sims, ((s - 1) % k)[..., None], axis=-1)[..., 0]
        right = np.take_along_axis(sims, ((s + 1) % k)[..., None], axis=-1)[..., 0]
        denom = left - 2.0 * score + right
        with np.errstate(divide="ignore", invalid="ignore"):
            offset = np.where(denom < 0, 0.5 * (left - right) / denom, 0.0)
        offset = np.clip(np.nan_to_num(offset), -0.5, 0.5)
    headings = wrap_degrees((s + offset) * step_deg)
    return RotationMatch(score.astype(np.float32), s.astype(np.int64), headings)


def match_rotation(query: np.ndarray, candidates: np.ndarray, step_deg: Optional[float] = None,
                   refine: bool = True) -> RotationMatch:
    """Compare each query with its candidates under every crop shift; keep the best.

    Shape:
        query ``(Q, K, D)``, candidates ``(Q, C, K, D)`` → :class:`RotationMatch` of ``(Q, C)``.

    Args:
        step_deg: degrees per crop shift (default ``360 / K``; see :func:`heading_step`).
        refine: parabolic sub-step refinement of the heading.
    """
    sims = shift_similarities(query, candidates)
    step = 360.0 / sims.shape[-1] if step_deg is None else float(step_deg)
    return best_shift(sims, step, refine)


def rerank(
    query: np.ndarray,
    database: np.ndarray,
    candidates: np.ndarray,
    step_deg: Optional[float] = None,
    refine: bool = True,
    chunk_bytes: int = CHUNK_BYTES,
) -> RotationMatch:
    """Re-rank candidate database entries of each query by their best-shift crop similarity.

    Args:
        query: ``(Q, K, D)`` per-crop query descriptors.
        database: ``(N, K, D)`` per-crop database descriptors.
        candidates: ``(Q, C)`` int database rows (e.g. from the fused index search); ``-1`` =
            no candidate (kept last with score ``-inf``).
        step_deg: degrees per crop shift (default ``360 / K``).

    Returns:
        :class:`RotationMatch` with ``db_indices`` ``(Q, C)`` sorted by descending score.
    """
    q = np.asarray(query, dtype=np.float32)
    db = np.asarray(database, dtype=np.float32)
    cand = np.asarray(candidates, dtype=np.int64)
    if q.ndim != 3 or db.ndim != 3:
        raise DescriptorMismatchError(
            f"rotation matching needs per-crop descriptors (Q, K, D) and (N, K, D); got {q.shape} and {db.shape}"
        )
    if q.shape[1:] != db.shape[1:]:
        raise DescriptorMismatchError(
            f"query crops {q.shape[1:]} (K, D) do not match database crops {db.shape[1:]}"
        )
    if cand.ndim != 2 or cand.shape[0] != q.shape[0]:
        raise InputError(f"candidates must be (Q, C) with Q={q.shape[0]}, got {cand.shape}")
    n_q, n_c = cand.shape
    k, d = q.shape[1:]
    step = 360.0 / k if step_deg is None else float(step_deg)
    scores = np.full((n_q, n_c), -np.inf, np.float32)
    shifts = np.zeros((n_q, n_c), np.int64)
    headings = np.zeros((n_q, n_c), np.float64)
    per_query = max(1, n_c * k * (d + k) * 4)
    chunk = max(1, int(chunk_bytes // per_query))
    valid = cand >= 0
    safe = np.where(valid, cand, 0)
    for a in range(0, n_q, chunk):
        b = min(n_q, a + chunk)
        m = match_rotation(q[a:b], db[safe[a:b]], step, refine)
        scores[a:b] = np.where(valid[a:b], m.scores, -np.inf)
        shifts[a:b], headings[a:b] = m.shifts, m.headings
    order = np.argsort(-scores, axis=1, kind="stable")

    def take(x: np.ndarray) -> np.ndarray:
        return np.take_along_axis(x, order, axis=1)

    return RotationMatch(take(scores), take(shifts), take(headings), take(np.where(valid, cand, -1)))
