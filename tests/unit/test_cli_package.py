"""The `syncd` command is a package of modules, each adding its commands to the root
group: a command defined in a module but never added would silently not exist."""

from __future__ import annotations

import importlib
import pkgutil

import click

import syncd.cli
from syncd.cli import main


def reachable(group: click.Group) -> set[int]:
    """The ids of every command and group under `group`."""
    found: set[int] = set()
    for command in group.commands.values():
        found.add(id(command))
        if isinstance(command, click.Group):
            found |= reachable(command)
    return found


def defined() -> dict[str, click.Command]:
    """Every click command a module of syncd/cli/ defines, by module:name."""
    commands = {}
    for info in pkgutil.iter_modules(syncd.cli.__path__):
        if info.name == "__main__":
            continue
        module = importlib.import_module(f"syncd.cli.{info.name}")
        for name, value in vars(module).items():
            if isinstance(value, click.Command) and value is not main:
                commands[f"{info.name}:{name}"] = value
    return commands


def test_every_command_defined_is_reachable_from_main() -> None:
    commands = defined()
    assert len(commands) > 30  # every module was read
    assert [name for name, c in commands.items() if id(c) not in reachable(main)] == []


def test_a_command_left_out_is_found() -> None:
    """The check can fail: a group taken off the root leaves its commands unreachable."""
    rejects = main.commands["rejects"]
    try:
        del main.commands["rejects"]
        missing = [n for n, c in defined().items() if id(c) not in reachable(main)]
    finally:
        main.add_command(rejects)
    assert "rejects:rejects" in missing
    assert "rejects:rejects_list" in missing
