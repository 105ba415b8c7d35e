"""From an image file to a panorama and to the K crops the model sees.

Projections (``PanoramaConfig.projection``):

- ``plain``: the image is used as is (a perspective or any non-panoramic image).
- ``equirect``: the elevation band ``cfg.elevation`` of an equirectangular panorama, resized
  to ``(cfg.pano_height, cfg.pano_width)``.
- ``annular``: a panoramic annular image unwrapped to ``(cfg.pano_height, cfg.pano_width)``
  with the given geometry or ``cfg.annulus`` (see :mod:`panoplace.panorama.annular`).
- ``dual-fisheye``: the elevation band ``cfg.elevation`` sampled straight from the two fisheyes
  (``cfg.fisheye`` calibration, else the default one of the frame's size; see
  :mod:`panoplace.panorama.dualfisheye`), ``(cfg.pano_height, cfg.pano_width)``.
- ``cubemap``: the elevation band ``cfg.elevation`` sampled from a horizontal-cross cubemap
  (see :mod:`panoplace.panorama.cubemap`), ``(cfg.pano_height, cfg.pano_width)``.

All images are RGB uint8 ``(H, W, 3)``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from panoplace.atomic import write_bytes_atomic
from panoplace.config import PanoramaConfig
from panoplace.errors import ImageReadError, InputError
from panoplace.panorama.annular import AnnularUnwrapper, AnnulusGeometry, annular_crops
from panoplace.panorama.calibrate import calibrate_annulus
from panoplace.panorama.crops import Window, crop_windows, extract_crops
from panoplace.panorama.cubemap import cubemap_band
from panoplace.panorama.dualfisheye import DualFisheyeCalibration, dual_fisheye_band
from panoplace.panorama.equirect import equirect_band
from panoplace.panorama.imagebytes import HEAD_BYTES, TAIL_BYTES, sniff_format, truncation

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]


def file_truncation(path: PathLike, size: Optional[int] = None) -> Optional[str]:
    """Why the JPEG/PNG file ``path`` is cut short (:func:`imagebytes.truncation` on its first and
    last bytes), or None when it is whole or of another format. Reads two small blocks, not the
    file."""
    try:
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
            if sniff_format(head) is None:
                return None
            n = os.fstat(f.fileno()).st_size if size is None else size
            f.seek(max(0, n - TAIL_BYTES))
            tail = f.read(TAIL_BYTES)
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    return truncation(head, tail)


def read_image(path: PathLike) -> np.ndarray:
    """Decode an image file to RGB.

    Shape: → ``(H, W, 3)`` uint8 RGB (grey images are expanded, alpha is dropped).
    Raises :class:`ImageReadError` naming the file when it is missing, empty, a truncated
    JPEG/PNG (:func:`file_truncation`) or not decodable.
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
    reason = file_truncation(p, size)
    if reason is not None:
        raise ImageReadError(str(p), reason)
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


