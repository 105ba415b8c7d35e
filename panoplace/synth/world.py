"""The procedural town: streets, zoned blocks, buildings, trees, street furniture, a route.

A town is generated from :class:`WorldConfig` by :func:`build_world`; the same config (seed
included) gives the same town bit for bit. The town is 2.5D, which is what the column ray
caster of :mod:`panoplace.synth.render` needs:

- axis-aligned boxes (buildings, cars, benches, shelters, parapets, boats) with a texture
  wrapped around their four walls,
- vertical cylinders (trunks, poles, bins, pedestrians, fountains) and crown ellipsoids,
- a ground raster (asphalt, lane markings, zebra crossings, pavements, grass, paths,
  plaza paving, parking bays, water) and distant hills.

Layout: a perturbed street grid (random spacing) divides the square into blocks; every
block gets a zone (``street``: buildings with shops; ``park``; ``plaza``; ``parking``;
``waterfront``: the lake shore along the south edge). The route is the boundary of a random
hole-free set of inner blocks that touches the lake, so it runs along streets through
several zones.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from panoplace.errors import InputError
from panoplace.synth import textures as tx
from panoplace.synth.ground import GroundMap, build_ground
from panoplace.synth.layout import SCENES, Block, WorldConfig
from panoplace.synth.routes import Route

log = logging.getLogger(__name__)

ZONE_ROAD = 255  # zone raster code of street corridors (not a scene)


# ---------------------------------------------------------------------------------------------
# primitives
# ---------------------------------------------------------------------------------------------

BOX_FIELDS = ("x0", "y0", "x1", "y1", "z0", "z1", "tex", "occluder")
CYL_FIELDS = ("cx", "cy", "r", "z0", "z1", "tex")
CROWN_FIELDS = ("cx", "cy", "a", "zc", "b", "tex")


@dataclass
class Primitives:
    """Renderable shapes as parallel arrays.

    boxes: axis-aligned boxes, each field (NB,): ``x0 < x1``, ``y0 < y1``, ``z0 < z1``
        metres; ``tex`` texture id (four walls side by side: south, east, north, west);
        ``occluder`` True for buildings (ground-rooted, taller than the camera).
    cylinders: vertical cylinders (NC,): centre ``cx, cy``, radius ``r``, ``z0 .. z1``, ``tex``.
    crowns: ellipsoids (NE,): centre ``cx, cy, zc``, horizontal radius ``a``, half height ``b``.
    """

    boxes: Dict[str, np.ndarray]
    cylinders: Dict[str, np.ndarray]
    crowns: Dict[str, np.ndarray]

    @staticmethod
    def empty() -> "Primitives":
        return PrimitiveBuilder().build()

    def __add__(self, other: "Primitives") -> "Primitives":
        def cat(a: Dict[str, np.ndarray], b: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
            return {k: np.concatenate([a[k], b[k]]) for k in a}

        return Primitives(cat(self.boxes, other.boxes), cat(self.cylinders, other.cylinders), cat(self.crowns, other.crowns))

    def counts(self) -> Dict[str, int]:
        return {"boxes": len(self.boxes["tex"]), "cylinders": len(self.cylinders["tex"]), "crowns": len(self.crowns["tex"])}


class PrimitiveBuilder:
    """Accumulates shapes one by one, then :meth:`build` makes :class:`Primitives`."""

    def __init__(self) -> None:
        self.boxes: List[Tuple[float, ...]] = []
        self.cylinders: List[Tuple[float, ...]] = []
        self.crowns: List[Tuple[float, ...]] = []

    def box(self, x0: float, y0: float, x1: float, y1: float, z0: float, z1: float, tex: int, occluder: bool = False) -> None:
        self.boxes.append((min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1), z0, z1, tex, occluder))

    def cylinder(self, cx: float, cy: float, r: float, z0: float, z1: float, tex: int) -> None:
        self.cylinders.append((cx, cy, r, z0, z1, tex))

    def crown(self, cx: float, cy: float, a: float, zc: float, b: float, tex: int) -> None:
        self.crowns.append((cx, cy, a, zc, b, tex))

    @staticmethod
    def _arrays(rows: List[Tuple[float, ...]], fields: Sequence[str]) -> Dict[str, np.ndarray]:
        arr = np.asarray(rows, dtype=np.float64).reshape(-1, len(fields))
        out = {f: arr[:, i].copy() for i, f in enumerate(fields)}
        out["tex"] = out["tex"].astype(np.int64)
        if "occluder" in out:
            out["occluder"] = out["occluder"].astype(bool)
        return out

    def build(self) -> Primitives:
        return Primitives(
            self._arrays(self.boxes, BOX_FIELDS),
            self._arrays(self.cylinders, CYL_FIELDS),
            self._arrays(self.crowns, CROWN_FIELDS),
        )


# ---------------------------------------------------------------------------------------------
# world
# ---------------------------------------------------------------------------------------------


@dataclass
class VehicleModel:
    """A vehicle texture in the atlas and the box it wraps."""

    tex: int
    length: float
    width: float
    height: float
    along_x: bool
    forward: bool
    kind: str


@dataclass
class World:
    """A generated town; see the module docstring. Built by :func:`build_world`.

    streets_x / streets_y: centreline coordinates of N-S / E-W streets (metres).
    blocks: every block with its zone. static: the static shapes. atlas: all textures.
    ground: the ground raster (see :mod:`panoplace.synth.ground`). zones: (Z, Z) uint8 scene
    index per metre (``ZONE_ROAD`` on streets), origin ``zone_origin``. lamps: (L, 3) lamp
    heads x, y, z. route: the loop driven by traversals. hills: (n,) heights (m) of the
    backdrop per world azimuth bin (bin 0 = north, clockwise), texture ``hills_tex``.
    vehicles / people: texture pools for dynamic objects; parking_bays: (P, 4) free bay
    rectangles x0, y0, x1, y1 for dynamic parked cars; sidewalk_segments: (S, 4) pavement
    centre segments x0, y0, x1, y1 for pedestrians; lane_segments: (R, 6) road lanes
    x0, y0, x1, y1, direction sign (+1 = towards +x / +y), lane index (0 = next to the
    centre line).
    """

    config: WorldConfig
    streets_x: np.ndarray
    streets_y: np.ndarray
    blocks: List[Block]
    static: Primitives
    atlas: tx.TextureAtlas
    ground: GroundMap
    zones: np.ndarray
    zone_origin: float
    lamps: np.ndarray
    route: Route
    hills: np.ndarray
    hills_tex: int
    vehicles: List[VehicleModel]
    people: List[Tuple[int, float, float]]
    parking_bays: np.ndarray
    sidewalk_segments: np.ndarray
    lane_segments: np.ndarray
    backdrop_m: float = 2500.0
    cache: Dict[str, Any] = field(default_factory=dict, repr=False)

    def scene_at(self, x: float, y: float, radius_m: float = 30.0) -> str:
        """Scene label at a position: the non-street zone covering >= 25 % of the blocks
        within ``radius_m`` (the most common one), else ``street``."""
        z = self.zones
        r = int(radius_m)
        cx, cy = int(round(x - self.zone_origin)), int(round(y - self.zone_origin))
        y0, y1 = max(0, cy - r), min(z.shape[0], cy + r + 1)
        x0, x1 = max(0, cx - r), min(z.shape[1], cx + r + 1)
        patch = z[y0:y1, x0:x1]
        yy, xx = np.mgrid[y0:y1, x0:x1]
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        vals = patch[disc & (patch != ZONE_ROAD)]
        if vals.size == 0:
            return "street"
        counts = np.bincount(vals, minlength=len(SCENES))
        counts[0] = 0
        best = int(np.argmax(counts))
        return SCENES[best] if counts[best] >= 0.25 * vals.size else "street"

    def describe(self) -> Dict[str, Any]:
        """A JSON-able summary (parameters, zones, counts) for world.json."""
        zones: Dict[str, int] = {}
        for b in self.blocks:
            zones[b.zone] = zones.get(b.zone, 0) + 1
        return {
            "config": self.config.to_dict(),
            "streets_x": [round(float(v), 3) for v in self.streets_x],
            "streets_y": [round(float(v), 3) for v in self.streets_y],
            "blocks_per_zone": zones,
            "shapes": self.static.counts(),
            "textures": len(self.atlas),
            "lamps": int(self.lamps.shape[0]),
            "route": {
                "length_m": round(self.route.length_m, 3),
                "corners": [[round(float(a), 3), round(float(b), 3)] for a, b in self.route.corners],
            },
        }


# ---------------------------------------------------------------------------------------------
# layout
# ---------------------------------------------------------------------------------------------


def _street_lines(rng: np.random.Generator, cfg: WorldConfig) -> np.ndarray:
    """Centrelines of parallel streets across [0, size]: a grid with random spacing."""
    hw = cfg.street_width_m / 2
    pos = [float(rng.uniform(35.0, 50.0)) + hw]
    while True:
        nxt = pos[-1] + cfg.street_width_m + float(rng.uniform(cfg.block_min_m, cfg.block_max_m))
        if nxt > cfg.size_m - 35.0 - hw:
            break
        pos.append(nxt)
    return np.array(pos)


def _intervals(lines: np.ndarray, size: float, hw: float) -> List[Tuple[float, float]]:
    edges = [0.0] + [v for p in lines for v in (p - hw, p + hw)] + [size]
    return [(edges[2 * k], edges[2 * k + 1]) for k in range(len(edges) // 2)]


def _has_pinch_or_hole(mask: np.ndarray) -> bool:
    """True if a set of grid cells touches itself only diagonally or encloses a hole."""
    m = np.pad(mask, 1)
    a, b, c, d = m[:-1, :-1], m[:-1, 1:], m[1:, :-1], m[1:, 1:]
    if np.any((a & d & ~b & ~c) | (b & c & ~a & ~d)):
        return True
    # flood fill the outside
    outside = np.zeros_like(m)
    stack = [(0, 0)]
    outside[0, 0] = True
    while stack:
        y, x = stack.pop()
        for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            yy, xx = y + dy, x + dx
            if 0 <= yy < m.shape[0] and 0 <= xx < m.shape[1] and not m[yy, xx] and not outside[yy, xx]:
                outside[yy, xx] = True
                stack.append((yy, xx))
    return bool(np.any(~m & ~outside))


def _loop_corners(mask: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> List[Tuple[float, float]]:
    """Counter-clockwise boundary of a hole-free cell set as street intersections.

    mask[j, i] over inner blocks; inner block (i, j) lies between streets i-1..i (x) and
    j-1..j (y) in 0-based street indices of ``xs`` / ``ys`` after an offset of one.
    """
    edges: Dict[Tuple[Tuple[int, int], Tuple[int, int]], Tuple[int, int]] = {}
    ny, nx = mask.shape
    for j in range(ny):
        for i in range(nx):
            if not mask[j, i]:
                continue
            # corners in street-index space: (i, j) .. (i+1, j+1); CCW
            cyc = [(i, j), (i + 1, j), (i + 1, j + 1), (i, j + 1)]
            for k in range(4):
                a, b = cyc[k], cyc[(k + 1) % 4]
                if (b, a) in edges:
                    del edges[(b, a)]
                else:
                    edges[(a, b)] = b
    nxt = {a: b for (a, b) in edges}
    start = min(nxt)
    loop = [start]
    cur = nxt[start]
    while cur != start:
        loop.append(cur)
        cur = nxt[cur]
    # drop collinear points
    pts = []
    n = len(loop)
    for k in range(n):
        p, q, r = loop[k - 1], loop[k], loop[(k + 1) % n]
        if (q[0] - p[0]) * (r[1] - q[1]) - (q[1] - p[1]) * (r[0] - q[0]) != 0:
            pts.append(q)
    return [(float(xs[a]), float(ys[b])) for a, b in pts]


def _grow_route_region(rng: np.random.Generator, xs: np.ndarray, ys: np.ndarray, target: float, waterfront: bool) -> np.ndarray:
    """Grow a random hole-free set of inner blocks until its perimeter reaches ``target``."""
    nx, ny = len(xs) - 1, len(ys) - 1
    mask = np.zeros((ny, nx), bool)
    start_j = 0 if waterfront else int(rng.integers(ny))
    mask[start_j, int(rng.integers(nx))] = True

    def perimeter(m: np.ndarray) -> float:
        p = 0.0
        for j in range(ny):
            for i in range(nx):
                if not m[j, i]:
                    continue
                w, h = xs[i + 1] - xs[i], ys[j + 1] - ys[j]
                p += w * ((j == 0 or not m[j - 1, i]) + (j == ny - 1 or not m[j + 1, i]))
                p += h * ((i == 0 or not m[j, i - 1]) + (i == nx - 1 or not m[j, i + 1]))
        return p

    while perimeter(mask) < target:
        cand = []
        for j in range(ny):
            for i in range(nx):
                if mask[j, i]:
                    continue
                if any(0 <= j + dj < ny and 0 <= i + di < nx and mask[j + dj, i + di] for dj, di in ((1, 0), (-1, 0), (0, 1), (0, -1))):
                    m2 = mask.copy()
                    m2[j, i] = True
                    if not _has_pinch_or_hole(m2):
                        cand.append((j, i))
        if not cand:
            break
        j, i = cand[int(rng.integers(len(cand)))]
        mask[j, i] = True
    return mask


# ---------------------------------------------------------------------------------------------
# contents
# ---------------------------------------------------------------------------------------------


class _Gen:
    """Holds the generators and accumulators while a town is built."""

    def __init__(self, cfg: WorldConfig) -> None:
        self.cfg = cfg
        ss = np.random.SeedSequence([int(cfg.seed), 0x9A40])
        kids = ss.spawn(8)
        self.rng_layout = np.random.default_rng(kids[0])
        self.rng_build = np.random.default_rng(kids[1])
        self.rng_tex = np.random.default_rng(kids[2])
        self.rng_nature = np.random.default_rng(kids[3])
        self.rng_furn = np.random.default_rng(kids[4])
        self.rng_ground = np.random.default_rng(kids[5])
        self.rng_pool = np.random.default_rng(kids[6])
        self.rng_misc = np.random.default_rng(kids[7])
        self.atlas = tx.AtlasBuilder()
        self.prims = PrimitiveBuilder()
        self.lamps: List[Tuple[float, float, float]] = []
        self.paint: List[Tuple[str, Tuple[Any, ...]]] = []  # ground decals (see ground.py)
        self.parking_free: List[Tuple[float, float, float, float]] = []
        self.sidewalks: List[Tuple[float, float, float, float]] = []
        ppm = cfg.texture_ppm
        r = self.rng_tex
        # shared small textures
        self.crown_tex = [
            self.atlas.add(tx.crown_texture(r, c), 12.0)
            for c in r.uniform([0.12, 0.3, 0.08], [0.35, 0.55, 0.2], (14, 3))
        ] + [self.atlas.add(tx.crown_texture(r, c), 12.0) for c in ([0.55, 0.45, 0.12], [0.5, 0.2, 0.1], [0.16, 0.28, 0.18])]
        self.bark_tex = [self.atlas.add(tx.bark_texture(r), 12.0) for _ in range(4)]
        self.pole_tex = [
            self.atlas.add(tx.solid_texture(r, c, noise=0.08), 10.0)
            for c in ([0.25, 0.27, 0.28], [0.15, 0.25, 0.18], [0.6, 0.6, 0.6])
        ]
        self.lamp_head_tex = self.atlas.add(tx.lamp_head_texture(r), 20.0)
        self.sign_tex = [self.atlas.add(tx.sign_disc_texture(r), 16.0) for _ in range(6)]
        self.bin_tex = [
            self.atlas.add(tx.solid_texture(r, c, noise=0.15), 10.0) for c in ([0.2, 0.4, 0.25], [0.35, 0.35, 0.38], [0.6, 0.35, 0.1])
        ]
        self.jet_tex = self.atlas.add(tx.water_jet_texture(r), 8.0)
        self.bronze_tex = self.atlas.add(tx.solid_texture(r, [0.35, 0.27, 0.15], noise=0.25), 8.0)
        self.ppm = ppm


def _block_street_sides(blk: Block, nx: int, ny: int, waterfront: bool) -> List[bool]:
    """Which sides (south, east, north, west) of a block face a street."""
    south = blk.j >= 1
    return [south, blk.i <= nx - 2, blk.j <= ny - 2, blk.i >= 1]


def _split_lots(rng: np.random.Generator, x0: float, y0: float, x1: float, y1: float, max_side: float) -> List[Tuple[float, float, float, float]]:
    w, h = x1 - x0, y1 - y0
    if max(w, h) <= max_side:
        return [(x0, y0, x1, y1)]
    f = float(rng.uniform(0.35, 0.65))
    if w >= h:
        xm = x0 + w * f
        return _split_lots(rng, x0, y0, xm, y1, max_side) + _split_lots(rng, xm, y0, x1, y1, max_side)
    ym = y0 + h * f
    return _split_lots(rng, x0, y0, x1, ym, max_side) + _split_lots(rng, x0, ym, x1, y1, max_side)


def _add_building(g: _Gen, x0: float, y0: float, x1: float, y1: float, height: float, style: tx.FacadeStyle,
                  street: List[bool], shops: bool, ground_floor: bool = True, z0: float = 0.0) -> None:
    faces = [x1 - x0, y1 - y0, x1 - x0, y1 - y0]
    tex = g.atlas.add(tx.facade_texture(g.rng_tex, style, faces, height - z0, street, g.ppm, shops, ground_floor), g.ppm)
    g.prims.box(x0, y0, x1, y1, z0, height, tex, occluder=(z0 == 0.0))


def _rooftop(g: _Gen, x0: float, y0: float, x1: float, y1: float, top: float) -> None:
    """Stair/lift housings, water tanks and billboards on a flat roof."""
    rng = g.rng_build
    if rng.random() < 0.4:
        w, d = float(rng.uniform(3, 6)), float(rng.uniform(3, 5))
        if w < x1 - x0 - 2 and d < y1 - y0 - 2:
            cx = float(rng.uniform(x0 + 1 + w / 2, x1 - 1 - w / 2))
            cy = float(rng.uniform(y0 + 1 + d / 2, y1 - 1 - d / 2))
            h = float(rng.uniform(2.2, 3.5))
            tex = g.atlas.add(tx.stone_texture(g.rng_tex, 2 * (w + d), h, 6.0, tx.WALL_COLOURS[int(rng.integers(len(tx.WALL_COLOURS)))] * 0.9), 6.0)
            g.prims.box(cx - w / 2, cy - d / 2, cx + w / 2, cy + d / 2, top, top + h, tex)
    if rng.random() < 0.2:
        cx, cy = float(rng.uniform(x0 + 2, x1 - 2)), float(rng.uniform(y0 + 2, y1 - 2))
        g.prims.cylinder(cx, cy, 1.2, top, top + 3.0, g.pole_tex[2])
    if rng.random() < 0.15:
        # a billboard along the longer roof edge
        along_x = (x1 - x0) >= (y1 - y0)
        length = min(float(rng.uniform(6, 14)), (x1 - x0 if along_x else y1 - y0) - 1)
        if length > 3:
            h = float(rng.uniform(2.5, 4.5))
            faces = [length, 0.3, length, 0.3] if along_x else [0.3, length, 0.3, length]
            tex = g.atlas.add(tx.billboard_texture(g.rng_tex, faces, h, 8.0), 8.0)
            if along_x:
                cx, cy = (x0 + x1) / 2, y0 + 1.0
                g.prims.box(cx - length / 2, cy - 0.15, cx + length / 2, cy + 0.15, top + 0.8, top + 0.8 + h, tex)
            else:
                cx, cy = x0 + 1.0, (y0 + y1) / 2
                g.prims.box(cx - 0.15, cy - length / 2, cx + 0.15, cy + length / 2, top + 0.8, top + 0.8 + h, tex)


def _street_block(g: _Gen, blk: Block, sides: List[bool]) -> None:
    """Buildings on lots along the block's edges (courtyards inside)."""
    rng = g.rng_build
    tall = rng.random() < 0.35
    # half the blocks are one development: sibling facades (perceptual aliasing, as in real towns)
    district = tx.random_style(g.rng_tex) if rng.random() < 0.5 else None
    lots = _split_lots(rng, blk.x0, blk.y0, blk.x1, blk.y1, float(rng.uniform(16.0, 30.0)))
    eps = 0.01
    for (lx0, ly0, lx1, ly1) in lots:
        touch = [ly0 <= blk.y0 + eps, lx1 >= blk.x1 - eps, ly1 >= blk.y1 - eps, lx0 <= blk.x0 + eps]
        if not any(touch) and rng.random() < 0.6:
            continue
        street = [t and s for t, s in zip(touch, sides)]
        inset = []
        for k in range(4):
            if street[k]:
                inset.append(float(rng.uniform(0.0, 3.0)) if rng.random() < 0.5 else 0.0)
            elif touch[k]:
                inset.append(float(rng.uniform(0.5, 3.0)))
            else:
                inset.append(float(rng.uniform(0.5, 2.5)) if rng.random() < 0.5 else 0.0)
        bx0, by0, bx1, by1 = lx0 + inset[3], ly0 + inset[0], lx1 - inset[1], ly1 - inset[2]
        if bx1 - bx0 < 6.0 or by1 - by0 < 6.0:
            continue
        style = tx.vary_style(g.rng_tex, district) if district is not None else tx.random_style(g.rng_tex)
        floors = int(rng.choice([2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 8, 10]))
        if tall and rng.random() < 0.4:
            floors = int(rng.integers(9, 18))
        height = style.ground_h + (floors - 1) * style.floor_h + float(rng.uniform(0.4, 1.2))
        shops = rng.random() < 0.8
        big = (bx1 - bx0) > 16 and (by1 - by0) > 16
        if big and rng.random() < 0.35:
            # podium with a tower set back on it
            pod_h = style.ground_h + float(rng.integers(0, 2)) * style.floor_h + 0.6
            _add_building(g, bx0, by0, bx1, by1, pod_h, style, street, shops)
            m = float(rng.uniform(2.5, 5.0))
            tx0, ty0, tx1, ty1 = bx0 + m, by0 + m, bx1 - m, by1 - m
            tower_h = pod_h + float(rng.integers(6, 16)) * style.floor_h
            style2 = tx.random_style(g.rng_tex) if rng.random() < 0.5 else style
            _add_building(g, tx0, ty0, tx1, ty1, tower_h, style2, street, False, ground_floor=False, z0=0.0)
            _rooftop(g, tx0, ty0, tx1, ty1, tower_h)
        else:
            _add_building(g, bx0, by0, bx1, by1, height, style, street, shops)
            _rooftop(g, bx0, by0, bx1, by1, height)


