"""State store: migrations, atomic checkpoints, outbox/rejects/alerts bookkeeping."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from syncd.errors import AlreadyRunningError, RefusedError, SchemaTooNewError, StateError
from syncd.state import SCHEMA_VERSION, NewIntent, NewReject, StateLock, Store


def test_fresh_db_has_core_tables_wal_and_version(tmp_path: Path) -> None:
    """A new state file gets every core table, WAL mode, foreign keys and its schema version."""
    with Store.open(tmp_path / "s.db") as store:
        assert {"runs", "checkpoints", "outbox", "rejects", "alerts"} <= set(store.db.table_names())
        assert store.scalar("PRAGMA journal_mode") == "wal"
        assert store.scalar("PRAGMA foreign_keys") == 1
        assert store.scalar("PRAGMA busy_timeout") >= 1000
        assert store.scalar("PRAGMA user_version") == SCHEMA_VERSION
        # the version counts every migration the file went through (one defined after
        # SCHEMA_VERSION is computed would leave the version behind the schema)
        assert store.scalar("SELECT count(*) FROM _sqlite_migrations") == SCHEMA_VERSION


def test_reopening_applies_nothing_twice(tmp_path: Path) -> None:
    """Migrations run once; opening again keeps data and records no new migration."""
    with Store.open(tmp_path / "s.db") as store:
        store.set_checkpoint("a", "1")
        applied = store.scalar("SELECT count(*) FROM _sqlite_migrations")
    with Store.open(tmp_path / "s.db") as store:
        assert store.get_checkpoint("a") == "1"
        assert store.scalar("SELECT count(*) FROM _sqlite_migrations") == applied


def test_inventory_tables_move_to_without_rowid_keeping_their_rows(tmp_path: Path) -> None:
    """m0023 rebuilds the inventory mirror and its deltas as WITHOUT ROWID tables without
    the index on scan; every row (a scan's pending deltas too) is kept as it was."""
    from sqlite_utils import Database

    from syncd.state.migrations import m0023_inventory_without_rowid, migrations

    db = Database(tmp_path / "old.db")
    for migration in migrations._migrations:
        if migration.fn is m0023_inventory_without_rowid:
            break
        migration.fn(db)
    mirror = [("A1", 3, 1, 0, 4, "2026-12-01T00:00:00.000Z"), ("B2", 0, 0, 5, 3, "x")]
    deltas = [("A1", 1, 1, 0, 3, 1, 0, 4)]
    db.conn.executemany("INSERT INTO instock_inventory VALUES (?, ?, ?, ?, ?, ?)", mirror)
    db.conn.executemany(
        "INSERT INTO instock_inventory_deltas VALUES (?, ?, ?, ?, ?, ?, ?, ?)", deltas
    )
    m0023_inventory_without_rowid(db)
    assert db.execute("SELECT * FROM instock_inventory ORDER BY 1").fetchall() == mirror
    assert db.execute("SELECT * FROM instock_inventory_deltas").fetchall() == deltas
    schema = dict(db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall())
    assert "WITHOUT ROWID" in schema["instock_inventory"]
    assert "WITHOUT ROWID" in schema["instock_inventory_deltas"]
    indexes = db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'instock_inventory'"
    ).fetchall()
    assert indexes == []  # the primary key is the table itself


