"""Reconciliation jobs, found by walking this package: the daemon and the CLI read `JOBS`.

A job is declared once, by its module: `SPEC = JobSpec(...)` in a module directly in
`syncd/jobs/`. There is no list to add it to, so none to forget. Every such module must
declare one, except the machinery jobs run on (`NOT_JOBS`); importing this package fails,
naming the module, if one does not. A subpackage (`shared/`, `planning/`) holds pieces of
jobs and is a job only if its `__init__` declares a `SPEC`. Job modules import no other
job module: what two jobs share lives in `syncd/jobs/shared/`.

`JOBS` is in the order of job names: check-config lists the problems of the job
sections in that order, as `syncd jobs` and the daemon list the jobs.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from syncd.config import Settings
from syncd.errors import ConfigError
from syncd.jobs.base import JobContext, JobSpec, settings_problems

NOT_JOBS = frozenset({"base", "dryrun", "runner", "netstock_dataset"})
"""The modules directly in syncd/jobs/ that are not jobs (they declare no `SPEC`)."""


def discover(package: str, path: Iterable[str], not_jobs: frozenset[str]) -> tuple[JobSpec, ...]:
    """The `SPEC` of every module of `package` (and of each subpackage that has one),
    by job name; a plain module outside `not_jobs` without a `SPEC` is refused."""
    specs: list[JobSpec] = []
    for info in pkgutil.iter_modules(path):
        if info.name in not_jobs:
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        spec = getattr(module, "SPEC", None)
        if isinstance(spec, JobSpec):
            specs.append(spec)
        elif spec is not None or not info.ispkg:
            raise TypeError(
                f"{module.__name__}: a job module declares SPEC = JobSpec(...); a module that "
                f"is not a job goes into {package}.shared (or, if machinery, into NOT_JOBS)"
            )
    return tuple(sorted(specs, key=lambda spec: spec.name))


JOBS: tuple[JobSpec, ...] = discover(__name__, __path__, NOT_JOBS)


def _by_name(jobs: tuple[JobSpec, ...]) -> Mapping[str, JobSpec]:
    """The jobs by name; two modules declaring the same job name are refused."""
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


__all__ = ["JOBS", "NOT_JOBS", "REGISTRY", "JobContext", "JobSpec", "discover", "validate_jobs"]
