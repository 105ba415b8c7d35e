"""The ``cluster`` step: NetVLAD centroids from local features of images → a model checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

from panoplace.cluster import cluster_images
from panoplace.config import PanoramaConfig, PipelineConfig
from panoplace.steps.resolve import ImageSource, PathLike, image_list, pipeline_config
from panoplace.outputs import Output, claim, given

__all__ = ["cluster"]


def cluster(source: ImageSource, out: PathLike, *, preset: Optional[str] = None,
            pipeline: Optional[PipelineConfig] = None, panorama: Optional[PanoramaConfig] = None,
            panorama_overrides: Optional[Mapping[str, Any]] = None,
            model_overrides: Optional[Mapping[str, Any]] = None, n_images: int = 500, per_image: int = 100,
            seed: int = 0, batch_size: int = 8, num_workers: Optional[int] = None, device: str = "auto",
            progress: bool = True) -> Path:
    """Build the model of ``preset``/``pipeline`` (NetVLAD), initialise its centroids by k-means on
    local features of up to ``n_images`` images of ``source`` and save it to ``out``.

    Args:
        source: the images (usually the map), see :data:`panoplace.steps.resolve.ImageSource`.
        out: the checkpoint to write; ``extract(checkpoint=out)`` loads it as is.
        preset, pipeline, panorama, panorama_overrides, model_overrides: the model to build
            (:func:`panoplace.steps.resolve.pipeline_config`); ``model_overrides={"vladv2": True}``
            for the NetVLAD v2 initialisation.
        per_image: local features sampled per image.

    Returns:
        ``out`` as a :class:`~pathlib.Path`.

    Example (three random images, an untrained backbone, 4 clusters):
        >>> import tempfile, cv2, numpy as np
        >>> from pathlib import Path
        >>> from panoplace.steps import cluster, extract
        >>> folder = Path(tempfile.mkdtemp())
        >>> for i in range(3):
        ...     pixels = np.random.default_rng(i).integers(0, 255, (48, 64, 3), np.uint8)
        ...     _ = cv2.imwrite(str(folder / f"{i}.png"), pixels)
        >>> ckpt = cluster(folder, folder / "model.pt", model_overrides={"num_clusters": 4, "weights": "none"},
        ...                panorama_overrides={"crop_size": (64, 64)}, per_image=20, progress=False)
        >>> extract(folder, checkpoint=ckpt, progress=False).descriptors.descriptors.shape
        (3, 320)
    """
    with claim([Output(Path(out), "out")], given(source), overwrite=True):
        config = pipeline_config(preset, pipeline, panorama=panorama, panorama_overrides=panorama_overrides,
                                 model_overrides=model_overrides)
        root, paths = image_list(source)
        cluster_images(root, paths, config, out=out, n_images=n_images, per_image=per_image, seed=seed,
                       batch_size=batch_size, num_workers=num_workers, device=device, progress=progress)
        return Path(out)
