"""Oregon Tool SIOP client: push sell-through and stock data items, map refusals back to rows.

One endpoint (oregontool-siop-api.txt): ``POST /v1`` with the key in ``x-api-key`` and a JSON
body ``{"dataItems": [...]}``; the optional XML is not used. ``base_url`` may be the server
root or already end in ``/v1`` (the example config's form): the client posts to exactly
``.../v1``.

Answers:

- **201, no content**: the whole batch is accepted. Another 2xx with an empty body is accepted
  too; a 2xx *with* a body is not the documented answer (a proxy, a cut-off reply) and is
  raised as retryable ``malformed_response`` - safe, because a re-post replaces (below).
- **400**: problem details ``{type, title, status, tracedId, errors, message}`` (all
  nullable), ``errors`` keyed like ``$.dataItems[5].onHand`` -> row 5, field ``onHand``, each
  with a list of messages. The document's own example body is not valid JSON (no colon after
  ``"errors"``, a trailing comma, no comma before ``"message"``), so an error body is parsed
  leniently by ``parse_problem``: JSON first, then a tolerant scan of the raw text for
  ``"key": ["msg", ...]`` entries and the scalar properties. It never raises and always keeps
  the raw text. A row-level 400 comes back as a ``SubmitResult``, not an exception.
- 401/403 -> ``AuthError`` (a static key cannot be refreshed: the connector stops);
  408/425/429/5xx -> ``RetryableError``, retried by ``syncd.http`` with backoff and
  ``Retry-After``; any other status -> ``PermanentError`` with the raw body in ``details``.
  Non-validation errors carry only ``{status, message}``; the message is kept on the error.

Interpretations (the document is short; each choice is written down here):

- **Local validation** (``validate_item``, ``DataItem``) is the document's schema, applied
  before anything is sent: required ``soldToId``, ``shipToId``, ``materialId``, ``year``,
  ``month``, ``unitsSold``; max lengths soldToId 10, shipToId 10, materialId 18,
  oregonToolMaterialId 10, unitOfMeasure 3, counted in UTF-16 code units as .NET's
  ``string.Length`` does; every integer a JSON integer within signed 32-bit (no booleans,
  floats or numeric strings); year 1990..9999, month 1..12, day 1..31. It is stricter where the
  document implies more than it states: a required string must not be blank (.NET's
  ``[Required]`` refuses blank strings), ``day`` must make a real calendar date ("calendar
  day of the data period"; the server is documented to check only 1..31), and unknown keys are
  refused (the server would silently drop a misspelt field such as ``onhand``).
- **Natural key and replay**: an item is identified by ``(soldToId, shipToId, materialId,
  year, month, day or 1)`` (``day`` "defaults to first of the month"), and a re-post of the
  same key replaces the stored values. The document does not say so; it is the only reading
  under which a periodic push makes sense, and it makes every POST safe to retry after a
  timeout or a dropped connection.
- **A 400 stores nothing**: a refused request is refused whole (model validation runs before
  the action), so the rows not named in ``errors`` must be sent again.
- **Isolation** (``submit_isolating``): invalid items are rejected locally and never sent; the
  rest goes in batches of ``page_size``. A 400 naming rows removes those rows and re-sends the
  rest at once (a server may report only the first bad row, hence rounds). A 400 naming no
  row of the batch splits the batch in halves until the refused item stands alone. Each batch
  gets at most ``options.max_rounds`` requests (default 10); what is left when that budget is
  spent is returned as ``unsent``, neither accepted nor refused, for the next run.
"""

from __future__ import annotations

import calendar
import json
import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Final, Literal, Self
from urllib.parse import urlsplit, urlunsplit

import httpx
import structlog
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError
from tenacity import Retrying, retry_if_exception, stop_after_attempt, stop_after_delay

from syncd.errors import ConfigError, PermanentError, RetryableError
from syncd.http import RETRYABLE_STATUS, HttpClient, StaticAuth, backoff_wait, build_client
from syncd.logs import Logger, redactor
from syncd.sections import ApiKeyConnectorConfig, ConnectorConfig, RateLimit

log: Logger = structlog.get_logger("syncd.connectors.oregon_siop")

