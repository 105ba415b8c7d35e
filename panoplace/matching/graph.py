"""Which database frames follow which: the map as chains of frames plus links between chains.

Sequence matchers walk along the database: from frame j a vehicle reaches the frames after j.
With one traversal recorded in order that is ``j + 1``; a real map holds several traversals
(drives on different days, in different directions), drives cut by gaps, and routes that
branch. :class:`MapGraph` describes this with

- **chains**: runs of frames in driving order (one traversal, cut where it has a gap). Each
  chain occupies a contiguous range of *ranks*; ``order[rank]`` is the database index, so the
  matchers work on ranks where a step along a chain is ``rank + 1`` and a chain's ends act as
  the ends of the database;
- **links**: from a frame to frames of other chains at the same place heading the same way
  (another traversal of the street, the first frame of a branch at a junction), along which
  the HMM may switch chains.

>>> g = MapGraph.chain(5)
>>> g.order.tolist(), g.n_chains
([0, 1, 2, 3, 4], 1)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
from scipy.spatial import cKDTree

from panoplace.errors import InputError

log = logging.getLogger(__name__)

__all__ = ["MapGraph"]


@dataclass(frozen=True)
class MapGraph:
    """Chains of database frames and links between them (see the module docstring).

    Attributes:
        order: int64 ``(N,)`` database index of each rank; each chain is a contiguous run.
        rank: int64 ``(N,)`` rank of each database index (inverse of ``order``).
        chain_start: int64 ``(C + 1,)`` first rank of each chain, then ``N``.
        chain_of: int32 ``(N,)`` chain of each rank.
        link_ptr: int64 ``(N + 1,)`` and link_idx: int64 ``(L,)``: ranks linked from each rank
            (CSR: the links of rank r are ``link_idx[link_ptr[r]:link_ptr[r + 1]]``).
    """

    order: np.ndarray
    rank: np.ndarray
    chain_start: np.ndarray
    chain_of: np.ndarray
    link_ptr: np.ndarray
    link_idx: np.ndarray

    @property
    def n(self) -> int:
        """Database frames N."""
        return int(len(self.order))

    @property
    def n_chains(self) -> int:
        return int(len(self.chain_start) - 1)

    @property
    def n_links(self) -> int:
        return int(len(self.link_idx))

    def lo(self, ranks: np.ndarray) -> np.ndarray:
        """First rank of the chain of each rank. Shape: ``(m,)`` → int64 ``(m,)``."""
        return self.chain_start[self.chain_of[ranks]]

    def hi(self, ranks: np.ndarray) -> np.ndarray:
        """One past the last rank of the chain of each rank. Shape: ``(m,)`` → int64 ``(m,)``."""
        return self.chain_start[self.chain_of[ranks] + 1]

    def links(self, ranks: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Links of ``ranks``: (source positions into ``ranks`` int64 ``(L,)``, target ranks ``(L,)``)."""
        ranks = np.asarray(ranks, dtype=np.int64)
        a = self.link_ptr[ranks]
        cnt = self.link_ptr[ranks + 1] - a
        if cnt.sum() == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        src = np.repeat(np.arange(len(ranks)), cnt)
        starts = np.repeat(a - np.concatenate([[0], np.cumsum(cnt)[:-1]]), cnt)
        return src, self.link_idx[np.arange(int(cnt.sum())) + starts]

    def nbytes(self) -> int:
        """Memory of the graph's arrays in bytes."""
        return int(sum(a.nbytes for a in (self.order, self.rank, self.chain_start, self.chain_of,
                                          self.link_ptr, self.link_idx)))

    @classmethod
    def chain(cls, n: int) -> "MapGraph":
        """One traversal recorded in order: frame j is followed by frame j + 1."""
        if n < 1:
            raise InputError(f"a map graph needs at least one frame, got {n}")
        order = np.arange(int(n), dtype=np.int64)
        return cls(order, order.copy(), np.array([0, n], np.int64), np.zeros(n, np.int32),
                   np.zeros(n + 1, np.int64), np.zeros(0, np.int64))

    @classmethod
    def from_sequences(cls, sequence: Sequence[object], position: Optional[np.ndarray] = None,
                       xy: Optional[np.ndarray] = None, gap: Optional[float] = None,
                       link_radius: Optional[float] = None, max_links: int = 8) -> "MapGraph":
        """Build the graph from each frame's traversal id, order and position.

        Args:
            sequence: ``(N,)`` traversal (sequence) id of each database frame.
            position: ``(N,)`` order of the frames within their traversal (timestamps, frame
                numbers); default: database order.
            xy: ``(N, 2)`` metric positions. With them, a traversal is cut into chains where two
                consecutive frames lie more than ``gap`` metres apart (default: 5 x the median
                step), and frames are linked to frames of other chains within ``link_radius``
                metres (default: 2 x the median step) that head the same way (travel directions
                less than 90 degrees apart), at most ``max_links`` per frame, nearest first.

        Shape:
            sequence ``(N,)``, position ``(N,)``, xy ``(N, 2)``.
        """
        seq = np.asarray(sequence)
        n = len(seq)
        if n < 1:
            raise InputError("a map graph needs at least one frame")
        pos = np.arange(n, dtype=np.float64) if position is None else np.asarray(position, dtype=np.float64)
        if pos.shape != (n,):
            raise InputError(f"position must have shape ({n},), got {pos.shape}")
        _, seq_code = np.unique(seq, return_inverse=True)
        order = np.lexsort((np.arange(n), pos, seq_code)).astype(np.int64)
        brk = np.zeros(n, bool)
        brk[0] = True
        brk[1:] = seq_code[order[1:]] != seq_code[order[:-1]]
        pts = None
        if xy is not None:
            pts = np.asarray(xy, dtype=np.float64)
            if pts.shape != (n, 2):
                raise InputError(f"xy must have shape ({n}, 2), got {pts.shape}")
            step = np.linalg.norm(np.diff(pts[order], axis=0), axis=1)
            same = ~brk[1:]
            typical = float(np.median(step[same])) if same.any() else 1.0
            typical = typical if typical > 0 else 1.0
            limit = 5.0 * typical if gap is None else float(gap)
            brk[1:] |= step > limit
            link_radius = 2.0 * typical if link_radius is None else float(link_radius)
        chain_start = np.concatenate([np.flatnonzero(brk), [n]]).astype(np.int64)
        chain_of = (np.cumsum(brk) - 1).astype(np.int32)
        rank = np.empty(n, np.int64)
        rank[order] = np.arange(n)
        link_ptr = np.zeros(n + 1, np.int64)
        link_idx = np.zeros(0, np.int64)
        if pts is not None and link_radius and link_radius > 0 and len(chain_start) > 2:
            link_ptr, link_idx = _links(pts[order], chain_start, chain_of, float(link_radius), int(max_links))
        log.info("map graph: %d frames in %d chains, %d links", n, len(chain_start) - 1, len(link_idx))
        return cls(order, rank, chain_start, chain_of, link_ptr, link_idx)


