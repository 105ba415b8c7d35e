"""A map folder: everything needed to localise images against one mapped traverse.

``panoplace map build`` writes it from images with positions; ``panoplace serve`` opens it.
Layout (all files written atomically; ``map.json`` last, so a folder without it is unfinished)::

    MAP_DIR/
      map.json          manifest: format, version, frame count, pipeline config, fingerprint
      model.pt          the model checkpoint, carrying the panorama config the map was made with
                        (for annular maps the calibrated annulus)
      descriptors.h5    descriptor store of the map's images (``panoplace extract``'s format)
      index.h5          faiss index over them (``panoplace index``'s format)
      frames.csv        one row per index row, in index order: image (the thumbnail), x, y,
                        lat, lon, heading, timestamp (when known), in panoplace's CSV format
      thumbs/NNNNNN.jpg a small JPEG per frame (the panorama band for panoramic maps)

Building resumes: the descriptor extraction resumes through ``descriptors.h5.part`` and
existing thumbnails are kept. A folder that already holds a finished map is refused (it is
never overwritten).
"""

from __future__ import annotations

import json
import shutil
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Union

import cv2
import numpy as np
from tqdm.auto import tqdm

from panoplace import __version__
from panoplace.atomic import write_text_atomic
from panoplace.config import PanoramaConfig, PipelineConfig
from panoplace.data.frames import ImageSet, load_csv, write_csv
from panoplace.decode import decode_image
from panoplace.errors import InputError
from panoplace.extract import extract, load_model
from panoplace.index import PlaceIndex, build_index, load_index, save_index
from panoplace.models.checkpoint import load_checkpoint, save_checkpoint
from panoplace.panorama.project import PanoramaProjector, write_image

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
MAP_FORMAT = "panoplace-map"
MAP_FORMAT_VERSION = 1
MANIFEST = "map.json"
MODEL_FILE = "model.pt"
STORE_FILE = "descriptors.h5"
INDEX_FILE = "index.h5"
FRAMES_FILE = "frames.csv"
THUMBS_DIR = "thumbs"
THUMB_WIDTH = 320


def thumbnail_name(row: int) -> str:
    """Path of the thumbnail of index row ``row``, relative to the map folder."""
    return f"{THUMBS_DIR}/{int(row):06d}.jpg"


def make_thumbnail(img: np.ndarray, projector: PanoramaProjector, width: int = THUMB_WIDTH) -> np.ndarray:
    """The image the way the model sees it (the panorama band, or the plain image), ``width``
    pixels wide.

    Shape: ``(H, W, 3)`` uint8 RGB -> ``(h, width, 3)`` uint8 RGB.
    """
    pano = projector.panorama(img)
    h = max(1, round(pano.shape[0] * width / pano.shape[1]))
    return cv2.resize(pano, (int(width), int(h)), interpolation=cv2.INTER_AREA)


