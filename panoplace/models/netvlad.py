"""NetVLAD aggregation (Arandjelovic et al., arXiv:1511.07247), vectorised.

Same output as the reference formulation of pytorch-NetVlad (a 1x1-conv soft assignment,
residuals to the centroids summed per cluster, intra-normalisation, L2), with the per-cluster
Python loop replaced by one batched matrix product:

    V[n, k, :] = sum_l a[n, k, l] * (x[n, :, l] - c[k])
               = (a @ x^T)[n, k, :] - (sum_l a[n, k, l]) * c[k]

which needs ``N*K*(L + C)`` floats of intermediates instead of a ``(N, K, C, L)`` residual
tensor (see ``benchmarks/bench_netvlad.py``).

The parameter names (``conv.weight``, ``conv.bias`` with vladv2, ``centroids``) are those of
pytorch-NetVlad, so its ``pool.*`` checkpoint keys load as they are.

The computation is split for crop fusion: :meth:`NetVLAD.raw` gives the un-normalised VLAD
matrix of each image, :meth:`NetVLAD.finalize` normalises it; VLAD matrices of several crops
can be summed in between (see :mod:`panoplace.models.fusion`).
"""

from __future__ import annotations

import logging
import math
from typing import Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from panoplace.errors import InputError
from panoplace.models.fusion import Aggregator

log = logging.getLogger(__name__)

ArrayLike = Union[np.ndarray, torch.Tensor]


