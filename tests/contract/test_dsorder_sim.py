"""Contract of the DSOrder simulator, exercised with raw httpx over loopback (no mocks)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from syncd.sandbox.base import FAULT_KINDS
from syncd.sandbox.dsorder import (
    DEFAULT_TOKEN,
    SOFT_FAULT_MESSAGE,
    DSOrderSim,
    ManualClock,
    closed_message,
    finished_warning,
    not_found_message,
)

# Monday 2025-03-10 10:00 in Amsterdam (CET, UTC+1).
START = datetime(2025, 3, 10, 9, 0, tzinfo=UTC).timestamp()
SUBMITTED = "/orders/submitted"
FULFILL = "POST /orders/{order_id}/fulfill"
CLOSE = "POST /orders/{order_id}/close"
ENVELOPE_KEYS = {"success", "message", "data", "warnings"}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def sim(clock: ManualClock) -> Iterator[DSOrderSim]:
    with DSOrderSim(seed=3, clock=clock, slow_seconds=0.5, retry_after=4) as running:
        yield running


@pytest.fixture
def client(sim: DSOrderSim) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.base_url, headers=sim.auth_headers(), timeout=5) as http:
        yield http


# --- helpers -----------------------------------------------------------------------------


def ok(response: httpx.Response) -> dict[str, Any]:
    """The envelope of a 200 answer, checked for shape."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == ENVELOPE_KEYS
    assert isinstance(body["warnings"], list)
    return body


def submitted(client: httpx.Client) -> list[dict[str, Any]]:
    body = ok(client.get(SUBMITTED))
    assert body["success"] is True
    return body["data"]


def report(line: int, article: str, quantity: float, finished: bool = False) -> dict[str, Any]:
    return {"line_number": line, "article_id": article, "quantity": quantity, "finished": finished}


def fulfil(client: httpx.Client, order_id: str, *items: dict[str, Any]) -> dict[str, Any]:
    return ok(client.post(f"/orders/{order_id}/fulfill", json=list(items)))


def close(client: httpx.Client, order_id: str) -> dict[str, Any]:
    return ok(client.post(f"/orders/{order_id}/close"))


def two_line_order(sim: DSOrderSim) -> str:
    return sim.submit_order(store_id="ST-0000002", lines=[("ART-000001", 10), ("ART-000002", 4)])


# --- the envelope and auth -----------------------------------------------------------------


def test_every_answer_is_the_envelope(sim: DSOrderSim, client: httpx.Client) -> None:
    """Pull, fulfil and close all answer {success, message, data, warnings} as documented."""
    order_id = two_line_order(sim)
    pulled = ok(client.get(SUBMITTED))
    assert pulled["success"] is True
    assert pulled["message"] is None
    assert pulled["warnings"] == []
    assert [o["order_id"] for o in pulled["data"]] == [order_id]
    assert fulfil(client, order_id, report(1000, "ART-000001", 3)) == {
        "success": True,
        "message": None,
        "data": None,
        "warnings": [],
    }
    assert close(client, order_id) == {
        "success": True,
        "message": None,
        "data": None,
        "warnings": [],
    }


def test_order_fields_follow_the_document(sim: DSOrderSim, client: httpx.Client) -> None:
    """An order carries exactly the documented fields, optional ones present as null."""
    order_id = two_line_order(sim)
    (order,) = submitted(client)
    assert set(order) == {
        "order_id",
        "supplier_id",
        "store_id",
        "order_date",
        "delivery_date",
        "xdock_delivery_date",
        "supplier_schedule_title",
        "details",
    }
    assert (order["order_id"], order["store_id"], order["supplier_id"]) == (
        order_id,
        "ST-0000002",
        "SU-000001",
    )
    assert order["xdock_delivery_date"] is None
    assert order["details"] == [
        {
            "line_number": 1000,
            "article_id": "ART-000001",
            "quantity": 10,
            "min_purchase_shelf_life": None,
        },
        {
            "line_number": 2000,
            "article_id": "ART-000002",
            "quantity": 4,
            "min_purchase_shelf_life": None,
        },
    ]


