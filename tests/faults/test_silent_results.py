"""Options and files that used to give silently wrong results (issue 15), with the fixed behaviour.

- ``aligned:A,B,reverse=false`` was reversed (``bool("false")``): booleans are parsed;
- ``radius=0`` silently became 25 m: refused; a radius given is honoured;
- ``seqslam_classic`` with ``--ds`` longer than the query sequence reported Recall@1 0.0:
  refused with a line saying why;
- NaN scene probabilities (a damaged model, or a damaged scene CSV) flowed into the output:
  refused;
- an aggregator size ``1.5`` was truncated to 1: refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List

import numpy as np
import pytest
import torch

from panoplace.config import ModelConfig, PipelineConfig
from panoplace.store import DescriptorSet, save_descriptors
from tests.faults.harness import FAST_MODEL, Snapshot, assert_clean_failure, assert_success, run_cli, write_images

N = 6


@pytest.fixture(scope="module")
def aligned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folders A (database) and B (queries) of N images; stores where query i is nearest to
    database frame i (same descriptor)."""
    root = tmp_path_factory.mktemp("aligned")
    write_images(root / "A", N)
    write_images(root / "B", N)
    cfg = PipelineConfig(model=ModelConfig(backbone="resnet18", cut="layer1", weights="none", aggregator="gem"))
    names = [f"{i:07d}.png" for i in range(N)]
    desc = np.eye(N, 16, dtype=np.float32)
    save_descriptors(DescriptorSet(desc, names, cfg.to_dict(), "f" * 16), root / "db.h5")
    save_descriptors(DescriptorSet(desc, names, cfg.to_dict(), "f" * 16), root / "q.h5")
    return root


def _recall_at_1(root: Path, spec: str, tmp_path: Path, extra: List[str] = ()) -> float:
    out = tmp_path / f"m{len(list(tmp_path.glob('m*.json')))}.json"  # a new file each call (no --overwrite)
    outcome = run_cli(["evaluate", root / "q.h5", root / "db.h5", "--dataset", spec, "--json", out, *extra])
    assert_success(outcome)
    return float(json.loads(out.read_text())["recall"]["1"])


@pytest.mark.parametrize("word,reversed_", [("false", False), ("no", False), ("0", False), ("False", False),
                                            ("true", True), ("yes", True), ("1", True)])
def test_aligned_reverse_is_parsed_as_a_boolean(aligned: Path, tmp_path: Path, word: str, reversed_: bool) -> None:
    snap = Snapshot([aligned])
    r1 = _recall_at_1(aligned, f"aligned:{aligned / 'A'},{aligned / 'B'},tol=0,reverse={word}", tmp_path)
    assert r1 == (0.0 if reversed_ else 1.0)
    snap.assert_unchanged()


def test_aligned_bare_reverse_flag_still_reverses(aligned: Path, tmp_path: Path) -> None:
    assert _recall_at_1(aligned, f"aligned:{aligned / 'A'},{aligned / 'B'},tol=0,reverse", tmp_path) == 0.0
    assert _recall_at_1(aligned, f"aligned:{aligned / 'A'},{aligned / 'B'},tol=0", tmp_path) == 1.0


@pytest.mark.parametrize("option,needle", [("reverse=maybe", "reverse"), ("tol=-1", "tol"), ("radius=10", "radius"),
                                           ("tol=1.5", "tol")])
