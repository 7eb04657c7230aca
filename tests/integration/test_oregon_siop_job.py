"""Contract of the `oregon.siop` JOB: real loopback HTTP to `OregonSiopSim`, real state files.

Host input is dropped as files into `<host>/inbox/` and loaded by `host.inbox`; the job runs
through `run_job` as the daemon runs it. What is asserted is what the simulator stored and was
asked, and what the state DB (accepted items, rejects, runs) holds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time

import syncd.jobs  # noqa: F401 - fills the job registry
from syncd.config import Settings
from syncd.jobs.runner import RunResult
from syncd.sandbox.oregon_siop import ROUTE, OregonSiopSim
from syncd.state import Store
from tests.configs import connector_for, fast_retry, sim_settings
from tests.integration import jobkit
from tests.integration.jobkit import query

NOW = "2027-03-15 10:00:00"  # after the real clock: inbox files must not look future
SOLD_TO, SHIP_TO = "13035", "12256"


@pytest.fixture
def sim() -> Iterator[OregonSiopSim]:
    with OregonSiopSim(seed=3, retry_after=0) as running:
        yield running


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., Settings]:
    def make(sim: OregonSiopSim, name: str = "a", **options: Any) -> Settings:
        return sim_settings(
            tmp_path / name,
            connector_for(sim, retry=fast_retry(5)),
            jobs={
                "oregon.siop": {
                    "options": {
                        "sold_to_id": SOLD_TO,
                        "ship_to_id": SHIP_TO,
                        "material_attribute": "oregon_id",
                        **options,
                    }
                }
            },
        )

    return make


@pytest.fixture
def cfg(sim: OregonSiopSim, make_cfg: Callable[..., Settings]) -> Settings:
    return make_cfg(sim)


def run(settings: Settings, job: str = "oregon.siop", *, expect: str = "ok") -> RunResult:
    return jobkit.run(settings, job, expect=expect)


def drop(settings: Settings, feed: str, header: str, rows: list[str]) -> None:
    jobkit.drop(settings, feed, jobkit.csv_text(header, rows))


ARTICLES = "article_id,name,attr.oregon_id"
STOCK = "article_id,location,qty"
SALES = "transaction_id,line_id,sale_date,article_id,location,qty"
POS = "po_number,supplier_id,location,order_date,line_no,article_id,qty_ordered,qty_received"


def load(settings: Settings, extra_articles: list[str] | None = None) -> None:
    drop(settings, "articles", ARTICLES, ["A1,Chain,OT-1", "A2,Bar,", *(extra_articles or [])])
    drop(settings, "stock", STOCK, ["A1,,12", "A1,B-01,0.5", "A2,,4"])
    drop(
        settings,
        "purchase_orders",
        POS,
        ["PO-1,S1,,2027-03-01,1,A1,100,40", "PO-1,S1,,2027-03-01,2,A2,5,6"],
    )
    drop(
        settings,
        "sales",
        SALES,
        [
            "T1,1,2027-03-03,A1,,3",
            "T2,1,2027-03-04,A1,,2.5",
            "T3,1,2027-02-20,A1,,7",
            "T4,1,2027-03-05,A2,,1",
            "R1,1,2027-03-06,A2,,-1",
        ],
    )


def open_rejects(settings: Settings) -> list[dict[str, Any]]:
    return jobkit.open_rejects(settings, "oregon:siop")


def stored(sim: OregonSiopSim, material: str, month: int) -> dict[str, Any] | None:
    return sim.item(SOLD_TO, SHIP_TO, material, 2027, month)


# --- tests -----------------------------------------------------------------------------------------


def test_first_run_sends_every_item_and_a_second_run_sends_nothing(
    sim: OregonSiopSim, cfg: Settings
) -> None:
    with freeze_time(NOW, tick=True):
        load(cfg)
        first = run(cfg)
        assert sim.count(ROUTE) == 1
        assert [p.status for p in sim.posts()] == [201]
        assert first.counts["pushed"] == 4  # 2 materials x (March, February)
        march = stored(sim, "A1", 3)
        assert march is not None
        # 3 + 2.5 = 5.5 -> 6; stock 12 + 0.5 -> 13 (halves away from zero); on order 100 - 40
        assert (march["unitsSold"], march["onHand"], march["unitsOnOrder"]) == (6, 13, 60)
        assert (march["oregonToolMaterialId"], march["unitOfMeasure"], march["day"]) == (
            "OT-1",
            "EA",
            None,
        )
        february = stored(sim, "A1", 2)
        assert february is not None
        assert (february["unitsSold"], february["onHand"], february["unitsOnOrder"]) == (
            7,
            None,
            None,
        )
        a2 = stored(sim, "A2", 3)
        assert a2 is not None
        # a return nets out; an over-received PO line counts 0, not -1; no Oregon id: omitted
        assert (a2["unitsSold"], a2["onHand"], a2["unitsOnOrder"]) == (0, 4, 0)
        assert a2["oregonToolMaterialId"] is None
        rows = query(cfg, "SELECT * FROM oregon_siop_accepted ORDER BY material_id, month")
        assert [(r["material_id"], r["month"], r["day"]) for r in rows] == [
            ("A1", 2, 1),
            ("A1", 3, 1),
            ("A2", 2, 1),
            ("A2", 3, 1),
        ]

        second = run(cfg)
        assert sim.count(ROUTE) == 1  # no request at all
        assert second.counts["unchanged"] == 4
        assert "to_send" not in second.counts


def test_unchanged_inputs_skip_the_comparison_and_every_changed_input_is_still_sent(
    sim: OregonSiopSim, cfg: Settings, make_cfg: Callable[..., Settings]
) -> None:
    """A run that compared every item and wrote nothing lets the next runs skip while no
    input changed (no host file, same options, same day, no retried reject); a new host
    file, a changed option and a new day are each compared again, and what changed is
    sent."""
    with freeze_time(NOW, tick=True):
        load(cfg)
        run(cfg)  # sends every item
        compared = run(cfg)  # compares, finds nothing, writes nothing
        assert (
            compared.counts.get("unchanged", 0),
            compared.counts.get("skipped_unchanged", 0),
        ) == (4, 0)
        skipped = run(cfg)
        assert skipped.counts.get("skipped_unchanged", 0) == 1
        assert "unchanged" not in skipped.counts
        assert sim.count(ROUTE) == 1

        drop(cfg, "sales", SALES, ["T5,1,2027-02-27,A2,,4"])  # a late sale in February
        changed = run(cfg)
        assert (changed.counts.get("pushed", 0), changed.counts.get("skipped_unchanged", 0)) == (
            1,
            0,
        )
        assert sim.count(ROUTE) == 2
        february = stored(sim, "A2", 2)
        assert february is not None
        assert february["unitsSold"] == 4
        assert run(cfg).counts.get("unchanged", 0) == 4  # the run before sent: compared again
        assert run(cfg).counts.get("skipped_unchanged", 0) == 1

        drop(cfg, "stock", STOCK, ["A1,,12", "A1,B-01,0.5", "A2,,4"])  # loaded, same rows
        assert run(cfg).counts.get("unchanged", 0) == 4
        assert run(cfg).counts.get("skipped_unchanged", 0) == 1

        wider = make_cfg(sim, periods_back=2)  # an option changed: a third month to send
        assert run(wider).counts.get("pushed", 0) == 2
        assert run(wider).counts.get("unchanged", 0) == 6
        assert run(wider).counts.get("skipped_unchanged", 0) == 1
    with freeze_time("2027-04-01 10:00:00", tick=True):  # a new month: April is current
        moved_on = run(wider)
        assert moved_on.counts.get("skipped_unchanged", 0) == 0
        assert moved_on.counts.get("pushed", 0) >= 2
        assert stored(sim, "A1", 4) is not None


def test_a_changed_sale_resends_only_its_item(sim: OregonSiopSim, cfg: Settings) -> None:
    with freeze_time(NOW, tick=True):
        load(cfg)
        run(cfg)
        drop(cfg, "sales", SALES, ["T5,1,2027-02-27,A2,,4"])  # a late sale in February
        result = run(cfg)
    assert sim.count(ROUTE) == 2
    assert [p.received for p in sim.posts()] == [4, 1]
    assert result.counts["pushed"] == 1
    assert result.counts["unchanged"] == 3
    february = stored(sim, "A2", 2)
    assert february is not None
    assert february["unitsSold"] == 4


def test_a_closed_month_keeps_the_stock_it_was_sent_with(sim: OregonSiopSim, cfg: Settings) -> None:
    with freeze_time(NOW, tick=True):
        load(cfg)
        run(cfg)
    with freeze_time("2027-04-02 10:00:00", tick=True):
        drop(cfg, "stock", STOCK, ["A1,,1", "A2,,1"])  # stock moved on in April
        result = run(cfg)
        # April is new (2 items); March is closed now and unchanged: not re-sent
        assert [p.received for p in sim.posts()] == [4, 2]
        assert result.counts["unchanged"] == 2
        drop(cfg, "sales", SALES, ["T6,1,2027-03-31,A1,,1"])  # a late March sale
        run(cfg)
    assert [p.received for p in sim.posts()] == [4, 2, 1]
    march = stored(sim, "A1", 3)
    assert march is not None
    # sales recomputed, stock as it was when March was current (not April's 1)
    assert (march["unitsSold"], march["onHand"], march["unitsOnOrder"]) == (7, 13, 60)


def test_day_granularity_sends_one_item_per_day(
    sim: OregonSiopSim, make_cfg: Callable[..., Settings]
) -> None:
    cfg = make_cfg(sim, granularity="day", periods_back=2)
    with freeze_time("2027-03-05 10:00:00", tick=True):
        load(cfg)
        run(cfg)
    assert sim.stats()["items_stored"] == 6
    day = sim.item(SOLD_TO, SHIP_TO, "A1", 2027, 3, 4)
    assert day is not None
    assert (day["day"], day["unitsSold"], day["onHand"]) == (4, 3, None)  # 2.5 rounds to 3
    today = sim.item(SOLD_TO, SHIP_TO, "A2", 2027, 3, 5)
    assert today is not None
    assert (today["unitsSold"], today["onHand"]) == (1, 4)


def test_a_locally_invalid_item_is_rejected_without_a_request(
    sim: OregonSiopSim, cfg: Settings
) -> None:
    long_id = "A" * 19  # materialId max length 18
    with freeze_time(NOW, tick=True):
        load(cfg, [f"{long_id},Too long,", "A3,Bad Oregon id,OREGON-TOOLONG"])
        result = run(cfg)
        assert result.counts["refuse"] == 4
        assert result.counts["pushed"] == 4
        assert [p.received for p in sim.posts()] == [4]  # the invalid items were never sent
        rejects = open_rejects(cfg)
        assert sorted((r["field"], r["reference"].split(" (")[0]) for r in rejects) == [
            ("materialId", f"material {long_id} period 2027-02"),
            ("materialId", f"material {long_id} period 2027-03"),
            ("oregonToolMaterialId", "material A3 period 2027-02"),
            ("oregonToolMaterialId", "material A3 period 2027-03"),
        ]
        payload = json.loads(rejects[0]["payload"])
        assert payload["source"] == "local"
        assert payload["raw"] is None
        assert "host_articles" in rejects[0]["reference"]
        # unchanged and still invalid: waits, no new reject, no request
        again = run(cfg)
        assert again.counts["waiting"] == 4
        assert len(open_rejects(cfg)) == 4
        assert sim.count(ROUTE) == 1


def test_a_refused_item_becomes_a_reject_and_the_rest_is_accepted(
    sim: OregonSiopSim, cfg: Settings
) -> None:
    sim.refuse("materialId", "A2", "The material A2 is not known.")
    with freeze_time(NOW, tick=True):
        load(cfg)
        result = run(cfg)
        assert result.counts["pushed"] == 2
        assert result.counts["rejected"] == 2
        assert [p.status for p in sim.posts()] == [400, 201]  # refused rows dropped, rest resent
        assert stored(sim, "A1", 3) is not None
        assert stored(sim, "A2", 3) is None
        rejects = open_rejects(cfg)
        assert len(rejects) == 2
        march = next(r for r in rejects if "period 2027-03" in r["reference"])
        assert march["field"] == "materialId"
        assert march["reason"] == "materialId: The material A2 is not known."
        assert "host_sales sales-" in march["reference"]
        assert "host_stock stock-" in march["reference"]
        assert "host_purchase_orders PO-1" in march["reference"]
        payload = json.loads(march["payload"])
        assert payload["source"] == "remote"
        assert json.loads(payload["raw"])["errors"]
        assert payload["trace_id"].startswith("00-")

        # unchanged: not sent again
        run(cfg)
        assert sim.count(ROUTE) == 2

        # the operator fixes it remotely and retries one reject: only that item goes again
        sim.clear_rules()
        with Store.open(cfg.db_path, migrate=False) as store:
            assert store.retry_reject(march["id"]) == "retry"
        retried = run(cfg)
        assert retried.counts["retried"] == 1
        assert retried.counts["pushed"] == 1
        assert [p.received for p in sim.posts()][-1] == 1
        assert stored(sim, "A2", 3) is not None
        assert query(cfg, "SELECT status FROM rejects WHERE id = ?", [march["id"]]) == [
            {"status": "retried"}
        ]
        # the other one is resent when it changes, and its reject is resolved
        drop(cfg, "sales", SALES, ["T7,1,2027-02-10,A2,,2"])
        run(cfg)
        assert open_rejects(cfg) == []
        february = stored(sim, "A2", 2)
        assert february is not None
        assert february["unitsSold"] == 2


def test_a_malformed_error_body_is_kept_raw_in_the_reject(
    make_cfg: Callable[..., Settings],
) -> None:
    with OregonSiopSim(seed=4, error_style="document") as sim:
        cfg = make_cfg(sim, periods_back=0)
        sim.refuse("materialId", "A1", "The material A1 is blocked.")
        with freeze_time(NOW, tick=True):
            load(cfg)
            result = run(cfg)
        assert result.counts["pushed"] == 1
        [reject] = open_rejects(cfg)
        assert reject["reason"] == "materialId: The material A1 is blocked."
        raw = json.loads(reject["payload"])["raw"]
        assert '"errors" {' in raw
        with pytest.raises(json.JSONDecodeError):
            json.loads(raw)


def test_throttling_and_unavailability_converge(sim: OregonSiopSim, cfg: Settings) -> None:
    sim.faults.script(ROUTE, ["429", "503", "429"])
    with freeze_time(NOW, tick=True):
        load(cfg)
        result = run(cfg)
    assert result.counts["pushed"] == 4
    assert sim.count(ROUTE) == 4
    assert len(sim.items()) == 4


def test_persistent_unavailability_fails_the_run_and_the_next_run_sends(
    sim: OregonSiopSim, cfg: Settings
) -> None:
    sim.faults.rate(ROUTE, "503", 1.0)
    with freeze_time(NOW, tick=True):
        load(cfg)
        failed = run(cfg, expect="failed")
        assert "503" in (failed.error or "")
        assert query(cfg, "SELECT count(*) AS n FROM oregon_siop_accepted") == [{"n": 0}]
        sim.faults.rate(ROUTE, "503", 0.0)
        result = run(cfg)
    assert result.counts["pushed"] == 4


def test_without_sold_to_the_job_fails_with_a_config_error(
    sim: OregonSiopSim, make_cfg: Callable[..., Settings]
) -> None:
    cfg = make_cfg(sim, sold_to_id="")
    result = run(cfg, expect="failed")
    assert "sold_to_id" in (result.error or "")
    assert sim.count(ROUTE) == 0
