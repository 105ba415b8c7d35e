"""Equirectangular panoramas of the synthetic town by column ray casting.

Projection convention of every panorama rendered here (``(H, W, 3)`` uint8 RGB):

- column ``j`` looks along compass bearing ``heading + (j + 0.5) * 360 / W`` degrees
  (column 0 = the camera heading, bearings increase to the right, i.e. clockwise seen from
  above, as when standing inside the panorama);
- row ``i`` looks at elevation ``90 - (i + 0.5) * 180 / H`` degrees (row 0 = zenith,
  row H/2 = horizon).

How a frame is made (all numpy, one core): for every column one horizontal ray is
intersected with every box, cylinder and crown near the camera. Buildings go through a
"rising horizon" filter (a farther wall is visible only above the tops of nearer walls);
the other objects are dropped when a nearer wall hides them, and the nearest few per column
are kept. Each surviving hit covers a vertical span of rows; spans are painted far to near,
then every wall pixel looks up its texel at (distance along the wall, height). Pixels no
span covers are ground (ray-plane intersection, ground raster with mip levels), the roof of
the camera car, distant hills or sky. Lighting (sun, ambient, ground shadows, street lamps,
lit windows), fog and haze, and sensor noise depend on the :class:`Condition`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple, TypeVar

import cv2
import numpy as np

from panoplace.errors import InputError
from panoplace.synth import textures as tx
from panoplace.synth.conditions import Condition, Lighting, lighting
from panoplace.synth.lightmaps import lamp_map, shadow_map
from panoplace.synth.routes import Pose
from panoplace.synth.world import Primitives, World

log = logging.getLogger(__name__)
T = TypeVar("T")

K_WALLS = 6  # visible building walls kept per column
K_OBJECTS = 8  # other objects kept per column
OCCLUDER_RANGE_M = 600.0
OBJECT_RANGE_M = 160.0
_INF = np.float32(1e30)


@dataclass
class _Slots:
    """Per-column surface spans: every field (W, K)."""

    key: np.ndarray  # sort distance (inf = empty)
    t_lo: np.ndarray  # span bottom, tan(elevation)
    t_hi: np.ndarray  # span top
    base: np.ndarray  # int64 atlas texel of the span's top row at its u
    tw: np.ndarray  # int64 texture width (row stride)
    th: np.ndarray  # int64 texture height
    a: np.ndarray  # texture row = a - tan(elev) * b
    b: np.ndarray
    lam: np.ndarray  # sun-facing factor in [0, 1]
    dist: np.ndarray  # distance used for fog / hit point


def check_size(width: int, height: int) -> None:
    """Raise InputError unless ``width`` x ``height`` is a sensible panorama size."""
    if not (isinstance(width, (int, np.integer)) and isinstance(height, (int, np.integer))):
        raise InputError(f"width and height must be integers, got {width!r} x {height!r}")
    if width < 16 or height < 8 or width > 16384 or height > 8192:
        raise InputError(f"panorama size must be between 16x8 and 16384x8192, got {width}x{height}")


def _sun_vector(light: Lighting) -> np.ndarray:
    """Horizontal components of the unit vector towards the sun times cos(elevation)."""
    az, el = math.radians(light.sun_az_deg), math.radians(max(light.sun_el_deg, 0.0))
    return np.array([math.sin(az) * math.cos(el), math.cos(az) * math.cos(el)], np.float32)


def _column_pairs(b0: np.ndarray, width: np.ndarray, full: np.ndarray, heading: float, W: int) -> Tuple[np.ndarray, np.ndarray]:
    """Expand per-shape bearing intervals into (shape index, column) pairs.

    b0: (N,) first bearing (radians, compass); width: (N,) angular width (radians);
    full: (N,) True where the shape surrounds the camera (every column). Columns whose centre
    could fall inside the interval are listed (one column of margin on each side).
    """
    step = 2 * np.pi / W
    lo = np.floor((b0 - heading) / step - 0.5).astype(np.int64) - 1
    n = np.floor(width / step).astype(np.int64) + 4
    lo = np.where(full, 0, lo)
    n = np.where(full, W, np.minimum(n, W))
    idx = np.repeat(np.arange(n.size), n)
    start = np.repeat(np.cumsum(n) - n, n)
    col = (np.repeat(lo, n) + np.arange(idx.size) - start) % W
    return idx, col


def _box_pairs(b: Dict[str, np.ndarray], ox: float, oy: float, heading: float, W: int) -> Tuple[np.ndarray, np.ndarray]:
    """(box, column) pairs of boxes seen from (ox, oy): only the columns each box can cover."""
    cx = np.stack([b["x0"], b["x1"], b["x1"], b["x0"]], 1) - ox
    cy = np.stack([b["y0"], b["y0"], b["y1"], b["y1"]], 1) - oy
    centre = np.arctan2(cx.mean(1), cy.mean(1))
    rel = (np.arctan2(cx, cy) - centre[:, None] + np.pi) % (2 * np.pi) - np.pi
    inside = (b["x0"] - 0.3 <= ox) & (ox <= b["x1"] + 0.3) & (b["y0"] - 0.3 <= oy) & (oy <= b["y1"] + 0.3)
    return _column_pairs(centre + rel.min(1), rel.max(1) - rel.min(1), inside, heading, W)


def _round_pairs(cx: np.ndarray, cy: np.ndarray, r: np.ndarray, ox: float, oy: float, heading: float, W: int, px_rad: float) -> Tuple[np.ndarray, np.ndarray]:
    """(circle, column) pairs of vertical circles (trunks, poles, crowns) seen from (ox, oy)."""
    rx, ry = cx - ox, cy - oy
    d = np.hypot(rx, ry)
    r_eff = np.maximum(r, d * 0.5 * px_rad)
    half = np.arcsin(np.clip(r_eff / np.maximum(d, 1e-9), 0.0, 1.0))
    centre = np.arctan2(rx, ry)
    return _column_pairs(centre - half, 2 * half, d <= r_eff + 0.3, heading, W)


_Arrays = Tuple[np.ndarray, ...]


def _box_hits(b: Dict[str, np.ndarray], i: np.ndarray, dx: np.ndarray, dy: np.ndarray, ox: float, oy: float,
              cz: float, sun: np.ndarray) -> _Arrays:
    """Ray vs axis-aligned box for P (box ``i``, ray direction ``dx, dy``) pairs.

    Returns (P,) arrays: hit (bool), tn (entry distance), t_lo / t_hi (tan-elevation span,
    including the roof or underside when the camera looks over or under the box), u (metres
    along the unrolled walls: south, east, north, west), lam (sun-facing factor), z1 (top).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        idx = 1.0 / np.where(np.abs(dx) < 1e-9, 1e-9, dx)
        idy = 1.0 / np.where(np.abs(dy) < 1e-9, 1e-9, dy)
        x0, x1, y0, y1 = (b[k][i] for k in ("x0", "x1", "y0", "y1"))
        tx0 = (x0 - ox) * idx
        tx1 = (x1 - ox) * idx
        ty0 = (y0 - oy) * idy
        ty1 = (y1 - oy) * idy
        txn, txf = np.minimum(tx0, tx1), np.maximum(tx0, tx1)
        tyn, tyf = np.minimum(ty0, ty1), np.maximum(ty0, ty1)
        tn = np.maximum(txn, tyn)
        tf = np.minimum(txf, tyf)
        hit = (tf > tn) & (tn > 0.3)
        xface = txn > tyn
        hx = ox + tn * dx
        hy = oy + tn * dy
        wx, wy = x1 - x0, y1 - y0
        pos_dx = dx > 0
        pos_dy = dy > 0
        # faces: 0 south (u = x - x0), 1 east (u = y - y0), 2 north (u = x1 - x), 3 west (u = y1 - y)
        u = np.where(
            xface,
            np.where(pos_dx, 2 * wx + wy + (y1 - hy), wx + (hy - y0)),
            np.where(pos_dy, hx - x0, wx + wy + (x1 - hx)),
        )
        nx = np.where(xface, np.where(pos_dx, -1.0, 1.0), 0.0)
        ny = np.where(xface, 0.0, np.where(pos_dy, -1.0, 1.0))
        lam = np.maximum(0.0, nx * sun[0] + ny * sun[1])
        z0, z1 = b["z0"][i], b["z1"][i]
        t_hi = np.where(z1 < cz, (z1 - cz) / tf, (z1 - cz) / tn)
        t_lo = np.where(z0 > cz, (z0 - cz) / tf, (z0 - cz) / tn)
    return hit, tn, t_lo, t_hi, u, lam, z1


