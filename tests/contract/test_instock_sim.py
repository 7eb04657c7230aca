"""Contract of the Instock simulator, exercised with raw httpx over loopback (no mocks)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from syncd.sandbox.instock import ORG_ID, InstockSim, parse_rfc3339

WINDOW = {"from_timestamp": "2000-01-01T00:00:00Z", "to_timestamp": "2100-01-01T00:00:00Z"}
OTHER_SITE = "1.1.0-2"


@pytest.fixture
def sim() -> Iterator[InstockSim]:
    with InstockSim(seed=7, articles=250, slow_seconds=0.5, retry_after=3) as running:
        yield running


@pytest.fixture
def client(sim: InstockSim) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {sim.token}"}
    with httpx.Client(base_url=sim.base_url, headers=headers, timeout=5) as http:
        yield http


# --- helpers -----------------------------------------------------------------------------


def walk(client: httpx.Client, path: str, key: str, **params: Any) -> list[dict[str, Any]]:
    """Follow next_cursor to the end, checking has_more/next_cursor agree on every page."""
    items: list[dict[str, Any]] = []
    query = dict(params)
    while True:
        response = client.get(path, params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        items.extend(page[key])
        if not page["has_more"]:
            assert page["next_cursor"] == ""
            return items
        assert page["next_cursor"]
        query["start_cursor"] = page["next_cursor"]


def stocked_article(sim: InstockSim, minimum: int = 2) -> str:
    inventory = sim.state.inventory[sim.site_id]
    return next(
        a for a in sim.state.article_ids if inventory.get(a) and inventory[a].free >= minimum
    )


def fresh_article(sim: InstockSim) -> str:
    """An article that was never decanted: no moves, zero stock, not serial-numbered."""
    return next(
        a
        for a in sim.state.article_ids
        if not sim.state.has_moves(a) and not sim.state.articles[a]["is_serial_numbered"]
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
        "kind": "customer",
        "placed_at": "2024-05-01T10:00:00Z",
        "attributes": {"wave": "1"},
        "lines": [
            {"line_id": f"{order_id}-{n}", "article_id": article_id, "qty": qty}
            for n, (article_id, qty) in enumerate(lines, start=1)
        ],
    }


def create_order(client: httpx.Client, sim: InstockSim, body: dict[str, Any]) -> None:
    response = client.post(f"/{sim.site_id}/orders", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == "Successful operation."


def status_of(client: httpx.Client, sim: InstockSim, order_id: str) -> dict[str, Any]:
    response = client.get(f"/{sim.site_id}/orders/{order_id}/status")
    assert response.status_code == 200, response.text
    return response.json()


def advance(client: httpx.Client, sim: InstockSim, order_id: str) -> httpx.Response:
    return client.post(f"/{sim.site_id}/orders/{order_id}/status", json={})


def error_code(response: httpx.Response) -> tuple[int, str]:
    body = response.json()
    assert set(body) == {"code", "message"}
    return response.status_code, body["code"]


# --- auth, headers, errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", "instock-sandbox-token", "Basic instock-sandbox-token"],
)
def test_requests_without_a_valid_bearer_token_are_401(
    sim: InstockSim, authorization: str | None
) -> None:
    """Missing, wrong or non-Bearer credentials get 401 unauthorized on every endpoint."""
    headers = {"Authorization": authorization} if authorization else {}
    with httpx.Client(base_url=sim.base_url, headers=headers) as anonymous:
        for path in ("/sites", "/articles", f"/{sim.site_id}/inventory"):
            assert error_code(anonymous.get(path)) == (401, "unauthorized")


def test_response_ids_and_correlation_ids(sim: InstockSim, client: httpx.Client) -> None:
    """Both response-id spellings carry one value; the correlation id lands in the log."""
    response = client.get("/sites", headers={"Instock-Correlation-ID": "corr-42"})
    assert response.headers["Instock-Request-ID"] == response.headers["Instock-Response-ID"]
    record = sim.requests[-1]
    assert record.correlation_id == "corr-42"
    assert record.request_id == response.headers["Instock-Request-ID"]


def test_sites_list_virtual_and_physical(client: httpx.Client) -> None:
    """The first site is virtual (debug endpoints work there), the second is not."""
    assert client.get("/sites").json() == {
        "sites": [
            {"site_id": "1.1.0-1", "is_virtual": True},
            {"site_id": OTHER_SITE, "is_virtual": False},
        ]
    }


def test_unknown_ids_are_404_resource_not_found(sim: InstockSim, client: httpx.Client) -> None:
    """Unknown site, article, order and ordertask ids answer 404 in the common error shape."""
    site = sim.site_id
    for path in (
        "/nosite/inventory",
        "/articles/nope",
        f"/{site}/inventory/nope",
        f"/{site}/orders/nope",
        f"/{site}/orders/nope/status",
        f"/{site}/ordertasks/nope",
    ):
        assert error_code(client.get(path)) == (404, "resource_not_found"), path


# --- pagination --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/articles", "/1.1.0-1/inventory", "/1.1.0-1/orders"])
def test_page_size_must_be_10_to_1000(client: httpx.Client, path: str) -> None:
    """page_size below 10, above 1000 or not a number is a 400; the default page is 10."""
    for bad in ("9", "1001", "0", "ten"):
        assert error_code(client.get(path, params={"page_size": bad})) == (400, "bad_request")
    for good in ("10", "1000"):
        assert client.get(path, params={"page_size": good}).status_code == 200
    key = "orders" if path.endswith("orders") else "articles"
    assert len(client.get(path).json()[key]) == 10


def test_moves_page_size_bounds(sim: InstockSim, client: httpx.Client) -> None:
    """The moves list applies the same page_size bounds."""
    path = f"/{sim.site_id}/moves"
    assert client.get(path, params={**WINDOW, "page_size": 9}).status_code == 400
    assert client.get(path, params={**WINDOW, "page_size": 1001}).status_code == 400
    assert len(client.get(path, params=WINDOW).json()["moves"]) == 10


@pytest.mark.parametrize("size", [10, 37, 1000])
def test_article_cursor_walk_returns_every_article_once(
    sim: InstockSim, client: httpx.Client, size: int
) -> None:
    """Walking the article list by cursor yields each article exactly once, in stable order."""
    ids = [a["article_id"] for a in walk(client, "/articles", "articles", page_size=size)]
    assert ids == sorted(sim.state.articles)


def test_orders_cursor_walk_returns_every_order_once(sim: InstockSim, client: httpx.Client) -> None:
    """The orders list pages through the site's orders in creation order, each once."""
    for n in range(5):
        create_order(client, sim, order_body(f"walk-{n}", (stocked_article(sim), 1)))
    orders = walk(client, f"/{sim.site_id}/orders", "orders", page_size=10)
    assert [o["order_id"] for o in orders] == sim.state.site_orders[sim.site_id]
    assert {o["kind"] for o in orders} == {"customer", "reception", "adjustment"}
    assert orders[-1]["order_id"] == "walk-4"


