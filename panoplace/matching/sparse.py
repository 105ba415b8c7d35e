"""Sparse sequence matching over index candidates: SeqSLAM and the HMM without a Q x N matrix.

The dense matchers (:mod:`panoplace.matching.sequence`) need every query-vs-database
difference; on a city map that is impossible. Here each query frame asks the faiss index
(:class:`~panoplace.index.PlaceIndex`, flat or IVF-PQ) for its top ``k`` database frames, and
the sequence matcher only looks at frames the window's candidates make plausible:

1. **Candidates of query i**: for every frame ``i + t`` of its window and each of that frame's
   top-``k`` database frames ``c``, the frame ``c - round(v t)`` a vehicle at mean speed ``v``
   would have been at when it saw query i (moved along ``c``'s chain of the
   :class:`~panoplace.matching.graph.MapGraph`), widened by ``±w`` frames where
   ``w = ceil(max|t| (vmax - vmin) / 2) + 1`` covers the other speeds. One frame of the window
   that retrieves its true place is enough to put query i's true place among the candidates.
2. **Differences on demand**: ``1 - similarity`` of a query frame and the database frames the
   method needs (the candidates' trajectories and contrast-enhancement windows), computed
   from the database vectors the index holds (exact for flat, the PQ reconstruction for
   IVF-PQ, so they equal the index's own scores) and cached per query frame.
3. **The dense formulas on those columns**: contrast enhancement over ``±enhance_window / 2``
   frames along the chain, SeqSLAM's straight trajectories, the HMM's windowed forward
   (-backward) pass. For SeqSLAM the cost of every candidate equals the dense cost exactly;
   the HMM keeps no mass outside its columns (the candidates and the frames that lead to them
   within the window), a close approximation of the dense posterior. Along links of the map
   graph the HMM may switch chains with probability ``switch`` per step.

Memory is O(Q · k · ds) for the candidates plus the cached differences of the ``ds`` frames
of one window; no Q x N matrix is ever built. Offline and online (causal) windows as in the
dense matchers; :mod:`panoplace.matching.online` runs the same computation frame by frame.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import faiss
import numpy as np
from tqdm import tqdm

from panoplace.errors import InputError
from panoplace.index import PlaceIndex, fuse_crops
from panoplace.matching.graph import MapGraph
from panoplace.matching.sequence import (
    HMMParams,
    SeqSLAMParams,
    SequenceMatch,
    enhance_bound,
    trajectory_shifts,
    transition_kernel,
    velocities,
    window_offsets,
)
from panoplace.matching.sequence.hmm import calibrate_mass
from panoplace.matching.sequence.seqslam import calibrate_ratio
from panoplace.topk import top_k

log = logging.getLogger(__name__)

__all__ = ["IndexVectors", "QueryRow", "SparseScores", "candidate_ranks", "follow", "score_window", "sparse_match"]

SparseParams = Union[HMMParams, SeqSLAMParams]


class IndexVectors:
    """Similarities of a query to any database frames, the way the index scores them.

    flat: the stored vectors (no copy); IVF-PQ: PQ reconstructions through the inverted
    lists' direct map (built once, 8 bytes per frame), with the PCA pre-transform applied to
    the query when the index has one (score ``1 - |x - y|^2 / 2`` as :meth:`PlaceIndex.search`).
    Reconstructed vectors are cached (``cache_rows`` of them) because consecutive frames ask
    for nearly the same database frames.
    """

    def __init__(self, index: PlaceIndex, cache_rows: int = 1 << 16) -> None:
        self.index = index
        raw: Any = index.index
        self.n = len(index)
        self.transform: Any = None
        self.l2 = False
        self.flat: Optional[np.ndarray] = None
        if index.kind == "flat":
            flat: Any = faiss.downcast_index(raw)
            self.flat = faiss.rev_swig_ptr(flat.get_xb(), self.n * flat.d).reshape(self.n, flat.d)
            self.dim = int(flat.d)
        else:
            inner: Any = raw
            if isinstance(faiss.downcast_index(raw), faiss.IndexPreTransform):
                pre: Any = faiss.downcast_index(raw)
                self.transform = pre
                inner = faiss.downcast_index(pre.index)
                self.l2 = True
            ivf = faiss.extract_index_ivf(inner)
            ivf.make_direct_map()
            self.inner = inner
            self.dim = int(inner.d)
            self.cache_rows = int(min(cache_rows, self.n))
            self.slot_of = np.full(self.n, -1, np.int32)
            self.owner = np.full(self.cache_rows, -1, np.int64)
            self.cache = np.zeros((self.cache_rows, self.dim), np.float32)
            self.next_slot = 0

    def prepare(self, query: np.ndarray) -> np.ndarray:
        """The query as the index compares it: fused, in the index's coded space. ``(D,)`` or
        ``(K, D)`` → float32 ``(dim,)``."""
        q = np.asarray(query, dtype=np.float32)
        q = fuse_crops(q[None]) if q.ndim == 2 else q[None]
        if q.shape[1] != self.index.dim:
            raise InputError(f"query descriptor has dimension {q.shape[1]} but the index has {self.index.dim}")
        if not np.isfinite(q).all():
            raise InputError("query descriptor contains NaN/inf values")
        q = np.ascontiguousarray(q)
        if self.transform is not None:
            for i in range(self.transform.chain.size()):
                q = faiss.downcast_VectorTransform(self.transform.chain.at(i)).apply(q)
        return np.ascontiguousarray(q[0], np.float32)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """Database vectors of ``ids`` in the compared space. Shape: ``(m,)`` → ``(m, dim)``."""
        ids = np.asarray(ids, dtype=np.int64)
        if self.flat is not None:
            return self.flat[ids]
        slots = self.slot_of[ids]
        miss = np.flatnonzero(slots < 0)
        if len(miss):
            need = np.unique(ids[miss])
            for a in range(0, len(need), self.cache_rows):
                chunk = need[a:a + self.cache_rows]
                vec = self.inner.reconstruct_batch(chunk)
                s = (self.next_slot + np.arange(len(chunk))) % self.cache_rows
                old = self.owner[s]
                self.slot_of[old[old >= 0]] = -1
                self.owner[s] = chunk
                self.slot_of[chunk] = s
                self.cache[s] = vec
                self.next_slot = int((self.next_slot + len(chunk)) % self.cache_rows)
                if a + self.cache_rows < len(need):  # larger than the cache: answer directly
                    return np.stack([self.inner.reconstruct(int(i)) for i in ids]).astype(np.float32)
            slots = self.slot_of[ids]
        return self.cache[slots]

    def similarities(self, q: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Similarity of a prepared query to database ``ids``. Shape: ``(dim,)``, ``(m,)`` → ``(m,)``."""
        v = self.vectors(ids)
        if self.l2:
            d = v - q[None, :]
            return (1.0 - 0.5 * np.einsum("ij,ij->i", d, d)).astype(np.float32)
        return (v @ q).astype(np.float32)


