"""Contract of the `planning.import` JOB: real loopback HTTP to `ImportJobsSim`, real state files.

Host input is dropped as files into `<host>/inbox/` and loaded by `host.inbox`; the job runs
through `run_job` as the daemon runs it. What is asserted is what the simulator stored and was
asked, and what the state DB (accepted rows, jobs, rejects, runs) holds.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from freezegun import freeze_time

import syncd.jobs  # noqa: F401 - fills the job registry
from syncd.cli import main as cli
from syncd.config import Settings
from syncd.jobs.runner import RunResult
from syncd.sandbox.import_jobs import AnswerShape, ImportJobsSim
from syncd.state import Store
from tests.configs import connector_for, fast_retry, sim_settings
from tests.integration import jobkit
from tests.integration.jobkit import query

STATUS = "GET /api/import/status/{jobId}"


def post(kind: str) -> str:
    return f"POST /api/import/{kind}"


# --- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture
def sim() -> Iterator[ImportJobsSim]:
    # Jobs finish at their first poll; an injected 429 asks for no wait.
    with ImportJobsSim(seed=5, pending_seconds=0, rows_per_second=0, retry_after=0) as running:
        yield running


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., Settings]:
    def make(
        sim: ImportJobsSim,
        name: str = "a",
        connector_options: dict[str, Any] | None = None,
        **options: Any,
    ) -> Settings:
        return sim_settings(
            tmp_path / name,
            connector_for(sim, retry=fast_retry(5), options=connector_options or {}),
            jobs={"planning.import": {"options": {"site_location": "WH", **options}}},
        )

    return make


@pytest.fixture
def cfg(sim: ImportJobsSim, make_cfg: Callable[..., Settings]) -> Settings:
    return make_cfg(sim, on_missing_forecast="api_default")


def run(settings: Settings, job: str = "planning.import", *, expect: str = "ok") -> RunResult:
    return jobkit.run(settings, job, expect=expect)


def drop(settings: Settings, feed: str, header: str, rows: list[str]) -> None:
    jobkit.drop(settings, feed, jobkit.csv_text(header, rows))


ARTICLES = "article_id,name"
STOCK = "article_id,location,qty,reorder_point"
SUPPLIERS = "supplier_id,name"
SALES = "transaction_id,line_id,sale_date,article_id,location,qty,channel"
POS = "po_number,supplier_id,location,order_date,status,line_no,article_id,qty_ordered,qty_received,unit_cost"
ORDERS = "action,order_id,line_id,article_id,qty"


def load_all(settings: Settings) -> None:
    drop(settings, "articles", ARTICLES, ["A1,Chain 3/8", "A2,Bar 16in", "A3,Sprocket"])
    drop(settings, "suppliers", SUPPLIERS, ["S1,Oregon Tool", "S2,Acme"])
    drop(settings, "stock", STOCK, ["A1,,12,5", "A2,,4,2", "A3,B-01,1.5,1"])
    drop(
        settings,
        "purchase_orders",
        POS,
        [
            "PO-1,S1,,2025-03-01,OPEN,1,A1,100,40,3.10",
            "PO-1,S1,,2025-03-01,OPEN,2,A2,10,0,12.5",
            "PO-2,S2,,2025-03-02,OPEN,1,A3,5,5,1.00",  # fully received: not sent
        ],
    )
    drop(settings, "orders", ORDERS, ["create,O1,1,A1,2", "create,O1,2,A2,1", "create,O2,1,A3,1"])
    drop(
        settings,
        "sales",
        SALES,
        ["T1,1,2025-03-03,A1,,3,", "T2,1,2025-03-04,A1,,2,", "T3,1,2025-03-11,A2,,1,web"],
    )


def accepted(settings: Settings, endpoint: str) -> dict[str, str]:
    rows = query(
        settings,
        "SELECT row_key, row_hash FROM planning_import_accepted WHERE endpoint = ?",
        [endpoint],
    )
    return {r["row_key"]: r["row_hash"] for r in rows}


def open_rejects(settings: Settings) -> list[dict[str, Any]]:
    return jobkit.open_rejects(settings, "planning:")


def run_warnings(settings: Settings, result: RunResult) -> list[dict[str, Any]]:
    [row] = query(settings, "SELECT warnings FROM runs WHERE run_id = ?", [result.run_id])
    return list(json.loads(row["warnings"] or "[]"))


def posts(sim: ImportJobsSim) -> Counter[str]:
    return Counter(r.route for r in sim.requests if r.route.startswith("POST") and r.status == 202)


def capture(sim: ImportJobsSim, kind: str, mutate: Callable[[dict[str, Any]], None] | None = None):  # type: ignore[no-untyped-def]
    """Record every body reaching an import route; `mutate` may change each row first (the
    API refusing what the client's own check let through)."""
    bodies: list[Any] = []
    router = sim.server.router
    for index, route in enumerate(router._routes):
        if route.method == "POST" and route.pattern == f"/api/import/{kind}":
            original = route.handler

            def handler(request: Any, original: Any = original) -> Any:
                bodies.append(json.loads(json.dumps(request.json)))
                if mutate is not None:
                    for rows in request.json.values():
                        for row in rows:
                            mutate(row)
                return original(request)

            router._routes[index] = dataclasses.replace(route, handler=handler)
    return bodies


# --- tests -------------------------------------------------------------------------------------


def test_first_run_sends_every_endpoint_and_a_second_run_sends_nothing(
    sim: ImportJobsSim, cfg: Settings
) -> None:
    load_all(cfg)
    with freeze_time("2025-03-12 10:00:00", tick=True):  # host.inbox needs real time
        first = run(cfg)
    assert posts(sim) == {
        post("catalog"): 1,
        post("suppliers"): 1,
        post("inventory"): 1,
        post("purchase-orders"): 1,
        post("orders"): 1,
        post("demand-history"): 1,
    }
    assert set(sim.records("catalog")) == {("A1",), ("A2",), ("A3",)}
    assert sim.records("catalog")[("A1",)]["name"] == "Chain 3/8"
    inv = sim.records("inventory")
    assert inv[("A1", "org_sandbox-WH")]["quantityOnHand"] == 12
    assert inv[("A3", "org_sandbox-B-01")]["quantityOnHand"] == 1.5
    po = sim.records("purchase-orders")
    assert list(po) == [("PO-1",)]  # PO-2 has nothing outstanding
    assert [(ln["skuId"], ln["quantity"], ln["unitCost"]) for ln in po[("PO-1",)]["lines"]] == [
        ("A1", 60, 3.1),
        ("A2", 10, 12.5),
    ]
    assert set(sim.records("orders")) == {("O1",), ("O2",)}
    demand = {k: v["actualDemand"] for k, v in sim.records("demand-history").items()}
    # the week of 03-10 is still open on 03-12: not sent until it closes
    assert demand == {("A1", "WH", "2025-03-03", "ALL"): 5}

    assert len(accepted(cfg, "catalog")) == 3
    assert len(accepted(cfg, "inventory")) == 3
    total = 3 + 2 + 3 + 1 + 2 + 1
    assert first.counts["rowCount"] == total
    assert first.counts["processedCount"] == total
    assert first.counts["failedCount"] == 0
    assert first.counts["pushed"] == total
    runs = query(cfg, "SELECT * FROM runs WHERE run_id = ?", [first.run_id])[0]
    stored = json.loads(runs["counts"])
    assert stored["rowCount"] == total
    assert runs["pushed"] == total
    jobs = query(cfg, "SELECT status, row_count, finished_at FROM planning_import_jobs")
    assert len(jobs) == 6
    assert all(j["status"] == "COMPLETED" and j["finished_at"] for j in jobs)
    assert not query(cfg, "SELECT * FROM planning_import_jobs WHERE batch_id IS NOT NULL")
    assert not query(cfg, "SELECT * FROM planning_import_batches")  # each job's rows went

    before = len(sim.requests)
    with freeze_time("2025-03-12 10:00:00", tick=True):
        second = run(cfg)
    assert len(sim.requests) == before  # no change: no request at all
    assert second.counts["unchanged"] == total
    assert "jobs_submitted" not in second.counts


def test_a_changed_row_resends_only_it_in_batches(
    sim: ImportJobsSim, make_cfg: Callable[..., Settings]
) -> None:
    cfg = make_cfg(sim, endpoints=["catalog"], batch_size=2)
    bodies = capture(sim, "catalog")
    drop(cfg, "articles", ARTICLES, [f"A{n},Article {n}" for n in range(5)])
    run(cfg)
    # batches of 2, submitted up to jobs_in_flight at once (their arrival order may vary)
    assert sorted(len(b["products"]) for b in bodies) == [1, 2, 2]
    assert sorted(p["externalId"] for b in bodies for p in b["products"]) == [
        f"A{n}" for n in range(5)
    ]
    drop(cfg, "articles", ARTICLES, [f"A{n},Article {n}" for n in range(5) if n != 3] + ["A3,New"])
    result = run(cfg)
    assert bodies[-1] == {"products": [{"externalId": "A3", "name": "New"}]}
    assert len(bodies) == 4
    assert result.counts["unchanged"] == 4
    assert sim.records("catalog")[("A3",)]["name"] == "New"


def test_row_failures_become_rejects_tied_to_host_rows_and_are_retried_when_due(
    sim: ImportJobsSim, make_cfg: Callable[..., Settings]
) -> None:
    cfg = make_cfg(sim, endpoints=["inventory"])
    poisoned = {"A2"}

    def refuse(row: dict[str, Any]) -> None:
        if row["skuId"] in poisoned and row.get("quantityOnHand") == 4:
            row["quantityOnHand"] = "four"

    bodies = capture(sim, "inventory", refuse)
    drop(cfg, "stock", STOCK, ["A1,,12,3", "A2,,4,3", "A3,,7,3"])
    first = run(cfg)
    assert first.counts["failedCount"] == 1
    assert first.counts["rejected"] == 1
    assert set(accepted(cfg, "inventory")) == {"A1|WH", "A3|WH"}
    [reject] = open_rejects(cfg)
    assert reject["source"] == "planning:inventory"
    assert reject["field"] == "quantityOnHand"
    assert "must be a number" in reject["reason"]
    file, line = reject["reference"].split(" ")[0].split(":")
    assert file.startswith("stock-")
    assert line == "3"
    assert reject["reference"].endswith(" A2|WH")

    run(cfg)  # unchanged and refused as is: not sent again
    assert len(bodies) == 1

    # Retried by the operator: sent again (and refused again, it did not change).
    with Store.open(cfg.db_path, migrate=False) as store:
        assert store.retry_reject(reject["id"]) == "retry"
    again = run(cfg)
    assert again.counts["retried"] == 1
    assert bodies[-1] == {
        "levels": [
            {
                "skuId": "A2",
                "locationId": "WH",
                "quantityOnHand": 4,
                "quantityReserved": 0,
                "reorderPoint": 3,
            }
        ]
    }
    assert [r["id"] for r in open_rejects(cfg)] != [reject["id"]]
    assert len(open_rejects(cfg)) == 1

    # Changed at the host: sent again, accepted, its reject resolved.
    drop(cfg, "stock", STOCK, ["A1,,12,3", "A2,,5,3", "A3,,7,3"])
    fixed = run(cfg)
    assert fixed.counts["pushed"] == 1
    assert len(bodies) == 3
    assert set(accepted(cfg, "inventory")) == {"A1|WH", "A2|WH", "A3|WH"}
    assert open_rejects(cfg) == []
    assert not query(cfg, "SELECT * FROM planning_import_failed")


def test_rows_the_client_check_refuses_are_rejected_without_a_request(
    sim: ImportJobsSim, make_cfg: Callable[..., Settings]
) -> None:
    cfg = make_cfg(sim, endpoints=["purchase-orders"])
    drop(
        cfg,
        "purchase_orders",
        POS,
        ["PO-1,S1,,2025-03-01,OPEN,1,A1,10,0,", "PO-2,S1,,2025-03-01,OPEN,1,A1,10,0,2"],
    )
    result = run(cfg)
    assert result.counts["refused"] == 1
    assert set(sim.records("purchase-orders")) == {("PO-2",)}
    [reject] = open_rejects(cfg)
    assert reject["reference"].endswith(":2 PO-1")
    assert "unitCost" in reject["reason"]
    before = len(sim.requests)
    run(cfg)
    assert len(sim.requests) == before
    assert len(open_rejects(cfg)) == 1


def test_a_job_pending_at_a_crash_is_resumed_without_a_new_submit(
    make_cfg: Callable[..., Settings],
) -> None:
    # auto=False: jobs move only when the test says so, like a run that stopped after submit.
    with ImportJobsSim(seed=3, auto=False) as sim:
        cfg = make_cfg(sim, endpoints=["catalog"], job_timeout=0.1)
        drop(cfg, "articles", ARTICLES, ["A1,One", "A2,Two"])
        first = run(cfg)
        assert first.counts["jobs_open"] == 1
        [job] = query(
            cfg,
            "SELECT j.*, b.rows FROM planning_import_jobs j "
            "JOIN planning_import_batches b ON b.batch_id = j.batch_id",
        )
        assert job["status"] == "PENDING"
        assert job["finished_at"] is None
        assert len(json.loads(job["rows"])) == 2  # kept with the open job
        assert accepted(cfg, "catalog") == {}

        waiting = run(cfg)  # still pending: polled again, nothing new planned or sent
        assert waiting.counts["jobs_resumed"] == 1
        assert waiting.counts["endpoints_waiting"] == 1
        assert posts(sim)[post("catalog")] == 1

        sim.process_jobs()
        resumed = run(cfg)
        assert resumed.counts["jobs_resumed"] == 1
        assert resumed.counts["rowCount"] == 2
        assert posts(sim)[post("catalog")] == 1  # no new submit
        assert set(accepted(cfg, "catalog")) == {"A1", "A2"}
        [job] = query(cfg, "SELECT * FROM planning_import_jobs")
        assert job["status"] == "COMPLETED"
        assert job["processed_count"] == 2
        assert not query(cfg, "SELECT * FROM planning_import_batches")  # its rows went
        assert resumed.counts["unchanged"] == 2


def test_jobs_in_flight_stay_recorded_when_one_stays_open_and_are_all_resumed(
    make_cfg: Callable[..., Settings],
) -> None:
    """Several jobs submitted at once: when they stay open past job_timeout, every one of
    them is recorded (none is lost with the run), no further batch is sent, and the next
    run resumes them all before sending the rest, each row once."""
    with ImportJobsSim(seed=4, auto=False) as sim:
        cfg = make_cfg(sim, endpoints=["catalog"], batch_size=1, jobs_in_flight=3, job_timeout=0.1)
        drop(cfg, "articles", ARTICLES, [f"A{n},Article {n}" for n in range(6)])
        first = run(cfg)
        assert first.counts["jobs_submitted"] == 3
        assert posts(sim)[post("catalog")] == 3
        jobs = query(
            cfg,
            "SELECT j.status, b.rows FROM planning_import_jobs j "
            "JOIN planning_import_batches b ON b.batch_id = j.batch_id",
        )
        assert [j["status"] for j in jobs] == ["PENDING"] * 3
        assert all(len(json.loads(j["rows"])) == 1 for j in jobs)

        sim.process_jobs()
        second = run(cfg)
        assert second.counts["jobs_resumed"] == 3
        assert second.counts["jobs_completed"] == 3
        assert second.counts["send"] == 3  # only the rows not yet accepted
        assert second.counts["jobs_open"] == 3  # ... whose jobs wait in turn
        sim.process_jobs()
        third = run(cfg)
        assert (third.counts["jobs_resumed"], third.counts["jobs_completed"]) == (3, 3)
        assert third.counts["unchanged"] == 6
        assert set(accepted(cfg, "catalog")) == {f"A{n}" for n in range(6)}
        assert posts(sim)[post("catalog")] == 6  # each row in one job, none sent twice
        assert sorted(sim.records("catalog")) == [(f"A{n}",) for n in range(6)]


def test_unchanged_inputs_skip_the_comparison_but_never_an_open_job(
    make_cfg: Callable[..., Settings],
) -> None:
    """While an import job is open every run polls it; once a run compared every row and
    wrote nothing, the next runs skip (no request) until a host file arrives, whose
    changed row is then sent."""
    with ImportJobsSim(seed=4, auto=False) as sim:
        cfg = make_cfg(sim, endpoints=["catalog"], job_timeout=0.1)
        drop(cfg, "articles", ARTICLES, [f"A{n},Article {n}" for n in range(3)])
        assert run(cfg).counts.get("jobs_submitted") == 1
        for _ in range(2):  # the job stays open: polled each run, never skipped
            waiting = run(cfg)
            assert waiting.counts.get("jobs_resumed") == 1
            assert "skipped_unchanged" not in waiting.counts
        sim.process_jobs()
        assert run(cfg).counts.get("jobs_completed") == 1
        assert run(cfg).counts.get("unchanged") == 3  # compared, nothing to send
        before = len(sim.requests)
        skipped = run(cfg)
        assert skipped.counts.get("skipped_unchanged") == 1
        assert len(sim.requests) == before

        drop(cfg, "articles", ARTICLES, ["A0,Article 0", "A1,Renamed", "A2,Article 2"])
        changed = run(cfg)
        assert (changed.counts.get("jobs_submitted"), changed.counts.get("unchanged")) == (1, 2)
        sim.process_jobs()
        run(cfg)
        assert sim.records("catalog")[("A1",)]["name"] == "Renamed"


def test_a_failed_job_accepts_nothing_and_is_sent_again(
    sim: ImportJobsSim, make_cfg: Callable[..., Settings]
) -> None:
    cfg = make_cfg(sim, endpoints=["suppliers"])
    drop(cfg, "suppliers", SUPPLIERS, ["S1,One", "S2,Two"])
    sim.fail_next_job("Import processing failed.")
    first = run(cfg)
    assert first.counts["jobs_failed"] == 1
    assert first.counts.get("pushed", 0) == 0
    assert accepted(cfg, "suppliers") == {}
    assert open_rejects(cfg) == []
    assert json.loads(
        query(cfg, "SELECT warnings FROM runs WHERE run_id = ?", [first.run_id])[0]["warnings"]
    )
    second = run(cfg)
    assert second.counts["pushed"] == 2
    assert set(accepted(cfg, "suppliers")) == {"S1", "S2"}


def test_demand_history_closed_weeks_are_final_and_an_opted_in_open_week_is_resent(
    sim: ImportJobsSim, make_cfg: Callable[..., Settings]
) -> None:
    """With `include_open_week` (the operator's choice, for an API that replaces a week)
    the open week is re-sent as it grows; closed weeks are final."""
    cfg = make_cfg(
        sim,
        endpoints=["demand-history"],
        demand_weeks_back=2,
        include_open_week=True,
        upsert_endpoints=["demand-history"],
        on_missing_forecast="api_default",
    )
    bodies = capture(sim, "demand-history")
    # Host files are loaded in real time (the inbox checks file ages); the job in frozen time.
    drop(
        cfg,
        "sales",
        SALES,
        [
            "T0,1,2025-02-20,A1,,9,",  # 3 weeks back: outside the window
            "T1,1,2025-02-24,A1,,1,",
            "T2,1,2025-03-09,A1,,2,",  # Sunday: week of 03-03
            "T3,1,2025-03-10,A1,,3,",  # the open week
        ],
    )
    wednesday = "2025-03-12 10:00:00"  # in the week of 03-10
    with freeze_time(wednesday, tick=True):
        run(cfg)
    weeks = {r["weekStarting"]: r["actualDemand"] for r in bodies[-1]["records"]}
    assert weeks == {"2025-02-24": 1, "2025-03-03": 2, "2025-03-10": 3}

    drop(cfg, "sales", SALES, ["T4,1,2025-03-12,A1,,4,"])  # the open week grows
    with freeze_time(wednesday, tick=True):
        run(cfg)
    assert bodies[-1]["records"] == [
        {
            "skuId": "A1",
            "locationId": "WH",
            "weekStarting": "2025-03-10",
            "channel": "ALL",
            "actualDemand": 7,
        }
    ]
    sent = len(bodies)
    next_tuesday = "2025-03-18 08:00:00"  # the week of 03-10 is closed now
    with freeze_time(next_tuesday, tick=True):
        result = run(cfg)
    assert len(bodies) == sent
    assert result.counts["unchanged"] == 2
    drop(cfg, "sales", SALES, ["T5,1,2025-03-17,A1,,5,"])
    with freeze_time(next_tuesday, tick=True):
        run(cfg)
    assert [r["weekStarting"] for r in bodies[-1]["records"]] == ["2025-03-17"]
    stored = sim.records("demand-history")
    assert stored[("A1", "WH", "2025-03-10", "ALL")]["actualDemand"] == 7
    assert stored[("A1", "WH", "2025-03-17", "ALL")]["actualDemand"] == 5


def test_faults_on_submit_and_status_converge(sim: ImportJobsSim, cfg: Settings) -> None:
    load_all(cfg)
    sim.faults.script(post("catalog"), ["429", "503"])
    sim.faults.script(post("inventory"), ["503"])
    sim.faults.script(STATUS, ["503", "429", "503"])
    with freeze_time("2025-03-12 10:00:00", tick=True):
        result = run(cfg)
    assert result.counts["failedCount"] == 0
    assert result.counts["jobs_submitted"] == 6  # faults answer before a job is made
    assert set(sim.records("catalog")) == {("A1",), ("A2",), ("A3",)}
    assert len(accepted(cfg, "inventory")) == 3
    assert sum(1 for r in sim.requests if r.status in (429, 503)) == 6


# --- the job's counts must account for every row (the document shows no error shape) ---------


def _refuse_a2(row: dict[str, Any]) -> None:
    if row["skuId"] == "A2":
        row["quantityOnHand"] = "four"


@pytest.mark.parametrize(
    "shape",
    [
        AnswerShape(row_index="none", error_key=False),  # errors name no row at all
        AnswerShape(failed_count="errors"),  # failedCount counts errors, not rows
        AnswerShape(processed_count="imported"),  # processedCount: rows imported only
    ],
    ids=["errors-without-row", "failed-counts-errors", "processed-counts-imported"],
)
def test_a_job_whose_counts_do_not_add_up_records_no_row_as_accepted(
    sim: ImportJobsSim, make_cfg: Callable[..., Settings], shape: AnswerShape
) -> None:
    """A COMPLETED job whose counts and row errors do not account for every row sent: no
    row is recorded as accepted (each is a reject naming the job and why), an alert opens,
    and nothing is sent again by itself."""
    cfg = make_cfg(sim, endpoints=["inventory"])
    sim.shape = shape

    def refuse(row: dict[str, Any]) -> None:
        _refuse_a2(row)
        if row["skuId"] == "A2":
            row["quantityReserved"] = "none"  # two errors in one row

    bodies = capture(sim, "inventory", refuse)
    drop(cfg, "stock", STOCK, ["A1,,12,3", "A2,,4,3", "A3,,7,3"])
    result = run(cfg)
    assert accepted(cfg, "inventory") == {}
    assert result.counts.get("pushed", 0) == 0
    assert result.counts["unaccounted"] >= 1
    rejects = open_rejects(cfg)
    assert sorted(r["reference"].split(" ")[1] for r in rejects) == ["A1|WH", "A2|WH", "A3|WH"]
    assert any("counts do not add up" in r["reason"] for r in rejects)
    with Store.open(cfg.db_path, migrate=False) as store:
        [alert] = store.open_alerts("planning_import_unaccounted")
    assert alert["subject"] == "inventory"
    run(cfg)
    assert len(bodies) == 1  # kept, not re-sent each run


def test_errors_naming_rows_by_key_only_still_account_for_every_row(
    sim: ImportJobsSim, make_cfg: Callable[..., Settings]
) -> None:
    """Errors without a row index but with the row's key: matched by key, the counts add up,
    the other rows are accepted."""
    cfg = make_cfg(sim, endpoints=["inventory"])
    sim.shape = AnswerShape(row_index="none")
    capture(sim, "inventory", _refuse_a2)
    drop(cfg, "stock", STOCK, ["A1,,12,3", "A2,,4,3", "A3,,7,3"])
    run(cfg)
    assert set(accepted(cfg, "inventory")) == {"A1|WH", "A3|WH"}
    [reject] = open_rejects(cfg)
    assert reject["reference"].endswith(" A2|WH")
    with Store.open(cfg.db_path, migrate=False) as store:
        assert store.open_alerts("planning_import_unaccounted") == []


def test_one_based_row_indices_are_read_with_the_option(
    sim: ImportJobsSim, make_cfg: Callable[..., Settings]
) -> None:
    """An API counting rows from 1, errors without keys: `error_row_base = 1` ties each
    error to the right row."""
    cfg = make_cfg(
        sim,
        endpoints=["inventory"],
        connector_options={"error_row_base": 1},
    )
    sim.shape = AnswerShape(row_index="one", error_key=False)
    capture(sim, "inventory", _refuse_a2)
    drop(cfg, "stock", STOCK, ["A1,,12,3", "A2,,4,3", "A3,,7,3"])
    run(cfg)
    assert set(accepted(cfg, "inventory")) == {"A1|WH", "A3|WH"}
    [reject] = open_rejects(cfg)
    assert reject["reference"].endswith(" A2|WH")


# --- what the planner owns is not overwritten -----------------------------------------------


def planner_sets(sim: ImportJobsSim, kind: str, key: tuple[str, ...], **fields: Any) -> None:
    """The planner edits a stored record in the planning tool."""
    with sim.state.lock:
        sim.state.store(kind)[key].update(fields)


def test_inventory_without_a_host_reorder_point_is_held_and_keeps_the_planners_minimum(
    sim: ImportJobsSim, make_cfg: Callable[..., Settings]
) -> None:
    """The API resets reorderPoint (the internal minimum) to 0 when a row leaves it out: a
    row whose host gives none is held, one whose host gives it is sent with it; reserved
    stock comes from Instock's reservations for the site row."""
    cfg = make_cfg(sim, endpoints=["inventory"])
    drop(cfg, "stock", STOCK, ["A1,,12,5", "A2,,4,3"])
    run(cfg)
    planner_sets(sim, "inventory", ("A2", "org_sandbox-WH"), reorderPoint=9, minQuantity=9)
    with Store.open(cfg.db_path, migrate=False) as store, store.transaction():
        store.db.execute(
            "INSERT INTO instock_inventory (article_id, free, reserved, registered, scan, "
            "updated_at) VALUES ('A1', 10, 2, 0, 1, '2025-03-12T00:00:00Z')"
        )
    drop(cfg, "stock", STOCK, ["A1,,13,5", "A2,,6,"])  # A2: the host no longer says
    result = run(cfg)
    inv = sim.records("inventory")
    assert inv[("A1", "org_sandbox-WH")]["quantityOnHand"] == 13
    assert inv[("A1", "org_sandbox-WH")]["quantityReserved"] == 2
    assert inv[("A1", "org_sandbox-WH")]["minQuantity"] == 5
    assert inv[("A2", "org_sandbox-WH")]["minQuantity"] == 9  # the planner's, kept
    assert inv[("A2", "org_sandbox-WH")]["quantityOnHand"] == 4  # held: not sent
    assert result.counts["held:inventory"] == 1
    assert any("reorder_point" in w["message"] for w in run_warnings(cfg, result))

    opted = make_cfg(sim, "b", endpoints=["inventory"], on_missing_reorder_point="api_default")
    drop(opted, "stock", STOCK, ["A2,,6,"])
    run(opted)  # the operator's choice: sent, the documented default resets the minimum
    assert sim.records("inventory")[("A2", "org_sandbox-WH")]["minQuantity"] == 0


def test_demand_is_held_by_default_and_keeps_the_planners_forecast(
    sim: ImportJobsSim, make_cfg: Callable[..., Settings]
) -> None:
    """forecastedDemand defaults to actualDemand and the host has no forecast: weekly demand
    is held unless the operator opts in."""
    key = ("A1", "WH", "2025-03-03", "ALL")
    with sim.state.lock:
        sim.state.demand_history[key] = {
            "skuId": "A1",
            "locationId": "WH",
            "weekStarting": "2025-03-03",
            "channel": "ALL",
            "actualDemand": 4,
            "forecastedDemand": 11,
        }
    cfg = make_cfg(sim, endpoints=["demand-history"], demand_weeks_back=2)
    drop(cfg, "sales", SALES, ["T1,1,2025-03-03,A1,,3,", "T2,1,2025-03-04,A1,,2,"])
    with freeze_time("2025-03-12 10:00:00", tick=True):
        held = run(cfg)
    assert posts(sim)[post("demand-history")] == 0
    assert held.counts["held:demand-history"] == 1
    assert any("forecast" in w["message"] for w in run_warnings(cfg, held))
    assert sim.records("demand-history")[key]["forecastedDemand"] == 11


# --- closed things close ---------------------------------------------------------------------


def test_a_purchase_order_leaving_the_open_set_is_sent_once_with_its_final_status(
    sim: ImportJobsSim, make_cfg: Callable[..., Settings]
) -> None:
    """Fully received, cancelled or gone from the snapshot: the PO is sent once more with
    its final status and nothing outstanding, then never again."""
    cfg = make_cfg(sim, endpoints=["purchase-orders"])
    drop(
        cfg,
        "purchase_orders",
        POS,
        [
            "PO-1,S1,,2025-03-01,OPEN,1,A1,100,40,3.10",
            "PO-2,S1,,2025-03-01,OPEN,1,A2,10,0,2",
            "PO-3,S1,,2025-03-01,OPEN,1,A3,5,0,1",
            *STILL_OPEN,
        ],
    )
    run(cfg)
    assert {k[0] for k in sim.records("purchase-orders")} == {f"PO-{n}" for n in range(1, 6)}
    # PO-1 fully received (still in the snapshot), PO-2 gone with nothing received,
    # PO-3 gone and the host says no more about it.
    drop(
        cfg,
        "purchase_orders",
        POS,
        ["PO-1,S1,,2025-03-01,OPEN,1,A1,100,100,3.10", *STILL_OPEN],
    )
    drop(
        cfg,
        "po_history",
        "po_number,line_no,article_id,supplier_id,order_date,qty_ordered,qty_received",
        ["PO-2,1,A2,S1,2025-03-01,10,0"],
    )
    run(cfg)
    stored = {k[0]: v for k, v in sim.records("purchase-orders").items()}
    assert {k: v["status"] for k, v in stored.items()} == {
        "PO-1": "RECEIVED",
        "PO-2": "CANCELLED",
        "PO-3": "CLOSED",
        "PO-4": "OPEN",
        "PO-5": "OPEN",
    }
    assert [ln["quantity"] for ln in stored["PO-1"]["lines"]] == [0]
    assert stored["PO-1"]["lines"][0]["unitCost"] == 3.1
    before = posts(sim)[post("purchase-orders")]
    again = run(cfg)
    assert posts(sim)[post("purchase-orders")] == before  # closed once, not again
    assert again.counts["unchanged"] == 5


STILL_OPEN = ["PO-4,S1,,2025-03-01,OPEN,1,A1,7,0,1", "PO-5,S1,,2025-03-01,OPEN,1,A2,7,0,1"]


def test_a_cancelled_order_is_sent_once_with_nothing_outstanding(
    sim: ImportJobsSim, make_cfg: Callable[..., Settings]
) -> None:
    """A cancelled customer order leaves the open set: sent once with status CANCELLED and
    every line at quantity 0, then never again."""
    cfg = make_cfg(sim, endpoints=["orders"])
    drop(cfg, "orders", ORDERS, ["create,O1,1,A1,2", "create,O1,2,A2,1", "create,O2,1,A3,1"])
    run(cfg)
    drop(cfg, "orders", ORDERS, ["cancel,O1,,,"])
    run(cfg)
    stored = sim.records("orders")
    assert stored[("O1",)]["status"] == "CANCELLED"
    assert [ln["quantity"] for ln in stored[("O1",)]["lines"]] == [0, 0]
    assert "status" not in stored[("O2",)]
    before = posts(sim)[post("orders")]
    run(cfg)
    assert posts(sim)[post("orders")] == before


# --- no double counting where the document names no key ----------------------------------------


@pytest.fixture
def appending(make_cfg: Callable[..., Settings]) -> Iterator[ImportJobsSim]:
    """The other reading: orders and weekly demand are added, not replaced, when sent again."""
    with ImportJobsSim(
        seed=6,
        pending_seconds=0,
        rows_per_second=0,
        retry_after=0,
        append={"orders", "demand-history"},
    ) as running:
        yield running


def test_a_lost_answer_for_orders_is_held_not_sent_twice(
    appending: ImportJobsSim, make_cfg: Callable[..., Settings]
) -> None:
    """The POST of an orders import is applied but its answer is lost: orders may be added
    twice, so the batch is not sent again (by the HTTP layer or a later run); its rows are
    rejects an operator can retry, and an alert says why."""
    cfg = make_cfg(appending, endpoints=["catalog", "orders"])
    appending.faults.script(post("orders"), ["drop"])
    appending.faults.script(post("catalog"), ["drop"])  # catalog upserts: simply sent again
    drop(cfg, "articles", ARTICLES, ["A1,One"])
    drop(cfg, "orders", ORDERS, ["create,O1,1,A1,2", "create,O2,1,A1,1"])
    first = run(cfg)
    assert first.counts["ambiguous"] == 2
    assert appending.state.stats["orders_jobs"] == 1
    assert appending.state.stats["catalog_jobs"] == 2
    assert set(appending.records("orders")) == {("O1",), ("O2",)}  # imported once
    assert set(accepted(cfg, "catalog")) == {"A1"}
    rejects = open_rejects(cfg)
    assert sorted(r["reference"].split(" ")[1] for r in rejects) == ["O1", "O2"]
    assert all("not sent again" in r["reason"] for r in rejects)
    [job] = query(cfg, "SELECT status FROM planning_import_jobs WHERE endpoint = 'orders'")
    assert job["status"] == "AMBIGUOUS"
    assert not query(cfg, "SELECT * FROM planning_import_batches")  # held as rejects instead
    with Store.open(cfg.db_path, migrate=False) as store:
        [alert] = store.open_alerts("planning_import_ambiguous")
    assert alert["subject"] == "orders"
    run(cfg)
    assert appending.state.stats["orders_jobs"] == 1
    assert appending.state.stats["rows_appended"] == 0


@pytest.mark.parametrize("endpoint", ["catalog", "orders"])
def test_a_batch_written_by_a_run_that_stopped_before_its_submit_is_dropped_and_sent(
    sim: ImportJobsSim, make_cfg: Callable[..., Settings], endpoint: str
) -> None:
    """A batch's rows are written before its submit; a run stopped in between leaves them
    named by no job. For an endpoint that may add rows the POST comes only after its
    SUBMITTING record, so such a batch was never sent; for an upserting one a re-send is
    a second job, no duplicate data. Either way the next run drops the batch and sends
    its rows once."""
    from syncd.state.mirror.planning_import import prepare_batch

    cfg = make_cfg(sim, endpoints=[endpoint])
    drop(cfg, "articles", ARTICLES, ["A1,One"])
    if endpoint == "orders":
        drop(cfg, "orders", ORDERS, ["create,O1,1,A1,2"])
    with Store.open(cfg.db_path, migrate=False) as store:
        row = ["A1" if endpoint == "catalog" else "O1", "h" * 32, "x.csv:2", '{"x":1}']
        prepare_batch(
            store, "b-1", endpoint, 1, json.dumps([row]), run_id="stopped", at="2025-03-12"
        )
    result = run(cfg)
    assert not query(cfg, "SELECT * FROM planning_import_batches")
    assert result.counts["jobs_submitted"] == 1
    assert "ambiguous" not in result.counts  # not held: it was never sent
    assert posts(sim)[post(endpoint)] == 1
    assert set(accepted(cfg, endpoint)) == {"A1" if endpoint == "catalog" else "O1"}


def test_a_changed_order_is_held_where_orders_may_be_added_twice(
    appending: ImportJobsSim, make_cfg: Callable[..., Settings]
) -> None:
    """An order changed after the API accepted it would be added beside the first one: it
    is held with a warning (an API known to replace orders: upsert_endpoints)."""
    cfg = make_cfg(appending, endpoints=["orders"])
    drop(cfg, "orders", ORDERS, ["create,O1,1,A1,2"])
    run(cfg)
    drop(cfg, "orders", ORDERS, ["create,O1,1,A1,5"])
    changed = run(cfg)
    assert changed.counts["held_changed:orders"] == 1
    assert any("upsert_endpoints" in w["message"] for w in run_warnings(cfg, changed))
    assert list(appending.records("orders")) == [("O1",)]
    assert appending.records("orders")[("O1",)]["lines"][0]["quantity"] == 2

    replaced = make_cfg(appending, "b", endpoints=["orders"], upsert_endpoints=["orders"])
    drop(replaced, "orders", ORDERS, ["create,O7,1,A1,2"])
    run(replaced)
    drop(replaced, "orders", ORDERS, ["create,O7,1,A1,5"])
    assert run(replaced).counts["pushed"] == 1


def test_a_demand_week_is_sent_once_it_is_closed_and_never_added_twice(
    appending: ImportJobsSim, make_cfg: Callable[..., Settings]
) -> None:
    """Against an API that adds a week's records into its bucket: the open week is not sent
    while it grows; once closed it is sent once, with its whole total."""
    cfg = make_cfg(
        appending,
        endpoints=["demand-history"],
        demand_weeks_back=2,
        on_missing_forecast="api_default",
    )
    drop(cfg, "sales", SALES, ["T1,1,2025-03-10,A1,,3,"])
    with freeze_time("2025-03-12 10:00:00", tick=True):
        run(cfg)
    drop(cfg, "sales", SALES, ["T2,1,2025-03-13,A1,,4,"])
    with freeze_time("2025-03-13 10:00:00", tick=True):
        run(cfg)
    assert appending.records("demand-history") == {}
    for day in ("2025-03-17 08:00:00", "2025-03-18 08:00:00"):
        with freeze_time(day, tick=True):
            run(cfg)
    week = appending.records("demand-history")[("A1", "WH", "2025-03-10", "ALL")]
    assert week["actualDemand"] == 7
    assert appending.state.stats["rows_appended"] == 0
    assert posts(appending)[post("demand-history")] == 1


def test_held_rows_show_in_syncd_status(
    sim: ImportJobsSim, make_cfg: Callable[..., Settings], tmp_path: Path
) -> None:
    """Held rows fail nothing, so `syncd status` names them under the last run's warnings:
    an operator sees why inventory never reaches the planning tool."""
    cfg = make_cfg(sim, endpoints=["inventory"])
    drop(cfg, "stock", STOCK, ["A1,,12,5", "A2,,4,"])
    assert run(cfg).counts["held:inventory"] == 1
    config = tmp_path / "status.toml"
    config.write_text(f"[daemon]\nstate_dir = {json.dumps(str(cfg.daemon.state_dir))}\n")
    shown = CliRunner().invoke(cli, ["status", "--config", str(config)], catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    assert "Warnings of the last run:" in shown.output
    [line] = [ln for ln in shown.output.splitlines() if ln.startswith("  planning.import:")]
    assert "endpoint inventory: 1 row(s) held: the host gives no reorder_point" in line