def build_map(
    frames: PathLike,
    out: PathLike,
    checkpoint: Optional[PathLike] = None,
    pipeline: Optional[PipelineConfig] = None,
    model: Any = None,
    panorama: Optional[PanoramaConfig] = None,
    per_crop: bool = False,
    index_kind: str = "flat",
    name: Optional[str] = None,
    batch_size: int = 8,
    device: str = "auto",
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Build a map folder from a dataset CSV of images with positions.

    Args:
        frames: panoplace dataset CSV (``image`` plus ``x,y`` or ``lat,lon``; heading optional).
        out: the map folder to write (created; refused when it already holds a map).
        checkpoint / pipeline: the model, as for :func:`panoplace.extract.load_model`; or pass
            ``model`` and ``panorama`` directly.
        per_crop: store one descriptor per crop (fusion ``per-crop``), so that localisation
            re-ranks candidates under crop rotations and reports headings.
        index_kind: ``flat`` or ``ivfpq`` (see :mod:`panoplace.index`).
        name: the map's name (default: the output folder's name).
        overwrite: build again into a folder that holds a map (its manifest and thumbnails are
            removed first; an interrupted build resumes without it). Without it a partial build
            made with another model is refused, not resumed.

    Returns:
        the map folder.

    Raises:
        InputError: the CSV has no positions, ``out`` already holds a map or is inside the
            images' folder tree at the CSV itself.
    """
    frames = Path(frames)
    out = Path(out)
    if frames.suffix.lower() != ".csv":
        raise InputError(f"a map is built from a dataset CSV with positions (image,x,y or image,lat,lon), "
                         f"got {frames}")
    imageset = load_csv(frames)
    if len(imageset) == 0:
        raise InputError(f"{frames} lists no images")
    imageset.require_positions("a map")
    if (out / MANIFEST).exists() and not overwrite:
        raise InputError(f"{out} already holds a map; choose another --out or pass --overwrite")
    if out.resolve() == frames.parent.resolve():
        raise InputError(f"--out {out} is the folder of the input CSV; choose a new folder for the map")
    if overwrite and (out / MANIFEST).exists():
        (out / MANIFEST).unlink()
        shutil.rmtree(out / THUMBS_DIR, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    if model is None:
        model, panorama = load_model(checkpoint, pipeline)
    elif panorama is None:
        raise InputError("build_map: pass the panorama config together with the model")
    if per_crop and model.config.fusion != "per-crop":
        model.config.fusion = "per-crop"  # the same weights; fusion only decides the output shape
    result = extract(imageset.root, imageset.paths, model, panorama, out=out / STORE_FILE,
                     batch_size=batch_size, device=device, on_error="stop", progress=progress, overwrite=overwrite)
    store = result.descriptors
    used = PipelineConfig.from_dict(store.config).panorama  # calibrated when annular
    save_checkpoint(model.cpu(), out / MODEL_FILE, panorama=used)
    save_index(build_index(store, kind=index_kind), out / INDEX_FILE)
    rows = imageset.rows_for(store.ids)
    mapped = imageset.subset(rows.tolist())
    _write_thumbnails(mapped, out, PanoramaProjector(used), progress)
    table = ImageSet(mapped.name, out, [thumbnail_name(i) for i in range(len(mapped))], mapped.xy,
                     mapped.latlon, mapped.heading, mapped.timestamp, mapped.sequence, mapped.condition,
                     mapped.scene)
    write_csv(table, out / FRAMES_FILE)
    manifest = {
        "format": MAP_FORMAT,
        "format_version": MAP_FORMAT_VERSION,
        "panoplace_version": __version__,
        "name": name or out.resolve().name,
        "frames": len(mapped),
        "descriptor_shape": list(store.descriptors.shape[1:]),
        "index_kind": index_kind,
        "fingerprint": store.fingerprint,
        "config": store.config,
        "files": {"model": MODEL_FILE, "descriptors": STORE_FILE, "index": INDEX_FILE,
                  "frames": FRAMES_FILE, "thumbnails": THUMBS_DIR},
    }
    write_text_atomic(out / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    log.info("map of %d frames written to %s", len(mapped), out)
    return out


def _write_thumbnails(imageset: ImageSet, out: Path, projector: PanoramaProjector, progress: bool) -> None:
    for i, path in enumerate(tqdm(imageset.abs_paths(), desc="thumbnails", unit="img", disable=not progress,
                                  dynamic_ncols=True)):
        target = out / thumbnail_name(i)
        if target.exists():
            continue
        write_image(target, make_thumbnail(decode_image(path), projector), jpeg_quality=85)


@dataclass
class MapFolder:
    """An opened map folder.

    Attributes:
        root: the folder. manifest: ``map.json``'s content.
        model: the place model (eval mode, on the CPU). panorama: its panorama config.
        index: the :class:`PlaceIndex`. frames: the frames in index order (``paths`` are the
            thumbnails, relative to ``root``).
    """

    root: Path
    manifest: Dict[str, Any]
    model: Any
    panorama: PanoramaConfig
    index: PlaceIndex
    frames: ImageSet

    def __len__(self) -> int:
        return len(self.index)

    @property
    def name(self) -> str:
        return str(self.manifest.get("name", self.root.name))

    def thumbnail_path(self, row: int) -> Path:
        """File of the thumbnail of index row ``row`` (0 <= row < len(self))."""
        if not 0 <= int(row) < len(self):
            raise InputError(f"frame {row} is not in the map (0..{len(self) - 1})")
        return self.root / thumbnail_name(int(row))


def load_map(path: PathLike) -> MapFolder:
    """Open a map folder written by :func:`build_map`.

    Raises:
        InputError: not a map folder, an unfinished one, another format version, or files that
            disagree with each other.
    """
    root = Path(path)
    manifest_path = root / MANIFEST
    if not root.is_dir():
        raise InputError(f"map folder not found: {root}")
    if not manifest_path.is_file():
        raise InputError(f"{root} is not a finished map folder (no {MANIFEST}); build one with `panoplace map build`")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {manifest_path}: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MAP_FORMAT:
        raise InputError(f"{manifest_path} is not a panoplace map manifest")
    if manifest.get("format_version") != MAP_FORMAT_VERSION:
        raise InputError(f"{root}: map format version {manifest.get('format_version')} is not supported "
                         f"(this panoplace reads version {MAP_FORMAT_VERSION})")
    model, panorama = load_checkpoint(root / MODEL_FILE)
    index = load_index(root / INDEX_FILE)
    frames = load_csv(root / FRAMES_FILE, name=str(manifest.get("name") or root.name))
    if len(frames) != len(index):
        raise InputError(f"{root}: {FRAMES_FILE} has {len(frames)} rows but the index {len(index)}")
    if index.fingerprint != manifest.get("fingerprint"):
        raise InputError(f"{root}: the index was not made with this map's model (fingerprint differs)")
    if frames.xy is None:
        raise InputError(f"{root}: {FRAMES_FILE} has no positions")
    if panorama is None:
        panorama = PipelineConfig.from_dict(index.config).panorama
    return MapFolder(root, manifest, model.eval(), panorama, index, frames)
