"""HTTP layer: classification, retry/backoff decisions, Retry-After, auth refresh, redaction."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
import respx
from freezegun import freeze_time

from syncd.clock import iso
from syncd.config import ConnectorConfig, OutboxConfig
from syncd.errors import AuthError, PermanentError, RedirectedError, RetryableError
from syncd.http import build_client, classify_status, not_applied, parse_retry_after, should_retry
from syncd.jsontext import RawJson, canonical
from syncd.ratebudget import RateBudget
from syncd.sections import RateLimit
from syncd.send.sender import decide_after_failure
from syncd.state import Intent

BASE = "https://remote.example.com"


def config(**overrides: object) -> ConnectorConfig:
    data: dict[str, object] = {
        "enabled": True,
        "base_url": BASE,
        "token": "tok-SECRET-1234",
        "retry": {"max_attempts": 4, "initial_backoff": 1, "max_backoff": 8, "max_elapsed": 600},
        "correlation_header": "Test-Correlation-ID",
    }
    data.update(overrides)
    return ConnectorConfig.model_validate(data)


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, None),
        (201, None),
        (301, RedirectedError),
        (302, RedirectedError),
        (400, PermanentError),
        (404, PermanentError),
        (401, AuthError),
        (403, AuthError),
        (429, RetryableError),
        (500, RetryableError),
        (503, RetryableError),
        (408, RetryableError),
    ],
)
def test_status_classification(status: int, expected: type | None) -> None:
    """Each HTTP status maps to exactly one reaction: ok, reject, refresh, or retry."""
    assert classify_status(status) is expected


def test_retry_after_seconds_and_http_date() -> None:
    """Retry-After is honoured as delta-seconds or as an HTTP date."""
    assert parse_retry_after("7") == 7.0
    with freeze_time("2026-11-23 10:00:00"):
        assert parse_retry_after("Mon, 23 Nov 2026 10:00:30 GMT") == 30.0
        assert parse_retry_after("Mon, 23 Nov 2026 09:00:00 GMT") == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


@respx.mock
def test_429_waits_retry_after_then_succeeds() -> None:
    """A 429 is retried after exactly the Retry-After the remote asked for."""
    route = respx.get(f"{BASE}/items").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "3"}),
            httpx.Response(200, json=[]),
        ]
    )
    sleeps = Sleeps()
    client = build_client("test", config(), sleep=sleeps)
    assert client.get_json("/items") == []
    assert route.call_count == 2
    assert sleeps == [3.0]


@respx.mock
def test_5xx_retries_are_bounded_with_jittered_backoff() -> None:
    """5xx is retried max_attempts times with full-jitter waits under the exponential ceiling."""
    route = respx.get(f"{BASE}/items").mock(
        return_value=httpx.Response(503, json={"message": "busy"})
    )
    sleeps = Sleeps()
    client = build_client("test", config(), sleep=sleeps)
    with pytest.raises(RetryableError) as info:
        client.request("GET", "/items")
    assert route.call_count == 4
    assert len(sleeps) == 3
    for n, wait in enumerate(sleeps):
        assert 0 <= wait <= min(8, 1 * 2 ** (n + 1))
    assert info.value.status == 503


@respx.mock
def test_long_retry_after_is_handed_back_not_slept() -> None:
    """A Retry-After beyond max_backoff is raised at once so the outbox reschedules it."""
    respx.get(f"{BASE}/items").mock(
        return_value=httpx.Response(429, headers={"Retry-After": "600"})
    )
    sleeps = Sleeps()
    with pytest.raises(RetryableError) as info:
        build_client("test", config(), sleep=sleeps).request("GET", "/items")
    assert sleeps == []
    assert info.value.retry_after == 600


@respx.mock
def test_validation_error_is_permanent_and_not_retried() -> None:
    """A 400 is not retried: it carries the remote's code, message and request id."""
    route = respx.post(f"{BASE}/items").mock(
        return_value=httpx.Response(
            400,
            json={"code": "bad_request", "message": "qty must be > 0"},
            headers={"X-Request-ID": "req-9"},
        )
    )
    with pytest.raises(PermanentError) as info:
        build_client("test", config(), sleep=Sleeps()).request("POST", "/items", json_body={})
    assert route.call_count == 1
    assert (info.value.code, info.value.message, info.value.request_id) == (
        "bad_request",
        "qty must be > 0",
        "req-9",
    )


@respx.mock
def test_timeouts_and_connection_errors_are_retryable() -> None:
    """Timeouts and refused connections are retried, then raised as retryable."""
    route = respx.get(f"{BASE}/items").mock(
        side_effect=[
            httpx.ReadTimeout("slow"),
            httpx.ConnectError("refused"),
            httpx.Response(200, json={}),
        ]
    )
    assert build_client("test", config(), sleep=Sleeps()).get_json("/items") == {}
    assert route.call_count == 3


@respx.mock
def test_malformed_json_answer_is_retried() -> None:
    """A cut-off JSON body is treated as transient and fetched again."""
    respx.get(f"{BASE}/items").mock(
        side_effect=[httpx.Response(200, text='{"a": '), httpx.Response(200, json={"a": 1})]
    )
    assert build_client("test", config(), sleep=Sleeps()).get_json("/items") == {"a": 1}


class CountingAuth:
    def __init__(self) -> None:
        self.token = "old"
        self.refreshes = 0

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def refresh(self) -> bool:
        self.refreshes += 1
        self.token = "new"
        return True


