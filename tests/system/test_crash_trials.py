"""Crash trials: kill -9 syncd at random points, run it again, and get the uncrashed end state.

The Instock simulator runs in this process (one `InstockSim` per trial, always the same seed,
its clock frozen at `T0` so timestamps are the same in every trial); syncd runs as real
processes. A scripted pipeline — passes of `host.inbox`, `instock.articles`, `outbox.send`,
`instock.inventory`, `instock.moves`, `instock.orders`, `outbox.send`, repeated until a pass
queues nothing new, in three stages with deterministic floor activity between them (a second
orders file while the other orders get reserved; then every open order advances to done) —
is run once without crashes: the reference. Its state (state dir, host dir, simulator state)
is snapshotted before every step that did work; each step's duration (from `runs`), requests
to the simulator, state DB COMMITs and published host files are recorded.

A `once` trial restores the snapshot before one step, starts `syncd once JOB` as its own
process and SIGKILLs it at a random point of its run, chosen one of four ways (`MODES`): a
random delay into the run (uniform over the reference run's duration), while the simulator
answers its k-th request, or right after its k-th COMMIT / k-th host file (k random). Then
the rest of the script runs (the killed step again first) in one worker process that calls
the `syncd once` command per step, and the normalised end state must equal the reference's:
simulator articles, orders, inventory and moves, exactly one create per article and order,
the mirror and sync tables, outbox intents and rejects, and the host outbox contents as
multisets of rows per stream (file names hold intent ids, so only they may differ).

A `run` trial starts `syncd run` (1 s intervals) from the first snapshot, kills it three times
a random delay into a run of a random job, restarts it, lets it settle, then continues the
script. The daemon's jobs interleave freely, so it may scan inventory at other moments than
the reference: there, inventory deltas are checked as an unbroken chain per article that
ends at the final mirror, and the reconciliation report by its last file; the rest compares
exactly. Trials run two at a time (`CRASH_TRIALS_PARALLEL`).

Reproduce a failure with `CRASH_TRIALS_SEED=<seed>` (printed in every failure message with
the step and the kill point).
"""

from __future__ import annotations

import contextlib
import copy
import csv
import functools
import itertools
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from syncd.clock import parse_iso
from syncd.sandbox.instock import InstockSim, InstockState
from tests.system.crashkit import (
    INSTOCK,
    Worker,
    canon,
    daemon,
    db_rows,
    describe,
    restore,
    run_trials,
    syncd_env,
    take_snapshot,
    trial_outbox,
    write_hook,
    write_trial_config,
)

pytestmark = pytest.mark.system

TRIALS_SEED = int(os.environ.get("CRASH_TRIALS_SEED", "20261123"))
SIM_SEED = 7
SIM_ARTICLES = 500
HOST_ARTICLES = 2500  # > 2 * 1000: the upload takes three bulks
ORDERS = 30
# The simulator's clock stands still: generated history, order status times and the moves of
# advanced orders are the same in every trial. It is in the past, so syncd's closed moves
# windows (`now - lag`) always include it; `overlap` keeps it in every later window.
T0 = int(time.time()) - 30

PASS = (
    "host.inbox",
    "instock.articles",
    "outbox.send",
    "instock.inventory",
    "instock.moves",
    "instock.orders",
    "outbox.send",
)
JOBS = tuple(dict.fromkeys(PASS))  # the scheduled jobs, and the sender
# `syncd once` trials per job (the sender, where remote and local state can part, gets most).
ONCE_TRIALS = {
    "host.inbox": 4,
    "instock.articles": 3,
    "outbox.send": 6,
    "instock.inventory": 3,
    "instock.moves": 3,
    "instock.orders": 4,
}
RUN_TRIALS = 3
SETTLE_SECONDS = 120
# Floor activity between the stages: a second orders file (one order changed, one cancelled,
# one new) while the other orders are reserved; then every open order advances (to done).
EVENTS = ("orders_update", "advance")
CHANGED_ORDERS = ("C0002", "C0003")  # stay registered until the second event

# --- the scenario ---------------------------------------------------------------------------


def new_sim() -> InstockSim:
    sim = InstockSim(seed=SIM_SEED, articles=SIM_ARTICLES, clock=lambda: float(T0))
    count_creates(sim.state)
    return sim


def count_creates(state: InstockState) -> None:
    """Count every article and order the simulator creates (the generated ones excluded)."""
    for name in ("put_article", "add_order"):
        state.__dict__.pop(name, None)  # a cloned state carries the old wrappers
    if not hasattr(state, "creates"):
        state.creates = Counter()  # type: ignore[attr-defined]

    def put_article(article: dict[str, Any]) -> None:
        if article["article_id"] not in state.articles:
            state.creates[f"article {article['article_id']}"] += 1  # type: ignore[attr-defined]
        InstockState.put_article(state, article)

    def add_order(order: Any) -> None:
        state.creates[f"order {order.order_id}"] += 1  # type: ignore[attr-defined]
        InstockState.add_order(state, order)

    state.put_article = put_article  # type: ignore[method-assign]
    state.add_order = add_order  # type: ignore[method-assign]


