"""`syncd demo` as a real process: every path reaches the summary within 25 seconds.

The demo starts the five simulators, writes the host inbox (catalog, stock,
orders and the planning feeds) and runs `syncd run` as its own child process.
The planning jobs run every few seconds from the start and are done within
about ten seconds of it, so a 25 s demo shows them finished; the order loop
closes DSOrder orders well within that too.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.system

DURATION = 25
_FOREIGN_ENV = ("CREDENTIALS_DIRECTORY", "STATE_DIRECTORY", "NOTIFY_SOCKET", "WATCHDOG_USEC")


def _line(summary: str, label: str) -> str:
    found = [line for line in summary.splitlines() if line.lstrip().startswith(label)]
    assert found, f"no {label!r} line in the summary:\n{summary}"
    return found[0]


def _number(pattern: str, text: str) -> int:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in {text!r}"
    return int(match.group(1))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    workdir = tmp_path_factory.mktemp("demo") / "run"
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("SYNCD_") and k not in _FOREIGN_ENV
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "syncd.cli",
            "demo",
            "--duration",
            str(DURATION),
            "--dir",
            str(workdir),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=DURATION + 30,
        check=False,
    )
    return done, workdir


def test_demo_exits_cleanly(demo: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    done, _workdir = demo
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert "syncd stopped with exit status 0" in done.stdout


def test_order_loop_and_host_outbox(demo: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    done, workdir = demo
    assert _number(r"closed (\d+)", _line(done.stdout, "DSOrder:")) >= 1
    outbox = _line(done.stdout, "Outbox:")
    assert "host files: none" not in outbox
    assert any(p.is_file() for p in (workdir / "host" / "outbox").iterdir())


def test_planning_section(demo: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    done, workdir = demo
    summary = done.stdout
    assert "Planning:" in summary
    assert _number(r"COMPLETED (\d+)", _line(summary, "import-jobs:")) >= 1
    accepted = _line(summary, "rows accepted/failed:")
    assert _number(r"catalog (\d+)/0", accepted) > 100
    # Every flow reaches the planning tool: the sample stock gives reorder points (else
    # inventory rows are held) and the demo opts in to weekly demand without a forecast.
    assert _number(r"inventory (\d+)/0", accepted) > 100
    assert _number(r"demand-history (\d+)/0", accepted) > 0
    assert "rows held back" not in summary
    netstock = _line(summary, "Netstock:")
    assert _number(r"complete (\d+)", netstock) >= 1
    assert "last status Complete (success)" in summary
    assert _number(r"master (\d+)/", _line(summary, "lines per model")) > 100
    pops = _line(summary, "pops journaled:")
    assert "po " in pops
    assert "netstock_po" in pops
    oregon = _line(summary, "Oregon SIOP:")
    assert _number(r"(\d+) items accepted", oregon) > 0
    assert _number(r"(\d+) rejects", oregon) >= 1

    # The summary agrees with the state DB.
    db = sqlite3.connect(workdir / "state" / "syncd.db")
    try:
        completed = db.execute(
            "SELECT count(*) FROM planning_import_jobs WHERE status = 'COMPLETED'"
        ).fetchone()[0]
        datasets = db.execute(
            "SELECT count(*) FROM netstock_exports WHERE state = 'complete' AND success = 1"
        ).fetchone()[0]
    finally:
        db.close()
    assert completed >= 1
    assert datasets >= 1
    assert list((workdir / "host" / "outbox").glob("netstock_po-*"))


def test_status_hint_runs_as_printed(demo: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    """The `status:` hint names a syncd that exists (the venv is not activated after the
    README's first command, so a bare `syncd` may not be found): pasted into a shell as
    printed, it shows the demo's state."""
    done, workdir = demo
    hint = _line(done.stdout, "status:").split("status:", 1)[1].strip()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")}
    env["PATH"] = "/usr/bin:/bin"  # no venv on the PATH
    shown = subprocess.run(
        ["/bin/sh", "-c", hint], capture_output=True, text=True, env=env, timeout=30, check=False
    )
    assert shown.returncode == 0, shown.stderr
    assert "Daemon: not running" in shown.stdout
    assert str(workdir) in hint


def test_metrics_textfile(demo: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    """The demo's daemon leaves its node_exporter textfile: whole, with runs counted by job
    and status, DSOrder orders closed, and HTTP requests to the simulators."""
    from prometheus_client.parser import text_string_to_metric_families

    done, workdir = demo
    textfile = workdir / "metrics" / "syncd.prom"
    assert str(textfile) in done.stdout
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(textfile.read_text())
        for s in family.samples
    }
    assert samples[("syncd_runs_total", (("job", "dsorder.pull"), ("status", "ok")))] >= 1
    assert samples[("syncd_dsorder_orders", (("state", "closed"),))] >= 1
    assert samples[("syncd_dsorder_done_to_closed_seconds_count", ())] >= 1
    assert samples[("syncd_state_db_up", ())] == 1
    requests = sum(
        v
        for (name, labels), v in samples.items()
        if name == "syncd_http_requests_total" and ("connector", "instock") in labels
    )
    assert requests > 0
