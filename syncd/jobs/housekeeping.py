"""`state.housekeeping`: keep the state DB bounded.

Sent outbox rows, finished runs and resolved alerts are history: they are
deleted after `retention_days`; open rejects and pending intents never are. The window
ledger's rows older than `ledger_days` are compacted into one row per stream and day
(`pull_window_days`, keeping the union of the day's windows) and the gaps they show
recorded with their cause (`coverage_gaps`), both kept forever.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, model_validator

from syncd.clock import iso, utcnow
from syncd.config import Schedule
from syncd.jobs.base import JobContext, JobSpec
from syncd.state.windows import compact_ledger


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    retention_days: int = Field(30, ge=1, description="keep history this many days")
    ledger_days: int = Field(
        7, ge=1, description="keep window ledger rows this many days, then daily summaries"
    )

    @model_validator(mode="after")
    def _gaps_keep_their_runs(self) -> Options:
        # A gap's cause is read from the runs table when its rows are compacted: the runs
        # must still be there.
        if self.ledger_days > self.retention_days:
            raise ValueError(
                f"ledger_days ({self.ledger_days}) must not exceed retention_days "
                f"({self.retention_days}): the failed runs that explain a gap are read when "
                "its ledger rows are compacted"
            )
        return self


def run(ctx: JobContext) -> None:
    options: Options = ctx.options
    cutoff = iso(utcnow() - timedelta(days=options.retention_days))
    deleted = ctx.store.purge_history(cutoff, keep_run_id=ctx.run_id)
    if not ctx.dry_run:
        ctx.store.checkpoint_wal()
    for table, count in deleted.items():
        ctx.counts[f"deleted_{table}"] = count
    before_day = (utcnow() - timedelta(days=options.ledger_days)).date().isoformat()
    ctx.counts["ledger_rows_compacted"] = compact_ledger(
        ctx.store, before_day, site_timezone=ctx.settings.daemon.site_timezone
    )


SPEC = JobSpec(
    name="state.housekeeping",
    run=run,
    description="Delete old history from the state DB (sent intents, runs, resolved alerts); "
    "compact the window ledger into daily summaries",
    default_schedule=Schedule(interval=3600),
    options_model=Options,
)
