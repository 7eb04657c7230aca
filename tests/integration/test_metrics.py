"""The metrics after a demo-like run: the order loop against the Instock and DSOrder
simulators over loopback HTTP, a real state DB, then the node_exporter textfile and
`GET /metrics` scraped and parsed with prometheus_client's own parser.

Counters are process-wide (as prometheus_client keeps them), so the in-process ones are
asserted as the growth over the test; the state DB's gauges are asserted whole.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import syncd.jobs
from syncd import metrics
from syncd.clock import utcnow
from syncd.config import Settings
from syncd.jobs import REGISTRY
from syncd.jobs.runner import run_job
from syncd.metrics.expose import Exposure
from syncd.sandbox.base import ManualClock
from syncd.sandbox.dsorder import DSOrderSim
from syncd.sandbox.instock import InstockSim
from syncd.state import Store
from tests.configs import FAST_BACKOFF, connector_for, fast_retry, sim_settings
from tests.integration.jobkit import drop, query

ZONE = "Europe/Amsterdam"
SUBMITTED_ROUTE = "GET /orders/submitted"
LOOP_JOBS = ("dsorder.pull", "outbox.send", "dsorder.progress", "outbox.send")
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def ins() -> Iterator[InstockSim]:
    with InstockSim(seed=21, articles=30, retry_after=0) as sim:
        yield sim


@pytest.fixture
def ds() -> Iterator[DSOrderSim]:
    with DSOrderSim(seed=11, clock=ManualClock(), tz=ZONE, retry_after=0) as sim:
        yield sim


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parse(text: str) -> Samples:
    """Every sample of an exposition, by name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def counter(name: str, **labels: str) -> float:
    """An in-process counter's value now (0 before its first increment)."""
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def run(settings: Settings, job: str, expect: str = "ok") -> None:
    result = run_job(REGISTRY[job], settings, trigger="test")
    assert result.status == expect, result.error


def cycle(settings: Settings) -> None:
    for job in LOOP_JOBS:
        run(settings, job)


@pytest.fixture
def loop_settings(tmp_path: Path, ins: InstockSim, ds: DSOrderSim) -> Settings:
    bounds = {"retry": fast_retry(4), "timeouts": {"connect": 2, "read": 5}}
    settings = sim_settings(
        tmp_path,
        {
            **connector_for(ins, **bounds),
            **connector_for(ds, **bounds),
        },
        daemon={"site_timezone": ZONE},
        outbox={**FAST_BACKOFF, "max_attempts": 100},
        metrics={"textfile": str(tmp_path / "textfile" / "syncd.prom"), "listen": "127.0.0.1:1"},
    )
    return settings.model_copy(
        update={
            "metrics": settings.metrics.model_copy(update={"listen": f"127.0.0.1:{free_port()}"})
        }
    )


