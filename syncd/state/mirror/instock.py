"""Owner of the Instock mirror tables: the only module that writes them.

- `instock_article_sync`: per host article, the content last queued (`host_hash`), the
  content Instock last accepted (`accepted_hash`) and the push status; written by
  instock.articles (marks, bootstrap, retry) and the `instock` destination (outcomes).
- `instock_order_sync`: per order syncd pushes (source `host` or `dsorder`), the last
  action queued, its status and refusal reason; written by instock.orders, dsorder.pull
  (the create of a DSOrder order) and the `instock` destination (outcomes).
- `instock_orders`, `instock_ordertasks`, `instock_order_events`: the orders list, what
  each poll read, and the status changes waiting for the host file; written by
  instock.orders and the following of orders (`syncd.jobs.shared.instock_follow`).

Every write is a frozen `Change` value (see `syncd.state.plan`) a planner can return and
a test can compare; `apply` runs inside the caller's transaction. The reads are here too,
so the statements on these tables are in one file.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from syncd.state.store import Store

_CHUNK = 500  # ids per IN (...) list


def _marks(ids: Sequence[str]) -> str:
    return ",".join("?" * len(ids))


def _chunks(ids: Sequence[str]) -> Iterator[list[str]]:
    for start in range(0, len(ids), _CHUNK):
        yield list(ids[start : start + _CHUNK])


# -- instock_article_sync ------------------------------------------------------


@dataclass(frozen=True)
class ArticleMark:
    """An article planned by instock.articles: the content queued (or refused) and why."""

    article_id: str
    host_hash: str
    status: str  # queued, refused
    reason: str | None = None


@dataclass(frozen=True)
class MarkArticles:
    marks: tuple[ArticleMark, ...]
    at: str

    def apply(self, store: Store) -> None:
        store.db.conn.executemany(
            "INSERT INTO instock_article_sync (article_id, host_hash, status, reason, updated_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (article_id) DO UPDATE SET "
            "host_hash = excluded.host_hash, status = excluded.status, reason = excluded.reason, "
            "updated_at = excluded.updated_at",
            [(m.article_id, m.host_hash, m.status, m.reason, self.at) for m in self.marks],
        )


@dataclass(frozen=True)
class KnownArticle:
    """A host article found in Instock's catalog by the bootstrap (identical or not)."""

    article_id: str
    host_hash: str
    accepted_hash: str


@dataclass(frozen=True)
class LearnArticles:
    """Bootstrap: record articles Instock already has as accepted; a row that exists wins."""

    articles: tuple[KnownArticle, ...]
    at: str

    def apply(self, store: Store) -> None:
        store.db.conn.executemany(
            "INSERT INTO instock_article_sync (article_id, host_hash, accepted_hash, "
            "status, updated_at) VALUES (?, ?, ?, 'accepted', ?) "
            "ON CONFLICT (article_id) DO NOTHING",
            [(a.article_id, a.host_hash, a.accepted_hash, self.at) for a in self.articles],
        )


@dataclass(frozen=True)
class ForgetArticle:
    """`syncd rejects retry` on an article: forget what was queued so it is planned again."""

    article_id: str

    def apply(self, store: Store) -> None:
        store.db.execute(
            "UPDATE instock_article_sync SET host_hash = '', status = 'queued' "
            "WHERE article_id = ?",
            [self.article_id],
        )


@dataclass(frozen=True)
class ArticleAccepted:
    """Instock took this content; the row is `accepted` unless newer content is queued."""

    article_id: str
    content_hash: str
    at: str

    def apply(self, store: Store) -> None:
        store.db.execute(
            "UPDATE instock_article_sync SET accepted_hash = ?, reason = NULL, updated_at = ?, "
            "status = CASE WHEN host_hash = ? THEN 'accepted' ELSE status END "
            "WHERE article_id = ?",
            [self.content_hash, self.at, self.content_hash, self.article_id],
        )


@dataclass(frozen=True)
class ArticleRefused:
    """Instock refused the article; `reason` is stored as given (redact it first)."""

    article_id: str
    reason: str
    at: str

    def apply(self, store: Store) -> None:
        store.db.execute(
            "UPDATE instock_article_sync SET status = 'refused', reason = ?, updated_at = ? "
            "WHERE article_id = ?",
            [self.reason, self.at, self.article_id],
        )


def article_sync_is_empty(store: Store) -> bool:
    return not store.scalar("SELECT count(*) FROM instock_article_sync")


