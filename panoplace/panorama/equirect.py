"""Elevation bands of equirectangular panoramas.

The rows of an equirectangular image of height ``H`` span elevation +90° (top edge of row 0)
to -90° (bottom edge of row ``H - 1``) linearly; row ``i`` covers elevations
``[90 - (i + 1) * 180 / H, 90 - i * 180 / H]``. Columns span the 360° of azimuth.
"""

from __future__ import annotations

import logging
from typing import Tuple

import numpy as np

from panoplace.errors import InputError

log = logging.getLogger(__name__)


def band_rows(height: int, top_deg: float, bottom_deg: float) -> Tuple[int, int]:
    """Row range ``(first, stop)`` of the band ``top_deg >= elevation >= bottom_deg``.

    The band edges are rounded to the nearest row boundary; the band has at least one row.
    """
    top_deg, bottom_deg = float(top_deg), float(bottom_deg)
    if not (-90.0 <= bottom_deg < top_deg <= 90.0):
        raise InputError(
            f"elevation band needs 90 >= top > bottom >= -90 degrees, got top={top_deg:g} bottom={bottom_deg:g}")
    first = int(round((90.0 - top_deg) / 180.0 * height))
    stop = int(round((90.0 - bottom_deg) / 180.0 * height))
    first = min(max(first, 0), height - 1)
    stop = min(max(stop, first + 1), height)
    return first, stop


def equirect_band(img: np.ndarray, top_deg: float, bottom_deg: float) -> np.ndarray:
    """Keep the rows of an equirectangular panorama between elevations ``top_deg`` and ``bottom_deg``.

    Shape: ``(H, W, C)`` or ``(H, W)`` → ``(stop - first, W, C)`` or ``(stop - first, W)``
    (see :func:`band_rows`), a view of ``img``.
    """
    if not isinstance(img, np.ndarray) or img.ndim not in (2, 3) or min(img.shape[:2]) < 1:
        got = f"shape {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
        raise InputError(f"equirect_band expects an (H, W, C) or (H, W) image, got {got}")
    h, w = img.shape[:2]
    if abs(w - 2 * h) > max(2, 0.02 * w):
        log.debug("equirectangular image is %dx%d, not 2:1; rows are still read as +90..-90 degrees", w, h)
    first, stop = band_rows(h, top_deg, bottom_deg)
    return img[first:stop]
