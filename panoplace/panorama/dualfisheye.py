"""Dual-fisheye frames (two circular fisheyes, as consumer 360° cameras record them) → equirect.

A frame holds two image circles, by default side by side: the **front** lens (looking along
the camera heading, panorama column 0) on the left half, the **back** lens on the right half.
Each lens is an equidistant (f-theta) fisheye: a ray at angle ``theta`` from the lens axis lands
``radius * theta / (fov/2)`` pixels from the circle centre ``(cx, cy)`` (pixel ``(u, v)`` has its
centre at ``(u, v)``). Seen in the image, the lens' right is ``+u`` and its up is ``-v``; the
front lens' right is the camera's right, the back lens' right is the camera's left (it looks
backwards, upright). A lens may be turned from that nominal pose by ``yaw`` (towards the lens'
own right), ``pitch`` (towards its up) and ``roll`` (about its axis), in degrees, in the lens' own
frame (:func:`~panoplace.panorama.sphere.rotation_matrix`): the back lens with ``yaw=5`` looks
at bearing 185° (its right is the camera's left, bearing 270°).

Stitching: each output direction (:mod:`panoplace.panorama.sphere`) is looked up in both lenses;
where both see it (the overlap of fields of view above 180°) the two are feathered with
weights ``fov/2 - theta`` of each lens, so the seam has no step.

The calibration (:class:`DualFisheyeCalibration`: frame size, and per lens centre, radius, field
of view and rotation) is saved and reused as JSON (:func:`save_calibration`,
:func:`load_calibration`); ``PanoramaConfig(projection="dual-fisheye", fisheye=calib.to_dict())``
carries it into stores and checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Tuple, Union

import cv2
import numpy as np

from panoplace.atomic import write_text_atomic
from panoplace.errors import InputError
from panoplace.textfiles import read_json
from panoplace.panorama.sphere import band_directions, rotation_matrix

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
DEFAULT_FOV_DEG = 190.0

# nominal lens bases as columns (forward, right, up) in the camera frame (x fwd, y right, z up)
_NOMINAL = {"front": np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]).T,
            "back": np.array([[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]]).T}

__all__ = ["FisheyeLens", "DualFisheyeCalibration", "dual_fisheye_band", "stitch_equirect",
           "save_calibration", "load_calibration", "DEFAULT_FOV_DEG"]


@dataclass(frozen=True)
class FisheyeLens:
    """One equidistant fisheye of a dual-fisheye frame (see the module docstring)."""

    cx: float
    cy: float
    radius: float
    fov_deg: float = DEFAULT_FOV_DEG
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0

    def __post_init__(self) -> None:
        if not (self.radius > 0 and math.isfinite(self.radius)):
            raise InputError(f"fisheye radius must be > 0 pixels, got {self.radius}")
        if not (90.0 < self.fov_deg <= 360.0):
            raise InputError(f"fisheye field of view must be in (90, 360] degrees, got {self.fov_deg}")
        for k in ("cx", "cy", "yaw", "pitch", "roll"):
            if not math.isfinite(float(getattr(self, k))):
                raise InputError(f"fisheye {k} must be a finite number, got {getattr(self, k)}")

    def basis(self, which: str) -> np.ndarray:
        """``(3, 3)`` columns (forward, right, up) of this lens in the camera frame."""
        return _NOMINAL[which] @ rotation_matrix(self.yaw, self.pitch, self.roll)


@dataclass(frozen=True)
class DualFisheyeCalibration:
    """Frame size the calibration applies to and its two lenses."""

    width: int
    height: int
    front: FisheyeLens
    back: FisheyeLens

    def __post_init__(self) -> None:
        if self.width < 2 or self.height < 1:
            raise InputError(f"dual-fisheye frame size must be positive, got {self.width}x{self.height}")

    @classmethod
    def default(cls, width: int, height: int, fov_deg: float = DEFAULT_FOV_DEG) -> "DualFisheyeCalibration":
        """Two circles filling the left and right halves (centred; radius = half the smaller side).

        A starting point: real cameras differ by a few pixels and degrees; measure them (or
        read the maker's values) and save a calibration for real footage.
        """
        r = min(width / 4.0, height / 2.0)
        cy = height / 2.0 - 0.5
        return cls(int(width), int(height), FisheyeLens(width / 4.0 - 0.5, cy, r, fov_deg),
                   FisheyeLens(3.0 * width / 4.0 - 0.5, cy, r, fov_deg))

    def to_dict(self) -> Dict[str, Any]:
        return {"width": self.width, "height": self.height, "model": "equidistant",
                "front": dataclasses.asdict(self.front), "back": dataclasses.asdict(self.back)}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "DualFisheyeCalibration":
        if not isinstance(data, dict):
            raise InputError(f"a dual-fisheye calibration is a JSON object, got {type(data).__name__}")
        d = dict(data)
        model = d.pop("model", "equidistant")
        if model != "equidistant":
            raise InputError(f"unknown fisheye model {model!r}; only 'equidistant' (f-theta) is supported")
        unknown = sorted(set(d) - {"width", "height", "front", "back"})
        missing = sorted({"width", "height", "front", "back"} - set(d))
        if unknown or missing:
            raise InputError(f"dual-fisheye calibration: unknown keys {unknown}, missing keys {missing}")
        lenses = []
        names = {f.name for f in dataclasses.fields(FisheyeLens)}
        for which in ("front", "back"):
            lens = d[which]
            if not isinstance(lens, dict) or set(lens) - names or {"cx", "cy", "radius"} - set(lens):
                raise InputError(f"dual-fisheye calibration: {which} needs cx, cy, radius "
                                 f"(optional fov_deg, yaw, pitch, roll), got {lens!r}")
            try:
                lenses.append(FisheyeLens(**{k: float(v) for k, v in lens.items()}))
            except (TypeError, ValueError):
                raise InputError(f"dual-fisheye calibration: {which} values must be numbers, got {lens!r}") from None
        try:
            return cls(int(d["width"]), int(d["height"]), lenses[0], lenses[1])
        except (TypeError, ValueError):
            raise InputError("dual-fisheye calibration: width and height must be integers") from None


def save_calibration(calib: DualFisheyeCalibration, path: PathLike) -> Path:
    """Write ``calib`` as JSON (atomically)."""
    return write_text_atomic(path, json.dumps(calib.to_dict(), indent=2) + "\n")


def load_calibration(path: PathLike) -> DualFisheyeCalibration:
    """Read a calibration written by :func:`save_calibration` (or by hand, same keys)."""
    data = read_json(path, "dual-fisheye calibration")
    return DualFisheyeCalibration.from_dict(data)


def _lens_maps(lens: FisheyeLens, which: str, dirs: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source pixel coordinates of ``dirs`` in ``lens`` and the feather weight (0 outside its view)."""
    local = dirs @ lens.basis(which)  # (..., 3): forward, right, up components
    theta = np.arccos(np.clip(local[..., 0], -1.0, 1.0))
    psi = np.arctan2(local[..., 2], local[..., 1])
    half = math.radians(lens.fov_deg) / 2.0
    r = lens.radius * theta / half
    u = lens.cx + r * np.cos(psi)
    v = lens.cy - r * np.sin(psi)
    return u.astype(np.float32), v.astype(np.float32), np.clip(half - theta, 0.0, None)


_CACHE: Dict[Tuple[Any, ...], Tuple[np.ndarray, ...]] = {}


def _maps(calib: DualFisheyeCalibration, width: int, height: int, top: float, bottom: float) -> Tuple[np.ndarray, ...]:
    key = (calib, width, height, top, bottom)
    if key not in _CACHE:
        if len(_CACHE) > 8:
            _CACHE.clear()
        dirs = band_directions(width, height, top, bottom)
        fu, fv, fw = _lens_maps(calib.front, "front", dirs)
        bu, bv, bw = _lens_maps(calib.back, "back", dirs)
        total = fw + bw
        seen = total > 0
        safe = np.where(seen, total, 1.0)
        _CACHE[key] = (fu, fv, (fw / safe).astype(np.float32)[..., None],
                       bu, bv, (bw / safe).astype(np.float32)[..., None], seen)
    return _CACHE[key]


def dual_fisheye_band(img: np.ndarray, calib: DualFisheyeCalibration, width: int, height: int,
                      top_deg: float = 90.0, bottom_deg: float = -90.0) -> np.ndarray:
    """Sample the equirectangular band ``top_deg..bottom_deg`` of a dual-fisheye frame.

    One bilinear lookup per lens, feathered where both see a direction; directions neither
    lens sees (a total field of view under 360°) are black.

    Shape: ``(calib.height, calib.width, C)`` uint8 → ``(height, width, C)`` uint8.
    """
    if img.ndim != 3 or img.dtype != np.uint8:
        raise InputError(f"dual-fisheye frame must be an (H, W, C) uint8 image, got {img.dtype} {img.shape}")
    if img.shape[:2] != (calib.height, calib.width):
        raise InputError(f"the dual-fisheye calibration is for {calib.width}x{calib.height} frames, "
                         f"the image is {img.shape[1]}x{img.shape[0]}")
    fu, fv, fw, bu, bv, bw, seen = _maps(calib, int(width), int(height), float(top_deg), float(bottom_deg))
    front = cv2.remap(img, fu, fv, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    back = cv2.remap(img, bu, bv, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    out = front.astype(np.float32).reshape(height, width, -1) * fw + back.astype(np.float32).reshape(height, width, -1) * bw
    out = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    out[~seen] = 0
    return out


def stitch_equirect(img: np.ndarray, calib: DualFisheyeCalibration, width: int) -> np.ndarray:
    """The full ``width`` x ``width/2`` equirectangular panorama of a dual-fisheye frame.

    Shape: ``(calib.height, calib.width, C)`` uint8 → ``(width // 2, width, C)`` uint8.
    """
    return dual_fisheye_band(img, calib, int(width), int(width) // 2)
