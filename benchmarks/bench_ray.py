"""In-process vs Ray (local mode) extraction of the same images, and a scaling estimate.

    .venv/bin/python benchmarks/bench_ray.py [--frames 96] [--times 8] [--repeats 3] [--shard-size 64]

What it measures (one run, same images, same model, same machine):
- throughput of in-process extraction (``extract``, this process, 2 torch threads + the
  prefetch thread) and of ``extract_ray`` in local mode (2 actors x 1 thread, and 1 actor x 2
  threads), median of ``--repeats`` runs each; the Ray time counts everything the user waits for
  (actor start, model transfer, shard writes, manifest) but not ``ray.init`` (paid once per
  session / cluster);
- peak resident memory: in-process = this process's peak RSS; Ray = the peak of the summed RSS
  of the driver and every Ray process (raylet, GCS, workers), sampled every 50 ms;
- the per-shard costs the scaling estimate needs: per-actor throughput, the time to write one
  shard, and the time to merge one shard's partial index into the final one (IVF-PQ).

Scaling estimate (on paper, from those figures): N actors extract ``N * T_actor`` images/s as
long as the storage and the single driver keep up. The driver only receives a small record per
shard; the index merge is the one serial step: merging one shard of S images costs ``t_merge``
seconds, so a single merger handles ``S / t_merge`` images/s and becomes the bottleneck at
``N* = S / (t_merge * T_actor)`` actors (reading the shards back for the index build is
parallel, one Ray task per shard).

Measured 2026-12-01 03:53-04:02 UTC, this 2-core machine, the benchmark at normal priority
while five other engineers' jobs ran at nice 19 (load average 14-18; first and last lines are
``uptime``), ``--frames 96 --times 8 --repeats 3 --shard-size 64``, one run:

     03:53:10 up  5:44,  0 user,  load average: 13.65, 11.70, 9.73
    # 96 equirect frames 512x256 -> 4 crops of 160x160, NetVLAD K=16; small job 96 images, large job 768 (the frames 8 times); shard 64; load 15.0

    | engine | s (96 img) | s (768 img) | img/s end to end (768) | vs in-process | steady img/s | vs in-process | fixed cost s | job size for <= 15 % overhead | peak RSS (all processes) |
    |---|---|---|---|---|---|---|---|---|---|
    | in-process (2 threads + prefetch) | 2.8 | 23.0 | 33.4 | 1.00 | 33.3 | 1.00 | 0.0 | - | 1157 MiB |
    | Ray local, 2 actor(s) x 1 thread(s) | 9.7 | 21.7 | 35.3 | 1.06 | 55.9 | 1.68 | 8.0 | 482 images | 7522 MiB |
    | Ray local, 1 actor(s) x 2 thread(s) | 7.8 | 29.4 | 26.1 | 0.78 | 31.2 | 0.94 | 4.8 | 1942 images | 6508 MiB |


    | per-shard cost (shard = 1024 images, 256-D) | seconds |
    |---|---|
    | write one shard (HDF5, atomic) | 0.0047 |
    | merge one shard's IVF-PQ partial index (incl. deserialising it) | 0.0004 |

    per-actor throughput T_actor ~ 28.0 images/s (1 core); shard write adds 0.005 ms/image inside the actor
    single merger: 2910554 images/s -> bottleneck at N* = S / (t_merge * T_actor) ~ 104074 actors
    | actors N | extraction images/s (N x T_actor) | merger busy |
    |---|---|---|
    | 1 | 28 | 0 % |
    | 8 | 224 | 0 % |
    | 64 | 1790 | 0 % |
    | 512 | 14319 | 0 % |
    | 104073 | 2910539 | 100 % |
    | 416292 | 11642156 | 100 % |
     03:58:37 up  5:50,  0 user,  load average: 17.71, 16.29, 12.37

Reading it. "steady" is the marginal rate between the small and the large job (the fixed cost
cancels); "fixed cost" is what a run pays before that (ray.init excluded: actor processes
importing torch, the model through the object store, Ray Data planning, the manifest).

- Target "Ray overhead at most 15 %": met in steady state by both layouts (2 actors x 1 thread
  1.68x the in-process rate, 1 actor x 2 threads 0.94x, i.e. 6 % overhead), and end to end once
  a job is past ~500 images (2 x 1) or ~2,000 images (1 x 2): below that the 5-8 s fixed cost
  dominates (the 96-image job is 3x slower on Ray). 2 x 1 beats in-process here because two
  one-thread processes stall less than one process's two OpenMP threads on cores shared with
  other work (docs/NOTES.md); on idle cores expect them closer.
- Peak memory: in-process 1.16 GiB; Ray 6.5-7.5 GiB summed over the driver, raylet, GCS,
  dashboard/Data helpers and workers (resident sets summed, so shared library pages count once
  per process: an upper bound).
- An earlier run in this session with Ray's default worker priority (nice 15, see the note in
  main()) at load ~8 gave Ray 0.26-0.65x in steady state: on a shared machine the workers'
  priority, not Ray, decided the figure.

Scaling estimate: one actor on one core extracts T_actor ~ 28 images/s here (steady, 2 x 1
layout / 2); a shard of 1,024 images costs 5 ms to write (inside its actor: 0.005 ms per image)
and 0.4 ms to merge into the final IVF-PQ index on the driver. The single merger keeps up with
~2.9 M images/s, i.e. it becomes the bottleneck only near N* ~ 100,000 actors; well before that,
the shared storage that every actor reads images from and writes shards to (at ~28 images/s
per actor, 1,000 actors read ~28k panoramas/s, several GB/s of JPEG) and Ray's per-block
scheduling on the driver (not measured here) are the limits to watch.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, List, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from panoplace.cli import main as cli  # noqa: E402
from panoplace.extract import extract, list_images, load_model  # noqa: E402
from panoplace.index import IndexParams, merge_indexes, new_index, train_index  # noqa: E402
from panoplace.ray_engine import connect, extract_ray  # noqa: E402
from panoplace.shards import ShardRun, write_shard  # noqa: E402
from panoplace.store import DescriptorSet, load_descriptors  # noqa: E402


class RssSampler:
    """Peak of the summed RSS of this process and every Ray process, sampled in a thread."""

    def __init__(self) -> None:
        import psutil

        self.psutil = psutil
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _total(self) -> int:
        me = self.psutil.Process()
        total = me.memory_info().rss
        for p in self.psutil.process_iter(["name", "cmdline"]):
            try:
                cmd = " ".join(p.info["cmdline"] or [])
                if p.pid != me.pid and ("ray::" in cmd or "raylet" in cmd or "gcs_server" in cmd
                                        or "ray/_private" in cmd or "default_worker.py" in cmd):
                    total += p.memory_info().rss
            except (self.psutil.NoSuchProcess, self.psutil.AccessDenied):
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._total())
            time.sleep(0.05)

    def __enter__(self) -> "RssSampler":
        self._t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._t.join()


def timed(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=96)
    ap.add_argument("--times", type=int, default=8, help="the large job: the frames listed this many times")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--shard-size", type=int, default=64)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    tmp = Path(tempfile.mkdtemp(prefix="bench_ray_"))
    frames = tmp / "world/day/frames.csv"
    cli(["-q", "synth", str(tmp / "world"), "--frames", str(args.frames), "--traversals", "day", "--width", "512",
         "--height", "256", "--no-progress"])
    cli(["-q", "cluster", str(frames), "--projection", "equirect", "--crops", "4", "--crop-size", "160", "160",
         "--num-clusters", "16", "--out", str(tmp / "model.pt"), "--no-progress"])
    root, paths = list_images(frames)
    model, panorama = load_model(tmp / "model.pt")
    small, large = paths, paths * args.times
    n1, n2 = len(small), len(large)
    print(f"# {n1} equirect frames 512x256 -> 4 crops of 160x160, NetVLAD K=16; small job {n1} images, "
          f"large job {n2} (the frames {args.times} times); shard {args.shard_size}; load {os.getloadavg()[0]:.1f}")

    # (name, t_small, t_large, peak RSS)
    rows: List[Tuple[str, float, float, float]] = []
    t1 = timed(lambda: extract(root, small, model, panorama, progress=False), args.repeats)
    t2 = timed(lambda: extract(root, large, model, panorama, progress=False), args.repeats)
    peak_local = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    rows.append(("in-process (2 threads + prefetch)", t1, t2, peak_local))

    # Ray starts its workers at nice 15 (RAY_worker_niceness) to keep the raylet responsive; on a
    # machine shared with other jobs that alone makes the actors several times slower than this
    # process. The comparison is of the engines, so the workers run at this process's priority.
    os.environ.setdefault("RAY_worker_niceness", "0")
    ray = connect(num_cpus=2)
    counter = [0]

    def ray_run(job: List[str], actors: int, cpus: int) -> None:
        counter[0] += 1
        extract_ray(root, job, model, panorama, tmp / f"shards{counter[0]}", shard_size=args.shard_size,
                    actors=actors, cpus_per_actor=cpus, progress=False)

    for actors, cpus in ((2, 1), (1, 2)):
        ray_run(small, actors, cpus)  # warm-up: worker processes and imports
        with RssSampler() as rss:
            r1 = timed(lambda: ray_run(small, actors, cpus), args.repeats)
            r2 = timed(lambda: ray_run(large, actors, cpus), args.repeats)
        rows.append((f"Ray local, {actors} actor(s) x {cpus} thread(s)", r1, r2, rss.peak))
    ref = load_descriptors(tmp / "shards1")
    print()
    print(f"| engine | s ({n1} img) | s ({n2} img) | img/s end to end ({n2}) | vs in-process | "
          "steady img/s | vs in-process | fixed cost s | job size for <= 15 % overhead | peak RSS (all processes) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    base_rate = (n2 - n1) / (rows[0][2] - rows[0][1])
    steady_rates = []
    for name, a, b, peak in rows:
        rate = (n2 - n1) / (b - a)  # marginal images/s: the fixed cost cancels
        fixed = max(0.0, a - n1 / rate)
        steady_rates.append(rate)
        # end-to-end time fixed + n / rate vs in-process n / base_rate (its own fixed cost ignored)
        overhead_ok = "-" if name.startswith("in-process") else (
            "never (steady overhead > 15 %)" if rate * 1.15 <= base_rate
            else f"{fixed / (1.15 / base_rate - 1 / rate):.0f} images")
        print(f"| {name} | {a:.1f} | {b:.1f} | {n2 / b:.1f} | {(n2 / b) / (n2 / rows[0][2]):.2f} | {rate:.1f} | "
              f"{rate / base_rate:.2f} | {fixed:.1f} | {overhead_ok} | {peak / 2**20:.0f} MiB |")
    print()

    # per-shard costs for the scaling estimate
    t_actor = steady_rates[1] / 2  # one actor of the 2 x 1 layout on 1 core (steady state)
    d = 256
    s = 1024  # a realistic shard of a large map
    rng = np.random.default_rng(0)
    x = rng.standard_normal((s, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    part = DescriptorSet(x, [f"i{i}" for i in range(s)], ref.config, ref.fingerprint)
    run = ShardRun(config=ref.config, fingerprint=ref.fingerprint, ids_hash="h", shard_size=s, n_images=s)
    t_write = timed(lambda: write_shard(tmp / "w", 0, 0, s, part, [], run), 5)
    params = IndexParams(kind="ivfpq", nlist=64, m=32, nbits=8)
    trained = new_index(d, params)
    train_index(trained, np.ascontiguousarray(np.tile(x, (3, 1)) + 0.01 * rng.standard_normal((3 * s, d)).astype(np.float32)), params)
    import faiss

    blob = faiss.serialize_index(trained)
    filled = faiss.deserialize_index(blob)
    filled.add(x)
    filled_blob = faiss.serialize_index(filled)

    def merge_one() -> None:
        merge_indexes(faiss.deserialize_index(blob), [faiss.deserialize_index(filled_blob)])

    t_merge = timed(merge_one, 5)
    n_star = s / (t_merge * t_actor)
    print()
    print(f"| per-shard cost (shard = {s} images, 256-D) | seconds |")
    print("|---|---|")
    print(f"| write one shard (HDF5, atomic) | {t_write:.4f} |")
    print(f"| merge one shard's IVF-PQ partial index (incl. deserialising it) | {t_merge:.4f} |")
    print()
    print(f"per-actor throughput T_actor ~ {t_actor:.1f} images/s (1 core);"
          f" shard write adds {t_write / s * 1e3:.3f} ms/image inside the actor")
    print(f"single merger: {s / t_merge:.0f} images/s -> bottleneck at N* = S / (t_merge * T_actor) ~ {n_star:.0f} actors")
    print("| actors N | extraction images/s (N x T_actor) | merger busy |")
    print("|---|---|---|")
    for n_act in (1, 8, 64, 512, int(n_star), 4 * int(n_star)):
        rate = n_act * t_actor
        print(f"| {n_act} | {rate:.0f} | {min(1.0, rate * t_merge / s) * 100:.0f} % |")
    ray.shutdown()


if __name__ == "__main__":
    main()
