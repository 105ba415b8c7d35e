"""Model files: every checkpoint format panoplace reads or writes, read once and dispatched here.

Every file is deserialised by :func:`panoplace.models.torchfile.read_torch_file`
(``torch.load(weights_only=True)``, never full unpickling: a file cannot run code) exactly once,
into a :class:`CheckpointFile`; the loaders below take that object, so a caller that needs to
look at a file before choosing a loader (training resume, ``scene train --checkpoint``) does
not read it twice.

Formats:

- ``panoplace``: a place model, written by :func:`save_checkpoint`::

      {"format": "panoplace", "format_version": 1,
       "config": {"model": ModelConfig.to_dict(), "panorama": PanoramaConfig.to_dict() | None},
       "state_dict": {...}, "fingerprint": weights_fingerprint(model), "extra": {...}}

- ``panoplace-scene``: a unified scene + place model (:mod:`panoplace.models.scene`), written by
  :func:`save_scene_checkpoint`::

      {"format": "panoplace-scene", "format_version": 1,
       "config": {"scene": SceneConfig.to_dict(), "panorama": PanoramaConfig.to_dict() | None},
       "categories": [...], "category_set": "Places365" | "procedural-world" | ...,
       "state_dict": {...}, "fingerprint": weights_fingerprint(model),
       "place_fingerprint": weights_fingerprint(model.place_model()), "extra": {...}}

  As a place model (:func:`load_checkpoint`) it gives its place branch.
- ``pytorch-netvlad``: pytorch-NetVlad checkpoints (``checkpoint.pth.tar`` / ``model_best.pth.tar``:
  a dict whose ``state_dict`` has ``encoder.N.*`` and ``pool.*`` keys, with ``flags.json`` in
  the same folder or its parent giving ``arch``, ``num_clusters``, ``pooling``, ``vladv2``) and
  the PAL seed's checkpoints (the same layout with a ResNet encoder: ``nn.Sequential`` of
  ``conv1, bn1, relu, maxpool, layer1..layer4`` = ``encoder.0..7``). Whatever flags.json lacks
  is inferred from the keys and shapes: the architecture (resnet18/34/50, vgg16, alexnet), the
  cut (the last encoder index), K (``pool.centroids``) and vladv2 (a bias on ``pool.conv``).
- ``published``: CosPlace, EigenPlaces, MixVPR, BoQ and SALAD checkpoints as their authors
  publish them (:mod:`panoplace.models.importers`: every key mapped, nothing missing or left over).
- Places365 (``*_places365.pth.tar``, ``module.`` prefixes): the scene classifier
  (:func:`load_places365_checkpoint`) and a unified model built on it (:func:`from_places365`).
- A linear classifier (``weight``/``bias`` or ``fc.*``), e.g. the CAM attention's
  (:func:`load_linear_classifier`).
- Plain backbone weight files (torchvision, EfficientNet-Lite0, Places365 trunks) are state
  dicts read by :func:`~panoplace.models.backbones.build_backbone` through the same safe
  reader, because :func:`~panoplace.models.build.build_model` needs them below this layer.

There is no opt-in to full unpickling (no ``--trust-file``): every format above loads with
``weights_only=True``; a file that pickles other objects (a whole ``nn.Module``, an argparse
namespace) is refused with a line saying how to re-save its state dict.

Old layouts are upgraded on load: :data:`KEY_RENAMES` (place) and :data:`SCENE_KEY_RENAMES`
(scene) map a format version to the key renames that bring it to the next version.

Adding a place-model format (an importer of a published layout): write ``detect(ckpt) -> bool``
(cheap, never raises for a file of another format) and ``load(ckpt) -> (PlaceModel,
PanoramaConfig | None)`` (build the model, then fill it with :func:`load_state_checked`), and
add ``CheckpointFormat(name, detect, load, description)`` to the built-in list in
:data:`_BUILTIN_FORMATS` (importing your module at the top of this one), or call
:func:`register_format` at run time. :func:`detect_format` tries the formats in order; the
first whose ``detect`` is true loads the file.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torchvision.models as tvm
from torch import nn

from panoplace.atomic import atomic_path
from panoplace.config import ModelConfig, PanoramaConfig
from panoplace.errors import CheckpointError, InputError, PanoplaceError
from panoplace.models.backbones import PLACES365_BACKBONES, PLACES365_CLASSES, trunk_layout
from panoplace.models.build import PlaceModel, build_model, weights_fingerprint
from panoplace.models.importers import detect_published, load_published
from panoplace.models.scene import SceneConfig, ScenePlaceModel, build_scene_model, from_places365_classifier
from panoplace.models.torchfile import read_torch_file, state_dict_of

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
Loaded = Tuple[PlaceModel, Optional[PanoramaConfig]]

CHECKPOINT_FORMAT = "panoplace"
FORMAT_VERSION = 1
SCENE_FORMAT = "panoplace-scene"
SCENE_FORMAT_VERSION = 1
OLDEST_FORMAT_VERSION = 1
# Key renames that upgrade a checkpoint of format version v to v + 1: {v: [(old prefix, new prefix)]}.
# Version 1 is the first released layout of both formats, so there is nothing to rename yet.
KEY_RENAMES: Dict[int, List[Tuple[str, str]]] = {}
SCENE_KEY_RENAMES: Dict[int, List[Tuple[str, str]]] = {}


# --------------------------------------------------------------------------------------------
# Reading once
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CheckpointFile:
    """A model file read once: its path and what ``torch.load(weights_only=True)`` gave."""

    path: Path
    content: Any

    @property
    def source(self) -> str:
        return str(self.path)

    @property
    def format(self) -> Optional[str]:
        """The ``"format"`` entry of a panoplace file (None for other files)."""
        fmt = self.content.get("format") if isinstance(self.content, dict) else None
        return fmt if isinstance(fmt, str) else None

    @property
    def extra(self) -> Dict[str, Any]:
        """The ``"extra"`` dict of a panoplace file (training state, PCA provenance ...), or ``{}``."""
        extra = self.content.get("extra") if isinstance(self.content, dict) else None
        return extra if isinstance(extra, dict) else {}

    def state_dict(self) -> Dict[str, torch.Tensor]:
        """The tensors of the file (or of its ``"state_dict"`` entry), ``module.`` prefixes removed.

        Raises:
            CheckpointError: the file holds no dict of tensors.
        """
        return state_dict_of(self.content, self.source)

    def tensor_keys(self) -> List[str]:
        """The state dict's keys, or ``[]`` when the file holds none (for ``detect`` functions)."""
        try:
            return list(self.state_dict())
        except CheckpointError:
            return []


