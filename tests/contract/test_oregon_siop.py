"""Contract of Oregon Tool SIOP: the simulator against the document (raw httpx), then the
client against the simulator, over loopback HTTP with no mocks."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from syncd.config import ApiKeyConnectorConfig, OregonSiopConfig
from syncd.connectors.oregon_siop import (
    InvalidItemError,
    OregonSiopClient,
    endpoint_url,
    parse_problem,
)
from syncd.errors import AuthError, PermanentError, RetryableError
from syncd.sandbox.oregon_siop import (
    DOC_EXAMPLE_FAULT,
    DOCUMENT_EXAMPLE,
    PROBLEM_TITLE,
    ROUTE,
    OregonSiopSim,
    problem_details,
    render_document_style,
)
from syncd.sandbox.oregon_siop import ROUTE as SIOP_ROUTE
from tests.contract.clientkit import ClientContract, Connect

PROBLEM_KEYS = {"type", "title", "status", "tracedId", "errors", "message"}


def item(n: int = 1, **overrides: Any) -> dict[str, Any]:
    """A valid data item for material ``M{n}``, in the shape of the document's curl example."""
    return {
        "soldToId": "13035",
        "shipToId": "12256",
        "materialId": f"M{n}",
        "year": 2023,
        "month": 1,
        "day": 1,
        "unitsSold": n,
        "onHand": 10 * n,
        "unitOfMeasure": "EA",
        **overrides,
    }


def make_client(
    sim: OregonSiopSim,
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    page_size: int = 100,
    max_rounds: int = 10,
    read_timeout: float = 2.0,
) -> OregonSiopClient:
    """A client configured the way the daemon configures it, pointed at ``sim``."""
    config = OregonSiopConfig.model_validate(
        {
            "enabled": True,
            "base_url": base_url or sim.base_url,
            "api_key": api_key if api_key is not None else sim.api_key,
            "page_size": page_size,
            "options": {"max_rounds": max_rounds},
            "retry": {"max_attempts": 4, "initial_backoff": 0.01, "max_backoff": 0.05},
            "timeouts": {"read": read_timeout},
        }
    )
    return OregonSiopClient(config)


@pytest.fixture
def sim() -> Iterator[OregonSiopSim]:
    # retry_after=0: a 429 asks for no wait, so the client may retry it inside its backoff cap.
    with OregonSiopSim(seed=7, retry_after=0, slow_seconds=1.0) as running:
        yield running


@pytest.fixture
def http(sim: OregonSiopSim) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, headers=sim.auth_headers(), timeout=5) as raw:
        yield raw


@pytest.fixture
def client(sim: OregonSiopSim) -> Iterator[OregonSiopClient]:
    with make_client(sim) as siop:
        yield siop


def post(http: httpx.Client, *items: Any) -> httpx.Response:
    return http.post("/v1", json={"dataItems": list(items)})


def problem_of(response: httpx.Response) -> dict[str, Any]:
    """The problem-details body of a 400, checked for shape."""
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert set(body) == PROBLEM_KEYS
    assert body["status"] == 400
    assert body["title"] == PROBLEM_TITLE
    assert body["tracedId"].startswith("00-")
    return body


# --- the simulator against the document -----------------------------------------------------------


def test_sim_accepts_the_documents_example_with_201_and_no_content(
    sim: OregonSiopSim, http: httpx.Client
) -> None:
    """The document's request example is answered 201 with an empty body and stored by key."""
    example = {
        "soldToId": "012345",
        "shipToId": "987654",
        "materialId": "ADF-42356",
        "oregonToolMaterialId": "OTX-42356",
        "year": 2023,
        "month": 5,
        "day": 7,
        "unitsSold": 22,
        "onHand": 45,
        "unitsOnHand": 38,
        "unitsOnShelf": 32,
        "unitsOnOrder": 40,
        "unitsInTransit": 20,
        "unitOfMeasure": "EA",
        "targetInventory": 50,
        "minimumStock": 10,
        "maximumStock": 100,
        "safetyStock": 6,
    }
    response = post(http, example)
    assert response.status_code == 201
    assert response.content == b""
    assert sim.item("012345", "987654", "ADF-42356", 2023, 5, 7) == example


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "wrong"}, {"Authorization": "Bearer x"}])
def test_sim_refuses_a_missing_or_wrong_api_key(
    sim: OregonSiopSim, headers: dict[str, str]
) -> None:
    """Without the right x-api-key the answer is 401 with the documented {status, message}."""
    response = httpx.post(f"{sim.url}/v1", json={"dataItems": [item()]}, headers=headers)
    assert response.status_code == 401
    assert set(response.json()) == {"status", "message"}
    assert response.json()["status"] == 401
    assert sim.items() == {}


