"""The decisions of `planning.import`, pure: plain values in (mapped rows, the ledger's
hashes, a job status answer, `now`), a decision out (rows to send, a `Plan` to apply,
counts and a warning). No I/O here: the job reads, calls these, applies the plan.

- `key_chunk` + `plan_chunk`: which mapped rows to send, against what the API accepted and
  what it refused (the ledger's hashes), and which the local check refuses, each with the
  field the check names;
- `finish_plan`: what a finished job's status answer means: rows accepted, each refused
  row (by its index in the batch, so its key) with the error's own field and message, or
  none accepted when its counts do not add up;
- `wait_outcome`, `still_open_plan`, `lost_plan`, `unsure_plan`: a job whose answer did
  not come (still open, unknown to the API, or a submit whose answer was lost).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, cast

from syncd.connectors.import_jobs import (
    ImportJob,
    JobTimeoutError,
    RowError,
    key_function,
    row_problems,
)
from syncd.errors import PermanentError
from syncd.jobs.planning.options import CLOSING
from syncd.jobs.planning.rows import Candidate, Planned, keyed
from syncd.state import NewReject
from syncd.state.mirror.planning_import import (
    AMBIGUOUS,
    LOST,
    JobEnded,
    JobFinished,
    JobRowsAccepted,
    JobStillOpen,
    RowFailed,
)
from syncd.state.plan import Change, OpenAlert, Plan

REJECT_SOURCE: Final = "planning:"
AMBIGUOUS_ALERT: Final = "planning_import_ambiguous"
UNACCOUNTED_ALERT: Final = "planning_import_unaccounted"
KEY_MISSING: Final = "natural key missing"

RowAction = Literal["unchanged", "failed", "held_changed", "send"]


def plan_row(
    digest: str, accepted_hash: str | None, failed_hash: str | None, *, may_add: bool = False
) -> RowAction:
    """ "unchanged" (the API has exactly this), "failed" (refused as is: wait for a change or a
    retry), "held_changed" (changed since the API accepted it, and the API `may_add` a row
    sent again beside the old one instead of replacing it) or "send"."""
    if accepted_hash == digest:
        return "unchanged"
    if failed_hash == digest:
        return "failed"
    if may_add and accepted_hash is not None:
        return "held_changed"
    return "send"


# --- which rows to send ------------------------------------------------------------------------


Keyed = Planned
"""A mapped row, keyed (`?<reference>` when it has no natural key), rendered and hashed:
the row `plan_chunk` sends is this same tuple (one is made for every row planned)."""


@dataclass(frozen=True)
class KeyedChunk:
    rows: tuple[Keyed, ...]
    held: int  # rows not sent as they are (they would reset what the planner owns)
    keys: tuple[str, ...]  # the rows' keys, in order (made with them, where they are made)


def key_chunk(endpoint: str, chunk: Sequence[Candidate] | Sequence[Planned]) -> KeyedChunk:
    """Each row rendered once (the text that is hashed, kept and sent) and keyed (`keyed`).
    A chunk read keyed already (demand history's: `hostrows.demand_candidates`) passes as
    it is."""
    if chunk and type(chunk[0]) is Planned:
        done = cast("tuple[Planned, ...]", tuple(chunk))
        return KeyedChunk(done, 0, tuple(r.key for r in done))
    key_of = key_function(endpoint)
    rows = []
    held = 0
    for candidate in cast("Sequence[Candidate]", chunk):
        if candidate.held is not None:
            held += 1
            continue
        rows.append(keyed(key_of, candidate))
    return KeyedChunk(tuple(rows), held, tuple(r.key for r in rows))


@dataclass(frozen=True)
class Refusal:
    """A row that is not imported: where it came from, its version, and why, with the field
    named where the problem was found (None: the row as a whole)."""

    key: str
    digest: str
    reference: str
    payload: Any
    reason: str
    field: str | None
    job_id: str | None = None


@dataclass(frozen=True)
class ChunkPlan:
    send: tuple[Planned, ...]
    refusals: tuple[Refusal, ...]
    counts: Counter[str] = field(default_factory=Counter)


def plan_chunk(
    endpoint: str,
    chunk: KeyedChunk,
    accepted: Mapping[str, str],
    failed: Mapping[str, str],
    *,
    may_add: bool,
) -> ChunkPlan:
    """The rows to send: those whose hash differs from what the API accepted and from what
    it refused (`plan_row`), and that pass the local check (one validation call for the
    chunk); the others counted by what happens to them, refused ones kept with the field
    and message the check gives. `accepted`/`failed`: row_key -> hash from the ledger."""
    to_send: list[Keyed] = []
    actions: Counter[str] = Counter()
    for row in chunk.rows:
        accepted_hash = accepted.get(row.key)
        failed_hash = failed.get(row.key)
        if accepted_hash is None and failed_hash is None:  # never sent: plan_row's "send"
            to_send.append(row)
            continue
        action = plan_row(
            row.digest,
            accepted_hash,
            failed_hash,
            may_add=may_add and not row.closing,  # a closing row adds nothing
        )
        if action == "send":
            to_send.append(row)
        else:
            actions[action] += 1
    actions["send"] += len(to_send)
    if chunk.held:
        actions[f"held:{endpoint}"] += chunk.held
    unchecked = [i for i, row in enumerate(to_send) if not row.checked]
    found = row_problems(endpoint, [to_send[i].payload for i in unchecked]) if unchecked else {}
    problems = {unchecked[n]: why for n, why in found.items()}
    send: list[Planned] = []
    refusals: list[Refusal] = []
    for index, row in enumerate(to_send):
        if index in problems or row.key.startswith("?"):
            found_here = problems.get(index)
            reason = "; ".join(str(p) for p in found_here) if found_here else KEY_MISSING
            first = found_here[0].field if found_here else None
            refusals.append(Refusal(row.key, row.digest, row.reference, row.payload, reason, first))
            continue
        send.append(row)
    if refusals:
        actions["refused"] += len(refusals)
        actions["rejected"] += len(refusals)
    return ChunkPlan(tuple(send), tuple(refusals), actions)


def failure(endpoint: str, refusal: Refusal, *, run_id: str | None) -> RowFailed:
    """A refused row's reject (tied to its host row: `<file>:<line> <key>`) and the version
    refused, so it is not sent again until it changes or the reject is retried."""
    return RowFailed(
        endpoint,
        refusal.key,
        refusal.digest,
        NewReject(
            REJECT_SOURCE + endpoint,
            f"{refusal.reference} {refusal.key}",
            refusal.reason,
            field=refusal.field,
            payload={"job_id": refusal.job_id, "row": refusal.payload},
        ),
        job_id=refusal.job_id,
        run_id=run_id,
    )


def refusals_plan(endpoint: str, refusals: Sequence[Refusal], *, run_id: str | None) -> Plan:
    return Plan(changes=tuple(failure(endpoint, r, run_id=run_id) for r in refusals))


# --- what a finished job means -----------------------------------------------------------------


def match_errors(
    job: ImportJob, keys: Sequence[str]
) -> tuple[dict[int, list[RowError]], list[RowError]]:
    """Row errors by the index of the sent row they name, and those naming none. The error's
    row index is trusted unless its key names another sent row."""
    index = {k: i for i, k in enumerate(keys)}
    found: dict[int, list[RowError]] = {}
    unmatched: list[RowError] = []
    for error in job.errors:
        seq = error.row
        if error.key and (seq is None or not 0 <= seq < len(keys) or keys[seq] != error.key):
            seq = index.get(error.key, seq)
        if seq is None or not 0 <= seq < len(keys):
            unmatched.append(error)
            continue
        found.setdefault(seq, []).append(error)
    return found, unmatched


def count_mismatch(job: ImportJob, sent: int, refused: int, unmatched: int) -> str | None:
    """Why a COMPLETED job's counts do not account for the rows sent (None: they do).

    Rows are recorded as accepted only when the job names every refused row and its counts
    agree: rowCount = rows sent, failedCount = rows named by errors, and processedCount -
    failedCount = the rows left, i.e. those recorded as accepted. Anything else (errors
    without a row index, a failedCount counting errors, a processedCount counting only the
    imported rows) leaves it open which rows the API took."""
    problems = []
    if unmatched:
        problems.append(f"{unmatched} error(s) name no row sent")
    if job.rowCount != sent:
        problems.append(f"rowCount {job.rowCount} for {sent} rows sent")
    if job.failedCount != refused:
        problems.append(f"failedCount {job.failedCount} but {refused} row(s) named by errors")
    if job.processedCount - job.failedCount != sent - refused:
        problems.append(
            f"processedCount - failedCount = {job.processedCount - job.failedCount}, "
            f"not the {sent - refused} row(s) no error names"
        )
    return "; ".join(problems) or None


def is_clean(job: ImportJob, sent: int) -> bool:
    """Every row sent imported, no error: the job's rows need not be read to record it."""
    return not job.errors and job.rowCount == job.processedCount == sent and not job.failedCount


@dataclass(frozen=True)
class Finished:
    """A finished job, decided: what to record, the rows refused, the counts it adds to the
    run and the warning it gives (None: none)."""

    plan: Plan
    refusals: tuple[Refusal, ...]
    accepted: int
    counts: Counter[str]
    warning: str | None


def finish_plan(
    endpoint: str,
    job: ImportJob,
    sent: int,
    rows: Sequence[Sequence[Any]],
    *,
    now: str,
    run_id: str | None,
) -> Finished:
    """A COMPLETED or FAILED job: each row an error names is refused with the error's field
    and message; the rest are accepted, unless the job FAILED (nothing accepted: planned
    again) or its counts do not account for every row (`count_mismatch`: then each is
    refused too and an alert opens). `sent`: the rows it was sent; `rows`: those rows
    (`[key, hash, reference, payload]`), needed only when the job is not `is_clean`."""
    clean = is_clean(job, sent)
    errors: dict[int, list[RowError]] = {}
    unmatched: list[RowError] = []
    if not clean:
        sent = len(rows)
        errors, unmatched = match_errors(job, [r[0] for r in rows])
    mismatch = (
        count_mismatch(job, sent, len(errors), len(unmatched))
        if job.succeeded and not clean
        else None
    )
    refusals = [
        Refusal(
            rows[seq][0],
            rows[seq][1],
            rows[seq][2],
            rows[seq][3],
            "; ".join(e.message or "rejected" for e in problems),
            next((e.field for e in problems if e.field), None),
            job.jobId,
        )
        for seq, problems in sorted(errors.items())
    ]
    alerts: list[OpenAlert] = []
    if mismatch:
        why = (
            f"not recorded as accepted: job {job.jobId} is COMPLETED but its counts do "
            f"not add up ({mismatch}); check the row in the planning tool, then "
            "`syncd rejects retry` sends it again"
        )
        refusals += [
            Refusal(key, digest, reference, payload, why, None, job.jobId)
            for seq, (key, digest, reference, payload) in enumerate(rows)
            if seq not in errors
        ]
        alerts.append(
            OpenAlert(
                UNACCOUNTED_ALERT,
                f"planning.import {endpoint}: job {job.jobId} COMPLETED with counts that do "
                f"not add up ({mismatch}); its {sent - len(errors)} row(s) no error names "
                "are kept as rejects, not recorded as accepted",
                subject=endpoint,
            )
        )
    changes: list[Change] = [failure(endpoint, r, run_id=run_id) for r in refusals]
    accepted = 0
    if job.succeeded and not mismatch:
        changes.append(
            JobRowsAccepted(
                endpoint, job.jobId, tuple(sorted(errors)), endpoint in CLOSING, accepted_at=now
            )
        )
        accepted = sent - len(errors)
    changes.append(
        JobFinished(
            job.jobId,
            job.status,
            job.rowCount,
            job.processedCount,
            job.failedCount,
            tuple(e.model_dump(mode="json") for e in unmatched),
            finished_at=now,
        )
    )
    counts: Counter[str] = Counter()
    counts["rowCount"] += job.rowCount
    counts["processedCount"] += job.processedCount
    counts["failedCount"] += job.failedCount
    counts["pushed"] += accepted
    counts["rejected"] += sent if mismatch else len(errors)
    counts["jobs_completed" if job.succeeded else "jobs_failed"] += 1
    if mismatch:
        counts["unaccounted"] += sent - len(errors)
    warning = None
    if unmatched or mismatch or not job.succeeded:
        messages = [e.message for e in unmatched]
        if mismatch:
            messages.append(f"counts do not add up: {mismatch}")
        warning = "; ".join(messages) or "job FAILED"
    plan = Plan(changes=tuple(changes), alerts=tuple(alerts))
    return Finished(plan, tuple(refusals), accepted, counts, warning)


# --- a job whose answer did not come -----------------------------------------------------------

WaitOutcome = Literal["open", "lost", "unsure"]


def wait_outcome(exc: BaseException, *, hold_lost: bool) -> WaitOutcome | None:
    """A poll that ended without a terminal answer: "open" (still running at the timeout:
    polled again next run), "lost" (the API no longer knows it: its rows are planned
    again) or "unsure" (unknown, and the endpoint may add rows: `hold_lost`, it may have
    imported them). None: not a job's answer, an error to raise."""
    if isinstance(exc, JobTimeoutError):
        return "open"
    if not isinstance(exc, PermanentError) or exc.status != 404:
        return None
    return "unsure" if hold_lost else "lost"


def still_open_plan(job_id: str, last: ImportJob) -> Plan:
    return Plan(changes=(JobStillOpen(job_id, last.status, last.processedCount, last.failedCount),))


def lost_plan(job_id: str, message: str, *, now: str) -> Plan:
    return Plan(changes=(JobEnded(job_id, LOST, (message,), finished_at=now),))


def unsure_plan(
    endpoint: str,
    rows: Sequence[Sequence[Any]],
    job_id: str | None,
    why: str,
    *,
    now: str,
    run_id: str | None,
) -> Plan:
    """Rows an import may or may not have taken, where sending them again could count them
    twice: each a reject (retry sends it again), the job AMBIGUOUS, an alert open. The API
    lists no jobs, so syncd cannot find out by itself."""
    reason = (
        f"not sent again: {why}. The API lists no jobs to check, and {endpoint} may add "
        "rows rather than replace them (upsert_endpoints): check the planning tool, then "
        "`syncd rejects retry` sends the row again, `syncd rejects drop` leaves it"
    )
    changes: list[Change] = [
        failure(
            endpoint,
            Refusal(key, digest, reference, payload, reason, None, job_id),
            run_id=run_id,
        )
        for key, digest, reference, payload in rows
    ]
    if job_id is not None:
        changes.append(JobEnded(job_id, AMBIGUOUS, (why,), finished_at=now))
    alert = OpenAlert(
        AMBIGUOUS_ALERT,
        f"planning.import {endpoint}: {len(rows)} row(s) may or may not have been "
        f"imported ({why}); held as rejects, not sent again",
        subject=endpoint,
    )
    return Plan(changes=tuple(changes), alerts=(alert,))
