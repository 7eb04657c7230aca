"""Netstock jobs as REAL `syncd once` processes, killed with SIGKILL at every step.

The Netstock simulator runs in this process. Each request it serves is applied, then
answered `LAG` seconds later, so a kill can land between "Netstock did it" and "syncd knows".
A trap in the simulator kills the syncd process (SIGKILL) at a chosen request: before the
simulator applies it (it never arrives), after it is applied but before it is answered (the
answer is lost), or a few milliseconds after the answer was written (syncd is recording it).
The steps, occurrences and moments are drawn from a seeded random (`NETSTOCK_CRASH_SEED`).

- **Export**: a host data set is loaded once by `host.inbox`; each trial changes one stock
  quantity (a new snapshot), runs `netstock.export` until the trap kills it, then re-runs it
  until the export completes. From the simulator: exactly one dataset was started for that
  snapshot, one import per model type, each model received exactly its rows in order (no
  chunk twice, none missing), the model end counts are the rows, Complete with success.
- **Pops**: generated POs/TRs/WOs are queued in the simulator; `netstock.pop` (and
  `outbox.send`) are killed at trapped requests and at random delays, then run to the end.
  Every line the simulator handed out appears exactly once across the host outbox files.
  A pop is a destructive read: an answer still on the wire when the process dies cannot be
  kept by any client. Such a file is allowed only if it was the killed process's last pop
  and its answer never reached the journal; every journaled answer must be delivered once.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import time
from collections import Counter, deque
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from syncd.sandbox.netstock import (
    DEFAULT_CLIENT_ID,
    DEFAULT_PASSWORD,
    DEFAULT_SCOPE,
    DEFAULT_USERNAME,
    NetstockSim,
)
from tests.system.crashkit import Trap, run_killed, run_ok, run_once, syncd, trapped

pytestmark = pytest.mark.system

SEED = int(os.environ.get("NETSTOCK_CRASH_SEED", "20261123"))
LAG = 0.02  # seconds between the simulator applying a request and answering it (pops)
EXPORT_LAG = 0.005  # the same for the export (more requests; the trap needs no window)
KILLS_PER_SNAPSHOT = 3
CHUNK = 3
PHASES = (
    ("Importing", 0.05),
    ("Importing_complete", 0.05),
    ("Transforming", 0.15),
    ("Copying_po_db", 0.1),
)
POP_KILLS = 8
SEND_KILLS = 3

DATASET_START = "POST /dataset/start"
MODEL_START = "POST /model/start"
IMPORT = "POST /import/{endpoint}"
MODEL_END = "POST /model/end"
START_PROCESSING = "POST /dataset/start_processing"
DATASET_STATUS = "GET /dataset/status"
MODEL_STATUS = "GET /model/status"
EXPORT_STEPS = (
    DATASET_START,
    MODEL_START,
    IMPORT,
    MODEL_END,
    START_PROCESSING,
    DATASET_STATUS,
    MODEL_STATUS,
)
MOMENTS = ("before", "applied", "answered")
POP_ROUTES = ("POST /file/pop_po", "POST /file/pop_tr", "POST /file/pop_wo")


# --- the simulator and its trap ------------------------------------------------------------


class CrashingNetstock(NetstockSim):
    """Applies each request at once, answers it `lag` seconds later, and fires `trap`."""

    lag = LAG
    trap: Trap | None = None

    def _register_routes(self) -> None:
        add = self.server.add_route

        def register(method: str, pattern: str, handler: Any, *, public: bool = False) -> None:
            add(method, pattern, trapped(self, handler), public=public)

        self.server.add_route = register  # type: ignore[method-assign]
        try:
            super()._register_routes()
        finally:
            del self.server.add_route


@pytest.fixture
def sim() -> Iterator[CrashingNetstock]:
    with CrashingNetstock(
        seed=SEED,
        phases=PHASES,
        retry_after=0,
        orders_per_dataset={"po": 0, "tr": 0, "wo": 0},
    ) as running:
        yield running


# --- host data and config ------------------------------------------------------------------

ARTICLES = [f"A{n:03d}" for n in range(10)]
TODAY = date.today()


def day(days_ago: int) -> str:
    return (TODAY - timedelta(days=days_ago)).isoformat()


def host_files() -> dict[str, list[str]]:
    """Inbox files (CSV lines); the model rows they make are `EXPECTED_KEYS`."""
    return {
        "locations-0001.csv": [
            "location_id,name,type,location_group,active",
            "WH1,Main warehouse,warehouse,,true",
            "ST1,Store 1,store,stores,true",
        ],
        "articles-0001.csv": ["article_id,name,unit"] + [f"{a},Article {a},EA" for a in ARTICLES],
        "stock-0001.csv": ["article_id,location,qty"]
        + [f"{a},{'WH1' if n % 2 else ''},{n * 3 + 1}" for n, a in enumerate(ARTICLES)],
        "suppliers-0001.csv": [
            "supplier_id,name,lead_time_days",
            "S1,Supplier 1,14",
            "S2,Supplier 2,7",
        ],
        "sales-0001.csv": [
            "transaction_id,line_id,sale_date,article_id,location,customer_id,qty,"
            "sales_value,cost_of_sales",
        ]
        + [
            f"T{n // 2},{n % 2 + 1},{day(n + 1)},{ARTICLES[n]},ST1,C{n},{n + 1},"
            f"{n + 1}9.99,{n + 1}2.10"
            for n in range(5)
        ],
        "purchase_orders-0001.csv": [
            "po_number,supplier_id,order_date,line_no,article_id,qty_ordered,location,"
            "qty_received,unit_cost",
            f"PO1,S1,{day(10)},1,A001,10,WH1,4,2.50",
            f"PO1,S1,{day(10)},2,A002,5,WH1,5,3.00",  # fully received: not an open line
            f"PO2,S2,{day(5)},1,A003,8,,0,1.25",
            f"PO2,S2,{day(5)},2,A004,6,,1,1.75",
        ],
        "po_history-0001.csv": [
            "po_number,line_no,article_id,supplier_id,order_date,qty_ordered,qty_received,"
            "receipt_date",
        ]
        + [f"H{n},1,{ARTICLES[n]},S1,{day(90)},{n + 2},{n + 2},{day(80)}" for n in range(4)],
    }


EXPECTED_KEYS: dict[str, list[tuple[str, ...]]] = {
    "locations": [("ST1",), ("WH1",)],
    "master": [(a,) for a in ARTICLES],
    "stocks": [(a, "WH1" if n % 2 else "MAIN") for n, a in enumerate(ARTICLES)],
    "suppliers": [("S1",), ("S2",)],
    "sales": [(ARTICLES[n], "ST1") for n in range(5)],
    "po": [("A001", "PO1"), ("A003", "PO2"), ("A004", "PO2")],
    "pohist": [(ARTICLES[n], f"H{n}") for n in range(4)],
}
KEY_FIELDS = {
    "locations": ("location_code",),
    "master": ("item_code",),
    "stocks": ("item_code", "location"),
    "suppliers": ("supplier_code",),
    "sales": ("item_code", "location"),
    "po": ("item_code", "order_number"),
    "pohist": ("item_code", "order_number"),
}


def write_config(tmp_path: Path, sim: NetstockSim) -> tuple[Path, Path, Path]:
    state_dir, host_dir = tmp_path / "state", tmp_path / "host"
    (host_dir / "inbox").mkdir(parents=True)
    config = tmp_path / "syncd.toml"
    config.write_text(
        f"""
