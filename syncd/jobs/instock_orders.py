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

import contextvars
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from syncd.clock import iso, parse_iso, utcnow
from syncd.config import Duration, Schedule
from syncd.connectors.instock import (
    ORDER_ID_RE,
    BadRecordError,
    InstockClient,
    Order,
    OrderStatus,
    Ordertask,
    Page,
    PermanentError,
    check_records,
    fulfilled_by_line,
)
from syncd.jobs.base import JobContext, JobSpec, register, take_retried_rejects
from syncd.jobs.instock_records import record_rejects, resolve_fixed
from syncd.jsontext import content_hash, json_safe
from syncd.send.host import host_file_intent, host_format
from syncd.send.instock import DESTINATION
from syncd.state import NewIntent, NewReject, Store

CURSOR_STREAM = "instock.orders.cursor"
FULL_SCAN_STREAM = "instock.orders.full_scan"  # when the whole list was last read
REJECT_SOURCE = "instock:orders"


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


@dataclass(frozen=True)
class Followed:
    """An order's state in Instock after one poll."""

    status: str
    fulfilled: dict[str, int]  # line_id -> quantity picked (done ordertasks)
    changed: bool


@dataclass(frozen=True)
class Refused:
    """A poll whose order status or one of its ordertasks failed validation: that record is
    a reject (source `instock:<kind>`) and the order is polled again next time."""

    kind: str  # "orders" (the order status) or "ordertasks"
    key: str  # the order_id or ordertask_id read
    field: str
    reason: str

    def log_fields(self) -> dict[str, str]:
        """What a log line says about it: where the reject is, which record, why."""
        source = f"instock:{self.kind}"
        return {"source": source, "key": self.key, "field": self.field, "reason": self.reason}


OnChange = Callable[[Store, Followed], None]


@dataclass(frozen=True)
class Poll:
    """What one poll of an order read from Instock (no database involved)."""

    order_id: str
    status: OrderStatus | None  # None: Instock answered 404, or a record was bad
    tasks: list[Ordertask]
    bad: BadRecordError | None = None  # the status or an ordertask failed validation
    order: Order | None = None  # the order read again (a reception order found done)


def known_terminal_tasks(store: Store, order_ids: Sequence[str]) -> dict[str, dict[str, Ordertask]]:
    """Stored ordertasks that are done/canceled: immutable, so never fetched again."""
    known: dict[str, dict[str, Ordertask]] = {}
    for start in range(0, len(order_ids), 500):
        chunk = list(order_ids[start : start + 500])
        marks = ",".join("?" * len(chunk))
        for row in store.query(
            "SELECT ordertask_id, order_id, ordertask_status, lines FROM instock_ordertasks "
            f"WHERE order_id IN ({marks}) AND ordertask_status IN ('done', 'canceled')",
            chunk,
        ):
            known.setdefault(row["order_id"], {})[row["ordertask_id"]] = Ordertask.model_validate(
                {**row, "lines": json.loads(row["lines"])}
            )
    return known


def poll_order(
    client: InstockClient, order_id: str, known: Mapping[str, Ordertask], *, reread: bool = False
) -> Poll:
    """Status and ordertasks of one order, and with `reread` the order itself once it is
    done (attributes added during decanting); safe to run in a worker thread."""
    order = None
    try:
        status = client.order_status(order_id)
        tasks = [known.get(t) or client.get_ordertask(t) for t in status.task_ids]
        if reread and status.order_status == "done":
            order = client.get_order(order_id)
    except BadRecordError as exc:
        return Poll(order_id, None, [], bad=exc)
    except PermanentError as exc:
        if exc.status == 404:
            return Poll(order_id, None, [])
        raise
    return Poll(order_id, status, tasks, order=order)


def _rereads(store: Store, order_ids: Sequence[str]) -> set[str]:
    """The orders to read again once done: reception orders (the ASN is added at decanting)."""
    if not order_ids:
        return set()
    marks = ",".join("?" * len(order_ids))
    return {
        row["order_id"]
        for row in store.query(
            f"SELECT order_id FROM instock_orders WHERE kind = 'reception' AND order_id IN ({marks})",
            list(order_ids),
        )
    }


