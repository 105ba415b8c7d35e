"""The ``extract`` step: images → place descriptors (an HDF5 store when ``out`` is given)."""

from __future__ import annotations

from pathlib import Path, PurePath
from typing import Any, Mapping, Optional

from panoplace.config import PanoramaConfig, PipelineConfig
from panoplace.errors import InputError
from panoplace.extract import ExtractResult
from panoplace.extract import extract as run_extraction
from panoplace.models.build import PlaceModel
from panoplace.outputs import Output, claim
from panoplace.pixels import PixelConfig, PixelModel, pixel_panorama
from panoplace.steps.resolve import ImageSource, PathLike, image_list, place_model, with_overrides

__all__ = ["extract"]


def extract(source: ImageSource, out: Optional[PathLike] = None, *, checkpoint: Optional[PathLike] = None,
            model: Optional[PlaceModel] = None, preset: Optional[str] = None,
            pipeline: Optional[PipelineConfig] = None, panorama: Optional[PanoramaConfig] = None,
            panorama_overrides: Optional[Mapping[str, Any]] = None,
            model_overrides: Optional[Mapping[str, Any]] = None, batch_size: int = 8,
            num_workers: Optional[int] = None, device: str = "auto", on_error: str = "stop",
            progress: bool = True, append: bool = False, half: bool = False,
            overwrite: bool = True, pixels: Optional[PixelConfig] = None) -> ExtractResult:
    """Describe every image of ``source``; write the store ``out`` (resumable) when given.

    Args:
        source: a folder, ``.txt`` list, dataset CSV, one image, or an
            :class:`~panoplace.data.frames.ImageSet`.
        out: the HDF5 descriptor store to write (a killed run resumes from ``<out>.part``).
        checkpoint, model, preset, pipeline, panorama, panorama_overrides, model_overrides: the
            model (one way; see :mod:`panoplace.steps.resolve`). NetVLAD needs a checkpoint.
        on_error: ``stop`` at the first unreadable image or ``skip`` it (listed in the result).
        append: ``out`` exists: describe only the images it lacks and add them (a map that grows).
        half: store float16 descriptors (read back as float32).
        overwrite: replace an existing ``out`` and discard a partial run (``<out>.part``) made with
            other options (the default); False refuses both with
            :class:`~panoplace.errors.OutputError` (the CLI without ``--overwrite``). ``out`` is
            never one of the inputs and is locked while it is written (:mod:`panoplace.outputs`).
        pixels: pixel descriptors instead of a model (:mod:`panoplace.pixels`): each crop as a
            patch-normalised grey thumbnail of this size, on the CPU. Takes no model argument; the
            panorama arguments still say how images become crops, whose size is the pixel size.

    Returns:
        :class:`panoplace.extract.ExtractResult`: ``descriptors`` (a
        :class:`~panoplace.store.DescriptorSet`), ``skipped`` images, ``seconds``.

    Shape:
        ``result.descriptors.descriptors``: float32 ``(N, D)``, or ``(N, K, D)`` with per-crop fusion;
        pixels: ``(N, K * width * height)``.

    Example (two random images, GeM pooling of an untrained backbone):
        >>> import tempfile, cv2, numpy as np
        >>> from pathlib import Path
        >>> from panoplace.steps import extract
        >>> folder = Path(tempfile.mkdtemp())
        >>> for i in range(2):
        ...     pixels = np.random.default_rng(i).integers(0, 255, (48, 64, 3), np.uint8)
        ...     _ = cv2.imwrite(str(folder / f"{i}.png"), pixels)
        >>> res = extract(folder, folder / "d.h5", model_overrides={"aggregator": "gem", "weights": "none"},
        ...               panorama_overrides={"crop_size": (64, 64)}, progress=False)
        >>> res.descriptors.descriptors.shape, res.descriptors.ids
        ((2, 80), ['0.png', '1.png'])

    Pixel descriptors of the same images (64x32 grey, 8x8 patches; the store says what it holds):
        >>> from panoplace.pixels import PixelConfig
        >>> px = extract(folder, folder / "p.h5", pixels=PixelConfig(64, 32), progress=False)
        >>> px.descriptors.descriptors.shape, px.descriptors.kind, px.descriptors.config["pixels"]
        ((2, 2048), 'pixels', {'width': 64, 'height': 32, 'patch': 8})
    """
    if pixels is not None:
        given = [name for name, value in (("checkpoint", checkpoint), ("model", model), ("preset", preset),
                                          ("pipeline", pipeline), ("model_overrides", model_overrides))
                 if value]
        if given:
            raise InputError(f"pixel descriptors use no model: leave out {', '.join(given)}")
        if panorama_overrides and "crop_size" in panorama_overrides:
            raise InputError("pixel descriptors are made from crops of the pixel size: leave out the crop size")
    target = Output(Path(out), "out", existing="update" if append else "refuse") if out is not None else None
    inputs = [checkpoint] + ([source] if isinstance(source, (str, PurePath)) else [])
    with claim([target], inputs, overwrite=overwrite):
        root, paths = image_list(source)
        if pixels is not None:
            pano = with_overrides(PipelineConfig(panorama=panorama or PanoramaConfig()), panorama_overrides).panorama
            return run_extraction(root, paths, PixelModel(pixels), pixel_panorama(pano, pixels), out=out,
                                  batch_size=batch_size, num_workers=num_workers, device="cpu", on_error=on_error,
                                  progress=progress, append=append, half=half, overwrite=overwrite)
        net, pano = place_model(checkpoint, model=model, preset=preset, pipeline=pipeline, panorama=panorama,
                                panorama_overrides=panorama_overrides, model_overrides=model_overrides)
        return run_extraction(root, paths, net, pano, out=out, batch_size=batch_size, num_workers=num_workers,
                              device=device, on_error=on_error, progress=progress, append=append, half=half,
                              overwrite=overwrite)
