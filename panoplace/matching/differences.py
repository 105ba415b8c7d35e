"""Difference matrices of descriptors (lower = more similar), one per metric, and several combined.

- :func:`cosine_distances`: place descriptors of a model (``1 - cosine similarity``);
- :func:`panoplace.matching.seqslam_classic.sad_matrix`: pixel descriptors (mean absolute
  difference of patch-normalised thumbnails, :mod:`panoplace.pixels`);
- :func:`descriptor_differences` picks by metric, :func:`store_differences` by what two
  descriptor stores hold (:attr:`panoplace.store.DescriptorSet.metric`);
- :func:`combined_differences`: several matrices of the same queries and database (e.g. 64x32
  and 32x16 pixels, or pixels and NetVLAD) into one, by the rule of
  :func:`~panoplace.matching.sequence.combine_differences` (every query row z-scored, then a
  weighted sum), then optionally :func:`~panoplace.matching.sequence.standardise_columns`
  (offline only: it looks at every query).

This is the best Nordland configuration of ``benchmarks/bench_sequence_nordland.py`` (SAD64 +
SAD32 combined, columns standardised, HMM) made reachable from stores; the ``evaluate`` and
``localize`` steps call it. It needs the full ``(Q, N)`` matrices: dense matching only.
"""

from __future__ import annotations

import logging
from typing import Optional, Sequence

import numpy as np

from panoplace.crop_fusion import fuse_crops
from panoplace.errors import DescriptorMismatchError, InputError
from panoplace.matching.seqslam_classic import sad_matrix
from panoplace.matching.sequence import combine_differences, standardise_columns
from panoplace.store import METRICS, DescriptorSet, check_compatible

log = logging.getLogger(__name__)

__all__ = ["as_descriptor_rows", "combined_differences", "cosine_distances", "descriptor_differences",
           "store_differences"]


def as_descriptor_rows(x: np.ndarray, what: str, fuse: bool = True) -> np.ndarray:
    """Checked float32 descriptors: non-empty, finite; per-crop ``(N, K, D)`` fused to ``(N, D)``
    (:func:`~panoplace.crop_fusion.fuse_crops`) when ``fuse``.

    Shape:
        x: ``(N, D)`` or ``(N, K, D)``; returns ``(N, D)`` (``(N, K, D)`` kept when not ``fuse``).
    """
    a = np.asarray(x, dtype=np.float32)
    if a.ndim not in (2, 3):
        raise InputError(f"{what} must have shape (N, D) or (N, K, D), got {a.shape}")
    if a.shape[0] == 0:
        raise InputError(f"{what}: the set is empty")
    bad = ~np.isfinite(a.reshape(len(a), -1)).all(axis=1)
    if bad.any():
        raise DescriptorMismatchError(f"{what}: {int(bad.sum())} descriptor(s) contain NaN/inf values "
                                      f"(first: row {int(np.flatnonzero(bad)[0])})")
    if a.ndim == 3 and fuse:
        a = fuse_crops(a)
    return a


def cosine_distances(query: np.ndarray, database: np.ndarray, chunk_rows: int = 4096) -> np.ndarray:
    """``1 - cosine similarity`` of every query to every database descriptor.

    Descriptors are L2-normalised first (per-crop descriptors ``(N, K, D)`` are summed over
    crops and normalised). The result lies in ``[0, 2]``.

    Shape:
        query: ``(Q, D)`` or ``(Q, K, D)``; database: ``(N, D)`` or ``(N, K, D)``.
        returns: float32 ``(Q, N)``.
    """
    q = as_descriptor_rows(query, "query descriptors")
    d = as_descriptor_rows(database, "database descriptors")
    if q.shape[1] != d.shape[1]:
        raise DescriptorMismatchError(
            f"query descriptors have dimension {q.shape[1]} but database descriptors {d.shape[1]}")
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    d = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    out = np.empty((len(q), len(d)), dtype=np.float32)
    for i in range(0, len(q), chunk_rows):
        np.clip(1.0 - q[i:i + chunk_rows] @ d.T, 0.0, 2.0, out=out[i:i + chunk_rows])
    return out


def descriptor_differences(query: np.ndarray, database: np.ndarray, metric: str = "cosine") -> np.ndarray:
    """The difference matrix of two descriptor arrays under ``metric``: ``cosine``
    (:func:`cosine_distances`) or ``sad`` (mean absolute difference,
    :func:`~panoplace.matching.seqslam_classic.sad_matrix`).

    Shape:
        query: ``(Q, D)`` (or ``(Q, K, D)`` for cosine); database: ``(N, D)`` (``(N, K, D)``).
        returns: float32 ``(Q, N)``.
    """
    if metric == "cosine":
        return cosine_distances(query, database)
    if metric == "sad":
        q = as_descriptor_rows(query, "query descriptors", fuse=False)
        d = as_descriptor_rows(database, "database descriptors", fuse=False)
        if q.shape[1:] != d.shape[1:]:
            raise DescriptorMismatchError(
                f"query descriptors have shape {q.shape[1:]} but database descriptors {d.shape[1:]}")
        return sad_matrix(q, d)
    raise InputError(f"unknown metric {metric!r}; choose one of {sorted(set(METRICS.values()))}")


def store_differences(query: DescriptorSet, database: DescriptorSet) -> np.ndarray:
    """The difference matrix of two compatible stores, by what they hold (cosine for place
    descriptors, mean absolute difference for pixels), rows and columns in the stores' order.

    Raises:
        DescriptorMismatchError: see :func:`panoplace.store.check_compatible`.

    Shape:
        returns float32 ``(len(query), len(database))``.
    """
    check_compatible(query, database)
    return descriptor_differences(query.descriptors, database.descriptors, query.metric)


def combined_differences(matrices: Sequence[np.ndarray], weights: Optional[Sequence[float]] = None,
                         columns: bool = False) -> np.ndarray:
    """One difference matrix from one or several of the same queries and database.

    One matrix is kept as it is; several are combined by
    :func:`~panoplace.matching.sequence.combine_differences` (each query row z-scored, then
    summed with ``weights``, default all 1). ``columns``: then z-score every database column
    (:func:`~panoplace.matching.sequence.standardise_columns`; uses every query: offline only).

    >>> a = np.array([[0.0, 1.0, 2.0], [2.0, 0.0, 1.0]])
    >>> combined_differences([a, 10 * a]).argmin(axis=1)
    array([0, 1])

    Shape:
        matrices: each ``(Q, N)``; returns float32 ``(Q, N)``.
    """
    if not len(matrices):
        raise InputError("combined_differences needs at least one difference matrix")
    if weights is not None and len(matrices) == 1:
        raise InputError("weights combine several difference matrices; there is one")
    D = (np.asarray(matrices[0], dtype=np.float32) if len(matrices) == 1
         else combine_differences(*matrices, weights=weights))
    if columns:
        D = standardise_columns(D)
    return D
