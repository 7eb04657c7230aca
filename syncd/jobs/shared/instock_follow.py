"""Following Instock orders: poll an order's status and ordertasks, store what changed.

instock.orders follows the orders the host sent; dsorder.progress follows the orders of
the DSOrder loop, at its own pace, and records its fulfilment intents in the same
transaction as the poll (`on_poll`). Both choose what to poll the same way: the orders
the Instock moves stream shows moving since their last poll (`moves_window`,
`newest_moves`), plus a paced slow sweep of the longest unpolled (`sweep_quota`,
`sweep_before`), so requests grow with what changed, not with the open orders.
"""

from __future__ import annotations

import contextvars
import json
import math
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from syncd.clock import iso, parse_iso
from syncd.connectors.instock import (
    PAGE_MAX,
    BadRecord,
    BadRecordError,
    InstockClient,
    Order,
    OrderStatus,
    Ordertask,
    fulfilled_by_line,
)
from syncd.errors import PaginationError, PermanentError
from syncd.jobs.base import JobContext
from syncd.jobs.shared.instock_records import RefreshRejects, ResolveFixed, bad_record_rejects
from syncd.jsontext import json_safe
from syncd.state import Store, queries
from syncd.state.mirror.instock import (
    AddOrderEvents,
    OrderEvent,
    OrdertaskRow,
    RecordOrderStatus,
    SetOrderAttributes,
    StoreOrdertasks,
    StubOrder,
    followed_states,
    mirrored_order,
    reception_orders,
    terminal_ordertasks,
)
from syncd.state.plan import Change, Plan, apply_plan

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
class BadRead:
    """A status or ordertask record that failed validation, as the client found it."""

    kind: str  # "orders" or "ordertasks"
    key_field: str
    record: BadRecord
    request_id: str | None

    @classmethod
    def of(cls, exc: BadRecordError) -> BadRead:
        return cls(exc.kind, exc.key_field, exc.record, exc.request_id)


@dataclass(frozen=True)
class Poll:
    """What one poll of an order read from Instock (no database involved)."""

    order_id: str
    status: OrderStatus | None  # None: Instock answered 404, or a record was bad
    tasks: list[Ordertask]
    bad: BadRead | None = None  # the status or an ordertask failed validation
    order: Order | None = None  # the order read again (a reception order found done)
    tasks_read: bool = True  # False: the status alone was read (the sweep's status read)


def known_terminal_tasks(store: Store, order_ids: Sequence[str]) -> dict[str, dict[str, Ordertask]]:
    """Stored ordertasks that are done/canceled: immutable, so never fetched again."""
    known: dict[str, dict[str, Ordertask]] = {}
    for row in terminal_ordertasks(store, order_ids):
        known.setdefault(row["order_id"], {})[row["ordertask_id"]] = Ordertask.model_validate(
            {**row, "lines": json.loads(row["lines"])}
        )
    return known


def poll_order(
    client: InstockClient,
    order_id: str,
    known: Mapping[str, Ordertask],
    *,
    reread: bool = False,
    status: OrderStatus | None = None,
    tasks: bool = True,
) -> Poll:
    """Status and ordertasks of one order, and with `reread` the order itself once it is
    done (attributes added during decanting); safe to run in a worker thread. `status`:
    the order's status already read this run (not read again). `tasks=False`: the
    status alone (its ordertasks are left as last polled)."""
    order = None
    try:
        status = status or client.order_status(order_id)
        if not tasks:
            return Poll(order_id, status, [], tasks_read=False)
        read = [known.get(t) or client.get_ordertask(t) for t in status.task_ids]
        if reread and status.order_status == "done":
            order = client.get_order(order_id)
    except BadRecordError as exc:
        return Poll(order_id, None, [], bad=BadRead.of(exc))
    except PermanentError as exc:
        if exc.status == 404:
            return Poll(order_id, None, [])
        raise
    return Poll(order_id, status, read, order=order)


