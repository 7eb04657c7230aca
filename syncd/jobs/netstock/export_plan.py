"""netstock.export's decisions, as pure functions over plain data.

The driver (`syncd.jobs.netstock_export`) reads its journal
(`syncd.state.mirror.netstock_export`) and Netstock's answers, asks a function here what to
do next, does it (the client call), and records the outcome by applying the `Plan` a
function here returns. Nothing here does I/O: no client, no store, no clock (`now` comes
in as ISO text or a datetime); remote text arrives redacted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final, Literal

from syncd.clock import parse_iso
from syncd.connectors.netstock.answers import DatasetState, JsonLines, ModelState
from syncd.connectors.netstock.settings import DEFAULT_MODEL_ENDPOINTS, UNVERIFIED_ENDPOINTS
from syncd.state import NewReject
from syncd.state.mirror.netstock_export import (
    AddChunk,
    ChunkHow,
    CreateExport,
    DropExport,
    Export,
    FailedExport,
    ModelEntry,
    UpdateExport,
)
from syncd.state.plan import OpenAlert, Plan, ResolveAlerts

ALERT_KIND: Final = "netstock_export"
SETTLE_FIRST_POLL = 1.0  # seconds before /model/status is asked again about a lagging count
SETTLE_MAX_POLL = 15.0  # ... doubling up to this
ALERT_TEXT_LIMIT = 500  # characters of a failure message quoted in its alert


@dataclass(frozen=True)
class Blocked:
    """The export cannot go on this run: `reason` is logged and kept as a run warning;
    `plan` records what an operator needs to see (an alert) or what is undone."""

    reason: str
    plan: Plan = field(default_factory=Plan)


@dataclass(frozen=True)
class FailDataset:
    """Fail this dataset: `message` is kept in netstock_exports and its alert. `end_model`
    (model, intended count) is ended first, so that Netstock fails the dataset too and the
    next cycle can start a clean one. `reason`: the run stops there (None: it just ends)."""

    message: str
    reason: str | None = None
    end_model: tuple[str, int] | None = None


# -- prepared: is there anything to send? ----------------------------------------------------

SnapshotDecision = Literal["empty", "unchanged", "prepare"]


def snapshot_decision(lines: int, snapshot_hash: str, last_success: str | None) -> SnapshotDecision:
    """Every model empty: nothing is sent at all; the same lines as the last dataset that
    completed: nothing to send; else a new export."""
    if lines == 0:
        return "empty"
    if snapshot_hash == last_success:
        return "unchanged"
    return "prepare"


def new_rejects(
    rejects: Iterable[NewReject], open_rejects: Iterable[Mapping[str, Any]]
) -> tuple[NewReject, ...]:
    """The rows left out that are not open as rejects already (the same source, reference,
    field and reason, from an earlier export of the same data)."""
    known = {(r["source"], r["reference"], r["field"], r["reason"]) for r in open_rejects}
    return tuple(r for r in rejects if (r.source, r.reference, r.field, r.reason) not in known)


def prepared(
    snapshot_hash: str, counts: Sequence[tuple[str, int]], run_id: str | None, now: str
) -> Plan:
    """A new export of the frozen snapshot: every model pending, nothing sent."""
    models = tuple(ModelEntry(model, rows) for model, rows in counts)
    total = sum(rows for _model, rows in counts)
    return Plan(changes=(CreateExport(snapshot_hash, models, total, run_id, now),))


# -- prepared -> importing -------------------------------------------------------------------


def start_attempted(export: Export, now: str) -> Plan:
    """Recorded before /dataset/start: a conflict after it may be our own lost answer."""
    return Plan(
        changes=(UpdateExport(export.id, now, start_attempted_at=export.start_attempted_at or now),)
    )


def dataset_started(export: Export, dataset_id: str, now: str) -> Plan:
    return Plan(
        changes=(
            UpdateExport(export.id, now, state="importing", dataset_id=dataset_id, started_at=now),
        )
    )


def waiting_for_close(
    export: Export,
    dataset_id: str,
    failed: FailedExport | None,
    now: datetime,
    alert_after: float,
) -> Blocked | None:
    """The open dataset is one syncd already failed (`failed`): its /model/end answered 202
    and Netstock fails it only after its timeout period. It is doomed, so it is not adopted;
    the prepared export is dropped (Netstock opened nothing for it: the next run freezes the
    data afresh, with the options then in force), with an alert once it has stayed open
    longer than `alert_after` seconds. None: not a dataset syncd failed."""
    if failed is None:
        return None
    message = (
        f"Netstock dataset {dataset_id}, which syncd failed (netstock_exports id "
        f"{failed.id}), is still open: Netstock closes it when its model end's timeout "
        "period is over; a new dataset starts after that"
    )
    alerts: tuple[OpenAlert, ...] = ()
    if (now - parse_iso(failed.finished_at)).total_seconds() > alert_after:
        alerts = (
            OpenAlert(
                ALERT_KIND,
                f"{message}; it has stayed open for more than {alert_after:g} s since: close "
                "it in Netstock",
                "dataset_open",
            ),
        )
    return Blocked(message, Plan(changes=(DropExport(export.id),), alerts=alerts))


def must_check_empty(dataset_id: str | None, attempted: bool) -> bool:
    """Whether the open dataset's models must be asked for before deciding whose it is."""
    return dataset_id is not None and not attempted


