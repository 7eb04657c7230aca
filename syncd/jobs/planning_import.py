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
  unless `on_missing_forecast = "api_default"`. The reference of a demand record is its
  first sales row (file:line).

Diff: every mapped row gets a hash of its wire JSON and a natural key (the connector's
`row_key`). It is sent when its hash differs from the one a COMPLETED job last accepted
(`planning_import_accepted`) and from the one that last failed (`planning_import_failed`): a
refused row waits until it changes or its reject is retried (`syncd rejects retry`). Rows
the connector's own check refuses (`check_rows`: e.g. a PO line without unit cost) become
rejects without a request. An unchanged host makes no request at all. Each row is rendered
to its canonical JSON once: that text is hashed, kept with its job and sent as is.

Per batch of `batch_size` changed rows: submit (POST, 202 + job), then at once record the job
id with the keys, hashes, host references and payloads of the rows it carries
(`planning_import_jobs.rows`, one JSON array per job), then poll the job with backoff until
COMPLETED or FAILED, then in one transaction: accepted rows recorded, each row-level error a
reject (source `planning:<endpoint>`, reference `<host file>:<line> <key>`, the error's field
and message), job counts stored. Rows are recorded as accepted only when the job accounts
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
"""

from __future__ import annotations

import contextvars
import functools
import json
import queue
import threading
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from json.encoder import encode_basestring_ascii
from typing import Any, Final, Literal, NamedTuple, cast

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from syncd.clock import iso, utcnow
from syncd.config import Duration, Schedule
from syncd.connectors.import_jobs import (
    COMPLETED,
    KINDS,
    PENDING,
    PROCESSING,
    ImportJob,
    ImportJobsClient,
    JobTimeoutError,
    RowError,
    UnsureSubmitError,
    check_rows,
    key_function,
)
from syncd.errors import PermanentError
from syncd.jobs.base import JobContext, JobSpec, take_retried_rejects
from syncd.jsontext import RawJson, canonical, text_hash
from syncd.readahead import read_ahead
from syncd.state import NewReject, Store
from syncd.state.ledger import Ledger

REJECT_SOURCE: Final = "planning:"
LOST: Final = "LOST"
OPEN_STATUSES: Final = (PENDING, PROCESSING)
# The document names a unique (catalog, suppliers) or idempotent (purchase orders) key; an
# inventory level is a state, replaced. Orders and weekly demand may be added again.
UPSERT_ENDPOINTS: Final = ("catalog", "suppliers", "inventory", "purchase-orders")
SUBMITTING: Final = "SUBMITTING"  # recorded before the POST of an import that may add rows
AMBIGUOUS: Final = "AMBIGUOUS"  # ... whose answer was lost: its rows are held as rejects
AMBIGUOUS_ALERT: Final = "planning_import_ambiguous"
# Reference data first, so that what later rows name has been imported already.
ORDER: Final = ("catalog", "suppliers", "inventory", "purchase-orders", "orders", "demand-history")
CHUNK: Final = 500  # host rows read (and accepted/failed looked up) per query
DEMAND_CHUNK: Final = 20  # articles per demand query (x weeks records): small, so planning
# and sending interleave
_PLACES: Final = Decimal("0.000001")  # host decimals keep up to 6 places


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoints: list[str] = Field(
        default_factory=lambda: list(ORDER), description="endpoints to import"
    )
    batch_size: int = Field(500, ge=1, le=10_000, description="rows per import job")
    jobs_in_flight: int = Field(
        4, ge=1, le=16, description="import jobs submitted and not yet finished, at most"
    )
    demand_weeks_back: int = Field(52, ge=0, le=520, description="closed weeks of demand sent")
    include_open_week: bool = Field(
        False,
        description="also send the current, open week (re-sent each run it grows: only "
        "for an API that replaces a week, never one that adds into it)",
    )
    job_timeout: Duration = Field(600.0, description="how long one run polls one job")
    site_location: str = Field("SITE", min_length=1, description="location code for host ''")
    reserved_from_instock: bool = Field(
        True,
        description="site-level inventory quantityReserved from the Instock mirror when the "
        "host gives no qty_reserved",
    )
    on_missing_reorder_point: Literal["hold", "api_default"] = Field(
        "hold",
        description="an inventory row whose host stock gives no reorder_point: hold it "
        "(sending it would reset the planner's minimum quantity to 0), or send it anyway",
    )
    po_received_status: str = Field(
        "RECEIVED",
        min_length=1,
        description="status sent once for a PO that left the open set with stock received",
    )
    po_cancelled_status: str = Field(
        "CANCELLED",
        min_length=1,
        description="status sent once for a PO that left the open set with nothing received",
    )
    po_closed_status: str = Field(
        "CLOSED",
        min_length=1,
        description="status sent once for a PO that left the open set, the host saying no more",
    )
    order_cancelled_status: str = Field(
        "CANCELLED",
        description="status field sent once with a cancelled customer order ('': none; its "
        "lines go with quantity 0 either way)",
    )
    upsert_endpoints: list[str] = Field(
        default_factory=lambda: list(UPSERT_ENDPOINTS),
        description="endpoints that replace a row sent again with the same natural key; the "
        "others may add it again: their lost answers are never re-sent, changed rows held",
    )
    on_missing_forecast: Literal["hold", "api_default"] = Field(
        "hold",
        description="weekly demand (the host has no forecast): hold it (sending it would "
        "overwrite the planner's forecast with actualDemand), or send it anyway",
    )

    @model_validator(mode="after")
    def _open_week_replaced(self) -> Options:
        if self.include_open_week and "demand-history" not in self.upsert_endpoints:
            raise ValueError(
                "include_open_week = true re-sends the open week each run it grows: an API "
                'that adds into a week would count it again. Only with "demand-history" '
                "in upsert_endpoints"
            )
        return self

    @field_validator("endpoints", "upsert_endpoints")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [v for v in value if v not in KINDS]
        if unknown:
            raise ValueError(f"unknown endpoint(s) {unknown}; expected some of {list(KINDS)}")
        return [e for e in ORDER if e in value]


# --- pure mapping ------------------------------------------------------------------------------


def number(value: Any) -> int | float | None:
    """A host quantity or money (int, float, decimal text) as a JSON number: whole values as
    int, others rounded to 6 places; None for None or ''."""
    kind = type(value)
    if kind is int:
        return cast(int, value)
    if kind is float and value.is_integer():
        return int(value)
    if value is None or value == "":
        return None
    try:
        exact = Decimal(str(value)).quantize(_PLACES).normalize()
    except InvalidOperation:
        raise ValueError(f"not a number: {value!r}") from None
    return int(exact) if exact == exact.to_integral_value() else float(exact)


def location_code(location: str | None, site_location: str) -> str:
    return location or site_location


def catalog_row(article: Mapping[str, Any]) -> dict[str, Any]:
    return {"externalId": article["article_id"], "name": article["name"]}


def supplier_row(supplier: Mapping[str, Any]) -> dict[str, Any]:
    return {"externalId": supplier["supplier_id"], "name": supplier["name"]}


def inventory_row(
    stock: Mapping[str, Any], site_location: str, reserved: Any = None
) -> dict[str, Any]:
    """An inventory level: the host's book stock, reorder point (when the host gives one)
    and reserved stock (the host's `qty_reserved`, else `reserved`: Instock's for the site
    row). A field left out takes the API's default (0) on every import."""
    row: dict[str, Any] = {
        "skuId": stock["article_id"],
        "locationId": location_code(stock["location"], site_location),
        "quantityOnHand": number(stock["qty"]) or 0,
    }
    host_reserved = stock.get("qty_reserved")
    if host_reserved is not None:
        row["quantityReserved"] = number(host_reserved)
    elif reserved is not None:
        row["quantityReserved"] = number(reserved)
    if stock.get("reorder_point") is not None:
        row["reorderPoint"] = number(stock["reorder_point"])
    return row


