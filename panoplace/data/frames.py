"""Image sets (traverses) and the panoplace CSV format.

An :class:`ImageSet` is an ordered list of frames: image paths relative to a root folder plus,
when known, metric positions, lat/lon, heading, timestamp and tags.

panoplace CSV (one row per image, header required)::

    image,lat,lon,heading,timestamp,sequence,condition,scene
    day/000001.jpg,48.13712,11.57540,90.0,1.5,run1,day,street

``image`` is relative to the CSV's folder. Positions are either ``lat,lon`` (WGS84 degrees,
converted to UTM metres) or ``x,y`` (metres in any local frame); when both are present ``x,y``
is the metric position and ``lat,lon`` is kept as is. All other columns are optional; an empty
cell in ``heading``/``timestamp`` means unknown (NaN).

Lat/lon → metres: every point of a set is projected into the UTM zone of the *first* point
(``utm.from_latlon`` with the zone forced), so distances stay consistent across a zone border.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import utm

from panoplace.atomic import atomic_path
from panoplace.errors import DatasetError
from panoplace.panorama.imagefiles import IMAGE_EXTENSIONS, is_image_file
from panoplace.textfiles import read_text

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
UtmZone = Tuple[int, str]

TAG_COLUMNS = ("sequence", "condition", "scene")


def natural_key(name: str) -> Tuple:
    """Sort key that orders embedded numbers numerically (``2.jpg`` before ``10.jpg``)."""
    return tuple(int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name))


def list_image_files(folder: PathLike, recursive: bool = False) -> List[str]:
    """Image files in ``folder`` (relative POSIX paths), in natural order.

    Raises :class:`DatasetError` when the folder does not exist or holds no image.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"image folder not found: {folder}")
    it = folder.rglob("*") if recursive else folder.iterdir()
    files = [p.relative_to(folder).as_posix() for p in it
             if p.is_file() and is_image_file(p)]
    if not files:
        raise DatasetError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {folder}")
    return sorted(files, key=natural_key)


def latlon_to_xy(latlon: np.ndarray, zone: Optional[UtmZone] = None) -> Tuple[np.ndarray, UtmZone]:
    """Project WGS84 lat/lon to UTM east/north metres, all in one zone.

    Args:
        latlon: ``(N, 2)`` degrees (lat, lon), N >= 1.
        zone: (zone number, zone letter) to force; None = the zone of the first point.

    Returns:
        ``xy`` ``(N, 2)`` float64 metres (east, north) and the zone used.
    """
    latlon = np.asarray(latlon, dtype=np.float64).reshape(-1, 2)
    if len(latlon) == 0:
        return np.zeros((0, 2)), zone or (0, "N")
    lat, lon = latlon[:, 0], latlon[:, 1]
    bad = (np.abs(lat) > 84.0) | (np.abs(lon) > 180.0) | ~np.isfinite(latlon).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DatasetError(f"lat/lon out of the UTM range at row {i}: {tuple(latlon[i])}")
    if zone is None:
        _, _, number, letter = utm.from_latlon(float(lat[0]), float(lon[0]))
        zone = (int(number), str(letter))
    east, north, _, _ = utm.from_latlon(lat, lon, force_zone_number=zone[0], force_zone_letter=zone[1])
    return np.stack([np.asarray(east, np.float64), np.asarray(north, np.float64)], axis=1), zone


