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
   method needs (the candidates' trajectories and contrast-enhancement windows), the way the
   index scores them (:class:`IndexVectors`: the stored vectors of a flat index; for IVF-PQ the
   frames' PQ codes, read from the index's own, possibly memory-mapped, inverted lists, against
   the query's table of sub-quantiser products), and cached per query frame.
3. **The dense formulas on those columns**: contrast enhancement over ``±enhance_window / 2``
   frames along the chain, SeqSLAM's straight trajectories, the HMM's windowed forward
   (-backward) pass. For SeqSLAM the cost of every candidate equals the dense cost exactly;
   the HMM keeps no mass outside its columns (the candidates and the frames that lead to them
   within the window), a close approximation of the dense posterior. Along links of the map
   graph the HMM may switch chains with probability ``switch`` per step.

Memory is O(Q · k · ds) for the candidates plus the cached differences of the ``ds`` frames
of one window; no Q x N matrix is ever built. Offline and online (causal) windows as in the
dense matchers; :mod:`panoplace.matching.online` runs the same computation frame by frame.
:class:`SparseWindow` holds a window's frames and cached values; the per-window work runs in
the compiled kernels of :mod:`panoplace.matching.sparse_kernels`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Optional, Tuple, Union

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
    window_lengths,
    window_offsets,
)
from panoplace.matching.sequence.hmm import calibrate_mass
from panoplace.matching.sequence.seqslam import calibrate_ratio
from panoplace.matching.sparse_kernels import (
    VALID_FIELDS,
    Codes,
    Source,
    claim_columns,
    coded_similarities,
    decode_codes,
    expand,
    hmm_window,
    seqslam_window,
    window_candidates,
)
from panoplace.topk import top_k

log = logging.getLogger(__name__)

__all__ = ["IndexVectors", "SparseScores", "SparseWindow", "calibrate", "follow", "sparse_match"]

SparseParams = Union[HMMParams, SeqSLAMParams]


def touched(shape: Tuple[int, ...], dtype: Any) -> np.ndarray:
    """A zero array whose memory is written now: ``np.zeros`` maps its pages lazily, and the
    first write to each (huge) page later costs a page fault, milliseconds when the kernel
    compacts memory for a huge page; the caches here are written frame by frame, so those
    faults would land on the per-frame latency instead of on construction."""
    out = np.empty(shape, dtype)
    out.fill(0)
    return out


class IndexVectors:
    """Similarities of a query to any database frames, the way the index scores them.

    flat: the stored vectors (no copy). IVF-PQ: from the PQ codes, as faiss scores them:
    ``<x, c> + sum_m T[m, code_m]`` with ``c`` the frame's coarse centroid and ``T`` the query's
    table of inner products with every sub-quantiser centroid (:meth:`lut`, once per query
    frame), so a database frame costs ``M`` table reads instead of a ``dim``-long product over its
    reconstruction. The codes are read from the index's own inverted lists (memory-mapped lists
    are viewed, not copied) through its direct map (built once, 8 bytes per frame). With the PCA
    pre-transform the query is projected first and the score is ``1 - |x - y|^2 / 2`` as
    :meth:`PlaceIndex.search`. :class:`SparseWindow` copies the code of each database frame it
    uses into its column table (:meth:`codes`). The index must not change while this object is in
    use (make a new one after adding to it).
    """

    def __init__(self, index: PlaceIndex) -> None:
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
            self.centroids = np.zeros((1, self.dim), np.float32)
            self.codebook = np.zeros((1, 1, 1), np.float32)
        else:
            inner: Any = raw
            if isinstance(faiss.downcast_index(raw), faiss.IndexPreTransform):
                pre: Any = faiss.downcast_index(raw)
                self.transform = pre
                inner = faiss.downcast_index(pre.index)
                self.l2 = True
            ivf: Any = faiss.downcast_index(faiss.extract_index_ivf(inner))
            if not isinstance(ivf, faiss.IndexIVFPQ):
                raise InputError(f"sparse matching needs a flat or IVF-PQ index, got {type(ivf).__name__}")
            self.inner = inner
            self.ivf = ivf
            self.dim = int(ivf.d)
            pq = ivf.pq
            self.nbits, self.code_size, self.by_residual = int(pq.nbits), int(ivf.code_size), bool(ivf.by_residual)
            self.codebook = faiss.vector_to_array(pq.centroids).reshape(pq.M, pq.ksub, pq.dsub).astype(np.float32)
            self.centroids = ivf.quantizer.reconstruct_n(0, ivf.nlist).astype(np.float32)
            self._map_codes()

    def _map_codes(self) -> None:
        """Views of the direct map and of every cell's codes (memory-mapped inverted lists: one
        view of the file's mapping; lists in memory: their codes copied once, cell by cell)."""
        ivf: Any = self.ivf  # SWIG objects: untyped attributes
        ivf.make_direct_map()
        self.dmap = faiss.rev_swig_ptr(ivf.direct_map.array.data(), self.n).view(np.int64)
        lists: Any = faiss.downcast_InvertedLists(ivf.invlists)
        nlist = int(ivf.nlist)
        sizes = np.array([lists.list_size(i) for i in range(nlist)], np.int64)
        if isinstance(lists, faiss.OnDiskInvertedLists):
            disk: Any = lists
            self.codes_raw = faiss.rev_swig_ptr(disk.ptr, int(disk.totsize))
            self.list_off = np.array([disk.lists.at(i).offset for i in range(nlist)], np.int64)
        else:
            parts = [faiss.rev_swig_ptr(lists.get_codes(i), int(sizes[i]) * self.code_size).copy() if sizes[i]
                     else np.zeros(0, np.uint8) for i in range(nlist)]
            self.codes_raw = np.concatenate(parts) if parts else np.zeros(0, np.uint8)
            self.list_off = np.concatenate([[0], np.cumsum(sizes * self.code_size)[:-1]]).astype(np.int64)

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

    def lut(self, q: np.ndarray) -> np.ndarray:
        """Inner products of a prepared query's sub-vectors with every sub-quantiser centroid.
        Shape: ``(dim,)`` → float32 ``(M, ksub)`` (flat indexes: ``(1, 1)`` zeros)."""
        if self.flat is not None:
            return np.zeros((1, 1), np.float32)
        m, _, dsub = self.codebook.shape
        return np.matmul(self.codebook, q.reshape(m, dsub, 1))[:, :, 0]

    def codes(self, ccode: np.ndarray, clist: np.ndarray, cnorm: np.ndarray) -> Codes:
        """Where :func:`~panoplace.matching.sparse_kernels.claim_columns` copies PQ codes from, into
        the given rows (:data:`~panoplace.matching.sparse_kernels.Codes`; flat indexes: nothing)."""
        if self.flat is not None:
            none = np.zeros(1, np.int64)
            return (False, none, np.zeros(1, np.uint8), none, 0, 0, False, self.centroids, self.codebook, False,
                    ccode, clist, cnorm)
        return (True, self.dmap, self.codes_raw, self.list_off, self.code_size, self.nbits, self.by_residual,
                self.centroids, self.codebook, self.l2, ccode, clist, cnorm)

    def code_rows(self, n: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Empty rows for the PQ codes of ``n`` frames: (codes uint16 ``(n, M)``, cell int32
        ``(n,)``, ``|y|^2`` float32 ``(n,)``), written now (no page faults later)."""
        return (touched((n, self.codebook.shape[0]), np.uint16), np.full(n, -1, np.int32),
                touched((n,), np.float32))

    def source(self, ccode: np.ndarray, clist: np.ndarray, cnorm: np.ndarray) -> Source:
        """What the compiled kernels read (:data:`~panoplace.matching.sparse_kernels.Source`), with
        the codes in the given rows."""
        vecs = self.flat if self.flat is not None else np.zeros((1, self.dim), np.float32)
        return (vecs, self.flat is not None, self.l2, ccode, clist, cnorm, self.centroids)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """Database vectors of ``ids`` in the compared space (IVF-PQ: the reconstructions).
        Shape: ``(m,)`` → ``(m, dim)``."""
        ids = np.asarray(ids, dtype=np.int64)
        if self.flat is not None:
            return self.flat[ids]
        return self.inner.reconstruct_batch(ids).astype(np.float32)

    def similarities(self, q: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Similarity of a prepared query to database ``ids``. Shape: ``(dim,)``, ``(m,)`` → ``(m,)``."""
        ids = np.asarray(ids, dtype=np.int64)
        if self.flat is not None:
            v = self.flat[ids]
            if self.l2:
                d = v - q[None, :]
                return (1.0 - 0.5 * np.einsum("ij,ij->i", d, d)).astype(np.float32)
            return (v @ q).astype(np.float32)
        q = np.ascontiguousarray(q, np.float32)
        ccode, clist, cnorm = self.code_rows(len(ids))
        decode_codes(ids, self.codes(ccode, clist, cnorm))
        return coded_similarities(q, np.float32(np.dot(q, q)), self.lut(q)[None], np.arange(len(ids)), ccode,
                                  clist, cnorm, self.centroids, self.l2)


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


def _spread(params: SparseParams, offsets: np.ndarray) -> int:
    """Frames ``w`` that the candidates are widened by to cover speeds vmin..vmax."""
    t = int(np.abs(offsets).max()) if len(offsets) else 0
    return int(math.ceil(t * (params.vmax - params.vmin) / 2.0)) + 1


class SparseWindow:
    """The query frames of a sliding window and everything computed for them, for
    :meth:`score` (the compiled kernels of :mod:`panoplace.matching.sparse_kernels`).

    Frames are numbered by the caller (``serial``, increasing; query index offline, a frame
    counter online); frame ``s`` lives at ring position ``s % R`` (``R`` = the window length).
    A column table keeps, per database rank in use, each row's difference, z-score and HMM
    emission and the serials of the rows they hold for, so that consecutive windows compute only
    what is new (the newest row, and every row at ranks new to the window). Memory:
    ``slots x (12 R + 2 M + 64)`` bytes with the PQ codes of IVF-PQ maps (about 6 MB at ``ds`` 20
    and ``M`` 32; the table grows when a window needs more than half of it) plus 8 bytes per
    database frame.

    Args:
        vectors: the index's :class:`IndexVectors`.
        graph: the map's :class:`MapGraph`.
        params: :class:`HMMParams` or :class:`SeqSLAMParams` (``ds`` and ``mode`` give the window).
        switch: probability per step that the HMM follows a link of the graph.
        k: candidates per frame (the width of the rows' top-k table).
    """

    def __init__(self, vectors: IndexVectors, graph: MapGraph, params: SparseParams, switch: float = 0.1,
                 k: int = 10, slots: int = 1 << 14) -> None:
        self.vectors, self.graph, self.params, self.switch = vectors, graph, params, float(switch)
        self.offsets = window_offsets(params.ds, params.mode)
        size = len(self.offsets)
        self.rvec = np.zeros((size, vectors.dim), np.float32)
        self.rlut = np.zeros((size,) + vectors.lut(self.rvec[0]).shape, np.float32)
        self.rnorm = np.zeros(size, np.float32)
        self.rcoarse = np.zeros((size, len(vectors.centroids)), np.float32)
        self.rcser = np.full((size, len(vectors.centroids)), -1, np.int64)
        self.rserial = np.full(size, -1, np.int64)
        self.rtop = np.full((size, max(1, int(k))), -1, np.int64)
        v = 0.5 * (params.vmin + params.vmax)
        x = self.offsets.astype(np.float64) * v
        self.centre_shift = (np.sign(x) * np.floor(np.abs(x) + 0.5 + 1e-9)).astype(np.int64)
        self.spread = _spread(params, self.offsets)
        self.half = int(params.enhance_window) // 2
        self.graph_arrays = (graph.order, graph.chain_start, graph.chain_of, graph.link_ptr,
                             graph.link_idx)
        if isinstance(params, HMMParams):
            jumps, probs = transition_kernel(params.vmin, params.vmax, params.jump_std)
            t = self.offsets.tolist()
            self.reach = (min(0, int(min(o * jumps.max() if o < 0 else o * jumps.min() for o in t))),
                          max(0, int(max(o * jumps.min() if o < 0 else o * jumps.max() for o in t))))
            self.jumps = jumps.astype(np.int64)
            self.jw = np.array([p * (1.0 - params.teleport) for p in probs.tolist()], np.float64)
            self.past = np.array([j for j, o in enumerate(t) if o <= 0], np.int64)
            self.future = np.array([j for j, o in enumerate(t) if o > 0], np.int64)
        else:
            self.shifts = trajectory_shifts(self.offsets, velocities(params.vmin, params.vmax, params.n_velocities))
            self.reach = (int(self.shifts.min()), int(self.shifts.max()))
        self._rchg = np.full(size, -1, np.int64)  # call in which a row arrived (-1: new) or its least z moved
        self._rzmin = np.zeros(size, np.float32)
        self._window = (self.rserial, self.rvec, self._rchg, self._rzmin, self.rlut, self.rnorm, self.rcoarse,
                        self.rcser)
        self._slot_of = np.full(graph.n, -1, np.int32)
        self._colpos = np.full(graph.n, -1, np.int32)
        self._allocate(slots)
        self._E = touched((1 << 12, size), np.float32)  # emissions scratch, grown with the columns
        self._stamp = 0

    def _allocate(self, slots: int) -> None:
        size = len(self.offsets)
        self._slot_of[:] = -1
        self._slot_rank = np.full(slots, -1, np.int64)
        self._used = np.full(slots, -1, np.int64)
        self._cursor = np.zeros(1, np.int64)
        self._diff = touched((slots, size), np.float32)
        self._zval = touched((slots, size), np.float32)
        self._eval = touched((slots, size), np.float32)
        self._valid = np.full((slots, VALID_FIELDS), -1, np.int64)
        ccode, clist, cnorm = self.vectors.code_rows(slots)
        # what the kernels read, as tuples made once per allocation (not per frame)
        self._codes = self.vectors.codes(ccode, clist, cnorm)
        self._source = self.vectors.source(ccode, clist, cnorm)
        self._table = (self._slot_of, self._diff, self._zval, self._eval, self._valid)

    def add(self, serial: int, vec: np.ndarray, top: np.ndarray) -> None:
        """Put frame ``serial`` in the window: its prepared vector (:meth:`IndexVectors.prepare`,
        ``(dim,)``) and top-k candidate ranks (``(<= k,)``, best first)."""
        p = int(serial) % len(self.rserial)
        self.rvec[p] = vec
        self.rlut[p] = self.vectors.lut(self.rvec[p])
        self.rnorm[p] = np.dot(self.rvec[p], self.rvec[p])
        self.rtop[p] = -1
        n = min(len(top), self.rtop.shape[1])
        self.rtop[p, :n] = top[:n]
        self.rserial[p] = int(serial)
        self._rchg[p] = -1

    def clear(self) -> None:
        """Forget every frame (serials must keep increasing: cached values stay stamped)."""
        self.rserial[:] = -1

    def rows(self, i: int) -> np.ndarray:
        """Ring position of each window offset of query ``i`` (``-1``: frame not in the window)."""
        j = i + self.offsets
        p = j % len(self.rserial)
        return np.where((j >= 0) & (self.rserial[p] == j), p, -1).astype(np.int64)

    def score(self, i: int, track: Optional[np.ndarray] = None) -> Optional[SparseScores]:
        """Score the candidates of query ``i`` (its window's frames must have been added).

        Args:
            track: extra candidate ranks: where the previous query's best matches lead (see
                :func:`follow`), so that a sequence already found is kept through stretches where
                no frame of the window retrieves its place.

        Returns:
            :class:`SparseScores`, or None when the window has no candidate. The candidates are
            each top-k rank ``c`` of frame ``i + t`` moved to ``c - round(v t)`` along its chain
            (``v`` the mean speed) and widened by ``±w`` frames (see the module docstring).
        """
        g = self.graph_arrays
        rows = self.rows(i)
        tr = np.zeros(0, np.int64) if track is None else np.asarray(track, np.int64)
        cand = window_candidates(self.rtop, rows, self.centre_shift, tr, self.spread, g[1], g[2])
        if len(cand) == 0:
            return None
        ext = expand(cand, self.reach[0] - self.half, self.reach[1] + self.half, g[1], g[2])
        if 2 * len(ext) >= len(self._slot_rank):
            self._allocate(1 << int(np.ceil(np.log2(2 * len(ext) + 1))))
        self._stamp += 1
        claim_columns(ext, self._stamp, self._slot_of, self._slot_rank, self._used, self._cursor, self._valid, g[0],
                      self._codes)
        table, window, source = self._table, self._window, self._source
        p = self.params
        cols = expand(cand, self.reach[0], self.reach[1], g[1], g[2])
        if isinstance(p, SeqSLAMParams):
            cost, b, conf = seqslam_window(cand, cols, ext, rows, self.shifts,
                                           np.float32(enhance_bound(p.enhance_window)), self.half,
                                           int(p.uniqueness_radius), g, table, window, source)
        else:
            if len(cols) > len(self._E):
                self._E = touched((1 << int(np.ceil(np.log2(len(cols)))), len(self.offsets)), np.float32)
            cost, b, conf = hmm_window(cand, cols, ext, rows, self.past, self.future, self.jumps, self.jw,
                                       self.switch, np.float32(p.teleport / self.graph.n), np.float32(-1.0 / p.sigma),
                                       self.half, int(p.uniqueness_radius), self.graph.n, g, table, window, source,
                                       self._stamp, self._E, self._colpos)
        return SparseScores(cand, cost, int(b), float(conf))


def follow(s: SparseScores, params: SparseParams, graph: MapGraph, n_best: int = 3,
           ranked: Optional[np.ndarray] = None) -> np.ndarray:
    """Where the ``n_best`` best candidates of a query lead one frame later (at the mean speed,
    along their chains): the ``track`` candidates of the next query. int64 ``(<= n_best,)``.
    ``ranked``: ``top_k`` of ``s.costs`` already computed (at least ``n_best`` long)."""
    order = top_k(s.costs[None], n_best)[0] if ranked is None else ranked[:n_best]
    best = s.ranks[order]
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
    window = SparseWindow(vectors, graph, params, switch, int(k))
    last = int(window.offsets.max())
    added = 0

    best = np.full(nq, -1, np.int64)
    score = np.full(nq, np.inf, np.float32)
    raw = np.zeros(nq, np.float32)
    cands = np.full((nq, int(n_out)), -1, np.int64)
    costs = np.full((nq, int(n_out)), np.inf, np.float32)
    lengths = window_lengths(nq, window.offsets)
    track: Optional[np.ndarray] = None
    for i in tqdm(range(nq), desc="sparse sequence matching", disable=not progress, unit="query"):
        while added < min(nq, i + last + 1):
            ok = ids[added] >= 0
            window.add(added, vectors.prepare(q[added]), graph.rank[ids[added][ok]])
            added += 1
        s = window.score(i, track)
        if s is None:
            track = None
            continue
        ranked = top_k(s.costs[None], max(int(n_out), 3))[0]
        track = follow(s, params, graph, ranked=ranked)
        best[i] = graph.order[s.ranks[s.best]]
        score[i] = s.costs[s.best]
        raw[i] = s.confidence
        o = ranked[:int(n_out)]
        cands[i, :len(o)] = graph.order[s.ranks[o]]
        costs[i, :len(o)] = s.costs[o]
    conf = calibrate(raw, lengths, params, graph.n) if params.calibrate else raw
    out_params = {**params.as_dict(), "sparse": True, "k": int(k), "switch": float(switch)}
    return SequenceMatch(best, score, conf, None, params.method, out_params, cands, costs)
