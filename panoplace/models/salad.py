"""SALAD aggregation (Izquierdo & Civera, CVPR 2024, arXiv:2311.15937): optimal-transport
assignment of local features to clusters, with a dustbin, plus a global token.

For local features ``x_i`` (``n = h*w`` locations) and a global token ``t`` (DINOv2's class
token; a CNN has none, then the mean of the local features is used):

- ``f_i = cluster_features(x_i)`` (``C -> 512 -> l``, 1x1 convs, ReLU, dropout in training);
- scores ``S_ji = score(x_i)`` (``C -> 512 -> m``) against ``m`` clusters;
- a dustbin row with the learned score ``z`` (``dust_bin``) is appended, and ``sinkhorn_iters``
  (3) log-domain Sinkhorn iterations give the transport plan ``P`` between the ``m + 1`` rows
  with mass ``1/(m+n)`` each (the dustbin ``(n-m)/(m+n)``) and the ``n`` features with mass
  ``1/(m+n)`` each; ``P`` is scaled by ``m + n`` and the dustbin row dropped;
- ``V_jk = sum_i P_ji f_ik`` (the ``l``-vector of cluster ``j``), each cluster's vector
  L2-normalised; ``g = token_features(t)`` (``C -> 512 -> token_dim``) L2-normalised;
- the descriptor is ``[g, V]`` (``V`` flattened feature-major: index ``k * m + j``), L2-normalised:
  ``D = token_dim + l * m`` (published: 256 + 128 * 64 = 8448).

Needs more locations than clusters (``n > m``; the dustbin's mass is ``n - m``).

Parameter names follow the official code (``token_features.{0,2}``, ``cluster_features.{0,3}``,
``score.{0,3}``, ``dust_bin``).

Crop fusion: ``raw`` is ``[g_raw, V_raw]`` un-normalised; ``add`` sums them over the crops (the
transport plan is solved per crop, so each crop brings the same mass; the cluster sums are then
those of all the panorama's features, as with NetVLAD) and normalises once: invariant to the
order of the crops. ``concat``/``per-crop`` give SALAD's own per-crop descriptors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from panoplace.errors import InputError
from panoplace.models.fusion import Aggregator


@dataclass
class SaladParams:
    """SALAD's sizes (defaults: the published DINOv2 ViT-B/14 model)."""

    num_clusters: int = 64
    cluster_dim: int = 128
    token_dim: int = 256
    hidden: int = 512
    dropout: float = 0.3
    sinkhorn_iters: int = 3

    def __post_init__(self) -> None:
        for name in ("num_clusters", "cluster_dim", "token_dim", "hidden", "sinkhorn_iters"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"salad {name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise InputError(f"salad dropout must be in [0, 1), got {self.dropout}")


def log_optimal_transport(scores: torch.Tensor, dustbin: torch.Tensor, iters: int) -> torch.Tensor:
    """Log transport plan between ``m`` clusters + a dustbin and ``n`` features, times ``m + n``.

    Marginals: each cluster and each feature ``1/(m+n)``, the dustbin ``(n-m)/(m+n)``; the
    dustbin's score is ``dustbin`` for every feature. Log-domain Sinkhorn, ``iters`` rounds of
    row then column scaling.

    Shape:
        - scores: ``(N, m, n)``; dustbin: scalar tensor.
        - Output: ``(N, m + 1, n)`` (last row: the dustbin), ``log(P * (m + n))``.
    """
    b, m, n = scores.shape
    if n <= m:
        raise InputError(f"SALAD needs more local features than clusters: {n} locations for {m} clusters "
                         "(use larger crops or fewer clusters)")
    z = torch.cat([scores, dustbin.to(scores.dtype).expand(b, 1, n)], dim=1)  # (N, m+1, n)
    norm = -math.log(m + n)
    log_mu = torch.full((m + 1,), norm, dtype=scores.dtype, device=scores.device)
    log_mu[m] = norm + math.log(n - m)
    log_nu = torch.full((n,), norm, dtype=scores.dtype, device=scores.device)
    u = torch.zeros(b, m + 1, dtype=scores.dtype, device=scores.device)
    v = torch.zeros(b, n, dtype=scores.dtype, device=scores.device)
    for _ in range(iters):
        u = log_mu - torch.logsumexp(z + v.unsqueeze(1), dim=2)
        v = log_nu - torch.logsumexp(z + u.unsqueeze(2), dim=1)
    return z + u.unsqueeze(2) + v.unsqueeze(1) - norm


class SALAD(Aggregator):
    """SALAD head over ``dim``-channel local features and a ``dim``-channel global token.

    Attributes:
        out_dim: ``token_dim + cluster_dim * num_clusters``.
        uses_token: True: :class:`~panoplace.models.build.PlaceModel` passes the backbone's
            global token to :meth:`raw`.

    Shape:
        - Input: ``(N, dim, h, w)`` and optionally ``(N, dim)``.
        - Output: ``(N, out_dim)``, L2-normalised.
    """

    uses_token = True

    def __init__(self, dim: int, params: Optional[SaladParams] = None) -> None:
        super().__init__()
        p = params or SaladParams()
        if dim < 1:
            raise InputError(f"salad needs dim >= 1, got {dim}")
        self.dim = int(dim)
        self.params = p
        self.num_clusters = int(p.num_clusters)
        self.cluster_dim = int(p.cluster_dim)
        self.token_dim = int(p.token_dim)
        self.iters = int(p.sinkhorn_iters)
        hid = int(p.hidden)

        def drop() -> nn.Module:
            return nn.Dropout(float(p.dropout)) if p.dropout > 0 else nn.Identity()

        self.token_features = nn.Sequential(nn.Linear(self.dim, hid), nn.ReLU(), nn.Linear(hid, self.token_dim))
        self.cluster_features = nn.Sequential(nn.Conv2d(self.dim, hid, 1), drop(), nn.ReLU(),
                                              nn.Conv2d(hid, self.cluster_dim, 1))
        self.score = nn.Sequential(nn.Conv2d(self.dim, hid, 1), drop(), nn.ReLU(),
                                   nn.Conv2d(hid, self.num_clusters, 1))
        self.dust_bin = nn.Parameter(torch.tensor(1.0))

    @property
    def out_dim(self) -> int:
        return self.token_dim + self.cluster_dim * self.num_clusters

    def assignment(self, x: torch.Tensor) -> torch.Tensor:
        """Transport plan of the features to the clusters, dustbin dropped, times ``m + n``.

        Shape: ``(N, dim, h, w)`` -> ``(N, m, h*w)``.
        """
        return torch.exp(log_optimal_transport(self.score(x).flatten(2), self.dust_bin, self.iters))[:, :-1]

    def raw(self, x: torch.Tensor, token: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``[g, V]`` before normalisation.

        Shape:
            - x: ``(N, dim, h, w)``; token: ``(N, dim)`` or None (the mean of ``x``).
            - Output: ``(N, token_dim + cluster_dim * num_clusters)``.
        """
        if x.dim() != 4 or x.shape[1] != self.dim:
            raise InputError(f"SALAD input must be (N, {self.dim}, h, w), got {tuple(x.shape)}")
        if token is None:
            token = x.mean(dim=(2, 3))
        elif token.shape != (x.shape[0], self.dim):
            raise InputError(f"SALAD token must be ({x.shape[0]}, {self.dim}), got {tuple(token.shape)}")
        f = self.cluster_features(x).flatten(2)  # (N, l, n)
        p = self.assignment(x)  # (N, m, n)
        v = torch.bmm(f, p.transpose(1, 2))  # (N, l, m)
        return torch.cat([self.token_features(token), v.flatten(1)], dim=1)

    def finalize(self, raw: torch.Tensor) -> torch.Tensor:
        """Normalise ``g`` and each cluster's vector, concatenate, L2.

        Shape: ``(N, out_dim)`` -> ``(N, out_dim)``.
        """
        if raw.dim() != 2 or raw.shape[1] != self.out_dim:
            raise InputError(f"SALAD raw input must be (N, {self.out_dim}), got {tuple(raw.shape)}")
        g = F.normalize(raw[:, : self.token_dim], p=2, dim=1)
        v = raw[:, self.token_dim:].reshape(-1, self.cluster_dim, self.num_clusters)
        v = F.normalize(v, p=2, dim=1).flatten(1)
        return F.normalize(torch.cat([g, v], dim=1), p=2, dim=1)

    def combine_crops(self, raw: torch.Tensor) -> torch.Tensor:
        """Sum over the crops. Shape: ``(B, n_crops, out_dim)`` -> ``(B, out_dim)``."""
        return raw.sum(dim=1)

    def forward(self, x: torch.Tensor, token: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``finalize(raw(x, token))``. Shape: ``(N, dim, h, w)`` -> ``(N, out_dim)``."""
        return self.finalize(self.raw(x, token))

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, num_clusters={self.num_clusters}, cluster_dim={self.cluster_dim}, "
                f"token_dim={self.token_dim}, sinkhorn_iters={self.iters}")
