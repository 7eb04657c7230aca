"""Contract of the Netstock CLIENT against the running simulator over loopback HTTP (no mocks).

Every test builds a real `NetstockClient` from a `ConnectorConfig` pointing at a `NetstockSim`,
sharing one `ManualClock`, so tokens, envelopes, the one-open rules, line counts, the status
walk, destructive pops and retries are exercised on an actual socket.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from syncd.config import ConnectorConfig
from syncd.connectors.netstock.answers import DatasetStatus, JsonLines, PopKind
from syncd.connectors.netstock.auth import TOKENS
from syncd.connectors.netstock.client import NetstockClient
from syncd.connectors.netstock.errors import ConflictError, OutcomeUnknownError, classify_failure
from syncd.connectors.netstock.fields import InvalidLineError
from syncd.connectors.netstock.settings import DEFAULT_MODEL_ENDPOINTS
from syncd.errors import (
    AlreadyDoneError,
    AuthError,
    ConfigError,
    PermanentError,
    RetryableError,
)
from syncd.jsontext import json_text
from syncd.sandbox.netstock import (
    DEFAULT_CLIENT_ID,
    DEFAULT_ENDPOINTS,
    DEFAULT_PASSWORD,
    DEFAULT_SCOPE,
    DEFAULT_USERNAME,
    FIELD_TYPES,
    KEY_FIELDS,
    SOFT_FAULT,
    TOKEN_PATH,
    ManualClock,
    NetstockSim,
)
from tests.contract.clientkit import ClientContract, Connect

START = 1_762_160_400.0  # 2025-11-03 09:00 UTC
TOKEN_ROUTE = f"POST {TOKEN_PATH}"
CLIENT_SECRET = "client-secret-7f3a9"


# --- fixtures and helpers ------------------------------------------------------------------


def make_client(
    sim: NetstockSim,
    clock: ManualClock,
    *,
    password: str = DEFAULT_PASSWORD,
    read_timeout: float = 2.0,
    attempts: int = 4,
    **options: Any,
) -> NetstockClient:
    """A client configured the way the daemon configures it, pointed at `sim`."""
    config = ConnectorConfig.model_validate(
        {
            "enabled": True,
            "base_url": sim.base_url,
            "username": DEFAULT_USERNAME,
            "password": password,
            "client_id": DEFAULT_CLIENT_ID,
            "options": {"scope": DEFAULT_SCOPE, **options},
            "retry": {"max_attempts": attempts, "initial_backoff": 0.01, "max_backoff": 0.05},
            "timeouts": {"read": read_timeout},
        }
    )
    return NetstockClient(config, clock=clock)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def sim(clock: ManualClock) -> Iterator[NetstockSim]:
    # retry_after=0: a 429 asks for no wait, so the client retries it inside its backoff cap.
    with NetstockSim(seed=5, clock=clock, expires_in=300, retry_after=0, slow_seconds=0.6) as s:
        yield s


@pytest.fixture
def client(sim: NetstockSim, clock: ManualClock) -> Iterator[NetstockClient]:
    with make_client(sim, clock) as netstock:
        yield netstock


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def rows(model: str, n: int, start: int = 0) -> list[dict[str, Any]]:
    """`n` lines carrying `model`'s key fields."""
    types = FIELD_TYPES.get(model, {})
    return [
        {
            name: i if types.get(name) == "integer" else f"{name.upper()}-{i:05d}"
            for name in KEY_FIELDS.get(model, ("item_code",))
        }
        for i in range(start, start + n)
    ]


def imported_dataset(client: NetstockClient, models: dict[str, int]) -> str:
    """A dataset with each model started, its lines sent and ended with the right count."""
    dataset_id = client.dataset_start()
    for model, n in models.items():
        client.model_start(dataset_id, model)
        sent = client.import_rows(dataset_id, model, rows(model, n))
        client.model_end(dataset_id, model, sent)
    return dataset_id


def statuses_until_terminal(
    client: NetstockClient, clock: ManualClock, dataset_id: str, step: float = 0.5
) -> list[DatasetStatus]:
    """Poll the status while moving the clock; the distinct statuses seen, in order."""
    seen: list[DatasetStatus] = []
    for _ in range(100):
        state = client.dataset_status(dataset_id)
        if not seen or seen[-1] is not state.status:
            seen.append(state.status)
        if state.is_terminal:
            return seen
        clock.advance(step)
    raise AssertionError(f"dataset never finished: {seen}")


# --- token ---------------------------------------------------------------------------------


def test_token_request_is_form_encoded_with_the_documented_fields(
    sim: NetstockSim, client: NetstockClient
) -> None:
    """The token is fetched form-encoded with exactly client_id, username, password, grant_type, scope."""
    client.dataset_start()
    (request,) = sim.state.token_requests
    assert request.content_type == "application/x-www-form-urlencoded"
    assert set(request.fields) == {"client_id", "username", "password", "grant_type", "scope"}
    assert (request.client_id, request.username, request.grant_type, request.scope) == (
        DEFAULT_CLIENT_ID,
        DEFAULT_USERNAME,
        "client_credentials",
        DEFAULT_SCOPE,
    )
    assert request.granted
    assert sim.requests[0].path == TOKEN_PATH
    grant = client.auth.grant
    assert grant is not None
    assert grant.expires_in == 300


def test_token_is_cached_across_calls(sim: NetstockSim, client: NetstockClient) -> None:
    """Many calls within the token's lifetime use one token request."""
    dataset_id = client.dataset_start()
    for _ in range(5):
        client.dataset_status(dataset_id)
    client.model_status(dataset_id)
    assert sim.count(TOKEN_ROUTE) == 1
    assert client.auth.fetches == 1


