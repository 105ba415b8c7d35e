"""Attention before aggregation: weights, top fraction, equivalences, CAM mode, checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from panoplace.config import ModelConfig
from panoplace.errors import InputError
from panoplace.models.attention import CamAttention, LearnedAttention, keep_count, weighted_raw
from panoplace.models.build import build_model
from panoplace.models.checkpoint import load_checkpoint, save_checkpoint
from panoplace.models.netvlad import NetVLAD
from panoplace.models.pooling import AvgPool, GeM, MaxPool


@pytest.fixture
def feats() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.relu(torch.randn(3, 8, 4, 5))  # (N, C, h, w), 20 locations


@pytest.mark.parametrize("remain,kept", [(1.0, 20), (0.5, 10), (0.26, 6), (0.01, 1)])
def test_learned_weights_sum_to_one_and_keep_the_top_fraction(feats: torch.Tensor, remain: float, kept: int) -> None:
    att = LearnedAttention(8, remain=remain)
    with torch.no_grad():
        att.conv2.weight.normal_()  # make the scores distinct
        w = att.weights(feats)
        s = att.scores(feats)
    assert w.shape == (3, 20) and keep_count(20, remain) == kept
    assert torch.allclose(w.sum(dim=1), torch.ones(3))
    assert ((w > 0).sum(dim=1) == kept).all()
    # the kept locations are those with the highest scores, and weights follow the scores
    top = torch.topk(s, kept, dim=1).indices
    assert torch.equal(torch.sort(top, dim=1).values, torch.sort(torch.nonzero(w > 0)[:, 1].view(3, kept), dim=1).values)
    g = torch.sigmoid(s.gather(1, top))
    assert torch.allclose(w.gather(1, top), g / g.sum(dim=1, keepdim=True))
    assert att.weight_map(feats).shape == (3, 4, 5)


@pytest.mark.parametrize("agg", [NetVLAD(4, 8), GeM(8), AvgPool(8), MaxPool(8)], ids=lambda a: type(a).__name__)
def test_uniform_weights_give_the_plain_aggregation(feats: torch.Tensor, agg: nn.Module) -> None:
    uniform = torch.full((3, 20), 1 / 20)
    with torch.no_grad():
        assert torch.allclose(weighted_raw(agg, feats, uniform), agg.raw(feats), atol=1e-6)


@pytest.mark.parametrize("agg", [NetVLAD(4, 8), GeM(8), AvgPool(8), MaxPool(8)], ids=lambda a: type(a).__name__)
def test_dropped_locations_do_not_count(feats: torch.Tensor, agg: nn.Module) -> None:
    keep = torch.zeros(3, 20, dtype=torch.bool)
    keep[:, [1, 4, 7, 11, 19]] = True
    w = keep.float() / 5
    with torch.no_grad():
        got = agg.finalize(weighted_raw(agg, feats, w))
        only = feats.flatten(2)[:, :, keep[0]].unsqueeze(2)  # (N, C, 1, 5): just the kept locations
        want = agg.finalize(agg.raw(only))
    assert torch.allclose(got, want, atol=1e-5)


def test_model_with_flat_attention_equals_model_without() -> None:
    base = dict(backbone="resnet18", cut="layer2", weights="none", num_clusters=4)
    torch.manual_seed(0)
    plain = build_model(ModelConfig(**base))
    att = build_model(ModelConfig(**base, attention="learned", attention_remain=1.0))
    att.load_state_dict({**att.state_dict(), **plain.state_dict()})
    with torch.no_grad():
        att.attention.conv2.weight.zero_()
        x = torch.randn(2, 3, 3, 32, 32)
        assert torch.allclose(att(x), plain(x), atol=1e-6)
        att.attention.conv2.weight.normal_()
        assert not torch.allclose(att(x), plain(x), atol=1e-4)


def test_cam_uses_the_top_class_activation_map() -> None:
    # local features: channel 0 is bright at (0, 0), channel 1 at (2, 3)
    f = torch.zeros(2, 3, 3, 4)
    f[:, 0, 0, 0] = 5.0
    f[:, 1, 2, 3] = 1.0
    f[1, 1, 2, 3] = 9.0  # in the second map channel 1 dominates the pooled features
    f[:, 2] = 0.1
    toy = nn.Linear(3, 2)
    with torch.no_grad():
        toy.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))  # class 0 <- channel 0, class 1 <- 1
        toy.bias.zero_()
    cam = CamAttention(3, remain=1.0)
    with pytest.raises(InputError, match="classifier"):
        cam.weights(f)
    cam.set_classifier(toy)
    assert cam.top_class(f).tolist() == [0, 1]
    w = cam.weight_map(f)
    assert torch.allclose(w.flatten(1).sum(1), torch.ones(2))
    assert w[0, 0, 0] == 1.0 and w[1, 2, 3] == 1.0  # all weight on the top class's activation
    # a graded CAM: weights proportional to the CAM above its minimum, top half kept
    g = torch.arange(12.0).view(1, 1, 3, 4).repeat(1, 3, 1, 1)
    cam2 = CamAttention(3, remain=0.5)
    cam2.set_classifier((torch.tensor([[1.0, 0.0, 0.0]]), None))
    w2 = cam2.weights(g)[0]
    assert torch.equal(w2 > 0, torch.arange(12) >= 6)
    assert torch.allclose(w2[6:], torch.arange(6.0, 12.0) / torch.arange(6.0, 12.0).sum())
    with pytest.raises(InputError, match="channels"):
        cam2.set_classifier(nn.Linear(5, 2))


def test_attention_models_survive_a_checkpoint(tmp_path: Path) -> None:
    for mode in ("learned", "cam"):
        torch.manual_seed(0)
        m = build_model(ModelConfig(backbone="resnet18", cut="layer2", weights="none", aggregator="gem",
                                    attention=mode, attention_remain=0.3))
        if mode == "cam":
            m.attention.set_classifier(nn.Linear(128, 7))
            assert not any(p.requires_grad for p in m.attention.parameters())  # the scene classifier is frozen
        save_checkpoint(m, tmp_path / f"{mode}.pt")
        back, _ = load_checkpoint(tmp_path / f"{mode}.pt")
        assert back.config.attention == mode and back.attention.remain == 0.3
        x = torch.randn(2, 2, 3, 32, 32)
        with torch.no_grad():
            assert torch.allclose(back(x), m(x), atol=1e-6)


def test_bad_attention_options_raise() -> None:
    with pytest.raises(InputError, match="attention_remain"):
        build_model(ModelConfig(backbone="resnet18", weights="none", aggregator="avg", attention="learned",
                                attention_remain=0.0))
    with pytest.raises(InputError, match=r"\(N, 8, h, w\)"):
        LearnedAttention(8).weights(torch.zeros(2, 4, 3, 3))
