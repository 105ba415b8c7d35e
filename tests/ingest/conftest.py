"""Recordings written by the tests: a video with known frame content and GPS tracks."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Sequence, Tuple

import cv2
import numpy as np
import pytest

T0 = dt.datetime(2024, 5, 1, 10, 0, 0, tzinfo=dt.timezone.utc).timestamp()
LAT0, LON0 = 48.137, 11.575
M_PER_DEG_LAT = 6371008.8 * math.pi / 180.0  # the great-circle metres of one degree of latitude


def frame_level(i: int) -> int:
    """Grey level of frame i of the test video (survives MPEG-4 compression within a few levels)."""
    return 20 + 5 * i


def write_video(path: Path, n_frames: int = 40, fps: float = 10.0, size: Tuple[int, int] = (64, 48)) -> Path:
    """An MP4 whose frame i is uniformly ``frame_level(i)`` grey."""
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened()
    for i in range(n_frames):
        writer.write(np.full((h, w, 3), frame_level(i), np.uint8))
    writer.release()
    return path


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_gpx(path: Path, times: Sequence[float], latlon: Sequence[Tuple[float, float]]) -> Path:
    pts = "\n".join(f'<trkpt lat="{la:.9f}" lon="{lo:.9f}"><ele>500</ele><time>{iso(t)}</time></trkpt>'
                    for t, (la, lo) in zip(times, latlon))
    path.write_text('<?xml version="1.0" encoding="UTF-8"?>\n'
                    '<gpx version="1.1" creator="test" xmlns="http://www.topografix.com/GPX/1/1">'
                    f"<trk><name>t</name><trkseg>\n{pts}\n</trkseg></trk></gpx>\n")
    return path


@pytest.fixture
def video(tmp_path: Path) -> Path:
    """40 frames at 10 fps (video times 0.0 .. 3.9 s), frame i uniformly ``frame_level(i)``."""
    (tmp_path / "in").mkdir()
    return write_video(tmp_path / "in" / "drive.mp4")