def test_cursor_pagination_is_stable_under_inserts(sim: InstockSim, client: httpx.Client) -> None:
    """Articles uploaded mid-walk never make the walk repeat or skip existing articles."""
    before = sorted(sim.state.articles)
    first = client.get("/articles", params={"page_size": 100}).json()
    upload = {"articles": [new_article("0000000000001"), new_article("9999999999999")]}
    assert client.post("/articles", json=upload).status_code == 200
    rest = walk(client, "/articles", "articles", page_size=100, start_cursor=first["next_cursor"])
    ids = [a["article_id"] for a in first["articles"] + rest]
    assert len(ids) == len(set(ids))
    assert set(before) <= set(ids)


def test_bad_cursors_are_400(sim: InstockSim, client: httpx.Client) -> None:
    """A garbled cursor, or one from another list, is refused instead of silently restarting."""
    assert client.get("/articles", params={"start_cursor": "!!garbage"}).status_code == 400
    inventory_cursor = client.get(f"/{sim.site_id}/inventory").json()["next_cursor"]
    assert client.get("/articles", params={"start_cursor": inventory_cursor}).status_code == 400


# --- inventory ---------------------------------------------------------------------------


def test_inventory_list_omits_all_zero_rows(sim: InstockSim, client: httpx.Client) -> None:
    """The list carries exactly the articles with a non-zero quantity; zero rows stay retrievable."""
    rows = walk(client, f"/{sim.site_id}/inventory", "articles", page_size=10)
    listed = {row["article_id"]: row["qty"] for row in rows}
    inventory = sim.state.inventory[sim.site_id]
    expected = {a: s.as_json() for a, s in inventory.items() if not s.is_zero()}
    assert listed == expected
    zero = [a for a in sim.state.articles if a not in expected]
    assert len(zero) > 10
    single = client.get(f"/{sim.site_id}/inventory/{zero[0]}").json()
    assert single["qty"] == {"reserved": 0, "free": 0, "registered": 0}
    assert single["article_id"] == zero[0]
    assert single["site_id"] == sim.site_id
    assert all(type(v) is int for row in rows for v in row["qty"].values())


