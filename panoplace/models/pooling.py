"""Global pooling aggregators with the same ``raw`` / ``finalize`` split as NetVLAD.

- :class:`GeM`: generalised mean, ``(mean x^p)^(1/p)`` with a learnable ``p``
  (Radenovic et al.). ``raw`` is the mean of ``x^p`` (before the root) so that summing the raw
  vectors of several crops (``combine_crops``) gives the GeM of all their local features.
  Inputs are clamped to ``eps`` first, so GeM with ``p = 1`` equals average pooling on
  non-negative features (post-ReLU maps).
- :class:`AvgPool`: average pooling; crops combine by summing.
- :class:`MaxPool`: max pooling; crops combine by a maximum (the max over all local features
  of the panorama).

- :class:`GeMFC`: the CosPlace / EigenPlaces head (Berton et al., CVPR 2022 / ICCV 2023):
  each local feature L2-normalised over its channels, GeM, a fully connected layer
  ``C -> fc_dim``, L2. ``raw`` is the mean of ``x^p`` and crops combine by their *mean* (the FC
  layer has a bias, so the scale of its input matters): ``add`` fusion is then exactly the
  head applied to all local features of the panorama.

GeM/avg/max finalize to an L2-normalised ``(N, C)`` vector, GeMFC to ``(N, fc_dim)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from panoplace.errors import InputError
from panoplace.models.fusion import Aggregator


class _GlobalPool(Aggregator):
    """Shared checks and the ``forward = finalize(raw(x))`` composition.

    Shape:
        - Input: ``(N, C, h, w)``.
        - Output: ``(N, C)``, L2-normalised.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim < 1:
            raise InputError(f"pooling needs dim >= 1, got {dim}")
        self.dim = int(dim)

    @property
    def out_dim(self) -> int:
        return self.dim

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.dim:
            raise InputError(f"{type(self).__name__} input must be (N, {self.dim}, h, w), got {tuple(x.shape)}")

    def _check_raw(self, raw: torch.Tensor) -> None:
        if raw.dim() != 2 or raw.shape[1] != self.dim:
            raise InputError(f"{type(self).__name__} raw input must be (N, {self.dim}), got {tuple(raw.shape)}")

    def combine_crops(self, raw: torch.Tensor) -> torch.Tensor:
        """Sum the raw vectors of the crops of each panorama.

        Shape:
            - raw: ``(B, n_crops, C)``.
            - Output: ``(B, C)``.
        """
        return raw.sum(dim=1)

    def finalize(self, raw: torch.Tensor) -> torch.Tensor:
        """L2 normalisation.

        Shape:
            - raw: ``(N, C)``.
            - Output: ``(N, C)``.
        """
        self._check_raw(raw)
        return F.normalize(raw, p=2, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``finalize(raw(x))``.

        Shape:
            - x: ``(N, C, h, w)``.
            - Output: ``(N, C)``.
        """
        return self.finalize(self.raw(x))  # raw() is defined by each subclass


class GeM(_GlobalPool):
    """Generalised-mean pooling with a learnable exponent ``p``.

    Args:
        dim: channels C.
        p: initial exponent (1 = average, large = max).
        eps: inputs are clamped to at least ``eps``.
    """

    def __init__(self, dim: int, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__(dim)
        if not p > 0:
            raise InputError(f"GeM p must be > 0, got {p}")
        self.p = nn.Parameter(torch.tensor([float(p)]))
        self.eps = float(eps)

    def raw(self, x: torch.Tensor, token: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Mean of ``clamp(x, eps)^p`` over locations (the root is taken in :meth:`finalize`).

        Shape:
            - x: ``(N, C, h, w)``.
            - Output: ``(N, C)``.
        """
        self._check(x)
        return x.clamp(min=self.eps).pow(self.p).mean(dim=(2, 3))

    def finalize(self, raw: torch.Tensor) -> torch.Tensor:
        """``raw^(1/p)`` then L2 normalisation.

        Shape:
            - raw: ``(N, C)``.
            - Output: ``(N, C)``.
        """
        self._check_raw(raw)
        return F.normalize(raw.pow(1.0 / self.p), p=2, dim=1)  # raw >= eps^p > 0

    def extra_repr(self) -> str:
        return f"dim={self.dim}, p={self.p.item():.4g}, eps={self.eps}"


class AvgPool(_GlobalPool):
    """Global average pooling (then L2 in :meth:`finalize`)."""

    def raw(self, x: torch.Tensor, token: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Shape: ``(N, C, h, w)`` -> ``(N, C)``."""
        self._check(x)
        return x.mean(dim=(2, 3))


class MaxPool(_GlobalPool):
    """Global max pooling (then L2 in :meth:`finalize`)."""

    def raw(self, x: torch.Tensor, token: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Shape: ``(N, C, h, w)`` -> ``(N, C)``."""
        self._check(x)
        return x.amax(dim=(2, 3))

    def combine_crops(self, raw: torch.Tensor) -> torch.Tensor:
        """Maximum over the crops: the max over all local features of the panorama.

        Shape:
            - raw: ``(B, n_crops, C)``.
            - Output: ``(B, C)``.
        """
        return raw.amax(dim=1)


@dataclass
class GeMFCParams:
    """GeM + FC sizes: ``fc_dim`` is the descriptor length (CosPlace/EigenPlaces publish 32..2048)."""

    fc_dim: int = 512
    p: float = 3.0

    def __post_init__(self) -> None:
        if int(self.fc_dim) < 1 or not float(self.p) > 0:
            raise InputError(f"gem_fc needs fc_dim >= 1 and p > 0, got {self.fc_dim} and {self.p}")


class GeMFC(Aggregator):
    """CosPlace / EigenPlaces aggregation: L2 per location -> GeM -> FC -> L2.

    Parameters: ``p`` (GeM exponent, learnable), ``fc.weight`` ``(fc_dim, C)``, ``fc.bias``.

    Shape:
        - Input: ``(N, C, h, w)``.
        - Output: ``(N, fc_dim)``, L2-normalised.
    """

    uses_token = False

    def __init__(self, dim: int, params: Optional[GeMFCParams] = None, eps: float = 1e-6) -> None:
        super().__init__()
        prm = params or GeMFCParams()
        if dim < 1:
            raise InputError(f"gem_fc needs dim >= 1, got {dim}")
        self.dim = int(dim)
        self.eps = float(eps)
        self.p = nn.Parameter(torch.tensor([float(prm.p)]))
        self.fc = nn.Linear(self.dim, int(prm.fc_dim))

    @property
    def out_dim(self) -> int:
        return self.fc.out_features

    def raw(self, x: torch.Tensor, token: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Mean over locations of ``clamp(x / ||x||, eps)^p`` (``token`` is ignored).

        Shape:
            - x: ``(N, C, h, w)``.
            - Output: ``(N, C)``.
        """
        if x.dim() != 4 or x.shape[1] != self.dim:
            raise InputError(f"GeMFC input must be (N, {self.dim}, h, w), got {tuple(x.shape)}")
        return F.normalize(x, p=2, dim=1).clamp(min=self.eps).pow(self.p).mean(dim=(2, 3))

    def finalize(self, raw: torch.Tensor) -> torch.Tensor:
        """``raw^(1/p)`` -> FC -> L2.

        Shape: ``(N, C)`` -> ``(N, fc_dim)``.
        """
        if raw.dim() != 2 or raw.shape[1] != self.dim:
            raise InputError(f"GeMFC raw input must be (N, {self.dim}), got {tuple(raw.shape)}")
        return F.normalize(self.fc(raw.pow(1.0 / self.p)), p=2, dim=1)

    def combine_crops(self, raw: torch.Tensor) -> torch.Tensor:
        """Mean over the crops. Shape: ``(B, n_crops, C)`` -> ``(B, C)``."""
        return raw.mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``finalize(raw(x))``. Shape: ``(N, C, h, w)`` -> ``(N, fc_dim)``."""
        return self.finalize(self.raw(x))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, fc_dim={self.out_dim}, p={self.p.item():.4g}, eps={self.eps}"
