"""Contract of the Instock JOBS: real loopback HTTP to the simulator, real SQLite state files.

Each test drives the jobs the way the daemon does (`run_job` on a registered spec, then the
`outbox.send` job), with host input dropped as files into `<host>/inbox/` and host output
read back from `<host>/outbox/`. Nothing is mocked: what is asserted is what Instock (the
simulator's state and request log), the state DB and the host directory end up holding.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import syncd.jobs  # noqa: F401 - fills the job and destination registries
from syncd.config import Settings
from syncd.jobs import REGISTRY
from syncd.jobs.instock_inventory import STREAM as INVENTORY_STREAM
from syncd.jobs.instock_moves import STREAM as MOVES_STREAM
from syncd.jobs.runner import RunResult, run_job
from syncd.sandbox.instock import InstockSim
from syncd.state import Store

SEED = 21
INVENTORY_ROUTE = "GET /v1/{site_id}/inventory"
ORDERS_ROUTE = "POST /v1/{site_id}/orders"


# --- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture
def sim() -> Iterator[InstockSim]:
    # retry_after=0: an injected 429 asks for no wait, so retries stay inside the backoff cap.
    with InstockSim(seed=SEED, articles=30, retry_after=0) as running:
        yield running


@pytest.fixture
def make_cfg(make_settings: Any, tmp_path: Path) -> Callable[..., Settings]:
    """Settings pointing at a simulator, a host dir and a fresh (migrated) state DB."""

    def make(sim: InstockSim, name: str = "a", **jobs: dict[str, Any]) -> Settings:
        root = tmp_path / name
        settings: Settings = make_settings(
            daemon={"state_dir": str(root / "state")},
            connectors={
                "instock": {
                    "enabled": True,
                    "base_url": sim.base_url,
                    "token": sim.token,
                    "site_id": sim.site_id,
                    "page_size": 100,
                    "retry": {"max_attempts": 4, "initial_backoff": 0.01, "max_backoff": 0.05},
                }
            },
            host={"dir": str(root / "host"), "settle_time": 0},
            outbox={"initial_backoff": 0.01, "max_backoff": 0.05},
            jobs={name: {"options": options} for name, options in jobs.items()},
        )
        Store.open(settings.db_path).close()  # migrate once; jobs open it with migrate=False
        (settings.host_dir / "inbox").mkdir(parents=True, exist_ok=True)
        return settings

    return make


@pytest.fixture
def cfg(sim: InstockSim, make_cfg: Callable[..., Settings]) -> Settings:
    return make_cfg(sim)


def run(settings: Settings, job: str, *, expect: str = "ok", **kw: Any) -> RunResult:
    result = run_job(REGISTRY[job], settings, trigger="test", **kw)
    assert result.status == expect, result.error
    return result


def send(settings: Settings) -> Counter[str]:
    return Counter(run(settings, "outbox.send").counts)


_dropped = Counter[str]()


def drop(settings: Settings, feed: str, text: str, ext: str = "csv") -> None:
    """The host drops a file into its inbox; `host.inbox` loads it at once."""
    _dropped[feed] += 1
    name = f"{feed}-{_dropped[feed]:04d}-{time.monotonic_ns()}.{ext}"
    (settings.host_dir / "inbox" / name).write_text(text)
    result = run(settings, "host.inbox")
    assert result.counts.get("files_archived") == 1, result.counts


def csv_text(header: str, rows: list[str]) -> str:
    return "\n".join([header, *rows]) + "\n"


def articles_csv(rows: list[tuple[str, str]]) -> str:
    """A catalog snapshot; every article has dimensions in cm (sent to Instock in metres)."""
    header = "article_id,name,dim_x,dim_y,dim_z,dim_uom"
    return csv_text(header, [f"{a},{n},10,20,30,cm" for a, n in rows])


def outbox_rows(settings: Settings, stream: str) -> list[list[dict[str, Any]]]:
    """The rows of each host outbox file of a stream, file by file in name (= intent) order."""
    files = sorted((settings.host_dir / "outbox").glob(f"{stream}-*.jsonl"))
    return [[json.loads(line) for line in f.read_text().splitlines()] for f in files]


def db(settings: Settings) -> Store:
    return Store.open(settings.db_path, migrate=False)


def query(settings: Settings, sql: str, params: Any = ()) -> list[dict[str, Any]]:
    with db(settings) as store:
        return store.query(sql, params)


def capture_bodies(sim: InstockSim, method: str, pattern: str) -> list[Any]:
    """Record the JSON body of every request that reaches the handler of one route."""
    bodies: list[Any] = []
    router = sim.server.router
    for index, route in enumerate(router._routes):
        if route.method == method and route.pattern == pattern:
            original = route.handler

            def recording(request: Any, original: Any = original) -> Any:
                bodies.append(request.json)
                return original(request)

            router._routes[index] = dataclasses.replace(route, handler=recording)
    return bodies


def moved_article(sim: InstockSim) -> str:
    """An article Instock already has with moves (so it can no longer be updated)."""
    with sim.state.lock:
        return next(
            a
            for a in sim.state.article_ids
            if sim.state.has_moves(a) and not sim.state.articles[a]["is_serial_numbered"]
        )


def fresh_article(sim: InstockSim) -> str:
    """An article Instock has without moves or stock (still updatable)."""
    with sim.state.lock:
        inventory = sim.state.inventory[sim.site_id]
        return next(
            a
            for a in sim.state.article_ids
            if not sim.state.has_moves(a)
            and not sim.state.articles[a]["is_serial_numbered"]
            and (a not in inventory or inventory[a].is_zero())
        )


def stocked_articles(sim: InstockSim, n: int, minimum: int = 5) -> list[str]:
    with sim.state.lock:
        inventory = sim.state.inventory[sim.site_id]
        found = [
            a for a in sim.state.article_ids if a in inventory and inventory[a].free >= minimum
        ]
    assert len(found) >= n
    return found[:n]


def open_rejects(settings: Settings, source: str) -> list[dict[str, Any]]:
    with db(settings) as store:
        return store.list_rejects(status="open", source=source)


# --- articles ------------------------------------------------------------------------------


def test_new_articles_are_uploaded_in_bulks_of_at_most_1000(
    sim: InstockSim, cfg: Settings
) -> None:
    """More than 1000 new host articles go out as bulk uploads of at most 1000 articles each,
    every one of them once, converted to Instock's units."""
    bodies = capture_bodies(sim, "POST", "/v1/articles")
    catalog = [(f"B{n:05d}", f"Bulk article {n}") for n in range(1100)]
    drop(cfg, "articles", articles_csv(catalog))
    result = run(cfg, "instock.articles")
    assert result.counts["upload"] == 1100
    assert send(cfg)["pushed"] == 2

    assert [len(b["articles"]) for b in bodies] == [1000, 100]
    assert all(r.status == 200 for r in sim.requests if r.route == "POST /v1/articles")
    sent = [a["article_id"] for b in bodies for a in b["articles"]]
    assert sorted(sent) == [a for a, _ in catalog]
    with sim.state.lock:
        assert sim.state.articles["B00042"]["dimensions"] == {
            "x": "0.1",
            "y": "0.2",
            "z": "0.3",
            "uom": "m",
        }
        assert all(a in sim.state.articles for a, _ in catalog)
    statuses = query(cfg, "SELECT status, count(*) AS n FROM instock_article_sync GROUP BY 1")
    assert statuses == [{"status": "accepted", "n": 1100}]


