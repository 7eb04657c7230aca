"""Schema of the state DB, as an ordered list of migrations.

Each migration runs in one transaction with its applied record (sqlite-utils
`Migrations`). `PRAGMA user_version` holds the number of migrations applied, so
an older syncd can see that a file was written by a newer one and refuse it
instead of corrupting it.

Tables are named for what they hold and timestamps are ISO-8601 UTC text
(`2026-11-23T10:15:00.000Z`), so the file reads well in sqlite3 and Datasette.
"""

from __future__ import annotations

import sqlite3

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from syncd.errors import SchemaTooNewError

migrations = Migrations("syncd")


def run_script(db: Database, script: str) -> None:
    """Run statements one by one inside the migration's transaction.

    `executescript` would COMMIT the open transaction first (Python 3.11), so a
    failing migration could leave half a schema behind.
    """
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            db.execute(statement)
            statement = ""
    if statement.strip():
        db.execute(statement)


@migrations()
def m0001_core(db: Database) -> None:
    run_script(
        db,
        """
        -- One row per job run: what ran, when, and what it did.
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL UNIQUE,
            job TEXT NOT NULL,
            trigger TEXT NOT NULL DEFAULT 'schedule',
            started_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL DEFAULT 'running'
                CHECK (status IN ('running', 'ok', 'failed', 'interrupted', 'dry-run', 'skipped')),
            pulled INTEGER NOT NULL DEFAULT 0,
            pushed INTEGER NOT NULL DEFAULT 0,
            rejected INTEGER NOT NULL DEFAULT 0,
            counts TEXT NOT NULL DEFAULT '{}',   -- JSON: further per-job counters
            warnings TEXT NOT NULL DEFAULT '[]', -- JSON: warnings remotes returned
            error TEXT
        );
        CREATE INDEX runs_job_started ON runs (job, started_at);

        -- Watermarks: a stream's cursor or time window, advanced with its data.
        CREATE TABLE checkpoints (
            stream TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            run_id TEXT
        );

        -- Push intents, recorded with the diff that caused them, drained by the sender.
        -- `order_key` serialises intents about one thing (an order, an article).
        CREATE TABLE outbox (
            -- AUTOINCREMENT: ids are never reused (host outbox files are named by them).
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            destination TEXT NOT NULL,
            kind TEXT NOT NULL,
            order_key TEXT NOT NULL,
            idempotency_key TEXT NOT NULL,
            payload TEXT NOT NULL,               -- JSON
            status TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'sent', 'rejected', 'dropped')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT NOT NULL,
            last_error TEXT,
            result TEXT,                         -- what the remote answered on success
            created_at TEXT NOT NULL,
            sent_at TEXT,
            run_id TEXT,
            UNIQUE (destination, idempotency_key)
        );
        CREATE INDEX outbox_due ON outbox (destination, status, id);
        CREATE INDEX outbox_key ON outbox (destination, order_key, status);

        -- Bad input, kept with its reason until an operator retries or drops it.
        CREATE TABLE rejects (
            id INTEGER PRIMARY KEY,
            source TEXT NOT NULL,                -- e.g. host:articles, outbox:instock
            reference TEXT NOT NULL,             -- e.g. articles-0001.csv:17, outbox:42
            field TEXT,
            reason TEXT NOT NULL,
            payload TEXT,                        -- JSON or the raw line
            status TEXT NOT NULL DEFAULT 'open'
                CHECK (status IN ('open', 'retry', 'retried', 'dropped', 'resolved')),
            outbox_id INTEGER REFERENCES outbox (id),
            run_id TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX rejects_status ON rejects (status, source);

        -- Conditions an operator must see: one open row per (kind, subject).
        CREATE TABLE alerts (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            subject TEXT NOT NULL DEFAULT '',
            message TEXT NOT NULL,
            count INTEGER NOT NULL DEFAULT 1,
            opened_at TEXT NOT NULL,
            last_seen_at TEXT NOT NULL,
            resolved_at TEXT
        );
        CREATE UNIQUE INDEX alerts_open ON alerts (kind, subject) WHERE resolved_at IS NULL;
        """,
    )


