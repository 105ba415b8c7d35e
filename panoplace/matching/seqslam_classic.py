"""Classic SeqSLAM (Milford & Wyeth 2012, as in OpenSeqSLAM) and its image preprocessing.

This module is the *baseline* the stronger matchers of :mod:`panoplace.matching.sequence`
are measured against, so it stays close to OpenSeqSLAM:

1. images are converted to grey, resized to 64x32 (or 32x16) and patch-normalised
   (:func:`patch_normalise`: every 8x8 patch to zero mean and unit standard deviation;
   OpenSeqSLAM also rounds the result to integers around 127, which is not done here);
2. the difference matrix is the mean absolute difference of those images
   (:func:`sad_matrix`);
3. :func:`seqslam_classic` ports OpenSeqSLAM's ``doContrastEnhancement`` and
   ``doFindMatches``: local contrast enhancement over a window of database frames, then for
   every query the straight trajectories of ``ds + 1`` frames centred on it over the velocities
   ``vmin * ds .. vmax * ds`` (whole database frames per ``ds`` query frames), a trajectory that
   runs past the database's end costing infinity, and the uniqueness ratio of the best score to
   the best score outside ``±uniqueness_window / 2`` frames.

Queries closer than ``ds / 2`` frames to either end of the query sequence get no match in
OpenSeqSLAM; here they get ``best = -1`` and confidence 0 (they count as misses).
"""

from __future__ import annotations

import logging
from typing import Sequence, Tuple

import cv2
import numpy as np

from panoplace.errors import InputError

log = logging.getLogger(__name__)

__all__ = ["patch_normalise", "sad_matrix", "seqslam_preprocess", "seqslam_classic"]


def patch_normalise(img: np.ndarray, patch: int = 8) -> np.ndarray:
    """Normalise every ``patch x patch`` block of an image to zero mean and unit std.

    Shape:
        img: ``(..., H, W)`` grey images (any real dtype); ``H`` and ``W`` must be multiples
        of ``patch``.
        returns: float32 of the same shape. A flat patch (zero std) becomes all zeros.
    """
    a = np.asarray(img, dtype=np.float32)
    if a.ndim < 2:
        raise InputError(f"patch_normalise needs images of shape (..., H, W), got {a.shape}")
    h, w = a.shape[-2:]
    if patch < 1 or h % patch or w % patch:
        raise InputError(f"image size {h}x{w} is not a multiple of the patch size {patch}")
    lead = a.shape[:-2]
    blocks = a.reshape(*lead, h // patch, patch, w // patch, patch)
    mean = blocks.mean(axis=(-3, -1), keepdims=True)
    std = blocks.std(axis=(-3, -1), keepdims=True)
    out = np.where(std > 1e-6, (blocks - mean) / np.maximum(std, 1e-6), 0.0)
    return out.reshape(a.shape).astype(np.float32)


def seqslam_preprocess(images: Sequence[np.ndarray], size: Tuple[int, int] = (64, 32),
                       patch: int = 8) -> np.ndarray:
    """Grey, resize to ``size`` (width, height) and patch-normalise a list of images.

    Shape:
        images: each ``(H, W)`` grey or ``(H, W, 3)`` BGR uint8 (as ``cv2.imread`` gives).
        returns: float32 ``(N, size[1], size[0])``.
    """
    w, h = int(size[0]), int(size[1])
    out = np.empty((len(images), h, w), dtype=np.float32)
    for k, im in enumerate(images):
        im = np.asarray(im)
        if im.ndim == 3:
            im = cv2.cvtColor(im, cv2.COLOR_BGR2GRAY)
        if im.ndim != 2:
            raise InputError(f"image {k} has shape {im.shape}; expected (H, W) or (H, W, 3)")
        if im.shape != (h, w):
            im = cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA)
        out[k] = im
    return patch_normalise(out, patch)


def sad_matrix(query: np.ndarray, database: np.ndarray, chunk_elems: int = 1 << 24) -> np.ndarray:
    """Mean absolute difference between every query and every database image.

    Shape:
        query: ``(Q, ...)``; database: ``(N, ...)`` with the same trailing shape.
        returns: float32 ``(Q, N)``.

    Computed in query chunks of at most ``chunk_elems`` elements of the ``(c, N, P)``
    difference array.
    """
    q = np.asarray(query, dtype=np.float32).reshape(len(query), -1)
    d = np.asarray(database, dtype=np.float32).reshape(len(database), -1)
    if q.shape[1] != d.shape[1]:
        raise InputError(f"query images have {q.shape[1]} values but database images {d.shape[1]}")
    n, p = d.shape
    out = np.empty((len(q), n), dtype=np.float32)
    step = max(1, int(chunk_elems // max(1, n * p)))
    for i in range(0, len(q), step):
        out[i:i + step] = np.abs(q[i:i + step, None, :] - d[None, :, :]).mean(axis=2)
    return out


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
                    return_scores: bool = True):
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
    from panoplace.matching.sequence import SequenceMatch, _check_matrix

    D = _check_matrix(D)
    if ds < 1:
        raise InputError(f"ds must be >= 1, got {ds}")
    ds = int(ds + ds % 2)
    q, n = D.shape
    dd = enhance_contrast_classic(D, enhance_window)
    dd = np.concatenate([dd, np.full((q, 1), np.inf)], axis=1)  # off the database end: inf
    moves = np.arange(int(np.ceil(vmin * ds - 1e-9)), int(np.floor(vmax * ds + 1e-9)) + 1)
    if len(moves) == 0:
        raise InputError(f"no whole move between vmin*ds={vmin * ds} and vmax*ds={vmax * ds}")
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
                         params={"ds": ds, "vmin": vmin, "vmax": vmax, "enhance_window": enhance_window,
                                 "uniqueness_window": uniqueness_window, "mode": "offline"})