HOLD_REORDER_POINT: Final = (
    "the host gives no reorder_point, and the API would reset the planner's minimum "
    "quantity to 0: give reorder_point in the stock feed, or set "
    'on_missing_reorder_point = "api_default"'
)
HOLD_FORECAST: Final = (
    "the host has no forecast, and the API would overwrite the planner's forecastedDemand "
    'with actualDemand: set on_missing_forecast = "api_default" to send it anyway'
)


def held_reason(endpoint: str, payload: Mapping[str, Any], options: Options) -> str | None:
    """Why a mapped row must not be sent as it is: it would reset a field the planner owns
    (the API's documented default applies to a field left out); None: send it."""
    if (
        endpoint == "inventory"
        and "reorderPoint" not in payload
        and options.on_missing_reorder_point == "hold"
    ):
        return HOLD_REORDER_POINT
    return None


def purchase_order_row(
    header: Mapping[str, Any], lines: Sequence[Mapping[str, Any]], site_location: str
) -> dict[str, Any] | None:
    """An open PO with its outstanding lines; None when nothing is outstanding."""
    out = []
    for line in lines:
        outstanding = Decimal(str(line["qty_ordered"])) - Decimal(str(line["qty_received"] or 0))
        if outstanding <= 0:
            continue
        out.append(
            {
                "skuId": line["article_id"],
                "quantity": number(outstanding),
                "unitCost": number(line["unit_cost"]),  # None: refused locally (required)
            }
        )
    if not out:
        return None
    row: dict[str, Any] = {
        "externalPoNumber": header["po_number"],
        "supplierId": header["supplier_id"],
        "destinationLocationId": location_code(header["location"], site_location),
        "lines": out,
    }
    if header.get("status"):
        row["status"] = header["status"]
    return row


def order_row(
    header: Mapping[str, Any], lines: Sequence[Mapping[str, Any]], site_location: str
) -> dict[str, Any] | None:
    """An open customer order; None when cancelled or without lines."""
    if header.get("status", "open") != "open" or not lines:
        return None
    return {
        "externalOrderId": header["order_id"],
        "lines": [
            {"skuId": ln["article_id"], "quantity": number(ln["qty"]), "locationId": site_location}
            for ln in lines
        ],
    }


CLOSING: Final = ("purchase-orders", "orders")
"""Endpoints whose rows leave the open set: the last accepted row is kept (payload) so that
it can be sent once more, closed."""


def closed_row(last: Mapping[str, Any], status: str | None) -> dict[str, Any]:
    """The last accepted PO or order, closed: its final `status` and nothing outstanding
    (every line's quantity 0), so the planning tool stops counting it whether or not it
    reads the status. The same row again for a row already closed (sent once)."""
    row = dict(last)
    row["lines"] = [{**line, "quantity": 0} for line in last.get("lines") or ()]
    if status:
        row["status"] = status
    return row


def po_final_status(received: bool, known: bool, options: Options) -> str:
    """RECEIVED when the host shows stock received on it (open lines or po_history),
    CANCELLED when it shows its lines and nothing received, CLOSED when it says nothing."""
    if received:
        return options.po_received_status
    return options.po_cancelled_status if known else options.po_closed_status


def week_starting(day: date) -> date:
    """The Monday of `day`'s ISO week."""
    return day - timedelta(days=day.weekday())


@functools.lru_cache(maxsize=1024)
def _monday(day: str) -> str:
    """`week_starting` on ISO text; a year of records names only ~53 distinct weeks."""
    return week_starting(date.fromisoformat(day)).isoformat()


def demand_window(today: date, weeks_back: int, include_open_week: bool) -> tuple[date, date]:
    """[first Monday, end) of the sale dates sent: `weeks_back` closed weeks, and the open
    week (the one holding `today`) when asked."""
    current = week_starting(today)
    end = current + timedelta(days=7) if include_open_week else current
    return current - timedelta(weeks=weeks_back), end


def is_closed_week(week: date, today: date) -> bool:
    """A week is closed (final) once its Sunday is over."""
    return week_starting(week) < week_starting(today)


def demand_row(agg: Mapping[str, Any], site_location: str) -> dict[str, Any]:
    """One weekly record from an aggregate of host sales (article_id, location, channel,
    week, qty)."""
    return demand_record(
        agg["article_id"], agg["location"], agg["channel"], agg["week"], agg["qty"], site_location
    )


def demand_record(
    article_id: str, location: str | None, channel: str | None, week: Any, qty: Any, site: str
) -> dict[str, Any]:
    """`demand_row` from the aggregate's columns (the job's hot path)."""
    return {
        "skuId": article_id,
        "locationId": location or site,
        "weekStarting": _monday(str(week)),
        "channel": channel or "ALL",
        "actualDemand": max(number(qty) or 0, 0),
    }


_DEMAND_FIELDS: Final = frozenset(
    ("actualDemand", "channel", "locationId", "skuId", "weekStarting")
)


def demand_text(record: Mapping[str, Any]) -> str:
    """`canonical(record)` for a `demand_row` record, ~5x faster: the hot path renders
    every weekly record of every article. Anything else goes through `canonical`."""
    qty = record.get("actualDemand")
    if record.keys() != _DEMAND_FIELDS or type(qty) not in (int, float):
        return canonical(record)
    return demand_json(
        cast("int | float", qty),  # its type() is checked above: a bool is neither
        record["channel"],
        record["locationId"],
        record["skuId"],
        record["weekStarting"],
    )


