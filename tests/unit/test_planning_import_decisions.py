"""The decisions of `planning.import` as pure functions: rows to send, what a job's status
answer means, unsure and lost jobs. Plain values in and out: no server, no database."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.connectors.import_jobs import (
    ImportJob,
    JobTimeoutError,
    RowProblem,
    UnsureSubmitError,
    row_problems,
)
from syncd.errors import PermanentError
from syncd.jobs.planning.plan import (
    AMBIGUOUS_ALERT,
    KEY_MISSING,
    UNACCOUNTED_ALERT,
    Refusal,
    finish_plan,
    is_clean,
    key_chunk,
    lost_plan,
    plan_chunk,
    still_open_plan,
    unsure_plan,
    wait_outcome,
)
from syncd.jobs.planning.rows import Candidate, catalog_row, purchase_order_row
from syncd.state.mirror.planning_import import (
    AMBIGUOUS,
    LOST,
    JobEnded,
    JobFinished,
    JobRowsAccepted,
    JobStillOpen,
    RowFailed,
)
from syncd.state.plan import OpenAlert

NOW = "2026-01-05T10:00:00.000Z"


def _catalog(*ids: str) -> list[Candidate]:
    return [
        Candidate(catalog_row({"article_id": i, "name": f"n{i}"}), f"articles.csv:{n + 2}")
        for n, i in enumerate(ids)
    ]


def _rows(*keys: str) -> list[list[Any]]:
    """The rows kept with a job: [key, hash, reference, payload]."""
    return [[k, f"h-{k}", f"articles.csv:{n + 2}", {"externalId": k}] for n, k in enumerate(keys)]


def _job(status: str = "COMPLETED", **fields: Any) -> ImportJob:
    return ImportJob.model_validate({"jobId": "J1", "status": status, **fields})


def _failed(plan_changes: tuple[Any, ...]) -> list[RowFailed]:
    return [c for c in plan_changes if isinstance(c, RowFailed)]


# --- which rows to send --------------------------------------------------------------------------


def test_nothing_changed_sends_nothing() -> None:
    """Every row's hash is the one the API accepted: no row to send, each counted unchanged."""
    keyed = key_chunk("catalog", _catalog("A1", "A2", "A3"))
    accepted = {r.key: r.digest for r in keyed.rows}
    decided = plan_chunk("catalog", keyed, accepted, {}, may_add=False)
    assert decided.send == ()
    assert decided.refusals == ()
    assert dict(decided.counts) == {"unchanged": 3, "send": 0}


def test_only_rows_that_differ_from_the_ledger_are_sent() -> None:
    """A changed row is sent, a row refused as it is waits, a new row is sent; an endpoint
    that may add rows holds a change to an accepted row instead."""
    keyed = key_chunk("catalog", _catalog("A1", "A2", "A3", "A4"))
    digest = {r.key: r.digest for r in keyed.rows}
    accepted = {"A1": digest["A1"], "A2": "old"}
    failed = {"A3": digest["A3"]}
    decided = plan_chunk("catalog", keyed, accepted, failed, may_add=False)
    assert [p.key for p in decided.send] == ["A2", "A4"]
    assert decided.counts == {"unchanged": 1, "failed": 1, "send": 2}
    adding = plan_chunk("catalog", keyed, accepted, failed, may_add=True)
    assert [p.key for p in adding.send] == ["A4"]
    assert adding.counts["held_changed"] == 1


def test_resend_after_failed_only_once_the_row_changed() -> None:
    """A row refused as it is is not sent again; changed, it is sent."""
    before = key_chunk("catalog", _catalog("A1"))
    failed = {"A1": before.rows[0].digest}
    assert plan_chunk("catalog", before, {}, failed, may_add=False).send == ()
    changed = key_chunk(
        "catalog", [Candidate({"externalId": "A1", "name": "renamed"}, "articles.csv:2")]
    )
    assert [p.key for p in plan_chunk("catalog", changed, {}, failed, may_add=False).send] == ["A1"]


