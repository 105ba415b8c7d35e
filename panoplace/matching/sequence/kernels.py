"""Compiled (numba) loops of the dense matchers: one pass per query row, parallel over rows.

The numpy versions these replace added or multiplied whole ``(chunk, N)`` slices once per
velocity and window step, so a 10k x 10k match streamed the matrix through memory some fifty
times (19 s SeqSLAM, 34 s HMM). Here each query row is finished while its few ``(N,)`` buffers
sit in the cache; the arithmetic (float32 values, float64 cumulative sums for the contrast
enhancement) follows the numpy versions step by step, so results agree to float rounding
(sums are taken in another order; tested against the numpy implementation in
``tests/matching/sequence_reference.py``).

The first call compiles (a few seconds); compiled code is cached on disk next to this module.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["enhance_rows", "hmm_rows", "pairwise_sum", "seqslam_rows"]



@numba.njit(parallel=True, nogil=True, cache=True)
def enhance_rows(D: np.ndarray, half: int, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """Local contrast enhancement of every row of ``D`` (see :func:`..core.enhance_contrast`).

    Shape:
        D: float32 ``(Q, N)``; out: float32 ``(Q, N)`` (written).
    """
    q, n = D.shape
    for i in numba.prange(q):
        c1 = np.empty(n + 1, np.float64)
        c2 = np.empty(n + 1, np.float64)
        c1[0] = 0.0
        c2[0] = 0.0
        s1 = 0.0
        s2 = 0.0
        for j in range(n):
            x = np.float64(D[i, j])
            s1 += x
            s2 += x * x
            c1[j + 1] = s1
            c2[j + 1] = s2
        for j in range(n):
            a = max(0, j - half)
            b = min(n, j + half + 1)
            cnt = np.float64(b - a)
            mean = (c1[b] - c1[a]) / cnt
            var = (c2[b] - c2[a]) / cnt - mean * mean
            out[i, j] = np.float32((np.float64(D[i, j]) - mean) / np.sqrt(max(var, 1e-12)))


@numba.njit(nogil=True, cache=True)
def _add(dst: np.ndarray, src: np.ndarray) -> None:  # pragma: no cover - compiled
    for k in range(dst.shape[0]):
        dst[k] += src[k]


@numba.njit(nogil=True, cache=True)
def _add_scaled(dst: np.ndarray, src: np.ndarray, w: np.float32) -> None:  # pragma: no cover - compiled
    for k in range(dst.shape[0]):
        dst[k] += src[k] * w


@numba.njit(nogil=True, cache=True)
def _block_sum(x: np.ndarray, a: int, n: int) -> np.float32:  # pragma: no cover - compiled
    """numpy's float32 pairwise sum of ``x[a:a + n]`` for ``n <= 128`` (same rounding)."""
    if n < 8:
        res = np.float32(0.0)
        for i in range(n):
            res += x[a + i]
        return res
    # eight running sums in scalars (an array here would be allocated per block of every sum)
    r0, r1, r2, r3 = x[a], x[a + 1], x[a + 2], x[a + 3]
    r4, r5, r6, r7 = x[a + 4], x[a + 5], x[a + 6], x[a + 7]
    i = 8
    while i < n - (n % 8):
        b = a + i
        r0 += x[b]
        r1 += x[b + 1]
        r2 += x[b + 2]
        r3 += x[b + 3]
        r4 += x[b + 4]
        r5 += x[b + 5]
        r6 += x[b + 6]
        r7 += x[b + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += x[a + i]
        i += 1
    return res


@numba.njit(nogil=True, cache=True)
def pairwise_sum(x: np.ndarray) -> np.float32:  # pragma: no cover - compiled
    """Sum of a float32 vector with numpy's pairwise summation (bit-identical to ``x.sum()``),
    so that ties and rounding match the numpy implementation."""
    n = x.shape[0]
    if n <= 128:
        return _block_sum(x, 0, n)
    # iterative form of numpy's recursion: split at n2 = n // 2 rounded down to a multiple of 8
    stack_a = np.empty(64, np.int64)
    stack_n = np.empty(64, np.int64)
    vals = np.empty(64, np.float32)
    state = np.zeros(64, np.int64)
    top = 0
    stack_a[0] = 0
    stack_n[0] = n
    state[0] = 0
    result = np.float32(0.0)
    while top >= 0:
        a = stack_a[top]
        m = stack_n[top]
        if m <= 128:
            v = _block_sum(x, a, m)
            top -= 1
            if top < 0:
                result = v
                break
            if state[top] == 1:
                vals[top] = v
                state[top] = 2
                n2 = stack_n[top] // 2
                n2 -= n2 % 8
                top += 1
                stack_a[top] = stack_a[top - 1] + n2
                stack_n[top] = stack_n[top - 1] - n2
                state[top] = 0
            else:
                v = vals[top] + v
                top -= 1
                while top >= 0 and state[top] == 2:
                    v = vals[top] + v
                    top -= 1
                if top < 0:
                    result = v
                    break
                vals[top] = v
                state[top] = 2
                n2 = stack_n[top] // 2
                n2 -= n2 % 8
                top += 1
                stack_a[top] = stack_a[top - 1] + n2
                stack_n[top] = stack_n[top - 1] - n2
                state[top] = 0
            continue
        n2 = m // 2
        n2 -= n2 % 8
        state[top] = 1
        top += 1
        stack_a[top] = a
        stack_n[top] = n2
        state[top] = 0
    return result


@numba.njit(nogil=True, cache=True)
def _mul(dst: np.ndarray, src: np.ndarray) -> None:  # pragma: no cover - compiled
    for k in range(dst.shape[0]):
        dst[k] *= src[k]


@numba.njit(parallel=True, nogil=True, cache=True)
def seqslam_rows(z: np.ndarray, offsets: np.ndarray, shifts: np.ndarray, bound: float, radius: int,
                 best: np.ndarray, score: np.ndarray, conf: np.ndarray, scores: np.ndarray,
                 keep: bool) -> None:  # pragma: no cover - compiled
    """SeqSLAM cost of every (query, database frame), its best match and uniqueness ratio.

    Shape:
        z: float32 ``(Q, N)`` enhanced differences; offsets int64 ``(ds,)``; shifts int64
        ``(V, ds)``; best/score/conf ``(Q,)`` (written); scores float32 ``(Q, N)`` written when
        ``keep`` (else any ``(1, 1)`` array).
    """
    q, n = z.shape
    nv, ds = shifts.shape
    b32 = np.float32(bound)
    for i in numba.prange(q):
        acc = np.empty(n, np.float32)
        cost = np.empty(n, np.float32)
        cost[:] = np.inf
        cnt = 0
        for t in range(ds):
            if 0 <= i + offsets[t] < q:
                cnt += 1
        for v in range(nv):
            acc[:] = 0.0
            for t in range(ds):
                r = i + offsets[t]
                if r < 0 or r >= q:
                    continue
                s = shifts[v, t]
                lo = max(0, -s)
                hi = min(n, n - s)
                if lo < hi:
                    _add(acc[lo:hi], z[r, lo + s:hi + s])
            for j in range(n):
                if acc[j] < cost[j]:
                    cost[j] = acc[j]
        c32 = np.float32(cnt)
        bj = 0
        for j in range(n):
            cost[j] = cost[j] / c32 + b32
            if cost[j] < cost[bj]:
                bj = j
        b2 = np.float32(np.inf)
        for j in range(n):
            if abs(j - bj) > radius and cost[j] < b2:
                b2 = cost[j]
        b1 = cost[bj]
        best[i] = bj
        score[i] = b1
        if np.isfinite(b2):
            conf[i] = b2 / max(b1, np.float32(1e-9))
        else:
            conf[i] = 1.0
        if keep:
            scores[i, :] = cost


@numba.njit(nogil=True, cache=True)
def _propagate(x: np.ndarray, jumps: np.ndarray, weights: np.ndarray, tele: np.float32, sign: int,
               out: np.ndarray) -> None:  # pragma: no cover - compiled
    """``out[j] = sum_d w_d x[j - sign * d] + tele * mean(x)`` (forward ``sign = 1``)."""
    n = x.shape[0]
    add = tele * (pairwise_sum(x) / np.float32(n))
    out[:] = 0.0
    for k in range(jumps.shape[0]):
        s = jumps[k] * sign
        w = weights[k]
        if 0 <= s < n:
            _add_scaled(out[s:n], x[0:n - s], w)
        elif 0 < -s < n:
            _add_scaled(out[0:n + s], x[-s:n], w)
    for j in range(n):
        out[j] += add


@numba.njit(nogil=True, cache=True)
def _normalise(x: np.ndarray) -> None:  # pragma: no cover - compiled
    t32 = np.float32(pairwise_sum(x))
    for j in range(x.shape[0]):
        x[j] = x[j] / t32


@numba.njit(parallel=True, nogil=True, cache=True)
def hmm_rows(E: np.ndarray, past: np.ndarray, future: np.ndarray, jumps: np.ndarray, weights: np.ndarray,
             teleport: float, radius: int, best: np.ndarray, score: np.ndarray, conf: np.ndarray,
             scores: np.ndarray, keep: bool) -> None:  # pragma: no cover - compiled
    """Windowed forward(-backward) posterior of every query over the database frames.

    Shape:
        E: float32 ``(Q, N)`` emission likelihoods (row maximum 1); past int64 offsets ``<= 0``
        in increasing order; future int64 offsets ``> 0`` in increasing order; jumps int64
        ``(K,)`` with ``weights`` float32 ``(K,)`` = ``p * (1 - teleport)``; outputs as
        :func:`seqslam_rows` (``scores`` = ``-log`` posterior).
    """
    q, n = E.shape
    tele = np.float32(teleport)
    for i in numba.prange(q):
        alpha = np.empty(n, np.float32)
        tmp = np.empty(n, np.float32)
        alpha[:] = np.float32(1.0 / n)
        for k in range(past.shape[0]):
            t = past[k]
            if k > 0 and i + past[k - 1] >= 0:
                _propagate(alpha, jumps, weights, tele, 1, tmp)
                alpha[:] = tmp
            r = i + t
            if 0 <= r < q:
                _mul(alpha, E[r])
            _normalise(alpha)
        beta = np.empty(n, np.float32)
        beta[:] = 1.0
        for k in range(future.shape[0] - 1, -1, -1):
            r = i + future[k]
            if r < q:
                _mul(beta, E[r])
                _propagate(beta, jumps, weights, tele, -1, tmp)
                beta[:] = tmp
                _normalise(beta)
        for j in range(n):
            alpha[j] *= beta[j]
        _normalise(alpha)
        bj = 0
        for j in range(n):
            if alpha[j] > alpha[bj]:
                bj = j
        best[i] = bj
        score[i] = -np.log(max(alpha[bj], np.float32(1e-30)))
        tmp[:] = 0.0
        for j in range(max(0, bj - radius), min(n, bj + radius + 1)):
            tmp[j] = alpha[j]
        conf[i] = pairwise_sum(tmp)
        if keep:
            for j in range(n):
                scores[i, j] = -np.log(max(alpha[j], np.float32(1e-30)))
