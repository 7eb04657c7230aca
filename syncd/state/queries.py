"""Read-only reports over the core tables, for `syncd status`, systemd's STATUS= line and
the CLI's list commands.

They live here, next to the schema, so that the CLI and the status report hold no SQL
of their own: a column renamed by a migration is renamed in this package alone. Rows
come back as plain dicts in column order (the CLI prints them as they are, --json too).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from syncd.state.kinds import RUN_STATUSES, RejectStatus
from syncd.state.store import Store

Row = dict[str, Any]
IntentStatus = Literal["pending", "sent", "rejected", "dropped"]


def last_runs(store: Store) -> list[Row]:
    """Per job, its last run, with the time of its last success.

    A dry run records its `runs` row in its private copy of the DB, never here; the
    `status != 'dry-run'` filter only skips the rows dry runs left in state DBs before they
    ran on copies."""
    return store.query(
        """
        SELECT r.job, r.run_id, r.started_at, r.finished_at, r.status, r.pulled, r.pushed,
               r.rejected, r.counts, r.warnings, r.error,
               (SELECT max(finished_at) FROM runs o WHERE o.job = r.job AND o.status = 'ok')
                 AS last_ok_at
        FROM runs r
        WHERE r.id = (SELECT max(id) FROM runs x WHERE x.job = r.job AND x.status != 'dry-run')
        ORDER BY r.job
        """
    )


def previous_run_started(store: Store, job: str, run_id: str) -> str | None:
    """When the run of `job` before `run_id` started (None: it is the first)."""
    value = store.scalar(
        "SELECT max(started_at) FROM runs WHERE job = ? AND run_id != ? "
        "AND started_at <= (SELECT started_at FROM runs WHERE run_id = ?)",
        [job, run_id, run_id],
    )
    return str(value) if value else None


def job_health(store: Store) -> list[Row]:
    """Per job that has runs: its last run's status and error, the last success, the first
    run still on record, and how many runs failed (or crashed) since the last success,
    counting neither interrupted nor skipped runs (nor the one still running)."""
    return store.query(
        """
        SELECT j.job, last.status, last.error, last.started_at, last.finished_at,
               (SELECT max(finished_at) FROM runs o WHERE o.job = j.job AND o.status = 'ok')
                 AS last_ok_at,
               (SELECT min(started_at) FROM runs f WHERE f.job = j.job) AS first_started_at,
               (SELECT count(*) FROM runs x WHERE x.job = j.job
                  AND x.status IN ('failed', 'crashed')
                  AND x.id > coalesce((SELECT max(id) FROM runs o
                                       WHERE o.job = j.job AND o.status = 'ok'), 0))
                 AS failures_in_row
        FROM (SELECT DISTINCT job FROM runs) j
        JOIN runs last ON last.id = (SELECT max(id) FROM runs x
                                     WHERE x.job = j.job AND x.status != 'dry-run')
        ORDER BY j.job
        """
    )


def pending_intents_by_destination(store: Store) -> list[Row]:
    """Per destination: pending intents (n), the oldest one's creation and how many retry."""
    return store.query(
        "SELECT destination, count(*) AS n, min(created_at) AS oldest, "
        "sum(attempts > 0) AS retrying FROM outbox WHERE status = 'pending' "
        "GROUP BY destination ORDER BY destination"
    )


def pending_intent_count(store: Store, destination: str | None = None) -> int:
    """Intents waiting to be sent, of one destination or of all."""
    if destination is None:
        return int(store.scalar("SELECT count(*) FROM outbox WHERE status = 'pending'") or 0)
    return int(
        store.scalar(
            "SELECT count(*) FROM outbox WHERE destination = ? AND status = 'pending'",
            [destination],
        )
        or 0
    )


def open_rejects_by_source(store: Store) -> list[Row]:
    """Per source, the rejects an operator still has to look at (open or flagged retry)."""
    return store.query(
        "SELECT source, count(*) AS n FROM rejects WHERE status IN ('open', 'retry') "
        "GROUP BY source ORDER BY source"
    )


def open_reject_count(store: Store) -> int:
    return int(store.scalar("SELECT count(*) FROM rejects WHERE status IN ('open', 'retry')") or 0)


def checkpoints(store: Store, *, with_run_id: bool = False) -> list[Row]:
    """Every stream's checkpoint, by stream; the run that set it on request."""
    columns = "stream, value, updated_at, run_id" if with_run_id else "stream, value, updated_at"
    return store.query(f"SELECT {columns} FROM checkpoints ORDER BY stream")


def _intent_where(status: IntentStatus | None, destination: str | None) -> tuple[str, list[Any]]:
    sql, params = "1 = 1", list[Any]()
    if status is not None:
        sql += " AND status = ?"
        params.append(status)
    if destination:
        sql += " AND destination = ?"
        params.append(destination)
    return sql, params


