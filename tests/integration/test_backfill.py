"""`syncd backfill` against the simulators: real loopback HTTP, real SQLite state files.

A gap is made as operators make one (the moves watermark moved on by hand, a stream's
first run started late) and the backfill, run in-process as `syncd backfill` runs it
without a daemon (`syncd.backfill.start_backfill`), must find exactly what the gap left
out, journal and send it once, leave what the live job sent alone, and never move the
live checkpoints.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import syncd.jobs  # noqa: F401 - fills the job registry
from syncd import backfill as backfill_cli
from syncd.backfill import start_backfill
from syncd.clock import iso, parse_iso
from syncd.config import Settings
from syncd.errors import BusyError, ConfigError, UsageError
from syncd.jobs import backfill_requests, instock_moves
from syncd.jobs.instock_moves import STREAM as MOVES_STREAM
from syncd.sandbox.dsorder import DSOrderSim
from syncd.sandbox.instock import InstockSim
from syncd.state import StateLock, Store
from syncd.state.backfills import get_backfill
from syncd.state.windows import coverage_report
from tests.configs import FAST_BACKOFF, connector_for, fast_retry, sim_settings
from tests.integration import test_dsorder_loop as loop
from tests.integration.jobkit import query, run

SEED = 21
FIELDS = (
    "article_id",
    "qty",
    "move_timestamp",
    "user_id",
    "order_id",
    "from_cell_id",
    "to_cell_id",
    "from_account_id",
    "to_account_id",
)
HOUR = 3600.0


class Clock:
    """One clock for the Instock simulator, the moves job and the backfill."""

    def __init__(self) -> None:
        self.t = float(int(time.time())) - 3 * 86400  # room to move forward

    def __call__(self) -> float:
        return self.t

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.t, UTC)

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    for module in (instock_moves, backfill_requests, backfill_cli):
        monkeypatch.setattr(module, "utcnow", clock.now)
    return clock


@pytest.fixture
def sim(clock: Clock) -> Iterator[InstockSim]:
    with InstockSim(seed=SEED, articles=40, retry_after=0, clock=clock) as running:
        yield running


@pytest.fixture
def cfg(tmp_path: Path, sim: InstockSim) -> Settings:
    return sim_settings(
        tmp_path,
        connector_for(sim, page_size=100, retry=fast_retry(4)),
        outbox=FAST_BACKOFF,
        jobs={
            "instock.moves": {
                "options": {
                    "initial_lookback": 86400,
                    "max_window": 86400,
                    "overlap": 600,
                    "lag": 60,
                }
            },
            "backfill.requests": {"options": {"moves_step": 4 * HOUR}},
        },
    )


def sim_moves(sim: InstockSim, since: datetime) -> Counter[tuple[Any, ...]]:
    """The simulator's moves from `since` on (its history before is older than the live
    job's first window)."""
    with sim.state.lock:
        moves = [m.as_json() for m in sim.state.moves[sim.site_id]]
    return Counter(
        tuple(m[f] for f in FIELDS) for m in moves if parse_iso(m["move_timestamp"]) >= since
    )


def sent_moves(settings: Settings) -> Counter[tuple[Any, ...]]:
    """Every move in the host's `moves` files (each file once: the sender's work)."""
    import json

    rows = [
        json.loads(line)
        for f in sorted((settings.host_dir / "outbox").glob("moves-*.jsonl"))
        for line in f.read_text().splitlines()
    ]
    return Counter(tuple(r[f] for f in FIELDS) for r in rows)


def stocked(sim: InstockSim, n: int) -> list[str]:
    with sim.state.lock:
        inventory = sim.state.inventory[sim.site_id]
        found = [a for a in sim.state.article_ids if a in inventory and inventory[a].free >= 5]
    assert len(found) >= n
    return found[:n]


