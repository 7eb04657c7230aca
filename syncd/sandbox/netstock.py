"""A stateful Netstock Data Orchestrator simulator over real HTTP, following
netstock-data-orchestrator-api.txt.

Routes are the document's, at the server root (``base_url`` is ``http://127.0.0.1:PORT``):
``POST /application/o/token/``; ``POST /dataset/start``, ``POST /dataset/start_processing``,
``GET /dataset/status``, ``GET /dataset/status_legend``, ``GET /dataset/full_audit_log``;
``POST /model/start``, ``GET /model/status``, ``POST /model/end``; ``POST /import/{endpoint}``;
``POST /file/pop_po``, ``/file/pop_tr``, ``/file/pop_wo``. Every API answer, errors included,
is the envelope ``{"api_call_status", "message", "data"}``.

Interpretations (each choice the document leaves open, written down):

- **Token**: form-encoded ``client_id``, ``username``, ``password``,
  ``grant_type=client_credentials``, ``scope``; a ``client_secret`` is checked only when the
  simulator is given one. Answer as documented (``access_token``, ``token_type``, ``scope``,
  ``expires_in``, ``id_token``). Refusals are the identity server's OAuth2 shape, not the
  envelope: 400 ``{"error": "invalid_grant" | "unsupported_grant_type" | "invalid_scope" |
  "invalid_request", "error_description"}``, 401 ``invalid_client``. The path must keep its
  trailing slash. Tokens are opaque, valid until ``expires_in`` seconds of ``clock`` have
  passed (several may be valid at once); an expired, revoked or unknown token is 401
  ``"Authorization error: ..."``. The base's ``token_expired`` fault makes every API call 401
  until a new token is issued, which also revokes the older ones.
- **Customer**: the ``username`` is the customer identifier (the document: "customer unique
  identifier - matching customer identifier in IA"); a ``customer_identifier`` other than
  the token's user is 403 ``"Insufficient permissions"``. GET parameters are query
  parameters (a JSON body is read too).
- **Application errors** are HTTP 400 with ``api_call_status: false`` (the document's
  table lists 400/401/403 only): unknown dataset, validation, one-open rules, line counts.
  An unknown route is 404, an unknown ``/import/<endpoint>`` too. The ``soft_false`` fault
  answers HTTP 200 ``api_call_status: false`` "temporary failure" without running the handler.
- **One open dataset per user**: open = not yet ``Complete``. A second ``/dataset/start``
  is 400 "A dataset import is already open for this user (dataset_import_id ...)", with
  ``data.dataset_import_id`` naming it.
- **One open model per type per dataset**: a second ``/model/start`` of an open type is 400
  "Model import X is already open ..."; after ``/model/end`` the type may be started again
  (a new model import). Models are the document's list (``locations``, ``stocks``,
  ``suppliers``, ``master``, ``groups``, ``sales``, ``po``, ``co``, ``transfers``,
  ``pohist``, ``bom``, ``suppersessions``) and ``ut_*``.
- **Endpoints**: ``endpoints`` maps ``/import/<endpoint>`` to the model(s) it feeds, and
  only those URLs exist (any other is 404). ``"corrected"`` (the default,
  ``DEFAULT_ENDPOINTS``) reads the document's copy-paste mistakes as: master at
  ``/import/master``, transfers at ``/import/transfers``, stocks at
  ``/import/stock_by_location``, pohist at ``/import/po_hist``, suppersessions at
  ``/import/suppressions``, ``/import/sales_legacy`` feeding ``sales``; ``/import/ut_x``
  feeds ``ut_x``. ``"document"`` (``DOCUMENT_ENDPOINTS``) takes the URLs as printed:
  ``/import/master`` and ``/import/transfers`` do not exist, master lines go to
  ``/import/suppliers`` and transfers to ``/import/co``, each post to whichever of the
  two models sharing the URL is open (both open: 400). A mapping gives any other map. Lines go to the open model import of that type; none open is 400 "... has
  not been started ...", one marked to end is 400 "... no more data will be accepted". Each
  line must be an object with the model's key fields (``KEY_FIELDS``) and every field the
  document types (``FIELD_TYPES``: string, integer, number, boolean, date as a string) of
  that type or null: an integer field given 2.5, 1.7 or "abc" refuses the whole post with
  400 "Invalid payload detected: data[i].field must be an integer (got 2.5)" (the
  document's 400 is "validation failure, usually on request body"); an integral JSON
  number (``5.0``) is an integer. ``nulls="refuse"`` (the other reading: the document types
  every field and says nothing of null) refuses a null in a typed field the same way
  ("data[i].field must be a <type> (got null)"). Custom models need a ``file_name`` and are not checked. Imports answer 202 (not documented) and are counted at once.
- **Model end** (``model_end="deferred"``, the default: the document's 202, "the failure
  comes later"): ``/model/end`` marks the import to end and answers 202 whatever the count;
  the model is judged later on ``clock``. It succeeds once every line received has been
  counted (``count_lag`` after its post) and ``total_lines_imported`` equals the lines
  received, if that happens within ``end_timeout`` seconds (default 30) of the end;
  otherwise, at the end of the timeout period, its ``success`` becomes false and the
  dataset fails (``Complete``, ``success: false``, the reason in ``message`` and the audit
  log). ``success`` is null while the model is judged, and the dataset stays ``Importing``.
  ``model_end="immediate"`` is the older reading: the count is compared at once and a
  mismatch is 400 "... does not match ..." (the model and dataset fail at once). A second
  end is 400 "... has already been ended" in both.
- **Lagging line count** (``count_lag`` seconds, ``lag_counts()``; default 0: counted at
  once): a real tenant imports asynchronously, so ``actual_lines_imported`` (in
  ``/model/status`` and ``/dataset/status``) counts each import post's lines only
  ``count_lag`` seconds of ``clock`` after it was received. ``/model/end`` still compares
  with every line received in the immediate mode (the timeout period is taken as long
  enough for the import to catch up). ``float("inf")``: the lines are never counted (lost
  in the import), so the model fails on its count as any mismatch (after ``end_timeout``
  when deferred).
- **Status** before processing: ``Dataset_import_started`` (no model yet), ``Importing``
  (a model open or still judged), ``Importing_complete`` (every model ended and imported).
  ``start_processing`` needs at least one model and every model ended (the document's flow
  2: models still judged are waited for, as ``Importing``, and processing starts once they
  all imported; a model that fails fails the dataset); then the status walks ``phases``
  (default Importing 1 s -> Importing_complete 1 s -> Transforming 4 s -> Copying_po_db 2 s
  -> Complete). A second call while processing is 400 "... is already being processed"; on a
  ``Complete`` dataset whose models all imported it reprocesses (the document's flow 1); on
  a dataset whose model import failed it is 400 "... failed ...". ``success`` is null until
  Complete (the document defines it only for what has completed);
  ``unfinished_success=False`` reports false instead at every earlier status, the other
  plausible reading ("not successful yet"), which a client must not take as final.
  ``/dataset/status`` lists the models under ``data.model``.
- **Failure injection**: ``fail_processing(phase, message)`` makes the next processing run
  (or a given dataset's) fail at the end of ``phase``: ``Complete`` with ``success: false``,
  the message in ``data.message`` and ``error`` entries in the audit log.
- **Generated orders**: a dataset that completes successfully generates
  ``orders_per_dataset`` files (default one PO, one TR, one WO) from its imported item codes;
  ``add_file``/``generate`` queue more. ``/file/pop_<kind>`` returns the oldest file of the
  caller's queue with HTTP 202 AND REMOVES IT (``drop``/``slow`` faults run the handler, so
  the file is gone though the client never saw it: ``popped`` keeps every answer). Numbers
  are strings in PO answers and JSON numbers in TR/WO answers, as the document's examples
  (``quantity_styles``); the success message is the document's ("Model import locations
  ended."). An empty queue is HTTP 200 ``api_call_status: true`` with ``data: {}``.

State for tests: ``sim.state.datasets`` (id -> ``Dataset`` with ``models``, ``logs``,
``status``), ``sim.state.queues`` ((customer, kind) -> deque of ``PopFile``),
``sim.state.popped``, ``sim.state.token_requests``, ``sim.state.stats``; read them under
``sim.state.lock`` or through the accessors.
"""

