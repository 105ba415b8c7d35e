"""``panoplace pca``: fit PCA-whitening on database descriptors and store it in the model."""

from __future__ import annotations

import argparse
import sys

from panoplace.cli.argtypes import existing_file, existing_path, positive_float, positive_int, refuse_unless, seed
from panoplace.cli.common import add_overwrite_arg, spec_paths
from panoplace.steps import pca
from panoplace.training.pca import DEFAULT_MAX_SAMPLES
from panoplace.outputs import Output, claim

DEFAULT_RADIUS = 25.0
DEFAULT_RECALL = [1, 5, 10]


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
    p.add_argument("database", type=existing_path("database descriptor store"), help="descriptor store (.h5) of the database images, extracted with --checkpoint")
    p.add_argument("--checkpoint", required=True, type=existing_file("checkpoint"), help="the model the descriptors were extracted with")
    p.add_argument("--dim", type=positive_int, required=True, help="whitened descriptor dimension")
    p.add_argument("--out", "-o", required=True, help="checkpoint to write (.pt)")
    p.add_argument("--max-samples", type=positive_int, default=DEFAULT_MAX_SAMPLES,
                   help=f"fit on at most that many descriptors drawn at random (default {DEFAULT_MAX_SAMPLES})")
    p.add_argument("--seed", type=seed, default=0, help="random seed for that draw (default 0)")
    e = p.add_argument_group("evaluation (optional)")
    e.add_argument("--queries", metavar="STORE", default=None, type=existing_path("query descriptor store"), help="query descriptor store (.h5), same checkpoint")
    e.add_argument("--db-set", metavar="SPEC", default=None, help="database images with positions (dataset spec)")
    e.add_argument("--query-set", metavar="SPEC", default=None, help="query images with positions (dataset spec)")
    e.add_argument("--radius", type=positive_float, default=None,
                   help=f"metres for ground truth (default {DEFAULT_RADIUS:g})")
    e.add_argument("--eval-dims", type=positive_int, nargs="+", default=None, metavar="D",
                   help="dimensions to evaluate (default: 4096 512 128 and --dim)")
    e.add_argument("--recall", type=positive_int, nargs="+", default=None, metavar="N",
                   help=f"Recall@N (default {' '.join(map(str, DEFAULT_RECALL))})")
    e.add_argument("--json", metavar="FILE", default=None, help="write the recall table as JSON")
    add_overwrite_arg(p, "the checkpoint at --out (and --json) of an earlier run")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    refuse_unless(args.queries is not None, args, ["db_set", "query_set", "radius", "eval_dims", "recall", "json"],
                  "to the evaluation (with --queries)")
    with claim([Output(args.out, "--out"), Output(args.json, "--json") if args.json else None], [args.database, args.checkpoint, args.queries, *spec_paths(args.db_set, args.query_set)], overwrite=args.overwrite):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    result = pca(args.database, args.checkpoint, args.dim, args.out, max_samples=args.max_samples, seed=args.seed,
                 queries=args.queries, db_set=args.db_set, query_set=args.query_set, radius=DEFAULT_RADIUS if args.radius is None else args.radius,
                 eval_dims=args.eval_dims, recall=DEFAULT_RECALL if args.recall is None else args.recall, json=args.json)
    if result.recall is not None:
        sys.stdout.write(result.table())
    return 0
