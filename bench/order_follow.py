"""Benchmark: following open orders costs what changed, not what is open.

Many DSOrder orders stay open in Instock for hours while a few change. This measures the
Instock requests `dsorder.progress` makes per minute with N orders open and a fixed change
rate, for N = 200, 2,000 and 20,000, under `follow = "moves"` (poll the orders whose moves
were read, plus the slow sweep) against `follow = "all"` (poll every open order each run:
the behaviour before moves were followed) on the same world in the same run, and the
latency of the changed orders from "done in Instock" to "close request received by DSOrder".

Per size, on fresh simulators (both inside this process; `syncd run` is a child process):

- setup: N orders submitted in DSOrder, pulled and created in Instock by `syncd run` itself
  (setup config: rate limits high, not measured); a floor thread advances every new `DS-*`
  Instock order to reserved at once (no move: it waits to be picked), so N orders are open;
  syncd's first progress pass polls them all, and the setup goes on for one sweep interval
  more, so the measured runs see the sweep as a long-running daemon does;
- then rounds of both modes, alternating which goes first (`bench/rounds.py`): `syncd run`
  is started with the mode's config, and for `--minutes` (simulated) the floor changes
  orders at `--changes` per simulated minute: a random open order is picked (done: its pick
  moves carry its order id) or, for a `--cancel-share` of the changes, canceled (no move);
  each changed order is replaced by a new DSOrder order, so N stay open. Then the floor
  stops, syncd gets `--drain` seconds to close what was picked, and is stopped (SIGTERM).
  A run's window opens only once what the previous run left picked but unclosed is closed
  (at most 60 s), so neither mode pays for the other's backlog;
- after the rounds, `syncd run` (moves) closes every picked order still open, and the
  checks run: every Instock order created once, every closed order closed once, finished,
  with the picked totals (0 when canceled), every picked order closed.

Time is compressed by `--speed` k (default 5): every interval, the sweep interval, the
moves overlap and the change rate are scaled by k, and so are both connectors' rate limits
(Instock's default 20/s becomes 20k/s: the same share of the vendor's budget). Requests are
reported per SIMULATED minute (the rate a real site would see: real count / (window * k /
60)); latencies in real seconds against the target p95 <= progress interval + 1 s (the
interval compressed, the second not). Other syncd jobs that call Instock are off, so every
status, ordertask and moves request is dsorder.progress's.

    python bench/order_follow.py [--sizes 200,2000,20000] [--changes 100] [--minutes 10]
                                 [--speed 5] [--lines 4] [--rounds 3] [--no-warm-up]
                                 [--modes moves,all] [--pull-interval 30]

`--pull-interval` is dsorder.pull's (simulated, compressed like the rest): DSOrder lists
the whole day, so at 20,000 open orders each pull re-reads them all (about 0.7 s of CPU,
`bench/dsorder_pull.py --orders 20000 --lines 4`), a cost the compression does not shrink;
`--pull-interval 150` runs it every 30 real seconds, as at a site.

The warm-up runs each mode once (a simulated minute, uncounted) per size. A run of the
default three sizes takes about 30-40 minutes on 2 cores (most of it the 20,000 setup).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from syncd.sandbox.dsorder import DSOrderSim
from syncd.sandbox.instock import InstockSim

sys.path.insert(0, str(Path(__file__).resolve().parent))

from order_loop import (
    CountingInstock,
    percentile,
    proc_cpu_rss,
    reap,
    stop_process,
    write_catalog,
)
from rounds import Figures, Series, interleave, machine_load, spread_of, warm_up

SITE_TZ = "Europe/Amsterdam"
ARTICLES = 150
CLOSE_ROUTE = "POST /orders/{order_id}/close"
FOLLOW_ROUTES = {
    "status": "GET /v1/{site_id}/orders/{order_id}/status",
    "ordertasks": "GET /v1/{site_id}/ordertasks/{ordertask_id}",
    "moves": "GET /v1/{site_id}/moves",
}
CREATE_ROUTE = "POST /v1/{site_id}/orders"
PROGRESS_S = 10.0  # dsorder.progress's interval at a real site (the default)
PULL_S = 30.0
SWEEP_S = 600.0  # dsorder.progress's default sweep_interval
OVERLAP_S = 60.0
INSTOCK_RATE = 20.0  # connectors.instock.rate_limit default (per second)
DSORDER_RATE = 5.0


class Floor(threading.Thread):
    """The warehouse: every new DS- order reserved at once; while `changing` is set, a
    random open order is picked (done) or canceled at `rate` per second, and each changed
    order is replaced by a new DSOrder order."""

    def __init__(self, ins: InstockSim, submit: Any, rate: float, cancel_share: float) -> None:
        super().__init__(name="bench-floor", daemon=True)
        self.ins, self.submit, self.rate, self.cancel_share = ins, submit, rate, cancel_share
        self.rng = random.Random(5)
        self.changing = threading.Event()
        self.halt = threading.Event()
        self.open: list[str] = []  # reserved DS- orders
        self.done_at: dict[str, float] = {}
        self.canceled_at: dict[str, float] = {}
        self.not_reserved: Counter[str] = Counter()

    def run(self) -> None:
        listed = self.ins.state.site_orders[self.ins.site_id]
        seen, budget, last = 0, 0.0, time.monotonic()
        while not self.halt.wait(0.02):
            with self.ins.state.lock:
                fresh = [o for o in listed[seen:] if o.startswith("DS-")]
                seen = len(listed)
            for order_id in fresh:
                status = self.ins.advance_order(order_id)
                if status == "reserved":
                    self.open.append(order_id)
                else:
                    self.not_reserved[status] += 1
            now = time.monotonic()
            if not self.changing.is_set():
                budget, last = 0.0, now
                continue
            budget += (now - last) * self.rate
            last = now
            while budget >= 1 and self.open:
                budget -= 1
                index = self.rng.randrange(len(self.open))
                order_id = self.open[index]
                self.open[index] = self.open[-1]
                self.open.pop()
                if self.rng.random() < self.cancel_share:
                    self.ins.cancel_order(order_id)
                    self.canceled_at[order_id] = time.time()
                else:
                    assert self.ins.advance_order(order_id) == "done"
                    with self.ins.state.lock:
                        self.done_at[order_id] = self.ins.state.orders[order_id].status_changed_at
                self.submit()


@dataclass
class World:
    ins: CountingInstock
    ds: DSOrderSim
    floor: Floor
    work: Path
    orders: list[str] = field(default_factory=list)

    def stop(self) -> None:
        self.floor.halt.set()
        self.floor.join(5)
        self.ds.stop()
        self.ins.stop()


def build_world(n: int, args: argparse.Namespace, work: Path) -> World:
    ins = CountingInstock(seed=3, articles=ARTICLES)
    articles = sorted(
        a for a, art in ins.state.articles.items() if not art.get("is_serial_numbered")
    )
    ds = DSOrderSim(seed=3, tz=SITE_TZ)
    rng = random.Random(11)
    orders: list[str] = []

    def submit() -> str:
        order_id = ds.submit_order(
            store_id=rng.choice(ds.stores),
            lines=[(a, rng.randint(1, 3)) for a in rng.sample(articles, args.lines)],
        )
        orders.append(order_id)
        return order_id

    for _ in range(n):
        submit()
    # Stock for the open orders and every change of the run, so nothing is ever short.
    changes = args.changes * (2 * args.rounds * args.minutes + 2) * 1.2
    for article_id in articles:
        need = int((n + changes) * args.lines * 3 / len(articles)) + 100
        short = need - ins.stock(article_id).free
        if short > 0:  # an adjustment of 0 would empty the article
            ins.adjust_inventory(article_id, short)
    ins.start()
    ds.start()
    floor = Floor(ins, submit, args.changes * args.speed / 60.0, args.cancel_share)
    floor.start()
    world = World(ins, ds, floor, work, orders)
    write_catalog(SimpleNamespace(instock=ins, articles=articles), work / "host" / "inbox")  # type: ignore[arg-type]
    return world


def config_text(world: World, args: argparse.Namespace, mode: str, setup: bool) -> str:
    k = args.speed
    instock_rate = 5000.0 if setup else INSTOCK_RATE * k
    dsorder_rate = 5000.0 if setup else DSORDER_RATE * k
    progress = {"follow": mode, "sweep_interval": SWEEP_S / k, "moves_overlap": OVERLAP_S / k}
    if mode == "all":
        progress["follow_limit"] = len(world.orders) + 10_000  # poll every open order
    options = ", ".join(f"{key} = {json.dumps(v)}" for key, v in progress.items())
    return f"""
