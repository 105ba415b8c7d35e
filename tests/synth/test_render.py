"""Renderer geometry and lighting: projection convention, parallax, heading roll, conditions."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from panoplace.errors import InputError
from panoplace.synth import Condition, Pose, World, lighting, place_dynamic_objects, render_frame
from panoplace.synth.world import PrimitiveBuilder, Primitives

W, H = 360, 180  # one column per degree


def _lone_box_world(world: World, boxes) -> World:
    """The same town's textures with only the given boxes standing in it."""
    b = PrimitiveBuilder()
    facade = int(world.static.boxes["tex"][np.argmax(world.static.boxes["occluder"])])  # a building's texture
    for (x, y, half, height) in boxes:
        b.box(x - half, y - half, x + half, y + half, 0.0, height, facade, occluder=True)
    return dataclasses.replace(world, static=b.build(), cache={})


def _columns_of(img: np.ndarray, empty: np.ndarray) -> np.ndarray:
    """Columns where the rendered image differs from the empty scene (above the horizon)."""
    diff = np.abs(img[: H // 2].astype(int) - empty[: H // 2].astype(int)).sum(axis=(0, 2))
    return np.flatnonzero(diff > 0)


def _centre_column(cols: np.ndarray) -> float:
    ang = np.radians(cols + 0.5)
    return float(np.degrees(math.atan2(np.sin(ang).mean(), np.cos(ang).mean())) % 360.0 - 0.5)


def test_object_at_bearing_a_appears_at_column_a(world: World) -> None:
    cam = Pose(100.0, 100.0, heading_deg=30.0, z=2.0)
    bearing = 70.0  # compass bearing of the box from the camera
    d = 25.0
    bx = cam.x + d * math.sin(math.radians(bearing))
    by = cam.y + d * math.cos(math.radians(bearing))
    scene = _lone_box_world(world, [(bx, by, 1.0, 15.0)])
    empty = _lone_box_world(world, [])
    img = render_frame(scene, cam, width=W, height=H)
    base = render_frame(empty, cam, width=W, height=H)
    cols = _columns_of(img, base)
    assert cols.size > 0
    expected = (bearing - cam.heading_deg) * W / 360.0  # column of the box centre
    assert abs(_centre_column(cols) - expected) < 1.5
    half_width = math.degrees(math.atan(1.0 / d))
    assert abs(cols.size - 2 * half_width) <= 3


def test_parallax_moves_near_objects_more_than_far_ones(world: World) -> None:
    near, far = (130.0, 110.0, 1.0, 20.0), (130.0, 160.0, 2.0, 40.0)  # 10 m and 60 m north of (130, 100)
    scenes = [_lone_box_world(world, [b]) for b in (near, far)]
    empty = _lone_box_world(world, [])
    shifts = []
    for scene in scenes:
        pos = []
        for x in (130.0, 120.0):  # camera moves 10 m west
            cam = Pose(x, 100.0, heading_deg=0.0, z=2.0)
            cols = _columns_of(render_frame(scene, cam, width=W, height=H), render_frame(empty, cam, width=W, height=H))
            pos.append(_centre_column(cols))
        shifts.append((pos[1] - pos[0] + 180) % 360 - 180)
    # expected bearings from (120, 100): atan(10/10)=45 deg and atan(10/60)=9.5 deg
    assert abs(shifts[0] - 45.0) < 2.0
    assert abs(shifts[1] - math.degrees(math.atan(10 / 60))) < 2.0
    assert shifts[0] > 3 * shifts[1]


def test_heading_offset_rolls_the_panorama(world: World, pose: Pose) -> None:
    k = 37  # columns
    a = render_frame(world, pose, width=W, height=H)
    yawed = dataclasses.replace(pose, heading_deg=pose.heading_deg + k * 360.0 / W, vehicle_heading_deg=pose.heading_deg)
    b = render_frame(world, yawed, Condition("night"), width=W, height=H)
    a = render_frame(world, pose, Condition("night"), width=W, height=H)
    rolled = np.roll(a, -k, axis=1)
    same = np.all(rolled == b, axis=2).mean()
    assert same > 0.98
    assert np.abs(rolled.astype(int) - b.astype(int)).mean() < 1.0
    assert not np.array_equal(a, b)


def test_night_is_darker_than_day_and_has_lit_windows(world: World, pose: Pose) -> None:
    day = render_frame(world, pose, Condition("day"), width=W, height=H).astype(float)
    night = render_frame(world, pose, Condition("night"), width=W, height=H).astype(float)
    assert night.mean() < 0.4 * day.mean()
    # some pixels still glow (windows, lamps, signs)
    assert (night.max(axis=2) > 150).sum() > 20


def test_fog_reduces_contrast_more_far_away_than_near(world: World) -> None:
    cam = Pose(100.0, 100.0, heading_deg=0.0, z=2.0)
    scene = _lone_box_world(world, [(100.0, 108.0, 1.5, 30.0), (100.0, 20.0, 12.0, 60.0)])  # 8 m north, 80 m south
    fogc = np.asarray(lighting(Condition("day", "fog")).fog) * 255
    rows = slice(H // 2 - 8, H // 2)  # just above the horizon, on both walls
    north = np.r_[0:3, W - 3 : W]  # columns around bearing 0
    south = np.arange(W // 2 - 3, W // 2 + 3)
    stats = {}
    for cond in (Condition("day"), Condition("day", "fog")):
        img = render_frame(scene, cam, cond, width=W, height=H).astype(float)
        stats[cond.weather] = {
            name: (img[rows][:, cols].std(), np.abs(img[rows][:, cols] - fogc).mean())
            for name, cols in (("near", north), ("far", south))
        }
    far_ratio = stats["fog"]["far"][0] / stats["clear"]["far"][0]
    near_ratio = stats["fog"]["near"][0] / stats["clear"]["near"][0]
    assert far_ratio < 0.5 * near_ratio
    assert stats["fog"]["far"][1] < 0.5 * stats["fog"]["near"][1]  # the far wall fades into the fog colour


def test_overcast_sky_is_flat_and_grey(world: World, pose: Pose) -> None:
    sky = render_frame(world, pose, Condition("day", "overcast"), width=W, height=H)[:20].astype(float)
    assert np.abs(sky[..., 0] - sky[..., 2]).mean() < 12  # grey, not blue
    clear = render_frame(world, pose, Condition("day"), width=W, height=H)[:20].astype(float)
    assert ((clear[..., 2] - clear[..., 0]) > 30).mean() > 0.3  # the clear sky is mostly blue (some clouds)


def test_dynamic_objects_change_the_frame_and_follow_the_seed(world: World, pose: Pose) -> None:
    path = world.route.path(world.config.lane_offset_m)
    d1 = place_dynamic_objects(world, 1, avoid_xy=path)
    d1b = place_dynamic_objects(world, 1, avoid_xy=path)
    d2 = place_dynamic_objects(world, 2, avoid_xy=path)
    assert d1.counts()["boxes"] > 5 and d1.counts()["cylinders"] > 5
    for k in d1.boxes:
        assert np.array_equal(d1.boxes[k], d1b.boxes[k])
    assert not np.array_equal(d1.boxes["x0"], d2.boxes["x0"][: len(d1.boxes["x0"])])
    # nothing stands on the camera path
    cx = (d1.boxes["x0"] + d1.boxes["x1"]) / 2
    cy = (d1.boxes["y0"] + d1.boxes["y1"]) / 2
    dmin = np.min(np.hypot(cx[:, None] - path[None, :, 0], cy[:, None] - path[None, :, 1]), axis=1)
    assert dmin.min() > 2.0
    a = render_frame(world, pose, dynamic_objects=None, width=W, height=H)
    b = render_frame(world, pose, dynamic_objects=d1 + d2, width=W, height=H)
    assert not np.array_equal(a, b)


def test_projection_rows_and_sky_ground(world: World, pose: Pose) -> None:
    img = render_frame(world, pose, width=W, height=H)
    assert img.shape == (H, W, 3) and img.dtype == np.uint8
    # the zenith row is sky (bright, blue-ish) in clear daylight
    assert img[0, :, 2].mean() > 120


@pytest.mark.parametrize("size", [(8, 4), (10**6, 10), (100.5, 50)])
def test_bad_sizes_raise(world: World, pose: Pose, size) -> None:
    with pytest.raises(InputError):
        render_frame(world, pose, width=size[0], height=size[1])


def test_empty_dynamic_objects_are_fine(world: World, pose: Pose) -> None:
    a = render_frame(world, pose, width=64, height=32)
    b = render_frame(world, pose, dynamic_objects=Primitives.empty(), width=64, height=32)
    assert np.array_equal(a, b)


def test_appearance_seed_varies_a_condition_deterministically(world: World, pose: Pose) -> None:
    a = render_frame(world, pose, Condition("day"), width=W, height=H, appearance_seed=1)
    a2 = render_frame(world, pose, Condition("day"), width=W, height=H, appearance_seed=1)
    b = render_frame(world, pose, Condition("day"), width=W, height=H, appearance_seed=2)
    assert np.array_equal(a, a2)
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 3  # other sun, clouds, exposure
    la, lb = lighting(Condition("day"), 1), lighting(Condition("day"), 2)
    assert la != lb and la == lighting(Condition("day"), 1)
    assert lighting(Condition("night"), 5).sun == (0.0, 0.0, 0.0)  # variation keeps the condition
