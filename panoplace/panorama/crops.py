"""Crops of a 360° cylindrical panorama: K equal crops or sliding angular windows.

A window is ``(start column, width in columns)``. Column ``c`` of a panorama of width ``W``
covers azimuth ``c * 360 / W`` relative to column 0, and the panorama is periodic: a window
running past the last column continues at column 0, so :func:`extract_crops` returns crops that
are contiguous in the scene even across the 0/360° seam.
"""

from __future__ import annotations

import logging
import math
from typing import List, Optional, Sequence, Tuple

import numpy as np

from panoplace.errors import InputError

log = logging.getLogger(__name__)

Window = Tuple[int, int]


def crop_windows(pano_width: int, n_crops: int = 1, window_deg: Optional[float] = None,
                 stride_deg: Optional[float] = None) -> List[Window]:
    """Windows ``(start column, width)`` around a panorama of ``pano_width`` columns.

    Equal crops (``window_deg`` None): ``n_crops`` windows starting at
    ``round(k * pano_width / n_crops)``, all ``ceil(pano_width / n_crops)`` wide, so together
    they cover every column (exactly once when ``n_crops`` divides ``pano_width``).

    Sliding windows (``window_deg`` set): windows ``round(window_deg * pano_width / 360)``
    columns wide starting at azimuths ``0, stride_deg, 2 * stride_deg, ...`` below 360°
    (``ceil(360 / stride_deg)`` windows; ``stride_deg`` defaults to ``window_deg``).
    ``n_crops`` is ignored then. The number of windows depends on the angles only, never on
    ``pano_width``.
    """
    if isinstance(pano_width, bool) or not isinstance(pano_width, (int, np.integer)) or pano_width < 1:
        raise InputError(f"pano_width must be a positive integer, got {pano_width!r}")
    pano_width = int(pano_width)
    if window_deg is None:
        if stride_deg is not None:
            raise InputError("stride_deg needs window_deg (sliding windows are window_deg wide)")
        if isinstance(n_crops, bool) or not isinstance(n_crops, (int, np.integer)) or n_crops < 1:
            raise InputError(f"n_crops must be a positive integer, got {n_crops!r}")
        if n_crops > pano_width:
            raise InputError(f"cannot cut {n_crops} crops from a panorama {pano_width} columns wide")
        width = math.ceil(pano_width / n_crops)
        return [(int(round(k * pano_width / n_crops)) % pano_width, width) for k in range(n_crops)]

    window_deg = float(window_deg)
    stride_deg = window_deg if stride_deg is None else float(stride_deg)
    if not (0.0 < window_deg <= 360.0):
        raise InputError(f"window_deg must be in (0, 360], got {window_deg:g}")
    if not (0.0 < stride_deg <= 360.0):
        raise InputError(f"stride_deg must be in (0, 360], got {stride_deg:g}")
    width = max(1, int(round(window_deg * pano_width / 360.0)))
    count = max(1, math.ceil(360.0 / stride_deg - 1e-9))
    cols_per_deg = pano_width / 360.0
    return [(int(round(k * stride_deg * cols_per_deg)) % pano_width, width) for k in range(count)]


def extract_crops(pano: np.ndarray, windows: Sequence[Window]) -> np.ndarray:
    """Cut ``windows`` (from :func:`crop_windows`) out of ``pano``, wrapping around the seam.

    Shape:
        pano ``(H, W, C)`` or ``(H, W)`` → ``(K, H, w, C)`` or ``(K, H, w)``, same dtype, where
        ``K = len(windows)`` and ``w`` is the (common) window width; ``w`` may exceed ``W``
        (the panorama then repeats).
    """
    if not isinstance(pano, np.ndarray) or pano.ndim not in (2, 3):
        got = f"shape {pano.shape}" if isinstance(pano, np.ndarray) else type(pano).__name__
        raise InputError(f"extract_crops expects an (H, W, C) or (H, W) panorama, got {got}")
    if len(windows) == 0:
        raise InputError("extract_crops needs at least one window")
    widths = {int(w) for _, w in windows}
    if len(widths) != 1:
        raise InputError(f"all windows must have the same width to be stacked, got widths {sorted(widths)}")
    width = widths.pop()
    if width < 1:
        raise InputError(f"window width must be >= 1, got {width}")
    pano_width = pano.shape[1]
    starts = np.array([int(s) for s, _ in windows], dtype=np.int64)
    cols = np.mod(starts[:, None] + np.arange(width, dtype=np.int64)[None, :], pano_width)  # (K, w)
    crops = np.take(pano, cols, axis=1)  # (H, K, w[, C])
    return np.ascontiguousarray(np.moveaxis(crops, 1, 0))
