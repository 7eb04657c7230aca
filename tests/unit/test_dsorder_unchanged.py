"""`parse_submitted`: records listed exactly as stored are counted, not validated; the
others are validated as before, their rejects naming their place in DSOrder's answer."""

from __future__ import annotations

from typing import Any

from syncd.connectors.dsorder import parse_orders, parse_submitted, raw_hash

ORDER: dict[str, Any] = {
    "order_id": "1",
    "supplier_id": "S",
    "store_id": "ST",
    "order_date": 1_700_000_000_000,
    "delivery_date": 1_700_000_000_000,
    "details": [{"line_number": 1000, "article_id": "A", "quantity": 2}],
}


def test_the_same_record_in_another_key_order_has_the_same_hash() -> None:
    assert raw_hash(dict(reversed(ORDER.items()))) == raw_hash(ORDER)
    assert raw_hash({**ORDER, "store_id": "ST2"}) != raw_hash(ORDER)


def test_a_known_unchanged_record_is_counted_and_the_rest_validated_in_place() -> None:
    other = {**ORDER, "order_id": "2"}
    changed = {**ORDER, "order_id": "3", "store_id": ""}  # known, changed, now invalid
    known = {"1": raw_hash(ORDER), "3": raw_hash({**changed, "store_id": "ST"})}
    orders, rejects, unchanged, hashes = parse_submitted([ORDER, other, changed, 7], known)
    assert unchanged == ["1"]
    assert [o.order_id for o in orders] == ["2"]
    assert [(r.index, r.key, r.field) for r in rejects] == [
        (2, "3", "store_id"),
        (3, "#3", "(record)"),
    ]
    assert hashes == {"1": known["1"], "2": raw_hash(other), "3": raw_hash(changed)}


def test_without_stored_hashes_every_record_is_validated_and_hashed() -> None:
    orders, rejects, unchanged, hashes = parse_submitted([ORDER], {})
    assert ([o.order_id for o in orders], rejects, unchanged) == (["1"], [], [])
    assert hashes == {"1": raw_hash(ORDER)}
    assert parse_submitted([ORDER], None)[:3] == (*parse_orders([ORDER]), [])
