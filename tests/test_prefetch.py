"""The background-thread prefetcher extraction uses without worker processes."""

from __future__ import annotations

import itertools
import threading

import pytest

from panoplace.prefetch import Prefetcher


def test_items_come_out_in_order_and_the_thread_ends() -> None:
    pf = Prefetcher(range(100), depth=2)
    assert list(pf) == list(range(100))
    assert not pf._thread.is_alive()
    assert list(pf) == []  # exhausted stays exhausted


def test_a_source_error_is_raised_in_the_consumer_after_the_good_items() -> None:
    def source():
        yield 1
        yield 2
        raise OSError("disk gone")

    pf = Prefetcher(source())
    got = []
    with pytest.raises(OSError, match="disk gone"):
        for item in pf:
            got.append(item)
    assert got == [1, 2] and not pf._thread.is_alive()


def test_close_stops_an_endless_source_early() -> None:
    produced = itertools.count()
    with Prefetcher(iter(lambda: next(produced), None), depth=3) as pf:
        assert [next(pf) for _ in range(5)] == [0, 1, 2, 3, 4]
    assert not pf._thread.is_alive()
    n = next(produced)
    assert n <= 5 + 3 + 2  # at most the queue and one pending item were made beyond what was taken
    with pytest.raises(StopIteration):
        next(pf)


def test_the_producer_runs_ahead_while_the_consumer_works() -> None:
    """The next item is made while the consumer still holds the current one."""
    made = [threading.Event() for _ in range(3)]

    def source():
        for i in range(3):
            made[i].set()
            yield i

    pf = Prefetcher(source(), depth=2)
    assert next(pf) == 0
    # the consumer has not asked for item 1 (or 2), yet both get made in the background
    assert made[1].wait(timeout=10) and made[2].wait(timeout=10)
    assert list(pf) == [1, 2]
