"""Vehicles and pedestrians that change from one traversal to the next.

:func:`place_dynamic_objects` draws, from a traversal seed, moving vehicles in the lanes
(with the world's right-hand traffic), cars parked at the kerb and in free parking bays,
and pedestrians on pavements, plazas, park paths and the promenade. Nothing is placed on the
camera's own path.
"""

from __future__ import annotations

import logging
from typing import List, Optional

import numpy as np
from scipy.spatial import cKDTree

from panoplace.synth.conditions import Condition
from panoplace.synth.world import PrimitiveBuilder, Primitives, World

log = logging.getLogger(__name__)

VEHICLES_PER_100M = 1.6  # moving, per lane
PARKED_PER_100M = 5.0  # at the kerb of the outer lanes
PEOPLE_PER_100M = 3.0  # per pavement segment
BAY_OCCUPANCY = 0.5


def place_dynamic_objects(
    world: World,
    seed: int,
    avoid_xy: Optional[np.ndarray] = None,
    condition: Optional[Condition] = None,
    density: float = 1.0,
) -> Primitives:
    """Vehicles and pedestrians of one traversal.

    seed: the traversal seed (same seed -> same objects). avoid_xy: (P, 2) points of the
    camera path (objects keep clear of it). condition: fewer people at night, less traffic at
    dusk/night. density: multiplies every count.
    Returns :class:`Primitives` (boxes for vehicles, cylinders for people).
    """
    rng = np.random.default_rng([int(seed), 0xD7A1])
    tod = condition.time_of_day if condition is not None else "day"
    traffic = density * {"day": 1.0, "dusk": 0.8, "night": 0.45}[tod]
    crowd = density * {"day": 1.0, "dusk": 0.7, "night": 0.25}[tod]
    tree = cKDTree(avoid_xy) if avoid_xy is not None and len(avoid_xy) else None

    def clear(pts: np.ndarray, r: float) -> bool:
        if tree is None:
            return True
        d, _ = tree.query(pts, k=1)
        return bool(np.all(d > r))

    b = PrimitiveBuilder()
    cfg = world.config
    models = world.vehicles
    placed: List[np.ndarray] = []  # vehicle footprints (x0, y0, x1, y1) to avoid overlaps
    weights = {"car": 1.0, "taxi": 0.5, "van": 0.35, "bus": 0.12}
    outer = cfg.lanes_per_direction - 1
    passes = [(row, False) for row in world.lane_segments] + [(row, True) for row in world.lane_segments if int(row[5]) == outer]
    for (x0, y0, x1, y1, sgn, _), parked in passes:
        along_x = abs(y1 - y0) < 1e-6  # E-W lane runs along x
        length = abs(x1 - x0) if along_x else abs(y1 - y0)
        rate = PARKED_PER_100M * density if parked else VEHICLES_PER_100M * traffic
        n = rng.poisson(length / 100.0 * rate)
        forward = sgn > 0
        cands = [m for m in models if m.along_x == along_x and m.forward == forward and not (parked and m.kind == "bus")]
        if not cands:
            continue
        p = np.array([weights.get(m.kind, 0.3) for m in cands])
        p /= p.sum()
        # parked cars hug the kerb: the right-hand side of their direction of travel
        kerb = 0.45 * cfg.lane_width_m / 3.2 if parked else 0.0
        for _ in range(n):
            m = cands[int(rng.choice(len(cands), p=p))]
            t = float(rng.uniform(0, length))
            if along_x:
                cx, cy = min(x0, x1) + t, y0 - sgn * kerb
                fp = (cx - m.length / 2, cy - m.width / 2, cx + m.length / 2, cy + m.width / 2)
                axis_pts = np.array([[cx - m.length / 2, cy], [cx, cy], [cx + m.length / 2, cy]])
            else:
                cx, cy = x0 + sgn * kerb, min(y0, y1) + t
                fp = (cx - m.width / 2, cy - m.length / 2, cx + m.width / 2, cy + m.length / 2)
                axis_pts = np.array([[cx, cy - m.length / 2], [cx, cy], [cx, cy + m.length / 2]])
            if not (-10 < cx < cfg.size_m + 10 and -10 < cy < cfg.size_m + 10):
                continue
            if parked:  # not in junctions or on their zebra crossings
                along, crossing = (cx, world.streets_x) if along_x else (cy, world.streets_y)
                if crossing.size and np.min(np.abs(crossing - along)) < cfg.street_width_m / 2 + 6.0 + m.length / 2:
                    continue
            if not clear(axis_pts, 2.2):
                continue
            if any(fp[0] < q[2] + 1.0 and q[0] < fp[2] + 1.0 and fp[1] < q[3] + 1.0 and q[1] < fp[3] + 1.0 for q in placed):
                continue
            placed.append(np.array(fp))
            b.box(*fp, 0.0, m.height, m.tex)
    # parked cars in free bays
    bay_models = [m for m in models if not m.along_x and m.kind in ("car", "taxi")]
    for (x0, y0, x1, y1) in world.parking_bays:
        if rng.random() >= BAY_OCCUPANCY * min(1.0, density) or not bay_models:
            continue
        m = bay_models[int(rng.integers(len(bay_models)))]
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        b.box(cx - m.width / 2, cy - m.length / 2, cx + m.width / 2, cy + m.length / 2, 0.0, m.height, m.tex)
    # pedestrians
    for (x0, y0, x1, y1) in world.sidewalk_segments:
        length = float(np.hypot(x1 - x0, y1 - y0))
        n = rng.poisson(length / 100.0 * PEOPLE_PER_100M * crowd)
        if n == 0 or length < 1:
            continue
        ux, uy = (x1 - x0) / length, (y1 - y0) / length
        for _ in range(n):
            t = float(rng.uniform(0, length))
            off = float(rng.uniform(-1.0, 1.0))
            px, py = x0 + ux * t - uy * off, y0 + uy * t + ux * off
            if not clear(np.array([[px, py]]), 1.5):
                continue
            tex, h, r = world.people[int(rng.integers(len(world.people)))]
            b.cylinder(px, py, r, 0.0, h, tex)
    prims = b.build()
    log.debug("dynamic objects seed=%d: %s", seed, prims.counts())
    return prims
