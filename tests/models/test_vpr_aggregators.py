"""GeM+FC, MixVPR, BoQ and SALAD against direct computations of their formulas, their crop
fusion, registry and error lines."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import vpr_reference as ref
from panoplace.config import ModelConfig
from panoplace.errors import InputError
from panoplace.models.aggregators import parse_params
from panoplace.models.boq import BoQ, BoQParams
from panoplace.models.build import build_model
from panoplace.models.fusion import fuse
from panoplace.models.mixvpr import MixVPR, MixVPRParams
from panoplace.models.pooling import GeMFC, GeMFCParams
from panoplace.models.salad import SALAD, SaladParams, log_optimal_transport


def _randomise(module: torch.nn.Module) -> None:
    """Non-trivial values everywhere (LayerNorm affine too)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("dust_bin") or name == "p":
                continue
            p.copy_(torch.randn_like(p) * (0.3 if p.dim() > 1 else 0.2) + (1.0 if "norm" in name and name.endswith("weight") else 0.0))


def test_gem_fc_matches_cosplace_formula(feature_maps: torch.Tensor) -> None:
    agg = GeMFC(16, GeMFCParams(fc_dim=8, p=3.0))
    _randomise(agg)
    want = ref.gem_fc(feature_maps, 3.0, agg.fc.weight, agg.fc.bias)
    assert torch.allclose(agg(feature_maps).double(), want, atol=1e-5)
    assert agg.out_dim == 8


def test_gem_fc_add_fusion_is_the_head_over_all_local_features() -> None:
    agg = GeMFC(16, GeMFCParams(fc_dim=8))
    _randomise(agg)
    crops = torch.relu(torch.randn(2, 3, 16, 5, 5))  # B=2 panoramas of K=3 crops
    raw = agg.raw(crops.flatten(0, 1)).reshape(2, 3, 16)
    whole = torch.cat(list(crops.unbind(1)), dim=-1)  # the crops side by side: (2, 16, 5, 15)
    assert torch.allclose(fuse(raw, agg, "add"), agg(whole), atol=1e-5)


def test_mixvpr_matches_formula() -> None:
    agg = MixVPR(12, MixVPRParams(out_channels=6, out_rows=3, mix_depth=2, in_h=4, in_w=5))
    _randomise(agg)
    x = torch.randn(3, 12, 4, 5)
    want = ref.mixvpr(dict(agg.state_dict()), x, depth=2)
    assert torch.allclose(agg(x).double(), want, atol=1e-5)
    assert agg.out_dim == 18


def test_mixvpr_resizes_other_grids_and_add_sums_unit_crop_descriptors() -> None:
    agg = MixVPR(12, MixVPRParams(out_channels=6, out_rows=3, mix_depth=1, in_h=4, in_w=4))
    x = torch.randn(4, 12, 8, 8)
    resized = F.interpolate(x, size=(4, 4), mode="bilinear", align_corners=False)
    assert torch.allclose(agg(x), agg(resized), atol=1e-6)
    raw = agg.raw(x).reshape(2, 2, -1)
    want = F.normalize(F.normalize(raw, dim=-1).sum(1), dim=1)
    assert torch.allclose(fuse(raw, agg, "add"), want, atol=1e-6)
    assert torch.allclose(fuse(raw.flip(1), agg, "add"), want, atol=1e-6)  # crop order does not matter


def test_boq_matches_formula() -> None:
    p = BoQParams(proj_channels=64, num_queries=5, num_layers=2, row_dim=3, heads=2)
    agg = BoQ(10, p)
    _randomise(agg)
    x = torch.randn(2, 10, 3, 4)
    want = ref.boq(dict(agg.state_dict()), x, num_layers=2, heads=2)
    assert torch.allclose(agg(x).double(), want, atol=1e-4)
    assert agg.out_dim == 64 * 3


def test_boq_keys_are_torch_transformer_keys() -> None:
    """The encoder and attention parameters load into torch's own modules under the same names."""
    agg = BoQ(10, BoQParams(proj_channels=64, num_queries=4, num_layers=1, row_dim=2))
    enc = torch.nn.TransformerEncoderLayer(64, 1, dim_feedforward=256, dropout=0.0, batch_first=True)
    enc.load_state_dict({k[len("boqs.0.encoder."):]: v for k, v in agg.state_dict().items()
                         if k.startswith("boqs.0.encoder.")})
    mha = torch.nn.MultiheadAttention(64, 1, batch_first=True)
    mha.load_state_dict({k[len("boqs.0.cross_attn."):]: v for k, v in agg.state_dict().items()
                         if k.startswith("boqs.0.cross_attn.")})
    t = torch.randn(2, 7, 64)
    enc.eval()
    assert torch.allclose(agg.boqs[0].encoder(t), enc(t), atol=1e-5)
    q = torch.randn(2, 3, 64)
    assert torch.allclose(agg.boqs[0].cross_attn(q, t, t), mha(q, t, t)[0], atol=1e-5)