def checkpoints(settings: Settings) -> list[dict[str, Any]]:
    """The live checkpoints (not the pagination history a walk keeps)."""
    return query(
        settings,
        "SELECT stream, value FROM checkpoints WHERE stream NOT LIKE 'paging.%' ORDER BY stream",
    )


def make_gap(
    cfg: Settings, sim: InstockSim, clock: Clock
) -> tuple[datetime, datetime, int, datetime]:
    """The live job journals a day, then its watermark is moved on by hand (as
    `syncd checkpoints reset` would) past 6 hours in which moves happened; it journals on
    from there. Returns the gap (from, to), how many moves happened inside it, and when
    the live job's first window began."""
    since = clock.now() - timedelta(days=1, seconds=600)
    run(cfg, "instock.moves")
    gap_from = clock.now() - timedelta(seconds=60)
    articles = stocked(sim, 6)
    for article in articles:
        clock.advance(HOUR)
        sim.adjust_inventory(article, 3)  # a move inside the gap
    clock.advance(0.5 * HOUR)
    gap_to = clock.now()
    with Store.open(cfg.db_path, migrate=False) as store, store.transaction():
        store.set_checkpoint(MOVES_STREAM, iso(gap_to + timedelta(seconds=600)))
    clock.advance(HOUR)
    sim.adjust_inventory(articles[0], 1)  # after the gap: the live job's
    clock.advance(HOUR)
    run(cfg, "instock.moves")
    run(cfg, "outbox.send")
    return gap_from, gap_to, len(articles), since


def test_moves_missing_from_a_gap_are_found_and_sent_once(
    cfg: Settings, sim: InstockSim, clock: Clock
) -> None:
    """A backfill over a period wider than the gap journals and sends exactly the moves
    the gap left out (each once, with the journal's identity), recognises every move the
    live job sent, leaves the live checkpoint where it was, and closes the gap in
    `syncd coverage` with rows it marks as its own."""
    gap_from, _gap_to, in_gap, since = make_gap(cfg, sim, clock)
    before = sent_moves(cfg)
    assert before != sim_moves(sim, since)  # the gap's moves never went out
    assert sum((sim_moves(sim, since) - before).values()) == in_gap
    with Store.open(cfg.db_path, migrate=False) as store:
        (cov,) = coverage_report(store, "instock.moves")
    assert [g.cause for g in cov.gaps] == ["checkpoint-reset"]
    live = checkpoints(cfg)

    wide_from = gap_from - timedelta(hours=5)  # live-journalled moves on both sides
    wide_to = clock.now() - timedelta(seconds=30)
    outcome = start_backfill(cfg, "instock.moves", wide_from, wide_to, dry_run=False)
    done = outcome.backfill
    assert (outcome.where, done.status, done.error) == ("here", "done", None)
    assert done.missing == done.applied == in_gap
    assert done.found > done.missing  # moves the live job journalled were listed too
    assert done.cursor == iso(wide_to)
    assert {d["kind"] for d in outcome.differences} == {"missing"}
    assert len(outcome.differences) == in_gap

    run(cfg, "outbox.send")
    assert sent_moves(cfg) == sim_moves(sim, since)  # every move once, none twice
    assert checkpoints(cfg) == live
    with Store.open(cfg.db_path, migrate=False) as store:
        (cov,) = coverage_report(store, "instock.moves")
    assert cov.gaps == ()
    assert cov.backfills == done.steps > 1

    again = start_backfill(cfg, "instock.moves", wide_from, wide_to, dry_run=False).backfill
    assert (again.status, again.found, again.missing, again.applied) == (
        "done",
        done.found,
        0,
        0,
    )
    run(cfg, "outbox.send")
    assert sent_moves(cfg) == sim_moves(sim, since)


