"""Benchmark: the DSOrder -> Instock -> DSOrder order loop, syncd vs a minimal raw loop.

Both simulators run inside this process; the daemon (and the raw loop) run as separate
processes, so their CPU time and peak RSS are their own (``os.wait4``).

Setup, per run, on fresh simulators: an Instock simulator whose non-serial articles get
exactly the stock the orders need (plus a margin, so nothing is short), a DSOrder simulator
with N submitted orders of L lines over those article ids (whole quantities), and a host
catalog CSV in the inbox (identity mapping, whole units, the Instock article data as is, so
the catalog sync accepts every article without updates). A warehouse thread plays the
floor: as soon as an Instock order ``DS-*`` exists it is advanced to reserved and then done
(both steps at once), and the sim's ``status_changed_at`` of the done step is kept.

- syncd: ``syncd run`` with a temp config made from ``syncd/defaults/demo.toml`` (every demo
  job on; ``dsorder.pull`` / ``dsorder.progress`` intervals from the command line; logging
  at warning) until every DSOrder order is closed, then SIGTERM.
- raw: a minimal httpx + sqlite3 loop, no syncd: GET submitted every pull interval, insert
  and POST the Instock order, and every progress interval GET the status of each open order;
  once done GET its ordertasks, POST fulfil (totals, finished) and POST close.

Figures: wall time from process start until the last DSOrder order is closed, orders/s,
latency "Instock order done" -> "DSOrder close request received" (sim request log) with
p50/p95/max against the target p95 <= progress interval + 1 s, CPU per order (user+sys
from /proc at the last close; wait4 totals after exit) and peak RSS, plus correctness
(closed once, created once, totals match) and where syncd spent its time (its runs table).

    python bench/order_loop.py [--orders 1000] [--lines 10] [--progress-interval 2]
                               [--pull-interval 5] [--baseline-orders N (default: --orders)]
                               [--disable JOB ...] [--timeout 600] [--keep]
                               [--rounds 3] [--no-warm-up] [--rate-limit 100000]
                               [--profile DIR [--profile-wall]]

Each loop runs once uncounted (``--no-warm-up`` skips it), then ``--rounds`` rounds (default
3) alternate raw and syncd, the first of a round swapping each time (``bench/rounds.py``),
each on fresh simulators; the summary gives the median of the rounds with the spread
(min..max) and syncd's per-round ratios to the raw loop. ``--rounds 1`` (for iterating)
runs each loop once and prints its figures, no medians.

``--profile DIR`` records each syncd process with py-spy (100 Hz, collapsed stacks, one
file a run): by default only the thread holding the GIL (the daemon's Python CPU);
``--profile-wall`` every thread, idle ones included (where threads wait).

The jobs whose remotes have no simulator here (planning.import, netstock.*, oregon.siop)
are off: they would only fail to connect every few seconds (or reach whatever listens on
the demo's ports).

``--disable instock.moves`` (repeatable) turns a syncd job off, to see what it costs the
loop. ``--rate-limit`` (default 100,000 a second) is syncd's Instock and DSOrder
``rate_limit``: the raw loop has none, and at syncd's defaults (Instock 20 requests a
second, shared by every job and the sender) the budget, not the work, bounds a burst:
1,000 orders x 10 lines need about 7,000 Instock requests (a create, a status and five
ordertasks each), 350 s at 20 a second. ``--rate-limit 0`` keeps the defaults. One loop takes about 30-40 s on 2 cores; a default run (8 loops) 5 minutes.

Orders are submitted "now" in Europe/Amsterdam: a run that crosses local midnight loses
them from DSOrder's list (the midnight gap), so do not start one at 23:55 there.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import re
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syncd.demo import demo_config_path
from syncd.sandbox.base import Request, Response
from syncd.sandbox.dsorder import DSOrderSim
from syncd.sandbox.instock import InstockSim

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rounds import (
    Figures,
    Series,
    interleave,
    machine_load,
    ratios,
    spread_of,
    warm_up,
)

SITE_TZ = "Europe/Amsterdam"
ARTICLES = 150  # Instock catalog size; ~147 of them are not serial-numbered and get stock
UNSIMULATED = (
    "planning",
    "netstock",
    "oregon",
)  # jobs whose remotes this bench has no simulator for
CLOSE_ROUTE = "POST /orders/{order_id}/close"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# --- the world: simulators, orders, catalog, warehouse ------------------------------------


class CountingInstock(InstockSim):
    """InstockSim that counts order-create requests per order id (the log has no bodies)."""

    def __init__(self, **kwargs: Any) -> None:
        self.create_attempts: Counter[str] = Counter()
        self.created_at: dict[str, float] = {}
        self._count_lock = threading.Lock()
        super().__init__(**kwargs)  # routes bind self._create_order: this override

    def _create_order(self, request: Request) -> Response:
        body = request.json
        order_id = str(body.get("order_id")) if isinstance(body, dict) else "?"
        with self._count_lock:
            self.create_attempts[order_id] += 1
        response = super()._create_order(request)  # raises ApiError when it refuses
        with self._count_lock:
            self.created_at.setdefault(order_id, time.time())
        return response


class Warehouse(threading.Thread):
    """Advances every new ``DS-*`` Instock order to reserved, then done: at once, or at
    most ``done_rate`` orders per second (a floor that finishes orders over time)."""

    def __init__(self, sim: InstockSim, interval: float = 0.01, done_rate: float = 0.0) -> None:
        super().__init__(name="bench-warehouse", daemon=True)
        self.sim = sim
        self.interval = interval
        self.done_rate = done_rate
        self.stop_event = threading.Event()
        self.done_at: dict[str, float] = {}  # Instock order id -> epoch of the done step
        self.not_done: dict[str, str] = {}  # order id -> status when it did not reach done
        self.busy_s = 0.0

    def run(self) -> None:
        state = self.sim.state
        listed = state.site_orders[self.sim.site_id]
        seen = 0
        waiting: list[str] = []
        budget, last = 0.0, time.monotonic()
        while not self.stop_event.wait(self.interval):
            started = time.perf_counter()
            now = time.monotonic()
            budget = min(budget + (now - last) * self.done_rate, max(1.0, self.done_rate))
            last = now
            with state.lock:
                waiting.extend(o for o in listed[seen:] if o.startswith("DS-"))
                seen = len(listed)
                count = len(waiting) if self.done_rate <= 0 else int(budget)
                batch, waiting[:] = waiting[:count], waiting[count:]
                budget -= len(batch) if self.done_rate > 0 else 0
                for order_id in batch:
                    status = self.sim.advance_order(order_id)
                    if status == "reserved":
                        status = self.sim.advance_order(order_id)
                    if status == "done":
                        self.done_at[order_id] = state.orders[order_id].status_changed_at
                    else:
                        self.not_done[order_id] = status
            self.busy_s += time.perf_counter() - started


@dataclass
class World:
    instock: CountingInstock
    dsorder: DSOrderSim
    orders: dict[str, list[tuple[str, int]]]  # DSOrder id -> [(article_id, qty)]
    articles: list[str]
    warehouse: Warehouse

    def start(self) -> None:
        self.instock.start()
        self.dsorder.start()
        self.warehouse.start()

    def stop(self) -> None:
        self.warehouse.stop_event.set()
        self.warehouse.join(5)
        self.dsorder.stop()
        self.instock.stop()

    def closed_count(self) -> int:
        with self.dsorder.state.lock:
            return sum(1 for o in self.dsorder.state.orders.values() if o.closed)


def build_world(n_orders: int, n_lines: int, seed: int, done_rate: float = 0.0) -> World:
    instock = CountingInstock(seed=seed, articles=ARTICLES)
    articles = sorted(
        a for a, art in instock.state.articles.items() if not art.get("is_serial_numbered")
    )
    if n_lines > len(articles):
        raise SystemExit(f"--lines {n_lines}: at most {len(articles)} distinct articles")
    dsorder = DSOrderSim(seed=seed, tz=SITE_TZ)
    rng = random.Random(seed)
    orders: dict[str, list[tuple[str, int]]] = {}
    demand: Counter[str] = Counter()
    for _ in range(n_orders):
        lines = [(a, rng.randint(1, 5)) for a in rng.sample(articles, n_lines)]
        order_id = dsorder.submit_order(store_id=rng.choice(dsorder.stores), lines=lines)
        orders[order_id] = lines
        for article_id, qty in lines:
            demand[article_id] += qty
    for article_id in articles:  # nothing may be short: every order must reach done
        need = demand[article_id] + 10 - instock.stock(article_id).free
        if need > 0:
            instock.adjust_inventory(article_id, need)
    return World(instock, dsorder, orders, articles, Warehouse(instock, done_rate=done_rate))


def write_catalog(world: World, inbox: Path) -> Path:
    """Host catalog = the Instock article records (identity mapping, whole units)."""
    inbox.mkdir(parents=True, exist_ok=True)
    state = world.instock.state
    records = [state.articles[a] for a in world.articles]
    attr_names = sorted({k for r in records for k in (r.get("attributes") or {})})
    tmp = inbox / "articles-bench.csv.tmp"
    with tmp.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(
            [
                "article_id",
                "name",
                "whole_units",
                "is_serial_numbered",
                "dim_x",
                "dim_y",
                "dim_z",
                "dim_uom",
                *(f"attr.{n}" for n in attr_names),
            ]
        )
        for r in records:
            dims = r.get("dimensions") or {}
            attrs = r.get("attributes") or {}
            out.writerow(
                [
                    r["article_id"],
                    r["name"],
                    "true",
                    "false",
                    *(dims.get(k, "") for k in ("x", "y", "z", "uom")),
                    *(attrs.get(n, "") for n in attr_names),
                ]
            )
    path = inbox / "articles-bench.csv"
    tmp.rename(path)
    past = time.time() - 10  # already settled: loaded on the first host.inbox run
    os.utime(path, (past, past))
    return path


# --- config -------------------------------------------------------------------------------


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return (
            "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
        )
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def toml_dump(data: dict[str, Any]) -> str:
    """Enough TOML for syncd's config: [section], [connectors.x] and [jobs."x"] tables."""
    out: list[str] = []
    for section, body in data.items():
        tables = body.items() if section in ("connectors", "jobs") else [(None, body)]
        for name, table in tables:
            header = section if name is None else f"{section}.{_toml_key(name)}"
            out.append(f"\n[{header}]")
            out.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items())
    return "\n".join(out).lstrip() + "\n"


