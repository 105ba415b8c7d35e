"""From an image file to a panorama and to the K crops the model sees.

Projections (``PanoramaConfig.projection``):

- ``plain``: the image is used as is (a perspective or any non-panoramic image).
- ``equirect``: the elevation band ``cfg.elevation`` of an equirectangular panorama, resized
  to ``(cfg.pano_height, cfg.pano_width)``.
- ``annular``: a panoramic annular image unwrapped to ``(cfg.pano_height, cfg.pano_width)``
  with the given geometry or ``cfg.annulus`` (see :mod:`panoplace.panorama.annular`).

All images are RGB uint8 ``(H, W, 3)``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional, Tuple, Union

import cv2
import numpy as np

from panoplace.atomic import write_bytes_atomic
from panoplace.config import PanoramaConfig
from panoplace.errors import ImageReadError, InputError
from panoplace.panorama.annular import AnnularUnwrapper, AnnulusGeometry, annular_crops
from panoplace.panorama.crops import crop_windows, extract_crops
from panoplace.panorama.equirect import equirect_band

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]


def read_image(path: PathLike) -> np.ndarray:
    """Decode an image file to RGB.

    Shape: → ``(H, W, 3)`` uint8 RGB (grey images are expanded, alpha is dropped).
    Raises :class:`ImageReadError` naming the file when it is missing, empty or not decodable.
    """
    p = Path(path)
    if not p.exists():
        raise ImageReadError(str(p), "no such file")
    if not p.is_file():
        raise ImageReadError(str(p), "not a file")
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise ImageReadError(str(p), f"cannot be read: {exc.strerror or exc}") from None
    if size == 0:
        raise ImageReadError(str(p), "empty file")
    bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
    if bgr is None or bgr.size == 0:
        raise ImageReadError(str(p))
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def write_image(path: PathLike, img: np.ndarray, jpeg_quality: int = 95) -> Path:
    """Encode an RGB image by the file extension of ``path`` and write it atomically.

    The bytes go to a temporary file in the same folder that then replaces ``path``, so a
    killed run never leaves a truncated image under the final name.
    Shape: ``img`` ``(H, W, 3)`` RGB or ``(H, W)`` grey, uint8.
    """
    path = Path(path)
    _check_rgb(img, "write_image", allow_gray=True)
    bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if img.ndim == 3 else img
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if path.suffix.lower() in (".jpg", ".jpeg") else []
    try:
        ok, buf = cv2.imencode(path.suffix.lower(), bgr, params)
    except cv2.error:
        ok, buf = False, None
    if not ok or buf is None:
        raise InputError(f"cannot encode an image as {path.suffix or '(no extension)'} for {path}")
    return write_bytes_atomic(path, buf.tobytes())


def _check_rgb(img: np.ndarray, what: str, allow_gray: bool = False) -> None:
    """Raise :class:`InputError` unless ``img`` is an ``(H, W, 3)`` uint8 array."""
    ok = (isinstance(img, np.ndarray) and img.dtype == np.uint8 and min(img.shape[:2] or (0,)) > 0
          and ((img.ndim == 3 and img.shape[2] == 3) or (allow_gray and img.ndim == 2)))
    if not ok:
        got = f"{img.dtype} array of shape {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
        raise InputError(f"{what} expects an (H, W, 3) uint8 RGB image, got {got}")


def _resize(img: np.ndarray, size_hw: Tuple[int, int]) -> np.ndarray:
    """Resize to ``(height, width)``; area averaging when shrinking, bilinear otherwise."""
    h, w = int(size_hw[0]), int(size_hw[1])
    if h < 1 or w < 1:
        raise InputError(f"cannot resize to {h}x{w} (height x width); sizes must be positive")
    if img.shape[0] == h and img.shape[1] == w:
        return img
    shrink = h <= img.shape[0] and w <= img.shape[1]
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def resolve_geometry(cfg: PanoramaConfig, geometry: Optional[AnnulusGeometry] = None) -> AnnulusGeometry:
    """The annulus geometry for an ``annular`` config: ``geometry`` if given, else ``cfg.annulus``."""
    if geometry is not None:
        if not isinstance(geometry, AnnulusGeometry):
            raise InputError(f"geometry must be an AnnulusGeometry, got {type(geometry).__name__}")
        return geometry
    if cfg.annulus:
        return AnnulusGeometry.from_dict(cfg.annulus)
    raise InputError("annular projection needs an annulus geometry: pass a calibration "
                     "(--calibration FILE.json) or calibrate it with calibrate_annulus()")


def make_panorama(img: np.ndarray, cfg: PanoramaConfig, geometry: Optional[AnnulusGeometry] = None) -> np.ndarray:
    """Project an image into a cylindrical panorama according to ``cfg.projection``.

    Shape: ``(H, W, 3)`` uint8 RGB → ``(H, W, 3)`` unchanged for ``plain``, else
    ``(cfg.pano_height, cfg.pano_width, 3)`` uint8 RGB.
    """
    if not isinstance(cfg, PanoramaConfig):
        raise InputError(f"cfg must be a PanoramaConfig, got {type(cfg).__name__}")
    _check_rgb(img, "make_panorama")
    if cfg.projection == "plain":
        return img
    if cfg.projection == "equirect":
        band = equirect_band(img, cfg.elevation[0], cfg.elevation[1])
        return _resize(band, (cfg.pano_height, cfg.pano_width))
    unwrap = AnnularUnwrapper(resolve_geometry(cfg, geometry), cfg.pano_width, cfg.pano_height)
    return unwrap(img)


def image_to_crops(img: np.ndarray, cfg: PanoramaConfig, geometry: Optional[AnnulusGeometry] = None) -> np.ndarray:
    """The K crops of an image, each resized to ``cfg.crop_size``.

    ``plain`` with ``n_crops == 1``: the whole image is one crop (windows are ignored).
    Otherwise the image is made a panorama (:func:`make_panorama`; a ``plain`` image is taken
    as a 360° panorama as is) and cut by :func:`~panoplace.panorama.crops.crop_windows`
    (``n_crops`` equal crops, or sliding windows when ``cfg.window_deg`` is set), wrapping
    around the seam. ``annular`` images are sampled straight from the ring into the crops
    (:func:`~panoplace.panorama.annular.annular_crops`, one interpolation).

    Shape: ``(H, W, 3)`` uint8 RGB → ``(K, crop_h, crop_w, 3)`` uint8 RGB.
    """
    if not isinstance(cfg, PanoramaConfig):
        raise InputError(f"cfg must be a PanoramaConfig, got {type(cfg).__name__}")
    _check_rgb(img, "image_to_crops")
    if cfg.projection == "plain" and cfg.n_crops == 1:
        return _resize(img, cfg.crop_size)[None]
    if cfg.projection == "annular":  # one remap from the ring to the crops, no panorama in between
        windows = crop_windows(cfg.pano_width, n_crops=cfg.n_crops, window_deg=cfg.window_deg,
                               stride_deg=cfg.stride_deg)
        return annular_crops(img, resolve_geometry(cfg, geometry), cfg.pano_width, cfg.pano_height,
                             tuple(windows), cfg.crop_size)
    pano = make_panorama(img, cfg, geometry)
    windows = crop_windows(pano.shape[1], n_crops=cfg.n_crops, window_deg=cfg.window_deg,
                           stride_deg=cfg.stride_deg)
    crops = extract_crops(pano, windows)
    return np.stack([_resize(c, cfg.crop_size) for c in crops])
