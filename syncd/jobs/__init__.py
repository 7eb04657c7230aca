"""Reconciliation jobs; importing this package fills the registry."""

from syncd.jobs import housekeeping, outbox_send
from syncd.jobs.base import REGISTRY, JobContext, JobSpec, register, validate_jobs

__all__ = [
    "REGISTRY",
    "JobContext",
    "JobSpec",
    "housekeeping",
    "outbox_send",
    "register",
    "validate_jobs",
]