def _tree(g: _Gen, x: float, y: float, species: Tuple[int, float, float, float], jitter: float = 0.15) -> None:
    rng = g.rng_nature
    tex, a, zc, b = species
    s = float(rng.uniform(1 - jitter, 1 + jitter))
    a, zc, b = a * s, zc * s, b * s
    trunk_r = max(0.12, 0.07 * a)
    g.prims.cylinder(x, y, trunk_r, 0.0, zc - 0.3 * b, g.bark_tex[int(rng.integers(len(g.bark_tex)))])
    g.prims.crown(x, y, a, zc, b, int(tex))


def _species(g: _Gen) -> Tuple[int, float, float, float]:
    """A tree species: crown texture, horizontal radius, crown-centre height, half height."""
    rng = g.rng_nature
    kind = rng.random()
    if kind < 0.2:  # columnar (poplar, cypress)
        a = float(rng.uniform(1.0, 1.8))
        b = a * float(rng.uniform(2.5, 4.0))
        zc = b + float(rng.uniform(0.8, 2.0))
    elif kind < 0.4:  # wide and flat (camphor, plane)
        a = float(rng.uniform(3.5, 5.5))
        b = a * float(rng.uniform(0.55, 0.8))
        zc = b + float(rng.uniform(2.5, 4.0))
    else:
        a = float(rng.uniform(1.8, 4.0))
        b = a * float(rng.uniform(0.8, 1.4))
        zc = b + float(rng.uniform(1.8, 3.5))
    tex = g.crown_tex[int(rng.integers(len(g.crown_tex)))]
    return (tex, a, zc, b)


