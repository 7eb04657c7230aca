"""`syncd inspect`'s Datasette metadata describes every table and column of the state DB,
and every canned query is valid SQL on the schema."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from syncd.state import Store
from syncd.state.datasette import QUERIES, TABLES, metadata


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    path = tmp_path_factory.mktemp("schema") / "syncd.db"
    with Store.open(path) as store:
        return {t: [c.name for c in store.db[t].columns] for t in store.db.table_names()}


def test_every_table_is_described(schema: dict[str, list[str]]) -> None:
    """A migration that adds a table fails here until the table has a description."""
    missing = sorted(set(schema) - set(TABLES))
    assert missing == [], f"describe these tables in syncd/state/datasette.py: {missing}"
    stale = sorted(set(TABLES) - set(schema))
    assert stale == [], f"described tables that no longer exist: {stale}"


def test_every_column_is_described(schema: dict[str, list[str]]) -> None:
    """... and so does a new column, until it has one (a unit, a meaning)."""
    missing = [f"{t}.{c}" for t, cols in schema.items() for c in cols if c not in TABLES[t][1]]
    assert missing == []
    stale = [f"{t}.{c}" for t, (_, cols) in TABLES.items() for c in cols if c not in schema[t]]
    assert stale == []
    assert all(text.strip() for _, cols in TABLES.values() for text in cols.values())


def test_status_columns_say_what_each_status_means(schema: dict[str, list[str]]) -> None:
    """A table with a status or state column names every value its CHECK allows."""
    from syncd.state.kinds import INTENT_STATUSES, REJECT_STATUSES, RUN_STATUSES

    for table, statuses in (
        ("runs", RUN_STATUSES),
        ("outbox", INTENT_STATUSES),
        ("rejects", REJECT_STATUSES),
        ("dsorder_orders", ("held", "created", "closing", "closed")),
    ):
        text = TABLES[table][0]
        assert [s for s in statuses if s not in text and s != "dry-run"] == [], table


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_canned_query_is_valid_on_the_schema(tmp_path: Path, name: str) -> None:
    """Each canned query runs on a freshly migrated state DB (empty: no rows yet)."""
    path = tmp_path / "syncd.db"
    Store.open(path).close()
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        conn.execute(QUERIES[name]["sql"], {"since": ""}).fetchall()
    finally:
        conn.close()


def test_metadata_is_datasette_shaped() -> None:
    """Tables, column descriptions and queries sit under the database's name."""
    data = metadata("syncd")["databases"]["syncd"]
    assert data["tables"]["runs"]["columns"]["status"].startswith("running, ok")
    assert set(data["queries"]) == set(QUERIES)
    assert all({"title", "description", "sql"} <= set(q) for q in data["queries"].values())
