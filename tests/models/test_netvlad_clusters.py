"""Sampling local features and fitting k-means centroids for NetVLAD initialisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from panoplace.config import ModelConfig
from panoplace.errors import InputError
from panoplace.models.build import build_model
from panoplace.models.clusters import fit_centroids, sample_local_features


def test_fit_centroids_finds_separated_clusters(rng: np.random.Generator) -> None:
    centres = np.eye(8, dtype=np.float32)[:4] * 5
    feats = np.concatenate([c + 0.05 * rng.standard_normal((50, 8)).astype(np.float32) for c in centres])
    got = fit_centroids(feats, 4, seed=1)
    assert got.shape == (4, 8) and got.dtype == np.float32
    dist = np.linalg.norm(got[:, None] - centres[None], axis=2)
    assert np.all(dist.min(axis=0) < 0.1)  # every true centre found
    assert np.array_equal(got, fit_centroids(feats, 4, seed=1))
    with pytest.raises(InputError, match="at least k=300"):
        fit_centroids(feats, 300)


def test_sample_local_features_draws_per_image_and_normalises() -> None:
    model = build_model(ModelConfig(backbone="resnet18", cut="layer2", weights="none", num_clusters=4))
    batches = [torch.randn(2, 3, 3, 32, 32), torch.randn(1, 3, 3, 32, 32)]  # 3 images x 3 crops, 4x4 maps
    feats = sample_local_features(model, batches, n_per_image=10, seed=0)
    assert feats.shape == (30, 128) and feats.dtype == np.float32
    assert np.allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    all_of_them = sample_local_features(model, batches[:1], n_per_image=1000)
    assert all_of_them.shape == (2 * 3 * 16, 128)
    # the sample feeds NetVLAD initialisation
    cent = fit_centroids(feats, 4)
    alpha = model.aggregator.init_from_clusters(cent, feats, vladv2=False)
    assert alpha > 0
