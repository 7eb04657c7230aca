"""dsorder.pull's decisions, as `Plan` values (pure: plain data in, no I/O).

- `plan_new_order`: an order seen for the first time -> its rows, and its Instock create
  or its hold with line rejects (`plan_lines` maps the lines and decides);
- `plan_replan`: a held order planned again (catalog changed, or a reject retried);
- `plan_release`: an operator's `syncd orders release` (round, partial, cancel);
- `plan_invalid_records`: records of DSOrder's list that are not valid orders;
- `plan_hold_alerts`, `midnight_gap_alert`: the alerts the pull keeps;
- `line_changes`, `plan_listed_again`: an order listed with other lines than it was taken
  with -> an alert for the operator (the order stays as taken);
- `catalog_entries`: the host catalog rows as line checks need them.

The writes to `dsorder_orders` / `dsorder_lines` are `Change` values of their owner,
`syncd.state.mirror.dsorder`; the line checks themselves are in
`syncd.jobs.shared.dsorder_plan`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Final, Literal

from syncd.clock import iso, parse_iso
from syncd.connectors.dsorder import DsOrder, Submitted
from syncd.errors import NotFoundError, RefusedError
from syncd.jobs.shared.dsorder_plan import (
    AttributeMap,
    CatalogEntry,
    IdMapping,
    LineCheck,
    OrderFacts,
    Policy,
    check_line,
    order_header,
    plan_order,
    unit_factor,
)
from syncd.logs import redactor
from syncd.send.dsorder import DESTINATION as DSORDER
from syncd.send.instock import DESTINATION as INSTOCK
from syncd.state import NewIntent, NewReject
from syncd.state.mirror.dsorder import (
    CatalogRow,
    HeldOrder,
    HoldOrder,
    InsertOrder,
    LineMapping,
    MapLines,
    MarkClosing,
    MarkCreated,
    MarkReleased,
    NewLine,
    RecordReported,
    Release,
    ReportedLine,
    StoredLine,
    StoredOrder,
)
from syncd.state.mirror.instock import QueueDSOrderCreate
from syncd.state.plan import AlertChange, OpenAlert, Plan, ResolveAlerts

REJECT_SOURCE = "dsorder:lines"  # a line (or an order id) Instock cannot take
ORDER_REJECT_SOURCE = "dsorder:orders"  # a record of DSOrder's list that is not a valid order
HELD_ALERT: Final = "dsorder_order_held"
ESCALATED_ALERT: Final = "dsorder_order_held_escalated"
MIDNIGHT_GAP_ALERT: Final = "dsorder_midnight_gap"
CHANGED_ALERT: Final = "dsorder_order_changed"


def catalog_entries(rows: Sequence[CatalogRow], conversion: str) -> dict[str, CatalogEntry]:
    """The host catalog by DSOrder article id, each with its unit factor (or why it has none
    usable) from the `conversion` attribute ("" : no conversion)."""
    catalog = {}
    for row in rows:
        factor, problem = unit_factor(row.factor, conversion) if conversion else (None, "")
        catalog[row.dsorder_article_id] = CatalogEntry(
            row.article_id, row.whole_units, row.serial_numbered, factor, problem
        )
    return catalog


@dataclass(frozen=True)
class PullRules:
    """What dsorder.pull's options say about turning a DSOrder order into an Instock one."""

    mapping: IdMapping = field(default_factory=IdMapping)
    attributes: AttributeMap = field(default_factory=AttributeMap)
    policy: Policy = "hold"


@dataclass(frozen=True)
class OpenReject:
    """An open (or retry-flagged) reject, as a planner needs it."""

    id: int
    reference: str
    reason: str


@dataclass(frozen=True)
class OrderDecision:
    """One order planned: the plan, and what it decided (for the log line and counts)."""

    plan: Plan
    order_id: str
    action: Literal["create", "hold"]
    reason: str = ""  # hold: why; create: the lines sent without (policy partial)
    instock_order_id: str | None = None
    lines: int = 0  # lines sent to Instock


def facts_of(order: StoredOrder) -> OrderFacts:
    return OrderFacts(
        order.order_id,
        order.store_id,
        parse_iso(order.order_date),
        parse_iso(order.delivery_date),
        parse_iso(order.shelf_life) if order.shelf_life else None,
    )


