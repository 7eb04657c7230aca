"""What `syncd inspect` gives Datasette: a description of every table and column of the
state DB (units, what each status means) and the canned queries an operator needs.

It lives next to the schema: a migration that adds a table or a column adds its
description here (tests/unit/test_datasette_metadata.py fails until it does), and the
canned queries are SQL on the core tables, which belongs to this package.
"""

from __future__ import annotations

from typing import Any

TS = "ISO-8601 UTC text (2026-11-23T10:15:00.000Z)"
_PROVENANCE = {
    "file": "host inbox file this row's current version came from",
    "line": "line (CSV) or record (JSON Lines) number in that file, from 1",
    "load_id": "host_files.id of that file's load (a row unchanged by later files keeps it)",
    "loaded_at": f"when that file was loaded, {TS}",
}


def _host(**columns: str) -> dict[str, str]:
    return {**columns, **_PROVENANCE}


TABLES: dict[str, tuple[str, dict[str, str]]] = {
    # -- core tables ---------------------------------------------------------------
    "runs": (
        "One row per job run: what ran, how it was started, how it ended, what it did. "
        "status: running (not finished yet), ok, failed (a classified error: a remote, "
        "the input or the config), crashed (an unexpected exception, a bug: the traceback "
        "is in error), interrupted (a shutdown, or a process that died; marked at the next "
        "start), skipped (a connector of the job is stopped by an alert). Dry runs record "
        "no row.",
        {
            "id": "row id, in start order",
            "run_id": "the run's id, `<job>-<12 hex>`, also in every log line of the run",
            "job": "job name, e.g. dsorder.pull",
            "trigger": "schedule, daily (a fixed time of day), signal (SIGUSR1), wake (the "
            "sender woken by a job), cli (syncd once)",
            "started_at": f"start, {TS}",
            "finished_at": f"end, {TS}; null while running",
            "status": "running, ok, failed, crashed, interrupted, skipped (see the table)",
            "pulled": "records read from the job's stream (count)",
            "pushed": "items sent or queued to a destination (count)",
            "rejected": "items put in rejects (count)",
            "counts": "JSON object: the job's further counters",
            "warnings": "JSON array: warnings of the run (rows held back, remote warnings)",
            "error": "why it failed; for a crash the exception, then its traceback",
        },
    ),
    "checkpoints": (
        "Per stream, the cursor or time watermark, advanced in the transaction that stores "
        "the data it covers.",
        {
            "stream": "stream name, e.g. instock.moves.watermark, dsorder.last_pull",
            "value": "cursor (opaque) or watermark (an ISO-8601 UTC time)",
            "updated_at": f"when it last moved, {TS}",
            "run_id": "runs.run_id of the run that moved it",
        },
    ),
    "outbox": (
        "Push intents, recorded with the change that caused them and drained by the "
        "sender (outbox.send). status: pending (waiting or retrying), sent (the "
        "destination accepted it, or had it already), rejected (refused or given up: a "
        "reject points at it), dropped (an operator dropped its reject).",
        {
            "id": "intent id; intents with one order_key go in id order",
            "destination": "instock, dsorder or host",
            "kind": "what the call does, e.g. orders.create, fulfill, close, order_status",
            "order_key": "what it is about (order:<id>, article:<id>): serialises intents",
            "idempotency_key": "unique per destination: the same change is never queued twice",
            "payload": "JSON: what will be sent",
            "status": "pending, sent, rejected, dropped (see the table)",
            "attempts": "delivery attempts so far (count)",
            "next_attempt_at": f"not tried before this time, {TS}",
            "last_error": "the last failed attempt's error",
            "result": "JSON: what the destination answered on success",
            "created_at": f"queued at, {TS}",
            "sent_at": f"delivered at, {TS}",
            "run_id": "runs.run_id of the run that queued it",
            "request_ids": "JSON list: the remote's request ids of the delivering attempt",
            "unclear": "1: an attempt started and ended without a clear answer (or never "
            "ended): the remote may have applied it",
        },
    ),
    "rejects": (
        "Bad input and refused pushes, kept with the reason until an operator acts. "
        "status: open (waiting), retry (flagged for its job's next run), retried (sent "
        "again), dropped (kept for the record, never retried), resolved (fixed: a "
        "corrected file or row arrived).",
        {
            "id": "reject id (syncd rejects show ID)",
            "source": "where it came from: host:<feed>, outbox:<destination>, dsorder:lines, ...",
            "reference": "file:line, outbox:<id>, a request id: where to find the original",
            "field": "the field at fault, when one is",
            "reason": "why it was rejected",
            "payload": "the raw line or record (JSON or text)",
            "status": "open, retry, retried, dropped, resolved (see the table)",
            "outbox_id": "outbox.id of a refused push",
            "run_id": "runs.run_id of the run that rejected it",
            "created_at": f"rejected at, {TS}",
            "updated_at": f"last status change, {TS}",
        },
    ),
    "alerts": (
        "Conditions that need an operator; one open row per (kind, subject). A kind that "
        "stops a connector (auth, site_environment, site_unknown) is cleared by a reload; "
        "others by `syncd alerts resolve` or by the job once the condition is over.",
        {
            "id": "alert id",
            "kind": "auth, site_environment, outbox_gave_up, dsorder_midnight_gap, ...",
            "subject": "what it is about: a connector, a destination, an order, a feed",
            "message": "what happened and what to do",
            "count": "times it was raised while open",
            "opened_at": f"first raised, {TS}",
            "last_seen_at": f"last raised, {TS}",
            "resolved_at": f"resolved, {TS}; null while open",
        },
    ),
    "pull_windows": (
        "The window ledger: one row per page or window a pull stored, written in the "
        "transaction of its data (`syncd coverage` reads it); compacted by "
        "state.housekeeping into pull_window_days.",
        {
            "id": "row id (write order)",
            "stream": "what was pulled, e.g. instock.orders",
            "job": "the job that pulled it",
            "run_id": "runs.run_id of the run (the first of the pulls an extended row stands for)",
            "kind": "window (a time window), cursor (a cursor walk's page), scan (a full scan)",
            "window_from": f"a time window's start, {TS}",
            "window_to": f"a time window's end, {TS}",
            "cursor_before": "a cursor walk: the checkpoint before the page ('' = from the start)",
            "cursor_after": "a cursor walk: the checkpoint after it (null: moved none)",
            "lag_s": "the lag the window kept behind now, seconds",
            "overlap_s": "the overlap the window re-read before the watermark, seconds",
            "pages": "pages read",
            "listed": "records the pages listed",
            "stored": "records stored",
            "rejected": "records rejected (see rejects)",
            "content_hash": "hash of the records as listed",
            "request_ids": "JSON array: the remote request ids of the pages (at most 20)",
            "request_ids_more": "request ids beyond those kept",
            "started_at": f"first request, {TS}",
            "ended_at": f"stored at, {TS}",
            "scan": "kind scan: the scan's number (instock_inventory.scan); else null",
            "backfill_id": "backfills.id of the backfill that wrote it (null: the live pull)",
            "pulls": "the pulls the row stands for: a later pull that found the same content, "
            "contiguous, extends it (started_at stays, ended_at, counts and request ids grow)",
        },
    ),
    "backfills": (
        "`syncd backfill`: each re-pull of a past period of a stream beside its live cursor; "
        "requested by the CLI, run by the backfill.requests job.",
        {
            "id": "backfill id",
            "stream": "instock.moves, instock.orders or dsorder.pull",
            "period_from": f"the period's start, {TS}",
            "period_to": f"the period's end, {TS}",
            "dry_run": "1: only the differences are recorded, nothing applied",
            "status": "requested, running, done, failed or cancelled",
            "cursor": "its own checkpoint: moves, the end of the last committed window; "
            "orders, the list cursor of the next page; 'end' once its last step committed",
            "steps": "steps committed (windows, pages, orders)",
            "found": "records found in the period",
            "missing": "of them, records syncd lacked",
            "changed": "of them, records syncd held otherwise",
            "applied": "records journalled or updated (0 in a dry run)",
            "rejected": "invalid records rejected (see rejects)",
            "error": "why it failed, or the last error of a run that will resume it",
            "run_id": "runs.run_id of the last run that worked on it",
            "requested_at": f"asked for at, {TS}",
            "started_at": f"first picked up at, {TS}",
            "updated_at": f"last changed at, {TS}",
            "finished_at": f"ended at (done, failed, cancelled), {TS}",
        },
    ),
    "backfill_differences": (
        "What each backfill found missing or changed (the first 1000 per backfill; "
        "backfills has the exact counts).",
        {
            "backfill_id": "backfills.id",
            "seq": "order found",
            "kind": "missing or changed",
            "key": "move key, order id",
            "detail": "JSON: the missing record, or {field: [held, listed]}",
            "applied": "1: journalled or updated; 0: a dry run, or taken by the live pull",
        },
    ),
    "pull_window_days": (
        "Compacted window ledger: one row per stream and day older than "
        "state.housekeeping's ledger_days, keeping the union of the day's windows so "
        "gaps stay visible.",
        {
            "stream": "pull_windows.stream",
            "day": "UTC day, YYYY-MM-DD (of each row's ended_at)",
            "job": "the job that pulled it",
            "kind": "window, cursor or scan",
            "windows": "ledger rows compacted",
            "pages": "pages read",
            "listed": "records listed",
            "stored": "records stored",
            "rejected": "records rejected",
            "covered": "JSON array of [from, to]: the union of what the rows covered",
            "min_overlap_s": "least overlap seen between consecutive windows, seconds",
            "overlap_s": "largest configured overlap, seconds",
            "lag_s": "largest lag, seconds",
            "cursor_after": "a cursor stream: the checkpoint its last row left",
            "last_ended_at": f"when that row ended, {TS}",
            "content_hash": "hash of the rows' content hashes, in order",
        },
    ),
    "coverage_gaps": (
        "Gaps in a stream's window ledger found when state.housekeeping compacted it, kept "
        "forever with their cause (the runs table is purged after retention_days).",
        {
            "stream": "pull_windows.stream",
            "gap_from": f"first moment not covered, {TS}",
            "gap_to": f"covered again from, {TS}",
            "cause": "midnight, failed-run or checkpoint-reset (see `syncd coverage`)",
            "runs": "JSON array: runs.run_id of the job's failed runs while it was open",
            "found_at": f"compacted at, {TS}",
        },
    ),
    "rate_budget": (
        "Per connector, the one token bucket its jobs and the sender share "
        "(connectors.<name>.rate_limit), and the park a 429 with Retry-After set; written "
        "at most once a second and on a 429, so a restart keeps both.",
        {
            "connector": "connector name: instock, dsorder, netstock, import_jobs, oregon_siop",
            "tokens": "tokens left at `at` (negative: requests already promised a slot)",
            "at": "when `tokens` was true, seconds since the epoch (UTC)",
            "parked_until": "no request of this connector before this moment, seconds since "
            "the epoch; 0 or past: not throttled",
            "park_reason": "the 429 that parked it: the request and the remote's request id",
        },
    ),
    "_sqlite_migrations": (
        "Schema migrations applied to this file, by name (PRAGMA user_version counts them).",
        {
            "id": "row id",
            "migration_set": "always syncd",
            "name": "migration name, m00NN_<topic>",
            "applied_at": "when it was applied (UTC)",
        },
    ),
    "sqlite_sequence": (
        "SQLite's own: the last id of each AUTOINCREMENT table (outbox ids are never reused).",
        {"name": "table name", "seq": "last id handed out"},
    ),
    # -- host feeds ----------------------------------------------------------------
    "host_files": (
        "Every file taken from the host inbox. status: loaded (its rows are in the host "
        "tables; bad rows are in rejects), rejected (the whole file refused: reason).",
        {
            "id": "load id (host_* tables' load_id)",
            "feed": "feed name (articles, stock, orders, ...)",
            "name": "file name",
            "sha256": "content hash (hex)",
            "size": "bytes",
            "format": "csv or jsonl",
            "mode": "snapshot (the file is the whole truth: absent rows are deleted) or delta",
            "status": "loaded or rejected",
            "rows_loaded": "rows stored (count)",
            "rows_rejected": "rows put in rejects (count)",
            "rows_changed": "rows inserted or updated in the host table (count)",
            "rows_deleted": "snapshot: rows absent from the file, deleted (count)",
            "reason": "why the whole file was rejected",
            "loaded_at": f"loaded at, {TS}",
            "run_id": "runs.run_id of the host.inbox run",
        },
    ),
    "host_articles": (
        "The host catalog (feed articles): what Instock needs of an article.",
        _host(
            article_id="the host's article id",
            name="article name",
            description="longer description",
            unit="unit of measure, e.g. EA",
            whole_units="1: quantities are whole units; 0: fractional allowed",
            is_serial_numbered="1: serial-numbered (Instock cannot take it by upload)",
            dim_x="dimension x (in dim_uom), exact decimal text",
            dim_y="dimension y (in dim_uom), exact decimal text",
            dim_z="dimension z (in dim_uom), exact decimal text",
            dim_uom="unit of the dimensions, e.g. mm",
            attributes="JSON object of strings (upc, ean, sku, unit factor...)",
        ),
    ),
    "host_stock": (
        "Host book stock per article and location (feed stock).",
        _host(
            article_id="host article id",
            location="location id; '' is the site as a whole",
            qty="book stock, in the article's unit (whole numbers stay integers)",
            reorder_point="reorder point in the article's unit; null: the host does not say",
            qty_reserved="reserved stock in the article's unit; null: not given",
        ),
    ),
    "host_orders": (
        "Host customer orders for the ASRS (feed orders). status: open, cancelled (stays "
        "cancelled).",
        _host(
            order_id="the host's order id",
            status="open or cancelled",
            placed_at=f"when the host placed it, {TS}",
            attributes="JSON object of strings",
            cancelled_at=f"when syncd loaded the cancellation, {TS}",
        ),
    ),
    "host_order_lines": (
        "Lines of host customer orders.",
        _host(
            order_id="host_orders.order_id",
            line_id="line id within the order",
            article_id="host article id",
            qty="ordered quantity, whole units",
        ),
    ),
    "host_locations": (
        "Host locations (warehouses, stores, zones): Netstock's locations model.",
        _host(
            location_id="location id",
            name="location name",
            type="the host's word, e.g. warehouse, store",
            location_group="Netstock's location group",
            active="1 active, 0 not",
        ),
    ),
    "host_suppliers": (
        "Host suppliers: Netstock's suppliers model, import-jobs suppliers.",
        _host(
            supplier_id="supplier id",
            name="supplier name",
            type="supplier type (host's word)",
            lead_time_days="lead time in days; null: not known",
            currency="ISO 4217 code of purchases from this supplier",
            contact_name="contact person",
            contact_email="contact e-mail",
            contact_phone="contact phone",
        ),
    ),
    "host_sales": (
        "Sales transaction lines (delta feed); a negative qty is a return. Source of "
        "Netstock sales, weekly demand history and sell-through.",
        _host(
            transaction_id="transaction id",
            line_id="line within the transaction ('' when none)",
            sale_date="the day the sale counts as demand, YYYY-MM-DD",
            order_date="order day, YYYY-MM-DD",
            article_id="host article id",
            location="location id; '' the site",
            customer_id="customer or store",
            qty="quantity in the article's unit; negative: a return",
            sales_value="sales value, exact decimal text (currency of the site)",
            cost_of_sales="cost of sales, exact decimal text",
            channel="sales channel (host's word)",
        ),
    ),
    "host_purchase_orders": (
        "Open purchase orders (snapshot: a PO absent from the latest file is no longer open).",
        _host(
            po_number="PO number (import-jobs externalPoNumber)",
            supplier_id="host_suppliers.supplier_id",
            location="destination location; '' the site",
            order_date="order day, YYYY-MM-DD",
            status="the host's PO status, as written",
            currency="ISO 4217 code",
        ),
    ),
    "host_purchase_order_lines": (
        "Lines of open purchase orders.",
        _host(
            po_number="host_purchase_orders.po_number",
            line_no="line number within the PO",
            article_id="host article id",
            qty_ordered="ordered quantity, article unit",
            qty_received="received so far, article unit",
            unit_cost="cost per unit, exact decimal text",
            expected_date="expected day, YYYY-MM-DD",
        ),
    ),
    "host_po_history": (
        "Received or closed PO lines (delta; quantities are totals, a later receipt "
        "replaces the row).",
        _host(
            po_number="PO number",
            line_no="line number",
            article_id="host article id",
            supplier_id="supplier id",
            location="destination location; '' the site",
            order_date="order day, YYYY-MM-DD",
            expected_date="expected day, YYYY-MM-DD",
            receipt_date="last receipt day, YYYY-MM-DD; null if none received",
            qty_ordered="ordered quantity, article unit",
            qty_received="received quantity (total), article unit",
            unit_cost="cost per unit, exact decimal text",
        ),
    ),
    # -- Instock -------------------------------------------------------------------
    "instock_inventory": (
        "Mirror of Instock inventory (whole units). Articles Instock's list omits are all "
        "zero: kept with zeros, never deleted.",
        {
            "article_id": "Instock article id",
            "free": "free units",
            "reserved": "reserved units",
            "registered": "registered (announced, not yet stored) units",
            "scan": "number of the last inventory scan that listed it (its ledger row: "
            "pull_windows.scan of stream instock.inventory)",
            "updated_at": f"last change, {TS}",
        },
    ),
    "instock_inventory_deltas": (
        "Changes each inventory scan has seen: the scan in progress adds to its own; a "
        "settled scan's are frozen and named by host inventory_deltas file intents (a range "
        "each, outbox payload rows_from), and deleted when that file is written.",
        {
            "scan": "the scan that saw the change (instock_inventory.scan)",
            "article_id": "Instock article id",
            "free_before": "free units before",
            "reserved_before": "reserved units before",
            "registered_before": "registered units before",
            "free": "free units now",
            "reserved": "reserved units now",
            "registered": "registered units now",
        },
    ),
    "instock_stock_discrepancies": (
        "Latest reconciliation: host book stock against Instock on hand (free + reserved).",
        {
            "article_id": "article id",
            "host_qty": "host book stock, article unit",
            "instock_qty": "Instock free + reserved, whole units",
            "difference": "host_qty - instock_qty",
            "scan": "inventory scan number",
            "found_at": f"found at, {TS}",
        },
    ),
    "instock_moves": (
        "Every Instock move pulled. Moves have no id: identity is the content hash plus "
        "the occurrence among identical moves, so true repeats are kept.",
        {
            "id": "row id",
            "move_key": "content hash of the move",
            "occurrence": "1, 2, ... among identical moves",
            "article_id": "Instock article id",
            "qty": "units moved (whole units)",
            "move_timestamp": f"when it happened (Instock's time), {TS}",
            "user_id": "Instock user",
            "order_id": "Instock order it served, if any",
            "from_cell_id": "source cell",
            "to_cell_id": "target cell",
            "from_account_id": "source account",
            "to_account_id": "target account",
            "extra": "JSON: further fields of the move",
            "pulled_at": f"pulled at, {TS}",
            "run_id": "runs.run_id of the instock.moves run",
            "request_id": "Instock's request id of the page it came in (its ledger row: "
            "the pull_windows row listing it)",
        },
    ),
    "instock_article_sync": (
        "What syncd pushed of each host article and what Instock accepted. status: queued "
        "(an upload intent is pending), accepted, refused (see rejects).",
        {
            "article_id": "article id",
            "host_hash": "content hash last planned from the host",
            "accepted_hash": "content hash Instock last accepted",
            "status": "queued, accepted, refused",
            "reason": "why Instock refused it",
            "updated_at": f"last change, {TS}",
        },
    ),
    "instock_orders": (
        "Mirror of Instock orders of every kind, with status and ordertasks.",
        {
            "order_id": "Instock order id",
            "kind": "order kind (Instock's word)",
            "placed_at": f"placed at, {TS}",
            "attributes": "JSON object",
            "lines": "JSON array: the order's lines",
            "order_status": "Instock status (registered, ..., done, canceled); null until polled",
            "status_at": f"when Instock set that status, {TS}",
            "ordertask_ids": "JSON array of its ordertask ids",
            "fulfilled": "JSON object: line_id -> units picked (done ordertasks)",
            "updated_at": f"last change, {TS}",
            "list_request_id": "Instock's request id of the orders list page that last "
            "listed it (its ledger row: the pull_windows row listing it)",
            "status_request_id": "Instock's request id of the status poll that last changed it",
            "moved_at": f"newest Instock move of the order instock.orders read, {TS}",
            "polled_moved_at": "moved_at as it was at instock.orders' last poll (polled "
            "again once moved_at passes it)",
            "polled_at": f"instock.orders' last poll of it, {TS}; null: never (polled at once)",
        },
    ),
    "instock_ordertasks": (
        "Instock ordertasks (picks) of mirrored orders.",
        {
            "ordertask_id": "ordertask id",
            "order_id": "instock_orders.order_id",
            "ordertask_status": "Instock's ordertask status",
            "lines": "JSON array: its lines (to_cells, qty in whole units)",
            "updated_at": f"last change, {TS}",
            "request_id": "Instock's request id of the read that last changed it",
        },
    ),
    "instock_order_events": (
        "Order status changes waiting to be written to the host outbox (flushed per run).",
        {
            "id": "event id",
            "order_id": "Instock order id",
            "kind": "what changed (status, line)",
            "order_status": "the order's Instock status",
            "status_at": f"Instock's time of that status, {TS}",
            "line_id": "line, for a line event",
            "article_id": "article, for a line event",
            "requested": "units requested",
            "fulfilled": "units picked so far",
            "created_at": f"recorded at, {TS}",
        },
    ),
    "instock_order_sync": (
        "Orders pushed to Instock (from the host or DSOrder): what was sent and where it "
        "stands. status: queued (intent pending), accepted, refused (see rejects).",
        {
            "order_id": "Instock order id",
            "source": "host or dsorder",
            "pushed_hash": "content hash of the last create/update queued",
            "action": "create, update or cancel",
            "status": "queued, accepted, refused",
            "reason": "why Instock refused it",
            "updated_at": f"last change, {TS}",
        },
    ),
    # -- DSOrder -------------------------------------------------------------------
    "dsorder_orders": (
        "Store orders pulled from DSOrder and where each is in the loop. state: held (a "
        "line Instock cannot take: waits for `syncd orders release`), created (Instock "
        "order queued or made; followed by dsorder.progress), closing (final totals and "
        "close queued for DSOrder), closed (DSOrder closed it).",
        {
            "order_id": "DSOrder order id",
            "supplier_id": "DSOrder supplier id",
            "store_id": "ordering store",
            "order_date": f"DSOrder's order time, {TS}",
            "delivery_date": f"requested delivery, {TS}",
            "xdock_delivery_date": f"cross-dock delivery, {TS}",
            "supplier_schedule_title": "DSOrder's schedule title",
            "raw": "JSON: the order as DSOrder sent it",
            "instock_order_id": "the Instock order made from it",
            "raw_hash": "hash of the order as last listed by DSOrder; an order listed unchanged is counted, not validated again",
            "state": "held, created, closing, closed (see the table)",
            "hold_reason": "why it is held",
            "pulled_at": f"first pulled, {TS}",
            "closed_at": f"closed in DSOrder, {TS}",
            "updated_at": f"last change, {TS}",
            "released_by": "how an operator released a held order: round, partial, cancel",
            "request_id": "DSOrder's request id of the list answer it was first stored from "
            "(its ledger row: the pull_windows row listing it)",
            "moved_at": f"newest Instock move seen for its Instock order (dsorder.progress), {TS}",
            "polled_moved_at": "moved_at when the order was last polled: polled again once "
            "moved_at passes it",
            "polled_at": f"last polled in Instock by dsorder.progress (the sweep takes the oldest), {TS}",
        },
    ),
    "dsorder_lines": (
        "DSOrder order lines with their Instock mapping and the last fulfilment total "
        "reported. status: ok, rejected (cannot go to Instock: reason).",
        {
            "order_id": "dsorder_orders.order_id",
            "line_number": "line number",
            "article_id": "DSOrder's article id",
            "quantity": "ordered quantity in DSOrder's unit, exact decimal text",
            "instock_line_id": "line id in the Instock order",
            "instock_article_id": "Instock article id",
            "status": "ok or rejected",
            "reason": "why the line was rejected",
            "reported_qty": "last total queued for /fulfill, DSOrder's unit",
            "reported_finished": "1: reported as finished (DSOrder ignores it from then on)",
            "unit_factor": "host catalog units per DSOrder unit when planned (null: 1)",
            "instock_qty": "whole Instock units sent",
        },
    ),
    # -- Netstock ------------------------------------------------------------------
    "netstock_pops": (
        "Every Netstock /file/pop_* answer, raw, committed before it is parsed (the server "
        "removed it: this is the only copy). status: journaled (kept, not parsed yet), "
        "queued (host outbox intent recorded), delivered (the file is in outbox/), "
        "unparseable (kept with error).",
        {
            "id": "row id",
            "kind": "po (purchase), tr (transfer), wo (work order)",
            "raw": "the answer as received",
            "popped_at": f"popped at, {TS}",
            "status": "journaled, queued, delivered, unparseable",
            "file_name": "Netstock's name for the file",
            "lines": "lines in it (count)",
            "outbox_id": "outbox.id of the host file intent",
            "error": "why it could not be parsed",
            "queued_at": f"queued at, {TS}",
            "delivered_at": f"written to the host outbox, {TS}",
            "run_id": "runs.run_id of the netstock.pop run",
        },
    ),
    "netstock_exports": (
        "One row per Netstock dataset export. state: prepared (snapshot frozen), importing "
        "(dataset open, models being sent), processing (Netstock transforms it), complete, "
        "failed (see message and audit).",
        {
            "id": "export id",
            "dataset_id": "Netstock dataset id",
            "state": "prepared, importing, processing, complete, failed",
            "models": "JSON array: per model rows, state (pending/open/ended), lines, chunks",
            "snapshot_hash": "hash of the frozen snapshot",
            "rows": "rows in the snapshot (count)",
            "start_attempted_at": f"a dataset start was sent, {TS}",
            "started_at": f"dataset opened, {TS}",
            "processing_at": f"processing began, {TS}",
            "finished_at": f"complete or failed, {TS}",
            "status_text": "last /dataset/status answer",
            "success": "1 success, 0 failure, null not finished",
            "message": "Netstock's message",
            "audit": "JSON: /dataset/full_audit_log on failure",
            "created_at": f"created, {TS}",
            "updated_at": f"last change, {TS}",
            "run_id": "runs.run_id of the run that last changed it",
        },
    ),
    "netstock_export_rows": (
        "The frozen snapshot of an export still in flight (deleted when it finishes).",
        {
            "export_id": "netstock_exports.id",
            "model": "Netstock model",
            "seq": "chunk sequence number",
            "row": "JSON lines of one chunk",
        },
    ),
    "netstock_export_chunks": (
        "Chunks Netstock accepted, recorded in the transaction of the answer.",
        {
            "dataset_id": "Netstock dataset id",
            "model": "Netstock model",
            "chunk_no": "chunk number",
            "rows": "rows in it (count)",
            "first_seq": "its first row's sequence number",
            "sent_at": f"sent at, {TS}",
            "how": "answer (acknowledged) or confirmed (by /model/status)",
        },
    ),
    # -- import-jobs planning API ----------------------------------------------------
    "planning_import_accepted": (
        "Per import-jobs endpoint and row key: the content a COMPLETED job accepted.",
        {
            "endpoint": "catalog, inventory, suppliers, purchase-orders, orders, demand-history",
            "row_key": "the row's natural key",
            "row_hash": "content hash accepted",
            "job_id": "import job id",
            "accepted_at": f"accepted at, {TS}",
            "payload": "JSON: the row as accepted",
        },
    ),
    "planning_import_failed": (
        "Rows refused (by the API or the local check): not sent again until their content "
        "changes or their reject is retried.",
        {
            "endpoint": "endpoint",
            "row_key": "the row's natural key",
            "row_hash": "content hash refused",
            "job_id": "import job id; null: refused before sending",
            "reject_id": "rejects.id",
            "failed_at": f"refused at, {TS}",
        },
    ),
    "planning_import_jobs": (
        "Every import job submitted. status: PENDING, PROCESSING (polled again on the next "
        "run), COMPLETED, FAILED, LOST (the API no longer knows it).",
        {
            "job_id": "import job id",
            "endpoint": "endpoint",
            "status": "PENDING, PROCESSING, COMPLETED, FAILED, LOST",
            "row_count": "rows submitted (count)",
            "processed_count": "rows the API processed (count)",
            "failed_count": "rows the API refused (count)",
            "errors": "JSON: job-level errors",
            "submitted_at": f"submitted at, {TS}",
            "finished_at": f"finished at, {TS}",
            "run_id": "runs.run_id of the submitting run",
            "batch_id": "planning_import_batches.batch_id: its rows, while it is open",
        },
    ),
    "planning_import_batches": (
        "The rows of each import job still open (or about to be submitted), deleted when "
        "its outcome is recorded.",
        {
            "batch_id": "local id (never changes)",
            "endpoint": "endpoint",
            "row_count": "rows in it (count)",
            "rows": "JSON array of [row_key, row_hash, reference, payload]",
            "prepared_at": f"written at, {TS}",
            "run_id": "runs.run_id of the run that wrote it",
        },
    ),
    # -- Oregon Tool SIOP ------------------------------------------------------------
    "oregon_siop_accepted": (
        "Per data item (sold-to, ship-to, material, period): what Oregon Tool accepted.",
        {
            "sold_to": "sold-to party",
            "ship_to": "ship-to party",
            "material_id": "material",
            "year": "period year",
            "month": "period month",
            "day": "period day (1 for a monthly item)",
            "item_hash": "content hash accepted",
            "item": "JSON: the data item as accepted",
            "accepted_at": f"accepted at, {TS}",
            "run_id": "runs.run_id of the oregon.siop run",
        },
    ),
    "oregon_siop_failed": (
        "Data items refused (locally or by the API) until they change or their reject is retried.",
        {
            "sold_to": "sold-to party",
            "ship_to": "ship-to party",
            "material_id": "material",
            "year": "period year",
            "month": "period month",
            "day": "period day",
            "item_hash": "content hash refused",
            "reject_id": "rejects.id",
            "failed_at": f"refused at, {TS}",
        },
    ),
}
"""Table -> (description, column -> description), for every table of the state DB."""

