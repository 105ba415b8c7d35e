"""Triplet ranking loss on hand-made descriptors."""

from __future__ import annotations

import pytest
import torch

from panoplace.errors import InputError
from panoplace.training.loss import triplet_ranking_loss


def _unit(*xy: float) -> torch.Tensor:
    v = torch.tensor(xy, dtype=torch.float64)
    return v / v.norm()


def test_values_on_hand_made_descriptors() -> None:
    q = torch.stack([_unit(1, 0), _unit(0, 1)])  # (2, 2)
    p = torch.stack([_unit(1, 0), _unit(1, 1)])  # d(q0,p0) = 0, d(q1,p1) = 2 - sqrt(2)
    n = torch.stack([
        torch.stack([_unit(0, 1), _unit(1, 0.1)]),  # d = 2 (no violation), d = 2 - 2/sqrt(1.01)
        torch.stack([_unit(-1, 0), _unit(0, 1)]),  # d = 2, d = 0
    ])
    m = 0.1
    d01 = 2 - 2 / 1.01 ** 0.5
    d1p = 2 - 2 ** 0.5
    want = torch.tensor([[0.0, 0.0 + m - d01], [max(0.0, d1p + m - 2), d1p + m - 0.0]], dtype=torch.float64)
    terms = triplet_ranking_loss(q, p, n, margin=m, reduction="none")
    assert torch.allclose(terms, want)
    assert torch.isclose(triplet_ranking_loss(q, p, n, margin=m, reduction="sum"), want.sum())
    assert torch.isclose(triplet_ranking_loss(q, p, n, margin=m), want.sum() / 2)  # mean over queries


def test_mask_drops_padded_negatives_and_zero_margin() -> None:
    q = _unit(1, 0)[None]
    p = _unit(1, 1)[None]
    n = torch.stack([_unit(1, 0.5), _unit(1, 0)])[None]  # both closer than p
    mask = torch.tensor([[True, False]])
    full = triplet_ranking_loss(q, p, n, margin=0.0, reduction="none")
    assert (full > 0).all()
    masked = triplet_ranking_loss(q, p, n, margin=0.0, mask=mask, reduction="none")
    assert masked[0, 1] == 0 and masked[0, 0] == full[0, 0]
    # an easy triplet (negative far beyond the margin) gives exactly zero loss and gradient
    qq = _unit(1, 0)[None].requires_grad_(True)
    loss = triplet_ranking_loss(qq, _unit(1, 0)[None], _unit(-1, 0)[None, None], margin=0.1)
    loss.backward()
    assert loss.item() == 0 and qq.grad.abs().max() == 0


def test_gradient_pulls_positive_and_pushes_negative() -> None:
    q = _unit(1, 0)[None]
    p = _unit(1, 1)[None].clone().requires_grad_(True)
    n = _unit(1, 0.2)[None, None].clone().requires_grad_(True)
    triplet_ranking_loss(q, p, n).backward()
    # descending the gradient moves p towards q and n away from q
    assert torch.dot(-p.grad[0], q[0] - p[0].detach()) > 0
    assert torch.dot(-n.grad[0, 0], q[0] - n[0, 0].detach()) < 0


def test_bad_shapes_and_options_raise() -> None:
    q = torch.zeros(2, 4)
    with pytest.raises(InputError, match=r"\(B, M, D\)"):
        triplet_ranking_loss(q, q, torch.zeros(2, 4))
    with pytest.raises(InputError, match="reduction"):
        triplet_ranking_loss(q, q, torch.zeros(2, 3, 4), reduction="avg")
    with pytest.raises(InputError, match="mask"):
        triplet_ranking_loss(q, q, torch.zeros(2, 3, 4), mask=torch.ones(2, 2, dtype=torch.bool))
