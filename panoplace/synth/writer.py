"""Writing traversals of the synthetic town to disk (resumable) in panoplace's CSV format.

Folder layout written by :func:`render_world`::

    OUT/world.json                       seed, world parameters, traversals, lens, conventions
    OUT/<traversal>/frames.csv           one row per frame, ``image`` = first projection
    OUT/<traversal>/frames_<proj>.csv    the same rows with ``image`` of each projection
    OUT/<traversal>/equirect/000123.jpg  equirectangular panoramas (see render.py)
    OUT/<traversal>/annular/000123.jpg   panoramic annular images (see lens.py)
    OUT/<traversal>/annular/annulus.json the true ring geometry (AnnulusGeometry keys)
    OUT/<traversal>/annular/lens.json    the full lens model
    OUT/<traversal>/dual-fisheye/000123.jpg        dual-fisheye frames (2H x H, see lens.py)
    OUT/<traversal>/dual-fisheye/calibration.json  their calibration (extract --calibration)
    OUT/<traversal>/recording/drive.mp4  with ``recording``: the frames of the first projection as
    OUT/<traversal>/recording/drive.gpx  a video (one frame per spacing at 8 m/s) + its GPS track

CSV columns: ``image,lat,lon,x,y,heading,timestamp,sequence,condition,scene`` with ``image``
relative to the CSV's folder, ``x, y`` metres east/north of the world origin, ``lat, lon``
from a local tangent plane at the configured origin, ``heading`` the compass bearing of
panorama column 0 (direction of travel + the traversal's heading offset), ``timestamp``
Unix seconds, ``sequence`` the traversal name, ``condition`` e.g. ``night`` or ``day-fog``
and ``scene`` one of street, park, plaza, waterfront, parking.

Every file is written atomically (temporary file + rename), so an interrupted run leaves
no half-written image; running again skips the frames already on disk.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import cv2
import numpy as np
from tqdm import tqdm

from panoplace.atomic import atomic_path, write_bytes_atomic, write_text_atomic
from panoplace.errors import InputError
from panoplace.synth.conditions import Traversal
from panoplace.synth.dynamic import place_dynamic_objects
from panoplace.panorama.dualfisheye import save_calibration
from panoplace.synth.lens import AnnularLens, DualFisheyeLens, equirect_to_annular, equirect_to_dual_fisheye, write_lens_files
from panoplace.synth.render import check_size, render_frame
from panoplace.synth.routes import Pose, xy_to_latlon
from panoplace.synth.world import World

log = logging.getLogger(__name__)

PROJECTIONS = ("equirect", "annular", "dual-fisheye")
CSV_COLUMNS = ("image", "lat", "lon", "x", "y", "heading", "timestamp", "sequence", "condition", "scene")
SPEED_MPS = 8.0
_HOUR = {"day": 10.5, "dusk": 18.75, "night": 22.0}
_EPOCH = _dt.datetime(2019, 5, 1, tzinfo=_dt.timezone(_dt.timedelta(hours=8)))


@dataclass(frozen=True)
class FrameInfo:
    """Where and when one frame of a traversal is taken.

    index: frame number; s_m: arc length along the route; pose: camera pose (heading of
    panorama column 0); travel_deg: direction of travel; lat, lon; timestamp: Unix seconds;
    scene: scene label of the zone around the camera.
    """

    index: int
    s_m: float
    pose: Pose
    travel_deg: float
    lat: float
    lon: float
    timestamp: float
    scene: str

    @property
    def stem(self) -> str:
        return f"{self.index:06d}"


def traversal_frames(world: World, traversal: Traversal, n_frames: Optional[int] = None) -> List[FrameInfo]:
    """Poses, positions, times and scene labels of a traversal's frames.

    n_frames: overrides ``traversal.n_frames``; when both are None, one lap of the loop.
    Frames past the end of the loop wrap around (a second lap), which is logged.
    """
    cfg = world.config
    n = n_frames if n_frames is not None else traversal.n_frames
    if n is None:
        n = max(1, int(world.route.length_m // traversal.spacing_m))
    if n < 1:
        raise InputError(f"n_frames must be >= 1, got {n}")
    s = traversal.start_m + traversal.spacing_m * np.arange(n, dtype=np.float64)
    if s[-1] >= world.route.length_m:
        log.info("traversal %s: %d frames x %.1f m exceed the %.0f m loop; frames wrap around",
                 traversal.name, n, traversal.spacing_m, world.route.length_m)
    lateral = cfg.lane_offset_m + traversal.lateral_offset_m
    x, y, travel = world.route.poses(s, lateral)
    lat, lon = xy_to_latlon(x, y, cfg.origin_lat, cfg.origin_lon)
    t0 = (_EPOCH + _dt.timedelta(days=traversal.day, hours=_HOUR[traversal.condition.time_of_day])).timestamp()
    out = []
    for k in range(n):
        heading = float((travel[k] + traversal.heading_offset_deg) % 360.0)
        out.append(
            FrameInfo(
                index=k,
                s_m=float(s[k]),
                pose=Pose(float(x[k]), float(y[k]), heading, cfg.camera_height_m, vehicle_heading_deg=float(travel[k])),
                travel_deg=float(travel[k]),
                lat=float(lat[k]),
                lon=float(lon[k]),
                timestamp=round(t0 + (s[k] - traversal.start_m) / SPEED_MPS, 3),
                scene=world.scene_at(float(x[k]), float(y[k])),
            )
        )
    return out


def write_image(path: Path, rgb: np.ndarray, quality: int = 92) -> None:
    """Encode an (H, W, 3) uint8 RGB image by its suffix (.jpg/.png) and write it atomically."""
    ok, buf = cv2.imencode(Path(path).suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise InputError(f"cannot encode image {path}")
    write_bytes_atomic(path, buf.tobytes())


def frames_csv_text(frames: Sequence[FrameInfo], traversal: Traversal, image_dir: str, ext: str = ".jpg") -> str:
    """The CSV (header + one row per frame) of a traversal with images under ``image_dir``."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for f in frames:
        w.writerow([
            f"{image_dir}/{f.stem}{ext}", f"{f.lat:.8f}", f"{f.lon:.8f}", f"{f.pose.x:.3f}", f"{f.pose.y:.3f}",
            f"{f.pose.heading_deg:.3f}", f"{f.timestamp:.3f}", traversal.name, traversal.condition.tag, f.scene,
        ])
    return buf.getvalue()


