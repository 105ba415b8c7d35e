"""Training and validation data: a database traverse + query traverses with positions.

A :class:`PlaceSplit` is what training and validation work on. Splits are made *by traverse*
(different CSVs / sequences for training and validation: :func:`load_split`) or *by area*
(:func:`split_by_area`), never by random frame: two frames a metre apart on the same traverse
are nearly the same image, so a random split would validate on the training images.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np

from panoplace.data.dataset import load_dataset
from panoplace.data.frames import ImageSet, latlon_to_xy
from panoplace.errors import DatasetError, InputError

log = logging.getLogger(__name__)

PathLike = Union[str, Path]


@dataclass
class PlaceSplit:
    """Database images and query images with metric positions in one frame.

    database: the map traverse(s), ``xy`` required. queries: the query traverse(s), ``xy``
    required; they may be the database images themselves (a frame is never its own positive).
    """

    database: ImageSet
    queries: ImageSet

    def __post_init__(self) -> None:
        for what, s in (("database", self.database), ("queries", self.queries)):
            s.require_positions(f"training ({what})")
            if len(s) == 0:
                raise DatasetError(f"the {what} image set {s.name!r} is empty")

    @property
    def name(self) -> str:
        return f"{self.database.name}->{self.queries.name}"

    def same_frame(self) -> np.ndarray:
        """Database index of the same image file as each query, ``-1`` for none. ``(Q,)`` int64."""
        db = {os.path.normpath(str(p.resolve())): i for i, p in enumerate(self.database.abs_paths())}
        return np.fromiter((db.get(os.path.normpath(str(p.resolve())), -1) for p in self.queries.abs_paths()),
                           dtype=np.int64, count=len(self.queries))

    def fingerprint(self) -> str:
        """16 hex digits identifying the image lists (to refuse resuming on other data)."""
        h = hashlib.sha256()
        for s in (self.database, self.queries):
            h.update(str(s.root.resolve()).encode())
            for p in s.paths:
                h.update(b"\0" + p.encode())
            h.update(b"\1")
        return h.hexdigest()[:16]


def common_frame(sets: Sequence[ImageSet]) -> None:
    """Put all ``sets`` into one metric frame, in place: when every set has lat/lon, all are
    projected into the UTM zone of the first set's first image (each CSV is otherwise projected
    into its own first image's zone)."""
    latlons = [s.latlon for s in sets if s.latlon is not None and len(s)]
    if sets and len(latlons) == len(sets):
        _, zone = latlon_to_xy(latlons[0][:1])
        for s, latlon in zip(sets, latlons):
            s.xy, _ = latlon_to_xy(latlon, zone)


def concat_image_sets(sets: Sequence[ImageSet], name: Optional[str] = None) -> ImageSet:
    """One image set of several (e.g. query traverses under different conditions), rooted at
    their common folder. Positions, headings, timestamps and tags are kept where all sets have
    them. Call :func:`common_frame` first when the sets come from different lat/lon files."""
    if not sets:
        raise InputError("no image sets to join")
    if len(sets) == 1:
        return sets[0]
    roots = [s.root.resolve() for s in sets]
    try:
        root = Path(os.path.commonpath([str(r) for r in roots]))
    except ValueError:
        raise DatasetError(f"image sets on different drives cannot be joined: {roots}") from None
    paths = [Path(os.path.relpath(r / p, root)).as_posix() for s, r in zip(sets, roots) for p in s.paths]

    def join(attr: str) -> Any:  # an array, a list or None, concatenated alike
        values = [getattr(s, attr) for s in sets]
        if any(v is None for v in values):
            return None
        return np.concatenate(values) if isinstance(values[0], np.ndarray) else [x for v in values for x in v]

    return ImageSet(name or "+".join(s.name for s in sets), root, paths, join("xy"), join("latlon"),
                    join("heading"), join("timestamp"), join("sequence"), join("condition"), join("scene"))


def _load_sets(specs: Sequence[PathLike]) -> List[Tuple[ImageSet, Optional[ImageSet]]]:
    out = []
    for spec in specs:
        ds = load_dataset(spec)
        out.append((ds.database, ds.queries))
    return out


def load_split(database_specs: Sequence[PathLike], query_specs: Sequence[PathLike] = ()) -> PlaceSplit:
    """A :class:`PlaceSplit` from dataset specs (see :func:`panoplace.data.load_dataset`).

    Args:
        database_specs: one or more specs whose database sets are joined into the map. When
            ``query_specs`` is empty, a single spec that also holds queries (a Pittsburgh
            ``.mat``, an @UTM ``database/ + queries/`` folder, ``pair:DB,QUERY``) gives both.
        query_specs: specs whose database sets are the query traverses (joined).

    Raises:
        DatasetError: a set without positions, or no queries.
    """
    if not database_specs:
        raise InputError("no database traverse given")
    dbs = _load_sets(database_specs)
    if query_specs:
        queries = [db for db, _ in _load_sets(query_specs)]
    else:
        if len(dbs) != 1 or dbs[0][1] is None:
            raise DatasetError("give the query traverse(s) as well: only dataset specs that hold both a "
                               "database and queries (.mat, @UTM database/+queries/, pair:DB,QUERY) can stand alone")
        queries = [dbs[0][1]]
    databases = [db for db, _ in dbs]
    common_frame(databases + queries)
    return PlaceSplit(concat_image_sets(databases), concat_image_sets(queries))


def split_by_area(split: PlaceSplit, train_fraction: float = 0.8, gap: float = 25.0,
                  axis: Optional[Sequence[float]] = None) -> Tuple[PlaceSplit, PlaceSplit]:
    """Split one :class:`PlaceSplit` into a training area and a validation area.

    The positions are projected on ``axis`` (default: the principal axis of all positions).
    Frames below the ``train_fraction`` quantile of the query projections train; frames more
    than ``gap`` metres beyond it validate; frames in the gap belong to neither, so that no
    validation place is within ``gap`` of a training place along the axis.

    Raises:
        InputError: ``train_fraction`` outside ``(0, 1)``.
        DatasetError: an area without database images or queries.
    """
    if not 0.0 < train_fraction < 1.0:
        raise InputError(f"train_fraction must be in (0, 1), got {train_fraction}")
    if gap < 0:
        raise InputError(f"gap must be >= 0 metres, got {gap}")
    db_xy, q_xy = split.database.xy, split.queries.xy
    if axis is None:
        allxy = np.concatenate([db_xy, q_xy])
        centred = allxy - allxy.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        a = vt[0]
    else:
        a = np.asarray(axis, dtype=np.float64).reshape(2)
        if not np.linalg.norm(a) > 0:
            raise InputError(f"axis must be a non-zero 2D vector, got {axis}")
        a = a / np.linalg.norm(a)
    t = float(np.quantile(q_xy @ a, train_fraction))
    parts = []
    for keep in (lambda v: v < t, lambda v: v >= t + gap):
        db = split.database.subset(keep(db_xy @ a))
        q = split.queries.subset(keep(q_xy @ a))
        if len(db) == 0 or len(q) == 0:
            raise DatasetError(f"splitting by area at {train_fraction:.0%} with a {gap:g} m gap leaves an area "
                               f"with {len(db)} database images and {len(q)} queries; use another fraction")
        parts.append(PlaceSplit(db, q))
    log.info("area split: train %d db / %d queries, validation %d db / %d queries (gap %g m)",
             len(parts[0].database), len(parts[0].queries), len(parts[1].database), len(parts[1].queries), gap)
    return parts[0], parts[1]
