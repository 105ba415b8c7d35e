"""``panoplace export``: a place-model checkpoint -> an ONNX file (optionally int8, static or dynamic)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import List

from panoplace.cli.argtypes import existing_file
from panoplace.cli.common import add_overwrite_arg, add_panorama_args, panorama_from_args
from panoplace.errors import InputError
from panoplace.export import export_onnx
from panoplace.models.checkpoint import load_checkpoint
from panoplace.outputs import Output, claim
from panoplace.quantize import CALIBRATION_COUNT, MIN_COSINE, calibration_crops
from panoplace.runner import list_images

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a place model to ONNX (dynamic batch; optional int8 quantisation)",
        description="Write the whole descriptor computation of a checkpoint (normalisation, backbone, "
                    "aggregator, crop fusion, whitening) as one ONNX file that takes uint8 crops "
                    "(B, K, H, W, 3) with a dynamic batch B. K and the crop size are the checkpoint's "
                    "panorama config unless given here. `panoplace extract --runtime onnxruntime "
                    "--checkpoint OUT` runs it. Needs the [onnx] extra.",
        epilog="example: panoplace export runs/model.pt --onnx runs/model.onnx --int8 static "
               "--calibration-images map_images/",
    )
    p.add_argument("checkpoint", type=existing_file("checkpoint"), help="place-model checkpoint (any format `extract --checkpoint` reads)")
    p.add_argument("--onnx", required=True, metavar="OUT", help="ONNX file to write")
    p.add_argument("--int8", nargs="?", const="static", choices=("static", "dynamic"), default=None,
                   help="int8 quantisation (ONNX Runtime); a different model: its descriptors do not mix with "
                        "the float model's. static (the default of a bare --int8): int8 backbone calibrated on "
                        "--calibration-images, the one that makes a CNN faster; dynamic: only MatMul/Gemm "
                        "layers, no calibration")
    p.add_argument("--calibration-images", metavar="SOURCE",
                   help="static int8: your own images, as `extract` takes them (a folder, a .txt list or a "
                        "dataset CSV), made into crops by this export's panorama config")
    p.add_argument("--calibration-count", type=int, default=None, metavar="N",
                   help=f"static int8: images of --calibration-images to use, spread over it (default "
                        f"{CALIBRATION_COUNT}); every 4th is held out to check the cosine")
    p.add_argument("--min-cosine", type=float, default=None, metavar="C",
                   help=f"static int8: the least cosine of the int8 descriptors to the float ones on the "
                        f"held-out calibration images (default {MIN_COSINE}); the first backbone stages stay "
                        f"float until it is reached")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_panorama_args(p)
    add_overwrite_arg(p, "an ONNX file at --onnx")
    p.set_defaults(func=run)


def _calibration_options(args: argparse.Namespace) -> None:
    """One error line for static-int8 options that are missing or would change nothing."""
    static = args.int8 == "static"
    if static and not args.calibration_images:
        raise InputError("--int8 static needs --calibration-images (a folder, list or CSV of your own images); "
                         "--int8 dynamic needs none")
    for flag, value in (("--calibration-images", args.calibration_images),
                        ("--calibration-count", args.calibration_count), ("--min-cosine", args.min_cosine)):
        if value is not None and not static:
            raise InputError(f"{flag} is only used by --int8 static")
    if args.calibration_count is not None and args.calibration_count < 1:
        raise InputError(f"--calibration-count must be >= 1, got {args.calibration_count}")
    if args.min_cosine is not None and not -1.0 <= args.min_cosine <= 1.0:
        raise InputError(f"--min-cosine must be between -1 and 1, got {args.min_cosine}")


def _inputs(args: argparse.Namespace) -> List[Path]:
    """Every file this export reads (the output must be none of them)."""
    inputs = [Path(args.checkpoint)]
    if args.calibration_images:
        source = Path(args.calibration_images)
        inputs.append(source)
        try:
            root, paths = list_images(source)
            inputs += [root / p for p in paths]
        except InputError:
            pass  # calibration_crops says what is wrong with the source
    return inputs


def run(args: argparse.Namespace) -> int:
    _calibration_options(args)
    with claim([Output(args.onnx, "--onnx")], _inputs(args), overwrite=args.overwrite):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    model, ckpt_panorama = load_checkpoint(args.checkpoint)
    panorama = panorama_from_args(args, ckpt_panorama)
    calibration = None
    if args.int8 == "static":
        calibration = calibration_crops(args.calibration_images, panorama,
                                        args.calibration_count or CALIBRATION_COUNT, progress=not args.no_progress)
    out = export_onnx(model, args.onnx, panorama, int8=args.int8 or False, calibration=calibration,
                      min_cosine=MIN_COSINE if args.min_cosine is None else args.min_cosine)
    log.info("wrote %s", out)
    return 0
