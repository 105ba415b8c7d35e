"""The steps' shared argument handling: one way to give a model, overrides, image sources."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from panoplace.config import ModelConfig, PanoramaConfig, PipelineConfig
from panoplace.data.frames import ImageSet
from panoplace.errors import InputError
from panoplace.models.build import build_model
from panoplace.steps import scene_train, train
from panoplace.steps.resolve import image_list, place_model


def test_one_way_to_give_the_model(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="checkpoint or preset"):
        place_model(tmp_path / "m.pt", preset="equirect")
    with pytest.raises(InputError, match="preset or pipeline"):
        place_model(preset="equirect", pipeline=PipelineConfig())
    with pytest.raises(InputError, match="NetVLAD needs cluster centroids"):
        place_model(preset="equirect")
    with pytest.raises(InputError, match="unknown preset"):
        place_model(preset="nope")


def test_model_in_memory_keeps_its_weights_and_takes_panorama_overrides() -> None:
    net = build_model(ModelConfig(aggregator="gem", weights="none"))
    got, pano = place_model(model=net, panorama=PanoramaConfig(projection="equirect", n_crops=4),
                            panorama_overrides={"n_crops": 2})
    assert got is net
    assert (pano.projection, pano.n_crops) == ("equirect", 2)
    built, pano = place_model(preset="equirect-gem", model_overrides={"weights": "none", "gem_p": 2.0})
    assert built.config.aggregator == "gem" and built.config.gem_p == 2.0 and pano.n_crops == 4


def test_image_sources(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    root, paths = image_list(tmp_path)
    assert (root, paths) == (tmp_path, ["a.png"])
    assert image_list(ImageSet("s", tmp_path, ["a.png"])) == (tmp_path, ["a.png"])
    with pytest.raises(InputError, match="lists no images"):
        image_list(ImageSet("s", tmp_path, []))


def test_bad_step_options_fail_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown training option"):
        train(tmp_path / "none.csv", tmp_path / "out", options={"epoch": 3})
    with pytest.raises(InputError, match="leave out --checkpoint"):
        scene_train(tmp_path, tmp_path / "s.pt", preset="equirect", checkpoint=tmp_path / "m.pt")
