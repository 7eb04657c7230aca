"""Pure parts of the Netstock jobs: pop answers -> host rows, host rows -> model rows, hash."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from syncd.jobs.netstock_export import (
    Options,
    dec,
    map_location,
    map_master,
    map_po,
    map_pohist,
    map_sale,
    map_stock,
    map_supplier,
    row_json,
    snapshot_hash,
)
from syncd.jobs.netstock_pop import (
    PopParseError,
    carries_data,
    columns_for,
    parse_pop,
    stream_for,
)
from syncd.state import Store


def answer(lines: list[dict[str, Any]], file_name: str = "po_12.csv") -> str:
    return json.dumps(
        {"api_call_status": True, "message": "x", "data": {"file_name": file_name, "lines": lines}}
    )


# --- pops -----------------------------------------------------------------------------------


def test_string_and_number_quantities_stay_exact() -> None:
    raw = (
        '{"api_call_status": true, "message": "", "data": {"file_name": "tr_1.csv", "lines": ['
        '{"order_number": "O1", "item_code": "I", "quantity": 5.0, "unit_cost": 0.1,'
        ' "minimum_order_quantity": 2.0, "receipt_date": "2025/11/03"},'
        '{"order_number": "O1", "item_code": "J", "quantity": "0.125", "unit_cost": "10"}]}}'
    )
    parsed = parse_pop("tr", raw)
    assert parsed.file_name == "tr_1.csv"
    assert [r["quantity"] for r in parsed.rows] == ["5.0", "0.125"]
    assert [r["unit_cost"] for r in parsed.rows] == ["0.1", "10"]
    assert parsed.rows[0]["receipt_date"] == "2025-11-03"
    assert parsed.rows[0]["line_no"] == 1
    assert parsed.rows[1]["line_no"] == 2
    assert parsed.columns == columns_for("tr")


def test_unknown_fields_become_extra_columns() -> None:
    parsed = parse_pop("po", answer([{"order_number": 1, "item_code": "I", "quantity": 1,
                                       "new_field": "x"}]))  # fmt: skip
    assert parsed.columns[-1] == "new_field"
    assert parsed.rows[0]["new_field"] == "x"
    assert parsed.rows[0]["order_number"] == "1"


@pytest.mark.parametrize(
    "raw",
    ["not json", answer([{"order_number": "1", "item_code": "I", "quantity": "many"}]), "[]"],
)
def test_unreadable_answers_raise(raw: str) -> None:
    with pytest.raises(PopParseError):
        parse_pop("po", raw)


def test_empty_answers_carry_no_data() -> None:
    assert not carries_data('{"api_call_status": true, "message": "No po", "data": {}}')
    assert not carries_data('{"api_call_status": false, "message": "temporary", "data": {}}')
    assert carries_data(answer([{"order_number": "1", "item_code": "I", "quantity": "1"}]))
    assert carries_data('{"api_call_status": true, "data": {"file_name": "po_1.csv", "li')
    assert parse_pop("wo", '{"api_call_status": true, "data": {}}').empty
    assert stream_for("wo") == "netstock_wo"


# --- export mapping ---------------------------------------------------------------------------


def test_location_supplier_and_master_mapping() -> None:
    assert map_location(
        {"location_id": "W", "name": "Main", "active": 1, "location_group": "g", "type": "wh"}
    ) == {"location_code": "W", "description": "Main", "active": True, "group": "g", "type": "wh"}
    assert map_supplier({"supplier_id": "S", "name": "N", "type": None, "lead_time_days": 7}) == {
        "supplier_code": "S",
        "description": "N",
        "type": None,
        "lead_time": 7,
    }
    master = map_master(
        {
            "article_id": "A",
            "name": "Name",
            "description": None,
            "unit": "EA",
            "dim_x": "100",
            "dim_y": "200",
            "dim_z": "50",
            "dim_uom": "mm",
            "attributes": '{"upc": "0123", "weight": "2.5"}',
        }
    )
    assert master == {
        "item_code": "A",
        "description": "Name",
        "unique_identifier": "0123",
        "uom": "EA",
        "unit_volume": Decimal("0.001"),
        "unit_weight": Decimal("2.5"),
    }
    no_dims = map_master({"article_id": "B", "name": "N", "dim_uom": "in", "attributes": "{}"})
    assert no_dims["unit_volume"] is None
    assert no_dims["unique_identifier"] is None


def test_stock_sales_po_mapping() -> None:
    assert map_stock({"article_id": "A", "location": "", "qty": 3, "allocated": 1}, "MAIN") == {
        "item_code": "A",
        "location": "MAIN",
        "stock_on_hand": Decimal(3),
        "allocated_stock": Decimal(1),
    }
    sale = map_sale(
        {"transaction_id": "T", "line_id": "", "sale_date": "2026-01-02", "article_id": "A",
         "location": "S", "qty": -1, "sales_value": "-9.90", "cost_of_sales": None},
        "MAIN",
    )  # fmt: skip
    assert sale["order_date"] == "2026-01-02"
    assert sale["transaction_details"] == "T"
    assert sale["sales_quantity"] == Decimal(-1)
    assert sale["sales_value"] == Decimal("-9.90")
    po = {"article_id": "A", "location": "", "supplier_id": "S", "po_number": "P",
          "line_no": "1", "order_date": "2026-01-01", "qty_ordered": 10, "qty_received": 2.5,
          "unit_cost": "1.05", "expected_date": None, "status": "open"}  # fmt: skip
    mapped = map_po(po, "MAIN")
    assert mapped is not None
    assert mapped["outstanding_quantity"] == Decimal("7.5")
    assert map_po({**po, "qty_received": 10}, "MAIN") is None  # fully received
    hist = map_pohist({**po, "receipt_date": "2026-01-05"}, "MAIN")
    assert hist["quantity_received"] == Decimal("2.5")
    assert hist["date_of_receipt"] == "2026-01-05"


def test_decimals_and_canonical_rows() -> None:
    assert dec("3.10") == Decimal("3.10")
    assert dec(0.1) == Decimal("0.1")
    assert dec("x") is None
    assert row_json({"b": Decimal("2.50"), "a": Decimal(3)}) == '{"a":3,"b":2.5}'


def test_snapshot_hash_changes_only_with_the_data(tmp_path: Path) -> None:
    meta = {"file": "f", "line": 1, "load_id": 1, "loaded_at": "t"}
    options = Options()
    with Store.open(tmp_path / "s.db") as store:
        empty, count = snapshot_hash(store, options)
        assert count == 0
        store.db["host_suppliers"].insert({"supplier_id": "S", "name": "N", **meta})  # type: ignore[union-attr]
        first, count = snapshot_hash(store, options)
        assert count == 1
        assert first != empty
        assert snapshot_hash(store, options)[0] == first
        store.db.execute("UPDATE host_suppliers SET loaded_at = 'later'")  # not exported
        assert snapshot_hash(store, options)[0] == first
        store.db.execute("UPDATE host_suppliers SET lead_time_days = 3")
        assert snapshot_hash(store, options)[0] != first
