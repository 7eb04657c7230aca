"""Reconciliation jobs; importing this package fills the job registry."""

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
from syncd.jobs.base import REGISTRY, JobContext, JobSpec, register, validate_jobs

__all__ = [
    "REGISTRY",
    "JobContext",
    "JobSpec",
    "dsorder_progress",
    "dsorder_pull",
    "host_inbox",
    "housekeeping",
    "instock_articles",
    "instock_inventory",
    "instock_moves",
    "instock_orders",
    "netstock_export",
    "netstock_pop",
    "oregon_siop",
    "outbox_send",
    "planning_import",
    "register",
    "validate_jobs",
]
