"""The host outbox directory failing is an outage: retried for as long as it lasts,
never given up into rejects, and no later file of a stream is written before an
earlier one (no gap in the moves or inventory_deltas chains).

The failures are real filesystem errors that also deny root (tests may run as
root, where a chmod'ed directory is still writable): the outbox directory
replaced by a regular file (ENOTDIR on every write), and a directory sitting
under one intent's file name (EISDIR for that one file only).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import syncd.host.outbox as host_outbox
from syncd.clock import utcnow
from syncd.config import Settings
from syncd.send.base import DestinationOutage
from syncd.send.host import host_destination, host_file_intent
from syncd.send.sender import OUTAGE_ALERT, Sender, decide_after_failure
from syncd.state import Intent, Store

MAX_ATTEMPTS = 3


def _settings(make_settings: Any, tmp_path: Path) -> Settings:
    settings: Settings = make_settings(
        host={"dir": str(tmp_path / "host")},
        outbox={"max_attempts": MAX_ATTEMPTS, "max_age": 1, "initial_backoff": 1, "max_backoff": 4},
    )
    return settings


def _queue(store: Store) -> dict[str, list[int]]:
    store.add_intents(
        [
            host_file_intent("moves", [{"article_id": "A", "qty": 1}], "jsonl", "moves:1"),
            host_file_intent("inventory_deltas", [{"article_id": "A", "d": 1}], "jsonl", "inv:1"),
            host_file_intent("moves", [{"article_id": "B", "qty": 2}], "jsonl", "moves:2"),
            host_file_intent("moves", [{"article_id": "C", "qty": 3}], "jsonl", "moves:3"),
            host_file_intent("inventory_deltas", [{"article_id": "B", "d": 2}], "jsonl", "inv:2"),
        ]
    )
    ids: dict[str, list[int]] = {"moves": [], "inventory_deltas": []}
    for row in store.query("SELECT id, order_key FROM outbox ORDER BY id"):
        ids[row["order_key"]].append(row["id"])
    return ids


def _drain_many(store: Store, settings: Settings, times: int) -> None:
    """Drain again and again, each time an hour later: every retry is due, and every
    bound (max_attempts, max_age) is long past."""
    for hour in range(1, times + 1):
        later = utcnow() + timedelta(hours=hour)
        sender = Sender(
            store, settings, destinations={"host": host_destination}, now=lambda t=later: t
        )
        sender.drain_destination("host")


def _written(outbox: Path) -> list[str]:
    return sorted(p.name for p in outbox.iterdir() if not p.name.startswith("."))


def test_unwritable_outbox_is_retried_forever_with_one_alert(
    make_settings: Any, tmp_path: Path
) -> None:
    """With `outbox/` replaced by a file, nothing is given up however many attempts and
    however old; one outage alert stays open; once the directory is back every file is
    written, in order, and the alert is resolved."""
    settings = _settings(make_settings, tmp_path)
    outbox = tmp_path / "host" / "outbox"
    outbox.parent.mkdir(parents=True)
    outbox.write_text("not a directory\n")
    with Store.open(settings.db_path) as store:
        ids = _queue(store)
        _drain_many(store, settings, MAX_ATTEMPTS * 3)
        rows = store.query("SELECT status, attempts, last_error FROM outbox ORDER BY id")
        assert {r["status"] for r in rows} == {"pending"}
        assert rows[0]["attempts"] == MAX_ATTEMPTS * 3  # far past max_attempts, not given up
        assert "Not a directory (ENOTDIR)" in rows[0]["last_error"]
        assert store.scalar("SELECT count(*) FROM rejects") == 0
        assert store.open_alerts("outbox_gave_up") == []
        [alert] = store.open_alerts(OUTAGE_ALERT)
        assert alert["subject"] == "host"
        assert alert["count"] == MAX_ATTEMPTS * 3
        assert "never given up" in alert["message"]

        outbox.unlink()
        outbox.mkdir()
        _drain_many(store, settings, 1)
        assert {r["status"] for r in store.query("SELECT status FROM outbox")} == {"sent"}
        assert store.open_alerts(OUTAGE_ALERT) == []
    assert _written(outbox) == sorted(
        [f"moves-{i:010d}.jsonl" for i in ids["moves"]]
        + [f"inventory_deltas-{i:010d}.jsonl" for i in ids["inventory_deltas"]]
    )


def test_a_file_that_cannot_be_written_holds_back_the_rest_of_its_stream(
    make_settings: Any, tmp_path: Path
) -> None:
    """The first moves file cannot be written (a directory holds its name: EISDIR); the later
    moves files, which could be written, are not, however long it lasts: no gap in the chain.
    Once the obstacle is gone the stream is written whole."""
    settings = _settings(make_settings, tmp_path)
    outbox = tmp_path / "host" / "outbox"
    with Store.open(settings.db_path) as store:
        ids = _queue(store)
        first = outbox / f"moves-{ids['moves'][0]:010d}.jsonl"
        first.mkdir(parents=True)
        _drain_many(store, settings, MAX_ATTEMPTS * 2)
        assert store.scalar("SELECT count(*) FROM rejects") == 0
        statuses = {
            r["id"]: r["status"] for r in store.query("SELECT id, status FROM outbox ORDER BY id")
        }
        assert [statuses[i] for i in ids["moves"]] == ["pending"] * 3
        assert _written(outbox) == [first.name]  # only the obstacle: no later moves file
        assert len(store.open_alerts(OUTAGE_ALERT)) == 1

        shutil.rmtree(first)
        _drain_many(store, settings, 1)
        assert store.scalar("SELECT count(*) FROM outbox WHERE status != 'sent'") == 0
        assert store.open_alerts(OUTAGE_ALERT) == []
    moves = [json.loads((outbox / f"moves-{i:010d}.jsonl").read_text()) for i in ids["moves"]]
    assert [m["article_id"] for m in moves] == ["A", "B", "C"]


def test_an_outage_is_never_given_up_and_its_backoff_is_capped(
    make_settings: Any, tmp_path: Path
) -> None:
    """The decision for an outage is always a retry, at most max_backoff away, whatever
    the attempt count or age; other retryable errors still give up."""
    settings = _settings(make_settings, tmp_path)
    old = (utcnow() - timedelta(days=30)).isoformat()
    intent = Intent(1, "host", "file:moves", "moves", "k", {}, "pending", 10**6, old, None, old)
    decision = decide_after_failure(
        intent, DestinationOutage("cannot write"), settings.outbox, utcnow()
    )
    assert (decision.action, decision.delay) == ("retry", settings.outbox.max_backoff)


def test_a_full_disk_mid_write_leaves_no_partial_file_and_is_an_outage(
    make_settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC while a file is being written (the temporary file exists, its fsync fails):
    no partial or temporary file stays in `outbox/`, the intent is retried as an outage
    (never given up), and once space is back the stream is written in order."""
    settings = _settings(make_settings, tmp_path)
    outbox = tmp_path / "host" / "outbox"
    real_fsync = os.fsync

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with Store.open(settings.db_path) as store:
        ids = _queue(store)
        monkeypatch.setattr(host_outbox.os, "fsync", full)
        _drain_many(store, settings, MAX_ATTEMPTS * 2)
        assert list(outbox.iterdir()) == []  # not even a temporary file
        assert {r["status"] for r in store.query("SELECT status FROM outbox")} == {"pending"}
        assert store.scalar("SELECT count(*) FROM rejects") == 0
        [error] = store.query("SELECT last_error FROM outbox WHERE id = ?", [ids["moves"][0]])
        assert "(ENOSPC)" in error["last_error"]
        assert len(store.open_alerts(OUTAGE_ALERT)) == 1

        monkeypatch.setattr(host_outbox.os, "fsync", real_fsync)
        _drain_many(store, settings, 1)
        assert store.scalar("SELECT count(*) FROM outbox WHERE status != 'sent'") == 0
        assert store.open_alerts(OUTAGE_ALERT) == []
    moves = [json.loads((outbox / f"moves-{i:010d}.jsonl").read_text()) for i in ids["moves"]]
    assert [m["article_id"] for m in moves] == ["A", "B", "C"]
