"""The status types of syncd.state.kinds name exactly the words the schema's CHECK
constraints allow: mypy checks the code against the types, this test the types against
the schema."""

import re
from pathlib import Path
from typing import get_args

import pytest

from syncd.state import Store
from syncd.state.kinds import INTENT_STATUSES, REJECT_STATUSES, RUN_STATUSES


def _allowed(sql: str) -> set[str]:
    match = re.search(r"status TEXT NOT NULL DEFAULT '\w+'\s+CHECK \(status IN \(([^)]*)\)\)", sql)
    assert match, sql
    return set(re.findall(r"'([^']*)'", match.group(1)))


@pytest.mark.parametrize(
    ("table", "kinds"),
    [("runs", RUN_STATUSES), ("outbox", INTENT_STATUSES), ("rejects", REJECT_STATUSES)],
)
def test_status_type_matches_the_schema(tmp_path: Path, table: str, kinds: tuple[str, ...]) -> None:
    with Store.open(tmp_path / "state.db") as store:
        sql = store.scalar(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", [table]
        )
    assert set(kinds) == _allowed(sql)
    assert len(kinds) == len(set(kinds))


def test_every_alert_kind_is_opened_somewhere() -> None:
    """AlertKind is not a stale list: each kind is a string constant in syncd/ outside
    syncd/state/kinds.py (mypy checks the other way: every kind opened is in the list)."""
    import ast

    import syncd
    from syncd.state.kinds import AlertKind

    root = Path(syncd.__file__).parent
    constants: set[str] = set()
    for path in root.rglob("*.py"):
        if path.name == "kinds.py" and path.parent.name == "state":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                constants.add(node.value)
    assert set(get_args(AlertKind)) - constants == set()
