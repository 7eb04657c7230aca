"""The plans of dsorder.pull and dsorder.progress, as values: no server, no state DB.

Each case builds the plain data a job reads (a DSOrder order, stored orders and lines,
open rejects and alerts, an Instock poll) and checks the `Plan` decided from it: which
rows change, which intents and rejects it records (with their field), which alerts.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.clock import iso
from syncd.connectors.dsorder import DsOrder, RecordReject, Submitted
from syncd.errors import NotFoundError, RefusedError
from syncd.jobs.dsorder.progress_plan import (
    TERMINAL,
    catch_up_next,
    moves_window,
    newest_moves,
    plan_progress,
    polls_due,
    sweep_before,
    sweep_quota,
)
from syncd.jobs.dsorder.pull_plan import (
    ESCALATED_ALERT,
    HELD_ALERT,
    ORDER_REJECT_SOURCE,
    REJECT_SOURCE,
    OpenReject,
    PullRules,
    midnight_gap_alert,
    plan_hold_alerts,
    plan_invalid_records,
    plan_new_order,
    plan_release,
    plan_replan,
)
from syncd.jobs.shared.dsorder_plan import (
    AttributeMap,
    CatalogEntry,
    IdMapping,
    LineCheck,
    check_line,
    uncovered_interval,
)
from syncd.jobs.shared.instock_follow import split_by_status
from syncd.state import NewReject
from syncd.state.mirror.dsorder import (
    FollowedOrder,
    HeldOrder,
    HoldOrder,
    InsertOrder,
    LineMapping,
    MapLines,
    MarkClosing,
    MarkCreated,
    MarkReleased,
    RecordReported,
    ReportedLine,
    StoredLine,
    StoredOrder,
)
from syncd.state.mirror.instock import QueueDSOrderCreate
from syncd.state.plan import OpenAlert, Plan, ResolveAlerts

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
AT = iso(NOW)
CATALOG = {
    "A": CatalogEntry("INS-A"),
    "B": CatalogEntry("INS-B", whole_units=False),
    "KG": CatalogEntry("INS-KG", units_per_order_unit=Decimal(100)),
}
RULES = PullRules(IdMapping(), AttributeMap(), "hold")
MS = 1_772_400_000_000  # 2026-03-01T21:20:00Z in DSOrder's milliseconds


def ds_order(*lines: tuple[int, str, Any], order_id: str = "100034") -> DsOrder:
    return DsOrder.model_validate(
        {
            "order_id": order_id,
            "supplier_id": "SU-2",
            "store_id": "ST-1",
            "order_date": MS,
            "delivery_date": MS + 86_400_000,
            "details": [
                {"line_number": n, "article_id": a, "quantity": q, "min_purchase_shelf_life": MS}
                for n, a, q in lines
            ],
        }
    )


def checks_of(order: DsOrder) -> dict[int, LineCheck]:
    return {ln.line_number: check_line(ln.article_id, ln.quantity, CATALOG) for ln in order.details}


def of_type(plan: Plan, kind: type) -> list[Any]:
    return [c for c in plan.changes if isinstance(c, kind)]


# --- dsorder.pull: a new order ---------------------------------------------------------


def test_a_new_order_whose_lines_all_fit_is_stored_and_its_instock_create_queued() -> None:
    """Stored (held, lines rejected) then mapped and created in the same plan: one create
    intent keyed by the Instock id, with whole units and the delivery date as cutoff."""
    order = ds_order((1000, "A", 3), (2000, "KG", Decimal("1.5")))
    decided = plan_new_order(order, checks_of(order), RULES, NOW)
    plan = decided.plan
    assert (decided.action, decided.instock_order_id, decided.lines) == ("create", "DS-100034", 2)
    insert, mapped, created, queued = plan.changes
    assert isinstance(insert, InsertOrder)
    assert (insert.order_date, insert.instock_order_id, insert.at) == (
        "2026-03-01T21:20:00.000Z",
        "DS-100034",
        AT,
    )
    assert [(ln.line_number, ln.quantity) for ln in insert.lines] == [(1000, "3"), (2000, "1.5")]
    assert mapped == MapLines(
        "100034",
        (
            LineMapping(1000, True, None, "DS-100034-1000", "INS-A", 3, None),
            LineMapping(2000, True, None, "DS-100034-2000", "INS-KG", 150, "100"),
        ),
    )
    assert created == MarkCreated("100034", None, AT)
    assert queued == QueueDSOrderCreate("DS-100034", AT)
    (intent,) = plan.intents
    assert (intent.destination, intent.kind, intent.order_key, intent.idempotency_key) == (
        "instock",
        "orders.create",
        "order:DS-100034",
        "order:DS-100034:create",
    )
    assert intent.payload == {
        "order": {
            "order_id": "DS-100034",
            "placed_at": "2026-03-01T21:20:00Z",
            "attributes": {"cutoff_time": "2026-03-02T21:20:00Z"},
            "lines": [
                {"line_id": "DS-100034-1000", "article_id": "INS-A", "qty": 3},
                {"line_id": "DS-100034-2000", "article_id": "INS-KG", "qty": 150},
            ],
        }
    }
    assert plan.rejects == plan.rejects_once == ()
    assert plan.checkpoints == ()


def test_a_line_instock_cannot_take_holds_the_order_with_a_reject_naming_its_field() -> None:
    """Policy hold: no intent; the order is held saying why, and each bad line is a reject
    (once) carrying the field at fault as check_line found it, not read from the text."""
    order = ds_order((1000, "A", 2), (2000, "B", Decimal("0.5")), (3000, "quantity-7", 1))
    decided = plan_new_order(order, checks_of(order), RULES, NOW)
    assert decided.action == "hold"
    assert decided.plan.intents == ()
    (hold,) = of_type(decided.plan, HoldOrder)
    assert hold.reason.startswith("held: line 2000: fractional quantity 0.5")
    assert "line 3000: article quantity-7 is not in the host catalog" in hold.reason
    assert [(r.source, r.reference, r.field) for r in decided.plan.rejects_once] == [
        (REJECT_SOURCE, "order 100034 line 2000", "quantity"),
        (REJECT_SOURCE, "order 100034 line 3000", "article_id"),  # the id says "quantity"
    ]
    assert of_type(decided.plan, MarkCreated) == []
    assert decided.plan.rejects == ()


def test_policy_partial_sends_the_good_lines_and_notes_the_rest() -> None:
    order = ds_order((1000, "A", 2), (2000, "Z", 1))
    decided = plan_new_order(order, checks_of(order), PullRules(policy="partial"), NOW)
    assert (decided.action, decided.lines) == ("create", 1)
    (created,) = of_type(decided.plan, MarkCreated)
    assert created.note == "sent without: line 2000: article Z is not in the host catalog"
    assert [ln["line_id"] for ln in decided.plan.intents[0].payload["order"]["lines"]] == [
        "DS-100034-1000"
    ]
    assert [r.field for r in decided.plan.rejects_once] == ["article_id"]


def test_an_order_id_instock_refuses_holds_the_order_as_a_whole() -> None:
    """An id that maps outside Instock's id pattern: stored, held, one reject on the order."""
    order = ds_order((1000, "A", 2), order_id="100 034")
    decided = plan_new_order(order, checks_of(order), RULES, NOW)
    insert, hold = decided.plan.changes
    assert isinstance(insert, InsertOrder)
    assert insert.instock_order_id is None
    assert isinstance(hold, HoldOrder)
    assert "maps to an id Instock refuses" in hold.reason
    assert [(r.reference, r.field) for r in decided.plan.rejects_once] == [
        ("order 100 034", "order_id")
    ]
    assert decided.plan.intents == ()


