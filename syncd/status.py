"""What `syncd status` and the systemd STATUS= line show, read from the state DB.

Reads only, so it works from another process while the daemon runs (WAL).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from syncd.clock import iso, parse_iso, utcnow
from syncd.state import Store, queries
from syncd.state.backfills import active_backfills
from syncd.triggers import next_fire

if TYPE_CHECKING:
    from syncd.config import Schedule, Settings


def job_summaries(store: Store) -> list[dict[str, Any]]:
    """Per job: the last run, the last success and the lag since then."""
    rows = queries.last_runs(store)
    now = utcnow()
    for row in rows:
        row["counts"] = json.loads(row["counts"] or "{}")
        row["warnings"] = json.loads(row["warnings"] or "[]")
        row["lag_s"] = (
            round((now - parse_iso(row["last_ok_at"])).total_seconds(), 1)
            if row["last_ok_at"]
            else None
        )
    return rows


def warning_text(warning: Any) -> str:
    """One run warning as a line: its message, after what it is about (an endpoint, a job,
    an order...), whatever shape the job gave it."""
    if not isinstance(warning, dict):
        return str(warning)
    about = [f"{k} {v}" for k, v in warning.items() if k != "message" and v not in (None, "")]
    message = str(warning.get("message", ""))
    return f"{', '.join(about)}: {message}" if about and message else message or ", ".join(about)


def status_report(store: Store) -> dict[str, Any]:
    return {
        "jobs": job_summaries(store),
        "outbox_pending": {
            r["destination"]: {"pending": r["n"], "oldest": r["oldest"], "retrying": r["retrying"]}
            for r in queries.pending_intents_by_destination(store)
        },
        "rejects_open": {r["source"]: r["n"] for r in queries.open_rejects_by_source(store)},
        "alerts_open": queries.alerts(store),
        "checkpoints": queries.checkpoints(store),
        "throttled": throttled(store),
        "backfills": [b.as_json() for b in active_backfills(store)],
    }


def backfill_text(row: dict[str, Any]) -> str:
    """`#3 instock.moves 2026-12-01T00:00Z..2026-12-02T00:00Z running: 12 steps, 4 missing,
    0 changed, 4 applied` (a dry run says so)."""
    period = f"{row['period_from'][:16]}Z..{row['period_to'][:16]}Z"
    dry = " (dry run)" if row["dry_run"] else ""
    return (
        f"#{row['id']} {row['stream']} {period} {row['status']}{dry}: {row['steps']} steps, "
        f"{row['missing']} missing, {row['changed']} changed, {row['applied']} applied"
    )


def throttled(store: Store) -> list[dict[str, Any]]:
    """Connectors a 429 parked: until when (ISO-8601 UTC) and the answer that did it."""
    return [
        {
            "connector": row["connector"],
            "until": iso(datetime.fromtimestamp(row["parked_until"], UTC)),
            "reason": row["park_reason"],
        }
        for row in queries.throttled_connectors(store, utcnow().timestamp())
    ]


def throttled_text(row: dict[str, Any]) -> str:
    """`instock throttled until 12:00:05Z (429 to GET /v1/..., request id ...)`."""
    return f"{row['connector']} throttled until {row['until'][11:19]}Z ({row['reason']})"


def status_line(store: Store, running: list[str] | None = None) -> str:
    """One line for systemd's STATUS=: the last runs and what needs attention."""
    jobs = job_summaries(store)
    failed = [j["job"] for j in jobs if j["status"] in ("failed", "crashed")]
    pending = queries.pending_intent_count(store)
    rejects = queries.open_reject_count(store)
    alerts = queries.alerts(store)
    last = max(jobs, key=lambda j: j["started_at"], default=None)
    parts = []
    if running:
        parts.append("running " + ",".join(running))
    if last:
        parts.append(f"last {last['job']} {last['status']} at {last['started_at'][11:19]}Z")
    parts.append(f"{len(jobs) - len(failed)}/{len(jobs)} jobs ok")
    if failed:
        parts.append("failed: " + ",".join(failed))
    parts.append(f"outbox {pending}, rejects {rejects}, alerts {len(alerts)}")
    parts.extend(
        f"{row['connector']} throttled until {row['until'][11:19]}Z" for row in throttled(store)
    )
    if alerts:
        parts.append("ALERT " + alerts[0]["message"][:120])
    return "; ".join(parts)


