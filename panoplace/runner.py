"""The image runner: the one place where image files become batched model inputs.

Every step that runs a model over images (``extract``, ``scene predict``, the scene-head
features, ``cluster``'s local-feature sampling, the trainer's frozen-feature cache) goes
through :class:`ImageRunner`:

1. image listing (:func:`list_images`: a folder, a ``.txt`` list or a dataset CSV);
2. a :class:`~panoplace.panorama.project.PanoramaProjector` built once (an ``annular`` config
   without a geometry is calibrated here from the images);
3. decoding + projection to K uint8 crops per image, batched, by an :class:`Engine`: the
   default :class:`InProcessEngine` decodes in a prefetch thread (the measured default on 1-2
   cores, see :func:`default_workers`) or in DataLoader worker processes;
4. the device (:func:`resolve_device`);
5. bad images as typed :class:`BadImage` records and the ``on_error`` policy (``stop`` raises
   :class:`~panoplace.errors.ImageReadError` naming the first bad file of a batch before its
   results are kept; ``skip`` leaves bad images out and lists them);
6. resume: :meth:`ImageRunner.run` appends finished rows to a
   :class:`~panoplace.store.PartialStore` (``<out>.part``), skips them when run again with the
   same arguments, keeps them when the run is interrupted and removes them once the caller's
   outputs are written.

What runs on a batch is a *step*: a :data:`StepFactory` is called once per engine worker with
the device and returns the per-batch function ``uint8 crops (B, K, h, w, 3) -> (B, ...) float32
array``. :func:`model_step` makes one from a :class:`CropModel` (anything with ``preprocess``,
``__call__``, ``descriptor_dim`` and ``config``: a ``PlaceModel``, or an exported model wrapped
for ONNX Runtime).

Another execution engine (e.g. a Ray cluster) plugs in as a class with the :class:`Engine`
method ``run(job, step) -> Iterator[Batch]``: it gets the image list, the projector, the
indices to do and the step factory, and yields batches in any order; the runner puts rows back
in image order, applies the error policy and writes the partial store.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import (Any, Callable, Dict, Generator, Iterator, List, NamedTuple, Optional, Protocol, Sequence, Tuple,
                    TypeVar, Union, overload)

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset, default_collate
from tqdm.auto import tqdm

from panoplace.config import ModelConfig, PanoramaConfig
from panoplace.data.frames import load_csv
from panoplace.decode import decode_image
from panoplace.errors import ImageReadError, InputError, PanoplaceError
from panoplace.panorama.imagefiles import IMAGE_EXTENSIONS, is_image_file
from panoplace.panorama.project import PanoramaProjector
from panoplace.prefetch import Prefetcher
from panoplace.store import PartialStore
from panoplace.textfiles import read_text

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
ON_ERROR = ("stop", "skip")
EARLIER_RUN = "failed in an earlier run"


class BadImage(NamedTuple):
    """An image that could not be turned into crops: its path as listed (relative to the root)
    and why (e.g. ``cannot be decoded as an image``, ``empty file``)."""

    path: str
    reason: str


class CropModel(Protocol):
    """What the runner's :func:`model_step` needs from a model over panorama crops.

    ``preprocess``: uint8 crops ``(B, K, h, w, 3)`` -> normalised float ``(B, K, 3, H, W)``;
    calling the model: ``(B, K, 3, H, W)`` -> descriptors ``(B, D)`` (``add``/``concat``
    fusion) or ``(B, K, D)`` (``per-crop``); ``descriptor_dim(n_crops)``: ``D``; ``config``:
    the :class:`~panoplace.config.ModelConfig` stores record.
    """

    config: ModelConfig

    def preprocess(self, crops_uint8: torch.Tensor) -> torch.Tensor: ...

    def __call__(self, crops: torch.Tensor) -> torch.Tensor: ...

    def descriptor_dim(self, n_crops: int) -> int: ...


BatchStep = Callable[[torch.Tensor], np.ndarray]
"""Per-batch work: uint8 crops ``(B, K, h, w, 3)`` on the engine's device -> ``(B, ...)`` array
(or, for :meth:`ImageRunner.batches` consumers, any array the caller understands)."""

StepFactory = Callable[[torch.device], BatchStep]
"""Called once per engine worker with its device; returns the :data:`BatchStep` (e.g. moves the
model there first). A distributed engine ships the factory to its workers."""


@dataclass
class Job:
    """What an engine runs: images ``root/paths[i]`` for ``i`` in ``indices`` (in that order,
    ``batch_size`` per batch), projected by ``projector``, on ``device``."""

    root: Path
    paths: List[str]
    indices: List[int]
    projector: PanoramaProjector
    batch_size: int
    device: torch.device


@dataclass
class Batch:
    """One batch an engine finished.

    indices: ``(B_ok,)`` int64 positions in the image list of the images that were read;
    outputs: the step's output for them (leading dimension ``B_ok``), None when none was read;
    bad: position -> :class:`BadImage` for the images of the batch that could not be read.
    """

    indices: np.ndarray
    outputs: Optional[np.ndarray]
    bad: Dict[int, BadImage] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.indices) + len(self.bad)


class Engine(Protocol):
    """An execution engine: runs a step over the images of a job, yielding finished batches
    (in any order; every index of ``job.indices`` exactly once, as read or bad)."""

    def run(self, job: Job, step: StepFactory) -> Iterator[Batch]: ...


def default_workers() -> int:
    """Decoding worker processes that pay off: none on 1-2 cores, where a worker only competes
    with the network's threads and adds inter-process copies (benchmarks/bench_pipeline.py on 2
    idle cores: 28-31 panoramas/s in the main process with the prefetch thread, 23.5 with one
    worker), up to 4 on larger machines."""
    n = os.cpu_count() or 1
    return 0 if n <= 2 else min(4, n - 2)


def resolve_device(device: Union[str, torch.device] = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cpu``/``cuda``/``cuda:N`` as asked (error if absent)."""
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise InputError(f"unknown device {device!r}; choose auto, cpu or cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but no CUDA GPU is available")
    return torch.device(device)


