"""Routes through the synthetic town, camera poses along them, and metric <-> lat/lon.

Conventions (used by the whole ``panoplace.synth`` package):

- World coordinates ``x`` (east) and ``y`` (north) in metres, ``z`` up; the town covers
  ``[0, size_m]`` in x and y.
- Heading: compass bearing in degrees, clockwise from north (+y): 0 = north, 90 = east.
- A route is a closed loop along street centrelines with rounded corners; arc length ``s``
  is measured along the centreline. A camera at lateral offset ``o`` sits ``o`` metres to
  the right of the centreline (seen in the direction of travel).
- lat/lon come from a local tangent plane at the configured origin (WGS84 radii of curvature
  at the origin latitude); over a few kilometres this agrees with UTM distances to < 0.1 %.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from panoplace.errors import InputError

WGS84_A = 6378137.0
WGS84_E2 = 6.69437999014e-3


@dataclass(frozen=True)
class Pose:
    """A camera pose: position in metres, height above ground, heading of panorama column 0.

    vehicle_heading_deg: direction the camera car faces (its roof is drawn relative to it);
    None = the camera heading. A camera yawed on its car (heading offset) thus gives a
    panorama that is exactly the rolled panorama of the unyawed camera.
    """

    x: float
    y: float
    heading_deg: float
    z: float = 2.5
    vehicle_heading_deg: Optional[float] = None


def _radii(lat0_deg: float) -> Tuple[float, float]:
    """Meridional (M) and prime-vertical (N) radii of curvature at latitude ``lat0_deg``."""
    s = math.sin(math.radians(lat0_deg))
    w = 1.0 - WGS84_E2 * s * s
    return WGS84_A * (1 - WGS84_E2) / w**1.5, WGS84_A / math.sqrt(w)


def xy_to_latlon(x: np.ndarray, y: np.ndarray, origin_lat: float, origin_lon: float) -> Tuple[np.ndarray, np.ndarray]:
    """Local east/north metres around the origin -> (lat, lon) degrees (same shapes)."""
    m, n = _radii(origin_lat)
    lat = origin_lat + np.degrees(np.asarray(y, np.float64) / m)
    lon = origin_lon + np.degrees(np.asarray(x, np.float64) / (n * math.cos(math.radians(origin_lat))))
    return lat, lon


def latlon_to_xy(lat: np.ndarray, lon: np.ndarray, origin_lat: float, origin_lon: float) -> Tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`xy_to_latlon`: (lat, lon) degrees -> local east/north metres."""
    m, n = _radii(origin_lat)
    y = np.radians(np.asarray(lat, np.float64) - origin_lat) * m
    x = np.radians(np.asarray(lon, np.float64) - origin_lon) * n * math.cos(math.radians(origin_lat))
    return x, y


