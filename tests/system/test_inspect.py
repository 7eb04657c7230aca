"""`syncd inspect` as a real process: Datasette on loopback over a demo-like state DB,
with syncd's descriptions; every canned query runs and returns rows; the file is
opened read-only."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from syncd.clock import iso, iso_in
from syncd.state import NewIntent, NewReject, Store
from syncd.state.datasette import QUERIES
from tests.system.conftest import clean_env, wait_until

pytestmark = pytest.mark.system


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def demo_like_state(path: Path) -> None:
    """What a demo minute leaves: runs, a checkpoint of each kind, a pending and a refused
    intent, an open reject, an alert, and DSOrder orders at several steps of the loop."""
    with Store.open(path) as store:
        for job, status in (("dsorder.pull", "ok"), ("instock.orders", "failed")):
            store.start_run(job, f"{job}-1", "schedule")
            store.finish_run(f"{job}-1", status, {"pulled": 3}, error=None)  # type: ignore[arg-type]
        store.set_checkpoint("instock.moves.watermark", iso_in(-600), run_id="dsorder.pull-1")
        store.set_checkpoint("instock.inventory.scan", "cursor-abc")
        store.add_intents(
            [
                NewIntent("instock", "orders.create", "order:IS-2", "order:IS-2:create", {}),
                NewIntent("dsorder", "close", "order:D-3", "close:D-3", {"order_id": "D-3"}),
            ]
        )
        store.add_rejects(
            [NewReject("host:articles", "articles-1.csv:7", "not a number", field="qty")]
        )
        store.open_alert("outbox_gave_up", "dsorder refused close of D-9", subject="dsorder")
        now = iso()
        for order_id, state, instock_status in (
            ("D-1", "held", None),
            ("D-2", "created", "registered"),
            ("D-3", "closing", "done"),
        ):
            store.db.execute(
                "INSERT INTO dsorder_orders (order_id, supplier_id, store_id, order_date, "
                "delivery_date, raw, instock_order_id, state, hold_reason, pulled_at, "
                "updated_at) VALUES (?, 'S1', 'store-7', ?, ?, '{}', ?, ?, ?, ?, ?)",
                [
                    order_id,
                    now,
                    now,
                    f"IS-{order_id[2:]}",
                    state,
                    "fractional quantity" if state == "held" else None,
                    now,
                    now,
                ],
            )
            store.db.execute(
                "INSERT INTO dsorder_lines (order_id, line_number, article_id, quantity, "
                "status, reported_qty) VALUES (?, 1, 'A-1', '2', 'ok', ?)",
                [order_id, "2" if state == "closing" else None],
            )
            if instock_status:
                store.db.execute(
                    "INSERT INTO instock_order_sync (order_id, source, action, status, "
                    "updated_at) VALUES (?, 'dsorder', 'create', 'accepted', ?)",
                    [f"IS-{order_id[2:]}", now],
                )
                store.db.execute(
                    "INSERT INTO instock_orders (order_id, kind, order_status, status_at, "
                    "updated_at) VALUES (?, 'customer', ?, ?, ?)",
                    [f"IS-{order_id[2:]}", instock_status, now, now],
                )


def test_inspect_serves_every_canned_query_with_rows(tmp_path: Path) -> None:
    """Every canned query answers 200 with rows; tables carry their descriptions; the
    state DB's bytes are as they were."""
    state = tmp_path / "state"
    state.mkdir()
    demo_like_state(state / "syncd.db")
    before = hashlib.sha256((state / "syncd.db").read_bytes()).hexdigest()
    config = tmp_path / "syncd.toml"
    config.write_text(f"[daemon]\nstate_dir = {json.dumps(str(state))}\n", encoding="utf-8")
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "syncd.cli",
            "inspect",
            "--port",
            str(port),
            "--config",
            str(config),
        ],
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"syncd inspect exited {proc.returncode}: {proc.stderr.read()}")
            try:
                return httpx.get(f"{base}/-/versions.json", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(up, 20, "Datasette to answer")
        for name in QUERIES:
            answer = httpx.get(f"{base}/syncd/{name}.json?_shape=array", timeout=10)
            assert answer.status_code == 200, (name, answer.text[:500])
            rows = answer.json()
            assert rows, f"canned query {name} returned no rows"
        loop = httpx.get(f"{base}/syncd/dsorder_orders_today.json?_shape=array").json()
        assert [(r["order_id"], r["step"]) for r in loop] == [
            ("D-1", "1 held: waiting for syncd orders release"),
            ("D-2", "4 in Instock: registered"),
            ("D-3", "5 final totals and close queued for DSOrder"),
        ]
        assert loop[2]["pending_intents"] == 1
        page = httpx.get(f"{base}/syncd/runs", timeout=10).text
        assert "crashed (an unexpected exception" in page
        refused = httpx.get(
            f"{base}/syncd.json",
            params={"sql": "DELETE FROM alerts", "_shape": "array"},
            timeout=10,
        )
        assert refused.status_code == 400
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    after = hashlib.sha256((state / "syncd.db").read_bytes()).hexdigest()
    assert after == before
    with Store.open(state / "syncd.db", migrate=False) as store:
        assert store.scalar("SELECT count(*) FROM alerts") == 1


def test_inspect_refuses_a_non_loopback_host(tmp_path: Path) -> None:
    """Binding anything but loopback is a usage error (64), naming --host."""
    result = subprocess.run(
        [sys.executable, "-m", "syncd.cli", "inspect", "--host", "0.0.0.0"],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 64, result.stderr
    assert "--host '0.0.0.0'" in result.stderr
