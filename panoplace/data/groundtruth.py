"""Ground truth: which database images show the place of each query.

A :class:`GroundTruth` holds, per query, the sorted database indices that count as correct
(``positives``) and a ``valid`` mask: ``valid[i] = False`` marks a query that lies off the mapped
route (e.g. PAL's ``Overlap.txt``); such queries are left out of the evaluation entirely, they
do not count as misses. A valid query without positives counts as a miss.

Constructors:

- :meth:`GroundTruth.from_positions`: database images within ``radius`` metres of the query
  (inclusive), computed with a KD-tree (``scipy.spatial.cKDTree.sparse_distance_matrix``),
  never with a dense ``(Q, N)`` distance matrix;
- :meth:`GroundTruth.from_tolerance`: index-aligned traverses (query i ↔ database i, or
  database ``N-1-i`` for a traverse driven the other way), ± ``tolerance`` frames;
- :meth:`GroundTruth.from_lists`: explicit lists of database indices.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence

import numpy as np
from scipy.spatial import cKDTree

from panoplace.errors import DatasetError

log = logging.getLogger(__name__)

DEFAULT_RADIUS = 25.0


@dataclass
class GroundTruth:
    """Correct database indices per query.

    positives: Q int64 arrays, sorted, of database indices in ``[0, n_database)``.
    valid: ``(Q,)`` bool; False = the query is off the mapped route and is not evaluated.
    n_database: N, the database size the indices refer to.
    """

    positives: List[np.ndarray]
    valid: np.ndarray
    n_database: int

    def __post_init__(self) -> None:
        self.positives = [np.asarray(p, dtype=np.int64).reshape(-1) for p in self.positives]
        self.valid = np.asarray(self.valid, dtype=bool).reshape(-1)
        if len(self.valid) != len(self.positives):
            raise DatasetError(
                f"ground truth has {len(self.positives)} queries but {len(self.valid)} valid flags"
            )
        if self.positives:
            flat = np.concatenate(self.positives)
            bad = flat[(flat < 0) | (flat >= self.n_database)]
            if bad.size:
                raise DatasetError(
                    f"ground truth refers to database index {int(bad[0])} but the database has "
                    f"{self.n_database} images"
                )

    def __len__(self) -> int:
        return len(self.positives)

    @property
    def n_queries(self) -> int:
        return len(self.positives)

    @property
    def n_positives(self) -> np.ndarray:
        """``(Q,)`` int64 number of positives per query."""
        return np.fromiter((len(p) for p in self.positives), dtype=np.int64, count=len(self.positives))

    def check_sizes(self, n_queries: int, n_database: int, what: str = "ground truth") -> None:
        """Raise :class:`DatasetError` unless this ground truth is for ``n_queries`` queries
        against ``n_database`` database images."""
        if self.n_queries != n_queries:
            raise DatasetError(f"{what} lists {self.n_queries} queries but the query set has {n_queries} images")
        if self.n_database != n_database:
            raise DatasetError(f"{what} is for {self.n_database} database images but the database has {n_database}")

    def to_dense(self) -> np.ndarray:
        """``(Q, N)`` bool matrix, True where database j is a positive of query i."""
        dense = np.zeros((self.n_queries, self.n_database), dtype=bool)
        counts = self.n_positives
        if counts.sum():
            rows = np.repeat(np.arange(self.n_queries), counts)
            dense[rows, np.concatenate(self.positives)] = True
        return dense

    def is_positive(self, db_indices: np.ndarray) -> np.ndarray:
        """Whether each retrieved index is a positive of its query.

        Args:
            db_indices: ``(Q, k)`` int database indices (negative = none).

        Returns:
            ``(Q, k)`` bool.
        """
        db_indices = np.asarray(db_indices)
        if db_indices.ndim != 2 or db_indices.shape[0] != self.n_queries:
            raise DatasetError(
                f"retrieved indices have shape {db_indices.shape}, expected ({self.n_queries}, k)"
            )
        counts = self.n_positives
        rows = np.repeat(np.arange(self.n_queries), counts)
        cols = np.concatenate(self.positives) if counts.sum() else np.zeros(0, np.int64)
        # encode (query, db) pairs as one int64 key and test membership in one vectorised call
        keys = rows * (self.n_database + 1) + cols
        q = np.arange(self.n_queries)[:, None] * (self.n_database + 1) + np.where(db_indices < 0, self.n_database, db_indices)
        return np.isin(q, keys)

    def subset_queries(self, index: Sequence[int]) -> "GroundTruth":
        """Ground truth of the queries at ``index`` (ints or a boolean mask)."""
        idx = np.asarray(index)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return GroundTruth([self.positives[i] for i in idx], self.valid[idx], self.n_database)

    # ---------------------------------------------------------------- constructors
    @classmethod
    def from_positions(
        cls,
        database_xy: np.ndarray,
        query_xy: np.ndarray,
        radius: float = DEFAULT_RADIUS,
        valid: Optional[np.ndarray] = None,
    ) -> "GroundTruth":
        """Positives = database images within ``radius`` metres (inclusive) of each query.

        Args:
            database_xy: ``(N, 2)`` metric positions.
            query_xy: ``(Q, 2)`` metric positions, same frame as the database.
            radius: metres (> 0).
            valid: optional ``(Q,)`` bool (default all True).
        """
        db = np.asarray(database_xy, dtype=np.float64)
        q = np.asarray(query_xy, dtype=np.float64)
        if db.ndim != 2 or q.ndim != 2 or db.shape[1] != q.shape[1]:
            raise DatasetError(f"positions must be (N, 2) and (Q, 2); got {db.shape} and {q.shape}")
        if not (radius > 0):
            raise DatasetError(f"ground-truth radius must be > 0 metres, got {radius}")
        for what, arr in (("database", db), ("query", q)):
            bad = ~np.isfinite(arr).all(axis=1)
            if bad.any():
                raise DatasetError(f"{what} position {int(np.flatnonzero(bad)[0])} is not finite")
        n_q, n_db = len(q), len(db)
        if n_q == 0 or n_db == 0:
            positives = [np.zeros(0, np.int64) for _ in range(n_q)]
        else:
            pairs = cKDTree(q).sparse_distance_matrix(cKDTree(db), float(radius), output_type="ndarray")
            order = np.lexsort((pairs["j"], pairs["i"]))
            qi, dj = pairs["i"][order].astype(np.int64), pairs["j"][order].astype(np.int64)
            splits = np.searchsorted(qi, np.arange(1, n_q))
            positives = np.split(dj, splits)
        return cls(positives, np.ones(n_q, bool) if valid is None else valid, n_db)

    @classmethod
    def from_tolerance(
        cls,
        n_queries: int,
        n_database: int,
        tolerance: int = 0,
        reverse: bool = False,
        valid: Optional[np.ndarray] = None,
    ) -> "GroundTruth":
        """Index-aligned traverses: query i matches database ``c(i) ± tolerance`` frames.

        ``c(i) = i`` (same direction, Nordland) or ``c(i) = N - 1 - i`` when ``reverse``
        (the route driven the other way, MOLP forward/backward). Indices are clipped to the
        database; traverses must have the same length (``n_queries == n_database``).
        """
        if tolerance < 0:
            raise DatasetError(f"frame tolerance must be >= 0, got {tolerance}")
        if n_queries != n_database:
            raise DatasetError(
                f"index-aligned traverses need the same number of frames: {n_database} database vs {n_queries} queries"
            )
        centre = np.arange(n_queries)
        if reverse:
            centre = n_database - 1 - centre
        cand = centre[:, None] + np.arange(-tolerance, tolerance + 1)[None, :]  # (Q, 2t+1), ascending
        ok = (cand >= 0) & (cand < n_database)
        counts = ok.sum(axis=1)
        flat = cand[ok]
        positives = np.split(flat, np.cumsum(counts)[:-1]) if n_queries else []
        return cls(positives, np.ones(n_queries, bool) if valid is None else valid, n_database)

    @classmethod
    def from_lists(
        cls,
        lists: Iterable[Iterable[int]],
        n_database: int,
        valid: Optional[np.ndarray] = None,
    ) -> "GroundTruth":
        """Explicit positives: ``lists[i]`` = database indices correct for query i."""
        positives = [np.unique(np.asarray(list(p), dtype=np.int64)) for p in lists]
        return cls(positives, np.ones(len(positives), bool) if valid is None else valid, n_database)
