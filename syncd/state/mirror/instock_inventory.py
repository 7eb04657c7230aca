"""Owner of instock.inventory's tables: the only module that writes them.

- `instock_inventory`: Instock's stock per article as the last scans listed it (`scan`
  is the number of the scan that last listed the article; absent means zero).
- `instock_inventory_deltas`: per scan and article, the quantities before that scan first
  changed it and after. The scan in progress adds to its own; a settled scan's deltas are
  frozen and named, a range at a time, by host `inventory_deltas` file intents
  (`DeltaFile`), whose rows the host destination reads from here when it writes the file
  and releases (deletes) in the transaction that marks the file written.
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
                (scan, article_id, free_before, reserved_before, registered_before,
                 free, reserved, registered)
            SELECT ?, p.article_id, coalesce(m.free, 0), coalesce(m.reserved, 0),
                   coalesce(m.registered, 0), p.free, p.reserved, p.registered
            FROM temp.inventory_page p LEFT JOIN instock_inventory m USING (article_id)
            WHERE m.article_id IS NULL OR m.free != p.free OR m.reserved != p.reserved
               OR m.registered != p.registered
            ON CONFLICT (scan, article_id) DO UPDATE SET
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
                (scan, article_id, free_before, reserved_before, registered_before,
                 free, reserved, registered)
            SELECT ?, article_id, free, reserved, registered, 0, 0, 0
            FROM instock_inventory
            WHERE scan < ? AND (free != 0 OR reserved != 0 OR registered != 0) AND ?
            ON CONFLICT (scan, article_id) DO UPDATE SET free = 0, reserved = 0, registered = 0
            """,
            [self.scan, self.scan, self.allowed],
        )
        store.db.execute(
            "UPDATE instock_inventory SET free = 0, reserved = 0, registered = 0, updated_at = ? "
            "WHERE scan < ? AND (free != 0 OR reserved != 0 OR registered != 0) AND ?",
            [self.at, self.scan, self.allowed],
        )


DELTA_SOURCE = "instock_inventory_deltas"
"""The name a host file intent gives this table's rows by (`DeltaFile.source`)."""

# The host file's columns, in its order (CSV header, JSON key order).
_DELTA_ROW = """
    SELECT article_id, free_before, free, free - free_before AS free_delta, reserved_before,
           reserved, registered_before, registered, free + reserved AS on_hand
    FROM instock_inventory_deltas
    WHERE scan = ? AND article_id > ? AND article_id <= ?
    ORDER BY article_id
"""


@dataclass(frozen=True)
class DeltaFile:
    """One host file's share of a settled scan's deltas: those of scan `scan` with
    `after` < article_id <= `through` (`rows` of them), in article order. Frozen once the
    scan settled (the next scan's deltas go under its own number), so the file's bytes are
    the same however often it is rendered; released when the file is written."""

    scan: int
    after: str
    through: str
    rows: int

    def as_json(self) -> dict[str, Any]:
        return {
            "source": DELTA_SOURCE,
            "scan": self.scan,
            "after": self.after,
            "through": self.through,
            "rows": self.rows,
        }

    @classmethod
    def from_json(cls, data: Any) -> DeltaFile:
        """Raises ValueError when `data` is not what `as_json` wrote."""
        if not isinstance(data, dict) or data.get("source") != DELTA_SOURCE:
            raise ValueError(f"rows_from is not a range of {DELTA_SOURCE}")
        scan, after, through, rows = (data.get(k) for k in ("scan", "after", "through", "rows"))
        if not (
            type(scan) is int
            and type(rows) is int
            and isinstance(after, str)
            and isinstance(through, str)
        ):
            raise ValueError(f"rows_from {data!r}: scan, after, through, rows mistyped")
        return cls(scan, after, through, rows)


def delta_files(store: Store, scan: int, chunk: int) -> Iterator[DeltaFile]:
    """Scan `scan`'s deltas cut into files of `chunk` rows in article order: only the
    bounds are read (one pass over the keys), never the rows."""
    after = ""
    while True:
        through = store.scalar(
            "SELECT article_id FROM instock_inventory_deltas WHERE scan = ? AND article_id > ? "
            "ORDER BY article_id LIMIT 1 OFFSET ?",
            [scan, after, chunk - 1],
        )
        if through is not None:
            yield DeltaFile(scan, after, str(through), chunk)
            after = str(through)
            continue
        count, last = store.db.execute(
            "SELECT count(*), max(article_id) FROM instock_inventory_deltas "
            "WHERE scan = ? AND article_id > ?",
            [scan, after],
        ).fetchone()
        if count:
            yield DeltaFile(scan, after, str(last), int(count))
        return


def delta_file_rows(store: Store, part: DeltaFile) -> list[dict[str, Any]]:
    """The host file's rows of `part`. Raises ValueError when they are not all there (the
    file could no longer be written as it was planned)."""
    rows = store.query(_DELTA_ROW, [part.scan, part.after, part.through])
    if len(rows) != part.rows:
        raise ValueError(
            f"scan {part.scan}'s inventory deltas ({part.after!r}, {part.through!r}] hold "
            f"{len(rows)} rows, not the {part.rows} the file was planned with"
        )
    return rows


@dataclass(frozen=True)
class ReleaseDeltaFile:
    """The file of `part` is written: its deltas are no longer needed."""

    part: DeltaFile

    def apply(self, store: Store) -> None:
        store.db.execute(
            "DELETE FROM instock_inventory_deltas WHERE scan = ? AND article_id > ? "
            "AND article_id <= ?",
            [self.part.scan, self.part.after, self.part.through],
        )


def delta_count(store: Store, scan: int) -> int:
    """Deltas scan `scan` has recorded."""
    return int(
        store.scalar("SELECT count(*) FROM instock_inventory_deltas WHERE scan = ?", [scan]) or 0
    )


@dataclass(frozen=True)
class PruneDeltas:
    """Deltas of scans before `scan` that no host file intent still waiting to be written
    (pending, or rejected and so retriable) names: left by an intent an operator dropped."""

    scan: int

    def apply(self, store: Store) -> None:
        store.db.execute(
            """
            DELETE FROM instock_inventory_deltas
            WHERE scan < ? AND scan NOT IN (
                SELECT json_extract(payload, '$.rows_from.scan') FROM outbox
                WHERE destination = 'host' AND kind = 'file:inventory_deltas'
                  AND status IN ('pending', 'rejected')
                  AND json_extract(payload, '$.rows_from.scan') IS NOT NULL)
            """,
            [self.scan],
        )


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
