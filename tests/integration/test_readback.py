"""Read back before resending, per write kind, against the simulators' lost-answer faults.

Each test queues one write (Instock order create / update / cancel, article upload /
update; DSOrder fulfil / close), makes every request of its first attempt end without an
answer, either after the remote applied it (`apply_then_drop`) or before (`drop_before_apply`),
and lets the next attempt run. What is asserted: the write took effect exactly once, counted
where the simulator's handler applied it (never through an "already exists" answer: Instock
takes a duplicate order id here, `duplicate_order_ids="accept"`), how the read-back decided
(`syncd_readback_total` and the `outbox.send` run's counts), and the outbox row.

The HTTP client keeps its usual retry policy (4 attempts): a non-idempotent create is not
repeated by it after a possibly applied failure, and an idempotent write (PUT, DELETE) whose
every client attempt was dropped ends unclear the same way.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import syncd.jobs  # noqa: F401 - fills the job registry
from syncd import metrics
from syncd.clock import iso
from syncd.config import Settings
from syncd.jobs import REGISTRY
from syncd.jobs.runner import run_job
from syncd.sandbox.base import ManualClock, Request, Response
from syncd.sandbox.dsorder import DSOrderSim
from syncd.sandbox.instock import InstockSim
from syncd.state import Store
from tests.configs import FAST_BACKOFF, connector_for, fast_retry, sim_settings
from tests.integration.jobkit import csv_text, drop, open_rejects, query, run

SEED = 21
CLIENT_ATTEMPTS = 4
FAULTS = ("apply_then_drop", "drop_before_apply")
VERDICT = {"apply_then_drop": "applied", "drop_before_apply": "not_applied"}
RUN_COUNT = {"applied": "readback_applied", "not_applied": "readback_resent"}
ROUTES = {
    "articles.upload": "POST /v1/articles",
    "articles.update": "PUT /v1/articles/{article_id}",
    "orders.create": "POST /v1/{site_id}/orders",
    "orders.update": "PUT /v1/{site_id}/orders/{order_id}",
    "orders.cancel": "DELETE /v1/{site_id}/orders/{order_id}/status",
    "fulfill": "POST /orders/{order_id}/fulfill",
    "close": "POST /orders/{order_id}/close",
}


# --- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture
def sim() -> Iterator[InstockSim]:
    with InstockSim(seed=SEED, articles=30, retry_after=0, duplicate_order_ids="accept") as s:
        yield s


@pytest.fixture
def cfg(sim: InstockSim, tmp_path: Path) -> Settings:
    return sim_settings(
        tmp_path / "a",
        connector_for(sim, page_size=100, retry=fast_retry(CLIENT_ATTEMPTS)),
        outbox=FAST_BACKOFF,
    )


Applied = Counter[str]


def count_applied(server: Any, route: str, key: Callable[[Request], list[str]]) -> Applied:
    """Per natural key, how often the handler of `route` applied a request (a 2xx answer),
    whatever became of the answer afterwards."""
    applied: Applied = Counter()
    router = server.router
    for index, r in enumerate(router._routes):
        if r.key == route:
            original = r.handler

            def counting(request: Request, original: Any = original) -> Response:
                response: Response = original(request)
                if response.status < 300:
                    applied.update(key(request))
                return response

            router._routes[index] = dataclasses.replace(r, handler=counting)
    return applied


def order_key(request: Request) -> list[str]:
    return [request.params.get("order_id") or request.json["order_id"]]


def article_keys(request: Request) -> list[str]:
    if "article_id" in request.params:
        return [request.params["article_id"]]
    return [a["article_id"] for a in request.json["articles"]]


def readbacks(destination: str, verdict: str) -> float:
    sample = metrics.REGISTRY.get_sample_value(
        "syncd_readback_total", {"destination": destination, "outcome": verdict}
    )
    return sample or 0.0


def due_now(settings: Settings) -> None:
    """The outbox backoff over (without waiting for it)."""
    with Store.open(settings.db_path, migrate=False) as store:
        store.db.execute(
            "UPDATE outbox SET next_attempt_at = ? WHERE status = 'pending'",
            [iso(datetime(2000, 1, 1, tzinfo=UTC))],
        )


def intent(settings: Settings, kind: str) -> dict[str, Any]:
    rows = query(
        settings, "SELECT status, unclear, result FROM outbox WHERE kind = ? ORDER BY id", [kind]
    )
    return rows[-1]


def lose_answers(server: Any, route: str, fault: str) -> None:
    """Every client attempt of the next send loses its answer; the first one after applying
    it for `apply_then_drop`, none of them applying it for `drop_before_apply`."""
    later = ["drop_before_apply"] * (CLIENT_ATTEMPTS - 1)
    server.faults.script(route, [fault, *later])


def send(settings: Settings) -> tuple[Counter[str], dict[str, int]]:
    """One outbox.send run: its in-process counts and the counts stored in `runs`."""
    result = run_job(REGISTRY["outbox.send"], settings, trigger="test")
    assert result.status == "ok", result.error
    (row,) = query(settings, "SELECT counts FROM runs WHERE run_id = ?", [result.run_id])
    return Counter(result.counts), json.loads(row["counts"] or "{}")


def stocked_articles(sim: InstockSim, n: int) -> list[str]:
    with sim.state.lock:
        inventory = sim.state.inventory[sim.site_id]
        found = [a for a in sim.state.article_ids if a in inventory and inventory[a].free >= 5]
    return found[:n]


def fresh_article(sim: InstockSim) -> str:
    """An article Instock has without moves (still updatable)."""
    with sim.state.lock:
        return next(
            a
            for a in sim.state.article_ids
            if not sim.state.has_moves(a) and not sim.state.articles[a]["is_serial_numbered"]
        )


ORDERS_HEADER = "action,order_id,line_id,article_id,qty"


def order_csv(order_id: str, lines: list[tuple[str, int]]) -> str:
    rows = [f"create,{order_id},{order_id}-{n},{a},{q}" for n, (a, q) in enumerate(lines, 1)]
    return csv_text(ORDERS_HEADER, rows)


def articles_csv(rows: list[tuple[str, str]]) -> str:
    header = "article_id,name,dim_x,dim_y,dim_z,dim_uom"
    return csv_text(header, [f"{a},{n},10,20,30,cm" for a, n in rows])


def order_lines(sim: InstockSim, order_id: str) -> list[tuple[str, str, int]]:
    with sim.state.lock:
        return [(ln.line_id, ln.article_id, ln.qty) for ln in sim.state.orders[order_id].lines]


# --- the scenario per Instock kind ------------------------------------------------------------


@dataclasses.dataclass
class Case:
    """One queued write: its kind, the natural key it is counted under, and a check of the
    remote end state once it took effect."""

    kind: str
    key: str
    check: Callable[[], None]


def queue_write(kind: str, sim: InstockSim, cfg: Settings) -> Case:
    """Bring the state up to the point where exactly one intent of `kind` is pending."""
    a, b = stocked_articles(sim, 2)
    if kind == "articles.upload":
        drop(cfg, "articles", articles_csv([("RBNEW1", "New one"), ("RBNEW2", "New two")]))
        run(cfg, "instock.articles")

        def uploaded() -> None:
            with sim.state.lock:
                assert sim.state.articles["RBNEW1"]["name"] == "New one"
                assert sim.state.articles["RBNEW2"]["name"] == "New two"

        return Case(kind, "RBNEW1", uploaded)
    if kind == "articles.update":
        article = fresh_article(sim)
        drop(cfg, "articles", articles_csv([(article, "Renamed by the host")]))
        run(cfg, "instock.articles")

        def renamed() -> None:
            with sim.state.lock:
                assert sim.state.articles[article]["name"] == "Renamed by the host"

        return Case(kind, article, renamed)
    drop(cfg, "orders", order_csv("RB-1", [(a, 2)]))
    run(cfg, "instock.orders")
    if kind == "orders.create":

        def created() -> None:
            assert order_lines(sim, "RB-1") == [("RB-1-1", a, 2)]
            with sim.state.lock:
                assert sim.state.duplicate_orders == []
            assert sim.stock(a).registered == 2

        return Case(kind, "RB-1", created)
    send(cfg)
    assert intent(cfg, "orders.create")["status"] == "sent"  # the create, cleanly
    if kind == "orders.update":
        drop(cfg, "orders", order_csv("RB-1", [(a, 3), (b, 1)]))
        run(cfg, "instock.orders")

        def updated() -> None:
            assert order_lines(sim, "RB-1") == [("RB-1-1", a, 3), ("RB-1-2", b, 1)]
            assert (sim.stock(a).registered, sim.stock(b).registered) == (3, 1)

        return Case(kind, "RB-1", updated)
    assert kind == "orders.cancel", kind
    drop(cfg, "orders", csv_text(ORDERS_HEADER, ["cancel,RB-1,,,"]))
    run(cfg, "instock.orders")

    def canceled() -> None:
        with sim.state.lock:
            assert sim.state.orders["RB-1"].status == "canceled"
        assert sim.stock(a).registered == 0

    return Case(kind, "RB-1", canceled)


INSTOCK_KINDS = ("orders.create", "orders.update", "orders.cancel", "articles.upload")


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("kind", [*INSTOCK_KINDS, "articles.update"])
def test_an_unclear_instock_write_takes_effect_exactly_once(
    kind: str, fault: str, sim: InstockSim, cfg: Settings
) -> None:
    """The answer of every client attempt is lost (after applying, or before): the intent
    stays pending and unclear; the next attempt reads the remote by natural key and marks
    it done (applied) or sends it once (not applied). Either way the handler applied the
    write exactly once."""
    case = queue_write(kind, sim, cfg)
    route = ROUTES[kind]
    keys = article_keys if kind.startswith("articles.") else order_key
    applied = count_applied(sim.server, route, keys)
    lose_answers(sim.server, route, fault)

    counts, _ = send(cfg)
    assert counts["retried"] == 1, counts
    assert intent(cfg, kind)["status"] == "pending"
    assert intent(cfg, kind)["unclear"] == 1
    assert applied[case.key] == (1 if fault == "apply_then_drop" else 0)
    non_idempotent = kind in ("orders.create", "articles.upload")
    requests = sim.count(route)
    assert requests == (1 if non_idempotent else CLIENT_ATTEMPTS)
    sim.faults.clear()
    due_now(cfg)
    verdict = VERDICT[fault]
    before = readbacks("instock", verdict)

    counts, stored = send(cfg)
    assert applied[case.key] == 1  # exactly once, whichever way
    case.check()
    assert intent(cfg, kind)["status"] == "sent"
    if verdict == "applied":
        assert sim.count(route) == requests  # not sent again
        if kind != "articles.upload":  # a bulk is "sent" with its articles accepted
            assert counts["already_done"] == 1, counts
    else:
        assert sim.count(route) == requests + 1
        assert counts["pushed"] >= 1, counts
    reads = 2 if kind == "articles.upload" else 1  # a bulk reads each of its articles
    assert readbacks("instock", verdict) == before + reads
    assert stored[RUN_COUNT[verdict]] == reads
    assert counts[RUN_COUNT[verdict]] == reads
    assert open_rejects(cfg, "") == []


def test_an_unclear_bulk_is_settled_article_by_article(sim: InstockSim, cfg: Settings) -> None:
    """A bulk of three whose answer was lost after Instock took it; meanwhile one article
    was deleted and one renamed by someone else. The read-back accepts the one found as
    intended, uploads only the missing one, and refuses the renamed one with both versions."""
    rows = [("RBA", "Alpha"), ("RBB", "Bravo"), ("RBC", "Charlie")]
    drop(cfg, "articles", articles_csv(rows))
    run(cfg, "instock.articles")
    applied = count_applied(sim.server, ROUTES["articles.upload"], article_keys)
    sim.faults.script(ROUTES["articles.upload"], ["apply_then_drop"])
    assert send(cfg)[0]["retried"] == 1
    with sim.state.lock:
        del sim.state.articles["RBB"]
        sim.state.article_ids.remove("RBB")
        sim.state.put_article({**sim.state.articles["RBC"], "name": "Renamed elsewhere"})
    due_now(cfg)
    diverged = readbacks("instock", "diverged")

    counts, stored = send(cfg)
    assert applied == Counter({"RBA": 1, "RBB": 2, "RBC": 1})  # RB-B sent again, alone
    assert (stored["readback_applied"], stored["readback_resent"]) == (1, 1)
    assert stored["readback_diverged"] == 1
    assert readbacks("instock", "diverged") == diverged + 1
    with sim.state.lock:
        assert sim.state.articles["RBB"]["name"] == "Bravo"
        assert sim.state.articles["RBC"]["name"] == "Renamed elsewhere"  # not overwritten
    statuses = query(cfg, "SELECT article_id, status FROM instock_article_sync ORDER BY 1")
    assert [(r["article_id"], r["status"]) for r in statuses] == [
        ("RBA", "accepted"),
        ("RBB", "accepted"),
        ("RBC", "refused"),
    ]
    (reject,) = open_rejects(cfg, "instock:articles")
    assert reject["reference"] == "article RBC"
    assert "name" in reject["reason"]
    payload = reject["payload"]
    payload = json.loads(payload) if isinstance(payload, str) else payload
    assert payload["intended"]["name"] == "Charlie"
    assert payload["found"]["name"] == "Renamed elsewhere"
    assert [d["field"] for d in payload["differences"]] == ["name"]
    assert counts["pushed"] >= 1


def test_an_unclear_cancel_of_an_order_since_reserved_is_rejected_with_both_versions(
    sim: InstockSim, cfg: Settings
) -> None:
    """The cancel's answer is lost before Instock applied it, and the floor reserves the
    order meanwhile: the read-back finds it past `registered`, so no cancel is sent again;
    a reject says what was intended and what was found."""
    queue_write("orders.cancel", sim, cfg)
    route = ROUTES["orders.cancel"]
    lose_answers(sim.server, route, "drop_before_apply")
    send(cfg)
    sim.faults.clear()
    sim.advance_order("RB-1")  # reserved
    requests = sim.count(route)
    due_now(cfg)

    counts, stored = send(cfg)
    assert counts["rejected"] == 1
    assert stored["readback_diverged"] == 1
    assert sim.count(route) == requests
    (reject,) = open_rejects(cfg, "outbox:instock")
    payload = reject["payload"]
    payload = json.loads(payload) if isinstance(payload, str) else payload
    assert payload["intended"] == {"order_status": "canceled"}
    assert payload["found"] == {"order_status": "reserved"}


def test_a_read_back_that_fails_keeps_the_intent_unclear(sim: InstockSim, cfg: Settings) -> None:
    """The read itself is refused (429s: a clear failure, which alone would not mark an
    attempt unclear): the intent stays unclear, so the attempt after that reads again
    instead of posting blind."""
    case = queue_write("orders.create", sim, cfg)
    applied = count_applied(sim.server, ROUTES["orders.create"], order_key)
    sim.faults.script(ROUTES["orders.create"], ["apply_then_drop"])
    send(cfg)
    due_now(cfg)
    sim.faults.script(f"GET /v1/{sim.site_id}/orders/RB-1", ["429"] * CLIENT_ATTEMPTS)
    counts, _ = send(cfg)
    assert counts["retried"] == 1
    assert intent(cfg, "orders.create")["unclear"] == 1
    due_now(cfg)
    counts, _ = send(cfg)
    assert counts["already_done"] == 1
    assert applied["RB-1"] == 1
    case.check()


# --- DSOrder ---------------------------------------------------------------------------------

ZONE = "Europe/Amsterdam"


@pytest.fixture
def ds() -> Iterator[DSOrderSim]:
    with DSOrderSim(seed=11, clock=ManualClock(), tz=ZONE, retry_after=0) as s:
        yield s


@pytest.fixture
def loop_cfg(sim: InstockSim, ds: DSOrderSim, tmp_path: Path) -> Settings:
    bounds = {"retry": fast_retry(CLIENT_ATTEMPTS), "timeouts": {"connect": 2, "read": 5}}
    settings = sim_settings(
        tmp_path / "loop",
        {**connector_for(sim, **bounds), **connector_for(ds, **bounds)},
        daemon={"site_timezone": ZONE},
        outbox={**FAST_BACKOFF, "max_attempts": 100},
    )
    with sim.state.lock:
        articles = sorted(a for a in sim.state.articles if sim.stock(a).free >= 30)
    rows = "\n".join(["article_id,name,whole_units", *(f"{a},A {a},true" for a in articles)])
    (settings.host_dir / "inbox" / "articles-0001.csv").write_text(rows + "\n")
    run(settings, "host.inbox")
    return settings


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("kind", ["fulfill", "close"])
def test_an_unclear_dsorder_write_is_read_back_from_todays_list(
    kind: str, fault: str, sim: InstockSim, ds: DSOrderSim, loop_cfg: Settings
) -> None:
    """Every attempt of a fulfil or close loses its answer. The next attempt reads today's
    submitted list first: a close found applied (the order no longer listed) is done
    without another close; otherwise it is sent (a fulfil carries totals: the list cannot
    show them, and sending them again changes nothing)."""
    cfg = loop_cfg
    ds.closed_listing = "status"  # else a closed order is listed like an open one
    with sim.state.lock:
        article = sorted(a for a in sim.state.articles if sim.stock(a).free >= 30)[0]
    order_id = ds.submit_order(lines=[(article, 2)])
    for job in ("dsorder.pull", "outbox.send"):
        run(cfg, job)
    sim.advance_order(f"DS-{order_id}")
    sim.advance_order(f"DS-{order_id}")
    closes = count_applied(ds.server, ROUTES["close"], lambda r: [r.params["order_id"]])
    fulfils = count_applied(ds.server, ROUTES["fulfill"], lambda r: [r.params["order_id"]])
    route = ROUTES[kind]
    lose_answers(ds.server, route, fault)
    run(cfg, "dsorder.progress")
    counts, _ = send(cfg)
    assert counts["retried"] == 1, counts
    assert intent(cfg, kind)["unclear"] == 1
    ds.faults.clear()
    due_now(cfg)
    lists = ds.count("GET /orders/submitted")
    requests = ds.count(route)
    verdict = VERDICT[fault] if kind == "close" else "not_applied"
    before = readbacks("dsorder", verdict)

    counts, stored = send(cfg)
    assert ds.count("GET /orders/submitted") == lists + 1  # the read-back
    assert readbacks("dsorder", verdict) == before + 1
    assert stored[RUN_COUNT[verdict]] == 1
    assert intent(cfg, kind)["status"] == "sent"
    if verdict == "applied":
        assert ds.count(route) == requests
    else:
        assert ds.count(route) == requests + 1
    run(cfg, "outbox.send")
    assert closes[order_id] == 1
    assert ds.closes(order_id) == 1
    # A fulfil found not applied is sent again: twice when the first had been applied.
    resent_totals = kind == "fulfill" and fault == "apply_then_drop"
    assert fulfils[order_id] == (2 if resent_totals else 1)
    with ds.state.lock:
        lines = ds.state.orders[order_id].lines
        assert {n: (ln.fulfilled, ln.finished) for n, ln in lines.items()} == {1000: (2, True)}
    assert query(cfg, "SELECT state FROM dsorder_orders") == [{"state": "closed"}]
    assert query(cfg, "SELECT * FROM rejects") == []


def test_unclear_dsorder_intents_of_one_drain_share_one_read_of_the_list(
    sim: InstockSim, ds: DSOrderSim, loop_cfg: Settings
) -> None:
    """Three orders whose close answers were lost after DSOrder closed them: the next drain
    reads today's list once for all three, and marks each done without closing again."""
    cfg = loop_cfg
    ds.closed_listing = "status"
    with sim.state.lock:
        article = sorted(a for a in sim.state.articles if sim.stock(a).free >= 30)[0]
    orders = [ds.submit_order(lines=[(article, 1)]) for _ in range(3)]
    for job in ("dsorder.pull", "outbox.send"):
        run(cfg, job)
    for order_id in orders:
        sim.advance_order(f"DS-{order_id}")
        sim.advance_order(f"DS-{order_id}")
    ds.faults.script(ROUTES["close"], ["apply_then_drop"] * 3 * CLIENT_ATTEMPTS)
    run(cfg, "dsorder.progress")
    assert send(cfg)[0]["retried"] == 3
    ds.faults.clear()
    due_now(cfg)
    lists, closes = ds.count("GET /orders/submitted"), ds.count(ROUTES["close"])

    counts, stored = send(cfg)
    assert ds.count("GET /orders/submitted") == lists + 1
    assert ds.count(ROUTES["close"]) == closes
    assert counts["already_done"] == 3
    assert stored["readback_applied"] == 3
    assert all(ds.closes(o) == 1 for o in orders)