NAME: Final = "oregon_siop"
API_PATH: Final = "/v1"
INT32_MIN: Final = -(2**31)
INT32_MAX: Final = 2**31 - 1
YEAR_MIN: Final = 1990
YEAR_MAX: Final = 9999
DEFAULT_MAX_ROUNDS: Final = 10
_EXCERPT: Final = 500
_SCAN_LIMIT: Final = 1_000_000  # characters of an error body the tolerant scan looks at

# Statuses this module reads itself: every 4xx that syncd.http would not classify as auth
# or retryable (the 400 carries row errors; the others keep their raw body on the error).
_OWN_STATUSES: Final = tuple(
    s for s in range(400, 500) if s not in (401, 403) and s not in RETRYABLE_STATUS
)


# --- the data item ---------------------------------------------------------------------------


def utf16_length(value: str) -> int:
    """Length as .NET counts it (UTF-16 code units): a character beyond U+FFFF counts 2."""
    return len(value.encode("utf-16-le")) // 2


def _max_length(limit: int) -> AfterValidator:
    def check(value: str) -> str:
        if utf16_length(value) > limit:
            raise PydanticCustomError(
                "string_too_long",
                "String should have at most {max_length} characters (UTF-16 code units)",
                {"max_length": limit},
            )
        return value

    return AfterValidator(check)


def _not_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("missing", "Field required (a blank string is no value)")
    return value


RequiredText10 = Annotated[str, AfterValidator(_not_blank), _max_length(10)]
RequiredText18 = Annotated[str, AfterValidator(_not_blank), _max_length(18)]
Text10 = Annotated[str, _max_length(10)]
Text3 = Annotated[str, _max_length(3)]
Int32 = Annotated[int, Field(ge=INT32_MIN, le=INT32_MAX)]


class DataItem(BaseModel):
    """One ``siop.dataItem``, every documented field; valid by construction (strict, frozen).

    Built from camelCase keys (the wire names) or snake_case attribute names.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        strict=True,
    )

    sold_to_id: RequiredText10
    ship_to_id: RequiredText10
    material_id: RequiredText18
    oregon_tool_material_id: Text10 | None = None
    year: Annotated[int, Field(ge=YEAR_MIN, le=YEAR_MAX)]
    month: Annotated[int, Field(ge=1, le=12)]
    day: Annotated[int, Field(ge=1, le=31)] | None = None
    units_sold: Int32
    on_hand: Int32 | None = None
    units_on_hand: Int32 | None = None
    units_on_shelf: Int32 | None = None
    units_on_order: Int32 | None = None
    units_in_transit: Int32 | None = None
    unit_of_measure: Text3 | None = None
    target_inventory: Int32 | None = None
    minimum_stock: Int32 | None = None
    maximum_stock: Int32 | None = None
    safety_stock: Int32 | None = None

    @model_validator(mode="after")
    def _calendar_date(self) -> Self:
        if self.day is not None:
            last = calendar.monthrange(self.year, self.month)[1]
            if self.day > last:
                raise PydanticCustomError(
                    "calendar_date",
                    f"{self.year}-{self.month:02d} has {last} days, not {self.day}",
                )
        return self

    def to_json(self) -> dict[str, Any]:
        """The wire form: camelCase keys, unset (null) fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True)

    @property
    def key(self) -> tuple[str, str, str, int, int, int]:
        return (
            self.sold_to_id,
            self.ship_to_id,
            self.material_id,
            self.year,
            self.month,
            self.day or 1,
        )


FIELD_NAMES: Final[tuple[str, ...]] = tuple(
    f.alias or name for name, f in DataItem.model_fields.items()
)
"""The wire names, in the document's order."""

_WIRE_NAME: Final[dict[str, str]] = {
    **{name: f.alias or name for name, f in DataItem.model_fields.items()},
    **{n: n for n in FIELD_NAMES},
}
_WIRE_NAME_FOLDED: Final[dict[str, str]] = {n.lower(): n for n in FIELD_NAMES}


