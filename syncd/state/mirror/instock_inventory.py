"""Owner of instock.inventory's tables: the only module that writes them.

- `instock_inventory`: Instock's stock per article as the last scans listed it (`scan`
  is the number of the scan that last listed the article; absent means zero).
- `instock_inventory_deltas`: per article, the quantities before the current scan first
  changed it and after; turned into host `inventory_deltas` files when the scan settles.
- `instock_stock_discrepancies`: the last reconciliation against host book stock.
- `temp.inventory_page` (per connection): one page of the list, staged so the mirror and
  the deltas are written by set-based statements, not row by row.
- `temp.discrepancies` (per connection): a reconciliation being compared with the last.

Writes are frozen `Change` values (see `syncd.state.plan`) applied inside the job's
transaction; the reads the job needs are functions here, so every statement on these
tables is in one file. A page is stored by three statements whatever its size
(`executemany` into the page table, then two INSERT ... SELECT).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from syncd.state.store import Store

# (article_id, free, reserved, registered): one listed record that passed its checks.
StockRow = tuple[str, int, int, int]


def open_page_table(store: Store) -> None:
    """Create this connection's page table (once per connection; a temp table is private)."""
    store.db.execute(
        "CREATE TEMP TABLE IF NOT EXISTS inventory_page ("
        "article_id TEXT PRIMARY KEY, free INTEGER, reserved INTEGER, registered INTEGER"
        ") WITHOUT ROWID"
    )


@dataclass(frozen=True)
class StorePage:
    """One page of the inventory list: its rows into the mirror (changed rows first into the
    deltas, keeping the values from before the scan touched them), and the articles whose
    records were bad marked as listed by this scan (not absent; their quantities unknown, so
    the mirror keeps its own). Needs `open_page_table` on this connection."""

    scan: int
    rows: Sequence[StockRow]
    listed_bad: Sequence[str]
    at: str

    def apply(self, store: Store) -> None:
        db = store.db
        db.execute("DELETE FROM temp.inventory_page")
        db.conn.executemany(
            "INSERT OR REPLACE INTO temp.inventory_page VALUES (?, ?, ?, ?)", self.rows
        )
        db.execute(
            """
            INSERT INTO instock_inventory_deltas
                (article_id, free_before, reserved_before, registered_before,
                 free, reserved, registered, scan)
            SELECT p.article_id, coalesce(m.free, 0), coalesce(m.reserved, 0),
                   coalesce(m.registered, 0), p.free, p.reserved, p.registered, ?
            FROM temp.inventory_page p LEFT JOIN instock_inventory m USING (article_id)
            WHERE m.article_id IS NULL OR m.free != p.free OR m.reserved != p.reserved
               OR m.registered != p.registered
            ON CONFLICT (article_id) DO UPDATE SET
                free = excluded.free, reserved = excluded.reserved,
                registered = excluded.registered
            """,
            [self.scan],
        )
        db.execute(
            """
            INSERT INTO instock_inventory (article_id, free, reserved, registered, scan, updated_at)
            SELECT article_id, free, reserved, registered, ?, ? FROM temp.inventory_page WHERE true
            ON CONFLICT (article_id) DO UPDATE SET
                free = excluded.free, reserved = excluded.reserved,
                registered = excluded.registered, scan = excluded.scan,
                updated_at = CASE WHEN instock_inventory.free != excluded.free
                    OR instock_inventory.reserved != excluded.reserved
                    OR instock_inventory.registered != excluded.registered
                    THEN excluded.updated_at ELSE instock_inventory.updated_at END
            """,
            [self.scan, self.at],
        )
        if self.listed_bad:
            marks = ",".join("?" * len(self.listed_bad))
            db.execute(
                f"UPDATE instock_inventory SET scan = ? WHERE article_id IN ({marks})",
                [self.scan, *self.listed_bad],
            )


def absent_counts(store: Store, scan: int) -> tuple[int, int]:
    """(mirror rows with stock, those of them that scan `scan` did not list)."""
    existing, absent = store.db.execute(
        "SELECT count(*), coalesce(sum(scan < ?), 0) FROM instock_inventory "
        "WHERE free != 0 OR reserved != 0 OR registered != 0",
        [scan],
    ).fetchone()
    return int(existing), int(absent)