def test_textfile_and_endpoint_after_an_order_loop(
    loop_settings: Settings, ins: InstockSim, ds: DSOrderSim, tmp_path: Path
) -> None:
    """After pull -> create -> pick -> fulfil -> close (one order), a held order and a
    pending create, both exposures hold the same families, with runs counted by status,
    the outbox depth equal to the pending intents, the held order's reject and alert, the
    order loop by state with its done-to-closed time, and HTTP requests, retries and
    retries counted per connector."""
    cfg = loop_settings
    before = {
        "pull_ok": counter("syncd_runs_total", job="dsorder.pull", status="ok"),
        "send_ok": counter("syncd_runs_total", job="outbox.send", status="ok"),
        "pull_failed": counter("syncd_runs_total", job="dsorder.pull", status="failed"),
        "ds_2xx": counter(
            "syncd_http_requests_total", connector="dsorder", status_class="2xx", outcome="ok"
        ),
        "ds_5xx": counter(
            "syncd_http_requests_total",
            connector="dsorder",
            status_class="5xx",
            outcome="retryable",
        ),
        "ds_retries": counter("syncd_http_retries_total", connector="dsorder"),
        "queued_instock": counter("syncd_outbox_intents_queued_total", destination="instock"),
        "sent_instock": counter(
            "syncd_outbox_intents_sent_total", destination="instock", how="sent"
        ),
        "pulled": counter("syncd_rows_pulled_total", job="dsorder.pull"),
        "durations": counter("syncd_run_duration_seconds_count", job="dsorder.pull"),
    }
    articles = sorted(a for a in ins.state.articles if ins.stock(a).free >= 30)
    drop(
        cfg,
        "articles",
        "article_id,name\n" + "".join(f"{a},Article {a}\n" for a in articles),
    )
    a, b = articles[:2]
    closing = ds.submit_order(lines=[(a, 2), (b, 1)])
    ds.submit_order(lines=[("NOT-IN-CATALOG", 1)])  # held: a reject and an alert
    ds.faults.script(SUBMITTED_ROUTE, ["503"])  # one retried answer
    cycle(cfg)
    assert ins.advance_order(f"DS-{closing}") == "reserved"
    assert ins.advance_order(f"DS-{closing}") == "done"
    cycle(cfg)
    assert query(cfg, "SELECT state FROM dsorder_orders WHERE order_id = ?", [closing]) == [
        {"state": "closed"}
    ]
    ds.submit_order(lines=[(a, 1)])
    run(cfg, "dsorder.pull")  # its create waits in the outbox: depth 1

    exposure = Exposure(lambda: cfg)
    exposure.write_textfile()
    exposure.start_server()
    try:
        assert exposure.server is not None
        base = f"http://127.0.0.1:{exposure.server.port}"
        answer = httpx.get(f"{base}/metrics", timeout=10)
        other = httpx.get(f"{base}/favicon.ico", timeout=10)
    finally:
        exposure.close()
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert other.status_code == 404

    textfile = cfg.metrics.textfile
    assert textfile is not None
    scraped = {"textfile": parse(textfile.read_text()), "http": parse(answer.text)}
    for where, samples in scraped.items():
        names = {name for name, _labels in samples}
        for family in (
            "syncd_runs_total",
            "syncd_run_duration_seconds_bucket",
            "syncd_job_last_success_timestamp_seconds",
            "syncd_outbox_pending_intents",
            "syncd_outbox_oldest_pending_age_seconds",
            "syncd_rejects_open",
            "syncd_alerts_open",
            "syncd_checkpoint_lag_seconds",
            "syncd_http_requests_total",
            "syncd_http_request_duration_seconds_bucket",
            "syncd_dsorder_orders",
            "syncd_dsorder_done_to_closed_seconds_count",
            "syncd_state_db_up",
        ):
            assert family in names, (where, family)
        assert value(samples, "syncd_state_db_up") == 1.0

        # Runs by job and status, counted in-process.
        pulls_ok = value(samples, "syncd_runs_total", job="dsorder.pull", status="ok") or 0
        assert pulls_ok - before["pull_ok"] == 3, where
        sends = value(samples, "syncd_runs_total", job="outbox.send", status="ok") or 0
        assert sends - before["send_ok"] == 4, where
        failed = value(samples, "syncd_runs_total", job="dsorder.pull", status="failed") or 0
        assert failed == before["pull_failed"], where
        timed = value(samples, "syncd_run_duration_seconds_count", job="dsorder.pull") or 0
        assert timed - before["durations"] == 3, where

        # The outbox depth is what the state DB holds pending, per destination.
        pending = query(
            cfg,
            "SELECT destination, count(*) AS n FROM outbox WHERE status = 'pending' "
            "GROUP BY destination",
        )
        assert pending == [{"destination": "instock", "n": 1}]
        assert value(samples, "syncd_outbox_pending_intents", destination="instock") == 1.0
        age = value(samples, "syncd_outbox_oldest_pending_age_seconds", destination="instock")
        assert age is not None
        assert 0 <= age < 60

        # Intents: queued per destination (two creates for instock), sent.
        queued = value(samples, "syncd_outbox_intents_queued_total", destination="instock")
        assert (queued or 0) - before["queued_instock"] == 2, where
        sent = value(samples, "syncd_outbox_intents_sent_total", destination="instock", how="sent")
        assert (sent or 0) - before["sent_instock"] == 1, where
        assert (
            value(samples, "syncd_outbox_intents_sent_total", destination="dsorder", how="sent")
            or 0
        ) >= 2  # fulfil and close

        # What needs an operator: the held order's line reject and its alert.
        assert value(samples, "syncd_rejects_open", source="dsorder:lines") == 1.0
        assert value(samples, "syncd_alerts_open", kind="dsorder_order_held") == 1.0

        # The order loop, from the mirror tables.
        assert value(samples, "syncd_dsorder_orders", state="closed") == 1.0
        assert value(samples, "syncd_dsorder_orders", state="held") == 1.0
        assert value(samples, "syncd_dsorder_orders", state="created") == 1.0
        assert value(samples, "syncd_dsorder_orders", state="closing") == 0.0
        assert value(samples, "syncd_dsorder_done_to_closed_seconds_count") == 1.0
        assert value(samples, "syncd_dsorder_done_to_closed_seconds_bucket", le="+Inf") == 1.0

        # Last success and the watermark lag of the pull (a timestamp checkpoint).
        now = utcnow().timestamp()
        last_ok = value(samples, "syncd_job_last_success_timestamp_seconds", job="dsorder.pull")
        assert last_ok is not None
        assert now - 60 < last_ok <= now
        lag = value(samples, "syncd_checkpoint_lag_seconds", stream="dsorder.last_pull")
        assert lag is not None
        assert 0 <= lag < 60
        assert value(samples, "syncd_job_consecutive_failures", job="dsorder.pull") == 0.0
        assert value(samples, "syncd_job_last_run_status", job="dsorder.pull", status="ok") == 1

        # HTTP: requests by connector, status class and outcome; retries.
        ok = value(
            samples,
            "syncd_http_requests_total",
            connector="dsorder",
            status_class="2xx",
            outcome="ok",
        )
        assert (ok or 0) - before["ds_2xx"] >= 5, where  # 3 pulls, fulfil, close
        refused = value(
            samples,
            "syncd_http_requests_total",
            connector="dsorder",
            status_class="5xx",
            outcome="retryable",
        )
        assert (refused or 0) - before["ds_5xx"] == 1, where
        retries = value(samples, "syncd_http_retries_total", connector="dsorder") or 0
        assert retries - before["ds_retries"] == 1, where
        assert (
            value(
                samples,
                "syncd_http_requests_total",
                connector="instock",
                status_class="2xx",
                outcome="ok",
            )
            or 0
        ) > 0

        # Rows per job, from the runs' counts.
        pulled = value(samples, "syncd_rows_pulled_total", job="dsorder.pull") or 0
        assert pulled - before["pulled"] >= 3, where

    # No secret in either exposure.
    for text in (textfile.read_text(), answer.text):
        assert ins.token not in text
        assert ds.token not in text


