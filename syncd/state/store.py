"""The state store: one SQLite file, opened once per thread.

Every write happens inside a transaction opened here (`Store.transaction`), so that
the invariants hold in one place: a checkpoint only moves inside the transaction
that stores what it covers, and a push intent is recorded in the transaction of
the diff that caused it. The core tables (runs, checkpoints, outbox, rejects,
alerts) are written through this module's methods (the accepted/failed tables of
planning.import and oregon.siop through `syncd.state.ledger`); the jobs and the host
inbox write their other mirror tables with SQL of their own (`store.db`) inside such a
transaction.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlite_utils import Database

from syncd.clock import iso, iso_in
from syncd.errors import NotFoundError, RefusedError, StateError
from syncd.jsontext import canonical
from syncd.logs import redactor
from syncd.state.kinds import AlertKind, IntentStatus, RejectStatus, RunStatus
from syncd.state.migrations import SCHEMA_VERSION, apply_migrations

BUSY_TIMEOUT_MS = 10_000
_WRITE_LOCKS: dict[str, threading.Lock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


def _write_lock(path: Path | None) -> threading.Lock:
    key = str(path.resolve()) if path is not None else ""
    with _WRITE_LOCKS_GUARD:
        return _WRITE_LOCKS.setdefault(key, threading.Lock())


_json = canonical


def _text(value: str | None) -> str | None:
    """Free text bound for the state DB (an error, a reason, a message): secrets redacted.

    The one choke point: every write helper below passes remote-controlled text
    through here, so an echoed credential never reaches a row, whoever built the text.
    """
    return None if value is None else redactor.text(value)


def _data(value: object) -> str:
    """JSON bound for the state DB (warnings, results, raw records), secrets redacted."""
    if isinstance(value, str):
        return redactor.text(value)
    return _json(redactor.any(value))


@dataclass(frozen=True)
class Intent:
    """A push waiting in the outbox."""

    id: int
    destination: str
    kind: str
    order_key: str
    idempotency_key: str
    payload: Any
    status: IntentStatus
    attempts: int
    next_attempt_at: str
    last_error: str | None
    created_at: str
    unclear: bool = False
    """The last attempt started and ended without a clear answer (or never ended)."""

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Intent:
        return cls(
            id=row["id"],
            destination=row["destination"],
            kind=row["kind"],
            order_key=row["order_key"],
            idempotency_key=row["idempotency_key"],
            payload=json.loads(row["payload"]),
            status=row["status"],
            attempts=row["attempts"],
            next_attempt_at=row["next_attempt_at"],
            last_error=row["last_error"],
            created_at=row["created_at"],
            unclear=bool(row["unclear"]),
        )


@dataclass(frozen=True)
class NewIntent:
    destination: str
    kind: str
    order_key: str
    idempotency_key: str
    payload: Any


@dataclass(frozen=True)
class NewReject:
    source: str
    reference: str
    reason: str
    field: str | None = None
    payload: Any = None


PRIVATE_MODE = 0o600  # the state DB, its WAL and SHM, and the lock: the owner alone


def make_private(path: Path) -> None:
    """Create `path` 0600 if it is missing (SQLite gives its WAL and SHM the mode of the
    DB file), and take group/other bits from an existing one (and its WAL and SHM)
    left by an older syncd; a file owned by someone else is left as it is."""
    with contextlib.suppress(OSError):  # exists already; or SQLite will say why it cannot
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, PRIVATE_MODE))
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(OSError):
            if stat.S_IMODE(file.stat().st_mode) & 0o077:
                os.chmod(file, PRIVATE_MODE)


def connect(path: Path) -> Database:
    """Open the file with the pragmas every connection needs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        make_private(path)
        conn = sqlite3.connect(
            str(path), isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
        )
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.DatabaseError as exc:
        raise StateError(f"cannot open state DB {path}: {exc}") from None
    conn.row_factory = sqlite3.Row
    return Database(conn)


