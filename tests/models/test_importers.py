"""Importers of published checkpoints (CosPlace, EigenPlaces, MixVPR, BoQ, SALAD).

The published key layouts are rebuilt here the way each method's code builds its model (torch's
own modules: ``nn.TransformerEncoderLayer``, ``nn.MultiheadAttention``, torchvision ResNets cut
as the authors cut them), independent of panoplace's modules:

- full-size layouts (meta tensors, no file): every key maps, nothing is missing or left over,
  and the descriptor has the published size;
- small random-weight files: the imported model's output equals a direct computation of the
  method's formulas (tests/models/vpr_reference.py) on the same tensors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

import pytest
import torch
import torchvision.models as tvm
from torch import nn

import vpr_reference as ref
from panoplace.errors import CheckpointError
from panoplace.models.build import build_model
from panoplace.models.importers import convert_published, load_published, method_name

SD = Dict[str, torch.Tensor]


# ---- the published model structures --------------------------------------------------------

class _GeMp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.ones(1) * 3)


def cosplace_aggregation(features_dim: int, fc_dim: int) -> nn.Module:
    # L2Norm, GeM, Flatten, Linear, L2Norm: only GeM (p) and the Linear hold parameters
    return nn.Sequential(nn.Identity(), _GeMp(), nn.Identity(), nn.Linear(features_dim, fc_dim), nn.Identity())


def resnet_children_trunk(arch: str, upto: str) -> nn.Sequential:
    """``nn.Sequential`` of a torchvision ResNet's children up to ``upto`` (CosPlace: layer4,
    BoQ: layer3)."""
    net = getattr(tvm, arch)(weights=None)
    names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    return nn.Sequential(*[getattr(net, n) for n in names[: names.index(upto) + 1]])


def mixvpr_resnet_model(arch: str) -> nn.Module:
    """MixVPR's ResNet wrapper: the torchvision model with layer4 and fc removed."""
    net = getattr(tvm, arch)(weights=None)
    net.layer4 = None
    net.fc = None
    return net


class _Mixer(nn.Module):
    def __init__(self, hw: int, ratio: float) -> None:
        super().__init__()
        self.mix = nn.Sequential(nn.LayerNorm(hw), nn.Linear(hw, int(hw * ratio)), nn.ReLU(),
                                 nn.Linear(int(hw * ratio), hw))


class PublishedMixVPR(nn.Module):
    def __init__(self, c: int, hw: int, out_channels: int, rows: int, depth: int, ratio: float = 1.0) -> None:
        super().__init__()
        self.mix = nn.Sequential(*[_Mixer(hw, ratio) for _ in range(depth)])
        self.channel_proj = nn.Linear(c, out_channels)
        self.row_proj = nn.Linear(hw, rows)


class _PublishedBoQBlock(nn.Module):
    def __init__(self, d: int, nq: int, heads: int) -> None:
        super().__init__()
        self.encoder = nn.TransformerEncoderLayer(d, heads, dim_feedforward=4 * d, dropout=0.0, batch_first=True)
        self.queries = nn.Parameter(torch.randn(1, nq, d))
        self.self_attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.norm_q = nn.LayerNorm(d)
        self.cross_attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.norm_out = nn.LayerNorm(d)


