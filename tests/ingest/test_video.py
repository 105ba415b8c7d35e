"""Video + GPX written by the test → the expected frames and interpolated positions."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from panoplace.cli import main
from panoplace.data.frames import load_csv
from panoplace.errors import InputError
from panoplace.ingest import TimeSync, ingest_video, load_track
from panoplace.ingest.video import Sampler
from panoplace.panorama.project import read_image
from tests.ingest.conftest import LAT0, LON0, M_PER_DEG_LAT, T0, frame_level, write_gpx

# fixes at track times T0 + 0, 1, 2, 3 s; northward 0, 10, 30, 60 m (accelerating, so a
# wrong interpolation weight shows)
NORTH_M = [0.0, 10.0, 30.0, 60.0]


def _gpx(tmp_path: Path) -> Path:
    return write_gpx(tmp_path / "in" / "drive.gpx", [T0 + k for k in range(4)],
                     [(LAT0 + n / M_PER_DEG_LAT, LON0) for n in NORTH_M])


def _levels(out: Path, frames) -> list:
    return [float(read_image(p).mean()) for p in frames.abs_paths()]


def test_every_second_with_offset_interpolates_and_leaves_out_frames_off_the_track(video, tmp_path) -> None:
    track = load_track(_gpx(tmp_path))
    out = tmp_path / "out"
    # video time v is track time T0 + v - 0.5: frames 0 (v=0) before the track, 10/20/30 on it
    result = ingest_video(video, out, track, every_s=1.0, sync=TimeSync(offset_s=-0.5))
    frames = load_csv(result.frames_csv)
    assert frames.paths == ["images/drive_000010.jpg", "images/drive_000020.jpg", "images/drive_000030.jpg"]
    for got, i in zip(_levels(out, frames), (10, 20, 30)):
        assert abs(got - frame_level(i)) < 4, (i, got)  # the right frame's pixels, not a neighbour's (5 apart)
    np.testing.assert_allclose(frames.timestamp, [T0 + 0.5, T0 + 1.5, T0 + 2.5], atol=1e-6)
    north = (frames.latlon[:, 0] - LAT0) * M_PER_DEG_LAT
    np.testing.assert_allclose(north, [5.0, 20.0, 45.0], atol=1e-3)  # midpoints of 0-10, 10-30, 30-60 m
    np.testing.assert_allclose(frames.latlon[:, 1], LON0, atol=1e-12)
    assert frames.sequence == ["drive"] * 3
    assert [(s.frame, "before the track" in s.reason) for s in result.skipped] == [(0, True)]
    with open(out / "skipped.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["frame"] for r in rows] == ["0"]


def test_every_metre_sampling_and_gap(video, tmp_path) -> None:
    # 10 m/s for 3 s: a frame every 1 m, so every 5 m keeps frames 0, 5, ..., 30; 31..39 are after the track
    gpx = write_gpx(tmp_path / "in" / "line.gpx", [T0 + k for k in range(4)],
                    [(LAT0 + 10.0 * k / M_PER_DEG_LAT, LON0) for k in range(4)])
    result = ingest_video(video, tmp_path / "out", load_track(gpx), every_m=5.0)
    frames = load_csv(result.frames_csv)
    assert [int(p[-10:-4]) for p in frames.paths] == [0, 5, 10, 15, 20, 25, 30]
    assert len(result.skipped) == 1 and "9 frames" in result.skipped[0].reason
    # a 1 s fix spacing with --max-gap 0.5: every time strictly between fixes has no position
    result2 = ingest_video(video, tmp_path / "out2", load_track(gpx), every_s=0.5, sync=TimeSync(max_gap_s=0.5))
    assert [int(p[-10:-4]) for p in load_csv(result2.frames_csv).paths] == [0, 10, 20, 30]
    assert any("gap" in s.reason for s in result2.skipped)


def test_resume_keeps_images_and_refuses_other_parameters(video, tmp_path) -> None:
    track = load_track(_gpx(tmp_path))
    out = tmp_path / "out"
    first = ingest_video(video, out, track, every_s=1.0)
    img = out / first.images[1]
    mtime = img.stat().st_mtime_ns
    (out / "frames.csv").unlink()
    again = ingest_video(video, out, track, every_s=1.0)
    assert again.reused == len(first.images) and again.images == first.images
    assert img.stat().st_mtime_ns == mtime
    with pytest.raises(InputError, match="other inputs or parameters"):
        ingest_video(video, out, track, every_s=2.0)


def test_sampler_every_seconds_handles_rounded_timestamps() -> None:
    s = Sampler(every_s=0.5)
    times = [0.0, 0.0333, 0.4999, 0.5333, 0.9999, 1.0333, 1.6]
    assert [t for t in times if s.want(t)] == [0.0, 0.4999, 0.9999, 1.6]


def test_cli_ingest_video_and_errors(video, tmp_path, capsys) -> None:
    gpx = _gpx(tmp_path)
    out = tmp_path / "cli"
    assert main(["ingest", str(video), "--track", str(gpx), "--every-s", "1", "--out", str(out),
                 "--time-offset", "-0.5", "--condition", "day"]) == 0
    frames = load_csv(out / "frames.csv")
    assert len(frames) == 3 and frames.condition == ["day"] * 3
    assert main(["ingest", str(video), "--every-s", "1", "--out", str(tmp_path / "x")]) == 2
    assert "needs --track" in capsys.readouterr().err
    bad = tmp_path / "in" / "bad.gpx"
    bad.write_text("<gpx><trk><trkseg><trkpt lat='1' lon='2'><time>yesterday</time></trkpt>")
    assert main(["ingest", str(video), "--track", str(bad), "--every-s", "1", "--out", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("panoplace ingest: error:") and "bad.gpx" in err[0]
    assert main(["ingest", str(video), "--track", str(gpx), "--every-s", "1", "--out", str(video.parent)]) == 2
    assert "holds the input" in capsys.readouterr().err
