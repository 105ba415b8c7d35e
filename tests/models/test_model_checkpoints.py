"""Checkpoints: panoplace round trip, pytorch-NetVlad / PAL seed imports, wrong architectures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.models as tvm
from netvlad_reference import LoopNetVLAD
from torch import nn

import panoplace.models.checkpoint as checkpoint
from panoplace.config import ModelConfig, PanoramaConfig
from panoplace.errors import CheckpointError
from panoplace.models.build import build_model, weights_fingerprint
from panoplace.models.checkpoint import load_checkpoint, save_checkpoint

CROPS = torch.randn(2, 3, 3, 64, 64)


def _netvlad_model(**kw: object):
    base = dict(backbone="resnet18", cut="layer3", weights="none", aggregator="netvlad", num_clusters=4)
    base.update(kw)
    model = build_model(ModelConfig(**base))
    with torch.no_grad():
        for p in model.parameters():  # weights that differ from a fresh build
            p.add_(0.01 * torch.randn_like(p))
    return model


def test_round_trip_gives_identical_descriptors(tmp_path: Path) -> None:
    model = _netvlad_model(vladv2=True, fusion="per-crop", whitening_dim=8)
    model.set_whitening(np.zeros(4 * 256, np.float32), np.random.default_rng(0).standard_normal((8, 4 * 256)))
    pano = PanoramaConfig(projection="equirect", n_crops=3)
    path = save_checkpoint(model, tmp_path / "sub" / "model.pt", panorama=pano, extra={"epoch": 7})
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temp file left
    loaded, pano2 = load_checkpoint(path)
    assert pano2 == pano
    assert loaded.config == model.config
    assert weights_fingerprint(loaded) == weights_fingerprint(model)
    with torch.no_grad():
        assert torch.equal(loaded(CROPS), model.eval()(CROPS))
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "panoplace" and raw["format_version"] == 1 and raw["extra"] == {"epoch": 7}
    assert raw["config"]["model"]["backbone"] == "resnet18" and raw["config"]["panorama"]["n_crops"] == 3


def test_fingerprint_depends_on_every_weight() -> None:
    model = _netvlad_model()
    fp = weights_fingerprint(model)
    assert len(fp) == 16 and fp == weights_fingerprint(model)
    with torch.no_grad():
        model.backbone.body.layer1[0].conv1.weight[0, 0, 0, 0] += 1e-3
    assert weights_fingerprint(model) != fp


def test_checkpoint_of_another_architecture_is_a_checkpoint_error(tmp_path: Path) -> None:
    path = save_checkpoint(_netvlad_model(), tmp_path / "m.pt")
    obj = torch.load(path, weights_only=True)
    for change in ({"num_clusters": 8}, {"backbone": "resnet34"}, {"aggregator": "gem"}):
        bad = dict(obj, config=dict(obj["config"], model=dict(obj["config"]["model"], **change)))
        torch.save(bad, tmp_path / "bad.pt")
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(tmp_path / "bad.pt")
        assert "\n" not in str(err.value) and "bad.pt" in str(err.value)
    torch.save(tvm.resnet18(weights=None).state_dict(), tmp_path / "backbone.pth")
    with pytest.raises(CheckpointError, match="ModelConfig.weights"):
        load_checkpoint(tmp_path / "backbone.pth")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_newer_or_corrupted_panoplace_checkpoints_are_refused(tmp_path: Path) -> None:
    path = save_checkpoint(_netvlad_model(), tmp_path / "m.pt")
    obj = torch.load(path, weights_only=True)
    torch.save(dict(obj, format_version=99), tmp_path / "new.pt")
    with pytest.raises(CheckpointError, match="newer panoplace"):
        load_checkpoint(tmp_path / "new.pt")
    obj["state_dict"]["aggregator.centroids"] += 1.0
    torch.save(obj, tmp_path / "corrupt.pt")
    with pytest.raises(CheckpointError, match="fingerprint"):
        load_checkpoint(tmp_path / "corrupt.pt")


def test_old_format_keys_are_renamed_on_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _netvlad_model()
    path = save_checkpoint(model, tmp_path / "m.pt")
    obj = torch.load(path, weights_only=True)
    # pretend format 1 stored the aggregator as "vlad." and format 2 renamed it
    monkeypatch.setattr(checkpoint, "FORMAT_VERSION", 2)
    monkeypatch.setattr(checkpoint, "KEY_RENAMES", {1: [("vlad.", "aggregator.")]})
    obj["state_dict"] = {k.replace("aggregator.", "vlad."): v for k, v in obj["state_dict"].items()}
    torch.save(obj, tmp_path / "old.pt")
    loaded, _ = load_checkpoint(tmp_path / "old.pt")
    with torch.no_grad():
        assert torch.equal(loaded(CROPS), model.eval()(CROPS))


def _pytorch_netvlad_checkpoint(folder: Path, encoder: nn.Sequential, pool: nn.Module,
                                flags: dict | None, flags_in_parent: bool = False) -> Path:
    """Write a checkpoint the way pytorch-NetVlad's main.py does."""
    net = nn.Module()
    net.add_module("encoder", encoder)
    net.add_module("pool", pool)
    ckpt_dir = folder / "checkpoints"
    ckpt_dir.mkdir(parents=True)
    path = ckpt_dir / "model_best.pth.tar"
    torch.save({"epoch": 4, "state_dict": net.state_dict(), "recalls": {1: 0.5, 5: 0.7},
                "best_score": np.float64(0.7), "parallel": False}, path)
    if flags is not None:
        (folder if flags_in_parent else ckpt_dir).joinpath("flags.json").write_text(json.dumps(flags))
    return path


