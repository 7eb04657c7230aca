"""The core tables have one owner: SQL on them lives in syncd/state/, not in the CLI,
the status report or the jobs."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import syncd
from syncd.state import NewIntent, NewReject, Store, queries

PACKAGE = Path(syncd.__file__).parent
SQL = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE)\b[\s\S]*\b(FROM|INTO|SET)\b")


def sql_strings(path: Path) -> list[tuple[int, str]]:
    """Every string literal of a module that reads as a SQL statement (adjacent literals
    and the constant parts of an f-string count as one), with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.JoinedStr):
            text = "".join(
                v.value
                for v in node.values
                if isinstance(v, ast.Constant) and isinstance(v.value, str)
            )
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        else:
            continue
        if SQL.search(text):
            found.append((node.lineno, " ".join(text.split())))
    return found


def test_cli_and_status_hold_no_sql() -> None:
    """`syncd` commands and the status report call syncd.state; they write no SQL themselves."""
    modules = [*sorted((PACKAGE / "cli").glob("*.py")), PACKAGE / "status.py"]
    assert len(modules) > 2  # the CLI is a package of modules
    for path in modules:
        assert sql_strings(path) == [], path


def test_resolve_alert_by_id_only_once(store: Store) -> None:
    """An operator resolves an open alert by id; an unknown or resolved id says False."""
    store.open_alert("auth", "bad token", "instock")
    [alert] = queries.alerts(store)
    assert store.resolve_alert(alert["id"]) is True
    assert store.resolve_alert(alert["id"]) is False
    assert store.resolve_alert(alert["id"] + 1) is False
    assert queries.alerts(store) == []
    assert [a["resolved_at"] is not None for a in queries.alerts(store, include_resolved=True)] == [
        True
    ]


def test_report_queries_count_what_needs_attention(store: Store) -> None:
    """Open and retry-flagged rejects count as open; dropped ones do not."""
    store.add_rejects(
        [NewReject("a", "r1", "x"), NewReject("a", "r2", "y"), NewReject("b", "r", "z")]
    )
    store.drop_reject(3)
    store.set_reject_status(2, "retry")
    assert queries.open_reject_count(store) == 2
    assert queries.open_rejects_by_source(store) == [{"source": "a", "n": 2}]
    store.set_checkpoint("s", "v", run_id="r")
    assert list(queries.checkpoints(store)[0]) == ["stream", "value", "updated_at"]
    assert queries.checkpoints(store, with_run_id=True)[0]["run_id"] == "r"


CORE_WRITE = re.compile(
    r"\b(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+(runs|checkpoints|outbox|rejects|alerts)\b"
)


def core_table_writes() -> list[str]:
    """Every SQL literal outside syncd/state/ that writes a core table, as path:line."""
    return [
        f"{path.relative_to(PACKAGE)}:{line}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if "state" not in path.relative_to(PACKAGE).parts[:1]
        for line, text in sql_strings(path)
        if CORE_WRITE.search(text)
    ]


def test_core_tables_are_written_only_through_syncd_state() -> None:
    """runs, checkpoints, outbox, rejects and alerts change only through syncd.state."""
    assert core_table_writes() == []


def test_a_reject_repeated_is_added_once_while_open(store: Store) -> None:
    """add_rejects_once: same source, reference and reason open or flagged retry is not
    added again; once resolved, the problem may open a new reject."""
    first = NewReject("s", "order 1", "bad qty")
    assert (
        store.add_rejects_once([first, first, NewReject("s", "order 1", "other")], run_id="r") == 2
    )
    store.set_reject_status(1, "retry")
    assert store.add_rejects_once([first], run_id="r") == 0
    store.resolve_reject(1)
    assert store.add_rejects_once([first], run_id="r") == 1


def test_the_same_record_refused_again_touches_its_reject(store: Store) -> None:
    """refresh_or_add_reject: an identical open reject (field, reason, payload) gets the new
    run id instead of a twin; a different payload opens its own."""
    reject = NewReject(
        "instock:articles", "article_id 1 (item 0)", "bad", field="qty", payload={"a": 1}
    )
    assert store.refresh_or_add_reject(reject, run_id="r1") is True
    assert store.refresh_or_add_reject(reject, run_id="r2") is False
    other = NewReject(
        "instock:articles", "article_id 1 (item 0)", "bad", field="qty", payload={"a": 2}
    )
    assert store.refresh_or_add_reject(other, run_id="r2") is True
    rows = store.find_rejects("instock:articles")
    assert [(r["id"], r["run_id"]) for r in rows] == [(1, "r2"), (2, "r2")]


