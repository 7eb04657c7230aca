"""Contract of the Instock CLIENT against the running simulator over loopback HTTP (no mocks).

Every test builds a real `InstockClient` from an `InstockConfig` pointing at an `InstockSim`,
so URLs, pagination, error mapping, retries and headers are exercised on an actual socket.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from syncd.config import InstockConfig
from syncd.connectors.instock import (
    InstockClient,
    Page,
    fulfilled_by_line,
    rfc3339,
    validate_article,
)
from syncd.errors import (
    AlreadyDoneError,
    AuthError,
    PermanentError,
    RetryableError,
    SyncdError,
)
from syncd.http import never_sent
from syncd.sandbox.instock import InstockSim
from tests.contract.clientkit import ClientContract, Connect

OTHER_SITE = "1.1.0-2"
ZERO = {"free": 0, "reserved": 0, "registered": 0}
EVER = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


# --- fixtures and helpers ------------------------------------------------------------------


def make_client(
    sim: InstockSim,
    *,
    page_size: int = 1000,
    site_id: str | None = None,
    token: str | None = None,
) -> InstockClient:
    """A client configured the way the daemon configures it, pointed at `sim`."""
    config = InstockConfig.model_validate(
        {
            "enabled": True,
            "base_url": sim.base_url,
            "token": token if token is not None else sim.token,
            "site_id": sim.site_id if site_id is None else site_id,
            "page_size": page_size,
            "retry": {"max_attempts": 4, "initial_backoff": 0.01, "max_backoff": 0.05},
            "timeouts": {"read": 0.5},
        }
    )
    return InstockClient(config)


@pytest.fixture
def sim() -> Iterator[InstockSim]:
    # retry_after=0: a 429 asks for no wait, so the client may retry it inside its backoff cap.
    with InstockSim(seed=11, articles=60, retry_after=0, slow_seconds=3.0) as running:
        yield running


@pytest.fixture
def client(sim: InstockSim) -> Iterator[InstockClient]:
    with make_client(sim) as instock:
        yield instock


@pytest.fixture(scope="module")
def sim_1000() -> Iterator[InstockSim]:
    with InstockSim(seed=3, articles=1000) as running:
        yield running


@pytest.fixture(scope="module")
def sim_1001() -> Iterator[InstockSim]:
    with InstockSim(seed=4, articles=1001) as running:
        yield running


def ids_of(pages: list[Page], key: str = "article_id") -> list[str]:
    return [item[key] for page in pages for item in page.items]


def assert_well_formed(pages: list[Page]) -> None:
    """has_more and next_cursor agree on every page; only the last one ends the list."""
    assert pages
    for page in pages[:-1]:
        assert page.has_more
        assert page.next_cursor
    assert not pages[-1].has_more
    assert pages[-1].next_cursor is None


def stocked_articles(sim: InstockSim, count: int, minimum: int = 5) -> list[str]:
    """Non-serial articles with at least `minimum` free stock at the virtual site."""
    inventory = sim.state.inventory[sim.site_id]
    found = [
        a
        for a in sim.state.article_ids
        if inventory.get(a) is not None
        and inventory[a].free >= minimum
        and not sim.state.articles[a]["is_serial_numbered"]
    ]
    assert len(found) >= count
    return found[:count]


def fresh_article(sim: InstockSim) -> str:
    """An article that was never decanted: no moves, all-zero stock, not serial-numbered."""
    return next(
        a
        for a in sim.state.article_ids
        if not sim.state.has_moves(a) and not sim.state.articles[a]["is_serial_numbered"]
    )


def emptied_article(sim: InstockSim) -> str:
    """An article decanted then adjusted out: it has moves but all-zero stock."""
    inventory = sim.state.inventory[sim.site_id]
    return next(
        a
        for a in sim.state.article_ids
        if sim.state.has_moves(a) and inventory.get(a) is not None and inventory[a].is_zero()
    )


def new_article(article_id: str, **overrides: Any) -> dict[str, Any]:
    article = {
        "article_id": article_id,
        "name": f"Article {article_id}",
        "is_serial_numbered": False,
        "dimensions": {"x": "1", "y": "2", "z": "3", "uom": "in"},
        "attributes": {"temp_zone": "ambient"},
    }
    return article | overrides


def order_body(order_id: str, *lines: tuple[str, int]) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "placed_at": "2024-05-01T10:00:00Z",
        "attributes": {"wave": "1"},
        "lines": [
            {"line_id": f"{order_id}-{n}", "article_id": article_id, "qty": qty}
            for n, (article_id, qty) in enumerate(lines, start=1)
        ],
    }


def last_record(sim: InstockSim) -> Any:
    return sim.requests[-1]


# --- sites ---------------------------------------------------------------------------------


def test_sites_are_typed(client: InstockClient) -> None:
    """`sites()` lists every site of the organisation with its virtual flag."""
    sites = client.sites()
    assert [(s.site_id, s.is_virtual) for s in sites] == [("1.1.0-1", True), (OTHER_SITE, False)]


def test_site_id_is_discovered_only_when_unambiguous() -> None:
    """Without a configured site the client uses the only visible site, and refuses to guess."""
    with (
        InstockSim(seed=1, articles=10, sites=("ONLY-1",)) as single,
        make_client(single, site_id="") as instock,
    ):
        assert instock.site_id == "ONLY-1"
        assert instock.inventory_one(single.state.article_ids[0]).article_id
    with (
        InstockSim(seed=1, articles=10) as double,
        make_client(double, site_id="") as instock,
        pytest.raises(SyncdError, match="2 sites"),
    ):
        _ = instock.site_id


# --- article pages -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("which", "page_size", "lengths"),
    [
        ("sim_1000", 1000, [1000]),
        ("sim_1000", 999, [999, 1]),
        ("sim_1000", 10, [10] * 100),
        ("sim_1001", 1000, [1000, 1]),
        ("sim_1001", 999, [999, 2]),
        ("sim_1001", 10, [10] * 100 + [1]),
    ],
)
def test_article_pages_stream_every_article_once_at_boundaries(
    request: pytest.FixtureRequest, which: str, page_size: int, lengths: list[int]
) -> None:
    """Article pages cover the list exactly once at the page-size and list-size boundaries."""
    running: InstockSim = request.getfixturevalue(which)
    with make_client(running, page_size=page_size) as instock:
        pages = list(instock.article_pages())
    assert [len(p.items) for p in pages] == lengths
    assert_well_formed(pages)
    ids = ids_of(pages)
    assert len(ids) == len(set(ids))
    assert ids == running.state.article_ids


def test_article_pages_page_size_argument_overrides_config(
    sim: InstockSim, client: InstockClient
) -> None:
    """A per-call page_size is sent as such and still yields every article once."""
    pages = list(client.article_pages(page_size=17))
    assert [len(p.items) for p in pages] == [17, 17, 17, 9]
    assert_well_formed(pages)
    assert ids_of(pages) == sim.state.article_ids
    assert {r.query["page_size"] for r in sim.requests} == {"17"}


def test_article_pages_resume_from_a_cursor(sim: InstockSim, client: InstockClient) -> None:
    """Resuming from a page's next_cursor yields exactly the rest of the list."""
    first = next(iter(client.article_pages(page_size=10)))
    rest = list(client.article_pages(page_size=10, start_cursor=first.next_cursor))
    assert ids_of([first, *rest]) == sim.state.article_ids


