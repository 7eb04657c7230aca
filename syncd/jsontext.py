"""syncd's one codec: decimals and JSON as text, and the content hashes over that text.

Every byte syncd sends, stores or hashes from a value is spelt here, so that the same value
always reads the same. Some spellings differ on purpose, and each is a named function below
rather than one function with a switch, because the bytes are fixed by what already exists:
a changed spelling would change a stored hash (`planning_import_accepted.row_hash`,
`instock_article_sync.content_hash`, ...) or an outbox key, and re-send everything once.

JSON text:
- `canonical`: sorted keys, no spaces, non-ASCII escaped, anything unknown as its str().
- `canonical_strict`: the same text, but an unknown type is refused (TypeError).
- `canonical_unicode`: sorted keys, no spaces, non-ASCII kept as is, unknown refused.
- `json_text`: as `canonical_strict`, but a Decimal is an exact JSON number
  (`decimal_json`), a date is ISO text, and NaN/Infinity are refused (ValueError).
- `canonical_spaced`: sorted keys, `json.dumps`' default spaced separators.
- `compact`: no spaces, keys in their given order, unknown types as their str().

Decimals:
- `decimal_json`: a Decimal as the JSON number Python prints for the same float, exact.
- `decimal_plain`: a Decimal without exponent or trailing zeros (`7.750` -> `7.75`).
- `json_number`: a Decimal as a JSON-native int (integral) or float (fraction).

Plain JSON values from parsed data: `to_json_value`, `json_safe`, `json_safe_spelt`.

Hashes: `text_hash` (sha256 of the text, as hex, cut to a length) and `content_hash` (the
`text_hash` of `canonical_strict`), and `RawJson`: JSON text rendered once and passed along
as is (the store writes it unchanged, the HTTP layer sends it as the body).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from json.encoder import encode_basestring_ascii
from typing import Any, Final, Literal


class RawJson(str):
    """Text that already is JSON (from `canonical`, or from SQLite's json functions)."""

    __slots__ = ()


# -- JSON text ------------------------------------------------------------------------------

_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str).encode
_STRICT = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode
_UNICODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
_COMPACT = json.JSONEncoder(separators=(",", ":"), default=str).encode
_SPACED = json.JSONEncoder(sort_keys=True).encode


def canonical(value: Any) -> str:
    """Sorted keys, no spaces, anything unknown as its str(): the same value always gives
    the same text, so the text can be hashed and compared."""
    if isinstance(value, RawJson):
        return str(value)
    return _ENCODE(value)


def canonical_strict(value: Any) -> str:
    """`canonical`'s text for JSON-native values; any other type is a TypeError (a hash of a
    payload must not quietly take a Python repr)."""
    return _STRICT(value)


def canonical_unicode(value: Any) -> str:
    """Sorted keys, no spaces, non-ASCII characters as they are (text a person reads in a
    host file); any type JSON has no spelling for is a TypeError."""
    return _UNICODE(value)


def canonical_spaced(value: Any) -> str:
    """Sorted keys with `json.dumps`' default `, ` and `: ` separators, non-ASCII escaped:
    the text behind the keys of DSOrder fulfil intents already queued."""
    return _SPACED(value)


def compact(value: Any) -> str:
    """No spaces, keys in their given order, anything unknown as its str()."""
    return _COMPACT(value)


def json_text(value: Any) -> str:
    """`value` as compact JSON text with sorted keys, rendered once and sent as is.

    The same text `json.dumps(to_json_value(value), sort_keys=True, separators=(",", ":"))`
    gives (non-ASCII escaped), except that a Decimal is exact (`decimal_json`) and a
    non-finite number is refused (ValueError).
    """
    kind = type(value)
    if kind is str:
        return encode_basestring_ascii(value)
    if value is None:
        return "null"
    if kind is int:
        return int.__repr__(value)
    if kind is Decimal:
        return decimal_json(value)
    return _json_other(value)


