"""Fixtures for the scene tests: Places365-format checkpoints written here, a toy labelled set."""

from __future__ import annotations

import string
from pathlib import Path
from typing import Dict

import cv2
import numpy as np
import pytest
import torch
import torchvision.models as tvm
from torch import nn

torch.set_num_threads(2)

N_PLACES = 365


def _places365_net(wide: bool, seed: int) -> nn.Module:
    """A torchvision ResNet-18 with 365 classes (WideResNet-18: no stem max-pool), random weights
    and non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    net = tvm.resnet18(weights=None, num_classes=N_PLACES)
    if wide:
        net.maxpool = nn.Identity()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
    return net.eval()


@pytest.fixture(scope="session")
def places365(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, object]:
    """The two official file layouts: ``{'state_dict': {'module.<key>': tensor}}`` as saved by
    the Places365 release (PyTorch 0.x: no ``num_batches_tracked``), and the category list
    ``/a/airfield 0`` style. Returns the reference networks and the paths."""
    d = tmp_path_factory.mktemp("places365")
    out: Dict[str, object] = {}
    for arch, wide, seed in (("resnet18_places365", False, 1), ("wideresnet18_places365", True, 2)):
        net = _places365_net(wide, seed)
        sd = {"module." + k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
        path = d / f"{arch}.pth.tar"
        torch.save({"epoch": 90, "arch": "resnet18", "best_prec1": 54.7, "state_dict": sd}, path)
        out[arch] = path
        out[arch + "_net"] = net
    letters = string.ascii_lowercase
    lines = [f"/{letters[i % 26]}/{letters[i % 26]}cat{i:03d}{'/indoor' if i % 7 == 0 else ''} {i}"
             for i in range(N_PLACES)]
    cats = d / "categories_places365.txt"
    cats.write_text("\n".join(lines) + "\n")
    out["categories"] = cats
    out["names"] = [ln.split()[0][3:] for ln in lines]
    return out


def _toy_image(label: int, rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """Class 0: reddish blobs; 1: green horizontal stripes; 2: blue-grey checkerboard. Random
    phase, scale, brightness and noise per image."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    noise = rng.normal(0, 18, (size, size, 3))
    gain = rng.uniform(0.7, 1.2)
    if label == 0:
        img = np.zeros((size, size, 3), np.float32)
        for _ in range(5):
            cx, cy, r = rng.uniform(0, size, 2).tolist() + [rng.uniform(6, 14)]
            img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = (220, 60, 50)
        img += (90, 60, 40)
    elif label == 1:
        period = rng.uniform(6, 12)
        band = (np.sin(2 * np.pi * (yy + rng.uniform(0, 12)) / period) > 0)[..., None]
        img = np.where(band, (60, 190, 70), (30, 90, 40)).astype(np.float32)
    else:
        cell = int(rng.integers(6, 12))
        check = (((xx // cell) + (yy // cell)) % 2 == 0)[..., None]
        img = np.where(check, (150, 160, 200), (50, 60, 110)).astype(np.float32)
    return np.clip(img * gain + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def toy_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ImageFolder layout ``DATA/{blobs,stripes,checks}/*.png`` (12 images each) and a separate
    held-out folder ``held_out/`` of the same layout (6 each, other random draws)."""
    base = tmp_path_factory.mktemp("toy")
    rng = np.random.default_rng(0)
    for folder, n in (("data", 12), ("held_out", 6)):
        for label, name in enumerate(("blobs", "stripes", "checks")):
            d = base / folder / name
            d.mkdir(parents=True)
            for i in range(n):
                img = _toy_image(label, rng)
                cv2.imwrite(str(d / f"{i:03d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return base


@pytest.fixture
def no_places365_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache, so no Places365 files are found."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home"


@pytest.fixture(scope="session")
def resnet18_scene(places365):
    """The unified model of the ResNet-18 Places365 file (base = whole trunk, GeM place branch).
    Shared: tests must not change it."""
    from panoplace.models.checkpoint import from_places365

    return from_places365(places365["resnet18_places365"], places365["names"])