@dataclass(frozen=True)
class FieldProblem:
    """Why one field of one item would be refused; ``field`` is "" for the item as a whole."""

    field: str
    message: str
    code: str = ""

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class InvalidItemError(ValueError):
    """An item fails local validation; it must not be sent."""

    def __init__(self, problems: Sequence[FieldProblem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = list(problems)


def _problems(exc: ValidationError) -> list[FieldProblem]:
    found: list[FieldProblem] = []
    for error in exc.errors(include_url=False):
        loc = error.get("loc") or ()
        if error["type"] == "calendar_date":
            name = "day"
        elif loc:
            name = _WIRE_NAME.get(str(loc[0]), str(loc[0]))
        else:
            name = ""
        found.append(FieldProblem(name, error["msg"], error["type"]))
    return found


def parse_item(item: DataItem | Mapping[str, Any]) -> DataItem:
    """A valid ``DataItem`` from a mapping (or a re-check of a DataItem); InvalidItemError if not."""
    if isinstance(item, DataItem):
        raw: Any = item.model_dump()  # re-checked: model_copy(update=...) skips validation
    elif isinstance(item, Mapping):
        raw = dict(item)
    else:
        raise InvalidItemError(
            [FieldProblem("", f"a data item must be an object, not {type(item).__name__}")]
        )
    try:
        return DataItem.model_validate(raw)
    except ValidationError as exc:
        raise InvalidItemError(_problems(exc)) from None


def validate_item(item: Any) -> list[FieldProblem]:
    """Every reason the document gives to refuse this item (empty if it may be sent). Pure."""
    try:
        parse_item(item)
    except InvalidItemError as exc:
        return exc.problems
    return []


def item_key(item: DataItem | Mapping[str, Any]) -> tuple[Any, ...]:
    """The natural key a re-post replaces: (soldToId, shipToId, materialId, year, month, day)."""
    if isinstance(item, DataItem):
        return item.key
    get = item.get
    return (
        get("soldToId", get("sold_to_id")),
        get("shipToId", get("ship_to_id")),
        get("materialId", get("material_id")),
        get("year"),
        get("month"),
        get("day") or 1,
    )


# --- error bodies ----------------------------------------------------------------------------

# Tokens of a JSON-ish text. A string runs to its closing quote or to the end of the text, so
# every token matches where it starts and one pass over the text is linear, whatever it holds.
_TOKEN_RE: Final = re.compile(r'"(?:[^"\\]|\\.)*(?:"|\\?\Z)|[\[\]{}:,]|-?\d+|null', re.DOTALL)
_SCALARS: Final = frozenset({"type", "title", "status", "tracedId", "traceId", "message"})
_ERROR_KEY_RE: Final = re.compile(
    r"^\s*(?:\$\.?)?dataItems\[(\d+)\](?:\.([A-Za-z_][A-Za-z0-9_]*))?", re.IGNORECASE
)


def _unquote(literal: str) -> str:
    """A string token's text; an unterminated or badly escaped one is taken as it stands."""
    try:
        value = json.loads(literal, strict=False)
    except ValueError:
        inner = literal[1:]
        return inner[:-1] if inner.endswith('"') else inner
    return value if isinstance(value, str) else literal


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)


def _status(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _messages(value: Any) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(m for m in (_text(v) for v in value) if m is not None)
    text = _text(value)
    return (text,) if text is not None else ()


@dataclass(frozen=True)
class Problem:
    """A parsed error body. Every property is optional; ``raw`` is always the text as received.

    ``well_formed`` says the body was a JSON object; otherwise what could be read was scanned
    out of the raw text.
    """

    raw: str
    well_formed: bool = False
    type: str | None = None
    title: str | None = None
    status: int | None = None
    trace_id: str | None = None
    message: str | None = None
    errors: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        """One line for an operator: the message and title, else the start of the raw text."""
        parts = [p for p in (self.title, self.message) if p]
        return " ".join(parts) or redactor.cut(self.raw, _EXCERPT).strip()


def parse_problem(text: str | bytes | None) -> Problem:
    """Read an error body leniently: JSON, else a tolerant scan of the text. Never raises."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = text or ""
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        body = None
    if isinstance(body, dict):
        raw_errors = body.get("errors")
        errors = (
            {str(k): _messages(v) for k, v in raw_errors.items()}
            if isinstance(raw_errors, dict)
            else {}
        )
        return Problem(
            raw=text,
            well_formed=True,
            type=_text(body.get("type")),
            title=_text(body.get("title")),
            status=_status(body.get("status")),
            trace_id=_text(body.get("tracedId", body.get("traceId"))),
            message=_text(body.get("message")),
            errors=errors,
        )
    return _scan(text)


def _scan(text: str) -> Problem:
    """What a broken body still says: ``"key" [:] [ "msg" [, ...] [,] ]`` entries anywhere
    (the colon and commas may be missing, as in the document's example) and the scalar
    properties ``"name" [:] value``."""
    tokens = [t.group() for t in _TOKEN_RE.finditer(text[:_SCAN_LIMIT])]
    errors: dict[str, tuple[str, ...]] = {}
    scalars: dict[str, str] = {}
    count = len(tokens)
    i = 0
    while i < count:
        token = tokens[i]
        if not token.startswith('"'):
            i += 1
            continue
        key = _unquote(token)
        j = i + 1 + (i + 1 < count and tokens[i + 1] == ":")
        following = tokens[j] if j < count else ""
        if following == "[":
            k = j + 1
            messages: list[str] = []
            while k < count and (tokens[k] == "," or tokens[k].startswith('"')):
                if tokens[k] != ",":
                    messages.append(_unquote(tokens[k]))
                k += 1
            if k < count and tokens[k] == "]":
                errors[key] = errors.get(key, ()) + tuple(messages)
                k += 1
            i = max(k, i + 1)  # never re-read an unclosed list's strings as keys
            continue
        if key in _SCALARS and following and following not in "[]{}:,":
            scalars.setdefault(key, following)
            i = j + 1
            continue
        i += 1

    def scalar(name: str) -> str | None:
        literal = scalars.get(name)
        if literal is None or literal == "null":
            return None
        return _unquote(literal) if literal.startswith('"') else literal

    return Problem(
        raw=text,
        well_formed=False,
        type=scalar("type"),
        title=scalar("title"),
        status=_status(scalar("status")),
        trace_id=scalar("tracedId") or scalar("traceId"),
        message=scalar("message"),
        errors=errors,
    )


def error_location(key: str) -> tuple[int, str] | None:
    """``$.dataItems[5].onHand`` -> (5, "onHand"); ``dataItems[2]`` -> (2, ""); else None.

    Tolerant of a missing ``$.``, of letter case (``DataItems[5].OnHand``) and of deeper paths.
    """
    found = _ERROR_KEY_RE.match(key)
    if found is None:
        return None
    name = found.group(2) or ""
    return int(found.group(1)), _WIRE_NAME_FOLDED.get(name.lower(), name)


def split_errors(
    errors: Mapping[str, Sequence[str]], count: int
) -> tuple[dict[int, dict[str, tuple[str, ...]]], tuple[str, ...]]:
    """Errors per row of a batch of ``count`` items, and the messages that name no such row."""
    by_row: dict[int, dict[str, tuple[str, ...]]] = {}
    general: list[str] = []
    for key, messages in errors.items():
        where = error_location(key)
        if where is None or not 0 <= where[0] < count:
            general.extend(f"{key}: {m}" if key else m for m in (messages or ("(no message)",)))
            continue
        index, name = where
        fields = by_row.setdefault(index, {})
        fields[name] = fields.get(name, ()) + tuple(messages)
    return by_row, tuple(general)


def error_message(response: httpx.Response) -> tuple[str | None, str]:
    """(code, message) of an error ``syncd.http`` raises itself (401/403, 429, 5xx)."""
    problem = parse_problem(response.text)
    return None, problem.summary or response.reason_phrase


# --- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubmitResult:
    """The answer to one POST: accepted (201), or refused (400) with the rows and reasons.

    ``failures`` is keyed by position in the batch sent, then by field ("" for the row as a
    whole); ``general`` holds what names no row. ``problem.raw`` is the body as received.
    """

    status: int
    failures: Mapping[int, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)
    general: tuple[str, ...] = ()
    problem: Problem | None = None
    request_id: str | None = None

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300

    @property
    def raw(self) -> str:
        return self.problem.raw if self.problem else ""


@dataclass(frozen=True)
class ItemFailure:
    """Why one item of the caller's list was refused, kept for the rejects table.

    ``source`` is "local" (never sent) or "remote" (refused by a 400, whose body is ``raw``,
    ``trace_id`` its ``tracedId`` and ``request_id`` the response's request id header).
    """

    index: int
    errors: Mapping[str, tuple[str, ...]]
    source: Literal["local", "remote"]
    raw: str | None = None
    trace_id: str | None = None
    request_id: str | None = None

    @property
    def message(self) -> str:
        return "; ".join(
            f"{name}: {m}" if name else m for name, msgs in self.errors.items() for m in msgs
        )


@dataclass(frozen=True)
class IsolationResult:
    """Indices (into the caller's list) accepted, refused, and left unsent by the budget."""

    accepted: tuple[int, ...]
    failures: Mapping[int, ItemFailure]
    unsent: tuple[int, ...] = ()
    requests: int = 0


# --- the client ------------------------------------------------------------------------------


def endpoint_url(base_url: str) -> str:
    """``https://host`` or ``https://host/v1`` (or with a trailing slash) -> ``https://host/v1``."""
    parts = urlsplit(base_url)
    path = parts.path.rstrip("/")
    if not path.endswith(API_PATH):
        path += API_PATH
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def _local_failure(index: int, problems: Iterable[FieldProblem]) -> ItemFailure:
    errors: dict[str, tuple[str, ...]] = {}
    for problem in problems:
        errors[problem.field] = (*errors.get(problem.field, ()), problem.message)
    return ItemFailure(index, errors, "local")


def _remote_failure(
    index: int, errors: Mapping[str, tuple[str, ...]], result: SubmitResult
) -> ItemFailure:
    trace_id = result.problem.trace_id if result.problem else None
    return ItemFailure(index, errors, "remote", result.raw, trace_id, result.request_id)


class OregonSiopOptions(BaseModel):
    """`connectors.oregon_siop.options`: what the client reads (check-config refuses the rest)."""

    model_config = ConfigDict(extra="forbid")

    max_rounds: StrictInt = Field(DEFAULT_MAX_ROUNDS, ge=1)


class OregonSiopClient:
    """Typed access to the SIOP endpoint; ``options.max_rounds`` bounds isolation."""

    def __init__(self, config: ConnectorConfig, *, http: HttpClient | None = None) -> None:
        self.config = config
        self.endpoint = endpoint_url(config.base_url)
        # Only OregonSiopConfig has `page_size`; a plain connector config sends batches of 100.
        self.batch_size: int = getattr(config, "page_size", 100)
        rounds = config.options.get("max_rounds", DEFAULT_MAX_ROUNDS)
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
            raise ConfigError(
                f"connectors.{NAME}.options.max_rounds must be an integer >= 1, got {rounds!r}"
            )
        self.max_rounds: int = rounds
        key = config.secret("api_key") or ""
        self.http = http or build_client(
            NAME,
            config,
            auth=StaticAuth(config.auth_header, key, config.auth_scheme) if key else None,
            error_parser=error_message,
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> OregonSiopClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one request --------------------------------------------------------------------------

    def submit(self, items: Sequence[DataItem | Mapping[str, Any]]) -> SubmitResult:
        """POST exactly these items once (retrying transient faults); a 400 is returned, not raised.

        Every item is checked first: an invalid one raises InvalidItemError and nothing is sent.
        """
        if not items:
            raise ValueError("submit needs at least one data item")
        body = {"dataItems": [parse_item(item).to_json() for item in items]}
        policy = self.http.config.retry
        retrying = Retrying(
            stop=stop_after_attempt(policy.max_attempts) | stop_after_delay(policy.max_elapsed),
            wait=backoff_wait(policy),
            retry=retry_if_exception(
                lambda e: isinstance(e, RetryableError) and e.code == "malformed_response"
            ),
            sleep=self.http.sleep,
            reraise=True,
        )
        return retrying(self._post, body, len(items))

    def _post(self, body: dict[str, Any], count: int) -> SubmitResult:
        response = self.http.request(
            "POST", self.endpoint, json_body=body, ok_statuses=_OWN_STATUSES
        )
        status = response.status_code
        request_id = self.http.remote_request_id(response)
        if 200 <= status < 300:
            if status == 201 or not response.content:
                if status != 201:
                    log.warning("siop_unexpected_success", status=status, request_id=request_id)
                return SubmitResult(status, request_id=request_id)
            raise RetryableError(
                f"{status} with a body where 201 with no content was expected: "
                f"{redactor.cut(response.text, 80)!r}",
                connector=NAME,
                status=status,
                code="malformed_response",
                request_id=request_id,
            )
        text = response.text
        problem = parse_problem(text)
        request_id = request_id or problem.trace_id
        if status == 400:
            failures, general = split_errors(problem.errors, count)
            if not failures and not general:
                general = (problem.summary or "400 Bad Request without details",)
            return SubmitResult(status, failures, general, problem, request_id)
        raise PermanentError(
            redactor.text(problem.summary or response.reason_phrase or f"HTTP {status}"),
            connector=NAME,
            status=status,
            code=f"http_{status}",
            request_id=request_id,
            details={"raw": redactor.text(text), "errors": dict(problem.errors)},
        )

    # -- a batch, isolating bad items -----------------------------------------------------------

    def submit_isolating(
        self, items: Sequence[DataItem | Mapping[str, Any]], *, max_rounds: int | None = None
    ) -> IsolationResult:
        """Send every valid item, removing refused ones and re-sending the rest.

        Indices are positions in ``items``. Invalid items are refused locally and never sent.
        Each batch of ``page_size`` gets at most ``max_rounds`` requests (default: the config's);
        items still pending then are ``unsent``. A RemoteError other than a 400 propagates:
        nothing about the batch is known then, and re-sending all of it later is safe.
        """
        rounds = self.max_rounds if max_rounds is None else max_rounds
        if rounds < 1:
            raise ValueError(f"max_rounds must be >= 1, got {rounds}")
        failures: dict[int, ItemFailure] = {}
        valid: list[tuple[int, DataItem]] = []
        for index, item in enumerate(items):
            try:
                valid.append((index, parse_item(item)))
            except InvalidItemError as exc:
                failures[index] = _local_failure(index, exc.problems)
        accepted: list[int] = []
        unsent: list[int] = []
        requests = 0
        size = max(1, self.batch_size)
        for start in range(0, len(valid), size):
            sent, left = self._isolate(valid[start : start + size], rounds, accepted, failures)
            requests += sent
            unsent.extend(left)
        result = IsolationResult(
            tuple(sorted(accepted)), dict(sorted(failures.items())), tuple(sorted(unsent)), requests
        )
        log.info(
            "siop_submitted",
            connector=NAME,
            items=len(items),
            accepted=len(result.accepted),
            refused_locally=sum(1 for f in failures.values() if f.source == "local"),
            refused_remotely=sum(1 for f in failures.values() if f.source == "remote"),
            unsent=len(result.unsent),
            requests=requests,
        )
        return result

    def _isolate(
        self,
        batch: list[tuple[int, DataItem]],
        rounds: int,
        accepted: list[int],
        failures: dict[int, ItemFailure],
    ) -> tuple[int, list[int]]:
        """Plan-as-you-go over one batch; returns (requests made, indices left unsent)."""
        queue: deque[list[tuple[int, DataItem]]] = deque([batch])
        requests = 0
        unsent: list[int] = []
        while queue:
            chunk = queue.popleft()
            if requests >= rounds:
                unsent.extend(index for index, _ in chunk)
                continue
            result = self.submit([item for _, item in chunk])
            requests += 1
            if result.accepted:
                # the whole chunk is stored
                accepted.extend(index for index, _ in chunk)
            elif result.failures:
                # the remote named rows: they are refused, the rest goes again at once
                for position, errors in result.failures.items():
                    index = chunk[position][0]
                    failures[index] = _remote_failure(index, dict(errors), result)
                rest = [pair for pos, pair in enumerate(chunk) if pos not in result.failures]
                if rest:
                    queue.appendleft(rest)
            elif len(chunk) == 1:
                # a refusal naming no row, and only one row left: it is this one
                index = chunk[0][0]
                failures[index] = _remote_failure(index, {"": result.general}, result)
            else:
                # a refusal naming no row: halve the chunk until the culprit stands alone
                log.warning(
                    "siop_unattributed_refusal",
                    connector=NAME,
                    items=len(chunk),
                    reason=result.general[0] if result.general else None,
                    request_id=result.request_id,
                )
                middle = len(chunk) // 2
                queue.appendleft(chunk[middle:])
                queue.appendleft(chunk[:middle])
        return requests, unsent


class OregonSiopConfig(ApiKeyConnectorConfig):
    """`[connectors.oregon_siop]`: the API key and the batch size; `options` are
    `OregonSiopOptions`."""

    client = OregonSiopClient
    options_model = OregonSiopOptions
    required_secrets = (("api_key",),)
    page_size: int = Field(100, ge=1, le=10_000)  # items per request (a batch); no API limit
    # The document states no rate limit: README "Where the Oregon Tool document is silent".
    rate_limit: RateLimit = RateLimit(per_second=5, burst=10)
