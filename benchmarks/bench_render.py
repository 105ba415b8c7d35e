"""Rendering speed of the procedural panoramic world (``panoplace.synth``), one process.

Frames are taken along the route of a default town (seed 0, 400 m) with the traffic of one
traversal, cycling through the conditions day, dusk, night and fog. Each stage is timed per
frame and the table shows medians (and frames per minute = 60 / median):

- ``equirect``: :func:`render_frame` at ``--width`` x ``--height`` (target >= 200 frames/min
  at 1024x512, i.e. <= 0.3 s per frame, so that two processes can render side by side);
- ``annular``: equirect render + the annular remap through the default lens;
- ``+jpeg``: equirect + annular + JPEG encoding of both (what ``panoplace synth`` does per
  frame, minus the disk).

The process is pinned to one thread (OpenCV, BLAS) so the number is per core. Other
processes on the machine slow it down: the 1-minute load average is printed with the table.

Run: ``.venv/bin/python benchmarks/bench_render.py [--frames 24] [--width 1024 --height 512]``

Measured (2-core machine shared with other jobs, 1-minute load average about 4.2; 24 frames
along the route of seed 0, 400 m, with one drive's traffic):

    stage            size  wall s   cpu s  p90 cpu  frames/min  per core  target      load
    equirect     1024x512   0.087   0.085    0.096         692       709      ok  4.2-4.2
    annular        1024^2   0.108   0.106    0.117         555       564      ok  4.2-4.2
    +jpeg            both   0.112   0.111    0.121         534       542      ok  4.2-4.2

    equirect      512x256   0.034   0.023    0.027        1745      2589      ok  4.2-4.3
    annular         512^2   0.043   0.029    0.032        1401      2069      ok  4.2-4.3
    +jpeg            both   0.045   0.030    0.034        1329      1994      ok  4.2-4.3

The town itself takes 3-5 s to build (400 m; ~350 MB peak memory). End to end,
``panoplace synth OUT --frames 100 --traversals day,night --projections equirect,annular``
(200 frames, both projections, JPEGs on disk) took 51 s wall / 27 s CPU under a load of ~5.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from panoplace.synth import (  # noqa: E402
    AnnularLens,
    Condition,
    Traversal,
    WorldConfig,
    build_world,
    equirect_to_annular,
    place_dynamic_objects,
    render_frame,
    traversal_frames,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=24, help="frames timed per stage (default 24)")
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--height", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size-m", type=float, default=400.0)
    args = ap.parse_args()
    cv2.setNumThreads(1)

    t0 = time.perf_counter()
    world = build_world(WorldConfig(seed=args.seed, size_m=args.size_m))
    t_world = time.perf_counter() - t0
    trav = Traversal("bench", spacing_m=world.route.length_m / args.frames, seed=1)
    frames = traversal_frames(world, trav, args.frames)
    path = world.route.path(world.config.lane_offset_m)
    t0 = time.perf_counter()
    dyn = place_dynamic_objects(world, trav.seed, avoid_xy=path)
    t_dyn = time.perf_counter() - t0
    lens = AnnularLens.for_size(2 * args.height)
    conds = [Condition("day"), Condition("dusk"), Condition("night"), Condition("day", "fog")]
    # warm the per-world caches (shadow maps, lamp light, clouds) outside the timing
    for c in conds:
        render_frame(world, frames[0].pose, c, dyn, 64, 32, appearance_seed=1)
    wall: dict = {"equirect": [], "annular": [], "+jpeg": []}
    cpu: dict = {"equirect": [], "annular": [], "+jpeg": []}
    load0 = os.getloadavg()[0]
    for k, f in enumerate(frames):
        cond = conds[k % len(conds)]
        t0, c0 = time.perf_counter(), time.process_time()
        pano = render_frame(world, f.pose, cond, dyn, args.width, args.height, appearance_seed=1, noise_seed=k)
        t1, c1 = time.perf_counter(), time.process_time()
        ring = equirect_to_annular(pano, lens)
        t2, c2 = time.perf_counter(), time.process_time()
        cv2.imencode(".jpg", cv2.cvtColor(pano, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
        cv2.imencode(".jpg", cv2.cvtColor(ring, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
        t3, c3 = time.perf_counter(), time.process_time()
        for name, t, c in (("equirect", t1, c1), ("annular", t2, c2), ("+jpeg", t3, c3)):
            wall[name].append(t - t0)
            cpu[name].append(c - c0)
    load1 = os.getloadavg()[0]
    print(f"world: seed {args.seed}, {args.size_m:.0f} m, built in {t_world:.1f} s; "
          f"{world.static.counts()}; dynamic objects {dyn.counts()} in {t_dyn:.2f} s")
    print(f"{'stage':<10} {'size':>10} {'wall s':>7} {'cpu s':>7} {'p90 cpu':>8} {'frames/min':>11} "
          f"{'per core':>9} {'target':>7} {'load':>9}")
    sizes = {"equirect": f"{args.width}x{args.height}", "annular": f"{2 * args.height}^2", "+jpeg": "both"}
    for name in wall:
        med_w, med_c = statistics.median(wall[name]), statistics.median(cpu[name])
        p90 = float(np.percentile(cpu[name], 90))
        target = "ok" if 60.0 / med_c >= 200 else "MISS"
        print(f"{name:<10} {sizes[name]:>10} {med_w:>7.3f} {med_c:>7.3f} {p90:>8.3f} {60.0 / med_w:>11.0f} "
              f"{60.0 / med_c:>9.0f} {target:>7} {load0:>4.1f}-{load1:<4.1f}")
    print("frames/min = 60 / median wall time; per core = 60 / median CPU time of this single-threaded process")


if __name__ == "__main__":
    main()
