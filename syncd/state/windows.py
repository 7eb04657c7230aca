"""Owner of the window ledger (`pull_windows`, `pull_window_days`): the only module that
writes them, and the reads `syncd coverage` works from.

A pull adds its ledger row as a `RecordWindow` change in the `Plan` (or transaction) that
stores the page or window's data and moves its checkpoint, so a row exists exactly when
its data does: a crash before the commit loses both, and the window is pulled again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from syncd.clock import iso, parse_iso
from syncd.coverage import (
    TODAY_ONLY_STREAMS,
    Coverage,
    DaySummary,
    FailedRun,
    Gap,
    Interval,
    LedgerRow,
    ScanSummary,
    stream_coverage,
    summarize_day,
    union,
)
from syncd.jsontext import text_hash
from syncd.state.store import Store

MAX_REQUEST_IDS = 20  # per row; the rest are counted in request_ids_more
FAILED_STATUSES = ("failed", "crashed", "interrupted")
EXTEND_LOOKBACK = 200  # rows looked back for the one an unchanged pull extends


@dataclass(frozen=True)
class RecordWindow:
    """One ledger row: what a page or window of a pull covered and what it stored."""

    stream: str
    job: str
    run_id: str
    kind: str  # window, cursor, scan
    started_at: str
    ended_at: str
    window_from: str | None = None
    window_to: str | None = None
    cursor_before: str | None = None
    cursor_after: str | None = None
    lag_s: float | None = None
    overlap_s: float | None = None
    pages: int = 1
    listed: int = 0
    stored: int = 0
    rejected: int = 0
    content_hash: str | None = None
    request_ids: tuple[str, ...] = ()
    request_ids_more: int = 0  # request ids already left out by the caller (a long scan)
    scan: int | None = None  # kind scan: the scan's number (instock_inventory.scan)
    backfill_id: int | None = None  # written by a backfill (syncd backfill), not the live pull

    def apply(self, store: Store) -> None:
        ids = [r for r in self.request_ids if r]
        if self.backfill_id is None:
            previous = _previous_row(store, self)
            if previous is not None and extends(previous, self):
                _extend(store, previous, self, ids)
                return
        store.db.execute(
            "INSERT INTO pull_windows (stream, job, run_id, kind, window_from, window_to, "
            "cursor_before, cursor_after, lag_s, overlap_s, pages, listed, stored, rejected, "
            "content_hash, request_ids, request_ids_more, started_at, ended_at, scan, "
            "backfill_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                self.stream,
                self.job,
                self.run_id,
                self.kind,
                self.window_from,
                self.window_to,
                self.cursor_before,
                self.cursor_after,
                self.lag_s,
                self.overlap_s,
                self.pages,
                self.listed,
                self.stored,
                self.rejected,
                self.content_hash,
                json.dumps(ids[:MAX_REQUEST_IDS]),
                max(0, len(ids) - MAX_REQUEST_IDS) + self.request_ids_more,
                self.started_at,
                self.ended_at,
                self.scan,
                self.backfill_id,
            ],
        )


_EXTEND_COLUMNS = (
    "id, kind, window_from, window_to, cursor_before, cursor_after, overlap_s, rejected, scan, "
    "content_hash, request_ids, request_ids_more"
)


def _previous_row(store: Store, new: RecordWindow) -> dict[str, Any] | None:
    """The live row `new` would follow in the coverage: the stream's last row of the live
    pull of the same kind (for a cursor page, the last that moved a cursor, or the last
    look at the head, which covers nothing, for one that moved none)."""
    if new.kind in ("window", "scan"):
        shape = f"kind = '{new.kind}'"
    elif new.cursor_before is None and new.cursor_after is None:
        shape = "kind = 'cursor' AND cursor_before IS NULL AND cursor_after IS NULL"
    else:
        shape = "kind = 'cursor' AND cursor_after IS NOT NULL"
    # Among the table's last EXTEND_LOOKBACK rows only (a bounded walk down the rowid; `+`
    # keeps SQLite off the stream index, whose rows it would all visit): an older row is
    # not extended, the pull adds its own, which the next one can extend.
    rows = store.query(
        f"SELECT {_EXTEND_COLUMNS} FROM pull_windows WHERE id > (SELECT coalesce(max(id), 0) "
        "FROM pull_windows) - ? AND +stream = ? AND job = ? AND backfill_id IS NULL "
        f"AND {shape} ORDER BY id DESC LIMIT 1",
        [EXTEND_LOOKBACK, new.stream, new.job],
    )
    return rows[0] if rows else None


def extends(previous: Mapping[str, Any], new: RecordWindow) -> bool:
    """Whether `new` adds nothing to the coverage but what extending `previous` (a row of
    `_previous_row`) to its end says: the same content (hash), nothing rejected by either,
    and contiguous with it -- a time window that starts inside the previous one (by at
    least the configured overlap, so no short overlap is hidden), the next scan (a scan
    covers from the end of the one before), or a cursor page read from where the previous
    row left the cursor that did not move it (or two looks at the head, which cover
    nothing). The union of what both cover is then the extended row. Lineage holds: the
    same content means the same records, each listed again by the newer pull."""
    if (
        new.content_hash is None
        or previous["content_hash"] != new.content_hash
        or new.rejected
        or previous["rejected"]
        or previous["kind"] != new.kind
    ):
        return False
    if new.kind == "cursor":
        if new.cursor_before is None and new.cursor_after is None:
            return previous["cursor_before"] is None and previous["cursor_after"] is None
        return bool(new.cursor_before == new.cursor_after == previous["cursor_after"])
    new_from, new_to = _dt(new.window_from), _dt(new.window_to)
    old_from, old_to = _dt(previous["window_from"]), _dt(previous["window_to"])
    if new_from is None or new_to is None or old_from is None or old_to is None:
        return False
    if new.kind == "scan":
        return old_from <= new_from and old_to <= new_to
    if not old_from <= new_from <= old_to <= new_to or previous["overlap_s"] != new.overlap_s:
        return False
    return new.overlap_s is None or (old_to - new_from).total_seconds() >= new.overlap_s


def _extend(store: Store, previous: Mapping[str, Any], new: RecordWindow, ids: list[str]) -> None:
    """Fold `new` into `previous`: its end, window end, lag, cursor and scan number (every
    record of a scan points at the last scan listing it); counts summed; the request
    ids kept are the row's first and the newest (a record points at the request that first
    or last listed it), the others counted in request_ids_more."""
    kept = json.loads(previous["request_ids"] or "[]") + ids
    more = previous["request_ids_more"] + new.request_ids_more
    if len(kept) > MAX_REQUEST_IDS:
        more += len(kept) - MAX_REQUEST_IDS
        kept = kept[: MAX_REQUEST_IDS - 1] + kept[-1:]
    store.db.execute(
        "UPDATE pull_windows SET ended_at = ?, window_to = ?, lag_s = ?, cursor_after = ?, "
        "pages = pages + ?, listed = listed + ?, stored = stored + ?, pulls = pulls + 1, "
        "request_ids = ?, request_ids_more = ?, scan = coalesce(?, scan) WHERE id = ?",
        [
            new.ended_at,
            new.window_to,
            new.lag_s,
            new.cursor_after,
            new.pages,
            new.listed,
            new.stored,
            json.dumps(kept),
            more,
            new.scan,
            previous["id"],
        ],
    )


def _dt(text: str | None) -> datetime | None:
    return None if text is None else parse_iso(text)


def ledger_streams(store: Store, stream: str | None = None) -> list[dict[str, Any]]:
    """Each stream with its job (live rows and compacted days), in name order."""
    where = "WHERE stream = :stream" if stream else ""
    return store.query(
        f"SELECT stream, max(job) AS job FROM (SELECT stream, job FROM pull_windows {where} "
        f"UNION ALL SELECT stream, job FROM pull_window_days {where}) "
        "GROUP BY stream ORDER BY stream",
        {"stream": stream},
    )


def ledger_rows(store: Store, stream: str, since: str | None = None) -> list[LedgerRow]:
    """A stream's live ledger rows in the order they were written; with `since`, those
    that cover anything after it (and, for a cursor walk, the row before, to chain to)."""
    since = since or ""
    first = store.scalar(
        "SELECT min(id) FROM pull_windows WHERE stream = ? AND coalesce(window_to, ended_at) >= ?",
        [stream, since],
    )
    if first is None:
        return []
    before = store.scalar(
        "SELECT max(id) FROM pull_windows WHERE stream = ? AND id < ? AND cursor_after IS NOT NULL",
        [stream, first],
    )
    rows = store.query(
        "SELECT run_id, kind, started_at, ended_at, window_from, window_to, cursor_before, "
        "cursor_after, overlap_s, backfill_id, pulls FROM pull_windows WHERE stream = ? "
        "AND id >= ? "
        "ORDER BY id",
        [stream, before if before is not None else first],
    )
    return [_ledger_row(r) for r in rows]


def _ledger_row(r: dict[str, Any]) -> LedgerRow:
    return LedgerRow(
        r["run_id"],
        r["kind"],
        parse_iso(r["started_at"]),
        parse_iso(r["ended_at"]),
        _dt(r["window_from"]),
        _dt(r["window_to"]),
        r["cursor_before"],
        r["cursor_after"],
        r["overlap_s"],
        r.get("backfill_id") is not None,
        r.get("pulls", 1),
    )


def ledger_days(store: Store, stream: str, since: str | None = None) -> list[DaySummary]:
    """A stream's compacted days (oldest first) from `since`'s day on."""
    rows = store.query(
        "SELECT * FROM pull_window_days WHERE stream = ? AND day >= ? ORDER BY day",
        [stream, (since or "")[:10]],
    )
    return [
        DaySummary(
            r["day"],
            tuple(Interval(parse_iso(a), parse_iso(b)) for a, b in json.loads(r["covered"])),
            r["windows"],
            r["overlap_s"],
            r["min_overlap_s"],
            r["cursor_after"],
            _dt(r["last_ended_at"]),
        )
        for r in rows
    ]


def failed_runs(store: Store, job: str, since: str | None = None) -> list[FailedRun]:
    """The job's runs that failed, crashed or were interrupted (still on record)."""
    marks = ",".join("?" * len(FAILED_STATUSES))
    rows = store.query(
        f"SELECT run_id, status, started_at FROM runs WHERE job = ? AND status IN ({marks}) "
        "AND started_at >= ? ORDER BY started_at",
        [job, *FAILED_STATUSES, since or ""],
    )
    return [FailedRun(r["run_id"], r["status"], parse_iso(r["started_at"])) for r in rows]


