"""Online localisation: frames in one at a time, a position estimate out per frame.

:class:`OnlineLocaliser` is the stateful form of sparse sequence matching
(:mod:`panoplace.matching.sparse`) in online mode: each :meth:`~OnlineLocaliser.update` asks
the index for the frame's top ``k`` database frames, keeps the last ``ds`` frames, and scores
the candidates those frames make plausible with the windowed HMM (default) or SeqSLAM, along
the chains and links of the map's :class:`~panoplace.matching.graph.MapGraph`. Cost per frame
does not grow with the map beyond the index search: one row of differences over a few thousand
database frames (earlier rows' values are cached) and a ``ds``-step pass over them, in compiled
kernels (:mod:`panoplace.matching.sparse_kernels`; per-frame figures on a million-frame map in
``benchmarks/bench_city_localisation.py``).

Relocalisation: the window restarts from a uniform belief at its first frame, so ``ds``
frames after a jump (a kidnapped robot, a gap in the drive) no frame from before the jump
weighs on the estimate. When the estimate moves to a place the previous one cannot reach in
one step, :attr:`Estimate.relocalised` is set and the confidence is computed as for a window
that starts at the jump: short windows (the first frames after :meth:`~OnlineLocaliser.reset`
or a relocalisation) never outrank full ones (see
:func:`~panoplace.matching.sequence.cap_short_windows`).

>>> import numpy as np
>>> from panoplace.index import build_index
>>> from panoplace.store import DescriptorSet
>>> rng = np.random.default_rng(0)
>>> db = rng.normal(size=(200, 16)).astype(np.float32)
>>> db /= np.linalg.norm(db, axis=1, keepdims=True)
>>> loc = OnlineLocaliser(build_index(DescriptorSet(db, [str(i) for i in range(200)], {}, "")))
>>> [loc.update(db[j]).frame for j in range(50, 56)]
[50, 51, 52, 53, 54, 55]
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Deque, Optional, Union

import numpy as np

from panoplace.errors import InputError
from panoplace.index import PlaceIndex
from panoplace.matching.graph import MapGraph
from panoplace.matching.rotation import heading_step, match_rotation
from panoplace.matching.sequence import HMMParams, SeqSLAMParams
from panoplace.matching.sparse import IndexVectors, SparseWindow, calibrate, follow
from panoplace.topk import top_k

log = logging.getLogger(__name__)

__all__ = ["Estimate", "OnlineLocaliser", "OnlineParams"]


@dataclass(frozen=True)
class OnlineParams:
    """Parameters of the online localiser.

    matcher: :class:`HMMParams` or :class:`SeqSLAMParams` in ``online`` mode (``ds`` is the
        window; see :mod:`panoplace.matching.sequence` for the others).
    k: candidates the index returns per frame.

    Defaults (HMM, ``ds`` 20, ``k`` 5) were chosen on the first half of the Nordland thumbnails
    (``ds`` 20 beats 10 by 11 points of Recall@1; ``k`` 5, 10 and 20 are within 0.5 points, so the
    cheapest) and confirmed on the second half, the corridor and a synthetic city
    (``benchmarks/bench_sparse_sequence.py``, ``benchmarks/bench_city_localisation.py``).
    n_out: candidates reported per estimate (:attr:`Estimate.candidates`).
    switch: probability per step that the HMM follows a link of the map graph.
    """

    matcher: Union[HMMParams, SeqSLAMParams] = field(default_factory=lambda: HMMParams(ds=20, mode="online"))
    k: int = 5
    n_out: int = 5
    switch: float = 0.1

    def __post_init__(self) -> None:
        if not isinstance(self.matcher, (HMMParams, SeqSLAMParams)):
            raise InputError(f"the online matcher must be HMMParams or SeqSLAMParams, got {type(self.matcher).__name__}")
        if self.matcher.mode != "online":
            raise InputError("the online localiser needs matcher parameters with mode='online'")
        if self.k < 1 or self.n_out < 1:
            raise InputError(f"k and n_out must be >= 1, got {self.k} and {self.n_out}")
        if not 0.0 <= self.switch < 1.0:
            raise InputError(f"switch must be in [0, 1), got {self.switch}")


@dataclass
class Estimate:
    """Where the camera is now.

    Attributes:
        frame: best database index.
        confidence: in [0, 1]; calibrated so that estimates from short windows (just after a
            reset or a relocalisation) rank below estimates from full windows.
        heading_deg: heading relative to the database frame (per-crop descriptors and an index
            that keeps crop descriptors), else None.
        candidates: int64 ``(n,)`` database indices, best first (``n <= n_out``).
        scores: float32 ``(n,)`` their scores, higher = better (HMM: posterior probability;
            SeqSLAM: minus the trajectory cost).
        relocalised: the estimate jumped to a place the previous one cannot reach in one step.
    """

    frame: int
    confidence: float
    heading_deg: Optional[float]
    candidates: np.ndarray
    scores: np.ndarray
    relocalised: bool


class OnlineLocaliser:
    """Stateful sequence localisation against a :class:`PlaceIndex` (see the module docstring).

    Args:
        index: the map's index (flat or IVF-PQ).
        graph: which database frames follow which (default: one traversal in index order).
        params: :class:`OnlineParams`.
    """

    def __init__(self, index: PlaceIndex, graph: Optional[MapGraph] = None,
                 params: OnlineParams = OnlineParams()) -> None:
        self.index = index
        self.graph = MapGraph.chain(len(index)) if graph is None else graph
        if self.graph.n != len(index):
            raise InputError(f"the map graph has {self.graph.n} frames but the index {len(index)}")
        self.params = params
        self.vectors = IndexVectors(index)
        self.window = SparseWindow(self.vectors, self.graph, params.matcher, params.switch, int(params.k))
        self.rows: Deque[int] = deque(maxlen=int(params.matcher.ds))  # serials of the frames in the window
        self._serial = 0
        self._jumps_max = 2 + int(np.ceil(params.matcher.vmax))
        self.reset()

    def reset(self) -> None:
        """Forget every frame seen (a new drive)."""
        self.rows.clear()
        self.window.clear()
        self._last: Optional[int] = None
        self._track: Optional[np.ndarray] = None
        self._since = 0  # frames since the reset or the last relocalisation

    def _reachable(self, prev: int, now: int) -> bool:
        g = self.graph
        w = self._jumps_max + int(self.params.matcher.uniqueness_radius)
        if g.chain_of[prev] == g.chain_of[now] and abs(now - prev) <= w:
            return True
        _, linked = g.links(np.array([prev]))
        return bool(len(linked)) and bool(((g.chain_of[linked] == g.chain_of[now]) & (np.abs(linked - now) <= w)).any())

    def update(self, descriptor: np.ndarray) -> Estimate:
        """Take the next frame's descriptor and return the estimate for it.

        Shape:
            descriptor: ``(D,)`` fused or ``(K, D)`` per-crop float32.

        Raises:
            InputError: wrong shape or dimension, NaN/inf values.
        """
        d = np.asarray(descriptor, dtype=np.float32)
        if d.ndim not in (1, 2):
            raise InputError(f"a frame descriptor must have shape (D,) or (K, D), got {d.shape}")
        vec = self.vectors.prepare(d)
        sims, ids = self.index.search(d if d.ndim == 1 else d[None], int(self.params.k))
        ok = ids[0] >= 0
        serial = self._serial
        self._serial += 1
        self.window.add(serial, vec, self.graph.rank[ids[0][ok]])
        self.rows.append(serial)
        s = self.window.score(serial, self._track)
        self._since += 1
        if s is None:  # the index returned nothing (IVF-PQ probed only empty cells)
            self._track = None
            return Estimate(-1, 0.0, None, np.zeros(0, np.int64), np.zeros(0, np.float32), False)
        ranked = top_k(s.costs[None], max(int(self.params.n_out), 3))[0]
        self._track = follow(s, self.params.matcher, self.graph, ranked=ranked)
        rank = int(s.ranks[s.best])
        relocalised = self._last is not None and not self._reachable(self._last, rank)
        if relocalised:
            self._since = 1
        self._last = rank
        n_window = min(self._since, len(self.rows))
        if isinstance(self.params.matcher, HMMParams):
            conf = float(calibrate(np.array([s.confidence]), np.array([n_window]), self.params.matcher,
                                   self.graph.n)[0])
        else:  # uniqueness ratio r >= 1 → 1 - 1/r in [0, 1); full windows in [0.5, 1), short in [0, 0.5)
            g = 1.0 - 1.0 / max(s.confidence, 1.0)
            conf = 0.5 + 0.5 * g if n_window >= self.params.matcher.ds else 0.5 * g
        order = ranked[:int(self.params.n_out)]
        frames = self.graph.order[s.ranks[order]]
        scores = (np.exp(-s.costs[order]) if isinstance(self.params.matcher, HMMParams) else -s.costs[order])
        frame = int(self.graph.order[rank])
        return Estimate(frame, float(np.clip(conf, 0.0, 1.0)), self._heading(d, frame), frames.astype(np.int64),
                        scores.astype(np.float32), bool(relocalised))

    def _heading(self, d: np.ndarray, frame: int) -> Optional[float]:
        crops = self.index.crop_descriptors
        if d.ndim != 2 or crops is None or crops.shape[1:] != d.shape:
            return None
        step = heading_step(d.shape[0], self.index.config.get("panorama"))
        rot = match_rotation(d[None], crops[frame][None, None], step)
        return float(rot.headings[0, 0])
