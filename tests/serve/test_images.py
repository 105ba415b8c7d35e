"""Upload decoding: whole JPEG/PNG images only, sizes checked before decoding."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from panoplace.serve.images import UploadError, decode_upload, image_size


def _encode(img: np.ndarray, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


@pytest.fixture
def picture(rng: np.random.Generator) -> np.ndarray:
    img = np.zeros((48, 80, 3), np.uint8)
    img[:, :40] = (200, 30, 10)  # red left half: RGB order must survive
    img[:, 40:] = rng.integers(0, 255, (48, 40, 3), dtype=np.uint8)
    return img


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_decode_upload_gives_rgb_of_the_right_size(picture: np.ndarray, ext: str) -> None:
    data = _encode(picture, ext)
    assert image_size(data) == ("png" if ext == ".png" else "jpeg", 80, 48)
    rgb = decode_upload(data)
    assert rgb.shape == (48, 80, 3) and rgb.dtype == np.uint8
    tol = 0 if ext == ".png" else 12
    assert np.abs(rgb[10, 10].astype(int) - (200, 30, 10)).max() <= tol
    if ext == ".png":
        np.testing.assert_array_equal(rgb, picture)


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_truncated_images_are_refused(picture: np.ndarray, ext: str) -> None:
    data = _encode(picture, ext)
    for cut in (len(data) // 2, len(data) - 3, 20):
        with pytest.raises(UploadError, match="truncated") as info:
            decode_upload(data[:cut])
        assert info.value.status == 400


def test_other_formats_empty_bodies_and_huge_images_are_refused(picture: np.ndarray) -> None:
    with pytest.raises(UploadError, match="not a JPEG or PNG") as info:
        decode_upload(_encode(picture, ".bmp"))
    assert info.value.status == 415
    with pytest.raises(UploadError, match="empty body"):
        decode_upload(b"")
    with pytest.raises(UploadError, match="limit is 1000 pixels") as info:
        decode_upload(_encode(picture, ".png"), max_pixels=1000)
    assert info.value.status == 413
    # a PNG header claiming 100000 x 100000 pixels is refused before any decoding
    header = bytearray(_encode(picture, ".png"))
    header[16:24] = (100000).to_bytes(4, "big") * 2
    with pytest.raises(UploadError, match="100000 x 100000"):
        decode_upload(bytes(header))


def test_damaged_image_data_is_refused(picture: np.ndarray) -> None:
    data = bytearray(_encode(picture, ".png"))
    data[40:80] = b"\x00" * 40  # inside the compressed pixel data: CRC/zlib fail
    with pytest.raises(UploadError):
        decode_upload(bytes(data))
