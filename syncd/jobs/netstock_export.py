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

Every configured model is sent, an empty one as start + end(0) (a full snapshot: no open
POs is news); when every model is empty nothing is sent at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from syncd.clock import iso
from syncd.config import Schedule
from syncd.connectors.netstock.answers import JsonLines
from syncd.connectors.netstock.client import NetstockClient
from syncd.connectors.netstock.errors import ConflictError, OutcomeUnknownError
from syncd.connectors.netstock.settings import (
    DEFAULT_MODEL_ENDPOINTS,
    UNVERIFIED_ENDPOINTS,
    configured_chunk_size,
)
from syncd.errors import AlreadyDoneError, PermanentError, StateError
from syncd.jobs.base import JobContext, JobSpec
from syncd.jobs.netstock_dataset import (
    REJECT_SOURCE,
    Options,
    Rejected,
    Whole,
    ascii_escaped,
    rendered_lines,
)
from syncd.logs import redactor
from syncd.state import Store

ALERT_KIND: Final = "netstock_export"
SETTLE_FIRST_POLL = 1.0  # seconds before /model/status is asked again about a lagging count
SETTLE_MAX_POLL = 15.0  # ... doubling up to this


def _load(store: Store, export_id: int) -> dict[str, Any]:
    [row] = store.query("SELECT * FROM netstock_exports WHERE id = ?", [export_id])
    row["models"] = json.loads(row["models"])
    return row


def _save(store: Store, export: Mapping[str, Any], **changes: Any) -> None:
    fields = {**changes, "updated_at": iso()}
    if "models" in fields:
        fields["models"] = json.dumps(fields["models"], separators=(",", ":"))
    sets = ", ".join(f"{k} = ?" for k in fields)
    store.db.execute(
        f"UPDATE netstock_exports SET {sets} WHERE id = ?",
        [*fields.values(), export["id"]],
    )


def current_export(store: Store) -> dict[str, Any] | None:
    found = store.scalar(
        "SELECT id FROM netstock_exports WHERE state IN ('prepared', 'importing', 'processing') "
        "ORDER BY id LIMIT 1"
    )
    return _load(store, int(found)) if found is not None else None


def last_success_hash(store: Store) -> str | None:
    found: str | None = store.scalar(
        "SELECT snapshot_hash FROM netstock_exports WHERE state = 'complete' "
        "ORDER BY id DESC LIMIT 1"
    )
    return found


def group_size(ctx: JobContext, options: Options) -> int:
    """Lines per frozen row: the chunk size, so that a chunk is one stored text."""
    return options.chunk_size or configured_chunk_size(ctx.settings.connectors.netstock)


def _freeze(
    store: Store, options: Options, group: int, whole: Whole, rejects: list[Rejected]
) -> tuple[str, list[dict[str, Any]], int]:
    """Render every model once into temp.netstock_frozen, `group` lines per row (joined
    with newlines: a rendered line never holds one), hashing the same text; rows that
    cannot be sent go to `rejects` (not hashed: what is hashed is what is sent)."""
    digest = hashlib.sha256()
    insert = "INSERT INTO temp.netstock_frozen (model, seq, row) VALUES (?, ?, ?)"
    models: list[dict[str, Any]] = []
    total = 0
    for model in options.models:
        digest.update(f"\x1e{model}\x1f".encode())
        lines = rendered_lines(store, model, options, whole, rejects)
        seq = 0
        while batch := list(itertools.islice(lines, group)):
            text = ascii_escaped("\n".join(batch))
            digest.update(text.encode())
            digest.update(b"\n")
            store.db.conn.execute(insert, (model, seq, text))
            seq += len(batch)
        models.append(
            {"model": model, "rows": seq, "state": "pending", "lines_sent": 0, "chunks": 0}
        )
        total += seq
    return digest.hexdigest(), models, total


