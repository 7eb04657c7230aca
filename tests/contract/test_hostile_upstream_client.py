"""The connectors' clients, directly, against a hostile upstream on loopback (real HTTP).

Each whole-answer misbehaviour (not JSON, over the size cap, trickling, compressed past the
cap, in a coding not asked for, a redirect, a read of the wrong shape) raises its own
classified error, under the retryable/permanent tree, within the request's deadline.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import json
import socket
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from syncd.config import InstockConfig
from syncd.connectors.instock import InstockClient
from syncd.errors import (
    AnswerTooLargeError,
    DeadlineExceededError,
    MalformedAnswerError,
    PaginationError,
    RedirectedError,
)
from tests.hostile_upstream import (
    HostileUpstream,
    cursor_pages,
    cycle,
    encoded,
    huge_chunk,
    instock_upstream,
    json_answer,
    oversized,
    raw,
    redirect,
    trickle,
)

SITE = "S1"
CAP = 64 * 1024  # bytes per answer in these tests


@pytest.fixture
def up() -> Iterator[HostileUpstream]:
    with instock_upstream(SITE) as server:
        yield server


def inventory_item(n: int) -> dict[str, Any]:
    return {"article_id": f"A{n}", "qty": {"free": n + 1, "reserved": 0, "registered": 0}}


# --- the client, directly ----------------------------------------------------------------------


def client_for(up: HostileUpstream, **bounds: Any) -> InstockClient:
    config = InstockConfig.model_validate(
        {
            "enabled": True,
            "base_url": up.base_url,
            "token": "t",
            "site_id": SITE,
            "retry": {"max_attempts": 1},
            "timeouts": {"read": 30},
            **bounds,
        }
    )
    return InstockClient(config)


def test_error_classes(up: HostileUpstream) -> None:
    """Each misbehaviour raises its own class, under the retryable/permanent tree."""
    path = f"/{SITE}/inventory"
    with client_for(up, request_deadline=0.3, max_response_bytes=CAP, max_pages=3) as client:
        cases: list[tuple[Any, type[Exception]]] = [
            (raw(b"[]"), MalformedAnswerError),
            (oversized(4 * CAP), AnswerTooLargeError),
            (trickle(b'{"articles": []}', 0.1), DeadlineExceededError),
            (cursor_pages("articles", cycle("A", "B"), inventory_item), PaginationError),
        ]
        for answer, error in cases:
            up.script("GET", path, answer)
            with pytest.raises(error):
                list(client.inventory_pages())


def test_trickled_headers_and_a_stalled_body_end_at_the_deadline(up: HostileUpstream) -> None:
    """The deadline holds on every socket read, not only between body chunks: headers sent
    a byte at a time, or a body that stops after its headers, end at the deadline although
    the read timeout is 30 s."""
    path = f"/{SITE}/inventory"
    with client_for(up, request_deadline=0.5) as client:
        for answer in (trickle(b'{"articles": []}', 0.05, headers_too=True), trickle(b"{}", 60)):
            up.script("GET", path, answer)
            started = time.monotonic()
            with pytest.raises(DeadlineExceededError):
                list(client.inventory_pages())
            assert time.monotonic() - started < 1.5


def _padded_page(size: int) -> bytes:
    head, tail = b'{"articles": [], "has_more": false, "pad": "', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


@functools.cache
def bomb(coding: str) -> bytes:
    """16 MiB of JSON, compressed: ~16 KiB on the wire, ~200 bytes when gzipped twice."""
    page = _padded_page(16 << 20)
    if coding == "deflate":
        return zlib.compress(page)
    for _ in coding.split(", "):
        page = gzip.compress(page)
    return page


@pytest.mark.parametrize("coding", ["gzip", "deflate", "gzip, gzip"])
def test_a_compressed_answer_that_inflates_past_the_cap_stops_at_the_cap(
    up: HostileUpstream, coding: str
) -> None:
    """A gzip bomb: a small body (under the cap) that decodes to 16 MiB. Decoding stops at the
    cap, so memory never holds much more than the cap (httpx inflated each chunk read
    whole: all 16 MiB at once), and the answer is refused as too large."""
    path = f"/{SITE}/inventory"
    up.script("GET", path, encoded(bomb(coding), coding))
    with client_for(up, max_response_bytes=CAP) as client:
        tracemalloc.start()
        try:
            with pytest.raises(AnswerTooLargeError, match="once decoded"):
                list(client.inventory_pages())
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 4 << 20, f"peak {peak} bytes for a {CAP}-byte cap"


@pytest.mark.parametrize("coding", ["gzip", "deflate", "gzip, deflate", "identity"])
def test_a_compressed_answer_within_the_cap_is_read(up: HostileUpstream, coding: str) -> None:
    """Bounded decoding reads every coding syncd asks for, stacked or raw (deflate without
    its zlib wrapper, as some servers send it), when the decoded answer fits the cap."""
    page = json.dumps({"articles": [inventory_item(1)], "has_more": False}).encode()
    body = page
    for step in coding.split(", "):
        if step == "gzip":
            body = gzip.compress(body)
        elif step == "deflate":
            raw_deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
            body = raw_deflate.compress(body) + raw_deflate.flush()
    up.script("GET", f"/{SITE}/inventory", encoded(body, coding))
    with client_for(up, max_response_bytes=CAP) as client:
        [page_read] = list(client.inventory_pages())
    assert [item["article_id"] for item in page_read.items] == ["A1"]


@pytest.mark.parametrize("coding", ["gzip", "gzip, gzip"])
def test_a_compressed_answer_of_many_slices_under_the_cap_is_read_whole(
    up: HostileUpstream, coding: str
) -> None:
    """A 3 MiB page (decoded a slice at a time, through two stages when gzipped twice) under
    a 4 MiB cap arrives byte for byte."""
    page = _padded_page(3 << 20)
    body = page
    for _ in coding.split(", "):
        body = gzip.compress(body)
    up.script("GET", f"/{SITE}/inventory", encoded(body, coding))
    with client_for(up, max_response_bytes=4 << 20) as client:
        [read] = list(client.inventory_pages())
    assert read.meta["pad"] == json.loads(page)["pad"]


def test_a_coding_syncd_does_not_know_is_read_as_it_is(up: HostileUpstream) -> None:
    """As httpx does, an unknown coding is passed through: JSON mislabelled `utf-8` is read,
    and a body really in another coding (br) is a malformed answer, not a crash."""
    page = json.dumps({"articles": [inventory_item(1)], "has_more": False}).encode()
    with client_for(up) as client:
        up.script("GET", f"/{SITE}/inventory", encoded(page, "utf-8"))
        [read] = list(client.inventory_pages())
        assert [item["article_id"] for item in read.items] == ["A1"]
        up.script("GET", f"/{SITE}/inventory", encoded(b"\x1b\x00\x00", "br"))
        with pytest.raises(MalformedAnswerError):
            list(client.inventory_pages())


def test_one_huge_chunk_of_a_chunked_answer_stops_at_the_cap(up: HostileUpstream) -> None:
    """A chunked answer whose single chunk declares 10 GB is read only up to the cap, at
    once and with memory near the cap, and refused as too large."""
    up.script("GET", f"/{SITE}/inventory", huge_chunk(10**10))
    with client_for(up, max_response_bytes=CAP) as client:
        tracemalloc.start()
        started = time.monotonic()
        try:
            with pytest.raises(AnswerTooLargeError):
                list(client.inventory_pages())
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert time.monotonic() - started < 2
    assert peak < 4 << 20


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_an_error_naming_where_it_points_not_an_answer(
    up: HostileUpstream, status: int
) -> None:
    """A 3xx is never taken for the answer (before, a 301 whose body looked like an empty
    page was read as one): redirects are not followed, the error names the Location and
    the base_url to correct, and it is not repeated at once."""
    path = f"/{SITE}/inventory"
    body = json.dumps({"articles": [], "has_more": False}).encode()
    up.script("GET", path, redirect(status, "https://elsewhere.example/v2/S1/inventory", body))
    with (
        client_for(up, retry={"max_attempts": 3}) as client,
        pytest.raises(RedirectedError) as caught,
    ):
        list(client.inventory_pages())
    assert caught.value.code == "redirect"
    assert "https://elsewhere.example/v2/S1/inventory" in str(caught.value)
    assert "connectors.instock.base_url" in str(caught.value)
    assert len(up.requests(path)) == 1


@contextlib.contextmanager
def tcp_server(serve: Callable[[socket.socket], None]) -> Iterator[int]:
    """A TCP server on loopback running `serve` on each accepted connection; yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def loop() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        done.set()
        listener.close()


