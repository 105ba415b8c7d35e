"""Batched, resumable descriptor extraction: image files → descriptor store.

Pipeline per image (in DataLoader workers): decode → panorama projection → K crops (uint8).
Per batch (in the main process): all ``B·K`` crops go through the model as one tensor
``(B, K, 3, H, W)`` → descriptors ``(B, D)`` (or ``(B, K, D)`` per-crop).

Resumable: finished batches are appended to ``<out>.part`` (see :class:`PartialStore`); a
run started again with the same arguments skips them. The final store is written atomically.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from panoplace.config import PanoramaConfig, PipelineConfig
from panoplace.errors import ImageReadError, InputError, PanoplaceError
from panoplace.prefetch import Prefetcher
from panoplace.store import DescriptorSet, PartialStore, save_descriptors

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
PathLike = Union[str, Path]


def default_workers() -> int:
    """Decoding worker processes that pay off: none on 1-2 cores, where a worker only competes
    with the network's threads and adds inter-process copies (benchmarks/bench_pipeline.py on 2
    idle cores: 28-31 panoramas/s in the main process with the prefetch thread, 23.5 with one
    worker), up to 4 on larger machines."""
    n = os.cpu_count() or 1
    return 0 if n <= 2 else min(4, n - 2)


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cpu``/``cuda`` as asked (error if absent)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise InputError(f"unknown device {device!r}; choose auto, cpu or cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but no CUDA GPU is available")
    return torch.device(device)


def list_images(source: PathLike) -> Tuple[Path, List[str]]:
    """Resolve an image source to ``(root, relative paths)``.

    source: a folder (searched recursively for image files, sorted), a ``.txt`` list file (one
    path per line, relative to the list's folder unless absolute), or a dataset CSV in
    panoplace's format (its ``image`` column).
    """
    src = Path(source)
    if not src.exists():
        raise InputError(f"no such file or folder: {src}")
    if src.is_dir():
        files = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise InputError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {src}")
        return src, [p.relative_to(src).as_posix() for p in files]
    if src.suffix.lower() == ".csv":
        from panoplace.data import load_csv  # local import: data loaders are optional here

        imageset = load_csv(src)
        if len(imageset) == 0:
            raise InputError(f"dataset {src} lists no images")
        return Path(imageset.root), list(imageset.paths)
    if src.suffix.lower() in IMAGE_EXTENSIONS:
        return src.parent, [src.name]
    lines = [ln.strip() for ln in src.read_text().splitlines()]
    paths = [ln for ln in lines if ln and not ln.startswith("#")]
    if not paths:
        raise InputError(f"image list {src} is empty")
    return src.parent, paths


class CropDataset(Dataset):
    """Decodes images and turns each into K uint8 crops (runs inside DataLoader workers).

    Item ``i`` → ``(crops, i, error)``: crops ``(K, h, w, 3)`` uint8 tensor (zeros when the
    image failed), the index, and an error message ("" when fine).
    """

    def __init__(self, root: Path, paths: Sequence[str], panorama: PanoramaConfig,
                 n_crops: int) -> None:
        from panoplace.panorama.annular import AnnulusGeometry

        self.root = Path(root)
        self.paths = list(paths)
        self.panorama = panorama
        self.n_crops = n_crops
        self.geometry = AnnulusGeometry.from_dict(panorama.annulus) if panorama.annulus else None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, int, str]:
        from panoplace.decode import decode_image
        from panoplace.panorama.project import image_to_crops

        path = self.root / self.paths[i]
        h, w = self.panorama.crop_size
        try:
            crops = image_to_crops(decode_image(path), self.panorama, self.geometry)
            return torch.from_numpy(np.ascontiguousarray(crops)), i, ""
        except PanoplaceError as exc:
            msg = str(exc)
        except Exception as exc:  # decoding libraries raise many kinds; name the file
            msg = f"unreadable image {path}: {exc}"
        return torch.zeros((self.n_crops, h, w, 3), dtype=torch.uint8), i, msg


def count_crops(panorama: PanoramaConfig) -> int:
    """Number of crops K an image yields under ``panorama``."""
    if panorama.projection == "plain" and panorama.n_crops == 1:
        return 1
    from panoplace.panorama.crops import crop_windows

    return len(crop_windows(panorama.pano_width, n_crops=panorama.n_crops,
                            window_deg=panorama.window_deg, stride_deg=panorama.stride_deg))


def calibrate_panorama(panorama: PanoramaConfig, root: Path, paths: Sequence[str],
                       n_images: int = 16) -> PanoramaConfig:
    """For ``annular`` projection without a geometry: calibrate the annulus from the median
    of up to ``n_images`` images spread over the set; returns a config with ``annulus`` set."""
    if panorama.projection != "annular" or panorama.annulus:
        return panorama
    from panoplace.panorama.calibrate import calibrate_annulus
    from panoplace.panorama.project import read_image

    pick = np.unique(np.linspace(0, len(paths) - 1, min(n_images, len(paths))).astype(int))
    images = [read_image(root / paths[i]) for i in pick]
    geometry = calibrate_annulus(images)
    log.info("calibrated annulus from %d images: %s", len(images), geometry.to_dict())
    return PanoramaConfig.from_dict({**panorama.to_dict(), "annulus": geometry.to_dict()})


@dataclass
class ExtractResult:
    """What :func:`extract` produced: the descriptors and the images that were skipped."""

    descriptors: DescriptorSet
    skipped: List[Tuple[str, str]] = field(default_factory=list)  # (path, reason)
    seconds: float = 0.0


def load_model(checkpoint: Optional[PathLike] = None, pipeline: Optional[PipelineConfig] = None
               ) -> Tuple[Any, PanoramaConfig]:
    """Model + panorama config from a checkpoint (which may carry its panorama config) or
    from a pipeline config. A NetVLAD model needs a checkpoint (its centroids)."""
    from panoplace.models.build import build_model, load_checkpoint

    if checkpoint is not None:
        model, ckpt_panorama = load_checkpoint(checkpoint)
        panorama = pipeline.panorama if pipeline is not None else (ckpt_panorama or PanoramaConfig())
        return model, panorama
    pipeline = pipeline or PipelineConfig()
    if pipeline.model.aggregator == "netvlad":
        raise InputError(
            "NetVLAD needs cluster centroids: run `panoplace cluster` and pass its checkpoint "
            "with --checkpoint, or choose --aggregator gem|avg|max"
        )
    return build_model(pipeline.model), pipeline.panorama


def _ids_hash(root: Path, paths: Sequence[str]) -> str:
    h = hashlib.sha256(str(root.resolve()).encode())
    for p in paths:
        h.update(b"\0" + p.encode())
    return h.hexdigest()[:16]


def extract(
    root: PathLike,
    paths: Sequence[str],
    model: Any,
    panorama: PanoramaConfig,
    out: Optional[PathLike] = None,
    batch_size: int = 8,
    num_workers: Optional[int] = None,
    device: str = "auto",
    on_error: str = "stop",
    progress: bool = True,
    prefetch: bool = True,
) -> ExtractResult:
    """Extract descriptors of ``root/paths`` with ``model``.

    Args:
        model: a :class:`panoplace.models.build.PlaceModel`.
        panorama: how files become crops (annular geometry is calibrated here when missing).
        out: HDF5 store to write; when given the run is resumable through ``<out>.part``.
        on_error: ``stop`` (raise :class:`ImageReadError` naming the first bad file) or ``skip``
            (leave bad images out and list them in :attr:`ExtractResult.skipped`).
        num_workers: decoding worker processes (default :func:`default_workers`).
        prefetch: with no worker process, decode the next batch in a thread while the model
            runs (:class:`panoplace.prefetch.Prefetcher`).

    Returns:
        :class:`ExtractResult` whose descriptors are ``(N_ok, D)`` or ``(N_ok, K, D)``.
    """
    if on_error not in ("stop", "skip"):
        raise InputError(f"on_error must be 'stop' or 'skip', got {on_error!r}")
    root = Path(root)
    paths = list(paths)
    if not paths:
        raise InputError("no images to extract")
    panorama = calibrate_panorama(panorama, root, paths)
    dev = resolve_device(device)
    model = model.to(dev).eval()
    n_crops = count_crops(panorama)
    desc_shape = ((n_crops, model.descriptor_dim(1)) if model.config.fusion == "per-crop"
                  else (model.descriptor_dim(n_crops),))
    from panoplace.models.build import weights_fingerprint

    config = PipelineConfig(panorama=panorama, model=model.config).to_dict()
    fingerprint = weights_fingerprint(model)
    partial: Optional[PartialStore] = None
    done = 0
    chunks: List[np.ndarray] = []
    chunk_ok: List[np.ndarray] = []
    if out is not None:
        out = Path(out)
        partial = PartialStore(out.with_name(out.name + ".part"), config, fingerprint,
                               _ids_hash(root, paths), desc_shape)
        done = partial.open()
    dataset = CropDataset(root, paths, panorama, n_crops)
    num_workers = default_workers() if num_workers is None else num_workers
    todo = torch.utils.data.Subset(dataset, range(done, len(paths)))
    loader = DataLoader(todo, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        persistent_workers=False, pin_memory=dev.type == "cuda")
    errors: Dict[int, str] = {}
    t0 = time.perf_counter()
    from tqdm.auto import tqdm

    bar = tqdm(total=len(paths), initial=done, unit="img", desc="extract", disable=not progress,
               dynamic_ncols=True)
    # without worker processes, a thread decodes the next batch while the model runs
    batches = Prefetcher(loader) if num_workers == 0 and prefetch else iter(loader)
    try:
        with torch.inference_mode():
            for crops, idx, msgs in batches:
                bad = [j for j, m in enumerate(msgs) if m]
                if bad and on_error == "stop":
                    raise ImageReadError(paths[int(idx[bad[0]])], msgs[bad[0]].split(": ", 1)[-1])
                x = model.preprocess(crops.to(dev, non_blocking=True))
                d = model(x).float().cpu().numpy()
                ok = np.ones(len(idx), dtype=bool)
                for j in bad:
                    ok[j] = False
                    d[j] = 0.0
                    errors[int(idx[j])] = msgs[j]
                ids = [paths[int(i)] for i in idx]
                if partial is not None:
                    partial.append(d, ids, ok)
                else:
                    chunks.append(d)
                    chunk_ok.append(ok)
                bar.update(len(idx))
    finally:
        if isinstance(batches, Prefetcher):
            batches.close()
        bar.close()
    if partial is not None:
        all_desc, all_ids, all_ok = partial.read()
        if all_ids != paths:
            raise RuntimeError(f"partial store {partial.path} is inconsistent with the image list")
    else:
        all_desc = np.concatenate(chunks) if chunks else np.zeros((0, *desc_shape), np.float32)
        all_ok = np.concatenate(chunk_ok) if chunk_ok else np.zeros(0, bool)
    skipped = [(paths[i], errors.get(i, "failed in an earlier run")) for i in np.flatnonzero(~all_ok)]
    keep = np.flatnonzero(all_ok)
    result = DescriptorSet(np.asarray(all_desc)[keep], [paths[i] for i in keep], config, fingerprint)
    if out is not None:
        save_descriptors(result, out)
        partial.remove()
        log.info("wrote %d descriptors of dimension %s to %s", len(result), desc_shape, out)
    for path, reason in skipped:
        log.warning("skipped %s", reason if path in reason else f"{path}: {reason}")
    return ExtractResult(result, skipped, time.perf_counter() - t0)


def extract_paths(
    source: PathLike,
    checkpoint: Optional[PathLike] = None,
    pipeline: Optional[PipelineConfig] = None,
    out: Optional[PathLike] = None,
    **kwargs: Any,
) -> ExtractResult:
    """Convenience: :func:`list_images` + :func:`load_model` + :func:`extract`."""
    root, paths = list_images(source)
    model, panorama = load_model(checkpoint, pipeline)
    return extract(root, paths, model, panorama, out=out, **kwargs)
