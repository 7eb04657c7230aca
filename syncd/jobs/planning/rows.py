"""Host rows -> import rows: the pure mapping of `planning.import`, one function per
endpoint (see the job's docstring for what each field is), and the values a mapped row
travels in (`Candidate`, then `Planned`)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from json.encoder import encode_basestring_ascii
from typing import Any, Final, NamedTuple, cast

from syncd.jobs.planning.options import Options
from syncd.jsontext import canonical, text_hash

_PLACES: Final = Decimal("0.000001")  # host decimals keep up to 6 places


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
def monday(day: str) -> str:
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
        "weekStarting": monday(str(week)),
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


class Candidate(NamedTuple):
    """A mapped host row: its wire payload, where it came from (`file:line`) and, when the
    mapping made them already, its canonical JSON text and natural key. `checked`: the
    mapping guarantees what `row_problems` would check, so it is not run for this row (its
    payload may then be None: `text` is the row)."""

    payload: dict[str, Any] | None
    reference: str
    text: str | None = None
    key: str | None = None
    checked: bool = False
    held: str | None = None  # why it is not sent (it would reset what the planner owns)
    closing: bool = False  # the row closes one that left the open set (adds nothing)


class Planned(NamedTuple):
    """A row keyed and rendered once (`text`: its canonical JSON, hashed, kept with its job
    and sent as is), with what planning it needs (a tuple: the hot path makes one per row,
    and the rows to send are these same tuples)."""

    key: str
    digest: str
    text: str
    reference: str
    payload: dict[str, Any] | None = None  # None: `text` is the row
    checked: bool = True  # the mapping guarantees what the local check checks
    closing: bool = False  # it closes a row that left the open set (adds nothing)


def keyed(key_of: Callable[[Mapping[str, Any]], str | None], candidate: Candidate) -> Planned:
    """A candidate rendered (unless it came rendered), hashed (`text_hash`) and keyed: its
    natural key (`key_of`, the endpoint's `key_function`), else `?<reference>` (a row
    without one is refused when planned)."""
    payload, reference, rendered, known_key, checked, _, closes = candidate
    text = rendered or canonical(payload)
    key = known_key or (payload is not None and key_of(payload)) or f"?{reference}"
    return Planned(key, text_hash(text), text, reference, payload, checked, closes)


def job_rows(batch: Sequence[Planned]) -> str:
    """The rows of a job as one JSON array of [row_key, row_hash, reference, payload], in
    submitted order (the payload is the text that was sent, not encoded again)."""
    quote = encode_basestring_ascii
    return (
        "["
        + ",".join(f'[{quote(p.key)},"{p.digest}",{quote(p.reference)},{p.text}]' for p in batch)
        + "]"
    )