def test_empty_list_yields_one_empty_page(sim: InstockSim, client: InstockClient) -> None:
    """A list with no items (moves in an empty window) is one empty, final page."""
    start = datetime(1990, 1, 1, tzinfo=UTC)
    pages = list(client.move_pages(start, start + timedelta(days=1)))
    assert len(pages) == 1
    assert pages[0].items == []
    assert_well_formed(pages)
    assert sim.count("GET /v1/{site_id}/moves") == 1


@pytest.mark.parametrize("bad", [9, 1001, 0, -1])
def test_page_size_outside_bounds_raises_before_any_request(
    sim: InstockSim, client: InstockClient, bad: int
) -> None:
    """page_size outside 10..1000 raises ValueError at the call, before any request is sent."""
    with pytest.raises(ValueError, match="page_size"):
        client.article_pages(page_size=bad)
    with pytest.raises(ValueError, match="page_size"):
        client.inventory_pages(page_size=bad)
    with pytest.raises(ValueError, match="page_size"):
        client.move_pages(*EVER, page_size=bad)
    with pytest.raises(ValueError, match="page_size"):
        client.article_move_pages("x", *EVER, page_size=bad)
    with pytest.raises(ValueError, match="page_size"):
        make_client(sim, page_size=bad)
    assert sim.count() == 0


def test_get_article_is_typed(sim: InstockSim, client: InstockClient) -> None:
    """`get_article` returns the stored article with its dimensions and attributes."""
    article_id = sim.state.article_ids[0]
    article = client.get_article(article_id)
    assert article.model_dump() == sim.state.articles[article_id]


# --- inventory -----------------------------------------------------------------------------


def test_inventory_pages_omit_all_zero_articles(sim: InstockSim, client: InstockClient) -> None:
    """Inventory pages list exactly the non-zero articles once each, with their quantities."""
    pages = list(client.inventory_pages(page_size=10))
    assert_well_formed(pages)
    assert len(pages) > 1
    listed = {item["article_id"]: item["qty"] for page in pages for item in page.items}
    assert len(listed) == len(ids_of(pages))
    inventory = sim.state.inventory[sim.site_id]
    assert listed == {a: s.as_json() for a, s in inventory.items() if not s.is_zero()}
    assert fresh_article(sim) not in listed
    assert emptied_article(sim) not in listed
    assert pages[0].meta["site_id"] == sim.site_id


def test_inventory_pages_list_an_article_with_only_registered_demand(
    sim: InstockSim, client: InstockClient
) -> None:
    """An article with no stock but a registered order line is no longer all-zero, so listed."""
    article = fresh_article(sim)
    client.create_order(order_body("INV-DEMAND", (article, 3)))
    listed = {
        item["article_id"]: item["qty"]
        for page in client.inventory_pages(page_size=10)
        for item in page.items
    }
    assert listed[article] == {"free": 0, "reserved": 0, "registered": 3}


