"""A hostile upstream: a real HTTP server on loopback that answers the way a broken remote does.

Tests point a connector's `base_url` at it and script, per path, one misbehaviour:
a body that is not JSON, JSON that is not an object, an answer far larger than asked
for, an answer trickling in a byte at a time, or list pages whose cursors loop back
(A -> B -> A) or never end. Paths without a script answer 404. Every request is
logged, so a test can count what the client asked for.

HTTP/1.0 with `Connection: close`: a body may end by closing the socket, the way a
proxy or a streaming server sends one of unknown length.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Answer = Callable[["_Handler", dict[str, str]], None]


@dataclass(frozen=True)
class Logged:
    method: str
    path: str
    query: dict[str, str]


class HostileUpstream:
    """`with HostileUpstream(prefix="/v1") as up: up.script("GET", "/s/inventory", ...)`."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.scripts: dict[tuple[str, str], Answer] = {}
        self.log: list[Logged] = []
        self.stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.upstream = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{self.prefix}"

    def script(self, method: str, path: str, answer: Answer) -> None:
        self.scripts[(method, self.prefix + path)] = answer

    def requests(self, path: str) -> list[Logged]:
        return [r for r in self.log if r.path == self.prefix + path]

    def __enter__(self) -> HostileUpstream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()  # trickling answers end at their next byte
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        upstream: HostileUpstream = self.server.upstream
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        upstream.log.append(Logged(self.command, parts.path, query))
        answer = upstream.scripts.get((self.command, parts.path))
        try:
            if answer is None:
                send(self, 404, b'{"code": "resource_not_found", "message": "no script"}')
            else:
                answer(self, query)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up: that is what these answers are for

    do_GET = do_POST = do_PUT = do_DELETE = _serve


def send(handler: _Handler, status: int, body: bytes, *, length: bool = True) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("X-Request-ID", "hostile-1")
    if length:
        handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@contextlib.contextmanager
def instock_upstream(site: str) -> Iterator[HostileUpstream]:
    """A hostile upstream that answers Instock's site list with `site` (virtual): the
    Instock client and jobs check the site's environment before anything else."""
    with HostileUpstream() as server:
        server.script(
            "GET", "/sites", json_answer({"sites": [{"site_id": site, "is_virtual": True}]})
        )
        yield server


# --- answers --------------------------------------------------------------------------------


def json_answer(value: Any, status: int = 200) -> Answer:
    """A well-formed answer (for the parts of a flow that are not under test)."""
    body = json.dumps(value).encode()
    return lambda handler, query: send(handler, status, body)


def raw(body: bytes, status: int = 200) -> Answer:
    """Exactly these bytes: a cut-off object, HTML, `[]`, `null`, `"text"`..."""
    return lambda handler, query: send(handler, status, body)


def oversized(total_bytes: int, *, declare_length: bool = False, chunk: int = 1 << 16) -> Answer:
    """Valid JSON of `total_bytes` (an object padded with one long string), streamed out in
    chunks; without a Content-Length the client only learns the size by reading."""

    def answer(handler: _Handler, query: dict[str, str]) -> None:
        head, tail = b'{"articles": [], "has_more": false, "pad": "', b'"}'
        pad = total_bytes - len(head) - len(tail)
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        if declare_length:
            handler.send_header("Content-Length", str(total_bytes))
        handler.end_headers()
        handler.wfile.write(head)
        block = b"x" * chunk
        while pad > 0 and not handler.server.upstream.stopping.is_set():
            handler.wfile.write(block[: min(pad, chunk)])
            pad -= chunk
        handler.wfile.write(tail)

    return answer


def encoded(body: bytes, coding: str) -> Answer:
    """`body` (already compressed) sent with `Content-Encoding: coding` and its true length:
    a gzip bomb is a small answer that decodes to gigabytes."""

    def answer(handler: _Handler, query: dict[str, str]) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Encoding", coding)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return answer


def huge_chunk(declared: int, *, chunk: int = 1 << 16) -> Answer:
    """HTTP/1.1 chunked encoding whose one chunk declares `declared` bytes, then streams
    them: the size only shows by reading, and no Content-Length warns of it."""

    def answer(handler: _Handler, query: dict[str, str]) -> None:
        handler.wfile.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            + b"%x\r\n" % declared
            + b'{"articles": [], "has_more": false, "pad": "'
        )
        block = b"x" * chunk
        sent = 0
        while sent < declared and not handler.server.upstream.stopping.is_set():
            handler.wfile.write(block)
            sent += chunk

    return answer


def redirect(status: int, location: str, body: bytes = b"") -> Answer:
    """A 3xx pointing elsewhere, with a body that may itself look like a good answer."""

    def answer(handler: _Handler, query: dict[str, str]) -> None:
        handler.send_response(status)
        handler.send_header("Location", location)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return answer


def trickle(body: bytes, every: float, *, headers_too: bool = False) -> Answer:
    """`body` one byte every `every` seconds, after prompt headers (or trickling them too):
    each read of the client's socket succeeds, only the whole answer never comes."""

    def answer(handler: _Handler, query: dict[str, str]) -> None:
        stopping = handler.server.upstream.stopping
        head = (
            b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        out = (head + body) if headers_too else body
        if not headers_too:
            handler.wfile.write(head)
            handler.wfile.flush()
        for byte in out:
            if stopping.wait(every):
                return
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()

    return answer


def cursor_pages(key: str, chain: Callable[[str], str], item: Callable[[int], Any]) -> Answer:
    """List pages whose `next_cursor` is `chain(start_cursor)`, `has_more` always true:
    `cycle("A", "B")` loops, `ever_new()` never repeats."""
    served = iter(range(1_000_000))

    def answer(handler: _Handler, query: dict[str, str]) -> None:
        cursor = query.get("start_cursor", "")
        body = {key: [item(next(served))], "has_more": True, "next_cursor": chain(cursor)}
        send(handler, 200, json.dumps(body).encode())

    return answer


def cycle(*cursors: str) -> Callable[[str], str]:
    """'' -> c0 -> c1 -> ... -> c_last -> c0 again."""
    return lambda cursor: (
        cursors[(cursors.index(cursor) + 1) % len(cursors)] if cursor else cursors[0]
    )


def ever_new() -> Callable[[str], str]:
    counter: Iterator[int] = iter(range(1, 10_000_000))
    return lambda cursor: f"c{next(counter)}"


def wall(seconds: float) -> Callable[[], float]:
    """A stopwatch: `elapsed = wall(0)` then `elapsed()`."""
    started = time.monotonic() - seconds
    return lambda: time.monotonic() - started
