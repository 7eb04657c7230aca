"""The DSOrder -> Instock -> DSOrder order loop with `syncd run` as a real process.

Both simulators run in this process: the DSOrder stores submit orders (its clock stands
still at "now", so its "today" never turns during a test) and a floor thread advances the
Instock orders syncd created. syncd runs with one-second intervals and the host catalog in
its inbox. The crash test kills it with SIGKILL at seeded random moments, restarts it, and
judges the end state from the simulators' request logs and state: each order created in
Instock once, closed in DSOrder once, with the totals Instock picked.

Both connectors run unthrottled (`rate_limit = { per_second = 0 }`): the default budgets
(DSOrder 5 requests a second) would bound how fast the loop settles after the kills, which
these tests do not judge (tests/integration/test_rate_budget.py does).

Reproduce a crash-trial failure with `ORDER_LOOP_SEED=<seed>` (printed in its message).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.sandbox.base import ManualClock, Request, Response
from syncd.sandbox.dsorder import DSOrderSim
from syncd.sandbox.instock import InstockSim
from tests.simkit import count_creates
from tests.system.conftest import NotifySocket, SyncdProcess, wait_until

pytestmark = pytest.mark.system

ZONE = "Europe/Amsterdam"
SEED = int(os.environ.get("ORDER_LOOP_SEED", "20261124"))
CREATE_ROUTE = "POST /v1/{site_id}/orders"
CLOSE_ROUTE = "POST /orders/{order_id}/close"
FULFILL_ROUTE = "POST /orders/{order_id}/fulfill"
KILLS = 22
WRITE_LAG = 0.04  # seconds a simulator takes to answer a write it has already applied


# --- simulators ----------------------------------------------------------------------------


class LaggingInstock(InstockSim):
    """Instock that applies a create at once but answers it `WRITE_LAG` later: a kill in
    between leaves an order syncd has not recorded as created."""

    lag = 0.0

    def _create_order(self, request: Request) -> Response:
        response = super()._create_order(request)
        time.sleep(self.lag)
        return response


class LaggingDSOrder(DSOrderSim):
    """DSOrder that applies fulfil and close at once but answers them `WRITE_LAG` later."""

    lag = 0.0

    def _fulfill(self, request: Request) -> Response:
        response = super()._fulfill(request)
        time.sleep(self.lag)
        return response

    def _close(self, request: Request) -> Response:
        response = super()._close(request)
        time.sleep(self.lag)
        return response


@pytest.fixture
def ins() -> Iterator[LaggingInstock]:
    with LaggingInstock(seed=21, articles=30) as sim:
        sim.creates = count_creates(sim.state)  # type: ignore[attr-defined]
        yield sim


@pytest.fixture
def ds() -> Iterator[LaggingDSOrder]:
    with LaggingDSOrder(seed=SEED, clock=ManualClock(), tz=ZONE) as sim:
        yield sim


def stocked(ins: InstockSim, minimum: int = 30) -> list[str]:
    return sorted(a for a in ins.state.articles if ins.stock(a).free >= minimum)


class Floor(threading.Thread):
    """The warehouse: advances DS- orders in Instock, a step at a time, as they appear."""

    def __init__(self, ins: InstockSim, seed: int, period: float = 0.15) -> None:
        super().__init__(name="floor", daemon=True)
        self.ins = ins
        self.rng = random.Random(seed)
        self.period = period
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(self.period):
            with self.ins.state.lock:
                open_ids = [
                    o.order_id
                    for o in self.ins.state.orders.values()
                    if o.order_id.startswith("DS-") and o.status in ("registered", "reserved")
                ]
            for order_id in open_ids:
                if self.rng.random() < 0.6:
                    self.ins.advance_order(order_id)

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=5)


class Stores(threading.Thread):
    """DSOrder stores submitting orders every `period` seconds until stopped."""

    def __init__(self, submit: Callable[[], str], period: float) -> None:
        super().__init__(name="stores", daemon=True)
        self.submit = submit
        self.period = period
        self.halt = threading.Event()
        self.submitted: list[str] = []

    def run(self) -> None:
        while not self.halt.wait(self.period):
            self.submitted.append(self.submit())

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=5)


# --- syncd ---------------------------------------------------------------------------------


@pytest.fixture
def setup_syncd(
    tmp_path: Path, ins: InstockSim, ds: DSOrderSim
) -> Callable[..., tuple[Path, Path]]:
    """Write the config and a host catalog (the given Instock articles) into the inbox."""

    def setup(policy: str, catalog: list[str]) -> tuple[Path, Path]:
        state_dir, host_dir = tmp_path / "state", tmp_path / "host"
        (host_dir / "inbox").mkdir(parents=True)
        rows = [f"{a},Article {a},true" for a in catalog]
        (host_dir / "inbox" / "articles-0001.csv").write_text(
            "\n".join(["article_id,name,whole_units", *rows]) + "\n"
        )
        retry = '{ max_attempts = 4, initial_backoff = "50ms", max_backoff = "500ms" }'
        timeouts = '{ connect = "2s", read = "5s" }'
        config = tmp_path / "syncd.toml"
        config.write_text(
            f"""
