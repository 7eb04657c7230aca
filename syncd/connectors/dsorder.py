"""DSOrder (store ordering) client: pull today's submitted orders, report fulfilment, close.

Every answer is an envelope `{success, message, data, warnings}`; `success:
false` is an error even with HTTP 200. The document gives one message ("Order
with ID 100123 was not found") and says only that an unknown or an already
closed order answers an error, so the message is classified by configurable
patterns (`connectors.dsorder.options`, case-insensitive regular expressions):

- `closed_patterns` ("already closed", "is closed", "not open")
                        -> AlreadyDoneError(code="already_closed"): after a crash,
  a close (or a last fulfilment) that already went through counts as done;
- `not_found_patterns` ("not found", "does not exist", ...)
                        -> PermanentError(code="not_found");
- anything else, or a message matching both
                        -> RetryableError(code="dsorder_error"): unclear. The
  sender reads the order back from the submitted list before retrying it
  (`order_listing`): an order that is listed as closed, or is no longer listed
  on the day it was submitted, is done.

Warnings are returned to the caller, which logs them and keeps them with the
run. Timestamps are Unix milliseconds -> aware UTC datetimes; quantities are
`Decimal` (they can be fractional), parsed exactly from the JSON text.
The document names no authentication: the header and scheme come from config
(`auth_header`, `auth_scheme`) with the secret in `token`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from syncd.errors import AlreadyDoneError, PermanentError, RetryableError
from syncd.http import HttpClient, StaticAuth, build_client
from syncd.jsontext import canonical, json_number, json_safe_spelt, text_hash
from syncd.logs import redactor
from syncd.sections import ConnectorConfig, RateLimit

NAME: Final = "dsorder"
Listing = Literal["open", "closed", "absent"]


MAX_MILLIS: Final = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


def from_millis(value: Any) -> datetime | None:
    """Unix milliseconds -> aware UTC datetime (None stays None); anything that is not a
    finite whole number of milliseconds within years 1970..9999 is a ValueError."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        raise ValueError(f"{value!r} is not a Unix timestamp in milliseconds")
    try:
        number = Decimal(str(value))
    except ArithmeticError:
        raise ValueError(f"{value!r} is not a Unix timestamp in milliseconds") from None
    if not number.is_finite() or not 0 <= number <= MAX_MILLIS:
        raise ValueError(f"{value!r} is not a Unix timestamp in milliseconds")
    return datetime.fromtimestamp(int(number) / 1000, tz=UTC)


