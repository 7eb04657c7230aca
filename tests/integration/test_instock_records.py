"""Contract of the Instock jobs with HOSTILE records: real loopback HTTP, real SQLite files.

The simulator is told to answer bad records (`InstockSim.override_record`, `add_raw_move`)
beside good ones. Every test checks the accounting rule (records listed = stored +
rejected), that the good records went through, that each bad one is a reject naming its
key, field and reason, that the checkpoint still moved, and that every host file syncd
wrote is strict JSON.
"""

# The shared Instock job fixtures are imported by name, and pytest passes them back in.
# ruff: noqa: F811

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from syncd.config import Settings
from syncd.jobs.instock_inventory import GUARD_ALERT
from syncd.jobs.instock_inventory import STREAM as INVENTORY_STREAM
from syncd.jobs.instock_moves import STREAM as MOVES_STREAM
from syncd.logs import redactor
from syncd.sandbox.instock import InstockSim
from tests.integration.jobkit import drop, query, run
from tests.integration.test_instock_jobs import (  # noqa: F401 - fixtures used by name
    MOVES_OPTIONS,
    Clock,
    cfg,
    clock,
    db,
    delta_files,
    listed_stock,
    make_cfg,
    mirror,
    open_rejects,
    order_csv,
    send,
    sim,
    stocked_articles,
    timed_sim,
)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"not JSON: {name}")


def strict_rows(settings: Settings, stream: str) -> list[dict[str, Any]]:
    """Every row of every host outbox file of a stream, parsed as strict JSON (no NaN or
    Infinity), with integer quantities kept as ints."""
    rows: list[dict[str, Any]] = []
    for path in sorted((settings.host_dir / "outbox").glob(f"{stream}-*.jsonl")):
        for line in Path(path).read_text().splitlines():
            rows.append(json.loads(line, parse_constant=_refuse_constant))
    return rows


HOSTILE_INVENTORY = {
    # the raw text of a list record -> (field, a word the reason must hold)
    '{"article_id":"%s","qty":{"free":"abc","reserved":0,"registered":0}}': ("qty.free", "abc"),
    '{"article_id":"%s","qty":{"free":1e400,"reserved":0,"registered":0}}': ("qty.free", "inf"),
    '{"article_id":"%s","qty":{"free":99999999999999999999,"reserved":0,"registered":0}}': (
        "qty.free",
        "99999999999999999999",
    ),
    '{"article_id":"%s","qty":{"free":3.7,"reserved":0,"registered":0}}': ("qty.free", "3.7"),
    '{"article_id":"%s","qty":{"free":"12","reserved":0,"registered":0}}': ("qty.free", "12"),
    '{"article_id":"%s","qty":{"free":-5,"reserved":0,"registered":0}}': ("qty.free", "-5"),
    '{"article_id":"%s","qty":{"free":NaN,"reserved":0,"registered":0}}': ("qty.free", "nan"),
    '{"article_id":"%s","qty":{"free":1,"reserved":0}}': ("qty.registered", "required"),
}


def test_bad_inventory_records_are_rejected_and_the_rest_is_stored(
    sim: InstockSim, cfg: Settings
) -> None:
    """Eight kinds of bad quantity ("abc", 1e400, > 2^63, 3.7, "12", -5, NaN, missing) each
    become one reject naming article, field and reason; every other listed article is
    mirrored exactly, nothing is altered, the scan completes and the delta file is strict
    JSON holding only the good articles."""
    listed = listed_stock(sim)
    targets = sorted(listed)[: len(HOSTILE_INVENTORY)]
    for article_id, raw in zip(targets, HOSTILE_INVENTORY, strict=True):
        sim.override_record("inventory", article_id, raw % article_id)

    result = run(cfg, "instock.inventory")

    counts = result.counts
    assert counts["pulled"] == len(listed) == counts["stored"] + counts["rejected"]
    assert counts["rejected"] == len(HOSTILE_INVENTORY)
    good = {a: q for a, q in listed.items() if a not in targets}
    assert mirror(cfg) == good
    rejects = {r["reference"].split()[1]: r for r in open_rejects(cfg, "instock:inventory")}
    assert set(rejects) == set(targets)
    for article_id, (field, word) in zip(targets, HOSTILE_INVENTORY.values(), strict=True):
        reject = rejects[article_id]
        assert reject["field"] == field, reject
        assert word in reject["reason"].lower(), reject
        assert "request " in reject["reference"]
        assert "unknown" not in reject["reference"]
        assert json.loads(reject["payload"], parse_constant=_refuse_constant)["article_id"] == (
            article_id
        )
    with db(cfg) as store:
        assert json.loads(store.get_checkpoint(INVENTORY_STREAM) or "")["scan"] == 2
    send(cfg)
    rows = strict_rows(cfg, "inventory_deltas")
    assert {r["article_id"] for r in rows} == set(good)
    assert all(isinstance(r["free"], int) and r["free"] >= 0 for r in rows)

    again = run(cfg, "instock.inventory")
    assert again.counts["rejected"] == len(HOSTILE_INVENTORY)
    assert len(open_rejects(cfg, "instock:inventory")) == len(HOSTILE_INVENTORY)  # not repeated


