"""``panoplace localize``: where were the query images taken? (top-k places per query)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

STORE_SUFFIXES = (".h5", ".hdf5")


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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from panoplace.errors import InputError
    from panoplace.index import load_index
    from panoplace.matching.retrieval import (
        prediction_rows,
        query_descriptors_from_images,
        retrieve,
        retrieve_sequence,
        write_predictions,
    )
    from panoplace.store import load_descriptors

    index = load_index(args.index)
    if args.nprobe is not None:
        index.set_nprobe(args.nprobe)
    source = Path(args.image or args.query)
    if source.suffix.lower() in STORE_SUFFIXES:
        queries = load_descriptors(source)
    else:
        if not source.exists():
            raise InputError(f"no such query file or folder: {source}")
        queries = query_descriptors_from_images(source, index, args.checkpoint, args.batch_size,
                                                args.device, progress=not args.quiet)
    index.check_query(queries)
    database = rows = xy = None
    if args.database_set:
        from panoplace.data import load_dataset

        database = load_dataset(args.database_set).database
        rows = database.rows_for(index.ids)
        xy = database.xy[rows] if database.xy is not None else None
    if args.sequence:
        result = retrieve_sequence(index, queries, args.k, method=args.sequence, ds=args.ds, mode=args.mode)
    else:
        result = retrieve(index, queries, args.k, database_xy=xy, place_radius=args.place_radius,
                          rotation=not args.no_rotation)
    table = prediction_rows(queries.ids, result, index.ids, database, rows)
    write_predictions(table, args.out if args.out else sys.stdout)
    how = f"sequence matching ({args.sequence})" if args.sequence else "retrieval"
    log.info("localised %d queries against %d database images by %s; median confidence %.3f%s",
             len(queries), len(index), how, float(np.median(result.confidence)),
             f"; wrote {args.out}" if args.out else "")
    return 0