# Host tables mirror what the host's inbox files say. Each row keeps the file and
# line its current version came from and when it was loaded (`load_id` points at
# `host_files.id`; no foreign key, so old `host_files` rows can be pruned). A row
# whose content did not change keeps its older provenance, so "changed since load
# N" is `load_id > N`. Decimal measures are TEXT, as the host wrote them.
_HOST_SCHEMA = (
    """
    -- Every file taken from the host inbox. A loaded (feed, name, sha256) is unique:
    -- a file found in inbox/ again after a crash between commit and move is only moved.
    CREATE TABLE host_files (
        id INTEGER PRIMARY KEY,
        feed TEXT NOT NULL,
        name TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        format TEXT NOT NULL CHECK (format IN ('csv', 'jsonl')),
        mode TEXT NOT NULL CHECK (mode IN ('snapshot', 'delta')),
        status TEXT NOT NULL CHECK (status IN ('loaded', 'rejected')),
        rows_loaded INTEGER NOT NULL DEFAULT 0,
        rows_rejected INTEGER NOT NULL DEFAULT 0,
        rows_changed INTEGER NOT NULL DEFAULT 0,  -- inserted or updated in host tables
        rows_deleted INTEGER NOT NULL DEFAULT 0,  -- snapshot: absent from the file
        reason TEXT,                              -- why a whole file was rejected
        loaded_at TEXT NOT NULL,
        run_id TEXT
    )
    """,
    "CREATE UNIQUE INDEX host_files_loaded ON host_files (feed, name, sha256) "
    "WHERE status = 'loaded'",
    """
    -- The host catalog: what Instock needs of an article (and what other flows share).
    CREATE TABLE host_articles (
        article_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        description TEXT,
        unit TEXT NOT NULL DEFAULT 'EA',
        whole_units INTEGER NOT NULL DEFAULT 1 CHECK (whole_units IN (0, 1)),
        is_serial_numbered INTEGER NOT NULL DEFAULT 0 CHECK (is_serial_numbered IN (0, 1)),
        dim_x TEXT,
        dim_y TEXT,
        dim_z TEXT,
        dim_uom TEXT,
        attributes TEXT NOT NULL DEFAULT '{}',   -- JSON object of strings (upc, ean, sku...)
        file TEXT NOT NULL,
        line INTEGER NOT NULL,
        load_id INTEGER NOT NULL,
        loaded_at TEXT NOT NULL
    )
    """,
    """
    -- Host book stock per article and location ('' = the site as a whole).
    CREATE TABLE host_stock (
        article_id TEXT NOT NULL,
        location TEXT NOT NULL DEFAULT '',
        qty NUMERIC NOT NULL CHECK (qty >= 0),   -- whole numbers stay INTEGER
        file TEXT NOT NULL,
        line INTEGER NOT NULL,
        load_id INTEGER NOT NULL,
        loaded_at TEXT NOT NULL,
        PRIMARY KEY (article_id, location)
    )
    """,
    """
    -- Host customer orders for the ASRS. A cancelled order stays cancelled.
    CREATE TABLE host_orders (
        order_id TEXT PRIMARY KEY,
        status TEXT NOT NULL CHECK (status IN ('open', 'cancelled')),
        placed_at TEXT,
        attributes TEXT NOT NULL DEFAULT '{}',   -- JSON object of strings
        cancelled_at TEXT,                       -- when syncd loaded the cancellation
        file TEXT NOT NULL,
        line INTEGER NOT NULL,
        load_id INTEGER NOT NULL,
        loaded_at TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE host_order_lines (
        order_id TEXT NOT NULL REFERENCES host_orders (order_id) ON DELETE CASCADE,
        line_id TEXT NOT NULL,
        article_id TEXT NOT NULL,
        qty INTEGER NOT NULL CHECK (qty > 0),
        file TEXT NOT NULL,
        line INTEGER NOT NULL,
        load_id INTEGER NOT NULL,
        loaded_at TEXT NOT NULL,
        PRIMARY KEY (order_id, line_id)
    )
    """,
    "CREATE INDEX host_order_lines_article ON host_order_lines (article_id)",
)


@migrations()
def m0002_host(db: Database) -> None:
    # One statement at a time: executescript() would commit the migration's transaction.
    for statement in _HOST_SCHEMA:
        db.execute(statement)


@migrations()
def m0003_instock(db: Database) -> None:
    run_script(
        db,
        """
        -- Mirror of Instock inventory; `scan` is the last scan that listed the article
        -- (articles the list omits are all-zero, kept with zeros, never deleted).
        CREATE TABLE instock_inventory (
            article_id TEXT PRIMARY KEY,
            free INTEGER NOT NULL,
            reserved INTEGER NOT NULL,
            registered INTEGER NOT NULL,
            scan INTEGER NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX instock_inventory_scan ON instock_inventory (scan);

        -- Changes seen by the scan in progress; emptied when the scan is settled.
        CREATE TABLE instock_inventory_deltas (
            article_id TEXT PRIMARY KEY,
            free_before INTEGER NOT NULL, reserved_before INTEGER NOT NULL,
            registered_before INTEGER NOT NULL,
            free INTEGER NOT NULL, reserved INTEGER NOT NULL, registered INTEGER NOT NULL,
            scan INTEGER NOT NULL
        );

        -- Latest reconciliation: host book stock vs Instock on hand (free + reserved).
        CREATE TABLE instock_stock_discrepancies (
            article_id TEXT PRIMARY KEY,
            host_qty NUMERIC NOT NULL,
            instock_qty INTEGER NOT NULL,
            difference NUMERIC NOT NULL,
            scan INTEGER NOT NULL,
            found_at TEXT NOT NULL
        );

        -- Every move ever pulled. Moves have no id: identity is the content hash plus
        -- the occurrence number among identical moves, so true repeats are kept.
        CREATE TABLE instock_moves (
            id INTEGER PRIMARY KEY,
            move_key TEXT NOT NULL,
            occurrence INTEGER NOT NULL,
            article_id TEXT NOT NULL,
            qty INTEGER NOT NULL,
            move_timestamp TEXT NOT NULL,
            user_id TEXT, order_id TEXT,
            from_cell_id TEXT, to_cell_id TEXT,
            from_account_id TEXT, to_account_id TEXT,
            extra TEXT,
            pulled_at TEXT NOT NULL,
            run_id TEXT,
            UNIQUE (move_key, occurrence)
        );
        CREATE INDEX instock_moves_time ON instock_moves (move_timestamp);
        CREATE INDEX instock_moves_order ON instock_moves (order_id, article_id);

        -- What syncd pushed of each host article and what Instock accepted.
        CREATE TABLE instock_article_sync (
            article_id TEXT PRIMARY KEY,
            host_hash TEXT NOT NULL,         -- content last planned from the host
            accepted_hash TEXT,              -- content Instock last accepted
            status TEXT NOT NULL CHECK (status IN ('queued', 'accepted', 'refused')),
            reason TEXT,
            updated_at TEXT NOT NULL
        );

        -- Mirror of Instock orders of every kind, with status and ordertasks.
        CREATE TABLE instock_orders (
            order_id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            placed_at TEXT,
            attributes TEXT NOT NULL DEFAULT '{}',
            lines TEXT NOT NULL DEFAULT '[]',
            order_status TEXT,                -- null until first polled
            status_at TEXT,
            ordertask_ids TEXT NOT NULL DEFAULT '[]',
            fulfilled TEXT NOT NULL DEFAULT '{}',  -- line_id -> qty picked (done ordertasks)
            updated_at TEXT NOT NULL
        );
        CREATE INDEX instock_orders_open ON instock_orders (order_status);

        CREATE TABLE instock_ordertasks (
            ordertask_id TEXT PRIMARY KEY,
            order_id TEXT NOT NULL,
            ordertask_status TEXT NOT NULL,
            lines TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX instock_ordertasks_order ON instock_ordertasks (order_id);

        -- Order status changes waiting to be written to the host outbox (flushed per run).
        CREATE TABLE instock_order_events (
            id INTEGER PRIMARY KEY,
            order_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            order_status TEXT NOT NULL,
            status_at TEXT,
            line_id TEXT,
            article_id TEXT,
            requested INTEGER,
            fulfilled INTEGER,
            created_at TEXT NOT NULL
        );

        -- Host customer orders pushed to Instock: what was sent and where it stands.
        CREATE TABLE instock_order_sync (
            order_id TEXT PRIMARY KEY,
            source TEXT NOT NULL,            -- host, dsorder, ...
            pushed_hash TEXT,                -- content of the last create/update queued
            action TEXT NOT NULL,            -- create, update, cancel
            status TEXT NOT NULL CHECK (status IN ('queued', 'accepted', 'refused')),
            reason TEXT,
            updated_at TEXT NOT NULL
        );
        """,
    )


