"""Place recognition metrics: Recall@N, precision-recall, PR-AUC, recall at 100 % precision,
PAL's localisation accuracy within X metres, and per-query rows.

Definitions (all over the *evaluated* queries, i.e. those with ``ground_truth.valid`` True;
queries off the mapped route are left out entirely, they are not misses):

Recall@N
    Fraction of evaluated queries with at least one positive among their first N candidates.
    A valid query without any positive counts as a miss. Computed once, vectorised, from the
    ``(Q, k)`` boolean hit matrix (:meth:`GroundTruth.is_positive`) and its cumulative "any".
    A candidate list shorter than N (``k < N``) is used as it is: pass ``k >= max(N)``
    candidates, or all database frames.

Precision-recall curve
    Each evaluated query that has a prediction (top-1 index >= 0) is *accepted* at threshold
    ``tau`` when its confidence is ``>= tau``; an accepted query is a true positive when its
    top-1 is a positive. For every distinct confidence value (high to low):
    ``precision = TP / accepted`` and ``recall = TP / F`` where ``F`` is the number of
    evaluated queries having at least one positive (the queries that *can* be found).

PR-AUC
    Average precision, the step-wise area under that curve:
    ``sum_k (R_k - R_{k-1}) * P_k`` over the distinct thresholds (``R_0 = 0``). It is never
    larger than the final recall (= Recall@1 when every query has a prediction), and equals it
    when the confidence ranks every correct match above every wrong one.

Recall at 100 % precision
    The largest recall of a threshold whose precision is exactly 1 (0 when the most
    confident prediction is already wrong).

Localisation accuracy (PAL, arXiv:1905.05425)
    With query positions and database positions known, ``d`` = metres between a query and
    its predicted (top-1) database frame. ``within[X]`` = fraction of evaluated queries with
    ``d <= X`` (a query without a prediction counts as not within). ``false_positive_rate[X]``
    = fraction of the *confident* predictions (confidence ``>= fp_threshold``; all
    predictions when no threshold is given) that lie more than X metres away.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import numpy as np

from panoplace.atomic import write_text_atomic
from panoplace.data.groundtruth import GroundTruth
from panoplace.errors import DatasetError, InputError

log = logging.getLogger(__name__)

DEFAULT_NS = (1, 5, 10, 20)
DEFAULT_RADII = (5.0, 10.0, 25.0, 50.0)
PER_QUERY_COLUMNS = ("query_index", "query_id", "valid", "top1_index", "top1_id", "correct",
                     "first_hit_rank", "distance_m", "confidence")

PathLike = Union[str, Path]

__all__ = [
    "DEFAULT_NS",
    "DEFAULT_RADII",
    "EvaluationResult",
    "PRCurve",
    "evaluate",
    "hit_matrix",
    "localisation_accuracy",
    "pr_curve",
    "recall_at_n",
]


def _check_candidates(candidates: np.ndarray, ground_truth: GroundTruth) -> np.ndarray:
    c = np.asarray(candidates)
    if c.ndim == 1:
        c = c[:, None]
    if c.ndim != 2 or c.shape[1] == 0:
        raise InputError(f"candidates must have shape (Q, k) with k >= 1, got {c.shape}")
    if not np.issubdtype(c.dtype, np.integer):
        raise InputError(f"candidates must be integer database indices, got dtype {c.dtype}")
    if c.shape[0] != ground_truth.n_queries:
        raise DatasetError(f"{c.shape[0]} queries were matched but the ground truth lists "
                           f"{ground_truth.n_queries}")
    if c.size and int(c.max()) >= ground_truth.n_database:
        raise DatasetError(f"a candidate refers to database index {int(c.max())} but the ground truth "
                           f"is for {ground_truth.n_database} database images")
    return c.astype(np.int64, copy=False)


def hit_matrix(candidates: np.ndarray, ground_truth: GroundTruth) -> np.ndarray:
    """Whether each candidate is a positive of its query.

    Shape:
        candidates: int ``(Q, k)`` database indices, best first (``-1`` = none).
        returns: bool ``(Q, k)``.
    """
    return ground_truth.is_positive(_check_candidates(candidates, ground_truth))


def first_hit_rank(hits: np.ndarray) -> np.ndarray:
    """0-based rank of the first positive per query, ``-1`` when none. int64 ``(Q,)``."""
    any_hit = hits.any(axis=1)
    return np.where(any_hit, np.argmax(hits, axis=1), -1).astype(np.int64)


def recall_at_n(candidates: np.ndarray, ground_truth: GroundTruth,
                ns: Sequence[int] = DEFAULT_NS) -> Dict[int, float]:
    """Recall@N for each N in ``ns`` over the valid queries (see the module docstring).

    Shape:
        candidates: int ``(Q, k)`` database indices, best first (``-1`` = none).

    Returns:
        ``{N: recall}``; NaN when no query is valid.
    """
    hits = hit_matrix(candidates, ground_truth)
    return _recall_from_hits(hits, ground_truth.valid, ns)


def _recall_from_hits(hits: np.ndarray, valid: np.ndarray, ns: Sequence[int]) -> Dict[int, float]:
    ns = [int(n) for n in ns]
    if any(n < 1 for n in ns):
        raise InputError(f"Recall@N needs N >= 1, got {ns}")
    found = np.logical_or.accumulate(hits[valid], axis=1)  # (V, k): a hit within the first r+1
    k = hits.shape[1]
    if found.shape[0] == 0:
        return {n: float("nan") for n in ns}
    return {n: float(found[:, min(n, k) - 1].mean()) for n in ns}


@dataclass
class PRCurve:
    """Precision-recall curve over decreasing confidence thresholds.

    precision, recall, thresholds: float64 ``(T,)``, one point per distinct confidence value
    of the accepted predictions, from the most confident down.
    """

    precision: np.ndarray
    recall: np.ndarray
    thresholds: np.ndarray

    @property
    def auc(self) -> float:
        """Average precision ``sum (R_k - R_{k-1}) P_k`` (NaN for an empty curve)."""
        if len(self.recall) == 0:
            return float("nan")
        dr = np.diff(np.concatenate([[0.0], self.recall]))
        return float(np.sum(dr * self.precision))

    @property
    def recall_at_100p(self) -> float:
        """Largest recall with precision exactly 1 (0 if there is none; NaN for an empty curve)."""
        if len(self.recall) == 0:
            return float("nan")
        perfect = self.precision >= 1.0
        return float(self.recall[perfect].max()) if perfect.any() else 0.0


def pr_curve(confidence: np.ndarray, correct: np.ndarray, n_findable: int,
             predicted: Optional[np.ndarray] = None) -> PRCurve:
    """Precision-recall curve of top-1 predictions swept over their confidence.

    Args:
        confidence: ``(M,)`` confidence of the evaluated queries (higher = more sure).
        correct: ``(M,)`` bool, the top-1 is a positive.
        n_findable: number of evaluated queries with at least one positive (recall's
            denominator).
        predicted: ``(M,)`` bool, the query has a prediction at all (default all True);
            queries without one are never accepted.

    Returns:
        :class:`PRCurve` (empty when nothing is predicted or ``n_findable`` is 0).
    """
    conf = np.asarray(confidence, dtype=np.float64).reshape(-1)
    corr = np.asarray(correct, dtype=bool).reshape(-1)
    if conf.shape != corr.shape:
        raise InputError(f"confidence has shape {conf.shape} but correct {corr.shape}")
    if predicted is not None:
        keep = np.asarray(predicted, dtype=bool).reshape(-1)
        conf, corr = conf[keep], corr[keep]
    if np.isnan(conf).any():
        raise InputError(f"{int(np.isnan(conf).sum())} confidence value(s) are NaN")
    empty = np.zeros(0)
    if len(conf) == 0 or n_findable <= 0:
        return PRCurve(empty, empty.copy(), empty.copy())
    order = np.argsort(-conf, kind="stable")
    c, ok = conf[order], corr[order]
    tp = np.cumsum(ok)
    # the last index of each run of equal confidences: all of a tie are accepted together
    last = np.flatnonzero(np.concatenate([c[1:] != c[:-1], [True]]))
    accepted = last + 1
    return PRCurve(precision=tp[last] / accepted, recall=tp[last] / float(n_findable),
                   thresholds=c[last])


def localisation_accuracy(query_xy: np.ndarray, predicted_xy: np.ndarray,
                          radii: Sequence[float] = DEFAULT_RADII,
                          confidence: Optional[np.ndarray] = None,
                          fp_threshold: Optional[float] = None) -> Dict[str, Dict[float, float]]:
    """PAL-style localisation accuracy (see the module docstring).

    Args:
        query_xy: ``(M, 2)`` metric query positions.
        predicted_xy: ``(M, 2)`` positions of the predicted database frames (NaN rows = no
            prediction).
        radii: distances X in metres.
        confidence: ``(M,)`` confidences, needed with ``fp_threshold``.
        fp_threshold: predictions with confidence ``>=`` this are "confident".

    Returns:
        ``{"within": {X: fraction}, "false_positive_rate": {X: rate}}`` (NaN rates when no
        prediction is confident).
    """
    q = np.asarray(query_xy, dtype=np.float64)
    p = np.asarray(predicted_xy, dtype=np.float64)
    if q.shape != p.shape or q.ndim != 2:
        raise InputError(f"query and predicted positions must both be (M, 2); got {q.shape} and {p.shape}")
    d = np.linalg.norm(q - p, axis=1)
    has = np.isfinite(d)
    confident = has.copy()
    if fp_threshold is not None:
        if confidence is None:
            raise InputError("fp_threshold needs the confidences")
        confident &= np.asarray(confidence, dtype=np.float64) >= fp_threshold
    r = np.asarray([float(x) for x in radii])
    if (r <= 0).any():
        raise InputError(f"radii must be > 0 metres, got {list(radii)}")
    inside = has[:, None] & (np.where(has, d, np.inf)[:, None] <= r[None, :])  # (M, R)
    n = max(len(d), 1)
    within = inside.sum(axis=0) / n if len(d) else np.full(len(r), np.nan)
    nc = int(confident.sum())
    fpr = (confident[:, None] & ~inside).sum(axis=0) / nc if nc else np.full(len(r), np.nan)
    return {"within": {float(x): float(w) for x, w in zip(r, within)},
            "false_positive_rate": {float(x): float(f) for x, f in zip(r, fpr)}}


def _nan_to_none(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_nan_to_none(v) for v in x]
    return x


def _key(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


@dataclass
class EvaluationResult:
    """Metrics of one matching run and its per-query rows.

    recall: ``{N: Recall@N}``. pr: the :class:`PRCurve`. pr_auc: average precision.
    recall_at_100p: recall at 100 % precision. n_queries: evaluated (valid) queries;
    n_total: all queries; n_findable: evaluated queries with at least one positive.
    within / false_positive_rate: ``{X metres: value}`` (empty without positions).
    per_query: column name → array of length Q (:data:`PER_QUERY_COLUMNS`).
    matcher / params: how the matches were made.
    candidates: int64 ``(Q, k)`` ranked database indices (``-1`` = none), or None.
    candidate_costs: float ``(Q, k)`` the matcher's cost of each candidate (lower = better;
        NaN where unknown), or None.
    candidate_hits: bool ``(Q, k)`` whether each candidate is a positive, or None.
    """

    recall: Dict[int, float]
    pr: PRCurve
    pr_auc: float
    recall_at_100p: float
    n_queries: int
    n_total: int
    n_findable: int
    within: Dict[float, float] = field(default_factory=dict)
    false_positive_rate: Dict[float, float] = field(default_factory=dict)
    per_query: Dict[str, np.ndarray] = field(default_factory=dict)
    matcher: str = ""
    params: Dict[str, Any] = field(default_factory=dict)
    candidates: Optional[np.ndarray] = None
    candidate_costs: Optional[np.ndarray] = None
    candidate_hits: Optional[np.ndarray] = None

    def to_json(self) -> Dict[str, Any]:
        """JSON-ready dict (NaN → None) with at least ``recall`` (``{"1": r1, "5": ...}``),
        ``pr_auc``, ``recall_at_100p`` and ``n_queries``."""
        out = {
            "recall": {str(n): v for n, v in sorted(self.recall.items())},
            "pr_auc": self.pr_auc,
            "recall_at_100p": self.recall_at_100p,
            "n_queries": self.n_queries,
            "n_total": self.n_total,
            "n_findable": self.n_findable,
            "within_m": {_key(x): v for x, v in sorted(self.within.items())},
            "false_positive_rate": {_key(x): v for x, v in sorted(self.false_positive_rate.items())},
            "matcher": self.matcher,
            "params": self.params,
            "pr_curve": {"precision": self.pr.precision.tolist(), "recall": self.pr.recall.tolist(),
                         "thresholds": self.pr.thresholds.tolist()},
        }
        return _nan_to_none(out)

    def write_json(self, path: PathLike) -> Path:
        """Write :meth:`to_json` to ``path`` atomically."""
        return write_text_atomic(path, json.dumps(self.to_json(), indent=2, allow_nan=False) + "\n")

    def per_query_csv(self) -> str:
        """The per-query rows as CSV text (columns :data:`PER_QUERY_COLUMNS`)."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(PER_QUERY_COLUMNS)
        cols = [self.per_query[c] for c in PER_QUERY_COLUMNS]
        for row in zip(*cols):
            w.writerow([_csv_cell(v) for v in row])
        return buf.getvalue()

    def write_csv(self, path: PathLike) -> Path:
        """Write the per-query rows to ``path`` atomically."""
        return write_text_atomic(path, self.per_query_csv())

    def summary(self) -> str:
        """A human-readable table of the metrics."""
        lines = [f"matcher          {self.matcher or '-'}",
                 f"queries          {self.n_queries} evaluated of {self.n_total} "
                 f"({self.n_findable} with a positive)"]
        for n, v in sorted(self.recall.items()):
            lines.append(f"{'Recall@' + str(n):<17s}{_fmt(v)}")
        lines.append(f"PR-AUC (AP)      {_fmt(self.pr_auc)}")
        lines.append(f"Recall@100%P     {_fmt(self.recall_at_100p)}")
        for x, v in sorted(self.within.items()):
            fp = self.false_positive_rate.get(x, float("nan"))
            lines.append(f"{'within ' + _key(x) + ' m':<17s}{_fmt(v)}   false-positive rate {_fmt(fp)}")
        return "\n".join(lines)