def _links(p: np.ndarray, chain_start: np.ndarray, chain_of: np.ndarray, radius: float,
           max_links: int) -> Tuple[np.ndarray, np.ndarray]:
    """CSR links between ranks of different chains within ``radius`` heading the same way.

    Shape:
        p: ``(N, 2)`` positions in rank order.
    """
    n = len(p)
    lo = chain_start[chain_of]
    hi = chain_start[chain_of + 1]
    r = np.arange(n)
    nxt = np.minimum(r + 1, hi - 1)
    prv = np.maximum(r - 1, lo)
    direction = p[nxt] - p[prv]
    direction /= np.maximum(np.linalg.norm(direction, axis=1, keepdims=True), 1e-12)
    k = min(n, max_links * 4 + 1)
    tree = cKDTree(p)
    src_all, dst_all = [], []
    step = 200_000
    for a in range(0, n, step):
        dist, idx = tree.query(p[a:a + step], k=k, distance_upper_bound=radius)
        rows = np.arange(a, min(n, a + step))[:, None]
        ok = (idx < n) & np.isfinite(dist)
        idx = np.where(ok, idx, 0)
        ok &= chain_of[idx] != chain_of[rows]
        ok &= (direction[idx] * direction[rows]).sum(axis=2) > 0
        # keep the nearest frame of each other chain, at most max_links per frame
        chain = np.where(ok, chain_of[idx], -1)
        first = np.ones_like(ok)
        for j in range(1, k):
            first[:, j] = ~(chain[:, :j] == chain[:, j:j + 1]).any(axis=1)
        ok &= first
        ok &= np.cumsum(ok, axis=1) <= max_links
        rr, cc = np.nonzero(ok)
        src_all.append(rows[rr, 0])
        dst_all.append(idx[rr, cc])
    src = np.concatenate(src_all).astype(np.int64)
    dst = np.concatenate(dst_all).astype(np.int64)
    order = np.lexsort((dst, src))
    src, dst = src[order], dst[order]
    ptr = np.zeros(n + 1, np.int64)
    np.add.at(ptr, src + 1, 1)
    return np.cumsum(ptr), dst