def coverage_report(
    store: Store,
    stream: str | None = None,
    *,
    since: str | None = None,
    now: datetime | None = None,
    site_timezone: str = "UTC",
) -> list[Coverage]:
    """The coverage of each stream in the ledger (or of `stream`), from `since` on."""
    reports = []
    for entry in ledger_streams(store, stream):
        name = entry["stream"]
        cov = stream_coverage(
            name,
            ledger_rows(store, name, since),
            failed_runs(store, entry["job"], since),
            days=ledger_days(store, name, since),
            since=None if since is None else parse_iso(since),
            now=now,
            midnight_zone=site_timezone if name in TODAY_ONLY_STREAMS else None,
            kept_gaps=kept_gaps(store, name),
        )
        if cov.kind == "scan":
            cov = replace(cov, scans=tuple(scans(store, name, since)))
        reports.append(cov)
    return reports


def scans(store: Store, stream: str, since: str | None = None) -> list[ScanSummary]:
    """A scan stream's live scans that ended at or after `since`, oldest first."""
    rows = store.query(
        "SELECT scan, run_id, started_at, ended_at, pages, listed, stored, rejected, "
        "content_hash, request_ids FROM pull_windows "
        "WHERE stream = ? AND kind = 'scan' AND ended_at >= ? ORDER BY id",
        [stream, since or ""],
    )
    return [_scan_summary(r) for r in rows]


