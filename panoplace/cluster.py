"""NetVLAD initialisation from images: sample local features, k-means, initialise, save.

``cluster_images`` is what ``panoplace cluster`` runs: local features ``(N, C, h, w)`` of the
crops of up to ``n_images`` images are sampled (``per_image`` vectors each), clustered with
faiss k-means into ``num_clusters`` centroids ``(K, C)``, and the model's NetVLAD layer is
initialised from them (vladv1 or vladv2). The result is saved as a checkpoint that
``panoplace extract --checkpoint`` uses as is.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from panoplace.config import PipelineConfig
from panoplace.errors import InputError
from panoplace.extract import CropDataset, calibrate_panorama, count_crops, default_workers, resolve_device

log = logging.getLogger(__name__)
PathLike = Union[str, Path]


def sample_features(
    model: Any,
    dataset: CropDataset,
    n_images: int = 500,
    per_image: int = 100,
    batch_size: int = 8,
    num_workers: Optional[int] = None,
    device: str = "auto",
    seed: int = 0,
    progress: bool = True,
) -> np.ndarray:
    """Local features sampled from up to ``n_images`` images spread over ``dataset``.

    Returns:
        float32 ``(M, C)`` L2-normalised local descriptors, ``M <= n_images * per_image``.
    """
    from tqdm.auto import tqdm

    from panoplace.models.clusters import sample_from_feature_maps

    dev = resolve_device(device)
    model = model.to(dev).eval()
    rng = np.random.default_rng(seed)
    n = len(dataset)
    pick = np.sort(rng.choice(n, size=min(n_images, n), replace=False))
    workers = default_workers() if num_workers is None else num_workers
    loader = DataLoader(Subset(dataset, pick.tolist()), batch_size=batch_size, num_workers=workers)
    out = []
    with torch.inference_mode():
        for crops, idx, msgs in tqdm(loader, desc="cluster features", unit="batch", disable=not progress):
            for j, m in enumerate(msgs):
                if m:
                    log.warning("skipping %s", m)
            good = [j for j, m in enumerate(msgs) if not m]
            if not good:
                continue
            x = model.preprocess(crops[good].to(dev))  # (B, K, 3, H, W)
            feats = model.local_features(x.flatten(0, 1))  # (B*K, C, h, w)
            out.append(sample_from_feature_maps(feats, per_image, rng, images=x.shape[0]))
    if not out:
        raise InputError("no readable images to sample local features from")
    return np.concatenate(out).astype(np.float32)


def cluster_images(
    root: PathLike,
    paths: Sequence[str],
    pipeline: PipelineConfig,
    out: Optional[PathLike] = None,
    n_images: int = 500,
    per_image: int = 100,
    seed: int = 0,
    **loader_kwargs: Any,
) -> Any:
    """Build the model of ``pipeline``, initialise its NetVLAD from k-means centroids of local
    features of ``root/paths``, and save it to ``out`` (a checkpoint) when given.

    Returns:
        the initialised :class:`panoplace.models.build.PlaceModel`.
    """
    from panoplace.models.build import build_model, save_checkpoint
    from panoplace.models.clusters import fit_centroids

    if pipeline.model.aggregator != "netvlad":
        raise InputError(f"clustering initialises NetVLAD; the model's aggregator is {pipeline.model.aggregator!r}")
    paths = list(paths)
    if not paths:
        raise InputError("no images to cluster")
    panorama = calibrate_panorama(pipeline.panorama, Path(root), paths)
    model = build_model(pipeline.model)
    dataset = CropDataset(Path(root), paths, panorama, count_crops(panorama))
    feats = sample_features(model, dataset, n_images=n_images, per_image=per_image, seed=seed, **loader_kwargs)
    k = pipeline.model.num_clusters
    if feats.shape[0] < k:
        raise InputError(f"only {feats.shape[0]} local features sampled for {k} clusters; "
                         "use more images or --per-image")
    log.info("k-means: %d local features of dimension %d into %d clusters", *feats.shape, k)
    centroids = fit_centroids(feats, k, seed=seed)
    model.aggregator.init_from_clusters(centroids, feats, vladv2=pipeline.model.vladv2)
    if out is not None:
        save_checkpoint(model, out, panorama=panorama)
        log.info("wrote initialised model to %s", out)
    return model