def test_token_is_renewed_before_it_expires(
    sim: NetstockSim, client: NetstockClient, clock: ManualClock
) -> None:
    """Within the renewal margin of expires_in a new token is fetched first, so no 401 happens."""
    dataset_id = client.dataset_start()
    clock.advance(300 - 60 - 1)  # just before the margin: still the same token
    client.dataset_status(dataset_id)
    assert sim.count(TOKEN_ROUTE) == 1
    clock.advance(2)  # inside the 60 s margin, before the sim would refuse it
    client.dataset_status(dataset_id)
    assert sim.count(TOKEN_ROUTE) == 2
    assert all(r.status != 401 for r in sim.requests)
    assert client.auth.refreshes == 0


def test_sim_refuses_an_expired_token_with_401(sim: NetstockSim, clock: ManualClock) -> None:
    """The simulator answers 401 in the envelope once expires_in has passed on its clock."""
    token = sim.issue_token()
    headers = {"Authorization": f"Bearer {token}"}
    params = {"customer_identifier": DEFAULT_USERNAME}
    with httpx.Client(base_url=sim.base_url, headers=headers, timeout=5) as http:
        assert http.get("/dataset/status_legend", params=params).status_code == 200
        clock.advance(300)
        answer = http.get("/dataset/status_legend", params=params)
    assert answer.status_code == 401
    assert answer.json() == {
        "api_call_status": False,
        "message": "Authorization error: token has expired",
        "data": {},
    }


def test_a_401_refreshes_the_token_once_and_retries(
    sim: NetstockSim, client: NetstockClient
) -> None:
    """A token the server stopped accepting is replaced once after the 401 and the call succeeds."""
    dataset_id = client.dataset_start()
    sim.revoke_tokens()
    assert client.dataset_status(dataset_id).status is DatasetStatus.DATASET_IMPORT_STARTED
    assert client.auth.refreshes == 1
    assert sim.count(TOKEN_ROUTE) == 2
    assert [r.status for r in sim.requests if r.path == "/dataset/status"] == [401, 200]


def test_a_second_401_after_the_refresh_is_an_auth_error(
    sim: NetstockSim, client: NetstockClient
) -> None:
    """If the call is refused again with the fresh token, AuthError is raised (one refresh only)."""
    dataset_id = client.dataset_start()
    sim.faults.script("GET /dataset/status", ["token_expired", "token_expired", "token_expired"])
    with pytest.raises(AuthError):
        client.dataset_status(dataset_id)
    assert client.auth.refreshes == 1
    assert sim.count("GET /dataset/status") == 2


def test_refused_credentials_are_an_auth_error_and_secrets_are_never_logged(
    sim: NetstockSim, clock: ManualClock
) -> None:
    """A wrong password is an AuthError; no password, client secret or token reaches a log or an error."""
    with capture_logs() as logs:
        with (
            make_client(sim, clock, password="wrong-password-123") as refused,
            pytest.raises(AuthError) as info,
        ):
            refused.dataset_start()
        config = ConnectorConfig.model_validate(
            {
                "enabled": True,
                "base_url": sim.base_url,
                "username": DEFAULT_USERNAME,
                "password": DEFAULT_PASSWORD,
                "client_id": DEFAULT_CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "options": {"scope": DEFAULT_SCOPE},
            }
        )
        with NetstockClient(config, clock=clock) as good:
            dataset_id = good.dataset_start()
            sim.revoke_tokens()
            good.dataset_status(dataset_id)
            tokens = list(sim.state.tokens)
            shown = repr(good) + repr(good.auth) + repr(good.auth.grant)
    assert info.value.code == "invalid_grant"
    assert sim.count(TOKEN_ROUTE) == 3  # the wrong password once (never twice), then good's two
    assert sim.state.token_requests[-1].fields[-1] == "client_secret"  # sent when configured
    text = json.dumps(logs, default=str) + str(info.value) + shown
    for secret in ("wrong-password-123", DEFAULT_PASSWORD, CLIENT_SECRET, *tokens):
        assert secret not in text


# --- the token across runs (each run builds its own client, as the jobs do) -----------------


def test_one_token_serves_many_runs_until_it_nears_expiry(
    sim: NetstockSim, clock: ManualClock
) -> None:
    """Twenty runs within the token's lifetime make one token request; past the renewal
    margin the next run fetches a second one, and the runs after it reuse that."""
    for _ in range(20):
        with make_client(sim, clock) as run:
            run.status_legend()
            clock.advance(5)  # 100 s in all: well inside 300 - 60
    assert sim.count(TOKEN_ROUTE) == 1
    clock.advance(300 - 60 - 100 + 1)  # inside the renewal margin
    for _ in range(5):
        with make_client(sim, clock) as run:
            run.status_legend()
    assert sim.count(TOKEN_ROUTE) == 2
    assert all(r.status != 401 for r in sim.requests)


def test_a_401_on_a_cached_token_renews_it_once_for_every_later_run(
    sim: NetstockSim, clock: ManualClock
) -> None:
    """A run whose cached token is refused renews it once and succeeds; later runs use the
    new token without another request."""
    with make_client(sim, clock) as first:
        first.status_legend()
    sim.revoke_tokens()
    with make_client(sim, clock) as second:
        assert second.status_legend()
        assert (second.auth.fetches, second.auth.refreshes) == (1, 1)
    for _ in range(5):
        with make_client(sim, clock) as later:
            later.status_legend()
            assert later.auth.fetches == 0
    assert sim.count(TOKEN_ROUTE) == 2
    assert [r.status for r in sim.requests if r.path == "/dataset/status_legend"] == [
        200,
        401,
        200,
        *[200] * 5,
    ]


