"""`dsorder.pull`: today's submitted store orders -> Instock customer orders, once.

Each new order is stored with its lines and, in the same transaction, either
an intent to create its Instock order (the Instock order id is the natural
key: a replay after a crash is recognised as "already exists") or, when a
line cannot go to Instock, rejects naming order, line and reason, handled by
the policy (`hold` the order, or send the good lines and report the rest as 0).
Held orders are planned again when the host catalog changes and on
`syncd rejects retry`.

The time of the last successful pull is the checkpoint `dsorder.last_pull`.
DSOrder only shows today's orders, so a day whose end no pull covered is
raised as an alert naming the interval (status, logs, sd_notify STATUS).

The decisions are pure (`syncd.jobs.dsorder.pull_plan`): this module reads (DSOrder's
list, the stored orders through `syncd.state.mirror.dsorder`, rejects, alerts), plans,
and applies each plan with `apply_plan`, one transaction per order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from syncd.clock import iso, parse_iso, utcnow
from syncd.config import Duration, Schedule, Settings
from syncd.connectors.dsorder import DSOrderClient, Submitted, options_problems
from syncd.jobs.base import JobContext, JobSpec
from syncd.jobs.dsorder.pull_plan import (
    ESCALATED_ALERT,
    HELD_ALERT,
    ORDER_REJECT_SOURCE,
    REJECT_SOURCE,
    OpenReject,
    OrderDecision,
    PullRules,
    catalog_entries,
    held_for,
    line_changes,
    midnight_gap_alert,
    plan_hold_alerts,
    plan_invalid_records,
    plan_listed_again,
    plan_new_order,
    plan_release,
    plan_replan,
)
from syncd.jobs.shared.dsorder_plan import (
    AttributeMap,
    CatalogEntry,
    IdMapping,
    LineCheck,
    check_line,
    end_of_day_time,
    uncovered_interval,
)
from syncd.jsontext import canonical, text_hash
from syncd.logs import Logger
from syncd.state import Store
from syncd.state.mirror import dsorder as orders
from syncd.state.mirror.dsorder import RecordRawHash, Release
from syncd.state.plan import Applied, Plan, apply_plan
from syncd.state.windows import RecordWindow

LAST_PULL = "dsorder.last_pull"
LEDGER_STREAM = "dsorder.submitted"  # each pull of today's list in the window ledger
CATALOG_SEEN = "dsorder.catalog_load_id"


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_id_template: str = Field("DS-{order_id}", description="Instock order id from DSOrder's")
    line_id_template: str = Field("{instock_order_id}-{line_number}")
    article_attribute: str | None = Field(
        None, description="host catalog attribute holding DSOrder's article id; None = same id"
    )
    policy: Literal["hold", "partial"] = "hold"
    unit_conversion_attribute: str | None = Field(
        "units_per_order_unit",
        description="host catalog attribute: Instock units per DSOrder unit (absent: 1)",
    )
    hold_escalate_after: Duration = Field(
        14_400.0, gt=0, description="a held order's alert escalates after this long"
    )
    # Where DSOrder's facts go on the Instock order. Custom attributes must be agreed
    # with Instock for the site first; an empty string turns one off.
    placed_at: bool = Field(True, description="placed_at from DSOrder's order_date")
    order_id_attribute: str | None = Field(None, description="attribute for DSOrder's order id")
    delivery_date_attribute: str | None = Field(
        "cutoff_time", description="attribute for the delivery date (minus delivery_date_lead)"
    )
    delivery_date_lead: Duration = Field(0.0, description="cutoff this long before delivery")
    store_id_attribute: str | None = Field(None, description="attribute for the store id")
    shelf_life_attribute: str | None = Field(
        None, description="attribute for the latest min_purchase_shelf_life of the lines"
    )
    midnight_tolerance: Duration = Field(
        0.0, le=3600, description="uncovered end of day tolerated (0: any gap is an alert)"
    )
    end_of_day_pull: Duration = Field(
        30.0, ge=1, le=3600, description="the last pull of a day runs this long before midnight"
    )

    @field_validator("order_id_template")
    @classmethod
    def _has_order_id(cls, value: str) -> str:
        if value.count("{order_id}") != 1:
            raise ValueError("must contain {order_id} exactly once")
        return value

    @field_validator(
        "order_id_attribute",
        "delivery_date_attribute",
        "store_id_attribute",
        "shelf_life_attribute",
    )
    @classmethod
    def _attribute_name(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if value != value.strip():
            raise ValueError(f"{value!r}: an attribute name has no surrounding spaces")
        return value

    @model_validator(mode="after")
    def _distinct_attributes(self) -> Options:
        names = [
            n
            for n in (
                self.order_id_attribute,
                self.delivery_date_attribute,
                self.store_id_attribute,
                self.shelf_life_attribute,
            )
            if n
        ]
        if len(names) != len(set(names)):
            raise ValueError(f"attribute names must differ, got {names}")
        return self

    def mapping(self) -> IdMapping:
        return IdMapping(self.order_id_template, self.line_id_template)

    def attributes(self) -> AttributeMap:
        return AttributeMap(
            placed_at=self.placed_at,
            order_id_attribute=self.order_id_attribute,
            delivery_date_attribute=self.delivery_date_attribute,
            delivery_date_lead=timedelta(seconds=self.delivery_date_lead),
            store_id_attribute=self.store_id_attribute,
            shelf_life_attribute=self.shelf_life_attribute,
        )

    def rules(self) -> PullRules:
        return PullRules(self.mapping(), self.attributes(), self.policy)


def run(ctx: JobContext) -> None:
    options: Options = ctx.options
    store = ctx.store
    now = started = utcnow()
    # Orders listed exactly as last stored are counted, not validated or planned again:
    # an unchanged day costs a hash per order (README "DSOrder").
    stored_hashes = orders.raw_hashes(store)
    with DSOrderClient(ctx.settings.connectors.dsorder) as client:
        answer = client.submitted_orders(stored_hashes)
    received = utcnow()
    zone = ZoneInfo(ctx.settings.daemon.site_timezone)
    if received.astimezone(zone).date() != now.astimezone(zone).date():
        # The answer came after local midnight: it may be the new day's list, so this
        # pull cannot count as having seen the end of the day it started in.
        now = received
    if answer.warnings:
        ctx.warnings.extend(answer.warnings)
        ctx.log.warning("dsorder_warnings", warnings=answer.warnings)
    _check_midnight_gap(ctx, now, options)
    catalog = _catalog(store, options)
    # Held orders first: an order taken below is planned against this same catalog and
    # must not be planned (and its rejects re-issued) a second time in this run.
    _replan_held(ctx, catalog, options)
    known = orders.known_order_ids(store)
    # The accounting rule: every listed record is stored (new or known), unchanged since
    # it was stored (counted, not validated again) or rejected.
    ctx.counts["pulled"] = answer.listed
    ctx.counts["invalid"] = len(answer.rejects)
    ctx.counts["unchanged"] = len(answer.unchanged)
    _reject_records(ctx, answer)
    for order in answer.orders:
        ctx.counts["stored"] += 1
        digest = answer.hashes.get(order.order_id)
        hashed = (RecordRawHash(order.order_id, digest),) if digest else ()
        if order.order_id in known:
            if hashed:
                # Listed with other content than when first stored (or stored before
                # hashes): the stored order stays as planned; the new hash is kept so the
                # next pull skips it, and other lines than it was taken with are an alert.
                ctx.counts["changed"] += int(order.order_id in stored_hashes)
                changes = line_changes(orders.order_lines(store, order.order_id), order)
                if changes:
                    ctx.counts["lines_changed"] += 1
                    ctx.log.warning(
                        "dsorder_order_changed", order_id=order.order_id, changes=changes
                    )
                plan = Plan(changes=hashed) + plan_listed_again(order.order_id, changes)
                apply_plan(store, plan, run_id=ctx.run_id)
            continue
        ctx.check_stop()
        checks = _checks(
            [(ln.line_number, ln.article_id, ln.quantity) for ln in order.details], catalog
        )
        decided = plan_new_order(order, checks, options.rules(), utcnow(), answer.request_id)
        with store.transaction():
            if orders.get_order(store, order.order_id) is not None:
                # Taken since `known` was read (a backfill of dsorder.pull runs beside
                # this job): it is known now, and taking it again would fail or double it.
                ctx.log.info("dsorder_order_taken_meanwhile", order_id=order.order_id)
                continue
            _record(ctx, replace(decided, plan=decided.plan + Plan(changes=hashed)))
    covered = submitted_window(
        now,
        ctx.settings.daemon.site_timezone,
        timedelta(seconds=max(options.midnight_tolerance, options.end_of_day_pull)),
    )
    ledger = RecordWindow(
        LEDGER_STREAM,
        "dsorder.pull",
        ctx.run_id,
        "window",
        iso(started),
        iso(),
        iso(covered[0]),
        iso(covered[1]),
        listed=answer.listed,
        stored=len(answer.orders) + len(answer.unchanged),
        rejected=len(answer.rejects),
        content_hash=_listing_hash(answer),
        request_ids=(answer.request_id,) if answer.request_id else (),
    )
    apply_plan(
        store, Plan(changes=(ledger,), checkpoints=((LAST_PULL, iso(now)),)), run_id=ctx.run_id
    )
    sync_hold_alerts(ctx.store, options, utcnow(), ctx.log)
    if ctx.counts["queued"]:
        ctx.wake_sender()


def _listing_hash(answer: Submitted) -> str:
    """The identity of the valid orders listed: their record hashes, in order id order."""
    valid = [o.order_id for o in answer.orders] + answer.unchanged
    return text_hash(canonical(sorted(answer.hashes.get(i, "") for i in valid)))


def submitted_window(now: datetime, zone: str, end_of_day: timedelta) -> tuple[datetime, datetime]:
    """What a pull of today's list at `now` covered, for the window ledger: the local day
    from its midnight to `now`, or to the next midnight when `now` is within `end_of_day`
    of it (the end-of-day pull counts as seeing the whole day, as the midnight-gap alert
    says)."""
    tz = ZoneInfo(zone)
    local = now.astimezone(tz)
    start = datetime.combine(local.date(), time(0), tz)
    midnight = datetime.combine(local.date() + timedelta(days=1), time(0), tz)
    end = midnight if midnight.astimezone(UTC) - now.astimezone(UTC) <= end_of_day else now
    return start.astimezone(UTC), end.astimezone(UTC)


def _checks(
    lines: Iterable[tuple[int, str, Decimal]], catalog: Mapping[str, CatalogEntry]
) -> dict[int, LineCheck]:
    """Line number -> can Instock take it. Done before the plan's transaction begins, which
    then re-reads the order: a release an operator committed meanwhile is seen there."""
    return {number: check_line(article, qty, catalog) for number, article, qty in lines}


def _record(ctx: JobContext, decided: OrderDecision) -> Applied:
    """Apply one order's plan; count and log what it decided."""
    applied = apply_plan(ctx.store, decided.plan, run_id=ctx.run_id)
    if decided.action == "create":
        ctx.counts["queued"] += applied.intents
    if applied.rejects:
        ctx.counts["rejected"] += applied.rejects
    if decided.action == "hold":
        ctx.counts["held"] += 1
        ctx.log.warning("dsorder_order_held", order_id=decided.order_id, reason=decided.reason)
    else:
        ctx.counts["created"] += 1
        ctx.log.info(
            "dsorder_order_taken",
            order_id=decided.order_id,
            instock_order_id=decided.instock_order_id,
            lines=decided.lines,
            note=decided.reason or None,
        )
    return applied