def test_a_local_refusal_names_the_field_the_check_found() -> None:
    """A PO line without a unit cost is refused without a request, its field taken from the
    check's structured problem (the first one), not cut out of the message."""
    header = {"po_number": "PO1", "supplier_id": "S1", "location": "", "status": ""}
    lines = [
        {"article_id": "A1", "qty_ordered": 5, "qty_received": 0, "unit_cost": None},
        {"article_id": "", "qty_ordered": 2, "qty_received": 0, "unit_cost": "1.5"},
    ]
    payload = purchase_order_row(header, lines, "WH")
    keyed = key_chunk("purchase-orders", [Candidate(payload, "po.csv:7")])
    decided = plan_chunk("purchase-orders", keyed, {}, {}, may_add=False)
    assert decided.send == ()
    [refusal] = decided.refusals
    assert refusal.key == "PO1"
    [problems] = row_problems("purchase-orders", [payload]).values()
    assert refusal.field == problems[0].field
    assert refusal.field is not None
    assert refusal.field.startswith("lines[0].unitCost")
    assert refusal.reason == "; ".join(str(p) for p in problems)
    assert "lines[1].skuId: must not be empty" in refusal.reason
    assert decided.counts["refused"] == decided.counts["rejected"] == 1


def test_row_problems_keep_each_field_apart() -> None:
    """The check reports each problem with its own field; the row as a whole has none."""
    found = row_problems("catalog", [{"externalId": " "}, {"name": "x"}, "not a row"])
    assert found[0] == [RowProblem("externalId", "must not be empty")]
    assert [p.field for p in found[1]] == ["externalId"]
    assert [p.field for p in found[2]] == [None]
    assert str(found[2][0]) == found[2][0].message


def test_a_row_without_its_natural_key_is_refused_without_a_field() -> None:
    """A row the check passes but that has no natural key cannot be tracked: refused."""
    candidate = Candidate(None, "sales.csv:4", text='{"x":1}', checked=True)
    decided = plan_chunk("catalog", key_chunk("catalog", [candidate]), {}, {}, may_add=False)
    [refusal] = decided.refusals
    assert (refusal.key, refusal.reason, refusal.field) == ("?sales.csv:4", KEY_MISSING, None)


# --- what a job's status answer means ------------------------------------------------------------


def test_failed_rows_are_mapped_to_key_and_field_from_the_error_data() -> None:
    """Row-level errors name their row by index (or by key): each becomes a refusal of that
    row's key with the error's own field and message; the other rows are accepted."""
    rows = _rows("A1", "A2", "A3", "A4")
    job = _job(
        rowCount=4,
        processedCount=4,
        failedCount=2,
        errors=[
            {"row": 1, "field": "name", "message": "too long"},
            {"key": "A4", "field": "externalId", "message": "duplicate"},  # by key only
        ],
    )
    assert not is_clean(job, 4)
    decided = finish_plan("catalog", job, 4, rows, now=NOW, run_id="r1")
    assert [(r.key, r.field, r.reason, r.reference) for r in decided.refusals] == [
        ("A2", "name", "too long", "articles.csv:3"),
        ("A4", "externalId", "duplicate", "articles.csv:5"),
    ]
    failed = _failed(decided.plan.changes)
    assert [(f.key, f.digest, f.job_id, f.run_id) for f in failed] == [
        ("A2", "h-A2", "J1", "r1"),
        ("A4", "h-A4", "J1", "r1"),
    ]
    reject = failed[0].reject
    assert (reject.source, reject.reference, reject.field) == (
        "planning:catalog",
        "articles.csv:3 A2",
        "name",
    )
    assert reject.payload == {"job_id": "J1", "row": {"externalId": "A2"}}
    [accepted] = [c for c in decided.plan.changes if isinstance(c, JobRowsAccepted)]
    assert accepted.refused == (1, 3)
    assert accepted.keep_payload is False
    assert decided.accepted == 2
    assert decided.counts["pushed"] == 2
    assert decided.counts["rejected"] == 2
    assert decided.warning is None
    assert isinstance(decided.plan.changes[-1], JobFinished)


