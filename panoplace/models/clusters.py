"""NetVLAD initialisation helpers: sample local features, fit k-means centroids with faiss.

The features are L2-normalised along channels, the space NetVLAD assigns them in
(``normalize_input=True``), as pytorch-NetVlad's ``--mode=cluster`` does.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Optional

import faiss
import numpy as np
import torch
import torch.nn.functional as F

from panoplace.errors import InputError

log = logging.getLogger(__name__)


def fit_centroids(features: np.ndarray, k: int, seed: int = 0, niter: int = 100) -> np.ndarray:
    """k-means centroids of local features (faiss, ``niter`` iterations, seeded).

    Shape:
        - features: ``(M, C)`` float32, ``M >= k``.
        - Output: ``(k, C)`` float32.
    """
    x = np.ascontiguousarray(np.asarray(features, dtype=np.float32))
    if x.ndim != 2 or x.shape[1] < 1:
        raise InputError(f"features must be (M, C), got shape {x.shape}")
    if k < 1 or x.shape[0] < k:
        raise InputError(f"k-means needs at least k={k} features, got {x.shape[0]}")
    if not np.isfinite(x).all():
        raise InputError("features contain NaN or infinite values")
    km = faiss.Kmeans(x.shape[1], int(k), niter=int(niter), seed=int(seed), verbose=False)
    km.train(x)
    return np.asarray(km.centroids, dtype=np.float32).reshape(k, x.shape[1])


def sample_from_feature_maps(feats: torch.Tensor, n_per_image: int, rng: np.random.Generator,
                             images: Optional[int] = None) -> np.ndarray:
    """Up to ``n_per_image`` random L2-normalised local features per image.

    Args:
        feats: feature maps; the first ``images`` groups of ``len(feats) // images`` maps belong
            to one image each (all crops of an image are sampled together). None = one map per image.

    Shape:
        - feats: ``(N, C, h, w)``.
        - Output: ``(M, C)`` float32, ``M <= n_images * n_per_image``.
    """
    if feats.dim() != 4:
        raise InputError(f"feature maps must be (N, C, h, w), got {tuple(feats.shape)}")
    n, c = feats.shape[:2]
    images = n if images is None else images
    if images < 1 or n % images:
        raise InputError(f"{n} feature maps cannot be split into {images} images")
    per = F.normalize(feats.detach().float(), p=2, dim=1).reshape(images, n // images, c, -1)
    # (images, crops*h*w, C) as numpy: per-image gathers without a torch parallel region each
    per_np = per.permute(0, 1, 3, 2).reshape(images, -1, c).cpu().numpy()
    locations = per_np.shape[1]
    out = [f[np.sort(rng.choice(locations, size=min(n_per_image, locations), replace=False))] for f in per_np]
    return np.concatenate(out).astype(np.float32, copy=False)


@torch.no_grad()
def sample_local_features(model: Any, crops_iterable: Iterable[torch.Tensor], n_per_image: int,
                          seed: int = 0) -> np.ndarray:
    """Sample local features of images for clustering.

    Args:
        model: a :class:`~panoplace.models.build.PlaceModel` (``local_features``) or a
            :class:`~panoplace.models.backbones.Backbone`; used in eval mode on its device.
        crops_iterable: batches of normalised crops, ``(B, K, 3, H, W)`` (the K crops of an image
            are sampled together) or ``(B, 3, H, W)`` (one crop per image).
        n_per_image: local features drawn per image (all of them when fewer).

    Shape:
        Output: ``(M, C)`` float32, L2-normalised rows.
    """
    if n_per_image < 1:
        raise InputError(f"n_per_image must be >= 1, got {n_per_image}")
    fn = model.local_features if hasattr(model, "local_features") else model
    was_training = bool(getattr(model, "training", False))
    if hasattr(model, "eval"):
        model.eval()
    device = next(model.parameters()).device if hasattr(model, "parameters") else torch.device("cpu")
    rng = np.random.default_rng(seed)
    out = []
    try:
        for batch in crops_iterable:
            if batch.dim() == 4:
                batch = batch.unsqueeze(1)
            if batch.dim() != 5 or batch.shape[2] != 3:
                raise InputError(f"crop batches must be (B, K, 3, H, W) or (B, 3, H, W), got {tuple(batch.shape)}")
            b = batch.shape[0]
            feats = fn(batch.to(device).flatten(0, 1))
            out.append(sample_from_feature_maps(feats, n_per_image, rng, images=b))
    finally:
        if was_training:
            model.train()
    if not out:
        raise InputError("no crops to sample local features from")
    feats_all = np.concatenate(out)
    log.info("sampled %d local features of dimension %d", *feats_all.shape)
    return feats_all
