"""The job table is the one declaration of jobs, and the jobs package keeps its arrows."""

from __future__ import annotations

import importlib
import pkgutil

import syncd.jobs
from syncd.config import load_settings
from syncd.jobs import JOBS, REGISTRY
from syncd.jobs.base import JobSpec


def _job_modules() -> dict[str, JobSpec]:
    found = {}
    for info in pkgutil.walk_packages(syncd.jobs.__path__, "syncd.jobs."):
        spec = getattr(importlib.import_module(info.name), "SPEC", None)
        if isinstance(spec, JobSpec):
            found[info.name] = spec
    return found


def test_every_job_module_is_in_the_table() -> None:
    """A module declaring a JobSpec but missing from JOBS would never run: refused here."""
    modules = _job_modules()
    missing = sorted(m for m, spec in modules.items() if spec not in JOBS)
    assert missing == []
    assert len(modules) == len(JOBS) == len(REGISTRY)
    assert all(REGISTRY[spec.name] is spec for spec in JOBS)


def test_job_modules_import_no_other_job_module() -> None:
    """A job module imports base and shared pieces, never another job's module."""
    from tools.importcycles import graph

    jobs = set(_job_modules())
    edges = graph(all_imports=True)
    crossing = sorted((m, t) for m in jobs for t in edges[m] if t in jobs)
    assert crossing == []


def test_environment_job_keys_name_every_job(monkeypatch, tmp_path) -> None:
    """`SYNCD_JOBS__<NAME>__...` with the job's dots as `_` reaches that job's section."""
    for spec in JOBS:
        assert "_" not in spec.name.split(".")[0], spec.name
    config = tmp_path / "syncd.toml"
    config.write_text("")
    for spec in JOBS:
        monkeypatch.setenv(f"SYNCD_JOBS__{spec.name.replace('.', '_').upper()}__ENABLED", "false")
    settings = load_settings(config)
    assert sorted(settings.jobs) == sorted(REGISTRY)
    assert not any(settings.jobs[name].enabled for name in REGISTRY)