def read_checkpoint(path: PathLike, what: str = "checkpoint") -> CheckpointFile:
    """Read a model file once (safely; see :mod:`panoplace.models.torchfile`).

    Raises:
        CheckpointError: missing, unreadable, or holding Python objects besides plain data.
    """
    p = Path(path)
    return CheckpointFile(p, read_torch_file(p, what))


# --------------------------------------------------------------------------------------------
# Format registry
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CheckpointFormat:
    """A place-model file format: ``detect`` says whether a file is one, ``load`` builds the model."""

    name: str
    detect: Callable[[CheckpointFile], bool]
    load: Callable[[CheckpointFile], Loaded]
    description: str = ""


def register_format(fmt: CheckpointFormat, before: Optional[str] = None) -> None:
    """Add a place-model format, tried after the registered ones (or just before ``before``).

    Raises:
        InputError: a format of that name is registered already, or ``before`` is unknown.
    """
    names = [f.name for f in _FORMATS]
    if fmt.name in names:
        raise InputError(f"checkpoint format {fmt.name!r} is registered already")
    if before is None:
        _FORMATS.append(fmt)
    elif before in names:
        _FORMATS.insert(names.index(before), fmt)
    else:
        raise InputError(f"unknown checkpoint format {before!r}; registered: {', '.join(names)}")


