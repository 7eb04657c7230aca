"""What `netstock.export` sends: host rows mapped to Netstock model lines, rendered once.

No remote call here, only reads of the host tables: `map_*` is the mapping, one host row -> one model row, and
`row_json` its JSON line; `RENDERERS` render the same lines fast from plain tuples
(`rendered_lines`, `model_lines`), a row that cannot be sent becomes a `Rejected`, and
`snapshot_hash` is what the export diffs against. The job that drives Netstock's
dataset state machine with these lines is `syncd.jobs.netstock_export`.

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
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation
from json.encoder import encode_basestring_ascii
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from syncd.config import Duration
from syncd.jsontext import json_text
from syncd.state import NewReject, Store
from syncd.state.mirror.host import host_tuples

REJECT_SOURCE = "netstock:export:"  # + model
DEFAULT_MODELS = ("locations", "master", "stocks", "suppliers", "sales", "po", "pohist")


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
    text: str = row[0]  # all text: json_object in SQL
    return text


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


def rendered_lines(
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
    cursor = host_tuples(
        store,
        renderer.sql,
        {"loc": options.default_location, "since": f"-{options.sales_days} days"},
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
    return map(ascii_escaped, rendered_lines(store, model, options))


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