def record_rejects(store: Store, rejects: list[Rejected], run_id: str | None) -> int:
    """Record the rows left out, each once: one already open (the same row, field and
    reason, from an earlier export of the same data) is not added again."""
    found = store.list_rejects("open", REJECT_SOURCE, limit=len(rejects) + 1_000_000)
    known = {(r["source"], r["reference"], r["field"], r["reason"]) for r in found}
    new = [
        reject
        for reject in map(Rejected.as_reject, rejects)
        if (reject.source, reject.reference, reject.field, reject.reason) not in known
    ]
    with store.transaction():
        return store.add_rejects(new, run_id=run_id)


def prepare(ctx: JobContext, options: Options) -> dict[str, Any] | None:
    """Render the snapshot once: its hash decides, its text is what will be sent.

    The lines go to a temp table in one read transaction (one consistent view of the host
    tables, no write lock on the state DB while rendering); only a snapshot that differs
    from the last successful one is copied (SQL) into netstock_export_rows, with its
    export row, in one short transaction.
    """
    store = ctx.store
    conn = store.db.conn
    conn.execute("DROP TABLE IF EXISTS temp.netstock_frozen")
    conn.execute(
        "CREATE TEMP TABLE netstock_frozen (model TEXT NOT NULL, seq INTEGER NOT NULL, "
        "row TEXT NOT NULL, PRIMARY KEY (model, seq))"
    )
    # The temp table lives as long as the run's connection (dropping it page by page would
    # cost as much as writing it): closing the store discards it.
    own = not conn.in_transaction  # a dry run reads inside the runner's transaction
    if own:
        conn.execute("BEGIN")  # one consistent view of the host tables
    whole, rejects = Whole(options.integer_fractions), list[Rejected]()
    try:
        wanted, models, count = _freeze(store, options, group_size(ctx, options), whole, rejects)
    except BaseException:
        if own and conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    if own:
        conn.execute("COMMIT")
    if whole.converted:
        ctx.counts["fractions_converted"] += whole.converted
    if rejects:
        ctx.counts["rejected"] += len(rejects)
        if not ctx.dry_run:
            record_rejects(store, rejects, ctx.run_id)
    if count == 0:
        ctx.counts["empty"] += 1
        return None
    if wanted == last_success_hash(store):
        ctx.counts["unchanged"] += 1
        return None
    now = iso()
    with store.transaction():
        cursor = store.db.execute(
            "INSERT INTO netstock_exports (state, snapshot_hash, models, rows, created_at, "
            "updated_at, run_id) VALUES ('prepared', ?, ?, ?, ?, ?, ?)",
            [wanted, json.dumps(models, separators=(",", ":")), count, now, now, ctx.run_id],
        )
        export_id = int(cursor.lastrowid or 0)
        store.db.execute(
            "INSERT INTO netstock_export_rows (export_id, model, seq, row) "
            "SELECT ?, model, seq, row FROM temp.netstock_frozen ORDER BY model, seq",
            [export_id],
        )
    ctx.counts["prepared"] += 1
    return _load(store, export_id)


class _Stop(Exception):
    """The export cannot go on this run (an alert says why)."""


def run(ctx: JobContext) -> None:
    options: Options = ctx.options
    store = ctx.store
    export = current_export(store)
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
        guesses = [
            f"{m} -> {client.endpoint_for(m)}"
            for m in options.models
            if m in UNVERIFIED_ENDPOINTS
            and client.model_endpoints.get(m) == DEFAULT_MODEL_ENDPOINTS.get(m)
        ]
        if guesses:
            ctx.log.info("netstock_endpoint_unverified", entries=guesses)
        flow = ExportFlow(ctx, client, options, export)
        try:
            flow.drive()
        except _Stop as exc:
            ctx.log.warning("netstock_export_blocked", reason=str(exc))
            ctx.warnings.append(str(exc))


