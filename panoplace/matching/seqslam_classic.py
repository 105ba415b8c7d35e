"""Classic SeqSLAM's image preprocessing (Milford & Wyeth 2012, as in OpenSeqSLAM).

This module is the *baseline* the stronger matchers of :mod:`panoplace.matching.sequence`
are measured against, so it stays close to OpenSeqSLAM:

1. images are converted to grey, resized to 64x32 (or 32x16) and patch-normalised
   (:func:`patch_normalise`: every 8x8 patch to zero mean and unit standard deviation;
   OpenSeqSLAM also rounds the result to integers around 127, which is not done here);
2. the difference matrix is the mean absolute difference of those images
   (:func:`sad_matrix`, a compiled kernel in :mod:`panoplace.matching.sad_kernels`);
3. :func:`seqslam_classic` (in :mod:`panoplace.matching.sequence.classic`, re-exported here)
   ports OpenSeqSLAM's ``doContrastEnhancement`` and
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
from panoplace.matching.sad_kernels import pairwise_plan, sad_rows
from panoplace.matching.sequence.classic import enhance_contrast_classic, seqslam_classic

log = logging.getLogger(__name__)

__all__ = ["enhance_contrast_classic", "patch_normalise", "sad_matrix", "seqslam_classic", "seqslam_preprocess"]


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

    Inputs are converted to float32 first; each pair's absolute differences are summed in
    float32 in the order of numpy's pairwise summation and divided by the number of values, so
    the result is bit-identical to ``np.abs(q[:, None] - d[None]).mean(axis=2)`` on the float32
    rows (computed by the compiled kernel :func:`panoplace.matching.sad_kernels.sad_rows`, with
    no ``(Q, N, P)`` temporary: memory beyond the float32 copies and the output is a
    ``(P, 64)`` buffer per thread). Images with no values (``P = 0``) give NaN, as numpy's mean
    of nothing.

    ``chunk_elems`` is accepted for compatibility and ignored: it bounded the ``(chunk, N, P)``
    difference array of the former numpy implementation, which the kernel does not build.

    Shape:
        query: ``(Q, ...)``; database: ``(N, ...)`` with the same trailing shape.
        returns: float32 ``(Q, N)``.
    """
    q = np.ascontiguousarray(np.asarray(query, dtype=np.float32).reshape(len(query), -1))
    d = np.ascontiguousarray(np.asarray(database, dtype=np.float32).reshape(len(database), -1))
    if q.shape[1] != d.shape[1]:
        raise InputError(f"query images have {q.shape[1]} values but database images {d.shape[1]}")
    n, p = d.shape
    if p == 0:
        return np.full((len(q), n), np.nan, dtype=np.float32)
    out = np.empty((len(q), n), dtype=np.float32)
    sad_rows(q, d, *pairwise_plan(p), out)
    return out
