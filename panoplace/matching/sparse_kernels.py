"""Compiled (numba) loops of the sparse sequence matcher: one window per call.

The numpy form of :mod:`panoplace.matching.sparse` spent a frame in a few hundred small array
operations (per window row: cache look-ups by ``searchsorted`` in growing sorted arrays,
prefix sums, ``bincount`` passes), 10-15 ms of CPU per frame on a city map. Here a window is
scored in a handful of compiled calls over flat tables:

- **column table** (:data:`Table`): a slot per database rank in use, holding per window row (a
  ring of ``R`` rows, row ``s`` at position ``s % R``) the difference ``1 - similarity``, the
  contrast-enhanced z-score and the HMM emission, and per slot the serial range of the rows
  each holds (:data:`VALID_FIELDS`): rows arrive in serial order and leave from the oldest, so
  one range per slot says which values are current; a value is computed once per (row, rank)
  while both stay in the window, and a frame computes only the newest row and the rows of ranks
  new to the window;
- **differences on demand** (:func:`_refresh_differences`): flat indexes from the stored
  vectors; IVF-PQ from the cached PQ codes with each row's table of sub-quantiser inner
  products (``M`` table reads per value instead of a ``dim``-long product, as faiss scores);
- **the window's matcher**: transitions (through a rank -> column position map), forward(-backward)
  passes over the edges grouped by target and the posterior mass (HMM), or the trajectory sums
  (SeqSLAM), with the same float32 arithmetic in the same order as the numpy version
  (``bincount`` accumulation order, numpy's pairwise sums); the float64 window statistics of
  the contrast enhancement slide along runs of consecutive ranks instead of being summed from
  prefix sums, and ``exp``/``log`` come from libm instead of numpy's SIMD loops, so values
  agree to float rounding (tested against the numpy implementation kept in
  ``tests/matching/sparse_reference.py``).

Hot loops take whole arrays and scalar indices and keep their arithmetic in one function: on
this machine a helper called per value (even one numba inlines) cost more than the arithmetic.

The first call compiles (about 10-20 s); the code is cached on disk next to this module
(``cache=True``), so later processes load it in well under a second.
"""

from __future__ import annotations

from typing import Tuple

import numba
import numpy as np

from panoplace.matching.sequence.kernels import pairwise_sum

__all__ = ["claim_columns", "coded_similarities", "decode_codes", "expand", "hmm_window", "seqslam_window",
           "window_candidates"]

