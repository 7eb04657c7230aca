"""The window ledger against the Instock simulator (real loopback HTTP, real state file):
each page a pull stores leaves one ledger row with its counts and request id, and
`coverage` finds no gap after clean runs and one after a failed run."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from syncd.clock import utcnow
from syncd.config import Settings
from syncd.coverage import Coverage
from syncd.sandbox.dsorder import DSOrderSim
from syncd.sandbox.instock import InstockSim, Line, Order
from syncd.state import Store
from syncd.state.windows import coverage_report, window_counts
from tests.configs import connector_for, fast_retry, sim_settings
from tests.integration import test_dsorder_loop as dsorder_suite
from tests.integration import test_instock_jobs as instock_suite
from tests.integration.jobkit import run
from tests.integration.test_instock_jobs import MOVES_OPTIONS, Clock

# The Instock job suite's fixtures: one clock for the simulator and instock.moves.
clock = instock_suite.clock
make_cfg = instock_suite.make_cfg

ORDERS_LIST = "GET /v1/{site_id}/orders"


@pytest.fixture
def sim() -> Iterator[InstockSim]:
    with InstockSim(seed=5, articles=30, retry_after=0) as running:
        with running.state.lock:
            article = running.state.article_ids[0]
            for n in range(20):  # a list of several pages
                running.state.add_order(
                    Order(f"L-{n}", running.site_id, "customer", "2026-12-01T08:00:00Z", {},
                          [Line("1", article, 1)])
                )  # fmt: skip
        yield running


@pytest.fixture
def cfg(sim: InstockSim, tmp_path: Path) -> Settings:
    return sim_settings(
        tmp_path, connector_for(sim, page_size=10, retry=fast_retry(2)),
        jobs={"instock.orders": {"options": {"push_host_orders": False}}},
    )  # fmt: skip


def ledger(cfg: Settings) -> list[dict[str, object]]:
    with Store.open(cfg.db_path, migrate=False) as store:
        return window_counts(store, "instock.orders")


def gaps(cfg: Settings) -> list[tuple[str, tuple[str, ...]]]:
    with Store.open(cfg.db_path, migrate=False) as store:
        [report] = coverage_report(store, "instock.orders", now=utcnow())
    return [(g.cause, g.runs) for g in report.gaps]


def test_orders_pages_are_in_the_ledger_and_cover_without_a_gap(
    sim: InstockSim, cfg: Settings
) -> None:
    """The first run walks the whole list: one row per page, whose counts add up to the
    orders Instock lists, each with its page's request id; later runs chain on the cursor."""
    with sim.state.lock:
        listed = len(sim.state.site_orders[sim.site_id])
    assert listed > 10  # more than one page
    first = run(cfg, "instock.orders")
    rows = ledger(cfg)
    assert len(rows) == (listed + 9) // 10
    assert sum(r["listed"] for r in rows) == listed == first.counts["pulled"]
    assert all(r["stored"] + r["rejected"] == r["listed"] for r in rows)
    assert rows[0]["cursor_before"] == ""
    assert all(len(json.loads(r["request_ids"])) == 1 for r in rows)
    assert {r["run_id"] for r in rows} == {first.run_id}
    for _ in range(3):
        run(cfg, "instock.orders")
    assert len(ledger(cfg)) > len(rows)
    assert gaps(cfg) == []


def test_a_failed_run_is_a_gap_until_a_run_resumes_from_the_cursor(
    sim: InstockSim, cfg: Settings
) -> None:
    """Instock's list fails for a whole run: coverage names that run as the gap's cause
    (exit 1 for `syncd coverage`); the next run continues from the checkpoint, so the gap
    closes with no false one left behind."""
    run(cfg, "instock.orders")
    rows_before = len(ledger(cfg))
    sim.faults.script(ORDERS_LIST, ["500"] * 3)
    failed = run(cfg, "instock.orders", expect="failed")
    assert len(ledger(cfg)) == rows_before  # a failed page writes no ledger row
    assert gaps(cfg) == [("failed-run", (failed.run_id,))]
    run(cfg, "instock.orders")
    assert gaps(cfg) == []


