"""Host planning feeds: locations, suppliers, sales, open purchase orders and PO history."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from syncd.config import HostConfig
from syncd.host import FEEDS, LoadResult, host_options, load_file, load_inbox
from syncd.state import Store
from tests.unit.hostkit import drop

LOCATIONS_HEADER = "location_id,name,type,location_group,active\n"
SUPPLIERS_HEADER = (
    "supplier_id,name,type,lead_time_days,currency,contact_name,contact_email,contact_phone\n"
)
SALES_HEADER = (
    "transaction_id,line_id,sale_date,order_date,article_id,location,customer_id,qty,"
    "sales_value,cost_of_sales,channel\n"
)
PO_HEADER = (
    "po_number,supplier_id,location,order_date,status,currency,line_no,article_id,"
    "qty_ordered,qty_received,unit_cost,expected_date\n"
)
PO_HISTORY_HEADER = (
    "po_number,line_no,article_id,supplier_id,location,order_date,expected_date,"
    "receipt_date,qty_ordered,qty_received,unit_cost\n"
)


def jsonl(*records: dict[str, Any]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def load(db: Store, host: Path, **feeds: dict[str, Any]) -> list[LoadResult]:
    config = HostConfig(dir=host, settle_time=5, options={"feeds": feeds} if feeds else {})
    return load_inbox(db, host, config, "run-1")


def rejects(db: Store) -> list[tuple[str, str | None]]:
    return [
        (r["reference"], r["field"])
        for r in db.query("SELECT reference, field FROM rejects ORDER BY id")
    ]


def reasons(db: Store) -> dict[str, str]:
    return {r["reference"]: r["reason"] for r in db.query("SELECT * FROM rejects")}


def locations(*ids: str) -> str:
    return LOCATIONS_HEADER + "".join(f"{i},Location {i},store,,true\n" for i in ids)


def po_lines(db: Store, po_number: str) -> list[tuple[Any, ...]]:
    return [
        tuple(r.values())
        for r in db.query(
            "SELECT line_no, article_id, qty_ordered, qty_received, unit_cost, expected_date "
            "FROM host_purchase_order_lines WHERE po_number = ? ORDER BY line_no",
            [po_number],
        )
    ]


# -- good files, CSV and JSON Lines ---------------------------------------------------


def test_locations_load_from_csv_and_jsonl(db: Store, host: Path) -> None:
    """Locations load from CSV (flags parsed from text, empty cells as not given) and from
    JSON Lines, each row keeping the file and line it came from."""
    drop(
        host,
        "locations-1.csv",
        LOCATIONS_HEADER + "WH1,Main warehouse,warehouse,NORTH,true\nST12,Store 12,store,,no\n",
    )
    drop(
        host,
        "locations-2.jsonl",
        jsonl({"location_id": "ST13", "name": "Store 13", "type": "store", "active": False}),
    )
    first, second = load(db, host, locations={"mode": "delta"})
    assert (first.status, first.loaded, first.rejected) == ("archived", 2, 0)
    assert (second.loaded, second.rejected) == (1, 0)
    rows = db.query(
        "SELECT location_id, name, type, location_group, active, file, line "
        "FROM host_locations ORDER BY 1"
    )
    assert rows == [
        {
            "location_id": "ST12",
            "name": "Store 12",
            "type": "store",
            "location_group": None,
            "active": 0,
            "file": "locations-1.csv",
            "line": 3,
        },
        {
            "location_id": "ST13",
            "name": "Store 13",
            "type": "store",
            "location_group": None,
            "active": 0,
            "file": "locations-2.jsonl",
            "line": 1,
        },
        {
            "location_id": "WH1",
            "name": "Main warehouse",
            "type": "warehouse",
            "location_group": "NORTH",
            "active": 1,
            "file": "locations-1.csv",
            "line": 2,
        },
    ]


def test_suppliers_load_from_csv_and_jsonl(db: Store, host: Path) -> None:
    """Suppliers load from CSV (quoted names, lead time as whole days, currency upper-cased)
    and from JSON Lines with only the required fields."""
    drop(
        host,
        "suppliers-1.csv",
        SUPPLIERS_HEADER
        + 'SUP01,"Acme Tools, Inc.",local,14,usd,Jane Roe,orders@acme.example,+1 555 0100\n',
    )
    drop(
        host,
        "suppliers-2.jsonl",
        jsonl(
            {"supplier_id": "SUP01", "name": "Acme Tools, Inc.", "lead_time_days": 14,
             "currency": "USD", "type": "local", "contact_name": "Jane Roe",
             "contact_email": "orders@acme.example", "contact_phone": "+1 555 0100"},
            {"supplier_id": "SUP02", "name": "Birch & Co"},
        ),
    )  # fmt: skip
    first, second = load(db, host)
    assert (first.loaded, second.loaded, second.rejected) == (1, 2, 0)
    assert second.changed == 1  # SUP01 unchanged: it keeps its CSV provenance
    rows = db.query("SELECT * FROM host_suppliers ORDER BY supplier_id")
    assert {k: rows[0][k] for k in ("name", "lead_time_days", "currency", "file")} == {
        "name": "Acme Tools, Inc.",
        "lead_time_days": 14,
        "currency": "USD",
        "file": "suppliers-1.csv",
    }
    assert rows[0]["contact_email"] == "orders@acme.example"
    assert (rows[1]["supplier_id"], rows[1]["lead_time_days"], rows[1]["currency"]) == (
        "SUP02",
        None,
        None,
    )


def test_sales_load_from_csv_and_jsonl_with_returns_as_negative_quantities(
    db: Store, host: Path
) -> None:
    """Sales lines load from CSV and JSON Lines with exact decimals and ISO dates; a return is
    a row of its own with a negative quantity and value, and is accepted as such."""
    drop(
        host,
        "sales-20261124.csv",
        SALES_HEADER
        + "INV-1001,1,2026-11-23,2026-11-20,A1,,STORE-12,3,11.97,7.20,retail\n"
        + "INV-1001,2,2026-11-23,2026-11-20,A2,WH1,STORE-12,0.250,1.10,,\n"
        + "CRN-0042,1,2026-11-24,,A1,,STORE-12,-1,-3.99,-2.40,retail\n",
    )
    drop(
        host,
        "sales-20261125.jsonl",
        jsonl(
            {"transaction_id": "INV-1002", "sale_date": "2026-11-25", "article_id": "A1",
             "qty": 2, "sales_value": "7.98", "customer_id": "STORE-7"},
            {"transaction_id": "CRN-0043", "line_id": "1", "sale_date": "2026-11-25",
             "article_id": "A2", "qty": -0.5, "sales_value": -2.2},
        ),
    )  # fmt: skip
    first, second = load(db, host)
    assert (first.loaded, first.rejected, second.loaded, second.rejected) == (3, 0, 2, 0)
    rows = db.query(
        "SELECT transaction_id, line_id, sale_date, order_date, article_id, location, "
        "customer_id, qty, sales_value, cost_of_sales, channel FROM host_sales ORDER BY 1, 2"
    )
    assert [tuple(r.values()) for r in rows] == [
        ("CRN-0042", "1", "2026-11-24", None, "A1", "", "STORE-12", -1, "-3.99", "-2.4", "retail"),
        ("CRN-0043", "1", "2026-11-25", None, "A2", "", None, -0.5, "-2.2", None, None),
        ("INV-1001", "1", "2026-11-23", "2026-11-20", "A1", "", "STORE-12", 3, "11.97", "7.2",
         "retail"),
        ("INV-1001", "2", "2026-11-23", "2026-11-20", "A2", "WH1", "STORE-12", 0.25, "1.1", None,
         None),
        ("INV-1002", "", "2026-11-25", None, "A1", "", "STORE-7", 2, "7.98", None, None),
    ]  # fmt: skip
    # Net demand per article, as the weekly exports sum it: returns subtract.
    assert db.query("SELECT article_id, sum(qty) AS qty FROM host_sales GROUP BY 1 ORDER BY 1") == [
        {"article_id": "A1", "qty": 4},
        {"article_id": "A2", "qty": -0.25},
    ]


def test_purchase_orders_load_from_csv_rows_and_nested_jsonl(db: Store, host: Path) -> None:
    """Open POs load from CSV (one row per line, header repeated) and from JSON Lines (lines
    nested; the header's expected_date is the date of lines that give none)."""
    drop(
        host,
        "purchase_orders-1.csv",
        PO_HEADER
        + "PO-1001,SUP01,WH1,2026-11-02,OPEN,USD,1,A1,100,40,3.10,2026-11-16\n"
        + "PO-1001,SUP01,WH1,2026-11-02,OPEN,USD,2,A2,24,,1.25,2026-11-20\n"
        + "PO-1002,SUP02,,2026-11-05,,,1,A1,7.5,,,\n",
    )
    [result] = load(db, host)
    assert (result.loaded, result.rejected, result.changed) == (3, 0, 5)
    header = db.query("SELECT * FROM host_purchase_orders WHERE po_number = 'PO-1001'")[0]
    assert (header["supplier_id"], header["location"], header["order_date"]) == (
        "SUP01",
        "WH1",
        "2026-11-02",
    )
    assert (header["status"], header["currency"], header["line"]) == ("OPEN", "USD", 3)
    assert po_lines(db, "PO-1001") == [
        ("1", "A1", 100, 40, "3.1", "2026-11-16"),
        ("2", "A2", 24, 0, "1.25", "2026-11-20"),
    ]
    assert po_lines(db, "PO-1002") == [("1", "A1", 7.5, 0, None, None)]

    drop(
        host,
        "purchase_orders-2.jsonl",
        jsonl(
            {"po_number": "PO-1001", "supplier_id": "SUP01", "location": "WH1",
             "order_date": "2026-11-02", "expected_date": "2026-11-18", "status": "OPEN",
             "currency": "USD",
             "lines": [
                 {"line_no": "1", "article_id": "A1", "qty_ordered": 100, "qty_received": 60,
                  "unit_cost": "3.10", "expected_date": "2026-11-16"},
                 {"line_no": "2", "article_id": "A2", "qty_ordered": 24, "unit_cost": 1.25},
             ]},
            {"po_number": "PO-1002", "supplier_id": "SUP02", "order_date": "2026-11-05",
             "lines": [{"line_no": "1", "article_id": "A1", "qty_ordered": "7.5"}]},
        ),
    )  # fmt: skip
    [result] = load(db, host)
    assert (result.loaded, result.rejected, result.deleted) == (2, 0, 0)
    assert po_lines(db, "PO-1001") == [
        ("1", "A1", 100, 60, "3.1", "2026-11-16"),
        ("2", "A2", 24, 0, "1.25", "2026-11-18"),
    ]
    # PO-1001's lines changed, so its header points at the new file; PO-1002 did not change.
    assert db.query("SELECT po_number, file, line FROM host_purchase_orders ORDER BY 1") == [
        {"po_number": "PO-1001", "file": "purchase_orders-2.jsonl", "line": 1},
        {"po_number": "PO-1002", "file": "purchase_orders-1.csv", "line": 4},
    ]


def test_po_history_loads_from_csv_and_jsonl(db: Store, host: Path) -> None:
    """Received or closed PO lines load from CSV and JSON Lines; a line closed short with
    nothing received needs no receipt date."""
    drop(
        host,
        "po_history-1.csv",
        PO_HISTORY_HEADER
        + "PO-0950,1,A1,SUP01,WH1,2026-10-01,2026-10-15,2026-10-17,100,100,3.05\n"
        + "PO-0950,2,A2,SUP01,WH1,2026-10-01,,,10,0,\n",
    )
    drop(
        host,
        "po_history-2.jsonl",
        jsonl(
            {"po_number": "PO-0951", "line_no": "1", "article_id": "A1", "supplier_id": "SUP02",
             "order_date": "2026-10-03", "receipt_date": "2026-10-20", "qty_ordered": 12,
             "qty_received": 11.5, "unit_cost": 2},
        ),
    )  # fmt: skip
    first, second = load(db, host)
    assert (first.loaded, first.rejected, second.loaded, second.rejected) == (2, 0, 1, 0)
    rows = db.query(
        "SELECT po_number, line_no, article_id, supplier_id, location, order_date, "
        "expected_date, receipt_date, qty_ordered, qty_received, unit_cost "
        "FROM host_po_history ORDER BY 1, 2"
    )
    assert [tuple(r.values()) for r in rows] == [
        ("PO-0950", "1", "A1", "SUP01", "WH1", "2026-10-01", "2026-10-15", "2026-10-17", 100, 100,
         "3.05"),
        ("PO-0950", "2", "A2", "SUP01", "WH1", "2026-10-01", None, None, 10, 0, None),
        ("PO-0951", "1", "A1", "SUP02", "", "2026-10-03", None, "2026-10-20", 12, 11.5, "2"),
    ]  # fmt: skip


# -- bad rows ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "good", "bad"),
    [
        pytest.param(
            "locations.csv",
            LOCATIONS_HEADER + "WH1,Main,warehouse,,true\n,Nameless,,,\nST1,Store,,,perhaps\n",
            1,
            [("locations.csv:3", "location_id"), ("locations.csv:4", "active")],
            id="locations",
        ),
        pytest.param(
            "suppliers.csv",
            SUPPLIERS_HEADER
            + "S1,One,,14,USD,,,\nS2,,,,,,,\nS3,Three,,two weeks,,,,\nS4,Four,,,US$,,x,\n",
            1,
            [
                ("suppliers.csv:3", "name"),
                ("suppliers.csv:4", "lead_time_days"),
                ("suppliers.csv:5", "currency,contact_email"),
            ],
            id="suppliers",
        ),
        pytest.param(
            "sales.csv",
            SALES_HEADER
            + "T1,1,2026-11-23,,A1,,,2,,,\n"
            + "T2,1,23/11/2026,,A1,,,2,,,\n"
            + "T3,1,2026-02-30,,A1,,,2,,,\n"
            + "T4,1,2026-11-23,,A1,,,two,,,\n"
            + "T5,1,2026-11-23,,,,,2,,,\n"
            + "T6,1,2026-11-23,,A1,,,2,1.2.3,,\n",
            1,
            [
                ("sales.csv:3", "sale_date"),
                ("sales.csv:4", "sale_date"),
                ("sales.csv:5", "qty"),
                ("sales.csv:6", "article_id"),
                ("sales.csv:7", "sales_value"),
            ],
            id="sales",
        ),
        pytest.param(
            "po_history.csv",
            PO_HISTORY_HEADER
            + "P1,1,A1,S1,,2026-10-01,,2026-10-09,5,5,\n"
            + "P1,2,A1,S1,,2026-10-01,,,5,5,\n"
            + "P1,3,A1,S1,,2026-13-01,,,5,0,\n"
            + "P1,4,A1,,,2026-10-01,,,5,0,\n"
            + "P1,5,A1,S1,,2026-10-01,,,0,0,\n"
            + "P1,6,A1,S1,,2026-10-01,,2026-10-09,5,-1,\n",
            1,
            [
                ("po_history.csv:3", "receipt_date"),
                ("po_history.csv:4", "order_date"),
                ("po_history.csv:5", "supplier_id"),
                ("po_history.csv:6", "qty_ordered"),
                ("po_history.csv:7", "qty_received"),
            ],
            id="po_history",
        ),
    ],
)
def test_bad_rows_are_rejected_with_file_line_and_field_while_good_rows_load(
    db: Store, host: Path, name: str, content: str, good: int, bad: list[tuple[str, str]]
) -> None:
    """A bad date, a bad number or a missing field becomes a reject naming file, line and
    field, with the raw row kept; the good rows of the same file load."""
    drop(host, name, content)
    [result] = load(db, host)
    assert (result.status, result.loaded, result.rejected) == ("archived", good, len(bad))
    assert rejects(db) == bad
    feed = name.split(".", maxsplit=1)[0]
    assert db.scalar(f"SELECT count(*) FROM {FEEDS[feed].table}") == good
    assert all(
        r["source"] == f"host:{feed}" and r["status"] == "open" and r["payload"]
        for r in db.query("SELECT * FROM rejects")
    )


