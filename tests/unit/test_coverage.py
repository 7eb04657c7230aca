"""The coverage of a stream's ledger rows: every gap found, with its cause, and no false one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.coverage import (
    DaySummary,
    FailedRun,
    Interval,
    LedgerRow,
    complement,
    stream_coverage,
    summarize_day,
    union,
)

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def window(start: float, end: float, run: str = "r", overlap: float | None = 600.0) -> LedgerRow:
    """A time window pulled at its end plus a minute (a lag)."""
    return LedgerRow(
        run, "window", at(end + 1), at(end + 1.5), at(start), at(end), overlap_s=overlap
    )


def cursor(before: str | None, after: str | None, t: float, run: str = "r") -> LedgerRow:
    return LedgerRow(run, "cursor", at(t), at(t + 0.5), cursor_before=before, cursor_after=after)


def test_overlapping_windows_have_no_gap_and_report_the_overlap() -> None:
    """Windows re-reading 10 minutes before the watermark: covered, no gap, overlap 600 s."""
    rows = [window(0, 60), window(50, 120), window(110, 180)]
    cov = stream_coverage("instock.moves", rows)
    assert cov.gaps == ()
    assert (cov.start, cov.end) == (at(0), at(180))
    assert (cov.overlap_s, cov.min_overlap_s, cov.short_overlaps) == (600.0, 600.0, 0)


def test_touching_windows_are_no_gap_but_a_short_overlap() -> None:
    """A window starting exactly where the last ended leaves nothing out, but it did not
    re-read the configured overlap: counted as a short overlap, not a gap."""
    cov = stream_coverage("s", [window(0, 60), window(60, 120)])
    assert cov.gaps == ()
    assert (cov.min_overlap_s, cov.short_overlaps) == (0.0, 1)


def test_a_reset_checkpoint_is_a_gap() -> None:
    """The watermark jumped forward without a ledger row: a gap, cause checkpoint-reset."""
    cov = stream_coverage("s", [window(0, 60), window(50, 120), window(300, 360)])
    [gap] = cov.gaps
    assert (gap.start, gap.end, gap.cause, gap.runs) == (at(120), at(300), "checkpoint-reset", ())


def test_a_failed_run_after_the_last_window_leaves_the_rest_uncovered() -> None:
    """Runs failed since the last window: from its end to now is a gap naming those runs."""
    rows = [window(0, 60), window(50, 120)]
    failed = [FailedRun("r-bad", "failed", at(125)), FailedRun("r-old", "failed", at(30))]
    cov = stream_coverage("s", rows, failed, now=at(200))
    [gap] = cov.gaps
    assert (gap.start, gap.end, gap.cause, gap.runs) == (at(120), at(200), "failed-run", ("r-bad",))


def test_a_failed_run_that_the_next_run_made_good_is_no_gap() -> None:
    """A failed run between windows that the next run resumed from the watermark: no gap."""
    rows = [window(0, 60), window(50, 120, "r3")]
    cov = stream_coverage("s", rows, [FailedRun("r2", "failed", at(61.5))], now=at(200))
    assert cov.gaps == ()


def test_a_crash_mid_window_is_no_gap() -> None:
    """A run killed mid-window left no ledger row (nor data): the next run pulls the same
    window again, so the crash leaves no gap."""
    rows = [window(0, 60, "r1"), window(50, 120, "r3")]
    cov = stream_coverage("s", rows, [FailedRun("r2", "interrupted", at(100))], now=at(125))
    assert cov.gaps == ()


def test_a_gap_while_runs_failed_names_them() -> None:
    """The watermark moved on while runs failed (e.g. a list of today only): failed-run."""
    rows = [window(0, 60, "r1"), window(200, 260, "r5")]
    failed = [FailedRun("r2", "failed", at(80)), FailedRun("r3", "crashed", at(150))]
    [gap] = stream_coverage("s", rows, failed).gaps
    assert (gap.start, gap.end, gap.cause, gap.runs) == (
        at(60),
        at(200),
        "failed-run",
        ("r2", "r3"),
    )


def test_the_dsorder_midnight_gap() -> None:
    """A today-only list pulled at 23:40 and next at 00:20: 23:40..00:00 was never seen."""
    day = datetime(2026, 12, 1, tzinfo=UTC)
    midnight = day + timedelta(days=1)

    def pull(t: datetime) -> LedgerRow:
        start = datetime(t.year, t.month, t.day, tzinfo=UTC)
        return LedgerRow("r", "window", t, t, start, t)

    pulls = [day + timedelta(hours=23), day + timedelta(hours=23, minutes=40)]
    pulls += [midnight + timedelta(minutes=20), midnight + timedelta(minutes=30)]
    cov = stream_coverage(
        "dsorder.submitted",
        [pull(t) for t in pulls],
        [FailedRun("r-x", "failed", midnight - timedelta(minutes=10))],
        midnight_zone="UTC",
    )
    [gap] = cov.gaps
    assert (gap.start, gap.end) == (pulls[1], midnight)
    assert gap.cause == "midnight"
    assert gap.runs == ("r-x",)


def test_pulls_within_a_day_have_no_midnight_gap() -> None:
    """The same list pulled twice in one day: nothing missed."""
    day = datetime(2026, 12, 1, tzinfo=UTC)
    rows = [
        LedgerRow("r", "window", t, t, day, t)
        for t in (day + timedelta(hours=1), day + timedelta(hours=9))
    ]
    assert stream_coverage("dsorder.submitted", rows, midnight_zone="UTC").gaps == ()


def test_a_cursor_chain_has_no_gap() -> None:
    """A walk from the start, pages chained by cursor, the last page read again next run,
    head pages that moved no checkpoint: all covered."""
    rows = [
        cursor("", "c1", 0),
        cursor("c1", "c2", 1),
        cursor("c2", "c2", 2),
        cursor(None, None, 30),  # a head page
        cursor("c2", "c3", 31),
        cursor("c3", "c3", 32),
    ]
    cov = stream_coverage("instock.orders", rows)
    assert cov.gaps == ()
    assert (cov.start, cov.end) == (at(0), at(32.5))


def test_a_walk_from_the_start_after_a_reset_covers_everything() -> None:
    """`syncd checkpoints reset` on a cursor stream: the next walk starts from the top, so
    it re-reads everything: no gap."""
    rows = [cursor("", "c1", 0), cursor(None, "c1", 60), cursor("c1", "c2", 61)]
    assert stream_coverage("s", rows).gaps == ()


def test_a_cursor_that_moved_without_a_row_is_a_gap() -> None:
    """The checkpoint moved from c2 to c9 with no ledger row: the time since is a gap."""
    rows = [cursor("", "c2", 0), cursor("c9", "c10", 60)]
    [gap] = stream_coverage("s", rows).gaps
    assert (gap.start, gap.end, gap.cause) == (at(0.5), at(60), "checkpoint-reset")


def test_a_compacted_day_keeps_its_gap() -> None:
    """Days compacted into their covered intervals still show the gap inside them, and the
    live rows after them chain on."""
    days = [
        DaySummary(
            "2026-12-01", (Interval(at(0), at(60)), Interval(at(90), at(120))), 5, 600.0, 600.0
        )
    ]
    cov = stream_coverage("s", [window(110, 180)], days=days)
    [gap] = cov.gaps
    assert (gap.start, gap.end) == (at(60), at(90))
    assert cov.windows == 6


def test_since_cuts_the_period() -> None:
    """`--since` after an old gap: that gap is not reported."""
    rows = [window(0, 60), window(100, 160), window(150, 220)]
    assert len(stream_coverage("s", rows).gaps) == 1
    assert stream_coverage("s", rows, since=at(120)).gaps == ()


def test_no_rows_no_period() -> None:
    cov = stream_coverage("s", [])
    assert (cov.start, cov.end, cov.gaps) == (None, None, ())


minutes = st.integers(min_value=0, max_value=300)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(minutes, st.integers(min_value=1, max_value=60)), min_size=1, max_size=12)
)
def test_gaps_are_the_complement_of_the_union(spans: list[tuple[int, int]]) -> None:
    """Random window sequences: the gaps reported are exactly the minutes of the period no
    window covers (checked against a minute grid)."""
    rows = [window(s, s + n) for s, n in spans]
    cov = stream_coverage("s", rows)
    first, last = min(s for s, _ in spans), max(s + n for s, n in spans)
    covered = {m for s, n in spans for m in range(s, s + n)}
    uncovered = {m for m in range(first, last) if m not in covered}
    reported = set()
    for gap in cov.gaps:
        lo = int((gap.start - T0).total_seconds() // 60)
        hi = int((gap.end - T0).total_seconds() // 60)
        assert lo < hi
        reported |= set(range(lo, hi))
    assert reported == uncovered
    assert (cov.start, cov.end) == (at(first), at(last))
    # Gaps are disjoint, in order, and never touch a covered interval's inside.
    for before, after in zip(cov.gaps, cov.gaps[1:], strict=False):
        assert before.end < after.start


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(minutes, st.integers(min_value=0, max_value=60)), max_size=10))
def test_union_and_complement_partition_the_period(spans: list[tuple[int, int]]) -> None:
    """union + complement cover [0, 400] exactly, without overlapping."""
    merged = union(Interval(at(s), at(s + n)) for s, n in spans)
    holes = complement(merged, at(0), at(400))
    pieces = sorted(
        [(i.start, i.end) for i in merged if i.end > i.start] + [(h.start, h.end) for h in holes]
    )
    total = sum((e - s).total_seconds() for s, e in pieces)
    assert total == (at(400) - at(0)).total_seconds()


def test_a_dsorder_pull_covers_its_local_day_up_to_the_pull() -> None:
    """A pull at 15:00 in Berlin covers from Berlin's midnight; the end-of-day pull (within
    its lead of midnight) covers the whole day, so it leaves no midnight gap."""
    from syncd.jobs.dsorder_pull import submitted_window

    zone, lead = "Europe/Berlin", timedelta(seconds=120)
    now = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)
    assert submitted_window(now, zone, lead) == (datetime(2026, 11, 30, 23, 0, tzinfo=UTC), now)
    late = datetime(2026, 12, 1, 22, 59, tzinfo=UTC)
    assert submitted_window(late, zone, lead)[1] == datetime(2026, 12, 1, 23, 0, tzinfo=UTC)


def scan(start: float, end: float, run: str = "r") -> LedgerRow:
    return LedgerRow(run, "scan", at(start), at(end), at(start), at(end))


def test_scans_that_follow_each_other_leave_no_gap() -> None:
    """A scan is a snapshot that replaces the last: the time between two scans is covered
    by the older one, so fifteen minutes between scans is no gap (and no overlap count)."""
    rows = [scan(0, 2), scan(15, 17), scan(30, 33)]
    cov = stream_coverage("instock.inventory", rows, [FailedRun("r-x", "failed", at(20))])
    assert cov.gaps == ()
    assert (cov.start, cov.end, cov.kind) == (at(0), at(33), "scan")
    assert (cov.overlap_s, cov.short_overlaps) == (None, 0)


def test_failed_scans_after_the_last_one_leave_the_mirror_stale() -> None:
    """Runs that failed after the last settled scan: from its end to now is a gap."""
    rows = [scan(0, 2), scan(15, 17)]
    cov = stream_coverage("s", rows, [FailedRun("r-bad", "crashed", at(30))], now=at(45))
    [gap] = cov.gaps
    assert (gap.start, gap.end, gap.cause, gap.runs) == (at(17), at(45), "failed-run", ("r-bad",))


def test_a_compacted_scan_day_chains_to_the_next_scan() -> None:
    """The first scan after a compacted day covers from that day's last scan on."""
    day = summarize_day("2026-12-01", [scan(0, 2), scan(15, 17)], None)
    assert day.last_ended_at == at(17)
    cov = stream_coverage("s", [scan(600, 602)], days=[day])
    assert cov.gaps == ()
    assert (cov.start, cov.end) == (at(0), at(602))


def test_a_stream_without_a_configured_overlap_says_so_in_words() -> None:
    """DSOrder's pulls read the day from its midnight: no overlap is configured, and the
    text says how much consecutive pulls overlap rather than a bare count of seconds."""
    from syncd.coverage import coverage_text

    day = datetime(2026, 12, 1, tzinfo=UTC)
    rows = [
        LedgerRow("r", "window", t, t, day, t)
        for t in (day + timedelta(hours=8), day + timedelta(hours=8, minutes=5))
    ]
    lines = coverage_text(stream_coverage("dsorder.submitted", rows), lambda t: t.isoformat())
    assert lines[1] == (
        "  overlap: none configured (each pull reads its period from the start); "
        "consecutive pulls overlap by at least 8 h"
    )
    configured = coverage_text(
        stream_coverage("instock.moves", [window(0, 60), window(50, 120)]), str
    )
    assert configured[1].startswith("  overlap: configured 600 s, least seen 600 s")