def test_inventory_deltas_are_keyed_by_scan_keeping_their_rows(tmp_path: Path) -> None:
    """m0026 keys the inventory deltas by (scan, article_id), so a settled scan's deltas can
    wait for their host files beside the next scan's; the pending deltas are kept."""
    from sqlite_utils import Database

    from syncd.state.migrations import m0026_inventory_deltas_by_scan, migrations

    db = Database(tmp_path / "old.db")
    for migration in migrations._migrations:
        if migration.fn is m0026_inventory_deltas_by_scan:
            break
        migration.fn(db)
    deltas = [("A1", 1, 1, 0, 3, 1, 0, 4), ("B2", 0, 0, 0, 2, 0, 0, 4)]
    db.conn.executemany(
        "INSERT INTO instock_inventory_deltas VALUES (?, ?, ?, ?, ?, ?, ?, ?)", deltas
    )
    m0026_inventory_deltas_by_scan(db)
    columns = "article_id, free_before, reserved_before, registered_before, free, reserved, "
    got = db.execute(
        f"SELECT {columns} registered, scan FROM instock_inventory_deltas ORDER BY 1"
    ).fetchall()
    assert got == deltas
    db.execute(  # the same article, the next scan: a row of its own
        "INSERT INTO instock_inventory_deltas (scan, article_id, free_before, reserved_before, "
        "registered_before, free, reserved, registered) VALUES (5, 'A1', 3, 1, 0, 0, 0, 0)"
    )
    assert db.execute("SELECT count(*) FROM instock_inventory_deltas").fetchone()[0] == 3
    schema = db.execute(
        "SELECT sql FROM sqlite_master WHERE name = 'instock_inventory_deltas'"
    ).fetchone()[0]
    assert "WITHOUT ROWID" in schema
    assert "PRIMARY KEY (scan, article_id)" in schema


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """A file written by a newer syncd is refused with a clear message, untouched."""
    with Store.open(tmp_path / "s.db") as store:
        store.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaTooNewError, match="newer syncd"):
        Store.open(tmp_path / "s.db")


def test_unknown_applied_migration_is_refused(tmp_path: Path) -> None:
    """A migration name this version does not know means the file is from the future."""
    with Store.open(tmp_path / "s.db") as store:
        store.db["_sqlite_migrations"].insert(
            {"migration_set": "syncd", "name": "m9999_future", "applied_at": "x"}
        )
    with pytest.raises(SchemaTooNewError, match="m9999_future"):
        Store.open(tmp_path / "s.db")


def test_open_without_migrate_refuses_an_old_file(tmp_path: Path) -> None:
    """Worker connections never migrate; they refuse a file that is not at this version."""
    with Store.open(tmp_path / "s.db") as store:
        store.db.execute("PRAGMA user_version = 0")
    with pytest.raises(StateError, match="start syncd once"):
        Store.open(tmp_path / "s.db", migrate=False)


def test_commit_batch_stores_rows_and_checkpoint_together(store: Store) -> None:
    """Rows, intents and the checkpoint that covers them land in one transaction."""
    store.db.execute("CREATE TABLE mirror (id TEXT PRIMARY KEY, qty INTEGER)")
    added = store.commit_batch(
        table="mirror",
        rows=[{"id": "a", "qty": 1}, {"id": "b", "qty": 2}],
        pk="id",
        checkpoint=("mirror.cursor", "c2"),
        intents=[NewIntent("dest", "put", "a", "a:1", {"qty": 1})],
    )
    assert added == 1
    assert store.scalar("SELECT count(*) FROM mirror") == 2
    assert store.get_checkpoint("mirror.cursor") == "c2"


def test_checkpoint_does_not_move_when_the_batch_fails(store: Store) -> None:
    """A failure half-way through a batch leaves neither rows nor checkpoint behind."""
    store.db.execute("CREATE TABLE mirror (id TEXT PRIMARY KEY, qty INTEGER NOT NULL)")
    store.set_checkpoint("mirror.cursor", "c1")
    with pytest.raises(Exception, match="NOT NULL"):
        store.commit_batch(
            table="mirror",
            rows=[{"id": "a", "qty": 1}, {"id": "b", "qty": None}],
            pk="id",
            checkpoint=("mirror.cursor", "c2"),
            intents=[NewIntent("dest", "put", "a", "a:1", {"qty": 1})],
        )
    assert store.scalar("SELECT count(*) FROM mirror") == 0
    assert store.scalar("SELECT count(*) FROM outbox") == 0
    assert store.get_checkpoint("mirror.cursor") == "c1"


