"""`instock.orders`: host customer orders -> Instock, Instock order status -> host.

Three steps per run, each durable before the next:

1. Push: host orders (inbox feed `orders`) are planned against
   `instock_order_sync` and the mirror by `plan_host_order` (pure): create new
   ones (the order id is the natural key; "already exists" after a crash counts
   as done), update changed ones while Instock still has them `registered`,
   cancel cancelled ones while `registered`; anything else is a reject with
   the reason.
2. Mirror: the orders list (all kinds). The document does not say in which
   order it lists orders, so syncd assumes none: each run reads the tail from
   the cursor of the last page seen (new orders appended at the end), and the
   head until a page holds no order it does not know (new orders first), and
   every `full_scan_interval` the whole list (any other order).
3. Follow: every order not yet `done`/`canceled` is polled for its status and
   ordertasks; a change of status or of fulfilled quantities is recorded as
   order events in the same transaction, and the events become one host
   outbox file per run. A reception order found done is read again (retrieve
   order): attributes added during decanting (e.g. the ASN) reach the mirror,
   and every `order_status` row carries its order's attributes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from syncd.clock import iso, parse_iso, utcnow
from syncd.config import Duration, Schedule
from syncd.connectors.instock import (
    ORDER_ID_RE,
    InstockClient,
    Order,
    Page,
    check_records,
)
from syncd.errors import PermanentError
from syncd.jobs.base import JobContext, JobSpec, take_retried_rejects
from syncd.jobs.shared.instock_follow import ORDERS_REJECT_SOURCE, Refused, follow_orders
from syncd.jobs.shared.instock_records import record_rejects, resolve_fixed
from syncd.jsontext import content_hash, json_safe
from syncd.send.host import host_file_intent, host_format
from syncd.send.instock import DESTINATION
from syncd.state import NewIntent, NewReject, Store

CURSOR_STREAM = "instock.orders.cursor"
FULL_SCAN_STREAM = "instock.orders.full_scan"  # when the whole list was last read
REJECT_SOURCE = ORDERS_REJECT_SOURCE


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    push_host_orders: bool = Field(True, description="create/update/cancel host orders")
    follow_limit: int = Field(500, ge=1, description="open orders polled per run at most")
    full_scan_interval: Duration = Field(
        3600.0, ge=0, description="read the whole orders list at least this often (0: every run)"
    )


@dataclass(frozen=True)
class OrderSync:
    pushed_hash: str | None
    action: str
    status: str


@dataclass(frozen=True)
class Action:
    kind: str  # skip, create, update, cancel, refuse, done
    reason: str = ""


def order_payload(order: Mapping[str, Any], lines: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "order_id": order["order_id"],
        "attributes": json.loads(order.get("attributes") or "{}"),
        "lines": [
            {"line_id": ln["line_id"], "article_id": ln["article_id"], "qty": int(ln["qty"])}
            for ln in sorted(lines, key=lambda ln: ln["line_id"])
        ],
    }
    if order.get("placed_at"):
        payload["placed_at"] = order["placed_at"]
    return payload


def plan_host_order(
    host_status: str,
    digest: str,
    sync: OrderSync | None,
    instock_status: str | None,
    order_id: str,
) -> Action:
    """What to do with one host order, given what was pushed and what Instock shows."""
    if not ORDER_ID_RE.match(order_id):
        return Action("refuse", f"order_id {order_id!r} must be 1..128 of [a-zA-Z0-9_+.:-]")
    if host_status == "cancelled":
        if sync is None or sync.action == "cancel":
            return Action("skip")  # never sent, or cancel already planned
        if instock_status == "canceled":
            return Action("done")
        if instock_status not in (None, "registered"):
            return Action(
                "refuse",
                f"cannot cancel: the order is {instock_status} in Instock "
                "(only registered orders can be canceled)",
            )
        return Action("cancel")
    if sync is None:
        return Action("create")
    if sync.action == "cancel" or sync.pushed_hash == digest:
        return Action("skip")  # cancelled stays cancelled; unchanged needs nothing
    if sync.action == "create" and sync.status == "refused" and instock_status is None:
        return Action("create")  # Instock refused the create: the corrected order is new
    if instock_status not in (None, "registered"):
        return Action(
            "refuse",
            f"cannot update: the order is {instock_status} in Instock "
            "(updates are accepted only while registered)",
        )
    return Action("update")


def run(ctx: JobContext) -> None:
    options: Options = ctx.options
    if options.push_host_orders:
        _push_host_orders(ctx)
    with InstockClient(ctx.settings.connectors.instock) as client:
        client.check_site()
        _mirror_orders(ctx, client, options)
        _follow_open_orders(ctx, client, options)
    _flush_events(ctx)
    if ctx.counts["queued"]:
        ctx.wake_sender()


# -- 1. push -----------------------------------------------------------------


def _requeue_retried_rejects(ctx: JobContext) -> None:
    """`syncd rejects retry` on a host-order reject: plan that order again this run."""

    def forget(store: Store, reject: dict[str, Any]) -> None:
        # The order is compared afresh with Instock (a refused cancel is planned
        # again as "pushed, not cancelled").
        store.db.execute(
            "UPDATE instock_order_sync SET pushed_hash = NULL, "
            "action = CASE WHEN action = 'cancel' THEN 'update' ELSE action END "
            "WHERE order_id = ? AND status = 'refused'",
            [reject["reference"].removeprefix("order ")],
        )

    take_retried_rejects(ctx, REJECT_SOURCE, forget)


def _push_host_orders(ctx: JobContext) -> None:
    store = ctx.store
    _requeue_retried_rejects(ctx)
    for orders in _host_order_batches(store, 500):
        ctx.check_stop()
        intents: list[NewIntent] = []
        rejects: list[NewReject] = []
        marks: list[tuple[str, str | None, str, str, str | None]] = []
        lines = _lines_for(store, [o["order_id"] for o in orders])
        for order in orders:
            order_id = order["order_id"]
            payload = order_payload(order, lines.get(order_id, []))
            digest = content_hash(payload)
            sync = (
                OrderSync(order["s_pushed_hash"], order["s_action"], order["s_status"])
                if order["s_action"]
                else None
            )
            action = plan_host_order(order["status"], digest, sync, order["m_status"], order_id)
            ctx.counts[f"orders_{action.kind}"] += 1
            match action.kind:
                case "skip":
                    continue
                case "create" | "update":
                    marks.append((order_id, digest, action.kind, "queued", None))
                    intents.append(
                        NewIntent(
                            DESTINATION,
                            f"orders.{action.kind}",
                            f"order:{order_id}",
                            # With the run id, content that comes back (A -> B -> A -> B)
                            # is a new intent, not a duplicate key that is dropped.
                            f"order:{order_id}:{action.kind}:{digest}:{ctx.run_id}",
                            {"order": payload},
                        )
                    )
                case "cancel":
                    marks.append(
                        (order_id, sync.pushed_hash if sync else None, "cancel", "queued", None)
                    )
                    intents.append(
                        NewIntent(
                            DESTINATION,
                            "orders.cancel",
                            f"order:{order_id}",
                            f"order:{order_id}:cancel",
                            {"order_id": order_id},
                        )
                    )
                case "done":
                    marks.append(
                        (order_id, sync.pushed_hash if sync else None, "cancel", "accepted", None)
                    )
                case "refuse":
                    kind = "cancel" if order["status"] == "cancelled" else "update"
                    marks.append((order_id, digest, kind, "refused", action.reason))
                    rejects.append(
                        NewReject(
                            REJECT_SOURCE, f"order {order_id}", action.reason, payload=payload
                        )
                    )
        if marks:
            with store.transaction():
                _mark(store, marks)
                ctx.counts["queued"] += store.add_intents(intents, run_id=ctx.run_id)
                ctx.counts["rejected"] += store.add_rejects(rejects, run_id=ctx.run_id)


def _host_order_batches(store: Store, size: int) -> Iterator[list[dict[str, Any]]]:
    last = ""
    while True:
        rows = store.query(
            "SELECT h.*, s.pushed_hash AS s_pushed_hash, s.action AS s_action, "
            "s.status AS s_status, m.order_status AS m_status FROM host_orders h "
            "LEFT JOIN instock_order_sync s USING (order_id) "
            "LEFT JOIN instock_orders m USING (order_id) "
            "WHERE h.order_id > ? ORDER BY h.order_id LIMIT ?",
            [last, size],
        )
        if not rows:
            return
        last = rows[-1]["order_id"]
        yield rows


def _lines_for(store: Store, order_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    marks = ",".join("?" * len(order_ids))
    lines: dict[str, list[dict[str, Any]]] = {}
    for row in store.query(
        f"SELECT order_id, line_id, article_id, qty FROM host_order_lines "
        f"WHERE order_id IN ({marks})",
        order_ids,
    ):
        lines.setdefault(row["order_id"], []).append(row)
    return lines


def _mark(store: Store, marks: list[tuple[str, str | None, str, str, str | None]]) -> None:
    now = iso()
    store.db.conn.executemany(
        "INSERT INTO instock_order_sync "
        "(order_id, source, pushed_hash, action, status, reason, updated_at) "
        "VALUES (?, 'host', ?, ?, ?, ?, ?) ON CONFLICT (order_id) DO UPDATE SET "
        "pushed_hash = excluded.pushed_hash, action = excluded.action, "
        "status = excluded.status, reason = excluded.reason, updated_at = excluded.updated_at",
        [(o, h, a, s, r, now) for o, h, a, s, r in marks],
    )


# -- 2. mirror ---------------------------------------------------------------


def _mirror_orders(ctx: JobContext, client: InstockClient, options: Options) -> None:
    """Find new orders whatever the list order: head, tail, and now and then everything."""
    store = ctx.store
    now = utcnow()
    last_full = store.get_checkpoint(FULL_SCAN_STREAM)
    full = (
        last_full is None
        or parse_iso(last_full) + timedelta(seconds=options.full_scan_interval) <= now
    )
    if not full:
        _walk_head(ctx, client)
    if _walk_tail(ctx, client, "" if full else store.get_checkpoint(CURSOR_STREAM) or "") and full:
        with store.transaction():
            store.set_checkpoint(FULL_SCAN_STREAM, iso(now), run_id=ctx.run_id)
        ctx.counts["orders_full_scans"] += 1


def _walk_head(ctx: JobContext, client: InstockClient) -> None:
    """From the top until a page holds no order the mirror lacks (newest-first lists)."""
    for page in client.order_pages():
        new = _store_order_page(ctx, page, None)
        ctx.check_stop()
        if not new:
            return


def _walk_tail(ctx: JobContext, client: InstockClient, cursor: str) -> bool:
    """From `cursor` to the end of the list (append-ordered lists; from "" the whole list);
    the cursor is kept with each page. True when the end was reached."""
    store = ctx.store
    try:
        for page in client.order_pages(start_cursor=cursor or None):
            # The last page is read again next run: new orders may be appended after it.
            position = page.next_cursor if page.has_more else cursor
            _store_order_page(ctx, page, position or "")
            cursor = position or ""
            ctx.check_stop()
    except PermanentError as exc:
        if not cursor or exc.status != 400:
            raise
        ctx.log.warning("orders_cursor_rejected", error=str(exc))
        store.set_checkpoint(CURSOR_STREAM, "", run_id=ctx.run_id)
        return False
    return True


def _store_order_page(ctx: JobContext, page: Page, position: str | None) -> int:
    """Mirror one page's good orders and reject its bad ones, in one transaction with the
    tail cursor (`position`, None to leave it); returns how many orders were new."""
    store = ctx.store
    now = iso()
    good, bad = check_records(page.items, Order, "order_id")
    rows = [
        (
            o.order_id,
            o.kind or "customer",
            o.placed_at,
            json.dumps(json_safe(o.attributes)),
            json.dumps(json_safe([ln.model_dump() for ln in o.lines])),
            now,
        )
        for o in good
    ]
    with store.transaction():
        ids = [r[0] for r in rows]
        known = (
            store.scalar(
                f"SELECT count(*) FROM instock_orders WHERE order_id IN ({','.join('?' * len(ids))})",
                ids,
            )
            if ids
            else 0
        )
        store.db.conn.executemany(
            "INSERT INTO instock_orders "
            "(order_id, kind, placed_at, attributes, lines, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (order_id) DO UPDATE SET "
            "kind = excluded.kind, placed_at = excluded.placed_at, "
            "attributes = excluded.attributes, lines = excluded.lines",
            rows,
        )
        ctx.counts["rejected"] += record_rejects(
            store,
            REJECT_SOURCE,
            bad,
            key_field="order_id",
            request_id=page.request_id,
            run_id=ctx.run_id,
        )
        resolve_fixed(store, REJECT_SOURCE, "order_id", ids)
        if position is not None:
            store.set_checkpoint(CURSOR_STREAM, position, run_id=ctx.run_id)
    ctx.counts["pulled"] += len(page.items)
    ctx.counts["stored"] += len(rows)
    return len(ids) - int(known or 0)


# -- 3. follow ---------------------------------------------------------------


def _follow_open_orders(ctx: JobContext, client: InstockClient, options: Options) -> None:
    # Orders of the DSOrder loop are followed by dsorder.progress, at its own pace.
    open_orders = ctx.store.query(
        "SELECT order_id FROM instock_orders "
        "WHERE (order_status IS NULL OR order_status NOT IN ('done', 'canceled')) "
        "AND order_id NOT IN (SELECT instock_order_id FROM dsorder_orders "
        "WHERE instock_order_id IS NOT NULL) "
        "ORDER BY updated_at, order_id LIMIT ?",
        [options.follow_limit],
    )
    ids = [o["order_id"] for o in open_orders]
    for order_id, followed in follow_orders(ctx.store, client, ids, between=ctx.check_stop):
        if isinstance(followed, Refused):
            ctx.counts["rejected"] += 1
            ctx.log.warning("order_record_rejected", order_id=order_id, **followed.log_fields())
            continue
        if followed is None:
            ctx.log.warning("order_vanished", order_id=order_id)
            continue
        ctx.counts["followed"] += 1
        ctx.counts["status_changes"] += int(followed.changed)


def _flush_events(ctx: JobContext) -> None:
    """Pending order events become one host `order-status` file, atomically."""
    store = ctx.store
    with store.transaction():
        rows = store.query(
            "SELECT e.id, e.order_id, e.kind, e.order_status, e.status_at, e.line_id, "
            "e.article_id, e.requested, e.fulfilled, o.attributes "
            "FROM instock_order_events e LEFT JOIN instock_orders o USING (order_id) "
            "ORDER BY e.id"
        )
        if not rows:
            return
        first, last = rows[0]["id"], rows[-1]["id"]
        for row in rows:
            del row["id"]
            # The order's attributes as Instock has them now (e.g. a reception's ASN).
            row["attributes"] = json.loads(row["attributes"] or "{}")
        added = store.add_intents(
            [
                host_file_intent(
                    "order_status",
                    rows,
                    host_format(ctx.settings, "order_status"),
                    # Event ids are reused once the table is emptied (no AUTOINCREMENT):
                    # the run id keeps a later flush from colliding with an earlier key,
                    # which would drop its file while the events are deleted.
                    key=f"order_status:{ctx.run_id}:{first}-{last}",
                )
            ],
            run_id=ctx.run_id,
        )
        store.db.execute("DELETE FROM instock_order_events WHERE id <= ?", [last])
    ctx.counts["queued"] += added
    ctx.counts["events"] += len(rows)


SPEC = JobSpec(
    name="instock.orders",
    run=run,
    description="Push host orders to Instock; mirror Instock orders; report status to host",
    default_schedule=Schedule(interval=120),
    connectors=("instock",),
    options_model=Options,
)