def test_inventory_of_multiple_articles(sim: InstockSim, client: httpx.Client) -> None:
    """POST inventory answers the requested ids in order, zero rows included; unknown is 404."""
    ids = [stocked_article(sim), fresh_article(sim)]
    body = client.post(f"/{sim.site_id}/inventory", json={"article_ids": ids}).json()
    assert [row["article_id"] for row in body["articles"]] == ids
    assert body["articles"][1]["qty"] == {"reserved": 0, "free": 0, "registered": 0}
    unknown = client.post(f"/{sim.site_id}/inventory", json={"article_ids": [*ids, "nope"]})
    assert error_code(unknown) == (404, "resource_not_found")
    too_many = client.post(f"/{sim.site_id}/inventory", json={"article_ids": ids * 501})
    assert error_code(too_many) == (400, "bad_request")


def test_adjust_inventory_creates_a_move(sim: InstockSim, client: httpx.Client) -> None:
    """The debug adjust adds to free stock (0 empties it) and writes each change as a move of
    its own adjustment order."""
    article = fresh_article(sim)
    path = f"/{sim.site_id}/inventory"
    assert client.put(path, json={"adjustments": [{"article_id": article, "qty": 15}]}).json() == ""
    assert sim.stock(article).free == 15
    assert client.put(path, json={"adjustments": [{"article_id": article, "qty": 0}]}).is_success
    assert sim.stock(article).free == 0
    moves = walk(client, f"/{sim.site_id}/moves/{article}", "moves", **WINDOW)
    assert [(m["qty"], m["to_account_id"]) for m in moves] == [(15, "adjustment"), (15, "stock")]
    orders = [client.get(f"/{sim.site_id}/orders/{m['order_id']}").json() for m in moves]
    assert [o["kind"] for o in orders] == ["adjustment", "adjustment"]
    assert orders[0]["order_id"] != orders[1]["order_id"]
    negative = client.put(path, json={"adjustments": [{"article_id": article, "qty": -1}]})
    assert error_code(negative) == (400, "bad_request")


def test_debug_endpoints_are_forbidden_on_a_physical_site(
    sim: InstockSim, client: httpx.Client
) -> None:
    """Advance and adjust only work on virtual sites; a physical site answers 403 forbidden."""
    adjust = {"adjustments": [{"article_id": stocked_article(sim), "qty": 1}]}
    assert error_code(client.put(f"/{OTHER_SITE}/inventory", json=adjust)) == (403, "forbidden")
    assert error_code(client.post(f"/{OTHER_SITE}/orders/x/status", json={})) == (
        403,
        "forbidden",
    )


# --- articles ----------------------------------------------------------------------------


def test_bulk_upload_over_1000_is_refused(sim: InstockSim, client: httpx.Client) -> None:
    """1001 articles are refused whole; exactly 1000 are accepted."""
    batch = [new_article(f"bulk{n:05d}") for n in range(1001)]
    assert error_code(client.post("/articles", json={"articles": batch})) == (400, "bad_request")
    assert not any(a.startswith("bulk") for a in sim.state.articles)
    assert client.post("/articles", json={"articles": batch[:1000]}).status_code == 200
    assert sum(a.startswith("bulk") for a in sim.state.articles) == 1000


def test_bulk_upload_is_all_or_nothing(sim: InstockSim, client: httpx.Client) -> None:
    """One invalid article fails the whole batch with an error that names it."""
    batch = [new_article(f"batch{n}") for n in range(5)]
    batch[3] = new_article("bad id!")
    response = client.post("/articles", json={"articles": batch})
    assert error_code(response) == (400, "resource_cannot_be_created")
    assert "bad id!" in response.json()["message"]
    for article in batch:
        assert client.get(f"/articles/{article['article_id']}").status_code == 404
    del batch[3]
    assert client.post("/articles", json={"articles": batch}).status_code == 200
    assert client.get("/articles/batch4").json() == new_article("batch4")


