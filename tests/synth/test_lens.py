"""Annular lens model: ring geometry, mapping conventions, JSON files."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from panoplace.errors import InputError
from panoplace.panorama.cubemap import cubemap_band
from panoplace.panorama.dualfisheye import DualFisheyeCalibration, dual_fisheye_band, load_calibration, save_calibration
from panoplace.synth import AnnularLens, equirect_to_annular, load_lens, render_frame, write_lens_files
from panoplace.synth.lens import DualFisheyeLens, equirect_to_cubemap, equirect_to_dual_fisheye


def _coded_equirect(w: int = 720, h: int = 360) -> np.ndarray:
    """An equirect whose red channel encodes azimuth and green channel elevation."""
    az = (np.arange(w) + 0.5) * 360.0 / w
    el = 90.0 - (np.arange(h) + 0.5) * 180.0 / h
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.round(az[None, :] / 360.0 * 250).astype(np.uint8)
    img[..., 1] = np.round((el[:, None] + 90.0) / 180.0 * 250).astype(np.uint8)
    img[..., 2] = 200
    return img


@pytest.mark.parametrize("radial", ["linear", "sine"])
@pytest.mark.parametrize("clockwise", [False, True])
def test_directions_land_where_the_lens_says(radial: str, clockwise: bool) -> None:
    lens = AnnularLens.for_size(512, start_deg=30.0, clockwise=clockwise, radial=radial, vignetting=0.0)
    ann = equirect_to_annular(_coded_equirect(), lens).astype(float)
    for az, el in [(10.0, 0.0), (100.0, 20.0), (200.0, -45.0), (300.0, -10.0)]:
        u, v = lens.project(np.array(az), np.array(el))
        px = ann[int(round(float(v))), int(round(float(u)))]
        assert abs(px[0] / 250 * 360 - az) < 4.0
        assert abs(px[1] / 250 * 180 - 90 - el) < 3.0
    # azimuth 90 deg lies a quarter turn from start_deg, counter-clockwise on screen unless clockwise
    u, v = lens.project(np.array(90.0), np.array(0.0))
    ang = np.degrees(np.arctan2(-(v - lens.cy), u - lens.cx))
    assert abs(((ang - (30.0 + (-90.0 if clockwise else 90.0))) + 180) % 360 - 180) < 1e-6


def test_ring_matches_geometry_black_outside_dark_inside(tmp_path) -> None:
    lens = AnnularLens.for_size(400)
    ann = equirect_to_annular(np.full((128, 256, 3), 180, np.uint8), lens)
    a_path, l_path = write_lens_files(lens, tmp_path)
    geo = json.loads(a_path.read_text())
    assert set(geo) == {"cx", "cy", "r_inner", "r_outer", "start_deg", "clockwise"}
    assert load_lens(l_path) == lens
    v, u = np.mgrid[0:400, 0:400]
    r = np.hypot(u - geo["cx"], v - geo["cy"])
    assert ann[r > geo["r_outer"] + 1.0].max() == 0
    inner = ann[r < geo["r_inner"] - 1.0]
    assert inner.max() <= 30 and inner.min() > 0  # a dark disc, not black
    ring = ann[(r > geo["r_inner"] + 1.0) & (r < geo["r_outer"] - 1.0)]
    assert ring.min() > 100


def test_bad_lenses_raise() -> None:
    with pytest.raises(InputError):
        AnnularLens(size=100, cx=50, cy=50, r_inner=10, r_outer=80)  # ring leaves the image
    with pytest.raises(InputError):
        AnnularLens.for_size(512, radial="fisheye")
    with pytest.raises(InputError):
        AnnularLens.for_size(512, elev_top_deg=-70.0)
    with pytest.raises(InputError):
        equirect_to_annular(np.zeros((10, 20), np.uint8), AnnularLens.for_size(64))


def test_panorama_unwrapper_recovers_the_equirect_band(tmp_path) -> None:
    """The project's unwrapper, fed the geometry JSON, gives back the rendered elevation band."""
    annular = pytest.importorskip("panoplace.panorama.annular")
    import cv2

    rng = np.random.default_rng(0)
    eq = cv2.resize(rng.integers(0, 255, (45, 90, 3), dtype=np.uint8), (720, 360), interpolation=cv2.INTER_CUBIC)
    lens = AnnularLens.for_size(1024, start_deg=57.0, vignetting=0.0)
    ann = equirect_to_annular(eq, lens)
    geo_path, _ = write_lens_files(lens, tmp_path)
    out_w, out_h = 720, 180
    un = annular.AnnularUnwrapper(annular.load_geometry(geo_path), out_w, out_h)(ann).astype(float)
    # the same band sampled from the equirect: column c at azimuth c*360/W, row i at the i-th radius
    el = lens.elev_top_deg - (np.arange(out_h) + 0.5) * (lens.elev_top_deg - lens.elev_bottom_deg) / out_h
    my, mx = np.meshgrid((90.0 - el) * 360 / 180.0 - 0.5, np.arange(out_w) * 720 / out_w - 0.5, indexing="ij")
    padded = np.concatenate([eq[:, -2:], eq, eq[:, :2]], axis=1)
    ref = cv2.remap(padded, (mx + 2).astype(np.float32), my.astype(np.float32), cv2.INTER_LINEAR).astype(float)
    assert np.abs(un - ref).mean() < 6.0
    assert np.abs(np.roll(un, 20, axis=1) - ref).mean() > 20.0  # a misaligned band would not match


