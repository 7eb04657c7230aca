"""Netstock Data Orchestrator client: OAuth2 token, dataset import, audit log, generated orders.

This module alone knows Netstock's URLs, its envelope and its error messages.

**Auth.** `POST /application/o/token/` (an identity server path; `options.token_url` may
move it, even to another https host), form-encoded with exactly the document's fields:
`client_id`, `username`, `password`, `grant_type=client_credentials` and `scope`
(`options.scope`; left out when not configured). `client_secret` is added only when one is
configured: the document does not list it, a confidential identity-server client needs it.
`NetstockAuth` caches the access token, renews it `token_renew_margin` seconds (default
60, at most half the lifetime) before `expires_in` runs out, and fetches a new one when the
HTTP layer calls `refresh()` after a 401 (once; a second refusal is an `AuthError`). A token
request the identity server refuses (400/401/403, `{"error": ...}`) is an `AuthError`.
Passwords, secrets and tokens are never logged, and never appear in a `repr`.

**Envelope.** Every API answer is `{api_call_status, message, data}`. `api_call_status`
other than `true` is an error whatever the HTTP status (200 included), classified from the
message (`classify_failure`): auth words -> `AuthError`; "already open / exists /
started" -> `ConflictError(code="already_open")` (one open dataset per user, one open model
per type: the job resumes what is open); "already ended / being processed" ->
`AlreadyDoneError(code="already_done")` (a replay after a crash); a line count that "does
not match" -> `PermanentError(code="line_count_mismatch")`; "not found", "not been
started", "invalid payload", ... -> `PermanentError` with a code; "temporary / retry" ->
`RetryableError(code="temporary")`; "no ... available" -> `PermanentError(code="empty")`
(a pop turns it into None: an empty queue); anything else is permanent for a 4xx and
retryable for a 2xx. A body that is not JSON never crashes: it is retryable on a 2xx (a
cut-off answer), permanent on a 4xx (a proxy page).

**Non-idempotent calls** (an `/import/<endpoint>` chunk: a duplicate breaks the model's line
count; a `/file/pop_*`: the server removes what it returns) are retried only when the
answer proves nothing happened (429, 503, any well-formed `api_call_status: false`, a refused
connection, a token that could not be fetched). Any other failure (timeout, dropped
connection, 500/502/504, malformed answer) raises `OutcomeUnknownError(code=
"outcome_unknown")`: compare `model_status()` before resending a chunk; for a pop, the raw
text (if any) is in `error.details["raw"]` and was passed to `journal` first.

**Model -> endpoint map.** `/model/start` takes a model name and the data goes to
`/import/<endpoint>`; the document's list has copy-paste mistakes, so the map is
`DEFAULT_MODEL_ENDPOINTS`, merged with `connectors.netstock.options["model_endpoints"]`
(values may be given as `stock_by_location`, `/import/stock_by_location` or
`import/stock_by_location`):

- `stocks` -> `stock_by_location`, `pohist` -> `po_hist`, `suppersessions` (sic, the
  model name as the document spells it) -> `suppressions` (sic, the URL as printed): the
  model names and the URLs differ, the URLs are taken as printed.
- `master` -> `master`: the document shows Master at `/import/suppliers`, a copy of the
  Suppliers section (its body is the item master's); `/import/master` follows every other
  section (`/import/<model>`).
- `transfers` -> `transfers`: the document shows Transfers at `/import/co` with the customer
  orders' body, again a copy; `/import/transfers` follows the same rule.
- `sales` -> `sales`; `/import/sales_legacy` (the period-based body) is selected with
  `model_endpoints = {sales = "sales_legacy"}`.
- Custom models `ut_*` are allowed by name; their endpoint is the model name unless mapped.
  Any other unknown model name is refused before a request is sent.

The two corrections (`master`, `transfers`) are guesses from a pattern the document breaks
three times: they are UNVERIFIED (`UNVERIFIED_ENDPOINTS`; `syncd check-config` lists them).
`endpoint_map = "document"` starts from the URLs exactly as printed instead
(`DOCUMENT_MODEL_ENDPOINTS`: master -> `suppliers`, transfers -> `co`); `model_endpoints`
overrides any entry of either.

**Options** (`connectors.netstock.options`, unknown keys refused): `scope`,
`customer_identifier` (default: `username`, which the document calls the customer
identifier), `token_url`, `token_renew_margin` (a duration), `chunk_size` (lines per import
post, default 1000), `endpoint_map` and `model_endpoints`. `username`, `password` and `client_id` are
required.

**Quantities** in pop answers come as strings (`"99"`, the PO example) or numbers (`5.0`,
the TR/WO examples): both parse to an exact `Decimal` (the JSON is decoded with
`parse_float=Decimal`, never through a float). Pop dates are `YYYY/MM/DD`.
`pop(..., journal=fn)` hands `fn` the raw answer text before anything else is done with it.

**Field types.** `DOCUMENT_FIELD_TYPES` holds each model's fields as the document types them
(string, integer, number, boolean, date); `import_chunk` refuses mappings whose values do
not fit (an integer field given 2.5, "abc" or 1.7) with `InvalidLineError`, naming the line
and field, before anything is sent. Null is allowed anywhere, unlisted fields are not checked.

**Import lines** are sent as JSON text rendered once (`jsontext.json_text`: compact, sorted keys,
non-ASCII escaped): a Decimal is an exact JSON number in the form Python prints the same
float (`Decimal("2.50")` -> `2.5`, integral -> `5`; `jsontext.decimal_json`), never rounded through a
float. `import_chunk` takes mappings or `JsonLines` (lines already rendered, e.g. stored by
the export job): the body is built around their text and sent as `RawJson`, not re-encoded.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, ClassVar, Final, Literal, TypeVar
from urllib.parse import urlsplit

import httpx
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from syncd.config import ConnectorConfig, _is_loopback, parse_duration
from syncd.errors import (
    AlreadyDoneError,
    AuthError,
    ConfigError,
    MalformedAnswerError,
    PermanentError,
    RemoteError,
    RetryableError,
)
from syncd.http import HttpClient, build_client
from syncd.jsontext import RawJson, json_text
from syncd.logs import REDACTED, redactor

log = structlog.get_logger("syncd.connectors.netstock")

NAME: Final = "netstock"
TOKEN_PATH: Final = "/application/o/token/"  # noqa: S105 - a URL path, not a secret
GRANT_TYPE: Final = "client_credentials"
DEFAULT_RENEW_MARGIN: Final = 60.0
DEFAULT_CHUNK_SIZE: Final = 1000
CUSTOM_MODEL_PREFIX: Final = "ut_"

DEFAULT_MODEL_ENDPOINTS: Final[Mapping[str, str]] = {
    "locations": "locations",
    "stocks": "stock_by_location",
    "suppliers": "suppliers",
    "master": "master",
    "groups": "groups",
    "sales": "sales",
    "po": "po",
    "co": "co",
    "transfers": "transfers",
    "pohist": "po_hist",
    "bom": "bom",
    "suppersessions": "suppressions",
}
"""Model name (as sent to /model/start) -> import endpoint (/import/<endpoint>); see above."""

DOCUMENT_MODEL_ENDPOINTS: Final[Mapping[str, str]] = {
    **DEFAULT_MODEL_ENDPOINTS,
    "master": "suppliers",  # as printed in the Master section
    "transfers": "co",  # as printed in the Transfers section
}
"""The URLs exactly as the document prints them (`endpoint_map = "document"`)."""

ENDPOINT_MAPS: Final[Mapping[str, Mapping[str, str]]] = {
    "corrected": DEFAULT_MODEL_ENDPOINTS,
    "document": DOCUMENT_MODEL_ENDPOINTS,
}

UNVERIFIED_ENDPOINTS: Final[Mapping[str, str]] = {
    "master": "the document prints /import/suppliers (the Suppliers URL, with the item "
    "master's body); /import/master is a guess from the /import/<model> pattern",
    "transfers": "the document prints /import/co (the Customer Orders URL and body); "
    "/import/transfers is a guess from the /import/<model> pattern",
}
"""The corrected map's guesses. The pattern they follow is one the document itself breaks
three times (stocks -> stock_by_location, pohist -> po_hist, suppersessions ->
suppressions), so they are unverified until a tenant confirms them."""


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
"""The type of every import field the document lists, per model (`sales_legacy`: the
`/import/sales_legacy` body). Fields it does not list are not checked; null is allowed
(the document does not say which fields are required)."""


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


# Application errors come back as these statuses with an envelope: read them here instead of
# letting the HTTP layer classify by status alone. 401/403 stay with the HTTP layer (refresh
# once), 408/425/429/5xx too (retry).
_APP_ERROR_STATUSES: Final = (400, 404, 405, 409, 410, 412, 415, 422)
_TOKEN_ERROR_STATUSES: Final = (400, 401, 403)
_MODEL_RE: Final = re.compile(r"^[a-z][a-z0-9_]*$")
_ENDPOINT_RE: Final = re.compile(r"^[A-Za-z0-9_]+$")
_UUID_RE: Final = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_SAFE_FAILURES: Final = frozenset({"token_unavailable"})
_CONNECT_FAILURES: Final = ("ConnectError", "ConnectTimeout", "PoolTimeout")

E = TypeVar("E", bound=RemoteError)


# --- errors --------------------------------------------------------------------------------


class ConflictError(PermanentError):
    """Something of the kind is already open (a dataset for this user, a model of this type).

    Not "done": the job decides, e.g. resumes the dataset it journaled. `dataset_import_id`
    is the open dataset when the answer names one.
    """

    @property
    def dataset_import_id(self) -> str | None:
        details = self.details if isinstance(self.details, dict) else {}
        return details.get("dataset_import_id")


class OutcomeUnknownError(RetryableError):
    """A non-idempotent call failed in a way that does not say whether it was applied."""


_FAILURE_RULES: Final[tuple[tuple[re.Pattern[str], type[RemoteError], str], ...]] = (
    (
        re.compile(
            r"already (?:been )?(?:ended|closed|completed?|processed|being processed|processing|marked)"
        ),
        AlreadyDoneError,
        "already_done",
    ),
    (
        re.compile(r"already (?:open|opened|exists?|started|in progress|active|running)"),
        ConflictError,
        "already_open",
    ),
    (re.compile(r"does not match|mismatch"), PermanentError, "line_count_mismatch"),
    (re.compile(r"not all models|models? (?:are |is )?still open"), PermanentError, "models_open"),
    (
        re.compile(r"not been started|not open|no longer accepting|marked to end|no more data"),
        PermanentError,
        "not_open",
    ),
    (
        re.compile(r"^no\b.*\b(?:available|found|left)\b|\bqueue is empty|nothing to pop"),
        PermanentError,
        "empty",
    ),
    (re.compile(r"not found|does not exist"), PermanentError, "not_found"),
    (
        re.compile(r"authori[sz]|unauthori|permission|forbidden|\btoken\b|credential"),
        AuthError,
        "auth",
    ),
    (
        re.compile(r"temporar|try again|retry|timed? ?out|unavailable|busy|rate limit"),
        RetryableError,
        "temporary",
    ),
    (
        re.compile(r"invalid|payload|validation|required|must |unknown model"),
        PermanentError,
        "invalid_payload",
    ),
    (re.compile(r"\bfailed\b"), PermanentError, "dataset_failed"),
)


def classify_failure(
    message: str,
    *,
    status: int | None = None,
    request_id: str | None = None,
    data: Any = None,
) -> RemoteError:
    """The error for an `api_call_status: false` answer, from its message (then its status)."""
    text = (message or "").lower()
    cls: type[RemoteError] = PermanentError if (status or 200) >= 400 else RetryableError
    code = "netstock_error"
    for pattern, rule_cls, rule_code in _FAILURE_RULES:
        if pattern.search(text):
            cls, code = rule_cls, rule_code
            break
    details: dict[str, Any] = {"api_call_status": False}  # the server said no: not applied
    if isinstance(data, dict) and data:
        details["data"] = data
    if code == "already_open":
        found = (data or {}).get("dataset_import_id") if isinstance(data, dict) else None
        match = _UUID_RE.search(message or "")
        if found or match:
            details["dataset_import_id"] = str(found or match.group(0))  # type: ignore[union-attr]
    return cls(
        redactor.text(message or "api_call_status false without a message"),
        connector=NAME,
        status=status,
        code=code,
        request_id=request_id,
        details=details,
    )


def _recast(exc: RemoteError, cls: type[E], message: str, code: str) -> E:
    """The same remote answer as another class of error, with its own code."""
    error = exc.recast(cls, message)
    error.code = code
    return error


# --- values --------------------------------------------------------------------------------


def parse_decimal(value: Any) -> Decimal | None:
    """An exact Decimal from a JSON string or number ("99", "3.0", 5.0, 7); None/"" -> None."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))  # the shortest text of the float, not its binary value
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip().replace(",", ""))
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a number") from None
    else:
        raise ValueError(f"{value!r} is not a number")
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    return number


