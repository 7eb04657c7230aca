"""netstock.export's decisions, from plain values: no server, no database."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.clock import iso
from syncd.connectors.netstock.answers import DatasetState, DatasetStatus, JsonLines, ModelState
from syncd.jobs.netstock import export_plan as plan
from syncd.jobs.netstock.export_plan import (
    Blocked,
    ChunkRange,
    Completed,
    FailDataset,
    FrozenGap,
    LostAnswer,
    StillProcessing,
)
from syncd.state import NewReject
from syncd.state.mirror.netstock_export import (
    AddChunk,
    CreateExport,
    DropExport,
    Export,
    ExportState,
    FailedExport,
    ModelEntry,
    UpdateExport,
)
from syncd.state.plan import OpenAlert, ResolveAlerts

NOW = "2026-12-04T12:00:00.000Z"
DATASET = "4444a44a-44a4-4444-4444-44a4a44aaa44"


def export(*models: ModelEntry, state: ExportState = "importing") -> Export:
    return Export(id=7, state=state, models=models, dataset_id=DATASET)


def remote(
    model: str, actual: int = 0, *, ended: bool = False, expected: int | None = None
) -> ModelState:
    return ModelState(
        model=model,
        actual_lines_imported=actual,
        marked_to_end=ended,
        minimum_expected_lines=expected,
    )


def status(name: DatasetStatus, success: bool | None, message: str = "") -> DatasetState:
    return DatasetState(status=name, status_text=name.value, success=success, message=message)


# --- resume after a crash mid-model ----------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "seen", "step"),
    [
        (ModelEntry("po", 3, "ended", 3, 2), None, "done"),
        (ModelEntry("po", 3), None, "open"),  # never started: /model/start
        (ModelEntry("po", 3), remote("po"), "adopt_open"),  # started, its answer lost
        (ModelEntry("po", 3, "open", 2, 1), None, "send"),
        (ModelEntry("po", 3, "open", 2, 1), remote("po", 2), "check_count"),
        (ModelEntry("po", 3, "open", 3, 2), remote("po", 3, ended=True), "ended_remotely"),
    ],
)
def test_each_model_resumes_from_what_the_journal_and_netstock_say(
    entry: ModelEntry, seen: ModelState | None, step: str
) -> None:
    """A model's next step follows from its journal state and /model/status."""
    assert plan.model_step(entry, seen) == step


def test_a_crash_mid_model_confirms_the_chunk_whose_answer_was_lost_and_sends_the_rest() -> None:
    """Killed after master's 2nd chunk was posted, before it was recorded: Netstock counts
    4 lines, the journal 2. The chunk is confirmed (not resent) and the next one starts at
    line 4."""
    master = ModelEntry("master", 5, "open", lines_sent=2, chunks=1)
    before = export(ModelEntry("locations", 2, "ended", 2, 1), master)
    assert plan.model_step(master, remote("master", 4)) == "check_count"
    assert plan.expected_count(master, 2, in_flight=False) == 2  # 4 >= 2: no wait
    verdict = plan.judge_count(master, 2, 4)
    assert verdict == LostAnswer(2)

    after, recorded = plan.chunk_recorded(before, 1, verdict.rows, "confirmed", NOW)
    assert after.models[1] == ModelEntry("master", 5, "open", lines_sent=4, chunks=2)
    assert after.models[0] == before.models[0]
    assert recorded.changes == (
        AddChunk(DATASET, "master", chunk_no=1, rows=2, first_seq=2, sent_at=NOW, how="confirmed"),
        UpdateExport(7, NOW, models=after.models),
    )
    assert plan.next_chunk(after.models[1], 2) == ChunkRange(first=4, count=1)
    done = ModelEntry("master", 5, "open", lines_sent=5, chunks=3)
    assert plan.next_chunk(done, 2) is None  # end the model


def test_a_count_equal_to_the_journal_sends_on_and_a_lagging_one_waits() -> None:
    """Equal: the chunk never arrived and is sent; below what was recorded (Netstock imports
    asynchronously) or, after an unknown outcome, below recorded + that chunk: settle first."""
    entry = ModelEntry("master", 5, "open", lines_sent=2, chunks=1)
    assert plan.judge_count(entry, 2, 2) is None
    assert plan.expected_count(entry, 2, in_flight=True) == 4
    assert plan.expected_count(entry, 10, in_flight=True) == 5  # the last chunk is shorter