def test_textfile_is_world_readable_under_a_strict_umask_and_replaced_whole(
    loop_settings: Settings,
) -> None:
    """The textfile gets `metrics.textfile_mode` (0644) whatever the process umask (syncd's
    is 077), is replaced by rename (a new inode, no temp file left behind), and a
    configured mode such as 0640 is applied as given."""
    cfg = loop_settings
    textfile = cfg.metrics.textfile
    assert textfile is not None
    old = os.umask(0o077)
    try:
        Exposure(lambda: cfg).write_textfile()
        first = textfile.stat()
        assert stat.S_IMODE(first.st_mode) == 0o644
        Exposure(lambda: cfg).write_textfile()
        second = textfile.stat()
        assert second.st_ino != first.st_ino  # renamed over, never rewritten in place
        strict = cfg.model_copy(
            update={"metrics": cfg.metrics.model_copy(update={"textfile_mode": 0o640})}
        )
        Exposure(lambda: strict).write_textfile()
        assert stat.S_IMODE(textfile.stat().st_mode) == 0o640
    finally:
        os.umask(old)
    assert sorted(p.name for p in textfile.parent.iterdir()) == ["syncd.prom"]


def test_unreadable_state_db_still_answers_with_db_up_zero(loop_settings: Settings) -> None:
    """A state DB that cannot be read makes `syncd_state_db_up 0`, not a failed write or
    scrape; the in-process metrics are still there."""
    cfg = loop_settings
    gone = cfg.model_copy(
        update={"daemon": cfg.daemon.model_copy(update={"state_dir": cfg.daemon.state_dir / "x"})}
    )
    Exposure(lambda: gone).write_textfile()
    assert gone.metrics.textfile is not None
    samples = parse(gone.metrics.textfile.read_text())
    assert value(samples, "syncd_state_db_up") == 0.0
    assert value(samples, "syncd_build_info", version=syncd.__version__) == 1.0
    assert not (gone.daemon.state_dir / "syncd.db").exists()  # a scrape creates no DB


