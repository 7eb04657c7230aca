"""Metrics: the `[metrics]` config, the state families as a pure function of DB rows, and
the HTTP client's counting of requests, outcomes, retries and rate-limit waits."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import respx

from syncd import metrics
from syncd.config import ConnectorConfig, Settings
from syncd.errors import AuthError, PermanentError, RetryableError
from syncd.http import build_client
from syncd.metrics.state import StateRows, families
from tests.unit.test_check_config import check_config, write_config

BASE = "https://metrics-remote.example.com"
NOW = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)


def samples(rows: StateRows) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in families(rows, NOW)
        for s in family.samples
    }


# --- config ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "key", "reason"),
    [
        pytest.param(
            'listen = "0.0.0.0:9464"',
            "metrics.listen = '0.0.0.0:9464'",
            "metrics.allow_non_loopback = true",
            id="non-loopback",
        ),
        pytest.param('listen = "9464"', "metrics.listen", "not host:port", id="no-host"),
        pytest.param(
            'listen = "127.0.0.1:70000"', "metrics.listen", "from 1 to 65535", id="bad-port"
        ),
        pytest.param('textfile = "syncd.prom"', "metrics.textfile", "absolute", id="relative"),
        pytest.param('textfile = "/tmp/syncd.txt"', "metrics.textfile", ".prom", id="suffix"),
        pytest.param('textfile_mode = "0755"', "metrics.textfile_mode", "execute", id="exec"),
        pytest.param('textfile_mode = "rw"', "metrics.textfile_mode", "octal", id="not-octal"),
        pytest.param('listen_on = "x"', "metrics.listen_on", "", id="unknown-key"),
    ],
)
def test_check_config_refuses_a_bad_metrics_section(
    tmp_path: Path, toml: str, key: str, reason: str
) -> None:
    """A bad `[metrics]` value exits 78 naming the key and the reason."""
    result = check_config(write_config(tmp_path, f"[metrics]\n{toml}\n"))
    assert result.exit_code == 78, result.output
    assert key in result.stderr
    assert reason in result.stderr


def test_check_config_names_an_unwritable_textfile_directory(tmp_path: Path) -> None:
    """A textfile whose directory cannot be created or written is refused by key (78)."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = check_config(
        write_config(tmp_path, f'[metrics]\ntextfile = "{blocker}/node/syncd.prom"\n')
    )
    assert result.exit_code == 78, result.output
    assert "metrics.textfile" in result.stderr
    assert "not a directory" in result.stderr


def test_metrics_defaults_and_opt_ins() -> None:
    """Off by default; loopback (v4, v6, localhost) is accepted as is, another address only
    with `allow_non_loopback`; the mode reads as octal and prints as octal."""
    assert Settings().metrics.textfile is None
    assert Settings().metrics.listen is None
    for listen in ("127.0.0.1:9464", "[::1]:9464", "localhost:9464"):
        assert Settings(metrics={"listen": listen}).metrics.listen == listen
    open_bind = Settings(metrics={"listen": "0.0.0.0:9464", "allow_non_loopback": True})
    assert open_bind.metrics.listen == "0.0.0.0:9464"
    config = Settings(metrics={"textfile": "/var/lib/node/syncd.prom", "textfile_mode": "0640"})
    assert config.metrics.textfile_mode == 0o640
    assert config.model_dump(mode="json")["metrics"]["textfile_mode"] == "0640"
    assert Settings().metrics.textfile_mode == 0o644


# --- state families ----------------------------------------------------------------------


