"""Owner of `backfills` and `backfill_differences`: the only module that writes them.

A backfill re-pulls a past period of one stream beside its live cursor. The CLI asks for
one (`request_backfill`, which works while the daemon holds the state lock: it is one
INSERT), the backfill job claims it (`claim_next`: a `running` row first, as that is a
backfill a crash or a shutdown interrupted, to resume from its `cursor`), records each
step with `RecordStep` in the transaction that applies the step's data, and ends it
(`finish_backfill`). At most one backfill per stream is `requested` or `running` (a
partial unique index): a second request is refused with `BusyError`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from syncd.clock import iso
from syncd.errors import BusyError, NotFoundError, RefusedError
from syncd.jsontext import canonical
from syncd.state.store import Store

BackfillStatus = Literal["requested", "running", "done", "failed", "cancelled"]
ACTIVE: tuple[BackfillStatus, ...] = ("requested", "running")
MAX_DIFFERENCES = 1000  # kept per backfill (the counts are exact beyond it)


@dataclass(frozen=True)
class Backfill:
    id: int
    stream: str
    period_from: str
    period_to: str
    dry_run: bool
    status: BackfillStatus
    cursor: str | None
    steps: int
    found: int
    missing: int
    changed: int
    applied: int
    rejected: int
    error: str | None
    run_id: str | None
    requested_at: str
    started_at: str | None
    updated_at: str
    finished_at: str | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Backfill:
        known = {k: v for k, v in row.items() if k in cls.__dataclass_fields__}
        return cls(**{**known, "dry_run": bool(row["dry_run"])})

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def as_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Difference:
    """One record a backfill found missing or changed: its key and what differs (the
    record, or `{field: [held, listed]}`)."""

    kind: Literal["missing", "changed"]
    key: str
    detail: Any


def _get(store: Store, backfill_id: int) -> Backfill | None:
    rows = store.query("SELECT * FROM backfills WHERE id = ?", [backfill_id])
    return Backfill.from_row(rows[0]) if rows else None


def get_backfill(store: Store, backfill_id: int) -> Backfill:
    found = _get(store, backfill_id)
    if found is None:
        raise NotFoundError(f"no backfill {backfill_id}")
    return found


def active_backfill(store: Store, stream: str) -> Backfill | None:
    rows = store.query(
        "SELECT * FROM backfills WHERE stream = ? AND status IN ('requested', 'running')",
        [stream],
    )
    return Backfill.from_row(rows[0]) if rows else None


def active_backfills(store: Store) -> list[Backfill]:
    """Backfills requested or running, oldest first (at most one per stream)."""
    rows = store.query(
        "SELECT * FROM backfills WHERE status IN ('requested', 'running') ORDER BY id"
    )
    return [Backfill.from_row(r) for r in rows]


def list_backfills(store: Store, limit: int = 20) -> list[Backfill]:
    """The latest backfills, newest first."""
    rows = store.query("SELECT * FROM backfills ORDER BY id DESC LIMIT ?", [limit])
    return [Backfill.from_row(r) for r in rows]


def request_backfill(
    store: Store, stream: str, period_from: str, period_to: str, *, dry_run: bool
) -> Backfill:
    """A new `requested` backfill; `BusyError` while another of the stream is requested or
    running (the index decides, so two CLIs at once cannot both get one)."""
    now = iso()
    try:
        with store.transaction():
            cursor = store.db.execute(
                "INSERT INTO backfills (stream, period_from, period_to, dry_run, status, "
                "requested_at, updated_at) VALUES (?, ?, ?, ?, 'requested', ?, ?)",
                [stream, period_from, period_to, int(dry_run), now, now],
            )
            new_id = int(cursor.lastrowid or 0)
    except sqlite3.IntegrityError:
        other = active_backfill(store, stream)
        which = (
            f"backfill {other.id} ({other.period_from} .. {other.period_to}) is {other.status}"
            if other
            else "another backfill is requested or running"
        )
        raise BusyError(
            f"{stream}: {which}; one backfill per stream at a time (wait for it, or "
            f"`syncd backfill --cancel {other.id if other else 'ID'}`)"
        ) from None
    return get_backfill(store, new_id)


def claim_next(store: Store, run_id: str) -> Backfill | None:
    """The backfill to work on now, marked `running` by `run_id`: one left `running` (a
    crash or a shutdown interrupted it: resumed from its cursor), else the oldest request."""
    with store.transaction():
        rows = store.query(
            "SELECT id FROM backfills WHERE status IN ('running', 'requested') "
            "ORDER BY status = 'requested', id LIMIT 1"
        )
        if not rows:
            return None
        now = iso()
        store.db.execute(
            "UPDATE backfills SET status = 'running', run_id = ?, "
            "started_at = coalesce(started_at, ?), updated_at = ? WHERE id = ?",
            [run_id, now, now, rows[0]["id"]],
        )
        return get_backfill(store, rows[0]["id"])


def pending_backfills(store: Store) -> int:
    """How many backfills wait for the job (requested, or running and to be resumed)."""
    return int(
        store.scalar("SELECT count(*) FROM backfills WHERE status IN ('requested', 'running')") or 0
    )


@dataclass(frozen=True)
class RecordStep:
    """One committed step of a backfill: its checkpoint (`cursor`), what the step found,
    and the differences (kept up to MAX_DIFFERENCES). Apply it in the transaction that
    applies the step's data, so the cursor never passes data that was not applied."""

    backfill_id: int
    cursor: str | None
    found: int = 0
    missing: int = 0
    changed: int = 0
    applied: int = 0
    rejected: int = 0
    differences: Sequence[Difference] = ()
    applied_differences: bool = False

    def apply(self, store: Store) -> None:
        seq = int(
            store.scalar(
                "SELECT coalesce(max(seq), 0) FROM backfill_differences WHERE backfill_id = ?",
                [self.backfill_id],
            )
            or 0
        )
        room = max(0, MAX_DIFFERENCES - seq)
        store.db.conn.executemany(
            "INSERT INTO backfill_differences (backfill_id, seq, kind, key, detail, applied) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    self.backfill_id,
                    seq + n,
                    d.kind,
                    d.key,
                    canonical(d.detail),
                    int(self.applied_differences),
                )
                for n, d in enumerate(self.differences[:room], start=1)
            ],
        )
        store.db.execute(
            "UPDATE backfills SET cursor = ?, steps = steps + 1, found = found + ?, "
            "missing = missing + ?, changed = changed + ?, applied = applied + ?, "
            "rejected = rejected + ?, updated_at = ? WHERE id = ?",
            [
                self.cursor,
                self.found,
                self.missing,
                self.changed,
                self.applied,
                self.rejected,
                iso(),
                self.backfill_id,
            ],
        )


