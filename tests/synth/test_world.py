"""Town generation: determinism, zones along the route, configuration errors."""

from __future__ import annotations

import numpy as np
import pytest

from panoplace.errors import InputError
from panoplace.synth import SCENES, Condition, World, WorldConfig, build_world, render_frame, traversal_frames
from panoplace.synth.conditions import Traversal


def test_same_seed_same_pixels_different_seed_different(world: World, pose, small: dict) -> None:
    again = build_world(WorldConfig(seed=3, **small))
    other = build_world(WorldConfig(seed=4, **small))
    a = render_frame(world, pose, Condition("dusk"), width=256, height=128, noise_seed=5)
    b = render_frame(again, pose, Condition("dusk"), width=256, height=128, noise_seed=5)
    c = render_frame(other, pose, Condition("dusk"), width=256, height=128, noise_seed=5)
    assert np.array_equal(a, b)
    assert np.array_equal(world.atlas.data, again.atlas.data)
    assert np.array_equal(world.ground.levels[0], again.ground.levels[0])
    assert np.mean(np.abs(a.astype(int) - c.astype(int))) > 10


def test_route_is_a_closed_loop_through_several_zones(world: World) -> None:
    r = world.route
    assert r.length_m > 300
    gaps = np.linalg.norm(np.diff(np.vstack([r.xy, r.xy[:1]]), axis=0), axis=1)
    assert gaps.max() < 2 * r.step_m  # closed, no jumps
    frames = traversal_frames(world, Traversal("t", spacing_m=5.0))
    scenes = {f.scene for f in frames}
    assert scenes <= set(SCENES)
    assert "waterfront" in scenes and len(scenes) >= 3
    # every route point lies on a street corridor, not inside a block
    hw = world.config.street_width_m / 2
    on_x = np.min(np.abs(r.xy[:, :1] - world.streets_x[None, :]), axis=1) < hw
    on_y = np.min(np.abs(r.xy[:, 1:] - world.streets_y[None, :]), axis=1) < hw
    assert np.all(on_x | on_y)


def test_zones_have_their_own_contents(world: World) -> None:
    zones = {b.zone for b in world.blocks}
    assert {"street", "park", "plaza", "parking", "waterfront"} <= zones
    assert world.static.counts()["crowns"] > 20  # trees
    assert int(world.static.boxes["occluder"].sum()) > 10  # buildings
    assert (world.ground.levels[0][..., 3] == 255).any()  # the lake


@pytest.mark.parametrize(
    "kwargs",
    [dict(size_m=50.0), dict(block_min_m=10.0), dict(street_width_m=8.0), dict(camera_height_m=0.0), dict(route_length_m=-1.0)],
)
def test_bad_world_config_raises_input_error(kwargs) -> None:
    with pytest.raises(InputError):
        WorldConfig(**kwargs)


def test_world_config_round_trips_and_refuses_unknown_keys() -> None:
    cfg = WorldConfig(seed=9, size_m=300.0)
    assert WorldConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(InputError, match="unknown world config"):
        WorldConfig.from_dict({"seed": 1, "sise_m": 3})
