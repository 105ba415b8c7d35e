"""Map building on Ray (the ``ray`` extra): extraction through Ray Data, sharded index builds.

Extraction (:func:`extract_ray`): the image list is cut into shards of ``shard_size`` images
(:func:`panoplace.shards.shard_ranges`). The shards still to do stream through Ray Data
(``map_batches`` over an actor pool): each actor receives the model once (through Ray's object
store) and, per shard, runs the ordinary in-process extraction (:func:`panoplace.extract.extract`,
decode → projection → crops → one model call per batch) and writes the shard as its own store,
atomically (:func:`panoplace.shards.write_shard`). The driver only collects small per-shard
records and writes ``manifest.json`` at the end. A re-run skips the finished shards; a worker
that dies mid-shard costs a retry of that shard (actors restart, their tasks are retried), not
the job.

Index (:func:`build_index_ray`): the index is trained once (IVF-PQ: on a sample drawn from every
shard), every shard is added to a copy of the trained, empty index in its own Ray task, and the
partial indexes are merged in shard order (``merge_from``), which gives the same index as adding
all the descriptors to the trained index in one process.

``ray`` is imported only here, and only when these functions run: the default install does not
need it. Local mode (no ``address``) starts Ray on this machine's cores, listening on 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import faiss
import numpy as np
import torch
from tqdm.auto import tqdm

from panoplace.config import PanoramaConfig, PipelineConfig
from panoplace.errors import ImageReadError, InputError, PanoplaceError
from panoplace.extract import calibrate_panorama, extract
from panoplace.index import (IndexParams, PlaceIndex, coarse_residual, fuse_crops, merge_indexes, new_index,
                             train_index)
from panoplace.models.build import weights_fingerprint
from panoplace.shards import (ShardInfo, ShardRun, finished_shard, ids_hash, shard_ranges, write_manifest,
                              write_shard)
from panoplace.store import check_finite, load_descriptors, sharded_store_files

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
DEFAULT_SHARD_SIZE = 256


class RayError(PanoplaceError):
    """Ray is missing, or the cluster cannot be reached."""


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise RayError("the Ray engine needs the ray extra: pip install 'panoplace[ray]'") from None
    return ray


def connect(address: Optional[str] = None, num_cpus: Optional[int] = None) -> Any:
    """Start (local mode: ``address`` None) or join (``address`` = ``HOST:PORT`` or ``auto``) a
    Ray cluster; returns the ``ray`` module. Local mode listens on 127.0.0.1 only.

    Raises:
        RayError: ray is not installed, or the cluster at ``address`` cannot be reached.
    """
    if not address:
        # local mode: Ray's servers and workers on the loopback address only (this setting makes
        # Ray take 127.0.0.1 as the node address; it must be set before ray is imported)
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    if address and address != "auto":
        _probe(address)
    ray = _import_ray()
    # Ray Data's own progress bars and execution logs would interleave with panoplace's bar
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    if ray.is_initialized():
        return ray
    kwargs: Dict[str, Any] = dict(include_dashboard=False, logging_level="ERROR", log_to_driver=False,
                                  configure_logging=False)
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=num_cpus or os.cpu_count() or 1, **kwargs)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
        where = f"at {address}" if address else "in local mode"
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RayError(f"cannot reach a Ray cluster {where}: {msg}") from None
    return ray


def _probe(address: str, timeout: float = 5.0) -> None:
    """Fail fast with one line when nothing listens at ``[ray://]HOST:PORT`` (``ray.init``
    itself retries for minutes)."""
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise RayError(f"Ray address must be HOST:PORT, ray://HOST:PORT or auto, got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise RayError(f"cannot reach a Ray cluster at {address}: {exc.strerror or exc}") from None


@dataclass
class RayExtractResult:
    """What :func:`extract_ray` wrote: the sharded store folder and its shards."""

    out: Path
    shards: List[ShardInfo]
    n_images: int
    skipped: List[Tuple[str, str]] = field(default_factory=list)  # (path, reason)
    computed: int = 0  # shards computed in this run (the others were finished before)
    seconds: float = 0.0

    @property
    def n_ok(self) -> int:
        return sum(s.n_ok for s in self.shards)


class _ShardWorker:
    """Ray Data actor: holds the model (loaded once per actor) and extracts whole shards."""

    def __init__(self, model: Any, root: str, paths: Any, panorama: Dict[str, Any], out: str,
                 run: Dict[str, Any], batch_size: int, device: str, threads: int) -> None:
        ray = _import_ray()
        if threads > 0:
            torch.set_num_threads(threads)
        self.model = ray.get(model) if isinstance(model, ray.ObjectRef) else model
        self.root = Path(root)
        self.paths = ray.get(paths) if isinstance(paths, ray.ObjectRef) else paths
        self.panorama = PanoramaConfig.from_dict(panorama)
        self.out = Path(out)
        self.run = ShardRun(**run)
        self.batch_size = batch_size
        self.device = device

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        names, n_ok, skipped = [], [], []
        for j, start, stop in zip(batch["shard"], batch["start"], batch["stop"]):
            j, start, stop = int(j), int(start), int(stop)
            res = extract(self.root, self.paths[start:stop], self.model, self.panorama, out=None,
                          batch_size=self.batch_size, num_workers=0, device=self.device, on_error="skip",
                          progress=False)
            info = write_shard(self.out, j, start, stop, res.descriptors, res.skipped, self.run)
            names.append(info.name)
            n_ok.append(info.n_ok)
            skipped.append(json.dumps([list(s) for s in info.skipped]))
        return {"shard": np.asarray(batch["shard"]), "start": np.asarray(batch["start"]),
                "stop": np.asarray(batch["stop"]), "name": np.asarray(names), "n_ok": np.asarray(n_ok),
                "skipped": np.asarray(skipped)}


def _actor_plan(ray: Any, actors: Optional[int], cpus_per_actor: int, device: str) -> Tuple[int, int, str]:
    """(actors, GPUs per actor, device) from the cluster's resources."""
    res = ray.cluster_resources()
    gpus = int(res.get("GPU", 0))
    if device == "auto":
        device = "cuda" if gpus else "cpu"
    if device.startswith("cuda"):
        if not gpus:
            raise InputError("--device cuda was asked for but the Ray cluster has no GPU")
        return (actors or gpus), 1, device
    cpus = int(res.get("CPU", 1))
    return (actors or max(1, cpus // cpus_per_actor)), 0, device


def extract_ray(
    root: PathLike,
    paths: Sequence[str],
    model: Any,
    panorama: PanoramaConfig,
    out: PathLike,
    shard_size: int = DEFAULT_SHARD_SIZE,
    batch_size: int = 8,
    actors: Optional[int] = None,
    cpus_per_actor: int = 1,
    device: str = "auto",
    on_error: str = "stop",
    address: Optional[str] = None,
    max_retries: int = 3,
    progress: bool = True,
) -> RayExtractResult:
    """Extract descriptors of ``root/paths`` on Ray into the sharded store folder ``out``.

    Args:
        model: a place model (:class:`panoplace.models.build.PlaceModel`); it travels to every
            actor once through Ray's object store.
        panorama: how files become crops (an annular geometry is calibrated here, once, when missing).
        out: the folder to write (shards + ``manifest.json``); a re-run skips finished shards.
        shard_size: images per shard (one unit of work, retry and output file).
        actors: actor count (default: the cluster's CPUs / ``cpus_per_actor``, or its GPUs).
        cpus_per_actor: CPU cores (torch threads) per actor.
        on_error: ``stop``: raise :class:`ImageReadError` naming the first bad image (finished
            shards stay for the re-run, no manifest); ``skip``: leave bad images out, listed in
            the manifest and the result.
        address: a Ray cluster (``HOST:PORT`` or ``auto``); None = local mode on this machine.
        max_retries: restarts of a dead actor and retries of its shard.

    Returns:
        :class:`RayExtractResult`; ``load_descriptors(out)`` reads the descriptors ``(N_ok, D)``
        or ``(N_ok, K, D)`` in image order, like the store of in-process extraction.
    """
    if on_error not in ("stop", "skip"):
        raise InputError(f"on_error must be 'stop' or 'skip', got {on_error!r}")
    if batch_size < 1 or cpus_per_actor < 1 or (actors is not None and actors < 1):
        raise InputError("batch size, actors and CPUs per actor must be >= 1")
    root, paths, out = Path(root), list(paths), Path(out)
    if not paths:
        raise InputError("no images to extract")
    if out.exists() and not out.is_dir():
        raise InputError(f"--engine ray writes a folder of shards; {out} is a file")
    t0 = time.perf_counter()
    panorama = calibrate_panorama(panorama, root, paths)
    config = PipelineConfig(panorama=panorama, model=model.config).to_dict()
    run = ShardRun(config=config, fingerprint=weights_fingerprint(model), ids_hash=ids_hash(root, paths),
                   shard_size=int(shard_size), n_images=len(paths))
    ranges = shard_ranges(len(paths), shard_size)
    out.mkdir(parents=True, exist_ok=True)
    done: Dict[int, ShardInfo] = {}
    for j, _ in enumerate(ranges):
        info = finished_shard(out, j, run)
        if info is not None:
            done[j] = info
    todo = [j for j in range(len(ranges)) if j not in done]
    log.info("%d shards of %d images: %d finished before, %d to compute", len(ranges), shard_size,
             len(done), len(todo))
    if todo:
        ray = connect(address)
        n_actors, gpus, dev = _actor_plan(ray, actors, cpus_per_actor, device)
        n_actors = min(n_actors, len(todo))
        model = model.cpu().eval()
        ds = ray.data.from_items([{"shard": j, "start": ranges[j][0], "stop": ranges[j][1]} for j in todo],
                                 override_num_blocks=len(todo))
        worker_args = (ray.put(model), str(root), ray.put(paths), panorama.to_dict(), str(out),
                       _run_dict(run), int(batch_size), dev, int(cpus_per_actor))
        with warnings.catch_warnings():  # actor restart options are only taken as ray_remote_args
            warnings.simplefilter("ignore")
            mapped = ds.map_batches(
                _ShardWorker, fn_constructor_args=worker_args, batch_size=1,
                compute=ray.data.ActorPoolStrategy(size=n_actors), num_cpus=cpus_per_actor, num_gpus=gpus,
                max_restarts=max_retries, max_task_retries=max_retries,
            )
        bar = tqdm(total=len(ranges), initial=len(done), unit="shard", desc="extract (ray)",
                   disable=not progress, dynamic_ncols=True)
        try:
            for row in _rows(mapped):
                j = int(row["shard"])
                done[j] = ShardInfo(str(row["name"]), int(row["start"]), int(row["stop"]), int(row["n_ok"]),
                                    [(str(a), str(b)) for a, b in json.loads(str(row["skipped"]))])
                bar.update(1)
        except Exception as exc:  # Ray wraps worker errors; keep the first line for the user
            if isinstance(exc, PanoplaceError):
                raise
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RayError(f"Ray extraction failed: {msg}") from exc
        finally:
            bar.close()
    shards = [done[j] for j in range(len(ranges))]
    skipped = [s for info in shards for s in info.skipped]
    if skipped and on_error == "stop":
        path, reason = skipped[0]
        raise ImageReadError(path, reason)
    write_manifest(out, run, shards)
    for path, reason in skipped:
        log.warning("skipped %s: %s", path, reason)
    return RayExtractResult(out, shards, len(paths), skipped, len(todo), time.perf_counter() - t0)


def _run_dict(run: ShardRun) -> Dict[str, Any]:
    return {"config": run.config, "fingerprint": run.fingerprint, "ids_hash": run.ids_hash,
            "shard_size": run.shard_size, "n_images": run.n_images}


def _rows(dataset: Any) -> Iterator[Dict[str, Any]]:
    yield from dataset.iter_rows()


# --- index over sharded stores -------------------------------------------------------------


def _add_shard(trained: np.ndarray, shard: str) -> np.ndarray:
    """Ray task: the trained empty index (serialised) with one shard's fused descriptors added."""
    index = faiss.deserialize_index(trained)
    x = np.ascontiguousarray(fuse_crops(load_descriptors(shard).descriptors))
    if len(x):
        index.add(x)
    return faiss.serialize_index(index)


def build_index_ray(
    store: PathLike,
    params: Optional[IndexParams] = None,
    train_samples: int = 100_000,
    seed: int = 0,
    address: Optional[str] = None,
    trained: Optional[Any] = None,
) -> PlaceIndex:
    """A :class:`PlaceIndex` over the sharded store folder ``store``, shards added in parallel
    Ray tasks and merged in shard order.

    The index is trained once (IVF-PQ) on at most ``train_samples`` descriptors drawn at random
    (``seed``) from the whole store, unless an already ``trained`` faiss index is given. The
    result equals adding every descriptor to that trained index in one process.
    """
    params = params or IndexParams()
    files = sharded_store_files(store)
    ds = load_descriptors(store)
    check_finite(ds, "database descriptors")
    if trained is None:
        x = fuse_crops(ds.descriptors)
        pick = np.random.default_rng(seed).permutation(len(x))[:train_samples]
        trained = new_index(x.shape[1], params)
        sample = np.ascontiguousarray(x[np.sort(pick)])
        train_index(trained, sample, params)
        residual = coarse_residual(trained, sample[:20000])
    else:
        residual = coarse_residual(trained, fuse_crops(ds.descriptors)[:20000])
    ray = connect(address)
    blob = ray.put(faiss.serialize_index(trained))
    task = ray.remote(num_cpus=1)(_add_shard)
    parts = ray.get([task.remote(blob, str(f)) for f in files])
    index = merge_indexes(faiss.deserialize_index(faiss.serialize_index(trained)),
                          [faiss.deserialize_index(p) for p in parts])
    crops = np.ascontiguousarray(ds.descriptors, np.float32) if ds.per_crop else None
    return PlaceIndex(index, ds.ids, ds.config, ds.fingerprint, ds.descriptors.shape[1:], params, crops,
                      train_residual=residual)
