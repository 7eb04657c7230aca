"""The codec's bytes, pinned: every spelling below is on the wire, in a host file or behind a
stored hash, so a change here would re-send data or orphan state already written."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from syncd.jobs.instock_moves import MOVE_FIELDS, move_key
from syncd.jsontext import (
    RawJson,
    canonical,
    canonical_spaced,
    canonical_strict,
    canonical_unicode,
    compact,
    content_hash,
    decimal_json,
    decimal_plain,
    json_number,
    json_safe,
    json_safe_spelt,
    json_text,
    text_hash,
)

# text -> (decimal_json, decimal_plain, json_number)
DECIMALS = [
    ("2.50", "2.5", "2.5", 2.5),
    ("-9.90", "-9.9", "-9.9", -9.9),
    ("5.000", "5", "5", 5),
    ("0.00001", "1e-05", "0.00001", 1e-05),
    ("-0.000015", "-1.5e-05", "-0.000015", -1.5e-05),
    ("1E+3", "1000", "1000", 1000),
    ("1.5E-7", "1.5e-07", "0.00000015", 1.5e-07),
    (
        "123456789012345678901234567890",
        "123456789012345678901234567890",
        "123456789012345678901234567890",
        123456789012345678901234567890,
    ),
    (
        "0.1234567890123456789",
        "0.1234567890123456789",
        "0.1234567890123456789",
        0.12345678901234568,
    ),
    ("-0", "0", "-0", 0),
    ("1E-30", "1e-30", "0.000000000000000000000000000001", 1e-30),
]

TRICKY = {
    "é": "naïve €😀",
    "b": [-3, 10**30, 1.5e-7],
    "a": {"z": None, "y": True},
}


@pytest.mark.parametrize(("text", "as_json", "plain", "number"), DECIMALS)
def test_the_two_decimal_spellings_and_the_json_number(
    text: str, as_json: str, plain: str, number: float
) -> None:
    """Netstock's exact float-form and the host feeds' plain form differ on purpose."""
    assert decimal_json(Decimal(text)) == as_json
    assert decimal_plain(Decimal(text)) == plain
    assert json_number(Decimal(text)) == number
    assert type(json_number(Decimal(text))) is type(number)


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity", "sNaN"])
def test_non_finite_decimals_are_refused_on_the_wire(bad: str) -> None:
    """A NaN or infinite Decimal never reaches Netstock as text it could misread."""
    with pytest.raises(ValueError, match="not a finite number"):
        decimal_json(Decimal(bad))
    with pytest.raises(ValueError, match="not a finite number"):
        json_text({"q": Decimal(bad)})


def test_json_text_bytes() -> None:
    """Sorted, compact, ASCII-escaped, exact decimals, ISO dates; NaN floats refused."""
    value = {**TRICKY, "b": [Decimal("2.50"), *TRICKY["b"]], "d": date(2025, 1, 2)}
    assert json_text(value) == (
        '{"a":{"y":true,"z":null},"b":[2.5,-3,1000000000000000000000000000000,1.5e-07],'
        '"d":"2025-01-02","\\u00e9":"na\\u00efve \\u20ac\\ud83d\\ude00"}'
    )
    with pytest.raises(ValueError, match="not a finite number"):
        json_text([float("nan")])
    with pytest.raises(TypeError, match="set is not JSON serialisable"):
        json_text({1})


def test_canonical_bytes_and_its_strict_twin() -> None:
    """`canonical` stringifies unknown values (and keeps NaN as JSON's NaN); the strict
    twin gives the same text for JSON values but refuses the rest."""
    value = {**TRICKY, "b": [*TRICKY["b"], float("nan")], "d": date(2025, 1, 2)}
    assert canonical(value) == (
        '{"a":{"y":true,"z":null},"b":[-3,1000000000000000000000000000000,1.5e-07,NaN],'
        '"d":"2025-01-02","\\u00e9":"na\\u00efve \\u20ac\\ud83d\\ude00"}'
    )
    assert canonical(RawJson('{"b": 1, "a": 2}')) == '{"b": 1, "a": 2}'  # passed as is
    assert canonical_strict(TRICKY) == canonical(TRICKY)
    with pytest.raises(TypeError):
        canonical_strict({"d": date(2025, 1, 2)})


def test_unicode_spaced_and_compact_bytes() -> None:
    """The host-file spelling keeps non-ASCII; the spaced and compact ones are fixed too."""
    assert canonical_unicode({"é": "naïve €😀", "a": "1"}) == '{"a":"1","é":"naïve €😀"}'
    assert canonical_spaced(TRICKY) == (
        '{"a": {"y": true, "z": null}, "b": [-3, 1000000000000000000000000000000, 1.5e-07], '
        '"\\u00e9": "na\\u00efve \\u20ac\\ud83d\\ude00"}'
    )
    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert compact({"z": when, "a": [Decimal("1.50"), None]}) == (
        '{"z":"2025-01-02 03:04:05+00:00","a":["1.50",null]}'
    )


def test_json_safe_spellings_of_non_finite_numbers() -> None:
    """Instock raw records keep Python's repr; DSOrder's keep the answer's JSON spelling."""
    assert json_safe({"a": [float("nan"), float("inf"), float("-inf"), 1.5]}) == {
        "a": ["nan", "inf", "-inf", 1.5]
    }
    spelt = json_safe_spelt(
        {"a": [Decimal("2.50"), Decimal("NaN"), float("inf"), float("-inf"), Decimal("-Inf")]}
    )
    assert spelt == {"a": [2.5, "NaN", "Infinity", "-Infinity", "-Infinity"]}
    assert json.loads(json.dumps(spelt)) == spelt


def test_hashes_of_stored_state_are_unchanged() -> None:
    """The hex digests existing state DBs hold: payload hashes, move keys, intent keys."""
    payload = {"materialId": "Ä1", "unitsSold": -3, "big": 10**30, "f": 1.5e-7}
    assert content_hash(payload) == "321d8560a9b5aa020e1df0a83809f541"
    assert content_hash(TRICKY) == "7263af33b4ab5277f9d0fa8fb856edb5"
    assert text_hash("run;A1:abc") == "199cb640fca611ab13a98e3dd8a04927"
    rows = [{"line_number": 1, "article_id": "Ä", "quantity": "2.50", "finished": True}]
    assert text_hash(canonical_spaced(rows), 24) == "66a73d84a66d48482d74f614"
    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    move = ["Ä1", -3, when, None, "O-1", "C1", "C2", 7, Decimal("1.50")]
    assert (
        text_hash(compact(move), None, algorithm="sha1")
        == "448d655229de85779ccb78961a9acfa511031133"
    )
    assert move_key(dict(zip(MOVE_FIELDS, move, strict=True))) == (
        "448d655229de85779ccb78961a9acfa511031133"
    )
