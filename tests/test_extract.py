"""Extraction pipeline: descriptors, resume after an interrupted run, bad input, cluster verb."""

from __future__ import annotations

from pathlib import Path

import cv2
import threading

import numpy as np
import pytest
import torch

from panoplace.cli import main
from panoplace.config import ModelConfig, PanoramaConfig, PipelineConfig
from panoplace.errors import ImageReadError, InputError
from panoplace.extract import extract, list_images, load_model
from panoplace.store import load_descriptors

SMALL = dict(backbone="resnet18", weights="none", aggregator="gem")


def _pipeline(**model) -> PipelineConfig:
    return PipelineConfig(
        panorama=PanoramaConfig(projection="equirect", n_crops=4, pano_width=256, pano_height=64,
                                crop_size=(64, 64)),
        model=ModelConfig(**{**SMALL, **model}),
    )


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    """Ten small textured 'equirectangular' images."""
    rng = np.random.default_rng(1)
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(10):
        img = (rng.random((64, 128, 3)) * 255).astype(np.uint8)
        cv2.imwrite(str(d / f"{i:03d}.png"), img)
    return d


def _model(pipeline: PipelineConfig):
    torch.manual_seed(0)
    return load_model(None, pipeline)


def test_extract_gives_one_normalised_descriptor_per_image(image_dir):
    model, pano = _model(_pipeline())
    root, paths = list_images(image_dir)
    res = extract(root, paths, model, pano, batch_size=4, num_workers=0, device="cpu", progress=False)
    d = res.descriptors
    assert d.descriptors.shape == (10, model.descriptor_dim(4)) and d.ids == paths
    np.testing.assert_allclose(np.linalg.norm(d.descriptors, axis=1), 1.0, rtol=1e-5)
    assert d.config["panorama"]["n_crops"] == 4 and d.fingerprint
    # different images give different descriptors
    assert np.abs(d.descriptors[0] - d.descriptors[1]).max() > 1e-4


def test_batching_does_not_change_descriptors(image_dir):
    model, pano = _model(_pipeline(fusion="per-crop"))
    root, paths = list_images(image_dir)
    a = extract(root, paths, model, pano, batch_size=1, num_workers=0, device="cpu", progress=False)
    b = extract(root, paths, model, pano, batch_size=7, num_workers=1, device="cpu", progress=False)
    c = extract(root, paths, model, pano, batch_size=3, num_workers=0, device="cpu", progress=False,
                prefetch=False)
    assert a.descriptors.descriptors.shape == (10, 4, model.descriptor_dim(1))
    np.testing.assert_allclose(a.descriptors.descriptors, b.descriptors.descriptors, atol=1e-5)
    np.testing.assert_allclose(a.descriptors.descriptors, c.descriptors.descriptors, atol=1e-5)
    assert a.descriptors.ids == b.descriptors.ids == c.descriptors.ids == paths


def test_interrupted_run_resumes_without_recomputing(image_dir, tmp_path, monkeypatch):
    model, pano = _model(_pipeline())
    root, paths = list_images(image_dir)
    clean = extract(root, paths, model, pano, batch_size=3, num_workers=0, device="cpu", progress=False)
    out = tmp_path / "d.h5"
    seen = []
    forward = type(model).forward

    def dying_forward(self, x, *a, **k):
        seen.append(x.shape[0])
        if len(seen) == 3:
            raise KeyboardInterrupt  # killed during the third batch
        return forward(self, x, *a, **k)

    monkeypatch.setattr(type(model), "forward", dying_forward)
    with pytest.raises(KeyboardInterrupt):
        extract(root, paths, model, pano, out=out, batch_size=3, num_workers=0, device="cpu", progress=False)
    assert not out.exists() and (tmp_path / "d.h5.part").exists()
    seen.clear()
    monkeypatch.setattr(type(model), "forward", lambda self, x, *a, **k: (seen.append(x.shape[0]), forward(self, x, *a, **k))[1])
    res = extract(root, paths, model, pano, out=out, batch_size=3, num_workers=0, device="cpu", progress=False)
    assert sum(seen) == 4  # only the 4 images not finished before the interruption
    assert not (tmp_path / "d.h5.part").exists()
    stored = load_descriptors(out)
    assert stored.ids == paths
    np.testing.assert_allclose(stored.descriptors, clean.descriptors.descriptors, atol=1e-6)
    np.testing.assert_allclose(res.descriptors.descriptors, stored.descriptors)


def test_corrupt_image_stops_or_is_skipped(image_dir):
    (image_dir / "004.png").write_bytes(b"\x89PNG garbage")
    model, pano = _model(_pipeline())
    root, paths = list_images(image_dir)
    with pytest.raises(ImageReadError, match="004.png"):
        extract(root, paths, model, pano, batch_size=4, num_workers=0, device="cpu", progress=False)
    # stopping on the error also stopped the decoding thread
    assert not [t for t in threading.enumerate() if t.name == "panoplace-prefetch"]
    res = extract(root, paths, model, pano, batch_size=4, num_workers=0, device="cpu", on_error="skip",
                  progress=False)
    assert [p for p, _ in res.skipped] == ["004.png"]
    assert "004.png" not in res.descriptors.ids and len(res.descriptors) == 9