def _number(value: Any) -> Decimal:
    """A JSON number (not text, not a boolean) as an exact finite Decimal."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError(f"{value!r} is not a number")
    number = Decimal(str(value))
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    return number


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", arbitrary_types_allowed=True)


class DsOrderLine(_Model):
    line_number: int
    article_id: str
    quantity: Decimal
    min_purchase_shelf_life: datetime | None = None

    @field_validator("line_number", mode="before")
    @classmethod
    def _whole(cls, value: Any) -> int:
        number = _number(value)
        if number != number.to_integral_value() or abs(number) >= 2**63:
            raise ValueError(f"{value} is not a whole number")
        return int(number)

    @field_validator("quantity", mode="before")
    @classmethod
    def _quantity(cls, value: Any) -> Decimal:
        return _number(value)

    @field_validator("min_purchase_shelf_life", mode="before")
    @classmethod
    def _millis(cls, value: Any) -> datetime | None:
        return from_millis(value)


class DsOrder(_Model):
    order_id: str
    supplier_id: str
    store_id: str
    order_date: datetime
    delivery_date: datetime
    xdock_delivery_date: datetime | None = None
    supplier_schedule_title: str | None = None
    details: list[DsOrderLine] = Field(default_factory=list)

    @field_validator("order_id", "supplier_id", "store_id", mode="before")
    @classmethod
    def _text(cls, value: Any) -> str:
        # The document says string; a number is taken as its text, anything else refused.
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError("must be a non-empty string")
        if not str(value).strip():
            raise ValueError("must be a non-empty string")
        return str(value)

    @field_validator("order_date", "delivery_date", "xdock_delivery_date", mode="before")
    @classmethod
    def _millis(cls, value: Any) -> datetime | None:
        return from_millis(value)

    def is_closed(self) -> bool:
        extra = self.model_extra or {}
        status = extra.get("status")
        return extra.get("closed") is True or (
            isinstance(status, str) and status.strip().lower() == "closed"
        )


@dataclass(frozen=True)
class RecordReject:
    """One record of a list answer that could not be taken, and why (the rest is taken)."""

    index: int  # position in the answer's `data`
    key: str  # the order id when it has one, else `#<index>`
    field: str
    reason: str
    raw: Any  # the record as received, JSON-safe (non-finite numbers as text)


@dataclass
class Submitted:
    """`GET /orders/submitted`: valid orders, refused records, warnings, request id;
    `unchanged`: ids of orders listed exactly as last stored (not validated again);
    `hashes`: order id -> `raw_hash` of its record, for the validated and the unchanged."""

    orders: list[DsOrder]
    rejects: list[RecordReject]
    warnings: list[str]
    request_id: str | None = None
    unchanged: list[str] = field(default_factory=list)
    hashes: dict[str, str] = field(default_factory=dict)

    @property
    def listed(self) -> int:
        return len(self.orders) + len(self.rejects) + len(self.unchanged)


def raw_hash(raw: Mapping[str, Any]) -> str:
    """The identity of a listed order's content: the hash of its record's canonical text,
    so the same order listed again (in any key order) is recognised without validating it."""
    return text_hash(canonical(raw))


def parse_submitted(
    data: Any, known: Mapping[str, str] | None = None
) -> tuple[list[DsOrder], list[RecordReject], list[str], dict[str, str]]:
    """`parse_orders`, except that a record whose order id is in `known` with the same
    `raw_hash` is only counted as unchanged (its id listed), not validated again."""
    if known is None or not isinstance(data, list):
        orders, rejects = parse_orders(data)
        return orders, rejects, [], {}
    unchanged: list[str] = []
    hashes: dict[str, str] = {}
    rest: list[tuple[int, Any]] = []
    for index, raw in enumerate(data):
        if isinstance(raw, dict) and isinstance(raw.get("order_id"), str | int):
            key = str(raw["order_id"])
            digest = raw_hash(raw)
            hashes[key] = digest
            if known.get(key) == digest:
                unchanged.append(key)
                continue
        rest.append((index, raw))
    orders, rejects = _parse(rest)
    return orders, rejects, unchanged, hashes


def parse_orders(data: Any) -> tuple[list[DsOrder], list[RecordReject]]:
    """Validate each record on its own: one bad order never hides the others."""
    if data is None:
        return [], []
    if not isinstance(data, list):
        raise ValueError(f"data is {type(data).__name__}, not a list of orders")
    return _parse(enumerate(data))


def _parse(records: Iterable[tuple[int, Any]]) -> tuple[list[DsOrder], list[RecordReject]]:
    """Validate each (index in the answer, record) on its own."""
    orders: list[DsOrder] = []
    rejects: list[RecordReject] = []
    for index, raw in records:
        key = f"#{index}"
        if isinstance(raw, dict) and isinstance(raw.get("order_id"), str | int):
            key = str(raw["order_id"]) or key
        if not isinstance(raw, dict):
            reason = f"record is {type(raw).__name__}, not an order object"
            rejects.append(RecordReject(index, key, "(record)", reason, json_safe_spelt(raw)))
            continue
        try:
            orders.append(DsOrder.model_validate(raw))
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            field_name = ".".join(str(p) for p in first["loc"]) or "(record)"
            reason = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(record)'}: "
                f"{e['msg'].removeprefix('Value error, ')}"
                for e in exc.errors(include_url=False)
            )
            rejects.append(RecordReject(index, key, field_name, reason, json_safe_spelt(raw)))
    return orders, rejects


@dataclass(frozen=True)
class FulfilLine:
    line_number: int
    article_id: str
    quantity: Decimal  # the line's TOTAL fulfilled so far, never an increment
    finished: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "line_number": self.line_number,
            "article_id": self.article_id,
            "quantity": json_number(self.quantity),
            "finished": self.finished,
        }


@dataclass
class Answer:
    data: Any
    warnings: list[str] = field(default_factory=list)
    request_id: str | None = None


DEFAULT_CLOSED_PATTERNS: Final = (r"\balready closed\b", r"\bis closed\b", r"\bnot open\b")
DEFAULT_NOT_FOUND_PATTERNS: Final = (
    r"\bnot found\b",
    r"\bdoes not exist\b",
    r"\bno such order\b",
    r"\bunknown order\b",
)
UNCLEAR: Final = "dsorder_error"


class DsOrderOptions(BaseModel):
    """`connectors.dsorder.options`: how DSOrder's error messages are read."""

    model_config = ConfigDict(extra="forbid")

    closed_patterns: list[str] = Field(default_factory=lambda: list(DEFAULT_CLOSED_PATTERNS))
    not_found_patterns: list[str] = Field(default_factory=lambda: list(DEFAULT_NOT_FOUND_PATTERNS))

    @field_validator("closed_patterns", "not_found_patterns")
    @classmethod
    def _compiles(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a regular expression: {exc}") from None
        return value


@dataclass(frozen=True)
class ErrorPatterns:
    closed: tuple[re.Pattern[str], ...]
    not_found: tuple[re.Pattern[str], ...]

    @classmethod
    def of(cls, options: DsOrderOptions | None = None) -> ErrorPatterns:
        options = options or DsOrderOptions()
        return cls(
            tuple(re.compile(p, re.IGNORECASE) for p in options.closed_patterns),
            tuple(re.compile(p, re.IGNORECASE) for p in options.not_found_patterns),
        )


def options_problems(config: ConnectorConfig) -> list[str]:
    """`connectors.dsorder.options` problems as `key: reason` lines (for check-config)."""
    try:
        DsOrderOptions.model_validate(config.options)
    except ValidationError as exc:
        return [
            f"connectors.dsorder.options.{'.'.join(str(p) for p in e['loc'])}: "
            f"{e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors(include_url=False)
        ]
    return []


def classify_failure(
    message: str,
    *,
    status: int | None = None,
    request_id: str | None = None,
    patterns: ErrorPatterns | None = None,
) -> Exception:
    """The error class for a `success: false` message, by meaning (see the module doc)."""
    patterns = patterns or ErrorPatterns.of()
    text = message or ""
    closed = any(p.search(text) for p in patterns.closed)
    not_found = any(p.search(text) for p in patterns.not_found)
    if closed and not not_found:
        return AlreadyDoneError(
            message, connector=NAME, status=status, code="already_closed", request_id=request_id
        )
    if not_found and not closed:
        return PermanentError(
            message, connector=NAME, status=status, code="not_found", request_id=request_id
        )
    return RetryableError(
        message or "success: false without a message",
        connector=NAME,
        status=status,
        code=UNCLEAR,
        request_id=request_id,
    )


class DSOrderClient:
    def __init__(self, config: ConnectorConfig, *, http: HttpClient | None = None) -> None:
        self.config = config
        self.patterns = ErrorPatterns.of(DsOrderOptions.model_validate(config.options))
        token = config.secret("token") or ""
        self.http = http or build_client(
            NAME,
            config,
            auth=StaticAuth(config.auth_header, token, config.auth_scheme) if token else None,
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> DSOrderClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, body: Any = None, *, retry: bool = True) -> Answer:
        response = self.http.request(method, path, json_body=body, retry=retry)
        request_id = self.http.remote_request_id(response)
        try:
            envelope = json.loads(response.text, parse_float=Decimal)
        except ValueError:
            raise self.http.malformed(
                response, f"malformed JSON in answer: {redactor.cut(response.text, 80)!r}"
            ) from None
        if not isinstance(envelope, dict) or "success" not in envelope:
            raise self.http.malformed(
                response, f"answer is not a DSOrder envelope: {redactor.cut(str(envelope), 80)!r}"
            )
        # The remote's own words may echo what it was sent: redacted before anything keeps them.
        warnings = [redactor.text(str(w)) for w in envelope.get("warnings") or []]
        if envelope.get("success") is not True:
            error = classify_failure(
                redactor.text(str(envelope.get("message") or "")),
                status=response.status_code,
                request_id=request_id,
                patterns=self.patterns,
            )
            if isinstance(error, RetryableError | PermanentError | AlreadyDoneError):
                error.details = {"warnings": warnings}
            raise error
        return Answer(envelope.get("data"), warnings, request_id)

    def submitted_orders(self, known: Mapping[str, str] | None = None) -> Submitted:
        """Today's submitted orders (site day as DSOrder sees it), each validated on its
        own: invalid records come back as `rejects`, never as a failed pull. An order
        listed with the `raw_hash` that `known` (order id -> hash) has for it is returned
        in `unchanged` instead, unvalidated."""
        answer = self._call_with_retry("GET", "/orders/submitted")
        try:
            orders, rejects, unchanged, hashes = parse_submitted(answer.data, known)
        except ValueError as exc:
            raise RetryableError(
                f"malformed submitted orders: {exc}",
                connector=NAME,
                code="malformed_response",
                request_id=answer.request_id,
            ) from None
        return Submitted(orders, rejects, answer.warnings, answer.request_id, unchanged, hashes)

    def _call_with_retry(self, method: str, path: str) -> Answer:
        """Reads retry a malformed or soft-failed answer like any transient fault."""
        return self.http.retry_call(lambda: self._call(method, path, retry=False))

    def fulfill(self, order_id: str, lines: Sequence[FulfilLine]) -> list[str]:
        """Report line totals; returns DSOrder's warnings (e.g. finished lines skipped)."""
        body = [line.as_json() for line in lines]
        return self._call("POST", f"/orders/{order_id}/fulfill", body).warnings

    def close_order(self, order_id: str) -> list[str]:
        return self._call("POST", f"/orders/{order_id}/close").warnings

    def order_listing(self, order_id: str) -> Listing:
        """Read an order back from today's submitted list: `closed` when listed as closed
        (a `status` of "closed" or `closed: true`, fields the document does not name),
        `open` when listed otherwise (or listed but unreadable), `absent` when not listed."""
        return self.listings().get(order_id, "absent")

    def listings(self) -> dict[str, Listing]:
        """Every order of today's submitted list: `closed` or `open` (as `order_listing`);
        an order not in it is `absent`. One read for many read-backs."""
        answer = self.submitted_orders()
        listed: dict[str, Listing] = {bad.key: "open" for bad in answer.rejects}
        for order in answer.orders:
            listed[order.order_id] = "closed" if order.is_closed() else "open"
        return listed


def fulfil_lines(payload: Sequence[Mapping[str, Any]]) -> list[FulfilLine]:
    """Outbox payload rows (quantities as decimal strings) -> FulfilLine."""
    return [
        FulfilLine(
            int(r["line_number"]),
            str(r["article_id"]),
            Decimal(str(r["quantity"])),
            bool(r["finished"]),
        )
        for r in payload
    ]


class DSOrderConfig(ConnectorConfig):
    """`[connectors.dsorder]`: the bearer token; `options` are `DsOrderOptions`."""

    client = DSOrderClient
    options_model = DsOrderOptions
    required_secrets = (("token",),)
    page_size_instead = "its lists are not paged"
    # The document states no rate limit: README "Where the DSOrder document is silent".
    rate_limit: RateLimit = RateLimit(per_second=5, burst=10)
