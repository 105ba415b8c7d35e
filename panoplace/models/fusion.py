"""Fusion of the K crop descriptors of a panorama into one descriptor.

Input is the aggregator's *raw* output per crop, ``(B, K, ...)`` (NetVLAD: ``(B, K, Kc, C)``
VLAD matrices; GeM/avg/max: ``(B, K, C)``), so that ``add`` can fuse before normalisation:

- ``add``: ``aggregator.combine_crops`` (sum of the raw VLAD matrices / GeM ``x^p`` means /
  average vectors; maximum for max pooling), then ``aggregator.finalize`` (NetVLAD: intra +
  L2). That is the aggregator applied to all local features of the panorama at once (up to a
  scale that normalisation removes), so it does not depend on the order of the crops: a
  circular shift of the crops (a rotated panorama) gives the same descriptor.
  Shape ``(B, D)``.
- ``concat``: each crop finalized, concatenated in crop order, then L2. Depends on the crop
  order (rotation-sensitive). Shape ``(B, K*D)``.
- ``per-crop``: each crop finalized and kept. Shape ``(B, K, D)``.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from panoplace.config import FUSIONS
from panoplace.errors import InputError


class Aggregator(nn.Module):
    """Base class of the aggregators (NetVLAD, GeM, AvgPool, MaxPool, GeM-FC, MixVPR, BoQ,
    SALAD): what fusion and the place models need from one.

    Attributes:
        dim: channels ``C`` of the local features it reads.
        out_dim: length of one finalized descriptor.
        uses_token: True when :meth:`raw` uses the backbone's global token (SALAD); the others
            ignore ``token``.

    Shape:
        - :meth:`raw`: ``(N, C, h, w)`` (and a token ``(N, C)`` or None) -> ``(N, ...)``.
        - :meth:`combine_crops`: ``(B, K, ...)`` -> ``(B, ...)``.
        - :meth:`finalize`: ``(N, ...)`` -> ``(N, out_dim)``.
    """

    dim: int
    uses_token: bool = False

    @property
    def out_dim(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} does not define out_dim")

    def raw(self, x: torch.Tensor, token: Optional[torch.Tensor] = None) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not define raw")

    def finalize(self, raw: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not define finalize")

    def combine_crops(self, raw: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not define combine_crops")


def fused_dim(per_crop_dim: int, n_crops: int, mode: str) -> int:
    """Length of the fused descriptor (per crop for ``per-crop``)."""
    check_fusion(mode)
    return per_crop_dim * n_crops if mode == "concat" else per_crop_dim


def check_fusion(mode: str) -> None:
    """Raise :class:`InputError` listing the valid modes when ``mode`` is unknown."""
    if mode not in FUSIONS:
        raise InputError(f"unknown fusion {mode!r}; choose one of {list(FUSIONS)}")


def fuse_add(raw: torch.Tensor, aggregator: Aggregator) -> torch.Tensor:
    """Combine the raw crop outputs, then finalize once.

    Shape:
        - raw: ``(B, K, ...)``.
        - Output: ``(B, D)``.
    """
    return aggregator.finalize(aggregator.combine_crops(raw))


def fuse_concat(raw: torch.Tensor, aggregator: Aggregator) -> torch.Tensor:
    """Finalize each crop, concatenate in crop order, L2-normalise.

    Shape:
        - raw: ``(B, K, ...)``.
        - Output: ``(B, K * D)``.
    """
    b, k = raw.shape[:2]
    per_crop = aggregator.finalize(raw.flatten(0, 1))
    return F.normalize(per_crop.reshape(b, k * per_crop.shape[-1]), p=2, dim=1)


def fuse_per_crop(raw: torch.Tensor, aggregator: Aggregator) -> torch.Tensor:
    """Finalize each crop and keep them apart.

    Shape:
        - raw: ``(B, K, ...)``.
        - Output: ``(B, K, D)``.
    """
    b, k = raw.shape[:2]
    per_crop = aggregator.finalize(raw.flatten(0, 1))
    return per_crop.reshape(b, k, per_crop.shape[-1])


def fuse(raw: torch.Tensor, aggregator: Aggregator, mode: str) -> torch.Tensor:
    """Fuse raw per-crop aggregator outputs with ``mode`` (``add``, ``concat``, ``per-crop``).

    Shape:
        - raw: ``(B, K, ...)``: ``aggregator.raw`` of the ``B*K`` crops viewed as ``(B, K, ...)``.
        - Output: ``(B, D)`` (add), ``(B, K*D)`` (concat) or ``(B, K, D)`` (per-crop).
    """
    check_fusion(mode)
    if raw.dim() < 3:
        raise InputError(f"fusion input must be (B, K, ...) raw crop outputs, got {tuple(raw.shape)}")
    if mode == "add":
        return fuse_add(raw, aggregator)
    if mode == "concat":
        return fuse_concat(raw, aggregator)
    return fuse_per_crop(raw, aggregator)
