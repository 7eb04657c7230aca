"""Contract of the DSOrder <-> Instock order loop: in-process jobs, both simulators over
loopback HTTP, a real SQLite state file.

Each test drives the jobs the way the daemon does (`run_job` on the registered specs
`dsorder.pull`, `dsorder.progress` and `outbox.send`) and plays the warehouse floor on the
Instock simulator (`advance_order`, `cancel_order`). What is asserted is what the simulators
end up holding (orders created, lines fulfilled, closes, request logs) and what the state DB
says (orders, rejects, runs, alerts). The host catalog comes from `articles-*.csv` files
loaded by `host.inbox` (or rows written into `host_articles` directly).
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest.mock import ANY
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from freezegun import freeze_time
from structlog.testing import capture_logs

import syncd.jobs  # noqa: F401 - fills the job registry
from syncd.cli import main as cli
from syncd.clock import iso, parse_iso
from syncd.config import JobConfig, Settings
from syncd.jobs import REGISTRY
from syncd.jobs.dsorder_progress import MOVES_READ
from syncd.jobs.runner import RunResult, run_job
from syncd.sandbox.base import ManualClock
from syncd.sandbox.dsorder import DSOrderSim, finished_warning
from syncd.sandbox.instock import InstockSim
from syncd.state import Store
from syncd.state.mirror.instock import followed_states
from syncd.status import status_line, status_report
from tests.configs import FAST_BACKOFF, connector_for, fast_retry, sim_settings
from tests.integration.jobkit import query
from tests.simkit import count_creates

ZONE = "Europe/Amsterdam"
DS_SEED = 11
INSTOCK_SEED = 21
CREATE_ROUTE = "POST /v1/{site_id}/orders"
FULFILL_ROUTE = "POST /orders/{order_id}/fulfill"
CLOSE_ROUTE = "POST /orders/{order_id}/close"
SUBMITTED_ROUTE = "GET /orders/submitted"
LOOP_JOBS = ("dsorder.pull", "outbox.send", "dsorder.progress", "outbox.send")
STATUS_ROUTE = "GET /v1/{site_id}/orders/{order_id}/status"
MOVES_ROUTE = "GET /v1/{site_id}/moves"
ORDERTASK_ROUTE = "GET /v1/{site_id}/ordertasks/{ordertask_id}"
SWEEP_INTERVAL = 600  # dsorder.progress's default sweep_interval


# --- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture
def ins() -> Iterator[InstockSim]:
    # retry_after=0: an injected 429 asks for no wait; slow answers outlast the read timeout.
    with InstockSim(seed=INSTOCK_SEED, articles=30, retry_after=0, slow_seconds=0.4) as sim:
        sim.creates = count_creates(sim.state)  # type: ignore[attr-defined]
        yield sim


@pytest.fixture
def ds() -> Iterator[DSOrderSim]:
    # The stores' clock stands still at "now": the simulator's "today" never turns mid-test.
    clock = ManualClock()
    with DSOrderSim(seed=DS_SEED, clock=clock, tz=ZONE, retry_after=0, slow_seconds=0.4) as sim:
        yield sim


def stocked(ins: InstockSim, minimum: int = 30) -> list[str]:
    """Instock articles with at least `minimum` free, in id order."""
    return sorted(a for a in ins.state.articles if ins.stock(a).free >= minimum)


def catalog_csv(articles: list[str], fractional: tuple[str, ...] = ()) -> str:
    rows = [f"{a},Article {a},{'false' if a in fractional else 'true'}" for a in articles]
    return "\n".join(["article_id,name,whole_units", *rows]) + "\n"


_dropped = Counter[str]()


def load_catalog(settings: Settings, articles: list[str]) -> None:
    """The host drops a catalog snapshot; `host.inbox` loads it at once."""
    _dropped["articles"] += 1
    name = f"articles-{_dropped['articles']:04d}-{time.monotonic_ns()}.csv"
    (settings.host_dir / "inbox" / name).write_text(catalog_csv(articles))
    result = run(settings, "host.inbox")
    assert result.counts.get("files_archived") == 1, result.counts


@pytest.fixture
def make_cfg(tmp_path: Path, ins: InstockSim, ds: DSOrderSim) -> Callable[..., Settings]:
    """Settings for both simulators and a fresh state DB with a host catalog loaded."""

    def make(
        policy: str = "hold",
        catalog: list[str] | None = None,
        read_timeout: float = 5.0,
        **pull_options: Any,
    ) -> Settings:
        bounds = {"retry": fast_retry(4), "timeouts": {"connect": 2, "read": read_timeout}}
        settings = sim_settings(
            tmp_path,
            {**connector_for(ins, **bounds), **connector_for(ds, **bounds)},
            daemon={"site_timezone": ZONE},
            outbox={**FAST_BACKOFF, "max_attempts": 100},
            jobs={"dsorder.pull": {"options": {"policy": policy, **pull_options}}},
        )
        load_catalog(settings, stocked(ins) if catalog is None else catalog)
        return settings

    return make


def run(settings: Settings, job: str, *, expect: str | None = "ok") -> RunResult:
    result = run_job(REGISTRY[job], settings, trigger="test")
    if expect is not None:
        assert result.status == expect, result.error
    return result


def cycle(settings: Settings, rounds: int = 1, expect: str | None = "ok") -> None:
    """What the daemon does on its schedule: pull, send, follow progress, send."""
    for _ in range(rounds):
        for job in LOOP_JOBS:
            run(settings, job, expect=expect)


def order_row(settings: Settings, order_id: str) -> dict[str, Any]:
    rows = query(settings, "SELECT * FROM dsorder_orders WHERE order_id = ?", [order_id])
    assert rows, f"order {order_id} was never pulled"
    return rows[0]


def open_rejects(settings: Settings) -> list[dict[str, Any]]:
    return query(
        settings,
        "SELECT * FROM rejects WHERE source = 'dsorder:lines' AND status IN ('open', 'retry') "
        "ORDER BY reference",
    )


def picked(ins: InstockSim, order_id: str) -> dict[int, int]:
    """What Instock picked for a DSOrder order, mapped back to DSOrder line numbers."""
    instock_id = f"DS-{order_id}"
    prefix = f"{instock_id}-"
    return {
        int(line_id.removeprefix(prefix)): qty for line_id, qty in ins.fulfilled(instock_id).items()
    }


def reported(ds: DSOrderSim, order_id: str) -> dict[int, tuple[float, bool]]:
    """DSOrder's view of an order: (fulfilled total, finished) per line number."""
    with ds.state.lock:
        order = ds.state.orders[order_id]
        return {n: (line.fulfilled, line.finished) for n, line in order.lines.items()}


def instock_lines(ins: InstockSim, order_id: str) -> dict[str, tuple[str, int]]:
    with ins.state.lock:
        order = ins.state.orders[f"DS-{order_id}"]
        return {ln.line_id: (ln.article_id, ln.qty) for ln in order.lines}


def advance_all(ins: InstockSim) -> int:
    """The floor: one step for every open DS order; returns how many moved."""
    moved = 0
    with ins.state.lock:
        open_ids = [
            o.order_id
            for o in ins.state.orders.values()
            if o.order_id.startswith("DS-") and o.status in ("registered", "reserved")
        ]
    for order_id in open_ids:
        ins.advance_order(order_id)
        moved += 1
    return moved


# --- the happy path ------------------------------------------------------------------------


def test_order_is_created_once_advanced_fulfilled_with_picked_totals_and_closed_once(
    ins: InstockSim, ds: DSOrderSim, make_cfg: Callable[..., Settings]
) -> None:
    """A DSOrder order becomes one Instock order; once done, its picked totals are reported
    per DSOrder line, finished, and the order is closed exactly once."""
    cfg = make_cfg()
    a, b, c = stocked(ins)[:3]
    order_id = ds.submit_order(lines=[(a, 3), (b, 5), (c, 1)])

    cycle(cfg)
    assert ins.creates[f"DS-{order_id}"] == 1  # type: ignore[attr-defined]
    assert instock_lines(ins, order_id) == {
        f"DS-{order_id}-1000": (a, 3),
        f"DS-{order_id}-2000": (b, 5),
        f"DS-{order_id}-3000": (c, 1),
    }
    assert order_row(cfg, order_id)["state"] == "created"
    assert ds.count(FULFILL_ROUTE) == 0  # nothing picked yet: nothing to report

    ins.advance_order(f"DS-{order_id}")  # reserved: still nothing picked
    cycle(cfg)
    assert ds.count(FULFILL_ROUTE) == 0
    assert ds.closes(order_id) == 0

    assert ins.advance_order(f"DS-{order_id}") == "done"
    cycle(cfg)
    totals = picked(ins, order_id)
    assert totals == {1000: 3, 2000: 5, 3000: 1}
    assert reported(ds, order_id) == {n: (q, True) for n, q in totals.items()}
    assert ds.closes(order_id) == 1
    assert order_row(cfg, order_id)["state"] == "closed"

    # Diff, don't resend: more cycles make no create, fulfil or close requests.
    requests = (ins.count(CREATE_ROUTE), ds.count(FULFILL_ROUTE), ds.count(CLOSE_ROUTE))
    cycle(cfg, rounds=2)
    assert (ins.count(CREATE_ROUTE), ds.count(FULFILL_ROUTE), ds.count(CLOSE_ROUTE)) == requests
    assert requests == (1, 1, 1)
    assert ds.order(order_id).close_attempts == 1


