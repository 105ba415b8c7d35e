"""Loaders of the dataset formats used in visual place recognition.

Each loader returns :class:`~panoplace.data.frames.ImageSet` objects (and ground truth where
the format carries it) and raises :class:`~panoplace.errors.DatasetError` naming the missing
file, field or column. :func:`panoplace.data.dataset.load_dataset` picks the loader from a path.

Formats:

- ``@UTM`` file names (deep-visual-geo-localization-benchmark, CosPlace, EigenPlaces):
  ``@utm_east@utm_north@utm_zone_number@utm_zone_letter@lat@lon@pano_id@tile_num@heading@pitch@roll@height@timestamp@note@.jpg``;
  fields 1 and 2 (east, north) are required, lat/lon (5, 6) and heading (9) are used when present.
- Pittsburgh / Tokyo 24/7 ``.mat`` dbStruct files (NetVLAD, pytorch-NetVlad): struct ``dbStruct``
  with ``whichSet``, ``dbImage``, ``utmDb`` (2, N), ``qImage``, ``utmQ`` (2, Q), ``numDb``,
  ``numQ``, ``posDistThr``, ``posDistSqThr``, ``nonTrivPosDistSqThr`` (MATLAB NetVLAD spelling
  ``dbImageFns``/``qImageFns``/``numImages``/``numQueries`` accepted too).
- Patch-NetVLAD: two text files (one image path per line, database "index" and query) and a
  ground-truth ``.npz`` with ``utmQ`` (Q, 2), ``utmDb`` (N, 2) and ``posDistThr``.
- VPR-Bench: a folder with ``ref/`` (database), ``query/`` and ``ground_truth_new.npy``, an object
  array ``(Q, 2)`` whose rows are ``[query_index, [correct ref indices]]``. An object array is a
  pickle inside the ``.npy``; :func:`read_npy` unpickles it with an unpickler that only knows
  numpy's array/dtype/scalar reconstruction (no other callable, so the file cannot run code).
- Index-aligned traverses (Nordland, Gardens Point; MOLP forward/backward when reversed):
  two folders whose i-th images (natural name order) show the same place.
- PAL / Yuquan: a folder of images with ``GPS.txt`` and, for a query traverse, ``Overlap.txt``
  (formats in :func:`read_gps_txt` and :func:`read_overlap_txt`).
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from scipy.io import loadmat

from panoplace.data.frames import (
    ImageSet,
    latlon_to_xy,
    list_image_files,
    natural_key,
)
from panoplace.data.groundtruth import GroundTruth
from panoplace.errors import DatasetError
from panoplace.textfiles import read_text

log = logging.getLogger(__name__)

PathLike = Union[str, Path]

# ---------------------------------------------------------------------------- @UTM names
_UTM_EAST, _UTM_NORTH, _LAT, _LON, _HEADING = 1, 2, 5, 6, 9


def _to_float(cell: str) -> float:
    try:
        return float(cell) if cell.strip() else np.nan
    except ValueError:
        return np.nan


def parse_utm_name(name: str) -> Tuple[float, float, float, float, float]:
    """Parse an ``@utm_east@utm_north@...`` file name.

    Returns:
        ``(east, north, lat, lon, heading)``; fields that are absent or empty are NaN.

    Raises:
        DatasetError: the name does not start with ``@east@north@`` numbers.
    """
    fields = Path(name).stem.split("@")
    if len(fields) < 3 or fields[0] != "":
        raise DatasetError(f"image name {name!r} is not of the form @utm_east@utm_north@...")
    try:
        east, north = float(fields[_UTM_EAST]), float(fields[_UTM_NORTH])
    except ValueError:
        raise DatasetError(f"image name {name!r}: UTM east/north (fields 1, 2) are not numbers") from None

    def get(i: int) -> float:
        return _to_float(fields[i]) if len(fields) > i else np.nan

    return east, north, get(_LAT), get(_LON), get(_HEADING)


def is_utm_name(name: str) -> bool:
    """Whether ``name`` looks like an ``@east@north@...`` file name."""
    try:
        parse_utm_name(name)
        return True
    except DatasetError:
        return False


def load_utm_folder(folder: PathLike, name: Optional[str] = None) -> ImageSet:
    """All images under ``folder`` (recursively) whose names carry ``@east@north@`` positions.

    Heading (field 9) and lat/lon (fields 5, 6) are kept when every image has them.
    """
    folder = Path(folder)
    paths = list_image_files(folder, recursive=True)
    parsed = np.array([parse_utm_name(p) for p in paths], dtype=np.float64).reshape(-1, 5)
    latlon = parsed[:, 2:4] if np.isfinite(parsed[:, 2:4]).all() else None
    heading = parsed[:, 4] if np.isfinite(parsed[:, 4]).all() else None
    return ImageSet(name or folder.name, folder, paths, xy=parsed[:, :2], latlon=latlon, heading=heading)


# ---------------------------------------------------------------------------- Pittsburgh .mat
_MAT_FIELDS: Dict[str, Tuple[str, ...]] = {
    "dbImage": ("dbImage", "dbImageFns"),
    "utmDb": ("utmDb",),
    "qImage": ("qImage", "qImageFns"),
    "utmQ": ("utmQ",),
    "posDistThr": ("posDistThr",),
}
_MAT_OPTIONAL: Dict[str, Tuple[str, ...]] = {
    "whichSet": ("whichSet",),
    "numDb": ("numDb", "numImages"),
    "numQ": ("numQ", "numQueries"),
}


def _mat_strings(arr: Any) -> List[str]:
    """A MATLAB cell array / char matrix of file names → list of str."""
    arr = np.asarray(arr)
    if arr.dtype.kind == "U":
        return [str(s).strip() for s in arr.reshape(-1)]
    out = []
    for e in arr.reshape(-1):
        e = np.asarray(e).reshape(-1)
        out.append(str(e[0]).strip() if e.size else "")
    return out


def _mat_xy(arr: Any, n: int, what: str, path: Path) -> np.ndarray:
    """A ``(2, n)`` (MATLAB layout) or ``(n, 2)`` array → ``(n, 2)`` float64."""
    arr = np.asarray(arr, dtype=np.float64)
    if arr.shape == (2, n):
        return arr.T.copy()
    if arr.shape == (n, 2):
        return arr
    raise DatasetError(f"{path}: dbStruct.{what} has shape {arr.shape} but there are {n} images (expected (2, {n}))")


def _guess_root(candidates: Sequence[Path], first: str) -> Path:
    """The first candidate folder in which image ``first`` exists (else the first candidate)."""
    for c in candidates:
        if (c / first).is_file():
            return c
    log.warning("image %s not found under %s; using %s as image root", first,
                ", ".join(str(c) for c in candidates), candidates[0])
    return candidates[0]


def load_pittsburgh_mat(
    path: PathLike,
    db_root: Optional[PathLike] = None,
    query_root: Optional[PathLike] = None,
) -> Tuple[ImageSet, ImageSet, float]:
    """Read a Pittsburgh / Tokyo 24/7 ``dbStruct`` ``.mat`` file.

    Args:
        path: the ``.mat`` file (e.g. ``pitts30k_test.mat``, ``tokyo247.mat``).
        db_root: folder the ``dbImage`` names are relative to; default: the first of the mat's
            folder and its parent in which the first database image exists (pytorch-NetVlad keeps
            the mats in ``ROOT/datasets/`` and the images under ``ROOT``).
        query_root: folder of ``qImage`` names; default: ``db_root/queries_real`` when the first
            query is there, else ``db_root``.

    Returns:
        ``(database, queries, posDistThr)``: UTM positions from ``utmDb``/``utmQ`` (transposed
        from MATLAB's ``(2, N)``), and the positive radius in metres.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"dbStruct .mat file not found: {path}")
    try:
        mat = loadmat(str(path))
    except Exception as exc:  # scipy raises several types for bad files
        raise DatasetError(f"cannot read {path} as a MATLAB file: {exc}") from None
    if "dbStruct" not in mat:
        raise DatasetError(f"{path}: missing variable 'dbStruct' (found {sorted(k for k in mat if not k.startswith('__'))})")
    struct = mat["dbStruct"]
    names = struct.dtype.names or ()
    rec = struct.reshape(-1)[0]

    def field(key: str, aliases: Tuple[str, ...], required: bool = True) -> Any:
        for a in aliases:
            if a in names:
                return rec[a]
        if required:
            raise DatasetError(f"{path}: dbStruct has no field {' or '.join(aliases)} (fields: {list(names)})")
        return None

    got = {k: field(k, a) for k, a in _MAT_FIELDS.items()}
    opt = {k: field(k, a, required=False) for k, a in _MAT_OPTIONAL.items()}
    db_images, q_images = _mat_strings(got["dbImage"]), _mat_strings(got["qImage"])
    for key, images in (("numDb", db_images), ("numQ", q_images)):
        if opt[key] is not None and int(np.asarray(opt[key]).reshape(-1)[0]) != len(images):
            raise DatasetError(
                f"{path}: dbStruct.{key} = {int(np.asarray(opt[key]).reshape(-1)[0])} but it lists {len(images)} images"
            )
    utm_db = _mat_xy(got["utmDb"], len(db_images), "utmDb", path)
    utm_q = _mat_xy(got["utmQ"], len(q_images), "utmQ", path)
    radius = float(np.asarray(got["posDistThr"]).reshape(-1)[0])
    which = _mat_strings(opt["whichSet"])[0] if opt["whichSet"] is not None and np.asarray(opt["whichSet"]).size else ""
    if db_root is None:
        db_root = _guess_root([path.parent, path.parent.parent], db_images[0]) if db_images else path.parent
    db_root = Path(db_root)
    if query_root is None:
        query_root = _guess_root([db_root / "queries_real", db_root], q_images[0]) if q_images else db_root
    stem = path.stem + (f"_{which}" if which and which not in path.stem else "")
    database = ImageSet(f"{stem}_db", db_root, db_images, xy=utm_db)
    queries = ImageSet(f"{stem}_queries", Path(query_root), q_images, xy=utm_q)
    return database, queries, radius


# ---------------------------------------------------------------------------- Patch-NetVLAD
def read_image_list(path: PathLike) -> List[str]:
    """One image path per line (blank lines and ``#`` comments skipped)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"image list not found: {path}")
    lines = [ln.strip() for ln in read_text(path, "image list").splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


def load_patchnetvlad(
    index_list: PathLike,
    query_list: PathLike,
    ground_truth: PathLike,
    root: Optional[PathLike] = None,
) -> Tuple[ImageSet, ImageSet, float]:
    """Patch-NetVLAD dataset files: database and query image lists + ground-truth ``.npz``.

    Args:
        index_list, query_list: text files, one image path per line (relative to ``root``).
        ground_truth: ``.npz`` with ``utmQ`` ``(Q, 2)``, ``utmDb`` ``(N, 2)``, ``posDistThr``.
        root: image root; default the folder of ``index_list``.

    Returns:
        ``(database, queries, posDistThr)``.
    """
    db_paths, q_paths = read_image_list(index_list), read_image_list(query_list)
    gt_path = Path(ground_truth)
    if not gt_path.is_file():
        raise DatasetError(f"ground-truth file not found: {gt_path}")
    try:
        gt = np.load(gt_path, allow_pickle=False)
    except Exception as exc:
        raise DatasetError(f"cannot read {gt_path} as .npz: {exc}") from None
    for key in ("utmQ", "utmDb", "posDistThr"):
        if key not in gt.files:
            raise DatasetError(f"{gt_path}: missing array {key!r} (found {gt.files})")
    utm_db = _mat_xy(gt["utmDb"], len(db_paths), "utmDb", gt_path)
    utm_q = _mat_xy(gt["utmQ"], len(q_paths), "utmQ", gt_path)
    root = Path(root) if root is not None else Path(index_list).parent
    database = ImageSet(Path(index_list).stem, root, db_paths, xy=utm_db)
    queries = ImageSet(Path(query_list).stem, root, q_paths, xy=utm_q)
    return database, queries, float(np.asarray(gt["posDistThr"]).reshape(-1)[0])


# ---------------------------------------------------------------------------- VPR-Bench
def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """What protocol-2 pickles written by Python 3 call (as ``_codecs.encode``) to rebuild bytes."""
    if encoding not in ("latin1", "latin-1", "iso-8859-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"it encodes bytes with {encoding!r}, not latin1")
    return text.encode("latin1")


def _numpy_globals() -> Dict[Tuple[str, str], Any]:
    core = getattr(np, "_core", None) or np.core
    found: Dict[Tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                                         ("_codecs", "encode"): _latin1_bytes}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy 1.x / 2.x pickles
        found[(module, "_reconstruct")] = core.multiarray._reconstruct
        found[(module, "scalar")] = core.multiarray.scalar
    return found


class _NumpyDataUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds numpy arrays, dtypes and scalars (and latin1 bytes) and nothing
    else: any other global (``os.system``, ``builtins.eval`` ...) is refused, so no code from the
    file runs."""

    ALLOWED = _numpy_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which is not numpy data") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("it uses persistent ids, which are not numpy data")


def read_npy(path: PathLike) -> np.ndarray:
    """Load a ``.npy`` file without running code from it, object arrays included.

    A plain array loads with ``np.load(allow_pickle=False)``. An object array (stored as a
    pickle) is unpickled by :class:`_NumpyDataUnpickler` (numpy array/dtype/scalar reconstruction
    plus Python lists, tuples, dicts, numbers and strings), with the settings of ``np.load``
    (``encoding="ASCII"``), so legitimate files load exactly as ``np.load(allow_pickle=True)``
    would load them.

    Raises:
        DatasetError: a missing or unreadable file, or a pickle that names anything but numpy data.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:  # 3.0 only differs in utf-8 field names; np.load refuses object arrays safely
                f.seek(0)
                return np.load(f, allow_pickle=False)
            if not dtype.hasobject:
                f.seek(0)
                return np.load(f, allow_pickle=False)
            arr = _NumpyDataUnpickler(f, fix_imports=True, encoding="ASCII").load()
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from None
    except (pickle.UnpicklingError, ValueError, TypeError, EOFError, AttributeError, IndexError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from None
    if not isinstance(arr, np.ndarray) or arr.shape != tuple(shape) or arr.dtype != dtype:
        raise DatasetError(f"cannot read {path}: its pickle is not the {dtype} array {tuple(shape)} its header "
                           "announces")
    return arr


VPRBENCH_GT = "ground_truth_new.npy"


def read_vprbench_ground_truth(path: PathLike, n_queries: int, n_database: int) -> GroundTruth:
    """Read a VPR-Bench ``ground_truth_new.npy``: object array ``(Q, 2)`` of rows
    ``[query_index, [correct ref indices]]`` (a single int is accepted for the list).

    Raises:
        DatasetError: unreadable file, wrong shape, or a row count / index that does not match
            ``n_queries`` queries and ``n_database`` references.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"ground-truth file not found: {path}")
    gt = read_npy(path)
    if gt.ndim != 2 or gt.shape[1] != 2:
        raise DatasetError(f"{path}: expected an array of [query_index, [ref indices]] rows, got shape {gt.shape}")
    if len(gt) != n_queries:
        raise DatasetError(f"{path} lists {len(gt)} queries but the query folder has {n_queries} images")
    q_idx = np.asarray([int(r) for r in gt[:, 0]], dtype=np.int64)
    if not np.array_equal(np.sort(q_idx), np.arange(n_queries)):
        raise DatasetError(f"{path}: query indices are not 0..{n_queries - 1} (each exactly once)")
    lists: List[Any] = [None] * n_queries
    for qi, refs in zip(q_idx, gt[:, 1]):
        lists[qi] = np.atleast_1d(np.asarray(refs, dtype=np.int64))
    try:
        return GroundTruth.from_lists(lists, n_database)
    except DatasetError as exc:
        raise DatasetError(f"{path}: {exc} (ref/ folder)") from None


