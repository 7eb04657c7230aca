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
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from syncd.clock import iso, parse_iso, utcnow
from syncd.config import Duration, Schedule, Settings
from syncd.connectors.dsorder import DsOrder, DSOrderClient, Submitted, options_problems
from syncd.errors import NotFoundError, RefusedError
from syncd.jobs.base import JobContext, JobSpec
from syncd.jobs.shared.dsorder_plan import (
    AttributeMap,
    CatalogEntry,
    IdMapping,
    LineCheck,
    OrderFacts,
    Policy,
    check_line,
    end_of_day_time,
    order_header,
    plan_order,
    uncovered_interval,
    unit_factor,
)
from syncd.logs import Logger, redactor
from syncd.send.dsorder import DESTINATION as DSORDER
from syncd.send.instock import DESTINATION as INSTOCK
from syncd.state import NewIntent, NewReject, Store

LAST_PULL = "dsorder.last_pull"
CATALOG_SEEN = "dsorder.catalog_load_id"
REJECT_SOURCE = "dsorder:lines"
ORDER_REJECT_SOURCE = "dsorder:orders"


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


def run(ctx: JobContext) -> None:
    options: Options = ctx.options
    store = ctx.store
    now = utcnow()
    with DSOrderClient(ctx.settings.connectors.dsorder) as client:
        answer = client.submitted_orders()
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
    known = {r["order_id"] for r in store.query("SELECT order_id FROM dsorder_orders")}
    # The accounting rule: every listed record is stored (new or known) or rejected.
    ctx.counts["pulled"] = answer.listed
    ctx.counts["invalid"] = len(answer.rejects)
    _reject_records(ctx, answer)
    for order in answer.orders:
        ctx.counts["stored"] += 1
        if order.order_id in known:
            continue
        ctx.check_stop()
        _take_new_order(ctx, order, catalog, options)
    store.set_checkpoint(LAST_PULL, iso(now), run_id=ctx.run_id)
    sync_hold_alerts(ctx.store, options, utcnow(), ctx.log)
    if ctx.counts["queued"]:
        ctx.wake_sender()


HELD_ALERT: Final = "dsorder_order_held"
ESCALATED_ALERT: Final = "dsorder_order_held_escalated"
Release = Literal["round", "partial", "cancel"]


