"""``panoplace evaluate``: query + database descriptor stores + ground truth → metrics, report."""

from __future__ import annotations

import argparse

from panoplace.cli.argtypes import existing_path, finite_float, positive_float, positive_int, refuse_unless
from panoplace.cli.common import add_overwrite_arg, spec_paths
from panoplace.errors import InputError
from panoplace.evaluation.metrics import DEFAULT_NS, DEFAULT_RADII
from panoplace.matching.sequence import MATCHERS, MODES
from panoplace.steps import evaluate
from panoplace.outputs import Output, claim

DEFAULT_DS = 10
DEFAULT_VMIN = 0.8
DEFAULT_VMAX = 1.2


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="measure place recognition (Recall@N, PR-AUC, ...) of descriptor stores against ground truth",
        description="Match query descriptors to database descriptors (single frame or sequence "
                    "matching) and measure the result against a dataset's ground truth: Recall@N, "
                    "precision-recall AUC, recall at 100% precision and, with positions, the fraction "
                    "of queries localised within X metres. Prints a summary table; optionally writes "
                    "JSON, a per-query CSV and an HTML report.",
        epilog="example: panoplace evaluate runs/winter.h5 runs/summer.h5 "
               "--dataset aligned:data/summer,data/winter,tol=2 --matcher hmm --ds 20 --report runs/report; "
               "pixel descriptors at two sizes combined (the best Nordland configuration): panoplace evaluate "
               "runs/winter64.h5 runs/summer64.h5 --combine runs/winter32.h5 runs/summer32.h5 "
               "--standardise-columns --matcher hmm --ds 20 --dataset aligned:data/summer,data/winter,tol=2",
    )
    p.add_argument("query", type=existing_path("query descriptor store"), help="query descriptor store (.h5, from `panoplace extract`)")
    p.add_argument("database", type=existing_path("database descriptor store"), help="database descriptor store (.h5). Place descriptors are compared by cosine "
                                    "distance, pixel descriptors (extract --descriptor pixels) by mean absolute "
                                    "difference; the two stores must hold the same kind")
    p.add_argument("--dataset", required=True, metavar="SPEC",
                   help="dataset with queries and ground truth, e.g. aligned:DB_DIR,QUERY_DIR,tol=2, "
                        "a VPR-Bench folder, a Pittsburgh .mat, or DB.csv,QUERIES.csv "
                        "(syntax: panoplace.data.dataset)")
    p.add_argument("--matcher", choices=MATCHERS, default="single",
                   help="single: nearest database frame per query; seqslam / hmm: sequence matching "
                        "over --ds frames; seqslam_classic: OpenSeqSLAM baseline (default single)")
    p.add_argument("--ds", type=positive_int, default=None, help=f"sequence length in frames (default {DEFAULT_DS})")
    p.add_argument("--mode", choices=MODES, default=None,
                   help="offline: window centred on each query (uses later frames); online: only "
                        "the current and earlier frames (default offline)")
    p.add_argument("--vmin", type=positive_float, default=None,
                   help=f"slowest database frames per query frame (default {DEFAULT_VMIN})")
    p.add_argument("--vmax", type=positive_float, default=None,
                   help=f"fastest database frames per query frame (default {DEFAULT_VMAX})")
    p.add_argument("--radius", type=positive_float, default=None, metavar="METRES",
                   help="ground-truth radius: positives are database images within this distance "
                        "(needs positions; default: the dataset's own ground truth)")
    p.add_argument("--within", type=positive_float, nargs="+", default=list(DEFAULT_RADII), metavar="METRES",
                   help="distances for the fraction localised within X m and its false-positive "
                        f"rate (default {' '.join(str(int(r)) for r in DEFAULT_RADII)})")
    p.add_argument("--fp-threshold", type=finite_float, default=None, metavar="CONF",
                   help="confidence above which a prediction counts for the false-positive rate "
                        "(default: every prediction)")
    p.add_argument("--recall-n", type=positive_int, nargs="+", default=list(DEFAULT_NS), metavar="N",
                   help=f"the N of Recall@N (default {' '.join(map(str, DEFAULT_NS))})")
    cb = p.add_argument_group(
        "combining stores (dense matching: each pair gives a full query x database difference matrix)")
    cb.add_argument("--combine", nargs=2, action="append", metavar=("QUERY", "DATABASE"), default=None,
                    help="another query/database store pair of the same images (e.g. pixels at another size, "
                         "or a model's descriptors); repeatable. Each pair's difference matrix is z-scored per "
                         "query row and the matrices are summed (combine_differences)")
    cb.add_argument("--weights", type=finite_float, nargs="+", default=None, metavar="W",
                    help="one weight per pair, the first pair first (default: all 1)")
    cb.add_argument("--standardise-columns", action="store_true",
                    help="z-score every database column of the difference matrix over all queries (removes "
                         "'hub' frames that look like every query); uses later queries, so offline mode only")
    p.add_argument("--report", metavar="DIR", default=None,
                   help="write an HTML report (plots, metrics, per-query CSV) into DIR")
    p.add_argument("--csv", metavar="FILE", default=None, help="write per-query rows to FILE")
    p.add_argument("--json", metavar="FILE", default=None, help="write the metrics as JSON to FILE")
    add_overwrite_arg(p, "the --csv, --json and --report outputs of an earlier run")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    refuse_unless(args.matcher != "single", args, ["ds", "mode", "vmin", "vmax"],
                  "to sequence matchers (--matcher seqslam, hmm or seqslam_classic)")
    args.vmin = DEFAULT_VMIN if args.vmin is None else args.vmin
    args.vmax = DEFAULT_VMAX if args.vmax is None else args.vmax
    if args.vmax < args.vmin:
        raise InputError(f"--vmax ({args.vmax:g}) must not be smaller than --vmin ({args.vmin:g})")
    args.ds = DEFAULT_DS if args.ds is None else args.ds
    args.mode = "offline" if args.mode is None else args.mode
    combined = [path for pair in args.combine or [] for path in pair]
    with claim([Output(args.csv, "--csv") if args.csv else None, Output(args.json, "--json") if args.json else None, Output(args.report, "--report", folder=True) if args.report else None], [args.query, args.database, *combined, *spec_paths(args.dataset)], overwrite=args.overwrite):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    pairs = [(args.query, args.database)] + [(q, d) for q, d in args.combine or []]
    result = evaluate([q for q, _ in pairs], [d for _, d in pairs], args.dataset, matcher=args.matcher, ds=args.ds, mode=args.mode,
                      vmin=args.vmin, vmax=args.vmax, radius=args.radius, within=args.within,
                      fp_threshold=args.fp_threshold, recall_n=args.recall_n, report=args.report, csv=args.csv,
                      json=args.json, weights=args.weights, standardise_columns=args.standardise_columns)
    print(result.summary())
    return 0
