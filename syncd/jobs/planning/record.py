"""Recording what happened to the rows of `planning.import`: each step reads what its
decision needs, asks `plan` for the decision, applies the returned `Plan` in one
transaction, and reports (the run's counts, warnings and log events)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from syncd.clock import iso
from syncd.connectors.import_jobs import ImportJob, JobTimeoutError
from syncd.jobs.base import JobContext
from syncd.jobs.planning.plan import (
    Finished,
    Refusal,
    finish_plan,
    is_clean,
    lost_plan,
    refusals_plan,
    still_open_plan,
    unsure_plan,
    wait_outcome,
)
from syncd.state import Store
from syncd.state.mirror.planning_import import job_row_count, job_rows
from syncd.state.plan import apply_plan


def record_refusals(ctx: JobContext, endpoint: str, refusals: Sequence[Refusal]) -> None:
    """Rows the local check refused: rejects, without a request (none in a dry run)."""
    if refusals and not ctx.dry_run:
        apply_plan(
            ctx.store, refusals_plan(endpoint, refusals, run_id=ctx.run_id), run_id=ctx.run_id
        )


def finish(ctx: JobContext, endpoint: str, job: ImportJob) -> None:
    """Record a terminal job in one transaction (`record_finished`), then report it."""
    report_finished(ctx, endpoint, job, record_finished(ctx.store, endpoint, job, ctx.run_id))


def record_finished(
    store: Store, endpoint: str, job: ImportJob, run_id: str | None, sent: int | None = None
) -> Finished:
    """Decide a terminal job and record it on `store` in one transaction: accepted rows,
    rejects, counts. The job's rows stay in SQLite (accepted ones are copied over from the
    job's JSON in one statement); they are read into Python only when some were refused or
    the counts do not add up. `sent`: the rows the job was sent, when known (else read).
    Touches no `JobContext`: a helper thread records on its own connection."""
    if sent is None:
        sent = job_row_count(store, job.jobId)
    rows = [] if is_clean(job, sent) else job_rows(store, job.jobId)
    decided = finish_plan(endpoint, job, sent, rows, now=iso(), run_id=run_id)
    apply_plan(store, decided.plan, run_id=run_id)
    return decided


def report_finished(ctx: JobContext, endpoint: str, job: ImportJob, decided: Finished) -> None:
    """A recorded job in the run's counts, warnings and log (on the job's thread)."""
    ctx.counts.update(decided.counts)
    if decided.warning is not None:
        ctx.warnings.append({"endpoint": endpoint, "job_id": job.jobId, "message": decided.warning})
        ctx.log.warning(
            "planning_import_job_errors", endpoint=endpoint, job_id=job.jobId, status=job.status
        )


def hold_unsure(
    ctx: JobContext, endpoint: str, rows: Sequence[Sequence[Any]], job_id: str | None, why: str
) -> None:
    """Rows an import may or may not have taken: held as rejects, an alert open."""
    plan = unsure_plan(endpoint, rows, job_id, why, now=iso(), run_id=ctx.run_id)
    apply_plan(ctx.store, plan, run_id=ctx.run_id)
    ctx.counts["ambiguous"] += len(rows)
    ctx.counts["rejected"] += len(rows)
    ctx.warnings.append({"endpoint": endpoint, "job_id": job_id, "message": why})
    ctx.log.warning("planning_import_ambiguous", endpoint=endpoint, rows=len(rows))


def wait_failed(
    ctx: JobContext, job_id: str, endpoint: str, exc: BaseException, *, hold_lost: bool
) -> bool:
    """A job still open at the timeout (False: it is polled again next run) or unknown to
    the API (True: LOST, its rows are planned again, or held when `hold_lost`: it may have
    imported them); anything else is raised."""
    outcome = wait_outcome(exc, hold_lost=hold_lost)
    if outcome is None:
        raise exc
    if outcome == "open":
        assert isinstance(exc, JobTimeoutError)
        apply_plan(ctx.store, still_open_plan(job_id, exc.job), run_id=ctx.run_id)
        ctx.counts["jobs_open"] += 1
        ctx.warnings.append({"endpoint": endpoint, "job_id": job_id, "message": str(exc)})
        ctx.log.warning("planning_import_job_open", endpoint=endpoint, job_id=job_id)
        return False
    message = f"job unknown: {exc}"
    if outcome == "unsure":
        hold_unsure(ctx, endpoint, job_rows(ctx.store, job_id), job_id, message)
        return True
    apply_plan(ctx.store, lost_plan(job_id, str(exc), now=iso()), run_id=ctx.run_id)
    ctx.counts["jobs_lost"] += 1
    ctx.warnings.append({"endpoint": endpoint, "job_id": job_id, "message": message})
    return True


def report_held(ctx: JobContext, endpoint: str, count: int, reason: str) -> None:
    """Rows of an endpoint not sent as they are (`held:<endpoint>`), with why: a warning."""
    if not count:
        return
    ctx.counts[f"held:{endpoint}"] = count
    ctx.warnings.append({"endpoint": endpoint, "message": f"{count} row(s) held: {reason}"})
    ctx.log.warning("planning_import_rows_held", endpoint=endpoint, rows=count)


def report_held_changed(ctx: JobContext, endpoint: str, count: int) -> None:
    """Rows changed after the API accepted them, held because the endpoint may add them."""
    if not count:
        return
    message = (
        f"{count} row(s) changed after the API accepted them, held: {endpoint} is "
        "not in upsert_endpoints, so sending them again could count them twice"
    )
    ctx.warnings.append({"endpoint": endpoint, "message": message})
    ctx.counts[f"held_changed:{endpoint}"] = count
    ctx.log.warning("planning_import_changes_held", endpoint=endpoint, rows=count)
