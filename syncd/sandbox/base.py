"""A small, fast HTTP/1.1 server for simulators, with routing, fault injection and a request log.

Every simulator (Instock, DSOrder, Netstock, ...) is a real server on loopback rather than a
mock, so clients are tested through their real transport: keep-alive, timeouts, truncated
bodies and broken JSON all happen on an actual socket. Only the stdlib is used, so the
simulators start in milliseconds and run anywhere syncd runs.

Faults are configured per route key: a concrete request (``"GET /v1/1.1.0-1/inventory"``), a
route pattern (``"GET /v1/{site_id}/inventory"``) or ``"*"`` for every route, looked up in
that order. A script is consumed one request at a time (``["429", "503", "ok"]``); a rate
fires with probability ``p`` from a seeded ``random.Random``, so runs are reproducible.
``SandboxServer.rate_limit(n)`` answers 429 (with Retry-After) past n requests a second,
as an API gateway would, on every route of every simulator. ``apply_then_drop`` and
``drop_before_apply`` (``LOST_ANSWER_FAULTS``) hang up without any answer, after or instead of
applying the request: the two cases a write whose answer was lost may be in.

A simulator can add its own fault kinds (``SandboxServer(extra_faults={"fail_soft": make})``):
each maps to a factory whose response replaces the real answer, before auth and the handler,
so such a fault never has side effects. ``ManualClock`` is a settable clock for simulators
whose behaviour depends on time (e.g. "today's orders").
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import re
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import parse_qsl, unquote, urlsplit

ECHO_FAULTS: Final[frozenset[str]] = frozenset(
    {"echo_text", "echo_cut", "echo_json", "echo_soft", "echo_auth", "echo_warn", "echo_ok"}
)
"""Answers that echo the credentials the request carried, as careless remotes do:

- ``echo_text``: 400, an HTML/text (non-JSON) body quoting the credential headers and a form body;
- ``echo_cut``: 400, text that quotes them cut short by the remote (``Bearer abc...``);
- ``echo_json``: 400, the simulator's own error body with the echo in its message (and in its
  ``warnings`` when the body has that list, as DSOrder's envelope does);
