"""``panoplace localize``: where were the query images taken? (top-k places per query)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from panoplace.cli.argtypes import (
    device,
    existing_file,
    existing_path,
    finite_float,
    non_negative_float,
    positive_float,
    positive_int,
    refuse_unless,
)
from panoplace.cli.common import add_overwrite_arg, spec_paths
from panoplace.outputs import Output, claim
from panoplace.errors import InputError
from panoplace.steps import localize
from panoplace.steps.localization import DEFAULT_PLACE_RADIUS, SCENE_MODES, STORE_SUFFIXES
from panoplace.store import is_sharded_store

DEFAULT_DS = 10
DEFAULT_SCENE_WEIGHT = 0.1
DEFAULT_BATCH_SIZE = 8


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "localize",
        help="find the database places of query images or descriptors",
        description="Search the index for the k most similar database images of each query and "
                    "write one CSV row per (query, rank): database id, position (with "
                    "--database-set), similarity score, confidence (margin to the best different "
                    "place) and, for per-crop descriptors, the heading relative to the database "
                    "image. Queries are a descriptor store, or images (one file, a folder, a .txt "
                    "list or a dataset CSV) that are described with the model the index was built "
                    "from. With --sequence the queries are an ordered traverse matched by sequence "
                    "matching instead of frame by frame.",
        epilog="example: panoplace localize --index runs/day.index runs/night.h5 --k 5 "
               "--database-set runs/world/day/frames.csv --out runs/predictions.csv; pixel stores at two sizes "
               "combined: panoplace localize --database runs/summer64.h5 runs/winter64.h5 --combine "
               "runs/winter32.h5 runs/summer32.h5 --standardise-columns --sequence hmm --ds 20 --out runs/p.csv",
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--index", type=existing_file("index file"), help="index file from `panoplace index`")
    where.add_argument("--database", metavar="STORE",
                       help="instead of --index: the database descriptor store (.h5), matched densely through the "
                            "full query x database difference matrix (cosine for place descriptors, mean absolute "
                            "difference for pixel descriptors of `extract --descriptor pixels`); needed to combine "
                            "stores (--combine). The query is then a store, or images when STORE holds pixels; "
                            "score = minus the difference; no headings or scene re-ranking")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("query", nargs="?", default=None, type=existing_path("query"),
                     help="query descriptor store (.h5), or an image, a folder of images, a .txt "
                          "list or a dataset CSV")
    src.add_argument("--image", default=None, type=existing_path("query image"), help="one query image (or a folder of images)")
    p.add_argument("--k", type=positive_int, default=5, help="matches per query (default 5)")
    p.add_argument("--out", "-o", default=None, help="predictions CSV to write (default: stdout)")
    p.add_argument("--database-set", metavar="DATASET_SPEC", default=None,
                   help="the database's dataset (CSV, folder or spec, see `load_dataset`) to report "
                        "positions and to tell different places apart for the confidence")
    p.add_argument("--place-radius", type=positive_float, default=None,
                   help="with --database-set: metres beyond which a match is a different place (confidence; "
                        f"default {DEFAULT_PLACE_RADIUS:g})")
    p.add_argument("--nprobe", type=positive_int, default=None, help="IVF-PQ cells visited per query")
    p.add_argument("--no-rotation", action="store_true",
                   help="per-crop descriptors: skip rotation re-ranking and heading estimation")
    sc = p.add_argument_group("scene-aware re-ranking (scene CSVs from `panoplace scene predict`)")
    sc.add_argument("--scenes", metavar="QUERY_CSV", default=None, type=existing_file("query scene CSV"),
                    help="scene CSV of the query images: candidates are re-ranked by how well their "
                         "scene agrees with the query's (needs --database-scenes)")
    sc.add_argument("--database-scenes", metavar="DB_CSV", default=None, type=existing_file("database scene CSV"),
                    help="scene CSV of the database images (the images the index was built from)")
    sc.add_argument("--scene-weight", type=non_negative_float, default=None,
                    help=f"--scene-mode rerank: similarity added per unit of scene agreement (default {DEFAULT_SCENE_WEIGHT:g})")
    sc.add_argument("--scene-mode", choices=SCENE_MODES, default=None,
                    help="rerank: add weight x Bhattacharyya agreement to the score (the CSV's score is "
                         "then the sum); filter: drop candidates whose top-1 scene differs (a query none "
                         "of whose candidates agrees keeps its list)")
    seq = p.add_argument_group("sequence matching")
    seq.add_argument("--sequence", nargs="?", const="hmm", default=None, choices=("hmm", "seqslam"),
                     help="treat the queries as an ordered sequence (method: hmm or seqslam; default hmm; "
                          "give the query before it or name the method)")
    seq.add_argument("--ds", type=positive_int, default=None, help=f"sequence length in frames (default {DEFAULT_DS})")
    seq.add_argument("--mode", choices=("offline", "online"), default=None,
                     help="offline: centred window; online: past frames only (default offline)")
    cb = p.add_argument_group("combining stores (with --database: dense matching on full difference matrices; "
                              "not with --index, whose sparse and online matching take one store)")
    cb.add_argument("--combine", nargs=2, action="append", metavar=("QUERY", "DATABASE"), default=None,
                    help="another query/database store pair of the same images (e.g. pixels at another size); "
                         "repeatable. Each pair's difference matrix is z-scored per query row and the matrices "
                         "are summed (combine_differences); with --sequence --mode online the result stays causal")
    cb.add_argument("--weights", type=finite_float, nargs="+", default=None, metavar="W",
                    help="one weight per pair, the --database pair first (default: all 1)")
    cb.add_argument("--standardise-columns", action="store_true",
                    help="z-score every database column over all queries (removes 'hub' frames); uses later "
                         "queries, so offline mode only")
    ext = p.add_argument_group("describing query images")
    ext.add_argument("--checkpoint", default=None, type=existing_file("checkpoint"),
                     help="model checkpoint the database descriptors were made with (needed for NetVLAD)")
    ext.add_argument("--batch-size", type=positive_int, default=None, help=f"images per batch (default {DEFAULT_BATCH_SIZE})")
    ext.add_argument("--device", default=None, type=device, help="auto (GPU when present, the default), cpu or cuda")
    add_overwrite_arg(p, "a predictions CSV at --out")
    p.set_defaults(func=run)


def check_options(args: argparse.Namespace) -> None:
    """Refuse options that would change nothing for this run."""
    refuse_unless(args.sequence is not None, args, ["ds", "mode"], "with --sequence")
    refuse_unless(args.sequence is None, args, ["place_radius"],
                  "to frame-by-frame retrieval (the confidence of sequence matching does not use it)")
    refuse_unless(args.database_set is not None, args, ["place_radius"], "with --database-set (positions)")
    refuse_unless(args.scenes is not None, args, ["scene_mode", "scene_weight"], "with --scenes")
    refuse_unless(args.scene_mode in (None, "rerank"), args, ["scene_weight"], "to --scene-mode rerank")
    query = args.image or args.query
    store = Path(query).suffix.lower() in STORE_SUFFIXES or is_sharded_store(query)
    refuse_unless(not store, args, ["checkpoint", "batch_size", "device"],
                  "to query images; the queries are descriptors already")


def run(args: argparse.Namespace) -> int:
    check_options(args)
    out = Output(args.out, "--out") if args.out else None
    combined = [path for pair in args.combine or [] for path in pair]
    inputs = [args.index, args.database, args.query, args.image, *combined, args.scenes, args.database_scenes,
              args.checkpoint, *spec_paths(args.database_set)]
    with claim([out], inputs, overwrite=args.overwrite):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    query = args.image or args.query
    if args.database is None and (args.combine or args.weights is not None or args.standardise_columns):
        raise InputError("--combine, --weights and --standardise-columns need --database stores (dense matching), "
                         "not --index")
    pairs = [(query, args.database)] + [(q, d) for q, d in args.combine or []]
    queries = [q for q, _ in pairs] if args.combine else query
    database = ([d for _, d in pairs] if args.combine else args.database) if args.database else None
    localize(args.index, queries, args.out if args.out else sys.stdout, k=args.k, database=database,
             weights=args.weights, standardise_columns=args.standardise_columns,
             database_set=args.database_set,
             place_radius=DEFAULT_PLACE_RADIUS if args.place_radius is None else args.place_radius,
             nprobe=args.nprobe, rotation=not args.no_rotation, scenes=args.scenes,
             database_scenes=args.database_scenes,
             scene_weight=DEFAULT_SCENE_WEIGHT if args.scene_weight is None else args.scene_weight,
             scene_mode="rerank" if args.scene_mode is None else args.scene_mode, sequence=args.sequence,
             ds=DEFAULT_DS if args.ds is None else args.ds, mode="offline" if args.mode is None else args.mode,
             checkpoint=args.checkpoint,
             batch_size=DEFAULT_BATCH_SIZE if args.batch_size is None else args.batch_size,
             device="auto" if args.device is None else args.device, progress=not args.quiet)
    return 0
