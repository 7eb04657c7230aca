"""Pure decisions of the DSOrder loop: id mapping, line checks, policy, totals, midnight gap."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

import syncd.jobs  # noqa: F401 - fills the job registry
from syncd.cli import main as cli
from syncd.config import ConnectorConfig, Settings
from syncd.connectors.dsorder import (
    DsOrder,
    DsOrderOptions,
    ErrorPatterns,
    classify_failure,
    from_millis,
    options_problems,
    parse_orders,
)
from syncd.errors import AlreadyDoneError, ConfigError, PermanentError, RetryableError
from syncd.jobs import REGISTRY
from syncd.jobs.shared.dsorder_plan import (
    AttributeMap,
    CatalogEntry,
    IdMapping,
    LineCheck,
    OrderFacts,
    check_line,
    end_of_day_time,
    fulfil_report,
    order_header,
    plan_order,
    report_changed,
    uncovered_interval,
    unit_factor,
)
from syncd.jsontext import json_number
from syncd.triggers import daily_trigger

CATALOG = {
    "A": CatalogEntry("A"),
    "B": CatalogEntry("B", whole_units=False),
    "S": CatalogEntry("S", serial_numbered=True),
}


def test_id_mapping_is_reversible_and_within_instock_pattern() -> None:
    """DSOrder ids map to Instock ids and back; an id Instock would refuse maps to None."""
    mapping = IdMapping("DS-{order_id}")
    assert mapping.instock_order_id("100034") == "DS-100034"
    assert mapping.dsorder_id("DS-100034") == "100034"
    assert mapping.dsorder_id("HOST-1") is None
    assert mapping.instock_order_id("100 034") is None
    assert mapping.instock_order_id("x" * 130) is None
    assert mapping.line_id("DS-100034", 1000) == "DS-100034-1000"
    suffixed = IdMapping("{order_id}.ds")
    assert suffixed.dsorder_id(suffixed.instock_order_id("77") or "") == "77"


@pytest.mark.parametrize(
    ("article", "qty", "ok", "reason_part"),
    [
        ("A", Decimal(3), True, ""),
        ("A", Decimal("3.0"), True, ""),  # a whole number written with a decimal point
        ("A", Decimal("100.5"), False, "whole units"),
        ("B", Decimal("0.5"), False, "fractional"),
        ("Z", Decimal(1), False, "not in the host catalog"),
        ("A", Decimal(0), False, "not positive"),
        ("S", Decimal(1), False, "serial-numbered"),  # Instock refuses it: found before sending
    ],
)
def test_check_line(article: str, qty: Decimal, ok: bool, reason_part: str) -> None:
    """Lines Instock cannot take are named with the reason, never silently dropped."""
    check = check_line(article, qty, CATALOG)
    assert check.ok is ok
    assert reason_part in check.reason


def test_policy_hold_keeps_the_whole_order_back() -> None:
    """Policy 'hold': one bad line holds the order, naming the line and reason."""
    checks = {1000: LineCheck(True, instock_article_id="A"), 2000: LineCheck(False, "fractional")}
    plan = plan_order(checks, "hold")
    assert (plan.action, plan.sendable) == ("hold", ())
    assert "line 2000: fractional" in plan.reason


def test_policy_partial_sends_good_lines() -> None:
    """Policy 'partial': the good lines go; an order with no good line is still held."""
    checks = {1000: LineCheck(True, instock_article_id="A"), 2000: LineCheck(False, "fractional")}
    assert plan_order(checks, "partial").sendable == (1000,)
    assert plan_order({2000: LineCheck(False, "x")}, "partial").action == "hold"


def test_fulfil_report_sends_totals_and_zero_for_lines_instock_never_had() -> None:
    """Totals come from what Instock picked per line; rejected lines report 0; terminal finishes all."""
    lines = [
        {"line_number": 1000, "article_id": "A", "instock_line_id": "DS-1-1000", "status": "ok"},
        {"line_number": 2000, "article_id": "Z", "instock_line_id": None, "status": "rejected"},
    ]
    report = fulfil_report(lines, {"DS-1-1000": 7}, terminal=True)
    assert [(r.line_number, r.quantity, r.finished) for r in report] == [
        (1000, Decimal(7), True),
        (2000, Decimal(0), True),
    ]
    assert report_changed(report, {1000: ("7", True), 2000: ("0", True)}) is False
    assert report_changed(report, {1000: ("5", False), 2000: ("0", False)}) is True
    assert report_changed(report, {}) is True
    untouched = fulfil_report(lines, {}, terminal=False)
    assert report_changed(untouched, {}) is False  # nothing picked yet: no request


ZONE = "Europe/Amsterdam"


def test_no_gap_when_the_day_did_not_change() -> None:
    """Two pulls on the same site day leave nothing uncovered."""
    now = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
    assert uncovered_interval(now - timedelta(hours=3), now, ZONE, timedelta(minutes=15)) is None
    assert uncovered_interval(None, now, ZONE, timedelta(minutes=15)) is None


def test_short_gap_across_midnight_is_tolerated() -> None:
    """A last pull a few minutes before local midnight is the normal rhythm, not a gap."""
    last = datetime(2026, 11, 23, 22, 55, tzinfo=UTC)  # 23:55 in Amsterdam
    now = datetime(2026, 11, 23, 23, 5, tzinfo=UTC)  # 00:05 next local day
    assert uncovered_interval(last, now, ZONE, timedelta(minutes=15)) is None


def test_gap_across_midnight_is_named() -> None:
    """Down from 21:00 to 01:00 local: [21:00, midnight) could not be pulled and is named."""
    last = datetime(2026, 11, 23, 20, 0, tzinfo=UTC)  # 21:00 local
    now = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)  # 01:00 local, next day
    start, end = uncovered_interval(last, now, ZONE, timedelta(minutes=15)) or (None, None)
    assert start is not None
    assert end is not None
    assert start.isoformat() == "2026-11-23T21:00:00+01:00"
    assert end.isoformat() == "2026-11-24T00:00:00+01:00"


def test_envelope_failures_are_classified_from_the_message() -> None:
    """'already closed' means done, 'not found' is permanent, anything else is retried."""
    assert isinstance(classify_failure("Order with ID 1 is already closed"), AlreadyDoneError)
    assert isinstance(classify_failure("Order with ID 100123 was not found"), PermanentError)
    assert isinstance(classify_failure("Temporary error, please retry"), RetryableError)


def test_millisecond_timestamps_and_decimal_quantities() -> None:
    """Unix milliseconds become aware datetimes; quantities stay exact decimals."""
    order = DsOrder.model_validate(
        {
            "order_id": "100034",
            "supplier_id": "SU-2",
            "store_id": "ST-1",
            "order_date": 1795420800000,
            "delivery_date": 1795507200000,
            "xdock_delivery_date": None,
            "details": [{"line_number": 1000, "article_id": "A", "quantity": Decimal("100.50")}],
        }
    )
    assert order.order_date == datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    assert order.details[0].quantity == Decimal("100.50")
    assert from_millis(None) is None
    assert json_number(Decimal("12")) == 12
    assert json_number(Decimal("100.5")) == 100.5


GOOD_ORDER = {
    "order_id": "1",
    "supplier_id": "S",
    "store_id": "ST",
    "order_date": 1_700_000_000_000,
    "delivery_date": 1_700_000_000_000,
    "details": [{"line_number": 1000, "article_id": "A", "quantity": Decimal("100.50")}],
}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"store_id": None}, "store_id"),
        ({"store_id": ""}, "store_id"),
        ({"order_date": "abc"}, "order_date"),
        ({"order_date": 10**30}, "order_date"),
        ({"delivery_date": float("inf")}, "delivery_date"),
        (
            {"details": [{"line_number": float("inf"), "article_id": "A", "quantity": 1}]},
            "details.0.line_number",
        ),
        (
            {"details": [{"line_number": 1, "article_id": "A", "quantity": True}]},
            "details.0.quantity",
        ),
        (
            {"details": [{"line_number": 1, "article_id": "A", "quantity": "12"}]},
            "details.0.quantity",
        ),
        (
            {"details": [{"line_number": 1, "article_id": "A", "quantity": float("nan")}]},
            "details.0.quantity",
        ),
    ],
)
def test_parse_orders_rejects_a_bad_record_and_keeps_the_rest(
    change: dict[str, object], field: str
) -> None:
    """Each record is validated on its own: a bad one is a reject naming its key and field,
    never an exception that fails the pull; the good one beside it is kept."""
    orders, rejects = parse_orders([{**GOOD_ORDER, "order_id": "2", **change}, GOOD_ORDER])
    assert [o.order_id for o in orders] == ["1"]
    (reject,) = rejects
    assert (reject.index, reject.key, reject.field) == (0, "2", field)
    assert reject.reason.startswith(field)


def test_parse_orders_keeps_fractions_exact_and_refuses_a_non_list() -> None:
    """The document's 100.50 stays exact; `data` that is not a list is a malformed answer."""
    (order,), rejects = parse_orders([GOOD_ORDER])
    assert rejects == []
    assert order.details[0].quantity == Decimal("100.50")
    with pytest.raises(ValueError, match="not a list"):
        parse_orders({"order_id": "1"})


