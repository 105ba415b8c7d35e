"""The localisation service without HTTP: a map, a batched model and retrieval.

:class:`LocalisationService` turns an uploaded image into the map's panorama crops, sends the
crops through the :class:`~panoplace.serve.batcher.MicroBatcher` (one model call for many
concurrent requests), and retrieves the top-k map frames with positions, confidence and
heading. The HTTP layer (:mod:`panoplace.serve.app`) only parses requests and formats answers.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional

import numpy as np
import torch

from panoplace.errors import InputError
from panoplace.mapfolder import MapFolder
from panoplace.matching.retrieval import DEFAULT_PLACE_RADIUS, Retrieval, retrieve
from panoplace.matching.rotation import wrap_degrees
from panoplace.panorama.project import PanoramaProjector
from panoplace.runner import resolve_device
from panoplace.serve.batcher import BatchOptions, MicroBatcher
from panoplace.serve.images import DEFAULT_MAX_PIXELS, decode_upload
from panoplace.serve.metrics import Metrics

log = logging.getLogger(__name__)

MAX_K = 50


@dataclass
class ServiceOptions:
    """How the service answers.

    k: candidates returned by default (a request may ask for 1..``MAX_K``).
    place_radius: metres beyond which a candidate is a different place (for the confidence).
    max_pixels: largest decoded image accepted.
    device: ``auto``, ``cpu`` or ``cuda`` for the model.
    batch: micro-batching options.
    """

    k: int = 5
    place_radius: float = DEFAULT_PLACE_RADIUS
    max_pixels: int = DEFAULT_MAX_PIXELS
    device: str = "auto"
    batch: BatchOptions = field(default_factory=BatchOptions)

    def __post_init__(self) -> None:
        if not 1 <= int(self.k) <= MAX_K:
            raise InputError(f"k must be between 1 and {MAX_K}, got {self.k}")
        if not np.isfinite(self.place_radius) or self.place_radius <= 0:
            raise InputError(f"place radius must be > 0 metres, got {self.place_radius}")


class LocalisationService:
    """Localises images against one map folder.

    Args:
        map_folder: an opened map (:func:`panoplace.mapfolder.load_map`).
        options: :class:`ServiceOptions`.
        sessions_count: reports the number of open sessions to the metrics (set by the app).
    """

    def __init__(self, map_folder: MapFolder, options: Optional[ServiceOptions] = None) -> None:
        self.map = map_folder
        self.options = options or ServiceOptions()
        self.device = resolve_device(self.options.device)
        self.model = map_folder.model.to(self.device).eval()
        self.panorama = map_folder.panorama
        self.projector = PanoramaProjector(self.panorama)
        frames = map_folder.frames
        self.xy = np.asarray(frames.xy, dtype=np.float64)
        self.latlon = frames.latlon
        self.heading = frames.heading
        self.sessions_count = lambda: 0.0
        self.metrics = Metrics(queue_depth=lambda: float(self.batcher.depth()),
                               sessions=lambda: float(self.sessions_count()))
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()
        self.batcher = MicroBatcher(self._describe_batch, self.options.batch, on_batch=self.metrics.observe_batch,
                                    name="panoplace-model", in_flight=lambda: self._in_flight)

    def close(self) -> None:
        self.batcher.close()

    def crops(self, data: bytes) -> np.ndarray:
        """Uploaded image bytes -> the map's crops.

        Shape: -> ``(K, h, w, 3)`` uint8.
        Raises :class:`panoplace.serve.images.UploadError` for a bad upload.
        """
        rgb = decode_upload(data, self.options.max_pixels)
        return np.ascontiguousarray(self.projector.crops(rgb))

    def _describe_batch(self, crops: np.ndarray) -> np.ndarray:
        """Shape: ``(B, K, h, w, 3)`` uint8 -> ``(B, D)`` or ``(B, K, D)`` float32 descriptors."""
        with torch.inference_mode():
            x = self.model.preprocess(torch.from_numpy(crops).to(self.device))
            return self.model(x).float().cpu().numpy()

    @contextmanager
    def in_flight(self) -> Iterator[None]:
        """Count a request as on its way to the model while the block runs (the batcher does
        not wait for more images than are in flight)."""
        with self._in_flight_lock:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._in_flight_lock:
                self._in_flight -= 1

    def describe(self, data: bytes) -> np.ndarray:
        """Descriptor of one uploaded image (blocking; goes through the batcher).

        Shape: -> ``(D,)`` or ``(K, D)``.
        """
        with self.in_flight():
            return self.batcher.submit(self.crops(data)).result()

    def retrieve(self, descriptor: np.ndarray, k: Optional[int] = None) -> Retrieval:
        """Top-k map frames of one descriptor ``(D,)`` / ``(K, D)``."""
        k = self.check_k(k)
        return retrieve(self.map.index, descriptor[None], k, database_xy=self.xy,
                        place_radius=self.options.place_radius)

    def check_k(self, k: Optional[int]) -> int:
        k = self.options.k if k is None else int(k)
        if not 1 <= k <= MAX_K:
            raise InputError(f"k must be between 1 and {MAX_K}, got {k}")
        return min(k, len(self.map))

    def localize(self, data: bytes, k: Optional[int] = None) -> Dict[str, Any]:
        """Localise one uploaded image (blocking): the answer of ``POST /v1/localize``."""
        return self.answer(self.retrieve(self.describe(data), k))

    def frame(self, row: int) -> Dict[str, Any]:
        """Position and heading of map frame ``row``: index, id, x, y, lat, lon, heading_deg."""
        row = int(row)
        out: Dict[str, Any] = {"index": row, "id": self.map.index.ids[row],
                               "x": float(self.xy[row, 0]), "y": float(self.xy[row, 1]),
                               "lat": None, "lon": None, "heading_deg": None}
        if self.latlon is not None:
            out["lat"], out["lon"] = float(self.latlon[row, 0]), float(self.latlon[row, 1])
        if self.heading is not None and np.isfinite(self.heading[row]):
            out["heading_deg"] = float(self.heading[row])
        return out

    def candidates(self, rows: np.ndarray, scores: np.ndarray,
                   relative: Optional[np.ndarray] = None) -> List[Dict[str, Any]]:
        """Candidate dicts for database rows (``-1`` rows are left out).

        ``relative``: ``(k,)`` headings of the query relative to each candidate (degrees), from
        rotation matching; the candidate's camera heading is then the frame's heading plus it.
        """
        out = []
        for rank, (row, score) in enumerate(zip(rows, scores)):
            if int(row) < 0:
                continue
            c = self.frame(int(row))
            c["rank"] = rank + 1
            c["score"] = float(score)
            frame_heading = c.pop("heading_deg")
            c["map_heading_deg"] = frame_heading
            rel = None if relative is None or not np.isfinite(relative[rank]) else float(relative[rank])
            c["relative_heading_deg"] = rel
            c["heading_deg"] = (float(wrap_degrees(frame_heading + rel)) if frame_heading is not None
                                and rel is not None else None)
            out.append(c)
        return out

    def answer(self, result: Retrieval) -> Dict[str, Any]:
        """The JSON answer for a one-query :class:`Retrieval`."""
        relative = result.headings[0] if result.headings is not None else None
        cands = self.candidates(result.db_indices[0], result.scores[0], relative)
        best = cands[0] if cands else None
        return {
            "confidence": float(result.confidence[0]),
            "position": ({k: best[k] for k in ("x", "y", "lat", "lon")} if best else None),
            "heading_deg": best["heading_deg"] if best else None,
            "candidates": cands,
        }
