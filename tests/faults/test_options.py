"""Bad option values and options that would change nothing, for every verb (issue 15).

Every case: exit 2, exactly one ``panoplace VERB: error:`` line naming the option, no
traceback, the inputs unchanged byte for byte and no output written. Option values are checked
by argparse (``panoplace/cli/argtypes.py``), so these cases run in milliseconds; the
"changes nothing" refusals come right after parsing, before any model is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import pytest

from tests.faults.harness import FAST_MODEL, Snapshot, assert_clean_failure, run_cli
from tests.faults.inputs import Inputs, make_inputs

Argv = Callable[[Inputs, Path], List[object]]

# verb -> a valid command line up to the option under test (out: a fresh output path)
BASE: Dict[str, Argv] = {
    "demo": lambda i, o: ["demo", "--out", o],
    "synth": lambda i, o: ["synth", o],
    "ingest": lambda i, o: ["ingest", i.images, "--out", o],
    "unwrap": lambda i, o: ["unwrap", i.images, o],
    "extract": lambda i, o: ["extract", i.images, "--out", o / "x.h5", *FAST_MODEL],
    "cluster": lambda i, o: ["cluster", i.images, "--out", o / "m.pt", *FAST_MODEL],
    "train": lambda i, o: ["train", "--train-db", i.csv, "--val-area", "0.5", "--out", o, *FAST_MODEL],
    "pca": lambda i, o: ["pca", i.store, "--checkpoint", i.file, "--dim", "4", "--out", o / "p.pt"],
    "index": lambda i, o: ["index", i.store, o / "x.index"],
    "localize": lambda i, o: ["localize", "--index", i.index, i.store, "--out", o / "p.csv"],
    "evaluate": lambda i, o: ["evaluate", i.store, i.store, "--dataset", f"{i.csv},{i.csv}"],
    "scene predict": lambda i, o: ["scene", "predict", i.images, "--csv", o / "s.csv", "--checkpoint", i.file],
    "scene train": lambda i, o: ["scene", "train", i.images, "--out", o / "s.pt"],
    "map build": lambda i, o: ["map", "build", i.csv, "--out", o / "map", *FAST_MODEL],
    "serve": lambda i, o: ["serve", i.root],
    "export": lambda i, o: ["export", i.file, "--onnx", o / "m.onnx"],
}

# (verb, option, bad value(s)): each must be refused by argparse naming the option
BAD_VALUES: List[Tuple[str, str, Sequence[str]]] = [
    ("demo", "--frames", ["0"]), ("demo", "--spacing-m", ["-5"]), ("demo", "--radius", ["nan"]),
    ("demo", "--ds", ["0"]), ("demo", "--workers", ["-1"]), ("demo", "--seed", ["-1"]),
    ("demo", "--num-clusters", ["0"]),
    ("synth", "--frames", ["-1"]), ("synth", "--width", ["0"]), ("synth", "--quality", ["101"]),
    ("synth", "--size-m", ["inf"]), ("synth", "--spacing-m", ["0"]), ("synth", "--seed", ["1.5"]),
    ("synth", "--route-length-m", ["-1"]), ("synth", "--annular-size", ["0"]),
    ("ingest", "--every-s", ["0"]), ("ingest", "--every-m", ["-1"]), ("ingest", "--time-offset", ["nan"]),
    ("ingest", "--max-gap", ["-1"]),
    ("unwrap", "--calibrate-from", ["0"]), ("unwrap", "--width", ["0"]), ("unwrap", "--height", ["-2"]),
    ("unwrap", "--r-outer", ["0"]), ("unwrap", "--r-inner", ["-1"]), ("unwrap", "--cx", ["nan"]),
    ("extract", "--batch-size", ["0"]), ("extract", "--workers", ["-1"]), ("extract", "--crops", ["0"]),
    ("extract", "--crop-size", ["0", "224"]), ("extract", "--window-deg", ["400"]),
    ("extract", "--stride-deg", ["0"]), ("extract", "--elevation", ["100", "0"]),
    ("extract", "--num-clusters", ["0"]), ("extract", "--device", ["gpu"]), ("extract", "--shard-size", ["0"]),
    ("extract", "--actors", ["0"]), ("extract", "--batch-size", ["2.5"]),
    ("cluster", "--images", ["0"]), ("cluster", "--per-image", ["0"]), ("cluster", "--batch-size", ["-3"]),
    ("cluster", "--seed", ["-1"]),
    ("train", "--lr", ["-1"]), ("train", "--lr", ["nan"]), ("train", "--batch-size", ["0"]),
    ("train", "--epochs", ["0"]), ("train", "--momentum", ["1.5"]), ("train", "--val-area", ["1"]),
    ("train", "--remain", ["0"]), ("train", "--margin", ["-0.1"]), ("train", "--pos-radius", ["0"]),
    ("train", "--neg-radius", ["inf"]), ("train", "--recall", ["0"]), ("train", "--workers", ["-1"]),
    ("train", "--patience", ["-1"]), ("train", "--weight-decay", ["-1"]), ("train", "--lr-gamma", ["0"]),
    ("train", "--negatives", ["0"]), ("train", "--neg-sample", ["0"]), ("train", "--cache-refresh", ["0"]),
    ("train", "--queries-per-epoch", ["0"]), ("train", "--n-trainable", ["-1"]), ("train", "--val-gap", ["-1"]),
    ("pca", "--dim", ["0"]), ("pca", "--max-samples", ["0"]), ("pca", "--radius", ["0"]),
    ("pca", "--eval-dims", ["0"]), ("pca", "--recall", ["-1"]),
    ("index", "--nprobe", ["0"]), ("index", "--nlist", ["0"]), ("index", "--nbits", ["0"]),
    ("index", "--nbits", ["17"]), ("index", "--m", ["-1"]), ("index", "--pca", ["-1"]),
    ("localize", "--k", ["0"]), ("localize", "--nprobe", ["0"]), ("localize", "--place-radius", ["-1"]),
    ("localize", "--ds", ["0"]), ("localize", "--scene-weight", ["nan"]), ("localize", "--batch-size", ["0"]),
    ("evaluate", "--ds", ["0"]), ("evaluate", "--vmin", ["0"]), ("evaluate", "--vmax", ["inf"]),
    ("evaluate", "--radius", ["0"]), ("evaluate", "--within", ["-1"]), ("evaluate", "--recall-n", ["0"]),
    ("evaluate", "--fp-threshold", ["nan"]), ("evaluate", "--weights", ["nan"]), ("localize", "--weights", ["inf"]),
    ("scene predict", "--top", ["0"]), ("scene predict", "--batch-size", ["0"]),
    ("scene predict", "--workers", ["-1"]), ("scene predict", "--crops", ["0"]),
    ("scene train", "--epochs", ["0"]), ("scene train", "--lr", ["0"]), ("scene train", "--dropout", ["1"]),
    ("scene train", "--val-fraction", ["0"]), ("scene train", "--hidden", ["-1"]),
    ("scene train", "--weight-decay", ["nan"]), ("scene train", "--seed", ["-2"]),
    ("map build", "--batch-size", ["0"]), ("map build", "--crops", ["0"]), ("map build", "--device", ["tpu"]),
    ("serve", "--port", ["0"]), ("serve", "--port", ["70000"]), ("serve", "--max-batch", ["0"]),
    ("serve", "--max-wait-ms", ["-1"]), ("serve", "--session-ttl", ["0"]), ("serve", "--max-upload-mb", ["0"]),
    ("serve", "--k", ["0"]), ("serve", "--max-pixels", ["0"]), ("serve", "--max-sessions", ["0"]),
    ("export", "--crops", ["0"]), ("export", "--crop-size", ["224", "-1"]),
]

# (verb, extra options, substring of the error line): options that would change nothing
NO_EFFECT: List[Tuple[str, Sequence[str], str]] = [
    ("synth", ["--annular-size", "128"], "--annular-size"),
    ("ingest", ["--time-offset", "1"], "--time-offset"),
    ("unwrap", ["--calibration", "{file}", "--calibrate-from", "4"], "--calibrate-from"),
    ("extract", ["--shard-size", "4"], "--shard-size"),
    ("extract", ["--elevation", "30", "-30"], "elevation"),
    ("extract", ["--crops", "2", "--window-deg", "90"], "--crops"),
    ("cluster", ["--num-clusters", "8"], "num_clusters"),
    ("train", ["--val-gap", "5", "--cam-classifier", "{file}"], "--cam-classifier"),
    ("train", ["--optimizer", "adam", "--momentum", "0.5"], "--momentum"),
    ("train", ["--lr-step", "0", "--lr-gamma", "0.5"], "--lr-gamma"),
    ("train", ["--pos-radius", "30", "--neg-radius", "10"], "--neg-radius"),
    ("pca", ["--radius", "10"], "--radius"),
    ("index", ["--nlist", "8"], "--nlist"),
    ("index", ["--kind", "flat", "--pca", "16"], "flat index is exact"),
    ("index", ["--address", "auto"], "--address"),
    ("localize", ["--ds", "5"], "--ds"),
    ("localize", ["--scene-weight", "0.2"], "--scene-weight"),
    ("localize", ["--place-radius", "10"], "--place-radius"),
    ("localize", ["--checkpoint", "{file}"], "--checkpoint"),
    ("localize", ["--nprobe", "4"], "--nprobe"),
    ("evaluate", ["--ds", "5"], "--ds"),
    ("evaluate", ["--matcher", "hmm", "--vmin", "2", "--vmax", "1"], "--vmax"),
    ("scene predict", ["--categories", "{file}"], "--categories"),
    ("scene train", ["--val", "{images}", "--val-fraction", "0.3"], "--val-fraction"),
    ("scene train", ["--checkpoint", "{file}", "--backbone", "resnet18"], "--backbone"),
    ("scene train", ["--arch", "resnet18_places365"], "--arch"),
    ("map build", ["--checkpoint", "{file}"], "would change nothing"),
    ("extract", ["--runtime", "onnxruntime", "--checkpoint", "{file}"], "--backbone"),
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    return make_inputs(tmp_path_factory.mktemp("inputs"))


def _fill(values: Sequence[str], i: Inputs) -> List[str]:
    return [v.format(file=i.file, images=i.images) for v in values]


def _check(outcome, inputs: Inputs, out: Path, snap: Snapshot, needle: str) -> str:
    line = assert_clean_failure(outcome, contains=[needle])
    snap.assert_unchanged()
    assert not out.exists() or not any(out.iterdir()), f"output written: {sorted(out.rglob('*'))}"
    return line


@pytest.mark.parametrize("verb,option,values", BAD_VALUES,
                         ids=[f"{v}{o}={'_'.join(x)}" for v, o, x in BAD_VALUES])
def test_bad_option_value_is_refused_at_parse_time(inputs: Inputs, tmp_path: Path, verb: str, option: str,
                                                   values: Sequence[str]) -> None:
    out = tmp_path / "out"
    snap = Snapshot(inputs.all())
    outcome = run_cli([*BASE[verb](inputs, out), option, *values])
    line = _check(outcome, inputs, out, snap, option)
    assert f"argument {option}" in line  # argparse's line: refused before anything ran


def test_every_verb_has_bad_value_cases() -> None:
    from panoplace.cli import build_parser

    verbs = {v for v, _, _ in BAD_VALUES}
    assert verbs == set(BASE), sorted(set(BASE) ^ verbs)
    sub = next(a for a in build_parser()._actions if a.dest == "verb")
    top = set(sub.choices)  # type: ignore[attr-defined]
    assert {v.split()[0] for v in BASE} == top


@pytest.mark.parametrize("verb,extra,needle", NO_EFFECT, ids=[f"{v}:{' '.join(x)}" for v, x, _ in NO_EFFECT])
def test_option_that_changes_nothing_is_refused(inputs: Inputs, tmp_path: Path, verb: str, extra: Sequence[str],
                                                needle: str) -> None:
    out = tmp_path / "out"
    # (map build / extract --runtime onnxruntime: FAST_MODEL's --backbone etc. next to a file that fixes the model)
    argv = [*BASE[verb](inputs, out), *_fill(extra, inputs)]
    snap = Snapshot(inputs.all())
    _check(run_cli(argv), inputs, out, snap, needle)


@pytest.mark.parametrize("value", ["0", "-3", "1.5", "x", "nan"])
def test_missing_and_bad_integers_name_the_value(inputs: Inputs, tmp_path: Path, value: str) -> None:
    line = assert_clean_failure(run_cli(["index", inputs.store, tmp_path / "x.index", "--kind", "ivfpq",
                                         "--nprobe", value]), contains=["--nprobe", repr(value)])
    assert "integer" in line


@pytest.mark.parametrize("verb,argv_of", [
    ("extract", lambda i, t: ["extract", t / "missing", "--out", t / "x.h5"]),
    ("localize", lambda i, t: ["localize", "--index", t / "none.index", i.store]),
    ("serve", lambda i, t: ["serve", i.file]),
    ("pca", lambda i, t: ["pca", i.store, "--checkpoint", i.images, "--dim", "2", "--out", t / "p.pt"]),
])
def test_missing_or_wrong_kind_of_input_is_one_line(inputs: Inputs, tmp_path: Path, verb: str, argv_of) -> None:
    outcome = run_cli(argv_of(inputs, tmp_path))
    line = assert_clean_failure(outcome)
    assert any(w in line for w in ("not found", "no such file", "is a folder", "is not a folder")), line