def test_sim_validation_refuses_the_whole_request(sim: OregonSiopSim, http: httpx.Client) -> None:
    """One bad item makes a 400 keyed $.dataItems[i].field, and no item of the request is stored."""
    body = problem_of(post(http, item(1), item(2, onHand=None, year=1989), item(3)))
    assert body["errors"] == {
        "$.dataItems[1].year": ["The field year must be between 1990 and 9999."]
    }
    assert body["message"] == "An error occurred!"
    assert sim.items() == {}
    assert sim.posts()[-1].refused_rows == (1,)


@pytest.mark.parametrize(
    ("override", "key", "message"),
    [
        ({"soldToId": None}, "soldToId", "The soldToId field is required."),
        ({"materialId": "  "}, "materialId", "The materialId field is required."),
        ({"unitsSold": None}, "unitsSold", "The unitsSold field is required."),
        (
            {"shipToId": "X" * 11},
            "shipToId",
            "The field shipToId must be a string or array type with a maximum length of '10'.",
        ),
        (
            {"materialId": "X" * 19},
            "materialId",
            "The field materialId must be a string or array type with a maximum length of '18'.",
        ),
        (
            {"oregonToolMaterialId": "X" * 11},
            "oregonToolMaterialId",
            "The field oregonToolMaterialId must be a string or array type with a maximum "
            "length of '10'.",
        ),
        (
            {"unitOfMeasure": "E\U0001f600"},
            None,
            None,
        ),
        (
            {"unitOfMeasure": "EA\U0001f600"},
            "unitOfMeasure",
            "The field unitOfMeasure must be a string or array type with a maximum length of '3'.",
        ),
        ({"month": 13}, "month", "The field month must be between 1 and 12."),
        ({"day": 0}, "day", "The field day must be between 1 and 31."),
        ({"year": 10000}, "year", "The field year must be between 1990 and 9999."),
        (
            {"onHand": 2**31},
            "onHand",
            "The JSON value could not be converted to System.Nullable`1[System.Int32]",
        ),
        (
            {"unitsOnShelf": 1.5},
            "unitsOnShelf",
            "The JSON value could not be converted to System.Nullable`1[System.Int32]",
        ),
        (
            {"safetyStock": True},
            "safetyStock",
            "The JSON value could not be converted to System.Nullable`1[System.Int32]",
        ),
        (
            {"year": "2023"},
            "year",
            "The JSON value could not be converted to System.Nullable`1[System.Int32]",
        ),
        ({"soldToId": 13035}, "soldToId", "The JSON value could not be converted to System.String"),
        ({"onHand": -(2**31), "unitsSold": 2**31 - 1}, None, None),
    ],
)
def test_sim_enforces_each_documented_rule(
    http: httpx.Client, override: dict[str, Any], key: str | None, message: str | None
) -> None:
    """Each documented limit answers its ASP.NET message under $.dataItems[0].field (or passes)."""
    response = post(http, item(**override))
    if key is None:
        assert response.status_code == 201, response.text
    else:
        assert problem_of(response)["errors"] == {f"$.dataItems[0].{key}": [message]}


def test_sim_is_only_as_strict_as_the_document(sim: OregonSiopSim, http: httpx.Client) -> None:
    """An impossible date passes (only 1..31 is documented) and unknown properties are dropped."""
    assert post(http, item(day=30, month=2, extra="x", OnHand=5)).status_code == 201
    stored = sim.item("13035", "12256", "M1", 2023, 2, 30)
    assert stored is not None
    assert "extra" not in stored
    assert "OnHand" not in stored