@dataclass
class ImageSet:
    """An ordered set of images (one traverse) with optional positions and tags.

    name: a short label (e.g. the folder or CSV name).
    root: folder the ``paths`` are relative to.
    paths: N image paths relative to ``root`` (POSIX separators).
    xy: ``(N, 2)`` float64 metric positions (UTM east/north or local metres) or None.
    latlon: ``(N, 2)`` float64 WGS84 degrees or None.
    heading: ``(N,)`` float64 degrees (NaN = unknown) or None.
    timestamp: ``(N,)`` float64 seconds (NaN = unknown) or None.
    sequence, condition, scene: N strings each, or None.
    """

    name: str
    root: Path
    paths: List[str]
    xy: Optional[np.ndarray] = None
    latlon: Optional[np.ndarray] = None
    heading: Optional[np.ndarray] = None
    timestamp: Optional[np.ndarray] = None
    sequence: Optional[List[str]] = None
    condition: Optional[List[str]] = None
    scene: Optional[List[str]] = None

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.paths = [str(p) for p in self.paths]
        n = len(self.paths)
        for name, cols in (("xy", 2), ("latlon", 2), ("heading", 0), ("timestamp", 0)):
            value = getattr(self, name)
            if value is None:
                continue
            arr = np.asarray(value, dtype=np.float64)
            want = (n, cols) if cols else (n,)
            if arr.shape != want:
                raise DatasetError(f"image set {self.name!r}: {name} has shape {arr.shape}, expected {want}")
            setattr(self, name, arr)
        for name in TAG_COLUMNS:
            value = getattr(self, name)
            if value is None:
                continue
            value = [str(v) for v in value]
            if len(value) != n:
                raise DatasetError(f"image set {self.name!r}: {len(value)} {name} values for {n} images")
            setattr(self, name, value)

    def __len__(self) -> int:
        return len(self.paths)

    def abs_paths(self) -> List[Path]:
        """Absolute (root-joined) paths of the N images."""
        return [self.root / p for p in self.paths]

    @property
    def has_positions(self) -> bool:
        return self.xy is not None

    def require_positions(self, why: str = "this operation") -> np.ndarray:
        """Return ``xy`` ``(N, 2)`` or raise :class:`DatasetError` saying it is needed."""
        if self.xy is None:
            raise DatasetError(f"image set {self.name!r} has no positions (x,y or lat,lon), needed for {why}")
        return self.xy

    def subset(self, index: Sequence[int]) -> "ImageSet":
        """The frames at ``index`` (an int sequence or boolean mask), in that order."""
        idx = np.asarray(index)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64)

        def pick(v: Any) -> Any:  # an array, a list or None, subset alike
            if v is None:
                return None
            return v[idx] if isinstance(v, np.ndarray) else [v[i] for i in idx]

        return ImageSet(self.name, self.root, [self.paths[i] for i in idx], pick(self.xy),
                        pick(self.latlon), pick(self.heading), pick(self.timestamp),
                        pick(self.sequence), pick(self.condition), pick(self.scene))

    def index_of(self) -> Dict[str, int]:
        """Map image path → row (first occurrence)."""
        out: Dict[str, int] = {}
        for i, p in enumerate(self.paths):
            out.setdefault(p, i)
        return out

    def rows_for(self, ids: Sequence[str]) -> np.ndarray:
        """Rows of this set for image ids (e.g. the ids of a descriptor store).

        An id matches a path exactly (after ``\\`` → ``/``) or, failing that, by file name when
        file names are unique in the set.

        Returns:
            ``(len(ids),)`` int64 rows.

        Raises:
            DatasetError: naming the first id that is not in the set.
        """
        exact = self.index_of()
        names: Dict[str, int] = {}
        dup = set()
        for i, p in enumerate(self.paths):
            n = p.rsplit("/", 1)[-1]
            if n in names:
                dup.add(n)
            names.setdefault(n, i)
        rows = np.empty(len(ids), dtype=np.int64)
        for j, raw in enumerate(ids):
            key = str(raw).replace("\\", "/")
            row = exact.get(key)
            if row is None:
                base = key.rsplit("/", 1)[-1]
                row = names.get(base) if base not in dup else None
            if row is None:
                raise DatasetError(f"image id {raw!r} is not in dataset {self.name!r} ({len(self)} images under {self.root})")
            rows[j] = row
        return rows


def _parse_float_column(rows: List[Dict[str, str]], col: str, path: Path, required: bool) -> np.ndarray:
    """Column ``col`` as float64; empty cells are NaN unless ``required``."""
    values = np.empty(len(rows), dtype=np.float64)
    for i, row in enumerate(rows):
        cell = (row.get(col) or "").strip()
        if not cell:
            if required:
                raise DatasetError(f"{path}: empty {col!r} at data row {i + 1} ({row.get('image', '')})")
            values[i] = np.nan
            continue
        try:
            values[i] = float(cell)
        except ValueError:
            raise DatasetError(f"{path}: {col!r} at data row {i + 1} is not a number: {cell!r}") from None
    return values