class ExportFlow:
    """One dataset export driven through its states (prepared -> importing -> processing),
    each step saved before the next request so a restart resumes where it stopped."""

    def __init__(
        self, ctx: JobContext, client: NetstockClient, options: Options, export: dict[str, Any]
    ) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.client = client
        self.options = options
        self.export = export
        self.chunk_size = options.chunk_size or client.chunk_size
        self.fresh = False  # this run opened the dataset: nothing to confirm on the server

    # bookkeeping

    def save(self, **changes: Any) -> None:
        with self.store.transaction():
            _save(self.store, self.export, **changes)
        self.export = _load(self.store, self.export["id"])

    @property
    def dataset_id(self) -> str:
        return str(self.export["dataset_id"])

    def drive(self) -> None:
        if self.export["state"] == "prepared":
            self.start_dataset()
        if self.export["state"] == "importing":
            self.import_models()
        if self.export["state"] == "processing":
            self.wait_for_processing()

    # prepared -> importing

    def start_dataset(self) -> None:
        attempted = self.export["start_attempted_at"] is not None
        self.save(start_attempted_at=self.export["start_attempted_at"] or iso())
        try:
            dataset_id = self.client.dataset_start()
            self.fresh = True
        except ConflictError as exc:
            dataset_id = exc.dataset_import_id
            if dataset_id is not None:
                self._closing(dataset_id)
            ours = dataset_id is not None and (attempted or self._empty(dataset_id))
            if not ours:
                message = (
                    f"a Netstock dataset import ({dataset_id or 'id not given'}) is open for "
                    "this user and was not started by this syncd; it must complete (or be "
                    "closed in Netstock) before syncd can export"
                )
                self.store.open_alert(ALERT_KIND, message, subject="dataset_open")
                raise _Stop(message) from None
            self.ctx.counts["adopted"] += 1
            self.ctx.log.warning("netstock_dataset_adopted", dataset_import_id=dataset_id)
        self.save(dataset_id=dataset_id, state="importing", started_at=iso())
        self.ctx.counts["datasets_started"] += 1
        self.ctx.check_stop()

    def _empty(self, dataset_id: str) -> bool:
        """Opened but never used: what our own start looks like when its answer was lost
        and the client's retry met the dataset it had just opened."""
        return not self.client.model_status(dataset_id)

    def _closing(self, dataset_id: str) -> None:
        """Stop if the open dataset is one syncd already failed: its /model/end answered 202
        and Netstock fails it only after its timeout period. It must not be adopted (it is
        doomed); the next run tries again. An alert after `failed_dataset_alert_after`."""
        row = self.store.query(
            "SELECT id, finished_at FROM netstock_exports WHERE dataset_id = ? AND state = "
            "'failed'",
            [dataset_id],
        )
        if not row:
            return
        message = (
            f"Netstock dataset {dataset_id}, which syncd failed (netstock_exports id "
            f"{row[0]['id']}), is still open: Netstock closes it when its model end's timeout "
            "period is over; a new dataset starts after that"
        )
        self.ctx.counts["waiting_for_close"] += 1
        finished = datetime.fromisoformat(str(row[0]["finished_at"]).replace("Z", "+00:00"))
        limit = self.options.failed_dataset_alert_after
        if (datetime.now(UTC) - finished).total_seconds() > limit:
            self.store.open_alert(
                ALERT_KIND,
                f"{message}; it has stayed open for more than {limit:g} s since: close it in "
                "Netstock",
                subject="dataset_open",
            )
        # Netstock opened nothing for this export (it names the failed dataset): drop it, so
        # that the next run freezes the data afresh, with the options then in force.
        with self.store.transaction():
            self.store.db.execute(
                "DELETE FROM netstock_export_rows WHERE export_id = ?", [self.export["id"]]
            )
            self.store.db.execute("DELETE FROM netstock_exports WHERE id = ?", [self.export["id"]])
        raise _Stop(message)

    # importing -> processing

    def server_models(self) -> dict[str, Any]:
        """The latest import of each model type, as /model/status reports it."""
        found: dict[str, Any] = {}
        for state in self.client.model_status(self.dataset_id):
            found[state.model] = state
        return found

    def import_models(self) -> None:
        if not self.fresh:  # resuming: has it moved on without us?
            status = self.client.dataset_status(self.dataset_id)
            if status.is_terminal or status.status.is_processing:
                self.save(state="processing", status_text=status.status_text)
                return
        server = self.server_models()
        for index in range(len(self.export["models"])):
            self.ctx.check_stop()
            entry = self.export["models"][index]
            if entry["state"] == "ended":
                continue
            remote = server.get(entry["model"])
            if entry["state"] == "pending":
                self.start_model(index, remote)
            if self.export["models"][index]["state"] == "open":
                self.send_model(index, remote)
        with contextlib.suppress(AlreadyDoneError):  # a replay: our earlier call went through
            self.client.start_processing(self.dataset_id)
        self.save(state="processing", processing_at=iso())
        self.ctx.check_stop()

    def update_model(self, index: int, **changes: Any) -> None:
        models = self.export["models"]
        models[index] = {**models[index], **changes}
        _save(self.store, self.export, models=models)

    def start_model(self, index: int, remote: Any) -> None:
        model = self.export["models"][index]["model"]
        if remote is None:
            with contextlib.suppress(ConflictError):  # open already: our start went through
                self.client.model_start(self.dataset_id, model)
        with self.store.transaction():
            self.update_model(index, state="open")
        self.export = _load(self.store, self.export["id"])
        self.ctx.counts["models_started"] += 1

    def send_model(self, index: int, remote: Any) -> None:
        entry = self.export["models"][index]
        model, total = entry["model"], entry["rows"]
        if remote is not None and remote.marked_to_end:
            self._ended(index, remote)
            return
        if remote is not None:
            self.reconcile(index, remote.actual_lines_imported)
        while self.export["models"][index]["lines_sent"] < total:
            self.ctx.check_stop()
            entry = self.export["models"][index]
            lines = self.chunk_lines(model, entry["lines_sent"], total)
            try:
                self.client.import_chunk(self.dataset_id, model, lines)
            except PermanentError as exc:
                if exc.status == 404:
                    self.no_endpoint(model, exc)
                if exc.status in (400, 422):
                    self.refused(index, lines.count, exc)
                raise
            except OutcomeUnknownError:
                self.ctx.counts["outcome_unknown"] += 1
                remote = self.server_models().get(model)
                count = remote.actual_lines_imported if remote else 0
                self.reconcile(index, count, in_flight=True)
                continue
            self.record_chunk(index, lines.count, "answer")
        try:
            self.client.model_end(self.dataset_id, model, total)
        except AlreadyDoneError:
            pass
        except PermanentError as exc:
            if exc.code == "line_count_mismatch":
                self.fail(f"model {model}: {exc.message}")
                raise _Stop(f"dataset {self.dataset_id} failed: {exc.message}") from None
            raise
        with self.store.transaction():
            self.update_model(index, state="ended")
        self.export = _load(self.store, self.export["id"])
        self.ctx.counts["models_ended"] += 1

    def refused(self, index: int, count: int, exc: PermanentError) -> None:
        """Netstock refuses a chunk's lines (a 400: e.g. a null where it wants a value). The
        frozen lines would be refused again every run, so this dataset is failed (its model
        ended with the intended count, as for a lost chunk) and the next cycle sends a fresh
        one, rendered with the options then in force (e.g. `null_fields = "omit"`)."""
        entry = self.export["models"][index]
        first = entry["lines_sent"]
        message = (
            f"model {entry['model']}: Netstock refused lines {first + 1}-{first + count} "
            f"of {entry['rows']} ({exc.message}); ending the model with the intended count "
            "fails this dataset, and the next cycle sends a fresh one"
        )
        self.ctx.counts["chunks_refused"] += 1
        with contextlib.suppress(PermanentError):
            self.client.model_end(self.dataset_id, entry["model"], entry["rows"])
        self.fail(message)
        raise _Stop(message) from None

    def no_endpoint(self, model: str, exc: PermanentError) -> None:
        """Netstock has no such import URL: the model -> endpoint map is wrong for this
        tenant. Say which entry, whether it was a guess, and how to change it; the export
        stays where it is until the map is fixed."""
        endpoint = self.client.endpoint_for(model)
        guess = (
            UNVERIFIED_ENDPOINTS.get(model)
            if self.client.model_endpoints.get(model) == (DEFAULT_MODEL_ENDPOINTS.get(model))
            else None
        )
        message = (
            f"Netstock answered 404 for {endpoint} (model {model}): {exc.message}. "
            + (f"That URL is an unverified correction ({guess}). " if guess else "")
            + f"Set connectors.netstock.options.model_endpoints.{model} to the tenant's URL"
            + (' or endpoint_map = "document"' if guess else "")
            + "; the export resumes from here"
        )
        self.store.open_alert(ALERT_KIND, message, subject=f"endpoint:{model}")
        raise _Stop(message) from None

    def _ended(self, index: int, remote: Any) -> None:
        """The server ended the model (our end's answer was lost): check the count."""
        entry = self.export["models"][index]
        if remote.minimum_expected_lines not in (None, entry["rows"]):
            self.ctx.log.error("netstock_model_count", model=entry["model"])
        with self.store.transaction():
            self.update_model(index, state="ended", lines_sent=entry["rows"])
        self.export = _load(self.store, self.export["id"])

    def chunk_lines(self, model: str, first: int, total: int) -> JsonLines:
        """The next chunk's lines as stored (normally one frozen row: rows hold a chunk's
        worth of newline-joined lines), joined with ',' for the request body."""
        wanted = min(self.chunk_size, total - first)
        cursor = self.store.db.conn.cursor()
        cursor.row_factory = None
        found = cursor.execute(
            "SELECT seq, row FROM netstock_export_rows WHERE export_id = ?1 AND model = ?2 "
            "AND seq >= (SELECT coalesce(max(seq), 0) FROM netstock_export_rows "
            "WHERE export_id = ?1 AND model = ?2 AND seq <= ?3) AND seq < ?4 ORDER BY seq",
            [self.export["id"], model, first, first + wanted],
        ).fetchall()
        parts: list[str] = []
        position, missing = first, wanted
        for seq, text in found:
            held = text.count("\n") + 1
            skip = position - seq
            take = min(held - skip, missing)
            if take <= 0:
                continue
            if skip == 0 and take == held:
                parts.append(text)
            else:
                parts.append("\n".join(text.split("\n")[skip : skip + take]))
            position += take
            missing -= take
            if not missing:
                break
        if missing:
            raise StateError(
                f"netstock export {self.export['id']}: frozen lines {position}.."
                f"{first + wanted - 1} of model {model} are missing from netstock_export_rows"
            )
        return JsonLines("\n".join(parts).replace("\n", ","), wanted)

    def record_chunk(self, index: int, rows: int, how: str) -> None:
        entry = self.export["models"][index]
        with self.store.transaction():
            self.store.db.execute(
                "INSERT INTO netstock_export_chunks (dataset_id, model, chunk_no, rows, "
                "first_seq, sent_at, how) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    self.dataset_id,
                    entry["model"],
                    entry["chunks"],
                    rows,
                    entry["lines_sent"],
                    iso(),
                    how,
                ],
            )
            models = list(self.export["models"])
            models[index] = {
                **entry,
                "lines_sent": entry["lines_sent"] + rows,
                "chunks": entry["chunks"] + 1,
            }
            _save(self.store, self.export, models=models)
        self.export["models"] = models  # what was committed: no need to read it back
        self.ctx.counts["chunks_sent" if how == "answer" else "chunks_confirmed"] += 1
        self.ctx.counts["lines_sent"] += rows

    def reconcile(self, index: int, actual: int, *, in_flight: bool = False) -> None:
        """Bring lines_sent in line with the server's count, or fail the dataset.

        `in_flight`: the next chunk was just posted and its outcome is unknown, so the count
        is given the settle time to show it too before the chunk is taken as not arrived.
        """
        entry = self.export["models"][index]
        sent = entry["lines_sent"]
        pending = min(self.chunk_size, entry["rows"] - sent)
        expected = sent + pending if in_flight else sent
        if actual < expected:  # Netstock may not count all it accepted yet: let it settle
            actual = self.settle(entry["model"], actual, expected)
        if actual == sent:
            return
        if actual == sent + pending and pending > 0:
            self.record_chunk(index, pending, "confirmed")  # the answer was lost, not the chunk
            return
        message = (
            f"model {entry['model']}: Netstock holds {actual} lines, syncd recorded {sent} "
            f"(+ one chunk of up to {pending}); ending it with the intended count fails this "
            "dataset so the next cycle sends a clean one"
        )
        with contextlib.suppress(PermanentError):
            self.client.model_end(self.dataset_id, entry["model"], entry["rows"])
        self.fail(message)
        raise _Stop(message)

    def settle(self, model: str, actual: int, expected: int) -> int:
        """A count below what was sent: poll /model/status with backoff (`count_settle_time`
        at most) until the count reaches `expected` and holds between two polls (a chunk
        whose answer was lost shows up behind the others); returns the last count seen."""
        budget = self.options.count_settle_time
        if budget <= 0:
            return actual
        self.ctx.counts["count_waits"] += 1
        self.ctx.log.warning(
            "netstock_count_lagging", model=model, remote_lines=actual, expected=expected
        )
        waited, delay, previous = 0.0, SETTLE_FIRST_POLL, actual
        while waited < budget:
            step = min(delay, budget - waited)
            if self.pause(step):
                self.ctx.check_stop()
            waited += step
            delay = min(delay * 2, SETTLE_MAX_POLL)
            remote = self.server_models().get(model)
            count = remote.actual_lines_imported if remote is not None else 0
            if count >= expected and count == previous:
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
            if status.is_success:
                self.complete(status.status_text)
                return
            if status.is_failure:
                self.fail(status.message or f"dataset ended {status.status_text} without success")
                return
            self.save(status_text=status.status_text)
            if time.monotonic() >= deadline or self.ctx.stopping.wait(self.options.poll_interval):
                self.ctx.counts["processing"] += 1
                return

    def complete(self, status_text: str) -> None:
        with self.store.transaction():
            _save(
                self.store,
                self.export,
                state="complete",
                status_text=status_text,
                success=1,
                finished_at=iso(),
            )
            self.store.db.execute(
                "DELETE FROM netstock_export_rows WHERE export_id = ?", [self.export["id"]]
            )
            self.store.resolve_alerts(ALERT_KIND)
        self.ctx.counts["datasets_completed"] += 1
        self.ctx.log.info("netstock_dataset_complete", dataset_import_id=self.dataset_id)

    def fail(self, message: str) -> None:
        try:
            audit = [e.model_dump() for e in self.client.audit_log(self.dataset_id)]
        except PermanentError as exc:
            audit = [{"message": f"audit log unavailable: {exc.message}", "log_type": "error"}]
        # Netstock's text, kept in netstock_exports beside the store's redacted columns.
        message, audit = redactor.text(message), redactor.any(audit)
        with self.store.transaction():
            _save(
                self.store,
                self.export,
                state="failed",
                success=0,
                message=message,
                audit=json.dumps(audit, default=str),
                finished_at=iso(),
            )
            self.store.db.execute(
                "DELETE FROM netstock_export_rows WHERE export_id = ?", [self.export["id"]]
            )
        self.store.open_alert(
            ALERT_KIND,
            f"Netstock dataset {self.dataset_id} failed: {redactor.cut(message, 500)} (audit log in "
            f"netstock_exports id {self.export['id']})",
            subject="dataset_failed",
        )
        self.ctx.counts["datasets_failed"] += 1
        self.ctx.log.error("netstock_dataset_failed", dataset_import_id=self.dataset_id)


SPEC = JobSpec(
    name="netstock.export",
    run=run,
    description="Export host data to Netstock as a dataset import, resumably, on change",
    default_schedule=Schedule(interval=3600),
    connectors=("netstock",),
    options_model=Options,
)
