"""`netstock.export`: send the host's data to Netstock as one dataset import, resumably.

**Diff.** Netstock wants full snapshots. Each run renders every model's rows ONCE, as the
JSON lines that will be sent (`row_json(map_*(row))`: sorted keys, non-ASCII escaped, exact
decimals; rendered fast by `RENDERERS` from plain tuples, text work in SQL), into a temp
table, in one read transaction (no write lock held while rendering), hashing the same text
(`snapshot_hash`); when the hash equals the last dataset that completed successfully,
nothing is sent (no request at all beyond the token-less read of local tables). Otherwise
the rendered text is frozen (one SQL copy) into `netstock_export_rows`, a chunk's worth of
lines per row joined by newlines (a rendered line holds none), so a resumed export sends
exactly the data it started with, byte for byte, and a chunk's request body is built around
the stored text (`JsonLines`, sent as `RawJson`, never parsed or encoded again); a
`netstock_exports` row walks the state machine, persisted after every remote step:

    prepared -> importing -> processing -> complete | failed

- **prepared**: `start_attempted_at` is recorded, then `/dataset/start`. A
  `ConflictError(already_open)` naming a dataset is adopted when we had attempted a start
  (our answer was lost) or when it is empty (no model started); one syncd recorded as
  failed is waiting for Netstock to fail it (`/model/end` answers 202 and the count is
  judged after a timeout period): the run stops, the prepared export is dropped (Netstock
  opened nothing for it) and the next run prepares afresh (an alert after
  `failed_dataset_alert_after`, default 1 h); otherwise it belongs to someone else: an alert (`netstock_export`) is
  opened and the run stops, the export stays prepared.
- **importing**: per model (`models` JSON list, in order): `/model/start` (an
  `already_open` answer or a model seen open in `/model/status` is adopted), chunked
  `/import/<endpoint>` posts (`chunk_size` option, else the connector's), each recorded in
  `netstock_export_chunks` and `models[i].lines_sent` in ONE transaction with the answer;
  then `/model/end` with `total_lines_imported` = the model's rows (an `already_done` answer
  is done). On resume the dataset and models are confirmed with `/dataset/status` and
  `/model/status` first (a dataset opened by this very run skips the former): a count of
  `lines_sent + next chunk` means the last answer was lost and the chunk is recorded as
  `confirmed`; equal means it never arrived and it is sent. An `OutcomeUnknownError` on a
  chunk is checked the same way before anything is resent. Netstock imports
  asynchronously, so its count may lag what it accepted: a count BELOW `lines_sent` (or,
  after an `OutcomeUnknownError`, below `lines_sent + that chunk`) is polled again
  (`settle`: backoff from 1 s doubling to 15 s, for `count_settle_time` seconds at most,
  default 2 min) until it reaches that and holds between two polls (a chunk whose answer
  was lost shows up behind the others), then judged as above. Any other count (or one
  still below `lines_sent` when the time is up) cannot be repaired: the model is ended
  with the intended count, which makes Netstock fail the dataset (a mismatch; the document's
  `/model/end` answers 202 and fails the model after its timeout period, an older reading
  answers 400 at once: both are handled), so the next cycle starts a clean one. A count
  Netstock finds wrong only after the end (lines lost in its import) fails the dataset
  during processing: the status poll sees it, as any failure.
- **processing**: `/dataset/start_processing` (a replay is `already_done`), then
  `/dataset/status` is polled (up to `poll_timeout` seconds per run, then the next run goes
  on) through the status legend (`DatasetStatus`) to `Complete`. `success: true` -> complete
  (its `snapshot_hash` becomes the one to diff against, the frozen rows are dropped); else
  failed: `/dataset/full_audit_log` is stored in `audit` and an alert is opened.

`ctx.check_stop()` runs between remote steps, so a stopping daemon leaves at a checkpoint.

**Mapping** (host table -> Netstock model; rows ordered by key; money stays exact):

- `locations` <- host_locations: location_code=location_id, description=name,
  active=bool(active), group=location_group, type=type.
- `master` <- host_articles: item_code=article_id, description=description or name,
  unique_identifier=attributes gtin/ean/upc/barcode (first present), uom=unit,
  unit_volume=dim_x*dim_y*dim_z in cubic metres when dim_uom is mm/cm/m (else null),
  unit_weight=attributes weight (a number, else null).
- `stocks` (-> /import/stock_by_location) <- host_stock: item_code=article_id,
  location=location or the `default_location` option ('' is the site as a whole),
  stock_on_hand=qty; allocated_stock=Instock `reserved` (instock_inventory) for site rows.
- `suppliers` <- host_suppliers: supplier_code=supplier_id, description=name, type,
  lead_time=lead_time_days.
- `sales` <- host_sales within `sales_days` (default 730) of today: item_code, location
  (as above), order_date=order_date or sale_date, invoice_date=sale_date,
  sales_quantity=qty (negative = return), customer_code=customer_id,
  cost_of_sales, sales_value (exact decimals), transaction_details="<transaction>/<line>".
- `po` <- host_purchase_order_lines joined to host_purchase_orders, lines still
  outstanding (qty_ordered - qty_received > 0): item_code, location (as above),
  supplier_code, order_number=po_number, line_number=line_no, order_date,
  order_quantity=qty_ordered, expected_arrival_date=expected_date,
  outstanding_quantity=qty_ordered-qty_received, order_type=status,
  purchase_unit_cost=unit_cost.
- `pohist` (-> /import/po_hist) <- host_po_history: as `po` plus
  quantity_received=qty_received, date_of_receipt=receipt_date.

Every configured model is sent, an empty one as start + end(0) (a full snapshot: no open
POs is news); when every model is empty nothing is sent at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation
from json.encoder import encode_basestring_ascii
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from syncd.clock import iso
from syncd.config import Duration, Schedule
from syncd.connectors.netstock.answers import JsonLines
from syncd.connectors.netstock.client import NetstockClient
from syncd.connectors.netstock.errors import ConflictError, OutcomeUnknownError
from syncd.connectors.netstock.settings import (
    DEFAULT_MODEL_ENDPOINTS,
    UNVERIFIED_ENDPOINTS,
    configured_chunk_size,
)
from syncd.errors import AlreadyDoneError, PermanentError, StateError
from syncd.jobs.base import JobContext, JobSpec, register
from syncd.jsontext import json_text
from syncd.logs import redactor
from syncd.state import NewReject, Store

ALERT_KIND = "netstock_export"
REJECT_SOURCE = "netstock:export:"  # + model
DEFAULT_MODELS = ("locations", "master", "stocks", "suppliers", "sales", "po", "pohist")
OPEN_STATES = ("prepared", "importing", "processing")
SETTLE_FIRST_POLL = 1.0  # seconds before /model/status is asked again about a lagging count
SETTLE_MAX_POLL = 15.0  # ... doubling up to this


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: list[str] = Field(default_factory=lambda: list(DEFAULT_MODELS))
    chunk_size: int | None = Field(None, ge=1, le=100_000, description="default: connector's")
    default_location: str = Field("MAIN", min_length=1, description="for location ''")
    sales_days: int = Field(730, ge=1, description="sales history sent, in days")
    poll_interval: Duration = Field(10.0, description="between /dataset/status polls")
    poll_timeout: Duration = Field(
        300.0, description="poll this long per run (0: once), then the next run goes on"
    )
    failed_dataset_alert_after: Duration = Field(
        3600.0,
        ge=0,
        description="a dataset syncd failed that Netstock still holds open (its model end is "
        "judged after a timeout period) blocks new exports; alert when it stays open longer",
    )
    integer_fractions: Literal["reject", "round", "floor", "ceil"] = Field(
        "reject",
        description="a fraction in a field the document types integer (stock_on_hand, "
        "order_quantity, ...): reject the row (a reject naming host file and line), or "
        "convert it (round: half away from zero, floor, ceil)",
    )
    count_settle_time: Duration = Field(
        120.0,
        ge=0,
        description="when /model/status counts fewer lines than syncd sent (Netstock imports "
        "asynchronously), poll it this long (backoff 1 s doubling to 15 s) for the count to "
        "catch up before a chunk is taken as lost (0: do not wait)",
    )
    null_fields: Literal["send", "omit"] = Field(
        "send",
        description="a field the host has no value for: sent as null (the document does not "
        "say whether a field may be null), or left out of the line (for a Netstock that "
        "refuses nulls)",
    )


# --- pure mapping -------------------------------------------------------------------------
# `map_*` are the mapping, one host row (a mapping) -> one model row (a dict), as documented
# above; `row_json` is its JSON line. The export renders the same lines faster (`RENDERERS`).


def dec(value: Any) -> Decimal | None:
    """An exact Decimal from a host value (TEXT money, NUMERIC quantity); junk -> None."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        return Decimal(repr(value))
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


