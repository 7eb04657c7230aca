"""netstock.export's journal: the three tables only that job writes, and their one writer.

- `netstock_exports`: one row per export, walking prepared -> importing -> processing ->
  complete | failed; its `models` column is a JSON list of `ModelEntry` (`{model, rows,
  state, lines_sent, chunks}`, in that key order, compact separators).
- `netstock_export_rows`: the frozen snapshot of an export in flight, a chunk's worth of
  newline-joined JSON lines per row (`seq`: the number of its first line); dropped when
  the export finishes or is dropped.
- `netstock_export_chunks`: each chunk Netstock took, recorded in the transaction of its
  answer (`how`: `answer`, or `confirmed` by /model/status after a lost answer).

A snapshot is rendered into `temp.netstock_frozen` first (`frozen_snapshot`: one read
transaction over the host tables, no write lock held) and copied into
netstock_export_rows only when an export is created (`CreateExport`). Reads return typed
values; writes are the `Change` values below, carried by a `syncd.state.plan.Plan`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

from syncd.state.store import Store

ExportState = Literal["prepared", "importing", "processing", "complete", "failed"]
ModelPhase = Literal["pending", "open", "ended"]
ChunkHow = Literal["answer", "confirmed"]


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One model of an export: its frozen line count and how far its import got."""

    model: str
    rows: int
    state: ModelPhase = "pending"
    lines_sent: int = 0
    chunks: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "rows": self.rows,
            "state": self.state,
            "lines_sent": self.lines_sent,
            "chunks": self.chunks,
        }


