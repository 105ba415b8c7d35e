"""``panoplace unwrap`` end to end on a folder of synthetic annular images, and unwrap_folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from panoplace.cli import main
from panoplace.errors import ImageReadError, InputError
from panoplace.panorama.annular import AnnulusGeometry, load_geometry, save_geometry
from panoplace.panorama.folder import list_folder_images, unwrap_folder
from panoplace.panorama.project import read_image, write_image

ARGS = ["--width", "128", "--height", "32", "--no-progress"]


def _outputs(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir() if p.suffix == ".png")


def test_unwraps_a_folder_with_auto_calibration(annular_folder, tmp_path, capsys) -> None:
    src, truth = annular_folder
    out = tmp_path / "out"
    saved = tmp_path / "calib" / "pal.json"
    assert main(["unwrap", str(src), str(out), *ARGS, "--save-calibration", str(saved)]) == 0
    assert _outputs(out) == ["frame_000.png", "frame_001.png", "frame_002.png"]
    pano = read_image(out / "frame_001.png")
    assert pano.shape == (32, 128, 3)
    assert pano.mean() > 60  # the ring was sampled, not the black background
    geom = load_geometry(out / "annulus.json")
    assert load_geometry(saved) == geom
    for key, value in truth.items():
        assert abs(getattr(geom, key) - value) <= 1.0, (key, getattr(geom, key), value)
    assert "3 panorama(s) written" in capsys.readouterr().err


def test_second_run_resumes_and_overwrite_rewrites(annular_folder, tmp_path, capsys) -> None:
    src, _ = annular_folder
    out = tmp_path / "out"
    assert main(["unwrap", str(src), str(out), *ARGS]) == 0
    marker = np.zeros((32, 128, 3), np.uint8)
    write_image(out / "frame_001.png", marker)  # stands for an output of the earlier run
    (out / "frame_002.png").unlink()  # as if the earlier run was killed before this one
    capsys.readouterr()

    assert main(["unwrap", str(src), str(out), *ARGS]) == 0
    assert "1 panorama(s) written, 2 already there" in capsys.readouterr().err
    assert (read_image(out / "frame_001.png") == 0).all()  # kept, not recomputed
    assert read_image(out / "frame_002.png").mean() > 60

    assert main(["unwrap", str(src), str(out), *ARGS, "--overwrite"]) == 0
    assert read_image(out / "frame_001.png").mean() > 60


def test_explicit_geometry_and_overrides(annular_folder, tmp_path) -> None:
    src, truth = annular_folder
    calib = save_geometry(AnnulusGeometry(**truth), tmp_path / "given.json")
    out = tmp_path / "out"
    assert main(["unwrap", str(src), str(out), *ARGS, "--calibration", str(calib),
                 "--start-deg", "90", "--clockwise"]) == 0
    assert load_geometry(out / "annulus.json") == AnnulusGeometry(**truth, start_deg=90.0, clockwise=True)

    out2 = tmp_path / "out2"
    assert main(["unwrap", str(src), str(out2), *ARGS, "--cx", "131.4", "--cy", "117.7", "--r-inner", "30.3",
                 "--r-outer", "98.6", "--start-deg", "90"]) == 0  # all four given: no calibration
    assert load_geometry(out2 / "annulus.json") == AnnulusGeometry(**truth, start_deg=90.0)
    # clockwise column c looks where counter-clockwise column -c does (both start at 90 deg)
    cw, ccw = read_image(out / "frame_000.png"), read_image(out2 / "frame_000.png")
    mirrored = ccw[:, (-np.arange(128)) % 128]
    assert np.abs(cw.astype(int) - mirrored).max() <= 2
    assert np.abs(cw.astype(int) - ccw).mean() > 10  # while the two layouts do differ


def test_other_geometry_or_size_over_existing_outputs_is_refused(annular_folder, tmp_path, capsys) -> None:
    src, _ = annular_folder
    out = tmp_path / "out"
    assert main(["unwrap", str(src), str(out), *ARGS]) == 0
    capsys.readouterr()
    assert main(["unwrap", str(src), str(out), *ARGS, "--start-deg", "45"]) == 2
    assert "unwrapped with another geometry" in capsys.readouterr().err
    assert main(["unwrap", str(src), str(out), *ARGS, "--start-deg", "45", "--overwrite"]) == 0
    assert load_geometry(out / "annulus.json").start_deg == 45.0
    capsys.readouterr()
    assert main(["unwrap", str(src), str(out), "--width", "64", "--height", "32", "--no-progress"]) == 2
    assert "is 128x32 but 64x32 panoramas were asked for" in capsys.readouterr().err


def test_empty_or_missing_folder_exits_2_with_one_line(tmp_path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    assert main(["unwrap", str(empty), str(tmp_path / "out"), *ARGS]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("panoplace unwrap: error: no images") and "\n" not in err
    assert main(["unwrap", str(tmp_path / "nope"), str(tmp_path / "out"), *ARGS]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_unreadable_image_stops_or_is_skipped(annular_folder, tmp_path, capsys) -> None:
    src, _ = annular_folder
    (src / "frame_001b.png").write_bytes(b"garbage, not a png")
    out = tmp_path / "out"
    assert main(["unwrap", str(src), str(out), *ARGS]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("panoplace unwrap: error: unreadable image") and "frame_001b.png" in err

    assert main(["unwrap", str(src), str(out), *ARGS, "--on-error", "skip"]) == 0
    err = capsys.readouterr().err
    assert "1 image(s) skipped" in err and "frame_001b.png" in err
    assert _outputs(out) == ["frame_000.png", "frame_001.png", "frame_002.png"]


def test_uncalibratable_folder_exits_2(tmp_path, capsys) -> None:
    src = tmp_path / "flat"
    src.mkdir()
    write_image(src / "a.jpg", np.full((60, 80, 3), 120, np.uint8))
    assert main(["unwrap", str(src), str(tmp_path / "out"), *ARGS]) == 2
    assert "no annulus found" in capsys.readouterr().err


def test_unwrap_folder_library_call(annular_folder) -> None:
    src, _ = annular_folder
    (src / "sub").mkdir()
    (src / "frame_000.png").rename(src / "sub" / "frame_000.PNG")
    out = src / "unwrapped"  # inside the input folder: its files must not become inputs
    result = unwrap_folder(src, out, out_width=64, out_height=16, calibrate_from=2, progress=False)
    assert [p.relative_to(out).as_posix() for p in result.written] == [
        "frame_001.png", "frame_002.png", "sub/frame_000.PNG"]
    assert result.calibration == out / "annulus.json"
    assert [p.as_posix() for p in list_folder_images(src, exclude=out)] == [
        "frame_001.png", "frame_002.png", "sub/frame_000.PNG"]
    again = unwrap_folder(src, out, out_width=64, out_height=16, progress=False)
    assert again.written == [] and len(again.existing) == 3 and again.geometry == result.geometry
    with pytest.raises(InputError, match="must differ"):
        unwrap_folder(src, src, progress=False)
    with pytest.raises(InputError, match="on_error"):
        unwrap_folder(src, out, on_error="ignore", progress=False)
    with pytest.raises(InputError, match="calibrate_from"):
        unwrap_folder(src, out, calibrate_from=0, progress=False)


def test_unwrap_folder_stop_raises_image_read_error(annular_folder, tmp_path) -> None:
    src, truth = annular_folder
    (src / "zz_broken.jpg").write_bytes(b"")
    geometry = AnnulusGeometry(**truth)
    with pytest.raises(ImageReadError, match="zz_broken.jpg: empty file"):
        unwrap_folder(src, tmp_path / "o", geometry, out_width=64, out_height=16, progress=False)
    # the images before it were written
    assert _outputs(tmp_path / "o") == ["frame_000.png", "frame_001.png", "frame_002.png"]
    assert json.loads((tmp_path / "o" / "annulus.json").read_text())["r_outer"] == truth["r_outer"]


def test_fisheye_folder_needs_and_accepts_a_given_inner_radius(tmp_path, capsys) -> None:
    src = tmp_path / "fisheye"
    src.mkdir()
    disc = np.zeros((120, 160, 3), np.uint8)
    disc[np.hypot(*np.mgrid[0:120, 0:160] - np.array([[[60.0]], [[80.0]]])) < 50] = (180, 170, 160)
    write_image(src / "a.png", disc)
    assert main(["unwrap", str(src), str(tmp_path / "out"), *ARGS]) == 2
    assert "no dark central disc" in capsys.readouterr().err
    assert main(["unwrap", str(src), str(tmp_path / "out"), *ARGS, "--r-inner", "0"]) == 0
    geom = load_geometry(tmp_path / "out" / "annulus.json")
    assert geom.r_inner == 0.0 and abs(geom.r_outer - 50.0) <= 1.0 and abs(geom.cx - 80.0) <= 1.0