def checkpoint_formats() -> Tuple[CheckpointFormat, ...]:
    """The registered place-model formats, in the order :func:`detect_format` tries them."""
    return tuple(_FORMATS)


def detect_format(ckpt: CheckpointFile) -> CheckpointFormat:
    """The first registered format whose ``detect`` accepts ``ckpt``.

    Raises:
        CheckpointError: no format matches (the message lists the known ones).
    """
    for fmt in _FORMATS:
        if fmt.detect(ckpt):
            return fmt
    keys = ckpt.tensor_keys() or (list(map(str, ckpt.content))[:2] if isinstance(ckpt.content, dict) else [])
    holds = f"keys like {', '.join(keys[:2])}" if keys else f"a {type(ckpt.content).__name__}"
    raise CheckpointError(f"{ckpt.source} is not a checkpoint of a known format "
                          f"({', '.join(f.description or f.name for f in _FORMATS)}; it holds {holds}); "
                          "backbone weights go in ModelConfig.weights instead")


def place_model_from(ckpt: CheckpointFile) -> Loaded:
    """The place model of a file already read (see :func:`load_checkpoint`)."""
    model, panorama = detect_format(ckpt).load(ckpt)
    log.info("loaded %s from %s (fingerprint %s)", describe(model.config), ckpt.source, weights_fingerprint(model))
    return model.eval(), panorama


def load_checkpoint(path: PathLike) -> Loaded:
    """Rebuild a place model from a checkpoint file alone, in any registered format (panoplace,
    the place branch of a panoplace scene checkpoint, PAL seed or pytorch-NetVlad, ...).

    Returns:
        ``(model in eval mode, the PanoramaConfig saved with it or None)``.

    Raises:
        CheckpointError: missing file, unknown format, or weights of another architecture.
    """
    return place_model_from(read_checkpoint(path))


# --------------------------------------------------------------------------------------------
# Shared pieces
# --------------------------------------------------------------------------------------------

def describe(cfg: ModelConfig) -> str:
    """``"resnet18 cut 'layer3' + netvlad K=64"``: a model config in a few words."""
    agg = f"netvlad K={cfg.num_clusters}" if cfg.aggregator == "netvlad" else cfg.aggregator
    return f"{cfg.backbone} cut {cfg.cut!r} + {agg}"


def load_state_checked(model: nn.Module, sd: Dict[str, torch.Tensor], problem: str) -> None:
    """Load ``sd`` into a :class:`PlaceModel` or :class:`ScenePlaceModel` with one clear
    :class:`CheckpointError` line (starting with ``problem``) on any mismatch.

    The whitening layer and a CAM attention head are sized by the file first.
    """
    whitening = getattr(model, "whitening", None)
    if whitening is not None:
        w = sd.get("whitening.weight")
        if isinstance(w, torch.Tensor) and w.dim() == 2:
            whitening._resize(w.shape[0], w.shape[1])
    attention = getattr(model, "attention", None)
    if attention is not None and hasattr(attention, "set_classifier"):  # CAM: sized by the file
        w = sd.get("attention.weight")
        if isinstance(w, torch.Tensor) and w.dim() == 2:
            attention._resize(w.shape[0])
    expected = model.state_dict()
    for k, v in sd.items():
        if k in expected and tuple(v.shape) != tuple(expected[k].shape):
            raise CheckpointError(f"{problem}: {k} has shape {tuple(v.shape)}, the model expects "
                                  f"{tuple(expected[k].shape)}")
    unknown = [k for k in sd if k not in expected]
    if unknown:
        raise CheckpointError(f"{problem}: {len(unknown)} unexpected key(s), e.g. {', '.join(unknown[:3])}")
    missing = [k for k in expected if k not in sd and not k.endswith("num_batches_tracked")]
    if missing:
        raise CheckpointError(f"{problem}: {len(missing)} missing key(s), e.g. {', '.join(missing[:3])}")
    model.load_state_dict(sd, strict=False)


