"""``panoplace localize``: where were the query images taken? (top-k places per query)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

if TYPE_CHECKING:
    from panoplace.matching.scene_rerank import SceneEvidence

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
    sc = p.add_argument_group("scene-aware re-ranking (scene CSVs from `panoplace scene predict`)")
    sc.add_argument("--scenes", metavar="QUERY_CSV", default=None,
                    help="scene CSV of the query images: candidates are re-ranked by how well their "
                         "scene agrees with the query's (needs --database-scenes)")
    sc.add_argument("--database-scenes", metavar="DB_CSV", default=None,
                    help="scene CSV of the database images (the images the index was built from)")
    sc.add_argument("--scene-weight", type=float, default=0.1,
                    help="similarity added per unit of scene agreement (default 0.1)")
    sc.add_argument("--scene-mode", choices=("rerank", "filter"), default="rerank",
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
    scene = _scene_evidence(args, queries.ids, index.ids)
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
                          rotation=not args.no_rotation, scene=scene)
    table = prediction_rows(queries.ids, result, index.ids, database, rows)
    write_predictions(table, args.out if args.out else sys.stdout)
    how = f"sequence matching ({args.sequence})" if args.sequence else "retrieval"
    if scene is not None:
        how += f" with scene {args.scene_mode} (weight {args.scene_weight:g})"
    log.info("localised %d queries against %d database images by %s; median confidence %.3f%s",
             len(queries), len(index), how, float(np.median(result.confidence)),
             f"; wrote {args.out}" if args.out else "")
    return 0


def _scene_evidence(args: argparse.Namespace, query_ids: Sequence[str],
                    database_ids: Sequence[str]) -> Optional["SceneEvidence"]:
    """The :class:`SceneEvidence` of ``--scenes``/``--database-scenes``, or None without them."""
    from panoplace.errors import InputError

    if args.scenes is None and args.database_scenes is None:
        return None
    if args.scenes is None or args.database_scenes is None:
        raise InputError("scene re-ranking needs both --scenes (queries) and --database-scenes (database)")
    if args.sequence:
        raise InputError("scene re-ranking works on frame-by-frame retrieval; leave out --sequence")
    if not np.isfinite(args.scene_weight) or args.scene_weight < 0:
        raise InputError(f"--scene-weight must be a number >= 0, got {args.scene_weight}")
    from panoplace.matching.scene_rerank import SceneEvidence
    from panoplace.scene.predict import scene_probs_from_csv

    db_probs, categories = scene_probs_from_csv(args.database_scenes, list(database_ids))
    q_probs, _ = scene_probs_from_csv(args.scenes, list(query_ids), categories)
    kind = "top1" if args.scene_mode == "filter" else "bhattacharyya"
    return SceneEvidence(q_probs, db_probs, weight=args.scene_weight, kind=kind, mode=args.scene_mode)