def sweep_due(cfg: Settings, rounds: int = 1, intervals: int = 1) -> None:
    """Cycles run as if `intervals` sweep intervals had passed since the last poll."""
    later = datetime.now(UTC) + intervals * timedelta(seconds=SWEEP_INTERVAL + 1)
    with freeze_time(later, tick=True):
        cycle(cfg, rounds)


def status_polls(ins: InstockSim, since: int = 0) -> list[str]:
    """The Instock orders whose status was read (request log entries from `since` on)."""
    return [r.path.split("/")[4] for r in ins.requests[since:] if r.route == STATUS_ROUTE]


@pytest.mark.parametrize("when", ["short_stock", "floor_cancel"])
def test_canceled_instock_order_closes_with_what_was_picked(
    when: str, ins: InstockSim, ds: DSOrderSim, make_cfg: Callable[..., Settings]
) -> None:
    """A canceled Instock order (short stock, or canceled by the floor while reserved) is
    reported with what was picked, here 0 on every line, finished, and closed once. A
    cancellation writes no move, so the slow sweep finds it: not before the order has gone
    `sweep_interval` unpolled, then at once."""
    cfg = make_cfg()
    a, b = stocked(ins)[:2]
    qty_a = ins.stock(a).free + 1 if when == "short_stock" else 2
    order_id = ds.submit_order(lines=[(a, qty_a), (b, 4)])
    cycle(cfg)
    if when == "short_stock":
        assert ins.advance_order(f"DS-{order_id}") == "canceled"
    else:
        assert ins.advance_order(f"DS-{order_id}") == "reserved"
        ins.cancel_order(f"DS-{order_id}")
    assert ins.moves_for_order(f"DS-{order_id}") == []
    before = len(ins.requests)
    cycle(cfg)
    assert status_polls(ins, before) == []  # no move, not swept yet: not polled
    assert ds.closes(order_id) == 0
    sweep_due(cfg)
    assert status_polls(ins, before) == [f"DS-{order_id}"]
    assert picked(ins, order_id) == {1000: 0, 2000: 0}
    assert reported(ds, order_id) == {1000: (0, True), 2000: (0, True)}
    assert ds.closes(order_id) == 1
    assert order_row(cfg, order_id)["state"] == "closed"
    assert ins.creates[f"DS-{order_id}"] == 1  # type: ignore[attr-defined]


def test_progress_polls_only_the_orders_that_moved_and_sweeps_the_rest_slowly(
    ins: InstockSim, ds: DSOrderSim, make_cfg: Callable[..., Settings]
) -> None:
    """With five orders open, a run reads the moves once and polls only the order whose
    picks moved (it closes); orders that only changed status without a move (reserved) are
    left to the sweep, which takes at most `sweep_limit` per run, longest unpolled first."""
    cfg = make_cfg()
    cfg.jobs["dsorder.progress"] = JobConfig(options={"sweep_limit": 2})
    a = stocked(ins)[0]
    ids = [ds.submit_order(lines=[(a, 1)]) for _ in range(5)]
    cycle(cfg)  # created; the first run polls every open order once (nothing read before)
    for order_id in ids:
        assert ins.advance_order(f"DS-{order_id}") == "reserved"  # no move
    assert ins.advance_order(f"DS-{ids[2]}") == "done"  # picks: moves carrying its id
    before, moves_before = len(ins.requests), ins.count(MOVES_ROUTE)
    cycle(cfg)
    assert status_polls(ins, before) == [f"DS-{ids[2]}"]
    assert ins.count(MOVES_ROUTE) == moves_before + 1
    assert ds.closes(ids[2]) == 1
    assert reported(ds, ids[2]) == {1000: (1, True)}
    before = len(ins.requests)
    cycle(cfg, rounds=2)  # nothing moved: nothing polled
    assert status_polls(ins, before) == []

    before = len(ins.requests)
    sweep_due(cfg)
    swept = status_polls(ins, before)
    assert len(swept) == 2
    assert set(swept) <= {f"DS-{o}" for o in ids if o != ids[2]}
    sweep_due(cfg, intervals=2)
    assert len(set(status_polls(ins, before))) == 4  # the other two next: every order in turn
    assert all(ds.closes(o) == 0 for o in ids if o != ids[2])


def test_the_sweep_is_paced_over_its_interval_not_sent_in_a_wave(
    ins: InstockSim, ds: DSOrderSim, make_cfg: Callable[..., Settings]
) -> None:
    """Six orders polled together fall due together; runs 10 s apart then sweep each the
    open orders' share of those 10 s (one here), not `sweep_limit` at once, and the ones
    left wait for the next runs."""
    cfg = make_cfg()
    cfg.jobs["dsorder.progress"] = JobConfig(options={"sweep_limit": 10})
    a = stocked(ins)[0]
    ids = [ds.submit_order(lines=[(a, 1)]) for _ in range(6)]
    cycle(cfg)  # created and polled once, together
    start = datetime.now(UTC)
    with freeze_time(start + timedelta(seconds=SWEEP_INTERVAL - 9)):
        cycle(cfg)  # nothing due yet
    before = len(ins.requests)
    with freeze_time(start + timedelta(seconds=SWEEP_INTERVAL + 1)):
        cycle(cfg)  # all six due, 10 s since the last run: ceil(6 * 10 / 600) = 1
    assert len(status_polls(ins, before)) == 1
    with freeze_time(start + timedelta(seconds=SWEEP_INTERVAL + 11)):
        cycle(cfg)
    assert len(status_polls(ins, before)) == 2
    swept = set(status_polls(ins, before))
    with freeze_time(start + timedelta(seconds=2 * SWEEP_INTERVAL + 1)):
        cycle(cfg)  # a whole interval since the last run: the bound, so the rest at once
    assert set(status_polls(ins, before)) == {f"DS-{o}" for o in ids}
    assert len(status_polls(ins, before)) == 6  # each once
    assert len(swept) == 2


def test_the_sweep_reads_only_the_status_of_an_order_unchanged_since_its_last_poll(
    ins: InstockSim, ds: DSOrderSim, make_cfg: Callable[..., Settings]
) -> None:
    """A swept order costs one status read while it is open: as last polled, or changed
    without a move (reserved: ordertasks, nothing picked), its ordertasks are not read;
    one found canceled gets the whole poll, its status not read twice, and closes once."""
    cfg = make_cfg()
    a = stocked(ins)[0]
    ids = [ds.submit_order(lines=[(a, 1)]) for _ in range(3)]
    cycle(cfg)  # created and polled: registered, no ordertasks
    for order_id in ids:
        assert ins.advance_order(f"DS-{order_id}") == "reserved"  # ordertasks, no move
    before = len(ins.requests)
    sweep_due(cfg)  # status changed: recorded from the status read, ordertasks not read
    assert sorted(status_polls(ins, before)) == sorted(f"DS-{o}" for o in ids)
    assert sum(r.route == ORDERTASK_ROUTE for r in ins.requests[before:]) == 0
    with Store.open(cfg.db_path, migrate=False) as store:
        assert {
            o: states[0] for o, states in followed_states(store, [f"DS-{o}" for o in ids]).items()
        } == {f"DS-{o}": "reserved" for o in ids}
    before = len(ins.requests)
    sweep_due(cfg, intervals=2)  # nothing changed: one status read each, nothing else
    assert sorted(status_polls(ins, before)) == sorted(f"DS-{o}" for o in ids)
    assert sum(r.route == ORDERTASK_ROUTE for r in ins.requests[before:]) == 0
    ins.cancel_order(f"DS-{ids[0]}")
    before = len(ins.requests)
    sweep_due(cfg, intervals=3)
    assert sorted(status_polls(ins, before)) == sorted(f"DS-{o}" for o in ids)  # once each
    tasks_read = sum(r.route == ORDERTASK_ROUTE for r in ins.requests[before:])
    assert tasks_read == 1  # the canceled order's, for its final totals
    assert ds.closes(ids[0]) == 1
    assert reported(ds, ids[0]) == {1000: (0, True)}
    assert all(ds.closes(o) == 0 for o in ids[1:])


def test_an_order_first_seen_by_the_sweep_is_read_whole_once_it_moves(
    ins: InstockSim, ds: DSOrderSim, make_cfg: Callable[..., Settings]
) -> None:
    """An order created after the first pass and reserved without a move is first polled
    by the sweep: one status read, its ordertasks left unread; once picked, its moves make
    it polled whole, and it closes once with the picked totals."""
    cfg = make_cfg()
    a, b = stocked(ins)[:2]
    cycle(cfg)  # the first pass: nothing open yet
    order_id = ds.submit_order(lines=[(a, 3), (b, 2)])
    cycle(cfg)  # created in Instock; not moved, not swept: not polled
    assert ins.creates[f"DS-{order_id}"] == 1  # type: ignore[attr-defined]
    assert ins.advance_order(f"DS-{order_id}") == "reserved"  # ordertasks, no move
    before = len(ins.requests)
    sweep_due(cfg)
    assert status_polls(ins, before) == [f"DS-{order_id}"]
    assert sum(r.route == ORDERTASK_ROUTE for r in ins.requests[before:]) == 0
    assert ds.count(FULFILL_ROUTE) == 0
    assert ds.closes(order_id) == 0
    assert ins.advance_order(f"DS-{order_id}") == "done"  # picked: the moves
    before = len(ins.requests)
    cycle(cfg)
    assert status_polls(ins, before) == [f"DS-{order_id}"]
    assert sum(r.route == ORDERTASK_ROUTE for r in ins.requests[before:]) >= 1
    assert reported(ds, order_id) == {1000: (3, True), 2000: (2, True)}
    assert ds.closes(order_id) == 1
    assert order_row(cfg, order_id)["state"] == "closed"