from __future__ import annotations

import contextlib
import hmac
import random
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final
from urllib.parse import parse_qsl

from syncd.sandbox.base import (
    ApiError,
    ManualClock,
    Request,
    Response,
    Route,
    Router,
    SandboxServer,
    Simulator,
)

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_ENDPOINTS",
    "DEFAULT_PASSWORD",
    "DEFAULT_PHASES",
    "DEFAULT_SCOPE",
    "DEFAULT_USERNAME",
    "KEY_FIELDS",
    "MODELS",
    "POP_MESSAGE",
    "SOFT_FAULT",
    "STATUS_LEGEND",
    "TOKEN_PATH",
    "Dataset",
    "LogEntry",
    "ManualClock",
    "ModelImport",
    "NetstockSim",
    "NetstockState",
    "PopFile",
    "Popped",
    "TokenRequest",
    "envelope",
    "parse_phases",
    "run",
]

TOKEN_PATH: Final = "/application/o/token/"  # noqa: S105 - a URL path
DEFAULT_USERNAME: Final = "SANDBOX-CUSTOMER"
DEFAULT_PASSWORD: Final = "netstock-sandbox-password"  # noqa: S105 - a sandbox credential
DEFAULT_CLIENT_ID: Final = "netstock-sandbox-client"
DEFAULT_SCOPE: Final = "dataorchestrator"
DEFAULT_EXPIRES_IN: Final = 3600
DEFAULT_PHASES: Final = (
    ("Importing", 1.0),
    ("Importing_complete", 1.0),
    ("Transforming", 4.0),
    ("Copying_po_db", 2.0),
)
COMPLETE: Final = "Complete"
SOFT_FAULT: Final = "soft_false"
SOFT_FAULT_MESSAGE: Final = "An error occurred: temporary failure, please try again"
POP_MESSAGE: Final = "Model import locations ended."  # sic: every pop example says this
POP_KINDS: Final = ("po", "tr", "wo")
MODEL_END_MODES: Final = ("deferred", "immediate")
POP_NAMES: Final = {"po": "purchase order", "tr": "transfer order", "wo": "work order"}
DEFAULT_QUANTITY_STYLES: Final = {"po": "string", "tr": "number", "wo": "number"}
DEFAULT_ITEMS: Final = tuple(f"ITEM{n:04d}" for n in range(1, 21))

MODELS: Final = (
    "locations",
    "stocks",
    "suppliers",
    "master",
    "groups",
    "sales",
    "po",
    "co",
    "transfers",
    "pohist",
    "bom",
    "suppersessions",
)
DEFAULT_ENDPOINTS: Final[Mapping[str, str]] = {
    "locations": "locations",
    "stock_by_location": "stocks",
    "suppliers": "suppliers",
    "master": "master",
    "groups": "groups",
    "sales": "sales",
    "sales_legacy": "sales",
    "po": "po",
    "co": "co",
    "transfers": "transfers",
    "po_hist": "pohist",
    "bom": "bom",
    "suppressions": "suppersessions",
}
"""``/import/<endpoint>`` -> the model it feeds: the document's URLs with its two
copy-paste mistakes read as ``/import/master`` and ``/import/transfers`` (``"corrected"``)."""

DOCUMENT_ENDPOINTS: Final[Mapping[str, str | tuple[str, ...]]] = {
    **{k: v for k, v in DEFAULT_ENDPOINTS.items() if k not in ("master", "transfers")},
    "suppliers": ("suppliers", "master"),  # the Master section prints /import/suppliers
    "co": ("co", "transfers"),  # the Transfers section prints /import/co
}
"""The URLs exactly as printed (``"document"``): Master shares ``/import/suppliers`` and
Transfers ``/import/co``; a post goes to whichever of the two models is open."""

ENDPOINT_MAPS: Final[Mapping[str, Mapping[str, str | tuple[str, ...]]]] = {
    "corrected": DEFAULT_ENDPOINTS,
    "document": DOCUMENT_ENDPOINTS,
}

KEY_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    "locations": ("location_code",),
    "stocks": ("item_code", "location"),
    "suppliers": ("supplier_code",),
    "master": ("item_code",),
    "groups": ("identifier", "value"),
    "sales": ("item_code", "location"),
    "po": ("item_code", "order_number"),
    "co": ("item_code", "order_number"),
    "transfers": ("item_code", "order_number"),
    "pohist": ("item_code", "order_number"),
    "bom": ("finished_good_item", "raw_material_item"),
    "suppersessions": ("old_product_code", "new_product_code"),
}
"""Fields every line of a model must carry (the Data Interface Requirements are not public)."""


def _types(**kinds: str) -> dict[str, str]:
    return {name: kind for kind, names in kinds.items() for name in names.split()}


