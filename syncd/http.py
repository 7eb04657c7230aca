"""One way to talk HTTP, shared by every connector.

A connector gets an `HttpClient` from `build_client`: timeouts, bounded retries
with exponential backoff and full jitter (tenacity; a write that is not idempotent,
such as a create, only after a failure that proves it was not applied), `Retry-After`,
a token bucket rate limit, a correlation id on every request, the remote's request id
in every log line, and secrets scrubbed from logs and error messages. Each
failure leaves here already classified as retryable, permanent or auth.

Every request is bounded in time and size. httpx's timeouts are per socket
operation, so an answer trickling in one byte at a time would never time out:
each request also gets an overall deadline (`request_deadline`: connect, send
and the whole body), enforced on every socket operation by `DeadlineBackend`
and between body chunks. The body is read in chunks into one buffer and
refused past `max_response_bytes`, so memory is bounded by the cap. A compressed
body (`Content-Encoding: gzip`/`deflate`, stacked or not) is decoded here, never
more than the cap at a time, so a small body that inflates to gigabytes stops at
the cap too. A stopping daemon (SIGTERM) ends a stalled read within `STOP_POLL`
seconds. Redirects are not followed (a request carries credentials): a 3xx is an
error naming where the remote points, so `base_url` can be corrected.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import io
import itertools
import ssl
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final, Protocol, TypeVar

import httpcore
import httpx
import structlog
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from syncd import metrics
from syncd.clock import utcnow
from syncd.errors import (
    AnswerTooLargeError,
    AuthError,
    DeadlineExceededError,
    MalformedAnswerError,
    PermanentError,
    RedirectedError,
    RemoteError,
    RetryableError,
    ShutdownRequested,
)
from syncd.jsontext import RawJson
from syncd.lifecycle import STOPPING, interruptible_sleep
from syncd.logs import Logger, redactor
from syncd.ratebudget import Throttled, budget_for
from syncd.sections import ConnectorConfig, RetryPolicy

log: Logger = structlog.get_logger("syncd.http")
_T = TypeVar("_T")

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_BODY_EXCERPT = 500
STOP_POLL = 0.5  # longest single wait on a socket, so a stop request is seen promptly

# The running request's deadline (time.monotonic()), read by DeadlineBackend's streams.
# Remote request ids of the requests made inside `collect_request_ids()` (the sender
# records them with a delivered intent: the lineage of what was sent).
_REQUEST_IDS: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "syncd_request_ids", default=None
)


def _collect_request_id(request_id: str | None) -> None:
    collected = _REQUEST_IDS.get()
    if collected is not None and request_id and len(collected) < 20:
        collected.append(request_id)


@contextlib.contextmanager
def collect_request_ids() -> Iterator[list[str]]:
    """Gather the remote request id of every answer received inside the block."""
    ids: list[str] = []
    token = _REQUEST_IDS.set(ids)
    try:
        yield ids
    finally:
        _REQUEST_IDS.reset(token)


_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "syncd_request_deadline", default=None
)


def _bounded(timeout: float | None) -> float | None:
    """A socket operation's timeout cut to what is left of the request's deadline."""
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        return 0.0
    return left if timeout is None else min(timeout, left)


class DeadlineStream(httpcore.NetworkStream):
    """A socket whose reads and writes never outlive the request's deadline.

    A read waits in slices of at most STOP_POLL seconds, so a daemon told to stop
    does not sit out a stalled answer; the read's own timeout still applies whole.
    """

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        ends = time.monotonic() + timeout if timeout is not None else None
        while True:
            if STOPPING.is_set():
                raise ShutdownRequested("stopping during an HTTP read")
            now = time.monotonic()
            left = _bounded(None if ends is None else max(0.0, ends - now))
            if left is not None and left <= 0:
                raise httpcore.ReadTimeout("read timed out")
            wait = STOP_POLL if left is None else min(left, STOP_POLL)
            try:
                return self._inner.read(max_bytes, wait)
            except httpcore.ReadTimeout:
                continue  # one slice over: check the stop flag and the time left

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        left = _bounded(timeout)
        if left is not None and left <= 0:
            raise httpcore.WriteTimeout("request deadline reached")
        self._inner.write(buffer, left)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        return DeadlineStream(
            self._inner.start_tls(ssl_context, server_hostname, _bounded(timeout))
        )

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's socket backend with every connection wrapped in a DeadlineStream."""

    def __init__(self, inner: httpcore.NetworkBackend | None = None) -> None:
        self._inner = inner or httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(
            host, port, _bounded(timeout), local_address, socket_options
        )
        return DeadlineStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        return DeadlineStream(
            self._inner.connect_unix_socket(path, _bounded(timeout), socket_options)
        )

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


