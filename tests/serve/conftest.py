"""Fixtures of the service tests: the tiny map opened once, apps on it, query images."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, List

import pytest

pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn) is not installed")

from panoplace.mapfolder import load_map  # noqa: E402
from panoplace.serve.batcher import BatchOptions  # noqa: E402
from panoplace.serve.service import LocalisationService, ServiceOptions  # noqa: E402


@pytest.fixture(scope="session")
def query_images(tiny_world: Path) -> List[Path]:
    """The tiny world's dusk drive (equirect JPEGs), in order."""
    return sorted((tiny_world / "dusk" / "equirect").glob("*.jpg"))


@pytest.fixture
def service(tiny_map: Path) -> Iterator[LocalisationService]:
    s = LocalisationService(load_map(tiny_map), ServiceOptions(k=3, batch=BatchOptions(max_batch=8, max_wait_s=0.01)))
    try:
        yield s
    finally:
        s.close()
