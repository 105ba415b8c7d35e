"""Weakly supervised triplet ranking loss (NetVLAD, arXiv:1511.07247, eq. 7).

For a query ``q``, its best positive ``p`` (the potential positive nearest in descriptor space)
and negatives ``n_j``::

    L = sum_j max(0, d(q, p) + m - d(q, n_j)),   d = squared Euclidean distance,

with margin ``m`` (0.1 in the paper). Descriptors are L2-normalised, so ``d`` lies in
``[0, 4]``. Batched over queries and negatives in one tensor expression; padded negatives
(a query may have fewer than ``M`` hard negatives) are masked out.
"""

from __future__ import annotations

from typing import Optional

import torch

from panoplace.errors import InputError

REDUCTIONS = ("mean", "sum", "none")
DEFAULT_MARGIN = 0.1


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
