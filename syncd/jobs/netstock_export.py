"""`netstock.export`: send the host's data to Netstock as one dataset import, resumably.

**Diff.** Netstock wants full snapshots. Each run renders every model's rows ONCE, as the
JSON lines that will be sent (`row_json(map_*(row))`: sorted keys, non-ASCII escaped, exact
decimals; rendered fast by `RENDERERS` from plain tuples, text work in SQL; both in
`syncd.jobs.netstock_dataset`), into a temp
table, in one read transaction (no write lock held while rendering), hashing the same text
(`snapshot_hash`); when the hash equals the last dataset that completed successfully,
nothing is sent (no request at all beyond the token-less read of local tables). Otherwise
the rendered text is frozen (one SQL copy) into `netstock_export_rows`, a chunk's worth of
lines per row joined by newlines (a rendered line holds none), so a resumed export sends
exactly the data it started with, byte for byte, and a chunk's request body is built around
the stored text (`JsonLines`, sent as `RawJson`, never parsed or encoded again); a
`netstock_exports` row walks the state machine, persisted after every remote step:

    prepared -> importing -> processing -> complete | failed

- **prepared**: `start_attempted_at` is recorded, then `/dataset/start`. A
  `ConflictError(already_open)` naming a dataset is adopted when we had attempted a start
  (our answer was lost) or when it is empty (no model started); one syncd recorded as
  failed is waiting for Netstock to fail it (`/model/end` answers 202 and the count is
  judged after a timeout period): the run stops, the prepared export is dropped (Netstock
  opened nothing for it) and the next run prepares afresh (an alert after
  `failed_dataset_alert_after`, default 1 h); otherwise it belongs to someone else: an alert (`netstock_export`) is
  opened and the run stops, the export stays prepared.
- **importing**: per model (`models` JSON list, in order): `/model/start` (an
  `already_open` answer or a model seen open in `/model/status` is adopted), chunked
  `/import/<endpoint>` posts (`chunk_size` option, else the connector's), each recorded in
  `netstock_export_chunks` and `models[i].lines_sent` in ONE transaction with the answer;
  then `/model/end` with `total_lines_imported` = the model's rows (an `already_done` answer
  is done). On resume the dataset and models are confirmed with `/dataset/status` and
  `/model/status` first (a dataset opened by this very run skips the former): a count of
  `lines_sent + next chunk` means the last answer was lost and the chunk is recorded as
  `confirmed`; equal means it never arrived and it is sent. An `OutcomeUnknownError` on a
  chunk is checked the same way before anything is resent. Netstock imports
  asynchronously, so its count may lag what it accepted: a count BELOW `lines_sent` (or,
  after an `OutcomeUnknownError`, below `lines_sent + that chunk`) is polled again
  (`settle`: backoff from 1 s doubling to 15 s, for `count_settle_time` seconds at most,
  default 2 min) until it reaches that and holds between two polls (a chunk whose answer
  was lost shows up behind the others), then judged as above. Any other count (or one
  still below `lines_sent` when the time is up) cannot be repaired: the model is ended
  with the intended count, which makes Netstock fail the dataset (a mismatch; the document's
  `/model/end` answers 202 and fails the model after its timeout period, an older reading
  answers 400 at once: both are handled), so the next cycle starts a clean one. A count
  Netstock finds wrong only after the end (lines lost in its import) fails the dataset
  during processing: the status poll sees it, as any failure.
- **processing**: `/dataset/start_processing` (a replay is `already_done`), then
  `/dataset/status` is polled (up to `poll_timeout` seconds per run, then the next run goes
  on) through the status legend (`DatasetStatus`) to `Complete`. `success: true` -> complete
  (its `snapshot_hash` becomes the one to diff against, the frozen rows are dropped); else
  failed: `/dataset/full_audit_log` is stored in `audit` and an alert is opened.

`ctx.check_stop()` runs between remote steps, so a stopping daemon leaves at a checkpoint.

**Shape.** The snapshot (render, hash, freeze) is `syncd.jobs.netstock.snapshot`. This
module is the exchange's driver: each step is decided by a pure function of
`syncd.jobs.netstock.export_plan` (from the journal's values, Netstock's answers and `now`),
done (the client call), and recorded by applying the `Plan` that function returned
(`syncd.state.plan.apply_plan`, one transaction). The three tables are written only by
`syncd.state.mirror.netstock_export`. A step that cannot go on returns `Blocked` (logged as
`netstock_export_blocked` and kept as a run warning) instead of raising.

Every configured model is sent, an empty one as start + end(0) (a full snapshot: no open
POs is news); when every model is empty nothing is sent at all.
"""

