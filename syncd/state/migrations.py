"""Schema of the state DB, as an ordered list of migrations.

Each migration runs in one transaction with its applied record (sqlite-utils
`Migrations`). `PRAGMA user_version` holds the number of migrations applied, so
an older syncd can see that a file was written by a newer one and refuse it
instead of corrupting it.

Tables are named for what they hold and timestamps are ISO-8601 UTC text
(`2026-11-23T10:15:00.000Z`), so the file reads well in sqlite3 and Datasette.
"""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from syncd.errors import SchemaTooNewError

migrations = Migrations("syncd")


@migrations()
def m0001_core(db: Database) -> None:
    db.executescript(
        """
        -- One row per job run: what ran, when, and what it did.
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL UNIQUE,
            job TEXT NOT NULL,
            trigger TEXT NOT NULL DEFAULT 'schedule',
            started_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL DEFAULT 'running'
                CHECK (status IN ('running', 'ok', 'failed', 'interrupted', 'dry-run', 'skipped')),
            pulled INTEGER NOT NULL DEFAULT 0,
            pushed INTEGER NOT NULL DEFAULT 0,
            rejected INTEGER NOT NULL DEFAULT 0,
            counts TEXT NOT NULL DEFAULT '{}',   -- JSON: further per-job counters
            warnings TEXT NOT NULL DEFAULT '[]', -- JSON: warnings remotes returned
            error TEXT
        );
        CREATE INDEX runs_job_started ON runs (job, started_at);

        -- Watermarks: a stream's cursor or time window, advanced with its data.
        CREATE TABLE checkpoints (
            stream TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            run_id TEXT
        );

        -- Push intents, recorded with the diff that caused them, drained by the sender.
        -- `order_key` serialises intents about one thing (an order, an article).
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            destination TEXT NOT NULL,
            kind TEXT NOT NULL,
            order_key TEXT NOT NULL,
            idempotency_key TEXT NOT NULL,
            payload TEXT NOT NULL,               -- JSON
            status TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'sent', 'rejected', 'dropped')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT NOT NULL,
            last_error TEXT,
            result TEXT,                         -- what the remote answered on success
            created_at TEXT NOT NULL,
            sent_at TEXT,
            run_id TEXT,
            UNIQUE (destination, idempotency_key)
        );
        CREATE INDEX outbox_due ON outbox (destination, status, id);
        CREATE INDEX outbox_key ON outbox (destination, order_key, status);

        -- Bad input, kept with its reason until an operator retries or drops it.
        CREATE TABLE rejects (
            id INTEGER PRIMARY KEY,
            source TEXT NOT NULL,                -- e.g. host:articles, outbox:instock
            reference TEXT NOT NULL,             -- e.g. articles-0001.csv:17, outbox:42
            field TEXT,
            reason TEXT NOT NULL,
            payload TEXT,                        -- JSON or the raw line
            status TEXT NOT NULL DEFAULT 'open'
                CHECK (status IN ('open', 'retry', 'retried', 'dropped', 'resolved')),
            outbox_id INTEGER REFERENCES outbox (id),
            run_id TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX rejects_status ON rejects (status, source);

        -- Conditions an operator must see: one open row per (kind, subject).
        CREATE TABLE alerts (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            subject TEXT NOT NULL DEFAULT '',
            message TEXT NOT NULL,
            count INTEGER NOT NULL DEFAULT 1,
            opened_at TEXT NOT NULL,
            last_seen_at TEXT NOT NULL,
            resolved_at TEXT
        );
        CREATE UNIQUE INDEX alerts_open ON alerts (kind, subject) WHERE resolved_at IS NULL;
        """
    )


SCHEMA_VERSION = len(migrations._migrations)


def apply_migrations(db: Database) -> int:
    """Bring the schema up to date; refuse a file written by a newer syncd."""
    found = db.execute("PRAGMA user_version").fetchone()[0]
    known = {m.name for m in migrations._migrations}
    unknown = [m.name for m in migrations.applied(db) if m.name not in known]
    if found > SCHEMA_VERSION or unknown:
        raise SchemaTooNewError(
            f"state DB has schema version {found} (migrations {unknown or 'unknown'}), "
            f"this syncd knows up to {SCHEMA_VERSION}: it was written by a newer syncd. "
            "Upgrade syncd, or point daemon.state_dir at another directory."
        )
    if migrations.pending(db):
        migrations.apply(db)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return SCHEMA_VERSION
