"""A stateful import-jobs planning API simulator over real HTTP, following import-jobs-api.txt.

Routes are the document's, at the server root (``base_url`` is ``http://127.0.0.1:PORT``):
``POST /api/import/catalog|inventory|suppliers|purchase-orders|orders|demand-history`` and
``GET /api/import/status/{jobId}``. Errors are ``{"error": <code>, "message": <text>}``; every
response carries ``X-Request-ID`` and a request's ``X-Correlation-ID`` is logged.

Interpretations (the document is short; each choice is written down here):

- **Auth and scopes**: the bare key in ``x-api-key``. Each key has scopes: ``import:write`` is
  needed to POST an import, ``import:read`` or ``import:write`` to read a job (a key that can
  submit can follow its jobs). A missing or unknown key is 401 ``unauthorized``; a known key
  without the scope is 403 ``forbidden``. ``api_key`` has both scopes, ``read_only_key`` only
  ``import:read``; ``add_key`` adds one.
- **Request shape** (checked at once, no job made): the body must be a JSON object holding its
  array (``products``, ``levels``, ``suppliers``, ``purchaseOrders``, ``orders``, ``records``);
  otherwise 400 ``validation_error``. Other top-level keys are ignored. An empty array makes a
  job of 0 rows that completes.
- **The 202 envelope** is the job exactly as the status endpoint shows it: ``jobId`` (a UUID),
  ``status: "PENDING"``, ``rowCount``, ``processedCount: 0``, ``failedCount: 0``,
  ``errors: []``, ``completedAt: null``. Unknown job id: 404 ``not_found``.
- **Progress**: ``PENDING`` for ``pending_seconds`` after creation, then ``PROCESSING`` at
  ``rows_per_second`` (0: all at once) with ``processedCount`` climbing, then ``COMPLETED``
  or ``FAILED`` with ``completedAt`` (ISO 8601 UTC, ms, ``Z``). Time is ``clock()``: real time
  (optionally with a background worker, ``start_worker``), or a ``ManualClock`` a test moves.
  With ``auto=False`` the clock moves nothing and only ``process_jobs()`` does.
- **Rows** are validated one by one while processing: required fields present, non-null and
  of the documented type (string: a non-blank string; number: a finite JSON number, not a
  boolean; array: a JSON array, and ``lines`` must hold at least one line object);
  ``weekStarting`` must be an ISO date. Each problem is one error ``{"row", "key", "field",
  "message"}``: ``row`` is the 0-based index in the submitted array, ``key`` the row's natural
  key as submitted (parts joined with ``|``, a missing ``channel`` read as ``ALL``; null if a
  part is missing), ``field`` a path within the row such as
  ``lines[1].quantity`` (null when the row itself is not an object). ``failedCount`` counts
  rows, not errors; ``processedCount`` counts rows looked at, failed ones included. No
  referential checks (a PO's supplier need not have been imported).
- **Commit**: a job's valid rows are stored together when it finishes. A job with some bad
  rows is ``COMPLETED``; a job whose every row failed, or one made to fail (``fail_next_job``,
  a job-level error with ``row: null``), is ``FAILED``, stores nothing and reports
  ``processedCount = failedCount = rowCount``.
- **Stored data** (upserts, keyed by natural id; a later row or job replaces an earlier one):
  catalog by ``externalId`` (``name`` defaults to it); inventory by ``skuId`` and the
  normalised ``{organization_id}-{locationId}`` (``reorderPoint`` also sets ``minQuantity``);
  suppliers by ``externalId``; purchase orders by ``externalPoNumber``, the documented
  idempotent key: a re-sent PO replaces the stored one, lines included, never adds a second
  (``status`` defaults to ``PENDING``); orders by ``externalOrderId``; demand history by
  ``skuId``, ``locationId``, the week (``weekStarting`` moved to the Monday of its ISO week)
  and ``channel`` (default ``ALL``; ``actualDemand`` defaults to 0, ``forecastedDemand`` to
  ``actualDemand``). Unknown fields are kept with the record.
- **Other readings** (where the document is silent, a test can switch the simulator to the
  reading the client does not assume): ``shape`` (an ``AnswerShape``) changes how a job
  reports: errors with a 1-based ``row`` or none at all, without ``key``, ``failedCount``
  counting errors instead of rows, ``processedCount`` counting only the rows imported.
  ``append`` (a set of kinds) makes those imports append instead of upsert: a row whose key
  is stored already is stored again beside it (``sim.records`` shows it under the key plus
  ``"#2"``, ``"#3"``...; demand history adds its units into the week's bucket), so a re-sent
  row is counted twice. ``omitted="keep"`` makes an omitted optional field keep its stored
  value on an update instead of taking the documented default (the text: ``"reset"``).
- **Faults**: the base's kinds (429 with ``Retry-After``, 500, 503, slow, drop, malformed,
  token_expired) per route, plus ``html_502`` (a proxy's HTML 502 page) and ``garbled_400``
  (a 400 whose body is cut-off JSON). Faults other than slow and drop answer before the
  handler, so they create no job; slow and drop create the job, the client never learns it.

State for tests: ``sim.state.jobs`` (id -> ``Job``), the stores ``catalog``, ``inventory``,
``suppliers``, ``purchase_orders``, ``orders``, ``demand_history`` (see ``sim.records(kind)``)
and ``stats`` (``jobs_created``, ``jobs_completed``, ``jobs_failed``, ``rows_accepted``,
``rows_failed``, ``po_created``, ``po_replaced``, ...). Read them under ``sim.state.lock`` or
through the accessors, which first bring jobs up to ``clock()``.
"""