def test_inventory_one_returns_zeros_for_an_unlisted_article(
    sim: InstockSim, client: InstockClient
) -> None:
    """`inventory_one` answers zeros (not an error) for never-decanted and emptied articles."""
    for article in (fresh_article(sim), emptied_article(sim)):
        item = client.inventory_one(article)
        assert item.article_id == article
        assert item.qty.model_dump() == ZERO
    stocked = stocked_articles(sim, 1)[0]
    assert client.inventory_one(stocked).qty.free == sim.stock(stocked).free > 0


def test_inventory_many(sim: InstockSim, client: InstockClient) -> None:
    """`inventory_many` answers the requested ids in order, zero rows included."""
    ids = [*stocked_articles(sim, 2), fresh_article(sim), emptied_article(sim)]
    items = client.inventory_many(ids)
    assert [i.article_id for i in items] == ids
    for item in items:
        stock = sim.stock(item.article_id)
        assert item.qty.model_dump() == {
            "free": stock.free,
            "reserved": stock.reserved,
            "registered": stock.registered,
        }
    assert client.inventory_many([]) == []


def test_inventory_many_limits_and_unknown_ids(sim: InstockSim, client: InstockClient) -> None:
    """More than 1000 ids is refused client-side; an unknown id is a 404 PermanentError."""
    with pytest.raises(ValueError, match="1000"):
        client.inventory_many(["a"] * 1001)
    assert sim.count() == 0
    with pytest.raises(PermanentError) as caught:
        client.inventory_many([sim.state.article_ids[0], "NOSUCH1"])
    assert (caught.value.status, caught.value.code) == (404, "resource_not_found")
    assert "NOSUCH1" in caught.value.message


def test_inventory_many_retries_a_malformed_answer(sim: InstockSim, client: InstockClient) -> None:
    """A cut-off JSON answer to the inventory POST is retried, never parsed as text."""
    ids = stocked_articles(sim, 2)
    sim.faults.script(f"POST /v1/{sim.site_id}/inventory", ["malformed", "drop", "503"])
    items = client.inventory_many(ids)
    assert [i.article_id for i in items] == ids
    assert sim.faults.fired == Counter({"malformed": 1, "drop": 1, "503": 1})


# --- articles: upload and update -----------------------------------------------------------


def test_bulk_upload_of_1000_articles(sim: InstockSim, client: InstockClient) -> None:
    """A bulk upload of exactly 1000 articles is one request and every article is then listed."""
    batch = [new_article(f"BULK{n:04d}") for n in range(1000)]
    before = list(sim.state.article_ids)
    client.upload_articles(batch)
    assert sim.count("POST /v1/articles") == 1
    listed = ids_of(list(client.article_pages()))
    assert sorted(listed) == sorted(before + [a["article_id"] for a in batch])
    assert client.get_article("BULK0999").name == "Article BULK0999"


@pytest.mark.parametrize("size", [0, 1001])
def test_bulk_upload_size_refused_client_side(
    sim: InstockSim, client: InstockClient, size: int
) -> None:
    """An empty batch or one over 1000 articles raises ValueError without a request."""
    with pytest.raises(ValueError, match="1000"):
        client.upload_articles([new_article(f"OVER{n:04d}") for n in range(size)])
    assert sim.count() == 0


def test_bad_article_fails_the_whole_batch(sim: InstockSim, client: InstockClient) -> None:
    """One invalid article fails the batch as resource_cannot_be_created, naming that article."""
    batch = [new_article("GOOD1"), new_article("bad id!"), new_article("GOOD2")]
    with pytest.raises(PermanentError) as caught:
        client.upload_articles(batch)
    error = caught.value
    assert (error.status, error.code) == (400, "resource_cannot_be_created")
    assert "bad id!" in error.message
    assert error.request_id == last_record(sim).request_id
    assert "GOOD1" not in sim.state.articles
    assert "GOOD2" not in sim.state.articles


def test_serial_numbered_article_upload_refused(sim: InstockSim, client: InstockClient) -> None:
    """A serial-numbered article is refused as resource_cannot_be_created, naming it."""
    with pytest.raises(PermanentError) as caught:
        client.upload_articles([new_article("SERIAL1", is_serial_numbered=True)])
    assert caught.value.code == "resource_cannot_be_created"
    assert "SERIAL1" in caught.value.message
    assert "serial" in caught.value.message
    assert "SERIAL1" not in sim.state.articles


def test_existing_article_upload_refused(sim: InstockSim, client: InstockClient) -> None:
    """Upload is create-only: an existing article id fails as resource_cannot_be_created."""
    existing = sim.state.article_ids[0]
    with pytest.raises(PermanentError) as caught:
        client.upload_articles([new_article(existing)])
    assert caught.value.code == "resource_cannot_be_created"
    assert existing in caught.value.message


