"""Owner of `dsorder_orders` and `dsorder_lines`: the only module that writes them.

An order is stored when dsorder.pull first sees it (`held`, every line `rejected`, until
the plan made in the same transaction maps its lines), then moves on:
`held` -> `created` (its Instock create queued) -> `closing` (final totals and close
queued, by dsorder.progress or an operator's cancel) -> `closed` (the `dsorder`
destination saw the close done). A line keeps what syncd made of it (Instock line,
article, whole units, unit factor) and the last fulfilment total queued for it.

Every write is a frozen `Change` value (see `syncd.state.plan`): a planner returns it, a
test compares it, `apply` runs inside the caller's transaction. The reads are here too,
so every statement on these two tables is in this file. The host catalog as DSOrder's
orders need it (`host_catalog`, `catalog_version`) is read here too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from syncd.state.store import Store

OrderState = Literal["held", "created", "closing", "closed"]
Release = Literal["round", "partial", "cancel"]

# -- reads ----------------------------------------------------------------------


@dataclass(frozen=True)
class StoredOrder:
    """An order as stored, with what a plan needs of it (`shelf_life`: the latest
    `min_purchase_shelf_life` of its lines as DSOrder sent them, None when none has one)."""

    order_id: str
    instock_order_id: str | None
    state: OrderState
    store_id: str
    order_date: str
    delivery_date: str
    shelf_life: str | None = None


@dataclass(frozen=True)
class HeldOrder:
    order_id: str
    instock_order_id: str | None
    pulled_at: str
    hold_reason: str | None


@dataclass(frozen=True)
class StoredLine:
    line_number: int
    article_id: str
    quantity: str  # exact decimal text, as DSOrder sent it
    status: Literal["ok", "rejected"] = "rejected"
    instock_line_id: str | None = None
    instock_article_id: str | None = None
    instock_qty: int | None = None
    unit_factor: str | None = None
    reported_qty: str | None = None
    reported_finished: bool = False


@dataclass(frozen=True)
class FollowedOrder:
    """A `created` order for dsorder.progress, with the status of its Instock create."""

    order_id: str
    instock_order_id: str
    order_date: str
    sync_status: str | None  # instock_order_sync.status: queued, accepted, refused (None: none)
    moved_at: str | None = None  # newest Instock move seen for it (see `RecordMoves`)


def known_order_ids(store: Store) -> set[str]:
    return {r["order_id"] for r in store.query("SELECT order_id FROM dsorder_orders")}


def raw_hashes(store: Store) -> dict[str, str]:
    """Order id -> hash of its record as last listed (orders stored before hashes: none)."""
    return {
        r["order_id"]: r["raw_hash"]
        for r in store.query(
            "SELECT order_id, raw_hash FROM dsorder_orders WHERE raw_hash IS NOT NULL"
        )
    }


def held_orders(store: Store) -> list[HeldOrder]:
    return [
        HeldOrder(r["order_id"], r["instock_order_id"], r["pulled_at"], r["hold_reason"])
        for r in store.query(
            "SELECT order_id, instock_order_id, pulled_at, hold_reason FROM dsorder_orders "
            "WHERE state = 'held'"
        )
    ]


def get_order(store: Store, order_id: str) -> StoredOrder | None:
    rows = store.query(
        "SELECT order_id, instock_order_id, state, store_id, order_date, delivery_date, "
        "(SELECT max(json_extract(d.value, '$.min_purchase_shelf_life')) "
        " FROM json_each(raw, '$.details') d) AS shelf_life "
        "FROM dsorder_orders WHERE order_id = ?",
        [order_id],
    )
    return StoredOrder(**rows[0]) if rows else None


def order_lines(store: Store, order_id: str) -> list[StoredLine]:
    rows = store.query(
        "SELECT line_number, article_id, quantity, status, instock_line_id, instock_article_id, "
        "instock_qty, unit_factor, reported_qty, reported_finished FROM dsorder_lines "
        "WHERE order_id = ? ORDER BY line_number",
        [order_id],
    )
    return [StoredLine(**{**r, "reported_finished": bool(r["reported_finished"])}) for r in rows]


def lines_of_orders(store: Store, order_ids: Sequence[str]) -> dict[str, list[StoredLine]]:
    """`order_lines` of several orders in one query (every id asked for is a key)."""
    found: dict[str, list[StoredLine]] = {order_id: [] for order_id in order_ids}
    if not order_ids:
        return found
    marks = ", ".join("?" * len(order_ids))
    for r in store.query(
        "SELECT order_id, line_number, article_id, quantity, status, instock_line_id, "
        "instock_article_id, instock_qty, unit_factor, reported_qty, reported_finished "
        f"FROM dsorder_lines WHERE order_id IN ({marks}) ORDER BY order_id, line_number",
        list(order_ids),
    ):
        order_id = r.pop("order_id")
        r["reported_finished"] = bool(r["reported_finished"])
        found[order_id].append(StoredLine(**r))
    return found


def orders_to_follow(store: Store, limit: int) -> list[FollowedOrder]:
    """`created` orders, those whose Instock create was accepted first, polled longest ago
    first (a poll refreshes the Instock mirror row's updated_at; never polled sorts
    first): with more open orders than `limit`, every order gets its turn and queued
    creates take no one's place."""
    rows = store.query(
        "SELECT d.order_id, d.instock_order_id, d.order_date, s.status AS sync_status, "
        "d.moved_at FROM dsorder_orders d "
        "LEFT JOIN instock_order_sync s ON s.order_id = d.instock_order_id "
        "LEFT JOIN instock_orders m ON m.order_id = d.instock_order_id "
        "WHERE d.state = 'created' "
        "ORDER BY s.status IS NOT 'accepted', m.updated_at, d.updated_at, d.order_id LIMIT ?",
        [limit],
    )
    return [FollowedOrder(**r) for r in rows]