from __future__ import annotations

import hmac
import math
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, Literal

from syncd.sandbox.base import (
    ApiError,
    ManualClock,
    Request,
    Response,
    SandboxServer,
    Simulator,
)

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_READ_ONLY_KEY",
    "KINDS",
    "READ",
    "WRITE",
    "AnswerShape",
    "ImportJobsSim",
    "ImportJobsState",
    "Job",
    "ManualClock",
    "run",
]

DEFAULT_API_KEY: Final = "import-jobs-sandbox-key"
DEFAULT_READ_ONLY_KEY: Final = "import-jobs-sandbox-read-key"
DEFAULT_ORG: Final = "org_sandbox"
READ: Final = "import:read"
WRITE: Final = "import:write"

PENDING: Final = "PENDING"
PROCESSING: Final = "PROCESSING"
COMPLETED: Final = "COMPLETED"
FAILED: Final = "FAILED"

HTML_502: Final = "html_502"
GARBLED_400: Final = "garbled_400"
_HTML_502_BODY: Final = (
    b"<html><head><title>502 Bad Gateway</title></head>"
    b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"
)
_GARBLED_400_BODY: Final = b'{"error": "validation_error", "message": "Invalid row at'

Number = int | float


# --- row validation --------------------------------------------------------------------------


class _Row:
    """Reads one submitted row, collecting (field, message) problems instead of raising."""

    def __init__(self, raw: Any, prefix: str = "") -> None:
        self.is_object = isinstance(raw, dict)
        self.raw: dict[str, Any] = raw if isinstance(raw, dict) else {}
        self.prefix = prefix
        self.problems: list[tuple[str | None, str]] = []
        if not self.is_object:
            where = prefix.rstrip(".") or None
            self.problems.append((where, f"{where or 'row'} must be an object"))

    def _fail(self, name: str, message: str) -> None:
        where = self.prefix + name
        self.problems.append((where, f"{where} {message}"))

    def text(self, name: str, *, required: bool = True) -> str | None:
        value = self.raw.get(name)
        if value is None:
            if required:
                self._fail(name, "is required")
            return None
        if not isinstance(value, str):
            self._fail(name, "must be a string")
            return None
        if required and not value.strip():
            self._fail(name, "must not be empty")
            return None
        return value

    def number(self, name: str, *, required: bool = True) -> Number | None:
        value = self.raw.get(name)
        if value is None:
            if required:
                self._fail(name, "is required")
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self._fail(name, "must be a number")
            return None
        if not math.isfinite(value):
            self._fail(name, "must be a finite number")
            return None
        return value

    def week(self, name: str) -> date | None:
        text = self.text(name)
        if text is None:
            return None
        try:
            day = date.fromisoformat(text)
        except ValueError:
            try:
                day = datetime.fromisoformat(text.replace("Z", "+00:00")).date()
            except ValueError:
                self._fail(name, "must be an ISO date (YYYY-MM-DD)")
                return None
        return day - timedelta(days=day.weekday())

    def lines(
        self, name: str, read: Callable[[_Row], dict[str, Any]]
    ) -> list[dict[str, Any]] | None:
        value = self.raw.get(name)
        if value is None:
            self._fail(name, "is required")
            return None
        if not isinstance(value, list):
            self._fail(name, "must be an array")
            return None
        if not value:
            self._fail(name, "must contain at least one line")
            return None
        result = []
        for index, raw_line in enumerate(value):
            line = _Row(raw_line, f"{self.prefix}{name}[{index}].")
            if line.is_object:
                result.append({**line.raw, **read(line)})
            self.problems.extend(line.problems)
        return result