def follow_orders(
    store: Store,
    client: InstockClient,
    order_ids: Sequence[str],
    *,
    workers: int = 4,
    chunk: int = 32,
    on_poll: Callable[[str], OnChange | None] = lambda _: None,
    stub: Callable[[str], Mapping[str, Any] | None] = lambda _: None,
    between: Callable[[], None] = lambda: None,
) -> Iterator[tuple[str, Followed | Refused | None]]:
    """Follow many orders: the polls run `workers` at a time (HTTP only), every result
    is stored on the caller's thread and connection, in order; `between` runs after
    each chunk (e.g. a stop check, or waking the sender for what was just queued)."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="instock-poll") as pool:
        for start in range(0, len(order_ids), chunk):
            ids = list(order_ids[start : start + chunk])
            known = known_terminal_tasks(store, ids)
            rereads = _rereads(store, ids)
            context = contextvars.copy_context()
            futures = [
                pool.submit(
                    context.copy().run,
                    partial(poll_order, reread=oid in rereads),
                    client,
                    oid,
                    known.get(oid, {}),
                )
                for oid in ids
            ]
            for order_id, future in zip(ids, futures, strict=True):
                yield (
                    order_id,
                    store_poll(
                        store, future.result(), on_poll=on_poll(order_id), stub=stub(order_id)
                    ),
                )
            between()


def store_poll(
    store: Store,
    poll: Poll,
    *,
    on_poll: OnChange | None = None,
    stub: Mapping[str, Any] | None = None,
) -> Followed | Refused | None:
    """Store one poll's status and ordertasks, with its events; None for a 404, Refused
    for a status or ordertask that failed validation (recorded as a reject).

    `on_poll` runs inside the same transaction, so whatever a caller records
    from this poll (e.g. DSOrder fulfilment intents) is durable together with
    the mirror row it was derived from. `stub` creates the mirror row for an
    order syncd created but has not listed yet.
    """
    order_id, status, tasks = poll.order_id, poll.status, poll.tasks
    if poll.bad is not None:
        # One bad status or ordertask: that order is rejected for this poll (and polled
        # again next time); the other orders go on.
        with store.transaction():
            record_rejects(
                store,
                f"instock:{poll.bad.kind}",
                [poll.bad.record],
                key_field=poll.bad.key_field,
                request_id=poll.bad.request_id,
                run_id=None,
            )
        record = poll.bad.record
        return Refused(poll.bad.kind, record.key or order_id, record.field, record.reason)
    rows = store.query(
        "SELECT order_id, kind, lines, order_status, fulfilled FROM instock_orders "
        "WHERE order_id = ?",
        [order_id],
    )
    if status is None or (not rows and stub is None):
        return None
    order = (
        rows[0]
        if rows
        else {
            "order_id": order_id,
            "kind": "customer",
            "lines": json.dumps(stub["lines"]),  # type: ignore[index]
            "order_status": None,
            "fulfilled": "{}",
        }
    )
    fulfilled = fulfilled_by_line(tasks)
    if status.lines:
        # The status carries the order's current lines; the mirrored list page can be stale
        # (an order updated after it left the last page is never listed again).
        current = [
            {"line_id": ln.line_id, "article_id": ln.article_id, "qty": ln.qty.requested}
            for ln in status.lines
        ]
        order = {**order, "lines": json.dumps(current)}
    changed = status.order_status != order["order_status"] or fulfilled != json.loads(
        order["fulfilled"]
    )
    followed = Followed(status.order_status, fulfilled, changed)
    if rows and not changed and order["lines"] == rows[0]["lines"]:
        # Nothing moved since the last poll: no write (most polls of open orders).
        return followed
    now = iso()
    with store.transaction():
        if not rows:
            store.db.execute(
                "INSERT INTO instock_orders (order_id, kind, lines, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (order_id) DO NOTHING",
                [order_id, order["kind"], order["lines"], now],
            )
        if poll.order is not None:
            store.db.execute(
                "UPDATE instock_orders SET attributes = ? WHERE order_id = ?",
                [json.dumps(json_safe(poll.order.attributes)), order_id],
            )
        resolve_fixed(store, REJECT_SOURCE, "order_id", [order_id])
        resolve_fixed(store, "instock:ordertasks", "ordertask_id", status.task_ids)
        store.db.execute(
            "UPDATE instock_orders SET order_status = ?, status_at = ?, ordertask_ids = ?, "
            "fulfilled = ?, lines = ?, updated_at = ? WHERE order_id = ?",
            [
                status.order_status,
                status.timestamp,
                json.dumps(status.task_ids),
                json.dumps(fulfilled, sort_keys=True),
                order["lines"],
                now,
                order_id,
            ],
        )
        store.db.conn.executemany(
            "INSERT INTO instock_ordertasks "
            "(ordertask_id, order_id, ordertask_status, lines, updated_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (ordertask_id) DO UPDATE SET "
            "ordertask_status = excluded.ordertask_status, lines = excluded.lines, "
            "updated_at = excluded.updated_at",
            [
                (
                    task.ordertask_id,
                    order_id,
                    task.ordertask_status,
                    json.dumps([ln.model_dump() for ln in task.lines]),
                    now,
                )
                for task in tasks
            ],
        )
        if changed:
            _record_events(store, order, status.order_status, status.timestamp, fulfilled)
        if on_poll is not None:
            on_poll(store, followed)
    return followed


def _record_events(
    store: Store,
    order: Mapping[str, Any],
    status: str,
    status_at: str | None,
    fulfilled: Mapping[str, int],
) -> None:
    now = iso()
    lines = json.loads(order["lines"] or "[]") or [
        {"line_id": None, "article_id": None, "qty": None}
    ]
    store.db.conn.executemany(
        "INSERT INTO instock_order_events (order_id, kind, order_status, status_at, line_id, "
        "article_id, requested, fulfilled, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                order["order_id"],
                order["kind"],
                status,
                status_at,
                ln["line_id"],
                ln["article_id"],
                ln["qty"],
                fulfilled.get(ln["line_id"], 0) if ln["line_id"] else 0,
                now,
            )
            for ln in lines
        ],
    )


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


SPEC = register(
    JobSpec(
        name="instock.orders",
        run=run,
        description="Push host orders to Instock; mirror Instock orders; report status to host",
        default_schedule=Schedule(interval=120),
        connectors=("instock",),
        options_model=Options,
    )
)