def parse_pop_date(value: Any) -> date | None:
    """`2025/11/03` (the document's format) or ISO `2025-11-03[T...]`; empty -> None."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, date):
        return value if not isinstance(value, datetime) else value.date()
    text = str(value).strip()
    for fmt in ("%Y/%m/%d", "%Y-%m-%d"):
        try:
            return datetime.strptime(text[:10], fmt).date()
        except ValueError:
            continue
    raise ValueError(f"{value!r} is not a date (expected YYYY/MM/DD)")


@dataclass(frozen=True, slots=True)
class JsonLines:
    """Import lines already rendered (`json_text`), joined with ',': sent as they are."""

    text: str
    count: int


# --- answers -------------------------------------------------------------------------------


class _Model(BaseModel):
    """Unknown fields are tolerated and kept: the API may grow."""

    model_config = ConfigDict(extra="allow")


class DatasetStatus(StrEnum):
    """The document's dataset status legend, in order; `FAILED`/`UNKNOWN` are tolerated extras."""

    DATASET_IMPORT_STARTED = "Dataset_import_started"
    IMPORTING = "Importing"
    IMPORTING_COMPLETE = "Importing_complete"
    TRANSFORMING = "Transforming"
    COPYING_PO_DB = "Copying_po_db"
    COMPLETE = "Complete"
    FAILED = "Failed"  # not in the legend; a server may still say it
    UNKNOWN = "unknown"  # a status this client does not know; the raw text is kept

    @classmethod
    def parse(cls, text: Any) -> DatasetStatus:
        wanted = str(text or "").strip().lower().replace(" ", "_")
        for member in cls:
            if member.value.lower() == wanted:
                return member
        return cls.UNKNOWN

    @property
    def is_terminal(self) -> bool:
        """Nothing more will happen without a new call (success or failure: see `success`)."""
        return self in (DatasetStatus.COMPLETE, DatasetStatus.FAILED)

    @property
    def is_processing(self) -> bool:
        """Processing runs (or waits for the last data) after start_processing."""
        return self in (DatasetStatus.TRANSFORMING, DatasetStatus.COPYING_PO_DB)


