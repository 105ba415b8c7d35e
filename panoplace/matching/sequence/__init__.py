"""Sequence matching on a query-vs-database difference matrix.

A single frame is ambiguous under strong appearance change (summer vs winter), a sequence of
frames much less so: these matchers score each (query i, database frame j) pair by how well the
*sequence* of queries around i matches a sequence of database frames through j.

All methods take a difference (distance) matrix ``D`` of shape ``(Q, N)`` (lower = more
similar; query i is row i, frames in traversal order) and return a :class:`SequenceMatch`.
Each method has one parameter dataclass (:mod:`.params`): :class:`SeqSLAMParams`,
:class:`HMMParams`, :class:`ClassicParams`, :class:`SingleParams`; :func:`match` runs the
method of the dataclass it is given. :func:`match_sequence` is the keyword form (method name +
options) that the CLI and older code call.

Package layout: :mod:`.core` (result type, helpers, windows, calibration), :mod:`.params`,
:mod:`.seqslam`, :mod:`.hmm`, :mod:`.classic` (OpenSeqSLAM port), :mod:`.single`, and
:mod:`.kernels` (the compiled row loops). Sparse matching over index candidates and the online
localiser build on these in :mod:`panoplace.matching.sparse` and
:mod:`panoplace.matching.online`.

Methods (:data:`METHODS`):

``seqslam``
    SeqSLAM (Milford & Wyeth 2012). Local contrast enhancement (:func:`enhance_contrast`):
    every entry becomes a z-score over a window of database frames of the same query, shifted by
    the largest possible ``|z|`` so it is non-negative. Then straight trajectories of ``ds``
    query frames over ``n_velocities`` velocities from ``vmin`` to ``vmax`` (database frames per
    query frame); a trajectory through (i, j) visits database frame ``j + round(v * t)`` at query
    ``i + t``. The score of (i, j) is the minimum over velocities of the mean enhanced difference
    along the trajectory (the sum divided by the number of query frames in the window; steps
    that fall off the database count as the neutral value ``z = 0``). Confidence is the
    uniqueness ratio: the best score outside ``±uniqueness_radius`` frames of the best match
    divided by the best score (>= 1; higher = more unique).

    Confidence calibration (both methods): a window shorter than the run's full windows (the
    start and end of a sequence) never outranks a full window
    (:func:`~.core.cap_short_windows`); before, online SeqSLAM gave the first query, whose
    window holds one frame, the highest confidence of a Nordland run.

``hmm``
    A hidden Markov model over database frames, run over the same window of ``ds`` query
    frames. The transition prior allows database jumps of ``floor(vmin) - 1 .. ceil(vmax) + 1``
    frames per query frame with a Gaussian weight around the mean velocity
    ``(vmin + vmax) / 2`` (std ``jump_std``) plus a small uniform "teleport" probability;
    unlike SeqSLAM's straight lines, the path may speed up and slow down inside the window.
    The emission likelihood is ``exp(-z / sigma)`` of the enhanced differences. Offline mode
    combines the forward pass over the past half-window with the backward pass over the
    future half-window (forward-backward: the posterior of the database frame at query i);
    online mode is forward filtering over the last ``ds`` frames. The score is
    ``-log posterior``; the confidence is the posterior mass within ``±uniqueness_radius``
    frames of the best match (a probability in [0, 1]).

    ``jump_std`` trades steadiness for flexibility. Measured (R@1, ds 20 on Nordland
    summer→winter, benchmarks/bench_sequence_nordland.py; ds 12 on a synthetic route whose
    speed swings ±30-50 %): 0.3 → Nordland 0.946, synthetic 0.70; the default 0.4 → 0.941
    and 0.88; 0.5 → 0.90 and 0.97. Use 0.3 for constant speed, 0.5 for stop-and-go.

Other matchers (:data:`MATCHERS`): ``single`` (no sequence) and ``seqslam_classic`` (the
OpenSeqSLAM port in :mod:`panoplace.matching.seqslam_classic`, the baseline). Helpers to build
better difference matrices: :func:`combine_differences` (sum of row-standardised matrices) and
:func:`standardise_columns` (removes "hub" database frames; offline only).

Modes (:data:`MODES`):

``offline``
    Centred window: query i uses query frames ``i - ds//2 .. i + (ds - 1) - ds//2``
    (``ds`` frames; for ``ds = 20``: ``i - 10 .. i + 9``). Needs frames after i.
``online``
    Causal window: query i uses only frames ``i - ds + 1 .. i``. Results for query i never
    depend on rows of ``D`` after i.

Near the start and end of the query sequence the window is cut to the frames that exist.

The dense loops are compiled (:mod:`.kernels`, numba): each query row is finished in a few
``(N,)`` buffers, in parallel over rows; extra memory is one ``(Q, N)`` float32 matrix (the
enhanced differences) plus ``scores`` when requested.
"""


