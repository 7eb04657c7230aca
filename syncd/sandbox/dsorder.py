"""A stateful DSOrder (store ordering) simulator over real HTTP, following dsorder-api.txt.

Routes are the document's, at the server root (``base_url`` is ``http://127.0.0.1:PORT``):
``GET /orders/submitted``, ``POST /orders/{order_id}/fulfill``, ``POST /orders/{order_id}/close``.
Every answer, errors included, is the envelope ``{"success", "message", "data", "warnings"}``.

Interpretations (the document is short; each choice is written down here):

- **Errors are HTTP 200 with** ``success: false``, as documented: ``"Order with ID {id} was
  not found"`` for an unknown order and ``"Order with ID {id} is already closed"`` for a closed
  one (fulfil and close alike). Only what happens before the application answers with another
  status, still in the envelope: 401 (credentials), 404/405 (unknown route or method), 400 for
  a body that is not parseable JSON at all, and the injected 429/500/503 faults.
- **Auth**: the document names none, so it is configurable: header name (default
  ``Authorization``), scheme (default ``Bearer``; empty means the header carries the bare token)
  and token (``None`` switches auth off). A missing or wrong credential is HTTP 401 with
  ``success: false``; the scheme is compared case-insensitively, the token exactly.
- **Today**: ``GET /orders/submitted`` returns the orders whose submission time falls on the
  current calendar day in the site time zone (``tz``, an IANA name; DST-aware), taking "now"
  from ``clock``. After local midnight yesterday's orders are no longer listed, never again:
  the midnight gap a client must detect. They still exist: fulfil and close keep working on
  them. Orders submitted "later today" than the clock (``at`` in the future, same local day)
  are listed too. The list is ordered by submission time, then order id; query parameters
  are ignored.
- **Closed orders are still listed**: the document says "all submitted orders for current
  day", so today's orders are returned whatever happened to them (fulfilled, finished,
  closed); a client must remember what it already pulled. No status field is added.
  The other plausible readings can be switched on (``closed_listing``): ``"hidden"``
  (a closed order leaves the list) and ``"status"`` (every listed order carries
  ``"status": "open" | "closed"``).
- **The "closed" error wording** is not in the document (only "not found" is): the
  default is ``"Order with ID {id} is already closed"``; ``closed_wording`` switches to
  ``"Order with ID {id} is closed"``, ``"Order {id} not open"`` or an opaque
  ``"Order {id} cannot be changed"`` (see ``CLOSED_WORDINGS``).
- **Timestamps** are Unix milliseconds (ints): ``order_date`` is the submission instant,
  ``delivery_date`` defaults to 06:00 local time on the next day, ``xdock_delivery_date`` is
  null unless given (the generator sets it on some orders, 12 h before delivery),
  ``min_purchase_shelf_life`` is null unless given (the generator sets it on most lines). The
  document's example shows ``min_purchase_shelf_life`` with ten digits (seconds); the text
  says milliseconds, and the text is followed. Optional fields are always present, null when
  unset, as the example does with ``xdock_delivery_date``.
- **Quantities** are JSON numbers: ints stay ints, fractional quantities stay floats (100.5).
  Line numbers are 1000, 2000, ... in submission order.
- **Fulfil body**: a non-empty JSON array of ``{line_number, article_id, quantity,
  finished}``. ``line_number`` must be an integer (an integral float such as ``1000.0`` is
  accepted), ``article_id`` a string, ``quantity`` a finite number >= 0 (not a boolean),
  ``finished`` a boolean; extra fields are ignored. A line number twice in one body is an
  error. Any of these problems answers 200 ``success: false`` naming the item and field
  (e.g. ``"Item 1: quantity must be a number"``, items counted from 0) and changes nothing.
  The body is validated before the order is looked up (model binding comes first), so a bad
  body for an unknown order reports the body problem.
- **Fulfil semantics**: ``quantity`` is the line's TOTAL so far; the latest report replaces
  the previous total (never adds). Over-fulfilment (more than ordered) is accepted silently.
  A report may finish a line; afterwards that line is skipped with the warning ``"Order line
  {n} has already been marked as finished, skipping"`` (still ``success: true``; other lines
  of the same body are applied). An unknown line number is skipped with ``"Order line {n} was
  not found, skipping"``; a report whose ``article_id`` differs from the ordered article is
  skipped with ``"Order line {n} is for article {ordered}, not {reported}, skipping"``.
  Reports are allowed repeatedly until the order is closed; then ``success: false``.
- **Close**: no body is needed (any body is ignored). Close makes the order read-only;
  closing does not require finished lines; a second close answers ``success: false``
  ``"Order with ID {id} is already closed"``.
- **Faults**: the base's kinds (429, 500, 503, slow, drop, malformed, token_expired) per
  route, plus ``fail_soft``: HTTP 200 ``success: false`` ``"Temporary error, please retry"``
  answered instead of running the handler, so it changes nothing. ``drop`` and ``slow`` run
  the handler (the change happens, the client does not learn it). Faulted requests that
  never reach the handler are not counted in the per-order counters, only in the request log.
- **Headers**: the document names no tracing headers; every response carries
  ``X-Request-ID`` and a request's ``X-Correlation-ID`` is recorded in the log.

State for tests: ``sim.state.orders`` (id -> ``Order`` with ``lines`` by line number, each
``OrderLine`` with ordered ``quantity``, current ``fulfilled`` total, ``finished`` and the
``reports`` history), ``closed``/``closed_at``, ``closes`` (successful closes: 0 or 1),
``close_attempts``, ``fulfil_calls`` / ``fulfil_rejected`` and ``pulled``; global counters in
``sim.state.stats``. Read them under ``sim.state.lock`` or through the accessor methods.
"""