def test_aligned_bad_or_useless_spec_options_are_one_line(aligned: Path, option: str, needle: str) -> None:
    snap = Snapshot([aligned])
    outcome = run_cli(["evaluate", aligned / "q.h5", aligned / "db.h5", "--dataset",
                       f"aligned:{aligned / 'A'},{aligned / 'B'},{option}"])
    assert_clean_failure(outcome, contains=[needle])
    snap.assert_unchanged()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Database frames every 10 m, queries 6 m past each: within 5 m of none, within 7 m of one."""
    root = tmp_path_factory.mktemp("pair")
    write_images(root / "images", N)
    names = [f"images/{i:07d}.png" for i in range(N)]
    (root / "db.csv").write_text("image,x,y\n" + "".join(f"{n},{10 * i},0\n" for i, n in enumerate(names)))
    (root / "q.csv").write_text("image,x,y\n" + "".join(f"{n},{10 * i + 6},0\n" for i, n in enumerate(names)))
    cfg = PipelineConfig(model=ModelConfig(backbone="resnet18", cut="layer1", weights="none", aggregator="gem"))
    desc = np.eye(N, 16, dtype=np.float32)
    for name in ("db", "q"):
        save_descriptors(DescriptorSet(desc, names, cfg.to_dict(), "f" * 16), root / f"{name}.h5")
    return root


def test_radius_zero_is_refused_and_a_radius_given_is_honoured(pair: Path, tmp_path: Path) -> None:
    snap = Snapshot([pair])
    spec = f"{pair / 'db.csv'},{pair / 'q.csv'}"
    line = assert_clean_failure(run_cli(["evaluate", pair / "q.h5", pair / "db.h5", "--dataset", spec + ",radius=0"]),
                                contains=["radius"])
    assert "> 0" in line
    assert_clean_failure(run_cli(["evaluate", pair / "q.h5", pair / "db.h5", "--dataset", spec, "--radius", "0"]),
                         contains=["--radius"])
    # query i is 6 m from database i (its own descriptor) and 4 m from database i+1
    assert _recall_at_1(pair, spec + ",radius=5", tmp_path) == 0.0  # only i+1 lies within 5 m
    assert _recall_at_1(pair, spec + ",radius=7", tmp_path) == 1.0
    assert _recall_at_1(pair, spec, tmp_path, ["--radius", "7"]) == 1.0
    snap.assert_unchanged()


def test_seqslam_classic_with_ds_longer_than_the_queries_is_refused(pair: Path) -> None:
    spec = f"{pair / 'db.csv'},{pair / 'q.csv'}"
    snap = Snapshot([pair])
    line = assert_clean_failure(run_cli(["evaluate", pair / "q.h5", pair / "db.h5", "--dataset", spec,
                                         "--matcher", "seqslam_classic", "--ds", "10"]), contains=["ds"])
    assert f"only {N} queries" in line
    snap.assert_unchanged()


def test_seqslam_classic_refuses_a_database_shorter_than_a_trajectory() -> None:
    from panoplace.errors import InputError
    from panoplace.matching.sequence.classic import seqslam_classic

    with pytest.raises(InputError, match="database has only 3"):
        seqslam_classic(np.random.default_rng(0).random((30, 3)), ds=8)
    ok = seqslam_classic(np.random.default_rng(0).random((30, 30)), ds=8)
    assert (ok.best[4:-4] >= 0).all()


@pytest.fixture(scope="module")
def nan_scene_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from panoplace.models.build import build_model
    from panoplace.models.checkpoint import save_scene_checkpoint
    from panoplace.models.scene import from_place_model

    place = build_model(ModelConfig(backbone="resnet18", cut="layer1", weights="none", aggregator="gem"))
    model = from_place_model(place, ["inside", "outside"])
    with torch.no_grad():
        model.scene_head.fc.weight.fill_(float("nan"))  # a damaged checkpoint: the scene head is NaN
    path = tmp_path_factory.mktemp("nanscene") / "scene.pt"
    save_scene_checkpoint(model, path)
    return path


def test_nan_scene_probabilities_are_refused_not_written(tmp_path: Path, nan_scene_checkpoint: Path) -> None:
    images = write_images(tmp_path / "images", 2)
    snap = Snapshot([images, nan_scene_checkpoint])
    outcome = run_cli(["scene", "predict", images, "--checkpoint", nan_scene_checkpoint, "--csv", tmp_path / "s.csv",
                       "--out", tmp_path / "s.h5", "--no-progress"])
    assert_clean_failure(outcome, contains=["NaN", "scene probabilities", "0000000.png"])
    snap.assert_unchanged()
    assert not (tmp_path / "s.csv").exists() and not (tmp_path / "s.h5").exists()


@pytest.mark.parametrize("probability", ["nan", "1.5", "-0.1", "high"])
def test_scene_csv_with_a_bad_probability_is_refused(tmp_path: Path, probability: str) -> None:
    from panoplace.steps import index as build

    names = [f"{i:07d}.png" for i in range(3)]
    store = tmp_path / "db.h5"
    save_descriptors(DescriptorSet(np.eye(3, 8, dtype=np.float32), names, {}, "w"), store)
    build(store, tmp_path / "db.index")
    good = "image,rank,category,probability\n" + "".join(f"{n},1,street,0.9\n" for n in names)
    (tmp_path / "db_scenes.csv").write_text(good)
    (tmp_path / "q_scenes.csv").write_text(good.replace("0.9\n", f"{probability}\n", 1))
    snap = Snapshot([tmp_path / "db_scenes.csv", tmp_path / "q_scenes.csv", store])
    outcome = run_cli(["localize", "--index", tmp_path / "db.index", store, "--scenes", tmp_path / "q_scenes.csv",
                       "--database-scenes", tmp_path / "db_scenes.csv", "--out", tmp_path / "p.csv"])
    assert_clean_failure(outcome, contains=["q_scenes.csv", "line 2"])
    snap.assert_unchanged()
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize("value", ["1.5", "nan", "x"])
def test_aggregator_sizes_are_not_truncated(tmp_path: Path, value: str) -> None:
    images = write_images(tmp_path / "images", 2)
    outcome = run_cli(["extract", images, "--out", tmp_path / "x.h5", *FAST_MODEL[:6], "--aggregator", "gem_fc",
                       "--agg-param", f"fc_dim={value}"])
    assert_clean_failure(outcome, contains=["fc_dim", "integer"])
    assert not (tmp_path / "x.h5").exists()
