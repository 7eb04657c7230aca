"""A stateful Oregon Tool SIOP simulator over real HTTP, following oregontool-siop-api.txt.

One route, the document's: ``POST /v1`` (``base_url`` is ``http://127.0.0.1:PORT/v1``, as a
client is configured; production ``https://siop.api.oregontool.com/v1``). It takes
``{"dataItems": [...]}`` with the key in ``x-api-key`` and answers 201 with no content, or an
error body.

Interpretations (the document is short; each choice is written down here):

- **Auth**: a missing or wrong ``x-api-key`` is 401 with the document's non-validation body
  ``{"status": 401, "message": ...}``; ``api_key=None`` switches auth off. Injected
  429/500/503 faults use the same ``{status, message}`` shape (429 with ``Retry-After``).
- **Validation** is the document's schema and nothing more: required ``soldToId``,
  ``shipToId``, ``materialId``, ``year``, ``month``, ``unitsSold`` (missing, null, or a blank
  string, as .NET's ``[Required]`` treats it); max lengths soldToId 10, shipToId 10,
  materialId 18, oregonToolMaterialId 10, unitOfMeasure 3 in UTF-16 code units (.NET
  ``string.Length``); integers are JSON integers within signed 32-bit; year 1990..9999,
  month 1..12, day 1..31 (an impossible date such as 2023-02-30 passes: the document states
  only the range). Property names are matched exactly; unknown properties are ignored, as
  ASP.NET does. A real ASP.NET Core server may be more lenient (case-insensitive names,
  numbers in strings); a conforming client sends neither, so that cannot matter.
- **Messages** are ASP.NET's: ``"The year field is required."``, ``"The field soldToId must
  be a string or array type with a maximum length of '10'."``, ``"The field month must be
  between 1 and 12."``, and for a value of the wrong JSON type (a float, a boolean, a string
  for an integer, an integer beyond 32 bits, a number for a string) the document's
  ``"The JSON value could not be converted to System.Nullable`1[System.Int32]"`` (or
  ``System.String``). A field with a conversion error gets no further check.
- **Error body**: problem details ``{"type", "title", "status", "tracedId", "errors",
  "message"}`` (``application/problem+json``, status 400), ``errors`` keyed
  ``$.dataItems[i].field`` with a list of messages, ``tracedId`` a W3C trace id from the seed,
  ``message`` ``"An error occurred!"`` as in the document. ``conversion_errors="first"``
  models ASP.NET's deserializer, which stops at the first value it cannot convert: only that
  error is reported (no other row), so a client has to go round again; the default ``"all"``
  reports everything, as the document's example mixes both kinds. ``error_style="document"``
  renders the same errors in the document's own broken layout (no colon after ``"errors"``,
  a trailing comma, no comma before ``"message"``): not JSON. The ``doc_example`` fault answers
  the document's example body verbatim (rows 1 and 5), with no side effect.
- **Body-level errors**: a body that is not JSON is a 400 problem with ``errors["$"]``; no body
  is ``errors[""]``; a body without ``dataItems`` (or null) is ``errors["dataItems"]``;
  ``dataItems`` not a list, or an item not an object, is a conversion error at
  ``$.dataItems`` / ``$.dataItems[i]``. XML is not simulated: a Content-Type other than JSON is
  415 ``{status, message}``. An empty ``dataItems`` list is accepted (201) and stores nothing.
- **A 400 stores nothing**: the request is validated whole before anything is stored.
- **Storage**: accepted items are kept by ``(soldToId, shipToId, materialId, year, month,
  day or 1)`` ("defaults to first of the month"); a re-post of a key replaces the stored
  values (later items of one request replace earlier ones with the same key). The stored value
  is the item's documented fields as received (missing ones null; unknown ones dropped).
- **Business rules** the document does not list (an unknown customer or material, ...) are
  stood in for by ``refuse(field, value, message)``: after the documented validation passes,
  items whose ``field`` equals ``value`` are refused with ``errors["$.dataItems[i].field"]``,
  or, with ``attributed=False``, with a bare ``{"status": 400, "message": ...}`` that names no
  row (the shape the document gives for errors "not related to data validation").
- **Faults**: the base's kinds (429, 500, 503, slow, drop, malformed, token_expired) on
  ``"POST /v1"`` or ``"*"``, plus ``doc_example``. ``slow`` and ``drop`` run the handler (the
  items are stored; the client does not learn it); the others answer instead of it.
- **Headers**: every response carries ``X-Request-ID``; a request's ``X-Correlation-ID`` is
  recorded in the log.

State for tests: ``sim.state.items`` (key -> stored values), ``sim.state.posts`` (one
``Post`` per request that reached the handler: status, items received, stored, rows refused,
trace id) and the counters ``sim.state.stats`` (``posts``, ``accepted``, ``refused``,
``items_stored``, ``items_replaced``, ``items_refused``). Read them under ``sim.state.lock`` or
through ``sim.items()`` / ``sim.item(...)`` / ``sim.stats()``.
"""