def test_changed_credentials_never_reuse_the_cached_token(
    sim: NetstockSim, clock: ManualClock
) -> None:
    """A reload with another password, client secret, scope or token URL fetches its own
    token: a wrong new password fails although the old token is still valid."""
    with make_client(sim, clock) as before:
        before.status_legend()
    with (
        make_client(sim, clock, password="changed-password-1") as changed,
        pytest.raises(AuthError),
    ):
        changed.status_legend()
    assert sim.count(TOKEN_ROUTE) == 2  # the refused password is sent once, not again
    sim.client_secret = CLIENT_SECRET  # the identity server now wants a client secret
    config = ConnectorConfig.model_validate(
        {
            "enabled": True,
            "base_url": sim.base_url,
            "username": DEFAULT_USERNAME,
            "password": DEFAULT_PASSWORD,
            "client_id": DEFAULT_CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "options": {"scope": DEFAULT_SCOPE},
        }
    )
    with NetstockClient(config, clock=clock) as after:
        after.status_legend()
        assert after.auth.fetches == 1
    assert sim.state.token_requests[-1].fields[-1] == "client_secret"
    sim.client_secret, sim.scope = None, "other_scope"
    with make_client(sim, clock, scope="other_scope") as rescoped:
        rescoped.status_legend()
        assert rescoped.auth.fetches == 1
    assert sim.state.token_requests[-1].scope == "other_scope"
    with NetstockSim(seed=6, clock=clock, expires_in=300) as identity:
        moved = make_client(sim, clock, token_url=f"{identity.base_url}{TOKEN_PATH}")
        with moved:
            moved.token()
        assert identity.count(TOKEN_ROUTE) == 1
    assert sim.count(TOKEN_ROUTE) == 4


def test_the_token_cache_keeps_no_secret_and_judges_a_grant_by_its_own_clock(
    sim: NetstockSim, clock: ManualClock
) -> None:
    """The cache is keyed by a digest, never the password; a client on another clock
    cannot take a grant stamped by this one."""
    with make_client(sim, clock) as run:
        run.status_legend()
    shown = repr(TOKENS) + repr(list(TOKENS._entries))
    assert DEFAULT_PASSWORD not in shown
    assert all(t not in shown for t in sim.state.tokens)
    with make_client(sim, ManualClock(START)) as other:
        other.status_legend()
        assert other.auth.fetches == 1


# --- the envelope --------------------------------------------------------------------------


def test_envelope_false_with_http_200_is_an_error(
    sim: NetstockSim, clock: ManualClock, client: NetstockClient
) -> None:
    """api_call_status false is an error although HTTP says 200; a temporary one is retried."""
    dataset_id = client.dataset_start()
    sim.faults.script("GET /dataset/status", [SOFT_FAULT])
    assert client.dataset_status(dataset_id).status is DatasetStatus.DATASET_IMPORT_STARTED
    assert sim.count("GET /dataset/status") == 2
    with make_client(sim, clock, attempts=2) as impatient:
        sim.faults.script("GET /dataset/status", [SOFT_FAULT, SOFT_FAULT])
        with pytest.raises(RetryableError) as info:
            impatient.dataset_status(dataset_id)
    assert (info.value.status, info.value.code) == (200, "temporary")


@pytest.mark.parametrize(
    ("message", "status", "error", "code"),
    [
        ("A dataset import is already open for this user", 400, ConflictError, "already_open"),
        ("Model import po is already open for dataset import x", 400, ConflictError, "already_open"),
        ("Model import po has already been ended", 400, AlreadyDoneError, "already_done"),
        ("Dataset import x is already being processed", 400, AlreadyDoneError, "already_done"),
        ("Model import po failed: total 3 does not match the 4 lines", 400, PermanentError, "line_count_mismatch"),
        ("Dataset import x not found", 400, PermanentError, "not_found"),
        ("An error occurred: Invalid payload detected ...", 400, PermanentError, "invalid_payload"),
        ("Authorization error message", 200, AuthError, "auth"),
        ("Insufficient permissions", 200, AuthError, "auth"),
        ("An error occurred: temporary failure, please try again", 200, RetryableError, "temporary"),
        ("No purchase order available", 200, PermanentError, "empty"),
        ("Something odd", 200, RetryableError, "netstock_error"),
        ("Something odd", 400, PermanentError, "netstock_error"),
    ],
)  # fmt: skip
def test_failure_messages_map_to_error_classes(
    message: str, status: int, error: type[Exception], code: str
) -> None:
    """Each kind of api_call_status false message maps to one error class and code."""
    found = classify_failure(message, status=status)
    assert type(found) is error
    assert found.code == code


def test_a_body_that_is_not_json_never_crashes(
    sim: NetstockSim, client: NetstockClient, clock: ManualClock
) -> None:
    """A cut-off 200 is retried; an HTML error page is a classified error, not a crash."""
    dataset_id = client.dataset_start()
    sim.faults.script("GET /model/status", ["malformed"])
    assert client.model_status(dataset_id) == []
    assert sim.count("GET /model/status") == 2

    def html(request: httpx.Request) -> httpx.Response:
        if request.url.path == TOKEN_PATH:
            return httpx.Response(200, json={"access_token": "t", "expires_in": 60})
        return httpx.Response(400, text="<html><body>Bad Request</body></html>")

    config = ConnectorConfig.model_validate(
        {
            "enabled": True,
            "base_url": "http://127.0.0.1:9",
            "username": DEFAULT_USERNAME,
            "password": DEFAULT_PASSWORD,
            "client_id": DEFAULT_CLIENT_ID,
        }
    )
    with (
        NetstockClient(config, clock=clock, transport=httpx.MockTransport(html)) as proxied,
        pytest.raises(PermanentError) as info,
    ):
        proxied.dataset_start()
    assert (info.value.status, info.value.code) == (400, "http_400")


# --- one open dataset, one open model per type ---------------------------------------------


