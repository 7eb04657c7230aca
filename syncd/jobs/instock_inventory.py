"""`instock.inventory`: mirror Instock stock, send deltas and a reconciliation to the host.

A scan walks the whole inventory list by cursor. Each page is one transaction:
its rows go into the mirror, the rows that changed go into
`instock_inventory_deltas`, and the checkpoint `{scan, cursor}` moves to the
next page. A crash mid-scan resumes at the stored cursor; since the changed
rows were recorded with the mirror they updated, no delta is lost or doubled.

When the list ends, one transaction settles the scan: articles the list no
longer shows drop to zero (the API omits all-zero articles: absent means zero,
not deleted), the collected deltas become host outbox files, the reconciliation
against host book stock is refreshed (a file only when it changed), and the
checkpoint moves to the next scan. An unchanged inventory writes no file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from syncd.clock import iso
from syncd.config import Schedule
from syncd.connectors.instock import InstockClient, PermanentError
from syncd.host.feeds import Format
from syncd.host.outbox import host_file_intent
from syncd.jobs.base import JobContext, JobSpec, register
from syncd.jobs.host_files import host_file_intent_json, host_format
from syncd.readahead import read_ahead
from syncd.state import NewIntent, Store

STREAM = "instock.inventory.scan"
QTY = ("free", "reserved", "registered")


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file_chunk: int = Field(10_000, ge=1, le=200_000, description="rows per host file")
    reconcile: bool = Field(True, description="compare with host book stock after each scan")


def load_position(raw: str | None) -> tuple[int, str]:
    """(scan number, cursor) from the checkpoint; a new store starts scan 1 at the top."""
    if not raw:
        return 1, ""
    data = json.loads(raw)
    return int(data["scan"]), str(data.get("cursor") or "")


def dump_position(scan: int, cursor: str) -> str:
    return json.dumps({"scan": scan, "cursor": cursor})


def run(ctx: JobContext) -> None:
    options: Options = ctx.options
    store = ctx.store
    scan, cursor = load_position(store.get_checkpoint(STREAM))
    _ensure_page_table(store)
    with InstockClient(ctx.settings.connectors.instock) as client:
        try:
            for page in read_ahead(client.inventory_pages(start_cursor=cursor or None)):
                _apply_page(ctx, scan, page.items, page.next_cursor if page.has_more else "")
                ctx.counts["pulled"] += len(page.items)
                if page.has_more:
                    ctx.check_stop()
        except PermanentError as exc:
            if not cursor or exc.status != 400:
                raise
            # The stored cursor expired: start this scan again from the top.
            ctx.log.warning("inventory_cursor_rejected", error=str(exc), scan=scan)
            store.set_checkpoint(STREAM, dump_position(scan, ""), run_id=ctx.run_id)
            run(ctx)
            return
    _settle_scan(ctx, scan, options)


def _ensure_page_table(store: Store) -> None:
    store.db.execute(
        "CREATE TEMP TABLE IF NOT EXISTS inventory_page ("
        "article_id TEXT PRIMARY KEY, free INTEGER, reserved INTEGER, registered INTEGER)"
    )


def _apply_page(ctx: JobContext, scan: int, items: list[Any], next_cursor: str) -> None:
    store = ctx.store
    rows = [
        (
            item["article_id"],
            int((item.get("qty") or {}).get("free") or 0),
            int((item.get("qty") or {}).get("reserved") or 0),
            int((item.get("qty") or {}).get("registered") or 0),
        )
        for item in items
    ]
    now = iso()
    with store.transaction():
        store.db.execute("DELETE FROM temp.inventory_page")
        store.db.conn.executemany(
            "INSERT OR REPLACE INTO temp.inventory_page VALUES (?, ?, ?, ?)", rows
        )
        # Changed rows keep the values from before the scan touched them.
        store.db.execute(
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
            [scan],
        )
        store.db.execute(
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
            [scan, now],
        )
        store.set_checkpoint(STREAM, dump_position(scan, next_cursor), run_id=ctx.run_id)


def _settle_scan(ctx: JobContext, scan: int, options: Options) -> None:
    store = ctx.store
    with store.transaction():
        # Absent from the list means zero: those rows drop to zero, with a delta.
        store.db.execute(
            """
            INSERT INTO instock_inventory_deltas
                (article_id, free_before, reserved_before, registered_before,
                 free, reserved, registered, scan)
            SELECT article_id, free, reserved, registered, 0, 0, 0, ?
            FROM instock_inventory
            WHERE scan < ? AND (free != 0 OR reserved != 0 OR registered != 0)
            ON CONFLICT (article_id) DO UPDATE SET free = 0, reserved = 0, registered = 0
            """,
            [scan, scan],
        )
        store.db.execute(
            "UPDATE instock_inventory SET free = 0, reserved = 0, registered = 0, updated_at = ? "
            "WHERE scan < ? AND (free != 0 OR reserved != 0 OR registered != 0)",
            [iso(), scan],
        )
        added = 0
        for intent in _delta_intents(
            store, scan, options, host_format(ctx.settings, "inventory_deltas")
        ):  # one chunk in memory at a time
            added += store.add_intents([intent], run_id=ctx.run_id)
        deltas = store.scalar("SELECT count(*) FROM instock_inventory_deltas")
        store.db.execute("DELETE FROM instock_inventory_deltas")
        if options.reconcile:
            for intent in _reconcile(ctx, scan, options):
                added += store.add_intents([intent], run_id=ctx.run_id)
        store.set_checkpoint(STREAM, dump_position(scan + 1, ""), run_id=ctx.run_id)
    ctx.counts["deltas"] += int(deltas or 0)
    ctx.counts["queued"] += added


def _delta_intents(store: Store, scan: int, options: Options, fmt: Format) -> Iterator[NewIntent]:
    """One intent per chunk of deltas, each rendered to JSON inside SQLite."""
    last, chunk_no = "", 0
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
            [last, options.file_chunk],
        ).fetchone()
        if last_id is None:
            return
        last = last_id
        chunk_no += 1
        yield host_file_intent_json(
            "inventory_deltas", rows_json, fmt, key=f"inventory_deltas:{scan}:{chunk_no}"
        )


def _reconcile(ctx: JobContext, scan: int, options: Options) -> Iterator[NewIntent]:
    """Host book stock vs Instock on hand (free + reserved); a file only when it changed."""
    store = ctx.store
    if not store.scalar("SELECT count(*) FROM host_stock"):
        ctx.log.info("reconcile_skipped", reason="no host stock loaded yet")
        return
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
    ctx.counts["discrepancies"] = int(count or 0)
    if not changed:
        return
    now = iso()
    store.db.execute("DELETE FROM instock_stock_discrepancies")
    store.db.execute(
        "INSERT INTO instock_stock_discrepancies "
        "(article_id, host_qty, instock_qty, difference, scan, found_at) "
        "SELECT article_id, host_qty, instock_qty, difference, ?, ? FROM temp.discrepancies",
        [scan, now],
    )
    last, chunk_no = "", 0
    while True:
        rows = store.query(
            "SELECT article_id, host_qty, instock_qty, difference FROM instock_stock_discrepancies "
            "WHERE article_id > ? ORDER BY article_id LIMIT ?",
            [last, options.file_chunk],
        )
        if not rows and chunk_no:
            return
        chunk_no += 1
        # An empty report is still written once: it says the discrepancies are gone.
        yield host_file_intent(
            "stock_discrepancies",
            rows,
            host_format(ctx.settings, "stock_discrepancies"),
            key=f"stock_discrepancies:{scan}:{chunk_no}",
        )
        if not rows:
            return
        last = rows[-1]["article_id"]


SPEC = register(
    JobSpec(
        name="instock.inventory",
        run=run,
        description="Mirror Instock inventory; host deltas and a reconciliation report",
        default_schedule=Schedule(interval=900),
        connectors=("instock",),
        options_model=Options,
    )
)
