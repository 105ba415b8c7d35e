"""PlaceModel: batching of crops, preprocessing, descriptor sizes, whitening."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from panoplace.config import ModelConfig
from panoplace.errors import InputError
from panoplace.models.build import build_model


def _model(**kw: object):
    base = dict(backbone="resnet18", cut="layer2", weights="none", aggregator="netvlad", num_clusters=4)
    base.update(kw)
    return build_model(ModelConfig(**base))


def test_forward_runs_all_crops_through_the_backbone_as_one_batch() -> None:
    model = _model()
    calls = []
    model.backbone.register_forward_hook(lambda m, i, o: calls.append(tuple(i[0].shape)))
    crops = torch.randn(2, 3, 3, 32, 32)
    with torch.no_grad():
        d = model(crops)
    assert calls == [(6, 3, 32, 32)]
    assert d.shape == (2, 4 * 128) == (2, model.descriptor_dim(3))
    # equal to describing each panorama's crops with the aggregator directly
    with torch.no_grad():
        feats = model.local_features(crops[1])
        want = model.aggregator.finalize(model.aggregator.raw(feats).sum(0, keepdim=True))
    assert torch.allclose(d[1:], want, atol=1e-6)


@pytest.mark.parametrize("fusion,shape", [("add", (2, 128)), ("concat", (2, 3 * 128)), ("per-crop", (2, 3, 128))])
def test_descriptor_dim_matches_output(fusion: str, shape: tuple) -> None:
    model = _model(aggregator="gem", fusion=fusion)
    with torch.no_grad():
        d = model(torch.randn(2, 3, 3, 32, 32))
    assert d.shape == shape
    assert d.shape[-1] == model.descriptor_dim(3)
    assert torch.allclose(d.norm(dim=-1), torch.ones(d.shape[:-1]), atol=1e-5)


def test_config_records_the_resolved_cut() -> None:
    model = build_model(ModelConfig(backbone="resnet18", weights="none", aggregator="avg"))
    assert model.config.cut == "layer4"
    assert ModelConfig.from_dict(model.config.to_dict()) == model.config


def test_preprocess_normalises_uint8_crops() -> None:
    model = _model()
    u8 = torch.randint(0, 256, (2, 3, 8, 10, 3), dtype=torch.uint8)
    x = model.preprocess(u8)
    assert x.shape == (2, 3, 3, 8, 10) and x.dtype == torch.float32
    mean = torch.tensor(model.backbone.mean).view(3, 1, 1)
    std = torch.tensor(model.backbone.std).view(3, 1, 1)
    # equal up to float32 rounding (the model folds 1/255 and the std into one multiply)
    assert torch.allclose(x[1, 2], (u8[1, 2].permute(2, 0, 1).float() / 255 - mean) / std, atol=2e-6)
    with pytest.raises(InputError, match="uint8"):
        model.preprocess(u8.float())
    with pytest.raises(InputError, match=r"\(B, K, H, W, 3\)"):
        model.preprocess(u8[0])
    with pytest.raises(InputError, match=r"\(B, K, 3, H, W\)"):
        model(x[0])


def test_whitening_layer_projects_then_normalises(rng: np.random.Generator) -> None:
    model = _model(aggregator="avg", whitening_dim=16)
    crops = torch.randn(3, 2, 3, 32, 32)
    with pytest.raises(InputError, match="not fitted"):
        model(crops)
    with torch.no_grad():
        plain = model(crops, whiten=False)
    assert plain.shape == (3, 128) and model.descriptor_dim(2, whiten=False) == 128
    mean = rng.standard_normal(128).astype(np.float32)
    comps = rng.standard_normal((16, 128)).astype(np.float32)
    model.set_whitening(mean, comps)
    with torch.no_grad():
        d = model(crops)
    want = F.normalize((plain - torch.from_numpy(mean)) @ torch.from_numpy(comps).T, dim=1)
    assert d.shape == (3, 16) == (3, model.descriptor_dim(2))
    assert torch.allclose(d, want, atol=1e-5)
    with pytest.raises(InputError, match=r"\(16, D\)"):
        model.set_whitening(mean, comps[:8])
    with pytest.raises(InputError, match="no whitening layer"):
        _model().set_whitening(mean, comps)


def test_unknown_attention_is_refused_with_a_clear_message() -> None:
    with pytest.raises(InputError, match="attention"):
        build_model(ModelConfig(backbone="resnet18", weights="none", attention="bogus"))
