"""Shared fixtures for the whole test suite."""

from __future__ import annotations

from pathlib import Path

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