def test_missing_or_wrong_credentials_are_401(sim: DSOrderSim) -> None:
    """Without the header, with a wrong token or a wrong scheme the answer is 401 success false."""
    order_id = two_line_order(sim)
    attempts = [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {DEFAULT_TOKEN}"},
        {"Authorization": DEFAULT_TOKEN},
    ]
    with httpx.Client(base_url=sim.base_url, timeout=5) as anonymous:
        for headers in attempts:
            for response in (
                anonymous.get(SUBMITTED, headers=headers),
                anonymous.post(f"/orders/{order_id}/close", headers=headers),
            ):
                assert response.status_code == 401
                body = response.json()
                assert set(body) == ENVELOPE_KEYS
                assert body["success"] is False
                assert body["message"]
        good = anonymous.get(SUBMITTED, headers={"Authorization": f"bearer {DEFAULT_TOKEN}"})
        assert good.status_code == 200
    assert sim.order(order_id).closed is False


def test_auth_header_and_scheme_are_configurable(clock: ManualClock) -> None:
    """A custom header with an empty scheme takes the bare token; token=None switches auth off."""
    with DSOrderSim(clock=clock, token="k-1", auth_header="X-Api-Key", auth_scheme="") as sim:
        assert sim.auth_headers() == {"X-Api-Key": "k-1"}
        with httpx.Client(base_url=sim.base_url, timeout=5) as http:
            assert http.get(SUBMITTED, headers={"X-Api-Key": "k-1"}).status_code == 200
            assert http.get(SUBMITTED, headers={"X-Api-Key": "k-2"}).status_code == 401
            assert http.get(SUBMITTED, headers={"Authorization": "Bearer k-1"}).status_code == 401
    with DSOrderSim(clock=clock, token=None) as open_sim:
        assert open_sim.auth_headers() == {}
        assert httpx.get(open_sim.base_url + SUBMITTED, timeout=5).status_code == 200


# --- today's orders ------------------------------------------------------------------------


def test_only_todays_orders_are_listed(
    sim: DSOrderSim, clock: ManualClock, client: httpx.Client
) -> None:
    """After local midnight yesterday's orders vanish from the list (the midnight gap)."""
    yesterday = two_line_order(sim)
    clock.set(sim.next_midnight() - 1)
    late = two_line_order(sim)
    assert [o["order_id"] for o in submitted(client)] == [yesterday, late]
    clock.set(sim.next_midnight() + 1)
    assert submitted(client) == []
    today = two_line_order(sim)
    assert [o["order_id"] for o in submitted(client)] == [today]
    assert sim.visible_order_ids() == [today]


def test_today_is_the_site_time_zone_day(
    sim: DSOrderSim, clock: ManualClock, client: httpx.Client
) -> None:
    """'Today' is the Amsterdam calendar day: 23:30 UTC is already tomorrow there."""
    before = datetime(2025, 3, 10, 22, 30, tzinfo=UTC).timestamp()  # 23:30 CET, 10 March
    order_id = sim.submit_order(lines=[("ART-000001", 1)], at=before)
    clock.set(datetime(2025, 3, 10, 23, 30, tzinfo=UTC).timestamp())  # 00:30 CET, 11 March
    assert submitted(client) == []
    with DSOrderSim(clock=clock, tz="UTC", token=None) as utc_sim:
        utc_sim.submit_order(order_id=order_id, lines=[("ART-000001", 1)], at=before)
        listed = httpx.get(utc_sim.base_url + SUBMITTED, timeout=5).json()["data"]
        assert [o["order_id"] for o in listed] == [order_id]


def test_yesterdays_order_can_still_be_fulfilled_and_closed(
    sim: DSOrderSim, clock: ManualClock, client: httpx.Client
) -> None:
    """An order no longer listed still exists: fulfil and close keep working on it."""
    order_id = two_line_order(sim)
    clock.set(sim.next_midnight() + 3600)
    assert submitted(client) == []
    assert fulfil(client, order_id, report(1000, "ART-000001", 10, True))["success"] is True
    assert close(client, order_id)["success"] is True