def test_picks_moved_before_done_are_reported_and_the_sweep_closes_the_order(
    ins: InstockSim, ds: DSOrderSim, make_cfg: Callable[..., Settings]
) -> None:
    """Under the other reading of the moves (`pick_moves="before_done"`: the picks move
    while the order is still reserved, and it turns done later with no move), the picked
    totals are reported when the moves are read, and the slow sweep sees the order done and
    closes it once, finished, with the same totals."""
    ins.pick_moves = "before_done"
    cfg = make_cfg()
    a, b = stocked(ins)[:2]
    order_id = ds.submit_order(lines=[(a, 3), (b, 2)])
    cycle(cfg)
    assert ins.advance_order(f"DS-{order_id}") == "reserved"
    assert ins.advance_order(f"DS-{order_id}") == "reserved"  # picked: the moves
    assert ins.moves_for_order(f"DS-{order_id}")
    cycle(cfg)
    assert reported(ds, order_id) == {1000: (3, False), 2000: (2, False)}
    assert ds.closes(order_id) == 0
    assert ins.advance_order(f"DS-{order_id}") == "done"  # no move
    cycle(cfg)
    assert ds.closes(order_id) == 0
    sweep_due(cfg)
    assert reported(ds, order_id) == {1000: (3, True), 2000: (2, True)}
    assert ds.closes(order_id) == 1
    assert order_row(cfg, order_id)["state"] == "closed"


def test_a_moves_read_cut_at_its_page_ceiling_still_polls_what_it_read(
    tmp_path: Path, ins: InstockSim, ds: DSOrderSim
) -> None:
    """A burst of moves past the walk's page ceiling: the read stops there, the orders
    whose moves it read (the newest) are polled and closed in the same run, the run is
    ok with the cut counted and the pagination alert open, and the checkpoint stays
    where it was, so the next read covers the whole window again."""
    bounds = {"retry": fast_retry(4), "max_pages": 2}  # at most 2 pages of 1,000 moves
    cfg = sim_settings(
        tmp_path,
        {**connector_for(ins, **bounds), **connector_for(ds, retry=fast_retry(4))},
        daemon={"site_timezone": ZONE},
        outbox={**FAST_BACKOFF, "max_attempts": 100},
    )
    a = stocked(ins)[0]
    load_catalog(cfg, stocked(ins))
    order_id = ds.submit_order(lines=[(a, 1)])
    cycle(cfg)  # created; the first run reads the moves and polls every open order
    read_until = query(cfg, "SELECT value FROM checkpoints WHERE stream = ?", [MOVES_READ])
    with ins.state.lock:  # 2,500 moves of someone else's orders, a second ago
        for n in range(2500):
            fields = {"user_id": "u", "order_id": f"OTHER-{n}", "from_cell_id": "c1"}
            fields |= {"to_cell_id": "c2", "from_account_id": "x", "to_account_id": "y"}
            ins.state.add_move(ins.site_id, a, 1, int(time.time()) - 1, **fields)
    assert ins.advance_order(f"DS-{order_id}") == "reserved"
    assert ins.advance_order(f"DS-{order_id}") == "done"  # its picks: the newest moves
    moves_before = ins.count(MOVES_ROUTE)
    result = run(cfg, "dsorder.progress")
    assert ins.count(MOVES_ROUTE) == moves_before + 2  # stopped at the ceiling
    assert result.counts["moves_read_cut"] == 1
    assert result.counts["moves_read"] == 2000
    assert result.counts["followed"] == 1
    run(cfg, "outbox.send")
    assert ds.closes(order_id) == 1
    assert reported(ds, order_id) == {1000: (1, True)}
    assert query(cfg, "SELECT value FROM checkpoints WHERE stream = ?", [MOVES_READ]) == read_until
    alerts = query(
        cfg, "SELECT subject FROM alerts WHERE kind = 'pagination' AND resolved_at IS NULL"
    )
    assert alerts == [{"subject": "instock:moves"}]


def test_follow_all_polls_every_open_order_each_run_and_reads_no_moves(
    ins: InstockSim, ds: DSOrderSim, make_cfg: Callable[..., Settings]
) -> None:
    """`follow = "all"` (a site whose moves carry no order id) polls every open order every
    run, moved or not, and reads no moves."""
    cfg = make_cfg()
    cfg.jobs["dsorder.progress"] = JobConfig(options={"follow": "all"})
    a = stocked(ins)[0]
    ids = [ds.submit_order(lines=[(a, 1)]) for _ in range(3)]
    cycle(cfg)
    before = len(ins.requests)
    cycle(cfg, rounds=2)
    assert sorted(status_polls(ins, before)) == sorted(f"DS-{o}" for o in ids for _ in "12")
    assert ins.count(MOVES_ROUTE) == 0
    ins.advance_order(f"DS-{ids[0]}")
    ins.cancel_order(f"DS-{ids[0]}")
    cycle(cfg)
    assert ds.closes(ids[0]) == 1


def test_progress_takes_turns_when_more_orders_are_open_than_it_polls_per_run(
    ins: InstockSim, ds: DSOrderSim, make_cfg: Callable[..., Settings]
) -> None:
    """With more open orders than `follow_limit`, each run polls the ones polled longest
    ago: an order that is done closes even while older orders stay open in Instock."""
    cfg = make_cfg()
    cfg.jobs["dsorder.progress"] = JobConfig(options={"follow_limit": 1})
    a = stocked(ins)[0]
    waiting, done = ds.submit_order(lines=[(a, 1)]), ds.submit_order(lines=[(a, 2)])
    cycle(cfg)
    ins.advance_order(f"DS-{done}")
    ins.advance_order(f"DS-{done}")
    cycle(cfg, rounds=3)
    assert ds.closes(done) == 1
    assert reported(ds, done) == {1000: (2, True)}
    assert order_row(cfg, waiting)["state"] == "created"


# --- lines Instock cannot take: policy hold -------------------------------------------------


def test_hold_policy_holds_the_whole_order_with_a_reject_per_bad_line(
    ins: InstockSim, ds: DSOrderSim, make_cfg: Callable[..., Settings]
) -> None:
    """Policy `hold`: a fractional quantity or an unknown article holds the whole order,
    with a reject naming order, line and reason, and nothing goes to Instock."""
    cfg = make_cfg(policy="hold")
    a, b = stocked(ins)[:2]
    good = ds.submit_order(lines=[(a, 2)])
    bad = ds.submit_order(lines=[(a, 1), (b, 2.5), ("NO-SUCH-ARTICLE", 3)])
    cycle(cfg, rounds=2)

    assert order_row(cfg, bad)["state"] == "held"
    assert order_row(cfg, good)["state"] == "created"
    assert set(ins.creates) == {f"DS-{good}"}  # type: ignore[attr-defined]
    assert ins.count(CREATE_ROUTE) == 1
    assert not query(cfg, "SELECT * FROM outbox WHERE order_key = ?", [f"order:DS-{bad}"])
    rejects = open_rejects(cfg)
    assert [(r["reference"], r["field"]) for r in rejects] == [
        (f"order {bad} line 2000", "quantity"),
        (f"order {bad} line 3000", "article_id"),
    ]
    assert "fractional quantity 2.5" in rejects[0]["reason"]
    assert "article NO-SUCH-ARTICLE is not in the host catalog" in rejects[1]["reason"]
    hold_reason = order_row(cfg, bad)["hold_reason"]
    assert "line 2000" in hold_reason
    assert "line 3000" in hold_reason
    # A held order is not reported or closed in DSOrder: it waits for an operator.
    assert not [r for r in ds.requests if r.path.startswith(f"/orders/{bad}/")]
    assert ds.closes(bad) == 0


def test_held_order_is_released_when_the_catalog_adds_its_article(
    ins: InstockSim, ds: DSOrderSim, make_cfg: Callable[..., Settings]
) -> None:
    """An order held for an article missing from the host catalog is sent to Instock by
    itself once a catalog file adds the article, and its rejects are resolved."""
    articles = stocked(ins)
    late = articles[-1]
    cfg = make_cfg(catalog=articles[:-1])
    order_id = ds.submit_order(lines=[(articles[0], 2), (late, 3)])
    cycle(cfg)
    assert order_row(cfg, order_id)["state"] == "held"
    (reject,) = open_rejects(cfg)
    assert reject["reference"] == f"order {order_id} line 2000"
    cycle(cfg)  # nothing changed: still held
    load_catalog(cfg, articles[:-1])  # a catalog that still lacks it: planned again, held
    cycle(cfg)
    assert order_row(cfg, order_id)["state"] == "held"
    # The reason still holds: the same reject, not a new one per plan.
    assert query(cfg, "SELECT id FROM rejects WHERE source = 'dsorder:lines'") == [
        {"id": reject["id"]}
    ]

    load_catalog(cfg, articles)
    cycle(cfg)
    assert order_row(cfg, order_id)["state"] == "created"
    assert ins.creates[f"DS-{order_id}"] == 1  # type: ignore[attr-defined]
    assert instock_lines(ins, order_id)[f"DS-{order_id}-2000"] == (late, 3)
    assert open_rejects(cfg) == []

    advance_all(ins)
    advance_all(ins)
    cycle(cfg)
    assert reported(ds, order_id) == {1000: (2, True), 2000: (3, True)}
    assert ds.closes(order_id) == 1