@migrations()
def m0004_dsorder(db: Database) -> None:
    run_script(
        db,
        """
        -- Store orders pulled from DSOrder, and where each stands in the loop:
        -- new -> created (Instock order queued) -> closing (final totals + close queued)
        -- -> closed; or held (a line Instock cannot take, policy 'hold').
        CREATE TABLE dsorder_orders (
            order_id TEXT PRIMARY KEY,
            supplier_id TEXT NOT NULL,
            store_id TEXT NOT NULL,
            order_date TEXT NOT NULL,
            delivery_date TEXT NOT NULL,
            xdock_delivery_date TEXT,
            supplier_schedule_title TEXT,
            raw TEXT NOT NULL,                  -- the order as DSOrder sent it (JSON)
            instock_order_id TEXT UNIQUE,       -- mapped id (reversible)
            state TEXT NOT NULL
                CHECK (state IN ('held', 'created', 'closing', 'closed')),
            hold_reason TEXT,
            pulled_at TEXT NOT NULL,
            closed_at TEXT,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX dsorder_orders_state ON dsorder_orders (state);

        -- Order lines with their mapping and the last fulfilment total queued.
        CREATE TABLE dsorder_lines (
            order_id TEXT NOT NULL REFERENCES dsorder_orders (order_id),
            line_number INTEGER NOT NULL,
            article_id TEXT NOT NULL,           -- DSOrder's article id
            quantity TEXT NOT NULL,             -- exact decimal as text
            instock_line_id TEXT,
            instock_article_id TEXT,
            status TEXT NOT NULL CHECK (status IN ('ok', 'rejected')),
            reason TEXT,
            reported_qty TEXT,                  -- last total queued for /fulfill
            reported_finished INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (order_id, line_number)
        );
        """,
    )


@migrations()
def m0005_planning_feeds(db: Database) -> None:
    # The host feeds the planning exports read (Netstock, import-jobs, Oregon Tool):
    # same conventions as m0002_host. Quantities are NUMERIC (they are summed in SQL
    # for weekly demand and sell-through; whole numbers stay INTEGER); money is TEXT,
    # the exact decimal the host wrote (passed through per row). Dates are ISO
    # `YYYY-MM-DD` text. `location` '' means the site as a whole, as in host_stock.
    run_script(
        db,
        """
        -- Host locations (warehouses, stores, zones): Netstock's locations model.
        CREATE TABLE host_locations (
            location_id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            type TEXT,                             -- e.g. warehouse, store (host's words)
            location_group TEXT,                   -- Netstock's location `group`
            active INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
            file TEXT NOT NULL,
            line INTEGER NOT NULL,
            load_id INTEGER NOT NULL,
            loaded_at TEXT NOT NULL
        );

        -- Host suppliers: Netstock's suppliers model, import-jobs suppliers.
        CREATE TABLE host_suppliers (
            supplier_id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            type TEXT,
            lead_time_days INTEGER CHECK (lead_time_days >= 0),  -- null: not known
            currency TEXT,                         -- ISO 4217, purchases from this supplier
            contact_name TEXT,
            contact_email TEXT,
            contact_phone TEXT,
            file TEXT NOT NULL,
            line INTEGER NOT NULL,
            load_id INTEGER NOT NULL,
            loaded_at TEXT NOT NULL
        );

        -- Sales transactions (delta): one row per transaction line; a negative qty is
        -- a return. Source of Netstock sales, weekly demand history and sell-through.
        CREATE TABLE host_sales (
            transaction_id TEXT NOT NULL,
            line_id TEXT NOT NULL DEFAULT '',
            sale_date TEXT NOT NULL,               -- the day the sale counts as demand
            order_date TEXT,
            article_id TEXT NOT NULL,
            location TEXT NOT NULL DEFAULT '',
            customer_id TEXT,                      -- customer or store
            qty NUMERIC NOT NULL,
            sales_value TEXT,
            cost_of_sales TEXT,
            channel TEXT,
            file TEXT NOT NULL,
            line INTEGER NOT NULL,
            load_id INTEGER NOT NULL,
            loaded_at TEXT NOT NULL,
            PRIMARY KEY (transaction_id, line_id)
        );
        CREATE INDEX host_sales_article_date ON host_sales (article_id, sale_date);
        CREATE INDEX host_sales_date ON host_sales (sale_date);
        CREATE INDEX host_sales_load ON host_sales (load_id);

        -- Open purchase orders (snapshot: a PO absent from the latest file is no longer
        -- open and goes, with its lines).
        CREATE TABLE host_purchase_orders (
            po_number TEXT PRIMARY KEY,            -- import-jobs externalPoNumber
            supplier_id TEXT NOT NULL,
            location TEXT NOT NULL DEFAULT '',     -- destination location
            order_date TEXT NOT NULL,
            status TEXT,                           -- the host's PO status, as written
            currency TEXT,
            file TEXT NOT NULL,
            line INTEGER NOT NULL,
            load_id INTEGER NOT NULL,
            loaded_at TEXT NOT NULL
        );
        CREATE INDEX host_purchase_orders_supplier ON host_purchase_orders (supplier_id);

        CREATE TABLE host_purchase_order_lines (
            po_number TEXT NOT NULL
                REFERENCES host_purchase_orders (po_number) ON DELETE CASCADE,
            line_no TEXT NOT NULL,
            article_id TEXT NOT NULL,
            qty_ordered NUMERIC NOT NULL CHECK (qty_ordered > 0),
            qty_received NUMERIC NOT NULL DEFAULT 0 CHECK (qty_received >= 0),
            unit_cost TEXT,
            expected_date TEXT,
            file TEXT NOT NULL,
            line INTEGER NOT NULL,
            load_id INTEGER NOT NULL,
            loaded_at TEXT NOT NULL,
            PRIMARY KEY (po_number, line_no)
        );
        CREATE INDEX host_purchase_order_lines_article ON host_purchase_order_lines (article_id);

        -- Received or closed PO lines (delta): one row per PO line, quantities are
        -- totals, so a line sent again (a later receipt) replaces its row.
        CREATE TABLE host_po_history (
            po_number TEXT NOT NULL,
            line_no TEXT NOT NULL,
            article_id TEXT NOT NULL,
            supplier_id TEXT NOT NULL,
            location TEXT NOT NULL DEFAULT '',
            order_date TEXT NOT NULL,
            expected_date TEXT,
            receipt_date TEXT,                     -- last receipt; null if none received
            qty_ordered NUMERIC NOT NULL CHECK (qty_ordered > 0),
            qty_received NUMERIC NOT NULL CHECK (qty_received >= 0),
            unit_cost TEXT,
            file TEXT NOT NULL,
            line INTEGER NOT NULL,
            load_id INTEGER NOT NULL,
            loaded_at TEXT NOT NULL,
            PRIMARY KEY (po_number, line_no)
        );
        CREATE INDEX host_po_history_article_receipt ON host_po_history (article_id, receipt_date);
        CREATE INDEX host_po_history_supplier_receipt
            ON host_po_history (supplier_id, receipt_date);
        CREATE INDEX host_po_history_load ON host_po_history (load_id);
        """,
    )


