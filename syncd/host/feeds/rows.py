"""One row model per feed (and per CSV row shape of the feeds with lines): the fields a
row has, which are required, and the checks across fields; see docs/host-files.md.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from syncd.host.feeds.fields import (
    MAX_LEAD_TIME_DAYS,
    Attributes,
    Currency,
    Email,
    Flag,
    HostId,
    IsoDate,
    Label,
    LineKey,
    LineQty,
    Location,
    Measure,
    Money,
    OrderedQty,
    OrderId,
    Phone,
    Quantity,
    SignedQuantity,
    Text,
    UnitCost,
    WholeNumber,
    date_text,
    decimal_or_none,
)
from syncd.jsontext import canonical_unicode, decimal_plain


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Dimensions(_Row):
    x: Measure
    y: Measure
    z: Measure
    uom: Literal["mm", "cm", "m", "in"]


class ArticleRow(_Row):
    """One article of the host catalog (CSV and JSON Lines share this model)."""

    article_id: HostId
    name: Text
    description: Text | None = None
    unit: Annotated[str, StringConstraints(min_length=1, max_length=16)] = "EA"
    whole_units: Flag = True
    is_serial_numbered: Flag = False
    dimensions: Dimensions | None = None
    attributes: Attributes = Field(default_factory=dict)

    def staging_values(self) -> tuple[Any, ...]:
        dims = self.dimensions
        return (
            self.article_id,
            self.name,
            self.description,
            self.unit,
            int(self.whole_units),
            int(self.is_serial_numbered),
            None if dims is None else decimal_plain(dims.x),
            None if dims is None else decimal_plain(dims.y),
            None if dims is None else decimal_plain(dims.z),
            None if dims is None else dims.uom,
            canonical_unicode(self.attributes),
        )


class StockRow(_Row):
    """Host book stock of one article at one location."""

    article_id: HostId
    location: Annotated[str, StringConstraints(max_length=128)] = ""
    qty: Quantity
    reorder_point: Quantity | None = None
    qty_reserved: Quantity | None = None

    def staging_values(self) -> tuple[Any, ...]:
        return (
            self.article_id,
            self.location,
            decimal_plain(self.qty),
            decimal_or_none(self.reorder_point),
            decimal_or_none(self.qty_reserved),
        )


class OrderLine(_Row):
    line_id: HostId
    article_id: HostId
    qty: LineQty


def _unique_lines(ids: list[str], field: str) -> None:
    """A record's lines must not repeat their id."""
    seen: set[str] = set()
    for line_id in ids:
        if line_id in seen:
            raise ValueError(f"lines: {field} {line_id!r} appears twice")
        seen.add(line_id)


class OrderRecord(_Row):
    """A JSON Lines order: the whole order (create) or its cancellation."""

    action: Literal["create", "cancel"]
    order_id: OrderId
    placed_at: AwareDatetime | None = None
    attributes: Attributes = Field(default_factory=dict)
    lines: list[OrderLine] = Field(default_factory=list)

    @model_validator(mode="after")
    def _lines_fit_action(self) -> OrderRecord:
        if self.action == "create":
            if not self.lines:
                raise ValueError("lines: a create needs at least one line")
            _unique_lines([line.line_id for line in self.lines], "line_id")
        return self


class OrderCsvRow(_Row):
    """A CSV order row: one line of a created order, or a cancellation."""

    action: Literal["create", "cancel"]
    order_id: OrderId
    line_id: HostId | None = None
    article_id: HostId | None = None
    qty: LineQty | None = None
    placed_at: AwareDatetime | None = None
    attributes: Attributes = Field(default_factory=dict)

    @model_validator(mode="after")
    def _line_on_create(self) -> OrderCsvRow:
        if self.action == "create":
            missing = [n for n in ("line_id", "article_id", "qty") if getattr(self, n) is None]
            if missing:
                raise ValueError(f"{', '.join(missing)}: required on a create row")
        return self


class LocationRow(_Row):
    """One host location (warehouse, store, zone): what Netstock's locations model needs."""

    location_id: HostId
    name: Text
    type: Label | None = None
    location_group: Label | None = None
    active: Flag = True

    def staging_values(self) -> tuple[Any, ...]:
        return (self.location_id, self.name, self.type, self.location_group, int(self.active))