def write_config(work: Path, world: World, args: argparse.Namespace) -> Path:
    config = tomllib.loads(demo_config_path().read_text())
    config["daemon"]["state_dir"] = str(work / "state")
    config["logging"]["level"] = "warning"
    config["host"]["dir"] = str(work / "host")
    config["connectors"]["instock"]["base_url"] = world.instock.base_url
    config["connectors"]["dsorder"]["base_url"] = world.dsorder.base_url
    config["jobs"]["dsorder.pull"]["schedule"] = {"interval": float(args.pull_interval)}
    config["jobs"]["dsorder.progress"]["schedule"] = {"interval": float(args.progress_interval)}
    if args.rate_limit > 0:  # the raw loop has none: by default neither is throttled
        for connector in ("instock", "dsorder"):
            limit = {"per_second": args.rate_limit, "burst": 2 * args.rate_limit}
            config["connectors"][connector]["rate_limit"] = limit
    # The planning exports' remotes are not simulated here: their jobs would only fail to
    # connect every few seconds (or talk to whatever listens on the demo's ports).
    for job, body in config["jobs"].items():
        if job.split(".")[0] in UNSIMULATED:
            body["enabled"] = False
    for job in args.disable:  # for diagnosis: e.g. --disable instock.moves
        config["jobs"].setdefault(job, {})["enabled"] = False
    path = work / "syncd.toml"
    path.write_text(toml_dump(config))
    return path


