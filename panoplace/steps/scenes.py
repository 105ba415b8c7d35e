"""The ``scene`` steps of the unified scene + place network: ``scene_predict`` (top scene
categories and place descriptors of images in one pass) and ``scene_train`` (a new scene head on
a frozen base)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

from panoplace.config import ModelConfig, PanoramaConfig, PipelineConfig
from panoplace.errors import InputError
from panoplace.scene import predict_images, train_scene
from panoplace.scene.loading import base_model_for_training, load_scene_model
from panoplace.scene.predict import DEFAULT_TOP, ScenePredictions
from panoplace.models.scene import ScenePlaceModel
from panoplace.scene.train import SceneTrainResult
from panoplace.steps.resolve import ImageSource, PathLike, image_list, with_overrides
from panoplace.presets import get_preset
from panoplace.outputs import Output, claim, given

__all__ = ["scene_predict", "scene_train"]


def _panorama(saved: Optional[PanoramaConfig], panorama: Optional[PanoramaConfig],
              overrides: Optional[Mapping[str, Any]]) -> PanoramaConfig:
    base = panorama if panorama is not None else (saved or PanoramaConfig())
    return with_overrides(PipelineConfig(panorama=base), overrides).panorama


def scene_predict(source: ImageSource, csv: Optional[PathLike] = None, out: Optional[PathLike] = None, *,
                  model: Optional[ScenePlaceModel] = None, checkpoint: Optional[PathLike] = None, places365: Optional[PathLike] = None,
                  categories: Optional[PathLike] = None, arch: Optional[str] = None,
                  place_checkpoint: Optional[PathLike] = None, aggregator: Optional[str] = None,
                  split: Any = None, panorama: Optional[PanoramaConfig] = None,
                  panorama_overrides: Optional[Mapping[str, Any]] = None, top: int = DEFAULT_TOP,
                  batch_size: int = 8, num_workers: Optional[int] = None, device: str = "auto",
                  on_error: str = "stop", progress: bool = True, return_features: bool = False,
                  overwrite: bool = True) -> ScenePredictions:
    """Scene probabilities and place descriptors of every image of ``source`` in one pass.

    Args:
        csv: the scene CSV to write (``image,rank,category,probability``, the ``top`` categories).
        out: the place descriptor store to write (as ``extract`` writes it).
        checkpoint: a scene checkpoint (``scene_train``), or the official Places365 files
            (``places365``, ``categories``, ``arch``) with a place branch from ``place_checkpoint``
            or ``aggregator`` over the shared base ending at ``split``
            (:func:`panoplace.scene.loading.load_scene_model`).
        model: instead, a unified model already in memory (with ``panorama``).
        panorama, panorama_overrides: replace / change the saved panorama config.
        return_features: also return the pooled scene features of every crop (to train a head on).
        overwrite: a partial run (``.part``) made with other options is discarded (default) or, False,
            refused with :class:`~panoplace.errors.OutputError`.

    Returns:
        :class:`~panoplace.scene.predict.ScenePredictions`.
    """
    root, paths = image_list(source)
    saved: Optional[PanoramaConfig] = None
    if model is None:
        model, saved = load_scene_model(checkpoint, places365, categories, arch, place_checkpoint, aggregator, split)
    elif any(v is not None for v in (checkpoint, places365, categories, arch, place_checkpoint, aggregator, split)):
        raise InputError("give the scene model one way: a model in memory or the files to load it from, not both")
    return predict_images(root, paths, model, _panorama(saved, panorama, panorama_overrides), csv_out=csv,
                          store_out=out, top=top, batch_size=batch_size, num_workers=num_workers, device=device,
                          on_error=on_error, progress=progress, return_features=return_features,
                          overwrite=overwrite)


def scene_train(data: PathLike, out: PathLike, *, val: Optional[PathLike] = None, val_fraction: float = 0.2,
                category_set: Optional[str] = None, checkpoint: Optional[PathLike] = None,
                places365: Optional[PathLike] = None, arch: Optional[str] = None, preset: Optional[str] = None,
                backbone: Optional[str] = None, weights: Optional[str] = None, split: Any = None,
                scene_cut: Any = None, panorama: Optional[PanoramaConfig] = None,
                panorama_overrides: Optional[Mapping[str, Any]] = None, hidden: int = 0, dropout: float = 0.0,
                epochs: int = 30, lr: float = 3e-3, weight_decay: float = 1e-4, seed: int = 0,
                confusion: Optional[PathLike] = None, log: Optional[PathLike] = None, batch_size: int = 8,
                num_workers: Optional[int] = None, device: str = "auto", progress: bool = True) -> SceneTrainResult:
    """Train a new scene head on a frozen base and save the unified model to ``out``.

    Args:
        data: ``DATA/<category>/*.jpg`` (``DATA/train`` + ``DATA/val`` when both exist) or a dataset
            CSV with a ``scene`` column; val: validation images (default: ``val_fraction`` of data).
        checkpoint: a scene checkpoint (its head is replaced) or a place checkpoint (its place branch
            is kept); places365 (+ arch): the official Places365 trunk as the base; otherwise a new
            model: ``backbone``/``weights`` (default: ``preset``'s, else EfficientNet-Lite0 with its
            offline ImageNet weights) with a GeM place branch.
        preset: builds the base from a preset (its backbone, weights, cut and panorama); not with
            ``checkpoint`` or ``places365``.
        split, scene_cut: where the shared base ends and which trunk features the head pools.
        confusion, log: the confusion-matrix PNG and per-epoch CSV (default beside ``out``).

    Returns:
        :class:`~panoplace.scene.train.SceneTrainResult`.
    """
    with claim([Output(Path(out), "out")], given(data, val, checkpoint, places365), overwrite=True):
        place_cut = None
        preset_panorama: Optional[PanoramaConfig] = None
        if preset is not None:
            if checkpoint is not None or places365 is not None:
                raise InputError("--preset builds a new base; leave out --checkpoint/--places365")
            config = get_preset(preset)
            preset_panorama, place_cut = config.panorama, config.model.cut
            backbone = backbone if backbone is not None else config.model.backbone
            weights = weights if weights is not None else config.model.weights
        d = ModelConfig()
        model, saved = base_model_for_training(checkpoint, places365, arch, backbone or d.backbone, weights or d.weights,
                                               split, scene_cut, place_cut=place_cut)
        pano = _panorama(saved or preset_panorama, panorama, panorama_overrides)
        return train_scene(data, model, pano, out, val_source=val, val_fraction=val_fraction,
                           category_set=category_set, hidden=hidden, dropout=dropout, epochs=epochs, lr=lr,
                           weight_decay=weight_decay, seed=seed, confusion_png=confusion, log_csv=log,
                           batch_size=batch_size, num_workers=num_workers, device=device, progress=progress)
