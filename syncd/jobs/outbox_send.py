"""`outbox.send`: drain every destination's due intents.

The daemon runs it from its sender thread, woken as soon as a job queues
intents and otherwise on `[outbox].schedule`.
"""

from __future__ import annotations

from syncd.config import Schedule
from syncd.jobs.base import JobContext, JobSpec
from syncd.send.sender import Sender


def run(ctx: JobContext) -> None:
    if ctx.dry_run:  # a dry run must not push: say which destinations a drain would serve
        ctx.counts["destinations_due"] = len(ctx.store.destinations_with_due_intents())
        return
    sender = Sender(
        ctx.store, ctx.settings, stopping=ctx.stopping, run_id=ctx.run_id, progress=ctx.progress
    )
    ctx.counts.update(sender.drain())
    ctx.warnings.extend(sender.warnings)


SPEC = JobSpec(
    name="outbox.send",
    run=run,
    description="Deliver recorded push intents to their destinations",
    default_schedule=Schedule(interval=30),
)