def test_an_error_whose_index_disagrees_with_its_key_follows_the_key() -> None:
    rows = _rows("A1", "A2")
    job = _job(
        rowCount=2,
        processedCount=2,
        failedCount=1,
        errors=[{"row": 0, "key": "A2", "message": "bad"}],
    )
    decided = finish_plan("catalog", job, 2, rows, now=NOW, run_id=None)
    assert [(r.key, r.field, r.reason) for r in decided.refusals] == [("A2", None, "bad")]


def test_a_clean_job_is_accepted_whole_without_reading_its_rows() -> None:
    job = _job(rowCount=3, processedCount=3)
    assert is_clean(job, 3)
    decided = finish_plan("orders", job, 3, [], now=NOW, run_id="r")
    assert decided.refusals == ()
    [accepted] = [c for c in decided.plan.changes if isinstance(c, JobRowsAccepted)]
    assert (accepted.refused, accepted.keep_payload, accepted.accepted_at) == ((), True, NOW)
    assert decided.accepted == 3
    assert decided.plan.alerts == ()


def test_a_failed_job_accepts_nothing_so_its_rows_are_planned_again() -> None:
    """FAILED with a job-level error: no row accepted, none refused; they stay unsent in the
    ledger, so the next plan sends them again."""
    job = _job("FAILED", rowCount=2, errors=["database unavailable"])
    decided = finish_plan("catalog", job, 2, _rows("A1", "A2"), now=NOW, run_id="r")
    assert not any(isinstance(c, JobRowsAccepted) for c in decided.plan.changes)
    assert decided.refusals == ()
    assert decided.accepted == 0
    assert decided.counts["jobs_failed"] == 1
    assert decided.warning == "database unavailable"
    finished = decided.plan.changes[-1]
    assert isinstance(finished, JobFinished)
    assert finished.status == "FAILED"
    assert [e["message"] for e in finished.unmatched_errors] == ["database unavailable"]
    again = plan_chunk("catalog", key_chunk("catalog", _catalog("A1")), {}, {}, may_add=False)
    assert [p.key for p in again.send] == ["A1"]


def test_counts_that_do_not_add_up_accept_nothing_and_alert() -> None:
    """COMPLETED, but failedCount counts an error that names no row: which rows the API
    took is open, so each row is a reject and an alert opens."""
    job = _job(rowCount=2, processedCount=2, failedCount=1, errors=["something failed"])
    decided = finish_plan("catalog", job, 2, _rows("A1", "A2"), now=NOW, run_id="r")
    assert [r.key for r in decided.refusals] == ["A1", "A2"]
    assert all(r.field is None and "counts do not add up" in r.reason for r in decided.refusals)
    assert not any(isinstance(c, JobRowsAccepted) for c in decided.plan.changes)
    [alert] = decided.plan.alerts
    assert isinstance(alert, OpenAlert)
    assert (alert.kind, alert.subject) == (UNACCOUNTED_ALERT, "catalog")
    assert decided.counts["unaccounted"] == 2
    assert decided.counts["rejected"] == 2


# --- jobs whose answer did not come --------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "hold_lost", "outcome"),
    [
        (JobTimeoutError("still running", job=_job("PROCESSING")), False, "open"),
        (PermanentError("no such job", status=404), False, "lost"),
        (PermanentError("no such job", status=404), True, "unsure"),
        (PermanentError("forbidden", status=403), False, None),
        (UnsureSubmitError("answer lost"), True, None),
        (ValueError("bug"), False, None),
    ],
)
def test_what_a_poll_without_answer_means(
    exc: BaseException, hold_lost: bool, outcome: str | None
) -> None:
    assert wait_outcome(exc, hold_lost=hold_lost) == outcome


