"""Uploaded image bytes -> RGB pixels, refusing anything that is not a whole JPEG or PNG.

An upload is untrusted: it is checked before it is decoded (format by its magic bytes, the
pixel size from its header against a limit, so a small file cannot ask for gigabytes of
pixels) and after (a truncated file must not decode into a half-grey image that gets
localised as if it were real). Every refusal is an :class:`UploadError` with one clear line.
"""

from __future__ import annotations

import struct
from typing import Optional, Tuple

import cv2
import numpy as np

from panoplace.errors import InputError

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"
DEFAULT_MAX_PIXELS = 40_000_000
# JPEG start-of-frame markers that carry the image size (all but DHT C4, JPG C8, DAC CC)
SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class UploadError(InputError):
    """An uploaded image that cannot be used; the message says why (HTTP 400/413/415)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def image_format(data: bytes) -> str:
    """``jpeg`` or ``png`` by the magic bytes; raises :class:`UploadError` (415) otherwise."""
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if data.startswith(PNG_MAGIC):
        return "png"
    if not data:
        raise UploadError("the request has no image (empty body)")
    raise UploadError("the upload is not a JPEG or PNG image (unknown file signature)", status=415)


def _jpeg_size(data: bytes) -> Optional[Tuple[int, int]]:
    """(width, height) from the first start-of-frame segment, or None if there is none."""
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01,) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2:i + 4])
        if marker in SOF_MARKERS:
            if i + 9 > n:
                return None
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return int(width), int(height)
        if marker == 0xDA:  # start of scan before any frame header
            return None
        i += 2 + length
    return None


def image_size(data: bytes) -> Tuple[str, int, int]:
    """Format and (width, height) read from the header, without decoding the pixels.

    Raises:
        UploadError: unknown format, or a header that is cut short or has no size.
    """
    fmt = image_format(data)
    if fmt == "png":
        if len(data) < 33 or data[12:16] != b"IHDR":
            raise UploadError("the PNG image is truncated or damaged (no IHDR header)")
        width, height = struct.unpack(">II", data[16:24])
    else:
        size = _jpeg_size(data)
        if size is None:
            raise UploadError("the JPEG image is truncated or damaged (no frame header)")
        width, height = size
    if width < 1 or height < 1:
        raise UploadError(f"the {fmt.upper()} image has no pixels ({width} x {height})")
    return fmt, int(width), int(height)


def _complete(data: bytes, fmt: str) -> bool:
    """Whether the file ends where its format says a whole image ends (trailing padding allowed)."""
    if fmt == "png":
        return PNG_END in data[-64:] if len(data) > 64 else data.endswith(PNG_END)
    tail = data.rstrip(b"\x00\r\n \t")
    return tail.endswith(b"\xff\xd9")


def decode_upload(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an uploaded JPEG or PNG to RGB.

    Shape: -> ``(H, W, 3)`` uint8 RGB (grey is expanded, alpha dropped).

    Raises:
        UploadError: empty, not JPEG/PNG (415), truncated, undecodable, or more than
            ``max_pixels`` pixels (413).
    """
    fmt, width, height = image_size(data)
    if width * height > max_pixels:
        raise UploadError(f"the image is {width} x {height} pixels; the limit is {max_pixels} pixels", status=413)
    if not _complete(data, fmt):
        raise UploadError(f"the {fmt.upper()} image is truncated (it does not end with an end-of-image marker)")
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    except cv2.error:
        bgr = None
    if bgr is None or bgr.size == 0:
        raise UploadError(f"the {fmt.upper()} image cannot be decoded (damaged data)")
    if bgr.shape[:2] != (height, width):
        raise UploadError(f"the {fmt.upper()} image is damaged (header says {width} x {height}, "
                          f"decoded {bgr.shape[1]} x {bgr.shape[0]})")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
