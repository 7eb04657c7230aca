"""The test tiers stay what README "Development" says they are."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import TIERS

TESTS = Path(__file__).resolve().parents[1]


def test_every_test_module_lives_in_a_tier() -> None:
    """A test file outside tests/unit, contract, integration and system would carry no tier
    marker, so `-m "not system"` and `-m <tier>` would silently miss or mis-sort it."""
    stray = [
        str(path.relative_to(TESTS))
        for path in TESTS.rglob("test_*.py")
        if path.relative_to(TESTS).parts[0] not in TIERS
    ]
    assert stray == []


def test_contract_suites_run_no_job() -> None:
    """A job run against a simulator belongs in tests/integration; tests/contract holds the
    clients and simulators alone."""
    running_jobs = [
        path.name
        for path in (TESTS / "contract").glob("*.py")
        if "run_job" in path.read_text() or "syncd.jobs" in path.read_text()
    ]
    assert running_jobs == []


def test_each_tier_is_a_registered_marker(pytestconfig: pytest.Config) -> None:
    """`--strict-markers` refuses an unregistered marker: every tier is declared."""
    declared = {line.split(":")[0] for line in pytestconfig.getini("markers")}
    assert set(TIERS) <= declared
