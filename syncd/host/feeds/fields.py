"""The value grammar of host files: one field type per kind of value (ids, whole numbers,
exact decimals, flags, dates), each refusing anything else with a reason; see
docs/host-files.md.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, StringConstraints

from syncd.jsontext import decimal_plain

Mode = Literal["snapshot", "delta"]
Format = Literal["csv", "jsonl"]


# A host identifier: printable, no control characters. The host's ids are kept
# as they are; Instock's narrower article-id pattern is the Instock job's check.
HostId = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$"
    ),
]


# Instock's documented order-id pattern: orders in this feed exist to go there.
OrderId = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9_+.:-]{1,128}$")
]

_WHOLE = re.compile(r"-?[0-9]+")  # [0-9], not \d: ASCII digits only
_DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


# Enough digits for any bound below; a longer digit string is out of range as it is.
_MAX_WHOLE_CHARS = 20
# Decimals: at most 18 significant digits with at most 6 after the point, so
# |x| < 10^12; they are stored as exact text and summed by SQLite, which keeps
# such numbers exactly enough (int64 / double) for quantities and money.
_MAX_DIGITS, _MAX_PLACES = 18, 6


# An order line quantity (Instock counts whole units); well inside SQLite's int64.
MAX_LINE_QTY = 1_000_000_000
MAX_LEAD_TIME_DAYS = 3650


def _whole_number(value: Any) -> Any:
    """A whole number as text: ASCII `-?[0-9]+` only (no `+`, `_`, `1e3`, `5.0`, `٣`).

    A JSON value passes unchanged: there the type itself is checked (a JSON
    integer; `"5"` or `5.0` is refused by the strict JSON validation)."""
    if isinstance(value, str):
        text = value.strip()
        if not _WHOLE.fullmatch(text):
            raise ValueError(
                "not a valid integer: ASCII digits with an optional leading '-' "
                "(no '+', exponent, decimal point or separators)"
            )
        if len(text) > _MAX_WHOLE_CHARS:
            raise ValueError(f"out of range ({len(text)} digits)")
        return text  # still text: a CSV cell converts, a JSON string stays refused
    return value


def _exact_decimal(value: Any) -> Any:
    """An exact decimal: text `-?[0-9]+(.[0-9]+)?` (ASCII digits; no `+`, exponent,
    `_`, `,` or other digits), or a JSON number (whose spelling the reader checked
    before: no exponent, no more digits than a double keeps)."""
    if isinstance(value, str):
        text = value.strip()
        if not _DECIMAL.fullmatch(text):
            raise ValueError(
                "not a valid decimal number: ASCII digits with an optional leading '-' and "
                "an optional '.' fraction (no '+', exponent, or ',' '_' separators)"
            )
        return Decimal(text)
    if isinstance(value, bool):
        raise ValueError("a number is needed, not true/false")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        # The shortest repr is the JSON text the file held (see syncd.host.inbox).
        return Decimal(repr(value))
    return value


_Exact = BeforeValidator(_exact_decimal)
WholeNumber = BeforeValidator(_whole_number)
_DECIMAL_DIGITS = {"max_digits": _MAX_DIGITS, "decimal_places": _MAX_PLACES}
_BOOL_WORDS = frozenset({"true", "yes", "1", "false", "no", "0"})


def _flag(value: Any) -> Any:
    """CSV text true/false/yes/no/1/0 (any case); JSON true/false pass unchanged."""
    if isinstance(value, str):
        word = value.strip().lower()
        if word not in _BOOL_WORDS:
            raise ValueError("expected true/false, yes/no or 1/0")
        return word  # still text: a CSV cell converts, a JSON string stays refused
    return value


Flag = Annotated[bool, BeforeValidator(_flag)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1024)]
Measure = Annotated[Decimal, Field(gt=0, **_DECIMAL_DIGITS), _Exact]
Quantity = Annotated[Decimal, Field(ge=0, **_DECIMAL_DIGITS), _Exact]

Attributes = dict[
    Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)],
    Annotated[str, StringConstraints(max_length=4096)],
]


# A location code as in the stock feed: '' (or not given) is the site as a whole.
Location = Annotated[str, StringConstraints(strip_whitespace=True, max_length=128)]


# A second key part that may be empty (a sales line id): '' when not given.
LineKey = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=128, pattern=r"^[^\x00-\x1f\x7f]*$")
]

Label = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


# Signed exact decimals: a sales quantity or value (negative: a return).
SignedQuantity = Annotated[Decimal, Field(**_DECIMAL_DIGITS), _Exact]
Money = Annotated[Decimal, Field(**_DECIMAL_DIGITS), _Exact]
UnitCost = Annotated[Decimal, Field(ge=0, **_DECIMAL_DIGITS), _Exact]
OrderedQty = Annotated[Decimal, Field(gt=0, **_DECIMAL_DIGITS), _Exact]


# An ISO 4217 code; `usd` is read as `USD`.
Currency = Annotated[
    str,
    BeforeValidator(lambda v: v.strip().upper() if isinstance(v, str) else v),
    StringConstraints(pattern=r"^[A-Z]{3}$"),
]

Email = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
]

Phone = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=64, pattern=r"^[0-9+() ./x-]+$")
]

_ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def _iso_date(value: Any) -> Any:
    """A calendar date written `YYYY-MM-DD` (no time, no other spelling)."""
    if isinstance(value, str):
        text = value.strip()
        if not _ISO_DATE.match(text):
            raise ValueError("expected an ISO date YYYY-MM-DD")
        try:
            return date.fromisoformat(text)
        except ValueError as exc:
            raise ValueError(f"not a calendar date: {exc}") from None
    return value  # a date passes; anything else fails the date check after this


IsoDate = Annotated[date, BeforeValidator(_iso_date)]


def date_text(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def decimal_or_none(value: Decimal | None) -> str | None:
    return None if value is None else decimal_plain(value)


LineQty = Annotated[int, Field(gt=0, le=MAX_LINE_QTY), WholeNumber]  # Instock counts whole units
