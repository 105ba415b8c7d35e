"""Ground of the synthetic town: a texture raster in world coordinates, shadows, lamp light.

The ground raster covers ``[origin, origin + n / ppm)`` metres in x and y (row = y, column
= x). RGB is the albedo; alpha 255 marks water (shaded with sky reflections by the
renderer). Two box-filtered levels (1/4, 1/16 resolution) are kept for distant ground so
that it does not alias.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from panoplace.synth.layout import Block, WorldConfig
from panoplace.synth.textures import cell_hash, value_noise


log = logging.getLogger(__name__)

# mask(yy, xx) -> (h, w) bool over metre grids; closures bind their extra parameters as defaults
Mask = Callable[..., np.ndarray]

MARGIN_M = 60.0


@dataclass
class GroundMap:
    """Ground raster pyramid.

    levels: list of (n_l, n_l, 4) uint8 RGBA rasters (alpha 255 = water).
    ppm: texels per metre of each level. origin: world x = y of texel (0, 0)'s corner.
    detail: (128, 128) float32 multiplicative grain tiled over the near ground.
    """

    levels: List[np.ndarray]
    ppm: List[float]
    origin: float
    detail: np.ndarray


def _coords(r0: int, r1: int, c0: int, c1: int, origin: float, ppm: float) -> Tuple[np.ndarray, np.ndarray]:
    ys = origin + (np.arange(r0, r1, dtype=np.float32) + 0.5) / ppm
    xs = origin + (np.arange(c0, c1, dtype=np.float32) + 0.5) / ppm
    return ys[:, None], xs[None, :]


def _hash2(a: np.ndarray, b: np.ndarray, salt: float) -> np.ndarray:
    """Deterministic pseudo-random value in [0, 1) per integer cell (a, b)."""
    return cell_hash(np.floor(a), np.floor(b), int(salt * 1000))


class _Painter:
    """Fills rectangles of the raster with procedural materials."""

    def __init__(self, n: int, origin: float, ppm: float, rng: np.random.Generator) -> None:
        self.rgb = np.zeros((n, n, 3), np.uint8)
        self.alpha = np.zeros((n, n), np.uint8)
        self.origin, self.ppm, self.n, self.rng = origin, ppm, n, rng

    def span(self, x0: float, y0: float, x1: float, y1: float) -> Optional[Tuple[int, int, int, int]]:
        c0 = max(0, int(math.floor((x0 - self.origin) * self.ppm)))
        c1 = min(self.n, int(math.ceil((x1 - self.origin) * self.ppm)))
        r0 = max(0, int(math.floor((y0 - self.origin) * self.ppm)))
        r1 = min(self.n, int(math.ceil((y1 - self.origin) * self.ppm)))
        if c1 <= c0 or r1 <= r0:
            return None
        return r0, r1, c0, c1

    def fill(self, rect: Tuple[float, float, float, float], material: str, mask: Optional[Mask] = None) -> None:
        """Fill ``rect`` (x0, y0, x1, y1 metres) with a material, where ``mask(yy, xx)`` allows.

        Painted in bands of rows (bounded memory); the material's noise is continuous
        across bands.
        """
        sp = self.span(*rect)
        if sp is None:
            return
        r0, r1, c0, c1 = sp
        noise = _Noise(self.rng, rect[0], rect[1], rect[2], rect[3])
        a = np.uint8(255 if material == "water" else 0)
        for b0 in range(r0, r1, _BAND):
            b1 = min(r1, b0 + _BAND)
            yy, xx = _coords(b0, b1, c0, c1, self.origin, self.ppm)
            rgb = MATERIALS[material](noise, self.rng, yy, xx, self.ppm)
            u8 = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
            if mask is None:
                self.rgb[b0:b1, c0:c1] = u8
                self.alpha[b0:b1, c0:c1] = a
            else:
                m = np.broadcast_to(mask(yy, xx), (b1 - b0, c1 - c0))
                np.copyto(self.rgb[b0:b1, c0:c1], u8, where=m[..., None])
                np.copyto(self.alpha[b0:b1, c0:c1], a, where=m)

    def paint(self, rect: Tuple[float, float, float, float], colour: Sequence[float], mask: Mask) -> None:
        """Paint a flat colour (markings) where ``mask(yy, xx)`` is True inside ``rect``."""
        sp = self.span(*rect)
        if sp is None:
            return
        r0, r1, c0, c1 = sp
        yy, xx = _coords(r0, r1, c0, c1, self.origin, self.ppm)
        m = np.broadcast_to(mask(yy, xx), (r1 - r0, c1 - c0))
        col = np.asarray(colour, np.float32)
        dst = self.rgb[r0:r1, c0:c1]
        wear = 0.75 + 0.25 * self.rng.random(int(m.sum()), dtype=np.float32)[:, None]
        dst[m] = np.clip((col[None, :] * wear + dst[m] / 255.0 * (1 - wear)) * 255.0, 0, 255).astype(np.uint8)
        self.alpha[r0:r1, c0:c1][m] = 0


_BAND = 256  # rows painted at a time


class _Noise:
    """Fractal value noise over one filled rectangle, a function of world position.

    Lattices of random values (one per feature size, drawn on first use) are interpolated at
    the world coordinates asked for, so that bands of one fill join without seams.
    """

    def __init__(self, rng: np.random.Generator, x0: float, y0: float, x1: float, y1: float) -> None:
        self.rng, self.x0, self.y0, self.x1, self.y1 = rng, x0, y0, x1, y1
        self.grids: Dict[float, np.ndarray] = {}

    def _octave(self, yy: np.ndarray, xx: np.ndarray, cell_m: float) -> np.ndarray:
        if cell_m not in self.grids:
            ny = int(math.ceil((self.y1 - self.y0) / cell_m)) + 4
            nx = int(math.ceil((self.x1 - self.x0) / cell_m)) + 4
            self.grids[cell_m] = self.rng.random((ny, nx), dtype=np.float32)
        h, w = yy.shape[0], xx.shape[1]
        mx = np.broadcast_to(((xx - self.x0) / cell_m + 1.0).astype(np.float32), (h, w))
        my = np.broadcast_to(((yy - self.y0) / cell_m + 1.0).astype(np.float32), (h, w))
        return cv2.remap(self.grids[cell_m], np.ascontiguousarray(mx), np.ascontiguousarray(my), cv2.INTER_CUBIC,
                         borderMode=cv2.BORDER_REPLICATE)

    def __call__(self, yy: np.ndarray, xx: np.ndarray, cell_m: float, ppm: float, octaves: int = 3) -> np.ndarray:
        """(h, w) float32 noise in [0, 1] with features about ``cell_m`` metres wide."""
        acc: np.ndarray | float = 0.0
        amp, total = 1.0, 0.0
        for _ in range(octaves):
            acc = acc + amp * self._octave(yy, xx, cell_m)
            total += amp
            amp *= 0.5
            cell_m = max(cell_m / 2.0, 1.0 / ppm)
        return np.clip(acc / total, 0.0, 1.0)


# --- materials: (noise, rng, yy (h, 1) world y, xx (1, w) world x, ppm) -> (h, w, 3) float32 ------


def _grain(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    return rng.random((yy.shape[0], xx.shape[1]), dtype=np.float32)


def _asphalt(nz: _Noise, rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, ppm: float) -> np.ndarray:
    n = nz(yy, xx, 4.0, ppm)
    g = _grain(rng, yy, xx)
    v = 0.2 + 0.07 * n + 0.05 * g
    patch = _hash2(np.floor(xx / 7.0), np.floor(yy / 5.0), 3.1) < 0.08
    v = np.where(patch, v * 0.8, v)
    return np.stack([v, v, v * 1.04], -1)


def _pavement(nz: _Noise, rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, ppm: float) -> np.ndarray:
    t = 0.5
    tone = _hash2(np.floor(xx / t), np.floor(yy / t), 1.7)
    joint = ((xx % t) < 1.0 / ppm) | ((yy % t) < 1.0 / ppm)
    n = nz(yy, xx, 3.0, ppm)
    v = 0.55 + 0.08 * tone + 0.06 * n
    rgb = np.stack([v * 1.02, v, v * 0.96], -1)
    return np.where(joint[..., None], rgb * 0.75, rgb)


def _grass(nz: _Noise, rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, ppm: float) -> np.ndarray:
    n = nz(yy, xx, 6.0, ppm)
    g = _grain(rng, yy, xx)
    base = np.array([0.24, 0.42, 0.14], np.float32)
    rgb = base * (0.65 + 0.45 * n[..., None] + 0.2 * g[..., None])
    dry = nz(yy, xx, 15.0, ppm) > 0.62
    return np.where(dry[..., None], rgb * np.array([1.35, 1.1, 0.9], np.float32), rgb)


def _path(nz: _Noise, rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, ppm: float) -> np.ndarray:
    g = _grain(rng, yy, xx)
    n = nz(yy, xx, 2.0, ppm)
    return np.array([0.66, 0.58, 0.46], np.float32) * (0.8 + 0.2 * g[..., None] + 0.1 * n[..., None])


def _plaza(nz: _Noise, rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, ppm: float) -> np.ndarray:
    t = 1.2
    ci, cj = np.floor(xx / t), np.floor(yy / t)
    checker = ((ci + cj) % 2 == 0)
    diag = (((ci + cj) % 6) == 0) | (((ci - cj) % 6) == 0)
    tone = _hash2(ci, cj, 5.5)
    a = np.array([0.72, 0.69, 0.64], np.float32)
    b = np.array([0.55, 0.5, 0.46], np.float32)
    c = np.array([0.62, 0.42, 0.36], np.float32)
    rgb = np.where(checker[..., None], a, b)
    rgb = np.where(diag[..., None], c, rgb) * (0.9 + 0.15 * tone[..., None])
    joint = ((xx % t) < 1.0 / ppm) | ((yy % t) < 1.0 / ppm)
    return np.where(joint[..., None], rgb * 0.7, rgb)


def _plaza_ring(nz: _Noise, rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, ppm: float) -> np.ndarray:
    v = 0.45 + 0.1 * _grain(rng, yy, xx)
    return np.stack([v, v * 0.95, v * 0.9], -1)


def _parking(nz: _Noise, rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, ppm: float) -> np.ndarray:
    rgb = _asphalt(nz, rng, yy, xx, ppm) * 1.15
    stain = nz(yy, xx, 1.5, ppm) > 0.7
    return np.where(stain[..., None], rgb * 0.7, rgb)


def _promenade(nz: _Noise, rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, ppm: float) -> np.ndarray:
    tw, th = 0.8, 0.4
    row = np.floor(yy / th)
    xs = xx + (row % 2) * tw / 2
    tone = _hash2(np.floor(xs / tw), row, 9.9)
    v = 0.5 + 0.15 * tone + 0.05 * _grain(rng, yy, xx)
    rgb = np.stack([v, v * 0.98, v * 0.93], -1)
    joint = ((xs % tw) < 1.0 / ppm) | ((yy % th) < 1.0 / ppm)
    return np.where(joint[..., None], rgb * 0.72, rgb)


def _water(nz: _Noise, rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, ppm: float) -> np.ndarray:
    n = nz(yy, xx, 3.0, ppm)
    return np.array([0.1, 0.2, 0.24], np.float32) * (0.8 + 0.4 * n[..., None])


def _courtyard(nz: _Noise, rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, ppm: float) -> np.ndarray:
    n = nz(yy, xx, 5.0, ppm)
    v = 0.5 + 0.1 * n + 0.05 * _grain(rng, yy, xx)
    return np.stack([v, v * 0.97, v * 0.92], -1)


def _soil(nz: _Noise, rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, ppm: float) -> np.ndarray:
    v = 0.22 + 0.08 * _grain(rng, yy, xx)
    return np.stack([v * 1.2, v, v * 0.8], -1)


MATERIALS: Dict[str, Callable[..., np.ndarray]] = {
    "asphalt": _asphalt,
    "pavement": _pavement,
    "grass": _grass,
    "path": _path,
    "plaza": _plaza,
    "plaza_ring": _plaza_ring,
    "parking": _parking,
    "promenade": _promenade,
    "water": _water,
    "courtyard": _courtyard,
    "soil": _soil,
}

WHITE = (0.86, 0.86, 0.82)
YELLOW = (0.85, 0.68, 0.12)


def build_ground(cfg: WorldConfig, streets_x: np.ndarray, streets_y: np.ndarray, blocks: Sequence[Block],
                 paint: List[Tuple[str, Tuple[Any, ...]]], rng: np.random.Generator, water_y: Optional[float]) -> GroundMap:
    """Rasterise the ground of a town: streets, markings, zones and the decals in ``paint``
    (``("rect", (x0, y0, x1, y1, material))``, ``("pond", (cx, cy, r))``, ``("disc", (cx, cy,
    r, material))``, ``("pit", (cx, cy, r))``, ``("bay", (x0, y0, x1, y1))``); water south of
    ``water_y`` (None = no lake)."""
    ppm = cfg.ground_ppm
    origin = -MARGIN_M
    extent = cfg.size_m + 2 * MARGIN_M
    n = int(round(extent * ppm))
    p = _Painter(n, origin, ppm, rng)
    lo, hi = origin, origin + extent
    hw, rh = cfg.street_width_m / 2, cfg.road_half_m
    xs, ys = streets_x, streets_y

    p.fill((lo, lo, hi, hi), "grass")
    for b in blocks:
        if b.zone == "street":
            p.fill((b.x0, b.y0, b.x1, b.y1), "courtyard")
    # street corridors: pavement then carriageway
    y_start = (ys[0] - hw) if (cfg.waterfront and len(ys)) else lo
    for c in xs:
        p.fill((c - hw, y_start, c + hw, hi), "pavement")
    for c in ys:
        p.fill((lo, c - hw, hi, c + hw), "pavement")
    for c in xs:
        p.fill((c - rh, y_start + (hw - rh if cfg.waterfront else 0.0), c + rh, hi), "asphalt")
    for c in ys:
        p.fill((lo, c - rh, hi, c + rh), "asphalt")
    _markings(p, cfg, xs, ys, y_start, lo, hi)
    # zone decals
    for kind, args in paint:
        if kind == "rect":
            x0, y0, x1, y1, mat = args
            p.fill((x0, y0, x1, y1), mat)
        elif kind == "pond":
            cx, cy, r = args
            p.fill((cx - r * 1.4, cy - r, cx + r * 1.4, cy + r), "water",
                   lambda yy, xx, cx=cx, cy=cy, r=r: ((xx - cx) / 1.4) ** 2 + (yy - cy) ** 2 < r * r)
        elif kind == "disc":
            cx, cy, r, mat = args
            p.fill((cx - r, cy - r, cx + r, cy + r), mat, lambda yy, xx, cx=cx, cy=cy, r=r: (xx - cx) ** 2 + (yy - cy) ** 2 < r * r)
        elif kind == "pit":
            cx, cy, r = args
            p.fill((cx - r, cy - r, cx + r, cy + r), "soil")
        elif kind == "bay":
            x0, y0, x1, y1 = args
            lw = 0.12
            p.paint((x0, y0, x1, y1), WHITE, lambda yy, xx, x0=x0, x1=x1: (np.abs(xx - x0) < lw) | (np.abs(xx - x1) < lw))
    if water_y is not None:
        p.fill((lo, lo, hi, water_y), "water")
    rgba = np.concatenate([p.rgb, p.alpha[..., None]], axis=2)
    levels = [rgba]
    ppms = [ppm]
    for f in (4, 16):
        m = int(round(n / f))
        small = cv2.resize(rgba, (m, m), interpolation=cv2.INTER_AREA)
        small[..., 3] = np.where(small[..., 3] >= 128, 255, 0).astype(np.uint8)
        levels.append(np.ascontiguousarray(small))
        ppms.append(ppm * m / n)
    detail = 0.86 + 0.28 * value_noise(np.random.default_rng(rng.integers(1 << 31)), 128, 128, 1.5)
    return GroundMap(levels=levels, ppm=ppms, origin=origin, detail=detail.astype(np.float32))


def _markings(p: _Painter, cfg: WorldConfig, xs: np.ndarray, ys: np.ndarray, y_start: float, lo: float, hi: float) -> None:
    """Centre lines, lane dividers, edge lines, zebra crossings, stop lines and kerbs."""
    hw, rh, lw = cfg.street_width_m / 2, cfg.road_half_m, cfg.lane_width_m

    def away(v: np.ndarray, centres: np.ndarray) -> np.ndarray:
        """True where coordinate v is outside every intersection of the crossing streets."""
        if len(centres) == 0:
            return np.ones_like(v, bool)
        return np.min(np.abs(v[..., None] - centres), axis=-1) > hw

    for axis, lines, cross in (("x", xs, ys), ("y", ys, xs)):
        for c in lines:
            if axis == "x":
                rect = (c - rh, y_start, c + rh, hi)

                def off_along(yy: np.ndarray, xx: np.ndarray, c: float = c) -> Tuple[np.ndarray, np.ndarray]:
                    return xx - c, yy
            else:
                rect = (lo, c - rh, hi, c + rh)

                def off_along(yy: np.ndarray, xx: np.ndarray, c: float = c) -> Tuple[np.ndarray, np.ndarray]:
                    return yy - c, xx

            def centre(yy: np.ndarray, xx: np.ndarray, f: Callable = off_along) -> np.ndarray:
                o, a = f(yy, xx)
                return ((np.abs(np.abs(o) - 0.15) < 0.07)) & away(a, cross)

            def dashes(yy: np.ndarray, xx: np.ndarray, f: Callable = off_along) -> np.ndarray:
                o, a = f(yy, xx)
                m = np.zeros(np.broadcast_shapes(o.shape, a.shape), bool)
                for k in range(1, cfg.lanes_per_direction):
                    m |= np.abs(np.abs(o) - k * lw) < 0.08
                return m & ((a % 9.0) < 3.5) & away(a, cross)

            def edges(yy: np.ndarray, xx: np.ndarray, f: Callable = off_along) -> np.ndarray:
                o, a = f(yy, xx)
                return (np.abs(np.abs(o) - (rh - 0.35)) < 0.08) & away(a, cross)

            def zebra(yy: np.ndarray, xx: np.ndarray, f: Callable = off_along) -> np.ndarray:
                o, a = f(yy, xx)
                if len(cross) == 0:
                    return np.zeros(np.broadcast_shapes(o.shape, a.shape), bool)
                d = np.min(np.abs(a[..., None] - cross), axis=-1)
                band = (d > hw + 0.5) & (d < hw + 4.5)
                return band & ((o % 1.0) < 0.5) & (np.abs(o) < rh - 0.4)

            def stop(yy: np.ndarray, xx: np.ndarray, f: Callable = off_along) -> np.ndarray:
                o, a = f(yy, xx)
                if len(cross) == 0:
                    return np.zeros(np.broadcast_shapes(o.shape, a.shape), bool)
                d = np.min(np.abs(a[..., None] - cross), axis=-1)
                return (np.abs(d - (hw + 5.5)) < 0.2) & (np.abs(o) < rh - 0.3)

            p.paint(rect, YELLOW, centre)
            p.paint(rect, WHITE, dashes)
            p.paint(rect, WHITE, edges)
            p.paint(rect, WHITE, zebra)
            p.paint(rect, WHITE, stop)
            # kerb stones
            kerb_rect = (c - rh - 0.25, y_start, c + rh + 0.25, hi) if axis == "x" else (lo, c - rh - 0.25, hi, c + rh + 0.25)
            p.paint(kerb_rect, (0.68, 0.67, 0.64), lambda yy, xx, f=off_along: (np.abs(np.abs(f(yy, xx)[0]) - rh - 0.12) < 0.12) & away(f(yy, xx)[1], cross))
