"""Every list syncd reads, run as a job against a hostile upstream on loopback (real HTTP and
SQLite).

For Instock inventory, moves, orders and ordertasks and DSOrder's submitted orders, each
whole-answer misbehaviour (not JSON, JSON that is not an object, an answer over the size
cap, an answer trickling in) and, for cursor lists, each paging loop (A -> B -> A, a new
cursor forever) must end the run within a bounded time with a classified error, leave
the checkpoint where the stored data is, open an alert where the loop needs an operator,
and let the next good answer through.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

import syncd.jobs  # noqa: F401 - fills the job registry
from syncd import lifecycle
from syncd.config import Settings
from syncd.jobs import REGISTRY
from syncd.jobs.runner import RunResult, run_job
from syncd.state import Store
from tests.configs import sim_settings
from tests.hostile_upstream import (
    HostileUpstream,
    cursor_pages,
    cycle,
    ever_new,
    instock_upstream,
    json_answer,
    oversized,
    raw,
    trickle,
)

SITE = "S1"
DEADLINE = 0.5  # seconds per request in these tests
CAP = 64 * 1024  # bytes per answer in these tests
ATTEMPTS = 2
MAX_PAGES = 6


@pytest.fixture
def up() -> Iterator[HostileUpstream]:
    with instock_upstream(SITE) as server:
        yield server


@pytest.fixture
def cfg(up: HostileUpstream, tmp_path: Path) -> Settings:
    bounds = {
        "enabled": True,
        "base_url": up.base_url,
        "token": "hostile-token",
        "retry": {"max_attempts": ATTEMPTS, "initial_backoff": 0.01, "max_backoff": 0.02},
        "request_deadline": DEADLINE,
        "max_response_bytes": CAP,
        "max_pages": MAX_PAGES,
        "timeouts": {"read": 30},  # per read: alone it would never end a trickle
    }
    return sim_settings(
        tmp_path,
        {
            "instock": {**bounds, "site_id": SITE, "environment": "sandbox", "page_size": 10},
            "dsorder": bounds,
        },
    )


def run(settings: Settings, job: str) -> tuple[RunResult, float]:
    started = time.monotonic()
    result = run_job(REGISTRY[job], settings, trigger="test")
    return result, time.monotonic() - started


def rows(settings: Settings, sql: str, params: Any = ()) -> list[dict[str, Any]]:
    with Store.open(settings.db_path, migrate=False) as store:
        return store.query(sql, params)


def checkpoints(settings: Settings) -> dict[str, str]:
    found = rows(settings, "SELECT stream, value FROM checkpoints")
    return {r["stream"]: r["value"] for r in found if not r["stream"].startswith("scan_pages.")}


def open_alerts(settings: Settings, kind: str) -> list[dict[str, Any]]:
    return rows(settings, "SELECT * FROM alerts WHERE kind = ? AND resolved_at IS NULL", [kind])


# --- the lists and a good answer for each -------------------------------------------------


def inventory_item(n: int) -> dict[str, Any]:
    return {"article_id": f"A{n}", "qty": {"free": n + 1, "reserved": 0, "registered": 0}}


def move(n: int) -> dict[str, Any]:
    return {
        "article_id": f"A{n}",
        "qty": 1,
        "move_timestamp": "2026-01-01T00:00:00Z",
        "order_id": "O1",
        "user_id": "u",
    }


def order(n: int) -> dict[str, Any]:
    return {"order_id": f"O{n}", "kind": "customer", "site_id": SITE, "lines": []}


STATUS = {"order_id": "O1", "order_status": "reserved", "ordertask_ids": ["T1"], "lines": []}
TASK = {"ordertask_id": "T1", "order_id": "O1", "ordertask_status": "open", "lines": []}


class Flow(NamedTuple):
    job: str
    path: str  # where the answer under test is served
    key: str  # the list's items key ("" for a single object)
    item: Callable[[int], Any]  # one good record
    stored: str  # SQL showing what the flow stored


LISTS: dict[str, Flow] = {
    "inventory": Flow(
        "instock.inventory",
        f"/{SITE}/inventory",
        "articles",
        inventory_item,
        "SELECT article_id FROM instock_inventory",
    ),
    "moves": Flow("instock.moves", f"/{SITE}/moves", "moves", move, "SELECT * FROM instock_moves"),
    "orders": Flow(
        "instock.orders",
        f"/{SITE}/orders",
        "orders",
        order,
        "SELECT order_id FROM instock_orders",
    ),
    "ordertasks": Flow(
        "instock.orders",
        f"/{SITE}/ordertasks/T1",
        "",
        lambda n: TASK,
        "SELECT * FROM instock_orders WHERE order_status = 'reserved'",  # polled through T1
    ),
    "dsorder": Flow(
        "dsorder.pull",
        "/orders/submitted",
        "",
        lambda n: None,
        "SELECT * FROM dsorder_orders",
    ),
}


def good_answer(name: str) -> Any:
    """What a healthy remote answers on the list's path (one record, last page)."""
    flow = LISTS[name]
    if name == "ordertasks":
        return TASK
    if name == "dsorder":
        return {"success": True, "message": "", "data": [], "warnings": []}
    return {flow.key: [flow.item(0)], "has_more": False}