class Store:
    """Typed access to the core tables; one instance per thread."""

    def __init__(self, db: Database, path: Path | None = None) -> None:
        self.db = db
        self.path = path
        # Looked up once: resolving the path for every transaction was a share of a
        # page-per-transaction pull's time.
        self._lock = _write_lock(path)

    @classmethod
    def open(cls, path: Path, *, migrate: bool = True) -> Store:
        db = connect(path)
        if migrate:
            apply_migrations(db)
        else:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version != SCHEMA_VERSION:
                db.close()
                raise StateError(
                    f"state DB {path} has schema version {version}, expected {SCHEMA_VERSION}"
                    + (" (start syncd once to migrate it)" if version < SCHEMA_VERSION else "")
                )
        return cls(db, path)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions -------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """All or nothing; nests through savepoints.

        The outer transaction is BEGIN IMMEDIATE: it takes the write lock up
        front, so a concurrent writer makes it wait (busy_timeout) instead of
        failing with "database is locked" when a read transaction tries to
        upgrade after another connection committed.
        """
        conn = self.db.conn
        if conn.in_transaction:
            with self.db.atomic():  # a savepoint inside the caller's transaction
                yield self
            return
        # Writers of this process queue on a lock first: SQLite's own busy handler
        # sleeps in steps of milliseconds, which adds up when jobs and the sender
        # write at the same time. Other processes (the CLI) still meet busy_timeout.
        with self._lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def write_one(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One statement in a transaction of its own (SQLite makes a lone statement atomic),
        in one call instead of three (BEGIN, the statement, COMMIT): each call lets go of
        the GIL and waits to take it back, which is what a step done in turn while other
        threads compute pays for. Returns the rows it changed. Inside a transaction it is
        simply part of it."""
        conn = self.db.conn
        if conn.in_transaction:
            return conn.execute(sql, params).rowcount
        with self._lock:
            return conn.execute(sql, params).rowcount

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.execute(sql, params).fetchall()]

    def scalar(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        row = self.db.execute(sql, params).fetchone()
        return None if row is None else row[0]

    # -- checkpoints --------------------------------------------------------

    def get_checkpoint(self, stream: str, default: str | None = None) -> str | None:
        value = self.scalar("SELECT value FROM checkpoints WHERE stream = ?", [stream])
        return default if value is None else value

    def set_checkpoint(self, stream: str, value: str, run_id: str | None = None) -> None:
        self.db.execute(
            "INSERT INTO checkpoints (stream, value, updated_at, run_id) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (stream) DO UPDATE SET value = excluded.value, "
            "updated_at = excluded.updated_at, run_id = excluded.run_id",
            [stream, value, iso(), run_id],
        )

    def reset_checkpoint(self, stream: str) -> bool:
        return self.db.execute("DELETE FROM checkpoints WHERE stream = ?", [stream]).rowcount > 0

    def commit_batch(
        self,
        *,
        table: str | None = None,
        rows: Iterable[dict[str, Any]] = (),
        pk: str | tuple[str, ...] | None = None,
        checkpoint: tuple[str, str] | None = None,
        intents: Iterable[NewIntent] = (),
        rejects: Iterable[NewReject] = (),
        run_id: str | None = None,
    ) -> int:
        """Store rows, intents and rejects and advance a checkpoint in one transaction.

        Returns the number of new intents (a replayed intent is not recorded twice).
        """
        with self.transaction():
            if table is not None:
                batch = list(rows)
                if batch:
                    self.db.table(table).upsert_all(batch, pk=pk, alter=False)
            added = self.add_intents(intents, run_id=run_id)
            self.add_rejects(rejects, run_id=run_id)
            if checkpoint is not None:
                self.set_checkpoint(*checkpoint, run_id=run_id)
        return added

    # -- runs ---------------------------------------------------------------

    def start_run(self, job: str, run_id: str, trigger: str) -> None:
        self.db.execute(
            "INSERT INTO runs (run_id, job, trigger, started_at) VALUES (?, ?, ?, ?)",
            [run_id, job, trigger, iso()],
        )

    def finish_run(
        self,
        run_id: str,
        status: RunStatus,
        counts: Mapping[str, int],
        *,
        warnings: Sequence[object] | None = None,
        error: str | None = None,
    ) -> None:
        extra = {k: v for k, v in counts.items() if k not in ("pulled", "pushed", "rejected")}
        self.db.execute(
            "UPDATE runs SET finished_at = ?, status = ?, pulled = ?, pushed = ?, rejected = ?, "
            "counts = ?, warnings = ?, error = ? WHERE run_id = ?",
            [
                iso(),
                status,
                counts.get("pulled", 0),
                counts.get("pushed", 0),
                counts.get("rejected", 0),
                _json(extra),
                _data(warnings or []),
                _text(error),
                run_id,
            ],
        )

    def mark_abandoned_runs(self) -> int:
        """Runs left 'running' by a crash are marked interrupted at start-up."""
        return self.db.execute(
            "UPDATE runs SET status = 'interrupted', finished_at = ?, "
            "error = coalesce(error, 'process ended before the run finished') "
            "WHERE status = 'running'",
            [iso()],
        ).rowcount

    # -- outbox -------------------------------------------------------------

    def add_intents(self, intents: Iterable[NewIntent], *, run_id: str | None = None) -> int:
        now = iso()
        added = 0
        for intent in intents:
            cur = self.db.execute(
                "INSERT INTO outbox (destination, kind, order_key, idempotency_key, payload, "
                "next_attempt_at, created_at, run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (destination, idempotency_key) DO NOTHING",
                [
                    intent.destination,
                    intent.kind,
                    intent.order_key,
                    intent.idempotency_key,
                    _json(intent.payload),
                    now,
                    now,
                    run_id,
                ],
            )
            added += cur.rowcount
        return added

    def pending_intents(self, destination: str, limit: int, after_id: int = 0) -> list[Intent]:
        rows = self.db.execute(
            "SELECT * FROM outbox WHERE destination = ? AND status = 'pending' AND id > ? "
            "ORDER BY id LIMIT ?",
            [destination, after_id, limit],
        ).fetchall()
        return [Intent.from_row(r) for r in rows]

    def destinations_with_due_intents(self, now: str | None = None) -> list[str]:
        return [
            r[0]
            for r in self.db.execute(
                "SELECT DISTINCT destination FROM outbox WHERE status = 'pending' "
                "AND next_attempt_at <= ? ORDER BY destination",
                [now or iso()],
            ).fetchall()
        ]

    def intent_id(self, destination: str, idempotency_key: str) -> int | None:
        """The id of the intent recorded under this key (new or replayed), if any."""
        value = self.scalar(
            "SELECT id FROM outbox WHERE destination = ? AND idempotency_key = ?",
            [destination, idempotency_key],
        )
        return None if value is None else int(value)

    def intents_of_run(self, run_id: str) -> list[dict[str, Any]]:
        """What a run recorded to send (a dry run's report), in the order recorded."""
        return self.query(
            "SELECT destination, kind, order_key, idempotency_key, payload FROM outbox "
            "WHERE run_id = ? ORDER BY id",
            [run_id],
        )

    def mark_sent(
        self, intent_id: int, result: object = None, request_ids: Sequence[str] = ()
    ) -> None:
        self.db.execute(
            "UPDATE outbox SET status = 'sent', sent_at = ?, attempts = attempts + 1, "
            "result = ?, last_error = NULL, request_ids = ? WHERE id = ?",
            [
                iso(),
                None if result is None else _data(result),
                json.dumps(list(request_ids)) if request_ids else None,
                intent_id,
            ],
        )

    def defer_intent(self, intent_id: int, reason: str, until: str) -> None:
        """Leave an intent pending until `until`, costing it no attempt."""
        self.db.execute(
            "UPDATE outbox SET last_error = ?, next_attempt_at = ? WHERE id = ?",
            [_text(f"deferred: {reason}"), until, intent_id],
        )

    def mark_attempts_started(self, intent_ids: Sequence[int]) -> None:
        """Before a send: until the attempt ends clearly, what it did is unknown (a crash
        mid-send leaves the mark, and the next attempt reads the remote first). Marked for
        the intents a sender turn is about to try, one after another."""
        self.db.conn.executemany(
            "UPDATE outbox SET unclear = 1 WHERE id = ? AND unclear = 0",
            [(i,) for i in intent_ids],
        )

    def clear_attempt_marks(self, intent_ids: Sequence[int]) -> None:
        """Take the mark back off intents marked attempted that were not tried after all
        (an earlier intent of their key failed, the destination stopped, a shutdown)."""
        self.db.conn.executemany(
            "UPDATE outbox SET unclear = 0 WHERE id = ? AND status = 'pending'",
            [(i,) for i in intent_ids],
        )

    def mark_retry(
        self, intent_id: int, error: str, delay: float, *, unclear: bool = False
    ) -> None:
        self.db.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?, "
            "unclear = ? WHERE id = ?",
            [_text(error), iso_in(delay), int(unclear), intent_id],
        )

    def reject_intent(
        self, intent: Intent, reason: str, *, run_id: str | None = None, payload: Any = None
    ) -> int:
        """Move an intent to rejects with the remote's reason; returns the reject id. The
        reject keeps `payload` when given (e.g. both versions of a diverged read-back),
        else the intent's payload."""
        with self.transaction():
            self.db.execute(
                "UPDATE outbox SET status = 'rejected', attempts = attempts + 1, last_error = ? "
                "WHERE id = ?",
                [_text(reason), intent.id],
            )
            return self._insert_reject(
                NewReject(
                    source=f"outbox:{intent.destination}",
                    reference=f"outbox:{intent.id} {intent.kind} {intent.order_key}",
                    reason=reason,
                    payload=intent.payload if payload is None else payload,
                ),
                run_id=run_id,
                outbox_id=intent.id,
            )

    # -- rejects ------------------------------------------------------------
    #
    # The lifecycle of a reject, written here alone:
    #   open      add_rejects / add_rejects_once / refresh_or_add_reject (a job, the host
    #             inbox), or reject_intent (an outbox intent the remote refused for good:
    #             the intent is poisoned, status 'rejected', and the reject points at it)
    #   retry     retry_reject (an operator); an outbox intent is queued again at once
    #             ('retried'), a job's reject is flagged for its job, which takes it
    #             (take_retried_rejects: 'retried') or hands it back (reopen_retry_flags)
    #   dropped   drop_reject (an operator; its poisoned intent is dropped with it)
    #   resolved  resolve_reject / resolve_open_rejects (the job saw the item valid again)
    #   purged    purge_history, once dropped/resolved/retried and older than retention

    def add_rejects(self, rejects: Iterable[NewReject], *, run_id: str | None = None) -> int:
        count = 0
        for reject in rejects:
            self._insert_reject(reject, run_id=run_id)
            count += 1
        return count

    def _insert_reject(
        self, reject: NewReject, *, run_id: str | None, outbox_id: int | None = None
    ) -> int:
        now = iso()
        payload = None if reject.payload is None else _data(reject.payload)
        cur = self.db.execute(
            "INSERT INTO rejects (source, reference, field, reason, payload, outbox_id, run_id, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                reject.source,
                _text(reject.reference),
                _text(reject.field),
                _text(reject.reason),
                payload,
                outbox_id,
                run_id,
                now,
                now,
            ],
        )
        return int(cur.lastrowid or 0)

    def add_reject(self, reject: NewReject, *, run_id: str | None) -> int:
        """Open one reject; returns its id."""
        return self._insert_reject(reject, run_id=run_id)

    def add_rejects_once(self, rejects: Iterable[NewReject], *, run_id: str | None) -> int:
        """One reject per problem: a reject whose source, reference and reason match one
        still open (or flagged retry) is not added again. Returns how many were added."""
        added = 0
        for reject in rejects:
            exists = self.scalar(
                "SELECT count(*) FROM rejects WHERE source = ? AND reference = ? AND reason = ? "
                "AND status IN ('open', 'retry')",
                [reject.source, reject.reference, reject.reason],
            )
            if not exists:
                added += self.add_rejects([reject], run_id=run_id)
        return added

    def refresh_or_add_reject(self, reject: NewReject, *, run_id: str | None) -> bool:
        """The same record refused again: an identical open reject (source, field, reason
        and payload) is touched (updated_at, run_id) instead of repeated. True when new."""
        now = iso()
        touched = self.db.execute(
            "UPDATE rejects SET updated_at = ?, run_id = ? WHERE id = (SELECT id FROM rejects "
            "WHERE source = ? AND status = 'open' AND field = ? AND reason = ? AND payload = ? "
            "LIMIT 1)",
            [
                now,
                run_id,
                reject.source,
                _text(reject.field),
                _text(reject.reason),
                None if reject.payload is None else _data(reject.payload),
            ],
        ).rowcount
        if touched:
            return False
        self._insert_reject(reject, run_id=run_id)
        return True

    def find_rejects(
        self,
        source: str,
        statuses: Iterable[RejectStatus] = ("open",),
        *,
        reference: str | None = None,
        reference_prefix: str | None = None,
    ) -> list[dict[str, Any]]:
        """The rejects of exactly `source` in `statuses`, by id; narrowed to a reference
        and/or (either matching) the references starting with a prefix."""
        wanted = list(statuses)
        sql = (
            f"SELECT * FROM rejects WHERE source = ? AND status IN ({', '.join('?' * len(wanted))})"
        )
        params: list[Any] = [source, *wanted]
        alternatives = []
        if reference is not None:
            alternatives.append("reference = ?")
            params.append(reference)
        if reference_prefix is not None:
            alternatives.append("reference LIKE ?")
            params.append(reference_prefix + "%")
        if alternatives:
            sql += f" AND ({' OR '.join(alternatives)})"
        return self.query(sql + " ORDER BY id", params)

    def open_reject_with(
        self, source: str, reference: str, payload_key: str, value: Any
    ) -> int | None:
        """The id of an open reject of `source` for `reference` whose JSON payload holds
        `value` under `payload_key` (the same thing refused again), if there is one."""
        found = self.scalar(
            "SELECT id FROM rejects WHERE source = ? AND reference = ? AND status = 'open' "
            "AND json_extract(payload, ?) = ?",
            [source, reference, f"$.{payload_key}", value],
        )
        return None if found is None else int(found)

    def get_reject(self, reject_id: int) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM rejects WHERE id = ?", [reject_id])
        return rows[0] if rows else None

    def list_rejects(
        self, status: RejectStatus | None = "open", source: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        sql = "SELECT * FROM rejects WHERE 1 = 1"
        params: list[Any] = []
        if status:
            sql += " AND status = ?"
            params.append(status)
        if source:
            sql += " AND source LIKE ?"
            params.append(source + "%")
        sql += " ORDER BY id LIMIT ?"
        params.append(limit)
        return self.query(sql, params)

    def retry_reject(self, reject_id: int) -> Literal["retry", "retried"]:
        """Give a reject another go: an outbox intent is queued again, other
        rejects are flagged for their job to pick up on its next run."""
        with self.transaction():
            row = self.get_reject(reject_id)
            if row is None:
                raise NotFoundError(f"no reject with id {reject_id}")
            if row["status"] not in ("open", "retry"):
                raise RefusedError(f"reject {reject_id} is {row['status']}, not open")
            if row["source"].startswith("host:"):
                raise RefusedError(
                    f"reject {reject_id} is a host row ({row['reference']}): fix it at the "
                    "source and drop a corrected file into the inbox, then "
                    f"`syncd rejects drop {reject_id}`"
                )
            now = iso()
            status: Literal["retry", "retried"]
            if row["outbox_id"] is not None:
                self.db.execute(
                    "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ? "
                    "WHERE id = ?",
                    [now, row["outbox_id"]],
                )
                status = "retried"
            else:
                status = "retry"
            self.db.execute(
                "UPDATE rejects SET status = ?, updated_at = ? WHERE id = ?",
                [status, now, reject_id],
            )
            return status

    def drop_reject(self, reject_id: int) -> None:
        with self.transaction():
            row = self.get_reject(reject_id)
            if row is None:
                raise NotFoundError(f"no reject with id {reject_id}")
            now = iso()
            self.db.execute(
                "UPDATE rejects SET status = 'dropped', updated_at = ? WHERE id = ?",
                [now, reject_id],
            )
            if row["outbox_id"] is not None:
                self.db.execute(
                    "UPDATE outbox SET status = 'dropped' WHERE id = ? AND status = 'rejected'",
                    [row["outbox_id"]],
                )

    def has_rejects(self, status: RejectStatus, source: str) -> bool:
        """Whether any reject whose source starts with `source` (as `list_rejects` matches
        it) has `status` (index rejects_status)."""
        return bool(
            self.scalar(
                "SELECT EXISTS (SELECT 1 FROM rejects WHERE status = ? AND source LIKE ?)",
                [status, source + "%"],
            )
        )

    def changes_made(self) -> int:
        """Rows this connection inserted, updated or deleted since it opened (SQLite's
        total_changes): a run that moved it wrote something."""
        return int(self.db.conn.total_changes)

    def rejects_to_retry(self, source: str) -> list[dict[str, Any]]:
        return self.list_rejects(status="retry", source=source, limit=10_000)

    def take_retried_rejects(
        self, source: str, forget: Callable[[Store, dict[str, Any]], object]
    ) -> Iterator[dict[str, Any]]:
        """`syncd rejects retry` for a job's own rejects: `forget` clears what kept the item
        back, in the same transaction that marks the reject retried; yields each reject
        taken (after its transaction), and the job plans the item again."""
        for reject in self.rejects_to_retry(source):
            with self.transaction():
                forget(self, reject)
                self.set_reject_status(reject["id"], "retried")
            yield reject

    def reopen_retry_flags(self, source: str) -> int:
        """Retry flags of `source` the job's run did not act on are spent: back to open."""
        return self.db.execute(
            "UPDATE rejects SET status = 'open', updated_at = ? WHERE source = ? "
            "AND status = 'retry'",
            [iso(), source],
        ).rowcount

    def set_reject_status(self, reject_id: int, status: RejectStatus) -> None:
        self.db.execute(
            "UPDATE rejects SET status = ?, updated_at = ? WHERE id = ?", [status, iso(), reject_id]
        )

    def resolve_reject(self, reject_id: int) -> None:
        self.db.execute(
            "UPDATE rejects SET status = 'resolved', updated_at = ? WHERE id = ?",
            [iso(), reject_id],
        )

    def resolve_open_rejects(self, reject_ids: Iterable[int]) -> int:
        """Resolve those of `reject_ids` still open or flagged retry (one an operator
        dropped stays dropped). Returns how many were resolved."""
        now = iso()
        return sum(
            self.db.execute(
                "UPDATE rejects SET status = 'resolved', updated_at = ? "
                "WHERE id = ? AND status IN ('open', 'retry')",
                [now, reject_id],
            ).rowcount
            for reject_id in reject_ids
        )

    # -- history ------------------------------------------------------------

    def purge_history(self, cutoff: str, *, keep_run_id: str) -> dict[str, int]:
        """Delete what is older than `cutoff` and done with: finished runs (not
        `keep_run_id`), sent intents no reject points at, resolved alerts, and rejects
        dropped, resolved or retried. One transaction; returns the count per table."""
        with self.transaction():
            deleted = {
                "runs": self.db.execute(
                    "DELETE FROM runs WHERE finished_at < ? AND run_id != ?", [cutoff, keep_run_id]
                ).rowcount
            }
            # Rejects keep a reference to their intent; those intents stay.
            deleted["outbox"] = self.db.execute(
                "DELETE FROM outbox WHERE status = 'sent' AND sent_at < ? "
                "AND id NOT IN (SELECT outbox_id FROM rejects WHERE outbox_id IS NOT NULL)",
                [cutoff],
            ).rowcount
            deleted["alerts"] = self.db.execute(
                "DELETE FROM alerts WHERE resolved_at < ?", [cutoff]
            ).rowcount
            deleted["rejects"] = self.db.execute(
                "DELETE FROM rejects WHERE status IN ('dropped', 'resolved', 'retried') "
                "AND updated_at < ?",
                [cutoff],
            ).rowcount
        return deleted

    def checkpoint_wal(self) -> None:
        """Copy what the write-ahead log holds into the DB file without waiting for readers
        (PASSIVE), so the -wal file does not grow between SQLite's own checkpoints."""
        self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    # -- alerts -------------------------------------------------------------

    def open_alert(self, kind: AlertKind, message: str, subject: str = "") -> bool:
        """Open (or refresh) the alert for (kind, subject); True when it is new."""
        now = iso()
        message = redactor.text(message)
        with self.transaction():
            updated = self.db.execute(
                "UPDATE alerts SET message = ?, last_seen_at = ?, count = count + 1 "
                "WHERE kind = ? AND subject = ? AND resolved_at IS NULL",
                [message, now, kind, subject],
            ).rowcount
            if updated:
                return False
            self.db.execute(
                "INSERT INTO alerts (kind, subject, message, opened_at, last_seen_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [kind, subject, message, now, now],
            )
            return True

    def resolve_alerts(self, kind: AlertKind, subject: str | None = None) -> int:
        sql = "UPDATE alerts SET resolved_at = ? WHERE kind = ? AND resolved_at IS NULL"
        params: list[Any] = [iso(), kind]
        if subject is not None:
            sql += " AND subject = ?"
            params.append(subject)
        return self.db.execute(sql, params).rowcount

    def resolve_alert(self, alert_id: int) -> bool:
        """Resolve one alert by id (an operator's `syncd alerts resolve`); False when no
        open alert has that id."""
        return (
            self.db.execute(
                "UPDATE alerts SET resolved_at = ? WHERE id = ? AND resolved_at IS NULL",
                [iso(), alert_id],
            ).rowcount
            > 0
        )

    def open_alerts(self, kind: str | None = None) -> list[dict[str, Any]]:
        if kind:
            return self.query(
                "SELECT * FROM alerts WHERE resolved_at IS NULL AND kind = ? ORDER BY id", [kind]
            )
        return self.query("SELECT * FROM alerts WHERE resolved_at IS NULL ORDER BY id")