def host_articles_with_sync(store: Store, after: str, limit: int) -> list[dict[str, Any]]:
    """Host catalog rows after `after` in id order, each with its sync row as
    `s_host_hash`, `s_accepted_hash`, `s_status` (None when never planned)."""
    return store.query(
        "SELECT h.*, s.host_hash AS s_host_hash, s.accepted_hash AS s_accepted_hash, "
        "s.status AS s_status FROM host_articles h "
        "LEFT JOIN instock_article_sync s USING (article_id) "
        "WHERE h.article_id > ? ORDER BY h.article_id LIMIT ?",
        [after, limit],
    )


def host_article_count(store: Store) -> int:
    """How many articles the host catalog holds (the total of a planning pass)."""
    return int(store.scalar("SELECT count(*) FROM host_articles") or 0)


def queued_articles(store: Store, article_ids: Sequence[str]) -> list[str]:
    """Of these articles, those with an upload or update pending, in id order."""
    return [
        r["article_id"]
        for r in store.query(
            f"SELECT article_id FROM instock_article_sync WHERE status = 'queued' "
            f"AND article_id IN ({_marks(article_ids)}) ORDER BY article_id",
            list(article_ids),
        )
    ]


def unplanned_articles(store: Store, article_ids: Sequence[str]) -> list[str]:
    """Of these articles, those in the host catalog that instock.articles has not planned."""
    return [
        r["article_id"]
        for r in store.query(
            f"SELECT h.article_id FROM host_articles h LEFT JOIN instock_article_sync s "
            f"ON s.article_id = h.article_id WHERE s.article_id IS NULL "
            f"AND h.article_id IN ({_marks(article_ids)}) ORDER BY h.article_id",
            list(article_ids),
        )
    ]


# -- instock_order_sync --------------------------------------------------------


@dataclass(frozen=True)
class HostOrderMark:
    """A host order planned by instock.orders: the action queued (or refused) and why."""

    order_id: str
    pushed_hash: str | None
    action: str  # create, update, cancel
    status: str  # queued, accepted, refused
    reason: str | None = None


@dataclass(frozen=True)
class MarkHostOrders:
    marks: tuple[HostOrderMark, ...]
    at: str

    def apply(self, store: Store) -> None:
        store.db.conn.executemany(
            "INSERT INTO instock_order_sync "
            "(order_id, source, pushed_hash, action, status, reason, updated_at) "
            "VALUES (?, 'host', ?, ?, ?, ?, ?) ON CONFLICT (order_id) DO UPDATE SET "
            "pushed_hash = excluded.pushed_hash, action = excluded.action, "
            "status = excluded.status, reason = excluded.reason, updated_at = excluded.updated_at",
            [
                (m.order_id, m.pushed_hash, m.action, m.status, m.reason, self.at)
                for m in self.marks
            ],
        )


@dataclass(frozen=True)
class QueueDSOrderCreate:
    """dsorder.pull queued the Instock create of a DSOrder order (`order_id` is the Instock
    order id); a row that exists is left as it is (a replayed pull)."""

    order_id: str
    at: str

    def apply(self, store: Store) -> None:
        store.db.execute(
            "INSERT INTO instock_order_sync (order_id, source, pushed_hash, action, status, "
            "updated_at) VALUES (?, 'dsorder', NULL, 'create', 'queued', ?) "
            "ON CONFLICT (order_id) DO NOTHING",
            [self.order_id, self.at],
        )


@dataclass(frozen=True)
class ForgetRefusedHostOrder:
    """`syncd rejects retry` on a host order: compare it afresh with Instock (a refused
    cancel is planned again as "pushed, not cancelled")."""

    order_id: str

    def apply(self, store: Store) -> None:
        store.db.execute(
            "UPDATE instock_order_sync SET pushed_hash = NULL, "
            "action = CASE WHEN action = 'cancel' THEN 'update' ELSE action END "
            "WHERE order_id = ? AND status = 'refused'",
            [self.order_id],
        )


@dataclass(frozen=True)
class OrderOutcome:
    """The `instock` destination's answer to an order action (the row changes only while
    that action is still the order's last one); `reason` is stored as given (redact it)."""

    order_id: str
    action: str
    status: str  # accepted, refused
    reason: str | None
    at: str

    def apply(self, store: Store) -> None:
        store.db.execute(
            "UPDATE instock_order_sync SET status = ?, reason = ?, updated_at = ? "
            "WHERE order_id = ? AND action = ?",
            [self.status, self.reason, self.at, self.order_id, self.action],
        )


