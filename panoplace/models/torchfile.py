"""The one place where panoplace deserialises a ``torch.save`` file, without running its code.

A ``torch.save`` file is a pickle: loading it with full unpickling runs whatever callables the
file names, so a crafted checkpoint could execute arbitrary Python. :func:`read_torch_file`
only ever loads with ``torch.load(weights_only=True)``: tensors, storages, containers, Python
scalars and strings, plus the plain numpy data types of :data:`SAFE_NUMPY_GLOBALS` (numpy
scalars and arrays appear in published checkpoints, e.g. pytorch-NetVlad's ``best_score``). A
file that needs anything else (a pickled ``argparse.Namespace``, a whole ``nn.Module``) is
refused with one :class:`~panoplace.errors.CheckpointError` line; there is no fallback to full
unpickling.

Callers: :mod:`panoplace.models.checkpoint` (every checkpoint format) and
:func:`panoplace.models.backbones.build_backbone` (plain backbone weight files, which
:func:`~panoplace.models.build.build_model` needs below the checkpoint layer).
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any, Dict, List, Union

import numpy as np
import torch

from panoplace.errors import CheckpointError

PathLike = Union[str, Path]


def _numpy_safe_globals() -> List[Any]:
    """numpy scalar/array/dtype reconstruction: plain data, no callables that run user code."""
    core = getattr(np, "_core", None) or np.core
    out: List[Any] = [core.multiarray.scalar, core.multiarray._reconstruct, np.ndarray, np.dtype]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        out += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return out


#: numpy globals a checkpoint may name (all rebuild plain data).
SAFE_NUMPY_GLOBALS: List[Any] = _numpy_safe_globals()


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def read_torch_file(path: PathLike, what: str = "checkpoint") -> Any:
    """Load a ``torch.save`` file on the CPU with ``weights_only=True`` (never full unpickling).

    Args:
        path: the file.
        what: what the file is, for the error message (``"checkpoint"``, ``"resnet18 weights"``).

    Raises:
        CheckpointError: the file is missing, unreadable, or holds Python objects other than
            tensors and plain data (loading those could run code from the file).
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{what} file {p} does not exist")
    try:
        with torch.serialization.safe_globals(SAFE_NUMPY_GLOBALS):
            return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        if unsafe:
            raise CheckpointError(
                f"{what} file {p} holds Python objects besides tensors and plain data ({unsafe.group(1)}); "
                "panoplace does not unpickle those, since that could run code from the file: load it "
                "yourself only if you trust it, and re-save its state_dict with torch.save") from None
        detail = re.search(r"WeightsUnpickler error:\s*(\S.*)", text)
        reason = f"not a torch.save file ({detail.group(1).strip()})" if detail else _first_line(err)
        raise CheckpointError(f"cannot read {what} file {p}: {reason}") from None
    except Exception as err:  # noqa: BLE001 - any read failure is a bad file for the user
        raise CheckpointError(f"cannot read {what} file {p}: {_first_line(err)}") from None


def strip_module_prefix(state_dict: Dict[str, Any]) -> Dict[str, Any]:
    """Drop ``module`` path segments that ``nn.DataParallel`` adds (``module.conv1.weight``)."""
    return {".".join(s for s in k.split(".") if s != "module"): v for k, v in state_dict.items()}


def state_dict_of(obj: Any, source: str) -> Dict[str, torch.Tensor]:
    """The tensor dict inside a loaded file: the file itself or its ``"state_dict"`` entry,
    ``module.`` prefixes removed.

    Raises:
        CheckpointError: no non-empty dict of tensors.
    """
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) for k in obj):
        raise CheckpointError(f"{source} does not hold a state_dict (a dict of tensors)")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{source} does not hold a state_dict (a dict of tensors)")
    return strip_module_prefix(tensors)