def adopt_open_dataset(dataset_id: str | None, attempted: bool, empty: bool) -> str | Blocked:
    """/dataset/start answered that a dataset is open for this user. It is ours (adopted:
    its id is returned) when we had attempted a start (our answer was lost) or when it is
    empty, opened but never used (what our own start looks like when the client's retry met
    the dataset it had just opened). Otherwise it belongs to someone else: an alert, and the
    export stays prepared."""
    if dataset_id is not None and (attempted or empty):
        return dataset_id
    message = (
        f"a Netstock dataset import ({dataset_id or 'id not given'}) is open for "
        "this user and was not started by this syncd; it must complete (or be "
        "closed in Netstock) before syncd can export"
    )
    return Blocked(message, Plan(alerts=(OpenAlert(ALERT_KIND, message, "dataset_open"),)))


# -- importing -> processing -----------------------------------------------------------------


def moved_on(export: Export, status: DatasetState, now: str) -> Plan | None:
    """On resume: a dataset that is processing or over went on without us (our
    start_processing's answer was lost): straight to processing."""
    if status.is_terminal or status.status.is_processing:
        return Plan(
            changes=(
                UpdateExport(export.id, now, state="processing", status_text=status.status_text),
            )
        )
    return None


ModelStep = Literal["done", "open", "adopt_open", "ended_remotely", "check_count", "send"]


def model_step(entry: ModelEntry, remote: ModelState | None) -> ModelStep:
    """What to do next with one model, given what /model/status said of it (None: not there)."""
    if entry.state == "ended":
        return "done"
    if entry.state == "pending":
        # seen open on the server: our /model/start went through, its answer was lost
        return "open" if remote is None else "adopt_open"
    if remote is None:
        return "send"
    if remote.marked_to_end:
        return "ended_remotely"  # our /model/end went through, its answer was lost
    return "check_count"


def model_opened(export: Export, index: int, now: str) -> tuple[Export, Plan]:
    return _model_changed(export, index, now, state="open")


def model_ended(export: Export, index: int, now: str) -> tuple[Export, Plan]:
    return _model_changed(export, index, now, state="ended")


def model_ended_remotely(export: Export, index: int, now: str) -> tuple[Export, Plan]:
    """Netstock ended the model (our end's answer was lost): every line counts as sent."""
    entry = export.models[index]
    return _model_changed(export, index, now, state="ended", lines_sent=entry.rows)


def remote_count_differs(entry: ModelEntry, remote: ModelState) -> bool:
    """A model Netstock ended with another count than the one syncd froze."""
    return remote.minimum_expected_lines not in (None, entry.rows)


def _model_changed(export: Export, index: int, now: str, **changes: Any) -> tuple[Export, Plan]:
    changed = export.with_model(index, replace(export.models[index], **changes))
    return changed, Plan(changes=(UpdateExport(export.id, now, models=changed.models),))


@dataclass(frozen=True)
class ChunkRange:
    """The next lines of a model to send: `count` lines from line `first`."""

    first: int
    count: int


def next_chunk(entry: ModelEntry, chunk_size: int) -> ChunkRange | None:
    """The next chunk, or None once every frozen line has been sent (end the model)."""
    if entry.lines_sent >= entry.rows:
        return None
    return ChunkRange(entry.lines_sent, min(chunk_size, entry.rows - entry.lines_sent))


