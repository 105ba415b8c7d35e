"""The place model (backbone -> aggregator -> crop fusion -> [whitening]) and its checkpoints.

:func:`build_model` turns a :class:`~panoplace.config.ModelConfig` into a :class:`PlaceModel`.
:func:`save_checkpoint` writes one self-contained file; :func:`load_checkpoint` rebuilds the
model from that file alone, and also imports

- pytorch-NetVlad checkpoints (``checkpoint.pth.tar`` / ``model_best.pth.tar``: a dict whose
  ``state_dict`` has ``encoder.N.*`` and ``pool.*`` keys, with ``flags.json`` in the same
  folder or its parent giving ``arch``, ``num_clusters``, ``pooling``, ``vladv2``), and
- the PAL seed's checkpoints, the same layout with a ResNet encoder (``nn.Sequential`` of
  ``conv1, bn1, relu, maxpool, layer1..layer4`` = ``encoder.0..7``).

Whatever flags.json lacks is inferred from the keys and shapes: the architecture (resnet18/34/50,
vgg16, alexnet), the cut (the last encoder index), K (``pool.centroids``) and vladv2 (a bias on
``pool.conv``).

Checkpoint file (``torch.save``)::

    {"format": "panoplace", "format_version": 1,
     "config": {"model": ModelConfig.to_dict(), "panorama": PanoramaConfig.to_dict() | None},
     "state_dict": {...}, "fingerprint": weights_fingerprint(model), "extra": {...}}
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from panoplace.atomic import atomic_path
from panoplace.config import ModelConfig, PanoramaConfig
from panoplace.errors import CheckpointError, InputError, PanoplaceError
from panoplace.models.backbones import Backbone, build_backbone, read_torch_file, state_dict_of, trunk_layout
from panoplace.models.fusion import fuse, fused_dim
from panoplace.models.netvlad import NetVLAD
from panoplace.models.pooling import AvgPool, GeM, MaxPool

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
ArrayLike = Union[np.ndarray, torch.Tensor]

CHECKPOINT_FORMAT = "panoplace"
FORMAT_VERSION = 1
# Key renames that upgrade a checkpoint of format version v to v + 1: {v: [(old prefix, new prefix)]}.
# Version 1 is the first released layout, so there is nothing to rename yet.
KEY_RENAMES: Dict[int, List[Tuple[str, str]]] = {}
OLDEST_FORMAT_VERSION = 1


class Whitening(nn.Module):
    """PCA-whitening as a linear layer: ``y = W (x - mean)`` = ``x W^T + b`` with ``b = -W mean``.

    Holds no values until :meth:`set_whitening` (fitting lives in the PCA module); a checkpoint
    restores the fitted sizes. ``out_dim`` is ``ModelConfig.whitening_dim``.

    Shape:
        - Input: ``(..., D_in)``.
        - Output: ``(..., out_dim)`` (not normalised; :class:`PlaceModel` L2-normalises).
    """

    def __init__(self, out_dim: int) -> None:
        super().__init__()
        if out_dim < 1:
            raise InputError(f"whitening_dim must be >= 1, got {out_dim}")
        self.out_dim = int(out_dim)
        self.weight = nn.Parameter(torch.empty(0, 0))
        self.bias = nn.Parameter(torch.empty(0))

    @property
    def fitted(self) -> bool:
        return self.weight.numel() > 0

    @property
    def in_dim(self) -> int:
        return self.weight.shape[1] if self.fitted else 0

    def _resize(self, out_dim: int, in_dim: int) -> None:
        self.weight.data = self.weight.data.new_empty(out_dim, in_dim)
        self.bias.data = self.bias.data.new_empty(out_dim if in_dim else 0)

    @torch.no_grad()
    def set_whitening(self, mean: ArrayLike, components: ArrayLike) -> None:
        """Set the projection: ``components`` ``(out_dim, D_in)`` (rows already scaled by
        ``1/sqrt(eigenvalue)``) and the descriptor ``mean`` ``(D_in,)``."""
        w = torch.as_tensor(np.asarray(components) if not isinstance(components, torch.Tensor) else components)
        m = torch.as_tensor(np.asarray(mean) if not isinstance(mean, torch.Tensor) else mean)
        w, m = w.detach().double().cpu(), m.detach().double().cpu().reshape(-1)
        if w.dim() != 2 or w.shape[0] != self.out_dim or w.shape[1] != m.shape[0]:
            raise InputError(f"whitening components must be ({self.out_dim}, D) with mean (D,), got "
                             f"{tuple(w.shape)} and {tuple(m.shape)}")
        if not (torch.isfinite(w).all() and torch.isfinite(m).all()):
            raise InputError("whitening mean/components contain NaN or infinite values")
        dev, dtype = self.weight.device, self.weight.dtype
        self._resize(w.shape[0], w.shape[1])
        self.weight.copy_(w.to(dev, dtype))
        self.bias.copy_((-(w @ m)).to(dev, dtype))

    def _load_from_state_dict(self, state_dict: Dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        w = state_dict.get(prefix + "weight")
        if isinstance(w, torch.Tensor) and w.dim() == 2:
            self._resize(w.shape[0], w.shape[1])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shape: ``(..., D_in)`` -> ``(..., out_dim)``."""
        if not self.fitted:
            raise InputError(f"the whitening layer (whitening_dim={self.out_dim}) is not fitted: fit PCA "
                             "whitening first, or compute descriptors with whiten=False")
        if x.shape[-1] != self.in_dim:
            raise InputError(f"whitening expects descriptors of length {self.in_dim}, got {x.shape[-1]}")
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_dim={self.in_dim}, out_dim={self.out_dim}, fitted={self.fitted}"


