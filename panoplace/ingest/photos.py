"""Geotagged photos → upright images + frames CSV.

Position of each photo, in this order:

1. its EXIF GPS position (``GPSLatitude``/``GPSLongitude``); time = GPS date/time when
   readable, else the camera time;
2. else, with a track, the track position at the camera time (``DateTimeOriginal``, its
   ``OffsetTimeOriginal`` zone or UTC) + ``sync.offset_s``;
3. else it is left out and listed in ``skipped.csv``.

Pixels are written upright: a JPEG with EXIF orientation 1 (or none) is copied byte for byte;
any other photo is decoded, turned by its EXIF orientation
(:func:`~panoplace.ingest.exif.apply_orientation`) and written as JPEG. Heading is EXIF
``GPSImgDirection`` when present.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
from tqdm import tqdm

from panoplace.atomic import write_bytes_atomic
from panoplace.data.frames import list_image_files
from panoplace.errors import ImageReadError, InputError
from panoplace.ingest.exif import apply_orientation, read_exif
from panoplace.ingest.output import IngestFolder, IngestResult, Skipped
from panoplace.ingest.tracks import Track
from panoplace.ingest.video import TimeSync
from panoplace.panorama.project import file_truncation, write_image

log = logging.getLogger(__name__)

PathLike = Union[str, Path]

__all__ = ["ingest_photos", "photo_files", "read_upright"]


def photo_files(inputs: Sequence[PathLike]) -> List[Path]:
    """Image files of ``inputs`` (files as given; folders listed in natural order)."""
    files: List[Path] = []
    for p in map(Path, inputs):
        if p.is_dir():
            files += [p / f for f in list_image_files(p)]
        elif p.is_file():
            files.append(p)
        else:
            raise InputError(f"photo or folder not found: {p}")
    if not files:
        raise InputError("no photos given")
    return files


def read_upright(path: PathLike, orientation: int) -> np.ndarray:
    """Decode ``path`` as stored (EXIF orientation ignored), then turn it upright.

    Shape: → ``(H, W, 3)`` uint8 RGB, upright.
    """
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is None or bgr.size == 0:
        raise ImageReadError(str(path))
    return apply_orientation(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), orientation)


def ingest_photos(inputs: Sequence[PathLike], out_dir: PathLike, track: Optional[Track] = None, *,
                  sync: TimeSync = TimeSync(), condition: Optional[str] = None,
                  sequence: str = "photos", jpeg_quality: int = 95) -> IngestResult:
    """Place photos by EXIF GPS (or the track at their EXIF time) and write an ingest folder.

    Args:
        inputs: photo files and/or folders of photos.
        out_dir: output folder (see :mod:`panoplace.ingest.output`); resumable.
        track: optional GPS fixes for photos without EXIF GPS.
        sync: ``offset_s`` corrects the camera clock; ``max_gap_s`` as for video.
        condition, sequence: tags written to the CSV.
    """
    files = photo_files(inputs)
    params = {"kind": "photos", "inputs": [str(f.resolve()) for f in files],
              "sizes": [f.stat().st_size for f in files], "track": track.source if track else None,
              "offset_s": sync.offset_s, "max_gap_s": sync.max_gap_s, "condition": condition,
              "sequence": sequence, "jpeg_quality": jpeg_quality}
    for f in files:  # a cut-short photo would be copied byte for byte or decoded half grey
        broken = file_truncation(f)
        if broken is not None:
            raise ImageReadError(str(f), broken)
    folder = IngestFolder(Path(out_dir), params, files)
    names: List[str] = []
    latlons: List[Tuple[float, float]] = []
    times: List[float] = []
    headings: List[float] = []
    skipped: List[Skipped] = []
    reused = 0
    used = set()
    for i, f in enumerate(tqdm(files, desc="photos", unit="photo", leave=False, disable=None)):
        ex = read_exif(f)
        cam = ex.camera_time + sync.offset_s if ex.camera_time is not None else None
        t = ex.gps_time if ex.gps_time is not None else cam
        ll = ex.latlon
        if ll is None:
            if track is None:
                skipped.append(Skipped(str(f), -1, np.nan, "no GPS position in its EXIF (and no track given)"))
                continue
            if cam is None:
                skipped.append(Skipped(str(f), -1, np.nan, "no GPS in its EXIF and no DateTimeOriginal to place it on the track"))
                continue
            pos, inside = track.positions_at(np.array([cam]), sync.max_gap_s)
            if not inside[0]:
                lo, hi = track.span
                skipped.append(Skipped(str(f), -1, cam, f"no position: camera time {cam:.3f} (offset applied) is "
                                                        f"outside the track {lo:.3f}..{hi:.3f} or in a gap"))
                continue
            ll = (float(pos[0, 0]), float(pos[0, 1]))
        name = f"{i:06d}_{f.stem}.jpg"
        if name in used:
            raise InputError(f"two photos map to the same output name {name}")
        used.add(name)
        dest = folder.image_path(name)
        if dest.exists():
            reused += 1
        elif ex.orientation == 1 and f.suffix.lower() in (".jpg", ".jpeg"):
            write_bytes_atomic(dest, f.read_bytes())
        else:
            write_image(dest, read_upright(f, ex.orientation), jpeg_quality)
        names.append(name)
        latlons.append(ll)
        times.append(np.nan if t is None else t)
        headings.append(np.nan if ex.heading is None else ex.heading)
    heading = np.array(headings) if np.isfinite(headings).any() else None
    return folder.finish(names, np.array(latlons).reshape(-1, 2), np.array(times), heading,
                         [sequence] * len(names), condition, skipped, reused)