def load_vprbench(folder: PathLike) -> Tuple[ImageSet, ImageSet, GroundTruth]:
    """A VPR-Bench dataset folder: ``ref/``, ``query/`` and ``ground_truth_new.npy``."""
    folder = Path(folder)
    for part in ("ref", "query", VPRBENCH_GT):
        if not (folder / part).exists():
            raise DatasetError(f"VPR-Bench dataset {folder}: missing {part}")
    database = ImageSet(f"{folder.name}_ref", folder / "ref", list_image_files(folder / "ref"))
    queries = ImageSet(f"{folder.name}_query", folder / "query", list_image_files(folder / "query"))
    gt = read_vprbench_ground_truth(folder / VPRBENCH_GT, len(queries), len(database))
    return database, queries, gt


# ---------------------------------------------------------------------------- aligned traverses
def load_aligned(
    database_dir: PathLike,
    query_dir: PathLike,
    tolerance: int = 2,
    reverse: bool = False,
) -> Tuple[ImageSet, ImageSet, GroundTruth]:
    """Two index-aligned traverses: image i of ``query_dir`` shows the place of image i of
    ``database_dir`` (or of image ``N-1-i`` with ``reverse``), ± ``tolerance`` frames.
    Images are taken in natural name order; both folders must hold the same number."""
    database = ImageSet(Path(database_dir).name, Path(database_dir), list_image_files(database_dir))
    queries = ImageSet(Path(query_dir).name, Path(query_dir), list_image_files(query_dir))
    if len(database) != len(queries):
        raise DatasetError(
            f"index-aligned folders differ in length: {database_dir} has {len(database)} images, "
            f"{query_dir} has {len(queries)}"
        )
    gt = GroundTruth.from_tolerance(len(queries), len(database), tolerance=tolerance, reverse=reverse)
    return database, queries, gt


