"""Spatial attention over local features, applied before aggregation (the "attentive" variant).

An attention module turns the local features ``(N, C, h, w)`` of each crop into a weight map
``w`` ``(N, h*w)`` that sums to 1 over the locations of each map. With ``remain < 1`` only the
``k = max(1, ceil(remain * h*w))`` locations with the highest scores keep a weight (the others
get exactly 0, the kept weights are renormalised to sum to 1).

Two modes (``ModelConfig.attention``):

- ``"learned"`` (:class:`LearnedAttention`): a small head, 1x1 conv ``C -> hidden`` + ReLU +
  1x1 conv ``hidden -> 1``, gives a score ``s`` per location; the weights are ``sigmoid(s)``
  over the kept locations, normalised to sum 1. The sigmoid bounds how much one location can
  weigh relative to the others, so the head learns to suppress locations rather than to
  concentrate the descriptor on a few (a softmax over the scores collapsed in training on the
  procedural world). ``hidden = min(128, C)``. The last conv starts near zero, so a new head
  starts close to uniform weights. Its parameters train at a higher learning rate (see
  :mod:`panoplace.training.trainer`).
- ``"cam"`` (:class:`CamAttention`): the class activation map (Zhou et al., CVPR 2016) of a
  scene classifier whose last layer is a linear map over the channels of the local features
  (e.g. the Places365 ``fc`` over ResNet ``layer4``): ``CAM_c(l) = W[c] . f(l)`` for the top
  class ``c`` of the classifier applied to the average-pooled features. Weights are the CAM
  shifted so that the map's minimum is 0 (that location gets no weight), restricted to the kept
  locations and normalised to sum 1 (uniform over the kept ones when the CAM is flat). The
  classifier is frozen (it belongs to the scene branch); set it with
  :meth:`CamAttention.set_classifier`, a checkpoint restores it.

How the weights enter the aggregation (:func:`weighted_raw`): every location gets the multiplier
``m_l = w_l * h*w`` (mean 1 over the map, 0 for dropped locations), so that uniform weights give
exactly the aggregator's own ``raw`` output:

- NetVLAD: the soft assignment of location ``l`` to every cluster is multiplied by ``m_l``
  (multiplying the features themselves would be undone by NetVLAD's input normalisation);
- GeM: ``mean_l(m_l * clamp(x_l, eps)^p)``; average: ``mean_l(m_l * x_l)``;
- max: ``max_l(m_l * x_l)`` over the kept locations.
"""

from __future__ import annotations

import abc
import logging
import math
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from panoplace.errors import InputError
from panoplace.models.fusion import Aggregator
from panoplace.models.netvlad import NetVLAD
from panoplace.models.pooling import AvgPool, GeM, MaxPool

log = logging.getLogger(__name__)

ATTENTION_MODES: Tuple[str, ...] = ("learned", "cam")
ArrayLike = Union[np.ndarray, torch.Tensor]


def check_remain(remain: float) -> float:
    """``remain`` as a float in ``(0, 1]`` or an :class:`InputError`."""
    r = float(remain)
    if not 0.0 < r <= 1.0:
        raise InputError(f"attention_remain must be in (0, 1], got {remain}")
    return r


def _check_features(x: torch.Tensor, channels: int) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != channels:
        shape = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
        raise InputError(f"attention input must be (N, {channels}, h, w) local features, got {shape}")


def keep_count(n_locations: int, remain: float) -> int:
    """Locations kept out of ``n_locations``: ``max(1, ceil(remain * n_locations))``."""
    return max(1, min(n_locations, math.ceil(remain * n_locations - 1e-9)))


def top_fraction_mask(scores: torch.Tensor, remain: float) -> torch.Tensor:
    """True at the ``keep_count(L, remain)`` highest scores of each row.

    Shape:
        - scores: ``(N, L)``.
        - Output: ``(N, L)`` bool.
    """
    n_loc = scores.shape[1]
    k = keep_count(n_loc, remain)
    if k == n_loc:
        return torch.ones_like(scores, dtype=torch.bool)
    idx = torch.topk(scores.detach(), k, dim=1).indices
    return torch.zeros_like(scores, dtype=torch.bool).scatter_(1, idx, True)


