"""`dsorder.progress`: Instock progress -> DSOrder fulfilment totals -> close.

Every open DSOrder order with an Instock order is polled in Instock (status,
ordertasks). When the picked quantities change, a fulfil intent with the line
TOTALS (never increments) is recorded in the same transaction as the poll
result; when the Instock order is done or canceled, the final totals go with
`finished: true` and a close intent follows (same order key, so in that
order). The sender is woken at once, so the close request leaves within one
poll interval of the order becoming done. A canceled order closes with what
was picked, possibly 0; lines Instock never had are reported as 0, finished.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from syncd.clock import utcnow
from syncd.config import Schedule
from syncd.connectors.instock import InstockClient
from syncd.jobs.base import JobContext, JobSpec
from syncd.jobs.dsorder.progress_plan import TERMINAL, plan_progress
from syncd.jobs.shared.instock_follow import Followed, OnChange, Refused, follow_orders
from syncd.state import Store
from syncd.state.mirror import dsorder as orders
from syncd.state.mirror.dsorder import FollowedOrder, StoredLine
from syncd.state.plan import apply_plan

__all__ = ["SPEC", "TERMINAL", "Options", "run"]


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    follow_limit: int = Field(5000, ge=1, description="open orders polled per run at most")
    workers: int = Field(4, ge=1, le=32, description="Instock polls in flight at once")
    chunk: int = Field(16, ge=1, le=1000, description="orders stored between sender wake-ups")


def run(ctx: JobContext) -> None:
    options: Options = ctx.options
    store = ctx.store
    following = orders.orders_to_follow(store, options.follow_limit)
    # A refused create (see its reject) leaves the order open in DSOrder until an
    # operator retries or drops that reject; a queued one is still in the outbox.
    ctx.counts["create_refused"] += sum(o.sync_status == "refused" for o in following)
    ready = {o.instock_order_id: o for o in following if o.sync_status == "accepted"}
    if not ready:
        return
    lines = {o.order_id: orders.order_lines(store, o.order_id) for o in ready.values()}
    queued_before = [0]

    def wake_if_queued() -> None:
        # Closes leave as soon as their chunk is stored, not at the end of the pass.
        ctx.check_stop()
        if ctx.counts["queued"] > queued_before[0]:
            queued_before[0] = ctx.counts["queued"]
            ctx.wake_sender()

    def on_poll(instock_id: str) -> OnChange:
        order = ready[instock_id]
        return lambda s, f: _on_poll(ctx, s, order, lines[order.order_id], f)

    def stub(instock_id: str) -> dict[str, Any]:
        return {
            "lines": [
                {
                    "line_id": ln.instock_line_id,
                    "article_id": ln.instock_article_id,
                    "qty": ln.instock_qty or ln.quantity,
                }
                for ln in lines[ready[instock_id].order_id]
                if ln.status == "ok"
            ]
        }

    with InstockClient(ctx.settings.connectors.instock) as client:
        client.check_site()  # never report another environment's picks to DSOrder
        for instock_id, followed in follow_orders(
            store,
            client,
            list(ready),
            workers=options.workers,
            chunk=options.chunk,
            on_poll=on_poll,
            stub=stub,
            between=wake_if_queued,
        ):
            ctx.counts["followed"] += 1
            if isinstance(followed, Refused):  # a reject says what; polled again next run
                ctx.log.warning(
                    "instock_order_record_rejected",
                    order_id=ready[instock_id].order_id,
                    instock_order_id=instock_id,
                    **followed.log_fields(),
                )
            elif followed is None:
                ctx.log.warning(
                    "instock_order_missing",
                    order_id=ready[instock_id].order_id,
                    instock_order_id=instock_id,
                )
    wake_if_queued()


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