def test_a_bad_record_whose_key_echoes_the_token_is_stored_redacted(
    sim: InstockSim, cfg: Settings
) -> None:
    """A reject's reference quotes the record's key, which the remote controls: a key that
    echoes the credential is redacted there too, as in the reason and the raw record, and
    is still a reject of its own (records listed = stored + rejected)."""
    secret = "Tk7qW2zX9pL4mN8v"
    redactor.set_secrets([secret])  # what `syncd run` / `once` do with the configured token
    (article_id,) = sorted(listed_stock(sim))[:1]
    raw = {"article_id": secret, "qty": {"free": "abc", "reserved": 0, "registered": 0}}
    sim.override_record("inventory", article_id, raw)
    result = run(cfg, "instock.inventory")
    assert result.counts["rejected"] == 1
    with db(cfg) as store:
        dump = "\n".join(store.db.conn.iterdump())
    assert secret[:6] not in dump
    assert secret[-6:] not in dump
    (reject,) = open_rejects(cfg, "instock:inventory")
    assert reject["reference"].startswith("article_id ********** (request ")


def test_a_refusal_quoting_the_token_is_stored_redacted(sim: InstockSim, cfg: Settings) -> None:
    """Instock's 400 for an order create that quotes the request's credentials: the order's
    refusal reason (instock_order_sync), the outbox and the reject hold it redacted."""
    redactor.set_secrets([sim.token or ""])
    (a,) = stocked_articles(sim, 1)
    drop(cfg, "orders", order_csv(("HO-ECHO", [(a, 1)])))
    run(cfg, "instock.orders")
    sim.faults.script("POST /v1/{site_id}/orders", ["echo_json"])
    send(cfg)
    (sync,) = query(cfg, "SELECT status, reason FROM instock_order_sync")
    assert sync["status"] == "refused"
    assert "Bearer **********" in sync["reason"]
    with db(cfg) as store:
        dump = "\n".join(store.db.conn.iterdump())
    assert (sim.token or "") not in dump


def test_a_bad_record_keeps_the_mirrored_quantities_of_its_article(
    sim: InstockSim, cfg: Settings
) -> None:
    """An article mirrored before whose record turns bad keeps its quantities: it was listed,
    so it is not zeroed, and no '-> 0' delta is sent for it."""
    run(cfg, "instock.inventory")
    send(cfg)
    article_id = stocked_articles(sim, 1)[0]
    before = mirror(cfg)[article_id]
    sim.override_record(
        "inventory",
        article_id,
        {"article_id": article_id, "qty": {"free": 2.5, "reserved": 0, "registered": 0}},
    )
    result = run(cfg, "instock.inventory")
    assert result.counts["rejected"] == 1
    assert mirror(cfg)[article_id] == before
    send(cfg)
    assert len(delta_files(cfg)) == 1  # the second scan changed nothing

    sim.clear_overrides()  # listed valid again: its reject is resolved
    assert run(cfg, "instock.inventory").counts["rejects_resolved"] == 1
    assert open_rejects(cfg, "instock:inventory") == []


def test_a_record_without_article_id_zeroes_nothing(sim: InstockSim, cfg: Settings) -> None:
    """A record with no article_id could be any article: it is rejected, and that scan does
    not zero articles it did not list (the next clean scan does)."""
    run(cfg, "instock.inventory")
    emptied, hidden = stocked_articles(sim, 2)
    before = mirror(cfg)
    sim.adjust_inventory(emptied, 0)  # really gone: absent from the list
    sim.override_record("inventory", hidden, {"qty": {"free": 1, "reserved": 0, "registered": 0}})
    result = run(cfg, "instock.inventory")
    assert result.counts["rejected"] == 1
    (reject,) = open_rejects(cfg, "instock:inventory")
    assert reject["field"] == "article_id"
    assert reject["reference"].startswith("record without a valid article_id")
    rows = mirror(cfg)
    assert rows[emptied] == before[emptied]
    assert rows[hidden] == before[hidden]
    (warned,) = query(cfg, "SELECT warnings FROM runs WHERE run_id = ?", [result.run_id])
    assert "keep their quantities" in warned["warnings"]

    sim.clear_overrides()
    run(cfg, "instock.inventory")
    assert mirror(cfg)[emptied] == {"free": 0, "reserved": 0, "registered": 0}