def _lamp(g: _Gen, x: float, y: float, height: float = 7.0) -> None:
    rng = g.rng_furn
    g.prims.cylinder(x, y, 0.1, 0.0, height, g.pole_tex[0 if rng.random() < 0.7 else 1])
    g.prims.cylinder(x, y, 0.32, height - 0.05, height + 0.35, g.lamp_head_tex)
    g.lamps.append((x, y, height))


def _bench(g: _Gen, x: float, y: float, along_x: bool) -> None:
    lx, ly = (1.8, 0.6) if along_x else (0.6, 1.8)
    faces = [lx, ly, lx, ly]
    tex = g.atlas.add(tx.bench_texture(g.rng_tex, faces, 0.9, 16.0), 16.0)
    g.prims.box(x - lx / 2, y - ly / 2, x + lx / 2, y + ly / 2, 0.0, 0.9, tex)


def _shelter(g: _Gen, x: float, y: float, along_x: bool) -> None:
    lx, ly = (4.0, 1.5) if along_x else (1.5, 4.0)
    faces = [lx, ly, lx, ly]
    tex = g.atlas.add(tx.shelter_texture(g.rng_tex, faces, 2.6, 10.0), 10.0)
    g.prims.box(x - lx / 2, y - ly / 2, x + lx / 2, y + ly / 2, 0.0, 2.6, tex)


