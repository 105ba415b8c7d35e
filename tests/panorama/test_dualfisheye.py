"""Dual-fisheye and cubemap projections: directions, calibration files, config and CLI plumbing."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from panoplace.cli import main
from panoplace.config import PanoramaConfig
from panoplace.errors import InputError
from panoplace.panorama.cubemap import cubemap_band
from panoplace.panorama.dualfisheye import (DualFisheyeCalibration, FisheyeLens, dual_fisheye_band,
                                            load_calibration, save_calibration, stitch_equirect)
from panoplace.panorama.project import image_to_crops, make_panorama
from panoplace.panorama.sphere import band_directions, direction_to_equirect, rotation_matrix
from panoplace.store import load_descriptors
from panoplace.synth.lens import DualFisheyeLens, equirect_to_cubemap, equirect_to_dual_fisheye


def _coded(w: int = 720, h: int = 360) -> np.ndarray:
    """Red = azimuth / 360 * 250, green = (elevation + 90) / 180 * 250."""
    az = (np.arange(w) + 0.5) * 360.0 / w
    el = 90.0 - (np.arange(h) + 0.5) * 180.0 / h
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.round(az[None, :] / 360.0 * 250).astype(np.uint8)
    img[..., 1] = np.round((el[:, None] + 90.0) / 180.0 * 250).astype(np.uint8)
    img[..., 2] = 200
    return img


def test_sphere_round_trip_and_rotation() -> None:
    d = band_directions(36, 18)
    col, row = direction_to_equirect(d, 36, 18)
    np.testing.assert_allclose(col, np.broadcast_to(np.arange(36.0), (18, 36)), atol=1e-9)
    np.testing.assert_allclose(row, np.broadcast_to(np.arange(18.0)[:, None], (18, 36)), atol=1e-9)
    np.testing.assert_allclose(rotation_matrix(90, 0, 0) @ [1, 0, 0], [0, 1, 0], atol=1e-12)  # yaw right
    np.testing.assert_allclose(rotation_matrix(0, 90, 0) @ [1, 0, 0], [0, 0, 1], atol=1e-12)  # pitch up


def test_lens_axes_see_front_and_back() -> None:
    calib = DualFisheyeCalibration.default(400, 200)
    frame = np.zeros((200, 400, 3), np.uint8)
    frame[:, :200] = (255, 0, 0)  # front half red
    frame[:, 200:] = (0, 0, 255)  # back half blue
    pano = stitch_equirect(frame, calib, 360)
    assert pano[90, 0, 0] > 250 and pano[90, 0, 2] < 5  # azimuth ~0: front lens
    assert pano[90, 180, 2] > 250 and pano[90, 180, 0] < 5  # azimuth ~180: back lens
    seam = pano[90, 86:94].astype(int)  # azimuth 86.5..93.5 deg: inside the 190-180 = 10 deg overlap
    assert (np.diff(seam[:, 0]) < 0).all() and (np.diff(seam[:, 2]) > 0).all()  # feathered, no step
    assert (np.abs(seam[:, 0] + seam[:, 2] - 255) <= 2).all()


def test_coded_directions_through_a_rotated_lens() -> None:
    lens = DualFisheyeLens(size=256, back_yaw=5.0, back_pitch=-3.0, back_roll=4.0)
    back = lens.calibration().back
    frame = equirect_to_dual_fisheye(_coded(), lens)
    # the back lens' centre pixel looks along its turned axis: yaw 5 towards its right (the
    # camera's left, bearing 270) gives bearing 185; pitch -3 gives elevation -3
    axis = back.basis("back")[:, 0]
    az = np.degrees(np.arctan2(axis[1], axis[0])) % 360
    el = np.degrees(np.arcsin(axis[2]))
    px = frame[int(round(back.cy)), int(round(back.cx))].astype(float)
    assert abs(px[0] / 250 * 360 - az) < 1.0 and abs(px[1] / 250 * 180 - 90 - el) < 1.0
    assert abs(az - 185.0) < 1e-6 and abs(el + 3.0) < 1e-6


def test_calibration_file_round_trip_and_errors(tmp_path: Path) -> None:
    calib = DualFisheyeLens(size=64).calibration()
    p = save_calibration(calib, tmp_path / "c.json")
    assert load_calibration(p) == calib
    assert DualFisheyeCalibration.from_dict(json.loads(p.read_text())) == calib
    bad = json.loads(p.read_text())
    bad["front"]["radius"] = -3
    with pytest.raises(InputError, match="radius"):
        DualFisheyeCalibration.from_dict(bad)
    with pytest.raises(InputError, match="missing keys"):
        DualFisheyeCalibration.from_dict({"width": 10, "height": 5, "front": {}})
    with pytest.raises(InputError, match="is for 128x64 frames"):
        dual_fisheye_band(np.zeros((10, 20, 3), np.uint8), calib, 32, 16)
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(InputError, match="cannot read"):
        load_calibration(tmp_path / "x.json")
    with pytest.raises(InputError, match="field of view"):
        FisheyeLens(1, 1, 1, fov_deg=80)


def test_projections_through_panorama_config() -> None:
    pano = _coded(720, 360)
    lens = DualFisheyeLens(size=256)
    frame = equirect_to_dual_fisheye(pano, lens)
    cfg = PanoramaConfig(projection="dual-fisheye", fisheye=lens.calibration().to_dict(), elevation=(30.0, -30.0),
                         pano_width=360, pano_height=60, n_crops=4, crop_size=(32, 48))
    band = make_panorama(frame, cfg)
    assert band.shape == (60, 360, 3)
    # row i of the band looks at elevation 30 - (i + 0.5); green codes it
    el = band[:, 100, 1].astype(float) / 250 * 180 - 90
    np.testing.assert_allclose(el, 30 - (np.arange(60) + 0.5), atol=1.5)
    assert image_to_crops(frame, cfg).shape == (4, 32, 48, 3)
    assert PanoramaConfig.from_dict(cfg.to_dict()) == cfg
    cube = equirect_to_cubemap(pano, 96)
    cband = make_panorama(cube, PanoramaConfig(projection="cubemap", elevation=(30.0, -30.0), pano_width=360, pano_height=60))
    assert np.abs(cband.astype(int) - band.astype(int)).mean() < 3
    with pytest.raises(InputError, match="4F x 3F"):
        cubemap_band(np.zeros((96, 96, 3), np.uint8), 36, 18)


def test_extract_cli_with_dual_fisheye_calibration(tmp_path: Path, capsys) -> None:
    lens = DualFisheyeLens(size=64)
    d = tmp_path / "frames"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        pano = cv2.resize((rng.random((16, 32, 3)) * 255).astype(np.uint8), (256, 128))
        cv2.imwrite(str(d / f"{i}.png"), equirect_to_dual_fisheye(pano, lens))
    calib = save_calibration(lens.calibration(), tmp_path / "calib.json")
    out = tmp_path / "df.h5"
    code = main(["extract", str(d), "--out", str(out), "--projection", "dual-fisheye", "--calibration", str(calib),
                 "--crops", "4", "--crop-size", "32", "32", "--backbone", "resnet18", "--weights", "none",
                 "--aggregator", "gem", "--workers", "0", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    store = load_descriptors(out)
    assert store.descriptors.shape[0] == 3
    assert store.config["panorama"]["projection"] == "dual-fisheye"
    assert store.config["panorama"]["fisheye"] == lens.calibration().to_dict()