def upgrade_state_dict(sd: Dict[str, torch.Tensor], version: int, current: int,
                       renames: Dict[int, List[Tuple[str, str]]]) -> Dict[str, torch.Tensor]:
    """Rename the keys of a format-``version`` state dict to the layout of version ``current``."""
    for v in range(version, current):
        for old, new in renames.get(v, []):
            sd = {(new + k[len(old):] if k.startswith(old) else k): t for k, t in sd.items()}
    return sd


def _check_version(ckpt: CheckpointFile, current: int, what: str) -> int:
    version = ckpt.content.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < OLDEST_FORMAT_VERSION:
        raise CheckpointError(f"{ckpt.source} has an unknown {what}format_version {version!r}")
    if version > current:
        raise CheckpointError(f"{ckpt.source} was written by a newer panoplace ({what}format_version {version}, "
                              f"this one reads up to {current}); upgrade panoplace")
    return version


def _panorama_of(config: Dict[str, Any]) -> Optional[PanoramaConfig]:
    return PanoramaConfig.from_dict(config["panorama"]) if config.get("panorama") else None


def _write(payload: Dict[str, Any], path: Path) -> None:
    # serialised in memory, then written by Python: a full disk is an OSError naming the file, not
    # torch's zip writer failing with no errno
    buf = io.BytesIO()
    torch.save(payload, buf)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getbuffer())


# --------------------------------------------------------------------------------------------
# panoplace place checkpoints
# --------------------------------------------------------------------------------------------

def save_checkpoint(model: PlaceModel, path: PathLike, panorama: Optional[PanoramaConfig] = None,
                    extra: Optional[Dict[str, Any]] = None) -> Path:
    """Write ``model`` (config + weights + fingerprint) to ``path`` atomically.

    Args:
        panorama: the panorama config the model is meant for (restored by :func:`load_checkpoint`).
        extra: plain data to keep alongside (numbers, strings, lists, dicts, tensors).

    Returns:
        the path written.
    """
    path = Path(path)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": FORMAT_VERSION,
        "config": {"model": model.config.to_dict(),
                   "panorama": panorama.to_dict() if panorama is not None else None},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "fingerprint": weights_fingerprint(model),
        "extra": dict(extra) if extra else {},
    }
    _write(payload, path)
    log.info("saved checkpoint %s (fingerprint %s)", path, payload["fingerprint"])
    return path


def _is_place(ckpt: CheckpointFile) -> bool:
    return ckpt.format == CHECKPOINT_FORMAT


def _load_place(ckpt: CheckpointFile) -> Loaded:
    source = ckpt.source
    version = _check_version(ckpt, FORMAT_VERSION, "panoplace ")
    config, sd = ckpt.content.get("config"), ckpt.content.get("state_dict")
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict) or not isinstance(sd, dict):
        raise CheckpointError(f"{source} is a damaged panoplace checkpoint (no config or state_dict)")
    try:
        cfg = ModelConfig.from_dict(config["model"])
        panorama = _panorama_of(config)
    except (PanoplaceError, TypeError, ValueError) as err:
        raise CheckpointError(f"{source} has an invalid config: {err}") from None
    model = build_model(dataclasses.replace(cfg, weights="none"))
    model.config = dataclasses.replace(model.config, weights=cfg.weights)
    upgraded = upgrade_state_dict(dict(sd), version, FORMAT_VERSION, KEY_RENAMES)
    load_state_checked(model, upgraded, f"{source} is not a {describe(model.config)} checkpoint")
    stored = ckpt.content.get("fingerprint")
    if version == FORMAT_VERSION and stored is not None and stored != weights_fingerprint(model):
        raise CheckpointError(f"{source} is corrupted: its weights do not match the fingerprint it records")
    return model, panorama


# --------------------------------------------------------------------------------------------
# panoplace scene checkpoints
# --------------------------------------------------------------------------------------------

