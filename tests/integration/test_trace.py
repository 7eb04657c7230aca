"""`syncd trace KEY` on a loop run against both simulators: each key type shows its chain."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from click.testing import CliRunner
from freezegun import freeze_time

from syncd.cli import main as cli
from syncd.config import Settings
from syncd.sandbox.dsorder import DSOrderSim
from syncd.sandbox.instock import InstockSim
from tests.integration.jobkit import query
from tests.integration.test_dsorder_loop import (  # noqa: F401 - fixtures
    cycle,
    ds,
    ins,
    make_cfg,
    run,
    stocked,
)


def trace(cfg: Settings, key: str, *extra: str) -> tuple[int, list[dict[str, Any]]]:
    env = {"SYNCD_DAEMON__STATE_DIR": str(cfg.daemon.state_dir)}
    result = CliRunner().invoke(cli, ["trace", key, "--json", *extra], env=env, obj=cfg)
    return result.exit_code, json.loads(result.output) if result.exit_code == 0 else []


def events(rows: list[dict[str, Any]]) -> list[str]:
    return [r["event"] for r in rows]


def test_trace_follows_each_key_type_through_the_loop(
    ins: InstockSim,  # noqa: F811
    ds: DSOrderSim,  # noqa: F811
    make_cfg: Callable[..., Settings],  # noqa: F811
    monkeypatch: Any,
) -> None:
    cfg = make_cfg(policy="hold")
    monkeypatch.setattr("syncd.cli.common.settings_for", lambda *_a, **_k: cfg)
    a, b = stocked(ins)[:2]
    good = ds.submit_order(lines=[(a, 2), (b, 1)])
    bad = ds.submit_order(lines=[(a, 1), (b, 2.5)])
    cycle(cfg)
    ins.advance_order(f"DS-{good}")
    assert ins.advance_order(f"DS-{good}") == "done"
    with freeze_time(datetime.now(UTC) + timedelta(minutes=2), tick=True):
        run(cfg, "instock.moves")  # past the moves pull's lag
    cycle(cfg)
    run(cfg, "instock.orders")  # writes the status changes to the host outbox
    run(cfg, "instock.inventory")
    run(cfg, "outbox.send")

    code, rows = trace(cfg, good)
    assert code == 0
    seen = events(rows)
    chain = ["dsorder.pulled", "intent.sent", "instock.status", "fulfil", "close"]
    assert "move" in seen  # placed when pulled (here: two minutes on, past the lag)
    positions = [seen.index(e) for e in chain]
    assert positions == sorted(positions), seen
    sent = [r for r in rows if r["event"] == "intent.sent" and "orders.create" in r["details"]]
    assert len(sent) == 1
    # The remote request id of the answer that delivered it is kept with the intent.
    request_ids = json.loads(sent[0]["data"]["request_ids"])
    assert request_ids
    assert all(rid in sent[0]["details"] for rid in request_ids)
    assert times_ordered(rows)

    code, held = trace(cfg, bad)
    assert code == 0
    hold = [r for r in held if r["event"] == "hold"]
    assert hold
    assert "fractional quantity 2.5" in hold[0]["details"]
    assert any(r["event"] == "reject" and "line 2000" in r["details"] for r in held)
    assert "intent.sent" not in events(held)

    # What went to the host about it: the order status file (and the moves file).
    files = [r for r in rows if r["event"] == "host.outbox"]
    assert any("order_status row in host outbox file order_status-" in r["details"] for r in files)

    code, inst = trace(cfg, f"DS-{good}")
    assert code == 0
    assert {"move", "instock.status", "dsorder.pulled"} <= set(events(inst))

    code, art = trace(cfg, a)
    assert code == 0
    assert "host.row" in events(art)
    file_name = query(cfg, "SELECT file FROM host_articles WHERE article_id = ?", [a])[0]["file"]
    code, fil = trace(cfg, file_name)
    assert code == 0
    assert events(fil)[0] == "host.file"
    assert any(f"articles {a}" in r["details"] for r in fil)

    move_id = query(cfg, "SELECT id FROM instock_moves WHERE order_id = ?", [f"DS-{good}"])[0]
    code, mv = trace(cfg, str(move_id["id"]), "--type", "move")
    assert code == 0
    assert events(mv)[0] == "move"

    assert trace(cfg, "NOTHING-HERE")[0] == 66


def ledger_ids(cfg: Settings, stream: str) -> dict[str, int]:
    """request id -> the id of the ledger row of `stream` that lists it."""
    rows = query(cfg, "SELECT id, request_ids FROM pull_windows WHERE stream = ?", [stream])
    return {rid: r["id"] for r in rows for rid in json.loads(r["request_ids"])}


def test_every_pulled_record_in_a_trace_names_its_request_id_and_ledger_row(
    ins: InstockSim,  # noqa: F811
    ds: DSOrderSim,  # noqa: F811
    make_cfg: Callable[..., Settings],  # noqa: F811
    monkeypatch: Any,
) -> None:
    """On a loop run: the DSOrder order names the request id of the list answer it came
    in and that pull's ledger row; the Instock order the orders list page (request id,
    ledger row) and its status poll's request id; each ordertask its read; each move its
    page and window; an article's stock the inventory scan (ledger row, hash) that listed
    it. Each request id is one the simulator answered."""
    cfg = make_cfg()
    monkeypatch.setattr("syncd.cli.common.settings_for", lambda *_a, **_k: cfg)
    a, b = stocked(ins)[:2]
    order = ds.submit_order(lines=[(a, 2), (b, 1)])
    cycle(cfg)
    assert ins.advance_order(f"DS-{order}")
    assert ins.advance_order(f"DS-{order}") == "done"
    with freeze_time(datetime.now(UTC) + timedelta(minutes=2), tick=True):
        run(cfg, "instock.moves")
    cycle(cfg)
    run(cfg, "instock.orders")
    run(cfg, "instock.inventory")
    answered = {r.request_id for r in ins.requests} | {r.request_id for r in ds.requests}

    code, rows = trace(cfg, order)
    assert code == 0
    by_event: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_event.setdefault(r["event"], []).append(r)

    [pulled] = by_event["dsorder.pulled"]
    rid = pulled["data"]["request_id"]
    assert rid in answered
    assert pulled["data"]["ledger_row"] == ledger_ids(cfg, "dsorder.submitted")[rid]
    assert f"request id {rid}, ledger row {pulled['data']['ledger_row']}" in pulled["origin"]

    [listed] = by_event["instock.listed"]
    rid = listed["data"]["list_request_id"]
    assert rid in answered
    assert listed["data"]["ledger_row"] == ledger_ids(cfg, "instock.orders")[rid]
    [status] = by_event["instock.status"]
    assert status["data"]["status_request_id"] in answered
    assert status["origin"] == f"status poll, request id {status['data']['status_request_id']}"
    tasks = by_event["instock.ordertask"]
    assert tasks
    assert all(t["data"]["request_id"] in answered for t in tasks)

    moves = by_event["move"]
    assert moves
    windows = ledger_ids(cfg, "instock.moves")
    for move in moves:
        assert move["data"]["request_id"] in answered
        assert move["data"]["ledger_row"] == windows[move["data"]["request_id"]]

    code, art = trace(cfg, a)
    assert code == 0
    [stock] = [r for r in art if r["event"] == "inventory"]
    [scan] = query(cfg, "SELECT * FROM pull_windows WHERE kind = 'scan' ORDER BY id DESC LIMIT 1")
    assert stock["data"]["scan"] == scan["scan"]
    assert stock["data"]["ledger_row"] == scan["id"]
    assert f"hash {scan['content_hash']}" in stock["origin"]
    [host] = [r for r in art if r["event"] == "host.row"]
    assert f"from {host['data']['file']}:{host['data']['line']}" in host["details"]

    # On a terminal each origin is a line of its own under its event, never cut off.
    monkeypatch.setattr("syncd.cli.trace.stdout_is_tty", lambda: True)
    env = {"SYNCD_DAEMON__STATE_DIR": str(cfg.daemon.state_dir)}
    text = CliRunner().invoke(cli, ["trace", order], env=env).output.splitlines()
    at = next(n for n, line in enumerate(text) if "dsorder.pulled" in line)
    assert text[at + 1].split() == ["from", *pulled["origin"].split()]


def times_ordered(rows: list[dict[str, Any]]) -> bool:
    from syncd.state.lineage import instant_key

    stamps = [instant_key(r["at"]) for r in rows]
    return stamps == sorted(stamps)