def test_unchanged_catalog_makes_zero_requests(sim: InstockSim, cfg: Settings) -> None:
    """Once Instock has accepted the catalog, neither the job nor the sender makes a request,
    even when the host drops the same catalog again."""
    catalog = [(f"U{n:03d}", f"Unchanged {n}") for n in range(20)]
    drop(cfg, "articles", articles_csv(catalog))
    run(cfg, "instock.articles")
    send(cfg)
    assert sim.count("POST /v1/articles") == 1

    before = sim.count()
    result = run(cfg, "instock.articles")
    assert result.counts == {"skip": 20}
    assert send(cfg) == Counter()
    drop(cfg, "articles", articles_csv(catalog))  # the same snapshot again
    run(cfg, "instock.articles")
    send(cfg)
    assert sim.count() == before
    assert query(cfg, "SELECT count(*) AS n FROM outbox WHERE status = 'pending'") == [{"n": 0}]


def test_changed_article_is_updated_with_put(sim: InstockSim, cfg: Settings) -> None:
    """An accepted article whose host content changes is sent as one PUT of the whole record,
    not uploaded again, and only that article is sent."""
    catalog = [("C001", "First name"), ("C002", "Other")]
    drop(cfg, "articles", articles_csv(catalog))
    run(cfg, "instock.articles")
    send(cfg)
    bodies = capture_bodies(sim, "PUT", "/v1/articles/{article_id}")

    drop(cfg, "articles", articles_csv([("C001", "Second name"), ("C002", "Other")]))
    result = run(cfg, "instock.articles")
    assert result.counts["update"] == 1
    assert result.counts["skip"] == 1
    before_posts = sim.count("POST /v1/articles")
    assert send(cfg)["pushed"] == 1
    assert sim.count("POST /v1/articles") == before_posts
    assert sim.count("PUT /v1/articles/C001") == 1
    assert bodies == [
        {
            "article_id": "C001",
            "name": "Second name",
            "is_serial_numbered": False,
            "attributes": {},
            "dimensions": {"x": "0.1", "y": "0.2", "z": "0.3", "uom": "m"},
        }
    ]
    with sim.state.lock:
        assert sim.state.articles["C001"]["name"] == "Second name"
    rows = query(cfg, "SELECT status, host_hash = accepted_hash AS same FROM instock_article_sync")
    assert rows == [{"status": "accepted", "same": 1}] * 2