def list_images(source: PathLike) -> Tuple[Path, List[str]]:
    """Resolve an image source to ``(root, relative paths)``.

    source: a folder (searched recursively for image files,
    :data:`~panoplace.panorama.imagefiles.IMAGE_EXTENSIONS`, sorted), a ``.txt`` list file (one
    path per line, relative to the list's folder unless absolute), a dataset CSV in panoplace's
    format (its ``image`` column), or one image file.
    """
    src = Path(source)
    if not src.exists():
        raise InputError(f"no such file or folder: {src}")
    if src.is_dir():
        files = sorted(p for p in src.rglob("*") if p.is_file() and is_image_file(p))
        if not files:
            raise InputError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {src}")
        return src, [p.relative_to(src).as_posix() for p in files]
    if src.suffix.lower() == ".csv":
        imageset = load_csv(src)
        if len(imageset) == 0:
            raise InputError(f"dataset {src} lists no images")
        return Path(imageset.root), list(imageset.paths)
    if is_image_file(src):
        return src.parent, [src.name]
    lines = [ln.strip() for ln in read_text(src, "image list").splitlines()]
    paths = [ln for ln in lines if ln and not ln.startswith("#")]
    if not paths:
        raise InputError(f"image list {src} is empty")
    return src.parent, paths


class CropDataset(Dataset):
    """Decodes images and turns each into K uint8 crops (runs in DataLoader workers or threads).

    Item ``i`` → ``(crops, i, bad)``: crops ``(K, h, w, 3)`` uint8 tensor (zeros when the image
    could not be read), the index, and a :class:`BadImage` (None when fine).
    """

    def __init__(self, root: PathLike, paths: Sequence[str], projector: PanoramaProjector) -> None:
        self.root = Path(root)
        self.paths = list(paths)
        self.projector = projector
        self.n_crops = projector.n_crops

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, int, Optional[BadImage]]:
        path = self.root / self.paths[i]
        try:
            crops = self.projector.crops(decode_image(path))
            return torch.from_numpy(np.ascontiguousarray(crops)), i, None
        except ImageReadError as exc:
            reason = exc.reason
        except PanoplaceError as exc:  # e.g. a calibration that does not fit this image
            reason = str(exc)
        except Exception as exc:  # decoding libraries raise many kinds
            reason = str(exc) or type(exc).__name__
        h, w = self.projector.crop_size
        return torch.zeros((self.n_crops, h, w, 3), dtype=torch.uint8), i, BadImage(self.paths[i], reason)


def collate_crops(items: Sequence[Tuple[torch.Tensor, int, Optional[BadImage]]]
                  ) -> Tuple[torch.Tensor, np.ndarray, Dict[int, BadImage]]:
    """DataLoader collate of :class:`CropDataset` items: ``(crops (B, K, h, w, 3) uint8, indices (B,)
    int64, {index: BadImage})``."""
    crops = default_collate([c for c, _, _ in items])  # shared memory when run in a worker process
    idx = np.array([i for _, i, _ in items], dtype=np.int64)
    return crops, idx, {i: b for _, i, b in items if b is not None}


