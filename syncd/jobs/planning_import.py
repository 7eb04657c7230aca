"""`planning.import`: host planning data -> the import-jobs planning API, only what changed.

Six endpoints, each fed from host tables by a pure mapping function:

- **catalog** from `host_articles`: `externalId` = article_id, `name`.
- **suppliers** from `host_suppliers`: `externalId` = supplier_id, `name` (an extra field; the
  API keeps unknown fields).
- **inventory** from `host_stock`: `skuId` = article_id, `locationId` = the host location
  (`''`, the site as a whole, becomes `options.site_location`), `quantityOnHand` = book qty,
  `reorderPoint` = the host's `reorder_point`, `quantityReserved` = the host's `qty_reserved`,
  else (`reserved_from_instock`, default on) for the site row Instock's reserved stock
  (`instock_inventory.reserved`, 0 when Instock lists none). The API resets a field left out
  to its default (0) on every import, and `reorderPoint` is the planner's minimum quantity:
  a row whose host gives no reorder point is held (counted `held:inventory`, a run warning)
  unless `on_missing_reorder_point = "api_default"`.
- **purchase-orders** from the open POs (`host_purchase_orders` + lines): `externalPoNumber`,
  `supplierId`, `destinationLocationId` (host location, `''` -> site_location), `status` (the
  host's word, omitted when empty: API default PENDING), lines `skuId`, `quantity` =
  outstanding (ordered - received; lines with nothing outstanding are left out), `unitCost`
  (the host's exact decimal as a number; required by the API, so a line without one refuses
  its PO locally). A PO is always sent whole (a re-sent PO replaces the stored one, lines
  included). A PO the API accepted that leaves the open set (nothing outstanding, or gone
  from the snapshot) is sent once more, closed (`closed_row`): its last accepted row with
  every line at quantity 0 and status `po_received_status`/`po_cancelled_status`/
  `po_closed_status` (`po_final_status`). The last accepted row of POs and orders is kept
  (`planning_import_accepted.payload`) for this.
- **orders** from the open customer orders (`host_orders` status `open` + `host_order_lines`):
  `externalOrderId`, lines `skuId`, `quantity`, `locationId` = site_location (host orders
  carry no location: they are picked at this site). An order the API accepted that the host
  cancels is sent once more with every line at quantity 0 and `status` =
  `order_cancelled_status` (the document has no order status: an extra field).
- **demand-history** from `host_sales`: one record per article, location, channel (empty ->
  `ALL`) and ISO week, `weekStarting` = the Monday, `actualDemand` = the week's net quantity
  (returns subtract; a net below 0 is sent as 0). `options.demand_weeks_back` closed weeks are
  sent; a week is sent once it is closed (the API may add a week's records into one bucket,
  so a growing week re-sent each run would be counted again); `include_open_week` opts in to
  the current week, re-sent each run it grew. The host has no forecast and the API sets a
  missing `forecastedDemand` to `actualDemand`: records are held (`held:demand-history`)
  unless `on_missing_forecast = "api_default"`. The reference of a demand record is the
  first of its sales rows loaded (file:line).

Diff: every mapped row gets a hash of its wire JSON and a natural key (the connector's
`row_key`). It is sent when its hash differs from the one a COMPLETED job last accepted
(`planning_import_accepted`) and from the one that last failed (`planning_import_failed`): a
refused row waits until it changes or its reject is retried (`syncd rejects retry`). Rows
the connector's own check refuses (`row_problems`: e.g. a PO line without unit cost) become
rejects without a request. An unchanged host makes no request at all. Each row is rendered
to its canonical JSON once: that text is hashed, kept with its job and sent as is.

Per batch of `batch_size` changed rows: record the keys, hashes, host references and
payloads of the rows it carries (`planning_import_batches.rows`, one JSON array per batch),
submit (POST, 202 + job), then at once record the job id, naming the batch
(`planning_import_jobs`), then poll the job with backoff until COMPLETED or FAILED, then in
one transaction: accepted rows recorded, each row-level error a reject (source
`planning:<endpoint>`, reference `<host file>:<line> <key>`, the error's field and message),
job counts stored, the batch deleted. Rows are recorded as accepted only when the job accounts
for every row it was sent (`count_mismatch`); otherwise each is a reject and an alert opens.

Re-sends. For the endpoints in `options.upsert_endpoints` (default catalog, suppliers,
inventory, purchase-orders: imports keyed by a documented unique or idempotent key) a crash
between the POST and the record re-sends that batch on the next run, and a lost answer is
re-sent by the HTTP layer: a second job, no duplicate data. Orders and weekly demand name no
key, and the API may add a row sent again beside the first (counting it twice), so for the
other endpoints: the batch is recorded (`SUBMITTING`) before its POST; a POST is sent again
only when it cannot have been processed (429, a connect failure); a lost answer, a crash
before the job id is recorded, or a job the API no longer knows make the batch `AMBIGUOUS`:
its rows become rejects (`syncd rejects retry` sends one again once the operator has checked
the planning tool) and alert `planning_import_ambiguous` opens; a row changed after the API
accepted it is held (`held_changed:<endpoint>`, a run warning), except the row that closes a
cancelled order (quantities 0: it adds nothing).

Up to `jobs_in_flight` jobs are open at once (`Flights`): the next batch is planned while
they are submitted and polled, but submits go one at a time, each recorded before the next,
so a crash leaves at most one batch unsure. A job still PENDING/PROCESSING when the run ends
(job timeout, crash, shutdown) stays recorded; the next run polls it again before planning,
and plans nothing for that endpoint while it is still open (its rows would be sent twice). A
job the API no longer knows (404) is marked LOST and its rows are planned again (upsert
endpoints). A FAILED job with a job-level error accepts nothing: its rows are planned again
next run (the error is a run warning); rows with row-level errors are rejects either way.

`rowCount`, `processedCount` and `failedCount` of every finished job are added to the run's
counts (`runs.counts`), accepted rows to `pushed` and rejected rows to `rejected`.

The job is split by concern in `syncd.jobs.planning`: `options`, `rows` (host rows ->
import rows, pure), `hostrows` (the chunked host reads), `plan` (every decision, pure:
which rows to send, what a job's answer means, unsure and lost jobs), `record` (apply a
decision's `Plan`, count, warn) and `flights` (submit, record, poll). Its tables are
written only through `syncd.state.mirror.planning_import` (the jobs it submitted, and
the accepted/failed ledger).
"""

