"""`syncd health`: the rules as tables of cases, then the command's exit status over real
state DBs in each state (healthy 0, degraded 1, critical 2, cannot check 3)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from freezegun import freeze_time

from syncd.cli import main
from syncd.config import HealthConfig, Schedule, load_settings
from syncd.errors import ConfigError
from syncd.health import (
    AlertFacts,
    HealthFacts,
    JobFacts,
    OutboxFacts,
    StreamFacts,
    evaluate,
    schedule_interval,
)
from syncd.state import Store
from syncd.state.store import NewIntent

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
POLICY = HealthConfig()


def ago(**delta: float) -> datetime:
    return NOW - timedelta(**delta)


def facts(**kw: object) -> HealthFacts:
    base: dict[str, object] = {"now": NOW, "state_db": True, "daemon_pid": 42}
    base["daemon_since"] = ago(hours=1)
    base.update(kw)
    return HealthFacts(**base)  # type: ignore[arg-type]


def job(**kw: object) -> JobFacts:
    base: dict[str, object] = {
        "name": "instock.orders",
        "interval_s": 300.0,
        "last_status": "ok",
        "last_ok_at": ago(minutes=1),
    }
    base.update(kw)
    return JobFacts(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("given", "policy", "level", "rule"),
    [
        pytest.param(facts(), POLICY, "ok", None, id="daemon-up-nothing-else"),
        pytest.param(facts(daemon_pid=None), POLICY, "critical", "daemon", id="daemon-down"),
        pytest.param(
            facts(daemon_pid=None),
            HealthConfig(expect_daemon=False),
            "ok",
            None,
            id="daemon-down-not-expected",
        ),
        pytest.param(facts(state_db=False), POLICY, "critical", "state_db", id="no-state-db"),
        pytest.param(facts(jobs=(job(),)), POLICY, "ok", None, id="job-fresh"),
        pytest.param(
            facts(jobs=(job(failures_in_row=2, last_status="failed"),)),
            POLICY,
            "ok",
            None,
            id="two-failures-under-three",
        ),
        pytest.param(
            facts(jobs=(job(failures_in_row=3, last_status="failed", last_error="boom"),)),
            POLICY,
            "degraded",
            "job_failures",
            id="three-failures",
        ),
        pytest.param(
            facts(jobs=(job(failures_in_row=10, last_status="crashed"),)),
            POLICY,
            "critical",
            "job_failures",
            id="ten-failures",
        ),
        pytest.param(
            facts(jobs=(job(failures_in_row=50, last_status="failed"),)),
            HealthConfig(failures_degraded=0, failures_critical=0),
            "ok",
            None,
            id="failure-rule-off",
        ),
        # 300 s x lag_factor 3 = 900 s; x lag_critical_factor 4 = 3600 s.
        pytest.param(
            facts(jobs=(job(last_ok_at=ago(seconds=899)),)), POLICY, "ok", None, id="lag-under"
        ),
        pytest.param(
            facts(jobs=(job(last_ok_at=ago(seconds=901)),)),
            POLICY,
            "degraded",
            "job_lag",
            id="lag-over",
        ),
        pytest.param(
            facts(jobs=(job(last_ok_at=ago(seconds=3601)),)),
            POLICY,
            "critical",
            "job_lag",
            id="lag-four-times-over",
        ),
        pytest.param(
            facts(jobs=(job(last_ok_at=ago(seconds=3601)),)),
            HealthConfig(lag_critical_factor=0),
            "degraded",
            "job_lag",
            id="lag-critical-off",
        ),
        pytest.param(
            facts(jobs=(job(interval_s=10.0, last_ok_at=ago(seconds=500)),)),
            POLICY,
            "ok",
            None,
            id="lag-min-10m-for-fast-jobs",
        ),
        pytest.param(
            facts(jobs=(job(last_ok_at=ago(seconds=130)),)),
            HealthConfig(lag={"instock.orders": 120}),
            "degraded",
            "job_lag",
            id="lag-per-job",
        ),
        pytest.param(
            facts(
                daemon_since=ago(hours=2),
                jobs=(job(last_ok_at=None, last_status=None, first_started_at=None),),
            ),
            POLICY,
            "critical",
            "job_lag",
            id="never-ran-since-daemon-start",
        ),
        pytest.param(
            facts(jobs=(job(name="outbox.send", last_ok_at=ago(days=9)),)),
            POLICY,
            "ok",
            None,
            id="sender-has-no-lag",
        ),
        pytest.param(
            facts(streams=(StreamFacts("instock.moves", ago(minutes=31)),)),
            HealthConfig(stream_lag={"instock.moves": 1800}),
            "degraded",
            "stream_lag",
            id="stream-lag",
        ),
        pytest.param(
            facts(streams=(StreamFacts("instock.moves", None),)),
            HealthConfig(stream_lag={"instock.moves": 60}),
            "critical",
            "stream_lag",
            id="stream-never-written",
        ),
        pytest.param(
            facts(outbox=(OutboxFacts("instock", 4, ago(minutes=59)),)),
            POLICY,
            "ok",
            None,
            id="outbox-young",
        ),
        pytest.param(
            facts(outbox=(OutboxFacts("instock", 4, ago(minutes=61)),)),
            POLICY,
            "degraded",
            "outbox_age",
            id="outbox-old",
        ),
        pytest.param(
            facts(outbox=(OutboxFacts("dsorder", 1, ago(hours=7)),)),
            POLICY,
            "critical",
            "outbox_age",
            id="outbox-very-old",
        ),
        pytest.param(
            facts(alerts=(AlertFacts(1, "auth", "instock", "401", "t"),)),
            POLICY,
            "critical",
            "alert",
            id="auth-alert",
        ),
        pytest.param(
            facts(alerts=(AlertFacts(1, "site_environment", "instock", "x", "t"),)),
            POLICY,
            "critical",
            "alert",
            id="connector-stop-alert",
        ),
        pytest.param(
            facts(alerts=(AlertFacts(1, "outbox_gave_up", "dsorder", "x", "t"),)),
            POLICY,
            "degraded",
            "alert",
            id="other-alert",
        ),
        pytest.param(
            facts(alerts=(AlertFacts(1, "outbox_gave_up", "dsorder", "x", "t"),)),
            HealthConfig(other_alerts="ok"),
            "ok",
            None,
            id="other-alert-ignored",
        ),
    ],
)
def test_rules(given: HealthFacts, policy: HealthConfig, level: str, rule: str | None) -> None:
    """Each rule decides its level from the facts and thresholds alone."""
    report = evaluate(given, policy)
    assert report.level == level
    assert report.exit_code == {"ok": 0, "degraded": 1, "critical": 2}[level]
    worst = report.problems[0].rule if report.problems else None
    assert worst == rule
    first = report.summary()
    assert first.startswith({"ok": "SYNCD OK", "degraded": "SYNCD WARNING"}.get(level, "SYNCD CR"))


def test_worst_finding_wins_and_summary_names_each_problem() -> None:
    """Degraded and critical together are critical; the first line names both problems."""
    report = evaluate(
        facts(
            jobs=(job(failures_in_row=4, last_status="failed"),),
            alerts=(AlertFacts(1, "auth", "instock", "token refused", "t"),),
        ),
        POLICY,
    )
    assert report.level == "critical"
    assert [f.rule for f in report.problems] == ["alert", "job_failures"]
    assert "alert auth instock" in report.summary()
    assert "instock.orders: failed 4 times in a row" in report.summary()


@pytest.mark.parametrize(
    ("schedule", "seconds"),
    [
        (Schedule(interval=300), 300.0),
        (Schedule(cron="*/15 * * * *"), 900.0),
        (Schedule(cron="0 2 * * *"), 86400.0),
        (Schedule(cron="0 6,18 * * 1-5"), 3 * 86400.0 - 12 * 3600),  # Fri 18:00 -> Mon 06:00
        (Schedule(), None),
    ],
)
def test_schedule_interval(schedule: Schedule, seconds: float | None) -> None:
    """A cron's interval is its longest gap between runs (a weekend for a weekday cron)."""
    assert schedule_interval(schedule, "Europe/Amsterdam", NOW) == seconds


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ("failures_degraded = 5\nfailures_critical = 2", "health.failures_critical"),
        ('outbox_age_degraded = "2h"\noutbox_age_critical = "1h"', "health.outbox_age_critical"),
        ("lag_factor = 0.5", "health.lag_factor"),
        ('lag_min = "soon"', "health.lag_min"),
        ('other_alerts = "loud"', "health.other_alerts"),
        ('[health.stream_lag]\n"instock.moves" = 0', "health.stream_lag"),
        ("expect_deamon = true", "health.expect_deamon: unknown key"),
    ],
)
def test_bad_health_config_names_the_key(tmp_path: Path, body: str, named: str) -> None:
    """A bad threshold is refused at load, naming its key and why."""
    path = tmp_path / "syncd.toml"
    path.write_text(f"[health]\n{body}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert named in str(caught.value)


# -- the command over real state DBs ---------------------------------------------


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "syncd.toml"
    path.write_text(
        f"""
[daemon]
state_dir = {json.dumps(str(tmp_path / "state"))}

[health]
expect_daemon = false

[jobs."host.inbox"]
enabled = false
""",
        encoding="utf-8",
    )
    return path


def health(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["health", "--config", str(config), *args])
    return result.exit_code, result.output


def run(store: Store, job: str, status: str, error: str | None = None) -> None:
    run_id = f"{job}-{status}-{datetime.now(UTC).timestamp()}"
    store.start_run(job, run_id, "schedule")
    store.finish_run(run_id, status, {}, error=error)  # type: ignore[arg-type]


@pytest.fixture
def state(tmp_path: Path, config: Path) -> Store:
    with Store.open(tmp_path / "state" / "syncd.db") as store:
        run(store, "state.housekeeping", "ok")
        return store


def test_healthy_state_exits_0(config: Path, state: Store) -> None:
    """A job that just succeeded, nothing pending, no alert: 0 and an OK first line."""
    code, output = health(config)
    assert code == 0, output
    assert output.splitlines()[0].startswith("SYNCD OK - ")
    assert "state.housekeeping" in output


def test_failing_job_exits_1(tmp_path: Path, config: Path, state: Store) -> None:
    """Three failed runs in a row (an interrupted one between them does not break the row)."""
    with Store.open(tmp_path / "state" / "syncd.db") as store:
        run(store, "state.housekeeping", "failed", "disk full")
        run(store, "state.housekeeping", "interrupted")
        run(store, "state.housekeeping", "failed", "disk full")
        code, _ = health(config)
        assert code == 0
        run(store, "state.housekeeping", "failed", "disk full")
    code, output = health(config)
    assert code == 1, output
    first = output.splitlines()[0]
    assert first.startswith("SYNCD WARNING - state.housekeeping: failed 3 times in a row")
    assert "disk full" in first


def test_open_auth_alert_exits_2(tmp_path: Path, config: Path, state: Store) -> None:
    """An open auth alert is critical, and resolving it makes syncd healthy again."""
    with Store.open(tmp_path / "state" / "syncd.db") as store:
        store.open_alert("auth", "instock refused the token (401)", subject="instock")
    code, output = health(config, "--json")
    assert code == 2
    report = json.loads(output)
    assert report["status"] == "critical"
    assert report["exit_code"] == 2
    assert any(c["rule"] == "alert" and c["level"] == "critical" for c in report["checks"])
    with Store.open(tmp_path / "state" / "syncd.db") as store:
        assert store.resolve_alerts("auth") == 1
    assert health(config)[0] == 0


def test_old_outbox_and_lag(tmp_path: Path, config: Path) -> None:
    """An intent pending for 2 h is degraded, for 7 h critical; a job not ok for 4 h (its
    threshold: 3 x 1 h) is degraded."""
    db = tmp_path / "state" / "syncd.db"
    with Store.open(db) as store:
        with freeze_time(datetime.now(UTC) - timedelta(hours=4)):
            run(store, "state.housekeeping", "ok")
        code, output = health(config)
        assert code == 1, output
        assert "job_lag" in output.splitlines()[1]
        run(store, "state.housekeeping", "ok")
        with freeze_time(datetime.now(UTC) - timedelta(hours=2)):
            store.add_intents([NewIntent("instock", "orders.create", "order:1", "k1", {})])
        code, output = health(config)
        assert code == 1, output
        assert "outbox instock: 1 pending, the oldest 2 h old" in output.splitlines()[0]
        with freeze_time(datetime.now(UTC) - timedelta(hours=7)):
            store.add_intents([NewIntent("dsorder", "close", "order:2", "k2", {})])
    code, output = health(config)
    assert code == 2, output
    assert "outbox dsorder" in output.splitlines()[0]


def test_daemon_expected_but_not_running_exits_2(config: Path, state: Store) -> None:
    """With a daemon expected (the default; --daemon here) and no lock holder: critical."""
    code, output = health(config, "--daemon")
    assert code == 2
    assert output.splitlines()[0].startswith("SYNCD CRITICAL - daemon: not running")


def test_missing_state_db_is_critical(config: Path) -> None:
    """syncd never ran with this config: critical, saying so."""
    code, output = health(config)
    assert code == 2
    assert "state DB: missing" in output.splitlines()[0]


def test_a_check_that_cannot_run_exits_3(tmp_path: Path) -> None:
    """A broken config is Nagios UNKNOWN (3), naming the key, never a false WARNING (1)."""
    path = tmp_path / "syncd.toml"
    path.write_text("[health]\nfailures_degraded = -1\n", encoding="utf-8")
    code, output = health(path)
    assert code == 3
    assert output.startswith("SYNCD UNKNOWN - cannot check: ")
    assert "health.failures_degraded" in output


def test_unknown_job_in_lag_is_a_config_error(tmp_path: Path) -> None:
    """health.lag names jobs: a misspelt one is refused by check-config (78)."""
    path = tmp_path / "syncd.toml"
    path.write_text(
        f'[daemon]\nstate_dir = {json.dumps(str(tmp_path))}\n[health.lag]\n"instock.order" = "1h"\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(main, ["check-config", "--config", str(path)])
    assert result.exit_code == 78
    assert "health.lag.instock.order: unknown job" in result.output


def test_summary_stays_short_and_counts_alerts_of_a_kind() -> None:
    """Eight held-order alerts make one item of the first line, not eight long ones."""
    held = tuple(
        AlertFacts(i, "dsorder_order_held", f"1000{i}", "held: " + "x" * 300, "t") for i in range(8)
    )
    report = evaluate(facts(daemon_pid=None, alerts=held), POLICY)
    first = report.summary()
    assert first == (
        "SYNCD CRITICAL - daemon: not running (no process holds the state lock); "
        "8 open dsorder_order_held alerts"
    )
