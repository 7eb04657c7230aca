"""Instock (ASRS cloud) client: every endpoint of the API document, typed.

This module alone knows Instock's URLs, its pagination and its error codes.
Lists are streamed page by page (`start_cursor` / `next_cursor` / `has_more`),
so a million-article inventory never sits in memory.

Shapes the document collapses follow the vendor's OpenAPI file: an order-status
line's `qty` is `{requested, reserved, free}`, an ordertask line's `to_cells`
is `[{to_cell_id, qty}]`, quantities are integers. The response header is read
as `Instock-Request-ID` (the text) or `Instock-Response-ID` (the OpenAPI file).

Fulfilled quantity of an order line = the sum of `to_cells[].qty` for that line
over the order's ordertasks in status `done` (equivalently, the moves carrying
the order's `order_id` for that article). See `fulfilled_by_line`.

Error mapping (the document's error table):
`bad_request`, `resource_cannot_be_created`, `resource_cannot_be_updated`,
`resource_not_found` -> PermanentError; `unauthorized`, `forbidden` -> AuthError;
`internal_server_error` (and 429/5xx) -> RetryableError. Code, message and
request id are kept on the error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from syncd.connectors.paging import CursorGuard
from syncd.errors import (
    AlreadyDoneError,
    ConnectorStoppedError,
    PermanentError,
    SyncdError,
)
from syncd.http import HttpClient, StaticAuth, build_client
from syncd.jsontext import json_safe
from syncd.logs import redactor
from syncd.sections import MIB, AnswerSize, ConnectorConfig, RateLimit

if TYPE_CHECKING:
    from syncd.state.kinds import AlertKind

NAME: Final = "instock"
REQUEST_ID_HEADERS: Final = ("Instock-Request-ID", "Instock-Response-ID")
BULK_MAX: Final = 1000
PAGE_MIN, PAGE_MAX = 10, 1000
ARTICLE_ID_RE: Final = re.compile(r"^[a-zA-Z0-9_+.]+$")
ORDER_ID_RE: Final = re.compile(r"^[a-zA-Z0-9_+.:-]{1,128}$")
DIMENSION_UNITS: Final = ("m", "in")  # what Instock's article schema accepts
# Every parameter of an order (create / update body): an update must pass all of them.
ORDER_FIELDS: Final = (
    "org_id",
    "site_id",
    "order_id",
    "kind",
    "placed_at",
    "attributes",
    "lines",
)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # what SQLite stores as an integer


def _rfc3339_text(value: str) -> str:
    """An RFC 3339 timestamp with an offset; naive or unparsable text is refused."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("must be an RFC 3339 timestamp") from None
    if moment.tzinfo is None:
        raise ValueError("must be an RFC 3339 timestamp with an offset (Z or +hh:mm)")
    return value


# Quantities are JSON integers (the vendor's OpenAPI file): no fractions, no strings of digits,
# no booleans, nothing SQLite cannot hold. Stock figures are counts: never negative.
Int64 = Annotated[StrictInt, Field(ge=INT64_MIN, le=INT64_MAX)]
Count = Annotated[StrictInt, Field(ge=0, le=INT64_MAX)]
Id = Annotated[StrictStr, Field(min_length=1, max_length=1024)]
Timestamp = Annotated[StrictStr, AfterValidator(_rfc3339_text)]


class _Model(BaseModel):
    """Unknown fields are tolerated and kept: the API may grow."""

    model_config = ConfigDict(extra="allow")


class _Fetched(_Model):
    """A record read by itself (a GET of one record): it keeps Instock's request id of
    the answer (lineage). Only these models carry the private attribute: pydantic runs a
    Python hook per instance for it, too slow for every record of a list page (whose
    `Page` has the request id)."""

    _request_id: str | None = PrivateAttr(default=None)

    @property
    def answer_request_id(self) -> str | None:
        return self._request_id


class Site(_Model):
    site_id: str
    is_virtual: bool = False


