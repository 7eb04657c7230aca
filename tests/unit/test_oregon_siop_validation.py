"""Pure logic of the Oregon Tool SIOP connector: local item validation and lenient error parsing."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.connectors.oregon_siop import (
    FIELD_NAMES,
    DataItem,
    InvalidItemError,
    error_location,
    item_key,
    parse_item,
    parse_problem,
    split_errors,
    utf16_length,
    validate_item,
)

# The document's request example, verbatim values.
DOC_ITEM: dict[str, Any] = {
    "soldToId": "012345",
    "shipToId": "987654",
    "materialId": "ADF-42356",
    "oregonToolMaterialId": "OTX-42356",
    "year": 2023,
    "month": 5,
    "day": 7,
    "unitsSold": 22,
    "onHand": 45,
    "unitsOnHand": 38,
    "unitsOnShelf": 32,
    "unitsOnOrder": 40,
    "unitsInTransit": 20,
    "unitOfMeasure": "EA",
    "targetInventory": 50,
    "minimumStock": 10,
    "maximumStock": 100,
    "safetyStock": 6,
}

# The document's curl example (no oregonToolMaterialId).
CURL_ITEM: dict[str, Any] = {
    "soldToId": "13035",
    "shipToId": "12256",
    "materialId": "X32456",
    "year": 2023,
    "month": 1,
    "day": 1,
    "unitsSold": 0,
    "onHand": 0,
    "unitsOnHand": 3,
    "unitsOnShelf": 2,
    "unitsOnOrder": 1,
    "unitsInTransit": 0,
    "unitOfMeasure": "EA",
    "targetInventory": 3,
    "minimumStock": 2,
    "maximumStock": 5,
    "safetyStock": 2,
}

# The document's example error body, copied verbatim: it is not valid JSON.
DOC_ERROR_BODY = """{
"type": "https://tools.ietf.org/html/rfc7231#section-6.5.1",
"title": "One or more validation errors occurred.",
"status": 400,
"tracedId": "00-b8992e4f52c659ef02b4f901ce1336a6-deaa6ed8bd9afea2-00",
"errors" {
"$.dataItems[1].onHand": [
"The onHand field is required."
],
"$.dataItems[5].unitsOnShelf": [
"The JSON value could not be converted to System.Nullable`1[System.Int32]"
],
}
"message": "An error occurred!"
}"""

REQUIRED = ("soldToId", "shipToId", "materialId", "year", "month", "unitsSold")
OPTIONAL = tuple(name for name in FIELD_NAMES if name not in REQUIRED)
STRING_LIMITS = {
    "soldToId": 10,
    "shipToId": 10,
    "materialId": 18,
    "oregonToolMaterialId": 10,
    "unitOfMeasure": 3,
}
INT32_FIELDS = (
    "unitsSold",
    "onHand",
    "unitsOnHand",
    "unitsOnShelf",
    "unitsOnOrder",
    "unitsInTransit",
    "targetInventory",
    "minimumStock",
    "maximumStock",
    "safetyStock",
)
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def fields_of(item: dict[str, Any]) -> list[str]:
    return [p.field for p in validate_item(item)]


# --- the documented examples and the model ---------------------------------------------------


@pytest.mark.parametrize("item", [DOC_ITEM, CURL_ITEM], ids=["request-example", "curl-example"])
def test_document_examples_are_valid(item: dict[str, Any]) -> None:
    """Both of the document's example items pass local validation."""
    assert validate_item(item) == []


def test_every_documented_field_is_modelled_in_order() -> None:
    """DataItem carries exactly the document's eighteen fields, camelCase, in its order."""
    assert tuple(DOC_ITEM) == FIELD_NAMES


def test_wire_form_is_camel_case_without_nulls() -> None:
    """A DataItem serialises with camelCase keys and leaves unset nullable fields out."""
    item = DataItem(
        sold_to_id="1", ship_to_id="2", material_id="M", year=2024, month=2, units_sold=5
    )
    assert item.to_json() == {
        "soldToId": "1",
        "shipToId": "2",
        "materialId": "M",
        "year": 2024,
        "month": 2,
        "unitsSold": 5,
    }
    assert parse_item(DOC_ITEM).to_json() == DOC_ITEM


