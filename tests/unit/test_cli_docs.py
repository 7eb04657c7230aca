"""Every CLI command has help text and is documented in the README."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from syncd.cli import main

README = (Path(__file__).parents[2] / "README.md").read_text()


def commands(group: click.Group, prefix: str = "syncd") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in sorted(group.commands.items()):
        path = f"{prefix} {name}"
        found.append((path, command))
        if isinstance(command, click.Group):
            found.extend(commands(command, path))
    return found


@pytest.mark.parametrize(("path", "command"), commands(main), ids=str)
def test_command_has_help_and_readme_entry(path: str, command: click.Command) -> None:
    """An operator finds each command both in --help and in the README."""
    assert (command.help or "").strip(), f"{path} has no help text"
    result = CliRunner().invoke(main, [*path.split()[1:], "--help"])
    assert result.exit_code == 0, result.output
    words = path.split()[1:]
    lines = [line for line in README.splitlines() if f"syncd {words[0]}" in line]
    assert any(all(word in line for word in words) for line in lines), (
        f"{path} is not documented in README.md"
    )


@pytest.mark.parametrize(("path", "command"), commands(main), ids=str)
def test_every_option_says_what_it_does(path: str, command: click.Command) -> None:
    """`--help` is the manual: every option of every command has its own help text."""
    bare = [
        "/".join(p.opts)
        for p in command.params
        if isinstance(p, click.Option) and not (p.help or "").strip()
    ]
    assert bare == [], f"{path}: options without help: {bare}"