def clone_state(state: InstockState) -> InstockState:
    """A deep copy with a lock of its own (snapshots are cloned by several trials at once)."""
    with state.lock:
        clone = copy.deepcopy(state, {id(state.lock): threading.RLock()})
    count_creates(clone)
    return clone


@dataclass(frozen=True)
class Scenario:
    """Host inbox files derived from the simulator's generated data (same seed, same files)."""

    articles_csv: str
    stock_csv: str
    orders_csv: str
    orders2_csv: str

    @classmethod
    def build(cls, sim: InstockSim) -> Scenario:
        rng = random.Random(SIM_SEED)
        state, site = sim.state, sim.site_id
        stock = state.inventory[site]
        with_moves = sorted(a for a in state.articles if state.has_moves(a))
        stocked = [a for a in with_moves if stock.get(a) and stock[a].free >= 10]
        zero = sorted(
            a
            for a in state.articles
            if not state.has_moves(a) and not state.articles[a]["is_serial_numbered"]
        )
        # Catalog: three Instock articles as they are (an "already exists" that is the same),
        # one changed without moves (updated), one changed with moves (refused), one
        # serial-numbered new one (refused before upload), and new ones up to HOST_ARTICLES.
        head = ["article_id", "name", "is_serial_numbered", "dim_x", "dim_y", "dim_z", "dim_uom"]
        attrs = ["attr.product_category_name", "attr.temp_zone", "attr.upc"]
        rows: list[list[str]] = []

        def existing(article_id: str, name: str | None = None) -> None:
            a = state.articles[article_id]
            d = a["dimensions"]
            at = a["attributes"]
            rows.append(
                [
                    *(article_id, name or a["name"], "false"),
                    *(d["x"], d["y"], d["z"], d["uom"]),
                    *(at.get("product_category_name", ""), at.get("temp_zone", ""), ""),
                ]
            )

        # (Spread over Instock's id order, so that they are on different pages of its list.)
        same = [stocked[0], stocked[len(stocked) // 2], stocked[-1]]
        for article_id in same:
            existing(article_id)
        existing(zero[len(zero) // 2], "Renamed by the host")
        existing(stocked[len(stocked) * 3 // 4], "Renamed but it has moves")
        new_count = HOST_ARTICLES - len(rows)
        for i in range(new_count):
            dims = ["", "", "", ""]
            if i % 3 == 0:
                dims = [str(rng.randint(5, 90)), str(rng.randint(5, 90)), "12.5", "cm"]
            serial = "true" if i == 7 else "false"
            rows.append(
                [f"N{i:06d}", f"New article {i}", serial, *dims, "grocery", "ambient", f"0{i:011d}"]
            )
        articles_csv = _csv([head + attrs, *rows])

        # Book stock: what Instock has on hand, a few off by one, a few host-only articles.
        stock_rows = [["article_id", "location", "qty"]]
        for n, article_id in enumerate(sorted(stock)):
            on_hand = stock[article_id].free + stock[article_id].reserved
            if on_hand or n % 10 == 0:
                stock_rows.append([article_id, "", str(on_hand + (1 if n % 10 == 0 else 0))])
        stock_rows += [[f"N{i:06d}", "", "5"] for i in range(0, 40, 2)]
        stock_csv = _csv(stock_rows)

        # Customer orders: on stocked articles (reserved, then done), the last few on empty
        # ones (canceled for short stock when advanced), one on an unknown article (404).
        order_head = ["action", "order_id", "line_id", "article_id", "qty", "placed_at"]
        placed = "2026-11-23T07:38:39Z"
        pool = [a for a in stocked if a not in same and a != stocked[len(stocked) * 3 // 4]]
        order_rows = [[*order_head, "attr.cutoff_time"]]
        lines_of: dict[str, list[tuple[str, str, int]]] = {}
        for number in range(1, ORDERS + 1):
            order_id = f"C{number:04d}"
            if number == ORDERS:
                chosen = [pool[0], "UNKNOWN0001"]
            elif number > ORDERS - 4:
                chosen = [zero[number]]
            else:
                chosen = rng.sample(pool[:60], k=rng.randint(1, 3))
            lines = [(f"{order_id}-{i + 1}", a, rng.randint(1, 3)) for i, a in enumerate(chosen)]
            lines_of[order_id] = lines
            for line_id, article_id, qty in lines:
                order_rows.append(
                    ["create", order_id, line_id, article_id, str(qty), placed, "16:00"]
                )
        orders_csv = _csv(order_rows)

        # Later: one order changed while registered, one cancelled, one new.
        rows2 = [order_head]
        for i, (line_id, article_id, qty) in enumerate(lines_of["C0002"]):
            rows2.append(["create", "C0002", line_id, article_id, str(qty + (i == 0)), placed])
        rows2.append(["cancel", "C0003", "", "", "", ""])
        for i, article_id in enumerate(pool[70:72]):
            rows2.append(["create", "C0101", f"C0101-{i + 1}", article_id, "2", placed])
        return cls(articles_csv, stock_csv, orders_csv, _csv(rows2))


def _csv(rows: list[list[str]]) -> str:
    out: list[str] = []

    class _Sink:
        def write(self, text: str) -> None:
            out.append(text)

    writer = csv.writer(_Sink(), lineterminator="\n")
    writer.writerows(rows)
    return "".join(out)


def write_config(root: Path, sim: InstockSim, *, interval: str = "1h", follow: str = "all") -> Path:
    """syncd.toml for one trial; `interval` is every job's (and the sender's) in `syncd run`.

    `follow = "moves"`: instock.orders follows the moves stream and sweeps every open order
    each run (a sweep interval of 1 ms, no bound): the same orders are seen as under "all",
    through the moves checkpoint, the sweep's marks and its status reads."""
    jobs = "\n".join(
        f'[jobs."{job}"]\nschedule = {{ interval = "{interval}" }}'
        + (
            '\noptions = { follow = "moves", sweep_interval = "1ms", sweep_limit = 10000 }'
            if job == "instock.orders" and follow == "moves"
            else ""
        )
        for job in JOBS
        if job not in ("outbox.send", "instock.moves")
    )
    jobs += f"""

[jobs."instock.moves"]
schedule = {{ interval = "{interval}" }}
options = {{ lag = "1s", overlap = "2h", initial_lookback = "40d", max_window = "3d" }}

[jobs."state.housekeeping"]
schedule = {{ interval = "1h" }}
"""
    return write_trial_config(root, sim, outbox=trial_outbox(interval), instock=INSTOCK, jobs=jobs)


def apply_event(name: str, sim: InstockSim, host: Path, scenario: Scenario) -> None:
    """Floor activity between stages, the same in the reference and in every trial."""
    if name == "orders_update":
        (host / "inbox" / "orders-2.csv").write_text(scenario.orders2_csv, encoding="utf-8")
        advance_open_orders(sim, skip=CHANGED_ORDERS)
        return
    assert name == "advance", name
    # Moves windows close on whole seconds: the next `instock.moves` run must start in a later
    # second than the last one, or it would not pull again and the new moves would wait for
    # a run the script does not have (a daemon would make it a moment later).
    time.sleep(1.02 - time.time() % 1)
    advance_open_orders(sim)


def advance_open_orders(sim: InstockSim, skip: tuple[str, ...] = ()) -> None:
    """One fulfilment step for every open host order, in id order."""
    with sim.state.lock:
        open_orders = sorted(
            o.order_id
            for o in sim.state.orders.values()
            if o.order_id.startswith("C")
            and o.order_id not in skip
            and o.status in ("registered", "reserved")
        )
    for order_id in open_orders:
        sim.advance_order(order_id)


# --- running syncd ----------------------------------------------------------------------------


def last_run(db: Path, job: str) -> dict[str, Any]:
    row = db_rows(db, "SELECT * FROM runs WHERE job = ? ORDER BY id DESC LIMIT 1", [job])[0]
    row["counts"] = json.loads(row["counts"] or "{}")
    row["seconds"] = (parse_iso(row["finished_at"]) - parse_iso(row["started_at"])).total_seconds()
    return row


def outbox_size(db: Path) -> int:
    if not db.exists():
        return 0
    return int(db_rows(db, "SELECT count(*) AS n FROM outbox")[0]["n"])


WORK = ("queued", "pushed", "already_done", "rejected", "files", "journalled", "deltas")


def did_work(run: dict[str, Any]) -> bool:
    """The run changed something (a pass that only re-reads is no place for a crash trial)."""
    counts = {**run["counts"], "pushed": run["pushed"], "rejected": run["rejected"]}
    return any(counts.get(k) for k in (*WORK, "status_changes"))


# --- the normalised end state -------------------------------------------------------------------


def host_files(host: Path) -> dict[str, list[tuple[str, list[dict[str, Any]]]]]:
    """stream -> [(file name, rows)] in file order (names carry the intent id)."""
    streams: dict[str, list[tuple[str, list[dict[str, Any]]]]] = {}
    for path in sorted((host / "outbox").glob("*")):
        if path.name.startswith("."):
            continue
        stream = path.name.rsplit("-", 1)[0]
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".jsonl":
            rows = [json.loads(line) for line in text.splitlines() if line]
        else:
            rows = list(csv.DictReader(text.splitlines()))
        streams.setdefault(stream, []).append((path.name, rows))
    return streams


def observe(sim: InstockSim, root: Path) -> dict[str, Any]:
    """Everything that must not depend on crashes, in a comparable form."""
    db, host = root / "state" / "syncd.db", root / "host"
    state = sim.state
    with state.lock:
        seen: dict[str, Any] = {
            "sim.articles": {a: canon(v) for a, v in state.articles.items()},
            "sim.orders": {
                o.order_id: canon(
                    [o.kind, o.status, [ln.as_json() for ln in o.lines], o.attributes, o.reserved]
                )
                for o in state.orders.values()
            },
            "sim.inventory": {
                a: (s.free, s.reserved, s.registered)
                for a, s in state.inventory[sim.site_id].items()
                if not s.is_zero()
            },
            "sim.moves": Counter(m.encoded() for m in state.moves[sim.site_id]),
            "sim.creates": dict(state.creates),  # type: ignore[attr-defined]
        }

    def table(sql: str) -> Any:
        return sorted(canon(r) for r in db_rows(db, sql))

    seen["mirror.inventory"] = table(
        "SELECT article_id, free, reserved, registered FROM instock_inventory"
    )
    seen["mirror.moves"] = Counter(
        table(
            "SELECT article_id, qty, move_timestamp, user_id, order_id, from_cell_id, "
            "to_cell_id, from_account_id, to_account_id FROM instock_moves"
        )
    )
    seen["mirror.orders"] = table(
        "SELECT order_id, kind, placed_at, attributes, lines, order_status, status_at, "
        "ordertask_ids, fulfilled FROM instock_orders"
    )
    seen["mirror.ordertasks"] = table(
        "SELECT ordertask_id, order_id, ordertask_status, lines FROM instock_ordertasks"
    )
    seen["sync.articles"] = table(
        "SELECT article_id, host_hash, accepted_hash, status FROM instock_article_sync"
    )
    seen["sync.orders"] = table(
        "SELECT order_id, pushed_hash, action, status FROM instock_order_sync"
    )
    seen["pending.order_events"] = table("SELECT * FROM instock_order_events")
    seen["pending.inventory_deltas"] = table("SELECT * FROM instock_inventory_deltas")
    seen["host.articles"] = table(
        "SELECT article_id, name, is_serial_numbered, dim_x, dim_y, dim_z, dim_uom, attributes "
        "FROM host_articles"
    )
    seen["host.stock"] = table("SELECT article_id, location, qty FROM host_stock")
    seen["host.orders"] = table(
        "SELECT o.order_id, o.status, l.line_id, l.article_id, l.qty FROM host_orders o "
        "LEFT JOIN host_order_lines l USING (order_id)"
    )
    seen["host_files.loaded"] = table(
        "SELECT feed, name, sha256, rows_loaded, rows_rejected FROM host_files"
    )
    # Intents to Instock are deterministic; host files are compared by content below.
    # (Idempotency keys may hold run ids: compared by content.)
    seen["outbox.instock"] = Counter(
        canon([r["kind"], r["order_key"], r["status"], json.loads(r["payload"])])
        for r in db_rows(db, "SELECT * FROM outbox WHERE destination = 'instock'")
    )
    seen["outbox.not_sent"] = table(
        "SELECT destination, kind, status, last_error FROM outbox "
        "WHERE destination = 'host' AND status != 'sent'"
    )
    seen["rejects"] = Counter(
        canon([r["source"], _strip_ids(r["reference"]), r["field"], r["status"]])
        for r in db_rows(db, "SELECT * FROM rejects")
    )
    seen["alerts"] = table("SELECT kind, subject FROM alerts WHERE resolved_at IS NULL")
    seen["host.inbox"] = sorted(p.name for p in (host / "inbox").iterdir())
    seen["host.archive"] = sorted(p.name for p in (host / "archive").iterdir())
    rejects_dir = host / "rejects"
    seen["host.rejects"] = (
        sorted(p.name for p in rejects_dir.iterdir()) if rejects_dir.exists() else []
    )
    files = host_files(host)
    for stream, chunks in files.items():
        seen[f"outbox/{stream}"] = Counter(canon(r) for _, rows in chunks for r in rows)
    seen["_files"] = files
    return seen


def _strip_ids(reference: str) -> str:
    """`outbox:17 orders.create order:C0030` -> `outbox:# orders.create order:C0030`."""
    if reference.startswith("outbox:"):
        return "outbox:#" + reference[reference.index(" ") :]
    return reference


RELAXED = ("outbox/inventory_deltas", "outbox/stock_discrepancies")


def compare(reference: dict[str, Any], got: dict[str, Any], *, relaxed: bool = False) -> list[str]:
    """Differences between two observations, one line each (empty when equal)."""
    problems = []
    for key in sorted((set(reference) | set(got)) - {"_files"}):
        if relaxed and key in RELAXED:
            continue
        want, have = reference.get(key), got.get(key)
        if want != have:
            problems.append(f"{key}: {describe(want, have)}")
    bad_creates = {k: n for k, n in got["sim.creates"].items() if n != 1}
    if bad_creates:
        problems.append(f"created more than once: {bad_creates}")
    if relaxed:
        problems += check_delta_chains(got)
        want_report = reference["_files"].get("stock_discrepancies", [("", [])])[-1][1]
        have_report = got["_files"].get("stock_discrepancies", [("", [])])[-1][1]
        if sorted(map(canon, want_report)) != sorted(map(canon, have_report)):
            problems.append("the last stock_discrepancies report differs from the reference's")
    return problems


def check_delta_chains(seen: dict[str, Any]) -> list[str]:
    """Per article, the inventory delta rows chain from zero to the mirror: none lost or twice."""
    at: dict[str, tuple[int, int, int]] = {}
    problems = []
    for name, rows in seen["_files"].get("inventory_deltas", []):
        for row in rows:
            before = (row["free_before"], row["reserved_before"], row["registered_before"])
            after = (row["free"], row["reserved"], row["registered"])
            previous = at.get(row["article_id"], (0, 0, 0))
            if before != previous:
                problems.append(f"{name}: {row['article_id']} from {before}, was {previous}")
            at[row["article_id"]] = after
    for text in seen["mirror.inventory"]:
        row = json.loads(text)
        final = (row["free"], row["reserved"], row["registered"])
        if at.get(row["article_id"], (0, 0, 0)) != final:
            problems.append(f"deltas of {row['article_id']} end at {at.get(row['article_id'])}")
    return problems[:20]


# --- the reference --------------------------------------------------------------------------------


@dataclass
class Step:
    index: int
    kind: str  # "job" or "event"
    name: str
    seconds: float = 0.0  # the job's run in the reference (runs.started_at -> finished_at)
    # what it did: requests to the simulator, COMMITs of the state DB, host files published
    counts: dict[str, int] = field(default_factory=dict)
    work: bool = False
    ends_stage: bool = False  # the last step of a stage's last (quiet) pass
    snapshot: Path | None = None  # state and host dirs before the step (steps with work)
    sim_state: InstockState | None = None


@dataclass
class Reference:
    root: Path
    hook: Path  # the directory holding the `sitecustomize` hook
    scenario: Scenario
    script: list[Step]
    end: dict[str, Any]
    seconds: float
    follow: str = "all"  # instock.orders' `follow` in every config of the run and its trials

    def candidates(self, job: str) -> list[Step]:
        return [s for s in self.script if s.kind == "job" and s.name == job and s.work]

    @property
    def stage_a_end(self) -> int:
        """Where a `syncd run` trial continues: the first event."""
        return next(s.index for s in self.script if s.kind == "event")


def seed_host(root: Path, scenario: Scenario) -> None:
    inbox = root / "host" / "inbox"
    inbox.mkdir(parents=True)
    old = time.time() - 60
    for offset, (name, text) in enumerate(
        (
            ("articles.csv", scenario.articles_csv),
            ("stock.csv", scenario.stock_csv),
            ("orders.csv", scenario.orders_csv),
        )
    ):
        (inbox / name).write_text(text, encoding="utf-8")
        os.utime(inbox / name, (old + offset, old + offset))  # loaded in this order


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """The uncrashed run: passes until one queues nothing new, per stage; snapshots."""
    return build_reference(tmp_path_factory, "all")


@pytest.fixture(scope="module")
def reference_following_moves(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """The same uncrashed run with instock.orders following the moves (and its sweep)."""
    return build_reference(tmp_path_factory, "moves")


def build_reference(tmp_path_factory: pytest.TempPathFactory, follow: str) -> Reference:
    started = time.monotonic()
    base = tmp_path_factory.mktemp(f"crash-reference-{follow}")
    root, hook = base / "run", base / "hook"
    root.mkdir()
    write_hook(hook)
    with new_sim() as sim:
        scenario = Scenario.build(sim)
        seed_host(root, scenario)
        db = root / "state" / "syncd.db"
        script: list[Step] = []
        worker = Worker(root, write_config(root, sim, follow=follow), hook)
        try:
            for stage in range(len(EVENTS) + 1):
                if stage:
                    apply_event(EVENTS[stage - 1], sim, root / "host", scenario)
                    script.append(Step(len(script), "event", EVENTS[stage - 1]))
                for _ in range(6):
                    before = outbox_size(db)
                    for job in PASS:
                        step = Step(len(script), "job", job)
                        step.snapshot = base / f"snap-{step.index:03d}"
                        take_snapshot(root, step.snapshot)
                        step.sim_state = clone_state(sim.state)
                        requests = sim.count()
                        result = worker.run(job)
                        assert result["code"] == 0, (result, worker.tail())
                        step.counts = {
                            "request": sim.count() - requests,
                            "commit": result["commit"],
                            "link": result["link"],
                        }
                        run = last_run(db, job)
                        assert run["status"] == "ok", run
                        step.seconds, step.work = run["seconds"], did_work(run)
                        if not step.work and step.index:
                            shutil.rmtree(step.snapshot)
                            step.snapshot, step.sim_state = None, None
                        script.append(step)
                    if outbox_size(db) == before:
                        script[-1].ends_stage = True
                        break
                else:
                    pytest.fail("the reference pipeline never settled")
        finally:
            worker.close()
        end = observe(sim, root)
    ref = Reference(root, hook, scenario, script, end, time.monotonic() - started, follow)
    sanity_check(ref)
    print(f"\nreference: {len(script)} steps in {ref.seconds:.1f}s")
    if os.environ.get("CRASH_TRIALS_SHOW"):
        for step in script:
            print(f"  {step.index:3d} {step.name:18s} {step.seconds * 1000:6.1f} ms {step.counts}")
    return ref


def sanity_check(ref: Reference) -> None:
    """The reference did what the trials rely on: every flow had work to crash in."""
    end = ref.end
    creates = end["sim.creates"]
    assert sum(1 for k in creates if k.startswith("article ")) > 2000
    assert sum(1 for k in creates if k.startswith("order ")) == ORDERS  # C0030 is refused
    assert all(n == 1 for n in creates.values())
    statuses = Counter(json.loads(r)["order_status"] for r in end["mirror.orders"])
    assert statuses["done"] > ORDERS // 2, statuses
    assert statuses["canceled"] >= 3, statuses
    assert sum(end["outbox/moves"].values()) == sum(end["mirror.moves"].values()) > 500
    assert end["outbox/inventory_deltas"]
    assert end["outbox/order_status"]
    assert end["outbox/stock_discrepancies"]
    kinds = Counter(json.loads(k)[0] for k in end["outbox.instock"])
    assert {"articles.upload", "orders.create", "orders.update", "orders.cancel"} <= set(kinds)
    for job in ONCE_TRIALS:
        assert ref.candidates(job), f"{job} never did work in the reference"


# --- trials -------------------------------------------------------------------------------------


def continue_script(ref: Reference, start: int, sim: InstockSim, root: Path, worker: Worker) -> int:
    """Run the script from `start` (a stage ends only with a quiet pass); the extra passes."""
    db = root / "state" / "syncd.db"
    before, extra = outbox_size(db), 0
    for step in ref.script[start:]:
        if step.kind == "event":
            apply_event(step.name, sim, root / "host", ref.scenario)
            continue
        result = worker.run(step.name)
        assert result["code"] == 0, (step, result, worker.tail())
        if step.name == PASS[-1]:  # a pass (or the rest of one) ends
            while step.ends_stage and outbox_size(db) != before:
                extra += 1
                assert extra < 5, "the trial never settled"
                before = outbox_size(db)
                for job in PASS:
                    assert worker.run(job)["code"] == 0, worker.tail()
            before = outbox_size(db)
    return extra


def wait_for_run(
    db: Path,
    job: str,
    before: int,
    proc: subprocess.Popen[bytes],
    timeout: float = 30.0,
    *,
    may_not_run: bool = False,
) -> float | None:
    """Wait until the process has recorded a new run of `job`; the monotonic time it was
    seen, or None when the process ended first (or at the timeout, if `may_not_run`)."""
    deadline = time.monotonic() + timeout
    conn: sqlite3.Connection | None = None
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return None
            if conn is None and db.exists():
                conn = sqlite3.connect(db, timeout=1)
            if conn is not None:
                try:
                    n = conn.execute("SELECT count(*) FROM runs WHERE job = ?", [job]).fetchone()[0]
                except sqlite3.OperationalError:  # not migrated yet, or busy
                    n = 0
                if n > before:
                    return time.monotonic()
            time.sleep(0.001)
    finally:
        if conn is not None:
            conn.close()
    if may_not_run:
        return None
    pytest.fail(f"{job} never started its run")


def runs_of(db: Path, job: str) -> list[dict[str, Any]]:
    if not db.exists():
        return []
    try:
        return db_rows(db, "SELECT * FROM runs WHERE job = ? ORDER BY id", [job])
    except sqlite3.OperationalError:
        return []


def start_trial(step: Step, root: Path) -> InstockSim:
    assert step.snapshot is not None
    assert step.sim_state is not None
    restore(step.snapshot, root)
    sim = new_sim()
    sim.state = clone_state(step.sim_state)
    return sim.start()


# How a trial picks its moment. "time": a random delay into the run (uniform over the
# reference run's duration). "request": while the simulator answers the run's k-th request
# (Instock did it, syncd never hears so: the crash exactly-once is about). "commit" / "link":
# right after the run's k-th COMMIT of the state DB / k-th host file published.
MODES = {
    "host.inbox": ("time", "commit"),
    "instock.articles": ("time", "commit"),
    "outbox.send": ("time", "request", "link"),
    "instock.inventory": ("time", "request", "commit"),
    "instock.moves": ("time", "request", "commit"),
    "instock.orders": ("time", "request", "commit"),
}


def pick_step(ref: Reference, job: str, mode: str, n: int) -> Step:
    """The n-th step for trials of one mode: distinct while they last, and the busier ones
    (more requests, commits and files: counts, not timings, so a seed always picks the
    same) likelier to come first."""
    rng = random.Random(f"{TRIALS_SEED}:{job}:{mode}")
    candidates = [s for s in ref.candidates(job) if mode == "time" or s.counts[mode]]
    assert candidates, f"no {job} step for mode {mode}"
    order = sorted(candidates, key=lambda s: -(rng.random() ** (1 / (1 + sum(s.counts.values())))))
    return order[n % len(order)]


def once_trial(ref: Reference, root: Path, job: str, n: int) -> str:
    """kill -9 `syncd once JOB` mid-run, run the rest of the script, compare with the reference."""
    # (A mode no step can use, e.g. "link" on a filesystem without hard links, is left out.)
    modes = [m for m in MODES[job] if m == "time" or any(s.counts[m] for s in ref.candidates(job))]
    mode = modes[n % len(modes)]
    step = pick_step(ref, job, mode, n // len(modes))
    rng = random.Random(f"{TRIALS_SEED}:{job}:{n}")
    delay, nth, kill_at = rng.uniform(0, step.seconds), 0, ""
    if mode == "time":
        how = f"killed {delay * 1000:.0f} ms into its run"
    else:
        nth = rng.randint(1, step.counts[mode])
        how = f"killed at its {mode} {nth} of {step.counts[mode]}"
        kill_at = f"{mode}:{nth}" if mode != "request" else ""
    trial = f"seed {TRIALS_SEED}: step {step.index} ({job}) {how}"
    root.mkdir()
    sim = start_trial(step, root)
    try:
        config = write_config(root, sim, follow=ref.follow)
        db = root / "state" / "syncd.db"
        before = len(runs_of(db, job))
        with (root / "killed.log").open("wb") as log:
            victim = subprocess.Popen(
                [sys.executable, "-m", "syncd.cli", "once", job, "--config", str(config)],
                env=syncd_env(ref.hook, kill_at),
                cwd=root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
            if mode == "request":
                kill_on_request(sim, victim.pid, nth)
            worker = Worker(root, config, ref.hook)  # starts (imports) while the victim runs
            try:
                if mode == "time":
                    seen = wait_for_run(db, job, before, victim)
                    if seen is not None:
                        time.sleep(max(0.0, delay - (time.monotonic() - seen)))
                else:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        victim.wait(timeout=30)
                victim.send_signal(signal.SIGKILL)
                victim.wait(timeout=10)
                sim.server.__dict__.pop("_answer", None)
                status = [r["status"] for r in runs_of(db, job)[before:]]
                trial += f" (its run: {status or 'not started'})"
                extra = continue_script(ref, step.index, sim, root, worker)
            finally:
                if victim.poll() is None:
                    victim.kill()
                worker.close()
        got = observe(sim, root)
    finally:
        sim.stop()
    problems = compare(ref.end, got)
    assert not problems, f"{trial}:\n  " + "\n  ".join(problems)
    # A kill while a host file is written leaves its temporary (dot) file behind.
    strays = len(list((root / "host" / "outbox").glob(".*.tmp")))
    return (
        f"{trial}: ok"
        + (f" after {extra} extra pass(es)" if extra else "")
        + (f"; {strays} stray temp file(s) in outbox/" if strays else "")
    )


def kill_on_request(sim: InstockSim, pid: int, nth: int) -> None:
    """SIGKILL `pid` once the simulator has handled its `nth` request, before the answer goes out."""
    answer = sim.server._answer
    count = itertools.count(1)

    def answer_then_kill(*args: Any, **kwargs: Any) -> Any:
        response = answer(*args, **kwargs)
        if next(count) == nth:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return response

    sim.server._answer = answer_then_kill  # type: ignore[method-assign]


def run_trial(ref: Reference, root: Path, n: int) -> str:
    """kill -9 `syncd run` at random times, restart it, let it settle, run the rest.

    Each kill waits for a new run of a random job that did work in the reference's first
    stage, then lands a random delay into it (up to that job's longest reference run)."""
    rng = random.Random(f"{TRIALS_SEED}:run:{n}")
    stage_a = [s for s in ref.script[: ref.stage_a_end] if s.work]
    kills = []
    for _ in range(3):
        job = rng.choice(sorted({s.name for s in stage_a}))
        longest = max(s.seconds for s in stage_a if s.name == job)
        kills.append((job, round(rng.uniform(0, longest), 3)))
    plan = ", ".join(f"{job} +{delay * 1000:.0f} ms" for job, delay in kills)
    trial = f"seed {TRIALS_SEED}: syncd run killed into runs of [{plan}]"
    root.mkdir()
    sim = start_trial(ref.script[0], root)
    try:
        config = write_config(root, sim, interval="1s", follow=ref.follow)
        db = root / "state" / "syncd.db"
        for job, delay in kills:
            before = len(runs_of(db, job))
            with daemon(root, config, ref.hook) as proc:
                # (a daemon's sender runs only when intents are due: it may never come)
                seen = wait_for_run(db, job, before, proc, timeout=4, may_not_run=True)
                time.sleep(max(0.0, delay - (time.monotonic() - (seen or time.monotonic()))))
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)
        with daemon(root, config, ref.hook) as proc:
            settle(db, root / "host", proc, trial)
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)
        cut = db_rows(db, "SELECT job FROM runs WHERE error LIKE 'process ended%'")
        trial += f" ({len(cut)} runs cut short: {sorted({r['job'] for r in cut})})"
        worker = Worker(root, write_config(root, sim, follow=ref.follow), ref.hook)
        try:
            continue_script(ref, ref.stage_a_end, sim, root, worker)
        finally:
            worker.close()
        got = observe(sim, root)
    finally:
        sim.stop()
    problems = compare(ref.end, got, relaxed=True)
    assert not problems, f"{trial}:\n  " + "\n  ".join(problems)
    return f"{trial}: ok"


@pytest.mark.parametrize("job", list(ONCE_TRIALS))
def test_kill_once(reference: Reference, tmp_path: Path, job: str) -> None:
    """kill -9 `syncd once JOB` at a random point of a random run of JOB, then go on."""
    run_trials(
        [
            functools.partial(once_trial, reference, tmp_path / f"trial-{n}", job, n)
            for n in range(ONCE_TRIALS[job])
        ]
    )


def test_kill_once_following_moves(reference_following_moves: Reference, tmp_path: Path) -> None:
    """kill -9 `syncd once instock.orders` under `follow = "moves"`, then go on: the same
    end state as its own uncrashed run."""
    ref, job = reference_following_moves, "instock.orders"
    swept = db_rows(
        ref.root / "state" / "syncd.db",
        "SELECT sum(json_extract(counts, '$.swept')) AS n FROM runs WHERE job = ?",
        [job],
    )
    assert swept[0]["n"], "the reference never swept: follow = 'moves' was not in effect"
    run_trials(
        [
            functools.partial(once_trial, ref, tmp_path / f"trial-{n}", job, n)
            for n in range(ONCE_TRIALS[job])
        ]
    )


def test_kill_run(reference: Reference, tmp_path: Path) -> None:
    """kill -9 `syncd run` (all jobs at once, on short intervals) a few times, then go on."""
    run_trials(
        [
            functools.partial(run_trial, reference, tmp_path / f"trial-{n}", n)
            for n in range(RUN_TRIALS)
        ]
    )


def settle(db: Path, host: Path, proc: subprocess.Popen[bytes], trial: str) -> None:
    """Wait until the inbox is empty, nothing is pending and every job ran after the last intent.

    The simulated warehouse keeps moving while the daemon catches up after its kills, so
    settling can take a while on a busy machine; 120 s bounds it, not a target."""
    deadline = time.monotonic() + SETTLE_SECONDS
    jobs = [j for j in JOBS if j != "outbox.send"]
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{trial}: syncd run exited with {proc.returncode}"
        time.sleep(0.1)
        if any((host / "inbox").glob("*.csv")) or not db.exists():
            continue
        try:
            marks = db_rows(
                db,
                "SELECT (SELECT count(*) FROM outbox WHERE status = 'pending') AS pending, "
                "(SELECT max(max(created_at), coalesce(max(sent_at), '')) FROM outbox) AS last",
            )[0]
            ok = db_rows(
                db,
                "SELECT job, max(started_at) AS started FROM runs WHERE status = 'ok' GROUP BY job",
            )
        except sqlite3.OperationalError:
            continue
        if marks["pending"] or marks["last"] is None:
            continue
        started = {r["job"]: r["started"] for r in ok}
        if all(started.get(j, "") > marks["last"] for j in jobs):
            return
    pytest.fail(f"{trial}: syncd run did not settle within {SETTLE_SECONDS} s")