@pytest.mark.parametrize(
    ("last_local", "now_local", "expected"),
    [
        # The end-of-day pull (30 s before midnight) covers its day by design.
        ("2026-11-23T23:59:30", "2026-11-24T00:01:00", None),
        ("2026-11-23T23:59:59", "2026-11-24T00:01:00", None),
        # One second earlier than the end-of-day window: reported, however short.
        ("2026-11-23T23:59:29", "2026-11-24T00:01:00", ("23T23:59:29", "24T00:00:00")),
        ("2026-11-23T23:55:00", "2026-11-24T00:05:00", ("23T23:55:00", "24T00:00:00")),
        # Covered yesterday by design, then down for a whole day: that day is uncovered.
        ("2026-11-23T23:59:40", "2026-11-25T08:00:00", ("24T00:00:00", "25T00:00:00")),
        # Across the autumn DST change (03:00 CEST -> 02:00 CET on 2026-10-25).
        ("2026-10-24T23:59:45", "2026-10-25T00:00:10", None),
        ("2026-10-25T23:50:00", "2026-10-26T00:10:00", ("25T23:50:00", "26T00:00:00")),
    ],
)
def test_uncovered_interval_default_reports_any_gap_except_the_end_of_day_pull(
    last_local: str, now_local: str, expected: tuple[str, str] | None
) -> None:
    """Tolerance 0 (the default): any time between the last pull and midnight is a gap,
    unless that pull ran in the end-of-day window just before midnight."""
    tz = ZoneInfo(ZONE)
    last = datetime.fromisoformat(last_local).replace(tzinfo=tz)
    now = datetime.fromisoformat(now_local).replace(tzinfo=tz)
    gap = uncovered_interval(last, now, ZONE, end_of_day=timedelta(seconds=30))
    if expected is None:
        assert gap is None
    else:
        assert gap is not None
        assert (gap[0].isoformat()[8:19], gap[1].isoformat()[8:19]) == expected


