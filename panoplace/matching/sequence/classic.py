"""Classic SeqSLAM (Milford & Wyeth 2012, as in OpenSeqSLAM): the baseline matcher.

Ports OpenSeqSLAM's ``doContrastEnhancement`` and ``doFindMatches``: local contrast enhancement
over a window of database frames, then for every query the straight trajectories of ``ds + 1``
frames centred on it over the velocities ``vmin * ds .. vmax * ds`` (whole database frames per
``ds`` query frames), a trajectory that runs past the database's end costing infinity, and the
uniqueness ratio of the best score to the best score outside ``±uniqueness_window / 2`` frames.
The image preprocessing of the classic pipeline (patch normalisation, SAD) is in
:mod:`panoplace.matching.seqslam_classic`.

Queries closer than ``ds / 2`` frames to either end of the query sequence get no match in
OpenSeqSLAM; here they get ``best = -1`` and confidence 0 (they count as misses).
"""

from __future__ import annotations

import logging

import numpy as np

from panoplace.errors import InputError
from panoplace.matching.sequence.core import SequenceMatch, check_matrix
from panoplace.matching.sequence.params import ClassicParams

log = logging.getLogger(__name__)

__all__ = ["enhance_contrast_classic", "match_classic", "seqslam_classic"]


def enhance_contrast_classic(D: np.ndarray, window: int = 10) -> np.ndarray:
    """OpenSeqSLAM's contrast enhancement of a ``(Q, N)`` difference matrix.

    Every entry ``D[i, j]`` becomes ``(D[i, j] - mean) / std`` over database frames
    ``j - window/2 .. j + window/2`` of the same query (sample std, ``ddof=1``); the whole matrix
    is then shifted so that its minimum is 0.

    Shape:
        D: ``(Q, N)``; returns float64 ``(Q, N)``.
    """
    D = np.asarray(D, dtype=np.float64)
    q, n = D.shape
    half = window // 2
    j = np.arange(n)
    a = np.maximum(0, j - half)
    b = np.minimum(n, j + half + 1)
    c1 = np.concatenate([np.zeros((q, 1)), np.cumsum(D, axis=1)], axis=1)
    c2 = np.concatenate([np.zeros((q, 1)), np.cumsum(D * D, axis=1)], axis=1)
    cnt = (b - a).astype(np.float64)
    mean = (c1[:, b] - c1[:, a]) / cnt
    var = ((c2[:, b] - c2[:, a]) - cnt * mean * mean) / np.maximum(cnt - 1, 1)
    out = (D - mean) / np.sqrt(np.maximum(var, 1e-12))
    return out - out.min()


def seqslam_classic(D: np.ndarray, ds: int = 20, vmin: float = 0.8, vmax: float = 1.2,
                    enhance_window: int = 10, uniqueness_window: int = 10,
                    return_scores: bool = True) -> SequenceMatch:
    """Classic offline SeqSLAM on a query-vs-database difference matrix (OpenSeqSLAM port).

    Args:
        D: difference matrix, lower = more similar.
        ds: sequence length (made even as in OpenSeqSLAM); trajectories have ``ds + 1`` frames.
        vmin, vmax: database frames per query frame; every whole number of database frames
            from ``vmin * ds`` to ``vmax * ds`` per ``ds`` query frames is tried.
        enhance_window: database frames of the contrast enhancement window.
        uniqueness_window: frames around the best match excluded for the second-best score.
        return_scores: also return the ``(Q, N)`` score matrix (lower = better).

    Shape:
        D: ``(Q, N)``.

    Returns:
        A :class:`~panoplace.matching.sequence.SequenceMatch`: ``best`` ``(Q,)`` (``-1`` for
        the first and last ``ds / 2`` queries, which have no full window), ``score`` the
        best trajectory sum, ``confidence`` = second-best / best score (>= 1; higher = more
        unique), ``scores`` ``(Q, N)`` with ``inf`` where no trajectory fits.
    """
    p = ClassicParams(ds=ds, vmin=vmin, vmax=vmax, enhance_window=enhance_window,
                      uniqueness_window=uniqueness_window)
    D = check_matrix(D)
    ds = int(ds + ds % 2)
    q, n = D.shape
    if q < ds + 1:
        raise InputError(f"seqslam_classic matches windows of ds + 1 = {ds + 1} query frames (ds made even), "
                         f"but there are only {q} queries: no query would get a match; use a smaller ds")
    dd = enhance_contrast_classic(D, enhance_window)
    dd = np.concatenate([dd, np.full((q, 1), np.inf)], axis=1)  # off the database end: inf
    moves = np.arange(int(np.ceil(vmin * ds - 1e-9)), int(np.floor(vmax * ds + 1e-9)) + 1)
    if len(moves) == 0:
        raise InputError(f"no whole move between vmin*ds={vmin * ds} and vmax*ds={vmax * ds}")
    if n < moves[0] + 1:
        raise InputError(f"seqslam_classic trajectories span at least {moves[0] + 1} database frames "
                         f"(vmin*ds = {vmin * ds:g}), but the database has only {n}: use a smaller ds or vmin")
    idx_add = (np.arange(ds + 1)[None, :] * moves[:, None]) // ds  # (V, ds+1) = floor(t * v)
    starts = np.arange(n)
    scores = np.full((q, n), np.inf)
    best = np.full(q, -1, dtype=np.int64)
    score = np.full(q, np.inf)
    conf = np.zeros(q)
    half_u = uniqueness_window // 2
    for i in range(ds // 2, q - ds // 2):
        rows = np.arange(i - ds // 2, i + ds // 2 + 1)  # (ds+1,)
        cols = np.minimum(starts[:, None, None] + idx_add[None], n)  # (N, V, ds+1)
        s = dd[rows[None, None, :], cols].sum(axis=2).min(axis=1)  # (N,)  start frame s
        m = int(np.argmin(s))
        lo, hi = max(0, m - half_u), min(n, m + half_u + 1)
        outside = np.concatenate([s[:lo], s[hi:]])
        second = outside.min() if len(outside) else np.inf
        # OpenSeqSLAM reports start + ds/2 as the match; keep scores indexed the same way.
        shifted = np.full(n, np.inf)
        shifted[ds // 2:] = s[:n - ds // 2]
        scores[i] = shifted
        best[i] = min(m + ds // 2, n - 1)
        score[i] = s[m]
        conf[i] = second / max(s[m], 1e-12) if np.isfinite(second) else 1.0
    return SequenceMatch(best=best, score=score.astype(np.float32), confidence=conf.astype(np.float32),
                         scores=scores.astype(np.float32) if return_scores else None,
                         method="seqslam_classic",
                         params=p.as_dict())


def match_classic(D: np.ndarray, params: ClassicParams = ClassicParams(), return_scores: bool = True) -> SequenceMatch:
    """:func:`seqslam_classic` with its parameters as one :class:`ClassicParams`."""
    return seqslam_classic(D, params.ds, params.vmin, params.vmax, params.enhance_window,
                           params.uniqueness_window, return_scores)