def test_a_dry_run_shows_the_differences_and_changes_nothing(
    cfg: Settings, sim: InstockSim, clock: Clock
) -> None:
    """`--dry-run`: the same differences found, and no journal row, outbox intent, ledger
    row, reject or checkpoint written (only the backfill's own rows)."""
    gap_from, gap_to, in_gap, _ = make_gap(cfg, sim, clock)

    def world() -> tuple[object, ...]:
        return (
            query(cfg, "SELECT * FROM instock_moves ORDER BY id"),
            query(cfg, "SELECT id, status FROM outbox ORDER BY id"),
            query(cfg, "SELECT * FROM pull_windows ORDER BY id"),
            query(cfg, "SELECT id FROM rejects"),
            checkpoints(cfg),
        )

    before = world()
    outcome = start_backfill(cfg, "instock.moves", gap_from, gap_to, dry_run=True)
    assert (outcome.backfill.status, outcome.backfill.dry_run) == ("done", True)
    assert outcome.backfill.missing == in_gap
    assert outcome.backfill.applied == 0
    assert [d["applied"] for d in outcome.differences] == [False] * in_gap
    moved = {d["detail"]["article_id"] for d in outcome.differences}
    assert len(moved) == in_gap
    assert world() == before


def test_a_second_backfill_of_a_stream_is_refused_while_one_is_pending(
    cfg: Settings, sim: InstockSim, clock: Clock
) -> None:
    """With a daemon holding the lock, a request is left for it; a second request of the
    same stream is refused (BusyError, exit 75) while the first is requested, and taken
    once that one has ended; another stream is not held up."""
    now = clock.now()
    daemon = StateLock(cfg.daemon.state_dir)
    daemon.acquire()
    try:
        first = start_backfill(cfg, "instock.moves", now - timedelta(hours=2), now, dry_run=True)
        assert (first.where, first.backfill.status) == ("daemon", "requested")
        with pytest.raises(BusyError) as refused:
            start_backfill(cfg, "instock.moves", now - timedelta(hours=1), now, dry_run=False)
        assert refused.value.exit_code == 75
        assert f"backfill {first.backfill.id}" in str(refused.value)
        other = start_backfill(cfg, "instock.orders", now - timedelta(hours=1), now, dry_run=True)
        assert other.backfill.status == "requested"
    finally:
        daemon.release()
    assert query(cfg, "SELECT count(*) AS n FROM backfills")[0]["n"] == 2
    run(cfg, "backfill.requests")  # the daemon's job takes both
    with Store.open(cfg.db_path, migrate=False) as store:
        assert get_backfill(store, first.backfill.id).status == "done"
        assert get_backfill(store, other.backfill.id).status == "done"
    third = start_backfill(cfg, "instock.moves", now - timedelta(hours=1), now, dry_run=True)
    assert third.backfill.status == "done"


def test_periods_that_cannot_be_backfilled_are_refused(cfg: Settings, clock: Clock) -> None:
    now = clock.now()
    cases = [
        ("instock.articles", now - timedelta(hours=1), now, "no backfill for it"),
        ("instock.moves", now, now - timedelta(hours=1), "is not after"),
        ("instock.moves", now - timedelta(hours=1), now + timedelta(hours=1), "in the future"),
    ]
    for stream, start, end, reason in cases:
        with pytest.raises(UsageError, match=reason):
            start_backfill(cfg, stream, start, end, dry_run=False)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    with pytest.raises(ConfigError, match=r"connectors\.dsorder\.enabled is false"):
        start_backfill(cfg, "dsorder.pull", midnight, now, dry_run=False)
    assert query(cfg, "SELECT count(*) AS n FROM backfills")[0]["n"] == 0


# --- instock.orders -------------------------------------------------------------------------