def sync_hold_alerts(store: Store, options: Options, now: datetime, log: Logger) -> None:
    """One alert per held order, saying its age and how to release it; escalated once
    it is held longer than `hold_escalate_after`; resolved when it is held no more."""
    with store.transaction():  # an order released meanwhile gets no alert back
        held = orders.held_orders(store)
        open_alerts = [
            (kind, alert["subject"])
            for kind in (HELD_ALERT, ESCALATED_ALERT)
            for alert in store.open_alerts(kind)
        ]
        plan = plan_hold_alerts(held, open_alerts, options.hold_escalate_after, now)
        applied = apply_plan(store, plan)
    ages = {h.order_id: held_for(h, now) for h in held}
    for alert in applied.opened_alerts:
        if alert.kind == ESCALATED_ALERT:
            log.error(
                "dsorder_order_hold_escalated",
                order_id=alert.subject,
                age_s=round(ages[alert.subject]),
            )


def release_held_order(ctx: JobContext, order_id: str, how: Release) -> str:
    """An operator's decision for a held order (see `plan_release`), applied at once in
    one transaction. Returns what was done; refuses an order that is not held."""
    options: Options = ctx.options
    store = ctx.store
    # Read and decided under the write lock: a running daemon's pull may plan the same
    # held order at this moment, and only one of the two may act on it.
    with store.transaction():
        order = orders.get_order(store, order_id)
        lines = orders.order_lines(store, order_id) if order else []
        catalog = _catalog(store, options) if order and how != "cancel" else {}
        decided = plan_release(order_id, order, lines, catalog, how, options.rules(), utcnow())
        if decided.taken is not None:
            _record(ctx, replace(decided.taken, plan=decided.plan))
        else:
            ctx.counts["queued"] += apply_plan(store, decided.plan, run_id=ctx.run_id).intents
        # Every reject of the order is settled by the release, those the plan just
        # added for lines left out included.
        settled = _open_rejects(store, order_id)
        apply_plan(store, Plan(resolved_rejects=tuple(r.id for r in settled)))
    ctx.log.warning("dsorder_order_released", order_id=order_id, how=how, outcome=decided.outcome)
    ctx.wake_sender()
    return decided.outcome


