"""One way to talk HTTP, shared by every connector.

A connector gets an `HttpClient` from `build_client`: timeouts, bounded retries
with exponential backoff and full jitter (tenacity), `Retry-After`, a token
bucket rate limit, a correlation id on every request, the remote's request id
in every log line, and secrets scrubbed from logs and error messages. Each
failure leaves here already classified as retryable, permanent or auth.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Final, Protocol

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

from syncd.clock import utcnow
from syncd.config import ConnectorConfig, RetryPolicy
from syncd.errors import AuthError, PermanentError, RemoteError, RetryableError
from syncd.jsontext import RawJson
from syncd.lifecycle import interruptible_sleep
from syncd.logs import redactor

log = structlog.get_logger("syncd.http")

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_BODY_EXCERPT = 500


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


class RateLimiter:
    """Token bucket shared by the threads of one connector."""

    def __init__(
        self,
        per_second: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.per_second = per_second
        self.capacity = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping if needed; returns the seconds waited."""
        if self.per_second <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.per_second)
            self._last = now
            self._tokens -= 1.0
            wait = 0.0 if self._tokens >= 0 else -self._tokens / self.per_second
        if wait:
            self._sleep(wait)
        return wait


def default_error_parser(response: httpx.Response) -> tuple[str | None, str]:
    """(code, message) from a JSON error body, never failing on a broken one."""
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        return None, response.text[:_BODY_EXCERPT] or response.reason_phrase
    if isinstance(body, dict):
        code = body.get("code") or body.get("error")
        message = body.get("message") or body.get("error_description") or body.get("detail")
        return (str(code) if code else None), str(message or body)[:_BODY_EXCERPT]
    return None, str(body)[:_BODY_EXCERPT]


def classify_status(status: int) -> type[RemoteError] | None:
    """The error class for an HTTP status, or None for success."""
    if status < 400:
        return None
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


def should_retry(policy: RetryPolicy) -> Callable[[BaseException], bool]:
    def check(exc: BaseException) -> bool:
        if not isinstance(exc, RetryableError):
            return False
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
        self.rate_limiter = RateLimiter(
            config.rate_limit.per_second, config.rate_limit.burst, sleep=sleep
        )
        t = config.timeouts
        self.client = httpx.Client(
            base_url=config.base_url,
            timeout=httpx.Timeout(connect=t.connect, read=t.read, write=t.write, pool=t.pool),
            transport=transport,
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
    ) -> httpx.Response:
        """Send with retries; return a success response or raise a classified RemoteError.

        `ok_statuses` lets a connector read an error status itself (e.g. a 400
        whose body says "already exists").
        """

        def once() -> httpx.Response:
            return self._send_once(
                method, path, params, json_body, data, headers, authenticate, ok_statuses
            )

        if not retry:
            return once()  # the caller runs its own retry_call around this
        return self.retry_call(once, authenticate=authenticate)

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
        return self.retry_call(
            lambda: self.json(
                self._send_once(method, path, params, json_body, None, None, True, ())
            )
        )

    def get_json(self, path: str, *, params: Mapping[str, Any] | None = None) -> Any:
        return self.request_json("GET", path, params=params)

    def retry_call(
        self,
        func: Callable[[], Any],
        *,
        attempts: int | None = None,
        authenticate: bool = True,
    ) -> Any:
        """Call `func` under the connector's retry policy (bounded exponential backoff
        with full jitter, Retry-After honoured) and refresh credentials once on AuthError."""
        policy = self.config.retry
        retrying = Retrying(
            stop=stop_after_attempt(attempts or policy.max_attempts)
            | stop_after_delay(policy.max_elapsed),
            wait=backoff_wait(policy),
            retry=retry_if_exception(should_retry(policy)),
            sleep=self.sleep,
            reraise=True,
        )
        refreshed = False
        while True:
            try:
                return retrying(func)
            except AuthError:
                # Refresh once; a second refusal stops the connector upstream.
                if refreshed or not authenticate or self.auth is None or not self.auth.refresh():
                    raise
                refreshed = True
                log.info("auth_refreshed", connector=self.name)

    def _send_once(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        json_body: Any,
        data: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        authenticate: bool,
        ok_statuses: Sequence[int],
    ) -> httpx.Response:
        self.rate_limiter.acquire()
        send_headers = {self.config.correlation_header: self.correlation_id()}
        if authenticate and self.auth is not None:
            send_headers.update(self.auth.headers())
        send_headers.update(headers or {})
        content = None
        if isinstance(json_body, RawJson):  # rendered once by the caller: sent as is
            content, json_body = json_body.encode(), None
            send_headers["Content-Type"] = "application/json"
        started = time.monotonic()
        try:
            response = self.client.request(
                method,
                path,
                params=params,
                content=content,
                json=json_body,
                data=data,
                headers=send_headers,
            )
        except httpx.TimeoutException as exc:
            raise RetryableError(
                f"timed out: {type(exc).__name__}",
                connector=self.name,
                code="timeout",
                details={"sent": False} if isinstance(exc, _BEFORE_SENDING) else None,
            ) from None
        except httpx.TransportError as exc:
            raise RetryableError(
                redactor.text(f"connection failed: {type(exc).__name__}: {exc}"),
                connector=self.name,
                code="connection",
                details={"sent": False} if isinstance(exc, _BEFORE_SENDING) else None,
            ) from None
        elapsed_ms = round((time.monotonic() - started) * 1000, 1)
        request_id = self.remote_request_id(response)
        status = response.status_code
        error_class = None if status in ok_statuses else classify_status(status)
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
        code, message = self.error_parser(response)
        error = error_class(
            redactor.text(message or response.reason_phrase),
            connector=self.name,
            status=status,
            code=code,
            request_id=request_id,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
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
            if value := response.headers.get(header):
                return value
        return None

    def json(self, response: httpx.Response) -> Any:
        """Decode a success body; a malformed one is retryable (often a cut-off answer)."""
        try:
            return response.json()
        except (ValueError, UnicodeDecodeError):
            raise RetryableError(
                f"malformed JSON in answer: {response.text[:80]!r}",
                connector=self.name,
                status=response.status_code,
                code="malformed_response",
                request_id=self.remote_request_id(response),
            ) from None


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