from __future__ import annotations

import hmac
import json
import random
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any, Final, Literal

from syncd.sandbox.base import (
    Request,
    Response,
    SandboxServer,
    Simulator,
    dumps,
)

__all__ = [
    "DEFAULT_API_KEY",
    "DOCUMENT_EXAMPLE",
    "DOC_EXAMPLE_FAULT",
    "FIELDS",
    "FieldRule",
    "OregonSiopSim",
    "OregonSiopState",
    "Post",
    "render_document_style",
    "run",
]

DEFAULT_API_KEY: Final = "oregon-siop-sandbox-key"  # a sandbox credential, not a secret
DEFAULT_PORT: Final = 8769
ROUTE: Final = "POST /v1"
API_KEY_HEADER: Final = "x-api-key"
PROBLEM_TYPE: Final = "https://tools.ietf.org/html/rfc7231#section-6.5.1"
PROBLEM_TITLE: Final = "One or more validation errors occurred."
PROBLEM_MESSAGE: Final = "An error occurred!"
PROBLEM_CONTENT_TYPE: Final = "application/problem+json; charset=utf-8"
DOC_EXAMPLE_FAULT: Final = "doc_example"
INT32_MIN: Final = -(2**31)
INT32_MAX: Final = 2**31 - 1
INT_TYPE: Final = "System.Nullable`1[System.Int32]"
STRING_TYPE: Final = "System.String"

DOCUMENT_EXAMPLE: Final = """{
"type": "https://tools.ietf.org/html/rfc7231#section-6.5.1",
"title": "One or more validation errors occurred.",
"status": 400,
"tracedId": "00-b8992e4f52c659ef02b4f901ce1336a6-deaa6ed8bd9afea2-00",
"errors" {
"$.dataItems[1].onHand": [
"The onHand field is required."
],
"$.dataItems[5].unitsOnShelf": [
"The JSON value could not be converted to System.Nullable`1[System.Int32]"
],
}
"message": "An error occurred!"
}"""
"""The document's example error body, verbatim: not valid JSON."""

Key = tuple[str, str, str, int, int, int]
ErrorStyle = Literal["json", "document"]
ConversionErrors = Literal["all", "first"]


# --- the schema ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldRule:
    """One property of ``siop.dataItem`` as the document lists it."""

    name: str
    kind: Literal["string", "integer"]
    required: bool = False
    max_length: int | None = None
    minimum: int | None = None
    maximum: int | None = None


FIELDS: Final[tuple[FieldRule, ...]] = (
    FieldRule("soldToId", "string", required=True, max_length=10),
    FieldRule("shipToId", "string", required=True, max_length=10),
    FieldRule("materialId", "string", required=True, max_length=18),
    FieldRule("oregonToolMaterialId", "string", max_length=10),
    FieldRule("year", "integer", required=True, minimum=1990, maximum=9999),
    FieldRule("month", "integer", required=True, minimum=1, maximum=12),
    FieldRule("day", "integer", minimum=1, maximum=31),
    FieldRule("unitsSold", "integer", required=True),
    FieldRule("onHand", "integer"),
    FieldRule("unitsOnHand", "integer"),
    FieldRule("unitsOnShelf", "integer"),
    FieldRule("unitsOnOrder", "integer"),
    FieldRule("unitsInTransit", "integer"),
    FieldRule("unitOfMeasure", "string", max_length=3),
    FieldRule("targetInventory", "integer"),
    FieldRule("minimumStock", "integer"),
    FieldRule("maximumStock", "integer"),
    FieldRule("safetyStock", "integer"),
)
_RULES: Final = {rule.name: rule for rule in FIELDS}


def _conversion(type_name: str) -> str:
    return f"The JSON value could not be converted to {type_name}"


def _converts(rule: FieldRule, value: Any) -> bool:
    """Whether .NET could bind ``value`` (null always binds; required-ness comes later)."""
    if value is None:
        return True
    if rule.kind == "string":
        return isinstance(value, str)
    return (
        isinstance(value, int) and not isinstance(value, bool) and INT32_MIN <= value <= INT32_MAX
    )


