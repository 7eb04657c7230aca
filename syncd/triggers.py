"""A job's schedule as APScheduler triggers, and when they fire next.

The daemon schedules with these triggers and `syncd status` predicts the next run with
the same ones, so the two cannot drift apart.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from typing import Any

from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from syncd.config import Schedule

DEFAULT_INTERVAL = 3600  # seconds, for a schedule that names neither cron nor interval


def build_trigger(
    schedule: Schedule, timezone: str, *, start: datetime | None = None, jitter: bool = True
) -> Any:
    """A cron expression in the site's zone, or an interval (from `start`, default one
    interval from now, as APScheduler does)."""
    if schedule.cron:
        return CronTrigger.from_crontab(schedule.cron, timezone=timezone)
    return IntervalTrigger(
        seconds=schedule.interval or DEFAULT_INTERVAL,
        start_date=start,
        jitter=(schedule.jitter or None) if jitter else None,
        timezone=UTC,
    )


def daily_trigger(times: tuple[dt_time, ...], timezone: str) -> Any:
    """Fixed local times of day (wall clock of `timezone`, DST included)."""
    fixed = [
        CronTrigger(hour=t.hour, minute=t.minute, second=t.second, timezone=timezone) for t in times
    ]
    return fixed[0] if len(fixed) == 1 else OrTrigger(fixed)


def next_fire(
    schedule: Schedule,
    *,
    timezone: str,
    now: datetime,
    started: datetime,
    daily: tuple[dt_time, ...] = (),
) -> datetime | None:
    """When a daemon started at `started` runs the job next: an interval job runs at
    start-up and then every interval after it (jitter aside), a cron one on its
    expression; fixed daily times too. None if nothing fires again."""
    start = None
    if not schedule.cron:
        start = started + timedelta(seconds=schedule.interval or DEFAULT_INTERVAL)
    triggers = [build_trigger(schedule, timezone, start=start, jitter=False)]
    if daily:
        triggers.append(daily_trigger(daily, timezone))
    fires = [t.get_next_fire_time(None, now) for t in triggers]
    found = [fire for fire in fires if fire is not None]
    return min(found).astimezone(UTC) if found else None
