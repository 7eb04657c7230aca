"""The backfill's decisions, without I/O: the periods allowed, the steps from its own
cursor, and what is missing or changed; and how `syncd coverage` counts its rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from syncd.clock import iso
from syncd.coverage import LedgerRow, stream_coverage
from syncd.errors import UsageError
from syncd.jobs.backfill.plan import (
    check_request,
    diff_orders,
    diff_submitted,
    missing_moves,
    move_detail,
    next_moves_step,
    submitted_since,
)

T0 = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)


def row(key: str, ts: str, n: int = 1) -> tuple[object, ...]:
    """A staged move row: move_key, the nine fields, extra, request id."""
    return (key, f"A{n}", 1, ts, "u", None, "C1", "C2", "stock", "stock", None, "req-1")


# --- the period -----------------------------------------------------------------------------


def test_a_period_must_be_known_ordered_and_past() -> None:
    check_request("instock.moves", T0 - H, T0, T0, "UTC")
    check_request("instock.orders", T0 - 30 * 24 * H, T0 - H, T0, "UTC")
    for stream, start, end, reason in [
        ("instock.inventory", T0 - H, T0, "no backfill for it"),
        ("instock.moves", T0, T0, "is not after"),
        ("instock.moves", T0 - H, T0 + timedelta(seconds=1), "in the future"),
    ]:
        with pytest.raises(UsageError, match=reason):
            check_request(stream, start, end, T0, "UTC")


def test_dsorder_periods_must_lie_within_the_sites_current_day() -> None:
    """DSOrder lists only today's orders, in the site's zone: 09:00 UTC is 10:00 in
    Amsterdam, whose day began at 23:00 UTC the day before."""
    zone = "Europe/Amsterdam"
    midnight = datetime(2026, 12, 4, 23, 0, tzinfo=UTC)
    check_request("dsorder.pull", midnight, T0, T0, zone)
    with pytest.raises(UsageError, match=r"before the site's current day.*Europe/Amsterdam"):
        check_request("dsorder.pull", midnight - timedelta(seconds=1), T0, T0, zone)
    # The same period asked after the site's midnight: that day can no longer be listed.
    with pytest.raises(UsageError, match="lists only the orders submitted today"):
        check_request("dsorder.pull", midnight, T0, midnight + timedelta(days=1, minutes=1), zone)


# --- steps ----------------------------------------------------------------------------------


def test_moves_steps_go_from_the_backfills_own_cursor_to_the_periods_end() -> None:
    start, end = T0 - 5 * H, T0
    first = next_moves_step(None, start, end, 2 * 3600)
    assert first is not None
    assert (first.start, first.end, first.last) == (
        start,
        start + 2 * H,
        False,
    )
    resumed = next_moves_step(iso(first.end), start, end, 2 * 3600)
    assert resumed is not None
    assert resumed.start == first.end
    last = next_moves_step(iso(T0 - H), start, end, 2 * 3600)
    assert last is not None
    assert (last.end, last.last) == (end, True)
    assert next_moves_step(iso(end), start, end, 2 * 3600) is None


# --- moves ----------------------------------------------------------------------------------


def test_missing_moves_number_identical_moves_as_the_live_job_does() -> None:
    """Two identical moves are occurrences 1 and 2; the journal holding occurrence 1 (the
    live job saw one) leaves only the second missing. Missing moves come oldest first."""
    twin = row("k-twin", "2026-12-05T08:00:00Z")
    older = row("k-old", "2026-12-05T07:00:00Z")
    listed = [twin, twin, older]
    missing = missing_moves(listed, {("k-twin", 1)})
    assert [(m[0], m[1]) for m in missing] == [("k-old", 1), ("k-twin", 2)]
    assert missing_moves(listed, {("k-twin", 1), ("k-twin", 2), ("k-old", 1)}) == []
    assert move_detail(missing[1])["occurrence"] == 2
    assert move_detail(missing[1])["move_timestamp"] == "2026-12-05T08:00:00Z"


# --- orders ---------------------------------------------------------------------------------


def listed_order(order_id: str, placed: str | None, **fields: object) -> dict[str, object]:
    return {
        "order_id": order_id,
        "kind": "customer",
        "placed_at": placed,
        "attributes": json.dumps(fields.get("attributes", {})),
        "lines": json.dumps(fields.get("lines", [])),
    }


def test_orders_in_the_period_are_missing_changed_or_the_same() -> None:
    inside = "2026-12-05T08:30:00Z"
    listed = [
        listed_order("NEW", inside),
        listed_order("ASN", inside, attributes={"asn": "A1"}),
        listed_order("SAME", inside, attributes={"b": 1, "a": 2}),
        listed_order("OLD", "2026-12-04T08:30:00Z"),  # before the period
        listed_order("UNDATED", None),  # cannot be placed in a period
    ]
    held = {
        "ASN": listed_order("ASN", inside),
        # The same JSON in another spelling is no difference.
        "SAME": {**listed_order("SAME", inside), "attributes": '{"a":2,"b":1}'},
    }
    diff = diff_orders(listed, held, T0 - 2 * H, T0)
    assert diff.in_period == 3
    assert diff.missing == ("NEW",)
    assert diff.changed == {"ASN": {"attributes": [{}, {"asn": "A1"}]}}


def test_dsorder_orders_submitted_in_the_period() -> None:
    listed = [
        ("1", T0 - H, "h1"),
        ("2", T0 - H, "h2-new"),
        ("3", T0 - H, "h3"),
        ("4", T0 - 3 * H, "h4"),  # submitted before the period
        ("5", T0 - H, "h5"),
    ]
    stored = {"2": "h2", "3": "h3", "5": None, "4": None}  # 5: stored before hashes
    diff = diff_submitted(listed, stored, T0 - 2 * H, T0)
    assert diff.in_period == ("1", "2", "3", "5")
    assert diff.missing == ("1",)
    assert diff.changed == {"2": ["h2", "h2-new"]}


def test_a_dsorder_period_from_the_sites_midnight_takes_the_whole_day_listed() -> None:
    """From the site's midnight, `order_date` does not filter: an order dated midnight
    UTC (the date-only reading) of a site in New York (midnight at 05:00 UTC) is taken;
    from any other moment, `order_date` is read as the submission instant."""
    zone = "America/New_York"
    midnight = datetime(2026, 12, 5, 5, 0, tzinfo=UTC)
    assert submitted_since(midnight, zone) is None
    assert submitted_since(midnight + H, zone) == midnight + H
    date_only = [("7", datetime(2026, 12, 5, 0, 0, tzinfo=UTC), "h7")]
    assert diff_submitted(date_only, {}, submitted_since(midnight, zone), T0).missing == ("7",)
    assert diff_submitted(date_only, {}, midnight + H, T0).missing == ()


# --- coverage -------------------------------------------------------------------------------


def test_coverage_counts_backfill_rows_and_keeps_them_out_of_the_live_chain() -> None:
    """A cursor stream: a backfill's window row between two live pages covers its period,
    is counted as a backfill, and neither breaks the cursor chain (no false gap) nor
    changes the stream's kind; in a window stream it is no live window's overlap."""
    live = [
        LedgerRow("r1", "cursor", T0, T0 + H, cursor_before="", cursor_after="c1"),
        LedgerRow("b1", "window", T0 + H, T0 + H, T0 - 48 * H, T0 - 47 * H, backfill=True),
        LedgerRow("r2", "cursor", T0 + 2 * H, T0 + 2 * H, cursor_before="c1", cursor_after="c2"),
    ]
    cov = stream_coverage("instock.orders", live)
    assert (cov.kind, cov.gaps, cov.backfills, cov.windows) == ("cursor", (), 1, 3)

    windows = [
        LedgerRow("r1", "window", T0, T0, T0 - 2 * H, T0, overlap_s=600),
        LedgerRow("b1", "window", T0, T0, T0 - 30 * H, T0 - 20 * H, backfill=True),
        LedgerRow("r2", "window", T0, T0, T0 - timedelta(seconds=600), T0 + H, overlap_s=600),
    ]
    cov = stream_coverage("instock.moves", windows)
    assert cov.short_overlaps == 0
    assert cov.min_overlap_s == 600
    assert [(g.start, g.end) for g in cov.gaps] == [(T0 - 20 * H, T0 - 2 * H)]
