"""Reconciliation jobs, found by walking this package: the daemon and the CLI read `JOBS`.

A job is declared once, by its module: `SPEC = JobSpec(...)` in a module directly in
`syncd/jobs/` (or in the `__init__` of a subpackage). There is no list to add it to, so
none to forget. A module without a `SPEC` is not a job: the machinery jobs run on
(base, runner, dryrun) and a job's pure pieces; tests/unit/test_job_table.py names each
of those, so a job module that forgot its `SPEC` fails it rather than silently never
running. Job modules import no other job module: what two jobs share lives in
`syncd/jobs/shared/`.

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


def discover(package: str, path: Iterable[str]) -> tuple[JobSpec, ...]:
    """The `SPEC` of every module of `package` that declares one, by job name."""
    specs: list[JobSpec] = []
    for info in pkgutil.iter_modules(path):
        module = importlib.import_module(f"{package}.{info.name}")
        spec = getattr(module, "SPEC", None)
        if spec is None:
            continue
        if not isinstance(spec, JobSpec):
            raise TypeError(f"{module.__name__}.SPEC is a {type(spec).__name__}, not a JobSpec")
        specs.append(spec)
    return tuple(sorted(specs, key=lambda spec: spec.name))


JOBS: tuple[JobSpec, ...] = discover(__name__, __path__)


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


__all__ = ["JOBS", "REGISTRY", "JobContext", "JobSpec", "discover", "validate_jobs"]
