"""`instock.orders`: host customer orders -> Instock, Instock order status -> host.

Three steps per run, each durable before the next. Each step reads plain data, a pure
planner decides (`plan_host_orders`, `plan_order_page`, `plan_poll` in
`syncd.jobs.shared.instock_follow`, `plan_order_status_file`) and `apply_plan` writes
the result in one transaction; the mirror tables change only through
`syncd.state.mirror.instock`.

1. Push: host orders (inbox feed `orders`) are planned against
   `instock_order_sync` and the mirror by `plan_host_order`: create new
   ones (the order id is the natural key; "already exists" after a crash counts
   as done), update changed ones while Instock still has them `registered`,
   cancel cancelled ones while `registered`; anything else is a reject with
   the reason.
2. Mirror: the orders list (all kinds). The document does not say in which
   order it lists orders, so syncd assumes none: each run reads the tail from
   the cursor of the last page seen (new orders appended at the end), and the
   head until a page holds no order it does not know (new orders first), and
   every `full_scan_interval` the whole list (any other order).
3. Follow: the open orders (not yet `done`/`canceled`, not the DSOrder loop's) are
   polled for status and ordertasks, every one each run (`follow = "all"`, the
   default: a change that writes no move, such as Instock cancelling for short stock,
   reaches the host at the next run), or with `follow = "moves"` when the Instock moves
   stream shows them moving (moves carry `order_id`), when never polled, when Instock
   accepted syncd's update or cancel since, and by a paced slow sweep of the longest
   unpolled (`sweep_interval`; a status read, the ordertasks only of an order found done
   or canceled: `sweep_statuses`): the requests grow with what changed, not with the
   open orders. A change of status or of fulfilled quantities is
   recorded as order events in the same transaction, and the events become one host
   outbox file per run. A reception order found done is read again (retrieve
   order): attributes added during decanting (e.g. the ASN) reach the mirror,
   and every `order_status` row carries its order's attributes.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from syncd.clock import iso, parse_iso, utcnow
from syncd.config import Duration, Schedule
from syncd.connectors.instock import (
    ORDER_ID_RE,
    BadRecord,
    InstockClient,
    Order,
    OrderStatus,
    Page,
    check_records,
)
from syncd.errors import PermanentError
from syncd.jobs.base import JobContext, JobSpec, take_retried_rejects
from syncd.jobs.shared.instock_follow import (
    ORDERS_REJECT_SOURCE,
    Refused,
    follow_orders,
    moves_window,
    read_moves,
    since_previous_run,
    sweep_before,
    sweep_quota,
    sweep_statuses,
)
from syncd.jobs.shared.instock_records import RefreshRejects, ResolveFixed, bad_record_rejects
from syncd.jsontext import canonical, content_hash, json_safe, text_hash
from syncd.send.host import host_file_intent, host_format
from syncd.send.instock import DESTINATION
from syncd.state import NewIntent, NewReject, Store
from syncd.state.mirror.instock import (
    DropOrderEvents,
    ForgetRefusedHostOrder,
    HostOrderMark,
    ListedOrder,
    MarkHostOrders,
    MarkOrdersPolled,
    MirrorOrders,
    RecordOrderMoves,
    host_order_lines,
    host_orders_to_sweep,
    host_orders_with_sync,
    known_order_ids,
    moved_host_orders_due,
    open_host_side_count,
    open_host_side_orders,
    pending_order_events,
)
from syncd.state.plan import Plan, apply_plan
from syncd.state.windows import RecordWindow

CURSOR_STREAM = "instock.orders.cursor"
FULL_SCAN_STREAM = "instock.orders.full_scan"  # when the whole list was last read
MOVES_READ = "instock.orders.moves_read"  # checkpoint: where the last moves read ended
LEDGER_STREAM = "instock.orders"  # the orders list walk in the window ledger
REJECT_SOURCE = ORDERS_REJECT_SOURCE


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    push_host_orders: bool = Field(True, description="create/update/cancel host orders")
    follow: Literal["all", "moves"] = Field(
        "all",
        description="poll every open order each run, or the orders that moved (and the sweep)",
    )
    follow_limit: int = Field(500, ge=1, description="open orders polled per run at most")
    sweep_interval: Duration = Field(
        600.0, gt=0, description="an order not polled for this long is swept (polled anyway)"
    )
    sweep_limit: int = Field(10, ge=1, le=10_000, description="orders swept per run at most")
    moves_overlap: Duration = Field(
        60.0, ge=0, le=86400, description="each moves read starts this long before the last"
    )
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
    field: str | None = dc_field(default=None, compare=False)  # the refused field, if one


@dataclass(frozen=True)
class HostOrder:
    """A host order as planned: its Instock payload, what syncd pushed of it (None: never)
    and its status in Instock's mirror (None: not listed yet)."""

    order_id: str
    status: str  # the host's: open, cancelled
    payload: dict[str, Any]
    sync: OrderSync | None
    instock_status: str | None


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
        return Action(
            "refuse", f"order_id {order_id!r} must be 1..128 of [a-zA-Z0-9_+.:-]", "order_id"
        )
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


