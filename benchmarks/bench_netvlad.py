"""NetVLAD: panoplace's vectorised layer vs the per-cluster loop of pytorch-NetVlad.

Three implementations of the same descriptor (checked equal to 1e-5 before timing):

- ``loop``: pytorch-NetVlad's formulation, one ``(N, 1, C, L)`` residual tensor per cluster in a
  Python loop (``tests/models/netvlad_reference.py``).
- ``broadcast``: the naive vectorisation, all residuals at once as an ``(N, K, C, L)`` tensor
  (as in NetVLAD-pytorch by lyakaap).
- ``panoplace``: ``a @ x^T - sum(a) * c`` with one batched matrix product
  (:class:`panoplace.models.netvlad.NetVLAD`).

Time: median of ``--repeats`` runs in this process, the three implementations interleaved, for
inference (forward under ``no_grad``) and training (forward + backward). Memory: the increase of
the peak resident set size (Linux ``VmHWM``, reset through ``/proc/self/clear_refs`` just before
the call; ``ru_maxrss`` where that is unavailable) during one call in a fresh subprocess whose
inputs already exist -- tracemalloc does not see torch's allocations; plus the analytic size of
the largest intermediate tensor. Other processes share the machine: compare the ratios of one
run.

Run: ``.venv/bin/python benchmarks/bench_netvlad.py`` (about 1.5 minutes on 2 busy cores).

Measured with the defaults (2 CPU cores shared with other jobs, load average ~5.7):

    NetVLAD, float32, 1 threads; times: median of 5 runs (training 3), wall ms and the speed-up over loop in wall and in process CPU time; memory: peak RSS increase of one call in a fresh process; 'largest': analytic largest intermediate
           N,C,H,W,K       impl   fwd ms x wall  x cpu fwd+bwd ms x wall  x cpu  fwd MiB fwd+bwd MiB largest MiB
       16,320,7,7,64       loop     25.8    1.0    1.0       87.6    1.0    1.0     13.2       137.4         1.2
       16,320,7,7,64  broadcast    126.9    0.2    0.2      143.9    0.6    0.6    130.9       205.6        61.2
       16,320,7,7,64  panoplace      8.2    3.1    3.5       10.2    8.6    8.2     11.6        26.7         1.2
     16,320,14,14,64       loop     99.3    1.0    1.0      690.9    1.0    1.0     22.4       505.7         3.8
     16,320,14,14,64  broadcast    485.6    0.2    0.2     1235.1    0.6    0.6    504.1       740.9       245.0
     16,320,14,14,64  panoplace     10.6    9.3    7.0       67.1   10.3   11.0     14.4        44.1         3.8
      16,80,14,14,32       loop     16.0    1.0    1.0       95.8    1.0    1.0     10.5        73.6         1.0
      16,80,14,14,32  broadcast     38.7    0.4    0.4      110.1    0.9    0.9     69.4       101.1        30.6
      16,80,14,14,32  panoplace      6.5    2.4    3.0       14.2    6.8    6.5      8.4        15.0         1.0

Reading: the vectorised layer is 2-9x faster than the loop in inference and 7-10x in training,
and in training it keeps 5-11x less memory (the loop's autograd graph holds one (N, 1, C, L)
residual per cluster, i.e. the whole (N, K, C, L) tensor in pieces); in inference both stay
near the size of the input. The naive broadcast is slower than the loop on the CPU and needs
the (N, K, C, L) tensor (245 MiB at 16x320x14x14, K=64). The measured MiB include allocator and
oneDNN overhead, hence a floor of ~8 MiB above the analytic sizes.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "models"))

from netvlad_reference import netvlad_loop  # noqa: E402

from panoplace.models.netvlad import NetVLAD  # noqa: E402

IMPLS = ("loop", "broadcast", "panoplace")
Shape = Tuple[int, int, int, int, int]  # N, C, H, W, K


def netvlad_broadcast(x: torch.Tensor, layer: NetVLAD) -> torch.Tensor:
    """All residuals at once: ``(N, K, C, L)``."""
    n, c = x.shape[:2]
    x = F.normalize(x, p=2, dim=1)
    a = F.softmax(layer.conv(x).flatten(2), dim=1)  # (N, K, L)
    residual = x.flatten(2).unsqueeze(1) - layer.centroids.unsqueeze(0).unsqueeze(-1)  # (N, K, C, L)
    vlad = (residual * a.unsqueeze(2)).sum(dim=-1)
    vlad = F.normalize(vlad, p=2, dim=2)
    return F.normalize(vlad.reshape(n, -1), p=2, dim=1)


def run_fn(impl: str, layer: NetVLAD) -> Callable[[torch.Tensor], torch.Tensor]:
    if impl == "loop":
        return lambda x: netvlad_loop(x, layer.conv, layer.centroids)
    if impl == "broadcast":
        return lambda x: netvlad_broadcast(x, layer)
    return layer


def make(shape: Shape, train: bool) -> Tuple[NetVLAD, torch.Tensor]:
    n, c, h, w, k = shape
    torch.manual_seed(0)
    layer = NetVLAD(num_clusters=k, dim=c)
    x = torch.randn(n, c, h, w, requires_grad=train)
    return layer, x


def call(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, train: bool) -> None:
    if train:
        fn(x).square().sum().backward()
    else:
        with torch.no_grad():
            fn(x)


def largest_intermediate_mb(impl: str, shape: Shape) -> float:
    """Analytic float32 size of the largest tensor each implementation allocates."""
    n, c, h, w, k = shape
    hw = h * w
    sizes = {"loop": max(n * c * hw, n * k * hw, n * k * c),
             "broadcast": n * k * c * hw,
             "panoplace": max(n * c * hw, n * k * hw, n * k * c)}
    return sizes[impl] * 4 / 2 ** 20


def _peak_kib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1])
    except OSError:
        pass
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS (Linux >= 4.0)
    except OSError:
        pass


def child(impl: str, shape: Shape, train: bool) -> None:
    """Print the peak-RSS increase (MiB) of one call (run in a fresh process)."""
    torch.set_num_threads(1)
    layer, x = make(shape, train)
    fn = run_fn(impl, layer)
    call(fn, x[:1].detach().requires_grad_(train), train)  # load kernels on a tiny input
    _reset_peak()
    before = _peak_kib()
    call(fn, x, train)
    print(json.dumps({"mib": (_peak_kib() - before) / 1024.0}))


def peak_mib(impl: str, shape: Shape, train: bool) -> float:
    cmd = [sys.executable, __file__, "--child", impl, "--shape", *map(str, shape)] + (["--train"] if train else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["mib"]


def timings(shape: Shape, train: bool, repeats: int) -> Dict[str, Tuple[float, float]]:
    """Median wall and CPU milliseconds per call of each implementation (interleaved runs)."""
    layer, x = make(shape, train)
    fns = {impl: run_fn(impl, layer) for impl in IMPLS}
    with torch.no_grad():
        ref = fns["loop"](x)
        for impl in IMPLS[1:]:
            if not torch.allclose(fns[impl](x), ref, atol=1e-5):
                raise SystemExit(f"{impl} differs from the loop reference for shape {shape}")
    wall: Dict[str, List[float]] = {impl: [] for impl in IMPLS}
    cpu: Dict[str, List[float]] = {impl: [] for impl in IMPLS}
    for impl in IMPLS:  # warm-up
        call(fns[impl], x, train)
    for _ in range(repeats):
        for impl in IMPLS:
            t, c = time.perf_counter(), time.process_time()
            call(fns[impl], x, train)
            wall[impl].append(time.perf_counter() - t)
            cpu[impl].append(time.process_time() - c)
            x.grad = None
    return {impl: (1000 * statistics.median(wall[impl]), 1000 * statistics.median(cpu[impl])) for impl in IMPLS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", nargs="+", default=["16,320,7,7,64", "16,320,14,14,64", "16,80,14,14,32"],
                    help="N,C,H,W,K shapes (default: 16 crops, 320 channels (EfficientNet-Lite0 block 15) "
                         "at 7x7 and 14x14 with K=64, and the panoplace default: block 7 at 224x224, "
                         "80 channels, 14x14, K=32)")
    ap.add_argument("--repeats", type=int, default=5, help="timed inference runs per implementation (median)")
    ap.add_argument("--train-repeats", type=int, default=3, help="timed training runs (median)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: on a shared machine, spinning OpenMP threads blur "
                         "the CPU-time ratios)")
    ap.add_argument("--no-memory", action="store_true", help="skip the subprocess memory measurement")
    ap.add_argument("--child", choices=IMPLS, help=argparse.SUPPRESS)
    ap.add_argument("--shape", type=int, nargs=5, help=argparse.SUPPRESS)
    ap.add_argument("--train", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, tuple(args.shape), args.train)
        return
    torch.set_num_threads(args.threads)
    timings((4, 64, 7, 7, 8), True, 2)  # first-call allocations and kernel loading
    print(f"NetVLAD, float32, {args.threads} threads; times: median of {args.repeats} runs (training "
          f"{args.train_repeats}), wall ms and the speed-up over loop in wall and in process CPU time; memory: "
          f"peak RSS increase of one call in a fresh process; 'largest': analytic largest intermediate")
    print(f"{'N,C,H,W,K':>16} {'impl':>10} {'fwd ms':>8} {'x wall':>6} {'x cpu':>6} {'fwd+bwd ms':>10} "
          f"{'x wall':>6} {'x cpu':>6} {'fwd MiB':>8} {'fwd+bwd MiB':>11} {'largest MiB':>11}")
    for spec in args.shapes:
        shape = tuple(int(v) for v in spec.split(","))
        if len(shape) != 5:
            raise SystemExit(f"shape {spec!r} is not N,C,H,W,K")
        inf = timings(shape, False, args.repeats)
        tr = timings(shape, True, args.train_repeats)
        for impl in IMPLS:
            if args.no_memory:
                mem = f"{'-':>8} {'-':>11}"
            else:
                mem = f"{peak_mib(impl, shape, False):8.1f} {peak_mib(impl, shape, True):11.1f}"
            print(f"{spec:>16} {impl:>10} {inf[impl][0]:8.1f} {inf['loop'][0] / inf[impl][0]:6.1f} "
                  f"{inf['loop'][1] / inf[impl][1]:6.1f} {tr[impl][0]:10.1f} {tr['loop'][0] / tr[impl][0]:6.1f} "
                  f"{tr['loop'][1] / tr[impl][1]:6.1f} {mem} {largest_intermediate_mb(impl, shape):11.1f}")


if __name__ == "__main__":
    main()