@functools.cache
def default_ssl_context() -> ssl.SSLContext:
    """httpx's default verifying context, built once per process: building it loads the CA
    bundle (about 20 ms of CPU), which every client of every run would otherwise pay again.
    A changed CA bundle is read on the daemon's next start."""
    return httpx.create_ssl_context()


def bounded_transport() -> httpx.HTTPTransport:
    """httpx's own transport, its connection pool on a DeadlineBackend."""
    transport = httpx.HTTPTransport(verify=default_ssl_context())
    pool = transport._pool  # httpx builds the pool itself and offers no backend argument
    if isinstance(pool, httpcore.ConnectionPool):
        pool._network_backend = DeadlineBackend(pool._network_backend)
    return transport


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment is None:
        return None
    reference = now if now is not None else utcnow().timestamp()
    return max(0.0, moment.timestamp() - reference)


class Auth(Protocol):
    """How a connector authenticates; `refresh` renews credentials after a 401."""

    def headers(self) -> Mapping[str, str]: ...

    def refresh(self) -> bool: ...


@dataclass
class StaticAuth:
    """A fixed secret in a header: `Authorization: Bearer <token>`, `x-api-key: <key>`."""

    header: str
    secret: str
    scheme: str = ""

    def headers(self) -> Mapping[str, str]:
        value = f"{self.scheme} {self.secret}" if self.scheme else self.secret
        return {self.header: value}

    def refresh(self) -> bool:
        return False  # nothing to renew: a refused static secret needs an operator


def default_error_parser(response: httpx.Response) -> tuple[str | None, str]:
    """(code, message) from a JSON error body, never failing on a broken one."""
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        return None, redactor.cut(response.text, _BODY_EXCERPT) or response.reason_phrase
    if isinstance(body, dict):
        code = body.get("code") or body.get("error")
        message = body.get("message") or body.get("error_description") or body.get("detail")
        return (str(code) if code else None), redactor.cut(str(message or body), _BODY_EXCERPT)
    return None, redactor.cut(str(body), _BODY_EXCERPT)


def classify_status(status: int) -> type[RemoteError] | None:
    """The error class for an HTTP status, or None for success."""
    if status < 300:
        return None
    if status < 400:
        return RedirectedError  # not followed: the answer asked for is not in it
    if status in (401, 403):
        return AuthError
    if status in RETRYABLE_STATUS or status >= 500:
        return RetryableError
    return PermanentError


def backoff_wait(policy: RetryPolicy) -> Callable[[RetryCallState], float]:
    """Full-jitter exponential backoff, replaced by Retry-After when the remote gives one."""
    jitter = wait_random_exponential(multiplier=policy.initial_backoff, max=policy.max_backoff)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RemoteError) and exc.retry_after is not None:
            return exc.retry_after
        return float(jitter(state))

    return wait