# --- dsorder.pull: a held order planned again, an operator's release --------------------


def stored(state: str = "held", instock: str | None = "DS-7") -> StoredOrder:
    return StoredOrder(
        "7", instock, state, "ST-1", "2026-03-01T21:20:00.000Z", "2026-03-02T21:20:00.000Z"
    )  # type: ignore[arg-type]


LINES = [StoredLine(1000, "A", "2"), StoredLine(2000, "B", "0.5")]


def test_a_replan_resolves_reasons_gone_and_keeps_the_reject_still_deserved() -> None:
    catalog = {**CATALOG, "B": CatalogEntry("INS-B", whole_units=False)}
    checks = {
        ln.line_number: check_line(ln.article_id, Decimal(ln.quantity), catalog) for ln in LINES
    }
    still = checks[2000].reason
    open_rejects = [
        OpenReject(11, "order 7 line 2000", "article B is not in the host catalog"),
        OpenReject(12, "order 7 line 2000", still),
    ]
    decided = plan_replan(stored(), checks, open_rejects, RULES, NOW)
    assert decided.plan.resolved_rejects == (11,)
    assert decided.action == "hold"
    assert [r.reason for r in decided.plan.rejects_once] == [still]  # 12 stays: not repeated


def test_a_replan_with_every_line_fitting_creates_the_order() -> None:
    checks = {1000: check_line("A", Decimal(2), CATALOG)}
    decided = plan_replan(
        stored(), checks, [OpenReject(3, "order 7 line 1000", "gone")], RULES, NOW
    )
    assert decided.action == "create"
    assert decided.plan.resolved_rejects == (3,)
    assert [i.idempotency_key for i in decided.plan.intents] == ["order:DS-7:create"]


