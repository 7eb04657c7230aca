"""Pure decisions of the Instock jobs, as tables of cases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from syncd.jobs.instock_articles import Action, SyncRow, article_payload, content_hash, plan_article
from syncd.jobs.instock_moves import move_key, next_window
from syncd.jobs.instock_orders import OrderSync, plan_host_order

GOOD = {
    "article_id": "A1",
    "name": "Widget",
    "is_serial_numbered": False,
    "attributes": {},
    "dimensions": {},
}
H = content_hash(GOOD)


@pytest.mark.parametrize(
    ("payload", "sync", "expected"),
    [
        # new article, never sent: upload it
        (GOOD, None, "upload"),
        # Instock accepted exactly this content: nothing to do (zero requests)
        (GOOD, SyncRow(H, H, "accepted"), "skip"),
        # queued earlier and not answered yet: do not queue twice
        (GOOD, SyncRow(H, None, "queued"), "skip"),
        # refused with this content: wait until it changes or an operator retries
        (GOOD, SyncRow(H, None, "refused"), "skip"),
        # accepted before, content changed since: update
        (GOOD, SyncRow("old", "old", "accepted"), "update"),
        # refused before, content changed since: try again as a create
        (GOOD, SyncRow("old", None, "refused"), "upload"),
        # serial-numbered articles cannot be uploaded: a reject, not a retry loop
        ({**GOOD, "is_serial_numbered": True}, None, "refuse"),
        # an id Instock's pattern refuses
        ({**GOOD, "article_id": "A 1"}, None, "refuse"),
    ],
)
def test_plan_article(payload: dict, sync: SyncRow | None, expected: str) -> None:
    """Each catalog case leads to exactly one action."""
    assert plan_article(payload, content_hash(payload), sync).kind == expected


def test_refusal_says_why() -> None:
    """A refused article carries a reason an operator understands."""
    action = plan_article({**GOOD, "is_serial_numbered": True}, "h", None)
    assert action == Action(
        "refuse", "serial-numbered articles cannot be uploaded or updated in Instock"
    )


def test_article_payload_from_host_row() -> None:
    """Host catalog columns map onto Instock's article, dimensions only when given."""
    row = {
        "article_id": "A1",
        "name": "W",
        "is_serial_numbered": 0,
        "attributes": '{"upc": "1"}',
        "dim_x": "1.5",
        "dim_y": "2",
        "dim_z": "3",
        "dim_uom": "in",
    }
    assert article_payload(row) == {
        "article_id": "A1",
        "name": "W",
        "is_serial_numbered": False,
        "attributes": {"upc": "1"},
        "dimensions": {"x": "1.5", "y": "2", "z": "3", "uom": "in"},
    }
    bare = {**row, "dim_x": None, "dim_y": None, "dim_z": None, "dim_uom": None}
    assert article_payload(bare)["dimensions"] == {}  # PUT needs every field
    metric = {**row, "dim_x": "250", "dim_y": "1200", "dim_z": "5", "dim_uom": "mm"}
    assert article_payload(metric)["dimensions"] == {
        "x": "0.25",
        "y": "1.2",
        "z": "0.005",
        "uom": "m",
    }


@pytest.mark.parametrize(
    ("host_status", "sync", "instock", "expected"),
    [
        ("open", None, None, "create"),
        ("open", OrderSync("h", "create", "accepted"), "registered", "skip"),
        ("open", OrderSync("old", "create", "accepted"), "registered", "update"),
        ("open", OrderSync("old", "create", "accepted"), None, "update"),
        ("open", OrderSync("old", "create", "accepted"), "reserved", "refuse"),
        ("cancelled", None, None, "skip"),
        ("cancelled", OrderSync("h", "create", "accepted"), "registered", "cancel"),
        ("cancelled", OrderSync("h", "create", "accepted"), "done", "refuse"),
        ("cancelled", OrderSync("h", "create", "accepted"), "canceled", "done"),
        ("cancelled", OrderSync("h", "cancel", "queued"), "registered", "skip"),
        ("open", OrderSync("old", "cancel", "accepted"), "canceled", "skip"),
    ],
)
def test_plan_host_order(
    host_status: str, sync: OrderSync | None, instock: str | None, expected: str
) -> None:
    """Create once, update/cancel only while registered, otherwise explain."""
    assert plan_host_order(host_status, "h", sync, instock, "ORD-1").kind == expected


def test_order_id_outside_instock_pattern_is_refused() -> None:
    """An order id Instock cannot store is refused before sending."""
    assert plan_host_order("open", "h", None, None, "ORD 1/2").kind == "refuse"


T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_next_window_is_closed_and_overlapping() -> None:
    """Windows end `lag` before now and start `overlap` before the watermark."""
    window = next_window(T0 - timedelta(hours=1), T0, lag=60, overlap=600, max_window=86400)
    assert window is not None
    assert window.start == T0 - timedelta(hours=1, minutes=10)
    assert window.end == T0 - timedelta(minutes=1)


def test_next_window_caps_length_and_stops_when_caught_up() -> None:
    """Backfills advance in steps of max_window; a caught-up watermark pulls nothing."""
    window = next_window(T0 - timedelta(days=3), T0, lag=60, overlap=0, max_window=86400)
    assert window is not None
    assert window.end == T0 - timedelta(days=2)
    assert window.capped  # more closed time waits: the run goes on with the next window
    last = next_window(T0 - timedelta(hours=1), T0, lag=60, overlap=0, max_window=86400)
    assert last is not None
    assert not last.capped  # caught up: one window per run, no re-reading in a loop
    assert next_window(T0 - timedelta(seconds=30), T0, lag=60, overlap=0, max_window=86400) is None


def test_move_key_is_content_identity() -> None:
    """Identical moves share a key; any differing field gives a different key."""
    move = {
        "article_id": "A",
        "qty": 2,
        "move_timestamp": "2026-11-23T10:00:00Z",
        "order_id": None,
        "from_cell_id": "c1",
        "to_cell_id": "c2",
    }
    assert move_key(move) == move_key(dict(move))
    assert move_key(move) != move_key({**move, "qty": 3})


def test_retried_refusals_are_planned_again() -> None:
    """After `rejects retry` (hash forgotten), a refused create is created again, a refused
    update is updated again while registered, a refused cancel is cancelled again."""
    assert plan_host_order("open", "h", OrderSync(None, "create", "refused"), None, "O").kind == (
        "create"
    )
    assert (
        plan_host_order("open", "h", OrderSync(None, "update", "refused"), "registered", "O").kind
        == "update"
    )
    assert (
        plan_host_order(
            "cancelled", "h", OrderSync(None, "update", "refused"), "registered", "O"
        ).kind
        == "cancel"
    )