def _scan_summary(r: dict[str, Any]) -> ScanSummary:
    return ScanSummary(
        r["scan"],
        r["run_id"],
        parse_iso(r["started_at"]),
        parse_iso(r["ended_at"]),
        r["pages"],
        r["listed"],
        r["stored"],
        r["rejected"],
        r["content_hash"],
        tuple(json.loads(r["request_ids"] or "[]")),
    )


def kept_gaps(store: Store, stream: str) -> list[Gap]:
    """The gaps recorded when the stream's rows were compacted."""
    return [
        Gap(
            parse_iso(r["gap_from"]),
            parse_iso(r["gap_to"]),
            r["cause"],
            tuple(json.loads(r["runs"])),
        )
        for r in store.query(
            "SELECT gap_from, gap_to, cause, runs FROM coverage_gaps WHERE stream = ? "
            "ORDER BY gap_from",
            [stream],
        )
    ]


def compact_ledger(store: Store, before_day: str, *, site_timezone: str = "UTC") -> int:
    """Fold the ledger rows of the UTC days before `before_day` (YYYY-MM-DD) into
    `pull_window_days`, record the gaps they show in `coverage_gaps` (with their cause,
    while the runs that explain it are on record), and delete them. One transaction per
    stream; returns the rows compacted."""
    compacted = 0
    for entry in store.query(
        "SELECT stream, max(job) AS job FROM pull_windows WHERE ended_at < ? GROUP BY stream "
        "ORDER BY stream",
        [before_day],
    ):
        stream, job = entry["stream"], entry["job"]
        with store.transaction():
            rows = store.query(
                "SELECT * FROM pull_windows WHERE stream = ? AND ended_at < ? ORDER BY id",
                [stream, before_day],
            )
            days = ledger_days(store, stream)
            coverage = stream_coverage(
                stream,
                [_ledger_row(r) for r in rows],
                failed_runs(store, job),
                days=days,
                midnight_zone=site_timezone if stream in TODAY_ONLY_STREAMS else None,
                kept_gaps=kept_gaps(store, stream),
            )
            for gap in coverage.gaps:
                store.db.execute(
                    "INSERT OR IGNORE INTO coverage_gaps (stream, gap_from, gap_to, cause, runs, "
                    "found_at) VALUES (?, ?, ?, ?, ?, ?)",
                    [stream, iso(gap.start), iso(gap.end), gap.cause, json.dumps(gap.runs), iso()],
                )
            by_day: dict[str, list[dict[str, Any]]] = {}
            for row in rows:
                by_day.setdefault(row["ended_at"][:10], []).append(row)
            prior = days[-1] if days else None
            for day, day_rows in sorted(by_day.items()):
                prior = _store_day(store, stream, job, day, day_rows, prior)
            store.db.execute(
                "DELETE FROM pull_windows WHERE stream = ? AND ended_at < ?", [stream, before_day]
            )
            compacted += len(rows)
    return compacted


