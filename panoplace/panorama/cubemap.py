"""Cubemaps in the horizontal-cross layout → equirectangular bands.

Layout (``4F x 3F`` pixels, faces ``F x F``; the unused cells are ignored)::

    .  U  .  .
    L  F  R  B
    .  D  .  .

F looks along the camera heading (panorama column 0), R to its right, B behind, L to its
left, U up and D down. Every face is drawn as seen from inside the cube, unfolded around F:
the middle row reads left to right as a continuous 360° strip starting at -135° (L's left
edge), U's bottom edge meets F's top edge and D's top edge meets F's bottom edge.

A face with axis ``f``, right ``r`` and up ``u`` (camera frame: ``x`` forward, ``y`` right,
``z`` up) maps its pixel at normalised coordinates ``(s, t)`` in ``[-1, 1]`` (``s`` to the
right, ``t`` down, pixel centres at ``(i + 0.5) * 2 / F - 1``) to the direction
``f + s r - t u``.
"""

from __future__ import annotations

from typing import Dict, Tuple

import cv2
import numpy as np

from panoplace.errors import InputError
from panoplace.panorama.sphere import band_directions

# name: (cell column, cell row, axis f, right r, up u)
FACES: Dict[str, Tuple[int, int, Tuple[int, int, int], Tuple[int, int, int], Tuple[int, int, int]]] = {
    "F": (1, 1, (1, 0, 0), (0, 1, 0), (0, 0, 1)),
    "R": (2, 1, (0, 1, 0), (-1, 0, 0), (0, 0, 1)),
    "B": (3, 1, (-1, 0, 0), (0, -1, 0), (0, 0, 1)),
    "L": (0, 1, (0, -1, 0), (1, 0, 0), (0, 0, 1)),
    "U": (1, 0, (0, 0, 1), (0, 1, 0), (-1, 0, 0)),
    "D": (1, 2, (0, 0, -1), (0, 1, 0), (1, 0, 0)),
}
GRID = (4, 3)  # cells across, down

__all__ = ["FACES", "cubemap_band", "face_size"]


def face_size(width: int, height: int) -> int:
    """Face size ``F`` of a ``4F x 3F`` horizontal-cross cubemap; raises on another shape."""
    f = width // GRID[0]
    if f < 1 or width != GRID[0] * f or height != GRID[1] * f:
        raise InputError(f"a horizontal-cross cubemap is 4F x 3F pixels (4:3), got {width}x{height}")
    return f


_CACHE: Dict[Tuple[int, int, int, float, float], Tuple[np.ndarray, np.ndarray]] = {}


def _maps(face: int, width: int, height: int, top: float, bottom: float) -> Tuple[np.ndarray, np.ndarray]:
    key = (face, width, height, top, bottom)
    if key not in _CACHE:
        if len(_CACHE) > 8:
            _CACHE.clear()
        d = band_directions(width, height, top, bottom)
        map_x = np.zeros((height, width), np.float32)
        map_y = np.zeros((height, width), np.float32)
        best = np.full((height, width), -np.inf)
        for col, row, f, r, u in FACES.values():
            depth = d @ np.array(f, float)
            mine = depth > best
            best = np.where(mine, depth, best)
            s = (d @ np.array(r, float)) / np.where(depth > 0, depth, 1.0)
            t = -(d @ np.array(u, float)) / np.where(depth > 0, depth, 1.0)
            # clamp inside the face so bilinear never reads a neighbouring cell of the atlas
            x = np.clip((s + 1.0) * face / 2.0 - 0.5, 0.0, face - 1.0) + col * face
            y = np.clip((t + 1.0) * face / 2.0 - 0.5, 0.0, face - 1.0) + row * face
            map_x = np.where(mine, x, map_x).astype(np.float32)
            map_y = np.where(mine, y, map_y).astype(np.float32)
        _CACHE[key] = (map_x, map_y)
    return _CACHE[key]


def cubemap_band(img: np.ndarray, width: int, height: int, top_deg: float = 90.0,
                 bottom_deg: float = -90.0) -> np.ndarray:
    """Sample the equirectangular band ``top_deg..bottom_deg`` of a horizontal-cross cubemap.

    Shape: ``(3F, 4F, C)`` uint8 → ``(height, width, C)`` uint8.
    """
    if img.ndim != 3 or img.dtype != np.uint8:
        raise InputError(f"cubemap must be an (H, W, C) uint8 image, got {img.dtype} {img.shape}")
    f = face_size(img.shape[1], img.shape[0])
    map_x, map_y = _maps(f, int(width), int(height), float(top_deg), float(bottom_deg))
    return cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).reshape(height, width, -1)
