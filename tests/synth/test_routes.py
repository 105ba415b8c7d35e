"""Routes and coordinates: poses along the loop, lat/lon <-> metres."""

from __future__ import annotations

import math

import numpy as np
import pytest
import utm

from panoplace.errors import InputError
from panoplace.synth import Route, latlon_to_xy, xy_to_latlon


def test_latlon_round_trip_and_agrees_with_utm() -> None:
    x = np.array([0.0, 350.0, -120.0, 800.0])
    y = np.array([0.0, -40.0, 610.0, 900.0])
    lat, lon = xy_to_latlon(x, y, 30.26, 120.12)
    assert abs(lat[0] - 30.26) < 1e-12 and abs(lon[0] - 120.12) < 1e-12
    x2, y2 = latlon_to_xy(lat, lon, 30.26, 120.12)
    assert np.allclose(x2, x, atol=1e-6) and np.allclose(y2, y, atol=1e-6)
    e, n, _, _ = utm.from_latlon(lat, lon)
    d_utm = np.hypot(np.diff(e), np.diff(n))
    d_xy = np.hypot(np.diff(x), np.diff(y))
    assert np.allclose(d_utm, d_xy, rtol=2e-3)


def test_poses_heading_and_lateral_offset() -> None:
    r = Route([(0.0, 0.0), (100.0, 0.0), (100.0, 50.0), (0.0, 50.0)], corner_radius_m=8.0)
    assert abs(r.length_m - (300.0 - 4 * 8.0 * (2 - math.pi / 2))) < 0.5
    x, y, h = r.poses(np.array([50.0]), 0.0)
    assert abs(h[0] - 90.0) < 1e-6 and abs(y[0]) < 1e-6  # eastwards along y = 0
    assert abs(x[0] - (8.0 + 50.0 - 8.0 * math.pi / 2)) < 0.05  # s = 0 starts the first corner's arc
    x2, y2, _ = r.poses(np.array([50.0]), 2.0)
    assert abs(y2[0] + 2.0) < 1e-6 and abs(x2[0] - x[0]) < 1e-6  # right of an eastward drive is south
    _, _, h = r.poses(np.array([160.0]), 0.0)
    assert abs(h[0] - 270.0) < 1e-6  # back westwards along y = 50
    x3, y3, _ = r.poses(np.array([r.length_m + 50.0]), 0.0)  # wraps around the loop
    assert abs(x3[0] - x[0]) < 1e-6 and abs(y3[0] - y[0]) < 1e-6


def test_route_needs_corners() -> None:
    with pytest.raises(InputError):
        Route([(0.0, 0.0), (1.0, 0.0)])
