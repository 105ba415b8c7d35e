"""Truncated and corrupt images in every verb that decodes images (issue 15).

A truncated JPEG used to decode half grey (libjpeg only printed an unnamed warning) and was
stored as a valid descriptor. Now the decoders (``panoplace/decode.py``,
``panorama/project.read_image``, both on ``panorama/imagebytes.py``, the check the service
applies to uploads) refuse it naming the file, and the verb follows ``--on-error``: ``stop`` is
one error line naming the file, ``skip`` records it and goes on without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List

import cv2
import numpy as np
import pytest

from panoplace.store import load_descriptors
from tests.faults.harness import FAST_MODEL, Snapshot, assert_clean_failure, assert_success, run_cli


def _jpeg(rng: np.random.Generator) -> bytes:
    img = rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


def _truncated_jpeg(rng: np.random.Generator) -> bytes:
    data = _jpeg(rng)
    return data[: len(data) // 2]


def _corrupt_jpeg(rng: np.random.Generator) -> bytes:
    data = bytearray(_jpeg(rng))
    i = data.index(b"\xff\xc4")  # a Huffman table with a bogus class/index: libjpeg refuses it
    data[i + 4] = 0x55
    return bytes(data)


def _truncated_png(rng: np.random.Generator) -> bytes:
    data = cv2.imencode(".png", rng.integers(0, 256, (32, 64, 3), dtype=np.uint8))[1].tobytes()
    return data[: len(data) - 30]


BAD: Dict[str, Callable[[np.random.Generator], bytes]] = {
    "truncated.jpg": _truncated_jpeg,
    "corrupt.jpg": _corrupt_jpeg,
    "truncated.png": _truncated_png,
}
REASONS = {"truncated.jpg": "truncated JPEG", "corrupt.jpg": "damaged JPEG", "truncated.png": "truncated PNG"}


def _reason(verb: str, bad: str) -> str:
    # unwrap decodes through OpenCV (panorama/, no torch), whose libjpeg error has no text
    return "cannot be decoded" if (verb, bad) == ("unwrap", "corrupt.jpg") else REASONS[bad]


def _folder(root: Path, bad: str) -> Path:
    """Three good JPEGs and one bad image (named so it sorts between them)."""
    rng = np.random.default_rng(7)
    folder = root / "images"
    folder.mkdir(parents=True)
    for name in ("a.jpg", "b.jpg", "d.jpg"):
        (folder / name).write_bytes(_jpeg(rng))
    (folder / f"c_{bad}").write_bytes(BAD[bad](rng))
    return folder


@pytest.fixture(scope="module")
def scene_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from panoplace.config import ModelConfig
    from panoplace.models.build import build_model
    from panoplace.models.checkpoint import save_scene_checkpoint
    from panoplace.models.scene import from_place_model

    place = build_model(ModelConfig(backbone="resnet18", cut="layer1", weights="none", aggregator="gem"))
    path = tmp_path_factory.mktemp("scene") / "scene.pt"
    save_scene_checkpoint(from_place_model(place, ["inside", "outside"]), path)
    return path


RING = ["--cx", "32", "--cy", "16", "--r-inner", "4", "--r-outer", "15", "--width", "64", "--height", "16"]

# verb -> (argv of (images, out, extra), output path to check, extra needed args)
ON_ERROR_VERBS: Dict[str, Callable[[Path, Path, Path], List[object]]] = {
    "extract": lambda imgs, out, ck: ["extract", imgs, "--out", out / "x.h5", *FAST_MODEL, "--no-progress"],
    "scene predict": lambda imgs, out, ck: ["scene", "predict", imgs, "--csv", out / "s.csv", "--out", out / "s.h5",
                                            "--checkpoint", ck, "--no-progress"],
    "unwrap": lambda imgs, out, ck: ["unwrap", imgs, out / "pano", *RING, "--no-progress"],
}


@pytest.mark.parametrize("bad", list(BAD))
@pytest.mark.parametrize("verb", list(ON_ERROR_VERBS))
def test_bad_image_with_on_error_stop_is_one_line_naming_it(tmp_path: Path, scene_checkpoint: Path, verb: str,
                                                            bad: str) -> None:
    imgs = _folder(tmp_path, bad)
    out = tmp_path / "out"
    out.mkdir()
    snap = Snapshot([imgs, scene_checkpoint])
    outcome = run_cli([*ON_ERROR_VERBS[verb](imgs, out, scene_checkpoint), "--on-error", "stop"])
    assert_clean_failure(outcome, contains=[f"c_{bad}", _reason(verb, bad)])
    snap.assert_unchanged()
    written = [p for p in out.rglob("*") if p.is_file() and not p.name.endswith(".part")]
    if verb == "unwrap":  # resumable per image: the panoramas before the bad one stay, none of it
        assert not [p for p in written if p.stem.startswith("c_") or p.stem == "d"], written
    else:
        assert not written, written


@pytest.mark.parametrize("bad", list(BAD))
@pytest.mark.parametrize("verb", list(ON_ERROR_VERBS))
def test_bad_image_with_on_error_skip_is_recorded_and_left_out(tmp_path: Path, scene_checkpoint: Path, verb: str,
                                                               bad: str) -> None:
    imgs = _folder(tmp_path, bad)
    out = tmp_path / "out"
    out.mkdir()
    snap = Snapshot([imgs, scene_checkpoint])
    outcome = run_cli([*ON_ERROR_VERBS[verb](imgs, out, scene_checkpoint), "--on-error", "skip"])
    assert_success(outcome)
    snap.assert_unchanged()
    warned = [line for line in outcome.err.splitlines() if f"c_{bad}" in line]
    assert warned and _reason(verb, bad) in " ".join(warned), outcome.err
    if verb == "unwrap":
        written = sorted(p.name for p in (out / "pano").rglob("*.jpg"))
        assert written == ["a.jpg", "b.jpg", "d.jpg"]
    else:
        store = load_descriptors(out / ("x.h5" if verb == "extract" else "s.h5"))
        assert store.ids == ["a.jpg", "b.jpg", "d.jpg"]
        assert np.isfinite(store.descriptors).all()
    if verb == "scene predict":
        assert f"c_{bad}" not in (out / "s.csv").read_text()


@pytest.mark.parametrize("verb,argv_of", [
    ("map build", lambda imgs, out, ck, i: ["map", "build", i, "--out", out / "map", *FAST_MODEL, "--no-progress"]),
    ("localize", lambda imgs, out, ck, i: ["localize", "--index", ck, imgs, "--out", out / "p.csv"]),
    ("ingest", lambda imgs, out, ck, i: ["ingest", imgs / "c_truncated.jpg", "--out", out / "ingest"]),
])
def test_truncated_image_stops_verbs_without_on_error(tmp_path: Path, verb: str, argv_of) -> None:
    from panoplace.steps import extract, index

    imgs = _folder(tmp_path, "truncated.jpg")
    frames = tmp_path / "frames.csv"
    frames.write_text("image,x,y\n" + "".join(f"images/{n},{k * 10},0\n" for k, n in
                                              enumerate(sorted(p.name for p in imgs.iterdir()))))
    good = tmp_path / "good"
    good.mkdir()
    (good / "a.jpg").write_bytes((imgs / "a.jpg").read_bytes())
    idx = tmp_path / "db.index"
    if verb == "localize":  # an index of the same fast model, to describe the query images with
        db = extract(good, preset=None, model_overrides=dict(zip(["backbone", "cut", "weights", "aggregator"],
                                                                  FAST_MODEL[1::2])), progress=False)
        index(db.descriptors, idx)
    out = tmp_path / "out"
    out.mkdir()
    snap = Snapshot([imgs, frames])
    outcome = run_cli(argv_of(imgs, out, idx, frames))
    assert_clean_failure(outcome, contains=["c_truncated.jpg", "truncated JPEG"])
    snap.assert_unchanged()
    assert not [p for p in out.rglob("*") if p.is_file() and not p.name.endswith(".part")], sorted(out.rglob("*"))


def test_cluster_samples_around_a_truncated_image_and_names_it(tmp_path: Path) -> None:
    """cluster samples local features (no --on-error): a bad image is skipped with a warning
    naming it and the reason, never sampled as grey pixels."""
    imgs = _folder(tmp_path, "truncated.jpg")
    snap = Snapshot([imgs])
    outcome = run_cli(["cluster", imgs, "--out", tmp_path / "m.pt", *FAST_MODEL[:6], "--num-clusters", "4",
                       "--per-image", "8", "--no-progress"])  # NetVLAD: k-means on the images' features
    assert_success(outcome)
    snap.assert_unchanged()
    assert any("c_truncated.jpg" in line and "truncated JPEG" in line for line in outcome.err.splitlines())
    assert "k-means: 24 local features" in outcome.err  # 3 good images x 8, none from the bad one