def test_snake_case_keys_are_accepted() -> None:
    """A row may use the Python attribute names instead of the wire names."""
    row = {
        "sold_to_id": "1",
        "ship_to_id": "2",
        "material_id": "M",
        "year": 2024,
        "month": 2,
        "units_sold": 5,
    }
    assert validate_item(row) == []


def test_natural_key_defaults_day_to_first() -> None:
    """The key a re-post replaces uses day 1 when no day is given (the document's default)."""
    without_day = {k: v for k, v in CURL_ITEM.items() if k != "day"}
    assert item_key(without_day) == ("13035", "12256", "X32456", 2023, 1, 1)
    assert parse_item(without_day).key == item_key(CURL_ITEM)
    assert item_key(DOC_ITEM) == ("012345", "987654", "ADF-42356", 2023, 5, 7)


def test_a_tampered_model_is_rechecked() -> None:
    """A DataItem changed with model_copy(update=...) skips pydantic, but not validate_item."""
    tampered = parse_item(DOC_ITEM).model_copy(update={"month": 13})
    assert [p.field for p in validate_item(tampered)] == ["month"]
    with pytest.raises(InvalidItemError):
        parse_item(tampered)


@pytest.mark.parametrize("value", [None, [], "item", 42])
def test_a_non_object_is_one_item_level_problem(value: Any) -> None:
    """Something that is not a mapping is refused with an item-level problem, not an exception."""
    problems = validate_item(value)
    assert len(problems) == 1
    assert problems[0].field == ""


def test_unknown_keys_are_refused() -> None:
    """A misspelt field is refused locally: the server would silently drop it."""
    assert fields_of({**DOC_ITEM, "onhand": 5}) == ["onhand"]


# --- required fields -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", REQUIRED)
def test_required_field_missing(name: str) -> None:
    """Each starred field of the document is required."""
    item = {k: v for k, v in DOC_ITEM.items() if k != name}
    assert fields_of(item) == [name]


@pytest.mark.parametrize("name", REQUIRED)
def test_required_field_null(name: str) -> None:
    """A null in a required field is refused."""
    assert fields_of({**DOC_ITEM, name: None}) == [name]


@pytest.mark.parametrize("name", ["soldToId", "shipToId", "materialId"])
@pytest.mark.parametrize("blank", ["", "   "])
def test_required_string_blank(name: str, blank: str) -> None:
    """A blank required string is no value, as .NET's [Required] treats it."""
    assert fields_of({**DOC_ITEM, name: blank}) == [name]


@pytest.mark.parametrize("name", OPTIONAL)
def test_optional_field_may_be_null_or_missing(name: str) -> None:
    """Every nullable field may be null or left out."""
    assert validate_item({**DOC_ITEM, name: None}) == []
    assert validate_item({k: v for k, v in DOC_ITEM.items() if k != name}) == []


# --- string lengths ----------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "limit"), STRING_LIMITS.items())
def test_string_max_length_boundary(name: str, limit: int) -> None:
    """Each string field takes exactly its documented maximum and refuses one more."""
    assert validate_item({**DOC_ITEM, name: "A" * limit}) == []
    problems = validate_item({**DOC_ITEM, name: "A" * (limit + 1)})
    assert [(p.field, p.code) for p in problems] == [(name, "string_too_long")]
    assert str(limit) in problems[0].message


def test_lengths_count_utf16_code_units() -> None:
    """A character beyond U+FFFF counts two, as .NET's string.Length does."""
    assert utf16_length("\U0001f600") == 2
    assert validate_item({**DOC_ITEM, "unitOfMeasure": "E\U0001f600"}) == []
    assert validate_item({**DOC_ITEM, "soldToId": "\U0001f600" * 5}) == []
    assert fields_of({**DOC_ITEM, "soldToId": "\U0001f600" * 6}) == ["soldToId"]
    assert fields_of({**DOC_ITEM, "unitOfMeasure": "EA\U0001f600"}) == ["unitOfMeasure"]


