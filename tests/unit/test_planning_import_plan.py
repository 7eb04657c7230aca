"""Pure parts of `planning.import`: host rows -> import rows, weeks, hashes and the plan."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from syncd.connectors.import_jobs import ImportJob, check_rows, parse_rows, row_key
from syncd.jobs.planning.plan import key_chunk
from syncd.jobs.planning.rows import Candidate
from syncd.jobs.planning_import import (
    ORDER,
    Options,
    catalog_row,
    closed_row,
    count_mismatch,
    demand_row,
    demand_text,
    demand_window,
    held_reason,
    inventory_row,
    is_closed_week,
    match_errors,
    number,
    order_row,
    plan_row,
    po_final_status,
    purchase_order_row,
    row_hash,
    supplier_row,
    week_starting,
    weekly_demand,
)
from syncd.jsontext import canonical, text_hash
from syncd.state import Store

SITE = "WH"


def test_numbers_are_exact_and_whole_values_are_ints() -> None:
    assert number(5) == 5
    assert isinstance(number(5), int)
    assert number(5.0) == 5
    assert isinstance(number(5.0), int)
    assert number("3.10") == 3.1
    assert number(0.1 + 0.2) == 0.3
    assert number(None) is None
    assert number("") is None


def test_catalog_supplier_and_inventory_rows() -> None:
    assert catalog_row({"article_id": "A1", "name": "Chain"}) == {
        "externalId": "A1",
        "name": "Chain",
    }
    assert supplier_row({"supplier_id": "S1", "name": "Acme"}) == {
        "externalId": "S1",
        "name": "Acme",
    }
    site = inventory_row({"article_id": "A1", "location": "", "qty": 12}, SITE, reserved=3)
    assert site == {"skuId": "A1", "locationId": SITE, "quantityOnHand": 12, "quantityReserved": 3}
    bin_row = inventory_row({"article_id": "A1", "location": "B-01", "qty": 1.5}, SITE)
    assert bin_row == {"skuId": "A1", "locationId": "B-01", "quantityOnHand": 1.5}
    assert row_key("inventory", bin_row) == "A1|B-01"


def test_purchase_order_sends_outstanding_lines_only() -> None:
    header = {"po_number": "PO-1", "supplier_id": "S1", "location": "", "status": "OPEN"}
    lines = [
        {"article_id": "A1", "qty_ordered": 100, "qty_received": 40, "unit_cost": "3.10"},
        {"article_id": "A2", "qty_ordered": 5, "qty_received": 5, "unit_cost": "1"},
        {"article_id": "A3", "qty_ordered": 2, "qty_received": 0, "unit_cost": None},
    ]
    row = purchase_order_row(header, lines, SITE)
    assert row == {
        "externalPoNumber": "PO-1",
        "supplierId": "S1",
        "destinationLocationId": SITE,
        "status": "OPEN",
        "lines": [
            {"skuId": "A1", "quantity": 60, "unitCost": 3.1},
            {"skuId": "A3", "quantity": 2, "unitCost": None},
        ],
    }
    # A line without unit cost is refused by the connector's check, before any request.
    _, bad = parse_rows("purchase-orders", [row])
    assert "lines[1].unitCost" in bad[0]
    assert purchase_order_row(header, lines[1:2], SITE) is None  # nothing outstanding
    no_status = purchase_order_row({**header, "status": None}, lines[:1], SITE)
    assert no_status is not None
    assert "status" not in no_status


def test_orders_open_only_at_the_site_location() -> None:
    lines = [{"article_id": "A1", "qty": 2}, {"article_id": "A2", "qty": 1}]
    row = order_row({"order_id": "O1", "status": "open"}, lines, SITE)
    assert row == {
        "externalOrderId": "O1",
        "lines": [
            {"skuId": "A1", "quantity": 2, "locationId": SITE},
            {"skuId": "A2", "quantity": 1, "locationId": SITE},
        ],
    }
    assert order_row({"order_id": "O1", "status": "cancelled"}, lines, SITE) is None
    assert order_row({"order_id": "O1", "status": "open"}, [], SITE) is None


@pytest.mark.parametrize(
    ("day", "monday"),
    [
        (date(2025, 3, 10), date(2025, 3, 10)),  # Monday
        (date(2025, 3, 16), date(2025, 3, 10)),  # Sunday
        (date(2025, 1, 1), date(2024, 12, 30)),  # ISO week 1 of 2025 starts in 2024
        (date(2020, 12, 31), date(2020, 12, 28)),  # ISO week 53
    ],
)
def test_week_starting_is_the_iso_monday(day: date, monday: date) -> None:
    assert week_starting(day) == monday
    assert monday.isocalendar().weekday == 1
    assert day.isocalendar()[:2] == monday.isocalendar()[:2]


def test_demand_window_and_closed_weeks() -> None:
    today = date(2025, 3, 12)  # a Wednesday
    assert demand_window(today, 2, True) == (date(2025, 2, 24), date(2025, 3, 17))
    assert demand_window(today, 2, False) == (date(2025, 2, 24), date(2025, 3, 10))
    assert is_closed_week(date(2025, 3, 3), today)
    assert is_closed_week(date(2025, 3, 9), today)  # Sunday of last week
    assert not is_closed_week(date(2025, 3, 10), today)


def test_weekly_demand_sums_by_iso_week_channel_and_location() -> None:
    sales: list[dict[str, Any]] = [
        {"sale_date": "2025-03-03", "article_id": "A1", "location": "", "qty": 3},
        {"sale_date": "2025-03-09", "article_id": "A1", "location": "", "qty": 2},
        {"sale_date": "2025-03-09", "article_id": "A1", "location": "", "qty": -1},
        {"sale_date": "2025-03-10", "article_id": "A1", "location": "", "qty": 1},
        {"sale_date": "2025-03-10", "article_id": "A1", "location": "", "qty": 4, "channel": "web"},
        {"sale_date": "2025-03-11", "article_id": "A2", "location": "S1", "qty": -2},
    ]
    assert weekly_demand(sales, SITE) == [
        {
            "skuId": "A1",
            "locationId": SITE,
            "weekStarting": "2025-03-03",
            "channel": "ALL",
            "actualDemand": 4,
        },
        {
            "skuId": "A1",
            "locationId": SITE,
            "weekStarting": "2025-03-10",
            "channel": "ALL",
            "actualDemand": 1,
        },
        {
            "skuId": "A1",
            "locationId": SITE,
            "weekStarting": "2025-03-10",
            "channel": "web",
            "actualDemand": 4,
        },
        # More returned than sold: no negative demand.
        {
            "skuId": "A2",
            "locationId": "S1",
            "weekStarting": "2025-03-10",
            "channel": "ALL",
            "actualDemand": 0,
        },
    ]
    record = demand_row(
        {"article_id": "A1", "location": "", "channel": None, "week": "2025-03-12", "qty": 2.5},
        SITE,
    )
    assert record["weekStarting"] == "2025-03-10"
    assert record["actualDemand"] == 2.5
    assert row_key("demand-history", record) == f"A1|{SITE}|2025-03-10|ALL"


def test_sql_weekly_aggregation_matches_the_python_reference(store: Store) -> None:
    """The job aggregates in SQL; it must agree with `weekly_demand`."""
    from syncd.jobs.planning_import import demand_candidates

    sales = []
    for n, (day, art, loc, qty, channel) in enumerate(
        [
            ("2025-02-24", "A1", "", 3, ""),
            ("2025-03-02", "A1", "", 2, ""),  # Sunday: same week
            ("2025-03-03", "A1", "", 1.25, "web"),
            ("2025-03-12", "A1", "", 5, ""),
            ("2025-03-12", "A2", "S1", -1, ""),
            ("2025-03-13", "A2", "S1", 4, ""),
            ("2025-02-10", "A3", "", 9, ""),  # before the window
            ("2025-03-04", "A4", "", -3, "store"),  # net return: sent as 0
            ("2025-03-04", 'A5 "x\\y', "B 2", 7, "b2b"),
            ("2025-03-04", "Ä6", "", 1.5, "we\tb"),
            ("2025-03-04", " ", "", 1, ""),  # a blank id: checked, and refused
        ]
    ):
        sales.append(
            {
                "transaction_id": f"T{n}",
                "line_id": "1",
                "sale_date": day,
                "article_id": art,
                "location": loc,
                "qty": qty,
                "channel": channel,
                "file": "sales-1.csv",
                "line": n + 2,
                "load_id": 1,
                "loaded_at": "2025-03-12T00:00:00.000Z",
            }
        )
    with store.transaction():
        store.db["host_sales"].insert_all(sales)  # type: ignore[union-attr]
    options = Options(
        site_location=SITE,
        demand_weeks_back=2,
        include_open_week=True,
        upsert_endpoints=list(ORDER),
    )
    found = [c for chunk in demand_candidates(store, options, date(2025, 3, 12)) for c in chunk]
    in_window = [s for s in sales if s["sale_date"] >= "2025-02-24"]
    records = [json.loads(c.text) if c.payload is None else c.payload for c in found]
    assert records == weekly_demand(in_window, SITE)
    assert found[records.index(next(r for r in records if r["skuId"] == "A1"))].reference == (
        "sales-1.csv:2"
    )
    # a record of two sales names the first loaded: A2's week holds lines 6 and 7
    assert found[records.index(next(r for r in records if r["skuId"] == "A2"))].reference == (
        "sales-1.csv:6"
    )
    assert [c.text for c in found] == [canonical(r) for r in records]
    # each record comes keyed and hashed as `key_chunk` would key and hash it
    assert [c.digest for c in found] == [text_hash(canonical(r)) for r in records]
    assert [
        r.key for r in key_chunk("demand-history", [Candidate(p, "x") for p in records]).rows
    ] == [c.key for c in found]
    assert key_chunk("demand-history", found).rows == tuple(found)  # passed as it is
    assert any(c.payload is None for c in found)  # the fast path was taken
    assert any(c.payload is not None and c.checked for c in found)  # ... and the other
    # a record marked checked passes check_rows and has row_key's key; a blank id is not
    checked = [r for c, r in zip(found, records, strict=True) if c.checked]
    assert [c.key for c in found if c.checked] == [row_key("demand-history", r) for r in checked]
    assert check_rows("demand-history", checked) == {}
    [blank] = [c for c in found if not c.checked]
    assert check_rows("demand-history", [blank.payload]) == {0: "skuId: must not be empty"}


def test_a_weekly_record_names_the_first_sales_row_loaded_into_it(store: Store) -> None:
    """The reference (what a reject of the record names) is the week's sales row loaded
    first, whatever its file is called; later rows of the week add to the quantity."""
    from syncd.jobs.planning_import import demand_candidates

    loaded = [("sales-b.csv", 7, "2025-03-04", 2), ("sales-a.csv", 3, "2025-03-05", 5)]
    loaded += [("sales-a.csv", 2, "2025-03-06", 1)]
    with store.transaction():
        store.db["host_sales"].insert_all(  # type: ignore[union-attr]
            {
                "transaction_id": f"T{n}",
                "line_id": "1",
                "sale_date": day,
                "article_id": "A1",
                "location": "",
                "qty": qty,
                "channel": "",
                "file": file,
                "line": line,
                "load_id": n + 1,
                "loaded_at": "2025-03-12T00:00:00.000Z",
            }
            for n, (file, line, day, qty) in enumerate(loaded)
        )
    options = Options(site_location=SITE, demand_weeks_back=1, upsert_endpoints=list(ORDER))
    [[record]] = list(demand_candidates(store, options, date(2025, 3, 12)))
    assert record.reference == "sales-b.csv:7"
    assert json.loads(record.text or "")["actualDemand"] == 8


def test_plan_row_holds_a_change_an_api_may_add_twice() -> None:
    assert plan_row("h2", "h1", None, may_add=True) == "held_changed"
    assert plan_row("h1", None, None, may_add=True) == "send"  # never accepted: sent once
    assert plan_row("h1", "h1", None, may_add=True) == "unchanged"


def test_plan_row() -> None:
    assert plan_row("h1", "h1", None) == "unchanged"
    assert plan_row("h2", "h1", None) == "send"
    assert plan_row("h2", "h1", "h2") == "failed"  # refused as is: wait for a change
    assert plan_row("h3", "h1", "h2") == "send"  # changed since it failed
    assert plan_row("h1", None, None) == "send"


def test_row_hash_ignores_key_order() -> None:
    assert row_hash({"a": 1, "b": [1, 2]}) == row_hash({"b": [1, 2], "a": 1})
    assert row_hash({"a": 1}) != row_hash({"a": 2})


def test_errors_are_matched_to_sent_rows_by_index_then_key() -> None:
    job = ImportJob.model_validate(
        {
            "jobId": "j",
            "status": "COMPLETED",
            "errors": [
                {"row": 0, "key": "A", "field": "x", "message": "bad"},
                {"row": 0, "key": "C", "message": "index is off, key wins"},
                {"row": 7, "message": "no such row"},
                "job-level text",
            ],
        }
    )
    found, unmatched = match_errors(job, ["A", "B", "C"])
    assert sorted(found) == [0, 2]
    assert [e.message for e in unmatched] == ["no such row", "job-level text"]


def _job(**counts: Any) -> ImportJob:
    return ImportJob.model_validate({"jobId": "j", "status": "COMPLETED", **counts})


@pytest.mark.parametrize(
    ("counts", "sent", "refused", "unmatched", "problem"),
    [
        ({"rowCount": 3, "processedCount": 3, "failedCount": 0}, 3, 0, 0, None),
        ({"rowCount": 3, "processedCount": 3, "failedCount": 1}, 3, 1, 0, None),
        ({"rowCount": 3, "processedCount": 3, "failedCount": 1}, 3, 0, 1, "name no row"),
        ({"rowCount": 3, "processedCount": 3, "failedCount": 2}, 3, 1, 0, "failedCount 2"),
        ({"rowCount": 3, "processedCount": 2, "failedCount": 1}, 3, 1, 0, "processedCount"),
        ({"rowCount": 2, "processedCount": 2, "failedCount": 0}, 3, 0, 0, "rowCount 2"),
        ({"rowCount": 3, "processedCount": 0, "failedCount": 0}, 3, 0, 0, "processedCount"),
    ],
)
def test_rows_are_accepted_only_when_the_counts_add_up(
    counts: dict[str, int], sent: int, refused: int, unmatched: int, problem: str | None
) -> None:
    found = count_mismatch(_job(**counts), sent, refused, unmatched)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


def test_inventory_rows_send_what_the_host_owns_and_hold_what_would_reset_the_planner() -> None:
    stock = {"article_id": "A1", "location": "", "qty": 12, "reorder_point": 4}
    row = inventory_row({**stock, "qty_reserved": 1}, SITE, reserved=3)
    assert row["reorderPoint"] == 4
    assert row["quantityReserved"] == 1  # the host's own word wins over Instock's
    assert held_reason("inventory", row, Options()) is None
    bare = inventory_row({"article_id": "A1", "location": "", "qty": 12}, SITE)
    assert "reorder_point" in (held_reason("inventory", bare, Options()) or "")
    assert held_reason("inventory", bare, Options(on_missing_reorder_point="api_default")) is None


def test_a_closed_row_is_the_last_one_with_nothing_outstanding_and_its_status() -> None:
    last = {"externalPoNumber": "P", "status": "OPEN", "lines": [{"skuId": "A", "quantity": 4}]}
    closed = closed_row(last, "RECEIVED")
    assert closed == {
        "externalPoNumber": "P",
        "status": "RECEIVED",
        "lines": [{"skuId": "A", "quantity": 0}],
    }
    assert closed_row(closed, "RECEIVED") == closed  # sent once: the same row again
    assert "status" not in closed_row({"externalOrderId": "O", "lines": []}, "")
    options = Options()
    assert po_final_status(True, True, options) == "RECEIVED"
    assert po_final_status(False, True, options) == "CANCELLED"
    assert po_final_status(False, False, options) == "CLOSED"


def test_options() -> None:
    defaults = Options()
    assert set(ORDER) - set(defaults.upsert_endpoints) == {"orders", "demand-history"}
    with pytest.raises(ValidationError, match="upsert_endpoints"):
        Options(include_open_week=True)
    assert Options(include_open_week=True, upsert_endpoints=["demand-history"]).include_open_week
    assert (defaults.include_open_week, defaults.reserved_from_instock) == (False, True)
    assert (defaults.on_missing_reorder_point, defaults.on_missing_forecast) == ("hold", "hold")
    assert Options().endpoints == list(ORDER)
    assert Options(endpoints=["demand-history", "catalog"]).endpoints == [
        "catalog",
        "demand-history",
    ]
    with pytest.raises(ValidationError):
        Options(endpoints=["stock"])
    with pytest.raises(ValidationError):
        Options(batch_size=0)


@pytest.mark.parametrize(
    "record",
    [
        {
            "actualDemand": 4,
            "channel": "ALL",
            "locationId": SITE,
            "skuId": "A1",
            "weekStarting": "2025-03-10",
        },
        {
            "actualDemand": 2.5,
            "channel": "web",
            "locationId": "B-01",
            "skuId": 'Säge "3/8"',
            "weekStarting": "2025-03-10",
        },
        {
            "actualDemand": 0.1 + 0.2,
            "channel": "ALL",
            "locationId": "é\\n",
            "skuId": "A\u2028",
            "weekStarting": "2025-03-10",
        },
        {
            "actualDemand": 1e-7,
            "channel": "ALL",
            "locationId": SITE,
            "skuId": "A1",
            "weekStarting": "2025-03-10",
        },
        {
            "actualDemand": 10**20,
            "channel": "ALL",
            "locationId": SITE,
            "skuId": "A1",
            "weekStarting": "2025-03-10",
        },
        {
            "actualDemand": 3,
            "channel": "ALL",
            "locationId": SITE,
            "skuId": "A1",
            "weekStarting": "2025-03-10",
            "extra": 1,
        },
        {
            "actualDemand": Decimal("1.5"),
            "channel": "ALL",
            "locationId": SITE,
            "skuId": "A1",
            "weekStarting": "2025-03-10",
        },
    ],
)
def test_demand_text_is_the_canonical_json(record: dict[str, Any]) -> None:
    """The fast renderer must give byte for byte what `canonical` gives: the hash of what
    was accepted is compared across runs."""
    assert demand_text(record) == canonical(record)
    assert json.loads(demand_text(record)) == json.loads(canonical(record))