class QueryRow:
    """One query frame: its prepared vector, top-k candidates and cached differences.

    Attributes:
        vec: float32 ``(dim,)``; top: int64 ``(k,)`` candidate *ranks* (best first) and
        top_sims float32 ``(k,)``; cols/vals: sorted ranks with computed differences
        ``1 - similarity``.
    """

    def __init__(self, vec: np.ndarray, top: np.ndarray, top_sims: np.ndarray) -> None:
        self.vec = vec
        self.top = top
        self.top_sims = top_sims
        self.cols = np.zeros(0, np.int64)
        self.vals = np.zeros(0, np.float32)
        self.zcols = np.zeros(0, np.int64)
        self.zvals = np.zeros(0, np.float32)

    def differences(self, ranks: np.ndarray, vectors: IndexVectors, graph: MapGraph) -> np.ndarray:
        """``1 - similarity`` at sorted unique ``ranks`` (computed once, then cached)."""
        pos = np.searchsorted(self.cols, ranks)
        have = pos < len(self.cols)
        have[have] = self.cols[pos[have]] == ranks[have]
        if not have.all():
            new = ranks[~have]
            vals = 1.0 - vectors.similarities(self.vec, graph.order[new])
            cols = np.concatenate([self.cols, new])
            allv = np.concatenate([self.vals, vals.astype(np.float32)])
            o = np.argsort(cols, kind="stable")
            self.cols, self.vals = cols[o], allv[o]
            pos = np.searchsorted(self.cols, ranks)
        return self.vals[pos]