def test_an_empty_inventory_answer_is_refused_and_the_mirror_kept(
    sim: InstockSim, make_cfg: Callable[..., Settings]
) -> None:
    """A 200 answer listing nothing (or too little) would zero the mirror: the scan is
    refused with an alert, no delta is queued, the mirror is kept; the next good answer
    clears the alert, and `allow_mass_delete` lets an operator accept a real emptying."""
    cfg = make_cfg(sim)
    run(cfg, "instock.inventory")
    send(cfg)
    before = mirror(cfg)
    with sim.state.lock:
        saved = dict(sim.state.inventory[sim.site_id])
        sim.state.inventory[sim.site_id].clear()
    refused = run(cfg, "instock.inventory", expect="failed")
    assert "max_delete_fraction" in (refused.error or "")
    assert mirror(cfg) == before
    (alert,) = query(
        cfg, "SELECT * FROM alerts WHERE resolved_at IS NULL AND kind = ?", [GUARD_ALERT]
    )
    assert "would zero" in alert["message"]
    assert query(cfg, "SELECT count(*) AS n FROM outbox WHERE status = 'pending'") == [{"n": 0}]

    with sim.state.lock:
        sim.state.inventory[sim.site_id].update(saved)
    run(cfg, "instock.inventory")
    assert mirror(cfg) == before
    assert not query(
        cfg, "SELECT * FROM alerts WHERE resolved_at IS NULL AND kind = ?", [GUARD_ALERT]
    )
    send(cfg)
    assert len(delta_files(cfg)) == 1

    with sim.state.lock:
        sim.state.inventory[sim.site_id].clear()
    allowed = make_cfg(sim, name="a", instock_inventory={"allow_mass_delete": True})
    run(allowed, "instock.inventory")
    assert all(q == {"free": 0, "reserved": 0, "registered": 0} for q in mirror(allowed).values())


# --- moves ---------------------------------------------------------------------------------


def test_bad_moves_are_rejected_and_the_watermark_still_moves(
    timed_sim: InstockSim, clock: Clock, make_cfg: Callable[..., Settings]
) -> None:
    """Moves with qty Infinity, "abc", 2.5, a number over 2^63, no article_id or a naive
    timestamp are rejects; the good moves of the same pages are journalled, the watermark
    passes them all, and the host moves files are strict JSON with integer quantities."""
    cfg = make_cfg(timed_sim, instock_moves=MOVES_OPTIONS)
    run(cfg, "instock.moves")
    send(cfg)
    clock.advance(60)
    ts = clock.t
    stamp = "2000-01-01T00:00:00Z"  # any text: the listed record is what is checked
    hostile = [
        '{"article_id":"A1","qty":Infinity,"move_timestamp":"STAMP","order_id":"o"}',
        '{"article_id":"A2","qty":"abc","move_timestamp":"STAMP","order_id":"o"}',
        '{"article_id":"A3","qty":2.5,"move_timestamp":"STAMP","order_id":"o"}',
        '{"article_id":"A4","qty":99999999999999999999,"move_timestamp":"STAMP"}',
        '{"qty":4,"move_timestamp":"STAMP","order_id":"o"}',
        '{"article_id":"A6","qty":4,"move_timestamp":"2024-01-01T10:00:00"}',
    ]
    for raw in hostile:
        timed_sim.add_raw_move(raw.replace("STAMP", stamp), ts)
    good_article = stocked_articles(timed_sim, 1)[0]
    timed_sim.adjust_inventory(good_article, 2)
    clock.advance(120)

    result = run(cfg, "instock.moves")

    assert result.counts["rejected"] == len(hostile)
    assert result.counts["journalled"] == 1
    rejects = open_rejects(cfg, "instock:moves")
    assert sorted(r["field"] for r in rejects) == sorted(
        ["qty", "qty", "qty", "qty", "article_id", "move_timestamp"]
    )
    with db(cfg) as store:
        mark = store.get_checkpoint(MOVES_STREAM) or ""
    assert datetime.fromisoformat(mark) == clock.now() - timedelta(seconds=60)  # now - lag
    send(cfg)
    rows = strict_rows(cfg, "moves")
    assert rows[-1]["article_id"] == good_article
    assert all(isinstance(r["qty"], int) and r["article_id"] for r in rows)
    stored = query(cfg, "SELECT count(*) AS n FROM instock_moves WHERE typeof(qty) != 'integer'")
    assert stored == [{"n": 0}]