def _store_day(
    store: Store,
    stream: str,
    job: str,
    day: str,
    rows: list[dict[str, Any]],
    prior: DaySummary | None,
) -> DaySummary:
    summary = summarize_day(day, [_ledger_row(r) for r in rows], prior)
    total = {k: sum(r[k] for r in rows) for k in ("pages", "listed", "stored", "rejected")}
    covered = list(summary.covered)
    digest = text_hash("\n".join(r["content_hash"] or "" for r in rows))
    old = store.query("SELECT * FROM pull_window_days WHERE stream = ? AND day = ?", [stream, day])
    windows = sum(r["pulls"] for r in rows)
    if old:  # rows of a day compacted before (a clock that went back): merge
        covered = union(
            covered
            + [Interval(parse_iso(a), parse_iso(b)) for a, b in json.loads(old[0]["covered"])]
        )
        total = {k: v + old[0][k] for k, v in total.items()}
        windows += old[0]["windows"]
        digest = text_hash(old[0]["content_hash"] + digest)
    store.db.execute(
        "INSERT OR REPLACE INTO pull_window_days (stream, day, job, kind, windows, pages, listed, "
        "stored, rejected, covered, min_overlap_s, overlap_s, lag_s, cursor_after, last_ended_at, "
        "content_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            stream,
            day,
            job,
            next((r["kind"] for r in reversed(rows) if r["backfill_id"] is None), rows[-1]["kind"]),
            windows,
            total["pages"],
            total["listed"],
            total["stored"],
            total["rejected"],
            json.dumps([[iso(i.start), iso(i.end)] for i in covered]),
            summary.min_overlap_s,
            summary.overlap_s,
            max((r["lag_s"] for r in rows if r["lag_s"] is not None), default=None),
            summary.cursor_after,
            None if summary.last_ended_at is None else iso(summary.last_ended_at),
            digest,
        ],
    )
    return summary


