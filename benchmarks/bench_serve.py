"""`panoplace serve` under load: 1, 8 and 32 concurrent clients, batched vs one at a time.

Each client sends `POST /v1/localize` (a raw JPEG of the query drive) and waits for the
answer before sending the next; a round stops after --requests requests or --seconds seconds,
whichever comes first. Two servers run in their own processes on 127.0.0.1 (loopback only):
with micro-batching (--max-batch 16 --max-wait-ms 5, the defaults) and one image per model call
(--max-batch 1); they take turns, round by round, so that a change of the machine's load hits
both. Reported per level: images/s, p50 and p99 latency (medians over the rounds), errors (target
0) and the gain of batching (images/s batched / one at a time). Torch threads: the default.

Map: a procedural world (the demo's settings: 1024 x 512 equirect, 4 crops of 224 x 224,
NetVLAD K=32 from k-means, per-crop descriptors), 50 map frames, dusk queries.

Run: .venv/bin/python benchmarks/bench_serve.py [--requests 48] [--seconds 60] [--rounds 3] [--device cuda]

Measured 2026-12-01 on a lent machine (one NVIDIA H200, 16 CPU cores, idle: load 0.1 before,
4.9 after), `--device cuda --requests 256 --seconds 20 --rounds 3`:

    clients mode                n   img/s   p50 ms   p99 ms errors   gain
          1 one at a time     768   55.12       18       22      0
          1 batched (<=16)    768   59.45       17       21      0   1.08
          8 one at a time     768  149.21       52       79      0
          8 batched (<=16)    768  208.79       36       77      0   1.40
         32 one at a time     768  134.57      226      309      0
         32 batched (<=16)    768  224.13      132      236      0   1.67

Same machine, the model on its 16 CPU cores (`--device cpu --requests 64 --seconds 10`, load
4.9 before, 6.4 after):

    clients mode                n   img/s   p50 ms   p99 ms errors   gain
          1 one at a time     192   20.98       46       64      0
          1 batched (<=16)    192   23.14       41       69      0   1.10
          8 one at a time     192   26.31      300      339      0
          8 batched (<=16)    192   37.82      205      241      0   1.44
         32 one at a time     192   27.84     1050     1254      0
         32 batched (<=16)    192   47.69      635      761      0   1.71

Batching pays once there is more than one client (1.4-1.7x at 8 and 32 clients on the GPU
and on 16 cores); a lone client pays nothing since the batcher does not wait for requests that
are not in flight (before that change, the H200 run gave 0.76 at 1 client: the 5 ms wait).
The defaults (16, 5 ms) were chosen before measuring and hold on both of these.

On this project's 2-core machine, shared and overloaded (load average 26 before and after),
before the in-flight change, `--requests 32 --seconds 40 --rounds 3`, batching LOST:

    clients mode                n   img/s   p50 ms   p99 ms errors   gain
          1 one at a time      96    5.96      127      346      0
          1 batched (<=16)     96    6.59      144      479      0   1.11
          8 one at a time      96    7.62      809     2246      0
          8 batched (<=16)     96    3.00     2382     3005      0   0.39
         32 one at a time      96    6.48     3461     4885      0
         32 batched (<=16)     96    2.68     8448    11899      0   0.41

The server's own metrics showed why: the model took 0.35 s per image in batches of ~3-4 and
0.17 s one at a time (EfficientNet-Lite0's depthwise convolutions are memory bound, and two
OpenMP threads on two cores shared with ~25 other runnable processes stall; see docs/NOTES.md).
On a small, busy CPU use `--max-batch 1`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path
from typing import Dict, List, Sequence

import httpx
from serve_common import Server, bench_map, load_average

LEVELS = (1, 8, 32)


async def load(url: str, images: Sequence[bytes], clients: int, requests: int, seconds: float) -> Dict[str, float]:
    latencies: List[float] = []
    errors = 0
    sent = 0
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        async def worker(w: int) -> None:
            nonlocal errors, sent
            while sent < requests and time.monotonic() < deadline:
                body = images[(sent + w) % len(images)]
                sent += 1
                t0 = time.perf_counter()
                try:
                    r = await client.post("/v1/localize", content=body, headers={"Content-Type": "image/jpeg"})
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - t0)
                errors += not ok

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(clients)))
        wall = time.perf_counter() - t0
    lat = sorted(latencies)
    return {"n": len(lat), "ips": len(lat) / wall, "p50": 1e3 * statistics.median(lat),
            "p99": 1e3 * lat[min(len(lat) - 1, int(0.99 * len(lat)))], "errors": errors}


MODES = {"one at a time": ["--max-batch", "1"], "batched (<=16)": ["--max-batch", "16", "--max-wait-ms", "5"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=48, help="requests per level and round at most (default 48)")
    ap.add_argument("--seconds", type=float, default=60.0, help="seconds per level and round at most (default 60)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per level, modes alternating (default 3)")
    ap.add_argument("--work", type=Path, default=Path("runs/bench_serve"), help="where the map is built (reused)")
    ap.add_argument("--device", default="auto", help="the servers' --device (default auto)")
    args = ap.parse_args()
    map_dir, queries = bench_map(args.work)
    images = [p.read_bytes() for p in queries]
    print(f"before: {load_average()}")
    results: Dict[str, Dict[int, List[Dict[str, float]]]] = {m: {c: [] for c in LEVELS} for m in MODES}
    servers = {m: Server(map_dir, [*opts, "--device", args.device]) for m, opts in MODES.items()}  # both loaded; one works at a time
    try:
        for server in servers.values():
            asyncio.run(load(server.url, images, 4, 8, 60))  # warm-up
        for clients in LEVELS:
            for _ in range(args.rounds):  # alternate the modes so that a change of machine load hits both
                for mode, server in servers.items():
                    results[mode][clients].append(asyncio.run(load(server.url, images, clients, args.requests,
                                                                   args.seconds)))
    finally:
        for server in servers.values():
            server.stop()
    print(f"after:  {load_average()}")
    print(f"medians of {args.rounds} rounds; errors summed")
    print(f"{'clients':>7} {'mode':<16}{'n':>5}{'img/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'errors':>7}{'gain':>7}")
    for clients in LEVELS:
        ips = {m: statistics.median(r["ips"] for r in results[m][clients]) for m in MODES}
        for mode in MODES:
            rs = results[mode][clients]
            gain = f"{ips[mode] / ips['one at a time']:.2f}" if mode != "one at a time" else ""
            print(f"{clients:>7} {mode:<16}{sum(int(r['n']) for r in rs):>5}{ips[mode]:>8.2f}"
                  f"{statistics.median(r['p50'] for r in rs):>9.0f}{statistics.median(r['p99'] for r in rs):>9.0f}"
                  f"{sum(int(r['errors']) for r in rs):>7}{gain:>7}")


if __name__ == "__main__":
    main()
