"""Following Instock orders: poll an order's status and ordertasks, store what changed.

instock.orders follows the orders the host sent; dsorder.progress follows the orders of
the DSOrder loop, at its own pace, and records its fulfilment intents in the same
transaction as the poll (`on_poll`).
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

from syncd.clock import iso
from syncd.connectors.instock import (
    BadRecordError,
    InstockClient,
    Order,
    OrderStatus,
    Ordertask,
    fulfilled_by_line,
)
from syncd.errors import PermanentError
from syncd.jobs.shared.instock_records import record_rejects, resolve_fixed
from syncd.jsontext import json_safe
from syncd.state import Store

ORDERS_REJECT_SOURCE = "instock:orders"


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
    order: dict[str, Any] = (
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
        resolve_fixed(store, ORDERS_REJECT_SOURCE, "order_id", [order_id])
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
