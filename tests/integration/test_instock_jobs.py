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

import httpx
import pytest

import syncd.jobs  # noqa: F401 - fills the job registry
from syncd import metrics
from syncd.clock import iso, parse_iso
from syncd.config import Settings
from syncd.jobs import REGISTRY
from syncd.jobs.instock_inventory import STREAM as INVENTORY_STREAM
from syncd.jobs.instock_moves import STREAM as MOVES_STREAM
from syncd.jobs.runner import RunResult, run_job
from syncd.sandbox.instock import InstockSim
from syncd.state import Store
from tests.configs import FAST_BACKOFF, connector_for, fast_retry, sim_settings
from tests.integration.jobkit import csv_text, drop, open_rejects, query, run

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
def make_cfg(tmp_path: Path) -> Callable[..., Settings]:
    """Settings pointing at a simulator, a host dir and a fresh (migrated) state DB."""

    def make(
        sim: InstockSim, name: str = "a", page_size: int = 100, **jobs: dict[str, Any]
    ) -> Settings:
        return sim_settings(
            tmp_path / name,
            connector_for(sim, page_size=page_size, retry=fast_retry(4)),
            outbox=FAST_BACKOFF,
            jobs={job.replace("_", "."): {"options": opts} for job, opts in jobs.items()},
        )

    return make


@pytest.fixture
def cfg(sim: InstockSim, make_cfg: Callable[..., Settings]) -> Settings:
    return make_cfg(sim)


def send(settings: Settings) -> Counter[str]:
    return Counter(run(settings, "outbox.send").counts)


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


# --- articles ------------------------------------------------------------------------------


def test_new_articles_are_uploaded_in_bulks_of_at_most_1000(sim: InstockSim, cfg: Settings) -> None:
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


def test_article_changed_back_and_forth_is_updated_every_time(
    sim: InstockSim, cfg: Settings
) -> None:
    """An article whose name goes A -> B -> A -> B is updated three times: content that comes
    back is a new update, not mistaken for one already queued (and then never sent)."""
    for name in ("Name A", "Name B", "Name A", "Name B"):
        drop(cfg, "articles", articles_csv([("ABA1", name)]))
        run(cfg, "instock.articles")
        send(cfg)
        with sim.state.lock:
            assert sim.state.articles["ABA1"]["name"] == name
    assert sim.count("POST /v1/articles") == 1
    assert sim.count("PUT /v1/articles/ABA1") == 3
    assert query(cfg, "SELECT status FROM instock_article_sync") == [{"status": "accepted"}]


def test_bad_article_in_a_bulk_is_isolated_by_splitting(
    sim: InstockSim, make_cfg: Callable[..., Settings]
) -> None:
    """A bulk holding an article Instock refuses (it exists with moves and different content)
    is split until only that article fails: the others are created, an existing identical one
    counts as accepted without a PUT, and only the bad one becomes a reject with Instock's
    reason. (Bootstrap off: with it, the first run already knows both existing articles.)"""
    cfg = make_cfg(sim, instock_articles={"bootstrap": False})
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
    sim: InstockSim, make_cfg: Callable[..., Settings]
) -> None:
    """A serial-numbered host article becomes a reject without reaching Instock, and stays
    refused (no new reject, no request) while its content does not change."""
    cfg = make_cfg(sim, instock_articles={"bootstrap": False})
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


def test_retried_reject_is_planned_again(
    sim: InstockSim, make_cfg: Callable[..., Settings]
) -> None:
    """`syncd rejects retry` on an article reject makes the next run plan that article again:
    once the cause is fixed in Instock the article goes through; an unfixed one is refused
    again with a new reject. (Bootstrap off, so R001 takes the upload-and-isolate path.)"""
    cfg = make_cfg(sim, instock_articles={"bootstrap": False})
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
    _, second = delta_files(cfg)
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


def test_reconciliation_file_only_when_discrepancies_change(sim: InstockSim, cfg: Settings) -> None:
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
    assert {r.pop("article_id"): r for r in report} == {
        wrong: {"host_qty": book[wrong] + 10, "instock_qty": book[wrong], "difference": -10},
        host_only: {"host_qty": 4, "instock_qty": 0, "difference": -4},
    }

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


# --- moves ---------------------------------------------------------------------------------

MOVES_ROUTE = "GET /v1/{site_id}/moves"
JOURNAL_FIELDS = (
    "article_id",
    "qty",
    "move_timestamp",
    "user_id",
    "order_id",
    "from_cell_id",
    "to_cell_id",
    "from_account_id",
    "to_account_id",
)


class Clock:
    """One clock for the simulator and the moves job, moved by the test."""

    def __init__(self) -> None:
        self.t = float(int(time.time()))

    def __call__(self) -> float:
        return self.t

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.t, UTC)

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    from syncd.jobs import instock_moves

    clock = Clock()
    monkeypatch.setattr(instock_moves, "utcnow", clock.now)
    return clock


@pytest.fixture
def timed_sim(clock: Clock) -> Iterator[InstockSim]:
    with InstockSim(seed=SEED, articles=60, retry_after=0, clock=clock) as running:
        yield running


MOVES_OPTIONS = {
    # 40 days back covers the simulator's whole history; one-day windows that overlap by
    # six hours make a single run re-read a quarter of each window it already journalled.
    "initial_lookback": 40 * 86400,
    "max_window": 86400,
    "overlap": 6 * 3600,
    "lag": 60,
}


def sim_moves(sim: InstockSim, until: float | None = None) -> Counter[tuple[Any, ...]]:
    with sim.state.lock:
        moves = [m.as_json() for m in sim.state.moves[sim.site_id]]
    return Counter(
        tuple(m[f] for f in JOURNAL_FIELDS)
        for m in moves
        if until is None or datetime.fromisoformat(m["move_timestamp"]).timestamp() <= until
    )


def journalled(settings: Settings) -> Counter[tuple[Any, ...]]:
    rows = [r for file in outbox_rows(settings, "moves") for r in file]
    return Counter(tuple(r[f] for f in JOURNAL_FIELDS) for r in rows)