def plan_new_order(
    order: DsOrder,
    checks: Mapping[int, LineCheck],
    rules: PullRules,
    now: datetime,
    request_id: str | None = None,
) -> OrderDecision:
    """An order seen for the first time: stored with its lines (and `request_id`, of the
    list answer it came in), and in the same plan either its Instock create or its hold
    with rejects naming line, field and reason."""
    at = iso(now)
    instock_id = rules.mapping.instock_order_id(order.order_id)
    shelf_lives = [ln.min_purchase_shelf_life for ln in order.details]
    latest = max((s for s in shelf_lives if s is not None), default=None)
    insert = InsertOrder(
        order_id=order.order_id,
        supplier_id=order.supplier_id,
        store_id=order.store_id,
        order_date=iso(order.order_date),
        delivery_date=iso(order.delivery_date),
        xdock_delivery_date=iso(order.xdock_delivery_date) if order.xdock_delivery_date else None,
        supplier_schedule_title=order.supplier_schedule_title,
        raw=order.model_dump_json(),
        instock_order_id=instock_id,
        lines=tuple(
            NewLine(ln.line_number, ln.article_id, str(ln.quantity)) for ln in order.details
        ),
        at=at,
        request_id=request_id,
    )
    if instock_id is None:
        # No line can be sent under an id Instock refuses: the order is held as a whole.
        reason = (
            f"order id {order.order_id!r} maps to an id Instock refuses "
            f"(template {rules.mapping.order_template!r})"
        )
        return OrderDecision(
            Plan(
                changes=(insert, HoldOrder(order.order_id, reason, at)),
                rejects_once=(
                    NewReject(REJECT_SOURCE, f"order {order.order_id}", reason, field="order_id"),
                ),
            ),
            order.order_id,
            "hold",
            reason,
        )
    stored = StoredOrder(
        order.order_id,
        instock_id,
        "held",
        order.store_id,
        insert.order_date,
        insert.delivery_date,
        iso(latest) if latest is not None else None,
    )
    decided = plan_lines(stored, checks, rules, now)
    return replace(decided, plan=Plan(changes=(insert,)) + decided.plan)


def plan_lines(
    order: StoredOrder,
    checks: Mapping[int, LineCheck],
    rules: PullRules,
    now: datetime,
    policy: Policy | None = None,
) -> OrderDecision:
    """Map the order's lines, then create its Instock order or hold it (per `policy`,
    else the rules'). Every line Instock cannot take is a reject with its field."""
    instock_id = order.instock_order_id
    if instock_id is None:
        raise ValueError(f"order {order.order_id} has no Instock order id to plan lines for")
    at = iso(now)
    mapping = rules.mapping
    decided = plan_order(checks, policy or rules.policy)
    rejects = tuple(
        NewReject(REJECT_SOURCE, f"order {order.order_id} line {n}", c.reason, field=c.field)
        for n, c in sorted(checks.items())
        if not c.ok
    )
    mapped = MapLines(
        order.order_id,
        tuple(
            LineMapping(
                n,
                c.ok,
                c.reason or None,
                mapping.line_id(instock_id, n) if c.ok else None,
                c.instock_article_id,
                c.instock_qty if c.ok else None,
                str(c.unit_factor) if c.ok and c.unit_factor is not None else None,
            )
            for n, c in checks.items()
        ),
    )
    if decided.action == "hold":
        return OrderDecision(
            Plan(
                changes=(mapped, HoldOrder(order.order_id, decided.reason, at)),
                rejects_once=rejects,
            ),
            order.order_id,
            "hold",
            decided.reason,
            instock_id,
        )
    payload = {
        "order_id": instock_id,
        **order_header(facts_of(order), rules.attributes),
        "lines": [
            {
                "line_id": mapping.line_id(instock_id, n),
                "article_id": checks[n].instock_article_id,
                "qty": checks[n].instock_qty,
            }
            for n in decided.sendable
        ],
    }
    create = NewIntent(
        INSTOCK,
        "orders.create",
        f"order:{instock_id}",
        f"order:{instock_id}:create",
        {"order": payload},
    )
    return OrderDecision(
        Plan(
            intents=(create,),
            rejects_once=rejects,
            changes=(
                mapped,
                MarkCreated(order.order_id, decided.reason or None, at),
                QueueDSOrderCreate(instock_id, at),
            ),
        ),
        order.order_id,
        "create",
        decided.reason,
        instock_id,
        len(decided.sendable),
    )


