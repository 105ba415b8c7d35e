"""Argument groups shared by several verbs (model, panorama and preset options) and their
translation into the arguments of :mod:`panoplace.steps`.

Model options default to None so that the ones given can be told apart: they override the
fields of ``--preset`` (or of the library defaults), as the panorama options override the
checkpoint's or the preset's panorama config.
"""

from __future__ import annotations

import argparse
from typing import Any, Dict, List, Optional, Tuple

from panoplace.cli.argtypes import existing_file, float_between, positive_int, weights
from panoplace.config import AGGREGATORS, FUSIONS, PROJECTIONS, ModelConfig, PanoramaConfig, PipelineConfig
from panoplace.errors import InputError
from panoplace.models.build import PlaceModel
from panoplace.panorama.annular import load_geometry
from panoplace.panorama.dualfisheye import load_calibration
from panoplace.presets import PRESETS
from panoplace.steps.resolve import pipeline_config, place_model, with_overrides

#: Angles around the panorama (window width, stride): (0, 360] degrees.
DEGREES_AROUND = float_between(0.0, 360.0, lo_open=True)
#: Elevations: [-90, 90] degrees.
ELEVATION = float_between(-90.0, 90.0)

#: argparse dests of :func:`add_model_args` other than ``--checkpoint`` (what a checkpoint fixes).
MODEL_DESTS = ["backbone", "weights", "cut", "aggregator", "num_clusters", "fusion", "agg_param"]


def add_overwrite_arg(p: "argparse._ActionsContainer", what: str = "an output of an earlier run") -> None:
    """``--overwrite``: replace what an earlier run wrote at the output paths (refused by default;
    an input of the command is never overwritten, see :mod:`panoplace.outputs`)."""
    p.add_argument("--overwrite", action="store_true",
                   help=f"replace {what} (default: refuse); an input of the command is never overwritten")


def spec_paths(*specs: Any) -> List[str]:
    """The paths named in dataset specs (``kind:A,B,key=value``, ``A,B``, plain paths or lists of
    them), for the outputs check: every part that could be a path (entries that do not exist are
    ignored by :func:`panoplace.outputs.claim`)."""
    found: List[str] = []
    for spec in specs:
        if spec is None:
            continue
        if isinstance(spec, (list, tuple)):
            found.extend(spec_paths(*spec))
            continue
        text = str(spec)
        found.append(text)
        head, sep, rest = text.partition(":")
        body = rest if sep and head.isalpha() and len(head) > 1 else text
        for part in body.split(","):
            found.append(part.partition("=")[2] if "=" in part else part)
            found.append(part.split("@")[0])
    return [f for f in found if f]


def add_panorama_args(p: argparse.ArgumentParser) -> None:
    """Options that decide how an image file becomes crops."""
    g = p.add_argument_group("panorama (how an image becomes crops)")
    g.add_argument("--projection", choices=PROJECTIONS, default=None,
                   help="plain image, equirectangular band, panoramic annular image, dual-fisheye "
                        "frame (two fisheyes side by side) or horizontal-cross cubemap "
                        "(default: from the checkpoint or preset, else plain)")
    g.add_argument("--calibration", metavar="JSON", default=None, type=existing_file("calibration file"),
                   help="annular: annulus geometry file (from `panoplace unwrap --save-calibration`; "
                        "without one the annulus is auto-calibrated); dual-fisheye: lens calibration "
                        "(centres, radii, field of view, rotation; without one the default for the frame size)")
    g.add_argument("--crops", type=positive_int, default=None, metavar="K",
                   help="K equal crops around the panorama")
    g.add_argument("--window-deg", type=DEGREES_AROUND, default=None,
                   help="sliding window width in degrees, in (0, 360] (with --stride-deg)")
    g.add_argument("--stride-deg", type=DEGREES_AROUND, default=None,
                   help="sliding window stride in degrees, in (0, 360] (with --window-deg)")
    g.add_argument("--crop-size", type=positive_int, nargs=2, default=None, metavar=("H", "W"),
                   help="size each crop is resized to (default 224 224)")
    g.add_argument("--elevation", type=ELEVATION, nargs=2, default=None, metavar=("TOP", "BOTTOM"),
                   help="elevation band kept from an equirectangular panorama, degrees")


def add_preset_arg(p: "argparse._ActionsContainer", what: str = "the model built") -> None:
    """``--preset NAME`` (exact names of :data:`panoplace.presets.PRESETS`)."""
    p.add_argument("--preset", choices=list(PRESETS), default=None,
                   help=f"named panorama + model configuration for {what}; model and panorama options "
                        "given override its fields (" + "; ".join(f"{n}: {v.description}" for n, v in PRESETS.items())
                        + ")")