[daemon]
state_dir = {json.dumps(str(state_dir))}
shutdown_timeout = "5s"
site_timezone = "{ZONE}"

[logging]
format = "json"
level = "info"

[host]
dir = {json.dumps(str(host_dir))}
settle_time = 0

[outbox]
schedule = {{ interval = "1s" }}
initial_backoff = "100ms"
max_backoff = "1s"

[connectors.instock]
enabled = true
base_url = "{ins.base_url}"
token = "{ins.token}"
site_id = "{ins.site_id}"
environment = "sandbox"
retry = {retry}
timeouts = {timeouts}
rate_limit = {{ per_second = 0 }}

[connectors.dsorder]
enabled = true
base_url = "{ds.base_url}"
token = "{ds.token}"
retry = {retry}
timeouts = {timeouts}
rate_limit = {{ per_second = 0 }}

[jobs."dsorder.pull"]
schedule = {{ interval = "1s" }}
options = {{ policy = "{policy}" }}

[jobs."dsorder.progress"]
schedule = {{ interval = "1s" }}
# Short-stock cancellations write no move: the sweep finds them within seconds here.
options = {{ sweep_interval = "2s" }}

[jobs."host.inbox"]
schedule = {{ interval = "1s" }}

[jobs."instock.orders"]
schedule = {{ interval = "2s" }}

[jobs."instock.articles"]
enabled = false

[jobs."instock.inventory"]
enabled = false

[jobs."instock.moves"]
enabled = false

