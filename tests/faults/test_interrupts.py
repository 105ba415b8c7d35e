"""Jobs interrupted by ``kill -9``, a disk that fills up, a second writer (issue 15): the earlier
result stays intact, the partial state resumes (or is ignored) and the rerun gives the result of
a clean run; changed inputs are computed again, changed options are refused.

The child processes load ``tests/faults/hooks/sitecustomize.py``, which slows one function down
(``PANOPLACE_FAULT_SLOW``) so that the kill lands inside it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import cv2
import numpy as np
import pytest

from panoplace.index import load_index
from panoplace.store import load_descriptors
from tests.faults.conftest import write_frames_csv
from tests.faults.harness import (Outcome, Snapshot, assert_clean_failure, assert_success, fill_disk, kill_when,
                                  run_cli, run_cli_process, start_cli_process, write_store)

HOOKS = Path(__file__).resolve().parent / "hooks"
ROOT = Path(__file__).resolve().parents[2]


def slow(spec: str) -> Dict[str, str]:
    """Child environment that makes ``module:attr`` sleep ``seconds`` before it runs."""
    return {"PYTHONPATH": f"{HOOKS}{os.pathsep}{ROOT}", "PANOPLACE_FAULT_SLOW": spec}


def seen_for(check: Callable[[], bool], seconds: float) -> Callable[[], bool]:
    """A ``ready`` for :func:`kill_when`: ``check()`` has held for ``seconds``."""
    first: List[float] = []

    def ready() -> bool:
        if not check():
            return False
        if not first:
            first.append(time.monotonic())
        return time.monotonic() - first[0] >= seconds
    return ready


def temporaries(path: Path) -> List[Path]:
    return sorted(path.parent.glob(f".{path.name}.*.tmp*"))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, fast_checkpoint: Path) -> Dict[str, Path]:
    root = tmp_path_factory.mktemp("interrupts")
    csv = write_frames_csv(root / "d", 12)
    lines = csv.read_text().splitlines()
    (root / "d" / "first6.csv").write_text("\n".join(lines[:7]) + "\n")
    return {"root": root, "csv": csv, "first6": root / "d" / "first6.csv", "ck": fast_checkpoint}


def extract_argv(source: Path, ck: Path, out: Path, *extra: str) -> List[str]:
    return ["extract", str(source), "--checkpoint", str(ck), "--out", str(out), "--batch-size", "2",
            "--no-progress", *extra]


_REFERENCES: Dict[tuple, bytes] = {}


def reference(data: Dict[str, Path], out: Path, source: Path | None = None, ck: Path | None = None,
              extra: Tuple[str, ...] = ()) -> None:
    """The store of a clean run at ``out`` (made once per source, checkpoint, options and file contents)."""
    source, ck = source or data["csv"], ck or data["ck"]
    key = (str(source), str(ck), ck.stat().st_mtime_ns, extra,
           tuple(f.stat().st_mtime_ns for f in sorted(source.parent.rglob("*.png"))))
    if key not in _REFERENCES:
        assert_success(run_cli(extract_argv(source, ck, out, *extra)))
        _REFERENCES[key] = out.read_bytes()
    else:
        out.write_bytes(_REFERENCES[key])


def assert_same_store(a: Path, b: Path) -> None:
    x, y = load_descriptors(a), load_descriptors(b)
    assert x.ids == y.ids
    np.testing.assert_array_equal(x.descriptors, y.descriptors)


def rows_stored(part: Path) -> Callable[[], bool]:
    """A ``ready`` for :func:`kill_when`: the partial store grew beyond its size once created (its
    empty datasets, 0.3 s after the file appeared), i.e. an append is being written, and 0.35 s
    passed since (it is finished: the next one sleeps 0.7 s first)."""
    appeared: List[float] = []
    created: List[int] = []
    grown: List[float] = []

    def ready() -> bool:
        if not part.exists():
            return False
        now, size = time.monotonic(), part.stat().st_size
        if not appeared:
            appeared.append(now)
        if not created:
            if now - appeared[0] >= 0.3 and size > 0:
                created.append(size)
            return False
        if size > created[0] and not grown:
            grown.append(now)
        return bool(grown) and now - grown[0] >= 0.35
    return ready


def kill_during_extraction(argv: List[str], part: Path) -> None:
    proc = start_cli_process(argv, env=slow("panoplace.store:PartialStore.append:0.7"))
    assert kill_when(proc, rows_stored(part), timeout=240), "the run ended before it was killed"
    assert part.exists()


def test_kill_during_extraction_then_resume_gives_the_clean_result(data: Dict[str, Path], tmp_path: Path) -> None:
    ref = tmp_path / "ref.h5"
    reference(data, ref)
    out = tmp_path / "out.h5"
    snap = Snapshot([data["root"]])
    kill_during_extraction(extract_argv(data["csv"], data["ck"], out), tmp_path / "out.h5.part")
    assert (tmp_path / "out.h5.lock").exists()  # left by the killed run: taken over below
    again = run_cli(extract_argv(data["csv"], data["ck"], out))
    assert_success(again)
    assert "resuming" in again.err
    assert_same_store(out, ref)
    snap.assert_unchanged()
    assert not list(tmp_path.glob("out.h5.*")) and not temporaries(out)


def test_an_image_changed_between_kill_and_resume_is_described_again(data: Dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "d"
    csv = write_frames_csv(folder, 12)
    out = tmp_path / "out.h5"
    kill_during_extraction(extract_argv(csv, data["ck"], out), tmp_path / "out.h5.part")
    old = cv2.imread(str(folder / "img" / "0000000.png"))
    cv2.imwrite(str(folder / "img" / "0000000.png"), 255 - old)  # already described before the kill
    again = run_cli(extract_argv(csv, data["ck"], out))
    assert_success(again)
    assert "changed since the interrupted run" in again.err
    ref = tmp_path / "ref.h5"
    reference(data, ref, source=csv)
    assert_same_store(out, ref)


def test_other_options_between_kill_and_resume_are_refused(data: Dict[str, Path], tmp_path: Path) -> None:
    out, part = tmp_path / "out.h5", tmp_path / "out.h5.part"
    kill_during_extraction(extract_argv(data["csv"], data["ck"], out), part)
    snap = Snapshot([part, data["root"]])
    other = extract_argv(data["csv"], data["ck"], out, "--crop-size", "48", "48")  # another panorama config
    line = assert_clean_failure(run_cli(other), contains=[str(part), "--overwrite"])
    assert "other options" in line
    snap.assert_unchanged()
    assert_success(run_cli(other + ["--overwrite"]))
    ref = tmp_path / "ref.h5"
    reference(data, ref, extra=("--crop-size", "48", "48"))
    assert_same_store(out, ref)


def test_a_checkpoint_replaced_between_kill_and_resume_starts_anew(data: Dict[str, Path], tmp_path: Path) -> None:
    import torch

    from panoplace.models.checkpoint import load_checkpoint, save_checkpoint

    ck = tmp_path / "model.pt"
    ck.write_bytes(data["ck"].read_bytes())
    out, part = tmp_path / "out.h5", tmp_path / "out.h5.part"
    kill_during_extraction(extract_argv(data["csv"], ck, out), part)
    model, pano = load_checkpoint(ck)
    torch.manual_seed(1)
    for p in model.parameters():
        p.data.normal_()
    save_checkpoint(model, ck, panorama=pano)  # retrained in place: same options, other weights
    again = run_cli(extract_argv(data["csv"], ck, out))
    assert_success(again)
    assert "other model weights" in again.err
    ref = tmp_path / "ref.h5"
    reference(data, ref, ck=ck)
    assert_same_store(out, ref)


def test_kill_during_append_keeps_the_store_and_resumes(data: Dict[str, Path], tmp_path: Path) -> None:
    store = tmp_path / "map.h5"
    assert_success(run_cli(extract_argv(data["first6"], data["ck"], store)))
    snap = Snapshot([store, data["root"]])
    argv = extract_argv(data["csv"], data["ck"], store, "--append")
    kill_during_extraction(argv, tmp_path / "map.h5.part")
    snap.assert_unchanged()  # the store of the earlier run is intact
    assert_success(run_cli(argv))
    ref = tmp_path / "ref.h5"
    reference(data, ref)
    assert_same_store(store, ref)


def test_kill_during_the_final_write_keeps_the_earlier_result(data: Dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out.h5"
    ref = tmp_path / "ref.h5"
    reference(data, ref, source=data["first6"])
    out.write_bytes(ref.read_bytes())  # an earlier result, replaced with --overwrite
    snap = Snapshot([out, data["root"]])
    argv = extract_argv(data["csv"], data["ck"], out, "--overwrite")
    proc = start_cli_process(argv, env=slow("panoplace.atomic:os.replace:60"))
    assert kill_when(proc, seen_for(lambda: bool(temporaries(out)), 0.5), timeout=240)
    snap.assert_unchanged()
    assert temporaries(out) and (tmp_path / "out.h5.part").exists()
    assert_success(run_cli(argv))
    assert not temporaries(out)  # the killed run's temporary file is removed
    clean = tmp_path / "clean.h5"
    reference(data, clean)
    assert_same_store(out, clean)


def test_kill_during_index_update_keeps_the_index(tmp_path: Path) -> None:
    db6, db12 = write_store(tmp_path / "db6.h5", 6), write_store(tmp_path / "db12.h5", 12)
    idx = tmp_path / "db.index"
    assert_success(run_cli(["index", str(db6), str(idx)]))
    snap = Snapshot([tmp_path])
    argv = ["index", str(db12), str(idx), "--update"]
    proc = start_cli_process(argv, env=slow("panoplace.atomic:os.replace:60"))
    assert kill_when(proc, seen_for(lambda: bool(list(tmp_path.glob(".db.index.*.tmp*"))), 0.3), timeout=240)
    litter = [p for p in snap.changes() if Path(p).name.startswith(".db.index")]
    assert litter and all(Path(p).name.startswith(".") for p in snap.changes() if not p.endswith(".lock"))
    assert len(load_index(idx)) == 6  # the earlier index is intact
    assert_success(run_cli(argv))
    assert_success(run_cli(["index", str(db12), str(tmp_path / "ref.index")]))
    grown, ref = load_index(idx), load_index(tmp_path / "ref.index")
    assert grown.ids == ref.ids and len(grown) == 12
    queries = load_descriptors(db12).descriptors
    np.testing.assert_array_equal(grown.search(queries, 3)[1], ref.search(queries, 3)[1])
    assert not list(tmp_path.glob(".db.index.*"))


def test_a_second_writer_is_refused_naming_the_first(data: Dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out.h5"
    argv = extract_argv(data["csv"], data["ck"], out)
    proc = start_cli_process(argv, env=slow("panoplace.store:PartialStore.append:1.0"))
    lock = tmp_path / "out.h5.lock"
    try:
        deadline = time.monotonic() + 240
        while not (lock.exists() and lock.read_text().strip()) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        snap = Snapshot([tmp_path / "out.h5.part"] if (tmp_path / "out.h5.part").exists() else [])
        line = assert_clean_failure(run_cli(argv), contains=[f"pid {proc.pid}", "panoplace extract", str(out)])
        assert "being written by another run" in line
        assert json.loads(lock.read_text())["pid"] == proc.pid  # the first writer's lock is untouched
        del snap
    finally:
        proc.kill()
        proc.communicate()
    assert_success(run_cli(argv))  # the dead writer's lock is taken over; its partial store resumed
    ref = tmp_path / "ref.h5"
    reference(data, ref)
    assert_same_store(out, ref)


def test_a_disk_that_fills_up_during_extraction(data: Dict[str, Path], small_disk: Callable[[str], Path],
                                                 tmp_path: Path) -> None:
    disk = small_disk("2m")
    out = disk / "out.h5"
    argv = extract_argv(data["csv"], data["ck"], out)
    proc = start_cli_process(argv, env=slow("panoplace.store:PartialStore.append:0.5"))
    part, filler = disk / "out.h5.part", None
    deadline = time.monotonic() + 240
    first = None
    while proc.poll() is None and time.monotonic() < deadline:
        if filler is None and part.exists() and part.stat().st_size > 0:
            first = first or time.monotonic()
            if time.monotonic() - first > 0.8:  # some rows are in the partial store
                filler = fill_disk(disk)
        time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
    out_text, err_text = proc.communicate()
    outcome = Outcome(proc.returncode, out_text, err_text)
    assert filler is not None, "the run ended before the disk was filled"
    assert_clean_failure(outcome, contains=["no space left", "out.h5"])  # exit 2: no native crash
    filler.unlink()
    assert_success(run_cli_process(argv))  # resumes (or ignores an unreadable partial store)
    ref = tmp_path / "ref.h5"
    reference(data, ref)
    assert_same_store(out, ref)


def test_a_full_disk_at_the_final_write(data: Dict[str, Path], small_disk: Callable[[str], Path],
                                        tmp_path: Path) -> None:
    disk = small_disk("2m")
    out = disk / "out.h5"
    argv = extract_argv(data["csv"], data["ck"], out)
    proc = start_cli_process(argv, env=slow("panoplace.atomic:os.replace:60"))
    assert kill_when(proc, seen_for(lambda: bool(temporaries(out)), 0.3), timeout=240)
    for tmp in temporaries(out):
        tmp.unlink()
    filler = fill_disk(disk)  # the partial store is complete: only the final write needs room now
    snap = Snapshot([disk / "out.h5.part", data["root"]])
    outcome = run_cli_process(argv)
    assert_clean_failure(outcome, contains=["no space left", "out.h5"])
    snap.assert_unchanged()
    assert not out.exists() and not temporaries(out)
    filler.unlink()
    assert_success(run_cli(argv))
    ref = tmp_path / "ref.h5"
    reference(data, ref)
    assert_same_store(out, ref)