def test_an_unsure_flight_holds_its_rows_as_rejects_and_alerts() -> None:
    """A submit whose answer was lost, to an endpoint that may add rows: each row is a reject
    (retry sends it again), the job AMBIGUOUS, an alert for the endpoint."""
    rows = _rows("O1", "O2")
    plan = unsure_plan("orders", rows, "submitting:x", "read timeout", now=NOW, run_id="r")
    failed = _failed(plan.changes)
    assert [(f.key, f.job_id, f.reject.field) for f in failed] == [
        ("O1", "submitting:x", None),
        ("O2", "submitting:x", None),
    ]
    assert failed[0].reject.reason.startswith("not sent again: read timeout.")
    assert plan.changes[-1] == JobEnded("submitting:x", AMBIGUOUS, ("read timeout",), NOW)
    [alert] = plan.alerts
    assert isinstance(alert, OpenAlert)
    assert (alert.kind, alert.subject) == (AMBIGUOUS_ALERT, "orders")
    # before any job id was recorded: rows held, no job row to end
    assert not any(
        isinstance(c, JobEnded)
        for c in unsure_plan("orders", rows, None, "crash", now=NOW, run_id="r").changes
    )


def test_open_and_lost_jobs_are_recorded_as_such() -> None:
    last = _job("PROCESSING", processedCount=5, failedCount=1)
    assert still_open_plan("J1", last).changes == (JobStillOpen("J1", "PROCESSING", 5, 1),)
    assert lost_plan("J1", "gone", now=NOW).changes == (JobEnded("J1", LOST, ("gone",), NOW),)


def test_refusal_defaults_to_no_job() -> None:
    assert Refusal("k", "h", "f:1", None, "why", None).job_id is None


_LEDGER_STATE = st.sampled_from(["none", "same", "other"])


@settings(max_examples=60, deadline=None)
@given(
    states=st.lists(st.tuples(_LEDGER_STATE, _LEDGER_STATE), min_size=0, max_size=12),
    may_add=st.booleans(),
)
def test_each_row_is_sent_once_or_counted_never_both(
    states: list[tuple[str, str]], may_add: bool
) -> None:
    """Whatever the ledger holds, each row is either sent or counted as not sent; a row the
    API has as it is is never sent, a row the ledger does not know always is."""
    keyed = key_chunk("catalog", _catalog(*(f"A{n}" for n in range(len(states)))))
    accepted: dict[str, str] = {}
    failed: dict[str, str] = {}
    for row, (acc, fail) in zip(keyed.rows, states, strict=True):
        for table, state in ((accepted, acc), (failed, fail)):
            if state != "none":
                table[row.key] = row.digest if state == "same" else "other"
    decided = plan_chunk("catalog", keyed, accepted, failed, may_add=may_add)
    sent = {p.key for p in decided.send}
    assert len(sent) == len(decided.send) == decided.counts["send"]
    not_sent = sum(decided.counts[k] for k in ("unchanged", "failed", "held_changed"))
    assert len(sent) + not_sent == len(keyed.rows)
    for row, (acc, fail) in zip(keyed.rows, states, strict=True):
        if acc == "same":
            assert row.key not in sent
        if acc == fail == "none":
            assert row.key in sent
        if row.key in sent:
            assert fail != "same"


def test_the_job_modules_write_no_table_themselves() -> None:
    """planning.import writes its tables (jobs, ledger) and the core tables only through
    syncd/state/: no SQL statement in its modules inserts, updates or deletes."""
    from tests.unit.test_state_owners import PACKAGE, sql_strings

    modules = [
        PACKAGE / "jobs" / "planning_import.py",
        *(PACKAGE / "jobs" / "planning").glob("*.py"),
    ]
    writes = [
        f"{path.name}:{line}"
        for path in modules
        for line, text in sql_strings(path)
        if re.search(r"\b(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\b", text)
    ]
    assert len(modules) > 5
    assert writes == []