def test_end_of_day_pull_is_scheduled_in_the_site_zone_just_before_midnight() -> None:
    """The daemon's trigger for dsorder.pull fires at 23:59:30 site time besides its
    interval, whatever the interval's phase."""
    settings = Settings(
        daemon={"site_timezone": ZONE},
        connectors={
            "dsorder": {"enabled": True, "base_url": "https://ds.example", "token": "t0ken-ds"},
            "instock": {"enabled": True, "base_url": "https://in.example", "token": "t0ken-in"},
        },
    )
    spec = REGISTRY["dsorder.pull"]
    assert end_of_day_time(timedelta(seconds=30)) == time(23, 59, 30)
    assert spec.daily_times(settings) == (time(23, 59, 30),)
    assert spec.describe_schedule(settings) == f"every 120s and daily at 23:59:30 {ZONE}"
    trigger = daily_trigger(spec.daily_times(settings), ZONE)
    tz = ZoneInfo(ZONE)
    # Across both DST changes of 2026 (29 March, 25 October): 23:59:30 local every day.
    for start in (datetime(2026, 3, 27, 12, tzinfo=tz), datetime(2026, 10, 23, 12, tzinfo=tz)):
        fires = []
        previous = None
        for _ in range(5):
            previous = trigger.get_next_fire_time(
                previous, start if previous is None else previous + timedelta(microseconds=1)
            )
            fires.append(previous.astimezone(tz))
        assert [f.time() for f in fires] == [time(23, 59, 30)] * 5
        assert [f.date().day for f in fires] == [start.day + n for n in range(5)]
        # 30 s before the following local midnight, whatever the UTC offset that day.
        assert {
            (
                datetime.combine(f.date() + timedelta(days=1), time(0), tz).astimezone(UTC)
                - f.astimezone(UTC)
            ).total_seconds()
            for f in fires
        } == {30.0}