@pytest.mark.parametrize("name", STRING_LIMITS)
@pytest.mark.parametrize("value", [12345, 1.5, True, ["A"]])
def test_string_field_refuses_other_types(name: str, value: Any) -> None:
    """An id must be a string: a number would lose leading zeros such as "012345"."""
    assert fields_of({**DOC_ITEM, name: value}) == [name]


# --- integers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [("year", 1990, 9999), ("month", 1, 12), ("day", 1, 31)],
)
def test_period_ranges(name: str, low: int, high: int) -> None:
    """year 1990..9999, month 1..12 and day 1..31 are inclusive ranges."""
    base = {**DOC_ITEM, "month": 1, "day": 1}
    assert validate_item({**base, name: low}) == []
    assert validate_item({**base, name: high}) == []
    assert fields_of({**base, name: low - 1}) == [name]
    assert fields_of({**base, name: high + 1}) == [name]


@pytest.mark.parametrize(
    ("year", "month", "day", "valid"),
    [
        (2024, 2, 29, True),
        (2023, 2, 29, False),
        (2000, 2, 29, True),
        (2100, 2, 29, False),
        (2023, 4, 30, True),
        (2023, 4, 31, False),
        (2023, 12, 31, True),
        (2023, 2, 30, False),
    ],
)
def test_day_must_make_a_calendar_date(year: int, month: int, day: int, valid: bool) -> None:
    """ "Calendar day of the data period": a day the month does not have is refused."""
    problems = validate_item({**DOC_ITEM, "year": year, "month": month, "day": day})
    assert (problems == []) is valid
    if not valid:
        assert [(p.field, p.code) for p in problems] == [("day", "calendar_date")]


@pytest.mark.parametrize("name", INT32_FIELDS)
def test_int32_boundaries(name: str) -> None:
    """Quantities take any signed 32-bit value and nothing beyond."""
    assert validate_item({**DOC_ITEM, name: INT32_MIN}) == []
    assert validate_item({**DOC_ITEM, name: INT32_MAX}) == []
    assert fields_of({**DOC_ITEM, name: INT32_MIN - 1}) == [name]
    assert fields_of({**DOC_ITEM, name: INT32_MAX + 1}) == [name]


@pytest.mark.parametrize("name", [*INT32_FIELDS, "year", "month", "day"])
@pytest.mark.parametrize("value", [True, 5.0, 5.5, "5"])
def test_integers_refuse_other_types(name: str, value: Any) -> None:
    """An integer must be a JSON integer: no boolean, float or numeric string (.NET cannot bind them)."""
    assert fields_of({**DOC_ITEM, name: value}) == [name]


def test_all_problems_are_reported_at_once() -> None:
    """Validation lists every bad field of an item, not only the first."""
    item = {**DOC_ITEM, "soldToId": "X" * 11, "year": 1989, "onHand": 1.5, "unitOfMeasure": "EACH"}
    assert sorted(fields_of(item)) == ["onHand", "soldToId", "unitOfMeasure", "year"]


# --- error bodies --------------------------------------------------------------------------------


def test_parse_valid_problem_details() -> None:
    """A well-formed problem body is read whole: scalars, trace id and errors per key."""
    body = (
        '{"type": "t", "title": "One or more validation errors occurred.", "status": 400, '
        '"tracedId": "00-ab-cd-00", "errors": {"$.dataItems[0].year": ["The field year must '
        'be between 1990 and 9999."], "$.dataItems[2].soldToId": ["a", "b"]}, "message": "m"}'
    )
    problem = parse_problem(body)
    assert problem.well_formed
    assert (problem.status, problem.trace_id, problem.message) == (400, "00-ab-cd-00", "m")
    assert problem.errors == {
        "$.dataItems[0].year": ("The field year must be between 1990 and 9999.",),
        "$.dataItems[2].soldToId": ("a", "b"),
    }
    assert problem.raw == body