def make_aggregator(cfg: ModelConfig, dim: int) -> nn.Module:
    """The aggregator of ``cfg`` for ``dim``-channel local features."""
    if cfg.aggregator == "netvlad":
        return NetVLAD(num_clusters=cfg.num_clusters, dim=dim, vladv2=cfg.vladv2)
    if cfg.aggregator == "gem":
        return GeM(dim, p=cfg.gem_p)
    if cfg.aggregator == "avg":
        return AvgPool(dim)
    if cfg.aggregator == "max":
        return MaxPool(dim)
    raise InputError(f"unknown aggregator {cfg.aggregator!r}")


def normalise_crops(crops_uint8: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 RGB crops -> ``(x / 255 - mean) / std`` float crops on ``mean``'s device.

    One strided copy into the channels-first float tensor, then one in-place multiply-subtract
    (``x * 1 / (255 std) - mean / std``): about 6x faster than the textbook chain of
    temporaries on a 2-core CPU (benchmarks/bench_pipeline.py).

    Shape:
        - crops_uint8: ``(B, K, H, W, 3)`` uint8; mean, std: ``(3, 1, 1)``.
        - Output: ``(B, K, 3, H, W)`` float32, contiguous.
    """
    if not isinstance(crops_uint8, torch.Tensor) or crops_uint8.dim() != 5 or crops_uint8.shape[-1] != 3:
        shape = tuple(crops_uint8.shape) if hasattr(crops_uint8, "shape") else type(crops_uint8).__name__
        raise InputError(f"preprocess expects a (B, K, H, W, 3) uint8 tensor, got {shape}")
    if crops_uint8.dtype != torch.uint8:
        raise InputError(f"preprocess expects uint8 crops, got {crops_uint8.dtype}")
    b, k, h, w, _ = crops_uint8.shape
    x = torch.empty((b, k, 3, h, w), dtype=torch.float32, device=mean.device)
    x.copy_(crops_uint8.to(mean.device).permute(0, 1, 4, 2, 3))
    return x.mul_(1.0 / (255.0 * std)).sub_(mean / std)


class PlaceModel(nn.Module):
    """Backbone -> aggregator -> fusion of the K crops -> optional PCA-whitening + L2.

    Attributes:
        config: the :class:`ModelConfig` it was built from, with ``cut`` resolved.
        backbone: :class:`Backbone`; aggregator: NetVLAD/GeM/AvgPool/MaxPool;
        attention: spatial attention applied before aggregation
            (:mod:`panoplace.models.attention`) or None; whitening: :class:`Whitening` or None.

    Shape:
        - Input: crops ``(B, K, 3, H, W)`` float, normalised (see :meth:`preprocess`).
        - Output: ``(B, D)`` (``add``/``concat``) or ``(B, K, D)`` (``per-crop``).
    """

    def __init__(self, config: ModelConfig, backbone: Backbone, aggregator: nn.Module,
                 attention: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.aggregator = aggregator
        self.attention = attention
        self.whitening: Optional[Whitening] = (Whitening(config.whitening_dim)
                                               if config.whitening_dim is not None else None)
        self.register_buffer("pixel_mean", torch.tensor(backbone.mean).view(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(backbone.std).view(3, 1, 1), persistent=False)

    def preprocess(self, crops_uint8: torch.Tensor) -> torch.Tensor:
        """uint8 RGB crops -> normalised float crops on the model's device.

        Shape:
            - crops_uint8: ``(B, K, H, W, 3)`` uint8.
            - Output: ``(B, K, 3, H, W)`` float32, ``(x / 255 - mean) / std``.
        """
        return normalise_crops(crops_uint8, self.pixel_mean, self.pixel_std)

    def local_features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone feature maps (for clustering).

        Shape:
            - x: ``(N, 3, H, W)`` normalised.
            - Output: ``(N, C, h, w)``.
        """
        return self.backbone(x)

    def forward(self, crops: torch.Tensor, whiten: bool = True) -> torch.Tensor:
        """Panoramic descriptors: all ``B*K`` crops go through the backbone as one batch.

        Args:
            crops: normalised crops.
            whiten: apply the whitening layer when the model has one (False gives the
                descriptors PCA-whitening is fitted on).

        Shape:
            - crops: ``(B, K, 3, H, W)``.
            - Output: ``(B, D)`` or ``(B, K, D)`` for ``per-crop``, L2-normalised.
        """
        if not isinstance(crops, torch.Tensor) or crops.dim() != 5 or crops.shape[2] != 3:
            shape = tuple(crops.shape) if hasattr(crops, "shape") else type(crops).__name__
            raise InputError(f"PlaceModel input must be (B, K, 3, H, W) crops, got {shape}")
        if not crops.is_floating_point():
            raise InputError(f"PlaceModel input must be float (normalise uint8 crops with preprocess), "
                             f"got {crops.dtype}")
        b, k = crops.shape[:2]
        feats = self.backbone(crops.flatten(0, 1))  # (B*K, C, h, w)
        raw = (self.attention.raw(feats, self.aggregator) if self.attention is not None
               else self.aggregator.raw(feats))  # (B*K, ...)
        desc = fuse(raw.reshape(b, k, *raw.shape[1:]), self.aggregator, self.config.fusion)
        if self.whitening is not None and whiten:
            desc = F.normalize(self.whitening(desc), p=2, dim=-1)
        return desc

    def descriptor_dim(self, n_crops: int, whiten: bool = True) -> int:
        """Length D of the descriptor for panoramas of ``n_crops`` crops (per crop for ``per-crop``)."""
        if n_crops < 1:
            raise InputError(f"n_crops must be >= 1, got {n_crops}")
        if self.whitening is not None and whiten:
            return self.whitening.out_dim
        return fused_dim(self.aggregator.out_dim, n_crops, self.config.fusion)

    def set_whitening(self, mean: ArrayLike, components: ArrayLike) -> None:
        """Set the PCA-whitening projection (see :meth:`Whitening.set_whitening`)."""
        if self.whitening is None:
            raise InputError("this model has no whitening layer: build it with whitening_dim set")
        self.whitening.set_whitening(mean, components)


def build_model(cfg: ModelConfig) -> PlaceModel:
    """Build the :class:`PlaceModel` of ``cfg`` (in eval mode; call ``.train()`` to train).

    Raises:
        InputError: unknown backbone/cut/aggregator, or an option this builder does not provide.
        CheckpointError: backbone weights that cannot be loaded.
    """
    from panoplace.models.attention import build_attention, check_attention

    check_attention(cfg.attention, cfg.attention_remain)
    backbone = build_backbone(cfg.backbone, cut=cfg.cut, n_trainable=cfg.n_trainable, weights=cfg.weights)
    aggregator = make_aggregator(cfg, backbone.out_channels)
    attention = build_attention(cfg.attention, backbone.out_channels, cfg.attention_remain)
    resolved = dataclasses.replace(cfg, cut=backbone.cut)
    return PlaceModel(resolved, backbone, aggregator, attention).eval()


def weights_fingerprint(model: nn.Module) -> str:
    """16 hex digits of sha256 over the state_dict: names, dtypes, shapes and bytes, sorted by name."""
    h = hashlib.sha256()
    sd = model.state_dict()
    for key in sorted(sd):
        t = sd[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()[:16]


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
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": FORMAT_VERSION,
        "config": {"model": model.config.to_dict(),
                   "panorama": panorama.to_dict() if panorama is not None else None},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "fingerprint": weights_fingerprint(model),
        "extra": dict(extra) if extra else {},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    log.info("saved checkpoint %s (fingerprint %s)", path, payload["fingerprint"])
    return path


def _describe(cfg: ModelConfig) -> str:
    agg = f"netvlad K={cfg.num_clusters}" if cfg.aggregator == "netvlad" else cfg.aggregator
    return f"{cfg.backbone} cut {cfg.cut!r} + {agg}"


def _load_state(model: PlaceModel, sd: Dict[str, torch.Tensor], source: str) -> None:
    """Load ``sd`` into ``model`` with one clear CheckpointError line on any mismatch."""
    if model.whitening is not None:
        w = sd.get("whitening.weight")
        if isinstance(w, torch.Tensor) and w.dim() == 2:
            model.whitening._resize(w.shape[0], w.shape[1])
    if model.attention is not None and hasattr(model.attention, "set_classifier"):  # CAM: sized by the file
        w = sd.get("attention.weight")
        if isinstance(w, torch.Tensor) and w.dim() == 2:
            model.attention._resize(w.shape[0])
    expected = model.state_dict()
    what = _describe(model.config)
    for k, v in sd.items():
        if k in expected and tuple(v.shape) != tuple(expected[k].shape):
            raise CheckpointError(f"{source} is not a {what} checkpoint: {k} has shape {tuple(v.shape)}, "
                                  f"the model expects {tuple(expected[k].shape)}")
    unknown = [k for k in sd if k not in expected]
    if unknown:
        raise CheckpointError(f"{source} is not a {what} checkpoint: {len(unknown)} unexpected key(s), "
                              f"e.g. {', '.join(unknown[:3])}")
    missing = [k for k in expected if k not in sd and not k.endswith("num_batches_tracked")]
    if missing:
        raise CheckpointError(f"{source} is not a {what} checkpoint: {len(missing)} missing key(s), "
                              f"e.g. {', '.join(missing[:3])}")
    model.load_state_dict(sd, strict=False)


def upgrade_state_dict(sd: Dict[str, torch.Tensor], version: int) -> Dict[str, torch.Tensor]:
    """Rename the keys of a format-``version`` panoplace state_dict to the current layout."""
    for v in range(version, FORMAT_VERSION):
        for old, new in KEY_RENAMES.get(v, []):
            sd = {(new + k[len(old):] if k.startswith(old) else k): t for k, t in sd.items()}
    return sd


def _load_panoplace(obj: Dict[str, Any], source: str) -> Tuple[PlaceModel, Optional[PanoramaConfig]]:
    version = obj.get("format_version")
    if not isinstance(version, int) or version < OLDEST_FORMAT_VERSION:
        raise CheckpointError(f"{source} has an unknown panoplace format_version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{source} was written by a newer panoplace (format_version {version}, "
                              f"this one reads up to {FORMAT_VERSION}); upgrade panoplace")
    config = obj.get("config")
    sd = obj.get("state_dict")
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict) or not isinstance(sd, dict):
        raise CheckpointError(f"{source} is a damaged panoplace checkpoint (no config or state_dict)")
    try:
        cfg = ModelConfig.from_dict(config["model"])
        panorama = PanoramaConfig.from_dict(config["panorama"]) if config.get("panorama") else None
    except PanoplaceError as err:
        raise CheckpointError(f"{source} has an invalid config: {err}") from None
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{source} has an invalid config: {err}") from None
    model = build_model(dataclasses.replace(cfg, weights="none"))
    model.config = dataclasses.replace(model.config, weights=cfg.weights)
    upgraded = upgrade_state_dict(dict(sd), version)
    _load_state(model, upgraded, source)
    stored = obj.get("fingerprint")
    if version == FORMAT_VERSION and stored is not None and stored != weights_fingerprint(model):
        raise CheckpointError(f"{source} is corrupted: its weights do not match the fingerprint it records")
    return model, panorama


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


def _load_netvlad_format(sd: Dict[str, torch.Tensor], path: Path) -> PlaceModel:
    source = str(path)
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
    new_sd = {f"backbone.body.{children[int(k.split('.', 1)[0])]}.{k.split('.', 1)[1]}": v
              for k, v in enc.items() if k.split(".")[0].isdigit() and "." in k}
    bad = [k for k in enc if not (k.split(".")[0].isdigit() and "." in k)]
    if bad:
        raise CheckpointError(f"{source} has encoder keys that are not encoder.N.*, e.g. {', '.join(bad[:3])}")
    new_sd.update({f"aggregator.{k}": v for k, v in pool.items()})
    _load_state(model, new_sd, source)
    log.info("imported pytorch-NetVlad checkpoint %s as %s", source, _describe(model.config))
    return model


def load_checkpoint(path: PathLike) -> Tuple[PlaceModel, Optional[PanoramaConfig]]:
    """Rebuild a model from a checkpoint file alone (panoplace, PAL seed or pytorch-NetVlad format;
    of a scene checkpoint from ``panoplace scene train``, its place branch).

    Returns:
        ``(model in eval mode, the PanoramaConfig saved with it or None)``.

    Raises:
        CheckpointError: missing file, unknown format, or weights of another architecture.
    """
    path = Path(path)
    obj = read_torch_file(path, "checkpoint")
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        model, panorama = _load_panoplace(obj, str(path))
    elif isinstance(obj, dict) and obj.get("format") == "panoplace-scene":
        from panoplace.models.scene import load_scene_checkpoint  # scene.py imports this module

        scene_model, panorama = load_scene_checkpoint(path)
        model = scene_model.place_model()  # its place branch: the descriptors `scene predict` writes
    else:
        sd = state_dict_of(obj, str(path))
        if not any(k.startswith("encoder.") for k in sd):
            raise CheckpointError(f"{path} is not a panoplace, PAL seed or pytorch-NetVlad checkpoint "
                                  f"(keys like {', '.join(list(sd)[:2])}); backbone weights go in "
                                  "ModelConfig.weights instead")
        model, panorama = _load_netvlad_format(sd, path), None
    log.info("loaded %s from %s (fingerprint %s)", _describe(model.config), path, weights_fingerprint(model))
    return model.eval(), panorama