def load_csv(path: PathLike, name: Optional[str] = None) -> ImageSet:
    """Read a panoplace CSV (see the module docstring) into an :class:`ImageSet`.

    Raises:
        DatasetError: the file is missing, has no ``image`` column, has only one of a
            ``lat``/``lon`` or ``x``/``y`` pair, or has a non-numeric position.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"dataset CSV not found: {path}")
    reader = csv.DictReader(io.StringIO(read_text(path, "dataset CSV"), newline=""))
    try:
        header = [h.strip() for h in (reader.fieldnames or [])]
        reader.fieldnames = header
        rows = list(reader)
    except csv.Error as exc:
        raise DatasetError(f"{path} is not a readable CSV: {exc}") from None
    if "image" not in header:
        raise DatasetError(f"{path}: missing column 'image' (columns: {header})")
    for a, b in (("lat", "lon"), ("x", "y")):
        if (a in header) != (b in header):
            missing = b if a in header else a
            raise DatasetError(f"{path}: missing column {missing!r} (it comes with {a!r}/{b!r})")
    paths = []
    for i, row in enumerate(rows):
        p = (row.get("image") or "").strip()
        if not p:
            raise DatasetError(f"{path}: empty 'image' at data row {i + 1}")
        paths.append(p.replace("\\", "/"))
    latlon = xy = None
    if "lat" in header:
        latlon = np.stack([_parse_float_column(rows, c, path, True) for c in ("lat", "lon")], axis=1)
    if "x" in header:
        xy = np.stack([_parse_float_column(rows, c, path, True) for c in ("x", "y")], axis=1)
    elif latlon is not None:
        xy, zone = latlon_to_xy(latlon)
        log.debug("%s: lat/lon projected to UTM zone %d%s", path.name, *zone)
    if xy is None:
        log.debug("%s has no position columns (lat,lon or x,y)", path)
    heading = _parse_float_column(rows, "heading", path, False) if "heading" in header else None
    timestamp = _parse_float_column(rows, "timestamp", path, False) if "timestamp" in header else None
    tags = {c: [(row.get(c) or "").strip() for row in rows] if c in header else None for c in TAG_COLUMNS}
    return ImageSet(name or path.stem, path.parent, paths, xy, latlon, heading, timestamp, **tags)


def _fmt(v: float) -> str:
    return "" if not np.isfinite(v) else repr(float(v))


def write_csv(imageset: ImageSet, path: PathLike) -> Path:
    """Write ``imageset`` as a panoplace CSV, atomically (temp file + rename).

    Image paths are written relative to the CSV's folder. Columns written: ``image``, ``x,y``
    when positions are known, ``lat,lon`` when known, then ``heading``, ``timestamp`` and the
    tag columns that are set. Floats are written with full precision, so
    ``load_csv(write_csv(s, p))`` gives back the same values.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent.resolve()
    root = imageset.root.resolve()
    if root == base:
        rel = list(imageset.paths)
    else:
        rel = [Path(os.path.relpath(root / p, base)).as_posix() for p in imageset.paths]
    cols: List[Tuple[str, Sequence]] = [("image", rel)]
    if imageset.xy is not None:
        cols += [("x", [_fmt(v) for v in imageset.xy[:, 0]]), ("y", [_fmt(v) for v in imageset.xy[:, 1]])]
    if imageset.latlon is not None:
        cols += [("lat", [_fmt(v) for v in imageset.latlon[:, 0]]),
                 ("lon", [_fmt(v) for v in imageset.latlon[:, 1]])]
    for name in ("heading", "timestamp"):
        v = getattr(imageset, name)
        if v is not None:
            cols.append((name, [_fmt(x) for x in v]))
    for name in TAG_COLUMNS:
        v = getattr(imageset, name)
        if v is not None:
            cols.append((name, v))
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow([c for c, _ in cols])
            w.writerows(zip(*[v for _, v in cols]))
    return path
