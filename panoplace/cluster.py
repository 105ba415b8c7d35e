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

from panoplace.config import PipelineConfig
from panoplace.errors import InputError
from panoplace.models.build import build_model
from panoplace.models.checkpoint import save_checkpoint
from panoplace.models.clusters import fit_centroids, sample_from_feature_maps
from panoplace.models.netvlad import NetVLAD
from panoplace.runner import ImageRunner, model_step

log = logging.getLogger(__name__)
PathLike = Union[str, Path]


def sample_features(
    model: Any,
    runner: ImageRunner,
    n_images: int = 500,
    per_image: int = 100,
    seed: int = 0,
) -> np.ndarray:
    """Local features sampled from up to ``n_images`` images spread over the runner's images
    (unreadable ones are skipped with a warning when the runner's ``on_error`` is ``skip``).

    Returns:
        float32 ``(M, C)`` L2-normalised local descriptors, ``M <= n_images * per_image``.
    """
    rng = np.random.default_rng(seed)
    n = len(runner.paths)
    pick = np.sort(rng.choice(n, size=min(n_images, n), replace=False))

    def sample(m: Any, x: torch.Tensor) -> np.ndarray:  # x: (B, K, 3, H, W)
        feats = m.local_features(x.flatten(0, 1))  # (B*K, C, h, w)
        return sample_from_feature_maps(feats, per_image, rng, images=x.shape[0])

    out = [b.outputs for b in runner.batches(model_step(model, sample), pick.tolist()) if b.outputs is not None]
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
    **run_options: Any,
) -> Any:
    """Build the model of ``pipeline``, initialise its NetVLAD from k-means centroids of local
    features of ``root/paths``, and save it to ``out`` (a checkpoint) when given. Other
    aggregators have no centroids: their freshly initialised model is saved as it is (the
    starting point of ``panoplace train``).
    ``run_options``: :class:`~panoplace.runner.ImageRunner` options (``batch_size``,
    ``num_workers``, ``device``, ``progress``); unreadable images are skipped.

    Returns:
        the initialised :class:`panoplace.models.build.PlaceModel`.
    """
    paths = list(paths)
    if not paths:
        raise InputError("no images to cluster")
    runner = ImageRunner(root, paths, pipeline.panorama, on_error="skip", desc="cluster features", **run_options)
    panorama = runner.panorama
    model = build_model(pipeline.model)
    if pipeline.model.aggregator != "netvlad":
        # only NetVLAD starts from k-means centroids; the others start from their own
        # initialisation, and this writes that starting checkpoint (for `panoplace train`)
        log.info("aggregator %s has no centroids to fit: writing its initial model", pipeline.model.aggregator)
        if out is not None:
            save_checkpoint(model, out, panorama=panorama)
        return model
    feats = sample_features(model, runner, n_images=n_images, per_image=per_image, seed=seed)
    k = pipeline.model.num_clusters
    if feats.shape[0] < k:
        raise InputError(f"only {feats.shape[0]} local features sampled for {k} clusters; "
                         "use more images or --per-image")
    log.info("k-means: %d local features of dimension %d into %d clusters", *feats.shape, k)
    centroids = fit_centroids(feats, k, seed=seed)
    netvlad = model.aggregator
    if not isinstance(netvlad, NetVLAD):  # the config said netvlad; the builder must agree
        raise RuntimeError(f"a netvlad config built a {type(netvlad).__name__} aggregator")
    netvlad.init_from_clusters(centroids, feats, vladv2=pipeline.model.vladv2)
    if out is not None:
        save_checkpoint(model, out, panorama=panorama)
        log.info("wrote initialised model to %s", out)
    return model
