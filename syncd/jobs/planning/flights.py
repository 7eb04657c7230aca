"""The import jobs of `planning.import` on their way: submit, record, poll, and the jobs a
run left open or unsure. HTTP happens here (helper threads); a finished job is recorded by
`record` on the helpers' connection, anything else on the job's own thread and connection."""

from __future__ import annotations

import contextlib
import contextvars
import json
import queue
import threading
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from syncd.clock import iso
from syncd.connectors.import_jobs import (
    PENDING,
    PROCESSING,
    ImportJob,
    ImportJobsClient,
    JobTimeoutError,
    UnsureSubmitError,
)
from syncd.errors import PermanentError
from syncd.jobs.base import JobContext
from syncd.jobs.planning.options import Options
from syncd.jobs.planning.record import (
    finish,
    hold_unsure,
    record_finished,
    report_finished,
    wait_failed,
)
from syncd.jobs.planning.rows import Planned, job_rows
from syncd.state import Store
from syncd.state.mirror.planning_import import (
    SUBMITTING,
    forget_submitting,
    forget_unsent_batches,
    jobs_with_status,
    prepare_batch,
    record_job,
    record_submitting,
)

FlightEvent = Literal["posted", "done", "recorded", "unsure", "failed"]
"""What a helper reports: a job submitted and recorded (`posted`), its final answer (`done`:
to record; `recorded`: recorded by the helper already), a submit whose answer was lost
(`unsure`), an error of the submit, the wait or the record (`failed`)."""


class Turns:
    """A lock whose urgent holders go first: while one waits, no other holder takes it.

    The helpers' connection is written by the submit steps (small, in the step every job
    takes in turn) and by the records of batches and finished jobs (larger, and in no
    hurry): with a plain lock a submit step waited for every record queued before it."""

    def __init__(self) -> None:
        self._ready = threading.Condition(threading.Lock())
        self._held = False
        self._urgent = 0  # urgent holders waiting

    @property
    def urgent_waiting(self) -> int:
        return self._urgent

    @contextlib.contextmanager
    def hold(self, *, urgent: bool = False) -> Iterator[None]:
        with self._ready:
            if urgent:
                self._urgent += 1
                while self._held:
                    self._ready.wait()
                self._urgent -= 1
            else:
                while self._held or self._urgent:
                    self._ready.wait()
            self._held = True
        try:
            yield
        finally:
            with self._ready:
                self._held = False
                self._ready.notify_all()


class _Cancelled(Exception):
    """A helper's job wait ended because the run is ending; the job stays recorded open."""


@dataclass
class _Flight:
    batch: Sequence[Planned]
    batch_id: str = field(default_factory=lambda: str(uuid.uuid4()))  # its rows' record
    job_id: str | None = None  # set once the job is recorded
    local_id: str | None = None  # its SUBMITTING record, before the POST (may_add only)


