"""One rate budget per connector: two Instock jobs and the sender, on threads as in the
daemon, against an Instock simulator that answers 429 past N requests a second.

Real loopback HTTP and a real state DB; a "restart" is a new budget store installed on the
same DB mid-way (what `syncd run` does at start), so the persisted bucket carries over.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import syncd.jobs  # noqa: F401 - fills the job registry
from syncd import ratebudget
from syncd.config import Settings
from syncd.connectors.instock import InstockClient
from syncd.sandbox.instock import InstockSim
from syncd.state import Store
from syncd.state.ratebudget import BudgetTable
from syncd.status import status_line, status_report
from tests.configs import FAST_BACKOFF, connector_for, fast_retry, sim_settings
from tests.integration.jobkit import csv_text, drop, run

SIM_LIMIT = 13  # requests the simulator admits in any one second
PER_SECOND, BURST = 4.0, 8  # syncd's budget: at most BURST + PER_SECOND * T in T seconds


@pytest.fixture
def sim() -> Iterator[InstockSim]:
    with InstockSim(seed=5, articles=20) as running:
        yield running


@pytest.fixture(autouse=True)
def no_budget_left_installed() -> Iterator[None]:
    yield
    ratebudget.uninstall()


def settings_for(sim: InstockSim, root: Path, max_backoff: float = 0.05) -> Settings:
    return sim_settings(
        root,
        connector_for(
            sim,
            page_size=10,
            retry={**fast_retry(4), "max_backoff": max_backoff},
            rate_limit={"per_second": PER_SECOND, "burst": BURST},
        ),
        outbox=FAST_BACKOFF,
    )


def articles_csv(ids: list[str]) -> str:
    header = "article_id,name,dim_x,dim_y,dim_z,dim_uom"
    return csv_text(header, [f"{a},Article {a},10,20,30,cm" for a in ids])


def loop(until: float, step: Callable[[], None], failures: list[str]) -> threading.Thread:
    def body() -> None:
        while time.monotonic() < until:
            try:
                step()
            except AssertionError as exc:  # a run that did not end ok
                failures.append(str(exc))
                return

    thread = threading.Thread(target=body)
    thread.start()
    return thread


def run_phase(settings: Settings, seconds: float, phase: str, catalog: list[str]) -> list[str]:
    """instock.inventory and instock.orders in loops, and the sender uploading a new
    article batch each round, all at once for `seconds`; the failures seen."""
    failures: list[str] = []
    until = time.monotonic() + seconds
    batch = iter(range(1000))

    def sender_round() -> None:  # the catalog is a snapshot: it grows by 3 new articles
        n = next(batch)
        catalog.extend(f"A{phase.upper()}{n:03d}N{i}" for i in range(3))
        drop(settings, "articles", articles_csv(catalog))
        run(settings, "instock.articles")
        run(settings, "outbox.send")

    threads = [
        loop(until, lambda: run(settings, "instock.inventory"), failures),
        loop(until, lambda: run(settings, "instock.orders"), failures),
        loop(until, sender_round, failures),
    ]
    for thread in threads:
        thread.join(timeout=60)
    return failures


def most_in_window(stamps: list[float], window: float) -> int:
    """The most requests the simulator saw in any `window` seconds."""
    stamps = sorted(stamps)
    best, start = 0, 0
    for end, moment in enumerate(stamps):
        while moment - stamps[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_jobs_and_sender_share_one_budget_across_a_restart(sim: InstockSim, tmp_path: Path) -> None:
    """Three threads of one connector stay inside one budget: the simulator never has to
    answer 429, no run fails, and a restart mid-way (a new store on the same DB, its bucket
    loaded) lets no fresh burst through."""
    settings = settings_for(sim, tmp_path)
    sim.server.rate_limit(SIM_LIMIT)
    ratebudget.install(BudgetTable(settings.db_path))
    catalog: list[str] = []
    failures = run_phase(settings, 1.0, "a", catalog)
    with InstockClient(settings.connectors.instock) as client:  # the bucket ends empty
        for _ in range(BURST + 2):
            client.sites()
    restart_at = time.time()
    ratebudget.install(BudgetTable(settings.db_path))  # the old one is written and closed
    failures += run_phase(settings, 1.0, "b", catalog)

    assert failures == []
    log = sim.server.requests
    assert [r for r in log if r.fault == "rate_limited"] == []
    stamps = [r.timestamp for r in log]
    assert len(stamps) > 15  # the phases did make requests, and some after the restart
    assert any(t > restart_at for t in stamps)
    # A token bucket admits at most BURST + PER_SECOND * T in any T seconds (+1: the time a
    # request is admitted and the time the simulator logs it differ by its latency).
    for window in (0.5, 1.0, 2.0):
        assert most_in_window(stamps, window) <= BURST + PER_SECOND * window + 1, window
    # The bucket was empty at the restart: a reset one would let BURST more through at once.
    after = [t for t in stamps if restart_at <= t < restart_at + 1.0]
    assert len(after) <= PER_SECOND * 1.0 + 2
    with Store.open(settings.db_path, migrate=False) as store:
        (row,) = store.query("SELECT connector, tokens FROM rate_budget")
    assert row["connector"] == "instock"
    assert row["tokens"] < BURST


def test_a_429_parks_every_job_of_the_connector_until_retry_after(
    sim: InstockSim, tmp_path: Path
) -> None:
    """One job's 429 (Retry-After: 2) holds the connector's other requests back until then;
    the park is in the state DB, `syncd status` shows it, and it outlives a restart. The job
    that met the 429 sleeps its Retry-After (within its backoff ceiling) and goes on."""
    settings = settings_for(sim, tmp_path, max_backoff=5)
    sim.server.faults.retry_after = 2
    sim.server.faults.script("GET /v1/{site_id}/inventory", ["429"])
    ratebudget.install(BudgetTable(settings.db_path))
    parked_at = time.time()
    failures: list[str] = []
    first = loop(time.monotonic() + 0.1, lambda: run(settings, "instock.inventory"), failures)
    deadline = time.monotonic() + 5
    while not [r for r in sim.server.requests if r.status == 429]:
        assert time.monotonic() < deadline, "no 429 was answered"
        time.sleep(0.01)
    # The simulator logs the 429 as it answers; the client parks the connector once the answer
    # has reached it, a moment later.
    while True:
        with Store.open(settings.db_path, migrate=False) as store:
            report, line = status_report(store), status_line(store)
        if report["throttled"] or time.monotonic() >= deadline:
            break
        time.sleep(0.01)
    assert [row["connector"] for row in report["throttled"]] == ["instock"]
    assert "instock throttled until" in line
    # The restart: a new process loads the park and waits for it too.
    ratebudget.install(BudgetTable(settings.db_path))
    second = loop(time.monotonic() + 0.1, lambda: run(settings, "instock.orders"), failures)
    first.join(timeout=30)
    second.join(timeout=30)

    assert failures == []
    log = sim.server.requests
    (refused,) = [r for r in log if r.status == 429]
    held = [r for r in log if refused.timestamp < r.timestamp < refused.timestamp + 1.9]
    assert held == [], [(r.route, r.timestamp - refused.timestamp) for r in held]
    assert any(r.timestamp >= refused.timestamp + 1.9 for r in log)  # then they went on
    assert refused.timestamp >= parked_at
