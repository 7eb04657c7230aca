"""APScheduler's "skipped: maximum number of running instances reached", folded.

APScheduler logs that warning on every tick a job is due while its previous run still
goes on: once a second for a one-second job stuck behind a slow remote. syncd drops
those lines and says it itself, twice per episode: `job_overrun_started` (warning) at
the first skipped tick, and `job_overrun_ended` (info) with the number of ticks skipped
when the job is next started.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import structlog
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_SUBMITTED

from syncd.logs import Logger

log: Logger = structlog.get_logger("syncd.daemon")

EVENTS = EVENT_JOB_MAX_INSTANCES | EVENT_JOB_SUBMITTED
"""The scheduler events `Overruns` listens to (`scheduler.add_listener(overruns, EVENTS)`)."""

_SKIPPED_TEXT = "skipped: maximum number of running instances reached"


class DropSkippedWarnings(logging.Filter):
    """On the `apscheduler.scheduler` logger: drops the per-tick skip warning (Overruns
    says it once), lets everything else through."""

    def filter(self, record: logging.LogRecord) -> bool:
        return _SKIPPED_TEXT not in str(record.msg)


DROP_SKIPPED = DropSkippedWarnings()


@dataclass
class _Episode:
    skipped: int
    since: float


class Overruns:
    """Counts skipped ticks per scheduled job id, between its last start and its next."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._episodes: dict[str, _Episode] = {}

    def __call__(self, event: Any) -> None:
        """An APScheduler listener; never raises (a listener's error would be logged by
        APScheduler on every tick)."""
        try:
            if event.code == EVENT_JOB_MAX_INSTANCES:
                self.skipped(event.job_id)
            elif event.code == EVENT_JOB_SUBMITTED:
                self.started(event.job_id)
        except Exception:  # pragma: no cover - logging must not break the scheduler
            log.exception("overrun_listener_error")

    def skipped(self, job_id: str) -> None:
        with self._lock:
            episode = self._episodes.get(job_id)
            if episode is not None:
                episode.skipped += 1
                return
            self._episodes[job_id] = _Episode(1, self._clock())
        log.warning(
            "job_overrun_started",
            job=job_id.partition("@")[0],
            schedule=job_id,
            reason="its previous run is still going; further skipped ticks are counted",
        )

    def started(self, job_id: str) -> None:
        with self._lock:
            episode = self._episodes.pop(job_id, None)
        if episode is not None:
            log.info(
                "job_overrun_ended",
                job=job_id.partition("@")[0],
                schedule=job_id,
                skipped=episode.skipped,
                overrun_s=round(self._clock() - episode.since, 1),
            )


def install(scheduler: Any) -> Overruns:
    """Fold the scheduler's skip warnings into syncd's events."""
    logging.getLogger("apscheduler.scheduler").addFilter(DROP_SKIPPED)
    overruns = Overruns()
    scheduler.add_listener(overruns, EVENTS)
    return overruns