@dataclass(frozen=True)
class PushPlan:
    plan: Plan
    actions: Counter[str]  # how many orders got each action kind


def plan_host_orders(orders: Sequence[HostOrder], run_id: str, now: str) -> PushPlan:
    """One batch of host orders: the sync marks, the create/update/cancel intents (key
    `order:<id>`, in host order) and a reject for each order that cannot be pushed."""
    actions: Counter[str] = Counter()
    intents: list[NewIntent] = []
    rejects: list[NewReject] = []
    marks: list[HostOrderMark] = []
    for order in orders:
        order_id, payload, sync = order.order_id, order.payload, order.sync
        digest = content_hash(payload)
        action = plan_host_order(order.status, digest, sync, order.instock_status, order_id)
        actions[f"orders_{action.kind}"] += 1
        pushed = sync.pushed_hash if sync else None
        match action.kind:
            case "skip":
                continue
            case "create" | "update":
                marks.append(HostOrderMark(order_id, digest, action.kind, "queued"))
                intents.append(
                    NewIntent(
                        DESTINATION,
                        f"orders.{action.kind}",
                        f"order:{order_id}",
                        # With the run id, content that comes back (A -> B -> A -> B)
                        # is a new intent, not a duplicate key that is dropped.
                        f"order:{order_id}:{action.kind}:{digest}:{run_id}",
                        {"order": payload},
                    )
                )
            case "cancel":
                marks.append(HostOrderMark(order_id, pushed, "cancel", "queued"))
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
                marks.append(HostOrderMark(order_id, pushed, "cancel", "accepted"))
            case "refuse":
                kind = "cancel" if order.status == "cancelled" else "update"
                marks.append(HostOrderMark(order_id, digest, kind, "refused", action.reason))
                rejects.append(
                    NewReject(
                        REJECT_SOURCE,
                        f"order {order_id}",
                        action.reason,
                        field=action.field,
                        payload=payload,
                    )
                )
    if not marks:
        return PushPlan(Plan(), actions)
    plan = Plan(
        intents=tuple(intents),
        rejects=tuple(rejects),
        changes=(MarkHostOrders(tuple(marks), now),),
    )
    return PushPlan(plan, actions)


@dataclass(frozen=True)
class PagePlan:
    """One page of Instock's orders list: what to write, and how many orders it listed,
    stored, rejected, and did not know before."""

    plan: Plan
    listed: int
    stored: int
    rejected: int
    new: int


