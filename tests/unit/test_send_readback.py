"""The read-back decision: applied / not applied / diverged, per intent kind."""

from __future__ import annotations

from typing import Any

import pytest

from syncd import metrics
from syncd.send.base import ReadBacks
from syncd.send.readback import KINDS, compare

ORDER: dict[str, Any] = {
    "order_id": "o-1",
    "placed_at": "2026-12-04T08:00:00Z",
    "lines": [{"line_id": "o-1-1", "article_id": "A", "qty": 2}],
}


def _order(**changes: Any) -> dict[str, Any]:
    return {**ORDER, "site_id": "1.1.0-1", "kind": "customer", "attributes": {}, **changes}


def test_create_not_found_is_sent() -> None:
    assert compare("orders.create", ORDER, None).verdict == "not_applied"


def test_create_found_as_intended_is_done_whatever_the_remote_adds() -> None:
    # quantities compare as numbers; fields the intent does not set are Instock's own
    found = _order(lines=[{"line_id": "o-1-1", "article_id": "A", "qty": "2.0"}])
    assert compare("orders.create", ORDER, found).verdict == "applied"


def test_create_found_with_attributes_of_instock_s_own_is_done() -> None:
    """Attributes the remote adds to a created order do not make it someone else's; an
    attribute the intent set, found with another value or missing, does."""
    intended = {**ORDER, "attributes": {"wave": "1"}}
    extra = _order(attributes={"wave": "1", "dock": "3"})
    assert compare("orders.create", intended, extra).verdict == "applied"
    assert compare("orders.create", intended, _order(attributes={"wave": "2"})).verdict == (
        "diverged"
    )
    assert compare("orders.create", intended, _order(attributes={})).verdict == "diverged"
    # an update sets the whole record: another attribute found is not what it meant
    assert compare("orders.update", intended, extra).verdict == "not_applied"


def test_create_found_with_its_placed_at_written_otherwise_is_done() -> None:
    """`placed_at` compares as the instant it names, whatever RFC 3339 text Instock keeps."""
    for text in ("2026-12-04T08:00:00.000Z", "2026-12-04T09:00:00+01:00"):
        assert compare("orders.create", ORDER, _order(placed_at=text)).verdict == "applied"
    later = _order(placed_at="2026-12-04T08:00:01Z")
    assert compare("orders.create", ORDER, later).verdict == "diverged"


def test_create_found_otherwise_diverges_with_the_field_and_both_values() -> None:
    lines = [{"line_id": "o-1-1", "article_id": "A", "qty": 3}]
    decision = compare("orders.create", ORDER, _order(lines=lines))
    assert decision.verdict == "diverged"
    assert [d.field for d in decision.differences] == ["lines"]
    payload = decision.reject_payload(ORDER, _order(lines=lines))
    assert payload["intended"] == ORDER
    assert payload["found"]["lines"] == lines
    assert payload["differences"][0]["found"] == lines


def test_update_found_as_before_is_resent_and_changed_by_others_diverges() -> None:
    before = _order()
    intended = {**ORDER, "lines": [{"line_id": "o-1-1", "article_id": "A", "qty": 5}]}
    assert compare("orders.update", intended, _order(lines=intended["lines"])).verdict == (
        "applied"
    )
    assert compare("orders.update", intended, before, before=before).verdict == "not_applied"
    other = _order(lines=[{"line_id": "o-1-1", "article_id": "A", "qty": 9}])
    assert compare("orders.update", intended, other, before=before).verdict == "diverged"
    # without the version it replaces a differing order cannot be told apart: resend
    assert compare("orders.update", intended, other).verdict == "not_applied"
    assert compare("orders.update", intended, None).verdict == "diverged"


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        ("canceled", "applied"),
        ("registered", "not_applied"),
        ("reserved", "diverged"),
        ("done", "diverged"),
        (None, "diverged"),
    ],
)
def test_cancel_by_order_status(status: str | None, verdict: str) -> None:
    found = None if status is None else {"order_id": "o-1", "order_status": status}
    assert compare("orders.cancel", {"order_id": "o-1"}, found).verdict == verdict


def test_articles_compare_dimensions_as_numbers() -> None:
    article = {"article_id": "A", "name": "Bolt", "dimensions": {"length": "7.30", "uom": "cm"}}
    same = {**article, "dimensions": {"length": 7.3, "uom": "cm"}, "is_serial_numbered": False}
    assert compare("articles.upload", article, None).verdict == "not_applied"
    assert compare("articles.upload", article, same).verdict == "applied"
    renamed = {**same, "name": "Nut"}
    decision = compare("articles.upload", article, renamed)
    assert decision.verdict == "diverged"
    assert decision.differences[0].field == "name"
    assert decision.differences[0].found == "Nut"
    assert compare("articles.update", article, same).verdict == "applied"
    assert compare("articles.update", article, renamed).verdict == "not_applied"
    assert compare("articles.update", article, renamed, before={"name": "Washer"}).verdict == (
        "diverged"
    )


@pytest.mark.parametrize("kind", ["fulfill", "close"])
@pytest.mark.parametrize(
    ("found", "verdict"),
    [
        ({"listing": "closed"}, "applied"),
        ({"listing": "absent", "submitted_today": True}, "applied"),
        ({"listing": "absent", "submitted_today": False}, "not_applied"),
        ({"listing": "absent", "submitted_today": None}, "not_applied"),
        ({"listing": "open", "submitted_today": True}, "not_applied"),
    ],
)
def test_dsorder_by_todays_listing(kind: str, found: dict[str, Any], verdict: str) -> None:
    assert compare(kind, {"order_id": "o-1"}, found).verdict == verdict


def test_every_kind_is_decided_and_an_unknown_one_is_refused() -> None:
    for kind in KINDS:
        assert compare(kind, ORDER, None).verdict in ("applied", "not_applied", "diverged")
    with pytest.raises(ValueError, match=r"orders\.delete"):
        compare("orders.delete", ORDER, None)


def test_read_backs_count_per_verdict_for_the_run_and_the_metric() -> None:
    """A drain's verdicts become run counts (resolved by read, resent, diverged), taken
    once; every one also counts in syncd_readback_total."""

    def metric(outcome: str) -> float:
        labels = {"destination": "unit-test", "outcome": outcome}
        return metrics.REGISTRY.get_sample_value("syncd_readback_total", labels) or 0.0

    tally = ReadBacks("unit-test")
    tally.count("applied")
    tally.count("applied", 2)
    tally.count("not_applied")
    tally.count("diverged")
    tally.count("diverged", 0)
    assert tally.take() == {"readback_applied": 3, "readback_resent": 1, "readback_diverged": 1}
    assert tally.take() == {}
    assert (metric("applied"), metric("not_applied"), metric("diverged")) == (3, 1, 1)
