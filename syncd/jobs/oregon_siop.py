"""`oregon.siop`: host sell-through and stock -> Oregon Tool SIOP, only what changed.

One data item per material and period (oregontool-siop-api.txt), built by pure functions from
the host tables:

- **who**: `soldToId` / `shipToId` are `options.sold_to_id` / `options.ship_to_id` (required to
  run; the job fails with a config error without them).
- **material**: `materialId` = the host `article_id` ("your internal material/part
  identifier"); `oregonToolMaterialId` = the host catalog attribute `options.material_attribute`
  (e.g. `attr.oregon_id` in the articles feed), left out when not set or empty. With
  `options.only_mapped` only articles carrying that attribute are reported (Oregon Tool's
  products); otherwise every catalog article is.
- **period**: `options.granularity` "month" (default: `year`, `month`, no `day`, which the API
  reads as the first of the month) or "day" (`day` set). The current period (today in
  `daemon.site_timezone`) and `options.periods_back` earlier ones are sent, for every reported
  article (an article with no activity gets zeros: that is information too).
- **unitsSold** = the net sum of `host_sales.qty` whose `sale_date` falls in the period
  (returns, negative rows, subtract; a negative net is sent as it is: the field is a signed
  integer).
- **onHand** = the total `host_stock.qty` of the article over all locations (no row: 0);
  **unitsOnOrder** = the sum over open PO lines (`host_purchase_order_lines`) of ordered -
  received, each line never below 0. Both are snapshots of *now*, so they are set only on the
  **current** period's item. A closed period keeps the stock values of the item last accepted
  for it (those it had when it was last current, i.e. at its end); a closed period never sent
  before has them null (the host has no stock history). This way a late sale that re-sends a
  closed period does not blank or falsify its stock.
- **left null** (no host source): `unitsOnHand`, `unitsOnShelf`, `unitsInTransit`,
  `targetInventory`, `minimumStock`, `maximumStock`, `safetyStock`.
- **unitOfMeasure** = `options.unit_of_measure` ("EA"; "" leaves it out).

Decimal -> integer: host quantities are exact decimals (up to 6 places). Each field is summed
exactly first (in SQL, in integer millionths, so no float error), then rounded once to the
nearest integer, halves away from zero (2.5 -> 3, -2.5 -> -3, 0.4 -> 0). A value beyond signed
32 bits is not clipped: the item fails local validation and becomes a reject.

Diff: each item's hash is that of its wire JSON. It is sent when it differs from the hash last
accepted for its key (`oregon_siop_accepted`) and from the one last refused
(`oregon_siop_failed`): a refused item waits until it changes or its reject is retried
(`syncd rejects retry` -> status 'retry' -> this job plans it again). An unchanged host makes
no request at all, and once a run compared every item and wrote nothing, the next runs skip
until an input changes (`syncd.jobs.shared.unchanged`: a host file, a retried reject, the
options, the day). Items the connector's `validate_item` refuses (e.g. a material id longer
than 18) become rejects without a request.

Sending: per `options.batch_size` items, one `submit_isolating` call (the client splits by the
connector's `page_size`, drops the rows a 400 names and re-sends the rest at once); then in one
transaction: accepted items recorded (and any earlier failure of them resolved), refused ones
rejects (source `oregon:siop`, reference `material <id> period <YYYY-MM[-DD]>` with the host
rows it came from, the field, the message, and in the payload the raw error body as received,
malformed or not). Items the isolation budget left unsent are simply planned again next run. A
crash between the POST and the record re-sends those items next run: safe, a re-post of a key
replaces it. A retryable failure that outlasts the retry policy fails the run; what earlier
batches recorded stays.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from syncd.clock import iso, utcnow
from syncd.config import Schedule
from syncd.connectors.oregon_siop import (
    FieldProblem,
    IsolationResult,
    ItemFailure,
    OregonSiopClient,
    validate_item,
)
from syncd.errors import ConfigError
from syncd.jobs.base import JobContext, JobSpec, take_retried_rejects
from syncd.jobs.shared.unchanged import InputsCheck
from syncd.jsontext import canonical_strict, content_hash
from syncd.state import NewReject, Store
from syncd.state.mirror import oregon_siop as host
from syncd.state.mirror.oregon_siop import LEDGER, MICRO

REJECT_SOURCE: Final = "oregon:siop"
CHUNK: Final = 500  # catalog articles read (and looked up) per query
STOCK_FIELDS: Final = (
    "onHand",
    "unitsOnHand",
    "unitsOnShelf",
    "unitsOnOrder",
    "unitsInTransit",
    "targetInventory",
    "minimumStock",
    "maximumStock",
    "safetyStock",
)
Granularity = Literal["month", "day"]


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sold_to_id: str = Field("", max_length=10, description="Oregon Tool customer number (soldToId)")
    ship_to_id: str = Field("", max_length=10, description="Oregon Tool ship-to number (shipToId)")
    material_attribute: str | None = Field(
        None, description="host catalog attribute holding Oregon Tool's material id"
    )
    only_mapped: bool = Field(
        False, description="report only articles that carry material_attribute"
    )
    granularity: Granularity = Field("month", description="one item per material per month/day")
    periods_back: int = Field(
        1, ge=0, le=400, description="earlier periods sent besides the current"
    )
    unit_of_measure: str = Field("EA", max_length=3, description="unitOfMeasure; '' leaves it out")
    batch_size: int = Field(500, ge=1, le=10_000, description="items per isolating submit")


# --- pure: periods, numbers, items, plan ------------------------------------------------------


@dataclass(frozen=True, order=True)
class Period:
    """A month (`day` None) or a day."""

    year: int
    month: int
    day: int | None = None

    @property
    def key_day(self) -> int:
        """The day the API stores the item under ("defaults to first of the month")."""
        return self.day or 1

    @property
    def label(self) -> str:
        """`2026-11` or `2026-11-23`: also how a sale date is bucketed in SQL."""
        base = f"{self.year:04d}-{self.month:02d}"
        return base if self.day is None else f"{base}-{self.day:02d}"

    @property
    def start(self) -> date:
        return date(self.year, self.month, self.key_day)

    @property
    def end(self) -> date:
        """The first day after the period."""
        if self.day is not None:
            return self.start + timedelta(days=1)
        return date(self.year + self.month // 12, self.month % 12 + 1, 1)


def periods(today: date, granularity: Granularity, back: int) -> list[Period]:
    """The current period first, then `back` earlier ones."""
    if granularity == "day":
        days = [today - timedelta(days=i) for i in range(back + 1)]
        return [Period(d.year, d.month, d.day) for d in days]
    found = []
    year, month = today.year, today.month
    for _ in range(back + 1):
        found.append(Period(year, month))
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return found


def to_units(value: Decimal | int | str | None) -> int:
    """An exact quantity as whole units: nearest integer, halves away from zero; None -> 0."""
    if value is None:
        return 0
    return int(Decimal(str(value)).to_integral_value(rounding=ROUND_HALF_UP))


def from_micro(value: int | None) -> Decimal:
    """A sum in millionths (as SQL computes it) as the exact decimal."""
    return Decimal(value or 0) / MICRO


@dataclass(frozen=True)
class Figures:
    """An article's exact quantities for one period (stock and on-order: now)."""

    sold: Decimal = Decimal(0)
    on_hand: Decimal = Decimal(0)
    on_order: Decimal = Decimal(0)


