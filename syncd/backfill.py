"""`syncd backfill`: ask for a re-pull of a past period of one stream, and follow it.

While the daemon runs it holds the state lock, so the CLI cannot run jobs itself: it
writes a request row (`syncd.state.backfills.request_backfill`) that the daemon's
`backfill.requests` job picks up within its schedule (15 s by default), and follows that
row to its end. Without a running daemon the CLI takes the lock and runs the job itself,
in this process, then releases it (the journal files it queues are delivered by the next
`outbox.send`, of the daemon or of `syncd once outbox.send`).

Either way the work is the job's (`syncd/jobs/backfill_requests.py`): resumable from its
own checkpoint, one per stream at a time, and the live cursors untouched.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from syncd import ratebudget
from syncd.clock import iso, parse_iso, utcnow
from syncd.config import Settings
from syncd.errors import AlreadyRunningError
from syncd.jobs import REGISTRY
from syncd.jobs.backfill.plan import check_connector, check_request
from syncd.jobs.runner import RunResult, run_job
from syncd.jsontext import canonical
from syncd.progress import Progress, no_progress
from syncd.state import StateLock, Store
from syncd.state.backfills import (
    Backfill,
    differences,
    get_backfill,
    request_backfill,
)
from syncd.state.ratebudget import BudgetTable

JOB = "backfill.requests"


@dataclass
class Outcome:
    """A backfill as it stands after `start_backfill` (and `follow`)."""

    backfill: Backfill
    where: Literal["here", "daemon"]  # run in this process, or requested of the daemon
    run: RunResult | None = None
    differences: list[dict[str, Any]] = field(default_factory=list)


def start_backfill(
    settings: Settings,
    stream: str,
    start: datetime,
    end: datetime,
    *,
    dry_run: bool,
    progress: Progress = no_progress,
) -> Outcome:
    """Check the request (UsageError naming why it cannot be done), then run it here when
    no daemon holds the state lock, else leave it to the daemon's job. `BusyError` while
    a backfill of the stream is requested or running."""
    check_request(stream, start, end, utcnow(), settings.daemon.site_timezone)
    check_connector(settings, stream)
    lock = StateLock(settings.daemon.state_dir)
    try:
        lock.acquire()
    except AlreadyRunningError:
        with Store.open(settings.db_path, migrate=False) as store:
            asked = request_backfill(store, stream, iso(start), iso(end), dry_run=dry_run)
        return Outcome(asked, "daemon")
    try:
        with Store.open(settings.db_path) as store:  # create or migrate first
            store.mark_abandoned_runs()
            asked = request_backfill(store, stream, iso(start), iso(end), dry_run=dry_run)
        ratebudget.install(BudgetTable(settings.db_path))
        try:
            result = run_job(REGISTRY[JOB], settings, trigger="cli", progress=progress)
        finally:
            ratebudget.uninstall()
    finally:
        lock.release()
    return _outcome(settings, asked.id, "here", result)


def _outcome(
    settings: Settings, backfill_id: int, where: Literal["here", "daemon"], run: RunResult | None
) -> Outcome:
    with Store.open(settings.db_path, migrate=False) as store:
        return Outcome(
            get_backfill(store, backfill_id), where, run, differences(store, backfill_id)
        )


def expected_steps(settings: Settings, backfill: Backfill) -> int | None:
    """How many steps a backfill takes, when known in advance (moves: its windows)."""
    if backfill.stream != "instock.moves":
        return None
    step: float = REGISTRY[JOB].options(settings).moves_step
    span = (parse_iso(backfill.period_to) - parse_iso(backfill.period_from)).total_seconds()
    return max(1, math.ceil(span / step))


def follow(
    settings: Settings,
    backfill_id: int,
    on_update: Callable[[Backfill], None] = lambda _b: None,
    *,
    poll: float = 0.5,
    timeout: float | None = None,
) -> Outcome:
    """Wait for a backfill the daemon runs to end (or `timeout` seconds), calling
    `on_update` with each state read."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        with Store.open(settings.db_path, migrate=False) as store:
            current = get_backfill(store, backfill_id)
        on_update(current)
        if not current.active or (deadline is not None and time.monotonic() >= deadline):
            return _outcome(settings, backfill_id, "daemon", None)
        time.sleep(poll)


def summary(backfill: Backfill) -> str:
    """One line: what a backfill found and applied."""
    applied = "nothing applied (dry run)" if backfill.dry_run else f"applied {backfill.applied}"
    text = (
        f"backfill {backfill.id} {backfill.stream} {backfill.period_from} .. "
        f"{backfill.period_to}: {backfill.status}; found {backfill.found}, missing "
        f"{backfill.missing}, changed {backfill.changed}, {applied}"
    )
    if backfill.rejected:
        text += f", rejected {backfill.rejected}"
    if backfill.error:
        text += f"; error: {backfill.error}"
    return text


def difference_lines(found: list[dict[str, Any]], limit: int = 20) -> list[str]:
    """The differences a backfill found, one per line (the first `limit`)."""
    lines = []
    for diff in found[:limit]:
        mark = "" if diff["applied"] else " (not applied)"
        key = diff["key"][:12] if len(diff["key"]) == 40 else diff["key"]  # a move's sha1
        lines.append(f"  {diff['kind']} {key}: {_detail(diff['detail'])}{mark}")
    if len(found) > limit:
        lines.append(f"  ... and {len(found) - limit} more (--json shows them all)")
    return lines


def _detail(detail: Any) -> str:
    """A difference for a person: a move by its time, article, quantity and cells; a
    changed record field by field (held -> listed); else its fields."""
    if not isinstance(detail, dict):
        return str(detail)
    if "move_timestamp" in detail:
        text = (
            f"{detail['move_timestamp']} article {detail['article_id']} qty {detail['qty']} "
            f"{detail.get('from_cell_id')} -> {detail.get('to_cell_id')}"
        )
        if detail.get("order_id"):
            text += f" order {detail['order_id']}"
        if detail.get("occurrence", 1) > 1:
            text += f" (identical move #{detail['occurrence']})"
        return text
    if all(isinstance(v, list) and len(v) == 2 for v in detail.values()):
        return "; ".join(f"{k} {canonical(v[0])} -> {canonical(v[1])}" for k, v in detail.items())
    return ", ".join(f"{k}={v}" for k, v in detail.items())


__all__ = [
    "JOB",
    "Outcome",
    "difference_lines",
    "expected_steps",
    "follow",
    "start_backfill",
    "summary",
]
