"""Writing traversals: CSV rows, images, resume, world.json, and the synth CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

import panoplace.synth.writer as writer
from panoplace.cli import main
from panoplace.data.frames import load_csv
from panoplace.errors import InputError
from panoplace.ingest import ingest_video, load_track
from panoplace.panorama.dualfisheye import load_calibration
from panoplace.panorama.project import read_image
from panoplace.synth import (
    CSV_COLUMNS,
    SCENES,
    Condition,
    Traversal,
    World,
    default_traversals,
    latlon_to_xy,
    render_traversal,
    render_world,
)

SIZE = dict(width=128, height=64)


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_frames_csv_rows_carry_the_right_fields(world: World, tmp_path) -> None:
    t = Traversal("night-x", Condition("night"), lateral_offset_m=1.0, heading_offset_deg=30.0, spacing_m=7.0, seed=4, start_m=3.0)
    csv_path = render_traversal(world, t, tmp_path, ("equirect", "annular"), n_frames=4, progress=False, **SIZE)
    assert csv_path == tmp_path / "night-x" / "frames.csv"
    rows = _rows(csv_path)
    assert len(rows) == 4
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    cfg = world.config
    for k, row in enumerate(rows):
        assert (csv_path.parent / row["image"]).is_file() and row["image"] == f"equirect/{k:06d}.jpg"
        assert row["sequence"] == "night-x" and row["condition"] == "night" and row["scene"] in SCENES
        x, y = latlon_to_xy(float(row["lat"]), float(row["lon"]), cfg.origin_lat, cfg.origin_lon)
        assert abs(x - float(row["x"])) < 0.01 and abs(y - float(row["y"])) < 0.01
        # the camera sits on the route at its arc length, 1 m right of the camera lane
        rx, ry, travel = world.route.poses(np.array([3.0 + 7.0 * k]), cfg.lane_offset_m + 1.0)
        assert abs(rx[0] - float(row["x"])) < 0.01 and abs(ry[0] - float(row["y"])) < 0.01
        assert abs((float(row["heading"]) - travel[0] - 30.0 + 180) % 360 - 180) < 0.01
    ts = [float(r["timestamp"]) for r in rows]
    assert np.allclose(np.diff(ts), 7.0 / writer.SPEED_MPS)
    ann = _rows(csv_path.parent / "frames_annular.csv")
    assert [r["image"] for r in ann] == [f"annular/{k:06d}.jpg" for k in range(4)]
    assert (csv_path.parent / "annular" / "annulus.json").is_file()


def test_resume_renders_only_missing_frames(world: World, tmp_path, monkeypatch) -> None:
    t = Traversal("day", spacing_m=10.0, seed=1)
    render_traversal(world, t, tmp_path, n_frames=3, progress=False, **SIZE)
    first = (tmp_path / "day" / "equirect" / "000001.jpg").read_bytes()
    (tmp_path / "day" / "equirect" / "000001.jpg").unlink()
    calls = []
    real = writer.render_frame
    monkeypatch.setattr(writer, "render_frame", lambda *a, **k: calls.append(1) or real(*a, **k))
    render_traversal(world, t, tmp_path, n_frames=3, progress=False, **SIZE)
    assert len(calls) == 1
    assert (tmp_path / "day" / "equirect" / "000001.jpg").read_bytes() == first  # same pixels again
    render_traversal(world, t, tmp_path, n_frames=3, progress=False, **SIZE)
    assert len(calls) == 1
    render_traversal(world, t, tmp_path, n_frames=5, progress=False, **SIZE)  # extend the drive
    assert len(calls) == 3 and len(_rows(tmp_path / "day" / "frames.csv")) == 5
    with pytest.raises(InputError, match="another"):
        render_traversal(world, Traversal("day", spacing_m=12.0, seed=1), tmp_path, n_frames=3, progress=False, **SIZE)


def test_render_world_writes_world_json(world: World, tmp_path) -> None:
    trs = default_traversals(2, ["day", "fog"], spacing_m=15.0)
    out = render_world(world, trs, tmp_path, ("annular",), progress=False, **SIZE)
    assert set(out) == {"day", "fog"}
    meta = json.loads((tmp_path / "world.json").read_text())
    assert meta["seed"] == world.config.seed
    assert [t["name"] for t in meta["traversals"]] == ["day", "fog"]
    assert meta["lens"]["r_outer"] > meta["lens"]["r_inner"]
    assert _rows(out["fog"])[0]["condition"] == "day-fog"
    with pytest.raises(InputError):
        render_world(world, trs, tmp_path, ("cubemap",), progress=False, **SIZE)
    before = (tmp_path / "world.json").read_text()
    with pytest.raises(InputError, match="another"):  # other frame spacing in the same folder
        render_world(world, default_traversals(2, ["day", "fog"], spacing_m=9.0), tmp_path, ("annular",), progress=False, **SIZE)
    assert (tmp_path / "world.json").read_text() == before


def test_synth_cli_writes_frames_and_images(tmp_path, capsys) -> None:
    out = tmp_path / "synth"
    rc = main(["synth", str(out), "--size-m", "220", "--route-length-m", "400", "--frames", "2",
               "--traversals", "day,night", "--projections", "equirect,annular", "--width", "64",
               "--height", "32", "--heading-offset", "0,90", "--no-progress"])
    assert rc == 0
    for name in ("day", "night"):
        rows = _rows(out / name / "frames.csv")
        assert len(rows) == 2
        assert all((out / name / r["image"]).is_file() for r in rows)
        assert (out / name / "annular" / "000001.jpg").is_file()
    assert json.loads((out / "world.json").read_text())["traversals"][1]["heading_offset_deg"] == 90.0


@pytest.mark.parametrize("bad", [["--traversals", "noon"], ["--projections", "cube"], ["--width", "4"],
                                 ["--lateral-offset", "1,2,3"], ["--spacing-m", "0"], ["--size-m", "20"]])
def test_synth_cli_bad_options_one_line_and_exit_2(tmp_path, capsys, bad) -> None:
    rc = main(["synth", str(tmp_path / "o"), "--frames", "1", "--no-progress", *bad])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("panoplace synth: error:")


def test_recording_video_and_gpx_ingest_back_to_the_frames(world: World, tmp_path) -> None:
    """A traversal written as a video + GPX (``recording``) and ingested every spacing's worth of
    seconds gives back every frame at its own position and time; dual-fisheye frames and their
    calibration are written beside."""
    t = Traversal("rec", Condition("day"), spacing_m=5.0, seed=2)
    csv_path = render_traversal(world, t, tmp_path, ("equirect", "dual-fisheye"), n_frames=5, progress=False,
                                recording=True, **SIZE)
    frames = load_csv(csv_path)
    calib = load_calibration(tmp_path / "rec" / "dual-fisheye" / "calibration.json")
    assert read_image(tmp_path / "rec" / "dual-fisheye" / "000003.jpg").shape == (calib.height, calib.width, 3)
    rec = tmp_path / "rec" / "recording"
    result = ingest_video(rec / "drive.mp4", tmp_path / "ingested", load_track(rec / "drive.gpx"),
                          every_s=5.0 / writer.SPEED_MPS)
    got = load_csv(result.frames_csv)
    assert len(got) == 5 and not result.skipped
    np.testing.assert_allclose(got.latlon, frames.latlon, atol=1e-7)
    np.testing.assert_allclose(got.timestamp, frames.timestamp, atol=1e-3)
    for a, b in zip(got.abs_paths(), frames.abs_paths()):  # the same pictures (MPEG-4 + JPEG losses only)
        assert np.abs(read_image(a).astype(float) - read_image(b).astype(float)).mean() < 6
