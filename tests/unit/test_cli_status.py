"""`syncd status` reads well: the daemon, relative times, schedules in words, next runs,
local times on a terminal and ISO-8601 UTC in --json (in-process CLI, real state DB)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from freezegun import freeze_time

import syncd.jobs  # noqa: F401  # every options model built before the clock is frozen
from syncd import cli, status
from syncd.cli import main
from syncd.clock import ago
from syncd.config import Schedule
from syncd.state import Store
from syncd.state.store import NewReject
from syncd.status import DaemonState, daemon_state, every, next_run, process_started
from tests.unit.test_cli_exits import clean_env

NOW = datetime(2026, 12, 4, 18, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (30, "every 30 s"),
        (60, "every 1 min"),
        (600, "every 10 min"),
        (90, "every 90 s"),
        (7200, "every 2 h"),
        (5400, "every 90 min"),
        (86400, "every 1 d"),
        (1.5, "every 1.5 s"),
    ],
)
def test_schedules_in_words(seconds: float, text: str) -> None:
    """An interval reads as an operator says it, in the largest whole unit."""
    assert every(seconds) == text


def test_relative_times() -> None:
    """Past runs read `... ago`, coming ones `in ...`, rounded to what matters."""
    assert ago(NOW - timedelta(minutes=3, seconds=12), NOW) == "3 min ago"
    assert ago(NOW + timedelta(seconds=20), NOW) == "in 20 s"
    assert ago(NOW - timedelta(hours=2, minutes=14), NOW) == "2 h 14 min ago"
    assert ago(NOW - timedelta(days=3, hours=4), NOW) == "3 d 4 h ago"
    assert ago(NOW, NOW) == "now"


def test_next_run_follows_the_scheduler() -> None:
    """Interval jobs fire at daemon start plus whole intervals; cron ones on their
    expression in the site's zone; none without a daemon."""
    started = NOW - timedelta(minutes=25)
    ten = Schedule(interval=600)
    assert next_run(ten, timezone="UTC", now=NOW, daemon_started=started) == NOW + timedelta(
        minutes=5
    )
    cron = Schedule(cron="0 2 * * *")
    assert next_run(cron, timezone="Europe/Amsterdam", now=NOW, daemon_started=started) == (
        datetime(2026, 12, 5, 1, 0, tzinfo=UTC)
    )
    assert next_run(ten, timezone="UTC", now=NOW, daemon_started=None) is None


def test_daemon_state_is_the_lock_holder(tmp_path: Path) -> None:
    """The daemon is the process /proc/locks says holds the lock file's flock, with the
    start /proc gives it; a lock file no process holds means no daemon."""
    proc = tmp_path / "proc"
    (proc / "4242").mkdir(parents=True)
    lock = tmp_path / "syncd.lock"
    lock.write_text("4242\n")
    st = lock.stat()
    where = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    (proc / "locks").write_text(f"1: FLOCK  ADVISORY  WRITE 4242 {where} 0 EOF\n")
    (proc / "stat").write_text("cpu  1 2 3\nbtime 1764800000\n")
    fields = " ".join(["S", *["0"] * 18, str(100 * os.sysconf("SC_CLK_TCK")), "0"])
    (proc / "4242" / "stat").write_text(f"4242 (python3 (syncd)) {fields}\n")
    state = daemon_state(tmp_path, proc)
    assert state.pid == 4242
    assert state.started_at == datetime.fromtimestamp(1764800100, UTC)
    (proc / "locks").write_text("")
    assert not daemon_state(tmp_path, proc).running


def test_process_started_reads_proc() -> None:
    """This process started before now and after the machine booted (Linux /proc)."""
    started = process_started(os.getpid())
    assert started is not None
    assert datetime.now(UTC) - timedelta(hours=12) < started <= datetime.now(UTC)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A state DB with a host.inbox run 3 minutes before NOW, an open auth alert and
    two open rejects; a daemon up for 2 h 14 min."""
    path = tmp_path / "syncd.toml"
    path.write_text(
        f"[daemon]\nstate_dir = {json.dumps(str(tmp_path / 'state'))}\n"
        '[jobs."host.inbox".schedule]\ninterval = "10m"\n'
    )
    with Store.open(tmp_path / "state" / "syncd.db") as store:
        with freeze_time(NOW - timedelta(minutes=3)):
            store.start_run("host.inbox", "host-inbox-0123456789ab", "schedule")
            store.finish_run("host-inbox-0123456789ab", "ok", {"pulled": 7})
            store.add_rejects([NewReject("host:articles", f"a.csv:{n}", "bad") for n in (2, 3)])
        with freeze_time(NOW - timedelta(hours=1)):
            store.open_alert("auth", "instock: credentials refused", subject="instock")
    return path


@pytest.fixture
def daemon(monkeypatch: pytest.MonkeyPatch) -> None:
    """A daemon up for 2 h 14 min at NOW, as the lock and /proc would tell."""
    up = DaemonState(4242, NOW - timedelta(hours=2, minutes=14))
    monkeypatch.setattr(status, "daemon_state", lambda _state_dir: up)


@pytest.fixture
def amsterdam(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "Europe/Amsterdam")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def run_status(config: Path, *args: str) -> Result:
    """`syncd status` at NOW."""
    with freeze_time(NOW):  # around the command only: pytest's own timing stays real
        result = CliRunner(env=clean_env()).invoke(main, ["status", *args, "--config", str(config)])
    assert result.exit_code == 0, result.output
    return result


def test_status_text_on_a_terminal(
    config: Path, daemon: None, amsterdam: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a terminal: pid and uptime, what needs attention, per job the schedule in words,
    the last run as `3 min ago`, the next one, and times local with their zone."""
    monkeypatch.setattr(cli.status, "stdout_is_tty", lambda: True)
    out = run_status(config).output
    assert "Daemon: running, pid 4242, up 2 h 14 min (since 2026-12-04 16:46:00 CET)" in out
    assert "Attention: 2 open reject(s), 1 open alert(s), 0 intent(s) pending" in out
    inbox = next(line for line in out.splitlines() if line.startswith("host.inbox"))
    for text in ("every 10 min", "3 min ago", "ok", "in 6 min", "3 min", "7"):
        assert text in inbox, inbox
    housekeeping = next(line for line in out.splitlines() if line.startswith("state.house"))
    assert "every 1 h" in housekeeping
    assert "never" in housekeeping
    assert "2026-12-04 18:00:00 CET" in out  # the alert, opened 17:00 UTC