def test_bad_date_and_number_reasons_quote_the_value(db: Store, host: Path) -> None:
    """A reject's reason says what was wrong and quotes the value the host wrote."""
    drop(host, "sales.csv", SALES_HEADER + "T2,1,2026-11-23T10:00,,A1,,,2,,,\nT4,1,,,A1,,,1e,,,\n")
    load(db, host)
    text = reasons(db)
    assert text["sales.csv:2"] == (
        "sale_date: expected an ISO date YYYY-MM-DD (got '2026-11-23T10:00')"
    )
    assert text["sales.csv:3"].startswith("sale_date: required; qty: ")
    assert "'1e'" in text["sales.csv:3"]


def test_jsonl_rows_need_json_types_and_known_keys(db: Store, host: Path) -> None:
    """JSON Lines: a numeric id, a quoted lead time, a date given as a number and an unknown
    key are each rejected with line and field; the good record loads."""
    drop(
        host,
        "suppliers.jsonl",
        jsonl(
            {"supplier_id": "S1", "name": "One", "lead_time_days": 7},
            {"supplier_id": 2, "name": "Two"},
            {"supplier_id": "S3", "name": "Three", "lead_time_days": "7"},
            {"supplier_id": "S4", "name": "Four", "fax": "none"},
        ),
    )
    drop(
        host,
        "sales.jsonl",
        jsonl({"transaction_id": "T1", "sale_date": 20261123, "article_id": "A1", "qty": 1}),
    )
    first, second = load(db, host)
    assert (first.loaded, first.rejected, second.loaded, second.rejected) == (1, 3, 0, 1)
    assert rejects(db) == [
        ("suppliers.jsonl:2", "supplier_id"),
        ("suppliers.jsonl:3", "lead_time_days"),
        ("suppliers.jsonl:4", "fax"),
        ("sales.jsonl:1", "sale_date"),
    ]


