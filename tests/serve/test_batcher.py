"""Micro-batching: concurrent items share a call, each caller gets its own row."""

from __future__ import annotations

import threading
import time
from typing import List

import numpy as np
import pytest

from panoplace.errors import InputError
from panoplace.serve.batcher import BatchOptions, MicroBatcher, QueueFullError


def test_concurrent_items_share_calls_and_get_their_own_rows() -> None:
    sizes: List[int] = []
    gate = threading.Event()

    def fn(x: np.ndarray) -> np.ndarray:
        gate.wait(5)  # hold the first call so the others pile up
        return x * 10

    b = MicroBatcher(fn, BatchOptions(max_batch=4, max_wait_s=0.05), on_batch=lambda n, s: sizes.append(n))
    try:
        futures = [b.submit(np.array([i, i + 1])) for i in range(9)]
        gate.set()
        for i, f in enumerate(futures):
            np.testing.assert_array_equal(f.result(5), [10 * i, 10 * (i + 1)])
    finally:
        b.close()
    assert sum(sizes) == 9 and max(sizes) == 4 and len(sizes) < 9


def test_one_at_a_time_with_max_batch_1_and_errors_reach_every_caller() -> None:
    sizes: List[int] = []
    b = MicroBatcher(lambda x: x + 1, BatchOptions(max_batch=1, max_wait_s=0.01), on_batch=lambda n, s: sizes.append(n))
    try:
        assert [int(b.submit(np.array(i)).result(5)) for i in range(3)] == [1, 2, 3]
    finally:
        b.close()
    assert sizes == [1, 1, 1]

    def broken(x: np.ndarray) -> np.ndarray:
        raise ValueError("model exploded")

    b = MicroBatcher(broken, BatchOptions(max_batch=8, max_wait_s=0.05))
    try:
        futures = [b.submit(np.zeros(2)) for _ in range(3)]
        for f in futures:
            with pytest.raises(ValueError, match="exploded"):
                f.result(5)
    finally:
        b.close()


def test_full_queue_and_bad_options_are_refused() -> None:
    gate = threading.Event()
    b = MicroBatcher(lambda x: (gate.wait(5), x)[1], BatchOptions(max_batch=1, max_wait_s=0.0, max_queue=2))
    try:
        first = b.submit(np.zeros(1))
        deadline = time.monotonic() + 5
        while b.depth() and time.monotonic() < deadline:  # the worker took the first item
            time.sleep(0.01)
        b.submit(np.zeros(1))
        b.submit(np.zeros(1))
        with pytest.raises(QueueFullError):
            b.submit(np.zeros(1))
        gate.set()
        first.result(5)
    finally:
        gate.set()
        b.close()
    with pytest.raises(InputError):
        BatchOptions(max_batch=0)
    with pytest.raises(InputError):
        BatchOptions(max_wait_s=-1)


def test_a_lone_request_does_not_wait_for_company() -> None:
    b = MicroBatcher(lambda x: x, BatchOptions(max_batch=8, max_wait_s=2.0), in_flight=lambda: 1)
    try:
        t0 = time.monotonic()
        b.submit(np.zeros(1)).result(5)
        assert time.monotonic() - t0 < 1.0  # not the 2 s max wait
    finally:
        b.close()
    # with more requests in flight than in the batch, it waits for them (up to max_wait_s)
    sizes: List[int] = []
    b = MicroBatcher(lambda x: x, BatchOptions(max_batch=8, max_wait_s=2.0), in_flight=lambda: 2,
                     on_batch=lambda n, s: sizes.append(n))
    try:
        first = b.submit(np.zeros(1))
        time.sleep(0.2)
        second = b.submit(np.ones(1))
        first.result(5), second.result(5)
    finally:
        b.close()
    assert sizes == [2]