from __future__ import annotations

import functools
from datetime import date

from syncd.clock import utcnow
from syncd.config import Schedule
from syncd.connectors.import_jobs import PENDING, PROCESSING, ImportJobsClient
from syncd.jobs.base import JobContext, JobSpec, take_retried_rejects
from syncd.jobs.planning.flights import Flights, resume_open_jobs
from syncd.jobs.planning.hostrows import (
    candidates,
    demand_candidates,
    demand_record_count,
    read_ahead_candidates,
)
from syncd.jobs.planning.options import ORDER, UPSERT_ENDPOINTS, Options
from syncd.jobs.planning.plan import (
    REJECT_SOURCE,
    KeyedChunk,
    count_mismatch,
    key_chunk,
    match_errors,
    plan_chunk,
    plan_row,
)
from syncd.jobs.planning.record import record_refusals, report_held, report_held_changed
from syncd.jobs.planning.rows import (
    HOLD_FORECAST,
    HOLD_REORDER_POINT,
    Planned,
    catalog_row,
    closed_row,
    demand_row,
    demand_text,
    demand_window,
    held_reason,
    inventory_row,
    is_closed_week,
    number,
    order_row,
    po_final_status,
    purchase_order_row,
    row_hash,
    supplier_row,
    week_starting,
    weekly_demand,
)
from syncd.jobs.shared.unchanged import InputsCheck
from syncd.state.mirror.planning_import import (
    LEDGER,
    SUBMITTING,
    forget_retried,
    jobs_with_status,
    known_hashes,
)

__all__ = [  # the job, and the pure pieces its tests name
    "LEDGER",
    "ORDER",
    "SPEC",
    "UPSERT_ENDPOINTS",
    "Options",
    "catalog_row",
    "closed_row",
    "count_mismatch",
    "demand_candidates",
    "demand_row",
    "demand_text",
    "demand_window",
    "held_reason",
    "inventory_row",
    "is_closed_week",
    "match_errors",
    "number",
    "order_row",
    "plan_row",
    "po_final_status",
    "purchase_order_row",
    "row_hash",
    "run",
    "supplier_row",
    "week_starting",
    "weekly_demand",
]


