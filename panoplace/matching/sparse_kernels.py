"""Compiled (numba) loops of the sparse sequence matcher: one window per call.

The numpy form of :mod:`panoplace.matching.sparse` spent a frame in a few hundred small array
operations (per window row: cache look-ups by ``searchsorted`` in growing sorted arrays,
prefix sums, ``bincount`` passes), 10-15 ms of CPU per frame on a city map. Here a window is
scored in a handful of compiled calls over flat tables:

- **column table** (:class:`ColumnTable` arrays): a slot per database rank in use, holding
  per window row (a ring of ``R`` rows, row ``s`` at position ``s % R``) the difference
  ``1 - similarity`` and the contrast-enhanced z-score, each stamped with the row's serial
  number, so that a value is computed once per (row, rank) while both stay in the window and a
  recycled row position invalidates its old values without a pass over the table;
- **differences on demand** from the vectors the index scores with (flat: the stored
  vectors; IVF-PQ: the reconstruction cache of :class:`~panoplace.matching.sparse.IndexVectors`);
- **the window's matcher**: transitions, forward(-backward) passes and the posterior mass (HMM),
  or the trajectory sums (SeqSLAM), with the same float32 arithmetic in the same order as the
  numpy version (``bincount`` accumulation order, numpy's pairwise sums); the float64 window
  statistics of the contrast enhancement are summed directly instead of from prefix sums, and
  ``exp``/``log`` come from libm instead of numpy's SIMD loops, so values agree to float
  rounding (tested against the numpy implementation kept in
  ``tests/matching/sparse_reference.py``).

The first call compiles (about 10-20 s); the code is cached on disk next to this module
(``cache=True``), so later processes load it in well under a second.
"""

from __future__ import annotations

from typing import Tuple

import numba
import numpy as np

from panoplace.matching.sequence.kernels import pairwise_sum

__all__ = ["claim_columns", "expand", "hmm_window", "pick_slots", "seqslam_window", "window_candidates"]