[jobs."state.housekeeping"]
schedule = {{ interval = "1h" }}
""",
            encoding="utf-8",
        )
        return config, state_dir

    return setup


def db_rows(state_dir: Path, sql: str, params: Any = ()) -> list[dict[str, Any]]:
    conn = sqlite3.connect(f"file:{state_dir / 'syncd.db'}?mode=ro", uri=True, timeout=5)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params).fetchall()]
    except sqlite3.OperationalError:  # not created or not migrated yet
        return []
    finally:
        conn.close()


def picked(ins: InstockSim, order_id: str) -> dict[int, int]:
    """What Instock picked for a DSOrder order, by DSOrder line number."""
    prefix = f"DS-{order_id}-"
    return {
        int(line_id.removeprefix(prefix)): qty
        for line_id, qty in ins.fulfilled(f"DS-{order_id}").items()
    }


def reported(ds: DSOrderSim, order_id: str) -> dict[int, tuple[float, bool]]:
    with ds.state.lock:
        lines = ds.state.orders[order_id].lines
        return {n: (line.fulfilled, line.finished) for n, line in lines.items()}


def settled(ins: InstockSim, ds: DSOrderSim, state_dir: Path, order_ids: list[str]) -> bool:
    """Every order is pulled, and each is held or closed in DSOrder with nothing pending."""
    states = {
        r["order_id"]: r["state"]
        for r in db_rows(state_dir, "SELECT order_id, state FROM dsorder_orders")
    }
    if any(states.get(o) not in ("held", "closed") for o in order_ids):
        return False
    if any(ds.closes(o) != 1 for o in order_ids if states[o] == "closed"):
        return False
    pending = db_rows(state_dir, "SELECT id FROM outbox WHERE status = 'pending'")
    return not pending


def check_end_state(
    ins: InstockSim, ds: DSOrderSim, state_dir: Path, order_ids: list[str], policy: str
) -> dict[str, str]:
    """The loop's promises, from the simulators and the state DB; returns order -> state."""
    states = {
        r["order_id"]: r["state"]
        for r in db_rows(state_dir, "SELECT order_id, state FROM dsorder_orders")
    }
    assert set(states) == set(order_ids)  # nothing lost, nothing invented
    creates: Counter[str] = ins.creates  # type: ignore[attr-defined]
    rejects = db_rows(
        state_dir,
        "SELECT reference, reason FROM rejects WHERE source = 'dsorder:lines' AND status = 'open'",
    )
    rejected_lines = {r["reference"] for r in rejects}
    for order_id in order_ids:
        with ds.state.lock:
            lines = dict(ds.state.orders[order_id].lines)
        bad = {
            n
            for n, line in lines.items()
            if not float(line.quantity).is_integer() or line.article_id not in ins.state.articles
        }
        assert {f"order {order_id} line {n}" for n in bad} <= rejected_lines, order_id
        if states[order_id] == "held":
            assert bad, order_id
            assert policy == "hold" or bad == set(lines), order_id
            assert (creates[f"DS-{order_id}"], ds.closes(order_id)) == (0, 0), order_id
            continue
        assert states[order_id] == "closed", order_id
        assert policy == "partial" or not bad, order_id
        assert creates[f"DS-{order_id}"] == 1, order_id
        assert ds.closes(order_id) == 1, order_id
        totals = picked(ins, order_id)
        assert set(totals) == set(lines) - bad, order_id
        expected = {n: (totals.get(n, 0), True) for n in lines}
        assert reported(ds, order_id) == expected, order_id
    created = {o for o in creates if o.startswith("DS-")}
    assert created == {f"DS-{o}" for o, s in states.items() if s == "closed"}
    # From the request logs: one successful create per Instock order, one successful close
    # per DSOrder order (later close attempts answered "already closed").
    ok_creates = [r for r in ins.requests if r.route == CREATE_ROUTE and r.status == 200]
    assert len(ok_creates) == len(created)
    assert ds.state.stats["close_ok"] == sum(s == "closed" for s in states.values())
    assert db_rows(state_dir, "SELECT * FROM outbox WHERE status != 'sent'") == []
    assert db_rows(state_dir, "SELECT * FROM rejects WHERE source LIKE 'outbox:%'") == []
    return states


def start(spawn: Callable[..., SyncdProcess], notify: NotifySocket, config: Path) -> Any:
    mark = notify.mark()
    daemon = spawn(config)
    notify.wait_for("READY=1", timeout=20, since=mark)
    return daemon


# --- tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["hold", "partial"])
def test_orders_flow_from_dsorder_to_close_through_a_running_daemon(
    policy: str,
    ins: LaggingInstock,
    ds: LaggingDSOrder,
    setup_syncd: Callable[..., tuple[Path, Path]],
    spawn: Callable[..., SyncdProcess],
    notify: NotifySocket,
) -> None:
    """With `syncd run` as a process, DSOrder orders reach Instock and are reported and
    closed as the floor works; fractional and unknown-article lines follow the policy and
    every order is accounted for."""
    articles = stocked(ins)
    config, state_dir = setup_syncd(policy, articles)
    first = ds.generate(8, articles, fractional_rate=0.15, unknown_rate=0.1, max_lines=4)
    first.append(ds.submit_order(lines=[(articles[0], 2), (articles[1], 1.5)]))
    first.append(ds.submit_order(lines=[("NO-SUCH-ARTICLE", 1)]))
    floor = Floor(ins, SEED)
    floor.start()
    try:
        daemon = start(spawn, notify, config)
        later = ds.generate(6, articles, fractional_rate=0.15, unknown_rate=0.1, max_lines=4)
        orders = first + later
        wait_until(lambda: settled(ins, ds, state_dir, orders), 30, "every order held or closed")
        daemon.send(signal.SIGTERM)
        assert daemon.wait_exit(15) == 0
    finally:
        floor.stop()
    states = check_end_state(ins, ds, state_dir, orders, policy)
    closed = sum(s == "closed" for s in states.values())
    held = sum(s == "held" for s in states.values())
    assert closed >= 8, states  # both branches of the policy were taken
    assert held >= 2, states
    mixed = first[-2]  # a good line and a fractional one
    assert states[mixed] == ("closed" if policy == "partial" else "held")
    assert states[first[-1]] == "held"  # nothing Instock can take: held under both policies
    assert not [e for e in daemon.events() if e.get("level") in ("error", "critical")]