def test_bulk_upload_with_lost_answer_is_not_sent_again(
    sim: InstockSim, client: InstockClient
) -> None:
    """A bulk upload whose answer was lost (applied, then the connection dropped) is not
    repeated by the client: once sent, a repeat could count twice where the API takes it.
    The failure goes back unclear (retryable, not marked unsent) for a read-back."""
    sim.faults.script("POST /v1/articles", ["drop"])
    with pytest.raises(RetryableError) as caught:
        client.upload_articles([new_article("LOST1"), new_article("LOST2")])
    assert caught.value.code == "connection"
    assert not never_sent(caught.value)
    assert sim.count("POST /v1/articles") == 1
    assert client.get_article("LOST2").name == "Article LOST2"


@pytest.mark.parametrize("fault", ["apply_then_drop", "drop_before_apply", "503", "slow"])
def test_a_create_is_never_repeated_by_the_client_after_it_may_have_been_applied(
    sim: InstockSim, client: InstockClient, fault: str
) -> None:
    """Lost answer (applied or not), 5xx, timeout after sending: one POST each, whatever
    the retry policy allows; only the caller's read-back may decide to send again."""
    sim.faults.script("POST /v1/articles", [fault])
    sim.faults.script(f"POST /v1/{sim.site_id}/orders", [fault])
    (a,) = stocked_articles(sim, 1)
    with pytest.raises(RetryableError):
        client.upload_articles([new_article("ONCE1")])
    with pytest.raises(RetryableError):
        client.create_order(order_body("ORD-ONCE", (a, 1)))
    deadline = time.monotonic() + 5  # a slow answer is logged once it is written
    while sim.count(f"POST /v1/{sim.site_id}/orders") < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sim.count("POST /v1/articles") == 1
    assert sim.count(f"POST /v1/{sim.site_id}/orders") == 1


def test_a_create_refused_unprocessed_is_repeated_by_the_client(
    sim: InstockSim, client: InstockClient
) -> None:
    """A 429 proves the create was not processed: the client repeats it as before."""
    (a,) = stocked_articles(sim, 1)
    sim.faults.script(f"POST /v1/{sim.site_id}/orders", ["429"])
    client.create_order(order_body("ORD-429", (a, 1)))
    assert sim.count(f"POST /v1/{sim.site_id}/orders") == 2
    assert sim.state.site_orders[sim.site_id].count("ORD-429") == 1


def test_update_article_without_moves(sim: InstockSim, client: InstockClient) -> None:
    """A never-decanted article can be updated with a complete record."""
    article_id = fresh_article(sim)
    record = client.get_article(article_id).model_dump()
    client.update_article({**record, "name": "Renamed"})
    assert client.get_article(article_id).name == "Renamed"


def test_update_article_refused_after_moves(sim: InstockSim, client: InstockClient) -> None:
    """An article with moves cannot be updated: resource_cannot_be_updated naming it."""
    article_id = stocked_articles(sim, 1)[0]
    record = client.get_article(article_id).model_dump()
    with pytest.raises(PermanentError) as caught:
        client.update_article({**record, "name": "Renamed"})
    error = caught.value
    assert (error.status, error.code) == (400, "resource_cannot_be_updated")
    assert article_id in error.message
    assert sim.state.articles[article_id]["name"] == record["name"]


def test_update_article_to_serial_numbered_refused(sim: InstockSim, client: InstockClient) -> None:
    """Turning an article serial-numbered is refused as resource_cannot_be_updated."""
    article_id = fresh_article(sim)
    record = client.get_article(article_id).model_dump()
    with pytest.raises(PermanentError) as caught:
        client.update_article({**record, "is_serial_numbered": True})
    assert caught.value.code == "resource_cannot_be_updated"


def test_validate_article_catches_what_instock_refuses(
    sim: InstockSim, client: InstockClient
) -> None:
    """`validate_article` flags the articles Instock would refuse, and passes the rest."""
    refused = [
        new_article("bad id!"),
        new_article(""),
        new_article("SERIAL2", is_serial_numbered=True),
        new_article("NONAME", name="  "),
        {**new_article("X"), "article_id": 12345},
    ]
    for article in refused:
        assert validate_article(article) is not None, article
        with pytest.raises(PermanentError) as caught:
            client.upload_articles([article])
        assert caught.value.code == "resource_cannot_be_created"
    assert "serial" in (validate_article(refused[2]) or "")
    # The API's pattern is anchored at the end of input: a trailing newline is not an id.
    assert validate_article(new_article("TRAILING\n")) is not None
    good = [new_article("VALID.1"), new_article("VALID_2+x")]
    assert all(validate_article(a) is None for a in good)
    client.upload_articles(good)
    assert {"VALID.1", "VALID_2+x"} <= set(sim.state.articles)


# --- orders --------------------------------------------------------------------------------


def test_create_order_and_read_it_back(sim: InstockSim, client: InstockClient) -> None:
    """A created customer order reads back typed, with its lines, at the configured site."""
    a, b = stocked_articles(sim, 2)
    client.create_order(order_body("ORD-1", (a, 2), (b, 1)))
    order = client.get_order("ORD-1")
    assert (order.order_id, order.site_id, order.kind) == ("ORD-1", sim.site_id, "customer")
    assert [(ln.line_id, ln.article_id, ln.qty) for ln in order.lines] == [
        ("ORD-1-1", a, 2),
        ("ORD-1-2", b, 1),
    ]
    assert order.attributes == {"wave": "1"}
    assert sim.stock(a).registered == 2
    listed = [o["order_id"] for page in client.order_pages(page_size=10) for o in page.items]
    assert listed == sim.state.site_orders[sim.site_id]
    assert listed[-1] == "ORD-1"