def test_held_order_is_released_by_retrying_its_reject(
    ins: InstockSim, ds: DSOrderSim, make_cfg: Callable[..., Settings]
) -> None:
    """`retry_reject` plans a held order again: still held while the reason stands (the
    reject reopens), released once the article is in the catalog."""
    articles = stocked(ins)
    late = articles[-1]
    cfg = make_cfg(catalog=articles[:-1])
    order_id = ds.submit_order(lines=[(late, 4)])
    cycle(cfg)
    (reject,) = open_rejects(cfg)

    with Store.open(cfg.db_path, migrate=False) as store:
        assert store.retry_reject(reject["id"]) == "retry"
    cycle(cfg)  # planned again, the article is still unknown: held, the reject open again
    assert order_row(cfg, order_id)["state"] == "held"
    assert open_rejects(cfg) == [{**reject, "status": "open", "updated_at": ANY}]

    # The article reaches the catalog without a new host file: only a retry replans.
    with Store.open(cfg.db_path, migrate=False) as store, store.transaction():
        store.db.execute(
            "INSERT INTO host_articles (article_id, name, file, line, load_id, loaded_at) "
            "VALUES (?, 'late article', 'manual', 1, 0, '2026-01-01T00:00:00.000Z')",
            [late],
        )
    cycle(cfg)
    assert order_row(cfg, order_id)["state"] == "held"
    assert ins.count(CREATE_ROUTE) == 0
    with Store.open(cfg.db_path, migrate=False) as store:
        store.retry_reject(reject["id"])
    cycle(cfg)
    assert order_row(cfg, order_id)["state"] == "created"
    assert ins.creates == {f"DS-{order_id}": 1}  # type: ignore[attr-defined]
    assert open_rejects(cfg) == []


# --- lines Instock cannot take: policy partial ----------------------------------------------


def test_partial_policy_sends_good_lines_and_reports_the_bad_ones_as_zero_finished(
    ins: InstockSim, ds: DSOrderSim, make_cfg: Callable[..., Settings]
) -> None:
    """Policy `partial`: the good lines go to Instock; the bad line is a reject, is reported
    as 0 and is finished with the rest when the Instock order ends."""
    cfg = make_cfg(policy="partial")
    a, b = stocked(ins)[:2]
    order_id = ds.submit_order(lines=[(a, 2), (b, 1.5), (a, 7)])
    cycle(cfg)
    assert instock_lines(ins, order_id) == {
        f"DS-{order_id}-1000": (a, 2),
        f"DS-{order_id}-3000": (a, 7),
    }
    assert [r["reference"] for r in open_rejects(cfg)] == [f"order {order_id} line 2000"]
    assert "sent without: line 2000" in order_row(cfg, order_id)["hold_reason"]

    advance_all(ins)
    cycle(cfg)
    assert ds.count(FULFILL_ROUTE) == 0  # nothing picked, nothing finished: no report yet
    advance_all(ins)
    cycle(cfg)
    assert reported(ds, order_id) == {1000: (2, True), 2000: (0, True), 3000: (7, True)}
    assert ds.closes(order_id) == 1
    assert ins.creates == {f"DS-{order_id}": 1}  # type: ignore[attr-defined]


def test_partial_policy_holds_an_order_without_any_good_line(
    ins: InstockSim, ds: DSOrderSim, make_cfg: Callable[..., Settings]
) -> None:
    """Policy `partial` with no line Instock can take: the order is held, nothing is sent."""
    cfg = make_cfg(policy="partial")
    order_id = ds.submit_order(lines=[("NO-SUCH-ARTICLE", 1), (stocked(ins)[0], 0.25)])
    cycle(cfg)
    assert order_row(cfg, order_id)["state"] == "held"
    assert ins.count(CREATE_ROUTE) == 0
    assert len(open_rejects(cfg)) == 2


# --- DSOrder's own answers ------------------------------------------------------------------


def test_dsorder_warnings_are_kept_with_the_sender_run_and_the_intent(
    ins: InstockSim, ds: DSOrderSim, make_cfg: Callable[..., Settings]
) -> None:
    """A warning DSOrder answers with (a line finished before syncd reported it) is kept in
    the sender run's warnings and the intent's result; the order still closes."""
    cfg = make_cfg()
    a, b = stocked(ins)[:2]
    order_id = ds.submit_order(lines=[(a, 2), (b, 3)])
    cycle(cfg)
    advance_all(ins)
    advance_all(ins)
    with ds.state.lock:  # a store clerk finishes line 1000 by hand, at 1
        line = ds.state.orders[order_id].lines[1000]
        line.fulfilled, line.finished = 1, True
    cycle(cfg)

    warning = finished_warning(1000)
    assert reported(ds, order_id) == {1000: (1, True), 2000: (3, True)}
    assert ds.closes(order_id) == 1
    (intent,) = query(
        cfg, "SELECT * FROM outbox WHERE destination = 'dsorder' AND kind = 'fulfill'"
    )
    assert intent["status"] == "sent"
    assert json.loads(intent["result"]) == {"warnings": [warning]}
    kept = [
        w
        for r in query(cfg, "SELECT warnings FROM runs WHERE job = 'outbox.send'")
        for w in json.loads(r["warnings"])
    ]
    assert kept == [{"destination": "dsorder", "intent_id": intent["id"], "warnings": [warning]}]


@pytest.mark.parametrize("how", ["closed_directly", "answer_lost"])
def test_already_closed_after_a_crash_counts_as_done(
    how: str, ins: InstockSim, ds: DSOrderSim, make_cfg: Callable[..., Settings]
) -> None:
    """A close that went through but was never recorded (closed in DSOrder directly, or its
    answer lost on the way back) is answered "already closed" later: that counts as done."""
    cfg = make_cfg()
    order_id = ds.submit_order(lines=[(stocked(ins)[0], 2)])
    cycle(cfg)
    advance_all(ins)
    advance_all(ins)
    if how == "closed_directly":
        # The fulfil is sent; the close is refused softly once (changes nothing), and is
        # then made directly, as if syncd had crashed between sending it and recording it.
        ds.faults.script(CLOSE_ROUTE, ["fail_soft"])
        run(cfg, "dsorder.progress")
        counts = run(cfg, "outbox.send").counts
        assert (counts["pushed"], counts["retried"]) == (1, 1), counts
        assert ds.closes(order_id) == 0
        with ds.state.lock:
            order = ds.state.orders[order_id]
            order.closed, order.closes = True, 1
    else:
        # Every connection to close is dropped after DSOrder closed the order.
        ds.faults.script(CLOSE_ROUTE, ["drop"])
    time.sleep(0.06)  # past the outbox backoff
    cycle(cfg, rounds=2)
    assert ds.closes(order_id) == 1
    assert order_row(cfg, order_id)["state"] == "closed"
    (close,) = query(cfg, "SELECT * FROM outbox WHERE kind = 'close'")
    assert close["status"] == "sent"
    assert "already closed" in json.loads(close["result"])["already_done"]
    assert reported(ds, order_id) == {1000: (2, True)}
    assert query(cfg, "SELECT * FROM rejects") == []


@pytest.mark.parametrize(
    ("wording", "listing", "patterns"),
    [
        ("already", "listed", None),
        ("is_closed", "listed", None),
        ("not_open", "listed", None),
        ("opaque", "hidden", None),  # read back: no longer listed on its day
        ("opaque", "status", None),  # read back: listed as closed
        ("opaque", "listed", ["cannot be changed"]),  # the operator's own pattern
    ],
)
def test_closed_in_any_wording_or_by_reading_back_counts_as_done(
    wording: str,
    listing: str,
    patterns: list[str] | None,
    ins: InstockSim,
    ds: DSOrderSim,
    make_cfg: Callable[..., Settings],
) -> None:
    """An order closed in DSOrder before syncd's fulfil and close arrive is done whatever
    words DSOrder uses for "closed"; an answer no pattern knows is settled by reading the
    order back from the submitted list (gone from today's list, or listed as closed)."""
    cfg = make_cfg()
    if patterns is not None:
        cfg.connectors.dsorder.options = {"closed_patterns": patterns}
    ds.closed_wording, ds.closed_listing = wording, listing
    order_id = ds.submit_order(lines=[(stocked(ins)[0], 2)])
    cycle(cfg)
    advance_all(ins)
    advance_all(ins)
    with ds.state.lock:  # closed by hand in DSOrder (or by a close whose record was lost)
        order = ds.state.orders[order_id]
        order.closed, order.closes = True, 1
    cycle(cfg, rounds=2)
    assert order_row(cfg, order_id)["state"] == "closed"
    intents = query(cfg, "SELECT kind, status, result FROM outbox WHERE destination = 'dsorder'")
    assert [(i["kind"], i["status"]) for i in intents] == [("fulfill", "sent"), ("close", "sent")]
    assert query(cfg, "SELECT * FROM rejects") == []
    assert ds.closes(order_id) == 1


