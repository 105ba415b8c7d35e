"""Service metrics in the Prometheus text exposition format (version 0.0.4).

Counters, gauges and histograms with fixed label names, thread-safe, one :class:`Metrics`
object per service (no global registry, so several services or tests do not share counts).
"""

from __future__ import annotations

import math
import threading
from typing import Callable, Dict, List, Sequence, Tuple

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)

Labels = Tuple[str, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v)) if not float(v).is_integer() else str(int(v))


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(labels)
        self._lock = threading.Lock()

    def _key(self, labels: Sequence[str]) -> Labels:
        if len(labels) != len(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}, got {tuple(labels)}")
        return tuple(str(v) for v in labels)

    def _label_text(self, key: Labels, extra: str = "") -> str:
        parts = [f'{n}="{_escape(v)}"' for n, v in zip(self.label_names, key)]
        if extra:
            parts.append(extra)
        return "{" + ",".join(parts) + "}" if parts else ""

    def render(self) -> List[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}", *self._samples()]

    def _samples(self) -> List[str]:
        raise NotImplementedError


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labels)
        self._values: Dict[Labels, float] = {}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, *labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def _samples(self) -> List[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [f"{self.name}{self._label_text(k)} {_fmt(v)}" for k, v in items]


class Gauge(_Metric):
    """A value read when the metrics are rendered (``fn``)."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str, fn: Callable[[], float]) -> None:
        super().__init__(name, help_text)
        self.fn = fn

    def _samples(self) -> List[str]:
        return [f"{self.name} {_fmt(float(self.fn()))}"]


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name: str, help_text: str, buckets: Sequence[float], labels: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labels)
        self.buckets = tuple(sorted(float(b) for b in buckets)) + (math.inf,)
        self._counts: Dict[Labels, List[int]] = {}
        self._sums: Dict[Labels, float] = {}

    def observe(self, value: float, *labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            counts = self._counts.setdefault(key, [0] * len(self.buckets))
            for i, b in enumerate(self.buckets):
                if value <= b:
                    counts[i] += 1
            self._sums[key] = self._sums.get(key, 0.0) + float(value)

    def count(self, *labels: str) -> int:
        with self._lock:
            c = self._counts.get(self._key(labels))
            return c[-1] if c else 0

    def _samples(self) -> List[str]:
        out = []
        with self._lock:
            items = sorted((k, list(c), self._sums[k]) for k, c in self._counts.items())
        for key, counts, total in items:
            for b, c in zip(self.buckets, counts):
                le = 'le="' + _fmt(b) + '"'
                out.append(f"{self.name}_bucket{self._label_text(key, le)} {c}")
            out.append(f"{self.name}_sum{self._label_text(key)} {_fmt(total)}")
            out.append(f"{self.name}_count{self._label_text(key)} {counts[-1]}")
        return out


class Metrics:
    """The service's metrics; :meth:`render` gives the ``/metrics`` page."""

    def __init__(self, queue_depth: Callable[[], float], sessions: Callable[[], float]) -> None:
        self.requests = Counter("panoplace_http_requests_total", "HTTP requests by route, method and status code.",
                                ("route", "method", "status"))
        self.latency = Histogram("panoplace_http_request_duration_seconds",
                                 "HTTP request latency in seconds by route.", LATENCY_BUCKETS, ("route",))
        self.batch_size = Histogram("panoplace_batch_size", "Images per model call.", BATCH_BUCKETS)
        self.batch_seconds = Histogram("panoplace_batch_duration_seconds", "Seconds per model call.",
                                       LATENCY_BUCKETS)
        self.images = Counter("panoplace_images_total", "Images localised, by kind (single or session frame).",
                              ("kind",))
        self.sessions_opened = Counter("panoplace_sessions_opened_total", "Sessions created.")
        self.sessions_expired = Counter("panoplace_sessions_expired_total", "Sessions closed for being idle.")
        self._all: List[_Metric] = [
            self.requests, self.latency, self.batch_size, self.batch_seconds, self.images,
            self.sessions_opened, self.sessions_expired,
            Gauge("panoplace_queue_depth", "Images waiting for a model call.", queue_depth),
            Gauge("panoplace_sessions_active", "Open sessions.", sessions),
        ]

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def render(self) -> str:
        lines: List[str] = []
        for m in self._all:
            lines.extend(m.render())
        return "\n".join(lines) + "\n"