def build_item(
    *,
    sold_to: str,
    ship_to: str,
    material_id: str,
    oregon_material_id: str | None,
    period: Period,
    figures: Figures,
    current: bool,
    frozen: Mapping[str, Any] | None = None,
    unit_of_measure: str = "EA",
) -> dict[str, Any]:
    """The wire item (camelCase, null fields left out) for one material and period.

    `current`: stock fields come from `figures`; otherwise from `frozen`, the item last accepted
    for this key (None: left null)."""
    item: dict[str, Any] = {"soldToId": sold_to, "shipToId": ship_to, "materialId": material_id}
    if oregon_material_id:
        item["oregonToolMaterialId"] = oregon_material_id
    item["year"] = period.year
    item["month"] = period.month
    if period.day is not None:
        item["day"] = period.day
    item["unitsSold"] = to_units(figures.sold)
    if current:
        item["onHand"] = to_units(figures.on_hand)
        item["unitsOnOrder"] = to_units(figures.on_order)
    elif frozen:
        for name in STOCK_FIELDS:
            if frozen.get(name) is not None:
                item[name] = frozen[name]
    if unit_of_measure:
        item["unitOfMeasure"] = unit_of_measure
    return item


@dataclass(frozen=True)
class Action:
    kind: str  # "unchanged", "waiting", "refuse", "send"
    problems: tuple[FieldProblem, ...] = ()


def plan_item(
    item: Mapping[str, Any], digest: str, accepted_hash: str | None, failed_hash: str | None
) -> Action:
    """What to do with one item, given the hash last accepted and the one last refused."""
    if accepted_hash == digest:
        return Action("unchanged")  # Oregon Tool has exactly this
    if failed_hash == digest:
        return Action("waiting")  # refused as is: until it changes or its reject is retried
    problems = validate_item(dict(item))
    if problems:
        return Action("refuse", tuple(problems))
    return Action("send")


# --- host reads (chunked by article: memory does not grow with the catalog) ------------------


