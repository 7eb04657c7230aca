"""`syncd health`: healthy (0), degraded (1) or critical (2), for monitoring.

The rules are pure functions from plain facts (`HealthFacts`) and thresholds
(`syncd.config.HealthConfig`) to findings, so each is tested with a table of cases;
`gather` is the one place that reads the state DB (through `syncd.state.queries`),
the lock and the schedules. The exit status is the worst finding: a Nagios/Icinga
plugin's OK/WARNING/CRITICAL, and a systemd `ExecCondition=` that skips a unit unless
syncd is healthy (it never exits 255, which would fail that unit instead).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from syncd.clock import duration_text, parse_iso, utcnow
from syncd.config import HealthConfig, Schedule, Settings
from syncd.errors import CONNECTOR_STOP_ALERTS

Level = Literal["ok", "degraded", "critical"]
LEVELS: tuple[Level, ...] = ("ok", "degraded", "critical")
EXIT_CODES: dict[Level, int] = {"ok": 0, "degraded": 1, "critical": 2}
EXIT_UNKNOWN = 3
"""The check itself could not run (a bad config, an unreadable state DB): Nagios UNKNOWN."""
NAGIOS_WORDS: dict[Level, str] = {"ok": "OK", "degraded": "WARNING", "critical": "CRITICAL"}
NO_LAG_JOBS = frozenset({"outbox.send", "backfill.requests"})
"""Jobs that run only when there is work (the sender: its age is the outbox rule's; the
backfill job: only while `syncd backfill` requests wait)."""


@dataclass(frozen=True)
class JobFacts:
    """One enabled job: its runs as the state DB has them and its schedule's interval."""

    name: str
    interval_s: float | None  # None: no regular schedule (lag not checked)
    failures_in_row: int = 0
    last_status: str | None = None  # None: never ran
    last_error: str | None = None
    last_ok_at: datetime | None = None
    first_started_at: datetime | None = None


@dataclass(frozen=True)
class StreamFacts:
    name: str
    updated_at: datetime | None  # None: no checkpoint row (yet)


@dataclass(frozen=True)
class OutboxFacts:
    destination: str
    pending: int
    oldest: datetime


@dataclass(frozen=True)
class AlertFacts:
    id: int
    kind: str
    subject: str
    message: str
    opened_at: str


@dataclass(frozen=True)
class HealthFacts:
    now: datetime
    state_db: bool  # the state DB exists
    daemon_pid: int | None
    daemon_since: datetime | None = None
    jobs: tuple[JobFacts, ...] = ()
    streams: tuple[StreamFacts, ...] = ()
    outbox: tuple[OutboxFacts, ...] = ()
    alerts: tuple[AlertFacts, ...] = ()


@dataclass(frozen=True)
class Finding:
    """One checked thing (a rule on one subject) and how it stands."""

    rule: str  # daemon, job_failures, job_lag, stream_lag, outbox_age, alert
    subject: str
    level: Level
    message: str
    value: float | None = None
    threshold: float | None = None


@dataclass(frozen=True)
class HealthReport:
    level: Level
    findings: tuple[Finding, ...] = field(default_factory=tuple)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.level]

    @property
    def problems(self) -> list[Finding]:
        """Findings that are not ok, the worst first."""
        bad = [f for f in self.findings if f.level != "ok"]
        return sorted(bad, key=lambda f: -LEVELS.index(f.level))

    def summary(self) -> str:
        """The first line a Nagios/Icinga check shows: state, then what is wrong, short
        (open alerts of one kind counted together; the lines after it say it all)."""
        problems = self.problems
        if not problems:
            return f"SYNCD OK - {len(self.findings)} checks ok"
        items: list[str] = []
        alerts: dict[str, list[Finding]] = {}
        for f in problems:
            if f.rule == "alert":
                alerts.setdefault(f.subject.split()[1], []).append(f)
        counted: set[str] = set()
        for f in problems:
            kind = f.subject.split()[1] if f.rule == "alert" else ""
            if kind and len(alerts[kind]) > 1:
                if kind not in counted:
                    counted.add(kind)
                    items.append(f"{len(alerts[kind])} open {kind} alerts")
                continue
            items.append(f"{f.subject}: {_short(f.message, 80)}")
        more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
        return f"SYNCD {NAGIOS_WORDS[self.level]} - {'; '.join(items[:3])}{more}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.level,
            "exit_code": self.exit_code,
            "summary": self.summary(),
            "checks": [asdict(f) for f in self.findings],
        }


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def worst(levels: Iterable[Level]) -> Level:
    return max(levels, key=LEVELS.index, default="ok")


def _age(now: datetime, since: datetime | None) -> float | None:
    return None if since is None else max(0.0, (now - since).total_seconds())


# -- the rules ------------------------------------------------------------------


