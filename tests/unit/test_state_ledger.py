"""The accepted/failed ledger shared by planning.import and oregon.siop: one module, the
jobs' own tables, consistent with the rejects."""

from __future__ import annotations

import json
import re

from syncd.jobs import oregon_siop, planning_import
from syncd.state import NewReject, Store
from syncd.state.ledger import Ledger
from tests.unit.test_state_owners import PACKAGE, sql_strings

PLANNING = planning_import.LEDGER
OREGON = oregon_siop.LEDGER
LEDGER_WRITE = re.compile(
    r"\b(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+(planning_import|oregon_siop)_(accepted|failed)\b"
)


def test_both_jobs_keep_their_ledger_through_the_one_module() -> None:
    """Neither job writes its accepted/failed tables itself; both declare a Ledger."""
    assert isinstance(PLANNING, Ledger)
    assert isinstance(OREGON, Ledger)
    for name in ("planning_import.py", "oregon_siop.py"):
        path = PACKAGE / "jobs" / name
        assert [t for _, t in sql_strings(path) if LEDGER_WRITE.search(t)] == [], name


def _statuses(store: Store) -> list[str]:
    return [r["status"] for r in store.list_rejects(None)]


def test_a_new_failure_supersedes_the_old_and_acceptance_ends_it(store: Store) -> None:
    """Refused again: the earlier reject is resolved, one failure row remains; accepted:
    the failure row goes, its reject is resolved, the accepted hash is kept."""
    key = ("purchase-orders", "PO1")
    first = PLANNING.fail(
        store, key, "h1", NewReject("planning:x", "r PO1", "bad"), run_id="r", job_id=None
    )
    second = PLANNING.fail(
        store, key, "h2", NewReject("planning:x", "r PO1", "bad"), run_id="r", job_id="J"
    )
    assert (first, second) == (1, 2)
    assert _statuses(store) == ["resolved", "open"]
    assert store.query("SELECT row_hash, job_id, reject_id FROM planning_import_failed") == [
        {"row_hash": "h2", "job_id": "J", "reject_id": 2}
    ]
    PLANNING.accept(store, key, "h3", job_id="J2", accepted_at="t", payload=None)
    assert _statuses(store) == ["resolved", "resolved"]
    assert store.scalar("SELECT count(*) FROM planning_import_failed") == 0
    found = PLANNING.rows(
        store,
        "accepted",
        {"endpoint": "purchase-orders"},
        "row_key",
        ["PO1", "PO2"],
        ("row_key", "row_hash"),
    )
    assert found == [{"row_key": "PO1", "row_hash": "h3"}]


def test_a_dropped_reject_stays_dropped_when_its_item_is_accepted(store: Store) -> None:
    """An operator's drop is not turned into resolved by a later acceptance."""
    key = ("S", "T", "M1", 2026, 12, 1)
    OREGON.fail(store, key, "h1", NewReject("oregon:siop", "M1", "bad"), run_id="r")
    store.drop_reject(1)
    OREGON.accept(store, key, "h2", item="{}", accepted_at="t", run_id="r")
    assert _statuses(store) == ["dropped"]
    assert store.query("SELECT material_id, item_hash FROM oregon_siop_accepted") == [
        {"material_id": "M1", "item_hash": "h2"}
    ]


def test_a_retried_reject_forgets_its_failure(store: Store) -> None:
    """`rejects retry` then the job's take: the failure row of that reject is gone."""
    OREGON.fail(
        store, ("S", "T", "M1", 2026, 12, 1), "h", NewReject("oregon:siop", "M1", "x"), run_id="r"
    )
    OREGON.fail(
        store, ("S", "T", "M2", 2026, 12, 1), "h", NewReject("oregon:siop", "M2", "x"), run_id="r"
    )
    store.retry_reject(1)
    assert len(list(store.take_retried_rejects("oregon:siop", OREGON.forget_retried))) == 1
    assert [
        r["material_id"] for r in store.query("SELECT material_id FROM oregon_siop_failed")
    ] == ["M2"]


def test_rows_filter_by_scope_values_and_condition(store: Store) -> None:
    """rows() looks up by scope, a column's values (in slices) and an extra condition."""
    for day, material in ((1, "M1"), (20, "M1"), (1, "M2")):
        OREGON.accept(
            store,
            ("S", "T", material, 2026, 12, day),
            f"h{day}",
            item="{}",
            accepted_at="t",
            run_id="r",
        )
    OREGON.accept(
        store, ("S", "other", "M1", 2026, 12, 1), "x", item="{}", accepted_at="t", run_id="r"
    )
    many = ["M1", *(f"N{i}" for i in range(2000))]
    found = OREGON.rows(
        store,
        "accepted",
        {"sold_to": "S", "ship_to": "T"},
        "material_id",
        many,
        ("material_id", "day"),
        where="day >= ?",
        params=[10],
    )
    assert found == [{"material_id": "M1", "day": 20}]
    assert (
        OREGON.rows(
            store, "failed", {"sold_to": "S", "ship_to": "T"}, "material_id", many, ("day",)
        )
        == []
    )


def test_accept_selected_records_a_whole_job_and_ends_its_failures(store: Store) -> None:
    """The rows a SELECT yields are accepted in one statement (refused ones left out);
    failures of those keys end, with their rejects resolved."""
    for key in ("A", "B"):
        PLANNING.fail(
            store,
            ("sales-orders", key),
            "old",
            NewReject("planning:sales-orders", key, "x"),
            run_id="r",
            job_id=None,
        )
    rows = json.dumps([["A", "ha"], ["B", "hb"], ["C", "hc"]])
    selected = (
        "SELECT json_extract(r.value, '$[0]') AS row_key, json_extract(r.value, '$[1]') AS row_hash, "
        "NULL AS payload FROM json_each(?) r WHERE r.key NOT IN (SELECT value FROM json_each(?))"
    )
    count = PLANNING.accept_selected(
        store,
        {"endpoint": "sales-orders"},
        selected,
        [rows, "[1]"],
        ("row_key", "row_hash", "payload"),
        job_id="J",
        accepted_at="t",
    )
    assert count == 2
    assert store.query(
        "SELECT row_key, row_hash, job_id FROM planning_import_accepted ORDER BY row_key"
    ) == [
        {"row_key": "A", "row_hash": "ha", "job_id": "J"},
        {"row_key": "C", "row_hash": "hc", "job_id": "J"},
    ]
    assert [r["row_key"] for r in store.query("SELECT row_key FROM planning_import_failed")] == [
        "B"
    ]
    assert _statuses(store) == ["resolved", "open"]
