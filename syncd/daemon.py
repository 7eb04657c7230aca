"""`syncd run`: the scheduler, the sender thread, signals and systemd notify.

Signal handlers only queue the signal; the main loop dispatches to
`handle_<signal>` methods, so no work ever runs inside a handler.
Jobs run on APScheduler's thread pool with `max_instances=1` and
`coalesce=True`; the outbox sender has its own thread so a job can wake it
the moment it records intents.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from syncd import lifecycle, ratebudget, schedlog, systemd
from syncd.config import Settings, load_settings, refuse_unwritable, secret_values
from syncd.errors import CONNECTOR_STOP_ALERTS, ConfigError
from syncd.jobs import REGISTRY, validate_jobs
from syncd.jobs.base import JobSpec
from syncd.jobs.runner import run_job
from syncd.logs import Logger, configure_logging, redactor
from syncd.metrics.expose import Exposure
from syncd.state import StateLock, Store
from syncd.state.ratebudget import BudgetTable
from syncd.status import status_line
from syncd.triggers import build_trigger, daily_trigger

log: Logger = structlog.get_logger("syncd.daemon")

SENDER_JOB = "outbox.send"
SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


def daily_job_id(name: str) -> str:
    return f"{name}@daily"


def plan_schedule(settings: Settings) -> dict[str, str]:
    """Job name -> schedule description, for every enabled scheduled job."""
    return {
        name: spec.describe_schedule(settings)
        for name, spec in sorted(REGISTRY.items())
        if name != SENDER_JOB and spec.is_enabled(settings)
    }


def schedule_changes(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """Human-readable summary of what a reload changed."""
    changes = [f"{name}: added ({new[name]})" for name in new.keys() - old.keys()]
    changes += [f"{name}: removed" for name in old.keys() - new.keys()]
    changes += [
        f"{name}: {old[name]} -> {new[name]}"
        for name in old.keys() & new.keys()
        if old[name] != new[name]
    ]
    return sorted(changes)


class SenderThread(threading.Thread):
    """Drains the outbox on its interval, or at once when woken."""

    def __init__(self, daemon: Daemon) -> None:
        super().__init__(name="syncd-sender", daemon=True)
        self.owner = daemon
        self._wake = threading.Event()
        self._trigger = "wake"

    def wake(self, trigger: str = "wake") -> None:
        """Drain now; the run is recorded with `trigger` (`signal` for SIGUSR1)."""
        self._trigger = trigger
        self._wake.set()

    def run(self) -> None:
        while not self.owner.stopping.is_set():
            interval = self.owner.settings.outbox.schedule.interval or 30
            self._wake.wait(timeout=interval)
            self._wake.clear()  # cleared before draining: a wake during a drain drains again
            trigger, self._trigger = self._trigger, "wake"
            if self.owner.stopping.is_set():
                return
            try:
                with Store.open(self.owner.settings.db_path, migrate=False) as store:
                    due = store.destinations_with_due_intents()
                if due:
                    self.owner.execute(REGISTRY[SENDER_JOB], trigger=trigger)
            except Exception:  # the sender must outlive any single failure
                log.exception("sender_loop_error")
                time.sleep(1)


# Seconds between two refreshes of the metrics textfile and STATUS= after runs.
REFRESH_INTERVAL = 5.0


class RefreshGate:
    """When to refresh the metrics textfile and STATUS= (the whole exposition, state DB
    gauges included, written and fsynced): after a run, unless the last refresh is less
    than `interval` seconds old; then the main loop's next tick does it (`due`), so a run's
    outcome shows at most a tick later. With schedules of a few seconds, a refresh per run
    was most of an idle daemon's CPU. Thread-safe: runs end in worker threads."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()
        self._last: float | None = None
        self._due = False

    def after_run(self) -> bool:
        """A run ended: True if the caller refreshes now (and `refreshed` is recorded)."""
        with self._lock:
            now = self.clock()
            if self._last is not None and now - self._last < self.interval:
                self._due = True
                return False
            self._last, self._due = now, False
            return True

    def take_due(self) -> bool:
        """At a tick: True (once) if a run ended since the last refresh; the caller refreshes."""
        with self._lock:
            if not self._due:
                return False
            self._last, self._due = self.clock(), False
            return True

    def refreshed(self) -> None:
        """A refresh happened for another reason (the 15 s one): it counts as the last."""
        with self._lock:
            self._last, self._due = self.clock(), False


