"""EXIF of photos: GPS position, capture time, compass direction and orientation.

Read with Pillow's EXIF parser (tags only; nothing is executed, no image data is decoded by
:func:`read_exif`). Malformed values (seen in real files, e.g. a ``GPSDateStamp`` of
``2014:10:277``) are ignored one by one with a debug message rather than failing the photo.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Tuple, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from panoplace.errors import ImageReadError

log = logging.getLogger(__name__)

PathLike = Union[str, Path]

TAG_ORIENTATION = 0x0112
IFD_EXIF = 0x8769
IFD_GPS = 0x8825
TAG_DATETIME_ORIGINAL = 0x9003
TAG_OFFSET_TIME_ORIGINAL = 0x9011
GPS_LAT_REF, GPS_LAT, GPS_LON_REF, GPS_LON = 1, 2, 3, 4
GPS_TIME, GPS_IMG_DIRECTION, GPS_DATE = 7, 17, 29

__all__ = ["PhotoExif", "read_exif", "apply_orientation"]


@dataclass
class PhotoExif:
    """What panoplace uses from a photo's EXIF.

    latlon: (lat, lon) WGS84 degrees from the GPS IFD, or None.
    gps_time: seconds since the Unix epoch (UTC) from GPSDateStamp + GPSTimeStamp, or None.
    camera_time: seconds since the epoch of DateTimeOriginal, read as UTC unless
        OffsetTimeOriginal gives the zone (the camera clock: ``--time-offset`` corrects it), or None.
    heading: GPSImgDirection in degrees, or None.
    orientation: EXIF orientation 1..8 (1 = upright; 6 = rotate 90° clockwise to view).
    """

    latlon: Optional[Tuple[float, float]] = None
    gps_time: Optional[float] = None
    camera_time: Optional[float] = None
    heading: Optional[float] = None
    orientation: int = 1


def _rational(v: Any) -> float:
    return float(v[0]) / float(v[1]) if isinstance(v, tuple) and len(v) == 2 else float(v)


def _dms(value: Any, ref: Any, positive: str, negative: str) -> float:
    parts = [_rational(p) for p in value]
    if len(parts) != 3:
        raise ValueError(f"expected degrees, minutes, seconds, got {value!r}")
    deg = parts[0] + parts[1] / 60.0 + parts[2] / 3600.0
    ref = (ref.decode("ascii", "replace") if isinstance(ref, bytes) else str(ref)).strip().upper()
    if ref not in (positive, negative):
        raise ValueError(f"reference {ref!r}")
    return -deg if ref == negative else deg


def _exif_datetime(text: Any, offset: Any = None) -> float:
    s = str(text).strip().rstrip("\x00")
    t = dt.datetime.strptime(s[:19], "%Y:%m:%d %H:%M:%S")
    tz = dt.timezone.utc
    if offset:
        o = str(offset).strip().rstrip("\x00")
        sign = -1 if o.startswith("-") else 1
        hh, mm = o.lstrip("+-").split(":")
        tz = dt.timezone(sign * dt.timedelta(hours=int(hh), minutes=int(mm)))
    return t.replace(tzinfo=tz).timestamp()


def read_exif(path: PathLike) -> PhotoExif:
    """The EXIF fields of ``path`` that ingest uses (missing or malformed ones are None).

    Raises :class:`ImageReadError` when the file is not an image Pillow can open.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            exif = im.getexif()
            gps = dict(exif.get_ifd(IFD_GPS))
            sub = dict(exif.get_ifd(IFD_EXIF))
            orientation = exif.get(TAG_ORIENTATION, 1)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(str(path), f"cannot read its EXIF ({exc})") from None
    out = PhotoExif()
    try:
        out.orientation = int(orientation) if 1 <= int(orientation) <= 8 else 1
    except (TypeError, ValueError):
        log.debug("%s: bad orientation %r", path, orientation)
    try:
        if GPS_LAT in gps and GPS_LON in gps:
            lat = _dms(gps[GPS_LAT], gps.get(GPS_LAT_REF, "N"), "N", "S")
            lon = _dms(gps[GPS_LON], gps.get(GPS_LON_REF, "E"), "E", "W")
            if abs(lat) <= 90 and abs(lon) <= 180 and math.isfinite(lat) and math.isfinite(lon):
                out.latlon = (lat, lon)
    except (TypeError, ValueError, ZeroDivisionError) as exc:
        log.debug("%s: bad GPS position (%s)", path, exc)
    try:
        if GPS_DATE in gps and GPS_TIME in gps:
            d = dt.datetime.strptime(str(gps[GPS_DATE]).strip().rstrip("\x00"), "%Y:%m:%d")
            h, m, s = (_rational(x) for x in gps[GPS_TIME])
            out.gps_time = d.replace(tzinfo=dt.timezone.utc).timestamp() + h * 3600 + m * 60 + s
    except (TypeError, ValueError, ZeroDivisionError) as exc:
        log.debug("%s: bad GPS date/time (%s)", path, exc)
    try:
        if TAG_DATETIME_ORIGINAL in sub:
            out.camera_time = _exif_datetime(sub[TAG_DATETIME_ORIGINAL], sub.get(TAG_OFFSET_TIME_ORIGINAL))
    except (TypeError, ValueError) as exc:
        log.debug("%s: bad DateTimeOriginal (%s)", path, exc)
    try:
        if GPS_IMG_DIRECTION in gps:
            heading = _rational(gps[GPS_IMG_DIRECTION]) % 360.0
            out.heading = heading if math.isfinite(heading) else None
    except (TypeError, ValueError, ZeroDivisionError) as exc:
        log.debug("%s: bad GPSImgDirection (%s)", path, exc)
    return out


def apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """The upright view of pixels stored with EXIF ``orientation`` (1..8).

    Shape: ``(H, W, C)`` → ``(H, W, C)`` for 1-4, ``(W, H, C)`` for 5-8.
    """
    o = int(orientation)
    if o == 2:
        return img[:, ::-1].copy()
    if o == 3:
        return img[::-1, ::-1].copy()
    if o == 4:
        return img[::-1].copy()
    if o == 5:
        return np.ascontiguousarray(img.transpose(1, 0, *range(2, img.ndim)))
    if o == 6:
        return np.ascontiguousarray(np.rot90(img, k=-1))
    if o == 7:
        return np.ascontiguousarray(img.transpose(1, 0, *range(2, img.ndim))[::-1, ::-1])
    if o == 8:
        return np.ascontiguousarray(np.rot90(img, k=1))
    return img