def test_replayed_intent_is_recorded_once(store: Store) -> None:
    """The same idempotency key queued twice (a replay after a crash) is stored once."""
    intent = NewIntent("dest", "create", "o1", "create:o1", {"id": "o1"})
    assert store.add_intents([intent]) == 1
    assert store.add_intents([intent]) == 0
    assert len(store.pending_intents("dest", 10)) == 1


def test_reject_retry_requeues_an_outbox_intent(store: Store) -> None:
    """Retrying a rejected intent puts it back in the outbox with fresh attempts."""
    store.add_intents([NewIntent("dest", "create", "o1", "k1", {"id": "o1"})])
    intent = store.pending_intents("dest", 1)[0]
    reject_id = store.reject_intent(intent, "bad_request: no such article")
    assert store.pending_intents("dest", 10) == []
    row = store.get_reject(reject_id)
    assert row is not None
    assert row["reason"] == "bad_request: no such article"
    assert store.retry_reject(reject_id) == "retried"
    again = store.pending_intents("dest", 10)
    assert [i.id for i in again] == [intent.id]
    assert again[0].attempts == 0
    with pytest.raises(RefusedError, match="not open"):
        store.retry_reject(reject_id)


def test_job_reject_retry_flags_it_for_its_job(store: Store) -> None:
    """A reject owned by a job (no intent) is flagged for that job's next run."""
    store.add_rejects([NewReject("instock:articles", "article A1", "serial-numbered")])
    reject_id = store.list_rejects()[0]["id"]
    assert store.retry_reject(reject_id) == "retry"
    assert [r["id"] for r in store.rejects_to_retry("instock:articles")] == [reject_id]
    store.drop_reject(reject_id)
    assert store.get_reject(reject_id)["status"] == "dropped"  # type: ignore[index]


def test_host_row_reject_is_fixed_at_the_source(store: Store) -> None:
    """A bad host row cannot be retried from syncd: the message says to send a corrected file."""
    store.add_rejects([NewReject("host:articles", "articles.csv:7", "bad qty", field="qty")])
    reject_id = store.list_rejects()[0]["id"]
    with pytest.raises(RefusedError, match="corrected file"):
        store.retry_reject(reject_id)


def test_failed_migration_leaves_no_half_schema(tmp_path: Path) -> None:
    """A migration that fails half-way rolls back whole (no executescript auto-commit)."""
    from sqlite_utils.migrations import Migrations

    from syncd.state.migrations import run_script
    from syncd.state.store import connect

    broken = Migrations("broken")

    @broken()
    def m1(db: object) -> None:
        run_script(db, "CREATE TABLE a (x);\nCREATE TABLE b (y);\nTHIS IS NOT SQL;")  # type: ignore[arg-type]

    db = connect(tmp_path / "b.db")
    with pytest.raises(Exception, match="syntax error"):
        broken.apply(db)
    assert "a" not in db.table_names()


def test_alerts_open_once_and_resolve(store: Store) -> None:
    """An alert is opened once per (kind, subject), counted while it repeats, and resolved."""
    assert store.open_alert("auth", "instock refused", subject="instock") is True
    assert store.open_alert("auth", "instock refused again", subject="instock") is False
    alerts = store.open_alerts("auth")
    assert len(alerts) == 1
    assert alerts[0]["count"] == 2
    assert store.resolve_alerts("auth") == 1
    assert store.open_alerts() == []
    assert store.open_alert("auth", "refused after fix", subject="instock") is True


def test_abandoned_runs_are_marked_interrupted(store: Store) -> None:
    """A run a crash left 'running' is marked interrupted at the next start."""
    store.start_run("job.a", "run-1", "schedule")
    assert store.mark_abandoned_runs() == 1
    assert store.scalar("SELECT status FROM runs WHERE run_id = 'run-1'") == "interrupted"


def test_timestamps_are_iso_utc(store: Store) -> None:
    """Every timestamp reads as ISO-8601 UTC in sqlite3."""
    store.set_checkpoint("s", "v")
    assert store.scalar("SELECT updated_at FROM checkpoints").endswith("Z")