from __future__ import annotations

import contextlib
import time

from syncd.clock import iso, utcnow
from syncd.config import Schedule
from syncd.connectors.netstock.answers import JsonLines, ModelState
from syncd.connectors.netstock.client import NetstockClient
from syncd.connectors.netstock.errors import ConflictError, OutcomeUnknownError
from syncd.errors import AlreadyDoneError, PermanentError, StateError
from syncd.jobs.base import JobContext, JobSpec
from syncd.jobs.netstock import export_plan as plan
from syncd.jobs.netstock.export_plan import Blocked, FailDataset
from syncd.jobs.netstock.snapshot import prepare
from syncd.jobs.netstock_dataset import Options
from syncd.logs import redactor
from syncd.state.mirror import netstock_export as journal
from syncd.state.mirror.netstock_export import ChunkHow, Export
from syncd.state.plan import Plan, apply_plan


def run(ctx: JobContext) -> None:
    options: Options = ctx.options
    export = journal.current_export(ctx.store)
    if export is None:
        export = prepare(ctx, options)
        if export is None:
            return
    elif ctx.dry_run:  # the real run would go on with the export a run before left open
        ctx.counts["would_resume"] += 1
    if ctx.dry_run:
        return
    ctx.check_stop()
    with NetstockClient(ctx.settings.connectors.netstock) as client:
        guesses = plan.unverified_endpoints(options.models, client.model_endpoints)
        if guesses:
            entries = [f"{m} -> {client.endpoint_for(m)}" for m in guesses]
            ctx.log.info("netstock_endpoint_unverified", entries=entries)
        blocked = ExportFlow(ctx, client, options, export).drive()
        if blocked is not None:
            ctx.log.warning("netstock_export_blocked", reason=blocked.reason)
            ctx.warnings.append(blocked.reason)