class Article(_Model):
    article_id: str
    name: str = ""
    is_serial_numbered: bool = False
    dimensions: dict[str, Any] | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)


class InventoryQty(_Model):
    """All three are required: a missing one would be stored as a guess."""

    free: Count
    reserved: Count
    registered: Count


class InventoryItem(_Model):
    article_id: Id
    qty: InventoryQty


class Move(_Model):
    """The document gives no sign rule for a move's qty (the accounts say the direction):
    any whole number is kept as it came."""

    article_id: Id
    qty: Int64
    move_timestamp: Timestamp
    user_id: StrictStr | None = None
    order_id: StrictStr | None = None
    from_cell_id: StrictStr | None = None
    to_cell_id: StrictStr | None = None
    from_account_id: StrictStr | None = None
    to_account_id: StrictStr | None = None


class OrderLine(_Model):
    line_id: Id
    article_id: Id
    qty: Count


class Order(_Model):
    order_id: Id
    site_id: StrictStr | None = None
    kind: StrictStr = "customer"
    placed_at: StrictStr | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    lines: list[OrderLine] = Field(default_factory=list)


class StatusQty(_Model):
    requested: Count = 0
    reserved: Count = 0
    free: Count = 0


class OrderStatusLine(_Model):
    line_id: Id
    article_id: Id
    qty: StatusQty = StatusQty()


class OrderStatus(_Fetched):
    order_id: Id
    order_status: StrictStr
    timestamp: str | None = None
    ordertask_ids: list[str] = Field(default_factory=list)
    lines: list[OrderStatusLine] = Field(default_factory=list)

    @property
    def terminal(self) -> bool:
        return self.order_status in ("done", "canceled")

    @property
    def task_ids(self) -> list[str]:
        return [t for t in self.ordertask_ids if t]  # [""] means "none yet"


class ToCell(_Model):
    to_cell_id: StrictStr | None = None
    qty: Count


class OrdertaskLine(_Model):
    line_id: Id
    article_id: Id
    to_cells: list[ToCell] = Field(default_factory=list)


class Ordertask(_Fetched):
    ordertask_id: Id
    order_id: StrictStr | None = None
    ordertask_status: StrictStr
    lines: list[OrdertaskLine] = Field(default_factory=list)


@dataclass(frozen=True)
class Page:
    """One page of a list: its raw items, the cursor to the next one, and the remote's
    request id of the answer (what a reject of one of its records cites)."""

    items: list[Any]
    next_cursor: str | None
    has_more: bool
    meta: dict[str, Any] = field(default_factory=dict)
    request_id: str | None = None


M = TypeVar("M", bound=BaseModel)


class SiteEnvironmentError(ConnectorStoppedError):
    """The configured site is virtual where production was configured, or the reverse
    (code `site_environment`), or the token does not see it at all (`site_unknown`).

    The connector stops under an alert of that kind (not `auth`: the credentials were
    accepted) until the configuration is fixed and reloaded, so nothing is pushed to
    the wrong warehouse.
    """

    @property
    def alert_kind(self) -> AlertKind:  # type: ignore[override]  # a property over the class's
        # attribute; `code` is one of the two (see InstockClient.site_id).
        return "site_unknown" if self.code == "site_unknown" else "site_environment"

    def alert_message(self, name: str) -> str:
        return self.message  # the alert's subject names the connector


@dataclass(frozen=True)
class BadRecord:
    """One record of an answer that failed validation: what a reject needs to name it."""

    index: int  # position in its page
    key: str | None  # the record's id (article_id, order_id, ...) when it has a usable one
    field: str  # dotted path of the first bad field ("qty.free", "article_id", "record")
    reason: str
    raw: Any  # the record as received, secrets redacted, non-finite numbers as text


def _describe(value: Any) -> str:
    return redactor.cut(repr(value), 60, "...")


