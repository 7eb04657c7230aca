"""`syncd backfill` with real processes: a running daemon picks a request up and, killed
with SIGKILL mid-backfill and started again, resumes it from its own checkpoint; and kill -9
trials of the backfill job at random points (after its k-th COMMIT, or a random delay into
its run), each continued to the end, must journal and send every move of the period once.

The Instock simulator runs in this process (real clock; its 30-day history of moves is the
period backfilled); syncd runs as `python -m syncd.cli`. Before each backfill the live
instock.moves job has journalled and sent the last day, so the backfill must recognise
those moves and send only the rest.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from syncd.clock import iso, parse_iso
from syncd.jobs import REGISTRY
from syncd.sandbox.base import Request, Response
from syncd.sandbox.instock import InstockSim
from syncd.state import Store
from syncd.state.backfills import request_backfill
from tests.system.conftest import wait_until
from tests.system.crashkit import (
    INSTOCK,
    db_rows,
    describe,
    restore,
    run_ok,
    run_trials,
    syncd,
    syncd_env,
    take_snapshot,
    trial_env,
    trial_outbox,
    wrap_routes,
    write_hook,
    write_trial_config,
)

pytestmark = pytest.mark.system

TRIALS_SEED = int(os.environ.get("CRASH_TRIALS_SEED", "20261205"))
TRIALS = int(os.environ.get("BACKFILL_TRIALS", "12"))
FIELDS = (
    "article_id",
    "qty",
    "move_timestamp",
    "user_id",
    "order_id",
    "from_cell_id",
    "to_cell_id",
    "from_account_id",
    "to_account_id",
)
MOVES_ROUTE = "GET /v1/{site_id}/moves"


def write_config(root: Path, sim: InstockSim, *, interval: str = "1h", live: bool = False) -> Path:
    """syncd.toml: only instock.moves (when `live`), backfill.requests and the sender run."""
    off = "\n".join(
        f'[jobs."{job}"]\nenabled = false'
        for job in REGISTRY
        if job not in ("outbox.send", "backfill.requests", "instock.moves")
    )
    jobs = f"""
{off}

[jobs."instock.moves"]
enabled = {"true" if live else "false"}
schedule = {{ interval = "{interval}" }}
options = {{ lag = "1s", overlap = "10m", initial_lookback = "1d", max_window = "1d" }}

[jobs."backfill.requests"]
schedule = {{ interval = "{interval}" }}
options = {{ moves_step = "1d" }}
"""
    path = write_trial_config(
        root,
        sim,
        outbox=trial_outbox(interval),
        instock="rate_limit = { per_second = 0 }\n" + INSTOCK,
        jobs=jobs,
        log_level="info",
    )
    (root / "host" / "inbox").mkdir(parents=True, exist_ok=True)
    return path


def slowed(pause: float) -> Callable[[Callable[[Request], Response]], Any]:
    """Each moves request answered `pause` s late: a backfill long enough to kill mid-way."""

    def wrap(handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        def handle(request: Request) -> Response:
            if request.route == MOVES_ROUTE:
                time.sleep(pause)
            return handler(request)

        return handle

    return wrap


@pytest.fixture(scope="module")
def sim() -> Iterator[InstockSim]:
    with InstockSim(seed=7, articles=200, retry_after=0) as running:
        yield running


def sim_moves(sim: InstockSim, since: datetime) -> Counter[tuple[Any, ...]]:
    with sim.state.lock:
        moves = [m.as_json() for m in sim.state.moves[sim.site_id]]
    return Counter(
        tuple(m[f] for f in FIELDS) for m in moves if parse_iso(m["move_timestamp"]) >= since
    )


def sent_moves(root: Path) -> Counter[tuple[Any, ...]]:
    rows = [
        json.loads(line)
        for f in sorted((root / "host" / "outbox").glob("moves-*.jsonl"))
        for line in f.read_text().splitlines()
    ]
    return Counter(tuple(r[f] for f in FIELDS) for r in rows)


def journal(root: Path) -> Counter[tuple[Any, ...]]:
    rows = db_rows(root / "state" / "syncd.db", "SELECT * FROM instock_moves")
    return Counter(tuple(r[f] for f in FIELDS) for r in rows)


def backfill_row(root: Path) -> dict[str, Any]:
    (row,) = db_rows(root / "state" / "syncd.db", "SELECT * FROM backfills")
    return row


def recent_moves(sim: InstockSim, n: int = 3) -> None:
    """Moves of the last minutes, for the live job to journal (the seeded history ends
    days ago)."""
    with sim.state.lock:
        inventory = sim.state.inventory[sim.site_id]
        articles = [a for a in sim.state.article_ids if a in inventory][:n]
    for article in articles:
        sim.adjust_inventory(article, 2)


def command(
    config: Path, stream: str, start: datetime, end: datetime, *extra: str
) -> subprocess.CompletedProcess[str]:
    """`syncd backfill STREAM --from --to ...` as a process."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "syncd.cli",
            "backfill",
            stream,
            "--from",
            iso(start),
            "--to",
            iso(end),
            *extra,
            "--config",
            str(config),
        ],
        env=trial_env(),
        check=False,
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )


