"""Import-jobs planning API client: six asynchronous imports and their job status.

This module alone knows the API's URLs. Every import is `POST /api/import/<kind>` with one
array of rows (`products`, `levels`, `suppliers`, `purchaseOrders`, `orders`, `records`),
answered `202 Accepted` with a job envelope; `GET /api/import/status/{jobId}` is polled until
the job is `COMPLETED` or `FAILED` (`wait_for_job`: bounded exponential backoff from the
connector's retry settings, sleep and clock injectable). Auth is the bare key in `x-api-key`;
the key needs `import:write` to submit and `import:read` (or write) to poll.

Interpretations (the document leaves these open; the simulator follows them by default and can
be switched to the other readings: `AnswerShape`, `append`, `omitted`):

- **The job envelope** (202) is the job as the status endpoint describes it: `jobId`,
  `status` (`PENDING`, `PROCESSING`, `COMPLETED`, `FAILED`), `rowCount`, `processedCount`,
  `failedCount`, `errors`, `completedAt` (`ImportJob`). `id` for `jobId` and an envelope
  wrapped in `job`/`data` are tolerated; unknown fields are kept.
- **Counts**: `processedCount` counts rows looked at so far, accepted or rejected; `failedCount`
  those rejected; accepted = processed - failed. A job with some bad rows is `COMPLETED` with
  `failedCount` > 0; `FAILED` means nothing was imported (every row rejected, or a job-level
  failure), so `accepted_count` is 0 for it and all its rows are to be sent again.
- **Row-level errors** carry no documented shape: read as `{row, key, field, message}` where
  `row` is the 0-based index of the row in the submitted array (`rowIndex`/`index` accepted
  too; `options.error_row_base = 1` for a 1-based index) and `key` its natural key; a bare
  string is read as a message. An error without a row
  index is a job-level error (`ImportJob.job_errors`). `ImportJob.rejected(items)` pairs each
  failed row index with the caller's item at that index (e.g. the host row id), so a job ties
  every error back to the host row it came from.
- **Re-sent batches**: catalog (`externalId`, "unique"), suppliers (`externalId`, "unique"),
  purchase orders (`externalPoNumber`, the documented idempotent key) and inventory levels
  (`skuId`+`locationId`, a state) are taken as upserts: sending a batch again makes a second
  job but no duplicate data, and a purchase order with a known `externalPoNumber` REPLACES
  the stored one, lines included (so a PO is always sent whole). Orders and weekly demand
  name no such key and may be added again: `submit(..., resend_when_unsure=False)` sends
  their POST again only when it cannot have been processed (429, a connect failure) and
  raises `UnsureSubmitError` when its answer is lost. The API lists no jobs (only
  `GET /api/import/status/{jobId}`), so a lost answer cannot be resolved by reading.
- **Inventory** `locationId` is sent as the bare location code; the API prefixes it with its
  organisation id itself (`{organizationId}-{locationId}`).

Error mapping: 401/403 (bad key, missing scope) -> AuthError; 429 (with `Retry-After`), 408
and 5xx -> RetryableError; other 4xx (a malformed batch, unknown job id) -> PermanentError.
The body may be `{"error", "message"}`, `{"error": "text"}`, `{"error": {"code", "message"}}`
or not JSON at all (a proxy's HTML page): code, message and `X-Request-ID` are kept either way.
"""

from __future__ import annotations

import functools
import math
import operator
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, Final, Literal, NotRequired, TypeVar, cast

import httpx
import structlog
from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
    with_config,
)
from tenacity import Retrying, retry_if_exception, stop_after_attempt, stop_after_delay
from typing_extensions import TypedDict

from syncd.errors import ConfigError, RetryableError
from syncd.http import HttpClient, StaticAuth, backoff_wait, build_client, never_sent
from syncd.jsontext import RawJson
from syncd.logs import Logger, redactor
from syncd.sections import ApiKeyConnectorConfig, ConnectorConfig, Duration, RateLimit

NAME: Final = "import_jobs"
STATUS_PATH: Final = "/api/import/status/{job_id}"

PENDING: Final = "PENDING"
PROCESSING: Final = "PROCESSING"
COMPLETED: Final = "COMPLETED"
FAILED: Final = "FAILED"
TERMINAL: Final = frozenset({COMPLETED, FAILED})