def _round_hits(c: Dict[str, np.ndarray], i: np.ndarray, dx: np.ndarray, dy: np.ndarray, ox: float, oy: float,
                radius: np.ndarray, px_rad: float) -> _Arrays:
    """Ray vs vertical circle for P (circle ``i``, direction) pairs.

    Returns (P,) arrays: hit, tc (along-ray distance of the centre), dn (near distance),
    nx, ny (outward normal at the hit), angle around the circle in [0, 2 pi), half chord.
    """
    rx = c["cx"][i] - ox
    ry = c["cy"][i] - oy
    tc = rx * dx + ry * dy
    p2 = rx * rx + ry * ry - tc * tc
    r = np.maximum(radius, tc * (0.5 * px_rad))  # keep thin poles one pixel wide
    hit = (p2 < r * r) & (tc > 0.3)
    half = np.sqrt(np.maximum(r * r - p2, 0.0))
    dn = tc - half
    hx = dn * dx - rx
    hy = dn * dy - ry
    inv = 1.0 / np.maximum(r, 1e-6)
    return hit, tc, dn, hx * inv, hy * inv, np.arctan2(hy, hx) + np.pi, half


class _Caster:
    """Builds the per-column :class:`_Slots` of a frame."""

    def __init__(self, world: World, prims: Primitives, pose: Pose, dx: np.ndarray, dy: np.ndarray, light: Lighting, width: int) -> None:
        self.world, self.prims, self.pose, self.dx, self.dy = world, prims, pose, dx, dy
        self.sun = _sun_vector(light) if light.has_sun else np.zeros(2, np.float32)
        self.W = width
        self.px_rad = 2 * math.pi / width
        self.heading = math.radians(pose.heading_deg)
        at = world.atlas
        self.off, self.tw, self.th, self.ppm = at.offset, at.width, at.height, at.ppm.astype(np.float64)
        self.n_levels = at.n_levels

    def _near(self, cx: np.ndarray, cy: np.ndarray, rng_m: float) -> np.ndarray:
        return np.flatnonzero((cx - self.pose.x) ** 2 + (cy - self.pose.y) ** 2 < rng_m * rng_m)

    def _texel_fields(self, tex: np.ndarray, ucol: np.ndarray, vscale: np.ndarray, ztop: np.ndarray,
                      dist_tex: np.ndarray, cz: float) -> _Arrays:
        """Atlas addressing of hits at level-0 texel column ``ucol`` and ``vscale`` rows per metre.

        The mip level follows the texel footprint of one pixel at the hit's distance.
        """
        footprint = dist_tex * self.px_rad * vscale
        lev = np.clip(np.floor(np.log2(np.maximum(footprint, 1e-6)) + 0.25), 0, self.n_levels - 1).astype(np.int64)
        tw0, th0 = self.tw[0, tex], self.th[0, tex]
        tw, th = self.tw[lev, tex], self.th[lev, tex]
        us = tw / tw0
        vs = vscale * (th / th0)
        base = self.off[lev, tex] + np.floor(ucol * us).astype(np.int64) % tw
        a = (ztop - cz) * vs
        b = dist_tex * vs
        return base, tw, th, a, b

    def cast(self) -> _Slots:
        cz = self.pose.z
        ox, oy = self.pose.x, self.pose.y
        boxes = self.prims.boxes
        occ = np.flatnonzero(boxes["occluder"])
        occ = occ[self._box_near(boxes, occ, OCCLUDER_RANGE_M)]
        wall = self._walls({k: v[occ] for k, v in boxes.items()}, ox, oy, cz)
        found = [self._small_boxes(ox, oy, cz), self._cylinders(ox, oy, cz), self._crowns(ox, oy, cz)]
        cand = [c for c in found if c is not None]
        objs = self._objects(cand, wall, self.W)
        return _Slots(*(np.concatenate([getattr(wall, f), getattr(objs, f)], axis=1) for f in _Slots.__dataclass_fields__))

    def _box_near(self, b: Dict[str, np.ndarray], idx: np.ndarray, rng_m: float) -> np.ndarray:
        cx = np.clip(self.pose.x, b["x0"][idx], b["x1"][idx])
        cy = np.clip(self.pose.y, b["y0"][idx], b["y1"][idx])
        return (cx - self.pose.x) ** 2 + (cy - self.pose.y) ** 2 < rng_m * rng_m

    def _walls(self, b: Dict[str, np.ndarray], ox: float, oy: float, cz: float) -> _Slots:
        """Building walls per column through the rising-horizon filter: (W, K_WALLS) slots."""
        W = self.W
        out = _empty_slots(W, K_WALLS)
        if len(b["tex"]) == 0:
            return out
        i, col = _box_pairs(b, ox, oy, self.heading, W)
        hit, tn, t_lo, t_hi, u, lam, z1 = _box_hits(b, i, self.dx[col], self.dy[col], ox, oy, cz, self.sun)
        keep = np.flatnonzero(hit)
        i, col, tn, t_lo, t_hi, u, lam, z1 = (a[keep] for a in (i, col, tn, t_lo, t_hi, u, lam, z1))
        order = np.lexsort((tn, col))
        i, col, tn, t_lo, t_hi, u, lam, z1 = (a[order] for a in (i, col, tn, t_lo, t_hi, u, lam, z1))
        # rising horizon per column: a wall shows only above every nearer wall of its column
        v = np.clip(t_hi, -1e3, 1e3) + col * 1e4
        prev = np.concatenate([[-np.inf], np.maximum.accumulate(v)[:-1]])
        vis = np.flatnonzero(v > prev)
        i, col, tn, t_lo, t_hi, u, lam, z1 = (a[vis] for a in (i, col, tn, t_lo, t_hi, u, lam, z1))
        rank = np.arange(col.size) - np.searchsorted(col, col, side="left")
        m = rank < K_WALLS
        i, col, tn, t_lo, t_hi, u, lam, z1, rank = (a[m] for a in (i, col, tn, t_lo, t_hi, u, lam, z1, rank))
        tex = b["tex"][i]
        ppm = self.ppm[tex]
        base, tw, th, a, bb = self._texel_fields(tex, u * ppm, ppm, z1, tn, cz)
        for name, val in (("key", tn), ("t_lo", t_lo), ("t_hi", t_hi), ("base", base), ("tw", tw), ("th", th),
                          ("a", a), ("b", bb), ("lam", lam), ("dist", tn)):
            getattr(out, name)[col, rank] = val
        return out

    def _small_boxes(self, ox: float, oy: float, cz: float) -> Optional[Dict[str, np.ndarray]]:
        b = self.prims.boxes
        idx = np.flatnonzero(~b["occluder"])
        idx = idx[self._box_near(b, idx, OBJECT_RANGE_M)]
        if idx.size == 0:
            return None
        sb = {k: v[idx] for k, v in b.items()}
        i, col = _box_pairs(sb, ox, oy, self.heading, self.W)
        hit, tn, t_lo, t_hi, u, lam, z1 = _box_hits(sb, i, self.dx[col], self.dy[col], ox, oy, cz, self.sun)
        k = np.flatnonzero(hit)
        i = i[k]
        tex = sb["tex"][i]
        ppm = self.ppm[tex]
        return dict(col=col[k], key=tn[k], t_lo=t_lo[k], t_hi=t_hi[k], tex=tex, ucol=u[k] * ppm,
                    vscale=ppm, ztop=z1[k], dtex=tn[k], lam=lam[k])

    def _cylinders(self, ox: float, oy: float, cz: float) -> Optional[Dict[str, np.ndarray]]:
        cy = self.prims.cylinders
        idx = self._near(cy["cx"], cy["cy"], OBJECT_RANGE_M)
        if idx.size == 0:
            return None
        s = {k: v[idx] for k, v in cy.items()}
        i, col = _round_pairs(s["cx"], s["cy"], s["r"], ox, oy, self.heading, self.W, self.px_rad)
        hit, tc, dn, nx, ny, ang, half = _round_hits(s, i, self.dx[col], self.dy[col], ox, oy, s["r"][i], self.px_rad)
        k = np.flatnonzero(hit)
        i, col, tc, dn, nx, ny, ang, half = (a[k] for a in (i, col, tc, dn, nx, ny, ang, half))
        far = tc + half
        z0, z1 = s["z0"][i], s["z1"][i]
        t_hi = np.where(z1 < cz, (z1 - cz) / far, (z1 - cz) / dn)
        t_lo = np.where(z0 > cz, (z0 - cz) / far, (z0 - cz) / dn)
        lam = np.maximum(0.0, nx * self.sun[0] + ny * self.sun[1])
        tex = s["tex"][i]
        ppm = self.ppm[tex]
        return dict(col=col, key=dn, t_lo=t_lo, t_hi=t_hi, tex=tex, ucol=ang * s["r"][i] * ppm,
                    vscale=ppm, ztop=z1, dtex=dn, lam=lam)

    def _crowns(self, ox: float, oy: float, cz: float) -> Optional[Dict[str, np.ndarray]]:
        cr = self.prims.crowns
        idx = self._near(cr["cx"], cr["cy"], OBJECT_RANGE_M)
        if idx.size == 0:
            return None
        s = {k: v[idx] for k, v in cr.items()}
        i, col = _round_pairs(s["cx"], s["cy"], s["a"], ox, oy, self.heading, self.W, self.px_rad)
        hit, tc, dn, nx, ny, ang, half = _round_hits(s, i, self.dx[col], self.dy[col], ox, oy, s["a"][i], self.px_rad)
        hit &= dn > 0.5
        k = np.flatnonzero(hit)
        i, col, tc, dn, nx, ny, ang, half = (a[k] for a in (i, col, tc, dn, nx, ny, ang, half))
        a = s["a"][i]
        kk = np.clip(half / np.maximum(a, 1e-6), 0.0, 1.0)  # sqrt(1 - p^2/a^2): exact slice
        # leafy, irregular outline: a per-crown, per-direction wobble of the slice height
        wob = tx.cell_hash(idx[i], np.floor(ang * 9.0), 11)
        b_full = s["b"][i]
        bb = b_full * kk * (0.86 + 0.14 * wob)
        zc = s["zc"][i]
        lam = np.maximum(0.0, nx * self.sun[0] + ny * self.sun[1]) * 0.8 + 0.2 * (np.linalg.norm(self.sun) > 0)
        tex = s["tex"][i]
        # texture wraps once around the crown and spans its full height
        ucol = ang / (2 * np.pi) * self.tw[0, tex]
        vscale = self.th[0, tex] / (2.0 * b_full)
        return dict(col=col, key=dn, t_lo=(zc - bb - cz) / tc, t_hi=(zc + bb - cz) / tc, tex=tex,
                    ucol=ucol, vscale=vscale, ztop=zc + b_full, dtex=tc, lam=lam)

    def _objects(self, cand: List[Dict[str, np.ndarray]], wall: _Slots, W: int) -> _Slots:
        """The nearest K_OBJECTS hits per column that no building wall hides: (W, K) slots."""
        if not cand:
            return _empty_slots(W, K_OBJECTS)
        h = {k: np.concatenate([c[k] for c in cand]) for k in cand[0]}
        # drop hits hidden by a nearer, taller building wall
        wk = wall.key[h["col"]]
        wt = wall.t_hi[h["col"]]
        hidden = np.any((wk < h["key"][:, None]) & (wt >= h["t_hi"][:, None]) & (wall.t_lo[h["col"]] <= h["t_lo"][:, None]), axis=1)
        keep = ~hidden
        h = {k: v[keep] for k, v in h.items()}
        order = np.lexsort((h["key"], h["col"]))
        h = {k: v[order] for k, v in h.items()}
        col = h["col"]
        n = col.size
        first = np.searchsorted(col, col, side="left")
        rank = np.arange(n) - first
        m = rank < K_OBJECTS
        col, rank = col[m], rank[m]
        h = {k: v[m] for k, v in h.items()}
        out = _empty_slots(W, K_OBJECTS)
        base, tw, th, a, b = self._texel_fields(h["tex"], h["ucol"], h["vscale"], h["ztop"], h["dtex"], self.pose.z)
        out.key[col, rank] = h["key"]
        out.t_lo[col, rank] = h["t_lo"]
        out.t_hi[col, rank] = h["t_hi"]
        out.base[col, rank] = base
        out.tw[col, rank] = tw
        out.th[col, rank] = th
        out.a[col, rank] = a
        out.b[col, rank] = b
        out.lam[col, rank] = h["lam"]
        out.dist[col, rank] = h["key"]
        return out