from __future__ import annotations

from typing import Any

import numpy as np

from panoplace.errors import InputError
from panoplace.matching.sequence.classic import match_classic, seqslam_classic
from panoplace.matching.sequence.core import (
    MATCHERS,
    METHODS,
    MODES,
    SequenceMatch,
    cap_short_windows,
    check_matrix,
    combine_differences,
    enhance_bound,
    enhance_contrast,
    rank_costs,
    standardise_columns,
    standardise_rows,
    trajectory_shifts,
    transition_kernel,
    uniqueness_ratio,
    velocities,
    window_lengths,
    window_offsets,
)
from panoplace.matching.sequence.hmm import hmm
from panoplace.matching.sequence.params import (
    ClassicParams,
    HMMParams,
    MatcherParams,
    SeqSLAMParams,
    SingleParams,
    params_for,
)
from panoplace.matching.sequence.seqslam import seqslam, seqslam_reference
from panoplace.matching.sequence.single import single_frame_match

__all__ = [
    "MATCHERS",
    "METHODS",
    "MODES",
    "ClassicParams",
    "HMMParams",
    "MatcherParams",
    "SeqSLAMParams",
    "SequenceMatch",
    "SingleParams",
    "cap_short_windows",
    "check_matrix",
    "combine_differences",
    "enhance_bound",
    "enhance_contrast",
    "hmm",
    "match",
    "match_classic",
    "match_sequence",
    "params_for",
    "rank_costs",
    "seqslam",
    "seqslam_classic",
    "seqslam_reference",
    "single_frame_match",
    "standardise_columns",
    "standardise_rows",
    "trajectory_shifts",
    "transition_kernel",
    "uniqueness_ratio",
    "velocities",
    "window_lengths",
    "window_offsets",
]


def match(D: np.ndarray, params: MatcherParams, return_scores: bool = True) -> SequenceMatch:
    """Match every query of ``D`` with the method whose parameters ``params`` are.

    >>> import numpy as np
    >>> D = np.random.default_rng(0).random((30, 40)).astype(np.float32)
    >>> D[np.arange(30), np.arange(30) + 5] -= 1.0
    >>> m = match(D, HMMParams(ds=5))
    >>> int((m.best == np.arange(30) + 5).sum())
    30

    Shape:
        D: ``(Q, N)`` float; result: ``best``/``score``/``confidence`` ``(Q,)``,
        ``scores`` ``(Q, N)`` float32 when ``return_scores``.
    """
    D = check_matrix(D)
    if isinstance(params, SeqSLAMParams):
        return seqslam(D, params, return_scores)
    if isinstance(params, HMMParams):
        return hmm(D, params, return_scores)
    if isinstance(params, ClassicParams):
        return match_classic(D, params, return_scores)
    if isinstance(params, SingleParams):
        return single_frame_match(D, params.uniqueness_radius, return_scores)
    raise InputError(f"unknown matcher parameters {type(params).__name__}")


def match_sequence(D: np.ndarray, method: str = "hmm", ds: int = 10, mode: str = "offline",
                   return_scores: bool = True, chunk_bytes: int = 0, **options: Any) -> SequenceMatch:
    """Keyword form of :func:`match`: ``method`` (one of :data:`MATCHERS`) and its options.

    Options are the fields of the method's dataclass (``vmin``, ``vmax``, ``n_velocities``,
    ``enhance_window``, ``uniqueness_radius``, ``jump_std``, ``teleport``, ``sigma``,
    ``uniqueness_window``); those the method does not take are ignored. ``single`` uses only
    ``uniqueness_radius`` (default 10 here, as before). ``chunk_bytes`` is accepted for
    compatibility and unused.

    Shape:
        D: ``(Q, N)`` float; result as :func:`match`.
    """
    D = check_matrix(D)
    if method == "single":
        options.setdefault("uniqueness_radius", 10)
    return match(D, params_for(method, ds=ds, mode=mode, **options), return_scores)