def assert_watermark_one_lag_behind(cfg: Settings, clock: Clock) -> None:
    """The moves watermark stands at the clock's now less the 60 s lag."""
    with db(cfg) as store:
        mark = store.get_checkpoint(MOVES_STREAM)
    assert mark is not None
    assert parse_iso(mark) == clock.now() - timedelta(seconds=60)


def test_first_run_journals_the_lookback_window_once(
    timed_sim: InstockSim, clock: Clock, make_cfg: Callable[..., Settings]
) -> None:
    """The first run pulls the look-back period in overlapping closed windows and journals
    each move once, in the mirror and in the host files; the watermark ends at now - lag."""
    cfg = make_cfg(timed_sim, instock_moves=MOVES_OPTIONS)
    result = run(cfg, "instock.moves")
    expected = sim_moves(timed_sim)
    assert result.counts["pulled"] > result.counts["journalled"]  # windows overlapped
    assert result.counts["journalled"] == sum(expected.values()) > 50
    send(cfg)
    assert journalled(cfg) == expected
    stored = query(cfg, "SELECT " + ", ".join(JOURNAL_FIELDS) + " FROM instock_moves")
    assert Counter(tuple(r.values()) for r in stored) == expected
    assert_watermark_one_lag_behind(cfg, clock)


def test_overlapping_windows_never_duplicate_and_watermark_follows_the_data(
    timed_sim: InstockSim, clock: Clock, make_cfg: Callable[..., Settings]
) -> None:
    """Later runs re-read the overlap without journalling a move twice, a move newer than
    the lag waits for a later window, and the watermark only moves with the moves it covers."""
    cfg = make_cfg(timed_sim, instock_moves=MOVES_OPTIONS)
    run(cfg, "instock.moves")
    a, b = stocked_articles(timed_sim, 2)
    clock.advance(30)
    timed_sim.adjust_inventory(a, 2)  # 30 s ago when the next run looks: not closed yet
    clock.advance(30)
    first = run(cfg, "instock.moves")
    assert first.counts["journalled"] == 0
    clock.advance(31)
    timed_sim.adjust_inventory(b, -1)
    second = run(cfg, "instock.moves")  # a's move is closed now, b's is not
    assert second.counts["journalled"] == 1
    clock.advance(120)
    third = run(cfg, "instock.moves")
    assert third.counts["journalled"] == 1
    assert third.counts["pulled"] > 1  # the overlap was read again
    clock.advance(600)
    assert run(cfg, "instock.moves").counts["journalled"] == 0
    send(cfg)
    assert journalled(cfg) == sim_moves(timed_sim)
    assert_watermark_one_lag_behind(cfg, clock)


def test_identical_moves_are_both_kept(
    timed_sim: InstockSim, clock: Clock, make_cfg: Callable[..., Settings]
) -> None:
    """Two moves identical in every field (same article, qty, cells, order and second) are
    two moves: both are journalled, and re-reading them in an overlapping window adds none."""
    cfg = make_cfg(timed_sim, instock_moves=MOVES_OPTIONS)
    run(cfg, "instock.moves")
    (article,) = stocked_articles(timed_sim, 1)
    clock.advance(10)
    # Two lines of one order, same article and qty, picked to the same port in one second.
    lines = [{"line_id": f"TW-{n}", "article_id": article, "qty": 1} for n in (1, 2)]
    created = httpx.post(
        f"{timed_sim.base_url}/{timed_sim.site_id}/orders",
        json={"order_id": "TW", "lines": lines},
        headers={"Authorization": f"Bearer {timed_sim.token}"},
    )
    assert created.status_code == 200, created.text
    timed_sim.advance_order("TW")
    timed_sim.advance_order("TW")
    with timed_sim.state.lock:
        twins = [m.as_json() for m in timed_sim.state.moves[timed_sim.site_id][-2:]]
    assert twins[0] == twins[1]
    clock.advance(120)
    assert run(cfg, "instock.moves").counts["journalled"] == 2
    clock.advance(120)
    assert run(cfg, "instock.moves").counts["journalled"] == 0
    rows = query(
        cfg,
        "SELECT occurrence FROM instock_moves WHERE article_id = ? AND move_timestamp = ?",
        [article, twins[0]["move_timestamp"]],
    )
    assert sorted(r["occurrence"] for r in rows) == [1, 2]
    send(cfg)
    key = tuple(twins[0][f] for f in JOURNAL_FIELDS)
    assert journalled(cfg)[key] == 2
    assert journalled(cfg) == sim_moves(timed_sim)


def test_failed_window_keeps_the_watermark_and_is_journalled_once_later(
    timed_sim: InstockSim, clock: Clock, make_cfg: Callable[..., Settings]
) -> None:
    """A window whose second page keeps failing stores none of its moves and leaves the
    watermark at the last whole window; the next run pulls it again and journals it once."""
    options = {**MOVES_OPTIONS, "max_window": 10 * 86400, "overlap": 86400}
    cfg = make_cfg(timed_sim, page_size=10, instock_moves=options)
    # Windows of 10 days from 40 days back: the first (about 40 to 30 days ago) is one
    # page, the second holds the decanting history (several pages); its second page fails
    # past every retry.
    timed_sim.faults.script(MOVES_ROUTE, ["ok", "ok", "500", "500", "500", "500"])
    run(cfg, "instock.moves", expect="failed")
    assert timed_sim.faults.remaining(MOVES_ROUTE) == []
    with db(cfg) as store:
        mark = store.get_checkpoint(MOVES_STREAM)
        stored = store.scalar("SELECT count(*) FROM instock_moves")
        pending = store.scalar("SELECT count(*) FROM outbox")
    assert mark is not None
    watermark = parse_iso(mark)
    assert watermark == clock.now() - timedelta(days=30)
    assert stored == sum(sim_moves(timed_sim, until=watermark.timestamp()).values())
    assert pending == (1 if stored else 0)
    assert sum(sim_moves(timed_sim).values()) - stored > 10  # the failed window had pages

    result = run(cfg, "instock.moves")
    assert result.counts["journalled"] == sum(sim_moves(timed_sim).values()) - stored
    send(cfg)
    assert journalled(cfg) == sim_moves(timed_sim)


# --- orders --------------------------------------------------------------------------------

ORDERS_HEADER = "action,order_id,line_id,article_id,qty"


