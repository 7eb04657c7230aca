"""syncd's modules import one another without a cycle (tools/importcycles.py)."""

from __future__ import annotations

import pytest

from tools.importcycles import cycles, graph


@pytest.mark.parametrize("all_imports", [False, True], ids=["module-level", "all"])
def test_no_import_cycle(all_imports: bool) -> None:
    """Counting imports inside functions too: a late import is still an arrow."""
    assert cycles(graph(all_imports=all_imports)) == []


def test_a_cycle_is_found() -> None:
    """The check can fail: a two-module loop and a three-module loop are reported."""
    edges = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"a"}}
    assert cycles(edges) == [["c", "d", "e"], ["a", "b"]]
