"""GeM/avg/max pooling and the fusion of crop descriptors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from panoplace.errors import InputError
from panoplace.models.fusion import fuse, fused_dim
from panoplace.models.netvlad import NetVLAD
from panoplace.models.pooling import AvgPool, GeM, MaxPool


def _aggregators(dim: int):
    return {"netvlad": NetVLAD(num_clusters=5, dim=dim), "gem": GeM(dim, p=3.0),
            "avg": AvgPool(dim), "max": MaxPool(dim)}


def test_gem_with_p1_equals_average_pooling(feature_maps: torch.Tensor) -> None:
    gem, avg = GeM(16, p=1.0), AvgPool(16)
    assert torch.allclose(gem(feature_maps), avg(feature_maps), atol=1e-6)
    assert torch.allclose(gem.raw(feature_maps), avg.raw(feature_maps), atol=1e-6)


def test_gem_matches_formula_and_p_is_learnable(feature_maps: torch.Tensor) -> None:
    gem = GeM(16, p=3.0)
    want = F.normalize(feature_maps.clamp(min=1e-6).pow(3).mean((2, 3)).pow(1 / 3), dim=1)
    assert torch.allclose(gem(feature_maps), want, atol=1e-6)
    gem(feature_maps).sum().backward()
    assert gem.p.grad is not None and gem.p.requires_grad


def test_max_and_avg_pooling(feature_maps: torch.Tensor) -> None:
    assert torch.allclose(MaxPool(16)(feature_maps), F.normalize(feature_maps.amax((2, 3)), dim=1))
    assert torch.allclose(AvgPool(16)(feature_maps), F.normalize(feature_maps.mean((2, 3)), dim=1))
    with pytest.raises(InputError, match=r"\(N, 16, h, w\)"):
        AvgPool(16)(feature_maps[:, :3])


@pytest.mark.parametrize("name", ["netvlad", "gem", "avg", "max"])
def test_add_fusion_is_invariant_to_circular_shift_and_concat_is_not(name: str) -> None:
    agg = _aggregators(8)[name]
    feats = torch.relu(torch.randn(2 * 4, 8, 3, 3))  # B=2 panoramas x K=4 crops
    with torch.no_grad():
        raw = agg.raw(feats).reshape(2, 4, *agg.raw(feats).shape[1:])
        shifted = torch.roll(raw, shifts=1, dims=1)
        add, add_shift = fuse(raw, agg, "add"), fuse(shifted, agg, "add")
        cat, cat_shift = fuse(raw, agg, "concat"), fuse(shifted, agg, "concat")
    assert add.shape == (2, agg.out_dim)
    assert torch.allclose(add, add_shift, atol=1e-6)
    assert cat.shape == (2, 4 * agg.out_dim)
    assert not torch.allclose(cat, cat_shift, atol=1e-3)
    # concat of a shifted panorama is the shifted concatenation
    assert torch.allclose(cat_shift.view(2, 4, -1), torch.roll(cat.view(2, 4, -1), 1, dims=1), atol=1e-6)


@pytest.mark.parametrize("name", ["netvlad", "gem", "avg", "max"])
def test_add_fusion_equals_aggregating_all_local_features_at_once(name: str) -> None:
    agg = _aggregators(8)[name]
    crops = torch.relu(torch.randn(3, 8, 4, 5))  # 3 crops of one panorama, same size
    with torch.no_grad():
        fused = fuse(agg.raw(crops).unsqueeze(0), agg, "add")
        whole = agg(torch.cat(list(crops), dim=-1).unsqueeze(0))  # the crops side by side
    assert torch.allclose(fused, whole, atol=1e-5)


def test_per_crop_and_concat_keep_each_crop_descriptor() -> None:
    agg = NetVLAD(num_clusters=4, dim=8)
    feats = torch.randn(6, 8, 3, 3)
    with torch.no_grad():
        single = agg(feats)  # (6, 32)
        raw = agg.raw(feats).reshape(2, 3, 4, 8)
        per = fuse(raw, agg, "per-crop")
        cat = fuse(raw, agg, "concat")
    assert per.shape == (2, 3, 32)
    assert torch.allclose(per.reshape(6, 32), single, atol=1e-6)
    assert torch.allclose(cat, single.reshape(2, 96) / 3 ** 0.5, atol=1e-6)


def test_fused_dim_and_unknown_mode() -> None:
    assert fused_dim(10, 4, "add") == 10
    assert fused_dim(10, 4, "concat") == 40
    assert fused_dim(10, 4, "per-crop") == 10
    with pytest.raises(InputError, match="add"):
        fuse(torch.zeros(1, 2, 3), AvgPool(3), "mean")
