"""netstock.export's journal: its changes write the rows an export has always written."""

from __future__ import annotations

import json
import re

from syncd.clock import parse_iso
from syncd.jobs.netstock import export_plan as plan
from syncd.state import Store
from syncd.state.mirror import netstock_export as journal
from syncd.state.mirror.netstock_export import ModelEntry
from syncd.state.plan import apply_plan

NOW = "2026-12-04T12:00:00.000Z"


def test_an_export_walks_its_states_in_the_journal(db: Store) -> None:
    """Prepared from the frozen snapshot, started, a chunk recorded, failed: the models
    column keeps its JSON shape, the chunk its row, and the frozen rows go at the end."""
    with journal.frozen_snapshot(db) as frozen:
        frozen.add("po", 0, '{"a":0}\n{"a":1}')
        frozen.add("po", 2, '{"a":2}')
    apply_plan(db, plan.prepared("hash", [("po", 3), ("sales", 0)], "r1", NOW))
    export = journal.current_export(db)
    assert export is not None
    assert (export.state, export.models) == (
        "prepared",
        (ModelEntry("po", 3), ModelEntry("sales", 0)),
    )
    assert journal.frozen_rows(db, export.id, "po", 1, 3) == [
        (0, '{"a":0}\n{"a":1}'),
        (2, '{"a":2}'),
    ]

    apply_plan(db, plan.dataset_started(export, "ds-1", NOW))
    export = journal.load_export(db, export.id)
    export, opened = plan.model_opened(export, 0, NOW)
    apply_plan(db, opened)
    export, chunk = plan.chunk_recorded(export, 0, 2, "answer", NOW)
    apply_plan(db, chunk)
    assert journal.load_export(db, export.id) == export
    [row] = db.query("SELECT state, dataset_id, models FROM netstock_exports")
    assert row["state"] == "importing"
    assert row["models"] == (
        '[{"model":"po","rows":3,"state":"open","lines_sent":2,"chunks":1},'
        '{"model":"sales","rows":0,"state":"pending","lines_sent":0,"chunks":0}]'
    )
    assert db.query("SELECT dataset_id, model, chunk_no, rows, first_seq, how FROM "
                    "netstock_export_chunks") == [
        {"dataset_id": "ds-1", "model": "po", "chunk_no": 0, "rows": 2, "first_seq": 0,
         "how": "answer"}
    ]  # fmt: skip

    apply_plan(db, plan.failed(export, "boom", [{"message": "m"}], NOW))
    [row] = db.query("SELECT state, success, message, audit, finished_at FROM netstock_exports")
    assert row == {
        "state": "failed", "success": 0, "message": "boom", "audit": json.dumps([{"message": "m"}]),
        "finished_at": NOW,
    }  # fmt: skip
    assert db.query("SELECT * FROM netstock_export_rows") == []
    assert journal.current_export(db) is None
    failed = journal.failed_export(db, "ds-1")
    assert failed is not None
    assert (failed.id, failed.finished_at) == (export.id, NOW)
    assert [a["subject"] for a in db.open_alerts()] == ["dataset_failed"]


def test_a_dropped_export_leaves_nothing(db: Store) -> None:
    """An export Netstock opened nothing for is deleted with its frozen rows."""
    with journal.frozen_snapshot(db) as frozen:
        frozen.add("po", 0, '{"a":0}')
    apply_plan(db, plan.prepared("hash", [("po", 1)], None, NOW))
    export = journal.current_export(db)
    assert export is not None
    blocked = plan.waiting_for_close(
        export, "ds-0", journal.FailedExport(1, NOW), parse_iso(NOW), 3600.0
    )
    assert blocked is not None
    apply_plan(db, blocked.plan)
    assert db.query("SELECT id FROM netstock_exports") == []
    assert db.query("SELECT * FROM netstock_export_rows") == []


def test_only_the_journal_module_writes_the_export_tables() -> None:
    """netstock_exports, netstock_export_rows, netstock_export_chunks (and the frozen
    snapshot's temp table) change only through syncd/state/mirror/netstock_export.py."""
    from tests.unit.test_state_owners import PACKAGE, sql_strings

    writes = re.compile(
        r"\b(INSERT\s+INTO|UPDATE|DELETE\s+FROM|CREATE\s+TEMP\s+TABLE)\s+(temp\.)?"
        r"netstock_(exports|export_rows|export_chunks|frozen)\b"
    )
    writers = {
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if "migrations" not in path.name
        for _line, text in sql_strings(path)
        if writes.search(text)
    }
    assert writers == {"state/mirror/netstock_export.py"}