# Migrations apply in the order they are defined here, not by their numbers, and each is
# recorded by name: m0008_netstock runs sixth, m0007_planning_import seventh and
# m0006_oregon_siop eighth (they were numbered on parallel branches). The names stay as they
# are, because existing state DBs list them as applied; a new migration goes at the end.
@migrations()
def m0008_netstock(db: Database) -> None:
    # Netstock: the journal of destructive pops (`/file/pop_*`) and the dataset export's
    # resumable state machine (one row per dataset import, chunks recorded as sent).
    run_script(
        db,
        """
        -- Every popped answer, raw, written (committed) before it is parsed: the server
        -- removed it, this row is the only copy. status: journaled -> queued (host outbox
        -- intent recorded) -> delivered (the file is in outbox/); unparseable is kept.
        CREATE TABLE netstock_pops (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL CHECK (kind IN ('po', 'tr', 'wo')),
            raw TEXT NOT NULL,
            popped_at TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'journaled'
                CHECK (status IN ('journaled', 'queued', 'delivered', 'unparseable')),
            file_name TEXT,                       -- Netstock's name for the file
            lines INTEGER,
            outbox_id INTEGER,                    -- the host outbox intent
            error TEXT,
            queued_at TEXT,
            delivered_at TEXT,
            run_id TEXT
        );
        CREATE INDEX netstock_pops_status ON netstock_pops (status, id);

        -- One row per export attempt: prepared (snapshot frozen) -> importing (dataset
        -- open) -> processing -> complete | failed. `models` is a JSON list of
        -- {model, rows, state (pending/open/ended), lines_sent, chunks}.
        CREATE TABLE netstock_exports (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            dataset_id TEXT UNIQUE,
            state TEXT NOT NULL
                CHECK (state IN ('prepared', 'importing', 'processing', 'complete', 'failed')),
            models TEXT NOT NULL DEFAULT '[]',
            snapshot_hash TEXT NOT NULL,
            rows INTEGER NOT NULL DEFAULT 0,
            start_attempted_at TEXT,              -- a dataset/start was sent (adopt on conflict)
            started_at TEXT,
            processing_at TEXT,
            finished_at TEXT,
            status_text TEXT,                     -- last /dataset/status status
            success INTEGER,
            message TEXT,
            audit TEXT,                           -- JSON: /dataset/full_audit_log on failure
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            run_id TEXT
        );
        CREATE INDEX netstock_exports_state ON netstock_exports (state, id);

        -- The frozen snapshot of an export still in flight (deleted when it finishes).
        CREATE TABLE netstock_export_rows (
            export_id INTEGER NOT NULL REFERENCES netstock_exports (id) ON DELETE CASCADE,
            model TEXT NOT NULL,
            seq INTEGER NOT NULL,
            row TEXT NOT NULL,                    -- JSON lines (one chunk, newline-separated;
                                                  -- one line in files from before)
            PRIMARY KEY (export_id, model, seq)
        );

        -- Chunks the server accepted, recorded in the transaction of the answer.
        CREATE TABLE netstock_export_chunks (
            dataset_id TEXT NOT NULL,
            model TEXT NOT NULL,
            chunk_no INTEGER NOT NULL,
            rows INTEGER NOT NULL,
            first_seq INTEGER NOT NULL,
            sent_at TEXT NOT NULL,
            how TEXT NOT NULL DEFAULT 'answer',   -- answer | confirmed (by /model/status)
            PRIMARY KEY (dataset_id, model, chunk_no)
        );
        """,
    )


