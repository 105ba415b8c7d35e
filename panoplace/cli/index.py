"""``panoplace index``: database descriptors → faiss index file."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from panoplace.cli.argtypes import existing_path, int_between, non_negative_int, positive_int, refuse_unless
from panoplace.cli.common import add_overwrite_arg
from panoplace.errors import InputError
from panoplace.index import INDEX_KINDS, IndexParams, load_index, save_index, update_index
from panoplace.outputs import Output, claim
from panoplace.steps import index
from panoplace.store import is_sharded_store, load_descriptors

log = logging.getLogger(__name__)

IVFPQ_OPTIONS = ["nlist", "m", "nbits", "nprobe", "pca"]
# a --pca given for a flat index is refused by the library (its message says why)
REFUSED_FOR_FLAT = ["nlist", "m", "nbits", "nprobe"]


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
    p.add_argument("database", type=existing_path("database descriptor store"), help="database descriptor store (.h5 from `panoplace extract`, or the "
                                     "folder of a sharded store from `extract --engine ray`)")
    p.add_argument("out", help="index file to write")
    p.add_argument("--kind", choices=INDEX_KINDS, default=None, help="index kind (default flat)")
    p.add_argument("--nlist", type=positive_int, default=None,
                   help=f"IVF-PQ coarse cells (default {d.nlist}; needs >= nlist database images)")
    p.add_argument("--m", type=positive_int, default=None,
                   help=f"IVF-PQ sub-quantisers, must divide the descriptor dimension (default {d.m})")
    p.add_argument("--nbits", type=int_between(1, 16), default=None, help=f"IVF-PQ bits per code (default {d.nbits})")
    p.add_argument("--nprobe", type=positive_int, default=None,
                   help=f"IVF-PQ cells visited per query, stored as the default (default {d.nprobe})")
    p.add_argument("--pca", type=non_negative_int, default=None, metavar="DIM",
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


def index_params(args: argparse.Namespace) -> IndexParams:
    """The index parameters of the options; IVF-PQ options with ``--kind flat`` are refused."""
    d = IndexParams()
    kind = d.kind if args.kind is None else args.kind
    refuse_unless(kind == "ivfpq", args, REFUSED_FOR_FLAT, "to --kind ivfpq")
    given = {name: getattr(args, name) for name in IVFPQ_OPTIONS if getattr(args, name) is not None}
    return IndexParams(**{**{name: getattr(d, name) for name in IVFPQ_OPTIONS}, **given, "kind": kind})


def check_options(args: argparse.Namespace) -> None:
    """Refuse options that would change nothing for this run (before any output is claimed)."""
    refuse_unless(args.engine == "ray", args, ["address"], "with --engine ray")
    if args.update:
        refuse_unless(False, args, ["kind"] + IVFPQ_OPTIONS, "to a new index: --update keeps the index's own parameters")
        refuse_unless(args.engine == "local", args, ["engine"], "to a new index (--update adds in this process)")
    else:
        index_params(args)


def run(args: argparse.Namespace) -> int:
    check_options(args)
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
        built = build_index_ray(args.database, index_params(args), address=args.address)
        save_index(built, args.out)
        log.info("indexed %d descriptors (%s, Ray) → %s", len(built), built.kind, args.out)
        return 0
    params = index_params(args)
    index(args.database, args.out, kind=params.kind, nlist=params.nlist, m=params.m, nbits=params.nbits,
          nprobe=params.nprobe, pca=params.pca)
    return 0
