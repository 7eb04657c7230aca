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

    def make(
        sim: InstockSim, name: str = "a", page_size: int = 100, **jobs: dict[str, Any]
    ) -> Settings:
        root = tmp_path / name
        settings: Settings = make_settings(
            daemon={"state_dir": str(root / "state")},
            connectors={
                "instock": {
                    "enabled": True,
                    "base_url": sim.base_url,
                    "token": sim.token,
                    "site_id": sim.site_id,
                    "page_size": page_size,
                    "retry": {"max_attempts": 4, "initial_backoff": 0.01, "max_backoff": 0.05},
                }
            },
            host={"dir": str(root / "host"), "settle_time": 0},
            outbox={"initial_backoff": 0.01, "max_backoff": 0.05},
            jobs={job.replace("_", "."): {"options": opts} for job, opts in jobs.items()},
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


# --- inventory -----------------------------------------------------------------------------


def listed_stock(sim: InstockSim) -> dict[str, dict[str, int]]:
    """What Instock's inventory list shows: every article not all-zero."""
    with sim.state.lock:
        return {
            a: s.as_json()
            for a, s in sorted(sim.state.inventory[sim.site_id].items())
            if not s.is_zero()
        }


def mirror(settings: Settings) -> dict[str, dict[str, int]]:
    rows = query(settings, "SELECT article_id, free, reserved, registered FROM instock_inventory")
    return {r.pop("article_id"): r for r in rows}


def delta_files(settings: Settings) -> list[dict[str, dict[str, Any]]]:
    """Each inventory_deltas file as article_id -> row (an article twice in a file fails)."""
    files = []
    for rows in outbox_rows(settings, "inventory_deltas"):
        by_id = {r["article_id"]: r for r in rows}
        assert len(by_id) == len(rows), "an article appears twice in one delta file"
        files.append(by_id)
    return files


def test_first_scan_mirrors_every_listed_article_and_queues_deltas(
    sim: InstockSim, cfg: Settings
) -> None:
    """The first scan stores every listed article in the mirror and sends one delta per
    article, from zero to Instock's quantities."""
    listed = listed_stock(sim)
    assert len(listed) > 20
    result = run(cfg, "instock.inventory")
    assert result.counts["deltas"] == len(listed)
    assert mirror(cfg) == listed
    send(cfg)
    (deltas,) = delta_files(cfg)
    assert set(deltas) == set(listed)
    for article_id, qty in listed.items():
        row = deltas[article_id]
        assert (row["free_before"], row["reserved_before"], row["registered_before"]) == (0, 0, 0)
        assert (row["free"], row["reserved"], row["registered"]) == (
            qty["free"],
            qty["reserved"],
            qty["registered"],
        )
        assert row["free_delta"] == qty["free"]
        assert row["on_hand"] == qty["free"] + qty["reserved"]


def test_absent_from_the_list_means_zero_and_unchanged_scan_sends_nothing(
    sim: InstockSim, cfg: Settings
) -> None:
    """An article the list stops showing (all-zero) drops to zero in the mirror with a delta
    saying so, a changed one gets a delta, unchanged ones none; a scan with no change queues
    no intent and writes no file."""
    run(cfg, "instock.inventory")
    send(cfg)
    emptied, changed = stocked_articles(sim, 2)
    before = mirror(cfg)
    sim.adjust_inventory(emptied, 0)
    sim.adjust_inventory(changed, 3)
    assert emptied not in listed_stock(sim)

    result = run(cfg, "instock.inventory")
    assert result.counts["deltas"] == 2
    rows = mirror(cfg)
    assert rows[emptied] == {"free": 0, "reserved": 0, "registered": 0}
    assert rows[changed]["free"] == before[changed]["free"] + 3
    send(cfg)
    first, second = delta_files(cfg)
    assert set(second) == {emptied, changed}
    assert second[emptied]["free_before"] == before[emptied]["free"]
    assert second[emptied]["free"] == 0
    assert second[emptied]["free_delta"] == -before[emptied]["free"]
    assert second[changed]["free_delta"] == 3

    outbox_before = query(cfg, "SELECT count(*) AS n FROM outbox")
    quiet = run(cfg, "instock.inventory")
    assert quiet.counts.get("queued", 0) == 0
    assert quiet.counts.get("deltas", 0) == 0
    assert query(cfg, "SELECT count(*) AS n FROM outbox") == outbox_before
    send(cfg)
    assert len(delta_files(cfg)) == 2
    assert mirror(cfg) == {**listed_stock(sim), emptied: rows[emptied]}


def test_reconciliation_file_only_when_discrepancies_change(
    sim: InstockSim, cfg: Settings
) -> None:
    """The stock_discrepancies file is written when the set of host-vs-Instock differences
    changes (new, gone or different quantities), never again for the same set; an empty file
    says the last discrepancy is gone."""
    listed = listed_stock(sim)
    wrong, later, *_ = stocked_articles(sim, 2)
    host_only = fresh_article(sim)
    book = {a: q["free"] + q["reserved"] for a, q in listed.items()}
    host = {**book, wrong: book[wrong] + 10, host_only: 4}
    drop(cfg, "stock", csv_text("article_id,qty", [f"{a},{q}" for a, q in host.items()]))

    run(cfg, "instock.inventory")
    send(cfg)
    (report,) = outbox_rows(cfg, "stock_discrepancies")
    assert sorted(report, key=lambda r: r["article_id"]) == sorted(
        [
            {"article_id": wrong, "host_qty": book[wrong] + 10, "instock_qty": book[wrong],
             "difference": -10},
            {"article_id": host_only, "host_qty": 4, "instock_qty": 0, "difference": -4},
        ],
        key=lambda r: r["article_id"],
    )  # fmt: skip

    run(cfg, "instock.inventory")  # nothing changed: no new report
    send(cfg)
    assert len(outbox_rows(cfg, "stock_discrepancies")) == 1

    sim.adjust_inventory(later, 2)  # Instock changes: a third discrepancy
    run(cfg, "instock.inventory")
    send(cfg)
    reports = outbox_rows(cfg, "stock_discrepancies")
    assert len(reports) == 2
    assert {r["article_id"]: r["difference"] for r in reports[1]} == {
        wrong: -10,
        host_only: -4,
        later: 2,
    }

    # The host corrects its book to Instock's: the report is empty, once.
    fixed = {a: q["free"] + q["reserved"] for a, q in listed_stock(sim).items()}
    drop(cfg, "stock", csv_text("article_id,qty", [f"{a},{q}" for a, q in fixed.items()]))
    run(cfg, "instock.inventory")
    run(cfg, "instock.inventory")
    send(cfg)
    reports = outbox_rows(cfg, "stock_discrepancies")
    assert len(reports) == 3
    assert reports[2] == []
    assert query(cfg, "SELECT count(*) AS n FROM instock_stock_discrepancies") == [{"n": 0}]


@pytest.mark.parametrize("interruption", ["stop", "failed_page"])
def test_interrupted_scan_resumes_from_its_cursor_and_sends_each_delta_once(
    sim: InstockSim, make_cfg: Callable[..., Settings], interruption: str
) -> None:
    """A scan that ends after its first page (a stopping daemon, or a page that keeps failing)
    resumes at the stored cursor: no page before it is read again and every article's change
    is sent exactly once over all scans."""
    cfg = make_cfg(sim, page_size=10)
    listed = listed_stock(sim)
    ids = list(listed)
    assert len(ids) > 20  # three pages of 10
    if interruption == "stop":
        stopping = threading.Event()
        stopping.set()  # the daemon is stopping: the run ends at the first checkpoint
        run(cfg, "instock.inventory", expect="interrupted", stopping=stopping)
    else:
        sim.faults.script(INVENTORY_ROUTE, ["ok", "500", "500", "500", "500"])
        run(cfg, "instock.inventory", expect="failed")
    with db(cfg) as store:
        position = json.loads(store.get_checkpoint(INVENTORY_STREAM) or "{}")
    assert position["scan"] == 1
    assert position["cursor"]
    assert set(mirror(cfg)) == set(ids[:10])
    assert query(cfg, "SELECT count(*) AS n FROM outbox") == [{"n": 0}]

    # Instock moves on meanwhile: an article of the page already read, and a later one.
    early, late = ids[2], ids[25]
    sim.adjust_inventory(early, 4)
    sim.adjust_inventory(late, 6)
    mark = len(sim.requests)
    run(cfg, "instock.inventory")
    resumed = [r for r in sim.requests[mark:] if r.route == INVENTORY_ROUTE]
    assert resumed[0].query.get("start_cursor") == position["cursor"]
    assert len(resumed) == 2  # pages 2 and 3 only
    run(cfg, "instock.inventory")  # the next scan sees the change on the first page
    send(cfg)

    first, second = delta_files(cfg)
    assert set(first) == set(ids)
    assert first[early]["free"] == listed[early]["free"]
    assert first[late]["free"] == listed[late]["free"] + 6
    assert set(second) == {early}
    assert second[early]["free_before"] == listed[early]["free"]
    assert second[early]["free_delta"] == 4
    # Summing every delta sent gives Instock's stock: nothing lost, nothing doubled.
    total = Counter[str]()
    for file in (first, second):
        for article_id, row in file.items():
            total[article_id] += row["free_delta"]
    assert dict(total) == {a: q["free"] for a, q in listed_stock(sim).items()}