def test_duplicate_create_is_already_done(sim: InstockSim, client: InstockClient) -> None:
    """Creating an existing order id raises AlreadyDoneError, confirmed by a GET of the order."""
    (a,) = stocked_articles(sim, 1)
    body = order_body("ORD-DUP", (a, 1))
    client.create_order(body)
    with pytest.raises(AlreadyDoneError) as caught:
        client.create_order(body)
    assert caught.value.code == "resource_cannot_be_created"
    assert caught.value.status == 400
    routes = [(r.method, r.path) for r in sim.requests[-2:]]
    assert routes == [
        ("POST", f"/v1/{sim.site_id}/orders"),
        ("GET", f"/v1/{sim.site_id}/orders/ORD-DUP"),
    ]
    assert sim.stock(a).registered == 1


def test_create_with_lost_answer_is_not_repeated_by_the_client(
    sim: InstockSim, client: InstockClient
) -> None:
    """A create whose answer is dropped is not sent again here (an outbox read-back settles
    it), so it is never doubled, even where Instock would take the id twice."""
    (a,) = stocked_articles(sim, 1)
    sim.duplicate_order_ids = "accept"
    sim.faults.script(f"POST /v1/{sim.site_id}/orders", ["drop"])
    with pytest.raises(RetryableError):
        client.create_order(order_body("ORD-DROP", (a, 2)))
    assert sim.state.site_orders[sim.site_id].count("ORD-DROP") == 1
    assert sim.state.duplicate_orders == []
    assert sim.stock(a).registered == 2


def test_create_with_unknown_article_is_404(sim: InstockSim, client: InstockClient) -> None:
    """An order line with an unknown article is PermanentError 404 resource_not_found."""
    with pytest.raises(PermanentError) as caught:
        client.create_order(order_body("ORD-UNK", ("NOSUCHARTICLE", 1)))
    error = caught.value
    assert not isinstance(error, AlreadyDoneError)
    assert (error.status, error.code) == (404, "resource_not_found")
    assert "NOSUCHARTICLE" in error.message
    assert "ORD-UNK" not in sim.state.orders


def test_create_with_invalid_body_is_permanent_bad_request(
    sim: InstockSim, client: InstockClient
) -> None:
    """An order without lines is PermanentError bad_request, not mistaken for a duplicate."""
    with pytest.raises(PermanentError) as caught:
        client.create_order({"order_id": "ORD-EMPTY", "lines": []})
    assert not isinstance(caught.value, AlreadyDoneError)
    assert (caught.value.status, caught.value.code) == (400, "bad_request")


def test_update_order_only_while_registered(sim: InstockSim, client: InstockClient) -> None:
    """A registered order can be updated; once advanced, update is resource_cannot_be_updated."""
    a, b = stocked_articles(sim, 2)
    client.create_order(order_body("ORD-UPD", (a, 1)))
    client.update_order(order_body("ORD-UPD", (a, 2), (b, 1)))
    order = client.get_order("ORD-UPD")
    assert [(ln.article_id, ln.qty) for ln in order.lines] == [(a, 2), (b, 1)]
    assert (sim.stock(a).registered, sim.stock(b).registered) == (2, 1)
    client.advance_order("ORD-UPD")
    with pytest.raises(PermanentError) as caught:
        client.update_order(order_body("ORD-UPD", (a, 3)))
    assert (caught.value.status, caught.value.code) == (400, "resource_cannot_be_updated")
    assert "reserved" in caught.value.message


def test_order_lifecycle_status_tasks_and_fulfilment(
    sim: InstockSim, client: InstockClient
) -> None:
    """Registered -> reserved -> done: typed status lines, ordertasks, fulfilled = requested."""
    a, b, c = stocked_articles(sim, 3)
    requested = {"ORD-LIFE-1": 1, "ORD-LIFE-2": 3, "ORD-LIFE-3": 2}
    started = datetime.now(UTC) - timedelta(seconds=2)
    client.create_order(order_body("ORD-LIFE", (a, 1), (b, 3), (c, 2)))

    status = client.order_status("ORD-LIFE")
    assert status.order_status == "registered"
    assert not status.terminal
    assert status.ordertask_ids == [""]
    assert status.task_ids == []
    assert {ln.line_id: ln.qty.requested for ln in status.lines} == requested
    assert all(ln.qty.reserved == 0 for ln in status.lines)
    assert status.lines[0].qty.free == sim.stock(a).free

    client.advance_order("ORD-LIFE")
    status = client.order_status("ORD-LIFE")
    assert status.order_status == "reserved"
    assert {ln.line_id: ln.qty.reserved for ln in status.lines} == requested
    assert len(status.task_ids) == 2  # two lines per ordertask
    tasks = [client.get_ordertask(t) for t in status.task_ids]
    assert {t.ordertask_status for t in tasks} == {"reserved"}
    assert {t.order_id for t in tasks} == {"ORD-LIFE"}
    assert fulfilled_by_line(tasks) == {}
    assert set(sim.fulfilled("ORD-LIFE").values()) == {0}

    client.advance_order("ORD-LIFE")
    status = client.order_status("ORD-LIFE")
    assert status.order_status == "done"
    assert status.terminal
    tasks = [client.get_ordertask(t) for t in status.task_ids]
    assert {t.ordertask_status for t in tasks} == {"done"}
    assert any(len(ln.to_cells) == 2 for t in tasks for ln in t.lines)  # a split line
    fulfilled = fulfilled_by_line(tasks)
    assert fulfilled == sim.fulfilled("ORD-LIFE") == requested

    picked: Counter[str] = Counter()
    end = datetime.now(UTC) + timedelta(seconds=2)
    for page in client.move_pages(started, end, page_size=10):
        for move in page.items:
            if move["order_id"] == "ORD-LIFE":
                picked[move["article_id"]] += move["qty"]
    assert picked == {a: 1, b: 3, c: 2}