def test_the_settle_waits_back_off_within_the_budget() -> None:
    """1 s doubling to 15 s, cut to fit `count_settle_time`; a count settles when it reached
    what is expected and held between two polls."""
    assert list(plan.settle_steps(20)) == [1.0, 2.0, 4.0, 8.0, 5.0]
    assert list(plan.settle_steps(0)) == []
    long = list(plan.settle_steps(120))
    assert sum(long) == 120
    assert max(long) == 15.0
    assert plan.count_settled(4, 4, 4)
    assert not plan.count_settled(4, 2, 4)  # still moving
    assert not plan.count_settled(3, 3, 4)  # not there yet


def test_a_dataset_that_moved_on_without_us_goes_to_processing() -> None:
    """On resume, a dataset already transforming (or over) is polled, not imported into."""
    moved = plan.moved_on(export(), status(DatasetStatus.TRANSFORMING, None), NOW)
    assert moved is not None
    assert moved.changes == (UpdateExport(7, NOW, state="processing", status_text="Transforming"),)
    assert plan.moved_on(export(), status(DatasetStatus.IMPORTING, None), NOW) is None


# --- a 409 already_open on /dataset/start ------------------------------------------------------


@pytest.mark.parametrize(
    ("dataset_id", "attempted", "empty", "adopted"),
    [
        (DATASET, True, False, True),  # we had sent a start: its answer was lost
        (DATASET, False, True, True),  # opened and never used: our own, met by a retry
        (DATASET, False, False, False),  # in use, not ours
        (None, True, True, False),  # the answer names no dataset
    ],
)
def test_an_already_open_dataset_is_adopted_only_when_it_is_ours(
    dataset_id: str | None, attempted: bool, empty: bool, adopted: bool
) -> None:
    """A foreign dataset is never adopted: an alert names it and the export stays prepared."""
    decision = plan.adopt_open_dataset(dataset_id, attempted, empty)
    if adopted:
        assert decision == dataset_id
        return
    assert isinstance(decision, Blocked)
    [alert] = decision.plan.alerts
    assert alert == OpenAlert("netstock_export", decision.reason, "dataset_open")
    assert (dataset_id or "id not given") in decision.reason
    assert decision.plan.changes == ()  # the export stays prepared


def test_the_open_dataset_is_asked_about_only_when_it_matters() -> None:
    """Its models are read only for a named dataset we had not tried to start."""
    assert plan.must_check_empty(DATASET, attempted=False)
    assert not plan.must_check_empty(DATASET, attempted=True)
    assert not plan.must_check_empty(None, attempted=False)


# --- a dataset syncd failed, still open: alert after the configured time ------------------------


@pytest.mark.parametrize(("open_for", "alerted"), [(0, False), (3599, False), (3601, True)])
def test_a_dataset_syncd_failed_is_waited_for_with_an_alert_after_the_limit(
    open_for: int, alerted: bool
) -> None:
    """The doomed dataset is not adopted; the prepared export is dropped (rendered afresh
    next time); an alert once it stays open longer than `failed_dataset_alert_after`."""
    finished = datetime(2026, 12, 4, 11, 0, tzinfo=UTC)
    failed = FailedExport(id=3, finished_at=iso(finished))
    prepared = export(state="prepared")
    blocked = plan.waiting_for_close(
        prepared, DATASET, failed, finished + timedelta(seconds=open_for), 3600.0
    )
    assert blocked is not None
    assert blocked.plan.changes == (DropExport(7),)
    assert "netstock_exports id 3" in blocked.reason
    if alerted:
        [alert] = blocked.plan.alerts
        assert isinstance(alert, OpenAlert)
        assert (alert.kind, alert.subject) == ("netstock_export", "dataset_open")
        assert DATASET in alert.message
        assert "more than 3600 s" in alert.message
    else:
        assert blocked.plan.alerts == ()
    assert plan.waiting_for_close(prepared, DATASET, None, finished, 3600.0) is None


# --- a model count mismatch --------------------------------------------------------------------


def test_a_count_that_cannot_be_repaired_fails_the_dataset_by_ending_the_model() -> None:
    """Neither the journal's count nor one chunk more: the model is ended with the intended
    count (Netstock then fails the dataset) and the run stops."""
    entry = ModelEntry("master", 5, "open", lines_sent=4, chunks=2)
    verdict = plan.judge_count(entry, 2, 0)
    assert isinstance(verdict, FailDataset)
    assert verdict.end_model == ("master", 5)
    assert verdict.reason == verdict.message
    assert "Netstock holds 0 lines, syncd recorded 4 (+ one chunk of up to 1)" in verdict.message
    assert isinstance(plan.judge_count(entry, 2, 6), FailDataset)  # more than one chunk over


