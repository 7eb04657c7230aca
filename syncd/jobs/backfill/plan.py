"""The backfill's decisions, pure: which period a stream may be backfilled over, the next
step of a backfill from its own cursor, and what a re-pulled step holds that syncd lacks
(missing) or holds otherwise (changed). No I/O: the job reads, these decide, the state
owners write.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from syncd.clock import iso, parse_iso
from syncd.config import Settings
from syncd.errors import ConfigError, UsageError
from syncd.state.mirror.instock_moves import MOVE_FIELDS

# The streams a backfill re-pulls: name -> the window ledger stream its rows go to.
LEDGER_STREAMS: Mapping[str, str] = {
    "instock.moves": "instock.moves",
    "instock.orders": "instock.orders",
    "dsorder.pull": "dsorder.submitted",
}
# The job whose stream it is (the ledger row's `job`) and the connector it reads.
LIVE_JOBS: Mapping[str, tuple[str, str]] = {
    "instock.moves": ("instock.moves", "instock"),
    "instock.orders": ("instock.orders", "instock"),
    "dsorder.pull": ("dsorder.pull", "dsorder"),
}
_TS = 1 + MOVE_FIELDS.index("move_timestamp")  # in a staged row (move_key first)


def check_request(
    stream: str, start: datetime, end: datetime, now: datetime, site_timezone: str
) -> None:
    """Refuse (UsageError, naming the reason) a backfill syncd cannot do as asked: an
    unknown stream, an empty or future period, or for DSOrder a period before the site's
    current day, which its API no longer lists (it lists only today's submitted orders)."""
    if stream not in LEDGER_STREAMS:
        raise UsageError(f"{stream!r}: no backfill for it (streams: {', '.join(LEDGER_STREAMS)})")
    if end <= start:
        raise UsageError(f"--to {iso(end)} is not after --from {iso(start)}")
    if end > now:
        raise UsageError(f"--to {iso(end)} is in the future (now {iso(now)})")
    if stream == "dsorder.pull":
        zone = ZoneInfo(site_timezone)
        midnight = datetime.combine(now.astimezone(zone).date(), time(0), zone)
        if start < midnight:
            raise UsageError(
                f"dsorder.pull: --from {iso(start)} is before the site's current day "
                f"(from {midnight.isoformat()}, daemon.site_timezone {site_timezone}): DSOrder "
                "lists only the orders submitted today, so an earlier period cannot be pulled "
                "again"
            )


def check_connector(settings: Settings, stream: str) -> None:
    """A stream's connector must be enabled for its backfill (ConfigError naming the key)."""
    connector = LIVE_JOBS[stream][1]
    if not getattr(settings.connectors, connector).enabled:
        raise ConfigError(
            f"connectors.{connector}.enabled is false: a {stream} backfill reads {connector}"
        )


@dataclass(frozen=True)
class Step:
    start: datetime
    end: datetime
    last: bool


def next_moves_step(
    cursor: str | None, period_from: datetime, period_to: datetime, step: float
) -> Step | None:
    """The next window of a moves backfill: from its cursor (the end of the last window
    it committed; the period's start at first) at most `step` seconds long; None when the
    period is done. Instock's bounds are inclusive, so consecutive windows share their
    boundary second: a move on it is read twice and journalled once."""
    start = period_from if cursor is None else max(period_from, parse_iso(cursor))
    if start >= period_to:
        return None
    end = min(period_to, start + timedelta(seconds=step))
    return Step(start, end, end >= period_to)


def missing_moves(
    listed: Sequence[tuple[Any, ...]], held: Collection[tuple[str, int]]
) -> list[tuple[Any, ...]]:
    """The moves of a window (staged rows: move_key, *MOVE_FIELDS, extra, request id; in
    the order listed) that the journal lacks, as (move_key, occurrence, *the rest) in
    journal order (time, then as listed). A move's occurrence is its number among the
    identical moves of the window, as instock.moves numbers them, so a move it journalled
    is recognised and identical moves are each journalled once."""
    seen: Counter[str] = Counter()
    out: list[tuple[int, tuple[Any, ...]]] = []
    for index, row in enumerate(listed):
        key = row[0]
        seen[key] += 1
        if (key, seen[key]) not in held:
            out.append((index, (key, seen[key], *row[1:])))
    out.sort(key=lambda pair: (str(pair[1][_TS + 1]), pair[0]))
    return [row for _, row in out]


def move_detail(row: tuple[Any, ...]) -> dict[str, Any]:
    """A missing move (as `missing_moves` returns it) for the differences a backfill shows."""
    return {
        "occurrence": row[1],
        **dict(zip(MOVE_FIELDS, row[2 : 2 + len(MOVE_FIELDS)], strict=True)),
    }


ORDER_FIELDS = ("kind", "placed_at", "attributes", "lines")


@dataclass(frozen=True)
class OrderDiff:
    """A page of Instock's orders list against the mirror: the orders placed in the
    period, those the mirror lacks and those it holds otherwise (field -> [held, listed])."""

    in_period: int = 0
    missing: tuple[str, ...] = ()
    changed: Mapping[str, Mapping[str, list[Any]]] = field(default_factory=dict)


def _decoded(name: str, value: Any) -> Any:
    """Attributes and lines compare as JSON values, not as their text."""
    if name in ("attributes", "lines") and isinstance(value, str):
        return json.loads(value)
    return value


def _placed(value: str | None) -> datetime | None:
    try:
        return None if not value else parse_iso(value)
    except ValueError:
        return None


def diff_orders(
    listed: Sequence[Mapping[str, Any]],
    held: Mapping[str, Mapping[str, Any]],
    period_from: datetime,
    period_to: datetime,
) -> OrderDiff:
    """Listed orders (order_id and ORDER_FIELDS) placed within the period, against the
    mirror rows of the same ids. An order without `placed_at` (optional in Instock's
    document) cannot be placed in a period and is left to the live mirror."""
    missing: list[str] = []
    changed: dict[str, dict[str, list[Any]]] = {}
    in_period = 0
    for order in listed:
        placed = _placed(order.get("placed_at"))
        if placed is None or not period_from <= placed <= period_to:
            continue
        in_period += 1
        mirror = held.get(order["order_id"])
        if mirror is None:
            missing.append(order["order_id"])
            continue
        fields = {
            name: [_decoded(name, mirror.get(name)), _decoded(name, order.get(name))]
            for name in ORDER_FIELDS
        }
        differing = {name: pair for name, pair in fields.items() if pair[0] != pair[1]}
        if differing:
            changed[order["order_id"]] = differing
    return OrderDiff(in_period, tuple(missing), changed)


def submitted_since(period_from: datetime, site_timezone: str) -> datetime | None:
    """Where a DSOrder period's `order_date` filter starts: nowhere (None) when the period
    starts at the site's midnight, so the whole day listed is taken whatever `order_date`
    means (the document says only "date of order": a date-only value, say UTC midnight
    of a day that began earlier or later in the site's zone, is then no reason to leave
    an order out); else the period's start, `order_date` read as the submission instant."""
    local = period_from.astimezone(ZoneInfo(site_timezone))
    return None if local.time() == time(0) else period_from


@dataclass(frozen=True)
class SubmittedDiff:
    """Today's DSOrder list against the stored orders, for a period of today."""

    in_period: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    changed: Mapping[str, list[str | None]] = field(default_factory=dict)  # [stored, listed]


def diff_submitted(
    listed: Sequence[tuple[str, datetime, str | None]],
    stored: Mapping[str, str | None],
    period_from: datetime | None,
    period_to: datetime,
) -> SubmittedDiff:
    """Listed valid orders (order id, order_date, raw hash) submitted within the period
    (order_date is the submission instant; `period_from` None: every order of the day up
    to `period_to`, see `submitted_since`) against the stored ones (order id -> raw hash,
    None for an order stored before hashes were kept: not known to differ)."""
    in_period, missing = [], []
    changed: dict[str, list[str | None]] = {}
    for order_id, order_date, digest in listed:
        if order_date > period_to or (period_from is not None and order_date < period_from):
            continue
        in_period.append(order_id)
        if order_id not in stored:
            missing.append(order_id)
        elif stored[order_id] is not None and digest is not None and stored[order_id] != digest:
            changed[order_id] = [stored[order_id], digest]
    return SubmittedDiff(tuple(in_period), tuple(missing), changed)
