"""Unwrap a whole folder of panoramic annular images (the library side of ``panoplace unwrap``).

Resumable: outputs that already exist are kept, outputs are written atomically, and the
geometry used is stored as ``annulus.json`` in the output folder, so a second run over the
same folders continues with the same geometry instead of calibrating again.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Mapping, Optional, Tuple, Union

import numpy as np
from tqdm import tqdm

from panoplace.errors import InputError, PanoplaceError
from panoplace.panorama.annular import AnnularUnwrapper, AnnulusGeometry, load_geometry, save_geometry
from panoplace.panorama.calibrate import calibrate_annulus
from panoplace.panorama.imagefiles import IMAGE_EXTENSIONS, is_image_file
from panoplace.panorama.project import read_image, write_image

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

CALIBRATION_NAME = "annulus.json"
ON_ERROR = ("stop", "skip")


@dataclass
class UnwrapResult:
    """What :func:`unwrap_folder` did.

    geometry: the annulus geometry used. calibration: where it was saved (in the output folder).
    written: output files written by this run. existing: outputs already there, left as they
    were. skipped: ``(input file, reason)`` of unreadable inputs (``on_error="skip"``).
    """

    geometry: AnnulusGeometry
    calibration: Path
    written: List[Path] = field(default_factory=list)
    existing: List[Path] = field(default_factory=list)
    skipped: List[Tuple[Path, str]] = field(default_factory=list)


def list_folder_images(folder: PathLike, exclude: Optional[PathLike] = None) -> List[Path]:
    """Image files (``IMAGE_EXTENSIONS``, any case) under ``folder``, recursively, sorted,
    as paths relative to ``folder``; files under ``exclude`` (e.g. an output folder inside the
    input folder) are left out. Raises :class:`InputError` for a missing or empty folder."""
    root = Path(folder)
    if not root.exists():
        raise InputError(f"no such folder: {root}")
    if not root.is_dir():
        raise InputError(f"{root} is not a folder")
    skip = Path(exclude).resolve() if exclude is not None else None
    files = []
    for p in root.rglob("*"):
        if not p.is_file() or not is_image_file(p) or p.name.startswith("."):
            continue
        if skip is not None and (p.resolve() == skip or skip in p.resolve().parents):
            continue
        files.append(p.relative_to(root))
    if not files:
        raise InputError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {root}")
    return sorted(files, key=lambda q: q.as_posix())


def _calibrate_from_folder(root: Path, files: List[Path], n_images: int, on_error: str,
                           r_inner: Optional[float] = None) -> AnnulusGeometry:
    """Calibrate from the median of up to ``n_images`` images spread evenly over ``files``."""
    pick = np.unique(np.linspace(0, len(files) - 1, min(n_images, len(files))).round().astype(int))
    images = []
    for i in pick:
        try:
            images.append(read_image(root / files[i]))
        except PanoplaceError as exc:
            if on_error == "stop":
                raise
            log.warning("calibration: skipping %s", exc)  # listed again when the image is unwrapped
    if not images:
        raise InputError(f"none of the {len(pick)} images picked for calibration could be read")
    geometry = calibrate_annulus(images, r_inner=r_inner)
    log.info("calibrated the annulus from the median of %d image(s)", len(images))
    return geometry


def _check_existing_size(path: Path, out_width: int, out_height: int) -> None:
    """Refuse to resume into outputs of another panorama size (one existing output is read)."""
    try:
        shape = read_image(path).shape
    except PanoplaceError:
        return  # a broken earlier output is the user's to remove; it is kept like the others
    if shape[:2] != (out_height, out_width):
        raise InputError(
            f"{path} is {shape[1]}x{shape[0]} but {out_width}x{out_height} panoramas were asked for; "
            "use --overwrite or another output folder")


def _newer(src: Path, dst: Path) -> bool:
    """True when the input changed after its output was written (an image replaced between a killed
    run and the resume): the output is made again."""
    try:
        return src.stat().st_mtime_ns > dst.stat().st_mtime_ns
    except OSError:
        return False


def unwrap_folder(input_dir: PathLike, output_dir: PathLike, geometry: Optional[AnnulusGeometry] = None, *,
                  out_width: int = 2048, out_height: int = 512, calibrate_from: int = 16,
                  overrides: Optional[Mapping[str, Any]] = None, save_calibration: Optional[PathLike] = None,
                  overwrite: bool = False, on_error: str = "stop", progress: bool = True) -> UnwrapResult:
    """Unwrap every annular image under ``input_dir`` into ``output_dir`` (same relative names).

    geometry: the annulus; None = reuse ``output_dir/annulus.json`` from an earlier run (unless
        ``overwrite``), else build it from ``overrides`` when they give cx, cy, r_inner and
        r_outer, else calibrate from the median of up to ``calibrate_from`` images.
    overrides: geometry fields (``cx``, ``cy``, ``r_inner``, ``r_outer``, ``start_deg``,
        ``clockwise``, ``outer_is_top``) replacing those of the geometry; None values are ignored.
    out_width, out_height: size of each unwrapped panorama ``(out_height, out_width, 3)``.
    save_calibration: also write the geometry used to this JSON file.
    overwrite: rewrite outputs that exist (default: keep them, so a run can be resumed; an output
        older than its input is made again).
    on_error: ``stop`` raises on the first unreadable image; ``skip`` goes on and lists it in
        :attr:`UnwrapResult.skipped`.

    The geometry used is always saved as ``output_dir/annulus.json``. Raises
    :class:`InputError` for a missing/empty input folder, an output folder equal to the input
    folder, or an output folder holding results of another geometry or size (without
    ``overwrite``).
    """
    if on_error not in ON_ERROR:
        raise InputError(f"on_error must be one of {list(ON_ERROR)}, got {on_error!r}")
    if isinstance(calibrate_from, bool) or not isinstance(calibrate_from, (int, np.integer)) or calibrate_from < 1:
        raise InputError(f"calibrate_from must be a positive number of images, got {calibrate_from!r}")
    root, out_root = Path(input_dir), Path(output_dir)
    if out_root.exists() and not out_root.is_dir():
        raise InputError(f"output {out_root} exists and is not a folder")
    if out_root.resolve() == root.resolve():
        raise InputError(f"the output folder must differ from the input folder {root}")
    files = list_folder_images(root, exclude=out_root)
    for name, value in (("out_width", out_width), ("out_height", out_height)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value!r}")

    changes = {k: v for k, v in dict(overrides or {}).items() if v is not None}
    fields = set(AnnulusGeometry.__dataclass_fields__)
    unknown = sorted(set(changes) - fields)
    if unknown:
        raise InputError(f"unknown annulus field(s) {unknown}; valid: {sorted(fields)}")
    calibration = out_root / CALIBRATION_NAME
    previous = load_geometry(calibration) if calibration.is_file() and not overwrite else None
    if geometry is None and previous is not None:
        geometry = previous
        log.info("using the geometry of the earlier run in %s", calibration)
    elif geometry is None and all(k in changes for k in ("cx", "cy", "r_inner", "r_outer")):
        geometry = AnnulusGeometry.from_dict(changes)
    elif geometry is None:
        geometry = _calibrate_from_folder(root, files, int(calibrate_from), on_error, changes.get("r_inner"))
    geometry = geometry.replace(**changes)

    done = [] if overwrite else [out_root / f for f in files if (out_root / f).exists()]
    if done and previous is not None and previous != geometry:
        raise InputError(
            f"{out_root} holds {len(done)} output(s) unwrapped with another geometry ({calibration}); "
            "use --overwrite or another output folder")
    if done:
        _check_existing_size(done[0], out_width, out_height)
    save_geometry(geometry, calibration)
    if save_calibration is not None:
        save_geometry(geometry, save_calibration)
        log.info("calibration saved to %s", save_calibration)

    result = UnwrapResult(geometry=geometry, calibration=calibration)
    unwrap = AnnularUnwrapper(geometry, out_width, out_height)
    for rel in tqdm(files, desc="unwrap", unit="img", disable=not progress, dynamic_ncols=True):
        src, dst = root / rel, out_root / rel
        if dst.exists() and not overwrite and not _newer(src, dst):
            result.existing.append(dst)
            continue
        try:
            pano = unwrap(read_image(src))
        except PanoplaceError as exc:
            if on_error == "stop":
                raise
            result.skipped.append((src, str(exc)))
            continue
        result.written.append(write_image(dst, pano))
    return result