@pytest.mark.parametrize(
    ("content", "key"),
    [
        (b'{"dataItems": [', "$"),
        (b"{}", "dataItems"),
        (b'{"dataItems": null}', "dataItems"),
        (b'{"dataItems": {"a": 1}}', "$.dataItems"),
        (b'{"dataItems": [7]}', "$.dataItems[0]"),
        (b"[]", "$"),
        (b"", ""),
    ],
)
def test_sim_body_level_errors_are_problems(http: httpx.Client, content: bytes, key: str) -> None:
    """A body that is not a dataItems object is a 400 problem keyed outside any row."""
    response = http.post("/v1", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    body = response.json()
    assert list(body["errors"]) == [key]
    assert body["status"] == 400


def test_sim_refuses_xml_and_accepts_an_empty_list(sim: OregonSiopSim, http: httpx.Client) -> None:
    """XML is not simulated (415 {status, message}); an empty dataItems list is a 201 storing nothing."""
    xml = http.post("/v1", content=b"<siop/>", headers={"Content-Type": "application/xml"})
    assert xml.status_code == 415
    assert xml.json()["status"] == 415
    assert post(http).status_code == 201
    assert sim.items() == {}


def test_sim_can_report_only_the_first_conversion_error(
    sim: OregonSiopSim, http: httpx.Client
) -> None:
    """With conversion_errors="first", only the first unconvertible value is reported, as ASP.NET does."""
    bad = (item(1, year=1989), item(2, onHand=1.5), item(3, unitsSold="3"))
    assert len(problem_of(post(http, *bad))["errors"]) == 3
    sim.conversion_errors = "first"
    assert problem_of(post(http, *bad))["errors"] == {
        "$.dataItems[1].onHand": [
            "The JSON value could not be converted to System.Nullable`1[System.Int32]"
        ]
    }


def test_sim_renders_errors_in_the_documents_broken_layout(
    sim: OregonSiopSim, http: httpx.Client
) -> None:
    """error_style="document" answers the document's layout (not JSON) with the real errors."""
    sim.error_style = "document"
    response = post(http, item(1), item(2, month=0))
    assert response.status_code == 400
    with pytest.raises(ValueError, match="Expecting"):
        json.loads(response.text)
    trace_id = sim.posts()[-1].trace_id
    errors = {"$.dataItems[1].month": ["The field month must be between 1 and 12."]}
    assert response.text == render_document_style(problem_details(trace_id, errors))
    assert '"errors" {' in response.text
    assert "],\n}" in response.text


def test_render_document_style_reproduces_the_document_example() -> None:
    """The renderer, fed the example's values, reproduces the document's example byte for byte."""
    errors = {
        "$.dataItems[1].onHand": ["The onHand field is required."],
        "$.dataItems[5].unitsOnShelf": [
            "The JSON value could not be converted to System.Nullable`1[System.Int32]"
        ],
    }
    trace_id = "00-b8992e4f52c659ef02b4f901ce1336a6-deaa6ed8bd9afea2-00"
    assert render_document_style(problem_details(trace_id, errors)) == DOCUMENT_EXAMPLE


def test_sim_doc_example_fault_answers_verbatim_without_side_effect(
    sim: OregonSiopSim, http: httpx.Client
) -> None:
    """The doc_example fault answers the document's example text as a 400 and stores nothing."""
    sim.faults.script(ROUTE, [DOC_EXAMPLE_FAULT])
    response = post(http, item())
    assert response.status_code == 400
    assert response.text == DOCUMENT_EXAMPLE
    assert sim.items() == {}
    assert sim.posts() == []


def test_sim_repost_replaces_and_missing_day_is_the_first(
    sim: OregonSiopSim, http: httpx.Client
) -> None:
    """Items are keyed by (soldTo, shipTo, material, year, month, day or 1): a re-post replaces."""
    no_day = {k: v for k, v in item(onHand=1).items() if k != "day"}
    assert post(http, no_day).status_code == 201
    assert post(http, item(onHand=2)).status_code == 201
    assert post(http, item(onHand=3, day=2)).status_code == 201
    assert len(sim.items()) == 2
    stored = sim.item("13035", "12256", "M1", 2023, 1, 1)
    assert stored is not None
    assert stored["onHand"] == 2
    assert sim.stats()["items_replaced"] == 1


def test_sim_429_carries_retry_after_and_status_body(
    sim: OregonSiopSim, http: httpx.Client
) -> None:
    """An injected 429 has Retry-After and the {status, message} body, and runs nothing."""
    sim.faults.script(ROUTE, ["429", "503"])
    limited = post(http, item())
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "0"
    assert limited.json()["status"] == 429
    assert post(http, item()).json()["status"] == 503
    assert sim.items() == {}


# --- the client against the simulator --------------------------------------------------------------


def test_endpoint_is_v1_whatever_the_base_url_form() -> None:
    """The root, ".../v1" and ".../v1/" all post to exactly ".../v1"."""
    for base in ("https://siop.api.oregontool.com", "https://siop.api.oregontool.com/v1/"):
        assert endpoint_url(base) == "https://siop.api.oregontool.com/v1"
    assert endpoint_url("http://127.0.0.1:9/api/v1") == "http://127.0.0.1:9/api/v1"


def test_submit_success_is_201_with_no_content(sim: OregonSiopSim) -> None:
    """A valid batch posted with the server root as base URL is accepted and stored."""
    with make_client(sim, base_url=sim.url) as siop:
        result = siop.submit([item(1), item(2)])
    assert result.accepted
    assert result.status == 201
    assert result.raw == ""
    assert result.request_id
    assert len(sim.items()) == 2
    assert sim.count(ROUTE) == 1


def test_submit_returns_row_errors_instead_of_raising(
    sim: OregonSiopSim, client: OregonSiopClient
) -> None:
    """A 400 comes back as a SubmitResult with errors per batch position and the raw body."""
    sim.refuse("materialId", "M2", "Unknown material.")
    result = client.submit([item(1), item(2)])
    assert not result.accepted
    assert result.failures == {1: {"materialId": ("Unknown material.",)}}
    assert result.problem is not None
    assert result.problem.well_formed
    assert json.loads(result.raw)["errors"] == {"$.dataItems[1].materialId": ["Unknown material."]}
    assert result.request_id


def test_submit_never_sends_an_invalid_item(sim: OregonSiopSim, client: OregonSiopClient) -> None:
    """submit checks every item first: one invalid item raises and nothing is sent."""
    with pytest.raises(InvalidItemError, match="month"):
        client.submit([item(1), item(2, month=13)])
    with pytest.raises(ValueError, match="at least one"):
        client.submit([])
    assert sim.count() == 0


def test_isolating_maps_rows_and_resends_the_rest(
    sim: OregonSiopSim, client: OregonSiopClient
) -> None:
    """Rows a 400 names are refused with field and message; the rest is re-sent and stored."""
    sim.refuse("materialId", "M2", "Unknown material.")
    sim.refuse("unitsSold", 5, "Units sold look wrong.")
    result = client.submit_isolating([item(n) for n in range(1, 7)])
    assert result.accepted == (0, 2, 3, 5)
    assert set(result.failures) == {1, 4}
    assert result.failures[1].errors == {"materialId": ("Unknown material.",)}
    assert result.failures[4].errors == {"unitsSold": ("Units sold look wrong.",)}
    assert result.failures[4].source == "remote"
    assert "$.dataItems[4].unitsSold" in (result.failures[4].raw or "")
    assert result.failures[4].trace_id == sim.posts()[0].trace_id
    assert result.failures[4].request_id
    assert result.unsent == ()
    assert result.requests == 2
    assert sorted(k[2] for k in sim.items()) == ["M1", "M3", "M4", "M6"]


def test_isolating_reads_the_documents_broken_error_layout(sim: OregonSiopSim) -> None:
    """With error bodies in the document's non-JSON layout, rows are still mapped and the rest stored."""
    sim.error_style = "document"
    sim.refuse("materialId", "M3")
    with make_client(sim) as siop:
        result = siop.submit_isolating([item(n) for n in range(1, 5)])
    assert result.accepted == (0, 1, 3)
    assert result.failures[2].errors == {"materialId": ("The materialId 'M3' is not known.",)}
    raw = result.failures[2].raw or ""
    assert '"errors" {' in raw
    assert not parse_problem(raw).well_formed


def test_isolating_through_the_documents_own_example(sim: OregonSiopSim) -> None:
    """The document's example body verbatim refuses rows 1 and 5; the other rows go in round two."""
    sim.faults.script(ROUTE, [DOC_EXAMPLE_FAULT])
    with make_client(sim) as siop:
        result = siop.submit_isolating([item(n) for n in range(7)])
    assert result.accepted == (0, 2, 3, 4, 6)
    assert result.failures[1].errors == {"onHand": ("The onHand field is required.",)}
    assert result.failures[5].errors == {
        "unitsOnShelf": (
            "The JSON value could not be converted to System.Nullable`1[System.Int32]",
        )
    }
    assert result.failures[5].raw == DOCUMENT_EXAMPLE
    assert result.failures[5].trace_id == "00-b8992e4f52c659ef02b4f901ce1336a6-deaa6ed8bd9afea2-00"
    assert result.requests == 2
    assert len(sim.items()) == 5


def test_isolating_goes_round_until_every_bad_row_is_out(sim: OregonSiopSim) -> None:
    """A server that reports fewer rows than are bad is asked again with the rest, round by round."""
    sim.faults.script(ROUTE, [DOC_EXAMPLE_FAULT])
    sim.refuse("materialId", "M3")
    with make_client(sim) as siop:
        result = siop.submit_isolating([item(n) for n in range(7)])
    assert set(result.failures) == {1, 3, 5}
    assert result.accepted == (0, 2, 4, 6)
    assert result.requests == 3


def test_invalid_items_are_refused_locally_and_never_sent(
    sim: OregonSiopSim, client: OregonSiopClient
) -> None:
    """Locally invalid items fail as "local" and the simulator never receives them."""
    items: list[Any] = [
        item(1),
        item(2, soldToId="X" * 11),
        item(3, day=31, month=4),
        item(4),
        None,
    ]
    result = client.submit_isolating(items)
    assert result.accepted == (0, 3)
    assert {i: f.source for i, f in result.failures.items()} == {1: "local", 2: "local", 4: "local"}
    assert list(result.failures[1].errors) == ["soldToId"]
    assert list(result.failures[2].errors) == ["day"]
    assert result.failures[1].raw is None
    assert [p.received for p in sim.posts()] == [2]


def test_an_unattributed_refusal_is_isolated_by_halving(
    sim: OregonSiopSim, client: OregonSiopClient
) -> None:
    """A 400 that names no row halves the batch until the refused item stands alone."""
    sim.refuse("materialId", "M5", "Account on hold for this material.", attributed=False)
    result = client.submit_isolating([item(n) for n in range(8)])
    assert result.accepted == (0, 1, 2, 3, 4, 6, 7)
    assert result.failures[5].errors == {"": ("Account on hold for this material.",)}
    assert result.failures[5].source == "remote"
    assert result.requests == 7  # 8 -> 4 ok, 4 -> 2 -> 1 ok, 1 refused; 2 ok


def test_the_round_budget_leaves_the_rest_unsent(sim: OregonSiopSim) -> None:
    """When a batch's request budget is spent, what is left is neither accepted nor refused."""
    sim.refuse("materialId", "M1")
    with make_client(sim, max_rounds=1) as siop:
        result = siop.submit_isolating([item(n) for n in range(4)])
    assert result.accepted == ()
    assert set(result.failures) == {1}
    assert result.unsent == (0, 2, 3)
    assert result.requests == 1
    assert sim.items() == {}


def test_batches_follow_page_size(sim: OregonSiopSim) -> None:
    """Items go in requests of at most page_size items."""
    with make_client(sim, page_size=3) as siop:
        result = siop.submit_isolating([item(n) for n in range(7)])
    assert result.accepted == tuple(range(7))
    assert [p.received for p in sim.posts()] == [3, 3, 1]
    assert siop.submit_isolating([]).requests == 0


@pytest.mark.parametrize("api_key", ["wrong-key", ""])
def test_a_refused_or_missing_key_is_an_auth_error(sim: OregonSiopSim, api_key: str) -> None:
    """A 401 raises AuthError with the server's message, after one request (nothing to refresh)."""
    config = ApiKeyConnectorConfig.model_validate(
        {"enabled": True, "base_url": sim.base_url, "api_key": api_key or None}
    )
    with OregonSiopClient(config) as siop, pytest.raises(AuthError) as caught:
        siop.submit_isolating([item()])
    assert caught.value.status == 401
    assert caught.value.message == "API key is not valid."
    assert sim.count(ROUTE) == 1
    assert sim.items() == {}


@pytest.mark.parametrize("fault", ["429", "500", "503"])
def test_rate_limit_and_server_errors_are_retried(
    sim: OregonSiopSim, client: OregonSiopClient, fault: str
) -> None:
    """429 (Retry-After) and 5xx answers are retried and the batch then goes through."""
    sim.faults.script(ROUTE, [fault, fault])
    result = client.submit_isolating([item(1), item(2)])
    assert result.accepted == (0, 1)
    assert sim.count(ROUTE) == 3


def test_a_long_retry_after_is_handed_back() -> None:
    """A Retry-After beyond the backoff ceiling is raised with its delay, for the outbox to honour."""
    with OregonSiopSim(retry_after=30) as slow_down, make_client(slow_down) as siop:
        slow_down.faults.script(ROUTE, ["429"])
        with pytest.raises(RetryableError) as caught:
            siop.submit([item()])
        assert caught.value.retry_after == 30
        assert caught.value.status == 429
        assert slow_down.count(ROUTE) == 1


def test_persistent_server_errors_raise_retryable(
    sim: OregonSiopSim, client: OregonSiopClient
) -> None:
    """A 503 on every attempt ends as RetryableError after max_attempts requests."""
    sim.faults.rate(ROUTE, "503", 1.0)
    with pytest.raises(RetryableError) as caught:
        client.submit_isolating([item()])
    assert caught.value.status == 503
    assert caught.value.message == "Service temporarily unavailable."
    assert sim.count(ROUTE) == 4


def test_a_slow_answer_is_retried_and_the_replay_replaces(sim: OregonSiopSim) -> None:
    """A timed-out POST is sent again; the late first one and the retry store one item."""
    sim.faults.script(ROUTE, ["slow"])
    with make_client(sim, read_timeout=0.3) as siop:
        result = siop.submit_isolating([item()])
    assert result.accepted == (0,)
    deadline = time.monotonic() + 3
    while len(sim.posts()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p.status for p in sim.posts()] == [201, 201]
    assert len(sim.items()) == 1


def test_a_dropped_answer_is_retried(sim: OregonSiopSim, client: OregonSiopClient) -> None:
    """A connection cut mid-answer is retried; the item is stored once."""
    sim.faults.script(ROUTE, ["drop"])
    result = client.submit_isolating([item(1), item(2)])
    assert result.accepted == (0, 1)
    assert sim.count(ROUTE) == 2
    assert len(sim.items()) == 2


def test_a_success_status_with_a_garbage_body_is_retried(
    sim: OregonSiopSim, client: OregonSiopClient
) -> None:
    """A 200 carrying broken JSON is not the documented 201: it is retried, then accepted."""
    sim.faults.script(ROUTE, ["malformed"])
    result = client.submit([item()])
    assert result.status == 201
    assert sim.count(ROUTE) == 2


def test_other_client_errors_are_permanent_with_the_raw_body(sim: OregonSiopSim) -> None:
    """A 404 (here: a wrong base path) raises PermanentError keeping the raw body."""
    with (
        make_client(sim, base_url=f"{sim.url}/v2") as siop,
        pytest.raises(PermanentError) as caught,
    ):
        siop.submit([item()])
    assert caught.value.status == 404
    assert caught.value.code == "http_404"
    assert caught.value.details["raw"] == '{"status":404,"message":"No route for POST /v2/v1."}'
    assert caught.value.message == "No route for POST /v2/v1."


def test_client_and_simulator_agree_on_the_documented_limits(sim: OregonSiopSim) -> None:
    """Whatever the client validates as sendable, the simulator accepts, limits at their edges."""
    edge = item(
        soldToId="S" * 10,
        shipToId="T" * 10,
        materialId="M" * 18,
        oregonToolMaterialId="O" * 10,
        unitOfMeasure="E\U0001f600",
        year=9999,
        month=12,
        day=31,
        unitsSold=-(2**31),
        safetyStock=2**31 - 1,
    )
    with make_client(sim) as siop:
        assert siop.submit_isolating([edge, item(year=1990)]).accepted == (0, 1)
    assert sim.stats()["items_stored"] == 2


# --- what every client does ----------------------------------------------------------------


class TestOregonSiopClientContract(ClientContract):
    """The Oregon SIOP client against `OregonSiopSim` meets the cases every client meets."""

    ROUTE = SIOP_ROUTE

    @pytest.fixture
    def connect(self, sim: OregonSiopSim) -> Connect:
        return lambda refused=False: make_client(sim, api_key="wrong-key" if refused else None)

    def call(self, client: OregonSiopClient) -> object:
        return client.submit([item()])
