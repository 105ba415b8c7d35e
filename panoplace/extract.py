"""Batched, resumable descriptor extraction: image files → descriptor store.

The images go through the image runner (:mod:`panoplace.runner`): decoding and panorama
projection to K uint8 crops per image (prefetch thread or DataLoader workers), then per batch
all ``B·K`` crops go through the model as one tensor ``(B, K, 3, H, W)`` → descriptors
``(B, D)`` (or ``(B, K, D)`` per-crop).

Resumable: finished batches are appended to ``<out>.part`` (a
:class:`~panoplace.store.PartialStore`); a run started again with the same arguments skips
them. The final store is written atomically.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch

from panoplace.config import PanoramaConfig, PipelineConfig
from panoplace.errors import DescriptorMismatchError, InputError
from panoplace.models.build import build_model, weights_fingerprint
from panoplace.models.checkpoint import load_checkpoint
from panoplace.panorama.imagefiles import IMAGE_EXTENSIONS
from panoplace.panorama.project import PanoramaProjector
from panoplace.pixels import PixelModel
from panoplace.runner import (BadImage, CropDataset, CropModel, Engine, ImageRunner, PartialSpec, RunResult,
                              default_workers, list_images, model_step, resolve_device)
from panoplace.store import PIXELS, DescriptorSet, append_descriptors, load_descriptors, save_descriptors

log = logging.getLogger(__name__)

PathLike = Union[str, Path]

# names that lived here before the image runner existed; kept so that older imports work
__all__ = ["BadImage", "CropDataset", "ExtractResult", "IMAGE_EXTENSIONS", "calibrate_panorama", "count_crops",
           "default_workers", "extract", "extract_paths", "list_images", "load_model", "resolve_device"]


def count_crops(panorama: PanoramaConfig) -> int:
    """Number of crops K an image yields under ``panorama`` (:attr:`PanoramaProjector.n_crops`)."""
    return PanoramaProjector(panorama).n_crops


def calibrate_panorama(panorama: PanoramaConfig, root: Path, paths: Sequence[str],
                       n_images: int = 16) -> PanoramaConfig:
    """For ``annular`` projection without a geometry: calibrate the annulus from the median
    of up to ``n_images`` images spread over the set; returns a config with ``annulus`` set
    (:meth:`PanoramaProjector.calibrated`)."""
    return PanoramaProjector.calibrated(panorama, root, paths, n_images).config


@dataclass
class ExtractResult:
    """What :func:`extract` produced: the descriptors and the images that were skipped."""

    descriptors: DescriptorSet
    skipped: List[BadImage] = field(default_factory=list)
    seconds: float = 0.0


def load_model(checkpoint: Optional[PathLike] = None, pipeline: Optional[PipelineConfig] = None
               ) -> Tuple[Any, PanoramaConfig]:
    """Model + panorama config from a checkpoint (which may carry its panorama config) or
    from a pipeline config. A NetVLAD model needs a checkpoint (its centroids)."""
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


def _fingerprint(model: Union[CropModel, PixelModel]) -> str:
    # a torch model is fingerprinted by its weights; another CropModel (e.g. an ONNX session) says its own
    return (weights_fingerprint(model) if isinstance(model, torch.nn.Module)
            else str(getattr(model, "fingerprint", "")))


def _made_by(model: Union[CropModel, PixelModel]) -> Tuple[str, Dict[str, Any]]:
    """The store config entry that says what made the descriptors: ``("model", ModelConfig dict)``
    or, for pixel descriptors, ``("pixels", PixelConfig dict)``."""
    if isinstance(model, PixelModel):
        return PIXELS, model.store_entry()
    return "model", model.config.to_dict()


def _descriptor_shape(model: Union[CropModel, PixelModel], n_crops: int) -> Tuple[int, ...]:
    if isinstance(model, PixelModel):
        return (model.descriptor_dim(n_crops),)
    return ((n_crops, model.descriptor_dim(1)) if model.config.fusion == "per-crop"
            else (model.descriptor_dim(n_crops),))


def extract(
    root: PathLike,
    paths: Sequence[str],
    model: Union[CropModel, PixelModel],
    panorama: PanoramaConfig,
    out: Optional[PathLike] = None,
    batch_size: int = 8,
    num_workers: Optional[int] = None,
    device: str = "auto",
    on_error: str = "stop",
    progress: bool = True,
    prefetch: bool = True,
    engine: Optional[Engine] = None,
    append: bool = False,
    half: bool = False,
    overwrite: bool = True,
) -> ExtractResult:
    """Extract descriptors of ``root/paths`` with ``model``.

    Args:
        model: a :class:`~panoplace.runner.CropModel`, e.g. a
            :class:`panoplace.models.build.PlaceModel` (moved to ``device`` and put in eval mode),
            or a :class:`~panoplace.pixels.PixelModel` (pixel descriptors; the store records
            ``config["pixels"]`` instead of a model config).
        panorama: how files become crops (annular geometry is calibrated here when missing).
        out: HDF5 store to write; when given the run is resumable through ``<out>.part``.
        on_error: ``stop`` (raise :class:`ImageReadError` naming the first bad file) or ``skip``
            (leave bad images out and list them in :attr:`ExtractResult.skipped`).
        num_workers: decoding worker processes (default :func:`default_workers`).
        prefetch: with no worker process, decode the next batch in a thread while the model
            runs (:class:`panoplace.prefetch.Prefetcher`).
        engine: another execution engine than the in-process one (:class:`~panoplace.runner.Engine`).
        append: ``out`` is an existing store of the same model and config: only the images it
            does not hold yet are extracted, and ``out`` is rewritten (atomically) with them
            added at its end (a map that grows). The result holds the whole store.
        half: write ``out`` with float16 descriptors (see :func:`panoplace.store.save_descriptors`).
        overwrite: a partial run (``<out>.part``) made with other options is discarded (True) or
            refused with :class:`~panoplace.errors.OutputError` (False).

    Returns:
        :class:`ExtractResult` whose descriptors are ``(N_ok, D)`` or ``(N_ok, K, D)``.
    """
    paths = list(paths)
    if not paths:
        raise InputError("no images to extract")
    existing: Optional[DescriptorSet] = None
    if append:
        if out is None or not Path(out).is_file():
            raise InputError("--append needs an existing descriptor store as --out")
        existing = load_descriptors(out)
        known = set(existing.ids)
        paths = [p for p in paths if p not in known]
        log.info("appending to %s: %d images are already there, %d new", out, len(known), len(paths))
        if not paths:
            key, entry = _made_by(model)
            same = existing.config.get(key) == entry and existing.fingerprint == _fingerprint(model)
            if not same:
                raise DescriptorMismatchError(f"--append: {out} was extracted with another model")
            return ExtractResult(existing, [], 0.0)
    runner = ImageRunner(root, paths, panorama, batch_size=batch_size, device=device, on_error=on_error,
                         num_workers=num_workers, prefetch=prefetch, engine=engine, progress=progress,
                         desc="extract")
    n_crops = runner.n_crops
    if hasattr(model, "check_panorama"):  # an exported ONNX model takes one crop layout only
        model.check_panorama(runner.panorama)
    desc_shape = _descriptor_shape(model, n_crops)
    key, entry = _made_by(model)
    config = {"panorama": runner.panorama.to_dict(), key: entry}  # = PipelineConfig(...).to_dict() for a model
    fingerprint = _fingerprint(model)
    if existing is not None and (existing.fingerprint != fingerprint or existing.config != config):
        raise DescriptorMismatchError(f"--append: {out} was extracted with another model or config")
    made: List[DescriptorSet] = []

    def write(res: RunResult) -> None:
        keep = res.kept()
        made.append(DescriptorSet(res.rows[keep], [paths[i] for i in keep], config, fingerprint))
        if existing is not None:
            made[0] = append_descriptors(existing, made[0])
        if out is not None:
            save_descriptors(made[0], out, half=half)
            log.info("wrote %d descriptors of dimension %s to %s", len(made[0]), desc_shape, out)

    partial = (PartialSpec.beside(out, config, fingerprint, on_other="restart" if overwrite else "refuse")
               if out is not None else None)
    step = model_step(model, PixelModel.describe) if isinstance(model, PixelModel) else model_step(model)
    res = runner.run(step, desc_shape, partial, write)
    return ExtractResult(made[0], res.bad, res.seconds)


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