def _fmt(v: float) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.4f}"


def _csv_cell(v: Any) -> Any:
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return "" if not np.isfinite(v) else f"{float(v):.6g}"
    return v


def evaluate(candidates: np.ndarray, confidence: np.ndarray, ground_truth: GroundTruth, *,
             query_ids: Optional[Sequence[str]] = None, db_ids: Optional[Sequence[str]] = None,
             query_xy: Optional[np.ndarray] = None, db_xy: Optional[np.ndarray] = None,
             ns: Sequence[int] = DEFAULT_NS, radii: Sequence[float] = DEFAULT_RADII,
             fp_threshold: Optional[float] = None, matcher: str = "",
             params: Optional[Dict[str, Any]] = None,
             candidate_costs: Optional[np.ndarray] = None) -> EvaluationResult:
    """All metrics of ranked matches against ground truth.

    Args:
        candidates: int ``(Q, k)`` database indices, best first (``-1`` = none); column 0 is
            the prediction.
        confidence: ``(Q,)`` confidence of each query's top-1 (higher = more sure).
        ground_truth: positives and valid flags for the Q queries.
        query_ids, db_ids: names for the per-query rows (default the indices).
        query_xy, db_xy: ``(Q, 2)`` / ``(N, 2)`` metric positions; enable distances and the
            localisation accuracy within ``radii`` metres.
        ns: the N of Recall@N.
        fp_threshold: confidence threshold of the false-positive rate (None = all predictions).
        matcher, params: recorded in the result.
        candidate_costs: optional ``(Q, k)`` cost of each candidate (lower = better), kept
            with the candidates for reports.

    Returns:
        :class:`EvaluationResult`.
    """
    cand = _check_candidates(candidates, ground_truth)
    q = cand.shape[0]
    conf = np.asarray(confidence, dtype=np.float64).reshape(-1)
    if conf.shape != (q,):
        raise InputError(f"confidence has shape {conf.shape}, expected ({q},)")
    costs = None
    if candidate_costs is not None:
        costs = np.asarray(candidate_costs, dtype=np.float64)
        if costs.ndim == 1:
            costs = costs[:, None]
        if costs.shape != cand.shape:
            raise InputError(f"candidate_costs has shape {costs.shape}, expected {cand.shape}")
    hits = ground_truth.is_positive(cand)
    valid = ground_truth.valid
    recall = _recall_from_hits(hits, valid, ns)
    top1 = cand[:, 0]
    predicted = top1 >= 0
    correct = hits[:, 0]
    findable = ground_truth.n_positives > 0
    curve = pr_curve(conf[valid], correct[valid], int((findable & valid).sum()), predicted[valid])
    dist = np.full(q, np.nan)
    within: Dict[float, float] = {}
    fpr: Dict[float, float] = {}
    if query_xy is not None and db_xy is not None:
        qxy = np.asarray(query_xy, dtype=np.float64)
        dxy = np.asarray(db_xy, dtype=np.float64)
        if qxy.shape != (q, 2) or dxy.shape != (ground_truth.n_database, 2):
            raise DatasetError(f"positions have shapes {qxy.shape} and {dxy.shape}, expected "
                               f"({q}, 2) and ({ground_truth.n_database}, 2)")
        pred_xy = np.where(predicted[:, None], dxy[np.maximum(top1, 0)], np.nan)
        dist = np.linalg.norm(qxy - pred_xy, axis=1)
        acc = localisation_accuracy(qxy[valid], pred_xy[valid], radii, conf[valid], fp_threshold)
        within, fpr = acc["within"], acc["false_positive_rate"]
    qids = [str(i) for i in range(q)] if query_ids is None else [str(i) for i in query_ids]
    if len(qids) != q:
        raise InputError(f"{len(qids)} query ids for {q} queries")
    if db_ids is not None and len(db_ids) != ground_truth.n_database:
        raise InputError(f"{len(db_ids)} database ids for {ground_truth.n_database} database images")
    top1_id = np.array([("" if t < 0 else (str(db_ids[t]) if db_ids is not None else str(t)))
                        for t in top1.tolist()], dtype=object)
    per_query = {
        "query_index": np.arange(q),
        "query_id": np.array(qids, dtype=object),
        "valid": valid.copy(),
        "top1_index": top1.copy(),
        "top1_id": top1_id,
        "correct": correct.copy(),
        "first_hit_rank": first_hit_rank(hits),
        "distance_m": dist,
        "confidence": conf,
    }
    return EvaluationResult(recall=recall, pr=curve, pr_auc=curve.auc, recall_at_100p=curve.recall_at_100p,
                            n_queries=int(valid.sum()), n_total=q, n_findable=int((findable & valid).sum()),
                            within=within, false_positive_rate=fpr, per_query=per_query,
                            matcher=matcher, params=dict(params or {}), candidates=cand.copy(),
                            candidate_costs=costs, candidate_hits=hits.copy())
