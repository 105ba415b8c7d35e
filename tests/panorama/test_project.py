"""Image files → panorama → crops, per PanoramaConfig; image reading and atomic writing."""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest

from panoplace.config import PanoramaConfig
from panoplace.errors import ImageReadError, InputError
from panoplace.panorama.annular import AnnularUnwrapper, AnnulusGeometry
from panoplace.panorama.crops import crop_windows
from panoplace.panorama.project import image_to_crops, make_panorama, read_image, write_image

from .synthetic import nearest_colour, sector_annulus

GEOM = AnnulusGeometry(cx=150.0, cy=140.0, r_inner=40.0, r_outer=120.0)


@pytest.fixture
def annular() -> np.ndarray:
    return sector_annulus(280, 300, GEOM.cx, GEOM.cy, GEOM.r_inner, GEOM.r_outer, n_sectors=4)


def test_read_image_returns_rgb(tmp_path) -> None:
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[..., 0] = 200  # red
    cv2.imwrite(str(tmp_path / "red.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    got = read_image(tmp_path / "red.png")
    np.testing.assert_array_equal(got, rgb)
    cv2.imwrite(str(tmp_path / "grey.png"), np.full((5, 4), 77, np.uint8))
    grey = read_image(str(tmp_path / "grey.png"))
    assert grey.shape == (5, 4, 3) and (grey == 77).all()


@pytest.mark.parametrize("content, reason", [
    (b"\x89PNG\r\n\x1a\n this is not really a png", "cannot be decoded"),
    (b"", "empty file"),
    (None, "no such file"),
])
def test_read_image_errors_name_the_file(tmp_path, content, reason) -> None:
    path = tmp_path / "frame_007.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageReadError, match=reason) as exc:
        read_image(path)
    assert str(path) in str(exc.value) and exc.value.path == str(path)
    assert isinstance(exc.value, InputError)


def test_write_image_is_atomic_and_round_trips(tmp_path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (10, 12, 3)).astype(np.uint8)
    out = write_image(tmp_path / "a" / "x.png", rgb)
    np.testing.assert_array_equal(read_image(out), rgb)
    assert sorted(p.name for p in out.parent.iterdir()) == ["x.png"]
    with pytest.raises(InputError, match="cannot encode"):
        write_image(tmp_path / "x.unknownext", rgb)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_plain_panorama_is_the_image(annular) -> None:
    assert make_panorama(annular, PanoramaConfig(projection="plain")) is annular


def test_equirect_panorama_is_the_resized_band() -> None:
    img = np.repeat(np.arange(180, dtype=np.uint8)[:, None], 360, axis=1)
    img = np.stack([img] * 3, axis=-1)
    cfg = PanoramaConfig(projection="equirect", elevation=(45.0, -45.0), pano_width=180, pano_height=45)
    pano = make_panorama(img, cfg)
    assert pano.shape == (45, 180, 3) and pano.dtype == np.uint8
    # rows 45..134 of the source averaged in pairs
    np.testing.assert_allclose(pano[:, 0, 0], np.arange(45, 135, 2) + 0.5, atol=0.51)


def test_annular_panorama_uses_geometry_or_config(annular) -> None:
    cfg = PanoramaConfig(projection="annular", pano_width=360, pano_height=20, annulus=GEOM.to_dict())
    from_cfg = make_panorama(annular, cfg)
    assert from_cfg.shape == (20, 360, 3)
    np.testing.assert_array_equal(from_cfg, AnnularUnwrapper(GEOM, 360, 20)(annular))
    # an explicit geometry wins over the config's
    turned = make_panorama(annular, cfg, GEOM.replace(start_deg=90.0))
    np.testing.assert_array_equal(turned, np.roll(from_cfg, -90, axis=1))
    with pytest.raises(InputError, match="needs an annulus geometry"):
        make_panorama(annular, PanoramaConfig(projection="annular"))


def test_plain_single_crop_is_the_resized_image(annular) -> None:
    crops = image_to_crops(annular, PanoramaConfig(projection="plain", crop_size=(64, 48)))
    assert crops.shape == (1, 64, 48, 3) and crops.dtype == np.uint8
    np.testing.assert_array_equal(crops[0], cv2.resize(annular, (48, 64), interpolation=cv2.INTER_AREA))


def test_annular_crops_follow_the_sectors(annular) -> None:
    cfg = PanoramaConfig(projection="annular", annulus=GEOM.to_dict(), pano_width=400, pano_height=40,
                         n_crops=4, crop_size=(32, 32))
    crops = image_to_crops(annular, cfg)
    assert crops.shape == (4, 32, 32, 3)
    # crop k covers azimuths 90k..90(k+1), i.e. exactly sector k of the 4-sector ring
    for k in range(4):
        assert (nearest_colour(crops[k, :, 4:-4]) == k).all()



def _smooth_ring(seed: int = 0) -> np.ndarray:
    """A smooth random texture (so bilinear resampling orders do not matter much)."""
    rng = np.random.default_rng(seed)
    base = rng.random((12, 12, 3)).astype(np.float32)
    return (cv2.resize(base, (300, 280), interpolation=cv2.INTER_CUBIC).clip(0, 1) * 255).astype(np.uint8)


def test_annular_crops_sample_the_ring_like_unwrap_cut_resize() -> None:
    """One remap ring -> crops == unwrap, then cut (exactly when no resize is needed), then resize."""
    from panoplace.panorama.annular import annular_crops
    from panoplace.panorama.crops import extract_crops

    img = _smooth_ring()
    # windows exactly crop-sized, one crossing the 0/360 seam: identical to the panorama's columns
    windows = crop_windows(360, window_deg=90.0, stride_deg=60.0)
    assert any(s + w > 360 for s, w in windows)
    direct = annular_crops(img, GEOM, 360, 40, tuple(windows), (40, 90))
    two_step = extract_crops(AnnularUnwrapper(GEOM, 360, 40)(img), windows)
    np.testing.assert_array_equal(direct, two_step)
    # resized crops: within a few grey levels of unwrap -> cut -> resize (image_to_crops of a plain panorama)
    cfg = PanoramaConfig(projection="annular", annulus=GEOM.to_dict(), pano_width=1024, pano_height=256,
                         n_crops=4, crop_size=(224, 224))
    fused = image_to_crops(img, cfg).astype(np.float32)
    pano = make_panorama(img, cfg)
    ref = image_to_crops(pano, PanoramaConfig(projection="plain", n_crops=4, crop_size=(224, 224))).astype(np.float32)
    assert fused.shape == ref.shape == (4, 224, 224, 3)
    assert np.abs(fused - ref).mean() < 0.5 and np.percentile(np.abs(fused - ref), 99) <= 3  # 3 columns off: 6.9
    # clockwise lenses and start angles go through the same formula
    turned = GEOM.replace(start_deg=90.0, clockwise=True)
    np.testing.assert_array_equal(annular_crops(img, turned, 360, 40, ((0, 90),), (40, 90))[0],
                                  AnnularUnwrapper(turned, 360, 40)(img)[:, :90])
    with pytest.raises(InputError, match="centre"):
        annular_crops(img[:100, :100], GEOM, 360, 40, ((0, 90),), (40, 90))

def test_crop_count_matches_crop_windows_for_every_projection(annular) -> None:
    for cfg in (PanoramaConfig(projection="plain", n_crops=3, crop_size=(16, 16)),
                PanoramaConfig(projection="annular", annulus=GEOM.to_dict(), window_deg=90.0, stride_deg=60.0,
                               crop_size=(16, 16)),
                PanoramaConfig(projection="equirect", n_crops=5, crop_size=(16, 16))):
        k = len(crop_windows(cfg.pano_width, n_crops=cfg.n_crops, window_deg=cfg.window_deg,
                             stride_deg=cfg.stride_deg))
        assert image_to_crops(annular, cfg).shape == (k, 16, 16, 3)


def test_plain_multi_crop_treats_the_image_as_a_panorama() -> None:
    img = np.zeros((10, 40, 3), np.uint8)
    img[:, :, 0] = np.arange(40, dtype=np.uint8) * 5
    crops = image_to_crops(img, PanoramaConfig(projection="plain", n_crops=4, crop_size=(10, 10)))
    np.testing.assert_array_equal(crops[:, 0, :, 0], img[0, :, 0].reshape(4, 10))


@pytest.mark.parametrize("bad", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32),
                                 np.zeros((10, 10, 4), np.uint8), [[0, 0, 0]]])