class ModelState(_Model):
    model: str
    started_at: str | None = None
    ended_at: str | None = None
    success: bool | None = None
    minimum_expected_lines: int | None = None
    actual_lines_imported: int = 0
    marked_to_end: bool = False

    @property
    def is_open(self) -> bool:
        """Still accepting data (not yet marked to end)."""
        return not self.marked_to_end


class DatasetState(_Model):
    """`/dataset/status`: the status, its success flag, error logs and the models."""

    status: DatasetStatus
    status_text: str = ""
    success: bool | None = None
    message: str = ""
    models: list[ModelState] = Field(default_factory=list)

    @property
    def is_terminal(self) -> bool:
        """Only a terminal status is final. `success: false` at an earlier status is not
        (yet) a failure: the document defines `success` for what has completed, so a
        server may well report false while it is still importing or transforming."""
        return self.status.is_terminal

    @property
    def is_success(self) -> bool:
        return self.status is DatasetStatus.COMPLETE and self.success is True

    @property
    def is_failure(self) -> bool:
        return self.is_terminal and not self.is_success


class AuditEntry(_Model):
    timestamp: str | None = None
    message: str = ""
    log_type: str | None = None


class LegendEntry(_Model):
    status: str
    description: str = ""


class PopKind(StrEnum):
    """What `/file/pop_<kind>` returns: purchase, transfer or work orders."""

    PO = "po"
    TR = "tr"
    WO = "wo"

    @property
    def path(self) -> str:
        return f"/file/pop_{self.value}"


class PopLine(_Model):
    """The fields every generated order line shares; quantities are exact Decimals."""

    DECIMALS: ClassVar[tuple[str, ...]] = ("quantity", "unit_cost")
    DATES: ClassVar[tuple[str, ...]] = ("order_date", "created_date")

    order_number: str
    item_code: str
    quantity: Decimal
    unit_cost: Decimal | None = None
    order_date: date | None = None
    created_date: date | None = None
    username: str | None = None
    user_email_address: str | None = None
    item_description: str | None = None
    uom: str | None = None
    comments: str | None = None
    export_location_code: str | None = None
    sales_location_code: str | None = None

    @field_validator("order_number", "item_code", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | Decimal) else value

    @field_validator("*", mode="before")
    @classmethod
    def _typed(cls, value: Any, info: Any) -> Any:
        if info.field_name in cls.DECIMALS:
            return parse_decimal(value)
        if info.field_name in cls.DATES:
            return parse_pop_date(value)
        return value


