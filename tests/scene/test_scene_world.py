"""The offline default on the procedural world: head on scene labels, localisation with re-ranking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from panoplace.data import ImageSet
from panoplace.data.groundtruth import GroundTruth
from panoplace.errors import DatasetError
from panoplace.scene import (
    WORLD_CATEGORIES,
    demo_scene_block,
    predict_scenes,
    scene_accuracy,
    scene_labels,
    scene_localisation,
    train_world_scene_head,
)
from panoplace.synth.world import SCENES


def _drive(name: str, scenes, rng: np.random.Generator, centres: np.ndarray, noise: float = 0.5):
    """An in-memory drive along a line (10 m apart) and pooled features around each scene's centre."""
    n = len(scenes)
    s = ImageSet(name, Path("."), [f"{name}/{i:03d}.jpg" for i in range(n)],
                 xy=np.stack([np.arange(n) * 10.0, np.zeros(n)], axis=1), scene=list(scenes))
    idx = np.array([WORLD_CATEGORIES.index(c) for c in scenes])
    feats = centres[idx][:, None, :] + noise * rng.normal(size=(n, 4, centres.shape[1]))  # (N, K=4, C)
    return s, feats.astype(np.float32)


def test_world_categories_are_the_synth_scenes() -> None:
    assert WORLD_CATEGORIES == tuple(SCENES)


def test_head_on_world_labels_beats_chance_on_another_drive() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (5, 24)) * 2 + 5
    route = [WORLD_CATEGORIES[i] for i in rng.integers(0, 5, 60)]
    day, f_day = _drive("day", route, rng, centres)
    night, f_night = _drive("night", route, rng, centres + 0.8, noise=0.8)  # shifted: another condition
    head = train_world_scene_head([day], [f_day], epochs=30)
    assert head.label == "procedural-world (5)"
    probs = predict_scenes(head, f_night)
    assert probs.shape == (60, 5) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert scene_accuracy(probs, scene_labels(night)) > 0.6  # chance ~0.2-0.3
    with pytest.raises(DatasetError, match="scene"):
        scene_labels(ImageSet("x", Path("."), ["a.jpg"]))


def test_scene_reranking_fixes_a_cross_scene_confusion() -> None:
    # database: 4 places, plaza/street alternating, 100 m apart; descriptors one-hot
    db_xy = np.array([[0, 0], [100, 0], [200, 0], [300, 0]], float)
    db = np.eye(4, dtype=np.float32)
    db_probs = np.array([[0.9, 0.1], [0.1, 0.9], [0.9, 0.1], [0.1, 0.9]], np.float32)
    # query 0 is at place 0 (a plaza) but looks a little more like place 1 (a street);
    # query 1 is at place 3 and its descriptor is right
    q = np.array([[0.70, 0.71, 0, 0], [0, 0, 0.2, 0.98]], np.float32)
    q_probs = np.array([[0.95, 0.05], [0.1, 0.9]], np.float32)
    gt = GroundTruth.from_positions(db_xy, db_xy[[0, 3]], radius=10)
    r = scene_localisation(q, db, q_probs, db_probs, gt, weights=(0.0, 0.1), k=4)
    assert r["plain"] == 0.5 and r["rerank w=0"] == 0.5 and r["rerank w=0.1"] == 1.0


def test_demo_scene_block_reports_accuracy_and_categories() -> None:
    rng = np.random.default_rng(1)
    centres = rng.normal(0, 1, (5, 16)) * 3
    route = ["plaza"] * 10 + ["waterfront"] * 10 + ["street"] * 10
    sets, feats, place = {}, {}, {}
    for name in ("day", "dusk"):
        sets[name], feats[name] = _drive(name, route, rng, centres)
        place[name] = np.eye(30, dtype=np.float32) + 0.05 * rng.normal(size=(30, 30)).astype(np.float32)
    res = demo_scene_block(sets, "day", ["dusk"], {k: v.mean(1) for k, v in feats.items()}, place, radius=5.0)
    s = res.summary
    assert s["categories"] == "procedural-world (5)" and s["category_list"] == list(SCENES)
    assert s["accuracy"]["day->dusk"] > 0.8
    r1 = s["recall@1"]["day->dusk"]
    assert set(r1) == {"without scene", "scene re-rank (w=0.1)"} and r1["without scene"] == 1.0
    assert len(s["frames"]["dusk"]["predicted"]) == 30 and s["frames"]["dusk"]["true"] == route
    assert "categories: procedural-world (5)" in res.table and "dusk" in res.table


def test_one_pass_gives_place_descriptors_and_scene_features(tmp_path: Path) -> None:
    """The demo's pass: the GeM descriptors equal `extract`'s, the features are the scene branch's."""
    import cv2
    import torch

    from panoplace.config import ModelConfig, PanoramaConfig
    from panoplace.extract import extract
    from panoplace.models.build import build_model
    from panoplace.scene import predict_images, world_scene_model

    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), cv2.resize(rng.integers(0, 255, (8, 24, 3), dtype=np.uint8),
                                                           (192, 64), interpolation=cv2.INTER_CUBIC))
    gem = build_model(ModelConfig(aggregator="gem", cut=4))
    pano = PanoramaConfig(projection="plain", n_crops=2, crop_size=(64, 64))
    paths = ["0.png", "1.png", "2.png"]
    model = world_scene_model(gem)  # scene branch: the rest of the trunk (blocks 5..15 + head)
    assert len(model.place_tail) == 0 and len(model.scene_tail) == 12 and model.config.split == 4
    res = predict_images(tmp_path, paths, model, pano, return_features=True, num_workers=0, progress=False)
    ref = extract(tmp_path, paths, gem, pano, num_workers=0, progress=False).descriptors
    assert res.descriptors.fingerprint == ref.fingerprint
    assert np.allclose(res.descriptors.descriptors, ref.descriptors, atol=1e-5)
    assert res.features.shape == (3, 2, 1280)  # per crop, the whole EfficientNet-Lite0 trunk
    from panoplace.panorama.project import PanoramaProjector
    from panoplace.runner import CropDataset

    crops = torch.stack([CropDataset(tmp_path, paths, PanoramaProjector(pano))[i][0] for i in range(3)])
    with torch.no_grad():
        want = model.scene_features(model.preprocess(crops)).numpy()
    assert np.allclose(res.features, want, atol=1e-5)
