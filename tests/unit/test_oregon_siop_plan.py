"""Pure parts of the `oregon.siop` job: periods, rounding, item mapping, the plan."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from syncd.connectors.oregon_siop import validate_item
from syncd.jobs.oregon_siop import (
    Figures,
    Options,
    Period,
    build_item,
    from_micro,
    periods,
    plan_item,
    reference,
    to_units,
)
from syncd.jsontext import content_hash


@pytest.mark.parametrize(
    ("value", "units"),
    [
        (None, 0),
        (0, 0),
        (3, 3),
        ("2.4", 2),
        ("2.5", 3),
        ("2.500001", 3),
        ("-2.5", -3),
        ("-2.4", -2),
        ("0.499999", 0),
        (Decimal("1.5"), 2),
        ("3.000000", 3),
    ],
)
def test_to_units_rounds_half_away_from_zero(value: Any, units: int) -> None:
    assert to_units(value) == units


@pytest.mark.parametrize(
    ("micro", "exact"),
    [(None, Decimal(0)), (0, Decimal(0)), (3_100_000, Decimal("3.1")), (-1, Decimal("-0.000001"))],
)
def test_from_micro_is_exact(micro: int | None, exact: Decimal) -> None:
    assert from_micro(micro) == exact


@pytest.mark.parametrize(
    ("today", "granularity", "back", "expected"),
    [
        (date(2026, 3, 15), "month", 0, [Period(2026, 3)]),
        (date(2026, 3, 15), "month", 1, [Period(2026, 3), Period(2026, 2)]),
        (date(2026, 1, 1), "month", 2, [Period(2026, 1), Period(2025, 12), Period(2025, 11)]),
        (date(2026, 3, 1), "day", 1, [Period(2026, 3, 1), Period(2026, 2, 28)]),
        (date(2024, 3, 1), "day", 1, [Period(2024, 3, 1), Period(2024, 2, 29)]),
    ],
)
def test_periods_current_first(
    today: date, granularity: Any, back: int, expected: list[Period]
) -> None:
    assert periods(today, granularity, back) == expected


@pytest.mark.parametrize(
    ("period", "label", "start", "end", "key_day"),
    [
        (Period(2026, 2), "2026-02", date(2026, 2, 1), date(2026, 3, 1), 1),
        (Period(2025, 12), "2025-12", date(2025, 12, 1), date(2026, 1, 1), 1),
        (Period(2026, 2, 28), "2026-02-28", date(2026, 2, 28), date(2026, 3, 1), 28),
    ],
)
def test_period_bounds(period: Period, label: str, start: date, end: date, key_day: int) -> None:
    assert (period.label, period.start, period.end, period.key_day) == (label, start, end, key_day)


BASE: dict[str, Any] = {
    "sold_to": "13035",
    "ship_to": "12256",
    "material_id": "A1",
    "oregon_material_id": None,
    "period": Period(2026, 3),
}


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        # the current month: sales, stock and on-order, no day, EA
        (
            {"figures": Figures(Decimal("5"), Decimal("12.5"), Decimal("60")), "current": True},
            {"unitsSold": 5, "onHand": 13, "unitsOnOrder": 60, "unitOfMeasure": "EA"},
        ),
        # a Oregon Tool id from the catalog, a day period, no unit of measure
        (
            {
                "figures": Figures(Decimal("-1")),
                "current": True,
                "oregon_material_id": "OTX-1",
                "period": Period(2026, 3, 7),
                "unit_of_measure": "",
            },
            {
                "oregonToolMaterialId": "OTX-1",
                "day": 7,
                "unitsSold": -1,
                "onHand": 0,
                "unitsOnOrder": 0,
            },
        ),
        # a closed period never accepted: stock left null
        (
            {"figures": Figures(Decimal("2"), Decimal("99"), Decimal("9")), "current": False},
            {"unitsSold": 2, "unitOfMeasure": "EA"},
        ),
        # a closed period keeps the stock it was last accepted with, sales recomputed
        (
            {
                "figures": Figures(Decimal("4"), Decimal("99")),
                "current": False,
                "frozen": {"unitsSold": 3, "onHand": 7, "unitsOnOrder": 1, "materialId": "x"},
            },
            {"unitsSold": 4, "onHand": 7, "unitsOnOrder": 1, "unitOfMeasure": "EA"},
        ),
    ],
)
def test_build_item(overrides: dict[str, Any], expected: dict[str, Any]) -> None:
    item = build_item(**{**BASE, **overrides})
    period = overrides.get("period", BASE["period"])
    head = {"soldToId": "13035", "shipToId": "12256", "materialId": "A1"}
    assert item == {**head, "year": period.year, "month": period.month, **expected}
    assert validate_item(item) == []


def test_item_hash_ignores_key_order_and_sees_values() -> None:
    a = {"materialId": "A1", "unitsSold": 1}
    assert content_hash(a) == content_hash({"unitsSold": 1, "materialId": "A1"})
    assert content_hash(a) != content_hash({**a, "unitsSold": 2})


GOOD = {
    "soldToId": "1",
    "shipToId": "2",
    "materialId": "A1",
    "year": 2026,
    "month": 3,
    "unitsSold": 1,
}


@pytest.mark.parametrize(
    ("item", "accepted", "failed", "kind", "field"),
    [
        (GOOD, None, None, "send", None),
        (GOOD, "h", None, "unchanged", None),
        (GOOD, "old", None, "send", None),
        (GOOD, "old", "h", "waiting", None),
        (GOOD, None, "old", "send", None),
        ({**GOOD, "materialId": "M" * 19}, None, None, "refuse", "materialId"),
        ({**GOOD, "oregonToolMaterialId": "O" * 11}, None, None, "refuse", "oregonToolMaterialId"),
        ({**GOOD, "unitsSold": 2**31}, None, None, "refuse", "unitsSold"),
        ({**GOOD, "materialId": "M" * 19}, None, "h", "waiting", None),
    ],
)
def test_plan_item(
    item: dict[str, Any], accepted: str | None, failed: str | None, kind: str, field: str | None
) -> None:
    action = plan_item(item, "h", accepted, failed)
    assert action.kind == kind
    assert [p.field for p in action.problems] == ([field] if field else [])


def test_reference_names_material_period_and_host_rows() -> None:
    text = reference(
        "A1",
        Period(2026, 3),
        {
            "host_articles": "articles-1.csv:2",
            "host_sales": {"first": "sales-1.csv:3", "rows": 3},
            "host_stock": {"first": "stock-1.csv:2", "rows": 1},
            "host_purchase_orders": ["PO-1", "PO-2"],
        },
    )
    assert text == (
        "material A1 period 2026-03 (host_articles articles-1.csv:2; host_sales sales-1.csv:3 "
        "+2 rows; host_stock stock-1.csv:2; host_purchase_orders PO-1,PO-2)"
    )


def test_options_defaults_and_limits() -> None:
    options = Options()
    assert (options.granularity, options.periods_back, options.unit_of_measure) == (
        "month",
        1,
        "EA",
    )
    with pytest.raises(ValidationError, match="sold_to_id"):
        Options(sold_to_id="X" * 11)
    with pytest.raises(ValidationError, match="granularity"):
        Options(granularity="week")  # type: ignore[arg-type]
