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
