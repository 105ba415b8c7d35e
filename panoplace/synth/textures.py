"""Procedural textures of the synthetic town and the atlas that holds them.

Every textured surface of the world (a building's facades, a tree crown, a car, a person)
is a small RGBA image in one :class:`TextureAtlas`. RGB is the albedo; the alpha byte is an
*emission code* used at dusk and night:

- ``0``: not emissive;
- ``1..200``: a window; it is lit when its code is at most ``200 * lit_fraction`` of the
  condition (so each window has its own fixed rank and the same windows light up first);
- ``>= 250``: always lit when lights are on (shop signs, lamp heads, car lights).

Texture coordinates: column ``u`` runs along the surface in texels (``metres * ppm``),
row ``v`` runs downwards from the top of the surface.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import cv2
import numpy as np
from numpy.typing import ArrayLike

log = logging.getLogger(__name__)

EMIT_WINDOW_MAX = 200
EMIT_ALWAYS = 250
EMIT_LAMP = 251
EMIT_HEADLIGHT = 252
EMIT_TAILLIGHT = 253


# ---------------------------------------------------------------------------------------------
# atlas
# ---------------------------------------------------------------------------------------------


@dataclass
class TextureAtlas:
    """All textures, with box-filtered mip levels, flattened into one texel array.

    data: (N_texels, 4) uint8 RGBA texels of every level of every texture.
    offset: (L, T) int64 first texel of texture ``t`` at level ``l`` (stored row-major).
    width, height: (L, T) int64 size in texels; level ``l`` is about ``2**-l`` of level 0.
    ppm: (T,) float32 texels per metre at level 0.
    """

    data: np.ndarray
    offset: np.ndarray
    width: np.ndarray
    height: np.ndarray
    ppm: np.ndarray

    def __len__(self) -> int:
        return int(self.offset.shape[1])

    @property
    def n_levels(self) -> int:
        return int(self.offset.shape[0])

    def image(self, tex_id: int, level: int = 0) -> np.ndarray:
        """The RGBA image of texture ``tex_id`` at a mip level: (height, width, 4) uint8 view."""
        o = int(self.offset[level, tex_id])
        w, h = int(self.width[level, tex_id]), int(self.height[level, tex_id])
        return self.data[o : o + w * h].reshape(h, w, 4)


def _downsample(img: np.ndarray) -> np.ndarray:
    """Half-size mip level: colours box-filtered, emission codes by nearest neighbour."""
    h, w = img.shape[:2]
    nh, nw = max(1, (h + 1) // 2), max(1, (w + 1) // 2)
    rgb = cv2.resize(np.ascontiguousarray(img[..., :3]), (nw, nh), interpolation=cv2.INTER_AREA)
    a = cv2.resize(np.ascontiguousarray(img[..., 3]), (nw, nh), interpolation=cv2.INTER_NEAREST)
    return np.concatenate([rgb.reshape(nh, nw, 3), a.reshape(nh, nw, 1)], axis=2)


class AtlasBuilder:
    """Collects textures and packs them (with mip levels) into a :class:`TextureAtlas`."""

    def __init__(self, levels: int = 3) -> None:
        self._images: List[np.ndarray] = []
        self._ppm: List[float] = []
        self.levels = int(levels)

    def add(self, rgba: np.ndarray, ppm: float) -> int:
        """Add an (h, w, 4) uint8 (or (h, w, 3), alpha 0) texture; returns its id."""
        if rgba.ndim != 3 or rgba.shape[2] not in (3, 4):
            raise ValueError(f"texture must be (h, w, 3|4), got {rgba.shape}")
        if rgba.shape[2] == 3:
            rgba = np.concatenate([rgba, np.zeros(rgba.shape[:2] + (1,), np.uint8)], axis=2)
        self._images.append(np.ascontiguousarray(rgba, dtype=np.uint8))
        self._ppm.append(float(ppm))
        return len(self._images) - 1

    def build(self) -> TextureAtlas:
        """Pack all textures and their mip levels (level-major) into one array."""
        n = len(self._images)
        h = np.zeros((self.levels, n), np.int64)
        w = np.zeros((self.levels, n), np.int64)
        h[0] = [im.shape[0] for im in self._images]
        w[0] = [im.shape[1] for im in self._images]
        for lev in range(1, self.levels):  # sizes as _downsample makes them
            h[lev] = np.maximum(1, (h[lev - 1] + 1) // 2)
            w[lev] = np.maximum(1, (w[lev - 1] + 1) // 2)
        sizes = (h * w).ravel()
        offset = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64).reshape(self.levels, n)
        data = np.empty((int(sizes.sum()), 4), np.uint8)
        for t, im in enumerate(self._images):
            for lev in range(self.levels):
                if lev:
                    im = _downsample(im)
                o = int(offset[lev, t])
                data[o : o + im.shape[0] * im.shape[1]] = im.reshape(-1, 4)
        self._images = []
        return TextureAtlas(data=data, offset=offset, width=w, height=h, ppm=np.array(self._ppm, dtype=np.float32))


# ---------------------------------------------------------------------------------------------
# noise helpers
# ---------------------------------------------------------------------------------------------


def value_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Smooth value noise in [0, 1] with features about ``cell`` pixels wide: (h, w) float32."""
    gh = max(2, int(np.ceil(h / max(cell, 1.0))) + 2)
    gw = max(2, int(np.ceil(w / max(cell, 1.0))) + 2)
    grid = rng.random((gh, gw), dtype=np.float32)
    interp = cv2.INTER_CUBIC if cell >= 4 else cv2.INTER_LINEAR
    big = cv2.resize(grid, (int(gw * cell), int(gh * cell)), interpolation=interp)
    out = big[: h, : w]
    if out.shape != (h, w):  # cell < 1 rounding
        out = cv2.resize(grid, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(out, 0.0, 1.0)


def fbm(rng: np.random.Generator, h: int, w: int, cell: float, octaves: int = 3) -> np.ndarray:
    """Fractal value noise (octaves halving in size) normalised to [0, 1]: (h, w) float32."""
    acc = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for _ in range(octaves):
        acc += amp * value_noise(rng, h, w, cell)
        total += amp
        amp *= 0.5
        cell = max(cell / 2.0, 1.0)
    return acc / total


def cell_hash(a: np.ndarray, b: np.ndarray, salt: int = 0) -> np.ndarray:
    """Deterministic pseudo-random value in [0, 1) per integer cell (a, b): float32."""
    h = (np.asarray(a).astype(np.int64) * 73856093) ^ (np.asarray(b).astype(np.int64) * 19349663) ^ (int(salt) * 83492791)
    h = (h ^ (h >> 13)) * 1274126177
    h = h ^ (h >> 16)
    return ((h & 0xFFFF).astype(np.float32) / 65536.0).astype(np.float32)


def _rgb(c: ArrayLike) -> np.ndarray:
    return np.asarray(c, dtype=np.float32).reshape(1, 1, 3)


def _finish(rgb: np.ndarray, alpha: np.ndarray | None = None) -> np.ndarray:
    """Float RGB in [0, 1] (+ uint8 emission codes) -> (h, w, 4) uint8."""
    out = np.empty(rgb.shape[:2] + (4,), np.uint8)
    out[..., :3] = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
    out[..., 3] = 0 if alpha is None else alpha
    return out


def _jitter(rng: np.random.Generator, col: ArrayLike, amount: float) -> np.ndarray:
    c = np.asarray(col, dtype=np.float32) * (1.0 + rng.uniform(-amount, amount, 3))
    return np.clip(c, 0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# palettes
# ---------------------------------------------------------------------------------------------

WALL_COLOURS = np.array(
    [
        [0.85, 0.82, 0.74], [0.78, 0.70, 0.58], [0.70, 0.45, 0.35], [0.62, 0.60, 0.58],
        [0.90, 0.88, 0.84], [0.80, 0.62, 0.45], [0.55, 0.58, 0.62], [0.75, 0.77, 0.70],
        [0.86, 0.76, 0.62], [0.65, 0.36, 0.28], [0.50, 0.44, 0.40], [0.92, 0.80, 0.60],
        [0.72, 0.78, 0.82], [0.82, 0.70, 0.70], [0.60, 0.66, 0.55], [0.95, 0.93, 0.90],
    ],
    dtype=np.float32,
)
SIGN_COLOURS = np.array(
    [
        [0.85, 0.10, 0.10], [0.10, 0.35, 0.80], [0.95, 0.80, 0.10], [0.10, 0.60, 0.25],
        [0.95, 0.45, 0.05], [0.55, 0.10, 0.60], [0.05, 0.05, 0.05], [0.95, 0.95, 0.95],
        [0.00, 0.65, 0.70], [0.80, 0.15, 0.45], [0.35, 0.20, 0.10], [0.20, 0.20, 0.55],
    ],
    dtype=np.float32,
)
CAR_COLOURS = np.array(
    [
        [0.92, 0.92, 0.92], [0.08, 0.08, 0.09], [0.62, 0.63, 0.65], [0.70, 0.08, 0.08],
        [0.10, 0.20, 0.55], [0.35, 0.36, 0.38], [0.85, 0.85, 0.80], [0.15, 0.35, 0.20],
        [0.85, 0.60, 0.10], [0.45, 0.30, 0.20], [0.20, 0.55, 0.75], [0.95, 0.95, 0.97],
    ],
    dtype=np.float32,
)


# ---------------------------------------------------------------------------------------------
# facades
# ---------------------------------------------------------------------------------------------

MATERIALS = ("plaster", "brick", "concrete", "glass", "tile")


@dataclass
class FacadeStyle:
    """Per-building parameters that make its facades differ from the neighbours'."""

    material: str
    wall: np.ndarray  # (3,) base colour
    trim: np.ndarray  # (3,) bands, frames, cornice
    glass: np.ndarray  # (3,) window glass
    floor_h: float  # metres
    ground_h: float  # metres (ground floor)
    win_w: float
    win_h: float
    win_spacing: float
    win_sill: float  # metres above the floor
    pair_windows: bool
    balconies: bool
    pilasters: bool
    shutters: bool
    streaks: float  # amount of dirt streaks
    brick_w: float
    brick_h: float


def random_style(rng: np.random.Generator) -> FacadeStyle:
    """Draw a facade style (material, colours, window grid) for one building."""
    material = str(rng.choice(MATERIALS, p=[0.32, 0.2, 0.2, 0.14, 0.14]))
    wall = _jitter(rng, WALL_COLOURS[rng.integers(len(WALL_COLOURS))], 0.12)
    if material == "brick":
        wall = _jitter(rng, [0.62, 0.32, 0.24] if rng.random() < 0.7 else [0.78, 0.66, 0.5], 0.12)
    if material == "glass":
        wall = _jitter(rng, [0.25, 0.35, 0.42] if rng.random() < 0.5 else [0.3, 0.38, 0.32], 0.2)
    trim = np.clip(wall * rng.uniform(0.55, 1.3) + rng.uniform(-0.1, 0.1, 3), 0, 1).astype(np.float32)
    glass = _jitter(rng, [[0.18, 0.24, 0.30], [0.12, 0.14, 0.16], [0.28, 0.34, 0.36], [0.22, 0.26, 0.2]][rng.integers(4)], 0.2)
    floor_h = float(rng.uniform(2.9, 3.8))
    win_spacing = float(rng.uniform(1.8, 4.2))
    win_w = float(np.clip(rng.uniform(0.35, 0.8) * win_spacing, 0.7, win_spacing - 0.35))
    win_h = float(rng.uniform(0.4, 0.72) * floor_h)
    return FacadeStyle(
        material=material,
        wall=wall,
        trim=trim,
        glass=glass,
        floor_h=floor_h,
        ground_h=float(rng.uniform(3.8, 5.0)),
        win_w=win_w,
        win_h=win_h,
        win_spacing=win_spacing,
        win_sill=float(rng.uniform(0.6, 1.0)),
        pair_windows=bool(rng.random() < 0.2),
        balconies=bool(rng.random() < 0.3),
        pilasters=bool(rng.random() < 0.25),
        shutters=bool(rng.random() < 0.15),
        streaks=float(rng.uniform(0.0, 0.25)),
        brick_w=float(rng.uniform(0.7, 1.0)),
        brick_h=float(rng.uniform(0.32, 0.45)),
    )


def vary_style(rng: np.random.Generator, style: FacadeStyle) -> FacadeStyle:
    """A sibling of ``style`` (same material and window design, slightly other colours and
    proportions), as buildings of one development or one street often are."""
    return dataclasses.replace(
        style,
        wall=_jitter(rng, style.wall, 0.08),
        trim=_jitter(rng, style.trim, 0.08),
        glass=_jitter(rng, style.glass, 0.1),
        floor_h=float(style.floor_h * rng.uniform(0.97, 1.03)),
        win_spacing=float(style.win_spacing * rng.uniform(0.95, 1.05)),
        balconies=style.balconies if rng.random() < 0.8 else not style.balconies,
        streaks=float(rng.uniform(0.0, 0.25)),
    )


def _material(rng: np.random.Generator, style: FacadeStyle, h: int, w: int, ppm: float) -> np.ndarray:
    """Wall material (no openings): (h, w, 3) float32."""
    base = _rgb(style.wall)
    grain = rng.random((h, w), dtype=np.float32)
    if style.material == "brick":
        bh = max(2, int(round(style.brick_h * ppm)))
        bw = max(3, int(round(style.brick_w * ppm)))
        vv = np.arange(h)[:, None]
        course = vv // bh
        uu = np.arange(w)[None, :] + (course % 2) * (bw // 2)
        tone = cell_hash(course, uu // bw, 1)
        rgb = base * (0.78 + 0.35 * tone[..., None].astype(np.float32))
        mortar = ((vv % bh) == 0) | ((uu % bw) == 0)
        rgb = np.where(mortar[..., None], 0.5 * rgb + 0.5 * _rgb([0.72, 0.7, 0.66]), rgb)
    elif style.material == "concrete":
        ph = max(4, int(round(style.floor_h * ppm / 2)))
        pw = max(6, int(round(rng.uniform(1.2, 3.0) * ppm)))
        vv = np.arange(h)[:, None]
        uu = np.arange(w)[None, :]
        tone = cell_hash(vv // ph, uu // pw, 2)
        rgb = base * (0.9 + 0.14 * tone[..., None].astype(np.float32))
        seam = ((vv % ph) == 0) | ((uu % pw) == 0)
        rgb = np.where(seam[..., None], base * 0.6, rgb)
    elif style.material == "tile":
        t = max(2, int(round(rng.uniform(0.15, 0.3) * ppm)))
        vv = np.arange(h)[:, None]
        uu = np.arange(w)[None, :]
        tone = cell_hash(vv // t, uu // t, 3)
        rgb = base * (0.88 + 0.2 * tone[..., None].astype(np.float32))
        rgb = np.where((((vv % t) == 0) | ((uu % t) == 0))[..., None], base * 0.75, rgb)
    elif style.material == "glass":
        # curtain wall: reflective gradient noise + mullion grid
        refl = cv2.resize(fbm(rng, max(2, h // 4), max(2, w // 4), 3.0 * ppm, 3), (w, h), interpolation=cv2.INTER_LINEAR)
        rgb = base * (0.7 + 0.6 * refl[..., None]) + 0.08 * _rgb([0.6, 0.7, 0.8]) * (np.linspace(1, 0, h, dtype=np.float32)[:, None, None])
        mw = max(3, int(round(rng.uniform(1.2, 1.8) * ppm)))
        mh = max(3, int(round(style.floor_h * ppm / rng.integers(1, 3))))
        vv = np.arange(h)[:, None]
        uu = np.arange(w)[None, :]
        mull = ((uu % mw) == 0) | ((vv % mh) == 0)
        rgb = np.where(mull[..., None], _rgb(style.trim) * 0.8, rgb)
    else:  # plaster: blotchy low-frequency tone
        sh, sw = max(2, h // 4), max(2, w // 4)
        low = cv2.resize(fbm(rng, sh, sw, 1.5 * ppm, 3), (w, h), interpolation=cv2.INTER_LINEAR)
        rgb = base * (0.86 + 0.22 * low[..., None])
    rgb = rgb * (0.93 + 0.1 * grain[..., None])
    return rgb.astype(np.float32)


def _glyph_band(rng: np.random.Generator, h: int, w: int, fg: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """A sign board: background + rows of random 'characters' (blocks): (h, w, 3) float32."""
    img = np.broadcast_to(_rgb(bg), (h, w, 3)).copy()
    if h < 3 or w < 6:
        return img
    ch_h = max(2, int(h * rng.uniform(0.45, 0.7)))
    top = (h - ch_h) // 2
    ch_w = max(2, int(ch_h * rng.uniform(0.6, 1.1)))
    n = int((w * rng.uniform(0.5, 0.85)) // (ch_w + 1))
    if n < 1:
        return img
    start = int((w - n * (ch_w + 1)) * rng.uniform(0.1, 0.9))
    for k in range(n):
        x0 = start + k * (ch_w + 1)
        glyph = rng.random((ch_h, ch_w)) < 0.55
        glyph[:, 0] |= rng.random() < 0.5
        img[top : top + ch_h, x0 : x0 + ch_w][glyph] = fg
    if rng.random() < 0.4:  # logo disc
        r = h // 2 - 1
        if r >= 2:
            cy, cx = h // 2, max(r + 1, start - r - 2)
            yy, xx = np.ogrid[:h, :w]
            img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = _jitter(rng, SIGN_COLOURS[rng.integers(len(SIGN_COLOURS))], 0.1)
    return img


def _shopfront(
    rng: np.random.Generator, img: np.ndarray, alpha: np.ndarray, x0: int, x1: int, gh: int, ppm: float
) -> None:
    """Paint shop units (display windows, doors, sign boards, awnings) into the ground floor."""
    x = x0
    while x1 - x > int(2.5 * ppm):
        unit = int(rng.uniform(4.0, 10.0) * ppm)
        if x1 - x - unit < int(3.0 * ppm):
            unit = x1 - x
        ux0, ux1 = x + int(0.2 * ppm), x + unit - int(0.2 * ppm)
        sign_top = int(0.2 * ppm)
        sign_bot = sign_top + int(rng.uniform(0.7, 1.2) * ppm)
        bg = _jitter(rng, SIGN_COLOURS[rng.integers(len(SIGN_COLOURS))], 0.1)
        fg = _jitter(rng, SIGN_COLOURS[rng.integers(len(SIGN_COLOURS))], 0.1)
        if np.abs(fg - bg).sum() < 0.6:
            fg = np.float32(1.0) - bg
        h0 = img.shape[0] - gh
        img[h0 + sign_top : h0 + sign_bot, ux0:ux1] = _glyph_band(rng, sign_bot - sign_top, ux1 - ux0, fg, bg)
        alpha[h0 + sign_top : h0 + sign_bot, ux0:ux1] = EMIT_ALWAYS
        win_top = sign_bot + int(0.25 * ppm)
        if rng.random() < 0.45:  # striped awning
            aw = int(rng.uniform(0.5, 0.9) * ppm)
            stripe = max(2, int(0.4 * ppm))
            c1 = _jitter(rng, SIGN_COLOURS[rng.integers(len(SIGN_COLOURS))], 0.1)
            c2 = np.array([0.95, 0.95, 0.92], np.float32) if rng.random() < 0.6 else bg
            uu = np.arange(ux1 - ux0)
            band = np.where(((uu // stripe) % 2 == 0)[:, None], c1, c2)[None, :, :]
            shade = np.linspace(1.0, 0.75, aw, dtype=np.float32)[:, None, None]
            img[h0 + win_top : h0 + win_top + aw, ux0:ux1] = band * shade
            win_top += aw
        # display window with interior blobs, door on one side
        wy0, wy1 = h0 + win_top, img.shape[0] - int(0.25 * ppm)
        if wy1 - wy0 < 3:
            x += unit
            continue
        ww = ux1 - ux0
        glass = np.broadcast_to(_rgb([0.10, 0.12, 0.14]), (wy1 - wy0, ww, 3)).copy()
        blobs = fbm(rng, wy1 - wy0, ww, 0.8 * ppm, 2)
        tint = _jitter(rng, SIGN_COLOURS[rng.integers(len(SIGN_COLOURS))], 0.2)
        glass += 0.25 * blobs[..., None] * tint + 0.12 * np.linspace(0.3, 0, wy1 - wy0, dtype=np.float32)[:, None, None]
        img[wy0:wy1, ux0:ux1] = glass
        alpha[wy0:wy1, ux0:ux1] = int(rng.integers(1, 90))  # shops are lit early
        # mullions
        step = max(4, int(rng.uniform(1.2, 2.5) * ppm))
        img[wy0:wy1, ux0:ux1:step] = _rgb([0.2, 0.2, 0.2]) * 0.8
        img[wy0, ux0:ux1] = 0.25
        door_w = int(rng.uniform(0.9, 1.6) * ppm)
        dx = ux0 + int(0.2 * ppm) if rng.random() < 0.5 else ux1 - door_w - int(0.2 * ppm)
        if door_w < ww - 2:
            img[wy0 + int(0.2 * ppm) :, dx : dx + door_w] = _jitter(rng, [0.25, 0.2, 0.15], 0.4)
            img[wy0 + int(0.2 * ppm) :, dx + door_w // 2] = 0.1
        x += unit


def facade_texture(
    rng: np.random.Generator,
    style: FacadeStyle,
    faces_m: Sequence[float],
    height_m: float,
    street_facing: Sequence[bool],
    ppm: float,
    shops: bool,
    ground_floor: bool = True,
) -> np.ndarray:
    """Texture of a box's four walls side by side (south, east, north, west).

    faces_m: the four wall widths in metres; street_facing: which faces see a street (they get
    shop fronts when ``shops``); ground_floor: False for a tower standing on a podium (no doors).
    Returns (round(height_m * ppm), sum(widths px), 4) uint8 RGBA.
    """
    h = max(4, int(round(height_m * ppm)))
    widths = [max(2, int(round(f * ppm))) for f in faces_m]
    parts: List[np.ndarray] = []
    for face, w in enumerate(widths):
        rgb = _material(rng, style, h, w, ppm)
        alpha = np.zeros((h, w), np.uint8)
        is_street = bool(street_facing[face])
        blank = (not is_street) and rng.random() < 0.3
        gh = int(round(style.ground_h * ppm)) if ground_floor else 0
        if gh >= h - 2:
            gh = 0
        if not blank:
            _windows(rng, style, rgb, alpha, gh, ppm)
        elif w > 6 * ppm and rng.random() < 0.6:
            _mural(rng, rgb, alpha, gh, ppm)
        if gh:
            if is_street and shops:
                rgb[h - gh :] = _material(rng, style, gh, w, ppm) * 0.95
                _shopfront(rng, rgb, alpha, int(0.3 * ppm), w - int(0.3 * ppm), gh, ppm)
            else:
                _entrance(rng, style, rgb, alpha, gh, ppm, is_street)
            rgb[h - gh - max(1, int(0.25 * ppm)) : h - gh] = _rgb(style.trim)  # belt course
        # cornice / parapet and a darker foot
        ct = max(2, int(rng.uniform(0.3, 0.8) * ppm))
        rgb[:ct] = _rgb(style.trim) * (0.9 + 0.1 * rng.random((ct, 1, 1), dtype=np.float32))
        rgb[ct : ct + 1] *= 0.6
        foot = max(1, int(0.3 * ppm))
        rgb[h - foot :] *= 0.7
        if style.streaks > 0:
            streak = value_noise(rng, 1, w, 0.5 * ppm)[0]
            fade = np.linspace(1.0, 0.2, h, dtype=np.float32)[:, None]
            rgb *= (1.0 - style.streaks * (streak[None, :] ** 3) * fade)[..., None]
        # corner shading so that neighbouring faces separate
        edge = max(1, int(0.15 * ppm))
        rgb[:, :edge] *= 0.8
        rgb[:, w - edge :] *= 0.8
        parts.append(_finish(rgb, alpha))
    return np.concatenate(parts, axis=1)


def _windows(
    rng: np.random.Generator, style: FacadeStyle, rgb: np.ndarray, alpha: np.ndarray, gh: int, ppm: float
) -> None:
    """Paint the upper floors' window grid (glass, frames, curtains, balconies)."""
    h, w = rgb.shape[:2]
    fh = style.floor_h * ppm
    top_margin = int(0.9 * ppm)
    n_floors = int((h - gh - top_margin) // fh)
    sp = style.win_spacing * ppm
    n_cols = int(w // sp)
    if n_floors < 1 or n_cols < 1:
        return
    margin = (w - n_cols * sp) / 2.0
    ww = max(2, int(style.win_w * ppm))
    wh = max(2, int(style.win_h * ppm))
    sill = int(style.win_sill * ppm)
    frame_c = _rgb(style.trim) * 0.9
    lit_rank = rng.integers(1, EMIT_WINDOW_MAX + 1, (n_floors, n_cols))
    curtain = rng.random((n_floors, n_cols)) < 0.35
    curtain_col = rng.uniform(0.45, 0.95, (n_floors, n_cols, 3)).astype(np.float32)
    open_dark = rng.random((n_floors, n_cols)) < 0.08
    tint = rng.uniform(0.75, 1.25, (n_floors, n_cols)).astype(np.float32)
    glass_grad = np.linspace(1.25, 0.8, wh, dtype=np.float32)[:, None, None]
    refl = fbm(rng, wh, ww, max(2.0, ww / 2), 2)[..., None]
    for f in range(n_floors):
        floor_bottom = h - gh - int(f * fh)
        y1 = floor_bottom - sill
        y0 = y1 - wh
        if y0 < top_margin:
            break
        for c in range(n_cols):
            cx = margin + (c + 0.5) * sp
            x0 = int(cx - ww / 2)
            x1 = x0 + ww
            if style.pair_windows and c % 2 == 1:
                x0 -= int(0.2 * ppm)
                x1 -= int(0.2 * ppm)
            if x0 < 1 or x1 > w - 1:
                continue
            pane = _rgb(style.glass) * tint[f, c] * glass_grad * (0.8 + 0.5 * refl)
            if curtain[f, c]:
                cut = int(wh * rng.uniform(0.2, 0.9))
                pane[:cut] = pane[:cut] * 0.4 + 0.5 * curtain_col[f, c]
            if open_dark[f, c]:
                pane = pane * 0.3
            rgb[y0:y1, x0:x1] = pane
            alpha[y0:y1, x0:x1] = lit_rank[f, c]
            # frame and mullion
            rgb[y0, x0:x1] = frame_c
            rgb[y1 - 1, x0:x1] = frame_c
            rgb[y0:y1, x0] = frame_c
            rgb[y0:y1, x1 - 1] = frame_c
            if ww > 0.9 * ppm:
                rgb[y0:y1, (x0 + x1) // 2] = frame_c
            if wh > 1.4 * ppm:
                rgb[y0 + wh // 3, x0:x1] = frame_c
            # sill shadow
            if y1 + 1 < h:
                rgb[y1 : y1 + 1, x0 - 1 : x1 + 1] *= 0.75
            if style.shutters and x0 - int(0.4 * ppm) > 0 and x1 + int(0.4 * ppm) < w:
                sw = int(0.4 * ppm)
                shut = _rgb(style.trim) * 0.7
                rgb[y0:y1, x0 - sw : x0] = shut
                rgb[y0:y1, x1 : x1 + sw] = shut
                rgb[y0:y1:2, x0 - sw : x0] *= 0.8
                rgb[y0:y1:2, x1 : x1 + sw] *= 0.8
        if style.balconies and f > 0 and f % 1 == 0:
            by1 = floor_bottom
            by0 = by1 - int(1.0 * ppm)
            slab = _rgb(style.trim) * 0.85
            rgb[by1 - 1 : by1 + 1] = slab
            rgb[by0:by1, :: max(2, int(0.25 * ppm))] = slab * 0.6
            rgb[by0] = slab
        else:
            rgb[floor_bottom - 1 : floor_bottom] *= 0.85  # floor line
        if style.pilasters:
            pw = max(1, int(0.35 * ppm))
            for c in range(n_cols + 1):
                px = int(margin + c * sp - pw / 2)
                if 0 <= px < w - pw:
                    rgb[top_margin:floor_bottom, px : px + pw] = rgb[top_margin:floor_bottom, px : px + pw] * 0.5 + 0.5 * _rgb(style.trim)
    # AC units: small grey boxes beside some windows
    n_ac = int(rng.integers(0, 1 + n_floors * n_cols // 5))
    for _ in range(n_ac):
        f, c = int(rng.integers(n_floors)), int(rng.integers(n_cols))
        y = h - gh - int(f * fh) - int(0.3 * ppm)
        x = int(margin + (c + 0.5) * sp + ww / 2 + 0.15 * ppm)
        aw, ah = int(0.8 * ppm), int(0.55 * ppm)
        if y - ah > 0 and x + aw < w:
            rgb[y - ah : y, x : x + aw] = _rgb([0.82, 0.82, 0.8])
            rgb[y - ah : y, x + aw // 2 : x + aw // 2 + max(1, aw // 3)] = 0.3


def _entrance(
    rng: np.random.Generator, style: FacadeStyle, rgb: np.ndarray, alpha: np.ndarray, gh: int, ppm: float, main: bool
) -> None:
    """Ground floor without shops: small windows and (on the main face) an entrance."""
    h, w = rgb.shape[:2]
    sp = max(4, int(style.win_spacing * ppm * 1.2))
    wh = int(gh * 0.45)
    y1 = h - int(1.0 * ppm)
    y0 = y1 - wh
    ww = max(3, int(style.win_w * ppm))
    for x in range(sp // 2, w - ww - 1, sp):
        rgb[y0:y1, x : x + ww] = _rgb(style.glass) * 0.8
        alpha[y0:y1, x : x + ww] = int(rng.integers(1, EMIT_WINDOW_MAX + 1))
        rgb[y0:y1:3, x : x + ww] = _rgb(style.trim) * 0.7  # bars
    if main and w > 4 * ppm:
        dw = int(rng.uniform(1.6, 3.0) * ppm)
        dx = int(rng.uniform(0.2, 0.8) * (w - dw))
        dh = int(min(gh - 2, rng.uniform(2.4, 3.2) * ppm))
        rgb[h - dh :, dx : dx + dw] = _jitter(rng, [0.2, 0.18, 0.16], 0.5)
        rgb[h - dh :, dx + dw // 2] = 0.08
        rgb[h - dh - int(0.4 * ppm) : h - dh, dx - int(0.5 * ppm) : dx + dw + int(0.5 * ppm)] = _rgb(style.trim) * 0.6
        alpha[h - dh - int(0.4 * ppm) : h - dh, dx : dx + dw] = EMIT_ALWAYS
        # house number plate
        rgb[h - dh - int(0.9 * ppm) : h - dh - int(0.5 * ppm), dx + dw + 2 : dx + dw + 2 + int(0.5 * ppm)] = _rgb([0.1, 0.25, 0.6])


def _mural(rng: np.random.Generator, rgb: np.ndarray, alpha: np.ndarray, gh: int, ppm: float) -> None:
    """A billboard / mural on a blank wall: big colour blocks, stripes and 'text'."""
    h, w = rgb.shape[:2]
    bw = int(min(w - 2 * ppm, rng.uniform(5, 14) * ppm))
    bh = int(min(h - gh - 2 * ppm, rng.uniform(3, 8) * ppm))
    if bw < 8 or bh < 8:
        return
    x0 = int(rng.uniform(0.1, 0.9) * (w - bw))
    y0 = int(rng.uniform(0.1, 0.6) * (h - gh - bh))
    c1, c2, c3 = (_jitter(rng, SIGN_COLOURS[i], 0.15) for i in rng.integers(0, len(SIGN_COLOURS), 3))
    t = np.linspace(0, 1, bw, dtype=np.float32)[None, :, None]
    panel = np.broadcast_to(c1 * (1 - t) + c2 * t, (bh, bw, 3)).copy()
    yy, xx = np.mgrid[0:bh, 0:bw]
    kind = rng.integers(3)
    if kind == 0:
        r = min(bh, bw) * rng.uniform(0.25, 0.45)
        cy, cx = bh * rng.uniform(0.3, 0.7), bw * rng.uniform(0.2, 0.8)
        panel[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = c3
    elif kind == 1:
        period = max(3, int(rng.uniform(0.5, 1.5) * ppm))
        panel[((xx + yy) // period) % 2 == 0] *= 0.6
    else:
        panel[: bh // 3] = c3
    tb = max(3, bh // 4)
    panel[bh - tb - 1 : bh - 1] = _glyph_band(rng, tb, bw, np.float32(1.0) - c3, c3)
    rgb[y0 : y0 + bh, x0 : x0 + bw] = panel
    rgb[y0 : y0 + bh, [x0, x0 + bw - 1]] = 0.15
    rgb[[y0, y0 + bh - 1], x0 : x0 + bw] = 0.15
    alpha[y0 : y0 + bh, x0 : x0 + bw] = EMIT_ALWAYS


# ---------------------------------------------------------------------------------------------
# nature and street objects
# ---------------------------------------------------------------------------------------------


def crown_texture(rng: np.random.Generator, colour: Sequence[float], h: int = 64, w: int = 128) -> np.ndarray:
    """Leafy crown texture wrapped once around a crown, top row = crown top: (h, w, 4) uint8.

    Clumps of leaves (lit tops, shaded undersides), dark gaps between clumps, fine leaf grain
    and a darker underside of the whole crown.
    """
    base = _rgb(colour)
    clumps = fbm(rng, h, w, float(rng.uniform(6, 11)), 3)
    fine = fbm(rng, h, w, 2.0, 2)
    leaves = rng.random((h, w), dtype=np.float32)
    # within each clump, the upper part is lit: use the vertical derivative of the clump field
    dz = np.zeros_like(clumps)
    dz[1:] = clumps[:-1] - clumps[1:]
    v = np.linspace(1.1, 0.5, h, dtype=np.float32)[:, None]
    light = (0.55 + 0.6 * clumps + 2.5 * dz) * (0.75 + 0.3 * fine + 0.2 * leaves) * v
    rgb = base * np.clip(light, 0.15, 1.6)[..., None]
    hue = fbm(rng, h, w, 14.0, 2)[..., None]
    rgb = rgb * (0.9 + 0.2 * hue * np.array([1.2, 1.0, 0.7], np.float32))
    gaps = (clumps < 0.3) & (leaves < 0.6)
    rgb[gaps] *= 0.3
    if rng.random() < 0.25:  # blossoms / autumn speckles
        spk = (rng.random((h, w)) < 0.05) & (clumps > 0.45)
        rgb[spk] = _jitter(rng, [[0.95, 0.7, 0.8], [0.95, 0.75, 0.2], [0.85, 0.35, 0.15]][rng.integers(3)], 0.1)
    return _finish(rgb)


def bark_texture(rng: np.random.Generator, h: int = 32, w: int = 16) -> np.ndarray:
    """Tree trunk bark: (h, w, 4) uint8."""
    base = _jitter(rng, [0.32, 0.25, 0.18], 0.25)
    streak = value_noise(rng, h, w, 3)
    rgb = _rgb(base) * (0.6 + 0.6 * streak[..., None]) * (0.8 + 0.3 * rng.random((h, w, 1), dtype=np.float32))
    return _finish(rgb)


def solid_texture(
    rng: np.random.Generator, colour: Sequence[float], h: int = 8, w: int = 16, noise: float = 0.1, emit_rows: int = 0, emit: int = 0
) -> np.ndarray:
    """A flat coloured texture with grain; the top ``emit_rows`` rows get emission ``emit``."""
    rgb = _rgb(colour) * (1.0 - noise + 2 * noise * rng.random((h, w, 1), dtype=np.float32))
    alpha = np.zeros((h, w), np.uint8)
    if emit_rows:
        alpha[:emit_rows] = emit
    return _finish(rgb, alpha)


def lamp_head_texture(rng: np.random.Generator) -> np.ndarray:
    """Street-lamp head: dark housing on top, glowing lens underneath."""
    rgb = np.broadcast_to(_rgb([0.2, 0.2, 0.22]), (8, 8, 3)).copy()
    rgb[4:] = _rgb([0.95, 0.92, 0.8])
    alpha = np.zeros((8, 8), np.uint8)
    alpha[4:] = EMIT_LAMP
    return _finish(rgb, alpha)


def sign_disc_texture(rng: np.random.Generator) -> np.ndarray:
    """A traffic-sign plate seen around a thin cylinder: colour ring with a white band."""
    c = [[0.8, 0.1, 0.1], [0.1, 0.3, 0.75], [0.95, 0.8, 0.1], [0.1, 0.5, 0.25]][rng.integers(4)]
    rgb = np.broadcast_to(_rgb(c), (12, 24, 3)).copy()
    rgb[4:8, 4:20] = 0.95
    rgb[:, 12:] *= 0.6  # back of the plate
    return _finish(rgb)


def bench_texture(rng: np.random.Generator, faces_m: Sequence[float], height_m: float, ppm: float) -> np.ndarray:
    """Wooden bench (slats over dark legs) as a box texture."""
    w = max(4, int(sum(faces_m) * ppm))
    h = max(4, int(height_m * ppm))
    wood = _jitter(rng, [0.55, 0.38, 0.22], 0.2)
    rgb = np.broadcast_to(_rgb([0.12, 0.12, 0.12]), (h, w, 3)).copy()
    slat = max(1, h // 8)
    for r in range(0, h // 2, 2 * slat):
        rgb[r : r + slat] = wood
    rgb[h // 2 : h // 2 + slat] = wood
    rgb *= 0.85 + 0.3 * rng.random((h, w, 1), dtype=np.float32)
    return _finish(rgb)


def shelter_texture(rng: np.random.Generator, faces_m: Sequence[float], height_m: float, ppm: float) -> np.ndarray:
    """Bus shelter / kiosk: glass-ish panels, a bright ad panel and a coloured roof band."""
    widths = [max(2, int(f * ppm)) for f in faces_m]
    h = max(6, int(height_m * ppm))
    parts = []
    roof = _jitter(rng, SIGN_COLOURS[rng.integers(len(SIGN_COLOURS))], 0.1)
    for w in widths:
        rgb = np.broadcast_to(_rgb([0.45, 0.5, 0.52]), (h, w, 3)).copy()
        rgb *= 0.8 + 0.3 * fbm(rng, h, w, 6, 2)[..., None]
        alpha = np.zeros((h, w), np.uint8)
        rgb[:, :: max(2, int(1.2 * ppm))] = 0.2
        rt = max(2, int(0.35 * ppm))
        rgb[:rt] = roof
        if w > 1.5 * ppm:
            aw = int(min(w - 2, 1.3 * ppm))
            ax = int(rng.uniform(0, w - aw))
            c1, c2 = (_jitter(rng, SIGN_COLOURS[i], 0.1) for i in rng.integers(0, len(SIGN_COLOURS), 2))
            ad = _glyph_band(rng, h - rt - 2, aw, c1, c2)
            rgb[rt + 1 : h - 1, ax : ax + aw] = ad
            alpha[rt + 1 : h - 1, ax : ax + aw] = EMIT_ALWAYS
        parts.append(_finish(rgb, alpha))
    return np.concatenate(parts, axis=1)


def billboard_texture(rng: np.random.Generator, faces_m: Sequence[float], height_m: float, ppm: float) -> np.ndarray:
    """A rooftop billboard: an advert on both long faces, steel frame on the ends."""
    widths = [max(2, int(f * ppm)) for f in faces_m]
    h = max(6, int(height_m * ppm))
    parts = []
    c1, c2, c3 = (_jitter(rng, SIGN_COLOURS[i], 0.1) for i in rng.integers(0, len(SIGN_COLOURS), 3))
    for w in widths:
        if w <= 4:
            parts.append(_finish(np.broadcast_to(_rgb([0.3, 0.3, 0.32]), (h, w, 3)).copy()))
            continue
        t = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
        rgb = np.broadcast_to(c1 * (1 - t) + c2 * t, (h, w, 3)).copy()
        rgb[: h // 2] = _glyph_band(rng, h // 2, w, c3, rgb[0, 0])
        rgb[[0, -1]] = 0.2
        rgb[:, [0, -1]] = 0.2
        alpha = np.full((h, w), EMIT_ALWAYS, np.uint8)
        parts.append(_finish(rgb, alpha))
    return np.concatenate(parts, axis=1)


def hedge_texture(rng: np.random.Generator, length_m: float, height_m: float, ppm: float) -> np.ndarray:
    """A trimmed hedge (box) texture."""
    w, h = max(4, int(length_m * ppm)), max(3, int(height_m * ppm))
    base = _jitter(rng, [0.18, 0.38, 0.14], 0.15)
    n = fbm(rng, h, w, 4, 2) * (0.7 + 0.5 * rng.random((h, w), dtype=np.float32))
    return _finish(_rgb(base) * (0.55 + 0.7 * n[..., None]))


def stone_texture(rng: np.random.Generator, length_m: float, height_m: float, ppm: float, colour: Sequence[float]) -> np.ndarray:
    """Stone blocks (parapets, basins, pedestals)."""
    w, h = max(4, int(length_m * ppm)), max(3, int(height_m * ppm))
    bw, bh = max(3, int(rng.uniform(0.6, 1.2) * ppm)), max(2, int(rng.uniform(0.3, 0.5) * ppm))
    vv, uu = np.mgrid[0:h, 0:w]
    uu = uu + ((vv // bh) % 2) * (bw // 2)
    tone = cell_hash(vv // bh, uu // bw, 4)
    rgb = _rgb(colour) * (0.85 + 0.25 * tone[..., None].astype(np.float32))
    rgb[((vv % bh) == 0) | ((uu % bw) == 0)] *= 0.7
    rgb *= 0.9 + 0.15 * rng.random((h, w, 1), dtype=np.float32)
    return _finish(rgb)


def water_jet_texture(rng: np.random.Generator) -> np.ndarray:
    """Fountain water column: bright streaky white-blue."""
    h, w = 32, 32
    streak = value_noise(rng, h, w, 2)
    rgb = _rgb([0.75, 0.85, 0.95]) * (0.7 + 0.45 * streak[..., None])
    return _finish(rgb)


def boat_texture(rng: np.random.Generator, faces_m: Sequence[float], height_m: float, ppm: float) -> np.ndarray:
    """Boat hull: coloured band at the waterline, white top, dark rub rail."""
    w, h = max(4, int(sum(faces_m) * ppm)), max(4, int(height_m * ppm))
    hull = _jitter(rng, [[0.9, 0.9, 0.88], [0.7, 0.1, 0.1], [0.15, 0.25, 0.5], [0.55, 0.35, 0.2]][rng.integers(4)], 0.1)
    rgb = np.broadcast_to(_rgb(hull), (h, w, 3)).copy()
    rgb[int(h * 0.65) :] = _jitter(rng, [0.2, 0.2, 0.25], 0.3)
    rgb[int(h * 0.2) : int(h * 0.2) + max(1, h // 10)] = 0.2
    rgb *= 0.9 + 0.15 * rng.random((h, w, 1), dtype=np.float32)
    return _finish(rgb)


def pavilion_roof_texture(rng: np.random.Generator, faces_m: Sequence[float], height_m: float, ppm: float) -> np.ndarray:
    """Chinese-style pavilion roof: dark tiles with a red beam underneath."""
    w, h = max(4, int(sum(faces_m) * ppm)), max(4, int(height_m * ppm))
    rgb = np.broadcast_to(_rgb([0.2, 0.22, 0.24]), (h, w, 3)).copy()
    rgb[:, ::2] *= 0.7
    rgb[int(h * 0.7) :] = _jitter(rng, [0.6, 0.1, 0.08], 0.1)
    rgb[int(h * 0.85) :, :: max(2, int(0.6 * ppm))] = _rgb([0.9, 0.75, 0.2])
    return _finish(rgb)


def car_texture(
    rng: np.random.Generator,
    length_m: float,
    width_m: float,
    height_m: float,
    colour: Sequence[float],
    along_x: bool,
    forward: bool,
    ppm: float,
    kind: str = "car",
) -> np.ndarray:
    """A vehicle as an axis-aligned box: windows, wheels, head and tail lights.

    along_x: the vehicle's length runs along world x; forward: it faces +x (+y) rather than
    -x (-y). Faces are laid out south, east, north, west like every box texture.
    Returns (round(height_m * ppm), perimeter px, 4) uint8.
    """
    h = max(6, int(round(height_m * ppm)))
    faces = [length_m, width_m, length_m, width_m] if along_x else [width_m, length_m, width_m, length_m]
    # which face is the front/back: along x -> east(1)/west(3); along y -> north(2)/south(0)
    if along_x:
        front, back = (1, 3) if forward else (3, 1)
    else:
        front, back = (2, 0) if forward else (0, 2)
    body = _rgb(colour)
    glass = _rgb([0.1, 0.12, 0.15])
    parts = []
    for face, fm in enumerate(faces):
        w = max(3, int(round(fm * ppm)))
        rgb = np.broadcast_to(body, (h, w, 3)).copy()
        alpha = np.zeros((h, w), np.uint8)
        rgb *= 0.92 + 0.1 * np.linspace(1, 0, h, dtype=np.float32)[:, None, None]
        if kind == "bus":
            wy0, wy1 = int(0.15 * h), int(0.5 * h)
        else:
            wy0, wy1 = int(0.05 * h), int(0.42 * h)
        if face in (front, back):
            inset = max(1, w // 8)
            rgb[wy0:wy1, inset : w - inset] = glass * (1.3 if face == front else 1.0)
            ly0, ly1 = int(0.55 * h), int(0.68 * h)
            lw = max(1, w // 5)
            light = _rgb([0.95, 0.95, 0.85]) if face == front else _rgb([0.8, 0.05, 0.05])
            code = EMIT_HEADLIGHT if face == front else EMIT_TAILLIGHT
            for lx in (1, w - 1 - lw):
                rgb[ly0:ly1, lx : lx + lw] = light
                alpha[ly0:ly1, lx : lx + lw] = code
            rgb[int(0.78 * h) : int(0.88 * h)] = 0.15  # bumper
            if kind == "taxi" and face == front:
                rgb[:wy0 + 1, w // 3 : 2 * w // 3] = _rgb([0.95, 0.9, 0.3])
        else:
            # side: windows with pillars, door line, wheels
            x0, x1 = int(0.2 * w), int(0.85 * w)
            rgb[wy0:wy1, x0:x1] = glass
            n_pill = 4 if kind == "bus" else 2
            for p in np.linspace(x0, x1, n_pill + 1)[1:-1]:
                rgb[wy0:wy1, int(p) : int(p) + 1] = body
            rgb[wy1 : int(0.85 * h), int(0.5 * w)] *= 0.6
            wheel_r = max(2, int(0.33 * ppm))
            yy, xx = np.ogrid[0:h, 0:w]
            for wx in (int(0.18 * w), int(0.82 * w)):
                m = (yy - (h - 1)) ** 2 + (xx - wx) ** 2 <= wheel_r * wheel_r
                rgb[m] = 0.06
                m2 = (yy - (h - 1)) ** 2 + (xx - wx) ** 2 <= (wheel_r // 2) ** 2
                rgb[m2] = 0.55
            if kind == "taxi":
                rgb[int(0.55 * h) : int(0.62 * h), x0:x1] = _rgb([0.1, 0.5, 0.2])
        rgb[h - max(1, h // 10) :] *= 0.4  # shadow under the body
        rgb *= 0.95 + 0.08 * rng.random((h, w, 1), dtype=np.float32)
        parts.append(_finish(rgb, alpha))
    return np.concatenate(parts, axis=1)


def person_texture(rng: np.random.Generator, height_m: float, radius_m: float, ppm: float) -> np.ndarray:
    """A pedestrian wrapped around a thin cylinder: hair, face, shirt, trousers, shoes."""
    h = max(8, int(round(height_m * ppm)))
    w = max(4, int(round(2 * np.pi * radius_m * ppm)))
    rgb = np.zeros((h, w, 3), np.float32)
    skin = _jitter(rng, [[0.85, 0.68, 0.55], [0.7, 0.52, 0.4], [0.5, 0.35, 0.25]][rng.integers(3)], 0.08)
    hair = _jitter(rng, [[0.08, 0.06, 0.05], [0.3, 0.2, 0.1], [0.6, 0.6, 0.6]][rng.integers(3)], 0.2)
    shirt = rng.uniform(0.1, 0.95, 3).astype(np.float32)
    trousers = rng.uniform(0.05, 0.5, 3).astype(np.float32) if rng.random() < 0.7 else rng.uniform(0.3, 0.9, 3).astype(np.float32)
    rows = np.linspace(0, 1, h)
    rgb[rows < 0.07] = hair
    rgb[(rows >= 0.07) & (rows < 0.13)] = skin
    rgb[(rows >= 0.13) & (rows < 0.16)] = skin * 0.8
    rgb[(rows >= 0.16) & (rows < 0.52)] = shirt
    rgb[(rows >= 0.52) & (rows < 0.95)] = trousers
    rgb[rows >= 0.95] = 0.08
    # back of the head has hair, a gap between the legs
    rgb[(rows >= 0.07) & (rows < 0.13), w // 2 :] = hair
    rgb[(rows >= 0.6) & (rows < 0.95), w // 4] *= 0.4
    rgb[(rows >= 0.6) & (rows < 0.95), 3 * w // 4] *= 0.4
    if rng.random() < 0.3:  # bag
        rgb[(rows > 0.3) & (rows < 0.55), : max(1, w // 5)] = rng.uniform(0.05, 0.7, 3)
    rgb *= 0.9 + 0.15 * rng.random((h, w, 1), dtype=np.float32)
    return _finish(rgb)


def hills_profile(rng: np.random.Generator, n: int = 2048) -> Tuple[np.ndarray, np.ndarray]:
    """Distant hills around the town: heights in metres per world azimuth bin and a texture.

    Returns heights (n,) float32 (at the backdrop distance) and an RGBA texture (64, n, 4).
    """
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    hgt = np.zeros(n, np.float64)
    for k, amp in ((1, 60.0), (2, 45.0), (3, 35.0), (5, 25.0), (9, 14.0), (17, 7.0), (33, 3.0)):
        hgt += amp * np.sin(k * t + rng.uniform(0, 2 * np.pi))
    hgt = 200.0 + 1.3 * hgt
    hgt = np.clip(hgt, 40.0, None).astype(np.float32)
    tex_h = 64
    forest = fbm(rng, tex_h, n, 6, 3)
    rgb = _rgb([0.26, 0.38, 0.3]) * (0.55 + 0.7 * forest[..., None])
    rgb *= np.linspace(1.0, 0.8, tex_h, dtype=np.float32)[:, None, None]
    return hgt, _finish(rgb)
