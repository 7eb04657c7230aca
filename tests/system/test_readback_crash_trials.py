"""Crash trials with ambiguous writes: lost answers and kill -9 around Instock writes.

Each trial runs the Instock flow (catalog upload, orders created, one updated, one
cancelled, one added later) as real `syncd once` processes against an Instock simulator
that takes a duplicate order id as a second order (`duplicate_order_ids="accept"`), so
only syncd's read-back keeps a write from counting twice. On every write route the
simulator loses answers at random: after applying the write (`apply_then_drop`) or before
(`drop_before_apply`). Most `outbox.send` runs are a victim process killed with SIGKILL:
while Instock handles a write (after applying it, so the answer dies with the process;
or before it, so it never arrives), or at a random moment of the run. The rest of the
script runs in one worker process until nothing is pending.

At the end each trial counts, at the simulator's handlers (never through an answer):
**lost** writes (a host article or order missing from Instock, the update or the cancel
not applied, an intent left pending or rejected) and **duplicated** ones (an article or
order created more than once, a second order under a known id). Both must be 0. The
trials' figures (trials, kills, lost, duplicated, and how the read-backs decided) are
printed and written to `readback-crash-trials.json` under pytest's temporary directory.

Reproduce with `CRASH_TRIALS_SEED=<seed>`; `READBACK_TRIALS=<n>` and
`READBACK_DAEMON_TRIALS=<n>` set the number of trials.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from syncd.sandbox.base import Request, Response
from syncd.sandbox.instock import InstockSim
from tests.system.crashkit import (
    Trap,
    Worker,
    daemon,
    db_rows,
    gather,
    run_killed,
    syncd_env,
    trapped,
    wrap_routes,
    write_hook,
    write_trial_config,
)

pytestmark = pytest.mark.system

TRIALS_SEED = int(os.environ.get("CRASH_TRIALS_SEED", "20261205"))
TRIALS = int(os.environ.get("READBACK_TRIALS", "8"))
DAEMON_TRIALS = int(os.environ.get("READBACK_DAEMON_TRIALS", "4"))
SIM_SEED = 5
NEW_ARTICLES = 24
ORDERS = 8
LOSS_RATE = {"apply_then_drop": 0.2, "drop_before_apply": 0.15}
WRITES = {
    "POST /v1/articles": "upload",
    "PUT /v1/articles/{article_id}": "article_update",
    "POST /v1/{site_id}/orders": "create",
    "PUT /v1/{site_id}/orders/{order_id}": "update",
    "DELETE /v1/{site_id}/orders/{order_id}/status": "cancel",
}
UPDATED, CANCELED, ADDED = "RB0002", "RB0003", "RB0101"
# How a victim `outbox.send` dies: at a write after Instock applied it, at a write before,
# at a random moment, or not at all (a clean run between the others).
KILLS = ("applied", "before", "timer", None)


@dataclasses.dataclass
class Owner:
    """What `crashkit.trapped` reads: the armed trap and the answer lag."""

    trap: Trap | None = None
    lag: float = 0.0


@dataclasses.dataclass
class Scenario:
    articles_csv: str
    orders_csv: str
    orders2_csv: str
    articles: dict[str, str]  # article id -> name
    lines: dict[str, list[tuple[str, str, int]]]  # order id -> final lines

    @classmethod
    def build(cls, sim: InstockSim) -> Scenario:
        rng = random.Random(SIM_SEED)
        with sim.state.lock:
            inventory = sim.state.inventory[sim.site_id]
            stocked = [a for a in sim.state.article_ids if a in inventory and inventory[a].free]
        articles = {f"RBN{i:04d}": f"Read-back article {i}" for i in range(NEW_ARTICLES)}
        head = "article_id,name,dim_x,dim_y,dim_z,dim_uom"
        articles_csv = "\n".join([head, *(f"{a},{n},10,20,30,cm" for a, n in articles.items())])
        order_head = "action,order_id,line_id,article_id,qty"
        lines: dict[str, list[tuple[str, str, int]]] = {}
        for number in range(1, ORDERS + 1):
            order_id = f"RB{number:04d}"
            # Half on Instock's own articles, half on the new ones (created waiting for the
            # upload).
            pool = stocked if number % 2 else list(articles)
            chosen = rng.sample(pool, k=rng.randint(1, 2))
            lines[order_id] = [
                (f"{order_id}-{i + 1}", a, rng.randint(1, 3)) for i, a in enumerate(chosen)
            ]
        orders_csv = "\n".join(
            [order_head]
            + [f"create,{o},{ln},{a},{q}" for o, ls in lines.items() for ln, a, q in ls]
        )
        updated = [(ln, a, q + 1) for ln, a, q in lines[UPDATED]]
        added = [(f"{ADDED}-1", stocked[-1], 2)]
        orders2 = [order_head]
        orders2 += [f"create,{UPDATED},{ln},{a},{q}" for ln, a, q in updated]
        orders2 += [f"cancel,{CANCELED},,,"]
        orders2 += [f"create,{ADDED},{ln},{a},{q}" for ln, a, q in added]
        final = {**lines, UPDATED: updated, ADDED: added}
        return cls(
            articles_csv + "\n", orders_csv + "\n", "\n".join(orders2) + "\n", articles, final
        )


DAEMON_JOBS = """
[jobs."host.inbox"]
schedule = { interval = "1s" }

