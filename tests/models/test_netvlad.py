"""NetVLAD: vectorised layer vs the per-cluster loop reference, and its initialisation formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from netvlad_reference import netvlad_loop

from panoplace.errors import InputError
from panoplace.models.netvlad import NetVLAD


def _clusters(rng: np.random.Generator, k: int, c: int, m: int = 400):
    desc = rng.standard_normal((m, c)).astype(np.float32)
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    cent = desc[rng.choice(m, k, replace=False)] * 0.8
    return cent.astype(np.float32), desc


@pytest.mark.parametrize("vladv2", [False, True])
@pytest.mark.parametrize("initialised", [False, True])
def test_vectorised_equals_loop_reference(vladv2: bool, initialised: bool, rng: np.random.Generator) -> None:
    layer = NetVLAD(num_clusters=8, dim=16, vladv2=vladv2)
    if initialised:
        layer.init_from_clusters(*_clusters(rng, 8, 16))
    x = torch.randn(5, 16, 6, 7)
    with torch.no_grad():
        got = layer(x)
        want = netvlad_loop(x, layer.conv, layer.centroids)
    assert got.shape == (5, 8 * 16)
    assert torch.allclose(got, want, atol=1e-5, rtol=0)
    # un-normalised VLAD too: raw() against the loop without its normalisations
    with torch.no_grad():
        raw = layer.raw(x)
        xn = F.normalize(x, dim=1)
        a = F.softmax(layer.conv(xn).flatten(2), dim=1)
        for k in range(8):
            manual = (a[:, k:k + 1, :] * (xn.flatten(2) - layer.centroids[k].view(1, -1, 1))).sum(-1)
            assert torch.allclose(raw[:, k], manual, atol=1e-5)


def test_raw_finalize_split_and_shapes() -> None:
    layer = NetVLAD(num_clusters=4, dim=8)
    x = torch.randn(3, 8, 4, 4)
    raw = layer.raw(x)
    assert raw.shape == (3, 4, 8)
    out = layer.finalize(raw)
    assert out.shape == (3, 32) and layer.out_dim == 32
    assert torch.allclose(out, layer(x))
    assert torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-6)
    # intra-normalised blocks all have the same norm 1/sqrt(K)
    assert torch.allclose(out.view(3, 4, 8).norm(dim=2), torch.full((3, 4), 0.5), atol=1e-5)


def test_wrong_input_shape_is_an_input_error() -> None:
    layer = NetVLAD(num_clusters=4, dim=8)
    with pytest.raises(InputError, match=r"\(N, 8, h, w\)"):
        layer(torch.randn(2, 9, 3, 3))


def test_vladv1_init_matches_direct_computation(rng: np.random.Generator) -> None:
    cent, desc = _clusters(rng, 6, 12)
    layer = NetVLAD(num_clusters=6, dim=12, vladv2=False)
    alpha = layer.init_from_clusters(cent, desc, vladv2=False)
    # direct: pytorch-NetVlad's numpy formula
    c_hat = cent / np.linalg.norm(cent, axis=1, keepdims=True)
    dots = np.sort(c_hat @ desc.T, axis=0)[::-1]
    want_alpha = -np.log(0.01) / np.mean(dots[0] - dots[1])
    assert alpha == pytest.approx(want_alpha, rel=1e-6)
    assert layer.conv.bias is None
    assert np.allclose(layer.conv.weight.detach().numpy()[:, :, 0, 0], want_alpha * c_hat, atol=1e-5)
    assert np.allclose(layer.centroids.detach().numpy(), cent)


def test_vladv2_init_matches_direct_computation(rng: np.random.Generator) -> None:
    cent, desc = _clusters(rng, 6, 12)
    layer = NetVLAD(num_clusters=6, dim=12, vladv2=True)
    alpha = layer.init_from_clusters(cent, desc)
    d64, c64 = desc.astype(np.float64), cent.astype(np.float64)
    sq = ((d64[:, None, :] - c64[None, :, :]) ** 2).sum(-1)  # (M, K)
    two = np.sort(sq, axis=1)[:, :2]
    want_alpha = -np.log(0.01) / np.mean(two[:, 1] - two[:, 0])
    assert alpha == pytest.approx(want_alpha, rel=1e-6)
    assert np.allclose(layer.conv.weight.detach().numpy()[:, :, 0, 0], 2 * want_alpha * cent, atol=1e-5)
    assert np.allclose(layer.conv.bias.detach().numpy(), -want_alpha * (cent ** 2).sum(1), atol=1e-5)
    # consequence: the soft assignment is softmax(-alpha * ||x - c||^2)
    x = torch.from_numpy(desc[:20]).T.reshape(1, 12, 4, 5)
    with torch.no_grad():
        a = layer.soft_assign(x)[0].T.numpy()  # (20, K)
    want = np.exp(-want_alpha * sq[:20])
    assert np.allclose(a, want / want.sum(1, keepdims=True), atol=1e-5)


def test_alpha_makes_nearest_cluster_about_100x_likelier(rng: np.random.Generator) -> None:
    cent, desc = _clusters(rng, 6, 12)
    layer = NetVLAD(num_clusters=6, dim=12)
    alpha = layer.init_from_clusters(cent, desc)
    c_hat = cent / np.linalg.norm(cent, axis=1, keepdims=True)
    dots = np.sort(desc @ c_hat.T, axis=1)[:, ::-1]
    assert math.exp(alpha * np.mean(dots[:, 0] - dots[:, 1])) == pytest.approx(100.0, rel=1e-4)


def test_init_refuses_mismatched_setup(rng: np.random.Generator) -> None:
    cent, desc = _clusters(rng, 6, 12)
    layer = NetVLAD(num_clusters=6, dim=12, vladv2=False)
    with pytest.raises(InputError, match="vladv2"):
        layer.init_from_clusters(cent, desc, vladv2=True)
    with pytest.raises(InputError, match="expected 6 centroids"):
        layer.init_from_clusters(cent[:5], desc)
    with pytest.raises(InputError, match=r"\(M, 12\)"):
        layer.init_from_clusters(cent, desc[:, :5])
