"""A job is declared once, by its module's SPEC: the table is found, not listed, and the jobs
package keeps its arrows."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import syncd.jobs
from syncd.config import Settings, load_settings
from syncd.errors import ConfigError
from syncd.jobs import JOBS, REGISTRY, discover, validate_jobs
from syncd.jobs.base import JobSpec


def _job_modules() -> dict[str, JobSpec]:
    found = {}
    for info in pkgutil.walk_packages(syncd.jobs.__path__, "syncd.jobs."):
        spec = getattr(importlib.import_module(info.name), "SPEC", None)
        if isinstance(spec, JobSpec):
            found[info.name] = spec
    return found


def test_every_job_module_is_in_the_table() -> None:
    """Every module declaring a JobSpec is in JOBS, once, by name."""
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


# The modules directly in syncd/jobs/ that are not jobs, and so declare no SPEC: the
# machinery jobs run on, and pure pieces of one job. Any other module without a SPEC is a
# job module that forgot it (it would never run).
NOT_JOBS = {"base", "dryrun", "runner", "netstock_dataset"}


def test_every_module_is_a_job_or_named_machinery() -> None:
    """Each plain module directly in syncd/jobs/ declares a SPEC, or is one of NOT_JOBS
    (which declare none); subpackages (shared/, planning/) are pieces of jobs."""
    forgot, declares = [], []
    names = {info.name for info in pkgutil.iter_modules(syncd.jobs.__path__)}
    assert sorted(NOT_JOBS - names) == [], "NOT_JOBS names a module that is gone"
    for info in pkgutil.iter_modules(syncd.jobs.__path__):
        module = importlib.import_module(f"syncd.jobs.{info.name}")
        has_spec = isinstance(getattr(module, "SPEC", None), JobSpec)
        if info.name in NOT_JOBS and has_spec:
            declares.append(info.name)
        elif info.name not in NOT_JOBS and not info.ispkg and not has_spec:
            forgot.append(info.name)
    assert forgot == [], "a job module without SPEC, or a module to add to NOT_JOBS"
    assert declares == []


def test_the_table_is_in_job_name_order() -> None:
    """The order check-config lists job problems in: by job name, not by module or import."""
    assert [spec.name for spec in JOBS] == sorted(REGISTRY)


def test_check_config_lists_job_problems_by_job_name() -> None:
    """Two jobs with a misspelt option: their problems come in job-name order."""
    settings = Settings(
        jobs={
            "instock.orders": {"options": {"no_such_option": 1}},
            "dsorder.pull": {"options": {"no_such_option": 1}},
        }
    )
    with pytest.raises(ConfigError) as caught:
        validate_jobs(settings)
    jobs = [p.split(".options.")[0] for p in caught.value.problems if ".options." in p]
    assert jobs == ["jobs.dsorder.pull", "jobs.instock.orders"]


def _package(root: Path, name: str, files: dict[str, str]) -> list[str]:
    package = root / name
    package.mkdir()
    for file, source in {"__init__.py": "", **files}.items():
        (package / file).parent.mkdir(parents=True, exist_ok=True)
        (package / file).write_text(textwrap.dedent(source))
    return [str(package)]


SPEC_SOURCE = """
    from syncd.config import Schedule
    from syncd.jobs.base import JobSpec
    SPEC = JobSpec(name={name!r}, run=print, description="", default_schedule=Schedule())
"""


@pytest.fixture
def importable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path for a throwaway package (forgotten again afterwards)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("fakejobs")]:
        del sys.modules[name]


def test_a_new_job_module_is_found_without_a_list(importable: Path) -> None:
    """A module that declares a SPEC is a job by being there; a module without one and a
    subpackage of pieces are not; the table is in job-name order."""
    path = _package(
        importable,
        "fakejobs",
        {
            "zeta_pull.py": SPEC_SOURCE.format(name="zeta.pull"),
            "acme_push.py": SPEC_SOURCE.format(name="acme.push"),
            "machinery.py": "X = 1\n",
            "pieces/__init__.py": "",
            "pieces/helper.py": "Y = 2\n",
        },
    )
    assert [spec.name for spec in discover("fakejobs", path)] == ["acme.push", "zeta.pull"]


def test_a_spec_that_is_not_a_jobspec_is_refused(importable: Path) -> None:
    """`SPEC` is the name the table reads: anything but a JobSpec there fails, naming it."""
    path = _package(importable, "fakejobs", {"acme_pull.py": "SPEC = {'name': 'acme.pull'}\n"})
    with pytest.raises(TypeError, match=r"fakejobs\.acme_pull\.SPEC is a dict, not a JobSpec"):
        discover("fakejobs", path)
