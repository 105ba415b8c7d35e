"""Automatic annulus calibration: known synthetic geometries are recovered, non-rings refused."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from panoplace.errors import CalibrationError, InputError
from panoplace.panorama.calibrate import calibrate_annulus, fit_circle, median_image

from .synthetic import textured_annulus


def _assert_close(geom, cx: float, cy: float, r_inner: float, r_outer: float, tol: float = 1.0) -> None:
    got = np.array([geom.cx, geom.cy, geom.r_inner, geom.r_outer])
    want = np.array([cx, cy, r_inner, r_outer])
    assert np.abs(got - want).max() <= tol, (got, want)


@pytest.mark.parametrize("h, w, cx, cy, r_inner, r_outer", [
    (380, 420, 231.3, 177.6, 45.2, 152.7),  # off-centre, whole ring visible
    (240, 400, 190.4, 118.3, 40.6, 150.2),  # ring clipped by the top and bottom image borders
])
def test_recovers_known_annulus_within_a_pixel(rng, h, w, cx, cy, r_inner, r_outer) -> None:
    img = textured_annulus(h, w, cx, cy, r_inner, r_outer, rng)
    geom = calibrate_annulus([img], start_deg=15.0, clockwise=True)
    _assert_close(geom, cx, cy, r_inner, r_outer)
    assert (geom.start_deg, geom.clockwise) == (15.0, True)


def test_single_image_array_is_accepted(rng) -> None:
    img = textured_annulus(200, 220, 110.5, 97.2, 25.0, 80.0, rng)
    _assert_close(calibrate_annulus(img), 110.5, 97.2, 25.0, 80.0)


def test_several_noisy_images_are_combined_by_their_median(rng) -> None:
    truth = (205.7, 190.2, 50.4, 160.9)
    frames = []
    for _ in range(4):
        img = textured_annulus(380, 420, *truth, rng, noise=6.0)
        salt = rng.random(img.shape[:2]) < 0.04  # salt-and-pepper noise, different in each frame
        img[salt] = 255
        frames.append(img)
    frames.insert(2, np.full_like(frames[0], 255))  # one blown-out frame: alone, it has no ring at all
    with pytest.raises(CalibrationError):
        calibrate_annulus([frames[2]])
    median = median_image(frames)
    assert median.shape == (380, 420) and median.dtype == np.uint8
    border = median[:20, :20]  # the white frame and (nearly all of) the salt are gone from the border
    assert border.mean() < 10 and (border < 30).mean() > 0.98
    _assert_close(calibrate_annulus(frames), *truth)


def test_median_of_odd_stack_is_the_middle_value() -> None:
    imgs = [np.full((4, 5), v, np.uint8) for v in (10, 200, 30)]
    np.testing.assert_array_equal(median_image(imgs), np.full((4, 5), 30, np.uint8))


def _disc_without_hole() -> np.ndarray:
    img = np.zeros((200, 300, 3), np.uint8)
    cv2.circle(img, (150, 100), 80, (200, 180, 160), -1)
    return img


def _bright_with_dark_hole() -> np.ndarray:
    img = np.full((200, 300, 3), 150, np.uint8)
    cv2.circle(img, (150, 100), 30, (0, 0, 0), -1)
    return img


def _rectangle() -> np.ndarray:
    img = np.zeros((200, 300, 3), np.uint8)
    img[40:160, 60:250] = 180
    return img


@pytest.mark.parametrize("make, reason", [
    (lambda: np.full((200, 300, 3), 128, np.uint8), "uniform"),
    (lambda: np.zeros((200, 300, 3), np.uint8), "uniform"),
    (lambda: np.random.default_rng(3).integers(0, 256, (200, 300, 3)).astype(np.uint8), "not a circle"),
    (_rectangle, "not a circle"),
    (_bright_with_dark_hole, "no dark border"),
    (_disc_without_hole, "no dark central disc"),
])
def test_refuses_images_without_a_ring(make, reason) -> None:
    with pytest.raises(CalibrationError, match=reason) as exc:
        calibrate_annulus([make()])
    assert "\n" not in str(exc.value)


def test_input_mistakes_raise_input_error(rng) -> None:
    with pytest.raises(InputError, match="at least one image"):
        calibrate_annulus([])
    with pytest.raises(InputError, match="same size"):
        calibrate_annulus([np.zeros((50, 60, 3), np.uint8), np.zeros((50, 61, 3), np.uint8)])
    with pytest.raises(InputError, match="uint8"):
        calibrate_annulus([np.zeros((50, 60, 3), np.float32)])


def test_fit_circle_ignores_outliers(rng) -> None:
    t = rng.uniform(0, 2 * np.pi, 200)
    pts = np.column_stack([30.0 + 12.0 * np.cos(t), -4.0 + 12.0 * np.sin(t)])
    pts[:20] += rng.uniform(5, 20, (20, 2))  # 10% gross outliers
    cx, cy, r, resid = fit_circle(pts)
    assert (cx, cy, r) == pytest.approx((30.0, -4.0, 12.0), abs=0.05)
    assert resid.shape == (200,) and np.median(np.abs(resid[20:])) < 0.05
    plain = fit_circle(pts, iterations=0)  # least squares over all points, outliers included
    assert max(abs(plain[0] - 30.0), abs(plain[1] + 4.0)) > 0.5


def test_known_inner_radius_skips_the_hole_search() -> None:
    """A disc without a dark centre (a circular fisheye) calibrates once r_inner is given."""
    geom = calibrate_annulus([_disc_without_hole()], r_inner=0.0)
    _assert_close(geom, 150.0, 100.0, 0.0, 80.0)
    with pytest.raises(CalibrationError, match="not inside the found outer radius"):
        calibrate_annulus([_disc_without_hole()], r_inner=200.0)
