"""`panoplace scene predict`: top-10 CSV, descriptor store, crop averaging, resuming, errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from panoplace.cli import main
from panoplace.config import PanoramaConfig
from panoplace.errors import InputError
from panoplace.extract import extract, list_images
from panoplace.models.backbones import IMAGENET_MEAN, IMAGENET_STD
from panoplace.panorama.project import image_to_crops, read_image
from panoplace.scene import load_categories, predict_images, read_scene_csv
from panoplace.store import check_compatible, load_descriptors

PANO = PanoramaConfig(projection="plain", n_crops=3, crop_size=(64, 64))


@pytest.fixture(scope="module")
def panoramas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5 random-textured 192x64 "panoramas" (3 crops of 64x64 each) in a folder tree."""
    d = tmp_path_factory.mktemp("panos")
    rng = np.random.default_rng(1)
    for i in range(5):
        small = rng.integers(0, 256, (8, 24, 3), dtype=np.uint8)
        img = cv2.resize(small, (192, 64), interpolation=cv2.INTER_CUBIC)
        sub = d / ("a" if i < 3 else "b")
        sub.mkdir(exist_ok=True)
        cv2.imwrite(str(sub / f"{i}.png"), img)
    return d


def _reference_probs(net: torch.nn.Module, root: Path, ids, panorama: PanoramaConfig) -> np.ndarray:
    """Softmax of the plain Places365 classifier on each crop, averaged over the crops."""
    out = []
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    for i in ids:
        crops = torch.from_numpy(image_to_crops(read_image(root / i), panorama)).permute(0, 3, 1, 2).float() / 255
        with torch.no_grad():
            out.append(torch.softmax(net((crops - mean) / std), dim=1).mean(dim=0).numpy())
    return np.stack(out)


def test_csv_has_top10_of_the_crop_averaged_softmax(tmp_path: Path, places365, resnet18_scene,
                                                     panoramas: Path) -> None:
    model = resnet18_scene
    root, paths = list_images(panoramas)
    res = predict_images(root, paths, model, PANO, csv_out=tmp_path / "s.csv", store_out=tmp_path / "d.h5",
                         batch_size=2, num_workers=0, progress=False)
    lines = (tmp_path / "s.csv").read_text().splitlines()
    assert lines[0] == "image,rank,category,probability"
    assert len(lines) == 1 + 10 * len(paths)
    table = read_scene_csv(tmp_path / "s.csv")
    assert sorted(table) == sorted(paths) == sorted(res.ids)
    ref = _reference_probs(places365["resnet18_places365_net"], root, res.ids, PANO)
    assert np.allclose(res.probs, ref, atol=1e-5)
    names = places365["names"]
    for i, image in enumerate(res.ids):
        rows = table[image]
        probs = np.array([p for _, p in rows])
        assert len(rows) == 10 and np.all(np.diff(probs) <= 0)
        assert 0.0 < probs.sum() <= 1.0 + 1e-5  # the top 10 of a softmax
        want = np.argsort(-ref[i])[:10]
        assert [c for c, _ in rows] == [names[j] for j in want]
        assert np.allclose(probs, ref[i][want], atol=2e-6)
    # the place descriptors: the store `panoplace extract` writes with the same place model
    stored = load_descriptors(tmp_path / "d.h5")
    plain = extract(root, paths, model.place_model(), PANO, num_workers=0, progress=False).descriptors
    check_compatible(stored, plain)
    assert stored.ids == plain.ids and np.allclose(stored.descriptors, plain.descriptors, atol=1e-5)
    assert not list(tmp_path.glob("*.part")) and not list(tmp_path.glob(".*tmp*"))


def test_an_interrupted_run_resumes(tmp_path: Path, resnet18_scene, panoramas: Path, monkeypatch) -> None:
    model = resnet18_scene
    root, paths = list_images(panoramas)
    calls = {"n": 0}
    forward = type(model).forward

    def failing(self, crops, whiten=True):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return forward(self, crops, whiten)

    monkeypatch.setattr(type(model), "forward", failing)
    kw = dict(csv_out=tmp_path / "s.csv", batch_size=2, num_workers=0, progress=False)
    with pytest.raises(KeyboardInterrupt):
        predict_images(root, paths, model, PANO, **kw)
    assert (tmp_path / "s.csv.part").is_file() and not (tmp_path / "s.csv").exists()
    calls["n"] = 10
    res = predict_images(root, paths, model, PANO, **kw)
    assert calls["n"] == 10 + 2  # 5 images in batches of 2: the first batch was kept
    monkeypatch.setattr(type(model), "forward", forward)
    fresh = predict_images(root, paths, model, PANO, batch_size=5, num_workers=0, progress=False)
    assert np.allclose(res.probs, fresh.probs, atol=1e-6) and res.ids == fresh.ids


def test_category_lists(tmp_path: Path, places365) -> None:
    names = load_categories(places365["categories"], n_expected=365)
    assert names == places365["names"] and names[7].endswith("/indoor")
    bad = tmp_path / "bad.txt"
    bad.write_text("/a/airfield 0\n/a/alley 2\n")
    with pytest.raises(InputError, match="out of order"):
        load_categories(bad)
    with pytest.raises(InputError, match="365"):
        load_categories(places365["categories"], n_expected=10)


def test_cli_predict_with_places365_files(tmp_path: Path, places365, panoramas: Path, capsys) -> None:
    out = tmp_path / "scenes.csv"
    rc = main(["scene", "predict", str(panoramas), "--places365", str(places365["wideresnet18_places365"]),
               "--categories", str(places365["categories"]), "--csv", str(out), "--out", str(tmp_path / "d.h5"),
               "--top", "5", "--projection", "plain", "--crops", "3", "--crop-size", "64", "64",
               "--workers", "0", "--no-progress"])
    assert rc == 0
    assert len(out.read_text().splitlines()) == 1 + 5 * 5
    assert "categories: Places365 (365)" in capsys.readouterr().out
    assert load_descriptors(tmp_path / "d.h5").descriptors.shape == (5, 512)


def test_cli_without_places365_weights_is_one_line_exit_2(tmp_path: Path, panoramas: Path, capsys,
                                                          no_places365_cache: Path) -> None:
    rc = main(["scene", "predict", str(panoramas), "--csv", str(tmp_path / "s.csv")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert "no Places365 weights" in err and "--places365 FILE --categories FILE" in err
    assert str(no_places365_cache) in err
    rc = main(["scene", "predict", str(panoramas), "--csv", str(tmp_path / "s.csv"),
               "--places365", str(tmp_path / "missing.pth.tar")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "does not exist" in err
    assert not (tmp_path / "s.csv").exists()


def test_cli_checkpoint_does_not_mix_with_places365_options(tmp_path: Path, panoramas: Path, capsys) -> None:
    rc = main(["scene", "predict", str(panoramas), "--csv", str(tmp_path / "s.csv"), "--checkpoint",
               str(tmp_path / "scene.pt"), "--aggregator", "avg"])
    err = capsys.readouterr().err
    assert rc == 2 and "do not combine it with --aggregator" in err
