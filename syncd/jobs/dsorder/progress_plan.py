"""dsorder.progress's decision after each poll of an order's Instock order, as a `Plan`
(pure): the line totals when they changed since last queued, then the close once Instock
is done or canceled. Totals come from `syncd.jobs.shared.dsorder_plan.fulfil_report`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

from syncd.clock import iso
from syncd.jobs.shared.dsorder_plan import fulfil_report, report_changed
from syncd.jsontext import canonical_spaced, text_hash
from syncd.send.dsorder import DESTINATION as DSORDER
from syncd.state import NewIntent
from syncd.state.mirror.dsorder import (
    FollowedOrder,
    MarkClosing,
    RecordReported,
    ReportedLine,
    StoredLine,
)
from syncd.state.plan import Plan

TERMINAL = ("done", "canceled")  # Instock order statuses after which the order is closed


@dataclass(frozen=True)
class ProgressDecision:
    plan: Plan
    fulfil: bool  # new totals queued
    close: bool  # the close queued (the Instock order is done or canceled)


def plan_progress(
    order: FollowedOrder,
    lines: Sequence[StoredLine],
    instock_status: str,
    fulfilled: Mapping[str, int],
    now: datetime,
) -> ProgressDecision:
    """After a poll of the order's Instock order: the line totals when they differ from
    what was last queued (all finished once Instock is done or canceled), then the close."""
    order_id = order.order_id
    terminal = instock_status in TERMINAL
    report = fulfil_report([asdict(ln) for ln in lines], fulfilled, terminal)
    previous = {ln.line_number: (ln.reported_qty, ln.reported_finished) for ln in lines}
    plan = Plan()
    changed = report_changed(report, previous)
    if changed:
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
        plan += Plan(
            intents=(
                NewIntent(
                    DSORDER,
                    "fulfill",
                    f"order:{order_id}",
                    f"fulfill:{order_id}:{digest}",
                    {"order_id": order_id, "order_date": order.order_date, "lines": rows},
                ),
            ),
            changes=(
                RecordReported(
                    order_id,
                    tuple(ReportedLine(r.line_number, str(r.quantity), r.finished) for r in report),
                ),
            ),
        )
    if terminal:
        close = {
            "order_id": order_id,
            "order_date": order.order_date,
            "instock_status": instock_status,
        }
        plan += Plan(
            intents=(NewIntent(DSORDER, "close", f"order:{order_id}", f"close:{order_id}", close),),
            changes=(MarkClosing(order_id, iso(now)),),
        )
    return ProgressDecision(plan, changed, terminal)
