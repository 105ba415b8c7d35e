"""Scene category lists and where the Places365 weights are.

The official list ``categories_places365.txt`` has one category per line, ``/a/airfield 0``:
a path-like name and its class index. :func:`load_categories` returns the names without the
``/x/`` prefix (``airfield``, ``bazaar/indoor``), as the Places365 demo code prints them; a
plain list (one name per line, optionally followed by its index) is read the same way.

panoplace never downloads. :func:`find_places365` looks for the official files in the torch
hub cache (``$TORCH_HOME/hub/checkpoints``), where ``torch.hub`` would have put them.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import List, Optional, Tuple, Union

from panoplace.errors import CheckpointError, InputError
from panoplace.textfiles import read_text

log = logging.getLogger(__name__)

PathLike = Union[str, Path]

PLACES365_FILES = ("wideresnet18_places365.pth.tar", "resnet18_places365.pth.tar", "resnet50_places365.pth.tar")
PLACES365_CATEGORIES = "categories_places365.txt"
PLACES365_URL = "http://places2.csail.mit.edu/models_places365/"
_PREFIX = re.compile(r"^/[a-z]/")


def load_categories(path: PathLike, n_expected: Optional[int] = None) -> List[str]:
    """Category names of a category file, in class-index order.

    Args:
        path: ``categories_places365.txt`` or a file of one name per line (``NAME`` or ``NAME INDEX``).
        n_expected: the classifier's number of classes; a list of another length is refused.

    Raises:
        InputError: a missing or empty file, an index out of order, duplicate names, a wrong count.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"category list {p} does not exist (pass categories_places365.txt with --categories FILE)")
    names: List[str] = []
    for lineno, line in enumerate(read_text(p, "category list").splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
            raise InputError(f"{p}:{lineno}: expected 'NAME' or 'NAME INDEX', got {line.strip()!r}")
        if len(parts) == 2 and int(parts[1]) != len(names):
            raise InputError(f"{p}:{lineno}: class index {parts[1]} out of order (expected {len(names)})")
        names.append(_PREFIX.sub("", parts[0]))
    if not names:
        raise InputError(f"category list {p} is empty")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise InputError(f"category list {p} names {dup!r} twice")
    if n_expected is not None and len(names) != n_expected:
        raise InputError(f"category list {p} has {len(names)} categories, the classifier has {n_expected}")
    return names


def hub_checkpoint_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints`` (read at call time)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def find_places365(folder: Optional[PathLike] = None) -> Optional[Tuple[Path, Path]]:
    """``(checkpoint, categories file)`` of the official Places365 release in ``folder`` (default
    :func:`hub_checkpoint_dir`), preferring WideResNet-18, or None when either is absent."""
    d = Path(folder) if folder is not None else hub_checkpoint_dir()
    cats = d / PLACES365_CATEGORIES
    if not cats.is_file():
        return None
    for name in PLACES365_FILES:
        if (d / name).is_file():
            return d / name, cats
    return None


def missing_places365_error(folder: Optional[PathLike] = None) -> CheckpointError:
    """The one-line error for absent Places365 weights, saying how to pass them."""
    d = Path(folder) if folder is not None else hub_checkpoint_dir()
    return CheckpointError(
        f"no Places365 weights found (looked for {PLACES365_FILES[1]} or {PLACES365_FILES[0]} with "
        f"{PLACES365_CATEGORIES} in {d}); pass them with --places365 FILE --categories FILE (from "
        f"{PLACES365_URL}), or a scene checkpoint from `panoplace scene train` with --checkpoint FILE")


def describe_categories(category_set: str, n: int) -> str:
    """What a category set is, for outputs: ``"Places365 (365)"``, ``"procedural-world (5)"``."""
    return f"{category_set} ({n})"