[daemon]
state_dir = {json.dumps(str(world.work / "state"))}
shutdown_timeout = "10s"
site_timezone = "{SITE_TZ}"

[logging]
format = "json"
level = "warning"

[host]
dir = {json.dumps(str(world.work / "host"))}
settle_time = 0

[outbox]
schedule = {{ interval = "{5.0 / k}s" }}

[connectors.instock]
enabled = true
base_url = "{world.ins.base_url}"
token = "{world.ins.token}"
site_id = "{world.ins.site_id}"
environment = "sandbox"
rate_limit = {{ per_second = {instock_rate}, burst = {2 * instock_rate} }}

[connectors.dsorder]
enabled = true
base_url = "{world.ds.base_url}"
token = "{world.ds.token}"
rate_limit = {{ per_second = {dsorder_rate}, burst = {2 * dsorder_rate} }}

[jobs."dsorder.pull"]
schedule = {{ interval = "{(2.0 if setup else args.pull_interval / k)}s" }}

[jobs."dsorder.progress"]
schedule = {{ interval = "{PROGRESS_S / k}s" }}
options = {{ {options} }}

[jobs."host.inbox"]
schedule = {{ interval = "1s" }}

[jobs."instock.orders"]
enabled = false

[jobs."instock.articles"]
enabled = false

