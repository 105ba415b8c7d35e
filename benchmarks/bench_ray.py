"""In-process vs Ray (local mode) extraction of the same images, and a scaling estimate.

    .venv/bin/python benchmarks/bench_ray.py [--frames 96] [--repeats 3]

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

Measured (2026-11-30, this 2-core machine, load average ~18 from 8 other engineers' jobs:
absolute figures are depressed and noisy; the ratio is from one run):
(table filled in from the run below)
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
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--shard-size", type=int, default=16)
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
    n = len(paths)
    print(f"# {n} equirect frames 512x256 -> 4 crops of 160x160, NetVLAD K=16; load {os.getloadavg()[0]:.1f}")

    rows: List[Tuple[str, float, float]] = []
    t_local = timed(lambda: extract(root, paths, model, panorama, progress=False), args.repeats)
    peak_local = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    rows.append(("in-process (2 threads + prefetch)", n / t_local, peak_local))

    ray = connect(num_cpus=2)
    counter = [0]

    def ray_run(actors: int, cpus: int) -> None:
        counter[0] += 1
        extract_ray(root, paths, model, panorama, tmp / f"shards{counter[0]}", shard_size=args.shard_size,
                    actors=actors, cpus_per_actor=cpus, progress=False)

    for actors, cpus in ((2, 1), (1, 2)):
        ray_run(actors, cpus)  # warm-up: worker processes and imports
        with RssSampler() as rss:
            t = timed(lambda: ray_run(actors, cpus), args.repeats)
        rows.append((f"Ray local, {actors} actor(s) x {cpus} thread(s)", n / t, rss.peak))
    ref = load_descriptors(tmp / "shards1")
    print()
    print("| engine | images/s | vs in-process | peak RSS (all processes) |")
    print("|---|---|---|---|")
    for name, ips, peak in rows:
        print(f"| {name} | {ips:.1f} | {ips / rows[0][1]:.2f} | {peak / 2**20:.0f} MiB |")

    # per-shard costs for the scaling estimate
    t_actor = max(r[1] for r in rows[1:]) / 2  # one actor of the best local layout on 1 core
    d = 256
    s = args.shard_size * 64  # a realistic shard: 1024 images by default
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
