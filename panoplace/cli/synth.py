"""``panoplace synth``: render a procedural town's route under several conditions."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import List, Optional

from panoplace.cli.argtypes import finite_float, int_between, non_negative_int, positive_float, positive_int, refuse_unless, seed
from panoplace.errors import InputError

log = logging.getLogger(__name__)


def _floats(text: Optional[str], what: str) -> Optional[List[float]]:
    if text is None:
        return None
    try:
        return [finite_float(v) for v in text.split(",") if v.strip() != ""]
    except argparse.ArgumentTypeError:
        raise InputError(f"{what} must be a comma-separated list of finite numbers, got {text!r}") from None


def _per_traversal(values: Optional[List[float]], n: int, what: str) -> Optional[List[float]]:
    if values is None:
        return None
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise InputError(f"{what}: give one value or one per traversal ({n}), got {len(values)}")
    return values


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``synth`` verb to the CLI."""
    p = subparsers.add_parser(
        "synth",
        help="render a procedural panoramic town (equirect + annular) with several traversals",
        description=(
            "Generate a town from a seed and drive its route loop several times under different "
            "conditions. Writes OUT_DIR/world.json and, per traversal, OUT_DIR/<name>/frames.csv "
            "plus images in OUT_DIR/<name>/equirect/, OUT_DIR/<name>/annular/ (with the lens "
            "geometry in annulus.json and lens.json) and OUT_DIR/<name>/dual-fisheye/ (with calibration.json). "
            "Same seed, same pixels; re-running resumes."
        ),
    )
    p.add_argument("out_dir", metavar="OUT_DIR", type=Path, help="output folder (created if missing)")
    p.add_argument("--seed", type=seed, default=0, help="world seed (default 0)")
    p.add_argument("--size-m", type=positive_float, default=400.0, help="side of the square town in metres (default 400)")
    p.add_argument("--route-length-m", type=positive_float, default=1000.0,
                   help="approximate length of the route loop in metres (default 1000)")
    p.add_argument("--frames", type=non_negative_int, default=100,
                   help="frames per traversal (default 100; 0 = one lap of the loop)")
    p.add_argument("--traversals", default="day,day2,dusk,night,fog",
                   help="comma-separated traversal names TIME[-WEATHER][N], TIME in day/dusk/night, WEATHER in "
                        "clear/overcast/fog, e.g. day,night-fog,dusk-overcast,day2 (default day,day2,dusk,night,fog); "
                        "the first one is the reference drive")
    p.add_argument("--projections", default="equirect",
                   help="comma-separated: equirect, annular, dual-fisheye (default equirect); frames.csv "
                        "points at the first")
    p.add_argument("--width", type=positive_int, default=1024, help="equirectangular width in pixels (default 1024)")
    p.add_argument("--height", type=positive_int, default=512, help="equirectangular height in pixels (default 512)")
    p.add_argument("--recording", action="store_true",
                   help="also write OUT_DIR/<name>/recording/drive.mp4 (the first projection's frames as a "
                        "video, 8 m/s) and drive.gpx (its GPS track), as `panoplace ingest` takes them")
    p.add_argument("--annular-size", type=positive_int, default=None,
                   help="side of the square annular images in pixels (default: 2 x height)")
    p.add_argument("--spacing-m", type=positive_float, default=5.0, help="metres of route between frames (default 5)")
    p.add_argument("--lateral-offset", default=None, metavar="M[,M...]",
                   help="metres right of the camera lane per traversal (one value for all, or one per traversal; "
                        "default: 0 for the first; the others within 1 m of it or in the next lane, "
                        "e.g. 3.2 for the second)")
    p.add_argument("--heading-offset", default=None, metavar="DEG[,DEG...]",
                   help="camera yaw in degrees per traversal (one value for all, or one per traversal; default 0)")
    p.add_argument("--quality", type=int_between(1, 100), default=92, help="JPEG quality 1-100 (default 92)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true",
                   help="render every frame again, also into traversals rendered with other parameters "
                        "(default: resume the frames on disk and refuse other parameters)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from panoplace.outputs import Output, claim

    with claim([Output(args.out_dir, "OUT_DIR", folder=True, existing="resume")], overwrite=args.overwrite):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from panoplace.synth import AnnularLens, WorldConfig, build_world, default_traversals, render_world
    from panoplace.synth.render import check_size
    from panoplace.synth.writer import check_projections

    names = [n.strip() for n in str(args.traversals).split(",") if n.strip()]
    projections = check_projections([p.strip() for p in str(args.projections).split(",") if p.strip()])
    check_size(args.width, args.height)
    refuse_unless("annular" in projections, args, ["annular_size"], "with --projections annular")
    lateral = _per_traversal(_floats(args.lateral_offset, "--lateral-offset"), len(names), "--lateral-offset")
    heading = _per_traversal(_floats(args.heading_offset, "--heading-offset"), len(names), "--heading-offset")
    traversals = default_traversals(
        None if args.frames == 0 else args.frames,
        names,
        spacing_m=args.spacing_m,
        seed=args.seed,
        lateral_offsets_m=lateral,
        heading_offsets_deg=heading,
    )
    lens = AnnularLens.for_size(args.annular_size or 2 * args.height) if "annular" in projections else None
    cfg = WorldConfig(seed=args.seed, size_m=args.size_m, route_length_m=args.route_length_m)
    log.info("building the town (seed %d, %.0f m)", cfg.seed, cfg.size_m)
    world = build_world(cfg)
    log.info("route loop %.0f m through %s", world.route.length_m,
             ", ".join(sorted({b.zone for b in world.blocks})))
    csvs = render_world(world, traversals, args.out_dir, projections, args.width, args.height,
                        lens=lens, quality=args.quality, progress=not args.no_progress, recording=args.recording,
                        overwrite=args.overwrite)
    for name, path in csvs.items():
        log.info("%s: %s", name, path)
    print(f"wrote {len(csvs)} traversals to {args.out_dir} ({', '.join(csvs)})")
    return 0