class RowRejected(ValueError):
    """A host row that cannot be sent as the document types its fields."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


_ROUNDING: Final = {"round": ROUND_HALF_UP, "floor": ROUND_FLOOR, "ceil": ROUND_CEILING}


@dataclass
class Whole:
    """The document's integer fields (stock_on_hand, order_quantity, lead_time, ...).

    A whole number goes as it is (the same wire text as before); a fraction is converted by
    `rule` (`round`: half away from zero, `floor`, `ceil`; counted in `converted`) or, with
    `reject` (the default), the row is not sent (`RowRejected`); text that is not a number
    is always rejected; null and '' stay null.
    """

    rule: str = "reject"
    converted: int = 0

    def exact(self, value: Any, field: str) -> Decimal | None:
        """The exact number, None for null/'', RowRejected for junk."""
        if value is None or value == "":
            return None
        number = dec(value)
        if number is None:
            raise RowRejected(field, f"{value!r} is not a number (the document types {field} "
                              "as an integer)")  # fmt: skip
        return number

    def value(self, value: Any, field: str) -> Decimal | None:
        number = self.exact(value, field)
        if number is None or number == number.to_integral_value():
            return number
        if self.rule not in _ROUNDING:
            raise RowRejected(
                field,
                f"{number} is not a whole number and the document types {field} as an integer "
                '(netstock.export option integer_fractions = "reject"; "round", "floor" or '
                '"ceil" convert it)',
            )
        self.converted += 1
        return number.to_integral_value(_ROUNDING[self.rule])

    def text(self, value: Any, field: str) -> str:
        """`value` as the JSON text of an integer field."""
        if type(value) is int:
            return int.__repr__(value)
        return json_text(self.value(value, field))


def _attrs(row: Mapping[str, Any]) -> dict[str, Any]:
    try:
        found = json.loads(row.get("attributes") or "{}")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


_TO_METRES = {"mm": Decimal("0.001"), "cm": Decimal("0.01"), "m": Decimal(1)}


def map_location(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "location_code": row["location_id"],
        "description": row["name"],
        "active": bool(row["active"]),
        "group": row.get("location_group"),
        "type": row.get("type"),
    }


def article_extras(row: Mapping[str, Any]) -> tuple[str | None, Decimal | None, Decimal | None]:
    """unique_identifier, unit_volume and unit_weight of a host article."""
    attributes = _attrs(row)
    unique = next(
        (str(attributes[k]) for k in ("gtin", "ean", "upc", "barcode") if attributes.get(k)),
        None,
    )
    volume = None
    factor = _TO_METRES.get(str(row.get("dim_uom") or "").strip().lower())
    dims = [dec(row.get(k)) for k in ("dim_x", "dim_y", "dim_z")]
    if factor is not None and all(d is not None for d in dims):
        x, y, z = (d * factor for d in dims)  # type: ignore[operator]
        volume = (x * y * z).normalize()
    return unique, volume, dec(attributes.get("weight"))


def map_master(row: Mapping[str, Any]) -> dict[str, Any]:
    unique, volume, weight = article_extras(row)
    return {
        "item_code": row["article_id"],
        "description": row.get("description") or row["name"],
        "unique_identifier": unique,
        "uom": row.get("unit"),
        "unit_volume": volume,
        "unit_weight": weight,
    }


def map_stock(
    row: Mapping[str, Any], default_location: str, whole: Whole | None = None
) -> dict[str, Any]:
    whole = whole or Whole()
    out: dict[str, Any] = {
        "item_code": row["article_id"],
        "location": row["location"] or default_location,
        "stock_on_hand": whole.value(row["qty"], "stock_on_hand"),
    }
    if row.get("allocated") is not None:
        out["allocated_stock"] = whole.value(row["allocated"], "allocated_stock")
    return out


def map_supplier(row: Mapping[str, Any], whole: Whole | None = None) -> dict[str, Any]:
    return {
        "supplier_code": row["supplier_id"],
        "description": row["name"],
        "type": row.get("type"),
        "lead_time": (whole or Whole()).value(row.get("lead_time_days"), "lead_time"),
    }


def map_sale(row: Mapping[str, Any], default_location: str) -> dict[str, Any]:
    details = row["transaction_id"] + (f"/{row['line_id']}" if row.get("line_id") else "")
    return {
        "item_code": row["article_id"],
        "location": row["location"] or default_location,
        "order_date": row.get("order_date") or row["sale_date"],
        "invoice_date": row["sale_date"],
        "sales_quantity": dec(row["qty"]),
        "customer_code": row.get("customer_id"),
        "cost_of_sales": dec(row.get("cost_of_sales")),
        "sales_value": dec(row.get("sales_value")),
        "transaction_details": details,
    }


def map_po(
    row: Mapping[str, Any], default_location: str, whole: Whole | None = None
) -> dict[str, Any] | None:
    whole = whole or Whole()
    ordered = whole.exact(row["qty_ordered"], "order_quantity") or Decimal(0)
    received = whole.exact(row["qty_received"], "outstanding_quantity") or Decimal(0)
    outstanding = ordered - received
    if outstanding <= 0:
        return None  # fully received: history, not an open order
    return {
        "item_code": row["article_id"],
        "location": row["location"] or default_location,
        "supplier_code": row["supplier_id"],
        "order_number": row["po_number"],
        "line_number": row["line_no"],
        "order_date": row["order_date"],
        "order_quantity": whole.value(ordered, "order_quantity"),
        "expected_arrival_date": row.get("expected_date"),
        "outstanding_quantity": whole.value(outstanding, "outstanding_quantity"),
        "order_type": row.get("status"),
        "purchase_unit_cost": dec(row.get("unit_cost")),
    }


def map_pohist(
    row: Mapping[str, Any], default_location: str, whole: Whole | None = None
) -> dict[str, Any]:
    whole = whole or Whole()
    return {
        "item_code": row["article_id"],
        "location": row["location"] or default_location,
        "supplier_code": row["supplier_id"],
        "order_number": row["po_number"],
        "line_number": row["line_no"],
        "order_date": row["order_date"],
        "order_quantity": whole.value(row["qty_ordered"], "order_quantity"),
        "quantity_received": whole.value(row["qty_received"], "quantity_received"),
        "date_of_receipt": row.get("receipt_date"),
        "expected_arrival_date": row.get("expected_date"),
        "purchase_unit_cost": dec(row.get("unit_cost")),
    }


def row_json(row: Mapping[str, Any]) -> str:
    """A model row as the JSON line sent: keys sorted, no spaces, non-ASCII escaped, exact
    decimals (`json_text`: an integral Decimal as an integer, others as their digits)."""
    return json_text(row)


# --- rendering -----------------------------------------------------------------------------
# What the export sends: the lines `row_json(map_*(row))` gives (a test holds them equal),
# rendered once each from plain tuples. SQL does the text work (`json_quote`, `or` defaults,
# joins; the default location is `:loc`), Python the numbers (exact Decimals) and the
# article attributes; each line is a template filled in sorted-key order. `json_quote`
# leaves non-ASCII characters as they are: `ascii_escaped` turns them into the \u escapes
# `row_json` writes (the only difference), once per chunk of lines.

_NON_ASCII = re.compile(r"[^\x00-\x7f]+")


def ascii_escaped(text: str) -> str:
    """JSON text with every non-ASCII character \\u-escaped (as `json.dumps` does)."""
    if text.isascii():
        return text
    return _NON_ASCII.sub(lambda m: encode_basestring_ascii(m.group())[1:-1], text)


def _template(*keys: str) -> str:
    assert list(keys) == sorted(keys), keys
    return "{" + ",".join(f'"{key}":%s' for key in keys) + "}"


def _number(value: Any) -> str:
    """A host quantity (NUMERIC: int, float or text) as an exact JSON number, or null."""
    return int.__repr__(value) if type(value) is int else json_text(dec(value))


def _money(value: Any) -> str:
    """Host money (TEXT, exact) as an exact JSON number, or null."""
    return json_text(dec(value))


_LOCATION = "CASE WHEN {col} IS NULL OR {col} = '' THEN :loc ELSE {col} END"


def _render_location(row: tuple[Any, ...], _whole: Whole) -> str:
    return row[0]  # all text: json_object in SQL


_MASTER = _template(
    "description", "item_code", "unique_identifier", "unit_volume", "unit_weight", "uom"
)


def _render_master(row: tuple[Any, ...], _whole: Whole) -> str:
    description, item_code, uom, dim_x, dim_y, dim_z, dim_uom, attributes = row
    if dim_uom is None and (not attributes or attributes == "{}"):
        return _MASTER % (description, item_code, "null", "null", "null", uom)
    extras = article_extras(
        {
            "dim_x": dim_x,
            "dim_y": dim_y,
            "dim_z": dim_z,
            "dim_uom": dim_uom,
            "attributes": attributes,
        }
    )
    return _MASTER % (description, item_code, *map(json_text, extras), uom)


_STOCK = _template("item_code", "location", "stock_on_hand")
_STOCK_ALLOCATED = _template("allocated_stock", "item_code", "location", "stock_on_hand")


def _render_stock(row: tuple[Any, ...], whole: Whole) -> str:
    item_code, location, qty, allocated, _file, _line = row
    on_hand = whole.text(qty, "stock_on_hand")
    if allocated is None:
        return _STOCK % (item_code, location, on_hand)
    return _STOCK_ALLOCATED % (whole.text(allocated, "allocated_stock"), item_code, location,
                               on_hand)  # fmt: skip


_SUPPLIER = _template("description", "lead_time", "supplier_code", "type")


def _render_supplier(row: tuple[Any, ...], whole: Whole) -> str:
    description, lead_time, supplier_code, type_, _file, _line = row
    return _SUPPLIER % (description, whole.text(lead_time, "lead_time"), supplier_code, type_)


_SALE = _template(
    "cost_of_sales", "customer_code", "invoice_date", "item_code", "location", "order_date",
    "sales_quantity", "sales_value", "transaction_details",
)  # fmt: skip


def _render_sale(row: tuple[Any, ...], _whole: Whole) -> str:
    cost, customer, invoice_date, item_code, location, order_date, qty, value, details = row
    return _SALE % (
        _money(cost), customer, invoice_date, item_code, location, order_date, _number(qty),
        _money(value), details,
    )  # fmt: skip


_PO = _template(
    "expected_arrival_date", "item_code", "line_number", "location", "order_date",
    "order_number", "order_quantity", "order_type", "outstanding_quantity",
    "purchase_unit_cost", "supplier_code",
)  # fmt: skip


def _render_po(row: tuple[Any, ...], whole: Whole) -> str | None:
    (expected, item_code, line_number, location, order_date, order_number, qty_ordered,
     qty_received, order_type, unit_cost, supplier_code, _file, _line) = row  # fmt: skip
    ordered = whole.exact(qty_ordered, "order_quantity") or Decimal(0)
    outstanding = ordered - (whole.exact(qty_received, "outstanding_quantity") or Decimal(0))
    if outstanding <= 0:
        return None  # fully received: history, not an open order
    return _PO % (
        expected, item_code, line_number, location, order_date, order_number,
        whole.text(ordered, "order_quantity"), order_type,
        whole.text(outstanding, "outstanding_quantity"), _money(unit_cost), supplier_code,
    )  # fmt: skip


_POHIST = _template(
    "date_of_receipt", "expected_arrival_date", "item_code", "line_number", "location",
    "order_date", "order_number", "order_quantity", "purchase_unit_cost",
    "quantity_received", "supplier_code",
)  # fmt: skip


def _render_pohist(row: tuple[Any, ...], whole: Whole) -> str:
    (receipt_date, expected, item_code, line_number, location, order_date, order_number,
     qty_ordered, unit_cost, qty_received, supplier_code, _file, _line) = row  # fmt: skip
    return _POHIST % (
        receipt_date, expected, item_code, line_number, location, order_date, order_number,
        whole.text(qty_ordered, "order_quantity"), _money(unit_cost),
        whole.text(qty_received, "quantity_received"), supplier_code,
    )  # fmt: skip


@dataclass(frozen=True)
class Renderer:
    """A model's SELECT (parameters :loc, :since; rows in key order) and its line renderer.

    `located`: the model has integer fields (its renderer may raise RowRejected) and its
    SELECT ends with the host row's file and line, which name the row in a reject.
    """

    sql: str
    render: Callable[[tuple[Any, ...], Whole], str | None]
    located: bool = False


RENDERERS: dict[str, Renderer] = {
    "locations": Renderer(
        "SELECT json_object('active', json(CASE WHEN active THEN 'true' ELSE 'false' END), "
        "'description', name, 'group', location_group, 'location_code', location_id, "
        "'type', type) FROM host_locations ORDER BY location_id",
        _render_location,
    ),
    "master": Renderer(
        "SELECT json_quote(coalesce(nullif(description, ''), name)), json_quote(article_id), "
        "json_quote(unit), dim_x, dim_y, dim_z, dim_uom, attributes "
        "FROM host_articles ORDER BY article_id",
        _render_master,
    ),
    "stocks": Renderer(
        "SELECT json_quote(s.article_id), json_quote("
        + _LOCATION.format(col="s.location")
        + "), s.qty, CASE WHEN s.location = '' THEN i.reserved END "
        ", s.file, s.line "
        "FROM host_stock s LEFT JOIN instock_inventory i ON i.article_id = s.article_id "
        "ORDER BY s.article_id, s.location",
        _render_stock,
        located=True,
    ),
    "suppliers": Renderer(
        "SELECT json_quote(name), lead_time_days, json_quote(supplier_id), json_quote(type), "
        "file, line FROM host_suppliers ORDER BY supplier_id",
        _render_supplier,
        located=True,
    ),
    "sales": Renderer(
        "SELECT cost_of_sales, json_quote(customer_id), json_quote(sale_date), "
        "json_quote(article_id), json_quote("
        + _LOCATION.format(col="location")
        + "), json_quote(coalesce(nullif(order_date, ''), sale_date)), qty, sales_value, "
        "json_quote(transaction_id || CASE WHEN line_id IS NULL OR line_id = '' THEN '' "
        "ELSE '/' || line_id END) "
        "FROM host_sales WHERE sale_date >= date('now', :since) "
        "ORDER BY transaction_id, line_id",
        _render_sale,
    ),
    "po": Renderer(
        "SELECT json_quote(l.expected_date), json_quote(l.article_id), json_quote(l.line_no), "
        "json_quote("
        + _LOCATION.format(col="h.location")
        + "), json_quote(h.order_date), json_quote(l.po_number), l.qty_ordered, "
        "l.qty_received, json_quote(h.status), l.unit_cost, json_quote(h.supplier_id), "
        "l.file, l.line "
        "FROM host_purchase_order_lines l JOIN host_purchase_orders h USING (po_number) "
        "ORDER BY l.po_number, l.line_no",
        _render_po,
        located=True,
    ),
    "pohist": Renderer(
        "SELECT json_quote(receipt_date), json_quote(expected_date), json_quote(article_id), "
        "json_quote(line_no), json_quote("
        + _LOCATION.format(col="location")
        + "), json_quote(order_date), json_quote(po_number), qty_ordered, unit_cost, "
        "qty_received, json_quote(supplier_id), file, line "
        "FROM host_po_history ORDER BY po_number, line_no",
        _render_pohist,
        located=True,
    ),
}

MAPPERS: dict[str, Callable[[Mapping[str, Any], Options], dict[str, Any] | None]] = {
    "locations": lambda r, _o: map_location(r),
    "master": lambda r, _o: map_master(r),
    "stocks": lambda r, o: map_stock(r, o.default_location, Whole(o.integer_fractions)),
    "suppliers": lambda r, o: map_supplier(r, Whole(o.integer_fractions)),
    "sales": lambda r, o: map_sale(r, o.default_location),
    "po": lambda r, o: map_po(r, o.default_location, Whole(o.integer_fractions)),
    "pohist": lambda r, o: map_pohist(r, o.default_location, Whole(o.integer_fractions)),
}
"""Model -> the reference mapping of one host row (what `RENDERERS` must match)."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """A host row not sent: where it is (host file and line), the field and why."""

    model: str
    file: str
    line: int
    field: str
    reason: str

    def as_reject(self) -> NewReject:
        return NewReject(
            source=f"{REJECT_SOURCE}{self.model}",
            reference=f"{self.file}:{self.line}",
            reason=self.reason,
            field=self.field,
        )


def _lines(
    store: Store,
    model: str,
    options: Options,
    whole: Whole | None = None,
    rejects: list[Rejected] | None = None,
) -> Iterator[str]:
    """The model's lines as rendered (non-ASCII not yet escaped), from plain tuples; a row
    whose integer field cannot be sent is left out (and appended to `rejects`)."""
    renderer = RENDERERS[model]
    whole = whole or Whole(options.integer_fractions)
    cursor = store.db.conn.cursor()
    cursor.row_factory = None
    cursor.execute(
        renderer.sql, {"loc": options.default_location, "since": f"-{options.sales_days} days"}
    )
    lines: Iterator[str]
    if not renderer.located:  # nothing to check: render at C speed
        lines = filter(None, map(renderer.render, cursor, itertools.repeat(whole)))
    else:
        lines = _checked(model, renderer, cursor, whole, rejects)
    return map(without_nulls, lines) if options.null_fields == "omit" else lines


def without_nulls(line: str) -> str:
    """A rendered line without its null fields (`null_fields = "omit"`); numbers stay exact
    and keys sorted, as rendered."""
    if "null" not in line:
        return line
    fields = json.loads(line, parse_float=Decimal)
    return json_text({k: v for k, v in fields.items() if v is not None})


def _checked(
    model: str,
    renderer: Renderer,
    cursor: Iterable[tuple[Any, ...]],
    whole: Whole,
    rejects: list[Rejected] | None,
) -> Iterator[str]:
    render = renderer.render
    for row in cursor:
        try:
            line = render(row, whole)
        except RowRejected as exc:
            if rejects is not None:
                rejects.append(Rejected(model, str(row[-2]), int(row[-1]), exc.field, exc.reason))
            continue
        if line is not None:
            yield line


def model_lines(store: Store, model: str, options: Options) -> Iterator[str]:
    """The model's rows as JSON lines (`row_json`), rendered once each, streamed from the
    host tables."""
    return map(ascii_escaped, _lines(store, model, options))


def snapshot_hash(store: Store, options: Options) -> tuple[str, int]:
    """sha256 over every model's JSON lines (in order), and the number of lines."""
    digest = hashlib.sha256()
    count = 0
    for model in options.models:
        digest.update(f"\x1e{model}\x1f".encode())
        for text in model_lines(store, model, options):
            digest.update(text.encode() + b"\n")
            count += 1
    return digest.hexdigest(), count


