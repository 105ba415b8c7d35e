"""Triplet ranking and multi-similarity losses on hand-made descriptors."""

from __future__ import annotations

import math

import pytest
import torch

from panoplace.errors import InputError
from panoplace.training.loss import MultiSimilarityParams, multi_similarity_loss, triplet_ranking_loss


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


# ---- multi-similarity loss -------------------------------------------------------------------

def _ms_loop(q, p, negs, mask, alpha, beta, base, eps):
    """The multi-similarity loss and its mining written query by query, pair by pair."""
    out = []
    for i in range(q.shape[0]):
        qi = q[i] / q[i].norm()
        sp = float(qi @ (p[i] / p[i].norm()))
        sn = [float(qi @ (negs[i, j] / negs[i, j].norm())) for j in range(negs.shape[1]) if mask[i, j]]
        kept_n = [s for s in sn if s + eps > sp]
        keep_p = bool(sn) and sp - eps < max(sn)
        pos = math.log(1 + (math.exp(-alpha * (sp - base)) if keep_p else 0.0)) / alpha
        neg = math.log(1 + sum(math.exp(beta * (s - base)) for s in kept_n)) / beta
        out.append(pos + neg)
    return torch.tensor(out, dtype=torch.float64)


def test_multi_similarity_equals_the_pairwise_definition() -> None:
    g = torch.Generator().manual_seed(3)
    q, p = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    p[0] = q[0] + 0.01 * p[0]  # an easy query: its positive is kept out by the mining
    negs = torch.randn(5, 6, 8, generator=g)
    mask = torch.rand(5, 6, generator=g) > 0.3
    for prm in (MultiSimilarityParams(), MultiSimilarityParams(alpha=2.0, beta=50.0, base=0.5, epsilon=0.1)):
        got = multi_similarity_loss(q, p, negs, prm, mask, reduction="none")
        want = _ms_loop(q.double(), p.double(), negs.double(), mask, prm.alpha, prm.beta, prm.base, prm.epsilon)
        assert torch.allclose(got.double(), want, atol=1e-5)
        assert torch.isclose(multi_similarity_loss(q, p, negs, prm, mask), got.mean())
    assert float(multi_similarity_loss(q[:1], p[:1], negs[:1], mask=mask[:1], reduction="none")[0]) >= 0


def test_multi_similarity_gradient_pulls_positive_and_pushes_hard_negative() -> None:
    q = torch.tensor([[1.0, 0.0]])
    p = torch.tensor([[0.6, 0.8]], requires_grad=True)
    n = torch.tensor([[[0.8, 0.6]]], requires_grad=True)
    multi_similarity_loss(q, p, n).backward()
    assert p.grad is not None and n.grad is not None
    assert p.grad[0, 0] < 0 and n.grad[0, 0, 0] > 0  # descent moves p towards q and n away from it
    with pytest.raises(InputError, match="alpha > 0"):
        MultiSimilarityParams(alpha=0)
