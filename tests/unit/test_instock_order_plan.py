"""instock.orders decides without a server or a database: host orders, list pages, polls
and pending events in, a `Plan` out."""

from __future__ import annotations

import json
from typing import Any

from syncd.clock import parse_iso
from syncd.connectors.instock import (
    BadRecord,
    Order,
    OrderStatus,
    Ordertask,
    check_records,
)
from syncd.jobs.instock_articles import plan_article_batch
from syncd.jobs.instock_orders import (
    CURSOR_STREAM,
    HostOrder,
    OrderSync,
    full_scan_due,
    plan_host_orders,
    plan_order_page,
    plan_order_status_file,
)
from syncd.jobs.shared.instock_follow import (
    BadRead,
    Followed,
    Poll,
    Refused,
    plan_poll,
)
from syncd.jobs.shared.instock_records import RefreshRejects, ResolveFixed
from syncd.jsontext import content_hash
from syncd.state.mirror.instock import (
    AddOrderEvents,
    DropOrderEvents,
    HostOrderMark,
    MarkArticles,
    MarkHostOrders,
    MirrorOrders,
    OrderEvent,
    RecordOrderStatus,
    SetOrderAttributes,
    StoreOrdertasks,
    StubOrder,
)
from syncd.state.windows import RecordWindow

NOW = "2026-12-04T12:00:00Z"
PAYLOAD = {
    "order_id": "HO-1",
    "attributes": {},
    "lines": [{"line_id": "1", "article_id": "A1", "qty": 2}],
}
DIGEST = content_hash(PAYLOAD)


def host(
    status: str = "open",
    sync: OrderSync | None = None,
    instock: str | None = None,
    payload: dict[str, Any] = PAYLOAD,
) -> HostOrder:
    return HostOrder(payload["order_id"], status, payload, sync, instock)


def marks(plan: Any) -> tuple[HostOrderMark, ...]:
    [change] = plan.changes
    assert isinstance(change, MarkHostOrders)
    assert change.at == NOW
    return change.marks


def test_a_new_order_is_created_once_per_content() -> None:
    pushed = plan_host_orders([host()], "run-1", NOW)
    assert marks(pushed.plan) == (HostOrderMark("HO-1", DIGEST, "create", "queued"),)
    [intent] = pushed.plan.intents
    assert (intent.destination, intent.kind, intent.order_key) == (
        "instock",
        "orders.create",
        "order:HO-1",
    )
    assert intent.idempotency_key == f"order:HO-1:create:{DIGEST}:run-1"
    assert intent.payload == {"order": PAYLOAD}
    assert pushed.actions == {"orders_create": 1}
    # queued with this content: nothing more until it changes
    again = plan_host_orders([host(sync=OrderSync(DIGEST, "create", "queued"))], "run-2", NOW)
    assert not again.plan
    assert again.actions == {"orders_skip": 1}


def test_a_changed_order_is_updated_while_registered_else_refused() -> None:
    changed = OrderSync("old", "create", "accepted")
    pushed = plan_host_orders([host(sync=changed, instock="registered")], "run-1", NOW)
    assert marks(pushed.plan) == (HostOrderMark("HO-1", DIGEST, "update", "queued"),)
    assert [i.kind for i in pushed.plan.intents] == ["orders.update"]

    late = plan_host_orders([host(sync=changed, instock="reserved")], "run-1", NOW)
    assert late.plan.intents == ()
    [reject] = late.plan.rejects
    assert (reject.source, reject.reference) == ("instock:orders", "order HO-1")
    assert reject.reason.startswith("cannot update: the order is reserved in Instock")
    assert reject.payload == PAYLOAD
    assert marks(late.plan) == (HostOrderMark("HO-1", DIGEST, "update", "refused", reject.reason),)


def test_a_cancelled_order_is_cancelled_or_found_cancelled() -> None:
    pushed = OrderSync("h0", "create", "accepted")
    cancel = plan_host_orders([host("cancelled", pushed, "registered")], "run-1", NOW)
    # the pushed content stays: a retried cancel is planned again as "pushed, not cancelled"
    assert marks(cancel.plan) == (HostOrderMark("HO-1", "h0", "cancel", "queued"),)
    [intent] = cancel.plan.intents
    assert (intent.kind, intent.idempotency_key, intent.payload) == (
        "orders.cancel",
        "order:HO-1:cancel",
        {"order_id": "HO-1"},
    )
    done = plan_host_orders([host("cancelled", pushed, "canceled")], "run-1", NOW)
    assert done.plan.intents == ()
    assert done.plan.rejects == ()
    assert marks(done.plan) == (HostOrderMark("HO-1", "h0", "cancel", "accepted"),)
    never_sent = plan_host_orders([host("cancelled")], "run-1", NOW)
    assert not never_sent.plan