FollowResult = tuple[str, "Followed | Refused | None"]


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
    statuses: Mapping[str, OrderStatus] | None = None,
    status_only: Collection[str] = (),
    record: Callable[[Store, list[FollowResult]], None] = lambda _s, _r: None,
) -> Iterator[FollowResult]:
    """Follow many orders: the polls run `workers` at a time (HTTP only); a chunk's results
    are stored on the caller's thread and connection, in order, in one transaction once
    the whole chunk is answered (with `record`, e.g. the caller's own mark of what it
    polled); then yielded, and `between` runs (e.g. a stop check, or waking the sender for
    what was just queued). `stub` is asked only for an order not mirrored yet.
    `statuses`: answers already read this run, used instead of reading them again;
    `status_only`: orders whose ordertasks are not read (`poll_order`'s `tasks=False`)."""
    statuses = statuses or {}
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="instock-poll") as pool:
        for start in range(0, len(order_ids), chunk):
            ids = list(order_ids[start : start + chunk])
            known = known_terminal_tasks(store, ids)
            rereads = reception_orders(store, ids)
            context = contextvars.copy_context()
            futures = [
                pool.submit(
                    context.copy().run,
                    partial(
                        poll_order,
                        reread=oid in rereads,
                        status=statuses.get(oid),
                        tasks=oid not in status_only,
                    ),
                    client,
                    oid,
                    known.get(oid, {}),
                )
                for oid in ids
            ]
            polls = [future.result() for future in futures]
            results: list[FollowResult] = []
            with store.transaction():
                for order_id, poll in zip(ids, polls, strict=True):
                    result = store_poll(
                        store, poll, on_poll=on_poll(order_id), stub=partial(stub, order_id)
                    )
                    results.append((order_id, result))
                record(store, results)
            yield from results
            between()


@dataclass(frozen=True)
class MovesWindow:
    """The closed window of Instock moves to read: [start, end], whole seconds."""

    start: datetime
    end: datetime


def moves_window(read_until: str | None, now: datetime, overlap: float) -> MovesWindow:
    """From `overlap` before where the last read ended (a move listed late, stamped before
    it, is still seen) to now; the first read (`read_until` None) looks `overlap` back."""
    end = now.replace(microsecond=0)
    since = parse_iso(read_until) if read_until else end
    return MovesWindow(min(since, end) - timedelta(seconds=overlap), end)


def newest_moves(moves: Iterable[tuple[object, object]]) -> dict[str, str]:
    """(order_id, move_timestamp) pairs -> the newest move per order id, as UTC ISO text
    (comparable as text); moves without an order id are no order's progress."""
    newest: dict[str, str] = {}
    seen: dict[str, str | None] = {}  # stamp as listed -> as UTC ISO text (a burst shares few)
    for order_id, stamp in moves:
        if not order_id or not isinstance(order_id, str) or not isinstance(stamp, str):
            continue  # a bad move is instock.moves' reject; here it is no one's progress
        if stamp not in seen:
            try:
                seen[stamp] = iso(parse_iso(stamp))
            except ValueError:
                seen[stamp] = None
        at = seen[stamp]
        if at is not None and at > newest.get(order_id, ""):
            newest[order_id] = at
    return newest


def read_moves(
    ctx: JobContext, client: InstockClient, window: MovesWindow
) -> tuple[dict[str, str], bool]:
    """Read the moves of `window`, the largest pages the API allows: the newest move per
    order id, and whether the read was whole.

    A burst of picks is thousands of moves a minute, and each read repeats the overlap.
    A read that reaches the walk's page ceiling is cut there: the moves read (the newest:
    the list is newest first) still say which orders to poll now, since a move only says
    "poll this order"; the caller keeps its checkpoint, so the next read covers the whole
    window again under the higher ceiling the cut walk left. The pagination alert opens
    as for a failed walk."""
    pairs: list[tuple[object, object]] = []
    whole = True
    try:
        for page in client.move_pages(window.start, window.end, page_size=PAGE_MAX):
            pairs.extend(
                (m.get("order_id"), m.get("move_timestamp"))
                for m in page.items
                if isinstance(m, dict)
            )
            ctx.check_stop()
    except PaginationError as exc:
        if exc.code != "page_ceiling":
            raise
        whole = False
        if not ctx.dry_run:  # as for a failed walk: resolved by the next whole one
            ctx.store.open_alert(exc.alert_kind, str(exc), subject=exc.subject)
        ctx.counts["moves_read_cut"] += 1
        ctx.warnings.append({"moves_read_cut": str(exc), "moves_read": len(pairs)})
        ctx.log.warning("moves_read_cut", error=str(exc), moves_read=len(pairs))
    ctx.counts["moves_read"] += len(pairs)
    return newest_moves(pairs), whole


def sweep_before(now: datetime, interval: float) -> str:
    """The sweep polls orders last polled before this."""
    return iso(now - timedelta(seconds=interval))


def since_previous_run(ctx: JobContext, now: datetime) -> float | None:
    """Seconds since this job's previous run started (None: none recorded), for the
    sweep's pacing (`sweep_quota`)."""
    started = queries.previous_run_started(ctx.store, ctx.job, ctx.run_id)
    return (now - parse_iso(started)).total_seconds() if started else None


def sweep_quota(open_orders: int, since_last_run: float | None, interval: float, limit: int) -> int:
    """How many orders this run sweeps: the open orders' share of the time since the
    previous run (each open order once per `interval`), at least one, at most `limit`.

    Orders created or polled together fall due together; sweeping them `limit` at a time
    would send the sweep's requests in waves, one interval apart. Paced, a site with few
    open orders sweeps a few each run and one with many runs at the bound, as before; over
    an interval the quota adds up to every open order, so none waits longer on average.
    With no previous run known the bound applies."""
    if open_orders <= 0:
        return 0
    if since_last_run is None or since_last_run >= interval:
        return min(limit, open_orders)
    share = math.ceil(open_orders * max(since_last_run, 0.0) / interval)
    return max(1, min(limit, share))