@dataclass(frozen=True)
class ZeroAbsent:
    """Absent from the list means zero: rows scan `scan` did not list drop to zero, each with
    a delta. `allowed` False (a record without a usable article_id was rejected, so any
    article may have been listed) changes nothing."""

    scan: int
    at: str
    allowed: bool = True

    def apply(self, store: Store) -> None:
        store.db.execute(
            """
            INSERT INTO instock_inventory_deltas
                (article_id, free_before, reserved_before, registered_before,
                 free, reserved, registered, scan)
            SELECT article_id, free, reserved, registered, 0, 0, 0, ?
            FROM instock_inventory
            WHERE scan < ? AND (free != 0 OR reserved != 0 OR registered != 0) AND ?
            ON CONFLICT (article_id) DO UPDATE SET free = 0, reserved = 0, registered = 0
            """,
            [self.scan, self.scan, self.allowed],
        )
        store.db.execute(
            "UPDATE instock_inventory SET free = 0, reserved = 0, registered = 0, updated_at = ? "
            "WHERE scan < ? AND (free != 0 OR reserved != 0 OR registered != 0) AND ?",
            [self.at, self.scan, self.allowed],
        )


def delta_chunks(store: Store, chunk: int) -> Iterator[str]:
    """The deltas in article order, `chunk` at a time, each chunk a JSON array of the host
    file's rows rendered inside SQLite (one chunk in memory at a time)."""
    last = ""
    while True:
        rows_json, last_id = store.db.execute(
            """
            SELECT json_group_array(json_object(
                       'article_id', article_id, 'free_before', free_before, 'free', free,
                       'free_delta', free - free_before, 'reserved_before', reserved_before,
                       'reserved', reserved, 'registered_before', registered_before,
                       'registered', registered, 'on_hand', free + reserved)),
                   max(article_id)
            FROM (SELECT * FROM instock_inventory_deltas WHERE article_id > ?
                  ORDER BY article_id LIMIT ?)
            """,
            [last, chunk],
        ).fetchone()
        if last_id is None:
            return
        last = last_id
        yield str(rows_json)


def delta_count(store: Store) -> int:
    return int(store.scalar("SELECT count(*) FROM instock_inventory_deltas") or 0)


@dataclass(frozen=True)
class ClearDeltas:
    """The scan's deltas are in host file intents: start the next scan with none."""

    def apply(self, store: Store) -> None:
        store.db.execute("DELETE FROM instock_inventory_deltas")


# -- reconciliation against host book stock ------------------------------------


def host_stock_loaded(store: Store) -> bool:
    """Whether the host has delivered any book stock to compare with."""
    return bool(store.scalar("SELECT count(*) FROM host_stock"))


def compare_with_host(store: Store) -> tuple[bool, int]:
    """Host book stock (summed over locations) vs Instock on hand (free + reserved), into
    `temp.discrepancies`: (differs from the stored report, discrepancies found)."""
    store.db.execute("DROP TABLE IF EXISTS temp.discrepancies")
    store.db.execute(
        """
        CREATE TEMP TABLE discrepancies AS
        SELECT article_id, host_qty, instock_qty, instock_qty - host_qty AS difference FROM (
            SELECT h.article_id, h.qty AS host_qty,
                   coalesce(m.free + m.reserved, 0) AS instock_qty
            FROM (SELECT article_id, sum(qty) AS qty FROM host_stock GROUP BY article_id) h
            LEFT JOIN instock_inventory m USING (article_id)
            UNION ALL
            SELECT m.article_id, 0, m.free + m.reserved
            FROM instock_inventory m
            WHERE m.free + m.reserved != 0
              AND m.article_id NOT IN (SELECT article_id FROM host_stock)
        ) WHERE host_qty != instock_qty
        """
    )
    changed = store.scalar(
        """
        SELECT (SELECT count(*) FROM (
                    SELECT article_id, host_qty, instock_qty FROM temp.discrepancies
                    EXCEPT SELECT article_id, host_qty, instock_qty
                    FROM instock_stock_discrepancies))
             + (SELECT count(*) FROM (
                    SELECT article_id, host_qty, instock_qty FROM instock_stock_discrepancies
                    EXCEPT SELECT article_id, host_qty, instock_qty FROM temp.discrepancies))
        """
    )
    count = store.scalar("SELECT count(*) FROM temp.discrepancies")
    return bool(changed), int(count or 0)


@dataclass(frozen=True)
class StoreDiscrepancies:
    """The comparison `compare_with_host` left in `temp.discrepancies` becomes the report."""

    scan: int
    at: str

    def apply(self, store: Store) -> None:
        store.db.execute("DELETE FROM instock_stock_discrepancies")
        store.db.execute(
            "INSERT INTO instock_stock_discrepancies "
            "(article_id, host_qty, instock_qty, difference, scan, found_at) "
            "SELECT article_id, host_qty, instock_qty, difference, ?, ? FROM temp.discrepancies",
            [self.scan, self.at],
        )


def discrepancies(store: Store, after: str, limit: int) -> list[dict[str, Any]]:
    """The stored report's rows after article `after`, in article order."""
    return store.query(
        "SELECT article_id, host_qty, instock_qty, difference FROM instock_stock_discrepancies "
        "WHERE article_id > ? ORDER BY article_id LIMIT ?",
        [after, limit],
    )
