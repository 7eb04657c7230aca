"""Logging and the job runner: JSON lines, job context on every event, no secrets, failures kept."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from apscheduler.schedulers.background import BackgroundScheduler

from syncd.config import Schedule, Settings, load_settings
from syncd.daemon import Daemon
from syncd.errors import CONNECTOR_STOP_ALERTS
from syncd.jobs.base import JobContext, JobSpec
from syncd.jobs.runner import run_job
from syncd.logs import configure_logging, redactor
from syncd.state import NewIntent, Store

SECRET = "pa55-word-XYZ"


@pytest.fixture
def log_stream() -> io.StringIO:
    stream = io.StringIO()
    configure_logging("debug", "auto", stream=stream)
    redactor.set_secrets([SECRET])
    return stream


def events(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def spec(run: Any, name: str = "test.job") -> JobSpec:
    return JobSpec(name=name, run=run, description="t", default_schedule=Schedule(interval=60))


def test_job_events_are_json_with_job_and_run_id(
    settings: Settings, store: Store, log_stream: io.StringIO
) -> None:
    """Off a TTY every line is JSON, and each event from a job names the job and its run."""

    def run(ctx: JobContext) -> None:
        ctx.log.info("pulled_page", rows=3)
        ctx.counts["pulled"] += 3

    result = run_job(spec(run), settings)
    lines = events(log_stream)
    job_lines = [e for e in lines if e["event"] in ("pulled_page", "job_finished")]
    assert len(job_lines) == 2
    assert all(e["job"] == "test.job" and e["run_id"] == result.run_id for e in job_lines)
    summary = job_lines[-1]
    assert summary["status"] == "ok"
    assert summary["pulled"] == 3
    row = store.query("SELECT * FROM runs WHERE run_id = ?", [result.run_id])[0]
    assert (row["status"], row["pulled"]) == ("ok", 3)


def test_no_secret_reaches_the_log(
    settings: Settings, store: Store, log_stream: io.StringIO
) -> None:
    """Secrets in messages, fields, headers or exceptions are replaced before writing."""

    def run(ctx: JobContext) -> None:
        ctx.log.info(f"connecting with {SECRET}", headers={"Authorization": f"Bearer {SECRET}"})
        ctx.log.info("form", body=f"grant_type=password&password={SECRET}&x=1")
        raise RuntimeError(f"remote said: token {SECRET} invalid")

    result = run_job(spec(run), settings)
    assert result.status == "crashed"
    text = log_stream.getvalue()
    assert SECRET not in text
    assert "**********" in text


def test_crashed_job_is_recorded_and_does_not_raise(
    settings: Settings, store: Store, log_stream: io.StringIO
) -> None:
    """A job that raises an unexpected exception is recorded as crashed with its error and
    traceback; the caller carries on."""

    def run(ctx: JobContext) -> None:
        raise KeyError("missing")

    result = run_job(spec(run), settings)
    assert (result.status, result.error) == ("crashed", "KeyError: 'missing'")
    row = store.query("SELECT status, error FROM runs WHERE run_id = ?", [result.run_id])[0]
    assert row["status"] == "crashed"
    first, *trace = row["error"].splitlines()
    assert first == "KeyError: 'missing'"
    assert trace[0] == "Traceback (most recent call last):"
    assert any("in run" in line for line in trace)


def test_a_crash_ends_with_one_job_finished_line_holding_the_traceback(
    settings: Settings, store: Store, log_stream: io.StringIO
) -> None:
    """A crash logs what any run logs: one job_finished line (level error, status
    crashed), the traceback in one field of it, redacted like the rest; no other line."""

    def run(ctx: JobContext) -> None:
        ctx.log.info("working")
        {}["key-" + SECRET]  # a KeyError: the bug under test

    result = run_job(spec(run), settings)
    lines = [e for e in events(log_stream) if e.get("run_id") == result.run_id]
    assert [e["event"] for e in lines] == ["working", "job_finished"]
    finished = lines[-1]
    assert (finished["status"], finished["level"]) == ("crashed", "error")
    assert finished["error"].startswith("KeyError: ")
    assert finished["traceback"].startswith("Traceback (most recent call last):")
    assert finished["traceback"].splitlines()[-1].startswith("KeyError: ")
    assert "exception" not in finished
    assert SECRET not in log_stream.getvalue()


def test_dry_run_reports_intents_and_changes_nothing(
    settings: Settings, store: Store, log_stream: io.StringIO
) -> None:
    """A dry run prints what would be pushed, and leaves no intent, checkpoint or run row
    behind."""

    def run(ctx: JobContext) -> None:
        ctx.store.commit_batch(
            checkpoint=("stream", "2"),
            intents=[NewIntent("dest", "create", "o1", "create:o1", {"id": "o1"})],
            run_id=ctx.run_id,
        )

    store.set_checkpoint("stream", "1")
    result = run_job(spec(run), settings, dry_run=True)
    assert result.status == "dry-run"
    assert [i["order_key"] for i in result.intents] == ["o1"]
    assert store.get_checkpoint("stream") == "1"
    assert store.scalar("SELECT count(*) FROM outbox") == 0
    assert store.scalar("SELECT count(*) FROM runs") == 0  # not even a run row


@pytest.mark.parametrize("kind", CONNECTOR_STOP_ALERTS)
def test_job_is_skipped_while_its_connector_is_stopped(
    make_settings: Any, log_stream: io.StringIO, kind: str
) -> None:
    """After an auth failure (or a site of the other environment, or one the token does not
    see) the connector's jobs are skipped, saying which alert stops them, until a reload
    clears the alert."""
    settings = make_settings()
    with Store.open(settings.db_path) as store:
        store.open_alert(kind, "refused", subject="instock")
    called = []
    job = JobSpec(
        name="x.job",
        run=lambda ctx: called.append(1),
        description="t",
        default_schedule=Schedule(interval=60),
        connectors=("instock",),
    )
    skipped = run_job(job, settings)
    assert skipped.status == "skipped"
    assert f"instock (alert {kind})" in (skipped.error or "")
    assert called == []


@pytest.mark.parametrize("kind", CONNECTOR_STOP_ALERTS)
def test_a_reload_clears_every_alert_that_stops_a_connector(tmp_path: Path, kind: str) -> None:
    """SIGHUP gives a stopped connector another try, whatever stopped it; other alerts stay."""
    config = tmp_path / "syncd.toml"
    config.write_text(f"[daemon]\nstate_dir = {json.dumps(str(tmp_path / 'state'))}\n")
    settings = load_settings(config)
    with Store.open(settings.db_path) as store:
        store.open_alert(kind, "stopped", subject="instock")
        store.open_alert("pagination", "too many pages", subject="instock.inventory")
    daemon = Daemon(settings, config)
    daemon.scheduler = BackgroundScheduler()
    daemon.handle_sighup()
    with Store.open(settings.db_path) as store:
        assert [a["kind"] for a in store.open_alerts()] == ["pagination"]