def test_an_order_read_back_with_its_placed_at_rewritten_is_applied(tmp_path: Path) -> None:
    """The document does not say Instock keeps the `placed_at` text it was sent; under the
    other reading (the same instant answered as whole seconds with a Z) a lost create is
    still recognised as applied, not rejected as diverged."""
    with InstockSim(
        seed=SEED, articles=30, retry_after=0, duplicate_order_ids="accept",
        placed_at_text="normalized",
    ) as sim:  # fmt: skip
        cfg = sim_settings(
            tmp_path / "n",
            connector_for(sim, page_size=100, retry=fast_retry(CLIENT_ATTEMPTS)),
            outbox=FAST_BACKOFF,
        )
        (a,) = stocked_articles(sim, 1)
        header = ORDERS_HEADER + ",placed_at"
        drop(
            cfg, "orders", csv_text(header, [f"create,RB-T,RB-T-1,{a},2,2026-12-04T07:38:39+01:00"])
        )
        run(cfg, "instock.orders")
        route = ROUTES["orders.create"]
        applied = count_applied(sim.server, route, order_key)
        lose_answers(sim.server, route, "apply_then_drop")
        send(cfg)
        with sim.state.lock:
            assert sim.state.orders["RB-T"].placed_at == "2026-12-04T06:38:39Z"
        sim.faults.clear()
        due_now(cfg)
        counts, _ = send(cfg)
        assert applied["RB-T"] == 1
        assert counts["readback_applied"] == 1, counts
        assert intent(cfg, "orders.create")["status"] == "sent"
        assert open_rejects(cfg, "") == []