def test_boq_add_fusion_runs_the_blocks_on_all_crop_tokens() -> None:
    agg = BoQ(10, BoQParams(proj_channels=64, num_queries=4, num_layers=1, row_dim=2))
    x = torch.randn(2 * 3, 10, 3, 3)
    raw = agg.raw(x).reshape(2, 3, 9, 64)
    fused = fuse(raw, agg, "add")
    assert torch.allclose(fused, agg.finalize(raw.flatten(1, 2)), atol=1e-6)
    assert torch.allclose(fuse(raw[:, [2, 0, 1]], agg, "add"), fused, atol=1e-5)  # a set function


def test_salad_sinkhorn_matches_probability_domain_scaling() -> None:
    s = torch.randn(2, 4, 9)
    got = torch.exp(log_optimal_transport(s.double(), torch.tensor(0.7), 3))[:, :-1]
    want = ref.sinkhorn_plan(s, 0.7, 3)
    assert torch.allclose(got, want, atol=1e-10)
    # after the last (column) scaling every feature's mass is 1 (times 1/(m+n), rescaled)
    full = torch.exp(log_optimal_transport(s.double(), torch.tensor(0.7), 3))
    assert torch.allclose(full.sum(1), torch.ones(2, 9, dtype=torch.float64), atol=1e-10)


@pytest.mark.parametrize("with_token", [True, False])
def test_salad_matches_formula(with_token: bool) -> None:
    agg = SALAD(12, SaladParams(num_clusters=4, cluster_dim=5, token_dim=3, hidden=16)).eval()
    _randomise(agg)
    with torch.no_grad():
        agg.dust_bin.fill_(0.4)
    x, t = torch.randn(2, 12, 3, 4), torch.randn(2, 12)
    token = t if with_token else None
    want = ref.salad(dict(agg.state_dict()), x, token)
    assert torch.allclose(agg(x, token).double(), want, atol=1e-5)
    assert agg.out_dim == 3 + 5 * 4


def test_salad_needs_more_locations_than_clusters() -> None:
    agg = SALAD(12, SaladParams(num_clusters=16, cluster_dim=4, token_dim=2, hidden=8))
    with pytest.raises(InputError, match="more local features than clusters"):
        agg(torch.randn(1, 12, 3, 4))


def test_params_registry_refuses_unknown_keys_and_bad_values() -> None:
    assert parse_params("salad", {"num_clusters": "32"}).num_clusters == 32
    assert parse_params("gem", {}) is None
    with pytest.raises(InputError, match="unknown mixvpr parameter"):
        parse_params("mixvpr", {"rows": 4})
    with pytest.raises(InputError, match="takes no aggregator parameters"):
        parse_params("netvlad", {"fc_dim": 4})
    with pytest.raises(InputError, match="must be an integer"):
        parse_params("boq", {"row_dim": "many"})
    with pytest.raises(InputError, match="fc_dim >= 1"):
        parse_params("gem_fc", {"fc_dim": 0})


@pytest.mark.parametrize("aggregator,params,dim", [
    ("gem_fc", {"fc_dim": 32}, 32),
    ("mixvpr", {"out_channels": 16, "out_rows": 2, "in_h": 4, "in_w": 4}, 32),
    ("boq", {"proj_channels": 64, "num_queries": 4, "row_dim": 2}, 128),
    ("salad", {"num_clusters": 4, "cluster_dim": 8, "token_dim": 16, "hidden": 32}, 48),
])
@pytest.mark.parametrize("fusion", ["add", "concat", "per-crop"])
def test_every_new_aggregator_in_every_fusion_mode(aggregator: str, params: dict, dim: int, fusion: str) -> None:
    cfg = ModelConfig(backbone="resnet18", weights="none", aggregator=aggregator, aggregator_params=params,
                      fusion=fusion)
    model = build_model(cfg)
    crops = torch.randn(1, 3, 3, 96, 96)
    with torch.no_grad():
        d = model(crops)
        shifted = model(crops.roll(1, dims=1))
    assert d.shape[-1] == model.descriptor_dim(3) == (3 * dim if fusion == "concat" else dim)
    assert torch.allclose(d.norm(dim=-1), torch.ones(d.shape[:-1]), atol=1e-5)
    if fusion == "add":  # the whole-crop rotation of a panorama gives the same descriptor
        assert torch.allclose(d, shifted, atol=1e-4)
    if fusion == "per-crop":
        assert torch.allclose(d.roll(1, dims=1), shifted, atol=1e-5)
    assert ModelConfig.from_dict(model.config.to_dict()).aggregator_params == params