def _empty_slots(W: int, K: int) -> _Slots:
    return _Slots(
        key=np.full((W, K), np.inf), t_lo=np.ones((W, K)), t_hi=-np.ones((W, K)),
        base=np.zeros((W, K), np.int64), tw=np.ones((W, K), np.int64), th=np.ones((W, K), np.int64),
        a=np.zeros((W, K)), b=np.zeros((W, K)), lam=np.zeros((W, K)), dist=np.full((W, K), 1e9),
    )


# ---------------------------------------------------------------------------------------------
# sky
# ---------------------------------------------------------------------------------------------

_CLOUD_N = 512  # texels of the periodic cloud layer
_CLOUD_M = 30.0  # metres per texel
_CLOUD_ALT = 1200.0  # cloud base above the camera, metres


def _clouds(seed: int, cover: float) -> Tuple[np.ndarray, np.ndarray]:
    """Cloud opacity on a periodic horizontal layer: sharp and blurred (512, 512) float32.

    The layer floats ``_CLOUD_ALT`` above the town, so clouds are world-fixed, move a little
    with the camera and crowd together towards the horizon as real ones do.
    """
    rng = np.random.default_rng([int(seed), 0xC10D])
    n = _CLOUD_N
    f = np.fft.fftfreq(n)
    k = np.sqrt(f[None, :] ** 2 + f[:, None] ** 2)
    k[0, 0] = 1.0
    spec = k ** -1.7 * np.exp(2j * np.pi * rng.random((n, n)))
    spec[0, 0] = 0.0
    out = []
    for blur in (0.0, 6.0):
        gauss = np.exp(-2.0 * (np.pi * blur * k) ** 2) if blur else 1.0  # Gaussian blur of std `blur` texels
        img = np.fft.ifft2(spec * gauss).real
        img = (img - img.mean()) / (img.std() + 1e-9)
        if cover >= 0.999:
            alpha = np.clip(0.8 + 0.12 * img, 0.0, 1.0)
        else:
            thr = 1.0 - 2.0 * cover
            alpha = np.clip((img - thr) / 0.6, 0.0, 1.0)
        out.append(alpha.astype(np.float32))
    return out[0], out[1]