_ORDER: Final = "item_code location order_number line_number"
FIELD_TYPES: Final[Mapping[str, Mapping[str, str]]] = {
    "locations": _types(string="location_code description group type", boolean="active"),
    "suppliers": _types(string="supplier_code description type", integer="lead_time"),
    "master": _types(
        string="item_code description unique_identifier uom superseded_item_code "
        "superseded_item_factor",
        number="unit_volume unit_weight",
    ),
    "stocks": _types(
        string="item_code location vendor_code supply_type supply_code purchase_uom "
        "purchase_currency_code stocking_indicator group_1",
        integer="stock_on_hand allocated_stock lead_time minimum_stock minimum_order_quantity "
        "order_multiple",
        number="inventory_unit_cost purchase_unit_cost selling_price purchase_factor",
        date="date_added",
    ),
    "groups": _types(integer="identifier", string="value description"),
    "sales": _types(
        string="item_code location customer_code transaction_details",
        date="order_date invoice_date",
        number="sales_quantity cost_of_sales sales_value",
        integer="issues_quantity",
    ),
    "sales_legacy": _types(
        string="item_code location",
        date="period",
        integer="sales_quantity issues_quantity",
        number="cost_of_sales sales_value",
    ),
    "po": _types(
        string=f"{_ORDER} supplier_code order_type",
        date="order_date expected_arrival_date",
        integer="order_quantity outstanding_quantity",
        number="purchase_unit_cost",
    ),
    "co": _types(
        string=f"{_ORDER} customer_code",
        date="order_date requested_date",
        integer="order_quantity outstanding_quantity",
    ),
    "transfers": _types(
        string=f"{_ORDER} customer_code",
        date="order_date requested_date",
        integer="order_quantity outstanding_quantity",
    ),
    "pohist": _types(
        string=f"{_ORDER} supplier_code order_urgency",
        date="order_date date_of_receipt expected_arrival_date",
        integer="order_quantity quantity_received",
        number="purchase_unit_cost",
    ),
    "bom": _types(
        string="finished_good_item finished_good_location raw_material_item raw_material_location",
        number="ratio",
    ),
    "suppersessions": _types(string="old_product_code new_product_code", number="factor"),
}
"""Each model's line fields as the document types them (``sales_legacy``: the
``/import/sales_legacy`` body). Unlisted fields are accepted, and so are nulls unless
``nulls="refuse"`` (the document does not say which fields are required)."""


def type_problem(kind: str, value: Any) -> str | None:
    """Why a JSON value is not of the document's type (None: it is, or it is null)."""
    if value is None:
        return None
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "integer":
        whole = number and (isinstance(value, int) or float(value).is_integer())
        return None if whole else "must be an integer"
    if kind == "number":
        return None if number and float(value) == float(value) else "must be a number"
    if kind == "boolean":
        return None if isinstance(value, bool) else "must be a boolean"
    return None if isinstance(value, str) else f"must be a {kind} string"


STATUS_LEGEND: Final = (
    ("Dataset_import_started", "Ready to start importing data. Trigger model import by calling model/start endpoint."),
    ("Importing", "Busy importing data. Check model/status endpoint to see which models are started/processing/completed."),
    ("Importing_complete", "All data has been received and stored. Processing not yet started. Trigger processing by calling the dataset/start_processing endpoint"),
    ("Transforming", "All data has been received and stored. Processing in progress..."),
    ("Copying_po_db", "Dataset Import has completed successfully. All data has been imported and processed. A copy of the database is being made to support pushing files back to the provider"),
    ("Complete", "Dataset Import has completed. All data has been imported and processed. The success flag describes whether the dataset import competed successfully or not"),
)  # fmt: skip

_PO_FIELDS: Final = (
    "order_number", "supplier", "location_code", "order_date", "username",
    "user_email_address", "item_code", "item_description", "uom", "quantity", "unit_cost",
    "created_date", "expected_receipt_date", "minimum_order_quantity", "comments",
    "export_location_code", "sales_location_code",
)  # fmt: skip
_TR_FIELDS: Final = (
    "order_number", "transfer_from_code", "transfer_to_code", "order_date", "username",
    "user_email_address", "item_code", "item_description", "uom", "quantity", "unit_cost",
    "created_date", "receipt_date", "minimum_order_quantity", "comments",
    "export_location_code", "sales_location_code",
)  # fmt: skip
_WO_FIELDS: Final = (
    "order_number", "supplier", "location_code", "order_date", "username",
    "user_email_address", "item_code", "item_description", "uom", "quantity", "unit_cost",
    "created_date", "due_date", "minimum_quantity", "comments", "export_location_code",
    "sales_location_code",
)  # fmt: skip
POP_FIELDS: Final = {"po": _PO_FIELDS, "tr": _TR_FIELDS, "wo": _WO_FIELDS}
DECIMAL_FIELDS: Final = frozenset(
    {"quantity", "unit_cost", "minimum_order_quantity", "minimum_quantity"}
)


# --- answers -------------------------------------------------------------------------------


def envelope(status: bool, message: str = "", data: Any = None) -> dict[str, Any]:
    """The one answer shape of the Data Orchestrator API."""
    return {"api_call_status": status, "message": message, "data": {} if data is None else data}


def _ok(message: str = "", data: Any = None, status: int = 200) -> Response:
    return Response.of_json(envelope(True, message, data), status)


def _fail(message: str, data: Any = None, status: int = 400) -> Response:
    return Response.of_json(envelope(False, message, data), status)


def _error_body(status: int, code: str, message: str) -> dict[str, Any]:
    del status, code
    return envelope(False, message)


def _invalid(reason: str) -> ApiError:
    return ApiError(400, "bad_request", f"An error occurred: Invalid payload detected: {reason}")


def _oauth_error(status: int, error: str, description: str) -> Response:
    return Response.of_json({"error": error, "error_description": description}, status)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _slashed(ts: float) -> str:
    """The pop answers' date format: ``2025/11/03``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y/%m/%d")


class _TokenPathRouter(Router):
    """The base router drops a trailing slash from patterns; the token path keeps it."""

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        return super().match(method, path[:-1] if path == TOKEN_PATH else path)


# --- model ---------------------------------------------------------------------------------


@dataclass(slots=True)
class TokenRecord:
    username: str
    issued_at: float
    expires_at: float
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """One request to the token endpoint: which fields came, and whether a token was issued
    (the password and secret values are not kept)."""

    at: float
    content_type: str
    fields: tuple[str, ...]
    client_id: str | None
    username: str | None
    grant_type: str | None
    scope: str | None
    granted: bool
    error: str | None = None


@dataclass(slots=True)
class LogEntry:
    at: float
    message: str
    log_type: str = "info"

    def as_json(self) -> dict[str, Any]:
        return {"timestamp": iso(self.at), "message": self.message, "log_type": self.log_type}


@dataclass(slots=True)
class ModelImport:
    model: str
    started_at: float
    ended_at: float | None = None
    marked_to_end: bool = False
    minimum_expected_lines: int | None = None
    lines_received: int = 0
    chunks: int = 0
    success: bool | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    arrivals: list[tuple[float, int]] = field(default_factory=list)  # (received at, lines)
    settled_at: float | None = None  # when the ended import was judged (success set)

    def outcome(self, lag: float, timeout: float) -> tuple[float, bool]:
        """When an ended import is judged and whether it imported (deferred model end):
        every line received counted and the count as expected, within the timeout period."""
        assert self.ended_at is not None
        deadline = self.ended_at + timeout
        if self.lines_received != self.minimum_expected_lines:
            return deadline, False
        drained = max(at for at, _ in self.arrivals) + lag if self.arrivals else self.ended_at
        if drained <= deadline:
            return max(self.ended_at, drained), True
        return deadline, False

    def counted(self, now: float, lag: float) -> int:
        """Lines the import has counted by `now` when each post is counted `lag` seconds
        after it was received (``actual_lines_imported``)."""
        if lag <= 0:
            return self.lines_received
        return sum(lines for at, lines in self.arrivals if at + lag <= now)

    def as_json(self, now: float = 0.0, lag: float = 0.0) -> dict[str, Any]:
        return {
            "model": self.model,
            "started_at": iso(self.started_at),
            "ended_at": iso(self.ended_at) if self.ended_at is not None else None,
            "success": self.success,
            "minimum_expected_lines": self.minimum_expected_lines,
            "actual_lines_imported": self.counted(now, lag),
            "marked_to_end": self.marked_to_end,
        }


@dataclass(slots=True)
class Dataset:
    dataset_import_id: str
    customer: str
    started_at: float
    models: list[ModelImport] = field(default_factory=list)
    status: str = "Dataset_import_started"
    success: bool | None = None
    message: str = ""
    processing_started_at: float | None = None
    processing_runs: int = 0
    phase_index: int = -1
    failure: tuple[str, str] | None = None  # (phase, message) for the current run
    completed_at: float | None = None
    logs: list[LogEntry] = field(default_factory=list)

    @property
    def terminal(self) -> bool:
        return self.status == COMPLETE

    @property
    def model_failed(self) -> bool:
        return any(m.success is False for m in self.models)

    def log(self, at: float, message: str, log_type: str = "info") -> None:
        self.logs.append(LogEntry(at, message, log_type))

    def open_model(self, model: str) -> ModelImport | None:
        return next((m for m in self.models if m.model == model and not m.marked_to_end), None)

    def latest(self, model: str) -> ModelImport | None:
        return next((m for m in reversed(self.models) if m.model == model), None)

    def status_json(
        self, now: float = 0.0, lag: float = 0.0, unfinished_success: bool | None = None
    ) -> dict[str, Any]:
        return {
            "status": self.status,
            "success": self.success if self.terminal else unfinished_success,
            "message": self.message,
            "model": [m.as_json(now, lag) for m in self.models],
        }


@dataclass(slots=True)
class PopFile:
    """One generated file; numeric fields are Decimals, rendered per the kind's style."""

    kind: str
    file_name: str
    customer: str
    lines: list[dict[str, Any]]
    created_at: float

    def render(self, style: str) -> dict[str, Any]:
        def value(name: str, raw: Any) -> Any:
            if name in DECIMAL_FIELDS and isinstance(raw, Decimal):
                return str(raw) if style == "string" else float(raw)
            return raw

        lines = [{k: value(k, v) for k, v in line.items()} for line in self.lines]
        return {"file_name": self.file_name, "lines": lines}


