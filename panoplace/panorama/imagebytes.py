"""Whole-image checks on encoded bytes: format by magic bytes, size from the header, truncation.

The one implementation that both image files (:func:`panoplace.panorama.project.read_image`,
:func:`panoplace.decode.decode_image`) and uploads (:mod:`panoplace.serve.images`) use. A
truncated JPEG otherwise decodes into a half-grey image (libjpeg only prints an unnamed
warning) that every verb would describe as if it were real; a truncated PNG loses its last
rows. Both formats say where a whole image ends: JPEG with the end-of-image marker ``FFD9``,
PNG with the ``IEND`` chunk, so a file that does not end there is cut short.

Functions return a reason (a short phrase) or None rather than raise, so that each caller
raises its own error type (``ImageReadError`` naming the file, ``UploadError`` with an HTTP
status).

>>> truncation(b"\\xff\\xd8\\xff\\xe0" + b"\\0" * 20)
'truncated JPEG: it does not end with an end-of-image marker'
>>> truncation(b"BM not checked") is None
True
"""

from __future__ import annotations

import struct
from typing import Optional, Tuple

__all__ = [
    "HEAD_BYTES",
    "JPEG_MAGIC",
    "PNG_END",
    "PNG_MAGIC",
    "TAIL_BYTES",
    "header_size",
    "is_complete",
    "sniff_format",
    "truncation",
]

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"
#: How many bytes at the end of a file :func:`is_complete` needs (trailing padding allowed).
TAIL_BYTES = 64
#: How many bytes at the start of a file :func:`truncation` needs (the magic bytes and a PNG's IHDR).
HEAD_BYTES = 33
# JPEG start-of-frame markers that carry the image size (all but DHT C4, JPG C8, DAC CC)
SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def sniff_format(head: bytes) -> Optional[str]:
    """``"jpeg"`` or ``"png"`` by the magic bytes at the start of ``head``, else None."""
    if head.startswith(JPEG_MAGIC):
        return "jpeg"
    if head.startswith(PNG_MAGIC):
        return "png"
    return None


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


def header_size(data: bytes, fmt: str) -> Optional[Tuple[int, int]]:
    """(width, height) read from the header of a ``jpeg``/``png`` without decoding, or None when
    the header is cut short or holds no size."""
    if fmt == "png":
        if len(data) < 33 or data[12:16] != b"IHDR":
            return None
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    return _jpeg_size(data)


def is_complete(tail: bytes, fmt: str) -> bool:
    """Whether bytes ending in ``tail`` (the file's last :data:`TAIL_BYTES` or more) end where a
    whole ``jpeg``/``png`` image ends (trailing NUL/whitespace padding allowed)."""
    if fmt == "png":
        return PNG_END in tail[-TAIL_BYTES:]
    return tail.rstrip(b"\x00\r\n \t").endswith(b"\xff\xd9")


def truncation(data: bytes, tail: Optional[bytes] = None) -> Optional[str]:
    """Why a JPEG/PNG is cut short, or None when it is whole or of another format (not checked).

    ``data``: the file's bytes, or at least its first :data:`HEAD_BYTES`; ``tail``: its last
    :data:`TAIL_BYTES` bytes when ``data`` is only the head.
    """
    fmt = sniff_format(data)
    if fmt is None or (fmt == "png" and header_size(data, fmt) is None):
        return None  # not JPEG/PNG, or a PNG without a header: the decoder says it cannot decode it
    if not is_complete(data if tail is None else tail, fmt):
        marker = "end-of-image marker" if fmt == "jpeg" else "IEND chunk"
        return f"truncated {fmt.upper()}: it does not end with an {marker}"
    return None