def test_advance_to_a_given_cell(sim: InstockSim, client: InstockClient) -> None:
    """`advance_order(to_cell_id=...)` routes every to_cells entry to that cell."""
    (a,) = stocked_articles(sim, 1)
    client.create_order(order_body("ORD-CELL", (a, 2)))
    client.advance_order("ORD-CELL", to_cell_id="PORT-09")
    (task_id,) = client.order_status("ORD-CELL").task_ids
    task = client.get_ordertask(task_id)
    assert [(c.to_cell_id, c.qty) for ln in task.lines for c in ln.to_cells] == [("PORT-09", 2)]


def test_ordertask_unknown_is_404(client: InstockClient) -> None:
    """An unknown ordertask id is PermanentError 404 resource_not_found."""
    with pytest.raises(PermanentError) as caught:
        client.get_ordertask("ot-nope")
    assert (caught.value.status, caught.value.code) == (404, "resource_not_found")


def test_cancel_registered_then_again(sim: InstockSim, client: InstockClient) -> None:
    """Cancel of a registered order succeeds; cancelling it again is AlreadyDoneError."""
    (a,) = stocked_articles(sim, 1)
    client.create_order(order_body("ORD-CXL", (a, 2)))
    client.cancel_order("ORD-CXL")
    assert client.order_status("ORD-CXL").order_status == "canceled"
    assert sim.stock(a).registered == 0
    with pytest.raises(AlreadyDoneError) as caught:
        client.cancel_order("ORD-CXL")
    assert caught.value.code == "resource_cannot_be_updated"
    assert caught.value.status == 400
    assert caught.value.request_id


@pytest.mark.parametrize("steps", [1, 2])
def test_cancel_after_fulfilment_started_names_the_status(
    sim: InstockSim, client: InstockClient, steps: int
) -> None:
    """Cancel of a reserved or done order is a PermanentError naming the order's status."""
    (a,) = stocked_articles(sim, 1)
    client.create_order(order_body("ORD-LATE", (a, 1)))
    for _ in range(steps):
        client.advance_order("ORD-LATE")
    expected = "reserved" if steps == 1 else "done"
    with pytest.raises(PermanentError) as caught:
        client.cancel_order("ORD-LATE")
    error = caught.value
    assert not isinstance(error, AlreadyDoneError)
    assert (error.status, error.code) == (400, "resource_cannot_be_updated")
    assert expected in error.message
    assert client.order_status("ORD-LATE").order_status == expected


def test_cancel_unknown_order_is_404(client: InstockClient) -> None:
    """Cancel of an unknown order is PermanentError 404, not AlreadyDone."""
    with pytest.raises(PermanentError) as caught:
        client.cancel_order("ORD-NOPE")
    assert not isinstance(caught.value, AlreadyDoneError)
    assert (caught.value.status, caught.value.code) == (404, "resource_not_found")


# --- moves ---------------------------------------------------------------------------------


