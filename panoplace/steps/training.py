"""The ``train`` step: weakly supervised triplet training of a place model from positions."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

from panoplace.config import PanoramaConfig, PipelineConfig
from panoplace.errors import InputError
from panoplace.steps.resolve import PathLike, place_model
from panoplace.training import TrainConfig, Trainer, TrainResult, load_split, split_by_area
from panoplace.models.checkpoint import load_linear_classifier
from panoplace.training.trainer import prepare_model
from panoplace.outputs import Output, claim
from panoplace.outputs import given as given_paths

__all__ = ["train"]

Specs = Union[PathLike, Sequence[PathLike]]


def _specs(specs: Specs) -> Sequence[PathLike]:
    return [specs] if isinstance(specs, (str, bytes)) or not isinstance(specs, Sequence) else list(specs)


def train(train_db: Specs, out: PathLike, *, train_queries: Specs = (), val_db: Specs = (),
          val_queries: Specs = (), val_area: Optional[float] = None, val_gap: float = 25.0,
          checkpoint: Optional[PathLike] = None, preset: Optional[str] = None,
          pipeline: Optional[PipelineConfig] = None, panorama: Optional[PanoramaConfig] = None,
          panorama_overrides: Optional[Mapping[str, Any]] = None,
          model_overrides: Optional[Mapping[str, Any]] = None, attention: Optional[str] = None,
          remain: Optional[float] = None, cam_classifier: Optional[PathLike] = None, resume: bool = False,
          options: Optional[Mapping[str, Any]] = None, progress: bool = True) -> TrainResult:
    """Train a place model (usually the checkpoint of ``cluster``) on traverses with positions.

    Args:
        train_db, train_queries: dataset spec(s) of the training traverses (several are joined;
            ``train_queries`` may be left out when ``train_db`` is one spec holding queries too).
        val_db, val_queries: validation traverses, or instead ``val_area``: train on that fraction
            of the route and validate on the rest beyond ``val_gap`` metres.
        out: output folder: ``latest.pt``, ``best.pt``, ``epochs.csv``, ``steps.csv``.
        checkpoint, preset, pipeline, panorama, panorama_overrides, model_overrides: the model to
            start from (:mod:`panoplace.steps.resolve`; NetVLAD needs a checkpoint).
        attention, remain, cam_classifier: an attention head before aggregation (``learned`` or
            ``cam`` with a linear classifier file).
        resume: continue from ``out/latest.pt`` (then give no model and no attention).
        options: :class:`~panoplace.training.TrainConfig` fields (epochs, lr, margin, ...); with
            ``resume`` they override the saved ones.

    Returns:
        :class:`~panoplace.training.TrainResult` (``best``/``latest`` checkpoint paths, history).
    """
    with claim([Output(Path(out), "out", folder=True, existing="resume")], given_paths(checkpoint, cam_classifier),
               overwrite=True):
        given = dict(options or {})
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = sorted(set(given) - known)
        if unknown:
            raise InputError(f"unknown training option(s) {unknown}; valid: {sorted(known)}")
        train_split = load_split(_specs(train_db), _specs(train_queries))
        if val_area is not None:
            if _specs(val_db) or _specs(val_queries):
                raise InputError("give either --val-area or --val-db/--val-queries, not both")
            train_split, val_split = split_by_area(train_split, val_area, gap=val_gap)
        elif _specs(val_db):
            val_split = load_split(_specs(val_db), _specs(val_queries))
        else:
            raise InputError("no validation data: give --val-db and --val-queries (other traverses) or --val-area")
        if resume:
            if checkpoint or preset or pipeline or attention or remain is not None or cam_classifier:
                raise InputError("--resume continues the model in OUT/latest.pt: leave out --checkpoint, "
                                 "--attention, --remain and --cam-classifier" + (" (and --preset)" if preset else ""))
            trainer = Trainer.resume(out, train_split, val_split, overrides=given, progress=progress)
        else:
            model, pano = place_model(checkpoint, preset=preset, pipeline=pipeline, panorama=panorama,
                                      panorama_overrides=panorama_overrides, model_overrides=model_overrides)
            config = TrainConfig(**given)
            classifier = load_linear_classifier(cam_classifier) if cam_classifier else None
            prepare_model(model, n_trainable=config.n_trainable, attention=attention, remain=remain,
                          cam_classifier=classifier, seed=config.seed)
            trainer = Trainer(model, pano, train_split, val_split, out, config, progress=progress)
        return trainer.fit()
