"""The unified model: Places365 checkpoints, the shared base running once, checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from panoplace.config import ModelConfig
from panoplace.errors import CheckpointError, InputError
from panoplace.models.build import build_model, weights_fingerprint
from panoplace.models.checkpoint import (
    from_places365,
    load_checkpoint,
    load_scene_checkpoint,
    save_checkpoint,
    save_scene_checkpoint,
)
from panoplace.models.scene import PLACES365, SceneConfig, build_scene_model, from_place_model, plan_split

X = torch.randn(2, 3, 3, 64, 64)  # 2 panoramas of 3 crops, normalised


# base = the whole trunk (scene head on the shared layer4), or base + separate tails
@pytest.mark.parametrize("arch,split", [("resnet18_places365", None), ("wideresnet18_places365", "layer2")])
def test_places365_checkpoint_gives_the_plain_classifier_outputs(places365, arch: str, split) -> None:
    ref = places365[arch + "_net"]
    model = from_places365(places365[arch], places365["names"], split=split)
    assert model.category_set == PLACES365 and model.categories == places365["names"]
    assert model.config.place.backbone == arch
    with torch.no_grad():
        out = model(X)
        logits = ref(X.flatten(0, 1)).reshape(2, 3, 365)
    assert out.logits.shape == (2, 3, 365) and out.probs.shape == (2, 365)
    assert torch.allclose(out.logits, logits, atol=1e-4)
    # panoramas: the crops' softmax averaged over the crops
    assert torch.allclose(out.probs, torch.softmax(logits, dim=-1).mean(dim=1), atol=1e-6)
    assert torch.allclose(out.probs.sum(dim=1), torch.ones(2), atol=1e-5)
    assert out.descriptor.shape == (2, 512)
    assert torch.allclose(out.descriptor.norm(dim=1), torch.ones(2), atol=1e-5)


def test_shared_base_runs_once_per_image(places365) -> None:
    model = from_places365(places365["resnet18_places365"], places365["names"], split="layer2")
    assert len(model.place_tail) == 2 and len(model.scene_tail) == 2  # layer3, layer4 in each branch
    calls = {"base": 0, "stem": 0, "place_tail": 0, "scene_tail": 0}

    def counter(name: str):
        def hook(module, inputs, output) -> None:
            calls[name] += 1
        return hook

    model.base.register_forward_hook(counter("base"))
    model.base.body.conv1.register_forward_hook(counter("stem"))
    model.place_tail.register_forward_hook(counter("place_tail"))
    model.scene_tail.register_forward_hook(counter("scene_tail"))
    with torch.no_grad():
        model(X)
    # one batched call over all B*K crops: the base once, each tail once
    assert calls == {"base": 1, "stem": 1, "place_tail": 1, "scene_tail": 1}
    # the tails are separate modules (own weights), not the same layer run twice
    assert model.place_tail.layer4 is not model.scene_tail.layer4


def test_from_place_model_keeps_descriptors_and_fingerprint() -> None:
    place = build_model(ModelConfig(aggregator="gem", cut=5, n_trainable=2))
    before = weights_fingerprint(place)
    trainable = [n for n, p in place.named_parameters() if p.requires_grad]
    model = from_place_model(place, ["a", "b", "c"], split=3, scene_cut=7)
    assert weights_fingerprint(model.place_model()) == before
    # the place model given is left as it was (the unified model holds a frozen copy)
    assert trainable and [n for n, p in place.named_parameters() if p.requires_grad] == trainable
    assert not any(p.requires_grad for n, p in model.named_parameters() if not n.startswith("scene_head."))
    x = torch.randn(1, 2, 3, 96, 96)
    with torch.no_grad():
        assert torch.allclose(model(x).descriptor, place(x), atol=1e-5)
        assert model.scene_features(x).shape == (1, 2, 80)  # block 7 of EfficientNet-Lite0


def test_split_must_not_be_deeper_than_a_branch() -> None:
    with pytest.raises(InputError, match="deeper"):
        plan_split(SceneConfig(place=ModelConfig(backbone="resnet18", cut="layer3"), split="layer4"))
    with pytest.raises(InputError, match="unknown split"):
        plan_split(SceneConfig(place=ModelConfig(backbone="resnet18"), split="layer9"))


def test_scene_checkpoint_round_trip(tmp_path: Path, places365) -> None:
    model = from_places365(places365["wideresnet18_places365"], places365["names"], split="layer3",
                           place=ModelConfig(aggregator="avg", fusion="per-crop"))
    path = save_scene_checkpoint(model, tmp_path / "scene.pt")
    again, panorama = load_scene_checkpoint(path)
    assert panorama is None
    assert again.categories == model.categories and again.category_set == PLACES365
    assert again.config.to_dict() == model.config.to_dict()
    with torch.no_grad():
        a, b = model(X), again(X)
    assert torch.equal(a.probs, b.probs) and torch.equal(a.descriptor, b.descriptor)
    assert a.descriptor.shape == (2, 3, 512)  # per-crop fusion
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())  # atomic write left nothing behind
    # a place-model loader (extract, cluster, localize) takes the scene checkpoint's place branch
    place, _ = load_checkpoint(path)
    assert weights_fingerprint(place) == weights_fingerprint(model.place_model())
    with torch.no_grad():
        assert torch.allclose(place(X), a.descriptor, atol=1e-5)


def test_bad_scene_checkpoints_are_one_line_errors(tmp_path: Path, places365) -> None:
    place = build_model(ModelConfig(backbone="resnet18", weights="none", aggregator="gem"))
    save_checkpoint(place, tmp_path / "place.pt")
    with pytest.raises(CheckpointError, match="place model checkpoint") as err:
        load_scene_checkpoint(tmp_path / "place.pt")
    assert "\n" not in str(err.value)
    model = build_scene_model(SceneConfig(place=ModelConfig(backbone="resnet18", weights="none", aggregator="gem"),
                                          n_classes=3), ["x", "y", "z"])
    path = save_scene_checkpoint(model, tmp_path / "scene.pt")
    obj = torch.load(path, weights_only=True)
    obj["state_dict"]["scene_head.fc.bias"] += 1.0
    torch.save(obj, tmp_path / "tampered.pt")
    with pytest.raises(CheckpointError, match="corrupted"):
        load_scene_checkpoint(tmp_path / "tampered.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_scene_checkpoint(tmp_path / "missing.pt")


def test_places365_place_model_must_share_the_weights(places365) -> None:
    other = build_model(ModelConfig(backbone="resnet18_places365", weights="none", aggregator="gem"))
    with pytest.raises(CheckpointError, match="does not hold the weights"):
        from_places365(places365["resnet18_places365"], places365["names"], place=other)
    same = build_model(ModelConfig(backbone="resnet18_places365", weights=str(places365["resnet18_places365"]),
                                   aggregator="gem", cut="layer3"))
    model = from_places365(places365["resnet18_places365"], places365["names"], place=same)
    assert model.config.split == "layer3" and model.config.scene_cut == "layer4"
    assert weights_fingerprint(model.place_model()) == weights_fingerprint(same)
    with torch.no_grad():  # the scene branch is still the Places365 classifier
        ref = places365["resnet18_places365_net"](X.flatten(0, 1)).reshape(2, 3, 365)
        assert torch.allclose(model(X).logits, ref, atol=1e-4)
    with pytest.raises(InputError, match="categories"):
        from_places365(places365["resnet18_places365"], ["only", "two"])


def test_cam_attention_uses_the_scene_classifier(places365) -> None:
    model = from_places365(places365["resnet18_places365"], places365["names"],
                           place=ModelConfig(aggregator="gem", attention="cam", attention_remain=0.5))
    assert model.attention is not None and model.attention.fitted
    assert torch.equal(model.attention.weight, model.scene_head.fc.weight)
    with torch.no_grad():
        assert model(X).descriptor.shape == (2, 512)