def test_unknown_csv_column_refuses_the_file(db: Store, host: Path) -> None:
    """A misspelt column refuses the whole file (to rejects/ with errors.json) rather than
    losing that column's data silently."""
    drop(host, "sales.csv", "transaction_id,sale_date,article_id,quantity\nT1,2026-11-23,A1,1\n")
    [result] = load(db, host)
    assert result.status == "rejected_file"
    assert "unknown column(s): 'quantity'" in (result.reason or "")
    assert "missing required column(s): qty" in (result.reason or "")
    assert (host / "rejects" / "sales.csv.errors.json").exists()


# -- snapshot and delta -----------------------------------------------------------------


def test_snapshot_deletes_absent_locations_and_suppliers(db: Store, host: Path) -> None:
    """Locations and suppliers are snapshots: a row absent from the latest file is deleted,
    while a row present but invalid keeps its previous version."""
    drop(host, "locations-1.csv", locations("L1", "L2", "L3", "L4"))
    drop(host, "locations-2.csv", locations("L1", "L2") + "L3,,store,,true\n")
    drop(host, "suppliers-1.csv", SUPPLIERS_HEADER + "S1,One,,1,,,,\nS2,Two,,2,,,,\n")
    drop(host, "suppliers-2.csv", SUPPLIERS_HEADER + "S1,One,,3,,,,\n")
    results = load(db, host, suppliers={"allow_mass_delete": True})
    assert [(r.status, r.deleted) for r in results] == [
        ("archived", 0),
        ("archived", 1),
        ("archived", 0),
        ("archived", 1),
    ]
    assert [r["location_id"] for r in db.query("SELECT * FROM host_locations ORDER BY 1")] == [
        "L1",
        "L2",
        "L3",
    ]
    assert db.scalar("SELECT file FROM host_locations WHERE location_id = 'L3'") == (
        "locations-1.csv"
    )
    assert db.query("SELECT supplier_id, lead_time_days FROM host_suppliers") == [
        {"supplier_id": "S1", "lead_time_days": 3}
    ]