@respx.mock
def test_auth_refreshes_once_then_gives_up() -> None:
    """A 401 refreshes credentials once; a second 401 raises AuthError."""
    route = respx.get(f"{BASE}/items").mock(
        return_value=httpx.Response(401, json={"message": "expired"})
    )
    auth = CountingAuth()
    with pytest.raises(AuthError):
        build_client("test", config(), auth=auth, sleep=Sleeps()).request("GET", "/items")
    assert auth.refreshes == 1
    assert route.call_count == 2
    assert route.calls[-1].request.headers["Authorization"] == "Bearer new"


@respx.mock
def test_correlation_id_and_auth_header_sent() -> None:
    """Every request carries the connector's correlation header and its credentials."""
    route = respx.get(f"{BASE}/items").mock(return_value=httpx.Response(200, json=[]))
    client = build_client("test", config(), sleep=Sleeps())
    client.request("GET", "/items")
    client.request("GET", "/items")
    ids = [c.request.headers["Test-Correlation-ID"] for c in route.calls]
    assert len(set(ids)) == 2
    assert route.calls[0].request.headers["Authorization"] == "Bearer tok-SECRET-1234"


@respx.mock
def test_secret_echoed_by_remote_is_redacted_from_the_error() -> None:
    """An error body that echoes our credentials never reaches logs or rejects."""
    from syncd.logs import redactor

    redactor.set_secrets(["tok-SECRET-1234"])
    respx.get(f"{BASE}/items").mock(
        return_value=httpx.Response(400, json={"message": "bad header Bearer tok-SECRET-1234"})
    )
    with pytest.raises(PermanentError) as info:
        build_client("test", config(), sleep=Sleeps()).request("GET", "/items")
    assert "tok-SECRET-1234" not in str(info.value)


def test_rate_limiter_spaces_requests() -> None:
    """Past the burst, requests are spaced at 1/rate seconds."""
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    budget = RateBudget("test", RateLimit(per_second=2, burst=2), clock=lambda: now[0])
    for _ in range(5):
        wait = budget.acquire(max_wait=60)
        if wait:
            sleep(wait)
    assert slept == pytest.approx([0.5, 0.5, 0.5])


def _intent(attempts: int, created: datetime) -> Intent:
    return Intent(1, "d", "k", "o", "i", {}, "pending", attempts, iso(created), None, iso(created))


@freeze_time("2026-11-23 12:00:00")
def test_outbox_backoff_decisions() -> None:
    """The sender backs off exponentially with jitter, honours Retry-After, then gives up."""
    now = datetime.now(UTC)
    policy = OutboxConfig(initial_backoff=5, max_backoff=60, max_attempts=5, max_age=3600)
    rng = random.Random(1)
    err = RetryableError("503", status=503)
    for attempts, ceiling in [(0, 5), (1, 10), (2, 20), (3, 40)]:
        decision = decide_after_failure(_intent(attempts, now), err, policy, now, rng)
        assert decision.action == "retry"
        assert 0 <= decision.delay <= ceiling
    later = RetryableError("429", status=429, retry_after=42)
    assert decide_after_failure(_intent(0, now), later, policy, now).delay == 42
    assert decide_after_failure(_intent(4, now), err, policy, now).action == "give_up"
    old = now - timedelta(hours=2)
    assert decide_after_failure(_intent(0, old), err, policy, now).action == "give_up"


@respx.mock
def test_rendered_json_body_is_sent_as_is() -> None:
    """A body rendered once (RawJson: hashed and stored by the caller) goes out byte for
    byte, as JSON; a plain value is still encoded by the client."""
    route = respx.post(f"{BASE}/items").mock(return_value=httpx.Response(202, json={}))
    client = build_client("test", config(), sleep=Sleeps())
    rendered = RawJson('{"rows":[{"b":1,"a":"x"}]}')
    client.request("POST", "/items", json_body=rendered)
    client.request("POST", "/items", json_body={"rows": []})
    first, second = (call.request for call in route.calls)
    assert first.content == rendered.encode()
    assert first.headers["Content-Type"] == "application/json"
    assert json.loads(second.content) == {"rows": []}
    assert canonical({"b": 1, "a": Decimal("1.50")}) == '{"a":"1.50","b":1}'


@pytest.mark.parametrize(
    ("error", "idempotent_retry", "create_retry"),
    [
        (RetryableError("503", connector="x", status=503), True, False),
        (RetryableError("timed out", connector="x", code="timeout"), True, False),
        (RetryableError("cut", connector="x", code="connection"), True, False),
        (RetryableError("busy", connector="x", status=429), True, True),
        (
            RetryableError("refused", connector="x", code="connection", details={"sent": False}),
            True,
            True,
        ),
        (PermanentError("bad", connector="x", status=400), False, False),
    ],
)
def test_a_create_is_repeated_only_after_a_failure_that_proves_it_was_not_applied(
    error: Exception, idempotent_retry: bool, create_retry: bool
) -> None:
    """`idempotent=False`: a 5xx, a timeout or a cut connection after sending may have been
    applied, so the client hands it back (the outbox reads back first); a 429 or a request
    that never left is repeated as for any write."""
    policy = config().retry
    assert should_retry(policy)(error) is idempotent_retry
    assert should_retry(policy, idempotent=False)(error) is create_retry
    assert not_applied(error) is create_retry


@respx.mock
def test_a_lost_create_is_sent_once_by_the_client() -> None:
    """Over a mocked transport: an idempotent write is repeated after a 503, a create is not."""
    route = respx.post(f"{BASE}/orders").mock(return_value=httpx.Response(503))
    client = build_client("test", config(), sleep=Sleeps())
    with pytest.raises(RetryableError):
        client.request("POST", "/orders", json_body={"a": 1}, idempotent=False)
    assert route.call_count == 1
    with pytest.raises(RetryableError):
        client.request("POST", "/orders", json_body={"a": 1})
    assert route.call_count == 1 + 4