def _open_rejects(store: Store, order_id: str) -> list[OpenReject]:
    """The open (or retry-flagged) rejects of an order and of its lines."""
    return [
        OpenReject(r["id"], r["reference"], r["reason"])
        for r in store.find_rejects(
            REJECT_SOURCE,
            ("open", "retry"),
            reference=f"order {order_id}",
            reference_prefix=f"order {order_id} line ",
        )
    ]


def _reject_records(ctx: JobContext, answer: Submitted) -> None:
    """Invalid records become rejects (once while they stay the same); a record that was
    invalid and is listed valid now resolves its reject."""
    store = ctx.store
    with store.transaction():
        open_rejects = [
            OpenReject(r["id"], r["reference"], r["reason"])
            for r in store.find_rejects(ORDER_REJECT_SOURCE, ("open", "retry"))
        ]
        applied = apply_plan(store, plan_invalid_records(answer, open_rejects), run_id=ctx.run_id)
        # `syncd rejects retry` on such a reject: the next pull is the retry; back to open.
        store.reopen_retry_flags(ORDER_REJECT_SOURCE)
    if applied.rejects:
        ctx.counts["rejected"] += applied.rejects
    for bad in answer.rejects:
        ctx.log.warning(
            "dsorder_order_invalid",
            order=bad.key,
            field=bad.field,
            reason=bad.reason,
            request_id=answer.request_id,
        )


