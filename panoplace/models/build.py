"""The place model: backbone -> [attention] -> aggregator -> crop fusion -> [PCA-whitening].

:func:`build_model` turns a :class:`~panoplace.config.ModelConfig` into a :class:`PlaceModel`;
:func:`weights_fingerprint` hashes its weights. Reading and writing model files (panoplace,
PAL seed, pytorch-NetVlad, Places365 ...) is :mod:`panoplace.models.checkpoint`'s job.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from typing import Any, Dict, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from panoplace.config import ModelConfig
from panoplace.errors import InputError
from panoplace.models.attention import Attention, build_attention, check_attention
from panoplace.models.backbones import Backbone, build_backbone
from panoplace.models.aggregators import PARAMETRISED, build_parametrised, parse_params
from panoplace.models.fusion import Aggregator, fuse, fused_dim
from panoplace.models.netvlad import NetVLAD
from panoplace.models.pooling import AvgPool, GeM, MaxPool

log = logging.getLogger(__name__)

ArrayLike = Union[np.ndarray, torch.Tensor]


class Whitening(nn.Module):
    """PCA-whitening as a linear layer: ``y = W (x - mean)`` = ``x W^T + b`` with ``b = -W mean``.

    Holds no values until :meth:`set_whitening` (fitting lives in the PCA module); a checkpoint
    restores the fitted sizes. ``out_dim`` is ``ModelConfig.whitening_dim``.

    Shape:
        - Input: ``(..., D_in)``.
        - Output: ``(..., out_dim)`` (not normalised; :class:`PlaceModel` L2-normalises).
    """

    def __init__(self, out_dim: int) -> None:
        super().__init__()
        if out_dim < 1:
            raise InputError(f"whitening_dim must be >= 1, got {out_dim}")
        self.out_dim = int(out_dim)
        self.weight = nn.Parameter(torch.empty(0, 0))
        self.bias = nn.Parameter(torch.empty(0))

    @property
    def fitted(self) -> bool:
        return self.weight.numel() > 0

    @property
    def in_dim(self) -> int:
        return self.weight.shape[1] if self.fitted else 0

    def _resize(self, out_dim: int, in_dim: int) -> None:
        self.weight.data = self.weight.data.new_empty(out_dim, in_dim)
        self.bias.data = self.bias.data.new_empty(out_dim if in_dim else 0)

    @torch.no_grad()
    def set_whitening(self, mean: ArrayLike, components: ArrayLike) -> None:
        """Set the projection: ``components`` ``(out_dim, D_in)`` (rows already scaled by
        ``1/sqrt(eigenvalue)``) and the descriptor ``mean`` ``(D_in,)``."""
        w = torch.as_tensor(np.asarray(components) if not isinstance(components, torch.Tensor) else components)
        m = torch.as_tensor(np.asarray(mean) if not isinstance(mean, torch.Tensor) else mean)
        w, m = w.detach().double().cpu(), m.detach().double().cpu().reshape(-1)
        if w.dim() != 2 or w.shape[0] != self.out_dim or w.shape[1] != m.shape[0]:
            raise InputError(f"whitening components must be ({self.out_dim}, D) with mean (D,), got "
                             f"{tuple(w.shape)} and {tuple(m.shape)}")
        if not (torch.isfinite(w).all() and torch.isfinite(m).all()):
            raise InputError("whitening mean/components contain NaN or infinite values")
        dev, dtype = self.weight.device, self.weight.dtype
        self._resize(w.shape[0], w.shape[1])
        self.weight.copy_(w.to(dev, dtype))
        self.bias.copy_((-(w @ m)).to(dev, dtype))

    def _load_from_state_dict(self, state_dict: Dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        w = state_dict.get(prefix + "weight")
        if isinstance(w, torch.Tensor) and w.dim() == 2:
            self._resize(w.shape[0], w.shape[1])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shape: ``(..., D_in)`` -> ``(..., out_dim)``."""
        if not self.fitted:
            raise InputError(f"the whitening layer (whitening_dim={self.out_dim}) is not fitted: fit PCA "
                             "whitening first, or compute descriptors with whiten=False")
        if x.shape[-1] != self.in_dim:
            raise InputError(f"whitening expects descriptors of length {self.in_dim}, got {x.shape[-1]}")
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_dim={self.in_dim}, out_dim={self.out_dim}, fitted={self.fitted}"