def test_kill_9_at_random_points_loses_and_duplicates_nothing(
    ins: LaggingInstock,
    ds: LaggingDSOrder,
    setup_syncd: Callable[..., tuple[Path, Path]],
    spawn: Callable[..., SyncdProcess],
    notify: NotifySocket,
) -> None:
    """SIGKILL of `syncd run` at seeded random moments (restarted each time) never creates
    an Instock order twice, never closes a DSOrder order twice, loses no order, and the
    final totals are what Instock picked."""
    rng = random.Random(SEED)  # kill moments (this thread)
    order_rng = random.Random(SEED + 2)  # order contents (the stores' thread)
    articles = stocked(ins, minimum=60)
    config, state_dir = setup_syncd("partial", articles)
    ins.lag = ds.lag = WRITE_LAG

    def submit() -> str:
        lines: list[tuple[str, float]] = [
            (a, order_rng.randint(1, 6))
            for a in order_rng.sample(articles, order_rng.randint(1, 3))
        ]
        if order_rng.random() < 0.1:
            lines.append((articles[0], 0.5))  # a line Instock cannot take: reported as 0
        return ds.submit_order(lines=lines)

    orders = [submit() for _ in range(6)]
    stores = Stores(submit, period=0.35)
    floor = Floor(ins, SEED + 1)
    stores.start()
    floor.start()
    unrecorded: list[str] = []  # what each kill left done remotely but not recorded
    try:
        for trial in range(KILLS):
            mark = notify.mark()
            daemon = spawn(config)
            if trial % 5 == 4:  # now and then during start-up, before READY
                time.sleep(rng.uniform(0.0, 0.6))
            else:
                notify.wait_for("READY=1", timeout=20, since=mark)
                time.sleep(rng.uniform(0.05, 1.6))
            daemon.kill()
            unrecorded += unrecorded_work(ins, ds, state_dir)
        stores.stop()
        orders += stores.submitted
        daemon = start(spawn, notify, config)
        wait_until(lambda: settled(ins, ds, state_dir, orders), 90, "the loop to settle")
        daemon.send(signal.SIGTERM)
        assert daemon.wait_exit(15) == 0
    finally:
        stores.stop()
        floor.stop()
    context = f"ORDER_LOOP_SEED={SEED}; kills left undone: {Counter(unrecorded)}"
    states = check_end_state(ins, ds, state_dir, orders, "partial")
    assert sum(s == "closed" for s in states.values()) >= len(orders) - 3, context
    assert len(orders) >= 30, context
    interrupted = db_rows(state_dir, "SELECT job FROM runs WHERE status = 'interrupted'")
    assert interrupted, f"no kill landed inside a job run; {context}"
    # Replays after a kill were answered "already exists" / "already closed" and taken as done.
    replays = db_rows(state_dir, "SELECT kind FROM outbox WHERE result LIKE '%already_done%'")
    context += f"; interrupted runs: {Counter(r['job'] for r in interrupted)}"
    context += f"; replays answered 'already done': {Counter(r['kind'] for r in replays)}"
    assert replays, f"no kill left a write done but unrecorded; {context}"
    print(context)


LOSSY_KILLS = 10
LOSS_RATE = {"apply_then_drop": 0.15, "drop_before_apply": 0.1}