@migrations()
def m0007_planning_import(db: Database) -> None:
    # Import-jobs planning API (`planning.import`): what each endpoint last accepted, the
    # jobs submitted (a pending one is polled again after a restart) and the rows each sent.
    run_script(
        db,
        """
        -- Per endpoint and natural key: the content (hash) a COMPLETED job accepted.
        CREATE TABLE planning_import_accepted (
            endpoint TEXT NOT NULL,
            row_key TEXT NOT NULL,
            row_hash TEXT NOT NULL,
            job_id TEXT NOT NULL,
            accepted_at TEXT NOT NULL,
            PRIMARY KEY (endpoint, row_key)
        );

        -- Rows refused (by the API or by the local check): not sent again until their
        -- content changes or their reject is retried.
        CREATE TABLE planning_import_failed (
            endpoint TEXT NOT NULL,
            row_key TEXT NOT NULL,
            row_hash TEXT NOT NULL,
            job_id TEXT,                          -- null: refused before sending
            reject_id INTEGER,
            failed_at TEXT NOT NULL,
            PRIMARY KEY (endpoint, row_key)
        );
        CREATE INDEX planning_import_failed_reject ON planning_import_failed (reject_id);

        -- Every job submitted, recorded right after its 202; PENDING/PROCESSING ones are
        -- polled again first on the next run.
        CREATE TABLE planning_import_jobs (
            job_id TEXT PRIMARY KEY,
            endpoint TEXT NOT NULL,
            status TEXT NOT NULL,                 -- PENDING, PROCESSING, COMPLETED, FAILED, LOST
            row_count INTEGER NOT NULL DEFAULT 0,
            processed_count INTEGER NOT NULL DEFAULT 0,
            failed_count INTEGER NOT NULL DEFAULT 0,
            errors TEXT,                          -- JSON: job-level errors
            submitted_at TEXT NOT NULL,
            finished_at TEXT,
            run_id TEXT
        );
        CREATE INDEX planning_import_jobs_open ON planning_import_jobs (status, submitted_at);

        -- The rows a job carried, by their index in the submitted array; deleted when
        -- the job's outcome is recorded (the job row keeps its counts).
        CREATE TABLE planning_import_sent (
            job_id TEXT NOT NULL REFERENCES planning_import_jobs (job_id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            row_key TEXT NOT NULL,
            row_hash TEXT NOT NULL,
            reference TEXT NOT NULL,              -- host file:line the row came from
            payload TEXT NOT NULL,                -- JSON: the row as sent (for its reject)
            PRIMARY KEY (job_id, seq)
        );
        """,
    )


@migrations()
def m0006_oregon_siop(db: Database) -> None:
    # Oregon Tool SIOP (`oregon.siop`): per data item key (sold-to, ship-to, material,
    # period; `day` is 1 for a monthly item, as the API defaults it) what the API last
    # accepted, and what it last refused (locally or remotely) until it changes or its
    # reject is retried.
    run_script(
        db,
        """
        CREATE TABLE oregon_siop_accepted (
            sold_to TEXT NOT NULL,
            ship_to TEXT NOT NULL,
            material_id TEXT NOT NULL,
            year INTEGER NOT NULL,
            month INTEGER NOT NULL,
            day INTEGER NOT NULL,
            item_hash TEXT NOT NULL,
            item TEXT NOT NULL,                   -- JSON: the data item as accepted
            accepted_at TEXT NOT NULL,
            run_id TEXT,
            PRIMARY KEY (sold_to, ship_to, material_id, year, month, day)
        );

        CREATE TABLE oregon_siop_failed (
            sold_to TEXT NOT NULL,
            ship_to TEXT NOT NULL,
            material_id TEXT NOT NULL,
            year INTEGER NOT NULL,
            month INTEGER NOT NULL,
            day INTEGER NOT NULL,
            item_hash TEXT NOT NULL,
            reject_id INTEGER,
            failed_at TEXT NOT NULL,
            PRIMARY KEY (sold_to, ship_to, material_id, year, month, day)
        );
        CREATE INDEX oregon_siop_failed_reject ON oregon_siop_failed (reject_id);
        """,
    )


@migrations()
def m0009_planning_import_rows(db: Database) -> None:
    # `planning.import` keeps the rows a job carried in the job row itself, as one JSON
    # array ([row_key, row_hash, reference, payload] per row, in submitted order), instead
    # of one table row each: one write per job instead of one per row. Jobs still open keep
    # their rows.
    run_script(
        db,
        """
        ALTER TABLE planning_import_jobs ADD COLUMN rows TEXT;
        UPDATE planning_import_jobs SET rows = (
            SELECT json_group_array(json_array(row_key, row_hash, reference, json(payload)))
            FROM (SELECT * FROM planning_import_sent s
                  WHERE s.job_id = planning_import_jobs.job_id ORDER BY seq)
        ) WHERE job_id IN (SELECT job_id FROM planning_import_sent);
        DROP TABLE planning_import_sent;
        """,
    )


@migrations()
def m0010_planning_fields(db: Database) -> None:
    # What the host owns of an import-jobs inventory row besides its stock: the reorder
    # point (the API's internal minimum) and reserved stock, both optional (NULL: the host
    # does not say). And, for purchase orders and customer orders, the row each endpoint
    # last accepted, so that one leaving the open set can be sent once more, closed.
    run_script(
        db,
        """
        ALTER TABLE host_stock ADD COLUMN reorder_point NUMERIC CHECK (reorder_point >= 0);
        ALTER TABLE host_stock ADD COLUMN qty_reserved NUMERIC CHECK (qty_reserved >= 0);
        ALTER TABLE planning_import_accepted ADD COLUMN payload TEXT;
        """,
    )


@migrations()
def m0011_dsorder_units(db: Database) -> None:
    # A DSOrder line in whole Instock units: the host catalog's conversion factor at the
    # time the order was planned (NULL: 1), so that fulfilment is reported back in
    # DSOrder's units even if the catalog changes, and the Instock quantity sent (after
    # an operator's rounding, too). How an operator released a held order.
    run_script(
        db,
        """
        ALTER TABLE dsorder_lines ADD COLUMN unit_factor TEXT;
        ALTER TABLE dsorder_lines ADD COLUMN instock_qty INTEGER;
        ALTER TABLE dsorder_orders ADD COLUMN released_by TEXT
            CHECK (released_by IN ('round', 'partial', 'cancel'));
        """,
    )


@migrations()
def m0012_metrics_indexes(db: Database) -> None:
    # The metrics read the last run of each status per job and the intents of one run at
    # every scrape and after every run: indexed, so that costs a few lookups however
    # many runs and sent intents the retention period keeps.
    run_script(
        db,
        """
        CREATE INDEX runs_job_status ON runs (job, status, id);
        CREATE INDEX outbox_run ON outbox (run_id);
        """,
    )


