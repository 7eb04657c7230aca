"""The outbox sender drains host intents into outbox files, once each, in order."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from syncd.send.host import host_destination, host_file_intent
from syncd.send.sender import Sender
from syncd.state import Store


def test_sender_drains_host_intents_into_files(make_settings: Any, tmp_path: Path) -> None:
    """Recorded host-file intents become one outbox file each, named by intent id, marked sent;
    recording the same key again queues nothing."""
    settings = make_settings(host={"dir": str(tmp_path / "host")})
    with Store.open(settings.db_path) as store:
        added = store.add_intents(
            [
                host_file_intent("moves", [{"article_id": "A1", "qty": 1}], "jsonl", "moves:1"),
                host_file_intent("moves", [{"article_id": "A2", "qty": 2}], "jsonl", "moves:2"),
                host_file_intent(
                    "order_status", [{"order_id": "O1", "status": "done"}], "csv", "os:1"
                ),
                host_file_intent("moves", [{"article_id": "A1", "qty": 1}], "jsonl", "moves:1"),
            ]
        )
        assert added == 3
        counts = Sender(store, settings, destinations={"host": host_destination}).drain()
        assert counts["pushed"] == 3
        sent = store.query("SELECT id, status, result FROM outbox ORDER BY id")
        assert [r["status"] for r in sent] == ["sent"] * 3
    outbox = tmp_path / "host" / "outbox"
    names = sorted(p.name for p in outbox.iterdir())
    assert names == [
        f"moves-{sent[0]['id']:010d}.jsonl",
        f"moves-{sent[1]['id']:010d}.jsonl",
        f"order_status-{sent[2]['id']:010d}.csv",
    ]
    assert json.loads((outbox / names[0]).read_text()) == {"article_id": "A1", "qty": 1}
    assert (outbox / names[2]).read_text() == "order_id,status\nO1,done\n"
    assert json.loads(sent[0]["result"])["file"] == names[0]


def test_replay_after_crash_is_recognised_as_done(make_settings: Any, tmp_path: Path) -> None:
    """A kill between writing the file and marking it sent replays the intent; the sender
    finds the same file, records 'already done', and writes nothing new."""
    settings = make_settings(host={"dir": str(tmp_path / "host")})
    with Store.open(settings.db_path) as store:
        store.add_intents(
            [host_file_intent("moves", [{"article_id": "A1", "qty": 1}], "csv", "k1")]
        )
        Sender(store, settings, destinations={"host": host_destination}).drain()
        # The crash: the file exists, but the intent was never marked sent.
        store.db.execute("UPDATE outbox SET status = 'pending', sent_at = NULL")
        counts = Sender(store, settings, destinations={"host": host_destination}).drain()
        assert counts["already_done"] == 1
        assert store.scalar("SELECT status FROM outbox") == "sent"
        assert store.scalar("SELECT count(*) FROM rejects") == 0
    assert len(list((tmp_path / "host" / "outbox").iterdir())) == 1


def test_conflicting_file_goes_to_rejects_not_overwritten(
    make_settings: Any, tmp_path: Path
) -> None:
    """A foreign file under the intent's name is never overwritten: the intent is rejected
    with the reason, and later files of the stream still go out."""
    settings = make_settings(host={"dir": str(tmp_path / "host")})
    outbox = tmp_path / "host" / "outbox"
    with Store.open(settings.db_path) as store:
        store.add_intents(
            [
                host_file_intent("moves", [{"n": 1}], "jsonl", "k1"),
                host_file_intent("moves", [{"n": 2}], "jsonl", "k2"),
            ]
        )
        first, second = (
            store.scalar("SELECT min(id) FROM outbox"),
            store.scalar("SELECT max(id) FROM outbox"),
        )
        outbox.mkdir(parents=True)
        (outbox / f"moves-{first:010d}.jsonl").write_text("someone else's\n")
        counts = Sender(store, settings, destinations={"host": host_destination}).drain()
        assert (counts["rejected"], counts["pushed"]) == (1, 1)
        [reject] = store.list_rejects(source="outbox:host")
        assert "different content" in reject["reason"]
    assert (outbox / f"moves-{first:010d}.jsonl").read_text() == "someone else's\n"
    assert (outbox / f"moves-{second:010d}.jsonl").exists()