def test_state_families_from_rows() -> None:
    """Each DB row becomes its gauge: last success and status per job, failures in a row,
    outbox depth and oldest age, open rejects and alerts, and a lag only for streams whose
    checkpoint is a timestamp (a cursor has none, but every stream has its update time)."""
    rows = StateRows(
        runs=[
            {
                "job": "instock.moves",
                "last_status": "failed",
                "last_finished_at": "2026-11-23T09:59:00.000Z",
                "last_ok_at": "2026-11-23T09:00:00.000Z",
                "failures_since_ok": 3,
            },
            {
                "job": "dsorder.pull",
                "last_status": "failed",
                "last_finished_at": "2026-11-23T09:59:30.000Z",
                "last_ok_at": None,
                "failures_since_ok": 2,
            },
        ],
        outbox=[
            {
                "destination": "dsorder",
                "n": 4,
                "oldest": "2026-11-23T09:50:00.000Z",
                "retrying": 1,
                "rejected": 2,
            },
            {"destination": "host", "n": 0, "oldest": None, "retrying": 0, "rejected": 1},
        ],
        rejects=[{"source": "host:articles", "n": 7}],
        alerts=[{"kind": "auth", "n": 1}],
        checkpoints=[
            {
                "stream": "instock.moves.watermark",
                "value": "2026-11-23T09:45:00.000Z",
                "updated_at": "2026-11-23T09:46:00.000Z",
            },
            {
                "stream": "instock.inventory.scan",
                "value": '{"scan": 3, "cursor": "abc"}',
                "updated_at": "2026-11-23T09:40:00.000Z",
            },
            {"stream": "dsorder.catalog_load_id", "value": "17", "updated_at": "bad"},
        ],
        orders=[{"state": "closed", "n": 5}, {"state": "held", "n": 1}],
        done_to_closed={
            "n": 5,
            "total": 100.0,
            **{f"le_{i}": min(5, i + 1) for i in range(12)},
        },
    )
    got = samples(rows)
    at = NOW.timestamp()
    assert got[("syncd_job_last_success_timestamp_seconds", (("job", "instock.moves"),))] == (
        at - 3600
    )
    assert ("syncd_job_last_success_timestamp_seconds", (("job", "dsorder.pull"),)) not in got
    assert got[("syncd_job_consecutive_failures", (("job", "instock.moves"),))] == 3
    status = "syncd_job_last_run_status"
    assert got[(status, (("job", "instock.moves"), ("status", "failed")))] == 1
    assert got[(status, (("job", "instock.moves"), ("status", "ok")))] == 0
    assert got[("syncd_outbox_pending_intents", (("destination", "dsorder"),))] == 4
    assert got[("syncd_outbox_oldest_pending_age_seconds", (("destination", "dsorder"),))] == 600
    assert got[("syncd_outbox_oldest_pending_age_seconds", (("destination", "host"),))] == 0
    assert got[("syncd_outbox_retrying_intents", (("destination", "dsorder"),))] == 1
    assert got[("syncd_outbox_rejected_intents", (("destination", "host"),))] == 1
    assert got[("syncd_rejects_open", (("source", "host:articles"),))] == 7
    assert got[("syncd_alerts_open", (("kind", "auth"),))] == 1
    lag = "syncd_checkpoint_lag_seconds"
    assert got[(lag, (("stream", "instock.moves.watermark"),))] == 900
    assert (lag, (("stream", "instock.inventory.scan"),)) not in got
    assert (lag, (("stream", "dsorder.catalog_load_id"),)) not in got
    moved = "syncd_checkpoint_updated_timestamp_seconds"
    assert got[(moved, (("stream", "instock.inventory.scan"),))] == at - 1200
    assert got[("syncd_dsorder_orders", (("state", "closing"),))] == 0
    assert got[("syncd_dsorder_orders", (("state", "closed"),))] == 5
    hist = "syncd_dsorder_done_to_closed_seconds"
    assert got[(hist + "_bucket", (("le", "5.0"),))] == 1
    assert got[(hist + "_bucket", (("le", "+Inf"),))] == 5
    assert got[(hist + "_sum", ())] == 100.0


def test_state_families_of_an_empty_db() -> None:
    """A fresh DB: every order state at 0 and an empty done-to-closed histogram, no job."""
    got = samples(
        StateRows(done_to_closed={"n": 0, "total": 0.0, **{f"le_{i}": 0 for i in range(12)}})
    )
    assert got[("syncd_dsorder_orders", (("state", "held"),))] == 0
    assert got[("syncd_dsorder_done_to_closed_seconds_count", ())] == 0
    assert not [name for name, _ in got if name.startswith("syncd_job_")]


