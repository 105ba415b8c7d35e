"""ImageSet and the panoplace CSV format."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from panoplace.data import ImageSet, latlon_to_xy, load_csv, write_csv
from panoplace.errors import DatasetError


def haversine(a: np.ndarray, b: np.ndarray) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371008.8 * math.asin(math.sqrt(h))


def test_csv_round_trip_keeps_every_column(tmp_path: Path) -> None:
    s = ImageSet(
        "run", tmp_path, ["a/1.jpg", "a/2.jpg", "a/3.jpg"],
        latlon=np.array([[48.1, 11.5], [48.1001, 11.5002], [48.1002, 11.5004]]),
        heading=np.array([0.0, np.nan, 271.25]), timestamp=np.array([0.5, 1.0, 1.5]),
        sequence=["r1"] * 3, condition=["day", "day", "night"], scene=["street"] * 3,
    )
    s.xy, _ = latlon_to_xy(s.latlon)
    out = write_csv(s, tmp_path / "frames.csv")
    back = load_csv(out)
    assert back.paths == s.paths and back.root == tmp_path
    np.testing.assert_array_equal(back.xy, s.xy)
    np.testing.assert_array_equal(back.latlon, s.latlon)
    np.testing.assert_array_equal(back.heading, s.heading)  # NaN stays NaN (empty cell)
    np.testing.assert_array_equal(back.timestamp, s.timestamp)
    assert back.condition == ["day", "day", "night"] and back.sequence == ["r1"] * 3
    assert not list(tmp_path.glob(".*tmp*")), "atomic write left a temp file"


def test_csv_paths_are_relative_to_the_csv_folder(tmp_path: Path) -> None:
    s = ImageSet("x", tmp_path / "images", ["p.png"], xy=np.array([[1.0, 2.0]]))
    out = write_csv(s, tmp_path / "meta" / "set.csv")
    back = load_csv(out)
    assert back.abs_paths()[0].resolve() == (tmp_path / "images" / "p.png").resolve()
    assert back.latlon is None and back.heading is None


def test_latlon_is_projected_into_the_zone_of_the_first_point(tmp_path: Path) -> None:
    # 12°E is the border between UTM zones 32 and 33: both points must use zone 32
    latlon = np.array([[48.0, 11.999], [48.0, 12.001], [48.001, 12.001]])
    xy, zone = latlon_to_xy(latlon)
    assert zone[0] == 32
    for i, j in ((0, 1), (0, 2), (1, 2)):
        d = float(np.linalg.norm(xy[i] - xy[j]))
        assert d == pytest.approx(haversine(latlon[i], latlon[j]), rel=5e-3)  # sphere vs ellipsoid
    own, own_zone = latlon_to_xy(latlon[1:2])  # alone, that point falls in zone 33
    assert own_zone[0] == 33 and np.linalg.norm(own[0] - xy[1]) > 1e5


def test_csv_with_x_y_in_metres(tmp_path: Path) -> None:
    (tmp_path / "s.csv").write_text("image,x,y,heading\nA.png,0,0,\nB.png,3.5,-4,90\n")
    s = load_csv(tmp_path / "s.csv")
    np.testing.assert_array_equal(s.xy, [[0, 0], [3.5, -4]])
    assert np.isnan(s.heading[0]) and s.heading[1] == 90
    assert s.latlon is None and s.condition is None


@pytest.mark.parametrize(
    "text, needle",
    [
        ("path,lat,lon\na.png,1,2\n", "'image'"),
        ("image,lat\na.png,1\n", "'lon'"),
        ("image,y\na.png,1\n", "'x'"),
        ("image,x,y\na.png,1,abc\n", "'y'"),
        ("image,x,y\na.png,1,\n", "empty 'y'"),
    ],
)
def test_csv_errors_name_the_column(tmp_path: Path, text: str, needle: str) -> None:
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(DatasetError, match=needle):
        load_csv(tmp_path / "bad.csv")


def test_missing_csv_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="nope.csv"):
        load_csv(tmp_path / "nope.csv")


def test_imageset_checks_lengths_and_subsets(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="xy"):
        ImageSet("s", tmp_path, ["a", "b"], xy=np.zeros((3, 2)))
    s = ImageSet("s", tmp_path, ["a", "b", "c"], xy=np.arange(6.0).reshape(3, 2), condition=["x", "y", "z"])
    sub = s.subset(np.array([False, True, True]))
    assert sub.paths == ["b", "c"] and sub.condition == ["y", "z"]
    np.testing.assert_array_equal(sub.xy, [[2, 3], [4, 5]])
    with pytest.raises(DatasetError, match="no positions"):
        ImageSet("n", tmp_path, ["a"]).require_positions("ground truth")


def test_rows_for_matches_ids_exactly_or_by_unique_file_name(tmp_path: Path) -> None:
    s = ImageSet("s", tmp_path, ["a/1.png", "a/2.png", "b/1.png", "c/3.png"])
    np.testing.assert_array_equal(s.rows_for(["b/1.png", "a\\2.png", "run/c/3.png"]), [2, 1, 3])
    with pytest.raises(DatasetError, match="'x/1.png' is not in dataset"):
        s.rows_for(["x/1.png"])  # 1.png is ambiguous by name
    with pytest.raises(DatasetError, match="'9.png'"):
        s.rows_for(["9.png"])
