"""Speed and memory of sequence matching; vectorised SeqSLAM against a Python-loop reference.

Part 1 — large case: a ``--size`` x ``--size`` (default 10,000 x 10,000) float32 difference
matrix (Gaussian noise with a planted route of speed 1.1, wrapping at the end), matched by each method in a *fresh
subprocess* so that memory figures do not mix. Memory is the process's peak resident set size
from ``resource.getrusage(RUSAGE_SELF).ru_maxrss``: "peak" is the whole process at the end,
"extra" is the peak minus the peak already reached after the input matrix was built (so it is
what matching needed on top of its ``size^2 * 4`` bytes input). ``scores`` are not kept
(``return_scores=False``). Seconds are the median of ``--repeats`` runs inside the subprocess.
The route check (fraction of queries within ±2 frames of the planted route) shows the answer
is sane at this size.

Part 2 — small case (``--small``, default 300 x 300, ds 10, 5 velocities): the vectorised
SeqSLAM (:func:`match_sequence`) against :func:`seqslam_reference`, which loops in Python over
queries, database frames, velocities and window steps. Median of ``--ref-repeats`` reference
runs and of 20 vectorised runs in this process; the speed-up is the ratio of the two medians
on that same case, and both must give the same best matches and scores (checked).

Run: ``.venv/bin/python benchmarks/bench_sequence_speed.py`` (a few minutes on 2 cores).

Measured (2 CPU cores shared with other work, so absolute seconds vary by ~2x between runs):

    Large case: 10000 x 10000 float32 difference matrix (381 MiB), ds=10, one fresh process per method
    method    mode          sec  peak RSS MiB  extra MiB  route ok
    seqslam   offline      19.0          1024        606     0.877
    seqslam   online       22.6          1024        606     0.919
    hmm       offline      33.8          1000        582     0.953
    hmm       online       35.5          1003        585     0.950

    Small case: 300 x 300, ds=10, 5 velocities 0.8-1.2: vectorised vs Python-loop reference
    mode      loop sec  vector sec  speed-up  same best  max |score diff|
    offline       4.98      0.0180      277x       True          3.58e-07
    online        5.12      0.0159      322x       True          4.77e-07
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

from panoplace.matching.sequence import match_sequence, seqslam_reference

METHODS = [("seqslam", "offline"), ("seqslam", "online"), ("hmm", "offline"), ("hmm", "online")]


def route_matrix(size: int, seed: int = 0, speed: float = 1.1):
    """``(size, size)`` float32 noise with a planted route of ``speed`` database frames per
    query frame (wrapping at the end); returns (D, route)."""
    rng = np.random.default_rng(seed)
    D = rng.standard_normal((size, size), dtype=np.float32)
    D += 3.0
    route = np.floor(np.arange(size) * speed + 0.5).astype(np.int64) % size
    rows = np.arange(size)
    D[rows, route] -= 2.5
    D[rows, (route + 1) % size] -= 1.25  # consecutive frames look alike
    D[rows, (route - 1) % size] -= 1.25
    return D, route


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def child(method: str, mode: str, size: int, ds: int, repeats: int) -> None:
    D, route = route_matrix(size)
    base = maxrss_mb()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        m = match_sequence(D, method, ds=ds, mode=mode, return_scores=False)
        times.append(time.perf_counter() - t0)
    peak = maxrss_mb()
    ok = float((np.abs(m.best - route) <= 2).mean())
    print(json.dumps({"sec": statistics.median(times), "peak_mb": peak, "extra_mb": peak - base,
                      "input_mb": D.nbytes / 2 ** 20, "route_ok": ok}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=10_000, help="large case: size x size (default 10000)")
    ap.add_argument("--ds", type=int, default=10, help="sequence length (default 10)")
    ap.add_argument("--repeats", type=int, default=1, help="runs per method on the large case (median)")
    ap.add_argument("--small", type=int, default=300, help="small case for the loop reference (default 300)")
    ap.add_argument("--ref-repeats", type=int, default=3, help="loop-reference runs (median; default 3)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        method, mode = args.child.split(":")
        child(method, mode, args.size, args.ds, args.repeats)
        return 0

    print(f"Large case: {args.size} x {args.size} float32 difference matrix "
          f"({args.size ** 2 * 4 / 2 ** 20:.0f} MiB), ds={args.ds}, one fresh process per method")
    print(f"{'method':<9s} {'mode':<8s} {'sec':>8s} {'peak RSS MiB':>13s} {'extra MiB':>10s} {'route ok':>9s}")
    for method, mode in METHODS:
        out = subprocess.run([sys.executable, __file__, "--child", f"{method}:{mode}", "--size", str(args.size),
                              "--ds", str(args.ds), "--repeats", str(args.repeats)],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{method:<9s} {mode:<8s} {r['sec']:8.1f} {r['peak_mb']:13.0f} {r['extra_mb']:10.0f} {r['route_ok']:9.3f}")

    n = args.small
    D, route = route_matrix(n, seed=1)
    print(f"\nSmall case: {n} x {n}, ds={args.ds}, 5 velocities 0.8-1.2: vectorised vs Python-loop reference")
    print(f"{'mode':<8s} {'loop sec':>9s} {'vector sec':>11s} {'speed-up':>9s} {'same best':>10s} {'max |score diff|':>17s}")
    for mode in ("offline", "online"):
        ref_times = []
        for _ in range(args.ref_repeats):
            t0 = time.perf_counter()
            ref = seqslam_reference(D, ds=args.ds, mode=mode)
            ref_times.append(time.perf_counter() - t0)
        vec_times = []
        for _ in range(20):
            t0 = time.perf_counter()
            vec = match_sequence(D, "seqslam", ds=args.ds, mode=mode)
            vec_times.append(time.perf_counter() - t0)
        same = bool(np.array_equal(ref.best, vec.best))
        diff = float(np.abs(ref.scores - vec.scores).max())
        t_ref, t_vec = statistics.median(ref_times), statistics.median(vec_times)
        print(f"{mode:<8s} {t_ref:9.2f} {t_vec:11.4f} {t_ref / t_vec:8.0f}x {str(same):>10s} {diff:17.2e}")
        if not same or diff > 1e-4:
            print("MISMATCH between the vectorised and the reference SeqSLAM", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