def demand_json(qty: int | float, channel: str, location: str, sku: str, week: str) -> str:
    """The canonical JSON of a weekly record from its parts (the hot path builds no dict)."""
    quote = encode_basestring_ascii
    return (
        f'{{"actualDemand":{qty!r},"channel":{quote(channel)},"locationId":{quote(location)},'
        f'"skuId":{quote(sku)},"weekStarting":{quote(week)}}}'
    )


def weekly_demand(sales: Sequence[Mapping[str, Any]], site_location: str) -> list[dict[str, Any]]:
    """Weekly records from sales rows, in Python (the job does the same in SQL; this is the
    reference the SQL is tested against)."""
    totals: dict[tuple[str, str, str, str], Decimal] = {}
    for sale in sales:
        week = week_starting(date.fromisoformat(sale["sale_date"])).isoformat()
        key = (sale["article_id"], sale.get("location") or "", sale.get("channel") or "ALL", week)
        totals[key] = totals.get(key, Decimal(0)) + Decimal(str(sale["qty"]))
    return [
        demand_row(
            {"article_id": a, "location": loc, "channel": c, "week": w, "qty": q}, site_location
        )
        for (a, loc, c, w), q in sorted(totals.items())
    ]


def row_hash(payload: Mapping[str, Any]) -> str:
    return text_hash(canonical(payload))


def plan_row(
    digest: str, accepted_hash: str | None, failed_hash: str | None, *, may_add: bool = False
) -> str:
    """ "unchanged" (the API has exactly this), "failed" (refused as is: wait for a change or a
    retry), "held_changed" (changed since the API accepted it, and the API `may_add` a row
    sent again beside the old one instead of replacing it) or "send"."""
    if accepted_hash == digest:
        return "unchanged"
    if failed_hash == digest:
        return "failed"
    if may_add and accepted_hash is not None:
        return "held_changed"
    return "send"


class Candidate(NamedTuple):
    """A mapped host row: its wire payload, where it came from (`file:line`) and, when the
    mapping made them already, its canonical JSON text and natural key. `checked`: the
    mapping guarantees what `check_rows` would check, so it is not run for this row (its
    payload may then be None: `text` is the row)."""

    payload: dict[str, Any] | None
    reference: str
    text: str | None = None
    key: str | None = None
    checked: bool = False
    held: str | None = None  # why it is not sent (it would reset what the planner owns)
    closing: bool = False  # the row closes one that left the open set (adds nothing)


class Planned(NamedTuple):
    """A row to send: rendered once (`text`: hashed, kept with its job and sent as is)."""

    key: str
    digest: str
    text: RawJson
    reference: str


# --- host reads (chunked, keyset-paginated: memory does not grow with the host) ----------------


def _ref(row: Mapping[str, Any]) -> str:
    return f"{row['file']}:{row['line']}"


def _pages(
    store: Store, sql: str, keys: tuple[str, ...], params: Sequence[Any] = ()
) -> Iterator[list[dict[str, Any]]]:
    """Rows of `sql` (which ends in `WHERE ... AND (<keys>) > (?...) ORDER BY <keys>`), in
    chunks."""
    last: tuple[Any, ...] = tuple("" for _ in keys)
    while True:
        rows = store.query(sql + f" LIMIT {CHUNK}", [*params, *last])
        if not rows:
            return
        last = tuple(rows[-1][k] for k in keys)
        yield rows


def _children(
    store: Store, table: str, parent: str, parents: Sequence[str], order: str
) -> dict[str, list[dict[str, Any]]]:
    marks = ",".join("?" * len(parents))
    found: dict[str, list[dict[str, Any]]] = {p: [] for p in parents}
    for row in store.query(
        f"SELECT * FROM {table} WHERE {parent} IN ({marks}) ORDER BY {parent}, {order}",
        list(parents),
    ):
        found[row[parent]].append(row)
    return found


def candidates(
    store: Store, endpoint: str, options: Options, today: date
) -> Iterator[list[Candidate]]:
    """The endpoint's rows as mapped from the host tables, chunk by chunk; then, for POs and
    orders, those the API holds that have left the open set, closed."""
    yield from _open_candidates(store, endpoint, options, today)
    if endpoint in CLOSING:
        yield from _closing_candidates(store, endpoint, options)


def _open_candidates(
    store: Store, endpoint: str, options: Options, today: date
) -> Iterator[list[Candidate]]:
    site = options.site_location
    if endpoint == "catalog":
        for rows in _pages(
            store,
            "SELECT * FROM host_articles WHERE (article_id) > (?) ORDER BY article_id",
            ("article_id",),
        ):
            yield [Candidate(catalog_row(r), _ref(r)) for r in rows]
    elif endpoint == "suppliers":
        for rows in _pages(
            store,
            "SELECT * FROM host_suppliers WHERE (supplier_id) > (?) ORDER BY supplier_id",
            ("supplier_id",),
        ):
            yield [Candidate(supplier_row(r), _ref(r)) for r in rows]
    elif endpoint == "inventory":
        reserved = (  # absent from the Instock list: nothing reserved
            "(CASE WHEN s.location = '' THEN coalesce((SELECT i.reserved FROM instock_inventory "
            "i WHERE i.article_id = s.article_id), 0) END)"
            if options.reserved_from_instock
            else "NULL"
        )
        for rows in _pages(
            store,
            f"SELECT s.*, {reserved} AS instock_reserved FROM host_stock s "
            "WHERE (s.article_id, s.location) > (?, ?) ORDER BY s.article_id, s.location",
            ("article_id", "location"),
        ):
            mapped = [inventory_row(r, site, r["instock_reserved"]) for r in rows]
            yield [
                Candidate(p, _ref(r), held=held_reason(endpoint, p, options))
                for p, r in zip(mapped, rows, strict=True)
            ]
    elif endpoint == "purchase-orders":
        for rows in _pages(
            store,
            "SELECT * FROM host_purchase_orders WHERE (po_number) > (?) ORDER BY po_number",
            ("po_number",),
        ):
            lines = _children(
                store,
                "host_purchase_order_lines",
                "po_number",
                [r["po_number"] for r in rows],
                "line_no",
            )
            mapped = [(purchase_order_row(r, lines[r["po_number"]], site), r) for r in rows]
            yield [Candidate(p, _ref(r)) for p, r in mapped if p is not None]
    elif endpoint == "orders":
        for rows in _pages(
            store,
            "SELECT * FROM host_orders WHERE status = 'open' AND (order_id) > (?) "
            "ORDER BY order_id",
            ("order_id",),
        ):
            lines = _children(
                store, "host_order_lines", "order_id", [r["order_id"] for r in rows], "line_id"
            )
            mapped = [(order_row(r, lines[r["order_id"]], site), r) for r in rows]
            yield [Candidate(p, _ref(r)) for p, r in mapped if p is not None]
    elif endpoint == "demand-history":
        yield from demand_candidates(store, options, today)
    else:  # pragma: no cover - Options validates endpoints
        raise ValueError(endpoint)