def daemon_rule(facts: HealthFacts, policy: HealthConfig) -> Finding:
    """No daemon holds the state directory: critical when one is expected."""
    if facts.daemon_pid is not None:
        up = _age(facts.now, facts.daemon_since)
        since = f", up {duration_text(up)}" if up is not None else ""
        return Finding("daemon", "daemon", "ok", f"running (pid {facts.daemon_pid}{since})")
    if not policy.expect_daemon:
        return Finding("daemon", "daemon", "ok", "not running (not expected: expect_daemon off)")
    return Finding("daemon", "daemon", "critical", "not running (no process holds the state lock)")


def job_failures_rule(job: JobFacts, policy: HealthConfig) -> Finding:
    """A job whose last N runs failed (interrupted and skipped runs do not break the row)."""
    n = job.failures_in_row
    level: Level = "ok"
    threshold = policy.failures_degraded or None
    if policy.failures_critical and n >= policy.failures_critical:
        level, threshold = "critical", policy.failures_critical
    elif policy.failures_degraded and n >= policy.failures_degraded:
        level = "degraded"
    if level == "ok":
        message = (
            f"{n} failed run(s) in a row"
            if n
            else "no runs yet"
            if job.last_status is None
            else f"last run {job.last_status}"
        )
    else:
        error = f": {job.last_error[:200]}" if job.last_error else ""
        message = f"failed {n} times in a row{error}"
    return Finding("job_failures", job.name, level, message, float(n), threshold)


def lag_threshold(job: JobFacts, policy: HealthConfig) -> float | None:
    """The job's own `lag`, else lag_factor x its interval (at least lag_min)."""
    if job.name in policy.lag:
        return policy.lag[job.name]
    if job.interval_s is None or job.name in NO_LAG_JOBS:
        return None
    return max(policy.lag_factor * job.interval_s, policy.lag_min)


def _lag_level(lag: float, threshold: float, policy: HealthConfig) -> Level:
    if policy.lag_critical_factor and lag > policy.lag_critical_factor * threshold:
        return "critical"
    return "degraded" if lag > threshold else "ok"


def job_lag_rule(job: JobFacts, facts: HealthFacts, policy: HealthConfig) -> Finding | None:
    """Time since the job's last success (since its first run, or since the daemon started,
    when it never succeeded) over its threshold."""
    threshold = lag_threshold(job, policy)
    if threshold is None:
        return None
    since, what = job.last_ok_at, "since the last success"
    if since is None:
        since, what = job.first_started_at or facts.daemon_since, "without a success"
    lag = _age(facts.now, since)
    if lag is None:
        return Finding("job_lag", job.name, "ok", "has not run yet", None, threshold)
    level = _lag_level(lag, threshold, policy)
    return Finding(
        "job_lag",
        job.name,
        level,
        f"{duration_text(lag)} {what} (limit {duration_text(threshold)})",
        lag,
        threshold,
    )


def stream_lag_rule(stream: StreamFacts, facts: HealthFacts, policy: HealthConfig) -> Finding:
    """Time since a named stream's checkpoint was written (or since the daemon started)."""
    threshold = policy.stream_lag[stream.name]
    since = stream.updated_at or facts.daemon_since
    lag = _age(facts.now, since)
    if lag is None:
        return Finding("stream_lag", stream.name, "ok", "no checkpoint yet", None, threshold)
    level = _lag_level(lag, threshold, policy)
    what = "since its checkpoint moved" if stream.updated_at else "and no checkpoint of that name"
    return Finding(
        "stream_lag",
        stream.name,
        level,
        f"{duration_text(lag)} {what} (limit {duration_text(threshold)})",
        lag,
        threshold,
    )


def outbox_rule(box: OutboxFacts, facts: HealthFacts, policy: HealthConfig) -> Finding:
    """The oldest pending intent of a destination, by age."""
    age = _age(facts.now, box.oldest) or 0.0
    level: Level = "ok"
    threshold = policy.outbox_age_degraded or None
    if policy.outbox_age_critical and age > policy.outbox_age_critical:
        level, threshold = "critical", policy.outbox_age_critical
    elif policy.outbox_age_degraded and age > policy.outbox_age_degraded:
        level = "degraded"
    return Finding(
        "outbox_age",
        f"outbox {box.destination}",
        level,
        f"{box.pending} pending, the oldest {duration_text(age)} old",
        age,
        threshold,
    )


def alert_rule(alert: AlertFacts, policy: HealthConfig) -> Finding:
    """An open alert that stops a connector (auth, ...) is critical; others by policy."""
    level: Level = "critical" if alert.kind in CONNECTOR_STOP_ALERTS else policy.other_alerts
    subject = f"alert {alert.kind}" + (f" {alert.subject}" if alert.subject else "")
    return Finding("alert", subject, level, f"open since {alert.opened_at}: {alert.message[:200]}")