def test_status_text_off_a_terminal_keeps_utc(config: Path, daemon: None, amsterdam: None) -> None:
    """Piped, absolute times stay ISO-8601 UTC (what a script may parse)."""
    out = run_status(config).output
    assert "2026-12-04T17:00:00.000Z" in out
    assert "CET" not in out


def test_status_json(config: Path, daemon: None) -> None:
    """--json carries the daemon, each job's schedule and next run, as ISO-8601 UTC."""
    report = json.loads(run_status(config, "--json").output)
    assert report["daemon"] == {
        "running": True,
        "pid": 4242,
        "started_at": "2026-12-04T15:46:00.000Z",
        "uptime_s": 8040.0,
    }
    inbox = next(j for j in report["jobs"] if j["job"] == "host.inbox")
    assert inbox["schedule"] == "every 10 min"
    assert inbox["next_run"] == "2026-12-04T18:06:00.000Z"
    assert inbox["started_at"] == "2026-12-04T17:57:00.000Z"
    assert inbox["lag_s"] == 180.0
    assert report["rejects_open"] == {"host:articles": 2}


def test_status_without_a_daemon(config: Path) -> None:
    """No daemon: said so, and no next runs are promised."""
    out = run_status(config).output
    assert "Daemon: not running" in out
    report = json.loads(run_status(config, "--json").output)
    assert report["daemon"]["running"] is False
    assert {j["next_run"] for j in report["jobs"]} == {None}


def test_status_shows_a_connector_throttled_until_its_retry_after(
    config: Path, tmp_path: Path
) -> None:
    """A 429's park in the state DB is a line of `syncd status` (and its JSON) until it
    passes; a park already over is not shown."""
    from syncd.ratebudget import Bucket
    from syncd.state.ratebudget import BudgetTable

    table = BudgetTable(tmp_path / "state" / "syncd.db")
    until = (NOW + timedelta(seconds=30)).timestamp()
    table.save("instock", Bucket(0.0, NOW.timestamp(), until, "429 to GET /v1/x, request id r1"))
    table.save("dsorder", Bucket(0.0, NOW.timestamp(), NOW.timestamp() - 1, "over"))
    table.close()
    out = run_status(config).output
    assert "Rate limit: instock throttled until" in out
    assert "(429 to GET /v1/x, request id r1)" in out
    assert "dsorder throttled" not in out
    report = json.loads(run_status(config, "--json").output)
    assert [row["connector"] for row in report["throttled"]] == ["instock"]


def test_status_shows_backfills_requested_or_running(config: Path, tmp_path: Path) -> None:
    """A backfill waiting for the daemon or under way is a line of `syncd status` (and its
    JSON) with its period and counts; a finished one is not."""
    from syncd.state.backfills import cancel_backfill, request_backfill

    with Store.open(tmp_path / "state" / "syncd.db") as store:
        done = request_backfill(
            store, "dsorder.pull", "2026-12-04T00:00:00.000Z", NOW.isoformat(), dry_run=False
        )
        cancel_backfill(store, done.id)
        waiting = request_backfill(
            store,
            "instock.moves",
            "2026-12-01T00:00:00.000Z",
            "2026-12-02T00:00:00.000Z",
            dry_run=True,
        )
    out = run_status(config).output
    assert (
        f"Backfill: #{waiting.id} instock.moves 2026-12-01T00:00Z..2026-12-02T00:00Z "
        "requested (dry run): 0 steps, 0 missing, 0 changed, 0 applied"
    ) in out
    assert "dsorder.pull" not in "".join(ln for ln in out.splitlines() if "Backfill" in ln)
    report = json.loads(run_status(config, "--json").output)
    assert [(b["id"], b["status"]) for b in report["backfills"]] == [(waiting.id, "requested")]
