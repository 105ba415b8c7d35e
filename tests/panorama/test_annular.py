"""Annulus geometry, its JSON form, and the unwrap conventions (columns = azimuth, row 0 = outer)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from panoplace.errors import InputError
from panoplace.panorama.annular import (
    AnnularUnwrapper,
    AnnulusGeometry,
    load_geometry,
    polar_grid,
    save_geometry,
    unwrap_annulus,
)

from .synthetic import SECTOR_COLOURS, nearest_colour, polar_coords, sector_annulus

H, W = 400, 420
CX, CY, R_IN, R_OUT = 213.0, 196.0, 80.0, 180.0


@pytest.fixture(scope="module")
def sectors() -> np.ndarray:
    return sector_annulus(H, W, CX, CY, R_IN, R_OUT, n_sectors=8)


@pytest.mark.parametrize("start_deg, clockwise", [(0.0, False), (30.0, False), (0.0, True), (250.0, True)])
def test_sector_boundaries_land_on_expected_columns(sectors: np.ndarray, start_deg: float, clockwise: bool) -> None:
    out_w = 360  # one column per degree
    geom = AnnulusGeometry(CX, CY, R_IN, R_OUT, start_deg=start_deg, clockwise=clockwise)
    pano = AnnularUnwrapper(geom, out_w, 24)(sectors)
    assert pano.shape == (24, out_w, 3) and pano.dtype == np.uint8
    # column c looks at start + c degrees (counter-clockwise as displayed) or start - c (clockwise)
    sign = -1.0 if clockwise else 1.0
    azimuth = (start_deg + sign * np.arange(out_w)) % 360.0
    expected = np.floor(azimuth / 45.0).astype(int)
    near_boundary = np.abs(((azimuth + 22.5) % 45.0) - 22.5) < 1.5
    got = nearest_colour(pano)  # (24, out_w)
    assert (got[:, ~near_boundary] == expected[None, ~near_boundary]).all()
    # and the change of sector happens within a column of where it should
    changes = np.nonzero(got[12] != np.roll(got[12], 1))[0]
    want = np.nonzero(expected != np.roll(expected, 1))[0]
    assert len(changes) == len(want) == 8
    assert np.abs(np.sort(changes) - np.sort(want)).max() <= 1


def test_top_of_image_is_quarter_turn_counter_clockwise() -> None:
    """A mark straight above the centre (smaller y) is at azimuth 90°: column W/4 by default,
    3W/4 with clockwise=True, column 0 with start_deg=90; start_deg is always counter-clockwise."""
    img = np.zeros((H, W, 3), np.uint8)
    img[int(CY - 150) - 3:int(CY - 150) + 4, int(CX) - 3:int(CX) + 4] = 255
    geom = AnnulusGeometry(CX, CY, R_IN, R_OUT)
    cases = [(geom, 100), (geom.replace(clockwise=True), 300), (geom.replace(start_deg=90.0), 0),
             (geom.replace(start_deg=180.0, clockwise=True), 100), (geom.replace(start_deg=180.0), 300)]
    for g, col in cases:
        unwrap = AnnularUnwrapper(g, 400, 50)
        pano = unwrap(img)
        brightest = int(np.argmax(pano.sum(axis=(0, 2))))
        assert min(abs(brightest - col), 400 - abs(brightest - col)) <= 1, (g, brightest)
        assert unwrap.azimuth_of_column(col) == pytest.approx(90.0)
    np.testing.assert_array_equal(unwrap_annulus(img, geom, 400, 50), AnnularUnwrapper(geom, 400, 50)(img))


def test_row_zero_is_outer_radius_unless_flipped() -> None:
    radius, _ = polar_coords(H, W, CX, CY)
    img = np.zeros((H, W, 3), np.uint8)
    img[(radius >= 130) & (radius < R_OUT)] = (0, 0, 255)  # outer half blue
    img[(radius >= R_IN) & (radius < 130)] = (0, 255, 0)  # inner half green
    geom = AnnulusGeometry(CX, CY, R_IN, R_OUT)
    pano = AnnularUnwrapper(geom, 180, 20)(img)
    assert (pano[:8, :, 2] > 200).all() and (pano[:8, :, 1] < 50).all()
    assert (pano[-8:, :, 1] > 200).all() and (pano[-8:, :, 2] < 50).all()
    flipped = AnnularUnwrapper(geom.replace(outer_is_top=False), 180, 20)(img)
    np.testing.assert_array_equal(flipped, pano[::-1])


def test_polar_grid_matches_documented_formula() -> None:
    geom = AnnulusGeometry(10.0, 20.0, 5.0, 15.0, start_deg=45.0)
    mx, my = polar_grid(geom, 8, 4)
    # row 1 of 4 samples r = 15 - 1.5 * 10 / 4; column 2 of 8 samples 45 + 90 degrees
    r, a = 15.0 - 1.5 * 10.0 / 4.0, np.radians(135.0)
    assert mx[1, 2] == pytest.approx(10.0 + r * np.cos(a), abs=1e-4)
    assert my[1, 2] == pytest.approx(20.0 - r * np.sin(a), abs=1e-4)


def test_remap_tables_are_cached_and_read_only(sectors: np.ndarray) -> None:
    geom = AnnulusGeometry(CX, CY, R_IN, R_OUT)
    a, b = AnnularUnwrapper(geom, 64, 16), AnnularUnwrapper(AnnulusGeometry(CX, CY, R_IN, R_OUT), 64, 16)
    assert a.maps[0] is b.maps[0]
    assert AnnularUnwrapper(geom, 64, 17).maps[0] is not a.maps[0]
    assert not a.maps[0].flags.writeable
    np.testing.assert_array_equal(a(sectors), b(sectors))


def test_grayscale_and_single_channel_images_keep_their_layout(sectors: np.ndarray) -> None:
    geom = AnnulusGeometry(CX, CY, R_IN, R_OUT)
    unwrap = AnnularUnwrapper(geom, 90, 10)
    assert unwrap(sectors[:, :, 0]).shape == (10, 90)
    assert unwrap(sectors[:, :, :1]).shape == (10, 90, 1)


def test_unwrap_rejects_bad_input(sectors: np.ndarray) -> None:
    geom = AnnulusGeometry(CX, CY, R_IN, R_OUT)
    with pytest.raises(InputError, match="uint8"):
        AnnularUnwrapper(geom, 90, 10)(sectors.astype(np.float32))
    with pytest.raises(InputError, match="outside the 100x80 image"):
        AnnularUnwrapper(geom, 90, 10)(sectors[:80, :100])
    with pytest.raises(InputError, match="out_width"):
        AnnularUnwrapper(geom, 0, 10)


def test_geometry_validation() -> None:
    with pytest.raises(InputError, match="r_outer"):
        AnnulusGeometry(0, 0, 50, 50)
    with pytest.raises(InputError, match="r_inner"):
        AnnulusGeometry(0, 0, -1, 50)
    with pytest.raises(InputError, match="finite"):
        AnnulusGeometry(float("nan"), 0, 1, 50)
    with pytest.raises(InputError, match="clockwise"):
        AnnulusGeometry(0, 0, 1, 50, clockwise="yes")


def test_dict_round_trip_and_errors() -> None:
    geom = AnnulusGeometry(1.5, 2.5, 3.0, 40.0, start_deg=12.0, clockwise=True)
    d = geom.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert AnnulusGeometry.from_dict(d) == geom
    # the older form without outer_is_top is accepted
    assert AnnulusGeometry.from_dict({k: v for k, v in d.items() if k != "outer_is_top"}) == geom
    with pytest.raises(InputError, match="unknown annulus key"):
        AnnulusGeometry.from_dict({**d, "radius": 3})
    with pytest.raises(InputError, match="lacks"):
        AnnulusGeometry.from_dict({"cx": 1.0, "cy": 2.0})


def test_save_and_load_geometry(tmp_path) -> None:
    geom = AnnulusGeometry(101.25, 99.5, 30.0, 95.75, start_deg=-10.0)
    path = save_geometry(geom, tmp_path / "sub" / "annulus.json")
    assert load_geometry(path) == geom
    assert [p.name for p in path.parent.iterdir()] == ["annulus.json"]  # no temp file left behind

    with pytest.raises(InputError, match="does not exist"):
        load_geometry(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON") as exc:
        load_geometry(bad)
    assert "\n" not in str(exc.value)
    bad.write_text(json.dumps({"cx": 1, "cy": 2, "r_inner": 9, "r_outer": 3}))
    with pytest.raises(InputError, match="bad.json: annulus r_outer"):
        load_geometry(bad)
    bad.write_text("[1, 2, 3]")
    with pytest.raises(InputError, match="mapping"):
        load_geometry(bad)


def test_sector_colours_are_distinct() -> None:
    """Guard for the sector test: every palette colour maps back to itself."""
    np.testing.assert_array_equal(nearest_colour(SECTOR_COLOURS), np.arange(len(SECTOR_COLOURS)))
