"""Importers of published VPR checkpoints: CosPlace, EigenPlaces, MixVPR, BoQ and SALAD.

Each reads the state dict the authors publish (the user's local file; panoplace never
downloads), tells the architecture from the keys and shapes, builds the matching panoplace
model and maps every key onto it. Nothing may be left over and nothing may be missing: one
:class:`CheckpointError` line names the first keys otherwise.

===========  ===========================================  ===================================  ============
format       published file (state dict keys)             panoplace model                      descriptor
===========  ===========================================  ===================================  ============
cosplace     ``{backbone}_{dim}_cosplace.pth``:           resnet18/50/101/152 (``layer4``) or  fc_dim
             ``backbone.N.*`` (ResNet children 0..7 or     vgg16 (``conv5_3``) + gem_fc         (32..2048)
             VGG16 ``features`` 0..28), ``aggregation.1.p``,
             ``aggregation.3.{weight,bias}``
eigenplaces  ``{backbone}_{dim}_eigenplaces.pth``: the     as cosplace                          fc_dim
             same layout (told apart by the file name)
mixvpr       ``resnet50_MixVPR_4096_channels(1024)_rows(4)  resnet (``layer3``) + mixvpr          4096
             .ckpt``: ``backbone.model.<torchvision>``,
             ``aggregator.mix.N.mix.{0,1,3}``, ``aggregator.channel_proj``, ``aggregator.row_proj``
boq          ``resnet50_16384.pth``: ``backbone.net.0..6``  resnet50 (``layer3``) + boq           16384
             (conv1, bn1, relu, maxpool, layer1..3);
             ``dinov2_12288.pth``: ``backbone.dino.<DINOv2>`` dinov2_vitb14 (block 11) + boq       12288
             (its final ``norm`` is in the file but BoQ does not apply it: those two keys are
             the only ones read and not used); ``aggregator.*``
salad        ``dino_salad.ckpt``: ``backbone.model.<DINOv2>``, dinov2_vitb14 (``norm``) + salad   8448
             ``aggregator.{token_features,cluster_features,score}.*``, ``aggregator.dust_bin``
===========  ===========================================  ===================================  ============

The file may be the state dict itself or a dict with a ``state_dict`` entry (Lightning), with or
without ``module.`` prefixes. Each importer also returns the crop size the method was trained at
(MixVPR / BoQ-ResNet 320x320, BoQ-DINOv2 / SALAD 322x322; CosPlace / EigenPlaces None: they
run at any size) as the checkpoint's panorama config; options given on the command line win.

Importers work on tensors already read (safely, ``weights_only=True``, by
:mod:`panoplace.models.checkpoint`, which registers them as its ``published`` format, so every
``--checkpoint`` option takes these files); :func:`detect_published` and :func:`load_published`
are the entry points, :data:`PUBLISHED_FORMATS` the registry.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from panoplace.config import ModelConfig, PanoramaConfig
from panoplace.errors import CheckpointError
from panoplace.models.backbones import trunk_layout
from panoplace.models.build import PlaceModel, build_model
from panoplace.models.vit import VIT_SPECS, vit_children

log = logging.getLogger(__name__)

SD = Dict[str, torch.Tensor]
# (model config, the state dict in panoplace's key names, keys of the file read but not used,
#  the crop size the method was trained at)
Converted = Tuple[ModelConfig, SD, List[str], Optional[Tuple[int, int]]]


@dataclass(frozen=True)
class PublishedFormat:
    """One published layout: ``detect(sd)`` (cheap, never raises) and ``convert(sd, source)``."""

    name: str
    detect: Callable[[SD], bool]
    convert: Callable[[SD, str], Converted]
    description: str


# ---- shared pieces ------------------------------------------------------------------------------

def _sub(sd: SD, prefix: str) -> SD:
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def _indices(sd: SD, prefix: str) -> List[int]:
    """Sorted distinct integers N of keys ``prefix + "N." ...``."""
    out = set()
    for k in sd:
        if k.startswith(prefix):
            head = k[len(prefix):].split(".", 1)[0]
            if head.isdigit():
                out.add(int(head))
    return sorted(out)


_RESNET_BLOCKS = {  # (bottleneck, blocks in layer3) -> name; layer3 tells all torchvision ResNets apart
    (False, 2): "resnet18", (False, 6): "resnet34", (True, 6): "resnet50", (True, 23): "resnet101",
    (True, 36): "resnet152",
}


def _resnet_arch(trunk: SD, layer3: str, source: str) -> str:
    """ResNet depth from torchvision-style keys under ``layer3`` (e.g. ``layer3.`` or ``6.``)."""
    blocks = _indices(trunk, layer3)
    bottleneck = any(k.startswith(layer3 + "0.conv3.") for k in trunk)
    arch = _RESNET_BLOCKS.get((bottleneck, len(blocks)))
    if arch is None:
        raise CheckpointError(f"{source}: cannot tell the ResNet from its layer3 ({len(blocks)} blocks, "
                              f"bottleneck={bottleneck}); supported: {', '.join(sorted(set(_RESNET_BLOCKS.values())))}")
    return arch


def _children_to_body(trunk: SD, arch: str, source: str) -> Tuple[SD, int]:
    """``N.rest`` keys of an ``nn.Sequential`` over the trunk's children -> ``backbone.body.<child>.rest``;
    returns the mapped dict and the last child index."""
    children, _ = trunk_layout(arch)
    out: SD = {}
    last = -1
    for k, v in trunk.items():
        head, _, rest = k.partition(".")
        if not head.isdigit() or int(head) >= len(children) or not rest:
            raise CheckpointError(f"{source}: backbone key {k!r} is not one of the {arch} trunk's children")
        out[f"backbone.body.{children[int(head)]}.{rest}"] = v
        last = max(last, int(head))
    return out, last


def _cut_of(arch: str, last_child: int, source: str) -> Any:
    children, cuts = trunk_layout(arch)
    name = children[last_child]
    cut = next((c for c, child in cuts.items() if child == name), None)
    if cut is None:
        raise CheckpointError(f"{source}: a {arch} trunk ending at child {last_child} ({name}) is not a supported cut")
    return cut


def _dinov2_name(trunk: SD, source: str) -> str:
    pos = trunk.get("pos_embed")
    dims = {spec.dim: name for name, spec in VIT_SPECS.items()}
    if pos is None or pos.dim() != 3 or int(pos.shape[2]) not in dims:
        raise CheckpointError(f"{source}: the DINOv2 backbone is not ViT-S/14 or ViT-B/14 "
                              f"(pos_embed {tuple(pos.shape) if pos is not None else None})")
    return dims[int(pos.shape[2])]


def _dinov2_to_body(trunk: SD, name: str, cut: Any) -> Tuple[SD, List[str]]:
    """DINOv2 hub keys -> ``backbone.body.*``; keys past the cut are returned as unused."""
    _, prefixes, _ = vit_children(name)
    depth = VIT_SPECS[name].depth
    last_block = depth - 1 if cut == "norm" else int(cut)
    out: SD = {}
    unused: List[str] = []
    for k, v in trunk.items():
        m = re.match(r"blocks\.(\d+)\.", k)
        if (m and int(m.group(1)) > last_block) or (k.startswith("norm.") and cut != "norm"):
            unused.append(k)
            continue
        for src, dst in prefixes:
            if k.startswith(src) and (src.endswith(".") or k == src):
                out["backbone.body." + dst + k[len(src):]] = v
                break
        else:
            out["backbone.body." + k] = v  # reported as unexpected by the strict load
    return out, unused


def load_strict(model: PlaceModel, sd: SD, source: str, what: str) -> None:
    """Load ``sd`` into ``model``: every model key present, no other key, equal shapes; else
    one :class:`CheckpointError` line."""
    expected = model.state_dict()
    unexpected = sorted(set(sd) - set(expected))
    missing = sorted(k for k in set(expected) - set(sd) if not k.endswith("num_batches_tracked"))
    if unexpected:
        raise CheckpointError(f"{source} is not a {what} checkpoint: {len(unexpected)} key(s) it does not have, "
                              f"e.g. {', '.join(unexpected[:3])}")
    if missing:
        raise CheckpointError(f"{source} is not a complete {what} checkpoint: {len(missing)} key(s) missing, "
                              f"e.g. {', '.join(missing[:3])}")
    for k, v in sd.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise CheckpointError(f"{source} is not a {what} checkpoint: {k} has shape {tuple(v.shape)}, "
                                  f"expected {tuple(expected[k].shape)}")
    model.load_state_dict(sd, strict=False)


# ---- CosPlace / EigenPlaces ---------------------------------------------------------------------

def _is_cosplace(sd: SD) -> bool:
    return "aggregation.1.p" in sd and "aggregation.3.weight" in sd and any(k.startswith("backbone.0.") for k in sd)


def _convert_cosplace(sd: SD, source: str) -> Converted:
    trunk = _sub(sd, "backbone.")
    agg = _sub(sd, "aggregation.")
    other = [k for k in sd if not k.startswith(("backbone.", "aggregation."))]
    if other:
        raise CheckpointError(f"{source}: keys outside backbone./aggregation.: {', '.join(other[:3])}")
    if any(k.startswith("4.0.") for k in trunk):
        arch = _resnet_arch(trunk, "6.", source)
    elif trunk.get("0.weight") is not None and tuple(trunk["0.weight"].shape) == (64, 3, 3, 3) and "28.weight" in trunk:
        arch = "vgg16"
    else:
        raise CheckpointError(f"{source}: the backbone is neither a ResNet nor VGG16 trunk")
    body, last = _children_to_body(trunk, arch, source)
    fc_w = agg.get("3.weight")
    if fc_w is None or fc_w.dim() != 2 or set(agg) != {"1.p", "3.weight", "3.bias"}:
        raise CheckpointError(f"{source}: aggregation keys must be 1.p, 3.weight, 3.bias; got {sorted(agg)}")
    params = {"fc_dim": int(fc_w.shape[0])}  # p is a weight: the file sets it
    cfg = ModelConfig(backbone=arch, cut=_cut_of(arch, last, source), weights="none", aggregator="gem_fc",
                      aggregator_params=params, fusion="add")
    body.update({"aggregator.p": agg["1.p"].reshape(1), "aggregator.fc.weight": fc_w,
                 "aggregator.fc.bias": agg["3.bias"]})
    return cfg, body, [], None


# ---- MixVPR -------------------------------------------------------------------------------------

def _is_mixvpr(sd: SD) -> bool:
    return "aggregator.row_proj.weight" in sd and "aggregator.channel_proj.weight" in sd


def _convert_mixvpr(sd: SD, source: str) -> Converted:
    trunk = _sub(sd, "backbone.model.")
    other = [k for k in sd if not k.startswith(("backbone.model.", "aggregator."))]
    if other:
        raise CheckpointError(f"{source}: keys outside backbone.model./aggregator.: {', '.join(other[:3])}")
    arch = _resnet_arch(trunk, "layer3.", source)
    last = 4 if any(k.startswith("layer4.") for k in trunk) else 3
    agg = _sub(sd, "aggregator.")
    hw = int(agg["row_proj.weight"].shape[1])
    side = int(round(math.sqrt(hw)))
    if side * side != hw:
        raise CheckpointError(f"{source}: MixVPR row_proj takes {hw} locations, not a square grid")
    depth = len(_indices(agg, "mix."))
    hidden = int(agg["mix.0.mix.1.weight"].shape[0]) if depth else hw
    params = {"out_channels": int(agg["channel_proj.weight"].shape[0]), "out_rows": int(agg["row_proj.weight"].shape[0]),
              "mix_depth": depth, "mlp_ratio": hidden / hw, "in_h": side, "in_w": side}
    cfg = ModelConfig(backbone=arch, cut=f"layer{last}", weights="none", aggregator="mixvpr",
                      aggregator_params=params, fusion="add")
    mapped = {f"backbone.body.{k}": v for k, v in trunk.items() if not k.startswith("fc.")}
    unused = [f"backbone.model.{k}" for k in trunk if k.startswith("fc.")]
    mapped.update({f"aggregator.{k}": v for k, v in agg.items()})
    return cfg, mapped, unused, (320, 320)


# ---- BoQ ----------------------------------------------------------------------------------------

def _is_boq(sd: SD) -> bool:
    return "aggregator.proj_c.weight" in sd and any(k.startswith("aggregator.boqs.") for k in sd)


def _convert_boq(sd: SD, source: str) -> Converted:
    agg = _sub(sd, "aggregator.")
    other = [k for k in sd if not k.startswith(("backbone.net.", "backbone.dino.", "aggregator."))]
    if other:
        raise CheckpointError(f"{source}: keys outside backbone.net./backbone.dino./aggregator.: {', '.join(other[:3])}")
    unused: List[str] = []
    if any(k.startswith("backbone.dino.") for k in sd):
        trunk = _sub(sd, "backbone.dino.")
        name = _dinov2_name(trunk, source)
        backbone, cut = name, VIT_SPECS[name].depth - 1
        mapped, dropped = _dinov2_to_body(trunk, name, cut)
        unused = [f"backbone.dino.{k}" for k in dropped]
        crop: Tuple[int, int] = (322, 322)
    else:
        trunk = _sub(sd, "backbone.net.")
        backbone = _resnet_arch(trunk, "6.", source)
        mapped, last = _children_to_body(trunk, backbone, source)
        cut = _cut_of(backbone, last, source)
        crop = (320, 320)
    d = int(agg["proj_c.weight"].shape[0])
    params = {"proj_channels": d, "num_queries": int(agg["boqs.0.queries"].shape[1]),
              "num_layers": len(_indices(agg, "boqs.")), "row_dim": int(agg["fc.weight"].shape[0])}
    cfg = ModelConfig(backbone=backbone, cut=cut, weights="none", aggregator="boq", aggregator_params=params,
                      fusion="add")
    mapped.update({f"aggregator.{k}": v for k, v in agg.items()})
    return cfg, mapped, unused, crop


# ---- SALAD --------------------------------------------------------------------------------------

def _is_salad(sd: SD) -> bool:
    return "aggregator.dust_bin" in sd and "aggregator.score.0.weight" in sd


def _convert_salad(sd: SD, source: str) -> Converted:
    other = [k for k in sd if not k.startswith(("backbone.model.", "aggregator."))]
    if other:
        raise CheckpointError(f"{source}: keys outside backbone.model./aggregator.: {', '.join(other[:3])}")
    trunk = _sub(sd, "backbone.model.")
    name = _dinov2_name(trunk, source)
    mapped, dropped = _dinov2_to_body(trunk, name, "norm")
    agg = _sub(sd, "aggregator.")
    params = {"num_clusters": int(agg["score.3.weight"].shape[0]),
              "cluster_dim": int(agg["cluster_features.3.weight"].shape[0]),
              "token_dim": int(agg["token_features.2.weight"].shape[0]),
              "hidden": int(agg["score.0.weight"].shape[0])}
    cfg = ModelConfig(backbone=name, cut="norm", weights="none", aggregator="salad", aggregator_params=params,
                      fusion="add")
    mapped.update({f"aggregator.{k}": v for k, v in agg.items()})
    return cfg, mapped, [f"backbone.model.{k}" for k in dropped], (322, 322)


PUBLISHED_FORMATS: Tuple[PublishedFormat, ...] = (
    PublishedFormat("cosplace", _is_cosplace, _convert_cosplace, "CosPlace / EigenPlaces (GeM + FC)"),
    PublishedFormat("mixvpr", _is_mixvpr, _convert_mixvpr, "MixVPR"),
    PublishedFormat("boq", _is_boq, _convert_boq, "Bag-of-Queries"),
    PublishedFormat("salad", _is_salad, _convert_salad, "DINOv2 SALAD"),
)


def detect_published(sd: SD) -> Optional[PublishedFormat]:
    """The published layout of state dict ``sd`` (None when it is none of them)."""
    return next((f for f in PUBLISHED_FORMATS if f.detect(sd)), None)


def convert_published(sd: SD, source: str) -> Tuple[PublishedFormat, Converted]:
    """Detect and map ``sd`` without building a model (the layout check).

    Raises:
        CheckpointError: not a published layout, or one with keys or shapes it cannot map.
    """
    fmt = detect_published(sd)
    if fmt is None:
        raise CheckpointError(f"{source} is not a CosPlace, EigenPlaces, MixVPR, BoQ or SALAD checkpoint "
                              f"(keys like {', '.join(list(sd)[:2])})")
    try:
        return fmt, fmt.convert(sd, source)
    except KeyError as err:
        raise CheckpointError(f"{source}: a {fmt.description} checkpoint needs key {err.args[0]!r}") from None


def method_name(fmt: PublishedFormat, source: str) -> str:
    """``eigenplaces`` for a CosPlace-layout file named so, else the format's name."""
    return "eigenplaces" if fmt.name == "cosplace" and "eigenplaces" in Path(source).name.lower() else fmt.name


def load_published(sd: SD, source: str) -> Tuple[PlaceModel, Optional[PanoramaConfig]]:
    """Build the panoplace model of a published checkpoint's state dict and load every key.

    Returns:
        ``(model in eval mode, PanoramaConfig with the method's crop size, or None)``.

    Raises:
        CheckpointError: not a published layout, keys missing or left over, shapes that differ.
    """
    fmt, (cfg, mapped, unused, crop) = convert_published(sd, source)
    model = build_model(cfg)
    load_strict(model, mapped, source, fmt.description)
    if unused:
        log.info("%s: %d key(s) of the published layout are not used by the method (%s)", source, len(unused),
                 ", ".join(unused[:3]))
    log.info("imported %s checkpoint %s: %s cut %r + %s, %d-D descriptors", method_name(fmt, source), source,
             cfg.backbone, cfg.cut, cfg.aggregator, model.descriptor_dim(1))
    panorama = PanoramaConfig(crop_size=crop) if crop is not None else None
    return model.eval(), panorama