_STILL_OPEN: Final = {
    # a PO with a line still outstanding; an order the host holds open
    "purchase-orders": "EXISTS (SELECT 1 FROM host_purchase_order_lines l WHERE l.po_number = "
    "a.row_key AND l.qty_ordered - coalesce(l.qty_received, 0) > 0)",
    "orders": "EXISTS (SELECT 1 FROM host_orders o WHERE o.order_id = a.row_key AND "
    "o.status = 'open')",
}
_PO_FACTS: Final = (
    "(EXISTS (SELECT 1 FROM host_purchase_order_lines l WHERE l.po_number = a.row_key AND "
    "l.qty_received > 0) OR EXISTS (SELECT 1 FROM host_po_history h WHERE h.po_number = "
    "a.row_key AND h.qty_received > 0)) AS received, (EXISTS (SELECT 1 FROM "
    "host_purchase_order_lines l WHERE l.po_number = a.row_key) OR EXISTS (SELECT 1 FROM "
    "host_po_history h WHERE h.po_number = a.row_key)) AS known"
)


def _closing_candidates(store: Store, endpoint: str, options: Options) -> Iterator[list[Candidate]]:
    """Rows the API accepted that have left the host's open set (a PO fully received,
    cancelled or gone from the snapshot; a cancelled order): each once more, closed."""
    facts = _PO_FACTS if endpoint == "purchase-orders" else "0 AS received, 0 AS known"
    for rows in _pages(
        store,
        f"SELECT a.row_key, a.payload, {facts} FROM planning_import_accepted a "
        f"WHERE a.endpoint = ? AND a.payload IS NOT NULL AND NOT {_STILL_OPEN[endpoint]} "
        "AND (a.row_key) > (?) ORDER BY a.row_key",
        ("row_key",),
        [endpoint],
    ):
        chunk = []
        for row in rows:
            status = (
                po_final_status(bool(row["received"]), bool(row["known"]), options)
                if endpoint == "purchase-orders"
                else options.order_cancelled_status
            )
            payload = closed_row(json.loads(row["payload"]), status)
            chunk.append(Candidate(payload, f"closed:{row['row_key']}", closing=True))
        yield chunk


def demand_candidates(store: Store, options: Options, today: date) -> Iterator[list[Candidate]]:
    first, end = demand_window(today, options.demand_weeks_back, options.include_open_week)
    if first >= end:
        return
    window = [first.isoformat(), end.isoformat()]
    last = ""
    while True:
        articles = [
            r["article_id"]
            for r in store.query(
                "SELECT DISTINCT article_id FROM host_sales WHERE article_id > ? "
                "AND sale_date >= ? AND sale_date < ? ORDER BY article_id LIMIT ?",
                [last, *window, DEMAND_CHUNK],
            )
        ]
        if not articles:
            return
        last = articles[-1]
        marks = ",".join("?" * len(articles))
        # SQLite: 'weekday 0' moves to the next Sunday (or stays), -6 days is its Monday.
        # The reference is the group's first sales row: the least `file:<line, 9 digits>`,
        # given back as `file:<line>`.
        first = "min(file || ':' || printf('%09d', line))"
        rows = store.db.conn.execute(
            "SELECT article_id, location, coalesce(nullif(channel, ''), 'ALL'), "
            "date(sale_date, 'weekday 0', '-6 days'), total(qty), "
            f"substr({first}, 1, length({first}) - 9) || CAST(substr({first}, -9) AS INTEGER) "
            f"FROM host_sales WHERE article_id IN ({marks}) AND sale_date >= ? "
            "AND sale_date < ? GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
            [*articles, *window],
        )
        site = options.site_location
        chunk = []
        for a, loc, c, w, q, ref in rows:
            location = loc or site
            # A record is valid by construction (text ids, an ISO Monday, a finite number)
            # unless an id is blank: only then is it checked (and refused) like other rows.
            valid = bool(a.strip() and location.strip())
            week = _monday(w)
            key = f"{a}|{location}|{week}|{c}" if valid else None
            if valid and type(q) is float and q.is_integer():
                # the common case, a whole quantity (total() gives a float): rendered from
                # its parts as demand_record + demand_text would (tested), without the dict
                text = demand_json(int(q) if q > 0 else 0, c, location, a, week)
                chunk.append(Candidate(None, ref, text, key, checked=True))
                continue
            record = demand_record(a, loc, c, w, q, site)
            chunk.append(Candidate(record, ref, demand_text(record), key, checked=valid))
        yield chunk


# --- the flow ------------------------------------------------------------------------------


def run(ctx: JobContext) -> None:
    options: Options = ctx.options
    today = utcnow().date()
    with ImportJobsClient(ctx.settings.connectors.import_jobs) as client:
        if not ctx.dry_run:
            _requeue_retried_rejects(ctx)
        blocked = set() if ctx.dry_run else _resume_open_jobs(ctx, client, options)
        for endpoint in options.endpoints:
            ctx.check_stop()
            if endpoint in blocked:
                ctx.counts["endpoints_waiting"] += 1
                continue
            _sync_endpoint(ctx, client, options, endpoint, today)


def _hold_warning(ctx: JobContext, endpoint: str, count: int, reason: str) -> None:
    ctx.counts[f"held:{endpoint}"] = count
    ctx.warnings.append({"endpoint": endpoint, "message": f"{count} row(s) held: {reason}"})
    ctx.log.warning("planning_import_rows_held", endpoint=endpoint, rows=count)


def _demand_records(store: Store, options: Options, today: date) -> int:
    """How many weekly records the window holds (what a held demand-history would send)."""
    first, end = demand_window(today, options.demand_weeks_back, options.include_open_week)
    return int(
        store.scalar(
            "SELECT count(*) FROM (SELECT 1 FROM host_sales WHERE sale_date >= ? AND "
            "sale_date < ? GROUP BY article_id, location, coalesce(nullif(channel, ''), "
            "'ALL'), date(sale_date, 'weekday 0', '-6 days'))",
            [first.isoformat(), end.isoformat()],
        )
        or 0
    )


