"""Fixtures for the model tests: small inputs, few threads, no network."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

torch.set_num_threads(2)

# netvlad_reference.py beside this file, importable whatever pytest's import mode.
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a socket or download through torch.hub fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a network download was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


@pytest.fixture
def feature_maps() -> torch.Tensor:
    """Non-negative (post-ReLU-like) local features ``(6, 16, 5, 7)``."""
    return torch.relu(torch.randn(6, 16, 5, 7))