def moved_orders_due(store: Store, limit: int) -> list[FollowedOrder]:
    """`created` orders whose create was accepted and whose Instock order moved since it
    was last polled (`moved_at` past `polled_moved_at`), the oldest move first. Read
    through the partial index of just those (m0027), named: without statistics (syncd runs
    no ANALYZE) SQLite would read every open order by the `state` index instead."""
    rows = store.query(
        "SELECT d.order_id, d.instock_order_id, d.order_date, s.status AS sync_status, "
        "d.moved_at FROM dsorder_orders d INDEXED BY dsorder_orders_moved_due "
        "JOIN instock_order_sync s ON s.order_id = d.instock_order_id AND s.status = 'accepted' "
        "WHERE d.state = 'created' AND d.moved_at > coalesce(d.polled_moved_at, '') "
        "ORDER BY d.moved_at, d.order_id LIMIT ?",
        [limit],
    )
    return [FollowedOrder(**r) for r in rows]


def orders_to_sweep(store: Store, polled_before: str, limit: int) -> list[FollowedOrder]:
    """`created` orders whose create was accepted, last polled (never polled: last
    changed) before `polled_before`, the longest ago first, at most `limit`: the slow
    sweep for what shows no move (a cancellation, a stall). Read through the partial index
    of the open orders by last poll (m0027), named as in `moved_orders_due`."""
    rows = store.query(
        "SELECT d.order_id, d.instock_order_id, d.order_date, s.status AS sync_status, "
        "d.moved_at FROM dsorder_orders d INDEXED BY dsorder_orders_sweep_due "
        "JOIN instock_order_sync s ON s.order_id = d.instock_order_id AND s.status = 'accepted' "
        "WHERE d.state = 'created' AND coalesce(d.polled_at, d.updated_at) < ? "
        "ORDER BY coalesce(d.polled_at, d.updated_at), d.order_id LIMIT ?",
        [polled_before, limit],
    )
    return [FollowedOrder(**r) for r in rows]


def create_counts(store: Store) -> tuple[int, int]:
    """Of the `created` orders: (those whose Instock create was accepted, the ones the
    sweep takes turns over; those whose create was refused, each with its reject), in
    one read of the open orders."""
    row = store.query(
        "SELECT count(CASE WHEN s.status = 'accepted' THEN 1 END) AS accepted, "
        "count(CASE WHEN s.status = 'refused' THEN 1 END) AS refused "
        "FROM dsorder_orders d JOIN instock_order_sync s ON s.order_id = d.instock_order_id "
        "WHERE d.state = 'created'"
    )[0]
    return int(row["accepted"]), int(row["refused"])


@dataclass(frozen=True)
class CatalogRow:
    """A host catalog article as dsorder.pull reads it (host_articles, written by host.inbox)."""

    dsorder_article_id: str  # the article's id in DSOrder (its own id, or an attribute's value)
    article_id: str
    whole_units: bool
    serial_numbered: bool
    factor: object  # the unit conversion attribute's value as stored (None: absent)


