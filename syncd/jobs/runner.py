"""Runs one job once: a `runs` row, bound log context, one summary line.

A job's failure is recorded and logged here and never propagates to the
scheduler, so one broken job cannot stop the daemon. Every run ends with one
`job_finished` line; a run that raised an unexpected exception (a bug) ends with
status `crashed` and the whole traceback in that line's `traceback` field.

A dry run runs the same code against private copies of the state DB and host
inbox (`syncd.jobs.dryrun`): it records nothing in the real state DB, not even
a `runs` row, and leaves host files and remotes as they were.
"""

from __future__ import annotations

import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from syncd import metrics
from syncd.config import Settings
from syncd.connectors.paging import CHECKPOINT_PREFIX, PageLedger, page_ledger
from syncd.errors import (
    CONNECTOR_STOP_ALERTS,
    AuthError,
    ConnectorStoppedError,
    ShutdownRequested,
    SyncdError,
)
from syncd.jobs.base import JobContext, JobSpec
from syncd.jobs.dryrun import dry_run_world
from syncd.logs import Logger
from syncd.progress import Progress, no_progress
from syncd.state import Store, queries
from syncd.state.kinds import RunStatus

log: Logger = structlog.get_logger("syncd.job")


def new_run_id(job: str) -> str:
    return f"{job.replace('.', '-')}-{uuid.uuid4().hex[:12]}"


@dataclass
class RunResult:
    job: str
    run_id: str
    status: RunStatus
    counts: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    intents: list[dict[str, Any]] = field(default_factory=list)  # dry runs only


def stopped_connectors(store: Store, spec: JobSpec) -> dict[str, str]:
    """Connectors of this job stopped by an open alert (refused credentials, a site of the
    other environment; cleared by a reload), with the kind of that alert."""
    return {
        a["subject"]: a["kind"]
        for kind in CONNECTOR_STOP_ALERTS
        for a in store.open_alerts(kind)
        if a["subject"] in spec.connectors
    }


def run_job(
    spec: JobSpec,
    settings: Settings,
    *,
    trigger: str = "schedule",
    dry_run: bool = False,
    stopping: threading.Event | None = None,
    wake_sender: Callable[[], None] = lambda: None,
    progress: Progress = no_progress,
) -> RunResult:
    run_id = new_run_id(spec.name)
    with structlog.contextvars.bound_contextvars(job=spec.name, run_id=run_id):
        if dry_run:
            with (
                dry_run_world(settings, with_inbox=spec.reads_host_inbox) as world,
                Store.open(world.db_path, migrate=False) as store,
            ):
                return _run(
                    spec, world, store, run_id, trigger, True, stopping, wake_sender, progress
                )
        store = Store.open(settings.db_path, migrate=False)
        try:
            return _run(
                spec, settings, store, run_id, trigger, dry_run, stopping, wake_sender, progress
            )
        finally:
            store.close()


def _run(
    spec: JobSpec,
    settings: Settings,
    store: Store,
    run_id: str,
    trigger: str,
    dry_run: bool,
    stopping: threading.Event | None,
    wake_sender: Callable[[], None],
    progress: Progress = no_progress,
) -> RunResult:
    bound = log.bind()
    stopped = stopped_connectors(store, spec)
    if stopped:
        store.start_run(spec.name, run_id, trigger)
        why = ", ".join(f"{name} (alert {kind})" for name, kind in stopped.items())
        reason = f"connector(s) {why} stopped; fix the configuration and reload"
        store.finish_run(run_id, "skipped", {}, error=reason)
        if not dry_run:
            metrics.observe_run(spec.name, "skipped", None, {})
        bound.warning("job_skipped", reason=reason)
        return RunResult(spec.name, run_id, "skipped", error=reason)

    ctx = JobContext(
        job=spec.name,
        run_id=run_id,
        settings=settings,
        store=store,
        log=bound,
        options=spec.options(settings),
        dry_run=dry_run,
        stopping=stopping or threading.Event(),
        wake_sender=(lambda: None) if dry_run else wake_sender,
        progress=progress,
    )
    store.start_run(spec.name, run_id, trigger)  # a dry run's goes to its copy
    started = time.monotonic()
    status: RunStatus = "ok"
    error: str | None = None
    trace: str | None = None
    intents: list[dict[str, Any]] = []
    ledger = PageLedger(read=store.get_checkpoint)
    try:
        with page_ledger(ledger):
            spec.run(ctx)
        if dry_run:
            status = "dry-run"
            intents = store.intents_of_run(run_id)
    except ShutdownRequested as exc:
        status, error = "interrupted", str(exc)
    except ConnectorStoppedError as exc:
        status, error = "failed", str(exc)
        for connector in spec.connectors:
            if connector == exc.connector:
                store.open_alert(exc.alert_kind, exc.alert_message(connector), subject=connector)
        event = "job_auth_failed" if isinstance(exc, AuthError) else "job_connector_stopped"
        bound.error(event, error=error)
    except SyncdError as exc:
        status, error = "failed", str(exc)
        _open_error_alert(store, exc, dry_run)
    except Exception as exc:  # a bug: recorded and logged as 'crashed', never raised on
        status, error = "crashed", f"{type(exc).__name__}: {exc}"
        trace = "".join(traceback.format_exception(exc)).rstrip()
    _save_page_history(store, ledger, run_id, dry_run)
    counts = dict(ctx.counts)
    store.finish_run(run_id, status, counts, warnings=ctx.warnings, error=_stored(error, trace))
    duration = time.monotonic() - started
    if not dry_run:
        _count_run(store, spec.name, run_id, status, duration, counts)
    if status == "ok" and ctx.counts.get("queued"):
        wake_sender()
    # The canonical line: one event per run with everything an operator greps for.
    level = (
        "info" if status in ("ok", "dry-run") else "warning" if status == "interrupted" else "error"
    )
    getattr(bound, level)(
        "job_finished",
        status=status,
        trigger=trigger,
        duration_s=round(duration, 3),
        error=error,
        **counts,
        **({"traceback": trace} if trace else {}),
    )
    return RunResult(spec.name, run_id, status, counts, error, intents)


def _stored(error: str | None, trace: str | None) -> str | None:
    """A crash keeps its traceback after the one-line error, in the run's `error` column."""
    return f"{error}\n{trace}" if trace else error


def _count_run(
    store: Store, job: str, run_id: str, status: str, seconds: float, counts: dict[str, int]
) -> None:
    """The run in the metrics: its status, duration and rows, and the intents it recorded
    per destination (read back from the outbox). Counting never fails a run."""
    metrics.observe_run(job, status, seconds, counts)
    try:
        metrics.intents_queued(queries.queued_by_destination(store, run_id))
    except Exception as exc:
        log.warning("metrics_not_counted", error=str(exc))


def _open_error_alert(store: Store, exc: SyncdError, dry_run: bool) -> None:
    """An error that needs an operator (its class names `alert_kind`) opens an alert."""
    kind = getattr(exc, "alert_kind", None)
    if kind and not dry_run:
        store.open_alert(kind, str(exc), subject=getattr(exc, "subject", ""))


def _save_page_history(store: Store, ledger: PageLedger, run_id: str, dry_run: bool) -> None:
    """Pages per list walked this run: the next walk's ceiling is derived from them; a
    complete walk also resolves that list's pagination alert. A dry run keeps nothing."""
    if dry_run:
        return
    for subject, record in ledger.changes().items():
        with store.transaction():
            store.set_checkpoint(CHECKPOINT_PREFIX + subject, str(record.basis), run_id=run_id)
            if record.complete:
                store.resolve_alerts("pagination", subject)