def intents(
    store: Store,
    status: IntentStatus | None,
    destination: str | None,
    limit: int,
    offset: int = 0,
) -> list[Row]:
    """Outbox intents, newest first; `status` None means any."""
    where, params = _intent_where(status, destination)
    return store.query(
        "SELECT id, destination, kind, order_key, status, attempts, next_attempt_at, "
        f"last_error, created_at, sent_at, payload FROM outbox WHERE {where} "
        "ORDER BY id DESC LIMIT ? OFFSET ?",
        [*params, limit, offset],
    )


def intent_count(store: Store, status: IntentStatus | None, destination: str | None) -> int:
    where, params = _intent_where(status, destination)
    return int(store.scalar(f"SELECT count(*) FROM outbox WHERE {where}", params) or 0)


def alerts(store: Store, *, include_resolved: bool = False) -> list[Row]:
    """Open alerts (every alert with `include_resolved`), oldest first."""
    if include_resolved:
        return store.query("SELECT * FROM alerts ORDER BY id")
    return store.open_alerts()


@dataclass(frozen=True)
class RejectFilter:
    """Which rejects an operator means (`syncd rejects list|retry|drop`); None: any.

    `source` is a prefix (`host:`, `outbox:instock`), `reason` a case-insensitive part
    of the reason, `since` an ISO-8601 UTC time the reject was created at or after,
    `job` the job whose run recorded it."""

    statuses: tuple[RejectStatus, ...] | None = ("open",)
    source: str | None = None
    reason: str | None = None
    since: str | None = None
    job: str | None = None
    exclude_source: str | None = None  # a prefix left out (bulk retry skips host rows)

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = ["1 = 1"]
        params: list[Any] = []
        if self.statuses is not None:
            clauses.append(f"status IN ({', '.join('?' * len(self.statuses))})")
            params.extend(self.statuses)
        if self.source:
            clauses.append("source LIKE ? ESCAPE '\\'")
            params.append(_like_prefix(self.source))
        if self.exclude_source:
            clauses.append("source NOT LIKE ? ESCAPE '\\'")
            params.append(_like_prefix(self.exclude_source))
        if self.reason:
            clauses.append("instr(lower(reason), lower(?)) > 0")
            params.append(self.reason)
        if self.since:
            clauses.append("created_at >= ?")
            params.append(self.since)
        if self.job:
            # The run that recorded it; runs deleted by housekeeping still match by the
            # run id's shape (`<job with - for .>-<12 hex>`, jobs/runner.new_run_id).
            clauses.append("(run_id IN (SELECT run_id FROM runs WHERE job = ?) OR run_id GLOB ?)")
            params.extend([self.job, self.job.replace(".", "-") + "-" + "[0-9a-f]" * 12])
        return " AND ".join(clauses), params


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def rejects(store: Store, which: RejectFilter, limit: int, offset: int = 0) -> list[Row]:
    """A page of the rejects `which` selects, oldest first."""
    where, params = which.where()
    return store.query(
        f"SELECT * FROM rejects WHERE {where} ORDER BY id LIMIT ? OFFSET ?",
        [*params, limit, offset],
    )


def reject_count(store: Store, which: RejectFilter) -> int:
    where, params = which.where()
    return int(store.scalar(f"SELECT count(*) FROM rejects WHERE {where}", params) or 0)


def reject_ids(store: Store, which: RejectFilter) -> list[int]:
    """Every id `which` selects, oldest first (for bulk retry and drop)."""
    where, params = which.where()
    return [
        int(r["id"])
        for r in store.query(f"SELECT id FROM rejects WHERE {where} ORDER BY id", params)
    ]


# -- metrics (syncd.metrics.state reads these at every scrape: each is one indexed pass) --


def _distinct(table: str, column: str) -> str:
    """A CTE `d(v)` of the distinct values of an indexed column, one index seek each
    (SQLite's DISTINCT would read every index entry: a run every 10 s for the retention
    period is hundreds of thousands)."""
    return (
        f"d(v) AS (SELECT min({column}) FROM {table} UNION ALL "
        f"SELECT (SELECT min({column}) FROM {table} WHERE {column} > d.v) FROM d "
        "WHERE d.v IS NOT NULL)"
    )


_FINISHED = tuple(s for s in RUN_STATUSES if s not in ("running", "dry-run"))