def test_one_open_dataset_per_user(
    sim: NetstockSim, client: NetstockClient, clock: ManualClock
) -> None:
    """A second dataset start while one is open is the documented error, naming the open one."""
    first = client.dataset_start()
    with pytest.raises(ConflictError) as info:
        client.dataset_start()
    assert info.value.code == "already_open"
    assert info.value.dataset_import_id == first
    assert sim.stats["dataset_conflicts"] == 1
    assert len(sim.datasets()) == 1
    client.model_start(first, "locations")
    client.import_rows(first, "locations", rows("locations", 3))
    client.model_end(first, "locations", 3)
    client.start_processing(first)
    with pytest.raises(ConflictError):
        client.dataset_start()  # processing: still open
    statuses_until_terminal(client, clock, first)
    assert client.dataset_start() != first  # complete: a new one may start


def test_one_open_model_per_type(sim: NetstockSim, client: NetstockClient) -> None:
    """A model type cannot be opened twice at once; other types can, and an ended type reopens."""
    dataset_id = client.dataset_start()
    client.model_start(dataset_id, "po")
    client.model_start(dataset_id, "co")
    with pytest.raises(ConflictError) as info:
        client.model_start(dataset_id, "po")
    assert info.value.code == "already_open"
    assert {m.model for m in client.model_status(dataset_id) if m.is_open} == {"po", "co"}
    client.import_rows(dataset_id, "po", rows("po", 2))
    client.model_end(dataset_id, "po", 2)
    client.model_start(dataset_id, "po")  # a new import of the same type
    assert [m.model for m in sim.model_imports(dataset_id)] == ["po", "co", "po"]
    assert sim.stats["model_conflicts"] == 1


# --- chunked import and line counts --------------------------------------------------------


def test_chunked_import_and_model_end_with_the_right_count(
    sim: NetstockSim, client: NetstockClient
) -> None:
    """Rows stream in chunks to the model's endpoint and model end with their count is accepted."""
    dataset_id = client.dataset_start()
    client.model_start(dataset_id, "stocks")
    progress: list[tuple[int, int]] = []
    stream = (
        {
            "item_code": f"I{i}",
            "location": "WH1",
            "stock_on_hand": 3 * i,
            "inventory_unit_cost": Decimal("1.5") * i,
        }
        for i in range(2500)
    )
    sent = client.import_rows(
        dataset_id, "stocks", stream, chunk_size=1000, on_chunk=lambda n, t: progress.append((n, t))
    )
    assert sent == 2500
    assert progress == [(1000, 1000), (1000, 2000), (500, 2500)]
    assert sim.count("POST /import/stock_by_location") == 3
    assert sim.lines(dataset_id, "stocks") == 2500
    assert sim.rows(dataset_id, "stocks")[3]["stock_on_hand"] == 9
    assert sim.rows(dataset_id, "stocks")[3]["inventory_unit_cost"] == 4.5
    client.model_end(dataset_id, "stocks", sent)
    (model,) = client.model_status(dataset_id)
    assert (model.model, model.actual_lines_imported, model.minimum_expected_lines) == (
        "stocks",
        2500,
        2500,
    )
    assert model.marked_to_end
    assert model.success is True
    with pytest.raises(AlreadyDoneError):
        client.model_end(dataset_id, "stocks", sent)  # a replay after a crash: done
    with pytest.raises(PermanentError) as info:
        client.import_chunk(dataset_id, "stocks", rows("stocks", 1))
    assert info.value.code == "not_open"
    assert client.dataset_status(dataset_id).status is DatasetStatus.IMPORTING_COMPLETE


def test_import_lines_go_on_the_wire_as_rendered_with_exact_decimals(
    sim: NetstockSim, client: NetstockClient
) -> None:
    """Mappings are rendered once (`json_text`: exact decimals); `JsonLines` go as they are,
    the body built around their text."""
    bodies: list[tuple[str, bytes]] = []
    client.http.client.event_hooks["request"].append(
        lambda request: bodies.append((request.headers["content-type"], request.read()))
    )
    dataset_id = client.dataset_start()
    client.model_start(dataset_id, "stocks")
    exact = Decimal("0.1234567890123456789")  # more digits than a float holds
    sent = client.import_chunk(
        dataset_id,
        "stocks",
        [
            {"location": "W", "item_code": "I1", "inventory_unit_cost": exact},
            {"location": "W", "item_code": "I2", "inventory_unit_cost": Decimal("2.50")},
        ],
    )
    line = '{"item_code":"I3","location":"W","stock_on_hand":7}'
    assert client.import_chunk(dataset_id, "stocks", JsonLines(line, 1)) == 1
    assert sent == 2
    ids = f'{{"customer_identifier":"{DEFAULT_USERNAME}","dataset_import_id":"{dataset_id}"'
    assert bodies[-2:] == [
        (
            "application/json",
            (
                f'{ids},"data":[{{"inventory_unit_cost":{exact},"item_code":"I1","location":"W"}},'
                '{"inventory_unit_cost":2.5,"item_code":"I2","location":"W"}]}'
            ).encode(),
        ),
        ("application/json", f'{ids},"data":[{line}]}}'.encode()),
    ]
    assert sim.lines(dataset_id, "stocks") == 3


def test_sim_count_lag_shows_lines_late_and_never_when_infinite(
    sim: NetstockSim, client: NetstockClient, clock: ManualClock
) -> None:
    sim.lag_counts(30)
    dataset_id = client.dataset_start()
    client.model_start(dataset_id, "master")
    client.import_chunk(dataset_id, "master", rows("master", 3))
    clock.advance(20)
    client.import_chunk(dataset_id, "master", rows("master", 2, start=3))

    def counted(model_name: str) -> int:
        found = {m.model: m for m in client.model_status(dataset_id)}
        return found[model_name].actual_lines_imported

    assert counted("master") == 0
    clock.advance(10)
    assert counted("master") == 3  # the first post, 30 s after it arrived
    assert client.dataset_status(dataset_id).models[0].actual_lines_imported == 3
    client.model_end(dataset_id, "master", 5)  # every line arrived: the end is accepted
    clock.advance(20)
    assert counted("master") == 5

    sim.lag_counts(float("inf"))  # never counted: the lines are lost in the import
    client.model_start(dataset_id, "locations")
    client.import_chunk(dataset_id, "locations", rows("locations", 2))
    clock.advance(3600)
    assert counted("locations") == 0
    client.model_end(dataset_id, "locations", 2)  # 202: the document's failure comes later
    assert not client.dataset_status(dataset_id).is_terminal
    clock.advance(sim.end_timeout)
    assert sim.dataset(dataset_id).success is False