Graph = Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""(order, chain_start, chain_of, link_ptr, link_idx) of a :class:`MapGraph`."""


@numba.njit(nogil=True, cache=True)
def expand(ranks: np.ndarray, lo_off: int, hi_off: int, chain_start: np.ndarray,
           chain_of: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """Sorted unique ranks ``r + o`` for ``o`` in ``[lo_off, hi_off]`` that stay on r's chain.

    Shape:
        ranks: sorted int64 ``(m,)``; returns int64 ``(p,)``.
    """
    n = ranks.shape[0]
    total = 0
    reach = np.int64(-1) << 62
    for i in range(n):
        ch = chain_of[ranks[i]]
        s = max(chain_start[ch], ranks[i] + lo_off)
        e = min(chain_start[ch + 1] - 1, ranks[i] + hi_off)
        s = max(s, reach + 1)
        if s <= e:
            total += e - s + 1
        reach = max(reach, e)
    out = np.empty(total, np.int64)
    k = 0
    reach = np.int64(-1) << 62
    for i in range(n):
        ch = chain_of[ranks[i]]
        s = max(chain_start[ch], ranks[i] + lo_off)
        e = min(chain_start[ch + 1] - 1, ranks[i] + hi_off)
        s = max(s, reach + 1)
        for r in range(s, e + 1):
            out[k] = r
            k += 1
        reach = max(reach, e)
    return out


@numba.njit(nogil=True, cache=True)
def window_candidates(tops: np.ndarray, rows: np.ndarray, shifts: np.ndarray, track: np.ndarray, w: int,
                      chain_start: np.ndarray, chain_of: np.ndarray) -> np.ndarray:  # pragma: no cover
    """Candidate ranks of one query: each window row's top-k ranks moved back along their chain by
    the row's offset (kept inside the chain), plus the tracked ranks.

    Shape:
        tops: int64 ``(R, k)`` top-k ranks per row position (``-1`` = none); rows: int64
        ``(T,)`` row position of each window offset (``-1``: the frame does not exist);
        shifts: int64 ``(T,)`` ``round(v t)`` per offset; track: int64 ``(n,)``.
        returns: sorted unique int64 ranks.
    """
    k = tops.shape[1]
    buf = np.empty(rows.shape[0] * k + track.shape[0], np.int64)
    n = 0
    for t in range(rows.shape[0]):
        p = rows[t]
        if p < 0:
            continue
        for j in range(k):
            r = tops[p, j]
            if r < 0:
                continue
            c = r - shifts[t]
            ch = chain_of[r]
            if chain_start[ch] <= c < chain_start[ch + 1]:
                buf[n] = c
                n += 1
    for j in range(track.shape[0]):
        buf[n] = track[j]
        n += 1
    if n == 0:
        return np.zeros(0, np.int64)
    return expand(np.unique(buf[:n]), -w, w, chain_start, chain_of)


@numba.njit(nogil=True, cache=True)
def pick_slots(used: np.ndarray, stamp: int, cursor: np.ndarray, n: int) -> np.ndarray:  # pragma: no cover
    """``n`` cache slots not used in the current call (``used != stamp``), round robin from
    ``cursor[0]``; marks them used. The caller guarantees that enough exist."""
    size = used.shape[0]
    out = np.empty(n, np.int64)
    pos = cursor[0]
    for i in range(n):
        while used[pos] == stamp:
            pos = (pos + 1) % size
        out[i] = pos
        used[pos] = stamp
        pos = (pos + 1) % size
    cursor[0] = pos
    return out


@numba.njit(nogil=True, cache=True)
def claim_columns(ext: np.ndarray, stamp: int, slot_of: np.ndarray, slot_rank: np.ndarray, used: np.ndarray,
                  cursor: np.ndarray, dstamp: np.ndarray, zstamp: np.ndarray, estamp: np.ndarray, order: np.ndarray,
                  direct: bool, vslot_of: np.ndarray, vused: np.ndarray, vstamp: int
                  ) -> np.ndarray:  # pragma: no cover - compiled
    """Give every rank of ``ext`` a column slot (recycling slots unused in this call) and list the
    database ids whose vectors the vector cache lacks (``direct``: every vector is at hand).

    Shape:
        ext: sorted unique int64 ranks (fewer than the slots); returns int64 ``(miss,)`` ids.
    """
    size = slot_rank.shape[0]
    for i in range(ext.shape[0]):
        s = slot_of[ext[i]]
        if s >= 0:
            used[s] = stamp
    pos = cursor[0]
    for i in range(ext.shape[0]):
        r = ext[i]
        if slot_of[r] >= 0:
            continue
        while used[pos] == stamp:
            pos = (pos + 1) % size
        old = slot_rank[pos]
        if old >= 0:
            slot_of[old] = -1
        slot_rank[pos] = r
        slot_of[r] = pos
        used[pos] = stamp
        dstamp[pos, :] = -1
        zstamp[pos, :] = -1
        estamp[pos, :] = -1
        pos = (pos + 1) % size
    cursor[0] = pos
    if direct:
        return np.zeros(0, np.int64)
    miss = np.empty(ext.shape[0], np.int64)
    n = 0
    for i in range(ext.shape[0]):
        d = order[ext[i]]
        v = vslot_of[d]
        if v >= 0:
            vused[v] = vstamp
        else:
            miss[n] = d
            n += 1
    return miss[:n]


@numba.njit(nogil=True, cache=True, fastmath=True)
def _dot(a: np.ndarray, b: np.ndarray) -> np.float32:  # pragma: no cover - compiled
    s = np.float32(0.0)
    for i in range(a.shape[0]):
        s += a[i] * b[i]
    return s


@numba.njit(nogil=True, cache=True, fastmath=True)
def _sqdist(a: np.ndarray, b: np.ndarray) -> np.float32:  # pragma: no cover - compiled
    s = np.float32(0.0)
    for i in range(a.shape[0]):
        d = a[i] - b[i]
        s += d * d
    return s


@numba.njit(nogil=True, cache=True, inline="always")
def _difference(r: int, p: int, serial: int, slot_of: np.ndarray, diff: np.ndarray, dstamp: np.ndarray,
                order: np.ndarray, vecs: np.ndarray, direct: bool, vslot_of: np.ndarray, l2: bool,
                rvec: np.ndarray) -> np.float32:  # pragma: no cover - compiled
    """``1 - similarity`` of row position ``p`` (serial ``serial``) and rank ``r`` (cached)."""
    s = slot_of[r]
    if dstamp[s, p] == serial:
        return diff[s, p]
    d = order[r]
    v = vecs[d] if direct else vecs[vslot_of[d]]
    if l2:
        sim = np.float32(1.0) - np.float32(0.5) * _sqdist(v, rvec[p])
    else:
        sim = _dot(v, rvec[p])
    x = np.float32(1.0) - sim
    diff[s, p] = x
    dstamp[s, p] = serial
    return x


@numba.njit(nogil=True, cache=True, inline="always")
def _z(r: int, p: int, serial: int, half: int, chain_start: np.ndarray, chain_of: np.ndarray,
       slot_of: np.ndarray, diff: np.ndarray, dstamp: np.ndarray, zval: np.ndarray, zstamp: np.ndarray,
       order: np.ndarray, vecs: np.ndarray, direct: bool, vslot_of: np.ndarray, l2: bool,
       rvec: np.ndarray) -> np.float32:  # pragma: no cover - compiled
    """Contrast-enhanced difference of row position ``p`` at rank ``r``: the z-score over ranks
    ``r - half .. r + half`` of r's chain (cut at its ends); cached."""
    s = slot_of[r]
    if zstamp[s, p] == serial:
        return zval[s, p]
    ch = chain_of[r]
    a = max(chain_start[ch], r - half)
    b = min(chain_start[ch + 1], r + half + 1)
    s1 = 0.0
    s2 = 0.0
    for j in range(a, b):
        sj = slot_of[j]
        if dstamp[sj, p] == serial:
            x = np.float64(diff[sj, p])
        else:
            x = np.float64(_difference(j, p, serial, slot_of, diff, dstamp, order, vecs, direct, vslot_of, l2, rvec))
        s1 += x
        s2 += x * x
    cnt = np.float64(b - a)
    mean = s1 / cnt
    var = s2 / cnt - mean * mean
    x = np.float64(diff[s, p])  # computed in the loop above (r is in [a, b))
    z = np.float32((x - mean) / np.sqrt(max(var, 1e-12)))
    zval[s, p] = z
    zstamp[s, p] = serial
    return z


