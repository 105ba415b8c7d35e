"""Pixel descriptors: patch-normalised grey thumbnails of the crops (SeqSLAM's image descriptor).

Under strong appearance change (Nordland summer vs winter) tiny patch-normalised images compared
by mean absolute difference, then matched as sequences, beat CNN descriptors
(``benchmarks/bench_sequence_nordland.py``). :class:`PixelModel` makes them through the image
runner like any model, so ``panoplace extract --descriptor pixels`` writes them to a descriptor
store, resumably:

1. the runner decodes each image and projects it to K crops of exactly the pixel size
   (:func:`pixel_panorama` sets ``crop_size``; shrinking averages areas, as OpenSeqSLAM's resize);
2. :meth:`PixelModel.describe` turns each crop grey and patch-normalises it with
   :func:`panoplace.matching.seqslam_classic.seqslam_preprocess` (the one implementation);
3. the K thumbnails of an image are concatenated: one row of ``K * width * height`` values.

The store records ``config["pixels"]`` (:meth:`PixelConfig.to_dict`) and no model, so
:func:`panoplace.store.descriptor_kind` says ``pixels`` and the matching verbs compare its rows by
mean absolute difference (:func:`panoplace.matching.differences.descriptor_differences`), never
by cosine, and refuse to compare them with place descriptors.

Defaults (64x32 pixels, 8x8 patches) are classic SeqSLAM's (Milford & Wyeth 2012), not tuned here.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Dict, Tuple

import numpy as np
import torch

from panoplace.config import PanoramaConfig
from panoplace.errors import InputError
from panoplace.matching.seqslam_classic import seqslam_preprocess

log = logging.getLogger(__name__)

__all__ = ["PixelConfig", "PixelModel", "parse_pixel_size", "pixel_panorama"]


def parse_pixel_size(text: str) -> Tuple[int, int]:
    """``"64x32"`` -> ``(64, 32)`` (width, height).

    >>> parse_pixel_size("32x16")
    (32, 16)
    """
    parts = str(text).lower().split("x")
    try:
        if len(parts) != 2:
            raise ValueError(text)
        w, h = int(parts[0]), int(parts[1])
    except ValueError:
        raise InputError(f"a pixel size is WIDTHxHEIGHT, e.g. 64x32; got {text!r}") from None
    return w, h


@dataclass(frozen=True)
class PixelConfig:
    """How a crop becomes a pixel descriptor: ``width`` x ``height`` grey pixels, normalised to zero
    mean and unit standard deviation in every ``patch`` x ``patch`` block (both sizes multiples of it)."""

    width: int = 64
    height: int = 32
    patch: int = 8

    def __post_init__(self) -> None:
        for name in ("width", "height", "patch"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise InputError(f"pixel descriptor {name} must be a whole number >= 1, got {value!r}")
        if self.width % self.patch or self.height % self.patch:
            raise InputError(f"pixel size {self.width}x{self.height} is not a multiple of the patch size {self.patch}")

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "PixelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"unknown pixel descriptor key(s) {unknown}; valid keys: {sorted(names)}")
        return cls(**data)

    def __str__(self) -> str:
        return f"{self.width}x{self.height} pixels, patch {self.patch}"


def pixel_panorama(panorama: PanoramaConfig, pixels: PixelConfig) -> PanoramaConfig:
    """``panorama`` with crops of exactly the pixel size (``crop_size = (height, width)``)."""
    return dataclasses.replace(panorama, crop_size=(pixels.height, pixels.width))


class PixelModel:
    """Uint8 RGB crops -> patch-normalised grey thumbnails, for the image runner and ``extract``.

    It has no weights (``fingerprint`` is empty) and runs on the CPU. Give it crops of the pixel
    size (:func:`pixel_panorama`); crops of another size are resized (area averaging) first.

    Shape:
        :meth:`describe`: crops ``(B, K, h, w, 3)`` uint8 -> float32 ``(B, K * height * width)``.

    >>> import torch
    >>> m = PixelModel(PixelConfig(16, 8, patch=8))
    >>> m.describe(torch.zeros((2, 3, 8, 16, 3), dtype=torch.uint8)).shape
    (2, 384)
    """

    fingerprint = ""

    def __init__(self, config: PixelConfig = PixelConfig()) -> None:
        if not isinstance(config, PixelConfig):
            raise InputError(f"config must be a PixelConfig, got {type(config).__name__}")
        self.config = config

    def descriptor_dim(self, n_crops: int) -> int:
        """Values per image: ``n_crops * width * height``."""
        return int(n_crops) * self.config.width * self.config.height

    def store_entry(self) -> Dict[str, Any]:
        """What a store records about these descriptors (``config["pixels"]``)."""
        return self.config.to_dict()

    def preprocess(self, crops_uint8: torch.Tensor) -> torch.Tensor:
        """The crops as they are (the runner's model-input hook)."""
        return crops_uint8

    def describe(self, crops: torch.Tensor) -> np.ndarray:
        """Patch-normalised grey thumbnails of every crop, concatenated per image (see the class)."""
        a = crops.cpu().numpy() if isinstance(crops, torch.Tensor) else np.asarray(crops)
        if a.ndim != 5 or a.shape[-1] != 3:
            raise InputError(f"pixel descriptors take crops of shape (B, K, h, w, 3), got {tuple(a.shape)}")
        b, k = a.shape[:2]
        bgr = np.ascontiguousarray(a.reshape(b * k, *a.shape[2:])[..., ::-1])  # seqslam_preprocess greys BGR
        c = self.config
        thumbs = seqslam_preprocess(list(bgr), (c.width, c.height), c.patch)
        return thumbs.reshape(b, k * c.width * c.height)

    __call__ = describe