def test_a_tls_handshake_that_trickles_ends_at_the_deadline(up: HostileUpstream) -> None:
    """A server that answers the TLS ClientHello one byte at a time (every socket read
    succeeds, the handshake never completes) ends at the request deadline, although the
    connect and read timeouts are 30 s: the handshake is bounded as a whole."""

    def trickle_handshake(conn: socket.socket) -> None:
        with conn:
            conn.recv(4096)  # the ClientHello
            conn.sendall(b"\x16\x03\x03\x40\x00")  # a 16 KiB handshake record follows...
            for _ in range(60):  # ... one byte every 50 ms, for at most 3 s
                time.sleep(0.05)
                try:
                    conn.sendall(b"\x00")
                except OSError:
                    return

    with tcp_server(trickle_handshake) as port:
        config = InstockConfig.model_validate(
            {
                "enabled": True,
                "base_url": f"https://127.0.0.1:{port}",
                "token": "t",
                "site_id": SITE,
                "retry": {"max_attempts": 1},
                "timeouts": {"connect": 30, "read": 30},
                "request_deadline": 0.5,
            }
        )
        started = time.monotonic()
        with InstockClient(config) as client, pytest.raises(DeadlineExceededError):
            list(client.inventory_pages())
        assert time.monotonic() - started < 1.5


