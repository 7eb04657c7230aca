"""Pure decisions of the DSOrder <-> Instock order loop (no I/O, tested by tables).

- `IdMapping`: DSOrder order ids <-> Instock order ids, both ways, within
  Instock's `^[a-zA-Z0-9_+.:-]+$` (1..128); line ids from line numbers.
- `check_line`: can Instock take this line (known article, whole quantity)? If not,
  which field is at fault and why.
- `plan_order`: hold the whole order, or send the good lines, per policy.
- `order_header`: DSOrder's dates, store and shelf life on the Instock order.
- `fulfil_report`: the line TOTALS to report, and whether each line is finished.
- `uncovered_interval`: the part of a day no pull covered (the midnight gap);
  `end_of_day_time`: when the last pull of a day runs.

The plans built from them (`syncd.state.plan.Plan` values) are in `syncd/jobs/dsorder/`:
`pull_plan.py` for dsorder.pull, `progress_plan.py` for dsorder.progress.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

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
