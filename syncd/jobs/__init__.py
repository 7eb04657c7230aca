"""Reconciliation jobs; importing this package fills the job and destination registries."""

from syncd.host import outbox as _host_outbox
from syncd.jobs import (
    dsorder_progress,
    dsorder_pull,
    dsorder_push,
    host_inbox,
    housekeeping,
    instock_articles,
    instock_inventory,
    instock_moves,
    instock_orders,
    instock_push,
    netstock_export,
    netstock_pop,
    oregon_siop,
    outbox_send,
    planning_import,
)
from syncd.jobs.base import REGISTRY, JobContext, JobSpec, register, validate_jobs

_host_outbox.register()

__all__ = [
    "REGISTRY",
    "JobContext",
    "JobSpec",
    "dsorder_progress",
    "dsorder_pull",
    "dsorder_push",
    "host_inbox",
    "housekeeping",
    "instock_articles",
    "instock_inventory",
    "instock_moves",
    "instock_orders",
    "instock_push",
    "netstock_export",
    "netstock_pop",
    "oregon_siop",
    "outbox_send",
    "planning_import",
    "register",
    "validate_jobs",
]
