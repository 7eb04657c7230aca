"""syncd's imports point inwards and form no cycle (tools/importcycles.py reads them)."""

from __future__ import annotations

import pytest

from tools.importcycles import cycles, graph

# Counting imports inside functions too: a late import is still an arrow.
EDGES = graph(all_imports=True)


def _importers(package: str) -> set[str]:
    """Modules outside `package` that import it or one of its modules."""
    inside = (package, package + ".")
    return {
        module
        for module, targets in EDGES.items()
        if not module.startswith(inside)
        and any(t == package or t.startswith(inside[1]) for t in targets)
    }


def _imports(package: str) -> set[str]:
    """The syncd modules that `package` (and its modules) import."""
    return {t for m, ts in EDGES.items() if m == package or m.startswith(package + ".") for t in ts}


@pytest.mark.parametrize("all_imports", [False, True], ids=["module-level", "all"])
def test_no_import_cycle(all_imports: bool) -> None:
    """No module reaches itself through its imports."""
    assert cycles(graph(all_imports=all_imports)) == []


def test_a_cycle_is_found() -> None:
    """The check can fail: a two-module loop and a three-module loop are reported."""
    edges = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"a"}}
    assert cycles(edges) == [["c", "d", "e"], ["a", "b"]]


def test_the_outer_layers_are_imported_by_no_one() -> None:
    """Nothing imports the CLI; only the CLI and the demo import the simulators."""
    assert _importers("syncd.cli") == set()
    assert _importers("syncd.sandbox") == {"syncd.cli.sandbox", "syncd.demo"}


@pytest.mark.parametrize(
    ("package", "outer"),
    [
        ("syncd.config", ("syncd.jobs", "syncd.host", "syncd.send", "syncd.state")),
        (
            "syncd.connectors",
            ("syncd.config", "syncd.jobs", "syncd.send", "syncd.host", "syncd.state"),
        ),
        ("syncd.state", ("syncd.jobs", "syncd.send", "syncd.host", "syncd.connectors")),
    ],
)
def test_inner_packages_import_no_outer_one(package: str, outer: tuple[str, ...]) -> None:
    """Config, connectors and state know nothing of the packages built on them; config
    gathers the connectors' section models, so connectors build on `syncd.sections`."""
    wrong = sorted(
        t for t in _imports(package) if t.startswith(tuple(p + "." for p in outer)) or t in outer
    )
    assert wrong == []


def test_sections_is_a_leaf() -> None:
    """The building blocks of config sections import no syncd module: connectors and
    config both import them, so anything they imported could close a cycle."""
    assert sorted(EDGES["syncd.sections"]) == []