def test_closed_orders_of_today_are_still_listed(sim: DSOrderSim, client: httpx.Client) -> None:
    """The list is all of today's submitted orders whatever their state, with no status field."""
    first, second = two_line_order(sim), two_line_order(sim)
    close(client, first)
    listed = submitted(client)
    assert [o["order_id"] for o in listed] == [first, second]
    assert all("status" not in o for o in listed)


# --- timestamps and quantities -------------------------------------------------------------


def test_timestamps_are_unix_milliseconds(sim: DSOrderSim, clock: ManualClock) -> None:
    """order_date is the submission instant in ms; delivery and shelf-life dates are ms too."""
    clock.advance(0.25)
    sim.submit_order(
        lines=[("ART-000001", 5, 1_744_000_000_000)], xdock_delivery_date=1_741_700_000_000
    )
    with httpx.Client(base_url=sim.base_url, headers=sim.auth_headers()) as http:
        (order,) = submitted(http)
    assert order["order_date"] == round((START + 0.25) * 1000)
    assert isinstance(order["order_date"], int)
    next_six = datetime(2025, 3, 11, 5, 0, tzinfo=UTC).timestamp() * 1000  # 06:00 CET
    assert order["delivery_date"] == next_six
    assert order["xdock_delivery_date"] == 1_741_700_000_000
    assert order["details"][0]["min_purchase_shelf_life"] == 1_744_000_000_000
    generated = sim.order(sim.generate(1, fractional_rate=0, unknown_rate=0)[0])
    assert len(str(generated.delivery_date)) == 13
    assert generated.delivery_date > generated.order_date


def test_fractional_quantities_stay_json_numbers(sim: DSOrderSim, client: httpx.Client) -> None:
    """100.5 is listed as the JSON number 100.5 and 100 as 100; fractional reports are kept."""
    order_id = sim.submit_order(lines=[("ART-000003", 100), ("ART-000004", 100.5)])
    raw = client.get(SUBMITTED).text
    assert '"quantity":100,' in raw
    assert '"quantity":100.5,' in raw
    details = submitted(client)[0]["details"]
    assert [d["quantity"] for d in details] == [100, 100.5]
    assert isinstance(details[0]["quantity"], int)
    fulfil(client, order_id, report(2000, "ART-000004", 50.25))
    assert sim.fulfilled(order_id) == {1000: 0, 2000: 50.25}


# --- fulfil --------------------------------------------------------------------------------


def test_fulfil_quantities_are_totals(sim: DSOrderSim, client: httpx.Client) -> None:
    """Reporting 5 then 7 leaves 7, not 12: each report replaces the line's total."""
    order_id = two_line_order(sim)
    fulfil(client, order_id, report(1000, "ART-000001", 5))
    fulfil(client, order_id, report(1000, "ART-000001", 7), report(2000, "ART-000002", 1))
    assert sim.fulfilled(order_id) == {1000: 7, 2000: 1}
    history = sim.order(order_id).lines[1000].reports
    assert [(r.quantity, r.applied) for r in history] == [(5, True), (7, True)]
    fulfil(client, order_id, report(1000, "ART-000001", 6))  # totals can go down, too
    assert sim.fulfilled(order_id)[1000] == 6


def test_finished_line_is_skipped_with_the_documented_warning(
    sim: DSOrderSim, client: httpx.Client
) -> None:
    """Once finished, a line's reports are ignored with a warning; other lines still apply."""
    order_id = two_line_order(sim)
    assert fulfil(client, order_id, report(1000, "ART-000001", 9, True))["warnings"] == []
    again = fulfil(
        client, order_id, report(1000, "ART-000001", 10, True), report(2000, "ART-000002", 4)
    )
    assert again["success"] is True
    assert again["warnings"] == ["Order line 1000 has already been marked as finished, skipping"]
    assert again["warnings"] == [finished_warning(1000)]
    assert sim.fulfilled(order_id) == {1000: 9, 2000: 4}
    line = sim.order(order_id).lines[1000]
    assert line.finished is True
    assert [r.applied for r in line.reports] == [True, False]


