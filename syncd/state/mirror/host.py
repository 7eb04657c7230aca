"""The host tables: `host_files`, the journal of inbox files (written only here), and the
reads of the `host_*` data tables that are not one job's own.

The `host_*` data tables (`host_articles`, `host_stock`, `host_orders`, ...) are written
only by `syncd/host/feeds/merge.py`: each feed's stage and merge (`FEEDS`), run by
host.inbox (`syncd/host/inbox.py`) inside the transaction that records the file here. A
file is recorded `loaded` (with its row counts) or `rejected` (with the reason), once per
content (`sha256`), so a crash before the file is moved never loads it twice.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

from syncd.state.store import Store


def loaded_file(store: Store, feed: str, name: str, sha256: str) -> dict[str, Any] | None:
    """The `host_files` row of this file's content loaded before, or None."""
    rows = store.query(
        "SELECT * FROM host_files WHERE feed = ? AND name = ? AND sha256 = ? AND status = 'loaded'",
        [feed, name, sha256],
    )
    return rows[0] if rows else None


def newest_host_file(store: Store) -> tuple[int, str] | None:
    """(id, loaded_at) of the newest `host_files` row: it changes with every host file
    loaded or refused, so with every change of the host tables (an id reused after a
    purge comes with another time)."""
    rows = store.query("SELECT id, loaded_at FROM host_files ORDER BY id DESC LIMIT 1")
    return (rows[0]["id"], rows[0]["loaded_at"]) if rows else None


def record_loaded(
    store: Store,
    *,
    feed: str,
    name: str,
    sha256: str,
    size: int,
    fmt: str,
    mode: Literal["snapshot", "delta"],
    at: str,
    run_id: str | None,
) -> int | None:
    """Record the file as loaded (its counts follow with `set_counts`); returns the load
    id, or None when this content is recorded already. The first write of the load's
    transaction: from here on it holds the state DB's write lock."""
    cursor = store.db.execute(
        "INSERT INTO host_files (feed, name, sha256, size, format, mode, status, "
        "loaded_at, run_id) VALUES (?, ?, ?, ?, ?, ?, 'loaded', ?, ?) "
        "ON CONFLICT DO NOTHING",
        [feed, name, sha256, size, fmt, mode, at, run_id],
    )
    return int(cursor.lastrowid or 0) if cursor.rowcount else None


def set_counts(
    store: Store, load_id: int, *, loaded: int, rejected: int, changed: int, deleted: int
) -> None:
    """A loaded file's row counts: loaded, rejected, changed and deleted in its table."""
    store.db.execute(
        "UPDATE host_files SET rows_loaded = ?, rows_rejected = ?, rows_changed = ?, "
        "rows_deleted = ? WHERE id = ?",
        [loaded, rejected, changed, deleted, load_id],
    )


def record_refused(
    store: Store,
    *,
    feed: str,
    name: str,
    sha256: str,
    size: int,
    fmt: str,
    mode: str,
    reason: str,
    at: str,
    run_id: str | None,
) -> None:
    """Record a file refused whole, with the reason."""
    store.db.execute(
        "INSERT INTO host_files (feed, name, sha256, size, format, mode, status, reason, "
        "loaded_at, run_id) VALUES (?, ?, ?, ?, ?, ?, 'rejected', ?, ?, ?)",
        [feed, name, sha256, size, fmt, mode, reason, at, run_id],
    )


def host_tuples(
    store: Store, select: str, params: Mapping[str, Any] | None = None
) -> Iterator[tuple[Any, ...]]:
    """Stream a SELECT over the host tables as plain tuples (no dict per row: the Netstock
    model renderers read a row's columns by position, at C speed). Only a SELECT is run."""
    if not select.lstrip().upper().startswith("SELECT"):
        raise ValueError("host_tuples runs a SELECT only")
    cursor = store.db.conn.cursor()
    cursor.row_factory = None
    cursor.execute(select, params or {})
    return cursor