def host_orders_with_sync(store: Store, after: str, limit: int) -> list[dict[str, Any]]:
    """Host orders after `after` in id order, each with its sync row (`s_pushed_hash`,
    `s_action`, `s_status`) and Instock's status from the mirror (`m_status`)."""
    return store.query(
        "SELECT h.*, s.pushed_hash AS s_pushed_hash, s.action AS s_action, "
        "s.status AS s_status, m.order_status AS m_status FROM host_orders h "
        "LEFT JOIN instock_order_sync s USING (order_id) "
        "LEFT JOIN instock_orders m USING (order_id) "
        "WHERE h.order_id > ? ORDER BY h.order_id LIMIT ?",
        [after, limit],
    )


def host_order_lines(store: Store, order_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """The host lines of these orders (`line_id`, `article_id`, `qty`), by order id."""
    lines: dict[str, list[dict[str, Any]]] = {}
    for chunk in _chunks(order_ids):
        for row in store.query(
            f"SELECT order_id, line_id, article_id, qty FROM host_order_lines "
            f"WHERE order_id IN ({_marks(chunk)})",
            chunk,
        ):
            lines.setdefault(row["order_id"], []).append(row)
    return lines


# -- instock_orders, instock_ordertasks, instock_order_events ------------------


@dataclass(frozen=True)
class ListedOrder:
    """An order as Instock's orders list shows it (attributes and lines as JSON text)."""

    order_id: str
    kind: str
    placed_at: str | None
    attributes: str
    lines: str


@dataclass(frozen=True)
class MirrorOrders:
    """Orders of one list page: new ones inserted, known ones get the listed fields (their
    polled status stays)."""

    orders: tuple[ListedOrder, ...]
    at: str
    request_id: str | None = None  # of the list page: the order's lineage

    def apply(self, store: Store) -> None:
        store.db.conn.executemany(
            "INSERT INTO instock_orders "
            "(order_id, kind, placed_at, attributes, lines, updated_at, list_request_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (order_id) DO UPDATE SET "
            "kind = excluded.kind, placed_at = excluded.placed_at, "
            "attributes = excluded.attributes, lines = excluded.lines, "
            "list_request_id = coalesce(excluded.list_request_id, list_request_id)",
            [
                (o.order_id, o.kind, o.placed_at, o.attributes, o.lines, self.at, self.request_id)
                for o in self.orders
            ],
        )


@dataclass(frozen=True)
class StubOrder:
    """The mirror row of an order syncd created but has not listed yet."""

    order_id: str
    kind: str
    lines: str
    at: str

    def apply(self, store: Store) -> None:
        store.db.execute(
            "INSERT INTO instock_orders (order_id, kind, lines, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (order_id) DO NOTHING",
            [self.order_id, self.kind, self.lines, self.at],
        )


@dataclass(frozen=True)
class SetOrderAttributes:
    """The attributes of an order read again (e.g. a reception's ASN added at decanting)."""

    order_id: str
    attributes: str

    def apply(self, store: Store) -> None:
        store.db.execute(
            "UPDATE instock_orders SET attributes = ? WHERE order_id = ?",
            [self.attributes, self.order_id],
        )


@dataclass(frozen=True)
class RecordOrderStatus:
    """What one poll read: status, its time, ordertask ids, fulfilled by line, lines."""

    order_id: str
    order_status: str
    status_at: str | None
    ordertask_ids: str
    fulfilled: str
    lines: str
    at: str
    request_id: str | None = None  # of the status answer: the change's lineage

    def apply(self, store: Store) -> None:
        store.db.execute(
            "UPDATE instock_orders SET order_status = ?, status_at = ?, ordertask_ids = ?, "
            "fulfilled = ?, lines = ?, updated_at = ?, status_request_id = ? "
            "WHERE order_id = ?",
            [
                self.order_status,
                self.status_at,
                self.ordertask_ids,
                self.fulfilled,
                self.lines,
                self.at,
                self.request_id,
                self.order_id,
            ],
        )


@dataclass(frozen=True)
class OrdertaskRow:
    ordertask_id: str
    ordertask_status: str
    lines: str  # JSON text
    request_id: str | None = None  # of the answer it was read from


@dataclass(frozen=True)
class StoreOrdertasks:
    order_id: str
    tasks: tuple[OrdertaskRow, ...]
    at: str

    def apply(self, store: Store) -> None:
        store.db.conn.executemany(
            "INSERT INTO instock_ordertasks "
            "(ordertask_id, order_id, ordertask_status, lines, updated_at, request_id) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (ordertask_id) DO UPDATE SET "
            "ordertask_status = excluded.ordertask_status, lines = excluded.lines, "
            "updated_at = excluded.updated_at, "
            "request_id = coalesce(excluded.request_id, request_id)",
            [
                (t.ordertask_id, self.order_id, t.ordertask_status, t.lines, self.at, t.request_id)
                for t in self.tasks
            ],
        )


@dataclass(frozen=True)
class OrderEvent:
    """One line of a status change, as the host's `order_status` file reports it."""

    order_id: str
    kind: str
    order_status: str
    status_at: str | None
    line_id: str | None
    article_id: str | None
    requested: int | None
    fulfilled: int


@dataclass(frozen=True)
class AddOrderEvents:
    events: tuple[OrderEvent, ...]
    at: str

    def apply(self, store: Store) -> None:
        store.db.conn.executemany(
            "INSERT INTO instock_order_events (order_id, kind, order_status, status_at, line_id, "
            "article_id, requested, fulfilled, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    e.order_id,
                    e.kind,
                    e.order_status,
                    e.status_at,
                    e.line_id,
                    e.article_id,
                    e.requested,
                    e.fulfilled,
                    self.at,
                )
                for e in self.events
            ],
        )