def host_catalog(
    store: Store, article_attribute: str | None, conversion_attribute: str
) -> list[CatalogRow]:
    """The host catalog keyed by DSOrder's article id: the article's own id, or the value of
    `article_attribute` (articles without it are left out); `factor` is the value of
    `conversion_attribute` ("" reads none)."""
    # Attribute names are quoted in the JSON path: a name may hold dots or spaces.
    columns = (
        "article_id, whole_units, is_serial_numbered, "
        "json_extract(attributes, '$.\"' || ? || '\"') AS factor"
    )
    if article_attribute:
        rows = store.query(
            f"SELECT json_extract(attributes, '$.\"' || ? || '\"') AS ds_id, {columns} "
            "FROM host_articles WHERE ds_id IS NOT NULL",
            [article_attribute, conversion_attribute],
        )
    else:
        rows = store.query(
            f"SELECT article_id AS ds_id, {columns} FROM host_articles", [conversion_attribute]
        )
    return [
        CatalogRow(
            str(r["ds_id"]),
            r["article_id"],
            bool(r["whole_units"]),
            bool(r["is_serial_numbered"]),
            r["factor"],
        )
        for r in rows
    ]


def catalog_version(store: Store) -> str:
    """The id of the last host catalog file loaded ("0": none), so a change is noticed."""
    return str(
        store.scalar("SELECT coalesce(max(id), 0) FROM host_files WHERE feed = 'articles'") or 0
    )


# -- changes --------------------------------------------------------------------


@dataclass(frozen=True)
class NewLine:
    line_number: int
    article_id: str
    quantity: str  # exact decimal text


@dataclass(frozen=True)
class InsertOrder:
    """A newly pulled order with its lines: `held`, every line `rejected`, until the plan
    of the same transaction maps its lines (`MapLines`) and decides (`MarkCreated`,
    `HoldOrder`)."""

    order_id: str
    supplier_id: str
    store_id: str
    order_date: str
    delivery_date: str
    xdock_delivery_date: str | None
    supplier_schedule_title: str | None
    raw: str  # the order as DSOrder sent it (JSON)
    instock_order_id: str | None
    lines: tuple[NewLine, ...]
    at: str
    request_id: str | None = None  # DSOrder's, of the list answer: the order's lineage

    def apply(self, store: Store) -> None:
        store.db.execute(
            "INSERT INTO dsorder_orders (order_id, supplier_id, store_id, order_date, "
            "delivery_date, xdock_delivery_date, supplier_schedule_title, raw, instock_order_id, "
            "state, pulled_at, updated_at, request_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'held', ?, ?, ?)",
            [
                self.order_id,
                self.supplier_id,
                self.store_id,
                self.order_date,
                self.delivery_date,
                self.xdock_delivery_date,
                self.supplier_schedule_title,
                self.raw,
                self.instock_order_id,
                self.at,
                self.at,
                self.request_id,
            ],
        )
        store.db.conn.executemany(
            "INSERT INTO dsorder_lines (order_id, line_number, article_id, quantity, status) "
            "VALUES (?, ?, ?, ?, 'rejected')",
            [(self.order_id, ln.line_number, ln.article_id, ln.quantity) for ln in self.lines],
        )


@dataclass(frozen=True)
class LineMapping:
    """What a plan made of one line: sent to Instock (`ok`, with its Instock line, article,
    whole units and unit factor) or not (`reason`)."""

    line_number: int
    ok: bool
    reason: str | None = None
    instock_line_id: str | None = None
    instock_article_id: str | None = None
    instock_qty: int | None = None
    unit_factor: str | None = None


@dataclass(frozen=True)
class MapLines:
    order_id: str
    lines: tuple[LineMapping, ...]

    def apply(self, store: Store) -> None:
        store.db.conn.executemany(
            "UPDATE dsorder_lines SET status = ?, reason = ?, instock_line_id = ?, "
            "instock_article_id = ?, instock_qty = ?, unit_factor = ? "
            "WHERE order_id = ? AND line_number = ?",
            [
                (
                    "ok" if ln.ok else "rejected",
                    ln.reason,
                    ln.instock_line_id,
                    ln.instock_article_id,
                    ln.instock_qty,
                    ln.unit_factor,
                    self.order_id,
                    ln.line_number,
                )
                for ln in self.lines
            ],
        )


@dataclass(frozen=True)
class HoldOrder:
    """Kept back from Instock, saying why (an operator or a catalog change releases it)."""

    order_id: str
    reason: str
    at: str

    def apply(self, store: Store) -> None:
        store.db.execute(
            "UPDATE dsorder_orders SET state = 'held', hold_reason = ?, updated_at = ? "
            "WHERE order_id = ?",
            [self.reason, self.at, self.order_id],
        )