def test_release_cancel_reports_zero_finished_then_closes() -> None:
    decided = plan_release("7", stored(), LINES, {}, "cancel", RULES, NOW)
    fulfil, close = decided.plan.intents
    assert (fulfil.kind, fulfil.idempotency_key, fulfil.order_key) == (
        "fulfill",
        "fulfill:7:cancelled",
        "order:7",
    )
    assert fulfil.payload["lines"] == [
        {"line_number": 1000, "article_id": "A", "quantity": "0", "finished": True},
        {"line_number": 2000, "article_id": "B", "quantity": "0", "finished": True},
    ]
    assert (close.kind, close.payload["instock_status"]) == ("close", "cancelled")
    assert decided.plan.changes == (
        RecordReported("7", (ReportedLine(1000, "0", True), ReportedLine(2000, "0", True))),
        MarkClosing("7", AT),
        MarkReleased("7", "cancel", AT),
    )
    assert decided.plan.alerts == (
        ResolveAlerts(HELD_ALERT, "7"),
        ResolveAlerts(ESCALATED_ALERT, "7"),
    )
    assert decided.taken is None


def test_release_round_sends_fractions_rounded_half_up() -> None:
    decided = plan_release("7", stored(), LINES, CATALOG, "round", RULES, NOW)
    assert decided.outcome == "sent to Instock with 2 of 2 line(s) (round)"
    lines = decided.plan.intents[0].payload["order"]["lines"]
    assert [(ln["article_id"], ln["qty"]) for ln in lines] == [("INS-A", 2), ("INS-B", 1)]
    assert MarkReleased("7", "round", AT) in decided.plan.changes


@pytest.mark.parametrize(
    ("order", "how", "catalog", "error", "says"),
    [
        (None, "cancel", {}, NotFoundError, "no DSOrder order '7' was ever pulled"),
        (stored("created"), "cancel", {}, RefusedError, "DSOrder order 7 is created, not held"),
        (stored(instock=None), "partial", CATALOG, RefusedError, "only --cancel can release it"),
        (stored(), "partial", {}, RefusedError, "no line can be sent to Instock (partial)"),
    ],
)
def test_release_refuses_naming_why(
    order: StoredOrder | None,
    how: Any,
    catalog: dict[str, CatalogEntry],
    error: type[Exception],
    says: str,
) -> None:
    """Nothing is planned for an order never pulled, not held, or not releasable that way."""
    with pytest.raises(error) as refused:
        plan_release("7", order, LINES, catalog, how, RULES, NOW)
    assert says in str(refused.value)


# --- dsorder.pull: invalid records, hold alerts, the midnight gap -----------------------


def submitted(orders: list[DsOrder], bad: list[RecordReject]) -> Submitted:
    return Submitted(orders, bad, [], request_id="req-1")