def test_list_images_sources(tmp_path, image_dir):
    (tmp_path / "list.txt").write_text("imgs/001.png\n# comment\nimgs/003.png\n")
    root, paths = list_images(tmp_path / "list.txt")
    assert root == tmp_path and paths == ["imgs/001.png", "imgs/003.png"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        list_images(tmp_path / "empty")
    with pytest.raises(InputError, match="no such file"):
        list_images(tmp_path / "nope")


def test_netvlad_without_centroids_is_refused():
    with pytest.raises(InputError, match="panoplace cluster"):
        load_model(None, _pipeline(aggregator="netvlad"))


def _cli(capsys, *argv) -> tuple:
    code = main(list(argv))
    return code, capsys.readouterr().err


def _one_error_line(err: str) -> bool:
    """Exactly one error line, no traceback (info logs may precede it)."""
    return "Traceback" not in err and sum("error:" in ln for ln in err.splitlines()) == 1


def test_cluster_then_extract_cli(image_dir, tmp_path, capsys):
    ckpt, out = tmp_path / "m.pt", tmp_path / "db.h5"
    common = ["--projection", "equirect", "--crops", "4", "--crop-size", "64", "64"]
    code, err = _cli(capsys, "cluster", str(image_dir), "--out", str(ckpt), "--backbone", "resnet18",
                     "--weights", "none", "--num-clusters", "4", "--images", "6", "--per-image", "20",
                     "--workers", "0", "--no-progress", *common)
    assert code == 0, err
    code, err = _cli(capsys, "extract", str(image_dir), "--checkpoint", str(ckpt), "--out", str(out),
                     "--workers", "0", "--no-progress")
    assert code == 0, err
    d = load_descriptors(out)
    assert d.descriptors.shape == (10, 4 * 512) and d.config["model"]["aggregator"] == "netvlad"
    assert d.config["panorama"]["n_crops"] == 4  # the checkpoint carried the panorama config


def test_cli_bad_input_one_line(tmp_path, image_dir, capsys):
    (tmp_path / "empty").mkdir()
    code, err = _cli(capsys, "extract", str(tmp_path / "empty"), "--out", str(tmp_path / "x.h5"),
                     "--aggregator", "gem")
    assert code == 2 and _one_error_line(err) and "no images" in err
    code, err = _cli(capsys, "extract", str(tmp_path / "missing"), "--out", str(tmp_path / "x.h5"))
    assert code == 2 and "no such file" in err
    bad = tmp_path / "other.pt"
    torch.save({"state_dict": {"weird.weight": torch.zeros(3)}}, bad)
    code, err = _cli(capsys, "extract", str(image_dir), "--checkpoint", str(bad), "--out", str(tmp_path / "x.h5"))
    assert code == 2 and _one_error_line(err), err
    (image_dir / "002.png").write_bytes(b"broken")
    code, err = _cli(capsys, "extract", str(image_dir), "--out", str(tmp_path / "y.h5"), "--aggregator", "gem",
                     "--backbone", "resnet18", "--weights", "none", "--workers", "0", "--no-progress",
                     "--crop-size", "64", "64")
    assert code == 2 and "002.png" in err and _one_error_line(err)
    code, err = _cli(capsys, "extract", str(image_dir), "--out", str(tmp_path / "y.h5"), "--aggregator", "gem",
                     "--backbone", "resnet18", "--weights", "none", "--workers", "0", "--no-progress",
                     "--crop-size", "64", "64", "--on-error", "skip")
    assert code == 0 and "002.png" in err and len(load_descriptors(tmp_path / "y.h5")) == 9


def test_cluster_and_extract_with_a_new_aggregator_cli(image_dir, tmp_path, capsys):
    """`cluster` writes the initial model of an aggregator without centroids; `extract` uses it."""
    ckpt, out = tmp_path / "salad.pt", tmp_path / "db.h5"
    common = ["--projection", "equirect", "--crops", "4", "--crop-size", "64", "64"]
    code, err = _cli(capsys, "cluster", str(image_dir), "--out", str(ckpt), "--backbone", "resnet18",
                     "--weights", "none", "--aggregator", "salad", "--agg-param", "num_clusters=2",
                     "--agg-param", "cluster_dim=8", "--agg-param", "token_dim=4", "--workers", "0",
                     "--no-progress", *common)
    assert code == 0, err
    code, err = _cli(capsys, "extract", str(image_dir), "--checkpoint", str(ckpt), "--out", str(out),
                     "--workers", "0", "--no-progress")
    assert code == 0, err
    d = load_descriptors(out)
    assert d.descriptors.shape == (10, 4 + 8 * 2) and d.config["model"]["aggregator"] == "salad"
    assert d.config["model"]["aggregator_params"] == {"num_clusters": 2, "cluster_dim": 8, "token_dim": 4}
    code, err = _cli(capsys, "extract", str(image_dir), "--out", str(tmp_path / "x.h5"), "--aggregator", "gem",
                     "--agg-param", "fc_dim=8", *common)
    assert code == 2 and _one_error_line(err) and "takes no aggregator parameters" in err