def test_lost_answers_and_kill_9_in_the_loop_lose_and_duplicate_nothing(
    ins: LaggingInstock,
    ds: LaggingDSOrder,
    setup_syncd: Callable[..., tuple[Path, Path]],
    spawn: Callable[..., SyncdProcess],
    notify: NotifySocket,
) -> None:
    """Ambiguous writes in the order loop: Instock takes a duplicate order id as a second
    order, and the create, fulfil and close routes lose answers at random, after applying
    the write or before; `syncd run` is killed at random moments besides. Each order is
    still created once, closed once, with the totals Instock picked: the read-back before
    resending (not an "already exists" answer) keeps the creates single."""
    rng = random.Random(SEED + 10)
    order_rng = random.Random(SEED + 12)
    articles = stocked(ins, minimum=60)
    config, state_dir = setup_syncd("partial", articles)
    ins.lag = ds.lag = WRITE_LAG
    ins.duplicate_order_ids = "accept"
    ds.closed_listing = "status"  # a closed order shows as such when read back
    for sim, route in ((ins, CREATE_ROUTE), (ds, FULFILL_ROUTE), (ds, CLOSE_ROUTE)):
        sim.faults._rng = random.Random(SEED + 13)
        for kind, p in LOSS_RATE.items():
            sim.faults.rate(route, kind, p)

    def submit() -> str:
        lines = [(a, order_rng.randint(1, 6)) for a in order_rng.sample(articles, 2)]
        return ds.submit_order(lines=lines)

    orders = [submit() for _ in range(6)]
    stores = Stores(submit, period=0.5)
    floor = Floor(ins, SEED + 11)
    stores.start()
    floor.start()
    try:
        for _ in range(LOSSY_KILLS):
            mark = notify.mark()
            daemon = spawn(config)
            notify.wait_for("READY=1", timeout=20, since=mark)
            time.sleep(rng.uniform(0.05, 1.6))
            daemon.kill()
        stores.stop()
        orders += stores.submitted
        daemon = start(spawn, notify, config)
        wait_until(lambda: settled(ins, ds, state_dir, orders), 120, "the loop to settle")
        daemon.send(signal.SIGTERM)
        assert daemon.wait_exit(15) == 0
    finally:
        stores.stop()
        floor.stop()
    lost = Counter(r.fault for s in (ins, ds) for r in s.requests if r.fault in LOSS_RATE)
    context = f"ORDER_LOOP_SEED={SEED}; answers lost: {dict(lost)}"
    with ins.state.lock:
        assert ins.state.duplicate_orders == [], context
    states = check_end_state(ins, ds, state_dir, orders, "partial")
    assert all(s == "closed" for s in states.values()), context
    assert lost["apply_then_drop"], context
    assert lost["drop_before_apply"], context
    resolved: Counter[str] = Counter()
    for row in db_rows(state_dir, "SELECT counts FROM runs WHERE job = 'outbox.send'"):
        counts = json.loads(row["counts"] or "{}")
        resolved.update({k: v for k, v in counts.items() if k.startswith("readback_")})
    assert resolved["readback_applied"], f"{context}; read-backs {dict(resolved)}"
    print(f"{context}; orders {len(orders)}; read-backs {dict(resolved)}")


def unrecorded_work(ins: InstockSim, ds: DSOrderSim, state_dir: Path) -> list[str]:
    """After a kill: creates and closes the remotes applied that syncd has not recorded."""
    found = []
    sync = {
        r["order_id"]: r["status"]
        for r in db_rows(state_dir, "SELECT order_id, status FROM instock_order_sync")
    }
    creates: Counter[str] = ins.creates  # type: ignore[attr-defined]
    found += ["create" for o in list(creates) if sync.get(o) == "queued"]
    states = {
        r["order_id"]: r["state"]
        for r in db_rows(state_dir, "SELECT order_id, state FROM dsorder_orders")
    }
    with ds.state.lock:
        closed = [o.order_id for o in ds.state.orders.values() if o.closed]
    found += ["close" for o in closed if states.get(o) != "closed"]
    return found


def test_syncd_run_refuses_dsorder_without_an_explicit_site_timezone(
    setup_syncd: Callable[..., tuple[Path, Path]],
    run_cli: Callable[..., Any],
    ins: InstockSim,
) -> None:
    """`syncd run` with DSOrder enabled and `daemon.site_timezone` left to its default
    exits 78 naming the key, before it touches the state directory (DSOrder's "today"
    would otherwise silently be UTC's)."""
    config, state_dir = setup_syncd("hold", stocked(ins)[:2])
    config.write_text(config.read_text().replace(f'site_timezone = "{ZONE}"\n', ""))
    result = run_cli("run", "--config", str(config))
    assert result.returncode == 78, result.stderr
    assert "daemon.site_timezone: required when connectors.dsorder is enabled" in result.stderr
    assert not (state_dir / "syncd.db").exists()