@pytest.mark.parametrize("mode", ["deferred", "immediate"])
def test_model_end_with_a_wrong_count_fails_the_model_and_the_dataset(
    clock: ManualClock, mode: str
) -> None:
    """A total_lines_imported that differs from the lines received fails the model and the
    dataset: after the timeout period with the document's 202 (deferred), or as a 400."""
    with (
        NetstockSim(seed=5, clock=clock, model_end=mode, end_timeout=45) as sim,
        make_client(sim, clock) as client,
    ):
        check_a_wrong_count(sim, client, clock, mode)


def check_a_wrong_count(
    sim: NetstockSim, client: NetstockClient, clock: ManualClock, mode: str
) -> None:
    dataset_id = client.dataset_start()
    client.model_start(dataset_id, "master")
    client.import_rows(dataset_id, "master", rows("master", 7))
    if mode == "immediate":
        with pytest.raises(PermanentError) as info:
            client.model_end(dataset_id, "master", 8)
        assert info.value.code == "line_count_mismatch"
    else:
        client.model_end(dataset_id, "master", 8)  # 202
        (model,) = client.model_status(dataset_id)
        assert (model.marked_to_end, model.success, model.minimum_expected_lines) == (
            True,
            None,
            8,
        )
        assert client.dataset_status(dataset_id).status is DatasetStatus.IMPORTING
        assert "processing started" in client.start_processing(dataset_id)  # waits (flow 2)
        clock.advance(44)
        assert not client.dataset_status(dataset_id).is_terminal
        clock.advance(1)
    (model,) = client.model_status(dataset_id)
    assert (model.success, model.actual_lines_imported, model.minimum_expected_lines) == (
        False,
        7,
        8,
    )
    state = client.dataset_status(dataset_id)
    assert state.is_terminal
    assert state.is_failure
    assert "total_lines_imported 8" in state.message
    assert any(e.log_type == "error" for e in client.audit_log(dataset_id))
    with pytest.raises(PermanentError) as processing:
        client.start_processing(dataset_id)
    assert processing.value.code == "dataset_failed"
    assert client.dataset_start() != dataset_id  # the failed one no longer blocks


# --- status walk and failures --------------------------------------------------------------


def test_status_walks_to_complete(
    sim: NetstockSim, client: NetstockClient, clock: ManualClock
) -> None:
    """After start_processing the status goes Importing -> Importing_complete -> Transforming -> Copying_po_db -> Complete."""
    dataset_id = client.dataset_start()
    assert client.dataset_status(dataset_id).status is DatasetStatus.DATASET_IMPORT_STARTED
    client.model_start(dataset_id, "locations")
    assert client.dataset_status(dataset_id).status is DatasetStatus.IMPORTING
    with pytest.raises(PermanentError) as early:
        client.start_processing(dataset_id)
    assert early.value.code == "models_open"
    client.import_rows(dataset_id, "locations", rows("locations", 4))
    client.model_end(dataset_id, "locations", 4)
    assert client.dataset_status(dataset_id).status is DatasetStatus.IMPORTING_COMPLETE
    assert "processing started" in client.start_processing(dataset_id)
    with pytest.raises(AlreadyDoneError):
        client.start_processing(dataset_id)  # a replay while it runs
    seen = statuses_until_terminal(client, clock, dataset_id)
    assert seen == [
        DatasetStatus.IMPORTING,
        DatasetStatus.IMPORTING_COMPLETE,
        DatasetStatus.TRANSFORMING,
        DatasetStatus.COPYING_PO_DB,
        DatasetStatus.COMPLETE,
    ]
    final = client.dataset_status(dataset_id)
    assert final.is_success
    assert not final.is_failure
    assert [m.model for m in final.models] == ["locations"]
    legend = [e.status for e in client.status_legend()]
    assert [DatasetStatus.parse(s) for s in legend][-1] is DatasetStatus.COMPLETE
    assert DatasetStatus.UNKNOWN not in {DatasetStatus.parse(s) for s in legend}


def test_processing_failure_is_reported_with_an_audit_log(
    sim: NetstockSim, client: NetstockClient, clock: ManualClock
) -> None:
    """A failure injected during Transforming ends Complete with success false and error logs."""
    sim.fail_processing("Transforming", "Transform script failed: 3 items without a uom")
    dataset_id = imported_dataset(client, {"master": 5, "stocks": 5})
    client.start_processing(dataset_id)
    seen = statuses_until_terminal(client, clock, dataset_id)
    assert DatasetStatus.COPYING_PO_DB not in seen
    state = client.dataset_status(dataset_id)
    assert (state.status, state.success) == (DatasetStatus.COMPLETE, False)
    assert state.is_failure
    assert "3 items without a uom" in state.message
    logs = client.audit_log(dataset_id)
    errors = [e.message for e in logs if e.log_type == "error"]
    assert "Transform script failed: 3 items without a uom" in errors
    assert any("Transforming" in e.message for e in logs)
    assert sim.queued("po") == []  # a failed run generates no orders


# --- pops: destructive reads, exact quantities ---------------------------------------------