def test_snapshot_guard_refuses_a_mass_deletion_of_open_pos(db: Store, host: Path) -> None:
    """A purchase_orders snapshot that would close most open POs at once is refused whole
    (rejects/, errors.json, an alert) and loads once allow_mass_delete is set."""
    drop(
        host,
        "purchase_orders-1.csv",
        PO_HEADER + "".join(f"PO-{i},S1,,2026-11-02,,,1,A1,5,,,\n" for i in range(10)),
    )
    load(db, host)
    drop(host, "purchase_orders-2.csv", PO_HEADER + "PO-0,S1,,2026-11-02,,,1,A1,5,,,\n")
    [result] = load(db, host)
    assert result.status == "rejected_file"
    assert "would delete 9 of 10 rows of host_purchase_orders" in (result.reason or "")
    assert db.scalar("SELECT count(*) FROM host_purchase_order_lines") == 10
    errors = json.loads((host / "rejects" / "purchase_orders-2.csv.errors.json").read_text())
    assert errors["details"]["would_delete"] == 9
    [alert] = db.open_alerts("host_feed_guard")
    assert alert["subject"] == "purchase_orders"

    shutil.move(host / "rejects" / "purchase_orders-2.csv", host / "inbox")
    os.utime(host / "inbox" / "purchase_orders-2.csv", (time.time() - 60,) * 2)
    [result] = load(db, host, purchase_orders={"allow_mass_delete": True})
    assert (result.status, result.deleted) == ("archived", 9)
    # Closed POs go with their lines.
    assert db.query("SELECT po_number FROM host_purchase_order_lines") == [{"po_number": "PO-0"}]
    assert db.open_alerts("host_feed_guard") == []