def test_serial_numbered_articles_are_refused(sim: InstockSim, client: httpx.Client) -> None:
    """An article with is_serial_numbered true cannot be uploaded, and fails its batch."""
    batch = [new_article("plain1"), new_article("serial1", is_serial_numbered=True)]
    response = client.post("/articles", json={"articles": batch})
    assert error_code(response) == (400, "resource_cannot_be_created")
    assert "serial1" in response.json()["message"]
    assert "plain1" not in sim.state.articles


def test_existing_article_cannot_be_uploaded_again(sim: InstockSim, client: httpx.Client) -> None:
    """Upload is create-only: an existing article_id fails the batch (updates go through PUT)."""
    existing = fresh_article(sim)
    response = client.post("/articles", json={"articles": [new_article(existing)]})
    assert error_code(response) == (400, "resource_cannot_be_created")
    assert "already exists" in response.json()["message"]


def test_article_update_refused_once_it_has_moves(sim: InstockSim, client: httpx.Client) -> None:
    """PUT replaces an article without moves; after a move (decant or adjust) it is a 400."""
    article = fresh_article(sim)
    updated = new_article(article, name="Renamed")
    assert client.put(f"/articles/{article}", json=updated).status_code == 200
    assert client.get(f"/articles/{article}").json()["name"] == "Renamed"
    sim.adjust_inventory(article, 3)
    refused = client.put(f"/articles/{article}", json=new_article(article, name="Again"))
    assert error_code(refused) == (400, "resource_cannot_be_updated")
    decanted = stocked_article(sim)
    refused = client.put(f"/articles/{decanted}", json=new_article(decanted))
    assert error_code(refused) == (400, "resource_cannot_be_updated")


def test_article_update_needs_a_complete_record(sim: InstockSim, client: httpx.Client) -> None:
    """PUT must carry every field; an unknown article is 404."""
    article = fresh_article(sim)
    partial = {"article_id": article, "name": "Only a name"}
    assert error_code(client.put(f"/articles/{article}", json=partial)) == (400, "bad_request")
    assert error_code(client.put("/articles/nope", json=new_article("nope"))) == (
        404,
        "resource_not_found",
    )


# --- moves -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"from_timestamp": "2000-01-01T00:00:00Z"},
        {"to_timestamp": "2100-01-01T00:00:00Z"},
        {"from_timestamp": "2100-01-01T00:00:00Z", "to_timestamp": "2000-01-01T00:00:00Z"},
        {"from_timestamp": "2000-01-01T00:00:00", "to_timestamp": "2100-01-01T00:00:00"},
    ],
)
def test_moves_need_both_timestamps(
    sim: InstockSim, client: httpx.Client, params: dict[str, str]
) -> None:
    """Moves without both bounds, with from after to, or without an offset are a 400."""
    assert error_code(client.get(f"/{sim.site_id}/moves", params=params)) == (400, "bad_request")
    article = stocked_article(sim)
    assert client.get(f"/{sim.site_id}/moves/{article}", params=params).status_code == 400


def test_moves_come_newest_first_with_order_id(sim: InstockSim, client: httpx.Client) -> None:
    """A full walk yields every move once, newest first, each with a string order_id and qty."""
    moves = walk(client, f"/{sim.site_id}/moves", "moves", page_size=50, **WINDOW)
    stamps = [parse_rfc3339(m["move_timestamp"]) for m in moves]
    assert stamps == sorted(stamps, reverse=True)
    expected = sim.state.moves[sim.site_id]
    assert Counter(str(m) for m in moves) == Counter(str(m.as_json()) for m in expected)
    assert all("order_id" in m and type(m["qty"]) is int and m["qty"] > 0 for m in moves)
    assert all(isinstance(m["order_id"], str) and m["order_id"] for m in moves)


