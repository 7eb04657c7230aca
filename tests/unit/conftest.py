"""Unit-tier fixtures: a host folder and a fresh state DB, for the host inbox suites."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.state import Store


@pytest.fixture
def host(tmp_path: Path) -> Path:
    return tmp_path / "host"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "s.db") as store:
        yield store
