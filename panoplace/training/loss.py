"""Losses over (query, positive, negatives) tuples: the weakly supervised triplet ranking loss
(NetVLAD) and the multi-similarity loss (MixVPR, BoQ, SALAD train with it).

Triplet ranking loss (NetVLAD, arXiv:1511.07247, eq. 7).

For a query ``q``, its best positive ``p`` (the potential positive nearest in descriptor space)
and negatives ``n_j``::

    L = sum_j max(0, d(q, p) + m - d(q, n_j)),   d = squared Euclidean distance,

with margin ``m`` (0.1 in the paper). Descriptors are L2-normalised, so ``d`` lies in
``[0, 4]``. Batched over queries and negatives in one tensor expression; padded negatives
(a query may have fewer than ``M`` hard negatives) are masked out.

Multi-similarity loss (Wang et al., CVPR 2019, arXiv:1904.06627), with its pair mining, over
cosine similarities ``s`` of the query to its positive ``s_p`` and negatives ``s_n``:

- mining: a negative counts when ``s_n + epsilon > s_p`` (harder than the positive up to
  ``epsilon``); the positive counts when ``s_p - epsilon < max s_n`` over the real negatives;
- ``L = 1/alpha log(1 + sum_P exp(-alpha (s_p - base))) + 1/beta log(1 + sum_N exp(beta (s_n - base)))``
  over the kept pairs (an empty sum gives 0).

Defaults ``alpha=1, beta=50, base=0, epsilon=0.1`` are those the GSV-Cities framework trains
MixVPR, BoQ and SALAD with (pytorch-metric-learning's ``MultiSimilarityLoss`` and miner); the
paper's own are ``alpha=2, beta=50, base=0.5``. With one positive per query (what the
position-based miner gives) the positive term has at most one pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from panoplace.errors import InputError

REDUCTIONS = ("mean", "sum", "none")
DEFAULT_MARGIN = 0.1
LOSSES = ("triplet", "multi-similarity")


def squared_distances(query: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances of each query to its own set of descriptors.

    Shape:
        - query: ``(B, D)``; others: ``(B, M, D)``.
        - Output: ``(B, M)``.
    """
    return (others - query.unsqueeze(1)).pow(2).sum(dim=-1)


def triplet_ranking_loss(
    query: torch.Tensor,
    positive: torch.Tensor,
    negatives: torch.Tensor,
    margin: float = DEFAULT_MARGIN,
    mask: Optional[torch.Tensor] = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Triplet ranking loss summed over each query's negatives.

    Args:
        query, positive, negatives: descriptors (L2-normalised in practice).
        margin: ``m`` in squared-distance units.
        mask: True for real negatives, False for padding (None = all real).
        reduction: ``mean`` (sum over negatives, mean over the B queries), ``sum`` (over
            everything) or ``none`` (the ``(B, M)`` hinge terms, 0 where masked).

    Shape:
        - query: ``(B, D)``; positive: ``(B, D)``; negatives: ``(B, M, D)``; mask: ``(B, M)`` bool.
        - Output: scalar, or ``(B, M)`` with ``reduction="none"``.
    """
    if reduction not in REDUCTIONS:
        raise InputError(f"unknown reduction {reduction!r}; choose one of {list(REDUCTIONS)}")
    if not margin >= 0:
        raise InputError(f"margin must be >= 0, got {margin}")
    if query.dim() != 2 or positive.shape != query.shape or negatives.dim() != 3 \
            or negatives.shape[0] != query.shape[0] or negatives.shape[2] != query.shape[1]:
        raise InputError(f"triplet loss expects query (B, D), positive (B, D) and negatives (B, M, D); got "
                         f"{tuple(query.shape)}, {tuple(positive.shape)} and {tuple(negatives.shape)}")
    d_pos = (query - positive).pow(2).sum(dim=1, keepdim=True)  # (B, 1)
    d_neg = squared_distances(query, negatives)  # (B, M)
    hinge = torch.relu(d_pos + margin - d_neg)
    if mask is not None:
        if mask.shape != d_neg.shape:
            raise InputError(f"negative mask must be {tuple(d_neg.shape)}, got {tuple(mask.shape)}")
        hinge = hinge * mask.to(hinge.dtype)
    if reduction == "none":
        return hinge
    total = hinge.sum()
    return total / max(query.shape[0], 1) if reduction == "mean" else total


@dataclass
class MultiSimilarityParams:
    """Multi-similarity loss parameters (see the module docstring)."""

    alpha: float = 1.0
    beta: float = 50.0
    base: float = 0.0
    epsilon: float = 0.1

    def __post_init__(self) -> None:
        if not (self.alpha > 0 and self.beta > 0 and self.epsilon >= 0):
            raise InputError(f"multi-similarity needs alpha > 0, beta > 0 and epsilon >= 0, got "
                             f"{self.alpha}, {self.beta}, {self.epsilon}")


def multi_similarity_loss(
    query: torch.Tensor,
    positive: torch.Tensor,
    negatives: torch.Tensor,
    params: Optional[MultiSimilarityParams] = None,
    mask: Optional[torch.Tensor] = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Multi-similarity loss with its pair mining, batched over queries and negatives.

    Args:
        query, positive, negatives: descriptors (cosine similarity after L2 normalisation).
        params: alpha, beta, base, epsilon (default: :class:`MultiSimilarityParams`).
        mask: True for real negatives, False for padding (None = all real).
        reduction: ``mean`` (over the B queries), ``sum`` or ``none`` (the ``(B,)`` losses).

    Shape:
        - query: ``(B, D)``; positive: ``(B, D)``; negatives: ``(B, M, D)``; mask: ``(B, M)`` bool.
        - Output: scalar, or ``(B,)`` with ``reduction="none"``.
    """
    p = params or MultiSimilarityParams()
    if reduction not in REDUCTIONS:
        raise InputError(f"unknown reduction {reduction!r}; choose one of {list(REDUCTIONS)}")
    if query.dim() != 2 or positive.shape != query.shape or negatives.dim() != 3 \
            or negatives.shape[0] != query.shape[0] or negatives.shape[2] != query.shape[1]:
        raise InputError(f"multi-similarity loss expects query (B, D), positive (B, D) and negatives (B, M, D); "
                         f"got {tuple(query.shape)}, {tuple(positive.shape)} and {tuple(negatives.shape)}")
    q = F.normalize(query, p=2, dim=1)
    s_p = (q * F.normalize(positive, p=2, dim=1)).sum(dim=1)  # (B,)
    s_n = torch.einsum("bd,bmd->bm", q, F.normalize(negatives, p=2, dim=2))  # (B, M)
    real = torch.ones_like(s_n, dtype=torch.bool) if mask is None else mask.to(torch.bool)
    if real.shape != s_n.shape:
        raise InputError(f"negative mask must be {tuple(s_n.shape)}, got {tuple(real.shape)}")
    with torch.no_grad():  # mining decides which pairs count; it is not differentiated
        keep_n = real & (s_n + p.epsilon > s_p.unsqueeze(1))
        hardest = s_n.masked_fill(~real, float("-inf")).amax(dim=1)
        keep_p = s_p - p.epsilon < hardest
    pos_term = torch.log1p(torch.exp(-p.alpha * (s_p - p.base)) * keep_p) / p.alpha
    neg_term = torch.log1p((torch.exp(p.beta * (s_n - p.base)) * keep_n).sum(dim=1)) / p.beta
    per_query = pos_term + neg_term
    if reduction == "none":
        return per_query
    total = per_query.sum()
    return total / max(query.shape[0], 1) if reduction == "mean" else total
