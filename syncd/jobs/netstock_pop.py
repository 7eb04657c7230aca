"""`netstock.pop`: fetch Netstock's generated orders (`/file/pop_po|tr|wo`) exactly once.

A pop REMOVES what it returns, so the answer is written to the state DB before anything
else is done with it:

1. **Journal.** `NetstockClient.pop(kind, journal=...)` hands the raw answer text to
   `_journal` before parsing it; `_journal` inserts it into `netstock_pops` in its own
   committed transaction (status `journaled`). Answers that carry nothing (an empty queue,
   a refusal) are not journaled; anything else, even text that is not JSON, is.
2. **Queue.** Every `journaled` row (this run's and any a crash left behind) is parsed from
   the journal (quantities exact `Decimal`s, strings or numbers alike) and, in ONE
   transaction, recorded as a host outbox intent (stream `netstock_po`/`netstock_tr`/
   `netstock_wo`, idempotency key `netstock_pop:<journal id>`) and marked `queued`.
   A row that cannot be parsed is marked `unparseable` and kept (raw) with a reject and
   an alert: nothing is thrown away.
3. **Deliver.** The sender (`outbox.send`) writes `outbox/netstock_<kind>-<intent>.<ext>`
   atomically; a replay of the same file is already done. Each run marks `delivered` the
   journal rows whose intent was sent (`delivered_at` = the send time).

A crash after 1 leaves a `journaled` row, queued by the next run; a crash after 2 leaves a
pending intent, sent once (the key is the journal id, so queueing again adds nothing).
Popping is bounded per run (`max_pops`) and never happens in a dry run (a rolled-back
journal would lose the order).

**A pop without an answer** (timeout, dropped connection, 500/502/504: the client's
`OutcomeUnknownError`, nothing journaled) may have removed a file syncd never saw, and no
API call can fetch it again. It is never retried; the run records a reject
(`netstock:pop_<kind>`, reference `POST <url> at <time>`) and opens a `netstock_pop` alert
(subject `lost:<kind>:<time>`) naming the endpoint, the customer and the time the pop was
sent (UTC), so an operator can recover the file in Netstock; then it stops popping until
the next run.

File rows: `file_name`, `line_no` (1-based), then the kind's documented fields; decimals
are exact strings (`"99"`, `"5.0"`, `"0.125"`), dates ISO `YYYY-MM-DD`, unknown fields
the API adds are kept as extra columns.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from syncd.clock import iso
from syncd.config import Schedule
from syncd.connectors.netstock.answers import LINE_MODELS, PopKind
from syncd.connectors.netstock.client import NetstockClient
from syncd.connectors.netstock.errors import OutcomeUnknownError
from syncd.errors import PermanentError
from syncd.jobs.base import JobContext, JobSpec
from syncd.jsontext import canonical
from syncd.logs import redactor
from syncd.send.host import host_file_intent, host_format
from syncd.state import NewReject
from syncd.state.mirror import netstock_pop as pops

KINDS: tuple[PopKind, ...] = (PopKind.PO, PopKind.TR, PopKind.WO)
ALERT_KIND: Final = "netstock_pop"


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_pops: int = Field(200, ge=1, le=100_000, description="pops per kind per run, at most")
    kinds: list[PopKind] = Field(default_factory=lambda: list(KINDS))


def stream_for(kind: PopKind | str) -> str:
    return f"netstock_{PopKind(kind).value}"


def columns_for(kind: PopKind | str) -> list[str]:
    """The file's columns: file_name, line_no and the kind's documented fields."""
    return ["file_name", "line_no", *LINE_MODELS[PopKind(kind)].model_fields]


# --- pure: raw answer -> file rows ------------------------------------------------------------


class PopParseError(ValueError):
    pass


@dataclass(frozen=True)
class ParsedPop:
    file_name: str | None
    rows: list[dict[str, Any]]
    columns: list[str]

    @property
    def empty(self) -> bool:
        return not self.rows and not self.file_name


def carries_data(raw: str) -> bool:
    """False only for an answer that provably holds no popped file (empty queue, refusal)."""
    try:
        body = json.loads(raw, parse_float=Decimal)
    except ValueError:
        return bool(raw.strip())  # a cut-off answer may hold an order: keep it
    if not isinstance(body, dict) or "api_call_status" not in body:
        return True
    if body.get("api_call_status") is not True:
        return False  # the server said no: nothing was popped
    data = body.get("data")
    return isinstance(data, dict) and bool(data.get("file_name") or data.get("lines"))


def _text(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)  # exact: "99", "5.0", "0.125"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict | list):
        return canonical(value)
    return value


def parse_pop(kind: PopKind | str, raw: str) -> ParsedPop:
    """The rows of a popped file from the raw answer; raises PopParseError."""
    kind = PopKind(kind)
    try:
        body = json.loads(raw, parse_float=Decimal)
    except ValueError as exc:
        raise PopParseError(f"answer is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise PopParseError("answer is not a JSON object")
    data = body.get("data")
    if not data:
        return ParsedPop(None, [], columns_for(kind))
    if not isinstance(data, dict):
        raise PopParseError("data is not an object")
    lines = data.get("lines") or []
    if not isinstance(lines, list):
        raise PopParseError("lines is not a list")
    file_name = data.get("file_name")
    file_name = str(file_name) if file_name not in (None, "") else None
    extras: list[str] = []
    rows = [_line_row(kind, file_name, i, line, extras) for i, line in enumerate(lines)]
    for row in rows:
        for name in extras:
            row.setdefault(name, None)
    return ParsedPop(file_name, rows, columns_for(kind) + sorted(extras))


def _line_row(
    kind: PopKind, file_name: str | None, index: int, raw_line: Any, extras: list[str]
) -> dict[str, Any]:
    model = LINE_MODELS[kind]
    try:
        line = model.model_validate(raw_line)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PopParseError(f"line {index}: {where}: {first['msg']}") from None
    row: dict[str, Any] = {"file_name": file_name, "line_no": index + 1}
    for name in model.model_fields:
        row[name] = _text(getattr(line, name))
    for name, value in (line.model_extra or {}).items():
        if name in row:
            continue
        if name not in extras:
            extras.append(name)
        row[name] = _text(value)
    return row


# --- the job --------------------------------------------------------------------------------


def run(ctx: JobContext) -> None:
    options: Options = ctx.options
    store = ctx.store
    pops.mark_delivered(store)
    queue_journaled(ctx)  # what a crash left between journal and queue
    if ctx.dry_run:  # a pop removes what it returns: a dry run makes none, and says so
        ctx.counts["pops_not_made"] = len(options.kinds)
        return
    with NetstockClient(ctx.settings.connectors.netstock) as client:
        for kind in options.kinds:
            for _ in range(options.max_pops):
                ctx.check_stop()
                journaled: list[int] = []
                sent_at = iso()
                try:
                    result = client.pop(kind, journal=_journal(ctx, kind, journaled))
                except OutcomeUnknownError as exc:
                    if journaled:
                        raise  # the text that came is journaled: queue_journaled handles it
                    lost_pop(ctx, client, kind, sent_at, exc)
                    return  # a server that loses answers may lose the next one too
                except PermanentError as exc:
                    if exc.code != "malformed_pop":
                        raise
                    result = None  # journaled as is; queue_journaled marks it unparseable
                finally:
                    if journaled:
                        ctx.counts["popped"] += len(journaled)
                        queue_journaled(ctx)  # the journal is committed: now parse and queue
                if result is None and not journaled:
                    break  # the queue is empty
            else:
                ctx.log.info("netstock_pop_bounded", kind=str(kind), max_pops=options.max_pops)
    pops.mark_delivered(store)


def lost_pop(
    ctx: JobContext, client: NetstockClient, kind: PopKind, sent_at: str, exc: Exception
) -> None:
    """A pop whose answer never came (timeout, dropped connection, 5xx): Netstock may have
    removed a file syncd never received. Nothing can fetch it again through the API, so an
    operator is told which endpoint was called and when, to recover it in Netstock."""
    endpoint = f"POST {str(client.config.base_url).rstrip('/')}{kind.path}"
    message = (
        f"{endpoint} sent at {sent_at} got no answer ({exc}); Netstock may have removed a "
        f"{kind.value.upper()} file for customer {client.customer_identifier} that syncd "
        "never received. Find the file Netstock generated around that time, hand it to the "
        "host, then resolve this alert"
    )
    with ctx.store.transaction():
        ctx.store.add_rejects(
            [
                NewReject(
                    source=f"netstock:pop_{kind.value}",
                    reference=f"{endpoint} at {sent_at}",
                    reason=message,
                )
            ],
            run_id=ctx.run_id,
        )
    ctx.store.open_alert(ALERT_KIND, message, subject=f"lost:{kind.value}:{sent_at}")
    ctx.counts["pops_outcome_unknown"] += 1
    ctx.warnings.append(message)
    ctx.log.error(
        "netstock_pop_outcome_unknown", kind=kind.value, endpoint=endpoint, sent_at=sent_at
    )


def _journal(ctx: JobContext, kind: PopKind | str, ids: list[int]) -> Any:
    def write(raw: str) -> None:
        if not carries_data(raw):
            return
        ids.append(pops.journal_pop(ctx.store, PopKind(kind).value, raw, iso(), ctx.run_id))

    return write


def queue_journaled(ctx: JobContext) -> int:
    """Parse every journaled answer and queue its host file; returns files queued."""
    store = ctx.store
    queued = 0
    rows = pops.journaled_pops(store)
    for row in rows:
        queued += queue_row(ctx, row)
    return queued


def queue_row(ctx: JobContext, row: Mapping[str, Any]) -> int:
    """One journal row -> one host outbox intent, marked queued, in ONE transaction."""
    store = ctx.store
    kind = PopKind(row["kind"])
    try:
        parsed = parse_pop(kind, row["raw"])
    except PopParseError as exc:
        _unparseable(ctx, row, str(exc))
        return 0
    key = f"netstock_pop:{row['id']}"
    stream = stream_for(kind)
    with store.transaction():
        added = 0
        outbox_id = None
        if parsed.rows:
            fmt = host_format(ctx.settings, stream)
            intent = host_file_intent(stream, parsed.rows, fmt, key, columns=parsed.columns)
            added = store.add_intents([intent], run_id=ctx.run_id)
            outbox_id = store.intent_id("host", key)
        pops.PopQueued(row["id"], parsed.file_name, len(parsed.rows), outbox_id, iso()).apply(store)
    if added:
        ctx.counts["queued"] += added
        ctx.counts[f"lines_{kind.value}"] += len(parsed.rows)
    return added


def _unparseable(ctx: JobContext, row: Mapping[str, Any], reason: str) -> None:
    store = ctx.store
    with store.transaction():
        pops.PopUnparseable(row["id"], redactor.text(reason)).apply(store)
        store.add_rejects(
            [
                NewReject(
                    source=f"netstock:pop_{row['kind']}",
                    reference=f"netstock_pops:{row['id']}",
                    reason=f"popped answer cannot be read ({reason}); the raw text is kept in "
                    f"netstock_pops id {row['id']}",
                )
            ],
            run_id=ctx.run_id,
        )
    ctx.counts["unparseable"] += 1
    store.open_alert(
        ALERT_KIND,
        f"a popped Netstock {row['kind']} answer cannot be read ({reason}); "
        f"raw text kept in netstock_pops id {row['id']}",
        subject=str(row["kind"]),
    )
    ctx.log.error("netstock_pop_unparseable", id=row["id"], kind=row["kind"], reason=reason)


SPEC = JobSpec(
    name="netstock.pop",
    run=run,
    description="Pop Netstock generated POs/TRs/WOs into the host outbox, exactly once",
    default_schedule=Schedule(interval=900),
    connectors=("netstock",),
    options_model=Options,
)