def bearing_from_vector(dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Compass bearing in degrees [0, 360) of the direction (dx east, dy north)."""
    return np.degrees(np.arctan2(dx, dy)) % 360.0


class Route:
    """A closed loop through the town, sampled densely along its centreline.

    Built from the loop's corner points (axis-aligned street segments); corners are rounded
    with arcs of ``corner_radius_m`` so that headings change smoothly.

    Attributes: ``xy`` (M, 2) centreline samples every ``step_m``; ``tangent`` (M, 2) unit
    tangents; ``s`` (M,) arc length; ``length_m``; ``corners`` (C, 2).
    """

    def __init__(self, corners: Sequence[Tuple[float, float]], corner_radius_m: float = 9.0, step_m: float = 0.25) -> None:
        pts = np.asarray(corners, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[0] < 3 or pts.shape[1] != 2:
            raise InputError(f"a route needs at least 3 corner points, got shape {pts.shape}")
        self.corners = pts
        self.step_m = float(step_m)
        xy, tan = self._sample(pts, corner_radius_m, step_m)
        self.xy = xy
        self.tangent = tan
        seg = np.linalg.norm(np.diff(np.vstack([xy, xy[:1]]), axis=0), axis=1)
        self.s = np.concatenate([[0.0], np.cumsum(seg[:-1])])
        self.length_m = float(seg.sum())

    @staticmethod
    def _sample(pts: np.ndarray, radius: float, step: float) -> Tuple[np.ndarray, np.ndarray]:
        n = pts.shape[0]
        d_out = np.roll(pts, -1, axis=0) - pts
        seg_len = np.linalg.norm(d_out, axis=1)
        if np.any(seg_len < 1e-6):
            raise InputError("route corners must be distinct")
        d_out = d_out / seg_len[:, None]
        d_in = np.roll(d_out, 1, axis=0)
        seg_in = np.roll(seg_len, 1)
        xs, ts = [], []
        r = np.minimum(radius, 0.45 * np.minimum(seg_len, seg_in))
        for i in range(n):
            # straight piece from the end of corner i's arc to the start of corner i+1's arc
            j = (i + 1) % n
            a = pts[i] + d_out[i] * r[i]
            b = pts[j] - d_out[i] * r[j]
            # arc at corner i (from pts[i] - d_in*r to pts[i] + d_out*r)
            cross = d_in[i, 0] * d_out[i, 1] - d_in[i, 1] * d_out[i, 0]
            if abs(cross) > 1e-9:
                left = np.array([-d_in[i, 1], d_in[i, 0]])
                normal = left if cross > 0 else -left
                centre = pts[i] - d_in[i] * r[i] + normal * r[i]
                a0 = math.atan2(*(pts[i] - d_in[i] * r[i] - centre)[::-1])
                a1 = math.atan2(*(a - centre)[::-1])
                sweep = (a1 - a0 + math.pi) % (2 * math.pi) - math.pi
                n_arc = max(2, int(abs(sweep) * r[i] / step))
                ang = a0 + sweep * np.arange(n_arc) / n_arc
                xs.append(np.stack([centre[0] + r[i] * np.cos(ang), centre[1] + r[i] * np.sin(ang)], 1))
                sgn = 1.0 if sweep > 0 else -1.0
                ts.append(np.stack([-np.sin(ang) * sgn, np.cos(ang) * sgn], 1))
            length = float(np.linalg.norm(b - a))
            n_lin = max(1, int(length / step))
            f = np.arange(n_lin)[:, None] / n_lin
            xs.append(a[None, :] * (1 - f) + b[None, :] * f)
            ts.append(np.repeat(d_out[i][None, :], n_lin, axis=0))
        return np.vstack(xs), np.vstack(ts)

    def poses(self, s: np.ndarray, lateral_m: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positions and headings at arc lengths ``s`` (wrapped around the loop).

        s: (F,) metres. lateral_m: offset to the right of the direction of travel.
        Returns x (F,), y (F,), heading (F,) compass degrees of the direction of travel.
        """
        s = np.mod(np.asarray(s, np.float64), self.length_m)
        i0 = np.clip(np.searchsorted(self.s, s, side="right") - 1, 0, len(self.s) - 1)
        i1 = (i0 + 1) % len(self.s)
        s1 = np.where(i1 == 0, self.length_m, self.s[i1])
        f = ((s - self.s[i0]) / np.maximum(s1 - self.s[i0], 1e-9))[:, None]
        xy = self.xy[i0] * (1 - f) + self.xy[i1] * f
        tan = self.tangent[i0] * (1 - f) + self.tangent[i1] * f
        tan /= np.linalg.norm(tan, axis=1, keepdims=True)
        right = np.stack([tan[:, 1], -tan[:, 0]], axis=1)
        xy = xy + right * float(lateral_m)
        return xy[:, 0], xy[:, 1], bearing_from_vector(tan[:, 0], tan[:, 1])

    def path(self, lateral_m: float, step_m: float = 1.0) -> np.ndarray:
        """The whole loop at a lateral offset, sampled every ``step_m``: (P, 2) metres."""
        s = np.arange(0.0, self.length_m, step_m)
        x, y, _ = self.poses(s, lateral_m)
        return np.stack([x, y], axis=1)