def _check_midnight_gap(ctx: JobContext, now: datetime, options: Options) -> None:
    last = ctx.store.get_checkpoint(LAST_PULL)
    gap = uncovered_interval(
        parse_iso(last) if last else None,
        now,
        ctx.settings.daemon.site_timezone,
        timedelta(seconds=options.midnight_tolerance),
        timedelta(seconds=options.end_of_day_pull),
    )
    if gap is None:
        return
    start, end = gap
    apply_plan(ctx.store, Plan(alerts=(midnight_gap_alert(start, end),)))
    ctx.log.error("dsorder_midnight_gap", start=start.isoformat(), end=end.isoformat())


def _catalog(store: Store, options: Options) -> dict[str, CatalogEntry]:
    """DSOrder article id -> Instock article id (identity by default) from the host catalog."""
    conversion = options.unit_conversion_attribute or ""
    rows = orders.host_catalog(store, options.article_attribute, conversion)
    return catalog_entries(rows, conversion)


def _replan_held(ctx: JobContext, catalog: dict[str, CatalogEntry], options: Options) -> None:
    """Held orders get another plan when the catalog changed or an operator asked."""
    store = ctx.store
    catalog_version = orders.catalog_version(store)
    retry_refs = {r["reference"].split(" line ")[0] for r in store.rejects_to_retry(REJECT_SOURCE)}
    catalog_changed = store.get_checkpoint(CATALOG_SEEN) != catalog_version
    for held in orders.held_orders(store):
        if not catalog_changed and f"order {held.order_id}" not in retry_refs:
            continue
        if held.instock_order_id is None:
            continue
        lines = orders.order_lines(store, held.order_id)
        checks = _checks(
            [(ln.line_number, ln.article_id, Decimal(ln.quantity)) for ln in lines], catalog
        )
        with store.transaction():
            order = orders.get_order(store, held.order_id)
            if order is None or order.state != "held":
                continue  # released by an operator (`syncd orders release`) meanwhile
            open_rejects = _open_rejects(store, held.order_id)
            decided = plan_replan(order, checks, open_rejects, options.rules(), utcnow())
            _record(ctx, decided)
        ctx.counts["released"] += int(decided.action == "create")
    # Retry flags that did not release their order are spent: back to open.
    with store.transaction():
        store.reopen_retry_flags(REJECT_SOURCE)
        apply_plan(store, Plan(checkpoints=((CATALOG_SEEN, catalog_version),)), run_id=ctx.run_id)


def _daily(settings: Settings) -> tuple[time, ...]:
    """The end-of-day pull, in the site's zone: DSOrder forgets the day at midnight."""
    options = SPEC.options(settings)
    return (end_of_day_time(timedelta(seconds=options.end_of_day_pull)),)


def _check(settings: Settings) -> list[str]:
    """DSOrder's "today" is the site's day: its zone must be said, not defaulted; and
    the connector's message patterns must compile."""
    problems = options_problems(settings.connectors.dsorder)
    if settings.connectors.dsorder.enabled and "site_timezone" not in (
        settings.daemon.model_fields_set
    ):
        problems.append(
            "daemon.site_timezone: required when connectors.dsorder is enabled: DSOrder "
            "lists only the orders of the site's current day, so give the site's IANA zone "
            'explicitly (e.g. "Europe/Amsterdam"; "UTC" if the site really runs on UTC)'
        )
    return problems


SPEC = JobSpec(
    name="dsorder.pull",
    run=run,
    description="Pull today's DSOrder store orders and queue their Instock orders",
    default_schedule=Schedule(interval=120),
    connectors=("dsorder", "instock"),
    options_model=Options,
    daily_at=_daily,
    check=_check,
)
