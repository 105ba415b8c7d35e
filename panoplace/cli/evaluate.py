"""``panoplace evaluate``: query + database descriptor stores + ground truth → metrics, report."""

from __future__ import annotations

import argparse
import logging
from typing import Tuple

import numpy as np

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    from panoplace.evaluation.metrics import DEFAULT_NS, DEFAULT_RADII
    from panoplace.matching.sequence import MATCHERS, MODES

    p = sub.add_parser(
        "evaluate",
        help="measure place recognition (Recall@N, PR-AUC, ...) of descriptor stores against ground truth",
        description="Match query descriptors to database descriptors (single frame or sequence "
                    "matching) and measure the result against a dataset's ground truth: Recall@N, "
                    "precision-recall AUC, recall at 100% precision and, with positions, the fraction "
                    "of queries localised within X metres. Prints a summary table; optionally writes "
                    "JSON, a per-query CSV and an HTML report.",
        epilog="example: panoplace evaluate runs/winter.h5 runs/summer.h5 "
               "--dataset aligned:data/summer,data/winter,tol=2 --matcher hmm --ds 20 --report runs/report",
    )
    p.add_argument("query", help="query descriptor store (.h5, from `panoplace extract`)")
    p.add_argument("database", help="database descriptor store (.h5)")
    p.add_argument("--dataset", required=True, metavar="SPEC",
                   help="dataset with queries and ground truth, e.g. aligned:DB_DIR,QUERY_DIR,tol=2, "
                        "a VPR-Bench folder, a Pittsburgh .mat, or DB.csv,QUERIES.csv "
                        "(syntax: panoplace.data.dataset)")
    p.add_argument("--matcher", choices=MATCHERS, default="single",
                   help="single: nearest database frame per query; seqslam / hmm: sequence matching "
                        "over --ds frames; seqslam_classic: OpenSeqSLAM baseline (default single)")
    p.add_argument("--ds", type=int, default=10, help="sequence length in frames (default 10)")
    p.add_argument("--mode", choices=MODES, default="offline",
                   help="offline: window centred on each query (uses later frames); online: only "
                        "the current and earlier frames (default offline)")
    p.add_argument("--vmin", type=float, default=0.8, help="slowest database frames per query frame (default 0.8)")
    p.add_argument("--vmax", type=float, default=1.2, help="fastest database frames per query frame (default 1.2)")
    p.add_argument("--radius", type=float, default=None, metavar="METRES",
                   help="ground-truth radius: positives are database images within this distance "
                        "(needs positions; default: the dataset's own ground truth)")
    p.add_argument("--within", type=float, nargs="+", default=list(DEFAULT_RADII), metavar="METRES",
                   help="distances for the fraction localised within X m and its false-positive "
                        f"rate (default {' '.join(str(int(r)) for r in DEFAULT_RADII)})")
    p.add_argument("--fp-threshold", type=float, default=None, metavar="CONF",
                   help="confidence above which a prediction counts for the false-positive rate "
                        "(default: every prediction)")
    p.add_argument("--recall-n", type=int, nargs="+", default=list(DEFAULT_NS), metavar="N",
                   help=f"the N of Recall@N (default {' '.join(map(str, DEFAULT_NS))})")
    p.add_argument("--report", metavar="DIR", default=None,
                   help="write an HTML report (plots, metrics, per-query CSV) into DIR")
    p.add_argument("--csv", metavar="FILE", default=None, help="write per-query rows to FILE")
    p.add_argument("--json", metavar="FILE", default=None, help="write the metrics as JSON to FILE")
    p.set_defaults(func=run)


def _align(store, imageset, what: str) -> Tuple[np.ndarray, list]:
    """Descriptors of ``store`` in the order of ``imageset`` (every image must be in the store)."""
    from panoplace.errors import DatasetError

    rows = imageset.rows_for(store.ids)
    n = len(imageset)
    if len(rows) != n or len(np.unique(rows)) != n:
        have = np.zeros(n, dtype=bool)
        have[rows] = True
        if have.all():
            raise DatasetError(f"the {what} store lists some of the dataset's {n} images more than once")
        first = imageset.paths[int(np.flatnonzero(~have)[0])]
        raise DatasetError(f"the {what} store has {len(store)} descriptors but the dataset has {n} {what} "
                           f"images ({int((~have).sum())} missing, first: {first})")
    order = np.argsort(rows, kind="stable")
    return store.descriptors[order], [store.ids[i] for i in order]


def run(args: argparse.Namespace) -> int:
    from panoplace.data import GroundTruth, load_dataset
    from panoplace.errors import DatasetError, InputError
    from panoplace.evaluation.pipeline import evaluate_descriptors
    from panoplace.store import check_compatible, load_descriptors

    if args.ds < 1:
        raise InputError(f"--ds must be >= 1, got {args.ds}")
    query = load_descriptors(args.query)
    database = load_descriptors(args.database)
    check_compatible(query, database)
    dataset = load_dataset(args.dataset)
    if dataset.queries is None or dataset.ground_truth is None:
        raise DatasetError(f"dataset {args.dataset} has no queries and ground truth; give a spec with both "
                           f"(e.g. DB.csv,QUERIES.csv or aligned:DB_DIR,QUERY_DIR)")
    gt = dataset.ground_truth
    if args.radius is not None:
        if args.radius <= 0:
            raise InputError(f"--radius must be > 0 metres, got {args.radius}")
        if not (dataset.database.has_positions and dataset.queries.has_positions):
            raise DatasetError("--radius needs positions for both database and query images")
        gt = GroundTruth.from_positions(dataset.database.xy, dataset.queries.xy, args.radius, valid=gt.valid)
    q_desc, q_ids = _align(query, dataset.queries, "query")
    d_desc, d_ids = _align(database, dataset.database, "database")
    result = evaluate_descriptors(
        q_desc, d_desc, gt, args.matcher, ds=args.ds, mode=args.mode, vmin=args.vmin, vmax=args.vmax,
        query_ids=q_ids, db_ids=d_ids, query_xy=dataset.queries.xy, db_xy=dataset.database.xy,
        ns=args.recall_n, radii=args.within, fp_threshold=args.fp_threshold)
    print(result.summary())
    if args.json:
        log.info("metrics → %s", result.write_json(args.json))
    if args.csv:
        log.info("per-query rows → %s", result.write_csv(args.csv))
    if args.report:
        from panoplace.evaluation.report import write_report

        page = write_report(args.report, result, query_xy=dataset.queries.xy, db_xy=dataset.database.xy,
                            query_paths=[str(p) for p in dataset.queries.abs_paths()],
                            db_paths=[str(p) for p in dataset.database.abs_paths()],
                            title=f"panoplace evaluate: {args.matcher} on {args.dataset}")
        log.info("report → %s", page)
    return 0
