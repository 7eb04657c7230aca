"""Pure parts of the Netstock jobs: pop answers -> host rows, host rows -> model rows, hash."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from syncd.jobs.netstock_dataset import (
    MAPPERS,
    Options,
    Rejected,
    RowRejected,
    Whole,
    ascii_escaped,
    dec,
    map_location,
    map_master,
    map_po,
    map_pohist,
    map_sale,
    map_stock,
    map_supplier,
    model_lines,
    rendered_lines,
    row_json,
    snapshot_hash,
    without_nulls,
)
from syncd.jobs.netstock_pop import (
    PopParseError,
    carries_data,
    columns_for,
    parse_pop,
    stream_for,
)
from syncd.jsontext import decimal_json, json_text, to_json_value
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
    whole_po = {**po, "qty_received": 2}
    mapped = map_po(whole_po, "MAIN")
    assert mapped is not None
    assert (mapped["order_quantity"], mapped["outstanding_quantity"]) == (10, 8)
    assert map_po({**po, "qty_received": 10}, "MAIN") is None  # fully received
    hist = map_pohist({**whole_po, "receipt_date": "2026-01-05"}, "MAIN")
    assert hist["quantity_received"] == Decimal(2)
    assert hist["date_of_receipt"] == "2026-01-05"


@pytest.mark.parametrize(
    ("rule", "outstanding", "received"),
    [("round", 8, 3), ("floor", 7, 2), ("ceil", 8, 3)],
)
def test_fractions_in_integer_fields_are_converted_by_the_rule(
    rule: str, outstanding: int, received: int
) -> None:
    """The document types order/stock quantities as integers: a fraction is converted by
    the configured rule, and the wire text is an integer."""
    po = {"article_id": "A", "location": "", "supplier_id": "S", "po_number": "P",
          "line_no": "1", "order_date": "2026-01-01", "qty_ordered": 10, "qty_received": 2.5,
          "unit_cost": "1.05", "expected_date": None, "status": "open"}  # fmt: skip
    whole = Whole(rule)
    mapped = map_po(po, "MAIN", whole)
    assert mapped is not None
    assert mapped["outstanding_quantity"] == outstanding
    assert f'"outstanding_quantity":{outstanding},' in row_json(mapped)
    hist = map_pohist(po, "MAIN", whole)
    assert hist["quantity_received"] == received
    stock = map_stock({"article_id": "A", "location": "W", "qty": Decimal("-0.5")}, "M", whole)
    rounded = {"round": -1, "floor": -1, "ceil": 0}[rule]
    assert row_json(stock).endswith(f'"stock_on_hand":{rounded}}}')
    assert whole.converted == 3


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (2.5, "2.5 is not a whole number"),
        ("1.7", "1.7 is not a whole number"),
        ("abc", "'abc' is not a number"),
    ],
)
def test_a_fraction_or_junk_in_an_integer_field_rejects_the_row_by_default(
    value: Any, reason: str
) -> None:
    with pytest.raises(RowRejected) as info:
        map_stock({"article_id": "A", "location": "W", "qty": value}, "MAIN")
    assert info.value.field == "stock_on_hand"
    assert info.value.reason.startswith(reason)
    assert "integer_fractions" in info.value.reason or "not a number" in reason
    with pytest.raises(RowRejected):
        map_supplier({"supplier_id": "S", "name": "N", "lead_time_days": value})
    if value == "abc":  # junk is never converted
        with pytest.raises(RowRejected):
            map_stock({"article_id": "A", "location": "W", "qty": value}, "M", Whole("round"))


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


@pytest.mark.parametrize(
    ("text", "wire"),
    [
        ("2.50", "2.5"),
        ("-9.90", "-9.9"),
        ("5.000", "5"),
        ("1E+3", "1000"),
        ("0.0001", "0.0001"),
        ("0.00001", "1e-05"),
        ("-0.000015", "-1.5e-05"),
        ("19.99", "19.99"),
        ("0.1234567890123456789", "0.1234567890123456789"),  # a float would round it
        ("12345678901234567.5", "12345678901234567.5"),
    ],
)
def test_decimals_are_sent_exactly_in_the_float_form(text: str, wire: str) -> None:
    assert decimal_json(Decimal(text)) == wire
    assert Decimal(wire) == Decimal(text)


def test_json_text_is_the_json_dumps_text_with_exact_decimals() -> None:
    row = {"b": Decimal("2.50"), "a": 3, "s": 'é\n"x€😀', "n": None, "t": True, "f": 1.5,
           "l": [1, Decimal("0.1")], "d": {"z": 1, "y": "2"}}  # fmt: skip
    expected = json.dumps(to_json_value(row), sort_keys=True, separators=(",", ":"))
    assert json_text(row) == expected
    assert ascii_escaped(json.dumps(row["s"], ensure_ascii=False)) == json.dumps(row["s"])


# The SELECTs the mapping was written against (one host row -> one model row, as a dict).
REFERENCE_SQL = {
    "locations": "SELECT * FROM host_locations ORDER BY location_id",
    "master": "SELECT * FROM host_articles ORDER BY article_id",
    "stocks": "SELECT s.article_id, s.location, s.qty, "
    "CASE WHEN s.location = '' THEN i.reserved END AS allocated, s.file, s.line "
    "FROM host_stock s LEFT JOIN instock_inventory i ON i.article_id = s.article_id "
    "ORDER BY s.article_id, s.location",
    "suppliers": "SELECT * FROM host_suppliers ORDER BY supplier_id",
    "sales": "SELECT * FROM host_sales WHERE sale_date >= date('now', '-730 days') "
    "ORDER BY transaction_id, line_id",
    "po": "SELECT l.*, h.supplier_id, h.location, h.order_date, h.status "
    "FROM host_purchase_order_lines l JOIN host_purchase_orders h USING (po_number) "
    "ORDER BY l.po_number, l.line_no",
    "pohist": "SELECT * FROM host_po_history ORDER BY po_number, line_no",
}


def _host_rows(store: Store, seed: int) -> None:
    """Host rows with what the mapping has to get right: non-ASCII and control characters,
    empty and missing values, money as text (junk too), REAL and integer quantities."""
    import random

    rng = random.Random(seed)
    meta = {"file": "f", "line": 1, "load_id": 1, "loaded_at": "t"}

    def text() -> str:
        return rng.choice(["Plain", "Ünïcødé €", "tab\there", 'q"uote\\', "nl\nx", "😀", ""])

    def money() -> str | None:
        return rng.choice([None, "", "19.99", "12.10", "-9.90", "0.000015", "junk", "1E+3"])

    def qty() -> float | int:
        return rng.choice([0, 1, 7, 2.5, 0.125, 1 / 3, 100000])

    db = store.db
    db["host_locations"].insert_all(  # type: ignore[union-attr]
        {"location_id": f"L{i}", "name": text() or "n", "type": rng.choice([None, "wh"]),
         "location_group": rng.choice([None, "g", "ü"]), "active": rng.choice([0, 1]), **meta}
        for i in range(20)
    )  # fmt: skip
    attributes = ["{}", "", '{"ean": "123", "weight": "1.25"}', '{"upc": 42, "weight": 2.5}',
                  '{"gtin": "", "barcode": "B€"}', "not json", "[1]"]  # fmt: skip
    db["host_articles"].insert_all(  # type: ignore[union-attr]
        {"article_id": f"A{i:03d}", "name": text() or "n", "unit": rng.choice(["EA", "KG"]),
         "description": rng.choice([None, "", text()]), "attributes": rng.choice(attributes),
         "dim_x": rng.choice([None, "10", "0.5", "x"]), "dim_y": rng.choice([None, "20", "3"]),
         "dim_z": rng.choice([None, "30", "1.25"]),
         "dim_uom": rng.choice([None, "mm", "CM", " m ", "in", ""]), **meta}
        for i in range(120)
    )  # fmt: skip
    db["host_stock"].insert_all(  # type: ignore[union-attr]
        ({"article_id": f"A{i:03d}", "location": loc, "qty": qty(), **meta}
         for i in range(120) for loc in rng.sample(["", "L1", "ü"], 2)),
    )  # fmt: skip
    db["instock_inventory"].insert_all(  # type: ignore[union-attr]
        {"article_id": f"A{i:03d}", "free": 1, "reserved": rng.choice([0, 3, 2.5]),
         "registered": 0, "scan": 1, "updated_at": "t"}
        for i in range(0, 120, 3)
    )  # fmt: skip
    db["host_suppliers"].insert_all(  # type: ignore[union-attr]
        {"supplier_id": f"S{i}", "name": text() or "n", "type": rng.choice([None, "x"]),
         "lead_time_days": rng.choice([None, 0, 14]), **meta}
        for i in range(10)
    )  # fmt: skip
    db["host_sales"].insert_all(  # type: ignore[union-attr]
        {"transaction_id": f"T{i // 2}", "line_id": ["", "1"][i % 2],
         "sale_date": rng.choice(["2000-01-01", date.today().isoformat()]),
         "order_date": rng.choice([None, "", "2025-12-31"]), "article_id": f"A{i:03d}",
         "location": rng.choice(["", "L1", "ü"]), "customer_id": rng.choice([None, "C€"]),
         "qty": rng.choice([1, -1, 2.5, 0.001]), "sales_value": money(),
         "cost_of_sales": money(), **meta}
        for i in range(100)
    )  # fmt: skip
    db["host_purchase_orders"].insert_all(  # type: ignore[union-attr]
        {"po_number": f"P{i}", "supplier_id": "S1", "location": rng.choice(["", "L1"]),
         "order_date": "2026-01-01", "status": rng.choice([None, "open"]), **meta}
        for i in range(10)
    )  # fmt: skip
    db["host_purchase_order_lines"].insert_all(  # type: ignore[union-attr]
        {"po_number": f"P{i % 10}", "line_no": str(i), "article_id": "A001",
         "qty_ordered": rng.choice([10, 2.5, 1]), "qty_received": rng.choice([0, 10, 2.5]),
         "unit_cost": money(), "expected_date": rng.choice([None, "2026-02-01"]), **meta}
        for i in range(40)
    )  # fmt: skip
    db["host_po_history"].insert_all(  # type: ignore[union-attr]
        {"po_number": f"H{i}", "line_no": "1", "article_id": "A002", "supplier_id": "S1",
         "location": rng.choice(["", "L1"]), "order_date": "2026-01-01",
         "qty_ordered": rng.choice([4, 2.5]), "qty_received": rng.choice([4, 0, 1.5]),
         "receipt_date": rng.choice([None, "2026-01-05"]), "unit_cost": money(), **meta}
        for i in range(20)
    )  # fmt: skip


@pytest.mark.parametrize(("seed", "rule"), [(1, "reject"), (2, "round"), (3, "reject")])
def test_rendered_lines_are_the_mapping_as_json(tmp_path: Path, seed: int, rule: str) -> None:
    """What is sent (rendered from tuples, text work in SQL) is `row_json(map_*(row))`, and
    the rows left out (a fraction or junk in an integer field) are the same, named by host
    file and line."""
    options = Options(default_location="SITE", integer_fractions=rule)
    with Store.open(tmp_path / "s.db") as store:
        _host_rows(store, seed)
        for model in options.models:
            expected, left_out = [], []
            for row in store.query(REFERENCE_SQL[model]):
                try:
                    mapped = MAPPERS[model](row, options)
                except RowRejected as exc:
                    left_out.append((f"{row['file']}:{row['line']}", exc.field, exc.reason))
                    continue
                if mapped is not None:
                    expected.append(row_json(mapped))
            assert expected, model
            assert list(model_lines(store, model, options)) == expected, model
            assert all(line.isascii() and "\n" not in line for line in expected)
            rejects: list[Rejected] = []
            assert list(
                map(ascii_escaped, rendered_lines(store, model, options, None, rejects))
            ) == (expected)
            assert [(f"{r.file}:{r.line}", r.field, r.reason) for r in rejects] == left_out
            if model in ("stocks", "po") and rule == "reject":
                assert left_out, model  # the data holds fractions: some rows are left out


def test_without_nulls_drops_null_fields_only_and_keeps_numbers_exact() -> None:
    """`null_fields = "omit"`: a null field is left out; the text "null", exact decimals and
    the sorted keys stay as they were."""
    line = '{"a":12345678901234567890.123456789,"b":null,"c":"null","d":0.1,"e":7}'
    assert without_nulls(line) == '{"a":12345678901234567890.123456789,"c":"null","d":0.1,"e":7}'
    assert without_nulls('{"a":1}') == '{"a":1}'
