"""MixVPR aggregation (Ali-bey et al., WACV 2023, arXiv:2303.02190).

The local features ``x`` ``(N, C, h, w)`` are flattened to ``C`` rows of ``h*w`` values, and
``mix_depth`` feature mixers each add an MLP over the *spatial* dimension of every row::

    X <- X + W2 relu(W1 LayerNorm(X) + b1) + b2          (over the h*w axis)

then two linear projections reduce the channels (``channel_proj``: ``C -> out_channels``) and the
rows (``row_proj``: ``h*w -> out_rows``); the ``out_channels x out_rows`` matrix, flattened
channel-major, is L2-normalised: ``D = out_channels * out_rows`` (the published ResNet-50 model:
layer3 features of 320x320 images, 1024 x 20 x 20 -> 1024 x 4 = 4096).

The mixers have weights over a fixed ``in_h x in_w`` grid. Feature maps of another size (another
crop size or backbone stride) are resized to that grid with bilinear interpolation first (a
panoplace addition, so one model runs on any crop size; it is a no-op at the trained size).

Parameter names are those of the official code (``mix.N.mix.{0,1,3}``, ``channel_proj``,
``row_proj``), so its ``aggregator.*`` checkpoint keys load as they are.

Crop fusion: the mixers look at the spatial layout of one crop, so the descriptor of a crop is
not a sum over its local features. ``raw`` is the un-normalised descriptor; ``add`` sums the
L2-normalised crop descriptors (their mean direction, invariant to the order of the crops),
``concat``/``per-crop`` keep MixVPR's own per-crop descriptors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from panoplace.errors import InputError
from panoplace.models.fusion import Aggregator


@dataclass
class MixVPRParams:
    """MixVPR's sizes (defaults: the published 4096-D model, with a 14x14 grid for 224-pixel
    crops at stride 16)."""

    out_channels: int = 1024
    out_rows: int = 4
    mix_depth: int = 4
    mlp_ratio: float = 1.0
    in_h: int = 14
    in_w: int = 14

    def __post_init__(self) -> None:
        for name in ("out_channels", "out_rows", "in_h", "in_w"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"mixvpr {name} must be >= 1, got {getattr(self, name)}")
        if int(self.mix_depth) < 0 or not float(self.mlp_ratio) > 0:
            raise InputError(f"mixvpr needs mix_depth >= 0 and mlp_ratio > 0, got {self.mix_depth}, {self.mlp_ratio}")


class FeatureMixer(nn.Module):
    """``x + MLP(LayerNorm(x))`` over the last axis (``mix.0`` LayerNorm, ``mix.1``/``mix.3`` Linear).

    Shape: ``(N, C, L)`` -> ``(N, C, L)``.
    """

    def __init__(self, length: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(length * mlp_ratio)
        self.mix = nn.Sequential(nn.LayerNorm(length), nn.Linear(length, hidden), nn.ReLU(),
                                 nn.Linear(hidden, length))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mix(x)


class MixVPR(Aggregator):
    """MixVPR head over ``dim``-channel local features.

    Attributes:
        out_dim: ``out_channels * out_rows``.

    Shape:
        - Input: ``(N, dim, h, w)`` (resized to ``in_h x in_w`` when different).
        - Output: ``(N, out_dim)``, L2-normalised.
    """

    uses_token = False

    def __init__(self, dim: int, params: Optional[MixVPRParams] = None) -> None:
        super().__init__()
        p = params or MixVPRParams()
        if dim < 1:
            raise InputError(f"mixvpr needs dim >= 1, got {dim}")
        self.dim = int(dim)
        self.params = p
        self.in_hw = (int(p.in_h), int(p.in_w))
        hw = self.in_hw[0] * self.in_hw[1]
        self.mix = nn.Sequential(*[FeatureMixer(hw, float(p.mlp_ratio)) for _ in range(int(p.mix_depth))])
        self.channel_proj = nn.Linear(self.dim, int(p.out_channels))
        self.row_proj = nn.Linear(hw, int(p.out_rows))

    @property
    def out_dim(self) -> int:
        return self.channel_proj.out_features * self.row_proj.out_features

    def raw(self, x: torch.Tensor, token: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The un-normalised MixVPR descriptor (``token`` is ignored).

        Shape:
            - x: ``(N, dim, h, w)``.
            - Output: ``(N, out_dim)``, ordered channel-major (``out_channels`` blocks of ``out_rows``).
        """
        if x.dim() != 4 or x.shape[1] != self.dim:
            raise InputError(f"MixVPR input must be (N, {self.dim}, h, w), got {tuple(x.shape)}")
        if tuple(x.shape[-2:]) != self.in_hw:
            x = F.interpolate(x, size=self.in_hw, mode="bilinear", align_corners=False)
        y = self.mix(x.flatten(2))  # (N, C, hw)
        y = self.channel_proj(y.transpose(1, 2))  # (N, hw, out_channels)
        y = self.row_proj(y.transpose(1, 2))  # (N, out_channels, out_rows)
        return y.flatten(1)

    def finalize(self, raw: torch.Tensor) -> torch.Tensor:
        """L2 normalisation. Shape: ``(N, out_dim)`` -> ``(N, out_dim)``."""
        if raw.dim() != 2 or raw.shape[1] != self.out_dim:
            raise InputError(f"MixVPR raw input must be (N, {self.out_dim}), got {tuple(raw.shape)}")
        return F.normalize(raw, p=2, dim=1)

    def combine_crops(self, raw: torch.Tensor) -> torch.Tensor:
        """Sum of the L2-normalised crop descriptors.

        Shape:
            - raw: ``(B, n_crops, out_dim)``.
            - Output: ``(B, out_dim)``.
        """
        return F.normalize(raw, p=2, dim=-1).sum(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``finalize(raw(x))``. Shape: ``(N, dim, h, w)`` -> ``(N, out_dim)``."""
        return self.finalize(self.raw(x))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, in_hw={self.in_hw}, out_dim={self.out_dim}, mix_depth={len(self.mix)}"
