"""The unified scene + place network: one shared base, a scene branch and a place branch.

One CNN trunk (a registered backbone, :mod:`panoplace.models.backbones`) is split at a
configurable depth, ``SceneConfig.split``::

    crops ─► base (trunk up to split) ─┬─► scene tail (trunk split..scene_cut) ─► global avg pool ─► head ─► logits
             runs once per crop        └─► place tail (trunk split..place cut) ─► [attention] ─► aggregator
                                                                                 ─► crop fusion ─► [PCA-whitening]

- the **base** runs once per crop and feeds both branches;
- the **scene branch** is the rest of the trunk up to ``scene_cut`` (e.g. ``layer4`` of a
  Places365 ResNet; nothing when ``scene_cut == split``), global average pooling and a linear
  (or one-hidden-layer MLP) classifier, :class:`SceneHead`. The scene probabilities of an image
  are the softmax probabilities of its crops averaged over the crops;
- the **place branch** is the rest of the trunk up to the place cut (``SceneConfig.place.cut``;
  nothing when it equals ``split``) followed by the :class:`~panoplace.models.build.PlaceModel`
  pieces: attention, NetVLAD/GeM/avg/max, crop fusion, whitening. :meth:`ScenePlaceModel.place_model`
  assembles those modules (shared, not copied) into a plain ``PlaceModel`` with the usual
  parameter names, so its descriptors and its weights fingerprint are those of the place model
  the unified model was built from (:func:`from_place_model`) and stores written by
  ``panoplace scene`` and ``panoplace extract`` are compatible.

The two tails are separate modules (their own weights) even where they cover the same trunk
layers, as in the unified network (IEEE Access 2020): the scene tail keeps the scene weights
(Places365), the place tail those of the place model.

Only the scene head trains in this model (:meth:`ScenePlaceModel.train` keeps the base and both
tails in eval mode and their parameters frozen); train the place branch as a ``PlaceModel``
(``panoplace train``) and combine with :func:`from_place_model`.

Builders:

- :func:`from_places365_classifier`: the classifier of an official Places365 ResNet-18 /
  WideResNet-18 / ResNet-50 checkpoint with its 365-way ``fc`` as the scene head (the scene
  branch then gives the same logits as the plain Places365 classifier); the file itself is read
  by :func:`panoplace.models.checkpoint.from_places365`;
- :func:`from_place_model`: a place model (e.g. from ``panoplace cluster``) and a new scene head;
- :func:`build_scene_model`: from a :class:`SceneConfig` alone (used when loading).

Scene checkpoints (``"format": "panoplace-scene"``) are written and read by
:mod:`panoplace.models.checkpoint` (:func:`~panoplace.models.checkpoint.save_scene_checkpoint`,
:func:`~panoplace.models.checkpoint.load_scene_checkpoint`).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from panoplace.config import ModelConfig
from panoplace.errors import CheckpointError, InputError
from panoplace.models.backbones import (
    DEFAULT_CUTS,
    PLACES365_BACKBONES,
    Backbone,
    build_backbone,
    check_backbone_name,
    trunk_layout,
)
from panoplace.models.attention import Attention, CamAttention, build_attention, check_attention
from panoplace.models.build import PlaceModel, Whitening, make_aggregator, normalise_crops
from panoplace.models.fusion import Aggregator, fuse, fused_dim

log = logging.getLogger(__name__)

#: Category set names written into checkpoints and outputs.
PLACES365 = "Places365"
PROCEDURAL_WORLD = "procedural-world"

#: Default ``scene_cut`` per backbone: the trunk its own classifier pools. That is the place
#: cut everywhere but EfficientNet-Lite0, whose place cut (block 7) lies below its head.
DEFAULT_SCENE_CUTS: Dict[str, Any] = {**DEFAULT_CUTS, "efficientnet_lite0": "head"}


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------

@dataclass
class SceneConfig:
    """How the unified model is split and what its scene head is.

    place: the place branch (backbone name and weights, place cut, aggregator, fusion,
        attention, whitening), a :class:`~panoplace.config.ModelConfig`.
    split: the trunk cut where the shared base ends (None = the place cut, i.e. the place branch
        is the base + aggregator). Never deeper than the place cut or ``scene_cut``.
    scene_cut: the trunk cut whose features the scene head pools (None = :data:`DEFAULT_SCENE_CUTS`).
    n_classes: number of scene categories.
    hidden: 0 = linear head (as the Places365 ``fc``); > 0 = one hidden ReLU layer of this width.
    dropout: dropout on the head's input while training.
    """

    place: ModelConfig = field(default_factory=ModelConfig)
    split: Optional[Any] = None
    scene_cut: Optional[Any] = None
    n_classes: int = 365
    hidden: int = 0
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.place, dict):
            self.place = ModelConfig.from_dict(self.place)
        if not isinstance(self.place, ModelConfig):
            raise InputError(f"SceneConfig.place must be a ModelConfig, got {type(self.place).__name__}")
        if isinstance(self.n_classes, bool) or int(self.n_classes) < 2:
            raise InputError(f"a scene head needs at least 2 categories, got {self.n_classes}")
        self.n_classes = int(self.n_classes)
        if int(self.hidden) < 0:
            raise InputError(f"hidden must be >= 0 (0 = linear head), got {self.hidden}")
        self.hidden = int(self.hidden)
        if not 0.0 <= float(self.dropout) < 1.0:
            raise InputError(f"dropout must be in [0, 1), got {self.dropout}")
        self.dropout = float(self.dropout)

    def to_dict(self) -> Dict[str, Any]:
        return {"place": self.place.to_dict(), "split": self.split, "scene_cut": self.scene_cut,
                "n_classes": self.n_classes, "hidden": self.hidden, "dropout": self.dropout}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "SceneConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"unknown scene config key(s) {unknown}; valid keys: {sorted(names)}")
        d = dict(data)
        if "place" in d:
            d["place"] = ModelConfig.from_dict(d["place"])
        return cls(**d)


@dataclass(frozen=True)
class SplitPlan:
    """Resolved cuts of a :class:`SceneConfig` and the trunk child each ends at."""

    trunk: Tuple[str, ...]  # all trunk children in forward order
    split: Any
    place_cut: Any
    scene_cut: Any
    split_index: int  # index in ``trunk`` of the last base child
    place_index: int
    scene_index: int

    @property
    def deepest_cut(self) -> Any:
        return self.place_cut if self.place_index >= self.scene_index else self.scene_cut

    def place_tail(self) -> Tuple[str, ...]:
        return self.trunk[self.split_index + 1: self.place_index + 1]

    def scene_tail(self) -> Tuple[str, ...]:
        return self.trunk[self.split_index + 1: self.scene_index + 1]


def _normalise_cut(cut: Any) -> Any:
    if isinstance(cut, str) and cut.strip().lstrip("-").isdigit():
        return int(cut)
    return cut


def plan_split(cfg: SceneConfig) -> SplitPlan:
    """Resolve the cuts of ``cfg`` against its backbone's trunk.

    Raises:
        InputError: an unknown backbone or cut, or a split deeper than a branch's cut.
    """
    name = cfg.place.backbone
    check_backbone_name(name)
    children, cuts = trunk_layout(name)

    def resolve(cut: Any, default: Any, what: str) -> Tuple[Any, int]:
        c = default if cut is None else _normalise_cut(cut)
        try:
            known = not isinstance(c, bool) and c in cuts
        except TypeError:
            known = False
        if not known:
            raise InputError(f"unknown {what} {c!r} for backbone {name}; valid cuts: "
                             f"{', '.join(str(k) for k in cuts)}")
        return c, children.index(cuts[c])

    place_cut, pi = resolve(cfg.place.cut, DEFAULT_CUTS[name], "place cut")
    scene_cut, si = resolve(cfg.scene_cut, DEFAULT_SCENE_CUTS[name], "scene cut")
    split, xi = resolve(cfg.split, place_cut, "split")
    if xi > pi or xi > si:
        raise InputError(f"split {split!r} is deeper than the place cut {place_cut!r} or the scene cut "
                         f"{scene_cut!r} of {name}: the shared base must end at or before both")
    return SplitPlan(tuple(children), split, place_cut, scene_cut, xi, pi, si)


# --------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------

class SceneHead(nn.Module):
    """Global average pooling + linear classifier (``hidden == 0``) or a one-hidden-layer MLP.

    Parameter names: ``fc.weight``/``fc.bias`` (the last layer, as the Places365 ``fc``) and
    ``hidden.weight``/``hidden.bias`` for the MLP.

    Shape:
        - :meth:`pool`: ``(N, C, h, w)`` -> ``(N, C)``.
        - :meth:`classify`: ``(N, C)`` -> logits ``(N, n_classes)``.
        - forward: ``(N, C, h, w)`` -> logits ``(N, n_classes)``.
    """

    def __init__(self, in_channels: int, n_classes: int, hidden: int = 0, dropout: float = 0.0) -> None:
        super().__init__()
        if in_channels < 1 or n_classes < 2 or hidden < 0:
            raise InputError(f"a scene head needs in_channels >= 1, n_classes >= 2, hidden >= 0; got "
                             f"{in_channels}, {n_classes}, {hidden}")
        self.in_channels = int(in_channels)
        self.n_classes = int(n_classes)
        self.drop = nn.Dropout(float(dropout))
        self.hidden: Optional[nn.Linear] = nn.Linear(in_channels, hidden) if hidden else None
        self.fc = nn.Linear(hidden or in_channels, n_classes)

    @staticmethod
    def pool(x: torch.Tensor) -> torch.Tensor:
        """Global average pooling. Shape: ``(N, C, h, w)`` -> ``(N, C)``."""
        return x.mean(dim=(2, 3))

    def classify(self, v: torch.Tensor) -> torch.Tensor:
        """Logits of pooled features. Shape: ``(N, C)`` -> ``(N, n_classes)``."""
        if v.dim() != 2 or v.shape[1] != self.in_channels:
            raise InputError(f"scene head input must be (N, {self.in_channels}) pooled features, got {tuple(v.shape)}")
        v = self.drop(v)
        if self.hidden is not None:
            v = F.relu(self.hidden(v))
        return self.fc(v)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shape: ``(N, C, h, w)`` -> logits ``(N, n_classes)``."""
        return self.classify(self.pool(x))

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, n_classes={self.n_classes}"


