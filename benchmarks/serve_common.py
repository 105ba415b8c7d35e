"""Shared by the service benchmarks: a benchmark map, a `panoplace serve` subprocess on
127.0.0.1, its resident memory, and the machine's load. Loopback only."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import httpx

REPO = Path(__file__).resolve().parents[1]
PANOPLACE = [sys.executable, "-m", "panoplace"]


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def _env() -> dict:
    """This environment with the repository first on the Python path."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}


def _run(*args: object) -> None:
    subprocess.run([*PANOPLACE, *map(str, args)], check=True, cwd=REPO, env=_env())


def bench_map(work: Path, frames: int = 50, width: int = 1024, height: int = 512) -> Tuple[Path, List[Path]]:
    """A map of a procedural world's day drive with the demo's settings (NetVLAD K=32 from
    k-means, 4 crops of 224 x 224, per-crop descriptors) and the dusk drive's images as queries.
    Built once into ``work`` (reused when it is there)."""
    world = work / "world"
    if not (world / "dusk" / "frames.csv").exists():
        _run("synth", world, "--frames", frames, "--traversals", "day,dusk", "--width", width, "--height", height,
             "--no-progress")
    model = work / "model.pt"
    if not model.exists():
        _run("cluster", world / "day" / "frames.csv", "--projection", "equirect", "--crops", 4, "--elevation", 40, -25,
             "--num-clusters", 32, "--out", model, "--no-progress")
    out = work / "map"
    if not (out / "map.json").exists():
        _run("map", "build", world / "day" / "frames.csv", "--checkpoint", model, "--per-crop", "--out", out,
             "--no-progress")
    return out, sorted((world / "dusk" / "equirect").glob("*.jpg"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`panoplace serve MAP` in a subprocess on 127.0.0.1 (stopped on exit)."""

    def __init__(self, map_dir: Path, options: Sequence[str] = (), env: Optional[dict] = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [*PANOPLACE, "-q", "serve", str(map_dir), "--host", "127.0.0.1", "--port", str(self.port), *options],
            cwd=REPO, env={**_env(), **(env or {})})
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the server did not start")
            time.sleep(0.5)

    def rss_mib(self) -> float:
        """Resident memory of the server process (MiB, from /proc)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
        return float("nan")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
