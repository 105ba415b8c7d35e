"""``panoplace demo``: the whole pipeline on a procedural world made on the spot."""

from __future__ import annotations

import argparse

from panoplace.cli.argtypes import non_negative_int, positive_float, positive_int, seed
from panoplace.demo import QUERY_CONDITIONS, DemoConfig


def register(sub: argparse._SubParsersAction) -> None:
    d = DemoConfig()
    p = sub.add_parser(
        "demo",
        help="render a small procedural town, map one drive, localise the others, write a report",
        description="Build a seeded procedural town, drive its route as a day map and as query "
                    "drives under other conditions, initialise NetVLAD by k-means, extract "
                    "descriptors, match single frames and sequences, evaluate against GPS ground "
                    "truth and write a report folder (summary.json, HTML reports with PR curve, "
                    "trajectory map and match gallery). Needs no data and no downloads.",
        epilog="example: panoplace demo --out runs/demo --frames 50",
    )
    p.add_argument("--out", "-o", default="runs/demo", help="report folder (default runs/demo)")
    p.add_argument("--overwrite", action="store_true",
                   help="run again into a --out that holds a finished demo (default: refuse; an interrupted "
                        "demo resumes its rendering without it)")
    p.add_argument("--seed", type=seed, default=d.seed, help="world seed (default 0)")
    p.add_argument("--frames", type=positive_int, default=d.frames, help=f"frames per drive (default {d.frames})")
    p.add_argument("--spacing-m", type=positive_float, default=d.spacing_m, help="metres between frames (default 5)")
    p.add_argument("--conditions", default=",".join(QUERY_CONDITIONS),
                   help=f"query drives, comma-separated (default {','.join(QUERY_CONDITIONS)})")
    p.add_argument("--projection", choices=("equirect", "annular"), default=d.projection,
                   help="render equirectangular panoramas or panoramic annular images "
                        "(auto-calibrated and unwrapped) (default equirect)")
    p.add_argument("--radius", type=positive_float, default=d.radius,
                   help=f"ground-truth radius in metres (default {d.radius:g})")
    p.add_argument("--ds", type=positive_int, default=d.ds, help=f"sequence length in frames (default {d.ds})")
    p.add_argument("--num-clusters", type=positive_int, default=d.num_clusters, help="NetVLAD clusters (default 32)")
    p.add_argument("--workers", type=non_negative_int, default=d.workers, help="decoding workers (default: none on 1-2 cores, else up to 4)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from panoplace.outputs import Output, claim

    out = Output(args.out, "--out", folder=True, marker="summary.json",
                 hint="pass --overwrite to run the demo again there")
    with claim([out], overwrite=args.overwrite):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from panoplace.demo import run_demo

    conditions = tuple(c.strip() for c in args.conditions.split(",") if c.strip())
    cfg = DemoConfig(seed=args.seed, frames=args.frames, spacing_m=args.spacing_m, conditions=conditions,
                     projection=args.projection, radius=args.radius, ds=args.ds,
                     num_clusters=args.num_clusters, workers=args.workers)
    result = run_demo(args.out, cfg, progress=not args.no_progress)
    print(result.table)
    print(f"\nreport: {result.out_dir / 'index.html'}   summary: {result.out_dir / 'summary.json'}   "
          f"({result.summary['seconds']['total']:.0f} s)")
    return 0
