"""Fixtures for the training tests: a tiny procedural 'street' with two traversals."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import cv2
import numpy as np
import pytest
import torch

from panoplace.config import ModelConfig, PanoramaConfig, PipelineConfig

torch.set_num_threads(2)

# Equirectangular frames 32 x 128 (H x W): the whole band, 2 crops of 32 x 32.
PANORAMA = PanoramaConfig(projection="equirect", elevation=(90.0, -90.0), pano_width=128, pano_height=32,
                          n_crops=2, crop_size=(32, 32))
TINY = dict(backbone="resnet18", cut="layer2", weights="none", num_clusters=4)
PIXELS_PER_METRE = 4


def street_strip(length_m: float, seed: int = 7) -> np.ndarray:
    """A long RGB texture of random coloured blobs, ``(32, length_m * 4 + 128, 3)`` uint8."""
    rng = np.random.default_rng(seed)
    w = int(length_m * PIXELS_PER_METRE) + 128
    small = rng.random((4, w // 8 + 1, 3))
    strip = cv2.resize(small, (w, 32), interpolation=cv2.INTER_NEAREST)[:, :w]
    return (strip * 255).astype(np.uint8)


def write_traversal(folder: Path, strip: np.ndarray, xs: np.ndarray, brightness: float, noise: float,
                    seed: int) -> Path:
    """Frames at positions ``xs`` (metres along the street) and their CSV; returns the CSV."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["image,x,y"]
    for i, x in enumerate(xs):
        c = int(round(x * PIXELS_PER_METRE))
        frame = strip[:, c:c + 128].astype(np.float64) * brightness + rng.normal(0, noise, (32, 128, 3))
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.clip(frame, 0, 255).astype(np.uint8)[:, :, ::-1])
        rows.append(f"{i:03d}.png,{x:.3f},0.0")
    csv = folder / "frames.csv"
    csv.write_text("\n".join(rows) + "\n")
    return csv


@pytest.fixture(scope="session")
def street(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """A 120 m street: a day database, a dusk query traversal (offset 1.2 m, darker, noisy) and a
    night validation traversal."""
    root = tmp_path_factory.mktemp("street")
    strip = street_strip(130.0)
    xs = np.arange(0.0, 120.0, 4.0)
    return {
        "day": write_traversal(root / "day", strip, xs, 1.0, 4.0, 1),
        "dusk": write_traversal(root / "dusk", strip, xs + 1.2, 0.75, 10.0, 2),
        "night": write_traversal(root / "night", strip, xs + 0.6, 0.6, 12.0, 3),
    }


@pytest.fixture(scope="session")
def clustered(street: Dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny NetVLAD model (resnet18 to layer2, random weights, 4 clusters from k-means) saved
    as a checkpoint with its panorama config."""
    from panoplace.cluster import cluster_images
    from panoplace.extract import list_images

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("model") / "clustered.pt"
    root, paths = list_images(street["day"])
    cluster_images(root, paths, PipelineConfig(panorama=PANORAMA, model=ModelConfig(**TINY, n_trainable=1)),
                   out=out, n_images=20, per_image=30, batch_size=8, num_workers=0, device="cpu", progress=False)
    return out
