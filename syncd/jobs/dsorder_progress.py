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

from syncd.clock import iso
from syncd.config import Schedule
from syncd.connectors.instock import InstockClient
from syncd.jobs.base import JobContext, JobSpec
from syncd.jobs.shared.dsorder_plan import ReportLine, fulfil_report, report_changed
from syncd.jobs.shared.instock_follow import Followed, OnChange, Refused, follow_orders
from syncd.jsontext import canonical_spaced, text_hash
from syncd.send.dsorder import DESTINATION as DSORDER
from syncd.state import NewIntent, Store

TERMINAL = ("done", "canceled")


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    follow_limit: int = Field(5000, ge=1, description="open orders polled per run at most")
    workers: int = Field(4, ge=1, le=32, description="Instock polls in flight at once")
    chunk: int = Field(16, ge=1, le=1000, description="orders stored between sender wake-ups")


def run(ctx: JobContext) -> None:
    options: Options = ctx.options
    store = ctx.store
    # Orders Instock accepted first, polled longest ago first (a poll refreshes the mirror
    # row's updated_at; never polled sorts first): with more open orders than
    # `follow_limit`, every order gets its turn and queued creates take no one's place.
    orders = store.query(
        "SELECT d.order_id, d.instock_order_id, s.status AS sync_status FROM dsorder_orders d "
        "LEFT JOIN instock_order_sync s ON s.order_id = d.instock_order_id "
        "LEFT JOIN instock_orders m ON m.order_id = d.instock_order_id "
        "WHERE d.state = 'created' "
        "ORDER BY s.status IS NOT 'accepted', m.updated_at, d.updated_at, d.order_id LIMIT ?",
        [options.follow_limit],
    )
    # A refused create (see its reject) leaves the order open in DSOrder until an
    # operator retries or drops that reject; a queued one is still in the outbox.
    ctx.counts["create_refused"] += sum(o["sync_status"] == "refused" for o in orders)
    ready = {o["instock_order_id"]: o for o in orders if o["sync_status"] == "accepted"}
    if not ready:
        return
    lines = {o["order_id"]: _lines(store, o["order_id"]) for o in ready.values()}
    queued_before = [0]

    def wake_if_queued() -> None:
        # Closes leave as soon as their chunk is stored, not at the end of the pass.
        ctx.check_stop()
        if ctx.counts["queued"] > queued_before[0]:
            queued_before[0] = ctx.counts["queued"]
            ctx.wake_sender()

    def on_poll(instock_id: str) -> OnChange:
        order = ready[instock_id]
        return lambda s, f: _on_poll(ctx, s, order, lines[order["order_id"]], f)

    def stub(instock_id: str) -> dict[str, Any]:
        return {
            "lines": [
                {
                    "line_id": ln["instock_line_id"],
                    "article_id": ln["instock_article_id"],
                    "qty": ln["instock_qty"] or ln["quantity"],
                }
                for ln in lines[ready[instock_id]["order_id"]]
                if ln["status"] == "ok"
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
                    order_id=ready[instock_id]["order_id"],
                    instock_order_id=instock_id,
                    **followed.log_fields(),
                )
            elif followed is None:
                ctx.log.warning(
                    "instock_order_missing",
                    order_id=ready[instock_id]["order_id"],
                    instock_order_id=instock_id,
                )
    wake_if_queued()


def _lines(store: Store, order_id: str) -> list[dict[str, Any]]:
    return store.query(
        "SELECT line_number, article_id, quantity, instock_line_id, instock_article_id, status, "
        "unit_factor, instock_qty, reported_qty, reported_finished FROM dsorder_lines "
        "WHERE order_id = ? "
        "ORDER BY line_number",
        [order_id],
    )


def _on_poll(
    ctx: JobContext,
    store: Store,
    order: dict[str, Any],
    lines: list[dict[str, Any]],
    followed: Followed,
) -> None:
    """Inside the poll's transaction: queue totals (and the close) when they changed."""
    terminal = followed.status in TERMINAL
    report = fulfil_report(lines, followed.fulfilled, terminal)
    previous = {
        ln["line_number"]: (ln["reported_qty"], bool(ln["reported_finished"])) for ln in lines
    }
    if report_changed(report, previous):
        _queue_fulfil(ctx, store, order["order_id"], report)
    if terminal:
        _queue_close(ctx, store, order["order_id"], followed.status)


def _queue_fulfil(ctx: JobContext, store: Store, order_id: str, report: list[ReportLine]) -> None:
    rows = [
        {
            "line_number": r.line_number,
            "article_id": r.article_id,
            "quantity": str(r.quantity),
            "finished": r.finished,
        }
        for r in report
    ]
    digest = text_hash(canonical_spaced(rows), 24)
    ctx.counts["queued"] += store.add_intents(
        [
            NewIntent(
                DSORDER,
                "fulfill",
                f"order:{order_id}",
                f"fulfill:{order_id}:{digest}",
                {"order_id": order_id, "order_date": _order_date(store, order_id), "lines": rows},
            )
        ],
        run_id=ctx.run_id,
    )
    store.db.conn.executemany(
        "UPDATE dsorder_lines SET reported_qty = ?, reported_finished = ? "
        "WHERE order_id = ? AND line_number = ?",
        [(str(r.quantity), int(r.finished), order_id, r.line_number) for r in report],
    )
    ctx.counts["fulfil_reports"] += 1


def _order_date(store: Store, order_id: str) -> str | None:
    """When the order was submitted: the sender's read-back needs its day."""
    found: str | None = store.scalar(
        "SELECT order_date FROM dsorder_orders WHERE order_id = ?", [order_id]
    )
    return found


def _queue_close(ctx: JobContext, store: Store, order_id: str, instock_status: str) -> None:
    ctx.counts["queued"] += store.add_intents(
        [
            NewIntent(
                DSORDER,
                "close",
                f"order:{order_id}",
                f"close:{order_id}",
                {
                    "order_id": order_id,
                    "order_date": _order_date(store, order_id),
                    "instock_status": instock_status,
                },
            )
        ],
        run_id=ctx.run_id,
    )
    store.db.execute(
        "UPDATE dsorder_orders SET state = 'closing', updated_at = ? WHERE order_id = ?",
        [iso(), order_id],
    )
    ctx.counts["closing"] += 1


SPEC = JobSpec(
    name="dsorder.progress",
    run=run,
    description="Follow Instock progress of DSOrder orders; report totals and close",
    default_schedule=Schedule(interval=10),
    connectors=("dsorder", "instock"),
    options_model=Options,
)