def _as_matrix(a: ArrayLike, what: str, cols: Optional[int] = None) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a).detach().cpu().double()
    if t.dim() != 2 or (cols is not None and t.shape[1] != cols):
        want = f"(M, {cols})" if cols is not None else "2-D"
        raise InputError(f"{what} must be {want}, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise InputError(f"{what} contains NaN or infinite values")
    return t


class NetVLAD(Aggregator):
    """NetVLAD layer.

    Args:
        num_clusters: K.
        dim: C, channels of the local features.
        normalize_input: L2-normalise each local feature along channels first (as pytorch-NetVlad).
        vladv2: the soft-assignment conv has a bias (NetVLAD "v2" parametrisation).

    Attributes:
        out_dim: ``K * C``, the descriptor length.
        alpha: the soft-assignment sharpness set by :meth:`init_from_clusters` (0 before).

    Shape:
        - Input: ``(N, C, h, w)``.
        - Output: ``(N, K * C)``, L2-normalised.
    """

    def __init__(self, num_clusters: int = 64, dim: int = 128, normalize_input: bool = True,
                 vladv2: bool = False) -> None:
        super().__init__()
        if num_clusters < 1 or dim < 1:
            raise InputError(f"NetVLAD needs num_clusters >= 1 and dim >= 1, got {num_clusters} and {dim}")
        self.num_clusters = int(num_clusters)
        self.dim = int(dim)
        self.normalize_input = bool(normalize_input)
        self.vladv2 = bool(vladv2)
        self.alpha = 0.0
        self.conv = nn.Conv2d(self.dim, self.num_clusters, kernel_size=1, bias=self.vladv2)
        self.centroids = nn.Parameter(torch.rand(self.num_clusters, self.dim))

    @property
    def out_dim(self) -> int:
        return self.num_clusters * self.dim

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.dim:
            raise InputError(f"NetVLAD input must be (N, {self.dim}, h, w), got {tuple(x.shape)}")

    def soft_assign(self, x: torch.Tensor) -> torch.Tensor:
        """Soft assignment of each location to each cluster (after input normalisation).

        Shape:
            - x: ``(N, C, h, w)`` (already L2-normalised when ``normalize_input``).
            - Output: ``(N, K, h*w)``, summing to 1 over K.
        """
        return F.softmax(self.conv(x).flatten(2), dim=1)

    def raw(self, x: torch.Tensor, token: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Un-normalised VLAD matrix: residuals to each centroid weighted by soft assignment.

        Shape:
            - x: ``(N, C, h, w)``.
            - Output: ``(N, K, C)``.
        """
        self._check(x)
        if self.normalize_input:
            x = F.normalize(x, p=2, dim=1)
        a = self.soft_assign(x)  # (N, K, L)
        vlad = torch.bmm(a, x.flatten(2).transpose(1, 2))  # (N, K, C)
        return vlad - a.sum(dim=2, keepdim=True) * self.centroids.unsqueeze(0)

    def finalize(self, raw: torch.Tensor) -> torch.Tensor:
        """Intra-normalisation (per cluster) then L2 over the flattened vector.

        Shape:
            - raw: ``(N, K, C)``.
            - Output: ``(N, K * C)``.
        """
        if raw.dim() != 3 or raw.shape[1:] != (self.num_clusters, self.dim):
            raise InputError(f"NetVLAD raw input must be (N, {self.num_clusters}, {self.dim}), "
                             f"got {tuple(raw.shape)}")
        v = F.normalize(raw, p=2, dim=2).flatten(1)
        return F.normalize(v, p=2, dim=1)

    def combine_crops(self, raw: torch.Tensor) -> torch.Tensor:
        """Sum the VLAD matrices of the K crops of each panorama: the VLAD of all their
        local features together (so invariant to the order of the crops).

        Shape:
            - raw: ``(B, n_crops, K, C)``.
            - Output: ``(B, K, C)``.
        """
        return raw.sum(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``finalize(raw(x))``.

        Shape:
            - x: ``(N, C, h, w)``.
            - Output: ``(N, K * C)``.
        """
        return self.finalize(self.raw(x))

    @torch.no_grad()
    def init_from_clusters(self, centroids: ArrayLike, descriptors: ArrayLike,
                           vladv2: Optional[bool] = None) -> float:
        """Initialise from k-means centroids of (L2-normalised) local features.

        vladv1 (as pytorch-NetVlad and the original MATLAB code): with unit-norm centroids
        ``c^``, ``alpha = -log(0.01) / mean_i(d1_i - d2_i)`` where ``d1_i >= d2_i`` are the two
        largest dot products of descriptor ``i`` with the ``c^``; ``conv.weight = alpha * c^``, no
        bias; ``centroids = c``.

        vladv2 (as the original MATLAB code ``yael_nn(clsts, trainDescs, 2)``): ``alpha =
        -log(0.01) / mean_i(s2_i - s1_i)`` with ``s1_i <= s2_i`` the squared distances of
        descriptor ``i`` to its two nearest centroids; ``conv.weight = 2 * alpha * c``,
        ``conv.bias = -alpha * ||c||^2``, so that the soft assignment is
        ``softmax_k(-alpha * ||x - c_k||^2)``. (pytorch-NetVlad's vladv2 differs from the paper:
        it takes neighbour *indices* instead of distances for alpha and ``-alpha * ||c||`` for the
        bias; panoplace follows the paper.)

        Either way alpha makes the nearest cluster ~100x more likely than the second on average.

        Args:
            centroids: ``(K, C)``.
            descriptors: ``(M, C)`` sample of the local features the centroids were fitted on.
            vladv2: must match how the layer was built (None = the layer's setting).

        Returns:
            alpha.
        """
        if vladv2 is not None and bool(vladv2) != self.vladv2:
            raise InputError(f"this NetVLAD layer was built with vladv2={self.vladv2}; "
                             f"build the model with vladv2={bool(vladv2)} to initialise it that way")
        c = _as_matrix(centroids, "centroids", self.dim)
        if c.shape[0] != self.num_clusters:
            raise InputError(f"expected {self.num_clusters} centroids, got {c.shape[0]}")
        d = _as_matrix(descriptors, "descriptors", self.dim)
        if d.shape[0] < 1:
            raise InputError("init_from_clusters needs at least one descriptor")
        if self.num_clusters < 2:
            raise InputError("init_from_clusters needs at least 2 clusters to set alpha")
        gaps = []
        for chunk in torch.split(d, 65536):
            if self.vladv2:
                sq = (chunk.pow(2).sum(1, keepdim=True) - 2.0 * chunk @ c.T + c.pow(2).sum(1)).clamp_min(0)
                two = torch.topk(sq, 2, dim=1, largest=False).values  # ascending
                gaps.append(two[:, 1] - two[:, 0])
            else:
                c_hat = F.normalize(c, p=2, dim=1)
                two = torch.topk(chunk @ c_hat.T, 2, dim=1).values  # descending
                gaps.append(two[:, 0] - two[:, 1])
        mean_gap = torch.cat(gaps).mean().item()
        if not mean_gap > 0:
            raise InputError("cannot set NetVLAD alpha: the descriptors are equally close to their two "
                             "nearest centroids (duplicate centroids or too few distinct descriptors)")
        alpha = -math.log(0.01) / mean_gap
        dtype = self.centroids.dtype
        self.centroids.copy_(c.to(dtype))
        if self.vladv2:
            self.conv.weight.copy_((2.0 * alpha * c).to(dtype)[:, :, None, None])
            if self.conv.bias is not None:  # always with vladv2 (bias=True); narrows the Optional for mypy
                self.conv.bias.copy_((-alpha * c.pow(2).sum(1)).to(dtype))
        else:
            self.conv.weight.copy_((alpha * F.normalize(c, p=2, dim=1)).to(dtype)[:, :, None, None])
        self.alpha = alpha
        log.info("NetVLAD initialised from %d centroids (vladv%d, alpha=%.3g)", self.num_clusters,
                 2 if self.vladv2 else 1, alpha)
        return alpha

    def extra_repr(self) -> str:
        return (f"num_clusters={self.num_clusters}, dim={self.dim}, normalize_input={self.normalize_input}, "
                f"vladv2={self.vladv2}")