def test_unknown_line_and_wrong_article_are_warnings(sim: DSOrderSim, client: httpx.Client) -> None:
    """An unknown line number or a mismatched article is skipped with a warning, success true."""
    order_id = two_line_order(sim)
    body = fulfil(
        client,
        order_id,
        report(3000, "ART-000009", 1),
        report(2000, "ART-000099", 2),
        report(1000, "ART-000001", 3),
    )
    assert body["success"] is True
    assert body["warnings"] == [
        "Order line 3000 was not found, skipping",
        "Order line 2000 is for article ART-000002, not ART-000099, skipping",
    ]
    assert sim.fulfilled(order_id) == {1000: 3, 2000: 0}


def test_unknown_order_is_success_false(sim: DSOrderSim, client: httpx.Client) -> None:
    """Fulfil and close of an unknown order answer 200 'Order with ID ... was not found'."""
    for body in (fulfil(client, "100123", report(1000, "ART-000001", 1)), close(client, "100123")):
        assert body == {
            "success": False,
            "message": "Order with ID 100123 was not found",
            "data": None,
            "warnings": [],
        }
    assert not_found_message("100123") == "Order with ID 100123 was not found"
    assert sim.state.stats["fulfil_failed"] == sim.state.stats["close_failed"] == 1


def test_closed_order_refuses_fulfil(sim: DSOrderSim, client: httpx.Client) -> None:
    """After close a fulfil answers success false 'already closed' and changes nothing."""
    order_id = two_line_order(sim)
    fulfil(client, order_id, report(1000, "ART-000001", 2))
    close(client, order_id)
    refused = fulfil(client, order_id, report(1000, "ART-000001", 10, True))
    assert refused["success"] is False
    assert "already closed" in refused["message"]
    assert refused["message"] == closed_message(order_id)
    order = sim.order(order_id)
    assert order.fulfilled() == {1000: 2, 2000: 0}
    assert (order.fulfil_calls, order.fulfil_rejected) == (1, 1)


def test_close_twice_answers_already_closed(
    sim: DSOrderSim, clock: ManualClock, client: httpx.Client
) -> None:
    """The second close is success false 'already closed'; the order was closed exactly once."""
    order_id = two_line_order(sim)
    clock.advance(60)
    assert close(client, order_id)["success"] is True
    second = close(client, order_id)
    assert second["success"] is False
    assert second["message"] == f"Order with ID {order_id} is already closed"
    order = sim.order(order_id)
    assert (order.closed, order.closed_at, order.closes, order.close_attempts) == (
        True,
        START + 60,
        1,
        2,
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"line_number": 1000}, "must be a JSON array"),
        ([], "at least one order line report"),
        (["x"], "Item 0: must be an object"),
        (
            [{"line_number": 1000, "article_id": "ART-000001", "quantity": 1}],
            "finished is required",
        ),
        ([report(1000, "ART-000001", 1) | {"quantity": "1"}], "quantity must be a number"),
        ([report(1000, "ART-000001", 1) | {"quantity": True}], "quantity must be a number"),
        ([report(1000, "ART-000001", -1)], "quantity must not be negative"),
        ([report(1000, "ART-000001", 1) | {"finished": "yes"}], "finished must be a boolean"),
        ([report(1000, "ART-000001", 1) | {"line_number": 10.5}], "line_number must be an integer"),
        ([report(1000, "ART-000001", 1) | {"article_id": 7}], "article_id must be a non-empty"),
        (
            [report(2000, "ART-000002", 1), report(1000, "ART-000001", 1) | {"quantity": None}],
            "Item 1: quantity is required",
        ),
        (
            [report(1000, "ART-000001", 1), report(1000, "ART-000001", 2)],
            "line_number 1000 appears more than once",
        ),
    ],
)
def test_malformed_fulfil_body_is_refused_whole(
    sim: DSOrderSim, client: httpx.Client, body: Any, message: str
) -> None:
    """A body that is not an array of well-typed line reports is 200 success false, no change."""
    order_id = two_line_order(sim)
    answer = ok(client.post(f"/orders/{order_id}/fulfill", json=body))
    assert answer["success"] is False
    assert message in answer["message"]
    order = sim.order(order_id)
    assert order.fulfilled() == {1000: 0, 2000: 0}
    assert order.fulfil_calls == 0
    assert all(not line.reports for line in order.lines.values())