@dataclass(frozen=True)
class MarkCreated:
    """Its Instock create is queued; `note` names the lines sent without (policy partial)."""

    order_id: str
    note: str | None
    at: str

    def apply(self, store: Store) -> None:
        store.db.execute(
            "UPDATE dsorder_orders SET state = 'created', hold_reason = ?, updated_at = ? "
            "WHERE order_id = ?",
            [self.note, self.at, self.order_id],
        )


@dataclass(frozen=True)
class MarkClosing:
    """The final totals and the close are queued."""

    order_id: str
    at: str

    def apply(self, store: Store) -> None:
        store.db.execute(
            "UPDATE dsorder_orders SET state = 'closing', updated_at = ? WHERE order_id = ?",
            [self.at, self.order_id],
        )


@dataclass(frozen=True)
class MarkClosed:
    """DSOrder closed it (or answered "already closed")."""

    order_id: str
    at: str

    def apply(self, store: Store) -> None:
        store.db.execute(
            "UPDATE dsorder_orders SET state = 'closed', closed_at = ?, updated_at = ? "
            "WHERE order_id = ?",
            [self.at, self.at, self.order_id],
        )


@dataclass(frozen=True)
class MarkReleased:
    """How an operator released a held order (`syncd orders release`)."""

    order_id: str
    how: Release
    at: str

    def apply(self, store: Store) -> None:
        store.db.execute(
            "UPDATE dsorder_orders SET released_by = ?, updated_at = ? WHERE order_id = ?",
            [self.how, self.at, self.order_id],
        )


@dataclass(frozen=True)
class RecordRawHash:
    """The hash of the order's record as DSOrder listed it this time (see `raw_hashes`)."""

    order_id: str
    raw_hash: str

    def apply(self, store: Store) -> None:
        store.db.execute(
            "UPDATE dsorder_orders SET raw_hash = ? WHERE order_id = ?",
            [self.raw_hash, self.order_id],
        )


@dataclass(frozen=True)
class RecordMoves:
    """Instock orders seen moving: (Instock order id, newest move timestamp, UTC ISO text).
    `moved_at` only grows; orders that are not `created` (or not ours) are left alone."""

    moved: tuple[tuple[str, str], ...]

    def apply(self, store: Store) -> None:
        store.db.conn.executemany(
            "UPDATE dsorder_orders SET moved_at = ? WHERE instock_order_id = ? "
            "AND state = 'created' AND coalesce(moved_at, '') < ?",
            [(at, instock_id, at) for instock_id, at in self.moved],
        )


@dataclass(frozen=True)
class MarkPolled:
    """Orders just polled: (order id, its `moved_at` as it was when chosen for the poll),
    at `at`. A move recorded after that choice keeps the order due."""

    polled: tuple[tuple[str, str | None], ...]
    at: str

    def apply(self, store: Store) -> None:
        store.db.conn.executemany(
            "UPDATE dsorder_orders SET polled_at = ?, "
            "polled_moved_at = coalesce(?, polled_moved_at) WHERE order_id = ?",
            [(self.at, moved_at, order_id) for order_id, moved_at in self.polled],
        )


@dataclass(frozen=True)
class ReportedLine:
    line_number: int
    quantity: str  # the total queued for /fulfill, exact decimal text
    finished: bool


@dataclass(frozen=True)
class RecordReported:
    """The fulfilment totals just queued, so the next report sends only a difference."""

    order_id: str
    lines: tuple[ReportedLine, ...]

    def apply(self, store: Store) -> None:
        store.db.conn.executemany(
            "UPDATE dsorder_lines SET reported_qty = ?, reported_finished = ? "
            "WHERE order_id = ? AND line_number = ?",
            [(ln.quantity, int(ln.finished), self.order_id, ln.line_number) for ln in self.lines],
        )


__all__ = [
    "CatalogRow",
    "FollowedOrder",
    "HeldOrder",
    "HoldOrder",
    "InsertOrder",
    "LineMapping",
    "MapLines",
    "MarkClosed",
    "MarkClosing",
    "MarkCreated",
    "MarkPolled",
    "MarkReleased",
    "NewLine",
    "OrderState",
    "RecordMoves",
    "RecordRawHash",
    "RecordReported",
    "Release",
    "ReportedLine",
    "StoredLine",
    "StoredOrder",
    "catalog_version",
    "create_counts",
    "get_order",
    "held_orders",
    "host_catalog",
    "known_order_ids",
    "lines_of_orders",
    "moved_orders_due",
    "order_lines",
    "orders_to_follow",
    "orders_to_sweep",
    "raw_hashes",
]
