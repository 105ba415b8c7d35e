"""``panoplace pca``: fit PCA-whitening on database descriptors and store it in the model."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Dict, Optional

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pca",
        help="fit PCA-whitening on database descriptors and store it in the model checkpoint",
        description="Fit PCA-whitening to --dim dimensions on a descriptor store written by `panoplace "
                    "extract --checkpoint MODEL` and save MODEL with the whitening as its last layer, so "
                    "that `panoplace extract --checkpoint OUT` writes whitened descriptors. With --queries, "
                    "--db-set and --query-set it also prints Recall@N on that query/database pair without "
                    "whitening and with whitening at each of --eval-dims.",
        epilog="example: panoplace pca runs/day.h5 --checkpoint runs/model.pt --dim 512 --out runs/model_pca.pt "
               "--queries runs/dusk.h5 --db-set runs/world/day/frames.csv --query-set runs/world/dusk/frames.csv",
    )
    p.add_argument("database", help="descriptor store (.h5) of the database images, extracted with --checkpoint")
    p.add_argument("--checkpoint", required=True, help="the model the descriptors were extracted with")
    p.add_argument("--dim", type=int, required=True, help="whitened descriptor dimension")
    p.add_argument("--out", "-o", required=True, help="checkpoint to write (.pt)")
    p.add_argument("--max-samples", type=int, default=20000,
                   help="fit on at most that many descriptors drawn at random (default 20000)")
    p.add_argument("--seed", type=int, default=0, help="random seed for that draw (default 0)")
    e = p.add_argument_group("evaluation (optional)")
    e.add_argument("--queries", metavar="STORE", default=None, help="query descriptor store (.h5), same checkpoint")
    e.add_argument("--db-set", metavar="SPEC", default=None, help="database images with positions (dataset spec)")
    e.add_argument("--query-set", metavar="SPEC", default=None, help="query images with positions (dataset spec)")
    e.add_argument("--radius", type=float, default=25.0, help="metres for ground truth (default 25)")
    e.add_argument("--eval-dims", type=int, nargs="+", default=None, metavar="D",
                   help="dimensions to evaluate (default: 4096 512 128 and --dim)")
    e.add_argument("--recall", type=int, nargs="+", default=[1, 5, 10], metavar="N", help="Recall@N (default 1 5 10)")
    e.add_argument("--json", metavar="FILE", default=None, help="write the recall table as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from panoplace.errors import InputError
    from panoplace.training.pca import whiten_checkpoint

    wants_eval = [args.queries, args.db_set, args.query_set]
    if any(wants_eval) and not all(wants_eval):
        raise InputError("evaluation needs all of --queries, --db-set and --query-set")
    path, _, _ = whiten_checkpoint(args.checkpoint, args.database, args.dim, args.out,
                                   max_samples=args.max_samples, seed=args.seed)
    log.info("whitened model (%d dims) -> %s", args.dim, path)
    if all(wants_eval):
        table = evaluate(args)
        dims = sorted((d for d in table if d is not None), reverse=True)
        ns = list(args.recall)
        out = sys.stdout
        out.write("whitening  " + "  ".join(f"R@{n:<4d}" for n in ns) + "\n")
        for d in [None] + dims:
            name = "none" if d is None else str(d)
            out.write(f"{name:<10} " + "  ".join(f"{table[d][n]:.3f} " for n in ns) + "\n")
        if args.json:
            Path(args.json).write_text(json.dumps(
                {("none" if d is None else str(d)): {str(n): r for n, r in rec.items()} for d, rec in table.items()},
                indent=2) + "\n")
    return 0


def evaluate(args: argparse.Namespace) -> Dict[Optional[int], Dict[int, float]]:
    """Recall@N before/after whitening on the --queries / database pair (see --help)."""
    from panoplace.data import GroundTruth, load_pair
    from panoplace.store import check_compatible, load_descriptors
    from panoplace.training.pca import pca_recall_table

    db = load_descriptors(args.database)
    q = load_descriptors(args.queries)
    check_compatible(q, db)
    pair = load_pair(args.db_set, args.query_set, radius=args.radius)
    db_xy = pair.database.xy[pair.database.rows_for(db.ids)]
    q_xy = pair.queries.xy[pair.queries.rows_for(q.ids)]
    gt = GroundTruth.from_positions(db_xy, q_xy, args.radius)
    dims = args.eval_dims or sorted({4096, 512, 128, args.dim}, reverse=True)
    return pca_recall_table(db.descriptors, q.descriptors, gt, dims, ns=args.recall, max_samples=args.max_samples,
                            seed=args.seed)