_AGE = "round((julianday('now') - julianday({col})) * 86400)"

QUERIES: dict[str, dict[str, str]] = {
    "open_rejects_by_reason": {
        "title": "Open rejects by reason",
        "description": "Rejects waiting for an operator (open or flagged retry), grouped by "
        "source, field and reason, most first. `syncd rejects list --reason TEXT` lists them.",
        "sql": """
SELECT source, field, reason, count(*) AS rejects, min(created_at) AS first_at,
       max(created_at) AS last_at, min(id) AS example_id
FROM rejects
WHERE status IN ('open', 'retry')
GROUP BY source, field, reason
ORDER BY rejects DESC, source, reason
""",
    },
    "stuck_outbox": {
        "title": "What is stuck in the outbox",
        "description": "Pending intents, oldest first, with their age in seconds, attempts "
        "and last error; and intents refused or given up that wait for `syncd rejects retry` "
        "or `drop`.",
        "sql": f"""
SELECT id, destination, kind, order_key, status, attempts,
       {_AGE.format(col="created_at")} AS age_s, next_attempt_at, last_error, created_at
FROM outbox
WHERE status = 'pending'
   OR (status = 'rejected' AND id IN (SELECT outbox_id FROM rejects
                                       WHERE status IN ('open', 'retry')))
ORDER BY status = 'rejected', created_at, id
""",
    },
    "lag_per_stream": {
        "title": "Lag per stream",
        "description": "Every checkpoint: seconds since it last moved, and for a time "
        "watermark, seconds it is behind now (a cursor has none).",
        "sql": f"""
SELECT stream, value, updated_at, {_AGE.format(col="updated_at")} AS since_moved_s,
       CASE WHEN value GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T*'
            THEN {_AGE.format(col="value")} END AS watermark_lag_s,
       run_id
FROM checkpoints
ORDER BY watermark_lag_s IS NULL, watermark_lag_s DESC, stream
""",
    },
    "dsorder_orders_today": {
        "title": "Today's DSOrder orders and where each is in the loop",
        "description": "Orders pulled in the last 24 hours (or since :since, an ISO-8601 "
        "UTC time), newest first: their state, the Instock create, Instock's status, lines "
        "reported, intents still pending, and the step of the loop they are at "
        "(1 held ... 6 closed).",
        "sql": """
SELECT o.order_id, o.store_id,
       CASE
         WHEN o.state = 'held' THEN '1 held: waiting for syncd orders release'
         WHEN o.state = 'closed' THEN '6 closed in DSOrder'
         WHEN o.state = 'closing' THEN '5 final totals and close queued for DSOrder'
         WHEN s.status = 'refused' THEN '2 refused by Instock (see rejects)'
         WHEN coalesce(s.status, 'queued') = 'queued' THEN '2 create queued for Instock'
         WHEN io.order_status IS NULL THEN '3 created in Instock, not polled yet'
         ELSE '4 in Instock: ' || io.order_status
       END AS step,
       o.state, o.instock_order_id, s.status AS instock_create,
       io.order_status AS instock_status, io.status_at AS instock_status_at,
       (SELECT count(*) FROM dsorder_lines l WHERE l.order_id = o.order_id) AS lines,
       (SELECT count(*) FROM dsorder_lines l WHERE l.order_id = o.order_id
          AND l.reported_qty IS NOT NULL) AS lines_reported,
       (SELECT count(*) FROM outbox x WHERE x.status = 'pending'
          AND x.order_key IN ('order:' || o.order_id, 'order:' || o.instock_order_id))
         AS pending_intents,
       o.hold_reason, o.pulled_at, o.closed_at
FROM dsorder_orders o
LEFT JOIN instock_order_sync s ON s.order_id = o.instock_order_id
LEFT JOIN instock_orders io ON io.order_id = o.instock_order_id
WHERE o.pulled_at >= coalesce(nullif(:since, ''),
                              strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 day'))
ORDER BY o.pulled_at DESC, o.order_id
""",
    },
    "alerts": {
        "title": "Alerts",
        "description": "Open alerts first (newest first), then those resolved in the last 7 days.",
        "sql": """
SELECT id, kind, subject, message, count, opened_at, last_seen_at, resolved_at,
       CASE WHEN resolved_at IS NULL THEN 'open' ELSE 'resolved' END AS state
FROM alerts
WHERE resolved_at IS NULL
   OR resolved_at >= strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-7 days')
ORDER BY resolved_at IS NOT NULL, id DESC
""",
    },
    "last_runs_per_job": {
        "title": "Last run per job",
        "description": "Per job: its last run (status, trigger, counts, error), its last "
        "success and the failed or crashed runs since then.",
        "sql": """
SELECT r.job, r.status, r.trigger, r.started_at, r.finished_at,
       round((julianday(r.finished_at) - julianday(r.started_at)) * 86400, 1) AS duration_s,
       r.pulled, r.pushed, r.rejected, r.error,
       (SELECT max(finished_at) FROM runs o WHERE o.job = r.job AND o.status = 'ok')
         AS last_ok_at,
       (SELECT count(*) FROM runs x WHERE x.job = r.job AND x.status IN ('failed', 'crashed')
          AND x.id > coalesce((SELECT max(id) FROM runs o
                               WHERE o.job = r.job AND o.status = 'ok'), 0))
         AS failures_in_row,
       r.run_id
FROM runs r
WHERE r.id = (SELECT max(id) FROM runs x WHERE x.job = r.job)
ORDER BY r.job
""",
    },
}
"""The canned queries of `syncd inspect` (Datasette's `queries`), by URL name."""


def metadata(database: str = "syncd") -> dict[str, Any]:
    """Datasette metadata (0.65 format): descriptions and canned queries of `database`."""
    return {
        "title": "syncd state",
        "description": "syncd's SQLite state, read-only. Times are ISO-8601 UTC; quantities "
        "in the unit each column names. Canned queries below.",
        "databases": {
            database: {
                "description": "Core tables: runs, checkpoints, outbox, rejects, alerts; the "
                "rest mirror a remote or the host, or record what a destination accepted.",
                "tables": {
                    name: {"description": text, "columns": columns}
                    for name, (text, columns) in TABLES.items()
                },
                "queries": {name: dict(query) for name, query in QUERIES.items()},
            }
        },
    }