def bad_record(index: int, raw: Any, key_field: str, exc: ValidationError) -> BadRecord:
    """A validation failure as a BadRecord naming the first bad field and what it held."""
    key = raw.get(key_field) if isinstance(raw, dict) else None
    first = exc.errors(include_url=False)[0]
    path = ".".join(str(part) for part in first["loc"]) or "record"
    if first["type"] == "model_type":
        path, reason = "record", f"must be an object, got {type(raw).__name__}"
    elif first["type"] == "missing":
        reason = "is required"
    else:
        reason = f"{first['msg']} (got {_describe(first.get('input'))})"
    if len(exc.errors()) > 1:
        reason += f" (and {len(exc.errors()) - 1} more problem(s))"
    return BadRecord(
        index=index,
        key=key if isinstance(key, str) and key else None,
        field=path,
        reason=redactor.text(reason),
        raw=redactor.any(json_safe(raw)),
    )


class BadRecordError(PermanentError):
    """A single record fetched by id (an order, its status, an ordertask) failed validation.

    Carries the BadRecord (keyed by the id asked for) and the kind of record, so the
    caller can reject that one record and go on with the others.
    """

    def __init__(self, message: str, *, record: BadRecord, kind: str, key_field: str, **kw: Any):
        super().__init__(message, **kw)
        self.record = record
        self.kind = kind
        self.key_field = key_field


def check_records(
    items: Sequence[Any], model: type[M], key_field: str
) -> tuple[list[M], list[BadRecord]]:
    """Validate each record of a page on its own: the good ones, and the bad ones with
    their reasons. One bad record never fails the page; len(good) + len(bad) == len(items)."""
    good: list[M] = []
    bad: list[BadRecord] = []
    for index, raw in enumerate(items):
        try:
            good.append(model.model_validate(raw))
        except ValidationError as exc:
            bad.append(bad_record(index, raw, key_field, exc))
    return good, bad


# (article_id, free, reserved, registered): one inventory record that passed InventoryItem.
InventoryRow = tuple[str, int, int, int]


def inventory_rows(items: Sequence[Any]) -> tuple[list[InventoryRow], list[BadRecord]]:
    """`check_records(items, InventoryItem, "article_id")` as plain tuples, at a fraction of
    its cost: a million-record scan is mostly well-formed records, and building a model per
    record was the largest share of the pull's time.

    A record of the plain shape (an id of 1..1024 characters, three whole counts in
    0..INT64_MAX; exact `str`/`int`, so no bool, float or text of digits) is taken as it is,
    a subset of what InventoryItem accepts; any other record goes through InventoryItem,
    which accepts it or names the field and the reason. Same verdicts, same rejects.

    A page whose records are all of that shape (the usual page) is checked column by
    column (`_plain_page`), in C loops rather than a Python loop per record."""
    plain = _plain_page(items)
    if plain is not None:
        return plain, []
    rows: list[InventoryRow] = []
    bad: list[BadRecord] = []
    for index, raw in enumerate(items):
        if type(raw) is dict:
            article_id = raw.get("article_id")
            qty = raw.get("qty")
            if type(article_id) is str and 0 < len(article_id) <= 1024 and type(qty) is dict:
                free = qty.get("free")
                reserved = qty.get("reserved")
                registered = qty.get("registered")
                if (
                    type(free) is int
                    and type(reserved) is int
                    and type(registered) is int
                    and 0 <= free <= INT64_MAX
                    and 0 <= reserved <= INT64_MAX
                    and 0 <= registered <= INT64_MAX
                ):
                    rows.append((article_id, free, reserved, registered))
                    continue
        try:
            item = InventoryItem.model_validate(raw)
        except ValidationError as exc:
            bad.append(bad_record(index, raw, "article_id", exc))
        else:
            rows.append((item.article_id, item.qty.free, item.qty.reserved, item.qty.registered))
    return rows, bad