from __future__ import annotations

import hmac
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from syncd.sandbox.base import (
    ManualClock,
    Request,
    Response,
    SandboxServer,
    Simulator,
)

__all__ = [
    "CLOSED_LISTINGS",
    "CLOSED_WORDINGS",
    "DEFAULT_ARTICLES",
    "DEFAULT_TOKEN",
    "DSOrderSim",
    "DSOrderState",
    "FulfilCall",
    "LineReport",
    "ManualClock",
    "Order",
    "OrderLine",
    "closed_message",
    "envelope",
    "finished_warning",
    "not_found_message",
    "run",
]

DEFAULT_TOKEN: Final = "dsorder-sandbox-token"  # noqa: S105 - a sandbox credential, not a secret
DEFAULT_TZ: Final = "Europe/Amsterdam"
DEFAULT_SUPPLIER: Final = "SU-000001"
DEFAULT_STORES: Final = tuple(f"ST-{n:07d}" for n in range(1, 6))
DEFAULT_ARTICLES: Final = tuple(f"ART-{n:06d}" for n in range(1, 21))
SCHEDULE_TITLES: Final = ("JIT 1-3+3-5+5-1 3x", "Daily 1x", "Mon-Wed-Fri 3x", "Weekly 1x")
FIRST_ORDER_ID: Final = 100_001
LINE_STEP: Final = 1000
SOFT_FAULT: Final = "fail_soft"
SOFT_FAULT_MESSAGE: Final = "Temporary error, please retry"

Number = int | float


# --- messages and the envelope -------------------------------------------------------------


def envelope(
    success: bool, message: str | None = None, data: Any = None, warnings: Iterable[str] = ()
) -> dict[str, Any]:
    """The one answer shape of DSOrder, success or error."""
    return {"success": success, "message": message, "data": data, "warnings": list(warnings)}


def not_found_message(order_id: str) -> str:
    return f"Order with ID {order_id} was not found"


# The document says only that a closed order answers "an error"; these are the wordings a
# test can switch between (``DSOrderSim(closed_wording=...)`` or ``sim.closed_wording``).
CLOSED_WORDINGS: Final = {
    "already": "Order with ID {order_id} is already closed",
    "is_closed": "Order with ID {order_id} is closed",
    "not_open": "Order {order_id} not open",
    "opaque": "Order {order_id} cannot be changed",  # recognisable only by reading back
}
CLOSED_LISTINGS: Final = ("listed", "hidden", "status")


def closed_message(order_id: str, wording: str = "already") -> str:
    return CLOSED_WORDINGS[wording].format(order_id=order_id)


def finished_warning(line_number: int) -> str:
    return f"Order line {line_number} has already been marked as finished, skipping"


def unknown_line_warning(line_number: int) -> str:
    return f"Order line {line_number} was not found, skipping"