class ExportFlow:
    """One dataset export driven through its states (prepared -> importing -> processing):
    each step decided by `export_plan`, done, and recorded before the next
    request, so a restart resumes where it stopped. A step that cannot go on returns
    `Blocked` (its plan recorded), which ends the drive."""

    def __init__(
        self, ctx: JobContext, client: NetstockClient, options: Options, export: Export
    ) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.client = client
        self.options = options
        self.export = export
        self.chunk_size = options.chunk_size or client.chunk_size
        self.fresh = False  # this run opened the dataset: nothing to confirm on the server

    # bookkeeping

    def record(self, decided: Plan) -> None:
        apply_plan(self.store, decided, run_id=self.ctx.run_id)

    def record_and_reload(self, decided: Plan) -> None:
        self.record(decided)
        self.export = journal.load_export(self.store, self.export.id)

    def record_model(self, changed: tuple[Export, Plan]) -> None:
        export, decided = changed
        self.record(decided)
        self.export = export  # what was committed: no need to read it back

    def block(self, blocked: Blocked) -> Blocked:
        self.record(blocked.plan)
        return blocked

    @property
    def dataset_id(self) -> str:
        return str(self.export.dataset_id)

    def drive(self) -> Blocked | None:
        if self.export.state == "prepared" and (blocked := self.start_dataset()):
            return blocked
        if self.export.state == "importing" and (blocked := self.import_models()):
            return blocked
        if self.export.state == "processing":
            self.wait_for_processing()
        return None

    # prepared -> importing

    def start_dataset(self) -> Blocked | None:
        attempted = self.export.start_attempted_at is not None
        self.record_and_reload(plan.start_attempted(self.export, iso()))
        try:
            dataset_id = self.client.dataset_start()
            self.fresh = True
        except ConflictError as exc:
            adopted = self.open_dataset(exc.dataset_import_id, attempted)
            if isinstance(adopted, Blocked):
                return self.block(adopted)
            dataset_id = adopted
            self.ctx.counts["adopted"] += 1
            self.ctx.log.warning("netstock_dataset_adopted", dataset_import_id=dataset_id)
        self.record_and_reload(plan.dataset_started(self.export, dataset_id, iso()))
        self.ctx.counts["datasets_started"] += 1
        self.ctx.check_stop()
        return None

    def open_dataset(self, dataset_id: str | None, attempted: bool) -> str | Blocked:
        """Netstock holds a dataset open for this user: one syncd failed (wait for it to
        close), ours (adopted: its id), or someone else's."""
        if dataset_id is None:  # the answer names none: it cannot be taken for ours
            return plan.adopt_open_dataset(None, attempted, empty=False)
        failed = journal.failed_export(self.store, dataset_id)
        waiting = plan.waiting_for_close(
            self.export, dataset_id, failed, utcnow(), self.options.failed_dataset_alert_after
        )
        if waiting is not None:
            self.ctx.counts["waiting_for_close"] += 1
            return waiting
        empty = plan.must_check_empty(dataset_id, attempted) and not self.client.model_status(
            dataset_id
        )
        return plan.adopt_open_dataset(dataset_id, attempted, empty)

    # importing -> processing

    def server_models(self) -> dict[str, ModelState]:
        """The latest import of each model type, as /model/status reports it."""
        found: dict[str, ModelState] = {}
        for state in self.client.model_status(self.dataset_id):
            found[state.model] = state
        return found

    def import_models(self) -> Blocked | None:
        if not self.fresh:  # resuming: has it moved on without us?
            moved = plan.moved_on(self.export, self.client.dataset_status(self.dataset_id), iso())
            if moved is not None:
                self.record_and_reload(moved)
                return None
        server = self.server_models()
        for index, entry in enumerate(self.export.models):
            self.ctx.check_stop()
            if blocked := self.import_model(index, server.get(entry.model)):
                return blocked
        with contextlib.suppress(AlreadyDoneError):  # a replay: our earlier call went through
            self.client.start_processing(self.dataset_id)
        self.record_and_reload(plan.processing_started(self.export, iso()))
        self.ctx.check_stop()
        return None

    def import_model(self, index: int, remote: ModelState | None) -> Blocked | None:
        step = plan.model_step(self.export.models[index], remote)
        if step in ("open", "adopt_open"):
            if step == "open":
                with contextlib.suppress(ConflictError):  # open already: our start went through
                    self.client.model_start(self.dataset_id, self.export.models[index].model)
            self.record_model(plan.model_opened(self.export, index, iso()))
            self.ctx.counts["models_started"] += 1
            step = plan.model_step(self.export.models[index], remote)
        if step == "ended_remotely" and remote is not None:
            if plan.remote_count_differs(self.export.models[index], remote):
                self.ctx.log.error("netstock_model_count", model=self.export.models[index].model)
            self.record_model(plan.model_ended_remotely(self.export, index, iso()))
            return None
        if step == "check_count" and remote is not None:
            blocked = self.reconcile(index, remote.actual_lines_imported)
            if blocked is not None:
                return blocked
        if step == "done":
            return None
        return self.send_model(index)

    def send_model(self, index: int) -> Blocked | None:
        model, total = self.export.models[index].model, self.export.models[index].rows
        while chunk := plan.next_chunk(self.export.models[index], self.chunk_size):
            self.ctx.check_stop()
            lines = self.chunk_lines(model, chunk.first, chunk.count)
            try:
                self.client.import_chunk(self.dataset_id, model, lines)
            except PermanentError as exc:
                refusal = plan.chunk_refusal(exc.status)
                if refusal == "no_endpoint":
                    guess = plan.endpoint_guess(model, self.client.model_endpoints)
                    endpoint = self.client.endpoint_for(model)
                    return self.block(plan.no_endpoint(model, endpoint, guess, exc.message))
                if refusal == "refused":
                    self.ctx.counts["chunks_refused"] += 1
                    entry = self.export.models[index]
                    return self.fail(plan.refused_chunk(entry, lines.count, exc.message))
                raise
            except OutcomeUnknownError:
                self.ctx.counts["outcome_unknown"] += 1
                remote = self.server_models().get(model)
                count = remote.actual_lines_imported if remote else 0
                if blocked := self.reconcile(index, count, in_flight=True):
                    return blocked
                continue
            self.record_chunk(index, lines.count, "answer")
        try:
            self.client.model_end(self.dataset_id, model, total)
        except AlreadyDoneError:
            pass
        except PermanentError as exc:
            failure = plan.end_refused(self.dataset_id, model, exc.code, exc.message)
            if failure is None:
                raise
            return self.fail(failure)
        self.record_model(plan.model_ended(self.export, index, iso()))
        self.ctx.counts["models_ended"] += 1
        return None

    def chunk_lines(self, model: str, first: int, count: int) -> JsonLines:
        """The next chunk's lines as frozen, joined with ',' for the request body."""
        found = journal.frozen_rows(self.store, self.export.id, model, first, first + count)
        lines = plan.assemble_chunk(found, first, count)
        if isinstance(lines, plan.FrozenGap):
            raise StateError(
                f"netstock export {self.export.id}: frozen lines {lines.position}.."
                f"{first + count - 1} of model {model} are missing from netstock_export_rows"
            )
        return lines

    def record_chunk(self, index: int, rows: int, how: ChunkHow) -> None:
        self.record_model(plan.chunk_recorded(self.export, index, rows, how, iso()))
        self.ctx.counts["chunks_sent" if how == "answer" else "chunks_confirmed"] += 1
        self.ctx.counts["lines_sent"] += rows

    def reconcile(self, index: int, actual: int, *, in_flight: bool = False) -> Blocked | None:
        """Bring lines_sent in line with the server's count, or fail the dataset.

        `in_flight`: the next chunk was just posted and its outcome is unknown, so the count
        is given the settle time to show it too before the chunk is taken as not arrived.
        """
        entry = self.export.models[index]
        expected = plan.expected_count(entry, self.chunk_size, in_flight=in_flight)
        if actual < expected:  # Netstock may not count all it accepted yet: let it settle
            actual = self.settle(entry.model, actual, expected)
        verdict = plan.judge_count(entry, self.chunk_size, actual)
        if isinstance(verdict, plan.LostAnswer):
            self.record_chunk(
                index, verdict.rows, "confirmed"
            )  # the answer was lost, not the chunk
            return None
        if isinstance(verdict, FailDataset):
            return self.fail(verdict)
        return None

    def settle(self, model: str, actual: int, expected: int) -> int:
        """A count below what was sent: poll /model/status with backoff (`count_settle_time`
        at most) until the count settles (`plan.count_settled`); returns the last count seen."""
        budget = self.options.count_settle_time
        if budget <= 0:
            return actual
        self.ctx.counts["count_waits"] += 1
        self.ctx.log.warning(
            "netstock_count_lagging", model=model, remote_lines=actual, expected=expected
        )
        previous = actual
        for step in plan.settle_steps(budget):
            if self.pause(step):
                self.ctx.check_stop()
            remote = self.server_models().get(model)
            count = remote.actual_lines_imported if remote is not None else 0
            if plan.count_settled(count, previous, expected):
                self.ctx.log.info("netstock_count_settled", model=model, remote_lines=count)
                return count
            previous = count
        self.ctx.log.warning(
            "netstock_count_unsettled", model=model, remote_lines=previous, expected=expected
        )
        return previous

    def pause(self, seconds: float) -> bool:
        """Wait (True: the daemon is stopping)."""
        return self.ctx.stopping.wait(seconds)

    # processing -> complete | failed

    def wait_for_processing(self) -> None:
        deadline = time.monotonic() + self.options.poll_timeout
        while True:
            status = self.client.dataset_status(self.dataset_id)
            verdict = plan.processing_verdict(status)
            if isinstance(verdict, plan.Completed):
                self.record(plan.completed(self.export, verdict.status_text, iso()))
                self.ctx.counts["datasets_completed"] += 1
                self.ctx.log.info("netstock_dataset_complete", dataset_import_id=self.dataset_id)
                return
            if isinstance(verdict, FailDataset):
                self.fail(verdict)
                return
            self.record_and_reload(plan.status_seen(self.export, verdict.status_text, iso()))
            if time.monotonic() >= deadline or self.ctx.stopping.wait(self.options.poll_interval):
                self.ctx.counts["processing"] += 1
                return

    def fail(self, failure: FailDataset) -> Blocked | None:
        """End the model named (Netstock then fails the dataset too), keep Netstock's audit
        log with the failure, and open the alert."""
        if failure.end_model is not None:
            model, count = failure.end_model
            with contextlib.suppress(PermanentError):
                self.client.model_end(self.dataset_id, model, count)
        try:
            audit = [e.model_dump() for e in self.client.audit_log(self.dataset_id)]
        except PermanentError as exc:
            audit = [{"message": f"audit log unavailable: {exc.message}", "log_type": "error"}]
        # Netstock's text, kept in netstock_exports beside the store's redacted columns.
        message, audit = redactor.text(failure.message), redactor.any(audit)
        self.record(plan.failed(self.export, message, audit, iso()))
        self.ctx.counts["datasets_failed"] += 1
        self.ctx.log.error("netstock_dataset_failed", dataset_import_id=self.dataset_id)
        return None if failure.reason is None else Blocked(failure.reason)


SPEC = JobSpec(
    name="netstock.export",
    run=run,
    description="Export host data to Netstock as a dataset import, resumably, on change",
    default_schedule=Schedule(interval=3600),
    connectors=("netstock",),
    options_model=Options,
)