class PublishedBoQ(nn.Module):
    def __init__(self, c: int, d: int, nq: int, layers: int, rows: int) -> None:
        super().__init__()
        self.proj_c = nn.Conv2d(c, d, kernel_size=3, padding=1)
        self.norm_input = nn.LayerNorm(d)
        self.boqs = nn.ModuleList([_PublishedBoQBlock(d, nq, max(1, d // 64)) for _ in range(layers)])
        self.fc = nn.Linear(layers * nq, rows)


class PublishedSALAD(nn.Module):
    def __init__(self, c: int, m: int = 64, l_: int = 128, g: int = 256, hidden: int = 512) -> None:
        super().__init__()
        self.token_features = nn.Sequential(nn.Linear(c, hidden), nn.ReLU(), nn.Linear(hidden, g))
        self.cluster_features = nn.Sequential(nn.Conv2d(c, hidden, 1), nn.Dropout(0.3), nn.ReLU(),
                                              nn.Conv2d(hidden, l_, 1))
        self.score = nn.Sequential(nn.Conv2d(c, hidden, 1), nn.Dropout(0.3), nn.ReLU(), nn.Conv2d(hidden, m, 1))
        self.dust_bin = nn.Parameter(torch.tensor(1.0))


def prefixed(prefix: str, module_or_sd) -> SD:
    sd = module_or_sd.state_dict() if isinstance(module_or_sd, nn.Module) else module_or_sd
    return {prefix + k: v for k, v in sd.items()}


def randomised(module: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith(("dust_bin", ".p")) or name == "p":
                continue
            p.copy_(torch.randn(p.shape, generator=g) * (0.1 if p.dim() > 1 else 0.1))
            if "norm" in name.split(".")[-2:][0] or "bn" in name:
                if name.endswith("weight"):
                    p.add_(1.0)
        for name, b in module.named_buffers():
            if name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)
            elif name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)
    return module.eval()


def dinov2_meta(name: str) -> SD:
    with torch.device("meta"):
        return ref.official_state_dict(name)


# ---- full-size layouts ---------------------------------------------------------------------------

def check_layout(sd: SD, source: str, descriptor: int, unused: Optional[List[str]] = None) -> None:
    """Every key of ``sd`` maps onto the built model (or is one of ``unused``), the model has no
    key the file lacks, shapes agree, and the descriptor has the published size."""
    fmt, (cfg, mapped, left, _) = convert_published(sd, source)
    model = build_model(cfg)
    expected = {k: v.shape for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    got = {k: v.shape for k, v in mapped.items() if not k.endswith("num_batches_tracked")}
    assert set(got) == set(expected), (sorted(set(got) - set(expected))[:3], sorted(set(expected) - set(got))[:3])
    assert all(tuple(got[k]) == tuple(expected[k]) for k in got)
    assert len(mapped) + len(left) == len(sd)
    assert sorted(left) == sorted(unused or [])
    assert model.descriptor_dim(1) == descriptor


@pytest.mark.parametrize("arch,fc_dim,kind", [("resnet50", 2048, "cosplace"), ("resnet18", 512, "eigenplaces"),
                                              ("resnet101", 128, "cosplace"), ("vgg16", 512, "cosplace")])
def test_cosplace_and_eigenplaces_layouts(arch: str, fc_dim: int, kind: str) -> None:
    with torch.device("meta"):
        if arch == "vgg16":
            trunk = nn.Sequential(*list(tvm.vgg16(weights=None).features.children())[:-2])
            feat = 512
        else:
            trunk = resnet_children_trunk(arch, "layer4")
            feat = 512 if arch == "resnet18" else 2048
        sd = {**prefixed("backbone.", trunk), **prefixed("aggregation.", cosplace_aggregation(feat, fc_dim))}
    name = f"{arch.replace('resnet', 'ResNet').replace('vgg', 'VGG')}_{fc_dim}_{kind}.pth"
    check_layout(sd, name, fc_dim)
    fmt, _ = convert_published(sd, name)
    assert method_name(fmt, name) == kind


def test_mixvpr_layout() -> None:
    with torch.device("meta"):
        sd = {**prefixed("backbone.model.", mixvpr_resnet_model("resnet50")),
              **prefixed("aggregator.", PublishedMixVPR(1024, 400, 1024, 4, depth=4))}
    check_layout(sd, "resnet50_MixVPR_4096_channels(1024)_rows(4).ckpt", 4096)


def test_boq_resnet50_layout() -> None:
    with torch.device("meta"):
        sd = {**prefixed("backbone.net.", resnet_children_trunk("resnet50", "layer3")),
              **prefixed("aggregator.", PublishedBoQ(1024, 512, 64, 2, 32))}
    check_layout(sd, "resnet50_16384.pth", 16384)


def test_boq_dinov2_layout() -> None:
    with torch.device("meta"):
        sd = {**prefixed("backbone.dino.", dinov2_meta("dinov2_vitb14")),
              **prefixed("aggregator.", PublishedBoQ(768, 384, 64, 2, 32))}
    check_layout(sd, "dinov2_12288.pth", 12288, unused=["backbone.dino.norm.weight", "backbone.dino.norm.bias"])


def test_salad_layout() -> None:
    with torch.device("meta"):
        sd = {**prefixed("backbone.model.", dinov2_meta("dinov2_vitb14")),
              **prefixed("aggregator.", PublishedSALAD(768))}
    check_layout(sd, "dino_salad.ckpt", 8448)


def test_layout_errors_are_one_line() -> None:
    with torch.device("meta"):
        sd = {**prefixed("backbone.net.", resnet_children_trunk("resnet18", "layer3")),
              **prefixed("aggregator.", PublishedBoQ(256, 64, 4, 1, 2))}
    sd["aggregator.extra.weight"] = torch.empty(3, device="meta")
    with pytest.raises(CheckpointError, match="not a Bag-of-Queries checkpoint: 1 key"):
        load_published(sd, "boq.pth")
    del sd["aggregator.extra.weight"], sd["aggregator.fc.bias"]
    with pytest.raises(CheckpointError, match="key.s. missing, e.g. aggregator.fc.bias"):
        load_published(sd, "boq.pth")
    with pytest.raises(CheckpointError, match="not a CosPlace, EigenPlaces, MixVPR, BoQ or SALAD"):
        load_published({"fc.weight": torch.zeros(2, 2)}, "other.pth")


# ---- small files: outputs equal the formulas -----------------------------------------------------

def _save(sd: SD, path: Path) -> SD:
    torch.save({k: v.detach().clone() for k, v in sd.items()}, path)
    return torch.load(path, weights_only=True)


def _load_file(path: Path):
    return load_published(torch.load(path, weights_only=True), str(path))


X = torch.randn(2, 3, 64, 64)


def test_cosplace_output_equals_formula(tmp_path: Path) -> None:
    kind = "eigenplaces"  # the same layout as CosPlace's (test_cosplace_and_eigenplaces_layouts)
    trunk = randomised(resnet_children_trunk("resnet18", "layer4"), 1)
    agg = randomised(cosplace_aggregation(512, 16), 2)
    path = tmp_path / f"ResNet18_16_{kind}.pth"
    _save({**prefixed("backbone.", trunk), **prefixed("aggregation.", agg)}, path)
    model, panorama = _load_file(path)
    assert panorama is None and model.descriptor_dim(1) == 16
    with torch.no_grad():
        got = model(X.unsqueeze(1))
        want = ref.gem_fc(trunk(X), 3.0, agg[3].weight, agg[3].bias)
    assert torch.allclose(got.double(), want, atol=1e-5)


def test_mixvpr_output_equals_formula(tmp_path: Path) -> None:
    net = randomised(mixvpr_resnet_model("resnet18"), 3)
    agg = randomised(PublishedMixVPR(256, 16, 8, 3, depth=2), 4)
    path = tmp_path / "resnet18_MixVPR.ckpt"
    torch.save({"state_dict": {**prefixed("backbone.model.", net), **prefixed("aggregator.", agg)},
                "epoch": 3}, path)  # a Lightning-style file
    model, panorama = load_published(ref.strip(torch.load(path, weights_only=True)["state_dict"], ""), str(path))
    assert panorama is not None and panorama.crop_size == (320, 320)
    with torch.no_grad():
        feats = net.layer3(net.layer2(net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(X)))))))  # 4 x 4
        want = ref.mixvpr(dict(agg.state_dict()), feats, depth=2)
        got = model(X.unsqueeze(1))
    assert torch.allclose(got.double(), want, atol=1e-5)


