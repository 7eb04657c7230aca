"""Contract of the Netstock JOBS: real loopback HTTP to `NetstockSim`, real SQLite state files.

Jobs run as the daemon runs them (`run_job` on the registered spec, then `outbox.send`);
host output is read back from `<host>/outbox/`. Crashes are simulated in-process by making
a step raise once, then running the job again: nothing popped is lost or written twice, an
export resumes its dataset without a second start and without re-sending a chunk.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import syncd.jobs  # noqa: F401 - fills the job registry
from syncd.config import Settings
from syncd.jobs import netstock_pop
from syncd.jobs.runner import RunResult
from syncd.logs import redactor
from syncd.sandbox.netstock import (
    DEFAULT_EXPIRES_IN,
    DEFAULT_USERNAME,
    TOKEN_PATH,
    ManualClock,
    NetstockSim,
)
from syncd.state import Store
from tests.configs import FAST_BACKOFF, connector_for, fast_retry, sim_settings
from tests.integration.jobkit import query, run

START = 1_762_160_400.0  # 2025-11-03 09:00 UTC
TOKEN_ROUTE = f"POST {TOKEN_PATH}"


# --- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def sim(clock: ManualClock) -> Iterator[NetstockSim]:
    with NetstockSim(
        seed=7, clock=clock, retry_after=0, orders_per_dataset={"po": 0, "tr": 0, "wo": 0}
    ) as running:
        yield running


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., Settings]:
    def make(
        sim: NetstockSim,
        name: str = "a",
        formats: dict[str, str] | None = None,
        chunk_size: int = 1000,
        connector: dict[str, Any] | None = None,
        **jobs: dict[str, Any],
    ) -> Settings:
        return sim_settings(
            tmp_path / name,
            connector_for(
                sim,
                options={"chunk_size": chunk_size, **(connector or {})},
                retry=fast_retry(3),
                timeouts={"read": 2.0},
            ),
            host={"options": {"outbox_formats": formats}} if formats else None,
            outbox=FAST_BACKOFF,
            jobs={job.replace("_", "."): {"options": opts} for job, opts in jobs.items()},
        )

    return make


@pytest.fixture
def cfg(sim: NetstockSim, make_cfg: Callable[..., Settings]) -> Settings:
    return make_cfg(sim)


def send(settings: Settings) -> dict[str, int]:
    return run(settings, "outbox.send").counts


def outbox_files(settings: Settings, stream: str) -> list[Path]:
    return sorted((settings.host_dir / "outbox").glob(f"{stream}-*"))


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- netstock.pop ---------------------------------------------------------------------------


PO_LINE = {"item_code": "CONPAPERST", "quantity": "99", "unit_cost": "3.0", "supplier": "OM"}


def test_pops_land_as_host_files_exactly_once_with_exact_decimals(
    sim: NetstockSim, cfg: Settings
) -> None:
    sim.add_file("po", [PO_LINE, {"item_code": "X2", "quantity": "0.125", "unit_cost": "1.10"}])
    sim.add_file("tr", [{"item_code": "T1", "quantity": "5.0", "unit_cost": "10.0"}])
    sim.add_file("wo", [{"item_code": "W1", "quantity": "2.5"}])
    sim.add_file("wo", [{"item_code": "W2", "quantity": "7"}])

    result = run(cfg, "netstock.pop")
    assert result.counts["popped"] == 4
    assert result.counts["queued"] == 4
    assert sim.queued("po") == sim.queued("tr") == sim.queued("wo") == []
    assert send(cfg)["pushed"] == 4

    [po] = outbox_files(cfg, "netstock_po")
    po_rows = jsonl(po)
    assert [(r["item_code"], r["quantity"], r["unit_cost"]) for r in po_rows] == [
        ("CONPAPERST", "99", "3.0"),
        ("X2", "0.125", "1.10"),
    ]
    assert po_rows[0]["file_name"] == "po_1.csv"
    assert po_rows[0]["line_no"] == 1
    [tr] = outbox_files(cfg, "netstock_tr")
    assert jsonl(tr)[0]["quantity"] == "5.0"  # sent as the JSON number 5.0, kept exact
    wo = outbox_files(cfg, "netstock_wo")
    assert [jsonl(f)[0]["quantity"] for f in wo] == ["2.5", "7.0"]  # the answer said 7.0

    # Delivered on the next run; nothing popped again, nothing queued again.
    again = run(cfg, "netstock.pop")
    assert again.counts.get("queued", 0) == 0
    journal = query(cfg, "SELECT status, delivered_at FROM netstock_pops ORDER BY id")
    assert [r["status"] for r in journal] == ["delivered"] * 4
    assert all(r["delivered_at"] for r in journal)
    assert send(cfg).get("pushed", 0) == 0
    assert len(list((cfg.host_dir / "outbox").iterdir())) == 4


def test_runs_share_one_token_renewed_once_when_refused_and_never_across_a_reload(
    sim: NetstockSim, cfg: Settings, clock: ManualClock, tmp_path: Path
) -> None:
    """The token outlives a run (the README's "cached"): 15 runs make one token request.
    When the server refuses it (its lifetime passed on the simulator's clock), the next run
    renews it once and succeeds, and later runs reuse the new one. A reload with another
    password never runs on the old token."""
    for _ in range(15):
        run(cfg, "netstock.pop")
    assert sim.count(TOKEN_ROUTE) == 1
    clock.advance(DEFAULT_EXPIRES_IN + 1)
    sim.add_file("po", [PO_LINE])
    assert run(cfg, "netstock.pop").counts["popped"] == 1
    for _ in range(5):
        run(cfg, "netstock.pop")
    assert sim.count(TOKEN_ROUTE) == 2
    assert sum(r.status == 401 for r in sim.requests) == 1

    reloaded = sim_settings(
        tmp_path / "reloaded",
        connector_for(sim, password="a-changed-password-9", retry=fast_retry(3)),
    )
    failed = run(reloaded, "netstock.pop", expect="failed")
    assert "refused" in (failed.error or "")
    assert sim.count(TOKEN_ROUTE) > 2
    assert "a-changed-password-9" not in (failed.error or "")


@pytest.mark.parametrize("style", ["string", "number"])
def test_string_and_number_quantities_parse_exactly(
    clock: ManualClock, make_cfg: Callable[..., Settings], style: str
) -> None:
    with NetstockSim(seed=3, clock=clock, quantity_styles={"po": style}) as sim:
        cfg = make_cfg(sim, name=style, formats={"netstock_po": "csv"})
        sim.add_file("po", [{"item_code": "A", "quantity": "12.5", "unit_cost": "0.10"}])
        run(cfg, "netstock.pop")
        send(cfg)
    [path] = outbox_files(cfg, "netstock_po")
    assert path.suffix == ".csv"
    [row] = list(csv.DictReader(io.StringIO(path.read_text())))
    assert Decimal(row["quantity"]) == Decimal("12.5")
    assert Decimal(row["unit_cost"]) == Decimal("0.10")
    assert row["quantity"] == "12.5"  # "12.5" as text, 12.5 as a number: the same exact text


def test_crash_after_the_journal_write_loses_nothing(
    sim: NetstockSim, cfg: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim.add_file("po", [PO_LINE])
    sim.add_file("po", [{"item_code": "B", "quantity": "1"}])

    def crash(*_a: Any, **_k: Any) -> int:
        raise RuntimeError("killed after the journal write")

    monkeypatch.setattr(netstock_pop, "queue_row", crash)
    run(cfg, "netstock.pop", expect="crashed")  # the simulated kill is an unexpected exception
    # The first answer was popped (gone from Netstock) and exists only in the journal.
    assert len(sim.popped("po")) == 1
    assert len(sim.queued("po")) == 1
    rows = query(cfg, "SELECT status, raw FROM netstock_pops")
    assert [r["status"] for r in rows] == ["journaled"]
    assert "CONPAPERST" in rows[0]["raw"]

    monkeypatch.undo()
    result = run(cfg, "netstock.pop")
    assert result.counts["queued"] == 2
    send(cfg)
    files = outbox_files(cfg, "netstock_po")
    assert [jsonl(f)[0]["item_code"] for f in files] == ["CONPAPERST", "B"]


def test_crash_after_queueing_duplicates_nothing(
    sim: NetstockSim, cfg: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim.add_file("tr", [{"item_code": "T1", "quantity": 5}])
    sim.add_file("tr", [{"item_code": "T2", "quantity": 6}])
    original = netstock_pop.queue_row

    def queue_then_crash(ctx: Any, row: Any) -> int:
        original(ctx, row)
        raise RuntimeError("killed after queueing")

    monkeypatch.setattr(netstock_pop, "queue_row", queue_then_crash)
    run(cfg, "netstock.pop", expect="crashed")  # the simulated kill is an unexpected exception
    monkeypatch.undo()
    # A second queueing of the same journal row adds nothing (same idempotency key).
    run(cfg, "netstock.pop")
    run(cfg, "netstock.pop")
    send(cfg)
    send(cfg)
    files = outbox_files(cfg, "netstock_tr")
    assert [jsonl(f)[0]["item_code"] for f in files] == ["T1", "T2"]
    assert len(sim.popped("tr")) == 2
    run(cfg, "netstock.pop")  # marks what the sender delivered
    statuses = [r["status"] for r in query(cfg, "SELECT status FROM netstock_pops")]
    assert statuses == ["delivered", "delivered"]


def test_an_unreadable_answer_is_kept_and_does_not_stop_the_others(
    sim: NetstockSim, cfg: Settings
) -> None:
    sim.add_file("wo", [{"item_code": "W1", "quantity": "lots"}])  # not a number
    sim.add_file("wo", [{"item_code": "W2", "quantity": "3"}])
    result = run(cfg, "netstock.pop")
    assert result.counts["unparseable"] == 1
    assert result.counts["queued"] == 1
    rows = query(cfg, "SELECT status, raw FROM netstock_pops ORDER BY id")
    assert [r["status"] for r in rows] == ["unparseable", "queued"]
    assert '"lots"' in rows[0]["raw"]
    assert (
        query(cfg, "SELECT count(*) AS n FROM rejects WHERE source = 'netstock:pop_wo'")[0]["n"]
        == 1
    )
    assert query(cfg, "SELECT kind FROM alerts WHERE resolved_at IS NULL") == [
        {"kind": "netstock_pop"}
    ]


def test_pops_are_bounded_per_run(sim: NetstockSim, make_cfg: Callable[..., Settings]) -> None:
    cfg = make_cfg(sim, netstock_pop={"max_pops": 2, "kinds": ["po"]})
    sim.generate("po", files=3)
    assert run(cfg, "netstock.pop").counts["popped"] == 2
    assert run(cfg, "netstock.pop").counts["popped"] == 1
    assert run(cfg, "netstock.pop").counts.get("popped", 0) == 0


def test_a_dry_run_pops_nothing(sim: NetstockSim, cfg: Settings) -> None:
    sim.add_file("po", [PO_LINE])
    dry = run(cfg, "netstock.pop", dry_run=True, expect="dry-run")
    assert len(sim.queued("po")) == 1
    assert dry.counts == {"pops_not_made": 3}  # po, tr, wo: the operator is told why


@pytest.mark.parametrize("fault", ["drop", "500"])
def test_a_pop_without_an_answer_raises_an_alert_naming_endpoint_and_time(
    sim: NetstockSim, cfg: Settings, fault: str
) -> None:
    """Netstock removed the file but the answer never came: the operator is told which pop
    endpoint was called and when (a reject and an alert), nothing is popped after it."""
    from datetime import UTC, datetime

    sim.add_file("po", [PO_LINE])
    sim.add_file("po", [{"item_code": "B", "quantity": "1"}])
    sim.add_file("tr", [{"item_code": "T1", "quantity": 5}])
    sim.faults.script("POST /file/pop_po", [fault])
    before = datetime.now(UTC).isoformat(timespec="seconds")
    result = run(cfg, "netstock.pop")
    after = datetime.now(UTC).isoformat(timespec="seconds")
    assert result.counts["pops_outcome_unknown"] == 1
    # "drop": the file is gone from Netstock; "500": it is not, but syncd cannot know that.
    gone = 1 if fault == "drop" else 0
    assert len(sim.popped("po")) == gone
    assert sim.count("POST /file/pop_po") == 1  # never retried: a retry pops the next file
    assert len(sim.queued("po")) == 2 - gone
    assert len(sim.queued("tr")) == 1  # popping stopped for this run
    assert query(cfg, "SELECT count(*) AS n FROM netstock_pops") == [{"n": 0}]
    [alert] = query(cfg, "SELECT kind, subject, message FROM alerts WHERE resolved_at IS NULL")
    assert alert["kind"] == "netstock_pop"
    assert alert["subject"].startswith("lost:po:")
    sent_at = alert["subject"].removeprefix("lost:po:")
    assert before[:19] <= sent_at[:19] <= after[:19]
    assert f"POST {sim.base_url}/file/pop_po sent at {sent_at}" in alert["message"]
    assert DEFAULT_USERNAME in alert["message"]
    [reject] = query(cfg, "SELECT source, reference FROM rejects")
    assert reject == {
        "source": "netstock:pop_po",
        "reference": f"POST {sim.base_url}/file/pop_po at {sent_at}",
    }
    # The next run pops on; the alert stays until an operator resolves it.
    again = run(cfg, "netstock.pop")
    assert again.counts["popped"] == 3 - gone
    assert len(query(cfg, "SELECT id FROM alerts WHERE resolved_at IS NULL")) == 1


# --- netstock.export ------------------------------------------------------------------------


def seed_host(settings: Settings, *, articles: int = 5, extra_sale: bool = False) -> None:
    """Host tables as `host.inbox` leaves them (loaded directly: the feeds have their tests)."""
    meta = {"file": "seed.csv", "line": 1, "load_id": 1, "loaded_at": "2026-11-23T00:00:00Z"}
    with Store.open(settings.db_path, migrate=False) as store, store.transaction():
        db = store.db
        db["host_locations"].insert_all(  # type: ignore[union-attr]
            [
                {"location_id": "WH1", "name": "Main warehouse", "type": "warehouse", **meta},
                {"location_id": "ST1", "name": "Store 1", "location_group": "stores", **meta},
            ]
        )
        db["host_articles"].insert_all(  # type: ignore[union-attr]
            [
                {
                    "article_id": f"A{n:03d}",
                    "name": f"Article {n}",
                    "unit": "EA",
                    "dim_x": "10",
                    "dim_y": "20",
                    "dim_z": "30",
                    "dim_uom": "cm",
                    "attributes": json.dumps({"ean": f"40000000{n:05d}", "weight": "1.25"}),
                    **meta,
                }
                for n in range(articles)
            ]
        )
        db["host_stock"].insert_all(  # type: ignore[union-attr]
            [
                {
                    "article_id": f"A{n:03d}",
                    "location": "WH1" if n % 2 else "",
                    "qty": n * 3,
                    **meta,
                }
                for n in range(articles)
            ]
        )
        db["host_suppliers"].insert_all(  # type: ignore[union-attr]
            [{"supplier_id": "S1", "name": "Supplier 1", "lead_time_days": 14, **meta}]
        )
        sales = [
            {
                "transaction_id": "T1",
                "line_id": "1",
                "sale_date": "2026-11-20",
                "article_id": "A001",
                "location": "ST1",
                "customer_id": "C9",
                "qty": 2,
                "sales_value": "19.99",
                "cost_of_sales": "12.10",
                **meta,
            }
        ]
        if extra_sale:
            sales.append({**sales[0], "line_id": "2", "qty": 1, "sales_value": "9.99"})
        db["host_sales"].insert_all(sales)  # type: ignore[union-attr]
        db["host_purchase_orders"].insert(  # type: ignore[union-attr]
            {"po_number": "PO1", "supplier_id": "S1", "location": "WH1", "order_date": "2026-11-01"}
            | meta
        )
        db["host_purchase_order_lines"].insert_all(  # type: ignore[union-attr]
            [
                {"po_number": "PO1", "line_no": "1", "article_id": "A001", "qty_ordered": 10,
                 "qty_received": 4, "unit_cost": "2.50", **meta},
                {"po_number": "PO1", "line_no": "2", "article_id": "A002", "qty_ordered": 5,
                 "qty_received": 5, "unit_cost": "3.00", **meta},
            ]
        )  # fmt: skip


MODEL_ROWS = {"locations": 2, "master": 5, "stocks": 5, "suppliers": 1, "sales": 1, "po": 1}


@pytest.fixture
def ecfg(sim: NetstockSim, make_cfg: Callable[..., Settings]) -> Settings:
    settings = make_cfg(sim, chunk_size=2, netstock_export={"poll_timeout": 0})
    seed_host(settings)
    return settings


def exports(settings: Settings) -> list[dict[str, Any]]:
    return query(settings, "SELECT * FROM netstock_exports ORDER BY id")


def export_to_complete(settings: Settings, clock: ManualClock) -> RunResult:
    first = run(settings, "netstock.export")
    assert exports(settings)[-1]["state"] == "processing"
    clock.advance(60)
    run(settings, "netstock.export")
    return first


def assert_dataset_matches(sim: NetstockSim, dataset_id: str) -> None:
    imports = {m.model: m for m in sim.model_imports(dataset_id)}
    for model, n in MODEL_ROWS.items():
        assert imports[model].lines_received == n, model
        assert imports[model].minimum_expected_lines == n, model  # model end count = rows
        assert imports[model].success is True
    assert imports["pohist"].lines_received == 0
    assert imports["pohist"].success is True


def test_full_export_to_complete(sim: NetstockSim, ecfg: Settings, clock: ManualClock) -> None:
    first = export_to_complete(ecfg, clock)
    assert first.counts["datasets_started"] == 1
    assert first.counts["chunks_sent"] == 10  # chunks of 2: 1 + 3 + 3 + 1 + 1 + 1
    [export] = exports(ecfg)
    assert export["state"] == "complete"
    assert export["success"] == 1
    assert sim.dataset(export["dataset_id"]).success is True
    assert_dataset_matches(sim, export["dataset_id"])
    # Mapping reached Netstock with exact values.
    [po] = sim.rows(export["dataset_id"], "po")
    assert po["outstanding_quantity"] == 6
    assert po["purchase_unit_cost"] == 2.5
    [sale] = sim.rows(export["dataset_id"], "sales")
    assert sale["sales_value"] == 19.99
    assert sale["transaction_details"] == "T1/1"
    stocks = {(r["item_code"], r["location"]) for r in sim.rows(export["dataset_id"], "stocks")}
    assert ("A000", "MAIN") in stocks
    assert ("A001", "WH1") in stocks
    master = sim.rows(export["dataset_id"], "master")[0]
    assert master["unit_volume"] == 0.006
    assert master["unique_identifier"] == "4000000000000"
    chunks = query(ecfg, "SELECT count(*) AS n, sum(rows) AS r FROM netstock_export_chunks")
    assert chunks == [{"n": 10, "r": sum(MODEL_ROWS.values())}]
    assert query(ecfg, "SELECT count(*) AS n FROM netstock_export_rows") == [{"n": 0}]
    # The hash of what was frozen and sent is the hash of the lines the mapping gives.
    from syncd.jobs.netstock_dataset import Options, snapshot_hash

    with Store.open(ecfg.db_path, migrate=False) as store:
        assert export["snapshot_hash"] == snapshot_hash(store, Options())[0]


def test_a_dry_run_renders_but_keeps_and_sends_nothing(
    sim: NetstockSim, ecfg: Settings, clock: ManualClock
) -> None:
    dry = run(ecfg, "netstock.export", dry_run=True, expect="dry-run")
    assert dry.counts["prepared"] == 1
    assert exports(ecfg) == []
    assert query(ecfg, "SELECT count(*) AS n FROM netstock_export_rows") == [{"n": 0}]
    assert len(sim.requests) == 0
    export_to_complete(ecfg, clock)
    assert [e["state"] for e in exports(ecfg)] == ["complete"]


def test_unchanged_data_sends_no_dataset(
    sim: NetstockSim, ecfg: Settings, clock: ManualClock
) -> None:
    export_to_complete(ecfg, clock)
    requests = len(sim.requests)
    again = run(ecfg, "netstock.export")
    assert again.counts["unchanged"] == 1
    assert len(sim.requests) == requests  # not even a token request
    assert len(sim.datasets()) == 1

    seed_host_change(ecfg)
    export_to_complete(ecfg, clock)
    assert len(sim.datasets()) == 2
    assert [e["state"] for e in exports(ecfg)] == ["complete", "complete"]


def seed_host_change(settings: Settings) -> None:
    with Store.open(settings.db_path, migrate=False) as store, store.transaction():
        store.db.execute("UPDATE host_stock SET qty = qty + 1 WHERE article_id = 'A003'")


def test_stop_at_a_checkpoint_resumes_the_same_dataset(
    sim: NetstockSim, ecfg: Settings, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from syncd.connectors.netstock.client import NetstockClient

    stopping = threading.Event()
    original = NetstockClient.import_chunk
    calls = {"n": 0}

    def chunk_then_stop(self: Any, *args: Any, **kwargs: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 4:
            stopping.set()  # a SIGTERM arrives mid-export
        return original(self, *args, **kwargs)

    monkeypatch.setattr(NetstockClient, "import_chunk", chunk_then_stop)
    run(ecfg, "netstock.export", stopping=stopping, expect="interrupted")
    [export] = exports(ecfg)
    assert export["state"] == "importing"
    monkeypatch.undo()
    requests = len(sim.requests)
    dry = run(ecfg, "netstock.export", dry_run=True, expect="dry-run")
    assert dry.counts == {"would_resume": 1}  # says what the real run would do, does nothing
    assert len(sim.requests) == requests

    export_to_complete(ecfg, clock)
    assert sim.count("POST /dataset/start") == 1
    assert len(sim.datasets()) == 1
    assert_dataset_matches(sim, export["dataset_id"])  # no chunk twice, none missing
    assert exports(ecfg)[0]["state"] == "complete"


def test_chunks_are_sent_as_frozen_and_frozen_a_chunk_per_row(
    sim: NetstockSim, ecfg: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rows frozen for an export hold a chunk's lines each; a chunk's body is built
    around that text (sent as is), and Netstock receives exactly those lines."""
    from syncd.connectors.netstock.answers import JsonLines
    from syncd.connectors.netstock.client import NetstockClient

    bodies: list[JsonLines] = []
    original = NetstockClient.import_chunk

    def spy(self: Any, dataset_id: str, model: str, rows: Any, **kw: Any) -> int:
        assert isinstance(rows, JsonLines)
        bodies.append(rows)
        return original(self, dataset_id, model, rows, **kw)

    monkeypatch.setattr(NetstockClient, "import_chunk", spy)
    stopping = stop_after_chunks(monkeypatch, 2)
    run(ecfg, "netstock.export", stopping=stopping, expect="interrupted")
    frozen = query(
        ecfg, "SELECT model, seq, row FROM netstock_export_rows WHERE model = 'master' ORDER BY seq"
    )
    assert [(r["seq"], r["row"].count("\n") + 1) for r in frozen] == [(0, 2), (2, 2), (4, 1)]
    assert bodies[1].text == frozen[0]["row"].replace("\n", ",")
    [export] = exports(ecfg)
    received = sim.rows(export["dataset_id"], "master")
    assert [json.dumps(r, sort_keys=True, separators=(",", ":")) for r in received] == (
        frozen[0]["row"].split("\n")
    )


def test_a_lost_chunk_answer_is_confirmed_not_resent(
    sim: NetstockSim, ecfg: Settings, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from syncd.jobs.netstock_export import ExportFlow

    original = ExportFlow.record_chunk
    calls = {"n": 0}

    def crash_on_third(self: Any, index: int, rows: int, how: str) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("killed after the chunk was sent, before it was recorded")
        original(self, index, rows, how)

    monkeypatch.setattr(ExportFlow, "record_chunk", crash_on_third)
    run(ecfg, "netstock.export", expect="crashed")  # the simulated kill is an unexpected exception
    monkeypatch.undo()

    export_to_complete(ecfg, clock)
    [export] = exports(ecfg)
    assert export["state"] == "complete"
    assert_dataset_matches(sim, export["dataset_id"])
    how = query(ecfg, "SELECT how, count(*) AS n FROM netstock_export_chunks GROUP BY how")
    assert {r["how"]: r["n"] for r in how} == {"answer": 9, "confirmed": 1}


def test_a_crash_after_dataset_start_adopts_that_dataset(
    sim: NetstockSim, ecfg: Settings, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from syncd.connectors.netstock.client import NetstockClient

    original = NetstockClient.dataset_start

    def start_then_crash(self: Any) -> str:
        original(self)
        raise RuntimeError("killed before the dataset id was recorded")

    monkeypatch.setattr(NetstockClient, "dataset_start", start_then_crash)
    run(ecfg, "netstock.export", expect="crashed")  # the simulated kill is an unexpected exception
    monkeypatch.undo()
    result = run(ecfg, "netstock.export")
    assert result.counts["adopted"] == 1
    clock.advance(60)
    run(ecfg, "netstock.export")
    assert len(sim.datasets()) == 1
    [export] = exports(ecfg)
    assert export["state"] == "complete"
    assert_dataset_matches(sim, export["dataset_id"])


def test_an_ambiguous_chunk_failure_checks_the_model_count(
    sim: NetstockSim, ecfg: Settings, clock: ManualClock
) -> None:
    sim.faults.script("POST /import/master", ["ok", "drop"])  # 2nd chunk lands, answer lost
    first = run(ecfg, "netstock.export")
    assert first.counts["outcome_unknown"] == 1
    clock.advance(60)
    run(ecfg, "netstock.export")
    [export] = exports(ecfg)
    assert export["state"] == "complete"
    assert_dataset_matches(sim, export["dataset_id"])


def test_processing_failure_records_the_audit_log_and_alerts(
    sim: NetstockSim, ecfg: Settings, clock: ManualClock
) -> None:
    sim.fail_processing("Transforming", "Transform script failed: item_code empty")
    export_to_complete(ecfg, clock)
    [export] = exports(ecfg)
    assert export["state"] == "failed"
    assert export["success"] == 0
    assert "Transform script failed" in export["message"]
    audit = json.loads(export["audit"])
    assert any("Transform script failed" in e["message"] for e in audit)
    alerts = query(ecfg, "SELECT kind, message FROM alerts WHERE resolved_at IS NULL")
    assert [a["kind"] for a in alerts] == ["netstock_export"]

    # The next cycle sends the snapshot again (no successful dataset holds it) and clears it.
    export_to_complete(ecfg, clock)
    assert [e["state"] for e in exports(ecfg)] == ["failed", "complete"]
    assert query(ecfg, "SELECT kind FROM alerts WHERE resolved_at IS NULL") == []


def test_a_failure_message_echoing_a_secret_is_stored_redacted(
    sim: NetstockSim, ecfg: Settings, clock: ManualClock
) -> None:
    """Netstock's failure message and audit log are remote text: a credential they quote is
    redacted in the export's message and audit and in the alert, whole or cut."""
    secret = "Np4sW9rdQx7Lm2Zk"
    redactor.set_secrets([secret])  # what `syncd run` / `once` do with the configured ones
    sim.fail_processing("Transforming", f"login {secret} refused; retry with {secret[:9]}")
    export_to_complete(ecfg, clock)
    [export] = exports(ecfg)
    alerts = query(ecfg, "SELECT message FROM alerts WHERE resolved_at IS NULL")
    stored = "\n".join([export["message"], export["audit"], *(a["message"] for a in alerts)])
    assert "login ********** refused" in export["message"]
    assert not [secret[i : i + 6] for i in range(len(secret) - 5) if secret[i : i + 6] in stored]


def test_a_foreign_open_dataset_is_not_adopted(
    sim: NetstockSim, ecfg: Settings, clock: ManualClock
) -> None:
    from syncd.connectors.netstock.client import NetstockClient

    with NetstockClient(ecfg.connectors.netstock) as other:
        foreign = other.dataset_start()
        other.model_start(foreign, "locations")
    result = run(ecfg, "netstock.export")
    assert result.counts.get("datasets_started", 0) == 0
    [export] = exports(ecfg)
    assert export["state"] == "prepared"
    assert export["dataset_id"] is None
    alerts = query(ecfg, "SELECT kind, subject FROM alerts WHERE resolved_at IS NULL")
    assert alerts == [{"kind": "netstock_export", "subject": "dataset_open"}]
    assert sim.lines(foreign, "locations") == 0


def stop_after_chunks(monkeypatch: pytest.MonkeyPatch, chunks: int) -> Any:
    """A SIGTERM arrives while the `chunks`-th chunk is posted: the run ends after it."""
    import threading

    from syncd.connectors.netstock.client import NetstockClient

    stopping = threading.Event()
    original = NetstockClient.import_chunk
    calls = {"n": 0}

    def chunk_then_stop(self: Any, *args: Any, **kwargs: Any) -> int:
        calls["n"] += 1
        if calls["n"] == chunks:
            stopping.set()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(NetstockClient, "import_chunk", chunk_then_stop)
    return stopping


def test_a_resume_with_another_chunk_size_sends_each_line_once(
    sim: NetstockSim,
    make_cfg: Callable[..., Settings],
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = make_cfg(sim, chunk_size=2, netstock_export={"poll_timeout": 0})
    seed_host(first)
    stopping = stop_after_chunks(monkeypatch, 3)  # locations (1 chunk), 2 of master's 3
    run(first, "netstock.export", stopping=stopping, expect="interrupted")
    monkeypatch.undo()
    # Frozen 2 lines a row; sent 3 at a time now: rows are split and joined as needed.
    resumed = make_cfg(sim, chunk_size=3, netstock_export={"poll_timeout": 0})
    export_to_complete(resumed, clock)
    [export] = exports(resumed)
    assert export["state"] == "complete"
    assert_dataset_matches(sim, export["dataset_id"])
    assert [r["item_code"] for r in sim.rows(export["dataset_id"], "master")] == [
        f"A{n:03d}" for n in range(5)
    ]
    chunks = query(
        resumed,
        "SELECT model, first_seq, rows FROM netstock_export_chunks WHERE model IN "
        "('master', 'stocks') ORDER BY model, chunk_no",
    )
    assert [(c["model"], c["first_seq"], c["rows"]) for c in chunks] == [
        ("master", 0, 2),
        ("master", 2, 2),
        ("master", 4, 1),
        ("stocks", 0, 3),
        ("stocks", 3, 2),
    ]


def slept(monkeypatch: pytest.MonkeyPatch, clock: ManualClock) -> list[float]:
    """The export's waits pass on the simulator's clock (no real sleeping); returns them."""
    from syncd.jobs.netstock_export import ExportFlow

    waits: list[float] = []

    def pause(self: Any, seconds: float) -> bool:
        waits.append(seconds)
        clock.advance(seconds)
        return False

    monkeypatch.setattr(ExportFlow, "pause", pause)
    return waits


def test_a_lagging_count_on_resume_neither_resends_nor_fails(
    sim: NetstockSim, ecfg: Settings, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from syncd.jobs.netstock_export import ExportFlow

    sim.lag_counts(20)  # lines show in actual_lines_imported 20 s after they arrived
    original = ExportFlow.record_chunk
    calls = {"n": 0}

    def crash_on_third(self: Any, index: int, rows: int, how: str) -> None:
        calls["n"] += 1
        if calls["n"] == 3:  # master's 2nd chunk: sent, its answer never recorded
            raise RuntimeError("killed after the chunk was sent, before it was recorded")
        original(self, index, rows, how)

    monkeypatch.setattr(ExportFlow, "record_chunk", crash_on_third)
    run(ecfg, "netstock.export", expect="crashed")  # the simulated kill is an unexpected exception
    monkeypatch.undo()
    [export] = exports(ecfg)
    dataset_id = export["dataset_id"]
    assert json.loads(export["models"])[1]["lines_sent"] == 2  # master: 1 chunk recorded
    assert sim.lines(dataset_id, "master") == 4  # 2 chunks arrived
    waits = slept(monkeypatch, clock)

    # Resumed at once: Netstock counts 0 of the 2 recorded lines. Today's rule would fail the
    # dataset; the export waits for the count to settle at 4 = recorded + the lost chunk.
    resumed = run(ecfg, "netstock.export")
    assert resumed.counts["count_waits"] == 1
    assert resumed.counts["chunks_confirmed"] == 1
    assert resumed.counts.get("datasets_failed", 0) == 0
    assert 20 <= sum(waits) <= 120  # caught up after 20 s, then one more poll to settle
    assert waits[:3] == [1.0, 2.0, 4.0]  # backoff
    clock.advance(60)
    run(ecfg, "netstock.export")
    [export] = exports(ecfg)
    assert export["state"] == "complete"
    assert_dataset_matches(sim, dataset_id)  # nothing resent, nothing missing
    assert sim.stats["model_mismatches"] == 0
    how = query(ecfg, "SELECT how, count(*) AS n FROM netstock_export_chunks GROUP BY how")
    assert {r["how"]: r["n"] for r in how} == {"answer": 9, "confirmed": 1}


def test_a_lagging_count_after_a_stop_waits_then_goes_on(
    sim: NetstockSim, ecfg: Settings, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim.lag_counts(5)
    stopping = stop_after_chunks(monkeypatch, 3)  # locations, 2 of master's 3 chunks
    run(ecfg, "netstock.export", stopping=stopping, expect="interrupted")
    monkeypatch.undo()
    waits = slept(monkeypatch, clock)
    resumed = run(ecfg, "netstock.export")  # Netstock counts 0 of master's 4 lines yet
    assert resumed.counts["count_waits"] == 1
    assert resumed.counts.get("chunks_confirmed", 0) == 0
    assert resumed.counts["chunks_sent"] == 7  # master's last chunk, then the other models
    assert 5 <= sum(waits) < 60
    clock.advance(60)
    run(ecfg, "netstock.export")
    [export] = exports(ecfg)
    assert export["state"] == "complete"
    assert_dataset_matches(sim, export["dataset_id"])


def test_a_lost_answer_behind_a_lagging_count_is_waited_for_not_resent(
    sim: NetstockSim, ecfg: Settings, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from syncd.connectors.netstock.client import NetstockClient

    sim.lag_counts(15)
    original = NetstockClient.import_chunk

    def ten_seconds_per_post(self: Any, *args: Any, **kwargs: Any) -> int:
        try:
            return original(self, *args, **kwargs)
        finally:
            clock.advance(10)

    monkeypatch.setattr(NetstockClient, "import_chunk", ten_seconds_per_post)
    waits = slept(monkeypatch, clock)
    # master's 2nd chunk lands but its answer is lost: Netstock counts its 1st chunk only
    # (the 2nd shows 15 s after it arrived), as many lines as syncd recorded.
    sim.faults.script("POST /import/master", ["ok", "drop"])
    first = run(ecfg, "netstock.export")
    assert first.counts["outcome_unknown"] == 1
    assert first.counts["count_waits"] == 1
    assert first.counts["chunks_confirmed"] == 1  # it showed up: confirmed, not resent
    assert 5 <= sum(waits) < 60
    clock.advance(60)
    run(ecfg, "netstock.export")
    [export] = exports(ecfg)
    assert export["state"] == "complete"
    assert_dataset_matches(sim, export["dataset_id"])
    assert sim.stats["model_mismatches"] == 0


def test_a_count_that_never_catches_up_still_fails_the_dataset(
    sim: NetstockSim,
    make_cfg: Callable[..., Settings],
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A lost chunk, then `reconcile`, on the document's /model/end (202, the failure comes
    after the timeout period): the dataset is ended with the intended count and failed; the
    next cycle neither adopts it nor starts another while it is open, then sends a clean one."""
    cfg = make_cfg(sim, chunk_size=2, netstock_export={"poll_timeout": 0, "count_settle_time": 20})
    seed_host(cfg)
    stopping = stop_after_chunks(monkeypatch, 3)
    run(cfg, "netstock.export", stopping=stopping, expect="interrupted")
    monkeypatch.undo()
    sim.lag_counts(float("inf"))  # what arrived is never counted: lost in the import
    [export] = exports(cfg)
    dataset_id = export["dataset_id"]
    waits = slept(monkeypatch, clock)

    resumed = run(cfg, "netstock.export")
    assert waits == [1.0, 2.0, 4.0, 8.0, 5.0]  # backoff, bounded by count_settle_time
    assert resumed.counts["count_waits"] == 1
    assert resumed.counts["datasets_failed"] == 1
    assert resumed.counts.get("chunks_sent", 0) == 0  # nothing resent
    [export] = exports(cfg)
    assert export["state"] == "failed"
    assert "Netstock holds 0 lines, syncd recorded 4" in export["message"]
    assert sim.lines(dataset_id, "master") == 4  # as the stopped run left it
    master = [m for m in sim.model_imports(dataset_id) if m.model == "master"]
    assert [(m.minimum_expected_lines, m.success) for m in master] == [(5, None)]  # judging
    alerts = query(cfg, "SELECT kind, subject FROM alerts WHERE resolved_at IS NULL")
    assert alerts == [{"kind": "netstock_export", "subject": "dataset_failed"}]

    # Still open in Netstock: the next cycle waits instead of adopting the doomed dataset.
    starts = sim.count("POST /model/start")
    waiting = run(cfg, "netstock.export")
    assert waiting.counts["waiting_for_close"] == 1
    assert sim.count("POST /model/start") == starts
    # Nothing is kept frozen meanwhile: the next dataset is rendered afresh once it starts.
    assert [e["state"] for e in exports(cfg)] == ["failed"]
    assert query(cfg, "SELECT count(*) AS n FROM netstock_export_rows") == [{"n": 0}]
    assert len(query(cfg, "SELECT id FROM alerts WHERE resolved_at IS NULL")) == 1
    impatient = make_cfg(
        sim, chunk_size=2, netstock_export={"poll_timeout": 0, "failed_dataset_alert_after": 0}
    )  # the same state: an operator is told once it stays open longer than configured
    assert run(impatient, "netstock.export").counts["waiting_for_close"] == 1
    alerts = query(cfg, "SELECT subject, message FROM alerts WHERE resolved_at IS NULL")
    assert [a["subject"] for a in alerts] == ["dataset_failed", "dataset_open"]
    assert dataset_id in alerts[1]["message"]

    clock.advance(sim.end_timeout)  # the timeout period is over: Netstock fails it
    master = [m for m in sim.model_imports(dataset_id) if m.model == "master"]
    assert [(m.minimum_expected_lines, m.success) for m in master] == [(5, False)]
    assert sim.dataset(dataset_id).success is False

    # The next cycle sends the snapshot again, as a new dataset.
    sim.lag_counts(0)
    export_to_complete(cfg, clock)
    assert [e["state"] for e in exports(cfg)] == ["failed", "complete"]
    assert len(sim.datasets()) == 2
    assert_dataset_matches(sim, exports(cfg)[-1]["dataset_id"])


def test_a_count_that_never_catches_up_fails_at_once_on_an_immediate_model_end(
    clock: ManualClock, make_cfg: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The older reading (/model/end answers 400 on a wrong count) still fails the dataset
    at once, and the next cycle sends a clean one."""
    with NetstockSim(seed=7, clock=clock, orders_per_dataset={}, model_end="immediate") as sim:
        cfg = make_cfg(
            sim, chunk_size=2, netstock_export={"poll_timeout": 0, "count_settle_time": 0}
        )
        seed_host(cfg)
        stopping = stop_after_chunks(monkeypatch, 3)
        run(cfg, "netstock.export", stopping=stopping, expect="interrupted")
        monkeypatch.undo()
        sim.lag_counts(float("inf"))
        [export] = exports(cfg)
        assert run(cfg, "netstock.export").counts["datasets_failed"] == 1
        assert sim.dataset(export["dataset_id"]).success is False  # at once
        sim.lag_counts(0)
        export_to_complete(cfg, clock)
    assert [e["state"] for e in exports(cfg)] == ["failed", "complete"]


def test_lines_lost_in_the_import_fail_the_dataset_after_the_model_end(
    sim: NetstockSim, ecfg: Settings, clock: ManualClock
) -> None:
    """Every chunk answered, but Netstock never counts the lines: /model/end answers 202, the
    dataset waits in processing and fails after the timeout period; the failure, its audit
    log and an alert are recorded, and the next cycle sends a clean dataset."""
    sim.lag_counts(float("inf"))
    first = run(ecfg, "netstock.export")
    assert first.counts["models_ended"] == 7
    assert first.counts.get("datasets_failed", 0) == 0
    [export] = exports(ecfg)
    assert export["state"] == "processing"
    assert export["status_text"] == "Importing"  # ready to process, waiting for the models
    clock.advance(sim.end_timeout)
    run(ecfg, "netstock.export")
    [export] = exports(ecfg)
    assert export["state"] == "failed"
    assert "after the timeout period" in export["message"]
    assert any("after the timeout period" in e["message"] for e in json.loads(export["audit"]))
    alerts = query(ecfg, "SELECT kind, subject FROM alerts WHERE resolved_at IS NULL")
    assert alerts == [{"kind": "netstock_export", "subject": "dataset_failed"}]
    sim.lag_counts(0)
    export_to_complete(ecfg, clock)
    assert [e["state"] for e in exports(ecfg)] == ["failed", "complete"]


# --- dataset status: only a terminal status is final ---------------------------------------


def test_success_false_before_a_terminal_status_is_not_a_failure(
    clock: ManualClock, make_cfg: Callable[..., Settings]
) -> None:
    """A server that reports `success: false` while it still imports or transforms (the
    other reading of the document) does not make the export fail: only Complete is final."""
    with NetstockSim(
        seed=7, clock=clock, retry_after=0, orders_per_dataset={}, unfinished_success=False
    ) as sim:
        cfg = make_cfg(sim, chunk_size=2, netstock_export={"poll_timeout": 0})
        seed_host(cfg)
        first = run(cfg, "netstock.export")
        assert first.counts.get("datasets_failed", 0) == 0
        [export] = exports(cfg)
        assert export["state"] == "processing"
        assert export["status_text"] == "Importing"
        clock.advance(3)  # Transforming, still success: false
        run(cfg, "netstock.export")
        assert exports(cfg)[0]["state"] == "processing"
        assert exports(cfg)[0]["status_text"] == "Transforming"
        clock.advance(60)
        run(cfg, "netstock.export")
    [export] = exports(cfg)
    assert export["state"] == "complete"
    assert query(cfg, "SELECT kind FROM alerts WHERE resolved_at IS NULL") == []


# --- integer fields --------------------------------------------------------------------------


def seed_fractions(settings: Settings) -> None:
    """Host rows whose integer fields (per the document) hold fractions or junk."""
    with Store.open(settings.db_path, migrate=False) as store, store.transaction():
        store.db.execute(
            "UPDATE host_stock SET qty = 2.5, file = 'stock-7.csv', line = 4 "
            "WHERE article_id = 'A002'"
        )
        store.db.execute(
            "UPDATE host_purchase_order_lines SET qty_ordered = 10.5, file = 'po-3.csv', "
            "line = 2 WHERE line_no = '1'"
        )
        store.db.execute(
            "UPDATE host_suppliers SET lead_time_days = 'abc', file = 'sup.csv', line = 9"
        )


def test_fractions_in_integer_fields_are_rejected_with_the_host_row_named(
    sim: NetstockSim, ecfg: Settings, clock: ManualClock
) -> None:
    """A fraction (or junk) in a field the document types integer is never sent: the row is
    a reject naming host file, line and field; the rest of the dataset goes through."""
    seed_fractions(ecfg)
    first = export_to_complete(ecfg, clock)
    assert first.counts["rejected"] == 3
    [export] = exports(ecfg)
    assert export["state"] == "complete"
    dataset_id = export["dataset_id"]
    assert "A002" not in {r["item_code"] for r in sim.rows(dataset_id, "stocks")}
    assert sim.lines(dataset_id, "stocks") == 4
    assert sim.lines(dataset_id, "po") == 0  # its only open line was left out
    assert sim.lines(dataset_id, "suppliers") == 0
    assert sim.stats["type_refusals"] == 0
    rejects = query(
        ecfg, "SELECT source, reference, field, reason FROM rejects ORDER BY source, reference"
    )
    assert [(r["source"], r["reference"], r["field"]) for r in rejects] == [
        ("netstock:export:po", "po-3.csv:2", "order_quantity"),
        ("netstock:export:stocks", "stock-7.csv:4", "stock_on_hand"),
        ("netstock:export:suppliers", "sup.csv:9", "lead_time"),
    ]
    assert rejects[1]["reason"].startswith("2.5 is not a whole number")
    assert "'abc' is not a number" in rejects[2]["reason"]
    # The same data again: no new dataset, no reject twice.
    seed_host_change(ecfg)
    export_to_complete(ecfg, clock)
    assert query(ecfg, "SELECT count(*) AS n FROM rejects") == [{"n": 3}]


def test_fractions_in_integer_fields_are_converted_when_configured(
    sim: NetstockSim, make_cfg: Callable[..., Settings], clock: ManualClock
) -> None:
    cfg = make_cfg(
        sim, chunk_size=2, netstock_export={"poll_timeout": 0, "integer_fractions": "ceil"}
    )
    seed_host(cfg)
    seed_fractions(cfg)
    first = export_to_complete(cfg, clock)
    assert first.counts["fractions_converted"] == 3  # stock 2.5, ordered 10.5, outstanding
    assert first.counts["rejected"] == 1  # 'abc' is never converted
    [export] = exports(cfg)
    assert export["state"] == "complete"
    stocks = {r["item_code"]: r for r in sim.rows(export["dataset_id"], "stocks")}
    assert stocks["A002"]["stock_on_hand"] == 3
    [po] = sim.rows(export["dataset_id"], "po")  # 10.5 ordered, 4 received
    assert (po["order_quantity"], po["outstanding_quantity"]) == (11, 7)
    [reject] = query(cfg, "SELECT reference, field FROM rejects")
    assert reject == {"reference": "sup.csv:9", "field": "lead_time"}


# --- nulls (the document types every field and says nothing of null) -------------------------


def test_a_netstock_that_refuses_nulls_fails_the_dataset_and_null_fields_omit_sends_it(
    clock: ManualClock, make_cfg: Callable[..., Settings]
) -> None:
    """The other reading: a Netstock that refuses a null in a typed field. The refused chunk
    would be refused again every run, so its dataset is failed with an alert naming the lines
    and Netstock's reason; with `null_fields = "omit"` the next dataset, rendered afresh,
    leaves those fields out and completes."""
    with NetstockSim(seed=7, clock=clock, orders_per_dataset={}, nulls="refuse") as sim:
        cfg = make_cfg(sim, chunk_size=2, netstock_export={"poll_timeout": 0})
        seed_host(cfg)
        first = run(cfg, "netstock.export")
        assert first.counts["chunks_refused"] == 1
        [export] = exports(cfg)
        assert export["state"] == "failed"
        assert "(got null)" in export["message"]
        [alert] = query(cfg, "SELECT subject, message FROM alerts WHERE resolved_at IS NULL")
        assert alert["subject"] == "dataset_failed"
        assert "Netstock refused lines 1-2 of 2" in alert["message"]
        assert run(cfg, "netstock.export").counts["waiting_for_close"] == 1  # no retry loop
        clock.advance(sim.end_timeout)  # Netstock fails and closes that dataset

        omit = make_cfg(
            sim, chunk_size=2, netstock_export={"poll_timeout": 0, "null_fields": "omit"}
        )  # the same state directory, the option set
        export_to_complete(omit, clock)
        assert [e["state"] for e in exports(omit)] == ["failed", "complete"]
        dataset_id = exports(omit)[-1]["dataset_id"]
        assert_dataset_matches(sim, dataset_id)
        assert sim.stats["null_refusals"] == 1
        locations = {r["location_code"]: r for r in sim.rows(dataset_id, "locations")}
        assert "group" not in locations["WH1"]  # no location_group: left out, not null
        assert locations["ST1"]["group"] == "stores"
        assert all(None not in row.values() for row in sim.rows(dataset_id, "master"))


# --- the endpoint map ------------------------------------------------------------------------


def test_an_unverified_endpoint_the_tenant_lacks_raises_an_alert_and_the_option_fixes_it(
    clock: ManualClock, make_cfg: Callable[..., Settings]
) -> None:
    """Against the document's literal URLs (no /import/master) the corrected guess is a 404:
    an alert names the entry and the options; with `endpoint_map = "document"` the same
    export resumes and completes, master lines in /import/suppliers."""
    with NetstockSim(seed=7, clock=clock, orders_per_dataset={}, endpoints="document") as sim:
        guessed = make_cfg(sim, chunk_size=2, netstock_export={"poll_timeout": 0})
        seed_host(guessed)
        blocked = run(guessed, "netstock.export")
        assert blocked.counts.get("datasets_failed", 0) == 0
        [alert] = query(guessed, "SELECT subject, message FROM alerts WHERE resolved_at IS NULL")
        assert alert["subject"] == "endpoint:master"
        assert "404 for /import/master (model master)" in alert["message"]
        assert "unverified correction" in alert["message"]
        assert "model_endpoints.master" in alert["message"]
        assert 'endpoint_map = "document"' in alert["message"]
        assert exports(guessed)[0]["state"] == "importing"

        printed = make_cfg(
            sim,
            chunk_size=2,
            connector={"endpoint_map": "document"},
            netstock_export={"poll_timeout": 0},
        )  # the same state directory: the export resumes
        export_to_complete(printed, clock)
        [export] = exports(printed)
        assert export["state"] == "complete"
        assert len(sim.datasets()) == 1
        assert_dataset_matches(sim, export["dataset_id"])
        assert sim.count("POST /import/suppliers") == 4  # master's 3 chunks, suppliers' 1
        assert query(printed, "SELECT id FROM alerts WHERE resolved_at IS NULL") == []