def test_retry_flags_are_taken_or_handed_back(store: Store) -> None:
    """A job takes its retry-flagged rejects (retried, after `forget` in the same
    transaction) or hands the flags it did not act on back (open)."""
    store.add_rejects(
        [NewReject("job:a", "x", "r"), NewReject("job:a", "y", "r"), NewReject("job:b", "z", "r")]
    )
    for reject_id in (1, 2, 3):
        store.retry_reject(reject_id)
    forgotten: list[int] = []
    taken = list(store.take_retried_rejects("job:a", lambda _s, r: forgotten.append(r["id"])))
    assert [r["id"] for r in taken] == forgotten == [1, 2]
    assert store.reopen_retry_flags("job:b") == 1
    assert [r["status"] for r in store.list_rejects(None)] == ["retried", "retried", "open"]


def test_resolving_leaves_a_dropped_reject_dropped(store: Store) -> None:
    """resolve_open_rejects resolves open and retry-flagged rejects, never a dropped one."""
    store.add_rejects(
        [NewReject("s", "a", "r"), NewReject("s", "b", "r"), NewReject("s", "c", "r")]
    )
    store.drop_reject(2)
    store.set_reject_status(3, "retry")
    assert store.resolve_open_rejects([1, 2, 3, 99]) == 2
    assert [r["status"] for r in store.list_rejects(None)] == ["resolved", "dropped", "resolved"]


def test_find_rejects_matches_a_reference_or_its_prefix(store: Store) -> None:
    """find_rejects is exact on source and narrows by reference or reference prefix."""
    store.add_rejects(
        [
            NewReject("dsorder", "order 1", "r"),
            NewReject("dsorder", "order 1 line 2", "r"),
            NewReject("dsorder", "order 10", "r"),
            NewReject("dsorder:x", "order 1", "r"),
        ]
    )
    found = store.find_rejects("dsorder", reference="order 1", reference_prefix="order 1 line ")
    assert [r["id"] for r in found] == [1, 2]
    assert [r["id"] for r in store.find_rejects("dsorder")] == [1, 2, 3]


def test_purge_history_keeps_what_is_still_needed(store: Store) -> None:
    """purge_history deletes old finished history only: not the current run, open rejects,
    open alerts, pending intents, or a sent intent a reject still points at."""
    store.start_run("j", "old", "schedule")
    store.finish_run("old", "ok", {})
    store.start_run("j", "current", "schedule")
    store.finish_run("current", "ok", {})
    store.add_intents([NewIntent("d", "k", "o", "i1", {}), NewIntent("d", "k", "o", "i2", {})])
    store.mark_sent(1)
    store.add_rejects([NewReject("s", "a", "r"), NewReject("s", "b", "r")])
    store.resolve_reject(1)
    store.open_alert("a", "m", "x")
    store.open_alert("b", "m", "y")
    store.resolve_alerts("a")
    deleted = store.purge_history("9999", keep_run_id="current")
    assert deleted == {"runs": 1, "outbox": 1, "alerts": 1, "rejects": 1}
    assert [r["run_id"] for r in store.query("SELECT run_id FROM runs")] == ["current"]
    assert [r["idempotency_key"] for r in store.query("SELECT idempotency_key FROM outbox")] == [
        "i2"
    ]


def test_the_same_refusal_is_found_by_a_payload_field(store: Store) -> None:
    """open_reject_with finds an open reject by source, reference and one payload field,
    and no longer once it is dropped."""
    store.add_rejects([NewReject("host:orders", "a.csv", "file refused", payload={"sha256": "x"})])
    assert store.open_reject_with("host:orders", "a.csv", "sha256", "x") == 1
    assert store.open_reject_with("host:orders", "a.csv", "sha256", "y") is None
    assert store.open_reject_with("host:orders", "b.csv", "sha256", "x") is None
    store.drop_reject(1)
    assert store.open_reject_with("host:orders", "a.csv", "sha256", "x") is None


# -- every table of the state DB has one writer ------------------------------------------------

STORE = "state/store.py"
MERGE = "host/feeds/merge.py"  # FEEDS: each feed's staging and merge into its host_* tables
LEDGER_MODULE = "state/ledger.py"  # Ledger writes the accepted/failed tables its owner names
MIRROR = "state/mirror/"

