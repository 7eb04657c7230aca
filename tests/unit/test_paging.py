"""The cursor-walk bounds as pure logic: ceilings from history, cycles, page counts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.connectors.paging import CursorGuard, PageLedger, page_ceiling, page_ledger
from syncd.errors import PaginationError, PermanentError


@pytest.mark.parametrize(
    ("basis", "max_pages", "ceiling"),
    [
        (None, 10_000, 10_000),  # no complete scan yet: the configured maximum
        (0, 10_000, 10),
        (1, 10_000, 12),
        (37, 10_000, 84),
        (6_000, 10_000, 10_000),  # never above the configured maximum
        (5, 15, 15),
    ],
)
def test_the_ceiling_is_twice_the_last_complete_scan_plus_ten_within_max_pages(
    basis: int | None, max_pages: int, ceiling: int
) -> None:
    """2 x basis + 10, capped by max_pages; max_pages alone without history."""
    assert page_ceiling(basis, max_pages)[0] == ceiling


def walk(guard: CursorGuard, cursors: list[str]) -> int:
    """Feed a walk its pages' next cursors (has_more on all); pages accounted."""
    for cursor in cursors:
        guard.after_page(cursor, True, "/list")
    return guard.pages


def test_any_cursor_seen_before_ends_the_walk() -> None:
    """A -> B -> A is a loop although no cursor repeats at once; so is a return to the
    cursor the walk was resumed from."""
    guard = CursorGuard("instock", "inventory", 100, "max_pages = 100")
    with pytest.raises(PaginationError) as info:
        walk(guard, ["A", "B", "A"])
    assert info.value.code == "cursor_cycle"
    assert isinstance(info.value, PermanentError)
    assert info.value.subject == "instock:inventory"
    resumed = CursorGuard.start("instock", "inventory", 100, "R")
    with pytest.raises(PaginationError):
        walk(resumed, ["S", "R"])


def test_has_more_without_a_cursor_is_bad_pagination() -> None:
    guard = CursorGuard("instock", "orders", 100, "")
    with pytest.raises(PaginationError) as info:
        guard.after_page(None, True, "/orders")
    assert info.value.code == "bad_pagination"


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=1, max_value=60), st.integers(min_value=1, max_value=80))
def test_a_walk_never_reads_more_pages_than_its_ceiling(ceiling: int, length: int) -> None:
    """Ever-new cursors: the walk stops after exactly `ceiling` pages, or ends on its own."""
    guard = CursorGuard("instock", "moves", ceiling, "")
    cursors = [f"c{i}" for i in range(length)]
    if length < ceiling:
        walk(guard, cursors)
        guard.after_page(None, False, "/moves")
        assert guard.pages == length + 1
    else:
        with pytest.raises(PaginationError, match="more than") as info:
            walk(guard, cursors)
        assert info.value.code == "page_ceiling"
        assert guard.pages == ceiling


def test_the_ledger_derives_ceilings_and_records_what_a_walk_did() -> None:
    """A complete walk records its pages; one that hit the ceiling records the ceiling, so
    the next ceiling grows; the history is read through the ledger in the walk's context."""
    stored = {"scan_pages.instock:inventory": "4"}
    ledger = PageLedger(read=stored.get)
    with page_ledger(ledger):
        guard = CursorGuard.start("instock", "inventory", 1000, "")
        assert guard.ceiling == 18
        walk(guard, ["a", "b"])
        guard.after_page(None, False, "/inventory")
        assert ledger.changes()["instock:inventory"].basis == 3
        assert ledger.changes()["instock:inventory"].complete
        guard = CursorGuard.start("instock", "inventory", 1000, "")
        assert guard.ceiling == 16  # this run's record wins over the stored one
        with pytest.raises(PaginationError):
            walk(guard, [f"c{i}" for i in range(20)])
        record = ledger.changes()["instock:inventory"]
        assert (record.basis, record.complete) == (16, False)
    assert CursorGuard.start("instock", "inventory", 1000, "").ceiling == 1000  # no ledger


def test_a_walk_resumed_mid_list_never_lowers_the_basis() -> None:
    """After a crash the scan resumes at its stored cursor and sees only the rest of the list:
    that short walk must not make the next full scan look like a runaway."""
    ledger = PageLedger(read={"scan_pages.instock:inventory": "40"}.get)
    with page_ledger(ledger):
        resumed = CursorGuard.start("instock", "inventory", 1000, "c37")
        walk(resumed, ["c38", "c39"])
        resumed.after_page(None, False, "/inventory")
        assert ledger.changes()["instock:inventory"].basis == 40
        from_top = CursorGuard.start("instock", "inventory", 1000, "")
        walk(from_top, ["a", "b"])
        from_top.after_page(None, False, "/inventory")
        assert ledger.changes()["instock:inventory"].basis == 3  # a whole scan: its own size


def test_a_time_window_keeps_the_largest_window_as_its_basis() -> None:
    """Moves are read one window at a time and a quiet hour has fewer pages than a busy one:
    the basis is the largest window walked, so a busy hour after a quiet one is not a loop."""
    ledger = PageLedger(read={"scan_pages.instock:moves": "30"}.get)
    with page_ledger(ledger):
        quiet = CursorGuard.start("instock", "moves", 1000, "", partial=True)
        quiet.after_page(None, False, "/moves")
        assert ledger.changes()["instock:moves"].basis == 30
        assert CursorGuard.start("instock", "moves", 1000, "", partial=True).ceiling == 70