def test_dsorder_without_an_explicit_site_timezone_is_refused(tmp_path: Path) -> None:
    """check-config (and so `syncd run`) exits 78 naming daemon.site_timezone when DSOrder
    is enabled and the zone was left to its default; an explicit zone passes."""
    config = tmp_path / "syncd.toml"
    body = (
        f"[daemon]\nstate_dir = {json.dumps(str(tmp_path / 'state'))}\n{{zone}}\n"
        '[connectors.dsorder]\nenabled = true\nbase_url = "https://ds.example"\n'
        'token = "x"\n'
    )
    config.write_text(body.replace("{zone}", ""))
    refused = CliRunner().invoke(cli, ["check-config", "--config", str(config)])
    assert refused.exit_code == 78, refused.output
    assert "daemon.site_timezone: required when connectors.dsorder is enabled" in (refused.output)
    config.write_text(body.replace("{zone}", 'site_timezone = "UTC"'))
    accepted = CliRunner().invoke(cli, ["check-config", "--config", str(config)])
    assert accepted.exit_code == 0, accepted.output


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("Order with ID 1 is already closed", AlreadyDoneError),
        ("Order with ID 1 is closed", AlreadyDoneError),
        ("Order 1 not open", AlreadyDoneError),
        ("ORDER 1 IS CLOSED", AlreadyDoneError),
        ("Order with ID 100123 was not found", PermanentError),
        ("Order 7 does not exist", PermanentError),
        ("Order not found or already closed", RetryableError),  # both: unclear, read back
        ("Order 1 cannot be changed", RetryableError),
        ("Temporary error, please retry", RetryableError),
        ("", RetryableError),
    ],
)
def test_failures_are_classified_by_meaning_with_the_default_patterns(
    message: str, kind: type[Exception]
) -> None:
    """Several wordings of "closed" are done; "not found" is permanent; anything else, or a
    message that says both, is unclear (retried after a read-back)."""
    error = classify_failure(message)
    assert type(error) is kind


def test_patterns_are_configurable_and_a_bad_one_is_a_config_error() -> None:
    """An operator's own pattern changes the classification; a pattern that does not
    compile is refused naming the key."""
    patterns = ErrorPatterns.of(DsOrderOptions(closed_patterns=[r"cannot be changed"]))
    assert isinstance(
        classify_failure("Order 1 cannot be changed", patterns=patterns), AlreadyDoneError
    )
    assert isinstance(classify_failure("Order 1 is closed", patterns=patterns), RetryableError)
    bad = ConnectorConfig(options={"closed_patterns": ["(unclosed"], "colour": 1})
    problems = options_problems(bad)
    assert any(
        p.startswith("connectors.dsorder.options.closed_patterns: '(unclosed'") for p in problems
    )
    assert any(p.startswith("connectors.dsorder.options.colour:") for p in problems)