# --- dual fisheye and cubemap from the procedural world ---------------------------------------

def _world_pano_and_reference(world, pose):
    """The world's own 1024x512 equirect render and its 512x256 area average (the reference)."""
    pano = render_frame(world, pose, width=1024, height=512)
    return pano, cv2.resize(pano, (512, 256), interpolation=cv2.INTER_AREA).astype(float)


def test_dual_fisheye_stitched_back_matches_the_world_equirect(world, pose, tmp_path) -> None:
    """World → dual-fisheye frame (lens centres ~2 px off, back lens turned ~1 deg) → stitched with
    the saved calibration → 512x256 equirect, compared with the world's render area-averaged to
    512x256.

    Tolerance: mean |difference| <= 1.5 grey levels, 95th percentile <= 6. The frame samples the
    render at ~0.39 deg/px (render 0.35 deg/px) and the stitch samples it again bilinearly, so
    the only expected differences are interpolation blur on texture edges (measured: mean 0.48,
    p95 2). A calibration error of the size the lens carries (the default calibration: centres
    ~2 px and the back lens ~1 deg off) gives a mean of ~9, so the bound catches it.
    """
    pano, ref = _world_pano_and_reference(world, pose)
    lens = DualFisheyeLens(size=512)
    frame = equirect_to_dual_fisheye(pano, lens)
    assert frame.shape == (512, 1024, 3) and frame[0, 0].max() == 0  # black outside the circles
    calib = load_calibration(save_calibration(lens.calibration(), tmp_path / "calib.json"))
    assert calib == lens.calibration()
    err = np.abs(dual_fisheye_band(frame, calib, 512, 256).astype(float) - ref).mean(axis=2)
    assert err.mean() <= 1.5 and np.percentile(err, 95) <= 6.0, (err.mean(), np.percentile(err, 95))
    wrong = dual_fisheye_band(frame, DualFisheyeCalibration.default(1024, 512, lens.fov_deg), 512, 256)
    assert np.abs(wrong.astype(float) - ref).mean() > 4.0


def test_cubemap_read_back_matches_the_world_equirect(world, pose) -> None:
    """World → horizontal-cross cubemap (256 px faces, ~0.35 deg/px at the face centres) →
    512x256 equirect; same tolerance and reason as the dual-fisheye test (measured mean 0.52)."""
    pano, ref = _world_pano_and_reference(world, pose)
    cube = equirect_to_cubemap(pano, 256)
    assert cube.shape == (768, 1024, 3)
    err = np.abs(cubemap_band(cube, 512, 256).astype(float) - ref).mean(axis=2)
    assert err.mean() <= 1.5 and np.percentile(err, 95) <= 6.0, (err.mean(), np.percentile(err, 95))
    # a layout read with the faces in the wrong cells is far off
    swapped = cube.copy()
    swapped[256:512, 256:512], swapped[256:512, 768:1024] = cube[256:512, 768:1024], cube[256:512, 256:512]
    assert np.abs(cubemap_band(swapped, 512, 256).astype(float) - ref).mean() > 4.0