def order_csv(*orders: tuple[str, list[tuple[str, int]]]) -> str:
    """Create rows for each (order_id, [(article_id, qty), ...]); line ids are <order>-<n>."""
    rows = [
        f"create,{order_id},{order_id}-{n},{article_id},{qty}"
        for order_id, lines in orders
        for n, (article_id, qty) in enumerate(lines, start=1)
    ]
    return csv_text(ORDERS_HEADER, rows)


def cancel_csv(*order_ids: str) -> str:
    return csv_text(ORDERS_HEADER, [f"cancel,{o},,," for o in order_ids])


def instock_lines(sim: InstockSim, order_id: str) -> list[tuple[str, str, int]]:
    with sim.state.lock:
        return [(ln.line_id, ln.article_id, ln.qty) for ln in sim.state.orders[order_id].lines]


def sync_row(settings: Settings, order_id: str) -> dict[str, Any]:
    (row,) = query(
        settings,
        "SELECT action, status, reason FROM instock_order_sync WHERE order_id = ?",
        [order_id],
    )
    return row


def cycle(settings: Settings) -> RunResult:
    """One orders run (push, mirror, follow) and a drain of what it queued."""
    result = run(settings, "instock.orders")
    send(settings)
    return result


def test_orders_are_polled_when_never_polled_when_they_move_and_by_the_sweep(
    sim: InstockSim, make_cfg: Callable[..., Settings]
) -> None:
    """`follow = "moves"`: an open order is polled once when first mirrored, then only
    when the moves stream shows it moving (a pick) or when the sweep finds it unpolled
    for `sweep_interval`; an idle run polls no order. A reservation (no move) is seen by
    the sweep, a pick by the moves."""
    cfg = make_cfg(sim, instock_orders={"follow": "moves", "sweep_interval": 3600})
    a, b = stocked_articles(sim, 2)
    drop(cfg, "orders", order_csv(("HO-M1", [(a, 1)]), ("HO-M2", [(b, 1)])))
    cycle(cfg)  # created
    cycle(cfg)  # mirrored and polled once: registered

    def polls() -> dict[str, int]:
        return {
            o: sim.count(f"GET /v1/{sim.site_id}/orders/{o}/status") for o in ("HO-M1", "HO-M2")
        }

    def status(order_id: str) -> str:
        rows = query(cfg, "SELECT order_status FROM instock_orders WHERE order_id = ?", [order_id])
        return str(rows[0]["order_status"])

    assert all(n >= 1 for n in polls().values())
    assert (status("HO-M1"), status("HO-M2")) == ("registered", "registered")
    before = polls()
    idle = cycle(cfg)
    assert polls() == before
    assert (idle.counts["moved"], idle.counts["swept"]) == (0, 0)

    assert sim.advance_order("HO-M1") == "reserved"  # no move: not polled yet
    cycle(cfg)
    assert polls() == before
    assert status("HO-M1") == "registered"
    assert sim.advance_order("HO-M1") == "done"  # picked: moves carrying its order id
    moved = cycle(cfg)
    assert moved.counts["moved"] == 1
    assert polls() == {"HO-M1": before["HO-M1"] + 1, "HO-M2": before["HO-M2"]}
    assert status("HO-M1") == "done"

    assert sim.advance_order("HO-M2") == "reserved"  # no move: the sweep sees it
    sweeping = make_cfg(sim, instock_orders={"follow": "moves", "sweep_interval": 0.001})
    tasks_before = sim.count("GET /v1/{site_id}/ordertasks/{ordertask_id}")
    swept = cycle(sweeping)
    assert (swept.counts["moved"], swept.counts["swept"]) == (0, 1)
    assert swept.counts["swept_status_only"] == 1
    # reserved, nothing picked: its status read alone, its ordertasks not read
    assert sim.count("GET /v1/{site_id}/ordertasks/{ordertask_id}") == tasks_before
    assert status("HO-M2") == "reserved"
    events = [r for f in outbox_rows(cfg, "order_status") for r in f]
    assert [r["order_status"] for r in events if r["order_id"] == "HO-M2"][-1] == "reserved"
    assert [r["order_status"] for r in events if r["order_id"] == "HO-M1"][-1] == "done"
    unchanged = cycle(sweeping)  # as last polled: one status read, marked polled
    assert unchanged.counts["swept_unchanged"] == 1
    assert sim.advance_order("HO-M2") == "done"  # picked: read whole, with its picks
    cycle(sweeping)
    assert sim.count("GET /v1/{site_id}/ordertasks/{ordertask_id}") > tasks_before
    assert status("HO-M2") == "done"
    events = [r for f in outbox_rows(cfg, "order_status") for r in f]
    done = [r for r in events if r["order_id"] == "HO-M2" and r["order_status"] == "done"]
    assert done
    assert [r["fulfilled"] for r in done] == [r["requested"] for r in done]


def test_a_moves_read_cut_at_its_page_ceiling_still_polls_the_orders_it_read(
    sim: InstockSim, tmp_path: Path
) -> None:
    """`follow = "moves"` under a burst of moves past the walk's page ceiling: the read
    stops there, the order whose picks it read (the newest moves) is polled in the same
    run, the cut is counted and alerted, and the checkpoint stays where it was, so the next
    read covers the whole window again."""
    cfg = sim_settings(
        tmp_path,
        connector_for(sim, page_size=100, retry=fast_retry(4), max_pages=2),
        outbox=FAST_BACKOFF,
        jobs={"instock.orders": {"options": {"follow": "moves", "sweep_interval": 3600}}},
    )
    (a,) = stocked_articles(sim, 1)
    drop(cfg, "orders", order_csv(("HO-B1", [(a, 1)])))
    cycle(cfg)  # created
    cycle(cfg)  # mirrored and polled once
    checkpoint = "SELECT value FROM checkpoints WHERE stream = 'instock.orders.moves_read'"
    read_until = query(cfg, checkpoint)
    with sim.state.lock:  # 2,500 moves of someone else's orders, a second ago
        for n in range(2500):
            fields = {"user_id": "u", "order_id": f"OTHER-{n}", "from_cell_id": "c1"}
            fields |= {"to_cell_id": "c2", "from_account_id": "x", "to_account_id": "y"}
            sim.state.add_move(sim.site_id, a, 1, int(time.time()) - 1, **fields)
    assert sim.advance_order("HO-B1") == "reserved"
    assert sim.advance_order("HO-B1") == "done"  # its picks: the newest moves
    moves_route = f"GET /v1/{sim.site_id}/moves"
    moves_before = sim.count(moves_route)
    result = run(cfg, "instock.orders")
    assert sim.count(moves_route) == moves_before + 2  # 1,000 a page, stopped at the ceiling
    assert result.counts["moves_read_cut"] == 1
    assert result.counts["moves_read"] == 2000
    assert result.counts["moved"] == 1
    rows = query(cfg, "SELECT order_status FROM instock_orders WHERE order_id = 'HO-B1'")
    assert rows == [{"order_status": "done"}]
    assert query(cfg, checkpoint) == read_until
    alerts = query(
        cfg, "SELECT subject FROM alerts WHERE kind = 'pagination' AND resolved_at IS NULL"
    )
    assert alerts == [{"subject": "instock:moves"}]