class PurchaseOrderLine(PopLine):
    DECIMALS: ClassVar[tuple[str, ...]] = ("quantity", "unit_cost", "minimum_order_quantity")
    DATES: ClassVar[tuple[str, ...]] = ("order_date", "created_date", "expected_receipt_date")

    supplier: str | None = None
    location_code: str | None = None
    expected_receipt_date: date | None = None
    minimum_order_quantity: Decimal | None = None


class TransferOrderLine(PopLine):
    DECIMALS: ClassVar[tuple[str, ...]] = ("quantity", "unit_cost", "minimum_order_quantity")
    DATES: ClassVar[tuple[str, ...]] = ("order_date", "created_date", "receipt_date")

    transfer_from_code: str | None = None
    transfer_to_code: str | None = None
    receipt_date: date | None = None
    minimum_order_quantity: Decimal | None = None


class WorkOrderLine(PopLine):
    DECIMALS: ClassVar[tuple[str, ...]] = ("quantity", "unit_cost", "minimum_quantity")
    DATES: ClassVar[tuple[str, ...]] = ("order_date", "created_date", "due_date")

    supplier: str | None = None
    location_code: str | None = None
    due_date: date | None = None
    minimum_quantity: Decimal | None = None


LINE_MODELS: Final[Mapping[PopKind, type[PopLine]]] = {
    PopKind.PO: PurchaseOrderLine,
    PopKind.TR: TransferOrderLine,
    PopKind.WO: WorkOrderLine,
}


@dataclass(frozen=True)
class PopResult:
    """One popped file: its lines, and the raw answer text exactly as received."""

    kind: PopKind
    file_name: str | None
    lines: list[PopLine]
    raw: str
    message: str = ""
    request_id: str | None = None


@dataclass(frozen=True)
class Envelope:
    """A successful `{api_call_status: true, message, data}` answer."""

    status: int
    message: str
    data: Any
    raw: str
    request_id: str | None
    body: dict[str, Any]


@dataclass(frozen=True)
class TokenGrant:
    """An access token and when this client obtained it (by its own clock)."""

    access_token: str
    token_type: str
    expires_in: float | None
    obtained_at: float
    scope: str | None = None

    def __repr__(self) -> str:  # the token never appears in a repr or a log line
        return f"TokenGrant(token_type={self.token_type!r}, expires_in={self.expires_in!r})"

    def renew_at(self, margin: float) -> float | None:
        """The clock reading from which the token is renewed before use (None: only on 401)."""
        if self.expires_in is None:
            return None
        return self.obtained_at + self.expires_in - min(margin, self.expires_in / 2)


# --- configuration -------------------------------------------------------------------------


class NetstockOptions(BaseModel):
    """`connectors.netstock.options`, validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scope: str | None = None
    customer_identifier: str | None = None
    token_url: str = TOKEN_PATH
    token_renew_margin: float = DEFAULT_RENEW_MARGIN
    chunk_size: int = Field(DEFAULT_CHUNK_SIZE, ge=1, le=100_000)
    endpoint_map: Literal["corrected", "document"] = "corrected"
    model_endpoints: dict[str, str] = Field(default_factory=dict)

    @field_validator("token_renew_margin", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)


def configured_chunk_size(config: ConnectorConfig) -> int:
    """`options.chunk_size` of a Netstock connector config, without checking the rest."""
    try:
        return NetstockOptions.model_validate(config.options).chunk_size
    except ValidationError:
        return DEFAULT_CHUNK_SIZE


def model_endpoint_map(
    overrides: Mapping[str, Any] | None = None, base: str = "corrected"
) -> dict[str, str]:
    """The `base` map (ENDPOINT_MAPS) with `overrides` on top; ValueError on a bad entry."""
    merged = dict(ENDPOINT_MAPS[base])
    for model, endpoint in (overrides or {}).items():
        if not isinstance(model, str) or not _MODEL_RE.fullmatch(model):
            raise ValueError(f"model_endpoints: {model!r} is not a model name")
        if not isinstance(endpoint, str):
            raise ValueError(f"model_endpoints.{model}: {endpoint!r} is not an endpoint name")
        name = endpoint.strip().strip("/").removeprefix("import/")
        if not _ENDPOINT_RE.fullmatch(name):
            raise ValueError(
                f"model_endpoints.{model}: {endpoint!r} is not an endpoint name "
                "(e.g. 'stock_by_location' or '/import/stock_by_location')"
            )
        merged[model] = name
    return merged


@dataclass(frozen=True)
class NetstockSettings:
    """What the client needs from `connectors.netstock`, checked once."""

    customer_identifier: str
    username: str
    client_id: str
    token_url: str
    scope: str | None
    renew_margin: float
    chunk_size: int
    model_endpoints: Mapping[str, str]

    @classmethod
    def from_config(cls, config: ConnectorConfig) -> NetstockSettings:
        problems: list[str] = []
        try:
            options = NetstockOptions.model_validate(config.options)
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                key = ".".join(str(p) for p in error["loc"])
                problems.append(f"connectors.netstock.options.{key}: {error['msg']}")
            options = NetstockOptions()
        try:
            endpoints = model_endpoint_map(options.model_endpoints, options.endpoint_map)
        except ValueError as exc:
            problems.append(f"connectors.netstock.options.{exc}")
            endpoints = dict(DEFAULT_MODEL_ENDPOINTS)
        if not config.username:
            problems.append("connectors.netstock.username: required (the customer identifier)")
        if not config.client_id:
            problems.append("connectors.netstock.client_id: required")
        if not config.secret("password"):
            problems.append("connectors.netstock.password: required")
        token_url = options.token_url.strip()
        parts = urlsplit(token_url)
        if parts.scheme:
            if parts.scheme not in ("http", "https") or not parts.hostname:
                problems.append(
                    f"connectors.netstock.options.token_url: {token_url!r} is not a URL"
                )
            elif parts.scheme == "http" and not (
                _is_loopback(parts.hostname) or config.allow_insecure_http
            ):
                problems.append(
                    "connectors.netstock.options.token_url: plain http to a non-loopback host "
                    "is refused; use https"
                )
        elif not token_url.startswith("/"):
            token_url = "/" + token_url
        if problems:
            raise _settings_error(problems)
        return cls(
            customer_identifier=options.customer_identifier or str(config.username),
            username=str(config.username),
            client_id=str(config.client_id),
            token_url=token_url,
            scope=options.scope,
            renew_margin=options.token_renew_margin,
            chunk_size=options.chunk_size,
            model_endpoints=endpoints,
        )


def _settings_error(problems: list[str]) -> ConfigError:
    return ConfigError("invalid Netstock connector settings:\n  " + "\n  ".join(problems), problems)


@dataclass(frozen=True)
class EndpointEntry:
    """One model's endpoint in the map in use, and where it comes from."""

    model: str
    endpoint: str
    source: str  # "document" (as printed) | "corrected" (a guess) | "override"
    note: str = ""

    @property
    def unverified(self) -> bool:
        return self.source == "corrected"