def save_scene_checkpoint(model: ScenePlaceModel, path: PathLike, panorama: Optional[PanoramaConfig] = None,
                          extra: Optional[Dict[str, Any]] = None) -> Path:
    """Write a unified scene + place ``model`` (config, categories, weights, fingerprints) to
    ``path`` atomically.

    Returns:
        the path written.
    """
    path = Path(path)
    payload = {
        "format": SCENE_FORMAT,
        "format_version": SCENE_FORMAT_VERSION,
        "config": {"scene": model.config.to_dict(),
                   "panorama": panorama.to_dict() if panorama is not None else None},
        "categories": list(model.categories),
        "category_set": model.category_set,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "fingerprint": weights_fingerprint(model),
        "place_fingerprint": weights_fingerprint(model.place_model()),
        "extra": dict(extra) if extra else {},
    }
    _write(payload, path)
    log.info("saved scene checkpoint %s (%s, %d categories)", path, model.category_set, len(model.categories))
    return path


def is_scene_checkpoint(ckpt: CheckpointFile) -> bool:
    """Whether a file read with :func:`read_checkpoint` is a panoplace scene checkpoint."""
    return ckpt.format == SCENE_FORMAT


def scene_model_from(ckpt: CheckpointFile) -> Tuple[ScenePlaceModel, Optional[PanoramaConfig]]:
    """The unified model of a scene checkpoint already read (see :func:`load_scene_checkpoint`)."""
    source = ckpt.source
    if not is_scene_checkpoint(ckpt):
        what = "a place model checkpoint" if ckpt.format == CHECKPOINT_FORMAT else "not a panoplace scene checkpoint"
        raise CheckpointError(f"{source} is {what}; scene checkpoints come from `panoplace scene train` "
                              "(or pass Places365 weights with --places365 FILE --categories FILE)")
    version = _check_version(ckpt, SCENE_FORMAT_VERSION, "scene ")
    obj = ckpt.content
    config, sd, cats = obj.get("config"), obj.get("state_dict"), obj.get("categories")
    if (not isinstance(config, dict) or not isinstance(config.get("scene"), dict) or not isinstance(sd, dict)
            or not isinstance(cats, list)):
        raise CheckpointError(f"{source} is a damaged scene checkpoint (no config, categories or state_dict)")
    try:
        cfg = SceneConfig.from_dict(config["scene"])
        panorama = _panorama_of(config)
    except (PanoplaceError, TypeError, ValueError) as err:
        raise CheckpointError(f"{source} has an invalid config: {err}") from None
    model = build_scene_model(dataclasses.replace(cfg, place=dataclasses.replace(cfg.place, weights="none")),
                              cats, str(obj.get("category_set", "custom")))
    model.config = dataclasses.replace(model.config, place=dataclasses.replace(model.config.place,
                                                                             weights=cfg.place.weights))
    upgraded = upgrade_state_dict(dict(sd), version, SCENE_FORMAT_VERSION, SCENE_KEY_RENAMES)
    load_state_checked(model, upgraded, f"{source} is damaged")
    stored = obj.get("fingerprint")
    if version == SCENE_FORMAT_VERSION and stored is not None and stored != weights_fingerprint(model):
        raise CheckpointError(f"{source} is corrupted: its weights do not match the fingerprint it records")
    log.info("loaded scene model %s from %s", model.extra_repr(), source)
    return model.eval(), panorama


def load_scene_checkpoint(path: PathLike) -> Tuple[ScenePlaceModel, Optional[PanoramaConfig]]:
    """Rebuild a unified model from a scene checkpoint file alone.

    Returns:
        ``(model in eval mode, the PanoramaConfig saved with it or None)``.

    Raises:
        CheckpointError: missing file, another format, a newer format version, damaged contents.
    """
    return scene_model_from(read_checkpoint(path, "scene checkpoint"))


def _load_scene_place(ckpt: CheckpointFile) -> Loaded:
    scene_model, panorama = scene_model_from(ckpt)
    return scene_model.place_model(), panorama  # its place branch: the descriptors `scene predict` writes


# --------------------------------------------------------------------------------------------
# pytorch-NetVlad / PAL seed checkpoints
# --------------------------------------------------------------------------------------------