def test_unparseable_json_is_400_in_the_envelope(sim: DSOrderSim, client: httpx.Client) -> None:
    """Broken JSON never reaches the application: HTTP 400, still the envelope, no change."""
    order_id = two_line_order(sim)
    response = client.post(
        f"/orders/{order_id}/fulfill",
        content=b"[{not json",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["success"] is False
    assert sim.order(order_id).fulfil_calls == 0


def test_integral_float_line_number_is_accepted(sim: DSOrderSim, client: httpx.Client) -> None:
    """A JSON number 1000.0 names line 1000 (the document types line_number as number)."""
    order_id = two_line_order(sim)
    assert (
        fulfil(client, order_id, report(1000, "ART-000001", 4) | {"line_number": 1000.0})[
            "warnings"
        ]
        == []
    )
    assert sim.fulfilled(order_id)[1000] == 4


def test_unknown_route_is_404_in_the_envelope(client: httpx.Client) -> None:
    """Paths outside the document answer 404 with success false (no /v1 prefix exists)."""
    response = client.get("/v1/orders/submitted")
    assert response.status_code == 404
    assert response.json()["success"] is False


# --- faults --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["429", "500", "503"])
def test_http_error_faults_change_nothing(sim: DSOrderSim, client: httpx.Client, kind: str) -> None:
    """429/500/503 answer that status in the envelope (429 with Retry-After) and apply nothing."""
    order_id = two_line_order(sim)
    sim.faults.script(FULFILL, [kind])
    sim.faults.script(CLOSE, [kind])
    for response in (
        client.post(f"/orders/{order_id}/fulfill", json=[report(1000, "ART-000001", 3)]),
        client.post(f"/orders/{order_id}/close"),
    ):
        assert response.status_code == int(kind)
        assert response.json()["success"] is False
    assert client.post(f"/orders/{order_id}/close").status_code == 200
    assert sim.fulfilled(order_id)[1000] == 0
    assert sim.order(order_id).closes == 1
    sim.faults.script("GET /orders/submitted", ["429"])
    limited = client.get(SUBMITTED)
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "4")


def test_soft_failure_is_200_success_false_and_changes_nothing(
    sim: DSOrderSim, client: httpx.Client
) -> None:
    """fail_soft answers 200 'Temporary error, please retry' on any route and applies nothing."""
    order_id = two_line_order(sim)
    sim.faults.script("*", ["fail_soft", "fail_soft", "fail_soft"])
    pulled = ok(client.get(SUBMITTED))
    soft_fulfil = fulfil(client, order_id, report(1000, "ART-000001", 3, True))
    soft_close = close(client, order_id)
    for body in (pulled, soft_fulfil, soft_close):
        assert body == {
            "success": False,
            "message": SOFT_FAULT_MESSAGE,
            "data": None,
            "warnings": [],
        }
    order = sim.order(order_id)
    assert (order.pulled, order.fulfil_calls, order.closed, order.close_attempts) == (
        0,
        0,
        False,
        0,
    )
    assert order.fulfilled() == {1000: 0, 2000: 0}
    assert sim.faults.fired["fail_soft"] == 3
    assert [r.fault for r in sim.requests] == ["fail_soft"] * 3
    assert close(client, order_id)["success"] is True