[daemon]
state_dir = {json.dumps(str(state_dir))}

[logging]
format = "json"
level = "warning"

[host]
dir = {json.dumps(str(host_dir))}
settle_time = 0

[outbox]
initial_backoff = "50ms"
max_backoff = "200ms"

[connectors.netstock]
enabled = true
base_url = "{sim.base_url}"
username = "{DEFAULT_USERNAME}"
password = "{DEFAULT_PASSWORD}"
client_id = "{DEFAULT_CLIENT_ID}"
options = {{ scope = "{DEFAULT_SCOPE}", chunk_size = {CHUNK} }}
retry = {{ max_attempts = 3, initial_backoff = "20ms", max_backoff = "100ms" }}
timeouts = {{ connect = "2s", read = "5s" }}

[jobs."netstock.export"]
options = {{ poll_interval = "50ms", poll_timeout = "10s" }}
""",
        encoding="utf-8",
    )
    return config, state_dir, host_dir


def run_killed_at_first_file(config: Path, host_dir: Path, delay: float) -> bool:
    """Run `outbox.send`; SIGKILL it `delay` seconds after it wrote its first host file."""
    outbox = host_dir / "outbox"
    before = len(list(outbox.glob("netstock_*"))) if outbox.exists() else 0
    proc = syncd(config, "outbox.send")
    killed = False
    try:
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            if outbox.exists() and len(list(outbox.glob("netstock_*"))) > before:
                time.sleep(delay)
                proc.kill()
                killed = proc.wait(timeout=10) == -9
                break
            time.sleep(0.001)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
    return killed


def db_rows(state_dir: Path, sql: str, params: Any = ()) -> list[dict[str, Any]]:
    conn = sqlite3.connect(f"file:{state_dir / 'syncd.db'}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params).fetchall()]
    finally:
        conn.close()


def load_host(config: Path, state_dir: Path, host_dir: Path) -> None:
    for name, lines in host_files().items():
        (host_dir / "inbox" / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    run_ok(config, "host.inbox")
    assert sorted(p.name for p in (host_dir / "archive").rglob("*.csv")) == sorted(host_files())
    assert db_rows(state_dir, "SELECT * FROM rejects") == []


def change_snapshot(state_dir: Path, trial: int) -> None:
    """A new stock figure (syncd is not running): the next export is a new snapshot."""
    conn = sqlite3.connect(state_dir / "syncd.db", timeout=10)
    try:
        with conn:
            conn.execute(
                "UPDATE host_stock SET qty = qty + 1 WHERE article_id = ?",
                [ARTICLES[trial % len(ARTICLES)]],
            )
    finally:
        conn.close()


# --- export ----------------------------------------------------------------------------------


def check_dataset(sim: NetstockSim, dataset_id: str, context: str) -> None:
    dataset = sim.dataset(dataset_id)
    assert (dataset.status, dataset.success) == ("Complete", True), context
    imports = sim.model_imports(dataset_id)
    assert sorted(m.model for m in imports) == sorted(EXPECTED_KEYS), context  # one each
    for found in imports:
        expected = EXPECTED_KEYS[found.model]
        keys = [tuple(str(r[k]) for k in KEY_FIELDS[found.model]) for r in found.rows]
        where = f"{context}; model {found.model}"
        assert keys == expected, where  # no chunk twice, none missing, in order
        assert found.lines_received == len(expected), where
        assert found.minimum_expected_lines == len(expected), where
        assert found.success is True, where
        assert found.chunks == -(-len(expected) // CHUNK), where


def finish_export(config: Path, state_dir: Path, context: str) -> int:
    """Re-run the export until it is complete; returns the runs it took."""
    for attempt in range(1, 5):
        done = run_once(config, "netstock.export")
        assert done.returncode == 0, f"{context}; resume {attempt}:\n{done.stdout}\n{done.stderr}"
        [last] = db_rows(state_dir, "SELECT state FROM netstock_exports ORDER BY id DESC LIMIT 1")
        if last["state"] == "complete":
            return attempt
        assert last["state"] in ("prepared", "importing", "processing"), f"{context}: {last}"
    pytest.fail(f"{context}: the export did not complete in 4 runs")


def test_export_resumes_after_kill_9_at_every_step(sim: CrashingNetstock, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    sim.lag = EXPORT_LAG
    config, state_dir, host_dir = write_config(tmp_path, sim)
    load_host(config, state_dir, host_dir)

    # A clean export first: how many requests of each step one export makes.
    mark = len(sim.requests)
    run_ok(config, "netstock.export")
    per_step = Counter(r.route for r in sim.requests[mark:])
    [first] = db_rows(state_dir, "SELECT * FROM netstock_exports")
    assert first["state"] == "complete"
    check_dataset(sim, first["dataset_id"], "clean export")
    assert all(per_step[step] for step in EXPORT_STEPS), per_step

    # Every step at every moment, then a few more; up to 3 kills per snapshot (the resumed
    # runs are killed too), then runs until the export completes.
    combos = [(step, moment) for step in EXPORT_STEPS for moment in MOMENTS]
    rng.shuffle(combos)
    combos += [(rng.choice(EXPORT_STEPS), rng.choice(MOMENTS)) for _ in range(3)]
    pending = deque(combos)
    landed: Counter[tuple[str, str]] = Counter()
    snapshots = 0
    while pending:
        snapshots += 1
        assert snapshots <= len(combos), f"kills do not land: {pending}"
        change_snapshot(state_dir, snapshots)
        datasets_before = len(sim.datasets())
        exports_before = len(db_rows(state_dir, "SELECT id FROM netstock_exports"))
        context = f"NETSTOCK_CRASH_SEED={SEED} snapshot {snapshots}, kills:"
        for kill in range(KILLS_PER_SNAPSHOT):
            if not pending:
                break
            step, moment = pending[0]
            occurrence = rng.randint(1, per_step[step]) if kill == 0 else 1
            trap = Trap((step,), occurrence, moment, delay=rng.uniform(0.0, 0.02))
            code = run_killed(sim, config, "netstock.export", trap, timer=None)
            if code != -9:  # the run got through: this kill waits for the next snapshot
                assert code == 0, context
                break
            pending.popleft()
            landed[(step, moment)] += 1
            context += f" {moment} {step} #{occurrence};"
        runs = finish_export(config, state_dir, context)
        new_exports = db_rows(
            state_dir,
            "SELECT * FROM netstock_exports ORDER BY id LIMIT -1 OFFSET ?",
            [exports_before],
        )
        assert [e["state"] for e in new_exports] == ["complete"], f"{context} {new_exports}"
        datasets = sim.datasets()
        assert len(datasets) == datasets_before + 1, f"{context} a second dataset was started"
        assert new_exports[0]["dataset_id"] == datasets[-1].dataset_import_id, context
        check_dataset(sim, new_exports[0]["dataset_id"], f"{context} then {runs} run(s)")

    how = Counter(r["how"] for r in db_rows(state_dir, "SELECT how FROM netstock_export_chunks"))
    print(f"{snapshots} snapshots; kills landed {sorted(landed.items())}; chunks {dict(how)}")
    assert sum(landed.values()) == len(combos) >= 20
    assert how["confirmed"] >= 1  # a chunk whose answer a kill lost was confirmed, not resent
    assert (sim.stats["model_mismatches"], sim.stats["datasets_failed"]) == (0, 0)
    assert sim.stats["datasets_started"] == snapshots + 1


# --- pops ------------------------------------------------------------------------------------


def host_lines(host_dir: Path) -> Counter[tuple[str, ...]]:
    """Every line of every netstock_* host outbox file: (stream, file_name, line_no, item, qty)."""
    found: Counter[tuple[str, ...]] = Counter()
    for path in sorted((host_dir / "outbox").glob("netstock_*")):
        stream = path.name.split("-", 1)[0]
        for text in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(text)
            found[
                (
                    stream,
                    row["file_name"],
                    str(row["line_no"]),
                    row["item_code"],
                    str(Decimal(row["quantity"]).normalize()),
                )
            ] += 1
    return found


def sim_lines(files: list[Any]) -> Counter[tuple[str, ...]]:
    found: Counter[tuple[str, ...]] = Counter()
    for popped in files:
        for n, line in enumerate(popped.file.lines, start=1):
            found[
                (
                    f"netstock_{popped.file.kind}",
                    popped.file.file_name,
                    str(n),
                    line["item_code"],
                    str(Decimal(line["quantity"]).normalize()),
                )
            ] += 1
    return found


def test_pops_are_never_lost_or_duplicated_across_kill_9(
    sim: CrashingNetstock, tmp_path: Path
) -> None:
    rng = random.Random(SEED + 1)
    config, state_dir, host_dir = write_config(tmp_path, sim)
    in_flight: set[str] = set()  # files answered to a process killed before it journaled them
    landed: Counter[str] = Counter()

    def unjournaled(files: list[Any]) -> list[Any]:
        raws = {r["raw"] for r in db_rows(state_dir, "SELECT raw FROM netstock_pops")}
        return [p for p in files if p.body.decode() not in raws]

    for trial in range(POP_KILLS):
        for kind in ("po", "tr", "wo"):
            sim.generate(kind, files=rng.randint(1, 3), lines=rng.randint(1, 3))
        before = len(sim.popped())
        queued = sum(len(sim.queued(k)) for k in ("po", "tr", "wo"))
        if trial % 4 == 3:
            trap, timer = None, rng.uniform(0.5, 1.5)  # a kill at a random delay
        else:
            moment = ("before", "answered")[trial % 2]
            trap = Trap(POP_ROUTES, rng.randint(1, queued), moment, rng.uniform(0.0, 0.03))
            timer = None
        code = run_killed(sim, config, "netstock.pop", trap, timer)
        if code == -9:
            landed[trap.moment if trap else "timer"] += 1
        # Only the killed process's last pop may have been on the wire when it died.
        lost = unjournaled(sim.popped()[before:])
        if code != -9 or (trap is not None and trap.moment == "before"):
            assert lost == [], f"NETSTOCK_CRASH_SEED={SEED} trial {trial}: {lost}"
        assert [p.file.file_name for p in lost] in (
            [],
            [p.file.file_name for p in sim.popped()[-1:]],
        ), f"NETSTOCK_CRASH_SEED={SEED} trial {trial}: {lost}"
        in_flight.update(p.file.file_name for p in lost)
        run_ok(config, "netstock.pop")  # picks up what the kill left journaled
        if trial < SEND_KILLS:  # the sender killed while it writes host files
            landed["send"] += run_killed_at_first_file(config, host_dir, rng.uniform(0, 0.005))

    for _ in range(2):
        run_ok(config, "netstock.pop")
        run_ok(config, "outbox.send")
    run_ok(config, "netstock.pop")  # marks what the sender wrote as delivered

    popped = sim.popped()
    assert all(not sim.queued(k) for k in ("po", "tr", "wo"))
    names = Counter(p.file.file_name for p in popped)
    assert all(n == 1 for n in names.values())  # the simulator hands each file out once
    kept = [p for p in popped if p.file.file_name not in in_flight]
    context = f"NETSTOCK_CRASH_SEED={SEED}; kills {dict(landed)}; lost on the wire {in_flight}"
    assert host_lines(host_dir) == sim_lines(kept), context  # none lost, none duplicated
    journal = db_rows(state_dir, "SELECT status, count(*) AS n FROM netstock_pops GROUP BY status")
    assert journal == [{"status": "delivered", "n": len(kept)}], context
    assert db_rows(state_dir, "SELECT * FROM outbox WHERE status != 'sent'") == [], context
    replays = db_rows(state_dir, "SELECT id FROM outbox WHERE result LIKE '%already_done%'")
    context += f"; host files found already written on resend: {len(replays)}"
    assert sum(landed.values()) >= POP_KILLS + SEND_KILLS - 2, context
    print(context)
