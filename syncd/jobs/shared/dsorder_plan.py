"""Pure decisions of the DSOrder <-> Instock order loop (no I/O, tested by tables).

The pieces:
- `IdMapping`: DSOrder order ids <-> Instock order ids, both ways, within
  Instock's `^[a-zA-Z0-9_+.:-]+$` (1..128); line ids from line numbers.
- `check_line`: can Instock take this line (known article, whole quantity)? If not,
  which field is at fault and why.
- `plan_order`: hold the whole order, or send the good lines, per policy.
- `order_header`: DSOrder's dates, store and shelf life on the Instock order.
- `fulfil_report`: the line TOTALS to report, and whether each line is finished.
- `uncovered_interval`: the part of a day no pull covered (the midnight gap);
  `end_of_day_time`: when the last pull of a day runs.

The plans built from them (`syncd.state.plan.Plan`: intents, rejects, alerts and the
changes to `dsorder_orders` / `dsorder_lines`, whose owner is
`syncd.state.mirror.dsorder`), which the jobs apply in one transaction:
- dsorder.pull: `plan_new_order`, `plan_replan` (a held order planned again),
  `plan_release` (an operator's `syncd orders release`), `plan_invalid_records`,
  `plan_hold_alerts`, `midnight_gap_alert`;
- dsorder.progress: `plan_progress` (totals, then the close, after a poll).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

from syncd.clock import iso, parse_iso
from syncd.connectors.dsorder import DsOrder, Submitted
from syncd.errors import NotFoundError, RefusedError
from syncd.jsontext import canonical_spaced, text_hash
from syncd.logs import redactor
from syncd.send.dsorder import DESTINATION as DSORDER
from syncd.send.instock import DESTINATION as INSTOCK
from syncd.state import NewIntent, NewReject
from syncd.state.mirror.dsorder import (
    CatalogRow,
    FollowedOrder,
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

INSTOCK_ID = re.compile(r"^[a-zA-Z0-9_+.:-]{1,128}$")
Policy = Literal["hold", "partial"]


@dataclass(frozen=True)
class IdMapping:
    """`order_template` must contain `{order_id}` once; `{line_number}` in the line template."""

    order_template: str = "DS-{order_id}"
    line_template: str = "{instock_order_id}-{line_number}"

    def instock_order_id(self, dsorder_id: str) -> str | None:
        mapped = self.order_template.format(order_id=dsorder_id)
        return mapped if INSTOCK_ID.match(mapped) else None

    def dsorder_id(self, instock_order_id: str) -> str | None:
        """The reverse mapping: None when the id was not made by this template."""
        prefix, _, suffix = self.order_template.partition("{order_id}")
        if not instock_order_id.startswith(prefix) or not instock_order_id.endswith(suffix):
            return None
        return instock_order_id[len(prefix) : len(instock_order_id) - len(suffix) or None]

    def line_id(self, instock_order_id: str, line_number: int) -> str:
        return self.line_template.format(instock_order_id=instock_order_id, line_number=line_number)


@dataclass(frozen=True)
class CatalogEntry:
    instock_article_id: str
    whole_units: bool = True
    serial_numbered: bool = False  # Instock refuses these in every upload and order
    # Instock units per DSOrder unit (the host catalog's `units_per_order_unit`
    # attribute): DSOrder's 100.50 kg at 100 per kg is 10050 Instock units. None: 1.
    units_per_order_unit: Decimal | None = None
    conversion_problem: str = ""  # the attribute is there but is not a positive number


LineField = Literal["article_id", "quantity"]


@dataclass(frozen=True)
class LineCheck:
    ok: bool
    reason: str = ""
    instock_article_id: str | None = None
    instock_qty: int | None = None  # whole Instock units the line asks for
    unit_factor: Decimal | None = None  # Instock units per DSOrder unit (None: 1)
    field: LineField | None = None  # the line's field at fault, when not ok


def check_line(
    article_id: str,
    quantity: Decimal,
    catalog: Mapping[str, CatalogEntry],
    *,
    rounding: bool = False,
) -> LineCheck:
    """Whether Instock can take a DSOrder line (in whole Instock units after the article's
    unit conversion), and why not. `rounding` (an operator's release) rounds a fraction
    half up instead of refusing it; a line that rounds to 0 is still refused."""
    entry = catalog.get(article_id)
    if entry is None:
        return LineCheck(
            False, f"article {article_id} is not in the host catalog", field="article_id"
        )
    if entry.serial_numbered:
        return LineCheck(
            False,
            f"article {article_id} is serial-numbered, which Instock refuses "
            "(it cannot be uploaded, so an order line for it would be refused)",
            field="article_id",
        )
    if entry.conversion_problem:  # the article's catalog entry cannot convert its units
        return LineCheck(False, entry.conversion_problem, field="article_id")
    if quantity <= 0:
        return LineCheck(False, f"quantity {quantity} is not positive", field="quantity")
    factor = entry.units_per_order_unit
    units = quantity * factor if factor is not None else quantity
    if units != units.to_integral_value():
        rounded = int(units.to_integral_value(ROUND_HALF_UP))
        if rounding and rounded > 0:
            return LineCheck(True, "", entry.instock_article_id, rounded, factor)
        if factor is not None:
            reason = (
                f"fractional quantity {quantity} x {factor} units per order unit = {units} "
                "Instock units (whole units only)"
            )
        else:
            unit = "an article sold in whole units" if entry.whole_units else "Instock"
            reason = f"fractional quantity {quantity} for {unit} (whole units only)"
        if rounding:
            reason += "; rounds to 0"
        return LineCheck(False, reason, field="quantity")
    return LineCheck(True, "", entry.instock_article_id, int(units), factor)


def unit_factor(value: object, attribute: str) -> tuple[Decimal | None, str]:
    """A catalog attribute's conversion factor, or why it cannot be used."""
    if value is None or value == "":
        return None, ""
    try:
        factor = Decimal(str(value).strip())
    except ArithmeticError:
        factor = Decimal("NaN")
    if not factor.is_finite() or factor <= 0:
        return None, f"catalog attribute {attribute} = {value!r} is not a positive number"
    return factor, ""


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
class OrderPlan:
    action: Literal["create", "hold"]
    sendable: tuple[int, ...]  # line numbers sent to Instock
    reason: str = ""


def plan_order(checks: Mapping[int, LineCheck], policy: Policy) -> OrderPlan:
    """Hold the whole order, or send its good lines; an order with no good line is held."""
    good = tuple(sorted(n for n, c in checks.items() if c.ok))
    bad = {n: c.reason for n, c in sorted(checks.items()) if not c.ok}
    if not bad:
        return OrderPlan("create", good)
    summary = "; ".join(f"line {n}: {r}" for n, r in bad.items())
    if policy == "hold" or not good:
        return OrderPlan("hold", (), f"held: {summary}")
    return OrderPlan("create", good, f"sent without: {summary}")


def rfc3339(moment: datetime) -> str:
    """Instock's timestamps: RFC 3339 in UTC, whole seconds (the document's examples)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class OrderFacts:
    """What DSOrder tells about an order that Instock can carry."""

    order_id: str
    store_id: str
    order_date: datetime
    delivery_date: datetime
    shelf_life: datetime | None = None  # the latest min_purchase_shelf_life of its lines


@dataclass(frozen=True)
class AttributeMap:
    """Which DSOrder facts go where on the Instock order (None: not sent). Attribute names
    must be agreed with Instock for the site first, so only cutoff_time is on by default."""

    placed_at: bool = True
    order_id_attribute: str | None = None
    delivery_date_attribute: str | None = "cutoff_time"
    delivery_date_lead: timedelta = timedelta(0)
    store_id_attribute: str | None = None
    shelf_life_attribute: str | None = None


def order_header(facts: OrderFacts, mapping: AttributeMap) -> dict[str, Any]:
    """`placed_at` and `attributes` of the Instock order (attribute values are strings)."""
    attributes: dict[str, str] = {}
    if mapping.order_id_attribute:
        attributes[mapping.order_id_attribute] = facts.order_id
    if mapping.delivery_date_attribute:
        cutoff = facts.delivery_date - mapping.delivery_date_lead
        attributes[mapping.delivery_date_attribute] = rfc3339(cutoff)
    if mapping.store_id_attribute:
        attributes[mapping.store_id_attribute] = facts.store_id
    if mapping.shelf_life_attribute and facts.shelf_life is not None:
        attributes[mapping.shelf_life_attribute] = rfc3339(facts.shelf_life)
    header: dict[str, Any] = {"attributes": attributes}
    if mapping.placed_at:
        header["placed_at"] = rfc3339(facts.order_date)
    return header


@dataclass(frozen=True)
class ReportLine:
    line_number: int
    article_id: str
    quantity: Decimal
    finished: bool


def fulfil_report(
    lines: Sequence[Mapping[str, object]],
    picked: Mapping[str, int],
    terminal: bool,
) -> list[ReportLine]:
    """Line totals for /fulfill: what Instock picked per mapped line (0 for lines
    Instock never had); every line is finished once the Instock order is terminal."""
    report = []
    for line in lines:
        line_id = line.get("instock_line_id")
        total = (
            Decimal(picked.get(str(line_id), 0))
            if line_id and line["status"] == "ok"
            else Decimal(0)
        )
        factor = line.get("unit_factor")
        if factor and total:  # Instock units back to DSOrder's
            total = total / Decimal(str(factor))
        number = int(line["line_number"])  # type: ignore[call-overload]  # an INTEGER column
        report.append(ReportLine(number, str(line["article_id"]), total, terminal))
    return report


def report_changed(
    report: Sequence[ReportLine], previous: Mapping[int, tuple[str | None, bool]]
) -> bool:
    """True when any total or finished flag differs from what was last queued
    (nothing queued yet counts as 0, not finished: an untouched order sends nothing)."""
    for line in report:
        qty, finished = previous.get(line.line_number, (None, False))
        if Decimal(qty or 0) != line.quantity or finished != line.finished:
            return True
    return False


def uncovered_interval(
    last_pull: datetime | None,
    now: datetime,
    zone: str,
    tolerance: timedelta = timedelta(0),
    end_of_day: timedelta = timedelta(0),
) -> tuple[datetime, datetime] | None:
    """The span no pull covered before the midnight that starts today, when the day
    changed since the last pull.

    DSOrder only lists today's orders: anything submitted after the last pull of a
    past day can no longer be seen. The day of the last pull counts as covered when
    that pull ran in its last `end_of_day` (the scheduled end-of-day pull, by design)
    or within `tolerance` of midnight (0 by default: any other gap is reported);
    every whole day after it that no pull saw is uncovered.
    """
    if last_pull is None:
        return None
    tz = ZoneInfo(zone)
    last_local, now_local = last_pull.astimezone(tz), now.astimezone(tz)
    if last_local.date() >= now_local.date():
        return None
    end = datetime.combine(now_local.date(), time(0), tz)  # midnight starting today
    first = datetime.combine(last_local.date() + timedelta(days=1), time(0), tz)
    start = last_local
    # Differences in UTC: wall-clock arithmetic within one zone ignores DST.
    if first.astimezone(UTC) - last_local.astimezone(UTC) <= max(tolerance, end_of_day):
        start = first
    if start >= end:
        return None
    return start, end


def end_of_day_time(lead: timedelta) -> time:
    """The local time of the end-of-day pull: `lead` before midnight (whole seconds)."""
    seconds = 86_400 - max(1, min(int(lead.total_seconds()), 86_399))
    return time(seconds // 3600, seconds // 60 % 60, seconds % 60)


# -- plans: what dsorder.pull and dsorder.progress decide, as `Plan` values -------------

REJECT_SOURCE = "dsorder:lines"  # a line (or an order id) Instock cannot take
ORDER_REJECT_SOURCE = "dsorder:orders"  # a record of DSOrder's list that is not a valid order
HELD_ALERT: Final = "dsorder_order_held"
ESCALATED_ALERT: Final = "dsorder_order_held_escalated"
MIDNIGHT_GAP_ALERT: Final = "dsorder_midnight_gap"
TERMINAL = ("done", "canceled")  # Instock order statuses after which the order is closed


@dataclass(frozen=True)
class PullRules:
    """What dsorder.pull's options say about turning a DSOrder order into an Instock one."""

    mapping: IdMapping = IdMapping()
    attributes: AttributeMap = AttributeMap()
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
    order: DsOrder, checks: Mapping[int, LineCheck], rules: PullRules, now: datetime
) -> OrderDecision:
    """An order seen for the first time: stored with its lines, and in the same plan either
    its Instock create or its hold with rejects naming line, field and reason."""
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
                rejects_once=(NewReject(REJECT_SOURCE, f"order {order.order_id}", reason),),
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