def test_a_model_end_refused_for_its_count_fails_the_dataset() -> None:
    """The older reading (/model/end judges at once): `line_count_mismatch` fails the
    dataset; any other refusal is not decided here (the caller raises it)."""
    failure = plan.end_refused(DATASET, "po", "line_count_mismatch", "count does not match")
    assert failure == FailDataset(
        "model po: count does not match", f"dataset {DATASET} failed: count does not match"
    )
    assert plan.end_refused(DATASET, "po", "not_open", "model not open") is None


def test_a_model_netstock_ended_with_another_count_is_noticed() -> None:
    """Our end's answer was lost: every line counts as sent, a different count is logged."""
    entry = ModelEntry("po", 3, "open", 2, 1)
    assert plan.remote_count_differs(entry, remote("po", 3, ended=True, expected=2))
    assert not plan.remote_count_differs(entry, remote("po", 3, ended=True, expected=3))
    assert not plan.remote_count_differs(entry, remote("po", 3, ended=True))
    after, _ = plan.model_ended_remotely(export(entry), 0, NOW)
    assert after.models[0] == ModelEntry("po", 3, "ended", 3, 1)


@pytest.mark.parametrize(
    ("status_code", "refusal"),
    [(404, "no_endpoint"), (400, "refused"), (422, "refused"), (409, None), (None, None)],
)
def test_a_chunk_refused_for_good_is_classified_by_its_status(
    status_code: int | None, refusal: str | None
) -> None:
    assert plan.chunk_refusal(status_code) == refusal


def test_refused_lines_fail_the_dataset_naming_them() -> None:
    """A 400 on a chunk would come again every run: the dataset is failed, naming the lines."""
    entry = ModelEntry("locations", 2, "open")
    failure = plan.refused_chunk(entry, 2, "location_code: got null")
    assert failure.end_model == ("locations", 2)
    assert "Netstock refused lines 1-2 of 2 (location_code: got null)" in failure.message


def test_a_missing_endpoint_names_the_map_entry_and_whether_it_was_a_guess() -> None:
    """404 on an import URL: an alert per model; the unverified correction is said as such."""
    guess = plan.endpoint_guess("master", {"master": "master"})
    assert guess is not None
    blocked = plan.no_endpoint("master", "/import/master", guess, "Not found")
    [alert] = blocked.plan.alerts
    assert isinstance(alert, OpenAlert)
    assert alert.subject == "endpoint:master"
    assert 'endpoint_map = "document"' in blocked.reason
    assert plan.endpoint_guess("master", {"master": "suppliers"}) is None
    assert plan.endpoint_guess("po", {"po": "po"}) is None
    plain = plan.no_endpoint("po", "/import/po", None, "Not found")
    assert "unverified" not in plain.reason
    assert "model_endpoints.po" in plain.reason
    assert plan.unverified_endpoints(["po", "master", "transfers"], {"master": "master"}) == [
        "master"
    ]


# --- a failed dataset --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [
        (status(DatasetStatus.COMPLETE, True), Completed("Complete")),
        (
            status(DatasetStatus.COMPLETE, False, "Transform script failed"),
            FailDataset("Transform script failed"),
        ),
        (
            status(DatasetStatus.COMPLETE, False),
            FailDataset("dataset ended Complete without success"),
        ),
        (status(DatasetStatus.FAILED, None, "boom"), FailDataset("boom")),
        (status(DatasetStatus.TRANSFORMING, False), StillProcessing("Transforming")),
        (status(DatasetStatus.IMPORTING, None), StillProcessing("Importing")),
    ],
)
def test_only_a_terminal_status_ends_processing(
    answer: DatasetState, verdict: Completed | FailDataset | StillProcessing
) -> None:
    """`success: false` before a terminal status is not a failure; a failure in processing
    fails the dataset without stopping the run (no reason)."""
    assert plan.processing_verdict(answer) == verdict


def test_a_failed_dataset_keeps_the_audit_drops_the_frozen_rows_and_alerts() -> None:
    """The failure, its audit log and the frozen rows' removal land with the alert."""
    failing = export(ModelEntry("po", 1, "ended", 1, 1), state="processing")
    message = "x" * 600
    recorded = plan.failed(failing, message, [{"message": "boom", "log_type": "error"}], NOW)
    [change] = recorded.changes
    assert isinstance(change, UpdateExport)
    assert (change.state, change.success, change.finished_at, change.drop_frozen) == (
        "failed", 0, NOW, True,
    )  # fmt: skip
    assert change.message == message
    assert json.loads(change.audit or "") == [{"message": "boom", "log_type": "error"}]
    [alert] = recorded.alerts
    assert isinstance(alert, OpenAlert)
    assert (alert.kind, alert.subject) == ("netstock_export", "dataset_failed")
    assert alert.message == (
        f"Netstock dataset {DATASET} failed: {'x' * 500} (audit log in netstock_exports id 7)"
    )


