"""``panoplace localize``: where were the query images taken? (top-k places per query)."""

from __future__ import annotations

import argparse
import sys

from panoplace.cli.common import add_overwrite_arg, spec_paths
from panoplace.outputs import Output, claim
from panoplace.steps import localize
from panoplace.steps.localization import SCENE_MODES


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
               "--database-set runs/world/day/frames.csv --out runs/predictions.csv",
    )
    p.add_argument("--index", required=True, help="index file from `panoplace index`")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("query", nargs="?", default=None,
                     help="query descriptor store (.h5), or an image, a folder of images, a .txt "
                          "list or a dataset CSV")
    src.add_argument("--image", default=None, help="one query image (or a folder of images)")
    p.add_argument("--k", type=int, default=5, help="matches per query (default 5)")
    p.add_argument("--out", "-o", default=None, help="predictions CSV to write (default: stdout)")
    p.add_argument("--database-set", metavar="DATASET_SPEC", default=None,
                   help="the database's dataset (CSV, folder or spec, see `load_dataset`) to report "
                        "positions and to tell different places apart for the confidence")
    p.add_argument("--place-radius", type=float, default=25.0,
                   help="metres beyond which a match is a different place (confidence; default 25)")
    p.add_argument("--nprobe", type=int, default=None, help="IVF-PQ cells visited per query")
    p.add_argument("--no-rotation", action="store_true",
                   help="per-crop descriptors: skip rotation re-ranking and heading estimation")
    sc = p.add_argument_group("scene-aware re-ranking (scene CSVs from `panoplace scene predict`)")
    sc.add_argument("--scenes", metavar="QUERY_CSV", default=None,
                    help="scene CSV of the query images: candidates are re-ranked by how well their "
                         "scene agrees with the query's (needs --database-scenes)")
    sc.add_argument("--database-scenes", metavar="DB_CSV", default=None,
                    help="scene CSV of the database images (the images the index was built from)")
    sc.add_argument("--scene-weight", type=float, default=0.1,
                    help="similarity added per unit of scene agreement (default 0.1)")
    sc.add_argument("--scene-mode", choices=SCENE_MODES, default="rerank",
                    help="rerank: add weight x Bhattacharyya agreement to the score (the CSV's score is "
                         "then the sum); filter: drop candidates whose top-1 scene differs (a query none "
                         "of whose candidates agrees keeps its list)")
    seq = p.add_argument_group("sequence matching")
    seq.add_argument("--sequence", nargs="?", const="hmm", default=None, choices=("hmm", "seqslam"),
                     help="treat the queries as an ordered sequence (method: hmm or seqslam; default hmm; "
                          "give the query before it or name the method)")
    seq.add_argument("--ds", type=int, default=10, help="sequence length in frames (default 10)")
    seq.add_argument("--mode", choices=("offline", "online"), default="offline",
                     help="offline: centred window; online: past frames only (default offline)")
    ext = p.add_argument_group("describing query images")
    ext.add_argument("--checkpoint", default=None,
                     help="model checkpoint the database descriptors were made with (needed for NetVLAD)")
    ext.add_argument("--batch-size", type=int, default=8, help="images per batch (default 8)")
    ext.add_argument("--device", default="auto", help="auto (GPU when present), cpu or cuda")
    add_overwrite_arg(p, "a predictions CSV at --out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = Output(args.out, "--out") if args.out else None
    inputs = [args.index, args.query, args.image, args.scenes, args.database_scenes, args.checkpoint,
              *spec_paths(args.database_set)]
    with claim([out], inputs, overwrite=args.overwrite):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    localize(args.index, args.image or args.query, args.out if args.out else sys.stdout, k=args.k,
             database_set=args.database_set, place_radius=args.place_radius, nprobe=args.nprobe,
             rotation=not args.no_rotation, scenes=args.scenes, database_scenes=args.database_scenes,
             scene_weight=args.scene_weight, scene_mode=args.scene_mode, sequence=args.sequence, ds=args.ds,
             mode=args.mode, checkpoint=args.checkpoint, batch_size=args.batch_size, device=args.device,
             progress=not args.quiet)
    return 0