def test_boq_resnet_output_equals_formula(tmp_path: Path) -> None:
    trunk = randomised(resnet_children_trunk("resnet18", "layer3"), 5)
    agg = randomised(PublishedBoQ(256, 64, 4, 2, 3), 6)
    path = tmp_path / "resnet18_boq.pth"
    _save({**prefixed("backbone.net.", trunk), **prefixed("aggregator.", agg)}, path)
    model, _ = _load_file(path)
    with torch.no_grad():
        want = ref.boq(dict(agg.state_dict()), trunk(X), num_layers=2, heads=1)
        got = model(X.unsqueeze(1))
    assert torch.allclose(got.double(), want, atol=1e-4)


@pytest.fixture(scope="module")
def vits14() -> SD:
    return ref.official_state_dict("dinov2_vits14", seed=7)


XV = torch.randn(2, 3, 42, 56)  # 3 x 4 patches


def test_boq_dinov2_output_equals_formula(tmp_path: Path, vits14: SD) -> None:
    agg = randomised(PublishedBoQ(384, 64, 4, 2, 3), 8)
    path = tmp_path / "dinov2_boq.pth"
    _save({**prefixed("backbone.dino.", vits14), **prefixed("aggregator.", agg)}, path)
    model, panorama = _load_file(path)
    assert panorama is not None and panorama.crop_size == (322, 322)
    assert model.config.cut == 11
    with torch.no_grad():
        fmap, _ = ref.dinov2(vits14, XV, heads=6, n_blocks=12, final_norm=False)
        want = ref.boq(dict(agg.state_dict()), fmap, num_layers=2, heads=1)
        got = model(XV.unsqueeze(1))
    assert torch.allclose(got.double(), want, atol=1e-4)