def test_host_order_is_created_once_even_when_the_create_is_replayed(
    sim: InstockSim, cfg: Settings
) -> None:
    """A host order becomes one Instock order; a create replayed after a crash (sent but not
    marked sent) is recognised as already done, and later runs do not create it again."""
    a, b = stocked_articles(sim, 2)
    drop(cfg, "orders", order_csv(("HO-1", [(a, 2), (b, 1)])))
    result = run(cfg, "instock.orders")
    assert result.counts["orders_create"] == 1
    send(cfg)
    assert sim.count(ORDERS_ROUTE) == 1
    assert instock_lines(sim, "HO-1") == [("HO-1-1", a, 2), ("HO-1-2", b, 1)]
    assert sim.stock(a).registered == 2

    # The crash: Instock has the order, the outbox row was never marked sent (and keeps
    # the `unclear` mark set before the request left): read back by id, not posted again.
    with db(cfg) as store:
        store.db.execute(
            "UPDATE outbox SET status = 'pending', unclear = 1 WHERE kind = 'orders.create'"
        )
    assert send(cfg)["already_done"] == 1
    assert sim.count(ORDERS_ROUTE) == 1
    assert sim.count(f"GET /v1/{sim.site_id}/orders/HO-1") == 1
    assert sim.stock(a).registered == 2  # not registered twice
    assert sync_row(cfg, "HO-1") == {"action": "create", "status": "accepted", "reason": None}

    # A replay without the mark (a row from before it existed) is posted, and Instock's
    # "already exists" for the same lines is recognised as already done.
    with db(cfg) as store:
        store.db.execute(
            "UPDATE outbox SET status = 'pending', unclear = 0 WHERE kind = 'orders.create'"
        )
    assert send(cfg)["already_done"] == 1
    assert sim.count(ORDERS_ROUTE) == 2
    assert sim.stock(a).registered == 2  # not registered twice
    assert sync_row(cfg, "HO-1") == {"action": "create", "status": "accepted", "reason": None}

    again = cycle(cfg)
    assert again.counts["orders_skip"] == 1
    assert sim.count(ORDERS_ROUTE) == 2
    assert open_rejects(cfg, "") == []


def test_update_is_sent_while_registered_and_refused_after(sim: InstockSim, cfg: Settings) -> None:
    """A changed host order is sent as an update while Instock has it registered; once
    fulfilment started it becomes a reject saying updates are accepted only while registered
    (from syncd's own mirror, or from Instock's answer when the mirror had not seen it yet)."""
    a, b = stocked_articles(sim, 2)
    drop(cfg, "orders", order_csv(("HO-U1", [(a, 1)]), ("HO-U2", [(a, 1)])))
    cycle(cfg)
    cycle(cfg)  # the mirror now knows both are registered
    drop(cfg, "orders", order_csv(("HO-U1", [(a, 3), (b, 1)])))
    result = cycle(cfg)
    assert result.counts["orders_update"] == 1
    assert sim.count(f"PUT /v1/{sim.site_id}/orders/HO-U1") == 1
    assert instock_lines(sim, "HO-U1") == [("HO-U1-1", a, 3), ("HO-U1-2", b, 1)]
    assert sync_row(cfg, "HO-U1")["status"] == "accepted"

    # Known to syncd as reserved: refused before any request.
    assert sim.advance_order("HO-U1") == "reserved"
    cycle(cfg)
    drop(cfg, "orders", order_csv(("HO-U1", [(a, 4)])))
    refused = cycle(cfg)
    assert refused.counts["orders_refuse"] == 1
    assert sim.count(f"PUT /v1/{sim.site_id}/orders/HO-U1") == 1
    (reject,) = open_rejects(cfg, "instock:orders")
    assert reject["reference"] == "order HO-U1"
    assert "only while registered" in reject["reason"]
    assert "reserved" in reject["reason"]
    assert sync_row(cfg, "HO-U1")["status"] == "refused"
    assert instock_lines(sim, "HO-U1") == [("HO-U1-1", a, 3), ("HO-U1-2", b, 1)]

    # Advanced on the floor after syncd last looked: Instock's refusal is the reject.
    assert sim.advance_order("HO-U2") == "reserved"
    drop(cfg, "orders", order_csv(("HO-U2", [(a, 5)])))
    cycle(cfg)
    (outbox_reject,) = open_rejects(cfg, "outbox:instock")
    assert "orders.update order:HO-U2" in outbox_reject["reference"]
    assert "already being fulfilled" in outbox_reject["reason"]
    assert sync_row(cfg, "HO-U2")["status"] == "refused"
    assert instock_lines(sim, "HO-U2") == [("HO-U2-1", a, 1)]


