"""Read-ahead keeps order, propagates errors, bounds memory and stops with its consumer."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from syncd.readahead import read_ahead


def test_items_arrive_in_order() -> None:
    """Every item of the source arrives once, in order."""
    assert list(read_ahead(range(100))) == list(range(100))


def test_error_is_raised_in_the_consumer_after_earlier_items() -> None:
    """A failing source raises in the consumer after the items produced before it."""

    def source() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("page 3 failed")

    stream = read_ahead(source())
    assert [next(stream), next(stream)] == [1, 2]
    with pytest.raises(ValueError, match="page 3 failed"):
        next(stream)


def test_producer_stays_at_most_depth_ahead() -> None:
    """The producer never runs more than `depth` items ahead of the consumer."""
    produced = []

    def source() -> Iterator[int]:
        for n in range(10):
            produced.append(n)
            yield n

    stream = read_ahead(source(), depth=1)
    assert next(stream) == 0
    time.sleep(0.2)
    assert len(produced) <= 3  # one consumed, one queued, one waiting to be queued
    stream.close()


def test_closing_the_consumer_stops_the_producer() -> None:
    """Breaking out of the loop stops the helper thread instead of leaking it."""
    before = threading.active_count()

    def endless() -> Iterator[int]:
        n = 0
        while True:
            n += 1
            yield n

    for item in read_ahead(endless()):
        if item == 5:
            break
    time.sleep(0.3)
    assert threading.active_count() == before