@dataclass(frozen=True, slots=True)
class Popped:
    """A file the pop endpoint returned (and removed), with the exact answer body sent."""

    at: float
    file: PopFile
    body: bytes


class NetstockState:
    """Everything the simulator knows; guard every access with ``lock``."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self.lock = threading.RLock()
        self.users: dict[str, str] = dict(users)
        self.tokens: dict[str, TokenRecord] = {}
        self.token_requests: list[TokenRequest] = []
        self.datasets: dict[str, Dataset] = {}
        self.queues: dict[tuple[str, str], deque[PopFile]] = {}
        self.popped: list[Popped] = []
        self.file_numbers: Counter[str] = Counter()
        self.pending_failures: deque[tuple[str, str]] = deque()
        self.stats: Counter[str] = Counter()

    def queue(self, customer: str, kind: str) -> deque[PopFile]:
        return self.queues.setdefault((customer, kind), deque())


# --- the simulator -------------------------------------------------------------------------


class NetstockSim(Simulator):
    """The Netstock Data Orchestrator simulator: state, HTTP routes and levers for tests.

    ``NetstockSim(clock=ManualClock(...))`` knows one user (``DEFAULT_USERNAME`` /
    ``DEFAULT_PASSWORD``) and starts with no datasets and empty pop queues. Same seed and same
    calls, same ids, tokens and generated orders.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
        users: Mapping[str, str] | None = None,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str | None = None,
        scope: str | None = DEFAULT_SCOPE,
        expires_in: int = DEFAULT_EXPIRES_IN,
        endpoints: Mapping[str, str | tuple[str, ...]] | str | None = None,
        phases: Sequence[tuple[str, float]] = DEFAULT_PHASES,
        orders_per_dataset: Mapping[str, int] | None = None,
        quantity_styles: Mapping[str, str] | None = None,
        keep_rows: bool = True,
        retry_after: int = 1,
        slow_seconds: float = 2.0,
        count_lag: float = 0.0,
        unfinished_success: bool | None = None,
        model_end: str = "deferred",
        end_timeout: float = 30.0,
        nulls: str = "accept",
    ) -> None:
        if expires_in < 1:
            raise ValueError("expires_in must be at least 1 second")
        names = [name for name, _ in phases]
        if names and names[-1] == COMPLETE:
            raise ValueError("phases end before Complete")
        self.clock = clock
        self.rng = random.Random(seed)
        self.client_id = client_id
        self.client_secret = client_secret
        self.scope = scope
        self.expires_in = expires_in
        if endpoints is None or isinstance(endpoints, str):
            if (endpoints or "corrected") not in ENDPOINT_MAPS:
                raise ValueError(f"endpoints must be a mapping or one of {list(ENDPOINT_MAPS)}")
            endpoints = ENDPOINT_MAPS[endpoints or "corrected"]
        self.endpoints: dict[str, tuple[str, ...]] = {
            endpoint: (fed,) if isinstance(fed, str) else tuple(fed)
            for endpoint, fed in endpoints.items()
        }
        self.models = frozenset(MODELS) | {m for fed in self.endpoints.values() for m in fed}
        self.phases = tuple((str(name), float(seconds)) for name, seconds in phases)
        self.orders_per_dataset = dict(
            {"po": 1, "tr": 1, "wo": 1} if orders_per_dataset is None else orders_per_dataset
        )
        self.quantity_styles = {**DEFAULT_QUANTITY_STYLES, **(quantity_styles or {})}
        self.keep_rows = keep_rows
        self.count_lag = float(count_lag)
        self.unfinished_success = unfinished_success
        if model_end not in MODEL_END_MODES:
            raise ValueError(f"model_end must be one of {MODEL_END_MODES}")
        if end_timeout < 0:
            raise ValueError("end_timeout is a duration >= 0")
        self.model_end = model_end
        self.end_timeout = float(end_timeout)
        if nulls not in ("accept", "refuse"):
            raise ValueError("nulls must be 'accept' or 'refuse'")
        self.nulls = nulls
        self.state = NetstockState(users or {DEFAULT_USERNAME: DEFAULT_PASSWORD})
        self.server = SandboxServer(
            host,
            port,
            seed=seed,
            # The base only applies its token_expired state here; each handler checks the
            # bearer token itself (`_user`) so that each 401 says why.
            authenticate=lambda _request: True,
            error_body=_error_body,
            retry_after=retry_after,
            slow_seconds=slow_seconds,
            name="netstock",
            extra_faults={SOFT_FAULT: lambda: _fail(SOFT_FAULT_MESSAGE, status=200)},
        )
        self.server.router = _TokenPathRouter()
        self._register_routes()

    # lifecycle and passthroughs

    @property
    def stats(self) -> Counter[str]:
        return self.state.stats

    # levers: credentials

    def issue_token(self, username: str = DEFAULT_USERNAME) -> str:
        """A valid token for ``username``, as the token endpoint would issue it."""
        with self.state.lock:
            return self._issue(username)

    def revoke_tokens(self) -> None:
        """Every token issued so far answers 401 from now on."""
        with self.state.lock:
            for record in self.state.tokens.values():
                record.revoked = True

    # levers: processing and generated orders

    def fail_processing(
        self,
        phase: str = "Transforming",
        message: str = "Transform script failed: column item_code is empty in 3 rows",
        dataset_import_id: str | None = None,
    ) -> None:
        """Fail the next processing run (or this dataset's current one) at the end of ``phase``."""
        if phase not in {name for name, _ in self.phases}:
            raise ValueError(f"unknown phase {phase!r}; phases are {[n for n, _ in self.phases]}")
        with self.state.lock:
            if dataset_import_id is None:
                self.state.pending_failures.append((phase, message))
            else:
                self.state.datasets[dataset_import_id].failure = (phase, message)

    def lag_counts(self, seconds: float) -> None:
        """``actual_lines_imported`` counts each import post ``seconds`` (of ``clock``) after
        it was received, as an asynchronous import does (0: at once; ``float("inf")``: never,
        the lines are lost and a later ``/model/end`` fails on the count)."""
        if seconds < 0:
            raise ValueError("the lag is a duration >= 0")
        with self.state.lock:
            self.count_lag = float(seconds)

    def add_file(
        self,
        kind: str,
        lines: Sequence[Mapping[str, Any]],
        *,
        customer: str = DEFAULT_USERNAME,
        file_name: str | None = None,
    ) -> str:
        """Queue a generated file of ``kind`` (po, tr, wo); missing fields get defaults and
        numeric fields become Decimals (give them as text for exactness; a value that is not a
        number is kept as given, to test a client against a bad line). Returns its name."""
        if kind not in POP_KINDS:
            raise ValueError(f"kind must be one of {POP_KINDS}")
        if not lines:
            raise ValueError("a file needs at least one line")
        with self.state.lock:
            now = self.clock()
            self.state.file_numbers[kind] += 1
            number = self.state.file_numbers[kind]
            name = file_name or f"{kind}_{number}.csv"
            built = [self._pop_line(kind, str(number), dict(line), now) for line in lines]
            self.state.queue(customer, kind).append(PopFile(kind, name, customer, built, now))
            self.state.stats[f"files_{kind}"] += 1
            return name

    def generate(
        self,
        kind: str,
        files: int = 1,
        lines: int = 3,
        *,
        customer: str = DEFAULT_USERNAME,
        items: Sequence[str] = DEFAULT_ITEMS,
    ) -> list[str]:
        """Queue ``files`` seeded files of ``lines`` lines each (some fractional quantities)."""
        rng = self.rng
        names = []
        for _ in range(files):
            chosen = rng.sample(list(items), k=min(lines, len(items)))
            built = []
            for item in chosen:
                quantity = Decimal(rng.randint(1, 500))
                if rng.random() < 0.25:
                    quantity = Decimal(rng.randint(1, 500_000)) / Decimal(1000)
                minimum = "minimum_quantity" if kind == "wo" else "minimum_order_quantity"
                built.append(
                    {
                        "item_code": item,
                        "item_description": f"Item {item}",
                        "quantity": quantity,
                        "unit_cost": Decimal(rng.randint(10, 99_999)) / Decimal(100),
                        minimum: Decimal(rng.choice((1, 2, 5, 10))),
                    }
                )
            names.append(self.add_file(kind, built, customer=customer))
        return names

    # views

    def dataset(self, dataset_import_id: str) -> Dataset:
        """The live dataset, its status brought up to the clock."""
        with self.state.lock:
            found = self.state.datasets[dataset_import_id]
            self._advance(found, self.clock())
            return found

    def datasets(self, customer: str | None = None) -> list[Dataset]:
        with self.state.lock:
            now = self.clock()
            chosen = [d for d in self.state.datasets.values() if customer in (None, d.customer)]
            for found in chosen:
                self._advance(found, now)
            return chosen

    def model_imports(self, dataset_import_id: str) -> list[ModelImport]:
        """The dataset's model imports, judged up to the clock."""
        with self.state.lock:
            found = self.state.datasets[dataset_import_id]
            self._advance(found, self.clock())
            return list(found.models)

    def lines(self, dataset_import_id: str, model: str) -> int:
        """Lines received by the latest import of ``model`` in the dataset (0 if none)."""
        with self.state.lock:
            found = self.state.datasets[dataset_import_id].latest(model)
            return found.lines_received if found is not None else 0

    def rows(self, dataset_import_id: str, model: str) -> list[dict[str, Any]]:
        with self.state.lock:
            found = self.state.datasets[dataset_import_id].latest(model)
            return list(found.rows) if found is not None else []

    def queued(self, kind: str, customer: str = DEFAULT_USERNAME) -> list[PopFile]:
        with self.state.lock:
            return list(self.state.queue(customer, kind))

    def popped(self, kind: str | None = None) -> list[Popped]:
        with self.state.lock:
            return [p for p in self.state.popped if kind in (None, p.file.kind)]

    # auth

    def _issue(self, username: str) -> str:
        token = f"nsk_{self.rng.getrandbits(192):048x}"
        now = self.clock()
        self.state.tokens[token] = TokenRecord(username, now, now + self.expires_in)
        self.state.stats["tokens_issued"] += 1
        return token

    def _user(self, request: Request) -> str:
        """The token's user, or a 401 in the envelope naming what is wrong."""
        header = (request.header("authorization") or "").strip()
        if not header:
            raise ApiError(401, "unauthorized", "Authorization error: no Authorization header")
        scheme, _, presented = header.partition(" ")
        presented = presented.strip()
        if scheme.lower() != "bearer" or not presented:
            raise ApiError(401, "unauthorized", "Authorization error: no Bearer token")
        with self.state.lock:
            record = next(
                (
                    r
                    for token, r in self.state.tokens.items()
                    if hmac.compare_digest(token.encode(), presented.encode())
                ),
                None,
            )
            if record is None or record.revoked:
                self.state.stats["auth_refused"] += 1
                raise ApiError(401, "unauthorized", "Authorization error: invalid token")
            if self.clock() >= record.expires_at:
                self.state.stats["auth_expired"] += 1
                raise ApiError(401, "unauthorized", "Authorization error: token has expired")
            return record.username

    @staticmethod
    def _payload(request: Request) -> dict[str, Any]:
        payload: dict[str, Any] = dict(request.query)
        if isinstance(request.json, dict):
            payload.update(request.json)
        elif request.json is not None:
            raise _invalid("request body must be a JSON object")
        return payload

    def _caller(self, request: Request) -> tuple[str, dict[str, Any]]:
        """(user, payload) after auth and the customer check."""
        user = self._user(request)
        payload = self._payload(request)
        customer = payload.get("customer_identifier")
        if not isinstance(customer, str) or not customer:
            raise _invalid("customer_identifier is required")
        if customer != user:
            raise ApiError(403, "forbidden", "Insufficient permissions")
        return user, payload

    def _dataset_of(self, user: str, payload: Mapping[str, Any]) -> Dataset:
        dataset_id = payload.get("dataset_import_id")
        if not isinstance(dataset_id, str) or not dataset_id:
            raise _invalid("dataset_import_id is required")
        found = self.state.datasets.get(dataset_id)
        if found is None or found.customer != user:
            raise ApiError(400, "bad_request", f"Dataset import {dataset_id} not found")
        self._advance(found, self.clock())
        return found

    # status over time

    def _advance(self, dataset: Dataset, now: float) -> None:
        """Bring a dataset's status up to ``now``, logging each processing step at its time."""
        if dataset.terminal:
            return
        if self.model_end == "deferred":
            self._judge(dataset, now)
            if dataset.terminal:
                return
        judged = all(m.marked_to_end and m.success is not None for m in dataset.models)
        if dataset.processing_started_at is None or not judged:
            # Not processing yet, or ready to process and waiting for every model import.
            if not dataset.models:
                dataset.status = "Dataset_import_started"
            else:
                dataset.status = "Importing_complete" if judged else "Importing"
            return
        t = max(
            dataset.processing_started_at,
            *(m.settled_at for m in dataset.models if m.settled_at is not None),
        )
        for index, (name, seconds) in enumerate(self.phases):
            if now < t:
                return
            if index > dataset.phase_index:
                dataset.phase_index = index
                dataset.status = name
                dataset.log(t, f"Dataset import status: {name}")
            end = t + seconds
            if dataset.failure is not None and dataset.failure[0] == name and now >= end:
                self._fail_dataset(dataset, end, dataset.failure[1])
                return
            t = end
        if now >= t:
            self._complete(dataset, t)

    def _judge(self, dataset: Dataset, now: float) -> None:
        """Judge the ended model imports whose time has come (deferred model end); the first
        that failed fails the dataset at its time."""
        failed: list[tuple[float, str]] = []
        for found in dataset.models:
            if found.ended_at is None or found.success is not None:
                continue
            at, ok = found.outcome(self.count_lag, self.end_timeout)
            if at > now:
                continue
            found.settled_at = at
            found.success = ok
            if ok:
                dataset.log(
                    at, f"Model import {found.model} imported ({found.lines_received} lines)"
                )
                continue
            self.state.stats["model_mismatches"] += 1
            failed.append(
                (
                    at,
                    f"Model import {found.model} failed: {found.counted(at, self.count_lag)} "
                    f"lines imported after the timeout period, total_lines_imported "
                    f"{found.minimum_expected_lines} expected",
                )
            )
        if failed:
            failed.sort()
            for at, reason in failed[1:]:
                dataset.log(at, reason, "error")
            self._fail_dataset(dataset, *failed[0])

    def _fail_dataset(self, dataset: Dataset, at: float, reason: str) -> None:
        dataset.log(at, reason, "error")
        dataset.log(at, "Dataset import failed", "error")
        dataset.status = COMPLETE
        dataset.success = False
        dataset.message = "\n".join(e.message for e in dataset.logs if e.log_type == "error")
        dataset.completed_at = at
        dataset.failure = None
        self.state.stats["datasets_failed"] += 1

    def _complete(self, dataset: Dataset, at: float) -> None:
        dataset.status = COMPLETE
        dataset.success = True
        dataset.message = ""
        dataset.completed_at = at
        dataset.log(at, "Dataset import status: Complete")
        self.state.stats["datasets_completed"] += 1
        items = sorted(
            {
                str(row["item_code"])
                for m in dataset.models
                for row in m.rows
                if isinstance(row, dict) and row.get("item_code")
            }
        ) or list(DEFAULT_ITEMS)
        for kind, files in self.orders_per_dataset.items():
            if files > 0:
                self.generate(kind, files, lines=2, customer=dataset.customer, items=items)

    # routes

    def _register_routes(self) -> None:
        add = self.server.add_route
        add("POST", TOKEN_PATH, self._token, public=True)
        add("POST", "/dataset/start", self._dataset_start)
        add("POST", "/dataset/start_processing", self._start_processing)
        add("GET", "/dataset/status", self._dataset_status)
        add("GET", "/dataset/status_legend", self._status_legend)
        add("GET", "/dataset/full_audit_log", self._audit_log)
        add("POST", "/model/start", self._model_start)
        add("GET", "/model/status", self._model_status)
        add("POST", "/model/end", self._model_end)
        add("POST", "/import/{endpoint}", self._import)
        for kind in POP_KINDS:
            add("POST", f"/file/pop_{kind}", self._pop_handler(kind))

    def _token(self, request: Request) -> Response:
        if request.path != TOKEN_PATH:
            raise ApiError(404, "resource_not_found", f"No route for POST {request.path}.")
        content_type = (request.header("content-type") or "").split(";")[0].strip().lower()
        form = dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
        with self.state.lock:
            now = self.clock()
            error = self._token_problem(content_type, form)
            self.state.token_requests.append(
                TokenRequest(
                    now,
                    content_type,
                    tuple(form),
                    form.get("client_id"),
                    form.get("username"),
                    form.get("grant_type"),
                    form.get("scope"),
                    error is None,
                    error[1] if error else None,
                )
            )
            if error is not None:
                self.state.stats["tokens_refused"] += 1
                return _oauth_error(*error)
            if self.server.token_expired:  # the token_expired fault: older tokens are dead
                for record in self.state.tokens.values():
                    record.revoked = True
            token = self._issue(form["username"])
            self.server.renew_token(token)
        return Response.of_json(
            {
                "access_token": token,
                "token_type": "Bearer",
                "scope": form.get("scope") or "",
                "expires_in": self.expires_in,
                "id_token": f"id_{token[4:20]}",
            }
        )

    def _token_problem(
        self, content_type: str, form: Mapping[str, str]
    ) -> tuple[int, str, str] | None:
        if content_type != "application/x-www-form-urlencoded":
            return 400, "invalid_request", "The request must be application/x-www-form-urlencoded"
        if form.get("grant_type") != "client_credentials":
            return 400, "unsupported_grant_type", "grant_type must be client_credentials"
        if not hmac.compare_digest(form.get("client_id", "").encode(), self.client_id.encode()) or (
            self.client_secret is not None
            and not hmac.compare_digest(
                form.get("client_secret", "").encode(), self.client_secret.encode()
            )
        ):
            return 401, "invalid_client", "Client authentication failed"
        username, password = form.get("username", ""), form.get("password", "")
        known = self.state.users.get(username)
        if (
            not username
            or known is None
            or not hmac.compare_digest(password.encode(), known.encode())
        ):
            return 400, "invalid_grant", "Invalid credentials given."
        if self.scope is not None and form.get("scope") != self.scope:
            return 400, "invalid_scope", "The requested scope is invalid, unknown, or malformed."
        return None

    def _dataset_start(self, request: Request) -> Response:
        user, _ = self._caller(request)
        with self.state.lock:
            now = self.clock()
            for existing in self.state.datasets.values():
                if existing.customer != user:
                    continue
                self._advance(existing, now)
                if not existing.terminal:
                    self.state.stats["dataset_conflicts"] += 1
                    return _fail(
                        "A dataset import is already open for this user (dataset_import_id "
                        f"{existing.dataset_import_id}). Dataset imports must be "
                        "closed/completed before attempting to start a new one.",
                        {"dataset_import_id": existing.dataset_import_id},
                    )
            dataset_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
            dataset = Dataset(dataset_id, user, now)
            dataset.log(now, "Dataset import started")
            self.state.datasets[dataset_id] = dataset
            self.state.stats["datasets_started"] += 1
        return _ok("Dataset import started successfully", {"dataset_import_id": dataset_id})

    def _start_processing(self, request: Request) -> Response:
        user, payload = self._caller(request)
        with self.state.lock:
            now = self.clock()
            dataset = self._dataset_of(user, payload)
            dataset_id = dataset.dataset_import_id
            if dataset.model_failed:
                raise ApiError(
                    400,
                    "bad_request",
                    f"Dataset import {dataset_id} failed: not all model data was successfully "
                    "imported",
                )
            if dataset.processing_started_at is not None and not dataset.terminal:
                raise ApiError(
                    400, "bad_request", f"Dataset import {dataset_id} is already being processed"
                )
            if not dataset.models:
                raise ApiError(
                    400,
                    "bad_request",
                    f"No model imports have been started for dataset import {dataset_id}",
                )
            still_open = sorted({m.model for m in dataset.models if not m.marked_to_end})
            if still_open:
                raise ApiError(
                    400,
                    "bad_request",
                    f"Not all models have been ended: {', '.join(still_open)}. "
                    "Call /model/end for each model first.",
                )
            rerun = dataset.processing_runs > 0
            dataset.processing_started_at = now
            dataset.processing_runs += 1
            dataset.phase_index = -1
            dataset.status = self.phases[0][0] if self.phases else COMPLETE
            dataset.success = None
            dataset.message = ""
            dataset.completed_at = None
            if dataset.failure is None and self.state.pending_failures:
                dataset.failure = self.state.pending_failures.popleft()
            dataset.log(now, "Dataset reprocessing started" if rerun else "Processing started")
            self.state.stats["processing_started"] += 1
            if not self.phases:
                self._complete(dataset, now)
            else:
                self._advance(dataset, now)
        return _ok(
            "Dataset import completed and dataset processing started for " + dataset_id,
            status=202,
        )

    def _dataset_status(self, request: Request) -> Response:
        user, payload = self._caller(request)
        with self.state.lock:
            data = self._dataset_of(user, payload).status_json(
                self.clock(), self.count_lag, self.unfinished_success
            )
        return _ok("", data)

    def _status_legend(self, request: Request) -> Response:
        self._user(request)
        legend = [{"status": s, "description": d} for s, d in STATUS_LEGEND]
        return _ok("", {"legend": legend})

    def _audit_log(self, request: Request) -> Response:
        user, payload = self._caller(request)
        with self.state.lock:
            dataset = self._dataset_of(user, payload)
            logs = [entry.as_json() for entry in dataset.logs]
        return _ok("", {"logs": logs})

    def _model_name(self, payload: Mapping[str, Any]) -> str:
        model = payload.get("model")
        if not isinstance(model, str) or not model:
            raise _invalid("model is required")
        if model not in self.models and not (model.startswith("ut_") and len(model) > 3):
            raise _invalid(f"unknown model '{model}'")
        return model

    def _model_start(self, request: Request) -> Response:
        user, payload = self._caller(request)
        with self.state.lock:
            now = self.clock()
            dataset = self._dataset_of(user, payload)
            model = self._model_name(payload)
            dataset_id = dataset.dataset_import_id
            if dataset.terminal or dataset.processing_started_at is not None:
                raise ApiError(
                    400,
                    "bad_request",
                    f"Dataset import {dataset_id} is no longer accepting data "
                    f"(status {dataset.status})",
                )
            if dataset.open_model(model) is not None:
                self.state.stats["model_conflicts"] += 1
                raise ApiError(
                    400,
                    "bad_request",
                    f"Model import {model} is already open for dataset import {dataset_id}. "
                    "Model imports must be closed/completed before attempting to start a new "
                    "one of the same type.",
                )
            dataset.models.append(ModelImport(model, now))
            self._advance(dataset, now)
            dataset.log(now, f"Model import {model} started")
            self.state.stats["models_started"] += 1
        return _ok(f"Model import {model} started.")

    def _model_status(self, request: Request) -> Response:
        user, payload = self._caller(request)
        with self.state.lock:
            dataset = self._dataset_of(user, payload)
            data = {
                "dataset_import_id": dataset.dataset_import_id,
                "models": [m.as_json(self.clock(), self.count_lag) for m in dataset.models],
            }
        return _ok("", data)

    def _model_end(self, request: Request) -> Response:
        user, payload = self._caller(request)
        total = payload.get("total_lines_imported")
        if isinstance(total, bool) or not isinstance(total, int) or total < 0:
            raise _invalid("total_lines_imported must be an integer >= 0")
        with self.state.lock:
            now = self.clock()
            dataset = self._dataset_of(user, payload)
            model = self._model_name(payload)
            dataset_id = dataset.dataset_import_id
            found = dataset.latest(model)
            if found is None:
                raise ApiError(
                    400,
                    "bad_request",
                    f"Model import {model} has not been started for dataset import {dataset_id}",
                )
            if found.marked_to_end:
                raise ApiError(400, "bad_request", f"Model import {model} has already been ended")
            found.marked_to_end = True
            found.ended_at = now
            found.minimum_expected_lines = total
            if self.model_end == "deferred":  # 202 now; judged on the clock (`_judge`)
                dataset.log(now, f"Model import {model} marked to end ({total} lines expected)")
                self._advance(dataset, now)
                self.state.stats["models_ended"] += 1
                return _ok(f"Model import {model} ended.", status=202)
            # A finite lag catches up within the document's timeout period; an infinite one
            # never does: the lines were lost in the import.
            imported = (
                found.counted(now, self.count_lag)
                if self.count_lag == float("inf")
                else found.lines_received
            )
            if total != imported:
                found.success = False
                reason = (
                    f"Model import {model} failed: total_lines_imported {total} does not "
                    f"match the {imported} lines imported"
                )
                self.state.stats["model_mismatches"] += 1
                self._fail_dataset(dataset, now, reason)
                raise ApiError(400, "bad_request", reason)
            found.success = True
            found.settled_at = now
            dataset.log(now, f"Model import {model} ended ({total} lines)")
            self._advance(dataset, now)
            self.state.stats["models_ended"] += 1
        return _ok(f"Model import {model} ended.", status=202)

    def _import(self, request: Request) -> Response:
        user, payload = self._caller(request)
        endpoint = request.params["endpoint"]
        candidates = self.endpoints.get(endpoint) or (
            (endpoint,) if endpoint.startswith("ut_") else None
        )
        if candidates is None:
            raise ApiError(404, "resource_not_found", f"Not found: /import/{endpoint}")
        data = payload.get("data")
        if not isinstance(data, list) or not data:
            raise _invalid("data must be a non-empty list")
        with self.state.lock:
            now = self.clock()
            dataset = self._dataset_of(user, payload)
            dataset_id = dataset.dataset_import_id
            model = self._import_model(dataset, endpoint, candidates)
            self._check_lines(model, endpoint, payload, data)
            found = dataset.latest(model)
            if found is None:
                raise ApiError(
                    400,
                    "bad_request",
                    f"Model import {model} has not been started for dataset import {dataset_id}",
                )
            if found.marked_to_end:
                raise ApiError(
                    400,
                    "bad_request",
                    f"Model import {model} has been marked to end; no more data will be accepted",
                )
            found.lines_received += len(data)
            found.arrivals.append((now, len(data)))
            found.chunks += 1
            if self.keep_rows:
                found.rows.extend(data)
            dataset.log(now, f"Received {len(data)} lines for model {model}")
            self.state.stats["lines_received"] += len(data)
            self.state.stats["import_posts"] += 1
        return _ok(f"{len(data)} lines accepted for import into {model}", status=202)

    @staticmethod
    def _import_model(dataset: Dataset, endpoint: str, candidates: tuple[str, ...]) -> str:
        """The model an import post feeds: the endpoint's own, or, where the map gives one
        URL to several models (the document's Master and Transfers), the one open now."""
        if len(candidates) == 1:
            return candidates[0]
        opened = [m for m in candidates if dataset.open_model(m) is not None]
        if len(opened) > 1:
            raise _invalid(
                f"/import/{endpoint} takes {' or '.join(candidates)} lines and both are open: "
                "end one first"
            )
        return opened[0] if opened else candidates[0]

    def _check_lines(
        self, model: str, endpoint: str, payload: Mapping[str, Any], data: list[Any]
    ) -> None:
        if model.startswith("ut_") and not isinstance(payload.get("file_name"), str):
            raise _invalid("file_name is required for custom models")
        types = FIELD_TYPES.get("sales_legacy" if endpoint == "sales_legacy" else model, {})
        for index, row in enumerate(data):
            if not isinstance(row, dict):
                raise _invalid(f"data[{index}] must be an object")
            for name in KEY_FIELDS.get(model, ()):
                if row.get(name) in (None, ""):
                    raise _invalid(f"data[{index}].{name} is required for model {model}")
            for name, value in row.items():
                if value is None and name in types and self.nulls == "refuse":
                    self.state.stats["null_refusals"] += 1
                    raise _invalid(f"data[{index}].{name} must be a {types[name]} (got null)")
                if name in types and (problem := type_problem(types[name], value)):
                    self.state.stats["type_refusals"] += 1
                    raise _invalid(f"data[{index}].{name} {problem} (got {value!r})")

    def _pop_handler(self, kind: str) -> Callable[[Request], Response]:
        def handler(request: Request) -> Response:
            user, _ = self._caller(request)
            with self.state.lock:
                queue = self.state.queue(user, kind)
                if not queue:
                    self.state.stats[f"pops_empty_{kind}"] += 1
                    return _ok(f"No {POP_NAMES[kind]} available")
                popped = queue.popleft()
                response = _ok(POP_MESSAGE, popped.render(self.quantity_styles[kind]), status=202)
                self.state.popped.append(Popped(self.clock(), popped, response.body))
                self.state.stats[f"pops_{kind}"] += 1
            return response

        return handler

    def _pop_line(self, kind: str, number: str, line: dict[str, Any], now: float) -> dict[str, Any]:
        day = _slashed(now)
        defaults: dict[str, Any] = {
            "order_number": number,
            "supplier": "SUPPLIER01",
            "location_code": "WHOLESALE",
            "transfer_from_code": "CENTRAL",
            "transfer_to_code": "WHOLESALE",
            "order_date": day,
            "username": "System Administrator",
            "user_email_address": "admin@netstock.example",
            "item_code": "ITEM0001",
            "item_description": "",
            "uom": "EA",
            "quantity": Decimal(1),
            "unit_cost": Decimal("1.0"),
            "created_date": day,
            "expected_receipt_date": day,
            "receipt_date": day,
            "due_date": day,
            "minimum_order_quantity": Decimal("1.0"),
            "minimum_quantity": Decimal("1.0"),
            "comments": None,
            "export_location_code": "SANDBOX01",
            "sales_location_code": "WHOLESALE",
        }
        built: dict[str, Any] = {}
        for name in POP_FIELDS[kind]:
            value = line.pop(name, defaults[name])
            if name in DECIMAL_FIELDS and value is not None:
                # A value that is not a number is kept as given: a lever to test a client.
                with contextlib.suppress(InvalidOperation):
                    value = Decimal(str(value))
            built[name] = value
        built.update(line)  # extra fields ride along
        return built