def _ok_part(crops: torch.Tensor, idx: np.ndarray, bad: Dict[int, BadImage]) -> Tuple[torch.Tensor, np.ndarray]:
    """The crops and indices of the images that were read."""
    if not bad:
        return crops, idx
    keep = [j for j, i in enumerate(idx.tolist()) if i not in bad]
    return crops[keep], idx[keep]


class InProcessEngine:
    """The default engine: a DataLoader over :class:`CropDataset` in this process.

    num_workers: decoding worker processes (default :func:`default_workers`); with none,
    ``prefetch`` decodes the next batch in a thread while the model runs
    (:class:`~panoplace.prefetch.Prefetcher`). The step runs in this thread, in
    ``torch.inference_mode``; batches come out in job order.
    """

    def __init__(self, num_workers: Optional[int] = None, prefetch: bool = True) -> None:
        self.num_workers = default_workers() if num_workers is None else int(num_workers)
        if self.num_workers < 0:
            raise InputError(f"num_workers must be >= 0, got {num_workers}")
        self.prefetch = bool(prefetch)

    def run(self, job: Job, step: StepFactory) -> Iterator[Batch]:
        fn = step(job.device)
        dataset = CropDataset(job.root, job.paths, job.projector)
        loader = DataLoader(Subset(dataset, job.indices), batch_size=job.batch_size, shuffle=False,
                            num_workers=self.num_workers, collate_fn=collate_crops,
                            pin_memory=job.device.type == "cuda")
        batches = Prefetcher(loader) if self.num_workers == 0 and self.prefetch else iter(loader)
        try:
            for crops, idx, bad in batches:
                crops, idx = _ok_part(crops, idx, bad)
                out = None
                if len(idx):
                    with torch.inference_mode():
                        out = fn(crops.to(job.device, non_blocking=True))
                yield Batch(idx, out, bad)
        finally:
            if isinstance(batches, Prefetcher):
                batches.close()


def as_rows(x: Union[torch.Tensor, np.ndarray]) -> np.ndarray:
    """A step output as float32 numpy on the CPU (numpy arrays pass as they are)."""
    return x if isinstance(x, np.ndarray) else x.float().cpu().numpy()


class Preprocessor(Protocol):
    """What :func:`model_step` needs from a model when a ``forward`` function is given: only
    ``preprocess`` (uint8 crops ``(B, K, h, w, 3)`` -> the model's float input)."""

    def preprocess(self, crops_uint8: torch.Tensor) -> torch.Tensor: ...


M = TypeVar("M", bound=Preprocessor)


@overload
def model_step(model: CropModel) -> StepFactory: ...


@overload
def model_step(model: M, forward: Callable[[M, torch.Tensor], Union[torch.Tensor, np.ndarray]]) -> StepFactory: ...


def model_step(model: Any, forward: Optional[Callable[[Any, torch.Tensor], Union[torch.Tensor, np.ndarray]]] = None
               ) -> StepFactory:
    """A step factory that runs ``model`` over each batch: on the engine's device the model is
    moved there and put in eval mode (when it is a ``torch.nn.Module``), then per batch
    ``forward(model, model.preprocess(crops))`` (default: ``model(x)``, the descriptors of a
    :class:`CropModel`) comes back as a float32 array (:func:`as_rows`).

    Shape: crops ``(B, K, h, w, 3)`` uint8 -> ``forward``'s output ``(B, ...)`` float32.
    """
    def factory(device: torch.device) -> BatchStep:
        m: Any = model.to(device).eval() if isinstance(model, torch.nn.Module) else model

        def step(crops: torch.Tensor) -> np.ndarray:
            x = m.preprocess(crops)
            return as_rows(forward(m, x) if forward is not None else m(x))

        return step

    return factory


def run_hash(root: Path, paths: Sequence[str], extra: bytes = b"") -> str:
    """Identity of an image list (root, paths and what else the caller's rows depend on) for
    the partial store: a store of another list is discarded, not resumed."""
    h = hashlib.sha256(str(Path(root).resolve()).encode())
    for p in paths:
        h.update(b"\0" + p.encode())
    if extra:
        h.update(extra)
    return h.hexdigest()[:16]