FACTS = OrderFacts(
    "100034",
    "ST-1",
    datetime(2026, 12, 4, 9, 30, 15, 500_000, tzinfo=UTC),
    datetime(2026, 12, 5, 6, 0, tzinfo=UTC),
    datetime(2027, 1, 1, tzinfo=UTC),
)


@pytest.mark.parametrize(
    ("mapping", "expected"),
    [
        (
            AttributeMap(),
            {
                "placed_at": "2026-12-04T09:30:15Z",
                "attributes": {"cutoff_time": "2026-12-05T06:00:00Z"},
            },
        ),
        (AttributeMap(placed_at=False, delivery_date_attribute=None), {"attributes": {}}),
        (
            AttributeMap(
                placed_at=False,
                order_id_attribute="ds_id",
                delivery_date_attribute="due",
                delivery_date_lead=timedelta(hours=3),
                store_id_attribute="store",
                shelf_life_attribute="shelf",
            ),
            {
                "attributes": {
                    "ds_id": "100034",
                    "due": "2026-12-05T03:00:00Z",
                    "store": "ST-1",
                    "shelf": "2027-01-01T00:00:00Z",
                }
            },
        ),
    ],
)
def test_order_header_maps_what_dsorder_gives(
    mapping: AttributeMap, expected: dict[str, object]
) -> None:
    """order_date -> placed_at, delivery date -> cutoff_time (or a configured attribute, less
    a lead), store and shelf life only under configured names; no attribute by surprise."""
    assert order_header(FACTS, mapping) == expected


def test_pull_options_refuse_clashing_attribute_names() -> None:
    """Two facts under one attribute name would overwrite each other: refused, named."""
    spec = REGISTRY["dsorder.pull"]
    settings = Settings(
        jobs={
            "dsorder.pull": {
                "options": {"store_id_attribute": "cutoff_time"},
            }
        }
    )
    with pytest.raises(ConfigError, match="attribute names must differ"):
        spec.options(settings)
    off = Settings(jobs={"dsorder.pull": {"options": {"delivery_date_attribute": ""}}})
    assert spec.options(off).attributes().delivery_date_attribute is None


FACTORED = {
    "K": CatalogEntry("K", units_per_order_unit=Decimal(100)),
    "H": CatalogEntry("H", units_per_order_unit=Decimal("0.5")),
    "X": CatalogEntry(
        "X", conversion_problem="catalog attribute u = 'abc' is not a positive number"
    ),
}


@pytest.mark.parametrize(
    ("article", "qty", "rounding", "instock_qty", "reason_part"),
    [
        ("K", Decimal("100.50"), False, 10050, ""),  # the document's own example
        ("K", Decimal("0.001"), False, None, "= 0.100 Instock units"),
        ("H", Decimal(3), False, None, "x 0.5 units per order unit = 1.5"),
        ("H", Decimal(3), True, 2, ""),  # 1.5 rounds half up
        ("A", Decimal("100.5"), True, 101, ""),
        ("A", Decimal("0.4"), True, None, "rounds to 0"),
        ("X", Decimal(1), False, None, "not a positive number"),
    ],
)
def test_check_line_converts_to_whole_instock_units(
    article: str, qty: Decimal, rounding: bool, instock_qty: int | None, reason_part: str
) -> None:
    """A per-article conversion makes a fractional DSOrder quantity whole Instock units when
    it converts exactly; otherwise the line is refused naming the arithmetic (or, released
    with --round, rounded half up; 0 stays refused)."""
    check = check_line(article, qty, {**CATALOG, **FACTORED}, rounding=rounding)
    assert check.instock_qty == instock_qty
    assert check.ok is (instock_qty is not None)
    assert reason_part in check.reason