def test_an_unclear_answer_for_an_order_still_listed_open_is_retried(
    ins: InstockSim, ds: DSOrderSim, make_cfg: Callable[..., Settings]
) -> None:
    """An answer no pattern recognises, for an order DSOrder still lists as open, is a real
    failure: read back, then retried (not taken as done), and the order closes once the
    failure passes."""
    cfg = make_cfg()
    ds.closed_listing = "status"
    order_id = ds.submit_order(lines=[(stocked(ins)[0], 2)])
    cycle(cfg)
    advance_all(ins)
    advance_all(ins)
    ds.faults.script(CLOSE_ROUTE, ["fail_soft"])
    pulls_before = ds.count(SUBMITTED_ROUTE)
    run(cfg, "dsorder.progress")
    counts = run(cfg, "outbox.send").counts
    assert (counts["pushed"], counts["retried"], counts.get("already_done", 0)) == (1, 1, 0)
    assert ds.count(SUBMITTED_ROUTE) == pulls_before + 1  # the read-back
    assert order_row(cfg, order_id)["state"] == "closing"
    time.sleep(0.06)  # past the outbox backoff
    run(cfg, "outbox.send")
    assert order_row(cfg, order_id)["state"] == "closed"
    assert ds.closes(order_id) == 1


# --- the midnight gap -----------------------------------------------------------------------


def local(day: datetime, hour: int, minute: int = 0) -> datetime:
    return day.replace(hour=hour, minute=minute, tzinfo=ZoneInfo(ZONE))


