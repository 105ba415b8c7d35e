"""One parameter dataclass per sequence matcher.

Each dataclass checks its values when built (one :class:`~panoplace.errors.InputError` line per
mistake) and knows its method name (``method``) and its JSON form (:meth:`as_dict`), which
results carry in :attr:`SequenceMatch.params`.

>>> from panoplace.matching.sequence.params import HMMParams
>>> HMMParams(ds=20, mode="online", jump_std=0.3).method
'hmm'
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar, Dict, Optional, Union

from panoplace.errors import InputError

__all__ = ["ClassicParams", "HMMParams", "MatcherParams", "SeqSLAMParams", "SingleParams", "params_for"]

MODES = ("offline", "online")


def _check_window(ds: int, mode: str) -> None:
    if mode not in MODES:
        raise InputError(f"unknown sequence mode {mode!r}; choose one of {', '.join(MODES)}")
    if int(ds) != ds or ds < 1:
        raise InputError(f"the sequence length ds must be a positive integer, got {ds}")


def _resolve_calibrate(p: Any) -> None:
    if p.calibrate is None:
        object.__setattr__(p, "calibrate", p.mode == "online")


def _check_speeds(vmin: float, vmax: float) -> None:
    if vmax < vmin:
        raise InputError(f"vmax ({vmax}) is smaller than vmin ({vmin})")


@dataclass(frozen=True)
class SingleParams:
    """No sequence: the best frame per query (:func:`~.single.single_frame_match`).

    uniqueness_radius: frames around the best match that the confidence (nearest / second
        nearest outside the radius) treats as the same place.
    """

    uniqueness_radius: int = 0
    method: ClassVar[str] = "single"

    def as_dict(self) -> Dict[str, Any]:
        return {"uniqueness_radius": int(self.uniqueness_radius)}


@dataclass(frozen=True)
class SeqSLAMParams:
    """SeqSLAM over straight trajectories (see :mod:`panoplace.matching.sequence`).

    ds: window length in query frames. mode: ``offline`` (centred) or ``online`` (causal).
    vmin, vmax, n_velocities: database frames per query frame tried.
    enhance_window: database frames of the local contrast enhancement.
    uniqueness_radius: frames around the best match excluded from the second best.
    calibrate: short windows never outrank full ones
        (:func:`~panoplace.matching.sequence.cap_short_windows`). Default (None): on in online
        mode; off in offline mode, where it would change the outputs of panoplace 0.1 that the
        README pipeline's regression test pins (turn it on for new work).
    """

    ds: int = 10
    mode: str = "offline"
    vmin: float = 0.8
    vmax: float = 1.2
    n_velocities: int = 5
    enhance_window: int = 10
    uniqueness_radius: int = 10
    calibrate: Optional[bool] = None
    method: ClassVar[str] = "seqslam"

    def __post_init__(self) -> None:
        _check_window(self.ds, self.mode)
        _resolve_calibrate(self)
        _check_speeds(self.vmin, self.vmax)
        if self.n_velocities < 1:
            raise InputError(f"n_velocities must be >= 1, got {self.n_velocities}")
        if self.enhance_window < 1:
            raise InputError(f"the contrast enhancement window must be >= 1, got {self.enhance_window}")

    def as_dict(self) -> Dict[str, Any]:
        return {"ds": int(self.ds), "mode": self.mode, "vmin": float(self.vmin), "vmax": float(self.vmax),
                "n_velocities": int(self.n_velocities), "enhance_window": int(self.enhance_window),
                "uniqueness_radius": int(self.uniqueness_radius)}


@dataclass(frozen=True)
class HMMParams:
    """Windowed HMM over database frames (see :mod:`panoplace.matching.sequence`).

    ds, mode, vmin, vmax, enhance_window, uniqueness_radius: as :class:`SeqSLAMParams`.
    jump_std: spread of the jump prior around the mean speed (0.3 constant speed, 0.5
        stop-and-go). teleport: probability of a uniform jump per step, in [0, 1).
    sigma: emission temperature, ``exp(-z / sigma)`` of the enhanced differences.
    calibrate: as :class:`SeqSLAMParams`.
    """

    ds: int = 10
    mode: str = "offline"
    vmin: float = 0.8
    vmax: float = 1.2
    jump_std: float = 0.4
    teleport: float = 1e-3
    sigma: float = 1.0
    enhance_window: int = 10
    uniqueness_radius: int = 10
    calibrate: Optional[bool] = None
    method: ClassVar[str] = "hmm"

    def __post_init__(self) -> None:
        _check_window(self.ds, self.mode)
        _resolve_calibrate(self)
        _check_speeds(self.vmin, self.vmax)
        if self.sigma <= 0:
            raise InputError(f"sigma must be > 0, got {self.sigma}")
        if not 0.0 <= self.teleport < 1.0:
            raise InputError(f"teleport must be in [0, 1), got {self.teleport}")
        if self.jump_std <= 0:
            raise InputError(f"jump_std must be > 0, got {self.jump_std}")
        if self.enhance_window < 1:
            raise InputError(f"the contrast enhancement window must be >= 1, got {self.enhance_window}")

    def as_dict(self) -> Dict[str, Any]:
        return {"ds": int(self.ds), "mode": self.mode, "vmin": float(self.vmin), "vmax": float(self.vmax),
                "jump_std": float(self.jump_std), "teleport": float(self.teleport), "sigma": float(self.sigma),
                "enhance_window": int(self.enhance_window), "uniqueness_radius": int(self.uniqueness_radius)}


@dataclass(frozen=True)
class ClassicParams:
    """Classic offline SeqSLAM, the OpenSeqSLAM port (:mod:`.classic`).

    ds: sequence length (made even); vmin, vmax: whole database frames per ``ds`` query frames
    from ``vmin * ds`` to ``vmax * ds``; enhance_window: contrast enhancement window;
    uniqueness_window: frames around the best match excluded from the second best.
    """

    ds: int = 20
    vmin: float = 0.8
    vmax: float = 1.2
    enhance_window: int = 10
    uniqueness_window: int = 10
    method: ClassVar[str] = "seqslam_classic"

    def __post_init__(self) -> None:
        if self.ds < 1:
            raise InputError(f"ds must be >= 1, got {self.ds}")
        _check_speeds(self.vmin, self.vmax)

    def as_dict(self) -> Dict[str, Any]:
        return {"ds": int(self.ds + self.ds % 2), "vmin": self.vmin, "vmax": self.vmax,
                "enhance_window": self.enhance_window, "uniqueness_window": self.uniqueness_window,
                "mode": "offline"}


MatcherParams = Union[SingleParams, SeqSLAMParams, HMMParams, ClassicParams]
_BY_NAME = {p.method: p for p in (SingleParams, SeqSLAMParams, HMMParams, ClassicParams)}


def params_for(method: str, **options: Any) -> MatcherParams:
    """The parameter dataclass of ``method`` built from keyword options; options that the
    method does not take are ignored (so one set of CLI options can serve every method).

    Raises:
        InputError: unknown method or a bad value.
    """
    cls = _BY_NAME.get(method)
    if cls is None:
        raise InputError(f"unknown sequence matching method {method!r}; choose one of {', '.join(_BY_NAME)}")
    if cls is ClassicParams and options.get("mode", "offline") != "offline":
        raise InputError("seqslam_classic works offline only (use method 'seqslam' for online mode)")
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in options.items() if k in names})