def test_bad_article_in_a_bulk_is_isolated_by_splitting(sim: InstockSim, cfg: Settings) -> None:
    """A bulk holding an article Instock refuses (it exists with moves and different content)
    is split until only that article fails: the others are created, an existing identical one
    counts as accepted without a PUT, and only the bad one becomes a reject with Instock's
    reason."""
    bad = moved_article(sim)
    same = fresh_article(sim)
    with sim.state.lock:
        remote = dict(sim.state.articles[same])
    good = [(f"G{n:03d}", f"Good {n}") for n in range(9)]
    header = "article_id,name,dim_x,dim_y,dim_z,dim_uom,attr.product_category_name,attr.temp_zone"
    dims = remote["dimensions"]
    attrs = remote["attributes"]
    rows = [f"{a},{n},10,20,30,cm,," for a, n in good]
    rows.append(f"{bad},Renamed after decant,10,20,30,cm,,")
    rows.append(
        f"{same},{remote['name']},{dims['x']},{dims['y']},{dims['z']},{dims['uom']},"
        f"{attrs['product_category_name']},{attrs['temp_zone']}"
    )
    drop(cfg, "articles", csv_text(header, sorted(rows)))
    result = run(cfg, "instock.articles")
    assert result.counts["upload"] == 11
    assert send(cfg)["pushed"] == 1

    with sim.state.lock:
        assert all(a in sim.state.articles for a, _ in good)
        assert sim.state.articles[bad]["name"] != "Renamed after decant"
    assert sim.count(f"PUT /v1/articles/{bad}") == 1
    assert sim.count(f"PUT /v1/articles/{same}") == 0
    sync = {
        r["article_id"]: r["status"]
        for r in query(cfg, "SELECT article_id, status FROM instock_article_sync")
    }
    assert sync == {**{a: "accepted" for a, _ in good}, same: "accepted", bad: "refused"}
    (reject,) = open_rejects(cfg, "instock:articles")
    assert reject["reference"] == f"article {bad}"
    assert "cannot be updated as it already has moves" in reject["reason"]
    assert json.loads(reject["payload"])["name"] == "Renamed after decant"
    assert open_rejects(cfg, "outbox:") == []


def test_serial_numbered_articles_are_rejected_before_any_request(
    sim: InstockSim, cfg: Settings
) -> None:
    """A serial-numbered host article becomes a reject without reaching Instock, and stays
    refused (no new reject, no request) while its content does not change."""
    header = "article_id,name,is_serial_numbered"
    drop(cfg, "articles", csv_text(header, ["S001,Chainsaw,true", "S002,Saw chain,false"]))
    before = sim.count()
    bodies = capture_bodies(sim, "POST", "/v1/articles")
    result = run(cfg, "instock.articles")
    assert result.counts["refuse"] == 1
    assert sim.count() == before  # the job itself never talks to Instock
    send(cfg)
    assert [[a["article_id"] for a in b["articles"]] for b in bodies] == [["S002"]]
    (reject,) = open_rejects(cfg, "instock:articles")
    assert reject["reference"] == "article S001"
    assert reject["field"] == "is_serial_numbered"
    assert "serial-numbered" in reject["reason"]

    again = run(cfg, "instock.articles")
    assert again.counts == {"skip": 2}
    assert len(open_rejects(cfg, "instock:articles")) == 1


def test_retried_reject_is_planned_again(sim: InstockSim, cfg: Settings) -> None:
    """`syncd rejects retry` on an article reject makes the next run plan that article again:
    once the cause is fixed in Instock the article goes through; an unfixed one is refused
    again with a new reject."""
    header = "article_id,name,is_serial_numbered"
    # Instock holds R001 as serial-numbered: the host's version is refused on the PUT.
    with sim.state.lock:
        sim.state.put_article(
            {
                "article_id": "R001",
                "name": "Old",
                "is_serial_numbered": True,
                "dimensions": {},
                "attributes": {},
            }
        )
    drop(cfg, "articles", csv_text(header, ["R001,Fixed name,false", "R002,Serial,true"]))
    run(cfg, "instock.articles")
    send(cfg)
    rejects = {r["reference"]: r for r in open_rejects(cfg, "instock:articles")}
    assert set(rejects) == {"article R001", "article R002"}
    assert "Serial-numbered articles cannot be updated" in rejects["article R001"]["reason"]

    # The operator fixes R001 in Instock, then retries both rejects.
    with sim.state.lock:
        sim.state.put_article({**sim.state.articles["R001"], "is_serial_numbered": False})
    with db(cfg) as store:
        for reject in rejects.values():
            assert store.retry_reject(reject["id"]) == "retry"
    result = run(cfg, "instock.articles")
    assert result.counts["retried"] == 2
    assert result.counts["upload"] == 1  # R001 planned again
    assert result.counts["refuse"] == 1  # R002 is still serial-numbered
    send(cfg)
    with sim.state.lock:
        assert sim.state.articles["R001"]["name"] == "Fixed name"
    statuses = {
        r["reference"]: r["status"]
        for r in query(cfg, "SELECT reference, status FROM rejects ORDER BY id")
        if r["status"] != "open"
    }
    assert statuses == {"article R001": "retried", "article R002": "retried"}
    assert [r["reference"] for r in open_rejects(cfg, "instock:articles")] == ["article R002"]
    assert query(cfg, "SELECT status FROM instock_article_sync WHERE article_id = 'R001'") == [
        {"status": "accepted"}
    ]