def test_snapshot_guard_covers_the_new_snapshot_feeds(db: Store, host: Path) -> None:
    """A header-only locations or suppliers file does not wipe the table."""
    drop(host, "locations-1.csv", locations("L1", "L2"))
    drop(host, "suppliers-1.csv", SUPPLIERS_HEADER + "S1,One,,,,,,\n")
    drop(host, "locations-2.csv", LOCATIONS_HEADER)
    drop(host, "suppliers-2.csv", SUPPLIERS_HEADER)
    results = load(db, host)
    assert [r.status for r in results] == [
        "archived",
        "archived",
        "rejected_file",
        "rejected_file",
    ]
    assert db.scalar("SELECT count(*) FROM host_locations") == 2
    assert db.scalar("SELECT count(*) FROM host_suppliers") == 1


def test_sales_delta_upserts_by_transaction_line_and_deletes_nothing(db: Store, host: Path) -> None:
    """Sales are a delta: a known (transaction_id, line_id) is replaced by its corrected row,
    an unchanged row keeps its provenance, new rows are added and absent rows stay."""
    drop(
        host,
        "sales-1.csv",
        SALES_HEADER + "T1,1,2026-11-23,,A1,,,2,,,\nT1,2,2026-11-23,,A2,,,1,,,\n"
        "T2,,2026-11-23,,A1,,,5,,,\n",
    )
    drop(
        host,
        "sales-2.csv",
        SALES_HEADER + "T1,1,2026-11-23,,A1,,,2,,,\nT1,2,2026-11-23,,A2,,,3,,,\n"
        "T3,,2026-11-24,,A1,,,-2,,,\n",
    )
    _, second = load(db, host)
    assert (second.loaded, second.changed, second.deleted) == (3, 2, 0)
    rows = db.query("SELECT transaction_id, line_id, qty, file FROM host_sales ORDER BY 1, 2")
    assert [tuple(r.values()) for r in rows] == [
        ("T1", "1", 2, "sales-1.csv"),
        ("T1", "2", 3, "sales-2.csv"),
        ("T2", "", 5, "sales-1.csv"),
        ("T3", "", -2, "sales-2.csv"),
    ]