def test_pops_remove_what_they_return(sim: NetstockSim, client: NetstockClient) -> None:
    """Each pop returns the oldest file and removes it; an empty queue answers None."""
    first = sim.add_file("po", [{"item_code": "A", "quantity": "1"}])
    second = sim.add_file("po", [{"item_code": "B", "quantity": "2"}, {"item_code": "C"}])
    popped = client.pop_po()
    assert popped is not None
    assert (popped.file_name, [line.item_code for line in popped.lines]) == (first, ["A"])
    assert [f.file_name for f in sim.queued("po")] == [second]
    again = client.pop(PopKind.PO)
    assert again is not None
    assert (again.file_name, len(again.lines)) == (second, 2)
    assert client.pop_po() is None
    assert [p.file.file_name for p in sim.popped("po")] == [first, second]
    assert sim.queued("po") == []


def test_pop_quantities_as_strings_or_numbers_parse_to_exact_decimals(
    sim: NetstockSim, client: NetstockClient
) -> None:
    """PO quantities (strings) and TR/WO quantities (numbers) both parse to the exact Decimal."""
    sim.add_file("po", [{"item_code": "P", "quantity": "99", "unit_cost": "3.0"}])
    sim.add_file("tr", [{"item_code": "T", "quantity": "2.675", "unit_cost": "0.1"}])
    sim.add_file("wo", [{"item_code": "W", "quantity": "5.0", "minimum_quantity": "2.0"}])
    journal: list[str] = []
    po = client.pop_po(journal=journal.append)
    tr = client.pop_tr(journal=journal.append)
    wo = client.pop_wo(journal=journal.append)
    assert po is not None
    assert tr is not None
    assert wo is not None
    assert journal == [po.raw, tr.raw, wo.raw]
    assert '"quantity":"99"' in po.raw
    assert '"quantity":2.675' in tr.raw
    assert '"quantity":5.0' in wo.raw
    assert (po.lines[0].quantity, po.lines[0].unit_cost) == (Decimal("99"), Decimal("3.0"))
    assert str(tr.lines[0].quantity) == "2.675"  # not 2.67499999... from a float
    assert str(tr.lines[0].unit_cost) == "0.1"
    assert (wo.lines[0].quantity, wo.lines[0].minimum_quantity) == (Decimal(5), Decimal(2))
    assert po.lines[0].order_date is not None
    assert tr.lines[0].transfer_from_code == "CENTRAL"


def test_pop_journal_receives_the_raw_answer_before_parsing(
    sim: NetstockSim, client: NetstockClient
) -> None:
    """A popped line that cannot be parsed still reaches the journal and the error keeps the raw text."""
    sim.add_file("wo", [{"item_code": "W", "quantity": "lots"}])
    journal: list[str] = []
    with pytest.raises(PermanentError) as info:
        client.pop_wo(journal=journal.append)
    assert info.value.code == "malformed_pop"
    assert len(journal) == 1
    assert '"quantity":"lots"' in journal[0]
    assert info.value.details == {"raw": journal[0]}
    assert sim.queued("wo") == []  # it is gone from the server: the journal is all there is


def test_a_pop_is_retried_only_when_nothing_was_popped(
    sim: NetstockSim, client: NetstockClient
) -> None:
    """A 429/503 pop is retried; a dropped answer is not (the file is gone) and says so."""
    sim.generate("po", files=2)
    sim.faults.script("POST /file/pop_po", ["429", "503"])
    assert client.pop_po() is not None
    assert sim.count("POST /file/pop_po") == 3
    sim.faults.script("POST /file/pop_po", ["drop"])
    with pytest.raises(OutcomeUnknownError) as info:
        client.pop_po()
    assert info.value.code == "outcome_unknown"
    assert sim.count("POST /file/pop_po") == 4  # not retried: a retry would pop the next file
    assert len(sim.popped("po")) == 2
    assert sim.queued("po") == []


# --- model -> endpoint map -----------------------------------------------------------------


def test_default_model_endpoints_reach_the_simulator(
    sim: NetstockSim, client: NetstockClient
) -> None:
    """Every documented model (and a ut_ custom one) imports through its default endpoint."""
    assert client.endpoint_for("stocks") == "/import/stock_by_location"
    assert client.endpoint_for("pohist") == "/import/po_hist"
    assert client.endpoint_for("suppersessions") == "/import/suppressions"
    assert client.endpoint_for("master") == "/import/master"
    assert client.endpoint_for("transfers") == "/import/transfers"
    assert client.endpoint_for("ut_abc") == "/import/ut_abc"
    with pytest.raises(ValueError, match="unknown Netstock model"):
        client.endpoint_for("stock_by_location")
    for model, endpoint in DEFAULT_MODEL_ENDPOINTS.items():
        assert DEFAULT_ENDPOINTS[endpoint] == model
    dataset_id = imported_dataset(client, dict.fromkeys(DEFAULT_MODEL_ENDPOINTS, 2))
    client.model_start(dataset_id, "ut_abc")
    client.import_chunk(dataset_id, "ut_abc", [{"anything": 1}], file_name="abc.csv")
    client.model_end(dataset_id, "ut_abc", 1)
    assert all(m.success for m in client.model_status(dataset_id))
    assert sim.lines(dataset_id, "ut_abc") == 1


def test_model_endpoint_overrides_from_options(sim: NetstockSim, clock: ManualClock) -> None:
    """options.model_endpoints replaces a default endpoint; a bad entry is a config error."""
    with NetstockSim(seed=1, clock=clock, endpoints={"item_master": "master"}) as moved:
        with make_client(moved, clock) as defaults:
            dataset_id = defaults.dataset_start()
            defaults.model_start(dataset_id, "master")
            with pytest.raises(PermanentError) as info:
                defaults.import_chunk(dataset_id, "master", rows("master", 1))
            assert info.value.status == 404
        overrides = {"master": "/import/item_master", "ut_sales": "sales_extra"}
        with make_client(moved, clock, model_endpoints=overrides) as mapped:
            assert mapped.endpoint_for("ut_sales") == "/import/sales_extra"
            mapped.import_chunk(dataset_id, "master", rows("master", 3))
            mapped.model_end(dataset_id, "master", 3)
        assert moved.lines(dataset_id, "master") == 3
    with pytest.raises(ConfigError) as bad:
        make_client(sim, clock, model_endpoints={"master": "import/has space"})
    assert any("model_endpoints.master" in p for p in bad.value.problems)