def test_invalid_records_are_rejected_once_and_resolved_when_listed_valid() -> None:
    bad = RecordReject(3, "55", "details.0.quantity", "not a number", {"order_id": "55"})
    first = plan_invalid_records(submitted([], [bad, bad]), [])
    (reject,) = first.rejects  # the same record twice in one answer: one reject
    assert reject == NewReject(
        ORDER_REJECT_SOURCE,
        "order 55",
        "DSOrder listed an invalid order: not a number",
        field="details.0.quantity",
        payload={"request_id": "req-1", "index": 3, "record": {"order_id": "55"}},
    )
    still = [OpenReject(9, reject.reference, reject.reason)]
    assert plan_invalid_records(submitted([], [bad]), still) == Plan()
    fixed = plan_invalid_records(submitted([ds_order((1, "A", 1), order_id="55")], []), still)
    assert fixed == Plan(resolved_rejects=(9,))


def held(order_id: str, hours: float, reason: str = "held: line 1: x") -> HeldOrder:
    return HeldOrder(order_id, f"DS-{order_id}", iso(NOW - timedelta(hours=hours)), reason)


def test_hold_alerts_say_age_and_how_escalate_late_and_resolve_when_released() -> None:
    plan = plan_hold_alerts(
        [held("1", 0.5), held("2", 5)],
        [(HELD_ALERT, "1"), (HELD_ALERT, "gone"), (ESCALATED_ALERT, "gone")],
        4 * 3600,
        NOW,
    )
    opened = [a for a in plan.alerts if isinstance(a, OpenAlert)]
    assert [(a.kind, a.subject) for a in opened] == [
        (HELD_ALERT, "1"),
        (HELD_ALERT, "2"),
        (ESCALATED_ALERT, "2"),
    ]
    assert opened[0].message.startswith("DSOrder order 1 held for 30m: line 1: x; release it")
    assert opened[2].message.startswith("ESCALATED: DSOrder order 2 held for 5h00m")
    assert [a for a in plan.alerts if isinstance(a, ResolveAlerts)] == [
        ResolveAlerts(HELD_ALERT, "gone"),
        ResolveAlerts(ESCALATED_ALERT, "gone"),
    ]


ZONE = "Europe/Amsterdam"


@pytest.mark.parametrize(
    ("last", "now", "gap"),
    [
        # The end-of-day pull at 23:59:30 local covered the day: no alert after midnight.
        ("2026-03-01T22:59:30+00:00", "2026-03-01T23:01:00+00:00", None),
        # Last pull 22:00 local, next one after midnight: 22:00 to midnight is uncovered.
        ("2026-03-01T21:00:00+00:00", "2026-03-01T23:05:00+00:00", ("2026-03-01", 2)),
        # Down for a whole day: from the last pull to the midnight starting today.
        ("2026-03-01T21:00:00+00:00", "2026-03-02T23:05:00+00:00", ("2026-03-01", 26)),
    ],
)
def test_a_day_whose_end_no_pull_saw_is_one_alert_per_first_day(
    last: str, now: str, gap: tuple[str, int] | None
) -> None:
    found = uncovered_interval(
        datetime.fromisoformat(last),
        datetime.fromisoformat(now),
        ZONE,
        end_of_day=timedelta(seconds=30),
    )
    if gap is None:
        assert found is None
        return
    assert found is not None
    alert = midnight_gap_alert(*found)
    assert (alert.kind, alert.subject) == ("dsorder_midnight_gap", gap[0])
    assert (found[1] - found[0]) == timedelta(hours=gap[1])
    assert "check them in DSOrder and enter them by hand" in alert.message


# --- dsorder.progress ------------------------------------------------------------------

FOLLOWED = FollowedOrder("7", "DS-7", "2026-03-01T21:20:00.000Z", "accepted")


def line(n: int, *, reported: str | None = None, finished: bool = False, **kw: Any) -> StoredLine:
    base: dict[str, Any] = {
        "status": "ok",
        "instock_line_id": f"DS-7-{n}",
        "instock_article_id": "INS-A",
        "instock_qty": 5,
    }
    return StoredLine(
        n, "A", "5", reported_qty=reported, reported_finished=finished, **{**base, **kw}
    )


def test_progress_queues_nothing_while_nothing_was_picked() -> None:
    decided = plan_progress(FOLLOWED, [line(1000)], "in_progress", {}, NOW)
    assert decided.plan == Plan()
    assert not decided.fulfil
    assert not decided.close


