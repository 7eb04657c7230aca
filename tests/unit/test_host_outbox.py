"""Host outbox files: atomic writes, sequence-numbered names, never an overwrite."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.errors import AlreadyDoneError, PermanentError
from syncd.host import write_atomic
from syncd.send.destinations import DESTINATIONS
from syncd.send.host import HostOutboxDestination, host_destination, host_file_intent
from syncd.state import Intent

ROWS = [
    {"article_id": "A1", "qty": 4, "order_id": "O1", "note": None, "ok": True},
    {"article_id": "A2", "qty": -2, "order_id": "O2", "note": 'a, "quoted" note', "ok": False},
]


def intent(intent_id: int, payload: Any) -> Intent:
    return Intent(
        id=intent_id,
        destination="host",
        kind="file:moves",
        order_key="moves",
        idempotency_key=f"k{intent_id}",
        payload=payload,
        status="pending",
        attempts=0,
        next_attempt_at="2026-11-23T10:00:00.000Z",
        last_error=None,
        created_at="2026-11-23T10:00:00.000Z",
    )


def test_write_atomic_jsonl_and_csv(tmp_path: Path) -> None:
    """Rows are written as compact JSON Lines or as CSV with a header, and nothing else is
    left in the directory (no temp file)."""
    jsonl = write_atomic(tmp_path / "moves-1.jsonl", ROWS, "jsonl")
    assert jsonl.rows == 2
    assert [json.loads(x) for x in (tmp_path / "moves-1.jsonl").read_text().splitlines()] == ROWS
    csv_file = write_atomic(
        tmp_path / "moves-1.csv",
        ROWS,
        "csv",
        columns=["order_id", "article_id", "qty", "note", "ok"],
    )
    assert csv_file.size == (tmp_path / "moves-1.csv").stat().st_size
    assert (tmp_path / "moves-1.csv").read_text().splitlines() == [
        "order_id,article_id,qty,note,ok",
        "O1,A1,4,,true",
        'O2,A2,-2,"a, ""quoted"" note",false',
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["moves-1.csv", "moves-1.jsonl"]


def test_write_atomic_never_overwrites(tmp_path: Path) -> None:
    """An existing file is never replaced: the write fails and the old bytes stay."""
    target = tmp_path / "moves-1.jsonl"
    target.write_text("theirs\n")
    with pytest.raises(FileExistsError):
        write_atomic(target, ROWS, "jsonl")
    assert target.read_text() == "theirs\n"
    assert [p.name for p in tmp_path.iterdir()] == ["moves-1.jsonl"]


def test_interrupted_write_leaves_nothing_under_the_final_name(tmp_path: Path) -> None:
    """A writer that fails midway leaves neither a partial file nor its temp file."""

    def rows() -> Iterator[dict[str, Any]]:
        yield from ({"n": i, "pad": "x" * 1000} for i in range(500))
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(tmp_path / "moves-1.jsonl", rows(), "jsonl")
    assert list(tmp_path.iterdir()) == []


def test_csv_rows_outside_the_columns_are_refused(tmp_path: Path) -> None:
    """A CSV row with a key the header lacks is an error, not a silently dropped value."""
    with pytest.raises(ValueError, match="outside the CSV columns"):
        write_atomic(tmp_path / "x.csv", [{"a": 1}, {"a": 2, "b": 3}], "csv")
    assert list(tmp_path.iterdir()) == []


def test_destination_writes_sequence_numbered_files(tmp_path: Path) -> None:
    """An intent becomes outbox/<stream>-<intent id, 10 digits>.<ext>; the result names it."""
    dest = HostOutboxDestination(tmp_path)
    result = dest.send(intent(42, {"stream": "moves", "format": "jsonl", "rows": ROWS}))
    path = tmp_path / "outbox" / "moves-0000000042.jsonl"
    assert result["file"] == path.name
    assert result["rows"] == 2
    assert len(path.read_text().splitlines()) == 2
    dest.send(intent(43, {"stream": "moves", "format": "csv", "rows": ROWS}))
    assert (tmp_path / "outbox" / "moves-0000000043.csv").read_text().startswith("article_id,qty,")
    dest.close()


def test_replay_of_a_written_file_is_already_done(tmp_path: Path) -> None:
    """A replay after a crash finds its own file with the same bytes: AlreadyDoneError."""
    dest = HostOutboxDestination(tmp_path)
    payload = {"stream": "moves", "format": "csv", "rows": ROWS}
    dest.send(intent(7, payload))
    before = (tmp_path / "outbox" / "moves-0000000007.csv").read_bytes()
    with pytest.raises(AlreadyDoneError):
        dest.send(intent(7, payload))
    assert (tmp_path / "outbox" / "moves-0000000007.csv").read_bytes() == before


def test_existing_file_with_other_content_is_permanent_error(tmp_path: Path) -> None:
    """A file under the intent's name with different bytes is never overwritten: PermanentError."""
    dest = HostOutboxDestination(tmp_path)
    dest.send(intent(7, {"stream": "moves", "format": "jsonl", "rows": ROWS}))
    with pytest.raises(PermanentError, match="different content"):
        dest.send(intent(7, {"stream": "moves", "format": "jsonl", "rows": ROWS[:1]}))
    assert len((tmp_path / "outbox" / "moves-0000000007.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize(
    "payload",
    [
        {"stream": "../etc", "format": "jsonl", "rows": []},
        {"stream": "moves", "format": "xml", "rows": []},
        {"stream": "moves", "format": "jsonl", "rows": [1, 2]},
        {"stream": "moves", "format": "csv", "rows": [{"a": 1}, {"b": 2}]},
        ["not", "an", "object"],
    ],
)
def test_malformed_payload_is_permanent_error(tmp_path: Path, payload: Any) -> None:
    """A payload no file can be made of is refused for good, and writes nothing."""
    with pytest.raises(PermanentError):
        HostOutboxDestination(tmp_path).send(intent(1, payload))
    assert list((tmp_path / "outbox").glob("*")) == []


def test_host_file_intent_orders_files_per_stream() -> None:
    """Intents for host files go to destination 'host', one order key per stream."""
    new = host_file_intent("moves", ROWS, "csv", "moves:2026-11-23T10:00Z", columns=["article_id"])
    assert (new.destination, new.kind, new.order_key) == ("host", "file:moves", "moves")
    assert new.idempotency_key == "moves:2026-11-23T10:00Z"
    assert new.payload == {
        "stream": "moves",
        "format": "csv",
        "rows": ROWS,
        "columns": ["article_id"],
    }
    with pytest.raises(ValueError, match="stream"):
        host_file_intent("Moves-2", ROWS, "csv", "k")
    with pytest.raises(ValueError, match="format"):
        host_file_intent("moves", ROWS, "xml", "k")  # type: ignore[arg-type]


def test_the_host_destination_is_in_the_table() -> None:
    """Destination 'host' is declared in the destinations table, as the outbox files' writer."""
    assert DESTINATIONS["host"] is host_destination


def test_stale_temp_files_of_a_crashed_writer_are_removed(tmp_path: Path) -> None:
    """A hidden temp file a killed writer left in outbox/ is cleaned up once it is old."""
    import os
    import time as _time

    from syncd.host.outbox import remove_stale_temp_files

    old = tmp_path / ".moves-0000000001.jsonl.123.abcd.tmp"
    young = tmp_path / ".moves-0000000002.jsonl.123.ef01.tmp"
    kept = tmp_path / "moves-0000000001.jsonl"
    for path in (old, young, kept):
        path.write_text("x")
    past = _time.time() - 3600
    os.utime(old, (past, past))
    assert remove_stale_temp_files(tmp_path) == 1
    assert not old.exists()
    assert young.exists()
    assert kept.exists()