def test_po_history_delta_replaces_a_line_with_its_new_totals(db: Store, host: Path) -> None:
    """PO history quantities are totals: a later receipt of a line replaces its row."""
    drop(host, "po_history-1.csv", PO_HISTORY_HEADER + "P1,1,A1,S1,,2026-10-01,,2026-10-09,10,4,\n")
    drop(
        host, "po_history-2.csv", PO_HISTORY_HEADER + "P1,1,A1,S1,,2026-10-01,,2026-10-12,10,10,\n"
    )
    load(db, host)
    assert db.query("SELECT receipt_date, qty_received, file FROM host_po_history") == [
        {"receipt_date": "2026-10-12", "qty_received": 10, "file": "po_history-2.csv"}
    ]


def test_a_delta_configured_feed_can_run_as_a_snapshot(db: Store, host: Path) -> None:
    """The mode is the config's: sales configured as a snapshot delete absent rows."""
    drop(
        host, "sales-1.csv", SALES_HEADER + "T1,,2026-11-23,,A1,,,1,,,\nT2,,2026-11-23,,A1,,,1,,,\n"
    )
    drop(host, "sales-2.csv", SALES_HEADER + "T1,,2026-11-23,,A1,,,1,,,\n")
    _, second = load(db, host, sales={"mode": "snapshot"})
    assert (second.status, second.deleted) == ("archived", 1)


