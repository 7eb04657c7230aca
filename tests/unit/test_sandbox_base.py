"""The simulator base: routing, fault injection, request log, keep-alive and lifecycle."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from syncd.sandbox.base import ApiError, FaultInjector, Request, Response, SandboxServer

TOKEN = "token-1"


class App:
    """A tiny simulator used to exercise the base; counts side effects of POST /v1/things."""

    def __init__(self) -> None:
        self.created = 0
        self.server = SandboxServer(
            token=TOKEN,
            authenticate=self._auth,
            correlation_headers=("X-Correlation-ID",),
            request_id_headers=("X-Request-ID", "X-Response-ID"),
            slow_seconds=0.5,
            retry_after=7,
        )
        add = self.server.add_route
        add("GET", "/v1/items/{item_id}", lambda r: Response.of_json({"param": r.params}))
        add("GET", "/v1/items/special", lambda r: Response.of_json({"literal": True}))
        add("POST", "/v1/echo", lambda r: Response.of_json({"json": r.json, "raw": len(r.body)}))
        add("POST", "/v1/things", self._create)
        add("GET", "/v1/big", lambda r: Response.of_json({"blob": "x" * 10_000}))
        add("GET", "/v1/public", lambda r: Response.of_json("open"), public=True)
        add("GET", "/v1/teapot", self._teapot)
        add("GET", "/v1/boom", self._boom)

    def _auth(self, request: Request) -> bool:
        return request.header("Authorization") == f"Bearer {self.server.token}"

    def _create(self, request: Request) -> Response:
        self.created += 1
        return Response.of_json({"created": self.created}, 201)

    @staticmethod
    def _teapot(request: Request) -> Response:
        raise ApiError(418, "teapot", "I am a teapot.")

    @staticmethod
    def _boom(request: Request) -> Response:
        raise RuntimeError("handler bug")


@pytest.fixture
def app() -> Iterator[App]:
    application = App()
    with application.server:
        yield application


@pytest.fixture
def client(app: App) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=app.server.url, headers=headers, timeout=5) as http:
        yield http


def test_literal_route_beats_parameter(client: httpx.Client) -> None:
    """A literal segment wins over a {param} segment whatever the registration order."""
    assert client.get("/v1/items/special").json() == {"literal": True}
    assert client.get("/v1/items/other").json() == {"param": {"item_id": "other"}}


def test_path_params_are_url_decoded(client: httpx.Client) -> None:
    """Path parameters reach handlers decoded, so ids with reserved characters round-trip."""
    assert client.get("/v1/items/a%2Bb%20c").json() == {"param": {"item_id": "a+b c"}}


def test_unknown_path_is_404_and_wrong_method_is_405(client: httpx.Client) -> None:
    """Unrouted requests get error bodies in the configured shape, not a stdlib HTML page."""
    missing = client.get("/v1/nothing")
    assert missing.status_code == 404
    assert missing.json()["code"] == "resource_not_found"
    assert client.delete("/v1/echo").status_code == 405


def test_invalid_json_body_is_400(app: App, client: httpx.Client) -> None:
    """A body that is not JSON is answered 400 before any handler runs."""
    response = client.post(
        "/v1/things", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["code"] == "bad_request"
    assert app.created == 0


def test_json_and_chunked_bodies_reach_the_handler(client: httpx.Client) -> None:
    """Handlers get the decoded JSON, whether sent with Content-Length or chunked."""
    assert client.post("/v1/echo", json={"a": 1}).json()["json"] == {"a": 1}
    chunks = iter([b'{"b":', b" [1, 2]}"])
    chunked = client.post("/v1/echo", content=chunks, headers={"Content-Type": "application/json"})
    assert chunked.json() == {"json": {"b": [1, 2]}, "raw": 13}


def test_handler_errors_map_to_error_bodies(app: App, client: httpx.Client) -> None:
    """ApiError keeps its status and code; an unexpected exception is a 500 and is kept."""
    teapot = client.get("/v1/teapot")
    assert (teapot.status_code, teapot.json()["code"]) == (418, "teapot")
    boom = client.get("/v1/boom")
    assert (boom.status_code, boom.json()["code"]) == (500, "internal_server_error")
    assert "handler bug" in app.server.errors[-1]


def test_authentication_applies_except_on_public_routes(app: App) -> None:
    """Without the token a protected route is 401 while a public route still answers."""
    with httpx.Client(base_url=app.server.url) as anonymous:
        assert anonymous.get("/v1/items/x").status_code == 401
        assert anonymous.get("/v1/public").status_code == 200


def test_keep_alive_reuses_one_connection(app: App, client: httpx.Client) -> None:
    """Requests from one client share one HTTP/1.1 connection (one client port server-side)."""
    for _ in range(5):
        response = client.get("/v1/items/x")
        assert response.http_version == "HTTP/1.1"
    assert len({record.client_port for record in app.server.requests}) == 1


def test_request_id_headers_carry_one_value(client: httpx.Client) -> None:
    """Every configured request-id header is sent with the same generated value."""
    response = client.get("/v1/items/x")
    assert response.headers["X-Request-ID"] == response.headers["X-Response-ID"] != ""


def test_script_is_consumed_one_request_at_a_time(app: App, client: httpx.Client) -> None:
    """A scripted route answers each queued fault once, 'ok' passes, then it is healthy."""
    app.server.faults.script("GET /v1/items/{item_id}", ["429", "503", "ok", "500"])
    statuses = [client.get("/v1/items/x").status_code for _ in range(5)]
    assert statuses == [429, 503, 200, 500, 200]
    assert app.server.faults.remaining("GET /v1/items/{item_id}") == []


def test_429_carries_retry_after(app: App, client: httpx.Client) -> None:
    """A 429 fault says how long to wait in Retry-After (whole seconds, configurable)."""
    app.server.faults.script("*", ["429"])
    response = client.get("/v1/items/x")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"


def test_fault_lookup_prefers_concrete_then_pattern_then_star() -> None:
    """The most specific route key with a queued fault decides; the others keep theirs."""
    faults = FaultInjector()
    faults.script("*", ["500"])
    faults.script("GET /v1/items/{item_id}", ["503"])
    faults.script("get /v1/items/a", ["429"])
    keys = ("GET /v1/items/a", "GET /v1/items/{item_id}", "*")
    assert [faults.pick(keys) for _ in range(4)] == ["429", "503", "500", None]
    assert faults.fired == {"429": 1, "503": 1, "500": 1}


def test_rates_are_reproducible_for_a_seed() -> None:
    """Two injectors with one seed fire identically; p=1 always fires and p=0 removes."""
    first, second = FaultInjector(seed=42), FaultInjector(seed=42)
    for faults in (first, second):
        faults.rate("GET /x", "503", 0.3)
    picks = [first.pick(["GET /x"]) for _ in range(200)]
    assert picks == [second.pick(["GET /x"]) for _ in range(200)]
    assert 30 < picks.count("503") < 90
    first.rate("GET /x", "503", 1.0)
    assert first.pick(["GET /x"]) == "503"
    first.rate("GET /x", "503", 0.0)
    assert first.pick(["GET /x"]) is None


def test_bad_fault_configuration_is_refused() -> None:
    """Typos in fault kinds, probabilities or route keys fail loudly instead of never firing."""
    faults = FaultInjector()
    with pytest.raises(ValueError, match="unknown fault"):
        faults.script("*", ["504"])
    with pytest.raises(ValueError, match="probability"):
        faults.rate("*", "500", 1.5)
    with pytest.raises(ValueError, match="route key"):
        faults.rate("/v1/items", "500", 0.5)


def test_clear_removes_scripts_and_rates(app: App, client: httpx.Client) -> None:
    """After clear() every route answers normally again."""
    app.server.faults.script("*", ["500", "500"])
    app.server.faults.rate("*", "503", 1.0)
    app.server.faults.clear()
    assert client.get("/v1/items/x").status_code == 200


def test_slow_outlasts_the_client_timeout(app: App, client: httpx.Client) -> None:
    """A slow answer makes the client time out; the next request is served normally."""
    app.server.faults.script("GET /v1/items/{item_id}", ["slow"])
    with pytest.raises(httpx.ReadTimeout):
        client.get("/v1/items/x", timeout=0.1)
    assert client.get("/v1/items/x").status_code == 200


def test_drop_cuts_the_body_after_the_handler_ran(app: App, client: httpx.Client) -> None:
    """A dropped response breaks the client mid-body, yet the side effect happened."""
    app.server.faults.script("POST /v1/things", ["drop"])
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/v1/things", json={})
    assert app.created == 1
    app.server.faults.script("GET /v1/big", ["drop"])
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/v1/big")
    assert client.get("/v1/big").status_code == 200


@pytest.mark.parametrize(("fault", "created"), [("apply_then_drop", 1), ("drop_before_apply", 0)])
def test_a_lost_answer_hangs_up_without_a_byte_after_or_instead_of_applying(
    app: App, client: httpx.Client, fault: str, created: int
) -> None:
    """Both lost-answer faults close the connection with no answer at all, so the caller
    cannot tell them apart; only the first one ran the handler. The log keeps the status
    the handler answered (never sent), or 0 when it never ran."""
    app.server.faults.script("POST /v1/things", [fault])
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        client.post("/v1/things", json={})
    assert app.created == created
    status = 201 if created else 0
    assert [(r.status, r.fault) for r in app.server.requests] == [(status, fault)]
    assert client.post("/v1/things", json={}).json() == {"created": created + 1}


def test_malformed_is_200_with_broken_json(app: App, client: httpx.Client) -> None:
    """A malformed answer has a success status and a JSON content type but cannot be parsed."""
    app.server.faults.script("*", ["malformed"])
    response = client.get("/v1/items/x")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    with pytest.raises(ValueError, match="Expecting"):
        response.json()


def test_token_expired_until_renewed(app: App, client: httpx.Client) -> None:
    """After token_expired every call is 401 until renew_token; then only the new token works."""
    app.server.faults.script("GET /v1/items/{item_id}", ["token_expired"])
    assert client.get("/v1/items/x").status_code == 401
    assert client.get("/v1/items/x").status_code == 401
    assert client.get("/v1/public").status_code == 200
    app.server.renew_token("token-2")
    assert client.get("/v1/items/x").status_code == 401
    renewed = client.get("/v1/items/x", headers={"Authorization": "Bearer token-2"})
    assert renewed.status_code == 200


def test_request_log_and_counters(app: App, client: httpx.Client) -> None:
    """The log records method, path, query, status, fault and correlation id; counters add up."""
    app.server.faults.script("GET /v1/items/{item_id}", ["503"])
    client.get("/v1/items/a", params={"q": "1"}, headers={"X-Correlation-ID": "corr-1"})
    client.get("/v1/items/b")
    client.post("/v1/things", json={})
    first = app.server.requests[0]
    assert (first.method, first.path, first.status, first.fault) == (
        "GET",
        "/v1/items/a",
        503,
        "503",
    )
    assert first.query == {"q": "1"}
    assert first.correlation_id == "corr-1"
    assert first.route == "GET /v1/items/{item_id}"
    assert app.server.count("GET /v1/items/{item_id}") == 2
    assert app.server.count("GET /v1/items/a") == 1
    assert app.server.count("POST /v1/things") == 1
    assert app.server.count() == 3
    app.server.clear_log()
    assert app.server.requests == []
    assert app.server.count() == 0


def test_stop_closes_keep_alive_and_restart_reuses_the_port(app: App) -> None:
    """After stop() an open keep-alive connection fails; start() again serves on the same URL."""
    url = app.server.url
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        assert http.get("/v1/items/x").status_code == 200
        app.server.stop()
        with pytest.raises(httpx.TransportError):
            http.get("/v1/items/x")
        app.server.start()
        assert app.server.url == url
        assert http.get("/v1/items/x").status_code == 200
