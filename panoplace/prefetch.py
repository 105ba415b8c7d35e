"""Run an iterator one or two items ahead in a background thread.

Decoding and resampling images (OpenCV) and running the network (PyTorch) both release the
GIL, so a thread that prepares the next batch while the main thread runs the model overlaps
the two without the start-up and copying costs of worker processes. On a 2-core machine this
is how the decoding hides in the time the network's threads leave idle
(``benchmarks/bench_pipeline.py``).
"""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")

_DONE = object()


class Prefetcher(Iterator[T]):
    """Iterate ``source`` in a daemon thread, keeping up to ``depth`` items ready.

    Items come out in order. An exception raised by ``source`` is raised again by ``next`` in
    the consumer. :meth:`close` (or leaving a ``with`` block) stops the thread early, e.g. when
    the consumer gives up on an error.
    """

    def __init__(self, source: Iterable[T], depth: int = 2) -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self._queue: "queue.Queue[object]" = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._finished = False
        self._thread = threading.Thread(target=self._run, args=(iter(source),), name="panoplace-prefetch",
                                        daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, it: Iterator[T]) -> None:
        try:
            for item in it:
                if not self._put(item):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(_Failure(exc))
            return
        self._put(_DONE)

    def __iter__(self) -> "Prefetcher[T]":
        return self

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        item = self._queue.get()
        if item is _DONE:
            self._finished = True
            self._thread.join()
            raise StopIteration
        if isinstance(item, _Failure):
            self._finished = True
            self._thread.join()
            raise item.exc
        return item  # type: ignore[return-value]

    def close(self) -> None:
        """Stop the thread (items not yet taken are dropped)."""
        self._finished = True
        self._stop.set()
        while True:  # unblock a producer waiting on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join()

    def __enter__(self) -> "Prefetcher[T]":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
