"""Reconciliation jobs, declared once in `JOBS`: the daemon and the CLI read no other list.

A job module declares its `SPEC`; a module here that declares one but is missing
from `JOBS` fails tests/unit/test_job_table.py rather than silently never running.
Job modules import no other job module: what two jobs share lives in
`syncd/jobs/shared/`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from syncd.config import Settings
from syncd.errors import ConfigError
from syncd.jobs import (
    dsorder_progress,
    dsorder_pull,
    host_inbox,
    housekeeping,
    instock_articles,
    instock_inventory,
    instock_moves,
    instock_orders,
    netstock_export,
    netstock_pop,
    oregon_siop,
    outbox_send,
    planning_import,
)
from syncd.jobs.base import JobContext, JobSpec, settings_problems

# In this order check-config lists the problems of each job's options.
JOBS: tuple[JobSpec, ...] = (
    instock_orders.SPEC,
    dsorder_progress.SPEC,
    dsorder_pull.SPEC,
    host_inbox.SPEC,
    housekeeping.SPEC,
    instock_articles.SPEC,
    instock_inventory.SPEC,
    instock_moves.SPEC,
    netstock_export.SPEC,
    netstock_pop.SPEC,
    oregon_siop.SPEC,
    outbox_send.SPEC,
    planning_import.SPEC,
)


def _by_name(jobs: tuple[JobSpec, ...]) -> Mapping[str, JobSpec]:
    table: dict[str, JobSpec] = {}
    for spec in jobs:
        if spec.name in table:
            raise ValueError(f"job {spec.name!r} declared twice")
        table[spec.name] = spec
    return MappingProxyType(table)


REGISTRY: Mapping[str, JobSpec] = _by_name(JOBS)


def validate_jobs(settings: Settings) -> None:
    """Unknown job names and bad job, connector or host options are config errors,
    found at start-up (and by check-config) rather than by the first run that reads them."""
    problems = settings_problems(settings, REGISTRY)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems), problems)


__all__ = ["JOBS", "REGISTRY", "JobContext", "JobSpec", "validate_jobs"]
