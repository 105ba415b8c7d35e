"""Compiled (numba) sum of absolute differences behind :func:`..seqslam_classic.sad_matrix`.

The numpy version broadcast ``(chunk, N, P)`` difference arrays and took their mean: for the
1,788 x 1,788 Nordland thumbnails at 64x32 (``P = 2048``) it wrote and re-read 26 GB of
temporaries, about 30 s. Here every (query, database) pair is summed in registers without a
temporary, a block of query rows at a time against each database row, so the database row sits
in the L1 cache while the block's query rows are compared with it.

The result is bit-identical to the numpy version: values are float32 differences, summed in the
order of numpy's float32 pairwise summation (:func:`pairwise_plan` lays out its recursion once per
row length ``P``; the leaves use numpy's eight accumulators), then divided by ``P`` in float32,
as ``np.abs(q - d).mean(axis=-1)`` does (tested against the numpy implementation kept in
``tests/matching/sad_reference.py``).

The first call compiles (a few seconds); the code is cached on disk next to this module.
"""

from __future__ import annotations

from typing import List, Tuple

import numba
import numpy as np

__all__ = ["DATABASE_BLOCK", "pairwise_plan", "sad_rows"]

DATABASE_BLOCK = 64
"""Database rows a thread compares every query with at once (at ``P = 2048``: a 512 KiB buffer)."""

_LEAF = 128  # numpy's PW_BLOCKSIZE: pairwise_sum sums up to this many values with 8 accumulators


def pairwise_plan(n: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The leaves and the order of additions of numpy's pairwise sum of ``n`` values.

    numpy sums ``n <= 128`` values in one leaf (below 8 one by one, else with eight
    accumulators); longer runs split at ``n // 2`` rounded down to a multiple of 8 and add the
    two halves' sums. The additions are returned as a postfix program: ``k >= 0`` pushes the sum
    of leaf ``k``, ``-1`` replaces the top two values by their sum (the lower one first).

    Shape:
        returns: leaf starts int64 ``(L,)``, leaf lengths int64 ``(L,)``, program int64
        ``(2L - 1,)`` (``(1,)`` for ``n = 0``: one empty leaf).
    """
    starts: List[int] = []
    lens: List[int] = []
    prog: List[int] = []
    todo: List[Tuple[int, int, bool]] = [(0, int(n), False)]  # (start, length, add-after-children)
    while todo:
        a, m, combine = todo.pop()
        if combine:
            prog.append(-1)
        elif m <= _LEAF:
            prog.append(len(starts))
            starts.append(a)
            lens.append(m)
        else:
            m2 = m // 2
            m2 -= m2 % 8
            todo.append((a, m, True))
            todo.append((a + m2, m - m2, False))
            todo.append((a, m2, False))
    return (np.asarray(starts, np.int64), np.asarray(lens, np.int64), np.asarray(prog, np.int64))


@numba.njit(parallel=True, nogil=True, cache=True)
def sad_rows(q: np.ndarray, d: np.ndarray, starts: np.ndarray, lens: np.ndarray, prog: np.ndarray,
             out: np.ndarray) -> None:  # pragma: no cover - compiled
    """Mean absolute difference of every query row with every database row.

    Parallel over blocks of :data:`DATABASE_BLOCK` database rows: a block is copied transposed
    (``(P, block)``) into a buffer of the thread, then every query is compared with the whole
    block at once, the innermost loops running over the block's rows (contiguous, so LLVM's
    loop vectoriser turns them into SIMD lanes without reordering any pair's sum). Every
    pair's sum follows ``pairwise_plan(P)`` (numpy's float32 pairwise summation) and is divided
    by ``P`` in float32.

    Shape:
        q: float32 ``(Q, P)``; d: float32 ``(N, P)``, ``P >= 1``; starts, lens: int64 ``(L,)``;
        prog: int64 ``(2L - 1,)`` (from :func:`pairwise_plan`); out: float32 ``(Q, N)`` (written).
    """
    nq, p = q.shape
    n = d.shape[0]
    scale = np.float32(p)
    nsteps = prog.shape[0]
    nblocks = (n + DATABASE_BLOCK - 1) // DATABASE_BLOCK
    for b in numba.prange(nblocks):
        j0 = b * DATABASE_BLOCK
        jb = min(n, j0 + DATABASE_BLOCK) - j0
        t = np.empty((p, DATABASE_BLOCK), np.float32)
        for k in range(p):
            for j in range(jb):
                t[k, j] = d[j0 + j, k]
        acc = np.empty((8, DATABASE_BLOCK), np.float32)
        vals = np.empty((nsteps, DATABASE_BLOCK), np.float32)  # stack of partial sums
        for i in range(nq):
            x = q[i]
            top = 0
            for s in range(nsteps):
                op = prog[s]
                if op < 0:  # add the top two partial sums
                    top -= 1
                    lo = vals[top - 1]
                    hi = vals[top]
                    for j in range(jb):
                        lo[j] = lo[j] + hi[j]
                    continue
                a = starts[op]
                m = lens[op]
                v = vals[top]
                top += 1
                if m < 8:  # numpy: one accumulator from 0
                    for j in range(jb):
                        v[j] = np.float32(0.0)
                    for k in range(a, a + m):
                        xk = x[k]
                        tk = t[k]
                        for j in range(jb):
                            v[j] += abs(xk - tk[j])
                    continue
                for lane in range(8):  # numpy: eight accumulators, then a tree, then the rest
                    xk = x[a + lane]
                    tk = t[a + lane]
                    al = acc[lane]
                    for j in range(jb):
                        al[j] = abs(xk - tk[j])
                end = a + m - m % 8
                for k0 in range(a + 8, end, 8):
                    for lane in range(8):
                        xk = x[k0 + lane]
                        tk = t[k0 + lane]
                        al = acc[lane]
                        for j in range(jb):
                            al[j] += abs(xk - tk[j])
                for j in range(jb):
                    v[j] = ((acc[0, j] + acc[1, j]) + (acc[2, j] + acc[3, j])) + \
                           ((acc[4, j] + acc[5, j]) + (acc[6, j] + acc[7, j]))
                for k in range(end, a + m):
                    xk = x[k]
                    tk = t[k]
                    for j in range(jb):
                        v[j] += abs(xk - tk[j])
            for j in range(jb):
                out[i, j0 + j] = vals[0, j] / scale