def ask(root: Path, start: datetime, end: datetime) -> None:
    """The request `syncd backfill` writes while a daemon holds the lock."""
    with Store.open(root / "state" / "syncd.db", migrate=False) as store:
        request_backfill(store, "instock.moves", iso(start), iso(end), dry_run=False)


# --- a daemon picks the request up, is killed, and resumes ---------------------------------


@pytest.mark.timeout(300)
def test_a_daemon_runs_a_request_and_resumes_it_after_kill_9(
    sim: InstockSim, tmp_path: Path, spawn: Any
) -> None:
    """`syncd run` (live instock.moves beside it) picks up a request within its schedule;
    SIGKILLed after a few of its windows, it is started again and goes on from the
    backfill's cursor (no window committed twice); every move of the period reaches the
    host once, those the live job sent included."""
    routes = list(sim.server.router._routes)
    wrap_routes(sim.server, slowed(0.25))
    try:
        config = write_config(tmp_path, sim, interval="1s", live=True)
        recent_moves(sim)
        daemon = spawn(config)
        daemon.wait_event("daemon_started", timeout=30)
        db = tmp_path / "state" / "syncd.db"
        wait_until(
            lambda: (
                db_rows(db, "SELECT 1 FROM instock_moves LIMIT 1")
                or db_rows(db, "SELECT 1 FROM runs WHERE job = 'instock.moves' AND status = 'ok'")
            ),
            30,
            "the live moves job's first run",
        )
        now = datetime.now(UTC).replace(microsecond=0)
        period = (now - timedelta(days=31), now)
        asked = command(config, "instock.moves", *period, "--no-wait")
        assert asked.returncode == 0, asked.stderr
        assert "requested: the running daemon's backfill.requests job takes it" in asked.stderr
        again_asked = command(config, "instock.moves", *period)
        assert again_asked.returncode == 75, again_asked.stderr
        assert "backfill 1 (" in again_asked.stderr
        assert "one backfill per stream at a time" in again_asked.stderr
        wait_until(lambda: backfill_row(tmp_path)["steps"] >= 4, 60, "four windows committed")
        daemon.kill()  # SIGKILL
        killed = backfill_row(tmp_path)
        assert killed["status"] == "running"
        assert parse_iso(killed["cursor"]) > period[0]

        again = spawn(config)
        again.wait_event("daemon_started", timeout=30)
        wait_until(lambda: backfill_row(tmp_path)["status"] == "done", 90, "the backfill done")
        done = backfill_row(tmp_path)
        assert done["steps"] == 31  # each window committed once: resumed, not restarted
        assert done["run_id"] != killed["run_id"]
        resumed = [e.get("resumed_from") for e in again.events("backfill_started")]
        assert resumed[:1] == [killed["cursor"]]
        wait_until(
            lambda: not db_rows(db, "SELECT 1 FROM outbox WHERE status = 'pending'"),
            60,
            "the outbox drained",
        )
        want = sim_moves(sim, period[0])
        assert sent_moves(tmp_path) == want, describe(want, sent_moves(tmp_path))
        assert journal(tmp_path) == want
        assert done["applied"] > 0
        assert done["found"] > done["missing"], (done, sum(want.values()))
    finally:
        sim.server.router._routes = routes