@dataclass(frozen=True)
class Candidate:
    """A planned item with its natural key and the host rows it came from."""

    item: dict[str, Any]
    digest: str
    key: tuple[str, str, str, int, int, int]
    reference: str
    sources: dict[str, Any] = field(default_factory=dict)
    accepted_hash: str | None = None
    failed_hash: str | None = None


def _articles(store: Store, options: Options) -> Iterator[list[dict[str, Any]]]:
    last = ""
    attribute = options.material_attribute
    while True:
        rows = host.catalog_after(store, last, CHUNK)
        if not rows:
            return
        last = rows[-1]["article_id"]
        for row in rows:
            attrs = json.loads(row["attributes"] or "{}")
            value = attrs.get(attribute) if attribute else None
            row["oregon_material_id"] = value if isinstance(value, str) and value else None
        if options.only_mapped and attribute:
            rows = [r for r in rows if r["oregon_material_id"]]
        if rows:
            yield rows


def _candidates(
    ctx: JobContext, options: Options, chunk: Sequence[Mapping[str, Any]], spans: list[Period]
) -> list[Candidate]:
    store = ctx.store
    ids = [r["article_id"] for r in chunk]
    first, end = min(p.start for p in spans), max(p.end for p in spans)
    by_day = options.granularity == "day"
    sales = {
        (r["article_id"], r["period"]): r
        for r in host.sales_by_period(
            store, ids, by_day=by_day, start=first.isoformat(), end=end.isoformat()
        )
    }
    stock = {r["article_id"]: r for r in host.stock_by_article(store, ids)}
    orders = {r["article_id"]: r for r in host.on_order_by_article(store, ids)}
    keys = (options.sold_to_id, options.ship_to_id)
    low = first.year * 10_000 + first.month * 100 + first.day
    scope = {"sold_to": options.sold_to_id, "ship_to": options.ship_to_id}
    since = "year * 10000 + month * 100 + day >= ?"
    accepted = {
        (r["material_id"], r["year"], r["month"], r["day"]): r
        for r in LEDGER.rows(
            store,
            "accepted",
            scope,
            "material_id",
            ids,
            ("material_id", "year", "month", "day", "item_hash", "item"),
            where=since,
            params=[low],
        )
    }
    failed = {
        (r["material_id"], r["year"], r["month"], r["day"]): r["item_hash"]
        for r in LEDGER.rows(
            store,
            "failed",
            scope,
            "material_id",
            ids,
            ("material_id", "year", "month", "day", "item_hash"),
            where=since,
            params=[low],
        )
    }
    out: list[Candidate] = []
    for article in chunk:
        article_id = article["article_id"]
        held = stock.get(article_id) or {}
        ordered = orders.get(article_id) or {}
        for index, period in enumerate(spans):
            current = index == 0
            sale = sales.get((article_id, period.label)) or {}
            key = (*keys, article_id, period.year, period.month, period.key_day)
            last = accepted.get(key[2:])
            frozen = json.loads(last["item"]) if last and not current else None
            figures = Figures(
                sold=from_micro(sale.get("micro")),
                on_hand=from_micro(held.get("micro")),
                on_order=from_micro(ordered.get("micro")),
            )
            item = build_item(
                sold_to=options.sold_to_id,
                ship_to=options.ship_to_id,
                material_id=article_id,
                oregon_material_id=article["oregon_material_id"],
                period=period,
                figures=figures,
                current=current,
                frozen=frozen,
                unit_of_measure=options.unit_of_measure,
            )
            sources: dict[str, Any] = {"host_articles": f"{article['file']}:{article['line']}"}
            if sale:
                sources["host_sales"] = {"first": host.first_row(sale["ref"]), "rows": sale["rows"]}
            if current and held:
                sources["host_stock"] = {"first": host.first_row(held["ref"]), "rows": held["rows"]}
            if current and ordered:
                sources["host_purchase_orders"] = sorted(str(ordered["pos"]).split(","))
            out.append(
                Candidate(
                    item,
                    content_hash(item),
                    key,
                    reference(article_id, period, sources),
                    sources,
                    last["item_hash"] if last else None,
                    failed.get(key[2:]),
                )
            )
    return out


def reference(material_id: str, period: Period, sources: Mapping[str, Any]) -> str:
    """`material A1 period 2026-11 (host_articles a.csv:2; host_sales s.csv:4 +2 rows; ...)`."""
    parts = []
    for table, where in sources.items():
        if isinstance(where, dict):
            more = where["rows"] - 1
            parts.append(f"{table} {where['first']}" + (f" +{more} rows" if more else ""))
        elif isinstance(where, list):
            parts.append(f"{table} {','.join(where)}")
        else:
            parts.append(f"{table} {where}")
    return f"material {material_id} period {period.label} ({'; '.join(parts)})"


# --- the flow ----------------------------------------------------------------------------------