_EXCERPT: Final = 500
log: Logger = structlog.get_logger("syncd.connectors.import_jobs")
T = TypeVar("T")


# --- row models ------------------------------------------------------------------------------


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    return value


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


Id = Annotated[str, AfterValidator(_not_blank)]
"""A required identifier: a non-blank string (host ids are never numbers on the wire)."""
Number = Annotated[int | float, BeforeValidator(_no_bool), AfterValidator(_finite)]
"""A JSON number; host text such as "12" or "1.5" and Decimals are converted."""


class _Model(BaseModel):
    """Unknown fields are tolerated and kept (and sent): the API may grow."""

    model_config = ConfigDict(extra="allow")


class ImportRow(_Model):
    """One row of an import; field names are the document's. Optional fields left None are not
    sent, so the API applies its documented default."""


class CatalogRow(ImportRow):
    externalId: Id
    name: str | None = None  # API default: externalId


class InventoryLevelRow(ImportRow):
    skuId: Id
    locationId: Id  # the bare code; the API stores {organizationId}-{locationId}
    quantityOnHand: Number | None = None  # API default 0
    quantityReserved: Number | None = None  # API default 0
    reorderPoint: Number | None = None  # API default 0; sets the internal minimum quantity


class SupplierRow(ImportRow):
    externalId: Id


class PurchaseOrderLine(ImportRow):
    skuId: Id
    quantity: Number
    unitCost: Number


class PurchaseOrderRow(ImportRow):
    externalPoNumber: Id  # the idempotent key: a re-sent PO replaces the stored one
    supplierId: Id
    destinationLocationId: Id
    status: str | None = None  # API default PENDING
    lines: list[PurchaseOrderLine] = Field(min_length=1)


class OrderLine(ImportRow):
    skuId: Id
    quantity: Number
    locationId: Id


class OrderRow(ImportRow):
    externalOrderId: Id
    lines: list[OrderLine] = Field(min_length=1)


class DemandHistoryRow(ImportRow):
    skuId: Id
    locationId: Id
    weekStarting: date  # ISO date; the API buckets it into its week
    channel: str | None = None  # API default ALL
    actualDemand: Number | None = None  # API default 0
    forecastedDemand: Number | None = None  # API default actualDemand


@dataclass(frozen=True)
class Endpoint:
    """One import: its URL, the body's array key, its row model and natural key."""

    kind: str
    path: str
    key: str
    row: type[ImportRow]
    natural_key: tuple[str, ...]


ENDPOINTS: Final[Mapping[str, Endpoint]] = {
    e.kind: e
    for e in (
        Endpoint("catalog", "/api/import/catalog", "products", CatalogRow, ("externalId",)),
        Endpoint(
            "inventory",
            "/api/import/inventory",
            "levels",
            InventoryLevelRow,
            ("skuId", "locationId"),
        ),
        Endpoint("suppliers", "/api/import/suppliers", "suppliers", SupplierRow, ("externalId",)),
        Endpoint(
            "purchase-orders",
            "/api/import/purchase-orders",
            "purchaseOrders",
            PurchaseOrderRow,
            ("externalPoNumber",),
        ),
        Endpoint("orders", "/api/import/orders", "orders", OrderRow, ("externalOrderId",)),
        Endpoint(
            "demand-history",
            "/api/import/demand-history",
            "records",
            DemandHistoryRow,
            ("skuId", "locationId", "weekStarting", "channel"),
        ),
    )
}
KINDS: Final = tuple(ENDPOINTS)


def endpoint(kind: str) -> Endpoint:
    try:
        return ENDPOINTS[kind]
    except KeyError:
        raise ValueError(f"unknown import {kind!r}; expected one of {', '.join(KINDS)}") from None


def _problem(exc: ValidationError) -> str:
    """A pydantic error as one line: `lines[0].quantity: must be a finite number; ...`."""
    return _describe(exc.errors())


@dataclass(frozen=True)
class RowProblem:
    """One reason a row is refused, as found by the check: the field it concerns (a path
    such as `lines[0].unitCost`; None for the row as a whole) and the message."""

    field: str | None
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