@dataclass
class PartialSpec:
    """Where and under which identity :meth:`ImageRunner.run` keeps finished rows for resuming.

    path: the partial store (``<out>.part``); config, fingerprint: what made the rows (the
    options that change outputs); extra: bytes hashed with the image list (e.g. category names).
    on_other: a partial store made with another config (the options) is discarded
    (``"restart"``) or refused with :class:`~panoplace.errors.OutputError` (``"refuse"``, what
    the CLI does without ``--overwrite``); one of other weights (fingerprint) is discarded. Rows
    of images whose file changed (size or mtime) since they were stored are computed again
    (:class:`~panoplace.store.PartialStore`).
    """

    path: Path
    config: Dict[str, Any]
    fingerprint: str
    extra: bytes = b""
    on_other: str = "restart"

    @classmethod
    def beside(cls, out: PathLike, config: Dict[str, Any], fingerprint: str, extra: bytes = b"",
               on_other: str = "restart") -> "PartialSpec":
        """The partial store of output ``out``: ``<out>.part`` in the same folder."""
        out = Path(out)
        return cls(out.with_name(out.name + ".part"), config, fingerprint, extra, on_other)


def file_stamps(root: PathLike, paths: Sequence[str]) -> np.ndarray:
    """Size and mtime (ns) of each image file, ``(N, 2)`` int64 (``-1, -1`` for a missing one):
    what tells a resumed run that an image changed since its row was stored."""
    out = np.full((len(paths), 2), -1, dtype=np.int64)
    base = Path(root)
    for i, p in enumerate(paths):
        try:
            st = os.stat(base / p)
        except OSError:
            continue
        out[i] = (st.st_size, st.st_mtime_ns)
    return out


@dataclass
class RunResult:
    """Rows of every image, in image order.

    rows: ``(N, *row_shape)`` float32 (zeros for images that were not read); ok: ``(N,)`` bool;
    bad: the images not read (also those of an earlier, resumed run), in image order.
    """

    rows: np.ndarray
    ok: np.ndarray
    bad: List[BadImage]
    seconds: float = 0.0

    def kept(self) -> np.ndarray:
        """Positions of the images that were read, ``(N_ok,)`` int64."""
        return np.flatnonzero(self.ok)