def plan_order_page(
    good: Sequence[Order],
    bad: Sequence[BadRecord],
    request_id: str | None,
    known: Collection[str],
    position: str | None,
    *,
    run_id: str,
    now: str,
    cursor_before: str | None = None,
    started_at: str | None = None,
    content: str | None = None,
) -> PagePlan:
    """Mirror a page's good orders and reject its bad ones (each with the field validation
    named; `check_records` splits a page), resolving the rejects of orders now read valid;
    with the tail cursor (`position`, None to leave it) and the page's window ledger row
    (the cursor it was read from, `cursor_before`; the hash of its records, `content`).
    `known`: which of the good orders the mirror has."""
    listed = tuple(
        ListedOrder(
            o.order_id,
            o.kind or "customer",
            o.placed_at,
            json.dumps(json_safe(o.attributes)),
            json.dumps(json_safe([ln.model_dump() for ln in o.lines])),
        )
        for o in good
    )
    ids = tuple(o.order_id for o in listed)
    rejects = bad_record_rejects(REJECT_SOURCE, bad, key_field="order_id", request_id=request_id)
    ledger = RecordWindow(
        LEDGER_STREAM,
        "instock.orders",
        run_id,
        "cursor",
        started_at or now,
        now,
        # A page that moves no checkpoint (the head) moved no cursor either.
        cursor_before=None if position is None else (cursor_before or ""),
        cursor_after=position,
        listed=len(good) + len(bad),
        stored=len(listed),
        rejected=len(rejects),
        content_hash=content,
        request_ids=(request_id,) if request_id else (),
    )
    plan = Plan(
        changes=(
            MirrorOrders(listed, now, request_id),
            RefreshRejects(rejects, run_id),
            ResolveFixed(REJECT_SOURCE, "order_id", ids),
            ledger,
        ),
        checkpoints=() if position is None else ((CURSOR_STREAM, position),),
    )
    new = len(ids) - len(set(ids) & set(known))
    return PagePlan(plan, len(good) + len(bad), len(listed), len(rejects), new)


def full_scan_due(last_full: str | None, interval: float, now: datetime) -> bool:
    """Whether this run reads the whole orders list (never read whole, or `interval`
    seconds since it was)."""
    return last_full is None or parse_iso(last_full) + timedelta(seconds=interval) <= now


def plan_order_status_file(events: Sequence[Mapping[str, Any]], fmt: Any, run_id: str) -> Plan:
    """Pending order events (rows of `pending_order_events`, oldest first) -> one host
    `order_status` file intent, and the events dropped with it."""
    if not events:
        return Plan()
    first, last = events[0]["id"], events[-1]["id"]
    rows = []
    for event in events:
        row = {k: v for k, v in event.items() if k != "id"}
        # The order's attributes as Instock has them now (e.g. a reception's ASN).
        row["attributes"] = json.loads(row["attributes"] or "{}")
        rows.append(row)
    intent = host_file_intent(
        "order_status",
        rows,
        fmt,
        # Event ids are reused once the table is emptied (no AUTOINCREMENT): the run id
        # keeps a later flush from colliding with an earlier key, which would drop its
        # file while the events are deleted.
        key=f"order_status:{run_id}:{first}-{last}",
    )
    return Plan(intents=(intent,), changes=(DropOrderEvents(last),))


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
        ForgetRefusedHostOrder(reject["reference"].removeprefix("order ")).apply(store)

    take_retried_rejects(ctx, REJECT_SOURCE, forget)


def _push_host_orders(ctx: JobContext) -> None:
    store = ctx.store
    _requeue_retried_rejects(ctx)
    for orders in _host_order_batches(store, 500):
        ctx.check_stop()
        planned = plan_host_orders(orders, ctx.run_id, iso())
        ctx.counts.update(planned.actions)
        if planned.plan:
            applied = apply_plan(store, planned.plan, run_id=ctx.run_id)
            ctx.counts["queued"] += applied.intents
            ctx.counts["rejected"] += applied.rejects