def _sync_endpoint(
    ctx: JobContext, client: ImportJobsClient, options: Options, endpoint: str, today: date
) -> None:
    if endpoint == "demand-history" and options.on_missing_forecast == "hold":
        held = _demand_records(ctx.store, options, today)
        if held:
            _hold_warning(ctx, endpoint, held, HOLD_FORECAST)
        return
    try:
        _send_endpoint(ctx, client, options, endpoint, today)
    finally:
        held = ctx.counts.get(f"held:{endpoint}", 0)
        if held:
            _hold_warning(ctx, endpoint, held, HOLD_REORDER_POINT)
        changed = ctx.counts.pop("held_changed", 0)
        if changed:
            message = (
                f"{changed} row(s) changed after the API accepted them, held: {endpoint} is "
                "not in upsert_endpoints, so sending them again could count them twice"
            )
            ctx.warnings.append({"endpoint": endpoint, "message": message})
            ctx.counts[f"held_changed:{endpoint}"] = changed
            ctx.log.warning("planning_import_changes_held", endpoint=endpoint, rows=changed)


def _send_endpoint(
    ctx: JobContext, client: ImportJobsClient, options: Options, endpoint: str, today: date
) -> None:
    pending: list[Planned] = []
    if ctx.dry_run:
        for chunk in candidates(ctx.store, endpoint, options, today):
            ctx.counts[f"to_send:{endpoint}"] += len(_plan_chunk(ctx, endpoint, chunk))
        return
    flights = Flights(ctx, client, options, endpoint)
    try:
        for chunk in _read_ahead(ctx.store, endpoint, options, today):
            ctx.check_stop()
            pending.extend(_plan_chunk(ctx, endpoint, chunk))
            while len(pending) >= options.batch_size:
                batch, pending = pending[: options.batch_size], pending[options.batch_size :]
                if not flights.send(batch):
                    return  # a job is still open: the next run resumes it
            flights.handle_ready()
        if pending:
            flights.send(pending)
        flights.drain()
    finally:
        flights.close()


def _read_ahead(
    store: Store, endpoint: str, options: Options, today: date
) -> Iterator[list[Candidate]]:
    """`candidates` read in a helper thread on its own connection: SQLite aggregates the
    next chunk while this thread plans and records the last one."""
    if store.path is None:  # an in-memory store has no second connection
        yield from candidates(store, endpoint, options, today)
        return

    def read() -> Iterator[list[Candidate]]:
        with Store.open(store.path, migrate=False) as reader:  # type: ignore[arg-type]
            yield from candidates(reader, endpoint, options, today)

    yield from read_ahead(read(), depth=2)


LEDGER = Ledger(
    accepted="planning_import_accepted",
    failed="planning_import_failed",
    key=("endpoint", "row_key"),
    hash="row_hash",
)


def _lookup(
    store: Store, which: Literal["accepted", "failed"], endpoint: str, keys: Sequence[str]
) -> dict[str, str]:
    """row_key -> row_hash for `keys` in the accepted or the failed rows of `endpoint`."""
    return {
        r["row_key"]: r["row_hash"]
        for r in LEDGER.rows(
            store, which, {"endpoint": endpoint}, "row_key", keys, ("row_key", "row_hash")
        )
    }


def _plan_chunk(ctx: JobContext, endpoint: str, chunk: Sequence[Candidate]) -> list[Planned]:
    """Each row rendered once; its hash decides against what was accepted and what failed;
    rows to send are checked in one validation call."""
    key_of = key_function(endpoint)
    keyed = []
    held = 0
    closing: set[str] = set()
    for payload, reference, rendered, known_key, checked, why, closes in chunk:
        if why is not None:
            held += 1
            continue
        text = rendered or canonical(payload)
        key = known_key or (payload is not None and key_of(payload)) or f"?{reference}"
        keyed.append((key, text_hash(text), text, payload, reference, checked))
        if closes:
            closing.add(key)
    keys = [k[0] for k in keyed]
    accepted = _lookup(ctx.store, "accepted", endpoint, keys)
    failed = _lookup(ctx.store, "failed", endpoint, keys)
    to_send = []
    actions: Counter[str] = Counter()
    may_add = endpoint not in ctx.options.upsert_endpoints
    for row in keyed:
        action = plan_row(
            row[1],
            accepted.get(row[0]),
            failed.get(row[0]),
            may_add=may_add and row[0] not in closing,  # a closing row adds nothing
        )
        if action == "send":
            to_send.append(row)
        else:
            actions[action] += 1
    actions["send"] += len(to_send)
    if held:
        actions[f"held:{endpoint}"] += held
    ctx.counts.update(actions)
    unchecked = [i for i, row in enumerate(to_send) if not row[5]]
    found = check_rows(endpoint, [to_send[i][3] for i in unchecked]) if unchecked else {}
    bad_rows = {unchecked[n]: why for n, why in found.items()}
    planned: list[Planned] = []
    refusals: list[tuple[str, str, Candidate, str, str | None]] = []
    for index, (key, digest, text, payload, reference, _) in enumerate(to_send):
        if index in bad_rows or key.startswith("?"):
            reason = bad_rows.get(index) or "natural key missing"
            field = reason.split(":", 1)[0] if ":" in reason else None
            refusals.append((key, digest, Candidate(payload, reference), reason, field))
            continue
        planned.append(Planned(key, digest, RawJson(text), reference))
    if refusals:
        ctx.counts["refused"] += len(refusals)
        ctx.counts["rejected"] += len(refusals)
        if not ctx.dry_run:
            with ctx.store.transaction():
                for key, digest, cand, reason, field in refusals:
                    _record_failure(
                        ctx,
                        endpoint,
                        key,
                        digest,
                        None,
                        cand.reference,
                        cand.payload,
                        reason,
                        field,
                    )
    return planned


class _Cancelled(Exception):
    """A helper's job wait ended because the run is ending; the job stays recorded open."""


@dataclass
class _Flight:
    batch: Sequence[Planned]
    job_id: str | None = None  # set once the job is recorded
    local_id: str | None = None  # its SUBMITTING record, before the POST (may_add only)