def endpoint_report(options: Mapping[str, Any]) -> tuple[str, list[EndpointEntry]]:
    """The map `connectors.netstock.options` selects, entry by entry (ConfigError if bad)."""
    try:
        parsed = NetstockOptions.model_validate(options)
        merged = model_endpoint_map(parsed.model_endpoints, parsed.endpoint_map)
    except ValidationError as exc:
        problems = [
            f"connectors.netstock.options.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors(include_url=False)
        ]
        raise _settings_error(problems) from None
    except ValueError as exc:
        raise _settings_error([f"connectors.netstock.options.{exc}"]) from None
    entries = []
    for model, endpoint in merged.items():
        if model in parsed.model_endpoints:
            entries.append(EndpointEntry(model, endpoint, "override"))
        elif endpoint != DOCUMENT_MODEL_ENDPOINTS.get(model, endpoint):
            entries.append(EndpointEntry(model, endpoint, "corrected", UNVERIFIED_ENDPOINTS[model]))
        else:
            entries.append(EndpointEntry(model, endpoint, "document"))
    return parsed.endpoint_map, entries


def config_notes(config: ConnectorConfig) -> list[str]:
    """What `syncd check-config` says about the Netstock endpoint map: which map is in use
    and which of its entries are unverified guesses ([] when the connector is disabled)."""
    if not config.enabled:
        return []
    name, entries = endpoint_report(config.options)
    notes = [
        f"# netstock model -> endpoint map: {name!r} (connectors.netstock.options.endpoint_map"
        ' = "corrected" | "document"; entries overridable in options.model_endpoints)'
    ]
    for entry in entries:
        line = f"#   {entry.model} -> /import/{entry.endpoint} ({entry.source})"
        if entry.unverified:
            line += f" UNVERIFIED: {entry.note}"
        notes.append(line)
    return notes


# --- auth ----------------------------------------------------------------------------------