class Flights:
    """The batches of one endpoint on their way, up to `options.jobs_in_flight` jobs at once.

    Helper threads submit and poll while the next batch is planned here. Each batch's rows
    are written (`prepare_batch`) before its turn to submit. Submits go one at a time, and
    each job is recorded (a small row naming its batch, on the helpers' own connection)
    before the next submit starts: a crash leaves at most one job the API made and syncd
    does not know, exactly as with one job at a time. Polls run side by side; a finished job is recorded
    by its helper (`record.record_finished`, one transaction, one helper at a time on the
    helpers' connection) while this thread plans, and every outcome comes back through
    one queue to be counted here; the rare others (still open, lost, unsure) are recorded
    here, on the job's thread and connection.
    """

    def __init__(
        self, ctx: JobContext, client: ImportJobsClient, options: Options, endpoint: str
    ) -> None:
        self.ctx, self.client, self.options, self.endpoint = ctx, client, options, endpoint
        self.may_add = endpoint not in options.upsert_endpoints  # a re-send may count twice
        self.events: queue.SimpleQueue[tuple[FlightEvent, _Flight, Any]] = queue.SimpleQueue()
        self.pool = ThreadPoolExecutor(options.jobs_in_flight, thread_name_prefix="import-job")
        self.flying = 0
        self.blocked = False  # a job stayed open past job_timeout: send no more
        self.cancel = threading.Event()
        self.submitting = threading.Lock()  # one submit (and its record) at a time
        self.recording = Turns()  # one helper at a time on the recorder, submit steps first
        # the helpers record submitted and finished jobs on their own connection, so that
        # SQLite writes a job's outcome while this thread plans the next batch (an
        # in-memory store has only one: then the job's thread records them, from the queue)
        path = ctx.store.path
        self.recorder = Store.open(path, migrate=False) if path is not None else None
        self.wrote = False  # the recorder wrote something (known once closed)

    def send(self, batch: Sequence[Planned]) -> bool:
        """Hand a batch to a helper (after waiting for room); False once a job stayed open."""
        self.ctx.counts[f"to_send:{self.endpoint}"] += len(batch)
        self.handle_ready()
        while self.flying >= self.options.jobs_in_flight and not self.blocked:
            self._handle(*self.events.get())
        if self.blocked:
            return False
        self.ctx.check_stop()
        self.flying += 1
        self.pool.submit(contextvars.copy_context().run, self._fly, _Flight(batch))
        return True

    def handle_ready(self) -> None:
        """Record whatever the helpers have answered so far, without waiting."""
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return
            self._handle(*event)

    def drain(self) -> None:
        """Wait for every job in flight and record its outcome."""
        while self.flying:
            self._handle(*self.events.get())

    def close(self) -> None:
        """Stop (a finished, failed or stopping run): batches not yet submitted are not;
        jobs already submitted are recorded as open, so the next run polls them; their
        waits end at once."""
        self.cancel.set()
        while self.flying:
            kind, flight, value = self.events.get()
            try:
                self._handle(kind, flight, value)
            except Exception as exc:  # the run already ends with its own error
                self.ctx.log.warning(
                    "planning_import_flight_dropped", endpoint=self.endpoint, error=str(exc)
                )
        self.pool.shutdown(wait=True)
        if self.recorder is not None:
            forget_unsent_batches(self.recorder)  # batches whose submit never was
            self.wrote = self.recorder.changes_made() > 0
            self.recorder.close()

    # helper thread: HTTP, and the record of each submitted job
    def _fly(self, flight: _Flight) -> None:
        texts = [p.text for p in flight.batch]
        try:
            if self.recorder is not None:
                # the batch's rows, written before the submit lock: the steps every job
                # takes in turn then write only small job rows that name them
                rows = job_rows(flight.batch)  # rendered before taking the connection
                with self.recording.hold():
                    self._prepare(self.recorder, flight, rows)
            with self.submitting:
                if self.cancel.is_set():
                    raise _Cancelled()
                if self.may_add and self.recorder is not None:
                    # recorded before the POST: a crash before its answer is recorded leaves
                    # this, and the next run holds the rows instead of sending them again
                    flight.local_id = f"{SUBMITTING.lower()}:{flight.batch_id}"
                    with self.recording.hold(urgent=True):
                        record_submitting(
                            self.recorder,
                            flight.local_id,
                            self.endpoint,
                            len(flight.batch),
                            flight.batch_id,
                            run_id=self.ctx.run_id,
                            at=iso(),
                        )
                try:
                    job = self.client.submit(
                        self.endpoint, texts, resend_when_unsure=not self.may_add, rendered=True
                    )
                except UnsureSubmitError:
                    raise
                except BaseException:
                    if flight.local_id is not None and self.recorder is not None:
                        with self.recording.hold(urgent=True):
                            forget_submitting(self.recorder, flight.local_id)
                        flight.local_id = None
                    raise  # its batch, named by no job, goes when the flights close
                if self.recorder is not None:
                    with self.recording.hold(urgent=True):
                        self._record(self.recorder, job, flight, flight.local_id)
        except UnsureSubmitError as exc:
            self.events.put(("unsure", flight, exc))
            return
        except BaseException as exc:
            self.events.put(("failed", flight, exc))
            return
        self.events.put(("posted", flight, job))
        try:
            if self.cancel.is_set():
                raise _Cancelled()
            final = self.client.wait_for_job(
                job.jobId, timeout=self.options.job_timeout, sleep=self._sleep
            )
            if self.recorder is None:
                self.events.put(("done", flight, final))
                return
            with self.recording.hold():
                decided = record_finished(
                    self.recorder, self.endpoint, final, self.ctx.run_id, len(flight.batch)
                )
        except BaseException as exc:
            self.events.put(("failed", flight, exc))
            return
        self.events.put(("recorded", flight, (final, decided)))

    def _sleep(self, seconds: float) -> None:
        if self.cancel.wait(seconds) or self.ctx.stopping.is_set():
            raise _Cancelled()

    # the job's thread: SQLite
    def _handle(self, kind: FlightEvent, flight: _Flight, value: Any) -> None:
        if kind == "posted":
            if self.recorder is None:
                self._prepare(self.ctx.store, flight, job_rows(flight.batch))
                self._record(self.ctx.store, value, flight)
            flight.job_id = value.jobId
            self.ctx.counts["jobs_submitted"] += 1
            self.ctx.counts[f"sent:{self.endpoint}"] += len(flight.batch)
            return
        self.flying -= 1
        if kind == "recorded":
            report_finished(self.ctx, self.endpoint, *value)
        elif kind == "done":
            finish(self.ctx, self.endpoint, value)
        elif kind == "unsure":
            rows = [[p.key, p.digest, p.reference, json.loads(p.text)] for p in flight.batch]
            hold_unsure(self.ctx, self.endpoint, rows, flight.local_id, value.message)
        elif flight.job_id is None:
            if not isinstance(value, _Cancelled):
                raise value  # the submit failed: nothing recorded, the rows are planned again
        elif not isinstance(value, _Cancelled) and not wait_failed(
            self.ctx, flight.job_id, self.endpoint, value, hold_lost=self.may_add
        ):
            self.blocked = True

    def _prepare(self, store: Store, flight: _Flight, rows: str) -> None:
        """A batch's rows (`rows`: `job_rows` of it), written under its batch id."""
        prepare_batch(
            store,
            flight.batch_id,
            self.endpoint,
            len(flight.batch),
            rows,
            run_id=self.ctx.run_id,
            at=iso(),
        )

    def _record(
        self, store: Store, job: ImportJob, flight: _Flight, replaces: str | None = None
    ) -> None:
        """A submitted job, naming its batch (the keys, hashes and host references of the
        rows it carries, written before its submit).

        Recorded as soon as the 202 is in (replacing its SUBMITTING record, if any): a crash
        before this re-sends the batch next run where the endpoint upserts (a second job, no
        duplicate data), and holds it otherwise; after it, the job is polled again."""
        record_job(
            store,
            job.jobId,
            job.status,
            self.endpoint,
            len(flight.batch),
            flight.batch_id,
            run_id=self.ctx.run_id,
            at=iso(),
            replaces=replaces,
        )