def _problems(errors: Sequence[Any], skip: int = 0) -> list[RowProblem]:
    problems = []
    for error in errors:
        where = ""
        for step in error["loc"][skip:]:
            where += f"[{step}]" if isinstance(step, int) else f".{step}" if where else str(step)
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(RowProblem(where or None, message))
    return problems


def _describe(errors: Sequence[Any], skip: int = 0) -> str:
    return "; ".join(str(p) for p in _problems(errors, skip))


@functools.cache
def _batch_checker(model: type[ImportRow]) -> TypeAdapter[list[Any]]:
    """The model's fields and rules as a TypedDict: checking a dict against it applies the
    same validators (so the same errors) without building a model per row, ~4x faster."""
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        kind = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        fields[name] = kind if info.is_required() else NotRequired[kind]
    checked = with_config(ConfigDict(extra="allow"))(TypedDict(f"{model.__name__}Check", fields))  # type: ignore[operator]
    return TypeAdapter(list[checked])  # type: ignore[valid-type]


def row_problems(
    kind: str, rows: Sequence[Mapping[str, Any] | None]
) -> dict[int, list[RowProblem]]:
    """What is wrong with each refused row (`parse_rows` rules), by index, field by field:
    one validation call for the whole batch, so checking a large batch costs little more
    than reading it."""
    try:
        _batch_checker(endpoint(kind).row).validate_python(rows)
    except ValidationError as exc:
        by_row: dict[int, list[Any]] = {}
        for error in exc.errors():
            by_row.setdefault(int(error["loc"][0]), []).append(error)  # loc[0]: the list index
        return {index: _problems(errors, skip=1) for index, errors in by_row.items()}
    return {}


def check_rows(kind: str, rows: Sequence[Mapping[str, Any] | None]) -> dict[int, str]:
    """Why each refused row is refused, by index, as one line (`row_problems` joined)."""
    return {
        index: "; ".join(str(p) for p in problems)
        for index, problems in row_problems(kind, rows).items()
    }


def parse_rows(
    kind: str, rows: Sequence[Mapping[str, Any] | ImportRow]
) -> tuple[list[tuple[int, ImportRow]], dict[int, str]]:
    """Check host rows before sending: ([(index, typed row)], {index: why it is refused}).

    The same required fields and types the API checks, so a bad host row goes to rejects
    with its reason instead of costing a job.
    """
    model = endpoint(kind).row
    good: list[tuple[int, ImportRow]] = []
    bad: dict[int, str] = {}
    for index, row in enumerate(rows):
        if isinstance(row, model):
            good.append((index, row))
            continue
        try:
            raw = row.model_dump() if isinstance(row, BaseModel) else row
            good.append((index, model.model_validate(raw)))
        except ValidationError as exc:
            bad[index] = _problem(exc)
    return good, bad


def key_function(kind: str) -> Callable[[Mapping[str, Any]], str | None]:
    """`row_key` for one kind, looked up once (for keying many rows)."""
    names = endpoint(kind).natural_key
    pick = operator.itemgetter(*names)
    single = len(names) == 1

    def key(data: Mapping[str, Any]) -> str | None:
        try:  # the common case: every part present, non-empty text
            values = (pick(data),) if single else pick(data)
            if None not in values and "" not in values:
                return "|".join(values)
        except (KeyError, TypeError):
            pass
        parts = []
        for name in names:
            value = data.get(name)
            if value is None and name == "channel":
                value = "ALL"
            if value is None or value == "":
                return None
            parts.append(str(value))
        return "|".join(parts)

    return key


def row_key(kind: str, row: Mapping[str, Any] | ImportRow) -> str | None:
    """The natural key of a row as text (parts joined with `|`); None if a part is missing."""
    data = row.model_dump(mode="json") if isinstance(row, BaseModel) else row
    return key_function(kind)(data)


def _wire(row: Mapping[str, Any] | ImportRow | RawJson) -> Any:
    """A typed row as JSON (None fields left out); anything else is sent as given."""
    if isinstance(row, BaseModel):
        return row.model_dump(mode="json", exclude_none=True)
    return dict(row) if isinstance(row, Mapping) else row


# --- job models ------------------------------------------------------------------------------


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


