"""The checkpoint module: format registry and dispatch, files read once, module layering."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import List

import pytest
import torch

import panoplace.models.checkpoint as checkpoint
from panoplace.config import ModelConfig
from panoplace.errors import CheckpointError, InputError
from panoplace.models.backbones import build_backbone
from panoplace.models.build import PlaceModel, build_model, weights_fingerprint
from panoplace.models.checkpoint import (
    CheckpointFile,
    CheckpointFormat,
    checkpoint_formats,
    detect_format,
    from_places365,
    load_checkpoint,
    load_linear_classifier,
    load_places365_checkpoint,
    load_scene_checkpoint,
    load_state_checked,
    read_checkpoint,
    register_format,
    save_checkpoint,
    save_scene_checkpoint,
)
from panoplace.models.scene import SceneConfig, build_scene_model
from panoplace.scene.loading import base_model_for_training, load_scene_model
from panoplace.training.trainer import Trainer

GEM = ModelConfig(backbone="resnet18", cut="layer2", weights="none", aggregator="gem")


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Formats registered by a test are dropped afterwards."""
    monkeypatch.setattr(checkpoint, "_FORMATS", list(checkpoint._FORMATS))


def test_builtin_formats_are_registered_in_order() -> None:
    assert [f.name for f in checkpoint_formats()][:3] == ["panoplace", "panoplace-scene", "pytorch-netvlad"]


def test_a_registered_importer_loads_its_published_layout(tmp_path: Path, registry: None) -> None:
    """An importer of a made-up published layout ("net.*" keys): detect + load, plugged in."""
    ref = build_model(GEM)
    published = {"net." + k: v for k, v in ref.state_dict().items()}
    torch.save({"model": published, "meta": {"name": "toy"}}, tmp_path / "toy.pth")

    def detect(ckpt: CheckpointFile) -> bool:
        return isinstance(ckpt.content, dict) and isinstance(ckpt.content.get("model"), dict)

    def load(ckpt: CheckpointFile):
        model = build_model(GEM)
        sd = {k[len("net."):]: v for k, v in ckpt.content["model"].items()}
        load_state_checked(model, sd, f"{ckpt.source} is not a toy checkpoint")
        return model, None

    with pytest.raises(CheckpointError, match="not a checkpoint of a known format"):
        load_checkpoint(tmp_path / "toy.pth")
    register_format(CheckpointFormat("toy", detect, load, "toy"))
    model, pano = load_checkpoint(tmp_path / "toy.pth")
    assert pano is None and isinstance(model, PlaceModel)
    assert weights_fingerprint(model) == weights_fingerprint(ref)
    with pytest.raises(InputError, match="registered already"):
        register_format(CheckpointFormat("toy", detect, load))
    with pytest.raises(InputError, match="unknown checkpoint format 'nope'"):
        register_format(CheckpointFormat("toy2", detect, load), before="nope")
    # a format inserted before another is tried first
    register_format(CheckpointFormat("first", detect, load), before="panoplace")
    assert checkpoint_formats()[0].name == "first"
    assert detect_format(read_checkpoint(tmp_path / "toy.pth")).name == "first"


def test_an_importer_mismatch_is_one_line(tmp_path: Path, registry: None) -> None:
    torch.save({"model": {"net.x": torch.zeros(2)}}, tmp_path / "bad.pth")

    def load(ckpt: CheckpointFile):
        model = build_model(GEM)
        load_state_checked(model, {"x": torch.zeros(2)}, f"{ckpt.source} is not a toy checkpoint")
        return model, None

    register_format(CheckpointFormat("toy", lambda c: "model" in c.content, load))
    with pytest.raises(CheckpointError, match="bad.pth is not a toy checkpoint: 1 unexpected key") as err:
        load_checkpoint(tmp_path / "bad.pth")
    assert "\n" not in str(err.value)


def _count_loads(monkeypatch: pytest.MonkeyPatch) -> List[str]:
    seen: List[str] = []
    real = torch.load

    def counting(f, *args, **kwargs):
        seen.append(str(f))
        return real(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting)
    return seen


def test_files_are_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    place = save_checkpoint(build_model(GEM), tmp_path / "place.pt")
    scene = save_scene_checkpoint(build_scene_model(SceneConfig(place=GEM, n_classes=2), ["a", "b"]),
                                  tmp_path / "scene.pt")
    seen = _count_loads(monkeypatch)
    base_model_for_training(checkpoint=scene)  # looks at the file, then loads the scene model
    assert seen == [str(scene)]
    seen.clear()
    base_model_for_training(checkpoint=place)  # looks at the file, then loads the place model
    assert seen == [str(place)]
    seen.clear()
    load_checkpoint(scene)  # the place branch of a scene checkpoint
    assert seen == [str(scene)]


def _imports(module: Path) -> List[str]:
    tree = ast.parse(module.read_text())
    return [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module] + \
        [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]


def test_only_the_checkpoint_layer_deserialises_model_files() -> None:
    """build and scene do not import each other's loaders any more, and nothing but
    torchfile calls torch.load."""
    package = Path(checkpoint.__file__).parents[1]
    assert "panoplace.models.scene" not in _imports(package / "models" / "build.py")
    assert "panoplace.models.checkpoint" not in _imports(package / "models" / "scene.py")
    callers = [str(p.relative_to(package)) for p in package.rglob("*.py")
               if "torch.load(" in p.read_text().replace("``torch.load(weights_only=True)``", "")]
    assert callers == ["models/torchfile.py"]


@pytest.mark.parametrize("legacy", [False, True])
def test_no_model_loader_runs_a_planted_payload(hostile, tmp_path: Path, legacy: bool) -> None:
    """Every library entry that opens a model file refuses a payload, in either serialisation."""
    evil = hostile.torch_file(hostile.folder / "evil.pth.tar", legacy=legacy)
    hostile.live(lambda: torch.load(evil, weights_only=False))
    resume = tmp_path / "run"
    resume.mkdir()
    hostile.torch_file(resume / "latest.pt", legacy=legacy)
    loaders = {
        "read_checkpoint": lambda: read_checkpoint(evil),
        "load_checkpoint": lambda: load_checkpoint(evil),
        "load_scene_checkpoint": lambda: load_scene_checkpoint(evil),
        "load_places365_checkpoint": lambda: load_places365_checkpoint(evil),
        "from_places365": lambda: from_places365(evil, [f"c{i}" for i in range(365)]),
        "load_linear_classifier": lambda: load_linear_classifier(evil),
        "build_backbone": lambda: build_backbone("resnet18", weights=str(evil)),
        "build_model": lambda: build_model(ModelConfig(backbone="resnet18", weights=str(evil), aggregator="gem")),
        "base_model_for_training": lambda: base_model_for_training(checkpoint=evil),
        "load_scene_model": lambda: load_scene_model(checkpoint=evil),
        "Trainer.resume": lambda: Trainer.resume(resume, None, None),  # type: ignore[arg-type]
    }
    for name, load in loaders.items():
        with pytest.raises(CheckpointError, match="could run code") as err:
            load()
        assert "\n" not in str(err.value), name
        assert not hostile.marker.exists(), f"{name} ran the payload"