# ---------------------------------------------------------------------------- PAL / Yuquan
PAL_GPS = "GPS.txt"
PAL_OVERLAP = "Overlap.txt"


def _numeric_lines(path: Path) -> List[List[float]]:
    rows = []
    for i, line in enumerate(read_text(path, "PAL text file").splitlines()):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            rows.append([float(t) for t in line.replace(",", " ").split()])
        except ValueError:
            raise DatasetError(f"{path}: line {i + 1} is not numbers: {line!r}") from None
    return rows


def read_gps_txt(path: PathLike, n_images: int) -> np.ndarray:
    """PAL ``GPS.txt``: one ``lon lat`` pair per line (space, tab or comma separated).

    The GPS log and the camera run at different rates: when the number of fixes M differs from
    ``n_images`` the track is resampled linearly in time (fix m at ``m/(M-1)``, image i at
    ``i/(n_images-1)``, lon and lat interpolated separately), as the PAL code does.

    Returns:
        ``(n_images, 2)`` float64 (lat, lon) degrees.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"GPS file not found: {path}")
    rows = _numeric_lines(path)
    if not rows:
        raise DatasetError(f"{path} holds no GPS fixes")
    if any(len(r) < 2 for r in rows):
        raise DatasetError(f"{path}: every line needs 'lon lat'")
    lonlat = np.asarray([r[:2] for r in rows], dtype=np.float64)
    m = len(lonlat)
    if m != n_images:
        if m < 2:
            raise DatasetError(f"{path} has {m} GPS fix for {n_images} images; cannot interpolate")
        log.info("%s: %d GPS fixes resampled linearly to %d images", path, m, n_images)
        t_src = np.linspace(0.0, 1.0, m)
        t_dst = np.linspace(0.0, 1.0, n_images)
        lonlat = np.stack([np.interp(t_dst, t_src, lonlat[:, c]) for c in range(2)], axis=1)
    return lonlat[:, ::-1].copy()


def read_overlap_txt(path: PathLike, n_images: int) -> np.ndarray:
    """PAL ``Overlap.txt``: which query images lie on the mapped route.

    Two formats are accepted:

    - one ``0``/``1`` per line, exactly one line per image (natural name order);
    - index ranges ``START END`` per line, 0-based and inclusive (``12 40`` = images 12..40).

    Returns:
        ``(n_images,)`` bool; False = off the route (not evaluated, not a miss).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"overlap file not found: {path}")
    rows = _numeric_lines(path)
    widths = {len(r) for r in rows}
    if not rows:
        return np.zeros(n_images, dtype=bool)
    if widths == {1}:
        flags = np.asarray([r[0] for r in rows])
        if not np.isin(flags, (0.0, 1.0)).all():
            raise DatasetError(f"{path}: one-value lines must be 0 or 1")
        if len(flags) != n_images:
            raise DatasetError(f"{path} has {len(flags)} lines but the folder has {n_images} images")
        return flags.astype(bool)
    if widths == {2}:
        ranges = np.asarray(rows, dtype=np.int64)
        if (ranges < 0).any() or (ranges[:, 1] >= n_images).any() or (ranges[:, 0] > ranges[:, 1]).any():
            raise DatasetError(f"{path}: ranges must satisfy 0 <= START <= END < {n_images}")
        # +1 at each start, -1 after each end, cumulative sum > 0 = inside a range
        delta = np.zeros(n_images + 1, dtype=np.int64)
        np.add.at(delta, ranges[:, 0], 1)
        np.add.at(delta, ranges[:, 1] + 1, -1)
        return np.cumsum(delta[:-1]) > 0
    raise DatasetError(f"{path}: expected one 0/1 per line or 'START END' ranges per line")


