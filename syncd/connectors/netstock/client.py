"""The Netstock Data Orchestrator client: dataset import, audit log, generated orders.

**Non-idempotent calls** (an `/import/<endpoint>` chunk: a duplicate breaks the model's line
count; a `/file/pop_*`: the server removes what it returns) are retried only when the
answer proves nothing happened (429, 503, any well-formed `api_call_status: false`, a refused
connection, a token that could not be fetched). Any other failure (timeout, dropped
connection, 500/502/504, malformed answer) raises `OutcomeUnknownError(code=
"outcome_unknown")`: compare `model_status()` before resending a chunk; for a pop, the raw
text (if any) is in `error.details["raw"]` and was passed to `journal` first.

**Import lines** are sent as JSON text rendered once (`jsontext.json_text`: compact, sorted keys,
non-ASCII escaped): a Decimal is an exact JSON number in the form Python prints the same
float (`Decimal("2.50")` -> `2.5`, integral -> `5`; `jsontext.decimal_json`), never rounded through a
float. `import_chunk` takes mappings or `JsonLines` (lines already rendered, e.g. stored by
the export job): the body is built around their text and sent as `RawJson`, not re-encoded.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any, Final

import httpx
import structlog
from pydantic import ValidationError

from syncd.connectors.netstock.answers import (
    LINE_MODELS,
    AuditEntry,
    DatasetState,
    DatasetStatus,
    Envelope,
    JsonLines,
    LegendEntry,
    ModelState,
    PopKind,
    PopLine,
    PopResult,
)
from syncd.connectors.netstock.auth import (
    TOKENS,
    NetstockAuth,
    TokenCache,
    TokenGrant,
    TokenKey,
    secret_digest,
)
from syncd.connectors.netstock.errors import (
    OutcomeUnknownError,
    classify_failure,
    nothing_happened,
    recast,
)
from syncd.connectors.netstock.fields import InvalidLineError, line_problems
from syncd.connectors.netstock.settings import (
    CUSTOM_MODEL_PREFIX,
    GRANT_TYPE,
    MODEL_NAME_RE,
    NAME,
    NetstockOptions,
    NetstockSettings,
)
from syncd.errors import (
    AuthError,
    MalformedAnswerError,
    PermanentError,
    RetryableError,
)
from syncd.http import HttpClient, build_client
from syncd.jsontext import RawJson, json_text
from syncd.logs import REDACTED, redactor
from syncd.sections import ConnectorConfig, RateLimit

log = structlog.get_logger("syncd.connectors.netstock")


# Application errors come back as these statuses with an envelope: read them here instead of
# letting the HTTP layer classify by status alone. 401/403 stay with the HTTP layer (refresh
# once), 408/425/429/5xx too (retry).
_APP_ERROR_STATUSES: Final = (400, 404, 405, 409, 410, 412, 415, 422)
_TOKEN_ERROR_STATUSES: Final = (400, 401, 403)


class _Ambiguous(Exception):
    """Carries an OutcomeUnknownError through the retry loop without being retried."""

    def __init__(self, error: OutcomeUnknownError) -> None:
        super().__init__(error.message)
        self.error = error


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
        tokens: TokenCache = TOKENS,
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
            key=self._token_key(),
            cache=tokens,
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

    def _token_key(self) -> TokenKey:
        """Whose token this client uses: a reload changing any of these fetches a new one."""
        return TokenKey(
            base_url=str(self.config.base_url),
            token_url=self.settings.token_url,
            client_id=self.settings.client_id,
            username=self.settings.username,
            scope=self.settings.scope,
            secrets=secret_digest(
                self.config.secret("password") or "", self.config.secret("client_secret") or ""
            ),
        )

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
                if nothing_happened(exc):
                    raise
                error = recast(
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
            if model.startswith(CUSTOM_MODEL_PREFIX) and MODEL_NAME_RE.fullmatch(model):
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


class NetstockConfig(ConnectorConfig):
    """`[connectors.netstock]`: OAuth2 password-grant credentials; `options` are
    `NetstockOptions` (syncd/connectors/netstock/settings.py)."""

    client = NetstockClient
    options_model = NetstockOptions
    required_secrets = (("password",),)
    required_fields = ("username", "client_id")
    page_size_instead = "its pops and datasets are not paged"
    # The document states no rate limit: README "Where the Netstock document is silent".
    rate_limit: RateLimit = RateLimit(per_second=5, burst=10)