def _expand(ranks: np.ndarray, lo_off: int, hi_off: int, graph: MapGraph) -> np.ndarray:
    """Sorted unique ranks ``r + o`` for ``o`` in ``[lo_off, hi_off]`` that stay on r's chain.

    ``ranks`` must be sorted; the result is built as a union of intervals (no sort)."""
    if len(ranks) == 0:
        return np.zeros(0, np.int64)
    s = np.maximum(graph.lo(ranks), ranks + lo_off)
    e = np.minimum(graph.hi(ranks) - 1, ranks + hi_off)
    ok = s <= e
    s, e = s[ok], e[ok]
    if len(s) == 0:
        return np.zeros(0, np.int64)
    reach = np.maximum.accumulate(e)
    new = np.ones(len(s), bool)
    new[1:] = s[1:] > reach[:-1] + 1
    first = np.flatnonzero(new)
    starts = s[first]
    ends = np.maximum.reduceat(e, first)
    ends = np.maximum.accumulate(ends)
    length = ends - starts + 1
    base = np.repeat(starts - np.concatenate([[0], np.cumsum(length)[:-1]]), length)
    return (base + np.arange(int(length.sum()))).astype(np.int64)


def enhanced(row: QueryRow, ranks: np.ndarray, half: int, vectors: IndexVectors, graph: MapGraph) -> np.ndarray:
    """Contrast-enhanced differences of ``row`` at sorted unique ``ranks``: z-scores over the
    frames ``r - half .. r + half`` of r's chain (cut at its ends), as
    :func:`~panoplace.matching.sequence.enhance_contrast` does over the database; cached in
    the row (one matcher, one ``half``, per row). float32 ``(m,)``."""
    if len(ranks) == 0:
        return np.zeros(0, np.float32)
    pos = np.searchsorted(row.zcols, ranks)
    have = pos < len(row.zcols)
    have[have] = row.zcols[pos[have]] == ranks[have]
    if have.all():
        return row.zvals[pos]
    new = ranks[~have]
    ext = _expand(new, -half, half, graph)
    d = row.differences(ext, vectors, graph).astype(np.float64)
    c1 = np.concatenate([[0.0], np.cumsum(d)])
    c2 = np.concatenate([[0.0], np.cumsum(d * d)])
    lo, hi = graph.lo(new), graph.hi(new)
    a = np.searchsorted(ext, np.maximum(lo, new - half))
    b = np.searchsorted(ext, np.minimum(hi, new + half + 1))
    cnt = (b - a).astype(np.float64)
    mean = (c1[b] - c1[a]) / cnt
    var = (c2[b] - c2[a]) / cnt - mean * mean
    x = d[np.searchsorted(ext, new)]
    z = ((x - mean) / np.sqrt(np.maximum(var, 1e-12))).astype(np.float32)
    cols = np.concatenate([row.zcols, new])
    vals = np.concatenate([row.zvals, z])
    o = np.argsort(cols, kind="stable")
    row.zcols, row.zvals = cols[o], vals[o]
    return row.zvals[np.searchsorted(row.zcols, ranks)]


def _spread(params: SparseParams, offsets: np.ndarray) -> int:
    """Frames ``w`` that the candidates are widened by to cover speeds vmin..vmax."""
    t = int(np.abs(offsets).max()) if len(offsets) else 0
    return int(math.ceil(t * (params.vmax - params.vmin) / 2.0)) + 1


def candidate_ranks(tops: Sequence[Optional[np.ndarray]], offsets: np.ndarray, params: SparseParams,
                    graph: MapGraph, track: Optional[np.ndarray] = None) -> np.ndarray:
    """Candidate ranks of one query from the top-k ranks of the frames of its window.

    Args:
        tops: per window offset ``t`` (same order as ``offsets``), the top-k ranks of frame
            ``i + t`` or None where the frame does not exist.
        track: ranks where the previous query's best matches lead to (one step on at the mean
            speed), so that a sequence already found is kept through stretches where no frame
            of the window retrieves its place.

    Returns:
        sorted unique int64 ranks: each ``c - round(v t)`` along c's chain (``v`` the mean
        speed), widened by ``±w`` frames (see the module docstring).
    """
    v = 0.5 * (params.vmin + params.vmax)
    w = _spread(params, offsets)
    centres = []
    for t, top in zip(offsets.tolist(), tops):
        if top is None or len(top) == 0:
            continue
        top = top[top >= 0]
        x = t * v
        s = int(np.sign(x) * np.floor(abs(x) + 0.5 + 1e-9))
        c = top - s
        ok = (c >= graph.lo(top)) & (c < graph.hi(top))
        centres.append(c[ok])
    if track is not None and len(track):
        centres.append(np.asarray(track, np.int64))
    if not centres:
        return np.zeros(0, np.int64)
    return _expand(np.unique(np.concatenate(centres)), -w, w, graph)