OWNERS: dict[str, str] = {
    **dict.fromkeys(("runs", "checkpoints", "outbox", "rejects", "alerts"), STORE),
    **dict.fromkeys(("pull_windows", "pull_window_days", "coverage_gaps"), "state/windows.py"),
    **dict.fromkeys(("backfills", "backfill_differences"), "state/backfills.py"),
    "rate_budget": "state/ratebudget.py",
    **dict.fromkeys(("dsorder_orders", "dsorder_lines"), MIRROR + "dsorder.py"),
    **dict.fromkeys(
        (
            "instock_orders",
            "instock_order_sync",
            "instock_article_sync",
            "instock_ordertasks",
            "instock_order_events",
        ),
        MIRROR + "instock.py",
    ),
    **dict.fromkeys(
        (
            "instock_inventory",
            "instock_inventory_deltas",
            "instock_stock_discrepancies",
            "inventory_page",
        ),
        MIRROR + "instock_inventory.py",
    ),
    **dict.fromkeys(("instock_moves", "moves_window"), MIRROR + "instock_moves.py"),
    **dict.fromkeys(
        ("netstock_exports", "netstock_export_rows", "netstock_export_chunks", "netstock_frozen"),
        MIRROR + "netstock_export.py",
    ),
    "netstock_pops": MIRROR + "netstock_pop.py",
    **dict.fromkeys(
        (
            "planning_import_jobs",
            "planning_import_batches",
            "planning_import_accepted",
            "planning_import_failed",
        ),
        MIRROR + "planning_import.py",
    ),
    **dict.fromkeys(("oregon_siop_accepted", "oregon_siop_failed"), MIRROR + "oregon_siop.py"),
    "host_files": MIRROR + "host.py",
    **dict.fromkeys(
        (
            "host_articles",
            "host_stock",
            "host_orders",
            "host_order_lines",
            "host_locations",
            "host_suppliers",
            "host_sales",
            "host_purchase_orders",
            "host_purchase_order_lines",
            "host_po_history",
        ),
        MERGE,
    ),
}
# Written through `syncd.state.ledger.Ledger`, whose statements name the table by a value:
# the owner is the one module that names the table (its `LEDGER`).
LEDGER_TABLES = (
    "planning_import_accepted",
    "planning_import_failed",
    "oregon_siop_accepted",
    "oregon_siop_failed",
)
WRITE_STATEMENT = re.compile(
    r"\b(?:INSERT(?:\s+OR\s+[A-Z]+)?\s+INTO|REPLACE\s+INTO|UPDATE(?!\s+(?:SET|ON)\b)|DELETE\s+FROM)"
    r"\s+(?:temp\.|main\.)?(\w+|\{\})"
)


def _literals(path: Path) -> Iterator[str]:
    """Every string literal of a module, an f-string's replacement fields as `{}`."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.JoinedStr):
            yield "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value


def table_writes() -> set[tuple[str, str]]:
    """(module, table) for every INSERT, UPDATE or DELETE in a SQL literal of syncd/
    (migrations aside); `{}` stands for a table named by a value."""
    return {
        (path.relative_to(PACKAGE).as_posix(), table)
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).as_posix() != "state/migrations.py"
        for text in _literals(path)
        if SQL.search(text)
        for table in WRITE_STATEMENT.findall(text)
    }


def test_every_table_of_the_schema_has_an_owner(db: Store) -> None:
    """A table a migration adds is given its one owning module here."""
    tables = {
        r["name"]
        for r in db.query("SELECT name FROM sqlite_master WHERE type = 'table'")
        # SQLite's own, and sqlite-utils' record of the migrations applied
        if not r["name"].startswith(("sqlite_", "_sqlite_"))
    }
    assert tables - set(OWNERS) == set()


def test_each_table_is_written_only_by_its_owner() -> None:
    """Every statement that writes a table of the state DB is in that table's owner; a table
    named by a value is written only by the FEEDS merge (host tables and their staging) or
    by the Ledger (the accepted/failed tables)."""
    wrong = sorted(
        f"{module} writes {table}"
        for module, table in table_writes()
        if not (
            module in (MERGE, LEDGER_MODULE)
            if table == "{}"
            else module == (MERGE if table.startswith("host_stage_") else OWNERS.get(table))
        )
    )
    assert wrong == []
    assert sorted({owner for owner in OWNERS.values() if not (PACKAGE / owner).is_file()}) == []


def ledger_declarations() -> dict[str, list[str]]:
    """For each table a `Ledger(accepted=..., failed=...)` of syncd/ names, the modules."""
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Ledger"):
                continue
            for keyword in node.keywords:
                if keyword.arg in ("accepted", "failed") and isinstance(
                    keyword.value, ast.Constant
                ):
                    module = path.relative_to(PACKAGE).as_posix()
                    found.setdefault(str(keyword.value.value), []).append(module)
    return found


def test_a_ledger_table_is_declared_once_by_its_owner() -> None:
    """Each accepted/failed table has one `Ledger`, in its owner (the only way it is written)."""
    assert ledger_declarations() == {table: [OWNERS[table]] for table in LEDGER_TABLES}