def test_a_completed_dataset_becomes_the_one_to_diff_against_and_clears_the_alerts() -> None:
    recorded = plan.completed(export(state="processing"), "Complete", NOW)
    assert recorded.changes == (
        UpdateExport(
            7, NOW, state="complete", status_text="Complete", success=1, finished_at=NOW,
            drop_frozen=True,
        ),
    )  # fmt: skip
    assert recorded.alerts == (ResolveAlerts("netstock_export"),)


# --- prepared: what to send -------------------------------------------------------------------


def test_only_a_changed_non_empty_snapshot_is_prepared() -> None:
    assert plan.snapshot_decision(0, "h", None) == "empty"
    assert plan.snapshot_decision(3, "h", "h") == "unchanged"
    assert plan.snapshot_decision(3, "h", "g") == "prepare"
    assert plan.snapshot_decision(3, "h", None) == "prepare"
    prepared = plan.prepared("h", [("locations", 2), ("po", 0)], "run-1", NOW)
    assert prepared.changes == (
        CreateExport("h", (ModelEntry("locations", 2), ModelEntry("po", 0)), 2, "run-1", NOW),
    )


def test_a_row_left_out_is_rejected_once_while_open() -> None:
    """An open reject for the same row, field and reason is not added again; a new reason
    for the same row is."""
    known = [
        {"source": "netstock:export:po", "reference": "po.csv:2", "field": "qty", "reason": "2.5"}
    ]
    same = NewReject("netstock:export:po", "po.csv:2", "2.5", field="qty")
    other = NewReject("netstock:export:po", "po.csv:2", "abc", field="qty")
    assert plan.new_rejects([same, other], known) == (other,)


def test_a_start_is_recorded_as_attempted_once() -> None:
    """The first attempt's time is kept: a later conflict is judged against it."""
    first = plan.start_attempted(export(state="prepared"), NOW)
    assert first.changes == (UpdateExport(7, NOW, start_attempted_at=NOW),)
    again = Export(7, "prepared", (), start_attempted_at="earlier")
    assert plan.start_attempted(again, NOW).changes == (
        UpdateExport(7, NOW, start_attempted_at="earlier"),
    )


# --- chunks as frozen -----------------------------------------------------------------------


def test_a_chunk_is_cut_from_the_frozen_rows_and_a_gap_is_reported() -> None:
    rows = [(0, '{"a":0}\n{"a":1}'), (2, '{"a":2}\n{"a":3}'), (4, '{"a":4}')]
    assert plan.assemble_chunk(rows[:1], 0, 2) == JsonLines('{"a":0},{"a":1}', 2)
    assert plan.assemble_chunk(rows[:2], 1, 3) == JsonLines('{"a":1},{"a":2},{"a":3}', 3)
    assert plan.assemble_chunk(rows[2:], 3, 2) == FrozenGap(position=3)
    assert plan.assemble_chunk(rows[:1], 1, 3) == FrozenGap(position=2)
    assert plan.assemble_chunk(rows[:1] + rows[2:], 1, 3) == FrozenGap(position=2)


@settings(max_examples=60, deadline=None)
@given(lines=st.integers(1, 30), group=st.integers(1, 7), chunk=st.integers(1, 9))
def test_chunks_of_any_size_give_every_frozen_line_once_in_order(
    lines: int, group: int, chunk: int
) -> None:
    """Frozen `group` lines a row, sent `chunk` at a time (a resume with another chunk
    size): each line goes out once, in order."""
    texts = [f'{{"n":{n}}}' for n in range(lines)]
    rows = [(seq, "\n".join(texts[seq : seq + group])) for seq in range(0, lines, group)]
    entry, sent = ModelEntry("m", lines, "open"), []
    while (step := plan.next_chunk(entry, chunk)) is not None:
        found = [r for r in rows if r[0] + group > step.first and r[0] < step.first + step.count]
        body = plan.assemble_chunk(found, step.first, step.count)
        assert isinstance(body, JsonLines)
        assert body.count == step.count
        sent.extend(body.text.split(","))
        entry = ModelEntry("m", lines, "open", entry.lines_sent + step.count, entry.chunks + 1)
    assert sent == texts