@dataclass(frozen=True)
class FrozenGap:
    """Frozen lines from `position` on are missing: the journal is damaged."""

    position: int


def assemble_chunk(
    found: Sequence[tuple[int, str]], first: int, wanted: int
) -> JsonLines | FrozenGap:
    """The `wanted` lines from line `first`, out of frozen rows (seq, newline-joined lines;
    normally one whole row: rows hold a chunk's worth), joined with ',' for the body."""
    parts: list[str] = []
    position, missing = first, wanted
    for seq, text in found:
        held = text.count("\n") + 1
        skip = position - seq
        if skip < 0:  # this row starts after the next line wanted: the lines between are gone
            break
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
        return FrozenGap(position)
    return JsonLines("\n".join(parts).replace("\n", ","), wanted)


def chunk_recorded(
    export: Export, index: int, rows: int, how: ChunkHow, now: str
) -> tuple[Export, Plan]:
    """A chunk Netstock took: its row in netstock_export_chunks and the model's progress,
    in one transaction (with the answer)."""
    entry = export.models[index]
    changed = export.with_model(
        index, replace(entry, lines_sent=entry.lines_sent + rows, chunks=entry.chunks + 1)
    )
    chunk = AddChunk(
        str(export.dataset_id), entry.model, entry.chunks, rows, entry.lines_sent, now, how
    )
    return changed, Plan(changes=(chunk, UpdateExport(export.id, now, models=changed.models)))


ChunkRefusal = Literal["no_endpoint", "refused"]


def chunk_refusal(status: int | None) -> ChunkRefusal | None:
    """A chunk refused for good: 404, no such import URL (the endpoint map is wrong for this
    tenant); 400/422, Netstock will not take these lines. None: any other error (raised)."""
    if status == 404:
        return "no_endpoint"
    if status in (400, 422):
        return "refused"
    return None


def endpoint_guess(model: str, model_endpoints: Mapping[str, str]) -> str | None:
    """Why the model's URL is a guess, when it is one: an unverified correction of the
    document, in force because the map was not changed for it."""
    if model_endpoints.get(model) != DEFAULT_MODEL_ENDPOINTS.get(model):
        return None
    return UNVERIFIED_ENDPOINTS.get(model)


def no_endpoint(model: str, endpoint: str, guess: str | None, remote_message: str) -> Blocked:
    """Say which entry of the map, whether it was a guess and how to change it; the export
    stays where it is until the map is fixed (then it resumes from here)."""
    message = (
        f"Netstock answered 404 for {endpoint} (model {model}): {remote_message}. "
        + (f"That URL is an unverified correction ({guess}). " if guess else "")
        + f"Set connectors.netstock.options.model_endpoints.{model} to the tenant's URL"
        + (' or endpoint_map = "document"' if guess else "")
        + "; the export resumes from here"
    )
    return Blocked(message, Plan(alerts=(OpenAlert(ALERT_KIND, message, f"endpoint:{model}"),)))


def refused_chunk(entry: ModelEntry, count: int, remote_message: str) -> FailDataset:
    """Netstock refuses a chunk's lines (e.g. a null where it wants a value). The frozen
    lines would be refused again every run, so the dataset is failed (its model ended with
    the intended count, as for a lost chunk) and the next cycle sends a fresh one, rendered
    with the options then in force (e.g. `null_fields = "omit"`)."""
    first = entry.lines_sent
    message = (
        f"model {entry.model}: Netstock refused lines {first + 1}-{first + count} "
        f"of {entry.rows} ({remote_message}); ending the model with the intended count "
        "fails this dataset, and the next cycle sends a fresh one"
    )
    return FailDataset(message, message, end_model=(entry.model, entry.rows))


def end_refused(
    dataset_id: str, model: str, code: str | None, remote_message: str
) -> FailDataset | None:
    """/model/end refused: a server that judges the count at once says it does not match
    (the dataset is failed); None for any other refusal (raised)."""
    if code != "line_count_mismatch":
        return None
    return FailDataset(
        f"model {model}: {remote_message}", f"dataset {dataset_id} failed: {remote_message}"
    )


# -- the count check (resume, or a chunk whose outcome is unknown) -----------------------------


