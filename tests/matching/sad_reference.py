"""The numpy implementation of :func:`panoplace.matching.seqslam_classic.sad_matrix` (panoplace
before the compiled kernel of :mod:`panoplace.matching.sad_kernels`), kept as the reference the
compiled path is tested against (``tests/matching/test_sad_kernels.py``).
"""

from __future__ import annotations

import numpy as np


def sad_matrix_reference(query: np.ndarray, database: np.ndarray, chunk_elems: int = 1 << 24) -> np.ndarray:
    """Mean absolute difference between every query and every database image (numpy broadcasting).

    Shape:
        query: ``(Q, ...)``; database: ``(N, ...)`` with the same trailing shape.
        returns: float32 ``(Q, N)``.

    Computed in query chunks of at most ``chunk_elems`` elements of the ``(c, N, P)``
    difference array.
    """
    q = np.asarray(query, dtype=np.float32).reshape(len(query), -1)
    d = np.asarray(database, dtype=np.float32).reshape(len(database), -1)
    assert q.shape[1] == d.shape[1]
    n, p = d.shape
    out = np.empty((len(q), n), dtype=np.float32)
    step = max(1, int(chunk_elems // max(1, n * p)))
    for i in range(0, len(q), step):
        out[i:i + step] = np.abs(q[i:i + step, None, :] - d[None, :, :]).mean(axis=2)
    return out