def test_soft_failure_rate_is_accepted(sim: DSOrderSim, client: httpx.Client) -> None:
    """fail_soft is a registered kind: it can be given as a rate like the base's kinds."""
    sim.faults.rate(CLOSE, "fail_soft", 1.0)
    order_id = two_line_order(sim)
    assert close(client, order_id)["message"] == SOFT_FAULT_MESSAGE
    sim.faults.rate(CLOSE, "fail_soft", 0.0)
    assert close(client, order_id)["success"] is True
    with pytest.raises(ValueError, match="unknown fault"):
        sim.faults.script(CLOSE, ["fail_hard"])
    assert {"fail_soft"} | FAULT_KINDS == sim.faults.kinds


def test_drop_applies_the_change_but_loses_the_answer(
    sim: DSOrderSim, client: httpx.Client
) -> None:
    """A dropped close still closes: the retry then gets 'already closed', closes stays 1."""
    order_id = two_line_order(sim)
    sim.faults.script(CLOSE, ["drop"])
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(f"/orders/{order_id}/close")
    retry = close(client, order_id)
    assert retry["success"] is False
    assert "already closed" in retry["message"]
    assert (sim.closes(order_id), sim.order(order_id).close_attempts) == (1, 2)


def test_slow_outlasts_the_client_but_applies(sim: DSOrderSim, client: httpx.Client) -> None:
    """A slow fulfil times the client out, yet the total was stored; resending is harmless."""
    order_id = two_line_order(sim)
    sim.faults.script(FULFILL, ["slow"])
    with pytest.raises(httpx.ReadTimeout):
        client.post(
            f"/orders/{order_id}/fulfill", json=[report(1000, "ART-000001", 8)], timeout=0.1
        )
    deadline = time.monotonic() + 3
    while sim.fulfilled(order_id)[1000] != 8 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sim.fulfilled(order_id)[1000] == 8
    fulfil(client, order_id, report(1000, "ART-000001", 8))
    assert sim.fulfilled(order_id)[1000] == 8


def test_malformed_answer_is_broken_json(sim: DSOrderSim, client: httpx.Client) -> None:
    """A malformed pull is HTTP 200 with a JSON content type that cannot be parsed."""
    two_line_order(sim)
    sim.faults.script("GET /orders/submitted", ["malformed"])
    response = client.get(SUBMITTED)
    assert response.status_code == 200
    with pytest.raises(ValueError, match="Expecting"):
        response.json()
    assert len(submitted(client)) == 1


def test_token_expired_until_renewed(sim: DSOrderSim, client: httpx.Client) -> None:
    """After token_expired every call is 401 until renew_token; then only the new token works."""
    sim.faults.script("GET /orders/submitted", ["token_expired"])
    assert client.get(SUBMITTED).status_code == 401
    assert client.post("/orders/100001/close").status_code == 401
    sim.renew_token("fresh")
    assert client.get(SUBMITTED).status_code == 401
    assert client.get(SUBMITTED, headers=sim.auth_headers()).status_code == 200
    assert sim.auth_headers() == {"Authorization": "Bearer fresh"}


def test_every_base_fault_kind_is_available(sim: DSOrderSim) -> None:
    """The base's fault kinds all stay valid on the DSOrder routes (none is shadowed)."""
    for kind in FAULT_KINDS:
        sim.faults.script(FULFILL, [kind])
    assert sim.faults.remaining(FULFILL) == list(FAULT_KINDS)


# --- generation, log and counters ----------------------------------------------------------