NETVLAD_ARCHS = ("resnet18", "resnet34", "resnet50", "vgg16", "alexnet")


def _read_flags(path: Path) -> Dict[str, Any]:
    for folder in (path.parent, path.parent.parent):
        f = folder / "flags.json"
        if f.is_file():
            try:
                flags = json.loads(f.read_text())
            except (OSError, ValueError) as err:
                raise CheckpointError(f"cannot read {f}: {err}") from None
            if not isinstance(flags, dict):
                raise CheckpointError(f"{f} is not a JSON object of training flags")
            log.info("pytorch-NetVlad flags from %s", f)
            return flags
    return {}


def _infer_arch(enc: Dict[str, torch.Tensor], source: str) -> str:
    if "4.0.conv1.weight" in enc:
        if "4.0.conv3.weight" in enc:
            return "resnet50"
        layer1_blocks = {k.split(".")[1] for k in enc if k.startswith("4.")}
        return "resnet34" if len(layer1_blocks) == 3 else "resnet18"
    first = enc.get("0.weight")
    if isinstance(first, torch.Tensor) and first.dim() == 4:
        if tuple(first.shape[2:]) == (11, 11):
            return "alexnet"
        if tuple(first.shape[2:]) == (3, 3):
            return "vgg16"
    raise CheckpointError(f"cannot tell the encoder architecture of {source} (not resnet18/34/50, vgg16 or "
                          "alexnet) and there is no flags.json with 'arch' beside it")


def _is_netvlad(ckpt: CheckpointFile) -> bool:
    return ckpt.format is None and any(k.startswith("encoder.") for k in ckpt.tensor_keys())


def _load_netvlad(ckpt: CheckpointFile) -> Loaded:
    path, source = ckpt.path, ckpt.source
    sd = ckpt.state_dict()
    flags = _read_flags(path)
    enc = {k[len("encoder."):]: v for k, v in sd.items() if k.startswith("encoder.")}
    pool = {k[len("pool."):]: v for k, v in sd.items() if k.startswith("pool.")}
    other = [k for k in sd if not k.startswith(("encoder.", "pool."))]
    if other:
        raise CheckpointError(f"{source} has keys outside encoder.* and pool.*, e.g. {', '.join(other[:3])}")
    if "arch" in flags:
        arch = str(flags["arch"]).lower()
        try:
            inferred: Optional[str] = _infer_arch(enc, source)
        except CheckpointError:
            inferred = None
        if inferred is not None and inferred != arch:
            raise CheckpointError(f"{source}: flags.json says arch {arch!r} but the encoder weights are "
                                  f"{inferred}'s")
    else:
        arch = _infer_arch(enc, source)
    if arch not in NETVLAD_ARCHS:
        raise CheckpointError(f"{source}: encoder arch {arch!r} is not supported; supported: {', '.join(NETVLAD_ARCHS)}")
    children, cuts = trunk_layout(arch)
    indices = sorted({int(k.split(".")[0]) for k in enc if k.split(".")[0].isdigit()})
    if not indices or indices[-1] >= len(children):
        raise CheckpointError(f"{source} does not hold a {arch} encoder (encoder indices {indices[:3]}...)")
    last = children[indices[-1]]
    cut = next((c for c, child in cuts.items() if child == last), None)
    if cut is None:
        raise CheckpointError(f"{source}: a {arch} encoder ending at module {indices[-1]} ({last}) is not a "
                              f"supported cut ({', '.join(map(str, cuts))})")
    pooling = str(flags.get("pooling", "netvlad" if "centroids" in pool else "")).lower()
    if pooling not in ("netvlad", "max", "avg"):
        raise CheckpointError(f"{source}: cannot tell its pooling (flags.json says {flags.get('pooling')!r} "
                              "and there is no pool.centroids); supported: netvlad, max, avg")
    kwargs: Dict[str, Any] = {}
    if pooling == "netvlad":
        if "centroids" not in pool:
            raise CheckpointError(f"{source} has no pool.centroids although its pooling is netvlad")
        k = int(pool["centroids"].shape[0])
        if "num_clusters" in flags and int(flags["num_clusters"]) != k:
            raise CheckpointError(f"{source}: flags.json says num_clusters={flags['num_clusters']} but "
                                  f"pool.centroids holds {k}")
        kwargs = {"num_clusters": k, "vladv2": "conv.bias" in pool}
    cfg = ModelConfig(backbone=arch, cut=cut, n_trainable=0, weights="none", aggregator=pooling,
                      fusion="add", **kwargs)
    model = build_model(cfg)
    bad = [k for k in enc if not (k.split(".")[0].isdigit() and "." in k)]
    if bad:
        raise CheckpointError(f"{source} has encoder keys that are not encoder.N.*, e.g. {', '.join(bad[:3])}")
    new_sd = {f"backbone.body.{children[int(k.split('.', 1)[0])]}.{k.split('.', 1)[1]}": v for k, v in enc.items()}
    new_sd.update({f"aggregator.{k}": v for k, v in pool.items()})
    load_state_checked(model, new_sd, f"{source} is not a {describe(model.config)} checkpoint")
    log.info("imported pytorch-NetVlad checkpoint %s as %s", source, describe(model.config))
    return model, None