@dataclass
class SparseScores:
    """Costs of one query's candidates (lower = better) and the raw confidence.

    Attributes:
        ranks: int64 ``(m,)`` candidate ranks; costs: float32 ``(m,)``; best: index into
        ``ranks``; confidence: the method's uncalibrated confidence.
    """

    ranks: np.ndarray
    costs: np.ndarray
    best: int
    confidence: float


def _seqslam_window(rows: Sequence[Optional[QueryRow]], offsets: np.ndarray, cand: np.ndarray,
                    params: SeqSLAMParams, vectors: IndexVectors, graph: MapGraph) -> SparseScores:
    shifts = trajectory_shifts(offsets, velocities(params.vmin, params.vmax, params.n_velocities))
    half = int(params.enhance_window) // 2
    lo, hi = graph.lo(cand), graph.hi(cand)
    cost = np.full(len(cand), np.inf, np.float32)
    accs = np.zeros((shifts.shape[0], len(cand)), np.float32)
    count = 0
    for ti, row in enumerate(rows):
        if row is None:
            continue
        count += 1
        pos = cand[None, :] + shifts[:, ti][:, None]  # (V, m)
        ok = (pos >= lo[None, :]) & (pos < hi[None, :])
        need = np.unique(pos[ok])
        z = enhanced(row, need, half, vectors, graph)
        vals = np.zeros(pos.shape, np.float32)
        vals[ok] = z[np.searchsorted(need, pos[ok])]
        accs += vals
    cost = accs.min(axis=0) / np.float32(count) + np.float32(enhance_bound(params.enhance_window))
    b = int(np.argmin(cost))
    far = (graph.chain_of[cand] != graph.chain_of[cand[b]]) | (np.abs(cand - cand[b]) > params.uniqueness_radius)
    b2 = cost[far].min() if far.any() else np.inf
    conf = float(b2 / max(float(cost[b]), 1e-9)) if np.isfinite(b2) else 1.0
    return SparseScores(cand, cost.astype(np.float32), b, conf)


