"""Evaluation: metrics (``metrics``: Recall@N, PR curve, PR-AUC, recall at 100 % precision,
localisation accuracy within X m), array-level pipeline (``pipeline``: descriptors or a
difference matrix → :class:`EvaluationResult`), plots (``plots``) and the HTML report
(``report``).

Only the light modules are imported here; import ``plots``/``report`` (matplotlib) directly.
"""

from panoplace.evaluation.metrics import (
    DEFAULT_NS,
    DEFAULT_RADII,
    EvaluationResult,
    PRCurve,
    evaluate,
    localisation_accuracy,
    pr_curve,
    recall_at_n,
)
from panoplace.evaluation.pipeline import cosine_distances, evaluate_descriptors, evaluate_differences, evaluate_match

__all__ = [
    "DEFAULT_NS",
    "DEFAULT_RADII",
    "EvaluationResult",
    "PRCurve",
    "cosine_distances",
    "evaluate",
    "evaluate_descriptors",
    "evaluate_differences",
    "evaluate_match",
    "localisation_accuracy",
    "pr_curve",
    "recall_at_n",
]
