"""Configuration dataclasses shared by the pipeline.

A :class:`PipelineConfig` = :class:`PanoramaConfig` (how an image file becomes K crops) +
:class:`ModelConfig` (how crops become a descriptor). Both serialise to plain dicts so that a
checkpoint and a descriptor store carry the exact config they were made with.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

from panoplace.errors import InputError

PROJECTIONS = ("plain", "equirect", "annular", "dual-fisheye", "cubemap")
AGGREGATORS = ("netvlad", "gem", "avg", "max", "gem_fc", "mixvpr", "boq", "salad")
FUSIONS = ("add", "concat", "per-crop")


def _from_dict(cls: type, data: Dict[str, Any], what: str) -> Any:
    """Build dataclass ``cls`` from ``data``, refusing unknown keys with a clear error."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise InputError(f"unknown {what} config key(s) {unknown}; valid keys: {sorted(names)}")
    return cls(**data)


@dataclass
class PanoramaConfig:
    """How an image file becomes a panorama and then K crops.

    projection: ``plain`` (the image is used as is), ``equirect`` (an elevation band of an
        equirectangular panorama is kept), ``annular`` (a panoramic annular image is unwrapped),
        ``dual-fisheye`` (two circular fisheyes side by side, stitched; see
        :mod:`panoplace.panorama.dualfisheye`), ``cubemap`` (a horizontal-cross cubemap, see
        :mod:`panoplace.panorama.cubemap`).
    annulus: annulus geometry as a dict (see :class:`panoplace.panorama.annular.AnnulusGeometry`);
        None with ``annular`` means auto-calibrate from the images.
    fisheye: dual-fisheye calibration as a dict
        (:class:`panoplace.panorama.dualfisheye.DualFisheyeCalibration`); None with
        ``dual-fisheye`` means the default calibration of each frame's size.
    elevation: (top, bottom) elevation band in degrees kept from an equirectangular panorama
        (and from the sphere stitched from a dual-fisheye or cubemap image).
    pano_width, pano_height: size of the unwrapped/cropped cylindrical panorama in pixels.
    n_crops: K equal crops around the panorama (ignored for ``plain`` unless > 1).
    window_deg, stride_deg: sliding windows instead of equal crops when both are set.
    crop_size: (height, width) each crop is resized to before the backbone.
    """

    projection: str = "plain"
    annulus: Optional[Dict[str, Any]] = None
    fisheye: Optional[Dict[str, Any]] = None
    elevation: Tuple[float, float] = (45.0, -30.0)
    pano_width: int = 1024
    pano_height: int = 256
    n_crops: int = 1
    window_deg: Optional[float] = None
    stride_deg: Optional[float] = None
    crop_size: Tuple[int, int] = (224, 224)

    def __post_init__(self) -> None:
        if self.projection not in PROJECTIONS:
            raise InputError(f"unknown projection {self.projection!r}; choose one of {list(PROJECTIONS)}")
        self.elevation = (float(self.elevation[0]), float(self.elevation[1]))
        self.crop_size = (int(self.crop_size[0]), int(self.crop_size[1]))
        if self.n_crops < 1:
            raise InputError(f"n_crops must be >= 1, got {self.n_crops}")

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["elevation"] = list(self.elevation)
        d["crop_size"] = list(self.crop_size)
        return d

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "PanoramaConfig":
        return _from_dict(cls, dict(data), "panorama")


@dataclass
class ModelConfig:
    """How a batch of crops becomes a place descriptor.

    backbone: registry name (see ``panoplace.models.backbones.BACKBONES``).
    cut: where local features are taken from (backbone-specific name or index; None = the
        backbone's default, ``panoplace.models.backbones.DEFAULT_CUTS``: for efficientnet_lite0
        block 7, chosen on real data by benchmarks/bench_default_backbone.py; kept None here
        because a cut only means something for one backbone).
    n_trainable: number of trainable tail blocks of the backbone (the rest is frozen).
    weights: ``imagenet`` (offline where the backbone ships them), ``none``, or a file path.
    aggregator: ``netvlad``, ``gem``, ``avg``, ``max``, ``gem_fc`` (CosPlace/EigenPlaces),
        ``mixvpr``, ``boq`` or ``salad`` (see :mod:`panoplace.models.aggregators`).
    num_clusters: NetVLAD clusters K. vladv2: NetVLAD v2 initialisation (bias from centroids).
    gem_p: initial GeM exponent.
    fusion: how crop descriptors are fused: ``add``, ``concat`` or ``per-crop``.
    whitening_dim: output dimension of the PCA-whitening layer, None = no whitening.
    attention: None, ``"learned"`` or ``"cam"`` (see the training/scene modules).
    attention_remain: fraction of local features kept by attention (1.0 = weight only).
    aggregator_params: per-method sizes of gem_fc/mixvpr/boq/salad (e.g. ``{"fc_dim": 2048}``;
        missing keys take the published defaults; left out of ``to_dict`` when empty, so configs
        written before it existed compare equal).
    """

    backbone: str = "efficientnet_lite0"
    cut: Optional[Any] = None
    n_trainable: int = 0
    weights: str = "imagenet"
    aggregator: str = "netvlad"
    num_clusters: int = 32  # chosen by benchmarks/bench_default_backbone.py
    vladv2: bool = False
    gem_p: float = 3.0
    fusion: str = "add"
    whitening_dim: Optional[int] = None
    attention: Optional[str] = None
    attention_remain: float = 0.5
    aggregator_params: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.aggregator not in AGGREGATORS:
            raise InputError(f"unknown aggregator {self.aggregator!r}; choose one of {list(AGGREGATORS)}")
        if self.fusion not in FUSIONS:
            raise InputError(f"unknown fusion {self.fusion!r}; choose one of {list(FUSIONS)}")
        if self.num_clusters < 1:
            raise InputError(f"num_clusters must be >= 1, got {self.num_clusters}")

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        if not d["aggregator_params"]:
            del d["aggregator_params"]
        return d

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "ModelConfig":
        return _from_dict(cls, dict(data), "model")


@dataclass
class PipelineConfig:
    """Everything that decides the descriptor of an image file."""

    panorama: PanoramaConfig = field(default_factory=PanoramaConfig)
    model: ModelConfig = field(default_factory=ModelConfig)

    def to_dict(self) -> Dict[str, Any]:
        return {"panorama": self.panorama.to_dict(), "model": self.model.to_dict()}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "PipelineConfig":
        return cls(
            panorama=PanoramaConfig.from_dict(data.get("panorama", {})),
            model=ModelConfig.from_dict(data.get("model", {})),
        )
