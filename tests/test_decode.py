"""Extraction's image decoding: the torchvision JPEG path gives what OpenCV gives."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from panoplace.decode import decode_image
from panoplace.errors import ImageReadError
from panoplace.panorama.project import read_image, write_image


@pytest.fixture
def rgb() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = np.zeros((48, 64, 3), np.uint8)
    img[..., 0] = np.linspace(0, 255, 64)[None, :]  # red grows to the right
    img[..., 2] = np.linspace(0, 255, 48)[:, None]  # blue grows downwards
    img[10:20, 30:40] = rng.integers(0, 255, (10, 10, 3))
    return img


def test_jpeg_decodes_to_the_same_rgb_pixels_as_opencv(tmp_path, rgb) -> None:
    path = write_image(tmp_path / "a.jpg", rgb, jpeg_quality=90)
    got = decode_image(path)
    assert got.shape == (48, 64, 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, read_image(path))
    assert got[24, 60, 0] > 200 and got[24, 2, 0] < 50  # RGB order, not BGR


def test_exif_orientation_and_grey_jpegs_follow_opencv(tmp_path, rgb) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(rgb).save(tmp_path / "rot.jpg", quality=95, exif=exif.tobytes())
    rotated = decode_image(tmp_path / "rot.jpg")
    assert rotated.shape == (64, 48, 3)
    np.testing.assert_array_equal(rotated, read_image(tmp_path / "rot.jpg"))
    Image.fromarray(rgb[..., 0]).save(tmp_path / "grey.jpg", quality=95)
    grey = decode_image(tmp_path / "grey.jpg")
    assert grey.shape == (48, 64, 3)
    np.testing.assert_array_equal(grey, read_image(tmp_path / "grey.jpg"))


def test_other_formats_and_bad_files(tmp_path, rgb) -> None:
    png = write_image(tmp_path / "a.png", rgb)
    np.testing.assert_array_equal(decode_image(png), rgb)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ImageReadError, match="bad.jpg"):
        decode_image(tmp_path / "bad.jpg")
    with pytest.raises(ImageReadError, match="missing.jpg"):
        decode_image(tmp_path / "missing.jpg")