# --------------------------------------------------------------------------------------------
# Places365 and classifiers
# --------------------------------------------------------------------------------------------

def load_places365_checkpoint(path: PathLike, arch: Optional[str] = None) -> Tuple[nn.Module, str]:
    """The full Places365 scene classifier of an official Places365 checkpoint.

    The file is a dict whose ``state_dict`` has ``module.``-prefixed torchvision-style keys
    (``resnet18_places365.pth.tar``, ``wideresnet18_places365.pth.tar``,
    ``resnet50_places365.pth.tar``). ResNet-18 and WideResNet-18 files have identical keys,
    so ``arch`` is taken from the file name when not given (a file named neither way is read
    as ResNet-18, with a warning).

    Args:
        path: the checkpoint file.
        arch: ``resnet18_places365``, ``resnet50_places365`` or ``wideresnet18_places365``.

    Returns:
        ``(classifier, arch)``: a torchvision ResNet in eval mode whose ``fc`` maps to the 365
        Places365 categories (WideResNet-18: ``maxpool`` is ``nn.Identity``; the global pool is
        adaptive, equal to the original ``AvgPool2d(14)`` at 224x224).

    Shape:
        classifier: ``(N, 3, H, W)`` ImageNet-normalised -> logits ``(N, 365)``.
    """
    sd = read_checkpoint(path, "Places365 checkpoint").state_dict()
    if arch is None:
        fname = Path(path).name.lower()
        if "layer1.0.conv3.weight" in sd:
            arch = "resnet50_places365"
        elif "wideresnet" in fname:
            arch = "wideresnet18_places365"
        else:
            if "resnet18" not in fname:
                log.warning("%s: reading it as resnet18_places365 (pass arch='wideresnet18_places365' for "
                            "the WideResNet-18 checkpoint; both have the same keys)", path)
            arch = "resnet18_places365"
    if arch not in PLACES365_BACKBONES:
        raise InputError(f"unknown Places365 architecture {arch!r}; valid: {', '.join(PLACES365_BACKBONES)}")
    net = getattr(tvm, arch.split("_")[0].replace("wide", ""))(weights=None, num_classes=PLACES365_CLASSES)
    if arch.startswith("wide"):
        net.maxpool = nn.Identity()
    expected = net.state_dict()
    unknown = [k for k in sd if k not in expected]
    if unknown:
        raise CheckpointError(f"{path} is not a {arch} checkpoint: {len(unknown)} unknown key(s), "
                              f"e.g. {', '.join(unknown[:3])}")
    for k, v in sd.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise CheckpointError(f"{path} is not a {arch} checkpoint: {k} has shape {tuple(v.shape)}, "
                                  f"expected {tuple(expected[k].shape)}")
    missing = [k for k in expected if k not in sd and not k.endswith("num_batches_tracked")]
    if missing:
        raise CheckpointError(f"{path} lacks {len(missing)} {arch} weight(s), e.g. {', '.join(missing[:3])}")
    net.load_state_dict(sd, strict=False)
    return net.eval(), arch


