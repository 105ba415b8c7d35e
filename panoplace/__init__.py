"""panoplace: visual place recognition on panoramic images.

The Python API is :mod:`panoplace.steps`, one typed function per pipeline step::

    from panoplace.steps import cluster, extract, index, localize, evaluate, train, pca

(``panoplace.steps.extract`` etc.; ``panoplace.extract``, ``panoplace.cluster``,
``panoplace.index`` and ``panoplace.scene`` are the library modules of those names).
``import panoplace`` itself loads nothing heavy (no torch, faiss or OpenCV); ``panoplace.steps``
is imported on first use, and loads them.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__version__ = "0.1.0"

__all__ = ["__version__", "steps"]


def __getattr__(name: str) -> ModuleType:
    # PEP 562: `panoplace.steps` after a bare `import panoplace`, without loading torch at import time
    if name == "steps":
        return importlib.import_module("panoplace.steps")
    raise AttributeError(f"module 'panoplace' has no attribute {name!r}")
