"""How each feed lands in its table: staging a file's accepted rows, then merging them
(snapshot: absent rows deleted, under the mass-deletion guard; delta: upserted), and
`FEEDS`, the one table of feeds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from sqlite_utils import Database

from syncd.clock import iso
from syncd.host.feeds.fields import Format, Mode, date_text, decimal_or_none
from syncd.host.feeds.rows import (
    ArticleRow,
    LocationRow,
    OrderCsvRow,
    OrderRecord,
    PoHistoryRow,
    PurchaseOrderCsvRow,
    PurchaseOrderRecord,
    SaleRow,
    StockRow,
    SupplierRow,
)
from syncd.jsontext import canonical_unicode, decimal_plain


@dataclass(frozen=True, slots=True)
class Accepted:
    """A valid row as staged: its file line, its model, and (for feeds that keep
    it, see `Feed.keeps_payload`) the row as read."""

    line: int
    row: Any
    payload: str | None = None


@dataclass(frozen=True)
class MergeContext:
    load_id: int
    file: str
    mode: Mode
    now: str = field(default_factory=iso)


STAGE_REJECTS = "temp.host_stage_rejects"


def create_stage_rejects(db: Database) -> None:
    """Rejected rows wait here until the file's transaction; `key1`/`key2` name the
    key the row was about (when readable), so a snapshot does not delete it."""
    drop_stage_rejects(db)
    db.execute(
        f"CREATE TABLE {STAGE_REJECTS} (line INTEGER NOT NULL, field TEXT, "
        "reason TEXT NOT NULL, payload TEXT, key1 TEXT, key2 TEXT NOT NULL DEFAULT '')"
    )
    db.execute("CREATE INDEX temp.host_stage_rejects_key ON host_stage_rejects (key1, key2)")


def drop_stage_rejects(db: Database) -> None:
    db.execute(f"DROP TABLE IF EXISTS {STAGE_REJECTS}")


def stage_rejects(db: Database, rows: Sequence[tuple[Any, ...]]) -> None:
    """Rejected rows as (line, field, reason, payload, key1, key2), in one `executemany`."""
    db.conn.executemany(
        f"INSERT INTO {STAGE_REJECTS} (line, field, reason, payload, key1, key2) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        rows,
    )


def staged_rejects(db: Database) -> Iterable[tuple[int, str | None, str, str | None]]:
    """The staged rejects as (line, field, reason, payload), in line order, streamed."""
    return db.execute(f"SELECT line, field, reason, payload FROM {STAGE_REJECTS} ORDER BY line")


def staged_reject_count(db: Database) -> int:
    return int(db.execute(f"SELECT count(*) FROM {STAGE_REJECTS}").fetchone()[0])


def staged_reject_sample(db: Database, limit: int) -> list[dict[str, Any]]:
    """The first `limit` staged rejects by line: line, field, reason."""
    cursor = db.execute(
        f"SELECT line, field, reason FROM {STAGE_REJECTS} ORDER BY line LIMIT {int(limit)}"
    )
    return [dict(zip(("line", "field", "reason"), row, strict=True)) for row in cursor]


class Feed:
    """A feed that lands in one table keyed by `key` (articles, stock).

    Files are parsed into TEMP staging tables first (private to the connection,
    so parsing never holds the state DB's write lock), then merged in one
    transaction: snapshot guard, upsert of changed rows, deletion of absent ones.
    """

    def __init__(
        self,
        name: str,
        *,
        table: str,
        key: tuple[str, ...],
        columns: tuple[str, ...],
        model: type[BaseModel],
        csv_required: Iterable[str],
        csv_optional: Iterable[str] = (),
        csv_nested: Mapping[str, tuple[str, str]] | None = None,
        csv_attributes: bool = False,
        default_mode: Mode = "snapshot",
    ) -> None:
        self.name = name
        self.table = table
        self.key = key
        self.columns = columns
        self.csv_model = model
        self.json_model = model
        self.csv_required = frozenset(csv_required)
        self.csv_optional = frozenset(csv_optional)
        self.csv_nested = dict(csv_nested or {})
        self.csv_attributes = csv_attributes
        self.default_mode: Mode = default_mode
        # Whether accepted rows keep their text while staged (orders may have to
        # reject a good row after the fact, when another row of its order is bad).
        self.keeps_payload = False

    @property
    def stage(self) -> str:
        return f"temp.host_stage_{self.name}"

    # -- CSV shape ------------------------------------------------------------

    def check_header(self, header: Sequence[str]) -> list[str]:
        """Problems with a CSV header (empty list: fine)."""
        problems = []
        seen: set[str] = set()
        for name in header:
            if name in seen:
                problems.append(f"column {name!r} appears twice")
            seen.add(name)
        missing = sorted(self.csv_required - seen)
        if missing:
            problems.append(f"missing required column(s): {', '.join(missing)}")
        known = self.csv_required | self.csv_optional | set(self.csv_nested)
        unknown = [
            n
            for n in header
            if n not in known and not (self.csv_attributes and n.startswith("attr.") and n[5:])
        ]
        if unknown:
            problems.append(
                f"unknown column(s): {', '.join(map(repr, unknown))} "
                f"(known: {', '.join(sorted(known))}"
                + (", attr.<name>" if self.csv_attributes else "")
                + ")"
            )
            if "" in unknown:
                problems.append("a column without a name: is there a ',' at the end of the header?")
            # Column names are matched exactly: say so where only the case differs.
            cased = [f"{n!r} -> {n.lower()!r}" for n in unknown if n.lower() in known]
            if cased:
                problems.append(
                    f"column names are lower case, matched exactly: rename {', '.join(cased)}"
                )
        return problems

    def csv_plan(self, header: Sequence[str]) -> list[tuple[int, str, str | None]]:
        """Where each column's value goes: (index, field, nested field or None)."""
        plan: list[tuple[int, str, str | None]] = []
        for index, name in enumerate(header):
            if name in self.csv_nested:
                plan.append((index, *self.csv_nested[name]))
            elif self.csv_attributes and name.startswith("attr."):
                plan.append((index, "attributes", name[5:]))
            else:
                plan.append((index, name, None))
        return plan

    def csv_field_name(self, loc: Sequence[Any]) -> str:
        """A validation error's location, named as the CSV column."""
        if len(loc) >= 2:
            for column, target in self.csv_nested.items():
                if target == (loc[0], loc[1]):
                    return column
            if loc[0] == "attributes":
                return f"attr.{loc[1]}"
        return ".".join(str(p) for p in loc)

    def raw_key(self, raw: Mapping[str, Any]) -> tuple[str, str] | None:
        """The key of a rejected row, when it can be read: it must not count as absent."""
        values = []
        for name in self.key:
            value = raw.get(name, "")
            if not isinstance(value, str | int):
                return None
            values.append(str(value).strip())
        if not values[0]:
            return None
        return values[0], values[1] if len(values) > 1 else ""

    # -- staging --------------------------------------------------------------

    @property
    def superseded(self) -> str:
        return f"temp.host_stage_{self.name}_superseded"

    def create_staging(self, db: Database) -> None:
        self.drop_staging(db)
        cols = ", ".join(self.columns)
        db.execute(
            f"CREATE TABLE {self.stage} ({cols}, line INTEGER NOT NULL, "
            f"PRIMARY KEY ({', '.join(self.key)}))"
        )
        # A key repeated within one file: its last row wins (stage_rows). An earlier row
        # with other values is not silently overwritten: it becomes a reject naming the
        # line that replaced it, so the file's lines stay accounted for.
        table = self.stage.removeprefix("temp.")
        old = ", ".join(f"OLD.{c}" for c in self.columns)
        new = ", ".join(f"NEW.{c}" for c in self.columns)
        named = " || ', ' || ".join(f"'{k} ' || quote(OLD.{k})" for k in self.key)
        payload = ", ".join(f"'{c}', OLD.{c}" for c in self.columns)
        key2 = f"OLD.{self.key[1]}" if len(self.key) > 1 else "''"
        db.execute(f"CREATE TABLE {self.superseded} (line INTEGER NOT NULL)")
        db.execute(
            f"CREATE TEMP TRIGGER {table}_on_repeat BEFORE UPDATE ON {table} "
            f"WHEN ({old}) IS NOT ({new}) BEGIN "
            f"INSERT INTO {self.superseded.removeprefix('temp.')} (line) VALUES (OLD.line); "
            f"INSERT INTO {STAGE_REJECTS.removeprefix('temp.')} "
            "(line, field, reason, payload, key1, key2) VALUES ("
            f"OLD.line, '{','.join(self.key)}', "
            f"'superseded by line ' || NEW.line || ': ' || {named} || ' appears again "
            "further down this file with other values; the last row of a key is the one "
            f"loaded', json_object({payload}), OLD.{self.key[0]}, {key2}); END"
        )

    def drop_staging(self, db: Database) -> None:
        db.execute(f"DROP TABLE IF EXISTS {self.stage}")
        db.execute(f"DROP TABLE IF EXISTS {self.superseded}")

    def stage_rows(self, db: Database, rows: Sequence[Accepted], fmt: Format) -> None:
        cols = ", ".join(self.columns)
        marks = ", ".join("?" for _ in self.columns)
        updates = ", ".join(f"{c} = excluded.{c}" for c in (*self.columns, "line"))
        # A key repeated within one file: its last row wins (an earlier one with other
        # values is rejected by the trigger made in create_staging).
        db.conn.executemany(
            f"INSERT INTO {self.stage} ({cols}, line) VALUES ({marks}, ?) "
            f"ON CONFLICT ({', '.join(self.key)}) DO UPDATE SET {updates}",
            [(*a.row.staging_values(), a.line) for a in rows],
        )

    def prepare(self, db: Database, ctx: MergeContext) -> int:
        """Move staged rows that must not load to the staged rejects; returns how many
        accepted rows that made (here: rows superseded by a later row of their key)."""
        return int(db.execute(f"SELECT count(*) FROM {self.superseded}").fetchone()[0])

    # -- merging ---------------------------------------------------------------

    def _absent(self, alias: str) -> str:
        """SQL: the host row `alias` is neither in the file nor named by a rejected row."""
        match = " AND ".join(f"s.{k} = {alias}.{k}" for k in self.key)
        key2 = f"{alias}.{self.key[1]}" if len(self.key) > 1 else "''"
        return (
            f"NOT EXISTS (SELECT 1 FROM {self.stage} s WHERE {match}) "
            f"AND NOT EXISTS (SELECT 1 FROM {STAGE_REJECTS} r "
            f"WHERE r.key1 = {alias}.{self.key[0]} AND r.key2 = {key2})"
        )

    def guard_counts(self, db: Database) -> tuple[int, int]:
        """(rows in the host table, rows a snapshot of the staged file would delete)."""
        existing = db.execute(f"SELECT count(*) FROM {self.table}").fetchone()[0]
        absent = db.execute(
            f"SELECT count(*) FROM {self.table} t WHERE {self._absent('t')}"
        ).fetchone()[0]
        return existing, absent

    def merge(self, db: Database, ctx: MergeContext) -> tuple[int, int]:
        """Apply the staged file to the host table; returns (changed, deleted)."""
        changed = self._upsert(db, self.table, self.stage, self.key, self.columns, ctx)
        deleted = 0
        if ctx.mode == "snapshot":
            deleted = db.execute(
                f"DELETE FROM {self.table} WHERE {self._absent(self.table)}"
            ).rowcount
        return changed, deleted

    @staticmethod
    def _upsert(
        db: Database,
        table: str,
        stage: str,
        key: tuple[str, ...],
        columns: tuple[str, ...],
        ctx: MergeContext,
    ) -> int:
        """Insert new rows and update changed ones; an unchanged row keeps its provenance."""
        data = [c for c in columns if c not in key]
        cols = ", ".join(columns)
        sets = ", ".join(
            f"{c} = excluded.{c}" for c in (*data, "file", "line", "load_id", "loaded_at")
        )
        differs = (
            f"({', '.join(f'{table}.{c}' for c in data)}) IS NOT "
            f"({', '.join(f'excluded.{c}' for c in data)})"
            if len(data) > 1
            else f"{table}.{data[0]} IS NOT excluded.{data[0]}"
        )
        return db.execute(
            f"INSERT INTO {table} ({cols}, file, line, load_id, loaded_at) "
            f"SELECT {cols}, ?, line, ?, ? FROM {stage} WHERE true "
            f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {sets} WHERE {differs}",
            [ctx.file, ctx.load_id, ctx.now],
        ).rowcount


class OrdersFeed(Feed):
    """Orders land in two tables and are applied whole: see the module docstring."""

    def __init__(self) -> None:
        super().__init__(
            "orders",
            table="host_orders",
            key=("order_id",),
            columns=("order_id", "placed_at", "attributes"),
            model=OrderRecord,
            csv_required=("action", "order_id"),
            csv_optional=("line_id", "article_id", "qty", "placed_at"),
            csv_attributes=True,
            default_mode="delta",
        )
        self.csv_model = OrderCsvRow
        self.keeps_payload = True

    lines_stage = "temp.host_stage_order_lines"
    recs_stage = "temp.host_stage_order_recs"
    # CSV rows that gave a line id their order already had in this file.
    repeats_stage = "temp.host_stage_order_line_repeats"

    def create_staging(self, db: Database) -> None:
        self.drop_staging(db)
        # The order as the file leaves it: last action, and (JSON Lines) the
        # record whose lines count.
        db.execute(
            f"CREATE TABLE {self.stage} (order_id TEXT PRIMARY KEY, action TEXT NOT NULL, "
            "placed_at TEXT, attributes TEXT NOT NULL, line INTEGER NOT NULL, lines_line INTEGER)"
        )
        db.execute(
            f"CREATE TABLE {self.lines_stage} (order_id TEXT NOT NULL, line_id TEXT NOT NULL, "
            "article_id TEXT NOT NULL, qty INTEGER NOT NULL, line INTEGER NOT NULL, "
            "PRIMARY KEY (order_id, line_id))"
        )
        # Every accepted record, so a held-back order can reject each of them.
        db.execute(
            f"CREATE TABLE {self.recs_stage} (line INTEGER PRIMARY KEY, order_id TEXT NOT NULL, "
            "payload TEXT)"
        )
        db.execute(
            "CREATE INDEX temp.host_stage_order_recs_order ON host_stage_order_recs (order_id)"
        )
        db.execute(
            f"CREATE TABLE {self.repeats_stage} (order_id TEXT NOT NULL, line_id TEXT NOT NULL, "
            "first_line INTEGER NOT NULL, line INTEGER NOT NULL)"
        )

    def drop_staging(self, db: Database) -> None:
        for table in (self.stage, self.lines_stage, self.recs_stage, self.repeats_stage):
            db.execute(f"DROP TABLE IF EXISTS {table}")

    def stage_rows(self, db: Database, rows: Sequence[Accepted], fmt: Format) -> None:
        orders: list[tuple[Any, ...]] = []
        lines: list[tuple[Any, ...]] = []
        recs: list[tuple[Any, ...]] = []
        for accepted in rows:
            row = accepted.row
            placed_at = None if row.placed_at is None else iso(row.placed_at)
            attributes = canonical_unicode(row.attributes)
            if isinstance(row, OrderRecord):
                lines_line = accepted.line if row.action == "create" else None
                orders.append(
                    (row.order_id, row.action, placed_at, attributes, accepted.line, lines_line)
                )
                if row.action == "create":
                    lines.extend(
                        (row.order_id, ln.line_id, ln.article_id, ln.qty, accepted.line)
                        for ln in row.lines
                    )
            else:
                orders.append(
                    (row.order_id, row.action, placed_at, attributes, accepted.line, None)
                )
                if row.action == "create":
                    lines.append(
                        (row.order_id, row.line_id, row.article_id, row.qty, accepted.line)
                    )
            recs.append((accepted.line, row.order_id, accepted.payload))
        db.conn.executemany(
            f"INSERT INTO {self.stage} (order_id, action, placed_at, attributes, line, lines_line) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (order_id) DO UPDATE SET "
            "action = excluded.action, line = excluded.line, "
            "placed_at = coalesce(excluded.placed_at, placed_at), "
            "attributes = CASE WHEN excluded.attributes <> '{}' THEN excluded.attributes "
            "ELSE attributes END, lines_line = coalesce(excluded.lines_line, lines_line)",
            orders,
        )
        if fmt == "csv":
            # A CSV order's lines are its create rows: a line id given twice is a conflict
            # (JSON Lines refuses it within a record); there a later record replaces lines.
            db.execute(
                "CREATE TEMP TRIGGER IF NOT EXISTS host_stage_order_lines_on_repeat "
                "BEFORE UPDATE ON host_stage_order_lines BEGIN "
                "INSERT INTO host_stage_order_line_repeats (order_id, line_id, first_line, line) "
                "VALUES (OLD.order_id, OLD.line_id, OLD.line, NEW.line); END"
            )
        db.conn.executemany(
            f"INSERT INTO {self.lines_stage} (order_id, line_id, article_id, qty, line) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (order_id, line_id) DO UPDATE SET "
            "article_id = excluded.article_id, qty = excluded.qty, line = excluded.line",
            lines,
        )
        db.conn.executemany(
            f"INSERT INTO {self.recs_stage} (line, order_id, payload) VALUES (?, ?, ?)", recs
        )

    def _reject_recs(self, db: Database, ctx: MergeContext, where: str, reason_sql: str) -> int:
        """Move the accepted records of the orders selected by `where` to the staged rejects."""
        moved = db.execute(
            f"INSERT INTO {STAGE_REJECTS} (line, field, reason, payload, key1, key2) "
            f"SELECT r.line, NULL, {reason_sql}, r.payload, r.order_id, '' "
            f"FROM {self.recs_stage} r JOIN {self.stage} o USING (order_id) WHERE {where}",
            {"file": ctx.file},
        ).rowcount
        for table in (self.recs_stage, self.lines_stage, self.stage):
            db.execute(
                f"DELETE FROM {table} WHERE order_id IN "
                f"(SELECT o.order_id FROM {self.stage} o WHERE {where})"
            )
        return moved

    def prepare(self, db: Database, ctx: MergeContext) -> int:
        # CSV: a row repeating a line id of its order is rejected (which one is meant?),
        # which holds the whole order back below. JSON Lines: a later record of an
        # order replaces the lines of an earlier one.
        repeated = _settle_repeated_lines(
            db, self, parent_key="order_id", line_key="line_id", noun="order"
        )
        # The first rejected row of the order (held-back rows are only ever added
        # for orders that already have one, so they never change the answer).
        bad = f"(SELECT min(b.line) FROM {STAGE_REJECTS} b WHERE b.key1 = o.order_id)"
        # A cancel applies even when another row of that order was bad; its lines do not.
        db.execute(
            f"DELETE FROM {self.lines_stage} WHERE order_id IN (SELECT o.order_id FROM "
            f"{self.stage} o WHERE o.action = 'cancel' AND {bad} IS NOT NULL)"
        )
        # An order with a rejected row would load incomplete: hold all of it back.
        moved = self._reject_recs(
            db,
            ctx,
            f"o.action = 'create' AND {bad} IS NOT NULL",
            "'order ' || o.order_id || ' held back: its row at ' || :file || ':' || "
            f"{bad} || ' was rejected, and an order is loaded whole or not at all'",
        )
        # A cancelled order is never re-opened.
        moved += self._reject_recs(
            db,
            ctx,
            "o.action = 'create' AND EXISTS (SELECT 1 FROM host_orders h "
            "WHERE h.order_id = o.order_id AND h.status = 'cancelled')",
            "'order ' || o.order_id || ' was cancelled (' || (SELECT h.file || ':' || h.line "
            "FROM host_orders h WHERE h.order_id = o.order_id) || '); a cancelled order "
            "is not re-opened: use a new order id'",
        )
        return repeated + moved

    def merge(self, db: Database, ctx: MergeContext) -> tuple[int, int]:
        params = {"file": ctx.file, "load_id": ctx.load_id, "now": ctx.now}
        changed = 0
        # Cancellations: the order keeps its lines for the record.
        changed += db.execute(
            "INSERT INTO host_orders (order_id, status, placed_at, attributes, cancelled_at, "
            "file, line, load_id, loaded_at) "
            f"SELECT order_id, 'cancelled', placed_at, attributes, :now, :file, line, :load_id, :now "
            f"FROM {self.stage} WHERE action = 'cancel' "
            "ON CONFLICT (order_id) DO UPDATE SET status = 'cancelled', "
            "cancelled_at = excluded.cancelled_at, file = excluded.file, line = excluded.line, "
            "load_id = excluded.load_id, loaded_at = excluded.loaded_at "
            "WHERE host_orders.status <> 'cancelled'",
            params,
        ).rowcount
        # Creates: the order as the file states it (prepare() left no cancelled ones).
        changed += db.execute(
            "INSERT INTO host_orders (order_id, status, placed_at, attributes, file, line, "
            f"load_id, loaded_at) SELECT order_id, 'open', placed_at, attributes, :file, line, "
            f":load_id, :now FROM {self.stage} WHERE action = 'create' "
            "ON CONFLICT (order_id) DO UPDATE SET placed_at = excluded.placed_at, "
            "attributes = excluded.attributes, file = excluded.file, line = excluded.line, "
            "load_id = excluded.load_id, loaded_at = excluded.loaded_at "
            "WHERE (host_orders.placed_at, host_orders.attributes) IS NOT "
            "(excluded.placed_at, excluded.attributes)",
            params,
        ).rowcount
        # Lines: an order the file gives lines for has exactly those lines.
        touched = "temp.host_stage_order_touched"
        db.execute(f"DROP TABLE IF EXISTS {touched}")
        db.execute(f"CREATE TABLE {touched} (order_id TEXT PRIMARY KEY)")
        try:
            gone = (
                f"order_id IN (SELECT order_id FROM {self.lines_stage}) AND NOT EXISTS "
                f"(SELECT 1 FROM {self.lines_stage} s WHERE s.order_id = host_order_lines.order_id "
                "AND s.line_id = host_order_lines.line_id)"
            )
            db.execute(
                f"INSERT OR IGNORE INTO {touched} SELECT order_id FROM host_order_lines WHERE {gone}"
            )
            changed += db.execute(f"DELETE FROM host_order_lines WHERE {gone}").rowcount
            changed += self._upsert(
                db,
                "host_order_lines",
                self.lines_stage,
                ("order_id", "line_id"),
                ("order_id", "line_id", "article_id", "qty"),
                ctx,
            )
            db.execute(
                f"INSERT OR IGNORE INTO {touched} SELECT order_id FROM host_order_lines "
                "WHERE load_id = :load_id",
                params,
            )
            # An order whose lines changed points at this file too (no UPDATE ... FROM:
            # it needs SQLite 3.33, older distributions ship less).
            db.execute(
                "UPDATE host_orders SET file = :file, load_id = :load_id, loaded_at = :now, "
                f"line = (SELECT s.line FROM {self.stage} s WHERE s.order_id = host_orders.order_id) "
                f"WHERE load_id <> :load_id AND order_id IN (SELECT order_id FROM {touched}) "
                f"AND order_id IN (SELECT order_id FROM {self.stage})",
                params,
            )
        finally:
            db.execute(f"DROP TABLE IF EXISTS {touched}")
        deleted = 0
        if ctx.mode == "snapshot":
            # Lines go with their order (ON DELETE CASCADE).
            deleted = db.execute(
                f"DELETE FROM host_orders WHERE {self._absent('host_orders')}"
            ).rowcount
        return changed, deleted


_PO_HEADER = ("supplier_id", "location", "order_date", "status", "currency")
_PO_LINE = ("line_no", "article_id", "qty_ordered", "qty_received", "unit_cost", "expected_date")


class PurchaseOrdersFeed(Feed):
    """Open purchase orders: a header table and a lines table, each PO applied whole.

    Like orders: a PO with a rejected row is held back whole (its previous version
    stays); the PO's lines become exactly the lines the file gives it. In CSV the
    header columns must be the same on every row of a PO (else all its rows are
    rejected, naming the columns that differ); in JSON Lines a later record of a PO
    replaces an earlier one.
    """

    def __init__(self) -> None:
        super().__init__(
            "purchase_orders",
            table="host_purchase_orders",
            key=("po_number",),
            columns=("po_number", *_PO_HEADER),
            model=PurchaseOrderRecord,
            csv_required=(
                "po_number",
                "supplier_id",
                "order_date",
                "line_no",
                "article_id",
                "qty_ordered",
            ),
            csv_optional=(
                "location",
                "status",
                "currency",
                "qty_received",
                "unit_cost",
                "expected_date",
            ),
        )
        self.csv_model = PurchaseOrderCsvRow
        self.keeps_payload = True

    lines_stage = "temp.host_stage_po_lines"
    recs_stage = "temp.host_stage_po_recs"
    # CSV rows that gave a line number their PO already had in this file.
    repeats_stage = "temp.host_stage_po_line_repeats"

    def create_staging(self, db: Database) -> None:
        self.drop_staging(db)
        header = ", ".join(_PO_HEADER)
        # The PO as the file leaves it; lines_line: the JSON Lines record whose lines count.
        db.execute(
            f"CREATE TABLE {self.stage} (po_number TEXT PRIMARY KEY, {header}, "
            "line INTEGER NOT NULL, lines_line INTEGER)"
        )
        db.execute(
            f"CREATE TABLE {self.lines_stage} (po_number TEXT NOT NULL, {', '.join(_PO_LINE)}, "
            "line INTEGER NOT NULL, PRIMARY KEY (po_number, line_no))"
        )
        # Every accepted record with the header it states: CSV rows of a PO must agree,
        # and a held-back PO rejects each of its rows.
        db.execute(
            f"CREATE TABLE {self.recs_stage} (line INTEGER PRIMARY KEY, po_number TEXT NOT NULL, "
            f"{header}, csv INTEGER NOT NULL, payload TEXT)"
        )
        db.execute("CREATE INDEX temp.host_stage_po_recs_po ON host_stage_po_recs (po_number)")
        db.execute(
            f"CREATE TABLE {self.repeats_stage} (po_number TEXT NOT NULL, line_no TEXT NOT NULL, "
            "first_line INTEGER NOT NULL, line INTEGER NOT NULL)"
        )

    def drop_staging(self, db: Database) -> None:
        for table in (self.stage, self.lines_stage, self.recs_stage, self.repeats_stage):
            db.execute(f"DROP TABLE IF EXISTS {table}")

    def stage_rows(self, db: Database, rows: Sequence[Accepted], fmt: Format) -> None:
        headers: list[tuple[Any, ...]] = []
        lines: list[tuple[Any, ...]] = []
        recs: list[tuple[Any, ...]] = []
        for accepted in rows:
            row = accepted.row
            header = (
                row.supplier_id,
                row.location,
                row.order_date.isoformat(),
                row.status,
                row.currency,
            )
            if isinstance(row, PurchaseOrderRecord):
                headers.append((row.po_number, *header, accepted.line, accepted.line))
                po_lines: list[Any] = row.lines
                default_date = row.expected_date
            else:
                headers.append((row.po_number, *header, accepted.line, None))
                po_lines = [row]
                default_date = None
            lines.extend(
                (
                    row.po_number,
                    ln.line_no,
                    ln.article_id,
                    decimal_plain(ln.qty_ordered),
                    decimal_plain(ln.qty_received),
                    decimal_or_none(ln.unit_cost),
                    date_text(ln.expected_date or default_date),
                    accepted.line,
                )
                for ln in po_lines
            )
            recs.append(
                (
                    accepted.line,
                    row.po_number,
                    *header,
                    int(not isinstance(row, PurchaseOrderRecord)),
                    accepted.payload,
                )
            )
        cols = ", ".join(_PO_HEADER)
        sets = ", ".join(f"{c} = excluded.{c}" for c in (*_PO_HEADER, "line"))
        db.conn.executemany(
            f"INSERT INTO {self.stage} (po_number, {cols}, line, lines_line) "
            f"VALUES ({', '.join('?' * (len(_PO_HEADER) + 3))}) "
            f"ON CONFLICT (po_number) DO UPDATE SET {sets}, "
            "lines_line = coalesce(excluded.lines_line, lines_line)",
            headers,
        )
        line_sets = ", ".join(f"{c} = excluded.{c}" for c in (*_PO_LINE[1:], "line"))
        if fmt == "csv":
            # A CSV PO's lines are its rows: a line number given twice is a conflict
            # (JSON Lines refuses it within a record); there a later record replaces lines.
            db.execute(
                "CREATE TEMP TRIGGER IF NOT EXISTS host_stage_po_lines_on_repeat "
                "BEFORE UPDATE ON host_stage_po_lines BEGIN "
                "INSERT INTO host_stage_po_line_repeats (po_number, line_no, first_line, line) "
                "VALUES (OLD.po_number, OLD.line_no, OLD.line, NEW.line); END"
            )
        db.conn.executemany(
            f"INSERT INTO {self.lines_stage} (po_number, {', '.join(_PO_LINE)}, line) "
            f"VALUES ({', '.join('?' * (len(_PO_LINE) + 2))}) "
            f"ON CONFLICT (po_number, line_no) DO UPDATE SET {line_sets}",
            lines,
        )
        db.conn.executemany(
            f"INSERT INTO {self.recs_stage} (line, po_number, {cols}, csv, payload) "
            f"VALUES ({', '.join('?' * (len(_PO_HEADER) + 4))})",
            recs,
        )

    def _reject_recs(
        self,
        db: Database,
        ctx: MergeContext,
        where: str,
        reason_sql: str,
        field_sql: str = "NULL",
    ) -> int:
        """Move the accepted records of the POs selected by `where` (alias `o`) to the
        staged rejects, and drop those POs from staging."""
        selected = "temp.host_stage_po_selected"
        db.execute(f"DROP TABLE IF EXISTS {selected}")
        # Selected first: `where` may read the staging tables this empties.
        db.execute(
            f"CREATE TABLE {selected} AS SELECT o.po_number, {field_sql} AS field, "
            f"{reason_sql} AS reason FROM {self.stage} o WHERE {where}",
            {"file": ctx.file},
        )
        try:
            moved = db.execute(
                f"INSERT INTO {STAGE_REJECTS} (line, field, reason, payload, key1, key2) "
                f"SELECT r.line, x.field, x.reason, r.payload, r.po_number, '' "
                f"FROM {self.recs_stage} r JOIN {selected} x USING (po_number)"
            ).rowcount
            for table in (self.recs_stage, self.lines_stage, self.stage):
                db.execute(
                    f"DELETE FROM {table} WHERE po_number IN (SELECT po_number FROM {selected})"
                )
        finally:
            db.execute(f"DROP TABLE IF EXISTS {selected}")
        return moved

    def prepare(self, db: Database, ctx: MergeContext) -> int:
        # CSV: a row repeating a line number of its PO is rejected (which one is meant?),
        # which holds the whole PO back below. JSON Lines: a later record of a PO
        # replaces the lines of an earlier one.
        repeated = _settle_repeated_lines(
            db, self, parent_key="po_number", line_key="line_no", noun="purchase order"
        )
        # CSV: every row of a PO states the same header.
        differs = " || ".join(
            f"CASE WHEN (SELECT count(DISTINCT coalesce(r.{c}, '')) FROM {self.recs_stage} r "
            f"WHERE r.po_number = o.po_number AND r.csv = 1) > 1 THEN ',{c}' ELSE '' END"
            for c in _PO_HEADER
        )
        fields = f"substr({differs}, 2)"
        moved = self._reject_recs(
            db,
            ctx,
            f"{fields} <> ''",
            f"'purchase order ' || o.po_number || ': its rows disagree on ' || "
            f"replace({fields}, ',', ', ') || '; every row of a purchase order must repeat "
            "the same header, so none of its rows were loaded'",
            fields,
        )
        # A PO with a rejected row would load incomplete: hold all of it back.
        bad = f"(SELECT min(b.line) FROM {STAGE_REJECTS} b WHERE b.key1 = o.po_number)"
        moved += self._reject_recs(
            db,
            ctx,
            f"{bad} IS NOT NULL",
            "'purchase order ' || o.po_number || ' held back: its row at ' || :file || ':' || "
            f"{bad} || ' was rejected, and a purchase order is loaded whole or not at all'",
        )
        return repeated + moved

    def merge(self, db: Database, ctx: MergeContext) -> tuple[int, int]:
        changed = self._upsert(db, self.table, self.stage, self.key, self.columns, ctx)
        changed += _replace_children(
            db,
            ctx,
            parent=self.table,
            parent_stage=self.stage,
            parent_key="po_number",
            child="host_purchase_order_lines",
            child_stage=self.lines_stage,
            child_key="line_no",
            child_columns=_PO_LINE,
        )
        deleted = 0
        if ctx.mode == "snapshot":
            # A PO absent from the snapshot is no longer open; its lines go with it.
            deleted = db.execute(
                f"DELETE FROM {self.table} WHERE {self._absent(self.table)}"
            ).rowcount
        return changed, deleted


def _settle_repeated_lines(
    db: Database,
    feed: OrdersFeed | PurchaseOrdersFeed,
    *,
    parent_key: str,
    line_key: str,
    noun: str,
) -> int:
    """Reject each CSV row that repeats a line of its parent in this file (the parent is
    then held back whole), and keep only the lines of a parent's last JSON Lines
    record. Returns the rows rejected."""
    repeated = db.execute(
        f"INSERT INTO {STAGE_REJECTS} (line, field, reason, payload, key1, key2) "
        f"SELECT r.line, '{line_key}', '{line_key} ' || quote(p.{line_key}) || "
        f"' of {noun} ' || p.{parent_key} || ' is given again (first on line ' || "
        "p.first_line || '): which row is meant?', r.payload, "
        f"r.{parent_key}, '' FROM {feed.repeats_stage} p "
        f"JOIN {feed.recs_stage} r ON r.line = p.line"
    ).rowcount
    db.execute(
        f"DELETE FROM {feed.recs_stage} WHERE line IN (SELECT line FROM {feed.repeats_stage})"
    )
    db.execute(
        f"DELETE FROM {feed.lines_stage} WHERE line <> (SELECT o.lines_line FROM "
        f"{feed.stage} o WHERE o.{parent_key} = {feed.lines_stage}.{parent_key})"
    )
    return repeated


def _replace_children(
    db: Database,
    ctx: MergeContext,
    *,
    parent: str,
    parent_stage: str,
    parent_key: str,
    child: str,
    child_stage: str,
    child_key: str,
    child_columns: tuple[str, ...],
) -> int:
    """Give every staged parent exactly its staged children (changed ones updated,
    missing ones deleted, unchanged ones keeping their provenance); a parent whose
    children changed points at this file too. Returns the child rows changed."""
    params = {"file": ctx.file, "load_id": ctx.load_id, "now": ctx.now}
    gone = (
        f"{parent_key} IN (SELECT {parent_key} FROM {parent_stage}) AND NOT EXISTS "
        f"(SELECT 1 FROM {child_stage} s WHERE s.{parent_key} = {child}.{parent_key} "
        f"AND s.{child_key} = {child}.{child_key})"
    )
    touched = f"temp.host_stage_{child}_touched"
    db.execute(f"DROP TABLE IF EXISTS {touched}")
    db.execute(f"CREATE TABLE {touched} ({parent_key} TEXT PRIMARY KEY)")
    try:
        db.execute(f"INSERT OR IGNORE INTO {touched} SELECT {parent_key} FROM {child} WHERE {gone}")
        changed = db.execute(f"DELETE FROM {child} WHERE {gone}").rowcount
        changed += Feed._upsert(
            db, child, child_stage, (parent_key, child_key), (parent_key, *child_columns), ctx
        )
        db.execute(
            f"INSERT OR IGNORE INTO {touched} SELECT {parent_key} FROM {child} "
            "WHERE load_id = :load_id",
            params,
        )
        # (No UPDATE ... FROM: it needs SQLite 3.33, older distributions ship less.)
        db.execute(
            f"UPDATE {parent} SET file = :file, load_id = :load_id, loaded_at = :now, "
            f"line = (SELECT s.line FROM {parent_stage} s "
            f"WHERE s.{parent_key} = {parent}.{parent_key}) "
            f"WHERE load_id <> :load_id AND {parent_key} IN (SELECT {parent_key} FROM {touched})",
            params,
        )
    finally:
        db.execute(f"DROP TABLE IF EXISTS {touched}")
    return changed


FEEDS: dict[str, Feed] = {
    "articles": Feed(
        "articles",
        table="host_articles",
        key=("article_id",),
        columns=(
            "article_id",
            "name",
            "description",
            "unit",
            "whole_units",
            "is_serial_numbered",
            "dim_x",
            "dim_y",
            "dim_z",
            "dim_uom",
            "attributes",
        ),
        model=ArticleRow,
        csv_required=("article_id", "name"),
        csv_optional=("description", "unit", "whole_units", "is_serial_numbered"),
        csv_nested={
            "dim_x": ("dimensions", "x"),
            "dim_y": ("dimensions", "y"),
            "dim_z": ("dimensions", "z"),
            "dim_uom": ("dimensions", "uom"),
        },
        csv_attributes=True,
    ),
    "stock": Feed(
        "stock",
        table="host_stock",
        key=("article_id", "location"),
        columns=("article_id", "location", "qty", "reorder_point", "qty_reserved"),
        model=StockRow,
        csv_required=("article_id", "qty"),
        csv_optional=("location", "reorder_point", "qty_reserved"),
    ),
    "orders": OrdersFeed(),
    "locations": Feed(
        "locations",
        table="host_locations",
        key=("location_id",),
        columns=("location_id", "name", "type", "location_group", "active"),
        model=LocationRow,
        csv_required=("location_id", "name"),
        csv_optional=("type", "location_group", "active"),
    ),
    "suppliers": Feed(
        "suppliers",
        table="host_suppliers",
        key=("supplier_id",),
        columns=(
            "supplier_id",
            "name",
            "type",
            "lead_time_days",
            "currency",
            "contact_name",
            "contact_email",
            "contact_phone",
        ),
        model=SupplierRow,
        csv_required=("supplier_id", "name"),
        csv_optional=(
            "type",
            "lead_time_days",
            "currency",
            "contact_name",
            "contact_email",
            "contact_phone",
        ),
    ),
    "sales": Feed(
        "sales",
        table="host_sales",
        key=("transaction_id", "line_id"),
        columns=(
            "transaction_id",
            "line_id",
            "sale_date",
            "order_date",
            "article_id",
            "location",
            "customer_id",
            "qty",
            "sales_value",
            "cost_of_sales",
            "channel",
        ),
        model=SaleRow,
        csv_required=("transaction_id", "sale_date", "article_id", "qty"),
        csv_optional=(
            "line_id",
            "order_date",
            "location",
            "customer_id",
            "sales_value",
            "cost_of_sales",
            "channel",
        ),
        default_mode="delta",
    ),
    "purchase_orders": PurchaseOrdersFeed(),
    "po_history": Feed(
        "po_history",
        table="host_po_history",
        key=("po_number", "line_no"),
        columns=(
            "po_number",
            "line_no",
            "article_id",
            "supplier_id",
            "location",
            "order_date",
            "expected_date",
            "receipt_date",
            "qty_ordered",
            "qty_received",
            "unit_cost",
        ),
        model=PoHistoryRow,
        csv_required=(
            "po_number",
            "line_no",
            "article_id",
            "supplier_id",
            "order_date",
            "qty_ordered",
            "qty_received",
        ),
        csv_optional=("location", "expected_date", "receipt_date", "unit_cost"),
        default_mode="delta",
    ),
}
