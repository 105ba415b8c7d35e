"""Training the scene head: toy labelled set beats chance, standardisation folding, splits, CLI."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from panoplace.cli import main
from panoplace.errors import DatasetError, InputError
from panoplace.models.checkpoint import load_scene_checkpoint
from panoplace.models.scene import SceneHead
from panoplace.scene import (
    confusion_matrix,
    fit_scene_head,
    head_probabilities,
    image_folder,
    labelled_csv,
    read_scene_csv,
    split_labelled,
)
from panoplace.synth.world import SCENES


def test_toy_set_beats_chance_on_held_out_images(tmp_path: Path, toy_folder: Path, capsys) -> None:
    out = tmp_path / "toy_scene.pt"
    # a shallow scene branch (EfficientNet-Lite0 block 4, 40 channels) keeps the test fast
    rc = main(["scene", "train", str(toy_folder / "data"), "--out", str(out), "--projection", "plain",
               "--crop-size", "64", "64", "--split", "4", "--scene-cut", "4", "--epochs", "15",
               "--batch-size", "16", "--workers", "0", "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "categories: data (3)" in printed and "validation accuracy" in printed
    # the checkpoint carries the categories; the base is frozen EfficientNet-Lite0 (ImageNet)
    model, panorama = load_scene_checkpoint(out)
    assert model.categories == ["blobs", "checks", "stripes"] and model.category_set == "data"
    assert panorama is not None and panorama.crop_size == (64, 64)
    assert model.config.place.backbone == "efficientnet_lite0" and model.config.scene_cut == 4
    png = tmp_path / "toy_scene_confusion.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(tmp_path / "toy_scene_log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 15 and all(0.0 <= float(r["val_accuracy"]) <= 1.0 for r in rows)
    # held-out images (other random draws) through `scene predict` with the checkpoint
    rc = main(["scene", "predict", str(toy_folder / "held_out"), "--checkpoint", str(out), "--csv",
               str(tmp_path / "held.csv"), "--batch-size", "18", "--workers", "0", "--no-progress"])
    assert rc == 0
    table = read_scene_csv(tmp_path / "held.csv")
    assert len(table) == 18 and all(len(v) == 3 for v in table.values())
    accuracy = np.mean([rows[0][0] == image.split("/")[0] for image, rows in table.items()])
    assert accuracy >= 0.6  # chance is 1/3


def test_head_reads_raw_features_after_training() -> None:
    """Features far from zero mean / unit scale: the standardisation used in training is folded
    into the head, so the saved head gives the accuracy seen during validation on raw features."""
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (3, 16))
    def draw(n):
        y = rng.integers(0, 3, n)
        x = centres[y][:, None, :] + 0.4 * rng.normal(size=(n, 2, 16))
        return (100.0 + 30.0 * x).astype(np.float32), y
    xt, yt = draw(120)
    xv, yv = draw(60)
    head = SceneHead(16, 3, hidden=8)
    fit = fit_scene_head(head, xt, yt, xv, yv, epochs=20, seed=1)
    assert len(fit.history) == 20 and 1 <= fit.best_epoch <= 20
    acc = float((head_probabilities(head, xv).argmax(1) == yv).mean())
    assert acc == pytest.approx(fit.val_accuracy) and acc > 0.9
    assert np.allclose(head_probabilities(head, xv).sum(1), 1.0, atol=1e-5)
    with pytest.raises(InputError, match="channels"):
        fit_scene_head(head, xt[:, :, :8], yt)


def test_labelled_sets_and_splits(tmp_path: Path, toy_folder: Path) -> None:
    data = image_folder(toy_folder / "data")
    assert data.categories == ["blobs", "checks", "stripes"] and list(data.counts()) == [12, 12, 12]
    train, val = split_labelled(data, 0.25, seed=3)
    assert list(val.counts()) == [3, 3, 3] and list(train.counts()) == [9, 9, 9]
    assert not set(train.paths) & set(val.paths)
    with pytest.raises(DatasetError, match="training set does not have"):
        image_folder(toy_folder / "data", categories=["blobs", "checks"])
    with pytest.raises(DatasetError, match="at least 2 category folders"):
        image_folder(toy_folder / "data" / "blobs")
    # a drive of the procedural world: the scene column, the world's category set
    f = tmp_path / "frames.csv"
    f.write_text("image,x,y,scene\na.jpg,0,0,plaza\nb.jpg,5,0,street\nc.jpg,10,0,plaza\n")
    world = labelled_csv(f)
    assert world.categories == list(SCENES) and list(world.labels) == [2, 0, 2]
    f.write_text("image,x,y\na.jpg,0,0\n")
    with pytest.raises(DatasetError, match="scene"):
        labelled_csv(f)


def test_confusion_matrix_counts() -> None:
    cm = confusion_matrix(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 2, 0]), 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_categories_without_training_images_are_never_predicted() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 8)).astype(np.float32)
    y = rng.integers(0, 2, 40)  # categories 2 and 3 have no image
    head = SceneHead(8, 4)
    fit_scene_head(head, x, y, epochs=3)
    p = head_probabilities(head, 10 * rng.normal(size=(200, 8)).astype(np.float32))
    assert p[:, 2:].max() < 1e-6 and set(p.argmax(1)) <= {0, 1}
