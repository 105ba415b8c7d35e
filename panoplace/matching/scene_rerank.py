"""Scene-aware localisation: re-rank or filter retrieval candidates by scene agreement.

A query and a database image that show the same kind of place (both a plaza, both a
waterfront) agree; the agreement of two scene probability vectors ``p`` (query) and ``q``
(database) is, by ``kind``:

- ``bhattacharyya``: ``sum_c sqrt(p_c q_c)`` in [0, 1], 1 for identical distributions;
- ``dot``: ``sum_c p_c q_c`` in [0, 1], the probability that both draw the same category;
- ``top1``: 1 when the most probable categories are the same, else 0.

:func:`rerank_by_scene` with ``mode="rerank"`` adds ``weight * agreement`` to each candidate's
retrieval score (cosine similarity for NetVLAD) and sorts again (ties keep the retrieval
order). ``mode="filter"`` drops candidates whose agreement is below ``min_agreement`` (their
index becomes -1, score -inf, at the end of the list); a query none of whose candidates
agrees keeps its list unchanged, so filtering never leaves a query without a match.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from panoplace.errors import InputError

log = logging.getLogger(__name__)

AGREEMENTS = ("bhattacharyya", "dot", "top1")
MODES = ("rerank", "filter")


def _check(scores: np.ndarray, q_probs: np.ndarray, db_probs: np.ndarray, cand: np.ndarray
           ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float32)
    c = np.asarray(cand)
    qp = np.asarray(q_probs, dtype=np.float32)
    dp = np.asarray(db_probs, dtype=np.float32)
    if s.ndim != 2 or c.shape != s.shape:
        raise InputError(f"scores {s.shape} and candidates {c.shape} must both be (Q, k)")
    if not np.issubdtype(c.dtype, np.integer):
        raise InputError(f"candidates must be integer database indices, got {c.dtype}")
    if qp.ndim != 2 or dp.ndim != 2 or qp.shape[1] != dp.shape[1]:
        raise InputError(f"scene probabilities must be (Q, C) and (N, C) over the same categories, got "
                         f"{qp.shape} and {dp.shape}")
    if qp.shape[0] != s.shape[0]:
        raise InputError(f"{qp.shape[0]} query scene rows for {s.shape[0]} queries")
    if c.size and c.max() >= dp.shape[0]:
        raise InputError(f"candidate index {int(c.max())} is past the {dp.shape[0]} database scene rows")
    return s, c.astype(np.int64), qp, dp


def scene_agreement(q_probs: np.ndarray, db_probs: np.ndarray, cand: np.ndarray,
                    kind: str = "bhattacharyya") -> np.ndarray:
    """Agreement of each query with each of its candidates (see the module docstring).

    Shape:
        q_probs ``(Q, C)``, db_probs ``(N, C)``, cand ``(Q, k)`` int (-1 = none) -> ``(Q, k)``
        float32 in [0, 1] (0 where the candidate is -1).
    """
    if kind not in AGREEMENTS:
        raise InputError(f"unknown scene agreement {kind!r}; choose one of {list(AGREEMENTS)}")
    c = np.asarray(cand, dtype=np.int64)
    _, c, qp, dp = _check(np.zeros(c.shape, np.float32), q_probs, db_probs, c)
    valid = c >= 0
    d = dp[np.where(valid, c, 0)]  # (Q, k, C)
    if kind == "bhattacharyya":
        a = np.sqrt(np.clip(qp[:, None, :], 0, None) * np.clip(d, 0, None)).sum(axis=2)
    elif kind == "dot":
        a = (qp[:, None, :] * d).sum(axis=2)
    else:
        a = (qp.argmax(axis=1)[:, None] == d.argmax(axis=2)).astype(np.float32)
    return np.where(valid, np.clip(a, 0.0, 1.0), 0.0).astype(np.float32)


def rerank_by_scene(scores: np.ndarray, q_probs: np.ndarray, db_probs: np.ndarray, cand: np.ndarray,
                    weight: float = 0.1, kind: str = "bhattacharyya", mode: str = "rerank",
                    min_agreement: float = 0.5) -> Tuple[np.ndarray, np.ndarray]:
    """Re-rank (or filter) retrieval candidates by scene agreement.

    Args:
        scores: retrieval scores, higher = better (``-inf`` where no candidate).
        q_probs, db_probs: scene probabilities of the queries and of the database images.
        cand: database indices of the candidates, best first (-1 = none).
        weight: ``mode="rerank"``: the score added per unit of agreement.
        kind: ``bhattacharyya``, ``dot`` or ``top1`` (see the module docstring).
        mode: ``rerank`` or ``filter``.
        min_agreement: ``mode="filter"``: candidates agreeing less are dropped.

    Returns:
        ``(scores, cand)`` re-ordered, best first; ``rerank`` returns the combined scores.

    Shape:
        scores ``(Q, k)``, q_probs ``(Q, C)``, db_probs ``(N, C)``, cand ``(Q, k)`` ->
        ``((Q, k) float32, (Q, k) int64)``.
    """
    if mode not in MODES:
        raise InputError(f"unknown scene re-ranking mode {mode!r}; choose one of {list(MODES)}")
    if not np.isfinite(weight) or weight < 0:
        raise InputError(f"scene weight must be a finite number >= 0, got {weight}")
    s, c, qp, dp = _check(scores, q_probs, db_probs, cand)
    agree = scene_agreement(qp, dp, c, kind)
    valid = c >= 0
    if mode == "rerank":
        new = np.where(valid, s + np.float32(weight) * agree, -np.inf).astype(np.float32)
        order = np.argsort(-new, axis=1, kind="stable")
        return np.take_along_axis(new, order, axis=1), np.take_along_axis(c, order, axis=1)
    keep = valid & (agree >= min_agreement)
    keep = np.where(keep.any(axis=1, keepdims=True), keep, valid)  # nobody agrees: keep the list
    order = np.argsort(~keep, axis=1, kind="stable")  # kept first, in retrieval order
    new_c = np.where(np.take_along_axis(keep, order, axis=1), np.take_along_axis(c, order, axis=1), -1)
    new_s = np.where(new_c >= 0, np.take_along_axis(s, order, axis=1), -np.inf).astype(np.float32)
    return new_s, new_c


@dataclass
class SceneEvidence:
    """Scene probabilities of the queries and of the database, and how retrieval uses them.

    query_probs ``(Q, C)`` and database_probs ``(N, C)`` are over the same categories, rows in
    the order of the queries and of the index. ``weight``, ``kind``, ``mode`` and
    ``min_agreement`` are those of :func:`rerank_by_scene`.
    """

    query_probs: np.ndarray
    database_probs: np.ndarray
    weight: float = 0.1
    kind: str = "bhattacharyya"
    mode: str = "rerank"
    min_agreement: float = 0.5

    def apply(self, scores: np.ndarray, cand: np.ndarray, headings: Optional[np.ndarray] = None
              ) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
        """Re-rank (or filter) candidates; ``headings`` (per candidate) follow their candidate.

        Shape: scores, cand, headings ``(Q, k)`` -> the same, re-ordered.
        """
        new_s, new_c = rerank_by_scene(scores, self.query_probs, self.database_probs, cand, weight=self.weight,
                                       kind=self.kind, mode=self.mode, min_agreement=self.min_agreement)
        if headings is None:
            return new_s, new_c, None
        c = np.asarray(cand)
        # where each new candidate sat in the old list (candidates of one query are distinct)
        pos = np.argmax(c[:, None, :] == new_c[:, :, None], axis=2)
        new_h = np.where(new_c >= 0, np.take_along_axis(np.asarray(headings, np.float64), pos, axis=1), np.nan)
        return new_s, new_c, new_h
