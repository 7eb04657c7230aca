"""The document's field types per model, and the check of import lines against them.

**Field types.** `DOCUMENT_FIELD_TYPES` holds each model's fields as the document types them
(string, integer, number, boolean, date); `import_chunk` refuses mappings whose values do
not fit (an integer field given 2.5, "abc" or 1.7) with `InvalidLineError`, naming the line
and field, before anything is sent. Null is allowed anywhere, unlisted fields are not checked.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import Any, Final


def _fields(
    strings: str = "", integers: str = "", numbers: str = "", **other: str
) -> dict[str, str]:
    types = {}
    for kind, names in (("string", strings), ("integer", integers), ("number", numbers)):
        types.update(dict.fromkeys(names.split(), kind))
    for kind, names in other.items():
        types.update(dict.fromkeys(names.split(), kind))
    return types


_ORDER_STRINGS: Final = "item_code location order_number line_number"

DOCUMENT_FIELD_TYPES: Final[Mapping[str, Mapping[str, str]]] = {
    "locations": _fields("location_code description group type", boolean="active"),
    "suppliers": _fields("supplier_code description type", "lead_time"),
    "master": _fields(
        "item_code description unique_identifier uom superseded_item_code superseded_item_factor",
        numbers="unit_volume unit_weight",
    ),
    "stocks": _fields(
        "item_code location vendor_code supply_type supply_code purchase_uom "
        "purchase_currency_code stocking_indicator group_1",
        "stock_on_hand allocated_stock lead_time minimum_stock minimum_order_quantity "
        "order_multiple",
        "inventory_unit_cost purchase_unit_cost selling_price purchase_factor",
        date="date_added",
    ),
    "groups": _fields("value description", "identifier"),
    "sales": _fields(
        "item_code location customer_code transaction_details",
        "issues_quantity",
        "sales_quantity cost_of_sales sales_value",
        date="order_date invoice_date",
    ),
    "sales_legacy": _fields(
        "item_code location",
        "sales_quantity issues_quantity",
        "cost_of_sales sales_value",
        date="period",
    ),
    "po": _fields(
        f"{_ORDER_STRINGS} supplier_code order_type",
        "order_quantity outstanding_quantity",
        "purchase_unit_cost",
        date="order_date expected_arrival_date",
    ),
    "co": _fields(
        f"{_ORDER_STRINGS} customer_code",
        "order_quantity outstanding_quantity",
        date="order_date requested_date",
    ),
    "transfers": _fields(  # the document shows the customer orders' body
        f"{_ORDER_STRINGS} customer_code",
        "order_quantity outstanding_quantity",
        date="order_date requested_date",
    ),
    "pohist": _fields(
        f"{_ORDER_STRINGS} supplier_code order_urgency",
        "order_quantity quantity_received",
        "purchase_unit_cost",
        date="order_date date_of_receipt expected_arrival_date",
    ),
    "bom": _fields(
        "finished_good_item finished_good_location raw_material_item raw_material_location",
        numbers="ratio",
    ),
    "suppersessions": _fields("old_product_code new_product_code", numbers="factor"),
}


def field_types(model: str, endpoint: str | None = None) -> Mapping[str, str]:
    """The document's field types of a model's lines sent to `endpoint` ({} for ut_*)."""
    if endpoint == "sales_legacy":
        return DOCUMENT_FIELD_TYPES["sales_legacy"]
    return DOCUMENT_FIELD_TYPES.get(model, {})


def value_problem(kind: str, value: Any) -> str | None:
    """Why `value` is not of the document's type `kind` (None: it is, or it is null)."""
    if value is None:
        return None
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int | Decimal | float):
            return f"{value!r} is not an integer"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{value!r} is not an integer"
        if isinstance(value, Decimal) and not value.is_finite():
            return f"{value!r} is not an integer"
        if value != int(value):
            return f"{value} is not a whole number"
        return None
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | Decimal | float):
            return f"{value!r} is not a number"
        return None if math.isfinite(value) else f"{value!r} is not a finite number"
    if kind == "boolean":
        return None if isinstance(value, bool) else f"{value!r} is not a boolean"
    if kind == "date":
        return None if isinstance(value, str | date) else f"{value!r} is not a date"
    return None if isinstance(value, str) else f"{value!r} is not a string"


def line_problems(model: str, endpoint: str | None, row: Mapping[str, Any]) -> list[str]:
    """Each field of an import line whose value is not of the document's type."""
    types = field_types(model, endpoint)
    found = []
    for name, value in row.items():
        kind = types.get(name)
        if kind is not None and (problem := value_problem(kind, value)) is not None:
            found.append(f"{name}: {problem} (the document types it {kind})")
    return found


class InvalidLineError(ValueError):
    """Import lines whose values are not of the document's types; nothing was sent."""

    def __init__(self, model: str, problems: Sequence[str]) -> None:
        self.model = model
        self.problems = list(problems)
        shown = "; ".join(self.problems[:5])
        more = f" (and {len(self.problems) - 5} more)" if len(self.problems) > 5 else ""
        super().__init__(f"model {model}: lines the document does not allow: {shown}{more}")