class Flights:
    """The batches of one endpoint on their way, up to `options.jobs_in_flight` jobs at once.

    Helper threads submit and poll while the next batch is planned here. Submits go one at
    a time, and each job is recorded (on the helpers' own connection) before the next
    submit starts: a crash leaves at most one job the API made and syncd does not know,
    exactly as with one job at a time. Polls run side by side; each outcome comes back
    through one queue and is recorded here, on the job's thread and connection.
    """

    def __init__(
        self, ctx: JobContext, client: ImportJobsClient, options: Options, endpoint: str
    ) -> None:
        self.ctx, self.client, self.options, self.endpoint = ctx, client, options, endpoint
        self.may_add = endpoint not in options.upsert_endpoints  # a re-send may count twice
        self.events: queue.SimpleQueue[tuple[str, _Flight, Any]] = queue.SimpleQueue()
        self.pool = ThreadPoolExecutor(options.jobs_in_flight, thread_name_prefix="import-job")
        self.flying = 0
        self.blocked = False  # a job stayed open past job_timeout: send no more
        self.cancel = threading.Event()
        self.submitting = threading.Lock()  # one submit (and its record) at a time
        # the helpers record submitted jobs on their own connection (an in-memory store has
        # only one: then the job's thread records them, from the queue)
        path = ctx.store.path
        self.recorder = Store.open(path, migrate=False) if path is not None else None

    def send(self, batch: Sequence[Planned]) -> bool:
        """Hand a batch to a helper (after waiting for room); False once a job stayed open."""
        self.ctx.counts[f"to_send:{self.endpoint}"] += len(batch)
        self.handle_ready()
        while self.flying >= self.options.jobs_in_flight and not self.blocked:
            self._handle(*self.events.get())
        if self.blocked:
            return False
        self.ctx.check_stop()
        self.flying += 1
        self.pool.submit(contextvars.copy_context().run, self._fly, _Flight(batch))
        return True

    def handle_ready(self) -> None:
        """Record whatever the helpers have answered so far, without waiting."""
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return
            self._handle(*event)

    def drain(self) -> None:
        """Wait for every job in flight and record its outcome."""
        while self.flying:
            self._handle(*self.events.get())

    def close(self) -> None:
        """Stop (a finished, failed or stopping run): batches not yet submitted are not;
        jobs already submitted are recorded as open, so the next run polls them; their
        waits end at once."""
        self.cancel.set()
        while self.flying:
            kind, flight, value = self.events.get()
            try:
                self._handle(kind, flight, value)
            except Exception as exc:  # the run already ends with its own error
                self.ctx.log.warning(
                    "planning_import_flight_dropped", endpoint=self.endpoint, error=str(exc)
                )
        self.pool.shutdown(wait=True)
        if self.recorder is not None:
            self.recorder.close()

    # helper thread: HTTP, and the record of each submitted job
    def _fly(self, flight: _Flight) -> None:
        try:
            with self.submitting:
                if self.cancel.is_set():
                    raise _Cancelled()
                if self.may_add and self.recorder is not None:
                    # recorded before the POST: a crash before its answer is recorded leaves
                    # this, and the next run holds the rows instead of sending them again
                    flight.local_id = _record_submitting(
                        self.recorder, self.ctx.run_id, self.endpoint, flight.batch
                    )
                try:
                    job = self.client.submit(
                        self.endpoint,
                        [p.text for p in flight.batch],
                        resend_when_unsure=not self.may_add,
                    )
                except UnsureSubmitError:
                    raise
                except BaseException:
                    if flight.local_id is not None and self.recorder is not None:
                        _forget_submitting(self.recorder, flight.local_id)
                        flight.local_id = None
                    raise
                if self.recorder is not None:
                    _record_job(
                        self.recorder,
                        self.ctx.run_id,
                        self.endpoint,
                        job,
                        flight.batch,
                        replaces=flight.local_id,
                    )
        except UnsureSubmitError as exc:
            self.events.put(("unsure", flight, exc))
            return
        except BaseException as exc:
            self.events.put(("failed", flight, exc))
            return
        self.events.put(("posted", flight, job))
        try:
            if self.cancel.is_set():
                raise _Cancelled()
            final = self.client.wait_for_job(
                job.jobId, timeout=self.options.job_timeout, sleep=self._sleep
            )
        except BaseException as exc:
            self.events.put(("failed", flight, exc))
            return
        self.events.put(("done", flight, final))

    def _sleep(self, seconds: float) -> None:
        if self.cancel.wait(seconds) or self.ctx.stopping.is_set():
            raise _Cancelled()

    # the job's thread: SQLite
    def _handle(self, kind: str, flight: _Flight, value: Any) -> None:
        if kind == "posted":
            if self.recorder is None:
                _record_job(self.ctx.store, self.ctx.run_id, self.endpoint, value, flight.batch)
            flight.job_id = value.jobId
            self.ctx.counts["jobs_submitted"] += 1
            self.ctx.counts[f"sent:{self.endpoint}"] += len(flight.batch)
            return
        self.flying -= 1
        if kind == "done":
            _finish(self.ctx, self.endpoint, value)
        elif kind == "unsure":
            rows = [[p.key, p.digest, p.reference, json.loads(p.text)] for p in flight.batch]
            _hold_unsure(self.ctx, self.endpoint, rows, flight.local_id, value.message)
        elif flight.job_id is None:
            if not isinstance(value, _Cancelled):
                raise value  # the submit failed: nothing recorded, the rows are planned again
        elif not isinstance(value, _Cancelled) and not _wait_failed(
            self.ctx, flight.job_id, self.endpoint, value, hold_lost=self.may_add
        ):
            self.blocked = True


def _record_job(
    store: Store,
    run_id: str,
    endpoint: str,
    job: ImportJob,
    batch: Sequence[Planned],
    replaces: str | None = None,
) -> None:
    """A submitted job with the keys, hashes and host references of the rows it carries.

    Recorded as soon as the 202 is in (replacing its SUBMITTING record, if any): a crash
    before this re-sends the batch next run where the endpoint upserts (a second job, no
    duplicate data), and holds it otherwise; after it, the job is polled again."""
    with store.transaction():
        if replaces is not None:
            store.db.execute(
                "UPDATE planning_import_jobs SET job_id = ?, status = ? WHERE job_id = ?",
                [job.jobId, job.status, replaces],
            )
            return
        store.db.execute(
            "INSERT INTO planning_import_jobs (job_id, endpoint, status, row_count, "
            "submitted_at, run_id, rows) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [job.jobId, endpoint, job.status, len(batch), iso(), run_id, job_rows(batch)],
        )


def _record_submitting(store: Store, run_id: str, endpoint: str, batch: Sequence[Planned]) -> str:
    """The batch about to be POSTed to an endpoint that may add rows, under a local id."""
    local_id = f"{SUBMITTING.lower()}:{uuid.uuid4()}"
    with store.transaction():
        store.db.execute(
            "INSERT INTO planning_import_jobs (job_id, endpoint, status, row_count, "
            "submitted_at, run_id, rows) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [local_id, endpoint, SUBMITTING, len(batch), iso(), run_id, job_rows(batch)],
        )
    return local_id