def _host_order_batches(store: Store, size: int) -> Iterator[list[HostOrder]]:
    """The host orders in id order, `size` at a time, read with their lines and sync rows."""
    last = ""
    while rows := host_orders_with_sync(store, last, size):
        last = rows[-1]["order_id"]
        lines = host_order_lines(store, [r["order_id"] for r in rows])
        yield [
            HostOrder(
                row["order_id"],
                row["status"],
                order_payload(row, lines.get(row["order_id"], [])),
                OrderSync(row["s_pushed_hash"], row["s_action"], row["s_status"])
                if row["s_action"]
                else None,
                row["m_status"],
            )
            for row in rows
        ]


# -- 2. mirror ---------------------------------------------------------------


def _mirror_orders(ctx: JobContext, client: InstockClient, options: Options) -> None:
    """Find new orders whatever the list order: head, tail, and now and then everything."""
    store = ctx.store
    now = utcnow()
    full = full_scan_due(store.get_checkpoint(FULL_SCAN_STREAM), options.full_scan_interval, now)
    if not full:
        _walk_head(ctx, client)
    if _walk_tail(ctx, client, "" if full else store.get_checkpoint(CURSOR_STREAM) or "") and full:
        apply_plan(store, Plan(checkpoints=((FULL_SCAN_STREAM, iso(now)),)), run_id=ctx.run_id)
        ctx.counts["orders_full_scans"] += 1


def _walk_head(ctx: JobContext, client: InstockClient) -> None:
    """From the top until a page holds no order the mirror lacks (newest-first lists)."""
    started = iso()
    for page in client.order_pages():
        new = _store_order_page(ctx, page, None, started=started)
        started = iso()
        ctx.check_stop()
        if not new:
            return


def _walk_tail(ctx: JobContext, client: InstockClient, cursor: str) -> bool:
    """From `cursor` to the end of the list (append-ordered lists; from "" the whole list);
    the cursor is kept with each page. True when the end was reached."""
    started = iso()
    try:
        for page in client.order_pages(start_cursor=cursor or None):
            # The last page is read again next run: new orders may be appended after it.
            position = page.next_cursor if page.has_more else cursor
            _store_order_page(ctx, page, position or "", cursor_before=cursor, started=started)
            started = iso()
            cursor = position or ""
            ctx.check_stop()
    except PermanentError as exc:
        if not cursor or exc.status != 400:
            raise
        ctx.log.warning("orders_cursor_rejected", error=str(exc))
        apply_plan(ctx.store, Plan(checkpoints=((CURSOR_STREAM, ""),)), run_id=ctx.run_id)
        return False
    return True


def _store_order_page(
    ctx: JobContext,
    page: Page,
    position: str | None,
    *,
    cursor_before: str | None = None,
    started: str | None = None,
) -> int:
    """Mirror one page in one transaction with the tail cursor (`position`, None to leave
    it) and its ledger row; returns how many orders were new."""
    store = ctx.store
    good, bad = check_records(page.items, Order, "order_id")
    content = text_hash(canonical(page.items))
    with store.transaction():
        known = known_order_ids(store, [o.order_id for o in good])
        planned = plan_order_page(
            good,
            bad,
            page.request_id,
            known,
            position,
            run_id=ctx.run_id,
            now=iso(),
            cursor_before=cursor_before,
            started_at=started,
            content=content,
        )
        apply_plan(store, planned.plan, run_id=ctx.run_id)
    ctx.counts["rejected"] += planned.rejected
    ctx.counts["pulled"] += planned.listed
    ctx.counts["stored"] += planned.stored
    return planned.new


# -- 3. follow ---------------------------------------------------------------


