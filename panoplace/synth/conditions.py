"""Capture conditions (time of day, weather), their lighting, and traversals of the route.

A :class:`Condition` is ``(time_of_day, weather)`` with ``time_of_day`` in ``day``, ``dusk``,
``night`` and ``weather`` in ``clear``, ``overcast``, ``fog``. :func:`lighting` turns it into
the numbers the renderer uses (sun, ambient and sky colours, fog distance, which windows are
lit). A :class:`Traversal` is one drive along the route under one condition, with its own
lane offset, camera heading offset, frame spacing and seed (dynamic objects, clouds, noise).

Traversal names on the command line: ``TIME[-WEATHER][N]``, e.g. ``day``, ``night``,
``dusk-overcast``, ``night-fog``, ``day2``; the shorthands ``fog`` and ``overcast`` mean
``day-fog`` and ``day-overcast``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from panoplace.errors import InputError

TIMES_OF_DAY = ("day", "dusk", "night")
WEATHERS = ("clear", "overcast", "fog")


@dataclass(frozen=True)
class Condition:
    """Time of day (``day``/``dusk``/``night``) and weather (``clear``/``overcast``/``fog``)."""

    time_of_day: str = "day"
    weather: str = "clear"

    def __post_init__(self) -> None:
        if self.time_of_day not in TIMES_OF_DAY:
            raise InputError(f"unknown time of day {self.time_of_day!r}; choose one of {list(TIMES_OF_DAY)}")
        if self.weather not in WEATHERS:
            raise InputError(f"unknown weather {self.weather!r}; choose one of {list(WEATHERS)}")

    @property
    def tag(self) -> str:
        """Short label written to the CSV ``condition`` column, e.g. ``night`` or ``day-fog``."""
        return self.time_of_day if self.weather == "clear" else f"{self.time_of_day}-{self.weather}"

    def to_dict(self) -> Dict[str, str]:
        return {"time_of_day": self.time_of_day, "weather": self.weather}


_NAME = re.compile(r"^(day|dusk|night|fog|overcast)(?:-(clear|overcast|fog))?(\d*)$")


def parse_condition(name: str) -> Condition:
    """Condition of a traversal name such as ``night``, ``dusk-overcast``, ``fog``, ``day2``."""
    m = _NAME.match(name.strip().lower())
    if not m:
        raise InputError(
            f"bad traversal name {name!r}: use TIME[-WEATHER][N] with TIME in {list(TIMES_OF_DAY)} "
            f"and WEATHER in {list(WEATHERS)} (or the shorthands 'fog', 'overcast'), e.g. 'night-fog', 'day2'"
        )
    head, weather, _ = m.groups()
    if head in ("fog", "overcast"):
        if weather not in (None, "clear"):
            raise InputError(f"bad traversal name {name!r}: weather given twice")
        return Condition("day", head)
    return Condition(head, weather or "clear")


@dataclass(frozen=True)
class Traversal:
    """One drive along the route.

    name: folder name and CSV ``sequence`` value. condition: lighting and weather.
    lateral_offset_m: metres to the right of the world's camera lane (3.2 = the next lane).
    heading_offset_deg: camera yaw added to the direction of travel (panorama rotated).
    spacing_m: metres of route between frames. start_m: arc length of the first frame.
    seed: dynamic objects (vehicles, pedestrians), clouds, sensor noise.
    n_frames: frames to render; None = one lap of the loop.
    day: day number of the drive (timestamps), 0 = 2019-05-01.
    """

    name: str
    condition: Condition = Condition()
    lateral_offset_m: float = 0.0
    heading_offset_deg: float = 0.0
    spacing_m: float = 5.0
    seed: int = 0
    start_m: float = 0.0
    n_frames: Optional[int] = None
    day: int = 0

    def __post_init__(self) -> None:
        if not re.match(r"^[A-Za-z0-9_.-]+$", self.name or ""):
            raise InputError(f"traversal name {self.name!r} must be letters, digits, '_', '.', '-'")
        if not (0.1 <= self.spacing_m <= 1000.0):
            raise InputError(f"spacing_m must be in [0.1, 1000], got {self.spacing_m}")
        if abs(self.lateral_offset_m) > 8.0:
            raise InputError(f"lateral_offset_m must be within +-8 m (the carriageway), got {self.lateral_offset_m}")
        if self.n_frames is not None and self.n_frames < 1:
            raise InputError(f"n_frames must be >= 1, got {self.n_frames}")

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["condition"] = self.condition.to_dict()
        return d

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Traversal":
        d = dict(data)
        d["condition"] = Condition(**d.get("condition", {}))
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise InputError(f"unknown traversal key(s) {unknown}; valid keys: {sorted(names)}")
        return cls(**d)


def default_traversals(
    n_frames: Optional[int],
    conditions: Sequence[str] = ("day", "day2", "dusk", "night", "fog"),
    spacing_m: float = 5.0,
    seed: int = 0,
    lateral_offsets_m: Optional[Sequence[float]] = None,
    heading_offsets_deg: Optional[Sequence[float]] = None,
) -> List[Traversal]:
    """A database drive and query drives under the named conditions.

    The first traversal is the reference (lane centre, frames from arc length 0). Later ones
    are shifted half a frame along the route, drive up to a metre off the reference line or
    in the next lane (3.2, 3.0, 2.8 m for the 2nd, 5th, 8th; unless ``lateral_offsets_m``
    says otherwise), and have their own traffic, clouds, sun position and exposure.
    lateral_offsets_m / heading_offsets_deg: one value per traversal (default 0 heading).
    """
    names = list(conditions)
    if not names:
        raise InputError("need at least one traversal name")
    if len(set(names)) != len(names):
        raise InputError(f"traversal names must be unique, got {names}")
    for what, vals in (("lateral offsets", lateral_offsets_m), ("heading offsets", heading_offsets_deg)):
        if vals is not None and len(vals) != len(names):
            raise InputError(f"got {len(vals)} {what} for {len(names)} traversals")
    jitter = (0.0, 3.2, -0.5, 0.9, 3.0, -0.3, 0.6, 2.8)  # metres; 3.2 = the next lane
    out = []
    for k, name in enumerate(names):
        lat = float(lateral_offsets_m[k]) if lateral_offsets_m is not None else jitter[k % len(jitter)]
        head = float(heading_offsets_deg[k]) if heading_offsets_deg is not None else 0.0
        out.append(
            Traversal(
                name=name,
                condition=parse_condition(name),
                lateral_offset_m=lat,
                heading_offset_deg=head,
                spacing_m=spacing_m,
                seed=int(seed) * 1000 + k + 1,
                start_m=0.0 if k == 0 else spacing_m / 2.0,
                n_frames=n_frames,
                day=k * 3,
            )
        )
    return out


# ---------------------------------------------------------------------------------------------
# lighting
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lighting:
    """What a condition means to the renderer. Colours are RGB in [0, 1].

    sun_az_deg / sun_el_deg: sun direction (compass, elevation); sun: direct light colour
    (zero when there is no direct light); ambient: sky light colour. sky_top / sky_horizon:
    sky gradient; cloud_cover in [0, 1], cloud colour; fog_m: fog e-folding distance
    (inf = none); haze_m: aerial-perspective distance; fog colour. lit_fraction: share of
    windows lit; lamps: street-lamp strength (0 = off); emissive: glow gain of signs and
    lamps; stars: star density; noise: sensor noise std (in 0..255 units); exposure: gain of
    the camera's auto exposure.
    """

    sun_az_deg: float
    sun_el_deg: float
    sun: Tuple[float, float, float]
    ambient: Tuple[float, float, float]
    sky_top: Tuple[float, float, float]
    sky_horizon: Tuple[float, float, float]
    cloud_cover: float
    cloud: Tuple[float, float, float]
    fog_m: float
    haze_m: float
    fog: Tuple[float, float, float]
    lit_fraction: float
    lamps: float
    emissive: float
    stars: float
    noise: float
    exposure: float = 1.0

    @property
    def has_sun(self) -> bool:
        return max(self.sun) > 0.0


_BASE: Dict[str, Dict[str, Any]] = {
    "day": dict(
        sun_az_deg=150.0, sun_el_deg=52.0, sun=(0.66, 0.62, 0.54), ambient=(0.42, 0.47, 0.55),
        sky_top=(0.25, 0.45, 0.8), sky_horizon=(0.7, 0.8, 0.92), cloud_cover=0.4, cloud=(0.97, 0.97, 0.98),
        fog_m=float("inf"), haze_m=5000.0, fog=(0.7, 0.8, 0.92), lit_fraction=0.0, lamps=0.0, emissive=0.0,
        stars=0.0, noise=1.5,
    ),
    "dusk": dict(
        sun_az_deg=262.0, sun_el_deg=5.0, sun=(0.8, 0.45, 0.22), ambient=(0.25, 0.23, 0.32),
        sky_top=(0.16, 0.2, 0.42), sky_horizon=(0.98, 0.58, 0.3), cloud_cover=0.35, cloud=(0.92, 0.5, 0.45),
        fog_m=float("inf"), haze_m=3000.0, fog=(0.85, 0.55, 0.4), lit_fraction=0.2, lamps=0.45, emissive=0.8,
        stars=0.0, noise=2.5,
    ),
    "night": dict(
        sun_az_deg=0.0, sun_el_deg=-30.0, sun=(0.0, 0.0, 0.0), ambient=(0.03, 0.035, 0.06),
        sky_top=(0.005, 0.01, 0.03), sky_horizon=(0.07, 0.065, 0.1), cloud_cover=0.25, cloud=(0.07, 0.065, 0.08),
        fog_m=float("inf"), haze_m=2000.0, fog=(0.07, 0.065, 0.1), lit_fraction=0.45, lamps=1.0, emissive=1.0,
        stars=0.004, noise=4.0,
    ),
}


def _vary(p: Dict[str, Any], cond: Condition, seed: int) -> None:
    """Per-drive variation within a condition: another day, another hour, another camera
    exposure. Changes ``p`` in place (deterministic in ``seed``)."""
    rng = np.random.default_rng([int(seed), 0x11647])
    tod = cond.time_of_day

    def scale(col: Tuple[float, ...], amount: float, warm: float) -> Tuple[float, float, float]:
        g = 1.0 + rng.uniform(-amount, amount)
        return (col[0] * g * (1 + warm), col[1] * g, col[2] * g * (1 - warm))

    warm = float(rng.uniform(-0.05, 0.05))
    if tod == "day":
        p["sun_az_deg"] = float(p["sun_az_deg"] + rng.uniform(-60.0, 60.0))
        p["sun_el_deg"] = float(np.clip(p["sun_el_deg"] + rng.uniform(-20.0, 12.0), 25.0, 70.0))
    elif tod == "dusk":
        p["sun_az_deg"] = float(p["sun_az_deg"] + rng.uniform(-15.0, 15.0))
        p["sun_el_deg"] = float(rng.uniform(2.0, 10.0))
    p["sun"] = scale(p["sun"], 0.12, warm)
    p["ambient"] = scale(p["ambient"], 0.1, warm)
    p["sky_top"] = scale(p["sky_top"], 0.08, warm / 2)
    p["sky_horizon"] = scale(p["sky_horizon"], 0.05, warm / 2)
    if cond.weather == "clear":
        p["cloud_cover"] = float(np.clip(p["cloud_cover"] + rng.uniform(-0.3, 0.3), 0.0, 0.85))
    if cond.weather == "fog":
        p["fog_m"] = float(p["fog_m"] * rng.uniform(0.75, 1.35))
    if tod != "day":
        p["lit_fraction"] = float(np.clip(p["lit_fraction"] + rng.uniform(-0.1, 0.1), 0.05, 0.9))
    p["exposure"] = float(rng.uniform(0.87, 1.13))


def lighting(cond: Condition, seed: Optional[int] = None) -> Lighting:
    """Renderer parameters of a condition.

    seed: None gives the nominal lighting of the condition; a drive's seed varies it the way
    two days (or two hours) of the same condition differ: sun position, colour temperature,
    cloud cover, fog density, share of lit windows and the camera's exposure.
    """
    p = dict(_BASE[cond.time_of_day])
    tod = cond.time_of_day
    if cond.weather in ("overcast", "fog"):
        amb = np.asarray(p["ambient"]) + 0.85 * np.asarray(p["sun"])
        grey = {"day": (0.72, 0.73, 0.75), "dusk": (0.34, 0.32, 0.36), "night": (0.085, 0.08, 0.09)}[tod]
        p.update(
            sun=(0.0, 0.0, 0.0),
            ambient=tuple(float(v) for v in amb * (0.95 if tod == "day" else 1.0)),
            sky_top=tuple(v * 0.88 for v in grey),
            sky_horizon=grey,
            cloud_cover=1.0,
            cloud=grey,
            haze_m=2200.0,
            fog=grey,
            stars=0.0,
            lit_fraction=min(1.0, p["lit_fraction"] + (0.1 if tod != "day" else 0.05)),
        )
        if tod == "day":
            p["lit_fraction"] = 0.0
    if cond.weather == "fog":
        fog = {"day": (0.76, 0.77, 0.79), "dusk": (0.42, 0.39, 0.41), "night": (0.09, 0.09, 0.1)}[tod]
        p.update(fog_m=28.0, fog=fog, sky_top=fog, sky_horizon=fog, cloud=fog)  # visibility ~85 m
    if seed is not None:
        _vary(p, cond, seed)
    return Lighting(**p)