def test_update_sends_the_full_order_and_keeps_what_was_created(
    sim: InstockSim, cfg: Settings
) -> None:
    """The document: "when updating an order, all parameters must be passed". An update
    from a host file without placed_at sends every parameter, with org_id and placed_at as
    Instock created them, so Instock keeps the order's placement time."""
    a, b = stocked_articles(sim, 2)
    drop(cfg, "orders", order_csv(("HO-F1", [(a, 1)])))
    cycle(cfg)
    with sim.state.lock:
        created_at = sim.state.orders["HO-F1"].placed_at
    bodies = capture_bodies(sim, "PUT", "/v1/{site_id}/orders/{order_id}")
    time.sleep(1.1)  # an update that reset placed_at would show a later second
    drop(cfg, "orders", order_csv(("HO-F1", [(a, 2), (b, 1)])))
    cycle(cfg)
    (body,) = bodies
    assert set(body) >= {
        "org_id",
        "site_id",
        "order_id",
        "kind",
        "placed_at",
        "attributes",
        "lines",
    }
    assert body["org_id"] == sim.state.org_id
    assert body["placed_at"] == created_at
    assert sync_row(cfg, "HO-F1")["status"] == "accepted"
    assert instock_lines(sim, "HO-F1") == [("HO-F1-1", a, 2), ("HO-F1-2", b, 1)]
    with sim.state.lock:
        assert sim.state.orders["HO-F1"].placed_at == created_at


def test_update_back_and_forth_is_sent_every_time(sim: InstockSim, cfg: Settings) -> None:
    """An order changed A -> B -> A -> B is sent four times in all: content that comes back
    is not mistaken for an update that was already queued."""
    a, b = stocked_articles(sim, 2)
    version_a = order_csv(("HO-ABA", [(a, 1)]))
    version_b = order_csv(("HO-ABA", [(a, 1), (b, 2)]))
    for version in (version_a, version_b, version_a, version_b):
        drop(cfg, "orders", version)
        cycle(cfg)
    assert sim.count(ORDERS_ROUTE) == 1
    assert sim.count(f"PUT /v1/{sim.site_id}/orders/HO-ABA") == 3
    assert instock_lines(sim, "HO-ABA") == [("HO-ABA-1", a, 1), ("HO-ABA-2", b, 2)]
    assert sync_row(cfg, "HO-ABA")["status"] == "accepted"


def test_cancel_while_registered_and_refused_once_done(sim: InstockSim, cfg: Settings) -> None:
    """A host cancel cancels a registered Instock order (its demand is released); for an
    order Instock already finished it becomes a reject naming the status."""
    a, b = stocked_articles(sim, 2)
    drop(cfg, "orders", order_csv(("HO-C1", [(a, 2)]), ("HO-C2", [(b, 1)])))
    cycle(cfg)
    assert sim.stock(a).registered == 2
    sim.advance_order("HO-C2")
    sim.advance_order("HO-C2")
    cycle(cfg)  # the mirror sees HO-C2 done

    drop(cfg, "orders", cancel_csv("HO-C1", "HO-C2"))
    result = cycle(cfg)
    assert result.counts["orders_cancel"] == 1
    assert result.counts["orders_refuse"] == 1
    with sim.state.lock:
        assert sim.state.orders["HO-C1"].status == "canceled"
        assert sim.state.orders["HO-C2"].status == "done"
    assert sim.stock(a).registered == 0
    assert sim.count(f"DELETE /v1/{sim.site_id}/orders/HO-C1/status") == 1
    assert sim.count(f"DELETE /v1/{sim.site_id}/orders/HO-C2/status") == 0
    assert sync_row(cfg, "HO-C1") == {"action": "cancel", "status": "accepted", "reason": None}
    (reject,) = open_rejects(cfg, "instock:orders")
    assert reject["reference"] == "order HO-C2"
    assert "the order is done" in reject["reason"]
    assert "only registered orders can be canceled" in reject["reason"]

    cycle(cfg)  # nothing more to do for either
    assert sim.count(f"DELETE /v1/{sim.site_id}/orders/HO-C1/status") == 1
    assert len(open_rejects(cfg, "")) == 1


def test_order_with_unknown_article_is_rejected_with_instocks_reason(
    sim: InstockSim, cfg: Settings
) -> None:
    """An order naming an article Instock does not know is refused by Instock (404) and kept
    as a reject with that reason; it is not retried and other orders go through, and once the
    host corrects it the order is created."""
    a, b = stocked_articles(sim, 2)
    drop(cfg, "orders", order_csv(("HO-X1", [(a, 1), ("NOSUCH1", 1)]), ("HO-X2", [(a, 1)])))
    cycle(cfg)
    (reject,) = open_rejects(cfg, "outbox:instock")
    assert "orders.create order:HO-X1" in reject["reference"]
    assert "article_id doesn't exist: NOSUCH1" in reject["reason"]
    assert "status=404" in reject["reason"]
    assert sync_row(cfg, "HO-X1")["status"] == "refused"
    assert query(cfg, "SELECT status FROM outbox WHERE kind = 'orders.create' ORDER BY id") == [
        {"status": "rejected"},
        {"status": "sent"},
    ]
    with sim.state.lock:
        assert "HO-X1" not in sim.state.orders
        assert "HO-X2" in sim.state.orders
    posts = sim.count(ORDERS_ROUTE)
    cycle(cfg)
    assert sim.count(ORDERS_ROUTE) == posts  # not retried while unchanged

    # The host corrects the order: it is created (it never existed in Instock).
    drop(cfg, "orders", order_csv(("HO-X1", [(a, 1), (b, 1)])))
    result = cycle(cfg)
    assert result.counts["orders_create"] == 1
    assert instock_lines(sim, "HO-X1") == [("HO-X1-1", a, 1), ("HO-X1-2", b, 1)]
    assert sync_row(cfg, "HO-X1") == {"action": "create", "status": "accepted", "reason": None}