def test_moves_window_is_inclusive_and_filters(sim: InstockSim, client: httpx.Client) -> None:
    """Only moves inside [from, to] come back; to_cell_id narrows the list further."""
    all_moves = sim.state.moves[sim.site_id]
    middle = all_moves[len(all_moves) // 2]
    window = {"from_timestamp": middle.move_timestamp, "to_timestamp": middle.move_timestamp}
    moves = walk(client, f"/{sim.site_id}/moves", "moves", **window)
    assert len(moves) == sum(m.ts == middle.ts for m in all_moves) >= 1
    ports = walk(client, f"/{sim.site_id}/moves", "moves", to_cell_id="PORT-01", **WINDOW)
    assert ports
    assert {m["to_cell_id"] for m in ports} == {"PORT-01"}


def test_article_moves_list_only_that_article(sim: InstockSim, client: httpx.Client) -> None:
    """The per-article moves list has the article id on the page and on every move."""
    article = stocked_article(sim)
    page = client.get(f"/{sim.site_id}/moves/{article}", params=WINDOW).json()
    assert page["article_id"] == article
    assert page["moves"]
    assert {m["article_id"] for m in page["moves"]} == {article}


# --- orders ------------------------------------------------------------------------------


def test_order_goes_registered_reserved_done(sim: InstockSim, client: httpx.Client) -> None:
    """Advance reserves stock and plans ordertasks, then picks: moves carry the order_id."""
    article = stocked_article(sim, minimum=3)
    free = sim.stock(article).free
    create_order(client, sim, order_body("o-1", (article, 3)))
    status = status_of(client, sim, "o-1")
    assert status["order_status"] == "registered"
    assert status["ordertask_ids"] == [""]
    assert status["lines"] == [
        {
            "line_id": "o-1-1",
            "article_id": article,
            "qty": {"requested": 3, "reserved": 0, "free": free},
        }
    ]
    assert sim.stock(article).registered == 3

    first = advance(client, sim, "o-1")
    assert (first.status_code, first.json()) == (201, "")
    status = status_of(client, sim, "o-1")
    assert status["order_status"] == "reserved"
    assert status["ordertask_ids"] != [""]
    assert status["lines"][0]["qty"] == {"requested": 3, "reserved": 3, "free": free - 3}
    stock = sim.stock(article)
    assert (stock.free, stock.reserved, stock.registered) == (free - 3, 3, 0)
    assert sim.fulfilled("o-1") == {"o-1-1": 0}

    assert advance(client, sim, "o-1").status_code == 201
    assert status_of(client, sim, "o-1")["order_status"] == "done"
    stock = sim.stock(article)
    assert (stock.free, stock.reserved, stock.registered) == (free - 3, 0, 0)
    picks = [
        m
        for m in walk(client, f"/{sim.site_id}/moves", "moves", **WINDOW)
        if m["order_id"] == "o-1"
    ]
    assert sum(m["qty"] for m in picks) == 3
    assert sim.fulfilled("o-1") == {"o-1-1": 3}
    assert error_code(advance(client, sim, "o-1")) == (400, "resource_cannot_be_updated")


def test_short_stock_on_advance_cancels_the_order(sim: InstockSim, client: httpx.Client) -> None:
    """When free stock cannot cover the order, advancing it cancels it and releases demand."""
    article = stocked_article(sim)
    free = sim.stock(article).free
    create_order(client, sim, order_body("short-1", (article, free + 1)))
    assert advance(client, sim, "short-1").status_code == 201
    status = status_of(client, sim, "short-1")
    assert status["order_status"] == "canceled"
    assert status["ordertask_ids"] == [""]
    stock = sim.stock(article)
    assert (stock.free, stock.reserved, stock.registered) == (free, 0, 0)
    assert sim.fulfilled("short-1") == {"short-1-1": 0}


def test_pick_moves_before_done_moves_while_reserved_then_done_without_a_move(
    sim: InstockSim, client: httpx.Client
) -> None:
    """`pick_moves="before_done"` (the document does not say which status changes come with
    moves): the picks move on a step that leaves the order reserved with its ordertasks
    done, and the next step turns it done with no move. A cancellation never moves."""
    sim.pick_moves = "before_done"
    article = stocked_article(sim, minimum=5)
    create_order(client, sim, order_body("pk-1", (article, 3)))
    create_order(client, sim, order_body("pk-2", (article, 1)))

    def moves_of(order_id: str) -> list[dict[str, Any]]:
        listed = walk(client, f"/{sim.site_id}/moves", "moves", **WINDOW)
        return [m for m in listed if m["order_id"] == order_id]

    assert advance(client, sim, "pk-1").status_code == 201
    assert moves_of("pk-1") == []  # reserved: no move
    assert advance(client, sim, "pk-1").status_code == 201
    assert status_of(client, sim, "pk-1")["order_status"] == "reserved"
    assert sum(m["qty"] for m in moves_of("pk-1")) == 3
    assert sim.fulfilled("pk-1") == {"pk-1-1": 3}
    assert advance(client, sim, "pk-1").status_code == 201
    assert status_of(client, sim, "pk-1")["order_status"] == "done"
    assert sum(m["qty"] for m in moves_of("pk-1")) == 3  # done: no further move
    assert sim.stock(article).reserved == 0

    assert advance(client, sim, "pk-2").status_code == 201
    sim.cancel_order("pk-2")
    assert moves_of("pk-2") == []
    with pytest.raises(ValueError, match="pick_moves"):
        InstockSim(pick_moves="sometimes")


def test_update_only_while_registered(sim: InstockSim, client: httpx.Client) -> None:
    """PUT replaces a registered customer order; once reserved, or for other kinds, it is a 400."""
    article = stocked_article(sim, minimum=5)
    create_order(client, sim, order_body("upd-1", (article, 1)))
    changed = {**order_body("upd-1", (article, 5)), "org_id": ORG_ID, "site_id": sim.site_id}
    assert client.put(f"/{sim.site_id}/orders/upd-1", json=changed).status_code == 200
    assert client.get(f"/{sim.site_id}/orders/upd-1").json()["lines"][0]["qty"] == 5
    assert sim.stock(article).registered == 5
    sim.advance_order("upd-1")
    refused = client.put(f"/{sim.site_id}/orders/upd-1", json=order_body("upd-1", (article, 2)))
    assert error_code(refused) == (400, "resource_cannot_be_updated")
    reception = next(o for o in sim.state.orders.values() if o.kind == "reception")
    refused = client.put(
        f"/{sim.site_id}/orders/{reception.order_id}",
        json=order_body(reception.order_id, (article, 1)),
    )
    assert error_code(refused) == (400, "resource_cannot_be_updated")


@pytest.mark.parametrize(
    "left_out", ["org_id", "site_id", "order_id", "kind", "placed_at", "attributes", "lines"]
)
def test_update_without_every_parameter_is_refused(
    sim: InstockSim, client: httpx.Client, left_out: str
) -> None:
    """The document: "when updating an order, all parameters must be passed". An update
    missing any one is a 400 bad_request naming it, and the order keeps what it had
    (placed_at is not reset to the time of the update)."""
    article = stocked_article(sim, minimum=5)
    create_order(client, sim, order_body("upd-2", (article, 1)))
    full = {**order_body("upd-2", (article, 3)), "org_id": ORG_ID, "site_id": sim.site_id}
    del full[left_out]
    refused = client.put(f"/{sim.site_id}/orders/upd-2", json=full)
    assert error_code(refused) == (400, "bad_request")
    assert left_out in refused.json()["message"]
    kept = client.get(f"/{sim.site_id}/orders/upd-2").json()
    assert kept["placed_at"] == "2024-05-01T10:00:00Z"
    assert kept["lines"][0]["qty"] == 1


def test_cancel_only_registered(sim: InstockSim, client: httpx.Client) -> None:
    """DELETE status cancels a registered order and releases its demand; otherwise 400."""
    article = stocked_article(sim)
    create_order(client, sim, order_body("c-1", (article, 1)))
    create_order(client, sim, order_body("c-2", (article, 1)))
    assert client.delete(f"/{sim.site_id}/orders/c-1/status").status_code == 200
    assert status_of(client, sim, "c-1")["order_status"] == "canceled"
    assert sim.stock(article).registered == 1
    again = client.delete(f"/{sim.site_id}/orders/c-1/status")
    assert error_code(again) == (400, "resource_cannot_be_updated")
    sim.advance_order("c-2")
    reserved = client.delete(f"/{sim.site_id}/orders/c-2/status")
    assert error_code(reserved) == (400, "resource_cannot_be_updated")


def test_order_with_unknown_article_is_404(sim: InstockSim, client: httpx.Client) -> None:
    """An order line naming an article that was never uploaded fails the create with 404."""
    body = order_body("unk-1", (stocked_article(sim), 1), ("not_uploaded", 1))
    response = client.post(f"/{sim.site_id}/orders", json=body)
    assert error_code(response) == (404, "resource_not_found")
    assert "unk-1" not in sim.state.orders


def test_duplicate_order_id_cannot_be_created(sim: InstockSim, client: httpx.Client) -> None:
    """Re-creating an existing order id (e.g. a retry after a crash) is resource_cannot_be_created."""
    body = order_body("dup-1", (stocked_article(sim), 1))
    create_order(client, sim, body)
    response = client.post(f"/{sim.site_id}/orders", json=body)
    assert error_code(response) == (400, "resource_cannot_be_created")
    assert "already exists" in response.json()["message"]


def test_order_create_validation(sim: InstockSim, client: httpx.Client) -> None:
    """Only customer orders with valid ids and positive integer quantities are accepted."""
    article = stocked_article(sim)
    kind = order_body("k-1", (article, 1)) | {"kind": "reception"}
    assert error_code(client.post(f"/{sim.site_id}/orders", json=kind)) == (
        400,
        "resource_cannot_be_created",
    )
    for bad in (order_body("bad id", (article, 1)), order_body("q-1", (article, 0))):
        assert error_code(client.post(f"/{sim.site_id}/orders", json=bad)) == (400, "bad_request")
    fractional = order_body("q-2", (article, 1))
    fractional["lines"][0]["qty"] = 1.5
    assert client.post(f"/{sim.site_id}/orders", json=fractional).status_code == 400
    unknown_site = client.post("/nosite/orders", json=order_body("s-1", (article, 1)))
    assert error_code(unknown_site) == (404, "resource_not_found")


def test_ordertasks_are_immutable_once_terminal(sim: InstockSim, client: httpx.Client) -> None:
    """Ordertasks appear on reserve, end done, and nothing changes them after the order is done."""
    first, second = stocked_article(sim), stocked_article(sim, minimum=4)
    create_order(client, sim, order_body("ot-1", (first, 1), (second, 4)))
    assert advance(client, sim, "ot-1").status_code == 201
    task_ids = status_of(client, sim, "ot-1")["ordertask_ids"]
    reserved = [client.get(f"/{sim.site_id}/ordertasks/{t}").json() for t in task_ids]
    assert {t["ordertask_status"] for t in reserved} == {"reserved"}
    cells = [c for t in reserved for line in t["lines"] for c in line["to_cells"]]
    assert all(set(c) == {"to_cell_id", "qty"} and type(c["qty"]) is int for c in cells)
    assert sum(c["qty"] for c in cells) == 5

    assert advance(client, sim, "ot-1").status_code == 201
    done = [client.get(f"/{sim.site_id}/ordertasks/{t}").json() for t in task_ids]
    assert {t["ordertask_status"] for t in done} == {"done"}
    assert advance(client, sim, "ot-1").status_code == 400
    assert client.delete(f"/{sim.site_id}/orders/ot-1/status").status_code == 400
    sim.adjust_inventory(first, 0)
    assert status_of(client, sim, "ot-1")["ordertask_ids"] == task_ids
    assert [client.get(f"/{sim.site_id}/ordertasks/{t}").json() for t in task_ids] == done
    assert sim.fulfilled("ot-1") == {"ot-1-1": 1, "ot-1-2": 4}


def test_advance_to_a_given_cell(sim: InstockSim, client: httpx.Client) -> None:
    """to_cell_id in the advance body becomes the ordertask and pick-move target cell."""
    article = stocked_article(sim)
    create_order(client, sim, order_body("cell-1", (article, 2)))
    path = f"/{sim.site_id}/orders/cell-1/status"
    assert client.post(path, json={"to_cell_id": "VM-TIY6J-P001"}).status_code == 201
    assert client.post(path, json={}).status_code == 201
    assert {m.to_cell_id for m in sim.moves_for_order("cell-1")} == {"VM-TIY6J-P001"}
    assert error_code(client.post(path, content=b"")) == (400, "bad_request")


def test_python_advance_matches_the_endpoint(sim: InstockSim, client: httpx.Client) -> None:
    """sim.advance_order drives the same state machine the debug endpoint does."""
    create_order(client, sim, order_body("py-1", (stocked_article(sim), 1)))
    assert sim.advance_order("py-1") == "reserved"
    assert sim.advance_order("py-1") == "done"
    assert status_of(client, sim, "py-1")["order_status"] == "done"
    assert sum(m.qty for m in sim.moves_for_order("py-1")) == 1


def test_same_seed_same_data() -> None:
    """The generator is deterministic for a seed (apart from timestamps relative to now)."""
    first, second = InstockSim(seed=3, articles=50), InstockSim(seed=3, articles=50)
    assert first.state.articles == second.state.articles
    assert first.state.inventory == second.state.inventory
    assert list(first.state.orders) == list(second.state.orders)


# --- faults ------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "status"), [("429", 429), ("500", 500), ("503", 503)])
def test_status_faults(sim: InstockSim, client: httpx.Client, kind: str, status: int) -> None:
    """Scripted status faults answer once with the error, then the route recovers."""
    sim.faults.script("GET /v1/articles", [kind])
    response = client.get("/articles")
    assert response.status_code == status
    if kind == "429":
        assert response.headers["Retry-After"] == "3"
    assert client.get("/articles").status_code == 200


def test_slow_fault_times_the_client_out(sim: InstockSim, client: httpx.Client) -> None:
    """A slow answer outlasts the client timeout, which surfaces as httpx.ReadTimeout."""
    sim.faults.script("GET /v1/{site_id}/inventory", ["slow"])
    with pytest.raises(httpx.ReadTimeout):
        client.get(f"/{sim.site_id}/inventory", timeout=0.1)


def test_drop_fault_breaks_the_body(sim: InstockSim, client: httpx.Client) -> None:
    """A dropped connection mid-body raises an httpx transport error, after the create happened."""
    sim.faults.script("POST /v1/{site_id}/orders", ["drop"])
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(f"/{sim.site_id}/orders", json=order_body("drop-1", (stocked_article(sim), 1)))
    assert "drop-1" in sim.state.orders


def test_malformed_fault_is_unparseable(sim: InstockSim, client: httpx.Client) -> None:
    """A malformed answer is a 200 whose body is not JSON."""
    sim.faults.script(f"GET /v1/{sim.site_id}/inventory", ["malformed"])
    response = client.get(f"/{sim.site_id}/inventory")
    assert response.status_code == 200
    with pytest.raises(ValueError, match="Expecting"):
        response.json()


def test_token_expired_until_renewed(sim: InstockSim, client: httpx.Client) -> None:
    """After token_expired every call is 401 unauthorized until the token is renewed."""
    sim.faults.script("GET /v1/sites", ["token_expired"])
    assert error_code(client.get("/sites")) == (401, "unauthorized")
    assert error_code(client.get("/articles")) == (401, "unauthorized")
    sim.renew_token("fresh-token")
    assert client.get("/articles").status_code == 401
    assert client.get("/articles", headers={"Authorization": "Bearer fresh-token"}).is_success


def test_fault_rate_is_seeded(sim: InstockSim, client: httpx.Client) -> None:
    """A rate of 1 fires on every request of its route and leaves other routes alone."""
    sim.faults.rate("GET /v1/articles", "503", 1.0)
    assert [client.get("/articles").status_code for _ in range(3)] == [503, 503, 503]
    assert client.get("/sites").status_code == 200


def test_request_log_and_counters(sim: InstockSim, client: httpx.Client) -> None:
    """Counters answer per concrete path and per route pattern; the log keeps statuses."""
    client.get(f"/{sim.site_id}/inventory", params={"page_size": 20})
    client.get(f"/{OTHER_SITE}/inventory")
    client.get("/articles/nope")
    assert sim.count(f"GET /v1/{sim.site_id}/inventory") == 1
    assert sim.count("GET /v1/{site_id}/inventory") == 2
    assert sim.count("GET /v1/articles/{article_id}") == 1
    assert sim.count() == 3
    assert [r.status for r in sim.requests] == [200, 200, 404]
    assert sim.requests[0].query == {"page_size": "20"}


def test_every_move_belongs_to_an_ordertask_of_its_order() -> None:
    """As the document says (each action of the ASRS is attributed to exactly one ordertask,
    which belongs to one order, and every sample move has an order_id): every move of the
    seeded history and of a debug adjustment carries an order_id whose order has a done
    ordertask moving that article, with the same total quantity."""
    with InstockSim(seed=5, articles=200) as sim:
        article = next(iter(sim.state.articles))
        sim.adjust_inventory(article, 3)
        with sim.state.lock:
            moves = sim.state.moves[sim.site_id]
            assert len(moves) > 200
            moved: dict[tuple[str, str], int] = {}
            for move in moves:
                assert move.order_id, move.as_json()
                key = (move.order_id, move.article_id)
                moved[key] = moved.get(key, 0) + move.qty
            tasked: dict[tuple[str, str], int] = {}
            for order_id in {o for o, _ in moved}:
                order = sim.state.orders[order_id]
                assert order.ordertask_ids, order_id
                for task_id in order.ordertask_ids:
                    task = sim.state.ordertasks[task_id]
                    assert task.order_id == order_id
                    assert task.status == "done"
                    for line in task.lines:
                        key = (order_id, line["article_id"])
                        tasked[key] = tasked.get(key, 0) + sum(c["qty"] for c in line["to_cells"])
            assert {k: v for k, v in tasked.items() if k in moved} == moved
            kinds = {sim.state.orders[o].kind for o, _ in moved}
            assert kinds == {"customer", "reception", "adjustment"}