def load_pal_folder(folder: PathLike, name: Optional[str] = None) -> Tuple[ImageSet, Optional[np.ndarray]]:
    """A PAL / Yuquan traverse: images + ``GPS.txt`` (+ ``Overlap.txt`` for queries).

    Returns:
        ``(imageset, on_route)``: positions in UTM metres (lat/lon kept); ``on_route`` is the
        ``(N,)`` bool mask of ``Overlap.txt``, or None when the folder has none.
    """
    folder = Path(folder)
    if not (folder / PAL_GPS).is_file():
        raise DatasetError(f"PAL traverse {folder}: missing {PAL_GPS}")
    paths = list_image_files(folder)
    latlon = read_gps_txt(folder / PAL_GPS, len(paths))
    xy, _ = latlon_to_xy(latlon)
    overlap = read_overlap_txt(folder / PAL_OVERLAP, len(paths)) if (folder / PAL_OVERLAP).is_file() else None
    return ImageSet(name or folder.name, folder, paths, xy=xy, latlon=latlon), overlap


def folder_kind(folder: Path) -> Optional[str]:
    """Which folder format ``folder`` is: ``vprbench``, ``pal``, ``utm-pair``, ``utm``, ``csv``
    (exactly one CSV inside) or None."""
    if (folder / VPRBENCH_GT).is_file():
        return "vprbench"
    if (folder / PAL_GPS).is_file():
        return "pal"
    if (folder / "database").is_dir() and (folder / "queries").is_dir():
        return "utm-pair"
    images = sorted((p for p in folder.iterdir() if p.is_file() and "@" in p.name), key=lambda p: natural_key(p.name))
    if images and is_utm_name(images[0].name):
        return "utm"
    csvs = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".csv"]
    if len(csvs) == 1:
        return "csv"
    return None
