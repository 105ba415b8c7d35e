"""This machine's float32 matrix-multiply peak vs the throughput of the backbones.

Peak: ``torch.matmul`` of two ``--n`` x ``--n`` float32 matrices, ``2 n^3`` FLOPs per product.
Backbones (``build_backbone``, eval mode, ``torch.inference_mode``) on a ``--batch`` x 3 x 224
x 224 input: EfficientNet-Lite0 at the default cut (block 7, what the pipeline runs) and its
whole trunk (``head``), ResNet-18 to layer4; the first and last also run on NCHW activations
(their ``body`` called directly) to show what :class:`Backbone`'s channels-last switch gains. FLOPs per forward are counted with
``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix products, 2 FLOPs per
multiply-add; element-wise ops are not counted). Every round times the matmul and each backbone
once, so all see the same machine load; the table gives medians over ``--rounds``.

Run: ``.venv/bin/python benchmarks/bench_backbone_peak.py`` (about a minute on 2 busy cores).

Measured with the defaults on 2 idle cores, 2026-11-24, after the stride-2 padding change of
the Lite blocks (the previous table, taken at load average ~8, had 71.7 GFLOP/s peak and
12.5 images/s for the default cut, 5.5 % of peak):

    2 threads; matmul 2048x2048 float32; backbones batch 16 at 224x224; median of 7 interleaved rounds
                                       GFLOP/call   ms/call  images/s   GFLOP/s  of peak
    matmul                                  17.18      45.7               376.3   100.0%
    efficientnet_lite0 (cut 7)               5.10      79.5     201.4      64.2    17.1%
    efficientnet_lite0 (head)               12.58     109.7     145.9     114.6    30.5%
    resnet18 (layer4)                       58.03     208.2      76.9     278.8    74.1%
    efficientnet_lite0 (cut 7, NCHW)         5.10     172.6      92.7      29.5     7.9%
    resnet18 (layer4, NCHW)                 58.03     245.9      65.1     236.0    62.7%

Reading: ResNet-18 runs at ~75 % of the matmul peak; EfficientNet-Lite0 at the default cut at
~17 %: it does 11x fewer FLOPs per image but most of its time goes to depthwise convolutions
and element-wise passes over wide (6x expanded) activations, which are bound by memory
bandwidth, not FLOPs. Hence only ~2.6x more images/s than ResNet-18. panoplace's Lite blocks
fold BatchNorm into the convolutions in eval mode and pad the narrow block input instead of the
expansion at stride 2, and :class:`Backbone` feeds channels-last activations on the CPU: 2.2x
for EfficientNet-Lite0, 1.2x for ResNet-18 against NCHW in this run.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import torch
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from panoplace.models.backbones import build_backbone  # noqa: E402


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of ``fn`` as counted by FlopCounterMode."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2048, help="matrix size for the matmul peak (default 2048)")
    ap.add_argument("--batch", type=int, default=16, help="backbone batch size (default 16)")
    ap.add_argument("--size", type=int, default=224, help="input height = width (default 224)")
    ap.add_argument("--rounds", type=int, default=7, help="timed rounds (median; default 7)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    a, b = torch.randn(args.n, args.n), torch.randn(args.n, args.n)
    x = torch.randn(args.batch, 3, args.size, args.size)
    nets: Dict[str, torch.nn.Module] = {
        "efficientnet_lite0 (cut 7)": build_backbone("efficientnet_lite0", weights="imagenet").eval(),
        "efficientnet_lite0 (head)": build_backbone("efficientnet_lite0", cut="head", weights="imagenet").eval(),
        "resnet18 (layer4)": build_backbone("resnet18", weights="none").eval(),
    }
    jobs: Dict[str, Tuple[Callable[[], object], int]] = {"matmul": (lambda: torch.matmul(a, b), 2 * args.n ** 3)}
    with torch.inference_mode():
        for name, net in nets.items():
            fn = functools.partial(net, x)
            jobs[name] = (fn, count_flops(fn))
        # the same layers on NCHW activations (Backbone.forward switches to channels-last on the CPU)
        for name in ("efficientnet_lite0 (cut 7)", "resnet18 (layer4)"):
            body = nets[name].body
            jobs[name.replace(")", ", NCHW)")] = ((lambda body=body: body(x)), jobs[name][1])
        times: Dict[str, List[float]] = {name: [] for name in jobs}
        for fn, _ in jobs.values():  # warm-up
            fn()
        for _ in range(args.rounds):
            for name, (fn, _) in jobs.items():
                times[name].append(timed(fn))

    med = {name: statistics.median(v) for name, v in times.items()}
    peak = jobs["matmul"][1] / med["matmul"] / 1e9
    print(f"{args.threads} threads; matmul {args.n}x{args.n} float32; backbones batch {args.batch} at "
          f"{args.size}x{args.size}; median of {args.rounds} interleaved rounds")
    print(f"{'':34} {'GFLOP/call':>10} {'ms/call':>9} {'images/s':>9} {'GFLOP/s':>9} {'of peak':>8}")
    for name, (_, flops) in jobs.items():
        gflops = flops / med[name] / 1e9
        ips = "" if name == "matmul" else f"{args.batch / med[name]:9.1f}"
        print(f"{name:34} {flops / 1e9:10.2f} {1000 * med[name]:9.1f} {ips:>9} {gflops:9.1f} {gflops / peak:8.1%}")


if __name__ == "__main__":
    main()
