"""Video recordings → frames sampled every N seconds or every N metres, placed on a GPS track.

Decoding uses OpenCV's FFmpeg backend (MP4, MOV, AVI, MKV ...; phone rotation metadata is
applied by OpenCV). Every frame is *grabbed* (demuxed + decoded, which a compressed stream
needs anyway) but only the sampled ones are converted and written.

Clocks: a frame at video time ``v`` (its presentation timestamp, seconds from the start of
the file) is at track time ``start + v + offset_s`` (:class:`TimeSync`). ``start`` defaults to
the first fix of the track, i.e. recording and logging started together; say otherwise with
``start`` (``--video-start``) and correct a camera clock with ``offset_s`` (``--time-offset``).

Sampling (:class:`Sampler`):

- ``every_s``: the first frame at or after each multiple of ``every_s`` of video time;
- ``every_m``: the first frame that has a position, then each frame whose position lies at
  least ``every_m`` metres of travel (summed frame to frame along the interpolated track)
  after the last kept one.

A sampled frame whose track time has no position (outside the track or inside a gap longer
than ``max_gap_s``) is left out and listed in ``skipped.csv`` with the reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple, Union

import cv2
import numpy as np
from tqdm import tqdm

from panoplace.errors import InputError
from panoplace.ingest.output import IngestFolder, IngestResult, Skipped
from panoplace.ingest.tracks import DEFAULT_MAX_GAP_S, Track, haversine_m
from panoplace.panorama.project import write_image

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
VIDEO_EXTENSIONS = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".insv")
_EPS_S = 1e-3  # frame timestamps are rounded to the stream's time base
_EPS_M = 1e-3  # travel is summed from positions at epoch-second times (float64: ~1e-6 m each)

WantFn = Callable[[int, float], int]

__all__ = ["TimeSync", "Sampler", "ingest_video", "read_video_frames", "VIDEO_EXTENSIONS"]


@dataclass(frozen=True)
class TimeSync:
    """How a camera clock maps to the track clock: ``track time = start + camera time + offset_s``.

    start: track time of video time 0 (None: the track's first fix); unused for photos.
    offset_s: correction added to every camera time (seconds, may be negative).
    max_gap_s: a time between two fixes further apart than this has no position (None: any gap).
    """

    start: Optional[float] = None
    offset_s: float = 0.0
    max_gap_s: Optional[float] = DEFAULT_MAX_GAP_S


class Sampler:
    """Decides, frame by frame in time order, which frames are kept (see the module docstring)."""

    def __init__(self, every_s: Optional[float] = None, every_m: Optional[float] = None) -> None:
        if (every_s is None) == (every_m is None):
            raise InputError("sample a video either every N seconds (--every-s) or every N metres (--every-m)")
        step = every_s if every_s is not None else every_m
        if step is None or not step > 0:
            raise InputError(f"the sampling step must be > 0, got {step}")
        self.every_s, self.every_m = every_s, every_m
        self._next_t = 0.0
        self._last: Optional[Tuple[float, float]] = None
        self._travel = 0.0
        self._started = False

    @property
    def needs_position(self) -> bool:
        return self.every_m is not None

    def want(self, video_time: float, latlon: Optional[Tuple[float, float]] = None) -> bool:
        """Whether the frame at ``video_time`` (with its position, for ``every_m``) is kept."""
        if self.every_s is not None:
            if video_time + _EPS_S < self._next_t:
                return False
            self._next_t = (np.floor((video_time + _EPS_S) / self.every_s) + 1) * self.every_s
            return True
        if latlon is None:
            return False
        if self._last is not None:
            self._travel += float(haversine_m(self._last[0], self._last[1], latlon[0], latlon[1]))
        self._last = latlon
        if not self._started or self._travel + _EPS_M >= float(self.every_m or 0.0):
            self._started = True
            self._travel = 0.0
            return True
        return False


def _open(path: Path) -> "cv2.VideoCapture":
    if not path.is_file():
        raise InputError(f"video not found: {path}")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise InputError(f"cannot open video {path} (not a video file, or a codec OpenCV's FFmpeg lacks)")
    return cap


def read_video_frames(path: PathLike, want: WantFn) -> Iterator[Tuple[int, float, Optional[np.ndarray]]]:
    """Yield ``(frame index, video time s, image or None)`` for every frame of ``path``.

    ``want(index, time)`` returns 0 (skip), 1 (yield without pixels) or 2 (decode pixels).
    Shape: images ``(H, W, 3)`` uint8 RGB.
    """
    path = Path(path)
    cap = _open(path)
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    try:
        index = 0
        with tqdm(total=total, desc=f"video {path.name}", unit="frame", leave=False, disable=None) as bar:
            while cap.grab():
                t = float(cap.get(cv2.CAP_PROP_POS_MSEC)) / 1000.0
                mode = want(index, t)
                img = None
                if mode == 2:
                    ok, bgr = cap.retrieve()
                    if not ok or bgr is None:
                        raise InputError(f"{path}: frame {index} cannot be decoded")
                    img = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                if mode:
                    yield index, t, img
                index += 1
                bar.update(1)
        if index == 0:
            raise InputError(f"{path}: no frame could be decoded")
    finally:
        cap.release()


def ingest_video(video: PathLike, out_dir: PathLike, track: Track, *, every_s: Optional[float] = None,
                 every_m: Optional[float] = None, sync: TimeSync = TimeSync(),
                 condition: Optional[str] = None, sequence: Optional[str] = None,
                 jpeg_quality: int = 95) -> IngestResult:
    """Sample ``video``, place each kept frame on ``track`` and write an ingest folder.

    Args:
        video: the recording (MP4/MOV/... that OpenCV's FFmpeg reads).
        out_dir: output folder (see :mod:`panoplace.ingest.output`); resumable.
        track: GPS fixes on the track clock.
        every_s, every_m: sampling step in seconds of video or metres of travel (exactly one).
        sync: clock alignment; ``sync.start`` None = the track's first fix.
        condition: tag written to the ``condition`` column (e.g. ``day``).
        sequence: tag written to the ``sequence`` column (default: the video's file stem).

    Returns:
        an :class:`IngestResult` (``frames.csv``: ``timestamp`` is the track time).
    """
    video = Path(video)
    sampler = Sampler(every_s, every_m)
    start = track.span[0] if sync.start is None else float(sync.start)
    if sync.start is None:
        log.info("video time 0 taken as the track's first fix (t=%.3f); state it with --video-start", start)
    params = {"kind": "video", "video": str(video.resolve()), "video_bytes": video.stat().st_size if video.is_file() else None,
              "track": track.source, "track_fixes": len(track), "every_s": every_s, "every_m": every_m,
              "start": start, "offset_s": sync.offset_s, "max_gap_s": sync.max_gap_s,
              "condition": condition, "sequence": sequence or video.stem, "jpeg_quality": jpeg_quality}
    folder = IngestFolder(Path(out_dir), params, [video])
    names: List[str] = []
    latlons: List[Tuple[float, float]] = []
    times: List[float] = []
    skipped: List[Skipped] = []
    reused = 0
    unplaced: List[float] = []
    lo, hi = track.span

    def position(t_video: float) -> Tuple[float, Optional[Tuple[float, float]]]:
        t = start + t_video + sync.offset_s
        ll, inside = track.positions_at(np.array([t]), sync.max_gap_s)
        return t, (float(ll[0, 0]), float(ll[0, 1])) if inside[0] else None

    def want(index: int, t_video: float) -> int:
        t, ll = position(t_video)
        if sampler.needs_position:
            if ll is None:
                unplaced.append(t)
                return 0
            if not sampler.want(t_video, ll):
                return 0
        elif not sampler.want(t_video):
            return 0
        if ll is None:
            return 1
        return 1 if folder.image_path(f"{video.stem}_{index:06d}.jpg").exists() else 2

    for index, t_video, img in read_video_frames(video, want):
        t, ll = position(t_video)
        name = f"{video.stem}_{index:06d}.jpg"
        if ll is None:
            why = "before the track" if t < lo else "after the track" if t > hi else f"in a gap > {sync.max_gap_s} s between fixes"
            skipped.append(Skipped(str(video), index, t, f"no position: track time {t:.3f} is {why} "
                                                         f"(track {lo:.3f}..{hi:.3f})"))
            continue
        if img is None:
            reused += 1
        else:
            write_image(folder.image_path(name), img, jpeg_quality)
        names.append(name)
        latlons.append(ll)
        times.append(t)
    if unplaced:
        log.warning("%s: %d frames (track time %.3f..%.3f) have no position and were not sampled by distance",
                    video.name, len(unplaced), min(unplaced), max(unplaced))
        skipped.append(Skipped(str(video), -1, min(unplaced), f"{len(unplaced)} frames between track time "
                               f"{min(unplaced):.3f} and {max(unplaced):.3f} have no position (track {lo:.3f}..{hi:.3f})"))
    return folder.finish(names, np.array(latlons).reshape(-1, 2), np.array(times), None,
                         [sequence or video.stem] * len(names), condition, skipped, reused)
