"""The procedural town's configuration and layout types, below the modules that build it.

:class:`WorldConfig` (what a town is generated from), :class:`Block` (a block between
streets and its zone) and ``SCENES`` (the zones, which are also the scene labels) are used by
both the ground raster (:mod:`panoplace.synth.ground`) and the town builder
(:mod:`panoplace.synth.world`), so they live here rather than in either.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict

from panoplace.errors import InputError

SCENES = ("street", "park", "plaza", "waterfront", "parking")


@dataclass
class WorldConfig:
    """Parameters of a procedural town (all lengths in metres).

    seed: seeds every random choice; same config -> same pixels.
    size_m: side of the square town.
    street_width_m: kerb-to-building-line width of a street corridor (road + 2 pavements).
    lanes_per_direction, lane_width_m: the carriageway.
    block_min_m, block_max_m: range of street spacing (the grid is perturbed).
    route_length_m: approximate length of the route loop (bounded by the town's size).
    camera_height_m: height of the panoramic camera (on a car roof).
    lane_offset_m: camera lane centre, metres right of the street centreline.
    texture_ppm, ground_ppm: texels per metre of facades and of the ground raster.
    origin_lat, origin_lon: where world (0, 0) is on Earth (Yuquan campus, Hangzhou).
    waterfront: put a lake with a promenade along the south edge.
    ego_vehicle: show the roof of the car that carries the camera at the bottom.
    """

    seed: int = 0
    size_m: float = 400.0
    street_width_m: float = 20.0
    lanes_per_direction: int = 2
    lane_width_m: float = 3.2
    block_min_m: float = 55.0
    block_max_m: float = 95.0
    route_length_m: float = 1000.0
    camera_height_m: float = 2.5
    lane_offset_m: float = 1.6
    texture_ppm: float = 8.0
    ground_ppm: float = 6.0
    origin_lat: float = 30.26
    origin_lon: float = 120.12
    waterfront: bool = True
    ego_vehicle: bool = True

    def __post_init__(self) -> None:
        if not (150.0 <= self.size_m <= 1000.0):
            raise InputError(f"size_m must be between 150 and 1000 metres, got {self.size_m}")
        if self.block_min_m < 30 or self.block_max_m < self.block_min_m:
            raise InputError(
                f"need 30 <= block_min_m <= block_max_m, got {self.block_min_m} and {self.block_max_m}"
            )
        road = 2 * self.lanes_per_direction * self.lane_width_m
        if self.street_width_m < road + 4.0:
            raise InputError(
                f"street_width_m={self.street_width_m} leaves no pavement for {self.lanes_per_direction} "
                f"lanes of {self.lane_width_m} m per direction (need >= {road + 4.0})"
            )
        if not (0.5 <= self.camera_height_m <= 20.0):
            raise InputError(f"camera_height_m must be in [0.5, 20], got {self.camera_height_m}")
        if not (2.0 <= self.texture_ppm <= 32.0 and 1.0 <= self.ground_ppm <= 16.0):
            raise InputError("texture_ppm must be in [2, 32] and ground_ppm in [1, 16]")
        if self.route_length_m <= 0:
            raise InputError(f"route_length_m must be positive, got {self.route_length_m}")

    @property
    def road_half_m(self) -> float:
        return self.lanes_per_direction * self.lane_width_m

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "WorldConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"unknown world config key(s) {unknown}; valid keys: {sorted(names)}")
        return cls(**data)


@dataclass
class Block:
    """A block between streets: grid index, rectangle (metres) and zone (one of SCENES)."""

    i: int
    j: int
    x0: float
    y0: float
    x1: float
    y1: float
    zone: str = "street"

    @property
    def w(self) -> float:
        return self.x1 - self.x0

    @property
    def h(self) -> float:
        return self.y1 - self.y0