def script_flow(up: HostileUpstream, name: str, answer: Any, settings: Settings) -> None:
    """Script the list under test with `answer`, and what the flow reads around it as healthy.

    Ordertasks are reached through a mirrored order whose status names one: a first run
    mirrors the order while its status names none yet, so the run under test only differs
    in the ordertask answer.
    """
    job, path = LISTS[name].job, LISTS[name].path
    if name == "ordertasks" and not rows(settings, "SELECT * FROM instock_orders"):
        up.script("GET", f"/{SITE}/orders", json_answer({"orders": [order(1)], "has_more": False}))
        up.script("GET", f"/{SITE}/orders/O1/status", json_answer({**STATUS, "ordertask_ids": []}))
        assert run(settings, job)[0].status == "ok"
        up.script("GET", f"/{SITE}/orders/O1/status", json_answer(STATUS))
    up.script("GET", path, answer)


def expect_failure(settings: Settings, name: str, code: str, bound: float) -> RunResult:
    """The run fails with `code`, within `bound` seconds, moving no checkpoint."""
    job = LISTS[name][0]
    before = checkpoints(settings)
    result, elapsed = run(settings, job)
    assert result.status == "failed", result
    assert f"code={code}" in (result.error or ""), result.error
    assert elapsed < bound, f"{name}: took {elapsed:.1f}s"
    assert checkpoints(settings) == before
    return result


def expect_recovery(up: HostileUpstream, settings: Settings, name: str) -> None:
    """The next good answer goes through: nothing stays blocked."""
    job, _, _, _, stored = LISTS[name]
    script_flow(up, name, json_answer(good_answer(name)), settings)
    result, _ = run(settings, job)
    assert result.status == "ok", result.error
    if name != "dsorder":
        assert rows(settings, stored)


# --- whole answers ---------------------------------------------------------------------------

WHOLE_LISTS = list(LISTS)


NOT_OBJECTS = [b"[]", b"null", b'"Successful operation."', b"42", b'{"articles": [{"art']
# Every shape on one list; on the others (their own decode paths) an array and a cut-off body.
NOT_OBJECT_CASES = [("inventory", body) for body in NOT_OBJECTS] + [
    (name, body) for name in WHOLE_LISTS if name != "inventory" for body in (b"[]", b'{"a": [')
]


@pytest.mark.parametrize(("name", "body"), NOT_OBJECT_CASES)
def test_an_answer_that_is_not_a_json_object_is_malformed_and_classified(
    up: HostileUpstream, cfg: Settings, name: str, body: bytes
) -> None:
    """`[]`, `null`, a string, a number or a cut-off object: a retried malformed answer,
    never an AttributeError with a traceback; the next good answer goes through."""
    script_flow(up, name, raw(body), cfg)
    result = expect_failure(cfg, name, "malformed_response", bound=5)
    assert "AttributeError" not in (result.error or "")
    assert len(up.requests(LISTS[name][1])) == ATTEMPTS  # retried within the budget
    expect_recovery(up, cfg, name)


