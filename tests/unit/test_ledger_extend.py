"""The window ledger on an idle site: a pull that found what the stream's previous row
found, contiguous with it, extends that row instead of adding one, and `syncd coverage`
reports exactly what the rows it would have added report (real SQLite state file)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from freezegun import freeze_time

from syncd.clock import parse_iso
from syncd.coverage import Coverage, FailedRun, LedgerRow, stream_coverage
from syncd.state import Store
from syncd.state.windows import (
    RecordWindow,
    compact_ledger,
    coverage_report,
    failed_runs,
    window_counts,
)

DAY = "2026-12-01"
EMPTY = "e3b0c44298fc1c149afbf4c8996fb924"


def t(hhmm: str) -> str:
    return f"{DAY}T{hhmm}:00.000Z"


def moves(run: str, start: str, end: str, content: str = EMPTY, listed: int = 0) -> RecordWindow:
    """A moves window [start - 10 min overlap, end] stored a second after its end."""
    return RecordWindow(
        "instock.moves", "instock.moves", run, "window", t(end), t(end), t(start), t(end),
        lag_s=60, overlap_s=600, listed=listed, stored=listed, content_hash=content,
        request_ids=(f"req-{run}",),
    )  # fmt: skip


def page(run: str, before: str | None, after: str | None, at: str, content: str) -> RecordWindow:
    return RecordWindow(
        "instock.orders", "instock.orders", run, "cursor", t(at), t(at),
        cursor_before=before, cursor_after=after, listed=3, stored=3, content_hash=content,
        request_ids=(f"req-{run}",),
    )  # fmt: skip


def scan(run: str, number: int, start: str, end: str, content: str) -> RecordWindow:
    return RecordWindow(
        "instock.inventory", "instock.inventory", run, "scan", t(start), t(end), t(start), t(end),
        pages=2, listed=7, stored=7, content_hash=content, scan=number,
        request_ids=(f"req-{run}-1", f"req-{run}-2"),
    )  # fmt: skip


def day_pull(run: str, at: str, content: str) -> RecordWindow:
    """dsorder.pull: the site's day so far, read whole each time."""
    return RecordWindow(
        "dsorder.submitted", "dsorder.pull", run, "window", t(at), t(at), t("00:00"), t(at),
        listed=4, stored=4, content_hash=content, request_ids=(f"req-{run}",),
    )  # fmt: skip


def as_row(w: RecordWindow) -> LedgerRow:
    def dt(text: str | None):  # type: ignore[no-untyped-def]
        return None if text is None else parse_iso(text)

    return LedgerRow(
        w.run_id, w.kind, parse_iso(w.started_at), parse_iso(w.ended_at),
        dt(w.window_from), dt(w.window_to), w.cursor_before, w.cursor_after, w.overlap_s,
        w.backfill_id is not None,
    )  # fmt: skip


# Each stream: idle pulls, a change, idle again, a gap (a window that does not reach the
# one before, a moved cursor, a checkpoint reset), idle again.
PULLS: list[RecordWindow] = [
    moves("m1", "08:00", "08:10", "h1", listed=2),
    moves("m2", "08:00", "08:20"),
    moves("m3", "08:10", "08:30"),
    moves("m4", "08:20", "08:40"),
    moves("m5", "08:30", "08:50", "h2", listed=1),
    moves("m6", "08:40", "09:00", "h2", listed=1),  # the same move read again: same content
    moves("m7", "08:50", "09:10"),
    moves("m8", "09:30", "09:40"),  # after a failed run that left 09:10..09:30 unread
    moves("m9", "09:30", "09:50"),
    moves("m10", "09:45", "10:00"),  # overlaps by 5 min of the configured 10: its own row
    moves("m11", "09:50", "10:10"),
    page("o1", "", "", "08:00", "p1"),  # a one-page list read from the start
    page("o2", None, None, "08:01", "p1"),  # looks at the head cover nothing
    page("o3", "", "", "08:02", "p1"),
    page("o4", None, None, "08:03", "p1"),
    page("o5", "", "c1", "08:04", "p2"),  # the list grew a page
    page("o6", "c1", "c1", "08:05", "p3"),
    page("o7", "c1", "c1", "08:06", "p3"),
    page("o8", "c5", "c5", "08:07", "p3"),  # the checkpoint moved without a ledger row
    page("o9", "c5", "c5", "08:08", "p3"),
    scan("s1", 1, "08:00", "08:01", "i1"),
    scan("s2", 2, "08:05", "08:06", "i1"),
    scan("s3", 3, "08:10", "08:11", "i2"),
    scan("s4", 4, "08:15", "08:16", "i2"),
    day_pull("d1", "08:00", "o1"),
    day_pull("d2", "08:05", "o1"),
    day_pull("d3", "08:10", "o2"),
    day_pull("d4", "08:15", "o2"),
]
FAILED = [FailedRun("m-f", "failed", parse_iso(t("09:15")))]
STREAMS = {"instock.moves", "instock.orders", "instock.inventory", "dsorder.submitted"}


