"""Sharded descriptor stores: a folder of ordinary stores plus a manifest.

Distributed extraction (:mod:`panoplace.ray_engine`) splits the image list into fixed ranges
(shard ``j`` holds images ``[j*S, (j+1)*S)``) and writes each shard as its own HDF5 descriptor
store (:func:`panoplace.store.save_descriptors`, atomic). The folder then looks like::

    OUT/manifest.json          what the shards are (written atomically, last)
    OUT/shard-00000.h5         an ordinary descriptor store (+ attrs ``shard``, ``start``,
    OUT/shard-00001.h5         ``stop``, ``ids_hash``, ``skipped``)
    ...

A shard file is complete by construction (atomic rename), so a re-run skips every shard whose
file exists and whose attributes match the run (:func:`finished_shard`); the manifest is written
when all shards are there. :func:`panoplace.store.load_descriptors` reads such a folder as one
store (the shards concatenated in order), so a sharded store reads everywhere a single-file
store does.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import h5py
import numpy as np

from panoplace.atomic import atomic_path, write_text_atomic
from panoplace.errors import InputError
from panoplace.store import MANIFEST, DescriptorSet, h5_writer

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
SHARDS_FORMAT_VERSION = 1


def shard_name(j: int) -> str:
    """File name of shard ``j``."""
    return f"shard-{j:05d}.h5"


def shard_ranges(n_images: int, shard_size: int) -> List[Tuple[int, int]]:
    """``[start, stop)`` image ranges of the shards of ``n_images`` images.

    >>> shard_ranges(5, 2)
    [(0, 2), (2, 4), (4, 5)]
    """
    if shard_size < 1:
        raise InputError(f"shard size must be >= 1, got {shard_size}")
    return [(s, min(s + shard_size, n_images)) for s in range(0, n_images, shard_size)]


def ids_hash(root: PathLike, paths: Sequence[str]) -> str:
    """Short hash of an image list (its root and relative paths, in order)."""
    h = hashlib.sha256(str(Path(root).resolve()).encode())
    for p in paths:
        h.update(b"\0" + p.encode())
    return h.hexdigest()[:16]


@dataclass
class ShardInfo:
    """One finished shard: its file, image range, kept images and skipped ones."""

    name: str
    start: int
    stop: int
    n_ok: int
    skipped: List[Tuple[str, str]] = field(default_factory=list)  # (path, reason)


@dataclass
class ShardRun:
    """What makes shards of one run interchangeable: a re-run with another config, model,
    image list or shard size does not reuse them."""

    config: Dict[str, Any]
    fingerprint: str
    ids_hash: str
    shard_size: int
    n_images: int

    def key(self) -> str:
        """One string that identifies the run (stored in every shard)."""
        return json.dumps(asdict(self), sort_keys=True)


def write_shard(folder: PathLike, j: int, start: int, stop: int, ds: DescriptorSet,
                skipped: Sequence[Tuple[str, str]], run: ShardRun) -> ShardInfo:
    """Write shard ``j`` (images ``[start, stop)``; ``ds`` holds the ones that succeeded)
    atomically; returns its :class:`ShardInfo`."""
    path = Path(folder) / shard_name(j)
    with atomic_path(path) as tmp:
        with h5_writer(tmp) as f:
            f.create_dataset("descriptors", data=np.asarray(ds.descriptors, np.float32))
            f.create_dataset("ids", data=np.array(ds.ids, dtype=object), dtype=h5py.string_dtype("utf-8"))
            f.attrs["config"] = json.dumps(ds.config, sort_keys=True)
            f.attrs["fingerprint"] = ds.fingerprint
            f.attrs["shard"] = j
            f.attrs["start"] = start
            f.attrs["stop"] = stop
            f.attrs["run"] = run.key()
            f.attrs["skipped"] = json.dumps([list(s) for s in skipped])
    return ShardInfo(path.name, start, stop, len(ds), [(str(a), str(b)) for a, b in skipped])


def finished_shard(folder: PathLike, j: int, run: ShardRun) -> Optional[ShardInfo]:
    """The :class:`ShardInfo` of shard ``j`` when its file exists and belongs to ``run``; None
    when it must be (re)computed (missing, unreadable or from another run)."""
    path = Path(folder) / shard_name(j)
    if not path.is_file():
        return None
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("run") != run.key():
                log.warning("shard %s is from another run; recomputing it", path)
                return None
            return ShardInfo(path.name, int(f.attrs["start"]), int(f.attrs["stop"]), int(f["ids"].shape[0]),
                             [(str(a), str(b)) for a, b in json.loads(f.attrs["skipped"])])
    except (OSError, KeyError, ValueError):
        log.warning("shard %s is unreadable; recomputing it", path)
        return None


def write_manifest(folder: PathLike, run: ShardRun, shards: Sequence[ShardInfo]) -> Path:
    """Write ``folder/manifest.json`` atomically (after every shard is finished)."""
    shards = sorted(shards, key=lambda s: s.start)
    data = {
        "format": "panoplace-shards",
        "format_version": SHARDS_FORMAT_VERSION,
        "config": run.config,
        "fingerprint": run.fingerprint,
        "ids_hash": run.ids_hash,
        "shard_size": run.shard_size,
        "n_images": run.n_images,
        "shards": [{"name": s.name, "start": s.start, "stop": s.stop, "n_ok": s.n_ok,
                    "skipped": [list(x) for x in s.skipped]} for s in shards],
    }
    return write_text_atomic(Path(folder) / MANIFEST, json.dumps(data, indent=1))
