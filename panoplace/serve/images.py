"""Uploaded image bytes -> RGB pixels, refusing anything that is not a whole JPEG or PNG.

An upload is untrusted: it is checked before it is decoded (format by its magic bytes, the
pixel size from its header against a limit, so a small file cannot ask for gigabytes of
pixels) and after (a truncated file must not decode into a half-grey image that gets
localised as if it were real). Every refusal is an :class:`UploadError` with one clear line.
"""

from __future__ import annotations

from typing import Tuple

import cv2
import numpy as np

from panoplace.errors import InputError
from panoplace.panorama.imagebytes import header_size, is_complete, sniff_format

DEFAULT_MAX_PIXELS = 40_000_000


class UploadError(InputError):
    """An uploaded image that cannot be used; the message says why (HTTP 400/413/415)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def image_format(data: bytes) -> str:
    """``jpeg`` or ``png`` by the magic bytes; raises :class:`UploadError` (415) otherwise."""
    fmt = sniff_format(data)
    if fmt is not None:
        return fmt
    if not data:
        raise UploadError("the request has no image (empty body)")
    raise UploadError("the upload is not a JPEG or PNG image (unknown file signature)", status=415)


def image_size(data: bytes) -> Tuple[str, int, int]:
    """Format and (width, height) read from the header, without decoding the pixels.

    Raises:
        UploadError: unknown format, or a header that is cut short or has no size.
    """
    fmt = image_format(data)
    size = header_size(data, fmt)
    if size is None:
        what = "no IHDR header" if fmt == "png" else "no frame header"
        raise UploadError(f"the {fmt.upper()} image is truncated or damaged ({what})")
    width, height = size
    if width < 1 or height < 1:
        raise UploadError(f"the {fmt.upper()} image has no pixels ({width} x {height})")
    return fmt, int(width), int(height)


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
    if not is_complete(data, fmt):
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
