"""Unwrapping of panoramic annular images into cylindrical panoramas.

A panoramic annular lens (PAL) images the whole 360° horizon onto a ring between an inner and
an outer radius around a centre. Unwrapping samples that ring on a polar grid and lays it out as
a rectangle: one output column per azimuth, one output row per radius.

Conventions (image coordinates: x to the right, y **down**; pixel ``(x, y)`` has its centre at
integer coordinates, as in OpenCV's ``remap``):

- An image direction (azimuth) ``a`` is measured from the +x axis (pointing right from the
  centre), **counter-clockwise as the image is displayed**, i.e. from the right towards the
  top of the image (towards smaller y): ``a = 90°`` points straight up. The image point of
  radius ``r`` and azimuth ``a`` is ``(cx + r cos a, cy - r sin a)``.
- Output column ``c`` (of ``out_width``) samples azimuth ``start_deg + c * 360 / out_width``
  (``clockwise=False``, the default) or ``start_deg - c * 360 / out_width``
  (``clockwise=True``), exactly: column 0 is at ``start_deg`` in both cases, and
  ``start_deg`` is always measured counter-clockwise as displayed.
- Output row ``i`` (of ``out_height``) samples radius
  ``r_outer - (i + 0.5) * (r_outer - r_inner) / out_height`` (pixel centres of the radial
  range): row 0 is next to the outer radius, the last row next to the inner radius. In a
  panoramic annular lens the outer ring images the higher elevations, so row 0 is the top of
  the scene. ``outer_is_top=False`` flips this for lenses that image the other way round.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Mapping, Tuple, Union

import cv2
import numpy as np

from panoplace.atomic import write_text_atomic
from panoplace.errors import InputError
from panoplace.textfiles import read_json

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

_REQUIRED = ("cx", "cy", "r_inner", "r_outer")


@dataclass(frozen=True)
class AnnulusGeometry:
    """Where the ring of a panoramic annular image lies and how to read it.

    cx, cy: centre of the ring in pixels (x right, y down, pixel centres at integers).
    r_inner, r_outer: inner and outer radius of the ring in pixels, ``0 <= r_inner < r_outer``.
    start_deg: image direction of output column 0, degrees from the +x axis, counter-clockwise
        as displayed (90 = up), whatever ``clockwise`` is.
    clockwise: columns sweep clockwise as displayed (default: counter-clockwise, from the right
        towards the top).
    outer_is_top: output row 0 is the outer radius (default; the usual PAL optics).
    """

    cx: float
    cy: float
    r_inner: float
    r_outer: float
    start_deg: float = 0.0
    clockwise: bool = False
    outer_is_top: bool = True

    def __post_init__(self) -> None:
        for name in ("cx", "cy", "r_inner", "r_outer", "start_deg"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise InputError(f"annulus {name} must be a number, got {value!r}")
            if not math.isfinite(float(value)):
                raise InputError(f"annulus {name} must be finite, got {value!r}")
            object.__setattr__(self, name, float(value))
        for name in ("clockwise", "outer_is_top"):
            value = getattr(self, name)
            if not isinstance(value, (bool, np.bool_)):
                raise InputError(f"annulus {name} must be true or false, got {value!r}")
            object.__setattr__(self, name, bool(value))
        if self.r_inner < 0:
            raise InputError(f"annulus r_inner must be >= 0, got {self.r_inner:g}")
        if self.r_outer <= self.r_inner:
            raise InputError(
                f"annulus r_outer ({self.r_outer:g}) must be larger than r_inner ({self.r_inner:g})")

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-able dict (the form stored in ``PanoramaConfig.annulus``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "AnnulusGeometry":
        """Inverse of :meth:`to_dict`; unknown or missing keys raise :class:`InputError`."""
        if not isinstance(data, Mapping):
            raise InputError(f"annulus geometry must be a mapping of its fields, got {type(data).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise InputError(f"unknown annulus key(s) {unknown}; valid keys: {names}")
        missing = [k for k in _REQUIRED if k not in data]
        if missing:
            raise InputError(f"annulus geometry lacks {missing}; required keys: {list(_REQUIRED)}")
        return cls(**dict(data))

    def replace(self, **changes: Any) -> "AnnulusGeometry":
        """A copy with some fields changed (``None`` values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def save_geometry(geometry: AnnulusGeometry, path: PathLike) -> Path:
    """Write ``geometry`` as JSON to ``path`` atomically (temp file + ``os.replace``)."""
    path = Path(path)
    write_text_atomic(path, json.dumps(geometry.to_dict(), indent=2) + "\n")
    log.debug("saved annulus geometry to %s", path)
    return path


def load_geometry(path: PathLike) -> AnnulusGeometry:
    """Read a geometry written by :func:`save_geometry`; any problem raises :class:`InputError`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"calibration file {path} does not exist")
    data = read_json(path, "calibration file")
    try:
        return AnnulusGeometry.from_dict(data)
    except InputError as exc:
        raise InputError(f"calibration file {path}: {exc}") from None


def polar_coords(geometry: AnnulusGeometry, column: np.ndarray, row: np.ndarray, out_width: int,
                 out_height: int) -> Tuple[np.ndarray, np.ndarray]:
    """Source image coordinates of (possibly fractional) panorama positions.

    ``column``/``row`` are positions in a panorama of ``out_width`` x ``out_height`` (column
    ``c`` samples azimuth ``start_deg +- c * 360 / out_width``, row ``i`` the radius of the
    module docstring); they broadcast against each other.

    Returns ``(map_x, map_y)`` float64 of the broadcast shape.
    """
    g = geometry
    step = -360.0 / out_width if g.clockwise else 360.0 / out_width
    az = np.deg2rad(g.start_deg + np.asarray(column, dtype=np.float64) * step)
    frac = (np.asarray(row, dtype=np.float64) + 0.5) / out_height
    if g.outer_is_top:
        radius = g.r_outer - frac * (g.r_outer - g.r_inner)
    else:
        radius = g.r_inner + frac * (g.r_outer - g.r_inner)
    return g.cx + radius * np.cos(az), g.cy - radius * np.sin(az)


def polar_grid(geometry: AnnulusGeometry, out_width: int, out_height: int) -> Tuple[np.ndarray, np.ndarray]:
    """Source image coordinates of every output pixel (see the module docstring).

    Returns ``(map_x, map_y)``, each ``(out_height, out_width)`` float32.
    """
    map_x, map_y = polar_coords(geometry, np.arange(out_width)[None, :], np.arange(out_height)[:, None],
                                out_width, out_height)
    return map_x.astype(np.float32), map_y.astype(np.float32)


@lru_cache(maxsize=16)
def _remap_tables(geometry: AnnulusGeometry, out_width: int, out_height: int) -> Tuple[np.ndarray, np.ndarray]:
    """Fixed-point remap tables (``cv2.convertMaps`` CV_16SC2 form), cached per geometry+size."""
    map_x, map_y = polar_grid(geometry, out_width, out_height)
    m1, m2 = cv2.convertMaps(map_x, map_y, cv2.CV_16SC2)
    m1.setflags(write=False)
    m2.setflags(write=False)
    log.debug("built remap tables for %s -> %dx%d", geometry, out_width, out_height)
    return m1, m2


class AnnularUnwrapper:
    """Unwraps panoramic annular images of one fixed geometry (bilinear, cached remap tables).

    Shape:
        input ``(H, W, C)`` or ``(H, W)`` uint8 → output ``(out_height, out_width, C)`` or
        ``(out_height, out_width)`` uint8. Samples outside the image are black.
    """

    def __init__(self, geometry: AnnulusGeometry, out_width: int, out_height: int) -> None:
        if not isinstance(geometry, AnnulusGeometry):
            raise InputError(f"geometry must be an AnnulusGeometry, got {type(geometry).__name__}")
        for name, value in (("out_width", out_width), ("out_height", out_height)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        self.geometry = geometry
        self.out_width = int(out_width)
        self.out_height = int(out_height)

    def __repr__(self) -> str:
        return f"AnnularUnwrapper({self.geometry}, out_width={self.out_width}, out_height={self.out_height})"

    @property
    def maps(self) -> Tuple[np.ndarray, np.ndarray]:
        """The cached cv2 remap tables (read-only)."""
        return _remap_tables(self.geometry, self.out_width, self.out_height)

    def azimuth_of_column(self, column: Union[float, np.ndarray]) -> Union[float, np.ndarray]:
        """Image direction in degrees [0, 360), counter-clockwise as displayed from +x, sampled by
        output column(s) ``column``."""
        step = (-360.0 if self.geometry.clockwise else 360.0) / self.out_width
        return np.mod(self.geometry.start_deg + np.asarray(column, dtype=np.float64) * step, 360.0)

    def __call__(self, img: np.ndarray) -> np.ndarray:
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim not in (2, 3):
            got = f"{img.dtype} array of shape {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
            raise InputError(f"annular unwrap expects an (H, W, C) or (H, W) uint8 image, got {got}")
        h, w = img.shape[:2]
        g = self.geometry
        if not (0 <= g.cx < w and 0 <= g.cy < h):
            raise InputError(
                f"annulus centre ({g.cx:.1f}, {g.cy:.1f}) lies outside the {w}x{h} image; "
                "the calibration does not belong to these images")
        m1, m2 = self.maps
        out = cv2.remap(img, m1, m2, interpolation=cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        if img.ndim == 3 and out.ndim == 2:  # cv2 drops a single channel axis
            out = out[:, :, None]
        return out


def unwrap_annulus(img: np.ndarray, geometry: AnnulusGeometry, out_width: int, out_height: int) -> np.ndarray:
    """One-shot :class:`AnnularUnwrapper` (the remap tables are still cached).

    Shape: ``(H, W, C)`` uint8 → ``(out_height, out_width, C)`` uint8.
    """
    return AnnularUnwrapper(geometry, out_width, out_height)(img)


@lru_cache(maxsize=16)
def _crop_tables(geometry: AnnulusGeometry, pano_width: int, pano_height: int, windows: Tuple[Tuple[int, int], ...],
                 crop_h: int, crop_w: int) -> Tuple[np.ndarray, np.ndarray]:
    """Remap tables ``(K * crop_h, crop_w)`` that sample every crop straight from the ring."""
    x = (np.arange(crop_w, dtype=np.float64) + 0.5) * (windows[0][1] / crop_w) - 0.5  # columns within a window
    y = (np.arange(crop_h, dtype=np.float64) + 0.5) * (pano_height / crop_h) - 0.5  # panorama rows
    starts = np.array([s for s, _ in windows], dtype=np.float64)
    cols = starts[:, None, None] + x[None, None, :]  # (K, 1, w): azimuth is periodic, no wrap needed
    map_x, map_y = polar_coords(geometry, cols, y[None, :, None], pano_width, pano_height)  # (K, h, w)
    shape = (len(windows) * crop_h, crop_w)
    m1, m2 = cv2.convertMaps(map_x.reshape(shape).astype(np.float32), map_y.reshape(shape).astype(np.float32),
                             cv2.CV_16SC2)
    m1.setflags(write=False)
    m2.setflags(write=False)
    return m1, m2


def annular_crops(img: np.ndarray, geometry: AnnulusGeometry, pano_width: int, pano_height: int,
                  windows: Tuple[Tuple[int, int], ...], crop_size: Tuple[int, int]) -> np.ndarray:
    """The crops ``windows`` (of a ``pano_width`` x ``pano_height`` unwrapped panorama, see
    :func:`panoplace.panorama.crops.crop_windows`), each resized to ``crop_size``, sampled in
    one bilinear remap straight from the ring (cached tables).

    It gives what unwrapping, cutting and resizing give (exactly so when a window is already
    ``crop_size``), with one interpolation instead of two and no full panorama in between.

    Shape: ``(H, W, C)`` uint8 -> ``(K, crop_h, crop_w, C)`` uint8.
    """
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3:
        got = f"{img.dtype} array of shape {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
        raise InputError(f"annular crops expect an (H, W, C) uint8 image, got {got}")
    h, w = img.shape[:2]
    g = geometry
    if not (0 <= g.cx < w and 0 <= g.cy < h):
        raise InputError(f"annulus centre ({g.cx:.1f}, {g.cy:.1f}) lies outside the {w}x{h} image; "
                         "the calibration does not belong to these images")
    ch, cw = int(crop_size[0]), int(crop_size[1])
    m1, m2 = _crop_tables(g, int(pano_width), int(pano_height), tuple((int(a), int(b)) for a, b in windows), ch, cw)
    out = cv2.remap(img, m1, m2, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out.reshape(len(windows), ch, cw, img.shape[2])
