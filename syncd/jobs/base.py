"""What a job is, and the checks of the settings against a table of jobs.

A job is a plain function `run(ctx)` that pulls, plans (pure), records intents
and checkpoints through `ctx.store`, and calls `ctx.check_stop()` between
durable steps so a shutdown lands on a checkpoint.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import time
from typing import Any

from pydantic import BaseModel, ValidationError

from syncd.config import (
    CONNECTORS,
    JobConfig,
    NoOptions,
    Schedule,
    Settings,
    format_validation_errors,
    options_problems,
)
from syncd.errors import ConfigError, ShutdownRequested
from syncd.host.feeds.options import HostOptions
from syncd.logs import Logger
from syncd.progress import Progress, no_progress
from syncd.state import Store


@dataclass(frozen=True)
class JobSpec:
    name: str
    run: Callable[[JobContext], None]
    description: str
    default_schedule: Schedule
    connectors: tuple[str, ...] = ()
    options_model: type[BaseModel] | None = None
    enabled_by_default: bool = True
    reads_host_inbox: bool = False  # a dry run then works on a copy of the inbox
    # Extra runs at fixed local times of day (in `daemon.site_timezone`), besides the
    # schedule: e.g. a pull just before midnight that a remote's "today" requires.
    daily_at: Callable[[Settings], tuple[time, ...]] | None = None
    # Problems across sections that a job needs to be right (`key: reason`), found at
    # start-up, by check-config and on reload like any other invalid configuration.
    check: Callable[[Settings], list[str]] | None = None
    # Whether a scheduled run has work (read from the state DB): a job polled often for
    # rare work (backfill requests) records a run only when it has some.
    due: Callable[[Store], bool] | None = None

    def config(self, settings: Settings) -> JobConfig:
        return settings.jobs.get(self.name) or JobConfig(enabled=self.enabled_by_default)

    def schedule(self, settings: Settings) -> Schedule:
        """The job's own schedule, else its connector's, else the built-in default."""
        candidates = [self.config(settings).schedule]
        candidates += [getattr(settings.connectors, c).schedule for c in self.connectors[:1]]
        for schedule in candidates:
            if schedule.interval is not None or schedule.cron is not None:
                return schedule
        return self.default_schedule

    def daily_times(self, settings: Settings) -> tuple[time, ...]:
        return self.daily_at(settings) if self.daily_at is not None else ()

    def describe_schedule(self, settings: Settings) -> str:
        text = self.schedule(settings).describe()
        times = self.daily_times(settings)
        if times:
            zone = settings.daemon.site_timezone
            text += " and daily at " + ", ".join(t.isoformat() for t in times) + f" {zone}"
        return text

    def is_enabled(self, settings: Settings) -> bool:
        if not self.config(settings).enabled:
            return False
        return all(getattr(settings.connectors, c).enabled for c in self.connectors)

    def options(self, settings: Settings) -> Any:
        raw = self.config(settings).options
        try:
            if self.options_model is None:
                NoOptions(**raw)  # a job that reads no options: any key is a misspelling
                return raw
            return self.options_model(**raw)
        except ValidationError as exc:
            problems = [f"jobs.{self.name}.options.{p}" for p in format_validation_errors(exc)]
            raise ConfigError(
                "invalid job options:\n  " + "\n  ".join(problems), problems
            ) from None


@dataclass
class JobContext:
    """What a running job may touch; one per run, used from one thread."""

    job: str
    run_id: str
    settings: Settings
    store: Store
    log: Logger
    options: Any = None
    # A dry run: `store` and the host directory are private copies (write freely);
    # skip only what would change a remote (a push, an import, a destructive read).
    dry_run: bool = False
    stopping: threading.Event = field(default_factory=threading.Event)
    wake_sender: Callable[[], None] = lambda: None
    counts: Counter[str] = field(default_factory=Counter)
    warnings: list[str | dict[str, Any]] = field(default_factory=list)  # text or fields
    # Long work reports here (`syncd once` at a terminal draws it; elsewhere a no-op).
    progress: Progress = no_progress

    def check_stop(self) -> None:
        """Call between durable steps: a stopping daemon ends the run here."""
        if self.stopping.is_set():
            raise ShutdownRequested(f"{self.job}: stopping at a checkpoint")


def settings_problems(settings: Settings, jobs: Mapping[str, JobSpec]) -> list[str]:
    """Every problem (`key: reason`) of the job sections, job options, cross-section job
    checks, connector options and host options, for the job table given."""
    problems = [
        f"jobs.{name}: unknown job (known: {', '.join(sorted(jobs))})"
        for name in settings.jobs
        if name not in jobs
    ]
    problems += [
        f"health.lag.{name}: unknown job (known: {', '.join(sorted(jobs))})"
        for name in settings.health.lag
        if name not in jobs
    ]
    for spec in jobs.values():
        try:
            spec.options(settings)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        if spec.check is not None:
            problems.extend(spec.check(settings))
    for name, connector in settings.connectors.items():
        model = CONNECTORS[name].options_model
        problems.extend(options_problems(f"connectors.{name}", connector.options, model))
    problems.extend(options_problems("host", settings.host.options, HostOptions))
    return problems


def take_retried_rejects(
    ctx: JobContext, source: str, forget: Callable[[Store, dict[str, Any]], None]
) -> None:
    """`syncd rejects retry` for a job's own rejects: `forget` clears what kept the item
    back, in the same transaction that marks the reject retried; the run plans it again."""
    for _ in ctx.store.take_retried_rejects(source, forget):
        ctx.counts["retried"] += 1
