"""One entry point for every dataset format: :func:`load_dataset` and :func:`load_pair`.

Dataset spec syntax (a string, e.g. a CLI argument)::

    [KIND:]PATH[,PATH...][,key=value...][,flag]

Without ``KIND`` the format is detected from a single path:

=================================================  ============================================
path                                               format → result
=================================================  ============================================
``FILE.csv``                                       panoplace CSV → database only
``FILE.mat``                                       Pittsburgh / Tokyo 24/7 dbStruct → database,
                                                   queries, ground truth (radius ``posDistThr``)
folder with ``ground_truth_new.npy``               VPR-Bench (``ref/``, ``query/``) → all three
folder with ``GPS.txt``                            PAL / Yuquan traverse → database only
folder with ``database/`` and ``queries/``         ``@UTM`` names (CosPlace/gsv layout) → all
                                                   three, radius 25 m
folder of ``@east@north@...`` images               ``@UTM`` names → database only
folder with exactly one ``.csv``                   that CSV → database only
=================================================  ============================================

With two paths and no ``KIND``, or with ``pair:DB,QUERY``, both sides are loaded as above and
ground truth comes from positions (:func:`load_pair`). Explicit kinds:

- ``csv:FILE``, ``utm:DIR``, ``vprbench:DIR``, ``mat:FILE[,db_root=DIR][,query_root=DIR]``
- ``patchnetvlad:INDEX.txt,QUERY.txt,GT.npz[,root=DIR]``
- ``aligned:DIR_A,DIR_B[,tol=2][,reverse]`` (A = database, B = queries, images in natural name
  order; positives ± ``tol`` frames, default 2; ``reverse`` or ``reverse=true``: query i ↔
  database ``N-1-i``; ``reverse=false`` is parsed as false, not cast)
- ``pal:DB_DIR,QUERY_DIR`` (queries' ``Overlap.txt`` marks the valid ones)
- ``pair:DB,QUERY`` (each side any single-set spec path)

``radius=METRES`` (> 0) sets the positive radius wherever ground truth comes from positions
(default 25, or the file's own ``posDistThr``). An option that does nothing for the dataset's
kind (``radius`` for aligned folders or VPR-Bench, ``tol``/``reverse`` outside ``aligned``) is
refused, as are values out of range (``radius=0``, ``tol=-1``, ``reverse=maybe``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np

from panoplace.data import formats
from panoplace.data.frames import ImageSet, latlon_to_xy, load_csv
from panoplace.data.groundtruth import DEFAULT_RADIUS, GroundTruth
from panoplace.booleans import parse_bool
from panoplace.errors import DatasetError, InputError

log = logging.getLogger(__name__)

PathLike = Union[str, Path]

KINDS = ("csv", "mat", "utm", "vprbench", "patchnetvlad", "aligned", "pal", "pair")


def _positive_metres(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(text)
    return value


def _frames(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def _flag(text: str) -> bool:
    try:
        return parse_bool(text)
    except InputError:
        raise ValueError(text) from None


# option -> (parser, what a valid value is)
_OPTIONS: Dict[str, Tuple[Callable[[str], Any], str]] = {
    "radius": (_positive_metres, "a number of metres > 0"), "tol": (_frames, "a number of frames >= 0"),
    "tolerance": (_frames, "a number of frames >= 0"),
    "reverse": (_flag, "a boolean (true/false, yes/no, on/off, 1/0)"),
    "db_root": (str, "a path"), "query_root": (str, "a path"), "root": (str, "a path"),
}
# the kinds each option changes something for (given with another kind it is refused)
_OPTION_KINDS = {
    "radius": ("utm-pair", "mat", "patchnetvlad", "pair", "pal"),
    "tol": ("aligned",), "reverse": ("aligned",),
    "db_root": ("mat",), "query_root": ("mat",), "root": ("patchnetvlad",),
}


@dataclass
class Dataset:
    """A database (the map), optionally queries and the ground truth between them.

    database: the N mapped images. queries: Q query images or None.
    ground_truth: :class:`GroundTruth` (Q queries against N) or None.
    radius: metres, when the ground truth comes from positions.
    """

    database: ImageSet
    queries: Optional[ImageSet] = None
    ground_truth: Optional[GroundTruth] = None
    radius: Optional[float] = None

    def __post_init__(self) -> None:
        if self.ground_truth is not None:
            if self.queries is None:
                raise DatasetError("a dataset with ground truth needs a query set")
            self.ground_truth.check_sizes(len(self.queries), len(self.database))


@dataclass
class DatasetSpec:
    """A parsed dataset spec: ``kind`` (None = detect), ``paths`` and ``options``."""

    kind: Optional[str]
    paths: List[str]
    options: Dict[str, Any]  # values already cast by _OPTIONS (radius float, tol int, roots str, reverse bool)


def parse_spec(spec: Union[str, Path]) -> DatasetSpec:
    """Split ``[KIND:]PATH[,PATH...][,key=value...][,flag]`` (see the module docstring)."""
    if isinstance(spec, Path):
        return DatasetSpec(None, [str(spec)], {})
    text = str(spec).strip()
    if not text:
        raise DatasetError("empty dataset spec")
    kind: Optional[str] = None
    head, sep, rest = text.partition(":")
    if sep and head.lower() in KINDS:
        kind, text = head.lower(), rest
    if Path(text).exists():  # a path that itself contains commas
        return DatasetSpec(kind, [text], {})
    paths: List[str] = []
    options: Dict[str, Any] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, eq, value = part.partition("=")
        if eq and key in _OPTIONS:
            caster, valid = _OPTIONS[key]
            try:
                options["tol" if key == "tolerance" else key] = caster(value)
            except ValueError:
                raise DatasetError(f"dataset option {key}={value!r}: must be {valid}") from None
        elif eq and "/" not in key and not Path(part).exists():
            raise DatasetError(f"unknown dataset option {key!r}; valid options: {sorted(_OPTIONS)}")
        elif part in ("reverse", "reversed"):
            options["reverse"] = True
        else:
            paths.append(part)
    if not paths:
        raise DatasetError(f"dataset spec {spec!r} names no path")
    return DatasetSpec(kind, paths, options)


def _check_options(options: Dict[str, Any], kind: str) -> None:
    """Refuse options that would change nothing for a dataset of ``kind`` (e.g. ``radius`` where
    the ground truth is not made from positions, ``reverse`` outside ``aligned``)."""
    for key in options:
        kinds = _OPTION_KINDS.get(key, ())
        if kind not in kinds:
            raise DatasetError(f"dataset option {key} does nothing for a {kind} dataset "
                               f"(it applies to: {', '.join(kinds)})")


def _need(spec: DatasetSpec, n: int, usage: str) -> None:
    if len(spec.paths) != n:
        raise DatasetError(f"{spec.kind}: expects {usage}, got {len(spec.paths)} path(s): {spec.paths}")


def _load_single(path: Path, kind: Optional[str] = None) -> Tuple[ImageSet, Optional[np.ndarray]]:
    """One image set from a path: ``(imageset, on_route mask or None)``."""
    if not path.exists():
        raise DatasetError(f"dataset not found: {path}")
    if kind is None:
        if path.is_file():
            if path.suffix.lower() == ".csv":
                kind = "csv"
            else:
                raise DatasetError(
                    f"cannot load {path} as one image set: expected a .csv file or a folder "
                    f"(PAL with GPS.txt, @UTM-named images, or one CSV)"
                )
        else:
            kind = formats.folder_kind(path)
    if kind == "csv":
        if path.is_dir():
            path = next(p for p in path.iterdir() if p.suffix.lower() == ".csv")
        return load_csv(path), None
    if kind == "pal":
        return formats.load_pal_folder(path)
    if kind == "utm":
        return formats.load_utm_folder(path), None
    raise DatasetError(
        f"cannot tell the format of {path} as one image set: looked for a .csv file, a folder "
        f"with {formats.PAL_GPS}, a folder of @utm_east@utm_north@ images, or a folder with one .csv"
    )


def _same_metric_frame(database: ImageSet, queries: ImageSet) -> Tuple[np.ndarray, np.ndarray]:
    """Metric positions of both sets in one frame: when both have lat/lon, both are projected
    into the UTM zone of the first database point (two CSVs may start in different zones)."""
    db_xy = database.require_positions("ground truth from positions")
    q_xy = queries.require_positions("ground truth from positions")
    if database.latlon is not None and queries.latlon is not None and len(database):
        db_xy, zone = latlon_to_xy(database.latlon)
        q_xy, _ = latlon_to_xy(queries.latlon, zone)
        database.xy, queries.xy = db_xy, q_xy
    return db_xy, q_xy


def _positives(database: ImageSet, queries: ImageSet, radius: float) -> GroundTruth:
    return GroundTruth.from_positions(database.require_positions("ground truth"),
                                      queries.require_positions("ground truth"), radius)


def load_pair(db_spec: Union[str, Path], query_spec: Union[str, Path],
              radius: float = DEFAULT_RADIUS) -> Dataset:
    """Database and queries from two single-set specs (CSV, PAL folder, @UTM folder, a folder
    with one CSV); positives within ``radius`` metres. A PAL query folder's ``Overlap.txt``
    marks the valid queries.

    Raises:
        DatasetError: a side is missing or has no positions.
    """
    database, _ = _load_single(Path(db_spec))
    queries, on_route = _load_single(Path(query_spec))
    db_xy, q_xy = _same_metric_frame(database, queries)
    gt = GroundTruth.from_positions(db_xy, q_xy, radius=radius, valid=on_route)
    return Dataset(database, queries, gt, radius)


def load_dataset(spec: Union[str, Path]) -> Dataset:
    """Load any supported dataset from a spec string or path (syntax: module docstring).

    Returns:
        :class:`Dataset`; ``queries`` and ``ground_truth`` are None for single-set formats.

    Raises:
        DatasetError: the path is missing, the format cannot be recognised (the message lists
            what was looked for), or a file/field/column is missing.
    """
    s = parse_spec(spec)
    opts = s.options
    kind = s.kind
    radius_opt = opts.get("radius")
    if kind is None and len(s.paths) == 2:
        kind = "pair"
    if kind is None:
        path = Path(s.paths[0])
        if not path.exists():
            raise DatasetError(f"dataset not found: {path}")
        if path.is_file():
            suffix = path.suffix.lower()
            kind = {".csv": "csv", ".mat": "mat"}.get(suffix)
            if kind is None:
                raise DatasetError(
                    f"cannot tell the dataset format of {path}: expected .csv or .mat, a folder, "
                    f"or a KIND: prefix ({', '.join(KINDS)})"
                )
        else:
            kind = formats.folder_kind(path)
            if kind is None:
                raise DatasetError(
                    f"cannot tell the dataset format of folder {path}: looked for "
                    f"{formats.VPRBENCH_GT} (VPR-Bench), {formats.PAL_GPS} (PAL), database/ + queries/ "
                    f"(@UTM names), images named @utm_east@utm_north@..., or one .csv; for "
                    f"index-aligned folders use aligned:DIR_A,DIR_B[,tol=2][,reverse]"
                )
    if kind == "utm" and len(s.paths) == 1 and formats.folder_kind(Path(s.paths[0])) == "utm-pair":
        kind = "utm-pair"
    _check_options(opts, kind)
    if kind in ("csv", "utm") or (kind == "pal" and len(s.paths) == 1):
        _need(s, 1, "one path")
        imageset, _ = _load_single(Path(s.paths[0]), kind)
        return Dataset(imageset)
    if kind == "utm-pair":
        root = Path(s.paths[0])
        radius = DEFAULT_RADIUS if radius_opt is None else float(radius_opt)
        database = formats.load_utm_folder(root / "database", name=f"{root.name}_database")
        queries = formats.load_utm_folder(root / "queries", name=f"{root.name}_queries")
        return Dataset(database, queries, _positives(database, queries, radius), radius)
    if kind == "mat":
        _need(s, 1, "one .mat file")
        database, queries, radius = formats.load_pittsburgh_mat(
            s.paths[0], db_root=opts.get("db_root"), query_root=opts.get("query_root"))
        radius = float(radius if radius_opt is None else radius_opt)
        return Dataset(database, queries, _positives(database, queries, radius), radius)
    if kind == "patchnetvlad":
        _need(s, 3, "INDEX.txt,QUERY.txt,GT.npz")
        database, queries, radius = formats.load_patchnetvlad(s.paths[0], s.paths[1], s.paths[2], root=opts.get("root"))
        radius = float(radius if radius_opt is None else radius_opt)
        return Dataset(database, queries, _positives(database, queries, radius), radius)
    if kind == "vprbench":
        _need(s, 1, "one folder")
        return Dataset(*formats.load_vprbench(s.paths[0]))
    if kind == "aligned":
        _need(s, 2, "DIR_A,DIR_B (database, queries)")
        database, queries, gt = formats.load_aligned(
            s.paths[0], s.paths[1], tolerance=int(opts.get("tol", 2)), reverse=opts.get("reverse", False) is True)
        return Dataset(database, queries, gt)
    if kind in ("pair", "pal"):
        _need(s, 2, "DB,QUERY")
        for p in s.paths:
            if kind == "pal" and not (Path(p) / formats.PAL_GPS).is_file():
                raise DatasetError(f"PAL traverse {p}: missing {formats.PAL_GPS}")
        return load_pair(s.paths[0], s.paths[1],
                         radius=DEFAULT_RADIUS if radius_opt is None else float(radius_opt))
    raise DatasetError(f"unknown dataset kind {kind!r}; choose one of {list(KINDS)}")