def job_run_stats(store: Store) -> list[Row]:
    """Per job: the last finished run's status and end, the last success's end, and how
    many runs failed (or crashed) since that success (all of them when there was none);
    `job_health`'s count, for the metrics. Index seeks on runs (job, status, id) only."""
    last = ", ".join(
        f"coalesce((SELECT max(id) FROM runs WHERE job = d.v AND status = '{status}'), 0)"
        for status in _FINISHED
    )
    return store.query(
        f"""
        WITH RECURSIVE {_distinct("runs", "job")},
        ids AS (
            SELECT d.v AS job, max({last}, 0) AS last_id,
                   (SELECT max(id) FROM runs WHERE job = d.v AND status = 'ok') AS ok_id
            FROM d WHERE d.v IS NOT NULL
        )
        SELECT ids.job, l.status AS last_status, l.finished_at AS last_finished_at,
               o.finished_at AS last_ok_at,
               (SELECT count(*) FROM runs x WHERE x.job = ids.job
                  AND x.status IN ('failed', 'crashed') AND x.id > coalesce(ids.ok_id, 0))
                 AS failures_since_ok
        FROM ids LEFT JOIN runs l ON l.id = ids.last_id LEFT JOIN runs o ON o.id = ids.ok_id
        ORDER BY ids.job
        """
    )


def outbox_by_destination(store: Store) -> list[Row]:
    """Per destination that has had intents: pending (n), the oldest pending one's
    creation, pending ones that already failed once (retrying), and intents rejected for
    good that an operator has not retried or dropped (rejected). Index ranges on outbox
    (destination, status, id): sent intents are never read."""
    return store.query(
        f"""
        WITH RECURSIVE {_distinct("outbox", "destination")}
        SELECT d.v AS destination,
               (SELECT count(*) FROM outbox WHERE destination = d.v AND status = 'pending')
                 AS n,
               (SELECT min(created_at) FROM outbox
                  WHERE destination = d.v AND status = 'pending') AS oldest,
               (SELECT count(*) FROM outbox
                  WHERE destination = d.v AND status = 'pending' AND attempts > 0) AS retrying,
               (SELECT count(*) FROM outbox WHERE destination = d.v AND status = 'rejected')
                 AS rejected
        FROM d WHERE d.v IS NOT NULL ORDER BY d.v
        """
    )


def queued_by_destination(store: Store, run_id: str) -> dict[str, int]:
    """The intents a run recorded, per destination (replays of known intents are not new
    rows, so they are not counted)."""
    return {
        r["destination"]: int(r["n"])
        for r in store.query(
            "SELECT destination, count(*) AS n FROM outbox WHERE run_id = ? GROUP BY destination",
            [run_id],
        )
    }


def open_alerts_by_kind(store: Store) -> list[Row]:
    return store.query(
        "SELECT kind, count(*) AS n FROM alerts WHERE resolved_at IS NULL "
        "GROUP BY kind ORDER BY kind"
    )


def dsorder_orders_by_state(store: Store) -> list[Row]:
    """DSOrder orders per loop state (held, created, closing, closed)."""
    return store.query(
        "SELECT state, count(*) AS n FROM dsorder_orders GROUP BY state ORDER BY state"
    )


def closed_order_count(store: Store) -> int:
    """DSOrder orders closed (an index count): the done-to-closed figures change only when
    it does, so a reader may keep them until then."""
    return int(store.scalar("SELECT count(*) FROM dsorder_orders WHERE state = 'closed'") or 0)


def done_to_closed(store: Store, bounds: tuple[float, ...]) -> Row:
    """Seconds from Instock's terminal status (done or canceled, Instock's own status
    timestamp) to the DSOrder close syncd recorded, over every closed order whose Instock
    side is mirrored: count, sum, and how many took at most each bound (cumulative)."""
    buckets = ", ".join(
        f"coalesce(sum(s <= {float(b)!r}), 0) AS le_{i}" for i, b in enumerate(bounds)
    )
    # MATERIALIZED: the seconds are worked out once per order, not once per bucket.
    rows = store.query(
        f"""
        WITH t AS MATERIALIZED (
            SELECT max(0.0, (julianday(d.closed_at) - julianday(i.status_at)) * 86400.0) AS s
            FROM dsorder_orders d JOIN instock_orders i ON i.order_id = d.instock_order_id
            WHERE d.state = 'closed' AND d.closed_at IS NOT NULL
              AND i.order_status IN ('done', 'canceled')
              AND julianday(i.status_at) IS NOT NULL
        )
        SELECT count(s) AS n, coalesce(sum(s), 0.0) AS total{", " + buckets if buckets else ""}
        FROM t
        """
    )
    return rows[0]


def throttled_connectors(store: Store, now: float) -> list[Row]:
    """Connectors parked by a 429's Retry-After past `now` (seconds since the epoch): every
    request of theirs waits until `parked_until`."""
    return store.query(
        "SELECT connector, parked_until, park_reason FROM rate_budget "
        "WHERE parked_until > ? ORDER BY connector",
        (now,),
    )