@migrations()
def m0013_run_crashed(db: Database) -> None:
    # A run whose job raised an unexpected exception (a bug, not a remote's or the input's
    # fault) is 'crashed', apart from 'failed' (a classified error). SQLite cannot change a
    # CHECK constraint in place: the table is rebuilt with the same columns and rows, and
    # its indexes made again (m0001's and m0012's). Rows written before this keep 'failed'.
    run_script(
        db,
        """
        CREATE TABLE runs_new (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL UNIQUE,
            job TEXT NOT NULL,
            trigger TEXT NOT NULL DEFAULT 'schedule',
            started_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL DEFAULT 'running'
                CHECK (status IN ('running', 'ok', 'failed', 'crashed', 'interrupted', 'dry-run', 'skipped')),
            pulled INTEGER NOT NULL DEFAULT 0,
            pushed INTEGER NOT NULL DEFAULT 0,
            rejected INTEGER NOT NULL DEFAULT 0,
            counts TEXT NOT NULL DEFAULT '{}',   -- JSON: further per-job counters
            warnings TEXT NOT NULL DEFAULT '[]', -- JSON: warnings remotes returned
            error TEXT                           -- a crash: the exception and its traceback
        );
        INSERT INTO runs_new (id, run_id, job, trigger, started_at, finished_at, status, pulled,
                              pushed, rejected, counts, warnings, error)
            SELECT id, run_id, job, trigger, started_at, finished_at, status, pulled, pushed,
                   rejected, counts, warnings, error FROM runs;
        DROP TABLE runs;
        ALTER TABLE runs_new RENAME TO runs;
        CREATE INDEX runs_job_started ON runs (job, started_at);
        CREATE INDEX runs_job_status ON runs (job, status, id);
        """,
    )


@migrations()
def m0014_pull_windows(db: Database) -> None:
    # The window ledger: one row per page (or window) a pull stored, written in the
    # transaction of the data it covers, so `syncd coverage` can prove which periods a
    # stream's pulls covered and name each gap. A time-window pull fills window_from /
    # window_to; a cursor walk fills cursor_before / cursor_after (the stream's checkpoint
    # before and after the row; both NULL: a page that moved no checkpoint). Compacted by
    # state.housekeeping into pull_window_days, which keeps each day's covered intervals
    # (so a gap stays visible forever).
    run_script(
        db,
        """
        CREATE TABLE pull_windows (
            id INTEGER PRIMARY KEY,
            stream TEXT NOT NULL,
            job TEXT NOT NULL,
            run_id TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('window', 'cursor', 'scan')),
            window_from TEXT,
            window_to TEXT,
            cursor_before TEXT,
            cursor_after TEXT,
            lag_s REAL,
            overlap_s REAL,
            pages INTEGER NOT NULL DEFAULT 1,
            listed INTEGER NOT NULL DEFAULT 0,
            stored INTEGER NOT NULL DEFAULT 0,
            rejected INTEGER NOT NULL DEFAULT 0,
            content_hash TEXT,
            request_ids TEXT NOT NULL DEFAULT '[]',  -- JSON: at most 20, see request_ids_more
            request_ids_more INTEGER NOT NULL DEFAULT 0,
            started_at TEXT NOT NULL,
            ended_at TEXT NOT NULL
        );
        CREATE INDEX pull_windows_stream ON pull_windows (stream, ended_at);

        CREATE TABLE pull_window_days (
            stream TEXT NOT NULL,
            day TEXT NOT NULL,
            job TEXT NOT NULL,
            kind TEXT NOT NULL,
            windows INTEGER NOT NULL,
            pages INTEGER NOT NULL,
            listed INTEGER NOT NULL,
            stored INTEGER NOT NULL,
            rejected INTEGER NOT NULL,
            covered TEXT NOT NULL,  -- JSON: [[from, to], ...] the union of the day's windows
            min_overlap_s REAL,
            overlap_s REAL,
            lag_s REAL,
            cursor_after TEXT,      -- a cursor stream: the checkpoint its last row left
            last_ended_at TEXT,     -- ... and when that row ended
            content_hash TEXT NOT NULL,  -- hash of the day's rows' content hashes, in order
            PRIMARY KEY (stream, day)
        );
        """,
    )


@migrations()
def m0015_coverage_gaps(db: Database) -> None:
    # The gaps state.housekeeping found in the ledger rows it compacted, with their cause
    # and failed runs: kept forever, as the runs that explain a gap are purged after
    # retention_days while the gap itself must stay provable.
    run_script(
        db,
        """
        CREATE TABLE coverage_gaps (
            stream TEXT NOT NULL,
            gap_from TEXT NOT NULL,
            gap_to TEXT NOT NULL,
            cause TEXT NOT NULL,
            runs TEXT NOT NULL DEFAULT '[]',  -- JSON: the failed runs while it was open
            found_at TEXT NOT NULL,
            PRIMARY KEY (stream, gap_from)
        );
        """,
    )


@migrations()
def m0016_rate_budget(db: Database) -> None:
    # One row per connector: its token bucket (tokens at wall-clock `at`, seconds since the
    # epoch; negative = requests already promised a slot) and, after a 429 with Retry-After,
    # the moment every request of that connector waits for. Written by
    # syncd/state/ratebudget.py at most once a second per connector (and on a 429), so a
    # restart neither resets the budget nor forgets the park.
    run_script(
        db,
        """
        CREATE TABLE rate_budget (
            connector TEXT PRIMARY KEY,
            tokens REAL NOT NULL,
            at REAL NOT NULL,
            parked_until REAL NOT NULL DEFAULT 0,
            park_reason TEXT NOT NULL DEFAULT ''
        );
        """,
    )


@migrations()
def m0017_outbox_request_ids(db: Database) -> None:
    # Lineage of what was sent: the remote request ids (X-Request-ID) of the answers to
    # the attempt that delivered an intent, so `syncd trace` can name them. NULL for
    # intents sent before this column, and for host outbox files (no remote).
    db.execute("ALTER TABLE outbox ADD COLUMN request_ids TEXT")