def write_recording(frames: Sequence[FrameInfo], image_dir: Path, out_dir: Path, spacing_m: float) -> Path:
    """A camera recording of a rendered traversal, as ``panoplace ingest`` takes it.

    ``out_dir/drive.mp4``: the images ``image_dir/<stem>.jpg`` as an MPEG-4 video at
    ``8 m/s / spacing_m`` frames per second (frame k at video time k / fps, i.e. the frame's
    timestamp minus the first one's); ``out_dir/drive.gpx``: one GPX track point (lat, lon,
    UTC time) per frame. Both written atomically; returns the video path.
    """
    if not frames:
        raise InputError("no frames to record")
    fps = SPEED_MPS / float(spacing_m)
    first = cv2.imread(str(image_dir / f"{frames[0].stem}.jpg"), cv2.IMREAD_COLOR)
    if first is None:
        raise InputError(f"cannot read the rendered frame {image_dir / (frames[0].stem + '.jpg')}")
    h, w = first.shape[:2]
    video = Path(out_dir) / "drive.mp4"
    with atomic_path(video, suffix=".mp4") as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
        if not writer.isOpened():
            raise InputError(f"OpenCV cannot write an MPEG-4 video to {video}")
        try:
            for f in frames:
                bgr = cv2.imread(str(image_dir / f"{f.stem}.jpg"), cv2.IMREAD_COLOR)
                if bgr is None or bgr.shape[:2] != (h, w):
                    raise InputError(f"cannot read the rendered frame {image_dir / (f.stem + '.jpg')}")
                writer.write(bgr)
        finally:
            writer.release()
    points = "\n".join(
        f'<trkpt lat="{f.lat:.8f}" lon="{f.lon:.8f}"><time>'
        f'{_dt.datetime.fromtimestamp(f.timestamp, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}</time></trkpt>'
        for f in frames)
    write_text_atomic(Path(out_dir) / "drive.gpx",
                      '<?xml version="1.0" encoding="UTF-8"?>\n<gpx version="1.1" creator="panoplace synth" '
                      f'xmlns="http://www.topografix.com/GPX/1/1"><trk><trkseg>\n{points}\n</trkseg></trk></gpx>\n')
    return video


