"""`dsorder_orders` and `dsorder_lines` have one owner, syncd/state/mirror/dsorder.py: the
plans of the order loop, applied to a real state file, read back through it."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

from syncd.clock import iso
from syncd.connectors.dsorder import DsOrder
from syncd.jobs.dsorder.progress_plan import plan_progress
from syncd.jobs.dsorder.pull_plan import PullRules, catalog_entries, plan_new_order, plan_release
from syncd.jobs.shared.dsorder_plan import CatalogEntry, check_line
from syncd.state import Store
from syncd.state.mirror import dsorder as orders
from syncd.state.mirror.instock import OrderOutcome
from syncd.state.plan import apply_plan
from tests.unit.test_state_owners import PACKAGE, sql_strings

OWNER = "state/mirror/dsorder.py"
WRITE = re.compile(r"\b(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+(dsorder_orders|dsorder_lines)\b")
NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def test_only_the_owner_writes_the_dsorder_tables() -> None:
    """Every INSERT, UPDATE or DELETE on dsorder_orders / dsorder_lines in syncd/ is in the
    owner module (the jobs, the destination and the CLI go through its changes)."""
    writers = sorted(
        {
            str(path.relative_to(PACKAGE))
            for path in PACKAGE.rglob("*.py")
            for _, text in sql_strings(path)
            if WRITE.search(text)
        }
    )
    assert writers == [OWNER]
    assert (PACKAGE / OWNER).is_file()


def order(order_id: str = "41") -> DsOrder:
    return DsOrder.model_validate(
        {
            "order_id": order_id,
            "supplier_id": "SU-1",
            "store_id": "ST-1",
            "order_date": 1_772_400_000_000,
            "delivery_date": 1_772_486_400_000,
            "details": [
                {"line_number": 1, "article_id": "A", "quantity": 4},
                {"line_number": 2, "article_id": "Z", "quantity": 2.5},
            ],
        }
    )


def test_a_planned_order_is_stored_followed_and_closed_through_the_owner(db: Store) -> None:
    """New order (policy partial) -> rows as planned; a terminal poll -> totals recorded and
    `closing`; the close done -> `closed`. What the owner reads back is what was planned."""
    pulled = order()
    catalog = {"A": CatalogEntry("INS-A")}
    checks = {
        ln.line_number: check_line(ln.article_id, ln.quantity, catalog) for ln in pulled.details
    }
    taken = plan_new_order(pulled, checks, PullRules(policy="partial"), NOW)
    applied = apply_plan(db, taken.plan, run_id="r1")
    assert (applied.intents, applied.rejects) == (1, 1)
    stored = orders.get_order(db, "41")
    assert stored is not None
    assert (stored.state, stored.instock_order_id, stored.order_date) == (
        "created",
        "DS-41",
        "2026-03-01T21:20:00.000Z",
    )
    lines = orders.order_lines(db, "41")
    assert [(ln.status, ln.instock_line_id, ln.instock_qty) for ln in lines] == [
        ("ok", "DS-41-1", 4),
        ("rejected", None, None),
    ]
    assert lines[1].quantity == "2.5"
    assert orders.known_order_ids(db) == {"41"}
    assert db.scalar("SELECT status FROM instock_order_sync WHERE order_id = 'DS-41'") == "queued"

    followed = orders.FollowedOrder("41", "DS-41", stored.order_date, "accepted")
    closing = plan_progress(followed, lines, "done", {"DS-41-1": 3}, NOW)
    apply_plan(db, closing.plan)
    after = orders.order_lines(db, "41")
    assert [(ln.reported_qty, ln.reported_finished) for ln in after] == [("3", True), ("0", True)]
    assert orders.get_order(db, "41").state == "closing"  # type: ignore[union-attr]
    assert orders.orders_to_follow(db, 10) == []

    with db.transaction():
        orders.MarkClosed("41", iso(NOW)).apply(db)
    row = db.query("SELECT state, closed_at FROM dsorder_orders WHERE order_id = '41'")[0]
    assert row == {"state": "closed", "closed_at": "2026-03-02T09:30:00.000Z"}


def test_a_cancelled_release_is_stored_as_planned(db: Store) -> None:
    """A held order released with --cancel: lines reported 0 finished, `closing`, and how it
    was released."""
    pulled = order("42")
    checks = {ln.line_number: check_line(ln.article_id, ln.quantity, {}) for ln in pulled.details}
    apply_plan(db, plan_new_order(pulled, checks, PullRules(), NOW).plan)
    held = orders.held_orders(db)
    assert [(h.order_id, h.pulled_at) for h in held] == [("42", iso(NOW))]
    assert (held[0].hold_reason or "").startswith("held: line 1: article A is not in the host")
    released = plan_release(
        "42",
        orders.get_order(db, "42"),
        orders.order_lines(db, "42"),
        {},
        "cancel",
        PullRules(),
        NOW,
    )
    assert apply_plan(db, released.plan).intents == 2
    assert [(ln.reported_qty, ln.reported_finished) for ln in orders.order_lines(db, "42")] == [
        ("0", True),
        ("0", True),
    ]
    row = db.query("SELECT state, released_by FROM dsorder_orders WHERE order_id = '42'")[0]
    assert row == {"state": "closing", "released_by": "cancel"}
    assert Decimal(orders.order_lines(db, "42")[1].quantity) == Decimal("2.5")


def test_the_host_catalog_is_read_by_dsorder_article_id_with_its_unit_factor(db: Store) -> None:
    """By the article's own id, or by an attribute (articles without it left out); the
    conversion attribute's value becomes a factor, or the reason it cannot."""
    rows = [
        ("A", 1, 0, '{"ds": "D-A", "units per kg": "100"}'),
        ("B", 0, 1, '{"units per kg": "-2"}'),
        ("C", 1, 0, "{}"),
    ]
    with db.transaction():
        for article_id, whole, serial, attributes in rows:
            db.db.execute(
                "INSERT INTO host_articles (article_id, name, whole_units, is_serial_numbered, "
                "attributes, file, line, load_id, loaded_at) VALUES (?, ?, ?, ?, ?, 'f', 1, 1, 't')",
                [article_id, article_id, whole, serial, attributes],
            )
    assert orders.catalog_version(db) == "0"
    own = catalog_entries(orders.host_catalog(db, None, "units per kg"), "units per kg")
    assert own == {
        "A": CatalogEntry("A", True, False, Decimal(100)),
        "B": CatalogEntry(
            "B", False, True, None, "catalog attribute units per kg = '-2' is not a positive number"
        ),
        "C": CatalogEntry("C"),
    }
    by_attribute = orders.host_catalog(db, "ds", "")
    assert catalog_entries(by_attribute, "") == {"D-A": CatalogEntry("A")}


