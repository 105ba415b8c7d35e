"""Photos: EXIF GPS (a real phone photo), EXIF orientation, and photos placed on a track."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from panoplace.cli import main
from panoplace.data.frames import load_csv
from panoplace.ingest import TimeSync, ingest_photos, load_track
from panoplace.ingest.exif import apply_orientation, read_exif
from panoplace.ingest.photos import read_upright
from panoplace.panorama.project import read_image
from tests.ingest.conftest import LAT0, LON0, M_PER_DEG_LAT, T0, write_gpx


def _photo(path: Path, orientation: int = 1, gps=None, when: str = None) -> Path:
    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[:20, :30] = (250, 0, 0)  # red top-left quadrant marks the stored orientation
    rgb[:, 30:] = (0, 0, 250)
    im = Image.fromarray(rgb)
    exif = Image.Exif()
    exif[0x0112] = orientation
    if when:
        exif.get_ifd(0x8769)[0x9003] = when
    if gps:
        (lat, latref), (lon, lonref) = gps
        g = exif.get_ifd(0x8825)
        g[1], g[2], g[3], g[4] = latref, lat, lonref, lon
    im.save(path, exif=exif, quality=95)
    return path


def test_tokyo_phone_photo_gps_and_heading(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "tokyo_pair" / "tokyo_query.jpg"
    ex = read_exif(src)
    # 35 deg 39' 33.46" N, 139 deg 41' 54.17" E (Shibuya); GPSImgDirection 248.68 deg
    assert ex.latlon == pytest.approx((35 + 39 / 60 + 33.46 / 3600, 139 + 41 / 60 + 54.17 / 3600), abs=1e-9)
    assert ex.heading == pytest.approx(248.682, abs=1e-3)
    assert ex.gps_time is None  # its GPSDateStamp is malformed ("2014:10:277"): ignored, not guessed
    result = ingest_photos([src], tmp_path / "out")
    frames = load_csv(result.frames_csv)
    np.testing.assert_allclose(frames.latlon[0], ex.latlon)
    assert frames.heading[0] == pytest.approx(248.682, abs=1e-3)
    assert frames.timestamp[0] == pytest.approx(1412455108.0)  # DateTimeOriginal 2014-10-04 20:38:28 as UTC
    assert (tmp_path / "out" / result.images[0]).read_bytes() == src.read_bytes()  # orientation 1: copied as is


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_pillow(tmp_path: Path, orientation: int) -> None:
    p = _photo(tmp_path / f"o{orientation}.jpg", orientation)
    want = np.asarray(ImageOps.exif_transpose(Image.open(p)).convert("RGB"))
    got = read_upright(p, read_exif(p).orientation)
    assert got.shape == want.shape
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 2
    if orientation == 6:  # turned 90 deg clockwise: the red quadrant is now top-right
        assert got.shape[:2] == (60, 40) and got[5, 35, 0] > 200 and got[5, 5, 0] < 50
    assert apply_orientation(np.arange(6).reshape(2, 3, 1), orientation).size == 6


def test_photos_without_gps_placed_on_a_track_or_left_out(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    gps = (((48.0, 8.0, 13.2), "N"), ((11.0, 34.0, 30.0), "W"))
    _photo(tmp_path / "in" / "a.jpg", 6, gps=gps)
    _photo(tmp_path / "in" / "b.jpg", 1, when="2024:05:01 12:00:01")  # camera clock 2 h ahead of UTC
    _photo(tmp_path / "in" / "c.jpg", 1, when="2024:05:01 12:00:09")  # after the track
    _photo(tmp_path / "in" / "d.jpg", 1)  # no GPS, no time
    gpx = write_gpx(tmp_path / "t.gpx", [T0, T0 + 2], [(LAT0, LON0), (LAT0 + 20 / M_PER_DEG_LAT, LON0)])
    result = ingest_photos([tmp_path / "in"], tmp_path / "out", load_track(gpx), sync=TimeSync(offset_s=-7200))
    frames = load_csv(result.frames_csv)
    assert [Path(p).name for p in frames.paths] == ["000000_a.jpg", "000001_b.jpg"]
    assert frames.latlon[0] == pytest.approx((48 + 8 / 60 + 13.2 / 3600, -(11 + 34.5 / 60)))
    assert (frames.latlon[1, 0] - LAT0) * M_PER_DEG_LAT == pytest.approx(10.0, abs=1e-3)
    assert frames.timestamp[1] == pytest.approx(T0 + 1)
    assert read_image(frames.abs_paths()[0]).shape[:2] == (60, 40)  # written upright
    assert sorted(Path(s.source).name for s in result.skipped) == ["c.jpg", "d.jpg"]
    assert main(["ingest", str(tmp_path / "in" / "d.jpg"), "--out", str(tmp_path / "o2")]) == 2
