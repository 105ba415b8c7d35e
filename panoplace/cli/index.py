"""``panoplace index``: database descriptors → faiss index file."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from panoplace.cli.common import add_overwrite_arg
from panoplace.errors import InputError
from panoplace.index import INDEX_KINDS, IndexParams, load_index, save_index, update_index
from panoplace.outputs import Output, claim
from panoplace.steps import index
from panoplace.store import is_sharded_store, load_descriptors

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    d = IndexParams()
    p = sub.add_parser(
        "index",
        help="build a faiss search index over database descriptors",
        description="Build a search index over the descriptors of the database (the map) and "
                    "save it with the model config and weights fingerprint of the descriptors, "
                    "so that `panoplace localize` refuses queries from another model. 'flat' is "
                    "exact inner-product search; 'ivfpq' (inverted file + product quantisation, "
                    "trained on the database) is for maps of 10^5 images and more. Per-crop "
                    "descriptors are searched through their fused view and kept for rotation "
                    "re-ranking.",
        epilog="example: panoplace index runs/day.h5 runs/day.index --kind ivfpq --nlist 256 --m 32",
    )
    p.add_argument("database", help="database descriptor store (.h5 from `panoplace extract`, or the "
                                     "folder of a sharded store from `extract --engine ray`)")
    p.add_argument("out", help="index file to write")
    p.add_argument("--kind", choices=INDEX_KINDS, default=d.kind, help="index kind (default flat)")
    p.add_argument("--nlist", type=int, default=d.nlist,
                   help=f"IVF-PQ coarse cells (default {d.nlist}; needs >= nlist database images)")
    p.add_argument("--m", type=int, default=d.m,
                   help=f"IVF-PQ sub-quantisers, must divide the descriptor dimension (default {d.m})")
    p.add_argument("--nbits", type=int, default=d.nbits, help=f"IVF-PQ bits per code (default {d.nbits})")
    p.add_argument("--nprobe", type=int, default=d.nprobe,
                   help=f"IVF-PQ cells visited per query, stored as the default (default {d.nprobe})")
    p.add_argument("--pca", type=int, default=d.pca, metavar="DIM",
                   help="IVF-PQ: project the descriptors to DIM dimensions (PCA + random rotation, trained "
                        "on the database) before coding; recommended for 4096-D NetVLAD (e.g. --pca 256); "
                        "--m must divide DIM (default 0 = none)")
    p.add_argument("--update", action="store_true",
                   help="OUT is an existing index: add the database entries it does not hold yet, without "
                        "retraining (a map that grows); warns when they drifted enough that a rebuild would pay")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="ray: add the shards of a sharded store (from `extract --engine ray`) in parallel "
                        "Ray tasks and merge them (needs the ray extra); default local")
    p.add_argument("--address", default=None,
                   help="--engine ray: Ray cluster address HOST:PORT or auto (default: local mode on this machine)")
    add_overwrite_arg(p, "an index at OUT (a rebuild; see --update to grow it)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = Output(args.out, "OUT", existing="update" if args.update else "refuse",
                 hint="pass --overwrite to rebuild it, or --update to add new entries to it")
    with claim([out], [args.database], overwrite=args.overwrite):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    if args.update:
        if not Path(args.out).is_file():
            raise InputError(f"--update: no index to update at {args.out}; build it first without --update")
        grown = load_index(args.out, mmap=False)
        update = update_index(grown, load_descriptors(args.database))
        save_index(grown, args.out)
        log.info("added %d new descriptors (%d were already indexed) → %s, %d in all", update.added,
                 update.already, args.out, len(grown))
        return 0
    if args.engine == "ray":
        from panoplace.ray_engine import build_index_ray  # optional extra (ray)

        if not is_sharded_store(args.database):
            raise InputError(f"--engine ray indexes a sharded store folder (from `extract --engine ray`); "
                             f"{args.database} is not one")
        built = build_index_ray(args.database, IndexParams(kind=args.kind, nlist=args.nlist, m=args.m,
                                                           nbits=args.nbits, nprobe=args.nprobe, pca=args.pca),
                                address=args.address)
        save_index(built, args.out)
        log.info("indexed %d descriptors (%s, Ray) → %s", len(built), args.kind, args.out)
        return 0
    index(args.database, args.out, kind=args.kind, nlist=args.nlist, m=args.m, nbits=args.nbits,
          nprobe=args.nprobe, pca=args.pca)
    return 0
