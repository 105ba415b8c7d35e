"""Whole-image checks on encoded bytes: the JPEG end marker and the PNG IEND chunk."""

import cv2
import numpy as np
import pytest

from panoplace.decode import decode_image
from panoplace.errors import ImageReadError
from panoplace.panorama.imagebytes import header_size, is_complete, sniff_format, truncation
from panoplace.panorama.project import file_truncation, read_image


@pytest.fixture
def encoded() -> dict:
    img = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    return {ext: cv2.imencode(f".{ext}", img)[1].tobytes() for ext in ("jpg", "png")}


def test_complete_images_pass_and_cut_ones_are_named(encoded, tmp_path) -> None:
    for ext, fmt in (("jpg", "jpeg"), ("png", "png")):
        data = encoded[ext]
        assert sniff_format(data) == fmt and header_size(data, fmt) == (30, 20)
        assert truncation(data) is None and truncation(data + b"\0\0\n") is None  # padding is fine
        assert is_complete(data, fmt) and not is_complete(data[:-10], fmt)
        assert truncation(data[: len(data) // 2]).startswith(f"truncated {fmt.upper()}")
        (tmp_path / f"ok.{ext}").write_bytes(data)
        (tmp_path / f"cut.{ext}").write_bytes(data[: len(data) - 12])
        assert file_truncation(tmp_path / f"ok.{ext}") is None
        assert "truncated" in file_truncation(tmp_path / f"cut.{ext}")
        for decoder in (decode_image, read_image):
            assert decoder(tmp_path / f"ok.{ext}").shape == (20, 30, 3)
            with pytest.raises(ImageReadError, match=f"cut.{ext}: truncated"):
                decoder(tmp_path / f"cut.{ext}")
    assert truncation(b"BM...") is None and sniff_format(b"GIF89a") is None  # other formats: not checked


def test_a_jpeg_libjpeg_refuses_is_an_error_not_a_grey_image(encoded, tmp_path) -> None:
    data = bytearray(encoded["jpg"])
    i = data.index(b"\xff\xc4")
    data[i + 4] = 0x55  # bogus Huffman table index
    (tmp_path / "bad.jpg").write_bytes(bytes(data))
    with pytest.raises(ImageReadError, match="bad.jpg: damaged JPEG data"):
        decode_image(tmp_path / "bad.jpg")