@pytest.mark.parametrize("follow", ["all", "moves"])
def test_order_status_file_lists_changes_with_requested_and_fulfilled(
    sim: InstockSim, make_cfg: Callable[..., Settings], follow: str
) -> None:
    """Each status change of an order is written to the host order_status file, one row per
    line with the requested and the fulfilled quantity (Instock's, as `sim.fulfilled` says),
    and a run without a change writes nothing. Following the moves, the reservation (no
    move) is seen by the sweep (here due at every run), the picks by the moves."""
    cfg = make_cfg(sim, instock_orders={"follow": follow, "sweep_interval": 0.001})
    a, b, c = stocked_articles(sim, 3)
    lines = [(a, 1), (b, 3), (c, 2)]
    drop(cfg, "orders", order_csv(("HO-S1", lines)))
    cycle(cfg)
    cycle(cfg)  # mirrored and followed: registered
    sim.advance_order("HO-S1")
    cycle(cfg)  # reserved
    files_before = len(outbox_rows(cfg, "order_status"))
    cycle(cfg)  # no change: no file
    assert len(outbox_rows(cfg, "order_status")) == files_before
    sim.advance_order("HO-S1")
    cycle(cfg)  # done

    rows = [r for f in outbox_rows(cfg, "order_status") for r in f if r["order_id"] == "HO-S1"]
    by_status: dict[str, dict[str, tuple[int, int]]] = {}
    for row in rows:
        by_status.setdefault(row["order_status"], {})[row["line_id"]] = (
            row["requested"],
            row["fulfilled"],
        )
        assert row["kind"] == "customer"
    assert list(by_status) == ["registered", "reserved", "done"]
    assert len(rows) == 9
    requested = {f"HO-S1-{n}": q for n, (_, q) in enumerate(lines, start=1)}
    fulfilled = sim.fulfilled("HO-S1")
    assert fulfilled == requested
    assert by_status["registered"] == {k: (q, 0) for k, q in requested.items()}
    assert by_status["reserved"] == {k: (q, 0) for k, q in requested.items()}
    assert by_status["done"] == {k: (q, fulfilled[k]) for k, q in requested.items()}
    stored = query(cfg, "SELECT fulfilled FROM instock_orders WHERE order_id = 'HO-S1'")
    assert json.loads(stored[0]["fulfilled"]) == fulfilled


def test_order_status_file_uses_the_lines_as_updated(
    sim: InstockSim, make_cfg: Callable[..., Settings]
) -> None:
    """An order updated after newer orders pushed it off the last page of the orders list is
    reported with its updated lines (requested and fulfilled per current line)."""
    cfg = make_cfg(sim, page_size=10)
    a, b = stocked_articles(sim, 2)
    drop(cfg, "orders", order_csv(("HO-L00", [(a, 1)])))
    cycle(cfg)
    cycle(cfg)
    later = [(f"HO-L{n:02d}", [(b, 1)]) for n in range(1, 13)]
    drop(cfg, "orders", order_csv(*later))
    cycle(cfg)
    cycle(cfg)
    drop(cfg, "orders", order_csv(("HO-L00", [(a, 2), (b, 1)])))
    cycle(cfg)
    assert instock_lines(sim, "HO-L00") == [("HO-L00-1", a, 2), ("HO-L00-2", b, 1)]
    sim.advance_order("HO-L00")
    sim.advance_order("HO-L00")
    cycle(cfg)
    rows = [r for f in outbox_rows(cfg, "order_status") for r in f if r["order_id"] == "HO-L00"]
    done = {
        r["line_id"]: (r["requested"], r["fulfilled"]) for r in rows if r["order_status"] == "done"
    }
    assert done == {"HO-L00-1": (2, 2), "HO-L00-2": (1, 1)}
    assert sim.fulfilled("HO-L00") == {"HO-L00-1": 2, "HO-L00-2": 1}


# --- faults --------------------------------------------------------------------------------

JOBS = ("host.inbox", "instock.articles", "instock.inventory", "instock.moves", "instock.orders")


def settle(settings: Settings, max_rounds: int = 25) -> int:
    """Run every job and the sender in rounds until a round is clean and quiet: every run ok,
    nothing queued or delivered, nothing left pending. Returns the number of rounds it took."""
    for number in range(1, max_rounds + 1):
        results = [run_job(REGISTRY[job], settings, trigger="test") for job in JOBS]
        results.append(run_job(REGISTRY["outbox.send"], settings, trigger="test"))
        with db(settings) as store:
            pending = store.scalar("SELECT count(*) FROM outbox WHERE status = 'pending'")
        clean = all(r.status == "ok" for r in results)
        # Quiet: no job found anything to queue and the sender delivered nothing (a delivery
        # changes Instock, which the jobs must get one more look at).
        quiet = not any(r.counts.get("queued") for r in results) and not any(
            results[-1].counts.get(k) for k in ("pushed", "already_done", "rejected", "retried")
        )
        if clean and quiet and not pending:
            return number
        time.sleep(0.05)  # let retried intents come due (backoff is capped at 0.05 s)
    raise AssertionError(f"not settled after {max_rounds} rounds")


def last_rows(files: list[list[dict[str, Any]]], key: tuple[str, ...]) -> dict[Any, Any]:
    """What a stream of host files says in the end: the last row written for each key."""
    final: dict[Any, Any] = {}
    for rows in files:
        for row in rows:
            final[tuple(row[k] for k in key)] = {k: v for k, v in row.items() if k not in key}
    return final


def converged_state(sim: InstockSim, settings: Settings) -> dict[str, Any]:
    """Everything a run leaves behind that must not depend on faults along the way."""
    moves = query(settings, "SELECT " + ", ".join(JOURNAL_FIELDS) + " FROM instock_moves")
    orders = query(
        settings,
        "SELECT order_id, kind, order_status, fulfilled, lines FROM instock_orders",
    )
    rejects = query(settings, "SELECT source, reference FROM rejects WHERE status = 'open'")
    reports = outbox_rows(settings, "stock_discrepancies")
    with sim.state.lock:
        remote_articles = dict(sim.state.articles)
        remote_orders = {
            o.order_id: (o.status, [ln.as_json() for ln in o.lines])
            for o in sim.state.orders.values()
        }
        remote_stock = {
            a: s.as_json() for a, s in sim.state.inventory[sim.site_id].items() if not s.is_zero()
        }
    return {
        "instock_articles": remote_articles,
        "instock_orders": remote_orders,
        "instock_stock": remote_stock,
        "mirror_inventory": mirror(settings),
        "mirror_moves": Counter(tuple(r.values()) for r in moves),
        "mirror_orders": {r.pop("order_id"): r for r in orders},
        "article_sync": query(
            settings,
            "SELECT article_id, status, accepted_hash FROM instock_article_sync ORDER BY 1",
        ),
        "order_sync": query(
            settings, "SELECT order_id, action, status FROM instock_order_sync ORDER BY 1"
        ),
        # Outbox ids differ between runs; what was rejected must not.
        "rejects": sorted(
            (
                r["source"],
                r["reference"].split(" ", 1)[-1]
                if r["source"].startswith("outbox")
                else r["reference"],
            )
            for r in rejects
        ),
        "host_inventory": last_rows(outbox_rows(settings, "inventory_deltas"), ("article_id",)),
        "host_moves": journalled(settings),
        "host_order_status": last_rows(
            outbox_rows(settings, "order_status"), ("order_id", "line_id")
        ),
        "host_discrepancies": sorted(
            (reports[-1] if reports else []), key=lambda r: r["article_id"]
        ),
        "host_inbox_rejects": sorted(p.name for p in (settings.host_dir / "rejects").glob("*")),
    }