def add_model_args(p: argparse.ArgumentParser, checkpoint: bool = True) -> None:
    """Options that decide the model (ignored parts are taken from --checkpoint)."""
    g = p.add_argument_group("model")
    if checkpoint:
        g.add_argument("--checkpoint", metavar="FILE", default=None, type=existing_file("checkpoint"),
                       help="model checkpoint (panoplace, seed or pytorch-NetVlad format); "
                            "its config is used as is")
    d = ModelConfig()
    g.add_argument("--backbone", default=None, help=f"backbone name (default {d.backbone})")
    g.add_argument("--weights", default=None, type=weights,
                   help="imagenet (offline for efficientnet_lite0), none, or a weights file (default imagenet)")
    g.add_argument("--cut", default=None, help="layer the local features come from (backbone-specific)")
    g.add_argument("--aggregator", choices=AGGREGATORS, default=None,
                   help=f"pooling of local features (default {d.aggregator})")
    g.add_argument("--num-clusters", type=positive_int, default=None,
                   help=f"NetVLAD clusters (default {d.num_clusters})")
    g.add_argument("--fusion", choices=FUSIONS, default=None,
                   help="how crop descriptors become one panoramic descriptor (default add)")
    g.add_argument("--agg-param", action="append", default=[], metavar="KEY=VALUE",
                   help="a size of gem_fc/mixvpr/boq/salad, e.g. fc_dim=2048 or num_clusters=32 "
                        "(repeat; missing ones take the published defaults)")


def _calibration(path: str, projection: Optional[str]) -> Dict[str, Any]:
    """The calibration field of ``--calibration``: a dual-fisheye lens calibration with
    ``--projection dual-fisheye``, an annulus geometry with another projection; without
    ``--projection`` (the checkpoint's or preset's applies) whichever of the two the file holds."""
    if projection == "dual-fisheye":
        return {"fisheye": load_calibration(path).to_dict()}
    try:
        return {"annulus": load_geometry(path).to_dict()}
    except InputError:
        if projection is not None:
            raise
        try:
            return {"fisheye": load_calibration(path).to_dict()}
        except InputError:
            pass
        raise


def panorama_overrides(args: argparse.Namespace) -> Dict[str, Any]:
    """The panorama config fields given by the panorama options."""
    d: Dict[str, Any] = {}
    if args.projection is not None:
        d["projection"] = args.projection
    if args.calibration:
        d.update(_calibration(args.calibration, args.projection))
    if args.crops is not None:
        d["n_crops"] = args.crops
    if args.window_deg is not None or args.stride_deg is not None:
        d["window_deg"], d["stride_deg"] = args.window_deg, args.stride_deg
    if args.crop_size is not None:
        d["crop_size"] = list(args.crop_size)
    if args.elevation is not None:
        top, bottom = args.elevation
        if top <= bottom:
            raise InputError(f"--elevation TOP BOTTOM: TOP ({top:g}) must be above BOTTOM ({bottom:g})")
        d["elevation"] = list(args.elevation)
    return d


def model_overrides(args: argparse.Namespace) -> Dict[str, Any]:
    """The model config fields given by the model options (``--cut 3`` becomes the int 3)."""
    d: Dict[str, Any] = {}
    for dest, name in (("backbone", "backbone"), ("weights", "weights"), ("aggregator", "aggregator"),
                       ("num_clusters", "num_clusters"), ("fusion", "fusion")):
        if getattr(args, dest, None) is not None:
            d[name] = getattr(args, dest)
    cut = getattr(args, "cut", None)
    if cut is not None:
        d["cut"] = int(cut) if str(cut).lstrip("-").isdigit() else cut
    params: Dict[str, str] = {}
    for item in getattr(args, "agg_param", None) or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--agg-param takes KEY=VALUE, got {item!r}")
        params[key.strip()] = value.strip()
    if params:
        d["aggregator_params"] = params
    return d


def panorama_from_args(args: argparse.Namespace, base: Optional[PanoramaConfig] = None) -> PanoramaConfig:
    """PanoramaConfig from ``base`` (e.g. the checkpoint's) with the options given on the line."""
    return with_overrides(PipelineConfig(panorama=base or PanoramaConfig()), panorama_overrides(args)).panorama


def model_from_args(args: argparse.Namespace) -> ModelConfig:
    """ModelConfig from ``--preset`` (when the verb has it) and the model options."""
    return pipeline_from_args(args).model


def pipeline_from_args(args: argparse.Namespace) -> PipelineConfig:
    """The config of a model to build: ``--preset`` (or the defaults) with the options given."""
    return pipeline_config(getattr(args, "preset", None), panorama_overrides=panorama_overrides(args),
                           model_overrides=model_overrides(args))


def model_and_panorama_from_args(args: argparse.Namespace) -> Tuple[PlaceModel, PanoramaConfig]:
    """The place model and panorama config of the options: ``--checkpoint`` (its panorama config,
    overridden by the panorama options given), else ``--preset`` and the model options
    (:func:`panoplace.steps.resolve.place_model`)."""
    return place_model(getattr(args, "checkpoint", None), preset=getattr(args, "preset", None),
                       panorama_overrides=panorama_overrides(args),
                       model_overrides=model_overrides(args))