def _forget_submitting(store: Store, local_id: str) -> None:
    """The POST surely was not processed (refused, or never sent): the rows are planned again."""
    with store.transaction():
        store.db.execute("DELETE FROM planning_import_jobs WHERE job_id = ?", [local_id])


def _hold_unsure(
    ctx: JobContext, endpoint: str, rows: Sequence[Sequence[Any]], job_id: str | None, why: str
) -> None:
    """Rows an import may or may not have taken, where sending them again could count them
    twice: each a reject (retry sends it again), the job AMBIGUOUS, an alert open. The API
    lists no jobs, so syncd cannot find out by itself."""
    reason = (
        f"not sent again: {why}. The API lists no jobs to check, and {endpoint} may add "
        "rows rather than replace them (upsert_endpoints): check the planning tool, then "
        "`syncd rejects retry` sends the row again, `syncd rejects drop` leaves it"
    )
    store = ctx.store
    with store.transaction():
        for key, digest, reference, payload in rows:
            _record_failure(ctx, endpoint, key, digest, job_id, reference, payload, reason, None)
        if job_id is not None:
            store.db.execute(
                "UPDATE planning_import_jobs SET status = ?, finished_at = ?, errors = ?, "
                "rows = NULL WHERE job_id = ?",
                [AMBIGUOUS, iso(), json.dumps([why]), job_id],
            )
        store.open_alert(
            AMBIGUOUS_ALERT,
            f"planning.import {endpoint}: {len(rows)} row(s) may or may not have been "
            f"imported ({why}); held as rejects, not sent again",
            subject=endpoint,
        )
    ctx.counts["ambiguous"] += len(rows)
    ctx.counts["rejected"] += len(rows)
    ctx.warnings.append({"endpoint": endpoint, "job_id": job_id, "message": why})
    ctx.log.warning("planning_import_ambiguous", endpoint=endpoint, rows=len(rows))


def job_rows(batch: Sequence[Planned]) -> str:
    """The rows of a job as one JSON array of [row_key, row_hash, reference, payload], in
    submitted order (the payload is the text that was sent, not encoded again)."""
    quote = encode_basestring_ascii
    return (
        "["
        + ",".join(f'[{quote(p.key)},"{p.digest}",{quote(p.reference)},{p.text}]' for p in batch)
        + "]"
    )


def _await(
    ctx: JobContext, client: ImportJobsClient, options: Options, job_id: str, endpoint: str
) -> bool:
    """Poll a job to its end and record the outcome; False when it is still open."""
    try:
        job = client.wait_for_job(job_id, timeout=options.job_timeout)
    except (JobTimeoutError, PermanentError) as exc:
        return _wait_failed(
            ctx, job_id, endpoint, exc, hold_lost=endpoint not in options.upsert_endpoints
        )
    _finish(ctx, endpoint, job)
    return True


def _wait_failed(
    ctx: JobContext, job_id: str, endpoint: str, exc: BaseException, *, hold_lost: bool
) -> bool:
    """A job still open at the timeout (False: it is polled again next run) or unknown to
    the API (True: LOST, its rows are planned again, or held when `hold_lost`: it may have
    imported them); anything else is raised."""
    if isinstance(exc, JobTimeoutError):
        last = exc.job
        ctx.store.db.execute(
            "UPDATE planning_import_jobs SET status = ?, processed_count = ?, failed_count = ? "
            "WHERE job_id = ?",
            [last.status, last.processedCount, last.failedCount, job_id],
        )
        ctx.counts["jobs_open"] += 1
        ctx.warnings.append({"endpoint": endpoint, "job_id": job_id, "message": str(exc)})
        ctx.log.warning("planning_import_job_open", endpoint=endpoint, job_id=job_id)
        return False
    if not isinstance(exc, PermanentError) or exc.status != 404:
        raise exc
    if hold_lost:
        text = ctx.store.scalar("SELECT rows FROM planning_import_jobs WHERE job_id = ?", [job_id])
        _hold_unsure(ctx, endpoint, json.loads(text or "[]"), job_id, f"job unknown: {exc}")
        return True
    with ctx.store.transaction():
        ctx.store.db.execute(
            "UPDATE planning_import_jobs SET status = ?, finished_at = ?, errors = ?, "
            "rows = NULL WHERE job_id = ?",
            [LOST, iso(), json.dumps([str(exc)]), job_id],
        )
    ctx.counts["jobs_lost"] += 1
    ctx.warnings.append({"endpoint": endpoint, "job_id": job_id, "message": f"job unknown: {exc}"})
    return True


def match_errors(
    job: ImportJob, keys: Sequence[str]
) -> tuple[dict[int, list[RowError]], list[RowError]]:
    """Row errors by the index of the sent row they name, and those naming none. The error's
    row index is trusted unless its key names another sent row."""
    index = {k: i for i, k in enumerate(keys)}
    found: dict[int, list[RowError]] = {}
    unmatched: list[RowError] = []
    for error in job.errors:
        seq = error.row
        if error.key and (seq is None or not 0 <= seq < len(keys) or keys[seq] != error.key):
            seq = index.get(error.key, seq)
        if seq is None or not 0 <= seq < len(keys):
            unmatched.append(error)
            continue
        found.setdefault(seq, []).append(error)
    return found, unmatched


def count_mismatch(job: ImportJob, sent: int, refused: int, unmatched: int) -> str | None:
    """Why a COMPLETED job's counts do not account for the rows sent (None: they do).

    Rows are recorded as accepted only when the job names every refused row and its counts
    agree: rowCount = rows sent, failedCount = rows named by errors, and processedCount -
    failedCount = the rows left, i.e. those recorded as accepted. Anything else (errors
    without a row index, a failedCount counting errors, a processedCount counting only the
    imported rows) leaves it open which rows the API took."""
    problems = []
    if unmatched:
        problems.append(f"{unmatched} error(s) name no row sent")
    if job.rowCount != sent:
        problems.append(f"rowCount {job.rowCount} for {sent} rows sent")
    if job.failedCount != refused:
        problems.append(f"failedCount {job.failedCount} but {refused} row(s) named by errors")
    if job.processedCount - job.failedCount != sent - refused:
        problems.append(
            f"processedCount - failedCount = {job.processedCount - job.failedCount}, "
            f"not the {sent - refused} row(s) no error names"
        )
    return "; ".join(problems) or None


UNACCOUNTED_ALERT: Final = "planning_import_unaccounted"


