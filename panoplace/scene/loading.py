"""Getting a unified scene + place model from what the user has: a scene checkpoint, the
official Places365 files, a place-model checkpoint, or nothing (the offline ImageNet backbone).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional, Tuple, Union

from panoplace.config import ModelConfig, PanoramaConfig
from panoplace.errors import CheckpointError, InputError
from panoplace.models.backbones import PLACES365_CLASSES
from panoplace.models.checkpoint import (
    from_places365,
    is_scene_checkpoint,
    load_checkpoint,
    load_scene_checkpoint,
    place_model_from,
    read_checkpoint,
    scene_model_from,
)
from panoplace.models.scene import SceneConfig, ScenePlaceModel, build_scene_model, from_place_model
from panoplace.scene.categories import PLACES365_CATEGORIES, find_places365, load_categories, missing_places365_error

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
UNTRAINED = "untrained"


def load_scene_model(checkpoint: Optional[PathLike] = None, places365: Optional[PathLike] = None,
                     categories: Optional[PathLike] = None, arch: Optional[str] = None,
                     place_checkpoint: Optional[PathLike] = None, aggregator: Optional[str] = None,
                     split: Any = None) -> Tuple[ScenePlaceModel, Optional[PanoramaConfig]]:
    """The unified model to run, and the panorama config saved with it (or None).

    Args:
        checkpoint: a scene checkpoint (``panoplace scene train``); used as is.
        places365: an official Places365 checkpoint; without it and without ``checkpoint`` the
            torch hub cache is searched (:func:`panoplace.scene.find_places365`).
        categories: its category list (default: ``categories_places365.txt`` beside it).
        place_checkpoint: a place model built on the same Places365 weights (keeps its NetVLAD);
            else the place branch is ``aggregator`` (default GeM) over ``layer4``.
        split: trunk cut shared by both branches.

    Raises:
        CheckpointError: no scene weights anywhere (one line saying how to pass them), or
            unreadable/mismatched files.
    """
    if checkpoint is not None:
        extra = [flag for flag, v in (("--places365", places365), ("--categories", categories), ("--arch", arch),
                                      ("--place-checkpoint", place_checkpoint), ("--aggregator", aggregator),
                                      ("--split", split)) if v is not None]
        if extra:
            raise InputError(f"--checkpoint is a whole scene model (categories, split and place branch inside): "
                             f"do not combine it with {', '.join(extra)}")
        return load_scene_checkpoint(checkpoint)
    if places365 is None:
        found = find_places365()
        if found is None:
            raise missing_places365_error()
        places365, found_cats = found
        categories = categories or found_cats
        log.info("using the Places365 weights found in the torch hub cache: %s", places365)
    p365 = Path(places365)
    if not p365.is_file():
        raise CheckpointError(f"Places365 checkpoint {p365} does not exist; pass the official "
                              "resnet18_places365.pth.tar or wideresnet18_places365.pth.tar with --places365 FILE "
                              "--categories FILE")
    if categories is None:
        beside = p365.parent / PLACES365_CATEGORIES
        if not beside.is_file():
            raise InputError(f"no category list for {p365}: pass {PLACES365_CATEGORIES} with --categories FILE")
        categories = beside
    names = load_categories(categories)
    panorama = None
    place: Any = None
    if place_checkpoint is not None:
        if aggregator is not None:
            raise InputError("--aggregator comes from --place-checkpoint; give one or the other")
        place, panorama = load_checkpoint(place_checkpoint)
    elif aggregator is not None:
        place = ModelConfig(aggregator=aggregator, cut="layer4")
    return from_places365(p365, names, place=place, split=split, arch=arch), panorama


def base_model_for_training(checkpoint: Optional[PathLike] = None, places365: Optional[PathLike] = None,
                            arch: Optional[str] = None, backbone: str = "efficientnet_lite0",
                            weights: str = "imagenet", split: Any = None, scene_cut: Any = None,
                            place_cut: Any = None) -> Tuple[ScenePlaceModel, Optional[PanoramaConfig]]:
    """The unified model whose scene head ``panoplace scene train`` replaces, and its panorama
    config (or None). Its head is a placeholder (category set ``"untrained"``).

    Args:
        checkpoint: a scene checkpoint (everything but the head is kept) or a place-model checkpoint
            (``panoplace cluster``/``train``; its place branch is kept).
        places365: an official Places365 checkpoint: its trunk is the frozen base of the new head.
        backbone, weights, place_cut: otherwise, the backbone (default: EfficientNet-Lite0 with its
            offline ImageNet weights) with a GeM place branch at ``place_cut``.
        split, scene_cut: where the shared base ends and which trunk features the head pools.
    """
    placeholder = ["untrained_0", "untrained_1"]
    if checkpoint is not None and places365 is not None:
        raise InputError("give --checkpoint or --places365, not both")
    if checkpoint is not None:
        ckpt = read_checkpoint(checkpoint)  # read once: a scene or a place checkpoint
        if is_scene_checkpoint(ckpt):
            if split is not None or scene_cut is not None:
                raise InputError("--split/--scene-cut would change nothing: the scene checkpoint fixes them")
            return scene_model_from(ckpt)
        place, panorama = place_model_from(ckpt)
        return from_place_model(place, placeholder, UNTRAINED, split=split, scene_cut=scene_cut), panorama
    if places365 is not None:
        if scene_cut not in (None, "layer4"):
            raise InputError("with --places365 the scene head reads layer4 (the Places365 classifier's features)")
        names = [f"untrained_{i}" for i in range(PLACES365_CLASSES)]
        model = from_places365(places365, names, split=split, arch=arch)
        model.category_set = UNTRAINED
        return model, None
    cfg = SceneConfig(place=ModelConfig(backbone=backbone, weights=weights, cut=place_cut, aggregator="gem"),
                      split=split, scene_cut=scene_cut, n_classes=2)
    return build_scene_model(cfg, placeholder, UNTRAINED), None
