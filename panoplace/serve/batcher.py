"""Micro-batching: requests that arrive together share one model call.

Callers :meth:`MicroBatcher.submit` one item (e.g. the crops of one image) and get a
``concurrent.futures.Future``; one worker thread takes the first waiting item, then gathers
more until it holds ``max_batch`` items or ``max_wait_s`` has passed since the first, stacks
them and calls the batch function once. Under light load a request waits at most
``max_wait_s``; under heavy load the batches fill up and the model runs on bigger batches,
so throughput grows with load. ``max_batch=1`` is one model call per request.

With an ``in_flight`` count (requests that will submit an item soon: being decoded, or queued)
the worker does not wait for company that is not coming: when the batch already holds every
request in flight it runs at once, so a lone client pays no ``max_wait_s``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import numpy as np

from panoplace.errors import InputError, PanoplaceError

log = logging.getLogger(__name__)


class QueueFullError(PanoplaceError):
    """More requests are waiting than the queue holds (HTTP 503: try again later)."""


@dataclass
class BatchOptions:
    """max_batch: items per model call; max_wait_s: how long the first item of a batch waits
    for company; max_queue: waiting items beyond which new ones are refused."""

    max_batch: int = 16
    max_wait_s: float = 0.005
    max_queue: int = 256

    def __post_init__(self) -> None:
        if int(self.max_batch) < 1:
            raise InputError(f"max batch size must be >= 1, got {self.max_batch}")
        if not 0.0 <= float(self.max_wait_s) <= 10.0:
            raise InputError(f"max wait must be between 0 and 10 s, got {self.max_wait_s}")
        if int(self.max_queue) < 1:
            raise InputError(f"max queue must be >= 1, got {self.max_queue}")


BatchFn = Callable[[np.ndarray], np.ndarray]
Observer = Callable[[int, float], None]


class MicroBatcher:
    """Runs ``fn`` on stacked items from many callers in one worker thread.

    Args:
        fn: ``(B, *item_shape) -> (B, ...)``; row i of the result goes to the i-th item.
        on_batch: called with (batch size, seconds) after each call (for metrics).
        in_flight: how many requests are on their way to :meth:`submit` or waiting (see above).

    Shape:
        items of one batch must share a shape (all images of a map give the same crops).
    """

    def __init__(self, fn: BatchFn, options: Optional[BatchOptions] = None,
                 on_batch: Optional[Observer] = None, name: str = "batcher",
                 in_flight: Optional[Callable[[], int]] = None) -> None:
        self.fn = fn
        self.in_flight = in_flight
        self.options = options or BatchOptions()
        self.on_batch = on_batch
        self._queue: "queue.Queue[Optional[Tuple[np.ndarray, Future]]]" = queue.Queue()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def depth(self) -> int:
        """Items waiting for a batch."""
        return self._queue.qsize()

    def submit(self, item: np.ndarray) -> "Future[np.ndarray]":
        """Queue one item; the future gets its row of the batch result (or the batch's error)."""
        if self._closed.is_set():
            raise QueueFullError("the service is shutting down")
        if self._queue.qsize() >= self.options.max_queue:
            raise QueueFullError(f"{self.options.max_queue} images are already waiting; try again shortly")
        fut: "Future[np.ndarray]" = Future()
        self._queue.put((item, fut))
        return fut

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker after the items already queued."""
        if not self._closed.is_set():
            self._closed.set()
            self._queue.put(None)
            self._thread.join(timeout)

    def _gather(self, first: Tuple[np.ndarray, Future]) -> Tuple[List[Tuple[np.ndarray, Future]], bool]:
        batch = [first]
        deadline = time.monotonic() + self.options.max_wait_s
        stop = False
        while len(batch) < self.options.max_batch:
            try:  # take what is already waiting without sleeping, then wait up to the deadline
                nxt = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.in_flight is not None and self.in_flight() <= len(batch)):
                    break
                try:
                    nxt = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if nxt is None:
                stop = True
                break
            batch.append(nxt)
        return batch, stop

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = self._gather(first)
            live = [(x, f) for x, f in batch if f.set_running_or_notify_cancel()]
            if live:
                self._call(live)
            if stop:
                return

    def _call(self, batch: List[Tuple[np.ndarray, Future]]) -> None:
        t0 = time.perf_counter()
        try:
            out = self.fn(np.stack([x for x, _ in batch]))
            if len(out) != len(batch):
                raise RuntimeError(f"batch function returned {len(out)} rows for {len(batch)} items")
        except BaseException as exc:  # every waiting caller must hear about it
            log.exception("batch of %d failed", len(batch))
            for _, fut in batch:
                fut.set_exception(exc)
            return
        for i, (_, fut) in enumerate(batch):
            fut.set_result(out[i])
        if self.on_batch is not None:
            self.on_batch(len(batch), time.perf_counter() - t0)