def run(ctx: JobContext) -> None:
    options: Options = ctx.options
    missing = [n for n in ("sold_to_id", "ship_to_id") if not getattr(options, n).strip()]
    if missing:
        problems = [f"jobs.oregon.siop.options.{n}: required" for n in missing]
        raise ConfigError("oregon.siop needs " + " and ".join(missing), problems)
    zone = ZoneInfo(ctx.settings.daemon.site_timezone)
    today = utcnow().astimezone(zone).date()
    spans = periods(today, options.granularity, options.periods_back)
    connector = ctx.settings.connectors.oregon_siop
    inputs = InputsCheck.begin(
        ctx, REJECT_SOURCE, today.isoformat(), connector.model_dump(mode="json")
    )
    if inputs.unchanged:  # compared in full since, found nothing, nothing changed
        ctx.counts["skipped_unchanged"] += 1
        return
    if not ctx.dry_run:
        _requeue_retried_rejects(ctx)
    with OregonSiopClient(connector) as client:
        pending: list[Candidate] = []
        for chunk in _articles(ctx.store, options):
            ctx.check_stop()
            pending.extend(_plan(ctx, _candidates(ctx, options, chunk, spans)))
            while len(pending) >= options.batch_size:
                batch, pending = pending[: options.batch_size], pending[options.batch_size :]
                _send(ctx, client, batch)
        if pending:
            _send(ctx, client, pending)
    inputs.finish(ctx)


def _plan(ctx: JobContext, candidates: Sequence[Candidate]) -> list[Candidate]:
    to_send: list[Candidate] = []
    refusals: list[tuple[Candidate, ItemFailure]] = []
    for cand in candidates:
        action = plan_item(cand.item, cand.digest, cand.accepted_hash, cand.failed_hash)
        ctx.counts[action.kind] += 1
        if action.kind == "send":
            to_send.append(cand)
        elif action.kind == "refuse":
            errors: dict[str, tuple[str, ...]] = {}
            for problem in action.problems:
                errors[problem.field] = (*errors.get(problem.field, ()), problem.message)
            refusals.append((cand, ItemFailure(-1, errors, "local")))
    if refusals:
        ctx.counts["rejected"] += len(refusals)
        if not ctx.dry_run:
            with ctx.store.transaction():
                for cand, failure in refusals:
                    _record_failure(ctx, cand, failure)
    return to_send


def _send(ctx: JobContext, client: OregonSiopClient, batch: Sequence[Candidate]) -> None:
    ctx.counts["to_send"] += len(batch)
    if ctx.dry_run:
        return
    ctx.check_stop()
    result: IsolationResult = client.submit_isolating([c.item for c in batch])
    now = iso()
    with ctx.store.transaction():
        for index in result.accepted:
            cand = batch[index]
            LEDGER.accept(
                ctx.store,
                cand.key,
                cand.digest,
                item=canonical_strict(cand.item),
                accepted_at=now,
                run_id=ctx.run_id,
            )
        for index, failure in result.failures.items():
            _record_failure(ctx, batch[index], failure)
    ctx.counts["requests"] += result.requests
    ctx.counts["pushed"] += len(result.accepted)
    ctx.counts["rejected"] += len(result.failures)
    ctx.counts["unsent"] += len(result.unsent)
    if result.unsent:
        ctx.warnings.append(
            {"message": f"{len(result.unsent)} item(s) left unsent by the isolation budget"}
        )


def _record_failure(ctx: JobContext, cand: Candidate, failure: ItemFailure) -> None:
    """A refused item: its reject (naming material, period and host rows) and the hash it was
    refused with. An open reject of an earlier version of the item is superseded (resolved)."""
    fields = [name for name in failure.errors if name]
    payload = {
        "item": cand.item,
        "source": failure.source,
        "errors": {k: list(v) for k, v in failure.errors.items()},
        "raw": failure.raw,
        "trace_id": failure.trace_id,
        "request_id": failure.request_id,
        "host_rows": cand.sources,
    }
    LEDGER.fail(
        ctx.store,
        cand.key,
        cand.digest,
        NewReject(
            REJECT_SOURCE,
            cand.reference,
            failure.message or "refused",
            field=fields[0] if fields else None,
            payload=payload,
        ),
        run_id=ctx.run_id,
    )


def _requeue_retried_rejects(ctx: JobContext) -> None:
    """`syncd rejects retry` on an Oregon reject: its item is planned (and sent) again."""
    take_retried_rejects(ctx, REJECT_SOURCE, LEDGER.forget_retried)


SPEC = JobSpec(
    name="oregon.siop",
    run=run,
    description="Send changed sell-through and stock items to Oregon Tool SIOP",
    default_schedule=Schedule(interval=86_400),
    connectors=("oregon_siop",),
    options_model=Options,
)