# --- faults --------------------------------------------------------------------------------


def test_common_faults_are_retried(
    sim: NetstockSim, client: NetstockClient, clock: ManualClock
) -> None:
    """429, 5xx, slow, dropped and cut-off reads are retried; a chunk refused by 429/503/false is resent and lands once."""
    dataset_id = client.dataset_start()
    sim.faults.script("GET /model/status", ["429", "500", "malformed"])
    assert client.model_status(dataset_id) == []
    assert sim.count("GET /model/status") == 4
    with make_client(sim, clock, read_timeout=0.3) as hasty:
        sim.faults.script("GET /dataset/status", ["slow", "drop"])
        assert hasty.dataset_status(dataset_id).status is DatasetStatus.DATASET_IMPORT_STARTED
        assert sim.faults.remaining("GET /dataset/status") == []
    sim.faults.script(TOKEN_ROUTE, ["503"])
    sim.revoke_tokens()
    client.model_start(dataset_id, "sales")  # 401, token endpoint 503 then a token, retried
    client.auth.invalidate()
    sim.faults.script("POST /import/sales", ["429", "503", SOFT_FAULT])
    client.import_chunk(dataset_id, "sales", rows("sales", 10))
    assert sim.lines(dataset_id, "sales") == 10
    client.model_end(dataset_id, "sales", 10)


def test_an_ambiguous_import_failure_is_not_retried(sim: NetstockSim, clock: ManualClock) -> None:
    """A chunk whose answer is lost raises OutcomeUnknownError instead of being sent twice."""
    with make_client(sim, clock, read_timeout=0.3) as client:
        dataset_id = client.dataset_start()
        client.model_start(dataset_id, "po")
        sim.faults.script("POST /import/po", ["slow"])
        with pytest.raises(OutcomeUnknownError) as info:
            client.import_chunk(dataset_id, "po", rows("po", 5))
        assert info.value.details["cause"] == "timeout"
        wait_until(lambda: sim.count("POST /import/po") == 1)  # the slow handler finishes
        time.sleep(0.2)
        assert sim.count("POST /import/po") == 1
        (model,) = client.model_status(dataset_id)
        assert model.actual_lines_imported == 5  # it landed: the job must not resend it
        client.model_end(dataset_id, "po", 5)


def test_success_false_is_final_only_at_a_terminal_status(clock: ManualClock) -> None:
    """`success: false` while Importing/Transforming is not terminal; Complete decides."""
    with (
        NetstockSim(seed=2, clock=clock, unfinished_success=False) as sim,
        make_client(sim, clock) as client,
    ):
        dataset_id = imported_dataset(client, {"master": 2})
        early = client.dataset_status(dataset_id)
        assert (early.status, early.success) == (DatasetStatus.IMPORTING_COMPLETE, False)
        assert not early.is_terminal
        assert not early.is_failure
        client.start_processing(dataset_id)
        seen = statuses_until_terminal(client, clock, dataset_id)
        assert seen[-2:] == [DatasetStatus.COPYING_PO_DB, DatasetStatus.COMPLETE]
        assert client.dataset_status(dataset_id).is_success


# --- field types ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "field", "value"),
    [
        ("stocks", "stock_on_hand", "2.5"),
        ("stocks", "allocated_stock", '"abc"'),
        ("po", "order_quantity", "1.7"),
        ("po", "outstanding_quantity", '"3"'),
        ("pohist", "quantity_received", "true"),
        ("suppliers", "lead_time", "0.5"),
        ("master", "unit_weight", '"heavy"'),
        ("locations", "active", '"yes"'),
    ],
)
def test_sim_refuses_a_value_the_document_types_otherwise(
    sim: NetstockSim, client: NetstockClient, model: str, field: str, value: str
) -> None:
    """The simulator checks each line against the document's field types: the whole post is
    a 400 naming the line and field, nothing is counted."""
    dataset_id = client.dataset_start()
    client.model_start(dataset_id, model)
    [good] = rows(model, 1)
    line = json_text(good)[:-1] + f',"{field}":{value}}}'
    with pytest.raises(PermanentError) as info:
        client.import_chunk(dataset_id, model, JsonLines(f"{json_text(good)},{line}", 2))
    assert info.value.code == "invalid_payload"
    assert f"data[1].{field} must be" in info.value.message
    assert sim.lines(dataset_id, model) == 0
    assert sim.stats["type_refusals"] == 1


def test_sim_takes_whole_numbers_in_integer_fields_and_null_anywhere(
    sim: NetstockSim, client: NetstockClient
) -> None:
    dataset_id = client.dataset_start()
    client.model_start(dataset_id, "stocks")
    lines = [
        '{"item_code":"A","location":"W","stock_on_hand":5,"allocated_stock":null}',
        '{"item_code":"B","location":"W","stock_on_hand":5.0,"selling_price":2.5}',
    ]
    assert client.import_chunk(dataset_id, "stocks", JsonLines(",".join(lines), 2)) == 2
    assert sim.lines(dataset_id, "stocks") == 2