def check_projections(projections: Sequence[str]) -> List[str]:
    """Validated list of projection names (non-empty, known, no repeats)."""
    projs = list(projections)
    if not projs:
        raise InputError("need at least one projection")
    bad = [p for p in projs if p not in PROJECTIONS]
    if bad:
        raise InputError(f"unknown projection(s) {bad}; choose from {list(PROJECTIONS)}")
    if len(set(projs)) != len(projs):
        raise InputError(f"projections listed twice: {projs}")
    return projs


def render_traversal(
    world: World,
    traversal: Traversal,
    out_dir: Union[str, Path],
    projections: Sequence[str] = ("equirect",),
    width: int = 1024,
    height: int = 512,
    n_frames: Optional[int] = None,
    lens: Optional[AnnularLens] = None,
    quality: int = 92,
    progress: bool = True,
    recording: bool = False,
    overwrite: bool = False,
) -> Path:
    """Render one traversal into ``out_dir/<traversal.name>/`` and return its ``frames.csv``.

    projections: any of ``equirect``, ``annular`` and ``dual-fisheye`` (the first one is
    ``frames.csv``'s ``image``). width, height: equirectangular size (dual-fisheye frames are
    ``2 height x height``, :class:`DualFisheyeLens` defaults). n_frames: overrides the traversal's.
    lens: annular lens (default :meth:`AnnularLens.for_size` of ``height * 2``).
    Frames whose images all exist are skipped (resume); the CSVs are rewritten every time.
    recording: also write ``recording/drive.mp4`` + ``drive.gpx`` (:func:`write_recording`).
    overwrite: render every frame again, also over frames of other parameters (no resume check).
    """
    projs = check_projections(projections)
    check_size(width, height)
    if not (1 <= int(quality) <= 100):
        raise InputError(f"JPEG quality must be in [1, 100], got {quality}")
    root = Path(out_dir) / traversal.name
    frames = traversal_frames(world, traversal, n_frames)
    if "annular" in projs and lens is None:
        lens = AnnularLens.for_size(int(height) * 2)
    for p in projs:
        (root / p).mkdir(parents=True, exist_ok=True)
    if "annular" in projs and lens is not None:
        write_lens_files(lens, root / "annular")
    fisheye = DualFisheyeLens(size=int(height)) if "dual-fisheye" in projs else None
    if fisheye is not None:
        save_calibration(fisheye.calibration(), root / "dual-fisheye" / "calibration.json")
    _check_resume(root / "traversal.json", _resume_params(world, traversal, projs, width, height, lens, quality),
                  write=True, check=not overwrite)

    todo = frames if overwrite else [f for f in frames
                                     if not all((root / p / f"{f.stem}.jpg").is_file() for p in projs)]
    if len(todo) < len(frames):
        log.info("traversal %s: %d of %d frames already on disk", traversal.name, len(frames) - len(todo), len(frames))
    if todo:
        path = world.route.path(world.config.lane_offset_m + traversal.lateral_offset_m)
        dyn = place_dynamic_objects(world, traversal.seed, avoid_xy=path, condition=traversal.condition)
        for f in tqdm(todo, desc=f"render {traversal.name}", unit="frame", disable=not progress, leave=False):
            pano = render_frame(world, f.pose, traversal.condition, dyn, width, height,
                                appearance_seed=traversal.seed, noise_seed=traversal.seed * 100003 + f.index)
            if "equirect" in projs:
                write_image(root / "equirect" / f"{f.stem}.jpg", pano, quality)
            if "annular" in projs and lens is not None:
                write_image(root / "annular" / f"{f.stem}.jpg", equirect_to_annular(pano, lens), quality)
            if fisheye is not None:
                write_image(root / "dual-fisheye" / f"{f.stem}.jpg", equirect_to_dual_fisheye(pano, fisheye), quality)
    for p in projs:
        write_text_atomic(root / f"frames_{p}.csv", frames_csv_text(frames, traversal, p))
    csv_path = root / "frames.csv"
    write_text_atomic(csv_path, frames_csv_text(frames, traversal, projs[0]))
    if recording:
        write_recording(frames, root / projs[0], root / "recording", traversal.spacing_m)
    return csv_path