# --- measuring a process ------------------------------------------------------------------


def proc_cpu_rss(pid: int) -> tuple[float, float, float]:
    """(user+sys seconds, current RSS MiB, peak RSS MiB) of a live process from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return math.nan, math.nan, math.nan
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)
    rss = int(fields[21]) * PAGE / 2**20
    hwm = re.search(r"VmHWM:\s+(\d+) kB", status)
    return cpu, rss, (int(hwm.group(1)) / 1024 if hwm else math.nan)


@dataclass
class Exited:
    code: int
    cpu_s: float
    maxrss_mib: float


def reap(pid: int) -> Exited | None:
    """Non-blocking wait4: the child's exit code and rusage once it is gone."""
    got, status, usage = os.wait4(pid, os.WNOHANG)
    if got == 0:
        return None
    return Exited(
        os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024
    )


def stop_process(proc: subprocess.Popen[bytes], grace: float = 30.0) -> Exited:
    proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        exited = reap(proc.pid)
        if exited:
            proc.returncode = exited.code
            return exited
        time.sleep(0.05)
    proc.kill()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Exited(proc.returncode, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


@dataclass
class LoopResult:
    label: str
    orders: int
    started: float  # epoch: process start
    finished: float | None  # epoch: last close (None: timed out)
    cpu_at_done_s: float
    exited: Exited
    closed: int
    bench_cpu_s: float  # this process (simulators + warehouse) during the run
    latencies: list[float] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    requests: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    @property
    def wall_s(self) -> float:
        return (self.finished or time.time()) - self.started

    @property
    def rate(self) -> float:
        return self.closed / self.wall_s if self.wall_s > 0 else math.nan


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def watch(
    world: World,
    proc: subprocess.Popen[bytes],
    label: str,
    timeout: float,
    progress_every: float = 10.0,
) -> tuple[float | None, float, Exited | None]:
    """Wait until every DSOrder order is closed (or timeout, or the process died).

    Returns (epoch of the last close or None, the process's CPU seconds at that moment from
    /proc, Exited if the process ended by itself)."""
    total = len(world.orders)
    started = time.monotonic()
    next_note = started + progress_every
    while True:
        closed = world.closed_count()
        if closed >= total:
            cpu, _, _ = proc_cpu_rss(proc.pid)
            with world.dsorder.state.lock:
                last = max(o.closed_at or 0.0 for o in world.dsorder.state.orders.values())
            return last, cpu, None
        exited = reap(proc.pid)
        if exited:
            proc.returncode = exited.code
            return None, exited.cpu_s, exited
        now = time.monotonic()
        if now - started > timeout:
            cpu, _, _ = proc_cpu_rss(proc.pid)
            return None, cpu, None
        if now >= next_note:
            cpu, rss, _ = proc_cpu_rss(proc.pid)
            print(
                f"  [{label}] {now - started:5.0f}s: created {len(world.instock.created_at)}, "
                f"done {len(world.warehouse.done_at)}, closed {closed} of {total}; "
                f"process CPU {cpu:.1f}s, RSS {rss:.0f} MiB",
                flush=True,
            )
            next_note += progress_every
        time.sleep(0.05)


# --- figures from the simulators ----------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


def analyse(world: World, result: LoopResult) -> None:
    """Latencies, phases, correctness and request counts, from the simulators' own records."""
    ds, ins, wh = world.dsorder, world.instock, world.warehouse
    first_close: dict[str, float] = {}
    close_requests: Counter[str] = Counter()
    for record in ds.requests:
        if record.route == CLOSE_ROUTE:
            order_id = record.path.split("/")[2]
            close_requests[order_id] += 1
            first_close.setdefault(order_id, record.timestamp)
    negative = 0
    for order_id in world.orders:
        done = wh.done_at.get(f"DS-{order_id}")
        if done is None or order_id not in first_close:
            continue
        latency = first_close[order_id] - done
        negative += latency < 0
        result.latencies.append(latency)

    t0 = result.started
    created = sorted(t for i, t in ins.created_at.items() if i.startswith("DS-"))
    done_at = sorted(wh.done_at.values())
    closes = sorted(first_close.values())
    if created:
        result.phases["first Instock create"] = created[0] - t0
        result.phases["last Instock create"] = created[-1] - t0
    if done_at:
        result.phases["last order done"] = done_at[-1] - t0
    if closes:
        result.phases["first close received"] = closes[0] - t0
        result.phases["last close received"] = closes[-1] - t0
    result.checks = correctness(world, negative)
    for server, prefix in ((ins.server, "instock"), (ds.server, "dsorder")):
        counts = server.counts
        for route in server.router.routes:  # one line per route (pattern key)
            if counts.get(route.key):
                result.requests[f"{prefix} {route.key}"] = counts[route.key]
    result.missing = missing(world, close_requests)


def correctness(world: World, negative: int) -> list[tuple[str, bool, str]]:
    ds, ins, wh = world.dsorder, world.instock, world.warehouse
    n = len(world.orders)
    with ds.state.lock:
        ds_orders = [ds.state.orders[o] for o in world.orders]
        closed_once = sum(1 for o in ds_orders if o.closes == 1)
        attempts = sum(o.close_attempts for o in ds_orders)
        totals_ok = sum(
            1
            for o in ds_orders
            if all(ln.fulfilled == ln.quantity and ln.finished for ln in o.lines.values())
        )
        fulfil_calls = sum(o.fulfil_calls for o in ds_orders)
    ds_ids = {f"DS-{o}" for o in world.orders}
    created_ok = sum(1 for i in ds_ids if i in ins.created_at)
    created_once = sum(1 for i in ds_ids if ins.create_attempts.get(i) == 1 and i in ins.created_at)
    create_requests = sum(ins.create_attempts[i] for i in ds_ids)
    strangers = [i for i in ins.create_attempts if i not in ds_ids]
    return [
        (
            "every order closed exactly once",
            closed_once == n and attempts == n,
            f"{closed_once}/{n} closed once; {attempts} close requests reached orders",
        ),
        (
            "created in Instock exactly once",
            created_once == n and not strangers,
            f"{created_ok}/{n} created, {created_once}/{n} with exactly one create request "
            f"({create_requests} create requests"
            + (f"; {len(strangers)} for unknown ids" if strangers else "")
            + ")",
        ),
        (
            "fulfilled totals = ordered, finished",
            totals_ok == n,
            f"{totals_ok}/{n} orders; {fulfil_calls} fulfil requests",
        ),
        (
            "done before close",
            negative == 0 and not wh.not_done,
            f"{negative} closes before done; {len(wh.not_done)} orders not done"
            + (f" {dict(Counter(wh.not_done.values()))}" if wh.not_done else ""),
        ),
    ]


def missing(world: World, close_requests: Counter[str]) -> list[str]:
    """Where the first unclosed orders are stuck."""
    ds, ins = world.dsorder, world.instock
    with ds.state.lock:
        unclosed = [
            (o, ds.state.orders[o].fulfil_calls)
            for o in world.orders
            if not ds.state.orders[o].closed
        ]
    lines = []
    for order_id, fulfil_calls in unclosed[:10]:
        iid = f"DS-{order_id}"
        with ins.state.lock:
            order = ins.state.orders.get(iid)
            status = order.status if order else "not in Instock"
        lines.append(
            f"{order_id}: Instock {status}; create requests {ins.create_attempts.get(iid, 0)}; "
            f"fulfil calls {fulfil_calls}; close requests {close_requests.get(order_id, 0)}"
        )
    if len(unclosed) > 10:
        lines.append(f"... and {len(unclosed) - 10} more")
    return lines


# --- syncd --------------------------------------------------------------------------------


def run_syncd(args: argparse.Namespace, work: Path) -> LoopResult:
    world = build_world(args.orders, args.lines, args.seed, args.done_rate)
    world.start()
    try:
        write_catalog(world, work / "host" / "inbox")
        config = write_config(work, world, args)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")}
        log_path = work / "syncd.log"
        bench_cpu = self_cpu()
        with log_path.open("wb") as log:
            started = time.time()
            proc = subprocess.Popen(
                [sys.executable, "-m", "syncd.cli", "run", "--config", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
            print(f"  [syncd] pid {proc.pid}, config {config}, log {log_path}", flush=True)
            spy = profile_process(proc.pid, args.profile, work.name, not args.profile_wall)
            finished, cpu_at_done, exited = watch(world, proc, "syncd", args.timeout)
            _, _, hwm = proc_cpu_rss(proc.pid)
            if exited is None:
                exited = stop_process(proc)
            if spy is not None:
                spy.wait(30)
            if not math.isnan(hwm):
                exited.maxrss_mib = max(exited.maxrss_mib, hwm)
        result = LoopResult(
            "syncd",
            args.orders,
            started,
            finished,
            cpu_at_done,
            exited,
            world.closed_count(),
            self_cpu() - bench_cpu,
        )
        analyse(world, result)
        result.extra.append(moves_windows(world))
    finally:
        world.stop()
    result.extra += syncd_breakdown(work / "state" / "syncd.db", started, args) + log_summary(
        log_path
    )
    if finished is None:
        tail = log_path.read_text(errors="replace").splitlines()[-15:]
        result.extra += ["daemon log tail:", *(f"    {line[:200]}" for line in tail)]
    return result


def profile_process(
    pid: int, into: Path | None, tag: str, gil: bool = True
) -> subprocess.Popen[bytes] | None:
    """py-spy record of the daemon in collapsed-stack form (`--format raw`), one file a
    run; it ends by itself when the daemon does."""
    if into is None:
        return None
    into.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).with_name("py-spy")
    out = into / f"syncd-{tag}.txt"
    print(f"  [syncd] py-spy record -> {out}", flush=True)
    return subprocess.Popen(
        [
            str(spy),
            "record",
            *(["--gil"] if gil else ["--idle", "--threads"]),
            "-p",
            str(pid),
            "-r",
            "100",
            "-f",
            "raw",
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def moves_windows(world: World) -> str:
    """How often instock.moves asked for a window (first pages) and re-read the same moves."""
    windows: list[tuple[str, str]] = []
    pages = 0
    for record in world.instock.requests:
        if record.route == "GET /v1/{site_id}/moves":
            pages += 1
            if "start_cursor" not in record.query:
                windows.append(
                    (record.query.get("from_timestamp", ""), record.query.get("to_timestamp", ""))
                )
    with world.instock.state.lock:
        total = len(world.instock.state.moves[world.instock.site_id])
    return (
        f"instock.moves: {len(windows)} windows requested in {pages} pages "
        f"(page_size from config) for {total} moves in the simulator; windows "
        + ", ".join(f"{a[11:19]}..{b[11:19]}" for a, b in windows[:12])
        + (" ..." if len(windows) > 12 else "")
    )


def syncd_breakdown(db_path: Path, started: float, args: argparse.Namespace) -> list[str]:
    """Where the daemon spent its time, from its own runs table."""
    if not db_path.exists():
        return ["syncd state DB missing"]
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    lines = ["syncd runs (from its state DB):"]
    lines.append(
        f"    {'job':<20} {'runs':>5} {'busy s':>8} {'mean s':>7} {'max s':>7} "
        f"{'not ok':>11}  counts (summed)"
    )
    dur = "(julianday(finished_at) - julianday(started_at)) * 86400"
    for job, runs, busy, longest, bad in conn.execute(
        f"SELECT job, count(*), sum({dur}), max({dur}), "
        "group_concat(CASE WHEN status != 'ok' THEN status END) FROM runs "
        f"GROUP BY job ORDER BY sum({dur}) DESC"
    ):
        counts: Counter[str] = Counter()
        for (raw,) in conn.execute("SELECT counts FROM runs WHERE job = ?", [job]):
            for key, value in json.loads(raw or "{}").items():
                if isinstance(value, int):
                    counts[key] += value
        for (pushed,) in conn.execute("SELECT sum(pushed) FROM runs WHERE job = ?", [job]):
            if pushed:
                counts["pushed"] += pushed
        shown = ", ".join(f"{k} {v}" for k, v in counts.most_common(6))
        lines.append(
            f"    {job:<20} {runs:>5} {busy or 0:>8.1f} {(busy or 0) / runs:>7.2f} "
            f"{longest or 0:>7.2f} {bad or '-':>11}  {shown}"
        )
    progress = conn.execute(
        f"SELECT (julianday(started_at) - 2440587.5) * 86400 - ?, {dur}, "
        "coalesce(json_extract(counts, '$.followed'), 0) FROM runs "
        "WHERE job = 'dsorder.progress' ORDER BY started_at",
        [started],
    ).fetchall()
    lines.append(
        f"    dsorder.progress runs (configured every {args.progress_interval:g}s; "
        "start from process start, duration, orders followed): "
        + ", ".join(f"+{a:.1f}s {d:.1f}s {f}" for a, d, f in progress)
    )
    states = dict(conn.execute("SELECT state, count(*) FROM dsorder_orders GROUP BY state"))
    outbox = conn.execute(
        "SELECT destination, kind, count(*), sum(attempts), "
        "avg((julianday(sent_at) - julianday(created_at)) * 86400), "
        "max((julianday(sent_at) - julianday(created_at)) * 86400) "
        "FROM outbox GROUP BY destination, kind ORDER BY destination, kind"
    ).fetchall()
    lines.append(f"    dsorder_orders by state: {states}")
    lines.append("    outbox (queued -> sent):")
    for destination, kind, count, attempts, avg_wait, max_wait in outbox:
        lines.append(
            f"      {destination}/{kind}: {count} intents, {attempts} attempts, "
            f"wait mean {avg_wait or 0:.2f}s max {max_wait or 0:.2f}s"
        )
    conn.close()
    return lines


def log_summary(log_path: Path) -> list[str]:
    events: Counter[str] = Counter()
    other = 0
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
            event = re.sub(r" \(trigger: [^)]*\)", "", str(entry.get("event")))
            events[f"{entry.get('level', '?')} {event}"] += 1
        except (ValueError, AttributeError):
            other += 1
    shown = ", ".join(f"{k} x{v}" for k, v in events.most_common(8)) or "none"
    return [f"syncd log lines: {shown}" + (f"; {other} non-JSON lines" if other else "")]


# --- the raw loop -------------------------------------------------------------------------

RAW_LOOP = textwrap.dedent(
    """
    import json, sqlite3, sys, time, httpx
    (ibase, itoken, site, dbase, dtoken, db, pull_s, poll_s, expected) = sys.argv[1:]
    pull_s, poll_s, expected = float(pull_s), float(poll_s), int(expected)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL"); conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE orders (order_id TEXT PRIMARY KEY, instock_id TEXT, "
                 "lines TEXT, state TEXT)")
    ins = httpx.Client(base_url=ibase, headers={"Authorization": "Bearer " + itoken}, timeout=30)
    ds = httpx.Client(base_url=dbase, headers={"Authorization": "Bearer " + dtoken}, timeout=30)

    def ok(answer):
        body = answer.json()
        if answer.status_code != 200 or not body.get("success"):
            raise SystemExit(f"dsorder refused: {answer.status_code} {body}")

    closed, next_pull, next_poll = 0, 0.0, 0.0
    while closed < expected:
        now = time.monotonic()
        if now >= next_pull:
            next_pull = now + pull_s
            answer = ds.get("/orders/submitted").json()
            known = {r[0] for r in conn.execute("SELECT order_id FROM orders")}
            for order in answer["data"]:
                if order["order_id"] in known:
                    continue
                instock_id = "DS-" + order["order_id"]
                lines = [(d["line_number"], d["article_id"], d["quantity"]) for d in order["details"]]
                conn.execute("INSERT INTO orders VALUES (?, ?, ?, 'new')",
                             (order["order_id"], instock_id, json.dumps(lines)))
                body = {"order_id": instock_id, "kind": "customer", "site_id": site,
                        "lines": [{"line_id": f"{instock_id}-{n}", "article_id": a, "qty": int(q)}
                                  for n, a, q in lines]}
                ins.post(f"/{site}/orders", json=body).raise_for_status()
                conn.execute("UPDATE orders SET state = 'created' WHERE order_id = ?",
                             (order["order_id"],))
        if now >= next_poll:
            next_poll = now + poll_s
            for order_id, instock_id, lines in conn.execute(
                "SELECT order_id, instock_id, lines FROM orders WHERE state = 'created'"
            ).fetchall():
                status = ins.get(f"/{site}/orders/{instock_id}/status").json()
                if status["order_status"] not in ("done", "canceled"):
                    continue
                picked = {}
                for task_id in status["ordertask_ids"]:
                    if not task_id:
                        continue
                    task = ins.get(f"/{site}/ordertasks/{task_id}").json()
                    if task["ordertask_status"] != "done":
                        continue
                    for line in task["lines"]:
                        picked[line["line_id"]] = picked.get(line["line_id"], 0) + sum(
                            c["qty"] for c in line["to_cells"])
                report = [{"line_number": n, "article_id": a,
                           "quantity": picked.get(f"{instock_id}-{n}", 0), "finished": True}
                          for n, a, q in json.loads(lines)]
                ok(ds.post(f"/orders/{order_id}/fulfill", json=report))
                ok(ds.post(f"/orders/{order_id}/close"))
                conn.execute("UPDATE orders SET state = 'closed' WHERE order_id = ?", (order_id,))
                closed += 1
        time.sleep(max(0.0, min(next_pull, next_poll) - time.monotonic()))
    print(closed)
    """
)


def run_raw(args: argparse.Namespace, work: Path) -> LoopResult:
    world = build_world(args.baseline_orders, args.lines, args.seed + 1, args.done_rate)
    world.start()
    try:
        bench_cpu = self_cpu()
        started = time.time()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                RAW_LOOP,
                world.instock.base_url,
                str(world.instock.token),
                world.instock.site_id,
                world.dsorder.base_url,
                str(world.dsorder.token),
                str(work / "raw.db"),
                str(args.pull_interval),
                str(args.progress_interval),
                str(args.baseline_orders),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        finished, cpu_at_done, exited = watch(world, proc, "raw", args.timeout)
        if exited is None:
            deadline = time.monotonic() + 10  # it exits by itself after the last close
            while exited is None and time.monotonic() < deadline:
                exited = reap(proc.pid)
                time.sleep(0.02)
            if exited is None:
                exited = stop_process(proc)
            else:
                proc.returncode = exited.code
        if exited.code not in (0, None, -signal.SIGTERM) and proc.stderr is not None:
            print(f"raw loop exited {exited.code}:\n{proc.stderr.read().decode()[-2000:]}")
        result = LoopResult(
            "raw loop",
            args.baseline_orders,
            started,
            finished,
            cpu_at_done,
            exited,
            world.closed_count(),
            self_cpu() - bench_cpu,
        )
        analyse(world, result)
        if exited.code != 0:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            result.extra.append(f"raw loop exited {exited.code}: {err[-1500:]}")
    finally:
        world.stop()
    return result


# --- report -------------------------------------------------------------------------------


def fmt(value: float, spec: str = ".1f", unit: str = "") -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:{spec}}{unit}"


def table(rows: Iterable[tuple[str, ...]]) -> list[str]:
    rows = list(rows)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in rows
    ]


def report(results: list[LoopResult], args: argparse.Namespace) -> None:
    target = args.progress_interval + 1.0
    print(
        f"\nPoll intervals: dsorder.pull {args.pull_interval:g}s, dsorder.progress "
        f"{args.progress_interval:g}s (raw loop: same two intervals); other syncd jobs as "
        "demo.toml (outbox 5s fallback, woken by jobs; instock.orders 3s, instock.moves 5s, "
        "host.inbox 3s, instock.articles/inventory 10s)"
        + (f"; disabled: {', '.join(args.disable)}" if args.disable else "")
        + ". Warehouse: reserved+done as soon as the Instock order exists."
    )
    for r in results:
        print(f"\n== {r.label}: {r.orders} orders x {args.lines} lines ==")
        if r.finished is None:
            print(f"  !! NOT FINISHED: {r.closed}/{r.orders} closed after {r.wall_s:.0f}s")
            for line in r.missing:
                print(f"     missing {line}")
        phases = ", ".join(f"{k} +{v:.1f}s" for k, v in r.phases.items())
        print(f"  timeline from process start: {phases}")
        for name, good, detail in r.checks:
            print(f"  [{'ok' if good else 'FAIL'}] {name}: {detail}")
        shown = ", ".join(
            f"{k.split(' ', 1)[1]} {v} ({v / r.orders:.1f}/order)"
            for k, v in sorted(r.requests.items(), key=lambda kv: -kv[1])
            if v >= r.orders / 10
        )
        print(f"  requests: {shown}")
        for line in r.extra:
            print(f"  {line}")

    rows: list[tuple[str, ...]] = [("", *(r.label for r in results))]

    def row(name: str, get: Callable[[LoopResult], str]) -> None:
        rows.append((name, *(get(r) for r in results)))

    row("orders x lines", lambda r: f"{r.orders} x {args.lines}")
    row("all closed", lambda r: "yes" if r.finished else f"NO ({r.closed})")
    row("wall until last close", lambda r: fmt(r.wall_s, ".1f", " s"))
    row("orders/s (whole loop)", lambda r: fmt(r.rate, ".1f"))
    row("done->close p50", lambda r: fmt(percentile(r.latencies, 0.50), ".2f", " s"))
    row("done->close p95", lambda r: fmt(percentile(r.latencies, 0.95), ".2f", " s"))
    row("done->close max", lambda r: fmt(max(r.latencies, default=math.nan), ".2f", " s"))
    row(
        f"p95 <= {target:g} s (target)",
        lambda r: "ok" if percentile(r.latencies, 0.95) <= target else "MISSED",
    )
    row(
        "CPU / order (to last close)",
        lambda r: fmt(r.cpu_at_done_s / r.orders * 1000, ".1f", " ms"),
    )
    row("CPU total at exit", lambda r: fmt(r.exited.cpu_s, ".1f", " s"))
    row("peak RSS", lambda r: fmt(r.exited.maxrss_mib, ".0f", " MiB"))
    row("sims+warehouse CPU (bench)", lambda r: fmt(r.bench_cpu_s, ".1f", " s"))
    row("checks", lambda r: "ok" if all(c[1] for c in r.checks) else "FAIL")
    print("\nSummary")
    for line in table(rows):
        print("  " + line)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--lines", type=int, default=10)
    parser.add_argument("--progress-interval", type=float, default=2.0)
    parser.add_argument("--pull-interval", type=float, default=5.0)
    parser.add_argument(
        "--baseline-orders", type=int, default=None, help="default: --orders; 0 skips it"
    )
    parser.add_argument(
        "--disable", action="append", default=[], metavar="JOB", help="turn a syncd job off"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per loop")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--rate-limit",
        type=float,
        default=100_000.0,
        help="syncd's Instock and DSOrder rate_limit per second (the raw loop has none); "
        "0 keeps syncd's defaults (Instock 20/s, DSOrder 5/s), which then bound the loop",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds, raw and syncd alternating; 1: one of each, no medians (for iterating)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="py-spy record each syncd process (100 Hz, the thread holding the GIL: its Python CPU) into DIR",
    )
    parser.add_argument(
        "--warm-up",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="one uncounted run of each first",
    )
    parser.add_argument(
        "--profile-wall",
        action="store_true",
        help="with --profile: every thread's wall time, idle included (where threads wait)",
    )
    parser.add_argument(
        "--done-rate",
        type=float,
        default=0.0,
        help="orders the warehouse finishes per second (default 0: all at once, a burst)",
    )
    args = parser.parse_args()
    if args.baseline_orders is None:
        args.baseline_orders = args.orders
    if args.progress_interval < 1 or args.pull_interval < 1:
        parser.error("syncd intervals are at least 1 second")
    return args


def main() -> None:
    args = parse_args()
    work = Path(tempfile.mkdtemp(prefix="syncd-order-loop-"))
    print(f"order loop bench: work directory {work}; {machine_load()}", flush=True)
    results: list[LoopResult] = []

    def contender(
        run: Callable[[argparse.Namespace, Path], LoopResult],
    ) -> Callable[[str], Figures]:
        def measure(tag: str) -> Figures:
            (work / tag).mkdir()
            result = run(args, work / tag)
            result.label = f"{result.label} ({tag})"
            if not tag.startswith("warm-"):
                results.append(result)
            return round_figures(result)

        return measure

    contenders: dict[str, Callable[[str], Figures]] = {}
    if args.baseline_orders > 0:
        contenders["raw"] = contender(run_raw)
    contenders["syncd"] = contender(run_syncd)
    series: dict[str, Series] = {}
    try:
        if args.warm_up:
            warm_up(contenders)
        if args.rounds == 1:  # iterating: one of each, no medians
            for name, measure in contenders.items():
                print(f"[{name}] {measure(f'{name}-1')}", flush=True)
            return
        series = interleave(
            contenders,
            args.rounds,
            show=lambda _r, _n, f: (
                f"p95 {f['p95']:.2f} s, wall {f['wall']:.1f} s, CPU/order {f['cpu_ms']:.1f} ms, "
                f"peak RSS {f['rss']:.0f} MiB, {'ok' if f['ok'] else 'FAILED'}"
            ),
        )
    finally:
        if results:
            report(results, args)
        if series:
            summary(series, args)
        if args.keep:
            print(f"\nkept {work}")
        else:
            import shutil

            shutil.rmtree(work, ignore_errors=True)


def round_figures(r: LoopResult) -> Figures:
    return {
        "p95": percentile(r.latencies, 0.95),
        "p50": percentile(r.latencies, 0.50),
        "wall": r.wall_s,
        "cpu_ms": r.cpu_at_done_s / r.orders * 1000,
        "rss": r.exited.maxrss_mib,
        "ok": bool(r.finished) and all(c[1] for c in r.checks),
    }


def summary(series: dict[str, Series], args: argparse.Namespace) -> None:
    """Medians of the rounds with the spread (min..max), and syncd's ratios to the raw loop."""
    target = args.progress_interval + 1.0
    print(f"\nMedian of {args.rounds} rounds (min..max), alternating; {machine_load()}")
    for name, s in series.items():
        print(
            f"  {name:>5}: p95 {s.spread('p95', '.2f')} s (target <= {target:g} s), "
            f"p50 {s.spread('p50', '.2f')} s, wall {s.spread('wall', '.1f')} s, "
            f"CPU/order {s.spread('cpu_ms', '.1f')} ms, peak RSS {s.spread('rss', '.0f')} MiB, "
            f"all checks ok in {sum(bool(f['ok']) for f in s.rounds)}/{len(s.rounds)} rounds"
        )
    if "raw" in series and args.baseline_orders == args.orders:
        p95 = ratios(series["syncd"], "p95", series["raw"], "p95")
        cpu = ratios(series["syncd"], "cpu_ms", series["raw"], "cpu_ms")
        print(
            f"  syncd / raw per round: p95 x{spread_of(p95)} (target <= 1), "
            f"CPU/order x{spread_of(cpu)} (target <= 1.5)"
        )


if __name__ == "__main__":
    main()