_LINEAGE_COLUMNS = (
    "w.id, w.stream, w.run_id, w.kind, w.window_from, w.window_to, w.cursor_before, "
    "w.cursor_after, w.started_at, w.ended_at, w.scan, w.request_ids_more"
)


def ledger_row_of(
    store: Store, stream: str, request_id: str, run_id: str | None = None
) -> dict[str, Any] | None:
    """The live ledger row of `stream` whose pages include the answer `request_id` (a
    pulled record's lineage). A row keeps its first 20 request ids: with `run_id` (the
    run that stored the record), a record of a later page is found in the one row of
    that run that left ids out. None when compacted, never written (a pull that did not
    finish), or not decidable (that run left ids out of several rows)."""
    rows = store.query(
        f"SELECT {_LINEAGE_COLUMNS} FROM pull_windows w, json_each(w.request_ids) j "
        "WHERE w.stream = ? AND j.value = ? ORDER BY w.id LIMIT 1",
        [stream, request_id],
    )
    if rows or run_id is None:
        return rows[0] if rows else None
    capped = store.query(
        f"SELECT {_LINEAGE_COLUMNS} FROM pull_windows w "
        "WHERE w.stream = ? AND w.run_id = ? AND w.request_ids_more > 0 ORDER BY w.id LIMIT 2",
        [stream, run_id],
    )
    return capped[0] if len(capped) == 1 else None


def scan_ledger_row(store: Store, stream: str, scan: int) -> dict[str, Any] | None:
    """The live ledger row of scan number `scan` of a scan stream."""
    rows = store.query(
        "SELECT id, stream, run_id, kind, window_from, window_to, started_at, ended_at, scan, "
        "pages, listed, stored, rejected, content_hash FROM pull_windows "
        "WHERE stream = ? AND kind = 'scan' AND scan = ? ORDER BY id DESC LIMIT 1",
        [stream, scan],
    )
    return rows[0] if rows else None


def window_counts(store: Store, stream: str) -> list[dict[str, Any]]:
    """The live rows of a stream, oldest first (tests and `--json` detail)."""
    return store.query("SELECT * FROM pull_windows WHERE stream = ? ORDER BY id", [stream])


__all__ = [
    "MAX_REQUEST_IDS",
    "RecordWindow",
    "compact_ledger",
    "coverage_report",
    "extends",
    "failed_runs",
    "kept_gaps",
    "ledger_days",
    "ledger_row_of",
    "ledger_rows",
    "ledger_streams",
    "scan_ledger_row",
    "scans",
    "window_counts",
]