def from_places365(checkpoint: PathLike, categories: Sequence[str], place: Union[None, ModelConfig, PlaceModel] = None,
                   split: Any = None, arch: Optional[str] = None) -> ScenePlaceModel:
    """A unified model from an official Places365 checkpoint file: its trunk and 365-way ``fc``
    are the scene branch (see :func:`panoplace.models.scene.from_places365_classifier` for
    ``categories``, ``place`` and ``split``).

    Args:
        arch: the architecture when the file name does not say it (:func:`load_places365_checkpoint`).

    Raises:
        CheckpointError: the file is missing, unreadable, not a Places365 checkpoint, or ``place``
            was not built on these weights.
        InputError: a category list of the wrong length, or a bad cut.
    """
    classifier, arch = load_places365_checkpoint(checkpoint, arch)
    return from_places365_classifier(classifier, arch, categories, place=place, split=split, source=str(checkpoint))


def load_linear_classifier(path: PathLike) -> nn.Linear:
    """A linear classifier from a file: a state dict with ``weight``/``bias`` or ``fc.weight``/
    ``fc.bias`` (as in the official Places365 checkpoints; ``module.`` prefixes are removed)."""
    sd = read_checkpoint(path, "classifier").state_dict()
    for prefix in ("", "fc.", "classifier.", "linear."):
        w, b = sd.get(prefix + "weight"), sd.get(prefix + "bias")
        if isinstance(w, torch.Tensor) and w.dim() == 2:
            lin = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
            with torch.no_grad():
                lin.weight.copy_(w)
                if b is not None:
                    lin.bias.copy_(b)
            return lin
    raise CheckpointError(f"{path} holds no linear classifier (looked for weight/bias and fc.weight/fc.bias)")


# --------------------------------------------------------------------------------------------
# The built-in formats (tried in this order)
# --------------------------------------------------------------------------------------------

def _is_published(ckpt: CheckpointFile) -> bool:
    try:
        return detect_published(ckpt.state_dict()) is not None
    except PanoplaceError:
        return False


def _load_published(ckpt: CheckpointFile) -> Loaded:
    return load_published(ckpt.state_dict(), ckpt.source)


_BUILTIN_FORMATS: Tuple[CheckpointFormat, ...] = (
    CheckpointFormat(CHECKPOINT_FORMAT, _is_place, _load_place, "panoplace"),
    CheckpointFormat(SCENE_FORMAT, is_scene_checkpoint, _load_scene_place, "panoplace scene"),
    CheckpointFormat("pytorch-netvlad", _is_netvlad, _load_netvlad, "PAL seed or pytorch-NetVlad"),
    CheckpointFormat("published", _is_published, _load_published,
                     "CosPlace, EigenPlaces, MixVPR, BoQ or SALAD (models/importers.py)"),
)
_FORMATS: List[CheckpointFormat] = list(_BUILTIN_FORMATS)

__all__ = [
    "CHECKPOINT_FORMAT",
    "FORMAT_VERSION",
    "KEY_RENAMES",
    "SCENE_FORMAT",
    "SCENE_FORMAT_VERSION",
    "SCENE_KEY_RENAMES",
    "CheckpointFile",
    "CheckpointFormat",
    "checkpoint_formats",
    "describe",
    "detect_format",
    "from_places365",
    "is_scene_checkpoint",
    "load_checkpoint",
    "load_linear_classifier",
    "load_places365_checkpoint",
    "load_scene_checkpoint",
    "load_state_checked",
    "place_model_from",
    "read_checkpoint",
    "register_format",
    "save_checkpoint",
    "save_scene_checkpoint",
    "scene_model_from",
    "upgrade_state_dict",
]