def test_progress_reports_totals_once_per_change() -> None:
    lines = [line(1000), line(2000, status="rejected", instock_line_id=None)]
    decided = plan_progress(FOLLOWED, lines, "in_progress", {"DS-7-1000": 3}, NOW)
    (intent,) = decided.plan.intents
    assert (intent.kind, intent.order_key) == ("fulfill", "order:7")
    assert intent.idempotency_key.startswith("fulfill:7:")
    assert intent.payload == {
        "order_id": "7",
        "order_date": "2026-03-01T21:20:00.000Z",
        "lines": [
            {"line_number": 1000, "article_id": "A", "quantity": "3", "finished": False},
            {"line_number": 2000, "article_id": "A", "quantity": "0", "finished": False},
        ],
    }
    assert decided.plan.changes == (
        RecordReported("7", (ReportedLine(1000, "3", False), ReportedLine(2000, "0", False))),
    )
    assert (decided.fulfil, decided.close) == (True, False)
    # The same totals after they were recorded: nothing new to say.
    again = [line(1000, reported="3"), line(2000, status="rejected", reported="0")]
    assert plan_progress(FOLLOWED, again, "in_progress", {"DS-7-1000": 3}, NOW).plan == Plan()


@pytest.mark.parametrize("status", ["done", "canceled"])
def test_progress_finishes_every_line_then_closes_once_instock_is_terminal(status: str) -> None:
    decided = plan_progress(FOLLOWED, [line(1000, reported="3")], status, {"DS-7-1000": 3}, NOW)
    fulfil, close = decided.plan.intents
    assert fulfil.payload["lines"] == [
        {"line_number": 1000, "article_id": "A", "quantity": "3", "finished": True}
    ]
    assert (close.kind, close.idempotency_key, close.order_key) == ("close", "close:7", "order:7")
    assert close.payload == {
        "order_id": "7",
        "order_date": "2026-03-01T21:20:00.000Z",
        "instock_status": status,
    }
    assert decided.plan.changes[-1] == MarkClosing("7", AT)
    assert (decided.fulfil, decided.close) == (True, True)


def test_progress_closes_without_a_new_report_when_the_final_totals_were_sent() -> None:
    """Totals already reported finished (e.g. a poll whose close did not commit): only the
    close, with the same idempotency key as before."""
    decided = plan_progress(
        FOLLOWED, [line(1000, reported="5", finished=True)], "done", {"DS-7-1000": 5}, NOW
    )
    assert [i.kind for i in decided.plan.intents] == ["close"]
    assert decided.plan.changes == (MarkClosing("7", AT),)
    assert (decided.fulfil, decided.close) == (False, True)


def test_progress_reports_instock_units_back_in_dsorder_units() -> None:
    kg = line(1000, unit_factor="100", instock_qty=150)
    decided = plan_progress(FOLLOWED, [kg], "in_progress", {"DS-7-1000": 75}, NOW)
    assert decided.plan.intents[0].payload["lines"][0]["quantity"] == "0.75"


# --- the accounting rule, for any order -------------------------------------------------

PROPERTY_CATALOG = {
    **CATALOG,
    "S": CatalogEntry("INS-S", serial_numbered=True),
    "X": CatalogEntry("INS-X", conversion_problem="catalog attribute f = 'x' is not a number"),
}


@settings(max_examples=80, deadline=None)
@given(
    lines=st.lists(
        st.tuples(
            st.sampled_from(["A", "B", "KG", "S", "X", "unknown"]),
            st.decimals(min_value=Decimal("-1"), max_value=Decimal(50), places=2),
        ),
        min_size=1,
        max_size=6,
    ),
    policy=st.sampled_from(["hold", "partial"]),
)
def test_every_line_is_sent_or_rejected_with_a_field_never_both(
    lines: list[tuple[str, Decimal]], policy: Any
) -> None:
    """Each line of a new order is mapped once; a created order's payload holds exactly
    its good lines; every bad line is one reject with its field; a held order sends
    nothing, a created one is one create intent."""
    order = ds_order(*((1000 * (i + 1), a, q) for i, (a, q) in enumerate(lines)))
    checks = {
        ln.line_number: check_line(ln.article_id, ln.quantity, PROPERTY_CATALOG)
        for ln in order.details
    }
    decided = plan_new_order(order, checks, PullRules(policy=policy), NOW)
    (mapped,) = of_type(decided.plan, MapLines)
    assert sorted(m.line_number for m in mapped.lines) == sorted(checks)
    good = {n for n, c in checks.items() if c.ok}
    rejected = {int(r.reference.rsplit(" ", 1)[1]): r.field for r in decided.plan.rejects_once}
    assert set(rejected) == set(checks) - good
    assert all(f in ("article_id", "quantity") for f in rejected.values())
    if decided.action == "create":
        (intent,) = decided.plan.intents
        sent = {int(ln["line_id"].rsplit("-", 1)[1]) for ln in intent.payload["order"]["lines"]}
        assert sent == good
        assert not (set(rejected) & sent)
        assert policy == "partial" or not rejected
    else:
        assert decided.plan.intents == ()
        assert rejected or not good


