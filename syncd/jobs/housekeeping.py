"""`state.housekeeping`: keep the state DB bounded.

Sent outbox rows, finished runs and resolved alerts are history: they are
deleted after `retention_days`; open rejects and pending intents never are.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field

from syncd.clock import iso, utcnow
from syncd.config import Schedule
from syncd.jobs.base import JobContext, JobSpec


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    retention_days: int = Field(30, ge=1, description="keep history this many days")


def run(ctx: JobContext) -> None:
    options: Options = ctx.options
    cutoff = iso(utcnow() - timedelta(days=options.retention_days))
    deleted = ctx.store.purge_history(cutoff, keep_run_id=ctx.run_id)
    if not ctx.dry_run:
        ctx.store.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
    for table, count in deleted.items():
        ctx.counts[f"deleted_{table}"] = count


SPEC = JobSpec(
    name="state.housekeeping",
    run=run,
    description="Delete old history from the state DB (sent intents, runs, resolved alerts)",
    default_schedule=Schedule(interval=3600),
    options_model=Options,
)
