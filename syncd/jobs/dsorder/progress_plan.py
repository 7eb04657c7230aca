"""dsorder.progress's decisions (pure): which orders to poll this run (those whose Instock
order moved since their last poll, then the slow sweep), and after each poll, as a `Plan`,
the line totals when they changed since last queued, then the close once Instock is done
or canceled. Totals come from `syncd.jobs.shared.dsorder_plan.fulfil_report`."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from syncd.clock import iso, parse_iso
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
    for order_id, stamp in moves:
        if not order_id or not isinstance(order_id, str) or not isinstance(stamp, str):
            continue  # a bad move is instock.moves' reject; here it is no one's progress
        try:
            at = iso(parse_iso(stamp))
        except ValueError:
            continue
        if at > newest.get(order_id, ""):
            newest[order_id] = at
    return newest


def sweep_before(now: datetime, interval: float) -> str:
    """The sweep polls orders last polled before this."""
    return iso(now - timedelta(seconds=interval))


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


def sweep_unchanged(
    swept: Sequence[FollowedOrder],
    stored: Mapping[str, tuple[str, str]],
    answered: Mapping[str, tuple[str, str] | None],
) -> tuple[list[FollowedOrder], list[FollowedOrder]]:
    """Split the swept orders by their status answer: (unchanged, to poll whole).

    An order is unchanged when Instock answers the status and ordertask ids (JSON text)
    the last poll stored: its picks write moves, so what the sweep looks for (a
    cancellation, a turn to done without a move, new ordertasks) would show in the status.
    An order without a stored poll or without a usable answer (a bad record, a 404) gets
    the whole poll, which records the reject or the missing order; so does one stored as
    done or canceled and still open here (its close is decided by the whole poll)."""
    unchanged: list[FollowedOrder] = []
    whole: list[FollowedOrder] = []
    for order in swept:
        answer = answered.get(order.instock_order_id)
        known = stored.get(order.instock_order_id)
        same = answer is not None and answer == known and answer[0] not in TERMINAL
        (unchanged if same else whole).append(order)
    return unchanged, whole


def polls_due(
    moved: Sequence[FollowedOrder], swept: Sequence[FollowedOrder]
) -> list[FollowedOrder]:
    """The orders to poll this run: every moved one, then the sweep's not already among them."""
    chosen = {o.order_id for o in moved}
    return [*moved, *(o for o in swept if o.order_id not in chosen)]


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