def test_orders_missing_or_changed_in_the_mirror_are_updated_in_the_period(
    cfg: Settings, sim: InstockSim, clock: Clock
) -> None:
    """A reception registered after the mirror's walk is missing, one decanted since has
    an ASN the mirror lacks: the backfill of the last hours mirrors both, leaves orders
    placed before the period alone, and the live cursor where it was."""
    articles = stocked(sim, 2)
    clock.advance(60)
    changed = sim.receive([(articles[0], 4)], order_id="RCV-B1")
    run(cfg, "instock.orders")
    clock.advance(60)
    sim.decant(changed, {"asn": "ASN-77"})
    missing = sim.receive([(articles[1], 2)], order_id="RCV-B2")
    mirrored = {r["order_id"]: r for r in query(cfg, "SELECT * FROM instock_orders")}
    assert missing not in mirrored
    assert mirrored[changed]["attributes"] == "{}"
    total_before = len(mirrored)
    live = checkpoints(cfg)

    outcome = start_backfill(
        cfg, "instock.orders", clock.now() - timedelta(minutes=5), clock.now(), dry_run=False
    )
    done = outcome.backfill
    assert (done.status, done.found, done.missing, done.changed, done.applied) == (
        "done",
        2,
        1,
        1,
        2,
    )
    found = {(d["kind"], d["key"]) for d in outcome.differences}
    assert found == {("missing", missing), ("changed", changed)}
    (diff,) = [d for d in outcome.differences if d["kind"] == "changed"]
    assert diff["detail"] == {"attributes": [{}, {"asn": "ASN-77"}]}
    mirrored = {r["order_id"]: r for r in query(cfg, "SELECT * FROM instock_orders")}
    assert len(mirrored) == total_before + 1
    assert mirrored[changed]["attributes"] == '{"asn": "ASN-77"}'
    assert checkpoints(cfg) == live
    rows = query(cfg, "SELECT * FROM pull_windows WHERE backfill_id = ?", [done.id])
    assert [(r["stream"], r["window_from"], r["window_to"]) for r in rows if r["window_to"]] == [
        ("instock.orders", done.period_from, done.period_to)
    ]


# --- dsorder.pull ---------------------------------------------------------------------------

ins = loop.ins
ds = loop.ds
make_cfg = loop.make_cfg


def test_dsorder_orders_missing_today_are_taken_once_and_earlier_days_refused(
    ins: InstockSim, ds: DSOrderSim, make_cfg: Callable[..., Settings]
) -> None:
    """DSOrder lists only today: a period reaching into yesterday is refused, naming the
    site's day; within today, an order the live pull never stored is taken as the pull
    takes it (stored, its Instock create queued once), an order listed with other lines
    is kept as taken and alerted as the pull alerts it, and a second backfill does
    nothing more."""
    articles = loop.stocked(ins)
    cfg = make_cfg(catalog=articles)
    first = ds.submit_order(lines=[(articles[0], 2), (articles[1], 1)])
    loop.run(cfg, "dsorder.pull")
    second = ds.submit_order(lines=[(articles[0], 1)])  # the pulls that would see it failed
    with ds.state.lock:
        ds.state.orders[first].lines[1000].quantity = 5
    now = datetime.now(UTC)
    with pytest.raises(UsageError, match="lists only the orders submitted today"):
        start_backfill(cfg, "dsorder.pull", now - timedelta(days=1), now, dry_run=False)
    live = checkpoints(cfg)
    start = max(now - timedelta(hours=1), _local_midnight(ds))
    outcome = start_backfill(cfg, "dsorder.pull", start, now, dry_run=False)
    done = outcome.backfill
    assert (done.status, done.found, done.missing, done.changed, done.applied) == (
        "done",
        2,
        1,
        1,
        2,
    )
    found = {(d["kind"], d["key"]): d["detail"] for d in outcome.differences}
    assert set(found) == {("missing", second), ("changed", first)}
    assert found[("changed", first)]["lines"] == ["line 1000 quantity 2 -> 5"]
    orders = {r["order_id"]: r for r in query(cfg, "SELECT * FROM dsorder_orders")}
    assert set(orders) == {first, second}
    kept = query(cfg, "SELECT quantity FROM dsorder_lines WHERE order_id = ?", [first])
    assert [r["quantity"] for r in kept] == ["2", "1"]  # kept as taken
    alerts = query(cfg, "SELECT subject FROM alerts WHERE kind = 'dsorder_order_changed'")
    assert [a["subject"] for a in alerts] == [first]
    creates = query(cfg, "SELECT idempotency_key FROM outbox WHERE kind = 'orders.create'")
    assert len(creates) == 2
    assert checkpoints(cfg) == live
    again = start_backfill(cfg, "dsorder.pull", start, now, dry_run=False).backfill
    assert (again.found, again.missing, again.changed, again.applied) == (2, 0, 0, 0)
    assert len(query(cfg, "SELECT id FROM outbox WHERE kind = 'orders.create'")) == 2
    assert len(query(cfg, "SELECT id FROM alerts WHERE kind = 'dsorder_order_changed'")) == 1