# --- dsorder.progress: which orders to poll -------------------------------------------------


def test_the_moves_window_starts_an_overlap_before_the_last_read_and_ends_now() -> None:
    now = datetime(2026, 3, 2, 9, 30, 7, 654000, tzinfo=UTC)
    first = moves_window(None, now, 60)
    assert (first.start, first.end) == (
        now.replace(microsecond=0) - timedelta(seconds=60),
        now.replace(microsecond=0),
    )
    later = moves_window("2026-03-02T09:29:57.000Z", now, 60)
    assert later.start == datetime(2026, 3, 2, 9, 28, 57, tzinfo=UTC)
    assert later.end == datetime(2026, 3, 2, 9, 30, 7, tzinfo=UTC)
    # A last read stamped after now (the clock stepped back) never makes the window inverted.
    ahead = moves_window("2026-03-02T10:00:00.000Z", now, 0)
    assert ahead.start == ahead.end


def test_newest_moves_keeps_the_newest_move_per_order_and_skips_what_is_no_order() -> None:
    moves = [
        ("DS-1", "2026-03-02T09:00:01Z"),
        ("DS-1", "2026-03-02T10:00:02+01:00"),  # 09:00:02 UTC: the newest of DS-1
        ("DS-1", "2026-03-02T08:59:59Z"),
        ("DS-2", "2026-03-02T09:00:00Z"),
        (None, "2026-03-02T09:00:00Z"),  # an adjustment with no order
        ("", "2026-03-02T09:00:00Z"),
        ("DS-3", "yesterday"),  # a bad move: instock.moves rejects it; here it is skipped
        ("DS-4", 17),
        (5, "2026-03-02T09:00:00Z"),
    ]
    assert newest_moves(moves) == {
        "DS-1": "2026-03-02T09:00:02.000Z",
        "DS-2": "2026-03-02T09:00:00.000Z",
    }


def test_polls_due_are_the_moved_orders_then_the_sweep_without_repeats() -> None:
    def followed(order_id: str) -> FollowedOrder:
        return FollowedOrder(order_id, f"DS-{order_id}", "2026-03-02T09:00:00.000Z", "accepted")

    moved = [followed("2"), followed("1")]
    swept = [followed("3"), followed("1"), followed("4")]
    assert [o.order_id for o in polls_due(moved, swept)] == ["2", "1", "3", "4"]
    assert polls_due([], []) == []
    now = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    assert sweep_before(now, 600) == "2026-03-02T09:20:00.000Z"


def test_the_sweep_reads_ordertasks_only_of_orders_found_done_or_canceled() -> None:
    swept = [f"DS-{n}" for n in "12345678"]
    stored = {
        "DS-1": ("reserved", '["t1"]'),
        "DS-2": ("reserved", '["t1"]'),
        "DS-3": ("registered", "[]"),
        "DS-5": ("done", '["t5"]'),
        "DS-6": ("reserved", '["t6"]'),
        "DS-7": ("reserved", '["t7"]'),
        "DS-8": ("registered", "[]"),
    }
    answered: dict[str, tuple[str, str] | None] = {
        "DS-1": ("reserved", '["t1"]'),  # as last polled
        "DS-2": ("reserved", '["t1", "t2"]'),  # a new ordertask: recorded from the status
        "DS-3": ("canceled", "[]"),  # canceled without a move: the final totals
        "DS-4": ("reserved", '["t4"]'),  # never polled: its status recorded
        "DS-5": ("done", '["t5"]'),  # done but still open here: the whole poll decides
        "DS-6": None,  # a bad record or a 404: the whole poll records which
        "DS-7": ("done", '["t7"]'),  # done without a move
        "DS-8": ("reserved", '["t8"]'),  # reserved since the last poll, no move
    }
    unchanged, status_only, whole = split_by_status(swept, stored, answered)
    assert unchanged == ["DS-1"]
    assert status_only == ["DS-2", "DS-4", "DS-8"]
    assert whole == ["DS-3", "DS-5", "DS-6", "DS-7"]