# --- state ---------------------------------------------------------------------------------


def _load(store: Store, export_id: int) -> dict[str, Any]:
    [row] = store.query("SELECT * FROM netstock_exports WHERE id = ?", [export_id])
    row["models"] = json.loads(row["models"])
    return row


def _save(store: Store, export: Mapping[str, Any], **changes: Any) -> None:
    fields = {**changes, "updated_at": iso()}
    if "models" in fields:
        fields["models"] = json.dumps(fields["models"], separators=(",", ":"))
    sets = ", ".join(f"{k} = ?" for k in fields)
    store.db.execute(
        f"UPDATE netstock_exports SET {sets} WHERE id = ?",
        [*fields.values(), export["id"]],
    )


def current_export(store: Store) -> dict[str, Any] | None:
    found = store.scalar(
        "SELECT id FROM netstock_exports WHERE state IN ('prepared', 'importing', 'processing') "
        "ORDER BY id LIMIT 1"
    )
    return _load(store, int(found)) if found is not None else None


def last_success_hash(store: Store) -> str | None:
    return store.scalar(
        "SELECT snapshot_hash FROM netstock_exports WHERE state = 'complete' "
        "ORDER BY id DESC LIMIT 1"
    )


def group_size(ctx: JobContext, options: Options) -> int:
    """Lines per frozen row: the chunk size, so that a chunk is one stored text."""
    return options.chunk_size or configured_chunk_size(ctx.settings.connectors.netstock)