def make_aggregator(cfg: ModelConfig, dim: int) -> Aggregator:
    """The aggregator of ``cfg`` for ``dim``-channel local features."""
    parse_params(cfg.aggregator, cfg.aggregator_params)  # parameters given to one that takes none
    if cfg.aggregator == "netvlad":
        return NetVLAD(num_clusters=cfg.num_clusters, dim=dim, vladv2=cfg.vladv2)
    if cfg.aggregator == "gem":
        return GeM(dim, p=cfg.gem_p)
    if cfg.aggregator == "avg":
        return AvgPool(dim)
    if cfg.aggregator == "max":
        return MaxPool(dim)
    if cfg.aggregator in PARAMETRISED:
        return build_parametrised(cfg.aggregator, dim, cfg.aggregator_params)
    raise InputError(f"unknown aggregator {cfg.aggregator!r}")


def normalise_crops(crops_uint8: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 RGB crops -> ``(x / 255 - mean) / std`` float crops on ``mean``'s device.

    One strided copy into the channels-first float tensor, then one in-place multiply-subtract
    (``x * 1 / (255 std) - mean / std``): about 6x faster than the textbook chain of
    temporaries on a 2-core CPU (benchmarks/bench_pipeline.py).

    Shape:
        - crops_uint8: ``(B, K, H, W, 3)`` uint8; mean, std: ``(3, 1, 1)``.
        - Output: ``(B, K, 3, H, W)`` float32, contiguous.
    """
    if not isinstance(crops_uint8, torch.Tensor) or crops_uint8.dim() != 5 or crops_uint8.shape[-1] != 3:
        shape = tuple(crops_uint8.shape) if hasattr(crops_uint8, "shape") else type(crops_uint8).__name__
        raise InputError(f"preprocess expects a (B, K, H, W, 3) uint8 tensor, got {shape}")
    if crops_uint8.dtype != torch.uint8:
        raise InputError(f"preprocess expects uint8 crops, got {crops_uint8.dtype}")
    b, k, h, w, _ = crops_uint8.shape
    x = torch.empty((b, k, 3, h, w), dtype=torch.float32, device=mean.device)
    x.copy_(crops_uint8.to(mean.device).permute(0, 1, 4, 2, 3))
    return x.mul_(1.0 / (255.0 * std)).sub_(mean / std)


class PlaceModel(nn.Module):
    """Backbone -> aggregator -> fusion of the K crops -> optional PCA-whitening + L2.

    Attributes:
        config: the :class:`ModelConfig` it was built from, with ``cut`` resolved.
        backbone: :class:`Backbone`; aggregator: NetVLAD/GeM/AvgPool/MaxPool;
        attention: spatial attention applied before aggregation
            (:mod:`panoplace.models.attention`) or None; whitening: :class:`Whitening` or None.

    Shape:
        - Input: crops ``(B, K, 3, H, W)`` float, normalised (see :meth:`preprocess`).
        - Output: ``(B, D)`` (``add``/``concat``) or ``(B, K, D)`` (``per-crop``).
    """

    config: ModelConfig
    backbone: Backbone
    aggregator: Aggregator
    attention: Optional[Attention]
    whitening: Optional[Whitening]
    pixel_mean: torch.Tensor
    pixel_std: torch.Tensor

    def __init__(self, config: ModelConfig, backbone: Backbone, aggregator: Aggregator,
                 attention: Optional[Attention] = None) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.aggregator = aggregator
        self.attention = attention
        self.whitening = Whitening(config.whitening_dim) if config.whitening_dim is not None else None
        self.register_buffer("pixel_mean", torch.tensor(backbone.mean).view(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(backbone.std).view(3, 1, 1), persistent=False)

    def preprocess(self, crops_uint8: torch.Tensor) -> torch.Tensor:
        """uint8 RGB crops -> normalised float crops on the model's device.

        Shape:
            - crops_uint8: ``(B, K, H, W, 3)`` uint8.
            - Output: ``(B, K, 3, H, W)`` float32, ``(x / 255 - mean) / std``.
        """
        return normalise_crops(crops_uint8, self.pixel_mean, self.pixel_std)

    def local_features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone feature maps (for clustering).

        Shape:
            - x: ``(N, 3, H, W)`` normalised.
            - Output: ``(N, C, h, w)``.
        """
        return self.backbone(x)

    def forward(self, crops: torch.Tensor, whiten: bool = True) -> torch.Tensor:
        """Panoramic descriptors: all ``B*K`` crops go through the backbone as one batch.

        Args:
            crops: normalised crops.
            whiten: apply the whitening layer when the model has one (False gives the
                descriptors PCA-whitening is fitted on).

        Shape:
            - crops: ``(B, K, 3, H, W)``.
            - Output: ``(B, D)`` or ``(B, K, D)`` for ``per-crop``, L2-normalised.
        """
        if not isinstance(crops, torch.Tensor) or crops.dim() != 5 or crops.shape[2] != 3:
            shape = tuple(crops.shape) if hasattr(crops, "shape") else type(crops).__name__
            raise InputError(f"PlaceModel input must be (B, K, 3, H, W) crops, got {shape}")
        if not crops.is_floating_point():
            raise InputError(f"PlaceModel input must be float (normalise uint8 crops with preprocess), "
                             f"got {crops.dtype}")
        b, k = crops.shape[:2]
        feats, token = self.backbone.features(crops.flatten(0, 1))  # (B*K, C, h, w), (B*K, C) or None
        raw = self.aggregate(feats, token)  # (B*K, ...)
        desc = fuse(raw.reshape(b, k, *raw.shape[1:]), self.aggregator, self.config.fusion)
        if self.whitening is not None and whiten:
            desc = F.normalize(self.whitening(desc), p=2, dim=-1)
        return desc

    def aggregate(self, feats: torch.Tensor, token: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The aggregator's ``raw`` output of local features (through the attention when the
        model has one); the backbone's global token goes to aggregators that use one (SALAD).

        Shape:
            - feats: ``(N, C, h, w)``; token: ``(N, C)`` or None.
            - Output: ``(N, ...)`` as ``aggregator.raw``.
        """
        if self.attention is not None:
            return self.attention.raw(feats, self.aggregator)
        if self.aggregator.uses_token:
            return self.aggregator.raw(feats, token)
        return self.aggregator.raw(feats)

    def descriptor_dim(self, n_crops: int, whiten: bool = True) -> int:
        """Length D of the descriptor for panoramas of ``n_crops`` crops (per crop for ``per-crop``)."""
        if n_crops < 1:
            raise InputError(f"n_crops must be >= 1, got {n_crops}")
        if self.whitening is not None and whiten:
            return self.whitening.out_dim
        return fused_dim(self.aggregator.out_dim, n_crops, self.config.fusion)

    def set_whitening(self, mean: ArrayLike, components: ArrayLike) -> None:
        """Set the PCA-whitening projection (see :meth:`Whitening.set_whitening`)."""
        if self.whitening is None:
            raise InputError("this model has no whitening layer: build it with whitening_dim set")
        self.whitening.set_whitening(mean, components)


def build_model(cfg: ModelConfig) -> PlaceModel:
    """Build the :class:`PlaceModel` of ``cfg`` (in eval mode; call ``.train()`` to train).

    Raises:
        InputError: unknown backbone/cut/aggregator, or an option this builder does not provide.
        CheckpointError: backbone weights that cannot be loaded.
    """
    check_attention(cfg.attention, cfg.attention_remain)
    backbone = build_backbone(cfg.backbone, cut=cfg.cut, n_trainable=cfg.n_trainable, weights=cfg.weights)
    aggregator = make_aggregator(cfg, backbone.out_channels)
    attention = build_attention(cfg.attention, backbone.out_channels, cfg.attention_remain)
    params = parse_params(cfg.aggregator, cfg.aggregator_params)  # typed values ("4" from the CLI -> 4)
    typed = {k: getattr(params, k) for k in cfg.aggregator_params} if params is not None else {}
    resolved = dataclasses.replace(cfg, cut=backbone.cut, aggregator_params=typed)
    return PlaceModel(resolved, backbone, aggregator, attention).eval()


def weights_fingerprint(model: nn.Module) -> str:
    """16 hex digits of sha256 over the state_dict: names, dtypes, shapes and bytes, sorted by name."""
    h = hashlib.sha256()
    sd = model.state_dict()
    for key in sorted(sd):
        t = sd[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()[:16]