def fault_scenario(sim: InstockSim, settings: Settings, clock: Clock) -> dict[str, Any]:
    """Host input and floor activity in two phases, each run until settled."""
    stocked = stocked_articles(sim, 4)
    catalog = [(f"F{n:03d}", f"Faulty day {n}") for n in range(6)]
    (settings.host_dir / "inbox" / "articles-1.csv").write_text(
        csv_text(
            "article_id,name,is_serial_numbered",
            [f"{a},{n},false" for a, n in catalog] + ["F999,Serial saw,true"],
        )
    )
    book = {a: q["free"] + q["reserved"] for a, q in listed_stock(sim).items()}
    book[stocked[0]] += 7
    (settings.host_dir / "inbox" / "stock-1.csv").write_text(
        csv_text("article_id,qty", [f"{a},{q}" for a, q in book.items()])
    )
    (settings.host_dir / "inbox" / "orders-1.csv").write_text(
        order_csv(
            ("HO-F1", [(stocked[1], 2), (stocked[2], 3)]),
            ("HO-F2", [(stocked[3], 1)]),
            ("HO-F3", [("NOSUCH9", 1)]),
        )
    )
    settle(settings)

    # The floor works: HO-F1 is picked, stock is counted; the host cancels HO-F2.
    sim.advance_order("HO-F1")
    sim.advance_order("HO-F1")
    sim.adjust_inventory(stocked[0], 5)
    (settings.host_dir / "inbox" / "orders-2.csv").write_text(cancel_csv("HO-F2"))
    clock.advance(300)  # the new moves are past the lag
    settle(settings)
    return converged_state(sim, settings)


def test_faults_on_every_route_converge_to_the_fault_free_state(
    clock: Clock, make_cfg: Callable[..., Settings]
) -> None:
    """With 429, 503, dropped connections and malformed answers injected at 10% each on every
    Instock route (reads and writes), running the jobs and the sender in rounds ends in
    exactly the Instock, mirror and host-outbox state of a run without faults."""
    with InstockSim(seed=SEED, articles=30, retry_after=0, clock=clock) as calm:
        expected = fault_scenario(calm, make_cfg(calm, "calm", instock_moves=MOVES_OPTIONS), clock)
    assert expected["instock_orders"]["HO-F1"][0] == "done"
    assert expected["instock_orders"]["HO-F2"][0] == "canceled"
    assert all(f"F00{n}" in expected["instock_articles"] for n in range(6))
    assert ("instock:articles", "article F999") in expected["rejects"]
    assert len(expected["rejects"]) == 2  # F999 (serial) and HO-F3 (unknown article)
    assert expected["host_discrepancies"]

    clock.t -= 300  # the same timeline (history, floor activity) as the calm run
    with InstockSim(seed=SEED, articles=30, retry_after=0, clock=clock) as stormy:
        for kind in ("429", "503", "drop", "malformed"):
            stormy.faults.rate("*", kind, 0.1)
        got = fault_scenario(stormy, make_cfg(stormy, "stormy", instock_moves=MOVES_OPTIONS), clock)
        fired = stormy.faults.fired
    assert all(fired[kind] > 0 for kind in ("429", "503", "drop", "malformed")), fired
    for key, value in expected.items():
        assert got[key] == value, key


@pytest.mark.parametrize("route", ["POST /v1/{site_id}/orders", "POST /v1/articles"])
def test_malformed_answer_to_a_write_is_not_taken_as_success(
    sim: InstockSim, cfg: Settings, route: str
) -> None:
    """A write answered with a malformed body (the simulator did not perform it) is retried
    until Instock really has the order or article, never marked sent on faith."""
    (a,) = stocked_articles(sim, 1)
    drop(cfg, "articles", articles_csv([("MW001", "Malformed write")]))
    drop(cfg, "orders", order_csv(("HO-MW", [(a, 1)])))
    sim.faults.script(route, ["malformed"])
    for _ in range(3):
        run(cfg, "instock.articles")
        cycle(cfg)
    with sim.state.lock:
        assert "MW001" in sim.state.articles
        assert "HO-MW" in sim.state.orders


def test_first_run_learns_the_existing_catalog_without_failed_uploads(
    sim: InstockSim, cfg: Settings
) -> None:
    """Against a site that already holds the catalog, the first run reads Instock's list once:
    identical articles need no request, a changed one is updated, and no upload is refused."""
    with sim.state.lock:
        existing = sorted(sim.state.articles.values(), key=lambda a: a["article_id"])[:30]
    header = "article_id,name,dim_x,dim_y,dim_z,dim_uom,attr.product_category_name,attr.temp_zone"
    rows = []
    for n, article in enumerate(existing):
        if article.get("is_serial_numbered"):
            continue
        dims, attrs = article.get("dimensions") or {}, article.get("attributes") or {}
        name = article["name"] + (" v2" if n == 0 else "")
        rows.append(
            f'{article["article_id"]},"{name}",{dims.get("x", "")},{dims.get("y", "")},'
            f"{dims.get('z', '')},{dims.get('uom', '')},"
            f"{attrs.get('product_category_name', '')},{attrs.get('temp_zone', '')}"
        )
    drop(cfg, "articles", csv_text(header, rows))
    result = run(cfg, "instock.articles")
    send(cfg)
    assert result.counts["bootstrapped"] == len(rows)
    assert sim.count("POST /v1/articles") == 0
    assert result.counts["update"] == 1
    assert result.counts["skip"] == len(rows) - 1


