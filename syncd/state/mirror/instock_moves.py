"""Owner of instock.moves' tables: the only module that writes them.

- `instock_moves`: every Instock move journalled, once: its content key (`move_key`) and
  its occurrence among identical moves of a window (`UNIQUE (move_key, occurrence)`), the
  documented fields, the rest as `extra` JSON; `id` orders the host journal files.
- `temp.moves_window` (per connection): the moves of the window being pulled, in the order
  they came (`seq`), before they are journalled in one statement.

The job stages a window's pages here, then journals it in its transaction; the reads of
the journal are here too.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from syncd.state.store import Store

MOVE_FIELDS = (
    "article_id",
    "qty",
    "move_timestamp",
    "user_id",
    "order_id",
    "from_cell_id",
    "to_cell_id",
    "from_account_id",
    "to_account_id",
)
_COLS = ", ".join(MOVE_FIELDS)


def open_window(store: Store) -> None:
    """An empty `temp.moves_window` on this connection (created on first use)."""
    store.db.execute(
        "CREATE TEMP TABLE IF NOT EXISTS moves_window ("
        f"seq INTEGER PRIMARY KEY, move_key TEXT NOT NULL, {_COLS}, extra TEXT, "
        "request_id TEXT)"
    )
    store.db.execute("DELETE FROM temp.moves_window")


def stage_moves(store: Store, rows: Iterable[tuple[Any, ...]]) -> None:
    """One page's moves into the window, as (move_key, *MOVE_FIELDS, extra, request_id)
    tuples (the request id of the page they came in), in one `executemany`."""
    store.db.conn.executemany(
        f"INSERT INTO temp.moves_window (move_key, {_COLS}, extra, request_id) "
        "VALUES (" + ", ".join("?" * (len(MOVE_FIELDS) + 3)) + ")",
        rows,
    )


def journal_window(store: Store, at: str, run_id: str | None) -> tuple[int, int]:
    """Journal the window's moves the journal does not hold yet (a move's identity is its
    key and its occurrence number among identical moves of the window), oldest first;
    returns (the journal's last id before, moves added). Run it in the caller's transaction."""
    before = int(store.scalar("SELECT coalesce(max(id), 0) FROM instock_moves") or 0)
    store.db.execute(
        f"INSERT OR IGNORE INTO instock_moves (move_key, occurrence, {_COLS}, extra, "
        "pulled_at, run_id, request_id) "
        f"SELECT move_key, row_number() OVER (PARTITION BY move_key ORDER BY seq), {_COLS}, "
        "extra, ?, ?, request_id FROM temp.moves_window ORDER BY move_timestamp, seq",
        [at, run_id],
    )
    new = store.scalar("SELECT count(*) FROM instock_moves WHERE id > ?", [before])
    return before, int(new or 0)


def journalled_after(store: Store, after_id: int, limit: int) -> list[dict[str, Any]]:
    """Journalled moves with id > `after_id`, in id order: `id` and MOVE_FIELDS."""
    return store.query(
        f"SELECT id, {_COLS} FROM instock_moves WHERE id > ? ORDER BY id LIMIT ?",
        [after_id, limit],
    )


def held_occurrences(store: Store, keys: Iterable[str]) -> set[tuple[str, int]]:
    """Which (move_key, occurrence) of these keys the journal holds (its unique index)."""
    held: set[tuple[str, int]] = set()
    unique = sorted(set(keys))
    for start in range(0, len(unique), 500):
        chunk = unique[start : start + 500]
        held.update(
            (r["move_key"], r["occurrence"])
            for r in store.query(
                "SELECT move_key, occurrence FROM instock_moves WHERE move_key IN ("
                + ", ".join("?" * len(chunk))
                + ")",
                chunk,
            )
        )
    return held


def journal_moves(
    store: Store, rows: Iterable[tuple[Any, ...]], at: str, run_id: str | None
) -> tuple[int, int]:
    """Journal moves given with their occurrence, as (move_key, occurrence, *MOVE_FIELDS,
    extra, request_id) tuples in journal order; one the journal holds is ignored. Returns
    (the journal's last id before, moves added). Run it in the caller's transaction."""
    before = int(store.scalar("SELECT coalesce(max(id), 0) FROM instock_moves") or 0)
    store.db.conn.executemany(
        f"INSERT OR IGNORE INTO instock_moves (move_key, occurrence, {_COLS}, extra, request_id, "
        "pulled_at, run_id) VALUES (" + ", ".join("?" * (len(MOVE_FIELDS) + 6)) + ")",
        [(*row, at, run_id) for row in rows],
    )
    new = store.scalar("SELECT count(*) FROM instock_moves WHERE id > ?", [before])
    return before, int(new or 0)