def test_second_lock_on_the_same_state_dir_is_refused(tmp_path: Path) -> None:
    """Two daemons on one state directory would corrupt each other's work: refuse."""
    with StateLock(tmp_path), pytest.raises(AlreadyRunningError, match="already running"):
        StateLock(tmp_path).acquire()
    with StateLock(tmp_path):
        pass  # released: free again


def test_open_import_jobs_keep_their_rows_across_the_m0009_upgrade(tmp_path: Path) -> None:
    """A job left open by a syncd that kept one table row per sent row comes through the
    upgrade with the same rows, in order, in the job's JSON."""
    import json

    from sqlite_utils.migrations import Migrations

    from syncd.state.migrations import migrations
    from syncd.state.store import connect

    old = Migrations("syncd")  # the same set, up to the migration before m0009
    for step in migrations._migrations:
        if step.name == "m0009_planning_import_rows":
            break
        old._migrations.append(step)
    db = connect(tmp_path / "s.db")
    old.apply(db)
    db.execute(
        "INSERT INTO planning_import_jobs (job_id, endpoint, status, submitted_at) "
        "VALUES ('J1', 'catalog', 'PENDING', 'x'), ('J2', 'catalog', 'COMPLETED', 'x')"
    )
    for seq in (1, 0):
        db.execute(
            "INSERT INTO planning_import_sent VALUES ('J1', ?, ?, 'h', ?, ?)",
            [seq, f"A{seq}", f"a.csv:{seq + 2}", json.dumps({"externalId": f"A{seq}"})],
        )
    db.close()
    with Store.open(tmp_path / "s.db") as store:
        jobs = {  # from m0028 on, a job's rows are its batch's
            r["job_id"]: r["rows"]
            for r in store.query(
                "SELECT j.job_id, b.rows FROM planning_import_jobs j "
                "LEFT JOIN planning_import_batches b ON b.batch_id = j.batch_id"
            )
        }
        assert "planning_import_sent" not in store.db.table_names()
    assert json.loads(jobs["J1"]) == [
        ["A0", "h", "a.csv:2", {"externalId": "A0"}],
        ["A1", "h", "a.csv:3", {"externalId": "A1"}],
    ]
    assert jobs["J2"] is None


def test_runs_keep_their_rows_across_the_run_crashed_upgrade(tmp_path: Path) -> None:
    """The runs table rebuilt to allow 'crashed' keeps every row, id and index; a state DB
    written before it still opens, and takes a crashed run afterwards."""
    from sqlite_utils.migrations import Migrations

    from syncd.state.migrations import migrations
    from syncd.state.store import connect

    old = Migrations("syncd")  # the same set, up to the migration that allows 'crashed'
    for step in migrations._migrations:
        if step.name.endswith("_run_crashed"):
            break
        old._migrations.append(step)
    db = connect(tmp_path / "s.db")
    old.apply(db)
    db.execute(
        "INSERT INTO runs (id, run_id, job, trigger, started_at, finished_at, status, pulled, "
        "error) VALUES (7, 'r7', 'instock.orders', 'signal', 'a', 'b', 'failed', 3, 'boom')"
    )
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("UPDATE runs SET status = 'crashed' WHERE id = 7")
    db.close()
    with Store.open(tmp_path / "s.db") as store:
        row = store.query("SELECT * FROM runs")[0]
        assert (row["id"], row["run_id"], row["trigger"], row["status"], row["pulled"]) == (
            7,
            "r7",
            "signal",
            "failed",
            3,
        )
        store.start_run("instock.orders", "r8", "schedule")
        store.finish_run("r8", "crashed", {}, error="KeyError: 'x'")
        assert store.scalar("SELECT status FROM runs WHERE run_id = 'r8'") == "crashed"
        indexes = store.query("SELECT name FROM sqlite_master WHERE type = 'index'")
        assert {"runs_job_started", "runs_job_status"} <= {r["name"] for r in indexes}