# --- HTTP --------------------------------------------------------------------------------


def config(**overrides: object) -> ConnectorConfig:
    data: dict[str, object] = {
        "enabled": True,
        "base_url": BASE,
        "token": "tok-SECRET-1234",
        "retry": {"max_attempts": 3, "initial_backoff": 1, "max_backoff": 8, "max_elapsed": 600},
    }
    data.update(overrides)
    return ConnectorConfig.model_validate(data)


def requests_of(connector: str) -> dict[tuple[str, str], float]:
    return {
        (s.labels["status_class"], s.labels["outcome"]): s.value
        for family in metrics.REGISTRY.collect()
        if family.name == "syncd_http_requests"
        for s in family.samples
        if s.name == "syncd_http_requests_total" and s.labels["connector"] == connector
    }


@respx.mock
def test_http_requests_are_counted_by_status_class_and_outcome() -> None:
    """Each exchange counts once with its status class and outcome: a 503 retried then a
    200, a 400, a 401 and a refused connection; the retry's wait (the remote's Retry-After)
    is counted with it, and every exchange is timed."""
    name = "metrics-test-a"
    respx.get(f"{BASE}/items").mock(
        side_effect=[
            httpx.Response(503, headers={"Retry-After": "2"}),
            httpx.Response(200, json=[]),
        ]
    )
    respx.get(f"{BASE}/bad").mock(return_value=httpx.Response(400, json={"message": "no"}))
    respx.get(f"{BASE}/auth").mock(return_value=httpx.Response(401))
    respx.get(f"{BASE}/down").mock(side_effect=httpx.ConnectError("refused"))
    client = build_client(name, config(), sleep=lambda _s: None)
    client.request("GET", "/items")
    with pytest.raises(PermanentError):
        client.request("GET", "/bad")
    with pytest.raises(AuthError):
        client.request("GET", "/auth")
    with pytest.raises(RetryableError):
        client.request("GET", "/down", retry=False)
    assert requests_of(name) == {
        ("5xx", "retryable"): 1,
        ("2xx", "ok"): 1,
        ("4xx", "permanent"): 1,
        ("4xx", "auth"): 1,
        ("none", "connection"): 1,
    }
    assert metrics.REGISTRY.get_sample_value("syncd_http_retries_total", {"connector": name}) == 1
    assert (
        metrics.REGISTRY.get_sample_value(
            "syncd_http_retry_wait_seconds_total", {"connector": name}
        )
        == 2.0
    )
    assert (
        metrics.REGISTRY.get_sample_value(
            "syncd_http_request_duration_seconds_count", {"connector": name}
        )
        == 5
    )


@respx.mock
def test_rate_limit_waits_are_counted() -> None:
    """A request held back by the connector's token bucket counts one wait and its seconds."""
    name = "metrics-test-b"
    respx.get(f"{BASE}/items").mock(return_value=httpx.Response(200, json=[]))
    waits: list[float] = []
    client = build_client(
        name, config(rate_limit={"per_second": 2, "burst": 1}), sleep=waits.append
    )
    for _ in range(3):
        client.request("GET", "/items")
    assert len(waits) == 2
    assert (
        metrics.REGISTRY.get_sample_value("syncd_http_rate_limit_waits_total", {"connector": name})
        == 2
    )
    waited = metrics.REGISTRY.get_sample_value(
        "syncd_http_rate_limit_wait_seconds_total", {"connector": name}
    )
    assert waited == pytest.approx(sum(waits))


def test_status_class_of_odd_statuses() -> None:
    """No answer and a status outside 100..599 are `none`: the label stays bounded."""
    assert [metrics.status_class(s) for s in (None, 99, 204, 302, 404, 503, 600)] == [
        "none",
        "none",
        "2xx",
        "3xx",
        "4xx",
        "5xx",
        "none",
    ]


# --- the state DB reads ------------------------------------------------------------------


