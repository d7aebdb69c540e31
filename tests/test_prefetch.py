"""The read-ahead thread: items in order, at most `depth` ahead, the producer's exception
raised in the consumer, and a consumer that stops early stops and joins the producer."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from histetl.prefetch import Prefetch


def test_items_arrive_in_order() -> None:
    with Prefetch(iter(range(1000)), depth=3) as items:
        assert list(items) == list(range(1000))


def test_the_producer_runs_at_most_depth_items_ahead() -> None:
    produced: list[int] = []

    def source() -> Iterator[int]:
        for i in range(100):
            produced.append(i)
            yield i

    with Prefetch(source(), depth=2) as items:
        first = next(items)
        time.sleep(0.3)  # time for the producer to run as far ahead as it may
        # one taken, two queued, one made and waiting for room
        assert first == 0
        assert len(produced) <= 1 + 2 + 1


def test_an_exception_in_the_producer_is_raised_in_the_consumer() -> None:
    def source() -> Iterator[int]:
        yield 1
        raise ValueError("corrupt block at 4096")

    with Prefetch(source()) as items:
        assert next(items) == 1
        with pytest.raises(ValueError, match="corrupt block"):
            next(items)


def test_leaving_early_stops_an_endless_producer() -> None:
    def endless() -> Iterator[int]:
        i = 0
        while True:
            yield i
            i += 1

    before = threading.active_count()
    with Prefetch(endless(), name="histetl-test-prefetch") as items:
        assert next(items) == 0
    assert threading.active_count() == before
    assert not any(t.name == "histetl-test-prefetch" for t in threading.enumerate())
