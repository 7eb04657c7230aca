"""`backfill.requests`: run the backfills `syncd backfill` asked for, beside the live cursors.

A backfill re-pulls a past period of one stream (instock.moves, instock.orders,
dsorder.pull) with a cursor of its own (`backfills.cursor`), compares each step with what
syncd holds (`syncd.jobs.backfill.plan`, pure) and applies only what is missing or
different, in the transaction that moves its cursor:
- instock.moves: windows of `moves_step`; the moves the journal lacks are journalled with
  their normal identity (move key and occurrence, `syncd.jobs.shared.moves_journal`) and
  queued as host `moves` files, so a move the live job journalled is never sent twice;
- instock.orders: the orders list, page by page; orders placed in the period that the
  mirror lacks or holds otherwise get their listed fields in the mirror;
- dsorder.pull: today's list (all DSOrder can still list); an order submitted in the
  period and never stored is taken as dsorder.pull takes it (stored, its Instock create
  queued or it is held), one transaction per order; a changed one is treated as the live
  pull treats it: its new hash kept, the order as taken, and other lines than it was
  taken with an alert naming each change (`dsorder_order_changed`).
The live checkpoints and schedules are never touched. Each committed step writes a
window ledger row carrying the backfill's id (`syncd coverage` counts them). A dry run
(`--dry-run`) records only the differences in the backfill's own rows.

A backfill left `running` by a kill or a shutdown is resumed from its cursor by the next
run; one cancelled (`syncd backfill --cancel`) stops before its next step.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from syncd.clock import iso, parse_iso, utcnow
from syncd.config import Duration, Schedule
from syncd.connectors.dsorder import DSOrderClient
from syncd.connectors.instock import BadRecord, InstockClient, Move, Order, check_records
from syncd.errors import (
    ConnectorStoppedError,
    PermanentError,
    RetryableError,
    ShutdownRequested,
    SyncdError,
)
from syncd.jobs.backfill.plan import (
    LEDGER_STREAMS,
    LIVE_JOBS,
    check_connector,
    check_request,
    diff_orders,
    diff_submitted,
    missing_moves,
    move_detail,
    next_moves_step,
    submitted_since,
)
from syncd.jobs.base import JobContext, JobSpec
from syncd.jobs.dsorder.pull_plan import (
    catalog_entries,
    line_changes,
    plan_listed_again,
    plan_new_order,
)
from syncd.jobs.shared.dsorder_plan import check_line
from syncd.jobs.shared.instock_records import record_rejects
from syncd.jobs.shared.moves_journal import journal_intents, window_row
from syncd.jsontext import canonical, json_safe, text_hash
from syncd.send.host import host_format
from syncd.state import Store
from syncd.state.backfills import (
    Backfill,
    Difference,
    RecordStep,
    backfill_status,
    claim_next,
    finish_backfill,
    note_error,
    pending_backfills,
    restart_walk,
)
from syncd.state.mirror import dsorder as dsorders
from syncd.state.mirror.dsorder import RecordRawHash
from syncd.state.mirror.instock import ListedOrder, MirrorOrders, listed_fields
from syncd.state.mirror.instock_moves import held_occurrences, journal_moves
from syncd.state.plan import Plan, apply_plan
from syncd.state.windows import RecordWindow

END = "end"  # the cursor of a backfill whose last step is committed
MOVES_REJECT_SOURCE = "instock:moves"  # instock.moves' own: one reject per bad move


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    moves_step: Duration = Field(
        3600.0, gt=0, le=86400, description="a moves backfill reads (and commits) this much at once"
    )


class Cancelled(SyncdError):
    """The backfill was cancelled by an operator; what it applied so far stays."""


def run(ctx: JobContext) -> None:
    """Every pending backfill, oldest first (one left running first: resumed)."""
    while True:
        ctx.check_stop()
        backfill = claim_next(ctx.store, ctx.run_id)
        if backfill is None:
            return
        _run_one(ctx, backfill)


def _run_one(ctx: JobContext, backfill: Backfill) -> None:
    store = ctx.store
    log = ctx.log.bind(backfill=backfill.id, stream=backfill.stream)
    log.info(
        "backfill_started",
        period_from=backfill.period_from,
        period_to=backfill.period_to,
        dry_run=backfill.dry_run,
        resumed_from=backfill.cursor,
    )
    try:
        # Checked again when run: a DSOrder request that waited past the site's midnight
        # asks for a day DSOrder no longer lists.
        check_request(
            backfill.stream,
            parse_iso(backfill.period_from),
            parse_iso(backfill.period_to),
            max(utcnow(), parse_iso(backfill.period_to)),
            ctx.settings.daemon.site_timezone,
        )
        check_connector(ctx.settings, backfill.stream)
        if backfill.cursor != END:
            RUNNERS[backfill.stream](ctx, backfill)
    except ShutdownRequested:
        raise  # left running: the next run resumes it from its cursor
    except Cancelled:
        ctx.counts["backfills_cancelled"] += 1
        log.warning("backfill_cancelled")
        return
    except (RetryableError, ConnectorStoppedError) as exc:
        # The remote is away for now (or refuses the credentials until a reload): the
        # backfill stays running and the next run resumes it; the run fails, as a pull does.
        note_error(store, backfill.id, str(exc))
        raise
    except Exception as exc:
        finish_backfill(store, backfill.id, "failed", str(exc))
        ctx.counts["backfills_failed"] += 1
        log.error("backfill_failed", error=str(exc))
        if isinstance(exc, SyncdError) and not isinstance(exc, PermanentError):
            return  # refused as asked (e.g. a DSOrder day gone): the next request goes on
        raise
    finish_backfill(store, backfill.id, "done")
    ctx.counts["backfills_done"] += 1
    done = backfill_status(store, backfill.id)
    log.info("backfill_finished", status=done)


def _between_steps(ctx: JobContext, backfill: Backfill) -> None:
    """A shutdown ends the run here (resumed later); a cancel ends the backfill."""
    ctx.check_stop()
    if backfill_status(ctx.store, backfill.id) == "cancelled":
        raise Cancelled(f"backfill {backfill.id} cancelled")


def _ledger_row(
    ctx: JobContext,
    backfill: Backfill,
    started: str,
    window: tuple[str, str] | None,
    *,
    pages: int,
    listed: int,
    stored: int,
    rejected: int = 0,
    content: str | None = None,
    request_ids: tuple[str, ...] = (),
) -> RecordWindow:
    return RecordWindow(
        LEDGER_STREAMS[backfill.stream],
        LIVE_JOBS[backfill.stream][0],
        ctx.run_id,
        "window",
        started,
        iso(),
        window[0] if window else None,
        window[1] if window else None,
        pages=pages,
        listed=listed,
        stored=stored,
        rejected=rejected,
        content_hash=content,
        request_ids=request_ids,
        backfill_id=backfill.id,
    )


def _progress(ctx: JobContext, backfill: Backfill, done: int, total: int | None = None) -> None:
    ctx.progress(f"backfill {backfill.id} {backfill.stream}", done, total)


# -- instock.moves ---------------------------------------------------------------------------


def _moves(ctx: JobContext, backfill: Backfill) -> None:
    from syncd.jobs import REGISTRY  # the live job's options (a job imports no job module)

    options: Options = ctx.options
    chunk = REGISTRY["instock.moves"].options(ctx.settings).journal_chunk
    fmt = host_format(ctx.settings, "moves")
    period_from, period_to = parse_iso(backfill.period_from), parse_iso(backfill.period_to)
    total = math.ceil((period_to - period_from).total_seconds() / options.moves_step)
    cursor, done = backfill.cursor, backfill.steps
    with InstockClient(ctx.settings.connectors.instock) as client:
        client.check_site()
        while step := next_moves_step(cursor, period_from, period_to, options.moves_step):
            _between_steps(ctx, backfill)
            started = iso()
            listed: list[tuple[Any, ...]] = []
            bad: list[tuple[str | None, BadRecord]] = []
            pages, request_ids = 0, []
            digest = text_hash("")
            for page in client.move_pages(step.start, step.end):
                good, wrong = check_records(page.items, Move, "article_id")
                rows = [window_row(m, page.request_id) for m in good]
                listed.extend(rows)
                bad.extend((page.request_id, b) for b in wrong)
                pages += 1
                if page.request_id:
                    request_ids.append(page.request_id)
                digest = text_hash(digest + "\n".join(r[0] for r in rows))
                ctx.check_stop()
            cursor = iso(step.end)
            with ctx.store.transaction():
                held = held_occurrences(ctx.store, [r[0] for r in listed])
                missing = missing_moves(listed, held)
                diffs = [Difference("missing", r[0], move_detail(r)) for r in missing]
                added = rejected = queued = 0
                if not backfill.dry_run:
                    for request_id, record in bad:
                        rejected += record_rejects(
                            ctx.store,
                            MOVES_REJECT_SOURCE,
                            [record],
                            key_field="article_id",
                            request_id=request_id,
                            run_id=ctx.run_id,
                        )
                    before, added = journal_moves(ctx.store, missing, iso(), ctx.run_id)
                    for intent in journal_intents(ctx.store, before, chunk, fmt):
                        queued += ctx.store.add_intents([intent], run_id=ctx.run_id)
                    _ledger_row(
                        ctx,
                        backfill,
                        started,
                        (iso(step.start), cursor),
                        pages=pages,
                        listed=len(listed) + len(bad),
                        stored=len(listed),
                        rejected=len(bad),
                        content=digest[:32],
                        request_ids=tuple(request_ids),
                    ).apply(ctx.store)
                RecordStep(
                    backfill.id,
                    cursor,
                    found=len(listed),
                    missing=len(missing),
                    applied=added,
                    rejected=rejected,
                    differences=diffs,
                    applied_differences=not backfill.dry_run,
                ).apply(ctx.store)
            done += 1
            ctx.counts["found"] += len(listed)
            ctx.counts["missing"] += len(missing)
            ctx.counts["journalled"] += added
            ctx.counts["queued"] += queued
            ctx.counts["rejected"] += rejected
            _progress(ctx, backfill, done, total)
            if queued:
                ctx.wake_sender()


# -- instock.orders --------------------------------------------------------------------------


def _listed(order: Order) -> ListedOrder:
    """An order as the mirror keeps it (as instock.orders' page plan does)."""
    return ListedOrder(
        order.order_id,
        order.kind or "customer",
        order.placed_at,
        json.dumps(json_safe(order.attributes)),
        json.dumps(json_safe([ln.model_dump() for ln in order.lines])),
    )


def _orders(ctx: JobContext, backfill: Backfill) -> None:
    with InstockClient(ctx.settings.connectors.instock) as client:
        client.check_site()
        try:
            _walk_orders(ctx, client, backfill)
        except PermanentError as exc:
            if not backfill.cursor or exc.status != 400:
                raise
            # A cursor kept across a crash or a long stop may no longer be accepted: walk
            # the list again from its start (what was applied stays applied).
            ctx.log.warning("backfill_cursor_rejected", backfill=backfill.id, error=str(exc))
            restart_walk(ctx.store, backfill)
            _walk_orders(ctx, client, replace(backfill, cursor=None, steps=0))


def _walk_orders(ctx: JobContext, client: InstockClient, backfill: Backfill) -> None:
    period_from, period_to = parse_iso(backfill.period_from), parse_iso(backfill.period_to)
    cursor, done = backfill.cursor or "", backfill.steps
    _between_steps(ctx, backfill)
    started = iso()
    for page in client.order_pages(start_cursor=cursor or None):
        good, bad = check_records(page.items, Order, "order_id")
        listed = {o.order_id: _listed(o) for o in good}
        cursor = page.next_cursor if page.has_more and page.next_cursor else END
        with ctx.store.transaction():
            held = listed_fields(ctx.store, list(listed))
            diff = diff_orders([o.__dict__ for o in listed.values()], held, period_from, period_to)
            diffs = [
                Difference("missing", i, {"placed_at": listed[i].placed_at}) for i in diff.missing
            ] + [Difference("changed", i, fields) for i, fields in diff.changed.items()]
            write = [listed[i] for i in (*diff.missing, *diff.changed)]
            if not backfill.dry_run:
                if write:
                    MirrorOrders(tuple(write), iso()).apply(ctx.store)
                whole = cursor == END
                _ledger_row(
                    ctx,
                    backfill,
                    started,
                    # The walk covers the period once it has read the whole list.
                    (backfill.period_from, backfill.period_to) if whole else None,
                    pages=1,
                    listed=len(page.items),
                    stored=len(good),
                    rejected=len(bad),
                    content=text_hash(canonical(page.items))[:32],
                    request_ids=(page.request_id,) if page.request_id else (),
                ).apply(ctx.store)
            RecordStep(
                backfill.id,
                cursor,
                found=diff.in_period,
                missing=len(diff.missing),
                changed=len(diff.changed),
                applied=0 if backfill.dry_run else len(write),
                differences=diffs,
                applied_differences=not backfill.dry_run,
            ).apply(ctx.store)
        done += 1
        ctx.counts["found"] += diff.in_period
        ctx.counts["missing"] += len(diff.missing)
        ctx.counts["changed"] += len(diff.changed)
        ctx.counts["mirrored"] += 0 if backfill.dry_run else len(write)
        ctx.counts["invalid"] += len(bad)
        _progress(ctx, backfill, done)
        if cursor == END:
            return
        _between_steps(ctx, backfill)
        started = iso()


# -- dsorder.pull ----------------------------------------------------------------------------


def _submitted(ctx: JobContext, backfill: Backfill) -> None:
    from syncd.jobs import REGISTRY  # dsorder.pull's options (a job imports no job module)

    store = ctx.store
    pull = REGISTRY["dsorder.pull"].options(ctx.settings)
    period_from, period_to = parse_iso(backfill.period_from), parse_iso(backfill.period_to)
    _between_steps(ctx, backfill)
    started = iso()
    with DSOrderClient(ctx.settings.connectors.dsorder) as client:
        answer = client.submitted_orders({})  # every record validated and hashed
    stored: dict[str, str | None] = dict.fromkeys(dsorders.known_order_ids(store))
    stored.update(dsorders.raw_hashes(store))
    diff = diff_submitted(
        [(o.order_id, o.order_date, answer.hashes.get(o.order_id)) for o in answer.orders],
        stored,
        submitted_since(period_from, ctx.settings.daemon.site_timezone),
        period_to,
    )
    by_id = {o.order_id: o for o in answer.orders}
    ctx.counts["found"] += len(diff.in_period)
    ctx.counts["missing"] += len(diff.missing)
    ctx.counts["changed"] += len(diff.changed)
    conversion = pull.unit_conversion_attribute or ""
    catalog = catalog_entries(
        dsorders.host_catalog(store, pull.article_attribute, conversion), conversion
    )
    for n, order_id in enumerate(diff.missing, start=1):
        _between_steps(ctx, backfill)
        order = by_id[order_id]
        checks = {
            ln.line_number: check_line(ln.article_id, ln.quantity, catalog) for ln in order.details
        }
        detail = {"order_date": iso(order.order_date), "lines": len(order.details)}
        with store.transaction():
            taken = 0
            # The live pull may have taken it since the list was read: then it is known.
            if not backfill.dry_run and order_id not in dsorders.known_order_ids(store):
                decided = plan_new_order(order, checks, pull.rules(), utcnow())
                digest = answer.hashes.get(order_id)
                hashed = Plan(changes=(RecordRawHash(order_id, digest),)) if digest else Plan()
                applied = apply_plan(store, decided.plan + hashed, run_id=ctx.run_id)
                ctx.counts["queued"] += applied.intents
                ctx.counts["held" if decided.action == "hold" else "created"] += 1
                taken = 1
                detail["action"] = decided.action
            RecordStep(
                backfill.id,
                None,
                missing=1,
                applied=taken,
                differences=[Difference("missing", order_id, detail)],
                applied_differences=bool(taken),
            ).apply(store)
        _progress(ctx, backfill, n, len(diff.missing))
    with store.transaction():
        found_changed, plan = [], Plan()
        for order_id, pair in diff.changed.items():
            # As dsorder.pull does: the order stays as taken (its Instock order exists),
            # the new hash is kept, and other lines than it was taken with are an alert.
            lines = line_changes(dsorders.order_lines(store, order_id), by_id[order_id])
            found_changed.append(
                Difference("changed", order_id, {"raw_hash": pair, "lines": lines})
            )
            if pair[1]:
                plan += Plan(changes=(RecordRawHash(order_id, pair[1]),))
            plan += plan_listed_again(order_id, lines)
        if not backfill.dry_run:
            applied = apply_plan(store, plan, run_id=ctx.run_id)
            ctx.counts["alerts"] += len(applied.opened_alerts)
            _ledger_row(
                ctx,
                backfill,
                started,
                (backfill.period_from, backfill.period_to),
                pages=1,
                listed=answer.listed,
                stored=len(answer.orders),
                rejected=len(answer.rejects),
                request_ids=(answer.request_id,) if answer.request_id else (),
            ).apply(store)
        RecordStep(
            backfill.id,
            END,
            found=len(diff.in_period),
            changed=len(diff.changed),
            applied=0 if backfill.dry_run else len(diff.changed),
            differences=found_changed,
            applied_differences=not backfill.dry_run,
        ).apply(store)
    if ctx.counts["queued"]:
        ctx.wake_sender()


RUNNERS = {"instock.moves": _moves, "instock.orders": _orders, "dsorder.pull": _submitted}


def due(store: Store) -> bool:
    """Whether a scheduled run has anything to do (no `runs` row every few seconds)."""
    return pending_backfills(store) > 0


SPEC = JobSpec(
    name="backfill.requests",
    run=run,
    description="Run the backfills `syncd backfill` asked for, beside the live cursors",
    default_schedule=Schedule(interval=15),
    options_model=Options,
    due=due,
)
