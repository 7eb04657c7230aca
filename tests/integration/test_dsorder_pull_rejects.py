"""dsorder.pull against the DSOrder simulator: a line reject's field is the one the line
check found at fault, whatever words its reason or the article id contain."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.sandbox.base import ManualClock
from syncd.sandbox.dsorder import DSOrderSim
from syncd.sandbox.instock import InstockSim
from tests.configs import connector_for, sim_settings
from tests.integration.jobkit import csv_text, drop, query, run


@pytest.fixture
def sims() -> Iterator[tuple[InstockSim, DSOrderSim]]:
    with (
        InstockSim(seed=3, articles=10) as ins,
        DSOrderSim(seed=5, clock=ManualClock(), tz="UTC") as ds,
    ):
        yield ins, ds


def test_line_rejects_carry_the_field_the_check_found(
    sims: tuple[InstockSim, DSOrderSim], tmp_path: Path
) -> None:
    """An unknown article whose id reads "quantity-7" is refused on `article_id`, a
    fractional quantity on `quantity`; the order is held (policy hold), nothing is sent."""
    ins, ds = sims
    settings = sim_settings(
        tmp_path,
        {**connector_for(ins), **connector_for(ds)},
        daemon={"site_timezone": "UTC"},
    )
    drop(settings, "articles", csv_text("article_id,name,whole_units", ["A1,One,true"]))
    order_id = ds.submit_order(lines=[("A1", 1.5), ("quantity-7", 2)])
    result = run(settings, "dsorder.pull")
    assert (result.counts["held"], result.counts["rejected"]) == (1, 2)
    rejects = query(
        settings,
        "SELECT reference, field FROM rejects WHERE source = 'dsorder:lines' ORDER BY reference",
    )
    assert rejects == [
        {"reference": f"order {order_id} line 1000", "field": "quantity"},
        {"reference": f"order {order_id} line 2000", "field": "article_id"},
    ]
    assert query(settings, "SELECT state FROM dsorder_orders") == [{"state": "held"}]
    assert query(settings, "SELECT * FROM outbox") == []
