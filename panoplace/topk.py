"""Exact top-k along the rows of a matrix: the k best columns per row, best first, ties by the
lower column index (what a stable full sort gives), in O(N·M) with ``np.argpartition``."""

from __future__ import annotations

import numpy as np

from panoplace.errors import InputError


SMALL = 4096
"""Matrices of at most this many values are sorted whole: below it the partition path's dozen
array operations cost more than the sort (the online localiser ranks ~1,000 candidates per frame)."""


def top_k(values: np.ndarray, k: int, largest: bool = False) -> np.ndarray:
    """Column indices of the ``k`` smallest (``largest=True``: largest) values of every row,
    best first; equal values in column order. Equals
    ``np.argsort(values, axis=1, kind="stable")[:, :k]`` (of ``-values`` for ``largest``),
    NaN counting as the worst value, without sorting whole rows.

    Shape: ``(N, M)`` -> int64 ``(N, min(k, M))``.

    >>> top_k(np.array([[3.0, 1.0, 2.0, 1.0]]), 2).tolist()
    [[1, 3]]
    >>> top_k(np.array([[0.2, 0.7, 0.7, 0.1]]), 2, largest=True).tolist()
    [[1, 2]]
    """
    v = np.asarray(values)
    if v.ndim != 2:
        raise InputError(f"top_k needs a (N, M) matrix, got shape {v.shape}")
    if int(k) < 1:
        raise InputError(f"k must be >= 1, got {k}")
    if largest:
        v = -(v.astype(np.int64) if v.dtype.kind in "ub" else v)  # NaN stays NaN: the worst either way
    n, m = v.shape
    k = min(int(k), m)
    if n == 0 or 4 * k >= m or n * m <= SMALL:  # a large share of the row, or little data: one sort
        return np.argsort(v, axis=1, kind="stable")[:, :k].astype(np.int64)
    part = np.argpartition(v, k - 1, axis=1)[:, :k]  # the k best, unordered; ties at the k-th value arbitrary
    kth = np.take_along_axis(v, part, axis=1).max(axis=1, keepdims=True)
    # rows where a value equal to the k-th best lies outside the partition (or NaN is among the best k):
    # which of the tied columns count is the lowest-index rule's to decide, so sort those rows whole
    redo = (v == kth).sum(axis=1) != (np.take_along_axis(v, part, axis=1) == kth).sum(axis=1)
    if v.dtype.kind == "f":
        redo |= np.isnan(kth[:, 0])
    part.sort(axis=1)  # column order, so that the stable sort below breaks ties by column
    out = np.take_along_axis(part, np.argsort(np.take_along_axis(v, part, axis=1), axis=1, kind="stable"), axis=1)
    rows = np.flatnonzero(redo)
    if len(rows):
        out[rows] = np.argsort(v[rows], axis=1, kind="stable")[:, :k]
    return out.astype(np.int64)