def article_mismatch_warning(line_number: int, ordered: str, reported: str) -> str:
    return f"Order line {line_number} is for article {ordered}, not {reported}, skipping"


def _ok(data: Any = None, warnings: Iterable[str] = ()) -> Response:
    return Response.of_json(envelope(True, None, data, warnings))


def _fail(message: str) -> Response:
    return Response.of_json(envelope(False, message))


def _error_body(status: int, code: str, message: str) -> dict[str, Any]:
    del status, code
    return envelope(False, message)


def millis(ts: float) -> int:
    """Unix seconds to Unix milliseconds (int)."""
    return round(ts * 1000)


# --- model ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LineReport:
    """One line of one fulfil request, as received; ``applied`` is False when it was skipped."""

    at: float
    quantity: Number
    finished: bool
    applied: bool
    warning: str | None = None


@dataclass(slots=True)
class OrderLine:
    line_number: int
    article_id: str
    quantity: Number
    min_purchase_shelf_life: int | None = None
    fulfilled: Number = 0
    finished: bool = False
    reports: list[LineReport] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "line_number": self.line_number,
            "article_id": self.article_id,
            "quantity": self.quantity,
            "min_purchase_shelf_life": self.min_purchase_shelf_life,
        }


@dataclass(frozen=True, slots=True)
class FulfilCall:
    """One fulfil request that reached an existing order (whether accepted or refused)."""

    at: float
    items: tuple[tuple[int, str, Number, bool], ...]
    success: bool
    warnings: tuple[str, ...]


@dataclass(slots=True)
class Order:
    order_id: str
    supplier_id: str
    store_id: str
    submitted_at: float  # Unix seconds; decides which local day the order belongs to
    delivery_date: int  # ms
    xdock_delivery_date: int | None = None  # ms
    supplier_schedule_title: str | None = None
    lines: dict[int, OrderLine] = field(default_factory=dict)
    closed: bool = False
    closed_at: float | None = None
    closes: int = 0  # successful closes: 0 or 1
    close_attempts: int = 0  # close requests that reached this order (incl. "already closed")
    fulfil_calls: int = 0  # fulfil requests answered success: true
    fulfil_rejected: int = 0  # fulfil requests refused because the order was closed
    pulled: int = 0  # times the order was listed by GET /orders/submitted
    calls: list[FulfilCall] = field(default_factory=list)

    @property
    def order_date(self) -> int:
        return millis(self.submitted_at)

    def fulfilled(self) -> dict[int, Number]:
        return {n: line.fulfilled for n, line in self.lines.items()}

    def as_json(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "supplier_id": self.supplier_id,
            "store_id": self.store_id,
            "order_date": self.order_date,
            "delivery_date": self.delivery_date,
            "xdock_delivery_date": self.xdock_delivery_date,
            "supplier_schedule_title": self.supplier_schedule_title,
            "details": [line.as_json() for line in self.lines.values()],
        }