def test_an_order_id_instock_cannot_take_is_refused_naming_the_field() -> None:
    bad = {**PAYLOAD, "order_id": "HO 1/2"}
    refused = plan_host_orders([host(payload=bad)], "run-1", NOW)
    [reject] = refused.plan.rejects
    assert (reject.reference, reject.field) == ("order HO 1/2", "order_id")
    assert "must be 1..128 of" in reject.reason
    assert refused.plan.intents == ()
    assert refused.actions == {"orders_refuse": 1}


def test_a_list_page_mirrors_good_orders_and_rejects_bad_ones_with_their_field() -> None:
    items = [
        {"order_id": "O1", "kind": "reception", "attributes": {"asn": "X"}, "lines": []},
        {"order_id": "O2", "lines": [{"line_id": "1", "article_id": "A", "qty": -1}]},
        {"order_id": "O3"},
    ]
    good, bad = check_records(items, Order, "order_id")
    page = plan_order_page(
        good, bad, "req-7", {"O3"}, "cur-2", run_id="r", now=NOW, cursor_before="cur-1",
        started_at="2026-12-04T11:59:59.000Z", content="h1",
    )  # fmt: skip
    assert (page.listed, page.stored, page.rejected, page.new) == (3, 2, 1, 1)
    mirror, refresh, resolve, ledger = page.plan.changes
    # The page's window ledger row travels in the same plan (one transaction with the data).
    assert ledger == RecordWindow(
        "instock.orders", "instock.orders", "r", "cursor", "2026-12-04T11:59:59.000Z", NOW,
        cursor_before="cur-1", cursor_after="cur-2", listed=3, stored=2, rejected=1,
        content_hash="h1", request_ids=("req-7",),
    )  # fmt: skip
    assert isinstance(mirror, MirrorOrders)
    assert [(o.order_id, o.kind, o.attributes) for o in mirror.orders] == [
        ("O1", "reception", '{"asn": "X"}'),
        ("O3", "customer", "{}"),
    ]
    assert isinstance(refresh, RefreshRejects)
    assert refresh.run_id == "r"
    [reject] = refresh.rejects
    assert reject.reference == "order_id O2 (request req-7, item 1)"
    assert reject.field == "lines.0.qty"
    assert resolve == ResolveFixed("instock:orders", "order_id", ("O1", "O3"))
    assert page.plan.checkpoints == ((CURSOR_STREAM, "cur-2"),)
    head = plan_order_page(good, bad, None, set(), None, run_id="r", now=NOW)
    assert head.plan.checkpoints == ()
    assert head.new == 2
    head_ledger = head.plan.changes[-1]
    assert isinstance(head_ledger, RecordWindow)
    assert (head_ledger.cursor_before, head_ledger.cursor_after) == (None, None)


def test_a_full_scan_is_due_first_and_then_every_interval() -> None:
    now = parse_iso(NOW)
    assert full_scan_due(None, 3600, now)
    assert not full_scan_due("2026-12-04T11:30:00Z", 3600, now)
    assert full_scan_due("2026-12-04T11:00:00Z", 3600, now)


MIRRORED = {
    "order_id": "O1",
    "kind": "customer",
    "lines": json.dumps([{"line_id": "1", "article_id": "A", "qty": 3}]),
    "order_status": "registered",
    "fulfilled": "{}",
}


def status(order_status: str, tasks: list[str] = ()) -> OrderStatus:  # type: ignore[assignment]
    return OrderStatus(
        order_id="O1", order_status=order_status, timestamp="T1", ordertask_ids=list(tasks)
    )


def task(status: str, qty: int) -> Ordertask:
    return Ordertask.model_validate(
        {
            "ordertask_id": "T1",
            "ordertask_status": status,
            "lines": [{"line_id": "1", "article_id": "A", "to_cells": [{"qty": qty}]}],
        }
    )


def test_an_unchanged_poll_writes_nothing() -> None:
    planned = plan_poll(Poll("O1", status("registered"), []), MIRRORED, None, NOW)
    assert planned.result == Followed("registered", {}, False)
    assert not planned.plan


def test_a_status_change_records_the_status_and_an_event_per_line() -> None:
    planned = plan_poll(Poll("O1", status("reserved"), []), MIRRORED, None, NOW)
    assert planned.result == Followed("reserved", {}, True)
    *_, record, events = planned.plan.changes
    assert record == RecordOrderStatus("O1", "reserved", "T1", "[]", "{}", MIRRORED["lines"], NOW)
    assert events == AddOrderEvents(
        (OrderEvent("O1", "customer", "reserved", "T1", "1", "A", 3, 0),), NOW
    )


def test_an_ordertask_done_reports_the_picked_quantity() -> None:
    """Same order status, but an ordertask was picked: the fulfilled totals changed."""
    planned = plan_poll(
        Poll("O1", status("registered", ["T1"]), [task("done", 2)]), MIRRORED, None, NOW
    )
    assert planned.result == Followed("registered", {"1": 2}, True)
    tasks = next(c for c in planned.plan.changes if isinstance(c, StoreOrdertasks))
    assert [(t.ordertask_id, t.ordertask_status) for t in tasks.tasks] == [("T1", "done")]
    events = planned.plan.changes[-1]
    assert isinstance(events, AddOrderEvents)
    assert [(e.line_id, e.requested, e.fulfilled) for e in events.events] == [("1", 3, 2)]
    # an ordertask still open picks nothing yet: no change, no write
    open_task = plan_poll(
        Poll("O1", status("registered", ["T1"]), [task("registered", 2)]), MIRRORED, None, NOW
    )
    assert open_task.result == Followed("registered", {}, False)