class SceneOutput(NamedTuple):
    """What the unified model gives for a batch of B images of K crops.

    probs: ``(B, n_classes)`` scene probabilities, the crops' softmax averaged over the K crops.
    logits: ``(B, K, n_classes)`` scene logits per crop.
    descriptor: ``(B, D)`` place descriptor (``(B, K, D)`` for ``per-crop`` fusion), L2-normalised.
    features: ``(B, K, C_scene)`` the pooled scene-branch features of every crop (the head's input).
    """

    probs: torch.Tensor
    logits: torch.Tensor
    descriptor: torch.Tensor
    features: torch.Tensor


def _sequential(named: Sequence[Tuple[str, nn.Module]]) -> nn.Sequential:
    return nn.Sequential(OrderedDict(named))


def _check_crops(crops: Any, what: str = "ScenePlaceModel") -> None:
    if not isinstance(crops, torch.Tensor) or crops.dim() != 5 or crops.shape[2] != 3:
        shape = tuple(crops.shape) if hasattr(crops, "shape") else type(crops).__name__
        raise InputError(f"{what} input must be (B, K, 3, H, W) crops, got {shape}")
    if not crops.is_floating_point():
        raise InputError(f"{what} input must be float (normalise uint8 crops with preprocess), got {crops.dtype}")