[jobs."instock.articles"]
schedule = { interval = "1s" }

[jobs."instock.orders"]
schedule = { interval = "1s" }

[jobs."instock.inventory"]
enabled = false

[jobs."instock.moves"]
enabled = false
"""


def write_config(root: Path, sim: InstockSim, *, daemon: bool = False) -> Path:
    outbox = f"""
schedule = {{ interval = "{"1s" if daemon else "1h"}" }}
initial_backoff = "20ms"
max_backoff = "100ms"
max_attempts = 1000
max_age = "1h"
"""
    instock = """
timeouts = { connect = "2s", read = "10s" }
retry = { max_attempts = 4, initial_backoff = "20ms", max_backoff = "100ms", max_elapsed = "5s" }
"""
    return write_trial_config(
        root, sim, outbox=outbox, instock=instock, jobs=DAEMON_JOBS if daemon else ""
    )


def count_applied(sim: InstockSim) -> Counter[str]:
    """`kind key` -> how often a write handler applied it (a 2xx), whatever became of the
    answer; installed under the traps, so a write killed "before" is not counted."""
    applied: Counter[str] = Counter()

    def keys(route: str, request: Request) -> list[str]:
        kind = WRITES[route]
        if kind == "upload":
            return [f"article {a['article_id']}" for a in request.json["articles"]]
        if kind == "article_update":
            return [f"article_update {request.params['article_id']}"]
        order_id = request.params.get("order_id") or request.json["order_id"]
        return [f"{kind} {order_id}"]

    def wrap(route: str, handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        def counting(request: Request) -> Response:
            response = handler(request)
            if response.status < 300:
                applied.update(keys(route, request))
            return response

        return counting

    router = sim.server.router
    router._routes = [
        dataclasses.replace(r, handler=wrap(r.key, r.handler)) if r.key in WRITES else r
        for r in router._routes
    ]
    return applied


def pending(db: Path) -> int:
    if not db.exists():
        return 0
    rows = db_rows(db, "SELECT count(*) AS n FROM outbox WHERE status = 'pending'")
    return int(rows[0]["n"])


@dataclasses.dataclass
class Outcome:
    trial: str
    kills: int
    lost: list[str]
    duplicated: list[str]
    readbacks: Counter[str]
    victims: int  # processes meant to be killed: outbox.send runs, or daemon starts


def lossy_sim(root: Path, seed: str) -> tuple[InstockSim, Scenario, Counter[str], Owner]:
    """A started Instock that accepts duplicate order ids, loses answers at random on every
    write route, counts applied writes and fires the owner's trap; the trial's host dir."""
    root.mkdir()
    (root / "host" / "inbox").mkdir(parents=True)
    sim = InstockSim(seed=SIM_SEED, articles=40, retry_after=0, duplicate_order_ids="accept")
    sim.faults._rng = random.Random(seed)
    scenario = Scenario.build(sim)
    applied = count_applied(sim)
    owner = Owner()
    wrap_routes(sim.server, lambda handler: trapped(owner, handler))
    for route in WRITES:
        for kind, p in LOSS_RATE.items():
            sim.faults.rate(route, kind, p)
    sim.start()
    return sim, scenario, applied, owner


def trial(n: int, root: Path, hook: Path) -> Outcome:
    rng = random.Random(f"{TRIALS_SEED}:{n}")
    sim, scenario, applied, owner = lossy_sim(root, f"{TRIALS_SEED}:faults:{n}")
    kills, sends, plan = 0, 0, []
    try:
        config = write_config(root, sim)
        db = root / "state" / "syncd.db"
        worker = Worker(root, config, hook)

        def job(name: str) -> None:
            result = worker.run(name)
            assert result["code"] == 0, (name, result, worker.tail())

        def send() -> None:
            nonlocal kills, sends
            sends += 1
            how = rng.choice(KILLS)
            plan.append(how or "-")
            if how is None:
                job("outbox.send")
                return
            trap = None
            timer = None
            if how == "timer":
                timer = rng.uniform(0.3, 2.0)  # the process's start (imports) included
            else:
                trap = Trap(tuple(WRITES), rng.randint(1, 2), how)
            code = run_killed(owner, config, "outbox.send", trap, timer, syncd_env(hook))
            kills += code == -signal.SIGKILL

        try:
            (root / "host" / "inbox" / "articles-0001.csv").write_text(scenario.articles_csv)
            (root / "host" / "inbox" / "orders-0001.csv").write_text(scenario.orders_csv)
            job("host.inbox")
            job("instock.articles")
            job("instock.orders")
            for _ in range(3):
                send()
            (root / "host" / "inbox" / "orders-0002.csv").write_text(scenario.orders2_csv)
            job("host.inbox")
            for _ in range(40):
                job("instock.articles")
                job("instock.orders")
                if not pending(db):
                    break
                send()
                time.sleep(0.05)
            sim.faults.clear()  # settle: whatever is still pending goes out cleanly
            for _ in range(10):
                job("instock.orders")
                if not pending(db):
                    break
                time.sleep(0.15)
                job("outbox.send")
        finally:
            worker.close()
        name = f"seed {TRIALS_SEED} trial {n}: sends [{' '.join(plan)}]"
        victims = sum(how != "-" for how in plan)
        return judge(name, sim, scenario, applied, db, kills, victims)
    finally:
        sim.stop()


DAEMON_KILLS = 3


def daemon_trial(n: int, root: Path, hook: Path) -> Outcome:
    """`syncd run` (every job and the sender on 1 s) killed with SIGKILL three times: at a
    write Instock handles (after applying it, or before), or at a random moment; started
    again each time, the second orders file dropped after the first kill; then left to
    settle (answers no longer lost) and stopped with SIGTERM."""
    rng = random.Random(f"{TRIALS_SEED}:daemon:{n}")
    sim, scenario, applied, owner = lossy_sim(root, f"{TRIALS_SEED}:daemon-faults:{n}")
    kills, plan = 0, []
    try:
        config = write_config(root, sim, daemon=True)
        db = root / "state" / "syncd.db"
        inbox = root / "host" / "inbox"
        (inbox / "articles-0001.csv").write_text(scenario.articles_csv)
        (inbox / "orders-0001.csv").write_text(scenario.orders_csv)
        for round_ in range(DAEMON_KILLS):
            how = rng.choice(("applied", "before", "timer"))
            with daemon(root, config, hook) as proc:
                if how == "timer":
                    delay = rng.uniform(1.5, 5.0)  # start-up (imports) included
                    plan.append(f"timer {delay:.1f}s")
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(timeout=delay)
                else:
                    trap = Trap(tuple(WRITES), rng.randint(1, 4), how, proc=proc)  # type: ignore[arg-type]
                    plan.append(f"{how} #{trap.occurrence}")
                    owner.trap = trap
                    deadline = time.monotonic() + 20
                    while not trap.fired and time.monotonic() < deadline:
                        time.sleep(0.02)
                    owner.trap = None
                    if trap.fired:
                        proc.wait(timeout=10)
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(timeout=10)
                kills += proc.returncode == -signal.SIGKILL
            if round_ == 0:
                (inbox / "orders-0002.csv").write_text(scenario.orders2_csv)
        sim.faults.clear()  # settle: whatever is still pending goes out cleanly
        with daemon(root, config, hook) as proc:
            deadline = time.monotonic() + 120  # a bound on a busy machine, not a target
            while time.monotonic() < deadline:
                time.sleep(0.5)
                if any(inbox.glob("*.csv")) or pending(db):
                    continue
                if not judge("", sim, scenario, applied, db, 0, 0).lost:
                    break
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)
        name = f"seed {TRIALS_SEED} daemon trial {n}: kills [{', '.join(plan)}]"
        return judge(name, sim, scenario, applied, db, kills, DAEMON_KILLS)
    finally:
        sim.stop()


def judge(
    name: str,
    sim: InstockSim,
    scenario: Scenario,
    applied: Counter[str],
    db: Path,
    kills: int,
    victims: int,
) -> Outcome:
    lost: list[str] = []
    duplicated: list[str] = []
    # A daemon may load the second orders file before it ever queued the first one's
    # orders (a killed instock.orders run, then the file): the host's cancel then comes
    # before any create, so the order is rightly never created, and the update rides in
    # the create. Anything queued for those orders must still have reached Instock.
    queued = Counter(
        (r["kind"], r["order_key"])
        for r in db_rows(db, "SELECT kind, order_key FROM outbox WHERE destination = 'instock'")
    )
    never_queued = not any(key == f"order:{CANCELED}" for _, key in queued)
    update_queued = any(
        kind.endswith("update") and key == f"order:{UPDATED}" for kind, key in queued
    )
    with sim.state.lock:
        for article_id, article_name in scenario.articles.items():
            found = sim.state.articles.get(article_id)
            if found is None or found["name"] != article_name:
                lost.append(f"article {article_id}")
        for order_id, lines in scenario.lines.items():
            order = sim.state.orders.get(order_id)
            got = (
                None
                if order is None
                else [(ln.line_id, ln.article_id, ln.qty) for ln in order.lines]
            )
            if order_id == CANCELED and never_queued and got is None:
                continue  # canceled at the host before it was ever sent
            if got != lines:
                lost.append(f"order {order_id}: {got}")
        canceled = sim.state.orders.get(CANCELED)
        if (canceled is None and not never_queued) or (
            canceled is not None and canceled.status != "canceled"
        ):
            lost.append(f"cancel {CANCELED}")
        duplicated += [f"order {o.order_id} again" for o in sim.state.duplicate_orders]
    for key, times in applied.items():
        creates = key.startswith(("article ", "create "))
        if creates and times > 1:
            duplicated.append(f"{key} x{times}")
    if applied[f"update {UPDATED}"] < 1 and update_queued:
        lost.append(f"update {UPDATED} never applied")
    left = db_rows(db, "SELECT kind, order_key, status FROM outbox WHERE status != 'sent'")
    lost += [f"intent {r['kind']} {r['order_key']} {r['status']}" for r in left]
    readbacks: Counter[str] = Counter()
    for row in db_rows(db, "SELECT counts FROM runs WHERE job = 'outbox.send'"):
        counts = json.loads(row["counts"] or "{}")
        readbacks.update({k: v for k, v in counts.items() if k.startswith("readback_")})
    return Outcome(name, kills, lost, duplicated, readbacks, victims)


def report(name: str, tmp_path: Path, trials: list[Callable[[], Outcome]]) -> dict[str, Any]:
    """Run the trials two at a time; print and record the figures; fail on any lost or
    duplicated write, or a trial that broke."""
    outcomes = gather(trials)
    failed = [str(o) for ok, o in outcomes if not ok]
    done = [o for ok, o in outcomes if ok and isinstance(o, Outcome)]
    figures: dict[str, Any] = {
        "seed": TRIALS_SEED,
        "trials": len(outcomes),
        "completed": len(done),
        "victims": sum(o.victims for o in done),
        "kills": sum(o.kills for o in done),
        "lost": sum(len(o.lost) for o in done),
        "duplicated": sum(len(o.duplicated) for o in done),
        "readbacks": dict(sum((o.readbacks for o in done), Counter())),
    }
    (tmp_path / f"{name}.json").write_text(json.dumps(figures, indent=2))
    print(
        "\n"
        + "\n".join(f"{o.trial}: kills {o.kills}, lost {o.lost}, dup {o.duplicated}" for o in done)
    )
    print(f"{name}: {json.dumps(figures)}")
    assert not failed, "\n\n".join(failed)
    bad = [o for o in done if o.lost or o.duplicated]
    assert not bad, "\n".join(f"{o.trial}: lost {o.lost}; duplicated {o.duplicated}" for o in bad)
    return figures


@pytest.mark.timeout(900)  # trials start a few dozen processes each
def test_ambiguous_writes_survive_lost_answers_and_kill_9(tmp_path: Path) -> None:
    """`syncd once` trials: each write applied exactly once, none lost, none duplicated."""
    hook = write_hook(tmp_path / "hook")
    figures = report(
        "readback-crash-trials",
        tmp_path,
        [functools.partial(trial, n, tmp_path / f"trial-{n}", hook) for n in range(TRIALS)],
    )
    assert figures["kills"] >= TRIALS  # the trials did kill
    assert figures["readbacks"].get("readback_applied", 0) > 0
    assert figures["readbacks"].get("readback_resent", 0) > 0


@pytest.mark.timeout(900)
def test_ambiguous_writes_survive_kill_9_of_the_daemon(tmp_path: Path) -> None:
    """`syncd run` killed three times a trial around lost answers: none lost, none duplicated."""
    hook = write_hook(tmp_path / "hook")
    figures = report(
        "readback-daemon-crash-trials",
        tmp_path,
        [
            functools.partial(daemon_trial, n, tmp_path / f"daemon-{n}", hook)
            for n in range(DAEMON_TRIALS)
        ],
    )
    assert figures["kills"] >= DAEMON_TRIALS
