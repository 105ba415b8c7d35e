"""Descriptor store: float32 descriptors + image ids + the config and weights that made them.

On disk an HDF5 file holds

- ``descriptors``: float32 ``(N, D)``, or ``(N, K, D)`` for per-crop descriptors (float16 when
  written with ``half=True``; always read back as float32);
- ``ids``: utf-8 strings, one image id per row;
- attributes ``config`` (JSON of :meth:`PipelineConfig.to_dict`), ``fingerprint`` (hash of
  the model weights) and ``format_version``.

What a store holds is recorded in its ``config`` (:func:`descriptor_kind`): place descriptors of
a model (``config["model"]``, compared by cosine distance) or pixel descriptors
(``config["pixels"]``: patch-normalised grey thumbnails, :mod:`panoplace.pixels`, compared by
mean absolute difference). :func:`check_compatible` refuses to compare stores of two kinds.

A finished store is written atomically (temp file + ``os.replace``). Resumable extraction
uses a *partial* store beside the target (``<name>.part``) that grows one chunk at a time;
see :class:`PartialStore`.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Dict, Iterator, List, Optional, Sequence, Union

import h5py
import numpy as np

from panoplace.atomic import atomic_path, writing
from panoplace.crop_fusion import fuse_crops
from panoplace.errors import DescriptorMismatchError, InputError, OutputError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
PathLike = Union[str, Path]
MANIFEST = "manifest.json"  # marks a folder as a sharded store (see panoplace.shards)
PIXELS = "pixels"  # the store config key of pixel descriptors (panoplace.pixels.PixelConfig.to_dict())
KINDS = ("place", PIXELS)
METRICS = {"place": "cosine", PIXELS: "sad"}  # how descriptors of each kind are compared


def descriptor_kind(config: Dict[str, Any]) -> str:
    """What a store config says its descriptors are: ``pixels`` (a ``pixels`` entry) or ``place``."""
    return PIXELS if isinstance(config, dict) and PIXELS in config else "place"


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

    @property
    def kind(self) -> str:
        """``place`` (model descriptors) or ``pixels`` (patch-normalised thumbnails), from the config."""
        return descriptor_kind(self.config)

    @property
    def metric(self) -> str:
        """How two descriptors of this set are compared: ``cosine`` (place) or ``sad`` (pixels:
        mean absolute difference)."""
        return METRICS[self.kind]

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
        with h5_writer(tmp) as f:
            f.create_dataset("descriptors", data=ds.descriptors, dtype=np.float16 if half else np.float32)
            f.create_dataset("ids", data=np.array(ds.ids, dtype=object), dtype=h5py.string_dtype("utf-8"))
            f.attrs["config"] = json.dumps(ds.config, sort_keys=True)
            f.attrs["fingerprint"] = ds.fingerprint
            f.attrs["format_version"] = FORMAT_VERSION
    return path


@contextmanager
def h5_writer(path: PathLike) -> Iterator[h5py.File]:
    """A new HDF5 file at ``path`` written through a Python file object: a full or read-only disk
    then raises an ordinary ``OSError`` (which :func:`panoplace.atomic.writing` names) instead of
    leaving HDF5 with a file it cannot close (a crash at exit)."""
    with open(path, "w+b") as raw:
        f = h5py.File(raw, "w")
        try:
            yield f
        finally:
            f.close()


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
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: its config attribute is not valid JSON ({exc.msg}); the store is damaged") from None
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise InputError(f"cannot read descriptor file {path}: {exc}") from None
    if not isinstance(config, dict):
        raise InputError(f"{path}: its config attribute is not a JSON object; the store is damaged")
    if desc.dtype.kind != "f" or desc.ndim not in (2, 3) or len(desc) != len(ids):
        raise InputError(f"{path}: its descriptors ({desc.dtype}, shape {desc.shape}) are not a float (N, D) or "
                         f"(N, K, D) array with one row per id ({len(ids)}); the store is damaged")
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

    Raises :class:`DescriptorMismatchError` when either set is empty or holds NaN/inf, when they
    hold descriptors of two kinds (place vs pixels) or pixels of two sizes, when the
    dimensions differ, or when weights fingerprints or model configs differ.
    """
    check_finite(query, "query descriptors")
    check_finite(database, "database descriptors")
    if query.kind != database.kind:
        raise DescriptorMismatchError(
            f"query descriptors are {_kind_text(query)} but database descriptors are {_kind_text(database)}; "
            f"compare stores of one kind")
    if query.kind == PIXELS and query.config[PIXELS] != database.config[PIXELS]:
        raise DescriptorMismatchError(
            f"query and database descriptors are pixels made differently ({_kind_text(query)} vs "
            f"{_kind_text(database)})")
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


