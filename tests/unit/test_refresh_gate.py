"""When the daemon refreshes the metrics textfile and STATUS=: not once per run."""

from __future__ import annotations

from syncd.daemon import RefreshGate


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_runs_in_quick_succession_refresh_once_then_at_the_next_tick() -> None:
    """The first run refreshes at once; runs within the interval after it only mark a
    refresh due, which the next tick takes once; after the interval a run refreshes again."""
    clock = Clock()
    gate = RefreshGate(5.0, clock)
    assert gate.after_run() is True
    assert gate.take_due() is False  # nothing ended since
    refreshes = 0
    for _ in range(20):  # a run every 0.2 s for 4 s
        clock.now += 0.2
        refreshes += gate.after_run()
    assert refreshes == 0
    assert gate.take_due() is True
    assert gate.take_due() is False  # taken once
    clock.now += 5.0
    assert gate.after_run() is True


def test_the_periodic_refresh_counts_as_the_last_one() -> None:
    """A refresh for another reason (the 15 s one) resets the interval and clears a due one."""
    clock = Clock()
    gate = RefreshGate(5.0, clock)
    gate.after_run()
    clock.now += 1.0
    assert gate.after_run() is False
    gate.refreshed()
    assert gate.take_due() is False
    clock.now += 4.0
    assert gate.after_run() is False
    clock.now += 1.0
    assert gate.after_run() is True