def _freeze(
    store: Store, options: Options, group: int, whole: Whole, rejects: list[Rejected]
) -> tuple[str, list[dict[str, Any]], int]:
    """Render every model once into temp.netstock_frozen, `group` lines per row (joined
    with newlines: a rendered line never holds one), hashing the same text; rows that
    cannot be sent go to `rejects` (not hashed: what is hashed is what is sent)."""
    digest = hashlib.sha256()
    insert = "INSERT INTO temp.netstock_frozen (model, seq, row) VALUES (?, ?, ?)"
    models: list[dict[str, Any]] = []
    total = 0
    for model in options.models:
        digest.update(f"\x1e{model}\x1f".encode())
        lines = _lines(store, model, options, whole, rejects)
        seq = 0
        while batch := list(itertools.islice(lines, group)):
            text = ascii_escaped("\n".join(batch))
            digest.update(text.encode())
            digest.update(b"\n")
            store.db.conn.execute(insert, (model, seq, text))
            seq += len(batch)
        models.append(
            {"model": model, "rows": seq, "state": "pending", "lines_sent": 0, "chunks": 0}
        )
        total += seq
    return digest.hexdigest(), models, total


def record_rejects(store: Store, rejects: list[Rejected], run_id: str | None) -> int:
    """Record the rows left out, each once: one already open (the same row, field and
    reason, from an earlier export of the same data) is not added again."""
    found = store.list_rejects("open", REJECT_SOURCE, limit=len(rejects) + 1_000_000)
    known = {(r["source"], r["reference"], r["field"], r["reason"]) for r in found}
    new = [
        reject
        for reject in map(Rejected.as_reject, rejects)
        if (reject.source, reject.reference, reject.field, reject.reason) not in known
    ]
    with store.transaction():
        return store.add_rejects(new, run_id=run_id)