def _sidewalk_furniture(g: _Gen, blk: Block, sides: List[bool], street_species: Dict[Tuple[str, int], Any],
                        xs: np.ndarray, ys: np.ndarray) -> None:
    """Street trees, lamps, bins, benches, shelters and signs on the block's pavements."""
    cfg, rng = g.cfg, g.rng_furn
    pav = cfg.street_width_m / 2 - cfg.road_half_m  # pavement width
    for side, on in enumerate(sides):
        if not on:
            continue
        if side in (0, 2):
            a0, a1 = blk.x0, blk.x1
            edge = blk.y0 if side == 0 else blk.y1
            out = -1.0 if side == 0 else 1.0
            key = ("y", int(np.argmin(np.abs(ys - (edge + out * cfg.street_width_m / 2)))))
        else:
            a0, a1 = blk.y0, blk.y1
            edge = blk.x1 if side == 1 else blk.x0
            out = 1.0 if side == 1 else -1.0
            key = ("x", int(np.argmin(np.abs(xs - (edge + out * cfg.street_width_m / 2)))))
        kerb = edge + out * (pav - 0.7)  # furniture line near the kerb
        inner = edge + out * 1.0  # near the building line
        mid = edge + out * pav / 2

        def at(t: float, off: float) -> Tuple[float, float]:
            return (t, off) if side in (0, 2) else (off, t)

        g.sidewalks.append((*at(a0, mid), *at(a1, mid)))
        species, spacing = street_species[key]
        length = a1 - a0
        if species is not None:
            n = int((length - 6.0) // spacing)
            for k in range(n + 1):
                t = a0 + 3.0 + k * spacing + float(rng.uniform(-0.4, 0.4))
                if t < a1 - 2.5:
                    _tree(g, *at(t, kerb), species)
                    g.paint.append(("pit", (*at(t, kerb), 0.7)))
        lamp_sp = float(rng.uniform(22.0, 30.0))
        t = a0 + lamp_sp / 2 + (spacing / 2 if species is not None else 0.0)
        while t < a1 - 3.0:
            _lamp(g, *at(t, kerb + out * 0.3))
            if rng.random() < 0.3:
                g.prims.cylinder(*at(t + 1.6, kerb), 0.28, 0.0, 1.0, g.bin_tex[int(rng.integers(len(g.bin_tex)))])
            t += lamp_sp
        if rng.random() < 0.5:
            t = float(rng.uniform(a0 + 5, a1 - 5))
            _bench(g, *at(t, inner + out * 0.4), side in (0, 2))
        if length > 30 and rng.random() < 0.3:
            t = float(rng.uniform(a0 + 8, a1 - 8))
            _shelter(g, *at(t, kerb - out * 0.6), side in (0, 2))
        if rng.random() < 0.6:
            t = a0 + 2.0 if rng.random() < 0.5 else a1 - 2.0
            x, y = at(t, kerb + out * 0.2)
            g.prims.cylinder(x, y, 0.05, 0.0, 2.9, g.pole_tex[2])
            g.prims.cylinder(x, y, 0.35, 2.2, 2.95, g.sign_tex[int(rng.integers(len(g.sign_tex)))])
        if rng.random() < 0.25:
            t = float(rng.uniform(a0 + 4, a1 - 4))
            x, y = at(t, inner + out * 0.3)
            faces = [0.8, 0.5, 0.8, 0.5] if side in (0, 2) else [0.5, 0.8, 0.5, 0.8]
            tex = g.atlas.add(tx.solid_texture(g.rng_tex, [0.5, 0.55, 0.5], h=10, w=26, noise=0.2), 10.0)
            g.prims.box(x - faces[0] / 2, y - faces[1] / 2, x + faces[0] / 2, y + faces[1] / 2, 0.0, 1.3, tex)


def _park_block(g: _Gen, blk: Block) -> None:
    rng = g.rng_nature
    g.paint.append(("rect", (blk.x0, blk.y0, blk.x1, blk.y1, "grass")))
    cx, cy = (blk.x0 + blk.x1) / 2 + float(rng.uniform(-5, 5)), (blk.y0 + blk.y1) / 2 + float(rng.uniform(-5, 5))
    pw = 3.0
    g.paint.append(("rect", (blk.x0, cy - pw / 2, blk.x1, cy + pw / 2, "path")))
    g.paint.append(("rect", (cx - pw / 2, blk.y0, cx + pw / 2, blk.y1, "path")))
    pond = None
    if rng.random() < 0.5:
        px = cx + float(rng.choice([-1, 1])) * blk.w / 4
        py = cy + float(rng.choice([-1, 1])) * blk.h / 4
        r = min(blk.w, blk.h) * float(rng.uniform(0.12, 0.18))
        # the pond (an ellipse 1.4 r wide) stays on the grass, clear of paths and pavements
        r = min(r, (min(px - blk.x0, blk.x1 - px) - 2.0) / 1.4, min(py - blk.y0, blk.y1 - py) - 2.0,
                (abs(px - cx) - 3.0) / 1.4, abs(py - cy) - 3.0)
        if r > 2.0:
            pond = (px, py, r)
            g.paint.append(("pond", pond))
    species = [_species(g) for _ in range(int(rng.integers(2, 5)))]
    n = int(blk.w * blk.h / float(rng.uniform(70, 130)))
    pts = rng.uniform([blk.x0 + 3, blk.y0 + 3], [blk.x1 - 3, blk.y1 - 3], (n * 3, 2))
    placed: List[np.ndarray] = []
    for p in pts:
        if len(placed) >= n:
            break
        if abs(p[1] - cy) < 4 or abs(p[0] - cx) < 4:
            continue
        if pond is not None and math.hypot(p[0] - pond[0], p[1] - pond[1]) < pond[2] + 3:
            continue
        if placed and np.min(np.hypot(*(np.array(placed) - p).T)) < 5.0:
            continue
        placed.append(p)
        _tree(g, float(p[0]), float(p[1]), species[int(rng.integers(len(species)))], jitter=0.3)
    for t in np.arange(blk.x0 + 10, blk.x1 - 5, 20.0):
        _lamp(g, float(t), cy + 2.2, 4.5)
        if rng.random() < 0.5:
            _bench(g, float(t) + 4, cy - 2.4, True)
    for t in np.arange(blk.y0 + 10, blk.y1 - 5, 24.0):
        if rng.random() < 0.5:
            _bench(g, cx + 2.4, float(t), False)
    if rng.random() < 0.6:
        # a small red pavilion beside the crossing
        px, py = cx + float(rng.choice([-1, 1])) * 9, cy + float(rng.choice([-1, 1])) * 9
        _pavilion(g, px, py, 3.0)
    g.sidewalks.append((blk.x0, cy, blk.x1, cy))
    g.sidewalks.append((cx, blk.y0, cx, blk.y1))


def _pavilion(g: _Gen, x: float, y: float, half: float) -> None:
    faces = [2 * half, 2 * half, 2 * half, 2 * half]
    tex = g.atlas.add(tx.pavilion_roof_texture(g.rng_tex, faces, 1.6, 10.0), 10.0)
    g.prims.box(x - half, y - half, x + half, y + half, 3.0, 4.6, tex)
    red = g.atlas.add(tx.solid_texture(g.rng_tex, [0.6, 0.1, 0.08], noise=0.1), 10.0)
    for sx in (-1, 1):
        for sy in (-1, 1):
            g.prims.cylinder(x + sx * (half - 0.4), y + sy * (half - 0.4), 0.18, 0.0, 3.05, red)


def _plaza_block(g: _Gen, blk: Block) -> None:
    rng = g.rng_misc
    g.paint.append(("rect", (blk.x0, blk.y0, blk.x1, blk.y1, "plaza")))
    cx, cy = (blk.x0 + blk.x1) / 2, (blk.y0 + blk.y1) / 2
    stone = [0.72, 0.7, 0.66] if rng.random() < 0.5 else [0.8, 0.74, 0.62]
    if rng.random() < 0.6:
        r = float(rng.uniform(4.0, 6.5))
        basin = g.atlas.add(tx.stone_texture(g.rng_tex, 2 * np.pi * r, 0.7, 10.0, stone), 10.0)
        g.prims.cylinder(cx, cy, r, 0.0, 0.7, basin)
        g.paint.append(("disc", (cx, cy, r + 1.5, "plaza_ring")))
        col = g.atlas.add(tx.stone_texture(g.rng_tex, 4.0, 2.5, 10.0, stone), 10.0)
        g.prims.cylinder(cx, cy, 0.6, 0.0, 2.4, col)
        g.prims.cylinder(cx, cy, 0.35, 2.4, 2.4 + float(rng.uniform(2, 4)), g.jet_tex)
    else:
        ped = g.atlas.add(tx.stone_texture(g.rng_tex, 12.0, 2.2, 10.0, stone), 10.0)
        g.prims.box(cx - 1.5, cy - 1.5, cx + 1.5, cy + 1.5, 0.0, 2.2, ped)
        g.prims.cylinder(cx, cy, 0.55, 2.2, 2.2 + float(rng.uniform(2.5, 4.0)), g.bronze_tex)
        g.prims.crown(cx, cy, 0.45, 2.2 + 4.3, 0.4, g.bronze_tex)
    sp = _species(g)
    for sx in (-1, 1):
        for sy in (-1, 1):
            x, y = cx + sx * blk.w * 0.32, cy + sy * blk.h * 0.32
            planter = g.atlas.add(tx.stone_texture(g.rng_tex, 8.0, 0.6, 10.0, stone), 10.0)
            g.prims.box(x - 1.0, y - 1.0, x + 1.0, y + 1.0, 0.0, 0.6, planter)
            _tree(g, x, y, sp)
            _bench(g, x + sx * -3.0, y, False)
    for t in np.linspace(blk.x0 + 6, blk.x1 - 6, 4):
        _lamp(g, float(t), blk.y0 + 4.0, 6.0)
        _lamp(g, float(t), blk.y1 - 4.0, 6.0)
    for _ in range(int(rng.integers(1, 3))):
        kx = float(rng.uniform(blk.x0 + 6, blk.x1 - 6))
        ky = blk.y0 + 9.0 if rng.random() < 0.5 else blk.y1 - 9.0
        _shelter(g, kx, ky, True)
    g.sidewalks.append((blk.x0 + 3, cy - 8, blk.x1 - 3, cy - 8))
    g.sidewalks.append((blk.x0 + 3, cy + 8, blk.x1 - 3, cy + 8))
    g.sidewalks.append((cx - 9, blk.y0 + 3, cx - 9, blk.y1 - 3))


def _parking_block(g: _Gen, blk: Block, vehicles: List[VehicleModel]) -> None:
    rng = g.rng_misc
    g.paint.append(("rect", (blk.x0, blk.y0, blk.x1, blk.y1, "parking")))
    hedge = g.atlas.add(tx.hedge_texture(g.rng_tex, 2 * (blk.w + blk.h), 1.1, 8.0), 8.0)
    # a hedge on the two long sides leaves gaps for the entrances
    g.prims.box(blk.x0 + 1.0, blk.y0 + 0.5, blk.x0 + blk.w * 0.4, blk.y0 + 1.3, 0.0, 1.1, hedge)
    g.prims.box(blk.x0 + blk.w * 0.6, blk.y1 - 1.3, blk.x1 - 1.0, blk.y1 - 0.5, 0.0, 1.1, hedge)
    y = blk.y0 + 3.0
    bay_w, bay_d, aisle = 2.6, 5.2, 6.5
    rows = []
    while y + 2 * bay_d + aisle < blk.y1 - 3.0:
        rows.append((y, y + bay_d, True))
        rows.append((y + bay_d + aisle, y + 2 * bay_d + aisle, False))
        y += 2 * bay_d + aisle + 1.5
    static = [v for v in vehicles if not v.along_x and v.kind in ("car", "taxi")]
    for (r0, r1, facing_north) in rows:
        xs = np.arange(blk.x0 + 3.0, blk.x1 - 3.0 - bay_w, bay_w)
        for x in xs:
            g.paint.append(("bay", (float(x), r0, float(x) + bay_w, r1)))
            if rng.random() < 0.45:
                cands = [v for v in static if v.forward == facing_north]
                v = cands[int(rng.integers(len(cands)))]
                cx, cy = x + bay_w / 2, (r0 + r1) / 2
                g.prims.box(cx - v.width / 2, cy - v.length / 2, cx + v.width / 2, cy + v.length / 2, 0.0, v.height, v.tex)
            else:
                g.parking_free.append((float(x), r0, float(x) + bay_w, r1))
    for t in np.arange(blk.x0 + 12, blk.x1 - 8, 28.0):
        _lamp(g, float(t), blk.y0 + 1.5, 8.0)
    booth = g.atlas.add(tx.shelter_texture(g.rng_tex, [2.0, 2.0, 2.0, 2.0], 2.6, 10.0), 10.0)
    g.prims.box(blk.x0 + blk.w * 0.45, blk.y0 + 0.4, blk.x0 + blk.w * 0.45 + 2.0, blk.y0 + 2.4, 0.0, 2.6, booth)


def _waterfront_block(g: _Gen, blk: Block, promenade_m: float) -> float:
    """Promenade along the lake; returns the y of the water's edge."""
    rng = g.rng_misc
    wy = blk.y1 - promenade_m
    g.paint.append(("rect", (blk.x0, wy, blk.x1, blk.y1, "promenade")))
    stone = g.atlas.add(tx.stone_texture(g.rng_tex, blk.w, 0.9, 10.0, [0.75, 0.74, 0.7]), 10.0)
    g.prims.box(blk.x0, wy, blk.x1, wy + 0.45, 0.0, 0.9, stone)
    sp = _species(g)
    weeping = (g.crown_tex[int(rng.integers(len(g.crown_tex)))], sp[1] * 1.1, sp[2], sp[3] * 1.2)
    for t in np.arange(blk.x0 + 4.0, blk.x1 - 2.0, float(rng.uniform(8, 11))):
        _tree(g, float(t), wy + 2.5, weeping)
    for t in np.arange(blk.x0 + 8.0, blk.x1 - 2.0, 18.0):
        _lamp(g, float(t), wy + promenade_m - 1.5, 5.0)
        if rng.random() < 0.6:
            _bench(g, float(t) + 4.5, wy + 4.8, True)
    if rng.random() < 0.5:
        _pavilion(g, float(rng.uniform(blk.x0 + 10, blk.x1 - 10)), wy - 7.0, 3.5)
    g.sidewalks.append((blk.x0, wy + promenade_m * 0.6, blk.x1, wy + promenade_m * 0.6))
    return wy


def _boats(g: _Gen, x0: float, x1: float, water_y: float) -> None:
    rng = g.rng_misc
    for _ in range(int(rng.integers(3, 7))):
        length = float(rng.uniform(5, 14))
        width = length * float(rng.uniform(0.25, 0.35))
        x = float(rng.uniform(x0, x1))
        y = water_y - float(rng.uniform(15, 160))
        along_x = rng.random() < 0.7
        lx, ly = (length, width) if along_x else (width, length)
        faces = [lx, ly, lx, ly]
        tex = g.atlas.add(tx.boat_texture(g.rng_tex, faces, 1.2, 8.0), 8.0)
        g.prims.box(x - lx / 2, y - ly / 2, x + lx / 2, y + ly / 2, 0.0, 1.2, tex)
        if rng.random() < 0.6:
            cab = g.atlas.add(tx.solid_texture(g.rng_tex, [0.9, 0.9, 0.88], h=10, w=40, noise=0.1), 8.0)
            g.prims.box(x - lx / 4, y - ly / 4, x + lx / 4, y + ly / 4, 1.2, 2.3, cab)


def _vehicle_pool(g: _Gen) -> List[VehicleModel]:
    rng = g.rng_pool
    pool: List[VehicleModel] = []
    kinds = [("car", 4.5, 1.8, 1.45, 10), ("car", 4.8, 1.9, 1.7, 5), ("taxi", 4.6, 1.8, 1.5, 3), ("van", 5.2, 2.0, 2.1, 3), ("bus", 11.5, 2.5, 3.1, 2)]
    for kind, length, width, height, n in kinds:
        for _ in range(n):
            colour = tx.CAR_COLOURS[int(rng.integers(len(tx.CAR_COLOURS)))]
            if kind == "taxi":
                colour = np.array([0.2, 0.6, 0.35], np.float32)
            if kind == "bus":
                colour = np.array([[0.15, 0.45, 0.75], [0.85, 0.55, 0.1], [0.2, 0.6, 0.3]][int(rng.integers(3))], np.float32)
            lm = length * float(rng.uniform(0.95, 1.05))
            for along_x in (True, False):
                for forward in (True, False):
                    tex = g.atlas.add(tx.car_texture(rng, lm, width, height, colour, along_x, forward, 16.0, kind), 16.0)
                    pool.append(VehicleModel(tex, lm, width, height, along_x, forward, kind))
    return pool


def _people_pool(g: _Gen) -> List[Tuple[int, float, float]]:
    rng = g.rng_pool
    out = []
    for _ in range(40):
        h = float(rng.uniform(1.5, 1.9))
        r = float(rng.uniform(0.2, 0.28))
        out.append((g.atlas.add(tx.person_texture(rng, h, r, 24.0), 24.0), h, r))
    return out


def build_world(cfg: Optional[WorldConfig] = None) -> World:
    """Generate the town described by ``cfg`` (deterministic in ``cfg``).

    Raises :class:`~panoplace.errors.InputError` when the town is too small for a route.
    """
    cfg = cfg or WorldConfig()
    g = _Gen(cfg)
    hw = cfg.street_width_m / 2
    xs = _street_lines(g.rng_layout, cfg)
    ys = _street_lines(g.rng_layout, cfg)
    if len(xs) < 2 or len(ys) < 2:
        raise InputError(f"size_m={cfg.size_m} is too small for a street loop; use at least ~220 m")
    xint, yint = _intervals(xs, cfg.size_m, hw), _intervals(ys, cfg.size_m, hw)
    nx, ny = len(xint), len(yint)
    blocks = [Block(i, j, xint[i][0], yint[j][0], xint[i][1], yint[j][1]) for j in range(ny) for i in range(nx)]
    if cfg.waterfront:
        # the south row is one continuous lake-shore strip
        blocks = [Block(0, 0, 0.0, 0.0, cfg.size_m, yint[0][1], "waterfront")] + [b for b in blocks if b.j > 0]

    # route: boundary of a random set of inner blocks (inner block (i, j) = blocks[i+1, j+1])
    region = _grow_route_region(g.rng_layout, xs, ys, cfg.route_length_m, cfg.waterfront)
    corners = _loop_corners(region, xs, ys)
    route = Route(corners, corner_radius_m=9.0)

    # zones: one park, plaza and parking lot on the route, a few more parks elsewhere
    on_route = [b for b in blocks if b.zone == "street" and _touches_route(b, route, hw)]
    order = g.rng_layout.permutation(len(on_route))
    for zone, k in zip(("park", "plaza", "parking"), order):
        on_route[int(k)].zone = zone
    for b in blocks:
        if b.zone == "street" and b not in on_route and 0 < b.j and g.rng_layout.random() < 0.08:
            b.zone = "park"

    vehicles = _vehicle_pool(g)
    people = _people_pool(g)
    street_species: Dict[Tuple[str, int], Any] = {}
    for axis, lines in (("x", xs), ("y", ys)):
        for k in range(len(lines)):
            has = g.rng_nature.random() < 0.65
            street_species[(axis, k)] = (_species(g) if has else None, float(g.rng_nature.uniform(8.0, 13.0)))
    water_y = -1e9
    for b in blocks:
        sides = _block_street_sides(b, nx, ny, cfg.waterfront)
        if b.zone == "waterfront":
            water_y = _waterfront_block(g, b, 10.0)
            continue
        if b.zone == "street":
            _street_block(g, b, sides)
        elif b.zone == "park":
            _park_block(g, b)
        elif b.zone == "plaza":
            _plaza_block(g, b)
        elif b.zone == "parking":
            _parking_block(g, b, vehicles)
        _sidewalk_furniture(g, b, sides, street_species, xs, ys)
    if cfg.waterfront:
        _boats(g, 0.0, cfg.size_m, water_y)
    hills, hills_rgba = tx.hills_profile(g.rng_misc)
    hills_tex = g.atlas.add(hills_rgba, 1.0)

    lanes = []
    for axis, lines in (("x", xs), ("y", ys)):
        for c in lines:
            lo = float(ys[0] if (axis == "x" and cfg.waterfront) else -20.0)
            for k in range(cfg.lanes_per_direction):
                off = (k + 0.5) * cfg.lane_width_m
                for sgn in (1.0, -1.0):
                    # right-hand traffic: travelling +axis uses the lanes at +offset (east/south side)
                    if axis == "x":
                        lanes.append((c + sgn * off, lo, c + sgn * off, cfg.size_m + 20.0, sgn, k))
                    else:
                        lanes.append((-20.0, c - sgn * off, cfg.size_m + 20.0, c - sgn * off, sgn, k))
    prims = g.prims.build()
    atlas = g.atlas.build()
    ground = build_ground(cfg, xs, ys, blocks, g.paint, g.rng_ground, water_y if cfg.waterfront else None)
    world = World(
        config=cfg,
        streets_x=xs,
        streets_y=ys,
        blocks=blocks,
        static=prims,
        atlas=atlas,
        ground=ground,
        zones=np.zeros((1, 1), np.uint8),
        zone_origin=0.0,
        lamps=np.asarray(g.lamps, np.float64).reshape(-1, 3),
        route=route,
        hills=hills,
        hills_tex=hills_tex,
        vehicles=vehicles,
        people=people,
        parking_bays=np.asarray(g.parking_free, np.float64).reshape(-1, 4),
        sidewalk_segments=np.asarray(g.sidewalks, np.float64).reshape(-1, 4),
        lane_segments=np.asarray(lanes, np.float64).reshape(-1, 6),
    )
    world.zones, world.zone_origin = _zone_raster(world)
    log.debug("built world seed=%d: %s, %d textures (%.1f MB)", cfg.seed, prims.counts(), len(atlas), atlas.data.nbytes / 1e6)
    return world


def _touches_route(b: Block, route: Route, hw: float) -> bool:
    """True if the route runs along one of the block's sides for at least 20 m."""
    xy = route.xy
    near_x = (xy[:, 0] > b.x0 - 1) & (xy[:, 0] < b.x1 + 1)
    near_y = (xy[:, 1] > b.y0 - 1) & (xy[:, 1] < b.y1 + 1)
    side = (
        (near_x & (np.abs(xy[:, 1] - (b.y0 - hw)) < 1.0))
        | (near_x & (np.abs(xy[:, 1] - (b.y1 + hw)) < 1.0))
        | (near_y & (np.abs(xy[:, 0] - (b.x0 - hw)) < 1.0))
        | (near_y & (np.abs(xy[:, 0] - (b.x1 + hw)) < 1.0))
    )
    return int(side.sum()) * route.step_m >= 20.0


def _zone_raster(world: World) -> Tuple[np.ndarray, float]:
    """Scene index per square metre (ZONE_ROAD outside blocks), origin at -margin."""
    margin = 60.0
    n = int(world.config.size_m + 2 * margin)
    z = np.full((n, n), ZONE_ROAD, np.uint8)
    for b in world.blocks:
        y0, y1 = int(b.y0 + margin), int(math.ceil(b.y1 + margin))
        x0, x1 = int(b.x0 + margin), int(math.ceil(b.x1 + margin))
        z[y0:y1, x0:x1] = SCENES.index(b.zone)
    if world.config.waterfront:
        z[: int(margin), :] = SCENES.index("waterfront")  # the lake goes on south of the town
    return z, -margin