class Attention(nn.Module, abc.ABC):
    """Shared part: ``weights`` from ``scores``/``_normalise`` and the weighted aggregation."""

    def __init__(self, channels: int, remain: float) -> None:
        super().__init__()
        if channels < 1:
            raise InputError(f"attention needs channels >= 1, got {channels}")
        self.channels = int(channels)
        self.remain = check_remain(remain)

    @abc.abstractmethod
    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Score per location. Shape: ``(N, C, h, w)`` -> ``(N, h*w)``."""

    @abc.abstractmethod
    def _normalise(self, scores: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Scores ``(N, L)`` and kept mask ``(N, L)`` -> weights ``(N, L)`` summing to 1, 0 where not kept."""

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """Attention weights over the locations of each map.

        Shape:
            - x: ``(N, C, h, w)`` local features.
            - Output: ``(N, h*w)``, non-negative, each row summing to 1; exactly
              ``N * (h*w - keep_count(h*w, remain))`` zeros when ``remain < 1``.
        """
        _check_features(x, self.channels)
        s = self.scores(x)  # (N, L)
        keep = top_fraction_mask(s, self.remain)
        return self._normalise(s, keep)

    def weight_map(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`weights` as maps. Shape: ``(N, C, h, w)`` -> ``(N, h, w)``."""
        return self.weights(x).reshape(x.shape[0], x.shape[2], x.shape[3])

    def raw(self, x: torch.Tensor, aggregator: Aggregator) -> torch.Tensor:
        """The aggregator's ``raw`` output of the attention-weighted local features.

        Shape:
            - x: ``(N, C, h, w)``.
            - Output: as ``aggregator.raw(x)`` (NetVLAD ``(N, K, C)``, pooling ``(N, C)``).
        """
        return weighted_raw(aggregator, x, self.weights(x))

    def extra_repr(self) -> str:
        return f"channels={self.channels}, remain={self.remain}"


class LearnedAttention(Attention):
    """A learned spatial attention head (see the module docstring).

    Shape:
        - :meth:`scores`: ``(N, C, h, w)`` -> ``(N, h*w)``.
        - :meth:`weights`: ``(N, C, h, w)`` -> ``(N, h*w)`` rows summing to 1.
    """

    def __init__(self, channels: int, remain: float = 0.5, hidden: Optional[int] = None) -> None:
        super().__init__(channels, remain)
        self.hidden = int(hidden) if hidden is not None else min(128, self.channels)
        if self.hidden < 1:
            raise InputError(f"attention hidden size must be >= 1, got {hidden}")
        self.conv1 = nn.Conv2d(self.channels, self.hidden, kernel_size=1)
        self.conv2 = nn.Conv2d(self.hidden, 1, kernel_size=1)
        with torch.no_grad():
            nn.init.normal_(self.conv2.weight, std=1e-2)
            if self.conv2.bias is not None:  # always (bias=True); narrows the Optional for mypy
                self.conv2.bias.zero_()

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Score per location. Shape: ``(N, C, h, w)`` -> ``(N, h*w)``."""
        _check_features(x, self.channels)
        return self.conv2(F.relu(self.conv1(x))).flatten(1)

    def _normalise(self, scores: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        g = torch.sigmoid(scores) * keep
        return g / g.sum(dim=1, keepdim=True)


class CamAttention(Attention):
    """Class-activation-map attention from a frozen linear scene classifier.

    Holds the classifier's ``weight`` ``(n_classes, C)`` and ``bias`` ``(n_classes,)`` (empty
    until :meth:`set_classifier`; a checkpoint restores the fitted sizes). They never train.

    Shape:
        - :meth:`scores`: ``(N, C, h, w)`` -> ``(N, h*w)`` (the top class's CAM).
        - :meth:`weights`: ``(N, C, h, w)`` -> ``(N, h*w)`` rows summing to 1.
    """

    def __init__(self, channels: int, remain: float = 0.5) -> None:
        super().__init__(channels, remain)
        self.weight = nn.Parameter(torch.empty(0, self.channels), requires_grad=False)
        self.bias = nn.Parameter(torch.empty(0), requires_grad=False)

    @property
    def fitted(self) -> bool:
        return self.weight.shape[0] > 0

    @property
    def n_classes(self) -> int:
        return int(self.weight.shape[0])

    def _resize(self, n_classes: int) -> None:
        self.weight.data = self.weight.data.new_empty(n_classes, self.channels)
        self.bias.data = self.bias.data.new_empty(n_classes)

    @torch.no_grad()
    def set_classifier(self, classifier: Union[nn.Linear, Tuple[ArrayLike, Optional[ArrayLike]]]) -> None:
        """Use ``classifier`` (an ``nn.Linear(C, n_classes)`` or ``(weight, bias or None)``)."""
        w_in: Union[torch.Tensor, ArrayLike]
        b_in: Union[torch.Tensor, ArrayLike, None]
        if isinstance(classifier, nn.Linear):
            w_in, b_in = classifier.weight, classifier.bias
        else:
            w_in, b_in = classifier
        w = torch.as_tensor(np.asarray(w_in) if not isinstance(w_in, torch.Tensor) else w_in).detach().float().cpu()
        if w.dim() != 2 or w.shape[1] != self.channels or w.shape[0] < 1:
            raise InputError(f"a CAM classifier must be a linear map over the {self.channels} channels of the "
                             f"local features, weight (n_classes, {self.channels}); got {tuple(w.shape)}")
        if b_in is None:
            b_in = torch.zeros(w.shape[0])
        b = torch.as_tensor(np.asarray(b_in) if not isinstance(b_in, torch.Tensor) else b_in).detach().float().cpu()
        if b.shape != (w.shape[0],):
            raise InputError(f"CAM classifier bias must be ({w.shape[0]},), got {tuple(b.shape)}")
        if not (torch.isfinite(w).all() and torch.isfinite(b).all()):
            raise InputError("CAM classifier weights contain NaN or infinite values")
        self._resize(w.shape[0])
        self.weight.copy_(w.to(self.weight.device, self.weight.dtype))
        self.bias.copy_(b.to(self.bias.device, self.bias.dtype))

    def _load_from_state_dict(self, state_dict: Dict[str, torch.Tensor], prefix: str, *args: Any, **kwargs: Any) -> None:
        w = state_dict.get(prefix + "weight")
        if isinstance(w, torch.Tensor) and w.dim() == 2:
            self._resize(w.shape[0])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores of average-pooled features. Shape: ``(N, C, h, w)`` -> ``(N, n_classes)``."""
        _check_features(x, self.channels)
        if not self.fitted:
            raise InputError("the CAM attention has no classifier: set one with set_classifier "
                             "(e.g. the Places365 fc layer) before using attention='cam'")
        return F.linear(x.mean(dim=(2, 3)), self.weight, self.bias)

    def top_class(self, x: torch.Tensor) -> torch.Tensor:
        """Top class per map. Shape: ``(N, C, h, w)`` -> ``(N,)`` int64."""
        return self.logits(x).argmax(dim=1)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """The top class's CAM ``W[c] . f(l)``. Shape: ``(N, C, h, w)`` -> ``(N, h*w)``."""
        c = self.top_class(x)  # (N,)
        return torch.einsum("nc,ncl->nl", self.weight[c], x.flatten(2))

    def _normalise(self, scores: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        s = (scores - scores.amin(dim=1, keepdim=True)) * keep  # >= 0, 0 at the map's minimum
        total = s.sum(dim=1, keepdim=True)
        uniform = keep.to(s.dtype) / keep.sum(dim=1, keepdim=True).to(s.dtype)
        return torch.where(total > 0, s / total.clamp_min(torch.finfo(s.dtype).tiny), uniform)


def weighted_raw(aggregator: Aggregator, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``aggregator.raw`` of local features weighted per location (see the module docstring).

    Args:
        aggregator: :class:`~panoplace.models.netvlad.NetVLAD`, ``GeM``, ``AvgPool`` or ``MaxPool``.
        x: local features.
        weights: per-location weights summing to 1 per row (zeros = dropped locations).

    Shape:
        - x: ``(N, C, h, w)``; weights: ``(N, h*w)``.
        - Output: as ``aggregator.raw(x)``.
    """
    n, _, h, w = x.shape
    if weights.shape != (n, h * w):
        raise InputError(f"attention weights must be ({n}, {h * w}) for features {tuple(x.shape)}, "
                         f"got {tuple(weights.shape)}")
    m = weights * (h * w)  # (N, L), mean 1 over the map
    if isinstance(aggregator, NetVLAD):
        aggregator._check(x)
        xn = F.normalize(x, p=2, dim=1) if aggregator.normalize_input else x
        a = aggregator.soft_assign(xn) * m.unsqueeze(1)  # (N, K, L)
        vlad = torch.bmm(a, xn.flatten(2).transpose(1, 2))  # (N, K, C)
        return vlad - a.sum(dim=2, keepdim=True) * aggregator.centroids.unsqueeze(0)
    if isinstance(aggregator, GeM):
        aggregator._check(x)
        return (x.clamp(min=aggregator.eps).pow(aggregator.p).flatten(2) * m.unsqueeze(1)).mean(dim=2)
    if isinstance(aggregator, AvgPool):
        aggregator._check(x)
        return (x.flatten(2) * m.unsqueeze(1)).mean(dim=2)
    if isinstance(aggregator, MaxPool):
        aggregator._check(x)
        v = (x.flatten(2) * m.unsqueeze(1)).masked_fill((weights <= 0).unsqueeze(1), float("-inf"))
        return v.amax(dim=2)
    raise InputError(f"attention does not support the aggregator {type(aggregator).__name__}")


def check_attention(mode: Optional[str], remain: float) -> None:
    """Raise :class:`InputError` for an unknown attention mode or a ``remain`` outside ``(0, 1]``."""
    if mode is not None and mode not in ATTENTION_MODES:
        raise InputError(f"unknown attention {mode!r}; choose one of {list(ATTENTION_MODES)} or none")
    if mode is not None:
        check_remain(remain)


def build_attention(mode: Optional[str], channels: int, remain: float = 0.5) -> Optional[Attention]:
    """The attention module of ``ModelConfig.attention`` (None -> None).

    Raises:
        InputError: an unknown mode (the message lists the valid ones) or a bad ``remain``.
    """
    check_attention(mode, remain)
    if mode is None:
        return None
    if mode == "learned":
        return LearnedAttention(channels, remain)
    return CamAttention(channels, remain)