# -- purchase orders applied whole ---------------------------------------------------------


def test_po_lines_are_replaced_as_a_whole_per_po(db: Store, host: Path) -> None:
    """A PO in the file gets exactly its lines in the file: changed lines update, new ones are
    added, missing ones go; POs of the file leave other POs' lines alone."""
    drop(
        host,
        "purchase_orders-1.csv",
        PO_HEADER
        + "PO-1,S1,,2026-11-02,,,1,A1,10,,,\nPO-1,S1,,2026-11-02,,,2,A2,20,,,\n"
        + "PO-1,S1,,2026-11-02,,,3,A3,30,,,\nPO-2,S1,,2026-11-02,,,1,A1,5,,,\n",
    )
    drop(
        host,
        "purchase_orders-2.csv",
        PO_HEADER
        + "PO-1,S1,,2026-11-02,,,2,A2,25,5,,\nPO-1,S1,,2026-11-02,,,4,A4,40,,,\n"
        + "PO-2,S1,,2026-11-02,,,1,A1,5,,,\n",
    )
    _, second = load(db, host)
    assert (second.loaded, second.rejected, second.deleted) == (3, 0, 0)
    assert po_lines(db, "PO-1") == [
        ("2", "A2", 25, 5, None, None),
        ("4", "A4", 40, 0, None, None),
    ]
    assert po_lines(db, "PO-2") == [("1", "A1", 5, 0, None, None)]
    assert db.scalar("SELECT file FROM host_purchase_orders WHERE po_number = 'PO-2'") == (
        "purchase_orders-1.csv"
    )


def test_po_with_a_bad_row_is_held_back_whole(db: Store, host: Path) -> None:
    """One bad line rejects the PO's other rows too (naming the bad row); its previous version
    stays and the snapshot does not delete it; other POs in the file load."""
    drop(
        host,
        "purchase_orders-1.csv",
        PO_HEADER + "PO-1,S1,,2026-11-02,,,1,A1,10,,,\nPO-2,S1,,2026-11-02,,,1,A1,5,,,\n",
    )
    drop(
        host,
        "purchase_orders-2.csv",
        PO_HEADER
        + "PO-1,S1,,2026-11-02,,,1,A1,12,,,\n"
        + "PO-1,S1,,2026-11-02,,,2,A2,0,,,\n"
        + "PO-2,S1,,2026-11-02,,,1,A1,6,,,\n",
    )
    _, second = load(db, host)
    assert (second.loaded, second.rejected, second.deleted) == (1, 2, 0)
    assert po_lines(db, "PO-1") == [("1", "A1", 10, 0, None, None)]
    assert po_lines(db, "PO-2") == [("1", "A1", 6, 0, None, None)]
    assert rejects(db) == [
        ("purchase_orders-2.csv:2", None),
        ("purchase_orders-2.csv:3", "qty_ordered"),
    ]
    assert (
        "held back: its row at purchase_orders-2.csv:3 was rejected"
        in (reasons(db)["purchase_orders-2.csv:2"])
    )