def _annotation_errors(rule: FieldRule, value: Any) -> list[str]:
    """The data-annotation messages for a value that did bind."""
    if rule.required and (value is None or (isinstance(value, str) and not value.strip())):
        return [f"The {rule.name} field is required."]
    if value is None:
        return []
    if rule.max_length is not None and len(value.encode("utf-16-le")) // 2 > rule.max_length:
        return [
            f"The field {rule.name} must be a string or array type with a maximum length "
            f"of '{rule.max_length}'."
        ]
    low, high = rule.minimum, rule.maximum
    if low is not None and high is not None and not low <= value <= high:
        return [f"The field {rule.name} must be between {low} and {high}."]
    return []


@dataclass(frozen=True, slots=True)
class _Checked:
    """The outcome of validating one request body."""

    items: list[dict[str, Any]]
    errors: dict[str, list[str]]


def _check_item(
    prefix: str,
    raw: dict[str, Any],
    conversions: list[tuple[str, str]],
    annotations: dict[str, list[str]],
) -> dict[str, Any]:
    """One item's documented fields; its problems are appended to the two collections."""
    for name, value in raw.items():  # the order the client wrote them in
        rule = _RULES.get(name)
        if rule is not None and not _converts(rule, value):
            type_name = STRING_TYPE if rule.kind == "string" else INT_TYPE
            conversions.append((f"{prefix}.{name}", _conversion(type_name)))
    item = {rule.name: raw.get(rule.name) for rule in FIELDS}
    for rule in FIELDS:
        if _converts(rule, item[rule.name]) and (
            messages := _annotation_errors(rule, item[rule.name])
        ):
            annotations.setdefault(f"{prefix}.{rule.name}", []).extend(messages)
    return item


def _check_body(body: Any, conversion_errors: ConversionErrors) -> _Checked:
    """Validate a decoded body whole: conversion errors first (in document order), then the
    data annotations, as ASP.NET binds and then validates."""
    conversions: list[tuple[str, str]] = []
    annotations: dict[str, list[str]] = {}
    items: list[dict[str, Any]] = []
    if not isinstance(body, dict):
        conversions.append(("$", _conversion("Siop")))
    elif body.get("dataItems") is None:
        annotations["dataItems"] = ["The dataItems field is required."]
    elif not isinstance(body["dataItems"], list):
        conversions.append(("$.dataItems", _conversion("System.Collections.Generic.List`1")))
    else:
        for index, raw in enumerate(body["dataItems"]):
            prefix = f"$.dataItems[{index}]"
            if isinstance(raw, dict):
                items.append(_check_item(prefix, raw, conversions, annotations))
            else:
                conversions.append((prefix, _conversion("Siop.DataItem")))
    if conversions and conversion_errors == "first":
        key, message = conversions[0]
        return _Checked(items, {key: [message]})
    errors: dict[str, list[str]] = {}
    for key, message in conversions:
        errors.setdefault(key, []).append(message)
    for key, messages in annotations.items():
        errors.setdefault(key, []).extend(messages)
    return _Checked(items, errors)


def item_key(item: dict[str, Any]) -> Key:
    """Where an accepted item is stored; a missing day is the first of the month."""
    return (
        item["soldToId"],
        item["shipToId"],
        item["materialId"],
        item["year"],
        item["month"],
        item["day"] or 1,
    )


# --- error bodies ------------------------------------------------------------------------------


def problem_details(trace_id: str, errors: dict[str, list[str]]) -> dict[str, Any]:
    return {
        "type": PROBLEM_TYPE,
        "title": PROBLEM_TITLE,
        "status": 400,
        "tracedId": trace_id,
        "errors": errors,
        "message": PROBLEM_MESSAGE,
    }


def render_document_style(problem: dict[str, Any]) -> str:
    """Problem details laid out exactly as the document's example, flaws included."""
    lines = ["{"]
    lines.extend(f'"{name}": {json.dumps(problem[name])},' for name in ("type", "title"))
    lines.extend(f'"{name}": {json.dumps(problem[name])},' for name in ("status", "tracedId"))
    lines.append('"errors" {')
    for key, messages in problem["errors"].items():
        lines.append(f"{json.dumps(key)}: [")
        lines.append(",\n".join(json.dumps(m) for m in messages))
        lines.append("],")
    lines.append("}")
    lines.append(f'"message": {json.dumps(problem["message"])}')
    lines.append("}")
    return "\n".join(lines)


