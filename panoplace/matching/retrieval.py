"""Single-image retrieval: top-k database matches per query, with a confidence.

Confidence (``place_margin``): the score of the best match minus the score of the best
retrieved match that is a *different place*, so that the neighbouring frames of the best
match (which show the same place and score almost as high) do not make a confident match look
ambiguous. A candidate is a different place when

- database positions are given: it lies more than ``place_radius`` metres from the best match;
- otherwise: its database row differs from the best match's by more than ``frame_separation``
  (0 = any other image; use e.g. 2 for an ordered traverse).

When none of the ``confidence_depth`` retrieved candidates is a different place, the last
retrieved score is used instead: every unretrieved entry scores lower, so the reported margin
is a lower bound of the true one. Scores are cosine similarities for L2-normalised
descriptors (or best-shift mean crop similarities after rotation re-ranking), so the margin
lies in [0, 2]; 0 = ambiguous.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Dict, List, Optional, Union

import numpy as np

from panoplace.atomic import atomic_path
from panoplace.errors import InputError
from panoplace.matching.graph import MapGraph
from panoplace.matching.online import OnlineLocaliser, OnlineParams
from panoplace.matching.rotation import heading_step, match_rotation, rerank
from panoplace.matching.sequence import HMMParams, SeqSLAMParams, match_sequence, params_for
from panoplace.matching.sparse import IndexVectors, sparse_match
from panoplace.store import DescriptorSet

if TYPE_CHECKING:
    from panoplace.data.frames import ImageSet
    from panoplace.index import PlaceIndex
    from panoplace.matching.scene_rerank import SceneEvidence

log = logging.getLogger(__name__)

DEFAULT_PLACE_RADIUS = 25.0


@dataclass
class Retrieval:
    """Top-k matches of Q queries.

    scores: ``(Q, k)`` float32 similarities, descending (``-inf`` where no match).
    db_indices: ``(Q, k)`` int64 database rows (``-1`` where no match).
    confidence: ``(Q,)`` float32 margin to the best different place (see module docstring).
    headings: ``(Q, k)`` float64 relative headings in degrees (query minus database) from
        rotation matching of per-crop descriptors, else None.
    """

    scores: np.ndarray
    db_indices: np.ndarray
    confidence: np.ndarray
    headings: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return int(self.db_indices.shape[0])

    @property
    def k(self) -> int:
        return int(self.db_indices.shape[1])


def place_margin(
    scores: np.ndarray,
    db_indices: np.ndarray,
    database_xy: Optional[np.ndarray] = None,
    place_radius: float = DEFAULT_PLACE_RADIUS,
    frame_separation: int = 0,
) -> np.ndarray:
    """Margin between the best match and the best different place, per query.

    Args:
        scores: ``(Q, m)`` descending similarities. db_indices: ``(Q, m)`` rows (-1 = none).
        database_xy: ``(N, 2)`` metric database positions, or None.

    Returns:
        ``(Q,)`` float32 (0 for a query without any match).
    """
    scores = np.asarray(scores, dtype=np.float64)
    ids = np.asarray(db_indices, dtype=np.int64)
    if scores.shape != ids.shape or scores.ndim != 2:
        raise InputError(f"scores {scores.shape} and indices {ids.shape} must both be (Q, m)")
    n_q, m = ids.shape
    if m == 0:
        return np.zeros(n_q, np.float32)
    valid = ids >= 0
    safe = np.where(valid, ids, 0)
    if database_xy is not None:
        xy = np.asarray(database_xy, dtype=np.float64)[safe]  # (Q, m, 2)
        distinct = np.linalg.norm(xy - xy[:, :1], axis=2) > place_radius
    else:
        distinct = np.abs(safe - safe[:, :1]) > frame_separation
    distinct &= valid
    distinct[:, 0] = False
    rows = np.arange(n_q)
    second = scores[rows, distinct.argmax(axis=1)]
    last = scores[rows, np.maximum(valid.sum(axis=1) - 1, 0)]
    second = np.where(distinct.any(axis=1), second, last)
    margin = np.where(valid[:, 0], scores[:, 0] - second, 0.0)
    return margin.astype(np.float32)


def _query_array(index: "PlaceIndex", queries: Union[np.ndarray, "DescriptorSet"], k: int) -> np.ndarray:
    """The query descriptors as an array (a :class:`DescriptorSet` is checked against the
    index first); ``k`` must be >= 1."""
    if isinstance(queries, DescriptorSet):
        index.check_query(queries)
        q = queries.descriptors
    else:
        q = np.asarray(queries, dtype=np.float32)
    if int(k) < 1:
        raise InputError(f"k must be >= 1, got {k}")
    return q


def retrieve(
    index: "PlaceIndex",
    queries: Union[np.ndarray, "DescriptorSet"],
    k: int = 5,
    *,
    database_xy: Optional[np.ndarray] = None,
    place_radius: float = DEFAULT_PLACE_RADIUS,
    frame_separation: int = 0,
    confidence_depth: int = 20,
    rotation: bool = True,
    rerank_depth: int = 50,
    step_deg: Optional[float] = None,
    scene: Optional["SceneEvidence"] = None,
) -> Retrieval:
    """Top-k database matches of each query, with confidence and (per-crop) headings.

    Args:
        index: a :class:`panoplace.index.PlaceIndex`.
        queries: ``(Q, D)`` or per-crop ``(Q, K, D)`` float32 descriptors, or a
            :class:`DescriptorSet` (then checked against the index's model/config first).
        k: matches per query.
        database_xy: ``(N, 2)`` database positions for the confidence's different-place test.
        confidence_depth: candidates searched to find the best different place.
        rotation: with per-crop queries and a per-crop index, re-rank the ``rerank_depth`` best
            fused-descriptor candidates by best-shift crop similarity and report headings.
        step_deg: degrees per crop shift (default from the index's panorama config).
        scene: scene probabilities of the queries and the database
            (:class:`panoplace.matching.scene_rerank.SceneEvidence`): the searched candidates
            (at least ``confidence_depth``) are re-ranked or filtered by scene agreement before
            the top k and the confidence are taken.

    Raises:
        DescriptorMismatchError: descriptors from another model/config, dimension, NaN/inf.
    """
    q = _query_array(index, queries, k)
    k = min(int(k), len(index))
    crops = index.crop_descriptors if q.ndim == 3 and rotation else None
    depth = max(k, int(confidence_depth), int(rerank_depth) if crops is not None else 0)
    scores, ids = index.search(q, depth)
    headings: Optional[np.ndarray] = None
    if crops is not None:
        step = step_deg if step_deg is not None else heading_step(q.shape[1], index.config.get("panorama"))
        match = rerank(q, crops, ids, step_deg=step)
        scores, headings = match.scores, match.headings
        ids = match.db_indices if match.db_indices is not None else ids  # rerank sets them: (Q, depth) re-ordered
    if scene is not None:
        scores, ids, headings = scene.apply(scores, ids, headings)
    if headings is not None:
        headings = headings[:, :k]
    confidence = place_margin(scores, ids, database_xy, place_radius, frame_separation)
    return Retrieval(scores[:, :k], ids[:, :k], confidence, headings)


def retrieve_sequence(
    index: "PlaceIndex",
    queries: Union[np.ndarray, "DescriptorSet"],
    k: int = 5,
    method: str = "hmm",
    ds: int = 10,
    mode: str = "offline",
    step_deg: Optional[float] = None,
    graph: Optional[MapGraph] = None,
    sparse: bool = False,
    **sequence_options: Any,
) -> Retrieval:
    """Localise an ordered sequence of queries by sequence matching.

    - ``mode="offline"`` (default): the dense matcher
      (:func:`panoplace.matching.sequence.match_sequence`) on ``1 - cosine similarity`` of the
      (fused) descriptors against the whole database (``(Q, N)``; entries IVF-PQ did not reach
      count as 2, the largest cosine distance); with ``sparse=True`` the sparse matcher over
      the index's candidates instead (:func:`panoplace.matching.sparse.sparse_match`, no Q x N
      matrix; ``graph`` says which database frames follow which).
    - ``mode="online"``: the queries go one by one through the online localiser
      (:class:`panoplace.matching.online.OnlineLocaliser` on the index and ``graph``), as a
      moving camera would; no Q x N matrix.

    ``scores`` of the result are the similarities of the returned pairs, ``confidence`` is the
    sequence matcher's (see :mod:`panoplace.matching.sequence`), and for per-crop descriptors
    ``headings`` come from rotation matching of the returned pairs.

    Args:
        queries: ``(Q, D)`` / ``(Q, K, D)`` descriptors (in traversal order) or a
            :class:`DescriptorSet` (checked against the index first).
        method, ds, mode, sequence_options: the matcher (``hmm`` or ``seqslam``) and its
            parameters (fields of :class:`~panoplace.matching.sequence.HMMParams` /
            :class:`~panoplace.matching.sequence.SeqSLAMParams`).
        graph: the database's :class:`~panoplace.matching.graph.MapGraph` (sparse and online;
            default: one traversal in index order).
    """
    q = _query_array(index, queries, k)
    k = min(int(k), len(index))
    if mode == "online" or sparse:
        params = params_for(method, ds=ds, mode=mode, **sequence_options)
        if not isinstance(params, (HMMParams, SeqSLAMParams)):
            raise InputError(f"sparse and online sequence matching take hmm or seqslam, not {method!r}")
        depth = max(10, k)
        if mode == "online":
            loc = OnlineLocaliser(index, graph, OnlineParams(matcher=params, k=depth, n_out=k))
            ids = np.full((len(q), k), -1, np.int64)
            confidence = np.zeros(len(q), np.float32)
            for i in range(len(q)):
                est = loc.update(q[i])
                ids[i, :len(est.candidates)] = est.candidates
                confidence[i] = est.confidence
        else:
            m = sparse_match(index, q, params, graph, k=depth, n_out=k)
            ids, confidence = m.ranked(k), np.asarray(m.confidence, np.float32)
        vectors = IndexVectors(index)
        scores = np.full(ids.shape, -np.inf, np.float32)
        for i in range(len(q)):
            ok = ids[i] >= 0
            scores[i, ok] = vectors.similarities(vectors.prepare(q[i]), ids[i, ok])
    else:
        sims = index.similarities(q)
        diff = np.where(np.isfinite(sims), 1.0 - sims, 2.0).astype(np.float32)
        match = match_sequence(diff, method=method, ds=ds, mode=mode, return_scores=True, **sequence_options)
        ids = match.ranked(int(k))
        rows = np.arange(len(ids))[:, None]
        scores = np.where(ids >= 0, sims[rows, np.maximum(ids, 0)], -np.inf).astype(np.float32)
        confidence = np.asarray(match.confidence, np.float32)
    headings = None
    if q.ndim == 3 and index.crop_descriptors is not None:
        step = step_deg if step_deg is not None else heading_step(q.shape[1], index.config.get("panorama"))
        rot = match_rotation(q, index.crop_descriptors[np.maximum(ids, 0)], step)
        headings = np.where(ids >= 0, rot.headings, np.nan)
    return Retrieval(scores, ids, confidence, headings)


PREDICTION_COLUMNS = ("query_id", "rank", "database_id", "database_index", "score", "confidence",
                      "heading_deg", "x", "y", "lat", "lon")


def prediction_rows(
    query_ids: List[str],
    result: Retrieval,
    database_ids: List[str],
    database: Optional["ImageSet"] = None,
    database_rows: Optional[np.ndarray] = None,
) -> List[Dict[str, object]]:
    """One dict per (query, rank) with the columns of :data:`PREDICTION_COLUMNS`.

    Args:
        database: the dataset the index was built from (for positions), with
            ``database_rows`` ``(N,)`` mapping index rows to its rows (see ``ImageSet.rows_for``).
    Columns without a value (no position, no heading) are empty strings; ranks start at 1.
    """
    if len(query_ids) != len(result):
        raise InputError(f"{len(query_ids)} query ids for {len(result)} results")
    q_n, k = result.db_indices.shape
    out = []
    for i in range(q_n):
        for r in range(k):
            j = int(result.db_indices[i, r])
            if j < 0:
                continue
            row: Dict[str, object] = {c: "" for c in PREDICTION_COLUMNS}
            row.update(query_id=query_ids[i], rank=r + 1, database_id=database_ids[j], database_index=j,
                       score=f"{float(result.scores[i, r]):.6f}",
                       confidence=f"{float(result.confidence[i]):.6f}")
            if result.headings is not None and np.isfinite(result.headings[i, r]):
                row["heading_deg"] = f"{float(result.headings[i, r]):.2f}"
            if database is not None and database_rows is not None:
                d = int(database_rows[j])
                if database.xy is not None:
                    row["x"], row["y"] = repr(float(database.xy[d, 0])), repr(float(database.xy[d, 1]))
                if database.latlon is not None:
                    row["lat"], row["lon"] = repr(float(database.latlon[d, 0])), repr(float(database.latlon[d, 1]))
            out.append(row)
    return out


def write_predictions(rows: List[Dict[str, object]], out: Union[str, Path, IO[str]]) -> None:
    """Write prediction rows as CSV to a path (atomically) or an open text stream."""
    if hasattr(out, "write"):
        w = csv.DictWriter(out, fieldnames=list(PREDICTION_COLUMNS))
        w.writeheader()
        w.writerows(rows)
        return
    with atomic_path(out) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            write_predictions(rows, f)
