"""Reference NetVLAD in the per-cluster-loop formulation of pytorch-NetVlad (netvlad.py), used
by the equality tests and by benchmarks/bench_netvlad.py. Deliberately unoptimised."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def netvlad_loop(x: torch.Tensor, conv: nn.Conv2d, centroids: torch.Tensor,
                 normalize_input: bool = True) -> torch.Tensor:
    """NetVLAD descriptor with one residual tensor per cluster.

    Shape:
        - x: ``(N, C, h, w)``; centroids: ``(K, C)``.
        - Output: ``(N, K * C)``.
    """
    n, c = x.shape[:2]
    k = centroids.shape[0]
    if normalize_input:
        x = F.normalize(x, p=2, dim=1)
    soft_assign = F.softmax(conv(x).view(n, k, -1), dim=1)  # (N, K, L)
    x_flat = x.view(n, c, -1)  # (N, C, L)
    vlad = torch.zeros(n, k, c, dtype=x.dtype, device=x.device)
    for j in range(k):
        residual = x_flat.unsqueeze(1) - centroids[j].view(1, 1, c, 1)  # (N, 1, C, L)
        residual *= soft_assign[:, j:j + 1, :].unsqueeze(2)  # in place, as pytorch-NetVlad
        vlad[:, j:j + 1, :] = residual.sum(dim=-1)
    vlad = F.normalize(vlad, p=2, dim=2)
    return F.normalize(vlad.reshape(n, -1), p=2, dim=1)


class LoopNetVLAD(nn.Module):
    """pytorch-NetVlad's NetVLAD module layout (``conv``, ``centroids``) with the loop forward,
    to build checkpoints in that format."""

    def __init__(self, num_clusters: int, dim: int, vladv2: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, num_clusters, kernel_size=1, bias=vladv2)
        self.centroids = nn.Parameter(torch.rand(num_clusters, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return netvlad_loop(x, self.conv, self.centroids)
