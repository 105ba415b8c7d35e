"""Synthetic panoramic annular images for the panorama tests.

Drawing convention (the one documented in :mod:`panoplace.panorama.annular`): x right, y down,
pixel centres at integers; azimuth grows counter-clockwise as displayed, i.e. the image point
of azimuth ``a`` and radius ``r`` is ``(cx + r cos a, cy - r sin a)``.
"""

from __future__ import annotations

from typing import Tuple

import cv2
import numpy as np


def polar_coords(h: int, w: int, cx: float, cy: float) -> Tuple[np.ndarray, np.ndarray]:
    """Radius and counter-clockwise (as displayed) azimuth in degrees [0, 360) of every pixel."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    radius = np.hypot(xx - cx, yy - cy)
    azimuth = np.degrees(np.arctan2(-(yy - cy), xx - cx)) % 360.0
    return radius, azimuth


def textured_annulus(h: int, w: int, cx: float, cy: float, r_inner: float, r_outer: float,
                     rng: np.random.Generator, noise: float = 3.0) -> np.ndarray:
    """(h, w, 3) uint8 RGB: a randomly textured ring (grey 60..255) on a near-black background
    with a near-black central disc; pixel (x, y) is in the ring when r_inner <= d < r_outer."""
    radius, _ = polar_coords(h, w, cx, cy)
    coarse = rng.integers(60, 256, (h // 8 + 1, w // 8 + 1, 3)).astype(np.uint8)
    tex = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.int32)
    tex = np.clip(tex + rng.integers(-25, 26, (h, w, 3)), 60, 255)
    ring = (radius >= r_inner) & (radius < r_outer)
    img = np.where(ring[..., None], tex, 4).astype(np.float64) + rng.normal(0.0, noise, (h, w, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


SECTOR_COLOURS = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200],
                           [245, 130, 48], [145, 30, 180], [70, 240, 240], [240, 50, 230]], dtype=np.uint8)


def sector_annulus(h: int, w: int, cx: float, cy: float, r_inner: float, r_outer: float,
                   n_sectors: int = 8) -> np.ndarray:
    """(h, w, 3) uint8 RGB ring whose sector ``floor(azimuth / (360 / n))`` has colour
    ``SECTOR_COLOURS[k]``; black elsewhere."""
    radius, azimuth = polar_coords(h, w, cx, cy)
    sector = np.floor(azimuth / (360.0 / n_sectors)).astype(int) % n_sectors
    ring = (radius >= r_inner) & (radius < r_outer)
    img = SECTOR_COLOURS[sector]
    img[~ring] = 0
    return img


def nearest_colour(pixels: np.ndarray, palette: np.ndarray = SECTOR_COLOURS) -> np.ndarray:
    """Index of the nearest palette colour for each pixel: (..., 3) → (...)."""
    d = ((pixels[..., None, :].astype(np.int64) - palette.astype(np.int64)) ** 2).sum(-1)
    return d.argmin(-1)