# --- command line --------------------------------------------------------------------------


def run(
    host: str = "127.0.0.1",
    port: int = 8767,
    seed: int = 0,
    *,
    username: str = DEFAULT_USERNAME,
    password: str = DEFAULT_PASSWORD,
    client_id: str = DEFAULT_CLIENT_ID,
    scope: str | None = DEFAULT_SCOPE,
    expires_in: int = DEFAULT_EXPIRES_IN,
    initial_files: int = 2,
    phases: Iterable[tuple[str, float]] = DEFAULT_PHASES,
    count_lag: float = 0.0,
    model_end: str = "deferred",
    endpoints: str = "corrected",
    nulls: str = "accept",
) -> None:
    """Serve a Netstock simulator in the foreground until SIGINT/SIGTERM, with
    ``initial_files`` generated POs, TRs and WOs already queued for ``username``."""
    sim = NetstockSim(
        seed=seed,
        host=host,
        port=port,
        users={username: password},
        client_id=client_id,
        scope=scope,
        expires_in=expires_in,
        phases=tuple(phases),
        count_lag=count_lag,
        model_end=model_end,
        endpoints=endpoints,
        nulls=nulls,
    )
    for kind in POP_KINDS:
        if initial_files > 0:
            sim.generate(kind, initial_files, customer=username)
    sim.start()
    print(f"netstock sandbox: {sim.base_url}", flush=True)
    print(
        f"  token: POST {TOKEN_PATH} client_id={client_id} username={username} "
        f"scope={scope or ''}; expires_in={expires_in}s; seed={seed}",
        flush=True,
    )
    print(f"  queued: {initial_files} file(s) each of po, tr, wo", flush=True)
    refused = "refused with a 400" if nulls == "refuse" else "accepted"
    print(f"  import lines: a null in a typed field is {refused}", flush=True)
    try:
        sim.server.serve_forever()
    finally:
        sim.stop()


def parse_phases(text: str) -> tuple[tuple[str, float], ...]:
    """``"1,1,4,2"``: seconds for Importing, Importing_complete, Transforming, Copying_po_db."""
    seconds = [float(part) for part in text.split(",") if part.strip()]
    if len(seconds) != len(DEFAULT_PHASES):
        raise ValueError(f"give {len(DEFAULT_PHASES)} comma-separated durations")
    return tuple((name, s) for (name, _), s in zip(DEFAULT_PHASES, seconds, strict=True))
