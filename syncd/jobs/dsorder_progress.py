"""`dsorder.progress`: Instock progress -> DSOrder fulfilment totals -> close.

An open DSOrder order's Instock order is polled (status, ordertasks) when it moved: each
run reads the Instock moves stream since the last read (moves carry `order_id`) and polls
only the orders that moved since their last poll, so the requests grow with what changed,
not with how many orders are open. A slow sweep polls, each run, at most `sweep_limit` of
the orders not polled for `sweep_interval`, oldest first, paced so that each run takes the
open orders' share of the time since the previous run (no waves of `sweep_limit` when many
orders fell due at once): what shows no move (a cancellation, a status change the moves
do not show, a move missed) is still seen. The sweep reads the status alone and the
ordertasks only of an order it finds done or canceled (`split_by_status`): an open order's
picks write moves, so its open ordertasks have nothing to report yet.
`follow = "all"` polls every open order each run instead (the cost grows with the open
orders), for a site whose moves carry no order id.

When the picked quantities change, a fulfil intent with the line TOTALS (never
increments) is recorded in the same transaction as the poll result; when the Instock
order is done or canceled, the final totals go with `finished: true` and a close intent
follows (same order key, so in that order). The sender is woken at once, so the close
request leaves within one poll interval of the order's move being read. A canceled order
closes with what was picked, possibly 0; lines Instock never had are reported as 0,
finished.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from syncd.clock import iso, utcnow
from syncd.config import Duration, Schedule
from syncd.connectors.instock import InstockClient, OrderStatus
from syncd.jobs.base import JobContext, JobSpec
from syncd.jobs.dsorder.progress_plan import (
    TERMINAL,
    catch_up_next,
    moves_window,
    plan_progress,
    polls_due,
    sweep_before,
    sweep_quota,
)
from syncd.jobs.shared.instock_follow import (
    Followed,
    FollowResult,
    OnChange,
    Refused,
    follow_orders,
    read_moves,
    since_previous_run,
    sweep_statuses,
)
from syncd.state import Store
from syncd.state.mirror import dsorder as orders
from syncd.state.mirror.dsorder import FollowedOrder, MarkPolled, RecordMoves, StoredLine
from syncd.state.plan import apply_plan

__all__ = ["MOVES_READ", "SPEC", "TERMINAL", "Options", "run"]

MOVES_READ = "dsorder.progress.moves_read"  # checkpoint: where the last moves read ended


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    follow: Literal["moves", "all"] = Field(
        "moves", description="poll the orders that moved (and the sweep), or every open order"
    )
    follow_limit: int = Field(5000, ge=1, description="orders polled per run at most")
    sweep_interval: Duration = Field(
        600.0, gt=0, description="an order not polled for this long is swept (polled anyway)"
    )
    sweep_limit: int = Field(10, ge=1, le=10_000, description="orders swept per run at most")
    moves_overlap: Duration = Field(
        60.0, ge=0, le=86400, description="each moves read starts this long before the last"
    )
    workers: int = Field(4, ge=1, le=32, description="Instock polls in flight at once")
    chunk: int = Field(16, ge=1, le=1000, description="orders stored between sender wake-ups")
    catch_up: int = Field(
        3,
        ge=0,
        le=100,
        description="passes run at once after a pass that outlasted the interval (a burst)",
    )


def run(ctx: JobContext) -> None:
    options: Options = ctx.options
    store = ctx.store
    with InstockClient(ctx.settings.connectors.instock) as client:
        client.check_site()  # never report another environment's picks to DSOrder
        if options.follow == "all":
            following = orders.orders_to_follow(store, options.follow_limit)
            # A refused create (see its reject) leaves the order open in DSOrder until an
            # operator retries or drops that reject; a queued one is still in the outbox.
            ctx.counts["create_refused"] += sum(o.sync_status == "refused" for o in following)
            due = [o for o in following if o.sync_status == "accepted"]
            _poll(ctx, client, due)
            return
        sweepable, refused = orders.create_counts(store)
        ctx.counts["create_refused"] += refused
        interval = SPEC.schedule(ctx.settings).interval
        for passes in range(options.catch_up + 1):
            if passes:
                ctx.check_stop()
                ctx.counts["catch_up_passes"] += 1
            started = time.monotonic()
            moved = _follow_moves(ctx, client, sweep_over=None if passes else sweepable)
            if not catch_up_next(moved, time.monotonic() - started, interval):
                break


def _follow_moves(ctx: JobContext, client: InstockClient, *, sweep_over: int | None) -> int:
    """One pass: read the moves since the last read, poll the orders that moved (and,
    with `sweep_over`, the open orders the sweep takes turns over, the slow sweep's);
    returns how many moved orders it polled."""
    options: Options = ctx.options
    store = ctx.store
    read_until = store.get_checkpoint(MOVES_READ)
    end, whole_read = _read_moves(ctx, client, read_until)
    if read_until is None:
        # No moves read before: what moved earlier is unknown, so everything is polled
        # once; the read is checkpointed only after that pass (and a whole read).
        following = orders.orders_to_follow(store, options.follow_limit)
        _poll(ctx, client, [o for o in following if o.sync_status == "accepted"])
        if whole_read:
            store.set_checkpoint(MOVES_READ, end, run_id=ctx.run_id)
        return 0
    moved = orders.moved_orders_due(store, options.follow_limit)
    swept: list[FollowedOrder] = []
    if sweep_over is not None:
        now = utcnow()
        quota = sweep_quota(
            sweep_over,
            since_previous_run(ctx, now),
            options.sweep_interval,
            options.sweep_limit,
        )
        moved_ids = {o.order_id for o in moved}
        swept = [
            o
            for o in orders.orders_to_sweep(store, sweep_before(now, options.sweep_interval), quota)
            if o.order_id not in moved_ids
        ]
    statuses, polled, status_only = _sweep(ctx, client, swept)
    ctx.counts["moved"] += len(moved)
    ctx.counts["swept"] += len(swept)
    _poll(ctx, client, polls_due(moved, polled), statuses, status_only)
    return len(moved)


def _sweep(
    ctx: JobContext, client: InstockClient, swept: list[FollowedOrder]
) -> tuple[dict[str, OrderStatus], list[FollowedOrder], set[str]]:
    """Read only the status of each swept order (`sweep_statuses`): an order as last
    polled is marked polled here; returned are the answers read, the orders to poll (whole,
    then those whose status answer is recorded alone) and the latter's Instock ids."""
    by_id = {o.instock_order_id: o for o in swept}
    read = sweep_statuses(ctx, client, list(by_id), ctx.options.workers)
    if read.unchanged:
        with ctx.store.transaction():
            marks = tuple((by_id[i].order_id, by_id[i].moved_at) for i in read.unchanged)
            MarkPolled(marks, iso()).apply(ctx.store)
    polled = [by_id[i] for i in (*read.whole, *read.status_only)]
    return read.statuses, polled, set(read.status_only)


def _read_moves(ctx: JobContext, client: InstockClient, read_until: str | None) -> tuple[str, bool]:
    """Read the moves since the last read and record which open orders moved; the
    checkpoint moves on in the same transaction (but not before the first full pass).
    Returns where the read ended and whether it was whole (a read cut at the page
    ceiling leaves the checkpoint: `read_moves`)."""
    window = moves_window(read_until, utcnow(), ctx.options.moves_overlap)
    newest, whole = read_moves(ctx, client, window)
    end = iso(window.end)
    with ctx.store.transaction():
        if newest:
            RecordMoves(tuple(sorted(newest.items()))).apply(ctx.store)
        if read_until is not None and whole:
            ctx.store.set_checkpoint(MOVES_READ, end, run_id=ctx.run_id)
    return end, whole


def _poll(
    ctx: JobContext,
    client: InstockClient,
    due: list[FollowedOrder],
    statuses: dict[str, OrderStatus] | None = None,
    status_only: Collection[str] = (),
) -> None:
    """Poll the chosen orders: each chunk's results stored in one transaction with the
    fulfil and close intents they decide and the chunk's orders marked polled, then the
    sender woken for what was queued. `status_only`: the Instock ids of those whose status
    answer (in `statuses`) is recorded without reading their ordertasks."""
    options: Options = ctx.options
    store = ctx.store
    if not due:
        return
    ready = {o.instock_order_id: o for o in due}
    position = {o.order_id: n for n, o in enumerate(due)}
    queued_before = [0]
    lines: dict[str, list[StoredLine]] = {}

    def lines_of(order_id: str) -> list[StoredLine]:
        """An order's lines, read with those of the orders polled after it in its chunk
        (one query a chunk, not one an order)."""
        if order_id not in lines:
            lines.clear()
            at = position[order_id]
            ids = [o.order_id for o in due[at : at + options.chunk]]
            lines.update(orders.lines_of_orders(store, ids))
        return lines[order_id]

    def mark_polled(store: Store, results: list[FollowResult]) -> None:
        # Inside the chunk's transaction; a refused record (see its reject) is polled
        # again next run.
        polled = [
            (ready[instock_id].order_id, ready[instock_id].moved_at)
            for instock_id, followed in results
            if not isinstance(followed, Refused)
        ]
        if polled:
            MarkPolled(tuple(polled), iso()).apply(store)

    def after_chunk() -> None:
        # Closes leave as soon as their chunk is stored, not at the end of the pass.
        ctx.check_stop()
        if ctx.counts["queued"] > queued_before[0]:
            queued_before[0] = ctx.counts["queued"]
            ctx.wake_sender()

    def on_poll(instock_id: str) -> OnChange:
        order = ready[instock_id]
        return lambda s, f: _on_poll(ctx, s, order, lines_of(order.order_id), f)

    def stub(instock_id: str) -> dict[str, Any]:
        return {
            "lines": [
                {
                    "line_id": ln.instock_line_id,
                    "article_id": ln.instock_article_id,
                    "qty": ln.instock_qty or ln.quantity,
                }
                for ln in lines_of(ready[instock_id].order_id)
                if ln.status == "ok"
            ]
        }

    for instock_id, followed in follow_orders(
        store,
        client,
        list(ready),
        workers=options.workers,
        chunk=options.chunk,
        on_poll=on_poll,
        stub=stub,
        between=after_chunk,
        record=mark_polled,
        statuses=statuses,
        status_only=status_only,
    ):
        ctx.counts["followed"] += 1
        order = ready[instock_id]
        if isinstance(followed, Refused):  # a reject says what; polled again next run
            ctx.log.warning(
                "instock_order_record_rejected",
                order_id=order.order_id,
                instock_order_id=instock_id,
                **followed.log_fields(),
            )
        elif followed is None:
            ctx.log.warning(
                "instock_order_missing", order_id=order.order_id, instock_order_id=instock_id
            )


def _on_poll(
    ctx: JobContext,
    store: Store,
    order: FollowedOrder,
    lines: list[StoredLine],
    followed: Followed,
) -> None:
    """Inside the poll's transaction: queue totals (and the close) when they changed."""
    decided = plan_progress(order, lines, followed.status, followed.fulfilled, utcnow())
    if not decided.plan:
        return
    ctx.counts["queued"] += apply_plan(store, decided.plan, run_id=ctx.run_id).intents
    if decided.fulfil:
        ctx.counts["fulfil_reports"] += 1
    if decided.close:
        ctx.counts["closing"] += 1


SPEC = JobSpec(
    name="dsorder.progress",
    run=run,
    description="Follow Instock progress of DSOrder orders; report totals and close",
    default_schedule=Schedule(interval=10),
    connectors=("dsorder", "instock"),
    options_model=Options,
)
