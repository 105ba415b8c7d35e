"""``panoplace export``: a place-model checkpoint -> an ONNX file (optionally int8)."""

from __future__ import annotations

import argparse
import logging

from panoplace.cli.common import add_overwrite_arg, add_panorama_args, panorama_from_args
from panoplace.errors import InputError
from panoplace.export import export_onnx
from panoplace.models.checkpoint import load_checkpoint
from panoplace.outputs import Output, claim

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
        epilog="example: panoplace export runs/model.pt --onnx runs/model.onnx --int8",
    )
    p.add_argument("checkpoint", help="place-model checkpoint (any format `extract --checkpoint` reads)")
    p.add_argument("--onnx", required=True, metavar="OUT", help="ONNX file to write")
    p.add_argument("--int8", action="store_true",
                   help="dynamic int8 quantisation of the weights (ONNX Runtime); a different model: its "
                        "descriptors do not mix with the float model's")
    add_panorama_args(p)
    add_overwrite_arg(p, "an ONNX file at --onnx")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with claim([Output(args.onnx, "--onnx")], [args.checkpoint, getattr(args, "calibration", None)], overwrite=args.overwrite):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    model, ckpt_panorama = load_checkpoint(args.checkpoint)
    panorama = panorama_from_args(args, ckpt_panorama)
    if str(args.onnx) == str(args.checkpoint):
        raise InputError("--onnx must not overwrite the checkpoint")
    out = export_onnx(model, args.onnx, panorama, int8=args.int8)
    log.info("wrote %s", out)
    return 0