def test_a_status_read_alone_keeps_the_stored_picks_and_ordertasks() -> None:
    """The sweep's status read of an open order: the status and its ordertask ids are
    recorded, the fulfilled totals stay as the last whole poll stored them (no ordertask
    was read, so none is stored and no ordertask reject is resolved)."""
    picked = {**MIRRORED, "fulfilled": '{"1": 2}'}
    planned = plan_poll(
        Poll("O1", status("reserved", ["T1", "T2"]), [], tasks_read=False), picked, None, NOW
    )
    assert planned.result == Followed("reserved", {"1": 2}, True)
    record = next(c for c in planned.plan.changes if isinstance(c, RecordOrderStatus))
    assert (record.ordertask_ids, record.fulfilled) == ('["T1", "T2"]', '{"1": 2}')
    assert not any(isinstance(c, StoreOrdertasks) for c in planned.plan.changes)
    resolved = [c for c in planned.plan.changes if isinstance(c, ResolveFixed)]
    assert resolved == [ResolveFixed("instock:orders", "order_id", ("O1",))]
    events = planned.plan.changes[-1]
    assert isinstance(events, AddOrderEvents)
    assert [(e.order_status, e.fulfilled) for e in events.events] == [("reserved", 2)]
    # read whole, the same answer without done ordertasks would say nothing was picked
    whole = plan_poll(Poll("O1", status("reserved", ["T1", "T2"]), []), picked, None, NOW)
    assert whole.result == Followed("reserved", {}, True)


def test_an_order_created_but_not_listed_gets_its_row_and_a_reread_its_attributes() -> None:
    reread = Order(order_id="O1", attributes={"asn": "Z"})
    planned = plan_poll(
        Poll("O1", status("done"), [], order=reread),
        None,
        {"lines": [{"line_id": "1", "article_id": "A", "qty": 3}]},
        NOW,
    )
    stub, attributes = planned.plan.changes[:2]
    assert stub == StubOrder("O1", "customer", MIRRORED["lines"], NOW)
    assert attributes == SetOrderAttributes("O1", '{"asn": "Z"}')
    # neither mirrored nor created by syncd, or gone from Instock: nothing to record
    assert plan_poll(Poll("O1", status("done"), []), None, None, NOW).result is None
    assert plan_poll(Poll("O1", None, []), MIRRORED, None, NOW).result is None


def test_a_bad_status_record_is_refused_with_its_field() -> None:
    record = BadRecord(0, "O1", "order_status", "must be a string", {"order_id": "O1"})
    planned = plan_poll(
        Poll("O1", None, [], bad=BadRead("orders", "order_id", record, "req-9")),
        MIRRORED,
        None,
        NOW,
    )
    assert planned.result == Refused("orders", "O1", "order_status", "must be a string")
    [refresh] = planned.plan.changes
    assert isinstance(refresh, RefreshRejects)
    assert refresh.run_id is None
    [reject] = refresh.rejects
    assert (reject.source, reject.reference, reject.field) == (
        "instock:orders",
        "order_id O1 (request req-9, item 0)",
        "order_status",
    )


def test_pending_events_become_one_host_file_and_are_dropped() -> None:
    events = [
        {"id": 4, "order_id": "O1", "order_status": "done", "attributes": '{"asn": "Z"}'},
        {"id": 9, "order_id": "O2", "order_status": "done", "attributes": None},
    ]
    plan = plan_order_status_file(events, "csv", "run-3")
    [intent] = plan.intents
    assert (intent.destination, intent.idempotency_key) == ("host", "order_status:run-3:4-9")
    assert [r["attributes"] for r in intent.payload["rows"]] == [{"asn": "Z"}, {}]
    assert "id" not in intent.payload["rows"][0]
    assert plan.changes == (DropOrderEvents(9),)
    assert not plan_order_status_file([], "csv", "run-3")


def test_an_article_refusal_names_the_field_validation_found() -> None:
    """The field comes from the check, not from the reason text (which named no field for
    dimensions or attributes)."""
    row = {
        "article_id": "A1",
        "name": "W",
        "is_serial_numbered": 0,
        "attributes": '{"colour": 3}',
        "dim_uom": None,
        "s_host_hash": None,
        "s_accepted_hash": None,
        "s_status": None,
    }
    planned = plan_article_batch([row], "run-1", NOW)
    [reject] = planned.plan.rejects
    assert (reject.field, reject.reason) == ("attributes", "attributes values must be strings")
    [mark_change] = planned.plan.changes
    assert isinstance(mark_change, MarkArticles)
    assert [(m.article_id, m.status) for m in mark_change.marks] == [("A1", "refused")]