def plan_replan(
    order: StoredOrder,
    checks: Mapping[int, LineCheck],
    open_rejects: Sequence[OpenReject],
    rules: PullRules,
    now: datetime,
) -> OrderDecision:
    """A held order planned again (catalog changed, or an operator's retry): reasons that
    no longer hold resolve their rejects; one that still holds keeps its reject (and its
    id, which an operator may be about to retry)."""
    current = {
        (f"order {order.order_id} line {n}", c.reason) for n, c in checks.items() if not c.ok
    }
    stale = tuple(r.id for r in open_rejects if (r.reference, r.reason) not in current)
    decided = plan_lines(order, checks, rules, now)
    return replace(decided, plan=Plan(resolved_rejects=stale) + decided.plan)


@dataclass(frozen=True)
class ReleaseDecision:
    plan: Plan
    outcome: str  # what was done, for the operator
    taken: OrderDecision | None = None  # the Instock create (round, partial)


def plan_release(
    order_id: str,
    order: StoredOrder | None,
    lines: Sequence[StoredLine],
    catalog: Mapping[str, CatalogEntry],
    how: Release,
    rules: PullRules,
    now: datetime,
) -> ReleaseDecision:
    """An operator's decision for a held order: `round` sends fractional lines rounded half
    up to whole Instock units (and leaves out lines that cannot be sent at all), `partial`
    sends only the lines Instock can take, `cancel` sends nothing to Instock and reports
    every line as 0, finished, then closes the order in DSOrder. Refuses (RefusedError,
    naming why) an order that is not held or that cannot be released that way;
    NotFoundError for an order never pulled."""
    if order is None:
        raise NotFoundError(f"no DSOrder order {order_id!r} was ever pulled")
    if order.state != "held":
        raise RefusedError(f"DSOrder order {order_id} is {order.state}, not held")
    at = iso(now)
    released = Plan(
        changes=(MarkReleased(order_id, how, at),),
        alerts=(ResolveAlerts(HELD_ALERT, order_id), ResolveAlerts(ESCALATED_ALERT, order_id)),
    )
    if how == "cancel" or order.instock_order_id is None:
        if how != "cancel":
            raise RefusedError(
                f"DSOrder order {order_id} maps to no valid Instock order id: "
                "only --cancel can release it"
            )
        return ReleaseDecision(
            _cancel_plan(order, lines, at) + released,
            "not sent to Instock; every line reported as 0 and the order closed in DSOrder",
        )
    checks = {
        ln.line_number: check_line(
            ln.article_id, Decimal(ln.quantity), catalog, rounding=how == "round"
        )
        for ln in lines
    }
    if not any(c.ok for c in checks.values()):
        raise RefusedError(
            f"DSOrder order {order_id}: no line can be sent to Instock ({how}); use --cancel"
        )
    taken = plan_lines(order, checks, rules, now, "partial")
    sent = sum(c.ok for c in checks.values())
    return ReleaseDecision(
        taken.plan + released,
        f"sent to Instock with {sent} of {len(checks)} line(s) ({how})",
        taken,
    )


def _cancel_plan(order: StoredOrder, lines: Sequence[StoredLine], at: str) -> Plan:
    """Nothing goes to Instock: every line reported as 0, finished, then the close."""
    order_id = order.order_id
    rows = [
        {
            "line_number": ln.line_number,
            "article_id": ln.article_id,
            "quantity": "0",
            "finished": True,
        }
        for ln in lines
    ]
    return Plan(
        intents=(
            NewIntent(
                DSORDER,
                "fulfill",
                f"order:{order_id}",
                f"fulfill:{order_id}:cancelled",
                {"order_id": order_id, "order_date": order.order_date, "lines": rows},
            ),
            NewIntent(
                DSORDER,
                "close",
                f"order:{order_id}",
                f"close:{order_id}",
                {
                    "order_id": order_id,
                    "order_date": order.order_date,
                    "instock_status": "cancelled",
                },
            ),
        ),
        changes=(
            RecordReported(
                order_id, tuple(ReportedLine(ln.line_number, "0", True) for ln in lines)
            ),
            MarkClosing(order_id, at),
        ),
    )


def plan_invalid_records(answer: Submitted, open_rejects: Sequence[OpenReject]) -> Plan:
    """Invalid records of DSOrder's list become rejects (once while they stay the same:
    not while an identical one is open); a record that was invalid and is listed valid
    now resolves its reject."""
    valid = {f"order {o.order_id}" for o in answer.orders}
    valid |= {f"order {order_id}" for order_id in answer.unchanged}
    resolved = tuple(r.id for r in open_rejects if r.reference in valid)
    still_open = {(r.reference, r.reason) for r in open_rejects if r.id not in resolved}
    new = []
    for bad in answer.rejects:
        reject = NewReject(
            ORDER_REJECT_SOURCE,
            f"order {bad.key}",
            f"DSOrder listed an invalid order: {redactor.text(bad.reason)}",
            field=bad.field,
            payload={
                "request_id": answer.request_id,
                "index": bad.index,
                "record": redactor.any(bad.raw),
            },
        )
        if (reject.reference, reject.reason) not in still_open:
            still_open.add((reject.reference, reject.reason))
            new.append(reject)
    return Plan(rejects=tuple(new), resolved_rejects=resolved)


