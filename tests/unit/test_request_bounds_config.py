"""The per-connector request bounds in the config: defaults, units, and refusals naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.config import load_settings
from syncd.errors import ConfigError


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "syncd.toml"
    path.write_text(f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n{body}', encoding="utf-8")
    return path


def test_defaults_and_units(tmp_path: Path) -> None:
    """120 s, 64 MiB (Instock 16 MiB) and 10000 pages by default; sizes and durations take units."""
    defaults = load_settings(write(tmp_path, ""))
    assert defaults.connectors.dsorder.request_deadline == 120
    assert defaults.connectors.dsorder.max_response_bytes == 64 * 1024 * 1024
    assert defaults.connectors.instock.max_response_bytes == 16 * 1024 * 1024
    assert defaults.connectors.instock.max_pages == 10_000
    tuned = load_settings(
        write(
            tmp_path,
            '[connectors.netstock]\nrequest_deadline = "5m"\nmax_response_bytes = "200MiB"\n',
        )
    )
    assert tuned.connectors.netstock.request_deadline == 300
    assert tuned.connectors.netstock.max_response_bytes == 200 * 1024 * 1024


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("request_deadline = 0", "connectors.instock.request_deadline"),
        ('request_deadline = "forever"', "connectors.instock.request_deadline"),
        ('max_response_bytes = "lots"', "connectors.instock.max_response_bytes"),
        ("max_response_bytes = 10", "connectors.instock.max_response_bytes"),
        ("max_pages = 0", "connectors.instock.max_pages"),
    ],
)
def test_a_bad_bound_is_refused_naming_its_key(tmp_path: Path, line: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, f"[connectors.instock]\n{line}\n"))
    assert info.value.exit_code == 78
    assert any(problem.startswith(key) for problem in info.value.problems), info.value.problems