def _transitions(cols: np.ndarray, params: HMMParams, graph: MapGraph, switch: float
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Transitions among ``cols`` (sorted ranks): (source positions, target positions, weights)."""
    jumps, probs = transition_kernel(params.vmin, params.vmax, params.jump_std)
    lo, hi = graph.lo(cols), graph.hi(cols)
    lsrc, ltgt = graph.links(cols)
    n_links = np.bincount(lsrc, minlength=len(cols))
    stay = np.where(n_links > 0, 1.0 - switch, 1.0)
    srcs, dsts, ws = [], [], []
    for d, p in zip(jumps.tolist(), probs.tolist()):
        w = p * (1.0 - params.teleport)
        x = cols + d
        pos = np.minimum(np.searchsorted(cols, x), len(cols) - 1)
        ok = (x >= lo) & (x < hi) & (cols[pos] == x)
        srcs.append(np.flatnonzero(ok))
        dsts.append(pos[ok])
        ws.append((w * stay[ok]).astype(np.float32))
        if len(lsrc):
            xt = ltgt + d
            tl, th = graph.lo(ltgt), graph.hi(ltgt)
            pos = np.minimum(np.searchsorted(cols, xt), len(cols) - 1)
            ok = (xt >= tl) & (xt < th) & (cols[pos] == xt)
            srcs.append(lsrc[ok])
            dsts.append(pos[ok])
            ws.append((w * switch / n_links[lsrc[ok]]).astype(np.float32))
    return np.concatenate(srcs), np.concatenate(dsts), np.concatenate(ws)


def _hmm_window(rows: Sequence[Optional[QueryRow]], offsets: np.ndarray, cand: np.ndarray, params: HMMParams,
                vectors: IndexVectors, graph: MapGraph, switch: float) -> SparseScores:
    jumps, _ = transition_kernel(params.vmin, params.vmax, params.jump_std)
    reach_lo = min(0, int(min(t * jumps.max() if t < 0 else t * jumps.min() for t in offsets.tolist())))
    reach_hi = max(0, int(max(t * jumps.min() if t < 0 else t * jumps.max() for t in offsets.tolist())))
    cols = _expand(cand, reach_lo, reach_hi, graph)
    m = len(cols)
    src, dst, w = _transitions(cols, params, graph, switch)
    half = int(params.enhance_window) // 2
    tele = np.float32(params.teleport / graph.n)
    scale = np.float32(-1.0 / params.sigma)

    def emission(row: QueryRow) -> np.ndarray:
        z = enhanced(row, cols, half, vectors, graph)
        z -= z.min()
        z *= scale
        return np.exp(z)

    def forward(x: np.ndarray) -> np.ndarray:
        return (np.bincount(dst, weights=x[src] * w, minlength=m) + tele * x.sum()).astype(np.float32)

    def backward(x: np.ndarray) -> np.ndarray:
        return (np.bincount(src, weights=x[dst] * w, minlength=m) + tele * x.sum()).astype(np.float32)

    past = [k for k, t in enumerate(offsets.tolist()) if t <= 0]
    future = [k for k, t in enumerate(offsets.tolist()) if t > 0]
    alpha = np.full(m, 1.0 / graph.n, np.float32)
    prev_exists = False
    for j, k in enumerate(past):
        if j > 0 and prev_exists:
            alpha = forward(alpha)
        row = rows[k]
        if row is not None:
            alpha *= emission(row)
        alpha /= alpha.sum()
        prev_exists = row is not None
    beta = np.ones(m, np.float32)
    for k in reversed(future):
        row = rows[k]
        if row is not None:
            beta = backward(beta * emission(row))
            beta /= beta.sum()
    post = alpha * beta
    post /= post.sum()
    keep = np.searchsorted(cols, cand)
    p = post[keep]
    b = int(np.argmax(p))
    rb = cand[b]
    near = (graph.chain_of[cols] == graph.chain_of[rb]) & (np.abs(cols - rb) <= params.uniqueness_radius)
    lsrc, ltgt = graph.links(cols[near])
    mass = float(post[near].sum())
    if len(ltgt):
        pos = np.minimum(np.searchsorted(cols, ltgt), m - 1)
        linked = np.unique(pos[(cols[pos] == ltgt)])
        linked = linked[~near[linked]]
        mass += float(post[linked].sum())
    cost = -np.log(np.maximum(p, np.float32(1e-30))).astype(np.float32)
    return SparseScores(cand, cost, b, min(mass, 1.0))


def score_window(rows: Sequence[Optional[QueryRow]], offsets: np.ndarray, params: SparseParams,
                 vectors: IndexVectors, graph: MapGraph, switch: float = 0.1,
                 track: Optional[np.ndarray] = None) -> Optional[SparseScores]:
    """Score the candidates of the query at offset 0 of its window.

    Args:
        rows: per window offset, the :class:`QueryRow` of frame ``i + t`` (None if missing).
        offsets: :func:`~panoplace.matching.sequence.window_offsets` of ``params``.
        track: extra candidate ranks (see :func:`candidate_ranks`).

    Returns:
        :class:`SparseScores`, or None when the window has no candidate.
    """
    cand = candidate_ranks([None if r is None else r.top for r in rows], offsets, params, graph, track)
    if len(cand) == 0:
        return None
    if isinstance(params, SeqSLAMParams):
        return _seqslam_window(rows, offsets, cand, params, vectors, graph)
    return _hmm_window(rows, offsets, cand, params, vectors, graph, switch)


def follow(s: SparseScores, params: SparseParams, graph: MapGraph, n_best: int = 3) -> np.ndarray:
    """Where the ``n_best`` best candidates of a query lead one frame later (at the mean speed,
    along their chains): the ``track`` candidates of the next query. int64 ``(<= n_best,)``."""
    best = s.ranks[top_k(s.costs[None], n_best)[0]]
    step = int(np.floor(0.5 * (params.vmin + params.vmax) + 0.5))
    nxt = best + step
    return np.sort(nxt[nxt < graph.hi(best)])


def calibrate(raw: np.ndarray, lengths: np.ndarray, params: SparseParams, n_frames: int) -> np.ndarray:
    """Calibrated confidence of the sparse matchers, as the dense ones
    (:func:`~panoplace.matching.sequence.seqslam.calibrate_ratio`,
    :func:`~panoplace.matching.sequence.hmm.calibrate_mass`). Shape: ``(Q,)`` → float32 ``(Q,)``."""
    if isinstance(params, SeqSLAMParams):
        return calibrate_ratio(raw, lengths, params.ds, params.mode)
    return calibrate_mass(raw, lengths, params.ds, params.mode, n_frames)


def sparse_match(index: PlaceIndex, queries: np.ndarray, params: SparseParams = HMMParams(),
                 graph: Optional[MapGraph] = None, k: int = 10, n_out: int = 10, switch: float = 0.1,
                 progress: bool = False) -> SequenceMatch:
    """Match an ordered query sequence against an index without a Q x N matrix.

    Args:
        index: the database index (flat or IVF-PQ).
        queries: ``(Q, D)`` or per-crop ``(Q, K, D)`` descriptors in traversal order.
        params: :class:`HMMParams` or :class:`SeqSLAMParams` (``ds``, ``mode`` and the rest as
            in the dense matchers).
        graph: the map's :class:`MapGraph` (default: the database is one traversal in index order).
        k: candidates the index returns per query frame.
        n_out: ranked candidates kept per query in the result (``candidates``).
        switch: probability per step that the HMM follows a link to another chain.

    Returns:
        :class:`SequenceMatch` with ``best``, ``score``, ``confidence`` ``(Q,)`` (database
        indices; ``-1`` where no candidate), ``candidates``/``candidate_costs`` ``(Q, n_out)``
        and no ``scores`` matrix.

    Shape:
        queries ``(Q, D)`` / ``(Q, K, D)``; outputs ``(Q,)`` and ``(Q, n_out)``.
    """
    if int(k) < 1 or int(n_out) < 1:
        raise InputError(f"k and n_out must be >= 1, got {k} and {n_out}")
    if not 0.0 <= switch < 1.0:
        raise InputError(f"switch must be in [0, 1), got {switch}")
    graph = MapGraph.chain(len(index)) if graph is None else graph
    if graph.n != len(index):
        raise InputError(f"the map graph has {graph.n} frames but the index {len(index)}")
    q = np.asarray(queries, dtype=np.float32)
    if q.ndim not in (2, 3) or len(q) == 0:
        raise InputError(f"queries must have shape (Q, D) or (Q, K, D) with Q >= 1, got {q.shape}")
    vectors = IndexVectors(index)
    sims, ids = index.search(q, int(k))
    nq = len(q)
    offsets = window_offsets(params.ds, params.mode)
    rows: Dict[int, QueryRow] = {}

    def row(i: int) -> Optional[QueryRow]:
        if i < 0 or i >= nq:
            return None
        if i not in rows:
            ok = ids[i] >= 0
            rows[i] = QueryRow(vectors.prepare(q[i]), graph.rank[ids[i][ok]], sims[i][ok])
        return rows[i]

    best = np.full(nq, -1, np.int64)
    score = np.full(nq, np.inf, np.float32)
    raw = np.zeros(nq, np.float32)
    cands = np.full((nq, int(n_out)), -1, np.int64)
    costs = np.full((nq, int(n_out)), np.inf, np.float32)
    lengths = np.zeros(nq, np.int64)
    track: Optional[np.ndarray] = None
    for i in tqdm(range(nq), desc="sparse sequence matching", disable=not progress, unit="query"):
        window: List[Optional[QueryRow]] = [row(i + t) for t in offsets.tolist()]
        for stale in [j for j in rows if j < i + int(offsets.min())]:
            del rows[stale]
        lengths[i] = sum(r is not None for r in window)
        s = score_window(window, offsets, params, vectors, graph, switch, track)
        if s is None:
            track = None
            continue
        track = follow(s, params, graph)
        best[i] = graph.order[s.ranks[s.best]]
        score[i] = s.costs[s.best]
        raw[i] = s.confidence
        o = top_k(s.costs[None], int(n_out))[0]
        cands[i, :len(o)] = graph.order[s.ranks[o]]
        costs[i, :len(o)] = s.costs[o]
    conf = calibrate(raw, lengths, params, graph.n) if params.calibrate else raw
    out_params = {**params.as_dict(), "sparse": True, "k": int(k), "switch": float(switch)}
    return SequenceMatch(best, score, conf, None, params.method, out_params, cands, costs)