def _bilinear_wrap(tile: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bilinear lookup in a periodic (n, n) tile at texel coordinates (u column, v row)."""
    n = tile.shape[0]
    u0, v0 = np.floor(u), np.floor(v)
    fu, fv = (u - u0).astype(np.float32), (v - v0).astype(np.float32)
    c0, r0 = u0.astype(np.int64) % n, v0.astype(np.int64) % n
    c1, r1 = (c0 + 1) % n, (r0 + 1) % n
    top = tile[r0, c0] * (1 - fu) + tile[r0, c1] * fu
    bot = tile[r1, c0] * (1 - fu) + tile[r1, c1] * fu
    return top * (1 - fv) + bot * fv


def _sky_gradient(light: Lighting, elev: np.ndarray) -> np.ndarray:
    """Sky colour per elevation (radians): (..., 3) float32."""
    t = np.clip(np.sin(np.maximum(elev, 0.0)), 0.0, 1.0) ** 0.6
    top, hor = np.asarray(light.sky_top, np.float32), np.asarray(light.sky_horizon, np.float32)
    return (hor * (1 - t[..., None]) + top * t[..., None]).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# frame
# ---------------------------------------------------------------------------------------------


_CACHE_ENTRIES = 64


def _world_cache(world: World, key: str, make: Callable[[], T]) -> T:
    """Per-world memo of derived data (shadow maps, lamp light, clouds, roof colours)."""
    if key not in world.cache:
        while len(world.cache) >= _CACHE_ENTRIES:
            world.cache.pop(next(iter(world.cache)))
        world.cache[key] = make()
    return world.cache[key]


def _roof_drop(cam_h: float) -> float:
    """Height of the camera above its car's roof (roof at 1.45 m), metres."""
    return float(np.clip(cam_h - 1.45, 0.3, 1.2))


def _ego_roof(rel: np.ndarray, cam_h: float) -> np.ndarray:
    """Roof of the camera car per column: (W,) tan(elevation) below which the roof is seen.

    rel: (W,) bearing of each column relative to the car's heading, radians.
    """
    fwd, side = np.cos(rel), np.sin(rel)
    with np.errstate(divide="ignore"):
        rf = np.where(fwd > 0, 1.0 / np.maximum(fwd, 1e-9), 1.5 / np.maximum(-fwd, 1e-9))
        rs = 0.75 / np.maximum(np.abs(side), 1e-9)
    r = np.minimum(rf, rs)
    drop = _roof_drop(cam_h)
    return (-drop / r).astype(np.float32)


def _ego_roof_colour(light: Lighting, t: np.ndarray, elev: np.ndarray, rel: np.ndarray, cam_h: float) -> np.ndarray:
    """Colour of the camera car's roof (dark paint, sky reflection, rails, sunroof): (N, 3)."""
    drop = _roof_drop(cam_h)
    dist = drop / np.maximum(-t, 1e-6)
    fwd, side = dist * np.cos(rel), dist * np.sin(rel)
    amb = np.asarray(light.ambient, np.float32)
    sun = np.asarray(light.sun, np.float32)
    paint = np.array([0.1, 0.1, 0.11], np.float32) * (amb + 0.6 * sun)
    refl = _sky_gradient(light, np.arcsin(np.clip(0.35 + 0.65 * np.cos(elev), 0, 1)))
    col = paint + 0.22 * refl * np.clip(dist / 1.2, 0.3, 1.0)[:, None]
    glass = (fwd > -1.0) & (fwd < 0.2) & (np.abs(side) < 0.42)
    col[glass] = col[glass] * 0.45
    return col.astype(np.float32)


def render_frame(
    world: World,
    pose: Pose,
    condition: Condition = Condition(),
    dynamic_objects: Optional[Primitives] = None,
    width: int = 1024,
    height: int = 512,
    appearance_seed: Optional[int] = None,
    noise_seed: Optional[int] = None,
) -> np.ndarray:
    """Render one equirectangular panorama (see the module docstring for the convention).

    pose: camera position (x, y metres), height ``z`` and heading of column 0.
    dynamic_objects: vehicles/pedestrians of a traversal (see :mod:`panoplace.synth.dynamic`).
    appearance_seed: the drive's look within its condition: clouds, stars, sun position,
    colour temperature, exposure (see :func:`~panoplace.synth.conditions.lighting`); None =
    the nominal lighting and sky. noise_seed: sensor noise; None renders without noise.
    Returns (height, width, 3) uint8 RGB.
    """
    check_size(width, height)
    light = lighting(condition, appearance_seed)
    sky_seed = 0 if appearance_seed is None else int(appearance_seed)
    prims = world.static if dynamic_objects is None else world.static + dynamic_objects
    W, H = int(width), int(height)
    cz = float(pose.z)
    az = np.radians(pose.heading_deg + (np.arange(W) + 0.5) * 360.0 / W)
    dx, dy = np.sin(az), np.cos(az)
    elev = np.radians(90.0 - (np.arange(H) + 0.5) * 180.0 / H)
    tr = np.tan(elev)

    slots = _Caster(world, prims, pose, dx, dy, light, W).cast()
    K = slots.key.shape[1]

    # ---- paint spans far to near -----------------------------------------------------------
    neg = -tr
    r_start = np.searchsorted(neg, -slots.t_hi, side="left").astype(np.int32)  # first row with tr <= t_hi
    r_end = np.searchsorted(neg, -slots.t_lo, side="right").astype(np.int32)  # rows with tr >= t_lo
    ids = np.full((H, W), -1, np.int16)
    rows = np.arange(H, dtype=np.int32)[:, None]
    # distant hills behind everything
    D = world.backdrop_m
    hills = world.hills
    abin = (np.degrees(az) % 360.0) * (len(hills) / 360.0)
    hb = np.minimum(abin.astype(np.int64), len(hills) - 1)
    h_top = (hills[hb] - cz) / D
    ids[(tr[:, None] <= h_top[None, :]) & (tr[:, None] >= -cz / D)] = -2
    order = np.argsort(-slots.key, axis=1, kind="stable")
    cols = np.arange(W)
    for p in range(K):
        s = order[:, p]
        rs, re_ = r_start[cols, s], r_end[cols, s]
        lo, hi = int(rs.min()), int(re_.max())
        if hi <= lo:
            continue
        sub = rows[lo:hi]
        m = (sub >= rs[None, :]) & (sub < re_[None, :])
        ids[lo:hi] = np.where(m, s[None, :].astype(np.int16), ids[lo:hi])
    vehicle = pose.heading_deg if pose.vehicle_heading_deg is None else pose.vehicle_heading_deg
    rel = az - np.radians(vehicle)
    if world.config.ego_vehicle:
        roof_t = _ego_roof(rel, cz)
        ids[tr[:, None] < roof_t[None, :]] = -3

    img = np.empty((H, W, 3), np.float32)
    amb = np.asarray(light.ambient, np.float32)
    sun = np.asarray(light.sun, np.float32)
    dist = np.full((H, W), np.inf, np.float32)  # horizontal distance for fog

    # ---- surfaces ------------------------------------------------------------------------------
    flat = ids.ravel()
    pix = np.flatnonzero(flat >= 0)
    if pix.size:
        r = pix // W
        c = pix - r * W
        fs = c * K + flat[pix]
        a = slots.a.ravel()[fs]
        b = slots.b.ravel()[fs]
        th = slots.th.ravel()[fs]
        v = np.clip((a - tr[r] * b).astype(np.int64), 0, th - 1)
        texel = world.atlas.data[slots.base.ravel()[fs] + v * slots.tw.ravel()[fs]]
        alb = texel[:, :3].astype(np.float32) * (1.0 / 255.0)
        lam = slots.lam.ravel()[fs].astype(np.float32)
        d = slots.dist.ravel()[fs].astype(np.float32)
        lightc = amb[None, :] + lam[:, None] * sun[None, :]
        if light.lamps > 0:
            lm, lppm = _world_cache(world, "lamps", lambda: lamp_map(world))
            hx = pose.x + d * dx[c].astype(np.float32)
            hy = pose.y + d * dy[c].astype(np.float32)
            z = cz + tr[r].astype(np.float32) * d
            li = _sample_map(lm, lppm, world.ground.origin, hx, hy) * np.clip(1.2 - z / 10.0, 0.0, 1.0)
            lightc = lightc + (1.5 * light.lamps * li)[:, None] * np.array([1.0, 0.82, 0.55], np.float32)
        col = alb * lightc
        if light.lit_fraction > 0 or light.emissive > 0:
            code = texel[:, 3]
            thr = int(round(light.lit_fraction * tx.EMIT_WINDOW_MAX))
            win = (code >= 1) & (code <= thr)
            if win.any():
                warm = np.array([1.0, 0.84, 0.55], np.float32)
                tint = 0.5 + 0.5 * ((code[win].astype(np.float32) * 0.37) % 1.0)[:, None]
                col[win] = warm * tint * (0.3 + 1.3 * alb[win])
            glow = code >= tx.EMIT_ALWAYS
            if light.emissive > 0 and glow.any():
                g = alb[glow] * (0.9 * light.emissive) + 0.05
                lamp_head = code[glow] == tx.EMIT_LAMP
                g[lamp_head] = np.array([1.0, 0.95, 0.8], np.float32) * (0.6 + 0.6 * light.emissive)
                col[glow] = np.maximum(col[glow], g)
        img.reshape(-1, 3)[pix] = col
        dist.ravel()[pix] = d

    # ---- ground ------------------------------------------------------------------------------
    _shade_ground(world, pose, light, ids, tr, dx, dy, img, dist)

    # ---- ego roof, hills, sky ---------------------------------------------------------------
    sky_rows = _sky_gradient(light, elev)
    roof = ids == -3
    if roof.any():
        key = f"roofcol{W}x{H}:{cz}:{round(float(rel[0]) % (2 * math.pi), 9)}:{condition.tag}:{appearance_seed}"
        rr, rc = np.nonzero(roof)
        img[roof] = _world_cache(world, key, lambda: _ego_roof_colour(light, tr[rr], elev[rr], rel[rc], cz))
        dist[roof] = 0.0
    hill = ids == -2
    if hill.any():
        hr, hc = np.nonzero(hill)
        z = cz + tr[hr] * D
        frac = np.clip(1.0 - z / np.maximum(hills[hb[hc]], 1.0), 0.0, 0.999)
        tex = world.atlas.image(world.hills_tex)
        texel = tex[(frac * tex.shape[0]).astype(np.int64), hb[hc] % tex.shape[1], :3].astype(np.float32) / 255.0
        lit = texel * (amb + 0.6 * sun)
        img[hill] = lit
        dist[hill] = D
    sky = ids == -1
    sky &= (tr >= 0)[:, None]
    if sky.any():
        sr, sc = np.nonzero(sky)
        colr = sky_rows[sr]
        if light.cloud_cover > 0:
            sharp, soft = _world_cache(world, f"clouds{sky_seed}:{light.cloud_cover}", lambda: _clouds(sky_seed, light.cloud_cover))
            te = np.maximum(tr[sr], 1e-3)
            cd = np.minimum(_CLOUD_ALT / te, 40000.0)
            al = np.where(cd < 5000.0, _bilinear_wrap(sharp, (pose.x + cd * dx[sc]) / _CLOUD_M, (pose.y + cd * dy[sc]) / _CLOUD_M),
                          _bilinear_wrap(soft, (pose.x + cd * dx[sc]) / _CLOUD_M, (pose.y + cd * dy[sc]) / _CLOUD_M))
            if light.cloud_cover < 0.999:
                al = al * np.clip(elev[sr] / 0.06, 0.0, 1.0)
            cc = np.asarray(light.cloud, np.float32)
            shade = 0.8 + 0.2 * np.clip(elev[sr] / 0.6, 0, 1)[:, None]
            al = al[:, None].astype(np.float32)
            colr = colr * (1 - al) + cc * shade * al
        if light.has_sun:
            sv = np.array([math.sin(math.radians(light.sun_az_deg)) * math.cos(math.radians(light.sun_el_deg)),
                           math.cos(math.radians(light.sun_az_deg)) * math.cos(math.radians(light.sun_el_deg)),
                           math.sin(math.radians(light.sun_el_deg))], np.float32)
            ce = np.cos(elev[sr]).astype(np.float32)
            cosang = (dx[sc] * ce * sv[0] + dy[sc] * ce * sv[1] + np.sin(elev[sr]) * sv[2]).astype(np.float32)
            glow = np.clip((cosang - 0.97) / 0.03, 0, 1) ** 3 * 0.35
            disc = (cosang > 0.99995).astype(np.float32)
            colr = colr + (glow + disc)[:, None] * np.array([1.0, 0.92, 0.75], np.float32)
        if light.stars > 0:
            wcol = np.floor((np.degrees(az[sc]) % 360.0) * (W / 360.0) + 1e-6).astype(np.int64)  # world-fixed stars
            h = ((wcol * 73856093) ^ (sr.astype(np.int64) * 19349663) ^ int(sky_seed)) % 100000
            star = (h < light.stars * 100000) & (elev[sr] > 0.15)
            colr[star] += 0.4
        img[sky] = colr
    below = (ids == -1) & (tr < 0)[:, None] & ~np.isfinite(dist)
    if below.any():  # ground beyond the raster at grazing angles
        img[below] = np.asarray(light.sky_horizon, np.float32) * 0.6

    # ---- fog and haze ------------------------------------------------------------------------
    d3 = dist * np.sqrt(1.0 + tr * tr)[:, None].astype(np.float32)
    fogc = np.asarray(light.fog, np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        f = 1.0 - np.exp(-d3 / light.haze_m) * (1.0 if not math.isfinite(light.fog_m) else np.exp(-d3 / light.fog_m))
    f = np.where(np.isfinite(d3), f, 0.0).astype(np.float32)
    if math.isfinite(light.fog_m):
        f = np.where(sky, 1.0, f)
    img += (fogc[None, None, :] - img) * f[..., None]
    if light.exposure != 1.0:
        img *= np.float32(light.exposure)

    out = np.clip(img * 255.0 + 0.5, 0, 255)
    if noise_seed is not None and light.noise > 0:
        rng = np.random.default_rng([int(noise_seed), 0x5E45])
        noise = _world_cache(world, f"noise{W}x{H}", lambda: np.random.default_rng(7).normal(0, 1, (H, W, 3)).astype(np.float32))
        shift = rng.integers(0, [H, W])
        out += light.noise * np.roll(noise, (int(shift[0]), int(shift[1])), axis=(0, 1))
        out = cv2.GaussianBlur(np.clip(out, 0, 255), (3, 3), 0.5)
    return np.clip(out, 0, 255).astype(np.uint8)


def _sample_map(m: np.ndarray, ppm: float, origin: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    n = m.shape[0]
    ci = np.clip(((x - origin) * ppm).astype(np.int64), 0, n - 1)
    ri = np.clip(((y - origin) * ppm).astype(np.int64), 0, n - 1)
    return m[ri, ci]


def _shade_ground(world: World, pose: Pose, light: Lighting, ids: np.ndarray, tr: np.ndarray, dx: np.ndarray,
                  dy: np.ndarray, img: np.ndarray, dist: np.ndarray) -> None:
    """Ground pixels: raster albedo (mip level by distance), shadows, lamps, water."""
    gm = world.ground
    cz = float(pose.z)
    amb = np.asarray(light.ambient, np.float32)
    sun = np.asarray(light.sun, np.float32)
    sin_el = math.sin(math.radians(max(light.sun_el_deg, 0.0)))
    H, W = ids.shape
    grow = np.flatnonzero(tr < -1e-4)
    if grow.size == 0:
        return
    dg_rows = (-cz / tr[grow]).astype(np.float32)
    if light.has_sun:
        sm, sppm = _world_cache(world, f"shadow{light.sun_az_deg}:{light.sun_el_deg}",
                                lambda: shadow_map(world, light.sun_az_deg, light.sun_el_deg))
    for level, (lo, hi) in enumerate(((0.0, 14.0), (14.0, 70.0), (70.0, 1e9))):
        band = grow[(dg_rows >= lo) & (dg_rows < hi)]
        if band.size == 0:
            continue
        sub = ids[band] == -1
        rr, cc = np.nonzero(sub)
        if rr.size == 0:
            continue
        r = band[rr]
        dg = (-cz / tr[r]).astype(np.float32)
        x = pose.x + dg * dx[cc].astype(np.float32)
        y = pose.y + dg * dy[cc].astype(np.float32)
        ras, ppm = gm.levels[level], gm.ppm[level]
        n = ras.shape[0]
        ci = np.clip(((x - gm.origin) * ppm).astype(np.int64), 0, n - 1)
        ri = np.clip(((y - gm.origin) * ppm).astype(np.int64), 0, n - 1)
        texel = ras[ri, ci]
        alb = texel[:, :3].astype(np.float32) * (1.0 / 255.0)
        if level == 0:
            det = gm.detail[(y * 40).astype(np.int64) % 128, (x * 40).astype(np.int64) % 128]
            alb *= det[:, None]
        lightc = np.broadcast_to(amb, alb.shape).copy()
        if light.has_sun:
            sh = _sample_map(sm, sppm, gm.origin, x, y)
            lightc += (sh * sin_el * 1.15)[:, None] * sun[None, :]
        if light.lamps > 0:
            lm, lppm = _world_cache(world, "lamps", lambda: lamp_map(world))
            li = _sample_map(lm, lppm, gm.origin, x, y)
            lightc += (1.8 * light.lamps * li)[:, None] * np.array([1.0, 0.82, 0.55], np.float32)
        col = alb * lightc
        water = texel[:, 3] == 255
        if water.any():
            el = np.arctan(tr[r[water]])
            cos_t = np.sin(-el).astype(np.float32)
            fres = 0.02 + 0.98 * (1.0 - cos_t) ** 5
            refl = _sky_gradient(light, -el)
            ripple = gm.detail[(y[water] * 3).astype(np.int64) % 128, (x[water] * 9).astype(np.int64) % 128][:, None]
            col[water] = col[water] * (1 - fres[:, None]) + refl * fres[:, None] * (0.75 + 0.3 * ripple)
        img[r, cc] = col
        dist[r, cc] = dg
