"""Per-crop descriptors fused into one per image: sum over the crops, then L2 normalisation.

The ``add`` view of per-crop descriptors (``--fusion per-crop`` stores ``(N, K, D)``), used for
candidate search, indexes, evaluation and training targets. The same formula for numpy arrays
and torch tensors (on any device, with gradients); nothing here imports torch.

This is not the model's crop fusion (:mod:`panoplace.models.fusion`, which combines the
aggregator's raw outputs before normalising): it acts on finished, normalised descriptors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Union, overload

import numpy as np

from panoplace.errors import InputError

if TYPE_CHECKING:
    import torch

EPS = 1e-12


@overload
def fuse_crops(x: np.ndarray) -> np.ndarray: ...


@overload
def fuse_crops(x: "torch.Tensor") -> "torch.Tensor": ...


def fuse_crops(x: Any) -> Any:
    """Sum per-crop descriptors over the crops and L2-normalise; ``(N, D)`` passes unchanged.

    numpy input comes back float32; a torch tensor keeps its dtype, device and autograd graph
    (the normalisation is ``torch.nn.functional.normalize``'s: ``s / max(||s||, 1e-12)``).

    Shape: ``(N, K, D)`` -> ``(N, D)``; ``(N, D)`` -> ``(N, D)``.

    >>> fuse_crops(np.array([[[3.0, 0.0], [0.0, 4.0]]])).tolist()
    [[0.6000000238418579, 0.800000011920929]]
    """
    if isinstance(x, np.ndarray) or not hasattr(x, "norm"):
        a = np.asarray(x, dtype=np.float32)
        if a.ndim == 2:
            return a
        if a.ndim != 3:
            raise InputError(f"descriptors must be (N, D) or (N, K, D), got shape {a.shape}")
        s = a.sum(axis=1)
        return (s / np.maximum(np.linalg.norm(s, axis=1, keepdims=True), EPS)).astype(np.float32)
    if x.dim() == 2:
        return x
    if x.dim() != 3:
        raise InputError(f"descriptors must be (N, D) or (N, K, D), got shape {tuple(x.shape)}")
    s = x.sum(dim=1)
    return s / s.norm(p=2, dim=1, keepdim=True).clamp_min(EPS).expand_as(s)


def l2_normalise(x: Union[np.ndarray, "torch.Tensor"]) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), float32 numpy.

    Shape: ``(N, D)`` -> ``(N, D)``.
    """
    a = np.asarray(x, dtype=np.float32)
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), EPS)
