"""``panoplace extract``: images → descriptor store (HDF5)."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from panoplace.cli.argtypes import device, existing_path, non_negative_int, positive_int, refuse_unless
from panoplace.cli.common import (
    MODEL_DESTS,
    add_model_args,
    add_overwrite_arg,
    add_panorama_args,
    add_preset_arg,
    model_and_panorama_from_args,
    model_overrides,
    panorama_from_args,
    panorama_overrides,
)
from panoplace.errors import InputError
from panoplace.export import OnnxPlaceModel
from panoplace.outputs import Output, claim
from panoplace.pixels import PixelConfig, parse_pixel_size
from panoplace.runner import list_images
from panoplace.steps import extract

log = logging.getLogger(__name__)

DEFAULT_SHARD_SIZE = 256


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "extract",
        help="compute place descriptors of images into an HDF5 store",
        description="Compute one place descriptor per image (or per crop with --fusion per-crop) "
                    "and write them with their image ids and model config to an HDF5 store. "
                    "A killed run started again with the same arguments resumes where it stopped.",
        epilog="example: panoplace extract runs/world/day/equirect --projection equirect --crops 4 "
               "--checkpoint runs/model.pt --out runs/day.h5",
    )
    p.add_argument("source", type=existing_path("image source", "no such file or folder: {path}"), help="a folder of images, a .txt list of image paths, or a dataset CSV")
    p.add_argument("--out", "-o", required=True,
                   help="descriptor store to write (.h5; a folder of shards with --engine ray)")
    dg = p.add_argument_group("descriptor")
    dg.add_argument("--descriptor", choices=("place", "pixels"), default="place",
                    help="place: a model's place descriptors (default; the model options below); pixels: "
                         "patch-normalised grey thumbnails of each crop (SeqSLAM's descriptor, no model, CPU), "
                         "compared by mean absolute difference by evaluate and localize (no index)")
    dg.add_argument("--pixel-size", default=None, metavar="WxH",
                    help="--descriptor pixels: thumbnail size per crop (default 64x32, classic SeqSLAM); "
                         "crops are cut at this size")
    dg.add_argument("--pixel-patch", type=int, default=None, metavar="N",
                    help="--descriptor pixels: normalise every NxN patch to zero mean, unit std (default 8)")
    add_model_args(p)
    add_preset_arg(p, "a model built without --checkpoint (GeM/avg/max; NetVLAD needs `panoplace cluster`)")
    add_panorama_args(p)
    p.add_argument("--batch-size", type=positive_int, default=8, help="images per batch (default 8)")
    p.add_argument("--workers", type=non_negative_int, default=None,
                   help="DataLoader decoding workers (default: none on 1-2 cores, else up to 4)")
    p.add_argument("--device", default="auto", type=device, help="auto (GPU when present), cpu or cuda")
    p.add_argument("--runtime", choices=("torch", "onnxruntime"), default="torch",
                   help="run the model in torch (default) or run an ONNX file of `panoplace export` given as "
                        "--checkpoint with ONNX Runtime on the CPU (needs the [onnx] extra)")
    p.add_argument("--on-error", choices=("stop", "skip"), default="stop",
                   help="on an unreadable image: stop (default) or skip it and list it at the end")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--append", action="store_true",
                   help="--out is an existing store of the same model: extract only the images it does not "
                        "hold yet and add them at its end (a map that grows)")
    p.add_argument("--half", action="store_true", help="store the descriptors as float16 (half the size)")
    add_overwrite_arg(p, "a finished store at --out and start over from a partial run (--out.part) made with "
                         "other options")
    g = p.add_argument_group("distributed (the ray extra: pip install 'panoplace[ray]')")
    g.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this process (default); ray: an actor pool on Ray that writes --out as a "
                        "folder of shards + manifest.json (re-runs skip finished shards)")
    g.add_argument("--address", default=None,
                   help="Ray cluster address HOST:PORT or auto (default: local mode on this machine's cores)")
    g.add_argument("--shard-size", type=positive_int, default=None,
                   help=f"--engine ray: images per shard (default {DEFAULT_SHARD_SIZE})")
    g.add_argument("--actors", type=positive_int, default=None,
                   help="--engine ray: actors (default: the cluster's CPUs, or its GPUs)")
    p.set_defaults(func=run)


def _output(args: argparse.Namespace) -> Output:
    if args.engine == "ray":  # a folder of shards: resumable until its manifest is written
        return Output(args.out, "--out", folder=True, marker="manifest.json")
    return Output(args.out, "--out", existing="update" if args.append else "refuse",
                  hint="pass --overwrite to replace it, or --append to add new images to it")


def check_options(args: argparse.Namespace) -> None:
    """Refuse options that would change nothing for this run (before any output is claimed)."""
    refuse_unless(args.engine == "ray", args, ["address", "actors", "shard_size"], "with --engine ray")
    if args.engine == "ray":
        refuse_unless(False, args, ["workers"], "to the local engine (Ray actors decode in their own process)")
    if args.runtime == "onnxruntime":
        refuse_unless(False, args, MODEL_DESTS + ["preset", "append", "half"],
                      "to models built by panoplace: an ONNX file fixes its model (--runtime onnxruntime)")


def run(args: argparse.Namespace) -> int:
    check_options(args)
    with claim([_output(args)], [args.source, args.checkpoint, args.calibration], overwrite=args.overwrite):
        return _run(args)


def _pixel_config(args: argparse.Namespace) -> PixelConfig:
    """The pixel descriptor of ``--descriptor pixels``; refuses model options (they would change nothing)."""
    given = [flag for flag, value in (("--checkpoint", args.checkpoint), ("--preset", args.preset),
                                      ("--runtime onnxruntime", args.runtime == "onnxruntime"),
                                      ("--engine ray", args.engine == "ray"), ("--crop-size", args.crop_size),
                                      ("--device", args.device != "auto"))
             if value]
    given += [f"--{k.replace('_', '-')}" for k in model_overrides(args)]
    if given:
        raise InputError(f"--descriptor pixels uses no model and runs here on the CPU at the pixel size: "
                         f"leave out {', '.join(given)}")
    d = PixelConfig()
    w, h = parse_pixel_size(args.pixel_size) if args.pixel_size else (d.width, d.height)
    return PixelConfig(w, h, args.pixel_patch if args.pixel_patch is not None else d.patch)


def _run(args: argparse.Namespace) -> int:
    if args.descriptor == "pixels":
        pixels = _pixel_config(args)
        px = extract(args.source, args.out, pixels=pixels, panorama_overrides=panorama_overrides(args),
                     batch_size=args.batch_size, num_workers=args.workers, on_error=args.on_error,
                     progress=not args.no_progress, append=args.append, half=args.half, overwrite=args.overwrite)
        log.info("%d images → %s (%s)", len(px.descriptors), args.out, pixels)
        for path, reason in px.skipped:
            log.warning("skipped %s: %s", path, reason)
        return 0
    if args.pixel_size is not None or args.pixel_patch is not None:
        raise InputError("--pixel-size and --pixel-patch are for --descriptor pixels")
    if args.runtime == "onnxruntime":
        if not args.checkpoint:
            raise InputError("--runtime onnxruntime runs an exported model: pass its .onnx file as --checkpoint")
        if args.engine == "ray":
            raise InputError("--runtime onnxruntime runs in this process: leave out --engine ray")
        onnx: Any = OnnxPlaceModel(args.checkpoint)
        onnx_result = extract(args.source, args.out, model=onnx, panorama=panorama_from_args(args, onnx.panorama),
                              batch_size=args.batch_size, num_workers=args.workers, device=args.device,
                              on_error=args.on_error, progress=not args.no_progress, overwrite=args.overwrite)
        log.info("%d images → %s (onnxruntime)", len(onnx_result.descriptors), args.out)
        return 0
    if args.engine == "ray":
        from panoplace.ray_engine import extract_ray  # optional extra (ray)

        if args.append or args.half:
            raise InputError("--append and --half are for the local engine (a Ray run resumes by shards)")
        root, paths = list_images(args.source)
        model, panorama = model_and_panorama_from_args(args)
        shard_size = DEFAULT_SHARD_SIZE if args.shard_size is None else args.shard_size
        res = extract_ray(root, paths, model, panorama, args.out, shard_size=shard_size,
                          batch_size=args.batch_size, actors=args.actors, device=args.device,
                          on_error=args.on_error, address=args.address, progress=not args.no_progress)
        log.info("%d images → %s (%d shards, %d computed now, %.1f images/s)", res.n_ok, args.out,
                 len(res.shards), res.computed, res.n_images / max(res.seconds, 1e-9))
        if res.skipped:
            log.warning("%d image(s) skipped", len(res.skipped))
        return 0
    result = extract(args.source, args.out, checkpoint=args.checkpoint, preset=args.preset,
                     panorama_overrides=panorama_overrides(args), model_overrides=model_overrides(args),
                     batch_size=args.batch_size, num_workers=args.workers, device=args.device,
                     on_error=args.on_error, progress=not args.no_progress, append=args.append,
                     half=args.half, overwrite=args.overwrite)
    n = len(result.descriptors)
    log.info("%d images → %s (%.1f images/s)", n, args.out, n / max(result.seconds, 1e-9))
    if result.skipped:
        log.warning("%d image(s) skipped:", len(result.skipped))
        for path, reason in result.skipped:
            log.warning("  %s: %s", path, reason)
    return 0
