"""Light maps on the ground raster: shadows of the town's solids for a sun direction and the
glow of its street lamps (the renderer caches them per world).
"""

from __future__ import annotations

import math
from typing import Tuple

import cv2
import numpy as np

from panoplace.synth.ground import MARGIN_M
from panoplace.synth.world import World


def shadow_map(world: World, sun_az_deg: float, sun_el_deg: float, ppm: float = 2.0) -> Tuple[np.ndarray, float]:
    """Ground shadows cast by boxes and crowns for a sun direction.

    Returns (n, n) float32 light factor in [0, 1] (0 = full shadow) over the ground raster's
    extent (same origin) and its ppm.
    """
    cfg = world.config
    origin = world.ground.origin
    n = int(round((cfg.size_m + 2 * MARGIN_M) * ppm))
    img = np.zeros((n, n), np.uint8)
    el = math.radians(max(sun_el_deg, 2.0))
    az = math.radians(sun_az_deg)
    # shadows fall away from the sun
    sx, sy = -math.sin(az) / math.tan(el), -math.cos(az) / math.tan(el)
    b = world.static.boxes

    def pix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.stack([(x - origin) * ppm, (y - origin) * ppm], -1)

    for k in range(len(b["tex"])):
        x0, y0, x1, y1, z0, z1 = (float(b[f][k]) for f in ("x0", "y0", "x1", "y1", "z0", "z1"))
        cx = np.array([x0, x1, x1, x0])
        cy = np.array([y0, y0, y1, y1])
        pts = np.concatenate([pix(cx + sx * z0, cy + sy * z0), pix(cx + sx * z1, cy + sy * z1)])
        hull = cv2.convexHull(np.round(pts * 4).astype(np.int32))
        cv2.fillConvexPoly(img, hull, 255, lineType=cv2.LINE_8, shift=2)
    c = world.static.crowns
    for k in range(len(c["tex"])):
        ccx, ccy = float(c["cx"][k]) + sx * float(c["zc"][k]), float(c["cy"][k]) + sy * float(c["zc"][k])
        a = float(c["a"][k])
        ctr = pix(np.array(ccx), np.array(ccy))
        stretch = math.hypot(sx, sy) * float(c["b"][k]) + a
        ang = math.degrees(math.atan2(sy, sx))
        cv2.ellipse(img, (int(ctr[0] * 4), int(ctr[1] * 4)), (int(stretch * ppm * 4), int(a * ppm * 4)), ang, 0, 360, 200, -1, shift=2)
    cy_ = world.static.cylinders
    for k in range(len(cy_["tex"])):
        r = float(cy_["r"][k])
        if r < 0.15:
            continue
        z1 = float(cy_["z1"][k])
        x, y = float(cy_["cx"][k]), float(cy_["cy"][k])
        apt = pix(np.array(x), np.array(y))
        bpt = pix(np.array(x + sx * z1), np.array(y + sy * z1))
        cv2.line(img, (int(apt[0] * 4), int(apt[1] * 4)), (int(bpt[0] * 4), int(bpt[1] * 4)), 255, max(1, int(2 * r * ppm)), shift=2)
    blurred = cv2.GaussianBlur(img, (0, 0), 0.8)
    return 1.0 - blurred.astype(np.float32) / 255.0, ppm


def lamp_map(world: World, ppm: float = 2.0) -> Tuple[np.ndarray, float]:
    """Street-lamp light on the ground: (n, n) float32 (about 1 under a lamp), and its ppm."""
    cfg = world.config
    origin = world.ground.origin
    n = int(round((cfg.size_m + 2 * MARGIN_M) * ppm))
    img = np.zeros((n, n), np.float32)
    if world.lamps.shape[0]:
        c = np.round((world.lamps[:, 0] - origin) * ppm).astype(int)
        r = np.round((world.lamps[:, 1] - origin) * ppm).astype(int)
        ok = (c >= 0) & (c < n) & (r >= 0) & (r < n)
        np.add.at(img, (r[ok], c[ok]), 1.0)
    s1, s2 = 3.0 * ppm, 9.0 * ppm
    tight = cv2.GaussianBlur(img, (0, 0), s1) * (2 * math.pi * s1 * s1)
    wide = cv2.GaussianBlur(img, (0, 0), s2) * (2 * math.pi * s2 * s2)
    return (0.8 * tight + 0.25 * wide).astype(np.float32), ppm
