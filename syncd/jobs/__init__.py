"""Reconciliation jobs; importing this package fills the job and destination registries."""

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
from syncd.send import dsorder as _dsorder_destination  # noqa: F401 (registers it)
from syncd.send import host as _host_destination
from syncd.send import instock as _instock_destination  # noqa: F401 (registers it)

_host_destination.register()

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