@pytest.mark.parametrize("name", ["inventory", "moves", "orders"])
@pytest.mark.parametrize(
    "page",
    [
        {"articles": {"a": 1}, "moves": "x", "orders": 7, "has_more": False},
        {"articles": [], "moves": [], "orders": [], "has_more": "yes"},
        {"articles": [], "moves": [], "orders": [], "has_more": True, "next_cursor": 5},
    ],
    ids=["items-not-a-list", "has_more-not-bool", "cursor-not-string"],
)
def test_a_list_page_whose_envelope_cannot_be_paged_on_is_malformed(
    up: HostileUpstream, cfg: Settings, name: str, page: dict[str, Any]
) -> None:
    """A page is an object, but its items are not a list or its paging fields are not
    what they claim: malformed, not a crash or a silently empty list."""
    script_flow(up, name, json_answer(page), cfg)
    expect_failure(cfg, name, "malformed_response", bound=5)
    expect_recovery(up, cfg, name)


def test_dsorder_data_that_is_not_a_list_is_malformed(up: HostileUpstream, cfg: Settings) -> None:
    """A DSOrder envelope whose `data` is an object or a string: malformed, not iterated."""
    for data in ({"order_id": "1"}, "orders"):
        envelope = {"success": True, "message": "", "data": data, "warnings": []}
        script_flow(up, "dsorder", json_answer(envelope), cfg)
        expect_failure(cfg, "dsorder", "malformed_response", bound=5)
    expect_recovery(up, cfg, "dsorder")


@pytest.mark.parametrize("name", WHOLE_LISTS)
@pytest.mark.parametrize("declare_length", [False, True], ids=["streamed", "content-length"])
def test_an_answer_over_the_size_cap_is_refused_once_and_classified(
    up: HostileUpstream, cfg: Settings, name: str, declare_length: bool
) -> None:
    """An answer 16x the cap stops being read at the cap (or at its Content-Length), is
    classified too large, and is not asked for again within the run."""
    script_flow(up, name, oversized(16 * CAP, declare_length=declare_length), cfg)
    result = expect_failure(cfg, name, "answer_too_large", bound=5)
    assert "max_response_bytes" in (result.error or "")
    assert len(up.requests(LISTS[name][1])) == 1
    expect_recovery(up, cfg, name)


@pytest.mark.parametrize("name", WHOLE_LISTS)
def test_a_trickling_answer_ends_at_the_request_deadline(
    up: HostileUpstream, cfg: Settings, name: str
) -> None:
    """A good answer sent one byte every 50 ms (each read succeeds; the whole would take
    many seconds): every attempt ends at the deadline, classified retryable."""
    body = json.dumps(good_answer(name)).encode() + b" " * 200
    script_flow(up, name, trickle(body, 0.05), cfg)
    result = expect_failure(cfg, name, "timeout", bound=ATTEMPTS * DEADLINE + 2)
    assert "request_deadline" in (result.error or "")
    expect_recovery(up, cfg, name)


# --- cursor walks ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["inventory", "moves", "orders"])
def test_a_cursor_seen_before_in_the_scan_ends_it_with_an_alert(
    up: HostileUpstream, cfg: Settings, name: str
) -> None:
    """A -> B -> A (not a cursor repeated at once): the walk stops at the first cursor it
    has seen before, the run fails classified, an alert names the list; a complete scan
    later resolves it."""
    job, path, key, item, _ = LISTS[name]
    up.script("GET", path, cursor_pages(key, cycle("A", "B"), item))
    result, _ = run(cfg, job)
    assert result.status == "failed"
    assert "code=cursor_cycle" in (result.error or ""), result.error
    assert len(up.requests(path)) == 3  # '', A, B: then A again is refused
    alerts = open_alerts(cfg, "pagination")
    assert [a["subject"] for a in alerts] == [f"instock:{name}"]
    expect_recovery(up, cfg, name)
    assert not open_alerts(cfg, "pagination")