def evaluate(facts: HealthFacts, policy: HealthConfig) -> HealthReport:
    """Every rule over the facts; the report's level is the worst finding."""
    if not facts.state_db:
        findings = [daemon_rule(facts, policy)]
        findings.append(
            Finding("state_db", "state DB", "critical", "missing (syncd has not run here)")
        )
        return HealthReport(worst(f.level for f in findings), tuple(findings))
    findings = [daemon_rule(facts, policy)]
    findings += [alert_rule(a, policy) for a in facts.alerts]
    for job in facts.jobs:
        findings.append(job_failures_rule(job, policy))
        lag = job_lag_rule(job, facts, policy)
        if lag is not None:
            findings.append(lag)
    findings += [stream_lag_rule(s, facts, policy) for s in facts.streams]
    findings += [outbox_rule(b, facts, policy) for b in facts.outbox]
    return HealthReport(worst(f.level for f in findings), tuple(findings))


# -- the edge: reading the facts ------------------------------------------------


def schedule_interval(schedule: Schedule, timezone: str, now: datetime) -> float | None:
    """Seconds between runs: the interval, or a cron's longest gap among its next runs."""
    if schedule.interval:
        return schedule.interval
    if not schedule.cron:
        return None
    from apscheduler.triggers.cron import CronTrigger

    trigger = CronTrigger.from_crontab(schedule.cron, timezone=timezone)
    fires: list[datetime] = []
    previous = None
    moment = now
    for _ in range(6):
        fire = trigger.get_next_fire_time(previous, moment)
        if fire is None:
            break
        fires.append(fire)
        previous, moment = fire, fire
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(fires)]
    return max(gaps) if gaps else None


def _time(text: str | None) -> datetime | None:
    return parse_iso(text) if text else None


def gather(settings: Settings, now: datetime | None = None) -> HealthFacts:
    """Read the facts: the lock's holder, the enabled jobs' runs, checkpoints, outbox, alerts."""
    from syncd.jobs import REGISTRY
    from syncd.state import Store, queries
    from syncd.state.lock import lock_holder

    now = now or utcnow()
    pid = lock_holder(settings.daemon.state_dir)
    since = None
    if pid is not None:
        try:
            since = datetime.fromtimestamp(
                os.stat(settings.daemon.state_dir / "syncd.lock").st_mtime, tz=now.tzinfo
            )
        except OSError:
            since = None
    if not settings.db_path.exists():
        return HealthFacts(now=now, state_db=False, daemon_pid=pid, daemon_since=since)
    with Store.open(settings.db_path, migrate=False) as store:
        runs = {r["job"]: r for r in queries.job_health(store)}
        checkpoints = {r["stream"]: r for r in queries.checkpoints(store)}
        outbox = queries.pending_intents_by_destination(store)
        alerts = queries.alerts(store)
    zone = settings.daemon.site_timezone
    jobs = []
    for name, spec in sorted(REGISTRY.items()):
        if not spec.is_enabled(settings):
            continue
        row = runs.get(name, {})
        schedule = settings.outbox.schedule if name in NO_LAG_JOBS else spec.schedule(settings)
        jobs.append(
            JobFacts(
                name=name,
                interval_s=schedule_interval(schedule, zone, now),
                failures_in_row=int(row.get("failures_in_row") or 0),
                last_status=row.get("status"),
                last_error=row.get("error"),
                last_ok_at=_time(row.get("last_ok_at")),
                first_started_at=_time(row.get("first_started_at")),
            )
        )
    streams = tuple(
        StreamFacts(name, _time(checkpoints[name]["updated_at"]) if name in checkpoints else None)
        for name in sorted(settings.health.stream_lag)
    )
    return HealthFacts(
        now=now,
        state_db=True,
        daemon_pid=pid,
        daemon_since=since,
        jobs=tuple(jobs),
        streams=streams,
        outbox=tuple(
            OutboxFacts(r["destination"], int(r["n"]), parse_iso(r["oldest"])) for r in outbox
        ),
        alerts=tuple(
            AlertFacts(a["id"], a["kind"], a["subject"], a["message"], a["opened_at"])
            for a in alerts
        ),
    )


def check(settings: Settings, *, expect_daemon: bool | None = None) -> HealthReport:
    """`syncd health`: gather the facts and evaluate them (`expect_daemon` overrides config)."""
    policy = settings.health
    if expect_daemon is not None:
        policy = policy.model_copy(update={"expect_daemon": expect_daemon})
    return evaluate(gather(settings), policy)


def text_lines(report: HealthReport) -> list[str]:
    """The summary line, then one line per check, problems first (Nagios long output)."""
    order = sorted(report.findings, key=lambda f: -LEVELS.index(f.level))
    return [report.summary()] + [
        f"{f.level:<9} {f.rule:<12} {f.subject}: {f.message}" for f in order
    ]


__all__ = ["HealthReport", "check", "evaluate", "gather", "text_lines"]