def _plain_page(items: Sequence[Any]) -> list[InventoryRow] | None:
    """Every record of the page as a row when every one is of the plain shape
    `inventory_rows` takes as it is, else None (the page is then checked record by record).
    The same tests, a column at a time: exact types by `map(type, ...)`, bounds by
    min/max (a bool, a float or a text is another type; a missing key or a record that is
    not an object raises while the rows are picked)."""
    try:
        rows = [
            (raw["article_id"], (qty := raw["qty"])["free"], qty["reserved"], qty["registered"])
            for raw in items
            if type(raw) is dict and type(raw["qty"]) is dict
        ]
    except (KeyError, TypeError):
        return None
    if len(rows) != len(items):
        return None
    if not rows:
        return rows
    ids, free, reserved, registered = zip(*rows, strict=True)
    if set(map(type, ids)) != {str} or not 0 < min(map(len, ids)) <= max(map(len, ids)) <= 1024:
        return None
    for column in (free, reserved, registered):
        if set(map(type, column)) != {int} or not 0 <= min(column) <= max(column) <= INT64_MAX:
            return None
    return rows


_VERIFIED_SITES: set[tuple[str, str, str]] = set()


def site_problem(
    site_id: str, environment: str, found: Site | None, listed: Sequence[Site]
) -> str | None:
    """Why the site may not be used under `environment`; None when it matches."""
    if found is None:
        seen = ", ".join(s.site_id for s in listed) or "none"
        return (
            f"connectors.instock.site_id = {site_id!r} is not among the sites this token "
            f"sees ({seen}); fix site_id or the token, then reload"
        )
    wanted_virtual = environment == "sandbox"
    if found.is_virtual == wanted_virtual:
        return None
    # What is wrong and the fix first: `alerts list` shows the first 100 characters.
    actual = "virtual" if found.is_virtual else "physical"
    other = "sandbox" if found.is_virtual else "production"
    return (
        f'connectors.instock.environment = "{environment}" but site {site_id} is {actual}: '
        f'set it to "{other}" if this is the site meant, or point site_id/base_url/token '
        f"at a {environment} site; then reload"
    )


def rfc3339(moment: datetime) -> str:
    """UTC, whole seconds, with a Z. A naive datetime is refused: `astimezone` would read it
    as the host's local time and silently shift the window on a non-UTC machine."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()}: pass a timezone-aware one")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def article_problem(article: Mapping[str, Any]) -> tuple[str, str] | None:
    """The field Instock would refuse this article for and why, checked before sending;
    None if fine."""
    article_id = article.get("article_id")
    # fullmatch: `$` alone also matches before a trailing newline; a number is not a string id.
    if not isinstance(article_id, str) or not ARTICLE_ID_RE.fullmatch(article_id):
        return (
            "article_id",
            f"article_id {article_id!r} must be a string matching {ARTICLE_ID_RE.pattern}",
        )
    if article.get("is_serial_numbered"):
        return (
            "is_serial_numbered",
            "serial-numbered articles cannot be uploaded or updated in Instock",
        )
    if not str(article.get("name") or "").strip():
        return "name", "name is required"
    dimensions = article.get("dimensions") or {}
    if any(not isinstance(v, str) for v in dimensions.values()):
        return "dimensions", "dimensions values must be strings"
    if dimensions.get("uom") not in (None, *DIMENSION_UNITS):
        return "dimensions.uom", f"dimensions.uom must be one of {', '.join(DIMENSION_UNITS)}"
    if any(not isinstance(v, str) for v in (article.get("attributes") or {}).values()):
        return "attributes", "attributes values must be strings"
    return None


def validate_article(article: Mapping[str, Any]) -> str | None:
    """Why Instock would refuse this article, checked before sending; None if fine."""
    problem = article_problem(article)
    return problem[1] if problem else None


def _line_set(lines: Iterable[Any]) -> set[tuple[str, str, int]]:
    """Order lines as comparable tuples, from models or plain dicts."""
    out = set()
    for line in lines:
        data = line.model_dump() if isinstance(line, BaseModel) else dict(line)
        out.add((str(data["line_id"]), str(data["article_id"]), int(data["qty"])))
    return out


def fulfilled_by_line(tasks: Iterable[Ordertask]) -> dict[str, int]:
    """Line id -> quantity picked, from the order's done ordertasks."""
    totals: dict[str, int] = {}
    for task in tasks:
        if task.ordertask_status != "done":
            continue
        for line in task.lines:
            totals[line.line_id] = totals.get(line.line_id, 0) + sum(c.qty for c in line.to_cells)
    return totals


