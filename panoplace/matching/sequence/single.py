"""Single-frame matching: the best database frame per query, no sequence."""

from __future__ import annotations

import numpy as np

from panoplace.matching.sequence.core import SequenceMatch, check_matrix, uniqueness_ratio

__all__ = ["single_frame_match"]


def single_frame_match(D: np.ndarray, uniqueness_radius: int = 0, return_scores: bool = True) -> SequenceMatch:
    """Best database frame per query without any sequence information.

    The confidence is the uniqueness ratio of the raw differences (second-best outside
    ``±uniqueness_radius`` frames divided by best; with radius 0, the classic nearest /
    second-nearest ratio). ``D`` must be non-negative for the ratio to mean anything.

    Shape:
        D: ``(Q, N)``; result arrays ``(Q,)`` and ``scores`` ``(Q, N)`` (= ``D``).
    """
    D = check_matrix(D)
    b = np.argmin(D, axis=1)
    conf = uniqueness_ratio(D, b, uniqueness_radius)
    return SequenceMatch(b.astype(np.int64), D[np.arange(len(D)), b], conf,
                         D if return_scores else None, "single", {"uniqueness_radius": int(uniqueness_radius)})