def _status_body(status: int, message: str) -> Response:
    return Response.of_json({"status": status, "message": message}, status)


# --- state -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Post:
    """One request that reached the handler."""

    status: int
    received: int
    stored: int
    refused_rows: tuple[int, ...]
    trace_id: str


@dataclass(frozen=True, slots=True)
class _Rule:
    field: str
    value: Any
    message: str
    attributed: bool


class OregonSiopState:
    """What the simulator holds; guard every access with ``lock``."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.items: dict[Key, dict[str, Any]] = {}
        self.posts: list[Post] = []
        self.stats: Counter[str] = Counter()
        self.rules: list[_Rule] = []


# --- the simulator -----------------------------------------------------------------------------


class OregonSiopSim(Simulator):
    """The SIOP simulator: state, the HTTP route and Python-side levers for tests."""

    def __init__(
        self,
        *,
        seed: int = 0,
        api_key: str | None = DEFAULT_API_KEY,
        host: str = "127.0.0.1",
        port: int = 0,
        error_style: ErrorStyle = "json",
        conversion_errors: ConversionErrors = "all",
        retry_after: int = 1,
        slow_seconds: float = 2.0,
    ) -> None:
        if error_style not in ("json", "document"):
            raise ValueError(f"error_style must be 'json' or 'document', got {error_style!r}")
        if conversion_errors not in ("all", "first"):
            raise ValueError(
                f"conversion_errors must be 'all' or 'first', got {conversion_errors!r}"
            )
        self.error_style: ErrorStyle = error_style
        self.conversion_errors: ConversionErrors = conversion_errors
        self.state = OregonSiopState()
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self.server = SandboxServer(
            host,
            port,
            seed=seed,
            token=api_key,
            authenticate=self._authenticate if api_key is not None else None,
            error_body=self._base_error_body,
            retry_after=retry_after,
            slow_seconds=slow_seconds,
            name="oregon_siop",
            extra_faults={DOC_EXAMPLE_FAULT: self._doc_example},
        )
        self.server.add_route("POST", "/v1", self._post)

    # lifecycle and passthroughs

    @property
    def url(self) -> str:
        """Server root, e.g. ``http://127.0.0.1:PORT``."""
        return self.server.url

    @property
    def base_url(self) -> str:
        """What a client is configured with (production: https://siop.api.oregontool.com/v1)."""
        return f"{self.server.url}/v1"

    @property
    def api_key(self) -> str | None:
        return self.server.token

    def auth_headers(self, api_key: str | None = None) -> dict[str, str]:
        value = api_key if api_key is not None else self.server.token
        return {} if value is None else {API_KEY_HEADER: value}

    # Python-side levers and views

    def refuse(
        self, field: str, value: Any, message: str | None = None, *, attributed: bool = True
    ) -> None:
        """Refuse items whose ``field`` equals ``value`` (a business rule the document does not
        list); ``attributed=False`` answers a bare ``{status, message}`` naming no row."""
        if field not in _RULES:
            raise ValueError(f"unknown field {field!r}")
        text = message or f"The {field} '{value}' is not known."
        with self.state.lock:
            self.state.rules.append(_Rule(field, value, text, attributed))

    def clear_rules(self) -> None:
        with self.state.lock:
            self.state.rules.clear()

    def items(self) -> dict[Key, dict[str, Any]]:
        """A copy of every stored item by key."""
        with self.state.lock:
            return {key: dict(values) for key, values in self.state.items.items()}

    def item(
        self, sold_to: str, ship_to: str, material: str, year: int, month: int, day: int = 1
    ) -> dict[str, Any] | None:
        with self.state.lock:
            found = self.state.items.get((sold_to, ship_to, material, year, month, day))
            return dict(found) if found is not None else None

    def stats(self) -> dict[str, int]:
        with self.state.lock:
            return dict(self.state.stats)

    def posts(self) -> list[Post]:
        with self.state.lock:
            return list(self.state.posts)

    # internals

    def _trace_id(self) -> str:
        with self._rng_lock:
            return f"00-{self._rng.getrandbits(128):032x}-{self._rng.getrandbits(64):016x}-00"

    def _authenticate(self, request: Request) -> bool:
        key = self.server.token
        presented = request.header(API_KEY_HEADER) or ""
        if key is None or not presented:
            return False
        return hmac.compare_digest(presented.encode(), key.encode())

    def _base_error_body(self, status: int, code: str, message: str) -> Any:
        """Errors the base produces: a 400 (unparseable body) is a problem at ``$``; the rest
        carry only ``status`` and ``message``, as the document says."""
        del code
        if status == 400:
            return problem_details(self._trace_id(), {"$": [message]})
        return {"status": status, "message": message}

    def _doc_example(self) -> Response:
        return Response.raw(DOCUMENT_EXAMPLE.encode(), 400, PROBLEM_CONTENT_TYPE)

    def _problem(self, errors: dict[str, list[str]], trace_id: str) -> Response:
        problem = problem_details(trace_id, errors)
        if self.error_style == "document":
            body = render_document_style(problem).encode()
        else:
            body = dumps(problem)
        return Response.raw(body, 400, PROBLEM_CONTENT_TYPE)

    def _post(self, request: Request) -> Response:
        content_type = (request.header("content-type") or "").lower()
        if "json" not in content_type:
            return _status_body(415, "Unsupported Media Type: send application/json.")
        trace_id = self._trace_id()
        if not request.body:
            errors = {"": ["A non-empty request body is required."]}
            return self._refused(errors, 0, (), trace_id)
        checked = _check_body(request.json, self.conversion_errors)
        if checked.errors:
            rows = _rows(checked.errors)
            return self._refused(checked.errors, len(checked.items), rows, trace_id)
        with self.state.lock:
            rule_errors, bare = self._business_rules(checked.items)
            if bare is not None:
                self._record(400, len(checked.items), 0, (), trace_id)
                return _status_body(400, bare)
            if rule_errors:
                rows = _rows(rule_errors)
                return self._refused(rule_errors, len(checked.items), rows, trace_id)
            replaced = 0
            for item in checked.items:
                key = item_key(item)
                replaced += key in self.state.items
                self.state.items[key] = item
            self.state.stats["items_stored"] += len(checked.items)
            self.state.stats["items_replaced"] += replaced
            self._record(201, len(checked.items), len(checked.items), (), trace_id)
        return Response(201, b"")

    def _business_rules(
        self, items: list[dict[str, Any]]
    ) -> tuple[dict[str, list[str]], str | None]:
        errors: dict[str, list[str]] = {}
        for index, item in enumerate(items):
            for rule in self.state.rules:
                if item.get(rule.field) != rule.value:
                    continue
                if not rule.attributed:
                    return {}, rule.message
                errors.setdefault(f"$.dataItems[{index}].{rule.field}", []).append(rule.message)
        return errors, None

    def _refused(
        self, errors: dict[str, list[str]], received: int, rows: tuple[int, ...], trace_id: str
    ) -> Response:
        with self.state.lock:
            self._record(400, received, 0, rows, trace_id)
        return self._problem(errors, trace_id)

    def _record(
        self, status: int, received: int, stored: int, rows: tuple[int, ...], trace_id: str
    ) -> None:
        self.state.posts.append(Post(status, received, stored, rows, trace_id))
        self.state.stats["posts"] += 1
        self.state.stats["accepted" if status == 201 else "refused"] += 1
        self.state.stats["items_refused"] += len(rows)