class DSOrderState:
    """Every order DSOrder knows (today's and older); guard every access with ``lock``.

    ``orders`` (id -> Order, insertion order) and ``stats`` (global counters: ``pulls``,
    ``fulfil_ok``, ``fulfil_failed``, ``fulfil_invalid``, ``close_ok``, ``close_failed``,
    ``warnings``, ``submitted``) are plain containers for tests to read; mutate through
    ``DSOrderSim``.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.orders: dict[str, Order] = {}
        # Hostile-input lever: records listed verbatim (submission time, record), never valid
        # orders of their own; see ``DSOrderSim.list_raw``.
        self.raw_records: list[tuple[float, Any]] = []
        self.stats: Counter[str] = Counter()
        self._next_id = FIRST_ORDER_ID

    def next_order_id(self) -> str:
        while str(self._next_id) in self.orders:
            self._next_id += 1
        order_id = str(self._next_id)
        self._next_id += 1
        return order_id


# --- request validation --------------------------------------------------------------------


class _InvalidBodyError(Exception):
    pass


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _parse_reports(body: Any) -> list[tuple[int, str, Number, bool]]:
    """The fulfil body as (line_number, article_id, quantity, finished); all-or-nothing."""
    if not isinstance(body, list):
        raise _InvalidBodyError("Request body must be a JSON array of order line reports")
    if not body:
        raise _InvalidBodyError("Request body must contain at least one order line report")
    items: list[tuple[int, str, Number, bool]] = []
    seen: set[int] = set()
    for index, raw in enumerate(body):
        if not isinstance(raw, dict):
            raise _InvalidBodyError(f"Item {index}: must be an object")
        for name in ("line_number", "article_id", "quantity", "finished"):
            if name not in raw or raw[name] is None:
                raise _InvalidBodyError(f"Item {index}: {name} is required")
        line_number, article_id = raw["line_number"], raw["article_id"]
        quantity, finished = raw["quantity"], raw["finished"]
        if not _is_number(line_number) or not float(line_number).is_integer():
            raise _InvalidBodyError(f"Item {index}: line_number must be an integer")
        if not isinstance(article_id, str) or not article_id:
            raise _InvalidBodyError(f"Item {index}: article_id must be a non-empty string")
        if not _is_number(quantity) or not math.isfinite(quantity):
            raise _InvalidBodyError(f"Item {index}: quantity must be a number")
        if quantity < 0:
            raise _InvalidBodyError(f"Item {index}: quantity must not be negative")
        if not isinstance(finished, bool):
            raise _InvalidBodyError(f"Item {index}: finished must be a boolean")
        number = int(line_number)
        if number in seen:
            raise _InvalidBodyError(f"Item {index}: line_number {number} appears more than once")
        seen.add(number)
        items.append((number, article_id, quantity, finished))
    return items


# --- the simulator -------------------------------------------------------------------------


class DSOrderSim(Simulator):
    """The DSOrder simulator: state, HTTP routes and Python-side levers for tests.

    ``DSOrderSim(clock=ManualClock(...), tz="Europe/Amsterdam")`` starts empty; orders come
    from ``submit_order``, ``generate`` or the background generator (``start_generator``).
    Same seed and same calls, same orders.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        token: str | None = DEFAULT_TOKEN,
        auth_header: str = "Authorization",
        auth_scheme: str = "Bearer",
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
        tz: str = DEFAULT_TZ,
        supplier_id: str = DEFAULT_SUPPLIER,
        stores: Sequence[str] = DEFAULT_STORES,
        retry_after: int = 1,
        slow_seconds: float = 2.0,
        closed_wording: str = "already",
        closed_listing: str = "listed",
    ) -> None:
        if not stores:
            raise ValueError("at least one store is needed")
        if closed_wording not in CLOSED_WORDINGS:
            raise ValueError(f"closed_wording must be one of {sorted(CLOSED_WORDINGS)}")
        if closed_listing not in CLOSED_LISTINGS:
            raise ValueError(f"closed_listing must be one of {CLOSED_LISTINGS}")
        self.closed_wording = closed_wording
        self.closed_listing = closed_listing
        try:
            self.tz = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {tz!r}") from exc
        self.clock = clock
        self.supplier_id = supplier_id
        self.stores = tuple(stores)
        self.auth_header = auth_header
        self.auth_scheme = auth_scheme.strip()
        self.rng = random.Random(seed)
        self.state = DSOrderState()
        self.server = SandboxServer(
            host,
            port,
            seed=seed,
            token=token,
            authenticate=self._authenticate if token is not None else None,
            error_body=_error_body,
            ok_body=lambda warnings: envelope(True, None, None, warnings),
            retry_after=retry_after,
            slow_seconds=slow_seconds,
            name="dsorder",
            extra_faults={SOFT_FAULT: lambda: _fail(SOFT_FAULT_MESSAGE)},
        )
        add = self.server.add_route
        add("GET", "/orders/submitted", self._submitted)
        add("POST", "/orders/{order_id}/fulfill", self._fulfill)
        add("POST", "/orders/{order_id}/close", self._close)
        self._generator: threading.Thread | None = None
        self._generator_stop = threading.Event()

    # lifecycle and passthroughs

    def stop(self) -> None:
        self.stop_generator()
        super().stop()

    def auth_headers(self, token: str | None = None) -> dict[str, str]:
        """The header a client must send, e.g. ``{"Authorization": "Bearer <token>"}``."""
        value = token if token is not None else self.server.token
        if value is None:
            return {}
        return {self.auth_header: f"{self.auth_scheme} {value}" if self.auth_scheme else value}

    def expire_token(self) -> None:
        self.server.expire_token()

    # time

    def now_local(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), self.tz)

    def today(self) -> date:
        """The current calendar day at the site."""
        return self.now_local().date()

    def local_day(self, ts: float) -> date:
        return datetime.fromtimestamp(ts, self.tz).date()

    def next_midnight(self) -> float:
        """Unix seconds of the next local midnight (DST-aware), for tests crossing it."""
        tomorrow = self.today() + timedelta(days=1)
        return datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=self.tz).timestamp()

    # Python-side levers (the stores, for tests and the demo)

    def submit_order(
        self,
        order_id: str | None = None,
        store_id: str | None = None,
        lines: Sequence[tuple[str, Number] | tuple[str, Number, int | None]] = (),
        at: float | None = None,
        *,
        supplier_id: str | None = None,
        delivery_date: int | None = None,
        xdock_delivery_date: int | None = None,
        supplier_schedule_title: str | None = None,
    ) -> str:
        """Submit an order: ``lines`` are ``(article_id, quantity[, min_shelf_life_ms])``
        numbered 1000, 2000, ...; ``at`` is the submission time (default: the clock). Returns
        the order id (sequential from 100001 when not given)."""
        if not lines:
            raise ValueError("an order needs at least one line")
        submitted = self.clock() if at is None else float(at)
        built: dict[int, OrderLine] = {}
        for index, line in enumerate(lines):
            article_id, quantity = line[0], line[1]
            shelf = line[2] if len(line) > 2 else None
            if not isinstance(article_id, str) or not article_id:
                raise ValueError(f"line {index}: article_id must be a non-empty string")
            if not _is_number(quantity) or quantity <= 0:
                raise ValueError(f"line {index}: quantity must be a positive number")
            number = (index + 1) * LINE_STEP
            built[number] = OrderLine(number, article_id, quantity, shelf)
        if delivery_date is None:
            day = self.local_day(submitted) + timedelta(days=1)
            delivery_date = millis(
                datetime(day.year, day.month, day.day, 6, tzinfo=self.tz).timestamp()
            )
        with self.state.lock:
            if order_id is None:
                order_id = self.state.next_order_id()
            elif order_id in self.state.orders:
                raise ValueError(f"order {order_id} already exists")
            self.state.orders[order_id] = Order(
                order_id=order_id,
                supplier_id=supplier_id or self.supplier_id,
                store_id=store_id or self.stores[0],
                submitted_at=submitted,
                delivery_date=delivery_date,
                xdock_delivery_date=xdock_delivery_date,
                supplier_schedule_title=supplier_schedule_title,
                lines=built,
            )
            self.state.stats["submitted"] += 1
        return order_id

    def list_raw(self, record: Any, at: float | None = None) -> None:
        """List ``record`` verbatim in today's answer (a broken DSOrder: missing fields,
        NaN quantities, non-objects), after the orders submitted at the same time."""
        with self.state.lock:
            self.state.raw_records.append((self.clock() if at is None else float(at), record))

    def generate(
        self,
        n: int,
        articles: Sequence[str] = DEFAULT_ARTICLES,
        fractional_rate: float = 0.1,
        unknown_rate: float = 0.05,
        *,
        max_lines: int = 5,
        at: float | None = None,
    ) -> list[str]:
        """Submit ``n`` seeded orders of 1..max_lines lines over ``articles``: about
        ``fractional_rate`` of the lines get a fractional quantity and ``unknown_rate`` an
        article id that is not in ``articles`` (``ART-UNKNOWN-nnnnnn``)."""
        if not articles:
            raise ValueError("articles must not be empty")
        return [
            self._generate_one(articles, fractional_rate, unknown_rate, max_lines, at)
            for _ in range(n)
        ]

    def _generate_one(
        self,
        articles: Sequence[str],
        fractional_rate: float,
        unknown_rate: float,
        max_lines: int,
        at: float | None,
    ) -> str:
        rng = self.rng
        submitted = self.clock() if at is None else at
        count = rng.randint(1, max(1, min(max_lines, len(articles))))
        chosen = rng.sample(list(articles), k=count)
        lines: list[tuple[str, Number, int | None]] = []
        delivery_day = self.local_day(submitted) + timedelta(days=rng.randint(1, 3))
        delivery = datetime(
            delivery_day.year, delivery_day.month, delivery_day.day, 6, tzinfo=self.tz
        ).timestamp()
        for article_id in chosen:
            if rng.random() < unknown_rate:
                article_id = f"ART-UNKNOWN-{rng.randrange(10**6):06d}"  # noqa: PLW2901
            quantity: Number = rng.randint(1, 120)
            if rng.random() < fractional_rate:
                quantity = round(rng.uniform(0.5, 120), rng.choice((1, 2, 3)))
                if float(quantity).is_integer():
                    quantity += 0.5
            shelf = millis(delivery + rng.randint(7, 90) * 86_400) if rng.random() < 0.8 else None
            lines.append((article_id, quantity, shelf))
        xdock = millis(delivery - 12 * 3600) if rng.random() < 0.2 else None
        return self.submit_order(
            store_id=rng.choice(self.stores),
            lines=lines,
            at=submitted,
            delivery_date=millis(delivery),
            xdock_delivery_date=xdock,
            supplier_schedule_title=rng.choice((*SCHEDULE_TITLES, None)),
        )

    def start_generator(
        self, rate_per_minute: float, articles: Sequence[str] = DEFAULT_ARTICLES, **options: Any
    ) -> None:
        """Submit one generated order every ``60 / rate_per_minute`` real seconds (for demos)
        until ``stop_generator`` or ``stop``; ``options`` go to ``generate``."""
        if rate_per_minute <= 0:
            raise ValueError("rate_per_minute must be positive")
        self.stop_generator()
        interval = 60.0 / rate_per_minute
        self._generator_stop.clear()

        def loop() -> None:
            while not self._generator_stop.wait(interval):
                self.generate(1, articles, **options)

        self._generator = threading.Thread(target=loop, name="dsorder-generator", daemon=True)
        self._generator.start()

    def stop_generator(self) -> None:
        thread = self._generator
        if thread is None:
            return
        self._generator_stop.set()
        thread.join(timeout=5)
        self._generator = None

    # Python-side views

    def order(self, order_id: str) -> Order:
        """The live order (read it under ``state.lock`` if the server is busy)."""
        with self.state.lock:
            return self.state.orders[order_id]

    def fulfilled(self, order_id: str) -> dict[int, Number]:
        """Current fulfilled total per line number."""
        with self.state.lock:
            return self.state.orders[order_id].fulfilled()

    def closes(self, order_id: str) -> int:
        """Successful closes of the order (0 or 1)."""
        with self.state.lock:
            return self.state.orders[order_id].closes

    def visible_order_ids(self) -> list[str]:
        """What ``GET /orders/submitted`` would list right now."""
        with self.state.lock:
            return [o.order_id for o in self._todays_orders()]

    # auth

    def _authenticate(self, request: Request) -> bool:
        token = self.server.token
        presented = (request.header(self.auth_header) or "").strip()
        if token is None or not presented:
            return False
        if self.auth_scheme:
            scheme, _, presented = presented.partition(" ")
            if scheme.lower() != self.auth_scheme.lower():
                return False
            presented = presented.strip()
        return hmac.compare_digest(presented.encode(), token.encode())

    # routes

    def _todays_orders(self) -> list[Order]:
        today = self.today()
        todays = [
            o
            for o in self.state.orders.values()
            if self.local_day(o.submitted_at) == today
            and not (o.closed and self.closed_listing == "hidden")
        ]
        todays.sort(key=lambda o: (o.submitted_at, o.order_id))
        return todays

    def _submitted(self, request: Request) -> Response:
        with self.state.lock:
            todays = self._todays_orders()
            for order in todays:
                order.pulled += 1
            self.state.stats["pulls"] += 1
            listed: list[tuple[float, Any]] = [
                (o.submitted_at, self._listed_json(o)) for o in todays
            ]
            today = self.today()
            listed += [r for r in self.state.raw_records if self.local_day(r[0]) == today]
            listed.sort(key=lambda item: item[0])
            data = [record for _, record in listed]
        return _ok(data)

    def _listed_json(self, order: Order) -> dict[str, Any]:
        data = order.as_json()
        if self.closed_listing == "status":
            data["status"] = "closed" if order.closed else "open"
        return data

    def _fulfill(self, request: Request) -> Response:
        order_id = request.params["order_id"]
        try:
            items = _parse_reports(request.json)
        except _InvalidBodyError as exc:
            with self.state.lock:
                self.state.stats["fulfil_invalid"] += 1
            return _fail(str(exc))
        with self.state.lock:
            now = self.clock()
            order = self.state.orders.get(order_id)
            if order is None:
                self.state.stats["fulfil_failed"] += 1
                return _fail(not_found_message(order_id))
            if order.closed:
                order.fulfil_rejected += 1
                order.calls.append(FulfilCall(now, tuple(items), False, ()))
                self.state.stats["fulfil_failed"] += 1
                return _fail(closed_message(order_id, self.closed_wording))
            warnings: list[str] = []
            for number, article_id, quantity, finished in items:
                line = order.lines.get(number)
                if line is None:
                    warnings.append(unknown_line_warning(number))
                    continue
                warning: str | None = None
                if line.finished:
                    warning = finished_warning(number)
                elif article_id != line.article_id:
                    warning = article_mismatch_warning(number, line.article_id, article_id)
                if warning is not None:
                    warnings.append(warning)
                    line.reports.append(LineReport(now, quantity, finished, False, warning))
                    continue
                line.fulfilled = quantity  # a total: replaces, never adds
                line.finished = finished
                line.reports.append(LineReport(now, quantity, finished, True))
            order.fulfil_calls += 1
            order.calls.append(FulfilCall(now, tuple(items), True, tuple(warnings)))
            self.state.stats["fulfil_ok"] += 1
            self.state.stats["warnings"] += len(warnings)
        return _ok(None, warnings)

    def _close(self, request: Request) -> Response:
        order_id = request.params["order_id"]
        with self.state.lock:
            order = self.state.orders.get(order_id)
            if order is None:
                self.state.stats["close_failed"] += 1
                return _fail(not_found_message(order_id))
            order.close_attempts += 1
            if order.closed:
                self.state.stats["close_failed"] += 1
                return _fail(closed_message(order_id, self.closed_wording))
            order.closed = True
            order.closed_at = self.clock()
            order.closes += 1
            self.state.stats["close_ok"] += 1
        return _ok()