# --- kill -9 trials of the backfill job ----------------------------------------------------------


@pytest.fixture(scope="module")
def prepared(sim: InstockSim, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The live job's day journalled and sent, a backfill of 31 days requested; then one
    uncrashed run of the backfill (the reference): its steps and duration. Moves pages
    are answered 50 ms late, so a random delay can land inside the run."""
    routes = list(sim.server.router._routes)
    wrap_routes(sim.server, slowed(0.05))
    try:
        yield _prepare(sim, tmp_path_factory)
    finally:
        sim.server.router._routes = routes


def _prepare(sim: InstockSim, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("backfill-base")
    hook = write_hook(root / "hook")
    config = write_config(root, sim)
    recent_moves(sim)
    time.sleep(1.5)  # past the live job's lag
    run_ok(config, "instock.moves")
    run_ok(config, "outbox.send")
    assert sent_moves(root)
    now = datetime.now(UTC).replace(microsecond=0)
    period = (now - timedelta(days=31), now)
    ask(root, *period)
    snapshot = root / "snapshot"
    take_snapshot(root, snapshot)

    ref = tmp_path_factory.mktemp("backfill-ref")
    restore(snapshot, ref)
    ref_config = write_config(ref, sim)
    started = time.monotonic()
    proc = syncd(ref_config, "backfill.requests", syncd_env(hook, "commit:100000"))
    proc.communicate(timeout=120)
    duration = time.monotonic() - started
    assert proc.returncode == 0
    (run,) = db_rows(
        ref / "state" / "syncd.db",
        "SELECT started_at, finished_at FROM runs WHERE job = 'backfill.requests'",
    )
    working = (parse_iso(run["finished_at"]) - parse_iso(run["started_at"])).total_seconds()
    run_ok(ref_config, "outbox.send")
    assert backfill_row(ref)["status"] == "done"
    return {
        "snapshot": snapshot,
        "hook": hook,
        "period": period,
        "duration": duration,
        "working": working,  # of which the job's run (the rest: starting the interpreter)
        "steps": backfill_row(ref)["steps"],
        "row": backfill_row(ref),
        "sent": sent_moves(ref),
        "journal": journal(ref),
    }


@pytest.mark.timeout(600)
def test_kill_9_during_a_backfill_loses_and_duplicates_nothing(
    sim: InstockSim, prepared: dict[str, Any], tmp_path: Path
) -> None:
    """Each trial: the backfill job SIGKILLed after its k-th COMMIT or a random delay into
    its run, then run again (it resumes the backfill left running) and the sender: the
    host receives exactly the reference's moves, the journal holds each once, and the
    backfill's counts equal the reference's (no step counted twice)."""
    rng = random.Random(TRIALS_SEED)
    ref = prepared["row"]
    # Commits of a run: its runs row, the claim, one per window, the end, the run's end.
    most = prepared["steps"] + 4
    plan = [
        ("commit", rng.randint(1, most))
        if n % 3
        else ("timer", rng.uniform(0.0, prepared["working"]))
        for n in range(TRIALS)
    ]
    results: list[dict[str, Any]] = []

    def trial(n: int, mode: str, at: float) -> Callable[[], str]:
        def go() -> str:
            root = tmp_path / f"trial-{n}"
            restore(prepared["snapshot"], root)
            config = write_config(root, sim)
            kill_at = f"commit:{int(at)}" if mode == "commit" else ""
            proc = syncd(config, "backfill.requests", syncd_env(prepared["hook"], kill_at))
            if mode == "timer":  # `at` seconds after the run claimed the backfill
                while proc.poll() is None and backfill_row(root)["status"] == "requested":
                    time.sleep(0.02)
                try:
                    proc.wait(timeout=at)
                except subprocess.TimeoutExpired:
                    proc.kill()
            proc.communicate(timeout=120)
            killed = proc.returncode == -9
            left = backfill_row(root)
            run_ok(config, "backfill.requests")  # resumes it (or finds nothing to do)
            run_ok(config, "outbox.send")
            sent, held = sent_moves(root), journal(root)
            done = backfill_row(root)
            lost = sum((prepared["sent"] - sent).values())
            duplicated = (
                sum((sent - prepared["sent"]).values())
                + sum(n - 1 for n in held.values() if n > 1)
                - sum(n - 1 for n in prepared["journal"].values() if n > 1)
            )
            results.append({"killed": killed, "lost": lost, "duplicated": duplicated})
            label = f"trial {n} ({mode} {at:.2f}, seed {TRIALS_SEED})"
            assert sent == prepared["sent"], f"{label}: {describe(prepared['sent'], sent)}"
            assert held == prepared["journal"], f"{label}: journal differs"
            counts = ("status", "steps", "found", "missing", "applied")
            assert {k: done[k] for k in counts} == {k: ref[k] for k in counts}, label
            return (
                f"{label}: killed={killed} left {left['status']} at step {left['steps']}, "
                f"lost {lost}, duplicated {duplicated}"
            )

        return go

    run_trials([trial(n, mode, at) for n, (mode, at) in enumerate(plan)])
    kills = sum(r["killed"] for r in results)
    print(
        f"backfill kill -9 trials: {len(results)} trials, {kills} kills, "
        f"lost {sum(r['lost'] for r in results)}, duplicated {sum(r['duplicated'] for r in results)}"
    )
    assert kills >= len(results) // 2


def test_the_command_runs_here_without_a_daemon(sim: InstockSim, tmp_path: Path) -> None:
    """No daemon: `syncd backfill` takes the lock and runs the request itself. A dry run
    prints the differences and changes nothing; the real run journals them (exit 0)."""
    config = write_config(tmp_path, sim)
    recent_moves(sim)
    time.sleep(1.5)
    run_ok(config, "instock.moves")
    now = datetime.now(UTC).replace(microsecond=0)
    period = (now - timedelta(days=31), now)
    before = journal(tmp_path)
    dry = command(config, "instock.moves", *period, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    first = dry.stdout.splitlines()[0]
    assert first.startswith("backfill 1 instock.moves ")
    assert ": done; found " in first
    assert "nothing applied (dry run)" in first
    assert "  missing " in dry.stdout
    assert "(not applied)" in dry.stdout
    assert journal(tmp_path) == before
    real = command(config, "instock.moves", *period, "--json")
    assert real.returncode == 0, real.stderr
    answer = json.loads(real.stdout)
    assert (answer["status"], answer["dry_run"]) == ("done", False)
    assert answer["applied"] == answer["missing"] > 0
    assert sum(journal(tmp_path).values()) == sum(before.values()) + answer["applied"]
    listed = subprocess.run(
        [sys.executable, "-m", "syncd.cli", "backfill", "--list", "--config", str(config)],
        env=trial_env(),
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count(" done ") == 2, listed.stdout


def test_the_command_shows_progress_on_a_terminal(sim: InstockSim, tmp_path: Path) -> None:
    """At a terminal, `syncd backfill` run here draws its windows against their number
    (31 one-day windows) before the result line."""
    from tests.system.test_progress_process import run_on_a_terminal

    config = write_config(tmp_path, sim)
    now = datetime.now(UTC).replace(microsecond=0)
    args = [
        sys.executable,
        "-m",
        "syncd.cli",
        "backfill",
        "instock.moves",
        "--from",
        iso(now - timedelta(days=31)),
        "--to",
        iso(now),
        "--config",
        str(config),
    ]
    code, out = run_on_a_terminal(args, trial_env(COLUMNS="120"))
    assert code == 0, out
    assert "backfill 1 instock.moves" in out
    assert "31/31" in out, out
    assert out.index("31/31") < out.index(": done; found ")