@migrations()
def m0018_outbox_unclear(db: Database) -> None:
    # Read back before resending: 1 while an attempt is in flight (set before the send,
    # so a crash mid-send leaves it set) and after an attempt that ended without a clear
    # answer (timeout after sending, dropped connection, 5xx); the next attempt reads the
    # remote first. 0 for rows written before this column: they are sent as before.
    db.execute("ALTER TABLE outbox ADD COLUMN unclear INTEGER NOT NULL DEFAULT 0")


@migrations()
def m0019_dsorder_raw_hash(db: Database) -> None:
    # The hash of each order's record as DSOrder last listed it (`raw_hash` of its
    # canonical JSON text): dsorder.pull takes an order listed again unchanged without
    # validating it. NULL for orders stored before this column: validated once more,
    # then hashed.
    db.execute("ALTER TABLE dsorder_orders ADD COLUMN raw_hash TEXT")


@migrations()
def m0020_pull_lineage(db: Database) -> None:
    # Lineage of pulled records: the remote request id of the answer each came in, so
    # `syncd trace` names it and finds its window ledger row (the pull_windows row that
    # lists that request id). An inventory scan is one ledger row (kind 'scan') with its
    # number in pull_windows.scan, the number instock_inventory.scan keeps per article.
    # NULL for rows stored before these columns.
    run_script(
        db,
        """
        ALTER TABLE pull_windows ADD COLUMN scan INTEGER;
        ALTER TABLE dsorder_orders ADD COLUMN request_id TEXT;
        ALTER TABLE instock_orders ADD COLUMN list_request_id TEXT;
        ALTER TABLE instock_orders ADD COLUMN status_request_id TEXT;
        ALTER TABLE instock_ordertasks ADD COLUMN request_id TEXT;
        ALTER TABLE instock_moves ADD COLUMN request_id TEXT;
        """,
    )


@migrations()
def m0021_backfills(db: Database) -> None:
    # `syncd backfill`: a request per re-pull of a past period of one stream, beside its
    # live cursor. The CLI inserts it (`requested`); the daemon's backfill job runs it
    # (`running`, its own checkpoint in `cursor`, committed with what each step applied)
    # and ends it (`done`, `failed`, `cancelled`). One requested or running backfill per
    # stream (the partial unique index). `backfill_differences` keeps what each found
    # missing or changed (bounded per backfill; the counts are exact). `pull_windows`
    # rows a backfill wrote carry its id, so coverage counts them apart from live pulls.
    run_script(
        db,
        """
        CREATE TABLE backfills (
            id INTEGER PRIMARY KEY,
            stream TEXT NOT NULL,
            period_from TEXT NOT NULL,
            period_to TEXT NOT NULL,
            dry_run INTEGER NOT NULL DEFAULT 0,
            status TEXT NOT NULL DEFAULT 'requested'
                CHECK (status IN ('requested', 'running', 'done', 'failed', 'cancelled')),
            cursor TEXT,
            steps INTEGER NOT NULL DEFAULT 0,
            found INTEGER NOT NULL DEFAULT 0,
            missing INTEGER NOT NULL DEFAULT 0,
            changed INTEGER NOT NULL DEFAULT 0,
            applied INTEGER NOT NULL DEFAULT 0,
            rejected INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            run_id TEXT,
            requested_at TEXT NOT NULL,
            started_at TEXT,
            updated_at TEXT NOT NULL,
            finished_at TEXT
        );
        CREATE UNIQUE INDEX backfills_one_active ON backfills (stream)
            WHERE status IN ('requested', 'running');

        CREATE TABLE backfill_differences (
            backfill_id INTEGER NOT NULL REFERENCES backfills (id),
            seq INTEGER NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('missing', 'changed')),
            key TEXT NOT NULL,
            detail TEXT NOT NULL,  -- JSON: the record (missing) or {field: [held, listed]}
            applied INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (backfill_id, seq)
        );

        ALTER TABLE pull_windows ADD COLUMN backfill_id INTEGER;
        """,
    )


@migrations()
def m0022_dsorder_follow(db: Database) -> None:
    # dsorder.progress follows an order from the Instock moves stream: `moved_at`, the
    # newest Instock move timestamp seen for its Instock order (UTC ISO text);
    # `polled_moved_at`, what `moved_at` was when the order was last polled (the order is
    # polled again once `moved_at` passes it); `polled_at`, when it was last polled (the
    # slow sweep polls the orders polled longest ago). NULL: never seen moving / polled.
    db.execute("ALTER TABLE dsorder_orders ADD COLUMN moved_at TEXT")
    db.execute("ALTER TABLE dsorder_orders ADD COLUMN polled_moved_at TEXT")
    db.execute("ALTER TABLE dsorder_orders ADD COLUMN polled_at TEXT")


@migrations()
def m0023_inventory_without_rowid(db: Database) -> None:
    # Every inventory scan rewrites every mirror row (its `scan`): as WITHOUT ROWID tables
    # the mirror and the deltas are one b-tree each (keyed by article_id) instead of a rowid
    # table plus its primary-key index, and the index on `scan` goes (it was rewritten for
    # every row of every scan, and read only by the once-a-scan count and zeroing of
    # absent articles, a full pass either way). Same columns, same rows.
    run_script(
        db,
        """
        CREATE TABLE instock_inventory_new (
            article_id TEXT PRIMARY KEY,
            free INTEGER NOT NULL,
            reserved INTEGER NOT NULL,
            registered INTEGER NOT NULL,
            scan INTEGER NOT NULL,
            updated_at TEXT NOT NULL
        ) WITHOUT ROWID;
        INSERT INTO instock_inventory_new
            SELECT article_id, free, reserved, registered, scan, updated_at
            FROM instock_inventory;
        DROP TABLE instock_inventory;
        ALTER TABLE instock_inventory_new RENAME TO instock_inventory;

        CREATE TABLE instock_inventory_deltas_new (
            article_id TEXT PRIMARY KEY,
            free_before INTEGER NOT NULL, reserved_before INTEGER NOT NULL,
            registered_before INTEGER NOT NULL,
            free INTEGER NOT NULL, reserved INTEGER NOT NULL, registered INTEGER NOT NULL,
            scan INTEGER NOT NULL
        ) WITHOUT ROWID;
        INSERT INTO instock_inventory_deltas_new SELECT * FROM instock_inventory_deltas;
        DROP TABLE instock_inventory_deltas;
        ALTER TABLE instock_inventory_deltas_new RENAME TO instock_inventory_deltas;
        """,
    )