class ScenePlaceModel(nn.Module):
    """The unified scene + place model (see the module docstring).

    Attributes:
        config: the :class:`SceneConfig` (cuts resolved).
        categories: the scene category names, ``n_classes`` of them, in logit order.
        category_set: what the categories are (``"Places365"``, ``"procedural-world"``, ...).
        base: :class:`Backbone` of the shared trunk (frozen).
        place_tail, scene_tail: ``nn.Sequential`` of trunk children after the split (may be empty).
        scene_head: :class:`SceneHead`. aggregator, attention, whitening: the place branch pieces.

    Shape:
        - Input: crops ``(B, K, 3, H, W)`` float, normalised (see :meth:`preprocess`).
        - Output: :class:`SceneOutput`.
    """

    config: SceneConfig
    categories: List[str]
    category_set: str
    base: Backbone
    place_tail: nn.Sequential
    scene_tail: nn.Sequential
    scene_head: SceneHead
    aggregator: Aggregator
    attention: Optional[Attention]
    whitening: Optional[Whitening]
    pixel_mean: torch.Tensor
    pixel_std: torch.Tensor

    def __init__(self, config: SceneConfig, base: Backbone, place_tail: nn.Sequential, scene_tail: nn.Sequential,
                 scene_head: SceneHead, aggregator: Aggregator, attention: Optional[Attention] = None,
                 categories: Optional[Sequence[str]] = None, category_set: str = "custom") -> None:
        super().__init__()
        cats = [str(c) for c in categories] if categories is not None else [f"class_{i}" for i in range(config.n_classes)]
        if len(cats) != config.n_classes or scene_head.n_classes != config.n_classes:
            raise InputError(f"{len(cats)} category names for a scene head of {scene_head.n_classes} classes "
                             f"(config says {config.n_classes})")
        if len(set(cats)) != len(cats):
            raise InputError("scene category names must be unique")
        self.config = config
        self.categories = cats
        self.category_set = str(category_set)
        self.base = base
        self.place_tail = place_tail
        self.scene_tail = scene_tail
        self.scene_head = scene_head
        self.aggregator = aggregator
        self.attention = attention
        self.whitening = Whitening(config.place.whitening_dim) if config.place.whitening_dim is not None else None
        self.register_buffer("pixel_mean", torch.tensor(base.mean).view(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(base.std).view(3, 1, 1), persistent=False)
        self.freeze_all_but_head()

    def freeze_all_but_head(self) -> None:
        """``requires_grad=False`` for every parameter outside the scene head."""
        for name, p in self.named_parameters():
            if not name.startswith("scene_head."):
                p.requires_grad_(False)

    # ------------------------------------------------------------------ running
    def preprocess(self, crops_uint8: torch.Tensor) -> torch.Tensor:
        """uint8 RGB crops -> normalised float crops on the model's device.

        Shape:
            - crops_uint8: ``(B, K, H, W, 3)`` uint8.
            - Output: ``(B, K, 3, H, W)`` float32, ``(x / 255 - mean) / std``.
        """
        return normalise_crops(crops_uint8, self.pixel_mean, self.pixel_std)

    def shared_features(self, crops: torch.Tensor) -> torch.Tensor:
        """The base's output. Shape: ``(B, K, 3, H, W)`` -> ``(B*K, C_split, h, w)``."""
        _check_crops(crops)
        return self.base(crops.flatten(0, 1))

    def _scene(self, shared: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(pooled scene features (B*K, C_scene), logits (B*K, n_classes))``."""
        pooled = SceneHead.pool(self.scene_tail(shared))
        return pooled, self.scene_head.classify(pooled)

    def _descriptor(self, shared: torch.Tensor, b: int, k: int, whiten: bool) -> torch.Tensor:
        feats = self.place_tail(shared)
        raw = (self.attention.raw(feats, self.aggregator) if self.attention is not None
               else self.aggregator.raw(feats))
        desc = fuse(raw.reshape(b, k, *raw.shape[1:]), self.aggregator, self.config.place.fusion)
        if self.whitening is not None and whiten:
            desc = F.normalize(self.whitening(desc), p=2, dim=-1)
        return desc

    def forward(self, crops: torch.Tensor, whiten: bool = True) -> SceneOutput:
        """Scene probabilities and place descriptor of panoramas; the base runs once per crop.

        Args:
            crops: normalised crops.
            whiten: apply the whitening layer when the model has one.

        Shape:
            - crops: ``(B, K, 3, H, W)``.
            - Output: probs ``(B, n_classes)``, logits ``(B, K, n_classes)``, descriptor ``(B, D)``
              (``(B, K, D)`` for ``per-crop`` fusion), features ``(B, K, C_scene)``.
        """
        b, k = crops.shape[:2] if isinstance(crops, torch.Tensor) and crops.dim() == 5 else (0, 0)
        shared = self.shared_features(crops)
        pooled, logits = self._scene(shared)
        logits = logits.reshape(b, k, -1)
        probs = torch.softmax(logits, dim=-1).mean(dim=1)
        return SceneOutput(probs, logits, self._descriptor(shared, b, k, whiten), pooled.reshape(b, k, -1))

    def classify(self, crops: torch.Tensor) -> torch.Tensor:
        """Scene probabilities only (the place branch is skipped).

        Shape: ``(B, K, 3, H, W)`` -> ``(B, n_classes)``.
        """
        b, k = crops.shape[:2] if isinstance(crops, torch.Tensor) and crops.dim() == 5 else (0, 0)
        logits = self._scene(self.shared_features(crops))[1].reshape(b, k, -1)
        return torch.softmax(logits, dim=-1).mean(dim=1)

    def scene_features(self, crops: torch.Tensor) -> torch.Tensor:
        """Pooled scene-branch features per crop, the scene head's input (for training the head).

        Shape: ``(B, K, 3, H, W)`` -> ``(B, K, C_scene)``.
        """
        b, k = crops.shape[:2] if isinstance(crops, torch.Tensor) and crops.dim() == 5 else (0, 0)
        pooled = SceneHead.pool(self.scene_tail(self.shared_features(crops)))
        return pooled.reshape(b, k, -1)

    def descriptor_dim(self, n_crops: int, whiten: bool = True) -> int:
        """Length D of the place descriptor for panoramas of ``n_crops`` crops (per crop for ``per-crop``)."""
        if n_crops < 1:
            raise InputError(f"n_crops must be >= 1, got {n_crops}")
        if self.whitening is not None and whiten:
            return self.whitening.out_dim
        return fused_dim(self.aggregator.out_dim, n_crops, self.config.place.fusion)

    def set_whitening(self, mean: Any, components: Any) -> None:
        """Set the place branch's PCA-whitening (see :meth:`Whitening.set_whitening`)."""
        if self.whitening is None:
            raise InputError("this model has no whitening layer: build it with place.whitening_dim set")
        self.whitening.set_whitening(mean, components)

    def set_head(self, head: SceneHead, categories: Sequence[str], category_set: str) -> None:
        """Replace the scene head and its categories (e.g. after training a head for new categories).

        Raises:
            InputError: a head reading another number of channels, or a category count that differs.
        """
        if head.in_channels != self.scene_head.in_channels:
            raise InputError(f"the new scene head reads {head.in_channels} channels, the scene branch gives "
                             f"{self.scene_head.in_channels}")
        cats = [str(c) for c in categories]
        if len(cats) != head.n_classes or len(set(cats)) != len(cats):
            raise InputError(f"{len(cats)} unique category names needed for a head of {head.n_classes} classes")
        hidden = head.hidden.out_features if head.hidden is not None else 0
        self.scene_head = head
        self.categories = cats
        self.category_set = str(category_set)
        self.config = dataclasses.replace(self.config, n_classes=head.n_classes, hidden=hidden,
                                          dropout=float(head.drop.p))

    def train(self, mode: bool = True) -> "ScenePlaceModel":
        """Only the scene head follows ``mode``; the base and both tails stay in eval mode."""
        super().train(mode)
        for m in (self.base, self.place_tail, self.scene_tail, self.aggregator):
            m.eval()
        if self.attention is not None:
            self.attention.eval()
        return self

    def place_model(self) -> PlaceModel:
        """The place branch as a plain :class:`PlaceModel` sharing this model's modules.

        Its backbone is the base followed by the place tail (parameter names
        ``backbone.body.<trunk child>``), so its weights fingerprint is that of the place model
        this model was built from.
        """
        named = list(self.base.body.named_children()) + list(self.place_tail.named_children())
        units = [list(u) for u in self.base.units] + [[n] for n, _ in self.place_tail.named_children()]
        backbone = Backbone(self.base.name, _sequential(named), self.config.place.cut, int(self.aggregator.dim),
                            self.base.mean, self.base.std, units, 0)
        pm = PlaceModel(self.config.place, backbone, self.aggregator, self.attention)
        pm.whitening = self.whitening
        return pm.train(self.training)

    def extra_repr(self) -> str:
        c = self.config
        return (f"backbone={c.place.backbone!r}, split={c.split!r}, place_cut={c.place.cut!r}, "
                f"scene_cut={c.scene_cut!r}, categories={self.category_set} ({c.n_classes})")


def _out_channels(named: Sequence[Tuple[str, nn.Module]]) -> int:
    """Channels out of a trunk prefix: a shape-only run on the meta device (no compute, no copy;
    BatchNorm in eval mode so no statistics change)."""
    body = _sequential(named)
    modes = [m.training for m in body.modules()]
    body.eval()
    try:
        state = {k: torch.empty_like(v, device="meta") for k, v in
                 list(body.named_parameters()) + list(body.named_buffers())}
        out = functional_call(body, state, (torch.empty(1, 3, 64, 64, device="meta"),))
    finally:
        for m, t in zip(body.modules(), modes):
            m.training = t
    return int(out.shape[1])


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------

def _split_trunk(trunk: Backbone, plan: SplitPlan) -> Tuple[Backbone, Dict[str, nn.Module]]:
    """The base :class:`Backbone` (children up to the split; shares modules with ``trunk``) and
    the trunk's later children by name."""
    children = OrderedDict(trunk.body.named_children())
    base_names = plan.trunk[: plan.split_index + 1]
    named = [(n, children[n]) for n in base_names]
    units = [[c for c in u if c in base_names] for u in trunk.units]
    base = Backbone(trunk.name, _sequential(named), plan.split, _out_channels(named), trunk.mean, trunk.std,
                    [u for u in units if u], 0)
    rest = {n: m for n, m in children.items() if n not in base_names}
    return base.eval(), rest


def _tail(rest: Dict[str, nn.Module], names: Sequence[str], copy_modules: bool) -> nn.Sequential:
    return _sequential([(n, copy.deepcopy(rest[n]) if copy_modules else rest[n]) for n in names]).eval()


def _link_cam(model: ScenePlaceModel) -> None:
    """With ``attention='cam'`` and no CAM classifier yet, use the scene head's linear layer when it
    reads the place branch's features (same cut, linear head)."""
    att = model.attention
    if not isinstance(att, CamAttention) or att.fitted:
        return
    cfg = model.config
    if cfg.hidden == 0 and cfg.scene_cut == cfg.place.cut and model.scene_head.in_channels == att.channels:
        att.set_classifier(model.scene_head.fc)
        log.info("CAM attention uses the scene head's classifier (%d classes)", model.scene_head.n_classes)


def _assemble(cfg: SceneConfig, plan: SplitPlan, base: Backbone, place_tail: nn.Sequential,
              scene_tail: nn.Sequential, head: Optional[SceneHead], categories: Optional[Sequence[str]],
              category_set: str) -> ScenePlaceModel:
    place_cfg = cfg.place
    check_attention(place_cfg.attention, place_cfg.attention_remain)
    place_channels = _out_channels(list(base.body.named_children()) + list(place_tail.named_children()))
    scene_channels = _out_channels(list(base.body.named_children()) + list(scene_tail.named_children()))
    if head is None:
        head = SceneHead(scene_channels, cfg.n_classes, cfg.hidden, cfg.dropout)
    elif head.in_channels != scene_channels or head.n_classes != cfg.n_classes:
        raise InputError(f"scene head ({head.in_channels} -> {head.n_classes}) does not fit scene features of "
                         f"{scene_channels} channels and {cfg.n_classes} classes")
    aggregator = make_aggregator(place_cfg, place_channels)
    attention = build_attention(place_cfg.attention, place_channels, place_cfg.attention_remain)
    resolved = dataclasses.replace(cfg, split=plan.split, scene_cut=plan.scene_cut,
                                   place=dataclasses.replace(place_cfg, cut=plan.place_cut))
    model = ScenePlaceModel(resolved, base, place_tail, scene_tail, head, aggregator, attention,
                            categories, category_set)
    return model.eval()


def build_scene_model(cfg: SceneConfig, categories: Optional[Sequence[str]] = None,
                      category_set: str = "custom") -> ScenePlaceModel:
    """A unified model from ``cfg`` alone: the trunk with ``cfg.place.weights`` (both tails start
    from the same weights), a new scene head, a new place aggregator.

    Raises:
        InputError: unknown backbone/cut/aggregator, or a split deeper than a branch.
        CheckpointError: backbone weights that cannot be loaded.
    """
    plan = plan_split(cfg)
    trunk = build_backbone(cfg.place.backbone, cut=plan.deepest_cut, n_trainable=0, weights=cfg.place.weights)
    base, rest = _split_trunk(trunk, plan)
    both = bool(plan.place_tail()) and bool(plan.scene_tail())
    place_tail = _tail(rest, plan.place_tail(), copy_modules=both)
    scene_tail = _tail(rest, plan.scene_tail(), copy_modules=False)
    return _assemble(cfg, plan, base, place_tail, scene_tail, None, categories, category_set)


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


def from_place_model(place: PlaceModel, categories: Sequence[str], category_set: str = "custom",
                     split: Any = None, scene_cut: Any = None, hidden: int = 0, dropout: float = 0.0,
                     head: Optional[SceneHead] = None, scene_trunk: Optional[Backbone] = None) -> ScenePlaceModel:
    """A unified model whose place branch is a copy of ``place`` (same weights, same descriptors,
    same fingerprint) and whose scene branch is the trunk up to ``scene_cut`` + a scene head (new
    unless ``head`` is given). ``place`` itself is left untouched.

    Trunk layers past the place cut that the scene branch needs come from ``scene_trunk`` (a
    backbone of the same architecture cut at or past ``scene_cut``), by default built with the
    place model's ``weights`` (e.g. the offline ImageNet weights).

    Raises:
        InputError: a split deeper than a branch, or a head that does not fit.
    """
    place = copy.deepcopy(place).eval()
    cfg = SceneConfig(place=place.config, split=split, scene_cut=scene_cut, n_classes=len(categories),
                      hidden=hidden, dropout=dropout)
    plan = plan_split(cfg)
    body = OrderedDict(place.backbone.body.named_children())
    source: Dict[str, nn.Module] = {}
    if plan.scene_index > plan.place_index:
        if scene_trunk is None:
            scene_trunk = build_backbone(place.config.backbone, cut=plan.scene_cut, n_trainable=0,
                                         weights=place.config.weights)
        source = OrderedDict(scene_trunk.body.named_children())
        lacking = [n for n in plan.scene_tail() if n not in body and n not in source]
        if lacking:
            raise InputError(f"the scene trunk lacks {', '.join(lacking)} needed up to scene cut {plan.scene_cut!r}")
    last = max(plan.place_index, plan.scene_index)
    trunk_named = [(n, body[n] if n in body else source[n]) for n in plan.trunk[: last + 1]]
    trunk = Backbone(place.backbone.name, _sequential(trunk_named), plan.deepest_cut, 1, place.backbone.mean,
                     place.backbone.std, [[n] for n, _ in trunk_named], 0)
    base, rest = _split_trunk(trunk, plan)
    place_tail = _tail(rest, plan.place_tail(), copy_modules=False)
    scene_tail = _sequential([(n, copy.deepcopy(rest[n]) if n in plan.place_tail() else rest[n])
                              for n in plan.scene_tail()]).eval()
    model = _assemble(cfg, plan, base, place_tail, scene_tail, head, categories, category_set)
    # the place pieces are the place model's own (centroids, attention, whitening)
    model.aggregator = place.aggregator
    model.attention = place.attention
    model.whitening = place.whitening
    model.freeze_all_but_head()
    _link_cam(model)
    return model.eval()


def from_places365_classifier(classifier: nn.Module, arch: str, categories: Sequence[str],
                              place: Union[None, ModelConfig, PlaceModel] = None, split: Any = None,
                              source: str = "the Places365 checkpoint") -> ScenePlaceModel:
    """A unified model from the Places365 scene classifier of an official Places365 checkpoint
    (:func:`panoplace.models.checkpoint.load_places365_checkpoint`; read the file with
    :func:`panoplace.models.checkpoint.from_places365`): its trunk and 365-way ``fc`` are the
    scene branch (same logits as the plain Places365 classifier).

    Args:
        classifier: the torchvision ResNet of the checkpoint; arch: its Places365 backbone name.
        categories: the 365 category names (:func:`panoplace.scene.load_categories`).
        place: the place branch: None (GeM over ``layer4``, needs no fitting), a ``ModelConfig``
            (its backbone is set to the Places365 architecture, its weights to ``source``),
            or a ``PlaceModel`` built on the same Places365 weights (e.g. ``panoplace cluster
            --backbone resnet18_places365 --weights FILE``), which keeps its NetVLAD centroids.
        split: trunk cut shared by both branches (default: the place cut).
        source: the checkpoint file (recorded as the place branch's weights, named in errors).

    Raises:
        CheckpointError: ``place`` was not built on these weights.
        InputError: a category list of the wrong length, or a bad cut.
    """
    clf, checkpoint = classifier, source
    fc = getattr(clf, "fc", None)
    if not isinstance(fc, nn.Linear):
        raise CheckpointError(f"{checkpoint} is not a Places365 classifier: no linear 'fc' layer")
    n_classes = int(fc.out_features)
    if len(categories) != n_classes:
        raise InputError(f"{len(categories)} categories given for the {n_classes} classes of {checkpoint}")
    trunk = build_backbone(arch, cut="layer4", n_trainable=0, weights="none")
    sd = clf.state_dict()
    trunk.body.load_state_dict({k: v for k, v in sd.items() if not k.startswith("fc.")}, strict=True)
    trunk.eval()
    head = SceneHead(int(fc.in_features), n_classes)
    with torch.no_grad():
        head.fc.weight.copy_(fc.weight)
        head.fc.bias.copy_(fc.bias)
    if isinstance(place, PlaceModel):
        if place.config.backbone != arch:
            raise CheckpointError(f"the place model's backbone is {place.config.backbone}, the Places365 "
                                  f"checkpoint {checkpoint} is {arch}")
        plan = plan_split(SceneConfig(place=place.config, split=split, scene_cut="layer4", n_classes=n_classes))
        base_names = set(plan.trunk[: plan.split_index + 1])
        ref = _sequential([(n, m) for n, m in trunk.body.named_children() if n in base_names])
        mine = _sequential([(n, m) for n, m in place.backbone.body.named_children() if n in base_names])
        if not _same_weights(ref, mine):
            raise CheckpointError(f"the place model's backbone up to {plan.split!r} does not hold the weights of "
                                  f"{checkpoint}: build it from the same file (--weights {checkpoint})")
        return from_place_model(place, categories, PLACES365, split=split, scene_cut="layer4", head=head,
                                scene_trunk=trunk)
    cfg_place = place if isinstance(place, ModelConfig) else ModelConfig(aggregator="gem", cut="layer4")
    cfg_place = dataclasses.replace(cfg_place, backbone=arch, weights=str(checkpoint))
    if cfg_place.aggregator == "netvlad":
        raise InputError("a NetVLAD place branch needs cluster centroids: pass a place model built on the "
                         "Places365 weights (panoplace cluster --backbone "
                         f"{arch} --weights FILE), or use aggregator gem/avg/max")
    cfg = SceneConfig(place=cfg_place, split=split, scene_cut="layer4", n_classes=n_classes)
    plan = plan_split(cfg)
    base, rest = _split_trunk(trunk, plan)
    both = bool(plan.place_tail()) and bool(plan.scene_tail())
    model = _assemble(cfg, plan, base, _tail(rest, plan.place_tail(), copy_modules=both),
                      _tail(rest, plan.scene_tail(), copy_modules=False), head, categories, PLACES365)
    _link_cam(model)
    return model


__all__ = [
    "DEFAULT_SCENE_CUTS",
    "PLACES365",
    "PLACES365_BACKBONES",
    "PROCEDURAL_WORLD",
    "SceneConfig",
    "SceneHead",
    "SceneOutput",
    "ScenePlaceModel",
    "build_scene_model",
    "from_place_model",
    "from_places365_classifier",
    "plan_split",
]
