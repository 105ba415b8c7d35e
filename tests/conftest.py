"""Shared fixtures for the whole test suite."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is not present")
    return SHARED_DATA


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _cli(*args: object) -> None:
    from panoplace.cli import main

    code = main([str(a) for a in args])
    if code != 0:
        raise RuntimeError(f"panoplace {' '.join(map(str, args))} exited {code}")


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A procedural world with a 12-frame day map drive and a dusk query drive (256 x 128)."""
    world = tmp_path_factory.mktemp("tiny_world") / "world"
    _cli("synth", world, "--frames", "12", "--traversals", "day,dusk", "--width", "256", "--height", "128",
         "--no-progress")
    return world


@pytest.fixture(scope="session")
def tiny_map(tiny_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A map folder of the tiny world's day drive (NetVLAD K=8 from k-means, 4 crops of 64 x 64,
    per-crop descriptors so that headings are reported)."""
    work = tmp_path_factory.mktemp("tiny_map")
    _cli("cluster", tiny_world / "day" / "frames.csv", "--projection", "equirect", "--crops", "4",
         "--crop-size", "64", "64", "--num-clusters", "8", "--out", work / "model.pt", "--no-progress")
    _cli("map", "build", tiny_world / "day" / "frames.csv", "--checkpoint", work / "model.pt", "--per-crop",
         "--out", work / "map", "--no-progress")
    return work / "map"


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


@pytest.fixture(scope="session")
def browser():
    """Headless Debian chromium driven by Playwright (``executable_path``; Playwright's own
    browser download does not work here). Skips where chromium or playwright is missing
    (.ci/run installs both)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def chromium_page(browser):
    """A fresh page (own context) of the session's headless chromium; JavaScript errors on the
    page are collected in ``page.errors`` (a list of str) for the test to check."""
    context = browser.new_context()
    page = context.new_page()
    errors: list = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    try:
        yield page
    finally:
        context.close()


# --------------------------------------------------------------------- hostile files
class _RunsCode:
    """Unpickling this runs Python (it creates ``marker``): the payload of a hostile file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        return (exec, (f"open({self.marker!r}, 'w').close()",))


class Hostile:
    """Writers of files whose loading with full unpickling would run code (create ``marker``).

    ``live(load)`` checks that a payload really runs when loaded unsafely (so a test that sees
    no marker proves the loader refused it, not that the payload was inert).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.marker = folder / "PWNED"
        folder.mkdir(parents=True, exist_ok=True)

    def torch_file(self, path: Path, legacy: bool = False) -> Path:
        """A ``torch.save`` file: a plausible state dict plus the payload (zip or legacy format)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        obj = {"state_dict": {"fc.weight": torch.zeros(2, 3), "fc.bias": torch.zeros(2)},
               "extra": {"note": _RunsCode(self.marker)}}
        torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
        return path

    def raw_pickle(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps({"state_dict": _RunsCode(self.marker)}, protocol=2))
        return path

    def npy(self, path: Path, rows: int = 2) -> Path:
        """A VPR-Bench-like object array ``(rows, 2)`` whose last cell is the payload."""
        path.parent.mkdir(parents=True, exist_ok=True)
        gt = np.empty((rows, 2), dtype=object)
        for i in range(rows):
            gt[i, 0], gt[i, 1] = i, [i]
        gt[rows - 1, 1] = _RunsCode(self.marker)
        np.save(path, gt, allow_pickle=True)
        return path

    def live(self, load: Callable[[], object]) -> None:
        """Assert that ``load`` (an unsafe load of a planted file) runs the payload; clean up."""
        assert not self.marker.exists()
        load()
        assert self.marker.exists(), "the payload did not run even when loaded unsafely"
        self.marker.unlink()


@pytest.fixture
def hostile(tmp_path: Path) -> Hostile:
    return Hostile(tmp_path / "hostile")