def _resume_params(world: World, traversal: Traversal, projs: Sequence[str], width: int, height: int,
                   lens: Optional[AnnularLens], quality: int = 92) -> Dict[str, object]:
    """What decides a traversal's pixels (recorded in ``<traversal>/traversal.json``).

    The number of frames is left out: asking for more frames extends a drive. The JPEG quality is
    in: a drive is never resumed with another quality (its frames would mix two).
    """
    drive = traversal.to_dict()
    drive.pop("n_frames")
    return {
        "world": world.config.to_dict(),
        "traversal": drive,
        "equirect": [int(width), int(height)],
        "lens": lens.to_dict() if ("annular" in projs and lens is not None) else None,
        "quality": int(quality),
    }


def _check_resume(path: Path, params: Dict[str, object], write: bool, check: bool = True) -> None:
    """Refuse to resume into a folder rendered with other parameters (unless not ``check``);
    record them if ``write``. A record without ``quality`` (older versions) accepts any."""
    params = json.loads(json.dumps(params))  # normalise tuples/floats as JSON would
    if check and path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = None
        if isinstance(old, dict):
            for key in ("world", "traversal", "equirect"):
                if old.get(key) != params.get(key):
                    raise InputError(
                        f"{path.parent} holds frames rendered with another {key} configuration; "
                        "use a new output folder, or --overwrite to render it again"
                    )
            if old.get("quality") is not None and old.get("quality") != params.get("quality"):
                raise InputError(
                    f"{path.parent} holds frames written with JPEG quality {old['quality']}, not "
                    f"{params.get('quality')}; resume with --quality {old['quality']}, or --overwrite to render "
                    "it again")
            if params.get("lens") is not None and old.get("lens") not in (None, params["lens"]):
                raise InputError(f"{path.parent} holds annular frames of another lens; use a new output folder")
            if params.get("lens") is None:
                params["lens"] = old.get("lens")
    if write:
        write_text_atomic(path, json.dumps(params, indent=2) + "\n")


def world_json(world: World, traversals: Sequence[Traversal], projections: Sequence[str], width: int, height: int,
               lens: Optional[AnnularLens]) -> Dict[str, object]:
    """Everything needed to reproduce a synthetic dataset, as a JSON-able dict."""
    return {
        "format": "panoplace-synth",
        "format_version": 1,
        "seed": world.config.seed,
        "world": world.describe(),
        "traversals": [t.to_dict() for t in traversals],
        "projections": list(projections),
        "equirect": {
            "width": int(width),
            "height": int(height),
            "convention": "column j looks at bearing heading + (j + 0.5) * 360 / W (clockwise); "
                          "row i at elevation 90 - (i + 0.5) * 180 / H",
        },
        "lens": lens.to_dict() if lens is not None else None,
        "csv": {
            "columns": list(CSV_COLUMNS),
            "heading": "compass bearing (deg, clockwise from north) of panorama column 0",
            "xy": "metres east/north of the world origin (origin_lat, origin_lon)",
        },
    }


def render_world(
    world: World,
    traversals: Sequence[Traversal],
    out_dir: Union[str, Path],
    projections: Sequence[str] = ("equirect",),
    width: int = 1024,
    height: int = 512,
    n_frames: Optional[int] = None,
    lens: Optional[AnnularLens] = None,
    quality: int = 92,
    progress: bool = True,
    recording: bool = False,
    overwrite: bool = False,
) -> Dict[str, Path]:
    """Write ``world.json`` and render every traversal; returns ``{name: frames.csv}``.

    recording: also write each traversal as a video + GPX track (:func:`write_recording`).
    overwrite: render every frame again (see :func:`render_traversal`)."""
    projs = check_projections(projections)
    check_size(width, height)
    names = [t.name for t in traversals]
    if not names:
        raise InputError("need at least one traversal")
    if len(set(names)) != len(names):
        raise InputError(f"traversal names must be unique, got {names}")
    if "annular" in projs and lens is None:
        lens = AnnularLens.for_size(int(height) * 2)
    out = Path(out_dir)
    for t in traversals:  # refuse before touching anything
        _check_resume(out / t.name / "traversal.json", _resume_params(world, t, projs, width, height, lens, quality),
                      write=False, check=not overwrite)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "world.json", json.dumps(world_json(world, traversals, projs, width, height, lens), indent=2) + "\n")
    result: Dict[str, Path] = {}
    for t in traversals:
        result[t.name] = render_traversal(world, t, out, projs, width, height, n_frames, lens, quality, progress,
                                          recording, overwrite)
        log.info("traversal %s written to %s", t.name, result[t.name])
    return result
