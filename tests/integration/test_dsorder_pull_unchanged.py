"""dsorder.pull against the DSOrder simulator: an order listed again exactly as stored is
counted as unchanged, not validated or planned again; a changed one is read again; held
orders still follow the catalog; an order listed invalid and then as before resolves its
reject although it is skipped."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from syncd.config import Settings
from syncd.sandbox.dsorder import DSOrderSim
from syncd.sandbox.instock import InstockSim
from tests.integration import test_dsorder_loop as loop
from tests.integration.jobkit import query

ins = loop.ins
ds = loop.ds
make_cfg = loop.make_cfg


def _snapshot(cfg: Settings) -> tuple[object, ...]:
    """What a pull may write besides its run row, checkpoints and window ledger."""
    return (
        query(cfg, "SELECT * FROM dsorder_orders ORDER BY order_id"),
        query(cfg, "SELECT * FROM dsorder_lines ORDER BY order_id, line_number"),
        query(cfg, "SELECT id, status FROM rejects ORDER BY id"),
        query(cfg, "SELECT id FROM outbox ORDER BY id"),
    )


def test_an_unchanged_pull_plans_and_writes_nothing_but_counts(
    ins: InstockSim, ds: DSOrderSim, make_cfg: Callable[..., Settings]
) -> None:
    """Second pull of the same list: every order unchanged (counted), nothing stored,
    planned or rejected again; a changed order is read again and its new hash kept."""
    articles = loop.stocked(ins)
    cfg = make_cfg(catalog=articles[:-1])
    taken = [ds.submit_order(lines=[(articles[0], 2), (articles[1], 1)]) for _ in range(3)]
    held = ds.submit_order(lines=[(articles[-1], 1)])  # not in the catalog: held
    first = loop.run(cfg, "dsorder.pull")
    assert (
        first.counts.get("stored", 0),
        first.counts.get("unchanged", 0),
        first.counts.get("held", 0),
    ) == (4, 0, 1)
    hashes = {r["order_id"]: r["raw_hash"] for r in query(cfg, "SELECT * FROM dsorder_orders")}
    assert set(hashes) == {*taken, held}
    assert all(hashes.values())

    before = _snapshot(cfg)
    again = loop.run(cfg, "dsorder.pull")
    assert (
        again.counts.get("pulled", 0),
        again.counts.get("stored", 0),
        again.counts.get("unchanged", 0),
    ) == (4, 0, 4)
    assert (
        again.counts.get("queued", 0),
        again.counts.get("rejected", 0),
        again.counts.get("held", 0),
    ) == (0, 0, 0)
    assert _snapshot(cfg) == before

    with ds.state.lock:  # DSOrder lists one order with other content
        ds.state.orders[taken[1]].supplier_schedule_title = "Tuesday run"
    changed = loop.run(cfg, "dsorder.pull")
    assert (changed.counts.get("stored", 0), changed.counts.get("unchanged", 0)) == (1, 3)
    assert changed.counts.get("changed", 0) == 1
    assert (
        changed.counts.get("queued", 0) == 0
    )  # its Instock create was queued once, at first sight
    row = loop.order_row(cfg, taken[1])
    assert row["raw_hash"] != hashes[taken[1]]
    assert row["state"] == "created"
    last = loop.run(cfg, "dsorder.pull")
    assert (last.counts.get("stored", 0), last.counts.get("unchanged", 0)) == (0, 4)


def test_an_order_listed_again_with_other_lines_is_an_alert_not_a_second_order(
    ins: InstockSim, ds: DSOrderSim, make_cfg: Callable[..., Settings]
) -> None:
    """The document never says an order may change once submitted: syncd keeps the order
    as taken (no second Instock order, no changed lines) and opens one alert per changed
    order naming each line change; another schedule title alone opens none."""
    articles = loop.stocked(ins)
    cfg = make_cfg(catalog=articles)
    amended = ds.submit_order(lines=[(articles[0], 2), (articles[1], 1)])
    retitled = ds.submit_order(lines=[(articles[0], 1)])
    loop.run(cfg, "dsorder.pull")
    with ds.state.lock:
        ds.state.orders[amended].lines[1000].quantity = 5
        del ds.state.orders[amended].lines[2000]
        ds.state.orders[retitled].supplier_schedule_title = "Tuesday run"
    result = loop.run(cfg, "dsorder.pull")
    assert (result.counts.get("changed", 0), result.counts.get("lines_changed", 0)) == (2, 1)
    assert result.counts.get("queued", 0) == 0
    alerts = query(cfg, "SELECT kind, subject, message FROM alerts WHERE resolved_at IS NULL")
    changed = [a for a in alerts if a["kind"] == "dsorder_order_changed"]
    assert [a["subject"] for a in changed] == [amended]
    assert "line 1000 quantity 2 -> 5" in changed[0]["message"]
    assert f"line 2000 removed ({articles[1]} x 1)" in changed[0]["message"]
    lines = query(cfg, f"SELECT quantity FROM dsorder_lines WHERE order_id = '{amended}'")
    assert [r["quantity"] for r in lines] == ["2", "1"]  # kept as taken
    again = loop.run(cfg, "dsorder.pull")
    assert again.counts.get("unchanged", 0) == 2  # the new listing is not alerted twice


def test_held_order_follows_the_catalog_while_its_listing_is_unchanged(
    ins: InstockSim, ds: DSOrderSim, make_cfg: Callable[..., Settings]
) -> None:
    """Skipping an unchanged listing does not skip a held order's re-plan: the catalog
    adding its article releases it on the next pull."""
    articles = loop.stocked(ins)
    cfg = make_cfg(catalog=articles[:-1])
    order_id = ds.submit_order(lines=[(articles[0], 2), (articles[-1], 3)])
    loop.run(cfg, "dsorder.pull")
    assert loop.run(cfg, "dsorder.pull").counts["unchanged"] == 1
    assert loop.order_row(cfg, order_id)["state"] == "held"
    loop.load_catalog(cfg, articles)
    result = loop.run(cfg, "dsorder.pull")
    assert (result.counts.get("unchanged", 0), result.counts.get("released", 0)) == (1, 1)
    assert loop.order_row(cfg, order_id)["state"] == "created"


def test_an_order_listed_invalid_then_as_stored_resolves_its_reject(
    ins: InstockSim, ds: DSOrderSim, make_cfg: Callable[..., Settings]
) -> None:
    """A stored order listed once invalid is rejected (its stored hash kept); listed again
    as it was stored it is skipped as unchanged, and its reject is resolved all the same."""
    articles = loop.stocked(ins)
    cfg = make_cfg()
    order_id = ds.submit_order(lines=[(articles[0], 1)])
    loop.run(cfg, "dsorder.pull")
    stored_hash = loop.order_row(cfg, order_id)["raw_hash"]
    with ds.state.lock:
        store_id = ds.state.orders[order_id].store_id
        ds.state.orders[order_id].store_id = ""
    bad = loop.run(cfg, "dsorder.pull")
    assert (
        bad.counts.get("pulled", 0),
        bad.counts.get("invalid", 0),
        bad.counts.get("unchanged", 0),
    ) == (1, 1, 0)
    assert loop.order_row(cfg, order_id)["raw_hash"] == stored_hash
    reject_sql = "SELECT status FROM rejects WHERE source = 'dsorder:orders'"
    assert query(cfg, reject_sql) == [{"status": "open"}]
    with ds.state.lock:
        ds.state.orders[order_id].store_id = store_id
    back = loop.run(cfg, "dsorder.pull")
    assert (back.counts.get("unchanged", 0), back.counts.get("invalid", 0)) == (1, 0)
    assert query(cfg, reject_sql) == [{"status": "resolved"}]


def test_an_order_taken_meanwhile_is_not_taken_again(
    ins: InstockSim,
    ds: DSOrderSim,
    make_cfg: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A backfill of dsorder.pull runs beside the live pull and may take an order after
    the pull read which orders it knows: the pull sees it known in its own transaction
    and neither fails nor queues a second Instock create."""
    from syncd.state.mirror import dsorder as mirror

    articles = loop.stocked(ins)
    cfg = make_cfg(catalog=articles)
    order_id = ds.submit_order(lines=[(articles[0], 2)])
    assert loop.run(cfg, "dsorder.pull").counts.get("queued", 0) == 1
    # As the pull would see it had the backfill taken the order after these reads:
    monkeypatch.setattr(mirror, "known_order_ids", lambda store: set())
    monkeypatch.setattr(mirror, "raw_hashes", lambda store: {})
    again = loop.run(cfg, "dsorder.pull")
    assert again.status == "ok"
    assert again.counts.get("queued", 0) == 0
    creates = query(cfg, "SELECT id FROM outbox WHERE kind = 'orders.create'")
    assert len(creates) == 1
    assert loop.order_row(cfg, order_id)["state"] in {"created", "queued"}