def _finish(ctx: JobContext, endpoint: str, job: ImportJob) -> None:
    """Record a terminal job in one transaction: accepted rows, rejects, counts. The job's
    rows stay in SQLite (accepted ones are copied over from the job's JSON in one
    statement); they are read into Python only when some were refused or the counts do
    not add up (then no row is recorded as accepted: each is a reject and an alert opens)."""
    store = ctx.store
    rows: list[list[Any]] = []
    errors: dict[int, list[RowError]] = {}
    unmatched: list[RowError] = []
    sent = store.scalar("SELECT row_count FROM planning_import_jobs WHERE job_id = ?", [job.jobId])
    sent = int(sent or 0)
    clean = not job.errors and job.rowCount == job.processedCount == sent and not job.failedCount
    if not clean:
        text = store.scalar("SELECT rows FROM planning_import_jobs WHERE job_id = ?", [job.jobId])
        rows = json.loads(text or "[]")
        sent = len(rows)
        errors, unmatched = match_errors(job, [r[0] for r in rows])
    mismatch = (
        count_mismatch(job, sent, len(errors), len(unmatched))
        if job.succeeded and not clean
        else None
    )
    refused = json.dumps(list(range(sent)) if mismatch else sorted(errors))
    # the job's rows that were not refused: (row_key, row_hash)
    taken = (
        "SELECT json_extract(r.value, '$[0]') AS row_key, json_extract(r.value, '$[1]') "
        "AS row_hash, "
        + ("json_extract(r.value, '$[3]')" if endpoint in CLOSING else "NULL")
        + " AS payload FROM planning_import_jobs j, json_each(j.rows) r WHERE j.job_id = ? "
        "AND r.key NOT IN (SELECT value FROM json_each(?))"
    )
    now = iso()
    accepted = 0
    with store.transaction():
        for seq, problems in sorted(errors.items()):
            key, digest, reference, payload = rows[seq]
            _record_failure(
                ctx,
                endpoint,
                key,
                digest,
                job.jobId,
                reference,
                payload,
                "; ".join(e.message or "rejected" for e in problems),
                next((e.field for e in problems if e.field), None),
            )
        if mismatch:
            why = (
                f"not recorded as accepted: job {job.jobId} is COMPLETED but its counts do "
                f"not add up ({mismatch}); check the row in the planning tool, then "
                "`syncd rejects retry` sends it again"
            )
            for seq, (key, digest, reference, payload) in enumerate(rows):
                if seq not in errors:
                    _record_failure(
                        ctx, endpoint, key, digest, job.jobId, reference, payload, why, None
                    )
            store.open_alert(
                UNACCOUNTED_ALERT,
                f"planning.import {endpoint}: job {job.jobId} COMPLETED with counts that do "
                f"not add up ({mismatch}); its {sent - len(errors)} row(s) no error names "
                "are kept as rejects, not recorded as accepted",
                subject=endpoint,
            )
        if job.succeeded and not mismatch:
            accepted = LEDGER.accept_selected(
                store,
                {"endpoint": endpoint},
                taken,
                [job.jobId, refused],
                ("row_key", "row_hash", "payload"),
                job_id=job.jobId,
                accepted_at=now,
            )
        store.db.execute(
            "UPDATE planning_import_jobs SET status = ?, row_count = ?, processed_count = ?, "
            "failed_count = ?, errors = ?, finished_at = ?, rows = NULL WHERE job_id = ?",
            [
                job.status,
                job.rowCount,
                job.processedCount,
                job.failedCount,
                json.dumps([e.model_dump(mode="json") for e in unmatched]) if unmatched else None,
                now,
                job.jobId,
            ],
        )
    ctx.counts["rowCount"] += job.rowCount
    ctx.counts["processedCount"] += job.processedCount
    ctx.counts["failedCount"] += job.failedCount
    ctx.counts["pushed"] += accepted
    ctx.counts["rejected"] += sent if mismatch else len(errors)
    ctx.counts["jobs_completed" if job.status == COMPLETED else "jobs_failed"] += 1
    if mismatch:
        ctx.counts["unaccounted"] += sent - len(errors)
    if unmatched or mismatch or not job.succeeded:
        problems = [e.message for e in unmatched]
        if mismatch:
            problems.append(f"counts do not add up: {mismatch}")
        message = "; ".join(problems) or "job FAILED"
        ctx.warnings.append({"endpoint": endpoint, "job_id": job.jobId, "message": message})
        ctx.log.warning(
            "planning_import_job_errors", endpoint=endpoint, job_id=job.jobId, status=job.status
        )


def _record_failure(
    ctx: JobContext,
    endpoint: str,
    key: str,
    digest: str,
    job_id: str | None,
    reference: str,
    payload: Any,
    reason: str,
    field: str | None,
) -> None:
    """A refused row: its reject (tied to the host row) and the hash it was refused with.
    An open reject of an earlier version of the row is superseded (resolved)."""
    LEDGER.fail(
        ctx.store,
        (endpoint, key),
        digest,
        NewReject(
            REJECT_SOURCE + endpoint,
            f"{reference} {key}",
            reason,
            field=field,
            payload={"job_id": job_id, "row": payload},
        ),
        run_id=ctx.run_id,
        job_id=job_id,
    )


def _requeue_retried_rejects(ctx: JobContext) -> None:
    """`syncd rejects retry` on a planning reject: the row is planned (and sent) again."""
    take_retried_rejects(ctx, REJECT_SOURCE, LEDGER.forget_retried)


def _resume_open_jobs(ctx: JobContext, client: ImportJobsClient, options: Options) -> set[str]:
    """Hold the batches a previous run was submitting when it stopped (it may or may not
    have been imported), poll jobs it left open; returns the endpoints whose job is still
    open."""
    for unsure in ctx.store.query(
        "SELECT job_id, endpoint, rows FROM planning_import_jobs WHERE status = ? "
        "ORDER BY submitted_at, job_id",
        [SUBMITTING],
    ):
        _hold_unsure(
            ctx,
            unsure["endpoint"],
            json.loads(unsure["rows"] or "[]"),
            unsure["job_id"],
            "syncd stopped after sending an import and before recording its answer",
        )
    blocked: set[str] = set()
    for job in ctx.store.query(
        "SELECT job_id, endpoint FROM planning_import_jobs WHERE status IN (?, ?) "
        "ORDER BY submitted_at, job_id",
        list(OPEN_STATUSES),
    ):
        ctx.check_stop()
        ctx.counts["jobs_resumed"] += 1
        if job["endpoint"] in blocked or not _await(
            ctx, client, options, job["job_id"], job["endpoint"]
        ):
            blocked.add(job["endpoint"])
    return blocked


SPEC = JobSpec(
    name="planning.import",
    run=run,
    description="Send changed host planning data to the import-jobs planning API",
    default_schedule=Schedule(interval=3600),
    connectors=("import_jobs",),
    options_model=Options,
)