def _rows(errors: dict[str, list[str]]) -> tuple[int, ...]:
    """The item indices an errors object names."""
    rows: set[int] = set()
    for key in errors:
        if key.startswith("$.dataItems[") and "]" in key:
            number = key[len("$.dataItems[") : key.index("]")]
            if number.isdigit():
                rows.add(int(number))
    return tuple(sorted(rows))


# --- command line ------------------------------------------------------------------------------


def run(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    seed: int = 0,
    api_key: str | None = DEFAULT_API_KEY,
    *,
    error_style: ErrorStyle = "json",
    conversion_errors: ConversionErrors = "all",
) -> None:
    """Serve an Oregon Tool SIOP simulator in the foreground until SIGINT/SIGTERM."""
    sim = OregonSiopSim(
        seed=seed,
        api_key=api_key,
        host=host,
        port=port,
        error_style=error_style,
        conversion_errors=conversion_errors,
    )
    sim.start()
    print(f"oregon_siop sandbox: POST {sim.base_url}", flush=True)
    auth = ", ".join(f"{k}: {v}" for k, v in sim.auth_headers().items()) or "none"
    print(
        f"  auth: {auth}; errors: {error_style}, conversion errors: {conversion_errors}; "
        f"seed: {seed}",
        flush=True,
    )
    sim.server.serve_forever()
