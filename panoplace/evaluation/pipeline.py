"""Evaluate matching end to end from arrays: descriptors or a difference matrix → metrics.

:func:`evaluate_descriptors` is the library function behind ``panoplace evaluate``; it takes
plain numpy arrays so that scripts (and the demo) can call it without descriptor stores.
"""

from __future__ import annotations

import logging
from typing import Any, Optional, Sequence

import numpy as np

from panoplace.data.groundtruth import GroundTruth
from panoplace.errors import DatasetError, InputError
from panoplace.evaluation.metrics import DEFAULT_NS, DEFAULT_RADII, EvaluationResult, evaluate
from panoplace.matching.differences import as_descriptor_rows, cosine_distances, descriptor_differences
from panoplace.matching.sequence import MATCHERS, SequenceMatch, match_sequence

log = logging.getLogger(__name__)

__all__ = ["cosine_distances", "evaluate_descriptors", "evaluate_differences", "evaluate_match"]


def evaluate_match(match: SequenceMatch, ground_truth: GroundTruth, *,
                   query_ids: Optional[Sequence[str]] = None, db_ids: Optional[Sequence[str]] = None,
                   query_xy: Optional[np.ndarray] = None, db_xy: Optional[np.ndarray] = None,
                   ns: Sequence[int] = DEFAULT_NS, radii: Sequence[float] = DEFAULT_RADII,
                   fp_threshold: Optional[float] = None) -> EvaluationResult:
    """Metrics of a :class:`SequenceMatch` (ranked by its ``scores`` when present).

    Candidates are the ``min(max(ns), N)`` best database frames per query, so Recall@N is exact
    for every N (with all frames ranked when N exceeds the database).
    """
    n_db = ground_truth.n_database if match.scores is None else match.scores.shape[1]
    k = min(max(int(n) for n in ns), n_db)
    ranked = match.ranked(k)
    costs = None
    if match.scores is not None:
        costs = np.take_along_axis(np.asarray(match.scores, np.float64), np.maximum(ranked, 0), axis=1)
        costs[ranked < 0] = np.nan
    return evaluate(ranked, match.confidence, ground_truth, query_ids=query_ids, db_ids=db_ids,
                    query_xy=query_xy, db_xy=db_xy, ns=ns, radii=radii, fp_threshold=fp_threshold,
                    matcher=match.method, params=match.params, candidate_costs=costs)


def evaluate_differences(D: np.ndarray, ground_truth: GroundTruth, matcher: str = "single", *,
                         ds: int = 10, mode: str = "offline",
                         query_ids: Optional[Sequence[str]] = None, db_ids: Optional[Sequence[str]] = None,
                         query_xy: Optional[np.ndarray] = None, db_xy: Optional[np.ndarray] = None,
                         ns: Sequence[int] = DEFAULT_NS, radii: Sequence[float] = DEFAULT_RADII,
                         fp_threshold: Optional[float] = None,
                         **matcher_options: Any) -> EvaluationResult:
    """Match a difference matrix with ``matcher`` and evaluate against ``ground_truth``.

    Args:
        D: difference matrix (lower = more similar), queries and database in traversal order.
        matcher: one of :data:`panoplace.matching.sequence.MATCHERS`.
        ds, mode, matcher_options: passed to :func:`~panoplace.matching.sequence.match_sequence`.
        Others: as :func:`panoplace.evaluation.metrics.evaluate`.

    Shape:
        D: ``(Q, N)``.
    """
    if matcher not in MATCHERS:
        raise InputError(f"unknown matcher {matcher!r}; choose one of {', '.join(MATCHERS)}")
    D = np.asarray(D)
    if D.ndim != 2:
        raise InputError(f"the difference matrix must have shape (Q, N), got {D.shape}")
    ground_truth.check_sizes(D.shape[0], D.shape[1])
    match = match_sequence(D, method=matcher, ds=ds, mode=mode, return_scores=True, **matcher_options)
    return evaluate_match(match, ground_truth, query_ids=query_ids, db_ids=db_ids, query_xy=query_xy,
                          db_xy=db_xy, ns=ns, radii=radii, fp_threshold=fp_threshold)


def evaluate_descriptors(query: np.ndarray, database: np.ndarray, ground_truth: GroundTruth,
                         matcher: str = "single", *, ds: int = 10, mode: str = "offline",
                         query_ids: Optional[Sequence[str]] = None, db_ids: Optional[Sequence[str]] = None,
                         query_xy: Optional[np.ndarray] = None, db_xy: Optional[np.ndarray] = None,
                         ns: Sequence[int] = DEFAULT_NS, radii: Sequence[float] = DEFAULT_RADII,
                         fp_threshold: Optional[float] = None, metric: str = "cosine",
                         **matcher_options: Any) -> EvaluationResult:
    """Evaluate place recognition from query and database descriptors.

    The difference matrix is :func:`cosine_distances` (``metric="sad"``: the mean absolute
    difference of pixel descriptors, see :func:`panoplace.matching.differences.descriptor_differences`);
    ``single`` ranks it directly, the
    sequence matchers (``seqslam``, ``hmm``, ...) treat rows and columns as frames in traversal
    order.

    Args:
        query: ``(Q, D)`` or per-crop ``(Q, K, D)`` float descriptors.
        database: ``(N, D)`` or ``(N, K, D)``.
        ground_truth: positives of the Q queries among the N database images.
        matcher, ds, mode, matcher_options: see :func:`evaluate_differences`.
        query_ids, db_ids, query_xy, db_xy, ns, radii, fp_threshold: see
            :func:`panoplace.evaluation.metrics.evaluate`.

    Raises:
        DescriptorMismatchError: NaN/inf descriptors or different dimensions.
        InputError: an empty set or a bad option.
        DatasetError: ground truth for another number of queries or database images.
    """
    fuse = metric != "sad"
    q = as_descriptor_rows(query, "query descriptors", fuse)
    d = as_descriptor_rows(database, "database descriptors", fuse)
    if not isinstance(ground_truth, GroundTruth):
        raise DatasetError(f"ground truth must be a GroundTruth, got {type(ground_truth).__name__}")
    ground_truth.check_sizes(len(q), len(d))
    D = descriptor_differences(q, d, metric)
    log.info("difference matrix %d x %d; matcher %s", len(q), len(d), matcher)
    return evaluate_differences(D, ground_truth, matcher, ds=ds, mode=mode, query_ids=query_ids,
                                db_ids=db_ids, query_xy=query_xy, db_xy=db_xy, ns=ns, radii=radii,
                                fp_threshold=fp_threshold, **matcher_options)