@migrations()
def m0024_pull_window_pulls(db: Database) -> None:
    # A pull that found exactly what the stream's previous ledger row found (the same
    # content hash, contiguous with it, nothing rejected) extends that row instead of
    # adding one, so an idle stream adds no rows: `pulls` counts the pulls a row stands
    # for (1: a row of its own), and its pages/listed/stored are their sums.
    db.execute("ALTER TABLE pull_windows ADD COLUMN pulls INTEGER NOT NULL DEFAULT 1")


@migrations()
def m0025_instock_orders_follow(db: Database) -> None:
    # instock.orders follows the host's orders from the Instock moves stream, as
    # dsorder.progress follows the loop's: `moved_at`, the newest move timestamp seen for
    # the order (UTC ISO text); `polled_moved_at`, what `moved_at` was when it was last
    # polled (polled again once `moved_at` passes it); `polled_at`, when it was last
    # polled (never: polled at once; the slow sweep takes the longest unpolled).
    db.execute("ALTER TABLE instock_orders ADD COLUMN moved_at TEXT")
    db.execute("ALTER TABLE instock_orders ADD COLUMN polled_moved_at TEXT")
    db.execute("ALTER TABLE instock_orders ADD COLUMN polled_at TEXT")


@migrations()
def m0026_inventory_deltas_by_scan(db: Database) -> None:
    # A settled scan's deltas stay where they are, frozen under their scan number, until
    # the host files that name them are written (the outbox intents carry a range of them,
    # not a copy): so the key is (scan, article_id), and the next scan's deltas go beside
    # them. Same columns, same rows.
    run_script(
        db,
        """
        CREATE TABLE instock_inventory_deltas_new (
            scan INTEGER NOT NULL,
            article_id TEXT NOT NULL,
            free_before INTEGER NOT NULL, reserved_before INTEGER NOT NULL,
            registered_before INTEGER NOT NULL,
            free INTEGER NOT NULL, reserved INTEGER NOT NULL, registered INTEGER NOT NULL,
            PRIMARY KEY (scan, article_id)
        ) WITHOUT ROWID;
        INSERT INTO instock_inventory_deltas_new
            SELECT scan, article_id, free_before, reserved_before, registered_before,
                   free, reserved, registered
            FROM instock_inventory_deltas;
        DROP TABLE instock_inventory_deltas;
        ALTER TABLE instock_inventory_deltas_new RENAME TO instock_inventory_deltas;
        """,
    )


@migrations()
def m0027_follow_indexes(db: Database) -> None:
    # dsorder.progress picks, every run, the open orders that moved since their last poll
    # and the ones the sweep is due to read: partial indexes over just those, so a run reads
    # what is due instead of every open order (bench/follow_queries.py). The WHERE clauses
    # repeat the queries' own terms (`moved_orders_due`, `orders_to_sweep`, which name
    # these indexes): SQLite uses a partial index only for a query whose WHERE implies its.
    run_script(
        db,
        """
        CREATE INDEX dsorder_orders_moved_due ON dsorder_orders (moved_at, order_id)
            WHERE state = 'created' AND moved_at > coalesce(polled_moved_at, '');
        CREATE INDEX dsorder_orders_sweep_due
            ON dsorder_orders (coalesce(polled_at, updated_at), order_id)
            WHERE state = 'created';
        """,
    )


@migrations()
def m0028_planning_import_batches(db: Database) -> None:
    # The rows a `planning.import` job carries move out of the job row into a row of their
    # own, keyed by a local id that never changes (`batch_id`): SQLite rewrites a whole row
    # on every UPDATE, so each small status change of a job (SUBMITTING -> its job id ->
    # its end) rewrote its ~100 KB of rows, in the step every job takes in turn. A batch's
    # rows are now written once, before its submit, and deleted when the job ends. Jobs
    # still open keep their rows (batch_id = their job id).
    run_script(
        db,
        """
        CREATE TABLE planning_import_batches (
            batch_id TEXT PRIMARY KEY,
            endpoint TEXT NOT NULL,
            row_count INTEGER NOT NULL,
            rows TEXT NOT NULL,                   -- JSON [row_key, row_hash, reference, payload]
            prepared_at TEXT NOT NULL,
            run_id TEXT
        );
        ALTER TABLE planning_import_jobs ADD COLUMN batch_id TEXT;
        INSERT INTO planning_import_batches
            SELECT job_id, endpoint, row_count, rows, submitted_at, run_id
            FROM planning_import_jobs WHERE rows IS NOT NULL;
        UPDATE planning_import_jobs SET batch_id = job_id WHERE rows IS NOT NULL;
        ALTER TABLE planning_import_jobs DROP COLUMN rows;
        CREATE INDEX planning_import_jobs_batch ON planning_import_jobs (batch_id)
            WHERE batch_id IS NOT NULL;
        """,
    )


SCHEMA_VERSION = len(migrations._migrations)


def apply_migrations(db: Database) -> int:
    """Bring the schema up to date; refuse a file written by a newer syncd."""
    found = db.execute("PRAGMA user_version").fetchone()[0]
    known = {m.name for m in migrations._migrations}
    unknown = [m.name for m in migrations.applied(db) if m.name not in known]
    if found > SCHEMA_VERSION or unknown:
        raise SchemaTooNewError(
            f"state DB has schema version {found} (migrations {unknown or 'unknown'}), "
            f"this syncd knows up to {SCHEMA_VERSION}: it was written by a newer syncd. "
            "Upgrade syncd, or point daemon.state_dir at another directory."
        )
    if migrations.pending(db):
        migrations.apply(db)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return SCHEMA_VERSION