@dataclass(frozen=True)
class DropOrderEvents:
    """The events up to `last_id`, once they are in a host file intent."""

    last_id: int

    def apply(self, store: Store) -> None:
        store.db.execute("DELETE FROM instock_order_events WHERE id <= ?", [self.last_id])


def known_order_ids(store: Store, order_ids: Sequence[str]) -> set[str]:
    """Which of these orders the mirror holds."""
    known: set[str] = set()
    for chunk in _chunks(order_ids):
        known.update(
            r["order_id"]
            for r in store.query(
                f"SELECT order_id FROM instock_orders WHERE order_id IN ({_marks(chunk)})", chunk
            )
        )
    return known


def listed_fields(store: Store, order_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The listed fields the mirror holds of these orders (kind, placed_at, attributes and
    lines as JSON text), by order id: what a backfill compares a listing with."""
    held: dict[str, dict[str, Any]] = {}
    for chunk in _chunks(order_ids):
        for r in store.query(
            "SELECT order_id, kind, placed_at, attributes, lines FROM instock_orders "
            f"WHERE order_id IN ({_marks(chunk)})",
            chunk,
        ):
            held[r["order_id"]] = r
    return held


def mirrored_order(store: Store, order_id: str) -> dict[str, Any] | None:
    """The mirror row a poll compares with: order_id, kind, lines, order_status, fulfilled."""
    rows = store.query(
        "SELECT order_id, kind, lines, order_status, fulfilled FROM instock_orders "
        "WHERE order_id = ?",
        [order_id],
    )
    return rows[0] if rows else None


def followed_states(store: Store, order_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Of these orders, the status and ordertask ids (JSON text) the last poll stored; an
    order never polled is absent."""
    states: dict[str, tuple[str, str]] = {}
    for chunk in _chunks(order_ids):
        for row in store.query(
            "SELECT order_id, order_status, ordertask_ids FROM instock_orders "
            f"WHERE order_status IS NOT NULL AND order_id IN ({_marks(chunk)})",
            chunk,
        ):
            states[row["order_id"]] = (row["order_status"], row["ordertask_ids"] or "[]")
    return states


def reception_orders(store: Store, order_ids: Sequence[str]) -> set[str]:
    """Of these orders, the reception orders."""
    if not order_ids:
        return set()
    return {
        row["order_id"]
        for row in store.query(
            f"SELECT order_id FROM instock_orders WHERE kind = 'reception' "
            f"AND order_id IN ({_marks(order_ids)})",
            list(order_ids),
        )
    }


def terminal_ordertasks(store: Store, order_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Stored ordertasks of these orders that are done or canceled (immutable)."""
    rows: list[dict[str, Any]] = []
    for chunk in _chunks(order_ids):
        rows += store.query(
            "SELECT ordertask_id, order_id, ordertask_status, lines FROM instock_ordertasks "
            f"WHERE order_id IN ({_marks(chunk)}) AND ordertask_status IN ('done', 'canceled')",
            chunk,
        )
    return rows


# The open orders instock.orders follows: not done/canceled, not the DSOrder loop's.
_HOST_SIDE_OPEN = (
    "(order_status IS NULL OR order_status NOT IN ('done', 'canceled')) "
    "AND order_id NOT IN (SELECT instock_order_id FROM dsorder_orders "
    "WHERE instock_order_id IS NOT NULL)"
)


def open_host_side_orders(store: Store, limit: int) -> list[str]:
    """Orders not yet done/canceled that are not part of the DSOrder loop, least recently
    updated first (dsorder.progress follows the loop's orders at its own pace)."""
    return [
        r["order_id"]
        for r in store.query(
            f"SELECT order_id FROM instock_orders WHERE {_HOST_SIDE_OPEN} "
            "ORDER BY updated_at, order_id LIMIT ?",
            [limit],
        )
    ]


def moved_host_orders_due(store: Store, limit: int) -> list[tuple[str, str | None]]:
    """(order id, moved_at) of the open host-side orders never polled, whose Instock order
    moved since their last poll (`moved_at` past `polled_moved_at`), or that Instock
    accepted a create, update or cancel of from syncd since (a cancel writes no move):
    never polled first, then the oldest move."""
    return [
        (r["order_id"], r["moved_at"])
        for r in store.query(
            f"SELECT order_id, moved_at FROM instock_orders o WHERE {_HOST_SIDE_OPEN} "
            "AND (polled_at IS NULL OR moved_at > coalesce(polled_moved_at, '') "
            "OR EXISTS (SELECT 1 FROM instock_order_sync s WHERE s.order_id = o.order_id "
            "AND s.status = 'accepted' AND s.updated_at > o.polled_at)) "
            "ORDER BY polled_at IS NOT NULL, moved_at, order_id LIMIT ?",
            [limit],
        )
    ]


def host_orders_to_sweep(
    store: Store, polled_before: str, limit: int
) -> list[tuple[str, str | None]]:
    """(order id, moved_at) of the open host-side orders last polled before
    `polled_before`, the longest ago first: the slow sweep for what shows no move."""
    return [
        (r["order_id"], r["moved_at"])
        for r in store.query(
            f"SELECT order_id, moved_at FROM instock_orders WHERE {_HOST_SIDE_OPEN} "
            "AND polled_at < ? ORDER BY polled_at, order_id LIMIT ?",
            [polled_before, limit],
        )
    ]


def open_host_side_count(store: Store) -> int:
    """The open host-side orders: the ones the sweep takes turns over."""
    return int(store.scalar(f"SELECT count(*) FROM instock_orders WHERE {_HOST_SIDE_OPEN}") or 0)


@dataclass(frozen=True)
class RecordOrderMoves:
    """Instock orders seen moving: (order id, newest move timestamp, UTC ISO text).
    `moved_at` only grows; orders not mirrored, or done/canceled, are left alone."""

    moved: tuple[tuple[str, str], ...]

    def apply(self, store: Store) -> None:
        store.db.conn.executemany(
            "UPDATE instock_orders SET moved_at = ? WHERE order_id = ? "
            "AND coalesce(moved_at, '') < ? "
            "AND (order_status IS NULL OR order_status NOT IN ('done', 'canceled'))",
            [(at, order_id, at) for order_id, at in self.moved],
        )


@dataclass(frozen=True)
class MarkOrdersPolled:
    """Orders instock.orders just polled: (order id, its `moved_at` when chosen for the
    poll), at `at`. A move recorded after that choice keeps the order due."""

    polled: tuple[tuple[str, str | None], ...]
    at: str

    def apply(self, store: Store) -> None:
        store.db.conn.executemany(
            "UPDATE instock_orders SET polled_at = ?, "
            "polled_moved_at = coalesce(?, polled_moved_at) WHERE order_id = ?",
            [(self.at, moved_at, order_id) for order_id, moved_at in self.polled],
        )


def pending_order_events(store: Store) -> list[dict[str, Any]]:
    """Order events waiting for the host file, oldest first, each with its order's current
    attributes (JSON text, or None when the order is not mirrored)."""
    return store.query(
        "SELECT e.id, e.order_id, e.kind, e.order_status, e.status_at, e.line_id, "
        "e.article_id, e.requested, e.fulfilled, o.attributes "
        "FROM instock_order_events e LEFT JOIN instock_orders o USING (order_id) "
        "ORDER BY e.id"
    )
