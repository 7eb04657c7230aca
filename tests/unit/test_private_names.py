"""No module of syncd, its tests or bench uses another module's private (`_name`) names."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

ROOT = Path(__file__).parents[2]


def is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def private_uses(path: Path) -> list[str]:
    """`from syncd.x import _name`, and `module._name` on a syncd module imported as such
    (not on an object imported from one: `migrations._migrations` is sqlite-utils' own)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    modules: set[str] = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("syncd"):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{path}:{node.lineno}: from {node.module} import {alias.name}")
                elif is_module(f"{node.module}.{alias.name}"):
                    modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            modules.update(
                (a.asname or a.name.split(".")[0]) for a in node.names if a.name.startswith("syncd")
            )
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"{path}:{node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_no_private_name_crosses_a_module() -> None:
    """A helper another module needs is public (or lives where it is used): a private name
    stays free to change inside its own module."""
    paths = [p for top in ("syncd", "tests", "bench") for p in sorted((ROOT / top).rglob("*.py"))]
    assert paths
    found = [use for path in paths for use in private_uses(path)]
    assert found == []


def test_the_check_sees_a_private_import(tmp_path: Path) -> None:
    """The scan finds both spellings of a private use (so the test above can fail), and
    leaves the private attributes of an object imported from a module alone."""
    module = tmp_path / "m.py"
    module.write_text(
        "from syncd.config import _x\nfrom syncd import config\nconfig._y()\n"
        "from syncd.state.migrations import migrations\nmigrations._migrations\n",
        encoding="utf-8",
    )
    assert len(private_uses(module)) == 2
