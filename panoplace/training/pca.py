"""PCA-whitening of place descriptors, stored in the model as its whitening layer.

Fitting (:func:`fit_pca_whitening`) on database descriptors ``X`` ``(N, D)``: with the mean
``mu`` and the sample covariance ``C = (X - mu)^T (X - mu) / (N - 1)`` (as ``np.cov``), whose
eigenpairs ``(lambda_i, u_i)`` are sorted by decreasing eigenvalue, the first ``dim`` rows of
the projection are ``u_i / sqrt(lambda_i)``. Then ``y = W (x - mu)`` has identity covariance on
the fit data, and the components are nested: the first ``d`` rows of a fit to ``dim`` are the
fit to ``d``. When ``N <= D`` (NetVLAD: D is 16k-32k) the eigenvectors come from the
``N x N`` Gram matrix instead of the ``D x D`` covariance (``u_i = X_c^T v_i / sqrt(N - 1)
/ sqrt(lambda_i)``). At most ``rank(X_c) <= N - 1`` dimensions can be whitened.

:func:`whiten_checkpoint` fits on a store written by ``panoplace extract`` with a checkpoint,
adds the layer (``ModelConfig.whitening_dim``) and saves a new checkpoint, so that ``panoplace
extract`` with it writes whitened, L2-normalised descriptors of length ``dim``.
:func:`pca_recall_table` gives Recall@N before and after whitening at several dimensions.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np

from panoplace.config import PanoramaConfig
from panoplace.data.groundtruth import GroundTruth
from panoplace.errors import DescriptorMismatchError, InputError
from panoplace.models.build import PlaceModel, Whitening, weights_fingerprint
from panoplace.models.checkpoint import load_checkpoint, save_checkpoint
from panoplace.store import DescriptorSet, check_finite, load_descriptors
from panoplace.training.trainer import recall_of

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
RANK_RTOL = 1e-10  # eigenvalues below RANK_RTOL * the largest count as zero
DEFAULT_MAX_SAMPLES = 20000


def fit_pca_whitening(descriptors: np.ndarray, dim: int, max_samples: Optional[int] = DEFAULT_MAX_SAMPLES,
                      seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """PCA-whitening of ``descriptors`` to ``dim`` dimensions (see the module docstring).

    Args:
        descriptors: fit data; per-crop ``(N, K, D)`` descriptors are fitted as ``N*K`` rows.
        dim: output dimension.
        max_samples: fit on at most this many rows drawn at random (None = all).
        seed: for that draw.

    Shape:
        - descriptors: ``(N, D)`` or ``(N, K, D)``.
        - Output: ``mean`` ``(D,)`` and ``components`` ``(dim, D)``, float64.

    Raises:
        InputError: ``dim`` larger than the rank of the centred data (at most ``N - 1``),
            NaN/inf values, or fewer than 2 descriptors.
    """
    x = np.asarray(descriptors, dtype=np.float64)
    if x.ndim == 3:
        x = x.reshape(-1, x.shape[-1])
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 1:
        raise InputError(f"PCA-whitening needs at least 2 descriptors (N, D), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise InputError("descriptors contain NaN or infinite values")
    if dim < 1:
        raise InputError(f"whitening dimension must be >= 1, got {dim}")
    if max_samples is not None and x.shape[0] > max_samples:
        pick = np.sort(np.random.default_rng(seed).choice(x.shape[0], size=max_samples, replace=False))
        x = x[pick]
    n, d = x.shape
    limit = min(n - 1, d)
    if dim > limit:
        raise InputError(f"cannot whiten to {dim} dimensions with {n} descriptors of length {d}: at most "
                         f"{limit} (use more database images or a smaller dimension)")
    mean = x.mean(axis=0)
    xc = x - mean
    if n <= d:
        gram = xc @ xc.T  # (n, n)
        evals, evecs = np.linalg.eigh(gram)
        order = np.argsort(evals)[::-1][:dim]
        lam = evals[order]  # eigenvalues of xc^T xc
        _check_rank(lam, evals.max(), dim, n, d)
        u = (xc.T @ evecs[:, order]) / np.sqrt(lam)  # (d, dim) orthonormal columns
    else:
        cov = xc.T @ xc  # (d, d)
        evals, evecs = np.linalg.eigh(cov)
        order = np.argsort(evals)[::-1][:dim]
        lam = evals[order]
        _check_rank(lam, evals.max(), dim, n, d)
        u = evecs[:, order]
    var = lam / (n - 1)  # covariance eigenvalues
    components = (u / np.sqrt(var)).T  # (dim, d)
    log.info("PCA-whitening %d -> %d dims fitted on %d descriptors (kept variance %.1f%%)", d, dim, n,
             100.0 * lam.sum() / max(float(np.einsum("ij,ij->", xc, xc)), 1e-300))
    return mean, components


def _check_rank(lam: np.ndarray, largest: float, dim: int, n: int, d: int) -> None:
    tiny = lam <= RANK_RTOL * max(largest, 0.0)
    if tiny.any() or largest <= 0:
        rank = int((~tiny).sum()) if largest > 0 else 0
        raise InputError(f"cannot whiten to {dim} dimensions: the {n} descriptors of length {d} span only "
                         f"{rank} (duplicates or too few images)")


def whiten(descriptors: np.ndarray, mean: np.ndarray, components: np.ndarray, dim: Optional[int] = None) -> np.ndarray:
    """Apply whitening (the first ``dim`` components) and L2-normalise, as the model's layer does.

    Shape:
        - descriptors: ``(N, D)`` (or ``(N, K, D)``); components ``(>= dim, D)``.
        - Output: ``(N, dim)`` (or ``(N, K, dim)``) float32.
    """
    w = np.asarray(components, dtype=np.float64)[: dim or None]
    y = (np.asarray(descriptors, dtype=np.float64) - mean) @ w.T
    y /= np.maximum(np.linalg.norm(y, axis=-1, keepdims=True), 1e-12)
    return y.astype(np.float32)


def add_whitening(model: PlaceModel, mean: np.ndarray, components: np.ndarray) -> PlaceModel:
    """Give ``model`` (a :class:`~panoplace.models.build.PlaceModel`) a fitted whitening layer
    of ``len(components)`` dims and record it in ``model.config.whitening_dim``. Returns it."""
    dim = int(np.asarray(components).shape[0])
    layer = Whitening(dim)
    device = next(model.parameters()).device
    model.whitening = layer.to(device)
    model.set_whitening(mean, components)
    model.config = dataclasses.replace(model.config, whitening_dim=dim)
    return model


def whiten_checkpoint(checkpoint: PathLike, database: PathLike, dim: int, out: PathLike,
                      max_samples: Optional[int] = DEFAULT_MAX_SAMPLES, seed: int = 0) -> Tuple[Path, np.ndarray, np.ndarray]:
    """Fit PCA-whitening on the descriptor store ``database`` (extracted with ``checkpoint``),
    add it to the model and save the model to ``out``.

    Returns:
        ``(out, mean (D,), components (dim, D))``.

    Raises:
        InputError: the checkpoint already whitens, or a bad dimension.
        DescriptorMismatchError: the store was not extracted with this checkpoint.
    """
    model, panorama = load_checkpoint(checkpoint)
    if model.whitening is not None:
        raise InputError(f"{checkpoint} already has a whitening layer ({model.config.whitening_dim} dims); fit "
                         "on descriptors of the checkpoint before whitening")
    ds = load_descriptors(database)
    check_finite(ds, f"descriptors in {database}")
    if ds.fingerprint and ds.fingerprint != weights_fingerprint(model):
        raise DescriptorMismatchError(f"{database} was not extracted with {checkpoint} (weights fingerprint "
                                      f"{ds.fingerprint} vs {weights_fingerprint(model)}); run `panoplace extract "
                                      f"--checkpoint {checkpoint}` first")
    store_model = ds.config.get("model", {})
    if store_model and store_model.get("fusion", model.config.fusion) != model.config.fusion:
        raise DescriptorMismatchError(f"{database} holds {store_model.get('fusion')} descriptors but the model "
                                      f"fuses crops with {model.config.fusion}")
    mean, comps = fit_pca_whitening(ds.descriptors, dim, max_samples=max_samples, seed=seed)
    add_whitening(model, mean, comps)
    if panorama is None and ds.config.get("panorama"):
        panorama = PanoramaConfig.from_dict(ds.config["panorama"])
    path = save_checkpoint(model, out, panorama=panorama, extra={"pca": {"fit_on": str(database), "n": len(ds)}})
    return path, mean, comps


def pca_recall_table(database: np.ndarray, queries: np.ndarray, ground_truth: GroundTruth, dims: Sequence[int],
                     ns: Sequence[int] = (1, 5, 10), max_samples: Optional[int] = DEFAULT_MAX_SAMPLES,
                     seed: int = 0) -> Dict[Optional[int], Dict[int, float]]:
    """Recall@N without whitening (key None) and with PCA-whitening fitted on ``database`` at
    each of ``dims`` (one fit to the largest, truncated; a dim the data cannot give is skipped
    with a warning).

    Shape:
        database: ``(N, D)``; queries: ``(Q, D)`` (per-crop descriptors are fused first).
    """
    db = DescriptorSet(database, [str(i) for i in range(len(database))]).fused()
    q = DescriptorSet(queries, [str(i) for i in range(len(queries))]).fused()
    table: Dict[Optional[int], Dict[int, float]] = {None: recall_of(q, db, ground_truth, ns)}
    limit = min(len(db) if max_samples is None else min(len(db), max_samples), db.shape[1] + 1) - 1
    usable = sorted({int(d) for d in dims if 0 < int(d) <= limit}, reverse=True)
    for d in sorted(set(int(x) for x in dims) - set(usable)):
        log.warning("skipping whitening to %d dims: %d descriptors of length %d give at most %d", d, len(db),
                    db.shape[1], limit)
    if not usable:
        return table
    mean, comps = fit_pca_whitening(db, usable[0], max_samples=max_samples, seed=seed)
    for d in usable:
        table[d] = recall_of(whiten(q, mean, comps, d), whiten(db, mean, comps, d), ground_truth, ns)
    return table