def test_pytorch_netvlad_alexnet_checkpoint_with_flags_imports(tmp_path: Path) -> None:
    encoder = nn.Sequential(*list(tvm.alexnet(weights=None).features.children())[:-2])
    pool = LoopNetVLAD(num_clusters=6, dim=256)
    flags = {"arch": "alexnet", "num_clusters": 6, "pooling": "netvlad", "vladv2": False, "lr": 0.0001}
    path = _pytorch_netvlad_checkpoint(tmp_path, encoder, pool, flags)
    model, pano = load_checkpoint(path)
    assert pano is None
    assert (model.config.backbone, model.config.cut, model.config.num_clusters) == ("alexnet", "conv5", 6)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = pool(encoder.eval()(x))
        got = model(x.unsqueeze(1))  # one crop per image
    assert torch.allclose(got, want, atol=1e-5)


def test_pal_seed_resnet18_checkpoint_imports_without_flags(tmp_path: Path) -> None:
    r = tvm.resnet18(weights=None)
    encoder = nn.Sequential(*list(r.children())[:-2])  # conv1, bn1, relu, maxpool, layer1..4 = 0..7
    pool = LoopNetVLAD(num_clusters=5, dim=512, vladv2=True)
    with torch.no_grad():
        pool.conv.bias.uniform_(-1, 1)
    path = _pytorch_netvlad_checkpoint(tmp_path, encoder, pool, flags=None)
    model, _ = load_checkpoint(path)
    cfg = model.config
    assert (cfg.backbone, cfg.cut, cfg.num_clusters, cfg.vladv2) == ("resnet18", "layer4", 5, True)
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x.unsqueeze(1)), pool(encoder.eval()(x)), atol=1e-5)


def test_pytorch_netvlad_flags_in_parent_folder_and_mismatches(tmp_path: Path) -> None:
    encoder = nn.Sequential(*list(tvm.alexnet(weights=None).features.children())[:-2])
    flags = {"arch": "vgg16", "num_clusters": 6, "pooling": "netvlad"}
    path = _pytorch_netvlad_checkpoint(tmp_path / "a", encoder, LoopNetVLAD(6, 256), flags, flags_in_parent=True)
    with pytest.raises(CheckpointError, match="flags.json says arch 'vgg16'") as err:
        load_checkpoint(path)  # the weights are alexnet's
    assert "\n" not in str(err.value)
    flags = {"arch": "alexnet", "num_clusters": 8, "pooling": "netvlad"}
    path = _pytorch_netvlad_checkpoint(tmp_path / "b", encoder, LoopNetVLAD(6, 256), flags, flags_in_parent=True)
    with pytest.raises(CheckpointError, match="num_clusters=8"):
        load_checkpoint(path)