def test_wrong_image_shapes_name_the_expected_shape(bad) -> None:
    with pytest.raises(InputError, match=r"expects an \(H, W, 3\) uint8 RGB image"):
        image_to_crops(bad, PanoramaConfig())


def test_panorama_package_does_not_import_torch() -> None:
    import subprocess

    code = "import sys, panoplace.panorama, panoplace.cli.unwrap; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def _image_to_crops_before(img: np.ndarray, cfg: PanoramaConfig) -> np.ndarray:
    """``image_to_crops`` as it was before the projector (0.1), from the public building blocks."""
    from panoplace.panorama.annular import annular_crops
    from panoplace.panorama.crops import extract_crops
    from panoplace.panorama.equirect import equirect_band

    def resize(a: np.ndarray, hw) -> np.ndarray:
        h, w = hw
        if a.shape[:2] == (h, w):
            return a
        shrink = h <= a.shape[0] and w <= a.shape[1]
        return cv2.resize(a, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)

    if cfg.projection == "plain" and cfg.n_crops == 1:
        return resize(img, cfg.crop_size)[None]
    if cfg.projection == "annular":
        windows = crop_windows(cfg.pano_width, n_crops=cfg.n_crops, window_deg=cfg.window_deg,
                               stride_deg=cfg.stride_deg)
        return annular_crops(img, AnnulusGeometry.from_dict(cfg.annulus), cfg.pano_width, cfg.pano_height,
                             tuple(windows), cfg.crop_size)
    if cfg.projection == "equirect":
        pano = resize(equirect_band(img, *cfg.elevation), (cfg.pano_height, cfg.pano_width))
    else:
        pano = img
    windows = crop_windows(pano.shape[1], n_crops=cfg.n_crops, window_deg=cfg.window_deg, stride_deg=cfg.stride_deg)
    return np.stack([resize(c, cfg.crop_size) for c in extract_crops(pano, windows)])