def test_csv_rows_of_a_po_must_repeat_the_same_header(db: Store, host: Path) -> None:
    """CSV rows of one PO that disagree on supplier or order date are all rejected, naming the
    columns that differ, rather than letting the last row win silently."""
    drop(
        host,
        "purchase_orders.csv",
        PO_HEADER
        + "PO-1,S1,,2026-11-02,,,1,A1,10,,,\n"
        + "PO-1,S2,,2026-11-03,,,2,A2,20,,,\n"
        + "PO-2,S1,,2026-11-02,OPEN,,1,A1,5,,,\n",
    )
    [result] = load(db, host)
    assert (result.loaded, result.rejected) == (1, 2)
    assert rejects(db) == [
        ("purchase_orders.csv:2", "supplier_id,order_date"),
        ("purchase_orders.csv:3", "supplier_id,order_date"),
    ]
    assert "disagree on supplier_id, order_date" in reasons(db)["purchase_orders.csv:2"]
    assert [r["po_number"] for r in db.query("SELECT po_number FROM host_purchase_orders")] == [
        "PO-2"
    ]


def test_jsonl_po_records_are_whole_and_a_later_one_wins(db: Store, host: Path) -> None:
    """JSON Lines: a later record of a PO replaces an earlier one's lines; a PO with no lines,
    a repeated line_no or a bad nested line is rejected with the nested field's name."""
    line = {"line_no": "1", "article_id": "A1", "qty_ordered": 1}
    base = {"supplier_id": "S1", "order_date": "2026-11-02"}
    drop(
        host,
        "purchase_orders.jsonl",
        jsonl(
            {"po_number": "PO-1", **base, "lines": [line, {**line, "line_no": "2"}]},
            {"po_number": "PO-1", **base, "lines": [{**line, "line_no": "3", "qty_ordered": 3}]},
            {"po_number": "PO-2", **base, "lines": []},
            {"po_number": "PO-3", **base, "lines": [line, line]},
            {"po_number": "PO-4", **base, "lines": [{**line, "expected_date": "soon"}]},
        ),
    )
    [result] = load(db, host)
    assert (result.loaded, result.rejected) == (2, 3)
    assert po_lines(db, "PO-1") == [("3", "A1", 3, 0, None, None)]
    assert rejects(db) == [
        ("purchase_orders.jsonl:3", "lines"),
        ("purchase_orders.jsonl:4", "lines"),
        ("purchase_orders.jsonl:5", "lines.0.expected_date"),
    ]


# -- options and schema -----------------------------------------------------------------


def test_new_feeds_have_options_and_defaults(db: Store, host: Path) -> None:
    """Each new feed has a `host.options.feeds.<feed>` section with its default mode, and a
    disabled feed's files stay in the inbox."""
    options = host_options(HostConfig())
    assert {name: options.feed(name).mode for name in FEEDS} == {
        "articles": "snapshot",
        "stock": "snapshot",
        "orders": "delta",
        "locations": "snapshot",
        "suppliers": "snapshot",
        "sales": "delta",
        "purchase_orders": "snapshot",
        "po_history": "delta",
    }
    drop(host, "po_history-1.csv", PO_HISTORY_HEADER + "P1,1,A1,S1,,2026-10-01,,,10,0,\n")
    assert load(db, host, po_history={"enabled": False}) == []
    assert (host / "inbox" / "po_history-1.csv").exists()


def test_load_file_with_the_feed_object(db: Store, host: Path) -> None:
    """load_file loads a planning feed file given its FEEDS entry and options."""
    path = drop(host, "locations.jsonl", jsonl({"location_id": "WH1", "name": "Main"}))
    result = load_file(
        db, FEEDS["locations"], path, host_options(HostConfig()).feed("locations"), "r"
    )
    assert (result.status, result.loaded) == ("archived", 1)


def test_exports_find_sales_by_article_and_date_through_an_index(db: Store) -> None:
    """The sales, open PO and PO history tables have the indexes the exports query by."""
    plan = " ".join(
        str(tuple(r))
        for r in db.db.execute(
            "EXPLAIN QUERY PLAN SELECT sum(qty) FROM host_sales "
            "WHERE article_id = ? AND sale_date BETWEEN ? AND ?",
            ["A1", "2026-11-01", "2026-11-30"],
        )
    )
    assert "host_sales_article_date" in plan
    indexes = {r["name"] for r in db.query("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {
        "host_sales_date",
        "host_purchase_order_lines_article",
        "host_purchase_orders_supplier",
        "host_po_history_article_receipt",
        "host_po_history_supplier_receipt",
    } <= indexes
