"""Aggregator registry: the exact names of :data:`panoplace.config.AGGREGATORS`, their
per-method parameters and constructors.

Every aggregator follows one contract (docs/CONTRACTS.md): ``raw(x)`` (the new ones also take
the backbone's global token, ``raw(x, token)``, when their ``uses_token`` is True),
``finalize(raw)``, ``combine_crops(raw)`` and ``out_dim``.

=========  ===============================================  ==================================
name       what                                             parameters (``aggregator_params``)
=========  ===============================================  ==================================
netvlad    NetVLAD (:mod:`.netvlad`)                        ``ModelConfig.num_clusters``, ``vladv2``
gem        GeM pooling (:mod:`.pooling`)                    ``ModelConfig.gem_p``
avg, max   average / max pooling (:mod:`.pooling`)          none
gem_fc     CosPlace / EigenPlaces GeM + FC (:mod:`.pooling`)  :class:`~.pooling.GeMFCParams`
mixvpr     MixVPR (:mod:`.mixvpr`)                          :class:`~.mixvpr.MixVPRParams`
boq        Bag-of-Queries (:mod:`.boq`)                     :class:`~.boq.BoQParams`
salad      SALAD (:mod:`.salad`)                            :class:`~.salad.SaladParams`
=========  ===============================================  ==================================

Which fusion modes mean what (see :mod:`panoplace.models.fusion`):

- ``add`` is the aggregator over all local features of the panorama for netvlad, gem, avg, max,
  gem_fc (mean of the GeM powers, then FC) and boq (one token set of all crops); for salad the
  cluster sums of all crops (the transport plan is solved per crop); for mixvpr, whose mixers
  see one crop's spatial layout, it is the normalised sum of the crop descriptors. All are
  invariant to a rotation of the panorama by whole crops.
- ``concat`` keeps each crop's descriptor in crop order (rotation-sensitive; ``K * D`` long:
  with 16384-D BoQ that is large, so prefer ``add`` or ``per-crop`` there).
- ``per-crop`` keeps each crop's own descriptor (the published models' behaviour on single
  images) for rotation search at matching time.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, Optional, Type

from panoplace.errors import InputError
from panoplace.models.boq import BoQ, BoQParams
from panoplace.models.fusion import Aggregator
from panoplace.models.mixvpr import MixVPR, MixVPRParams
from panoplace.models.pooling import GeMFC, GeMFCParams
from panoplace.models.salad import SALAD, SaladParams

# aggregators configured by ``ModelConfig.aggregator_params``: name -> (params class, module class)
PARAMETRISED: Dict[str, Any] = {
    "gem_fc": (GeMFCParams, GeMFC),
    "mixvpr": (MixVPRParams, MixVPR),
    "boq": (BoQParams, BoQ),
    "salad": (SaladParams, SALAD),
}


def parse_params(name: str, values: Optional[Dict[str, Any]]) -> Any:
    """The parameter dataclass of aggregator ``name`` from a plain dict (missing keys take the
    published defaults; unknown keys and bad values are one :class:`InputError` line).

    Returns:
        the dataclass, or None for an aggregator without such parameters (then ``values`` must
        be empty).
    """
    values = dict(values or {})
    if name not in PARAMETRISED:
        if values:
            raise InputError(f"aggregator {name!r} takes no aggregator parameters (got {sorted(values)})")
        return None
    cls: Type[Any] = PARAMETRISED[name][0]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise InputError(f"unknown {name} parameter(s) {unknown}; valid: {sorted(fields)}")
    typed: Dict[str, Any] = {}
    for key, v in values.items():
        kind = type(getattr(cls(), key))
        typed[key] = _typed_value(name, key, kind, v)
    return cls(**typed)


def _typed_value(name: str, key: str, kind: type, v: Any) -> Any:
    """``v`` as ``kind``: an int only from a whole number (``"1.5"`` is refused, not truncated), a
    float only when finite (``nan``/``inf`` refused)."""
    what = {int: "an integer", float: "a finite number"}.get(kind, kind.__name__)
    try:
        if kind is int:
            number = float(v) if isinstance(v, str) else v
            if isinstance(number, bool) or not float(number).is_integer():
                raise ValueError(v)
            return int(number)
        if kind is float:
            number = float(v)
            if not math.isfinite(number):
                raise ValueError(v)
            return number
        return kind(v)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{name} parameter {key} must be {what}, got {v!r}") from None


def build_parametrised(name: str, dim: int, values: Optional[Dict[str, Any]]) -> Aggregator:
    """Aggregator ``name`` (one of :data:`PARAMETRISED`) for ``dim``-channel local features."""
    if name not in PARAMETRISED:
        raise InputError(f"aggregator {name!r} is not one of {sorted(PARAMETRISED)}")
    return PARAMETRISED[name][1](dim, parse_params(name, values))