class PanoramaProjector:
    """How images become panoramas and K crops under one :class:`PanoramaConfig`, set up once.

    The annulus geometry is parsed once (``geometry`` if given, else ``cfg.annulus``), the crop
    windows are computed once (for ``plain`` images with several crops they depend on the image
    width and are computed per width), and the annular remap tables are built on first use and
    cached. :meth:`crops` is what :func:`image_to_crops` gives, :meth:`panorama` what
    :func:`make_panorama` gives (both are this class used once).

    An ``annular`` config without a geometry is accepted here and refused when an image is
    projected (:class:`InputError`); :meth:`calibrated` fills the geometry in from images.

    Shape:
        - :meth:`panorama`: ``(H, W, 3)`` uint8 RGB -> ``(pano_height, pano_width, 3)`` uint8
          (``plain``: the image as is).
        - :meth:`crops`: ``(H, W, 3)`` uint8 RGB -> ``(K, crop_h, crop_w, 3)`` uint8 RGB.
    """

    def __init__(self, cfg: PanoramaConfig, geometry: Optional[AnnulusGeometry] = None) -> None:
        if not isinstance(cfg, PanoramaConfig):
            raise InputError(f"cfg must be a PanoramaConfig, got {type(cfg).__name__}")
        self.config = cfg
        self._geometry: Optional[AnnulusGeometry] = None
        if cfg.projection == "annular" and (geometry is not None or cfg.annulus):
            self._geometry = resolve_geometry(cfg, geometry)
        self._single = cfg.projection == "plain" and cfg.n_crops == 1
        # equirect, annular, dual-fisheye and cubemap panoramas are pano_width wide; plain ones as wide as the image
        self._windows: Dict[int, Tuple[Window, ...]] = {}
        if cfg.projection != "plain":
            self._windows_for(cfg.pano_width)
        self._unwrapper: Optional[AnnularUnwrapper] = None
        # dual-fisheye: the saved calibration, parsed once (None = the default for each frame's size)
        self._fisheye: Optional[DualFisheyeCalibration] = None
        if cfg.projection == "dual-fisheye" and cfg.fisheye:
            self._fisheye = DualFisheyeCalibration.from_dict(cfg.fisheye)

    @classmethod
    def calibrated(cls, cfg: PanoramaConfig, root: PathLike, paths: Sequence[str],
                   n_images: int = 16) -> "PanoramaProjector":
        """A projector for the images ``root/paths``: an ``annular`` config without a geometry
        is calibrated from the median of up to ``n_images`` images spread over the set
        (:func:`~panoplace.panorama.calibrate.calibrate_annulus`), and :attr:`config` then
        carries the geometry (so stores and checkpoints record it). Other configs as given.

        Raises:
            ImageReadError: an image picked for calibration cannot be read.
            CalibrationError: no ring found.
        """
        if cfg.projection != "annular" or cfg.annulus:
            return cls(cfg)
        if not paths:
            raise InputError("annular calibration needs at least one image")
        pick = np.unique(np.linspace(0, len(paths) - 1, min(n_images, len(paths))).astype(int))
        images = [read_image(Path(root) / paths[i]) for i in pick]
        geometry = calibrate_annulus(images)
        log.info("calibrated annulus from %d images: %s", len(images), geometry.to_dict())
        return cls(dataclasses.replace(cfg, annulus=geometry.to_dict()), geometry)

    @property
    def geometry(self) -> Optional[AnnulusGeometry]:
        """The annulus geometry (``annular`` only; None before calibration and for other projections)."""
        return self._geometry

    @property
    def n_crops(self) -> int:
        """K, the number of crops each image gives (for ``plain`` images with several crops: of
        an image as wide as ``pano_width``; the count never depends on the width for sliding
        windows, and equals ``n_crops`` otherwise)."""
        return 1 if self._single else len(self._windows_for(self.config.pano_width))

    @property
    def crop_size(self) -> Tuple[int, int]:
        """``(crop_h, crop_w)``."""
        return self.config.crop_size

    def _windows_for(self, width: int) -> Tuple[Window, ...]:
        w = self._windows.get(width)
        if w is None:
            c = self.config
            w = tuple(crop_windows(width, n_crops=c.n_crops, window_deg=c.window_deg, stride_deg=c.stride_deg))
            self._windows[width] = w
        return w

    def _annulus(self) -> AnnulusGeometry:
        if self._geometry is None:
            return resolve_geometry(self.config)  # raises: no geometry
        return self._geometry

    def panorama(self, img: np.ndarray) -> np.ndarray:
        """The cylindrical panorama of ``img`` (see the class docstring for shapes)."""
        _check_rgb(img, "make_panorama")
        cfg = self.config
        if cfg.projection == "plain":
            return img
        if cfg.projection == "equirect":
            band = equirect_band(img, cfg.elevation[0], cfg.elevation[1])
            return _resize(band, (cfg.pano_height, cfg.pano_width))
        if cfg.projection == "dual-fisheye":  # the band sampled straight from the two lenses
            calib = self._fisheye or DualFisheyeCalibration.default(img.shape[1], img.shape[0])
            return dual_fisheye_band(img, calib, cfg.pano_width, cfg.pano_height, *cfg.elevation)
        if cfg.projection == "cubemap":  # the band sampled straight from the cube faces
            return cubemap_band(img, cfg.pano_width, cfg.pano_height, *cfg.elevation)
        if self._unwrapper is None:
            self._unwrapper = AnnularUnwrapper(self._annulus(), cfg.pano_width, cfg.pano_height)
        return self._unwrapper(img)

    def crops(self, img: np.ndarray) -> np.ndarray:
        """The K crops of ``img``, each resized to ``crop_size`` (see :func:`image_to_crops`)."""
        _check_rgb(img, "image_to_crops")
        cfg = self.config
        if self._single:
            return _resize(img, cfg.crop_size)[None]
        if cfg.projection == "annular":  # one remap from the ring to the crops, no panorama in between
            return annular_crops(img, self._annulus(), cfg.pano_width, cfg.pano_height,
                                 self._windows_for(cfg.pano_width), cfg.crop_size)
        pano = self.panorama(img)
        crops = extract_crops(pano, self._windows_for(pano.shape[1]))
        return np.stack([_resize(c, cfg.crop_size) for c in crops])


def make_panorama(img: np.ndarray, cfg: PanoramaConfig, geometry: Optional[AnnulusGeometry] = None) -> np.ndarray:
    """Project an image into a cylindrical panorama according to ``cfg.projection``
    (:meth:`PanoramaProjector.panorama`; build a projector once to project many images).

    Shape: ``(H, W, 3)`` uint8 RGB → ``(H, W, 3)`` unchanged for ``plain``, else
    ``(cfg.pano_height, cfg.pano_width, 3)`` uint8 RGB.
    """
    return PanoramaProjector(cfg, geometry).panorama(img)


def image_to_crops(img: np.ndarray, cfg: PanoramaConfig, geometry: Optional[AnnulusGeometry] = None) -> np.ndarray:
    """The K crops of an image, each resized to ``cfg.crop_size``
    (:meth:`PanoramaProjector.crops`; build a projector once to project many images).

    ``plain`` with ``n_crops == 1``: the whole image is one crop (windows are ignored).
    Otherwise the image is made a panorama (:func:`make_panorama`; a ``plain`` image is taken
    as a 360° panorama as is) and cut by :func:`~panoplace.panorama.crops.crop_windows`
    (``n_crops`` equal crops, or sliding windows when ``cfg.window_deg`` is set), wrapping
    around the seam. ``annular`` images are sampled straight from the ring into the crops
    (:func:`~panoplace.panorama.annular.annular_crops`, one interpolation).

    Shape: ``(H, W, 3)`` uint8 RGB → ``(K, crop_h, crop_w, 3)`` uint8 RGB.
    """
    return PanoramaProjector(cfg, geometry).crops(img)
