"""Shared fixtures: a fresh state DB and settings pointing at a temp state dir."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.config import Settings
from syncd.state import Store

TIERS = ("unit", "contract", "integration", "system")
"""The folders under tests/, each a tier and a marker of the same name (see README "Development")."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test carries its tier's marker, the folder it lives in, so `-m "not system"`
    selects the quick tiers and `-m integration` one tier."""
    root = Path(__file__).parent
    for item in items:
        parts = item.path.relative_to(root).parts if item.path.is_relative_to(root) else ()
        if parts and parts[0] in TIERS:
            item.add_marker(parts[0])


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's or systemd's SYNCD_* settings."""
    import os

    for key in list(os.environ):
        if key.startswith("SYNCD_") or key in (
            "CREDENTIALS_DIRECTORY",
            "STATE_DIRECTORY",
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
        ):
            monkeypatch.delenv(key, raising=False)


@pytest.fixture(autouse=True)
def _fresh_redactor() -> Iterator[None]:
    """The redactor is per process: secrets one test configured or obtained (a simulator's
    seeded token) must not redact another test's ids."""
    from syncd.logs import redactor

    redactor.reset()
    yield
    redactor.reset()


@pytest.fixture(autouse=True)
def _fresh_tokens() -> Iterator[None]:
    """Netstock tokens are cached per process across runs: one test's token (from a simulator
    whose port a later one may reuse) must not be offered to another test's simulator."""
    from syncd.connectors.netstock.auth import TOKENS

    TOKENS.clear()
    yield
    TOKENS.clear()


@pytest.fixture
def make_settings(tmp_path: Path) -> Any:
    def make(**sections: Any) -> Settings:
        daemon = {"state_dir": str(tmp_path / "state"), **sections.pop("daemon", {})}
        return Settings(daemon=daemon, **sections)

    return make


@pytest.fixture
def settings(make_settings: Any) -> Settings:
    return make_settings()


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    with Store.open(settings.db_path) as s:
        yield s
