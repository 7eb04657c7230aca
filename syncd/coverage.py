"""`syncd coverage`: which periods a stream's pulls covered, and every gap, with its cause.

Pure functions over plain data (the ledger rows of `pull_windows`, the daily summaries
housekeeping left, and the stream's failed runs), read by `syncd.state.windows`.

What a ledger row covers:
- a time-window pull (`kind` window): `[window_from, window_to]`;
- a full scan (`kind` scan, instock.inventory): a snapshot that replaces the one before,
  so it covers from the end of the previous scan (or its own start, for the first) to its
  end: scans that follow each other leave no gap, only failed runs after the last one do;
- a cursor walk (`kind` cursor): a row that moved the stream's checkpoint from
  `cursor_before` to `cursor_after`. A walk from the start of the list (`cursor_before`
  empty or NULL) saw everything listed up to its end; a row that continues the previous
  row's cursor covers the time since that row ended; any other `cursor_before` means the
  checkpoint moved without a ledger row, and the time since the previous row is a gap.
  Rows that moved no checkpoint (both cursors NULL) cover nothing of their own.

A gap is a part of the period (the first covered moment to the last, or to `now` when
runs failed after the last row) that no row covers. Its cause, first that applies:
`midnight` (a stream that only lists today, such as DSOrder's submitted orders, and a
local midnight inside the gap: what was submitted before it can no longer be pulled),
`failed-run` (runs of the stream's job failed, crashed or were interrupted while it was
open: listed in `runs`), else `checkpoint-reset` (the watermark moved without a ledger
row: `syncd checkpoints reset`, or a change made by hand).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from itertools import pairwise
from typing import Literal
from zoneinfo import ZoneInfo

from syncd.clock import duration_text, iso

GapCause = Literal["midnight", "failed-run", "checkpoint-reset"]
# Streams of a remote that lists only the site's current day (a midnight inside a gap is
# its cause): DSOrder's submitted orders.
TODAY_ONLY_STREAMS = frozenset({"dsorder.submitted"})
_BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)
SCANS_SHOWN = 10  # the latest scans `coverage_text` lists (all are in `coverage_json`)


@dataclass(frozen=True, order=True)
class Interval:
    start: datetime
    end: datetime


@dataclass(frozen=True)
class LedgerRow:
    """One `pull_windows` row, as the coverage needs it."""

    run_id: str
    kind: str  # window, cursor, scan
    started_at: datetime
    ended_at: datetime
    window_from: datetime | None = None
    window_to: datetime | None = None
    cursor_before: str | None = None
    cursor_after: str | None = None
    overlap_s: float | None = None
    backfill: bool = False  # written by `syncd backfill`: a window beside the live pull
    pulls: int = 1  # the pulls the row stands for (later ones that found the same extend it)


@dataclass(frozen=True)
class DaySummary:
    """A compacted day of a stream (`pull_window_days`): the union of its windows, and
    for a cursor stream the last checkpoint its rows left and when."""

    day: str
    covered: tuple[Interval, ...]
    windows: int
    overlap_s: float | None = None
    min_overlap_s: float | None = None
    cursor_after: str | None = None
    last_ended_at: datetime | None = None


@dataclass(frozen=True)
class FailedRun:
    run_id: str
    status: str  # failed, crashed, interrupted
    started_at: datetime


@dataclass(frozen=True)
class Gap:
    start: datetime
    end: datetime
    cause: GapCause
    runs: tuple[str, ...] = ()  # the failed runs of the stream's job while it was open


@dataclass(frozen=True)
class ScanSummary:
    """One settled scan of a scan stream, as its ledger row tells it."""

    scan: int | None
    run_id: str
    started_at: datetime
    ended_at: datetime
    pages: int
    listed: int
    stored: int
    rejected: int
    content_hash: str | None
    request_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Coverage:
    stream: str
    kind: str
    start: datetime | None  # the period: first covered moment (or `since`) ...
    end: datetime | None  # ... to the last (or `now`, when runs failed after it)
    windows: int
    gaps: tuple[Gap, ...]
    overlap_s: float | None = None  # the largest overlap the pulls were configured with
    min_overlap_s: float | None = None  # the least overlap seen between consecutive windows
    short_overlaps: int = 0  # consecutive windows overlapping less than configured
    backfills: int = 0  # of `windows`, the rows backfills wrote
    covered: tuple[Interval, ...] = field(default=(), compare=False)
    scans: tuple[ScanSummary, ...] = ()  # a scan stream: its live scans, oldest first


def union(intervals: Iterable[Interval]) -> list[Interval]:
    """The sorted, merged union (touching intervals merge: a window ending where the next
    begins leaves no gap)."""
    merged: list[Interval] = []
    for interval in sorted(intervals):
        if merged and interval.start <= merged[-1].end:
            if interval.end > merged[-1].end:
                merged[-1] = Interval(merged[-1].start, interval.end)
        else:
            merged.append(interval)
    return merged


def complement(merged: Sequence[Interval], start: datetime, end: datetime) -> list[Interval]:
    """The parts of `[start, end]` that the sorted, merged `merged` leaves uncovered."""
    holes: list[Interval] = []
    at = start
    for interval in merged:
        if interval.end <= at:
            continue
        if interval.start >= end:
            break
        if interval.start > at:
            holes.append(Interval(at, interval.start))
        at = max(at, interval.end)
    if at < end:
        holes.append(Interval(at, end))
    return holes


@dataclass(frozen=True)
class _Piece:
    interval: Interval
    started_at: datetime  # when the pull that covered it began (wall clock)


def _pieces(rows: Sequence[LedgerRow], prior: DaySummary | None) -> list[_Piece]:
    """What each row covers; a cursor row is chained to the one before it."""
    pieces: list[_Piece] = []
    last: tuple[datetime, str | None] | None = None
    if prior is not None and prior.last_ended_at is not None:
        last = (prior.last_ended_at, prior.cursor_after)
    for row in rows:
        if row.kind == "scan" and row.window_from is not None and row.window_to is not None:
            start = row.window_from if last is None else min(last[0], row.window_from)
            pieces.append(_Piece(Interval(start, row.window_to), row.started_at))
            last = (row.window_to, None)
            continue
        if row.kind != "cursor" or row.backfill:  # a backfill's row is a window of its own
            if row.window_from is not None and row.window_to is not None:
                pieces.append(_Piece(Interval(row.window_from, row.window_to), row.started_at))
            continue
        if row.cursor_after is None and row.cursor_before is None:
            continue  # a page that moved no checkpoint (e.g. a look at the head of a list)
        if not row.cursor_before:
            start = _BEGINNING  # from the start of the list: all listed up to now
        elif last is not None and row.cursor_before == last[1]:
            start = last[0]
        else:
            start = row.started_at  # the checkpoint moved without a ledger row
        pieces.append(_Piece(Interval(min(start, row.ended_at), row.ended_at), row.started_at))
        last = (row.ended_at, row.cursor_after)
    return pieces


def _midnight_inside(gap: Interval, zone: ZoneInfo) -> bool:
    """Whether a local midnight falls in `(start, end]`."""
    local_start, local_end = gap.start.astimezone(zone), gap.end.astimezone(zone)
    first = datetime.combine(local_start.date() + timedelta(days=1), time(0), zone)
    return first <= local_end


def _overlaps(rows: Sequence[LedgerRow]) -> tuple[float | None, float | None, int]:
    """(configured overlap, least overlap seen, consecutive windows short of it), over
    time windows in the order they were pulled."""
    windows = [
        (r.window_from, r.window_to, r.overlap_s)
        for r in rows
        if r.kind == "window"
        and not r.backfill  # a past period pulled again: not a step of the live windows
        and r.window_from is not None
        and r.window_to is not None
    ]
    configured = max((o for _, _, o in windows if o is not None), default=None)
    least: float | None = None
    short = 0
    for (_, before_to, _), (after_from, _, wanted) in pairwise(windows):
        seen = (before_to - after_from).total_seconds()
        if seen < 0:
            continue  # not consecutive: a gap, reported as such
        least = seen if least is None else min(least, seen)
        if wanted is not None and seen < wanted:
            short += 1
    return configured, least, short


def stream_coverage(
    stream: str,
    rows: Sequence[LedgerRow],
    failures: Sequence[FailedRun] = (),
    *,
    days: Sequence[DaySummary] = (),
    since: datetime | None = None,
    now: datetime | None = None,
    midnight_zone: str | None = None,
    kept_gaps: Sequence[Gap] = (),
) -> Coverage:
    """The coverage of one stream: `rows` in the order they were written (id order), the
    compacted `days` before them, the job's failed runs. `midnight_zone`: the time zone
    of a stream that lists only today (its midnights are gaps' `midnight` cause).
    `kept_gaps`: gaps recorded when their rows were compacted, whose cause is taken when
    the runs that explained it are no longer on record."""
    prior = days[-1] if days else None
    pieces = [_Piece(i, i.start) for d in days for i in d.covered] + _pieces(rows, prior)
    live = [r for r in rows if not r.backfill]
    kind = live[-1].kind if live else rows[-1].kind if rows else "window"
    merged = union(p.interval for p in pieces)
    if not merged:
        return Coverage(stream, kind, None, None, 0, ())
    first = merged[0].start
    if first == _BEGINNING:  # a walk from the start of a list: the period begins at the
        # first moment the ledger knows of
        first = min(
            [p.interval.start for p in pieces if p.interval.start > _BEGINNING]
            + [p.started_at for p in pieces if p.started_at > _BEGINNING]
            + [merged[0].end]
        )
    start = first if since is None else max(since, first)
    end = merged[-1].end
    last_row_end = max((r.ended_at for r in rows), default=end)
    late = tuple(f for f in failures if f.started_at > last_row_end)
    if late and now is not None and now > end:
        end = now
    zone = ZoneInfo(midnight_zone) if midnight_zone else None
    known = {g.start: g for g in kept_gaps}
    gaps: list[Gap] = []
    for hole in complement(merged, start, end):
        # The wall-clock span the gap stayed open: until the pull that covered its end began.
        closed_by = min((p.started_at for p in pieces if p.interval.start >= hole.end), default=end)
        open_until = max(closed_by, hole.end)
        runs = tuple(f.run_id for f in failures if hole.start <= f.started_at <= open_until)
        cause: GapCause
        if zone is not None and _midnight_inside(hole, zone):
            cause = "midnight"
        elif runs:
            cause = "failed-run"
        else:
            cause = "checkpoint-reset"
        kept = known.get(hole.start)
        if kept is not None and not runs and cause == "checkpoint-reset":
            cause, runs = kept.cause, kept.runs  # found while its runs were on record
        gaps.append(Gap(hole.start, hole.end, cause, runs))
    configured, least, short = _overlaps(rows)
    for day in days:
        if day.overlap_s is not None:
            configured = max(configured or 0.0, day.overlap_s)
        if day.min_overlap_s is not None:
            least = day.min_overlap_s if least is None else min(least, day.min_overlap_s)
    return Coverage(
        stream,
        kind,
        start,
        end,
        sum(r.pulls for r in rows) + sum(d.windows for d in days),
        tuple(gaps),
        configured,
        least,
        short,
        sum(r.backfill for r in rows),
        tuple(merged),
    )


def summarize_day(day: str, rows: Sequence[LedgerRow], prior: DaySummary | None) -> DaySummary:
    """One day of a stream's ledger rows (in write order) as a compacted day: the union of
    what they covered (chained to the `prior` day's last cursor), their overlaps, and for
    a cursor stream the last checkpoint left."""
    pieces = _pieces(rows, prior)
    configured, least, _ = _overlaps(rows)
    chained = [r for r in rows if r.kind == "cursor" and r.cursor_after is not None]
    last = chained[-1] if chained else None
    scans = [r for r in rows if r.kind == "scan" and r.window_to is not None]
    last_end = last.ended_at if last else (scans[-1].window_to if scans else None)
    return DaySummary(
        day,
        tuple(union(p.interval for p in pieces)),
        sum(r.pulls for r in rows),
        configured,
        least,
        last.cursor_after if last else (prior.cursor_after if prior else None),
        last_end if last_end is not None else (prior.last_ended_at if prior else None),
    )


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:g} s"


def coverage_json(cov: Coverage) -> dict[str, object]:
    """A stream's coverage as JSON-ready data (ISO-8601 UTC times)."""

    def t(moment: datetime | None) -> str | None:
        return None if moment is None else iso(moment)

    return {
        "stream": cov.stream,
        "kind": cov.kind,
        "from": t(cov.start),
        "to": t(cov.end),
        "windows": cov.windows,
        "overlap_s": cov.overlap_s,
        "min_overlap_s": cov.min_overlap_s,
        "short_overlaps": cov.short_overlaps,
        "backfills": cov.backfills,
        "gaps": [
            {
                "from": t(g.start),
                "to": t(g.end),
                "seconds": (g.end - g.start).total_seconds(),
                "cause": g.cause,
                "runs": list(g.runs),
            }
            for g in cov.gaps
        ],
        **(
            {
                "scans": [
                    {
                        "scan": sc.scan,
                        "run_id": sc.run_id,
                        "from": t(sc.started_at),
                        "to": t(sc.ended_at),
                        "pages": sc.pages,
                        "listed": sc.listed,
                        "stored": sc.stored,
                        "rejected": sc.rejected,
                        "content_hash": sc.content_hash,
                        "request_ids": list(sc.request_ids),
                    }
                    for sc in cov.scans
                ]
            }
            if cov.kind == "scan"
            else {}
        ),
    }


def coverage_text(cov: Coverage, when: Callable[[datetime], str]) -> list[str]:
    """A stream's coverage as lines for a person (`when` formats a time)."""
    if cov.start is None or cov.end is None:
        return [f"{cov.stream}: no ledger rows in the period"]
    verdict = "no gap" if not cov.gaps else f"{len(cov.gaps)} gap(s)"
    rows = f"{cov.windows} rows" + (f", {cov.backfills} by backfills" if cov.backfills else "")
    lines = [f"{cov.stream} ({cov.kind}, {rows}): {when(cov.start)} .. {when(cov.end)}: {verdict}"]
    if cov.kind == "window" and cov.overlap_s is None and cov.min_overlap_s is not None:
        # A stream that re-reads its period from the start (DSOrder's day): no overlap is
        # configured, and consecutive pulls overlap by hours; said as such.
        lines.append(
            "  overlap: none configured (each pull reads its period from the start); "
            f"consecutive pulls overlap by at least {duration_text(cov.min_overlap_s)}"
        )
    elif cov.kind == "window":
        lines.append(
            f"  overlap: configured {_seconds(cov.overlap_s)}, least seen "
            f"{_seconds(cov.min_overlap_s)}, {cov.short_overlaps} window(s) short of it"
        )
    if cov.kind == "scan":
        shown = cov.scans[-SCANS_SHOWN:]
        if len(cov.scans) > len(shown):
            lines.append(f"  ({len(cov.scans) - len(shown)} earlier scan(s): see --json)")
        for sc in shown:
            took = timedelta(seconds=round((sc.ended_at - sc.started_at).total_seconds()))
            lines.append(
                f"  scan {sc.scan if sc.scan is not None else '?'} {when(sc.started_at)} .. "
                f"{when(sc.ended_at)} ({took}): {sc.pages} pages, {sc.listed} listed, "
                f"{sc.stored} stored, {sc.rejected} rejected, hash {sc.content_hash or '-'}"
            )
    for gap in cov.gaps:
        runs = f" (runs {', '.join(gap.runs)})" if gap.runs else ""
        span = timedelta(seconds=round((gap.end - gap.start).total_seconds()))
        lines.append(f"  gap {when(gap.start)} .. {when(gap.end)} ({span}): {gap.cause}{runs}")
    return lines


__all__ = [
    "TODAY_ONLY_STREAMS",
    "Coverage",
    "DaySummary",
    "FailedRun",
    "Gap",
    "GapCause",
    "Interval",
    "LedgerRow",
    "ScanSummary",
    "complement",
    "coverage_json",
    "coverage_text",
    "stream_coverage",
    "summarize_day",
    "union",
]