@pytest.mark.parametrize("name", ["inventory", "moves", "orders"])
def test_a_cursor_that_is_new_forever_ends_at_the_page_ceiling_with_an_alert(
    up: HostileUpstream, cfg: Settings, name: str
) -> None:
    """Without history the walk stops at the configured `max_pages`, classified and alerted."""
    job, path, key, item, _ = LISTS[name]
    up.script("GET", path, cursor_pages(key, ever_new(), item))
    result, _ = run(cfg, job)
    assert result.status == "failed"
    assert "code=page_ceiling" in (result.error or ""), result.error
    assert len(up.requests(path)) == MAX_PAGES
    assert open_alerts(cfg, "pagination")


def test_inventory_pages_stored_before_a_loop_stay_consistent_with_the_checkpoint(
    up: HostileUpstream, cfg: Settings
) -> None:
    """Pages stored before the loop was seen keep their rows, and the checkpoint points just
    past them; the next scan resumes there and completes."""
    _, path, key, item, _ = LISTS["inventory"]
    up.script("GET", path, cursor_pages(key, cycle("A", "B"), item))
    result, _ = run(cfg, "instock.inventory")
    assert result.status == "failed"
    mirrored = {r["article_id"] for r in rows(cfg, "SELECT article_id FROM instock_inventory")}
    assert mirrored == {"A0", "A1", "A2"}  # the three pages read before A came round again
    position = json.loads(checkpoints(cfg)["instock.inventory.scan"])
    assert (position["scan"], position["cursor"]) == (1, "A")
    # the scan's tally rides with the cursor: the three pages stored, nothing more
    assert (position["tally"]["pages"], position["tally"]["listed"]) == (3, 3)
    expect_recovery(up, cfg, "inventory")
    assert up.requests(path)[-1].query.get("start_cursor") == "A"


def test_the_page_ceiling_follows_the_last_complete_scan(
    up: HostileUpstream, cfg: Settings
) -> None:
    """After a complete scan of 2 pages the ceiling is 2 x 2 + 10 = 14 (below max_pages it
    would be; here max_pages is raised); a scan that hits it raises the next ceiling, so a
    list that really grew passes on a later run."""
    cfg.connectors.instock.max_pages = 1000
    _, path, key, item, _ = LISTS["inventory"]
    pages = {
        "": {key: [item(0)], "has_more": True, "next_cursor": "p2"},
        "p2": good_answer("inventory"),
    }

    def two_pages(handler: Any, query: dict[str, str]) -> None:
        json_answer(pages[query.get("start_cursor", "")])(handler, query)

    up.script("GET", path, two_pages)
    assert run(cfg, "instock.inventory")[0].status == "ok"
    up.log.clear()
    up.script("GET", path, cursor_pages(key, ever_new(), item))
    result, _ = run(cfg, "instock.inventory")
    assert "code=page_ceiling" in (result.error or "")
    assert "2 x 2 pages of the last complete scan + 10" in (result.error or "")
    assert len(up.requests(path)) == 14
    up.log.clear()
    run(cfg, "instock.inventory")  # the next run allows 2 x 14 + 10
    assert len(up.requests(path)) == 38


def test_a_stopping_daemon_does_not_wait_for_a_stuck_answer(
    up: HostileUpstream, cfg: Settings
) -> None:
    """With a long deadline, SIGTERM's stop flag still ends a stalled read within a second:
    the run is recorded as interrupted, not left to the shutdown timeout."""
    cfg.connectors.instock.request_deadline = 60
    up.script("GET", f"/{SITE}/inventory", trickle(b'{"articles": []}', 60))
    timer = threading.Timer(0.3, lifecycle.STOPPING.set)
    timer.start()
    try:
        result, elapsed = run(cfg, "instock.inventory")
    finally:
        timer.cancel()
        lifecycle.STOPPING.clear()
    assert result.status == "interrupted", result
    assert elapsed < 2