@pytest.mark.parametrize("cfg", [
    PanoramaConfig(projection="plain", crop_size=(64, 48)),
    PanoramaConfig(projection="plain", n_crops=3, crop_size=(40, 40)),
    PanoramaConfig(projection="equirect", n_crops=4, pano_width=256, pano_height=64, crop_size=(48, 48)),
    PanoramaConfig(projection="equirect", window_deg=90.0, stride_deg=45.0, pano_width=200, pano_height=50,
                   crop_size=(32, 40)),
    PanoramaConfig(projection="annular", annulus=GEOM.to_dict(), n_crops=4, pano_width=400, pano_height=40,
                   crop_size=(32, 32)),
    PanoramaConfig(projection="annular", annulus=GEOM.to_dict(), window_deg=90.0, stride_deg=60.0,
                   pano_width=360, pano_height=40, crop_size=(40, 90)),
], ids=["plain1", "plain3", "equirect4", "equirect-sliding", "annular4", "annular-sliding"])
def test_projector_gives_what_image_to_crops_gave(cfg) -> None:
    from panoplace.panorama.project import PanoramaProjector

    proj = PanoramaProjector(cfg)
    for seed, shape in ((0, (280, 300)), (1, (280, 300)), (2, (200, 400))):
        if cfg.projection == "annular" and shape != (280, 300):
            continue  # the ring's calibration belongs to 300x280 images
        img = (cv2.resize(np.random.default_rng(seed).random((9, 13, 3)).astype(np.float32), shape[::-1],
                          interpolation=cv2.INTER_CUBIC).clip(0, 1) * 255).astype(np.uint8)
        want = _image_to_crops_before(img, cfg)
        np.testing.assert_array_equal(proj.crops(img), want)
        np.testing.assert_array_equal(image_to_crops(img, cfg), want)
        assert proj.crops(img).shape[0] == proj.n_crops
    if cfg.projection == "annular":
        assert proj.geometry == GEOM  # parsed once from the config


def test_projector_calibrates_annular_images_once(annular_folder) -> None:
    from panoplace.panorama.calibrate import calibrate_annulus
    from panoplace.panorama.project import PanoramaProjector

    folder, truth = annular_folder
    paths = sorted(p.name for p in folder.glob("*.png"))
    cfg = PanoramaConfig(projection="annular", n_crops=2, pano_width=256, pano_height=32, crop_size=(32, 32))
    lazy = PanoramaProjector(cfg)  # no geometry yet: refused when an image is projected
    with pytest.raises(InputError, match="needs an annulus geometry"):
        lazy.crops(read_image(folder / paths[0]))
    proj = PanoramaProjector.calibrated(cfg, folder, paths)
    want = calibrate_annulus([read_image(folder / p) for p in paths])
    assert proj.geometry == want and proj.config.annulus == want.to_dict()
    assert abs(want.cx - truth["cx"]) < 2 and cfg.annulus is None  # the given config is left alone
    img = read_image(folder / paths[1])
    np.testing.assert_array_equal(proj.crops(img), image_to_crops(img, proj.config))
    # a config with a geometry is used as given, nothing is read
    assert PanoramaProjector.calibrated(proj.config, folder / "missing", ["nope.png"]).geometry == want
