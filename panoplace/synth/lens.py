"""Synthetic 360° lenses: equirectangular panorama -> panoramic annular, dual-fisheye or cubemap image.

:class:`DualFisheyeLens` and :func:`equirect_to_cubemap` render the two 360° camera formats that
:mod:`panoplace.panorama.dualfisheye` and :mod:`panoplace.panorama.cubemap` read back; they go
from each *output* pixel to its viewing direction (the inverse of what the readers compute), so
a reader that disagrees with the format shows up as a difference to the original panorama.

The rest of this docstring is about the panoramic annular lens (PAL).

The annular image is square (``size`` x ``size``); the scene's elevation band
``[elev_bottom_deg, elev_top_deg]`` lies on a ring between ``r_inner`` and ``r_outer`` around
``(cx, cy)``: the **top** of the band (highest elevation) on the **outer** radius. Outside
the ring the image is black; inside the inner radius it is a dark disc (the lens' blind
centre).

Conventions (written into the lens JSON as well):

- pixel ``(u, v)`` (column, row) has its centre at coordinates ``(u, v)``; ``cx, cy`` use
  those coordinates (so the exact centre of a 1024 image is 511.5);
- image angles are measured from the +u axis (pointing right), counter-clockwise as seen on
  screen (towards -v, i.e. up);
- azimuth ``a`` of the scene is measured from panorama column 0 (the camera heading),
  increasing as panorama columns increase (clockwise seen from above);
- azimuth ``a`` lies at image angle ``start_deg + a`` when ``clockwise`` is False, and at
  ``start_deg - a`` when it is True;
- radial mapping, with ``rho = (r - r_inner) / (r_outer - r_inner)``:
  ``linear`` (f-theta): ``elev = bottom + rho * (top - bottom)``;
  ``sine`` (equal-area): ``sin(elev) = sin(bottom) + rho * (sin(top) - sin(bottom))``.

The keys ``cx, cy, r_inner, r_outer, start_deg, clockwise`` are those of
``panoplace.panorama.annular.AnnulusGeometry`` (written alone to ``annulus.json``).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Tuple

import cv2
import numpy as np

from panoplace.atomic import write_text_atomic
from panoplace.errors import InputError
from panoplace.panorama.cubemap import FACES, GRID
from panoplace.panorama.dualfisheye import DualFisheyeCalibration, FisheyeLens

RADIAL_MAPPINGS = ("linear", "sine")
GEOMETRY_KEYS = ("cx", "cy", "r_inner", "r_outer", "start_deg", "clockwise")


@dataclass(frozen=True)
class AnnularLens:
    """Geometry of a synthetic panoramic annular image (see the module docstring)."""

    size: int = 1024
    cx: float = 517.6
    cy: float = 507.4
    r_inner: float = 150.0
    r_outer: float = 480.0
    start_deg: float = 90.0
    clockwise: bool = False
    elev_top_deg: float = 30.0
    elev_bottom_deg: float = -60.0
    radial: str = "linear"
    vignetting: float = 0.2
    centre_grey: int = 14

    def __post_init__(self) -> None:
        if self.size < 32 or self.size > 8192:
            raise InputError(f"annular image size must be in [32, 8192], got {self.size}")
        if not (0 <= self.r_inner < self.r_outer):
            raise InputError(f"need 0 <= r_inner < r_outer, got {self.r_inner} and {self.r_outer}")
        if (self.cx - self.r_outer < -0.5 or self.cy - self.r_outer < -0.5
                or self.cx + self.r_outer > self.size - 0.5 or self.cy + self.r_outer > self.size - 0.5):
            raise InputError(
                f"the ring (centre {self.cx:.1f},{self.cy:.1f}, r_outer {self.r_outer}) does not fit a {self.size}px image"
            )
        if not (-90.0 <= self.elev_bottom_deg < self.elev_top_deg <= 90.0):
            raise InputError(
                f"need -90 <= elev_bottom_deg < elev_top_deg <= 90, got {self.elev_bottom_deg}, {self.elev_top_deg}"
            )
        if self.radial not in RADIAL_MAPPINGS:
            raise InputError(f"unknown radial mapping {self.radial!r}; choose one of {list(RADIAL_MAPPINGS)}")
        if not (0.0 <= self.vignetting < 1.0):
            raise InputError(f"vignetting must be in [0, 1), got {self.vignetting}")

    @classmethod
    def for_size(cls, size: int, **overrides: Any) -> "AnnularLens":
        """The default lens scaled to a ``size`` x ``size`` image (centre slightly off, as real)."""
        s = size / 1024.0
        base: Dict[str, Any] = dict(size=int(size), cx=517.6 * s - 0.5 * (s - 1), cy=507.4 * s - 0.5 * (s - 1), r_inner=150.0 * s, r_outer=480.0 * s)
        base.update(overrides)
        return cls(**base)

    def geometry_dict(self) -> Dict[str, Any]:
        """The ``AnnulusGeometry`` keys only (cx, cy, r_inner, r_outer, start_deg, clockwise)."""
        return {k: getattr(self, k) for k in GEOMETRY_KEYS}

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["conventions"] = {
            "pixel_centre": "pixel (u, v) has its centre at (u, v)",
            "image_angle": "from +u (right), counter-clockwise on screen",
            "azimuth": "from panorama column 0 (camera heading), clockwise seen from above",
            "mapping": "image angle = start_deg + azimuth (clockwise=False) or start_deg - azimuth (True)",
            "radius": "r_outer = elev_top_deg, r_inner = elev_bottom_deg",
        }
        return d

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "AnnularLens":
        d = {k: v for k, v in data.items() if k != "conventions"}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise InputError(f"unknown lens key(s) {unknown}; valid keys: {sorted(names)}")
        return cls(**d)

    # --- geometry ---------------------------------------------------------------------------

    def elevation_of_rho(self, rho: np.ndarray) -> np.ndarray:
        """Elevation (degrees) at normalised radius ``rho`` in [0, 1] (0 = r_inner)."""
        top, bot = self.elev_top_deg, self.elev_bottom_deg
        if self.radial == "linear":
            return bot + rho * (top - bot)
        s = math.sin(math.radians(bot)) + rho * (math.sin(math.radians(top)) - math.sin(math.radians(bot)))
        return np.degrees(np.arcsin(np.clip(s, -1.0, 1.0)))

    def rho_of_elevation(self, elev_deg: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`elevation_of_rho`."""
        top, bot = self.elev_top_deg, self.elev_bottom_deg
        if self.radial == "linear":
            return (np.asarray(elev_deg) - bot) / (top - bot)
        sb, st = math.sin(math.radians(bot)), math.sin(math.radians(top))
        return (np.sin(np.radians(elev_deg)) - sb) / (st - sb)

    def project(self, azimuth_deg: np.ndarray, elev_deg: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Image coordinates (u, v) of scene directions (azimuth from column 0, elevation)."""
        rho = self.rho_of_elevation(elev_deg)
        r = self.r_inner + rho * (self.r_outer - self.r_inner)
        ang = np.radians(self.start_deg + (-1.0 if self.clockwise else 1.0) * np.asarray(azimuth_deg))
        return self.cx + r * np.cos(ang), self.cy - r * np.sin(ang)

    def _maps(self, pano_w: int, pano_h: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        n = self.size
        v, u = np.mgrid[0:n, 0:n].astype(np.float64)
        du, dv = u - self.cx, v - self.cy
        r = np.hypot(du, dv)
        phi = np.degrees(np.arctan2(-dv, du))
        az = ((phi - self.start_deg) * (-1.0 if self.clockwise else 1.0)) % 360.0
        rho = (r - self.r_inner) / (self.r_outer - self.r_inner)
        elev = self.elevation_of_rho(np.clip(rho, 0.0, 1.0))
        map_x = (az * pano_w / 360.0 - 0.5 + 2.0).astype(np.float32)  # +2: wrapped padding columns
        map_y = ((90.0 - elev) * pano_h / 180.0 - 0.5).astype(np.float32)
        ring = (rho >= 0.0) & (rho <= 1.0)
        inner = rho < 0.0
        # mild vignetting towards both edges of the ring
        gain = (1.0 - self.vignetting * (2.0 * np.clip(rho, 0, 1) - 1.0) ** 2).astype(np.float32)
        return map_x, map_y, ring, inner, gain


_MAP_CACHE: Dict[Tuple[AnnularLens, int, int], Tuple[np.ndarray, ...]] = {}


def equirect_to_annular(pano: np.ndarray, lens: AnnularLens) -> np.ndarray:
    """Render the annular image of an equirectangular panorama through ``lens``.

    pano: (H, W, 3) uint8 equirectangular (row 0 = +90 deg, column 0 = heading, see
    :mod:`panoplace.synth.render`). Returns (size, size, 3) uint8.
    """
    if pano.ndim != 3 or pano.shape[2] != 3 or pano.dtype != np.uint8:
        raise InputError(f"expected an (H, W, 3) uint8 panorama, got {pano.shape} {pano.dtype}")
    h, w = pano.shape[:2]
    key = (lens, w, h)
    if key not in _MAP_CACHE:
        if len(_MAP_CACHE) > 8:
            _MAP_CACHE.clear()
        _MAP_CACHE[key] = lens._maps(w, h)
    map_x, map_y, ring, inner, gain = _MAP_CACHE[key]
    padded = np.concatenate([pano[:, -2:], pano, pano[:, :2]], axis=1)
    out = cv2.remap(padded, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    out = (out.astype(np.float32) * gain[..., None]).astype(np.uint8)
    out[~ring] = 0
    out[inner] = lens.centre_grey
    return out


def write_lens_files(lens: AnnularLens, folder: Path) -> Tuple[Path, Path]:
    """Write ``annulus.json`` (AnnulusGeometry keys) and ``lens.json`` (full model) atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    a = folder / "annulus.json"
    b = folder / "lens.json"
    write_text_atomic(a, json.dumps(lens.geometry_dict(), indent=2) + "\n")
    write_text_atomic(b, json.dumps(lens.to_dict(), indent=2) + "\n")
    return a, b


def load_lens(path: Path) -> AnnularLens:
    """Read a ``lens.json`` written by :func:`write_lens_files`."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read lens file {path}: {exc}") from None
    return AnnularLens.from_dict(data)


# --- dual fisheye and cubemap -------------------------------------------------------------------

def _sample_equirect(pano: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Bilinear samples of a full equirectangular panorama along directions ``d`` (..., 3)."""
    h, w = pano.shape[:2]
    az = np.degrees(np.arctan2(d[..., 1], d[..., 0])) % 360.0
    el = np.degrees(np.arcsin(np.clip(d[..., 2], -1.0, 1.0)))
    map_x = (az * w / 360.0 - 0.5 + 2.0).astype(np.float32)  # +2: wrapped padding columns
    map_y = ((90.0 - el) * h / 180.0 - 0.5).astype(np.float32)
    padded = np.concatenate([pano[:, -2:], pano, pano[:, :2]], axis=1)
    return cv2.remap(padded, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


@dataclass(frozen=True)
class DualFisheyeLens:
    """A consumer 360° camera: two equidistant fisheyes side by side in a ``2 size x size`` frame.

    ``fov_deg`` per lens; each circle has radius ``size / 2 - margin`` around its half's centre
    shifted by ``(dx, dy)`` pixels (front) and ``(-dx, -dy)`` (back); the back lens is turned by
    ``back_yaw``/``back_pitch``/``back_roll`` degrees from looking exactly backwards (real
    cameras are a little off). :meth:`calibration` gives the matching
    :class:`~panoplace.panorama.dualfisheye.DualFisheyeCalibration`.
    """

    size: int = 512
    fov_deg: float = 195.0
    margin: float = 4.0
    dx: float = 1.5
    dy: float = -2.0
    back_yaw: float = 1.0
    back_pitch: float = -0.8
    back_roll: float = 0.6

    def __post_init__(self) -> None:
        if not (16 <= self.size <= 8192):
            raise InputError(f"dual-fisheye size must be in [16, 8192], got {self.size}")
        if not (180.0 < self.fov_deg <= 240.0):
            raise InputError(f"dual-fisheye field of view must be in (180, 240], got {self.fov_deg}")

    def calibration(self) -> DualFisheyeCalibration:
        s, r = self.size, self.size / 2.0 - self.margin
        front = FisheyeLens(s / 2.0 - 0.5 + self.dx, s / 2.0 - 0.5 + self.dy, r, self.fov_deg)
        back = FisheyeLens(1.5 * s - 0.5 - self.dx, s / 2.0 - 0.5 - self.dy, r, self.fov_deg,
                           self.back_yaw, self.back_pitch, self.back_roll)
        return DualFisheyeCalibration(2 * s, s, front, back)


def equirect_to_dual_fisheye(pano: np.ndarray, lens: DualFisheyeLens) -> np.ndarray:
    """Render the dual-fisheye frame of a full equirectangular panorama.

    Shape: ``(H, W, 3)`` uint8 (row 0 = +90 deg, column 0 = heading) → ``(size, 2 size, 3)`` uint8;
    black outside the two image circles.
    """
    if pano.ndim != 3 or pano.shape[2] != 3 or pano.dtype != np.uint8:
        raise InputError(f"expected an (H, W, 3) uint8 panorama, got {pano.shape} {pano.dtype}")
    calib = lens.calibration()
    v, u = np.mgrid[0:calib.height, 0:calib.width].astype(np.float64)
    out = np.zeros((calib.height, calib.width, 3), np.uint8)
    for which, fl in (("front", calib.front), ("back", calib.back)):
        half = (u < calib.width / 2) if which == "front" else (u >= calib.width / 2)
        du, dv = u - fl.cx, -(v - fl.cy)  # image right, image up
        r = np.hypot(du, dv)
        theta = r / fl.radius * math.radians(fl.fov_deg) / 2.0
        psi = np.arctan2(dv, du)
        local = np.stack([np.cos(theta), np.sin(theta) * np.cos(psi), np.sin(theta) * np.sin(psi)], axis=-1)
        d = local @ fl.basis(which).T  # lens (forward, right, up) -> camera (x, y, z)
        img = _sample_equirect(pano, d)
        inside = half & (r <= fl.radius)
        out[inside] = img[inside]
    return out


def equirect_to_cubemap(pano: np.ndarray, face: int) -> np.ndarray:
    """Render the horizontal-cross cubemap (:mod:`panoplace.panorama.cubemap`) of a panorama.

    Shape: ``(H, W, 3)`` uint8 → ``(3 face, 4 face, 3)`` uint8; unused cells black.
    """
    if pano.ndim != 3 or pano.shape[2] != 3 or pano.dtype != np.uint8:
        raise InputError(f"expected an (H, W, 3) uint8 panorama, got {pano.shape} {pano.dtype}")
    out = np.zeros((GRID[1] * face, GRID[0] * face, 3), np.uint8)
    c = (np.arange(face) + 0.5) * 2.0 / face - 1.0
    t, s = np.meshgrid(c, c, indexing="ij")
    for col, row, f, r, up in FACES.values():
        d = (np.array(f, float)[None, None] + s[..., None] * np.array(r, float) - t[..., None] * np.array(up, float))
        d /= np.linalg.norm(d, axis=-1, keepdims=True)
        out[row * face:(row + 1) * face, col * face:(col + 1) * face] = _sample_equirect(pano, d)
    return out