@pytest.mark.parametrize(
    ("value", "factor", "problem"),
    [
        (None, None, ""),
        ("", None, ""),
        ("12", Decimal(12), ""),
        (" 0.25 ", Decimal("0.25"), ""),
        ("0", None, "not a positive"),
        ("-2", None, "not a positive"),
        ("abc", None, "not a positive"),
        ("NaN", None, "not a positive"),
    ],
)
def test_unit_factor(value: object, factor: Decimal | None, problem: str) -> None:
    """The catalog's factor is a positive exact decimal, or a named problem."""
    got, why = unit_factor(value, "units_per_order_unit")
    assert got == factor
    assert problem in why
    assert bool(why) is bool(problem)


def test_fulfil_report_converts_instock_units_back() -> None:
    """Picked Instock units are reported to DSOrder in its own units (10050 / 100 = 100.5)."""
    lines = [
        {
            "line_number": 1000,
            "article_id": "K",
            "instock_line_id": "L1",
            "status": "ok",
            "unit_factor": "100",
        },
    ]
    (line,) = fulfil_report(lines, {"L1": 10050}, True)
    assert line.quantity == Decimal("100.5")


def test_the_daemon_schedules_the_end_of_day_pull_as_a_job_of_its_own(tmp_path: Path) -> None:
    """Besides `dsorder.pull` on its interval, the daemon has `dsorder.pull@daily`: due at
    23:59:30 site time, never dropped for being late (all workers busy) or for a regular
    pull still going on (it waits for it: tests/system/test_dsorder_end_of_day.py)."""
    from syncd.daemon import Daemon

    settings = Settings(
        daemon={"site_timezone": ZONE, "state_dir": str(tmp_path / "state")},
        connectors={
            "dsorder": {"enabled": True, "base_url": "https://ds.example", "token": "t0ken-ds"},
            "instock": {"enabled": True, "base_url": "https://in.example", "token": "t0ken-in"},
        },
    )
    daemon = Daemon(settings, None)
    daemon._start_scheduler()
    try:
        assert daemon.scheduler is not None
        job = daemon.scheduler.get_job("dsorder.pull@daily")
        assert job is not None
        assert job.misfire_grace_time is None
        assert job.next_run_time.astimezone(ZoneInfo(ZONE)).time() == time(23, 59, 30)
        regular = daemon.scheduler.get_job("dsorder.pull")
        assert regular is not None
        assert regular.max_instances == 1
    finally:
        daemon.scheduler.shutdown(wait=False)


def test_line_changes_name_each_changed_line_and_ignore_number_spelling() -> None:
    """Quantities compare as numbers (stored "2.0" is a listed 2); an added, removed, re-articled or
    re-quantified line is each named once, in line order; no change opens no alert."""
    from syncd.jobs.dsorder.pull_plan import line_changes, plan_listed_again
    from syncd.state.mirror.dsorder import StoredLine

    stored = [StoredLine(1000, "A", "2.0"), StoredLine(2000, "B", "1"), StoredLine(3000, "C", "4")]
    same = DsOrder.model_validate(
        {
            "order_id": "1",
            "supplier_id": "S",
            "store_id": "7",
            "order_date": 0,
            "delivery_date": 0,
            "details": [
                {"line_number": 1000, "article_id": "A", "quantity": 2},
                {"line_number": 2000, "article_id": "B", "quantity": 1.00},
                {"line_number": 3000, "article_id": "C", "quantity": 4},
            ],
        }
    )
    assert line_changes(stored, same) == []
    assert plan_listed_again("1", []).alerts == ()
    other = same.model_copy(
        update={
            "details": [
                same.details[0].model_copy(update={"quantity": Decimal("3")}),
                same.details[1].model_copy(update={"article_id": "B2"}),
                same.details[0].model_copy(update={"line_number": 4000}),
            ]
        }
    )
    assert line_changes(stored, other) == [
        "line 1000 quantity 2.0 -> 3",
        "line 2000 article B -> B2",
        "line 3000 removed (C x 4)",
        "line 4000 added (A x 2)",
    ]
    (alert,) = plan_listed_again("1", line_changes(stored, other)).alerts
    assert alert.subject == "1"
    assert "line 4000 added" in alert.message