def created_order(db: Store, order_id: str, accepted: bool = True) -> None:
    """A created order (policy partial, line A only), its Instock create accepted."""
    catalog = {"A": CatalogEntry("INS-A")}
    pulled = order(order_id)
    checks = {
        ln.line_number: check_line(ln.article_id, ln.quantity, catalog) for ln in pulled.details
    }
    apply_plan(db, plan_new_order(pulled, checks, PullRules(policy="partial"), NOW).plan)
    if accepted:
        with db.transaction():
            OrderOutcome(f"DS-{order_id}", "create", "accepted", None, iso(NOW)).apply(db)


def test_moves_make_an_order_due_until_it_is_polled_and_the_sweep_takes_the_oldest(
    db: Store,
) -> None:
    """`RecordMoves` keeps the newest move per open order (never going back, never for an
    order not `created`); an order is due while its newest move is past the one seen at its
    last poll; the sweep takes orders polled (never polled: changed) longest ago, at most
    `limit`, and only accepted creates."""
    for oid in ("1", "2", "3"):
        created_order(db, oid)
    created_order(db, "4", accepted=False)
    t1, t2, t0 = "2026-03-02T09:00:01.000Z", "2026-03-02T09:00:02.000Z", "2026-03-02T08:00:00.000Z"
    with db.transaction():
        orders.RecordMoves((("DS-1", t2), ("DS-4", t1), ("DS-9", t1))).apply(db)
        orders.RecordMoves((("DS-1", t1), ("DS-2", t1))).apply(db)  # older: DS-1 keeps t2
    due = orders.moved_orders_due(db, 10)
    assert [(o.order_id, o.moved_at) for o in due] == [("2", t1), ("1", t2)]  # oldest move first
    assert orders.moved_orders_due(db, 1)[0].order_id == "2"
    with db.transaction():
        orders.MarkPolled((("1", t2), ("2", t1)), "2026-03-02T09:40:00.000Z").apply(db)
    assert orders.moved_orders_due(db, 10) == []
    with db.transaction():
        orders.RecordMoves((("DS-2", t2),)).apply(db)
    assert [o.order_id for o in orders.moved_orders_due(db, 10)] == ["2"]

    # Sweep: 3 never polled (its updated_at is NOW, 09:30), 1 and 2 polled at 09:40.
    later = "2026-03-02T10:00:00.000Z"
    assert [o.order_id for o in orders.orders_to_sweep(db, later, 10)] == ["3", "1", "2"]
    assert [o.order_id for o in orders.orders_to_sweep(db, later, 1)] == ["3"]
    assert orders.orders_to_sweep(db, t0, 10) == []
    with db.transaction():
        orders.MarkPolled((("3", None),), "2026-03-02T09:45:00.000Z").apply(db)
    assert [o.order_id for o in orders.orders_to_sweep(db, later, 10)] == ["1", "2", "3"]
    # A poll of an order with no move recorded leaves its move mark as it was.
    assert db.query("SELECT polled_moved_at FROM dsorder_orders WHERE order_id = '3'") == [
        {"polled_moved_at": None}
    ]
    assert orders.create_counts(db)[1] == 0
    with db.transaction():
        OrderOutcome("DS-4", "create", "refused", "no", iso(NOW)).apply(db)
    assert orders.create_counts(db)[1] == 1
    # A closing order takes no more moves and is due no more.
    with db.transaction():
        orders.MarkClosing("2", iso(NOW)).apply(db)
        orders.RecordMoves((("DS-2", "2026-03-02T09:59:00.000Z"),)).apply(db)
    assert orders.moved_orders_due(db, 10) == []
    assert db.query("SELECT moved_at FROM dsorder_orders WHERE order_id = '2'") == [
        {"moved_at": t2}
    ]