def test_job_run_stats_reads_last_status_last_success_and_failures_in_a_row(
    tmp_path: Path,
) -> None:
    """Per job, from index seeks: the last finished run (a running one does not count),
    the last success, and the failures after it (all of them when none succeeded); an
    outbox destination with nothing waiting reads as 0, not absent."""
    from syncd.state import NewIntent, Store, queries

    with Store.open(tmp_path / "syncd.db") as store:
        history = {
            "a.one": ["ok", "failed", "ok", "failed", "interrupted", "failed", "running"],
            "b.two": ["failed", "failed"],
            "c.three": ["failed", "ok", "skipped"],
        }
        for job, statuses in history.items():
            for n, status in enumerate(statuses):
                run_id = f"{job}-{n}"
                store.start_run(job, run_id, "test")
                if status != "running":
                    store.finish_run(run_id, status, {})  # type: ignore[arg-type]
        with store.transaction():
            store.add_intents([NewIntent("host", "moves", "k", "i1", {})])
            store.add_intents([NewIntent("dsorder", "close", "k", "i2", {})])
        store.db.execute("UPDATE outbox SET status = 'sent' WHERE destination = 'host'")
        stats = {r["job"]: r for r in queries.job_run_stats(store)}
        outbox = {r["destination"]: r for r in queries.outbox_by_destination(store)}
    assert {j: (r["last_status"], r["failures_since_ok"]) for j, r in stats.items()} == {
        "a.one": ("failed", 2),
        "b.two": ("failed", 2),
        "c.three": ("skipped", 0),
    }
    assert stats["b.two"]["last_ok_at"] is None
    assert stats["a.one"]["last_ok_at"] is not None
    assert (outbox["host"]["n"], outbox["host"]["oldest"]) == (0, None)
    assert outbox["dsorder"]["n"] == 1


def test_once_writes_the_textfile_and_a_dry_run_does_not(tmp_path: Path) -> None:
    """`syncd once JOB` leaves the textfile with its run counted; `--dry-run` changes
    nothing anywhere, the textfile included."""
    textfile = tmp_path / "node" / "syncd.prom"
    config = write_config(tmp_path, f'[metrics]\ntextfile = "{textfile}"\n')
    dry = check_config(config, "once", "--dry-run", "state.housekeeping")
    assert dry.exit_code == 0, dry.output
    assert not textfile.exists()
    real = check_config(config, "once", "state.housekeeping")
    assert real.exit_code == 0, real.output
    text = textfile.read_text()
    assert 'syncd_runs_total{job="state.housekeeping",status="ok"}' in text
    assert "syncd_state_db_up 1.0" in text


def test_a_reload_applies_a_new_textfile_and_says_listen_needs_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGHUP: a changed `metrics.textfile` is written from the next write on; a changed
    `metrics.listen` is named under `needs_restart` (the server keeps its socket)."""
    import json

    from apscheduler.schedulers.background import BackgroundScheduler
    from structlog.testing import capture_logs

    from syncd.config import load_settings
    from syncd.daemon import Daemon
    from syncd.state import Store

    config = tmp_path / "syncd.toml"
    state = json.dumps(str(tmp_path / "state"))

    def write(textfile: Path, port: int) -> None:
        config.write_text(
            f'[daemon]\nstate_dir = {state}\n[metrics]\ntextfile = "{textfile}"\n'
            f'listen = "127.0.0.1:{port}"\n'
        )

    write(tmp_path / "a" / "syncd.prom", 9464)
    settings = load_settings(config)
    Store.open(settings.db_path).close()
    daemon = Daemon(settings, config)
    daemon.scheduler = BackgroundScheduler()
    daemon.metrics.write_textfile()
    write(tmp_path / "b" / "syncd.prom", 9465)
    # The reload configures logging anew, which would take capture_logs' processor away.
    monkeypatch.setattr("syncd.daemon.configure_logging", lambda *_a, **_k: None)
    with capture_logs() as logs:
        daemon.handle_sighup()
    reloaded = [e for e in logs if e["event"] == "config_reloaded"]
    assert reloaded, logs
    assert reloaded[0]["needs_restart"] == ["metrics.listen"]
    daemon.metrics.write_textfile()
    assert (tmp_path / "a" / "syncd.prom").exists()
    assert (tmp_path / "b" / "syncd.prom").exists()