class InstockClient:
    """Typed access to one Instock organisation and site."""

    def __init__(self, config: InstockConfig, *, http: HttpClient | None = None) -> None:
        self.config = config
        self.page_size = max(PAGE_MIN, min(PAGE_MAX, config.page_size))
        token = config.secret("token") or ""
        self.http = http or build_client(
            NAME,
            config,
            auth=StaticAuth(config.auth_header, token, config.auth_scheme),
            request_id_headers=REQUEST_ID_HEADERS,
        )
        self._site_id = config.site_id or None

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> InstockClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing -----------------------------------------------------------

    @property
    def site_id(self) -> str:
        """The configured site, or the only one the token can see."""
        if self._site_id is None:
            sites = self.sites()
            if len(sites) != 1:
                raise SyncdError(
                    "connectors.instock.site_id is not set and the token sees "
                    f"{len(sites)} sites ({', '.join(s.site_id for s in sites)}); set it"
                )
            self._site_id = sites[0].site_id
        return self._site_id

    def check_site(self) -> str:
        """The site, refused when its `is_virtual` contradicts `environment` (a production
        config pointed at a sandbox, or the reverse) or when the token cannot see it. Jobs
        and the sender call this before their first request; the answer is remembered per
        process for a (base_url, site, environment). Raises SiteEnvironmentError."""
        site_id = self.site_id
        environment = self.config.environment
        key = (str(self.config.base_url), site_id, environment)
        if key not in _VERIFIED_SITES:
            listed = self.sites()
            found = next((s for s in listed if s.site_id == site_id), None)
            problem = site_problem(site_id, environment, found, listed)
            if problem:
                code = "site_environment" if found is not None else "site_unknown"
                raise SiteEnvironmentError(problem, connector=NAME, code=code)
            _VERIFIED_SITES.add(key)
        return site_id

    def _get(self, path: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A read: every Instock GET answers a JSON object; anything else is malformed."""
        return self.http.get_json_object(path, params=params)[0]

    def _get_record(self, path: str, model: type[M], kind: str, key_field: str, key: str) -> M:
        """GET one record and validate it; a bad one raises BadRecordError naming it."""
        body, request_id = self._get_traced(path)
        try:
            found = model.model_validate(body)
        except ValidationError as exc:
            record = replace(bad_record(0, body, key_field, exc), key=key)
            raise BadRecordError(
                f"{kind} record {key_field} {key}: {record.field} {record.reason}",
                connector=NAME,
                code="bad_record",
                request_id=request_id,
                record=record,
                kind=kind,
                key_field=key_field,
            ) from None
        if isinstance(found, _Fetched):
            found._request_id = request_id
        return found

    def _get_traced(
        self, path: str, params: Mapping[str, Any] | None = None
    ) -> tuple[Any, str | None]:
        """A GET decoded in one retried step, with the remote's request id of the answer;
        an answer that is not a JSON object is malformed, not a bad record."""

        def once() -> tuple[Any, str | None]:
            response = self.http.request("GET", path, params=params, retry=False)
            return self.http.json_object(response), self.http.remote_request_id(response)

        return self.http.retry_call(once)

    def _send(self, method: str, path: str, body: Any = None, *, idempotent: bool = True) -> Any:
        """A write. Instock answers JSON (`"Successful operation."`, `""`); an answer that
        is not JSON is a cut-off or foreign answer, not proof the write happened: it is
        raised as retryable, and the replay is recognised by the natural key.

        `idempotent=False` (a create, a step, a delta): never repeated here after a failure
        that may have been applied (timeout after sending, dropped connection, 5xx); the
        sender marks the intent unclear and its next attempt reads the remote first."""
        response = self.http.request(method, path, json_body=body, idempotent=idempotent)
        if not response.content:
            return None
        return self.http.json(response)

    def _post_json(self, path: str, body: Any) -> dict[str, Any]:
        """A read-only query sent as POST: decoded, a malformed answer retried."""
        return self.http.request_json_object("POST", path, json_body=body)[0]

    def pages(
        self,
        path: str,
        key: str,
        params: Mapping[str, Any] | None = None,
        page_size: int | None = None,
        start_cursor: str | None = None,
        *,
        scan: str | None = None,
        window: bool = False,
    ) -> Iterator[Page]:
        """Every page of a list, one request at a time, never the whole list.

        A bad page_size raises ValueError here, at the call, not at the first `next()`;
        the walk's page ceiling is read here too, in the caller's thread. `scan` names
        the list for its page history (default: `key`); `window`: the walk reads one
        time window of the list, so its page count never lowers that history.
        """
        size = self.page_size if page_size is None else page_size
        if not PAGE_MIN <= size <= PAGE_MAX:
            raise ValueError(f"page_size must be {PAGE_MIN}..{PAGE_MAX}, got {size}")
        cursor = start_cursor or ""
        guard = CursorGuard.start(NAME, scan or key, self.config.max_pages, cursor, partial=window)
        return self._walk(path, key, params, size, cursor, guard)

    def _walk(
        self,
        path: str,
        key: str,
        params: Mapping[str, Any] | None,
        size: int,
        cursor: str,
        guard: CursorGuard,
    ) -> Iterator[Page]:
        while True:
            query = {**(params or {}), "page_size": size}
            if cursor:
                query["start_cursor"] = cursor
            page = self._page(path, key, query)
            yield page
            guard.after_page(page.next_cursor, page.has_more, path)
            if not page.has_more:
                return
            assert page.next_cursor is not None
            cursor = page.next_cursor

    def _page(self, path: str, key: str, query: Mapping[str, Any]) -> Page:
        """One list page, its envelope checked: a shape that cannot be paged on is malformed
        (the records inside are checked one by one by the caller)."""
        body, response = self.http.get_json_object(path, params=query)
        items = body.get(key)
        has_more = body.get("has_more", False)
        next_cursor = body.get("next_cursor")
        problem = None
        if items is not None and not isinstance(items, list):
            problem = f"{key!r} is {type(items).__name__}, not a list"
        elif not isinstance(has_more, bool):
            problem = f"has_more is {redactor.cut(repr(has_more), 40)}, not true or false"
        elif next_cursor is not None and not isinstance(next_cursor, str):
            problem = f"next_cursor is {type(next_cursor).__name__}, not a string"
        if problem:
            raise self.http.malformed(response, f"{path}: {problem}")
        meta = {k: v for k, v in body.items() if k not in (key, "has_more", "next_cursor")}
        request_id = self.http.remote_request_id(response)
        return Page(items or [], next_cursor or None, has_more, meta, request_id)

    # -- sites and articles -------------------------------------------------

    def sites(self) -> list[Site]:
        sites = self._get("/sites").get("sites") or []
        if not isinstance(sites, list):
            raise self.http.malformed(None, f"/sites: 'sites' is {type(sites).__name__}")
        return [Site.model_validate(s) for s in sites]

    def article_pages(self, **kw: Any) -> Iterator[Page]:
        return self.pages("/articles", "articles", scan="articles", **kw)

    def get_article(self, article_id: str) -> Article:
        return Article.model_validate(self._get(f"/articles/{article_id}"))

    def find_article(self, article_id: str) -> Article | None:
        """The article by id, or None when Instock answers 404 (not there)."""
        try:
            return self.get_article(article_id)
        except PermanentError as exc:
            if exc.status == 404:
                return None
            raise

    def upload_articles(self, articles: Sequence[Mapping[str, Any]]) -> None:
        if not 1 <= len(articles) <= BULK_MAX:
            raise ValueError(f"a bulk upload takes 1..{BULK_MAX} articles, got {len(articles)}")
        self._send("POST", "/articles", {"articles": list(articles)}, idempotent=False)

    def update_article(self, article: Mapping[str, Any]) -> None:
        self._send("PUT", f"/articles/{article['article_id']}", dict(article))

    # -- orders -------------------------------------------------------------

    def create_order(self, order: Mapping[str, Any]) -> None:
        """Create a customer order. The order id is the natural key: an existing order
        with the same lines is 'already done' (a replay after a crash); one with other
        lines is a collision, refused for good rather than silently taken as ours."""
        body = {"kind": "customer", "site_id": self.site_id, **order}
        try:
            self._send("POST", f"/{self.site_id}/orders", body, idempotent=False)
        except PermanentError as exc:
            if exc.code != "resource_cannot_be_created":
                raise
            existing = self.find_order(order["order_id"])
            if existing is None:
                raise
            if _line_set(existing.lines) == _line_set(order.get("lines") or []):
                raise exc.recast(
                    AlreadyDoneError, f"order {order['order_id']} already exists"
                ) from exc
            raise exc.recast(
                PermanentError,
                f"order id {order['order_id']} already exists in Instock with other lines",
            ) from exc

    def find_order(self, order_id: str) -> Order | None:
        """The order by id, or None when Instock answers 404 (not there)."""
        try:
            return self.get_order(order_id)
        except PermanentError as exc:
            if exc.status == 404:
                return None
            raise

    def order_pages(self, **kw: Any) -> Iterator[Page]:
        return self.pages(f"/{self.site_id}/orders", "orders", scan="orders", **kw)

    def get_order(self, order_id: str) -> Order:
        return self._get_record(
            f"/{self.site_id}/orders/{order_id}", Order, "orders", "order_id", order_id
        )

    def update_order(self, order: Mapping[str, Any], *, current: Order | None = None) -> None:
        """Update a registered customer order. The document wants every parameter on a PUT,
        so what the caller does not give (org_id, placed_at, ...) is kept as created: it is
        read from the order first (or taken from `current`, just read), never reset."""
        record = current if current is not None else self.get_order(order["order_id"])
        kept = record.model_dump(exclude_none=True)
        body: dict[str, Any] = {
            **{k: kept[k] for k in ORDER_FIELDS if k in kept},
            "kind": "customer",
            "site_id": self.site_id,
            **order,
        }
        self._send("PUT", f"/{self.site_id}/orders/{order['order_id']}", body)

    def order_status(self, order_id: str) -> OrderStatus:
        path = f"/{self.site_id}/orders/{order_id}/status"
        return self._get_record(path, OrderStatus, "orders", "order_id", order_id)

    def find_order_status(self, order_id: str) -> OrderStatus | None:
        """The order's status, or None when Instock answers 404 (no such order)."""
        try:
            return self.order_status(order_id)
        except PermanentError as exc:
            if exc.status == 404:
                return None
            raise

    def advance_order(self, order_id: str, to_cell_id: str | None = None) -> None:
        """Debug endpoint (virtual sites): registered -> reserved -> done."""
        body = {"to_cell_id": to_cell_id} if to_cell_id else {}
        self._send("POST", f"/{self.site_id}/orders/{order_id}/status", body, idempotent=False)

    def cancel_order(self, order_id: str) -> None:
        """Cancel a registered order; an order already canceled is 'already done'."""
        try:
            self._send("DELETE", f"/{self.site_id}/orders/{order_id}/status")
        except PermanentError as exc:
            if exc.status == 400:
                status = self.order_status(order_id).order_status
                if status == "canceled":
                    raise exc.recast(
                        AlreadyDoneError, f"order {order_id} already canceled"
                    ) from exc
                raise exc.recast(
                    PermanentError,
                    f"order {order_id} is {status}; only registered orders can be canceled "
                    f"({exc.message})",
                ) from exc
            raise

    def get_ordertask(self, ordertask_id: str) -> Ordertask:
        path = f"/{self.site_id}/ordertasks/{ordertask_id}"
        return self._get_record(path, Ordertask, "ordertasks", "ordertask_id", ordertask_id)

    # -- inventory ----------------------------------------------------------

    def inventory_pages(self, **kw: Any) -> Iterator[Page]:
        """All inventory; articles whose free, reserved and registered are 0 are absent."""
        return self.pages(f"/{self.site_id}/inventory", "articles", scan="inventory", **kw)

    def inventory_many(self, article_ids: Sequence[str]) -> list[InventoryItem]:
        if len(article_ids) > BULK_MAX:
            raise ValueError(f"at most {BULK_MAX} article ids per request")
        body = self._post_json(f"/{self.site_id}/inventory", {"article_ids": list(article_ids)})
        return [InventoryItem.model_validate(a) for a in body.get("articles", [])]

    def inventory_one(self, article_id: str) -> InventoryItem:
        return InventoryItem.model_validate(self._get(f"/{self.site_id}/inventory/{article_id}"))

    def adjust_inventory(self, adjustments: Sequence[Mapping[str, Any]]) -> None:
        """Debug endpoint (virtual sites)."""
        body = {"adjustments": list(adjustments)}
        self._send("PUT", f"/{self.site_id}/inventory", body, idempotent=False)

    # -- moves --------------------------------------------------------------

    def move_pages(
        self, start: datetime, end: datetime, *, to_cell_id: str | None = None, **kw: Any
    ) -> Iterator[Page]:
        """Moves in [start, end], newest first; both bounds are required by the API."""
        params: dict[str, Any] = {"from_timestamp": rfc3339(start), "to_timestamp": rfc3339(end)}
        if to_cell_id:
            params["to_cell_id"] = to_cell_id
        return self.pages(
            f"/{self.site_id}/moves", "moves", params, scan="moves", window=True, **kw
        )

    def article_move_pages(
        self, article_id: str, start: datetime, end: datetime, **kw: Any
    ) -> Iterator[Page]:
        params = {"from_timestamp": rfc3339(start), "to_timestamp": rfc3339(end)}
        return self.pages(
            f"/{self.site_id}/moves/{article_id}",
            "moves",
            params,
            scan="article_moves",
            window=True,
            **kw,
        )


class InstockConfig(ConnectorConfig):
    """`[connectors.instock]`: the bearer token, page size, site and its environment."""

    client = InstockClient
    required_secrets = (("token",),)
    correlation_header: str = "Instock-Correlation-ID"
    # The document states no rate limit: README "Where the Instock document is silent".
    rate_limit: RateLimit = RateLimit(per_second=20, burst=40)
    page_size: int = Field(1000, ge=PAGE_MIN, le=PAGE_MAX)  # the API's own bounds
    # A page holds at most 1000 records of well under 1 KiB each: 16 MiB is ten times that.
    max_response_bytes: AnswerSize = ByteSize(16 * MIB)
    site_id: str = ""  # the ASRS site; empty = the only site the token sees
    # What the site must be: a physical ASRS (production, `is_virtual: false`) or a sandbox
    # (`is_virtual: true`). Checked against /sites before the first site request; a mismatch
    # stops the connector (a `site_environment` alert) until the config is fixed and reloaded.
    environment: Literal["production", "sandbox"] = "production"

    @model_validator(mode="after")
    def _site_id_pattern(self) -> InstockConfig:
        if self.site_id and not re.fullmatch(r"[A-Za-z0-9_+.:-]{1,128}", self.site_id):
            raise ValueError(f"site_id: {self.site_id!r} is not a valid Instock site id")
        return self