class SupplierRow(_Row):
    """One host supplier."""

    supplier_id: HostId
    name: Text
    type: Label | None = None
    lead_time_days: Annotated[int, Field(ge=0, le=MAX_LEAD_TIME_DAYS), WholeNumber] | None = None
    currency: Currency | None = None
    contact_name: Text | None = None
    contact_email: Email | None = None
    contact_phone: Phone | None = None

    def staging_values(self) -> tuple[Any, ...]:
        return (
            self.supplier_id,
            self.name,
            self.type,
            self.lead_time_days,
            self.currency,
            self.contact_name,
            self.contact_email,
            self.contact_phone,
        )


class SaleRow(_Row):
    """One sales transaction line; a negative qty (and value) is a return."""

    transaction_id: HostId
    line_id: LineKey = ""  # '' when the transaction line needs no number of its own
    sale_date: IsoDate
    order_date: IsoDate | None = None
    article_id: HostId
    location: Location = ""
    customer_id: HostId | None = None
    qty: SignedQuantity
    sales_value: Money | None = None
    cost_of_sales: Money | None = None
    channel: Label | None = None

    def staging_values(self) -> tuple[Any, ...]:
        return (
            self.transaction_id,
            self.line_id,
            self.sale_date.isoformat(),
            date_text(self.order_date),
            self.article_id,
            self.location,
            self.customer_id,
            decimal_plain(self.qty),
            decimal_or_none(self.sales_value),
            decimal_or_none(self.cost_of_sales),
            self.channel,
        )


PoStatus = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]


class PurchaseOrderLine(_Row):
    line_no: HostId
    article_id: HostId
    qty_ordered: OrderedQty
    qty_received: Quantity = Decimal(0)
    unit_cost: UnitCost | None = None
    expected_date: IsoDate | None = None


class PurchaseOrderRecord(_Row):
    """A JSON Lines open purchase order, its lines nested. `expected_date` here is
    the date of every line that gives none of its own."""

    po_number: HostId
    supplier_id: HostId
    location: Location = ""
    order_date: IsoDate
    expected_date: IsoDate | None = None
    status: PoStatus | None = None
    currency: Currency | None = None
    lines: list[PurchaseOrderLine]

    @model_validator(mode="after")
    def _lines_unique(self) -> PurchaseOrderRecord:
        if not self.lines:
            raise ValueError("lines: a purchase order needs at least one line")
        _unique_lines([line.line_no for line in self.lines], "line_no")
        return self


class PurchaseOrderCsvRow(_Row):
    """A CSV purchase order row: one line, with its order's header repeated."""

    po_number: HostId
    supplier_id: HostId
    location: Location = ""
    order_date: IsoDate
    status: PoStatus | None = None
    currency: Currency | None = None
    line_no: HostId
    article_id: HostId
    qty_ordered: OrderedQty
    qty_received: Quantity = Decimal(0)
    unit_cost: UnitCost | None = None
    expected_date: IsoDate | None = None


class PoHistoryRow(_Row):
    """One received or closed PO line, quantities as totals."""

    po_number: HostId
    line_no: HostId
    article_id: HostId
    supplier_id: HostId
    location: Location = ""
    order_date: IsoDate
    expected_date: IsoDate | None = None
    receipt_date: IsoDate | None = None
    qty_ordered: OrderedQty
    qty_received: Quantity
    unit_cost: UnitCost | None = None

    @model_validator(mode="after")
    def _receipt_dated(self) -> PoHistoryRow:
        if self.qty_received > 0 and self.receipt_date is None:
            raise ValueError("receipt_date: required when qty_received > 0")
        return self

    def staging_values(self) -> tuple[Any, ...]:
        return (
            self.po_number,
            self.line_no,
            self.article_id,
            self.supplier_id,
            self.location,
            self.order_date.isoformat(),
            date_text(self.expected_date),
            date_text(self.receipt_date),
            decimal_plain(self.qty_ordered),
            decimal_plain(self.qty_received),
            decimal_or_none(self.unit_cost),
        )