@pytest.mark.parametrize(
    "data",
    [
        [],
        "models",
        {"models": {"a": 1}, "logs": {"a": 1}, "legend": {"a": 1}},
        {"models": "x", "logs": "x", "legend": "x"},
    ],
    ids=["data-array", "data-string", "lists-objects", "lists-strings"],
)
def test_netstock_reads_of_the_wrong_shape_are_malformed(up: HostileUpstream, data: Any) -> None:
    """Netstock's model status, audit log and status legend: a `data` that is not an object,
    or a list field that is not a list, is a malformed answer, not an AttributeError."""
    from syncd.config import ConnectorConfig
    from syncd.connectors.netstock.client import NetstockClient
    from syncd.sandbox.netstock import (
        DEFAULT_CLIENT_ID,
        DEFAULT_PASSWORD,
        DEFAULT_SCOPE,
        DEFAULT_USERNAME,
        TOKEN_PATH,
    )

    up.script("POST", TOKEN_PATH, json_answer({"access_token": "t", "expires_in": 300}))
    envelope = {"api_call_status": True, "message": "", "data": data}
    for path in ("/model/status", "/dataset/full_audit_log", "/dataset/status_legend"):
        up.script("GET", path, json_answer(envelope))
    config = ConnectorConfig.model_validate(
        {
            "enabled": True,
            "base_url": up.base_url,
            "username": DEFAULT_USERNAME,
            "password": DEFAULT_PASSWORD,
            "client_id": DEFAULT_CLIENT_ID,
            "options": {"scope": DEFAULT_SCOPE},
            "retry": {"max_attempts": 1},
        }
    )
    with NetstockClient(config) as client:
        for read in (
            lambda: client.model_status("D1"),
            lambda: client.audit_log("D1"),
            client.status_legend,
        ):
            with pytest.raises(MalformedAnswerError):
                read()