def _follow_open_orders(ctx: JobContext, client: InstockClient, options: Options) -> None:
    # Orders of the DSOrder loop are followed by dsorder.progress, at its own pace.
    store = ctx.store
    statuses: dict[str, OrderStatus] = {}
    status_only: set[str] = set()
    if options.follow == "all":
        due: list[tuple[str, str | None]] = [
            (i, None) for i in open_host_side_orders(store, options.follow_limit)
        ]
    else:
        _read_moves(ctx, client, options)
        moved = moved_host_orders_due(store, options.follow_limit)
        now = utcnow()
        quota = sweep_quota(
            open_host_side_count(store),
            since_previous_run(ctx, now),
            options.sweep_interval,
            options.sweep_limit,
        )
        chosen = {order_id for order_id, _ in moved}
        swept = [
            o
            for o in host_orders_to_sweep(store, sweep_before(now, options.sweep_interval), quota)
            if o[0] not in chosen
        ]
        statuses, status_only, unchanged = _sweep(ctx, client, swept)
        due = moved + [o for o in swept if o[0] not in unchanged]
        ctx.counts["moved"] += len(moved)
        ctx.counts["swept"] += len(swept)
    moved_at = dict(due)
    polled: list[tuple[str, str | None]] = []

    def after_chunk() -> None:
        if polled and options.follow == "moves":
            with store.transaction():
                MarkOrdersPolled(tuple(polled), iso()).apply(store)
        polled.clear()
        ctx.check_stop()

    for order_id, followed in follow_orders(
        store,
        client,
        list(moved_at),
        between=after_chunk,
        statuses=statuses,
        status_only=status_only,
    ):
        if isinstance(followed, Refused):  # a reject says what; polled again next run
            ctx.counts["rejected"] += 1
            ctx.log.warning("order_record_rejected", order_id=order_id, **followed.log_fields())
            continue
        polled.append((order_id, moved_at[order_id]))
        if followed is None:
            ctx.log.warning("order_vanished", order_id=order_id)
            continue
        ctx.counts["followed"] += 1
        ctx.counts["status_changes"] += int(followed.changed)


def _sweep(
    ctx: JobContext, client: InstockClient, swept: list[tuple[str, str | None]]
) -> tuple[dict[str, OrderStatus], set[str], set[str]]:
    """Read only the status of each swept order (`sweep_statuses`): an order as last
    polled is marked polled here. Returns the answers read, the orders whose answer is
    recorded without reading their ordertasks, and the unchanged ones."""
    moved_at = dict(swept)
    read = sweep_statuses(ctx, client, list(moved_at), 4)
    if read.unchanged:
        with ctx.store.transaction():
            marks = tuple((order_id, moved_at[order_id]) for order_id in read.unchanged)
            MarkOrdersPolled(marks, iso()).apply(ctx.store)
    return read.statuses, set(read.status_only), set(read.unchanged)


def _read_moves(ctx: JobContext, client: InstockClient, options: Options) -> None:
    """Read the Instock moves since the last read and record which orders moved, with the
    read's checkpoint, in one transaction (a crash reads the same window again); a read
    cut at the page ceiling records what it read and leaves the checkpoint."""
    window = moves_window(ctx.store.get_checkpoint(MOVES_READ), utcnow(), options.moves_overlap)
    newest, whole = read_moves(ctx, client, window)
    with ctx.store.transaction():
        if newest:
            RecordOrderMoves(tuple(sorted(newest.items()))).apply(ctx.store)
        if whole:
            ctx.store.set_checkpoint(MOVES_READ, iso(window.end), run_id=ctx.run_id)


def _flush_events(ctx: JobContext) -> None:
    """Pending order events become one host `order-status` file, atomically."""
    store = ctx.store
    with store.transaction():
        events = pending_order_events(store)
        plan = plan_order_status_file(events, host_format(ctx.settings, "order_status"), ctx.run_id)
        if not plan:
            return
        applied = apply_plan(store, plan, run_id=ctx.run_id)
    ctx.counts["queued"] += applied.intents
    ctx.counts["events"] += len(events)


SPEC = JobSpec(
    name="instock.orders",
    run=run,
    description="Push host orders to Instock; mirror Instock orders; report status to host",
    default_schedule=Schedule(interval=120),
    connectors=("instock",),
    options_model=Options,
)