# --- read back before resending ------------------------------------------------------------


def reads_of(sim: InstockSim, order_id: str) -> int:
    return sim.count(f"GET /v1/{sim.site_id}/orders/{order_id}")


@pytest.fixture
def dup_sim() -> Iterator[InstockSim]:
    """Instock taking a second create of a known order id as a second order, so that only
    syncd's read-back (never an "already exists" answer) keeps an order from doubling."""
    with InstockSim(seed=SEED, articles=30, retry_after=0, duplicate_order_ids="accept") as s:
        yield s


@pytest.fixture
def dup_cfg(dup_sim: InstockSim, tmp_path: Path) -> Settings:
    """One HTTP attempt per outbox attempt: the client's own retry of a POST whose answer
    was cut is not what these tests are about (each outbox attempt is)."""
    return sim_settings(
        tmp_path / "dup",
        connector_for(dup_sim, page_size=100, retry=fast_retry(1)),
        outbox=FAST_BACKOFF,
    )


def readbacks(outcome: str) -> float:
    sample = metrics.REGISTRY.get_sample_value(
        "syncd_readback_total", {"destination": "instock", "outcome": outcome}
    )
    return sample or 0.0


def _due_now(settings: Settings) -> None:
    """The retry's backoff over (without waiting for it)."""
    with db(settings) as store:
        store.db.execute(
            "UPDATE outbox SET next_attempt_at = ? WHERE status = 'pending'",
            [iso(datetime(2000, 1, 1, tzinfo=UTC))],
        )


def _outbox_create(settings: Settings) -> dict[str, Any]:
    (row,) = query(settings, "SELECT status, unclear FROM outbox WHERE kind = 'orders.create'")
    return row


def test_create_applied_but_answer_lost_is_read_back_and_marked_done(
    dup_sim: InstockSim, dup_cfg: Settings
) -> None:
    """Instock creates the order and the answer is cut: the next attempt reads the order
    back, finds it as intended and marks the intent done without a second create."""
    sim, cfg = dup_sim, dup_cfg
    a, b = stocked_articles(sim, 2)
    drop(cfg, "orders", order_csv(("HO-R1", [(a, 2), (b, 1)])))
    run(cfg, "instock.orders")
    sim.faults.script(ORDERS_ROUTE, ["drop"] * 10)
    assert send(cfg)["retried"] == 1
    assert _outbox_create(cfg) == {"status": "pending", "unclear": 1}
    with sim.state.lock:
        assert "HO-R1" in sim.state.orders  # applied, answer lost
    posts, applied = sim.count(ORDERS_ROUTE), readbacks("applied")
    _due_now(cfg)

    assert send(cfg)["already_done"] == 1
    assert readbacks("applied") == applied + 1
    assert sim.count(ORDERS_ROUTE) == posts  # no second create
    assert reads_of(sim, "HO-R1") == 1
    assert _outbox_create(cfg)["status"] == "sent"
    with sim.state.lock:
        assert sim.state.duplicate_orders == []
    assert instock_lines(sim, "HO-R1") == [("HO-R1-1", a, 2), ("HO-R1-2", b, 1)]
    assert sim.stock(a).registered == 2
    assert sync_row(cfg, "HO-R1") == {"action": "create", "status": "accepted", "reason": None}
    assert open_rejects(cfg, "") == []


def test_create_refused_before_applying_is_read_back_and_sent(
    dup_sim: InstockSim, dup_cfg: Settings
) -> None:
    """A 503 (Instock did not apply it, syncd cannot know): the next attempt reads back,
    finds no order and sends the create once."""
    sim, cfg = dup_sim, dup_cfg
    (a,) = stocked_articles(sim, 1)
    drop(cfg, "orders", order_csv(("HO-R2", [(a, 1)])))
    run(cfg, "instock.orders")
    sim.faults.script(ORDERS_ROUTE, ["503"] * 10)
    assert send(cfg)["retried"] == 1
    assert _outbox_create(cfg) == {"status": "pending", "unclear": 1}
    with sim.state.lock:
        assert "HO-R2" not in sim.state.orders
    sim.faults.clear()
    _due_now(cfg)
    not_applied = readbacks("not_applied")

    assert send(cfg)["pushed"] == 1
    assert readbacks("not_applied") == not_applied + 1
    assert reads_of(sim, "HO-R2") == 1
    assert _outbox_create(cfg)["status"] == "sent"
    with sim.state.lock:
        assert sim.state.duplicate_orders == []
    assert instock_lines(sim, "HO-R2") == [("HO-R2-1", a, 1)]


def test_create_found_changed_on_read_back_is_rejected_with_both_versions(
    dup_sim: InstockSim, dup_cfg: Settings
) -> None:
    """The order is applied, the answer lost, and the order changed in Instock before the
    next attempt: a reject holding the intended and the found order, nothing sent again."""
    sim, cfg = dup_sim, dup_cfg
    (a,) = stocked_articles(sim, 1)
    drop(cfg, "orders", order_csv(("HO-R3", [(a, 2)])))
    run(cfg, "instock.orders")
    sim.faults.script(ORDERS_ROUTE, ["drop"] * 10)
    assert send(cfg)["retried"] == 1
    with sim.state.lock:
        sim.state.orders["HO-R3"].lines[0].qty = 5
    posts, diverged = sim.count(ORDERS_ROUTE), readbacks("diverged")
    _due_now(cfg)

    assert send(cfg)["rejected"] == 1
    assert readbacks("diverged") == diverged + 1
    assert sim.count(ORDERS_ROUTE) == posts
    with sim.state.lock:
        assert sim.state.duplicate_orders == []
    (reject,) = open_rejects(cfg, "outbox:instock")
    assert "HO-R3" in reject["reason"]
    assert "lines" in reject["reason"]
    payload = reject["payload"]
    payload = json.loads(payload) if isinstance(payload, str) else payload
    assert payload["intended"]["lines"][0]["qty"] == 2
    assert payload["found"]["lines"][0]["qty"] == 5
    assert [d["field"] for d in payload["differences"]] == ["lines"]
    assert sync_row(cfg, "HO-R3")["status"] == "refused"
