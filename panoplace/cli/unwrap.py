"""``panoplace unwrap``: a folder of panoramic annular images → cylindrical panoramas."""

from __future__ import annotations

import argparse
import logging

from panoplace.cli.argtypes import (
    existing_dir,
    existing_file,
    finite_float,
    non_negative_float,
    positive_float,
    positive_int,
    refuse_unless,
)
from panoplace.errors import InputError

DEFAULT_CALIBRATE_FROM = 16
log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "unwrap",
        help="unwrap panoramic annular images into 360-degree cylindrical panoramas",
        description="Unwrap every panoramic annular image (jpg, jpeg, png, bmp; searched recursively) "
                    "of INPUT_DIR into a cylindrical panorama under OUTPUT_DIR with the same relative "
                    "name. Without --calibration the annulus (centre, radii) is found automatically "
                    "from the median of a few images. The geometry used is saved as "
                    "OUTPUT_DIR/annulus.json and reused when the command is run again; outputs that "
                    "exist are kept (resumable) unless --overwrite. Output column c is the azimuth "
                    "start_deg + c*360/width, counter-clockwise as the image is displayed (from the "
                    "right towards the top), or start_deg - c*360/width with --clockwise; row 0 is "
                    "the outer radius.",
        epilog="example: panoplace unwrap pal/raw pal/unwrapped --width 2048 --height 512 "
               "--save-calibration pal/annulus.json",
    )
    p.add_argument("input_dir", metavar="INPUT_DIR", type=existing_dir("input folder", "no such folder: {path}"), help="folder of panoramic annular images")
    p.add_argument("output_dir", metavar="OUTPUT_DIR", help="folder the panoramas are written to")
    g = p.add_argument_group("geometry")
    g.add_argument("--calibration", metavar="JSON", default=None, type=existing_file("calibration file"),
                   help="annulus geometry file (as written by --save-calibration); default: "
                        "OUTPUT_DIR/annulus.json of an earlier run, else auto-calibrate")
    g.add_argument("--calibrate-from", type=positive_int, default=None, metavar="N",
                   help="auto-calibrate from the median of up to N images spread over the folder (default 16)")
    g.add_argument("--save-calibration", metavar="JSON", default=None,
                   help="also write the geometry used to this file (for `extract --calibration`)")
    g.add_argument("--cx", type=finite_float, default=None, help="annulus centre x in pixels (overrides the calibration)")
    g.add_argument("--cy", type=finite_float, default=None, help="annulus centre y in pixels, y down (overrides)")
    g.add_argument("--r-inner", type=non_negative_float, default=None, help="inner radius in pixels (overrides)")
    g.add_argument("--r-outer", type=positive_float, default=None, help="outer radius in pixels (overrides)")
    g.add_argument("--start-deg", type=finite_float, default=None,
                   help="image direction of output column 0: degrees from the +x axis (right), "
                        "counter-clockwise as displayed, 90 = up (default 0)")
    g.add_argument("--clockwise", action=argparse.BooleanOptionalAction, default=None,
                   help="columns sweep clockwise as displayed, column c = start_deg - c*360/width "
                        "(default: counter-clockwise)")
    g.add_argument("--outer-top", action=argparse.BooleanOptionalAction, default=None,
                   help="output row 0 is the outer radius (default); --no-outer-top flips rows")
    o = p.add_argument_group("output")
    o.add_argument("--width", type=positive_int, default=2048, help="panorama width in pixels (default 2048)")
    o.add_argument("--height", type=positive_int, default=512, help="panorama height in pixels (default 512)")
    o.add_argument("--overwrite", action="store_true",
                   help="rewrite existing outputs and recalibrate (default: keep them and resume)")
    o.add_argument("--on-error", choices=("stop", "skip"), default="stop",
                   help="on an unreadable image: stop (default) or skip it and list it at the end")
    o.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from panoplace.outputs import Output, claim

    outs = [Output(args.output_dir, "OUTPUT_DIR", folder=True, existing="resume"),
            Output(args.save_calibration, "--save-calibration", existing="update") if args.save_calibration else None]
    with claim(outs, [args.input_dir, args.calibration], overwrite=args.overwrite):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from panoplace.panorama.annular import load_geometry
    from panoplace.panorama.folder import unwrap_folder

    refuse_unless(args.calibration is None, args, ["calibrate_from"],
                  "when the annulus is auto-calibrated (not with --calibration)")
    if args.r_inner is not None and args.r_outer is not None and args.r_inner >= args.r_outer:
        raise InputError(f"--r-inner ({args.r_inner:g}) must be smaller than --r-outer ({args.r_outer:g})")
    geometry = load_geometry(args.calibration) if args.calibration else None
    overrides = {"cx": args.cx, "cy": args.cy, "r_inner": args.r_inner, "r_outer": args.r_outer,
                 "start_deg": args.start_deg, "clockwise": args.clockwise, "outer_is_top": args.outer_top}
    result = unwrap_folder(args.input_dir, args.output_dir, geometry, out_width=args.width,
                           out_height=args.height, calibrate_from=DEFAULT_CALIBRATE_FROM if args.calibrate_from is None else args.calibrate_from, overrides=overrides,
                           save_calibration=args.save_calibration, overwrite=args.overwrite,
                           on_error=args.on_error, progress=not args.no_progress)
    g = result.geometry
    log.info("annulus centre (%.1f, %.1f), radii %.1f..%.1f px, start %.1f deg, %s (saved to %s)",
             g.cx, g.cy, g.r_inner, g.r_outer, g.start_deg,
             "clockwise" if g.clockwise else "counter-clockwise", result.calibration)
    log.info("%d panorama(s) written, %d already there, %d skipped → %s", len(result.written),
             len(result.existing), len(result.skipped), args.output_dir)
    if result.skipped:
        log.warning("%d image(s) skipped:", len(result.skipped))
        for path, reason in result.skipped:
            log.warning("  %s", reason if str(path) in reason else f"{path}: {reason}")
        if not result.written and not result.existing:
            log.error("none of the images could be unwrapped")
            return 1
    return 0
