"""Per-crop fusion (sum over crops + L2): one formula for numpy and torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from panoplace.crop_fusion import fuse_crops, l2_normalise
from panoplace.errors import InputError


def test_numpy_and_torch_give_the_sum_over_crops_normalised() -> None:
    x = np.random.default_rng(0).standard_normal((7, 4, 33)).astype(np.float32)
    x[3] = 0.0  # an all-zero image stays zero
    s = x.sum(axis=1)
    want = (s / np.maximum(np.linalg.norm(s, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    got = fuse_crops(x)
    assert got.dtype == np.float32 and got.shape == (7, 33)
    np.testing.assert_array_equal(got, want)
    assert not got[3].any()
    np.testing.assert_allclose(np.linalg.norm(np.delete(got, 3, axis=0), axis=1), 1.0, rtol=1e-6)
    t = torch.from_numpy(x).requires_grad_(True)
    out = fuse_crops(t)
    assert torch.equal(out, F.normalize(t.sum(dim=1), p=2, dim=1))  # bit-identical to what training used
    np.testing.assert_allclose(out.detach().numpy(), want, rtol=0, atol=1e-6)
    out[:, 0].sum().backward()
    assert t.grad is not None and t.grad.abs().sum() > 0  # gradients reach every crop
    assert (t.grad[:, 0] != 0).any() and (t.grad[:, 3] != 0).any()


def test_fused_descriptors_pass_unchanged_and_bad_shapes_are_refused() -> None:
    d = np.random.default_rng(1).random((3, 5)).astype(np.float32)
    assert fuse_crops(d) is d
    t = torch.ones(3, 5)
    assert fuse_crops(t) is t
    with pytest.raises(InputError, match=r"\(N, D\) or \(N, K, D\)"):
        fuse_crops(np.zeros(5))
    with pytest.raises(InputError, match=r"\(N, D\) or \(N, K, D\)"):
        fuse_crops(torch.zeros(1, 2, 3, 4))
    np.testing.assert_allclose(np.linalg.norm(l2_normalise(d), axis=1), 1.0, rtol=1e-6)