def test_client_refuses_lines_of_the_wrong_type_before_sending(
    sim: NetstockSim, client: NetstockClient
) -> None:
    """Mappings are checked against the document's types; each bad line and field is named."""
    dataset_id = client.dataset_start()
    client.model_start(dataset_id, "po")
    bad = [
        {"item_code": "A", "order_number": "1", "order_quantity": Decimal("2.5")},
        {"item_code": "B", "order_number": "2", "order_quantity": 4, "line_number": "1"},
        {"item_code": "C", "order_number": "3", "outstanding_quantity": "abc"},
        {"item_code": "D", "order_number": "4", "order_quantity": 1.7},
    ]
    posts = sim.count("POST /import/po")
    with pytest.raises(InvalidLineError) as info:
        client.import_chunk(dataset_id, "po", bad)
    assert info.value.problems == [
        "data[0].order_quantity: 2.5 is not a whole number (the document types it integer)",
        "data[2].outstanding_quantity: 'abc' is not an integer (the document types it integer)",
        "data[3].order_quantity: 1.7 is not a whole number (the document types it integer)",
    ]
    assert sim.count("POST /import/po") == posts  # nothing was sent
    whole = [{**row, "order_quantity": Decimal("4.0")} for row in bad[:2]]
    assert client.import_chunk(dataset_id, "po", whole) == 2
    assert [r["order_quantity"] for r in sim.rows(dataset_id, "po")] == [4, 4]
    with pytest.raises(InvalidLineError):
        client.import_chunk(dataset_id, "sales", [{"item_code": "A", "location": "W",
                                                   "issues_quantity": Decimal("0.5")}])  # fmt: skip


# --- the endpoint map in use ---------------------------------------------------------------


def test_the_sim_on_the_documents_literal_urls_takes_only_that_map(clock: ManualClock) -> None:
    """Switched to the URLs as printed, the simulator has no /import/master or
    /import/transfers: the default (corrected) map fails there with a 404, and the
    `endpoint_map = "document"` option or a `model_endpoints` override reaches it."""
    with NetstockSim(seed=3, clock=clock, endpoints="document") as literal:
        with make_client(literal, clock) as guessed:
            dataset_id = guessed.dataset_start()
            guessed.model_start(dataset_id, "master")
            with pytest.raises(PermanentError) as info:
                guessed.import_chunk(dataset_id, "master", rows("master", 1))
            assert (info.value.status, info.value.code) == (404, "not_found")
            assert literal.lines(dataset_id, "master") == 0
        with make_client(literal, clock, endpoint_map="document") as printed:
            assert printed.endpoint_for("master") == "/import/suppliers"
            assert printed.endpoint_for("transfers") == "/import/co"
            for model in ("master", "suppliers", "transfers", "co"):
                if model != "master":
                    printed.model_start(dataset_id, model)
                printed.import_chunk(dataset_id, model, rows(model, 2))
                printed.model_end(dataset_id, model, 2)
        overrides = {"master": "/import/suppliers", "transfers": "co"}
        with make_client(literal, clock, model_endpoints=overrides) as mapped:
            mapped.model_start(dataset_id, "transfers")
            mapped.import_chunk(dataset_id, "transfers", rows("transfers", 3))
            mapped.model_end(dataset_id, "transfers", 3)
        imports = [(m.model, m.lines_received) for m in literal.model_imports(dataset_id)]
        assert imports == [
            ("master", 2), ("suppliers", 2), ("transfers", 2), ("co", 2), ("transfers", 3)
        ]  # fmt: skip
        assert literal.count("POST /import/master") == 1  # the 404 only


def test_check_config_names_the_endpoint_map_and_its_unverified_entries(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from syncd.cli import main

    def check(options: str, *args: str) -> Any:
        path = tmp_path / "syncd.toml"
        path.write_text(
            f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n'
            "[connectors.netstock]\nenabled = true\n"
            'base_url = "https://netstock.example"\nusername = "C1"\npassword = "pw-secret-1"\n'
            f'client_id = "cid"\n[connectors.netstock.options]\n{options}\n'
        )
        return CliRunner().invoke(main, ["check-config", "--config", str(path), *args])

    default = check("")
    assert default.exit_code == 0, default.output
    assert "netstock model -> endpoint map: 'corrected'" in default.stdout
    master = next(line for line in default.stdout.splitlines() if "master ->" in line)
    assert "/import/master (corrected) UNVERIFIED" in master
    assert "prints /import/suppliers" in master
    assert "transfers -> /import/transfers (corrected) UNVERIFIED" in default.stdout
    assert "stocks -> /import/stock_by_location (document)\n" in default.stdout
    printed = check('endpoint_map = "document"')
    assert "map: 'document'" in printed.stdout
    assert "master -> /import/suppliers (document)" in printed.stdout
    assert "UNVERIFIED" not in printed.stdout
    override = check('model_endpoints = { master = "item_master" }')
    assert "master -> /import/item_master (override)" in override.stdout
    as_json = check("", "--json")
    assert json.loads(as_json.stdout)["connectors"]["netstock"]["enabled"] is True
    assert "UNVERIFIED" in as_json.stderr
    bad = check('endpoint_map = "guess"')
    assert bad.exit_code == 78
    assert "connectors.netstock.options.endpoint_map" in bad.stderr


# --- what every client does ----------------------------------------------------------------


class TestNetstockClientContract(ClientContract):
    """The Netstock client against `NetstockSim` meets the cases every client meets."""

    ROUTE = "GET /dataset/status_legend"
    # The token endpoint refuses a password with 400 invalid_grant (RFC 6749 5.2); the
    # client gives up with AuthError at once (sending the refused password again is pointless
    # and, on identity servers that lock accounts, harmful). The class default applies: 1.
    REFUSED_STATUS = 400

    @pytest.fixture
    def connect(self, sim: NetstockSim, clock: ManualClock) -> Connect:
        return lambda refused=False: make_client(
            sim, clock, password="wrong-password-123" if refused else DEFAULT_PASSWORD
        )

    def call(self, client: NetstockClient) -> object:
        return client.status_legend()