def should_retry(
    policy: RetryPolicy, *, idempotent: bool = True
) -> Callable[[BaseException], bool]:
    """Which failures the client repeats within one call. A write that is not idempotent
    (a create: sent twice, it may count twice) is repeated only after a failure that proves
    the remote did not act on it; otherwise the failure goes back to the caller, who reads
    the remote before deciding to send again (see syncd/send/readback.py)."""

    def check(exc: BaseException) -> bool:
        if not isinstance(exc, RetryableError):
            return False
        if not idempotent and not not_applied(exc):
            return False
        if not getattr(exc, "retry_now", True):
            return False  # e.g. an answer too large: the same request brings it again
        # A Retry-After beyond our backoff ceiling is handed back to the caller
        # (the outbox reschedules) instead of blocking this thread for minutes.
        return exc.retry_after is None or exc.retry_after <= policy.max_backoff

    return check


# Failures before the request left: the remote cannot have acted on it (a write may be sent
# again even where a re-send could otherwise count twice).
_BEFORE_SENDING: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def never_sent(exc: BaseException) -> bool:
    """The request failed before it reached the remote (connect error or timeout)."""
    details = getattr(exc, "details", None)
    return isinstance(details, dict) and details.get("sent") is False


def not_applied(exc: BaseException) -> bool:
    """The failure proves the remote did not act on the request: it never left (connect
    failure, throttled by our own budget) or was refused unprocessed (429). A timeout or a
    dropped connection after sending, a 5xx or a cut answer prove nothing."""
    return never_sent(exc) or (isinstance(exc, RemoteError) and exc.status == 429)


def http_outcome(exc: RemoteError) -> str:
    """The outcome label of a failed exchange (`syncd_http_requests_total`): its class, or
    for a failure without an answer, whether it timed out or could not connect."""
    if isinstance(exc, AuthError):
        return "auth"
    if isinstance(exc, RedirectedError):
        return "redirect"
    if isinstance(exc, DeadlineExceededError):
        return "timeout"
    if isinstance(exc, AnswerTooLargeError):
        return "too_large"
    if isinstance(exc, MalformedAnswerError):
        return "malformed"
    if isinstance(exc, RetryableError):
        no_answer = exc.status is None and exc.code in ("timeout", "connection")
        return exc.code if no_answer and exc.code else "retryable"
    if isinstance(exc, PermanentError):
        return "permanent"
    return "error"


@dataclass(frozen=True)
class _Call:
    """One request as a connector asked for it, sent as is by every attempt."""

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    json_body: Any = None
    data: Mapping[str, Any] | None = None
    headers: Mapping[str, str] | None = None
    authenticate: bool = True
    ok_statuses: Sequence[int] = ()


def _since(started: float) -> float:
    return time.monotonic() - started


