"""Pixel descriptors (``extract --descriptor pixels``): SeqSLAM's patch-normalised thumbnails
through the image runner, stored with what they are."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from panoplace.cli import main
from panoplace.config import PanoramaConfig
from panoplace.errors import InputError
from panoplace.matching.seqslam_classic import seqslam_preprocess
from panoplace.pixels import PixelConfig, PixelModel, parse_pixel_size, pixel_panorama
from panoplace.steps import extract
from panoplace.store import load_descriptors


@pytest.fixture
def images(tmp_path, rng):
    """Five 64x32 colour images (the Nordland thumbnail size) written as PNG; their BGR arrays."""
    folder = tmp_path / "img"
    folder.mkdir()
    bgr = []
    for i in range(5):
        im = rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)
        im[:, : 8 * (i + 1)] //= 3  # structure that differs between images
        cv2.imwrite(str(folder / f"{i:03d}.png"), im)
        bgr.append(im)
    return folder, bgr


def test_describe_is_seqslam_preprocess_of_each_crop_concatenated(rng):
    crops = rng.integers(0, 256, (3, 2, 16, 24, 3), dtype=np.uint8)  # RGB, B=3 images of K=2 crops
    out = PixelModel(PixelConfig(24, 16, patch=8)).describe(torch.from_numpy(crops))
    assert out.shape == (3, 2 * 16 * 24) and out.dtype == np.float32
    for b in range(3):
        expect = seqslam_preprocess([crops[b, k][..., ::-1] for k in range(2)], (24, 16), 8)  # BGR in
        np.testing.assert_array_equal(out[b], expect.reshape(-1))


def test_extract_writes_pixel_store_equal_to_seqslam_preprocess(images, tmp_path):
    folder, bgr = images
    res = extract(folder, tmp_path / "p.h5", pixels=PixelConfig(64, 32), progress=False)
    back = load_descriptors(tmp_path / "p.h5")
    assert back.kind == "pixels" and back.metric == "sad" and back.fingerprint == ""
    assert back.config["pixels"] == {"width": 64, "height": 32, "patch": 8}
    assert back.config["panorama"]["crop_size"] == [32, 64]
    assert back.ids == [f"{i:03d}.png" for i in range(5)]
    expect = seqslam_preprocess(bgr, (64, 32)).reshape(5, -1)  # what the benchmark computes from cv2.imread
    np.testing.assert_array_equal(back.descriptors, expect)
    np.testing.assert_array_equal(res.descriptors.descriptors, expect)
    # a smaller size: the runner shrinks the crop by area averaging first, then grey (vs grey then shrink)
    small = extract(folder, pixels=PixelConfig(32, 16), progress=False).descriptors.descriptors
    # (uint8 rounding in another order; on these noise images ~1 % of a unit, Nordland R@1 is unchanged)
    assert np.abs(small - seqslam_preprocess(bgr, (32, 16)).reshape(5, -1)).mean() < 0.02


def test_pixel_store_appends_new_images(images, tmp_path):
    folder, _ = images
    (tmp_path / "two.txt").write_text("img/000.png\nimg/001.png\n")
    (tmp_path / "all.txt").write_text("\n".join(f"img/{i:03d}.png" for i in range(5)) + "\n")
    out = tmp_path / "p.h5"
    extract(tmp_path / "two.txt", out, pixels=PixelConfig(32, 16), progress=False)
    grown = extract(tmp_path / "all.txt", out, pixels=PixelConfig(32, 16), progress=False, append=True)
    whole = extract(tmp_path / "all.txt", pixels=PixelConfig(32, 16), progress=False)
    assert grown.descriptors.ids == whole.descriptors.ids
    np.testing.assert_array_equal(load_descriptors(out).descriptors, whole.descriptors.descriptors)


def test_pixel_config_and_size_errors():
    assert parse_pixel_size("64X32") == (64, 32)
    for bad in ("64", "64x", "ax32", "64x32x2"):
        with pytest.raises(InputError, match="WIDTHxHEIGHT"):
            parse_pixel_size(bad)
    with pytest.raises(InputError, match="not a multiple of the patch size 8"):
        PixelConfig(60, 32)
    with pytest.raises(InputError, match="width must be a whole number >= 1"):
        PixelConfig(0, 32)
    with pytest.raises(InputError, match="unknown pixel descriptor key"):
        PixelConfig.from_dict({"width": 8, "height": 8, "colour": True})
    assert pixel_panorama(PanoramaConfig(n_crops=4), PixelConfig(32, 16)).crop_size == (16, 32)


def test_pixels_take_no_model(images):
    folder, _ = images
    with pytest.raises(InputError, match="leave out checkpoint"):
        extract(folder, pixels=PixelConfig(), checkpoint="model.pt", progress=False)
    with pytest.raises(InputError, match="leave out model_overrides"):
        extract(folder, pixels=PixelConfig(), model_overrides={"aggregator": "gem"}, progress=False)
    with pytest.raises(InputError, match="crop size"):
        extract(folder, pixels=PixelConfig(), panorama_overrides={"crop_size": (32, 32)}, progress=False)


def test_pixel_stores_are_not_indexed(images, tmp_path, capsys):
    folder, _ = images
    extract(folder, tmp_path / "p.h5", pixels=PixelConfig(32, 16), progress=False)
    capsys.readouterr()  # its log lines, when an earlier test left the CLI's handler on
    assert "mean absolute difference, which the index does not search" in _fails(
        ["index", tmp_path / "p.h5", tmp_path / "p.index"], capsys, "index")


def _fails(argv, capsys, verb="extract") -> str:
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"panoplace {verb}: error: "), err
    return err[0]


def test_extract_cli_pixels_and_its_error_lines(images, tmp_path, capsys):
    folder, bgr = images
    out = tmp_path / "cli.h5"
    assert main(["extract", str(folder), "--descriptor", "pixels", "--pixel-size", "32x16", "--pixel-patch", "4",
                 "--out", str(out), "--no-progress"]) == 0
    back = load_descriptors(out)
    assert back.config["pixels"] == {"width": 32, "height": 16, "patch": 4} and back.descriptors.shape == (5, 512)
    capsys.readouterr()
    out = tmp_path / "not_written.h5"
    (tmp_path / "m.pt").write_bytes(b"x")  # (the option checks that it exists)
    assert "leave out --checkpoint, --aggregator" in _fails(
        ["extract", folder, "--descriptor", "pixels", "--checkpoint", tmp_path / "m.pt", "--aggregator", "gem",
         "--out", out],
        capsys)
    assert "--crop-size" in _fails(["extract", folder, "--descriptor", "pixels", "--crop-size", "32", "64",
                                    "--out", out], capsys)
    assert "are for --descriptor pixels" in _fails(["extract", folder, "--pixel-size", "64x32", "--out", out],
                                                   capsys)
    assert "WIDTHxHEIGHT" in _fails(["extract", folder, "--descriptor", "pixels", "--pixel-size", "64by32",
                                     "--out", out], capsys)
