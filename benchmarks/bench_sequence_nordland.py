"""Sequence matching on Nordland summer (database) → winter (queries): classic SeqSLAM vs ours.

Data: ``../shared/data/nordland_thumbs`` — the same 1,788 frames (every 10th of the route's
first half) in ``summer/`` and ``winter/``, 64x32 RGB PNGs; frame i of one season shows the
place of frame i of the other. A match is correct within ±``--tol`` frames (default 2).

Difference matrices (grey, patch-normalised with 8x8 patches, mean absolute difference):

- ``SAD64``: 64x32 images — the classic SeqSLAM input;
- ``comb``: row-standardised SAD64 + SAD32 (32x16 images), :func:`combine_differences`;
  causal (each query row on its own);
- ``comb+col``: ``comb`` with every database column standardised over all queries
  (:func:`standardise_columns`, removes "hub" frames; uses every query, so offline only).

Matchers, all at the same sequence length ``--ds`` (default 20) and velocities 0.8-1.2:

- ``single``: best frame per query, no sequence;
- ``classic``: OpenSeqSLAM port (:mod:`panoplace.matching.seqslam_classic`): ds+1 frames centred
  on the query, whole-frame velocities 16..24 per 20 frames, contrast enhancement over 10
  frames, the first/last ds/2 queries unmatched;
- ``seqslam``: our vectorised SeqSLAM (5 velocities), offline (centred) and online (causal);
- ``hmm``: our windowed HMM (forward-backward offline, forward filtering online), defaults
  (``jump_std`` 0.4, ``sigma`` 1); ``hmm js=0.3``: with the constant-speed jump prior
  (Nordland's two traverses are frame-synchronised, so speed never changes).

Metrics (:mod:`panoplace.evaluation.metrics`): Recall@1/5, PR-AUC (average precision of the
top-1 over its confidence), recall at 100 % precision.

Run: ``.venv/bin/python benchmarks/bench_sequence_nordland.py`` (about a minute on 2 cores;
most of it is the 64x32 SAD matrix).

Measured (2 shared CPU cores; matcher seconds are single runs):

    Nordland summer → winter: 1788 frames each, tolerance ±2, ds=20, v 0.8-1.2
    load 0.4s, SAD 64x32 31.8s, SAD 32x16 8.4s
    matcher          input     mode        R@1    R@5  PR-AUC  R@100P    sec
    single           SAD64     -         0.121  0.148   0.077   0.017    0.1
    classic SeqSLAM  SAD64     offline   0.917  0.936   0.916   0.831    7.0
    seqslam          SAD64     offline   0.919  0.938   0.918   0.862    0.6
    seqslam          SAD64     online    0.911  0.938   0.910   0.845    0.6
    hmm              SAD64     offline   0.933  0.944   0.932   0.903    1.1
    hmm              SAD64     online    0.929  0.942   0.928   0.900    1.0
    single           comb+col  -         0.369  0.545   0.299   0.029    0.0
    seqslam          comb+col  offline   0.930  0.945   0.930   0.894    0.6
    seqslam          comb      online    0.914  0.938   0.914   0.783    0.7
    hmm              comb+col  offline   0.941  0.946   0.940   0.907    1.8
    hmm              comb      online    0.931  0.940   0.930   0.915    1.5
    hmm js=0.3       comb+col  offline   0.946  0.951   0.946   0.933    1.7
    hmm js=0.3       comb      online    0.935  0.944   0.935   0.916    1.4
    best (hmm, comb+col, offline) vs classic SeqSLAM: R@1 0.941 vs 0.917, PR-AUC 0.940 vs 0.916, errors 0.059 vs 0.083 (0.71x)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import List, Tuple

import cv2
import numpy as np

from panoplace.data.groundtruth import GroundTruth
from panoplace.evaluation.pipeline import evaluate_match
from panoplace.matching.seqslam_classic import sad_matrix, seqslam_classic, seqslam_preprocess
from panoplace.matching.sequence import combine_differences, match_sequence, standardise_columns

REPO = Path(__file__).resolve().parents[1]


def load(folder: Path) -> Tuple[List[str], List[np.ndarray]]:
    names = sorted(p.name for p in folder.glob("images-*.png"))
    return names, [cv2.imread(str(folder / n), cv2.IMREAD_COLOR) for n in names]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "nordland_thumbs")
    ap.add_argument("--ds", type=int, default=20, help="sequence length (default 20)")
    ap.add_argument("--tol", type=int, default=2, help="frame tolerance of a correct match (default 2)")
    args = ap.parse_args()
    if not (args.data / "summer").is_dir():
        print(f"no Nordland thumbnails at {args.data}", file=sys.stderr)
        return 2

    t0 = time.perf_counter()
    s_names, summer = load(args.data / "summer")
    w_names, winter = load(args.data / "winter")
    if s_names != w_names:
        print("summer and winter frame names differ", file=sys.stderr)
        return 2
    n = len(s_names)
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    sad64 = sad_matrix(seqslam_preprocess(winter, (64, 32)), seqslam_preprocess(summer, (64, 32)))
    t_sad64 = time.perf_counter() - t0
    t0 = time.perf_counter()
    sad32 = sad_matrix(seqslam_preprocess(winter, (32, 16)), seqslam_preprocess(summer, (32, 16)))
    t_sad32 = time.perf_counter() - t0
    comb = combine_differences(sad64, sad32)
    comb_col = standardise_columns(comb)
    gt = GroundTruth.from_tolerance(n, n, tolerance=args.tol)

    ds = args.ds
    runs = [
        ("single", "SAD64", "-", sad64, dict(method="single")),
        ("classic SeqSLAM", "SAD64", "offline", sad64, dict(method="seqslam_classic")),
        ("seqslam", "SAD64", "offline", sad64, dict(method="seqslam", mode="offline")),
        ("seqslam", "SAD64", "online", sad64, dict(method="seqslam", mode="online")),
        ("hmm", "SAD64", "offline", sad64, dict(method="hmm", mode="offline")),
        ("hmm", "SAD64", "online", sad64, dict(method="hmm", mode="online")),
        ("single", "comb+col", "-", comb_col, dict(method="single")),
        ("seqslam", "comb+col", "offline", comb_col, dict(method="seqslam", mode="offline")),
        ("seqslam", "comb", "online", comb, dict(method="seqslam", mode="online")),
        ("hmm", "comb+col", "offline", comb_col, dict(method="hmm", mode="offline")),
        ("hmm", "comb", "online", comb, dict(method="hmm", mode="online")),
        ("hmm js=0.3", "comb+col", "offline", comb_col, dict(method="hmm", mode="offline", jump_std=0.3)),
        ("hmm js=0.3", "comb", "online", comb, dict(method="hmm", mode="online", jump_std=0.3)),
    ]
    print(f"Nordland summer → winter: {n} frames each, tolerance ±{args.tol}, ds={ds}, v 0.8-1.2")
    print(f"load {t_load:.1f}s, SAD 64x32 {t_sad64:.1f}s, SAD 32x16 {t_sad32:.1f}s")
    print(f"{'matcher':<16s} {'input':<9s} {'mode':<8s} {'R@1':>6s} {'R@5':>6s} {'PR-AUC':>7s} {'R@100P':>7s} {'sec':>6s}")
    table = {}
    for name, inp, mode, D, kw in runs:
        t0 = time.perf_counter()
        if kw["method"] == "seqslam_classic":
            m = seqslam_classic(D, ds=ds, vmin=0.8, vmax=1.2)
        else:
            m = match_sequence(D, ds=ds, vmin=0.8, vmax=1.2, **{"mode": "offline", **kw})
        sec = time.perf_counter() - t0
        r = evaluate_match(m, gt, ns=(1, 5))
        table[(name, inp, mode)] = r
        print(f"{name:<16s} {inp:<9s} {mode:<8s} {r.recall[1]:6.3f} {r.recall[5]:6.3f} {r.pr_auc:7.3f} "
              f"{r.recall_at_100p:7.3f} {sec:6.1f}")
    classic = table[("classic SeqSLAM", "SAD64", "offline")]
    best = table[("hmm", "comb+col", "offline")]
    print(f"best (hmm, comb+col, offline) vs classic SeqSLAM: R@1 {best.recall[1]:.3f} vs {classic.recall[1]:.3f}, "
          f"PR-AUC {best.pr_auc:.3f} vs {classic.pr_auc:.3f}, "
          f"errors {1 - best.recall[1]:.3f} vs {1 - classic.recall[1]:.3f} "
          f"({(1 - best.recall[1]) / (1 - classic.recall[1]):.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
