"""Fixtures of the synthetic-world tests: one small town shared by the session."""

from __future__ import annotations

import numpy as np
import pytest

from panoplace.synth import Pose, World, WorldConfig, build_world

SMALL = dict(size_m=220.0, route_length_m=400.0)


@pytest.fixture(scope="session")
def small() -> dict:
    """WorldConfig keyword arguments of a small, fast town."""
    return dict(SMALL)


@pytest.fixture(scope="session")
def world() -> World:
    return build_world(WorldConfig(seed=3, **SMALL))


@pytest.fixture
def pose(world: World) -> Pose:
    """A camera pose on the route, 30 m into the loop."""
    x, y, h = world.route.poses(np.array([30.0]), world.config.lane_offset_m)
    return Pose(float(x[0]), float(y[0]), float(h[0]), world.config.camera_height_m)
