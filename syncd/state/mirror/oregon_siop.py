"""The tables of `oregon.siop`: its accepted/failed ledger (`oregon_siop_accepted`,
`oregon_siop_failed`, written only through `LEDGER`, see `syncd.state.ledger`), and the
reads of the host tables it reports from.

The host reads are chunked by article (memory does not grow with the catalog) and sum the
host's exact decimals in SQL, in integer millionths (`MICRO`), so no float error creeps in;
the job turns the sums back into decimals and rounds once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from syncd.state.ledger import Ledger
from syncd.state.store import Store

LEDGER: Final = Ledger(
    accepted="oregon_siop_accepted",
    failed="oregon_siop_failed",
    key=("sold_to", "ship_to", "material_id", "year", "month", "day"),
    hash="item_hash",
)
MICRO: Final = 1_000_000  # host decimals keep up to 6 places: sums run in millionths

# The first host row of a group, as `file:line` with the line zero-padded so min() orders
# lines by number; `first_row` reads it back.
_REF = "min(file || ':' || printf('%09d', line))"


def _micro(column: str) -> str:
    """A NUMERIC host quantity in exact integer millionths."""
    return (
        f"(CASE typeof({column}) WHEN 'integer' THEN {column} * {MICRO} "
        f"ELSE CAST(round({column} * {MICRO}) AS INTEGER) END)"
    )


def _marks(ids: Sequence[str]) -> str:
    return ",".join("?" * len(ids))


def first_row(packed: str | None) -> str | None:
    """`file:line` of a group's first host row (as `_REF` packed it), or None."""
    if not packed:
        return None
    file, _, line = packed.rpartition(":")
    return f"{file}:{int(line)}"


def catalog_after(store: Store, after: str, limit: int) -> list[dict[str, Any]]:
    """Host catalog rows after article `after` in id order: article_id, attributes (JSON
    text), file, line."""
    return store.query(
        "SELECT article_id, attributes, file, line FROM host_articles WHERE article_id > ? "
        "ORDER BY article_id LIMIT ?",
        [after, limit],
    )


def sales_by_period(
    store: Store, ids: Sequence[str], *, by_day: bool, start: str, end: str
) -> list[dict[str, Any]]:
    """Net sales of these articles from `start` (ISO date, included) to `end` (excluded),
    per article and period (`YYYY-MM-DD` by day, else `YYYY-MM`): article_id, period, micro
    (the sum in millionths), rows, ref (see `first_row`)."""
    bucket = "sale_date" if by_day else "substr(sale_date, 1, 7)"
    return store.query(
        f"SELECT article_id, {bucket} AS period, sum({_micro('qty')}) AS micro, "
        f"count(*) AS rows, {_REF} AS ref FROM host_sales WHERE article_id IN ({_marks(ids)}) "
        "AND sale_date >= ? AND sale_date < ? GROUP BY 1, 2",
        [*ids, start, end],
    )


def stock_by_article(store: Store, ids: Sequence[str]) -> list[dict[str, Any]]:
    """Host book stock of these articles over all locations: article_id, micro, rows, ref."""
    return store.query(
        f"SELECT article_id, sum({_micro('qty')}) AS micro, count(*) AS rows, {_REF} AS ref "
        f"FROM host_stock WHERE article_id IN ({_marks(ids)}) GROUP BY 1",
        list(ids),
    )


def on_order_by_article(store: Store, ids: Sequence[str]) -> list[dict[str, Any]]:
    """Open purchase-order quantity of these articles (ordered - received, each line never
    below 0): article_id, micro, pos (the PO numbers, comma-separated)."""
    outstanding = f"max({_micro('qty_ordered')} - {_micro('qty_received')}, 0)"
    return store.query(
        f"SELECT article_id, sum({outstanding}) AS micro, "
        "group_concat(DISTINCT po_number) AS pos "
        f"FROM host_purchase_order_lines WHERE article_id IN ({_marks(ids)}) GROUP BY 1",
        list(ids),
    )