@numba.njit(nogil=True, cache=True)
def _transitions(cols: np.ndarray, jumps: np.ndarray, jw: np.ndarray, switch: float, chain_start: np.ndarray,
                 chain_of: np.ndarray, link_ptr: np.ndarray, link_idx: np.ndarray
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """Transitions among ``cols`` (sorted ranks) in the numpy version's entry order: per jump,
    the moves along chains, then those along links. Returns (source, target, weight)."""
    m = cols.shape[0]
    nl = np.empty(m, np.int64)
    total_links = 0
    for i in range(m):
        nl[i] = link_ptr[cols[i] + 1] - link_ptr[cols[i]]
        total_links += nl[i]
    lpos = np.empty(total_links, np.int64)  # where each link's target sits in cols
    q = 0
    for i in range(m):
        for e in range(link_ptr[cols[i]], link_ptr[cols[i] + 1]):
            lpos[q] = np.searchsorted(cols, link_idx[e])
            q += 1
    cap = jumps.shape[0] * (m + total_links)
    src = np.empty(cap, np.int64)
    dst = np.empty(cap, np.int64)
    wt = np.empty(cap, np.float32)
    n = 0
    for k in range(jumps.shape[0]):
        d = jumps[k]
        wd = jw[k]
        j = 0
        for i in range(m):
            x = cols[i] + d
            ch = chain_of[cols[i]]
            while j < m and cols[j] < x:
                j += 1
            if chain_start[ch] <= x < chain_start[ch + 1] and j < m and cols[j] == x:
                src[n] = i
                dst[n] = j
                wt[n] = np.float32(wd * ((1.0 - switch) if nl[i] > 0 else 1.0))
                n += 1
        if total_links:
            q = 0
            for i in range(m):
                for e in range(link_ptr[cols[i]], link_ptr[cols[i] + 1]):
                    tgt = link_idx[e]
                    xt = tgt + d
                    ch = chain_of[tgt]
                    pos = lpos[q]
                    q += 1
                    if not (chain_start[ch] <= xt < chain_start[ch + 1]):
                        continue
                    while pos < m and cols[pos] < xt:
                        pos += 1
                    while pos > 0 and cols[pos - 1] >= xt:
                        pos -= 1
                    if pos < m and cols[pos] == xt:
                        src[n] = i
                        dst[n] = pos
                        wt[n] = np.float32(wd * switch / np.float64(nl[i]))
                        n += 1
    return src[:n], dst[:n], wt[:n]


@numba.njit(nogil=True, cache=True)
def _propagate(x: np.ndarray, src: np.ndarray, dst: np.ndarray, wt: np.ndarray, tele: np.float32,
               out: np.ndarray) -> None:  # pragma: no cover - compiled
    """``out = bincount(dst, weights=x[src] * wt) + tele * sum(x)`` (float64 accumulation, then
    float32), as the numpy version; swap ``src``/``dst`` for the backward pass."""
    acc = np.zeros(x.shape[0], np.float64)
    for e in range(src.shape[0]):
        acc[dst[e]] += np.float64(x[src[e]] * wt[e])
    add = np.float64(tele * pairwise_sum(x))
    for j in range(x.shape[0]):
        out[j] = np.float32(acc[j] + add)


@numba.njit(nogil=True, cache=True)
def _normalise(x: np.ndarray) -> None:  # pragma: no cover - compiled
    t = pairwise_sum(x)
    for j in range(x.shape[0]):
        x[j] = x[j] / t


@numba.njit(nogil=True, cache=True)
def _emissions(ext: np.ndarray, cols: np.ndarray, rows: np.ndarray, half: int, chain_start: np.ndarray,
               chain_of: np.ndarray, slot_of: np.ndarray, diff: np.ndarray, dstamp: np.ndarray, zval: np.ndarray,
               zstamp: np.ndarray, eval_: np.ndarray, estamp: np.ndarray, rserial: np.ndarray, rgen: np.ndarray,
               rzmin: np.ndarray, gen: np.ndarray, order: np.ndarray, vecs: np.ndarray, direct: bool,
               vslot_of: np.ndarray, l2: bool, rvec: np.ndarray, scale: np.float32
               ) -> np.ndarray:  # pragma: no cover - compiled
    """HMM emission likelihoods ``exp((z - min z) * scale)`` of every window row at ``cols``.

    Column by column (one database vector read serves every row): the differences at ``ext``
    (``cols`` widened by the enhancement window), the z-scores at ``cols`` and each row's
    minimum, then the likelihoods. Likelihoods are cached per (rank, row) under a generation
    number that changes when a row arrives or its minimum moves, so an unchanged value is
    reused, not recomputed. Returns float32 ``(R, m)`` indexed by ring position."""
    size = rserial.shape[0]
    m = cols.shape[0]
    live = np.empty(rows.shape[0], np.int64)
    n_live = 0
    for t in range(rows.shape[0]):
        if rows[t] >= 0:
            live[n_live] = rows[t]
            n_live += 1
    for i in range(ext.shape[0]):
        r = ext[i]
        s = slot_of[r]
        for k in range(n_live):
            p = live[k]
            if dstamp[s, p] != rserial[p]:
                _difference(r, p, rserial[p], slot_of, diff, dstamp, order, vecs, direct, vslot_of, l2, rvec)
    zmin = np.full(size, np.inf, np.float32)
    for j in range(m):
        r = cols[j]
        s = slot_of[r]
        ch = chain_of[r]
        a = max(chain_start[ch], r - half)
        b = min(chain_start[ch + 1], r + half + 1)
        for k in range(n_live):
            p = live[k]
            if zstamp[s, p] != rserial[p]:
                s1 = 0.0
                s2 = 0.0
                for q in range(a, b):
                    x = np.float64(diff[slot_of[q], p])
                    s1 += x
                    s2 += x * x
                cnt = np.float64(b - a)
                mean = s1 / cnt
                var = s2 / cnt - mean * mean
                zval[s, p] = np.float32((np.float64(diff[s, p]) - mean) / np.sqrt(max(var, 1e-12)))
                zstamp[s, p] = rserial[p]
            if zval[s, p] < zmin[p]:
                zmin[p] = zval[s, p]
    for k in range(n_live):
        p = live[k]
        if rgen[p] < 0 or rzmin[p] != zmin[p]:
            gen[0] += 1
            rgen[p] = gen[0]
            rzmin[p] = zmin[p]
    out = np.empty((size, m), np.float32)
    for j in range(m):
        s = slot_of[cols[j]]
        for k in range(n_live):
            p = live[k]
            if estamp[s, p] != rgen[p]:
                eval_[s, p] = np.exp((zval[s, p] - zmin[p]) * scale)
                estamp[s, p] = rgen[p]
            out[p, j] = eval_[s, p]
    return out


@numba.njit(nogil=True, cache=True)
def hmm_window(cand: np.ndarray, cols: np.ndarray, ext: np.ndarray, rows: np.ndarray, past: np.ndarray,
               future: np.ndarray, jumps: np.ndarray, jw: np.ndarray, switch: float, tele: np.float32,
               scale: np.float32, half: int, radius: int, n_frames: int, graph: Graph, slot_of: np.ndarray,
               diff: np.ndarray, dstamp: np.ndarray, zval: np.ndarray, zstamp: np.ndarray, eval_: np.ndarray,
               estamp: np.ndarray, rgen: np.ndarray, rzmin: np.ndarray, gen: np.ndarray, rserial: np.ndarray,
               rvec: np.ndarray, vecs: np.ndarray, direct: bool, vslot_of: np.ndarray, l2: bool
               ) -> Tuple[np.ndarray, int, float]:  # pragma: no cover - compiled
    """Windowed HMM over the columns ``cols`` (the candidates ``cand`` and the ranks that lead to
    them within the window): costs ``-log posterior`` of the candidates, the best one and the
    posterior mass near it (and at the frames linked to those), as the numpy version.

    Shape:
        cand: sorted int64 ``(c,)`` (a subset of ``cols``); cols: sorted int64 ``(m,)``; ext:
        ``cols`` widened by the contrast-enhancement window (every rank holds a column slot); rows:
        int64 ``(T,)`` row position per window offset (``-1``: missing); past / future:
        indices into ``rows`` of the offsets ``<= 0`` / ``> 0``; jumps int64 ``(K,)`` with
        ``jw`` float64 ``p * (1 - teleport)``. returns: (float32 ``(c,)``, best, mass).
    """
    order, chain_start, chain_of, link_ptr, link_idx = graph
    m = cols.shape[0]
    src, dst, wt = _transitions(cols, jumps, jw, switch, chain_start, chain_of, link_ptr, link_idx)
    E = _emissions(ext, cols, rows, half, chain_start, chain_of, slot_of, diff, dstamp, zval, zstamp, eval_, estamp,
                   rserial, rgen, rzmin, gen, order, vecs, direct, vslot_of, l2, rvec, scale)
    tmp = np.empty(m, np.float32)

    alpha = np.full(m, np.float32(1.0 / n_frames), np.float32)
    prev_exists = False
    for jj in range(past.shape[0]):
        p = rows[past[jj]]
        if jj > 0 and prev_exists:
            _propagate(alpha, src, dst, wt, tele, tmp)
            alpha[:] = tmp
        if p >= 0:
            for j in range(m):
                alpha[j] *= E[p, j]
        _normalise(alpha)
        prev_exists = p >= 0
    beta = np.ones(m, np.float32)
    for jj in range(future.shape[0] - 1, -1, -1):
        p = rows[future[jj]]
        if p >= 0:
            for j in range(m):
                tmp[j] = beta[j] * E[p, j]
            _propagate(tmp, dst, src, wt, tele, beta)
            _normalise(beta)
    post = alpha * beta
    _normalise(post)
    c = cand.shape[0]
    keep = np.searchsorted(cols, cand)
    b = 0
    for i in range(c):
        if post[keep[i]] > post[keep[b]]:
            b = i
    rb = cand[b]
    near = np.zeros(m, np.bool_)
    n_near = 0
    for j in range(m):
        if chain_of[cols[j]] == chain_of[rb] and abs(cols[j] - rb) <= radius:
            near[j] = True
            tmp[n_near] = post[j]
            n_near += 1
    mass = np.float64(pairwise_sum(tmp[:n_near]))
    n_lt = 0
    for j in range(m):
        if near[j]:
            n_lt += link_ptr[cols[j] + 1] - link_ptr[cols[j]]
    if n_lt:
        linked = np.empty(n_lt, np.int64)
        n = 0
        for j in range(m):
            if near[j]:
                for q in range(link_ptr[cols[j]], link_ptr[cols[j] + 1]):
                    pos = min(np.searchsorted(cols, link_idx[q]), m - 1)
                    if cols[pos] == link_idx[q]:
                        linked[n] = pos
                        n += 1
        u = np.unique(linked[:n])
        k = 0
        for pos in u:
            if not near[pos]:
                tmp[k] = post[pos]
                k += 1
        mass += np.float64(pairwise_sum(tmp[:k]))
    cost = np.empty(c, np.float32)
    for i in range(c):
        cost[i] = -np.log(max(post[keep[i]], np.float32(1e-30)))
    return cost, b, min(mass, 1.0)


@numba.njit(nogil=True, cache=True)
def seqslam_window(cand: np.ndarray, rows: np.ndarray, shifts: np.ndarray, bound: np.float32, half: int,
                   radius: int, graph: Graph, slot_of: np.ndarray, diff: np.ndarray, dstamp: np.ndarray,
                   zval: np.ndarray, zstamp: np.ndarray, rserial: np.ndarray, rvec: np.ndarray, vecs: np.ndarray,
                   direct: bool, vslot_of: np.ndarray, l2: bool
                   ) -> Tuple[np.ndarray, int, float]:  # pragma: no cover - compiled
    """SeqSLAM costs of the candidates over straight trajectories (``shifts`` int64 ``(V, T)``),
    the best one and the uniqueness ratio, as the numpy version. Returns (float32 ``(c,)``,
    best, ratio)."""
    order, chain_start, chain_of, _, _ = graph
    nv = shifts.shape[0]
    c = cand.shape[0]
    acc = np.zeros((nv, c), np.float32)
    count = 0
    for t in range(rows.shape[0]):
        p = rows[t]
        if p < 0:
            continue
        count += 1
        serial = rserial[p]
        for v in range(nv):
            for j in range(c):
                x = cand[j] + shifts[v, t]
                ch = chain_of[cand[j]]
                if chain_start[ch] <= x < chain_start[ch + 1]:
                    s = slot_of[x]
                    if zstamp[s, p] == serial:
                        acc[v, j] += zval[s, p]
                    else:
                        acc[v, j] += _z(x, p, serial, half, chain_start, chain_of, slot_of, diff, dstamp, zval,
                                        zstamp, order, vecs, direct, vslot_of, l2, rvec)
    cost = np.empty(c, np.float32)
    c32 = np.float32(count)
    for j in range(c):
        lo = acc[0, j]
        for v in range(1, nv):
            if acc[v, j] < lo:
                lo = acc[v, j]
        cost[j] = lo / c32 + bound
    b = 0
    for j in range(c):
        if cost[j] < cost[b]:
            b = j
    b2 = np.float32(np.inf)
    for j in range(c):
        if (chain_of[cand[j]] != chain_of[cand[b]] or abs(cand[j] - cand[b]) > radius) and cost[j] < b2:
            b2 = cost[j]
    if np.isfinite(b2):
        conf = np.float64(b2 / np.float32(max(np.float64(cost[b]), 1e-9)))
    else:
        conf = 1.0
    return cost, b, conf