MOVES_LIST = "GET /v1/{site_id}/moves"


def test_moves_windows_are_in_the_ledger_with_their_overlap(
    clock: Clock, make_cfg: Callable[..., Settings]
) -> None:
    """A 40-day backfill in one-day windows overlapping by six hours: one ledger row per
    window (consecutive empty windows fold into one row counting them), whose stored counts
    add up to what the run stored, covering the period with the configured overlap and no
    gap; a failed run is a gap naming it until the next run resumes from the watermark."""
    with InstockSim(seed=21, articles=60, retry_after=0, clock=clock) as sim:
        cfg = make_cfg(sim, page_size=100, instock_moves=MOVES_OPTIONS)
        first = run(cfg, "instock.moves")
        with Store.open(cfg.db_path, migrate=False) as store:
            rows = window_counts(store, "instock.moves")
        assert sum(r["pulls"] for r in rows) >= 40
        assert any(r["pulls"] > 1 for r in rows)  # the days without a move
        assert all(r["listed"] == 0 for r in rows if r["pulls"] > 1)
        assert sum(r["stored"] for r in rows) == first.counts["stored"]
        assert sum(r["listed"] for r in rows) == first.counts["pulled"]
        assert all(
            r["pages"] == len(json.loads(r["request_ids"])) + r["request_ids_more"] for r in rows
        )
        [report] = reports(cfg)
        assert report.gaps == ()
        assert report.windows == sum(r["pulls"] for r in rows)
        assert report.overlap_s == report.min_overlap_s == 6 * 3600
        clock.t += 3600
        sim.faults.script(MOVES_LIST, ["500"] * 5)
        failed = run(cfg, "instock.moves", expect="failed")
        assert [(g.cause, g.runs) for g in reports(cfg)[0].gaps] == [
            ("failed-run", (failed.run_id,))
        ]
        run(cfg, "instock.moves")
        assert reports(cfg)[0].gaps == ()


def reports(cfg: Settings) -> list[Coverage]:
    with Store.open(cfg.db_path, migrate=False) as store:
        return coverage_report(store, "instock.moves", now=utcnow())


ins = dsorder_suite.ins
ds = dsorder_suite.ds
make_dsorder_cfg = dsorder_suite.make_cfg


def test_dsorder_pulls_are_in_the_ledger_and_cover_the_day(
    ins: InstockSim, ds: DSOrderSim, make_dsorder_cfg: Callable[..., Settings]
) -> None:
    """Each pull of today's list leaves one row covering the site's day up to the pull,
    with what it listed and its request id; successive pulls leave no gap."""
    cfg = make_dsorder_cfg()
    article = dsorder_suite.stocked(ins)[0]
    ds.submit_order(lines=[(article, 2)])
    first = run(cfg, "dsorder.pull")
    ds.submit_order(lines=[(article, 1)])
    run(cfg, "dsorder.pull")
    with Store.open(cfg.db_path, migrate=False) as store:
        rows = window_counts(store, "dsorder.submitted")
        [report] = coverage_report(
            store, "dsorder.submitted", now=utcnow(), site_timezone=cfg.daemon.site_timezone
        )
    assert [r["listed"] for r in rows] == [first.counts["pulled"], first.counts["pulled"] + 1]
    assert all(r["stored"] + r["rejected"] == r["listed"] for r in rows)
    assert all(len(json.loads(r["request_ids"])) == 1 for r in rows)
    assert rows[0]["window_from"] == rows[1]["window_from"]  # the site's midnight
    assert report.gaps == ()


INVENTORY_ROUTE = "GET /v1/{site_id}/inventory"


def scan_rows(cfg: Settings) -> list[dict[str, object]]:
    with Store.open(cfg.db_path, migrate=False) as store:
        return window_counts(store, "instock.inventory")


