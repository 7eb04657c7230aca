"""The redactor and its choke points: known secrets, their cut fragments, URL credentials,
secret-looking parameters; the store's write helpers redact whatever text they are given."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.logs import REDACTED, Redactor, configure_logging, redactor
from syncd.state import Intent, NewIntent, NewReject, Store

SECRET = "Zq9xY7vB2kLm4Np8RtW3"
FRAGMENTS = {SECRET[i : i + 6] for i in range(len(SECRET) - 5)}


@pytest.fixture
def known() -> Iterator[Redactor]:
    redactor.set_secrets([SECRET, "instock-sandbox-token"])
    yield redactor
    redactor.set_secrets([])


def leaked(text: str) -> set[str]:
    return {f for f in FRAGMENTS if f in text}


@pytest.mark.parametrize(
    "text",
    [
        f"bad key {SECRET}",
        f"bad key {SECRET[:9]}...",  # cut by the remote
        f"…{SECRET[-8:]} was refused",  # the tail end of a cut
        f"x-api-key: {SECRET[:14]}",
        f"<p>Rejected Authorization: Bearer {SECRET[:7]}</p>",
    ],
)
def test_whole_and_cut_secrets_are_redacted(known: Redactor, text: str) -> None:
    """A known secret is replaced whole, and so is any 6+ character run of it left by a cut."""
    out = known.text(text)
    assert leaked(out) == set()
    assert REDACTED in out


@given(start=st.integers(0, 60), limit=st.integers(0, 120))
@settings(max_examples=60, deadline=None)
def test_redact_then_cut_never_leaves_a_fragment(start: int, limit: int) -> None:
    """Whatever the cut point, `cut` redacts first: no 6-character run of the secret survives."""
    redactor.set_secrets([SECRET])
    try:
        out = redactor.cut("p" * start + SECRET + " tail", limit)
    finally:
        redactor.set_secrets([])
    assert leaked(out) == set()
    assert len(out) <= max(limit, 1)


@pytest.mark.parametrize(
    ("secret", "echo"),
    [
        ("68014031-f81e-4faa-8017-ac6fd620b129", "68014031-"),  # a UUID cut after its digits
        ("6801403157f81e4faa8017ac6fd620b1", "6801403157"),  # a hex key, likewise
        ("3f9a81-220194", "220194"),  # the tail of a cut
    ],
)
def test_a_cut_that_leaves_only_digits_of_a_secret_is_redacted(secret: str, echo: str) -> None:
    """Hex keys and UUIDs often start or end with six digits or more: a remote's echo cut
    there holds no letter, and is still a piece of the secret."""
    redactor.set_secrets([secret])
    try:
        out = redactor.text(f"401: invalid key '{echo}...' for order 20261204")
    finally:
        redactor.set_secrets([])
    assert echo.strip("-") not in out
    assert not {secret[i : i + 6] for i in range(len(secret) - 5)} & {
        out[i : i + 6] for i in range(len(out) - 5)
    }
    assert "order 20261204" in out  # a number that is not from the secret stays


def test_words_and_numbers_shared_with_a_secret_stay_readable(known: Redactor) -> None:
    """Fragments are redacted only when they mix classes as generated credentials do, so a
    word-like sandbox token does not blank out job names, run ids or order numbers."""
    text = "instock.inventory run instock-inventory-3f2a connector instock order 123456"
    assert known.text(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://ops:hunter2@api.example.com/v1", "https://ops:**********@api.example.com/v1"),
        ("https://tok123@api.example.com", "https://**********@api.example.com"),
        ("https://h/x?token=abc&page=2", "https://h/x?token=**********&page=2"),
        ("https://h/x?page=2&api_key=abc", "https://h/x?page=2&api_key=**********"),
        ("https://h/x?X-Amz-Signature=abc", "https://h/x?X-Amz-Signature=**********"),
        ("grant_type=password&password=pw1", "grant_type=password&password=**********"),
        ('{"client_secret": "cs1", "n": 1}', '{"client_secret": "**********", "n": 1}'),
        ("order_key=ABC page=2", "order_key=ABC page=2"),
    ],
)
def test_url_credentials_and_secret_parameters(text: str, expected: str) -> None:
    """Userinfo, secret-looking query/form parameters and JSON fields are masked, known or not."""
    assert Redactor().text(text) == expected


def test_obtained_tokens_are_redacted_too() -> None:
    """A token fetched at run time (OAuth) is added to the known secrets."""
    fresh = Redactor()
    fresh.set_secrets([SECRET])
    fresh.add_secret("Ac3ssT0kenXyZ9")
    assert fresh.text("token Ac3ssT0kenXyZ9 and " + SECRET) == f"token {REDACTED} and {REDACTED}"


def test_store_write_helpers_are_the_choke_point(known: Redactor, store: Store) -> None:
    """runs, outbox errors and results, rejects and alerts never hold a secret, whoever
    built the text (a remote's echo passed on as is)."""
    echo = f"remote said: bad token {SECRET[:10]}"
    store.start_run("t.job", "r1", "cli")
    store.finish_run("r1", "failed", {}, warnings=[{"w": echo}, echo], error=echo)
    store.add_intents([NewIntent("d", "k", "o1", "i1", {"a": 1})])
    store.add_intents([NewIntent("d", "k", "o2", "i2", {"a": 2})])
    first, second = store.pending_intents("d", 10)
    store.mark_retry(first.id, echo, 1.0)
    store.mark_sent(second.id, {"warnings": [echo]})
    intent = Intent.from_row(store.query("SELECT * FROM outbox WHERE id = ?", [first.id])[0])
    store.reject_intent(intent, echo)
    store.add_rejects([NewReject("s", echo, echo, field=echo, payload={"raw": echo})])
    store.add_rejects([NewReject("s", "ref", "reason", payload=echo)])
    store.open_alert("auth", echo, subject="d")
    dump = "\n".join(store.db.conn.iterdump())
    assert "remote said" in dump
    assert leaked(dump) == set()


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_a_traceback_is_redacted_in_either_log_format(known: Redactor, fmt: str) -> None:
    """An exception's text (a URL with a password, an echoed token) is redacted in the
    console format as in JSON: the traceback is rendered before the redactor runs."""
    stream = io.StringIO()
    configure_logging("info", fmt, stream=stream)
    try:
        raise RuntimeError(f"GET https://ops:pw9Xq@h/x failed, remote said {SECRET}")
    except RuntimeError:
        structlog.get_logger("t").exception("boom")
    text = stream.getvalue()
    assert "boom" in text
    assert "RuntimeError" in text
    assert "pw9Xq" not in text
    assert leaked(text) == set()