def _local_midnight(ds: DSOrderSim) -> datetime:
    local = ds.now_local()
    return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)


def test_a_running_backfill_cancelled_stops_before_its_next_window(
    cfg: Settings, clock: Clock
) -> None:
    """`syncd backfill --cancel` while the job runs it: the window in hand is committed,
    no further one is read, and the backfill stays cancelled (not done)."""
    from syncd.jobs import REGISTRY
    from syncd.jobs.runner import run_job
    from syncd.state.backfills import cancel_backfill, request_backfill

    now = clock.now()
    with Store.open(cfg.db_path, migrate=False) as store:
        asked = request_backfill(
            store, "instock.moves", iso(now - timedelta(hours=20)), iso(now), dry_run=False
        )

    def cancel_after_the_first(_stage: str, done: int, _total: int | None = None) -> None:
        if done == 1:  # from another connection, as the command does
            with Store.open(cfg.db_path, migrate=False) as other:
                cancel_backfill(other, asked.id)

    result = run_job(
        REGISTRY["backfill.requests"], cfg, trigger="test", progress=cancel_after_the_first
    )
    assert (result.status, result.counts.get("backfills_cancelled")) == ("ok", 1)
    with Store.open(cfg.db_path, migrate=False) as store:
        ended = get_backfill(store, asked.id)
    assert (ended.status, ended.steps) == ("cancelled", 1)  # of 5 four-hour windows
    assert ended.cursor == iso(now - timedelta(hours=16))


def test_an_orders_backfill_whose_cursor_is_refused_walks_again_from_the_start(
    cfg: Settings, sim: InstockSim, clock: Clock
) -> None:
    """A backfill left running with a cursor Instock no longer accepts (a 400) walks the
    list again from its start and ends with the counts of one whole walk."""
    from syncd.jobs import REGISTRY
    from syncd.jobs.runner import run_job
    from syncd.state.backfills import request_backfill

    articles = stocked(sim, 1)
    sim.receive([(articles[0], 1)], order_id="RCV-C1")
    now = clock.now()
    with Store.open(cfg.db_path, migrate=False) as store:
        asked = request_backfill(
            store, "instock.orders", iso(now - timedelta(days=40)), iso(now), dry_run=False
        )
        with store.transaction():  # as a kill would leave it, with a stale cursor
            store.db.execute(
                "UPDATE backfills SET status = 'running', cursor = 'c3RhbGU', found = 7 "
                "WHERE id = ?",
                [asked.id],
            )
    result = run_job(REGISTRY["backfill.requests"], cfg, trigger="test")
    assert result.status == "ok", result.error
    with Store.open(cfg.db_path, migrate=False) as store:
        done = get_backfill(store, asked.id)
    with sim.state.lock:
        placed = [o.placed_at for o in sim.state.orders.values()]
    in_period = sum(1 for p in placed if now - timedelta(days=40) <= parse_iso(p) <= now)
    assert (done.status, done.found, done.missing, done.applied) == (
        "done",
        in_period,
        in_period,
        in_period,
    )
    assert "RCV-C1" in {r["order_id"] for r in query(cfg, "SELECT order_id FROM instock_orders")}
