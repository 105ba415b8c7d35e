"""Argument groups shared by several verbs (model and panorama options)."""

from __future__ import annotations

import argparse
from typing import Any, Dict, Optional, Tuple

from panoplace.config import AGGREGATORS, FUSIONS, PROJECTIONS, ModelConfig, PanoramaConfig, PipelineConfig
from panoplace.errors import InputError
from panoplace.panorama.annular import load_geometry
from panoplace.panorama.dualfisheye import load_calibration


def add_panorama_args(p: argparse.ArgumentParser) -> None:
    """Options that decide how an image file becomes crops."""
    g = p.add_argument_group("panorama (how an image becomes crops)")
    g.add_argument("--projection", choices=PROJECTIONS, default=None,
                   help="plain image, equirectangular band, panoramic annular image, dual-fisheye "
                        "frame (two fisheyes side by side) or horizontal-cross cubemap "
                        "(default: from the checkpoint, else plain)")
    g.add_argument("--calibration", metavar="JSON", default=None,
                   help="annular: annulus geometry file (from `panoplace unwrap --save-calibration`; "
                        "without one the annulus is auto-calibrated); dual-fisheye: lens calibration "
                        "(centres, radii, field of view, rotation; without one the default for the frame size)")
    g.add_argument("--crops", type=int, default=None, metavar="K",
                   help="K equal crops around the panorama")
    g.add_argument("--window-deg", type=float, default=None, help="sliding window width in degrees")
    g.add_argument("--stride-deg", type=float, default=None, help="sliding window stride in degrees")
    g.add_argument("--crop-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help="size each crop is resized to (default 224 224)")
    g.add_argument("--elevation", type=float, nargs=2, default=None, metavar=("TOP", "BOTTOM"),
                   help="elevation band kept from an equirectangular panorama, degrees")


def add_model_args(p: argparse.ArgumentParser, checkpoint: bool = True) -> None:
    """Options that decide the model (ignored parts are taken from --checkpoint)."""
    g = p.add_argument_group("model")
    if checkpoint:
        g.add_argument("--checkpoint", metavar="FILE", default=None,
                       help="model checkpoint (panoplace, seed or pytorch-NetVlad format); "
                            "its config is used as is")
    d = ModelConfig()
    g.add_argument("--backbone", default=d.backbone, help=f"backbone name (default {d.backbone})")
    g.add_argument("--weights", default=d.weights,
                   help="imagenet (offline for efficientnet_lite0), none, or a weights file")
    g.add_argument("--cut", default=None, help="layer the local features come from (backbone-specific)")
    g.add_argument("--aggregator", choices=AGGREGATORS, default=d.aggregator,
                   help=f"pooling of local features (default {d.aggregator})")
    g.add_argument("--num-clusters", type=int, default=d.num_clusters,
                   help=f"NetVLAD clusters (default {d.num_clusters})")
    g.add_argument("--fusion", choices=FUSIONS, default=d.fusion,
                   help="how crop descriptors become one panoramic descriptor (default add)")
    g.add_argument("--agg-param", action="append", default=[], metavar="KEY=VALUE",
                   help="a size of gem_fc/mixvpr/boq/salad, e.g. fc_dim=2048 or num_clusters=32 "
                        "(repeat; missing ones take the published defaults)")


def panorama_from_args(args: argparse.Namespace, base: Optional[PanoramaConfig] = None) -> PanoramaConfig:
    """PanoramaConfig from ``base`` (e.g. the checkpoint's) with the options given on the line."""
    d = (base or PanoramaConfig()).to_dict()
    if args.projection is not None:
        d["projection"] = args.projection
    if args.calibration:
        if d["projection"] == "dual-fisheye":
            d["fisheye"] = load_calibration(args.calibration).to_dict()
        else:
            d["annulus"] = load_geometry(args.calibration).to_dict()
    if args.crops is not None:
        d["n_crops"] = args.crops
    if args.window_deg is not None or args.stride_deg is not None:
        d["window_deg"], d["stride_deg"] = args.window_deg, args.stride_deg
    if args.crop_size is not None:
        d["crop_size"] = list(args.crop_size)
    if args.elevation is not None:
        d["elevation"] = list(args.elevation)
    return PanoramaConfig.from_dict(d)


def model_from_args(args: argparse.Namespace) -> ModelConfig:
    """ModelConfig from the model options."""
    cut = args.cut
    if cut is not None and str(cut).lstrip("-").isdigit():
        cut = int(cut)
    params: Dict[str, str] = {}
    for item in getattr(args, "agg_param", None) or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--agg-param takes KEY=VALUE, got {item!r}")
        params[key.strip()] = value.strip()
    return ModelConfig(backbone=args.backbone, weights=args.weights, cut=cut if cut is not None else ModelConfig().cut,
                       aggregator=args.aggregator, num_clusters=args.num_clusters, fusion=args.fusion,
                       aggregator_params=params)


def pipeline_from_args(args: argparse.Namespace) -> PipelineConfig:
    return PipelineConfig(panorama=panorama_from_args(args), model=model_from_args(args))


def model_and_panorama_from_args(args: argparse.Namespace) -> Tuple[Any, PanoramaConfig]:
    """The place model and panorama config of the options: ``--checkpoint`` (its panorama config,
    overridden by the panorama options given) or else the model options (``extract.load_model``)."""
    from panoplace.extract import load_model

    if args.checkpoint:
        model, ckpt_panorama = load_model(args.checkpoint)
        return model, panorama_from_args(args, ckpt_panorama)
    return load_model(None, pipeline_from_args(args))