def test_salad_output_equals_formula(tmp_path: Path, vits14: SD) -> None:
    agg = randomised(PublishedSALAD(384, m=4, l_=5, g=6, hidden=16), 9)
    with torch.no_grad():
        agg.dust_bin.fill_(0.3)
    path = tmp_path / "dino_salad.ckpt"
    _save({**prefixed("backbone.model.", vits14), **prefixed("aggregator.", agg)}, path)
    model, _ = _load_file(path)
    assert model.descriptor_dim(1) == 6 + 5 * 4
    with torch.no_grad():
        fmap, token = ref.dinov2(vits14, XV, heads=6, n_blocks=12, final_norm=True)
        want = ref.salad(dict(agg.state_dict()), fmap, token)
        got = model(XV.unsqueeze(1))
    assert torch.allclose(got.double(), want, atol=1e-4)


def test_published_file_through_extract_and_export_cli(tmp_path: Path) -> None:
    """`extract --checkpoint` and `export` take a published file as they take panoplace's."""
    import cv2
    import numpy as np

    from panoplace.cli import main
    from panoplace.store import load_descriptors

    trunk = randomised(resnet_children_trunk("resnet18", "layer4"), 11)
    agg = randomised(cosplace_aggregation(512, 16), 12)
    path = tmp_path / "ResNet18_16_cosplace.pth"
    _save({**prefixed("backbone.", trunk), **prefixed("aggregation.", agg)}, path)
    images = tmp_path / "imgs"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(images / f"{i}.png"), (rng.random((64, 64, 3)) * 255).astype(np.uint8))
    out = tmp_path / "d.h5"
    assert main(["extract", str(images), "--checkpoint", str(path), "--crop-size", "64", "64", "--out", str(out),
                 "--workers", "0", "--no-progress"]) == 0
    d = load_descriptors(out)
    assert d.descriptors.shape == (3, 16) and d.config["model"]["aggregator"] == "gem_fc"
    x = torch.from_numpy(np.stack([cv2.cvtColor(cv2.imread(str(images / f"{i}.png")), cv2.COLOR_BGR2RGB)
                                   for i in range(3)])).permute(0, 3, 1, 2).float() / 255
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        want = ref.gem_fc(trunk((x - mean) / std), 3.0, agg[3].weight, agg[3].bias)
    assert np.allclose(d.descriptors, want.numpy(), atol=1e-4)