def _kind_text(ds: DescriptorSet) -> str:
    if ds.kind != PIXELS:
        return "place descriptors of a model"
    p = ds.config[PIXELS]
    return f"pixels ({p.get('width')}x{p.get('height')}, patch {p.get('patch')})"


_PART_BUFFER = 16 * 2**20  # bytes buffered between HDF5 and the partial store's file


class PartialStore:
    """An HDF5 store that grows chunk by chunk, for resumable extraction.

    The file at ``path`` holds resizable ``descriptors``, ``ids`` and ``ok`` datasets, the
    ``stamps`` of the image files (size and mtime in ns, ``(N, 2)`` int64) and a ``done`` count;
    each :meth:`append` is flushed before it returns, so a killed run loses at most the chunk in
    flight. Opening it again:

    - its ``config`` (the options that change outputs: model and panorama config) differs from
      this run's: ``on_other="restart"`` discards it, ``"refuse"`` raises
      :class:`~panoplace.errors.OutputError` (the CLI without ``--overwrite``);
    - its weights ``fingerprint`` differs (the checkpoint file changed since, or a model with
      random weights), its ``ids_hash`` (the image list) differs, it is unreadable (a disk that
      filled up during a write) or of an older version: every row depends on a changed input, so
      it is discarded with a warning and the run starts anew;
    - otherwise the run resumes after the longest prefix of rows whose ids match ``expected_ids``
      and whose stamps match ``stamps``: an image changed since is computed again, with the rows
      after it.

    The file is written through a Python file object, so a full or read-only disk raises
    :class:`~panoplace.errors.OutputError` naming it (never an HDF5 abort at exit).
    """

    def __init__(self, path: PathLike, config: Dict[str, Any], fingerprint: str, ids_hash: str,
                 shape: tuple, *, stamps: Optional[np.ndarray] = None, expected_ids: Optional[Sequence[str]] = None,
                 on_other: str = "restart") -> None:
        if on_other not in ("restart", "refuse"):
            raise ValueError(f"on_other must be 'restart' or 'refuse', got {on_other!r}")
        self.path = Path(path)
        self.config_json = json.dumps(config, sort_keys=True)
        self.fingerprint = fingerprint
        self.ids_hash = ids_hash
        self.shape = tuple(int(s) for s in shape)  # per-image descriptor shape: (D,) or (K, D)
        self.stamps = None if stamps is None else np.asarray(stamps, dtype=np.int64).reshape(-1, 2)
        self.expected_ids = None if expected_ids is None else list(expected_ids)
        self.on_other = on_other
        self._file: h5py.File | None = None
        self._raw: Optional[IO[bytes]] = None

    def _h5(self, mode: str) -> h5py.File:
        # a large Python buffer: HDF5 writes land in it, and a full disk fails in raw.flush(), outside
        # HDF5 (a write failing inside HDF5's file-object callback can leave it to crash at exit)
        raw = open(self.path, "w+b" if mode == "w" else "r+b", buffering=_PART_BUFFER)
        try:
            f = h5py.File(raw, mode)
        except BaseException:
            raw.close()
            raise
        self._raw = raw
        return f

    def _resumable_rows(self, f: h5py.File) -> int:
        """Rows of ``f`` this run may keep (see the class doc); raises KeyError/ValueError on a bad file."""
        done = int(f.attrs["done"])
        if done < 0 or any(f[name].shape[0] < done for name in ("descriptors", "ids", "ok")):
            raise ValueError("row count beyond the datasets")
        if self.stamps is not None and "stamps" not in f:
            raise KeyError("stamps")
        keep = done
        if self.expected_ids is not None:
            ids = [s.decode("utf-8") if isinstance(s, bytes) else str(s) for s in f["ids"][:done]]
            keep = next((i for i, (a, b) in enumerate(zip(ids, self.expected_ids)) if a != b),
                        min(done, len(self.expected_ids)))
        if self.stamps is not None:
            if f["stamps"].shape[0] < done:
                raise ValueError("stamps shorter than the rows")
            old = f["stamps"][:keep]
            changed = np.flatnonzero((old != self.stamps[:keep]).any(axis=1))
            if len(changed):
                first = int(changed[0])
                name = self.expected_ids[first] if self.expected_ids is not None else f"row {first}"
                log.warning("%d image(s) changed since the interrupted run (first: %s); computing them again",
                            len(changed), name)
                keep = first
        return keep

    def open(self) -> int:
        """Open (or create) the partial store; return the number of images already done."""
        if self.path.exists():
            f = None
            try:
                with writing(self.path):
                    f = self._h5("r+")
                same_options = f.attrs.get("config") == self.config_json
                same_inputs = (f.attrs.get("fingerprint") == self.fingerprint
                               and f.attrs.get("ids_hash") == self.ids_hash
                               and tuple(f["descriptors"].shape[1:]) == self.shape)
                if same_options and same_inputs:
                    keep = self._resumable_rows(f)
                    if keep < int(f.attrs["done"]):
                        with writing(self.path):
                            self._truncate(f, keep)
                    self._file = f
                    log.info("resuming %s: %d images already done", self.path.name, keep)
                    return keep
                if not same_options and self.on_other == "refuse":
                    raise OutputError(f"{self.path} holds an interrupted run with other options (model or "
                                      "panorama config); run with the same options to resume it, or pass "
                                      "--overwrite to start over")
                log.warning("partial store %s is from another run (%s); starting anew", self.path,
                            "other options" if not same_options else "other model weights or images")
            except (OSError, KeyError, ValueError, TypeError):
                log.warning("partial store %s is unreadable (an interrupted write?); starting anew", self.path)
            finally:
                if self._file is None:
                    self._close_quietly(f)
            with writing(self.path):
                self.path.unlink()
        with writing(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            f = self._h5("w")
            self._file = f
            f.create_dataset("descriptors", shape=(0, *self.shape), maxshape=(None, *self.shape),
                             dtype=np.float32, chunks=(64, *self.shape))
            f.create_dataset("ids", shape=(0,), maxshape=(None,), dtype=h5py.string_dtype("utf-8"),
                             chunks=(256,))
            f.create_dataset("ok", shape=(0,), maxshape=(None,), dtype=np.bool_, chunks=(256,))
            if self.stamps is not None:
                f.create_dataset("stamps", shape=(0, 2), maxshape=(None, 2), dtype=np.int64, chunks=(256, 2))
            f.attrs["config"] = self.config_json
            f.attrs["fingerprint"] = self.fingerprint
            f.attrs["ids_hash"] = self.ids_hash
            f.attrs["done"] = 0
            f.flush()
            if self._raw is not None:
                self._raw.flush()
        return 0

    def _truncate(self, f: h5py.File, n: int) -> None:
        for name in ("descriptors", "ids", "ok", "stamps"):
            if name in f:
                f[name].resize(n, axis=0)
        f.attrs["done"] = n
        f.flush()

    def append(self, descriptors: np.ndarray, ids: Sequence[str], ok: Sequence[bool]) -> None:
        """Append a chunk: ``descriptors`` ``(n, *shape)``, its ``ids`` and success flags."""
        f = self._file
        if f is None:
            raise RuntimeError("PartialStore.append before open()")
        n0 = int(f.attrs["done"])
        n = len(ids)
        data = [("descriptors", descriptors), ("ids", np.array(list(ids), dtype=object)),
                ("ok", np.asarray(ok, dtype=np.bool_))]
        if self.stamps is not None and "stamps" in f:
            data.append(("stamps", self.stamps[n0:n0 + n]))
        with writing(self.path):
            for name, values in data:
                ds = f[name]
                ds.resize(n0 + n, axis=0)
                ds[n0:n0 + n] = values
            f.attrs["done"] = n0 + n  # last: a row counts once all its datasets hold it
            f.flush()
            if self._raw is not None:
                self._raw.flush()

    def read(self) -> tuple:
        """Return ``(descriptors, ids, ok)`` of everything stored so far."""
        f = self._file
        if f is None:
            raise RuntimeError("PartialStore.read before open()")
        n = int(f.attrs["done"])
        ids = [s.decode("utf-8") if isinstance(s, bytes) else str(s) for s in f["ids"][:n]]
        return f["descriptors"][:n], ids, f["ok"][:n].astype(bool)

    def _close_quietly(self, f: Optional[h5py.File]) -> None:
        try:
            if f is not None:
                f.close()
        except Exception:  # noqa: BLE001 - a file that could not be flushed (disk full) is closed anyway
            pass
        raw, self._raw = self._raw, None
        try:
            if raw is not None:
                raw.close()
        except OSError:
            pass

    def close(self) -> None:
        """Close the file; a failure to flush it (disk full) is left to the next run to notice."""
        f, self._file = self._file, None
        self._close_quietly(f)

    def remove(self) -> None:
        self.close()
        if self.path.exists():
            with writing(self.path):
                self.path.unlink()
