"""`host.inbox`: load the host's settled inbox files into the host tables.

Runs before the jobs that read host tables (it is cheap when the inbox is
empty), so a dropped catalog or order file reaches Instock within one interval.
"""

from __future__ import annotations

from syncd.config import Schedule
from syncd.host.inbox import load_inbox
from syncd.jobs.base import JobContext, JobSpec


def run(ctx: JobContext) -> None:
    results = load_inbox(
        ctx.store, ctx.settings.host_dir, ctx.settings.host, ctx.run_id, progress=ctx.progress
    )
    for result in results:
        ctx.counts["files"] += 1
        ctx.counts[f"files_{result.status}"] += 1
        ctx.counts["pulled"] += result.loaded
        ctx.counts["rejected"] += result.rejected
        ctx.log.info(
            "host_file",
            feed=result.feed,
            file=result.file,
            status=result.status,
            loaded=result.loaded,
            rejected=result.rejected,
            changed=result.changed,
            deleted=result.deleted,
            reason=result.reason,
        )


SPEC = JobSpec(
    name="host.inbox",
    run=run,
    description="Load host inbox files (catalog, stock, orders) into the host tables",
    default_schedule=Schedule(interval=60),
    reads_host_inbox=True,
)