class RowError(_Model):
    """One row-level (or, without `row`, job-level) error of a job."""

    row: int | None = Field(None, validation_alias=AliasChoices("row", "rowIndex", "index"))
    key: Annotated[str | None, BeforeValidator(_text_or_none)] = None
    field: Annotated[str | None, BeforeValidator(_text_or_none)] = None
    message: str = Field("", validation_alias=AliasChoices("message", "error", "reason"))

    @model_validator(mode="before")
    @classmethod
    def _bare_text(cls, value: Any) -> Any:
        return {"message": value} if isinstance(value, str) else value


class ImportJob(_Model):
    """The job envelope of a 202 and the answer of the status endpoint, as documented."""

    jobId: str = Field(validation_alias=AliasChoices("jobId", "id"))
    status: str
    rowCount: int = 0
    processedCount: int = 0
    failedCount: int = 0
    errors: list[RowError] = Field(default_factory=list)
    completedAt: datetime | None = None

    @model_validator(mode="before")
    @classmethod
    def _unwrap(cls, value: Any) -> Any:
        """`{"job": {...}}` or `{"data": {...}}` is the same envelope, wrapped."""
        if isinstance(value, dict) and "jobId" not in value and "id" not in value:
            for wrapper in ("job", "data"):
                inner = value.get(wrapper)
                if isinstance(inner, dict):
                    return inner
        return value

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def succeeded(self) -> bool:
        return self.status == COMPLETED

    @property
    def accepted_count(self) -> int:
        """Rows imported: none for a FAILED job (send them again: imports are upserts)."""
        if self.status == FAILED:
            return 0
        return max(0, self.processedCount - self.failedCount)

    @property
    def job_errors(self) -> list[RowError]:
        """Errors that name no row: the job as a whole."""
        return [e for e in self.errors if e.row is None]

    def errors_by_row(self) -> dict[int, list[RowError]]:
        """Row index (0-based, in the submitted array) -> its errors."""
        found: dict[int, list[RowError]] = {}
        for error in self.errors:
            if error.row is not None:
                found.setdefault(error.row, []).append(error)
        return found

    def rejected(self, items: Sequence[T]) -> list[tuple[T, list[RowError]]]:
        """Each rejected row's item, in row order, with its errors: `items` are whatever the
        caller keeps at the submitted indices (host rows, host ids). Errors naming no row or
        a row outside `items` are in `unmatched_errors`."""
        by_row = self.errors_by_row()
        return [(items[i], by_row[i]) for i in sorted(by_row) if 0 <= i < len(items)]

    def unmatched_errors(self, count: int) -> list[RowError]:
        """Errors that cannot be tied to one of `count` submitted rows."""
        return [e for e in self.errors if e.row is None or not 0 <= e.row < count]


class ImportJobsOptions(BaseModel):
    """`[connectors.import_jobs.options]`."""

    model_config = ConfigDict(extra="forbid")

    job_timeout: Duration = 600.0  # how long wait_for_job polls one job
    poll_interval: Duration | None = None  # first poll delay; default retry.initial_backoff
    error_row_base: Literal[0, 1] = 0  # a row error's `row` counts from 0 (or 1)


class UnsureSubmitError(RetryableError):
    """An import POST whose answer never came (timeout after sending, a dropped connection,
    a 5xx, a cut-off 202): the API may have made the job. It lists no jobs, so this cannot
    be checked; raised instead of re-sending where a re-send could count rows twice."""


