"""`syncd demo`: the daemon against local simulators, start to finish, in about a minute.

Starts the Instock and DSOrder simulators on free loopback ports, writes
sample host inbox files (a catalog with new, changed and unacceptable
articles; book stock that differs from Instock here and there; customer
orders, one for an unknown article), runs `syncd run` as a real child process
with `config/demo.toml` while DSOrder stores submit orders (some with
fractional quantities or unknown articles) and the warehouse works (orders
syncd created are advanced to done, stock is adjusted), then stops the daemon
with SIGTERM and prints what happened and where to look.
"""

from __future__ import annotations

import contextlib
import csv
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

import click

from syncd.sandbox.dsorder import DSOrderSim
from syncd.sandbox.instock import InstockSim

ARTICLES = 120
STATUS_ACCEPTED = "status = 'accepted'"
STATUS_REFUSED = "status = 'refused'"
STATUS_SENT = "status = 'sent'"
STATUS_PENDING = "status = 'pending'"
STATUS_OPEN = "status = 'open'"
STATUS_FULFILL = "destination = 'dsorder' AND kind = 'fulfill' AND status = 'sent'"


def demo_config_path() -> Path:
    return Path(str(resources.files("syncd") / "defaults" / "demo.toml"))


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
        out.writerow(["article_id", "location", "qty"])
        for article in plain:
            stock = sim.stock(article["article_id"])
            qty = stock.free + stock.reserved + (3 if article["article_id"] in off else 0)
            out.writerow([article["article_id"], "", qty])
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
        f"Rejects:      {count('rejects', STATUS_OPEN)} open",
    ]
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
    base = workdir or Path(tempfile.mkdtemp(prefix="syncd-demo-"))
    state_dir, host_dir = base / "state", base / "host"
    rng = random.Random(seed)
    click.echo(f"syncd demo: working directory {base}")
    zone = "Europe/Amsterdam"
    with InstockSim(seed=seed, articles=ARTICLES) as sim, DSOrderSim(seed=seed, tz=zone) as stores:
        click.echo(f"  Instock simulator on {sim.base_url} ({ARTICLES} articles)")
        facts = write_inbox(sim, host_dir / "inbox", rng)
        click.echo(
            f"  host inbox: catalog (+{len(facts['new_articles'])} new articles), "
            f"book stock, {len(facts['orders']) + 1} customer orders"
        )
        stocked = sorted(a for a in sim.state.articles if sim.stock(a).free > 20)
        stores.generate(4, articles=stocked, fractional_rate=0.1, unknown_rate=0.05)
        stores.start_generator(20, stocked, fractional_rate=0.1, unknown_rate=0.05)
        click.echo(f"  DSOrder simulator on {stores.base_url} (stores submit ~20 orders/min)")
        env = {
            **os.environ,
            "SYNCD_CONNECTORS__INSTOCK__BASE_URL": sim.base_url,
            "SYNCD_CONNECTORS__DSORDER__BASE_URL": stores.base_url,
            "SYNCD_DAEMON__STATE_DIR": str(state_dir),
            "SYNCD_HOST__DIR": str(host_dir),
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
        f"  status:       SYNCD_DAEMON__STATE_DIR={state_dir} syncd status --config "
        f"{demo_config_path()}\n"
        f"  host outbox:  ls {host_dir / 'outbox'}\n"
        f"  host archive: ls {host_dir / 'archive'}\n"
        f"  daemon log:   {log_path}"
    )
    return 0 if code == 0 else 1
