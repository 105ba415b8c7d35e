"""Equal crops, sliding windows and seam wrapping; equirectangular bands."""

from __future__ import annotations

import numpy as np
import pytest

from panoplace.errors import InputError
from panoplace.panorama.crops import crop_windows, extract_crops
from panoplace.panorama.equirect import band_rows, equirect_band


def _azimuth_panorama(width: int = 360, height: int = 3) -> np.ndarray:
    """(height, width) int panorama whose every column holds its own column index."""
    return np.tile(np.arange(width), (height, 1))


def test_seam_crossing_window_is_contiguous_in_the_scene() -> None:
    pano = _azimuth_panorama()
    windows = crop_windows(360, window_deg=20.0, stride_deg=10.0)
    assert (350, 20) in windows
    crops = extract_crops(pano, windows)
    assert crops.shape == (36, 3, 20)
    seam = crops[windows.index((350, 20))][0]
    np.testing.assert_array_equal(seam, np.r_[350:360, 0:10])
    # every crop, seam or not, steps one degree at a time around the circle
    assert (np.mod(np.diff(crops[:, 0, :], axis=1), 360) == 1).all()


def test_extract_crops_keeps_channels_and_dtype() -> None:
    rgb = np.stack([_azimuth_panorama(100, 4).astype(np.uint8)] * 3, axis=-1)
    crops = extract_crops(rgb, [(90, 20), (0, 20)])
    assert crops.shape == (2, 4, 20, 3) and crops.dtype == np.uint8
    np.testing.assert_array_equal(crops[0, 0, :, 1], np.r_[90:100, 0:10])
    assert crops.flags.c_contiguous


@pytest.mark.parametrize("width", [360, 1000, 1024, 7])
@pytest.mark.parametrize("k", [1, 3, 4, 7])
def test_k_equal_crops_cover_the_panorama(width: int, k: int) -> None:
    windows = crop_windows(width, n_crops=k)
    assert len(windows) == k
    widths = {w for _, w in windows}
    assert len(widths) == 1
    covered = np.zeros(width, int)
    for start, w in windows:
        covered[np.mod(start + np.arange(w), width)] += 1
    assert (covered >= 1).all()
    if width % k == 0:
        assert (covered == 1).all()  # an exact partition
    starts = [s for s, _ in windows]
    assert starts == sorted(starts) and starts[0] == 0


def test_sliding_window_count_and_positions() -> None:
    assert crop_windows(720, window_deg=90.0, stride_deg=45.0) == [(90 * i, 180) for i in range(8)]
    # 360 / 100 -> 4 windows, the last one (300 deg) runs across the seam
    assert crop_windows(360, window_deg=120.0, stride_deg=100.0) == [(0, 120), (100, 120), (200, 120), (300, 120)]
    # stride defaults to the window
    assert crop_windows(1000, window_deg=90.0) == [(0, 250), (250, 250), (500, 250), (750, 250)]
    # the count depends on the angles only, not on the panorama width
    for width in (97, 360, 1001):
        assert len(crop_windows(width, window_deg=60.0, stride_deg=30.0)) == 12
    # n_crops is ignored when windows are given
    assert len(crop_windows(360, n_crops=3, window_deg=90.0, stride_deg=90.0)) == 4


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_crops=0), "n_crops"),
    (dict(n_crops=400), "cannot cut 400 crops"),
    (dict(window_deg=0.0), "window_deg"),
    (dict(window_deg=400.0), "window_deg"),
    (dict(window_deg=90.0, stride_deg=-5.0), "stride_deg"),
    (dict(stride_deg=30.0), "needs window_deg"),
])
def test_crop_windows_rejects_bad_arguments(kwargs, match) -> None:
    with pytest.raises(InputError, match=match):
        crop_windows(360, **kwargs)


def test_extract_crops_rejects_mixed_widths_and_bad_panoramas() -> None:
    pano = _azimuth_panorama()
    with pytest.raises(InputError, match="same width"):
        extract_crops(pano, [(0, 10), (10, 20)])
    with pytest.raises(InputError, match="at least one window"):
        extract_crops(pano, [])
    with pytest.raises(InputError, match=r"\(H, W, C\)"):
        extract_crops(np.zeros(5), [(0, 2)])


def test_equirect_band_keeps_the_elevation_rows() -> None:
    img = np.repeat(np.arange(180)[:, None], 360, axis=1)  # row i covers elevation 90-i .. 89-i
    band = equirect_band(img, 45.0, -30.0)
    assert band.shape == (75, 360)
    np.testing.assert_array_equal(band[:, 0], np.arange(45, 120))
    np.testing.assert_array_equal(equirect_band(img, 90.0, -90.0), img)
    rgb = np.zeros((512, 1024, 3), np.uint8)
    assert equirect_band(rgb, 30.0, 0.0).shape == (85, 1024, 3)  # rows round(170.7) = 171 .. 256


def test_band_rows_edges() -> None:
    assert band_rows(180, 90.0, 0.0) == (0, 90)
    assert band_rows(180, 0.0, -90.0) == (90, 180)
    assert band_rows(10, 0.1, 0.0) == (5, 6)  # at least one row
    with pytest.raises(InputError, match="top > bottom"):
        band_rows(180, -10.0, 10.0)
    with pytest.raises(InputError, match="90 >= top"):
        band_rows(180, 100.0, 10.0)
