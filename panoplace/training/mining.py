"""Weakly supervised triplet mining from GPS (NetVLAD, arXiv:1511.07247, section 4).

Only positions are known, so for each training query:

- potential positives: database images within ``pos_radius`` metres (10 m); the positive used
  is the one *nearest in descriptor space* under the current model;
- negatives: database images farther than ``neg_radius`` metres (25 m). ``n_neg_sample``
  (1,000) of them are drawn at random, joined with the query's hard negatives remembered from
  the last time it was mined, and the ``n_neg`` (10) nearest in descriptor space among those
  that *violate the margin* (``d(q, n) < d(q, p) + margin``, squared distances) are kept.
  A query without any violating negative gives no triplet this time (it is already solved).

Descriptor distances come from a :class:`DescriptorCache` of database descriptors, refreshed
by the trainer every so many queries, held in memory or in an HDF5 file for sets too large
for memory. Mining is vectorised over a chunk of queries: one ``(chunk, N)`` distance matrix,
one random-key matrix for sampling without replacement, and array selections; there is no
Python loop over negatives.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Union

import h5py
import numpy as np
from scipy.spatial import cKDTree

from panoplace.errors import InputError
from panoplace.topk import top_k

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
CACHE_KINDS = ("auto", "memory", "hdf5")
DEFAULT_MEMORY_LIMIT = 2 << 30  # bytes of database descriptors kept in memory by "auto"


class DescriptorCache:
    """Database descriptors for mining: float32 ``(N, D)`` in memory or in an HDF5 file.

    Args:
        n, dim: size of the cache.
        path: HDF5 file to hold the descriptors (None = in memory). The file is the cache's own
            scratch space: it is overwritten and deleted by :meth:`close`.
        block_rows: rows read at a time when computing distances from the HDF5 file.
    """

    def __init__(self, n: int, dim: int, path: Optional[PathLike] = None, block_rows: int = 8192) -> None:
        if n < 1 or dim < 1:
            raise InputError(f"a descriptor cache needs n >= 1 and dim >= 1, got {n} and {dim}")
        self.n, self.dim = int(n), int(dim)
        self.block_rows = max(1, int(block_rows))
        self.path = Path(path) if path is not None else None
        self._file = None
        if self.path is None:
            self._data = np.zeros((self.n, self.dim), dtype=np.float32)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = h5py.File(self.path, "w")
            self._data = self._file.create_dataset("descriptors", shape=(self.n, self.dim), dtype=np.float32,
                                                   chunks=(min(self.n, 256), self.dim))
        self._sq_norms = np.zeros(self.n, dtype=np.float32)

    @property
    def in_memory(self) -> bool:
        return self.path is None

    def write(self, start: int, block: np.ndarray) -> None:
        """Store rows ``start .. start + len(block)``. Shape: block ``(n, D)``."""
        block = np.asarray(block, dtype=np.float32)
        if block.ndim != 2 or block.shape[1] != self.dim or not 0 <= start <= self.n - len(block):
            raise InputError(f"cache block of shape {block.shape} at row {start} does not fit a "
                             f"({self.n}, {self.dim}) cache")
        self._data[start:start + len(block)] = block
        self._sq_norms[start:start + len(block)] = np.einsum("ij,ij->i", block, block)

    def read(self, start: int = 0, stop: Optional[int] = None) -> np.ndarray:
        """Rows ``start:stop`` as an array. Shape: ``(stop - start, D)``."""
        return np.asarray(self._data[start:self.n if stop is None else stop], dtype=np.float32)

    def sq_distances(self, queries: np.ndarray) -> np.ndarray:
        """Squared Euclidean distances of ``queries`` to every cached row, block by block.

        Shape:
            - queries: ``(n_q, D)``.
            - Output: ``(n_q, N)`` float32, >= 0.
        """
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise InputError(f"query descriptors must be (n, {self.dim}), got {q.shape}")
        out = np.empty((len(q), self.n), dtype=np.float32)
        qn = np.einsum("ij,ij->i", q, q)[:, None]
        step = self.n if self.in_memory else self.block_rows
        for s in range(0, self.n, step):
            x = self.read(s, min(s + step, self.n))
            out[:, s:s + len(x)] = qn + self._sq_norms[None, s:s + len(x)] - 2.0 * (q @ x.T)
        np.maximum(out, 0.0, out=out)
        return out

    def close(self) -> None:
        """Release the memory or close and delete the HDF5 file."""
        if self._file is not None:
            self._file.close()
            self._file = None
            if self.path is not None and self.path.exists():
                self.path.unlink()
        self._data = np.zeros((0, self.dim), dtype=np.float32)

    def __enter__(self) -> "DescriptorCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_cache(kind: str, n: int, dim: int, folder: Optional[PathLike] = None,
               memory_limit: int = DEFAULT_MEMORY_LIMIT) -> DescriptorCache:
    """A cache of ``kind`` ``memory``, ``hdf5`` (in ``folder``) or ``auto`` (memory up to
    ``memory_limit`` bytes of descriptors, else HDF5)."""
    if kind not in CACHE_KINDS:
        raise InputError(f"unknown cache {kind!r}; choose one of {list(CACHE_KINDS)}")
    if kind == "auto":
        kind = "memory" if n * dim * 4 <= memory_limit or folder is None else "hdf5"
    if kind == "memory":
        return DescriptorCache(n, dim)
    if folder is None:
        raise InputError("an HDF5 mining cache needs a folder to write it in")
    return DescriptorCache(n, dim, Path(folder) / "mining_cache.h5")


@dataclass
class Triplets:
    """Mined training tuples.

    query: ``(T,)`` int64 query indices. positive: ``(T,)`` int64 database indices.
    negatives: ``(T, M)`` int64 database indices, hardest first, ``-1`` = padding.
    solved: queries of the chunk left out because no sampled negative violated the margin.
    """

    query: np.ndarray
    positive: np.ndarray
    negatives: np.ndarray
    solved: int = 0

    def __len__(self) -> int:
        return int(self.query.shape[0])

    @property
    def n_triplets(self) -> int:
        """Number of (query, positive, negative) triplets (real negatives)."""
        return int((self.negatives >= 0).sum())


def _scatter_mask(lists: List[np.ndarray], rows: np.ndarray, n_cols: int) -> np.ndarray:
    """Bool ``(len(rows), n_cols)`` with True at ``lists[rows[i]]`` in row i."""
    counts = np.fromiter((len(lists[r]) for r in rows), dtype=np.int64, count=len(rows))
    mask = np.zeros((len(rows), n_cols), dtype=bool)
    if counts.sum():
        mask[np.repeat(np.arange(len(rows)), counts), np.concatenate([lists[r] for r in rows])] = True
    return mask


class TripletMiner:
    """Positives/negatives from positions and hard-negative mining from cached descriptors.

    Args:
        db_xy: ``(N, 2)`` database positions (metres). query_xy: ``(Q, 2)`` query positions.
        pos_radius: potential positives lie within this distance (inclusive).
        neg_radius: negatives lie strictly farther than this.
        n_neg_sample: negatives drawn at random per query and mining round.
        n_neg: hard negatives kept per query.
        margin: the loss margin (squared-distance units).
        same_frame: ``(Q,)`` database index of the *same image* as each query (when queries and
            database share images), ``-1`` for none; such a frame is never its own positive.

    Attributes:
        positives: per query, sorted database indices within ``pos_radius``.
        trainable: ``(Q_t,)`` indices of queries with a potential positive and a negative.
        hard_negatives: ``(Q, n_neg)`` int64, the last hard negatives per query (``-1`` = none).
    """

    def __init__(self, db_xy: np.ndarray, query_xy: np.ndarray, pos_radius: float = 10.0,
                 neg_radius: float = 25.0, n_neg_sample: int = 1000, n_neg: int = 10,
                 margin: float = 0.1, same_frame: Optional[np.ndarray] = None) -> None:
        db = np.asarray(db_xy, dtype=np.float64)
        q = np.asarray(query_xy, dtype=np.float64)
        if db.ndim != 2 or q.ndim != 2 or db.shape[1] != 2 or q.shape[1] != 2 or len(db) == 0 or len(q) == 0:
            raise InputError(f"mining needs database (N, 2) and query (Q, 2) positions, got {db.shape} and {q.shape}")
        if not (np.isfinite(db).all() and np.isfinite(q).all()):
            raise InputError("mining needs finite positions for every database and query image")
        if not 0 < pos_radius <= neg_radius:
            raise InputError(f"need 0 < pos_radius <= neg_radius, got {pos_radius} and {neg_radius}")
        if n_neg < 1 or n_neg_sample < 1:
            raise InputError(f"need n_neg >= 1 and n_neg_sample >= 1, got {n_neg} and {n_neg_sample}")
        if not margin >= 0:
            raise InputError(f"margin must be >= 0, got {margin}")
        self.n_db, self.n_queries = len(db), len(q)
        self.pos_radius, self.neg_radius = float(pos_radius), float(neg_radius)
        self.n_neg_sample, self.n_neg, self.margin = int(n_neg_sample), int(n_neg), float(margin)
        same = (np.full(len(q), -1, dtype=np.int64) if same_frame is None
                else np.asarray(same_frame, dtype=np.int64).reshape(-1))
        if same.shape != (len(q),):
            raise InputError(f"same_frame must have one entry per query ({len(q)}), got {same.shape}")
        tree = cKDTree(db)
        near = tree.query_ball_point(q, r=self.neg_radius)
        pos = tree.query_ball_point(q, r=self.pos_radius)
        self.near: List[np.ndarray] = [np.asarray(sorted(set(n) | ({s} if s >= 0 else set())), dtype=np.int64)
                                       for n, s in zip(near, same)]
        self.positives: List[np.ndarray] = [np.asarray(sorted(set(p) - {s}), dtype=np.int64)
                                            for p, s in zip(pos, same)]
        n_pos = np.fromiter((len(p) for p in self.positives), dtype=np.int64, count=len(q))
        n_near = np.fromiter((len(n) for n in self.near), dtype=np.int64, count=len(q))
        self.trainable = np.flatnonzero((n_pos > 0) & (n_near < self.n_db))
        self.hard_negatives = np.full((len(q), self.n_neg), -1, dtype=np.int64)
        log.info("mining: %d of %d queries have a positive within %g m and a negative beyond %g m",
                 len(self.trainable), len(q), self.pos_radius, self.neg_radius)

    def negatives_mask(self, rows: np.ndarray) -> np.ndarray:
        """True where a database image is a negative (beyond ``neg_radius``) of query ``rows[i]``.

        Shape: rows ``(n,)`` -> ``(n, N)`` bool.
        """
        return ~_scatter_mask(self.near, np.asarray(rows, dtype=np.int64), self.n_db)

    def positives_mask(self, rows: np.ndarray) -> np.ndarray:
        """True at the potential positives of query ``rows[i]``. Shape: ``(n,)`` -> ``(n, N)`` bool."""
        return _scatter_mask(self.positives, np.asarray(rows, dtype=np.int64), self.n_db)

    def mine(self, queries: np.ndarray, query_desc: np.ndarray, cache: DescriptorCache,
             rng: np.random.Generator, max_elements: int = 1 << 23) -> Triplets:
        """Mine tuples for ``queries`` with the current descriptors.

        Args:
            queries: ``(n,)`` query indices (queries without a positive are skipped).
            query_desc: ``(n, D)`` current descriptors of those queries.
            cache: current database descriptors ``(N, D)``.
            rng: draws the random negatives.
            max_elements: bound on ``chunk * N`` for the per-chunk matrices.

        Returns:
            :class:`Triplets` for the queries that have at least one margin-violating negative;
            their hard negatives are remembered for the next round.
        """
        queries = np.asarray(queries, dtype=np.int64).reshape(-1)
        query_desc = np.asarray(query_desc, dtype=np.float32)
        if query_desc.ndim != 2 or len(query_desc) != len(queries):
            raise InputError(f"need one descriptor per query: {len(queries)} queries, descriptors {query_desc.shape}")
        if cache.n != self.n_db:
            raise InputError(f"the cache holds {cache.n} database descriptors, the miner expects {self.n_db}")
        if len(queries) and (queries.min() < 0 or queries.max() >= self.n_queries):
            raise InputError(f"query indices must lie in [0, {self.n_queries})")
        ok = np.isin(queries, self.trainable)
        queries, query_desc = queries[ok], query_desc[ok]
        chunk = max(1, min(len(queries), int(max_elements // max(self.n_db, 1)))) if len(queries) else 1
        out_q, out_p, out_n, solved = [], [], [], 0
        for s in range(0, len(queries), chunk):
            q, p, n, k = self._mine_chunk(queries[s:s + chunk], query_desc[s:s + chunk], cache, rng)
            out_q.append(q)
            out_p.append(p)
            out_n.append(n)
            solved += k
        if not out_q:
            empty = np.zeros(0, dtype=np.int64)
            return Triplets(empty, empty, np.zeros((0, self.n_neg), dtype=np.int64), 0)
        return Triplets(np.concatenate(out_q), np.concatenate(out_p), np.concatenate(out_n), solved)

    def _mine_chunk(self, rows: np.ndarray, desc: np.ndarray, cache: DescriptorCache,
                    rng: np.random.Generator) -> tuple:
        n_db, m = self.n_db, self.n_neg
        dist = cache.sq_distances(desc)  # (r, N)
        # best positive: the potential positive nearest in descriptor space
        d_pos_all = np.where(self.positives_mask(rows), dist, np.inf)
        pos = d_pos_all.argmin(axis=1)
        d_pos = d_pos_all[np.arange(len(rows)), pos]  # (r,)
        # negatives: a uniform sample without replacement (smallest random keys) + the hard cache
        is_neg = self.negatives_mask(rows)  # (r, N)
        keys = np.where(is_neg, rng.random(dist.shape), np.inf)
        s = min(self.n_neg_sample, n_db)
        sample = (np.argpartition(keys, s - 1, axis=1)[:, :s] if s < n_db
                  else np.broadcast_to(np.arange(n_db), (len(rows), n_db)).copy())
        sample[~np.isfinite(np.take_along_axis(keys, sample, axis=1))] = -1
        cand = np.concatenate([sample, self.hard_negatives[rows]], axis=1)  # (r, S + M)
        cand.sort(axis=1)
        cand[:, 1:][cand[:, 1:] == cand[:, :-1]] = -1  # duplicates (a remembered negative drawn again)
        safe = np.maximum(cand, 0)
        valid = (cand >= 0) & np.take_along_axis(is_neg, safe, axis=1)
        d = np.where(valid, np.take_along_axis(dist, safe, axis=1), np.inf)
        d[d >= (d_pos + self.margin)[:, None]] = np.inf  # keep only margin violators
        k = min(m, d.shape[1])
        pick = top_k(d, k)
        neg = np.where(np.isfinite(np.take_along_axis(d, pick, axis=1)), np.take_along_axis(cand, pick, axis=1), -1)
        if k < m:
            neg = np.concatenate([neg, np.full((len(rows), m - k), -1, dtype=np.int64)], axis=1)
        keep = (neg >= 0).any(axis=1)
        self.hard_negatives[rows[keep]] = neg[keep]
        return rows[keep], pos[keep].astype(np.int64), neg[keep].astype(np.int64), int((~keep).sum())