def midnight_gap_alert(start: datetime, end: datetime) -> OpenAlert:
    """The alert for orders DSOrder no longer lists (see `uncovered_interval`)."""
    return OpenAlert(
        MIDNIGHT_GAP_ALERT,
        f"DSOrder orders submitted between {start.isoformat()} and {end.isoformat()} were "
        "never pulled (DSOrder lists only today's orders; syncd was down or failing across "
        "midnight): check them in DSOrder and enter them by hand",
        subject=start.date().isoformat(),
    )


def held_for(order: HeldOrder, now: datetime) -> float:
    """Seconds since the held order was pulled."""
    return (now - parse_iso(order.pulled_at)).total_seconds()


def _age(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def plan_hold_alerts(
    held: Sequence[HeldOrder],
    open_alerts: Sequence[tuple[str, str]],
    escalate_after: float,
    now: datetime,
) -> Plan:
    """One alert per held order, saying its age and how to release it; escalated once it
    is held `escalate_after` seconds or longer; resolved when it is held no more.
    `open_alerts`: the (kind, subject) of the open alerts of both kinds."""
    alerts: list[AlertChange] = []
    subjects = set()
    for order in held:
        order_id = order.order_id
        subjects.add(order_id)
        age = held_for(order, now)
        # Why first: `syncd status` shows an alert's first 100 characters.
        reason = (order.hold_reason or "").removeprefix("held: ")
        message = (
            f"DSOrder order {order_id} held for {_age(age)}: {reason}; release it with "
            f"`syncd orders release {order_id} --round|--partial|--cancel`, or fix the "
            f"catalog (held since {order.pulled_at})"
        )
        alerts.append(OpenAlert(HELD_ALERT, message, order_id))
        if age >= escalate_after:
            alerts.append(OpenAlert(ESCALATED_ALERT, "ESCALATED: " + message, order_id))
    for kind in (HELD_ALERT, ESCALATED_ALERT):
        for subject in dict.fromkeys(s for k, s in open_alerts if k == kind):
            if subject not in subjects:
                alerts.append(ResolveAlerts(kind, subject))
    return Plan(alerts=tuple(alerts))


def line_changes(stored: Sequence[StoredLine], listed: DsOrder) -> list[str]:
    """How the lines of an order as listed now differ from the lines it was taken with
    (article and quantity by line number, quantities as numbers): what an operator
    must amend in Instock by hand if the change is real. Empty: no line changed."""
    before = {line.line_number: (line.article_id, Decimal(line.quantity)) for line in stored}
    after = {line.line_number: (line.article_id, line.quantity) for line in listed.details}
    changes = []
    for number in sorted(before.keys() | after.keys()):
        was, now = before.get(number), after.get(number)
        if was is None:
            assert now is not None
            changes.append(f"line {number} added ({now[0]} x {now[1]})")
        elif now is None:
            changes.append(f"line {number} removed ({was[0]} x {was[1]})")
        elif was[0] != now[0]:
            changes.append(f"line {number} article {was[0]} -> {now[0]}")
        elif was[1] != now[1]:
            changes.append(f"line {number} quantity {was[1]} -> {now[1]}")
    return changes


def plan_listed_again(order_id: str, changes: Sequence[str]) -> Plan:
    """An order DSOrder lists with other lines than syncd took it with: syncd keeps the
    order as taken (the DSOrder document never says an order may change, and a second
    Instock order would double the pick), and opens an alert naming each change so
    that it is not missed. A listing whose lines are unchanged (another schedule title,
    say) needs no one."""
    if not changes:
        return Plan()
    shown = "; ".join(changes[:10]) + (
        f"; and {len(changes) - 10} more" if len(changes) > 10 else ""
    )
    message = (
        f"DSOrder order {order_id} is listed with other lines than it was taken with: "
        f"{shown}. The order was not changed; amend its Instock order by hand if needed, "
        "then resolve this alert"
    )
    return Plan(alerts=(OpenAlert(CHANGED_ALERT, message, subject=order_id),))
