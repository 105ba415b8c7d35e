"""No file a user passes runs code (issue 15): a payload planted in every model file and
ground-truth file the CLI reads is refused with one error line and exit 2, and never runs.

The payload is a pickle whose unpickling creates a marker file (:class:`tests.conftest.Hostile`);
each test first checks that it does run when the file is loaded with full unpickling.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Dict, List

import cv2
import numpy as np
import pytest
import torch

from panoplace.cli import main
from panoplace.config import ModelConfig, PipelineConfig
from panoplace.store import DescriptorSet, save_descriptors

FAST_MODEL = ["--backbone", "resnet18", "--cut", "layer1", "--weights", "none", "--aggregator", "gem"]


def _images(folder: Path, n: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i:07d}.png"), np.full((32, 64, 3), 40 * i, np.uint8))
    return folder


def _store(path: Path, n: int = 2) -> Path:
    cfg = PipelineConfig(model=ModelConfig(backbone="resnet18", cut="layer1", weights="none", aggregator="gem"))
    desc = np.eye(n, 64, dtype=np.float32)
    save_descriptors(DescriptorSet(desc, [f"{i:07d}.png" for i in range(n)], cfg.to_dict(), "0" * 16), path)
    return path


def _one_error_line(verb: str, capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith(f"panoplace {verb}: error: ")]
    assert len(errors) == 1, err
    others = [line for line in err.splitlines() if "error" in line.lower() and line not in errors]
    assert not others, err
    return errors[0]


@pytest.fixture
def evil(hostile) -> Path:
    path = hostile.torch_file(hostile.folder / "evil.pth.tar")
    hostile.live(lambda: torch.load(path, weights_only=False))
    return path


def _model_file_cases(tmp: Path, evil: Path, world: Path) -> Dict[str, List[str]]:
    images = _images(tmp / "images")
    cats = tmp / "categories_places365.txt"
    cats.write_text("\n".join(f"/c/cat{i} {i}" for i in range(365)) + "\n")
    scene_data = tmp / "scenes"
    for c in ("a", "b"):
        _images(scene_data / c)
    day, dusk = str(world / "day" / "frames.csv"), str(world / "dusk" / "frames.csv")
    split = ["--train-db", day, "--train-queries", dusk, "--val-db", day, "--val-queries", dusk]
    resume_dir = tmp / "resume"
    resume_dir.mkdir()
    shutil.copy(evil, resume_dir / "latest.pt")
    db = _store(tmp / "db.h5")
    main(["-q", "index", str(db), str(tmp / "db.index")])
    return {
        "extract --checkpoint": ["extract", str(images), "--out", str(tmp / "o1.h5"), "--checkpoint", str(evil)],
        "extract --weights": ["extract", str(images), "--out", str(tmp / "o2.h5"), *FAST_MODEL[:4],
                              "--weights", str(evil), "--aggregator", "gem"],
        "cluster --weights": ["cluster", str(images), "--out", str(tmp / "c.pt"), "--backbone", "resnet18",
                              "--weights", str(evil)],
        "pca --checkpoint": ["pca", str(db), "--checkpoint", str(evil), "--dim", "2", "--out", str(tmp / "p.pt")],
        "localize --checkpoint": ["localize", str(images), "--index", str(tmp / "db.index"), "--checkpoint",
                                  str(evil), "--out", str(tmp / "loc.csv")],
        "map build --checkpoint": ["map", "build", str(images), "--out", str(tmp / "map"), "--checkpoint", str(evil)],
        "train --checkpoint": ["train", *split, "--out", str(tmp / "t1"), "--checkpoint", str(evil)],
        "train --weights": ["train", *split, "--out", str(tmp / "t2"), *FAST_MODEL[:4], "--weights", str(evil),
                            "--aggregator", "gem"],
        "train --cam-classifier": ["train", *split, "--out", str(tmp / "t3"), *FAST_MODEL, "--attention", "cam",
                                   "--cam-classifier", str(evil)],
        "train --resume": ["train", *split, "--out", str(resume_dir), "--resume"],
        "scene predict --checkpoint": ["scene", "predict", str(images), "--csv", str(tmp / "s1.csv"),
                                       "--checkpoint", str(evil)],
        "scene predict --places365": ["scene", "predict", str(images), "--csv", str(tmp / "s2.csv"),
                                      "--places365", str(evil), "--categories", str(cats)],
        "scene predict --place-checkpoint": ["scene", "predict", str(images), "--csv", str(tmp / "s3.csv"),
                                             "--places365", str(evil), "--categories", str(cats),
                                             "--place-checkpoint", str(evil)],
        "scene train --checkpoint": ["scene", "train", str(scene_data), "--out", str(tmp / "st1.pt"),
                                     "--checkpoint", str(evil)],
        "scene train --places365": ["scene", "train", str(scene_data), "--out", str(tmp / "st2.pt"),
                                    "--places365", str(evil)],
        "scene train --weights": ["scene", "train", str(scene_data), "--out", str(tmp / "st3.pt"),
                                  "--backbone", "resnet18", "--weights", str(evil)],
    }


def test_no_model_file_a_user_passes_runs_code(tmp_path: Path, evil: Path, hostile, tiny_world: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    cases = _model_file_cases(tmp_path, evil, tiny_world)
    capsys.readouterr()
    for name, argv in cases.items():
        verb = argv[0] if argv[0] not in ("scene", "map") else f"{argv[0]} {argv[1]}"
        code = main(argv)
        line = _one_error_line(verb.split()[0], capsys)
        assert code == 2, name
        planted = "latest.pt" if name == "train --resume" else evil.name
        assert "could run code" in line and planted in line, (name, line)
        assert not hostile.marker.exists(), f"{name} ran the payload"


def test_a_map_folder_with_a_planted_model_is_refused(tmp_path: Path, tiny_map: Path, hostile,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "map"
    shutil.copytree(tiny_map, folder)
    model = next(p for p in folder.iterdir() if p.suffix == ".pt")
    hostile.torch_file(model)
    hostile.live(lambda: torch.load(model, weights_only=False))
    capsys.readouterr()
    assert main(["serve", str(folder)]) == 2
    assert "could run code" in _one_error_line("serve", capsys)
    assert not hostile.marker.exists()


def test_a_vprbench_ground_truth_payload_never_runs(tmp_path: Path, hostile,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "vprbench"
    _images(data / "ref")
    _images(data / "query")
    gt = hostile.npy(data / "ground_truth_new.npy", rows=2)
    hostile.live(lambda: np.load(gt, allow_pickle=True))
    q, db = _store(tmp_path / "q.h5"), _store(tmp_path / "db.h5")
    capsys.readouterr()
    assert main(["evaluate", str(q), str(db), "--dataset", f"vprbench:{data}"]) == 2
    line = _one_error_line("evaluate", capsys)
    assert "builtins.exec" in line and "ground_truth_new.npy" in line
    assert not hostile.marker.exists()


