"""The core tables have one owner: SQL on them lives in syncd/state/, not in the CLI,
the status report or the jobs."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import syncd
from syncd.state import NewReject, Store, queries

PACKAGE = Path(syncd.__file__).parent
SQL = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE)\b[\s\S]*\b(FROM|INTO|SET)\b")


def sql_strings(path: Path) -> list[tuple[int, str]]:
    """Every string literal of a module that reads as a SQL statement (adjacent literals
    and the constant parts of an f-string count as one), with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.JoinedStr):
            text = "".join(
                v.value
                for v in node.values
                if isinstance(v, ast.Constant) and isinstance(v.value, str)
            )
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        else:
            continue
        if SQL.search(text):
            found.append((node.lineno, " ".join(text.split())))
    return found


def test_cli_and_status_hold_no_sql() -> None:
    """`syncd` commands and the status report call syncd.state; they write no SQL themselves."""
    for name in ("cli.py", "status.py"):
        assert sql_strings(PACKAGE / name) == [], name


def test_resolve_alert_by_id_only_once(store: Store) -> None:
    """An operator resolves an open alert by id; an unknown or resolved id says False."""
    store.open_alert("auth", "bad token", "instock")
    [alert] = queries.alerts(store)
    assert store.resolve_alert(alert["id"]) is True
    assert store.resolve_alert(alert["id"]) is False
    assert store.resolve_alert(alert["id"] + 1) is False
    assert queries.alerts(store) == []
    assert [a["resolved_at"] is not None for a in queries.alerts(store, include_resolved=True)] == [
        True
    ]


def test_report_queries_count_what_needs_attention(store: Store) -> None:
    """Open and retry-flagged rejects count as open; dropped ones do not."""
    store.add_rejects(
        [NewReject("a", "r1", "x"), NewReject("a", "r2", "y"), NewReject("b", "r", "z")]
    )
    store.drop_reject(3)
    store.set_reject_status(2, "retry")
    assert queries.open_reject_count(store) == 2
    assert queries.open_rejects_by_source(store) == [{"source": "a", "n": 2}]
    store.set_checkpoint("s", "v", run_id="r")
    assert list(queries.checkpoints(store)[0]) == ["stream", "value", "updated_at"]
    assert queries.checkpoints(store, with_run_id=True)[0]["run_id"] == "r"
