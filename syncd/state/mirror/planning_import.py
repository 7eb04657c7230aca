"""The tables of `planning.import`: its accepted/failed ledger, `planning_import_jobs`
(the import jobs it submitted) and `planning_import_batches` (the rows of each job still
open), written only here.

A batch's rows are written first, before its submit, as one JSON array of
`[row_key, row_hash, reference, payload]` under a local id that never changes
(`batch_id`). The job row is small and names its batch: it is written before the POST of
a batch that may add rows (`SUBMITTING`, under a local id), or right after the 202 (the
remote job id, PENDING); it ends COMPLETED or FAILED (answered), LOST (the API no longer
knows it) or AMBIGUOUS (it may or may not have been imported), and its batch is then
deleted. A batch no job names (a run stopped between writing it and its submit, or its
submit failed) is deleted by `forget_unsent_batches`: its rows were not sent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from syncd.state.ledger import Ledger
from syncd.state.store import NewReject, Store

LEDGER: Final = Ledger(
    accepted="planning_import_accepted",
    failed="planning_import_failed",
    key=("endpoint", "row_key"),
    hash="row_hash",
)
LOST: Final = "LOST"  # the API no longer knows the job
SUBMITTING: Final = "SUBMITTING"  # recorded before the POST of an import that may add rows
AMBIGUOUS: Final = "AMBIGUOUS"  # ... whose answer was lost: its rows are held as rejects
_INSERT: Final = (
    "INSERT INTO planning_import_jobs (job_id, endpoint, status, row_count, submitted_at, "
    "run_id, batch_id) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_DROP_BATCH: Final = (
    "DELETE FROM planning_import_batches WHERE batch_id = "
    "(SELECT batch_id FROM planning_import_jobs WHERE job_id = ?)"
)


# --- writes outside a plan: the submit steps, each its own transaction ------------------------


def prepare_batch(
    store: Store, batch_id: str, endpoint: str, row_count: int, rows: str, *, run_id: str, at: str
) -> None:
    """A batch's rows (`job_rows` of it), written before its submit: the steps of the submit
    itself then write only small job rows that name it."""
    with store.transaction():
        store.db.execute(
            "INSERT INTO planning_import_batches (batch_id, endpoint, row_count, rows, "
            "prepared_at, run_id) VALUES (?, ?, ?, ?, ?, ?)",
            [batch_id, endpoint, row_count, rows, at, run_id],
        )


def record_submitting(
    store: Store,
    local_id: str,
    endpoint: str,
    row_count: int,
    batch_id: str,
    *,
    run_id: str,
    at: str,
) -> None:
    """A batch about to be POSTed to an endpoint that may add rows, under a local id."""
    with store.transaction():
        store.db.execute(_INSERT, [local_id, endpoint, SUBMITTING, row_count, at, run_id, batch_id])


def forget_submitting(store: Store, local_id: str) -> None:
    """The POST surely was not processed (refused, or never sent): the record and its batch
    go."""
    with store.transaction():
        store.db.execute(_DROP_BATCH, [local_id])
        store.db.execute("DELETE FROM planning_import_jobs WHERE job_id = ?", [local_id])


def forget_unsent_batches(store: Store) -> int:
    """Batches no job names (never submitted, or submitted and surely not processed): their
    rows were not sent and are planned again. Returns how many went."""
    with store.transaction():
        return store.db.execute(
            "DELETE FROM planning_import_batches WHERE NOT EXISTS (SELECT 1 FROM "
            "planning_import_jobs j WHERE j.batch_id = planning_import_batches.batch_id)"
        ).rowcount


def record_job(
    store: Store,
    job_id: str,
    status: str,
    endpoint: str,
    row_count: int,
    batch_id: str,
    *,
    run_id: str,
    at: str,
    replaces: str | None = None,
) -> None:
    """A submitted job (its 202), naming its batch; `replaces` its SUBMITTING record, if any
    (whose batch and count are the same). One statement each: a step of the submit."""
    if replaces is not None:
        store.write_one(
            "UPDATE planning_import_jobs SET job_id = ?, status = ? WHERE job_id = ?",
            [job_id, status, replaces],
        )
        return
    store.write_one(_INSERT, [job_id, endpoint, status, row_count, at, run_id, batch_id])


# --- reads -----------------------------------------------------------------------------------


def known_hashes(
    store: Store, which: Literal["accepted", "failed"], endpoint: str, keys: Sequence[str]
) -> dict[str, str]:
    """row_key -> row_hash for `keys` among the accepted or the failed rows of `endpoint`."""
    return {
        r["row_key"]: r["row_hash"]
        for r in LEDGER.rows(
            store, which, {"endpoint": endpoint}, "row_key", keys, ("row_key", "row_hash")
        )
    }


def jobs_with_status(store: Store, *statuses: str) -> list[dict[str, Any]]:
    """`job_id`, `endpoint` and `rows` (JSON text, its batch's) of the jobs in `statuses`,
    oldest first."""
    marks = ", ".join("?" * len(statuses))
    return store.query(
        "SELECT j.job_id, j.endpoint, b.rows FROM planning_import_jobs j LEFT JOIN "
        f"planning_import_batches b ON b.batch_id = j.batch_id WHERE j.status IN ({marks}) "
        "ORDER BY j.submitted_at, j.job_id",
        list(statuses),
    )


def job_row_count(store: Store, job_id: str) -> int:
    """How many rows a job was sent (0 for a job not recorded)."""
    value = store.scalar("SELECT row_count FROM planning_import_jobs WHERE job_id = ?", [job_id])
    return int(value or 0)


def job_rows(store: Store, job_id: str) -> list[list[Any]]:
    """The rows kept with a job: `[row_key, row_hash, reference, payload]` each, in the
    order they were sent (none once the job has ended)."""
    text = store.scalar(
        "SELECT b.rows FROM planning_import_jobs j JOIN planning_import_batches b "
        "ON b.batch_id = j.batch_id WHERE j.job_id = ?",
        [job_id],
    )
    return list(json.loads(text or "[]"))


# --- changes, applied within a plan ------------------------------------------------------------


@dataclass(frozen=True)
class JobStillOpen:
    """A job still PENDING/PROCESSING at the end of its wait: its last seen state."""

    job_id: str
    status: str
    processed_count: int
    failed_count: int

    def apply(self, store: Store) -> None:
        store.db.execute(
            "UPDATE planning_import_jobs SET status = ?, processed_count = ?, failed_count = ? "
            "WHERE job_id = ?",
            [self.status, self.processed_count, self.failed_count, self.job_id],
        )


@dataclass(frozen=True)
class JobEnded:
    """A job ended without an answer on its rows (LOST or AMBIGUOUS): why, and when."""

    job_id: str
    status: str
    errors: tuple[str, ...]
    finished_at: str

    def apply(self, store: Store) -> None:
        store.db.execute(_DROP_BATCH, [self.job_id])
        store.db.execute(
            "UPDATE planning_import_jobs SET status = ?, finished_at = ?, errors = ?, "
            "batch_id = NULL WHERE job_id = ?",
            [self.status, self.finished_at, json.dumps(list(self.errors)), self.job_id],
        )


@dataclass(frozen=True)
class JobFinished:
    """A job the API finished (COMPLETED or FAILED): its counts and the errors that name no
    row sent (None: there were none)."""

    job_id: str
    status: str
    row_count: int
    processed_count: int
    failed_count: int
    unmatched_errors: tuple[dict[str, Any], ...]
    finished_at: str

    def apply(self, store: Store) -> None:
        errors = json.dumps(list(self.unmatched_errors)) if self.unmatched_errors else None
        store.db.execute(_DROP_BATCH, [self.job_id])
        store.db.execute(
            "UPDATE planning_import_jobs SET status = ?, row_count = ?, processed_count = ?, "
            "failed_count = ?, errors = ?, finished_at = ?, batch_id = NULL WHERE job_id = ?",
            [
                self.status,
                self.row_count,
                self.processed_count,
                self.failed_count,
                errors,
                self.finished_at,
                self.job_id,
            ],
        )


@dataclass(frozen=True)
class RowFailed:
    """A row refused (by the API or the local check): its reject, and the version refused."""

    endpoint: str
    key: str
    digest: str
    reject: NewReject
    job_id: str | None
    run_id: str | None

    def apply(self, store: Store) -> None:
        LEDGER.fail(
            store,
            (self.endpoint, self.key),
            self.digest,
            self.reject,
            run_id=self.run_id,
            job_id=self.job_id,
        )


@dataclass(frozen=True)
class JobRowsAccepted:
    """Every row of a job except the `refused` indices, accepted as sent; the payload is kept
    when `keep_payload` (rows that may later be sent once more, closed). The rows are copied
    from the job's JSON in one statement, not read into Python."""

    endpoint: str
    job_id: str
    refused: tuple[int, ...]
    keep_payload: bool
    accepted_at: str

    def apply(self, store: Store) -> None:
        taken = (
            "SELECT json_extract(r.value, '$[0]') AS row_key, json_extract(r.value, '$[1]') "
            "AS row_hash, "
            + ("json_extract(r.value, '$[3]')" if self.keep_payload else "NULL")
            + " AS payload FROM planning_import_jobs j JOIN planning_import_batches b ON "
            "b.batch_id = j.batch_id, json_each(b.rows) r WHERE j.job_id = ? "
            "AND r.key NOT IN (SELECT value FROM json_each(?))"
        )
        LEDGER.accept_selected(
            store,
            {"endpoint": self.endpoint},
            taken,
            [self.job_id, json.dumps(list(self.refused))],
            ("row_key", "row_hash", "payload"),
            job_id=self.job_id,
            accepted_at=self.accepted_at,
        )


def forget_retried(store: Store, reject: dict[str, Any]) -> None:
    """`syncd rejects retry` on a planning reject: its failure goes, the row is planned again."""
    LEDGER.forget_retried(store, reject)