@settings(max_examples=200, deadline=None)
@given(
    answers=st.lists(
        st.tuples(
            st.sampled_from(["registered", "reserved", "done", "canceled", None]),
            st.sampled_from(["registered", "reserved", "done", "canceled", None]),
            st.sampled_from(["[]", '["t"]']),
        ),
        max_size=30,
    )
)
def test_the_sweep_places_every_swept_order_once_and_never_skips_an_end(
    answers: list[tuple[str | None, str | None, str]],
) -> None:
    """Each swept order lands in exactly one group, and an order answering done or
    canceled is always polled whole (its final totals need its ordertasks)."""
    swept = [f"DS-{n}" for n in range(len(answers))]
    stored = {f"DS-{n}": (s, t) for n, (s, _a, t) in enumerate(answers) if s is not None}
    answered = {f"DS-{n}": (a, t) if a else None for n, (_s, a, t) in enumerate(answers)}
    unchanged, status_only, whole = split_by_status(swept, stored, answered)
    assert sorted([*unchanged, *status_only, *whole]) == sorted(swept)
    ended = {o for o in swept if (answered[o] or ("",))[0] in TERMINAL}
    assert ended <= set(whole)
    assert not set(status_only) & ended


def test_sweep_quota_is_the_open_orders_share_of_the_time_since_the_last_run() -> None:
    # 200 open orders, a run every 10 s, each swept once per 600 s: 4 a run (3.33 rounded
    # up), not 10 at once when they all fell due together.
    assert sweep_quota(200, 10, 600, 10) == 4
    assert sweep_quota(2000, 10, 600, 10) == 10  # the bound
    assert sweep_quota(5, 1, 600, 10) == 1  # at least one: a due order is never starved
    assert sweep_quota(0, 10, 600, 10) == 0
    assert sweep_quota(7, None, 600, 10) == 7  # no previous run known: the bound
    assert sweep_quota(70, 900, 600, 10) == 10  # a whole interval since: the bound
    assert sweep_quota(70, -5, 600, 10) == 1  # a clock step back is no negative share


@settings(max_examples=300, deadline=None)
@given(
    open_orders=st.integers(0, 100_000),
    every=st.floats(0.5, 3600),
    interval=st.floats(1, 86_400),
    limit=st.integers(1, 10_000),
)
def test_sweep_quota_over_one_interval_covers_every_open_order_or_runs_at_the_bound(
    open_orders: int, every: float, interval: float, limit: int
) -> None:
    """Paced, the runs of one interval still sweep every open order (none waits longer
    than before on average), unless the bound holds every run; never more than the bound."""
    quota = sweep_quota(open_orders, every, interval, limit)
    assert 0 <= quota <= min(limit, open_orders)
    runs = math.ceil(interval / every)  # the runs that span one interval
    assert quota * runs >= open_orders or quota == limit


def test_a_pass_that_outlasts_the_interval_is_followed_by_another_at_once() -> None:
    """Catch-up passes: only after a pass that polled moved orders and took at least the
    job's interval; never on a cron schedule."""
    assert catch_up_next(moved=5, took=2.5, interval=2.0)
    assert catch_up_next(moved=5, took=2.0, interval=2.0)
    assert not catch_up_next(moved=5, took=1.9, interval=2.0)  # the next tick comes soon
    assert not catch_up_next(moved=0, took=9.0, interval=2.0)  # a sweep only: nothing waits
    assert not catch_up_next(moved=5, took=9.0, interval=None)  # cron: no catching up
