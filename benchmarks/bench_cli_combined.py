"""Recall@1 through the CLI: one descriptor store vs several combined (issue 11 item 5).

Every figure comes from ``panoplace extract`` / ``panoplace evaluate`` run as a user would (in
process, through ``panoplace.cli.main``), reading the metrics JSON that ``evaluate --json`` writes.

Nordland (``../shared/data/nordland_thumbs``, summer = database, winter = queries, ±2 frames,
HMM over 20 frames, speeds 0.8-1.2): pixel descriptors (``extract --descriptor pixels``) at
64x32 and 32x16, each alone and both combined (``evaluate --combine``, rows z-scored and summed),
with and without ``--standardise-columns``, offline and online. ``library`` is
``bench_sequence_nordland``'s best configuration computed from the library on the same frames
(cv2.imread -> seqslam_preprocess -> sad_matrix -> combine_differences -> standardise_columns ->
HMM); the CLI must give the same Recall@1 (``tests/cli/test_best_nordland_configuration.py``
checks it on a 400-frame section).

How the defaults were chosen and checked: the pixel size (64x32) and patch (8) are classic
SeqSLAM's, not tuned here; the combination rule (64x32 + 32x16, equal weights, columns
standardised, HMM defaults) is ``bench_sequence_nordland``'s, chosen there on all 1,788 frames.
No other Nordland frames exist on this machine, so the check on unseen frames is the split: the
pair weights (the one knob the CLI adds) are compared on the first half (frames 0-893) and the
choice is confirmed on the second half (894-1787); the best configuration's gain over a single
store is reported on each half separately. Corridor (``../shared/data/corridor``, 111 places,
single images, viewpoint shift): NetVLAD K=32 from ``cluster`` vs pixels vs both combined, single
frame matching: a set the combination rule was never looked at on.

Run: ``.venv/bin/python benchmarks/bench_cli_combined.py`` (about 10 minutes on the shared 2-core
machine when measured, most of it the 64x32 SAD matrices, which the compiled ``sad_matrix``
(benchmarks/bench_sad.py) has since made ~48x faster: the run is shorter now, not re-timed;
``--no-corridor`` skips the NetVLAD part).

Measured 2026-12-01 on the shared 2-core machine, niced, while the test suite ran beside it
(uptime load 10.2 before, 12.7 after; seconds are therefore long and only indicative):

    Nordland summer -> winter, Recall@1 through the CLI (hmm, ds 20, ±2 frames)
    configuration                    all 1788   first half  second half
    64x32 alone                         0.933        0.887        0.989
    32x16 alone                         0.932        0.878        0.988
    64x32 + 32x16                       0.935        0.888        0.991
    64x32 + 32x16, columns              0.941        0.903        0.989
    64x32 + 32x16, online               0.931        0.877        0.988
    weights 1 0.5, columns                  -        0.903        0.994
    weights 0.5 1, columns                  -        0.900        0.988
    library best (bench)                0.941        0.903        0.989
    evaluate s, best config             297.4         24.4         15.6
    extract s (4 stores)                 27.2          4.5          5.4
    weights chosen on the first half: '64x32 + 32x16, columns' (0.903); on the second half it gives 0.989,
    the default (equal weights) 0.989, the best there 0.994

    Corridor (111 places, single-frame matching), Recall@1 through the CLI
    NetVLAD alone                  0.910
    pixels 64x32 alone             0.396
    NetVLAD + pixels               0.811
    NetVLAD + pixels, columns      0.892

Reading: the CLI reproduces the library's best configuration exactly (0.941, bench_sequence_nordland's
table). Combining with column standardisation gains 0.8 points over the 64x32 store alone on all
frames and 1.6 on the first half; the second half is easy (0.989, at the ceiling) and gains nothing.
Equal weights, the default, tie for best on the first half and stay within 0.5 points of the best
weights on the second. On the corridor (viewpoint shift, single frames) pixels are weak (0.396) and
adding them to NetVLAD costs 1.8-9.9 points: combine descriptors that each carry signal (sizes of
pixels under appearance change), not a weak one with a strong one.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import cv2

from panoplace.cli import main as cli
from panoplace.data.groundtruth import GroundTruth
from panoplace.evaluation.pipeline import evaluate_match
from panoplace.matching.seqslam_classic import sad_matrix, seqslam_preprocess
from panoplace.matching.sequence import combine_differences, match_sequence, standardise_columns

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def run(*args: object) -> None:
    with contextlib.redirect_stdout(io.StringIO()):  # evaluate prints its summary; the JSON is read instead
        code = cli(["-q", *[str(a) for a in args]])
    if code != 0:
        raise SystemExit(f"panoplace {' '.join(map(str, args))} exited {code}")


def recall1(json_path: Path) -> float:
    return float(json.loads(json_path.read_text())["recall"]["1"])


def section(src: Path, names: Sequence[str], root: Path) -> Path:
    """Symlinked summer/ and winter/ folders of the frames ``names``."""
    for season in ("summer", "winter"):
        (root / season).mkdir(parents=True)
        for n in names:
            (root / season / n).symlink_to(src / season / n)
    return root


def library_best(root: Path, names: Sequence[str]) -> float:
    def pre(season: str, size: Tuple[int, int]):  # type: ignore[no-untyped-def]
        return seqslam_preprocess([cv2.imread(str(root / season / n), cv2.IMREAD_COLOR) for n in names], size)

    D = standardise_columns(combine_differences(sad_matrix(pre("winter", (64, 32)), pre("summer", (64, 32))),
                                                sad_matrix(pre("winter", (32, 16)), pre("summer", (32, 16)))))
    m = match_sequence(D, method="hmm", ds=20, mode="offline", vmin=0.8, vmax=1.2)
    return float(evaluate_match(m, GroundTruth.from_tolerance(len(names), len(names), tolerance=2), ns=(1,)).recall[1])


NORDLAND_RUNS: List[Tuple[str, List[str]]] = [
    ("64x32 alone", ["64"]),
    ("32x16 alone", ["32"]),
    ("64x32 + 32x16", ["64", "32"]),
    ("64x32 + 32x16, columns", ["64", "32", "--standardise-columns"]),
    ("64x32 + 32x16, online", ["64", "32", "--mode", "online"]),
    ("weights 1 0.5, columns", ["64", "32", "--standardise-columns", "--weights", "1", "0.5"]),
    ("weights 0.5 1, columns", ["64", "32", "--standardise-columns", "--weights", "0.5", "1"]),
]


def nordland(src: Path, work: Path, label: str, frames: slice, runs: List[Tuple[str, List[str]]]) -> Dict[str, float]:
    names = sorted(p.name for p in (src / "summer").glob("images-*.png"))[frames]
    root = section(src, names, work / label)
    t0 = time.perf_counter()
    for season in ("summer", "winter"):
        for size in ("64x32", "32x16"):
            run("extract", root / season, "--descriptor", "pixels", "--pixel-size", size,
                "--out", work / f"{label}_{season}{size.split('x')[0]}.h5", "--no-progress")
    out: Dict[str, float] = {"extract s": time.perf_counter() - t0}
    spec = f"aligned:{root / 'summer'},{root / 'winter'},tol=2"
    for name, opts in runs:
        sizes = [o for o in opts if o in ("64", "32")]
        rest = [o for o in opts if o not in sizes]
        store = {s: (work / f"{label}_winter{s}.h5", work / f"{label}_summer{s}.h5") for s in sizes}
        args: List[object] = [*store[sizes[0]]]
        for s in sizes[1:]:
            args += ["--combine", *store[s]]
        js = work / f"{label}_{len(out)}.json"
        t0 = time.perf_counter()
        run("evaluate", *args, *rest, "--matcher", "hmm", "--ds", "20", "--dataset", spec, "--json", js)
        out[name] = recall1(js)
        out[name + " s"] = time.perf_counter() - t0
    out["library best"] = library_best(root, names)
    out["frames"] = len(names)
    return out


def corridor(src: Path, work: Path) -> Dict[str, float]:
    out: Dict[str, float] = {}
    run("cluster", src / "ref", "--out", work / "corridor.pt", "--no-progress")
    for side in ("ref", "query"):
        run("extract", src / side, "--checkpoint", work / "corridor.pt", "--out", work / f"c_{side}_vlad.h5",
            "--no-progress")
        run("extract", src / side, "--descriptor", "pixels", "--out", work / f"c_{side}_pix.h5", "--no-progress")
    vlad = [work / "c_query_vlad.h5", work / "c_ref_vlad.h5"]
    pix = [work / "c_query_pix.h5", work / "c_ref_pix.h5"]
    for name, args in (("NetVLAD alone", vlad), ("pixels 64x32 alone", pix),
                       ("NetVLAD + pixels", [*vlad, "--combine", *pix]),
                       ("NetVLAD + pixels, columns", [*vlad, "--combine", *pix, "--standardise-columns"])):
        js = work / f"c_{len(out)}.json"
        run("evaluate", *args, "--dataset", src, "--json", js)
        out[name] = recall1(js)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--no-corridor", action="store_true", help="skip the corridor (NetVLAD) part")
    args = ap.parse_args()
    src = args.data / "nordland_thumbs"
    if not (src / "summer").is_dir():
        print(f"no Nordland thumbnails at {src}", file=sys.stderr)
        return 2
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"machine: {os.cpu_count()} cores; before: {load}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sets = {"all 1788": nordland(src, work, "all", slice(None), NORDLAND_RUNS[:5]),
                "first half": nordland(src, work, "first", slice(0, 894), NORDLAND_RUNS),
                "second half": nordland(src, work, "second", slice(894, None), NORDLAND_RUNS)}
        print("\nNordland summer -> winter, Recall@1 through the CLI (hmm, ds 20, ±2 frames)")
        print(f"{'configuration':<28s}" + "".join(f"{k:>13s}" for k in sets))
        for name, _ in NORDLAND_RUNS:
            print(f"{name:<28s}" + "".join(f"{v[name]:13.3f}" if name in v else f"{'-':>13s}" for v in sets.values()))
        print(f"{'library best (bench)':<28s}" + "".join(f"{v['library best']:13.3f}" for v in sets.values()))
        print(f"{'evaluate s, best config':<28s}"
              + "".join(f"{v['64x32 + 32x16, columns s']:13.1f}" for v in sets.values()))
        print(f"{'extract s (4 stores)':<28s}" + "".join(f"{v['extract s']:13.1f}" for v in sets.values()))
        first, second = sets["first half"], sets["second half"]
        weights = ["64x32 + 32x16, columns", "weights 1 0.5, columns", "weights 0.5 1, columns"]
        pick = max(weights, key=lambda w: first[w])
        print(f"weights chosen on the first half: {pick!r} ({first[pick]:.3f}); on the second half it gives "
              f"{second[pick]:.3f}, the default (equal weights) {second[weights[0]]:.3f}, the best there "
              f"{max(second[w] for w in weights):.3f}")
        if not args.no_corridor and (args.data / "corridor").is_dir():
            c = corridor(args.data / "corridor", work)
            print("\nCorridor (111 places, single-frame matching), Recall@1 through the CLI")
            for name, value in c.items():
                print(f"{name:<28s}{value:8.3f}")
    print(f"after: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