TERMINAL = ("done", "canceled")  # Instock order statuses after which nothing more is picked


@dataclass(frozen=True)
class SweepRead:
    """The sweep's status reads, by what each answer asks for (`split_by_status`); the
    ids are Instock order ids. The unchanged are the caller's to mark polled."""

    statuses: dict[str, OrderStatus]  # the usable answers, not to be read again
    unchanged: list[str]
    status_only: list[str]
    whole: list[str]


def sweep_statuses(
    ctx: JobContext, client: InstockClient, order_ids: Sequence[str], workers: int
) -> SweepRead:
    """Read the status alone of each swept order, `workers` at a time, and split them
    against what their last poll stored; counted as `swept_unchanged` and
    `swept_status_only`. An answer that cannot be compared (a 404, a bad record) is
    None: the whole poll then records which."""
    if not order_ids:
        return SweepRead({}, [], [], [])
    with ThreadPoolExecutor(workers, thread_name_prefix="instock-sweep") as pool:
        context = contextvars.copy_context()
        answers = dict(
            zip(
                order_ids,
                pool.map(lambda oid: context.copy().run(_status_or_none, client, oid), order_ids),
                strict=True,
            )
        )
    compared = {
        i: (a.order_status, json.dumps(a.task_ids)) if a else None for i, a in answers.items()
    }
    unchanged, status_only, whole = split_by_status(
        order_ids, followed_states(ctx.store, order_ids), compared
    )
    ctx.counts["swept_unchanged"] += len(unchanged)
    ctx.counts["swept_status_only"] += len(status_only)
    statuses = {i: a for i, a in answers.items() if a is not None}
    return SweepRead(statuses, unchanged, status_only, whole)


def _status_or_none(client: InstockClient, order_id: str) -> OrderStatus | None:
    try:
        return client.find_order_status(order_id)
    except BadRecordError:
        return None


def split_by_status(
    order_ids: Sequence[str],
    stored: Mapping[str, tuple[str, str]],
    answered: Mapping[str, tuple[str, str] | None],
) -> tuple[list[str], list[str], list[str]]:
    """Split swept orders by their status answer against what their last poll stored
    (`followed_states`: status and ordertask ids as JSON text; `answered` the same of each
    answer, None for one that cannot be compared): (unchanged, status only, whole).

    What the sweep looks for shows in the status: a cancellation, a turn to done without a
    move, new ordertasks. An order answering as last polled is unchanged. One not done or
    canceled, never polled or changed, has its status recorded from this answer with its
    ordertasks left unread: its picks write moves (read each run), so nothing was picked
    that a move has not announced, and reading its open ordertasks (most of a poll's
    requests) would find nothing to report. An order answering done or canceled gets the
    whole poll (its ordertasks give the final totals), as does one without a usable answer
    or stored done or canceled and still followed here."""
    unchanged: list[str] = []
    status_only: list[str] = []
    whole: list[str] = []
    for order_id in order_ids:
        answer = answered.get(order_id)
        known = stored.get(order_id)
        if answer is None or answer[0] in TERMINAL or (known and known[0] in TERMINAL):
            whole.append(order_id)
        elif answer == known:
            unchanged.append(order_id)
        else:
            status_only.append(order_id)
    return unchanged, status_only, whole


@dataclass(frozen=True)
class PollPlan:
    """What one poll decides: its result for the caller and the writes that record it
    (empty when nothing moved since the last poll, or for a 404)."""

    result: Followed | Refused | None
    plan: Plan


