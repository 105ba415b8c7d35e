"""The numpy implementation of the sparse window (panoplace before the compiled kernels of
:mod:`panoplace.matching.sparse_kernels`), kept as the reference the compiled path is tested
against (``tests/matching/test_sparse_kernels.py``): per query row, cached differences and
z-scores in sorted arrays, transitions as index arrays and ``np.bincount`` passes.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Deque, List, Optional, Sequence, Tuple, Union

import numpy as np

from panoplace.index import PlaceIndex
from panoplace.matching.graph import MapGraph
from panoplace.matching.online import OnlineParams
from panoplace.matching.sequence import (
    HMMParams,
    SeqSLAMParams,
    enhance_bound,
    trajectory_shifts,
    transition_kernel,
    velocities,
    window_offsets,
)
from panoplace.matching.sparse import IndexVectors, SparseScores, follow

SparseParams = Union[HMMParams, SeqSLAMParams]


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


def reference_sparse_match(index: PlaceIndex, queries: np.ndarray, params: SparseParams, graph: MapGraph,
                           k: int = 10, n_out: int = 10, switch: float = 0.1
                           ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The old ``sparse_match`` loop: (best, score, raw confidence, candidates, candidate costs)."""
    vectors = IndexVectors(index)
    sims, ids = index.search(queries, int(k))
    nq = len(queries)
    offsets = window_offsets(params.ds, params.mode)
    rows = {}

    def row(i: int) -> Optional[QueryRow]:
        if i < 0 or i >= nq:
            return None
        if i not in rows:
            ok = ids[i] >= 0
            rows[i] = QueryRow(vectors.prepare(queries[i]), graph.rank[ids[i][ok]], sims[i][ok])
        return rows[i]

    best = np.full(nq, -1, np.int64)
    score = np.full(nq, np.inf, np.float32)
    raw = np.zeros(nq, np.float32)
    cands = np.full((nq, int(n_out)), -1, np.int64)
    costs = np.full((nq, int(n_out)), np.inf, np.float32)
    track: Optional[np.ndarray] = None
    for i in range(nq):
        window: List[Optional[QueryRow]] = [row(i + t) for t in offsets.tolist()]
        for stale in [j for j in rows if j < i + int(offsets.min())]:
            del rows[stale]
        s = score_window(window, offsets, params, vectors, graph, switch, track)
        if s is None:
            track = None
            continue
        track = follow(s, params, graph)
        best[i] = graph.order[s.ranks[s.best]]
        score[i] = s.costs[s.best]
        raw[i] = s.confidence
        o = np.argsort(s.costs, kind="stable")[:int(n_out)]
        cands[i, :len(o)] = graph.order[s.ranks[o]]
        costs[i, :len(o)] = s.costs[o]
    return best, score, raw, cands, costs


def reference_online(index: PlaceIndex, graph: MapGraph, params: OnlineParams, queries: np.ndarray
                     ) -> List[Tuple[int, float, np.ndarray, np.ndarray]]:
    """The old ``OnlineLocaliser.update`` loop from a reset (no relocalisation flag, no heading):
    per frame (frame, raw confidence, candidates, scores)."""
    vectors = IndexVectors(index)
    offsets = window_offsets(params.matcher.ds, "online")
    rows: Deque[QueryRow] = deque(maxlen=int(params.matcher.ds))
    track: Optional[np.ndarray] = None
    out = []
    for d in queries:
        vec = vectors.prepare(d)
        sims, ids = index.search(d[None], int(params.k))
        ok = ids[0] >= 0
        rows.append(QueryRow(vec, graph.rank[ids[0][ok]], sims[0][ok]))
        window = [None] * (len(offsets) - len(rows)) + list(rows)
        s = score_window(window, offsets, params.matcher, vectors, graph, params.switch, track)
        track = None if s is None else follow(s, params.matcher, graph)
        if s is None:
            out.append((-1, 0.0, np.zeros(0, np.int64), np.zeros(0, np.float32)))
            continue
        order = np.argsort(s.costs, kind="stable")[:int(params.n_out)]
        out.append((int(graph.order[s.ranks[s.best]]), float(s.confidence), graph.order[s.ranks[order]],
                    s.costs[order].astype(np.float32)))
    return out