def _catalog(row: _Row, org: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    del org
    external_id = row.text("externalId")
    name = row.text("name", required=False)
    return (external_id,), {"externalId": external_id, "name": name or external_id}


def _inventory(row: _Row, org: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    sku, location = row.text("skuId"), row.text("locationId")
    on_hand = row.number("quantityOnHand", required=False) or 0
    reserved = row.number("quantityReserved", required=False) or 0
    reorder = row.number("reorderPoint", required=False) or 0
    normalized = f"{org}-{location}" if location else None
    return (sku, normalized), {
        "skuId": sku,
        "locationId": normalized,
        "locationCode": location,
        "quantityOnHand": on_hand,
        "quantityReserved": reserved,
        "reorderPoint": reorder,
        "minQuantity": reorder,
    }


def _supplier(row: _Row, org: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    del org
    external_id = row.text("externalId")
    return (external_id,), {"externalId": external_id}


def _po_line(line: _Row) -> dict[str, Any]:
    return {
        "skuId": line.text("skuId"),
        "quantity": line.number("quantity"),
        "unitCost": line.number("unitCost"),
    }


def _purchase_order(row: _Row, org: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    del org
    number = row.text("externalPoNumber")
    record = {
        "externalPoNumber": number,
        "supplierId": row.text("supplierId"),
        "destinationLocationId": row.text("destinationLocationId"),
        "status": row.text("status", required=False) or "PENDING",
        "lines": row.lines("lines", _po_line),
    }
    return (number,), record


def _order_line(line: _Row) -> dict[str, Any]:
    return {
        "skuId": line.text("skuId"),
        "quantity": line.number("quantity"),
        "locationId": line.text("locationId"),
    }


def _order(row: _Row, org: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    del org
    order_id = row.text("externalOrderId")
    return (order_id,), {"externalOrderId": order_id, "lines": row.lines("lines", _order_line)}


def _demand(row: _Row, org: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    del org
    sku, location = row.text("skuId"), row.text("locationId")
    week = row.week("weekStarting")
    channel = row.text("channel", required=False) or "ALL"
    actual = row.number("actualDemand", required=False)
    forecast = row.number("forecastedDemand", required=False)
    actual = 0 if actual is None else actual
    week_text = week.isoformat() if week else None
    return (sku, location, week_text, channel), {
        "skuId": sku,
        "locationId": location,
        "weekStarting": week_text,
        "channel": channel,
        "actualDemand": actual,
        "forecastedDemand": actual if forecast is None else forecast,
    }


_DEFAULTED: Final[Mapping[str, tuple[str, ...]]] = {
    "catalog": ("name",),
    "inventory": ("quantityOnHand", "quantityReserved", "reorderPoint"),
    "purchase-orders": ("status",),
    "demand-history": ("actualDemand", "forecastedDemand"),
}
"""Optional fields the document gives a default: what ``omitted="keep"`` keeps instead."""

Reader = Callable[[_Row, str], tuple[tuple[Any, ...], dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Kind:
    """One import endpoint: URL segment, body array key, row reader and its store."""

    name: str
    key: str
    read: Reader
    store: str
    key_fields: tuple[str, ...]


KINDS: Final[Mapping[str, Kind]] = {
    k.name: k
    for k in (
        Kind("catalog", "products", _catalog, "catalog", ("externalId",)),
        Kind("inventory", "levels", _inventory, "inventory", ("skuId", "locationId")),
        Kind("suppliers", "suppliers", _supplier, "suppliers", ("externalId",)),
        Kind(
            "purchase-orders",
            "purchaseOrders",
            _purchase_order,
            "purchase_orders",
            ("externalPoNumber",),
        ),
        Kind("orders", "orders", _order, "orders", ("externalOrderId",)),
        Kind(
            "demand-history",
            "records",
            _demand,
            "demand_history",
            ("skuId", "locationId", "weekStarting", "channel"),
        ),
    )
}


def _error_key(kind: Kind, raw: Any) -> str | None:
    """The row's natural key as the client sent it (parts joined with ``|``), for its errors;
    None when a part is missing or not a string."""
    if not isinstance(raw, dict):
        return None
    parts = [raw.get(name, "ALL" if name == "channel" else None) for name in kind.key_fields]
    texts = [part for part in parts if isinstance(part, str) and part.strip()]
    if len(texts) != len(parts):
        return None
    return "|".join(texts)


@dataclass(frozen=True, slots=True)
class AnswerShape:
    """How a job reports its rows; the document names the counts and "row-level error
    details" but shows neither. The defaults are the client's reading."""

    row_index: Literal["zero", "one", "none"] = "zero"  # errors' `row`: 0-based, 1-based, absent
    error_key: bool = True  # errors carry the row's natural key
    failed_count: Literal["rows", "errors"] = "rows"  # failedCount counts rows or errors
    processed_count: Literal["all", "imported"] = "all"  # processedCount: looked at / imported

    def error(self, error: dict[str, Any]) -> dict[str, Any]:
        shown = dict(error)
        if shown.get("row") is not None:
            if self.row_index == "none":
                del shown["row"]
            elif self.row_index == "one":
                shown["row"] += 1
        if not self.error_key:
            shown.pop("key", None)
        return shown


def iso_ms(ts: float) -> str:
    moment = datetime.fromtimestamp(ts, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# --- model -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Job:
    """One import job; ``accepted`` holds the valid rows until the job commits them."""

    job_id: str
    kind: str
    rows: list[Any]
    created_at: float
    status: str = PENDING
    started_at: float | None = None
    processed: int = 0
    failed_rows: set[int] = field(default_factory=set)
    errors: list[dict[str, Any]] = field(default_factory=list)
    accepted: list[tuple[tuple[Any, ...], dict[str, Any]]] = field(default_factory=list)
    completed_at: float | None = None
    fail_reason: str | None = None  # set: the job FAILS at the end whatever its rows

    @property
    def open(self) -> bool:
        return self.status in (PENDING, PROCESSING)

    def as_json(self, shape: AnswerShape = AnswerShape()) -> dict[str, Any]:
        failed = self.status == FAILED
        refused = len(self.failed_rows)
        if shape.failed_count == "errors":
            refused = sum(1 for e in self.errors if e.get("row") is not None)
        processed = self.processed
        if shape.processed_count == "imported":
            processed -= len(self.failed_rows)
        return {
            "jobId": self.job_id,
            "status": self.status,
            "rowCount": len(self.rows),
            "processedCount": len(self.rows) if failed else processed,
            "failedCount": len(self.rows) if failed else refused,
            "errors": [shape.error(e) for e in self.errors],
            "completedAt": iso_ms(self.completed_at) if self.completed_at is not None else None,
        }


class ImportJobsState:
    """Jobs and the imported data; guard every access with ``lock``.

    Stores map natural key tuples to records: ``catalog``/``suppliers``/``purchase_orders``/
    ``orders`` by ``(id,)``, ``inventory`` by ``(skuId, normalised locationId)``,
    ``demand_history`` by ``(skuId, locationId, week Monday, channel)``.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.jobs: dict[str, Job] = {}
        self.catalog: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.inventory: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.suppliers: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.purchase_orders: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.orders: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.demand_history: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.stats: Counter[str] = Counter()

    def store(self, kind: str) -> dict[tuple[Any, ...], dict[str, Any]]:
        store: dict[tuple[Any, ...], dict[str, Any]] = getattr(self, KINDS[kind].store)
        return store


def _error_body(status: int, code: str, message: str) -> dict[str, Any]:
    del status
    return {"error": code, "message": message}


# --- the simulator ---------------------------------------------------------------------------


class ImportJobsSim(Simulator):
    """The import-jobs simulator: state, HTTP routes and Python-side levers for tests.

    ``ImportJobsSim(clock=ManualClock(0), pending_seconds=1, rows_per_second=10)`` makes jobs
    that a test moves with ``clock.advance``; ``auto=False`` leaves them to ``process_jobs()``.
    Same seed, same job ids.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        api_key: str = DEFAULT_API_KEY,
        read_only_key: str | None = DEFAULT_READ_ONLY_KEY,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
        pending_seconds: float = 0.2,
        rows_per_second: float = 1000.0,
        auto: bool = True,
        organization_id: str = DEFAULT_ORG,
        retry_after: int = 1,
        slow_seconds: float = 2.0,
        shape: AnswerShape | None = None,
        append: Iterable[str] = (),
        omitted: Literal["reset", "keep"] = "reset",
    ) -> None:
        if pending_seconds < 0 or rows_per_second < 0:
            raise ValueError("pending_seconds and rows_per_second must not be negative")
        self.clock = clock
        self.pending_seconds = pending_seconds
        self.rows_per_second = rows_per_second
        self.auto = auto
        self.shape = shape or AnswerShape()
        self.append = set(append)
        self.omitted = omitted
        self.organization_id = organization_id
        self.auth_header = "x-api-key"
        self.api_key = api_key
        self.read_only_key = read_only_key
        self.rng = random.Random(seed)
        self.state = ImportJobsState()
        self._keys: dict[str, frozenset[str]] = {api_key: frozenset({READ, WRITE})}
        if read_only_key:
            self._keys[read_only_key] = frozenset({READ})
        self._fail_next: list[str] = []
        self.server = SandboxServer(
            host,
            port,
            seed=seed,
            token=api_key,
            authenticate=self._authenticate,
            error_body=_error_body,
            retry_after=retry_after,
            slow_seconds=slow_seconds,
            name="import_jobs",
            extra_faults={
                HTML_502: lambda: Response.raw(_HTML_502_BODY, 502, "text/html"),
                GARBLED_400: lambda: Response.raw(_GARBLED_400_BODY, 400, "application/json"),
            },
        )
        for kind in KINDS.values():
            self.server.add_route("POST", f"/api/import/{kind.name}", self._importer(kind))
        self.server.add_route("GET", "/api/import/status/{jobId}", self._status)
        self._worker: threading.Thread | None = None
        self._worker_stop = threading.Event()

    # lifecycle and passthroughs

    def stop(self) -> None:
        self.stop_worker()
        super().stop()

    def auth_headers(self, key: str | None = None) -> dict[str, str]:
        return {self.auth_header: self.api_key if key is None else key}

    # keys

    def add_key(self, key: str, scopes: Iterable[str]) -> None:
        """Accept ``key`` with exactly ``scopes`` (e.g. ``{"import:write"}``)."""
        with self.state.lock:
            self._keys[key] = frozenset(scopes)

    # Python-side levers

    def fail_next_job(self, reason: str = "Import processing failed.") -> None:
        """The next job created FAILS with a job-level error, whatever its rows."""
        with self.state.lock:
            self._fail_next.append(reason)

    def tick(self) -> None:
        """Bring every open job up to ``clock()`` (nothing with ``auto=False``)."""
        if not self.auto:
            return
        with self.state.lock:
            now = self.clock()
            for job in self.state.jobs.values():
                if job.open:
                    self._advance(job, now)

    def process_jobs(self, rows: int | None = None) -> int:
        """Move every open job on by hand, whatever the clock: start it, process up to
        ``rows`` more of its rows (all by default) and finish it when none are left.
        Returns how many jobs finished."""
        finished = 0
        with self.state.lock:
            now = self.clock()
            for job in self.state.jobs.values():
                if not job.open:
                    continue
                if job.status == PENDING:
                    job.status, job.started_at = PROCESSING, now
                target = len(job.rows) if rows is None else job.processed + rows
                self._process(job, min(target, len(job.rows)))
                if job.processed >= len(job.rows):
                    self._finish(job, now)
                    finished += 1
        return finished

    def start_worker(self, interval: float = 0.1) -> None:
        """Background mode: a thread ticks jobs every ``interval`` real seconds, so data lands
        even when nobody polls (a poll or an accessor ticks them anyway)."""
        self.stop_worker()
        self._worker_stop.clear()

        def loop() -> None:
            while not self._worker_stop.wait(interval):
                self.tick()

        self._worker = threading.Thread(target=loop, name="import-jobs-worker", daemon=True)
        self._worker.start()

    def stop_worker(self) -> None:
        thread = self._worker
        if thread is None:
            return
        self._worker_stop.set()
        thread.join(timeout=5)
        self._worker = None

    # Python-side views

    def job(self, job_id: str) -> dict[str, Any]:
        """The job as ``GET /api/import/status/{jobId}`` would show it now."""
        self.tick()
        with self.state.lock:
            return self.state.jobs[job_id].as_json(self.shape)

    def records(self, kind: str) -> dict[tuple[Any, ...], dict[str, Any]]:
        """A copy of what ``kind`` has stored, by natural key tuple."""
        self.tick()
        with self.state.lock:
            return dict(self.state.store(kind))

    # job progress

    def _advance(self, job: Job, now: float) -> None:
        if job.status == PENDING:
            start = job.created_at + self.pending_seconds
            if now < start:
                return
            job.status, job.started_at = PROCESSING, start
        started = job.started_at if job.started_at is not None else now
        total = len(job.rows)
        if self.rows_per_second == 0:
            target, done_at = total, started
        else:
            target = min(total, math.floor((now - started) * self.rows_per_second + 1e-9))
            done_at = started + total / self.rows_per_second
        self._process(job, target)
        if job.processed >= total and now >= done_at:
            self._finish(job, done_at)

    def _process(self, job: Job, target: int) -> None:
        kind = KINDS[job.kind]
        while job.processed < target:
            index = job.processed
            row = _Row(job.rows[index])
            key, record = kind.read(row, self.organization_id) if row.is_object else ((), {})
            if row.problems:
                job.failed_rows.add(index)
                key_text = _error_key(kind, job.rows[index])
                job.errors.extend(
                    {"row": index, "key": key_text, "field": where, "message": message}
                    for where, message in row.problems
                )
            else:
                job.accepted.append((key, {**row.raw, **record, "_sent": row.raw}))
            job.processed += 1

    def _finish(self, job: Job, at: float) -> None:
        job.completed_at = at
        stats = self.state.stats
        if job.fail_reason is None and (not job.rows or job.accepted):
            job.status = COMPLETED
            store = self.state.store(job.kind)
            for key, record in job.accepted:
                if job.kind == "purchase-orders":
                    stats["po_replaced" if key in store else "po_created"] += 1
                self._store(job.kind, store, key, record)
            stats["jobs_completed"] += 1
            stats["rows_accepted"] += len(job.accepted)
        else:
            job.status = FAILED
            if job.fail_reason is not None:
                job.errors.append(
                    {"row": None, "key": None, "field": None, "message": job.fail_reason}
                )
            stats["jobs_failed"] += 1
        stats["rows_failed"] += len(job.failed_rows)
        job.accepted = []

    def _store(
        self,
        kind: str,
        store: dict[tuple[Any, ...], dict[str, Any]],
        key: tuple[Any, ...],
        record: dict[str, Any],
    ) -> None:
        """Upsert (the client's reading) or, for kinds in ``append``, add beside what is there."""
        old = store.get(key)
        if old is not None and self.omitted == "keep":
            raw = record.get("_sent", record)
            for name in _DEFAULTED.get(kind, ()):
                if raw.get(name) is None and name in old:
                    record[name] = old[name]
            if kind == "inventory":
                record["minQuantity"] = record["reorderPoint"]
        record.pop("_sent", None)
        if old is None or kind not in self.append:
            store[key] = record
            return
        self.state.stats["rows_appended"] += 1
        if kind == "demand-history":  # one bucket per week: the units add up
            for name in ("actualDemand", "forecastedDemand"):
                old[name] = (old.get(name) or 0) + (record.get(name) or 0)
            return
        n = 2
        while (*key, f"#{n}") in store:
            n += 1
        store[(*key, f"#{n}")] = record

    # auth

    def _authenticate(self, request: Request) -> bool:
        return self._scopes(request) is not None

    def _scopes(self, request: Request) -> frozenset[str] | None:
        presented = (request.header(self.auth_header) or "").strip().encode()
        if not presented:
            return None
        with self.state.lock:
            keys = list(self._keys.items())
        for key, scopes in keys:
            if hmac.compare_digest(presented, key.encode()):
                return scopes
        return None

    def _require(self, request: Request, *accepted: str) -> None:
        scopes = self._scopes(request) or frozenset()
        if not scopes & set(accepted):
            raise ApiError(403, "forbidden", f"API key lacks the {' or '.join(accepted)} scope.")

    # routes

    def _importer(self, kind: Kind) -> Callable[[Request], Response]:
        def handle(request: Request) -> Response:
            self._require(request, WRITE)
            body = request.json
            if not isinstance(body, dict):
                raise ApiError(
                    400,
                    "validation_error",
                    f"Request body must be a JSON object with a '{kind.key}' array.",
                )
            rows = body.get(kind.key)
            if rows is None:
                raise ApiError(400, "validation_error", f"'{kind.key}' is required.")
            if not isinstance(rows, list):
                raise ApiError(400, "validation_error", f"'{kind.key}' must be an array.")
            with self.state.lock:
                job = Job(
                    job_id=str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
                    kind=kind.name,
                    rows=rows,
                    created_at=self.clock(),
                    fail_reason=self._fail_next.pop(0) if self._fail_next else None,
                )
                self.state.jobs[job.job_id] = job
                self.state.stats["jobs_created"] += 1
                self.state.stats[f"{kind.name}_jobs"] += 1
                self.state.stats["rows_received"] += len(rows)
                envelope = job.as_json(self.shape)
            return Response.of_json(envelope, 202)

        return handle

    def _status(self, request: Request) -> Response:
        self._require(request, READ, WRITE)
        job_id = request.params["jobId"]
        self.tick()
        with self.state.lock:
            job = self.state.jobs.get(job_id)
            if job is None:
                raise ApiError(404, "not_found", f"Import job {job_id} was not found.")
            self.state.stats["status_reads"] += 1
            return Response.of_json(job.as_json(self.shape))


# --- command line ----------------------------------------------------------------------------


def run(
    host: str = "127.0.0.1",
    port: int = 8768,
    seed: int = 0,
    api_key: str = DEFAULT_API_KEY,
    *,
    read_only_key: str | None = DEFAULT_READ_ONLY_KEY,
    pending_seconds: float = 1.0,
    rows_per_second: float = 200.0,
    shape: AnswerShape | None = None,
    append: Iterable[str] = (),
    omitted: Literal["reset", "keep"] = "reset",
) -> None:
    """Serve an import-jobs simulator in the foreground until SIGINT/SIGTERM; jobs progress
    in real time with a background worker. `shape`, `append` and `omitted` switch it to the
    readings of the document that syncd does not assume (see the module docstring)."""
    unknown = sorted(set(append) - set(KINDS))
    if unknown:
        raise ValueError(f"append: unknown import kind(s) {unknown} (known: {sorted(KINDS)})")
    shape = shape or AnswerShape()
    sim = ImportJobsSim(
        seed=seed,
        api_key=api_key,
        read_only_key=read_only_key,
        host=host,
        port=port,
        pending_seconds=pending_seconds,
        rows_per_second=rows_per_second,
        shape=shape,
        append=append,
        omitted=omitted,
    )
    sim.start()
    sim.start_worker()
    print(f"import-jobs sandbox: {sim.base_url}", flush=True)
    print(f"  auth: x-api-key: {api_key} (read+write); seed: {seed}", flush=True)
    if read_only_key:
        print(f"  read-only key: {read_only_key}", flush=True)
    print(f"  jobs: PENDING {pending_seconds:g}s, then {rows_per_second:g} rows/s", flush=True)
    print(
        "  answers: row errors name their row "
        + {"zero": "0-based", "one": "1-based", "none": "not at all"}[shape.row_index]
        + ("" if shape.error_key else ", without key")
        + f"; failedCount counts {shape.failed_count}; processedCount counts "
        + ("every row looked at" if shape.processed_count == "all" else "rows imported"),
        flush=True,
    )
    print(
        "  imports: a row sent again "
        + (
            f"is added beside the first in {', '.join(sorted(sim.append))}, replaces it in the rest"
            if sim.append
            else "replaces the stored one (by key)"
        )
        + "; an omitted field "
        + ("keeps its stored value" if omitted == "keep" else "takes the documented default"),
        flush=True,
    )
    try:
        sim.server.serve_forever()
    finally:
        sim.stop()
