"""`syncd status` beside a real daemon: its pid, uptime and next runs, read from another
process; and not running once it stopped."""

from __future__ import annotations

import json
import signal

import pytest

from syncd.clock import parse_iso, utcnow

pytestmark = pytest.mark.system


def test_status_shows_the_running_daemon(spawn, notify, write_config, run_cli) -> None:
    """While `syncd run` holds the state directory, status names its pid and uptime and
    the housekeeping job's next run (every 1 h from start-up); after SIGTERM, not running."""
    config = write_config(housekeeping="1h")
    daemon = spawn(config)
    notify.wait_for("READY=1")
    daemon.wait_event("job_finished")
    shown = run_cli("status", "--json", "--config", str(config))
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert report["daemon"]["running"] is True
    assert report["daemon"]["pid"] == daemon.pid
    assert 0 <= report["daemon"]["uptime_s"] < 60
    housekeeping = next(j for j in report["jobs"] if j["job"] == "state.housekeeping")
    assert housekeeping["schedule"] == "every 1 h"
    assert housekeeping["status"] == "ok"
    started = parse_iso(report["daemon"]["started_at"])
    assert abs((parse_iso(housekeeping["next_run"]) - started).total_seconds() - 3600) < 2
    assert parse_iso(housekeeping["next_run"]) > utcnow()
    text = run_cli("status", "--config", str(config))
    assert f"Daemon: running, pid {daemon.pid}, up " in text.stdout
    daemon.send(signal.SIGTERM)
    assert daemon.wait_exit(timeout=10) == 0
    stopped = run_cli("status", "--config", str(config))
    assert "Daemon: not running" in stopped.stdout