def models_json(models: tuple[ModelEntry, ...]) -> str:
    return json.dumps([m.as_json() for m in models], separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Export:
    """What the driver needs of a `netstock_exports` row."""

    id: int
    state: ExportState
    models: tuple[ModelEntry, ...]
    dataset_id: str | None = None
    start_attempted_at: str | None = None

    def with_model(self, index: int, entry: ModelEntry) -> Export:
        models = list(self.models)
        models[index] = entry
        return replace(self, models=tuple(models))


@dataclass(frozen=True, slots=True)
class FailedExport:
    """An export syncd recorded as failed, and when."""

    id: int
    finished_at: str


def _export(row: Mapping[str, Any]) -> Export:
    return Export(
        id=int(row["id"]),
        state=row["state"],
        models=tuple(
            ModelEntry(
                model=m["model"],
                rows=int(m["rows"]),
                state=m["state"],
                lines_sent=int(m["lines_sent"]),
                chunks=int(m["chunks"]),
            )
            for m in json.loads(row["models"])
        ),
        dataset_id=row["dataset_id"],
        start_attempted_at=row["start_attempted_at"],
    )


# -- reads ----------------------------------------------------------------------------------


def load_export(store: Store, export_id: int) -> Export:
    [row] = store.query("SELECT * FROM netstock_exports WHERE id = ?", [export_id])
    return _export(row)


def current_export(store: Store) -> Export | None:
    """The export still in flight (at most one: a new one is prepared only without it)."""
    found = store.scalar(
        "SELECT id FROM netstock_exports WHERE state IN ('prepared', 'importing', 'processing') "
        "ORDER BY id LIMIT 1"
    )
    return load_export(store, int(found)) if found is not None else None


def last_success_hash(store: Store) -> str | None:
    """The snapshot hash of the last export that completed: the one to diff against."""
    found: str | None = store.scalar(
        "SELECT snapshot_hash FROM netstock_exports WHERE state = 'complete' "
        "ORDER BY id DESC LIMIT 1"
    )
    return found


def failed_export(store: Store, dataset_id: str) -> FailedExport | None:
    """The export syncd failed with this Netstock dataset, if any."""
    rows = store.query(
        "SELECT id, finished_at FROM netstock_exports WHERE dataset_id = ? AND state = 'failed'",
        [dataset_id],
    )
    if not rows:
        return None
    return FailedExport(int(rows[0]["id"]), str(rows[0]["finished_at"]))


def frozen_rows(
    store: Store, export_id: int, model: str, first: int, end: int
) -> list[tuple[int, str]]:
    """The frozen rows of a model holding lines `first`..`end - 1`: (seq, newline-joined
    lines), in order; the first may begin before `first`."""
    cursor = store.db.conn.cursor()
    cursor.row_factory = None
    found: list[tuple[int, str]] = cursor.execute(
        "SELECT seq, row FROM netstock_export_rows WHERE export_id = ?1 AND model = ?2 "
        "AND seq >= (SELECT coalesce(max(seq), 0) FROM netstock_export_rows "
        "WHERE export_id = ?1 AND model = ?2 AND seq <= ?3) AND seq < ?4 ORDER BY seq",
        [export_id, model, first, end],
    ).fetchall()
    return found


# -- the frozen snapshot --------------------------------------------------------------------


class FrozenWriter:
    """Adds rendered rows to temp.netstock_frozen."""

    _INSERT: Final = "INSERT INTO temp.netstock_frozen (model, seq, row) VALUES (?, ?, ?)"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def add(self, model: str, seq: int, text: str) -> None:
        self._conn.execute(self._INSERT, (model, seq, text))


@contextmanager
def frozen_snapshot(store: Store) -> Iterator[FrozenWriter]:
    """A fresh temp.netstock_frozen, filled inside one read transaction (one consistent
    view of the host tables, no write lock on the state DB while rendering).

    The temp table lives as long as the run's connection (dropping it page by page would
    cost as much as writing it): closing the store discards it.
    """
    conn = store.db.conn
    conn.execute("DROP TABLE IF EXISTS temp.netstock_frozen")
    conn.execute(
        "CREATE TEMP TABLE netstock_frozen (model TEXT NOT NULL, seq INTEGER NOT NULL, "
        "row TEXT NOT NULL, PRIMARY KEY (model, seq))"
    )
    own = not conn.in_transaction  # a dry run reads inside the runner's transaction
    if own:
        conn.execute("BEGIN")
    try:
        yield FrozenWriter(conn)
    except BaseException:
        if own and conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    if own:
        conn.execute("COMMIT")


# -- changes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateExport:
    """A prepared export, with the rows frozen in temp.netstock_frozen on this connection."""

    snapshot_hash: str
    models: tuple[ModelEntry, ...]
    rows: int
    run_id: str | None
    at: str

    def apply(self, store: Store) -> None:
        cursor = store.db.execute(
            "INSERT INTO netstock_exports (state, snapshot_hash, models, rows, created_at, "
            "updated_at, run_id) VALUES ('prepared', ?, ?, ?, ?, ?, ?)",
            [
                self.snapshot_hash,
                models_json(self.models),
                self.rows,
                self.at,
                self.at,
                self.run_id,
            ],
        )
        store.db.execute(
            "INSERT INTO netstock_export_rows (export_id, model, seq, row) "
            "SELECT ?, model, seq, row FROM temp.netstock_frozen ORDER BY model, seq",
            [int(cursor.lastrowid or 0)],
        )


@dataclass(frozen=True)
class UpdateExport:
    """Columns of one export set (None: left as it is; `updated_at` is always `at`);
    `drop_frozen` deletes its frozen rows (the export is over)."""

    export_id: int
    at: str
    state: ExportState | None = None
    dataset_id: str | None = None
    models: tuple[ModelEntry, ...] | None = None
    start_attempted_at: str | None = None
    started_at: str | None = None
    processing_at: str | None = None
    finished_at: str | None = None
    status_text: str | None = None
    success: int | None = None
    message: str | None = None
    audit: str | None = None
    drop_frozen: bool = False

    def apply(self, store: Store) -> None:
        fields: dict[str, Any] = {
            "state": self.state,
            "dataset_id": self.dataset_id,
            "models": None if self.models is None else models_json(self.models),
            "start_attempted_at": self.start_attempted_at,
            "started_at": self.started_at,
            "processing_at": self.processing_at,
            "finished_at": self.finished_at,
            "status_text": self.status_text,
            "success": self.success,
            "message": self.message,
            "audit": self.audit,
        }
        fields = {k: v for k, v in fields.items() if v is not None} | {"updated_at": self.at}
        sets = ", ".join(f"{k} = ?" for k in fields)
        store.db.execute(
            f"UPDATE netstock_exports SET {sets} WHERE id = ?", [*fields.values(), self.export_id]
        )
        if self.drop_frozen:
            store.db.execute(
                "DELETE FROM netstock_export_rows WHERE export_id = ?", [self.export_id]
            )


@dataclass(frozen=True)
class AddChunk:
    """A chunk Netstock took (answered, or confirmed by its count)."""

    dataset_id: str
    model: str
    chunk_no: int
    rows: int
    first_seq: int
    sent_at: str
    how: ChunkHow

    def apply(self, store: Store) -> None:
        store.db.execute(
            "INSERT INTO netstock_export_chunks (dataset_id, model, chunk_no, rows, "
            "first_seq, sent_at, how) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                self.dataset_id,
                self.model,
                self.chunk_no,
                self.rows,
                self.first_seq,
                self.sent_at,
                self.how,
            ],
        )


@dataclass(frozen=True)
class DropExport:
    """An export Netstock opened nothing for: gone, with its frozen rows."""

    export_id: int

    def apply(self, store: Store) -> None:
        store.db.execute("DELETE FROM netstock_export_rows WHERE export_id = ?", [self.export_id])
        store.db.execute("DELETE FROM netstock_exports WHERE id = ?", [self.export_id])


__all__ = [
    "AddChunk",
    "ChunkHow",
    "CreateExport",
    "DropExport",
    "Export",
    "ExportState",
    "FailedExport",
    "FrozenWriter",
    "ModelEntry",
    "ModelPhase",
    "UpdateExport",
    "current_export",
    "failed_export",
    "frozen_rows",
    "frozen_snapshot",
    "last_success_hash",
    "load_export",
    "models_json",
]