def await_job(
    ctx: JobContext, client: ImportJobsClient, options: Options, job_id: str, endpoint: str
) -> bool:
    """Poll a job to its end and record the outcome; False when it is still open."""
    try:
        job = client.wait_for_job(job_id, timeout=options.job_timeout)
    except (JobTimeoutError, PermanentError) as exc:
        return wait_failed(
            ctx, job_id, endpoint, exc, hold_lost=endpoint not in options.upsert_endpoints
        )
    finish(ctx, endpoint, job)
    return True


def resume_open_jobs(ctx: JobContext, client: ImportJobsClient, options: Options) -> set[str]:
    """Hold the batches a previous run was submitting when it stopped (it may or may not
    have been imported), poll jobs it left open; returns the endpoints whose job is still
    open."""
    for unsure in jobs_with_status(ctx.store, SUBMITTING):
        hold_unsure(
            ctx,
            unsure["endpoint"],
            json.loads(unsure["rows"] or "[]"),
            unsure["job_id"],
            "syncd stopped after sending an import and before recording its answer",
        )
    forget_unsent_batches(ctx.store)  # a run stopped before submitting them: not sent
    blocked: set[str] = set()
    for job in jobs_with_status(ctx.store, PENDING, PROCESSING):
        ctx.check_stop()
        ctx.counts["jobs_resumed"] += 1
        if job["endpoint"] in blocked or not await_job(
            ctx, client, options, job["job_id"], job["endpoint"]
        ):
            blocked.add(job["endpoint"])
    return blocked
