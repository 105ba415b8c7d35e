"""What the steps share: turning a step's arguments into images, a pipeline config and a model.

A step takes its model in one of three ways, never two at once:

- ``checkpoint``: a checkpoint file (any format :func:`panoplace.models.build.load_checkpoint`
  reads); its saved panorama config is the base;
- ``model``: a model already in memory (with ``panorama``, default the plain panorama);
- ``preset`` (a name in :data:`panoplace.presets.PRESETS`) or ``pipeline`` (a
  :class:`~panoplace.config.PipelineConfig`): a new model is built (default: the library defaults).

``panorama`` replaces the base panorama config; ``panorama_overrides`` / ``model_overrides``
(dicts of config fields) then change single fields, as options given on the command line do.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, List, Mapping, Optional, Tuple, Union

from panoplace.config import ModelConfig, PanoramaConfig, PipelineConfig
from panoplace.data.frames import ImageSet
from panoplace.errors import InputError
from panoplace.extract import load_model
from panoplace.runner import list_images
from panoplace.models.build import PlaceModel
from panoplace.presets import get_preset

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
ImageSource = Union[str, Path, ImageSet]
"""A folder of images, a ``.txt`` list, a dataset CSV, one image file, or an :class:`ImageSet`."""

__all__ = ["ImageSource", "PathLike", "image_list", "pipeline_config", "place_model", "with_overrides"]


def image_list(source: ImageSource) -> Tuple[Path, List[str]]:
    """``(root, relative paths)`` of an image source (see :data:`ImageSource`)."""
    if isinstance(source, ImageSet):
        if len(source) == 0:
            raise InputError(f"image set {source.name!r} lists no images")
        return Path(source.root), list(source.paths)
    return list_images(source)


def with_overrides(pipeline: PipelineConfig, panorama_overrides: Optional[Mapping[str, Any]] = None,
                   model_overrides: Optional[Mapping[str, Any]] = None) -> PipelineConfig:
    """``pipeline`` with single fields replaced (unknown field names raise :class:`InputError`)."""
    panorama, model = pipeline.panorama, pipeline.model
    if panorama_overrides:
        panorama = PanoramaConfig.from_dict({**panorama.to_dict(), **dict(panorama_overrides)})
        check_panorama_overrides(panorama_overrides, panorama)
    if model_overrides:
        model = ModelConfig.from_dict({**model.to_dict(), **dict(model_overrides)})
        netvlad_only = [k for k in ("num_clusters", "vladv2") if model_overrides.get(k) not in (None, False)]
        if netvlad_only and model.aggregator != "netvlad":
            flags = "/".join("--" + k.replace("_", "-") for k in netvlad_only)
            raise InputError(f"{'/'.join(netvlad_only)} ({flags}) applies only to the netvlad aggregator; "
                             f"this model's is {model.aggregator}")
    return PipelineConfig(panorama=panorama, model=model)


# panorama fields that only some projections use
_PROJECTION_FIELDS = {
    "annulus": (("annular",), "an annulus geometry (--calibration)"),
    "fisheye": (("dual-fisheye",), "a dual-fisheye calibration (--calibration)"),
    "elevation": (("equirect", "dual-fisheye", "cubemap"), "an elevation band (--elevation)"),
}


def check_panorama_overrides(overrides: Mapping[str, Any], panorama: PanoramaConfig) -> None:
    """Refuse panorama fields given for a config that does not use them (they would change nothing).

    Raises:
        InputError: an annulus geometry without the annular projection, a dual-fisheye calibration
            without dual-fisheye, an elevation band with ``plain``/``annular``, or ``n_crops`` next
            to sliding windows (``window_deg``).

    >>> check_panorama_overrides({"elevation": [30, -30]}, PanoramaConfig(projection="plain"))
    Traceback (most recent call last):
    panoplace.errors.InputError: an elevation band (--elevation) applies only to the equirect, dual-fisheye, cubemap projection(s); this one is plain
    """
    for key, (projections, what) in _PROJECTION_FIELDS.items():
        if overrides.get(key) is not None and panorama.projection not in projections:
            raise InputError(f"{what} applies only to the {', '.join(projections)} projection(s); "
                             f"this one is {panorama.projection}")
    if overrides.get("n_crops") is not None and panorama.window_deg is not None:
        raise InputError("the number of crops (--crops) does nothing with sliding windows (--window-deg): "
                         "give one of the two")


def pipeline_config(preset: Optional[str] = None, pipeline: Optional[PipelineConfig] = None, *,
                    panorama: Optional[PanoramaConfig] = None,
                    panorama_overrides: Optional[Mapping[str, Any]] = None,
                    model_overrides: Optional[Mapping[str, Any]] = None) -> PipelineConfig:
    """The config of a model to build: ``preset`` or ``pipeline`` (default: the library defaults),
    its panorama replaced by ``panorama`` when given, then the overrides applied.

    >>> pipeline_config("equirect", model_overrides={"num_clusters": 8}).model.num_clusters
    8
    """
    if preset is not None and pipeline is not None:
        raise InputError("give a preset or a pipeline config, not both")
    base = get_preset(preset) if preset is not None else (pipeline or PipelineConfig())
    if panorama is not None:
        base = PipelineConfig(panorama=panorama, model=base.model)
    return with_overrides(base, panorama_overrides, model_overrides)


def place_model(checkpoint: Optional[PathLike] = None, *, model: Optional[PlaceModel] = None,
                preset: Optional[str] = None, pipeline: Optional[PipelineConfig] = None,
                panorama: Optional[PanoramaConfig] = None,
                panorama_overrides: Optional[Mapping[str, Any]] = None,
                model_overrides: Optional[Mapping[str, Any]] = None) -> Tuple[PlaceModel, PanoramaConfig]:
    """The place model and panorama config a step runs with (see the module docstring).

    Raises:
        InputError: two ways of giving the model, an unknown preset or field, or NetVLAD asked to
            be built without a checkpoint (its centroids come from ``cluster``).
    """
    given = [name for name, value in (("checkpoint", checkpoint), ("model", model), ("preset", preset),
                                      ("pipeline", pipeline)) if value is not None]
    if len(given) > 1:
        raise InputError(f"give the model one way: {' or '.join(given)}, not both")
    if checkpoint is not None or model is not None:
        if model_overrides:
            raise InputError(f"model options {sorted(model_overrides)} would change nothing: the "
                             f"{'checkpoint' if checkpoint is not None else 'model given'} fixes the model")
        if checkpoint is not None:
            loaded, base = load_model(checkpoint)
        else:
            loaded, base = model, PanoramaConfig()
        base = panorama if panorama is not None else base
        return loaded, with_overrides(PipelineConfig(panorama=base), panorama_overrides).panorama
    config = pipeline_config(preset, pipeline, panorama=panorama, panorama_overrides=panorama_overrides,
                             model_overrides=model_overrides)
    built, pano = load_model(None, config)
    return built, pano
