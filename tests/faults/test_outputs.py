"""Every verb against its outputs (issue 15): an output that is an input, an earlier result
without ``--overwrite``, and outputs that cannot be written (under a file, a folder where a file
goes, read-only media), all refused with one error line before any compute starts.

Runs in this process (:func:`run_cli`); a fixture makes building a model or running images
fail loudly, so a refusal that came after the compute shows as a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Dict, List

import pytest

from panoplace.index import build_index, save_index
from panoplace.store import load_descriptors
from tests.faults.conftest import write_frames_csv
from tests.faults.harness import Snapshot, assert_clean_failure, fill_disk, run_cli, write_store

Argv = List[str]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, fast_checkpoint: Path) -> Dict[str, Path]:
    """Inputs every verb can read: images, a dataset CSV, stores, an index, a checkpoint."""
    root = tmp_path_factory.mktemp("inputs")
    data = root / "data"
    csv = write_frames_csv(data, 3)
    db = write_store(root / "db.h5", 3)
    q = write_store(root / "q.h5", 3)
    save_index(build_index(load_descriptors(db)), root / "db.index")
    ck = root / "model.pt"
    ck.write_bytes(fast_checkpoint.read_bytes())
    extracted = root / "extracted.h5"  # made by the checkpoint (pca needs that)
    assert run_cli(["extract", str(csv), "--checkpoint", str(ck), "--out", str(extracted), "--no-progress"]).code == 0
    return {"root": root, "data": data, "images": data / "img", "csv": csv, "db": db, "q": q,
            "index": root / "db.index", "ck": ck, "extracted": extracted}


@pytest.fixture
def no_compute(monkeypatch: pytest.MonkeyPatch) -> None:
    """Building a model or running images is a test failure (a traceback): refusals come first."""
    import panoplace.models.build
    import panoplace.runner

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("compute started before the outputs were checked")

    monkeypatch.setattr(panoplace.models.build, "build_model", boom)
    monkeypatch.setattr(panoplace.runner.ImageRunner, "__init__", boom)


# verb -> argv writing OUT (a file, or a folder for the folder verbs), from the inputs
def _verbs(i: Dict[str, Path]) -> Dict[str, Callable[[Path], Argv]]:
    ck, csv, img = str(i["ck"]), str(i["csv"]), str(i["images"])
    pair = f"{csv},{csv}"
    return {
        "demo": lambda o: ["demo", "--out", str(o), "--frames", "4"],
        "synth": lambda o: ["synth", str(o), "--frames", "2", "--width", "64", "--height", "32", "--traversals", "day"],
        "ingest": lambda o: ["ingest", img, "--out", str(o)],
        "unwrap": lambda o: ["unwrap", img, str(o)],
        "extract": lambda o: ["extract", csv, "--checkpoint", ck, "--out", str(o)],
        "cluster": lambda o: ["cluster", img, "--backbone", "resnet18", "--cut", "layer1", "--weights", "none",
                              "--num-clusters", "2", "--out", str(o)],
        "train": lambda o: ["train", "--train-db", csv, "--train-queries", csv, "--val-area", "0.5",
                            "--checkpoint", ck, "--out", str(o)],
        "pca": lambda o: ["pca", str(i["db"]), "--checkpoint", ck, "--dim", "2", "--out", str(o)],
        "index": lambda o: ["index", str(i["db"]), str(o)],
        "localize": lambda o: ["localize", "--index", str(i["index"]), str(i["q"]), "--out", str(o)],
        "evaluate": lambda o: ["evaluate", str(i["q"]), str(i["db"]), "--dataset", pair, "--json", str(o)],
        "scene-predict": lambda o: ["scene", "predict", csv, "--checkpoint", ck, "--csv", str(o)],
        "scene-train": lambda o: ["scene", "train", csv, "--checkpoint", ck, "--out", str(o)],
        "map-build": lambda o: ["map", "build", csv, "--checkpoint", ck, "--out", str(o)],
        "export": lambda o: ["export", ck, "--onnx", str(o)],
    }


FOLDER_VERBS = {"demo", "synth", "ingest", "unwrap", "train", "map-build"}
ALL_VERBS = sorted(_verbs({k: Path(k) for k in ("ck", "csv", "images", "db", "q", "index")}))


def _refused(argv: Argv, snap_paths: List[Path], *contains: str) -> str:
    snap = Snapshot(snap_paths)
    line = assert_clean_failure(run_cli(argv), contains=contains)
    snap.assert_unchanged()
    return line


# ----------------------------------------------------------------------------- output = input
OUTPUT_IS_INPUT = {
    # verb: (argv from inputs, what the line says)
    "extract": (lambda i: ["extract", str(i["csv"]), "--checkpoint", str(i["ck"]), "--out", str(i["csv"])],
                "also an input"),
    "extract-checkpoint": (lambda i: ["extract", str(i["images"]), "--checkpoint", str(i["ck"]), "--out",
                                      str(i["ck"]), "--overwrite"], "also an input"),
    "cluster": (lambda i: ["cluster", str(i["images"]), "--backbone", "resnet18", "--weights", "none", "--out",
                           str(i["images"] / "0000000.png"), "--overwrite"], "is a file of the input"),
    "train": (lambda i: ["train", "--train-db", str(i["csv"]), "--val-area", "0.5", "--checkpoint", str(i["ck"]),
                         "--out", str(i["data"]), "--overwrite"], "holds the input"),
    "pca": (lambda i: ["pca", str(i["db"]), "--checkpoint", str(i["ck"]), "--dim", "2", "--out", str(i["ck"]),
                       "--overwrite"], "also an input"),
    "index": (lambda i: ["index", str(i["db"]), str(i["db"]), "--overwrite"], "also an input"),
    "index-update": (lambda i: ["index", str(i["db"]), str(i["db"]), "--update"], "also an input"),
    "localize": (lambda i: ["localize", "--index", str(i["index"]), str(i["q"]), "--out", str(i["q"]),
                            "--overwrite"], "also an input"),
    "localize-index": (lambda i: ["localize", "--index", str(i["index"]), str(i["q"]), "--out", str(i["index"])],
                       "also an input"),
    "evaluate": (lambda i: ["evaluate", str(i["q"]), str(i["db"]), "--dataset", f"pair:{i['csv']},{i['csv']}",
                            "--csv", str(i["db"]), "--overwrite"], "also an input"),
    "evaluate-report": (lambda i: ["evaluate", str(i["q"]), str(i["db"]), "--dataset", f"{i['csv']},{i['csv']}",
                                   "--report", str(i["root"]), "--overwrite"], "holds the input"),
    "scene-predict": (lambda i: ["scene", "predict", str(i["csv"]), "--checkpoint", str(i["ck"]), "--csv",
                                 str(i["csv"]), "--overwrite"], "also an input"),
    "scene-predict-out": (lambda i: ["scene", "predict", str(i["csv"]), "--checkpoint", str(i["ck"]), "--csv",
                                     str(i["root"] / "s.csv"), "--out", str(i["ck"])], "also an input"),
    "scene-train": (lambda i: ["scene", "train", str(i["csv"]), "--checkpoint", str(i["ck"]), "--out",
                               str(i["ck"]), "--overwrite"], "also an input"),
    "map-build": (lambda i: ["map", "build", str(i["csv"]), "--checkpoint", str(i["ck"]), "--out",
                             str(i["data"])], "holds the input"),
    "export": (lambda i: ["export", str(i["ck"]), "--onnx", str(i["ck"]), "--overwrite"], "also an input"),
    "unwrap": (lambda i: ["unwrap", str(i["images"]), str(i["data"])], "holds the input"),
    "ingest": (lambda i: ["ingest", str(i["images"]), "--out", str(i["data"])], "holds the input"),
}


@pytest.mark.parametrize("case", sorted(OUTPUT_IS_INPUT))
def test_an_output_that_is_an_input_is_refused(case: str, inputs: Dict[str, Path], no_compute: None) -> None:
    make, says = OUTPUT_IS_INPUT[case]
    _refused(make(inputs), [inputs["root"]], says)


def test_a_link_to_an_input_is_the_input(inputs: Dict[str, Path], tmp_path: Path, no_compute: None) -> None:
    link = tmp_path / "link.h5"
    link.symlink_to(inputs["q"])
    _refused(["localize", "--index", str(inputs["index"]), str(inputs["q"]), "--out", str(link), "--overwrite"],
             [inputs["root"], tmp_path], "also an input")
    hard = tmp_path / "hard.h5"
    hard.hardlink_to(inputs["db"])
    _refused(["index", str(inputs["db"]), str(hard), "--overwrite"], [inputs["root"], tmp_path], "also an input")


def test_an_output_inside_a_sharded_store_is_refused(inputs: Dict[str, Path], tmp_path: Path,
                                                     no_compute: None) -> None:
    folder = tmp_path / "shards"
    folder.mkdir()
    write_store(folder / "shard-00000.h5", 3)
    (folder / "manifest.json").write_text('{"shards": [{"name": "shard-00000.h5"}]}')
    _refused(["index", str(folder), str(folder / "shard-00000.h5"), "--overwrite"], [inputs["root"], tmp_path],
             "is a file of the input")


# ----------------------------------------------------------------------------- earlier results
def _earlier_result(verb: str, out: Path) -> None:
    """Put what an earlier run of ``verb`` leaves at ``out``."""
    if verb in FOLDER_VERBS:
        out.mkdir(parents=True)
        marker = {"demo": "summary.json", "map-build": "map.json", "train": "best.pt"}.get(verb, "x")
        (out / marker).write_text("{}")
    else:
        out.write_bytes(b"an earlier result")


REFUSE_EXISTING = sorted(set(ALL_VERBS) - {"synth", "ingest", "unwrap"})  # those three resume (see below)


@pytest.mark.parametrize("verb", REFUSE_EXISTING)
def test_an_earlier_result_is_not_replaced_without_overwrite(verb: str, inputs: Dict[str, Path], tmp_path: Path,
                                                             no_compute: None) -> None:
    out = tmp_path / ("out" if verb in FOLDER_VERBS else "out.bin")
    _earlier_result(verb, out)
    line = _refused(_verbs(inputs)[verb](out), [inputs["root"], tmp_path], str(out))
    assert "--overwrite" in line
    assert not list(tmp_path.glob("*.lock")) and not list(tmp_path.glob("*.part"))


def test_train_into_its_own_folder_needs_resume_or_overwrite(inputs: Dict[str, Path], tmp_path: Path,
                                                            no_compute: None) -> None:
    out = tmp_path / "run"
    _earlier_result("train", out)
    line = _refused(_verbs(inputs)["train"](out), [inputs["root"], tmp_path], "--resume", "--overwrite")
    assert "earlier result" in line
    assert_clean_failure(run_cli(_verbs(inputs)["train"](out) + ["--resume", "--overwrite"]), contains=["give one"])


def test_synth_resumed_with_another_quality_is_refused(tmp_path: Path) -> None:
    argv = _verbs({k: Path(k) for k in ("ck", "csv", "images", "db", "q", "index")})["synth"](tmp_path / "w")
    assert run_cli(argv + ["--quality", "60", "--no-progress"]).code == 0
    _refused(argv + ["--quality", "90", "--no-progress"], [tmp_path], "quality 60", "--overwrite")
    assert run_cli(argv + ["--quality", "90", "--overwrite", "--no-progress"]).code == 0
    import json

    assert json.loads((tmp_path / "w" / "day" / "traversal.json").read_text())["quality"] == 90


# ----------------------------------------------------------------------------- unwritable outputs
def _unwritable(kind: str, tmp_path: Path, readonly_dir: Path, folder: bool) -> Path:
    if kind == "under-a-file":
        (tmp_path / "afile").write_text("x")
        return tmp_path / "afile" / "sub" / ("out" if folder else "out.bin")
    if kind == "read-only":
        return readonly_dir / ("out" if folder else "out.bin")
    if kind == "kind":  # a folder where a file goes, a file where a folder goes
        target = tmp_path / "target"
        if folder:
            target.write_text("x")
        else:
            target.mkdir()
        return target
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["under-a-file", "read-only", "kind"])
@pytest.mark.parametrize("verb", ALL_VERBS)
def test_an_unwritable_output_fails_before_compute(verb: str, kind: str, inputs: Dict[str, Path], tmp_path: Path,
                                                   readonly_dir: Path, no_compute: None) -> None:
    out = _unwritable(kind, tmp_path, readonly_dir, verb in FOLDER_VERBS)
    says = {"under-a-file": "is a file, not a folder", "read-only": "read-only",
            "kind": "give a folder" if verb in FOLDER_VERBS else "give a file path"}[kind]
    _refused(_verbs(inputs)[verb](out) + ["--overwrite"] * (verb not in ("ingest",)), [inputs["root"], tmp_path],
             says)
    assert not list(tmp_path.rglob("*.part")) and not list(tmp_path.rglob("*.lock"))


def test_permission_denied_is_one_line(inputs: Dict[str, Path], tmp_path: Path, no_compute: None) -> None:
    import os

    if os.geteuid() == 0:
        pytest.skip("root writes through permission bits; the read-only cases cover EROFS")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    _refused(_verbs(inputs)["extract"](locked / "x.h5"), [inputs["root"]], "permission denied")


# ----------------------------------------------------------------------------- a full disk at the final write


FULL_DISK = {
    "index": lambda i, o: ["index", str(i["db"]), str(o)],
    "localize": lambda i, o: ["localize", "--index", str(i["index"]), str(i["q"]), "--out", str(o)],
    "evaluate": lambda i, o: ["evaluate", str(i["q"]), str(i["db"]), "--dataset", f"{i['csv']},{i['csv']}",
                              "--csv", str(o)],
    "pca": lambda i, o: ["pca", str(i["extracted"]), "--checkpoint", str(i["ck"]), "--dim", "2", "--out", str(o)],
}


@pytest.mark.parametrize("verb", sorted(FULL_DISK))
def test_a_full_disk_at_the_final_write_is_one_line(verb: str, inputs: Dict[str, Path],
                                                    small_disk: Callable[[str], Path]) -> None:
    disk = small_disk("256k")
    fill_disk(disk, keep=4096)
    out = disk / "out.bin"
    _refused(FULL_DISK[verb](inputs, out), [inputs["root"]], "no space left", "out.bin")
    assert not out.exists() and not list(disk.glob(".out.bin*")) and not list(disk.glob("*.lock"))


# ----------------------------------------------------------------------------- resumed folders
def test_unwrap_resumed_after_an_input_changed_redoes_that_output(tmp_path: Path) -> None:
    import cv2

    from tests.faults.harness import write_images

    src = write_images(tmp_path / "raw", 3, (64, 64))
    argv = ["unwrap", str(src), str(tmp_path / "out"), "--cx", "32", "--cy", "32", "--r-inner", "8",
            "--r-outer", "30", "--width", "64", "--height", "16"]
    assert run_cli(argv).code == 0
    outs = sorted((tmp_path / "out").glob("*.png"))
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in outs}
    img = cv2.imread(str(src / "0000000.png"))
    cv2.imwrite(str(src / "0000000.png"), 255 - img)  # replaced after its output was written
    assert run_cli(argv).code == 0
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in outs}
    assert after["0000000.png"][0] != before["0000000.png"][0]
    assert after["0000001.png"] == before["0000001.png"] and after["0000002.png"] == before["0000002.png"]


# ----------------------------------------------------------------------------- a second writer
@pytest.mark.parametrize("verb", ALL_VERBS)
def test_a_second_writer_of_the_same_output_is_refused(verb: str, inputs: Dict[str, Path], tmp_path: Path,
                                                      no_compute: None) -> None:
    """Another writer holds the output's lock (here this process, through another open file: the
    kernel's flock does not care which process): the verb refuses and names it."""
    from panoplace.outputs import OutputLock, set_command

    out = tmp_path / ("out" if verb in FOLDER_VERBS else "out.bin")
    set_command("panoplace first --writer")
    try:
        with OutputLock(out):
            _refused(_verbs(inputs)[verb](out), [inputs["root"]], "being written by another run",
                     f"pid {os.getpid()}", "panoplace first --writer")
    finally:
        set_command(None)
    assert not out.exists()