def prepare(ctx: JobContext, options: Options) -> dict[str, Any] | None:
    """Render the snapshot once: its hash decides, its text is what will be sent.

    The lines go to a temp table in one read transaction (one consistent view of the host
    tables, no write lock on the state DB while rendering); only a snapshot that differs
    from the last successful one is copied (SQL) into netstock_export_rows, with its
    export row, in one short transaction.
    """
    store = ctx.store
    conn = store.db.conn
    conn.execute("DROP TABLE IF EXISTS temp.netstock_frozen")
    conn.execute(
        "CREATE TEMP TABLE netstock_frozen (model TEXT NOT NULL, seq INTEGER NOT NULL, "
        "row TEXT NOT NULL, PRIMARY KEY (model, seq))"
    )
    # The temp table lives as long as the run's connection (dropping it page by page would
    # cost as much as writing it): closing the store discards it.
    own = not conn.in_transaction  # a dry run reads inside the runner's transaction
    if own:
        conn.execute("BEGIN")  # one consistent view of the host tables
    whole, rejects = Whole(options.integer_fractions), []
    try:
        wanted, models, count = _freeze(store, options, group_size(ctx, options), whole, rejects)
    except BaseException:
        if own and conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    if own:
        conn.execute("COMMIT")
    if whole.converted:
        ctx.counts["fractions_converted"] += whole.converted
    if rejects:
        ctx.counts["rejected"] += len(rejects)
        if not ctx.dry_run:
            record_rejects(store, rejects, ctx.run_id)
    if count == 0:
        ctx.counts["empty"] += 1
        return None
    if wanted == last_success_hash(store):
        ctx.counts["unchanged"] += 1
        return None
    now = iso()
    with store.transaction():
        cursor = store.db.execute(
            "INSERT INTO netstock_exports (state, snapshot_hash, models, rows, created_at, "
            "updated_at, run_id) VALUES ('prepared', ?, ?, ?, ?, ?, ?)",
            [wanted, json.dumps(models, separators=(",", ":")), count, now, now, ctx.run_id],
        )
        export_id = int(cursor.lastrowid or 0)
        store.db.execute(
            "INSERT INTO netstock_export_rows (export_id, model, seq, row) "
            "SELECT ?, model, seq, row FROM temp.netstock_frozen ORDER BY model, seq",
            [export_id],
        )
    ctx.counts["prepared"] += 1
    return _load(store, export_id)


