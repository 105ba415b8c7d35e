"""The CLI reaches the best Nordland configuration of ``benchmarks/bench_sequence_nordland.py``:
pixel descriptors at 64x32 and 32x16 written by ``extract``, both pairs combined with column
standardisation in ``evaluate`` and ``localize``, HMM over 20 frames. Its Recall@1 must equal the
library computation of the benchmark (cv2.imread -> seqslam_preprocess -> sad_matrix ->
combine_differences -> standardise_columns -> HMM) on the same frames."""

from __future__ import annotations

import csv
import json

import cv2
import pytest

from panoplace.cli import main
from panoplace.data.groundtruth import GroundTruth
from panoplace.evaluation.pipeline import evaluate_match
from panoplace.matching.seqslam_classic import sad_matrix, seqslam_preprocess
from panoplace.matching.sequence import combine_differences, match_sequence, standardise_columns

FRAMES = slice(1000, 1400)  # 400 of the 1,788 frames: a section of the route, for speed
TOL = 2


@pytest.fixture(scope="module")
def nordland_slice(shared_data, tmp_path_factory):
    src = shared_data / "nordland_thumbs"
    if not (src / "summer").is_dir() or not (src / "winter").is_dir():
        pytest.skip(f"{src} has no summer/ and winter/ folders")
    names = sorted(p.name for p in (src / "summer").glob("images-*.png"))[FRAMES]
    root = tmp_path_factory.mktemp("nordland")
    for season in ("summer", "winter"):
        (root / season).mkdir()
        for n in names:
            (root / season / n).symlink_to(src / season / n)
    return root, names


def _library_recall(root, names) -> float:
    """bench_sequence_nordland's best configuration (hmm, comb+col, offline, ds 20, v 0.8-1.2)."""
    def pre(season, size):
        return seqslam_preprocess([cv2.imread(str(root / season / n), cv2.IMREAD_COLOR) for n in names], size)

    sad64 = sad_matrix(pre("winter", (64, 32)), pre("summer", (64, 32)))
    sad32 = sad_matrix(pre("winter", (32, 16)), pre("summer", (32, 16)))
    D = standardise_columns(combine_differences(sad64, sad32))
    m = match_sequence(D, method="hmm", ds=20, mode="offline", vmin=0.8, vmax=1.2)
    return float(evaluate_match(m, GroundTruth.from_tolerance(len(names), len(names), tolerance=TOL), ns=(1,)).recall[1])


def test_cli_recall_equals_the_library_best_configuration(nordland_slice, tmp_path):
    root, names = nordland_slice
    for season in ("summer", "winter"):
        for size in ("64x32", "32x16"):
            assert main(["-q", "extract", str(root / season), "--descriptor", "pixels", "--pixel-size", size,
                         "--out", str(tmp_path / f"{season}{size.split('x')[0]}.h5"), "--no-progress"]) == 0
    t = {k: str(tmp_path / f"{k}.h5") for k in ("summer64", "summer32", "winter64", "winter32")}
    spec = f"aligned:{root / 'summer'},{root / 'winter'},tol={TOL}"
    combined, single = tmp_path / "combined.json", tmp_path / "single.json"
    assert main(["-q", "evaluate", t["winter64"], t["summer64"], "--combine", t["winter32"], t["summer32"],
                 "--standardise-columns", "--matcher", "hmm", "--ds", "20", "--dataset", spec,
                 "--json", str(combined)]) == 0
    assert main(["-q", "evaluate", t["winter64"], t["summer64"], "--matcher", "hmm", "--ds", "20",
                 "--dataset", spec, "--json", str(single)]) == 0
    cli = json.loads(combined.read_text())["recall"]["1"]
    library = _library_recall(root, names)
    assert cli == pytest.approx(library, abs=0.005)
    assert cli > json.loads(single.read_text())["recall"]["1"]  # combining is what the CLI gains
    out = tmp_path / "predictions.csv"
    assert main(["-q", "localize", "--database", t["summer64"], t["winter64"], "--combine", t["winter32"],
                 t["summer32"], "--standardise-columns", "--sequence", "hmm", "--ds", "20", "--k", "1",
                 "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out)))
    where = {n: i for i, n in enumerate(names)}
    hits = sum(abs(where[r["query_id"]] - where[r["database_id"]]) <= TOL for r in rows)
    assert len(rows) == len(names) and hits / len(names) == pytest.approx(library, abs=0.005)