def test_midnight_gap_opens_an_alert_naming_the_interval(
    ds: DSOrderSim, make_cfg: Callable[..., Settings], tmp_path: Path
) -> None:
    """A pull after a day whose end no pull covered opens a `dsorder_midnight_gap` alert
    naming the interval, shown by `syncd status` and in the STATUS line; pulls a few minutes
    either side of midnight raise nothing."""
    cfg = make_cfg()
    catalog = [r["article_id"] for r in query(cfg, "SELECT article_id FROM host_articles")]
    clock: ManualClock = ds.clock  # type: ignore[assignment]
    day = datetime(2025, 3, 10)  # a Monday, CET (UTC+1)

    def pull_at(moment: datetime) -> RunResult:
        clock.set(moment.timestamp())
        with freeze_time(moment.astimezone(UTC), tick=True):
            return run(cfg, "dsorder.pull")

    pull_at(local(day, 20))
    covered = ds.submit_order(lines=[(catalog[0], 1)], at=local(day, 21).timestamp())
    pull_at(local(day, 23, 59).replace(second=30))  # the scheduled end-of-day pull
    pull_at(local(day + timedelta(days=1), 0, 5))  # the day was covered by design
    assert order_row(cfg, covered)["state"] == "created"
    assert query(cfg, "SELECT * FROM alerts") == []

    next_day = day + timedelta(days=1)
    pull_at(local(next_day, 20))
    missed = ds.submit_order(lines=[(catalog[0], 1)], at=local(next_day, 22).timestamp())
    pull_at(local(next_day + timedelta(days=1), 7))  # syncd was down from 20:00 to 07:00

    assert missed not in ds.visible_order_ids()
    assert not query(cfg, "SELECT * FROM dsorder_orders WHERE order_id = ?", [missed])
    with Store.open(cfg.db_path, migrate=False) as store:
        (alert,) = store.open_alerts("dsorder_midnight_gap")
        report = status_report(store)
        line = status_line(store)
    assert alert["subject"] == "2025-03-11"
    assert "2025-03-11T20:00" in alert["message"]
    assert "2025-03-12T00:00:00+01:00" in alert["message"]
    assert [a["kind"] for a in report["alerts_open"]] == ["dsorder_midnight_gap"]
    assert "alerts 1" in line
    assert "ALERT DSOrder orders submitted between 2025-03-11T20:00" in line

    config = tmp_path / "status.toml"
    config.write_text(f"[daemon]\nstate_dir = {json.dumps(str(cfg.daemon.state_dir))}\n")
    shown = CliRunner().invoke(cli, ["status", "--config", str(config)], catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    assert "dsorder_midnight_gap" in shown.output
    assert "2025-03-11" in shown.output


def test_any_uncovered_end_of_day_is_an_alert_however_short(
    ds: DSOrderSim, make_cfg: Callable[..., Settings]
) -> None:
    """A last pull at 23:55 and the next at 00:05 leave 5 minutes nobody saw: an alert
    (there is no 15-minute tolerance any more); a pull that started before midnight but
    got its answer after it does not count as having seen the end of its day."""
    cfg = make_cfg()
    clock: ManualClock = ds.clock  # type: ignore[assignment]
    day = datetime(2025, 3, 10)

    def pull_at(moment: datetime, tick: bool = False) -> RunResult:
        clock.set(moment.timestamp())
        with freeze_time(moment.astimezone(UTC), tick=tick):
            return run(cfg, "dsorder.pull")

    pull_at(local(day, 23, 55))
    pull_at(local(day + timedelta(days=1), 0, 5))
    (alert,) = query(cfg, "SELECT * FROM alerts WHERE kind = 'dsorder_midnight_gap'")
    assert "2025-03-10T23:55:00+01:00 and 2025-03-11T00:00:00+01:00" in alert["message"]

    # The next evening: a pull at 20:00, then one at 23:59:59.8 whose answer is late.
    next_day = day + timedelta(days=1)
    pull_at(local(next_day, 20))
    ds.faults.script(SUBMITTED_ROUTE, ["slow"])  # 0.4 s: the answer arrives after midnight
    pull_at(local(next_day, 23, 59).replace(second=59, microsecond=800_000), tick=True)
    alerts = query(cfg, "SELECT * FROM alerts WHERE kind = 'dsorder_midnight_gap' ORDER BY id")
    assert [a["subject"] for a in alerts] == ["2025-03-10", "2025-03-11"]
    assert "2025-03-11T20:00:00+01:00 and 2025-03-12T00:00:00+01:00" in alerts[1]["message"]


# --- faults on both sides -------------------------------------------------------------------

INSTOCK_FAULTS = ("429", "503", "slow", "malformed", "drop")
DSORDER_FAULTS = (*INSTOCK_FAULTS, "fail_soft")
FAULT_RATE = 0.15
FAULT_SEED = 4


def test_faults_on_both_sides_converge(
    ins: InstockSim, ds: DSOrderSim, make_cfg: Callable[..., Settings]
) -> None:
    """With ~15% of requests to both remotes failing (429, 503, slow, malformed, dropped,
    DSOrder's soft failure), rounds of pull/progress/send converge: every order created in
    Instock once, its totals right, closed in DSOrder once."""
    cfg = make_cfg(read_timeout=0.25)
    # Cancellations write no move: a sweep every fraction of a second finds them within
    # the rounds here (a moved order is polled at once; a failed moves read is read again).
    cfg.jobs["dsorder.progress"] = JobConfig(options={"sweep_interval": 0.2, "sweep_limit": 100})
    articles = stocked(ins, minimum=100)
    rng = random.Random(FAULT_SEED)

    def submit(n: int) -> list[str]:
        return [
            ds.submit_order(
                lines=[(a, rng.randint(1, 9)) for a in rng.sample(articles, rng.randint(1, 3))]
            )
            for _ in range(n)
        ]

    everything = submit(6)
    # Two orders Instock cannot fill: canceled for short stock, closed with 0.
    for _ in range(2):
        everything.append(ds.submit_order(lines=[(articles[0], 10_000), (articles[1], 1)]))
    for kind in INSTOCK_FAULTS:
        ins.faults.rate("*", kind, FAULT_RATE / len(INSTOCK_FAULTS))
    for kind in DSORDER_FAULTS:
        ds.faults.rate("*", kind, FAULT_RATE / len(DSORDER_FAULTS))
    # The writes meet the hard cases at least once: the change happens but the answer is lost
    # (drop, slow), or is not readable (malformed), or is a soft failure.
    ins.faults.script(CREATE_ROUTE, ["drop", "ok", "slow", "ok", "malformed"])
    ds.faults.script(FULFILL_ROUTE, ["drop", "ok", "fail_soft", "ok", "slow", "ok", "malformed"])
    ds.faults.script(CLOSE_ROUTE, ["slow", "ok", "drop", "ok", "fail_soft", "ok", "malformed"])

    deadline = time.monotonic() + 30
    rounds = 0
    while time.monotonic() < deadline:
        rounds += 1
        if rounds <= 6:
            everything += submit(4)  # stores keep ordering while the loop runs
        cycle(cfg, expect=None)  # a run may fail on a fault; the next round carries on
        for order_id in everything:  # the floor gets to about half the open orders per round
            with ins.state.lock:
                order = ins.state.orders.get(f"DS-{order_id}")
                status = order.status if order else None
            if status in ("registered", "reserved") and rng.random() < 0.5:
                ins.advance_order(f"DS-{order_id}")
        if rounds > 6 and all(ds.closes(o) for o in everything):
            break
        time.sleep(0.02)

    fired_ins, fired_ds = sum(ins.faults.fired.values()), sum(ds.faults.fired.values())
    ins.faults.clear()
    ds.faults.clear()
    time.sleep(0.5)  # let slow answers still sleeping in the simulators land
    cycle(cfg, rounds=2)  # anything still in flight lands; nothing is sent twice
    assert min(fired_ins, fired_ds) >= 15, (ins.faults.fired, ds.faults.fired)
    assert set(ds.faults.fired) >= set(DSORDER_FAULTS) - {"503", "429"}, ds.faults.fired
    for order_id in everything:
        totals = picked(ins, order_id)
        assert ins.creates[f"DS-{order_id}"] == 1, order_id  # type: ignore[attr-defined]
        assert ds.closes(order_id) == 1, order_id
        assert reported(ds, order_id) == {n: (q, True) for n, q in totals.items()}, order_id
    assert [set(picked(ins, o).values()) for o in everything[6:8]] == [{0}, {0}]
    assert set(ins.creates) == {f"DS-{o}" for o in everything}  # type: ignore[attr-defined]
    states = Counter(r["state"] for r in query(cfg, "SELECT state FROM dsorder_orders"))
    assert states == {"closed": len(everything)}
    assert query(cfg, "SELECT * FROM rejects") == []


# --- invalid records in DSOrder's answer ----------------------------------------------------


def test_invalid_orders_are_rejected_one_by_one_and_the_valid_ones_are_taken(
    ins: InstockSim, ds: DSOrderSim, make_cfg: Callable[..., Settings]
) -> None:
    """An order without `store_id`, one with a NaN quantity and a record that is not an
    object become rejects (order key, field, reason, raw record); the valid order listed
    beside them is taken and the last-pull checkpoint advances. Listed = stored + rejected,
    and the same bad records listed again make no second reject."""
    cfg = make_cfg()
    a = stocked(ins)[0]
    template = ds.order(ds.submit_order(lines=[(a, 1)])).as_json()
    with ds.state.lock:  # only the raw records below and one valid order are listed
        ds.state.orders.clear()
    no_store = {**template, "order_id": "900001"}
    del no_store["store_id"]
    nan_line = {**template, "order_id": "900002"}
    nan_line["details"] = [{**template["details"][0], "quantity": float("nan")}]
    ds.list_raw(no_store)
    ds.list_raw(nan_line)
    ds.list_raw(["not", "an", "order"])
    good = ds.submit_order(lines=[(a, 2)])

    result = run(cfg, "dsorder.pull")
    assert (result.counts["pulled"], result.counts["stored"], result.counts["invalid"]) == (
        4,
        1,
        3,
    )
    assert order_row(cfg, good)["state"] == "created"
    assert query(cfg, "SELECT order_id FROM dsorder_orders") == [{"order_id": good}]
    assert query(cfg, "SELECT value FROM checkpoints WHERE stream = 'dsorder.last_pull'")
    rejects = query(cfg, "SELECT * FROM rejects WHERE source = 'dsorder:orders' ORDER BY reference")
    assert [(r["reference"], r["field"]) for r in rejects] == [
        ("order #3", "(record)"),
        ("order 900001", "store_id"),
        ("order 900002", "details.0.quantity"),
    ]
    assert "finite number" in rejects[2]["reason"]
    payload = json.loads(rejects[1]["payload"])
    assert payload["record"]["order_id"] == "900001"
    assert payload["index"] == 1  # the valid order, listed first, is #0
    assert json.loads(rejects[2]["payload"])["record"]["details"][0]["quantity"] == "NaN"

    cycle(cfg)  # listed again, all the same: no new reject, the good order sent once
    assert len(query(cfg, "SELECT id FROM rejects WHERE source = 'dsorder:orders'")) == 3
    assert ins.creates == {f"DS-{good}": 1}  # type: ignore[attr-defined]

    # DSOrder corrects one record: it is taken and its reject resolved.
    with ds.state.lock:
        ds.state.raw_records[0] = (ds.state.raw_records[0][0], {**template, "order_id": "900001"})
    run(cfg, "dsorder.pull")
    assert order_row(cfg, "900001")["state"] == "created"
    statuses = {
        r["reference"]: r["status"]
        for r in query(cfg, "SELECT reference, status FROM rejects WHERE source = 'dsorder:orders'")
    }
    assert statuses == {"order #3": "open", "order 900001": "resolved", "order 900002": "open"}


# --- an order create never races its articles -----------------------------------------------

UPLOAD_ROUTE = "POST /v1/articles"


def order_rejects(settings: Settings) -> list[dict[str, Any]]:
    """Rejects of DSOrder orders or of Instock order creates (the catalog's own article
    updates, refused for articles with moves, are not what these tests are about)."""
    return query(
        settings,
        "SELECT r.* FROM rejects r LEFT JOIN outbox o ON o.id = r.outbox_id "
        "WHERE r.source LIKE 'dsorder:%' OR o.kind = 'orders.create'",
    )


def drop_catalog(settings: Settings, header: str, rows: list[str]) -> None:
    """The host drops a catalog file with its own columns; `host.inbox` loads it."""
    _dropped["articles"] += 1
    name = f"articles-{_dropped['articles']:04d}-{time.monotonic_ns()}.csv"
    (settings.host_dir / "inbox" / name).write_text("\n".join([header, *rows]) + "\n")
    assert run(settings, "host.inbox").counts.get("files_archived") == 1


def test_order_create_waits_for_a_pending_upload_of_its_article(
    ins: InstockSim, ds: DSOrderSim, make_cfg: Callable[..., Settings]
) -> None:
    """An order whose article upload is still retrying is not sent (no 404, no reject):
    it waits for the upload and is created once, right after it."""
    cfg = make_cfg()
    articles = stocked(ins)
    load_catalog(cfg, [*articles, "NEWART1"])
    ins.faults.rate(UPLOAD_ROUTE, "503", 1.0)  # the upload keeps failing for a while
    run(cfg, "instock.articles")
    order_id = ds.submit_order(lines=[(articles[0], 1), ("NEWART1", 2)])
    for _ in range(2):
        cycle(cfg)
        time.sleep(0.06)
    assert "NEWART1" not in ins.state.articles
    assert ins.count(CREATE_ROUTE) == 0
    deferred = query(cfg, "SELECT status, attempts FROM outbox WHERE kind = 'orders.create'")
    assert deferred == [{"status": "pending", "attempts": 0}]
    assert order_rejects(cfg) == []

    ins.faults.clear()
    time.sleep(0.06)
    cycle(cfg)
    assert "NEWART1" in ins.state.articles
    assert ins.creates == {f"DS-{order_id}": 1}  # type: ignore[attr-defined]
    assert order_row(cfg, order_id)["state"] == "created"
    assert order_rejects(cfg) == []


def test_article_not_found_on_create_is_not_yet_while_its_upload_is_to_come(
    ins: InstockSim, ds: DSOrderSim, make_cfg: Callable[..., Settings]
) -> None:
    """An article in the host catalog that `instock.articles` has not uploaded yet: the
    create's 404 is retried, not rejected, and the order is created once the article is."""
    cfg = make_cfg()
    articles = stocked(ins)
    load_catalog(cfg, [*articles, "NEWART2"])
    order_id = ds.submit_order(lines=[("NEWART2", 3)])
    cycle(cfg)
    assert ins.count(CREATE_ROUTE) >= 1  # tried, answered 404
    (create,) = query(cfg, "SELECT status, last_error FROM outbox WHERE kind = 'orders.create'")
    assert create["status"] == "pending"
    assert "not yet" in create["last_error"]
    assert order_rejects(cfg) == []

    run(cfg, "instock.articles")
    time.sleep(0.06)
    cycle(cfg)
    assert ins.creates == {f"DS-{order_id}": 1}  # type: ignore[attr-defined]
    assert order_rejects(cfg) == []


@pytest.mark.parametrize("policy", ["hold", "partial"])
def test_serial_numbered_article_is_a_line_reject_found_before_sending(
    policy: str, ins: InstockSim, ds: DSOrderSim, make_cfg: Callable[..., Settings]
) -> None:
    """A serial-numbered article (Instock refuses it always) is a line reject under the
    order policy, found before anything is sent: `hold` keeps the order back, `partial`
    sends the other lines."""
    cfg = make_cfg(policy=policy)
    articles = stocked(ins)
    a, serial = articles[:2]
    drop_catalog(
        cfg,
        "article_id,name,whole_units,is_serial_numbered",
        [f"{x},Article {x},true,{'true' if x == serial else 'false'}" for x in articles],
    )
    order_id = ds.submit_order(lines=[(a, 1), (serial, 1)])
    cycle(cfg)
    (reject,) = open_rejects(cfg)
    assert (reject["reference"], reject["field"]) == (f"order {order_id} line 2000", "article_id")
    assert "serial-numbered" in reject["reason"]
    if policy == "hold":
        assert order_row(cfg, order_id)["state"] == "held"
        assert ins.count(CREATE_ROUTE) == 0
    else:
        assert instock_lines(ins, order_id) == {f"DS-{order_id}-1000": (a, 1)}


# --- what DSOrder gives, on the Instock order -------------------------------------------------


def instock_order(ins: InstockSim, order_id: str) -> dict[str, Any]:
    with ins.state.lock:
        order = ins.state.orders[f"DS-{order_id}"]
        return {"placed_at": order.placed_at, "attributes": dict(order.attributes)}


def test_by_default_the_order_carries_placed_at_and_cutoff_time_and_no_other_attribute(
    ins: InstockSim, ds: DSOrderSim, make_cfg: Callable[..., Settings]
) -> None:
    """order_date -> placed_at, delivery_date -> cutoff_time; DSOrder's order id is not a
    custom attribute unless configured (the site must have agreed on it first)."""
    cfg = make_cfg()
    submitted = datetime(2026, 12, 4, 9, 30, 15, tzinfo=UTC).timestamp()
    delivery = int(datetime(2026, 12, 5, 5, 0, tzinfo=UTC).timestamp() * 1000)
    order_id = ds.submit_order(lines=[(stocked(ins)[0], 1)], at=submitted, delivery_date=delivery)
    with ds.state.lock:  # listed today, whatever the date above says
        ds.state.orders[order_id].submitted_at = ds.clock()
    cycle(cfg)
    order = instock_order(ins, order_id)
    # the instant DSOrder lists (whole milliseconds), in whole seconds
    listed = ds.state.orders[order_id].order_date / 1000
    placed = datetime.fromtimestamp(listed, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert order["placed_at"] == placed
    assert order["attributes"] == {"cutoff_time": "2026-12-05T05:00:00Z"}


def test_configured_attributes_carry_order_id_store_and_shelf_life(
    ds: DSOrderSim, make_cfg: Callable[..., Settings], tmp_path: Path
) -> None:
    """With attributes agreed for the site (the simulator configured with them), DSOrder's
    order id, store id, the latest shelf life of the lines and the delivery date less a
    lead reach the Instock order under the configured names."""
    agreed = ("ds_order", "ds_store", "min_shelf_life", "deliver_by")
    with InstockSim(seed=INSTOCK_SEED, articles=30, retry_after=0, order_attributes=agreed) as ins:
        cfg = make_cfg(
            order_id_attribute="ds_order",
            store_id_attribute="ds_store",
            shelf_life_attribute="min_shelf_life",
            delivery_date_attribute="deliver_by",
            delivery_date_lead="2h",
        )
        cfg.connectors.instock.base_url = ins.base_url
        a, b = stocked(ins)[:2]
        shelf_a = int(datetime(2027, 1, 10, tzinfo=UTC).timestamp() * 1000)
        shelf_b = int(datetime(2027, 2, 1, tzinfo=UTC).timestamp() * 1000)
        delivery = int(datetime(2026, 12, 5, 6, 0, tzinfo=UTC).timestamp() * 1000)
        order_id = ds.submit_order(
            store_id="ST-0000003",
            lines=[(a, 1, shelf_a), (b, 2, shelf_b)],
            delivery_date=delivery,
        )
        cycle(cfg)
        with ins.state.lock:
            attributes = ins.state.orders[f"DS-{order_id}"].attributes
    assert attributes == {
        "ds_order": order_id,
        "ds_store": "ST-0000003",
        "min_shelf_life": "2027-02-01T00:00:00Z",
        "deliver_by": "2026-12-05T04:00:00Z",
    }


def test_an_attribute_the_site_has_not_agreed_is_refused_by_instock(
    ins: InstockSim, ds: DSOrderSim, make_cfg: Callable[..., Settings]
) -> None:
    """The simulator refuses an order attribute outside its configured set, as the document
    implies: such a create is rejected with Instock's reason, never silently accepted."""
    cfg = make_cfg(order_id_attribute="dsorder_order_id")
    order_id = ds.submit_order(lines=[(stocked(ins)[0], 1)])
    cycle(cfg)
    assert f"DS-{order_id}" not in ins.state.orders
    (reject,) = query(cfg, "SELECT reason FROM rejects WHERE source = 'outbox:instock'")
    assert (
        "dsorder_order_id is not a custom attribute configured for this site" in (reject["reason"])
    )


# --- fractional quantities: unit conversion, held orders, release ----------------------------


def catalog_with_factors(ins: InstockSim, factors: dict[str, str]) -> tuple[str, list[str]]:
    header = "article_id,name,whole_units,attr.units_per_order_unit"
    return header, [f"{a},Article {a},true,{factors.get(a, '')}" for a in stocked(ins)]


def test_quantities_that_convert_to_whole_instock_units_are_sent_and_reported_back(
    ins: InstockSim, ds: DSOrderSim, make_cfg: Callable[..., Settings]
) -> None:
    """With the host catalog's `units_per_order_unit`, DSOrder's 2.5 (x2) goes to Instock as
    5 and is reported back as 2.5; 2.25 x2 = 4.5 is still not whole and is held."""
    cfg = make_cfg()
    a, b = stocked(ins)[:2]
    drop_catalog(cfg, *catalog_with_factors(ins, {a: "2", b: "2"}))
    converts = ds.submit_order(lines=[(a, 2.5), (b, 3)])
    held = ds.submit_order(lines=[(b, 2.25)])
    cycle(cfg)
    assert instock_lines(ins, converts) == {
        f"DS-{converts}-1000": (a, 5),
        f"DS-{converts}-2000": (b, 6),
    }
    assert order_row(cfg, held)["state"] == "held"
    (reject,) = open_rejects(cfg)
    assert "2.25 x 2 units per order unit = 4.50 Instock units" in reject["reason"]
    advance_all(ins)
    advance_all(ins)
    cycle(cfg)
    assert reported(ds, converts) == {1000: (2.5, True), 2000: (3, True)}
    assert ds.closes(converts) == 1


def test_a_held_order_raises_an_alert_with_its_age_that_escalates(
    ins: InstockSim, ds: DSOrderSim, make_cfg: Callable[..., Settings]
) -> None:
    """A held order opens an alert saying how long it has been held and how to release it,
    shown by `syncd status`; past `hold_escalate_after` a second, escalated alert opens."""
    cfg = make_cfg(hold_escalate_after="1h")
    # Mid-morning of the stores' today, so the hour of pulls never crosses their midnight
    # (a pull past it would open the midnight gap alert as well).
    clock: ManualClock = ds.clock  # type: ignore[assignment]
    today = datetime.fromtimestamp(clock(), ZoneInfo(ZONE)).replace(tzinfo=None)
    clock.set(local(today, 10).timestamp())
    order_id = ds.submit_order(lines=[(stocked(ins)[0], 100.5)])
    start = local(today, 10).astimezone(UTC)
    with freeze_time(start):
        run(cfg, "dsorder.pull")
    with freeze_time(start + timedelta(minutes=40)):
        run(cfg, "dsorder.pull")
    with Store.open(cfg.db_path, migrate=False) as store:
        (alert,) = store.open_alerts("dsorder_order_held")
        assert [a["kind"] for a in status_report(store)["alerts_open"]] == ["dsorder_order_held"]
    assert alert["subject"] == order_id
    # What and why come first (`syncd status` shows the first 100 characters).
    assert alert["message"].startswith(
        f"DSOrder order {order_id} held for 40m: line 1000: fractional quantity 100.5"
    )
    assert f"syncd orders release {order_id} --round|--partial|--cancel" in alert["message"]
    assert query(cfg, "SELECT * FROM alerts WHERE kind = 'dsorder_order_held_escalated'") == []
    with freeze_time(start + timedelta(hours=1, minutes=5)):
        run(cfg, "dsorder.pull")
    (escalated,) = query(cfg, "SELECT * FROM alerts WHERE kind = 'dsorder_order_held_escalated'")
    assert "ESCALATED" in escalated["message"]
    assert "held for 1h05m" in escalated["message"]


def release(cfg: Settings, tmp_path: Path, order_id: str, how: str) -> Any:
    config = tmp_path / "release.toml"
    config.write_text(f"[daemon]\nstate_dir = {json.dumps(str(cfg.daemon.state_dir))}\n")
    return CliRunner().invoke(
        cli, ["orders", "release", order_id, f"--{how}", "--config", str(config)]
    )


@pytest.mark.parametrize("how", ["round", "partial", "cancel"])
def test_an_operator_releases_a_held_order_with_one_command(
    how: str,
    ins: InstockSim,
    ds: DSOrderSim,
    make_cfg: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    """`syncd orders release ID --round` sends 100.5 as 101, `--partial` sends only the
    whole line, `--cancel` sends nothing and closes the order in DSOrder with 0 on every
    line; the rejects and the hold alert are resolved."""
    cfg = make_cfg()
    a, b = stocked(ins)[:2]
    order_id = ds.submit_order(lines=[(a, 100.5), (b, 2)])
    cycle(cfg)
    assert order_row(cfg, order_id)["state"] == "held"
    assert query(cfg, "SELECT kind FROM alerts WHERE resolved_at IS NULL") == [
        {"kind": "dsorder_order_held"}
    ]
    shown = release(cfg, tmp_path, order_id, how)
    assert shown.exit_code == 0, shown.output
    assert order_row(cfg, order_id)["released_by"] == how
    assert open_rejects(cfg) == []
    assert query(cfg, "SELECT kind FROM alerts WHERE resolved_at IS NULL") == []
    cycle(cfg)
    if how == "cancel":
        assert f"DS-{order_id}" not in ins.state.orders
        assert reported(ds, order_id) == {1000: (0, True), 2000: (0, True)}
        assert ds.closes(order_id) == 1
        assert order_row(cfg, order_id)["state"] == "closed"
        return
    expected = {f"DS-{order_id}-2000": (b, 2)}
    if how == "round":
        expected[f"DS-{order_id}-1000"] = (a, 101)
    assert instock_lines(ins, order_id) == expected
    advance_all(ins)
    advance_all(ins)
    cycle(cfg)
    assert reported(ds, order_id) == {
        1000: (101 if how == "round" else 0, True),
        2000: (2, True),
    }
    assert ds.closes(order_id) == 1
    again = release(cfg, tmp_path, order_id, how)  # not held any more: refused, named
    assert again.exit_code == 1
    assert "not held" in again.output


def test_a_release_racing_the_daemons_replan_never_both_creates_and_cancels(
    ins: InstockSim,
    ds: DSOrderSim,
    make_cfg: Callable[..., Settings],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`syncd orders release --cancel` commits while a running pull is re-planning the
    same held order (it has read it as held, its transaction not yet begun): the pull
    must see the release and queue no Instock create for an order closed with 0."""
    import syncd.jobs.dsorder_pull as pull

    articles = stocked(ins)
    late = articles[-1]
    cfg = make_cfg(catalog=articles[:-1])
    order_id = ds.submit_order(lines=[(articles[0], 2), (late, 3)])
    cycle(cfg)
    assert order_row(cfg, order_id)["state"] == "held"
    load_catalog(cfg, articles)  # the next pull plans the held order again
    released: list[Any] = []
    check_line = pull.check_line

    def operator_releases_meanwhile(*args: Any, **kwargs: Any) -> Any:
        if not released:
            released.append(release(cfg, tmp_path, order_id, "cancel"))
        return check_line(*args, **kwargs)

    monkeypatch.setattr(pull, "check_line", operator_releases_meanwhile)
    run(cfg, "dsorder.pull")
    assert released[0].exit_code == 0, released[0].output
    monkeypatch.setattr(pull, "check_line", check_line)
    assert order_row(cfg, order_id)["released_by"] == "cancel"
    cycle(cfg)
    assert f"DS-{order_id}" not in ins.state.orders
    assert query(cfg, "SELECT * FROM outbox WHERE kind = 'orders.create'") == []
    assert reported(ds, order_id) == {1000: (0, True), 2000: (0, True)}
    assert order_row(cfg, order_id)["state"] == "closed"


def test_a_release_after_the_daemon_planned_the_order_is_refused(
    ins: InstockSim,
    ds: DSOrderSim,
    make_cfg: Callable[..., Settings],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The other interleaving: the release has read the order as held when the daemon's
    pull commits its new plan (an Instock create). The release must then be refused,
    not close in DSOrder an order that is going to Instock."""
    import syncd.state.store as store_module

    articles = stocked(ins)
    late = articles[-1]
    cfg = make_cfg(catalog=articles[:-1])
    order_id = ds.submit_order(lines=[(articles[0], 2), (late, 3)])
    cycle(cfg)
    assert order_row(cfg, order_id)["state"] == "held"
    load_catalog(cfg, articles)
    transaction = store_module.Store.transaction
    pulled: list[str] = []

    def daemon_pulls_first(self: Any) -> Any:
        if not pulled and not self.db.conn.in_transaction:
            pulled.append("pulling")
            monkeypatch.setattr(store_module.Store, "transaction", transaction)
            run(cfg, "dsorder.pull")  # re-plans: the order is created
        return transaction(self)

    monkeypatch.setattr(store_module.Store, "transaction", daemon_pulls_first)
    shown = release(cfg, tmp_path, order_id, "cancel")
    monkeypatch.setattr(store_module.Store, "transaction", transaction)
    assert pulled, "the release never opened a transaction"
    assert shown.exit_code == 1  # refused (README: exit statuses), not "state DB unusable"
    assert "not held" in shown.output
    assert order_row(cfg, order_id)["released_by"] is None
    cycle(cfg)
    assert ins.creates[f"DS-{order_id}"] == 1  # type: ignore[attr-defined]
    assert ds.closes(order_id) == 0
    assert not [r for r in ds.requests if r.path.startswith(f"/orders/{order_id}/")]


def test_a_deferred_create_makes_no_drain_due_until_what_it_waits_for_is(
    ins: InstockSim, ds: DSOrderSim, make_cfg: Callable[..., Settings]
) -> None:
    """While the article upload backs off, the deferred create is not due either: the
    daemon's sender (which drains only when an intent is due) adds no `runs` row and no
    log line per interval. It is due again with the upload, and says why it waits."""
    cfg = make_cfg()
    cfg.outbox.initial_backoff = cfg.outbox.max_backoff = 30.0  # the upload backs off 0..30 s
    articles = stocked(ins)
    load_catalog(cfg, [*articles, "NEWART3"])
    ins.faults.rate(UPLOAD_ROUTE, "503", 1.0)
    run(cfg, "instock.articles")
    order_id = ds.submit_order(lines=[(articles[0], 1), ("NEWART3", 2)])
    run(cfg, "dsorder.pull")
    run(cfg, "outbox.send")
    (upload,) = query(cfg, "SELECT next_attempt_at FROM outbox WHERE kind = 'articles.upload'")
    (create,) = query(
        cfg, "SELECT next_attempt_at, attempts, last_error FROM outbox WHERE kind = 'orders.create'"
    )
    assert create["attempts"] == 0
    assert create["last_error"] == "deferred: upload of article(s) NEWART3 pending"
    assert create["next_attempt_at"] == upload["next_attempt_at"]
    before_upload = parse_iso(upload["next_attempt_at"]) - timedelta(milliseconds=1)
    with Store.open(cfg.db_path, migrate=False) as store:
        assert store.destinations_with_due_intents(iso(before_upload)) == []
    ins.faults.clear()
    with Store.open(cfg.db_path, migrate=False) as store:  # the upload's backoff is over
        store.db.execute("UPDATE outbox SET next_attempt_at = ?", [iso()])
    cycle(cfg)
    assert ins.creates == {f"DS-{order_id}": 1}  # type: ignore[attr-defined]


def test_a_rejected_instock_status_is_logged_as_rejected_not_as_missing(
    ins: InstockSim, ds: DSOrderSim, make_cfg: Callable[..., Settings]
) -> None:
    """When the Instock status of a DSOrder order fails validation, dsorder.progress logs a
    rejected record (source, key, field) pointing at its reject, not a missing order."""
    cfg = make_cfg()
    (a,) = stocked(ins)[:1]
    order_id = ds.submit_order(lines=[(a, 3)])
    cycle(cfg)
    instock_id = f"DS-{order_id}"
    ins.advance_order(instock_id)
    assert ins.advance_order(instock_id) == "done"  # it moved: polled on the next run
    bad = {"order_id": instock_id, "order_status": "done", "ordertask_ids": [""], "lines": 5}
    ins.override_record("order_status", instock_id, bad)
    with capture_logs() as logs:
        run(cfg, "dsorder.progress")
    events = [e for e in logs if e.get("order_id") == order_id]
    assert [e["event"] for e in events] == ["instock_order_record_rejected"], events
    assert events[0]["source"] == "instock:orders"
    assert (events[0]["key"], events[0]["field"]) == (instock_id, "lines")
    (reject,) = query(cfg, "SELECT * FROM rejects WHERE source = 'instock:orders'")
    assert reject["reference"].startswith(f"order_id {instock_id} ")


def test_a_site_that_agreed_no_cutoff_time_refuses_the_default_and_the_option_turns_it_off(
    ins: InstockSim, ds: DSOrderSim, make_cfg: Callable[..., Settings]
) -> None:
    """The default sends the delivery date as `cutoff_time` (the document's own example of
    an order attribute). A site that never agreed it refuses every create, loudly (a reject
    naming the attribute, not a silent loss); `delivery_date_attribute = ""` is the fix."""
    ins.order_attributes = frozenset()  # type: ignore[attr-defined]
    cfg = make_cfg()
    refused = ds.submit_order(lines=[(stocked(ins)[0], 1)])
    cycle(cfg)
    assert f"DS-{refused}" not in ins.state.orders
    (reject,) = query(cfg, "SELECT reason FROM rejects WHERE source = 'outbox:instock'")
    assert "cutoff_time is not a custom attribute configured for this site" in reject["reason"]

    cfg.jobs["dsorder.pull"].options["delivery_date_attribute"] = ""
    taken = ds.submit_order(lines=[(stocked(ins)[0], 1)])
    cycle(cfg)
    with ins.state.lock:
        order = ins.state.orders[f"DS-{taken}"]
    assert order.attributes in ({}, None)


def test_progress_reads_no_site_of_the_other_environment(
    ins: InstockSim, ds: DSOrderSim, make_cfg: Callable[..., Settings]
) -> None:
    """dsorder.progress checks the Instock site's environment before it polls: pointed at a
    virtual site under `environment = "production"`, it reads no order status and reports
    no picks to DSOrder; the connector is stopped with a `site_environment` alert."""
    cfg = make_cfg()
    (a,) = stocked(ins)[:1]
    order_id = ds.submit_order(lines=[(a, 3)])
    cycle(cfg)
    ins.advance_order(f"DS-{order_id}")
    ins.advance_order(f"DS-{order_id}")  # done: a poll would queue the fulfil and the close
    cfg.connectors.instock.environment = "production"
    status_route = "GET /v1/{site_id}/orders/{order_id}/status"
    polled = ins.count(status_route)
    failed = run(cfg, "dsorder.progress", expect="failed")
    assert "connectors.instock.environment" in (failed.error or "")
    assert ins.count(status_route) == polled
    assert query(cfg, "SELECT count(*) AS n FROM outbox WHERE destination = 'dsorder'") == [
        {"n": 0}
    ]
    kinds = [r["kind"] for r in query(cfg, "SELECT kind FROM alerts WHERE resolved_at IS NULL")]
    assert kinds == ["site_environment"]