def expected_count(entry: ModelEntry, chunk_size: int, *, in_flight: bool) -> int:
    """The count Netstock should reach: what was recorded, plus the chunk whose outcome is
    unknown when `in_flight` (it was just posted)."""
    pending = min(chunk_size, entry.rows - entry.lines_sent)
    return entry.lines_sent + pending if in_flight else entry.lines_sent


@dataclass(frozen=True)
class LostAnswer:
    """Netstock holds the next chunk too: it arrived, its answer was lost (`rows` lines)."""

    rows: int


def judge_count(entry: ModelEntry, chunk_size: int, actual: int) -> LostAnswer | FailDataset | None:
    """Netstock's count against what was recorded. Equal (None): in step, send on. One chunk
    more: its answer was lost, it is confirmed, not resent. Any other count cannot be
    repaired: the model is ended with the intended count, which fails the dataset, so the
    next cycle sends a clean one."""
    sent = entry.lines_sent
    pending = min(chunk_size, entry.rows - sent)
    if actual == sent:
        return None
    if actual == sent + pending and pending > 0:
        return LostAnswer(pending)
    message = (
        f"model {entry.model}: Netstock holds {actual} lines, syncd recorded {sent} "
        f"(+ one chunk of up to {pending}); ending it with the intended count fails this "
        "dataset so the next cycle sends a clean one"
    )
    return FailDataset(message, message, end_model=(entry.model, entry.rows))


def settle_steps(budget: float) -> Iterator[float]:
    """The waits between /model/status polls while a lagging count settles: from 1 s,
    doubling to 15 s, `budget` seconds in all (the last wait cut to fit)."""
    waited, delay = 0.0, SETTLE_FIRST_POLL
    while waited < budget:
        step = min(delay, budget - waited)
        yield step
        waited += step
        delay = min(delay * 2, SETTLE_MAX_POLL)


def count_settled(count: int, previous: int, expected: int) -> bool:
    """The count reached `expected` and held between two polls (a chunk whose answer was
    lost shows up behind the others)."""
    return count >= expected and count == previous


# -- processing -> complete | failed ---------------------------------------------------------


def processing_started(export: Export, now: str) -> Plan:
    return Plan(changes=(UpdateExport(export.id, now, state="processing", processing_at=now),))


@dataclass(frozen=True)
class Completed:
    status_text: str


@dataclass(frozen=True)
class StillProcessing:
    status_text: str


def processing_verdict(status: DatasetState) -> Completed | FailDataset | StillProcessing:
    """Only a terminal status is final: Complete with success, or a failure (its message,
    or the status it ended in); anything else is polled again."""
    if status.is_success:
        return Completed(status.status_text)
    if status.is_failure:
        return FailDataset(status.message or f"dataset ended {status.status_text} without success")
    return StillProcessing(status.status_text)


def status_seen(export: Export, status_text: str, now: str) -> Plan:
    return Plan(changes=(UpdateExport(export.id, now, status_text=status_text),))


def completed(export: Export, status_text: str, now: str) -> Plan:
    """Its snapshot hash becomes the one to diff against, the frozen rows go, and the
    export's alerts are resolved."""
    return Plan(
        changes=(
            UpdateExport(
                export.id, now, state="complete", status_text=status_text, success=1,
                finished_at=now, drop_frozen=True,
            ),
        ),
        alerts=(ResolveAlerts(ALERT_KIND),),
    )  # fmt: skip


def failed(export: Export, message: str, audit: Sequence[Mapping[str, Any]], now: str) -> Plan:
    """The failure with Netstock's audit log (both redacted by the caller), the frozen rows
    dropped, and an alert quoting the message."""
    alert = (
        f"Netstock dataset {export.dataset_id} failed: {message[:ALERT_TEXT_LIMIT]} (audit log "
        f"in netstock_exports id {export.id})"
    )
    return Plan(
        changes=(
            UpdateExport(
                export.id, now, state="failed", success=0, message=message,
                audit=json.dumps(list(audit), default=str), finished_at=now, drop_frozen=True,
            ),
        ),
        alerts=(OpenAlert(ALERT_KIND, alert, "dataset_failed"),),
    )  # fmt: skip


def unverified_endpoints(models: Iterable[str], model_endpoints: Mapping[str, str]) -> list[str]:
    """The models sent to a URL that is an unverified correction of the document."""
    return [
        m
        for m in models
        if m in UNVERIFIED_ENDPOINTS and model_endpoints.get(m) == DEFAULT_MODEL_ENDPOINTS.get(m)
    ]
