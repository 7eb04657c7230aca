"""Owner of `netstock_pops`, netstock.pop's journal: the only module that writes it.

A row is one popped answer, raw, journaled before anything else is done with it (a pop
removes what it returns). Its `status` walks `journaled` -> `queued` (a host file intent,
`outbox_id`) -> `delivered` (the sender wrote the file), or `journaled` -> `delivered` (a
file without lines), or `journaled` -> `unparseable` (kept raw, with `error`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from syncd.state.store import Store


def journal_pop(store: Store, kind: str, raw: str, at: str, run_id: str | None) -> int:
    """Journal one answer in its own committed transaction; returns its id."""
    with store.transaction():
        cursor = store.db.execute(
            "INSERT INTO netstock_pops (kind, raw, popped_at, status, run_id) "
            "VALUES (?, ?, ?, 'journaled', ?)",
            [kind, raw, at, run_id],
        )
    return int(cursor.lastrowid or 0)


def journaled_pops(store: Store) -> list[dict[str, Any]]:
    """Answers journaled and not yet queued (`id`, `kind`, `raw`), oldest first."""
    return store.query(
        "SELECT id, kind, raw FROM netstock_pops WHERE status = 'journaled' ORDER BY id"
    )


@dataclass(frozen=True)
class PopQueued:
    """A journaled answer read: its file queued as intent `outbox_id`, or, without lines
    (nothing to write), delivered at once. A row no longer `journaled` is left alone."""

    pop_id: int
    file_name: str | None
    lines: int
    outbox_id: int | None
    at: str

    def apply(self, store: Store) -> None:
        queued = self.lines > 0
        store.db.execute(
            "UPDATE netstock_pops SET status = ?, file_name = ?, lines = ?, outbox_id = ?, "
            "queued_at = ?, delivered_at = ?, error = NULL WHERE id = ? AND status = 'journaled'",
            [
                "queued" if queued else "delivered",
                self.file_name,
                self.lines,
                self.outbox_id,
                self.at,
                None if queued else self.at,
                self.pop_id,
            ],
        )


@dataclass(frozen=True)
class PopUnparseable:
    """A journaled answer that cannot be read: kept raw, with why (redact `error` first)."""

    pop_id: int
    error: str

    def apply(self, store: Store) -> None:
        store.db.execute(
            "UPDATE netstock_pops SET status = 'unparseable', error = ? WHERE id = ?",
            [self.error, self.pop_id],
        )


def mark_delivered(store: Store) -> int:
    """Queued rows whose host file the sender wrote: delivered, at the sender's time."""
    with store.transaction():
        return int(
            store.db.execute(
                "UPDATE netstock_pops SET status = 'delivered', delivered_at = ("
                "  SELECT sent_at FROM outbox WHERE outbox.id = netstock_pops.outbox_id) "
                "WHERE status = 'queued' AND outbox_id IN ("
                "  SELECT id FROM outbox WHERE destination = 'host' AND status = 'sent')"
            ).rowcount
        )
