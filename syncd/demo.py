"""`syncd demo`: the daemon against local simulators, start to finish, in about a minute.

Starts the Instock, DSOrder, Netstock, import-jobs and Oregon SIOP simulators on
free loopback ports, writes sample host inbox files (a catalog with new, changed
and unacceptable articles; book stock that differs from Instock here and there;
customer orders, one for an unknown article; and the planning feeds: locations,
suppliers, a few weeks of sales, open purchase orders and PO history), runs
`syncd run` as a real child process with `config/demo.toml` while DSOrder
stores submit orders (some with fractional quantities or unknown articles) and
the warehouse works (orders syncd created are advanced to done, stock is
adjusted), then stops the daemon with SIGTERM and prints what happened and
where to look. The planning exports (import-jobs, Netstock dataset and generated
orders, Oregon sell-through) run every few seconds, so they are done early; the
Netstock simulator's processing phases are cut to a few seconds for the same
reason.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import random
import shlex
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, datetime, timedelta
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click

from syncd.lifecycle import restrict_umask
from syncd.sandbox.dsorder import DSOrderSim
from syncd.sandbox.import_jobs import ImportJobsSim
from syncd.sandbox.instock import InstockSim
from syncd.sandbox.netstock import NetstockSim
from syncd.sandbox.oregon_siop import OregonSiopSim

ARTICLES = 120
STATUS_ACCEPTED = "status = 'accepted'"
STATUS_REFUSED = "status = 'refused'"
STATUS_SENT = "status = 'sent'"
STATUS_PENDING = "status = 'pending'"
STATUS_OPEN = "status = 'open'"
STATUS_FULFILL = "destination = 'dsorder' AND kind = 'fulfill' AND status = 'sent'"
# Netstock processing (Importing .. Copying_po_db) in ~2 s instead of ~8 s.
NETSTOCK_PHASES = (
    ("Importing", 0.2),
    ("Importing_complete", 0.2),
    ("Transforming", 1.0),
    ("Copying_po_db", 0.5),
)
# Refused by the Oregon simulator's business rule: shows the reject path.
OREGON_UNKNOWN_MATERIAL = "DEMO0010"


def demo_config_path() -> Path:
    return Path(str(resources.files("syncd") / "defaults" / "demo.toml"))


def syncd_command(argv0: str, executable: str) -> str:
    """How to run this same syncd from a shell, for the hints at the end: the venv is
    usually not activated (the README's first command runs `.venv/bin/syncd demo`), so a
    bare `syncd` would not be found, or would be another one.

    The script that was run (argv[0], resolved) if it is a `syncd` executable; else the
    `syncd` beside this Python (the venv's bin); else this Python with `-m syncd.cli`."""
    started = Path(argv0)
    if started.name == "syncd" and started.is_file():
        return shlex.quote(str(started.resolve()))
    beside = Path(executable).parent / "syncd"
    if beside.is_file() and os.access(beside, os.X_OK):
        return shlex.quote(str(beside.absolute()))
    return f"{shlex.quote(executable)} -m syncd.cli"


def write_inbox(sim: InstockSim, inbox: Path, rng: random.Random) -> dict[str, Any]:
    """Sample host files built from the simulator's own catalog, so they mostly agree."""
    inbox.mkdir(parents=True, exist_ok=True)
    articles = sorted(sim.state.articles.values(), key=lambda a: a["article_id"])
    plain = [a for a in articles if not a.get("is_serial_numbered")]
    with_stock = [a for a in plain if sim.stock(a["article_id"]).free > 5]
    new_ids = [f"DEMO{n:04d}" for n in range(1, 11)]
    renamed = next(a for a in plain if not sim.state.has_moves(a["article_id"]))

    tmp = inbox / "articles-demo.csv.tmp"
    attr_names = sorted({k for a in articles for k in (a.get("attributes") or {})})
    with tmp.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(
            [
                "article_id",
                "name",
                "is_serial_numbered",
                "dim_x",
                "dim_y",
                "dim_z",
                "dim_uom",
                *(f"attr.{n}" for n in attr_names),
            ]
        )
        for article in plain:
            name = article["name"] + (" (new label)" if article is renamed else "")
            dims = article.get("dimensions") or {}
            attrs = article.get("attributes") or {}
            out.writerow(
                [
                    article["article_id"],
                    name,
                    "false",
                    *(dims.get(k, "") for k in ("x", "y", "z", "uom")),
                    *(attrs.get(n, "") for n in attr_names),
                ]
            )
        blank = [""] * (4 + len(attr_names))
        for article_id in new_ids:
            out.writerow([article_id, f"Demo article {article_id}", "false", *blank])
        out.writerow(["DEMOSERIAL1", "Serial-numbered scanner", "true", *blank])  # Instock refuses
        out.writerow(["DEMOBAD", "", "maybe", *blank])  # a bad host row: lands in rejects
    tmp.rename(inbox / "articles-demo.csv")

    tmp = inbox / "stock-demo.csv.tmp"
    off = set(rng.sample([a["article_id"] for a in with_stock], 5))
    with tmp.open("w", newline="") as fh:
        out = csv.writer(fh)
        # reorder_point: the host owns the planner's minimum (the import-jobs API would
        # reset it to 0 without one, so a stock row without it is held, not sent)
        out.writerow(["article_id", "location", "qty", "reorder_point"])
        for article in plain:
            stock = sim.stock(article["article_id"])
            qty = stock.free + stock.reserved + (3 if article["article_id"] in off else 0)
            out.writerow([article["article_id"], "", qty, 2 * rng.randint(2, 12)])
    tmp.rename(inbox / "stock-demo.csv")

    tmp = inbox / "orders-demo.csv.tmp"
    orders = []
    with tmp.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["action", "order_id", "line_id", "article_id", "qty"])
        for n in range(1, 9):
            order_id = f"HOST-{n:04d}"
            orders.append(order_id)
            for line in range(1, rng.randint(1, 3) + 1):
                article = rng.choice(with_stock)
                out.writerow(["create", order_id, f"{order_id}-{line}", article["article_id"], 1])
        out.writerow(["create", "HOST-0009", "HOST-0009-1", "NOSUCHARTICLE", 1])
    tmp.rename(inbox / "orders-demo.csv")
    return {"orders": orders, "new_articles": new_ids}


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    """Write atomically (a `.tmp` the inbox ignores, then a rename)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(header)
        out.writerows(rows)
    tmp.rename(path)


def write_planning_inbox(
    sim: InstockSim, inbox: Path, rng: random.Random, today: date
) -> dict[str, Any]:
    """The planning feeds, on the demo catalog: locations, suppliers, sales of the last five
    weeks (a few returns), open POs with lines (one partly received) and PO history."""
    inbox.mkdir(parents=True, exist_ok=True)
    plain = sorted(
        (a for a in sim.state.articles.values() if not a.get("is_serial_numbered")),
        key=lambda a: a["article_id"],
    )
    ids = [a["article_id"] for a in plain]
    sold = rng.sample(ids, min(40, len(ids)))
    price = {a: Decimal(rng.randint(149, 1999)) / 100 for a in ids}
    cost = {a: (price[a] * Decimal("0.6")).quantize(Decimal("0.01")) for a in ids}
    suppliers = [
        ["SUP01", "Acme Foods B.V.", "local", 5, "EUR", "Jane Roe", "orders@acme.example", ""],
        ["SUP02", "Northern Dry Goods", "local", 10, "EUR", "", "po@northern.example", ""],
        ["SUP03", "Pacific Imports Ltd", "import", 42, "USD", "Sam Lee", "", "+1 555 0100"],
        ["SUP04", "Oregon Tool", "import", 28, "USD", "", "siop@oregontool.example", ""],
    ]

    _write_csv(
        inbox / "locations-demo.csv",
        ["location_id", "name", "type", "location_group", "active"],
        [
            ["MAIN", "Main warehouse (ASRS)", "warehouse", "NL", "true"],
            ["OVERFLOW", "Overflow racking", "warehouse", "NL", "false"],
        ],
    )
    _write_csv(
        inbox / "suppliers-demo.csv",
        [
            "supplier_id",
            "name",
            "type",
            "lead_time_days",
            "currency",
            "contact_name",
            "contact_email",
            "contact_phone",
        ],
        suppliers,
    )

    sales: list[list[Any]] = []
    for n in range(1, 301):
        day = today - timedelta(days=rng.randint(1, 35))
        article = rng.choice(sold)
        qty = rng.randint(1, 6)
        sales.append(
            [
                f"INV-{n:05d}",
                "1",
                day.isoformat(),
                (day - timedelta(days=rng.randint(0, 2))).isoformat(),
                article,
                "",
                f"STORE-{rng.randint(1, 6):02d}",
                qty,
                price[article] * qty,
                cost[article] * qty,
                rng.choice(("retail", "retail", "web")),
            ]
        )
    for n, row in enumerate(rng.sample(sales, 6), start=1):  # returns: rows of their own
        day = date.fromisoformat(row[2]) + timedelta(days=1)
        article = row[4]
        sales.append(
            [
                f"CRN-{n:04d}",
                "1",
                min(day, today).isoformat(),
                "",
                article,
                "",
                row[6],
                -1,
                -price[article],
                -cost[article],
                row[10],
            ]
        )
    _write_csv(
        inbox / "sales-demo.csv",
        [
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
        ],
        sales,
    )

    po_rows: list[list[Any]] = []
    po_lines = 0
    for n in range(1, 5):
        supplier = suppliers[n - 1]
        ordered = today - timedelta(days=rng.randint(3, 20))
        expected = today + timedelta(days=rng.randint(2, 21))
        for line, article in enumerate(rng.sample(sold, rng.randint(2, 4)), start=1):
            qty = 12 * rng.randint(2, 10)
            received = qty // 2 if n == 1 and line == 1 else ""  # partly received
            po_rows.append(
                [
                    f"PO-D{n:03d}",
                    supplier[0],
                    "",
                    ordered.isoformat(),
                    rng.choice(("OPEN", "CONFIRMED")),
                    supplier[4],
                    str(line),
                    article,
                    qty,
                    received,
                    cost[article],
                    expected.isoformat(),
                ]
            )
            po_lines += 1
    # one status per PO: every row of a PO states the same header
    status = {r[0]: r[4] for r in po_rows}
    for r in po_rows:
        r[4] = status[r[0]]
    _write_csv(
        inbox / "purchase_orders-demo.csv",
        [
            "po_number",
            "supplier_id",
            "location",
            "order_date",
            "status",
            "currency",
            "line_no",
            "article_id",
            "qty_ordered",
            "qty_received",
            "unit_cost",
            "expected_date",
        ],
        po_rows,
    )

    history: list[list[Any]] = []
    for n in range(1, 6):
        supplier = suppliers[(n - 1) % len(suppliers)][0]
        ordered = today - timedelta(days=20 + 8 * n)
        expected = ordered + timedelta(days=7)
        for line, article in enumerate(rng.sample(sold, rng.randint(2, 3)), start=1):
            qty = 12 * rng.randint(2, 10)
            received = qty if rng.random() > 0.2 else qty - 12  # some closed short
            receipt = expected + timedelta(days=rng.randint(-1, 3))
            history.append(
                [
                    f"PO-C{n:03d}",
                    str(line),
                    article,
                    supplier,
                    "",
                    ordered.isoformat(),
                    expected.isoformat(),
                    receipt.isoformat(),
                    qty,
                    received,
                    cost[article],
                ]
            )
    _write_csv(
        inbox / "po_history-demo.csv",
        [
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
        ],
        history,
    )
    return {
        "sales": len(sales),
        "sold_articles": len(sold),
        "pos": len(status),
        "po_lines": po_lines,
        "po_history": len(history),
        "suppliers": len(suppliers),
    }


class Warehouse(threading.Thread):
    """Plays the ASRS floor: advances orders syncd created and moves some stock."""

    def __init__(self, sim: InstockSim, seed: int) -> None:
        super().__init__(name="demo-warehouse", daemon=True)
        self.sim = sim
        self.rng = random.Random(seed)
        self.stop_event = threading.Event()
        self.advanced = 0

    def run(self) -> None:
        while not self.stop_event.wait(2.0):
            for order in list(self.sim.state.orders.values()):
                mine = order.order_id.startswith(("HOST-", "DS-"))
                if mine and order.status in ("registered", "reserved"):
                    try:
                        self.sim.advance_order(order.order_id)
                        self.advanced += 1
                    except Exception:  # noqa: S112 - a refused step is part of the show
                        continue
            article = self.rng.choice(list(self.sim.state.articles))
            with contextlib.suppress(Exception):  # e.g. a serial-numbered article
                self.sim.adjust_inventory(article, self.rng.randint(1, 5))


def planning_summary(conn: sqlite3.Connection, outbox_streams: dict[str, int]) -> list[str]:
    """The Planning section: import-jobs, Netstock and Oregon SIOP, from the state DB."""

    def rows(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return conn.execute(sql, params).fetchall()

    def open_rejects(pattern: str) -> int:
        return int(
            rows(
                "SELECT count(*) FROM rejects WHERE status = 'open' AND source LIKE ?", (pattern,)
            )[0][0]
        )

    def runs(job: str) -> str:
        n, ok = rows(
            "SELECT count(*), coalesce(sum(status = 'ok'), 0) FROM runs WHERE job = ?", (job,)
        )[0]
        return f"{n} runs, {ok} ok"

    lines = [
        "Planning:    host data: "
        + ", ".join(
            f"{rows(f'SELECT count(*) FROM {table}')[0][0]} {label}"
            for table, label in (
                ("host_locations", "locations"),
                ("host_suppliers", "suppliers"),
                ("host_sales", "sales rows"),
                ("host_purchase_orders", "open POs"),
                ("host_purchase_order_lines", "PO lines"),
                ("host_po_history", "PO history lines"),
            )
        )
    ]

    by_status = rows(
        "SELECT status, count(*) FROM planning_import_jobs GROUP BY status ORDER BY status"
    )
    per_endpoint = rows(
        "SELECT endpoint, count(*), "
        "coalesce(sum(CASE WHEN status = 'COMPLETED' THEN processed_count - failed_count END), 0),"
        " coalesce(sum(failed_count), 0) FROM planning_import_jobs "
        "GROUP BY endpoint ORDER BY min(submitted_at), endpoint"
    )
    local = open_rejects("planning:%")
    lines.append(
        "  import-jobs: "
        + (
            "jobs " + ", ".join(f"{status} {n}" for status, n in by_status)
            if by_status
            else "no job submitted"
        )
        + f" ({runs('planning.import')}); {local} open rejects"
    )
    if per_endpoint:
        lines.append(
            "               rows accepted/failed: "
            + ", ".join(f"{ep} {ok}/{bad}" for ep, _jobs, ok, bad in per_endpoint)
        )
    last = rows(
        "SELECT counts FROM runs WHERE job = 'planning.import' AND status = 'ok' "
        "ORDER BY id DESC LIMIT 1"
    )
    held = {
        key: n
        for key, n in json.loads((last[0][0] if last else None) or "{}").items()
        if key.startswith(("held:", "held_changed:")) and n
    }
    if held:  # rows the API would reset or count twice: kept back, with a run warning
        lines.append(
            "               rows held back (last run): "
            + ", ".join(
                f"{key.split(':', 1)[1]} {n} ({key.split(':')[0]})" for key, n in held.items()
            )
        )

    exports = rows(
        "SELECT id, dataset_id, state, status_text, success, rows, models, message "
        "FROM netstock_exports ORDER BY id"
    )
    lines.append(
        f"  Netstock:    {len(exports)} datasets"
        + (
            " ("
            + ", ".join(
                f"{state} {n}"
                for state, n in rows(
                    "SELECT state, count(*) FROM netstock_exports GROUP BY state ORDER BY state"
                )
            )
            + ")"
            if exports
            else ""
        )
        + f" ({runs('netstock.export')})"
    )
    for _id, dataset, state, status_text, success, total, _models, message in exports[-4:]:
        outcome = {1: "success", 0: "failed"}.get(success, "no outcome yet")
        lines.append(
            f"               - dataset {dataset or '(not started)'}: {state}, "
            f"last status {status_text or '-'} ({outcome}), {total} lines"
            + (f": {message[:80]}" if message else "")
        )
    if len(exports) > 4:
        lines.append(f"               ... and {len(exports) - 4} earlier")
    if exports:
        shown = next((e for e in reversed(exports) if e[2] == "complete"), exports[-1])
        models = json.loads(shown[6] or "[]")
        lines.append(
            f"               lines per model (dataset {shown[1]}): "
            + ", ".join(f"{m['model']} {m['lines_sent']}/{m['rows']}" for m in models)
        )
    pops = rows(
        "SELECT kind, status, count(*) FROM netstock_pops GROUP BY kind, status ORDER BY 1, 2"
    )
    lines.append(
        "               pops journaled: "
        + (", ".join(f"{kind} {n} {status}" for kind, status, n in pops) or "none")
        + f" ({runs('netstock.pop')}); host files: "
        + (
            ", ".join(
                f"{k} {n}" for k, n in sorted(outbox_streams.items()) if k.startswith("netstock_")
            )
            or "none"
        )
    )

    accepted, materials, periods = rows(
        "SELECT count(*), count(DISTINCT material_id), "
        "group_concat(DISTINCT printf('%04d-%02d', year, month)) FROM oregon_siop_accepted"
    )[0]
    refused = rows(
        "SELECT reference, reason FROM rejects WHERE status = 'open' AND source = 'oregon:siop' "
        "ORDER BY id"
    )
    lines.append(
        f"  Oregon SIOP: {accepted} items accepted ({materials} materials, "
        f"periods {periods or '-'}), {len(refused)} rejects ({runs('oregon.siop')})"
    )
    for reference, reason in refused[:2]:
        lines.append(f"               - {reference.split(' (')[0]}: {reason[:90]}")
    return lines


def summarise(db_path: Path, host_dir: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)

    def one(sql: str) -> Any:
        return conn.execute(sql).fetchone()[0]

    def count(table: str, where: str = "1") -> int:
        return int(one(f"SELECT count(*) FROM {table} WHERE {where}"))

    outbox_files = sorted(p.name for p in (host_dir / "outbox").glob("*") if p.is_file())
    by_stream: dict[str, int] = {}
    for name in outbox_files:
        stream = name.rsplit("-", 1)[0]
        by_stream[stream] = by_stream.get(stream, 0) + 1
    lines = [
        "Runs:         "
        + ", ".join(
            f"{job} {n}x ({ok} ok)"
            for job, n, ok in conn.execute(
                "SELECT job, count(*), sum(status = 'ok') FROM runs GROUP BY job ORDER BY job"
            )
        ),
        f"Host inbox:   {one('SELECT count(*) FROM host_files')} files loaded, "
        f"{one('SELECT count(*) FROM host_articles')} catalog articles, "
        f"{one('SELECT count(*) FROM host_stock')} stock rows, "
        f"{one('SELECT count(*) FROM host_orders')} orders",
        f"Articles:     {count('instock_article_sync', STATUS_ACCEPTED)} "
        f"accepted by Instock since start, "
        f"{count('instock_article_sync', STATUS_REFUSED)} refused",
        f"Inventory:    {one('SELECT count(*) FROM instock_inventory')} articles mirrored, "
        f"{one('SELECT count(*) FROM instock_stock_discrepancies')} differ from host book stock",
        f"Moves:        {one('SELECT count(*) FROM instock_moves')} journalled",
        "DSOrder:      "
        + (
            ", ".join(
                f"{state} {n}"
                for state, n in conn.execute(
                    "SELECT state, count(*) FROM dsorder_orders GROUP BY state ORDER BY state"
                )
            )
            or "no orders"
        )
        + f" (of {count('dsorder_orders')} pulled; "
        f"{count('outbox', STATUS_FULFILL)} fulfilment reports sent)",
        f"Orders:       {one('SELECT count(*) FROM instock_orders')} mirrored; host orders: "
        + ", ".join(
            f"{status} {n}"
            for status, n in conn.execute(
                "SELECT coalesce(m.order_status, s.status), count(*) FROM instock_order_sync s "
                "LEFT JOIN instock_orders m USING (order_id) GROUP BY 1 ORDER BY 1"
            )
        ),
        f"Outbox:       {count('outbox', STATUS_SENT)} sent, "
        f"{count('outbox', STATUS_PENDING)} pending; host files: "
        + (", ".join(f"{s} {n}" for s, n in sorted(by_stream.items())) or "none"),
    ]
    lines += planning_summary(conn, by_stream)
    lines.append(f"Rejects:      {count('rejects', STATUS_OPEN)} open")
    for source, reference, reason in conn.execute(
        "SELECT source, reference, reason FROM rejects WHERE status = 'open' ORDER BY id LIMIT 6"
    ):
        lines.append(f"              - {source} {reference}: {reason[:110]}")
    lines.append(
        f"Alerts:       {one('SELECT count(*) FROM alerts WHERE resolved_at IS NULL')} open"
    )
    for kind, message in conn.execute(
        "SELECT kind, message FROM alerts WHERE resolved_at IS NULL ORDER BY id LIMIT 4"
    ):
        lines.append(f"              - {kind}: {message[:110]}")
    conn.close()
    return lines


def run_demo(duration: float, workdir: Path | None, seed: int) -> int:
    restrict_umask()
    base = workdir or Path(tempfile.mkdtemp(prefix="syncd-demo-"))
    state_dir, host_dir = base / "state", base / "host"
    rng = random.Random(seed)
    click.echo(f"syncd demo: working directory {base}")
    zone = "Europe/Amsterdam"
    with contextlib.ExitStack() as stack:
        sim = stack.enter_context(InstockSim(seed=seed, articles=ARTICLES))
        stores = stack.enter_context(DSOrderSim(seed=seed, tz=zone))
        netstock = stack.enter_context(NetstockSim(seed=seed, phases=NETSTOCK_PHASES))
        imports = stack.enter_context(ImportJobsSim(seed=seed))
        imports.start_worker()
        stack.callback(imports.stop_worker)
        oregon = stack.enter_context(OregonSiopSim(seed=seed))
        oregon.refuse(
            "materialId",
            OREGON_UNKNOWN_MATERIAL,
            f"Material {OREGON_UNKNOWN_MATERIAL} is not in Oregon Tool's material master.",
        )
        click.echo(f"  Instock simulator on {sim.base_url} ({ARTICLES} articles)")
        facts = write_inbox(sim, host_dir / "inbox", rng)
        click.echo(
            f"  host inbox: catalog (+{len(facts['new_articles'])} new articles), "
            f"book stock, {len(facts['orders']) + 1} customer orders"
        )
        today = datetime.now(ZoneInfo(zone)).date()
        plan = write_planning_inbox(sim, host_dir / "inbox", rng, today)
        click.echo(
            f"  planning inbox: 2 locations, {plan['suppliers']} suppliers, {plan['sales']} "
            f"sales rows of {plan['sold_articles']} articles (5 weeks), {plan['pos']} open POs "
            f"({plan['po_lines']} lines), {plan['po_history']} PO history lines"
        )
        click.echo(
            f"  Netstock simulator on {netstock.base_url}, import-jobs on {imports.base_url}, "
            f"Oregon SIOP on {oregon.base_url}"
        )
        stocked = sorted(a for a in sim.state.articles if sim.stock(a).free > 20)
        stores.generate(4, articles=stocked, fractional_rate=0.1, unknown_rate=0.05)
        stores.start_generator(20, stocked, fractional_rate=0.1, unknown_rate=0.05)
        click.echo(f"  DSOrder simulator on {stores.base_url} (stores submit ~20 orders/min)")
        env = {
            **os.environ,
            "SYNCD_CONNECTORS__INSTOCK__BASE_URL": sim.base_url,
            "SYNCD_CONNECTORS__DSORDER__BASE_URL": stores.base_url,
            "SYNCD_CONNECTORS__NETSTOCK__BASE_URL": netstock.base_url,
            "SYNCD_CONNECTORS__IMPORT_JOBS__BASE_URL": imports.base_url,
            "SYNCD_CONNECTORS__OREGON_SIOP__BASE_URL": oregon.base_url,
            "SYNCD_DAEMON__STATE_DIR": str(state_dir),
            "SYNCD_HOST__DIR": str(host_dir),
            "SYNCD_METRICS__TEXTFILE": str(base / "metrics" / "syncd.prom"),
        }
        log_path = base / "syncd.log"
        warehouse = Warehouse(sim, seed)
        with log_path.open("w") as log:
            daemon = subprocess.Popen(  # noqa: S603 - our own CLI
                [sys.executable, "-m", "syncd.cli", "run", "--config", str(demo_config_path())],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
            click.echo(f"  syncd run started (pid {daemon.pid}), logs in {log_path}")
            warehouse.start()
            deadline = time.monotonic() + duration
            try:
                while time.monotonic() < deadline and daemon.poll() is None:
                    time.sleep(min(5.0, max(0.1, deadline - time.monotonic())))
                    click.echo(
                        f"  ... {int(deadline - time.monotonic()):>3}s left; "
                        f"warehouse advanced {warehouse.advanced} order steps"
                    )
            finally:
                warehouse.stop_event.set()
                if daemon.poll() is None:
                    daemon.send_signal(signal.SIGTERM)
                code = daemon.wait(30)
    click.echo(f"  syncd stopped with exit status {code}\n")
    if not (state_dir / "syncd.db").exists():
        click.echo(f"syncd did not create its state DB; see {log_path}", err=True)
        return 1
    for line in summarise(state_dir / "syncd.db", host_dir):
        click.echo(line)
    click.echo(
        f"\nLook inside:\n"
        f"  state DB:     sqlite3 {state_dir / 'syncd.db'} '.tables'\n"
        f"  status:       SYNCD_DAEMON__STATE_DIR={state_dir} "
        f"{syncd_command(sys.argv[0], sys.executable)} status --config {demo_config_path()}\n"
        f"  host outbox:  ls {host_dir / 'outbox'}\n"
        f"  host archive: ls {host_dir / 'archive'}\n"
        f"  daemon log:   {log_path}\n"
        f"  metrics:      {base / 'metrics' / 'syncd.prom'} (the node_exporter textfile)"
    )
    return 0 if code == 0 else 1
