"""What `planning.import` would send, read from the host tables: chunked, keyset-paginated
reads (memory does not grow with the host), each row mapped by `rows` into a `Candidate`
(demand history's straight into a keyed `Planned`); then, for POs and orders, the rows the
API holds that have left the host's open set."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date
from typing import Any, Final, TypeVar

from syncd.connectors.import_jobs import key_function
from syncd.jobs.planning.options import CLOSING, Options
from syncd.jobs.planning.rows import (
    Candidate,
    Planned,
    catalog_row,
    closed_row,
    demand_json,
    demand_record,
    demand_text,
    demand_window,
    held_reason,
    inventory_row,
    keyed,
    monday,
    order_row,
    po_final_status,
    purchase_order_row,
    supplier_row,
)
from syncd.jsontext import text_hash
from syncd.readahead import read_ahead
from syncd.state import Store

_T = TypeVar("_T")

CHUNK: Final = 500  # host rows read (and accepted/failed looked up) per query
DEMAND_CHUNK: Final = 20  # articles per demand query (x weeks records): small, so planning
# and sending interleave


def _ref(row: Mapping[str, Any]) -> str:
    return f"{row['file']}:{row['line']}"


def _pages(
    store: Store, sql: str, keys: tuple[str, ...], params: Sequence[Any] = ()
) -> Iterator[list[dict[str, Any]]]:
    """Rows of `sql` (which ends in `WHERE ... AND (<keys>) > (?...) ORDER BY <keys>`), in
    chunks."""
    last: tuple[Any, ...] = tuple("" for _ in keys)
    while True:
        rows = store.query(sql + f" LIMIT {CHUNK}", [*params, *last])
        if not rows:
            return
        last = tuple(rows[-1][k] for k in keys)
        yield rows


def _children(
    store: Store, table: str, parent: str, parents: Sequence[str], order: str
) -> dict[str, list[dict[str, Any]]]:
    marks = ",".join("?" * len(parents))
    found: dict[str, list[dict[str, Any]]] = {p: [] for p in parents}
    for row in store.query(
        f"SELECT * FROM {table} WHERE {parent} IN ({marks}) ORDER BY {parent}, {order}",
        list(parents),
    ):
        found[row[parent]].append(row)
    return found


def candidates(
    store: Store, endpoint: str, options: Options, today: date
) -> Iterator[list[Candidate] | list[Planned]]:
    """The endpoint's rows as mapped from the host tables, chunk by chunk; then, for POs and
    orders, those the API holds that have left the open set, closed."""
    yield from _open_candidates(store, endpoint, options, today)
    if endpoint in CLOSING:
        yield from _closing_candidates(store, endpoint, options)


def _open_candidates(
    store: Store, endpoint: str, options: Options, today: date
) -> Iterator[list[Candidate] | list[Planned]]:
    site = options.site_location
    if endpoint == "catalog":
        for rows in _pages(
            store,
            "SELECT * FROM host_articles WHERE (article_id) > (?) ORDER BY article_id",
            ("article_id",),
        ):
            yield [Candidate(catalog_row(r), _ref(r)) for r in rows]
    elif endpoint == "suppliers":
        for rows in _pages(
            store,
            "SELECT * FROM host_suppliers WHERE (supplier_id) > (?) ORDER BY supplier_id",
            ("supplier_id",),
        ):
            yield [Candidate(supplier_row(r), _ref(r)) for r in rows]
    elif endpoint == "inventory":
        reserved = (  # absent from the Instock list: nothing reserved
            "(CASE WHEN s.location = '' THEN coalesce((SELECT i.reserved FROM instock_inventory "
            "i WHERE i.article_id = s.article_id), 0) END)"
            if options.reserved_from_instock
            else "NULL"
        )
        for rows in _pages(
            store,
            f"SELECT s.*, {reserved} AS instock_reserved FROM host_stock s "
            "WHERE (s.article_id, s.location) > (?, ?) ORDER BY s.article_id, s.location",
            ("article_id", "location"),
        ):
            mapped = [inventory_row(r, site, r["instock_reserved"]) for r in rows]
            yield [
                Candidate(p, _ref(r), held=held_reason(endpoint, p, options))
                for p, r in zip(mapped, rows, strict=True)
            ]
    elif endpoint == "purchase-orders":
        for rows in _pages(
            store,
            "SELECT * FROM host_purchase_orders WHERE (po_number) > (?) ORDER BY po_number",
            ("po_number",),
        ):
            lines = _children(
                store,
                "host_purchase_order_lines",
                "po_number",
                [r["po_number"] for r in rows],
                "line_no",
            )
            mapped = [(purchase_order_row(r, lines[r["po_number"]], site), r) for r in rows]
            yield [Candidate(p, _ref(r)) for p, r in mapped if p is not None]
    elif endpoint == "orders":
        for rows in _pages(
            store,
            "SELECT * FROM host_orders WHERE status = 'open' AND (order_id) > (?) "
            "ORDER BY order_id",
            ("order_id",),
        ):
            lines = _children(
                store, "host_order_lines", "order_id", [r["order_id"] for r in rows], "line_id"
            )
            mapped = [(order_row(r, lines[r["order_id"]], site), r) for r in rows]
            yield [Candidate(p, _ref(r)) for p, r in mapped if p is not None]
    elif endpoint == "demand-history":
        yield from demand_candidates(store, options, today)
    else:  # pragma: no cover - Options validates endpoints
        raise ValueError(endpoint)


_STILL_OPEN: Final = {
    # a PO with a line still outstanding; an order the host holds open
    "purchase-orders": "EXISTS (SELECT 1 FROM host_purchase_order_lines l WHERE l.po_number = "
    "a.row_key AND l.qty_ordered - coalesce(l.qty_received, 0) > 0)",
    "orders": "EXISTS (SELECT 1 FROM host_orders o WHERE o.order_id = a.row_key AND "
    "o.status = 'open')",
}
_PO_FACTS: Final = (
    "(EXISTS (SELECT 1 FROM host_purchase_order_lines l WHERE l.po_number = a.row_key AND "
    "l.qty_received > 0) OR EXISTS (SELECT 1 FROM host_po_history h WHERE h.po_number = "
    "a.row_key AND h.qty_received > 0)) AS received, (EXISTS (SELECT 1 FROM "
    "host_purchase_order_lines l WHERE l.po_number = a.row_key) OR EXISTS (SELECT 1 FROM "
    "host_po_history h WHERE h.po_number = a.row_key)) AS known"
)


def _closing_candidates(store: Store, endpoint: str, options: Options) -> Iterator[list[Candidate]]:
    """Rows the API accepted that have left the host's open set (a PO fully received,
    cancelled or gone from the snapshot; a cancelled order): each once more, closed."""
    facts = _PO_FACTS if endpoint == "purchase-orders" else "0 AS received, 0 AS known"
    for rows in _pages(
        store,
        f"SELECT a.row_key, a.payload, {facts} FROM planning_import_accepted a "
        f"WHERE a.endpoint = ? AND a.payload IS NOT NULL AND NOT {_STILL_OPEN[endpoint]} "
        "AND (a.row_key) > (?) ORDER BY a.row_key",
        ("row_key",),
        [endpoint],
    ):
        chunk = []
        for row in rows:
            status = (
                po_final_status(bool(row["received"]), bool(row["known"]), options)
                if endpoint == "purchase-orders"
                else options.order_cancelled_status
            )
            payload = closed_row(json.loads(row["payload"]), status)
            chunk.append(Candidate(payload, f"closed:{row['row_key']}", closing=True))
        yield chunk


def demand_candidates(store: Store, options: Options, today: date) -> Iterator[list[Planned]]:
    """The weekly records of the window, chunk by chunk, each already keyed, rendered and
    hashed (`Planned`): demand history is most of what the job sends (articles x weeks),
    and making each row once here instead of a `Candidate` then keying it in `key_chunk`
    costs about a third less CPU (`key_chunk` passes such a chunk as it is)."""
    first, end = demand_window(today, options.demand_weeks_back, options.include_open_week)
    if first >= end:
        return
    window = [first.isoformat(), end.isoformat()]
    key_of = key_function("demand-history")
    site = options.site_location
    make = tuple.__new__  # Planned(...) without its Python-level __new__, on the hot path
    last = ""
    while True:
        articles = [
            r["article_id"]
            for r in store.query(
                "SELECT DISTINCT article_id FROM host_sales WHERE article_id > ? "
                "AND sale_date >= ? AND sale_date < ? ORDER BY article_id LIMIT ?",
                [last, *window, DEMAND_CHUNK],
            )
        ]
        if not articles:
            return
        last = articles[-1]
        marks = ",".join("?" * len(articles))
        # SQLite: 'weekday 0' moves to the next Sunday (or stays), -6 days is its Monday.
        # The reference is the group's first sales row as loaded (the least rowid: with one
        # min(), SQLite takes `file` and `line` from the row that gives it, so the reference
        # costs no text per sale, only one per record).
        rows = store.db.conn.execute(
            "SELECT article_id, location, coalesce(nullif(channel, ''), 'ALL'), "
            "date(sale_date, 'weekday 0', '-6 days'), total(qty), min(rowid), "
            f"file || ':' || line FROM host_sales WHERE article_id IN ({marks}) "
            "AND sale_date >= ? AND sale_date < ? GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
            [*articles, *window],
        )
        chunk: list[Planned] = []
        append = chunk.append
        for a, loc, c, w, q, _, ref in rows:
            location = loc or site
            week = monday(w)
            valid = bool(a.strip() and location.strip())
            if valid and type(q) is float and q.is_integer():
                # the common case, non-blank ids and a whole quantity (total() gives a
                # float): valid by construction (text ids, an ISO Monday, a whole number),
                # rendered from its parts as demand_record + demand_text would (tested)
                text = demand_json(int(q) if q > 0 else 0, c, location, a, week)
                key = f"{a}|{location}|{week}|{c}"
                append(make(Planned, (key, text_hash(text), text, ref, None, True, False)))
                continue
            # Any other record goes the general way; one with a blank id is checked (and
            # refused) like rows of the other endpoints.
            record = demand_record(a, loc, c, w, q, site)
            known = f"{a}|{location}|{week}|{c}" if valid else None
            append(keyed(key_of, Candidate(record, ref, demand_text(record), known, valid)))
        yield chunk


def demand_record_count(store: Store, options: Options, today: date) -> int:
    """How many weekly records the window holds (what a held demand-history would send)."""
    first, end = demand_window(today, options.demand_weeks_back, options.include_open_week)
    return int(
        store.scalar(
            "SELECT count(*) FROM (SELECT 1 FROM host_sales WHERE sale_date >= ? AND "
            "sale_date < ? GROUP BY article_id, location, coalesce(nullif(channel, ''), "
            "'ALL'), date(sale_date, 'weekday 0', '-6 days'))",
            [first.isoformat(), end.isoformat()],
        )
        or 0
    )


def read_ahead_candidates(
    store: Store,
    endpoint: str,
    options: Options,
    today: date,
    prepare: Callable[[list[Candidate] | list[Planned]], _T],
) -> Iterator[_T]:
    """`candidates`, each chunk passed through `prepare` (e.g. keyed and hashed), both in a
    helper thread on its own connection: SQLite aggregates and the helper prepares the
    next chunk while this thread plans and records the last one."""
    if store.path is None:  # an in-memory store has no second connection
        yield from map(prepare, candidates(store, endpoint, options, today))
        return

    def read() -> Iterator[_T]:
        with Store.open(store.path, migrate=False) as reader:  # type: ignore[arg-type]
            yield from map(prepare, candidates(reader, endpoint, options, today))

    yield from read_ahead(read(), depth=2)