class JobTimeoutError(RetryableError):
    """The job did not finish in time; `job` is its last seen state (poll it again later)."""

    def __init__(self, message: str, *, job: ImportJob, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.job = job


# --- errors ----------------------------------------------------------------------------------


def parse_error(response: httpx.Response) -> tuple[str | None, str]:
    """(code, message) from any error body; a body that is not JSON becomes the message."""
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        text = redactor.cut(" ".join(response.text.split()), _EXCERPT)
        return None, text or response.reason_phrase
    if not isinstance(body, dict):
        return None, redactor.cut(str(body), _EXCERPT) or response.reason_phrase
    error = body.get("error")
    nested = error if isinstance(error, dict) else {}
    code = body.get("code") or nested.get("code")
    message = body.get("message") or nested.get("message") or body.get("detail")
    if isinstance(error, str):
        if message is None:
            message = error  # `{"error": "Invalid API key"}`: the text is the message
        elif code is None:
            code = error  # `{"error": "unauthorized", "message": "..."}`
    text = str(message) if message else str(body)
    return (str(code) if code else None), redactor.cut(text, _EXCERPT)


# --- the client ------------------------------------------------------------------------------


class ImportJobsClient:
    """Submit imports and follow their jobs."""

    def __init__(
        self,
        config: ConnectorConfig,
        *,
        http: HttpClient | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        try:
            self.options = ImportJobsOptions.model_validate(config.options)
        except ValidationError as exc:
            raise ConfigError(f"connectors.{NAME}.options: {_problem(exc)}") from None
        key = config.secret("api_key") or config.secret("token") or ""
        self.http = http or build_client(
            NAME,
            config,
            auth=StaticAuth(config.auth_header, key, config.auth_scheme) if key else None,
            error_parser=parse_error,
            sleep=sleep,
        )
        self.sleep = sleep
        self.clock = clock

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ImportJobsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing -----------------------------------------------------------

    def _retrying(self) -> Retrying:
        """Re-read (or re-send) after a malformed answer, bounded like any transient fault."""
        policy = self.config.retry
        return Retrying(
            stop=stop_after_attempt(policy.max_attempts) | stop_after_delay(policy.max_elapsed),
            wait=backoff_wait(policy),
            retry=retry_if_exception(
                lambda e: isinstance(e, RetryableError) and e.code == "malformed_response"
            ),
            sleep=self.sleep,
            reraise=True,
        )

    def _job(self, response: httpx.Response) -> ImportJob:
        body = self.http.json(response)
        try:
            job = ImportJob.model_validate(body)
        except ValidationError as exc:
            raise RetryableError(
                f"answer is not an import job: {_problem(exc)}",
                connector=NAME,
                status=response.status_code,
                code="malformed_response",
                request_id=self.http.remote_request_id(response),
            ) from None
        if self.options.error_row_base:
            for error in job.errors:
                if error.row is not None:
                    error.row -= self.options.error_row_base
        return job

    # -- imports ------------------------------------------------------------

    def submit(
        self,
        kind: str,
        rows: Sequence[Mapping[str, Any] | ImportRow | RawJson] | Sequence[str],
        *,
        resend_when_unsure: bool = True,
        rendered: bool = False,
    ) -> ImportJob:
        """POST one batch; returns the job envelope (normally PENDING).

        `resend_when_unsure=False` for an import that may add rows instead of replacing them:
        only a POST that cannot have been processed (429, a connect failure) is sent again;
        a lost answer raises UnsureSubmitError.

        Typed rows are sent without their None fields; mappings are sent as given (check them
        with `parse_rows`/`check_rows` first); rows already rendered as JSON (`RawJson`, all of
        them, or any texts with `rendered=True`) are joined into the body as they are.
        429/5xx/timeouts are retried by the HTTP layer and a malformed 202 body here: a
        re-sent batch only makes a second job (see the module doc).
        """
        spec = endpoint(kind)
        if not rows:
            raise ValueError(f"{kind}: nothing to import")
        body: Any
        if rendered or isinstance(rows[0], RawJson):  # by the caller (all of them): as is
            body = RawJson(f'{{"{spec.key}":[{",".join(cast("Sequence[str]", rows))}]}}')
        else:
            body = {spec.key: [_wire(cast("Mapping[str, Any] | ImportRow", r)) for r in rows]}

        def post() -> ImportJob:
            return self._job(self.http.request("POST", spec.path, json_body=body))

        def post_once() -> ImportJob:
            try:
                return self._job(self.http.request("POST", spec.path, json_body=body, retry=False))
            except RetryableError as exc:
                if exc.status == 429 or never_sent(exc):
                    raise  # refused before it was processed, or never sent: safe again
                raise UnsureSubmitError(
                    f"{kind}: the answer to an import of {len(rows)} row(s) was lost "
                    f"({exc.message}); the API may have made the job",
                    connector=NAME,
                    status=exc.status,
                    code="unsure_submit",
                    request_id=exc.request_id,
                ) from exc

        if resend_when_unsure:
            job = self._retrying()(post)
        else:
            policy = self.config.retry
            job = Retrying(
                stop=stop_after_attempt(policy.max_attempts) | stop_after_delay(policy.max_elapsed),
                wait=backoff_wait(policy),
                retry=retry_if_exception(
                    lambda e: isinstance(e, RetryableError) and not isinstance(e, UnsureSubmitError)
                ),
                sleep=self.sleep,
                reraise=True,
            )(post_once)
        log.info("import_submitted", connector=NAME, kind=kind, job_id=job.jobId, rows=len(rows))
        return job

    def import_catalog(self, products: Sequence[CatalogRow | Mapping[str, Any]]) -> ImportJob:
        return self.submit("catalog", products)

    def import_inventory(
        self, levels: Sequence[InventoryLevelRow | Mapping[str, Any]]
    ) -> ImportJob:
        return self.submit("inventory", levels)

    def import_suppliers(self, suppliers: Sequence[SupplierRow | Mapping[str, Any]]) -> ImportJob:
        return self.submit("suppliers", suppliers)

    def import_purchase_orders(
        self, purchase_orders: Sequence[PurchaseOrderRow | Mapping[str, Any]]
    ) -> ImportJob:
        """Idempotent on `externalPoNumber`: each PO replaces the stored one, lines included."""
        return self.submit("purchase-orders", purchase_orders)

    def import_demand_history(
        self, records: Sequence[DemandHistoryRow | Mapping[str, Any]]
    ) -> ImportJob:
        return self.submit("demand-history", records)

    # -- jobs ---------------------------------------------------------------

    def job_status(self, job_id: str) -> ImportJob:
        """One read of a job; an unknown id is a PermanentError (404)."""
        path = STATUS_PATH.format(job_id=job_id)
        return self._retrying()(lambda: self._job(self.http.request("GET", path)))

    def wait_for_job(
        self,
        job_id: str,
        timeout: float | None = None,
        poll: float | None = None,
        *,
        on_poll: Callable[[ImportJob], None] | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> ImportJob:
        """Poll until COMPLETED or FAILED and return the final job (FAILED is not raised).

        Delays start at `poll` (default `options.poll_interval`, else `retry.initial_backoff`)
        and double up to `retry.max_backoff`; after `timeout` seconds (default
        `options.job_timeout`) a JobTimeoutError carries the last state. Each poll is itself
        retried by the HTTP layer; an error that survives that is raised. `sleep` (default
        the client's) waits between polls: a caller can end the wait by raising from it.
        """
        policy = self.config.retry
        limit = self.options.job_timeout if timeout is None else timeout
        delay = poll if poll is not None else self.options.poll_interval or policy.initial_backoff
        delay = max(delay, 0.001)
        ceiling = max(policy.max_backoff, delay)
        started = self.clock()
        polls = 0
        while True:
            job = self.job_status(job_id)
            polls += 1
            if on_poll is not None:
                on_poll(job)
            if job.terminal:
                log.info(
                    "import_job_finished",
                    connector=NAME,
                    job_id=job_id,
                    status=job.status,
                    rows=job.rowCount,
                    failed=job.failedCount,
                    polls=polls,
                )
                return job
            remaining = limit - (self.clock() - started)
            if remaining <= 0:
                raise JobTimeoutError(
                    f"import job {job_id} still {job.status} after {limit:g}s "
                    f"({job.processedCount}/{job.rowCount} rows processed)",
                    job=job,
                    connector=NAME,
                    code="job_timeout",
                )
            (sleep or self.sleep)(min(delay, remaining))
            delay = min(delay * 2, ceiling)

    def run_import(
        self,
        kind: str,
        rows: Sequence[Mapping[str, Any] | ImportRow],
        timeout: float | None = None,
    ) -> ImportJob:
        """Submit one batch and wait for its job."""
        return self.wait_for_job(self.submit(kind, rows).jobId, timeout)


class ImportJobsConfig(ApiKeyConnectorConfig):
    """`[connectors.import_jobs]`: the API key; `options` are `ImportJobsOptions`."""

    client = ImportJobsClient
    options_model = ImportJobsOptions
    required_secrets = (("api_key", "token"),)
    page_size_instead = 'rows per import job are jobs."planning.import".options.batch_size'
    # The document states no rate limit: README "Where the import-jobs document is silent".
    rate_limit: RateLimit = RateLimit(per_second=5, burst=10)
