"""A procedural panoramic world for visual place recognition experiments.

A seeded town (streets, zoned blocks with buildings, parks, a plaza, a parking lot and a lake
shore, trees, street furniture) is rendered by column ray casting into equirectangular
panoramas and, through a panoramic annular lens model, into annular images. A route loop is
driven several times under different conditions (day, dusk, night, overcast, fog), lanes,
camera headings, frame spacings and traffic, and every drive is written as images plus a
panoplace CSV.

Typical use::

    from panoplace.synth import WorldConfig, build_world, default_traversals, render_world

    world = build_world(WorldConfig(seed=0, size_m=400))
    traversals = default_traversals(n_frames=100, conditions=["day", "day2", "night", "fog"])
    csvs = render_world(world, traversals, "out/", projections=("equirect", "annular"))
"""

from panoplace.synth.conditions import (
    TIMES_OF_DAY,
    WEATHERS,
    Condition,
    Traversal,
    default_traversals,
    lighting,
    parse_condition,
)
from panoplace.synth.dynamic import place_dynamic_objects
from panoplace.synth.lens import AnnularLens, equirect_to_annular, load_lens, write_lens_files
from panoplace.synth.render import render_frame
from panoplace.synth.routes import Pose, Route, latlon_to_xy, xy_to_latlon
from panoplace.synth.layout import SCENES, WorldConfig
from panoplace.synth.world import World, build_world
from panoplace.synth.writer import (
    CSV_COLUMNS,
    PROJECTIONS,
    FrameInfo,
    render_traversal,
    render_world,
    traversal_frames,
)

__all__ = [
    "AnnularLens",
    "CSV_COLUMNS",
    "Condition",
    "FrameInfo",
    "PROJECTIONS",
    "Pose",
    "Route",
    "SCENES",
    "TIMES_OF_DAY",
    "Traversal",
    "WEATHERS",
    "World",
    "WorldConfig",
    "build_world",
    "default_traversals",
    "equirect_to_annular",
    "latlon_to_xy",
    "lighting",
    "load_lens",
    "parse_condition",
    "place_dynamic_objects",
    "render_frame",
    "render_traversal",
    "render_world",
    "traversal_frames",
    "write_lens_files",
    "xy_to_latlon",
]
