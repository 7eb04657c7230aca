"""instock.inventory's host files name their rows: a settled scan's deltas stay frozen in
`instock_inventory_deltas` under its number, each `inventory_deltas` intent names a range
of them (`rows_from`), and the host destination renders the file from that range when it
writes it, then releases the range with the record that the file is written.

Real loopback HTTP to the Instock simulator, real state DB and host directory. What the
host receives is checked byte for byte against the rendering the outbox payloads used to
carry (the rows as JSON rendered by SQLite, parsed, then written), in both file formats.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import syncd.jobs  # noqa: F401 - fills the job registry
from syncd.config import Settings
from syncd.host.outbox import render
from syncd.sandbox.instock import InstockSim
from syncd.send.host import HostOutboxDestination
from syncd.state import Store
from tests.configs import FAST_BACKOFF, connector_for, fast_retry, sim_settings
from tests.integration.jobkit import query, run

CHUNK = 7

# How the settle rendered a file's rows into its outbox payload before the intents named
# them: the reference the files must still match byte for byte.
PAYLOAD_ROWS_BEFORE = """
    SELECT json_group_array(json_object(
               'article_id', article_id, 'free_before', free_before, 'free', free,
               'free_delta', free - free_before, 'reserved_before', reserved_before,
               'reserved', reserved, 'registered_before', registered_before,
               'registered', registered, 'on_hand', free + reserved)),
           max(article_id)
    FROM (SELECT * FROM instock_inventory_deltas WHERE scan = ? AND article_id > ?
          ORDER BY article_id LIMIT ?)