def _json_other(value: Any) -> str:
    if isinstance(value, str):
        return encode_basestring_ascii(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a finite number")
        return float.__repr__(value)
    if isinstance(value, Decimal):
        return decimal_json(value)
    if isinstance(value, datetime | date):
        return encode_basestring_ascii(value.isoformat())
    if isinstance(value, Mapping):
        items = sorted(((str(k), v) for k, v in value.items()), key=lambda item: item[0])
        return (
            "{" + ",".join(f"{encode_basestring_ascii(k)}:{json_text(v)}" for k, v in items) + "}"
        )
    if isinstance(value, list | tuple):
        return "[" + ",".join(json_text(v) for v in value) + "]"
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# -- decimals -------------------------------------------------------------------------------


def decimal_json(value: Decimal) -> str:
    """An exact Decimal as a JSON number, in the form Python prints the same float.

    Integral -> its integer digits (`5.000` -> `5`); otherwise the digits without trailing
    zeros (`2.50` -> `2.5`, `-9.90` -> `-9.9`), as an exponent below 1e-4 (`0.00001` ->
    `1e-05`), so every value a float holds exactly reads as it always did, and one it does
    not (more than ~15 significant digits) is sent exactly instead of rounded.
    """
    if not value.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    if value == value.to_integral_value():
        return str(int(value))
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    end = len(digits)
    while digits[end - 1] == 0:  # non-integral: a non-zero digit right of the point
        end -= 1
        exponent += 1
    text = "".join(map(str, digits[:end]))
    point = len(text) + exponent  # digits left of the decimal point (may be <= 0)
    if point - 1 < -4:  # Python's float repr: 1e-05, 1.5e-07
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        text = f"{mantissa}e-{1 - point:02d}"
    elif point <= 0:
        text = "0." + "0" * -point + text
    else:
        text = text[:point] + "." + text[point:]
    return "-" + text if sign else text


def decimal_plain(value: Decimal) -> str:
    """`7.750` -> `7.75`, `12.0` -> `12`: the exact value, without exponent or trailing zeros."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def json_number(value: Decimal) -> int | float:
    """A Decimal as a JSON number: integers stay exact, fractions use the shortest float."""
    return int(value) if value == value.to_integral_value() else float(value)


# -- plain JSON values ----------------------------------------------------------------------


def to_json_value(value: Any) -> Any:
    """Plain JSON values: Decimal -> int or float (`json_number`), date/datetime -> ISO text.

    Lossy for a Decimal a float cannot hold; what is sent is `json_text`'s exact rendering.
    """
    if isinstance(value, Decimal):
        return json_number(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_value(v) for v in value]
    return value


def json_safe(value: Any) -> Any:
    """A raw record as valid JSON: NaN/Infinity floats (what `1e400` decodes to) become
    their Python repr as text (`"nan"`, `"inf"`, `"-inf"`)."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def json_safe_spelt(value: Any) -> Any:
    """A parsed record made storable: Decimals as numbers (`json_number`), and non-finite
    numbers as text spelt as the answer had them (`"NaN"`, `"Infinity"`, `"-Infinity"`)."""
    if isinstance(value, dict):
        return {str(k): json_safe_spelt(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe_spelt(v) for v in value]
    if isinstance(value, Decimal):
        return json_number(value) if value.is_finite() else str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return json.dumps(value)
    return value


# -- hashes ---------------------------------------------------------------------------------

# the constructors themselves: `hashlib.new` looks the name up on every call (a hot path
# hashes every row it plans)
_HASHES: Final = {"sha256": hashlib.sha256, "sha1": hashlib.sha1}


def text_hash(
    text: str, length: int | None = 32, *, algorithm: Literal["sha256", "sha1"] = "sha256"
) -> str:
    """The hex digest of `text` (UTF-8), cut to `length` characters (None: whole).

    sha256 everywhere, except the identity of an Instock move, stored as sha1 before this
    module existed (not a security use: a content identity)."""
    digest = _HASHES[algorithm](text.encode(), usedforsecurity=False).hexdigest()
    return digest if length is None else digest[:length]


def content_hash(value: Any) -> str:
    """The identity of a payload's content: `text_hash` of its `canonical_strict` text."""
    return text_hash(canonical_strict(value))
