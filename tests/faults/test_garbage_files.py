"""Wrong or damaged files where a verb expects text, a store, an index or images (issue 15).

Binary data given as a CSV/JSON/GPX/list, a store that is not HDF5, a store whose ``config``
attribute is damaged, an index whose faiss payload is garbage, an empty folder: each is one
error line naming the file, exit 2, no traceback, inputs unchanged.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable, Dict, List

import h5py
import numpy as np
import pytest

from tests.faults.harness import FAST_MODEL, Snapshot, assert_clean_failure, run_cli
from tests.faults.inputs import Inputs, make_inputs


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    return make_inputs(tmp_path_factory.mktemp("inputs"))


@pytest.fixture(scope="module")
def bad(inputs: Inputs, tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """The damaged files, each made from a valid one."""
    root = tmp_path_factory.mktemp("bad")
    png = (inputs.images / "0000000.png").read_bytes()
    files: Dict[str, Path] = {}
    for name in ("binary.csv", "binary.json", "binary.gpx", "binary.txt", "binary.nmea"):
        files[name] = root / name
        files[name].write_bytes(png)
    files["latin1.csv"] = root / "latin1.csv"
    files["latin1.csv"].write_bytes("image,x,y\ncaf\xe9.png,0,0\n".encode("latin-1"))
    files["not_hdf5.h5"] = root / "not_hdf5.h5"
    files["not_hdf5.h5"].write_bytes(b"descriptors? no" * 20)
    files["bad_config.h5"] = root / "bad_config.h5"
    shutil.copy(inputs.store, files["bad_config.h5"])
    with h5py.File(files["bad_config.h5"], "a") as f:
        f.attrs["config"] = "{not json"
    files["list_config.h5"] = root / "list_config.h5"
    shutil.copy(inputs.store, files["list_config.h5"])
    with h5py.File(files["list_config.h5"], "a") as f:
        f.attrs["config"] = json.dumps([1, 2])
    files["text_descriptors.h5"] = root / "text_descriptors.h5"
    with h5py.File(files["text_descriptors.h5"], "w") as f:
        f["descriptors"] = np.array([b"a", b"b", b"c"])
        f["ids"] = np.array([b"0000000.png", b"0000001.png", b"0000002.png"])
    # an index whose faiss payload (the file beside it) is garbage of the recorded size
    files["garbage_payload.index"] = root / "garbage_payload.index"
    shutil.copy(inputs.index, files["garbage_payload.index"])
    with h5py.File(inputs.index, "r") as f:
        sidecar = str(f.attrs["faiss_file"])
    size = (inputs.index.parent / sidecar).stat().st_size
    (root / sidecar).write_bytes(np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes())
    files["not_hdf5.index"] = root / "not_hdf5.index"
    files["not_hdf5.index"].write_bytes(png)
    files["empty"] = root / "empty"
    files["empty"].mkdir()
    (files["empty"] / "notes.txt").write_text("no images here\n")
    files["garbage.pt"] = root / "garbage.pt"
    files["garbage.pt"].write_bytes(png)
    files["bad_map"] = root / "bad_map"
    files["bad_map"].mkdir()
    (files["bad_map"] / "map.json").write_bytes(png)
    return files


Case = Callable[[Inputs, Dict[str, Path], Path], List[object]]
CASES: Dict[str, Case] = {
    "extract: binary CSV as source": lambda i, b, o: ["extract", b["binary.csv"], "--out", o / "x.h5", *FAST_MODEL],
    "extract: latin-1 CSV": lambda i, b, o: ["extract", b["latin1.csv"], "--out", o / "x.h5", *FAST_MODEL],
    "extract: binary .txt list": lambda i, b, o: ["extract", b["binary.txt"], "--out", o / "x.h5", *FAST_MODEL],
    "extract: empty folder": lambda i, b, o: ["extract", b["empty"], "--out", o / "x.h5", *FAST_MODEL],
    "extract: binary calibration JSON": lambda i, b, o: ["extract", i.images, "--out", o / "x.h5", *FAST_MODEL,
                                                         "--projection", "annular", "--calibration", b["binary.json"]],
    "extract: binary dual-fisheye calibration": lambda i, b, o: [
        "extract", i.images, "--out", o / "x.h5", *FAST_MODEL, "--projection", "dual-fisheye",
        "--calibration", b["binary.json"]],
    "extract: garbage checkpoint": lambda i, b, o: ["extract", i.images, "--out", o / "x.h5", "--checkpoint",
                                                    b["garbage.pt"]],
    "cluster: binary CSV": lambda i, b, o: ["cluster", b["binary.csv"], "--out", o / "m.pt", *FAST_MODEL],
    "unwrap: empty folder": lambda i, b, o: ["unwrap", b["empty"], o / "pano"],
    "unwrap: binary calibration": lambda i, b, o: ["unwrap", i.images, o / "pano", "--calibration", b["binary.json"]],
    "ingest: binary GPX": lambda i, b, o: ["ingest", i.images, "--out", o / "ing", "--track", b["binary.gpx"]],
    "ingest: binary NMEA": lambda i, b, o: ["ingest", i.images, "--out", o / "ing", "--track", b["binary.nmea"]],
    "ingest: binary CSV track": lambda i, b, o: ["ingest", i.images, "--out", o / "ing", "--track", b["binary.csv"]],
    "index: store not HDF5": lambda i, b, o: ["index", b["not_hdf5.h5"], o / "x.index"],
    "index: damaged config attribute": lambda i, b, o: ["index", b["bad_config.h5"], o / "x.index"],
    "index: config attribute not an object": lambda i, b, o: ["index", b["list_config.h5"], o / "x.index"],
    "index: text descriptors": lambda i, b, o: ["index", b["text_descriptors.h5"], o / "x.index"],
    "index --update: garbage faiss payload": lambda i, b, o: ["index", i.store, b["garbage_payload.index"],
                                                               "--update"],
    "localize: garbage faiss payload": lambda i, b, o: ["localize", "--index", b["garbage_payload.index"], i.store],
    "localize: index not HDF5": lambda i, b, o: ["localize", "--index", b["not_hdf5.index"], i.store],
    "localize: damaged query config": lambda i, b, o: ["localize", "--index", i.index, b["bad_config.h5"]],
    "localize: binary scene CSVs": lambda i, b, o: ["localize", "--index", i.index, i.store, "--scenes",
                                                     b["binary.csv"], "--database-scenes", b["binary.csv"]],
    "localize: binary database set": lambda i, b, o: ["localize", "--index", i.index, i.store, "--database-set",
                                                       b["binary.csv"]],
    "evaluate: store not HDF5": lambda i, b, o: ["evaluate", b["not_hdf5.h5"], i.store, "--dataset",
                                                 f"{i.csv},{i.csv}"],
    "evaluate: damaged config": lambda i, b, o: ["evaluate", i.store, b["bad_config.h5"], "--dataset",
                                                 f"{i.csv},{i.csv}"],
    "evaluate: binary dataset CSV": lambda i, b, o: ["evaluate", i.store, i.store, "--dataset",
                                                     f"{b['binary.csv']},{b['binary.csv']}"],
    "pca: damaged store": lambda i, b, o: ["pca", b["bad_config.h5"], "--checkpoint", b["garbage.pt"], "--dim", "2",
                                           "--out", o / "p.pt"],
    "train: binary CSV": lambda i, b, o: ["train", "--train-db", b["binary.csv"], "--val-area", "0.5", "--out", o,
                                          *FAST_MODEL],
    "scene predict: binary category list": lambda i, b, o: ["scene", "predict", i.images, "--csv", o / "s.csv",
                                                            "--places365", b["garbage.pt"], "--categories",
                                                            b["binary.txt"]],
    "scene train: binary CSV": lambda i, b, o: ["scene", "train", b["binary.csv"], "--out", o / "s.pt"],
    "map build: binary frames CSV": lambda i, b, o: ["map", "build", b["binary.csv"], "--out", o / "map",
                                                     *FAST_MODEL],
    "serve: binary map.json": lambda i, b, o: ["serve", b["bad_map"]],
    "serve: binary token file": lambda i, b, o: ["serve", b["bad_map"], "--token-file", b["binary.txt"]],
    "export: garbage checkpoint": lambda i, b, o: ["export", b["garbage.pt"], "--onnx", o / "m.onnx"],
}


@pytest.mark.parametrize("case", list(CASES))
def test_damaged_or_wrong_file_is_one_error_line(inputs: Inputs, bad: Dict[str, Path], tmp_path: Path,
                                                 case: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    snap = Snapshot([*inputs.all(), *bad.values()])
    outcome = run_cli(CASES[case](inputs, bad, out))
    assert_clean_failure(outcome)
    snap.assert_unchanged()
    assert not [p for p in out.rglob("*") if p.is_file()], sorted(out.rglob("*"))


def test_every_verb_meets_a_damaged_file() -> None:
    verbs = {case.split(":")[0].split(" --")[0] for case in CASES}
    assert verbs == {"extract", "cluster", "unwrap", "ingest", "index", "localize", "evaluate", "pca", "train",
                     "scene predict", "scene train", "map build", "serve", "export"}