"""


@pytest.fixture
def sim() -> Iterator[InstockSim]:
    with InstockSim(seed=5, articles=40) as running:
        yield running


def settings_for(sim: InstockSim, root: Path, fmt: str = "jsonl") -> Settings:
    return sim_settings(
        root,
        connector_for(sim, page_size=10, retry=fast_retry(3)),
        outbox=FAST_BACKOFF,
        host={"options": {"outbox_format": fmt}},
        jobs={"instock.inventory": {"options": {"file_chunk": CHUNK, "reconcile": False}}},
    )


def files_before(settings: Settings, scan: int, fmt: Any) -> list[bytes]:
    """The files of scan `scan` as the payload-carrying intents rendered them."""
    out, last = [], ""
    with Store.open(settings.db_path, migrate=False) as store:
        while True:
            rows_json, last_id = store.db.execute(
                PAYLOAD_ROWS_BEFORE, [scan, last, CHUNK]
            ).fetchone()
            if last_id is None:
                return out
            last = last_id
            out.append(b"".join(render(json.loads(rows_json), fmt)))


def written(settings: Settings) -> list[bytes]:
    return [p.read_bytes() for p in sorted((settings.host_dir / "outbox").glob("inventory_*"))]


def deltas_of(settings: Settings, scan: int) -> int:
    rows = query(
        settings, "SELECT count(*) AS n FROM instock_inventory_deltas WHERE scan = ?", [scan]
    )
    return int(rows[0]["n"])


def delta_intents(settings: Settings) -> list[dict[str, Any]]:
    return query(
        settings,
        "SELECT id, status, payload FROM outbox WHERE kind = 'file:inventory_deltas' ORDER BY id",
    )


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_files_are_rendered_from_the_frozen_deltas_byte_for_byte(
    sim: InstockSim, tmp_path: Path, fmt: str
) -> None:
    """The settle queues intents that name ranges of the scan's deltas (no rows copied);
    the files the sender writes from them are the bytes the payloads used to give; the
    ranges are released once written."""
    settings = settings_for(sim, tmp_path, fmt)
    result = run(settings, "instock.inventory")
    listed = result.counts["deltas"]
    assert listed > 2 * CHUNK
    expected = files_before(settings, 1, fmt)
    intents = delta_intents(settings)
    assert len(intents) == len(expected) == -(-listed // CHUNK)
    for intent in intents:
        payload = json.loads(intent["payload"])
        assert "rows" not in payload, "the deltas were copied into the outbox"
        assert payload["rows_from"]["source"] == "instock_inventory_deltas"
        assert payload["rows_from"]["scan"] == 1
    assert sum(json.loads(i["payload"])["rows_from"]["rows"] for i in intents) == listed
    assert deltas_of(settings, 1) == listed

    counts = run(settings, "outbox.send").counts
    assert counts["pushed"] == len(intents)
    assert written(settings) == expected
    assert deltas_of(settings, 1) == 0, "a written file's deltas are released"


def test_a_scans_deltas_wait_for_their_files_while_the_next_scan_runs(
    sim: InstockSim, tmp_path: Path
) -> None:
    """Scan 2 runs (and changes articles scan 1 changed) before scan 1's files are written:
    each scan's files hold its own deltas, and per article the rows chain from zero to
    the mirror, none lost or twice."""
    settings = settings_for(sim, tmp_path)
    run(settings, "instock.inventory")
    first = deltas_of(settings, 1)
    with sim.state.lock:
        stocked = [a for a, s in sim.state.inventory[sim.site_id].items() if s.free > 1][:3]
    sim.adjust_inventory(stocked[0], 0)
    sim.adjust_inventory(stocked[1], 5)
    second = run(settings, "instock.inventory")
    assert second.counts["deltas"] == 2
    assert (deltas_of(settings, 1), deltas_of(settings, 2)) == (first, 2)

    run(settings, "outbox.send")
    at: dict[str, tuple[int, int, int]] = {}
    for path in sorted((settings.host_dir / "outbox").glob("inventory_deltas-*")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            before = (row["free_before"], row["reserved_before"], row["registered_before"])
            assert before == at.get(row["article_id"], (0, 0, 0)), (path.name, row)
            at[row["article_id"]] = (row["free"], row["reserved"], row["registered"])
    mirror = query(settings, "SELECT article_id, free, reserved, registered FROM instock_inventory")
    assert {r["article_id"]: (r["free"], r["reserved"], r["registered"]) for r in mirror} == {
        a: at.get(a, (0, 0, 0)) for a in (r["article_id"] for r in mirror)
    }
    assert at[stocked[0]] == (0, 0, 0)
    assert deltas_of(settings, 1) + deltas_of(settings, 2) == 0


def test_a_file_written_before_a_crash_is_recognised_and_released(
    sim: InstockSim, tmp_path: Path
) -> None:
    """A kill -9 after the file was linked into place and before it was marked written: the
    next drain renders the same bytes from the same rows, takes the file as already written
    and releases its rows; no file is written twice or differs."""
    settings = settings_for(sim, tmp_path)
    run(settings, "instock.inventory")
    expected = files_before(settings, 1, "jsonl")
    with Store.open(settings.db_path, migrate=False) as store:
        (intent, *_) = store.pending_intents("host", 10)
        destination = HostOutboxDestination(settings.host_dir)
        destination.send(destination.expand(store, intent))  # written, never marked
    assert len(written(settings)) == 1
    counts = run(settings, "outbox.send").counts
    assert counts["already_done"] == 1
    assert counts["pushed"] == len(expected) - 1
    assert written(settings) == expected
    assert deltas_of(settings, 1) == 0


def test_a_file_whose_rows_are_gone_is_rejected_and_a_dropped_ones_pruned(
    sim: InstockSim, tmp_path: Path
) -> None:
    """A file whose named rows are no longer all there is never written short: it becomes a
    reject saying so (the other files are written). Its remaining rows wait for a retry;
    once the reject is dropped, the next settled scan deletes them."""
    settings = settings_for(sim, tmp_path)
    run(settings, "instock.inventory")
    (first, *rest) = delta_intents(settings)
    part = json.loads(first["payload"])["rows_from"]
    with Store.open(settings.db_path, migrate=False) as store, store.transaction():
        store.db.execute(
            "DELETE FROM instock_inventory_deltas WHERE article_id = ?", [part["through"]]
        )
    counts = run(settings, "outbox.send").counts
    assert counts["rejected"] == 1
    assert counts["pushed"] == len(rest)
    (reject,) = query(settings, "SELECT id, reason FROM rejects WHERE source = 'outbox:host'")
    assert f"hold {CHUNK - 1} rows, not the {CHUNK}" in reject["reason"]
    assert not (
        settings.host_dir / "outbox" / f"inventory_deltas-{first['id']:010d}.jsonl"
    ).exists()
    assert deltas_of(settings, 1) == CHUNK - 1

    run(settings, "instock.inventory")  # the reject may be retried: its rows stay
    assert deltas_of(settings, 1) == CHUNK - 1
    with Store.open(settings.db_path, migrate=False) as store:
        store.drop_reject(reject["id"])
    run(settings, "instock.inventory")
    assert deltas_of(settings, 1) == 0
