"""Viewing directions of equirectangular pixels, and rotations (shared by the 360° formats).

Camera frame: ``x`` forward (the camera heading, panorama column 0), ``y`` right, ``z`` up.
Equirectangular convention (as :mod:`panoplace.synth.render` and
:mod:`panoplace.panorama.equirect`): column ``j`` of ``W`` looks at azimuth
``(j + 0.5) * 360 / W`` degrees, clockwise seen from above (towards ``+y``); row ``i`` of an
elevation band ``top..bottom`` of ``H`` rows looks at elevation
``top - (i + 0.5) * (top - bottom) / H`` (``90..-90`` for the full sphere).
A direction at azimuth ``a``, elevation ``e`` is ``(cos e cos a, cos e sin a, sin e)``.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from panoplace.errors import InputError

__all__ = ["band_directions", "rotation_matrix", "direction_to_equirect"]


def band_directions(width: int, height: int, top_deg: float = 90.0, bottom_deg: float = -90.0) -> np.ndarray:
    """Unit viewing directions of the pixels of an equirectangular elevation band.

    Shape: → ``(height, width, 3)`` float64 ``(x, y, z)`` in the camera frame.
    """
    if width < 1 or height < 1:
        raise InputError(f"panorama size must be positive, got {width}x{height}")
    if not (-90.0 <= bottom_deg < top_deg <= 90.0):
        raise InputError(f"elevation band needs 90 >= top > bottom >= -90, got {top_deg:g}, {bottom_deg:g}")
    az = np.radians((np.arange(width) + 0.5) * 360.0 / width)
    el = np.radians(top_deg - (np.arange(height) + 0.5) * (top_deg - bottom_deg) / height)
    ce = np.cos(el)[:, None]
    return np.stack([ce * np.cos(az)[None, :], ce * np.sin(az)[None, :],
                     np.broadcast_to(np.sin(el)[:, None], (height, width))], axis=-1)


def rotation_matrix(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """Rotation by ``yaw`` about ``z`` (up; positive turns ``x`` towards ``y``, to the right),
    then ``pitch`` about ``y`` (positive tilts ``x`` up), then ``roll`` about ``x``.

    Shape: → ``(3, 3)`` float64; applied as ``R @ v``.
    """
    y, p, r = np.radians([yaw_deg, pitch_deg, roll_deg])
    rz = np.array([[np.cos(y), -np.sin(y), 0.0], [np.sin(y), np.cos(y), 0.0], [0.0, 0.0, 1.0]])
    ry = np.array([[np.cos(p), 0.0, -np.sin(p)], [0.0, 1.0, 0.0], [np.sin(p), 0.0, np.cos(p)]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(r), -np.sin(r)], [0.0, np.sin(r), np.cos(r)]])
    return rz @ ry @ rx


def direction_to_equirect(d: np.ndarray, width: int, height: int) -> Tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (column, row; pixel centres at integers) of directions in a full
    ``width`` x ``height`` equirectangular panorama (the inverse of :func:`band_directions`).

    Shape: ``d`` ``(..., 3)`` → two ``(...)`` float64 arrays; columns in ``[-0.5, width - 0.5)``.
    """
    az = np.degrees(np.arctan2(d[..., 1], d[..., 0])) % 360.0
    el = np.degrees(np.arcsin(np.clip(d[..., 2] / np.linalg.norm(d, axis=-1), -1.0, 1.0)))
    return az * width / 360.0 - 0.5, (90.0 - el) * height / 180.0 - 0.5
