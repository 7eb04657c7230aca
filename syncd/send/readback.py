"""Read back before resending: what the remote shows vs. what an unclear attempt meant.

When a write ended without a clear answer (timeout after sending, dropped connection,
5xx, an answer lost at a crash) the remote may or may not have applied it. Resending
blindly can create a second order; giving up can lose one. The next attempt reads the
remote record by its natural key and `compare` decides, over plain data:

- `applied`: the remote already shows the intent as meant -> mark the intent done;
- `not_applied`: the remote does not show it -> send;
- `diverged`: the remote shows something else -> reject, keeping both versions.

`found` is the remote record as read (a plain dict, `None` when the read said "not
found"). For updates the intended record alone cannot tell "not applied" from "someone
else changed it": pass `before` (the version the intent replaces) when it is known;
without it a differing record is `not_applied` (a PUT may safely be sent again).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

Verdict = Literal["applied", "not_applied", "diverged"]

ORDER_FIELDS = ("kind", "placed_at", "attributes", "lines")
ARTICLE_FIELDS = ("name", "is_serial_numbered", "dimensions", "attributes")
KINDS = (
    "orders.create",
    "orders.update",
    "orders.cancel",
    "articles.upload",
    "articles.update",
    "fulfill",
    "close",
)


@dataclass(frozen=True)
class Difference:
    field: str
    intended: Any
    found: Any


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    differences: tuple[Difference, ...] = ()
    reason: str = ""

    def reject_payload(self, intended: Any, found: Any) -> dict[str, Any]:
        """What a `diverged` reject keeps: both versions and the fields that differ."""
        return {
            "intended": intended,
            "found": found,
            "differences": [
                {"field": d.field, "intended": d.intended, "found": d.found}
                for d in self.differences
            ],
        }


def _number(value: Any) -> Any:
    try:
        return Decimal(str(value)).normalize()
    except (InvalidOperation, ValueError):
        return value


def _lines(lines: Any) -> dict[str, tuple[str, Any]]:
    """Order lines keyed by line id: (article, quantity as a number)."""
    out: dict[str, tuple[str, Any]] = {}
    for line in lines or []:
        out[str(line.get("line_id"))] = (str(line.get("article_id")), _number(line.get("qty")))
    return out


def _instant(value: Any) -> Any:
    """An RFC 3339 time as the instant it names: Instock need not echo the text sent
    ("...39.000Z" and "...39+00:00" are one time); text that is not one compares as is."""
    if not isinstance(value, str):
        return value
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return value
    return moment if moment.tzinfo is None else moment.astimezone(UTC)


def _dims(value: Any) -> dict[str, Any]:
    return {k: (v if k == "uom" else _number(v)) for k, v in (value or {}).items()}


def _field_differences(
    intended: Mapping[str, Any],
    found: Mapping[str, Any],
    fields: Sequence[str],
    *,
    own_attributes: bool = False,
) -> tuple[Difference, ...]:
    """Fields the intent sets that the remote shows otherwise (fields the intent leaves
    out are the remote's own and never count). With `own_attributes` (a create) only the
    attributes the intent sets count: attributes Instock adds of its own (as it does at
    decanting) do not make a created record someone else's."""
    diffs: list[Difference] = []
    for field in fields:
        if field not in intended:
            continue
        mine, theirs = intended.get(field), found.get(field)
        if field == "lines":
            equal = _lines(mine) == _lines(theirs)
        elif field == "dimensions":
            equal = _dims(mine) == _dims(theirs)
        elif field == "attributes" and own_attributes:
            theirs = theirs or {}
            equal = all(
                key in theirs and theirs[key] == value for key, value in (mine or {}).items()
            )
        elif field == "placed_at":
            equal = _instant(mine) == _instant(theirs)
        else:
            equal = (mine or None) == (theirs or None)
        if not equal:
            diffs.append(Difference(field, mine, theirs))
    return tuple(diffs)


def _record(
    kind: str,
    intended: Mapping[str, Any],
    found: Mapping[str, Any] | None,
    before: Mapping[str, Any] | None,
    fields: Sequence[str],
    create: bool,
) -> Decision:
    if found is None:
        if create:
            return Decision("not_applied", reason="not found")
        return Decision("diverged", (Difference("exists", True, False),), "gone from the remote")
    diffs = _field_differences(intended, found, fields, own_attributes=create)
    if not diffs:
        return Decision("applied", reason="found as intended")
    if create:
        # Someone else's record under our key, or ours with other content: never ours.
        return Decision("diverged", diffs, "found with other values")
    if before is not None and _field_differences(before, found, fields):
        return Decision("diverged", diffs, "found changed by someone else")
    return Decision("not_applied", diffs, "found as before the update")


def _cancel(found: Mapping[str, Any] | None) -> Decision:
    if found is None:
        return Decision("diverged", (Difference("exists", True, False),), "gone from the remote")
    status = found.get("order_status")
    if status == "canceled":
        return Decision("applied", reason="canceled")
    if status == "registered":
        return Decision("not_applied", reason="still registered")
    return Decision(
        "diverged", (Difference("order_status", "canceled", status),), f"order is {status}"
    )


def _dsorder(found: Mapping[str, Any] | None) -> Decision:
    """DSOrder shows only today's submitted list: closed, open, or absent from it.

    Closed, or absent on the day it was submitted (the list shows every open order of
    the day): done. Listed open: not applied. Absent and submitted earlier (or the day
    unknown): the list cannot tell; sending again is the only way on (a fulfil sets
    totals, a close of a closed order is answered "closed")."""
    listing = (found or {}).get("listing", "absent")
    if listing == "closed":
        return Decision("applied", reason="listed as closed")
    if listing == "absent" and (found or {}).get("submitted_today") is True:
        return Decision("applied", reason="no longer listed on the day it was submitted")
    return Decision("not_applied", reason=f"listing {listing}")


def compare(
    kind: str,
    intended: Mapping[str, Any],
    found: Mapping[str, Any] | None,
    before: Mapping[str, Any] | None = None,
) -> Decision:
    """Decide what an unclear attempt of `kind` did, from the remote record read back.

    `intended`: for orders the order payload, for articles one article, for a cancel
    anything (the wanted state is "canceled"), for DSOrder anything. `found`: the record
    read (Instock order / article, Instock order status for a cancel, for DSOrder
    `{"listing": "closed"|"open"|"absent", "submitted_today": bool|None}`), or None.
    """
    match kind:
        case "orders.create":
            return _record(kind, intended, found, before, ORDER_FIELDS, create=True)
        case "orders.update":
            return _record(kind, intended, found, before, ORDER_FIELDS, create=False)
        case "orders.cancel":
            return _cancel(found)
        case "articles.upload":
            return _record(kind, intended, found, before, ARTICLE_FIELDS, create=True)
        case "articles.update":
            return _record(kind, intended, found, before, ARTICLE_FIELDS, create=False)
        case "fulfill" | "close":
            return _dsorder(found)
    raise ValueError(f"no read-back for intent kind {kind!r}")
