"""`syncd health` beside a real `syncd run`: a running daemon counts as running (found by
the lock it holds, not by its pid file), a stopped one is critical."""

from __future__ import annotations

import signal

import pytest

from tests.system.conftest import wait_until

pytestmark = pytest.mark.system


def test_health_sees_the_running_daemon(spawn, notify, write_config, run_cli) -> None:
    """0 with the daemon's pid while it runs; 2 (daemon not running) once it stopped."""
    config = write_config()
    daemon = spawn(config)
    notify.wait_for("READY=1")
    daemon.wait_event("job_finished")

    def healthy():
        result = run_cli("health", "--config", str(config))
        return result if result.returncode == 0 else None

    result = wait_until(healthy, 10, "syncd health to exit 0 beside the daemon")
    assert result.stdout.startswith("SYNCD OK - ")
    assert f"running (pid {daemon.pid}, up " in result.stdout

    daemon.send(signal.SIGTERM)
    assert daemon.wait_exit(10) == 0
    stopped = run_cli("health", "--config", str(config))
    assert stopped.returncode == 2, stopped.stdout + stopped.stderr
    assert stopped.stdout.startswith("SYNCD CRITICAL - daemon: not running")
    ignored = run_cli("health", "--no-daemon", "--config", str(config))
    assert ignored.returncode == 0, ignored.stdout