# --- command line --------------------------------------------------------------------------


def _article_list(articles: Sequence[str] | int | None) -> tuple[str, ...]:
    if articles is None:
        return DEFAULT_ARTICLES
    if isinstance(articles, int):
        return tuple(f"ART-{n:06d}" for n in range(1, articles + 1))
    return tuple(articles)


def run(
    host: str = "127.0.0.1",
    port: int = 8766,
    seed: int = 0,
    token: str | None = DEFAULT_TOKEN,
    tz: str = DEFAULT_TZ,
    orders_per_minute: float = 2.0,
    articles: Sequence[str] | int | None = None,
    *,
    auth_header: str = "Authorization",
    auth_scheme: str = "Bearer",
    initial_orders: int = 5,
    closed_wording: str = "already",
    closed_listing: str = "listed",
) -> None:
    """Serve a DSOrder simulator in the foreground until SIGINT/SIGTERM: ``initial_orders``
    submitted at start, then ``orders_per_minute`` more (0 turns the generator off);
    ``articles`` is a list of ids or a count (``ART-000001``...)."""
    chosen = _article_list(articles)
    sim = DSOrderSim(
        seed=seed,
        token=token,
        auth_header=auth_header,
        auth_scheme=auth_scheme,
        host=host,
        port=port,
        tz=tz,
        closed_wording=closed_wording,
        closed_listing=closed_listing,
    )
    sim.start()
    if initial_orders > 0:
        sim.generate(initial_orders, chosen)
    if orders_per_minute > 0:
        sim.start_generator(orders_per_minute, chosen)
    print(f"dsorder sandbox: {sim.base_url}", flush=True)
    auth = ", ".join(f"{k}: {v}" for k, v in sim.auth_headers().items()) or "none"
    print(f"  auth: {auth}; tz: {tz}; seed: {seed}", flush=True)
    print(
        f"  articles: {len(chosen)}; orders: {initial_orders} now, {orders_per_minute}/min",
        flush=True,
    )
    try:
        sim.server.serve_forever()
    finally:
        sim.stop()