def summary(c: Coverage) -> tuple[object, ...]:
    """All the coverage says but the least overlap seen (an extended row stands for windows
    that overlapped by at least the configured overlap, so no short one is hidden)."""
    return (c.kind, c.start, c.end, c.windows, c.gaps, c.covered, c.overlap_s, c.short_overlaps)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    st = Store.open(tmp_path / "syncd.db")
    with st.transaction():
        for pull in PULLS:
            pull.apply(st)
        with freeze_time(t("09:15")):
            st.start_run("instock.moves", "m-f", "schedule")
            st.finish_run("m-f", "failed", {}, error="timeout")
    return st


def test_idle_pulls_extend_a_row_and_the_coverage_is_that_of_one_row_per_pull(
    store: Store,
) -> None:
    """28 pulls leave 15 rows; every stream's period, covered intervals, gaps (with their
    causes and runs), pull count and overlap verdict are those of the 28 rows unextended."""
    now = parse_iso(t("12:00"))
    assert failed_runs(store, "instock.moves") == FAILED
    rows = {s: window_counts(store, s) for s in STREAMS}
    assert sum(len(r) for r in rows.values()) == 15
    assert [r["pulls"] for r in rows["instock.moves"]] == [1, 3, 2, 1, 2, 2]
    assert [r["pulls"] for r in rows["instock.orders"]] == [2, 2, 1, 2, 2]
    assert [(r["scan"], r["pulls"]) for r in rows["instock.inventory"]] == [(2, 2), (4, 2)]
    assert [r["pulls"] for r in rows["dsorder.submitted"]] == [2, 2]
    for report in coverage_report(store, now=now):
        pulls = [p for p in PULLS if p.stream == report.stream]
        fails = FAILED if report.stream == "instock.moves" else []
        expected = stream_coverage(report.stream, [as_row(p) for p in pulls], fails, now=now)
        assert summary(report) == summary(expected), report.stream
    moves_cov = next(c for c in coverage_report(store, now=now) if c.stream == "instock.moves")
    assert [(g.cause, g.runs) for g in moves_cov.gaps] == [("failed-run", ("m-f",))]
    assert moves_cov.short_overlaps == 1
    orders_cov = next(c for c in coverage_report(store, now=now) if c.stream == "instock.orders")
    assert [g.cause for g in orders_cov.gaps] == ["checkpoint-reset"]


def test_an_extended_row_keeps_its_first_and_newest_request_ids_and_counts_the_rest(
    store: Store,
) -> None:
    """Counts add up over the pulls; past 20 request ids the row keeps the first 19 and
    the newest (a record names the request that first or last listed it)."""
    with store.transaction():
        for n in range(30):
            minute = 20 + n
            moves(f"x{n}", f"10:{n:02d}", f"10:{minute:02d}").apply(store)
    last = window_counts(store, "instock.moves")[-1]
    assert last["pulls"] == 32  # m10, m11 and the 30 after them
    ids = json.loads(last["request_ids"])
    assert ids[:3] == ["req-m10", "req-m11", "req-x0"]
    assert ids[-1] == "req-x29"
    assert len(ids) == 20
    assert last["request_ids_more"] == 12
    assert last["pages"] == len(ids) + last["request_ids_more"]
    assert last["window_from"] == t("09:45")
    assert last["window_to"] == t("10:49")


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (moves("a", "08:00", "08:10"), moves("b", "08:05", "08:20", "h9", listed=1)),
        (moves("a", "08:00", "08:10"), moves("b", "08:11", "08:20")),  # not contiguous
        (moves("a", "08:00", "08:10"), replace(moves("b", "08:05", "08:20"), rejected=1)),
        (moves("a", "08:00", "08:10"), replace(moves("b", "08:00", "08:20"), overlap_s=60)),
        (moves("a", "08:00", "08:10"), replace(moves("b", "08:05", "08:20"), backfill_id=1)),
        (moves("a", "08:00", "08:10"), replace(moves("b", "08:05", "08:20"), content_hash=None)),
        (page("a", "c1", "c1", "08:00", "p"), page("b", "c1", "c2", "08:01", "p")),  # moved
        (page("a", "c1", "c2", "08:00", "p"), page("b", "c1", "c1", "08:01", "p")),
        (page("a", None, None, "08:00", "p"), page("b", "", "", "08:01", "p")),
    ],
)
def test_a_pull_that_found_something_new_or_left_a_gap_gets_its_own_row(
    tmp_path: Path, before: RecordWindow, after: RecordWindow
) -> None:
    with Store.open(tmp_path / "syncd.db") as st, st.transaction():
        before.apply(st)
        after.apply(st)
        assert st.scalar("SELECT count(*) FROM pull_windows") == 2


def test_compaction_of_extended_rows_keeps_their_pull_count_and_coverage(store: Store) -> None:
    now = parse_iso(t("12:00"))
    before = {c.stream: summary(c) for c in coverage_report(store, now=now)}
    assert compact_ledger(store, "2026-12-02") == 15
    after = {c.stream: summary(c) for c in coverage_report(store, now=now)}
    assert {s: (a[3], a[4]) for s, a in after.items()} == {
        s: (b[3], b[4]) for s, b in before.items()
    }
    assert after["instock.moves"][3] == 11