def test_parse_the_documents_malformed_example() -> None:
    """The document's own invalid-JSON example still yields its rows, fields and messages."""
    problem = parse_problem(DOC_ERROR_BODY)
    assert not problem.well_formed
    assert problem.raw == DOC_ERROR_BODY
    assert problem.type == "https://tools.ietf.org/html/rfc7231#section-6.5.1"
    assert problem.title == "One or more validation errors occurred."
    assert problem.status == 400
    assert problem.trace_id == "00-b8992e4f52c659ef02b4f901ce1336a6-deaa6ed8bd9afea2-00"
    assert problem.message == "An error occurred!"
    rows, general = split_errors(problem.errors, 6)
    assert rows == {
        1: {"onHand": ("The onHand field is required.",)},
        # the message holds brackets of its own: "...Nullable`1[System.Int32]"
        5: {
            "unitsOnShelf": (
                "The JSON value could not be converted to System.Nullable`1[System.Int32]",
            )
        },
    }
    assert general == ()


def test_parse_the_documents_example_as_bytes() -> None:
    """The body may be handed over as bytes."""
    assert parse_problem(DOC_ERROR_BODY.encode()).status == 400


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "<html><body>502 Bad Gateway</body></html>",
        '{"errors": {"$.dataItems[0].year": ["cut off',
        '"errors" ["unclosed", "list"',
        "[1, 2, 3]",
        '"just a string"',
        "null",
        "{" * 5000,
        '"\\' * 1000,
        "\x00\xff\ufffd",
    ],
)
def test_parse_garbage_never_fails(garbage: str) -> None:
    """Whatever the error body holds, parsing returns a Problem that keeps the raw text."""
    problem = parse_problem(garbage)
    assert problem.raw == garbage
    assert isinstance(problem.summary, str)


def test_parse_tolerates_missing_colons_and_commas() -> None:
    """Entries without colons or with trailing commas are still read, escapes decoded."""
    text = '"status" 400 "message" "bad" "$.dataItems[3].year" ["one \\"quoted\\"", "two",] '
    problem = parse_problem(text)
    assert problem.status == 400
    assert problem.message == "bad"
    assert problem.errors == {"$.dataItems[3].year": ('one "quoted"', "two")}


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from('{}[]:,"\\ $.abcdItems0123456789\n'), max_size=300))
def test_parse_never_raises_on_json_like_noise(text: str) -> None:
    """Random JSON-ish noise never makes the parser raise."""
    problem = parse_problem(text)
    assert problem.raw == text
    split_errors(problem.errors, 10)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("$.dataItems[5].onHand", (5, "onHand")),
        ("dataItems[5].onHand", (5, "onHand")),
        ("$.DataItems[12].OnHand", (12, "onHand")),
        ("$.dataItems[0].unitsonshelf", (0, "unitsOnShelf")),
        ("$.dataItems[3]", (3, "")),
        ("$.dataItems[3].someNewField", (3, "someNewField")),
        ("$", None),
        ("dataItems", None),
        ("", None),
        ("$.dataItems[x].onHand", None),
    ],
)
def test_error_location(key: str, expected: tuple[int, str] | None) -> None:
    """Error keys map to (row, wire field name), whatever their prefix and letter case."""
    assert error_location(key) == expected


def test_split_errors_keeps_unplaceable_keys_as_general() -> None:
    """Keys naming no row of the batch (or a row beyond it) become general messages."""
    rows, general = split_errors(
        {
            "$.dataItems[0].year": ("y",),
            "$.dataItems[0].month": ("m",),
            "$.dataItems[9].year": ("beyond",),
            "$": ("body",),
            "": ("empty",),
        },
        3,
    )
    assert rows == {0: {"year": ("y",), "month": ("m",)}}
    assert general == ("$.dataItems[9].year: beyond", "$: body", "empty")
