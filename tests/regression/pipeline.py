"""The README pipeline on a tiny procedural world, through the CLI, for the behaviour-regression
test: the outputs recorded before the 0.2 redesign (``reference/``) must stay the same.

``record.py`` writes the reference; ``test_readme_outputs.py`` re-runs and compares.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Dict, List

import h5py
import numpy as np

from panoplace.cli import main

SCENE_TRAIN_ARGS = ["--epochs", "3", "--seed", "0"]


def _cli(*args: str) -> None:
    code = main([*map(str, args)])
    if code != 0:
        raise RuntimeError(f"panoplace {' '.join(map(str, args))} exited {code}")


def _store(path: Path) -> Dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {"descriptors": np.asarray(f["descriptors"]),
                "ids": np.asarray([s.decode() if isinstance(s, bytes) else s for s in f["ids"][()]])}


def _csv_rows(path: Path) -> List[Dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def run(work: Path) -> Dict[str, object]:
    """Run the pipeline in ``work``; returns arrays (descriptors) and text outputs by name."""
    w = Path(work)
    world = w / "world"
    _cli("synth", world, "--frames", "6", "--traversals", "day,dusk", "--projections", "equirect,annular",
         "--width", "256", "--height", "128", "--annular-size", "256", "--no-progress")
    day, dusk = world / "day" / "frames.csv", world / "dusk" / "frames.csv"
    model = w / "model.pt"
    _cli("cluster", day, "--projection", "equirect", "--crops", "4", "--crop-size", "64", "64",
         "--num-clusters", "8", "--out", model, "--no-progress")
    _cli("extract", day, "--checkpoint", model, "--out", w / "day.h5", "--no-progress")
    _cli("extract", dusk, "--checkpoint", model, "--out", w / "dusk.h5", "--no-progress")
    _cli("extract", world / "day" / "annular", "--checkpoint", model, "--projection", "annular",
         "--out", w / "day_annular.h5", "--no-progress")
    _cli("extract", day, "--aggregator", "gem", "--crops", "2", "--crop-size", "64", "64",
         "--projection", "equirect", "--out", w / "day_gem.h5", "--no-progress")
    _cli("index", w / "day.h5", w / "day.index")
    _cli("localize", "--index", w / "day.index", w / "dusk.h5", "--database-set", day,
         "--out", w / "predictions.csv")
    _cli("localize", "--index", w / "day.index", w / "dusk.h5", "--database-set", day, "--sequence",
         "--out", w / "predictions_seq.csv")
    _cli("evaluate", w / "dusk.h5", w / "day.h5", "--dataset", f"pair:{day},{dusk}", "--radius", "10",
         "--matcher", "hmm", "--ds", "3", "--json", w / "eval.json")
    _cli("pca", w / "day.h5", "--checkpoint", model, "--dim", "4", "--out", w / "model_pca.pt")
    _cli("extract", dusk, "--checkpoint", w / "model_pca.pt", "--out", w / "dusk_pca.h5", "--no-progress")
    _cli("scene", "train", day, "--val", dusk, "--checkpoint", model, "--out", w / "scene.pt",
         *SCENE_TRAIN_ARGS)
    _cli("scene", "predict", dusk, "--checkpoint", w / "scene.pt", "--csv", w / "dusk_scenes.csv",
         "--out", w / "dusk_scene.h5", "--no-progress")
    out: Dict[str, object] = {}
    for name in ("day", "dusk", "day_annular", "day_gem", "dusk_pca", "dusk_scene"):
        s = _store(w / f"{name}.h5")
        out[f"{name}.descriptors"] = s["descriptors"]
        out[f"{name}.ids"] = s["ids"]
    out["predictions.csv"] = _csv_rows(w / "predictions.csv")
    out["predictions_seq.csv"] = _csv_rows(w / "predictions_seq.csv")
    out["dusk_scenes.csv"] = _csv_rows(w / "dusk_scenes.csv")
    out["eval.json"] = json.loads((w / "eval.json").read_text())
    return out
