"""Fixtures of the fault-injection suite: small and read-only file systems."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Callable, Iterator, List

import pytest


def _mount_tmpfs(target: Path, options: str) -> bool:
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
                          capture_output=True)
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Factory: ``small_disk("256k")`` mounts a tmpfs of that size and returns its folder.

    Skips (with the reason) where this machine does not allow mounting (not root, no
    CAP_SYS_ADMIN); CI runs as root. Unmounted at teardown.
    """
    mounted: List[Path] = []

    def make(size: str) -> Path:
        target = tmp_path / f"disk{len(mounted)}"
        if not _mount_tmpfs(target, f"size={size}"):
            pytest.skip("cannot mount a tmpfs here (needs root): no real full-disk case")
        mounted.append(target)
        return target

    yield make
    for target in reversed(mounted):
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


@pytest.fixture
def readonly_dir(tmp_path: Path) -> Iterator[Path]:
    """A read-only file system (a tmpfs mounted ``ro``): writes fail with EROFS even as root."""
    target = tmp_path / "readonly"
    if not _mount_tmpfs(target, "ro,size=64k"):
        pytest.skip("cannot mount a tmpfs here (needs root): no read-only media case")
    yield target
    subprocess.run(["umount", "-l", str(target)], capture_output=True)


# ----------------------------------------------------------------------------- shared inputs
@pytest.fixture(scope="session")
def fast_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of the fast model (resnet18 to layer1, random weights, GeM; plain images
    resized to 32 x 32): a fixed fingerprint, so that a killed extraction can resume."""
    import torch

    from panoplace.config import ModelConfig, PanoramaConfig
    from panoplace.models.build import build_model
    from panoplace.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="resnet18", cut="layer1", weights="none", aggregator="gem"))
    path = tmp_path_factory.mktemp("model") / "fast.pt"
    save_checkpoint(model, path, panorama=PanoramaConfig(projection="plain", crop_size=(32, 32)))
    return path


def write_frames_csv(folder: Path, n: int = 6) -> Path:
    """``n`` tiny images with positions 10 m apart on a line, and their dataset CSV."""
    from tests.faults.harness import write_images

    write_images(folder / "img", n)
    rows = ["image,x,y"] + [f"img/{i:07d}.png,{10.0 * i},0" for i in range(n)]
    (folder / "frames.csv").write_text("\n".join(rows) + "\n")
    return folder / "frames.csv"