# --- orders and ordertasks -----------------------------------------------------------------


def test_bad_order_status_and_ordertask_records_are_rejected_one_by_one(
    sim: InstockSim, cfg: Settings
) -> None:
    """A listed order with a bad line, an order status with a fractional quantity and an
    ordertask with a negative to_cells qty each become one reject (orders / ordertasks,
    keyed by their id); every other order is mirrored and followed, and the run succeeds."""
    a, b = stocked_articles(sim, 2)
    drop(cfg, "orders", order_csv(*((f"HO-{n}", [(a, 1), (b, 2)]) for n in (1, 2, 3))))
    sim.override_record(
        "order",
        "RCV000001",
        {
            "order_id": "RCV000001",
            "kind": "reception",
            "lines": [{"line_id": "l", "article_id": a, "qty": "abc"}],
        },
    )
    first = run(cfg, "instock.orders")
    assert first.counts["rejected"] == 1
    assert first.counts["pulled"] == first.counts["stored"] + 1
    send(cfg)
    for order_id in ("HO-1", "HO-2", "HO-3"):
        sim.advance_order(order_id)
        sim.advance_order(order_id)
    sim.override_record(
        "order_status",
        "HO-2",
        {
            "order_id": "HO-2",
            "order_status": "done",
            "ordertask_ids": [""],
            "lines": [{"line_id": "HO-2-1", "article_id": a, "qty": {"requested": 1.5}}],
        },
    )
    with sim.state.lock:
        task_id = sim.state.orders["HO-3"].ordertask_ids[0]
        task = copy.deepcopy(sim.state.ordertasks[task_id].as_json(sim.state.org_id))
    task["lines"][0]["to_cells"][0]["qty"] = -1
    sim.override_record("ordertask", task_id, task)

    with capture_logs() as logs:
        second = run(cfg, "instock.orders")
    refused = {e["order_id"]: e for e in logs if e["event"] == "order_record_rejected"}
    assert sorted(refused) == ["HO-2", "HO-3"]  # said so, not "order_vanished"
    assert (refused["HO-3"]["source"], refused["HO-3"]["key"]) == ("instock:ordertasks", task_id)
    assert not [e for e in logs if e["event"] == "order_vanished"]

    by_source = {
        r["source"]: r for r in open_rejects(cfg, "instock:") if r["source"] != "instock:inventory"
    }
    orders = open_rejects(cfg, "instock:orders")
    assert sorted(r["reference"].split()[1] for r in orders) == ["HO-2", "RCV000001"]
    assert {r["field"] for r in orders} == {"lines.0.qty", "lines.0.qty.requested"}
    task_reject = by_source["instock:ordertasks"]
    assert task_reject["reference"].startswith(f"ordertask_id {task_id} (request ")
    assert task_reject["field"] == "lines.0.to_cells.0.qty"
    statuses = {
        r["order_id"]: r["order_status"]
        for r in query(cfg, "SELECT order_id, order_status FROM instock_orders")
    }
    assert statuses["HO-1"] == "done"
    assert statuses["H0000001"] == "done"
    assert statuses["HO-2"] is None
    assert statuses["HO-3"] is None
    assert "RCV000001" not in statuses
    assert second.counts["followed"] == 1  # HO-1 (H0000001 was done at the first run)

    sim.clear_overrides()
    run(cfg, "instock.orders")
    statuses = {
        r["order_id"]: r["order_status"]
        for r in query(cfg, "SELECT order_id, order_status FROM instock_orders")
    }
    assert statuses["HO-2"] == statuses["HO-3"] == "done"
    assert "RCV000001" in statuses
    assert open_rejects(cfg, "instock:") == []  # each read valid: its reject resolved


def test_a_non_finite_attribute_never_reaches_a_host_file_as_nan(
    sim: InstockSim, cfg: Settings
) -> None:
    """An order attribute Instock answers as NaN is kept as the text "nan": the order is
    mirrored and reported, and the host order_status file stays strict JSON."""
    with sim.state.lock:
        order = sim.state.orders["RCV000001"].as_json(sim.state.org_id)
    text = json.dumps({**order, "attributes": {"asn": "A-1", "weight": float("nan")}})
    sim.override_record("order", "RCV000001", text)
    run(cfg, "instock.orders")
    send(cfg)
    rows = [r for r in strict_rows(cfg, "order_status") if r["order_id"] == "RCV000001"]
    assert rows
    assert all(r["attributes"] == {"asn": "A-1", "weight": "nan"} for r in rows)
