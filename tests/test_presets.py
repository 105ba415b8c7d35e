"""Named presets: exact keys, fresh copies, loud errors, and CLI options overriding their fields."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from panoplace.cli import main
from panoplace.config import PipelineConfig
from panoplace.errors import InputError
from panoplace.presets import PRESETS, get_preset
from panoplace.steps.resolve import pipeline_config
from panoplace.store import load_descriptors


def test_presets_are_fresh_copies_of_measured_configs() -> None:
    a = get_preset("equirect")
    a.panorama.n_crops = 9
    assert get_preset("equirect").panorama.n_crops == 4
    assert get_preset("plain").to_dict() == PipelineConfig().to_dict()
    assert get_preset("annular").panorama.projection == "annular"
    assert get_preset("annular").panorama.annulus is None  # auto-calibrated from the images
    assert get_preset("equirect-gem").model.aggregator == "gem"
    for name, preset in PRESETS.items():
        assert preset.description, name


def test_unknown_preset_lists_the_names() -> None:
    with pytest.raises(InputError, match="choose one of annular, annular-gem, equirect, equirect-gem, plain"):
        get_preset("Equirect")


def test_overrides_change_single_fields_and_refuse_unknown_ones() -> None:
    cfg = pipeline_config("equirect", panorama_overrides={"n_crops": 2}, model_overrides={"aggregator": "gem"})
    assert (cfg.panorama.projection, cfg.panorama.n_crops, cfg.panorama.elevation) == ("equirect", 2, (40.0, -25.0))
    assert cfg.model.aggregator == "gem" and cfg.model.num_clusters == 32
    with pytest.raises(InputError, match="unknown model config key"):
        pipeline_config("plain", model_overrides={"clusters": 4})
    with pytest.raises(InputError, match="not both"):
        pipeline_config("plain", PipelineConfig())


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), rng.integers(0, 255, (64, 128, 3), np.uint8))
    return folder


def test_cli_preset_with_overrides(images: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "model.pt"
    assert main(["cluster", str(images), "--preset", "equirect", "--num-clusters", "4", "--weights", "none",
                 "--crop-size", "64", "64", "--per-image", "20", "--out", str(out), "--no-progress"]) == 0
    saved = torch.load(out, map_location="cpu", weights_only=True)
    text = repr(saved)
    # the preset's panorama (equirect, 4 crops, the 40..-25 band) with the crop size given
    assert "'equirect'" in text and "'n_crops': 4" in text and "[40.0, -25.0]" in text and "[64, 64]" in text
    assert "'num_clusters': 4" in text
    store = tmp_path / "d.h5"
    assert main(["extract", str(images), "--preset", "equirect-gem", "--weights", "none", "--crops", "2",
                 "--crop-size", "64", "64", "--out", str(store), "--no-progress"]) == 0
    ds = load_descriptors(store)
    assert ds.config["panorama"]["n_crops"] == 2 and ds.config["panorama"]["projection"] == "equirect"
    assert ds.config["model"]["aggregator"] == "gem"
    capsys.readouterr()
    # a preset with a checkpoint is two ways of giving the model: one error line, exit 2
    assert main(["extract", str(images), "--preset", "equirect", "--checkpoint", str(out),
                 "--out", str(tmp_path / "x.h5"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("panoplace extract: error:") and "not both" in err[0]
    # an unknown preset: argparse lists the choices
    with pytest.raises(SystemExit) as exc:
        main(["cluster", str(images), "--preset", "fisheye", "--out", str(out)])
    assert exc.value.code == 2
    assert "equirect-gem" in capsys.readouterr().err
