"""One list of image extensions for every reader: extract, unwrap, dataset folders, scene folders."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from panoplace.cli import main
from panoplace.data.frames import list_image_files
from panoplace.panorama.folder import list_folder_images
from panoplace.panorama.imagefiles import IMAGE_EXTENSIONS, is_image_file
from panoplace.runner import list_images
from panoplace.scene.train import image_folder

NAMES = ("a.jpg", "b.JPEG", "c.png", "d.bmp", "e.tif", "f.TIFF", "g.webp")


def _write(folder: Path, img: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in NAMES:
        assert cv2.imwrite(str(folder / name), img)
    (folder / "notes.txt").write_text("not an image")
    (folder / "h.gif").write_bytes(b"GIF89a")


def test_every_reader_takes_the_same_extensions(tmp_path) -> None:
    assert {Path(n).suffix.lower() for n in NAMES} == set(IMAGE_EXTENSIONS)
    assert is_image_file("x/Y.WebP") and not is_image_file("y.gif") and not is_image_file("tif")
    _write(tmp_path / "imgs", np.zeros((8, 8, 3), np.uint8))
    want = sorted(NAMES)
    assert sorted(list_images(tmp_path / "imgs")[1]) == want
    assert sorted(list_image_files(tmp_path / "imgs")) == want
    assert sorted(p.as_posix() for p in list_folder_images(tmp_path / "imgs")) == want
    _write(tmp_path / "cats" / "x", np.zeros((8, 8, 3), np.uint8))
    _write(tmp_path / "cats" / "y", np.zeros((8, 8, 3), np.uint8))
    assert len(image_folder(tmp_path / "cats")) == 2 * len(NAMES)


def test_unwrap_takes_tif_and_webp(annular_folder, tmp_path) -> None:
    folder, truth = annular_folder
    img = cv2.imread(str(next(folder.glob("*.png"))))
    for name in ("extra.tif", "extra.webp"):
        assert cv2.imwrite(str(folder / name), img, [cv2.IMWRITE_WEBP_QUALITY, 100] if name.endswith("webp") else [])
    out = tmp_path / "out"
    geometry = ["--cx", str(truth["cx"]), "--cy", str(truth["cy"])]
    assert main(["unwrap", str(folder), str(out), "--width", "64", "--height", "16", *geometry]) == 0
    assert (out / "extra.tif").is_file() and (out / "extra.webp").is_file()
    assert cv2.imread(str(out / "extra.webp")).shape == (16, 64, 3)