def _age(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def sync_hold_alerts(store: Store, options: Options, now: datetime, log: Logger) -> None:
    """One alert per held order, saying its age and how to release it; escalated once
    it is held longer than `hold_escalate_after`; resolved when it is held no more."""
    with store.transaction():  # an order released meanwhile gets no alert back
        _sync_hold_alerts(store, options, now, log)


def _sync_hold_alerts(store: Store, options: Options, now: datetime, log: Logger) -> None:
    held = store.query(
        "SELECT order_id, pulled_at, hold_reason FROM dsorder_orders WHERE state = 'held'"
    )
    subjects = set()
    for order in held:
        order_id = order["order_id"]
        subjects.add(order_id)
        age = (now - parse_iso(order["pulled_at"])).total_seconds()
        # Why first: `syncd status` shows an alert's first 100 characters.
        reason = (order["hold_reason"] or "").removeprefix("held: ")
        message = (
            f"DSOrder order {order_id} held for {_age(age)}: {reason}; release it with "
            f"`syncd orders release {order_id} --round|--partial|--cancel`, or fix the "
            f"catalog (held since {order['pulled_at']})"
        )
        store.open_alert(HELD_ALERT, message, subject=order_id)
        escalate = age >= options.hold_escalate_after
        if escalate and store.open_alert(ESCALATED_ALERT, "ESCALATED: " + message, order_id):
            log.error("dsorder_order_hold_escalated", order_id=order_id, age_s=round(age))
    for kind in (HELD_ALERT, ESCALATED_ALERT):
        for alert in store.open_alerts(kind):
            if alert["subject"] not in subjects:
                store.resolve_alerts(kind, alert["subject"])


def release_held_order(ctx: JobContext, order_id: str, how: Release) -> str:
    """An operator's decision for a held order, applied at once in one transaction:
    `round` sends fractional lines rounded half up to whole Instock units (and leaves out
    lines that cannot be sent at all), `partial` sends only the lines Instock can take,
    `cancel` sends nothing to Instock and reports every line as 0, finished, then closes
    the order in DSOrder. Returns what was done; refuses an order that is not held."""
    options: Options = ctx.options
    store = ctx.store
    # Read and decided under the write lock: a running daemon's pull may plan the same
    # held order at this moment, and only one of the two may act on it.
    with store.transaction():
        rows = store.query(
            "SELECT order_id, instock_order_id, state FROM dsorder_orders WHERE order_id = ?",
            [order_id],
        )
        if not rows:
            raise NotFoundError(f"no DSOrder order {order_id!r} was ever pulled")
        order = rows[0]
        if order["state"] != "held":
            raise RefusedError(f"DSOrder order {order_id} is {order['state']}, not held")
        lines = store.query(
            "SELECT line_number, article_id, quantity FROM dsorder_lines WHERE order_id = ? "
            "ORDER BY line_number",
            [order_id],
        )
        if how == "cancel" or order["instock_order_id"] is None:
            if how != "cancel":
                raise RefusedError(
                    f"DSOrder order {order_id} maps to no valid Instock order id: "
                    "only --cancel can release it"
                )
            outcome = _cancel_held(ctx, order_id, lines)
        else:
            catalog = _catalog(store, options)
            checks = {
                ln["line_number"]: check_line(
                    ln["article_id"], Decimal(ln["quantity"]), catalog, rounding=how == "round"
                )
                for ln in lines
            }
            if not any(c.ok for c in checks.values()):
                raise RefusedError(
                    f"DSOrder order {order_id}: no line can be sent to Instock "
                    f"({how}); use --cancel"
                )
            _apply_plan(ctx, order_id, order["instock_order_id"], checks, options, "partial")
            sent = sum(c.ok for c in checks.values())
            outcome = f"sent to Instock with {sent} of {len(checks)} line(s) ({how})"
        store.db.execute(
            "UPDATE dsorder_orders SET released_by = ?, updated_at = ? WHERE order_id = ?",
            [how, iso(), order_id],
        )
        for reject in store.find_rejects(
            REJECT_SOURCE,
            ("open", "retry"),
            reference=f"order {order_id}",
            reference_prefix=f"order {order_id} line ",
        ):
            store.resolve_reject(reject["id"])
        store.resolve_alerts(HELD_ALERT, order_id)
        store.resolve_alerts(ESCALATED_ALERT, order_id)
    ctx.log.warning("dsorder_order_released", order_id=order_id, how=how, outcome=outcome)
    ctx.wake_sender()
    return outcome


def _cancel_held(ctx: JobContext, order_id: str, lines: list[dict[str, Any]]) -> str:
    """Nothing goes to Instock: every line reported as 0, finished, then the close."""
    store = ctx.store
    now = iso()
    rows = [
        {
            "line_number": ln["line_number"],
            "article_id": ln["article_id"],
            "quantity": "0",
            "finished": True,
        }
        for ln in lines
    ]
    order_date = store.scalar(
        "SELECT order_date FROM dsorder_orders WHERE order_id = ?", [order_id]
    )
    ctx.counts["queued"] += store.add_intents(
        [
            NewIntent(
                DSORDER,
                "fulfill",
                f"order:{order_id}",
                f"fulfill:{order_id}:cancelled",
                {"order_id": order_id, "order_date": order_date, "lines": rows},
            ),
            NewIntent(
                DSORDER,
                "close",
                f"order:{order_id}",
                f"close:{order_id}",
                {"order_id": order_id, "order_date": order_date, "instock_status": "cancelled"},
            ),
        ],
        run_id=ctx.run_id,
    )
    store.db.execute(
        "UPDATE dsorder_lines SET reported_qty = '0', reported_finished = 1 WHERE order_id = ?",
        [order_id],
    )
    store.db.execute(
        "UPDATE dsorder_orders SET state = 'closing', updated_at = ? WHERE order_id = ?",
        [now, order_id],
    )
    return "not sent to Instock; every line reported as 0 and the order closed in DSOrder"


def _reject_records(ctx: JobContext, answer: Submitted) -> None:
    """Invalid records become rejects (once while they stay the same); a record that was
    invalid and is listed valid now resolves its reject."""
    store = ctx.store
    valid = {f"order {o.order_id}" for o in answer.orders}
    with store.transaction():
        for reject in store.find_rejects(ORDER_REJECT_SOURCE, ("open", "retry")):
            if reject["reference"] in valid:
                store.resolve_reject(reject["id"])
        _add_rejects_once(
            ctx,
            [
                NewReject(
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
                for bad in answer.rejects
            ],
        )
        # `syncd rejects retry` on such a reject: the next pull is the retry; back to open.
        store.reopen_retry_flags(ORDER_REJECT_SOURCE)
    for bad in answer.rejects:
        ctx.log.warning(
            "dsorder_order_invalid",
            order=bad.key,
            field=bad.field,
            reason=bad.reason,
            request_id=answer.request_id,
        )


def _check_midnight_gap(ctx: JobContext, now: Any, options: Options) -> None:
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
    message = (
        f"DSOrder orders submitted between {start.isoformat()} and {end.isoformat()} were "
        "never pulled (DSOrder lists only today's orders; syncd was down or failing across "
        "midnight): check them in DSOrder and enter them by hand"
    )
    ctx.store.open_alert("dsorder_midnight_gap", message, subject=start.date().isoformat())
    ctx.log.error("dsorder_midnight_gap", start=start.isoformat(), end=end.isoformat())


def _catalog(store: Store, options: Options) -> dict[str, CatalogEntry]:
    """DSOrder article id -> Instock article id (identity by default) from the host catalog."""
    # Attribute names are quoted in the JSON path: a name may hold dots or spaces.
    columns = (
        "article_id, whole_units, is_serial_numbered, "
        "json_extract(attributes, '$.\"' || ? || '\"') AS factor"
    )
    conversion = options.unit_conversion_attribute or ""
    if options.article_attribute:
        rows = store.query(
            f"SELECT json_extract(attributes, '$.\"' || ? || '\"') AS ds_id, {columns} "
            "FROM host_articles WHERE ds_id IS NOT NULL",
            [options.article_attribute, conversion],
        )
    else:
        rows = store.query(
            f"SELECT article_id AS ds_id, {columns} FROM host_articles", [conversion]
        )
    catalog = {}
    for r in rows:
        factor, problem = unit_factor(r["factor"], conversion) if conversion else (None, "")
        catalog[str(r["ds_id"])] = CatalogEntry(
            r["article_id"],
            bool(r["whole_units"]),
            bool(r["is_serial_numbered"]),
            factor,
            problem,
        )
    return catalog


def _take_new_order(
    ctx: JobContext, order: DsOrder, catalog: dict[str, CatalogEntry], options: Options
) -> None:
    mapping = options.mapping()
    instock_id = mapping.instock_order_id(order.order_id)
    checks = {
        line.line_number: check_line(line.article_id, line.quantity, catalog)
        for line in order.details
    }
    now = iso()
    with ctx.store.transaction():
        ctx.store.db.execute(
            "INSERT INTO dsorder_orders (order_id, supplier_id, store_id, order_date, "
            "delivery_date, xdock_delivery_date, supplier_schedule_title, raw, instock_order_id, "
            "state, pulled_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'held', ?, ?)",
            [
                order.order_id,
                order.supplier_id,
                order.store_id,
                iso(order.order_date),
                iso(order.delivery_date),
                iso(order.xdock_delivery_date) if order.xdock_delivery_date else None,
                order.supplier_schedule_title,
                order.model_dump_json(),
                instock_id,
                now,
                now,
            ],
        )
        ctx.store.db.conn.executemany(
            "INSERT INTO dsorder_lines (order_id, line_number, article_id, quantity, status) "
            "VALUES (?, ?, ?, ?, 'rejected')",
            [
                (order.order_id, ln.line_number, ln.article_id, str(ln.quantity))
                for ln in order.details
            ],
        )
        if instock_id is None:
            reason = (
                f"order id {order.order_id!r} maps to an id Instock refuses "
                f"(template {options.order_id_template!r})"
            )
            _hold(
                ctx,
                order.order_id,
                reason,
                [NewReject(REJECT_SOURCE, f"order {order.order_id}", reason)],
            )
            return
        _apply_plan(ctx, order.order_id, instock_id, checks, options)


def _apply_plan(
    ctx: JobContext,
    order_id: str,
    instock_id: str,
    checks: dict[int, LineCheck],
    options: Options,
    policy: Policy | None = None,
) -> None:
    """Inside the caller's transaction: map lines, then create or hold."""
    store, mapping = ctx.store, options.mapping()
    plan = plan_order(checks, policy or options.policy)
    rejects = [
        NewReject(
            REJECT_SOURCE,
            f"order {order_id} line {n}",
            c.reason,
            field="quantity" if "quantity" in c.reason else "article_id",
        )
        for n, c in sorted(checks.items())
        if not c.ok
    ]
    for number, check in checks.items():
        store.db.execute(
            "UPDATE dsorder_lines SET status = ?, reason = ?, instock_line_id = ?, "
            "instock_article_id = ?, instock_qty = ?, unit_factor = ? "
            "WHERE order_id = ? AND line_number = ?",
            [
                "ok" if check.ok else "rejected",
                check.reason or None,
                mapping.line_id(instock_id, number) if check.ok else None,
                check.instock_article_id,
                check.instock_qty if check.ok else None,
                str(check.unit_factor) if check.ok and check.unit_factor is not None else None,
                order_id,
                number,
            ],
        )
    if plan.action == "hold":
        _hold(ctx, order_id, plan.reason, rejects)
        return
    lines = store.query(
        "SELECT instock_line_id, instock_article_id, instock_qty FROM dsorder_lines "
        "WHERE order_id = ? AND status = 'ok' ORDER BY line_number",
        [order_id],
    )
    payload = {
        "order_id": instock_id,
        **order_header(_facts(store, order_id), options.attributes()),
        "lines": [
            {
                "line_id": ln["instock_line_id"],
                "article_id": ln["instock_article_id"],
                "qty": int(ln["instock_qty"]),
            }
            for ln in lines
        ],
    }
    now = iso()
    store.db.execute(
        "UPDATE dsorder_orders SET state = 'created', hold_reason = ?, updated_at = ? "
        "WHERE order_id = ?",
        [plan.reason or None, now, order_id],
    )
    store.db.execute(
        "INSERT INTO instock_order_sync (order_id, source, pushed_hash, action, status, "
        "updated_at) VALUES (?, 'dsorder', NULL, 'create', 'queued', ?) "
        "ON CONFLICT (order_id) DO NOTHING",
        [instock_id, now],
    )
    ctx.counts["queued"] += store.add_intents(
        [
            NewIntent(
                INSTOCK,
                "orders.create",
                f"order:{instock_id}",
                f"order:{instock_id}:create",
                {"order": payload},
            )
        ],
        run_id=ctx.run_id,
    )
    _add_rejects_once(ctx, rejects)
    ctx.counts["created"] += 1
    ctx.log.info(
        "dsorder_order_taken",
        order_id=order_id,
        instock_order_id=instock_id,
        lines=len(lines),
        note=plan.reason or None,
    )


def _facts(store: Store, order_id: str) -> OrderFacts:
    row = store.query(
        "SELECT order_id, store_id, order_date, delivery_date, "
        "(SELECT max(json_extract(d.value, '$.min_purchase_shelf_life')) "
        " FROM json_each(raw, '$.details') d) AS shelf_life "
        "FROM dsorder_orders WHERE order_id = ?",
        [order_id],
    )[0]
    return OrderFacts(
        row["order_id"],
        row["store_id"],
        parse_iso(row["order_date"]),
        parse_iso(row["delivery_date"]),
        parse_iso(row["shelf_life"]) if row["shelf_life"] else None,
    )


def _hold(ctx: JobContext, order_id: str, reason: str, rejects: list[NewReject]) -> None:
    ctx.store.db.execute(
        "UPDATE dsorder_orders SET state = 'held', hold_reason = ?, updated_at = ? "
        "WHERE order_id = ?",
        [reason, iso(), order_id],
    )
    _add_rejects_once(ctx, rejects)
    ctx.counts["held"] += 1
    ctx.log.warning("dsorder_order_held", order_id=order_id, reason=reason)


def _add_rejects_once(ctx: JobContext, rejects: list[NewReject]) -> None:
    """One open reject per problem: an order planned again does not repeat them."""
    added = ctx.store.add_rejects_once(rejects, run_id=ctx.run_id)
    if added:
        ctx.counts["rejected"] += added


def _replan_held(ctx: JobContext, catalog: dict[str, CatalogEntry], options: Options) -> None:
    """Held orders get another plan when the catalog changed or an operator asked."""
    store = ctx.store
    catalog_version = str(
        store.scalar("SELECT coalesce(max(id), 0) FROM host_files WHERE feed = 'articles'") or 0
    )
    retry_refs = {r["reference"].split(" line ")[0] for r in store.rejects_to_retry(REJECT_SOURCE)}
    catalog_changed = store.get_checkpoint(CATALOG_SEEN) != catalog_version
    held = store.query("SELECT order_id, instock_order_id FROM dsorder_orders WHERE state = 'held'")
    for order in held:
        if not catalog_changed and f"order {order['order_id']}" not in retry_refs:
            continue
        if order["instock_order_id"] is None:
            continue
        lines = store.query(
            "SELECT line_number, article_id, quantity FROM dsorder_lines WHERE order_id = ?",
            [order["order_id"]],
        )
        checks = {
            ln["line_number"]: check_line(ln["article_id"], Decimal(ln["quantity"]), catalog)
            for ln in lines
        }
        current = {
            (f"order {order['order_id']} line {n}", c.reason) for n, c in checks.items() if not c.ok
        }
        with store.transaction():
            state = store.scalar(
                "SELECT state FROM dsorder_orders WHERE order_id = ?", [order["order_id"]]
            )
            if state != "held":
                continue  # released by an operator (`syncd orders release`) meanwhile
            # Reasons that no longer hold are resolved; a reason that still holds keeps its
            # reject (and its id, which an operator may be about to retry).
            for reject in store.find_rejects(
                REJECT_SOURCE,
                ("open", "retry"),
                reference=f"order {order['order_id']}",
                reference_prefix=f"order {order['order_id']} line ",
            ):
                if (reject["reference"], reject["reason"]) not in current:
                    store.resolve_reject(reject["id"])
            _apply_plan(ctx, order["order_id"], order["instock_order_id"], checks, options)
            state = store.scalar(
                "SELECT state FROM dsorder_orders WHERE order_id = ?", [order["order_id"]]
            )
        ctx.counts["released"] += int(state == "created")
    # Retry flags that did not release their order are spent: back to open.
    store.reopen_retry_flags(REJECT_SOURCE)
    store.set_checkpoint(CATALOG_SEEN, catalog_version, run_id=ctx.run_id)


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