def test_generate_is_seeded_and_shaped(clock: ManualClock) -> None:
    """Same seed, same orders: 1..k lines numbered 1000, 2000, ... over the given articles."""
    articles = [f"A-{n}" for n in range(30)]
    first, second = (DSOrderSim(seed=11, clock=clock) for _ in range(2))
    ids = first.generate(40, articles, max_lines=4)
    assert ids == second.generate(40, articles, max_lines=4)
    assert ids == [str(100_001 + n) for n in range(40)]
    orders = [first.order(i) for i in ids]
    assert [o.as_json() for o in orders] == [second.order(i).as_json() for i in ids]
    for order in orders:
        assert 1 <= len(order.lines) <= 4
        assert list(order.lines) == [1000 * (n + 1) for n in range(len(order.lines))]
    every_line = [line for order in orders for line in order.lines.values()]
    assert {line.article_id for line in every_line} <= set(articles) | {
        line.article_id for line in every_line if line.article_id.startswith("ART-UNKNOWN-")
    }
    odd = first.generate(5, articles, fractional_rate=1.0, unknown_rate=1.0)
    odd_lines = [line for i in odd for line in first.order(i).lines.values()]
    assert all(not float(line.quantity).is_integer() for line in odd_lines)
    assert all(line.article_id not in articles for line in odd_lines)
    plain = first.generate(5, articles, fractional_rate=0.0, unknown_rate=0.0)
    plain_lines = [line for i in plain for line in first.order(i).lines.values()]
    assert all(isinstance(line.quantity, int) for line in plain_lines)
    assert all(line.article_id in articles for line in plain_lines)


def test_background_generator_submits_until_stopped(sim: DSOrderSim) -> None:
    """start_generator keeps submitting orders at the given rate until stop_generator."""
    sim.start_generator(6000, ["ART-000001", "ART-000002"])
    deadline = time.monotonic() + 3
    while len(sim.state.orders) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    sim.stop_generator()
    settled = len(sim.state.orders)
    assert settled >= 3
    time.sleep(0.05)
    assert len(sim.state.orders) == settled


def test_submit_order_refuses_bad_input(sim: DSOrderSim) -> None:
    """Python-side submissions refuse duplicates, empty orders and non-positive quantities."""
    sim.submit_order(order_id="X1", lines=[("ART-000001", 1)])
    with pytest.raises(ValueError, match="already exists"):
        sim.submit_order(order_id="X1", lines=[("ART-000001", 1)])
    with pytest.raises(ValueError, match="at least one line"):
        sim.submit_order(lines=[])
    with pytest.raises(ValueError, match="positive"):
        sim.submit_order(lines=[("ART-000001", 0)])
    with pytest.raises(ValueError, match="time zone"):
        DSOrderSim(tz="Mars/Olympus")


def test_request_log_and_counters(sim: DSOrderSim, client: httpx.Client) -> None:
    """The log records route keys, statuses, faults and correlation ids; counters add up."""
    order_id = two_line_order(sim)
    client.get(SUBMITTED, headers={"X-Correlation-ID": "corr-1"})
    client.get(SUBMITTED)
    fulfil(client, order_id, report(1000, "ART-000001", 1))
    fulfil(client, order_id, report(1000, "ART-000001", 2, True), report(1000 * 9, "A", 1))
    sim.faults.script(CLOSE, ["503"])
    client.post(f"/orders/{order_id}/close")
    close(client, order_id)
    close(client, order_id)
    first = sim.requests[0]
    assert (first.method, first.path, first.route, first.status, first.correlation_id) == (
        "GET",
        "/orders/submitted",
        "GET /orders/submitted",
        200,
        "corr-1",
    )
    assert [r.fault for r in sim.requests].count("503") == 1
    assert sim.count("GET /orders/submitted") == 2
    assert sim.count(FULFILL) == 2
    assert sim.count(f"POST /orders/{order_id}/fulfill") == 2
    assert sim.count(CLOSE) == 3
    assert sim.count() == 7
    order = sim.order(order_id)
    assert (order.pulled, order.fulfil_calls, order.closes, order.close_attempts) == (2, 2, 1, 2)
    assert [c.warnings for c in order.calls] == [(), ("Order line 9000 was not found, skipping",)]
    stats = sim.state.stats
    assert (stats["pulls"], stats["fulfil_ok"], stats["close_ok"], stats["close_failed"]) == (
        2,
        2,
        1,
        1,
    )
    assert stats["warnings"] == 1