# -- the screen of `syncd status` ----------------------------------------------------


@dataclass(frozen=True)
class DaemonState:
    """The daemon holding the state directory, as its lock file and /proc tell."""

    pid: int | None
    started_at: datetime | None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def as_dict(self, now: datetime) -> dict[str, Any]:
        started = self.started_at
        return {
            "running": self.running,
            "pid": self.pid,
            "started_at": iso(started) if started else None,
            "uptime_s": round((now - started).total_seconds(), 1) if started else None,
        }


def daemon_state(state_dir: Path, proc: Path = Path("/proc")) -> DaemonState:
    """The process holding the state directory's lock (`lock_holder`: read, never taken)
    and when it started."""
    from syncd.state.lock import lock_holder

    pid = lock_holder(state_dir, proc / "locks")
    if pid is None:
        return DaemonState(None, None)
    return DaemonState(pid, process_started(pid, proc))


def process_started(pid: int, proc: Path = Path("/proc")) -> datetime | None:
    """When process `pid` started (Linux: /proc/<pid>/stat field 22, in clock ticks after
    boot, plus the boot time); None where /proc cannot say."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])
        boot = next(
            int(line.split()[1])
            for line in (proc / "stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        hertz = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return datetime.fromtimestamp(boot + ticks / hertz, UTC)


def every(seconds: float) -> str:
    """An interval as an operator says it: `every 10 min`, `every 30 s`, `every 2 h`."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"every {int(seconds // size)} {unit}"
    return f"every {seconds:g} s"


def schedule_text(schedule: Schedule) -> str:
    if schedule.cron:
        return f"cron '{schedule.cron}'"
    if schedule.interval:
        return every(schedule.interval)
    return "not scheduled"


def next_run(
    schedule: Schedule,
    *,
    timezone: str,
    now: datetime,
    daemon_started: datetime | None,
    daily: tuple[Any, ...] = (),
) -> datetime | None:
    """When the running daemon runs a job next, from the daemon's own triggers (the
    sender's interval counts from its last drain, and a queued intent wakes it sooner).
    None without a daemon."""
    if daemon_started is None:
        return None
    return next_fire(schedule, timezone=timezone, now=now, started=daemon_started, daily=daily)


def status_screen(store: Store, settings: Settings, now: datetime | None = None) -> dict[str, Any]:
    """`syncd status --json`: `status_report` with the daemon (pid, start, uptime) and,
    per job syncd knows, its schedule, whether enabled and its next run (ISO-8601 UTC).
    Enabled jobs that never ran are listed too, with no run."""
    from syncd.jobs import REGISTRY

    now = now or utcnow()
    report = status_report(store)
    daemon = daemon_state(settings.daemon.state_dir)
    ran = {row["job"]: row for row in report["jobs"]}
    jobs = []
    for name, spec in sorted(REGISTRY.items()):
        row = ran.get(name)
        enabled = spec.is_enabled(settings)
        if row is None and not enabled:
            continue
        schedule = settings.outbox.schedule if name == "outbox.send" else spec.schedule(settings)
        nxt = (
            next_run(
                schedule,
                timezone=settings.daemon.site_timezone,
                now=now,
                daemon_started=daemon.started_at,
                daily=spec.daily_times(settings),
            )
            if enabled
            else None
        )
        jobs.append(
            {
                **(row or {"job": name, "status": None, "started_at": None}),
                "enabled": enabled,
                "schedule": schedule_text(schedule)
                + (
                    " and daily at " + ", ".join(t.isoformat() for t in spec.daily_times(settings))
                    if spec.daily_times(settings)
                    else ""
                ),
                "next_run": iso(nxt) if nxt else None,
            }
        )
    report["jobs"] = jobs
    report["daemon"] = daemon.as_dict(now)
    report["now"] = iso(now)
    return report