class ImageRunner:
    """Runs steps over the images ``root/paths`` (see the module docstring).

    Args:
        panorama: how files become crops: a config (an ``annular`` one without a geometry is
            calibrated here) or a ready :class:`PanoramaProjector`.
        on_error: ``stop`` (raise :class:`ImageReadError` naming the first bad file) or ``skip``.
        num_workers, prefetch: for the default :class:`InProcessEngine` (ignored with ``engine``).
        engine: another :class:`Engine`.
        desc: the progress bar's label.
    """

    def __init__(self, root: PathLike, paths: Sequence[str], panorama: Union[PanoramaConfig, PanoramaProjector], *,
                 batch_size: int = 8, device: Union[str, torch.device] = "auto", on_error: str = "stop",
                 num_workers: Optional[int] = None, prefetch: bool = True, engine: Optional[Engine] = None,
                 progress: bool = True, desc: str = "images") -> None:
        if on_error not in ON_ERROR:
            raise InputError(f"on_error must be 'stop' or 'skip', got {on_error!r}")
        if int(batch_size) < 1:
            raise InputError(f"batch size must be >= 1, got {batch_size}")
        self.root = Path(root)
        self.paths = list(paths)
        if not self.paths:
            raise InputError("no images to run on")
        self.projector = (panorama if isinstance(panorama, PanoramaProjector)
                          else PanoramaProjector.calibrated(panorama, self.root, self.paths))
        self.device = resolve_device(device)
        self.batch_size = int(batch_size)
        self.on_error = on_error
        self.engine: Engine = engine if engine is not None else InProcessEngine(num_workers, prefetch)
        self.progress = progress
        self.desc = desc

    @property
    def panorama(self) -> PanoramaConfig:
        """The panorama config in use (with the calibrated geometry, for stores and checkpoints)."""
        return self.projector.config

    @property
    def n_crops(self) -> int:
        return self.projector.n_crops

    def batches(self, step: StepFactory, indices: Optional[Sequence[int]] = None,
                done: int = 0) -> Generator[Batch, None, None]:
        """Run ``step`` over the images ``indices`` (default: all), yielding the engine's batches.

        With ``on_error="stop"`` the first bad image of a batch raises :class:`ImageReadError`
        (the batch is not yielded); with ``skip`` a warning names each bad image. ``done``:
        images already finished (counted by the progress bar).
        """
        todo = list(range(len(self.paths))) if indices is None else [int(i) for i in indices]
        job = Job(self.root, self.paths, todo, self.projector, self.batch_size, self.device)
        bar = tqdm(total=done + len(todo), initial=done, unit="img", desc=self.desc, disable=not self.progress,
                   dynamic_ncols=True)
        it = self.engine.run(job, step)
        try:
            for batch in it:
                if batch.bad:
                    first = batch.bad[min(batch.bad)]
                    if self.on_error == "stop":
                        raise ImageReadError(first.path, first.reason)
                    for i in sorted(batch.bad):
                        log.warning("skipping %s: %s", batch.bad[i].path, batch.bad[i].reason)
                bar.update(len(batch))
                yield batch
        finally:
            close = getattr(it, "close", None)
            if close is not None:  # stop the engine's decoding (generator cleanup)
                close()
            bar.close()

    def _flush(self, store: PartialStore, pending: Dict[int, Tuple[Optional[np.ndarray], bool]], flushed: int,
               shape: Tuple[int, ...]) -> int:
        """Append the finished rows that follow the store's last one, in order; returns the new end."""
        end = flushed
        while end in pending:
            end += 1
        if end == flushed:
            return flushed
        chunk = [pending.pop(i) for i in range(flushed, end)]
        block = np.zeros((len(chunk), *shape), dtype=np.float32)
        for j, (row, good) in enumerate(chunk):
            if good:
                block[j] = row
        store.append(block, self.paths[flushed:end], [good for _, good in chunk])
        return end

    def run(self, step: StepFactory, row_shape: Sequence[int], partial: Optional[PartialSpec] = None,
            write: Optional[Callable[[RunResult], None]] = None) -> RunResult:
        """Rows of every image: the step's ``(B, *row_shape)`` outputs put back in image order.

        With ``partial`` the rows go to a :class:`~panoplace.store.PartialStore` as soon as they
        are in order; a run started again with the same ``partial`` identity (config,
        fingerprint, image list, extra) continues after them. Interrupted (any exception), the
        store is closed and kept; finished, ``write(result)`` writes the caller's outputs and
        then the store is removed.

        Shape: -> :attr:`RunResult.rows` ``(N, *row_shape)`` float32.
        """
        t0 = time.perf_counter()
        shape = tuple(int(s) for s in row_shape)
        n = len(self.paths)
        store: Optional[PartialStore] = None
        done = 0
        if partial is not None:
            store = PartialStore(partial.path, partial.config, partial.fingerprint,
                                 run_hash(self.root, self.paths, partial.extra), shape,
                                 stamps=file_stamps(self.root, self.paths), expected_ids=self.paths,
                                 on_other=partial.on_other)
            done = store.open()
        rows = np.zeros((n if store is None else 0, *shape), dtype=np.float32)
        ok = np.zeros(n, dtype=bool)
        reasons: Dict[int, str] = {}
        pending: Dict[int, Tuple[Optional[np.ndarray], bool]] = {}  # finished, not yet in the store
        flushed = done
        gen = self.batches(step, range(done, n), done=done)
        try:
            with contextlib.closing(gen):
                for batch in gen:
                    for i, b in batch.bad.items():
                        reasons[i] = b.reason
                    out = None if batch.outputs is None else np.asarray(batch.outputs, dtype=np.float32)
                    if out is not None and out.shape[1:] != shape:
                        raise RuntimeError(f"step gave rows of shape {out.shape[1:]}, expected {shape}")
                    if store is None:
                        if out is not None:
                            rows[batch.indices] = out
                            ok[batch.indices] = True
                        continue
                    if out is not None:
                        for j, i in enumerate(batch.indices.tolist()):
                            pending[i] = (out[j], True)
                    for i in batch.bad:
                        pending[i] = (None, False)
                    flushed = self._flush(store, pending, flushed, shape)
            if store is not None:
                stored, ids, stored_ok = store.read()
                if ids != self.paths:
                    raise RuntimeError(f"partial store {store.path} is inconsistent with the image list")
                rows, ok = np.asarray(stored, dtype=np.float32), np.asarray(stored_ok, dtype=bool)
            bad = [BadImage(self.paths[i], reasons.get(int(i), EARLIER_RUN)) for i in np.flatnonzero(~ok)]
            result = RunResult(rows, ok, bad, time.perf_counter() - t0)
            if write is not None:
                write(result)
        except BaseException:
            if store is not None:
                store.close()  # finished rows stay for the next run
            raise
        if store is not None:
            store.remove()
        result.seconds = time.perf_counter() - t0
        return result
