"""``panoplace map build``: images with positions -> a map folder that ``panoplace serve`` opens."""

from __future__ import annotations

import argparse
import logging

from panoplace.cli.argtypes import device, existing_path, positive_int
from panoplace.cli.common import add_model_args, add_overwrite_arg, add_panorama_args, model_and_panorama_from_args
from panoplace.index import INDEX_KINDS

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "map",
        help="build a map folder (model, descriptors, index, frames, thumbnails) for `panoplace serve`",
        description="Map folders hold everything `panoplace serve` needs to localise images against "
                    "one mapped traverse.",
    )
    actions = p.add_subparsers(dest="map_action", metavar="ACTION", required=True)
    b = actions.add_parser(
        "build",
        help="build a map folder from a dataset CSV of images with positions",
        description="Describe the images of a dataset CSV (image plus x,y or lat,lon; heading "
                    "optional) with a model and write a map folder: the model checkpoint with its "
                    "panorama config, the descriptor store, a search index, the frames in index "
                    "order and a thumbnail per frame. A killed build started again resumes. The "
                    "demo's world works as is: build from WORLD/day/frames.csv with the demo's "
                    "model_netvlad.pt.",
        epilog="example: panoplace map build runs/demo/world/day/frames.csv "
               "--checkpoint runs/demo/model_netvlad.pt --out runs/map",
    )
    b.add_argument("frames", metavar="FRAMES_CSV", type=existing_path("frames CSV"), help="dataset CSV of the map's images with positions")
    b.add_argument("--out", "-o", required=True, metavar="MAP_DIR", help="map folder to write")
    add_model_args(b)
    add_panorama_args(b)
    b.add_argument("--per-crop", action="store_true",
                   help="keep one descriptor per crop, so that localisation matches crop rotations and "
                        "reports headings (larger index)")
    b.add_argument("--name", default=None, help="the map's name (default: the folder's name)")
    b.add_argument("--index-kind", choices=INDEX_KINDS, default="flat", help="search index kind (default flat)")
    b.add_argument("--batch-size", type=positive_int, default=8, help="images per batch (default 8)")
    b.add_argument("--device", default="auto", type=device, help="auto (GPU when present), cpu or cuda")
    b.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    add_overwrite_arg(b, "a finished map in --out (an interrupted build resumes without it)")
    b.set_defaults(func=run_build)


def run_build(args: argparse.Namespace) -> int:
    from panoplace.mapfolder import MANIFEST
    from panoplace.outputs import Output, claim

    out = Output(args.out, "--out", folder=True, marker=MANIFEST)
    with claim([out], [args.frames, args.checkpoint, args.calibration], overwrite=args.overwrite):
        return _run_build(args)


def _run_build(args: argparse.Namespace) -> int:
    from panoplace.mapfolder import build_map

    model, panorama = model_and_panorama_from_args(args)
    out = build_map(args.frames, args.out, model=model, panorama=panorama, per_crop=args.per_crop,
                    index_kind=args.index_kind, name=args.name, batch_size=args.batch_size, device=args.device,
                    progress=not args.no_progress, overwrite=args.overwrite)
    log.info("map folder ready: %s (serve it with `panoplace serve %s`)", out, out)
    return 0