def test_inventory_scans_are_ledger_rows_that_say_what_each_scan_stored(
    sim: InstockSim, make_cfg: Callable[..., Settings]
) -> None:
    """Each settled scan is one row (kind scan, its number): its pages, what it listed,
    the request id of each page; a scan that lists what the one before listed (the same
    hash) extends its row (pulls 2, the newer scan's number, counts and request ids of
    both), a changed one has its own; the mirror rows name the scan that listed them;
    coverage lists the scans and finds no gap."""
    cfg = make_cfg(sim, page_size=10)
    listed = instock_suite.listed_stock(sim)
    assert len(listed) > 20  # three pages
    mark = len(sim.requests)
    first = run(cfg, "instock.inventory")
    page_ids = [r.request_id for r in sim.requests[mark:] if r.route == INVENTORY_ROUTE]
    first_hash = scan_rows(cfg)[0]["content_hash"]
    assert first_hash
    mark = len(sim.requests)
    run(cfg, "instock.inventory")  # nothing changed
    again_ids = [r.request_id for r in sim.requests[mark:] if r.route == INVENTORY_ROUTE]
    sim.adjust_inventory(next(iter(listed)), 5)
    run(cfg, "instock.inventory")
    rows = scan_rows(cfg)
    assert [(r["kind"], r["scan"], r["pulls"]) for r in rows] == [("scan", 2, 2), ("scan", 3, 1)]
    one = rows[0]
    assert one["run_id"] == first.run_id
    assert (one["pages"], one["listed"], one["stored"], one["rejected"]) == (
        2 * len(page_ids), 2 * len(listed), 2 * len(listed), 0,
    )  # fmt: skip
    assert json.loads(str(one["request_ids"])) == page_ids + again_ids
    assert (one["window_from"], one["window_to"]) == (one["started_at"], one["ended_at"])
    assert first_hash == rows[0]["content_hash"] != rows[1]["content_hash"]
    with Store.open(cfg.db_path, migrate=False) as store:
        assert store.scalar("SELECT min(scan) FROM instock_inventory") == 3
        [report] = coverage_report(store, "instock.inventory", now=utcnow())
    assert (report.kind, report.gaps, report.windows) == ("scan", (), 3)
    assert [s.scan for s in report.scans] == [2, 3]


def test_a_scan_resumed_after_an_interruption_is_one_row_counting_each_page_once(
    sim: InstockSim, make_cfg: Callable[..., Settings]
) -> None:
    """A scan stopped after its first page leaves no row; the run that finishes it writes
    one, started when the scan started, with all three pages and the request ids of the
    pages stored (not of the page read ahead by the stopped run)."""
    import threading

    cfg = make_cfg(sim, page_size=10)
    listed = instock_suite.listed_stock(sim)
    stopping = threading.Event()
    stopping.set()  # the run ends at its first checkpoint
    mark = len(sim.requests)
    stopped = run(cfg, "instock.inventory", expect="interrupted", stopping=stopping)
    assert scan_rows(cfg) == []
    resumed = len(sim.requests)
    finished = run(cfg, "instock.inventory")
    page_ids = [
        r.request_id for n, r in enumerate(sim.requests) if r.route == INVENTORY_ROUTE and n >= mark
    ]
    page_ids = page_ids[:1] + [
        r.request_id for r in sim.requests[resumed:] if r.route == INVENTORY_ROUTE
    ]
    [row] = scan_rows(cfg)
    assert (row["pages"], row["listed"], row["scan"]) == (3, len(listed), 1)
    assert json.loads(str(row["request_ids"])) == page_ids
    assert row["run_id"] == finished.run_id
    started = query_one(cfg, "SELECT started_at FROM runs WHERE run_id = ?", stopped.run_id)
    assert str(row["started_at"]) < str(
        query_one(cfg, "SELECT started_at FROM runs WHERE run_id = ?", finished.run_id)
    )
    assert str(row["started_at"]) >= started


def query_one(cfg: Settings, sql: str, *params: object) -> str:
    with Store.open(cfg.db_path, migrate=False) as store:
        return str(store.scalar(sql, list(params)))