def run(ctx: JobContext) -> None:
    options: Options = ctx.options
    today = utcnow().date()
    connector = ctx.settings.connectors.import_jobs
    # Skipped while nothing changed since a run that compared every row and wrote
    # nothing; never while an import job is open (it is polled).
    open_jobs = jobs_with_status(ctx.store, SUBMITTING, PENDING, PROCESSING)
    inputs = InputsCheck.begin(
        ctx, REJECT_SOURCE, today.isoformat(), connector.model_dump(mode="json"),
        open_work=bool(open_jobs),
    )  # fmt: skip
    if inputs.unchanged:
        ctx.counts["skipped_unchanged"] += 1
        return
    with ImportJobsClient(connector) as client:
        if not ctx.dry_run:
            take_retried_rejects(ctx, REJECT_SOURCE, forget_retried)
        blocked = set() if ctx.dry_run else resume_open_jobs(ctx, client, options)
        helpers_wrote = False  # the import jobs' helpers record on their own connection
        for endpoint in options.endpoints:
            ctx.check_stop()
            if endpoint in blocked:
                ctx.counts["endpoints_waiting"] += 1
                continue
            helpers_wrote |= _sync_endpoint(ctx, client, options, endpoint, today)
    if not blocked:
        inputs.finish(ctx, wrote_elsewhere=helpers_wrote)


def _sync_endpoint(
    ctx: JobContext, client: ImportJobsClient, options: Options, endpoint: str, today: date
) -> bool:
    """Send what changed of one endpoint; True when the helpers recorded anything."""
    if endpoint == "demand-history" and options.on_missing_forecast == "hold":
        report_held(ctx, endpoint, demand_record_count(ctx.store, options, today), HOLD_FORECAST)
        return False
    try:
        return _send_endpoint(ctx, client, options, endpoint, today)
    finally:
        report_held(ctx, endpoint, ctx.counts.get(f"held:{endpoint}", 0), HOLD_REORDER_POINT)
        report_held_changed(ctx, endpoint, ctx.counts.pop("held_changed", 0))


def _send_endpoint(
    ctx: JobContext, client: ImportJobsClient, options: Options, endpoint: str, today: date
) -> bool:
    pending: list[Planned] = []
    if ctx.dry_run:
        for chunk in candidates(ctx.store, endpoint, options, today):
            keyed = key_chunk(endpoint, chunk)
            ctx.counts[f"to_send:{endpoint}"] += len(_plan_chunk(ctx, endpoint, keyed))
        return False
    flights = Flights(ctx, client, options, endpoint)
    try:
        # each chunk read, mapped, rendered and hashed in the read-ahead thread
        for keyed in read_ahead_candidates(
            ctx.store, endpoint, options, today, functools.partial(key_chunk, endpoint)
        ):
            ctx.check_stop()
            pending.extend(_plan_chunk(ctx, endpoint, keyed))
            while len(pending) >= options.batch_size:
                batch, pending = pending[: options.batch_size], pending[options.batch_size :]
                if not flights.send(batch):
                    return True  # a job is still open: the next run resumes it
            flights.handle_ready()
        if pending:
            flights.send(pending)
        flights.drain()
    finally:
        flights.close()
    return flights.wrote


def _plan_chunk(ctx: JobContext, endpoint: str, keyed: KeyedChunk) -> list[Planned]:
    """Decide a keyed chunk (`plan.plan_chunk`) against the ledger's hashes of its keys;
    rows the local check refuses are recorded as rejects without a request."""
    decided = plan_chunk(
        endpoint,
        keyed,
        known_hashes(ctx.store, "accepted", endpoint, keyed.keys),
        known_hashes(ctx.store, "failed", endpoint, keyed.keys),
        may_add=endpoint not in ctx.options.upsert_endpoints,
    )
    ctx.counts.update(decided.counts)
    record_refusals(ctx, endpoint, decided.refusals)
    return list(decided.send)


SPEC = JobSpec(
    name="planning.import",
    run=run,
    description="Send changed host planning data to the import-jobs planning API",
    default_schedule=Schedule(interval=3600),
    connectors=("import_jobs",),
    options_model=Options,
)