def _at(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _shape(move: Any) -> tuple[Any, ...]:
    return (move["article_id"], move["qty"], move["move_timestamp"], move["order_id"])


def test_move_pages_newest_first_inclusive_window(sim: InstockSim, client: InstockClient) -> None:
    """`move_pages(start, end)` yields the moves in [start, end] once each, newest first."""
    moves = sim.state.moves[sim.site_id]
    stamps = sorted({m.ts for m in moves})
    lo, hi = stamps[len(stamps) // 4], stamps[3 * len(stamps) // 4]
    expected = [m.as_json() for m in reversed(moves) if lo <= m.ts <= hi]
    pages = list(client.move_pages(_at(lo), _at(hi), page_size=10))
    assert_well_formed(pages)
    got = [item for page in pages for item in page.items]
    assert [_shape(m) for m in got] == [_shape(m) for m in expected]
    assert got[0]["move_timestamp"] == rfc3339(_at(hi))  # the end bound is included
    assert got[-1]["move_timestamp"] == rfc3339(_at(lo))  # the start bound is included
    stamps_seen = [m["move_timestamp"] for m in got]
    assert stamps_seen == sorted(stamps_seen, reverse=True)
    assert pages[0].meta["site_id"] == sim.site_id


def test_move_pages_filter_by_to_cell(sim: InstockSim, client: InstockClient) -> None:
    """`to_cell_id` narrows the moves to those into that cell."""
    expected = [m for m in sim.state.moves[sim.site_id] if m.to_cell_id == "PORT-01"]
    got = [m for page in client.move_pages(*EVER, to_cell_id="PORT-01") for m in page.items]
    assert len(got) == len(expected) > 0
    assert {m["to_cell_id"] for m in got} == {"PORT-01"}


def test_article_move_pages(sim: InstockSim, client: InstockClient) -> None:
    """`article_move_pages` lists only that article's moves, newest first."""
    article = emptied_article(sim)  # decanted then adjusted out: at least two moves
    expected = [m.as_json() for m in reversed(sim.state.moves[sim.site_id])]
    expected = [m for m in expected if m["article_id"] == article]
    pages = list(client.article_move_pages(article, *EVER, page_size=10))
    got = [m for page in pages for m in page.items]
    assert len(got) >= 2
    assert [_shape(m) for m in got] == [_shape(m) for m in expected]
    assert pages[0].meta["article_id"] == article


def test_adjust_inventory_shows_as_a_move(sim: InstockSim, client: InstockClient) -> None:
    """The debug adjust changes free stock and appears as a move of an adjustment order
    (every move is tied to an ordertask and an order), which the API lists as done."""
    article = fresh_article(sim)
    started = datetime.now(UTC) - timedelta(seconds=2)
    client.adjust_inventory([{"article_id": article, "qty": 7}])
    assert client.inventory_one(article).qty.free == 7
    end = datetime.now(UTC) + timedelta(seconds=2)
    moves = [m for page in client.article_move_pages(article, started, end) for m in page.items]
    assert [(m["qty"], m["to_account_id"]) for m in moves] == [(7, "stock")]
    order_id = moves[0]["order_id"]
    assert order_id
    assert client.get_order(order_id).kind == "adjustment"
    status = client.order_status(order_id)
    assert status.order_status == "done"
    (task_id,) = status.task_ids
    task = client.get_ordertask(task_id)
    assert task.order_id == order_id
    assert [(ln.article_id, [c.qty for c in ln.to_cells]) for ln in task.lines] == [(article, [7])]


def test_rfc3339_refuses_naive_datetimes() -> None:
    """Window bounds are rendered in UTC with a Z; a naive datetime is refused, not guessed."""
    assert rfc3339(datetime(2024, 5, 1, 12, 0, 1, 999_999, tzinfo=UTC)) == "2024-05-01T12:00:01Z"
    assert rfc3339(datetime.fromisoformat("2024-05-01T14:00:00+02:00")) == "2024-05-01T12:00:00Z"
    with pytest.raises(ValueError, match="naive"):
        rfc3339(datetime(2024, 5, 1, 12, 0, 0))


# --- error mapping -------------------------------------------------------------------------


def test_400_is_permanent_with_code_message_and_request_id(
    sim: InstockSim, client: InstockClient
) -> None:
    """A 400 becomes PermanentError carrying code bad_request, the message and the request id."""
    with pytest.raises(PermanentError) as caught:
        list(client.article_pages(start_cursor="!!garbage"))
    error = caught.value
    assert (error.status, error.code) == (400, "bad_request")
    assert "start_cursor" in error.message
    assert error.connector == "instock"
    assert error.request_id == last_record(sim).request_id
    assert sim.count() == 1  # a permanent error is not retried


def test_wrong_token_is_auth_error(sim: InstockSim) -> None:
    """A wrong token is AuthError 401 unauthorized, not retried, with the request id."""
    with make_client(sim, token="not-the-token") as instock, pytest.raises(AuthError) as caught:
        instock.sites()
    error = caught.value
    assert (error.status, error.code) == (401, "unauthorized")
    assert error.message
    assert error.request_id == last_record(sim).request_id
    assert "not-the-token" not in str(error)
    assert sim.count() == 1


def test_expired_token_is_auth_error(sim: InstockSim, client: InstockClient) -> None:
    """A token that expires mid-run surfaces as AuthError on the next request."""
    sim.faults.script("GET /v1/sites", ["token_expired"])
    with pytest.raises(AuthError) as caught:
        client.sites()
    assert (caught.value.status, caught.value.code) == (401, "unauthorized")
    with pytest.raises(AuthError):
        client.get_order("anything")


def test_403_is_auth_error(sim: InstockSim) -> None:
    """A debug endpoint on a physical site is AuthError 403 forbidden with the request id."""
    with make_client(sim, site_id=OTHER_SITE) as physical, pytest.raises(AuthError) as caught:
        physical.adjust_inventory([{"article_id": sim.state.article_ids[0], "qty": 1}])
    error = caught.value
    assert (error.status, error.code) == (403, "forbidden")
    assert "virtual" in error.message
    assert error.request_id == last_record(sim).request_id


def test_404_is_permanent(sim: InstockSim, client: InstockClient) -> None:
    """An unknown order is PermanentError 404 resource_not_found naming the id."""
    with pytest.raises(PermanentError) as caught:
        client.get_order("ORD-MISSING")
    error = caught.value
    assert (error.status, error.code) == (404, "resource_not_found")
    assert "ORD-MISSING" in error.message
    assert error.request_id == last_record(sim).request_id


def test_500_is_retried_then_retryable_error(sim: InstockSim, client: InstockClient) -> None:
    """A persistent 500 is retried max_attempts times, then RetryableError with its code."""
    sim.faults.script("GET /v1/sites", ["500"] * 4)
    with pytest.raises(RetryableError) as caught:
        client.sites()
    error = caught.value
    assert (error.status, error.code) == (500, "internal_server_error")
    assert error.message
    assert error.request_id == last_record(sim).request_id
    assert sim.count("GET /v1/sites") == 4
    assert [s.site_id for s in client.sites()] == ["1.1.0-1", OTHER_SITE]


def test_429_with_long_retry_after_is_handed_back() -> None:
    """A 429 asking for a wait beyond max_backoff is not slept on: RetryableError with retry_after."""
    with InstockSim(seed=2, articles=10, retry_after=5) as running, make_client(running) as instock:
        running.faults.script("GET /v1/sites", ["429"])
        with pytest.raises(RetryableError) as caught:
            instock.sites()
        assert (caught.value.status, caught.value.retry_after) == (429, 5.0)
        assert running.count() == 1


def test_request_id_read_from_either_header(client: InstockClient) -> None:
    """The remote request id is read from Instock-Request-ID or, failing that, Instock-Response-ID."""
    http = client.http
    assert http.remote_request_id(httpx.Response(200, headers={"Instock-Request-ID": "a"})) == "a"
    assert http.remote_request_id(httpx.Response(200, headers={"Instock-Response-ID": "b"})) == "b"


# --- retries of transient faults -----------------------------------------------------------


def test_transient_faults_are_retried_and_the_list_is_exact(
    sim: InstockSim, client: InstockClient
) -> None:
    """429, 503, 500, malformed, drop and slow on list pages are retried; each item comes once."""
    script = ["429", "ok", "503", "ok", "malformed", "ok", "drop", "ok", "500", "slow", "ok"]
    sim.faults.script("GET /v1/articles", script)
    pages = list(client.article_pages(page_size=10))
    ids = ids_of(pages)
    assert ids == sim.state.article_ids
    assert len(ids) == len(set(ids))
    assert_well_formed(pages)
    assert sim.faults.remaining("GET /v1/articles") == []
    assert sim.faults.fired == Counter(
        {"429": 1, "503": 1, "malformed": 1, "drop": 1, "500": 1, "slow": 1}
    )


def test_random_faults_on_inventory_pages(sim: InstockSim, client: InstockClient) -> None:
    """Seeded random 429/503/malformed/drop faults never lose or repeat an inventory row."""
    route = "GET /v1/{site_id}/inventory"
    for kind in ("429", "503", "malformed", "drop"):
        sim.faults.rate(route, kind, 0.1)
    listed = ids_of(list(client.inventory_pages(page_size=10)))
    inventory = sim.state.inventory[sim.site_id]
    assert listed == [
        a for a in sim.state.article_ids if a in inventory and not inventory[a].is_zero()
    ]
    assert sum(sim.faults.fired.values()) > 0


def test_slow_answer_beyond_read_timeout_is_retried(sim: InstockSim, client: InstockClient) -> None:
    """An answer slower than the read timeout is abandoned and retried, not waited for."""
    (a,) = stocked_articles(sim, 1)
    client.create_order(order_body("ORD-SLOW", (a, 1)))
    sim.faults.script(f"GET /v1/{sim.site_id}/orders/ORD-SLOW/status", ["slow"])
    started = time.monotonic()
    assert client.order_status("ORD-SLOW").order_status == "registered"
    assert time.monotonic() - started < 2.0  # slow_seconds is 3: the answer was not awaited
    assert sim.faults.fired["slow"] == 1


# --- correlation ids -----------------------------------------------------------------------


def test_correlation_ids_sent_and_unique(sim: InstockSim, client: InstockClient) -> None:
    """Every request, retries included, carries its own Instock-Correlation-ID seen by Instock."""
    sim.faults.script("GET /v1/sites", ["503"])
    client.sites()
    list(client.article_pages(page_size=10))
    with pytest.raises(PermanentError):
        client.get_order("ORD-NONE")
    records = sim.requests
    assert len(records) == 1 + 1 + 6 + 1
    ids = [r.correlation_id for r in records]
    assert all(ids)
    assert len(set(ids)) == len(ids)


# --- what every client does ----------------------------------------------------------------


class TestInstockClientContract(ClientContract):
    """The Instock client against `InstockSim` meets the cases every client meets."""

    ROUTE = "GET /v1/sites"

    @pytest.fixture
    def connect(self, sim: InstockSim) -> Connect:
        return lambda refused=False: make_client(sim, token="not-the-token" if refused else None)

    def call(self, client: InstockClient) -> object:
        return client.sites()
