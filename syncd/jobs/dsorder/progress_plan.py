"""dsorder.progress's decisions (pure): which orders to poll this run (those whose Instock
order moved since their last poll, then the slow sweep), and after each poll, as a `Plan`,
the line totals when they changed since last queued, then the close once Instock is done
or canceled. Totals come from `syncd.jobs.shared.dsorder_plan.fulfil_report`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from syncd.clock import iso
from syncd.jobs.shared.dsorder_plan import fulfil_report, report_changed
from syncd.jobs.shared.instock_follow import (
    TERMINAL,  # Instock order statuses after which the order is closed
    MovesWindow,
    moves_window,
    newest_moves,
    sweep_before,
    sweep_quota,
)
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


def polls_due(
    moved: Sequence[FollowedOrder], swept: Sequence[FollowedOrder]
) -> list[FollowedOrder]:
    """The orders to poll this run: every moved one, then the sweep's not already among them."""
    chosen = {o.order_id for o in moved}
    return [*moved, *(o for o in swept if o.order_id not in chosen)]


def catch_up_next(moved: int, took: float, interval: float | None) -> bool:
    """After a pass: run the next at once (not at the next tick) when it polled orders
    that moved and outlasted the job's interval, so the ticks it overran would have found
    more moved orders waiting (a burst of picks); never for a cron schedule."""
    return moved > 0 and interval is not None and took >= interval


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
    report = fulfil_report([vars(ln) for ln in lines], fulfilled, terminal)  # flat: no copy
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


# The moves and sweep pieces live in syncd.jobs.shared.instock_follow (instock.orders
# follows the same way); dsorder.progress names them from here.
__all__ = [
    "TERMINAL",
    "MovesWindow",
    "ProgressDecision",
    "moves_window",
    "newest_moves",
    "plan_progress",
    "polls_due",
    "sweep_before",
    "sweep_quota",
]