# --- the job -------------------------------------------------------------------------------


class _Stop(Exception):
    """The export cannot go on this run (an alert says why)."""


def run(ctx: JobContext) -> None:
    options: Options = ctx.options
    store = ctx.store
    export = current_export(store)
    if export is None:
        export = prepare(ctx, options)
        if export is None:
            return
    elif ctx.dry_run:  # the real run would go on with the export a run before left open
        ctx.counts["would_resume"] += 1
    if ctx.dry_run:
        return
    ctx.check_stop()
    with NetstockClient(ctx.settings.connectors.netstock) as client:
        guesses = [
            f"{m} -> {client.endpoint_for(m)}"
            for m in options.models
            if m in UNVERIFIED_ENDPOINTS
            and client.model_endpoints.get(m) == DEFAULT_MODEL_ENDPOINTS.get(m)
        ]
        if guesses:
            ctx.log.info("netstock_endpoint_unverified", entries=guesses)
        flow = _Flow(ctx, client, options, export)
        try:
            flow.drive()
        except _Stop as exc:
            ctx.log.warning("netstock_export_blocked", reason=str(exc))
            ctx.warnings.append(str(exc))


class _Flow:
    def __init__(
        self, ctx: JobContext, client: NetstockClient, options: Options, export: dict[str, Any]
    ) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.client = client
        self.options = options
        self.export = export
        self.chunk_size = options.chunk_size or client.chunk_size
        self.fresh = False  # this run opened the dataset: nothing to confirm on the server

    # bookkeeping

    def save(self, **changes: Any) -> None:
        with self.store.transaction():
            _save(self.store, self.export, **changes)
        self.export = _load(self.store, self.export["id"])

    @property
    def dataset_id(self) -> str:
        return str(self.export["dataset_id"])

    def drive(self) -> None:
        if self.export["state"] == "prepared":
            self.start_dataset()
        if self.export["state"] == "importing":
            self.import_models()
        if self.export["state"] == "processing":
            self.wait_for_processing()

    # prepared -> importing

    def start_dataset(self) -> None:
        attempted = self.export["start_attempted_at"] is not None
        self.save(start_attempted_at=self.export["start_attempted_at"] or iso())
        try:
            dataset_id = self.client.dataset_start()
            self.fresh = True
        except ConflictError as exc:
            dataset_id = exc.dataset_import_id
            if dataset_id is not None:
                self._closing(dataset_id)
            ours = dataset_id is not None and (attempted or self._empty(dataset_id))
            if not ours:
                message = (
                    f"a Netstock dataset import ({dataset_id or 'id not given'}) is open for "
                    "this user and was not started by this syncd; it must complete (or be "
                    "closed in Netstock) before syncd can export"
                )
                self.store.open_alert(ALERT_KIND, message, subject="dataset_open")
                raise _Stop(message) from None
            self.ctx.counts["adopted"] += 1
            self.ctx.log.warning("netstock_dataset_adopted", dataset_import_id=dataset_id)
        self.save(dataset_id=dataset_id, state="importing", started_at=iso())
        self.ctx.counts["datasets_started"] += 1
        self.ctx.check_stop()

    def _empty(self, dataset_id: str) -> bool:
        """Opened but never used: what our own start looks like when its answer was lost
        and the client's retry met the dataset it had just opened."""
        return not self.client.model_status(dataset_id)

    def _closing(self, dataset_id: str) -> None:
        """Stop if the open dataset is one syncd already failed: its /model/end answered 202
        and Netstock fails it only after its timeout period. It must not be adopted (it is
        doomed); the next run tries again. An alert after `failed_dataset_alert_after`."""
        row = self.store.query(
            "SELECT id, finished_at FROM netstock_exports WHERE dataset_id = ? AND state = "
            "'failed'",
            [dataset_id],
        )
        if not row:
            return
        message = (
            f"Netstock dataset {dataset_id}, which syncd failed (netstock_exports id "
            f"{row[0]['id']}), is still open: Netstock closes it when its model end's timeout "
            "period is over; a new dataset starts after that"
        )
        self.ctx.counts["waiting_for_close"] += 1
        finished = datetime.fromisoformat(str(row[0]["finished_at"]).replace("Z", "+00:00"))
        limit = self.options.failed_dataset_alert_after
        if (datetime.now(UTC) - finished).total_seconds() > limit:
            self.store.open_alert(
                ALERT_KIND,
                f"{message}; it has stayed open for more than {limit:g} s since: close it in "
                "Netstock",
                subject="dataset_open",
            )
        # Netstock opened nothing for this export (it names the failed dataset): drop it, so
        # that the next run freezes the data afresh, with the options then in force.
        with self.store.transaction():
            self.store.db.execute(
                "DELETE FROM netstock_export_rows WHERE export_id = ?", [self.export["id"]]
            )
            self.store.db.execute("DELETE FROM netstock_exports WHERE id = ?", [self.export["id"]])
        raise _Stop(message)

    # importing -> processing

    def server_models(self) -> dict[str, Any]:
        """The latest import of each model type, as /model/status reports it."""
        found: dict[str, Any] = {}
        for state in self.client.model_status(self.dataset_id):
            found[state.model] = state
        return found

    def import_models(self) -> None:
        if not self.fresh:  # resuming: has it moved on without us?
            status = self.client.dataset_status(self.dataset_id)
            if status.is_terminal or status.status.is_processing:
                self.save(state="processing", status_text=status.status_text)
                return
        server = self.server_models()
        for index in range(len(self.export["models"])):
            self.ctx.check_stop()
            entry = self.export["models"][index]
            if entry["state"] == "ended":
                continue
            remote = server.get(entry["model"])
            if entry["state"] == "pending":
                self.start_model(index, remote)
            if self.export["models"][index]["state"] == "open":
                self.send_model(index, remote)
        with contextlib.suppress(AlreadyDoneError):  # a replay: our earlier call went through
            self.client.start_processing(self.dataset_id)
        self.save(state="processing", processing_at=iso())
        self.ctx.check_stop()

    def update_model(self, index: int, **changes: Any) -> None:
        models = self.export["models"]
        models[index] = {**models[index], **changes}
        _save(self.store, self.export, models=models)

    def start_model(self, index: int, remote: Any) -> None:
        model = self.export["models"][index]["model"]
        if remote is None:
            with contextlib.suppress(ConflictError):  # open already: our start went through
                self.client.model_start(self.dataset_id, model)
        with self.store.transaction():
            self.update_model(index, state="open")
        self.export = _load(self.store, self.export["id"])
        self.ctx.counts["models_started"] += 1

    def send_model(self, index: int, remote: Any) -> None:
        entry = self.export["models"][index]
        model, total = entry["model"], entry["rows"]
        if remote is not None and remote.marked_to_end:
            self._ended(index, remote)
            return
        if remote is not None:
            self.reconcile(index, remote.actual_lines_imported)
        while self.export["models"][index]["lines_sent"] < total:
            self.ctx.check_stop()
            entry = self.export["models"][index]
            lines = self.chunk_lines(model, entry["lines_sent"], total)
            try:
                self.client.import_chunk(self.dataset_id, model, lines)
            except PermanentError as exc:
                if exc.status == 404:
                    self.no_endpoint(model, exc)
                if exc.status in (400, 422):
                    self.refused(index, lines.count, exc)
                raise
            except OutcomeUnknownError:
                self.ctx.counts["outcome_unknown"] += 1
                remote = self.server_models().get(model)
                count = remote.actual_lines_imported if remote else 0
                self.reconcile(index, count, in_flight=True)
                continue
            self.record_chunk(index, lines.count, "answer")
        try:
            self.client.model_end(self.dataset_id, model, total)
        except AlreadyDoneError:
            pass
        except PermanentError as exc:
            if exc.code == "line_count_mismatch":
                self.fail(f"model {model}: {exc.message}")
                raise _Stop(f"dataset {self.dataset_id} failed: {exc.message}") from None
            raise
        with self.store.transaction():
            self.update_model(index, state="ended")
        self.export = _load(self.store, self.export["id"])
        self.ctx.counts["models_ended"] += 1

    def refused(self, index: int, count: int, exc: PermanentError) -> None:
        """Netstock refuses a chunk's lines (a 400: e.g. a null where it wants a value). The
        frozen lines would be refused again every run, so this dataset is failed (its model
        ended with the intended count, as for a lost chunk) and the next cycle sends a fresh
        one, rendered with the options then in force (e.g. `null_fields = "omit"`)."""
        entry = self.export["models"][index]
        first = entry["lines_sent"]
        message = (
            f"model {entry['model']}: Netstock refused lines {first + 1}-{first + count} "
            f"of {entry['rows']} ({exc.message}); ending the model with the intended count "
            "fails this dataset, and the next cycle sends a fresh one"
        )
        self.ctx.counts["chunks_refused"] += 1
        with contextlib.suppress(PermanentError):
            self.client.model_end(self.dataset_id, entry["model"], entry["rows"])
        self.fail(message)
        raise _Stop(message) from None

    def no_endpoint(self, model: str, exc: PermanentError) -> None:
        """Netstock has no such import URL: the model -> endpoint map is wrong for this
        tenant. Say which entry, whether it was a guess, and how to change it; the export
        stays where it is until the map is fixed."""
        endpoint = self.client.endpoint_for(model)
        guess = (
            UNVERIFIED_ENDPOINTS.get(model)
            if self.client.model_endpoints.get(model) == (DEFAULT_MODEL_ENDPOINTS.get(model))
            else None
        )
        message = (
            f"Netstock answered 404 for {endpoint} (model {model}): {exc.message}. "
            + (f"That URL is an unverified correction ({guess}). " if guess else "")
            + f"Set connectors.netstock.options.model_endpoints.{model} to the tenant's URL"
            + (' or endpoint_map = "document"' if guess else "")
            + "; the export resumes from here"
        )
        self.store.open_alert(ALERT_KIND, message, subject=f"endpoint:{model}")
        raise _Stop(message) from None

    def _ended(self, index: int, remote: Any) -> None:
        """The server ended the model (our end's answer was lost): check the count."""
        entry = self.export["models"][index]
        if remote.minimum_expected_lines not in (None, entry["rows"]):
            self.ctx.log.error("netstock_model_count", model=entry["model"])
        with self.store.transaction():
            self.update_model(index, state="ended", lines_sent=entry["rows"])
        self.export = _load(self.store, self.export["id"])

    def chunk_lines(self, model: str, first: int, total: int) -> JsonLines:
        """The next chunk's lines as stored (normally one frozen row: rows hold a chunk's
        worth of newline-joined lines), joined with ',' for the request body."""
        wanted = min(self.chunk_size, total - first)
        cursor = self.store.db.conn.cursor()
        cursor.row_factory = None
        found = cursor.execute(
            "SELECT seq, row FROM netstock_export_rows WHERE export_id = ?1 AND model = ?2 "
            "AND seq >= (SELECT coalesce(max(seq), 0) FROM netstock_export_rows "
            "WHERE export_id = ?1 AND model = ?2 AND seq <= ?3) AND seq < ?4 ORDER BY seq",
            [self.export["id"], model, first, first + wanted],
        ).fetchall()
        parts: list[str] = []
        position, missing = first, wanted
        for seq, text in found:
            held = text.count("\n") + 1
            skip = position - seq
            take = min(held - skip, missing)
            if take <= 0:
                continue
            if skip == 0 and take == held:
                parts.append(text)
            else:
                parts.append("\n".join(text.split("\n")[skip : skip + take]))
            position += take
            missing -= take
            if not missing:
                break
        if missing:
            raise StateError(
                f"netstock export {self.export['id']}: frozen lines {position}.."
                f"{first + wanted - 1} of model {model} are missing from netstock_export_rows"
            )
        return JsonLines("\n".join(parts).replace("\n", ","), wanted)

    def record_chunk(self, index: int, rows: int, how: str) -> None:
        entry = self.export["models"][index]
        with self.store.transaction():
            self.store.db.execute(
                "INSERT INTO netstock_export_chunks (dataset_id, model, chunk_no, rows, "
                "first_seq, sent_at, how) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    self.dataset_id,
                    entry["model"],
                    entry["chunks"],
                    rows,
                    entry["lines_sent"],
                    iso(),
                    how,
                ],
            )
            models = list(self.export["models"])
            models[index] = {
                **entry,
                "lines_sent": entry["lines_sent"] + rows,
                "chunks": entry["chunks"] + 1,
            }
            _save(self.store, self.export, models=models)
        self.export["models"] = models  # what was committed: no need to read it back
        self.ctx.counts["chunks_sent" if how == "answer" else "chunks_confirmed"] += 1
        self.ctx.counts["lines_sent"] += rows

    def reconcile(self, index: int, actual: int, *, in_flight: bool = False) -> None:
        """Bring lines_sent in line with the server's count, or fail the dataset.

        `in_flight`: the next chunk was just posted and its outcome is unknown, so the count
        is given the settle time to show it too before the chunk is taken as not arrived.
        """
        entry = self.export["models"][index]
        sent = entry["lines_sent"]
        pending = min(self.chunk_size, entry["rows"] - sent)
        expected = sent + pending if in_flight else sent
        if actual < expected:  # Netstock may not count all it accepted yet: let it settle
            actual = self.settle(entry["model"], actual, expected)
        if actual == sent:
            return
        if actual == sent + pending and pending > 0:
            self.record_chunk(index, pending, "confirmed")  # the answer was lost, not the chunk
            return
        message = (
            f"model {entry['model']}: Netstock holds {actual} lines, syncd recorded {sent} "
            f"(+ one chunk of up to {pending}); ending it with the intended count fails this "
            "dataset so the next cycle sends a clean one"
        )
        with contextlib.suppress(PermanentError):
            self.client.model_end(self.dataset_id, entry["model"], entry["rows"])
        self.fail(message)
        raise _Stop(message)

    def settle(self, model: str, actual: int, expected: int) -> int:
        """A count below what was sent: poll /model/status with backoff (`count_settle_time`
        at most) until the count reaches `expected` and holds between two polls (a chunk
        whose answer was lost shows up behind the others); returns the last count seen."""
        budget = self.options.count_settle_time
        if budget <= 0:
            return actual
        self.ctx.counts["count_waits"] += 1
        self.ctx.log.warning(
            "netstock_count_lagging", model=model, remote_lines=actual, expected=expected
        )
        waited, delay, previous = 0.0, SETTLE_FIRST_POLL, actual
        while waited < budget:
            step = min(delay, budget - waited)
            if self.pause(step):
                self.ctx.check_stop()
            waited += step
            delay = min(delay * 2, SETTLE_MAX_POLL)
            remote = self.server_models().get(model)
            count = remote.actual_lines_imported if remote is not None else 0
            if count >= expected and count == previous:
                self.ctx.log.info("netstock_count_settled", model=model, remote_lines=count)
                return count
            previous = count
        self.ctx.log.warning(
            "netstock_count_unsettled", model=model, remote_lines=previous, expected=expected
        )
        return previous

    def pause(self, seconds: float) -> bool:
        """Wait (True: the daemon is stopping)."""
        return self.ctx.stopping.wait(seconds)

    # processing -> complete | failed

    def wait_for_processing(self) -> None:
        deadline = time.monotonic() + self.options.poll_timeout
        while True:
            status = self.client.dataset_status(self.dataset_id)
            if status.is_success:
                self.complete(status.status_text)
                return
            if status.is_failure:
                self.fail(status.message or f"dataset ended {status.status_text} without success")
                return
            self.save(status_text=status.status_text)
            if time.monotonic() >= deadline or self.ctx.stopping.wait(self.options.poll_interval):
                self.ctx.counts["processing"] += 1
                return

    def complete(self, status_text: str) -> None:
        with self.store.transaction():
            _save(
                self.store,
                self.export,
                state="complete",
                status_text=status_text,
                success=1,
                finished_at=iso(),
            )
            self.store.db.execute(
                "DELETE FROM netstock_export_rows WHERE export_id = ?", [self.export["id"]]
            )
            self.store.resolve_alerts(ALERT_KIND)
        self.ctx.counts["datasets_completed"] += 1
        self.ctx.log.info("netstock_dataset_complete", dataset_import_id=self.dataset_id)

    def fail(self, message: str) -> None:
        try:
            audit = [e.model_dump() for e in self.client.audit_log(self.dataset_id)]
        except PermanentError as exc:
            audit = [{"message": f"audit log unavailable: {exc.message}", "log_type": "error"}]
        # Netstock's text, kept in netstock_exports beside the store's redacted columns.
        message, audit = redactor.text(message), redactor.any(audit)
        with self.store.transaction():
            _save(
                self.store,
                self.export,
                state="failed",
                success=0,
                message=message,
                audit=json.dumps(audit, default=str),
                finished_at=iso(),
            )
            self.store.db.execute(
                "DELETE FROM netstock_export_rows WHERE export_id = ?", [self.export["id"]]
            )
        self.store.open_alert(
            ALERT_KIND,
            f"Netstock dataset {self.dataset_id} failed: {redactor.cut(message, 500)} (audit log in "
            f"netstock_exports id {self.export['id']})",
            subject="dataset_failed",
        )
        self.ctx.counts["datasets_failed"] += 1
        self.ctx.log.error("netstock_dataset_failed", dataset_import_id=self.dataset_id)


SPEC = register(
    JobSpec(
        name="netstock.export",
        run=run,
        description="Export host data to Netstock as a dataset import, resumably, on change",
        default_schedule=Schedule(interval=3600),
        connectors=("netstock",),
        options_model=Options,
    )
)