- ``echo_soft``: the same body with status 200 (DSOrder's ``success: false``);
- ``echo_auth``: the same body with status 401 (credentials refused, and quoted);
- ``echo_warn``: 200, a success that carries the echo as a warning (the server's ``ok_body``,
  e.g. DSOrder's ``success: true`` envelope with ``warnings``);
- ``echo_ok``: 200, a body that is not JSON with the echo placed across the 80th character,
  where a client cutting an excerpt would cut the secret in half.
"""

LOST_ANSWER_FAULTS: Final[frozenset[str]] = frozenset({"apply_then_drop", "drop_before_apply"})
"""A write whose caller hears nothing at all: the connection is closed without a byte of answer.

- ``apply_then_drop``: the handler runs (the write happens), then the answer is lost;
- ``drop_before_apply``: the request is read and dropped; the handler never runs.

From the caller's side both look the same (a connection closed after the request was sent),
which is the point: only a read of the remote can tell them apart. (``drop`` also applies,
but sends half an answer; ``500``/``503`` do not apply but do answer.) The request log keeps
the status the handler answered (never sent) for ``apply_then_drop``, 0 for
``drop_before_apply``."""

FAULT_KINDS: Final[frozenset[str]] = (
    frozenset({"429", "500", "503", "slow", "drop", "malformed", "token_expired"})
    | ECHO_FAULTS
    | LOST_ANSWER_FAULTS
)
"""What a route can be made to do instead of (or on top of) answering normally; a server can
add its own kinds with ``extra_faults``."""

_CREDENTIAL_HEADER = re.compile(r"(?i)auth|key|token|secret|cookie|password")

OK: Final = "ok"
"""A script entry that lets one request through untouched."""

MALFORMED_BODY: Final = b'{"code": "ok", "items": [{"id": 1}, {"id": '
_MAX_BODY: Final = 64 * 1024 * 1024


def dumps(data: Any) -> bytes:
    """Serialise compactly; simulators call this once per cached object, not per request."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


class ApiError(Exception):
    """Raised by a handler to answer with an error body in the simulator's own shape."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Request:
    """What a handler sees: the parsed request, with the JSON body already decoded."""

    method: str
    path: str
    route: str
    params: Mapping[str, str]
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes = b""
    json: Any = None

    def header(self, name: str, default: str | None = None) -> str | None:
        """Header lookup by case-insensitive name (``headers`` keys are lower-cased)."""
        return self.headers.get(name.lower(), default)


@dataclass(slots=True)
class Response:
    """What a handler returns; ``body`` is bytes so hot pages can be served pre-serialised."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    @classmethod
    def of_json(
        cls, data: Any, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> Response:
        return cls(status, dumps(data), dict(headers or {}))

    @classmethod
    def raw(
        cls,
        body: bytes,
        status: int = 200,
        content_type: str = "application/octet-stream",
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        return cls(status, body, dict(headers or {}), content_type)


Handler = Callable[[Request], Response]
FaultFactory = Callable[[], Response]
"""Builds the answer of a simulator-specific fault kind (no side effects happen)."""
ErrorBody = Callable[[int, str, str], Any]
Authenticate = Callable[[Request], bool]


def default_error_body(status: int, code: str, message: str) -> Any:
    """The common ``{"code", "message"}`` shape; simulators pass their own if it differs."""
    del status
    return {"code": code, "message": message}


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One line of the request log that tests assert on."""

    method: str
    path: str
    route: str | None
    query: Mapping[str, str]
    status: int
    timestamp: float
    correlation_id: str | None
    request_id: str
    fault: str | None
    duration: float
    client_port: int


class ManualClock:
    """A clock for simulators that tests move by hand: call it for Unix seconds.

    ``ManualClock(start)`` stands still at ``start`` (default: the real time at creation)
    until ``advance(seconds)`` or ``set(ts)``; thread-safe.
    """

    def __init__(self, start: float | None = None) -> None:
        self._lock = threading.Lock()
        self._now = time.time() if start is None else float(start)

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move forward (or back, with a negative value); returns the new time."""
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, ts: float) -> None:
        with self._lock:
            self._now = float(ts)


# --- routing -----------------------------------------------------------------------------

_PARAM = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    pattern: str
    handler: Handler
    public: bool
    regex: re.Pattern[str]
    literals: int

    @property
    def key(self) -> str:
        return f"{self.method} {self.pattern}"


class Router:
    """Method + path pattern to handler; literal segments beat parameters (``/v1/sites``
    wins over ``/v1/{site_id}``) whatever the registration order."""

    def __init__(self) -> None:
        self._routes: list[Route] = []

    def add(self, method: str, pattern: str, handler: Handler, *, public: bool = False) -> None:
        parts: list[str] = []
        literals = 0
        for segment in pattern.strip("/").split("/"):
            found = _PARAM.match(segment)
            if found:
                parts.append(f"(?P<{found.group(1)}>[^/]+)")
            else:
                parts.append(re.escape(segment))
                literals += 1
        regex = re.compile("/" + "/".join(parts))
        self._routes.append(Route(method.upper(), pattern, handler, public, regex, literals))
        self._routes.sort(key=lambda r: -r.literals)

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        """Return (route, params, path_known); path_known without a route means 405."""
        path_known = False
        for route in self._routes:
            found = route.regex.fullmatch(path)
            if found is None:
                continue
            if route.method == method:
                return route, {k: unquote(v) for k, v in found.groupdict().items()}, True
            path_known = True
        return None, {}, path_known

    @property
    def routes(self) -> list[Route]:
        return list(self._routes)


# --- faults ------------------------------------------------------------------------------


def _route_key(route: str) -> str:
    if route == "*":
        return route
    method, _, path = route.strip().partition(" ")
    if not path:
        raise ValueError(f"route key must look like 'GET /path' or '*', got {route!r}")
    return f"{method.upper()} {path.strip()}"


class FaultInjector:
    """Per-route scripted or random faults; thread-safe and reproducible for a given seed.

    ``kinds`` adds simulator-specific fault names to the base's ``FAULT_KINDS``.
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        retry_after: int = 1,
        slow_seconds: float = 2.0,
        kinds: Iterable[str] = (),
    ) -> None:
        self._lock = threading.Lock()
        self.kinds: frozenset[str] = FAULT_KINDS
        for kind in kinds:
            self.allow(kind)
        self._rng = random.Random(seed)
        self._scripts: dict[str, deque[str]] = {}
        self._rates: dict[str, dict[str, float]] = {}
        self.retry_after = retry_after
        self.slow_seconds = slow_seconds
        self.fired: Counter[str] = Counter()

    def allow(self, kind: str) -> None:
        """Accept ``kind`` as a fault name from now on (for a simulator's own faults)."""
        if not kind or kind == OK or " " in kind:
            raise ValueError(f"fault kind must be a non-empty word other than {OK!r}, got {kind!r}")
        self.kinds = self.kinds | {kind}

    def _check(self, kind: str) -> None:
        if kind not in self.kinds:
            raise ValueError(f"unknown fault {kind!r}; expected one of {sorted(self.kinds)}")

    def script(self, route: str, kinds: Iterable[str]) -> None:
        """Queue faults (or ``"ok"``) for the next requests on ``route``, one per request."""
        queued = list(kinds)
        for kind in queued:
            if kind != OK:
                self._check(kind)
        with self._lock:
            self._scripts.setdefault(_route_key(route), deque()).extend(queued)

    def rate(self, route: str, kind: str, p: float) -> None:
        """Make ``kind`` fire with probability ``p`` on ``route`` (``p=0`` removes it)."""
        self._check(kind)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"probability must be within 0..1, got {p}")
        with self._lock:
            rates = self._rates.setdefault(_route_key(route), {})
            if p == 0.0:
                rates.pop(kind, None)
            else:
                rates[kind] = p

    def clear(self) -> None:
        """Forget every script and rate (the fired counter is kept)."""
        with self._lock:
            self._scripts.clear()
            self._rates.clear()

    def remaining(self, route: str) -> list[str]:
        """What is still queued for ``route``."""
        with self._lock:
            return list(self._scripts.get(_route_key(route), ()))

    def pick(self, keys: Iterable[str]) -> str | None:
        """Decide the fault for one request; scripts beat rates, specific keys beat ``*``."""
        ordered = list(dict.fromkeys(keys))
        with self._lock:
            if not self._scripts and not self._rates:
                return None
            for key in ordered:
                queue = self._scripts.get(key)
                if queue:
                    kind = queue.popleft()
                    if kind == OK:
                        return None
                    self.fired[kind] += 1
                    return kind
            for key in ordered:
                for kind, p in self._rates.get(key, {}).items():
                    if self._rng.random() < p:
                        self.fired[kind] += 1
                        return kind
        return None


# --- the server --------------------------------------------------------------------------


class _BadRequestError(Exception):
    pass


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a handler sleeping in a "slow" fault must not hold up stop()
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], sandbox: SandboxServer) -> None:
        self.sandbox = sandbox
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up (timeout, drop, stop()) is routine here, not an error.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # one write per response, no 40 ms delayed-ACK stalls
    timeout = 120  # reap idle keep-alive connections eventually
    server_version = "syncd-sandbox"
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.sandbox._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.sandbox._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: per-request stderr lines would dominate the serve rate."""

    def _dispatch(self) -> None:
        self.server.sandbox._handle(self)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _dispatch


class SandboxServer:
    """A loopback HTTP/1.1 server in a background thread, with routes, faults and a log.

    ``authenticate`` decides whether a request on a non-public route carries a valid
    credential (the simulator compares it with ``server.token``); ``error_body`` shapes every
    error the base itself produces, so 401/404/429/5xx look like the vendor's.
    ``extra_faults`` maps simulator-specific fault kinds to the response each one answers;
    ``ok_body(warnings)`` shapes a success that carries warnings (for ``echo_warn``).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        seed: int = 0,
        token: str | None = None,
        authenticate: Authenticate | None = None,
        error_body: ErrorBody = default_error_body,
        correlation_headers: Iterable[str] = ("X-Correlation-ID",),
        request_id_headers: Iterable[str] = ("X-Request-ID",),
        retry_after: int = 1,
        slow_seconds: float = 2.0,
        log_limit: int = 100_000,
        name: str = "sandbox",
        extra_faults: Mapping[str, FaultFactory] | None = None,
        ok_body: Callable[[list[str]], Any] | None = None,
    ) -> None:
        self.host = host
        self.ok_body = ok_body
        self.port = port
        self.name = name
        self.router = Router()
        self.faults = FaultInjector(seed, retry_after=retry_after, slow_seconds=slow_seconds)
        self._extra_faults: dict[str, FaultFactory] = {}
        for kind, factory in (extra_faults or {}).items():
            self.add_fault_kind(kind, factory)
        self.authenticate = authenticate
        self.error_body = error_body
        self.correlation_headers = tuple(h.lower() for h in correlation_headers)
        self.request_id_headers = tuple(request_id_headers)
        self.errors: list[str] = []
        self._token = token
        self._token_expired = False
        self._log: deque[RequestRecord] = deque(maxlen=log_limit)
        self._counts: Counter[str] = Counter()
        self._log_lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._stopping = threading.Event()
        self._rate_lock = threading.Lock()
        self._rate_limit: tuple[int, float, bool] | None = None
        self._admitted: deque[float] = deque()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # routes

    def add_route(
        self, method: str, pattern: str, handler: Handler, *, public: bool = False
    ) -> None:
        """Register ``handler``; ``public`` routes skip authentication (e.g. a token endpoint)."""
        self.router.add(method, pattern, handler, public=public)

    def route(
        self, method: str, pattern: str, *, public: bool = False
    ) -> Callable[[Handler], Handler]:
        """Decorator form of ``add_route``."""

        def register(handler: Handler) -> Handler:
            self.add_route(method, pattern, handler, public=public)
            return handler

        return register

    def add_fault_kind(self, kind: str, factory: FaultFactory) -> None:
        """Register a fault kind of this simulator; ``factory()`` is its answer."""
        if kind in FAULT_KINDS:
            raise ValueError(f"fault kind {kind!r} is built in and cannot be redefined")
        self.faults.allow(kind)
        self._extra_faults[kind] = factory

    # tokens

    @property
    def token(self) -> str | None:
        return self._token

    @property
    def token_expired(self) -> bool:
        return self._token_expired

    def expire_token(self) -> None:
        """Every authenticated request answers 401 until ``renew_token``."""
        self._token_expired = True

    def renew_token(self, new: str) -> None:
        """Install a fresh token (the old one stops working) and end a ``token_expired``."""
        self._token = new
        self._token_expired = False

    # lifecycle

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError(f"{self.name} server is not running")
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def start(self) -> Self:
        """Bind and serve in a daemon thread; a restart reuses the port bound first."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = _HTTPServer((self.host, self.port), self)
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self.name}-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, cut open keep-alive connections and wake sleeping handlers."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def serve_forever(self) -> None:
        """Serve in the foreground until SIGINT or SIGTERM, for a CLI run."""
        stop = threading.Event()
        previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, lambda *_: stop.set())
        self.start()
        try:
            while not stop.wait(0.5):
                pass
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # the log

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of the request log, oldest first."""
        with self._log_lock:
            return list(self._log)

    def count(self, route: str | None = None) -> int:
        """Requests seen for a concrete key, a pattern key, or all of them (``None``)."""
        with self._log_lock:
            if route is None:
                return self._counts["*"]
            return self._counts[_route_key(route)]

    @property
    def counts(self) -> dict[str, int]:
        with self._log_lock:
            return dict(self._counts)

    def clear_log(self) -> None:
        with self._log_lock:
            self._log.clear()
            self._counts.clear()

    # internals

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._conns_lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def error(self, status: int, code: str, message: str) -> Response:
        """An error response in the simulator's own body shape."""
        return Response.of_json(self.error_body(status, code, message), status)

    def _handle(self, h: _Handler) -> None:
        started = time.perf_counter()
        method = h.command
        split = urlsplit(h.path)
        path = split.path or "/"
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        headers = {k.lower(): v for k, v in h.headers.items()}
        request_id = uuid.uuid4().hex
        route, params, path_known = self.router.match(method, path)
        fault: str | None = None
        try:
            body = self._read_body(h, headers)
        except _BadRequestError as exc:
            h.close_connection = True
            response = self.error(400, "bad_request", str(exc))
        else:
            if route is None:
                response = (
                    self.error(405, "method_not_allowed", f"{method} is not allowed on {path}.")
                    if path_known
                    else self.error(404, "resource_not_found", f"No route for {method} {path}.")
                )
            elif (limited := self._over_rate_limit()) is not None:
                fault, response = "rate_limited", limited
            else:
                concrete = f"{method} {path}"
                fault = self.faults.pick((concrete, route.key, "*"))
                response = self._answer(route, fault, method, path, params, query, headers, body)
        correlation = next((headers[k] for k in self.correlation_headers if k in headers), None)
        record = RequestRecord(
            method=method,
            path=path,
            route=route.key if route else None,
            query=query,
            status=response.status,
            timestamp=time.time(),
            correlation_id=correlation,
            request_id=request_id,
            fault=fault,
            duration=time.perf_counter() - started,
            client_port=h.client_address[1] if h.client_address else 0,
        )
        with self._log_lock:  # before the write, so a test reading the log never races it
            self._log.append(record)
            self._counts["*"] += 1
            self._counts[f"{method} {path}"] += 1
            if route is not None and route.pattern != path:
                self._counts[route.key] += 1
        if fault in LOST_ANSWER_FAULTS:
            self._hang_up(h)
            return
        self._write(h, response, request_id, drop=fault == "drop")

    def _answer(
        self,
        route: Route,
        fault: str | None,
        method: str,
        path: str,
        params: dict[str, str],
        query: dict[str, str],
        headers: dict[str, str],
        body: bytes,
    ) -> Response:
        """Faults first (as a gateway would), then auth, then the JSON body, then the handler."""
        if fault in ECHO_FAULTS:
            return self._echo_response(fault, headers, body)
        if fault == "drop_before_apply":
            return Response(0)
        faulted = self._fault_response(fault)
        if faulted is not None:
            return faulted
        request = Request(method, path, route.key, params, query, headers, body, None)
        if not route.public and (denied := self._deny(request)) is not None:
            return denied
        if body and "json" in headers.get("content-type", "application/json"):
            try:
                payload = json.loads(body)
            except ValueError:
                return self.error(400, "bad_request", "Request body is not valid JSON.")
            request = Request(method, path, route.key, params, query, headers, body, payload)
        try:
            return route.handler(request)
        except ApiError as exc:
            return self.error(exc.status, exc.code, exc.message)
        except Exception:
            text = traceback.format_exc()
            self.errors.append(text)
            sys.stderr.write(f"{self.name}: handler for {route.key} failed\n{text}")
            return self.error(500, "internal_server_error", "Unexpected error occurred.")

    def rate_limit(
        self, per_second: int | None, *, window: float = 1.0, http_date: bool = False
    ) -> None:
        """Answer 429 past `per_second` requests in any `window` seconds (a sliding window,
        as an API gateway counts), with a Retry-After of the seconds until a slot frees
        (an HTTP date instead with `http_date`); None lifts the limit. Requests it refuses
        do not count against the window; they are logged with fault `rate_limited`."""
        with self._rate_lock:
            self._rate_limit = None if per_second is None else (per_second, window, http_date)
            self._admitted.clear()

    def _over_rate_limit(self) -> Response | None:
        with self._rate_lock:
            if self._rate_limit is None:
                return None
            limit, window, http_date = self._rate_limit
            now = time.time()
            while self._admitted and self._admitted[0] <= now - window:
                self._admitted.popleft()
            if len(self._admitted) < limit:
                self._admitted.append(now)
                return None
            free_at = self._admitted[0] + window
        response = self.error(429, "too_many_requests", "Rate limit exceeded.")
        if http_date:
            response.headers["Retry-After"] = formatdate(math.ceil(free_at), usegmt=True)
        else:
            response.headers["Retry-After"] = str(max(1, math.ceil(free_at - now)))
        return response

    def _deny(self, request: Request) -> Response | None:
        if self._token_expired:
            return self.error(401, "unauthorized", "Access token has expired.")
        if self.authenticate is not None and not self.authenticate(request):
            return self.error(401, "unauthorized", "API key is not valid.")
        return None

    def _fault_response(self, fault: str | None) -> Response | None:
        """The answer a fault substitutes for the real one; None lets the handler run."""
        extra = self._extra_faults.get(fault) if fault is not None else None
        if extra is not None:
            return extra()
        response: Response | None = None
        if fault == "429":
            response = self.error(429, "too_many_requests", "Rate limit exceeded.")
            response.headers["Retry-After"] = str(int(self.faults.retry_after))
        elif fault in ("500", "503"):
            response = (
                self.error(500, "internal_server_error", "Unexpected error occurred.")
                if fault == "500"
                else self.error(503, "service_unavailable", "Service temporarily unavailable.")
            )
        elif fault == "malformed":
            response = Response(200, MALFORMED_BODY)
        elif fault == "token_expired":
            self.expire_token()
            response = self.error(401, "unauthorized", "Access token has expired.")
        elif fault == "slow":  # then answer normally: the side effects happen, the client gave up
            self._stopping.wait(self.faults.slow_seconds)
        return response

    def _echo_response(self, fault: str, headers: dict[str, str], body: bytes) -> Response:
        """The answer of an ``echo_*`` fault: what the request authenticated with, quoted back."""
        quoted = [
            (name, value) for name, value in headers.items() if _CREDENTIAL_HEADER.search(name)
        ]
        if body and "form" in headers.get("content-type", ""):
            quoted.append(("body", body.decode("utf-8", "replace")))
        if fault == "echo_cut":
            quoted = [
                (name, value[: max(1, len(value) * 2 // 3)] + "...") for name, value in quoted
            ]
        echo = "; ".join(f"{name}: {value}" for name, value in quoted) or "no credentials"
        if fault in ("echo_text", "echo_cut"):
            text = f"<html><body><h1>400 Bad Request</h1><p>Rejected {echo}</p></body></html>"
            return Response.raw(text.encode(), 400, "text/html")
        if fault == "echo_ok":
            text = "Maintenance notice: this gateway answered instead of the API. Request ".ljust(
                72
            )
            return Response.raw((text + echo).encode(), 200, "text/plain")
        if fault == "echo_warn":
            warnings = [f"Request carried {echo}"]
            ok = self.ok_body(warnings) if self.ok_body else {"message": "ok", "warnings": warnings}
            return Response.of_json(ok)
        error = self.error_body(400, "invalid_credentials", f"Invalid credentials ({echo})")
        if isinstance(error, dict) and isinstance(error.get("warnings"), list):
            error["warnings"] = [*error["warnings"], f"Request carried {echo}"]
        status = {"echo_soft": 200, "echo_auth": 401}.get(fault, 400)
        return Response.of_json(error, status)

    @staticmethod
    def _read_body(h: _Handler, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            chunks: list[bytes] = []
            total = 0
            while True:
                line = h.rfile.readline(1024)
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError as exc:
                    raise _BadRequestError("Malformed chunked request body.") from exc
                if size == 0:
                    while h.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > _MAX_BODY:
                    raise _BadRequestError("Request body too large.")
                chunks.append(h.rfile.read(size))
                h.rfile.readline(1024)
        raw_length = headers.get("content-length")
        if not raw_length:
            return b""
        try:
            length = int(raw_length)
        except ValueError as exc:
            raise _BadRequestError("Invalid Content-Length.") from exc
        if length < 0 or length > _MAX_BODY:
            raise _BadRequestError("Invalid Content-Length.")
        return h.rfile.read(length) if length else b""

    @staticmethod
    def _hang_up(h: _Handler) -> None:
        """Close the connection without a byte of answer (a lost-answer fault)."""
        h.close_connection = True
        with contextlib.suppress(OSError):
            h.connection.shutdown(socket.SHUT_RDWR)

    def _write(self, h: _Handler, response: Response, request_id: str, *, drop: bool) -> None:
        try:
            reason = HTTPStatus(response.status).phrase
        except ValueError:
            reason = ""
        body = response.body
        declared = len(body)
        if drop:  # promise a body, deliver half of it, hang up
            declared = max(len(body), 64)
            body = body[: declared // 2]
        lines = [
            f"HTTP/1.1 {response.status} {reason}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {declared}",
        ]
        lines.extend(f"{name}: {request_id}" for name in self.request_id_headers)
        lines.extend(f"{name}: {value}" for name, value in response.headers.items())
        if h.close_connection and not drop:
            lines.append("Connection: close")
        h.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        if drop:
            h.close_connection = True
            with contextlib.suppress(OSError):
                h.wfile.flush()
                h.connection.shutdown(socket.SHUT_RDWR)


class Simulator:
    """What every simulator shares: one SandboxServer, its life cycle, and the levers
    tests use (faults, request log, counters, token)."""

    server: SandboxServer

    def start(self) -> Self:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Server root, e.g. ``http://127.0.0.1:PORT``."""
        return self.server.url

    @property
    def base_url(self) -> str:
        """What a client's `base_url` is set to: the server root unless the API has a prefix."""
        return self.server.url

    @property
    def token(self) -> str | None:
        return self.server.token

    @property
    def faults(self) -> FaultInjector:
        return self.server.faults

    @property
    def requests(self) -> list[RequestRecord]:
        return self.server.requests

    def count(self, route: str | None = None) -> int:
        return self.server.count(route)

    def renew_token(self, new: str) -> None:
        self.server.renew_token(new)
