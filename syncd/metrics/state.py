"""The metrics whose truth is the state DB, read at every scrape.

`StateCollector` opens the DB read-only for one collection, reads it through
`syncd.state.queries` (no SQL here) and turns the rows into metric families. The
conversion (`families`) is a pure function of those rows and the time, so it is
tested without a DB. A DB that cannot be read gives `syncd_state_db_up 0` and no
other state family, never a failed scrape.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import structlog
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from syncd.clock import utcnow
from syncd.errors import StateError
from syncd.logs import Logger
from syncd.state import Store, kinds, queries

log: Logger = structlog.get_logger("syncd.metrics")

# Instock done (or canceled) -> DSOrder closed: seconds to a day.
DONE_TO_CLOSED_BUCKETS: Final = (5.0, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
# Every status a finished run can have (the schema's, less running and dry-run).
RUN_STATUSES: Final = tuple(s for s in kinds.RUN_STATUSES if s not in ("running", "dry-run"))
ORDER_STATES: Final = ("held", "created", "closing", "closed")


@dataclass
class StateRows:
    """What one collection read from the state DB."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)
    done_to_closed: dict[str, Any] = field(default_factory=dict)


class LoopCache:
    """The done-to-closed figures, kept while the number of closed orders stays the same:
    they read every closed order (about 0.14 s for 52,000 on this machine), the count is
    an index count, and a closed order does not change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: tuple[int, dict[str, Any]] | None = None

    def get(self, store: Store) -> dict[str, Any]:
        closed = queries.closed_order_count(store)
        with self._lock:
            if self._kept is None or self._kept[0] != closed:
                self._kept = (closed, queries.done_to_closed(store, DONE_TO_CLOSED_BUCKETS))
            return self._kept[1]


def read_rows(store: Store, loop: LoopCache | None = None) -> StateRows:
    return StateRows(
        runs=queries.job_run_stats(store),
        outbox=queries.outbox_by_destination(store),
        rejects=queries.open_rejects_by_source(store),
        alerts=queries.open_alerts_by_kind(store),
        checkpoints=queries.checkpoints(store),
        orders=queries.dsorder_orders_by_state(store),
        done_to_closed=(loop or LoopCache()).get(store),
    )


def _seconds(text: str | None) -> float | None:
    """Unix seconds of an ISO-8601 timestamp with a zone; None for anything else (a
    cursor, an id, a count)."""
    if not text or "T" not in text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment.timestamp()


def families(rows: StateRows, now: datetime) -> list[Metric]:
    """The state metric families from what the DB holds, as of `now`."""
    at = now.timestamp()
    return [
        *_job_families(rows.runs),
        *_outbox_families(rows.outbox, at),
        *_attention_families(rows.rejects, rows.alerts),
        *_checkpoint_families(rows.checkpoints, at),
        *_order_loop_families(rows.orders, rows.done_to_closed),
    ]


def _job_families(runs: list[dict[str, Any]]) -> list[Metric]:
    last_ok = GaugeMetricFamily(
        "syncd_job_last_success_timestamp_seconds",
        "When the job's last successful run finished (Unix time); absent before the first.",
        labels=["job"],
    )
    last_run = GaugeMetricFamily(
        "syncd_job_last_run_timestamp_seconds",
        "When the job's last run finished (Unix time), whatever its status.",
        labels=["job"],
    )
    last_status = GaugeMetricFamily(
        "syncd_job_last_run_status",
        "1 for the status of the job's last finished run, 0 for the other statuses.",
        labels=["job", "status"],
    )
    failing = GaugeMetricFamily(
        "syncd_job_consecutive_failures",
        "Runs of the job that failed (or crashed) since its last successful run.",
        labels=["job"],
    )
    for r in runs:
        job = r["job"]
        ok_at = _seconds(r["last_ok_at"])
        if ok_at is not None:
            last_ok.add_metric([job], ok_at)
        finished = _seconds(r["last_finished_at"])
        if finished is not None:
            last_run.add_metric([job], finished)
        if r["last_status"]:
            for status in RUN_STATUSES:
                last_status.add_metric([job, status], float(r["last_status"] == status))
        failing.add_metric([job], float(r["failures_since_ok"] or 0))
    return [last_ok, last_run, last_status, failing]


def _outbox_families(outbox: list[dict[str, Any]], at: float) -> list[Metric]:
    depth = GaugeMetricFamily(
        "syncd_outbox_pending_intents",
        "Intents waiting to be sent, by destination (the outbox depth).",
        labels=["destination"],
    )
    oldest = GaugeMetricFamily(
        "syncd_outbox_oldest_pending_age_seconds",
        "Age of the oldest pending intent, by destination (0 when none is pending).",
        labels=["destination"],
    )
    retrying = GaugeMetricFamily(
        "syncd_outbox_retrying_intents",
        "Pending intents that have failed at least once, by destination.",
        labels=["destination"],
    )
    poisoned = GaugeMetricFamily(
        "syncd_outbox_rejected_intents",
        "Intents refused or given up that wait for an operator (retry or drop), by destination.",
        labels=["destination"],
    )
    for r in outbox:
        destination = r["destination"]
        depth.add_metric([destination], float(r["n"] or 0))
        created = _seconds(r["oldest"])
        oldest.add_metric([destination], max(0.0, at - created) if created is not None else 0.0)
        retrying.add_metric([destination], float(r["retrying"] or 0))
        poisoned.add_metric([destination], float(r["rejected"] or 0))
    return [depth, oldest, retrying, poisoned]


def _attention_families(
    open_rejects: list[dict[str, Any]], open_alerts: list[dict[str, Any]]
) -> list[Metric]:
    rejects = GaugeMetricFamily(
        "syncd_rejects_open",
        "Rejects an operator still has to look at (open or flagged retry), by source.",
        labels=["source"],
    )
    for r in open_rejects:
        rejects.add_metric([r["source"]], float(r["n"]))
    alerts = GaugeMetricFamily("syncd_alerts_open", "Open alerts, by kind.", labels=["kind"])
    for r in open_alerts:
        alerts.add_metric([r["kind"]], float(r["n"]))
    return [rejects, alerts]


def _checkpoint_families(checkpoints: list[dict[str, Any]], at: float) -> list[Metric]:
    lag = GaugeMetricFamily(
        "syncd_checkpoint_lag_seconds",
        "Now minus the stream's watermark, for streams whose checkpoint is a timestamp.",
        labels=["stream"],
    )
    updated = GaugeMetricFamily(
        "syncd_checkpoint_updated_timestamp_seconds",
        "When the stream's checkpoint last moved (Unix time), for every stream.",
        labels=["stream"],
    )
    for r in checkpoints:
        watermark = _seconds(r["value"])
        if watermark is not None:
            lag.add_metric([r["stream"]], max(0.0, at - watermark))
        moved = _seconds(r["updated_at"])
        if moved is not None:
            updated.add_metric([r["stream"]], moved)
    return [lag, updated]


def _order_loop_families(states: list[dict[str, Any]], loop: dict[str, Any]) -> list[Metric]:
    orders = GaugeMetricFamily(
        "syncd_dsorder_orders",
        "DSOrder orders syncd knows, by loop state (held, created, closing, closed).",
        labels=["state"],
    )
    by_state = {r["state"]: r["n"] for r in states}
    for state in (*ORDER_STATES, *sorted(set(by_state) - set(ORDER_STATES))):
        orders.add_metric([state], float(by_state.get(state, 0)))

    histogram = HistogramMetricFamily(
        "syncd_dsorder_done_to_closed_seconds",
        "Seconds from Instock's done (or canceled) status to the DSOrder close, per closed order.",
    )
    if loop:
        buckets = [
            (repr(float(bound)), float(loop[f"le_{i}"]))  # "5.0", as prometheus_client writes `le`
            for i, bound in enumerate(DONE_TO_CLOSED_BUCKETS)
        ]
        buckets.append(("+Inf", float(loop["n"])))
        histogram.add_metric([], buckets, sum_value=float(loop["total"]))
    return [orders, histogram]


class StateCollector(Collector):
    """Reads the state DB at `path()` at every collection (the path may change on reload)."""

    def __init__(self, path: Callable[[], Path], now: Callable[[], datetime] = utcnow) -> None:
        self._path = path
        self._now = now
        self._loop = LoopCache()

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "syncd_state_db_up", "1 when the state DB could be read for this scrape, else 0."
        )
        try:
            rows = self._read()
        except Exception as exc:  # a scrape must answer, and say the DB was not read
            log.warning("metrics_state_unreadable", error=str(exc))
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        yield from families(rows, self._now())

    def _read(self) -> StateRows:
        path = self._path()
        if not path.is_file():  # never create it: that is `syncd run`'s job
            raise StateError(f"no state DB at {path}")
        with Store.open(path, migrate=False) as store:
            store.db.execute("BEGIN")  # one snapshot for every family
            try:
                return read_rows(store, self._loop)
            finally:
                store.db.execute("ROLLBACK")

    def describe(self) -> Iterable[Metric]:
        return []  # unchecked: families depend on the DB's content