def plan_poll(
    poll: Poll,
    mirrored: Mapping[str, Any] | None,
    stub: Mapping[str, Any] | None,
    now: str,
) -> PollPlan:
    """Compare one poll with the order's mirror row (`mirrored`: order_id, kind, lines,
    order_status, fulfilled, as stored; None when not mirrored) and decide what to write.

    A bad status or ordertask is that record's reject (the order is polled again next
    time); a 404, or an order neither mirrored nor created by syncd (`stub`: its `lines`),
    is None. A change of status or of fulfilled quantities is recorded with one order
    event per line; the status's lines replace the listed ones (the list page can be
    stale: an order updated after it left the last page is never listed again). A poll
    that read the status alone (`tasks_read` False) records it and keeps the fulfilled
    quantities and ordertasks as stored.
    """
    order_id, status, tasks = poll.order_id, poll.status, poll.tasks
    if poll.bad is not None:
        record = poll.bad.record
        rejects = bad_record_rejects(
            f"instock:{poll.bad.kind}",
            [record],
            key_field=poll.bad.key_field,
            request_id=poll.bad.request_id,
        )
        return PollPlan(
            Refused(poll.bad.kind, record.key or order_id, record.field, record.reason),
            Plan(changes=(RefreshRejects(rejects, None),)),
        )
    if status is None or (mirrored is None and stub is None):
        return PollPlan(None, Plan())
    order: dict[str, Any] = (
        dict(mirrored)
        if mirrored is not None
        else {
            "order_id": order_id,
            "kind": "customer",
            "lines": json.dumps(stub["lines"]),  # type: ignore[index]
            "order_status": None,
            "fulfilled": "{}",
        }
    )
    # A status read alone says nothing of the ordertasks: what they fulfilled stays as stored.
    fulfilled = fulfilled_by_line(tasks) if poll.tasks_read else json.loads(order["fulfilled"])
    if status.lines:
        current = [
            {"line_id": ln.line_id, "article_id": ln.article_id, "qty": ln.qty.requested}
            for ln in status.lines
        ]
        order["lines"] = json.dumps(current)
    changed = status.order_status != order["order_status"] or fulfilled != json.loads(
        order["fulfilled"]
    )
    followed = Followed(status.order_status, fulfilled, changed)
    if mirrored is not None and not changed and order["lines"] == mirrored["lines"]:
        return PollPlan(followed, Plan())  # nothing moved since the last poll: no write
    changes: list[Change] = []
    if mirrored is None:
        changes.append(StubOrder(order_id, order["kind"], order["lines"], now))
    if poll.order is not None:
        changes.append(SetOrderAttributes(order_id, json.dumps(json_safe(poll.order.attributes))))
    changes.append(ResolveFixed(ORDERS_REJECT_SOURCE, "order_id", (order_id,)))
    if poll.tasks_read:  # an ordertask's reject is resolved by reading it, not its order
        changes.append(ResolveFixed("instock:ordertasks", "ordertask_id", tuple(status.task_ids)))
    changes += [
        RecordOrderStatus(
            order_id,
            status.order_status,
            status.timestamp,
            json.dumps(status.task_ids),
            json.dumps(fulfilled, sort_keys=True),
            order["lines"],
            now,
            status.answer_request_id,
        ),
    ]
    if tasks:
        changes.append(
            StoreOrdertasks(
                order_id,
                tuple(
                    OrdertaskRow(
                        task.ordertask_id,
                        task.ordertask_status,
                        json.dumps([ln.model_dump() for ln in task.lines]),
                        task.answer_request_id,
                    )
                    for task in tasks
                ),
                now,
            )
        )
    if changed:
        changes.append(
            AddOrderEvents(
                order_events(order, status.order_status, status.timestamp, fulfilled), now
            )
        )
    return PollPlan(followed, Plan(changes=tuple(changes)))


def order_events(
    order: Mapping[str, Any],
    status: str,
    status_at: str | None,
    fulfilled: Mapping[str, int],
) -> tuple[OrderEvent, ...]:
    """A status change as one event per line of the order (one line-less event for an
    order without lines)."""
    lines = json.loads(order["lines"] or "[]") or [
        {"line_id": None, "article_id": None, "qty": None}
    ]
    return tuple(
        OrderEvent(
            order["order_id"],
            order["kind"],
            status,
            status_at,
            ln["line_id"],
            ln["article_id"],
            ln["qty"],
            fulfilled.get(ln["line_id"], 0) if ln["line_id"] else 0,
        )
        for ln in lines
    )


def store_poll(
    store: Store,
    poll: Poll,
    *,
    on_poll: OnChange | None = None,
    stub: Callable[[], Mapping[str, Any] | None] = lambda: None,
) -> Followed | Refused | None:
    """Plan one poll against the mirror and apply it; None for a 404, Refused for a status
    or ordertask that failed validation (recorded as a reject).

    `on_poll` runs inside the same transaction when the poll wrote something, so whatever
    a caller records from this poll (e.g. DSOrder fulfilment intents) is durable together
    with the mirror row it was derived from. `stub` gives the lines of an order syncd
    created but has not listed yet, for its mirror row (asked only when there is none).
    """
    mirrored = None if poll.bad is not None else mirrored_order(store, poll.order_id)
    wanted = mirrored is None and poll.bad is None and poll.status is not None
    planned = plan_poll(poll, mirrored, stub() if wanted else None, iso())
    if not planned.plan:
        return planned.result
    # Inside a caller's transaction (a chunk of polls) that one is all or nothing already.
    with nullcontext() if store.db.conn.in_transaction else store.transaction():
        apply_plan(store, planned.plan)
        if on_poll is not None and isinstance(planned.result, Followed):
            on_poll(store, planned.result)
    return planned.result