def test_each_run_reads_only_the_moved_and_the_due_orders_through_their_indexes(
    db: Store,
) -> None:
    """The queries a dsorder.progress run makes to choose what to poll go through the
    partial indexes of m0027, not a scan of every open order (the planner, without
    statistics, would take the `state` index: so the queries name theirs; a rewrite of
    their WHERE that no longer implies the index's fails at once)."""
    captured: list[str] = []
    db.db.conn.set_trace_callback(captured.append)
    try:
        orders.moved_orders_due(db, 10)
        orders.orders_to_sweep(db, "2026-03-02T10:00:00.000Z", 10)
    finally:
        db.db.conn.set_trace_callback(None)
    run_sql = [q for q in captured if "FROM dsorder_orders d" in q]
    assert len(run_sql) == 2
    for sql, index in zip(
        run_sql, ("dsorder_orders_moved_due", "dsorder_orders_sweep_due"), strict=True
    ):
        plan = [r["detail"] for r in db.query("EXPLAIN QUERY PLAN " + sql)]
        assert any(f"USING INDEX {index}" in step for step in plan), plan
        assert not any("dsorder_orders_state" in step for step in plan), plan


def test_the_lines_of_several_orders_read_at_once_are_each_orders_own(db: Store) -> None:
    """`lines_of_orders` (one query for a chunk of polls) gives every order what
    `order_lines` gives it, and an order without lines (or unknown) an empty list."""
    for order_id in ("41", "42"):
        created_order(db, order_id)
    both = orders.lines_of_orders(db, ["42", "41", "99"])
    assert both == {
        "41": orders.order_lines(db, "41"),
        "42": orders.order_lines(db, "42"),
        "99": [],
    }
    assert [ln.line_number for ln in both["41"]] == [1, 2]
    assert orders.lines_of_orders(db, []) == {}