class Daemon:
    def __init__(self, settings: Settings, config_path: Path | None) -> None:
        self.settings = settings
        self.config_path = config_path
        self.stopping = threading.Event()
        self.signals: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.lock = StateLock(settings.daemon.state_dir)
        self.scheduler: BackgroundScheduler | None = None
        self.sender = SenderThread(self)
        self._active: dict[str, int] = {}
        self._active_lock = threading.Lock()
        self._job_locks: dict[str, threading.Lock] = {}  # one run of a job at a time
        self._schedule: dict[str, str] = {}
        self.metrics = Exposure(lambda: self.settings)
        self.refresh_gate = RefreshGate(REFRESH_INTERVAL)

    # -- life cycle ---------------------------------------------------------

    def run(self) -> int:
        for sig in SIGNALS:  # queued from the start; handled once the main loop runs
            signal.signal(sig, self._on_signal)
        self.lock.acquire()
        try:
            with Store.open(self.settings.db_path) as store:
                abandoned = store.mark_abandoned_runs()
            if abandoned:
                log.warning("runs_interrupted_by_crash", count=abandoned)
            # One rate budget per connector for every job and the sender, kept in the state DB.
            ratebudget.install(BudgetTable(self.settings.db_path))
            self._start_metrics()
            self._start_scheduler()
            self.sender.start()
            log.info(
                "daemon_started",
                pid=os.getpid(),
                state_db=str(self.settings.db_path),
                config=str(self.config_path),
                jobs=self._schedule,
            )
            systemd.notify("READY=1", f"STATUS={self.status()}")
            self._main_loop()
            return 0
        finally:
            ratebudget.uninstall()  # the budgets as they are now, written
            self.metrics.close()
            self.lock.release()

    def _start_metrics(self) -> None:
        """`/metrics` if configured (a port that cannot be bound is a configuration error
        naming the key), and a first textfile before any run ends."""
        try:
            self.metrics.start_server()
        except OSError as exc:
            listen = self.settings.metrics.listen
            raise ConfigError(
                f"metrics.listen = {listen!r}: cannot listen there: {exc.strerror or exc}"
            ) from None
        self.metrics.write_textfile()

    def _main_loop(self) -> None:
        watchdog = systemd.watchdog_interval()
        tick = min(watchdog or 5.0, 5.0)
        next_status = 0.0
        while True:
            try:
                sig = self.signals.get(timeout=tick)
            except queue.Empty:
                sig = None
            if sig is not None:
                name = signal.Signals(sig).name.lower()
                if getattr(self, f"handle_{name}")() is False:
                    return
            if watchdog:
                systemd.notify("WATCHDOG=1")
            if time.monotonic() >= next_status:
                self.refresh_gate.refreshed()
                self._refresh()  # ages and lags move between runs too
                next_status = time.monotonic() + 15
            elif self.refresh_gate.take_due():
                self._refresh()

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.signals.put(signum)  # SimpleQueue.put is reentrant: safe in a handler

    # -- signal handlers (run on the main loop) -----------------------------

    def handle_sighup(self) -> bool:
        systemd.notify(
            "RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"
        )
        try:
            new = load_settings(self.config_path)
            validate_jobs(new)
            if new.daemon.state_dir != self.settings.daemon.state_dir:
                raise ConfigError("daemon.state_dir: cannot change while running; restart syncd")
        except ConfigError as exc:
            log.error("config_reload_failed", error=str(exc), kept="previous configuration")
            systemd.notify("READY=1", "STATUS=reload failed, running on previous config")
            return True
        old_schedule, old_daemon = self._schedule, self.settings.daemon
        old_listen = self.settings.metrics.listen
        self.settings = new
        configure_logging(
            new.logging.level, new.logging.format, priority_prefix=new.logging.priority_prefix
        )
        redactor.set_secrets(secret_values(new))
        resumed = 0
        try:
            with Store.open(new.db_path, migrate=False) as store:
                resumed = sum(store.resolve_alerts(kind) for kind in CONNECTOR_STOP_ALERTS)
        except Exception as exc:  # a busy DB must not take the daemon down on reload
            log.error("config_reload_state_error", error=str(exc))
        self._reschedule()
        changes = schedule_changes(old_schedule, self._schedule)
        needs_restart = [
            f"daemon.{key}"
            for key in ("max_workers", "misfire_grace_time")
            if getattr(old_daemon, key) != getattr(new.daemon, key)
        ]
        if old_listen != new.metrics.listen:
            needs_restart.append("metrics.listen")
        log.info(
            "config_reloaded",
            changes=changes or ["no schedule changes"],
            auth_alerts_cleared=resumed,
            needs_restart=needs_restart or None,
        )
        systemd.notify("READY=1", f"STATUS={self.status()}")
        return True

    def handle_sigusr1(self) -> bool:
        """Run every enabled job now, as one-off runs recorded with trigger `signal` (the
        jobs' own schedules are left as they were); a job already running is skipped."""
        log.info("run_all_requested", jobs=sorted(self._schedule))
        now = datetime.now(UTC)
        assert self.scheduler is not None
        for name in self._schedule:
            self.scheduler.add_job(
                self._signalled,
                "date",
                run_date=now,
                args=[name],
                id=f"{name}@signal",
                name=f"{name}@signal",
                replace_existing=True,
                misfire_grace_time=None,
            )
        self.sender.wake(trigger="signal")
        return True

    def handle_sigterm(self) -> bool:
        systemd.notify("STOPPING=1")
        timeout = self.settings.daemon.shutdown_timeout
        log.info("daemon_stopping", running=self.running_jobs(), timeout_s=timeout)
        self.stopping.set()
        lifecycle.STOPPING.set()  # retry waits inside running jobs end now
        self.sender.wake()
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        deadline = time.monotonic() + timeout
        while self.running_jobs() and time.monotonic() < deadline:
            time.sleep(0.05)
        left = self.running_jobs()
        if left:
            log.warning(
                "daemon_stop_timeout",
                still_running=left,
                note="their runs are marked interrupted at next start",
            )
            self.lock.release()
            sys.stdout.flush()
            os._exit(0)
        log.info("daemon_stopped")
        return False

    handle_sigint = handle_sigterm

    # -- scheduling ---------------------------------------------------------

    def _start_scheduler(self) -> None:
        d = self.settings.daemon
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(d.max_workers)},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": int(d.misfire_grace_time),
            },
            timezone=UTC,
        )
        schedlog.install(self.scheduler)  # its per-tick skip warnings, folded
        self.scheduler.start()
        self._reschedule()

    def _reschedule(self) -> None:
        assert self.scheduler is not None
        wanted = plan_schedule(self.settings)
        for name in list(self._schedule):
            if name not in wanted:
                self.scheduler.remove_job(name)
                if self.scheduler.get_job(daily_job_id(name)):
                    self.scheduler.remove_job(daily_job_id(name))
        for name, description in wanted.items():
            spec = REGISTRY[name]
            if self._schedule.get(name) == description:
                continue
            self._schedule_daily(spec)
            trigger = build_trigger(
                spec.schedule(self.settings), self.settings.daemon.site_timezone
            )
            first = datetime.now(UTC) if spec.schedule(self.settings).interval else None
            if self.scheduler.get_job(name):
                self.scheduler.reschedule_job(name, trigger=trigger)
            else:
                self.scheduler.add_job(
                    self._scheduled,
                    trigger,
                    args=[name],
                    id=name,
                    name=name,
                    next_run_time=first or trigger.get_next_fire_time(None, datetime.now(UTC)),
                )
        self._schedule = wanted

    def _schedule_daily(self, spec: JobSpec) -> None:
        """A job's fixed times of day are an APScheduler job of their own: a run of the
        job still going at that moment must delay the fixed-time run, not cancel it (as
        one trigger with `max_instances = 1` would: DSOrder's end-of-day pull)."""
        assert self.scheduler is not None
        job_id = daily_job_id(spec.name)
        times = spec.daily_times(self.settings)
        if not times:
            if self.scheduler.get_job(job_id):
                self.scheduler.remove_job(job_id)
            return
        trigger = daily_trigger(times, self.settings.daemon.site_timezone)
        if self.scheduler.get_job(job_id):
            self.scheduler.reschedule_job(job_id, trigger=trigger)
        else:
            # No misfire grace: with every worker busy at that moment (a long export),
            # a late end-of-day pull still beats none (its answer's time decides).
            self.scheduler.add_job(
                self._daily,
                trigger,
                args=[spec.name],
                id=job_id,
                name=job_id,
                misfire_grace_time=None,
            )

    def _scheduled(self, name: str) -> None:
        spec = REGISTRY[name]
        if spec.due is not None:
            try:
                with Store.open(self.settings.db_path, migrate=False) as store:
                    if not spec.due(store):
                        return
            except Exception:  # a busy or broken DB: the run itself says what is wrong
                log.exception("job_due_check_failed", job=name)
        self.execute(spec, trigger="schedule")

    def _signalled(self, name: str) -> None:
        self.execute(REGISTRY[name], trigger="signal")

    def _daily(self, name: str) -> None:
        self.execute(REGISTRY[name], trigger="daily", wait=True)

    def _job_lock(self, name: str) -> threading.Lock:
        with self._active_lock:
            return self._job_locks.setdefault(name, threading.Lock())

    def execute(self, spec: JobSpec, trigger: str, *, wait: bool = False) -> None:
        """Run a job unless a run of it is going on: then skip it, or with `wait` run it
        as soon as that run ends."""
        if self.stopping.is_set():
            return
        lock = self._job_lock(spec.name)
        if not wait and not lock.acquire(blocking=False):
            log.info("job_skipped", job=spec.name, trigger=trigger, reason="a run is going on")
            return
        if wait:
            waited = time.monotonic()
            while not lock.acquire(timeout=0.2):
                if self.stopping.is_set():
                    return
            if time.monotonic() - waited > 0.2:
                log.info(
                    "job_waited",
                    job=spec.name,
                    trigger=trigger,
                    waited_s=round(time.monotonic() - waited, 2),
                )
        try:
            self._execute(spec, trigger)
        finally:
            lock.release()

    def _execute(self, spec: JobSpec, trigger: str) -> None:
        with self._active_lock:
            self._active[spec.name] = self._active.get(spec.name, 0) + 1
        try:
            run_job(
                spec,
                self.settings,
                trigger=trigger,
                stopping=self.stopping,
                wake_sender=self.sender.wake,
            )
        finally:
            with self._active_lock:
                self._active[spec.name] -= 1
                if not self._active[spec.name]:
                    del self._active[spec.name]
            self._after_run()

    def _after_run(self) -> None:
        if self.refresh_gate.after_run():
            self._refresh()

    def _refresh(self) -> None:
        """Write the metrics textfile and send STATUS= (never raises)."""
        self.metrics.write_textfile()  # never raises
        if systemd.enabled():
            with contextlib.suppress(Exception):
                systemd.notify(f"STATUS={self.status()}")

    def running_jobs(self) -> list[str]:
        with self._active_lock:
            return sorted(self._active)

    def status(self) -> str:
        try:
            with Store.open(self.settings.db_path, migrate=False) as store:
                return status_line(store, running=self.running_jobs())
        except Exception as exc:  # status must never take the daemon down
            return f"status unavailable: {exc}"


def run_daemon(config_path: Path | None) -> int:
    """Entry point of `syncd run`; ConfigError/StateError propagate to the CLI."""
    lifecycle.restrict_umask()
    settings = load_settings(config_path)
    validate_jobs(settings)
    refuse_unwritable(settings)  # 78 naming the key, before the lock or the DB is made
    configure_logging(
        settings.logging.level,
        settings.logging.format,
        priority_prefix=settings.logging.priority_prefix,
    )
    redactor.set_secrets(secret_values(settings))
    return Daemon(settings, Settings.source_path or config_path).run()
