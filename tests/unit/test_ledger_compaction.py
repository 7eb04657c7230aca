"""state.housekeeping compacts the window ledger into daily summaries: `syncd coverage`
reports the same gaps, with the same causes, before and after, even once the runs that
explained them are purged (real SQLite state file)."""

from __future__ import annotations

from pathlib import Path

import pytest
from freezegun import freeze_time

from syncd.clock import parse_iso
from syncd.state import Store
from syncd.state.windows import RecordWindow, compact_ledger, coverage_report, window_counts
from tests.unit.test_check_config import check_config, write_config

DAY1, DAY2, DAY3 = "2026-12-01", "2026-12-02", "2026-12-03"


def moves(run: str, start: str, end: str) -> RecordWindow:
    stored = end[:-1] + "1Z"  # just after the window's end
    return RecordWindow(
        "instock.moves", "instock.moves", run, "window", stored, stored, start, end,
        lag_s=60, overlap_s=600, pages=2, listed=5, stored=4, rejected=1, content_hash=run,
    )  # fmt: skip


def orders(run: str, before: str | None, after: str | None, at: str) -> RecordWindow:
    return RecordWindow(
        "instock.orders", "instock.orders", run, "cursor", at, at,
        cursor_before=before, cursor_after=after, listed=10, stored=10,
    )  # fmt: skip


def gaps(store: Store) -> dict[str, list[tuple[str, str, str, tuple[str, ...]]]]:
    now = parse_iso(f"{DAY3}T23:00:00Z")
    return {
        c.stream: [(g.start.isoformat(), g.end.isoformat(), g.cause, g.runs) for g in c.gaps]
        for c in coverage_report(store, now=now)
    }


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """Three days of moves windows with a gap on day 1 while run m-f failed, and of orders
    pages chained by cursor (a walk from the start on day 2)."""
    st = Store.open(tmp_path / "syncd.db")
    rows = [
        moves("m1", f"{DAY1}T08:00:00.000Z", f"{DAY1}T09:00:00.000Z"),
        moves("m3", f"{DAY1}T12:00:00.000Z", f"{DAY1}T23:00:00.000Z"),
        moves("m4", f"{DAY1}T22:50:00.000Z", f"{DAY2}T10:00:00.000Z"),
        moves("m5", f"{DAY2}T09:50:00.000Z", f"{DAY3}T10:00:00.000Z"),
        moves("m6", f"{DAY3}T09:50:00.000Z", f"{DAY3}T11:00:00.000Z"),
        orders("o1", "", "c1", f"{DAY1}T08:00:00.000Z"),
        orders("o2", "c1", "c2", f"{DAY1}T09:00:00.000Z"),
        orders("o3", None, None, f"{DAY2}T09:00:00.000Z"),
        orders("o4", "c2", "c2", f"{DAY2}T10:00:00.000Z"),
        orders("o5", "c2", "c3", f"{DAY3}T10:00:00.000Z"),
    ]
    with st.transaction():
        for row in rows:
            row.apply(st)
        with freeze_time(f"{DAY1}T10:00:00Z"):
            st.start_run("instock.moves", "m-f", "schedule")
            st.finish_run("m-f", "failed", {}, error="timeout")
    return st


def test_compaction_keeps_the_gaps_and_their_causes(store: Store) -> None:
    """Days 1 and 2 (by when each row was stored) folded into a summary per stream and day:
    the live rows are day 3's only,
    the totals add up, and the gap of day 1 keeps its failed run after the runs are purged."""
    before = gaps(store)
    assert before == {
        "instock.moves": [
            ("2026-12-01T09:00:00+00:00", "2026-12-01T12:00:00+00:00", "failed-run", ("m-f",))
        ],
        "instock.orders": [],
    }
    assert compact_ledger(store, DAY3) == 7
    assert [r["run_id"] for r in window_counts(store, "instock.moves")] == ["m5", "m6"]
    days = store.query("SELECT * FROM pull_window_days WHERE stream = 'instock.moves' ORDER BY day")
    assert [
        (d["day"], d["windows"], d["pages"], d["listed"], d["stored"], d["rejected"]) for d in days
    ] == [
        (DAY1, 2, 4, 10, 8, 2),
        (DAY2, 1, 2, 5, 4, 1),
    ]
    assert gaps(store) == before
    store.db.execute("DELETE FROM runs")  # retention_days later
    assert gaps(store) == before
    assert compact_ledger(store, "2026-12-04") == 3  # and once everything is compacted
    assert gaps(store) == before


def test_compaction_chains_cursor_pages_across_days(store: Store) -> None:
    """The orders page of day 3 continues day 2's cursor kept in its summary: no false gap."""
    compact_ledger(store, DAY3)
    [day2] = store.query(
        "SELECT cursor_after FROM pull_window_days WHERE stream = 'instock.orders' AND day = ?",
        [DAY2],
    )
    assert day2["cursor_after"] == "c2"
    assert gaps(store)["instock.orders"] == []


def test_a_reset_cursor_gap_survives_compaction(store: Store) -> None:
    """A page read from a cursor no ledger row left (the checkpoint moved by hand) is a gap
    before and after compaction."""
    orders("o6", "c9", "c10", f"{DAY3}T12:00:00.000Z").apply(store)
    before = gaps(store)["instock.orders"]
    assert [g[2] for g in before] == ["checkpoint-reset"]
    compact_ledger(store, "2026-12-04")
    assert gaps(store)["instock.orders"] == before


def test_ledger_days_beyond_retention_is_refused_by_name(tmp_path: Path) -> None:
    """The failed runs that explain a gap must still be on record when it is compacted."""
    config = write_config(
        tmp_path, '[jobs."state.housekeeping".options]\nretention_days = 5\nledger_days = 6\n'
    )
    result = check_config(config)
    assert result.exit_code == 78, result.output
    assert "ledger_days" in result.stderr
    assert "must not exceed retention_days" in result.stderr


def test_compacted_scans_stay_without_a_gap_and_leave_the_live_scans_listed(
    tmp_path: Path,
) -> None:
    """Inventory scans on three days, the first two compacted: still no gap (the first live
    scan chains to the last compacted one), only the live scans listed, the rows counted."""
    with Store.open(tmp_path / "syncd.db") as st:
        with st.transaction():
            n = 0
            for day in (DAY1, DAY2, DAY3):
                for hour in ("06", "12", "18"):
                    n += 1
                    start, end = f"{day}T{hour}:00:00.000Z", f"{day}T{hour}:05:00.000Z"
                    RecordWindow(
                        "instock.inventory", "instock.inventory", f"i{n}", "scan", start, end,
                        start, end, pages=2, listed=9, stored=9, content_hash=f"h{n}", scan=n,
                    ).apply(st)  # fmt: skip
        assert compact_ledger(st, DAY3) == 6
        [cov] = coverage_report(st, "instock.inventory", now=parse_iso(f"{DAY3}T20:00:00Z"))
    assert cov.gaps == ()
    assert cov.windows == 9
    assert [s.scan for s in cov.scans] == [7, 8, 9]
    assert (cov.start, cov.end) == (
        parse_iso(f"{DAY1}T06:00:00.000Z"), parse_iso(f"{DAY3}T18:05:00.000Z"),
    )  # fmt: skip
