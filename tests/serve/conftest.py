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


@pytest.fixture
def live_server(service: LocalisationService) -> Iterator[str]:
    """The app on a real uvicorn server on 127.0.0.1 (a free port), in a thread; yields its URL."""
    import threading
    import time

    import uvicorn

    from panoplace.serve.app import create_app

    server = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1", port=0, log_level="warning",
                                          access_log=False))
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