Graph = Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""(order, chain_start, chain_of, link_ptr, link_idx) of a :class:`MapGraph`."""
Table = Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""The column table: (slot_of int32 ``(N,)`` slot of each rank or -1, diff / zval / eval float32
``(slots, R)``, valid int64 ``(slots, VALID_FIELDS)``)."""
Window = Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""The window's rows by ring position ``p``: (serial int64 ``(R,)`` (-1: empty), vector float32
``(R, dim)``, rchg int64 ``(R,)`` (see :func:`_emissions`), least z-score float32 ``(R,)``, PQ
table float32 ``(R, M, ksub)`` and squared norm float32 ``(R,)`` of the vector, and ``<x, c>``
per coarse cell float32 ``(R, nlist)``, valid where the int64 ``(R, nlist)`` serial stamp is the
row's serial)."""
Source = Tuple[np.ndarray, bool, bool, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""Where database similarities come from: (vectors float32 ``(N, dim)`` of a flat index, direct
(flat: row = database id; else PQ codes), l2 (score ``1 - |x - y|^2 / 2``), and per column slot
the PQ code uint16 ``(slots, M)``, coarse cell int32 ``(slots,)`` (-1: none) and ``|y|^2``
float32 ``(slots,)``, coarse centroids float32 ``(nlist, dim)``)."""
Codes = Tuple[bool, np.ndarray, np.ndarray, np.ndarray, int, int, bool, np.ndarray, np.ndarray, bool, np.ndarray,
              np.ndarray, np.ndarray]
"""PQ codes of an IVF-PQ index and where to copy them: (coded (False: a flat index, nothing to
copy), direct map int64 ``(N,)`` (cell << 32 | offset), every cell's codes as uint8 bytes, byte
offset of each cell int64 ``(nlist,)``, code size in bytes, bits per code, residual coding,
coarse centroids float32 ``(nlist, dim)``, codebook float32 ``(M, ksub, dsub)``, l2, and the
target arrays: codes uint16 ``(rows, M)``, cell int32 ``(rows,)``, ``|y|^2`` float32 ``(rows,)``)."""


@numba.njit(nogil=True, cache=True)
def expand(ranks: np.ndarray, lo_off: int, hi_off: int, chain_start: np.ndarray,
           chain_of: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """Sorted unique ranks ``r + o`` for ``o`` in ``[lo_off, hi_off]`` that stay on r's chain.

    Shape:
        ranks: sorted int64 ``(m,)``; returns int64 ``(p,)``.
    """
    n = ranks.shape[0]
    out = np.empty(n * max(0, hi_off - lo_off + 1), np.int64)  # room for every interval, before merging
    k = 0
    reach = np.int64(-1) << 62
    for i in range(n):
        ch = chain_of[ranks[i]]
        s = max(chain_start[ch], ranks[i] + lo_off, reach + 1)
        e = min(chain_start[ch + 1] - 1, ranks[i] + hi_off)
        for r in range(s, e + 1):
            out[k] = r
            k += 1
        reach = max(reach, e)
    return out[:k]


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


SLIDE = 16
"""Window sums of the contrast enhancement slide at most this many ranks before a fresh sum."""
VALID_FIELDS = 7
"""Columns of a slot's validity record (:data:`DLO` ... :data:`ECALL`)."""
DLO, DHI, ZLO, ZHI, ELO, EHI, ECALL = range(VALID_FIELDS)
"""Per column slot: the differences hold for the window rows with serials ``DLO..DHI``, the
z-scores for ``ZLO..ZHI``, the emissions for ``ELO..EHI`` as of call ``ECALL``."""


@numba.njit(nogil=True, cache=True)
def claim_columns(ext: np.ndarray, stamp: int, slot_of: np.ndarray, slot_rank: np.ndarray, used: np.ndarray,
                  cursor: np.ndarray, valid: np.ndarray, order: np.ndarray, codes: Codes
                  ) -> None:  # pragma: no cover - compiled
    """Give every rank of ``ext`` a column slot, recycling slots unused in this call: a recycled
    slot holds no valid value, and (IVF-PQ) the PQ code of its new database frame is copied in.

    Shape:
        ext: sorted unique int64 ranks (fewer than the slots); valid: int64
        ``(slots, VALID_FIELDS)``; codes: :data:`Codes`.
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
        for f in range(VALID_FIELDS):
            valid[pos, f] = -1
        _decode(order[r], pos, codes)
        pos = (pos + 1) % size
    cursor[0] = pos


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


@numba.njit(nogil=True, cache=True)
def _decode(d: int, s: int, codes: Codes) -> None:  # pragma: no cover - compiled
    """Copy the PQ code of database frame ``d`` out of the inverted lists into row ``s`` of the
    code arrays: one ``uint16`` per sub-quantiser (faiss packs ``nbits``-bit codes least
    significant bit first), the coarse cell (``-1`` when the index does not code residuals) and,
    for ``l2``, the squared norm of the reconstruction ``|c + r|^2``. No-op without codes."""
    coded, dmap, raw, list_off, code_size, nbits, by_residual, centroids, codebook, l2, ccode, clist, cnorm = codes
    if not coded:
        return
    n_sub = codebook.shape[0]
    dsub = codebook.shape[2]
    lo = dmap[d]
    cell = lo >> 32
    base = list_off[cell] + (lo & 0xFFFFFFFF) * code_size
    bit = 0
    for m in range(n_sub):
        if nbits == 8:
            v = np.int64(raw[base + m])
        else:
            v = np.int64(0)
            for b in range(nbits):
                pos = bit + b
                v |= ((np.int64(raw[base + (pos >> 3)]) >> (pos & 7)) & 1) << b
        ccode[s, m] = v
        bit += nbits
    clist[s] = cell if by_residual else -1
    if l2:
        t = np.float32(0.0)
        for m in range(n_sub):
            for j in range(dsub):
                y = codebook[m, ccode[s, m], j]
                if by_residual:
                    y += centroids[cell, m * dsub + j]
                t += y * y
        cnorm[s] = t


@numba.njit(nogil=True, cache=True)
def decode_codes(ids: np.ndarray, codes: Codes) -> None:  # pragma: no cover - compiled
    """:func:`_decode` of database frames ``ids`` int64 ``(n,)`` into rows ``0 .. n - 1``."""
    for i in range(ids.shape[0]):
        _decode(ids[i], i, codes)


@numba.njit(nogil=True, cache=True, inline="always")
def _coded_sim(ccode: np.ndarray, vs: int, lut: np.ndarray, p: int, coarse: np.float32, xx: np.float32,
               yy: np.float32, l2: bool) -> np.float32:  # pragma: no cover - compiled
    """Similarity of query ``p`` (table ``lut[p]`` ``(M, ksub)``) and the PQ-coded database
    vector ``y = c + r`` cached at ``vs`` as faiss scores it: ``<x, y> = <x, c> + sum_m
    lut[p, m, code_m]`` (``coarse`` = ``<x, c>``), or for ``l2`` ``1 - (|x|^2 + |y|^2 - 2 <x, y>) / 2``.
    (Whole arrays and indices, no row views: a view costs reference counting per call.)"""
    # four running sums (a fixed order, so every caller gets the same value): the table reads
    # are independent, one accumulator would make each wait for the previous addition
    n = ccode.shape[1]
    a0 = np.float32(0.0)
    a1 = np.float32(0.0)
    a2 = np.float32(0.0)
    a3 = np.float32(0.0)
    m = 0
    while m + 4 <= n:
        a0 += lut[p, m, ccode[vs, m]]
        a1 += lut[p, m + 1, ccode[vs, m + 1]]
        a2 += lut[p, m + 2, ccode[vs, m + 2]]
        a3 += lut[p, m + 3, ccode[vs, m + 3]]
        m += 4
    while m < n:
        a0 += lut[p, m, ccode[vs, m]]
        m += 1
    ip = coarse + ((a0 + a1) + (a2 + a3))
    if l2:
        return np.float32(1.0) - np.float32(0.5) * (xx + yy - np.float32(2.0) * ip)
    return ip


@numba.njit(nogil=True, cache=True)
def coded_similarities(q: np.ndarray, xx: np.float32, lut: np.ndarray, slots: np.ndarray, ccode: np.ndarray,
                       clist: np.ndarray, cnorm: np.ndarray, centroids: np.ndarray,
                       l2: bool) -> np.ndarray:  # pragma: no cover - compiled
    """:func:`_coded_sim` of one query (``q`` float32 ``(dim,)``, ``xx`` its squared norm, its
    ``lut`` ``(1, M, ksub)``) and the cached codes at ``slots`` int64 ``(n,)``. Returns float32 ``(n,)``."""
    out = np.empty(slots.shape[0], np.float32)
    for i in range(slots.shape[0]):
        s = slots[i]
        cell = clist[s]
        coarse = _dot(centroids[cell], q) if cell >= 0 else np.float32(0.0)
        out[i] = _coded_sim(ccode, s, lut, 0, coarse, xx, cnorm[s], l2)
    return out


@numba.njit(nogil=True, cache=True)
def _live_rows(rows: np.ndarray, rserial: np.ndarray) -> Tuple[np.ndarray, int, int]:  # pragma: no cover
    """Ring positions of the window's frames (``rows >= 0``) and their first and last serial."""
    live = np.empty(rows.shape[0], np.int64)
    n = 0
    first = np.int64(1) << 62
    last = np.int64(-1)
    for t in range(rows.shape[0]):
        p = rows[t]
        if p >= 0:
            live[n] = p
            n += 1
            first = min(first, rserial[p])
            last = max(last, rserial[p])
    return live[:n], first, last


@numba.njit(nogil=True, cache=True, inline="always")
def _start(valid: np.ndarray, s: int, lo: int, first: int) -> int:  # pragma: no cover - compiled
    """First serial whose value slot ``s`` lacks: the values hold for serials
    ``valid[s, lo] .. valid[s, lo + 1]``; rows arrive in serial order and leave from the oldest,
    so a slot whose range reaches ``first`` lacks only the newer rows."""
    hi = valid[s, lo + 1]
    if hi < first or valid[s, lo] > hi:
        return first
    return hi + 1


@numba.njit(nogil=True, cache=True, inline="always")
def _from(live: np.ndarray, rserial: np.ndarray, start: int) -> int:  # pragma: no cover - compiled
    """Index in ``live`` (ring positions in serial order) of the first row with serial >= ``start``:
    the rows a slot lacks are the newest ones, a suffix of ``live``."""
    k = live.shape[0]
    while k > 0 and rserial[live[k - 1]] >= start:
        k -= 1
    return k


@numba.njit(nogil=True, cache=True, inline="always")
def _mark(valid: np.ndarray, s: int, lo: int, start: int, first: int, last: int, ring: int) -> None:  # pragma: no cover
    """Record that slot ``s`` now holds values for serials up to ``last`` (at most ``ring`` of
    them: older ring positions have been overwritten)."""
    if start == first:
        valid[s, lo] = first
    valid[s, lo + 1] = last
    valid[s, lo] = max(valid[s, lo], last - ring + 1)


@numba.njit(nogil=True, cache=True)
def _refresh_differences(ext: np.ndarray, live: np.ndarray, first: int, last: int, order: np.ndarray,
                         slot_of: np.ndarray, diff: np.ndarray, valid: np.ndarray, window: Window,
                         source: Source) -> None:  # pragma: no cover - compiled
    """``diff[slot, p] = 1 - similarity`` of every window row ``p`` (``live``) and every rank of
    ``ext``, computing only what the slots lack (one database vector or code read serves every
    row). Flat indexes: the stored vectors; IVF-PQ: the cached codes, with ``<x, c>`` of a row
    and a coarse cell computed once per row. (Written out in one loop: a helper function per
    value costs more here than the arithmetic.)"""
    rserial, rvec, _, _, rlut, rnorm, rcoarse, rcser = window
    vecs, direct, l2, ccode, clist, cnorm, centroids = source
    ring = rserial.shape[0]
    for i in range(ext.shape[0]):
        r = ext[i]
        s = slot_of[r]
        start = _start(valid, s, DLO, first)
        if start > last:
            continue
        d = order[r]
        k0 = _from(live, rserial, start)
        if direct:
            v = vecs[d]
            for k in range(k0, live.shape[0]):
                p = live[k]
                if l2:
                    sim = np.float32(1.0) - np.float32(0.5) * _sqdist(v, rvec[p])
                else:
                    sim = _dot(v, rvec[p])
                diff[s, p] = np.float32(1.0) - sim
        else:
            cell = clist[s]
            for k in range(k0, live.shape[0]):
                p = live[k]
                coarse = np.float32(0.0)
                if cell >= 0:
                    if rcser[p, cell] != rserial[p]:
                        rcoarse[p, cell] = _dot(centroids[cell], rvec[p])
                        rcser[p, cell] = rserial[p]
                    coarse = rcoarse[p, cell]
                sim = _coded_sim(ccode, s, rlut, p, coarse, rnorm[p], cnorm[s], l2)
                diff[s, p] = np.float32(1.0) - sim
        _mark(valid, s, DLO, start, first, last, ring)


@numba.njit(nogil=True, cache=True)
def _refresh_z(cols: np.ndarray, live: np.ndarray, first: int, last: int, half: int, chain_start: np.ndarray,
               chain_of: np.ndarray, slot_of: np.ndarray, diff: np.ndarray, zval: np.ndarray, valid: np.ndarray,
               rserial: np.ndarray, zmin: np.ndarray) -> None:  # pragma: no cover - compiled
    """Contrast-enhanced differences ``zval[slot, p]`` of every window row at every rank of
    ``cols``: the z-score over ranks ``r - half .. r + half`` of r's chain (cut at its ends;
    their differences must be current), computing only what the slots lack; ``zmin[p]`` becomes
    the least z-score of row ``p`` over ``cols``.

    The float64 window sums of a row slide from rank ``r - 1`` to ``r`` (one difference in,
    one out) when the row's previous z-score in this call was at ``r - 1`` with a window of the
    same size, and are summed afresh every :data:`SLIDE` ranks and elsewhere, so they stay
    within a few float64 roundings of the direct sums."""
    ring = rserial.shape[0]
    prev = np.full(ring, -2, np.int64)  # per row: the rank of its last z-score in this call
    ps1 = np.zeros(ring, np.float64)
    ps2 = np.zeros(ring, np.float64)
    slid = np.zeros(ring, np.int64)
    for j in range(cols.shape[0]):
        r = cols[j]
        s = slot_of[r]
        start = _start(valid, s, ZLO, first)
        if start <= last:
            ch = chain_of[r]
            a = max(chain_start[ch], r - half)
            b = min(chain_start[ch + 1], r + half + 1)
            # the window of r - 1 on the same chain, one rank earlier and of the same size
            inner = r - half - 1 >= chain_start[ch] and b == r + half + 1
            cnt = np.float64(b - a)
            for k in range(_from(live, rserial, start), live.shape[0]):
                p = live[k]
                if inner and prev[p] == r - 1 and slid[p] < SLIDE:
                    x_in = np.float64(diff[slot_of[b - 1], p])
                    x_out = np.float64(diff[slot_of[a - 1], p])
                    s1 = ps1[p] + x_in - x_out
                    s2 = ps2[p] + x_in * x_in - x_out * x_out
                    slid[p] += 1
                else:
                    s1 = 0.0
                    s2 = 0.0
                    for q in range(a, b):
                        x = np.float64(diff[slot_of[q], p])
                        s1 += x
                        s2 += x * x
                    slid[p] = 0
                ps1[p] = s1
                ps2[p] = s2
                prev[p] = r
                mean = s1 / cnt
                var = s2 / cnt - mean * mean
                zval[s, p] = np.float32((np.float64(diff[s, p]) - mean) / np.sqrt(max(var, 1e-12)))
            _mark(valid, s, ZLO, start, first, last, ring)
        for p in range(ring):  # every ring position (a branch-free pass; rows not in the window are ignored later)
            zmin[p] = min(zmin[p], zval[s, p])


@numba.njit(nogil=True, cache=True)
def _transitions(cols: np.ndarray, colpos: np.ndarray, jumps: np.ndarray, jw: np.ndarray, switch: float,
                 chain_start: np.ndarray, chain_of: np.ndarray, link_ptr: np.ndarray, link_idx: np.ndarray
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """Transitions among ``cols`` (sorted ranks) in the numpy version's entry order: per jump,
    the moves along chains, then those along links. ``colpos[r]`` is the index of rank ``r`` in
    ``cols`` (-1: not a column). Returns (source, target, weight, kind: the jump's index ``k``
    for a move along a chain, ``K + k`` along a link)."""
    m = cols.shape[0]
    total_links = 0
    for i in range(m):
        total_links += link_ptr[cols[i] + 1] - link_ptr[cols[i]]
    cap = jumps.shape[0] * (m + total_links)
    src = np.empty(cap, np.int64)
    dst = np.empty(cap, np.int64)
    wt = np.empty(cap, np.float32)
    kind = np.empty(cap, np.int64)
    n_jumps = jumps.shape[0]
    n = 0
    for k in range(n_jumps):
        d = jumps[k]
        wd = jw[k]
        for i in range(m):
            x = cols[i] + d
            ch = chain_of[cols[i]]
            if chain_start[ch] <= x < chain_start[ch + 1] and colpos[x] >= 0:
                nl = link_ptr[cols[i] + 1] - link_ptr[cols[i]]
                src[n] = i
                dst[n] = colpos[x]
                wt[n] = np.float32(wd * ((1.0 - switch) if nl > 0 else 1.0))
                kind[n] = k
                n += 1
        if total_links:
            for i in range(m):
                lo = link_ptr[cols[i]]
                hi = link_ptr[cols[i] + 1]
                for e in range(lo, hi):
                    xt = link_idx[e] + d
                    ch = chain_of[link_idx[e]]
                    if chain_start[ch] <= xt < chain_start[ch + 1] and colpos[xt] >= 0:
                        src[n] = i
                        dst[n] = colpos[xt]
                        wt[n] = np.float32(wd * switch / np.float64(hi - lo))
                        kind[n] = n_jumps + k
                        n += 1
    return src[:n], dst[:n], wt[:n], kind[:n]


@numba.njit(nogil=True, cache=True)
def _forward_edges(src: np.ndarray, dst: np.ndarray, wt: np.ndarray, kind: np.ndarray, m: int, n_jumps: int
                   ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover
    """The edges of :func:`_transitions` laid out for :func:`_propagate`: per target and jump,
    the one move along the chain (source and weight; weight 0 where there is none) in a table,
    and the (rarer) moves along links grouped by target, in edge order. Called with ``src`` and
    ``dst`` swapped it lays the edges out for the backward pass (each source has one chain move
    per jump as well). Returns (chain source int32 ``(m, K)``, chain weight float32 ``(m, K)``,
    link ptr int64 ``(m + 1,)``, link jump, link source, link weight)."""
    cs = np.zeros((m, n_jumps), np.int32)
    cw = np.zeros((m, n_jumps), np.float32)
    ptr = np.zeros(m + 1, np.int64)
    for e in range(dst.shape[0]):
        if kind[e] < n_jumps:
            cs[dst[e], kind[e]] = src[e]
            cw[dst[e], kind[e]] = wt[e]
        else:
            ptr[dst[e] + 1] += 1
    for j in range(m):
        ptr[j + 1] += ptr[j]
    fill = ptr[:m].copy()
    lk = np.empty(ptr[m], np.int64)
    ls = np.empty(ptr[m], np.int32)
    lw = np.empty(ptr[m], np.float32)
    for e in range(dst.shape[0]):
        if kind[e] >= n_jumps:
            q = fill[dst[e]]
            lk[q] = kind[e] - n_jumps
            ls[q] = src[e]
            lw[q] = wt[e]
            fill[dst[e]] = q + 1
    return cs, cw, ptr, lk, ls, lw


@numba.njit(nogil=True, cache=True)
def _propagate(x: np.ndarray, cs: np.ndarray, cw: np.ndarray, ptr: np.ndarray, lk: np.ndarray, ls: np.ndarray,
               lw: np.ndarray, tele: np.float32, E: np.ndarray, p: int, out: np.ndarray) -> None:  # pragma: no cover
    """``out = bincount(target, weights=x[source] * w) + tele * sum(x)`` (float64 accumulation,
    then float32), as the numpy version, from :func:`_forward_edges`: every target adds, per jump,
    its chain move and then its link moves, which is bincount's edge order (a missing chain move
    adds an exact 0), without a branch per chain move; then times the emissions ``E[:, p]`` when
    ``p >= 0`` (the same float32 product as a separate pass)."""
    add = np.float64(tele * pairwise_sum(x))
    n_jumps = cs.shape[1]
    for j in range(x.shape[0]):
        acc = 0.0
        e = ptr[j]
        end = ptr[j + 1]
        for k in range(n_jumps):
            acc += np.float64(x[cs[j, k]] * cw[j, k])
            while e < end and lk[e] == k:
                acc += np.float64(x[ls[e]] * lw[e])
                e += 1
        v = np.float32(acc + add)
        out[j] = v * E[j, p] if p >= 0 else v


@numba.njit(nogil=True, cache=True)
def _normalise(x: np.ndarray) -> None:  # pragma: no cover - compiled
    t = pairwise_sum(x)
    for j in range(x.shape[0]):
        x[j] = x[j] / t


@numba.njit(nogil=True, cache=True)
def _emissions(cols: np.ndarray, live: np.ndarray, first: int, last: int, slot_of: np.ndarray, zval: np.ndarray,
               eval_: np.ndarray, valid: np.ndarray, rserial: np.ndarray, rchg: np.ndarray, rzmin: np.ndarray,
               zmin: np.ndarray, call: int, scale: np.float32, out: np.ndarray) -> None:  # pragma: no cover
    """HMM emission likelihoods ``out[j, p] = exp((z - min z) * scale)`` of every window row
    ``p`` at ``cols[j]``. A likelihood is cached per (slot, row) and recomputed when the row is
    new to the slot or the row's minimum has moved since the slot's last refresh (``rchg[p]``:
    the call in which row ``p`` arrived or its minimum last moved; ``rchg[p] < 0``: new row)."""
    ring = rserial.shape[0]
    for k in range(live.shape[0]):
        p = live[k]
        if rchg[p] < 0 or rzmin[p] != zmin[p]:
            rchg[p] = call
            rzmin[p] = zmin[p]
    newest_chg = np.int64(-1)
    for k in range(live.shape[0]):
        newest_chg = max(newest_chg, rchg[live[k]])
    for j in range(cols.shape[0]):
        s = slot_of[cols[j]]
        lo = valid[s, ELO]
        hi = valid[s, EHI]
        at = valid[s, ECALL]
        if lo <= first and last <= hi and newest_chg <= at:  # every row current: copy the slot's row
            for p in range(ring):
                out[j, p] = eval_[s, p]
        else:
            for k in range(live.shape[0]):
                p = live[k]
                ser = rserial[p]
                if not (lo <= ser <= hi and rchg[p] <= at):
                    eval_[s, p] = np.exp((zval[s, p] - zmin[p]) * scale)
                out[j, p] = eval_[s, p]
        valid[s, ELO] = max(first, last - ring + 1)
        valid[s, EHI] = last
        valid[s, ECALL] = call


@numba.njit(nogil=True, cache=True)
def _refresh(ext: np.ndarray, cols: np.ndarray, rows: np.ndarray, half: int, graph: Graph, table: Table,
             window: Window, source: Source) -> Tuple[np.ndarray, int, int, np.ndarray]:  # pragma: no cover
    """Bring the differences at ``ext`` and the z-scores at ``cols`` up to date for every frame
    of the window; returns (live ring positions, first serial, last serial, each row's least
    z-score over ``cols``: float32 ``(R,)``)."""
    order, chain_start, chain_of, _, _ = graph
    slot_of, diff, zval, _, valid = table
    rserial = window[0]
    live, first, last = _live_rows(rows, rserial)
    _refresh_differences(ext, live, first, last, order, slot_of, diff, valid, window, source)
    zmin = np.full(rserial.shape[0], np.inf, np.float32)
    _refresh_z(cols, live, first, last, half, chain_start, chain_of, slot_of, diff, zval, valid, rserial, zmin)
    return live, first, last, zmin


@numba.njit(nogil=True, cache=True)
def hmm_window(cand: np.ndarray, cols: np.ndarray, ext: np.ndarray, rows: np.ndarray, past: np.ndarray,
               future: np.ndarray, jumps: np.ndarray, jw: np.ndarray, switch: float, tele: np.float32,
               scale: np.float32, half: int, radius: int, n_frames: int, graph: Graph, table: Table,
               window: Window, source: Source, call: int, E: np.ndarray, colpos: np.ndarray
               ) -> Tuple[np.ndarray, int, float]:  # pragma: no cover - compiled
    """Windowed HMM over the columns ``cols`` (the candidates ``cand`` and the ranks that lead to
    them within the window): costs ``-log posterior`` of the candidates, the best one and the
    posterior mass near it (and at the frames linked to those), as the numpy version.

    Shape:
        cand: sorted int64 ``(c,)`` (a subset of ``cols``); cols: sorted int64 ``(m,)``; ext:
        ``cols`` widened by the contrast-enhancement window (every rank holds a column slot); rows:
        int64 ``(T,)`` row position per window offset (``-1``: missing); past / future:
        indices into ``rows`` of the offsets ``<= 0`` / ``> 0``; jumps int64 ``(K,)`` with
        ``jw`` float64 ``p * (1 - teleport)``; call: this call's number (increasing); E: float32
        ``(>= m, R)`` scratch for the emissions; colpos: int32 ``(N,)`` all -1 (scratch, left so). returns: (float32 ``(c,)``, best, mass).
    """
    order, chain_start, chain_of, link_ptr, link_idx = graph
    slot_of, _, zval, eval_, valid = table
    rserial, _, rchg, rzmin, _, _, _, _ = window
    m = cols.shape[0]
    for j in range(m):
        colpos[cols[j]] = j
    src, dst, wt, kind = _transitions(cols, colpos, jumps, jw, switch, chain_start, chain_of, link_ptr, link_idx)
    for j in range(m):
        colpos[cols[j]] = -1
    cs, cw, lptr, lk, ls, lw = _forward_edges(src, dst, wt, kind, m, jumps.shape[0])
    live, first, last, zmin = _refresh(ext, cols, rows, half, graph, table, window, source)
    _emissions(cols, live, first, last, slot_of, zval, eval_, valid, rserial, rchg, rzmin, zmin, call, scale, E)
    tmp = np.empty(m, np.float32)

    alpha = np.full(m, np.float32(1.0 / n_frames), np.float32)
    prev_exists = False
    for jj in range(past.shape[0]):
        p = rows[past[jj]]
        if jj > 0 and prev_exists:
            _propagate(alpha, cs, cw, lptr, lk, ls, lw, tele, E, p, tmp)
            alpha, tmp = tmp, alpha
        elif p >= 0:
            for j in range(m):
                alpha[j] *= E[j, p]
        _normalise(alpha)
        prev_exists = p >= 0
    beta = np.ones(m, np.float32)
    if future.shape[0]:
        bcs, bcw, bptr, bk, bs, bw = _forward_edges(dst, src, wt, kind, m, jumps.shape[0])  # edges reversed
        for jj in range(future.shape[0] - 1, -1, -1):
            p = rows[future[jj]]
            if p >= 0:
                for j in range(m):
                    tmp[j] = beta[j] * E[j, p]
                _propagate(tmp, bcs, bcw, bptr, bk, bs, bw, tele, E, -1, beta)
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
def seqslam_window(cand: np.ndarray, cols: np.ndarray, ext: np.ndarray, rows: np.ndarray, shifts: np.ndarray,
                   bound: np.float32, half: int, radius: int, graph: Graph, table: Table, window: Window,
                   source: Source) -> Tuple[np.ndarray, int, float]:  # pragma: no cover - compiled
    """SeqSLAM costs of the candidates over straight trajectories (``shifts`` int64 ``(V, T)``;
    ``cols``: the ranks the trajectories visit, ``ext`` those widened by the enhancement window),
    the best one and the uniqueness ratio, as the numpy version. Returns (float32 ``(c,)``,
    best, ratio)."""
    order, chain_start, chain_of, _, _ = graph
    slot_of, _, zval, _, _ = table
    _refresh(ext, cols, rows, half, graph, table, window, source)
    nv = shifts.shape[0]
    c = cand.shape[0]
    acc = np.zeros((nv, c), np.float32)
    count = 0
    for t in range(rows.shape[0]):
        p = rows[t]
        if p < 0:
            continue
        count += 1
        for v in range(nv):
            for j in range(c):
                x = cand[j] + shifts[v, t]
                ch = chain_of[cand[j]]
                if chain_start[ch] <= x < chain_start[ch + 1]:
                    acc[v, j] += zval[slot_of[x], p]
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