class HttpClient:
    """An httpx.Client with syncd's retry, rate limit, tracing and error rules."""

    def __init__(
        self,
        name: str,
        config: ConnectorConfig,
        *,
        auth: Auth | None = None,
        request_id_headers: Sequence[str] = ("X-Request-ID",),
        error_parser: Callable[[httpx.Response], tuple[str | None, str]] = default_error_parser,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = interruptible_sleep,
    ) -> None:
        self.name = name
        self.config = config
        self.auth = auth
        self.request_id_headers = tuple(request_id_headers)
        self.error_parser = error_parser
        self.sleep = sleep
        self._counter = itertools.count(1)
        # Outside a job run, ids stay unique across clients and restarts.
        self._fallback_prefix = f"syncd-{uuid.uuid4().hex[:12]}"
        # One budget per connector, shared with its other jobs and the sender.
        self.budget = budget_for(name, config.rate_limit)
        # Per thread: the end of the park this thread's own 429 set, which its retry
        # sleeps out as that 429's Retry-After (so it is not waited for twice).
        self._parks = threading.local()
        t = config.timeouts
        self.client = httpx.Client(
            base_url=config.base_url,
            timeout=httpx.Timeout(connect=t.connect, read=t.read, write=t.write, pool=t.pool),
            transport=transport if transport is not None else bounded_transport(),
            headers={"User-Agent": "syncd", "Accept": "application/json"},
            follow_redirects=False,
        )

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def correlation_id(self) -> str:
        run_id = structlog.contextvars.get_contextvars().get("run_id") or self._fallback_prefix
        return f"{run_id}-{next(self._counter)}"

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        retry: bool = True,
        authenticate: bool = True,
        ok_statuses: Sequence[int] = (),
        idempotent: bool = True,
    ) -> httpx.Response:
        """Send with retries; return a success response or raise a classified RemoteError.

        `ok_statuses` lets a connector read an error status itself (e.g. a 400
        whose body says "already exists"). `idempotent=False` for a write that must not be
        sent twice: it is repeated only after a failure that proves it was not applied
        (`not_applied`).
        """

        call = _Call(method, path, params, json_body, data, headers, authenticate, ok_statuses)

        def once() -> httpx.Response:
            return self._send_once(call)

        if not retry:
            return once()  # the caller runs its own retry_call around this
        return self.retry_call(once, authenticate=authenticate, idempotent=idempotent)

    def request_json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
    ) -> Any:
        """Send and decode in one retried step: a malformed (cut-off) body is retried like
        any other transient fault, within the same attempt budget. For reads and for
        queries sent as POST; a write's malformed answer goes back to the outbox instead."""
        call = _Call(method, path, params, json_body)
        return self.retry_call(lambda: self.json(self._send_once(call)))

    def get_json(self, path: str, *, params: Mapping[str, Any] | None = None) -> Any:
        return self.request_json("GET", path, params=params)

    def request_json_object(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
    ) -> tuple[dict[str, Any], httpx.Response]:
        """Like `request_json` for an answer that must be a JSON object: `[]`, `null` or a
        string is malformed (retried, then raised), never an AttributeError further on."""

        call = _Call(method, path, params, json_body)

        def once() -> tuple[dict[str, Any], httpx.Response]:
            response = self._send_once(call)
            return self.json_object(response), response

        result: tuple[dict[str, Any], httpx.Response] = self.retry_call(once)
        return result

    def get_json_object(
        self, path: str, *, params: Mapping[str, Any] | None = None
    ) -> tuple[dict[str, Any], httpx.Response]:
        return self.request_json_object("GET", path, params=params)

    def retry_call(
        self,
        func: Callable[[], _T],
        *,
        attempts: int | None = None,
        authenticate: bool = True,
        idempotent: bool = True,
    ) -> _T:
        """Call `func` under the connector's retry policy (bounded exponential backoff
        with full jitter, Retry-After honoured) and refresh credentials once on AuthError.
        `idempotent=False`: repeat only after a failure that proves nothing was applied."""
        policy = self.config.retry
        self._parks.sat_out = 0.0  # a new call: any park met before is waited for again
        retrying = Retrying(
            stop=stop_after_attempt(attempts or policy.max_attempts)
            | stop_after_delay(policy.max_elapsed),
            wait=backoff_wait(policy),
            retry=retry_if_exception(should_retry(policy, idempotent=idempotent)),
            sleep=self._wait_before_retry,
            reraise=True,
        )
        refreshed = False
        while True:
            try:
                return retrying(func)
            except AuthError as exc:
                # Refresh once; a second refusal stops the connector upstream.
                if (
                    refreshed
                    or not exc.refreshable
                    or not authenticate
                    or self.auth is None
                    or not self.auth.refresh()
                ):
                    raise
                refreshed = True
                log.info("auth_refreshed", connector=self.name)

    def _wait_before_retry(self, seconds: float) -> None:
        metrics.retry_wait(self.name, seconds)
        self.sleep(seconds)

    def _send_once(self, call: _Call) -> httpx.Response:
        """One request under the rate limit, counted by status class and outcome."""
        self._wait_for_budget(call.method, call.path)
        started = time.monotonic()
        try:
            response = self._exchange(call)
        except RemoteError as exc:
            metrics.http_request(self.name, exc.status, http_outcome(exc), _since(started))
            raise
        except ShutdownRequested:
            metrics.http_request(self.name, None, "interrupted", _since(started))
            raise
        except Exception:
            metrics.http_request(self.name, None, "error", _since(started))
            raise
        metrics.http_request(self.name, response.status_code, "ok", _since(started))
        return response

    def _wait_for_budget(self, method: str, path: str) -> None:
        """Wait for this request's slot in the connector's budget, never past the request's
        deadline: past it, a RetryableError (code `throttled`) says when to come back,
        and nothing is sent."""
        deadline = self.config.request_deadline
        try:
            wait = self.budget.acquire(deadline, getattr(self._parks, "sat_out", 0.0))
        except Throttled as exc:
            ready = datetime.fromtimestamp(exc.ready_at, UTC)
            raise RetryableError(
                f"{exc.reason}: not sent, throttled until {ready:%Y-%m-%dT%H:%M:%SZ} "
                f"(beyond connectors.{self.name}.request_deadline = {deadline:g}s)",
                connector=self.name,
                code="throttled",
                retry_after=max(0.0, exc.ready_at - time.time()),
                details={"sent": False},
            ) from None
        if wait > 0:
            log.debug("rate_budget_wait", connector=self.name, path=path, seconds=wait)
            self.sleep(wait)
        metrics.rate_limit_wait(self.name, wait)

    def _exchange(self, call: _Call) -> httpx.Response:
        method, path, json_body = call.method, call.path, call.json_body
        send_headers = {self.config.correlation_header: self.correlation_id()}
        if call.authenticate and self.auth is not None:
            send_headers.update(self.auth.headers())
        send_headers.update(call.headers or {})
        content = None
        if isinstance(json_body, RawJson):  # rendered once by the caller: sent as is
            content, json_body = json_body.encode(), None
            send_headers["Content-Type"] = "application/json"
        started = time.monotonic()
        deadline = started + self.config.request_deadline
        token = _DEADLINE.set(deadline)
        try:
            request = self.client.build_request(
                method,
                path,
                params=call.params,
                content=content,
                json=json_body,
                data=call.data,
                headers=send_headers,
            )
            response = self.client.send(request, stream=True)
            try:
                self._read_body(response, deadline)
            finally:
                response.close()
        except httpx.TimeoutException as exc:
            if time.monotonic() >= deadline:
                raise self._deadline_error(exc) from None
            raise RetryableError(
                f"timed out: {type(exc).__name__}",
                connector=self.name,
                code="timeout",
                details={"sent": False} if isinstance(exc, _BEFORE_SENDING) else None,
            ) from None
        except httpx.DecodingError as exc:
            raise self.malformed(None, f"answer cannot be decoded: {exc}") from None
        except httpx.TransportError as exc:
            raise RetryableError(
                redactor.text(f"connection failed: {type(exc).__name__}: {exc}"),
                connector=self.name,
                code="connection",
                details={"sent": False} if isinstance(exc, _BEFORE_SENDING) else None,
            ) from None
        finally:
            _DEADLINE.reset(token)
        elapsed_ms = round((time.monotonic() - started) * 1000, 1)
        request_id = self.remote_request_id(response)
        _collect_request_id(request_id)
        status = response.status_code
        error_class = None if status in call.ok_statuses else classify_status(status)
        log.debug(
            "http_request",
            connector=self.name,
            method=method,
            path=path,
            status=status,
            elapsed_ms=elapsed_ms,
            request_id=request_id,
            correlation_id=send_headers[self.config.correlation_header],
        )
        if error_class is None:
            return response
        if error_class is RedirectedError:
            code, message = "redirect", self._redirect_message(response)
        else:
            code, message = self.error_parser(response)
        error = error_class(
            redactor.text(message or response.reason_phrase),
            connector=self.name,
            status=status,
            code=code,
            request_id=request_id,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
        if status == 429:  # every request of this connector waits, not this one alone
            self._parks.sat_out = self.budget.throttled(
                error.retry_after, f"429 to {method} {path}, request id {request_id or '-'}"
            )
        log.warning(
            "http_error",
            connector=self.name,
            method=method,
            path=path,
            status=status,
            code=code,
            error=error.message,
            request_id=request_id,
            retryable=isinstance(error, RetryableError),
        )
        raise error

    def remote_request_id(self, response: httpx.Response) -> str | None:
        for header in self.request_id_headers:
            value: str | None = response.headers.get(header)
            if value:
                return value
        return None

    def _read_body(self, response: httpx.Response, deadline: float) -> None:
        """Read the whole body into one buffer, never more than `max_response_bytes` of it
        (encoded or decoded) and never past the request's deadline; it is then
        `response.content` as usual. The content coding is undone here, chunk by chunk
        and bounded, not by httpx, which inflates each chunk whole."""
        cap = int(self.config.max_response_bytes)
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            raise self._too_large(response, f"Content-Length {int(declared)}")
        if response.is_stream_consumed:  # read already (an httpx.MockTransport's answer)
            if len(response.content) > cap:
                raise self._too_large(response, f"more than {cap} bytes")
            return
        decoder = BoundedDecoder(response.headers.get("Content-Encoding", ""), cap)
        body = io.BytesIO()
        received = 0
        try:
            for chunk in response.iter_raw():
                received += len(chunk)
                if received > cap:
                    raise self._too_large(response, f"more than {cap} bytes")
                for piece in decoder.decode(chunk):
                    body.write(piece)
                if time.monotonic() >= deadline:
                    raise self._deadline_error(None, response)
                if STOPPING.is_set():
                    raise ShutdownRequested("stopping during an HTTP read")
            for piece in decoder.flush():
                body.write(piece)
        except _DecodedTooLarge:
            raise self._too_large(
                response, f"more than {cap} bytes once decoded ({received} bytes received)"
            ) from None
        except zlib.error as exc:
            raise self.malformed(response, f"answer cannot be decoded: {exc}") from None
        # httpx keeps a read body here; `read()` cannot be used on a stream read by hand.
        response._content = body.getvalue()

    def _redirect_message(self, response: httpx.Response) -> str:
        where = response.headers.get("Location")
        target = f" to {redactor.cut(where, 200)!r}" if where else " (no Location)"
        return (
            f"the remote redirects{target}; syncd does not follow redirects: check "
            f"connectors.{self.name}.base_url (https, host, path prefix)"
        )

    def _too_large(self, response: httpx.Response, size: str) -> AnswerTooLargeError:
        cap = int(self.config.max_response_bytes)
        return AnswerTooLargeError(
            f"answer too large: {size}, over connectors.{self.name}.max_response_bytes = "
            f"{cap}; reading stopped",
            connector=self.name,
            status=response.status_code,
            code="answer_too_large",
            request_id=self.remote_request_id(response),
        )

    def _deadline_error(
        self, exc: Exception | None, response: httpx.Response | None = None
    ) -> DeadlineExceededError:
        during = f" ({type(exc).__name__})" if exc is not None else ""
        return DeadlineExceededError(
            f"timed out: no complete answer within connectors.{self.name}.request_deadline = "
            f"{self.config.request_deadline:g}s{during}",
            connector=self.name,
            status=response.status_code if response is not None else None,
            code="timeout",
            request_id=self.remote_request_id(response) if response is not None else None,
        )

    def malformed(self, response: httpx.Response | None, reason: str) -> MalformedAnswerError:
        """The error for a success answer that is not what was asked for."""
        return MalformedAnswerError(
            redactor.text(reason),
            connector=self.name,
            status=response.status_code if response is not None else None,
            code="malformed_response",
            request_id=self.remote_request_id(response) if response is not None else None,
        )

    def json(self, response: httpx.Response) -> Any:
        """Decode a success body; a malformed one is retryable (often a cut-off answer)."""
        try:
            return response.json()
        except (ValueError, UnicodeDecodeError):
            raise self.malformed(
                response, f"malformed JSON in answer: {redactor.cut(response.text, 80)!r}"
            ) from None

    def json_object(self, response: httpx.Response) -> dict[str, Any]:
        """Decode a success body that must be a JSON object."""
        body = self.json(response)
        if not isinstance(body, dict):
            raise self.malformed(
                response,
                f"answer is a JSON {_json_kind(body)}, not an object: "
                f"{redactor.cut(response.text, 80)!r}",
            )
        return body


class _DecodedTooLarge(Exception):
    """A content-coded body inflated past the cap."""


DECODE_SLICE = 1 << 20  # most bytes one decompress call may return
_ZLIB_CODINGS = frozenset({"gzip", "x-gzip", "deflate"})


class _Inflate:
    """One zlib stage (gzip, or deflate with or without its zlib wrapper) whose output,
    summed over the whole body, may not pass `cap` bytes; it comes in slices of at most
    DECODE_SLICE, so a body that inflates well never sits in memory twice."""

    def __init__(self, coding: str, cap: int) -> None:
        self.coding = coding
        self.cap = cap
        self.produced = 0
        self.first = True
        wbits = zlib.MAX_WBITS | 16 if coding in ("gzip", "x-gzip") else zlib.MAX_WBITS
        self._inflater = zlib.decompressobj(wbits)

    def decode(self, data: bytes) -> Iterator[bytes]:
        while True:
            limit = min(self.cap - self.produced + 1, DECODE_SLICE)
            try:
                out = self._inflater.decompress(data, limit)
            except zlib.error:
                if not (self.first and self.coding == "deflate"):
                    raise
                # "deflate" is often sent raw, without the zlib wrapper the RFC asks for.
                self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
                out = self._inflater.decompress(data, limit)
            self.first = False
            yield self._count(out)
            data = self._inflater.unconsumed_tail
            if not data:
                return

    def flush(self) -> bytes:
        return self._count(self._inflater.flush())

    def _count(self, out: bytes) -> bytes:
        self.produced += len(out)
        if self.produced > self.cap:
            raise _DecodedTooLarge
        return out


def _through(stage: _Inflate, pieces: Iterable[bytes], *, flush: bool) -> Iterator[bytes]:
    for piece in pieces:
        yield from stage.decode(piece)
    if flush:
        yield stage.flush()


class BoundedDecoder:
    """Undo a `Content-Encoding` (stages applied in order, e.g. `gzip, gzip`), each stage
    bounded to `cap` bytes of output in all and handing on slices of at most
    DECODE_SLICE, so memory holds little more than the cap however well the body
    compresses."""

    def __init__(self, header: str, cap: int) -> None:
        codings = [c.strip().lower() for c in header.split(",") if c.strip()]
        # The header lists codings in the order applied: undo them last first. A coding
        # syncd does not know is passed through, as httpx does: servers write "none" or
        # "utf-8" here, and a body really in another coding (br) is not JSON anyway.
        self._stages = [_Inflate(c, cap) for c in reversed(codings) if c in _ZLIB_CODINGS]

    def decode(self, data: bytes) -> Iterator[bytes]:
        pieces: Iterable[bytes] = (data,)
        for stage in self._stages:
            pieces = _through(stage, pieces, flush=False)
        return iter(pieces)

    def flush(self) -> Iterator[bytes]:
        pieces: Iterable[bytes] = ()
        for stage in self._stages:
            pieces = _through(stage, pieces, flush=True)
        return iter(pieces)


def _json_kind(value: Any) -> str:
    """What a decoded JSON value is called in JSON's own terms."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    names: dict[type, str] = {list: "array", str: "string"}
    return names.get(type(value), type(value).__name__)


def build_client(
    name: str,
    config: ConnectorConfig,
    *,
    auth: Auth | None = None,
    **kwargs: Any,
) -> HttpClient:
    """The one factory every connector uses; static auth comes from the config by default."""
    if auth is None:
        secret = config.secret("token") or config.secret("api_key")
        if secret:
            auth = StaticAuth(config.auth_header, secret, config.auth_scheme)
    return HttpClient(name, config, auth=auth, **kwargs)