[jobs."instock.inventory"]
enabled = false

[jobs."instock.moves"]
enabled = false

[jobs."state.housekeeping"]
schedule = {{ interval = "1h" }}
"""


def start_syncd(world: World, text: str, tag: str) -> subprocess.Popen[bytes]:
    config = world.work / f"syncd-{tag}.toml"
    config.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")}
    log = (world.work / f"syncd-{tag}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "syncd.cli", "run", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )


def setup(world: World, args: argparse.Namespace, timeout: float = 1800) -> float:
    """`syncd run` pulls and creates the N orders; the floor reserves them. Seconds taken."""
    started = time.monotonic()
    proc = start_syncd(world, config_text(world, args, "moves", setup=True), "setup")
    n = len(world.orders)
    try:
        while len(world.floor.open) < n:
            if reap(proc.pid) or time.monotonic() - started > timeout:
                raise SystemExit(
                    f"setup failed: {len(world.floor.open)}/{n} open; see {world.work}"
                )
            time.sleep(0.5)
        while not moves_read(world):  # the first progress pass polls them all, once
            if reap(proc.pid) or time.monotonic() - started > timeout:
                raise SystemExit(f"setup failed: no first progress pass; see {world.work}")
            time.sleep(0.5)
        # Every order was just polled: the sweep starts one sweep interval later. Measure
        # from then on, so each run sees the sweep as a long-running daemon does.
        time.sleep(SWEEP_S / args.speed + 2 * PROGRESS_S / args.speed)
    finally:
        stop_process(proc)
    return time.monotonic() - started


def moves_read(world: World) -> bool:
    """dsorder.progress has checkpointed its first moves read (after its first full pass)."""
    path = world.work / "state" / "syncd.db"
    if not path.exists():
        return False
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute(
            "SELECT 1 FROM checkpoints WHERE stream = 'dsorder.progress.moves_read'"
        ).fetchone()
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()
    return row is not None


def measure(world: World, args: argparse.Namespace, mode: str, tag: str, minutes: float) -> Figures:
    """One run of `syncd run` in `mode`: a window of `minutes` simulated minutes of changes."""
    k = args.speed
    floor, ins, ds = world.floor, world.ins, world.ds
    proc = start_syncd(world, config_text(world, args, mode, setup=False), tag)
    try:
        time.sleep(2 * PROGRESS_S / k + 1.5)  # started, first runs done
        # No backlog: what the previous run left picked but unclosed is closed first (an
        # alternation artefact: one mode would pay for the other's backlog).
        backlog_until = time.monotonic() + 60
        while time.monotonic() < backlog_until and not all_closed(ds, floor.done_at):
            time.sleep(0.2)
        before = ins.server.counts
        cpu0, _, _ = proc_cpu_rss(proc.pid)
        done0, canceled0 = set(floor.done_at), set(floor.canceled_at)
        t0 = time.time()
        floor.changing.set()
        time.sleep(minutes * 60 / k)
        floor.changing.clear()
        t1 = time.time()
        after = ins.server.counts
        cpu1, _, _ = proc_cpu_rss(proc.pid)
        done = {o: t for o, t in floor.done_at.items() if o not in done0}
        canceled = {o: t for o, t in floor.canceled_at.items() if o not in canceled0}
        deadline = time.monotonic() + args.drain
        while time.monotonic() < deadline and not all_closed(ds, done):
            time.sleep(0.2)
        closes = first_closes(ds, t0)
    finally:
        stop_process(proc)
    sim_minutes = (t1 - t0) * k / 60
    diff = {name: after.get(r, 0) - before.get(r, 0) for name, r in FOLLOW_ROUTES.items()}
    latencies = [
        closes[o.removeprefix("DS-")] - t
        for o, t in done.items()
        if o.removeprefix("DS-") in closes
    ]
    cancel_lat = [
        closes[o.removeprefix("DS-")] - t
        for o, t in canceled.items()
        if o.removeprefix("DS-") in closes
    ]
    return {
        "mode": mode,
        "open": len(floor.open),
        "follow_per_min": sum(diff.values()) / sim_minutes,
        **{f"{name}_per_min": v / sim_minutes for name, v in diff.items()},
        "creates_per_min": (after.get(CREATE_ROUTE, 0) - before.get(CREATE_ROUTE, 0)) / sim_minutes,
        "changed_per_min": (len(done) + len(canceled)) / sim_minutes,
        "done": len(done),
        "closed": len(latencies),
        "p50": percentile(latencies, 0.50),
        "p95": percentile(latencies, 0.95),
        "canceled": len(canceled),
        "canceled_closed": len(cancel_lat),
        "cancel_max": max(cancel_lat, default=math.nan),
        "cpu_per_min": (cpu1 - cpu0) / sim_minutes,
    }


def all_closed(ds: DSOrderSim, done: dict[str, float]) -> bool:
    with ds.state.lock:
        return all(ds.state.orders[o.removeprefix("DS-")].closed for o in done)


def first_closes(ds: DSOrderSim, since: float) -> dict[str, float]:
    closes: dict[str, float] = {}
    for record in ds.requests:
        if record.route == CLOSE_ROUTE and record.timestamp >= since - 60:
            closes.setdefault(record.path.split("/")[2], record.timestamp)
    return closes


def drain(world: World, args: argparse.Namespace, timeout: float = 120) -> None:
    """`syncd run` (moves) with the floor still until every picked order is closed."""
    proc = start_syncd(world, config_text(world, args, "moves", setup=False), "drain")
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not all_closed(world.ds, world.floor.done_at):
            time.sleep(0.5)
    finally:
        stop_process(proc)


def checks(world: World) -> list[str]:
    """Every Instock order created once; every closed DSOrder order closed once, finished,
    with the picked totals (what was ordered when done, 0 when canceled); every picked
    order closed (after the final drain)."""
    ins, ds = world.ins, world.ds
    problems = []
    twice = [o for o, n in ins.create_attempts.items() if n != 1]
    if twice:
        problems.append(f"{len(twice)} Instock orders not created exactly once: {twice[:3]}")
    with ds.state.lock:
        for order_id in world.orders:
            order = ds.state.orders[order_id]
            instock_id = f"DS-{order_id}"
            if instock_id in world.floor.done_at and not order.closed:
                problems.append(f"{order_id} done in Instock, not closed")
            if not order.closed:
                continue
            if order.closes != 1 or order.close_attempts != 1:
                problems.append(f"{order_id} closed {order.closes} times")
            picked = instock_id in world.floor.done_at
            want = {n: (ln.quantity if picked else 0) for n, ln in order.lines.items()}
            got = {n: ln.fulfilled for n, ln in order.lines.items()}
            if got != want or not all(ln.finished for ln in order.lines.values()):
                problems.append(f"{order_id} totals {got} != {want}")
    return problems


def _contender(
    world: World, args: argparse.Namespace, counter: Counter[str], mode: str, minutes: float
) -> Any:
    """A contender for `bench/rounds.py`: one measured run of `mode` per call."""

    def run(tag: str) -> Figures:
        counter[mode] += 1
        return measure(world, args, mode, f"{tag}-{counter[mode]}", minutes)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="200,2000,20000")
    parser.add_argument("--changes", type=float, default=100.0, help="per simulated minute")
    parser.add_argument("--cancel-share", type=float, default=0.05)
    parser.add_argument(
        "--minutes", type=float, default=10.0, help="simulated minutes per run (a sweep interval)"
    )
    parser.add_argument(
        "--modes", default="moves,all", help="follow modes compared (moves, all, or both)"
    )
    parser.add_argument("--speed", type=float, default=5.0, help="time compression k")
    parser.add_argument("--lines", type=int, default=4)
    parser.add_argument(
        "--pull-interval",
        type=float,
        default=PULL_S,
        help="dsorder.pull's interval, simulated seconds (compressed by --speed)",
    )
    parser.add_argument("--drain", type=float, default=15.0, help="seconds to close the picked")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warm-up", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    modes = [m for m in args.modes.split(",") if m]
    if not modes or set(modes) - {"moves", "all"}:
        parser.error("--modes: a comma-separated list of moves and all")
    root = Path(tempfile.mkdtemp(prefix="syncd-order-follow-"))
    print(
        f"order follow bench: {root}; sizes {sizes}, {args.changes:g} changes per simulated "
        f"minute ({args.cancel_share:.0%} cancellations), {args.minutes:g} simulated minutes "
        f"per run, speed x{args.speed:g} (progress every {PROGRESS_S / args.speed:g} s, pull "
        f"{args.pull_interval / args.speed:g} s, sweep {SWEEP_S / args.speed:g} s, rate limits "
        f"x{args.speed:g}); {machine_load()}",
        flush=True,
    )
    results: dict[int, dict[str, Series]] = {}
    for n in sizes:
        work = root / f"n{n}"
        work.mkdir()
        world = build_world(n, args, work)
        try:
            took = setup(world, args)
            print(f"\n== {n} open orders: setup {took:.0f} s; {machine_load()}", flush=True)
            contender = partial(_contender, world, args, Counter[str]())
            if args.warm_up:
                warm_up({m: contender(m, 1.0) for m in modes})
            series = interleave(
                {m: contender(m, args.minutes) for m in modes},
                args.rounds,
                show=lambda _r, _n, f: (
                    f"open {f['open']}, Instock follow requests {f['follow_per_min']:,.0f}/min "
                    f"(status {f['status_per_min']:,.0f}, ordertasks {f['ordertasks_per_min']:,.0f}, "
                    f"moves {f['moves_per_min']:,.0f}), creates {f['creates_per_min']:,.0f}/min, "
                    f"changed {f['changed_per_min']:.0f}/min; done->close p50 {f['p50']:.2f} s "
                    f"p95 {f['p95']:.2f} s ({f['closed']}/{f['done']} closed); canceled closed "
                    f"{f['canceled_closed']}/{f['canceled']}; syncd CPU {f['cpu_per_min']:.2f} s/min"
                ),
            )
            results[n] = series
            drain(world, args)
            problems = checks(world)
            print(f"   checks: {'ok' if not problems else problems[:5]}", flush=True)
        finally:
            world.stop()
    summary(results, args)
    if args.keep:
        print(f"kept {root}")
    else:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


def summary(results: dict[int, dict[str, Series]], args: argparse.Namespace) -> None:
    target = PROGRESS_S / args.speed + 1
    print(f"\nMedian of {args.rounds} rounds (min..max) per size; {machine_load()}")
    print(
        "  Instock requests per simulated minute from dsorder.progress (status + ordertasks + moves)"
    )
    for n, series in results.items():
        for mode, s in series.items():
            print(
                f"  {n:>6} open, follow={mode:<5}: {s.spread('follow_per_min')} req/min, done->close "
                f"p95 {s.spread('p95', '.2f')} s (target <= {target:g} s), p50 "
                f"{s.spread('p50', '.2f')} s, syncd CPU {s.spread('cpu_per_min', '.2f')} s/min"
            )
    if any("moves" not in r for r in results.values()):
        return
    moves = {n: statistics.median(r["moves"].values("follow_per_min")) for n, r in results.items()}
    if len(moves) > 1:
        low, high = min(moves.values()), max(moves.values())
        line = (
            f"  follow=moves: largest / smallest requests per minute across sizes x{high / low:.2f} "
            "(target <= 1.5)"
        )
        if all("all" in r for r in results.values()):
            line += "; all: " + ", ".join(
                f"{n}: x{spread_of([a / m for a, m in zip(r['all'].values('follow_per_min'), r['moves'].values('follow_per_min'), strict=True)])} of moves"
                for n, r in results.items()
            )
        print(line)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    main()