def backfill_status(store: Store, backfill_id: int) -> BackfillStatus:
    return get_backfill(store, backfill_id).status


def finish_backfill(
    store: Store, backfill_id: int, status: BackfillStatus, error: str | None = None
) -> None:
    """End a running backfill (`done`, `failed`); one cancelled meanwhile stays cancelled."""
    now = iso()
    with store.transaction():
        store.db.execute(
            "UPDATE backfills SET status = ?, error = ?, finished_at = ?, updated_at = ? "
            "WHERE id = ? AND status = 'running'",
            [status, error, now, now, backfill_id],
        )


def restart_walk(store: Store, backfill: Backfill) -> None:
    """Walk again from the start (the remote refused the backfill's cursor): what it
    applied stays applied, and so counted; `found` restarts, as the new walk finds every
    record again (a dry run, which applied nothing, restarts all counts and differences)."""
    with store.transaction():
        if backfill.dry_run:
            store.db.execute(
                "DELETE FROM backfill_differences WHERE backfill_id = ?", [backfill.id]
            )
        store.db.execute(
            "UPDATE backfills SET cursor = NULL, found = 0, updated_at = ?"
            + (", missing = 0, changed = 0" if backfill.dry_run else "")
            + " WHERE id = ?",
            [iso(), backfill.id],
        )


def note_error(store: Store, backfill_id: int, error: str) -> None:
    """The last error of a backfill that stays running (resumed by the next run)."""
    with store.transaction():
        store.db.execute(
            "UPDATE backfills SET error = ?, updated_at = ? WHERE id = ?",
            [error, iso(), backfill_id],
        )


def cancel_backfill(store: Store, backfill_id: int) -> Backfill:
    """Cancel a requested or running backfill: a running one stops at its next step,
    keeping what it applied so far (each step is whole). Refused once it has ended."""
    with store.transaction():
        found = get_backfill(store, backfill_id)
        if not found.active:
            raise RefusedError(f"backfill {backfill_id} is {found.status}: nothing to cancel")
        now = iso()
        store.db.execute(
            "UPDATE backfills SET status = 'cancelled', finished_at = ?, updated_at = ? "
            "WHERE id = ?",
            [now, now, backfill_id],
        )
    return get_backfill(store, backfill_id)


def differences(
    store: Store, backfill_id: int, limit: int = MAX_DIFFERENCES
) -> list[dict[str, Any]]:
    """What a backfill found, in the order found: kind, key, detail (decoded), applied."""
    rows = store.query(
        "SELECT kind, key, detail, applied FROM backfill_differences WHERE backfill_id = ? "
        "ORDER BY seq LIMIT ?",
        [backfill_id, limit],
    )
    return [{**r, "detail": json.loads(r["detail"]), "applied": bool(r["applied"])} for r in rows]


__all__ = [
    "ACTIVE",
    "MAX_DIFFERENCES",
    "Backfill",
    "BackfillStatus",
    "Difference",
    "RecordStep",
    "active_backfill",
    "backfill_status",
    "cancel_backfill",
    "claim_next",
    "differences",
    "finish_backfill",
    "get_backfill",
    "list_backfills",
    "note_error",
    "pending_backfills",
    "request_backfill",
    "restart_walk",
]
