"""``panoplace cluster``: initialise NetVLAD centroids from images (faiss k-means)."""

from __future__ import annotations

import argparse

from panoplace.cli.argtypes import device, existing_path, non_negative_int, positive_int, seed
from panoplace.cli.common import (add_model_args, add_overwrite_arg, add_panorama_args, add_preset_arg, model_overrides,
                                  panorama_overrides)
from panoplace.steps import cluster
from panoplace.outputs import Output, claim


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cluster",
        help="fit NetVLAD centroids on local features of images; writes an initialised model",
        description="Sample local features of the backbone from images, cluster them with faiss "
                    "k-means, initialise the NetVLAD layer from the centroids (vladv1 or vladv2) "
                    "and save the model as a checkpoint that `panoplace extract` loads as is.",
        epilog="example: panoplace cluster runs/world/day/equirect --projection equirect --crops 4 "
               "--num-clusters 32 --out runs/model.pt",
    )
    p.add_argument("source", type=existing_path("image source", "no such file or folder: {path}"), help="a folder of images, a .txt list of image paths, or a dataset CSV")
    p.add_argument("--out", "-o", required=True, help="checkpoint to write (.pt)")
    add_model_args(p, checkpoint=False)
    add_preset_arg(p)
    add_panorama_args(p)
    p.add_argument("--vladv2", action="store_true", default=None, help="NetVLAD v2 initialisation (with bias)")
    p.add_argument("--images", type=positive_int, default=500, help="images to sample (default 500)")
    p.add_argument("--per-image", type=positive_int, default=100, help="local features per image (default 100)")
    p.add_argument("--seed", type=seed, default=0, help="random seed (default 0)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="images per batch (default 8)")
    p.add_argument("--workers", type=non_negative_int, default=None,
                   help="DataLoader decoding workers (default: none on 1-2 cores, else up to 4)")
    p.add_argument("--device", default="auto", type=device, help="auto (GPU when present), cpu or cuda")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_overwrite_arg(p, "a checkpoint at --out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with claim([Output(args.out, "--out")], [args.source, args.calibration], overwrite=args.overwrite):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    model = model_overrides(args)
    if args.vladv2:
        model["vladv2"] = True
    cluster(args.source, args.out, preset=args.preset, panorama_overrides=panorama_overrides(args),
            model_overrides=model, n_images=args.images, per_image=args.per_image, seed=args.seed,
            batch_size=args.batch_size, num_workers=args.workers, device=args.device,
            progress=not args.no_progress)
    return 0
