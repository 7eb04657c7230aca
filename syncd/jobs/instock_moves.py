"""`instock.moves`: journal every Instock move exactly once.

Moves have no id, come newest first, and the API wants a closed time window.
Each run pulls windows `[watermark - overlap, min(now - lag, watermark + max_window)]`
whole into a per-connection temp table, then, in ONE transaction: inserts the
moves the mirror does not hold yet, queues them as host journal files, and
moves the watermark to the window's end. A crash before that commit repeats
the window; a crash after it starts from the new watermark. Nothing is
journalled twice or missed.

Identical moves really happen (same article, qty, cells, second): a move's
identity is its content plus its occurrence number among identical moves in
the window, so overlapping windows deduplicate while true repeats are kept.

Each move is validated on its own (an `article_id`, a whole-number `qty`, an
RFC 3339 `move_timestamp` with an offset, string ids): a bad one becomes a
reject in the same transaction that journals the window's good ones, so the
watermark never passes a move that was neither journalled nor rejected, and
the host journal never receives a value that is not valid JSON.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from syncd.clock import iso, parse_iso, utcnow
from syncd.config import Duration, Schedule
from syncd.connectors.instock import BadRecord, InstockClient, Move, check_records
from syncd.jobs.base import JobContext, JobSpec
from syncd.jobs.shared.instock_records import record_rejects
from syncd.jobs.shared.moves_journal import (
    journal_intents,
    journal_row,
    move_key,
    window_row,
)
from syncd.send.host import host_format
from syncd.state.mirror.instock_moves import (
    MOVE_FIELDS,
    journal_window,
    open_window,
    stage_moves,
)
from syncd.state.windows import RecordWindow

__all__ = ["MOVE_FIELDS", "journal_row", "move_key", "next_window"]

STREAM = "instock.moves.watermark"
LEDGER_STREAM = "instock.moves"  # its windows in the window ledger
REJECT_SOURCE = "instock:moves"


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lag: Duration = Field(60.0, description="only pull moves older than this (late arrivals)")
    overlap: Duration = Field(600.0, description="re-read this much before the watermark")
    max_window: Duration = Field(86400.0, description="longest window per request series")
    initial_lookback: Duration = Field(86400.0, description="first run starts this far back")
    journal_chunk: int = Field(5000, ge=1, le=100_000, description="moves per host file")


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime
    capped: bool = False  # cut at max_window: more closed time is waiting (a backfill)


def next_window(
    watermark: datetime, now: datetime, *, lag: float, overlap: float, max_window: float
) -> Window | None:
    """The next closed window to pull, or None when the watermark has caught up."""
    closed_until = (now - timedelta(seconds=lag)).replace(microsecond=0)
    capped_end = watermark + timedelta(seconds=max_window)
    end = min(closed_until, capped_end)
    if end <= watermark:
        return None
    return Window(watermark - timedelta(seconds=overlap), end, capped=capped_end < closed_until)


def run(ctx: JobContext) -> None:
    options: Options = ctx.options
    store = ctx.store
    with InstockClient(ctx.settings.connectors.instock) as client:
        client.check_site()
        while True:
            ctx.check_stop()
            mark = store.get_checkpoint(STREAM)
            now = utcnow()
            watermark = (
                parse_iso(mark) if mark else now - timedelta(seconds=options.initial_lookback)
            )
            window = next_window(
                watermark,
                now,
                lag=options.lag,
                overlap=options.overlap,
                max_window=options.max_window,
            )
            if window is None:
                return
            pulled, bad, read = _pull_window(ctx, client, window)
            new = _commit_window(ctx, window, options, bad, read)
            ctx.counts["pulled"] += pulled
            ctx.counts["journalled"] += new
            ctx.log.info(
                "moves_window", start=iso(window.start), end=iso(window.end), pulled=pulled, new=new
            )
            if not window.capped:
                return  # caught up: the next run takes the next window (a backfill goes on)


@dataclass
class WindowRead:
    """What reading a window's pages gave, for its window ledger row."""

    started_at: str
    pages: int = 0
    stored: int = 0
    request_ids: list[str] = field(default_factory=list)
    digest: Any = field(default_factory=hashlib.sha256)  # over the moves' content keys


def _pull_window(
    ctx: JobContext, client: InstockClient, window: Window
) -> tuple[int, list[tuple[str | None, BadRecord]], WindowRead]:
    """Every page of the window into `temp.moves_window`; the bad moves, with the request
    id of the answer each came in, are returned for the commit to reject."""
    store = ctx.store
    open_window(store)
    count = 0
    rejected: list[tuple[str | None, BadRecord]] = []
    read = WindowRead(iso())
    for page in client.move_pages(window.start, window.end):
        good, bad = check_records(page.items, Move, "article_id")
        rows = [window_row(m, page.request_id) for m in good]
        stage_moves(store, rows)
        rejected.extend((page.request_id, b) for b in bad)
        count += len(page.items)
        ctx.counts["stored"] += len(rows)
        read.pages += 1
        read.stored += len(rows)
        if page.request_id:  # the ledger keeps the first ones and counts the rest
            read.request_ids.append(page.request_id)
        read.digest.update("\n".join(r[0] for r in rows).encode())
        ctx.progress(
            "instock.moves: moves read (a backfill goes window by window)",
            ctx.counts["pulled"] + count,
        )
        ctx.check_stop()
    return count, rejected, read


def _commit_window(
    ctx: JobContext,
    window: Window,
    options: Options,
    bad: Sequence[tuple[str | None, BadRecord]] = (),
    read: WindowRead | None = None,
) -> int:
    """Insert new moves, reject bad ones, queue the journal files, write the window's
    ledger row and advance the watermark, atomically."""
    store = ctx.store
    fmt = host_format(ctx.settings, "moves")
    with store.transaction():
        for request_id, record in bad:
            ctx.counts["rejected"] += record_rejects(
                store,
                REJECT_SOURCE,
                [record],
                key_field="article_id",
                request_id=request_id,
                run_id=ctx.run_id,
            )
        before, new = journal_window(store, iso(), ctx.run_id)
        added = 0
        for intent in journal_intents(store, before, options.journal_chunk, fmt):
            added += store.add_intents([intent], run_id=ctx.run_id)
        if read is not None:
            RecordWindow(
                LEDGER_STREAM,
                "instock.moves",
                ctx.run_id,
                "window",
                read.started_at,
                iso(),
                iso(window.start),
                iso(window.end),
                lag_s=options.lag,
                overlap_s=options.overlap,
                pages=read.pages,
                listed=read.stored + len(bad),
                stored=read.stored,
                rejected=len(bad),
                content_hash=read.digest.hexdigest()[:32],
                request_ids=tuple(read.request_ids),
            ).apply(store)
        store.set_checkpoint(STREAM, iso(window.end), run_id=ctx.run_id)
    if added:
        ctx.counts["queued"] += added
    return new


SPEC = JobSpec(
    name="instock.moves",
    run=run,
    description="Journal new Instock moves to the host outbox, exactly once",
    default_schedule=Schedule(interval=300),
    connectors=("instock",),
    options_model=Options,
)