class NetstockAuth:
    """The `Auth` of the HTTP layer: a cached OAuth2 token, renewed before it runs out.

    `fetch(retry)` obtains a new `TokenGrant`. `headers()` fetches when there is no token or
    it is within the margin of its expiry (one attempt: the request's own retry loop covers
    it); `refresh()` (called by the HTTP layer once after a 401) always fetches, with retries.
    """

    def __init__(
        self,
        fetch: Callable[[bool], TokenGrant],
        *,
        clock: Callable[[], float] = time.monotonic,
        margin: float = DEFAULT_RENEW_MARGIN,
        header: str = "Authorization",
        scheme: str = "Bearer",
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self.margin = margin
        self.header = header
        self.scheme = scheme
        self._grant: TokenGrant | None = None
        self._lock = threading.Lock()
        self.fetches = 0
        self.refreshes = 0

    def __repr__(self) -> str:
        return f"NetstockAuth(has_token={self._grant is not None}, fetches={self.fetches})"

    @property
    def grant(self) -> TokenGrant | None:
        return self._grant

    def _valid(self) -> bool:
        if self._grant is None:
            return False
        renew_at = self._grant.renew_at(self.margin)
        return renew_at is None or self._clock() < renew_at

    def _obtain(self, *, retry: bool) -> TokenGrant:
        grant = self._fetch(retry)
        redactor.add_secret(grant.access_token)  # an echo of it is redacted like a configured one
        self._grant = grant
        self.fetches += 1
        log.info("netstock_token_obtained", expires_in=grant.expires_in, fetches=self.fetches)
        return grant

    def headers(self) -> Mapping[str, str]:
        with self._lock:
            grant = self._grant if self._valid() else None
            if grant is None:
                try:
                    grant = self._obtain(retry=False)
                except RetryableError as exc:
                    # Nothing was sent yet: the caller may retry even a non-idempotent call.
                    raise _recast(
                        exc, RetryableError, f"no access token: {exc.message}", "token_unavailable"
                    ) from None
        value = f"{self.scheme} {grant.access_token}" if self.scheme else grant.access_token
        return {self.header: value}

    def refresh(self) -> bool:
        with self._lock:
            self._grant = None
            self.refreshes += 1
            self._obtain(retry=True)
            return True

    def invalidate(self) -> None:
        """Forget the token; the next request fetches a new one."""
        with self._lock:
            self._grant = None


# --- the client ----------------------------------------------------------------------------


class _Ambiguous(Exception):
    """Carries an OutcomeUnknownError through the retry loop without being retried."""

    def __init__(self, error: OutcomeUnknownError) -> None:
        super().__init__(error.message)
        self.error = error


def _nothing_happened(exc: RetryableError) -> bool:
    """True when the failure proves the server did not act on the request."""
    if exc.status in (429, 503) or exc.code in _SAFE_FAILURES:
        return True
    if isinstance(exc.details, dict) and exc.details.get("api_call_status") is False:
        return True  # a well-formed refusal: the server answered, and said it did nothing
    return exc.code in ("connection", "timeout") and any(
        name in exc.message for name in _CONNECT_FAILURES
    )


class NetstockClient:
    """Typed access to one Netstock Data Orchestrator customer (one user)."""

    def __init__(
        self,
        config: ConnectorConfig,
        *,
        http: HttpClient | None = None,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.settings = NetstockSettings.from_config(config)
        self.customer_identifier = self.settings.customer_identifier
        self.model_endpoints: Mapping[str, str] = self.settings.model_endpoints
        self.chunk_size = self.settings.chunk_size
        self.clock = clock
        self.auth = NetstockAuth(
            self._fetch_token,
            clock=clock,
            margin=self.settings.renew_margin,
            header=config.auth_header,
            scheme=config.auth_scheme,
        )
        if http is None:
            kwargs: dict[str, Any] = {"sleep": sleep}
            if transport is not None:
                kwargs["transport"] = transport
            http = build_client(NAME, config, auth=self.auth, **kwargs)
        else:
            http.auth = self.auth
        self.http = http

    def __repr__(self) -> str:
        return f"NetstockClient(base_url={self.config.base_url!r}, user={self.settings.username!r})"

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> NetstockClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- token --------------------------------------------------------------------------------

    def _token_form(self) -> dict[str, str]:
        form = {
            "client_id": self.settings.client_id,
            "username": self.settings.username,
            "password": self.config.secret("password") or "",
            "grant_type": GRANT_TYPE,
        }
        if self.settings.scope is not None:
            form["scope"] = self.settings.scope
        client_secret = self.config.secret("client_secret")
        if client_secret:
            form["client_secret"] = client_secret
        return form

    def _fetch_token(self, retry: bool) -> TokenGrant:
        """POST the token form; `retry` runs it under the connector's retry policy."""

        def once() -> TokenGrant:
            started = self.clock()
            response = self.http.request(
                "POST",
                self.settings.token_url,
                data=self._token_form(),
                retry=False,
                authenticate=False,
                ok_statuses=_TOKEN_ERROR_STATUSES,
            )
            return self._token_grant(response, started)

        if retry:
            return self.http.retry_call(once, authenticate=False)
        return once()

    def _scrub(self, text: str) -> str:
        for name in ("password", "client_secret"):
            secret = self.config.secret(name)
            if secret and len(secret) >= 2:
                text = text.replace(secret, REDACTED)
        return redactor.text(text)

    def _token_grant(self, response: httpx.Response, started: float) -> TokenGrant:
        request_id = self.http.remote_request_id(response)
        try:
            body = json.loads(response.text)
        except ValueError:
            body = None
        if response.status_code in _TOKEN_ERROR_STATUSES:
            code, text = "token_refused", ""
            if isinstance(body, dict):
                code = str(body.get("error") or code)
                text = str(body.get("error_description") or body.get("message") or "")
            raise AuthError(
                self._scrub(f"token request refused ({code}){': ' + text if text else ''}"),
                connector=NAME,
                status=response.status_code,
                code=code,
                request_id=request_id,
            )
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise RetryableError(
                "token answer without an access_token",
                connector=NAME,
                status=response.status_code,
                code="malformed_response",
                request_id=request_id,
            )
        assert isinstance(body, dict)
        token_type = str(body.get("token_type") or "Bearer")
        if token_type.lower() != "bearer":
            log.warning("netstock_token_type", token_type=token_type)
        try:
            expires_in = float(body["expires_in"]) if body.get("expires_in") is not None else None
        except (TypeError, ValueError):
            expires_in = None
        scope = body.get("scope")
        return TokenGrant(token, token_type, expires_in, started, str(scope) if scope else None)

    def token(self) -> TokenGrant:
        """The current token grant, fetching one if needed (for `syncd check`)."""
        self.auth.headers()
        grant = self.auth.grant
        assert grant is not None
        return grant

    # -- plumbing -----------------------------------------------------------------------------

    def _exchange(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        body: Any,
        journal: Callable[[str], None] | None,
    ) -> Envelope:
        response = self.http.request(
            method,
            path,
            params=params,
            json_body=body,
            retry=False,
            ok_statuses=_APP_ERROR_STATUSES,
        )
        text = response.text
        if journal is not None:
            journal(text)  # before anything can fail: a pop's answer exists only here
        return self._envelope(response, text)

    def _envelope(self, response: httpx.Response, text: str) -> Envelope:
        status = response.status_code
        request_id = self.http.remote_request_id(response)
        try:
            body = json.loads(text, parse_float=Decimal)
        except ValueError:
            body = None
        if not isinstance(body, dict) or "api_call_status" not in body:
            excerpt = self._scrub(text)[:80]
            if status >= 400:
                raise PermanentError(
                    self._scrub(f"HTTP {status} without a Netstock envelope: {excerpt!r}"),
                    connector=NAME,
                    status=status,
                    code=f"http_{status}",
                    request_id=request_id,
                )
            raise RetryableError(
                f"answer is not a Netstock envelope: {excerpt!r}",
                connector=NAME,
                status=status,
                code="malformed_response",
                request_id=request_id,
                details={"raw": text},
            )
        message = str(body.get("message") or "")
        if body.get("api_call_status") is not True or status >= 400:
            raise classify_failure(
                message, status=status, request_id=request_id, data=body.get("data")
            )
        return Envelope(status, message, body.get("data"), text, request_id, body)

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        idempotent: bool = True,
        journal: Callable[[str], None] | None = None,
    ) -> Envelope:
        """One API call under the retry policy. A non-idempotent one is retried only when the
        failure proves nothing happened; otherwise it raises OutcomeUnknownError."""
        if idempotent:
            return self.http.retry_call(lambda: self._exchange(method, path, params, body, journal))

        def once() -> Envelope:
            try:
                return self._exchange(method, path, params, body, journal)
            except RetryableError as exc:
                if _nothing_happened(exc):
                    raise
                error = _recast(
                    exc,
                    OutcomeUnknownError,
                    f"{method} {path}: {exc.message}; the request may have been applied",
                    "outcome_unknown",
                )
                error.details = {
                    "cause": exc.code,
                    **(exc.details if isinstance(exc.details, dict) else {}),
                }
                raise _Ambiguous(error) from None

        try:
            return self.http.retry_call(once)
        except _Ambiguous as wrapped:
            raise wrapped.error from None

    def _listed(self, path: str, params: Mapping[str, Any] | None, key: str) -> list[Any]:
        """`data.<key>` of a read: `data` an object and `<key>` a list (either may be
        absent); any other shape is a malformed answer, not an AttributeError."""
        answer = self._call("GET", path, params=params)
        data = answer.data if answer.data is not None else {}
        rows = data.get(key) if isinstance(data, dict) else None
        if not isinstance(data, dict) or not isinstance(rows, list | None):
            where = "data" if not isinstance(data, dict) else f"data.{key}"
            raise MalformedAnswerError(
                f"{path}: {where} is {type(rows if isinstance(data, dict) else data).__name__}",
                connector=NAME,
                status=answer.status,
                code="malformed_response",
                request_id=answer.request_id,
            )
        return rows or []

    def _ids(self, dataset_import_id: str | None = None) -> dict[str, str]:
        ids = {"customer_identifier": self.customer_identifier}
        if dataset_import_id is not None:
            ids["dataset_import_id"] = dataset_import_id
        return ids

    # -- models and endpoints -----------------------------------------------------------------

    def endpoint_for(self, model: str) -> str:
        """The import path for a model name: `/import/<endpoint>`; unknown names are refused."""
        endpoint = self.model_endpoints.get(model)
        if endpoint is None:
            if model.startswith(CUSTOM_MODEL_PREFIX) and _MODEL_RE.fullmatch(model):
                endpoint = model
            else:
                raise ValueError(
                    f"unknown Netstock model {model!r}: use one of "
                    f"{', '.join(sorted(self.model_endpoints))}, a custom 'ut_*' model, or map "
                    "it in connectors.netstock.options.model_endpoints"
                )
        return f"/import/{endpoint}"

    # -- dataset ------------------------------------------------------------------------------

    def dataset_start(self) -> str:
        """Open a dataset import; returns its id. One open dataset per user: a second start
        raises ConflictError(code="already_open") (its `dataset_import_id` when named)."""
        answer = self._call("POST", "/dataset/start", body=self._ids())
        data = answer.data if isinstance(answer.data, dict) else {}
        dataset_id = data.get("dataset_import_id")
        if not dataset_id:
            raise PermanentError(
                "dataset/start answered without a dataset_import_id",
                connector=NAME,
                status=answer.status,
                code="malformed_response",
                request_id=answer.request_id,
            )
        log.info("netstock_dataset_started", dataset_import_id=str(dataset_id))
        return str(dataset_id)

    def start_processing(self, dataset_import_id: str) -> str:
        """Mark the dataset ready and start processing (every model must have been ended).
        A replay while it is processing raises AlreadyDoneError(code="already_done")."""
        return self._call(
            "POST", "/dataset/start_processing", body=self._ids(dataset_import_id)
        ).message

    def dataset_status(self, dataset_import_id: str) -> DatasetState:
        answer = self._call("GET", "/dataset/status", params=self._ids(dataset_import_id))
        data = answer.data if isinstance(answer.data, dict) else {}
        raw_models = data.get("model") or data.get("models") or answer.body.get("model") or []
        status_text = str(data.get("status") or "")
        return DatasetState(
            status=DatasetStatus.parse(status_text),
            status_text=status_text,
            success=data.get("success"),
            message=str(data.get("message") or ""),
            models=[ModelState.model_validate(m) for m in raw_models],
        )

    def status_legend(self) -> list[LegendEntry]:
        rows = self._listed("/dataset/status_legend", None, "legend")
        return [LegendEntry.model_validate(e) for e in rows]

    def audit_log(self, dataset_import_id: str) -> list[AuditEntry]:
        rows = self._listed("/dataset/full_audit_log", self._ids(dataset_import_id), "logs")
        return [AuditEntry.model_validate(e) for e in rows]

    # -- model imports ------------------------------------------------------------------------

    def model_start(self, dataset_import_id: str, model: str) -> None:
        """Open a model import. One open model per type: a second start raises
        ConflictError(code="already_open"); `model_status` says how far it got."""
        self.endpoint_for(model)  # refuse an unknown model before the server sees it
        self._call("POST", "/model/start", body={**self._ids(dataset_import_id), "model": model})

    def model_status(self, dataset_import_id: str) -> list[ModelState]:
        rows = self._listed("/model/status", self._ids(dataset_import_id), "models")
        return [ModelState.model_validate(m) for m in rows]

    def model_end(self, dataset_import_id: str, model: str, total_lines_imported: int) -> None:
        """Close a model import with the number of lines sent. The document answers 202 and
        judges the count after a timeout period (a wrong count shows later as a failed model
        and dataset in the status); a server that judges at once and refuses raises
        PermanentError(code="line_count_mismatch"); a replay of an end that went through
        raises AlreadyDoneError(code="already_done")."""
        if isinstance(total_lines_imported, bool) or total_lines_imported < 0:
            raise ValueError("total_lines_imported must be a count >= 0")
        body = {
            **self._ids(dataset_import_id),
            "model": model,
            "total_lines_imported": int(total_lines_imported),
        }
        self._call("POST", "/model/end", body=body)

    def import_chunk(
        self,
        dataset_import_id: str,
        model: str,
        rows: Sequence[Mapping[str, Any]] | JsonLines,
        *,
        file_name: str | None = None,
    ) -> int:
        """POST one chunk to `/import/<endpoint>`; returns the number of lines sent.

        `rows` are mappings (checked against the document's field types, `line_problems`:
        InvalidLineError names each bad `data[i].field` and nothing is sent; then rendered
        with `json_text`) or `JsonLines` rendered before (sent as they are: the body is
        built around their text, nothing is encoded again; their producer checks them).
        Not idempotent: a failure that may have been applied raises OutcomeUnknownError.
        Custom `ut_*` models carry `file_name` (default: the model name).
        """
        path = self.endpoint_for(model)
        if isinstance(rows, JsonLines):
            lines, count = rows.text, rows.count
        else:
            endpoint = path.removeprefix("/import/")
            problems = [
                f"data[{index}].{problem}"
                for index, row in enumerate(rows)
                for problem in line_problems(model, endpoint, row)
            ]
            if problems:
                raise InvalidLineError(model, problems)
            lines, count = ",".join([json_text(row) for row in rows]), len(rows)
        if not count:
            return 0
        head: dict[str, Any] = self._ids(dataset_import_id)
        if model.startswith(CUSTOM_MODEL_PREFIX) or file_name is not None:
            head["file_name"] = file_name or model
        body = RawJson(f'{json_text(head)[:-1]},"data":[{lines}]}}')
        self._call("POST", path, body=body, idempotent=False)
        return count

    def import_rows(
        self,
        dataset_import_id: str,
        model: str,
        rows: Iterable[Mapping[str, Any]],
        *,
        chunk_size: int | None = None,
        file_name: str | None = None,
        on_chunk: Callable[[int, int], None] | None = None,
    ) -> int:
        """Stream `rows` in chunks (never all in memory); returns the total sent.
        `on_chunk(chunk_lines, total_so_far)` runs after each accepted chunk (to checkpoint)."""
        size = chunk_size or self.chunk_size
        if size < 1:
            raise ValueError("chunk_size must be at least 1")
        total = 0
        for chunk in _chunks(rows, size):
            sent = self.import_chunk(dataset_import_id, model, chunk, file_name=file_name)
            total += sent
            if on_chunk is not None:
                on_chunk(sent, total)
        return total

    # -- generated orders (destructive reads) -------------------------------------------------

    def pop(
        self, kind: PopKind | str, *, journal: Callable[[str], None] | None = None
    ) -> PopResult | None:
        """Pop the oldest generated file of `kind` (po, tr, wo); None when there is none.

        The server REMOVES what it returns: `journal(raw_text)` runs before the answer is
        parsed, so the caller can write it to disk first. Never retried unless the failure
        proves nothing was popped; a line that cannot be parsed raises
        PermanentError(code="malformed_pop") with the raw text in `details["raw"]`.
        """
        kind = PopKind(kind)
        try:
            answer = self._call(
                "POST", kind.path, body=self._ids(), idempotent=False, journal=journal
            )
        except PermanentError as exc:
            if exc.code == "empty":  # "No purchase order available" as api_call_status false
                return None
            raise
        data = answer.data if isinstance(answer.data, dict) else {}
        raw_lines = data.get("lines")
        if not data.get("file_name") and not raw_lines:
            return None
        if not isinstance(raw_lines, list):
            raise self._bad_pop(answer, "lines is not a list")
        model = LINE_MODELS[kind]
        lines: list[PopLine] = []
        for index, raw_line in enumerate(raw_lines):
            try:
                lines.append(model.model_validate(raw_line))
            except ValidationError as exc:
                first = exc.errors(include_url=False)[0]
                where = ".".join(str(p) for p in first["loc"])
                raise self._bad_pop(answer, f"line {index}: {where}: {first['msg']}") from None
        file_name = data.get("file_name")
        log.info("netstock_popped", kind=kind.value, file_name=file_name, lines=len(lines))
        return PopResult(
            kind,
            str(file_name) if file_name else None,
            lines,
            answer.raw,
            answer.message,
            answer.request_id,
        )

    def _bad_pop(self, answer: Envelope, reason: str) -> PermanentError:
        return PermanentError(
            f"popped file cannot be read ({reason}); the raw answer is kept",
            connector=NAME,
            status=answer.status,
            code="malformed_pop",
            request_id=answer.request_id,
            details={"raw": answer.raw},
        )

    def pop_po(self, *, journal: Callable[[str], None] | None = None) -> PopResult | None:
        return self.pop(PopKind.PO, journal=journal)

    def pop_tr(self, *, journal: Callable[[str], None] | None = None) -> PopResult | None:
        return self.pop(PopKind.TR, journal=journal)

    def pop_wo(self, *, journal: Callable[[str], None] | None = None) -> PopResult | None:
        return self.pop(PopKind.WO, journal=journal)


def _chunks(rows: Iterable[Mapping[str, Any]], size: int) -> Iterator[list[Mapping[str, Any]]]:
    iterator = iter(rows)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk
