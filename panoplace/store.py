"""Descriptor store: float32 descriptors + image ids + the config and weights that made them.

On disk an HDF5 file holds

- ``descriptors``: float32 ``(N, D)``, or ``(N, K, D)`` for per-crop descriptors (float16 when
  written with ``half=True``; always read back as float32);
- ``ids``: utf-8 strings, one image id per row;
- attributes ``config`` (JSON of :meth:`PipelineConfig.to_dict`), ``fingerprint`` (hash of
  the model weights) and ``format_version``.

A finished store is written atomically (temp file + ``os.replace``). Resumable extraction
uses a *partial* store beside the target (``<name>.part``) that grows one chunk at a time;
see :class:`PartialStore`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Sequence, Union

import h5py
import numpy as np

from panoplace.atomic import atomic_path
from panoplace.crop_fusion import fuse_crops
from panoplace.errors import DescriptorMismatchError, InputError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
PathLike = Union[str, Path]
MANIFEST = "manifest.json"  # marks a folder as a sharded store (see panoplace.shards)


@dataclass
class DescriptorSet:
    """Descriptors of a set of images.

    descriptors: float32 ``(N, D)`` or ``(N, K, D)`` (per-crop).
    ids: N image ids (paths relative to the image root, or dataset image names).
    config: the pipeline config (``PipelineConfig.to_dict()``) the descriptors come from.
    fingerprint: short hash of the model weights.
    """

    descriptors: np.ndarray
    ids: List[str]
    config: Dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""

    def __post_init__(self) -> None:
        self.descriptors = np.asarray(self.descriptors, dtype=np.float32)
        self.ids = [str(i) for i in self.ids]
        if self.descriptors.ndim not in (2, 3):
            raise InputError(
                f"descriptors must have shape (N, D) or (N, K, D), got {self.descriptors.shape}"
            )
        if len(self.ids) != self.descriptors.shape[0]:
            raise InputError(
                f"{len(self.ids)} ids for {self.descriptors.shape[0]} descriptors"
            )

    def __len__(self) -> int:
        return int(self.descriptors.shape[0])

    @property
    def dim(self) -> int:
        """Descriptor dimension D (per crop for per-crop descriptors)."""
        return int(self.descriptors.shape[-1])

    @property
    def per_crop(self) -> bool:
        return self.descriptors.ndim == 3

    def fused(self) -> np.ndarray:
        """One descriptor per image, ``(N, D)``: per-crop descriptors are summed over crops and
        L2-normalised (the ``add`` view used for candidate search); others are returned as is."""
        return fuse_crops(self.descriptors)

    def subset(self, index: Sequence[int]) -> "DescriptorSet":
        idx = np.asarray(index, dtype=np.int64)
        return DescriptorSet(self.descriptors[idx], [self.ids[i] for i in idx], self.config, self.fingerprint)


def save_descriptors(ds: DescriptorSet, path: PathLike, half: bool = False) -> Path:
    """Write ``ds`` to an HDF5 file atomically (temp file in the same folder + rename).

    half: store the descriptors as float16 (half the size on disk; they are read back as
        float32, each value within float16's relative precision, ~5e-4).
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("descriptors", data=ds.descriptors, dtype=np.float16 if half else np.float32)
            f.create_dataset("ids", data=np.array(ds.ids, dtype=object), dtype=h5py.string_dtype("utf-8"))
            f.attrs["config"] = json.dumps(ds.config, sort_keys=True)
            f.attrs["fingerprint"] = ds.fingerprint
            f.attrs["format_version"] = FORMAT_VERSION
    return path


def load_descriptors(path: PathLike) -> DescriptorSet:
    """Read a descriptor store written by :func:`save_descriptors` (or ``panoplace extract``),
    or a sharded store folder (``panoplace extract --engine ray``, see :mod:`panoplace.shards`)
    as one set: its shards concatenated in image order."""
    path = Path(path)
    if is_sharded_store(path):
        return _load_sharded(path)
    if not path.is_file():
        raise InputError(f"descriptor file not found: {path}")
    try:
        with h5py.File(path, "r") as f:
            if "descriptors" not in f or "ids" not in f:
                raise InputError(f"{path} is not a panoplace descriptor store (no 'descriptors'/'ids')")
            desc = f["descriptors"][...]
            ids = [s.decode("utf-8") if isinstance(s, bytes) else str(s) for s in f["ids"][...]]
            config = json.loads(f.attrs.get("config", "{}"))
            fingerprint = str(f.attrs.get("fingerprint", ""))
    except OSError as exc:
        raise InputError(f"cannot read descriptor file {path}: {exc}") from None
    return DescriptorSet(desc, ids, config, fingerprint)


def is_sharded_store(path: PathLike) -> bool:
    """True for a folder holding a sharded descriptor store (its ``manifest.json``)."""
    path = Path(path)
    return path.is_dir() and (path / MANIFEST).is_file()


def is_descriptor_store(path: PathLike) -> bool:
    """True for an HDF5 store file or a sharded store folder (not a folder of images)."""
    path = Path(path)
    return is_sharded_store(path) or (path.is_file() and path.suffix.lower() in (".h5", ".hdf5"))


def sharded_store_files(folder: PathLike) -> List[Path]:
    """The shard files of the sharded store ``folder``, in image order (from its manifest)."""
    folder = Path(folder)
    manifest = folder / MANIFEST
    try:
        names = [str(s["name"]) for s in json.loads(manifest.read_text())["shards"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"cannot read the shard manifest {manifest}: {exc}") from None
    if not names:
        raise InputError(f"{manifest} lists no shards")
    for name in names:
        if Path(name).name != name:
            raise InputError(f"{manifest}: shard name {name!r} is not a plain file name")
    return [folder / n for n in names]


def _load_sharded(folder: Path) -> DescriptorSet:
    parts = [load_descriptors(f) for f in sharded_store_files(folder)]
    first = parts[0]
    for f, part in zip(sharded_store_files(folder), parts):
        if part.fingerprint != first.fingerprint or part.config != first.config:
            raise InputError(f"shard {f} does not belong with the others in {folder} (other model or config)")
    shapes = {p.descriptors.shape[1:] for p in parts if len(p)}
    if len(shapes) > 1:
        raise InputError(f"the shards of {folder} have different descriptor shapes {sorted(shapes)}")
    nonempty = [p.descriptors for p in parts if len(p)] or [first.descriptors]
    return DescriptorSet(np.concatenate(nonempty), [i for p in parts for i in p.ids], first.config,
                         first.fingerprint)


def append_descriptors(old: DescriptorSet, new: DescriptorSet) -> DescriptorSet:
    """``old`` followed by the rows of ``new`` whose ids ``old`` does not hold (a map that grows).

    Raises:
        DescriptorMismatchError: the two sets come from different models, configs or shapes.
    """
    if len(old) and len(new):
        check_compatible(new, old)
        if old.descriptors.shape[1:] != new.descriptors.shape[1:]:
            raise DescriptorMismatchError(
                f"cannot append descriptors of shape {new.descriptors.shape[1:]} to {old.descriptors.shape[1:]}")
    known = set(old.ids)
    keep = [i for i, name in enumerate(new.ids) if name not in known]
    if not len(old):
        return new.subset(keep)
    return DescriptorSet(np.concatenate([old.descriptors, new.descriptors[keep]]),
                         old.ids + [new.ids[i] for i in keep], old.config, old.fingerprint)


def check_finite(ds: DescriptorSet, what: str = "descriptors") -> None:
    """Raise :class:`DescriptorMismatchError` for an empty set or NaN/inf values."""
    if len(ds) == 0:
        raise DescriptorMismatchError(f"{what}: the set is empty")
    bad = ~np.isfinite(ds.descriptors.reshape(len(ds), -1)).all(axis=1)
    if bad.any():
        first = ds.ids[int(np.flatnonzero(bad)[0])]
        raise DescriptorMismatchError(
            f"{what}: {int(bad.sum())} descriptor(s) contain NaN/inf values (first: {first})"
        )


def check_compatible(query: DescriptorSet, database: DescriptorSet) -> None:
    """Refuse to compare descriptors that do not come from the same model and config.

    Raises :class:`DescriptorMismatchError` when either set is empty or holds NaN/inf, when the
    dimensions differ, or when weights fingerprints or model configs differ.
    """
    check_finite(query, "query descriptors")
    check_finite(database, "database descriptors")
    if query.dim != database.dim:
        raise DescriptorMismatchError(
            f"query descriptors have dimension {query.dim} but database descriptors {database.dim}"
        )
    if query.fingerprint and database.fingerprint and query.fingerprint != database.fingerprint:
        raise DescriptorMismatchError(
            f"query and database descriptors come from different model weights "
            f"(fingerprints {query.fingerprint} vs {database.fingerprint})"
        )
    qm, dm = query.config.get("model"), database.config.get("model")
    if qm is not None and dm is not None and qm != dm:
        diff = sorted(k for k in set(qm) | set(dm) if qm.get(k) != dm.get(k))
        raise DescriptorMismatchError(
            f"query and database descriptors come from different model configs (differ in {diff})"
        )


class PartialStore:
    """An HDF5 store that grows chunk by chunk, for resumable extraction.

    The file at ``path`` holds resizable ``descriptors`` and ``ids`` datasets plus a ``done``
    count; each :meth:`append` is flushed before it returns, so a killed run loses at most the
    chunk in flight. A store whose ``config``/``fingerprint``/``ids_hash`` attributes differ from
    the current run is discarded and started anew.
    """

    def __init__(self, path: PathLike, config: Dict[str, Any], fingerprint: str, ids_hash: str,
                 shape: tuple) -> None:
        self.path = Path(path)
        self.config_json = json.dumps(config, sort_keys=True)
        self.fingerprint = fingerprint
        self.ids_hash = ids_hash
        self.shape = tuple(int(s) for s in shape)  # per-image descriptor shape: (D,) or (K, D)
        self._file: h5py.File | None = None

    def open(self) -> int:
        """Open (or create) the partial store; return the number of images already done."""
        if self.path.exists():
            try:
                f = h5py.File(self.path, "a")
                same = (
                    f.attrs.get("config") == self.config_json
                    and f.attrs.get("fingerprint") == self.fingerprint
                    and f.attrs.get("ids_hash") == self.ids_hash
                    and tuple(f["descriptors"].shape[1:]) == self.shape
                )
                if same:
                    self._file = f
                    done = int(f.attrs["done"])
                    log.info("resuming %s: %d images already done", self.path.name, done)
                    return done
                f.close()
                log.warning("partial store %s is from another run; starting anew", self.path)
            except (OSError, KeyError):
                log.warning("partial store %s is unreadable; starting anew", self.path)
            self.path.unlink()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = h5py.File(self.path, "w")
        f.create_dataset("descriptors", shape=(0, *self.shape), maxshape=(None, *self.shape),
                         dtype=np.float32, chunks=(64, *self.shape))
        f.create_dataset("ids", shape=(0,), maxshape=(None,), dtype=h5py.string_dtype("utf-8"),
                         chunks=(256,))
        f.create_dataset("ok", shape=(0,), maxshape=(None,), dtype=np.bool_, chunks=(256,))
        f.attrs["config"] = self.config_json
        f.attrs["fingerprint"] = self.fingerprint
        f.attrs["ids_hash"] = self.ids_hash
        f.attrs["done"] = 0
        f.flush()
        self._file = f
        return 0

    def append(self, descriptors: np.ndarray, ids: Sequence[str], ok: Sequence[bool]) -> None:
        """Append a chunk: ``descriptors`` ``(n, *shape)``, its ``ids`` and success flags."""
        f = self._file
        if f is None:
            raise RuntimeError("PartialStore.append before open()")
        n0 = int(f.attrs["done"])
        n = len(ids)
        for name, data in (("descriptors", descriptors), ("ids", np.array(list(ids), dtype=object)),
                           ("ok", np.asarray(ok, dtype=np.bool_))):
            ds = f[name]
            ds.resize(n0 + n, axis=0)
            ds[n0:n0 + n] = data
        f.attrs["done"] = n0 + n
        f.flush()

    def read(self) -> tuple:
        """Return ``(descriptors, ids, ok)`` of everything stored so far."""
        f = self._file
        if f is None:
            raise RuntimeError("PartialStore.read before open()")
        n = int(f.attrs["done"])
        ids = [s.decode("utf-8") if isinstance(s, bytes) else str(s) for s in f["ids"][:n]]
        return f["descriptors"][:n], ids, f["ok"][:n].astype(bool)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def remove(self) -> None:
        self.close()
        if self.path.exists():
            self.path.unlink()