def test_unwritable_textfile_is_logged_once_and_never_fails_a_run(
    loop_settings: Settings, tmp_path: Path
) -> None:
    """A textfile directory syncd cannot write is one `metrics_textfile_failed` log line
    (not one per run), and writing works again once the directory is fixed."""
    from structlog.testing import capture_logs

    blocker = tmp_path / "blocked"
    blocker.write_text("a file where the directory should be")
    cfg = loop_settings.model_copy(
        update={
            "metrics": loop_settings.metrics.model_copy(update={"textfile": blocker / "syncd.prom"})
        }
    )
    current = {"settings": cfg}
    exposure = Exposure(lambda: current["settings"])
    with capture_logs() as logs:
        exposure.write_textfile()
        exposure.write_textfile()
        current["settings"] = loop_settings
        exposure.write_textfile()
    events = [e["event"] for e in logs]
    assert events.count("metrics_textfile_failed") == 1
    assert "metrics_textfile_written_again" in events
    assert loop_settings.metrics.textfile is not None
    assert loop_settings.metrics.textfile.exists()


def test_state_reads_use_one_snapshot_and_leave_no_transaction(loop_settings: Settings) -> None:
    """Collecting twice in a row works (the read transaction is closed each time) and a
    writer can commit in between."""
    cfg = loop_settings
    exposure = Exposure(lambda: cfg)
    exposure.write_textfile()
    with Store.open(cfg.db_path, migrate=False) as store, store.transaction():
        store.open_alert("auth", "refused", subject="instock")
    exposure.write_textfile()
    assert cfg.metrics.textfile is not None
    samples = parse(cfg.metrics.textfile.read_text())
    assert value(samples, "syncd_alerts_open", kind="auth") == 1.0


def test_a_taken_metrics_port_stops_the_start_naming_the_key(loop_settings: Settings) -> None:
    """`metrics.listen` on a port another process holds is a configuration error (78)
    naming the key, raised before the scheduler starts."""
    from syncd.daemon import Daemon
    from syncd.errors import ConfigError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = loop_settings.model_copy(
            update={
                "metrics": loop_settings.metrics.model_copy(update={"listen": f"127.0.0.1:{port}"})
            }
        )
        daemon = Daemon(cfg, None)
        with pytest.raises(ConfigError, match=r"metrics.listen = '127.0.0.1:\d+': cannot listen"):
            daemon._start_metrics()
        assert daemon.metrics.server is None


def test_a_count_that_fails_never_fails_the_run(
    loop_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading back a run's intents for the metrics can meet a busy DB: the run still ends
    ok, counted, with one `metrics_not_counted` line."""
    import sqlite3

    from structlog.testing import capture_logs

    from syncd.state import queries

    def busy(_store: Store, _run_id: str) -> dict[str, int]:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(queries, "queued_by_destination", busy)
    before = counter("syncd_runs_total", job="state.housekeeping", status="ok")
    with capture_logs() as logs:
        run(loop_settings, "state.housekeeping")
    assert counter("syncd_runs_total", job="state.housekeeping", status="ok") == before + 1
    assert [e["event"] for e in logs].count("metrics_not_counted") == 1
